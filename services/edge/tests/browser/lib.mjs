// Helpers for the scenarios: a "person" is one browser context (its own
// cookies and localStorage, like one browser profile) with one or more
// pages, driven the way a person would use the client: by its labels and
// buttons, typing, pressing Enter.

import { mkdirSync } from "node:fs";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import readline from "node:readline";

/** Every page opened, by name, for the screenshots of a failed test. */
export const pages = new Map();

/** Every console line of every page, by page name (to check that no
 *  password is ever logged). */
export const consoleLines = new Map();

/** How long to wait for something a person would see within seconds. */
export const SOON = 15_000;

/** Logs a step, so the test's output tells how far it got. */
export function step(text) {
  console.log(`[${new Date().toISOString().slice(11, 23)}] ${text}`);
}

/** A new page in `context`, with the page's console and errors in the
 *  test output. */
export async function newPage(context, name) {
  const page = await context.newPage();
  pages.set(name, page);
  consoleLines.set(name, []);
  page.on("console", (msg) => {
    consoleLines.get(name).push(msg.text());
    console.log(`  [${name} console.${msg.type()}] ${msg.text()}`);
  });
  page.on("pageerror", (err) => console.log(`  [${name} page error] ${err.message}`));
  return page;
}

/** Opens the client at `path` (e.g. `/?transport=sse`); the edge that
 *  served the page, which the sticky cookie then keeps. */
export async function openClient(page, base, path = "/") {
  const response = await page.goto(new URL(path, base).href);
  if (!response.ok()) throw new Error(`GET ${path}: ${response.status()}`);
  return response.headers()["x-rill-edge"];
}

/**
 * A person whose page was served by an edge other than `otherEdge`:
 * Traefik balances new visitors (no sticky cookie yet) over the edges, so
 * a few fresh contexts find one. `setUp(context)` runs on each new context
 * before its page opens (e.g. recordStreams).
 */
export async function personOnOtherEdge(browser, base, name, path, otherEdge, setUp = async () => {}) {
  for (let tries = 0; tries < 8; tries++) {
    const context = await browser.newContext();
    await setUp(context);
    const page = await newPage(context, name);
    const edge = await openClient(page, base, path);
    if (edge !== otherEdge) return { context, page, edge };
    pages.delete(name);
    await context.close();
  }
  throw new Error(`Traefik sent 8 new visitors to ${otherEdge}: no balancing`);
}

/** The login screen, once it shows. */
export async function loginScreen(page, timeout = SOON) {
  const screen = page.getByRole("region", { name: "Log in" });
  await screen.getByRole("heading", { name: "Log in" }).waitFor({ timeout });
  return screen;
}

/** Types `user`'s name and password into the login form and submits it;
 *  does not wait for the outcome. */
export async function submitLogIn(page, { name, password }) {
  const form = await loginScreen(page);
  await form.getByLabel("Name", { exact: true }).fill(name);
  await form.getByLabel("Password", { exact: true }).fill(password);
  await form.getByRole("button", { name: "Log in", exact: true }).click();
}

/** Logs in from the login screen as `user` ({name, password}); waits for
 *  the profile list. */
export async function logIn(page, user) {
  await submitLogIn(page, user);
  await page.getByRole("heading", { name: "Your profiles" }).waitFor({ timeout: SOON });
}

/** Fills the sign-up form (from the login screen) with `name`, `password`
 *  and `again` (the password typed a second time) and submits it; does not
 *  wait for the outcome. */
export async function submitSignUp(page, { name, password, again = password }) {
  const signUpScreen = page.getByRole("region", { name: "Create an account" });
  if (!(await signUpScreen.isVisible())) {
    await page.getByRole("button", { name: "Create an account", exact: true }).click();
  }
  await signUpScreen.getByRole("heading", { name: "Create an account" }).waitFor({ timeout: SOON });
  await signUpScreen.getByLabel("Name", { exact: true }).fill(name);
  await signUpScreen.getByLabel("Password", { exact: true }).fill(password);
  await signUpScreen.getByLabel("Password again", { exact: true }).fill(again);
  await signUpScreen.getByRole("button", { name: "Create account", exact: true }).click();
}

/** The error shown in the visible form's alert, once there is one. */
export async function formError(page, timeout = SOON) {
  const alert = page.locator("section:not([hidden]) .form-error[role=alert]");
  await eventually("an error in the form", async () => (await alert.textContent()).trim() !== "", timeout);
  return (await alert.textContent()).trim();
}

/** Clicks "Log out" (or "Log out everywhere"); waits for the login screen. */
export async function logOut(page, { everywhere = false } = {}) {
  const name = everywhere ? "Log out everywhere" : "Log out";
  await page.getByRole("button", { name, exact: true }).click();
  await loginScreen(page);
}

/** The status line above the screens (logged out, session ended...). */
export async function notice(page) {
  return (await page.locator("#notice").textContent()).trim();
}

/** Saves a screenshot of `page` as `<RILL_SCREENSHOTS>/<file>`; its path. */
export async function screenshot(page, file) {
  const dir = process.env.RILL_SCREENSHOTS || "browser-screenshots";
  mkdirSync(dir, { recursive: true });
  const where = path.resolve(dir, file);
  await page.screenshot({ path: where, fullPage: true });
  step(`screenshot: ${where}`);
  return where;
}

/** What the page's own script can see of `secret`: in the address, in
 *  localStorage or sessionStorage, in a cookie it can read. Empty when
 *  nothing. */
export async function whereVisible(page, secret) {
  return page.evaluate((secret) => {
    const found = [];
    if (location.href.includes(secret) || location.href.includes(encodeURIComponent(secret))) found.push("URL");
    for (const [name, storage] of [["localStorage", localStorage], ["sessionStorage", sessionStorage]]) {
      for (let i = 0; i < storage.length; i++) {
        const key = storage.key(i);
        if (key.includes(secret) || storage.getItem(key).includes(secret)) found.push(name);
      }
    }
    if (document.cookie.includes(secret)) found.push("document.cookie");
    return found;
  }, secret);
}

/** Opens `profile` from the profile list; waits until the chat is live. */
export async function openProfile(page, profile) {
  await page.getByRole("link", { name: profile.name, exact: true }).click();
  await page.getByRole("heading", { name: profile.name }).waitFor({ timeout: SOON });
  await waitForState(page, "live");
}

/** Waits until the connection status is `state` (live, reconnecting,
 *  already-open, ...). */
export async function waitForState(page, state, timeout = SOON) {
  await page.locator(`#status[data-state="${state}"]`).waitFor({ timeout });
}

/** The connection status: state, transport, edge and the visible text. */
export async function status(page) {
  return page.locator("#status").evaluate((el) => ({
    state: el.dataset.state,
    transport: el.dataset.transport,
    edge: el.dataset.edge,
    text: el.textContent.replace(/\s+/g, " ").trim(),
  }));
}

/** Types `text` into the message box and presses Enter; waits until the
 *  edge acknowledged it (the message is no longer "sending"). */
export async function send(page, text) {
  const box = page.getByLabel("Message", { exact: true });
  await box.fill(text);
  await box.press("Enter");
  await message(page, text).waitFor({ timeout: SOON });
}

/** The confirmed message whose body is exactly `text`. */
export function message(page, text) {
  return page.locator("#messages li.msg:not(.pending):not(.failed)").filter({
    has: page.locator(".body", { hasText: new RegExp(`^${escape(text)}$`) }),
  });
}

/** Waits until `page` shows the message `text` from `sender` (a name). */
export async function expectMessage(page, text, sender, timeout = SOON) {
  const item = message(page, text);
  await item.waitFor({ timeout });
  const count = await item.count();
  if (count !== 1) throw new Error(`"${text}" is shown ${count} times`);
  if (sender) {
    await item.locator(".sender", { hasText: sender }).waitFor({ timeout });
  }
}

/** The bodies of every message shown, oldest first. */
export async function bodies(page) {
  return page.locator("#messages li.msg .body").allTextContents();
}

/** Every message shown, top to bottom: `{body, position}` (no position:
 *  a send whose message has not come back yet). */
export async function shown(page) {
  return page.locator("#messages li.msg").evaluateAll((items) =>
    items.map((li) => ({ body: li.querySelector(".body").textContent, position: li.dataset.position })),
  );
}

/** The profile's whole history as the api has it (up to 200), oldest
 *  first: `{body, position}`. */
export async function storedHistory(page, profileId) {
  const answer = await page.evaluate(async (profileId) => {
    const response = await fetch(`/api/profiles/${profileId}/messages?limit=200`);
    if (!response.ok) throw new Error(`history: ${response.status}`);
    return response.json();
  }, profileId);
  return answer.items.map(({ body, position }) => ({ body, position })).reverse();
}

// --- watching and cutting the live streams -----------------------------------

/**
 * Makes every page of `context` record its live streams and lets the test
 * cut them (cutStreams) as a lost network would, from the page's side: an
 * init script, run before the client's own, wraps WebSocket and, for the
 * SSE streams, fetch. Each stream is recorded as `{transport, from,
 * positions, gaps}`: where it asked to resume (`last_position`, or the SSE
 * `Last-Event-ID`; null: from now), the positions of the messages it
 * delivered, in order, and the reasons of its `gap` events.
 */
export async function recordStreams(context) {
  await context.addInitScript(() => {
    const streams = [];
    window.__rillStreams = streams;
    const heard = (record, event) => {
      if (event.type === "message") record.positions.push(event.position);
      if (event.type === "gap") record.gaps.push(event.reason);
    };

    const NativeWebSocket = window.WebSocket;
    window.WebSocket = class extends NativeWebSocket {
      constructor(url, protocols) {
        super(url, protocols);
        const from = new URL(url, location.href).searchParams.get("last_position");
        const cut = () => {
          record.open = false;
          this.close();
          // What a page sees when its network goes: the socket closes at
          // once (1006), not a closing handshake later. The real close
          // event, later, finds the client on its next socket.
          this.onclose?.(new CloseEvent("close", { code: 1006, wasClean: false }));
        };
        const record = { transport: "ws", from, positions: [], gaps: [], open: true, cut };
        streams.push(record);
        this.addEventListener("message", (m) => heard(record, JSON.parse(m.data)));
        this.addEventListener("close", () => (record.open = false));
      }
    };

    const nativeFetch = window.fetch.bind(window);
    window.fetch = async (input, init = {}) => {
      if (!String(input).endsWith("/sse")) return nativeFetch(input, init);
      const cut = new AbortController();
      init.signal?.addEventListener("abort", () => cut.abort());
      const from = new Headers(init.headers).get("last-event-id");
      const record = { transport: "sse", from, positions: [], gaps: [], open: true, cut: () => cut.abort() };
      streams.push(record);
      let response;
      try {
        response = await nativeFetch(input, { ...init, signal: cut.signal });
      } catch (err) {
        record.open = false;
        throw err;
      }
      if (!response.ok || !response.body) {
        record.open = false;
        return response;
      }
      // Read on the way to the client, so the record holds what the
      // client got: the data lines, one JSON event each.
      const decoder = new TextDecoder();
      let buffer = "";
      const watch = new TransformStream({
        transform(chunk, controller) {
          buffer += decoder.decode(chunk, { stream: true });
          const lines = buffer.split("\n");
          buffer = lines.pop();
          for (const line of lines) {
            if (line.startsWith("data:")) heard(record, JSON.parse(line.slice(5)));
          }
          controller.enqueue(chunk);
        },
        flush() {
          record.open = false;
        },
      });
      cut.signal.addEventListener("abort", () => (record.open = false));
      return new Response(response.body.pipeThrough(watch), { status: response.status, statusText: response.statusText, headers: response.headers });
    };
  });
}

/** Cuts `page`'s open live streams (see recordStreams); how many. */
export async function cutStreams(page) {
  return page.evaluate(() => {
    const open = window.__rillStreams.filter((s) => s.open);
    for (const stream of open) stream.cut();
    return open.length;
  });
}

/** `page`'s live streams so far, oldest first (see recordStreams). */
export async function streams(page) {
  return page.evaluate(() =>
    window.__rillStreams.map(({ transport, from, positions, gaps }) => ({ transport, from, positions, gaps })),
  );
}

/**
 * Checks that `who`'s streams (see recordStreams), one after the other,
 * delivered exactly the `history` (oldest first, `{position}`) after where
 * the first one started: each stream resumed from the newest position
 * delivered before it, no message twice, none missing, no gap. Returns how
 * many streams resumed from a position.
 */
export function assertExactStreams(who, records, history) {
  assert(records.length > 0, `${who} opened no stream`);
  const start = records[0].from;
  const expected = history.map((m) => m.position).filter((p) => start === null || offset(p) > offset(start));
  let newest = start;
  let resumed = 0;
  const delivered = [];
  for (const [i, record] of records.entries()) {
    assert(record.gaps.length === 0, `${who}'s stream ${i} (${record.transport}) had a gap: ${record.gaps}`);
    assert(record.from === newest, `${who}'s stream ${i} resumed from ${record.from}, not from ${newest}`);
    if (i > 0 && record.from !== null) resumed += 1;
    delivered.push(...record.positions);
    newest = record.positions.at(-1) ?? newest;
  }
  const same = JSON.stringify(delivered) === JSON.stringify(expected);
  assert(same, `${who}'s streams delivered ${JSON.stringify(delivered)}, not ${JSON.stringify(expected)}`);
  return resumed;
}

/** A position's offset (the number before the "-"), exactly. */
function offset(position) {
  return BigInt(position.slice(0, position.indexOf("-")));
}

/** The names in the presence list. */
export async function presence(page) {
  return page.locator("#presence li").allTextContents();
}

/** Waits until `check()` returns true, polling; fails with `what`. */
export async function eventually(what, check, timeout = SOON) {
  const end = Date.now() + timeout;
  for (;;) {
    if (await check()) return;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

/** Waits until `get()` returns `expected` (compared as JSON); a timeout
 *  says what it got last. */
export async function eventuallyEqual(what, get, expected, timeout = SOON) {
  const want = JSON.stringify(expected);
  let got;
  try {
    await eventually(what, async () => (got = JSON.stringify(await get())) === want, timeout);
  } catch (err) {
    throw new Error(`${err.message}: got ${got}, expected ${want}`);
  }
}

export function assert(condition, message) {
  if (!condition) throw new Error(message);
}

function escape(text) {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

// --- asking the Rust test to act ----------------------------------------------

const input = readline.createInterface({ input: process.stdin });
const replies = input[Symbol.asyncIterator]();

/** Asks the Rust test that started us to do something (kill an edge, say)
 *  and waits for its answer: a request is a line `@rill <json>` on stdout,
 *  the answer a JSON line on stdin. */
export async function ask(request) {
  console.log(`@rill ${JSON.stringify(request)}`);
  const { value, done } = await replies.next();
  if (done) throw new Error(`no answer to ${JSON.stringify(request)}`);
  const answer = JSON.parse(value);
  if (!answer.ok) throw new Error(`${JSON.stringify(request)} failed: ${answer.error}`);
  return answer;
}

export function closeInput() {
  input.close();
}
