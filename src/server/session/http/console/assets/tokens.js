// Applications and tokens: issue a token for an app (POST /api/tokens; the token is shown
// once, with the lines that use it from each kind of client), list every token
// (GET /api/tokens) and revoke one (POST /api/tokens/<jti>/revoke, after a second click).

import { getJson, post } from './api.js';
import { h, fill, stamp, toDate, problem } from './dom.js';

const APP_PATTERN = '[A-Za-z0-9][A-Za-z0-9._\\-]{0,63}';
const EXPIRIES = [['', 'never'], ['1d', '1 day'], ['30d', '30 days'], ['90d', '90 days'], ['365d', '1 year']];

export function show(view) {
  const app = h('input', { id: 'token-app', name: 'app', required: true, pattern: APP_PATTERN, placeholder: 'billing', autocomplete: 'off', 'aria-describedby': 'token-app-help' });
  const expires = h('select', { id: 'token-expires', name: 'expires' },
    EXPIRIES.map(([value, label]) => h('option', { value }, label)));
  const issued = h('section', { id: 'issued', 'aria-live': 'polite' });
  const list = h('tbody');
  const form = h('form', { class: 'card row', id: 'issue' },
    h('div', {},
      h('label', { for: 'token-app' }, 'App'),
      app,
      h('div', { id: 'token-app-help', class: 'muted small' }, 'Letters, digits, ".", "_" and "-"; its records go to <dir>/<app>/.')),
    h('div', {}, h('label', { for: 'token-expires' }, 'Expires'), expires),
    h('div', {}, h('button', { type: 'submit' }, 'Issue token')));

  view.append(
    h('div', { class: 'title' }, h('h1', {}, 'Applications and tokens'),
      h('p', { class: 'muted' }, 'A token names the app a client belongs to; its records go to that app\'s files.')),
    form, issued,
    h('h2', {}, 'Tokens'),
    h('table', { class: 'grid', id: 'tokens' },
      h('thead', {}, h('tr', {}, ['Id', 'App', 'Issued', 'Expires', 'State', ''].map((c) => h('th', { scope: 'col' }, c)))),
      list),
  );

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const button = form.querySelector('button');
    button.disabled = true;
    try {
      const answer = await post('/api/tokens', { app: app.value, expires: expires.value || null });
      fill(issued, shownOnce(answer));
      form.reset();
      await load();
    } catch (e) {
      problem(e);
    } finally {
      button.disabled = false;
    }
  });

  async function load() {
    try {
      const answer = await getJson('/api/tokens');
      const tokens = Array.isArray(answer) ? answer : (answer?.tokens ?? []);
      // Newest first.
      tokens.sort((a, b) => (toMillis(b.issued) || 0) - (toMillis(a.issued) || 0));
      fill(list, tokens.length === 0
        ? h('tr', {}, h('td', { colspan: 6, class: 'empty' }, 'No token yet.'))
        : tokens.map((t) => row(t, load)));
    } catch (e) {
      problem(e);
    }
  }

  load();
  return null;
}

// One token's row; its revoke button asks to be clicked again within 5 seconds.
function row(t, reload) {
  const revoked = t.revoked !== null && t.revoked !== undefined && t.revoked !== false;
  const expires = t.expires === 'never' ? null : t.expires;
  const expired = !revoked && expires && toMillis(expires) < Date.now();
  let button = null;
  if (!revoked) {
    let armed = null;
    button = h('button', { type: 'button', class: 'danger small', 'aria-label': `Revoke token ${t.jti}` }, 'Revoke');
    button.addEventListener('click', async () => {
      if (!armed) {
        button.textContent = 'Click again to revoke';
        armed = setTimeout(() => { armed = null; button.textContent = 'Revoke'; }, 5000);
        return;
      }
      clearTimeout(armed);
      button.disabled = true;
      try {
        await post(`/api/tokens/${encodeURIComponent(t.jti)}/revoke`);
        await reload();
      } catch (e) {
        problem(e);
        button.disabled = false;
      }
    });
  }
  return h('tr', { 'data-jti': t.jti },
    h('td', { class: 'mono' }, t.jti),
    h('td', {}, t.app),
    h('td', {}, stamp(t.issued)),
    h('td', {}, expires ? stamp(expires) : 'never'),
    h('td', {}, revoked ? h('span', { class: 'tag bad' }, `revoked ${stamp(t.revoked)}`)
      : expired ? h('span', { class: 'tag warn' }, 'expired') : h('span', { class: 'tag good' }, 'valid')),
    h('td', {}, button));
}

// A time as the API gives it (seconds, milliseconds or RFC 3339) in milliseconds.
function toMillis(t) {
  return toDate(t)?.getTime() ?? NaN;
}

// The new token, shown this once, with a copy button and the lines that use it.
function shownOnce(answer) {
  const token = answer.token;
  const host = location.hostname.includes(':') ? `[${location.hostname}]` : location.hostname;
  const httpPort = location.port || (location.protocol === 'https:' ? '443' : '80');
  const wsScheme = location.protocol === 'https:' ? 'wss' : 'ws';
  const snippets = [
    ['Native client (logmill send; the server\'s TCP port, 4020 by default)',
      `logmill send --addr ${host}:4020 --token '${token}' hello from ${answer.app}`],
    ['Rust client library',
      `ClientOptions::new("").token("${token}")`],
    ['gRPC (any client: the metadata of each call)',
      `authorization: Bearer ${token}\n\n# Python grpcio:\nstub.Push(request, metadata=[("authorization", "Bearer ${token}")])\n\n# grpcurl:\ngrpcurl -plaintext -H 'authorization: Bearer ${token}' ${host}:${httpPort} list`],
    ['WebSocket (a browser cannot set headers: the token goes in the URL)',
      `new WebSocket("${wsScheme}://${host}:${httpPort}/v1/ws?token=${token}")`],
  ];
  return h('div', { class: 'card issued' },
    h('h2', {}, `Token for ${answer.app}`),
    h('p', {}, h('strong', {}, 'Copy it now: it is not shown again. '),
      answer.expires ? `It expires ${stamp(answer.expires)}.` : 'It never expires; revoke it below when it is no longer needed.'),
    h('div', { class: 'copyrow' },
      h('label', { for: 'new-token', class: 'sr-only' }, 'The new token'),
      h('input', { id: 'new-token', class: 'mono', readonly: true, value: token }),
      copyButton(token, 'Copy token')),
    // The first (the native client) open, the others a click away.
    snippets.map(([title, text], i) => h('details', { open: i === 0 },
      h('summary', {}, title),
      h('div', { class: 'snippet' }, h('pre', {}, h('code', {}, text)), copyButton(text, 'Copy')))));
}

function copyButton(text, label) {
  const button = h('button', { type: 'button', class: 'small' }, label);
  button.addEventListener('click', async () => {
    try {
      await navigator.clipboard.writeText(text);
      button.textContent = 'Copied';
    } catch {
      button.textContent = 'Select and copy by hand';
    }
    setTimeout(() => { button.textContent = label; }, 2000);
  });
  return button;
}
