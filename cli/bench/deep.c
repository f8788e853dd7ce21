/*
 * deep.c - the deep-queue measurement: drain rate and the worker's own
 * claim, timed and EXPLAINed, with a small and a large backlog waiting,
 * and with a large backlog scheduled for later.
 */
#include "bench.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SMALL_BACKLOG 10000
#define DEEP_SAMPLE 10000
#define DEEP_REPS 3 /* interleaved draws of each size; the median is reported */

/* Time the worker's claim (16 rows, rolled back) and check its plan. */
static int
claim_probe(struct bench *b, struct result *r)
{
    static const char *const v[6] = {"default", "-32768",
                                     "32767",   "{" KIND_NOOP "}", /* NOLINT: one literal */
                                     "16",      "0"};
    enum { PROBES = 30 };
    double ms[PROBES];
    PGresult *res = PQprepare(b->pg, "bench_claim",
                              /* exactly what the worker runs */ skipq_sql_text("claim"), 0,
                              NULL);
    int rc = 0;

    /* what the worker runs: prepared once, in a transaction opened by
     * its settings statement (generic plan, no JIT: worker.c cycle()) */
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        rc = cli_db_fail(b->pg, res, "bench: could not prepare the claim");
        PQclear(res);
        return rc;
    }
    PQclear(res);
    if ((rc = sql(b->pg, "BEGIN")) != 0 ||
        (rc = sql(b->pg, skipq_sql_text("cycle_quick"))) != 0 ||
        (rc = sqlp(b->pg, &res,
                   "EXPLAIN EXECUTE bench_claim('default', -32768, 32767,"
                   " '{" KIND_NOOP "}', 16, 0)",
                   0, NULL)) != 0)
        goto out;
    r->claim_uses_index = 0;
    for (int i = 0; i < PQntuples(res); i++)
        if (strstr(PQgetvalue(res, i, 0), "jobs_runnable_idx"))
            r->claim_uses_index = 1;
    PQclear(res);
    PQclear(PQexec(b->pg, "ROLLBACK"));
    for (int i = 0; i < PROBES && rc == 0; i++) {
        if ((rc = sql(b->pg, "BEGIN")) != 0 ||
            (rc = sql(b->pg, skipq_sql_text("cycle_quick"))) != 0)
            break;
        int64_t t0 = now_us();
        res = PQexecPrepared(b->pg, "bench_claim", 6, v, NULL, NULL, 0);
        ms[i] = (double)(now_us() - t0) / 1000.0;
        if (PQresultStatus(res) != PGRES_TUPLES_OK)
            rc = cli_db_fail(b->pg, res, "bench: the claim failed");
        PQclear(res);
        PQclear(PQexec(b->pg, "ROLLBACK"));
    }
    if (rc == 0) {
        qsort(ms, PROBES, sizeof ms[0], cmp_double);
        r->claim_p50 = pct(ms, PROBES, 50);
        r->claim_p99 = pct(ms, PROBES, 99);
    }
out:
    if (PQtransactionStatus(b->pg) != PQTRANS_IDLE) /* left by an error */
        PQclear(PQexec(b->pg, "ROLLBACK"));
    PQclear(PQexec(b->pg, "DEALLOCATE bench_claim"));
    return rc;
}

/* N jobs scheduled for tomorrow, in three priorities. */
static int
fill_scheduled(struct bench *b, long long n)
{
    char num[24];
    const char *v[1] = {num};

    snprintf(num, sizeof num, "%lld", n);
    return sqlp(b->pg, NULL,
                "INSERT INTO skipq.jobs (kind, priority, run_at, payload)"
                " SELECT '" KIND_NOOP "', (g % 3::int8)::int2, now() + interval '1 day',"
                " pg_catalog.jsonb_build_object('i', g)"
                " FROM pg_catalog.generate_series(1, $1::int8) g",
                1, v);
}

/*
 * Drain rate and claim time with 10,000 and with --deep-jobs runnable
 * jobs waiting; then with --deep-jobs jobs scheduled for tomorrow, where
 * the claim is timed with nothing runnable (every claim of an idle worker
 * is such a short claim) and the drain is of 10,000 runnable jobs among
 * them.
 */
int
bench_deep(struct bench *b)
{
    long long sizes[3] = {SMALL_BACKLOG, b->deep_jobs, b->deep_jobs};
    long long sample = b->jobs < DEEP_SAMPLE ? b->jobs : DEEP_SAMPLE;
    struct result r[3];
    double secs[3][DEEP_REPS], cpu[3][DEEP_REPS];
    int rc;

    if (sample > SMALL_BACKLOG)
        sample = SMALL_BACKLOG;
    /* The sizes in turn, DEEP_REPS times: a sample drains in a fraction
     * of a second, so one draw of each said more about that second than
     * about the backlog (0.79x and 1.66x in one sitting). The median of
     * the interleaved draws is reported. */
    for (int rep = 0; rep < DEEP_REPS; rep++) {
        for (int i = 0; i < 3; i++) {
            struct drain_spec d = {.mode = "noop",
                                   .target = sample,
                                   .concurrency = b->concurrency,
                                   .workers = 1};
            struct drain_out o;
            int scheduled = i == 2;

            if (rep == 0) {
                char cfgname[48];
                snprintf(cfgname, sizeof cfgname, "%s%lld",
                         scheduled ? "scheduled" : "backlog", sizes[i]);
                result_init(&r[i], "deep", cfgname);
            }
            if (!b->ctx->quiet && !b->json)
                fprintf(stderr, "skipq: bench: deep: filling %lld %sjobs (%d of %d)\n",
                        sizes[i], scheduled ? "scheduled " : "", rep + 1, DEEP_REPS);
            if ((rc = reset_queue(b)) != 0 ||
                (rc = (scheduled ? fill_scheduled : fill_series)(b, sizes[i])) != 0 ||
                (rc = sql(b->pg, "VACUUM ANALYZE skipq.jobs")) != 0 ||
                (rep == 0 && (rc = claim_probe(b, &r[i])) != 0) ||
                (scheduled && (rc = fill_series(b, sample)) != 0) ||
                (rc = run_drain(b, &d, &o)) != 0)
                return rc;
            secs[i][rep] = o.seconds;
            cpu[i][rep] = o.cpu_s;
            if (o.max_rss_kb > r[i].max_rss_kb)
                r[i].max_rss_kb = o.max_rss_kb;
        }
    }
    for (int i = 0; i < 3; i++) {
        qsort(secs[i], DEEP_REPS, sizeof secs[i][0], cmp_double);
        qsort(cpu[i], DEEP_REPS, sizeof cpu[i][0], cmp_double);
        r[i].backlog = sizes[i];
        r[i].jobs = sample;
        r[i].seconds = secs[i][DEEP_REPS / 2];
        r[i].jobs_per_s = (double)sample / r[i].seconds;
        r[i].cpu_s = cpu[i][DEEP_REPS / 2];
        if ((rc = report(b, &r[i])) != 0)
            return rc;
    }
    return 0;
}
