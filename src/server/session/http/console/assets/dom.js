// Small helpers every page uses: building elements and formatting numbers and times.
// No framework: a page is a function that builds its elements with `h` and updates them.

// h('a', {href: '#/x', class: 'y', onclick: f}, 'text', child, [more]): an element.
// Attributes named on* become event listeners; `null`, `undefined` and `false` children are
// skipped; strings become text nodes (never parsed as HTML).
export function h(tag, attrs = {}, ...children) {
  const svg = tag.startsWith('svg:');
  const el = svg
    ? document.createElementNS('http://www.w3.org/2000/svg', tag.slice(4))
    : document.createElement(tag);
  for (const [name, value] of Object.entries(attrs ?? {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith('on')) el.addEventListener(name.slice(2), value);
    else el.setAttribute(name, value === true ? '' : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : String(child));
  }
}

// Replaces everything inside `el` with `children`.
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

// 1536 -> "1.5 KiB".
export function bytes(n) {
  if (typeof n !== 'number' || !isFinite(n)) return '–';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
  return `${i === 0 ? n : n.toFixed(1)} ${units[i]}`;
}

// 1234567 -> "1,234,567".
export function count(n) {
  return typeof n === 'number' ? n.toLocaleString('en-US') : '–';
}

// A time given as nanoseconds since the epoch, seconds, an RFC 3339 string or a Date: a Date
// (or null when there is none).
export function toDate(t) {
  if (t === null || t === undefined || t === '') return null;
  if (t instanceof Date) return t;
  if (typeof t === 'number') {
    // Nanoseconds are above 1e17, milliseconds above 1e11, else seconds.
    return new Date(t > 1e17 ? t / 1e6 : t > 1e11 ? t : t * 1000);
  }
  const d = new Date(t);
  return isNaN(d) ? null : d;
}

// "2026-12-02 10:00:00.123" in UTC, as the files show times.
export function stamp(t) {
  const d = toDate(t);
  return d ? d.toISOString().replace('T', ' ').replace('Z', '') : '–';
}

// "3 min ago", "2 h ago": how long since `t`.
export function ago(t, now = Date.now()) {
  const d = toDate(t);
  if (!d) return '–';
  const s = Math.max(0, Math.round((now - d.getTime()) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

// Seconds as "2 d 3 h", "5 min 2 s".
export function duration(s) {
  if (typeof s !== 'number' || !isFinite(s)) return '–';
  s = Math.floor(s);
  const parts = [[86400, 'd'], [3600, 'h'], [60, 'min'], [1, 's']]
    .map(([n, unit]) => { const v = Math.floor(s / n); s %= n; return [v, unit]; })
    .filter(([v]) => v > 0)
    .slice(0, 2)
    .map(([v, unit]) => `${v} ${unit}`);
  return parts.length ? parts.join(' ') : '0 s';
}

// The severity scale, lowest first, as the server names it (schema/logmill.capnp).
export const LEVELS = ['trace', 'debug', 'info', 'notice', 'warning', 'error', 'critical', 'alert', 'emergency'];

// A level as written anywhere ("WARNING", "warning", "WARN"): its name on the scale.
export function levelName(level) {
  const l = String(level ?? '').toLowerCase();
  if (l === 'warn') return 'warning';
  if (l === 'err') return 'error';
  if (l === 'crit' || l === 'fatal') return 'critical';
  return LEVELS.includes(l) ? l : 'info';
}

// Shows `message` (an Error or text) in the page's alert line; `null` hides it.
export function problem(message) {
  const el = document.getElementById('problem');
  if (!el) return;
  el.hidden = !message;
  el.textContent = message ? String(message.message ?? message) : '';
}
