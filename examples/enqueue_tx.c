/*
 * enqueue_tx.c - enqueue inside your own transaction: the job exists only
 * if your transaction commits, so "create the order and the job that
 * emails about it" can never half-happen.
 *
 *   example_enqueue_tx [DATABASE_URL]   (else $SKIPQ_DATABASE_URL, else PG*)
 *
 * On a plain libpq connection: BEGIN, skipq_enqueue_tx(), ROLLBACK leaves
 * no row; BEGIN, skipq_enqueue_tx(), COMMIT leaves one. Prints the counts.
 */
#include <skipq.h>

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>

static int
exec_ok(PGconn *pg, const char *sql)
{
    PGresult *res = PQexec(pg, sql);
    int ok = PQresultStatus(res) == PGRES_COMMAND_OK;

    if (!ok)
        fprintf(stderr, "enqueue_tx: %s: %s", sql, PQerrorMessage(pg));
    PQclear(res);
    return ok;
}

/* Jobs of our kind, or -1 on error. */
static long
count_jobs(PGconn *pg)
{
    PGresult *res = PQexec(pg, "SELECT count(*) FROM skipq.jobs "
                               "WHERE kind = 'send_receipt'");
    long n = -1;

    if (PQresultStatus(res) == PGRES_TUPLES_OK)
        n = strtol(PQgetvalue(res, 0, 0), NULL, 10);
    else
        fprintf(stderr, "enqueue_tx: count: %s", PQerrorMessage(pg));
    PQclear(res);
    return n;
}

/* BEGIN; your own work; the job; then COMMIT or ROLLBACK. */
static int
order_with_job(PGconn *pg, const char *end)
{
    skipq_error err = {0};
    int64_t id = 0;

    if (!exec_ok(pg, "BEGIN"))
        return 0;
    /* ... the application's own INSERTs would go here ... */
    if (skipq_enqueue_tx(pg, "send_receipt", "{\"order\": 1042}", NULL, &id, &err) !=
        SKIPQ_OK) {
        fprintf(stderr, "enqueue_tx: %s\n", err.message);
        exec_ok(pg, "ROLLBACK");
        return 0;
    }
    printf("enqueued job %lld, then %s\n", (long long)id, end);
    return exec_ok(pg, end);
}

int
main(int argc, char **argv)
{
    const char *url = argc > 1 ? argv[1] : getenv("SKIPQ_DATABASE_URL");
    PGconn *pg = PQconnectdb(url ? url : "");
    int status = 1;
    long before, after_rollback, after_commit;

    if (PQstatus(pg) != CONNECTION_OK) {
        fprintf(stderr, "enqueue_tx: %s", PQerrorMessage(pg));
        goto out;
    }
    if ((before = count_jobs(pg)) < 0 || !order_with_job(pg, "ROLLBACK") ||
        (after_rollback = count_jobs(pg)) < 0 || !order_with_job(pg, "COMMIT") ||
        (after_commit = count_jobs(pg)) < 0)
        goto out;
    printf("after ROLLBACK: %ld new job(s)\n", after_rollback - before);
    printf("after COMMIT: %ld new job(s)\n", after_commit - before);
    status = after_rollback == before && after_commit == before + 1 ? 0 : 1;
out:
    PQfinish(pg);
    return status;
}
