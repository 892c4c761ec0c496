// Server: its health, throughput, pending bytes and the disk each bucket takes, from
// GET /api/server, read again every 2 seconds. Fields the page does not know are still shown,
// in the table at the bottom, so a newer server's answer is never hidden.

import { getJson } from './api.js';
import { h, fill, bytes, count, duration, problem } from './dom.js';

const REFRESH_MS = 2000;

// The fields shown as cards, in this order: [key, label, format].
const CARDS = [
  ['records_written', 'Records written', count],
  ['records_per_second', 'Records/s', (n) => (typeof n === 'number' ? n.toFixed(1) : '–')],
  ['pending_bytes', 'Pending bytes', bytes],
  ['uptime', 'Up for', (s) => (typeof s === 'number' ? duration(s) : String(s ?? '–'))],
];
const KNOWN = new Set(['status', 'degraded', 'name', 'version', 'buckets', 'forward', 'records_per_second', ...CARDS.map(([k]) => k)]);

export function show(view) {
  const state = h('div', { class: 'health', 'aria-live': 'polite' }, 'Loading…');
  const about = h('span', { class: 'muted' });
  const cards = h('div', { class: 'cards' });
  const buckets = h('tbody');
  const other = h('tbody');
  const sinks = h('tbody');
  view.append(
    h('div', { class: 'title' }, h('h1', {}, 'Server'), state, about),
    cards,
    h('h2', {}, 'Disk use by bucket'),
    h('table', { class: 'grid', id: 'buckets' },
      h('thead', {}, h('tr', {}, ['App', 'Files', 'Bytes', ''].map((c) => h('th', { scope: 'col' }, c)))),
      buckets),
    h('h2', {}, 'Forwarding'),
    h('table', { class: 'grid', id: 'forward' },
      h('thead', {}, h('tr', {}, ['Sink', 'State', 'Forwarded', 'Lag (records)', 'Lag (bytes)', 'Oldest unforwarded', 'Error']
        .map((c) => h('th', { scope: 'col' }, c)))),
      sinks),
    h('h2', {}, 'More figures'),
    h('table', { class: 'grid narrow' }, other),
  );

  let timer = null;
  let stopped = false;

  async function refresh() {
    try {
      const s = await getJson('/api/server');
      const degraded = Boolean(s.degraded);
      state.className = `health ${degraded ? 'bad' : 'good'}`;
      fill(state, s.status ?? (degraded ? 'DEGRADED' : 'OK'));
      fill(about, [s.name, s.version && `logmill ${s.version}`].filter(Boolean).join(' · '));
      fill(cards, CARDS.map(([key, label, format]) =>
        h('div', { class: 'card stat' },
          h('div', { class: 'muted small' }, label),
          h('div', { class: 'big', 'data-field': key }, format(s[key])))));
      const list = Array.isArray(s.buckets) ? s.buckets : [];
      const largest = Math.max(1, ...list.map((b) => b.bytes ?? 0));
      fill(buckets, list.length === 0
        ? h('tr', {}, h('td', { colspan: 4, class: 'empty' }, 'No bucket yet.'))
        : list.map((b) => {
          const bar = h('span', { class: 'bar' });
          bar.style.width = `${Math.round(100 * (b.bytes ?? 0) / largest)}%`;
          return h('tr', {},
            h('td', {}, b.app),
            h('td', { class: 'num' }, count(b.files)),
            h('td', { class: 'num' }, bytes(b.bytes)),
            h('td', { class: 'barcell' }, bar));
        }));
      const forward = Array.isArray(s.forward) ? s.forward : [];
      fill(sinks, forward.length === 0
        ? h('tr', {}, h('td', { colspan: 7, class: 'empty' }, 'No sink (--forward).'))
        : forward.map((f) => h('tr', { 'data-sink': f.sink },
          h('td', { class: 'mono' }, f.sink),
          h('td', { class: f.state === 'ok' ? 'good' : 'bad' }, f.state),
          h('td', { class: 'num' }, count(f.forwarded)),
          h('td', { class: 'num' }, count(f.lag_records)),
          h('td', { class: 'num' }, bytes(f.lag_bytes)),
          h('td', { class: 'num' }, duration(f.oldest_unforwarded_age_s ?? 0)),
          h('td', {}, f.error || ''))));
      fill(other, Object.entries(s)
        .filter(([k, v]) => !KNOWN.has(k) && (v === null || typeof v !== 'object'))
        .map(([k, v]) => h('tr', {}, h('th', { scope: 'row' }, k), h('td', { class: 'mono' }, String(v)))));
      problem(null);
    } catch (e) {
      problem(e);
    }
    if (!stopped) timer = setTimeout(refresh, REFRESH_MS);
  }

  refresh();
  return () => { stopped = true; clearTimeout(timer); };
}
