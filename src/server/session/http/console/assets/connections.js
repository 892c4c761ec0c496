// Connections: who is connected now, by app and instance, from GET /api/connections (the
// registry's JSON, as `logmill status --json` prints it), read again every 2 seconds. Records
// per second are computed here, from the difference between two successive samples.

import { getJson } from './api.js';
import { h, fill, bytes, count, ago, problem } from './dom.js';

const REFRESH_MS = 2000;

export function show(view) {
  const summary = h('p', { class: 'muted', 'aria-live': 'polite' }, 'Loading…');
  const body = h('tbody');
  view.append(
    h('div', { class: 'title' }, h('h1', {}, 'Connections'), summary),
    h('table', { class: 'grid', id: 'connections' },
      h('thead', {}, h('tr', {},
        ['App', 'Instance', 'Protocol', 'Peer', 'Connected', 'Conns', 'Records', 'Records/s', 'Bytes', 'Last record']
          .map((c) => h('th', { scope: 'col' }, c)))),
      body),
  );

  // app/instance -> [time ms, records] of the previous sample.
  let previous = new Map();
  let timer = null;
  let stopped = false;

  async function refresh() {
    try {
      const status = await getJson('/api/connections');
      const now = Date.now();
      const rows = [];
      const next = new Map();
      let instances = 0;
      for (const [app, group] of Object.entries(status ?? {})) {
        if (app === '_truncated') continue;
        for (const [name, i] of Object.entries(group.instances ?? {})) {
          instances += 1;
          const key = `${app}/${name}`;
          next.set(key, [now, i.records]);
          const before = previous.get(key);
          const rate = before && now > before[0]
            ? Math.max(0, (i.records - before[1]) / ((now - before[0]) / 1000))
            : null;
          rows.push(h('tr', { 'data-app': app, 'data-instance': name },
            h('td', {}, app === '_anonymous' ? h('span', { class: 'muted' }, 'anonymous') : app),
            h('td', {}, name),
            h('td', {}, h('span', { class: 'tag' }, i.socket)),
            h('td', { class: 'mono' }, i.peer),
            h('td', { title: i.connected_at }, ago(i.connected_at, now)),
            h('td', { class: 'num' }, count(i.connections)),
            h('td', { class: 'num' }, count(i.records)),
            h('td', { class: 'num' }, rate === null ? '…' : rate.toFixed(1)),
            h('td', { class: 'num' }, bytes(i.bytes)),
            h('td', { title: i.last_record_at ?? '' }, i.last_record_at ? ago(i.last_record_at, now) : 'none yet')));
        }
      }
      previous = next;
      if (rows.length === 0) {
        rows.push(h('tr', {}, h('td', { colspan: 10, class: 'empty' },
          'No client is connected. Issue a token in Applications and tokens, then send with it.')));
      }
      fill(body, rows);
      const truncated = status?._truncated
        ? ` (${count(status._truncated.instances)} more not listed)` : '';
      fill(summary, `${count(instances)} ${instances === 1 ? 'instance' : 'instances'} connected${truncated}; updated every 2 s`);
      problem(null);
    } catch (e) {
      problem(e);
    }
    if (!stopped) timer = setTimeout(refresh, REFRESH_MS);
  }

  refresh();
  return () => { stopped = true; clearTimeout(timer); };
}
