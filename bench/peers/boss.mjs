// boss.mjs - pg-boss: one-at-a-time and bulk enqueue, the drain of N no-op
// jobs by C local workers, and pickup latency with the workers idle.
//
//   DATABASE_URL=... N=20000 C=16 CONFIG=b100|b500 node boss.mjs
//
// bNNN: C workers (localConcurrency), each fetching NNN jobs at a time and
// fetching again at once while batches come back full; LISTEN/NOTIFY on
// and the shortest polls pg-boss allows (0.5 s). With a batch of 1 a
// pg-boss worker fetches one job per poll, too slow to drain N jobs.
// The database must be new: compare.sh makes one for every run.
import { PgBoss } from 'pg-boss';
import { readFileSync } from 'node:fs';
import * as h from './common.mjs';

const { url, N, C } = h.params;
const name = h.params.config || 'b100';
const m = /^b([0-9]+)$/.exec(name);
if (!m) throw new Error(`unknown CONFIG "${name}" (bNNN: the batch size)`);
const QUEUE = 'noop';
const work = {
  localConcurrency: C,
  batchSize: Number(m[1]),
  burstWhenBatchFull: true,
  pollingIntervalSeconds: 0.5,
  notifyPollingIntervalSeconds: 0.5,
};
const version = JSON.parse(
  readFileSync(new URL('./node_modules/pg-boss/package.json', import.meta.url)),
).version;
const base = { system: 'pg-boss', version, config: `c${C}${name}` };

async function main() {
  const boss = new PgBoss({ connectionString: url, max: C + 2, useListenNotify: true });
  boss.on('error', (e) => console.error('pg-boss error:', e.message));
  await boss.start();
  await boss.createQueue(QUEUE, { notify: true });
  const sql = await h.sqlClient();
  const left = async () =>
    Number(
      (
        await sql.query(
          "SELECT count(*) AS n FROM pgboss.job WHERE name = $1 AND state IN ('created', 'retry', 'active')",
          [QUEUE],
        )
      ).rows[0].n,
    );
  const { nSingle, inflight } = h.params;

  let ms = await h.enqueueSingles(nSingle, 1, (i) => boss.send(QUEUE, { i }));
  h.emit({ ...base, config: '1conn' }, { metric: 'enqueue_single', ...h.rate(nSingle, ms) });
  ms = await h.enqueueSingles(nSingle, inflight, (i) => boss.send(QUEUE, { i }));
  h.emit({ ...base, config: `${inflight}conn` }, { metric: 'enqueue_single', ...h.rate(nSingle, ms) });
  await boss.deleteAllJobs(QUEUE);
  await sql.query('VACUUM ANALYZE pgboss.job');

  ms = await h.enqueueBulk(N, h.params.chunk, (from, n) =>
    boss.insert(QUEUE, Array.from({ length: n }, (_, k) => ({ data: { i: from + k } }))),
  );
  h.emit({ ...base, config: 'batch' }, { metric: 'enqueue_bulk', ...h.rate(N, ms) });
  if ((await left()) !== N) throw new Error(`the bulk enqueue did not leave ${N} jobs`);
  await sql.query('ANALYZE');

  const handler = async (jobs) => {
    const t = h.now();
    for (const job of jobs) h.handle(job.data, t);
  };
  const drain = await h.measureDrain(() => boss.work(QUEUE, work, handler), left);
  h.emit(base, { metric: 'drain', ...drain });

  await h.sleep(500);
  const lat = await h.measureLatency((payload) => boss.send(QUEUE, payload));
  h.emit(base, { metric: 'latency', ...lat });

  await boss.stop({ graceful: true, timeout: 5000 });
  await sql.end();
}

h.run(main);
