/*
 * slot.c - a command handler for the flow-control tests: it takes a slot
 * in the test's counter table `slots` for its job's concurrency_key
 * ('all' for a job without one), holds it for MS milliseconds and gives
 * it back, so the handlers themselves judge how many ran at once.
 *
 *   slot [MS]          (default 50)
 *
 * The table is created by the test, with the limit as a CHECK:
 *   CREATE TABLE slots (k text PRIMARY KEY, n int NOT NULL DEFAULT 0
 *                       CHECK (n <= 3), peak int NOT NULL DEFAULT 0)
 * Taking a slot too many violates the CHECK: we report it on stderr and
 * exit 1, which fails the job. peak keeps the most slots held at once.
 */
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static int
take(PGconn *pg, const char *id, const char *delta)
{
    const char *v[2] = {delta, id};
    PGresult *res = PQexecParams(
        pg,
        "UPDATE slots SET n = n + $1::int, peak = greatest(peak, n + $1::int)"
        " WHERE k = coalesce((SELECT concurrency_key FROM skipq.jobs WHERE id = $2::int8),"
        " 'all')",
        2, NULL, v, NULL, NULL, 0);
    int ok = PQresultStatus(res) == PGRES_COMMAND_OK;
    if (!ok)
        fprintf(stderr, "slot: job %s: %s", id, PQresultErrorMessage(res));
    PQclear(res);
    return ok;
}

int
main(int argc, char **argv)
{
    const char *id = getenv("SKIPQ_JOB_ID");
    const char *url = getenv("SKIPQ_DATABASE_URL");
    long ms = argc > 1 ? atol(argv[1]) : 50;

    if (!id || !url) {
        fprintf(stderr, "slot: SKIPQ_JOB_ID and SKIPQ_DATABASE_URL must be set\n");
        return 2;
    }
    PGconn *pg = PQconnectdb(url);
    if (PQstatus(pg) != CONNECTION_OK) {
        fprintf(stderr, "slot: could not connect: %s", PQerrorMessage(pg));
        PQfinish(pg);
        return 4;
    }
    if (!take(pg, id, "1")) {
        PQfinish(pg);
        return 1;
    }
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0)
        ;
    int ok = take(pg, id, "-1");
    PQfinish(pg);
    return ok ? 0 : 1;
}
