// The browser scenarios. Each gets the browser, the Traefik URL and the
// fixture made by services/edge/tests/browser.rs:
//   { users: [{id, name, password}, ...], profile: {id, name}, history: N }
// The fixture's people have accounts (signed up with a password) and are
// members of the profile; the pages log in through the login form.

import { existsSync, statSync } from "node:fs";

import {
  ask,
  assert,
  assertExactStreams,
  bodies,
  consoleLines,
  cutStreams,
  eventually,
  eventuallyEqual,
  expectMessage,
  formError,
  logIn,
  logOut,
  loginScreen,
  message,
  newPage,
  notice,
  openClient,
  openProfile,
  personOnOtherEdge,
  presence,
  recordStreams,
  screenshot,
  send,
  shown,
  status,
  step,
  storedHistory,
  streams,
  submitLogIn,
  submitSignUp,
  waitForState,
  whereVisible,
} from "./lib.mjs";

/** Two people in two browser contexts on two edges, one over WebSocket
 *  and one over SSE plus POST, chat in both directions. */
export async function chat(browser, base, { users, profile }) {
  const [ada, grace] = users;
  const a = await personOnOtherEdge(browser, base, "ada", "/?transport=ws", null);
  const b = await personOnOtherEdge(browser, base, "grace", "/?transport=sse", a.edge);
  step(`ada's page is on ${a.edge}, grace's on ${b.edge}`);

  await logIn(a.page, ada);
  await logIn(b.page, grace);
  await openProfile(a.page, profile);
  await openProfile(b.page, profile);
  const [sa, sb] = [await status(a.page), await status(b.page)];
  step(`status: ada "${sa.text}" on ${sa.edge}, grace "${sb.text}" on ${sb.edge}`);
  assert(sa.transport === "ws" && sa.text.includes("Live over WebSocket"), "ada is live over WebSocket");
  assert(sb.transport === "sse" && sb.text.includes("Live over SSE"), "grace is live over SSE");
  assert(sa.edge !== sb.edge, "the two sessions are on different edges");

  await send(a.page, "Hello Grace, this is Ada on a WebSocket");
  await expectMessage(b.page, "Hello Grace, this is Ada on a WebSocket", ada.name);
  step("grace (SSE) got ada's message");

  await send(b.page, "Hi Ada! Grace here, over SSE and POST");
  await expectMessage(a.page, "Hi Ada! Grace here, over SSE and POST", grace.name);
  step("ada (WebSocket) got grace's message");

  // Each sees both, once, in the same order.
  const expected = ["Hello Grace, this is Ada on a WebSocket", "Hi Ada! Grace here, over SSE and POST"];
  for (const [who, page] of [["ada", a.page], ["grace", b.page]]) {
    const shown = await bodies(page);
    assert(JSON.stringify(shown) === JSON.stringify(expected), `${who} shows ${JSON.stringify(shown)}`);
  }
}

/** History: the newest page on open, older pages on demand; a reload keeps
 *  the session (no login) and shows the recent messages again. */
export async function reload(browser, base, { users, profile, history }) {
  const [ada] = users;
  const context = await browser.newContext();
  const page = await newPage(context, "ada");
  await openClient(page, base);
  await logIn(page, ada);
  await openProfile(page, profile);

  // The fixture wrote `history` messages ("history 1" ... oldest first);
  // a page of history is 50.
  const newest = `history ${history}`;
  await expectMessage(page, newest);
  let shown = await bodies(page);
  step(`opened with ${shown.length} messages of ${history}`);
  assert(shown.length === 50, `the first page shows 50 messages, not ${shown.length}`);
  await page.getByRole("button", { name: "Load older messages" }).click();
  await expectMessage(page, "history 1");
  await page.getByRole("button", { name: "Beginning of the history" }).waitFor();
  shown = await bodies(page);
  const all = Array.from({ length: history }, (_, i) => `history ${i + 1}`);
  assert(JSON.stringify(shown) === JSON.stringify(all), "all history, oldest first, once each");
  step("scrolled back to the beginning");

  for (const n of [1, 2, 3]) await send(page, `before the reload ${n}`);
  await page.reload();
  step("reloaded");
  await waitForState(page, "live");
  assert(!(await page.getByRole("heading", { name: "Log in" }).isVisible()), "no login after a reload");
  for (const n of [1, 2, 3]) await expectMessage(page, `before the reload ${n}`, ada.name);
  shown = await bodies(page);
  assert(shown.at(-1) === "before the reload 3", `the newest message is last: ${shown.at(-1)}`);
  await send(page, "after the reload");
  step(`after the reload: "${(await status(page)).text}"`);
}

/** A second tab of the same user on the same profile is refused with a
 *  clear message (WebSocket 4409 and SSE 409), and gets in once the first
 *  tab is closed. */
export async function secondTab(browser, base, { users, profile }) {
  const [ada] = users;
  const context = await browser.newContext();
  const first = await newPage(context, "first-tab");
  await openClient(first, base);
  await logIn(first, ada);
  await openProfile(first, profile);
  step(`first tab live: "${(await status(first)).text}"`);

  const chatPath = `#/p/${profile.id}`;
  const ws = await newPage(context, "second-tab-ws");
  await openClient(ws, base, `/?transport=ws${chatPath}`);
  const sse = await newPage(context, "third-tab-sse");
  await openClient(sse, base, `/?transport=sse${chatPath}`);
  for (const [name, page] of [["WebSocket", ws], ["SSE", sse]]) {
    await waitForState(page, "already-open");
    const s = await status(page);
    step(`${name} tab: "${s.text}"`);
    assert(s.text.includes("Already open elsewhere"), `the ${name} tab says it is already open`);
    assert(await page.getByRole("button", { name: "Send" }).isDisabled(), "no sending meanwhile");
  }

  await sse.close();
  await first.close();
  step("closed the first and third tabs");
  await waitForState(ws, "live", 20_000);
  const s = await status(ws);
  assert(!s.text.includes("Already open"), `the message is gone: "${s.text}"`);
  await send(ws, "the second tab got in");
  const names = await presence(ws);
  assert(names.some((n) => n.startsWith(ada.name)), `presence lists ada: ${names}`);
}

/** The edge a page is on dies (no drain): the page reconnects through
 *  Traefik to the other edge after the newest position it showed and
 *  shows exactly what was sent meanwhile, in the same order as the other
 *  page. */
export async function edgeKilled(browser, base, { users, profile }) {
  const [ada, grace] = users;
  const a = await personOnOtherEdge(browser, base, "ada", "/", null, recordStreams);
  const b = await personOnOtherEdge(browser, base, "grace", "/", a.edge, recordStreams);
  await logIn(a.page, ada);
  await logIn(b.page, grace);
  await openProfile(a.page, profile);
  await openProfile(b.page, profile);
  const doomed = (await status(a.page)).edge;
  const survivor = (await status(b.page)).edge;
  assert(doomed !== survivor, `both pages are on ${doomed}`);
  step(`ada is on ${doomed} (to be killed), grace on ${survivor}`);

  await send(a.page, "before the crash");
  await expectMessage(b.page, "before the crash", ada.name);

  await ask({ op: "kill_edge", edge: doomed });
  step(`killed ${doomed}`);
  await eventually("ada's page to notice", async () => (await status(a.page)).state !== "live", 10_000);
  step(`ada's page: "${(await status(a.page)).text}"`);

  const meanwhile = ["while you were away 1", "while you were away 2", "while you were away 3"];
  for (const text of meanwhile) await send(b.page, text);
  const s = await status(a.page);
  step(`grace sent ${meanwhile.length} messages; ada's page meanwhile: "${s.text}"`);

  await waitForState(a.page, "live", 40_000);
  const back = await status(a.page);
  step(`ada's page is back: "${back.text}" on ${back.edge}`);
  assert(back.edge === survivor, `reconnected to ${survivor}, not ${back.edge}`);
  for (const text of meanwhile) await expectMessage(a.page, text, grace.name);
  await expectMessage(a.page, "before the crash", ada.name); // once, not replayed twice

  await send(a.page, "back again");
  await expectMessage(b.page, "back again", ada.name);
  await eventually(
    "both in ada's presence list",
    async () => {
      const names = await presence(a.page);
      return [ada, grace].every((u) => names.some((n) => n.startsWith(u.name)));
    },
    10_000,
  );

  const history = await sameOrderEverywhere([["ada", a.page], ["grace", b.page]], profile, meanwhile.length + 2);
  const records = await streams(a.page);
  const resumed = assertExactStreams("ada", records, history);
  step(`ada: ${records.length} streams (tries included), ${resumed} resumed after a position, exactly`);
  assert(resumed >= 1, "ada's page never resumed after a position");
  assertExactStreams("grace", await streams(b.page), history);
}

/** A page that loses its stream (cut from the page's side, as a lost
 *  network would) while the other person sends comes back after the
 *  newest position it showed and gets exactly what it missed: it shows
 *  every message once, in the profile's one order, the same list as the
 *  other page and as the stored history. Ada over WebSocket and Grace
 *  over SSE, each cut twice in the middle of the other's burst, after
 *  both sent at once (so that the order is the sequencer's, not one
 *  sender's). */
export async function lostConnection(browser, base, { users, profile }) {
  const [ada, grace] = users;
  const a = await personOnOtherEdge(browser, base, "ada", "/?transport=ws", null, recordStreams);
  const b = await personOnOtherEdge(browser, base, "grace", "/?transport=sse", a.edge, recordStreams);
  await logIn(a.page, ada);
  await logIn(b.page, grace);
  await openProfile(a.page, profile);
  await openProfile(b.page, profile);
  step(`ada is on ${a.edge} over WebSocket, grace on ${b.edge} over SSE`);
  const historyLoads = { ada: 0, grace: 0 };
  for (const [who, page] of [["ada", a.page], ["grace", b.page]]) {
    page.on("request", (r) => {
      const url = new URL(r.url());
      if (url.pathname.endsWith("/messages") && url.pathname.startsWith("/api/")) historyLoads[who] += 1;
    });
  }

  const sent = [];
  const burst = async (page, who, label, count, { cut, cutAfter = [] } = {}) => {
    for (let n = 1; n <= count; n++) {
      const text = `${who} ${label} ${n}`;
      await send(page, text);
      sent.push(text);
      if (cutAfter.includes(n)) {
        // Cut a live stream: the sends that follow race its reconnection.
        await waitForState(cut.page, "live");
        const cuts = await cutStreams(cut.page);
        assert(cuts === 1, `${cut.who}'s page had ${cuts} open streams to cut, not 1`);
        step(`cut ${cut.who}'s stream after "${text}"`);
      }
    }
  };
  await Promise.all([burst(a.page, "ada", "together", 8), burst(b.page, "grace", "together", 8)]);
  step("both sent 8 at once");
  await burst(b.page, "grace", "while ada is cut off", 12, { cut: { page: a.page, who: "ada" }, cutAfter: [3, 8] });
  await waitForState(a.page, "live");
  await burst(a.page, "ada", "while grace is cut off", 12, { cut: { page: b.page, who: "grace" }, cutAfter: [3, 8] });
  await waitForState(b.page, "live");
  step(`${sent.length} messages sent`);
  const loadsBeforeChecks = { ...historyLoads }; // the checks below read history too

  // Every message, with its position (own sends included: their messages
  // came back), on both pages, as stored.
  const history = await sameOrderEverywhere([["ada", a.page], ["grace", b.page]], profile, sent.length);
  const order = history.map((m) => m.body);
  assert(
    JSON.stringify([...order].sort()) === JSON.stringify([...sent].sort()),
    `the history holds other messages than those sent: ${JSON.stringify(order)}`,
  );

  for (const [who, page] of [["ada", a.page], ["grace", b.page]]) {
    const records = await streams(page);
    const resumed = assertExactStreams(who, records, history);
    step(`${who}: ${records.length} streams, ${resumed} resumed from a position, each exactly after the last`);
    assert(resumed >= 2, `${who}'s page resumed ${resumed} times, not twice`);
    // A gap would have reloaded the newest page of history.
    assert(loadsBeforeChecks[who] === 0, `${who}'s page loaded history ${loadsBeforeChecks[who]} times after opening`);
  }
}

/** A page away for more than the edge replays (the test's edges replay at
 *  most 5 and send the newest 5 after a `gap`) gets a gap, and the newest
 *  page of history closes it; this page (60 missed, more than a page of
 *  50) restarts the list from there, with no hole. The store seems behind
 *  the stream (the test drops the newest 10 of that page), so the pages
 *  after it (`after=`) fill the rest up to the first message after the
 *  gap. Older pages then load back to the beginning, and both pages show
 *  the same list. */
export async function gapReloads(browser, base, { users, profile }) {
  const [ada, grace] = users;
  const a = await personOnOtherEdge(browser, base, "ada", "/?transport=ws", null, recordStreams);
  const b = await personOnOtherEdge(browser, base, "grace", "/", a.edge);
  await logIn(a.page, ada);
  await logIn(b.page, grace);
  await openProfile(a.page, profile);
  await openProfile(b.page, profile);

  const before = ["before the gap 1", "before the gap 2", "before the gap 3"];
  for (const text of before) await send(b.page, text);
  await expectMessage(a.page, before.at(-1), grace.name);

  // A store behind the stream, once: the newest page asked after the gap
  // lacks its newest LAG messages.
  const LAG = 10;
  let lagging = false;
  const asked = [];
  await a.page.route(
    (url) => url.pathname.startsWith("/api/profiles/") && url.pathname.endsWith("/messages"),
    async (route) => {
      const query = new URL(route.request().url()).searchParams;
      asked.push(query.toString());
      const response = await route.fetch();
      if (!lagging || query.has("before") || query.has("after")) return route.fulfill({ response });
      lagging = false;
      const page = await response.json();
      page.items = page.items.slice(LAG); // newest first
      await route.fulfill({ response, json: page });
    },
  );

  assert((await cutStreams(a.page)) === 1, "ada's page had no stream to cut");
  await a.context.setOffline(true);
  await eventually("ada's page to notice", async () => (await status(a.page)).state !== "live");
  step("ada's page is offline");
  const missed = Array.from({ length: 60 }, (_, i) => `while ada is offline ${i + 1}`);
  for (const text of missed) await send(b.page, text);
  let history = [];
  await eventually("the store to hold them all", async () => {
    history = await storedHistory(b.page, profile.id);
    return history.length === before.length + missed.length;
  });
  step(`grace sent ${missed.length} more; ada's page comes back online`);
  lagging = true;
  await a.context.setOffline(false);
  await waitForState(a.page, "live", 40_000);

  const newestPage = history.slice(-50);
  await eventuallyEqual("ada's page to show the newest 50, from history and stream", () => shown(a.page), newestPage);
  const records = await streams(a.page);
  const gaps = records.flatMap((r) => r.gaps);
  step(`ada's page shows the newest 50 after a gap (${gaps}); history asked: ${asked.join(" | ")}`);
  assert(gaps.includes("too_many"), `the edge sent no too_many gap: ${JSON.stringify(records)}`);
  assert(
    asked.some((q) => q.includes("after=")),
    `the page did not fill the rest with after=: ${asked}`,
  );
  assert((await message(a.page, before[0]).count()) === 0, "the list restarted: nothing from before the hole");

  await a.page.getByRole("button", { name: "Load older messages" }).click();
  await a.page.getByRole("button", { name: "Beginning of the history" }).waitFor({ timeout: 15_000 });
  await eventuallyEqual("ada's page to show the whole history", () => shown(a.page), history);
  step("older pages load back to the beginning");

  await send(b.page, "after the gap");
  await sameOrderEverywhere([["ada", a.page], ["grace", b.page]], profile, history.length + 1);
}

/** Both pages show the same messages, each once, in the order of the
 *  stored history (which holds `count` messages once persist caught up),
 *  each message with its position; the history, oldest first. */
async function sameOrderEverywhere(pages, profile, count) {
  for (const [who, page] of pages) {
    await eventually(`${who}'s page to show all ${count} with their positions`, async () => {
      const items = await shown(page);
      return items.length >= count && items.every((m) => m.position);
    });
  }
  let history = [];
  await eventually(`the stored history to hold all ${count}`, async () => {
    history = await storedHistory(pages[0][1], profile.id);
    return history.length >= count;
  });
  assert(history.length === count, `the history holds ${history.length} messages, not ${count}`);
  for (const [who, page] of pages) {
    const items = await shown(page);
    const same = JSON.stringify(items) === JSON.stringify(history);
    assert(same, `${who} shows ${JSON.stringify(items)}, the history is ${JSON.stringify(history)}`);
  }
  step(`every page shows the ${count} messages once each, in the history's order`);
  return history;
}

/** Someone new signs up through the page (the two passwords are compared
 *  before anything is sent; a taken name and a short password are
 *  refused with the api's reason), sees that they are in no profile yet,
 *  logs out and logs in again. */
export async function signUp(browser, base, { users }) {
  const [ada] = users;
  const hedy = { name: `Hedy ${Math.floor(Math.random() * 1e9)}`, password: "frequency hopping 1942" };
  const context = await browser.newContext();
  const page = await newPage(context, "hedy");
  await openClient(page, base);
  await loginScreen(page);

  // Typed twice, differently: the page says so and sends nothing.
  const signups = [];
  page.on("request", (r) => r.url().endsWith("/api/signup") && signups.push(r));
  await submitSignUp(page, { ...hedy, again: "frequency hopping 1943" });
  let error = await formError(page);
  step(`two different passwords: "${error}"`);
  assert(error.includes("differ"), `the page says the passwords differ: "${error}"`);
  assert(signups.length === 0, "nothing sent while the passwords differ");

  await submitSignUp(page, { name: ada.name, password: "a long enough password" });
  await eventually("the taken name's error", async () => (await formError(page)).includes("taken"));
  step(`a taken name: "${await formError(page)}"`);

  await submitSignUp(page, { name: hedy.name, password: "short" });
  await eventually("the short password's error", async () => (await formError(page)).includes("short"));
  step(`a short password: "${await formError(page)}"`);

  await submitSignUp(page, hedy);
  await page.getByRole("heading", { name: "Your profiles" }).waitFor();
  await page.getByText("You are not in any profile yet").waitFor();
  assert(await page.getByText(`Logged in as ${hedy.name}`).isVisible(), "the header names hedy");
  step("signed up: no profiles yet");

  await logOut(page);
  step(`logged out: "${await notice(page)}"`);
  const me = await page.evaluate(() => fetch("/api/me").then((r) => r.status));
  assert(me === 401, `after logging out /api/me answers ${me}`);

  await logIn(page, hedy);
  await page.getByText("You are not in any profile yet").waitFor();
  step("logged in again");
  await noPasswordShown(page, "hedy", [hedy.password, "frequency hopping 1943", "short"]);
}

/** A wrong password is refused ("Wrong name or password"), and nothing is
 *  logged in; after a few more for one account the api asks to wait, and
 *  the page says for how long; the right one then works (for the account
 *  not limited). */
export async function wrongPassword(browser, base, { users }) {
  const [ada, grace] = users;
  const context = await browser.newContext();
  const page = await newPage(context, "ada");
  await openClient(page, base);

  const wrong = `${ada.password} but wrong`;
  await submitLogIn(page, { name: ada.name, password: wrong });
  const error = await formError(page);
  step(`wrong password: "${error}"`);
  assert(error === "Wrong name or password.", `the error says so: "${error}"`);
  await loginScreen(page);
  assert(!(await page.getByRole("heading", { name: "Your profiles" }).isVisible()), "not logged in");
  const me = await page.evaluate(() => fetch("/api/me").then((r) => r.status));
  assert(me === 401, `after a wrong password /api/me answers ${me}`);
  const file = await screenshot(page, "wrongPassword-login.png");
  assert(existsSync(file) && statSync(file).size > 0, `the screenshot is at ${file}`);

  // Wrong again and again for grace, until the api refuses to check (5
  // failures by default): the page tells how long to wait (Retry-After).
  let limited = false;
  for (let tries = 1; tries <= 10 && !limited; tries++) {
    const answer = page.waitForResponse((r) => new URL(r.url()).pathname === "/api/login");
    await submitLogIn(page, { name: grace.name, password: `not the password ${tries}` });
    limited = (await answer).status() === 429;
  }
  assert(limited, "10 wrong passwords in a row, and still no 429");
  await eventually("the rate limit's message", async () => (await formError(page)).startsWith("Too many"));
  const waitText = await formError(page);
  step(`after too many wrong passwords: "${waitText}"`);
  assert(/^Too many attempts; try again in \d+ s\.$/.test(waitText), `the page says how long: "${waitText}"`);

  await logIn(page, ada);
  step("the right password logs in");
  await noPasswordShown(page, "ada", [ada.password, wrong, "not the password 1"]);
}

/** "Log out" ends the page's live stream (its user leaves the others'
 *  presence lists) and shows the login screen; it ends the login in the
 *  browser's other tabs too (a tab in the chat goes back to the login
 *  screen); "Log out everywhere" in one browser sends another browser of
 *  the same user, in a chat, back to the login screen within seconds. */
export async function logOutEnds(browser, base, { users, profile }) {
  const [ada, grace] = users;
  const g = await browser.newContext();
  const gracePage = await newPage(g, "grace");
  await openClient(gracePage, base);
  await logIn(gracePage, grace);
  await openProfile(gracePage, profile);
  const adaPresent = async () => (await presence(gracePage)).some((n) => n.startsWith(ada.name));

  const a = await browser.newContext();
  const adaPage = await newPage(a, "ada");
  await openClient(adaPage, base);
  await logIn(adaPage, ada);
  await openProfile(adaPage, profile);
  await eventually("ada in grace's presence list", adaPresent);
  step("ada and grace are live in the profile");

  await logOut(adaPage);
  step(`ada logged out: "${await notice(adaPage)}"`);
  await eventually("ada to leave grace's presence list", async () => !(await adaPresent()));
  step("ada's stream ended: she left grace's presence list");

  // The same login in two tabs: the one on the profile list logs out, the
  // one in the chat learns it from its stream.
  await logIn(adaPage, ada);
  await openProfile(adaPage, profile);
  await eventually("ada back in grace's presence list", adaPresent);
  const otherTab = await newPage(a, "ada-other-tab");
  await openClient(otherTab, base);
  await otherTab.getByRole("heading", { name: "Your profiles" }).waitFor();
  await logOut(otherTab);
  step("ada logged out in her other tab");
  await loginScreen(adaPage);
  step(`the chat tab is back at the login screen: "${await notice(adaPage)}"`);
  assert((await notice(adaPage)) !== "", "it says why");
  await eventually("ada to leave grace's presence list again", async () => !(await adaPresent()));

  // Two browsers of ada: one in the chat, the other logs out everywhere.
  const a2 = await browser.newContext();
  const chatting = await newPage(a2, "ada-second-browser");
  await openClient(chatting, base);
  await logIn(chatting, ada);
  await openProfile(chatting, profile);
  await eventually("ada back in grace's presence list", adaPresent);
  await logIn(otherTab, ada);
  step("ada is logged in in two browsers, live in one");

  await logOut(otherTab, { everywhere: true });
  step(`ada logged out everywhere: "${await notice(otherTab)}"`);
  await loginScreen(chatting);
  const told = await notice(chatting);
  step(`ada's other browser is back at the login screen: "${told}"`);
  assert(told !== "", "it says why");
  await eventually("ada to leave grace's presence list once more", async () => !(await adaPresent()));
  const me = await chatting.evaluate(() => fetch("/api/me").then((r) => r.status));
  assert(me === 401, `the other browser's login ended: /api/me answers ${me}`);

  // Logging in again goes back to where the page was: the chat.
  await submitLogIn(chatting, ada);
  await waitForState(chatting, "live");
  step("and logging in again reopens the chat");
}

/** No password in the page's address, storage, readable cookies or
 *  console. */
async function noPasswordShown(page, name, passwords) {
  for (const password of passwords) {
    const where = await whereVisible(page, password);
    assert(where.length === 0, `a password is visible in ${where.join(", ")}`);
    const logged = consoleLines.get(name).some((line) => line.includes(password));
    assert(!logged, "a password is in the console");
  }
}
