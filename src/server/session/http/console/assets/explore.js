// Explore: search the stored records. The filters live in the URL (#/explore?level=warning&q=x),
// so a link shows the same search. Three parts, each over the same filter:
//
// - the histogram: GET /api/counts, records per time bucket and level, drawn as an SVG; asked
//   again with the cursor while the server says "more" (each answer is one bounded slice of
//   work), the slices added up;
// - the results: GET /api/search, newest first, 100 at a time; the next page (the cursor) is
//   asked when the end of the list scrolls into view;
// - the live tail: an EventSource on GET /api/tail, new records put on top of the list; paused,
//   they wait in a bounded buffer; a `notice` event says the server dropped the tail.
//
// A record opens (a click, or Enter) into its details: every field, the stored line, and its
// context (GET /api/context: the records around it in its bucket).

import { getJson } from './api.js';
import { h, fill, count, bytes, stamp, toDate, LEVELS, levelName, problem } from './dom.js';

const PAGE = 100;
const HISTOGRAM_BUCKETS = 60;
// Slices of counting asked for one histogram before giving up (each one is bounded work).
const MAX_COUNT_SLICES = 100;
// Search answers in a row without a hit before the page stops asking by itself.
const MAX_EMPTY_SLICES = 20;
// Records kept while the tail is paused; past it, the oldest waiting ones are dropped.
const MAX_WAITING = 5000;
const CONTEXT = 10;

// The filter's URL parameters, in the order the form shows them: [param, label, hint].
const FIELDS = [
  ['app', 'App', 'billing, web (several: commas)'],
  ['instance', 'Instance', 'pod-7'],
  ['logger', 'Logger', 'pay.api'],
  ['q', 'Text', 'substring, any case'],
  ['phrase', 'Phrase', 'exact, case-sensitive'],
  ['field', 'Fields', 'key=value key2=value2'],
  ['since', 'Since', '1h, 24h, or 2026-12-01T10:00:00Z'],
  ['until', 'Until', 'now, or a time'],
];

// The search's parameters (as the API takes them) from the page's URL parameters.
function apiQuery(params, { withTime = true } = {}) {
  const q = new URLSearchParams();
  for (const app of (params.get('app') ?? '').split(',').map((s) => s.trim()).filter(Boolean)) q.append('app', app);
  for (const name of ['instance', 'level', 'logger', 'q', 'phrase']) {
    if (params.get(name)) q.set(name, params.get(name));
  }
  for (const pair of (params.get('field') ?? '').split(/\s+/).filter(Boolean)) q.append('field', pair);
  if (withTime) {
    for (const name of ['since', 'until']) if (params.get(name)) q.set(name, params.get(name));
  }
  return q;
}

export function show(view, params) {
  let generation = 0; // bumped by each new search: answers to older ones are ignored
  const stops = [];

  // The filter form, filled from the URL.
  const inputs = {};
  const level = h('select', { id: 'f-level', name: 'level' },
    h('option', { value: '' }, 'any'),
    LEVELS.map((l) => h('option', { value: l }, `${l} and above`)));
  level.value = params.get('level') ?? '';
  const form = h('form', { class: 'filters', id: 'filters', role: 'search' },
    h('div', {}, h('label', { for: 'f-level' }, 'Level'), level),
    FIELDS.map(([name, label, hint]) => {
      inputs[name] = h('input', { id: `f-${name}`, name, placeholder: hint, value: params.get(name) ?? '', autocomplete: 'off',
        list: name === 'since' ? 'since-presets' : null });
      return h('div', { class: `f-${name}` }, h('label', { for: `f-${name}` }, label), inputs[name]);
    }),
    h('datalist', { id: 'since-presets' }, ['15m', '1h', '6h', '24h', '7d'].map((v) => h('option', { value: v }))),
    h('div', { class: 'actions' },
      h('button', { type: 'submit' }, 'Search'),
      h('button', { type: 'button', class: 'quiet', onclick: () => go(new URLSearchParams()) }, 'Clear')));
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const next = new URLSearchParams();
    if (level.value) next.set('level', level.value);
    for (const [name] of FIELDS) if (inputs[name].value.trim()) next.set(name, inputs[name].value.trim());
    go(next);
  });

  // The histogram and its legend.
  const chart = h('div', { class: 'chart', id: 'histogram' });
  const legend = h('ul', { class: 'legend', id: 'levels', 'aria-label': 'Records by level' });

  // The live tail's controls.
  const tailButton = h('button', { type: 'button', id: 'tail', 'aria-pressed': 'false' }, 'Live tail');
  const pauseButton = h('button', { type: 'button', id: 'pause', class: 'quiet', hidden: true }, 'Pause');
  const tailState = h('span', { id: 'tail-state', class: 'muted', 'aria-live': 'polite' });
  const notice = h('p', { id: 'tail-notice', class: 'notice', role: 'status', hidden: true });

  // The results.
  const summary = h('span', { id: 'summary', class: 'muted', 'aria-live': 'polite' });
  const list = h('ol', { id: 'results', class: 'results', 'aria-label': 'Records, newest first' });
  const moreButton = h('button', { type: 'button', id: 'more', class: 'quiet', hidden: true }, 'Load more');
  const sentinel = h('div', { class: 'sentinel', 'aria-hidden': 'true' });

  view.append(
    h('div', { class: 'title' }, h('h1', {}, 'Explore'), summary),
    form,
    h('section', { class: 'card histogram', 'aria-label': 'Histogram' }, chart, legend),
    h('div', { class: 'toolbar' }, tailButton, pauseButton, tailState),
    notice,
    list, moreButton, sentinel,
  );

  // Changes the URL (a new history entry, so Back works) and searches again.
  function go(next) {
    const query = next.toString();
    history.pushState(null, '', `#/explore${query ? `?${query}` : ''}`);
    params = next;
    level.value = params.get('level') ?? '';
    for (const [name] of FIELDS) inputs[name].value = params.get(name) ?? '';
    search();
  }

  // ---- results, page by page ----
  let cursor = null;
  let done = true;
  let loading = false;
  let shown = 0;
  let scanned = 0;
  let emptySlices = 0;

  async function nextPage() {
    if (loading || done) return;
    loading = true;
    const mine = generation;
    const q = apiQuery(params);
    q.set('limit', String(PAGE));
    if (cursor) q.set('cursor', cursor);
    try {
      const answer = await getJson(`/api/search?${q}`);
      if (mine !== generation) return;
      const records = answer.records ?? [];
      list.append(...records.map(item));
      shown += records.length;
      scanned += answer.scanned_bytes ?? 0;
      cursor = answer.cursor ?? null;
      done = !cursor;
      emptySlices = records.length ? 0 : emptySlices + 1;
      showSummary();
      problem(null);
    } catch (e) {
      if (mine === generation) { problem(e); done = true; }
    } finally {
      if (mine === generation) loading = false;
    }
    if (mine !== generation) return;
    moreButton.hidden = done;
    // The page is not full yet (or the slice found nothing): ask again, within reason.
    if (!done && emptySlices < MAX_EMPTY_SLICES && inView(sentinel)) nextPage();
  }

  function showSummary() {
    const state = done ? '' : ' (more below)';
    const none = shown === 0 && done ? 'No record matches.' : `${count(shown)} ${shown === 1 ? 'record' : 'records'}${state}`;
    fill(summary, `${none} · ${bytes(scanned)} read`);
  }

  moreButton.addEventListener('click', () => { emptySlices = 0; nextPage(); });
  const observer = new IntersectionObserver((entries) => {
    if (entries.some((e) => e.isIntersecting)) nextPage();
  });
  observer.observe(sentinel);
  stops.push(() => observer.disconnect());

  // ---- the histogram, slice by slice ----
  async function histogram() {
    const mine = generation;
    const byLevel = {};
    const buckets = new Map(); // start -> {level: n}
    let countCursor = null;
    fill(chart, h('p', { class: 'muted' }, 'Counting…'));
    fill(legend);
    try {
      for (let slice = 0; slice < MAX_COUNT_SLICES; slice += 1) {
        const q = apiQuery(params);
        q.set('buckets', String(HISTOGRAM_BUCKETS));
        if (countCursor) q.set('cursor', countCursor);
        const answer = await getJson(`/api/counts?${q}`);
        if (mine !== generation) return;
        for (const [l, n] of Object.entries(answer.by_level ?? {})) {
          const name = levelName(l);
          byLevel[name] = (byLevel[name] ?? 0) + n;
        }
        for (const bucket of answer.histogram ?? []) {
          const counts = buckets.get(bucket.start) ?? {};
          for (const [l, n] of Object.entries(bucket.counts ?? {})) {
            const name = levelName(l);
            counts[name] = (counts[name] ?? 0) + n;
          }
          buckets.set(bucket.start, counts);
        }
        const total = Object.values(byLevel).reduce((a, b) => a + b, 0);
        drawHistogram(chart, buckets, total, (start, end) => {
          const next = new URLSearchParams(params);
          next.set('since', new Date(start).toISOString());
          next.set('until', new Date(end).toISOString());
          go(next);
        });
        drawLegend(legend, byLevel, !answer.more);
        countCursor = answer.cursor ?? null;
        if (!answer.more || !countCursor) return;
      }
    } catch (e) {
      if (mine === generation) fill(chart, h('p', { class: 'problem' }, `Counting failed: ${e.message}`));
    }
  }

  // ---- the live tail ----
  let source = null;
  let paused = false;
  let waiting = [];
  let droppedWhilePaused = 0;

  function tailOn() {
    tailOff();
    notice.hidden = true;
    source = new EventSource(`/api/tail?${apiQuery(params, { withTime: false })}`);
    tailButton.setAttribute('aria-pressed', 'true');
    tailButton.textContent = 'Stop live tail';
    pauseButton.hidden = false;
    setTailState('connecting…');
    source.addEventListener('open', () => setTailState(paused ? pausedText() : 'live: new records appear on top'));
    source.addEventListener('error', () => {
      if (source?.readyState === EventSource.CLOSED) setTailState('stopped: the server refused the tail');
      else setTailState('reconnecting…');
    });
    source.addEventListener('record', (event) => {
      let hit;
      try { hit = JSON.parse(event.data); } catch { return; }
      if (paused) {
        waiting.push(hit);
        if (waiting.length > MAX_WAITING) { waiting.shift(); droppedWhilePaused += 1; }
        setTailState(pausedText());
      } else {
        prepend([hit]);
      }
    });
    source.addEventListener('notice', (event) => {
      notice.hidden = false;
      notice.textContent = `The server dropped this live tail: ${event.data}. Records written meanwhile are not shown here; search again to see them.`;
    });
  }

  function tailOff() {
    if (source) source.close();
    source = null;
    paused = false;
    flushWaiting();
    tailButton.setAttribute('aria-pressed', 'false');
    tailButton.textContent = 'Live tail';
    pauseButton.hidden = true;
    pauseButton.textContent = 'Pause';
    setTailState('');
  }

  function pausedText() {
    const lost = droppedWhilePaused ? `, ${count(droppedWhilePaused)} older ones dropped` : '';
    return `paused: ${count(waiting.length)} new ${waiting.length === 1 ? 'record' : 'records'} waiting${lost}`;
  }

  function flushWaiting() {
    prepend(waiting);
    waiting = [];
    droppedWhilePaused = 0;
  }

  // Records from the tail, oldest first, each put on top of the list.
  function prepend(hits) {
    for (const hit of hits) {
      const li = item(hit);
      li.classList.add('new');
      list.prepend(li);
      shown += 1;
    }
    if (hits.length) showSummary();
  }

  function setTailState(text) {
    tailState.textContent = text;
  }

  tailButton.addEventListener('click', () => (source ? tailOff() : tailOn()));
  pauseButton.addEventListener('click', () => {
    paused = !paused;
    pauseButton.textContent = paused ? 'Resume' : 'Pause';
    if (paused) setTailState(pausedText());
    else { flushWaiting(); setTailState('live: new records appear on top'); }
  });
  stops.push(() => { if (source) source.close(); });

  // ---- one search: results, histogram, and the tail again with the new filter ----
  function search() {
    generation += 1;
    list.replaceChildren();
    cursor = null;
    done = false;
    loading = false;
    shown = 0;
    scanned = 0;
    emptySlices = 0;
    fill(summary, 'Searching…');
    nextPage();
    histogram();
    if (source) tailOn();
  }

  search();
  return () => {
    generation += 1;
    for (const stop of stops) stop();
  };
}

// Whether `el` is within the window (the list's end is reached).
function inView(el) {
  const box = el.getBoundingClientRect();
  return box.top < window.innerHeight + 200;
}

// One record in the list: a line that opens into its details.
function item(hit) {
  const name = levelName(hit.level);
  const who = [hit.app || (hit.bucket !== '_main' ? hit.bucket : null), hit.instance].filter(Boolean).join('/');
  const line = h('button', { type: 'button', class: 'line', 'aria-expanded': 'false' },
    h('time', { datetime: toDate(hit.time ?? hit.time_ns)?.toISOString() ?? '' }, stamp(hit.time ?? hit.time_ns)),
    h('span', { class: `lv lv-${name}` }, name.toUpperCase()),
    h('span', { class: 'who' }, who),
    h('span', { class: 'logger' }, hit.logger ?? ''),
    h('span', { class: 'msg' }, hit.message ?? ''));
  const li = h('li', { 'data-seq': hit.seq, 'data-bucket': hit.bucket, 'data-level': name }, line);
  let details = null;
  line.addEventListener('click', () => {
    const open = line.getAttribute('aria-expanded') === 'true';
    line.setAttribute('aria-expanded', String(!open));
    if (open) { details?.remove(); details = null; return; }
    details = detailsOf(hit);
    li.append(details);
  });
  return li;
}

// A record's details: every field, the stored line, and a button for its context.
function detailsOf(hit) {
  const rows = [
    ['time', stamp(hit.time ?? hit.time_ns)],
    ['level', levelName(hit.level)],
    ['app', hit.app],
    ['bucket', hit.bucket],
    ['instance', hit.instance],
    ['logger', hit.logger],
    ['sequence', hit.seq],
    ['message', hit.message],
    ...Object.entries(hit.fields ?? {}).map(([k, v]) => [`field ${k}`, typeof v === 'string' ? v : JSON.stringify(v)]),
  ];
  const context = h('div', { class: 'context' });
  const button = h('button', { type: 'button', class: 'small' }, `Show ${CONTEXT} records before and after`);
  button.addEventListener('click', async () => {
    button.disabled = true;
    try {
      const q = new URLSearchParams({ bucket: hit.bucket ?? '', seq: String(hit.seq), n: String(CONTEXT) });
      const answer = await getJson(`/api/context?${q}`);
      fill(context, h('ol', { class: 'results compact', 'aria-label': 'Context' },
        (answer.records ?? []).map((r) => {
          const li = h('li', { 'data-seq': r.seq },
            h('div', { class: 'line' },
              h('time', {}, stamp(r.time ?? r.time_ns)),
              h('span', { class: `lv lv-${levelName(r.level)}` }, levelName(r.level).toUpperCase()),
              h('span', { class: 'who' }, r.instance ?? ''),
              h('span', { class: 'logger' }, r.logger ?? ''),
              h('span', { class: 'msg' }, r.message ?? '')));
          if (String(r.seq) === String(hit.seq)) li.setAttribute('aria-current', 'true');
          return li;
        })));
    } catch (e) {
      fill(context, h('p', { class: 'problem' }, e.message));
      button.disabled = false;
    }
  });
  return h('div', { class: 'details' },
    h('table', { class: 'fields' }, rows
      .filter(([, v]) => v !== undefined && v !== null && v !== '')
      .map(([k, v]) => h('tr', {}, h('th', { scope: 'row' }, k), h('td', {}, String(v))))),
    h('div', { class: 'raw-title muted small' }, 'Stored line'),
    h('pre', { class: 'raw' }, hit.raw ?? ''),
    button, context);
}

// Stacked bars, one per time bucket, one colour per level (CSS classes lv-<level>). Clicking
// a bar narrows the search to its time.
function drawHistogram(chart, buckets, total, zoom) {
  const starts = [...buckets.keys()].map(Number).sort((a, b) => a - b);
  if (starts.length === 0 || total === 0) {
    fill(chart, h('p', { class: 'muted' }, total === 0
      ? 'No record matches in this range.'
      : 'Counts by level at the right; give a time range (Since) to see them over time.'));
    return;
  }
  const W = 1000;
  const H = 120;
  const totals = starts.map((s) => Object.values(buckets.get(s) ?? buckets.get(String(s)) ?? {}).reduce((a, b) => a + b, 0));
  const max = Math.max(1, ...totals);
  const width = W / starts.length;
  const step = starts.length > 1 ? starts[1] - starts[0] : 60e9;
  const ms = (ns) => (ns > 1e17 ? ns / 1e6 : ns);
  const svg = h('svg:svg', { viewBox: `0 0 ${W} ${H + 18}`, class: 'bars', role: 'img',
    'aria-label': `Records over time: ${starts.length} buckets, at most ${max} in one` });
  starts.forEach((start, i) => {
    const counts = buckets.get(start) ?? buckets.get(String(start)) ?? {};
    const g = h('svg:g', { class: 'bar' });
    let y = H;
    for (const l of LEVELS) {
      const n = counts[l] ?? 0;
      if (!n) continue;
      const height = (n / max) * H;
      y -= height;
      g.append(h('svg:rect', { x: (i * width + 1).toFixed(1), y: y.toFixed(1), width: Math.max(1, width - 2).toFixed(1), height: height.toFixed(1), class: `lv-${l}` }));
    }
    // A full-height target, so that a bucket with few records is easy to click.
    g.append(h('svg:rect', { x: (i * width).toFixed(1), y: 0, width: width.toFixed(1), height: H, class: 'hit' }));
    const detail = LEVELS.filter((l) => counts[l]).map((l) => `${l} ${counts[l]}`).join(', ');
    g.append(h('svg:title', {}, `${stamp(start)}: ${totals[i]} (${detail || 'none'})`));
    g.addEventListener('click', () => zoom(ms(start), ms(start + step)));
    svg.append(g);
  });
  for (const [i, anchor] of [[0, 'start'], [Math.floor(starts.length / 2), 'middle'], [starts.length - 1, 'end']]) {
    const x = anchor === 'start' ? 0 : anchor === 'end' ? W : (i + 0.5) * width;
    svg.append(h('svg:text', { x, y: H + 14, 'text-anchor': anchor, class: 'axis' }, stamp(starts[i]).slice(0, 19)));
  }
  fill(chart, svg, h('div', { class: 'muted small', id: 'peak' }, `At most ${count(max)} records in one bar; click a bar to zoom into its time.`));
}

function drawLegend(legend, byLevel, complete) {
  fill(legend,
    LEVELS.filter((l) => byLevel[l]).map((l) =>
      h('li', { 'data-level': l }, h('span', { class: `swatch lv-${l}` }), `${l} `, h('strong', {}, count(byLevel[l])))),
    complete ? null : h('li', { class: 'muted' }, 'counting…'));
}
