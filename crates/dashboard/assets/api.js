// The JSON API client: the session (cookie + CSRF token), errors in the
// API's own words, pages of lists.
//
// The session cookie is HttpOnly: the page never sees it, the browser sends
// it. What the page keeps (in sessionStorage: this tab only) is the CSRF
// token that sign-in returned, sent as X-CSRF-Token with every request that
// is not a GET, and who is signed in, for the header.

const BASE = "/api/v1";
const CSRF_KEY = "projsync.csrf";
const WHO_KEY = "projsync.whoami";

/** The message shown on the sign-in page after any 401 (the contract's words). */
export const SESSION_ENDED =
  "Your session has ended or your API key was revoked or expired. Sign in again.";

/** An API error: `message` is the API's own `error.message` when it sent one. */
export class ApiError extends Error {
  constructor(status, code, message, { missing = false } = {}) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    /** The endpoint does not exist on this server (a 404/405 without an error body). */
    this.missing = missing;
    /** Already dealt with (a 401 sent the page to sign-in): show nothing more. */
    this.handled = false;
  }
}

let onUnauthorized = () => {};

/** What to do on a 401: the app sends the page to its sign-in form. */
export function setUnauthorizedHandler(fn) {
  onUnauthorized = fn;
}

export const session = {
  get csrf() {
    return sessionStorage.getItem(CSRF_KEY);
  },
  /** `{key_id, tenant, role, expires_at}` of the signed-in key, or null. */
  get who() {
    try {
      return JSON.parse(sessionStorage.getItem(WHO_KEY) || "null");
    } catch {
      return null;
    }
  },
  set who(value) {
    sessionStorage.setItem(WHO_KEY, JSON.stringify(value));
  },
  get signedIn() {
    return Boolean(this.csrf);
  },
  clear() {
    sessionStorage.removeItem(CSRF_KEY);
    sessionStorage.removeItem(WHO_KEY);
  },
};

/** `?a=1&b=2` from an object, leaving out null and undefined values. */
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== null && v !== undefined && v !== "") q.set(k, String(v));
  }
  const text = q.toString();
  return text ? `?${text}` : "";
}

/**
 * Call the API. Resolves to `{data, headers, status}`; rejects with an
 * ApiError carrying the API's message. `body` is sent as JSON; every
 * request but a GET carries `Content-Type: application/json` (the API
 * wants it on every POST, even an empty one) and the CSRF token.
 * `auth: false` leaves a 401 to the caller (sign-in).
 */
export async function request(method, path, body, { auth = true, signal } = {}) {
  const headers = { Accept: "application/json" };
  const init = { method, headers, credentials: "same-origin", cache: "no-store", signal };
  if (method !== "GET") {
    headers["Content-Type"] = "application/json";
    const csrf = session.csrf;
    if (csrf) headers["X-CSRF-Token"] = csrf;
    if (body !== undefined) init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(BASE + path, init);
  } catch (e) {
    if (e && e.name === "AbortError") throw e;
    throw new ApiError(0, "network", `Cannot reach the projsync API (${e && e.message ? e.message : e}).`);
  }
  let data = null;
  const type = response.headers.get("Content-Type") || "";
  if (response.status !== 204 && type.includes("json")) {
    try {
      data = await response.json();
    } catch {
      data = null;
    }
  }
  if (response.ok) return { data, headers: response.headers, status: response.status };

  const apiError = data && data.error && typeof data.error.message === "string" ? data.error : null;
  const error = apiError
    ? new ApiError(response.status, apiError.code, apiError.message)
    : new ApiError(
        response.status,
        "http",
        `${method} ${BASE}${path} answered ${response.status} ${response.statusText}`.trim() +
          ([404, 405].includes(response.status) ? " (this server does not have that endpoint)" : ""),
        { missing: [404, 405].includes(response.status) },
      );
  if (response.status === 401 && auth) {
    error.handled = true;
    onUnauthorized(error);
  }
  throw error;
}

export const get = (path, opts) => request("GET", path, undefined, opts).then((r) => r.data);
export const post = (path, body, opts) => request("POST", path, body, opts).then((r) => r.data);

/** One page of a list: `{items, next}`, `next` being the cursor of the following page or null. */
export async function page(path, params = {}, opts) {
  const r = await request("GET", path + query(params), undefined, opts);
  return { items: r.data || [], next: r.headers.get("X-Next-Cursor") };
}

/** Open a session with an API key; keeps its CSRF token for this tab. */
export async function signIn(key) {
  const { data } = await request("POST", "/session", { key }, { auth: false });
  sessionStorage.setItem(CSRF_KEY, data.csrf_token);
  session.who = {
    key_id: data.key_id,
    tenant: data.tenant,
    role: data.role,
    expires_at: data.expires_at,
  };
  return data;
}

/** Close the session (the cookie stops working at once), then forget it here. */
export async function signOut() {
  try {
    await request("DELETE", "/session", undefined, { auth: false });
  } finally {
    session.clear();
  }
}
