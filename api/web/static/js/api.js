// The REST API from the page: same origin, the sign-in cookie, X-CSRF-Token on unsafe methods.
// The session token is the HttpOnly keel_session cookie: this code never sees or stores it.

export const root = document.body.dataset.root || "";

export class ApiError extends Error {
  constructor(status, code, message, requestId) {
    super(message || code || `HTTP ${status}`);
    this.status = status;
    this.code = code || "";
    this.requestId = requestId || "";
  }
}

/** The readable CSRF cookie of this sign-in (docs/identity.md). */
export function csrfToken() {
  for (const part of document.cookie.split(";")) {
    const [name, ...rest] = part.trim().split("=");
    if (name === "keel_csrf") return decodeURIComponent(rest.join("="));
  }
  return "";
}

export function headersFor(method, extra) {
  const headers = new Headers(extra || {});
  if (!["GET", "HEAD", "OPTIONS"].includes(method)) {
    const token = csrfToken();
    if (token) headers.set("X-CSRF-Token", token);
  }
  return headers;
}

export function signInUrl() {
  const here = location.pathname + location.search;
  return `${root}/sign-in?next=${encodeURIComponent(here)}`;
}

export async function errorFrom(resp) {
  let code = "";
  let message = `HTTP ${resp.status}`;
  try {
    const body = await resp.json();
    if (body && body.error) {
      code = body.error.code;
      message = body.error.message;
    }
  } catch {
    /* not JSON */
  }
  return new ApiError(resp.status, code, message, resp.headers.get("X-Request-ID"));
}

/** fetch an API path; JSON in and out; throws ApiError. A 401 sends the browser to sign in. */
export async function api(path, { method = "GET", json, body, headers, signal, raw = false } = {}) {
  const h = headersFor(method, headers);
  let payload = body;
  if (json !== undefined) {
    h.set("Content-Type", "application/json");
    payload = JSON.stringify(json);
  }
  const resp = await fetch(root + path, { method, headers: h, body: payload, credentials: "same-origin", signal });
  if (resp.status === 401 && document.body.dataset.page !== "sign-in") {
    location.assign(signInUrl());
    throw new ApiError(401, "unauthenticated", "signed out");
  }
  if (!resp.ok) throw await errorFrom(resp);
  if (raw) return resp;
  if (resp.status === 204) return null;
  const type = resp.headers.get("Content-Type") || "";
  return type.includes("json") ? resp.json() : resp.text();
}
