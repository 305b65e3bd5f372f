// REST calls to the api under /api (accounts, users, profiles, history;
// services/api/openapi.json) and the edge's sends. Everything is
// same-origin through Traefik, so the session cookie (HttpOnly: the page
// never sees it) and the sticky `rill_edge` cookie travel by themselves,
// and the browser's `Origin` on each POST tells the api it comes from this
// page.

/** A failed request: its HTTP status and the `{error, message}` body. */
export class HttpError extends Error {
  constructor(status, code, message, retryAfterSecs) {
    super(message || `HTTP ${status}`);
    this.status = status;
    this.code = code;
    this.retryAfterSecs = retryAfterSecs;
  }
}

/** Called with the HttpError when a request made as the signed-in user
 *  answers 401: the login ended (logged out in another tab, "log out
 *  everywhere" elsewhere, expired). */
let onSessionEnded = () => {};

export function whenSessionEnds(callback) {
  onSessionEnded = callback;
}

/**
 * The JSON answer of `path`, or an HttpError. `signedIn: false` marks the
 * calls whose 401 means something else than "the login ended" (logging
 * in, asking who is signed in): they only throw.
 */
export async function request(path, { method = "GET", body, signal, signedIn = true } = {}) {
  const init = { method, signal, headers: {}, credentials: "same-origin" };
  if (body !== undefined) {
    init.headers["content-type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  if (!response.ok) {
    const err = await errorOf(response);
    if (signedIn && err.status === 401) onSessionEnded(err);
    throw err;
  }
  return response.status === 204 ? null : response.json();
}

/** The HttpError a failed response stands for (reads its body). */
export async function errorOf(response) {
  let code = "http_" + response.status;
  let message = `${response.status} ${response.statusText}`;
  try {
    const body = await response.json();
    code = body.error || code;
    message = body.message || message;
  } catch {
    // Not JSON (a proxy's error page, say): keep the status line.
  }
  const retryAfter = Number.parseInt(response.headers.get("retry-after") || "", 10);
  return new HttpError(response.status, code, message, Number.isNaN(retryAfter) ? undefined : retryAfter);
}

const enc = encodeURIComponent;

// --- accounts -----------------------------------------------------------------
// The password goes in a POST body only: never in an address, never in
// storage, never in a log line.

/** Makes an account and signs it in (the answer sets the session cookie);
 *  the new user. */
export const signUp = (name, password) =>
  request("/api/signup", { method: "POST", body: { name, password }, signedIn: false });

/** Signs in; the user. 401 `bad_credentials` whatever was wrong. */
export const logIn = (name, password) =>
  request("/api/login", { method: "POST", body: { name, password }, signedIn: false });

/** Ends this login (its streams on every edge too) and clears the cookie. */
export const logOut = () => request("/api/logout", { method: "POST", signedIn: false });

/** Ends every login of this user, in every browser. */
export const logOutEverywhere = () =>
  request("/api/logout/everywhere", { method: "POST", signedIn: false });

/** The signed-in user, or an HttpError 401 when no one is. */
export const me = ({ signal } = {}) => request("/api/me", { signal, signedIn: false });

// --- users, profiles, history -------------------------------------------------

export const getUser = (userId) => request(`/api/users/${enc(userId)}`);
export const getProfile = (profileId) => request(`/api/profiles/${enc(profileId)}`);
export const userProfiles = (userId) => request(`/api/users/${enc(userId)}/profiles?limit=200`);

/** One page of a profile's history in its order, each item with its
 *  `position`: newest first, the newest or the one before position
 *  `before` (a page's `next_before`, null at the beginning); or, with
 *  `after`, oldest first from the message after that position on (then
 *  `next_after`, null when there was no more yet). */
export function history(profileId, { before, after, limit = 50 } = {}) {
  const query = new URLSearchParams({ limit: String(limit) });
  if (before) query.set("before", before);
  if (after) query.set("after", after);
  return request(`/api/profiles/${enc(profileId)}/messages?${query}`);
}

/** Sends `body` on `profileId` with a POST (the SSE clients' way); the
 *  message's id once Kafka has it. */
export const postMessage = (profileId, body, ref, idempotencyKey) =>
  request(`/live/${enc(profileId)}/messages`, {
    method: "POST",
    body: { body, ref, idempotency_key: idempotencyKey },
  });

const names = new Map(); // user id -> Promise<string>

/** A user's display name, asked once per page. */
export function userName(userId) {
  if (!names.has(userId)) {
    const name = getUser(userId).then(
      (user) => user.name,
      (err) => {
        // Forget failures other than "no such user", so a later call retries.
        if (!(err instanceof HttpError && err.status === 404)) names.delete(userId);
        return "Unknown user";
      },
    );
    names.set(userId, name);
  }
  return names.get(userId);
}

/** Seeds the name cache (from a list we already fetched). */
export function knowName(userId, name) {
  names.set(userId, Promise.resolve(name));
}
