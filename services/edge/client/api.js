// REST calls: the edge's login and sends, and the api under /api (users,
// profiles, history; services/api/openapi.json). Everything is same-origin
// through Traefik, so the session cookie and the sticky `rill_edge` cookie
// travel by themselves.

/** A failed request: its HTTP status and the `{error, message}` body. */
export class HttpError extends Error {
  constructor(status, code, message, retryAfterSecs) {
    super(message || `HTTP ${status}`);
    this.status = status;
    this.code = code;
    this.retryAfterSecs = retryAfterSecs;
  }
}

/** The JSON answer of `path`, or an HttpError. */
export async function request(path, { method = "GET", body, signal } = {}) {
  const init = { method, signal, headers: {} };
  if (body !== undefined) {
    init.headers["content-type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  if (!response.ok) {
    throw await errorOf(response);
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

export const login = (userId) => request("/login", { method: "POST", body: { user_id: userId } });
export const logout = () => request("/logout", { method: "POST" });

export const getUser = (userId) => request(`/api/users/${enc(userId)}`);
export const getProfile = (profileId) => request(`/api/profiles/${enc(profileId)}`);
export const userProfiles = (userId) => request(`/api/users/${enc(userId)}/profiles?limit=200`);
export const createTestData = () =>
  request("/api/testdata", { method: "POST", body: { users: 20, profiles: 4 } });

/** Users to pick from at login: those in several profiles first, then the
 *  first page of all users, without repeats. */
export async function usersToPick() {
  const [suggested, all] = await Promise.all([
    request("/api/users/suggested?limit=20"),
    request("/api/users?limit=50"),
  ]);
  const seen = new Set();
  return [...suggested.items, ...all.items].filter((u) => !seen.has(u.id) && seen.add(u.id));
}

/** One page of a profile's history, newest first, older than `before`. */
export function history(profileId, { before, limit = 50 } = {}) {
  const query = new URLSearchParams({ limit: String(limit) });
  if (before) query.set("before", before);
  return request(`/api/profiles/${enc(profileId)}/messages?${query}`);
}

/** Sends `body` on `profileId` with a POST (the SSE clients' way); the
 *  message's id once Kafka has it. */
export const postMessage = (profileId, body, ref) =>
  request(`/live/${enc(profileId)}/messages`, { method: "POST", body: { body, ref } });

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
