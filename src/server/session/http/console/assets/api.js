// Every request the console makes, to its own origin only. A state-changing request carries
// the session's CSRF token (X-CSRF-Token), which GET /api/session (and the login) answer; an
// answer of 401 means the session is gone, and the page goes to the login page.

let csrf = null;

// The reason a request failed, shown to the user as it is.
export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

// Loads the session's CSRF token: the first thing the app page does.
export async function loadSession() {
  const session = await getJson('/api/session');
  csrf = session.csrf ?? session.csrf_token ?? null;
  return session;
}

export function getJson(path) {
  return call('GET', path);
}

export function post(path, body) {
  return call('POST', path, body);
}

// Goes to the login page, coming back here afterwards.
export function toLogin() {
  const back = location.pathname + location.search + location.hash;
  location.assign(`/login?next=${encodeURIComponent(back)}`);
}

async function call(method, path, body) {
  const headers = { Accept: 'application/json' };
  if (method !== 'GET') headers['X-CSRF-Token'] = csrf ?? '';
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: 'same-origin',
    cache: 'no-store',
  });
  if (response.status === 401) {
    toLogin();
    throw new ApiError(401, 'the session ended: log in again');
  }
  const text = await response.text();
  if (!response.ok) {
    throw new ApiError(response.status, `${method} ${path}: ${response.status} ${errorText(text)}`);
  }
  return text ? JSON.parse(text) : null;
}

// The server answers errors as one line of text or as {"error": "..."}.
function errorText(text) {
  try {
    const value = JSON.parse(text);
    return value.error ?? value.message ?? text;
  } catch {
    return text.trim();
  }
}
