// The only way the console talks to Hoard: the public /v2 API, with the token
// kept in this tab's sessionStorage (never in a URL, never logged).

const KEY = "hoard.token";

export function token() {
  return sessionStorage.getItem(KEY);
}

export function setToken(value) {
  sessionStorage.setItem(KEY, value);
}

export function clearToken() {
  sessionStorage.removeItem(KEY);
}

// An API refusal: the problem+json body's detail, and per-field errors if any.
export class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

// Listeners told when the API says the token is no longer valid.
const unauthorizedListeners = [];
export function onUnauthorized(listener) {
  unauthorizedListeners.push(listener);
}

export async function call(method, path, body, { signal, withToken } = {}) {
  const headers = { Accept: "application/json" };
  const bearer = withToken ?? token();
  if (bearer) headers.Authorization = `Bearer ${bearer}`;
  const init = { method, headers, signal, cache: "no-store" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(0, { detail: "Hoard cannot be reached; check the connection." });
  }
  if (response.status === 204) return null;
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = { detail: text.slice(0, 200) };
  }
  if (!response.ok) {
    const error = new ApiError(response.status, data || {});
    if (response.status === 401 && withToken === undefined) {
      unauthorizedListeners.forEach((listener) => listener(error));
    }
    throw error;
  }
  return data;
}

export const get = (path, opts) => call("GET", path, undefined, opts);
export const post = (path, body, opts) => call("POST", path, body ?? {}, opts);
export const patch = (path, body, opts) => call("PATCH", path, body, opts);
export const del = (path, opts) => call("DELETE", path, undefined, opts);

// Query string from an object, leaving out empty values.
export function query(params) {
  const search = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== "") search.set(k, v);
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

// Every page of a keyset-paged list (follows `next` links), up to `maxPages`.
export async function all(path, key, { signal, maxPages = 20 } = {}) {
  const items = [];
  let url = path;
  for (let i = 0; url && i < maxPages; i += 1) {
    const page = await get(url, { signal });
    items.push(...page[key]);
    url = page.next;
  }
  return items;
}
