// The browser scenarios of issue 5. Each gets the browser, the Traefik URL
// and the fixture made by services/edge/tests/browser.rs:
//   { users: [{id, name}, ...], profile: {id, name}, history: N }

import {
  ask,
  assert,
  bodies,
  eventually,
  expectMessage,
  logIn,
  newPage,
  openClient,
  openProfile,
  personOnOtherEdge,
  presence,
  send,
  status,
  step,
  waitForState,
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
 *  Traefik to the other edge and shows what was sent meanwhile. */
export async function edgeKilled(browser, base, { users, profile }) {
  const [ada, grace] = users;
  const a = await personOnOtherEdge(browser, base, "ada", "/", null);
  const b = await personOnOtherEdge(browser, base, "grace", "/", a.edge);
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
}
