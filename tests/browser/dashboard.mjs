// dashboard.mjs - the dashboard in a real browser: Debian's headless
// Chromium, driven by playwright-core over the DevTools protocol, against
// `skipq serve` on a database seeded here. Run by tests/browser/run.sh
// (the ctest case integration.test_browser.dashboard).
//
//   SKIPQ_DATABASE_URL  a migrated database of its own (required; changed)
//   SKIPQ_BIN           the skipq binary (default: build/skipq)
//   SKIPQ_CHROMIUM      the browser (default: /usr/bin/chromium)
//   SKIPQ_BROWSER_OUT   where the screenshot goes (default: tests/browser/out)
//
// It fails on any console error or uncaught page error, and on any alert
// or other dialog the page opens by itself: job data is hostile input,
// and the page must show it as text.
import { spawn, execFileSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = resolve(HERE, '../..');
const DB = process.env.SKIPQ_DATABASE_URL;
const BIN = process.env.SKIPQ_BIN || join(ROOT, 'build/skipq');
const BROWSER = process.env.SKIPQ_CHROMIUM || '/usr/bin/chromium';
const OUT = resolve(process.env.SKIPQ_BROWSER_OUT || join(HERE, 'out'));
const TOKEN = 'browser-test-admin-token';
const READ_TOKEN = 'browser-test-read-token';
const STATUSES = ['waiting', 'queued', 'running', 'succeeded', 'failed', 'cancelled'];
// What an attacker would put in a kind, a payload or an error.
const XSS1 = '<script>alert(1)</script>';
const XSS2 = '"><img src=x onerror=alert(1)>';
const XSS_KIND = 'x' + XSS1 + XSS2;

const t0 = Date.now();
const log = (msg) => console.log(`dashboard.mjs: [${((Date.now() - t0) / 1000).toFixed(1)} s] ${msg}`);

function check(cond, what) {
  if (!cond) throw new Error('check failed: ' + what);
}

function equal(got, want, what) {
  if (JSON.stringify(got) !== JSON.stringify(want)) {
    throw new Error(`check failed: ${what}: got ${JSON.stringify(got)}, want ${JSON.stringify(want)}`);
  }
}

// psql reads the script on stdin, so values travel as psql variables
// (:'name' quotes them), never spliced into SQL text.
function sql(script, vars = {}) {
  const args = ['-XAtq', '-v', 'ON_ERROR_STOP=1', '-F', '\t', '-d', DB];
  for (const [k, v] of Object.entries(vars)) args.push('-v', `${k}=${v}`);
  return execFileSync('psql', args, { input: script, encoding: 'utf8' }).trim();
}

function sqlInt(script, vars) {
  return Number(sql(script, vars));
}

function skipq(args, input) {
  return execFileSync(BIN, args, {
    input, encoding: 'utf8', env: { ...process.env, SKIPQ_DATABASE_URL: DB },
  }).trim();
}

// Wait for cond() (may be async) up to ms; never a blind sleep.
async function until(ms, what, cond) {
  const end = Date.now() + ms;
  for (;;) {
    if (await cond()) return;
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function seed() {
  const lines = (n, f) => Array.from({ length: n }, (_, i) => JSON.stringify(f(i))).join('\n') + '\n';
  skipq(['enqueue', 'send', '-', '--queue', 'mail'], lines(7, (i) => ({ to: `user${i}@example.com` })));
  const parent = skipq(['enqueue', 'send', '{"to":"parent@example.com"}', '--queue', 'mail']);
  skipq(['enqueue', 'digest', '{}', '--queue', 'mail', '--depends-on', parent]);
  skipq(['enqueue', 'render', '-', '--queue', 'reports'], lines(4, (i) => ({ report: i })));
  // more than a page of the job list (50)
  skipq(['enqueue', 'resize', '-', '--queue', 'images'], lines(45, (i) => ({ image: i })));
  // a worker row as a worker registers it (none runs: nothing here claims)
  sql(`SELECT skipq.worker_register('browser-test-host', 4242, ARRAY['mail'], 'all', 3, 'test',
       interval '5 seconds', interval '30 seconds')`);
  const xss = Number(skipq(['enqueue', XSS_KIND, JSON.stringify({ note: XSS1, html: XSS2 })]));
  sql(`
    UPDATE skipq.jobs SET status = 'succeeded', attempts = 1,
        started_at = now() - (id % 5 + 2) * interval '1 minute',
        finished_at = now() - (id % 5 + 1) * interval '1 minute',
        updated_at = now() - (id % 5 + 1) * interval '1 minute',
        result = '{"sent": true}'
    WHERE id IN (SELECT id FROM skipq.jobs WHERE kind = 'send' AND id <> :parent ORDER BY id LIMIT 4);
    UPDATE skipq.jobs SET status = 'cancelled', finished_at = now(), updated_at = now()
    WHERE id = (SELECT max(id) FROM skipq.jobs WHERE kind = 'send' AND status = 'queued' AND id <> :parent);
    UPDATE skipq.jobs SET status = 'failed', attempts = 3, max_attempts = 3,
        started_at = now() - interval '21 minutes', finished_at = now() - interval '20 minutes',
        updated_at = now() - interval '20 minutes',
        last_error = CASE WHEN id = :xss THEN :'err' ELSE 'render: template missing' END,
        errors = jsonb_build_array(
            jsonb_build_object('at', now() - interval '30 minutes', 'attempt', 1, 'error', 'render: timeout'),
            jsonb_build_object('at', now() - interval '20 minutes', 'attempt', 3,
                'error', CASE WHEN id = :xss THEN :'err' ELSE 'render: template missing' END))
    WHERE kind = 'render' OR id = :xss;
  `, { parent, xss, err: 'handler said ' + XSS1 + ' then ' + XSS2 });
  return { xss };
}

// Counts per queue, kind and status as SQL has them: {"q\tk": {status: n}}.
function sqlCounts() {
  const out = {};
  const text = sql(`SELECT queue, kind, status, count(*) FROM skipq.jobs GROUP BY 1, 2, 3`);
  for (const line of text ? text.split('\n') : []) {
    const [q, k, s, n] = line.split('\t');
    const key = q + '\t' + k;
    out[key] = out[key] || Object.fromEntries(STATUSES.map((x) => [x, 0]));
    out[key][s] = Number(n);
  }
  return out;
}

// `skipq serve` on a free port; its log names the address it bound.
async function startServer() {
  const child = spawn(BIN, ['serve', '--http', '127.0.0.1:0'], {
    env: { ...process.env, SKIPQ_DATABASE_URL: DB, SKIPQ_ADMIN_TOKEN: TOKEN, SKIPQ_READ_TOKEN: READ_TOKEN },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let text = '';
  let exited = null;
  child.on('exit', (code, sig) => { exited = sig || code; });
  for (const s of [child.stdout, child.stderr]) {
    s.setEncoding('utf8');
    s.on('data', (d) => { text += d; });
  }
  // never left running, however this script ends (short of SIGKILL)
  process.on('exit', () => child.kill('SIGTERM'));
  let port = null;
  await until(15000, 'skipq serve to log its address', () => {
    if (exited !== null) throw new Error(`skipq serve exited (${exited}):\n${text}`);
    const m = text.match(/127\.0\.0\.1:([0-9]+)/);
    if (m && m[1] !== '0') port = Number(m[1]);
    return port !== null;
  });
  return { child, base: `http://127.0.0.1:${port}`, log: () => text };
}

async function main() {
  check(DB, 'SKIPQ_DATABASE_URL is set');
  const { xss } = seed();
  const failedIds = sql(`SELECT id FROM skipq.jobs WHERE status = 'failed' AND id <> ${xss} ORDER BY id`)
    .split('\n').map(Number);
  check(failedIds.length === 4, 'four failed jobs seeded besides the hostile one');
  log(`seeded ${sqlInt('SELECT count(*) FROM skipq.jobs')} jobs`);

  const server = await startServer();
  log(`skipq serve at ${server.base}`);
  let browser = null;
  const problems = [];
  // The browser logs each 4xx it fetched as a console error: a step that
  // expects one names it, and waits until it was logged.
  let allowed = null;
  let seen = 0;
  const expecting = async (re, step) => {
    allowed = re;
    seen = 0;
    await step();
    await until(5000, `the console error ${re}`, () => seen > 0);
    allowed = null;
  };
  try {
    browser = await chromium.launch({ executablePath: BROWSER, headless: true });
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    page.setDefaultTimeout(10000); // each step; the ctest case has its own limit
    page.on('console', (m) => {
      if (m.type() !== 'error') return;
      if (allowed && allowed.test(m.text())) seen++;
      else problems.push('console error: ' + m.text());
    });
    page.on('pageerror', (e) => problems.push('page error: ' + e.message));
    page.on('dialog', (d) => {
      problems.push(`a ${d.type()} dialog opened: ${d.message()}`);
      d.dismiss().catch(() => {});
    });
    const testid = (id) => page.getByTestId(id);

    // No token yet: the API answers 401 and the page asks for one.
    await expecting(/status of 401/, async () => {
      const r = await page.goto(server.base + '/#/queues');
      // the policy the page must live with: a violation is a console error
      const csp = r.headers()['content-security-policy'] || '';
      check(/script-src 'self'/.test(csp) && /style-src 'self'/.test(csp) && !/unsafe/.test(csp),
        `a strict Content-Security-Policy on the page: "${csp}"`);
      await testid('token-dialog').waitFor({ state: 'visible' });
    });
    await testid('token-input').fill(TOKEN);
    await testid('token-save').click();
    await testid('stats-table').waitFor();
    const stored = await page.evaluate(() => sessionStorage.getItem('skipq.token'));
    equal(stored, TOKEN, 'the token is kept in sessionStorage');
    equal(await page.evaluate(() => document.cookie), '', 'no cookies');
    log('token prompt answered; queues page loaded');

    // The counts shown are SQL's.
    const want = sqlCounts();
    const shown = await page.$$eval('[data-testid="stats-row"]', (rows) => rows.map((r) => ({
      key: r.dataset.queue + '\t' + r.dataset.kind,
      counts: Object.fromEntries([...r.querySelectorAll('[data-testid^="count-"]')]
        .map((c) => [c.dataset.testid.slice(6), Number(c.textContent)])),
    })));
    equal(shown.map((r) => r.key).sort(), Object.keys(want).sort(), 'one row per queue and kind');
    for (const r of shown) equal(r.counts, want[r.key], `counts of ${JSON.stringify(r.key)}`);
    for (const s of STATUSES) {
      const total = Object.values(want).reduce((a, c) => a + c[s], 0);
      equal(Number(await testid('total-' + s).textContent()), total, `total ${s}`);
    }
    // Throughput: every finished job was finished within the hour.
    const ok = sqlInt(`SELECT count(*) FROM skipq.jobs WHERE status = 'succeeded'`);
    const bad = sqlInt(`SELECT count(*) FROM skipq.jobs WHERE status = 'failed'`);
    const tp = await testid('throughput-total').textContent();
    check(tp.includes(`${ok} succeeded`) && tp.includes(`${bad} failed`), `throughput "${tp}" shows ${ok} and ${bad}`);
    check(await testid('throughput-bar').count() > 0, 'the chart has bars');
    equal(await testid('stats-row').filter({ hasText: XSS_KIND }).count(), 1, 'the hostile kind as text on the queues page');
    check(await page.locator('img').count() === 0, 'no img element on the queues page');
    mkdirSync(OUT, { recursive: true });
    const shot = join(OUT, 'dashboard.png');
    await page.screenshot({ path: shot, fullPage: true });
    log(`counts match SQL (${shown.length} rows); screenshot: ${shot}`);

    // Pause a queue (confirmed in the page's dialog), then resume it.
    const mailRow = page.locator('[data-testid="queue-row"][data-queue="mail"]');
    await mailRow.getByTestId('queue-pause').click();
    await testid('confirm-dialog').waitFor({ state: 'visible' });
    await testid('confirm-yes').click();
    await until(5000, 'queue mail paused', () => sql(`SELECT paused FROM skipq.queue_states WHERE queue = 'mail'`) === 't');
    await mailRow.getByTestId('queue-resume').click();
    await testid('confirm-yes').click();
    await until(5000, 'queue mail resumed', () => sql(`SELECT paused FROM skipq.queue_states WHERE queue = 'mail'`) === 'f');
    log('queue paused and resumed');

    // The failed list: SQL's failed jobs, newest first.
    await page.getByRole('link', { name: 'Failed', exact: true }).click();
    await until(5000, 'the failed list', async () => (await testid('job-row').count()) === failedIds.length + 1);
    const ids = await page.$$eval('[data-testid="job-row"]', (rows) => rows.map((r) => [Number(r.dataset.id), r.dataset.status]));
    equal(ids, [xss, ...failedIds].sort((a, b) => b - a).map((id) => [id, 'failed']), 'the failed list');
    check(await page.locator('img').count() === 0, 'no img element in the failed list');

    // Retry one: cancelling the dialog changes nothing, confirming retries.
    const [one, two, three] = failedIds;
    const row = (id) => page.locator(`[data-testid="job-row"][data-id="${id}"]`);
    await row(one).getByTestId('job-retry').click();
    await testid('confirm-no').click();
    await testid('confirm-dialog').waitFor({ state: 'hidden' });
    equal(sql(`SELECT status FROM skipq.jobs WHERE id = ${one}`), 'failed', 'a dismissed retry changes nothing');
    await row(one).getByTestId('job-retry').click();
    check((await testid('confirm-text').textContent()).includes(`job ${one}`), 'the dialog names the job');
    await testid('confirm-yes').click();
    await until(5000, `job ${one} queued`, () => sql(`SELECT status FROM skipq.jobs WHERE id = ${one}`) === 'queued');
    await row(one).waitFor({ state: 'detached' });
    log(`job ${one} retried`);

    // Retry two at once through the checkboxes.
    await row(two).getByTestId('job-select').check();
    await row(three).getByTestId('job-select').check();
    equal(await testid('selected-count').textContent(), '2 selected', 'two selected');
    await testid('bulk-retry').click();
    check((await testid('confirm-text').textContent()).includes('2 jobs'), 'the dialog counts the jobs');
    await testid('confirm-yes').click();
    await until(5000, `jobs ${two} and ${three} queued`, () =>
      sql(`SELECT string_agg(status::text, ',') FROM skipq.jobs WHERE id IN (${two}, ${three})`) === 'queued,queued');
    log(`jobs ${two} and ${three} retried together`);

    // Live refresh: a job that fails now shows up without a reload.
    const late = Number(skipq(['enqueue', 'render', '{"late": true}', '--queue', 'reports']));
    sql(`UPDATE skipq.jobs SET status = 'failed', finished_at = now(), updated_at = now(),
         last_error = 'late' WHERE id = ${late}`);
    await row(late).waitFor({ timeout: 15000 });
    log(`live refresh showed job ${late}`);

    // Every job, 50 at a time: Older brings the rest, newest first.
    await page.getByRole('link', { name: 'Jobs', exact: true }).click();
    await until(5000, 'the first page of jobs', async () => (await testid('job-row').count()) === 50);
    await testid('jobs-older').click();
    const all = sql(`SELECT string_agg(id::text, ',' ORDER BY id DESC) FROM skipq.jobs`);
    await until(5000, 'every job listed', async () => (await testid('job-row').count()) === all.split(',').length);
    equal((await page.$$eval('[data-testid="job-row"]', (rows) => rows.map((r) => r.dataset.id))).join(','), all, 'the job list');
    check(await testid('jobs-older').isHidden(), 'no Older button after the last page');
    log(`${all.split(',').length} jobs listed over two pages`);
    await testid('filter-queue').fill('mail');
    await testid('filter-status').selectOption('queued');
    await testid('filter-apply').click();
    const mail = sql(`SELECT string_agg(id::text, ',' ORDER BY id DESC) FROM skipq.jobs WHERE queue = 'mail' AND status = 'queued'`);
    await until(5000, 'the filtered list', async () =>
      (await page.$$eval('[data-testid="job-row"]', (rows) => rows.map((r) => r.dataset.id))).join(',') === mail);
    check(page.url().endsWith('#/jobs?status=queued&queue=mail'), `the filter in the address: ${page.url()}`);

    // The hostile job's page: its strings are text, nothing ran.
    await page.goto(server.base + '/#/jobs/' + xss);
    await testid('job-kind').waitFor();
    equal(await testid('job-kind').textContent(), XSS_KIND, 'the kind, as text');
    const payload = await testid('job-payload').textContent();
    check(payload.includes(XSS1) && payload.includes(JSON.stringify(XSS2).slice(1, -1)), 'the payload, as text');
    const errors = await testid('job-errors').textContent();
    check(errors.includes('handler said ' + XSS1 + ' then ' + XSS2), 'the error history, as text');
    equal(await testid('error-row').count(), 2, 'two entries in the error history');
    const injected = await page.evaluate(() => ({
      img: document.querySelectorAll('img').length,
      script: [...document.querySelectorAll('script')].filter((s) => s.src.indexOf('/app.js') < 0).length,
    }));
    equal(injected, { img: 0, script: 0 }, 'no element injected');
    log('hostile strings rendered as text');

    // An API error is shown as its text.
    await expecting(/status of 404/, async () => {
      await page.goto(server.base + '/#/jobs/999999999');
      await testid('message').waitFor({ state: 'visible' });
    });
    const msg = await testid('message').textContent();
    check(/999999999/.test(msg), `the API's error shown: "${msg}"`);

    // The read token shows the pages; a change gets the API's 403, shown
    // as its message, and nothing changes.
    const useToken = async (t) => {
      await testid('token-button').click();
      await testid('token-input').fill(t);
      await testid('token-save').click();
    };
    await page.goto(server.base + '/#/jobs?status=failed');
    await useToken(READ_TOKEN); // the page reloads its data with it
    const first = page.locator('[data-testid="job-row"]').first();
    await first.waitFor();
    const target = Number(await first.getAttribute('data-id'));
    await expecting(/status of 403/, async () => {
      await first.getByTestId('job-retry').click();
      await testid('confirm-yes').click();
      await testid('message').waitFor({ state: 'visible' });
    });
    const denied = await testid('message').textContent();
    check(denied.length > 0 && !/^HTTP /.test(denied), `the API's 403 message shown: "${denied}"`);
    equal(sql(`SELECT status FROM skipq.jobs WHERE id = ${target}`), 'failed', 'a read token changes nothing');
    await useToken(TOKEN);
    log(`the read token was refused a retry: "${denied}"`);

    // Recover: a dry run changes nothing; the confirmed run does it.
    const stale = sql(`SELECT string_agg(id::text, ',' ORDER BY id) FROM skipq.jobs
                       WHERE status = 'failed' AND updated_at < now() - interval '10 minutes'`);
    await page.goto(server.base + '/#/recover');
    await testid('recover-older').fill('10m');
    await testid('recover-dry-run').click();
    await testid('recover-count').waitFor();
    const n = stale.split(',').length;
    const found = await testid('recover-count').textContent();
    check(found.startsWith(`${n} job`), `the dry run finds ${n} jobs: "${found}"`);
    equal(sql(`SELECT count(*) FROM skipq.jobs WHERE id IN (${stale}) AND status = 'failed'`), String(n), 'a dry run changes nothing');
    await testid('recover-run').click();
    await testid('confirm-yes').click();
    await until(5000, 'the recovered jobs queued', () =>
      sql(`SELECT count(*) FROM skipq.jobs WHERE id IN (${stale}) AND status = 'queued'`) === String(n));
    log(`recovered ${n} jobs after a dry run`);

    // Workers: the one registered, with the age of its heartbeat.
    await page.goto(server.base + '/#/workers');
    await testid('worker-row').waitFor();
    equal(await testid('worker-row').count(), 1, 'one worker');
    check((await testid('worker-row').textContent()).includes('browser-test-host'), 'the worker\'s host');
    const age = await testid('heartbeat-age').textContent();
    check(/^[0-9.]+ (s|min)$/.test(age), `a heartbeat age: "${age}"`);

    check(problems.length === 0, 'no console errors, page errors or dialogs:\n  ' + problems.join('\n  '));
  } catch (e) {
    // what the page showed when it failed, beside the screenshot
    const pages = browser ? browser.contexts().flatMap((c) => c.pages()) : [];
    if (pages.length) {
      mkdirSync(OUT, { recursive: true });
      await pages[0].screenshot({ path: join(OUT, 'failure.png'), fullPage: true }).catch(() => {});
      e.message += `\nthe page at failure: ${join(OUT, 'failure.png')}`;
    }
    if (problems.length) e.message += '\nalso:\n  ' + problems.join('\n  ');
    e.message += '\nskipq serve said:\n' + server.log();
    throw e;
  } finally {
    if (browser) await browser.close();
    server.child.kill('SIGTERM');
  }
  log('passed');
}

main().catch((e) => {
  // the message (with what was added to it on the way) and where it failed
  const where = e && e.stack ? e.stack.split('\n').filter((l) => /^\s+at /.test(l)).join('\n') : '';
  console.error('dashboard.mjs: ' + (e && e.message ? e.message : e) + '\n' + where);
  process.exit(1);
});
