/*
 * record.c - a command handler for the fault and accounting tests: it
 * records each invocation in the side table `runs` of the job's database
 * (SKIPQ_DATABASE_URL), then behaves as told.
 *
 *   record [-s MS] [-S MS] [-r MS] [-f PCT] [-k] [-e]
 *
 *   -s MS   sleep MS after recording (every attempt)
 *   -S MS   sleep MS after recording, first attempt only
 *   -r MS   sleep a pseudo-random 0..MS (seeded by job id and attempt)
 *   -f PCT  fail attempt 1 of the jobs whose id hashes below PCT:
 *           (id * 2654435761) % 100 < PCT, the same formula the tests
 *           evaluate in SQL to know the expected counts
 *   -k      SIGKILL our parent (the worker: we are exec'd by it, or by
 *           its /bin/sh -c with exec) after recording: a poison job
 *   -e      also record when the run ended (just before exiting, failure
 *           or not): runs.done_at, a column the test adds, so a test can
 *           check that two runs of one job never overlapped in time
 *
 * The side table is created by the test:
 *   CREATE TABLE runs (job_id bigint, attempt int, pid int, ok boolean,
 *                      worker bigint,  -- SKIPQ_JOB_WORKER: the pid is the
 *                      -- parent's, which is the reaper if the worker died
 *                      at timestamptz DEFAULT clock_timestamp(),
 *                      UNIQUE (job_id, attempt))
 * A second invocation for the same (job, attempt) - one claim run twice -
 * violates the constraint: we report it on stderr and exit 3, which the
 * tests see as a failed attempt and an extra attempt count.
 */
#include <libpq-fe.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void
sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (ms > 0 && nanosleep(&ts, &ts) != 0)
        ;
}

int
main(int argc, char **argv)
{
    long sleep_all = 0, sleep_first = 0, sleep_rand = 0, fail_pct = -1;
    int kill_parent = 0, record_end = 0, c;
    const char *id_s = getenv("SKIPQ_JOB_ID");
    const char *att_s = getenv("SKIPQ_JOB_ATTEMPT");
    const char *url = getenv("SKIPQ_DATABASE_URL");
    const char *worker = getenv("SKIPQ_JOB_WORKER");

    while ((c = getopt(argc, argv, "s:S:r:f:ke")) != -1) {
        switch (c) {
        case 's':
            sleep_all = atol(optarg);
            break;
        case 'S':
            sleep_first = atol(optarg);
            break;
        case 'r':
            sleep_rand = atol(optarg);
            break;
        case 'f':
            fail_pct = atol(optarg);
            break;
        case 'k':
            kill_parent = 1;
            break;
        case 'e':
            record_end = 1;
            break;
        default:
            fprintf(stderr, "record: bad usage\n");
            return 2;
        }
    }
    if (!id_s || !att_s || !url) {
        fprintf(stderr, "record: SKIPQ_JOB_ID, SKIPQ_JOB_ATTEMPT and "
                        "SKIPQ_DATABASE_URL must be set\n");
        return 2;
    }
    unsigned long long id = strtoull(id_s, NULL, 10);
    int attempt = atoi(att_s);
    int fail = fail_pct >= 0 && attempt == 1 &&
               (long)((id * 2654435761ULL) % 100) < fail_pct;
    pid_t parent = getppid();

    PGconn *pg = PQconnectdb(url);
    if (PQstatus(pg) != CONNECTION_OK) {
        fprintf(stderr, "record: could not connect: %s", PQerrorMessage(pg));
        PQfinish(pg);
        return 4;
    }
    char pid_s[16];
    snprintf(pid_s, sizeof pid_s, "%d", (int)parent);
    const char *v[5] = {id_s, att_s, pid_s, fail ? "f" : "t", worker};
    PGresult *res = PQexecParams(
        pg,
        "INSERT INTO runs (job_id, attempt, pid, ok, worker) VALUES ($1, $2, $3, $4, $5)",
        5, NULL, v, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        fprintf(stderr, "record: job %s attempt %s: %s", id_s, att_s,
                PQresultErrorMessage(res));
        PQclear(res);
        PQfinish(pg);
        return 3;
    }
    PQclear(res);
    if (!record_end) {
        PQfinish(pg);
        pg = NULL;
    }

    if (kill_parent)
        kill(parent, SIGKILL);
    if (sleep_rand > 0) {
        unsigned s = (unsigned)(id * 7919u + (unsigned)attempt * 104729u);
        sleep_ms((long)(rand_r(&s) % (sleep_rand + 1)));
    }
    if (attempt == 1 && sleep_first > 0)
        sleep_ms(sleep_first);
    if (sleep_all > 0)
        sleep_ms(sleep_all);
    if (pg) {
        /* on the connection kept open: no second connect per run */
        const char *e[2] = {id_s, att_s};
        res = PQexecParams(
            pg,
            "UPDATE runs SET done_at = clock_timestamp() WHERE job_id = $1 AND attempt = $2",
            2, NULL, e, NULL, NULL, 0);
        int ok = PQresultStatus(res) == PGRES_COMMAND_OK;
        if (!ok)
            fprintf(stderr, "record: job %s attempt %s: %s", id_s, att_s,
                    PQresultErrorMessage(res));
        PQclear(res);
        PQfinish(pg);
        if (!ok)
            return 3;
    }
    if (fail) {
        fprintf(stderr, "planned failure of attempt 1\n");
        return 1;
    }
    printf("{\"ok\": true}\n");
    return 0;
}
