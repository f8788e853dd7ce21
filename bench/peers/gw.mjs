// gw.mjs - graphile-worker: one-at-a-time and bulk enqueue, the drain of
// N no-op jobs at concurrency C, and pickup latency with the worker idle.
//
//   DATABASE_URL=... N=20000 C=16 CONFIG=plain|lq node gw.mjs
//
// plain: concurrency C, a pool of C+2 (the documentation's advice), the
//        rest default (LISTEN/NOTIFY, no local queue, no batched completion).
// lq:    plain plus the batching of graphile-worker's performance page:
//        localQueue.size 500, completeJobBatchDelay and failJobBatchDelay 0.
// The database must be new: compare.sh makes one for every run.
import { Logger, makeWorkerUtils, run as runWorker, runMigrations } from 'graphile-worker';
import { readFileSync } from 'node:fs';
import * as h from './common.mjs';

const { url, N, C } = h.params;
const name = h.params.config || 'plain';
const presets = {
  plain: {},
  lq: { localQueue: { size: 500 }, completeJobBatchDelay: 0, failJobBatchDelay: 0 },
};
if (!presets[name]) throw new Error(`unknown CONFIG "${name}" (plain or lq)`);
const version = JSON.parse(
  readFileSync(new URL('./node_modules/graphile-worker/package.json', import.meta.url)),
).version;
const base = {
  system: 'graphile-worker',
  version,
  config: `c${C}${name === 'plain' ? '' : name}`,
};
const logger = new Logger(() => (level, message) => {
  if (level === 'error' || level === 'warning') console.error(`graphile-worker ${level}: ${message}`);
});

async function main() {
  await runMigrations({ connectionString: url, logger });
  const sql = await h.sqlClient();
  const left = async () =>
    Number((await sql.query('SELECT count(*) AS n FROM graphile_worker._private_jobs')).rows[0].n);
  const utils = await makeWorkerUtils({ connectionString: url, logger, maxPoolSize: h.params.inflight + 2 });
  const { nSingle, inflight } = h.params;

  // one job per call, no worker running: from one caller, then from several
  let ms = await h.enqueueSingles(nSingle, 1, (i) => utils.addJob('noop', { i }));
  h.emit({ ...base, config: '1conn' }, { metric: 'enqueue_single', ...h.rate(nSingle, ms) });
  ms = await h.enqueueSingles(nSingle, inflight, (i) => utils.addJob('noop', { i }));
  h.emit({ ...base, config: `${inflight}conn` }, { metric: 'enqueue_single', ...h.rate(nSingle, ms) });
  await sql.query('DELETE FROM graphile_worker._private_jobs');
  await sql.query('VACUUM ANALYZE graphile_worker._private_jobs');

  ms = await h.enqueueBulk(N, h.params.chunk, (from, n) =>
    utils.addJobs(Array.from({ length: n }, (_, k) => ({ identifier: 'noop', payload: { i: from + k } }))),
  );
  h.emit({ ...base, config: 'batch' }, { metric: 'enqueue_bulk', ...h.rate(N, ms) });
  if ((await left()) !== N) throw new Error(`the bulk enqueue did not leave ${N} jobs`);
  // as skipq bench analyzes its table before a drain
  await sql.query('ANALYZE');

  let runner;
  const taskList = { noop: async (payload) => h.handle(payload, h.now()) };
  const drain = await h.measureDrain(async () => {
    runner = await runWorker({
      connectionString: url,
      concurrency: C,
      maxPoolSize: C + 2,
      noHandleSignals: true,
      logger,
      taskList,
      preset: { worker: presets[name] },
    });
  }, left);
  h.emit(base, { metric: 'drain', ...drain });

  await h.sleep(500); // let the worker settle into its idle wait
  const lat = await h.measureLatency((payload) => utils.addJob('noop', payload));
  h.emit(base, { metric: 'latency', ...lat });

  await runner.stop();
  await utils.release();
  await sql.end();
}

h.run(main);
