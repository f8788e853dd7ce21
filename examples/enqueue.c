/*
 * enqueue.c - add jobs from C: one with skipq_enqueue(), then a batch of
 * 1000 with skipq_enqueue_batch() (one COPY, one transaction, one NOTIFY).
 *
 *   example_enqueue [DATABASE_URL]      (else $SKIPQ_DATABASE_URL, else PG*)
 *
 * Prints the single job's id and the batch size. Build it against an
 * installed libskipq with:
 *   cc enqueue.c $(pkg-config --cflags --libs skipq) -o enqueue
 */
#include <skipq.h>

#include <stdio.h>
#include <stdlib.h>

#define BATCH 1000

int
main(int argc, char **argv)
{
    const char *url = argc > 1 ? argv[1] : getenv("SKIPQ_DATABASE_URL");
    skipq_error err = {0};
    skipq_conn *conn = NULL;
    int64_t id = 0;
    int status = 1;

    if (skipq_conn_open(url, &conn, &err) != SKIPQ_OK) {
        fprintf(stderr, "enqueue: %s\n", err.message);
        return 1;
    }

    /* One job: options not set keep their defaults (queue "default",
     * run now, the worker's retry policy). */
    skipq_enqueue_opts opts = SKIPQ_ENQUEUE_OPTS_INIT;
    opts.queue = "images";
    opts.priority = 10; /* high */
    if (skipq_enqueue(conn, "resize", "{\"path\": \"/img/cat.png\", \"width\": 640}", &opts,
                      &id, &err) != SKIPQ_OK) {
        fprintf(stderr, "enqueue: %s\n", err.message);
        goto out;
    }
    printf("enqueued job %lld\n", (long long)id);

    /* A batch: every spec shares opts; all rows are written or none. */
    static skipq_job_spec specs[BATCH];
    static char payloads[BATCH][48];
    for (int i = 0; i < BATCH; i++) {
        snprintf(payloads[i], sizeof payloads[i], "{\"n\": %d}", i);
        specs[i].kind = "count";
        specs[i].payload_json = payloads[i];
    }
    skipq_enqueue_opts batch_opts = SKIPQ_ENQUEUE_OPTS_INIT;
    batch_opts.queue = "bulk";
    batch_opts.priority = -10; /* low */
    if (skipq_enqueue_batch(conn, specs, BATCH, &batch_opts, &err) != SKIPQ_OK) {
        fprintf(stderr, "enqueue: %s\n", err.message);
        goto out;
    }
    printf("enqueued a batch of %d jobs\n", BATCH);
    status = 0;
out:
    skipq_conn_close(conn);
    return status;
}
