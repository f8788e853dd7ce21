// summarize.mjs - the table of one bench/compare.sh run: skipq beside
// graphile-worker, pg-boss and raw SQL, the ratios skipq/peer, and the
// targets docs/performance.md judges.
//
//   node bench/summarize.mjs [--md] bench/results/<ts>
//
// Reads <ts>/results.jsonl: one JSON object per measurement, from
// `skipq bench --json`, the peer drivers (bench/peers) and the raw SQL
// yardsticks, each with "rep", "system", "config", "metric" and
// "jobs_per_s" or the latency fields. Cells are medians over repetitions.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

const argv = process.argv.slice(2);
const md = argv[0] === '--md';
const dir = md ? argv[1] : argv[0];
if (!dir) {
  console.error('usage: summarize.mjs [--md] RESULTS_DIR');
  process.exit(2);
}
const read = (f) => {
  try {
    return readFileSync(join(dir, f), 'utf8');
  } catch {
    return '';
  }
};
const rows = read('results.jsonl')
  .split('\n')
  .filter((l) => l.startsWith('{'))
  .flatMap((l) => {
    try {
      return [JSON.parse(l)];
    } catch {
      return [];
    }
  });

const isNum = (v) => typeof v === 'number' && Number.isFinite(v);
const median = (xs) => {
  const s = xs.filter(isNum).sort((a, b) => a - b);
  if (!s.length) return null;
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const pick = (system, metric, config, extra = {}) =>
  rows.filter(
    (r) =>
      r.system === system &&
      r.metric === metric &&
      (config === undefined || r.config === config) &&
      Object.entries(extra).every(([k, v]) => r[k] === v),
  );
const med = (rs, field = 'jobs_per_s') => median(rs.map((r) => r[field]));
const configs = (system, metric) => [...new Set(pick(system, metric).map((r) => r.config))].sort();
// [value, config] of the best configuration's median; capped drains do not count
function best(system, metric, field = 'jobs_per_s', lower = false, only = () => true) {
  let out = [null, null];
  for (const c of configs(system, metric).filter(only)) {
    const v = med(pick(system, metric, c).filter((r) => !r.capped), field);
    if (v !== null && (out[0] === null || (lower ? v < out[0] : v > out[0]))) out = [v, c];
  }
  return out;
}
const sk = (metric, config, field = 'jobs_per_s') => med(pick('skipq', metric, config), field);
// skipq/raw ratios of the pairs run back to back (one "rep" label)
function paired(metric, sCfg, rawCfg) {
  const s = new Map(pick('skipq', metric, sCfg).map((r) => [r.rep, r.jobs_per_s]));
  const ratios = pick('raw-sql', metric, rawCfg)
    .filter((r) => isNum(s.get(r.rep)) && isNum(r.jobs_per_s) && r.jobs_per_s > 0)
    .map((r) => s.get(r.rep) / r.jobs_per_s);
  return [median(ratios), ratios];
}
const fmt = (v, d = 0) =>
  v === null || v === undefined
    ? '-'
    : v.toLocaleString('en-US', { minimumFractionDigits: d, maximumFractionDigits: d });
const ratio = (a, b) => (a === null || b === null || b === undefined || !b ? '-' : `${(a / b).toFixed(2)}x`);

const GW = 'graphile-worker';
const BOSS = 'pg-boss';

// raw SQL
const bulkN = pick('skipq', 'enqueue_bulk', 'c-batch').map((r) => r.jobs).pop();
const copyPeer = med(pick('raw-sql', 'enqueue_bulk', 'copy'));
const copySame = med(pick('raw-sql', 'enqueue_bulk', 'copy-skipq-jobs', { jobs: bulkN }));
const copyProc = med(pick('raw-sql', 'enqueue_bulk', 'copy-skipq-jobs-process', { jobs: bulkN }));
const bulkRef = copySame ?? copyPeer;
const bulkRefName = copySame !== null ? 'COPY into skipq.jobs' : copyPeer !== null ? 'COPY, bare table' : null;
const [rawUpdate, rawUpdateC] = best('raw-sql', 'drain', 'jobs_per_s', false, (c) => c.startsWith('claim-update'));
const [rawFused, rawFusedC] = best('raw-sql', 'drain', 'jobs_per_s', false, (c) => c.startsWith('claim-fused'));
const pgb = (cfg) => med(pick('raw-sql', 'enqueue_single', cfg));
const [pgb1, pgb8, pgs1, pgs8] = [
  'pgbench-insert-1conn',
  'pgbench-insert-8conn',
  'pgbench-skipq-stmt-1conn',
  'pgbench-skipq-stmt-8conn',
].map(pgb);

// the peers
const peer = (sys) => {
  const [drain, drainC] = best(sys, 'drain');
  const [lat50, latC] = best(sys, 'latency', 'p50_ms', true);
  return {
    bulk: med(pick(sys, 'enqueue_bulk')),
    one: med(pick(sys, 'enqueue_single', '1conn')),
    many: med(pick(sys, 'enqueue_single', '8conn')),
    drain,
    drainC,
    lat50,
    latC,
    lat: (f) => (latC ? med(pick(sys, 'latency', latC), f) : null),
    rss: drainC ? med(pick(sys, 'drain', drainC), 'max_rss_kb') : null,
  };
};
const gw = peer(GW);
const bo = peer(BOSS);

// skipq: its best drain, the best with rows kept, one worker process
const [sDrain, drainCfg] = best('skipq', 'drain');
const [keepBest, keepCfg] = best('skipq', 'drain', 'jobs_per_s', false, (c) => !c.includes('del'));
const oneCfg = configs('skipq', 'drain').sort((a, b) => a.length - b.length || a.localeCompare(b))[0] ?? null;
const sDrain1 = sk('drain', oneCfg);
const sLat = Object.fromEntries(
  ['p50_ms', 'p95_ms', 'p99_ms', 'from_commit_p50_ms', 'from_commit_p99_ms', 'enqueue_p50_ms'].map((f) => [
    f,
    sk('latency', undefined, f),
  ]),
);
const sBatch = sk('enqueue_bulk', 'c-batch');
const sCli = sk('enqueue_bulk', 'cli-stdin');
const s1 = sk('enqueue_single', '1conn');
const s8 = sk('enqueue_single', '8conn');
const s8w = sk('enqueue_single', '8conn-waiting');
// skipq_enqueue and the yardstick's INSERT interleaved on two connections
const vsInsert = (cfg) => {
  const rs = pick('skipq', 'enqueue_single', cfg)
    .filter((r) => isNum(r.jobs_per_s) && isNum(r.insert_jobs_per_s) && r.insert_jobs_per_s > 0)
    .map((r) => r.jobs_per_s / r.insert_jobs_per_s);
  return [rs, median(rs)];
};
const [vsIns, vsInsM] = vsInsert('1conn-vs-insert');
const [vsInsW, vsInsWM] = vsInsert('1conn-vs-insert-waiting');
const sCmd = sk('command_drain');
const sRss = sk('drain', oneCfg, 'max_rss_kb');
const sCpu = sk('drain', oneCfg, 'cpu_s');
const deepAll = configs('skipq', 'deep');
const deep = deepAll
  .filter((c) => c.startsWith('backlog'))
  .sort((a, b) => Number(a.slice(7)) - Number(b.slice(7)));
const deepSched = deepAll.filter((c) => c.startsWith('scheduled'));
const deepSmall = deep.length ? sk('deep', deep[0]) : null;
const deepBig = deep.length > 1 ? sk('deep', deep[deep.length - 1]) : null;
const deepIdx = deep.length ? pick('skipq', 'deep').every((r) => r.claim_uses_index) : null;

const H = ['figure', 'skipq', 'graphile-worker best', 'pg-boss best', 'raw SQL', 'skipq/gw', 'skipq/boss', 'skipq/raw'];
const T = [];
const named = (v, d, name) => fmt(v, d) + (name && v !== null && v !== undefined ? ` (${name})` : '');
function row(name, s, g, b, r, { d = 0, gc, bc, rn } = {}) {
  T.push([name, fmt(s, d), named(g, d, gc), named(b, d, bc), named(r, d, rn), ratio(s, g), ratio(s, b), ratio(s, r)]);
}
const text = (name, cell) => T.push([name, cell, '', '', '', '', '', '']);
const pair2 = (a, b, d = 2) => `${fmt(a, d)} / ${fmt(b, d)}`;

row('bulk enqueue, C batch, jobs/s', sBatch, gw.bulk, bo.bulk, bulkRef, { rn: bulkRefName });
row('bulk enqueue, CLI stdin, jobs/s', sCli, gw.bulk, bo.bulk, bulkRef, { rn: bulkRefName });
if (copyProc !== null)
  row('bulk enqueue, CLI stdin vs psql \\copy, both whole processes', sCli, null, null, copyProc, {
    rn: 'psql \\copy process',
  });
if (copySame !== null && copyPeer !== null)
  row('bulk enqueue, C batch vs a bare table', sBatch, null, null, copyPeer, { rn: 'COPY, bare table' });
row('single enqueue, 1 connection, jobs/s', s1, gw.one, bo.one, pgb1, { rn: 'pgbench 1 client' });
row('single enqueue, 8 connections (peers: 8 in flight)', s8, gw.many, bo.many, pgb8, { rn: 'pgbench 8 clients' });
if (s8w !== null)
  row('single enqueue, 8 conns, a worker waiting (both notify every job)', s8w, null, null, pgb8, {
    rn: 'pgbench 8 clients',
  });
if (pgs1 !== null || pgs8 !== null) {
  row("single enqueue, 1 connection, vs pgbench sending skipq's statement", s1, null, null, pgs1, {
    rn: "pgbench, skipq's statement, 1 client",
  });
  row("single enqueue, 8 conns, vs pgbench sending skipq's statement", s8, null, null, pgs8, {
    rn: "pgbench, skipq's statement, 8 clients",
  });
}
const drainPeers = { gc: gw.drainC, bc: bo.drainC, rn: rawUpdateC };
row(`drain ${drainCfg ?? ''}, jobs/s`, sDrain, gw.drain, bo.drain, rawUpdate, drainPeers);
row('drain vs raw fused', sDrain, null, null, rawFused, { rn: rawFusedC });
if (keepCfg && keepCfg !== drainCfg)
  row(`drain ${keepCfg}, succeeded rows kept (default), jobs/s`, keepBest, gw.drain, bo.drain, rawUpdate, drainPeers);
if (oneCfg !== drainCfg)
  row(`drain ${oneCfg}, one worker process, jobs/s`, sDrain1, gw.drain, bo.drain, rawUpdate, drainPeers);
for (const p of ['p50', 'p95', 'p99'])
  row(`pickup latency ${p}, ms (lower is better)`, sLat[`${p}_ms`], gw.lat(`${p}_ms`), bo.lat(`${p}_ms`), null, {
    d: 2,
    gc: gw.latC,
    bc: bo.latC,
  });
if (sLat.from_commit_p50_ms !== null)
  text(
    "pickup from the enqueue's commit p50 / p99 ms; the enqueue call p50",
    `${pair2(sLat.from_commit_p50_ms, sLat.from_commit_p99_ms)}; ${fmt(sLat.enqueue_p50_ms, 2)}`,
  );
row(`worker peak RSS ${oneCfg ?? ''}, kB (lower is better)`, sRss, gw.rss, bo.rss, null, {
  gc: gw.drainC,
  bc: bo.drainC,
});
if (sCmd !== null) row('command drain /bin/true c8, jobs/s', sCmd, null, null, null);
row(`worker CPU for the drain ${oneCfg ?? ''}, s`, sCpu, null, null, null, { d: 2 });
for (const c of deep) {
  text(`deep: drain with ${c.slice(7)} waiting, jobs/s`, fmt(sk('deep', c)));
  text(`deep: claim p50 / p99 ms with ${c.slice(7)} waiting`, pair2(sk('deep', c, 'claim_p50_ms'), sk('deep', c, 'claim_p99_ms')));
}
for (const c of deepSched) {
  const n = c.slice(9);
  text(`deep: drain of 10000 runnable among ${n} scheduled, jobs/s`, fmt(sk('deep', c)));
  text(`deep: claim p50 / p99 ms, nothing runnable, ${n} scheduled`, pair2(sk('deep', c, 'claim_p50_ms'), sk('deep', c, 'claim_p99_ms')));
}
const st = pick('skipq', 'steady');
if (st.length)
  text(
    `steady ${st[0].config}: p50 / p99 / max ms, worst stall ms`,
    `${fmt(med(st, 'p50_ms'), 2)} / ${fmt(med(st, 'p99_ms'), 2)} / ${fmt(med(st, 'max_ms'), 2)}, ${fmt(med(st, 'worst_stall_ms'), 1)}`,
  );

// ---- the targets ----
const target = (name, ok, detail) => [name, detail, ok === null || ok === undefined ? 'n/a' : ok ? 'met' : 'NOT MET'];
const ge = (a, b, k = 1) => (a === null || b === null ? null : a >= k * b);
function pairTarget(name, s, ref, k, metric, sCfg, rawCfg, refName = '', also = '') {
  const [pm, ratios] = paired(metric, sCfg, rawCfg);
  let detail = `${fmt(s)} vs ${fmt(ref)}${refName} = ${ratio(s, ref)}`;
  if (pm === null || ratios.length < 2) return target(name, ge(s, ref, k), detail + also);
  detail += `; median of ${ratios.length} back-to-back pairs ${pm.toFixed(2)}x (${Math.min(...ratios).toFixed(2)}x to ${Math.max(...ratios).toFixed(2)}x)`;
  return target(name, pm >= k, detail + also);
}
const kept = (ref) =>
  keepCfg && keepCfg !== drainCfg ? `; rows kept ${fmt(keepBest)} (${keepCfg}) = ${ratio(keepBest, ref)}` : '';
const spread = (xs) => `(${Math.min(...xs).toFixed(2)}x to ${Math.max(...xs).toFixed(2)}x)`;
const gwP99 = gw.lat('p99_ms');
const boP99 = bo.lat('p99_ms');
const TG = [
  target('drain >= 2x graphile-worker best', ge(sDrain, gw.drain, 2), `${fmt(sDrain)} (${drainCfg}) vs ${fmt(gw.drain)} = ${ratio(sDrain, gw.drain)}${kept(gw.drain)}`),
  target('drain >= 1.0x raw claim-update', ge(sDrain, rawUpdate), `${fmt(sDrain)} (${drainCfg}) vs ${fmt(rawUpdate)} (${rawUpdateC}) = ${ratio(sDrain, rawUpdate)}${kept(rawUpdate)}`),
  target('(aim) drain >= raw claim-fused', ge(sDrain, rawFused), `${fmt(sDrain)} vs ${fmt(rawFused)} = ${ratio(sDrain, rawFused)}`),
  target(
    "pickup p50 <= 1 ms (from the enqueue's commit)",
    sLat.from_commit_p50_ms === null ? null : sLat.from_commit_p50_ms <= 1,
    `${fmt(sLat.from_commit_p50_ms, 2)} ms; from before the enqueue call ${fmt(sLat.p50_ms, 2)} ms (the call itself ${fmt(sLat.enqueue_p50_ms, 2)} ms)`,
  ),
  target(
    "pickup p99 <= 3 ms (from the enqueue's commit)",
    sLat.from_commit_p99_ms === null ? null : sLat.from_commit_p99_ms <= 3,
    `${fmt(sLat.from_commit_p99_ms, 2)} ms; from before the enqueue call ${fmt(sLat.p99_ms, 2)} ms`,
  ),
  target(
    'pickup p50 and p99 lower than both peers',
    [sLat.p50_ms, gw.lat50, bo.lat50, gwP99, boP99].includes(null)
      ? null
      : sLat.p50_ms < Math.min(gw.lat50, bo.lat50) && sLat.p99_ms < Math.min(gwP99, boP99),
    `p50 ${fmt(sLat.p50_ms, 2)} vs ${fmt(gw.lat50, 2)} / ${fmt(bo.lat50, 2)}; p99 ${fmt(sLat.p99_ms, 2)} vs ${fmt(gwP99, 2)} / ${fmt(boP99, 2)}`,
  ),
  pairTarget('bulk enqueue, C batch >= 0.8x raw COPY', sBatch, bulkRef, 0.8, 'enqueue_bulk', 'c-batch', 'copy-skipq-jobs', ` (${bulkRefName})`),
  pairTarget(
    'bulk enqueue, CLI stdin >= 0.8x raw COPY',
    sCli,
    bulkRef,
    0.8,
    'enqueue_bulk',
    'cli-stdin',
    'copy-skipq-jobs',
    ` (${bulkRefName})`,
    copyProc === null
      ? ''
      : `; like for like, against psql's \\copy timed as a whole process: ${fmt(copyProc)} = ${ratio(sCli, copyProc)}`,
  ),
  pairTarget('single enqueue from C >= pgbench, same INSERT (1 client)', s1, pgb1, 1, 'enqueue_single', '1conn', 'pgbench-insert-1conn'),
  target(
    'single enqueue from C >= the same INSERT, interleaved 100 at a time (1 connection)',
    vsInsM === null ? null : vsInsM >= 1,
    vsInsM === null
      ? '-'
      : `no worker waiting: median of ${vsIns.length} ${vsInsM.toFixed(2)}x ${spread(vsIns)}` +
          (vsInsWM === null ? '' : `; a worker waiting (both notify every job): median ${vsInsWM.toFixed(2)}x ${spread(vsInsW)}`),
  ),
  pairTarget('single enqueue from C >= pgbench, same INSERT (8 clients)', s8, pgb8, 1, 'enqueue_single', '8conn', 'pgbench-insert-8conn'),
  pairTarget('single enqueue from C >= pgbench, same INSERT (8 clients, a worker waiting)', s8w, pgb8, 1, 'enqueue_single', '8conn-waiting', 'pgbench-insert-8conn'),
  pairTarget("(like for like) single enqueue from C >= pgbench sending skipq's statement, 1 client", s1, pgs1, 1, 'enqueue_single', '1conn', 'pgbench-skipq-stmt-1conn'),
  pairTarget("(like for like) single enqueue from C >= pgbench sending skipq's statement, 8 clients", s8, pgs8, 1, 'enqueue_single', '8conn', 'pgbench-skipq-stmt-8conn'),
  target('command handlers (/bin/true) >= 2,000 jobs/s at c8', sCmd === null ? null : sCmd >= 2000, `${fmt(sCmd)} jobs/s`),
  target('worker peak RSS <= 10 MB', sRss === null ? null : sRss <= 10240, `${fmt(sRss)} kB (graphile-worker ${fmt(gw.rss)} kB, pg-boss ${fmt(bo.rss)} kB)`),
  target(
    'deep: large-backlog drain within 15% of 10,000',
    deepSmall === null || deepBig === null ? null : deepBig >= 0.85 * deepSmall,
    `${fmt(deepBig)} vs ${fmt(deepSmall)} = ${ratio(deepBig, deepSmall)} (${deep.length ? deep[deep.length - 1] : '-'})`,
  ),
  target('deep: claim uses the partial index', deepIdx, deepIdx ? "EXPLAIN of the worker's claim names jobs_runnable_idx" : '-'),
  target('soak: 10 min at 80% of max drain', null, 'not part of this run'),
];

function table(header, body) {
  if (md)
    return [`| ${header.join(' | ')} |`, `|${header.map(() => '---').join('|')}|`, ...body.map((b) => `| ${b.join(' | ')} |`)].join('\n');
  const w = header.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  const line = (cols) => cols.map((c, i) => c.padEnd(w[i])).join('  ').trimEnd();
  return [line(header), line(w.map((n) => '-'.repeat(n))), ...body.map(line)].join('\n');
}

const reps = new Set(pick('skipq', 'drain').map((r) => r.rep)).size;
const out = read('machine.txt').split('\n').filter((l) => l.trim());
for (const n of read('notes.txt').split('\n').filter((l) => l.trim())) out.push(`NOTE: ${n}`);
out.push(`skipq repetitions: ${reps}; cells are medians; ratios are skipq/peer (for latency and RSS lower is better)`);
out.push('', table(H, T), '', 'Targets:', table(['target', 'measured', 'verdict'], TG));
console.log(out.join('\n'));
