// The skipq dashboard: plain DOM over the JSON API of `skipq serve`
// (docs/http.md). Every value from the API reaches the page as text
// (el() and textContent), never as markup: job kinds, payloads and errors
// are written by whoever enqueues (tests/browser/dashboard.mjs checks it).
// The server's CSP allows no inline script or style and no eval.
'use strict';

const STATUSES = ['waiting', 'queued', 'running', 'succeeded', 'failed', 'cancelled'];
const RETRYABLE = ['succeeded', 'failed', 'cancelled']; // skipq.retry: any job not running
const CANCELLABLE = ['waiting', 'queued', 'running'];
const POLL_MS = 5000;
const TOKEN_KEY = 'skipq.token';
const SVG_NS = 'http://www.w3.org/2000/svg';

const $ = (sel) => document.querySelector(sel);

// el('td', {testid: 'x', class: 'y', onclick: fn}, 'text', child, ...)
function el(tag, attrs, ...children) {
  return build(document.createElement(tag), attrs, children);
}

function svg(tag, attrs, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attrs, children);
}

function build(e, attrs, children) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (k === 'testid') e.setAttribute('data-testid', v);
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c !== null && c !== undefined && c !== false) e.append(c); // a string becomes a text node
  }
  return e;
}

// ---- the API ----------------------------------------------------------

class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

async function api(method, path, body) {
  // The header proves to `serve --no-auth` that this is not a cross-site
  // form; the token, when there is one, goes in Authorization, never in a
  // cookie.
  const headers = { 'X-Skipq-Request': '1' };
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.Authorization = 'Bearer ' + token;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let r;
  try {
    r = await fetch(path, {
      method, headers, credentials: 'omit', cache: 'no-store',
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (e) {
    throw new ApiError('could not reach the server: ' + e.message, 0);
  }
  let data = null;
  try {
    data = await r.json();
  } catch (e) {
    data = null;
  }
  if (!r.ok) {
    const msg = data && typeof data.error === 'string' ? data.error : 'HTTP ' + r.status;
    throw new ApiError(msg, r.status);
  }
  return data;
}

// ---- messages, dialogs, the token ------------------------------------

function say(text, kind) {
  const m = $('#message');
  m.textContent = text;
  m.className = kind || 'info';
  m.hidden = false;
}

function hush() {
  $('#message').hidden = true;
}

function fail(e) {
  if (e instanceof ApiError && e.status === 401) {
    askToken(e.message);
    return;
  }
  say(e instanceof ApiError ? e.message : 'error: ' + e.message, 'error');
}

function dialogOpen() {
  return $('#confirm').open || $('#token').open;
}

// A dialog of the page's own (not window.confirm): true when confirmed.
function confirmAction(text) {
  const d = $('#confirm');
  $('#confirm-text').textContent = text;
  d.returnValue = '';
  d.showModal();
  return new Promise((resolve) => {
    d.addEventListener('close', () => resolve(d.returnValue === 'ok'), { once: true });
  });
}

function askToken(why) {
  const d = $('#token');
  if (d.open) return;
  $('#token-why').textContent = why || '';
  $('#token-input').value = sessionStorage.getItem(TOKEN_KEY) || '';
  d.returnValue = '';
  d.showModal();
}

function tokenClosed() {
  const d = $('#token');
  const value = $('#token-input').value.trim();
  $('#token-input').value = '';
  if (d.returnValue === 'save' && value) sessionStorage.setItem(TOKEN_KEY, value);
  else if (d.returnValue === 'clear') sessionStorage.removeItem(TOKEN_KEY);
  else return;
  show();
}

// ---- formatting ---------------------------------------------------------

// Local time, "2026-12-07 10:00:05": sortable by eye and never wrapped.
function fmtTime(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  if (isNaN(d)) return String(iso);
  const p = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ` +
    `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

function timeCell(iso) {
  return el('td', { class: 'time', title: iso || undefined }, fmtTime(iso));
}

function fmtSeconds(s) {
  if (s === null || s === undefined || isNaN(s)) return '—';
  s = Number(s);
  if (s < 120) return s.toFixed(s < 10 ? 1 : 0) + ' s';
  if (s < 7200) return Math.round(s / 60) + ' min';
  if (s < 172800) return Math.round(s / 3600) + ' h';
  return Math.round(s / 86400) + ' d';
}

// Seconds from a to b; null when either is unknown or b is before a (a
// retried job keeps its old started_at until it starts again).
function between(a, b) {
  if (!a || !b) return null;
  const s = (Date.parse(b) - Date.parse(a)) / 1000;
  return s >= 0 ? s : null;
}

function pretty(v) {
  return v === null || v === undefined ? '—' : JSON.stringify(v, null, 2);
}

function list(v) {
  return Array.isArray(v) ? (v.length ? v.join(', ') : '—') : v === null || v === undefined ? '—' : String(v);
}

function jobLink(id) {
  return el('a', { href: '#/jobs/' + Number(id) }, String(id));
}

function statusBadge(s) {
  return el('span', { class: 'status status-' + (STATUSES.includes(s) ? s : 'other') }, s);
}

function table(testid, headings, rows) {
  return el('table', { testid },
    el('thead', {}, el('tr', {}, headings.map((h) => el('th', { scope: 'col' }, h)))),
    el('tbody', {}, rows));
}

function jobsQuery(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== '' && v !== null && v !== undefined) q.set(k, v);
  return q.toString();
}

// ---- retry and cancel ---------------------------------------------------

// One job or many, confirmed first; then what each came to, and a refresh.
async function act(action, ids, after) {
  const what = ids.length === 1 ? 'job ' + ids[0] : ids.length + ' jobs';
  const text = action === 'retry'
    ? 'Retry ' + what + '? It goes back to queued, runnable now, with its attempts reset.'
    : 'Cancel ' + what + '? Queued and waiting jobs are cancelled; running ones are asked to stop.';
  if (!(await confirmAction(text))) return;
  try {
    let results;
    if (ids.length === 1) results = [await api('POST', '/api/jobs/' + ids[0] + '/' + action)];
    else results = (await api('POST', '/api/jobs/' + action, { ids })).results;
    const counts = {};
    for (const r of results) counts[r.outcome] = (counts[r.outcome] || 0) + 1;
    say(what + ': ' + Object.entries(counts).map(([o, n]) => (ids.length === 1 ? o : n + ' ' + o)).join(', '));
  } catch (e) {
    fail(e);
  }
  if (after) await after().catch(fail);
}

function actionButtons(job, after) {
  const b = [];
  // an archived job (skipq.jobs_done) is read-only history
  if (job.archived) return [el('span', { class: 'muted', testid: 'job-archived' }, 'Archived: read only')];
  if (RETRYABLE.includes(job.status)) {
    b.push(el('button', { type: 'button', testid: 'job-retry', onclick: () => act('retry', [job.id], after) }, 'Retry'));
  }
  if (CANCELLABLE.includes(job.status)) {
    b.push(el('button', { type: 'button', testid: 'job-cancel', onclick: () => act('cancel', [job.id], after) }, 'Cancel'));
  }
  return b;
}

// ---- pages --------------------------------------------------------------
// Each page renders into view once its data is in (unless the user has
// moved on: alive() is false then) and returns what live refresh calls.

async function queuesPage(view, params, alive) {
  const stats = el('div', { class: 'scroll' });
  const chart = el('div', { class: 'chart' });
  const queues = el('div', { class: 'scroll' });
  async function load() {
    const [s, t, q] = await Promise.all([
      api('GET', '/api/stats'), api('GET', '/api/throughput?minutes=60'), api('GET', '/api/queues')]);
    if (!alive()) return;
    stats.replaceChildren(statsTable(s.queues || []));
    chart.replaceChildren(...throughputChart(t.minutes || []));
    queues.replaceChildren(queueTable(q.queues || [], load));
  }
  await load();
  if (!alive()) return null;
  view.replaceChildren(
    el('h2', {}, 'Jobs by queue and kind'), stats,
    el('h2', {}, 'Finished per minute, last hour'), chart,
    el('h2', {}, 'Queues'), queues);
  return load;
}

function statsTable(rows) {
  if (rows.length === 0) return el('p', { testid: 'stats-empty' }, 'No jobs.');
  const total = Object.fromEntries(STATUSES.map((s) => [s, 0]));
  const countCell = (s, n, filter) => el('td', { class: 'num', testid: 'count-' + s },
    n > 0 ? el('a', { href: '#/jobs?' + jobsQuery({ ...filter, status: s }) }, String(n)) : '0');
  const body = rows.map((r) => {
    for (const s of STATUSES) total[s] += Number(r[s]) || 0;
    const tr = el('tr', { testid: 'stats-row' },
      el('td', {}, r.queue), el('td', {}, r.kind),
      STATUSES.map((s) => countCell(s, Number(r[s]) || 0, { queue: r.queue, kind: r.kind })),
      el('td', { class: 'num' }, fmtSeconds(r.oldest_runnable_age_seconds)));
    tr.dataset.queue = r.queue;
    tr.dataset.kind = r.kind;
    return tr;
  });
  const t = table('stats-table', ['Queue', 'Kind', ...STATUSES, 'Oldest runnable'], body);
  t.append(el('tfoot', {}, el('tr', { testid: 'stats-total' },
    el('th', { scope: 'row', colspan: 2 }, 'All'),
    STATUSES.map((s) => el('td', { class: 'num', testid: 'total-' + s }, String(total[s]))),
    el('td', {}))));
  return t;
}

// Bars of succeeded (below) and failed (above) jobs per minute, oldest on
// the left; minutes the API leaves out are zero.
function throughputChart(minutes) {
  const W = 720, H = 180, PAD_L = 40, PAD_B = 20, PAD_T = 10, N = 60;
  const end = Math.floor(Date.now() / 60000) * 60000;
  const start = end - (N - 1) * 60000;
  const slots = Array.from({ length: N }, () => ({ succeeded: 0, failed: 0 }));
  for (const m of minutes) {
    const at = Math.floor(Date.parse(m.at) / 60000) * 60000;
    const i = Math.round((at - start) / 60000);
    if (i >= 0 && i < N) {
      slots[i].succeeded += Number(m.succeeded) || 0;
      slots[i].failed += Number(m.failed) || 0;
    }
  }
  const max = Math.max(1, ...slots.map((s) => s.succeeded + s.failed));
  const plotH = H - PAD_B - PAD_T;
  const bw = (W - PAD_L) / N;
  const y = (n) => (n / max) * plotH;
  const hhmm = (ms) => new Date(ms).toTimeString().slice(0, 5);
  const chart = svg('svg', {
    viewBox: `0 0 ${W} ${H}`, role: 'img', testid: 'throughput-chart',
    'aria-label': 'jobs finished per minute over the last hour',
  });
  chart.append(
    svg('line', { class: 'axis', x1: PAD_L, y1: H - PAD_B, x2: W, y2: H - PAD_B }),
    svg('line', { class: 'grid', x1: PAD_L, y1: PAD_T, x2: W, y2: PAD_T }),
    svg('text', { class: 'label', x: PAD_L - 4, y: PAD_T + 4, 'text-anchor': 'end' }, String(max)),
    svg('text', { class: 'label', x: PAD_L - 4, y: H - PAD_B, 'text-anchor': 'end' }, '0'),
    svg('text', { class: 'label', x: PAD_L, y: H - 4 }, hhmm(start)),
    svg('text', { class: 'label', x: W, y: H - 4, 'text-anchor': 'end' }, hhmm(end)));
  let ok = 0, bad = 0;
  slots.forEach((s, i) => {
    ok += s.succeeded;
    bad += s.failed;
    if (s.succeeded + s.failed === 0) return;
    const x = PAD_L + i * bw + 1;
    const g = svg('g', { testid: 'throughput-bar' },
      svg('title', {}, `${hhmm(start + i * 60000)}: ${s.succeeded} succeeded, ${s.failed} failed`));
    const hs = y(s.succeeded), hf = y(s.failed);
    if (hs > 0) g.append(svg('rect', { class: 'bar-succeeded', x, y: H - PAD_B - hs, width: bw - 2, height: hs }));
    if (hf > 0) g.append(svg('rect', { class: 'bar-failed', x, y: H - PAD_B - hs - hf, width: bw - 2, height: hf }));
    chart.append(g);
  });
  return [chart, el('p', { class: 'legend', testid: 'throughput-total' },
    el('span', { class: 'key key-succeeded' }), `${ok} succeeded`, ' ',
    el('span', { class: 'key key-failed' }), `${bad} failed`)];
}

function queueTable(rows, reload) {
  if (rows.length === 0) return el('p', {}, 'No queues.');
  const pause = async (q, action, kind) => {
    const what = kind ? `kind "${kind}" of queue "${q}"` : `queue "${q}"`;
    const text = action === 'pause'
      ? `Pause ${what}? Workers stop claiming its jobs; running jobs go on.`
      : `Resume ${what}?`;
    if (!(await confirmAction(text))) return;
    try {
      await api('POST', '/api/queues/' + encodeURIComponent(q) + '/' + action, kind ? { kind } : undefined);
      say(`${what}: ${action === 'pause' ? 'paused' : 'resumed'}`);
    } catch (e) {
      fail(e);
    }
    await reload().catch(fail);
  };
  const body = rows.map((r) => {
    const kinds = Array.isArray(r.paused_kinds) ? r.paused_kinds : [];
    const state = r.paused ? 'paused' : kinds.length ? 'paused kinds: ' + kinds.join(', ') : 'active';
    const tr = el('tr', { testid: 'queue-row' },
      el('td', {}, r.queue), el('td', { testid: 'queue-state' }, state),
      ['runnable', 'scheduled', 'waiting', 'running', 'failed'].map((c) => el('td', { class: 'num' }, String(r[c] ?? 0))),
      el('td', { class: 'actions' },
        r.paused
          ? el('button', { type: 'button', testid: 'queue-resume', onclick: () => pause(r.queue, 'resume') }, 'Resume')
          : el('button', { type: 'button', testid: 'queue-pause', onclick: () => pause(r.queue, 'pause') }, 'Pause'),
        kinds.map((k) => el('button', { type: 'button', onclick: () => pause(r.queue, 'resume', k) }, 'Resume ' + k))));
    tr.dataset.queue = r.queue;
    return tr;
  });
  return table('queues-table', ['Queue', 'State', 'Runnable', 'Scheduled', 'Waiting', 'Running', 'Failed', ''], body);
}

async function jobsPage(view, params, alive) {
  const filter = { status: params.get('status') || '', queue: params.get('queue') || '', kind: params.get('kind') || '' };
  let jobs = [];
  let next = null;
  const selected = new Set();
  const tbody = el('tbody', {});
  const older = el('button', { type: 'button', testid: 'jobs-older', onclick: () => more().catch(fail) }, 'Older');
  const count = el('span', { testid: 'selected-count' });
  const bulkRetry = el('button', { type: 'button', testid: 'bulk-retry', onclick: () => act('retry', [...selected], refresh) }, 'Retry selected');
  const bulkCancel = el('button', { type: 'button', testid: 'bulk-cancel', onclick: () => act('cancel', [...selected], refresh) }, 'Cancel selected');
  const all = el('input', {
    type: 'checkbox', testid: 'select-all', 'aria-label': 'select every job shown',
    onchange: () => {
      for (const j of jobs) (all.checked ? selected.add(j.id) : selected.delete(j.id));
      draw();
    },
  });

  const fetchJobs = (limit, cursor) =>
    api('GET', '/api/jobs?' + jobsQuery({ ...filter, limit, cursor }));

  function draw() {
    for (const id of [...selected]) if (!jobs.some((j) => j.id === id)) selected.delete(id);
    tbody.replaceChildren(...jobs.map((j) => {
      const box = el('input', {
        type: 'checkbox', testid: 'job-select', 'aria-label': 'select job ' + j.id,
        onchange: () => { (box.checked ? selected.add(j.id) : selected.delete(j.id)); draw(); },
      });
      box.checked = selected.has(j.id);
      const tr = el('tr', { testid: 'job-row' },
        el('td', {}, box), el('td', { class: 'num' }, jobLink(j.id)),
        el('td', {}, j.queue), el('td', {}, j.kind), el('td', {}, statusBadge(j.status)),
        el('td', { class: 'num' }, j.max_attempts ? `${j.attempts}/${j.max_attempts}` : String(j.attempts)),
        el('td', { class: 'num' }, String(j.priority)),
        timeCell(j.run_at), timeCell(j.updated_at),
        el('td', { class: 'error-text' }, j.last_error || ''),
        el('td', { class: 'actions' }, actionButtons(j, refresh)));
      tr.dataset.id = j.id;
      tr.dataset.status = j.status;
      return tr;
    }));
    if (jobs.length === 0) tbody.append(el('tr', {}, el('td', { colspan: 11, testid: 'jobs-empty' }, 'No jobs.')));
    older.hidden = !next;
    count.textContent = selected.size + ' selected';
    bulkRetry.disabled = bulkCancel.disabled = selected.size === 0;
    all.checked = jobs.length > 0 && jobs.every((j) => selected.has(j.id));
  }

  // Live refresh reloads as many rows as are shown, newest first.
  async function refresh() {
    const r = await fetchJobs(Math.min(500, Math.max(50, jobs.length)));
    if (!alive()) return;
    jobs = r.jobs || [];
    next = r.next_cursor ?? null;
    draw();
  }

  async function more() {
    const r = await fetchJobs(50, next);
    if (!alive()) return;
    jobs = jobs.concat(r.jobs || []);
    next = r.next_cursor ?? null;
    draw();
  }

  await refresh();
  if (!alive()) return null;
  view.replaceChildren(
    el('h2', {}, filter.status === 'failed' ? 'Failed jobs' : 'Jobs'),
    filterForm(filter),
    el('div', { class: 'bulk' }, count, bulkRetry, bulkCancel),
    el('div', { class: 'scroll' }, el('table', { testid: 'jobs-table' },
      el('thead', {}, el('tr', {},
        el('th', { scope: 'col' }, all),
        ['ID', 'Queue', 'Kind', 'Status', 'Attempts', 'Priority', 'Run at', 'Updated', 'Last error', 'Actions']
          .map((h) => el('th', { scope: 'col' }, h)))),
      tbody)),
    older);
  return refresh;
}

function filterForm(filter) {
  const status = el('select', { id: 'f-status', name: 'status', testid: 'filter-status' },
    el('option', { value: '' }, 'any'), STATUSES.map((s) => el('option', { value: s }, s)));
  if (filter.status && !STATUSES.includes(filter.status)) status.append(el('option', { value: filter.status }, filter.status));
  status.value = filter.status;
  const queue = el('input', { id: 'f-queue', name: 'queue', testid: 'filter-queue' });
  const kind = el('input', { id: 'f-kind', name: 'kind', testid: 'filter-kind' });
  queue.value = filter.queue;
  kind.value = filter.kind;
  return el('form', {
    class: 'filters', testid: 'jobs-filter',
    onsubmit: (ev) => {
      ev.preventDefault();
      location.hash = '#/jobs?' + jobsQuery({ status: status.value, queue: queue.value.trim(), kind: kind.value.trim() });
    },
  },
  el('label', { for: 'f-status' }, 'Status'), status,
  el('label', { for: 'f-queue' }, 'Queue'), queue,
  el('label', { for: 'f-kind' }, 'Kind'), kind,
  el('button', { type: 'submit', testid: 'filter-apply' }, 'Filter'));
}

async function jobPage(view, id, alive) {
  if (!/^[0-9]+$/.test(id)) throw new ApiError(`job "${id}" is not a number`, 400);
  const box = el('div', {});
  async function load() {
    const j = await api('GET', '/api/jobs/' + id);
    if (alive()) box.replaceChildren(...jobDetail(j, load));
  }
  await load();
  if (!alive()) return null;
  view.replaceChildren(box);
  return load;
}

function jobDetail(j, reload) {
  const dl = (testid, pairs) => el('dl', { testid }, pairs.map(([k, v]) => [el('dt', {}, k), el('dd', {}, v)]));
  const p = j.progress;
  const errors = Array.isArray(j.errors) ? j.errors : [];
  return [
    el('h2', { testid: 'job-title' }, 'Job ' + j.id + ' ', statusBadge(j.status)),
    el('div', { class: 'actions' }, actionButtons(j, reload)),
    el('div', { class: 'columns' },
      el('section', {}, el('h3', {}, 'Job'), dl('job-fields', [
        ['Queue', j.queue], ['Kind', el('span', { testid: 'job-kind' }, j.kind)], ['Status', j.status],
        ['Priority', String(j.priority)], ['Attempts', `${j.attempts} of ${j.max_attempts ?? "the worker's default"}`],
        ['Worker', j.worker_id ?? '—'], ['Unique key', j.unique_key ?? '—'],
        ['Concurrency key', j.concurrency_key ?? '—'], ['Tags', list(j.tags)],
        ['Meta', j.meta && Object.keys(j.meta).length ? JSON.stringify(j.meta) : '—'],
        ['Depends on', Array.isArray(j.depends_on) && j.depends_on.length
          ? j.depends_on.flatMap((d, i) => (i ? [', ', jobLink(d)] : [jobLink(d)])) : '—'],
      ])),
      el('section', {}, el('h3', {}, 'Timings'), dl('job-timings', [
        ['Created', fmtTime(j.created_at)], ['Run at', fmtTime(j.run_at)],
        ['Started', fmtTime(j.started_at)], ['Finished', fmtTime(j.finished_at)],
        ['Updated', fmtTime(j.updated_at)],
        ['Waited', fmtSeconds(between(Date.parse(j.run_at) > Date.parse(j.created_at) ? j.run_at : j.created_at, j.started_at))],
        ['Ran', fmtSeconds(between(j.started_at, j.finished_at))],
      ]))),
    el('h3', {}, 'Progress'),
    p && (p.percent !== null || p.message)
      ? el('p', { testid: 'job-progress' },
        p.percent !== null && p.percent !== undefined
          ? [el('progress', { max: 100, value: p.percent }), ` ${p.percent}% `] : null,
        p.message || '')
      : el('p', { testid: 'job-progress' }, '—'),
    el('h3', {}, 'Payload'), el('pre', { testid: 'job-payload' }, pretty(j.payload)),
    el('h3', {}, 'Result'), el('pre', { testid: 'job-result' }, pretty(j.result)),
    el('h3', {}, 'Errors'),
    errors.length
      ? table('job-errors', ['At', 'Attempt', 'Error'], errors.map((e) => el('tr', { testid: 'error-row' },
        timeCell(e.at), el('td', { class: 'num' }, String(e.attempt ?? '—')),
        el('td', {}, el('pre', {}, typeof e.error === 'string' ? e.error : pretty(e.error))))))
      : el('p', { testid: 'job-errors' }, 'None.'),
  ];
}

async function workersPage(view, params, alive) {
  const box = el('div', { class: 'scroll' });
  async function load() {
    const r = await api('GET', '/api/workers');
    if (!alive()) return;
    const rows = r.workers || [];
    box.replaceChildren(rows.length === 0 ? el('p', { testid: 'workers-empty' }, 'No workers.')
      : table('workers-table', ['ID', 'Host', 'PID', 'Queues', 'Priorities', 'Concurrency', 'Running',
        'Version', 'Started', 'Heartbeat age', 'State'],
      rows.map((w) => el('tr', { testid: 'worker-row' },
        el('td', {}, String(w.id)), el('td', {}, w.host ?? '—'), el('td', { class: 'num' }, String(w.pid ?? '—')),
        el('td', {}, list(w.queues)), el('td', {}, list(w.priorities)),
        el('td', { class: 'num' }, String(w.concurrency ?? '—')), el('td', { class: 'num' }, String(w.running ?? '—')),
        el('td', {}, w.version ?? '—'), timeCell(w.started_at),
        el('td', { class: 'num', testid: 'heartbeat-age' }, fmtSeconds(w.heartbeat_age_seconds)),
        // not alive: no heartbeat within its lease, or its lock is gone
        el('td', { testid: 'worker-state', class: w.alive === false ? 'gone' : undefined },
          w.alive === false ? 'gone' : 'alive')))));
  }
  await load();
  if (!alive()) return null;
  view.replaceChildren(el('h2', {}, 'Workers'), box);
  return load;
}

async function recoverPage(view, params, alive) {
  const field = (id, label, input) => [el('label', { for: id }, label), input];
  const statuses = ['failed', 'queued', 'running'].map((s) =>
    el('label', { class: 'check' }, el('input', { type: 'checkbox', name: 'status', value: s, checked: s === 'failed' }), ' ' + s));
  const older = el('input', { id: 'r-older', placeholder: 'server default', testid: 'recover-older' });
  const queue = el('input', { id: 'r-queue', testid: 'recover-queue' });
  const kind = el('input', { id: 'r-kind', testid: 'recover-kind' });
  const limit = el('input', { id: 'r-limit', type: 'number', min: 1, placeholder: 'server default', testid: 'recover-limit' });
  const out = el('div', { testid: 'recover-result' });
  let planned = null; // the request the last dry run answered
  const run = el('button', { type: 'button', class: 'primary', testid: 'recover-run', disabled: true }, 'Recover');

  function request() {
    const r = { status: statuses.map((l) => l.firstChild).filter((c) => c.checked).map((c) => c.value) };
    if (older.value.trim()) r.older_than = older.value.trim();
    if (queue.value.trim()) r.queue = queue.value.trim();
    if (kind.value.trim()) r.kind = kind.value.trim();
    if (limit.value) r.limit = Number(limit.value);
    return r;
  }

  // How many jobs of each status and kind, and what they become, as
  // skipq recover prints them.
  function report(r, dry) {
    const kinds = r.kinds || [];
    const n = r.count ?? 0;
    out.replaceChildren(
      el('p', { testid: 'recover-count' }, dry
        ? `${n} job${n === 1 ? '' : 's'} would change.`
        : `${n} job${n === 1 ? '' : 's'} changed.`),
      kinds.length ? table('recover-kinds', ['Status', 'Kind', 'Jobs', 'Becomes'],
        kinds.map((k) => el('tr', { testid: 'recover-kind' }, el('td', {}, statusBadge(k.status)),
          el('td', {}, k.kind), el('td', { class: 'num' }, String(k.jobs)), el('td', {}, statusBadge(k.to))))) : null);
    return n;
  }

  async function dryRun(ev) {
    ev.preventDefault();
    run.disabled = true;
    planned = null;
    const req = request();
    try {
      const n = report(await api('POST', '/api/recover', { ...req, dry_run: true }), true);
      planned = req;
      run.disabled = n === 0;
      run.textContent = `Recover ${n} job${n === 1 ? '' : 's'}`;
    } catch (e) {
      fail(e);
    }
  }

  run.addEventListener('click', async () => {
    const req = planned;
    if (!req || !(await confirmAction(`Put the jobs the dry run found (${req.status.join(', ')}) back to queued? ` +
      'Rows that changed since are re-checked by the server.'))) return;
    run.disabled = true;
    planned = null;
    try {
      report(await api('POST', '/api/recover', { ...req, dry_run: false }), false);
    } catch (e) {
      fail(e);
    }
  });

  const form = el('form', { class: 'filters', testid: 'recover-form', onsubmit: dryRun },
    el('fieldset', {}, el('legend', {}, 'Status'), statuses),
    field('r-older', 'Not updated for', older), field('r-queue', 'Queue', queue),
    field('r-kind', 'Kind', kind), field('r-limit', 'Limit', limit),
    el('button', { type: 'submit', testid: 'recover-dry-run' }, 'Dry run'), run);
  // A changed form needs a new dry run before the real one.
  form.addEventListener('input', () => {
    planned = null;
    run.disabled = true;
    run.textContent = 'Recover';
  });
  if (!alive()) return null;
  view.replaceChildren(el('h2', {}, 'Recover'),
    el('p', {}, 'Put failed, stale queued, or orphaned running jobs back to queued. ' +
      'Running jobs whose worker is gone with no attempts left become failed. ' +
      'A dry run shows what would change; the real run follows it.'), form, out);
  return null;
}

// ---- routing and live refresh -------------------------------------------

const PAGES = { queues: queuesPage, jobs: jobsPage, workers: workersPage, recover: recoverPage };
let generation = 0;
let refresher = null;
let refreshing = false;

async function show() {
  const my = ++generation;
  const alive = () => my === generation;
  const hash = location.hash.replace(/^#/, '') || '/queues';
  const q = hash.indexOf('?');
  const parts = (q < 0 ? hash : hash.slice(0, q)).split('/').filter(Boolean);
  const params = new URLSearchParams(q < 0 ? '' : hash.slice(q + 1));
  const name = PAGES[parts[0]] ? parts[0] : 'queues';
  const nav = name === 'jobs' && !parts[1] && params.get('status') === 'failed' ? 'failed' : name;
  for (const a of document.querySelectorAll('nav a')) {
    if (a.dataset.nav === nav) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  refresher = null;
  hush();
  const view = $('#view');
  view.replaceChildren(el('p', { class: 'loading' }, 'Loading…'));
  try {
    const r = name === 'jobs' && parts[1]
      ? await jobPage(view, decodeURIComponent(parts[1]), alive)
      : await PAGES[name](view, params, alive);
    if (alive()) refresher = r;
  } catch (e) {
    if (!alive()) return;
    view.replaceChildren();
    fail(e);
  }
}

async function tick() {
  if (!$('#live').checked || !refresher || refreshing || document.hidden || dialogOpen()) return;
  refreshing = true;
  const r = refresher;
  try {
    await r();
  } catch (e) {
    if (refresher === r) fail(e);
  } finally {
    refreshing = false;
  }
}

$('#live').checked = sessionStorage.getItem('skipq.live') !== 'off';
$('#live').addEventListener('change', () => sessionStorage.setItem('skipq.live', $('#live').checked ? 'on' : 'off'));
$('#token-button').addEventListener('click', () => askToken(''));
$('#token').addEventListener('close', tokenClosed);
window.addEventListener('hashchange', show);
setInterval(tick, POLL_MS);
show();
