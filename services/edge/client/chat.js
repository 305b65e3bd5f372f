// The open-profile view: the message list (history and live messages in
// the profile's one order, by position; each shown once, by id), the send
// box, the presence list and the connection status.

import * as api from "./api.js";
import { LiveConnection, comparePositions } from "./live.js";

const $ = (id) => document.getElementById(id);

/** How close to the bottom (px) counts as "reading the newest": new
 *  messages then scroll into view; otherwise the reader's place is kept. */
const STICK_TO_BOTTOM_PX = 60;

/** After a `gap`, how often the history is asked for the messages up to
 *  the first one after the gap, while the store has not caught up with
 *  the stream (waits doubling from the first, 250 ms to 4 s). */
const GAP_FILL_TRIES = 8;
const GAP_FILL_FIRST_WAIT_MS = 250;

/** How long a stream that ended waits for the api to say whether the
 *  login is still on; past it the page tries the stream again. */
const SESSION_CHECK_TIMEOUT_MS = 5_000;

const STATUS_TEXT = {
  connecting: () => "Connecting…",
  live: (s) => `Live over ${s.transport === "ws" ? "WebSocket" : "SSE"} on ${s.edgeId}`,
  reconnecting: (s) => `Reconnecting${s.reason ? ` (${s.reason})` : ""}…`,
  "already-open": () =>
    "Already open elsewhere: this profile is open for you in another tab or on another device. Close it there; this page keeps trying.",
  "not-member": () => "You are not a member of this profile.",
  "logged-out": () => "Your session has ended.",
  stopped: () => "Disconnected.",
};

export class ChatView {
  /**
   * @param {object} options
   * @param {string} options.profileId
   * @param {{id: string, name: string}} options.me
   * @param {"auto"|"ws"|"sse"} options.transport
   * @param {(why: {code?: string}) => void} options.onLoggedOut  the login
   *   ended (a 401 or the edge ending the stream): the api's code, if known
   * @param {(message: string) => void} options.alert
   */
  constructor({ profileId, me, transport, onLoggedOut, alert }) {
    this.profileId = profileId;
    this.me = me;
    this.onLoggedOut = onLoggedOut;
    this.alert = alert;
    this.items = new Map(); // id -> {el, provisional}: messages and pushes shown
    this.nextBefore = undefined; // history cursor (a position); null: nothing older
    this.loadingOlder = false;
    this.historyEpoch = 0; // bumped when the list is cut (see loadNewest)
    this.gap = null; // the gap being closed: {shownUpTo, firstAfter} (see closeGap)
    this.presence = new Set();
    this.countdown = null;
    this.list = $("messages");
    this.scroller = $("messages-scroll");
    this.live = new LiveConnection({
      profileId,
      transport,
      onEvent: (event) => this.onEvent(event),
      onState: (state) => this.onState(state),
      checkSession: () => api.me({ signal: AbortSignal.timeout(SESSION_CHECK_TIMEOUT_MS) }),
    });
    this.listeners = [];
    this.closed = false;
  }

  async open() {
    this.reset();
    this.listen($("send-form"), "submit", (e) => {
      e.preventDefault();
      this.send();
    });
    this.listen($("send-body"), "keydown", (e) => {
      // Enter sends; Shift+Enter is a new line; not while an input method
      // is composing (Enter then picks a candidate).
      if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
        e.preventDefault();
        this.send();
      }
    });
    this.listen($("load-older"), "click", () => this.loadOlder());
    this.listen(this.scroller, "scroll", () => {
      if (this.scroller.scrollTop < 40) this.loadOlder();
    });
    this.listen(window, "online", () => this.live.retryNow());

    api.getProfile(this.profileId).then(
      (profile) => {
        $("chat-title").textContent = profile.name;
        document.title = `${profile.name} – Rill`;
      },
      () => ($("chat-title").textContent = "Unknown profile"),
    );
    // History first, so the stream can start after its newest position and
    // the edge sends exactly what was sent in between.
    try {
      await this.loadNewest();
    } catch (err) {
      // 401: the page is on its way to the login screen.
      if (err.status !== 401) this.alert(`Cannot load the history: ${err.message}`);
    }
    this.scrollToBottom();
    if (this.closed) return; // left while the history loaded
    this.live.start();
    $("send-body").focus();
  }

  close() {
    this.closed = true;
    this.live.stop();
    clearInterval(this.countdown);
    for (const [target, type, handler] of this.listeners) target.removeEventListener(type, handler);
    this.listeners = [];
  }

  listen(target, type, handler) {
    target.addEventListener(type, handler);
    this.listeners.push([target, type, handler]);
  }

  reset() {
    this.list.replaceChildren();
    $("presence").replaceChildren();
    $("chat-title").textContent = "";
    $("send-body").value = "";
    this.updateOlderButton();
    this.onState({ state: "connecting" });
  }

  // --- server events --------------------------------------------------------

  onEvent(event) {
    switch (event.type) {
      case "message":
        if (this.gap && !this.gap.firstAfter) this.gap.firstAfter = event.position;
        this.addMessage(event);
        break;
      case "push":
        this.addPush(event);
        break;
      case "presence":
        this.presence = new Set(event.users);
        // A big room: the list is partial and no join/leave will follow.
        this.presenceTruncated = Boolean(event.truncated);
        this.renderPresence();
        break;
      case "join":
        this.presence.add(event.user_id);
        this.renderPresence();
        break;
      case "leave":
        this.presence.delete(event.user_id);
        this.renderPresence();
        break;
      case "gap":
        // The edge could not send everything after the newest position
        // shown (too old to replay, too many, a position it does not know)
        // or dropped events because we read too slowly: the messages that
        // follow are the newest, and the hole is before them.
        this.gap = { shownUpTo: this.live.lastPosition, firstAfter: undefined };
        this.closeGap(this.gap).catch(
          (err) => err.status !== 401 && this.alert(`Cannot reload the history: ${err.message}`),
        );
        break;
      case "error":
        this.alert(`The edge says: ${event.message} (${event.code})`);
        break;
      default:
        break; // ready is a state; unknown events are ignored
    }
  }

  onState(state) {
    const status = $("status");
    status.dataset.state = state.state;
    status.dataset.transport = state.transport || "";
    if (state.edgeId) status.dataset.edge = state.edgeId;
    $("status-text").textContent = STATUS_TEXT[state.state](state);
    this.showCountdown(state.retryAt);
    $("send-button").disabled = state.state !== "live";
    if (state.state !== "live") {
      // Who is here is unknown until the next `presence`.
      this.presence.clear();
      this.renderPresence();
    }
    if (state.state === "logged-out") this.onLoggedOut({ code: state.code });
  }

  showCountdown(retryAt) {
    clearInterval(this.countdown);
    const out = $("status-countdown");
    const tick = () => {
      const secs = Math.max(0, Math.ceil((retryAt - Date.now()) / 1000));
      out.textContent = `retrying in ${secs} s`;
    };
    if (!retryAt) {
      out.textContent = "";
      return;
    }
    tick();
    this.countdown = setInterval(tick, 500);
  }

  // --- the message list -------------------------------------------------------

  /** Shows a message at its position unless it is shown already (a page
   *  of history overlapping what the stream sent); returns whether it was
   *  new. */
  addMessage(message) {
    const known = this.items.get(message.id);
    if (known && !known.provisional) return false;
    const el = this.renderMessage(message);
    // Our own send, shown since its ack below the rest: now at its place.
    if (known) known.el.remove();
    this.insert(el);
    this.items.set(message.id, { el, provisional: false });
    return true;
  }

  /** A server push has no position: it stays where it arrived, after the
   *  newest message shown then (`data-after`; empty: before them all). */
  addPush(push) {
    if (this.items.has(push.id)) return;
    const el = document.createElement("li");
    el.className = "notice";
    el.dataset.id = push.id;
    el.dataset.after = this.live.lastPosition ?? "";
    el.textContent = `${push.event}: ${JSON.stringify(push.data)}`;
    this.insert(el);
    this.items.set(push.id, { el, provisional: false });
  }

  renderMessage(message) {
    const el = document.createElement("li");
    el.className = message.sender_id === this.me.id ? "msg mine" : "msg";
    el.dataset.id = message.id;
    el.dataset.position = message.position;
    el.dataset.sender = message.sender_id;
    const meta = document.createElement("div");
    meta.className = "meta";
    const sender = document.createElement("span");
    sender.className = "sender";
    sender.textContent = message.sender_id.slice(0, 8);
    api.userName(message.sender_id).then((name) => (sender.textContent = name));
    const time = document.createElement("time");
    const sent = new Date(message.sent_at);
    time.dateTime = sent.toISOString();
    time.textContent = sent.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    time.title = sent.toLocaleString();
    meta.append(sender, " ", time);
    const body = document.createElement("p");
    body.className = "body";
    body.textContent = message.body;
    el.append(meta, body);
    return el;
  }

  /** Inserts `el` (a message or a push) at its place in the order, above
   *  our sends that have no position yet, keeping the reader's place. */
  insert(el) {
    const stick = this.nearBottom();
    const position = el.dataset.position;
    const first = this.list.firstElementChild;
    if (position && first && placed(first) && !comesBefore(first, position)) {
      this.list.prepend(el); // a page of older history
    } else {
      let before = null;
      for (let node = this.list.lastElementChild; node; node = node.previousElementSibling) {
        if (position ? comesBefore(node, position) : placed(node)) break;
        before = node;
      }
      this.list.insertBefore(el, before);
    }
    if (stick) this.scrollToBottom();
  }

  /** Removes what comes before `position` (messages, pushes): the list
   *  then starts there, with no hole. */
  forgetBefore(position) {
    for (const [id, { el }] of this.items) {
      if (placed(el) && comesBefore(el, position)) {
        el.remove();
        this.items.delete(id);
      }
    }
  }

  nearBottom() {
    const s = this.scroller;
    return s.scrollHeight - s.scrollTop - s.clientHeight < STICK_TO_BOTTOM_PX;
  }

  scrollToBottom() {
    this.scroller.scrollTop = this.scroller.scrollHeight;
  }

  /**
   * Closes the hole a `gap` left: between what was shown (`shownUpTo`) and
   * the first message after the gap (`firstAfter`). The newest page of
   * history closes it from below (see loadNewest). A store that has not
   * caught up with the stream yet answers a page that ends before
   * `firstAfter`: the pages after its newest message fill the rest, asked
   * again a few times until they reach it.
   */
  async closeGap(gap) {
    let upTo = await this.loadNewest(gap.shownUpTo); // the newest position stored
    // No message after the gap (yet): nothing is known to be missing.
    const filled = () => !gap.firstAfter || (upTo && comparePositions(upTo, gap.firstAfter) >= 0);
    let wait = GAP_FILL_FIRST_WAIT_MS;
    for (let tries = 1; !filled() && this.gap === gap && !this.closed; tries++) {
      if (tries > GAP_FILL_TRIES) {
        this.alert("Some recent messages cannot be loaded yet: reload the page to see them.");
        break;
      }
      if (tries > 1) {
        await new Promise((resolve) => setTimeout(resolve, wait));
        wait = Math.min(wait * 2, 4_000);
      }
      if (!upTo) {
        upTo = await this.loadNewest(gap.shownUpTo); // nothing was stored
        continue;
      }
      let page;
      do {
        page = await api.history(this.profileId, { after: upTo });
        page.items.forEach((m) => this.addMessage(m));
        upTo = page.items.at(-1)?.position ?? upTo;
      } while (page.next_after && !filled() && this.gap === gap);
    }
    if (this.gap === gap) this.gap = null;
  }

  /**
   * The newest page of history: on open, and after a `gap`, when what is
   * shown ends at `shownUpTo` and the stream goes on from the newest
   * messages. If the page does not reach back to `shownUpTo`, more is
   * missing than a page: the list restarts from the page (older pages
   * load on demand, as after opening) rather than keep a hole. Returns
   * the page's newest position.
   */
  async loadNewest(shownUpTo) {
    this.list.setAttribute("aria-busy", "true");
    try {
      const page = await api.history(this.profileId);
      const oldest = page.items.at(-1)?.position;
      if (!page.next_before) {
        this.nextBefore = null; // the page starts at the beginning
      } else if (!shownUpTo || comparePositions(oldest, shownUpTo) > 0) {
        this.forgetBefore(oldest);
        this.nextBefore = page.next_before;
        this.historyEpoch += 1; // a page of older ones on its way is not wanted
      }
      // Oldest first: each goes below the ones before it, at once.
      for (let i = page.items.length - 1; i >= 0; i--) this.addMessage(page.items[i]);
      this.live.advance(page.items[0]?.position);
      return page.items[0]?.position;
    } finally {
      this.list.removeAttribute("aria-busy");
      this.updateOlderButton();
    }
  }

  /** The page before the oldest one shown, keeping the reader's place. */
  async loadOlder() {
    if (this.loadingOlder || !this.nextBefore) return;
    this.loadingOlder = true;
    this.updateOlderButton();
    this.list.setAttribute("aria-busy", "true");
    const fromBottom = this.scroller.scrollHeight - this.scroller.scrollTop;
    const epoch = this.historyEpoch;
    try {
      const page = await api.history(this.profileId, { before: this.nextBefore });
      if (epoch !== this.historyEpoch) return; // the list restarted meanwhile
      // Newest first: each goes above the ones before it, at once.
      page.items.forEach((m) => this.addMessage(m));
      this.nextBefore = page.next_before ?? null;
      this.scroller.scrollTop = this.scroller.scrollHeight - fromBottom;
    } catch (err) {
      if (err.status !== 401) this.alert(`Cannot load older messages: ${err.message}`);
    } finally {
      this.loadingOlder = false;
      this.list.removeAttribute("aria-busy");
      this.updateOlderButton();
    }
  }

  updateOlderButton() {
    const button = $("load-older");
    const none = this.nextBefore === null;
    button.disabled = none || this.loadingOlder;
    button.textContent = none
      ? "Beginning of the history"
      : this.loadingOlder
        ? "Loading…"
        : "Load older messages";
  }

  // --- sending ------------------------------------------------------------------

  send() {
    const input = $("send-body");
    const body = input.value.trim();
    if (!body) return;
    if (this.live.state?.state !== "live") {
      this.alert("Not connected yet: the message is still in the box.");
      return;
    }
    input.value = "";
    this.sendBody(body);
  }

  /** Shows `body` as "sending" at the end of the list, then as sent (still
   *  at the end: its position comes with the message itself, which then
   *  takes its place) or as failed, with a button to try again: with the
   *  same idempotency key, so that a send whose ack was lost is not sent
   *  twice. */
  sendBody(body, idempotencyKey = newKey()) {
    const el = document.createElement("li");
    el.className = "msg mine pending";
    const meta = document.createElement("div");
    meta.className = "meta";
    meta.textContent = `${this.me.name} · sending…`;
    const text = document.createElement("p");
    text.className = "body";
    text.textContent = body;
    el.append(meta, text);
    this.list.append(el);
    this.scrollToBottom();
    this.live.send(body, idempotencyKey).then(
      ({ id }) => {
        if (this.items.has(id)) {
          el.remove(); // the message itself came first
          return;
        }
        el.classList.remove("pending");
        el.dataset.id = id;
        meta.textContent = `${this.me.name} · sent`;
        this.items.set(id, { el, provisional: true });
      },
      (err) => {
        el.classList.replace("pending", "failed");
        meta.textContent = `Not sent: ${err.message}`;
        const again = document.createElement("button");
        again.type = "button";
        again.textContent = "Try again";
        again.addEventListener("click", () => {
          el.remove();
          this.sendBody(body, idempotencyKey);
        });
        meta.append(" ", again);
      },
    );
  }

  // --- presence -------------------------------------------------------------------

  renderPresence() {
    const list = $("presence");
    list.replaceChildren(
      ...[...this.presence].map((userId) => {
        const li = document.createElement("li");
        li.dataset.user = userId;
        const you = userId === this.me.id ? " (you)" : "";
        li.textContent = userId.slice(0, 8) + you;
        api.userName(userId).then((name) => (li.textContent = name + you));
        return li;
      }),
    );
    if (this.presenceTruncated) {
      const more = document.createElement("li");
      more.className = "more";
      more.textContent = "and more";
      list.append(more);
    }
  }
}

/** Whether `node` has its place in the order: a message (`data-position`)
 *  or a push (`data-after`), not a send without its position yet. */
function placed(node) {
  return node.dataset.position !== undefined || node.dataset.after !== undefined;
}

/** Whether `node` comes before the message at `position`: a message
 *  before it, or a push that arrived after an earlier message (or before
 *  any). A send without a position comes after everything. */
function comesBefore(node, position) {
  const key = node.dataset.position ?? node.dataset.after;
  if (key === undefined) return false;
  return key === "" || comparePositions(key, position) < 0;
}

/** A new idempotency key: 128 random bits as hex (crypto.randomUUID needs
 *  a secure context; getRandomValues does not). */
function newKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}
