// Server-Sent Events read with fetch() instead of EventSource: EventSource
// hides the HTTP status, and the client must tell 401 (log in again), 403
// (not a member), 409 (already open elsewhere) and 503 (retry after) apart.
// The price is setting Last-Event-ID ourselves (live.js: the newest
// position seen, which the edge writes as each message event's `id:`),
// which is also what lets the edge replay what we missed.

/**
 * Reads the SSE stream `body` (a ReadableStream of bytes) and calls
 * `onEvent({event, id, data})` for each event, until the stream ends or
 * fails. Calls `onActivity()` for every chunk, keep-alive comments
 * included, so the caller can notice a stream that went silent.
 */
export async function readEvents(body, onEvent, onActivity = () => {}) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  const parser = new SseParser(onEvent);
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    onActivity();
    parser.push(value);
  }
}

/** The event-stream format (HTML spec, "Parsing an event stream"), for
 *  the fields Rill uses: event, id, data; comments are skipped. */
export class SseParser {
  constructor(onEvent) {
    this.onEvent = onEvent;
    this.buffer = "";
    this.reset();
  }

  reset() {
    this.event = "";
    this.id = undefined;
    this.data = [];
  }

  push(text) {
    this.buffer += text;
    // A line ends with \n, \r\n or \r; a trailing \r may be half of \r\n.
    const lines = this.buffer.split(/\r\n|\n|\r(?!$)/);
    this.buffer = lines.pop();
    for (const line of lines) this.line(line);
  }

  line(line) {
    if (line === "") {
      if (this.data.length > 0) {
        this.onEvent({ event: this.event || "message", id: this.id, data: this.data.join("\n") });
      }
      this.reset();
      return;
    }
    if (line.startsWith(":")) return; // a comment: the edge's keep-alive
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") this.event = value;
    else if (field === "id") this.id = value;
    else if (field === "data") this.data.push(value);
  }
}
