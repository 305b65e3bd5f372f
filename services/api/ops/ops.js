// The live operations page. It follows GET /api/ops/stream with fetch()
// rather than EventSource, which cannot send the X-Api-Key header; the key
// stays in this module's memory only. Each `snapshot` event updates the
// tables and appends a point to each small chart.

/** Points kept per chart: five minutes at the default two seconds. */
const HISTORY = 150;
/** Wait before following the stream again after it ended or failed. */
const RETRY_MS = 2000;

const history = new Map(); // chart name -> numbers, oldest first
let apiKey = "";
let generation = 0; // a new key stops the previous stream's loop

const $ = (selector) => document.querySelector(selector);

function setStatus(text, kind = "") {
  const status = $("#status");
  status.textContent = text;
  status.className = `status ${kind}`;
}

$("#key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  apiKey = $("#api-key").value.trim();
  $("#api-key").value = "";
  history.clear();
  follow(++generation);
});

async function follow(mine) {
  while (mine === generation) {
    setStatus("connecting…");
    try {
      const response = await fetch("/api/ops/stream", {
        headers: { "X-Api-Key": apiKey, Accept: "text/event-stream" },
        cache: "no-store",
      });
      if (response.status === 401 || response.status === 403) {
        setStatus(`the key was refused (${response.status})`, "failed");
        return;
      }
      if (!response.ok) throw new Error(`the api answered ${response.status}`);
      setStatus("live", "live");
      await readEvents(response.body, (event) => {
        if (mine === generation && event.event === "snapshot") show(JSON.parse(event.data));
      });
      if (mine !== generation) return;
      setStatus("the stream ended; again shortly", "failed");
    } catch (err) {
      setStatus(`${err.message}; again shortly`, "failed");
    }
    await new Promise((resolve) => setTimeout(resolve, RETRY_MS));
  }
}

/** Calls onEvent({event, data}) for each event of an SSE body. */
async function readEvents(body, onEvent) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let event = "";
  let data = [];
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    const lines = buffer.split(/\r\n|\n|\r(?!$)/);
    buffer = lines.pop();
    for (const line of lines) {
      if (line === "") {
        if (data.length > 0) onEvent({ event: event || "message", data: data.join("\n") });
        event = "";
        data = [];
      } else if (!line.startsWith(":")) {
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        let text = colon < 0 ? "" : line.slice(colon + 1);
        if (text.startsWith(" ")) text = text.slice(1);
        if (field === "event") event = text;
        if (field === "data") data.push(text);
      }
    }
  }
}

function show(snapshot) {
  $("#key-form").hidden = true;
  $("#board").hidden = false;
  const when = new Date(snapshot.at_ms).toLocaleTimeString();
  setStatus(`live, ${when}`, "live");

  const health = [
    ["Redis", snapshot.redis],
    ["Store", snapshot.store],
  ];
  if (snapshot.persist) {
    health.push(["Persist", { ok: snapshot.persist.up, error: snapshot.persist.error }]);
  }
  replaceRows("#health", health.map(([name, h]) => row(
    text(name),
    badge(h.ok ? "ok" : "down", h.ok ? "ok" : "down"),
    h.ok ? text(h.ms === undefined ? "" : `${h.ms.toFixed(1)} ms`) : errorText(h.error),
  )));

  const lag = Object.entries(snapshot.persist?.lag ?? {});
  replaceRows("#lag", lag.map(([topic, value]) => {
    const r = row(text(topic), number(value), chart(`lag:${topic}`, value));
    r.dataset.topic = topic;
    return r;
  }));

  replaceRows("#edges", snapshot.edges.map((edge) => {
    const r = row(
      edge.error ? cellOf(text(edge.url), errorText(edge.error)) : text(edge.url),
      edge.up ? badge(edge.availability ?? "unknown", edge.availability ?? "") : badge("down", "down"),
      text(edge.ready ? "yes" : "no"),
      withChart(`sessions:${edge.url}`, edge.sessions, 0, "sessions"),
      withChart(`sends:${edge.url}`, edge.sends_per_sec, 1, "sends"),
      withChart(`deliveries:${edge.url}`, edge.deliveries_per_sec, 1, "deliveries"),
    );
    r.dataset.edge = edge.url;
    r.dataset.availability = edge.up ? (edge.availability ?? "unknown") : "down";
    return r;
  }));
}

function replaceRows(table, rows) {
  $(`${table} tbody`).replaceChildren(...rows);
}

function row(...cells) {
  const tr = document.createElement("tr");
  for (const cell of cells) {
    const td = document.createElement("td");
    td.append(cell);
    if (cell.classList?.contains("cell")) td.className = "number";
    tr.append(td);
  }
  return tr;
}

function text(value) {
  return document.createTextNode(String(value));
}

function errorText(message) {
  const span = document.createElement("span");
  span.className = "error";
  span.textContent = message ?? "";
  return span;
}

function cellOf(...parts) {
  const span = document.createElement("span");
  span.append(...parts.flatMap((p) => [p, " "]));
  return span;
}

function badge(label, kind) {
  const span = document.createElement("span");
  span.className = `badge ${kind}`;
  span.textContent = label;
  return span;
}

function format(value, digits) {
  return value === null || value === undefined ? "–" : value.toFixed(digits);
}

function number(value) {
  const span = document.createElement("span");
  span.textContent = format(value, 0);
  return span;
}

/** A number and the chart of its last minutes, side by side. */
function withChart(name, value, digits, kind) {
  const cell = document.createElement("span");
  cell.className = `cell ${kind}`;
  const figure = document.createElement("span");
  figure.className = "value";
  figure.textContent = format(value, digits);
  cell.append(chart(name, value), figure);
  return cell;
}

const SVG = "http://www.w3.org/2000/svg";

/** Appends `value` to the history of `name`; an SVG line of it. */
function chart(name, value) {
  const points = history.get(name) ?? [];
  if (typeof value === "number") points.push(value);
  if (points.length > HISTORY) points.splice(0, points.length - HISTORY);
  history.set(name, points);

  const width = 120;
  const height = 28;
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("class", "chart");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("preserveAspectRatio", "none");
  const top = Math.max(1, ...points);
  // At least a minute wide at the default interval, so that a new chart
  // shows a line at once and grows to five minutes.
  const step = width / (Math.max(points.length, 30) - 1);
  const start = width - step * (points.length - 1);
  const line = document.createElementNS(SVG, "polyline");
  line.setAttribute(
    "points",
    points
      .map((v, i) => `${(start + i * step).toFixed(1)},${(height - 2 - (v / top) * (height - 4)).toFixed(1)}`)
      .join(" "),
  );
  const title = document.createElementNS(SVG, "title");
  title.textContent = `${name}: last ${points.length} points, at most ${top}`;
  const background = document.createElementNS(SVG, "rect");
  background.setAttribute("width", width);
  background.setAttribute("height", height);
  svg.append(title, background, line);
  return svg;
}
