// One live session on a profile, kept open: WebSocket, or SSE plus POST
// when WebSocket does not get through; reconnects with backoff and asks the
// edge for what it missed: the messages after the newest position seen.
//
// Positions. Every profile has one order; each message carries its place
// in it, `position`, written "<offset>-<check>" (e.g. "1234-9f3a2c1d"):
// offsets grow with the order but are not consecutive, and only they
// compare (comparePositions). A stream reopened after a position gets
// exactly the messages after it, in order, none twice, or a `gap` event
// first when the edge cannot (see chat.js).
//
// States reported to `onState`:
//   connecting    opening a stream
//   live          the edge sent `ready` (transport, edgeId say where)
//   reconnecting  waiting `retryAt` before the next try
//   already-open  the edge refused: this user has the profile open elsewhere
//                 (another tab or device); retried with backoff, because
//                 the lock of a crashed edge's session lingers until its TTL
//   not-member    final: the user is not (or no longer) a member
//   logged-out    final: the login ended (logged out here or elsewhere,
//                 expired): a stream answered 401, the edge ended the
//                 stream saying so, or the api said so once a stream was
//                 lost; `code` is the api's or edge's reason when known
//   stopped       final: stop() was called

import { HttpError, errorOf, postMessage } from "./api.js";
import { readEvents } from "./sse.js";

const CLOSE_GOING_AWAY = 1001;
const CLOSE_UNAUTHORIZED = 4401;
const CLOSE_NOT_A_MEMBER = 4403;
const CLOSE_ALREADY_LIVE = 4409;

/** Failed WebSocket attempts in a row (never reaching `ready`) before an
 *  "auto" client falls back to SSE for the rest of the page's life: few
 *  when WebSocket never worked from this page (a proxy that blocks it),
 *  more when it did (a dead edge's upgrades fail too until the proxy's
 *  health check notices, which is no reason to give WebSocket up). */
const WS_FAILURES_BEFORE_SSE = 3;
const WS_FAILURES_BEFORE_SSE_ONCE_WORKED = 8;
const BACKOFF_BASE_MS = 500;
const BACKOFF_MAX_MS = 15_000;
/** Shorter cap while another session holds the profile: it is usually a
 *  tab being closed or a crashed edge's lock expiring within seconds. */
const ALREADY_OPEN_MAX_MS = 4_000;
/** A stream with nothing received for this long is presumed dead (the edge
 *  sends SSE keep-alives every 15 s; WebSocket is pinged below). */
const SILENCE_LIMIT_MS = 45_000;
const PING_AFTER_MS = 20_000;
/** The reasons (401 codes, or an edge's last `error` event) that mean the
 *  login ended: trying again is of no use until someone logs in. */
const SESSION_ENDED = new Set(["unauthenticated", "session_ended", "session_expired", "invalid_session"]);

/**
 * Compares two positions by their offsets (the decimal number before the
 * "-"): negative when `a` comes first, 0 for the same place, positive when
 * `a` comes after. Offsets are u64 and may pass 2^53, so they are compared
 * as digit strings (no leading zeros: the longer is the greater), exactly.
 */
export function comparePositions(a, b) {
  const x = offsetOf(a);
  const y = offsetOf(b);
  if (x.length !== y.length) return x.length - y.length;
  return x < y ? -1 : x > y ? 1 : 0;
}

function offsetOf(position) {
  const dash = position.indexOf("-");
  return dash < 0 ? position : position.slice(0, dash);
}

export class LiveConnection {
  /**
   * @param {object} options
   * @param {string} options.profileId
   * @param {"auto"|"ws"|"sse"} options.transport  "ws"/"sse" force one
   * @param {(event: object) => void} options.onEvent  every server event
   * @param {(state: object) => void} options.onState
   * @param {() => Promise<unknown>} options.checkSession  rejects with a 401
   *   HttpError when the login has ended (`GET /api/me`)
   */
  constructor({ profileId, transport = "auto", onEvent, onState, checkSession = async () => {} }) {
    this.profileId = profileId;
    this.forced = transport === "auto" ? null : transport;
    this.transport = this.forced || (window.WebSocket ? "ws" : "sse");
    this.lastPosition = undefined; // the newest position shown: see advance()
    this.onEvent = onEvent;
    this.onState = onState;
    this.checkSession = checkSession;
    this.failures = 0; // tries in a row that did not reach `ready`
    this.wsFailures = 0;
    this.wsWorked = false;
    this.stream = null; // the open WebSocket or SSE reader, see close()
    this.retryTimer = null;
    this.watchdog = null;
    this.pending = new Map(); // WebSocket sends awaiting ack: ref -> {resolve, reject}
    this.refs = 0;
    this.stopped = false;
    this.state = null;
  }

  start() {
    this.stopped = false;
    this.connect();
  }

  /** Notes that the messages up to `position` are shown (a message from a
   *  stream, or the newest page of history): the next stream asks for
   *  what comes after the newest such position. */
  advance(position) {
    if (position && (!this.lastPosition || comparePositions(position, this.lastPosition) > 0)) {
      this.lastPosition = position;
    }
  }

  /** Closes the stream for good (leaving the page or the profile). */
  stop() {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    this.close();
    this.setState({ state: "stopped" });
  }

  /** Sends `body`; resolves with `{id}` once Kafka has it. A retry of a
   *  send passes the same `idempotencyKey`: the edge answers the first
   *  send's id and does not send it twice (the first may have gone through
   *  with its ack lost). */
  send(body, idempotencyKey) {
    if (this.state?.state !== "live") {
      return Promise.reject(new Error("Not connected: wait until the status says live."));
    }
    const ref = `c${++this.refs}`;
    if (this.transport === "sse") {
      return postMessage(this.profileId, body, ref, idempotencyKey);
    }
    const socket = this.stream.socket;
    return new Promise((resolve, reject) => {
      this.pending.set(ref, { resolve, reject });
      socket.send(JSON.stringify({ type: "send", body, ref, idempotency_key: idempotencyKey }));
    });
  }

  // --- connecting ---------------------------------------------------------

  connect() {
    clearTimeout(this.retryTimer);
    if (this.stopped) return;
    // While the profile is open elsewhere, each try waits on the edge for
    // the other session to let go (up to a second): keep saying why rather
    // than flicker to "connecting".
    if (this.state?.state !== "already-open") {
      this.setState({ state: "connecting", transport: this.transport });
    }
    if (this.transport === "ws") this.connectWebSocket();
    else this.connectSse();
  }

  connectWebSocket() {
    const url = new URL(`/live/${encodeURIComponent(this.profileId)}/ws`, location.href);
    url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
    if (this.lastPosition) url.searchParams.set("last_position", this.lastPosition);
    const socket = new WebSocket(url);
    const stream = { socket, ready: false, refusal: null };
    this.stream = stream;
    socket.onmessage = (message) => {
      if (this.stream !== stream) return;
      this.heard();
      let event;
      try {
        event = JSON.parse(message.data);
      } catch {
        return; // not ours to understand; the edge only sends JSON
      }
      if (event.type === "error" && !event.ref) {
        // Sent just before the edge closes with 4409, 4403 or 4401.
        stream.refusal = event.code;
      }
      if (event.type === "ack") this.settle(event.ref, event, null);
      if (event.type === "error" && event.ref) this.settle(event.ref, null, event);
      this.received(event);
    };
    socket.onclose = (close) => {
      if (this.stream !== stream) return; // we closed it ourselves
      this.stream = null;
      this.stopWatchdog();
      this.failPending("The connection closed before the edge confirmed the message.");
      this.webSocketClosed(close, stream);
    };
    this.startWatchdog(() => {
      if (socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify({ type: "ping" }));
    });
  }

  webSocketClosed(close, stream) {
    if (close.code === CLOSE_ALREADY_LIVE || stream.refusal === "already_live") {
      return this.retry("already-open");
    }
    if (close.code === CLOSE_NOT_A_MEMBER || stream.refusal === "not_a_member") {
      return this.setState({ state: "not-member" });
    }
    if (close.code === CLOSE_UNAUTHORIZED || SESSION_ENDED.has(stream.refusal)) {
      return this.setState({ state: "logged-out", code: stream.refusal ?? undefined });
    }
    if (!stream.ready) {
      // A refused upgrade (401, 403, 503, a dead edge behind the proxy)
      // looks the same as no WebSocket at all to a page: 1006, no reason.
      this.wsFailures += 1;
      const limit = this.wsWorked ? WS_FAILURES_BEFORE_SSE_ONCE_WORKED : WS_FAILURES_BEFORE_SSE;
      if (!this.forced && this.wsFailures >= limit) {
        this.transport = "sse";
        return this.lost("WebSocket is not getting through: using SSE");
      }
    }
    if (close.code === CLOSE_GOING_AWAY) return this.retry("reconnecting", { reason: "the edge is going away" });
    this.lost("connection lost");
  }

  async connectSse() {
    const controller = new AbortController();
    const stream = { controller, ready: false, refusal: null };
    this.stream = stream;
    const headers = { accept: "text/event-stream" };
    // What EventSource would send by itself: the last event's `id:`, which
    // the edge sets to the message's position.
    if (this.lastPosition) headers["last-event-id"] = this.lastPosition;
    let response;
    try {
      const url = `/live/${encodeURIComponent(this.profileId)}/sse`;
      response = await fetch(url, { headers, signal: controller.signal, cache: "no-store" });
    } catch {
      if (this.stream === stream) this.sseEnded(stream, "connection failed");
      return;
    }
    if (this.stream !== stream) return;
    if (!response.ok) {
      this.stream = null;
      return this.refused(await errorOf(response));
    }
    this.startWatchdog(null);
    try {
      await readEvents(
        response.body,
        ({ data }) => {
          if (this.stream !== stream) return;
          const event = JSON.parse(data);
          if (event.type === "error" && !event.ref) stream.refusal = event.code;
          this.received(event);
        },
        () => this.stream === stream && this.heard(),
      );
    } catch {
      // Aborted by us, or the connection broke: told apart below.
    }
    if (this.stream === stream) this.sseEnded(stream, "connection lost");
  }

  sseEnded(stream, reason) {
    this.stream = null;
    this.stopWatchdog();
    if (stream.refusal === "not_a_member") return this.setState({ state: "not-member" });
    if (SESSION_ENDED.has(stream.refusal)) return this.setState({ state: "logged-out", code: stream.refusal });
    // The edge ends SSE streams when it shuts down (come back), and when
    // the login ended (do not).
    this.lost(reason);
  }

  /** An HTTP refusal of a stream (SSE shows statuses; WebSocket cannot). */
  refused(err) {
    switch (err.status) {
      case 401:
        return this.setState({ state: "logged-out", code: err.code });
      case 403:
      case 404:
        return this.setState({ state: "not-member", message: err.message });
      case 409:
        return this.retry("already-open");
      case 503:
        return this.retry("reconnecting", {
          reason: err.message,
          delayMs: (err.retryAfterSecs ?? 2) * 1000 * (1 + Math.random() * 0.5),
        });
      default:
        return this.retry("reconnecting", { reason: err.message });
    }
  }

  // --- events -------------------------------------------------------------

  received(event) {
    if (event.type === "message") {
      this.advance(event.position);
    } else if (event.type === "ready") {
      this.stream.ready = true;
      this.failures = 0;
      if (this.transport === "ws") {
        this.wsFailures = 0;
        this.wsWorked = true;
      }
      this.setState({ state: "live", transport: this.transport, edgeId: event.edge_id });
    } else if (event.type === "reconnect") {
      // The edge drains or the session reached its lifetime: the edge
      // already spreads clients over time with after_ms.
      this.close();
      this.retry("reconnecting", {
        reason: event.reason || "the edge asked to reconnect",
        delayMs: (event.after_ms ?? 0) + Math.random() * 250,
      });
      return;
    }
    // Refusals become states, and sends' answers settle their promises:
    // the view gets the rest.
    const refusal =
      event.type === "error" &&
      !event.ref &&
      (["already_live", "not_a_member"].includes(event.code) || SESSION_ENDED.has(event.code));
    const answer = event.type === "ack" || (event.type === "error" && event.ref);
    if (!refusal && !answer && event.type !== "pong") this.onEvent(event);
  }

  // --- retrying -----------------------------------------------------------

  /**
   * A stream was lost, or a WebSocket never opened, without saying why. A
   * refused upgrade looks to a page like any broken connection (1006, no
   * status), a 401 too, and a stream ended because its login ended may
   * close like any other: so ask the api whether the login is still on
   * before trying again. Unsure (the api is slow or down): try again.
   */
  async lost(reason) {
    this.setState({ state: "reconnecting", transport: this.transport, reason });
    let ended = null;
    try {
      await this.checkSession();
    } catch (err) {
      if (err.status === 401) ended = err;
    }
    if (this.stopped || this.stream) return; // stopped, or retried meanwhile
    if (ended) return this.setState({ state: "logged-out", code: ended.code });
    this.retry("reconnecting", { reason });
  }

  /** Waits, then connects again. `state` is "reconnecting" or
   *  "already-open"; the delay doubles with each failure, with jitter. */
  retry(state, { reason, delayMs } = {}) {
    if (this.stopped) return;
    if (delayMs === undefined) {
      const cap = state === "already-open" ? ALREADY_OPEN_MAX_MS : BACKOFF_MAX_MS;
      const full = Math.min(cap, BACKOFF_BASE_MS * 2 ** this.failures);
      delayMs = full / 2 + Math.random() * (full / 2);
      this.failures += 1;
    }
    const retryAt = Date.now() + delayMs;
    this.setState({ state, transport: this.transport, retryAt, reason });
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this.connect(), delayMs);
  }

  /** Connects again now (the "retry now" button, the browser coming online). */
  retryNow() {
    const final = ["not-member", "logged-out"].includes(this.state?.state);
    if (!this.stopped && !this.stream && !final) this.connect();
  }

  // --- liveness -----------------------------------------------------------

  heard() {
    this.lastHeard = Date.now();
  }

  /** Closes a stream that went silent; `ping` (WebSocket) asks the edge
   *  for a sign of life first. */
  startWatchdog(ping) {
    this.heard();
    this.stopWatchdog();
    this.watchdog = setInterval(() => {
      const silent = Date.now() - this.lastHeard;
      if (silent > SILENCE_LIMIT_MS) {
        const stream = this.stream;
        this.close();
        if (stream) this.retry("reconnecting", { reason: "no answer from the edge" });
      } else if (ping && silent > PING_AFTER_MS) {
        ping();
      }
    }, 5_000);
  }

  stopWatchdog() {
    clearInterval(this.watchdog);
    this.watchdog = null;
  }

  // --- closing ------------------------------------------------------------

  /** Closes the current stream, if any, without reconnecting. */
  close() {
    const stream = this.stream;
    this.stream = null;
    this.stopWatchdog();
    this.failPending("The connection closed before the edge confirmed the message.");
    if (stream?.socket) stream.socket.close(1000, "client closing");
    if (stream?.controller) stream.controller.abort();
  }

  settle(ref, ack, error) {
    const waiter = this.pending.get(ref);
    if (!waiter) return;
    this.pending.delete(ref);
    if (ack) waiter.resolve({ id: ack.id });
    else waiter.reject(new HttpError(0, error.code, error.message));
  }

  failPending(message) {
    for (const { reject } of this.pending.values()) reject(new Error(message));
    this.pending.clear();
  }

  setState(state) {
    this.state = state;
    this.onState(state);
  }
}
