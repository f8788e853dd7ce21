// common.mjs - what the peer drivers share: their settings from the
// environment, the clock, the enqueue loops, the pickup-latency protocol
// (the same as `skipq bench latency`: an idle worker, one job every 20 ms,
// timed from before the enqueue call to the handler's start) and one JSON
// line per measurement, in the shape of `skipq bench --json`.
import { appendFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import pg from 'pg';

function num(name, dflt) {
  const v = process.env[name];
  if (v === undefined || v === '') return dflt;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new Error(`${name}="${v}" is not a number`);
  return n;
}

export const params = {
  url: process.env.DATABASE_URL,
  N: num('N', 20000), // jobs to bulk-enqueue and drain
  C: num('C', 16), // handlers at once: skipq's --concurrency in the same run
  nSingle: num('N_SINGLE', 2000), // jobs for the one-at-a-time enqueues
  inflight: num('INFLIGHT', 8), // callers of the parallel one-at-a-time enqueue
  chunk: num('BULK_CHUNK', 1000), // jobs per bulk call
  latN: num('LAT_N', 1000), // pickup-latency samples
  latGapMs: 20,
  drainCapS: num('DRAIN_CAP_S', 120),
  rep: process.env.REP || '1',
  config: process.env.CONFIG || '',
};
if (!params.url) throw new Error('DATABASE_URL is not set');

export const now = () => performance.now();
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// the ceil(p% * n)-th smallest, as skipq bench computes it
function pct(sorted, p) {
  if (sorted.length === 0) return null;
  const k = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[k];
}

export function emit(base, fields) {
  const line = JSON.stringify({ rep: params.rep, ...base, ...fields });
  console.log(line);
  if (process.env.RESULTS_FILE) appendFileSync(process.env.RESULTS_FILE, line + '\n');
}

export function rate(jobs, ms) {
  return { jobs, seconds: ms / 1000, jobs_per_s: jobs / (ms / 1000) };
}

export async function sqlClient() {
  const c = new pg.Client({ connectionString: params.url });
  await c.connect();
  return c;
}

// count jobs one call at a time from `inflight` callers; returns ms
export async function enqueueSingles(count, inflight, addOne) {
  let next = 0;
  const t0 = now();
  const lane = async () => {
    for (let i = next++; i < count; i = next++) await addOne(i);
  };
  await Promise.all(Array.from({ length: inflight }, lane));
  return now() - t0;
}

// count jobs in calls of `chunk`; returns ms
export async function enqueueBulk(count, chunk, addMany) {
  const t0 = now();
  for (let i = 0; i < count; i += chunk) await addMany(i, Math.min(chunk, count - i));
  return now() - t0;
}

export async function waitFor(predicate, everyMs, capMs) {
  const t0 = now();
  while (!(await predicate())) {
    if (now() - t0 > capMs) return false;
    await sleep(everyMs);
  }
  return true;
}

// The handler side: what a no-op handler does with a job's payload. Drain
// jobs are counted; latency jobs record their pickup time.
export const counter = { handled: 0, lat: [], tag: null };
export function handle(payload, t) {
  if (payload && payload.tag !== undefined) {
    if (payload.tag === counter.tag) counter.lat.push(t - payload.t);
  } else if (!(payload && payload.warm)) {
    counter.handled++;
  }
}

// Pickup latency with the worker idle: p50/p95/p99/max ms, or null fields
// when the samples did not all arrive within capMs.
export async function measureLatency(addOne, capMs = 60000) {
  for (let i = 0; i < 5; i++) {
    await addOne({ warm: true });
    await sleep(params.latGapMs);
  }
  counter.tag = Math.random().toString(36).slice(2);
  counter.lat = [];
  for (let i = 0; i < params.latN; i++) {
    await addOne({ tag: counter.tag, t: now() });
    await sleep(params.latGapMs);
  }
  const ok = await waitFor(async () => counter.lat.length >= params.latN, 5, capMs);
  const s = [...counter.lat].sort((a, b) => a - b);
  return {
    jobs: s.length,
    complete: ok,
    p50_ms: pct(s, 50),
    p95_ms: pct(s, 95),
    p99_ms: pct(s, 99),
    max_ms: s.length ? s[s.length - 1] : null,
  };
}

// The drain: start the workers (start() resolves once they run), wait for
// the handlers to see every job, then for the table to agree (left() == 0).
// Timed from before start(), as skipq's drain is timed from the spawn.
export async function measureDrain(start, left, capS = params.drainCapS) {
  counter.handled = 0;
  const t0 = now();
  await start();
  const done = await waitFor(async () => counter.handled >= params.N, 2, capS * 1000);
  if (done) await waitFor(async () => (await left()) === 0, 5, 30000);
  const ms = now() - t0;
  const handled = done ? params.N : counter.handled;
  return {
    ...rate(handled, ms),
    capped: !done,
    // the node process's peak so far, kB: what a worker process costs
    max_rss_kb: process.resourceUsage().maxRSS,
  };
}

export function run(main) {
  main().then(
    () => process.exit(0),
    (e) => {
      console.error(e);
      process.exit(1);
    },
  );
}
