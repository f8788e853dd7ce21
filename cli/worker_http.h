/*
 * worker_http.h - what `skipq worker --http` serves (worker_http.c):
 * /healthz, /readyz and /metrics, and the probes' verdicts, which the
 * systemd watchdog (cmd_worker.c, sdnotify.c) asks too.
 */
#ifndef SKIPQ_CLI_WORKER_HTTP_H
#define SKIPQ_CLI_WORKER_HTTP_H

#include "skipq.h"

#include <stdbool.h>
#include <stddef.h>

/* The process as the probes see it: the worker in charge, if any. */
struct probe_state {
    bool have;  /* a worker is in charge (h is its health) */
    bool ended; /* the process is stopping: no worker will be */
    skipq_worker_health h;
};

/* Fills *out; called from the server's threads (cmd_worker.c takes its
 * lock to read the worker in charge). */
typedef void (*probe_fn)(struct probe_state *out, void *userdata);

/* Is the main loop turning? false with the reason in why. */
bool probe_live(const struct probe_state *s, char *why, size_t n);
/* Is the worker ready for work: started, connected, the schema checked,
 * not stopping? false with the reason in why. */
bool probe_ready(const struct probe_state *s, char *why, size_t n);

/* How long the database-wide part of /metrics is kept between reads. */
#define WORKER_HTTP_DB_CACHE_MS 5000

struct worker_http;

/*
 * Serve addr. database: the URL the /metrics page's own connection uses
 * (NULL: libpq's PG* variables), opened at the first scrape, never the
 * worker's. 0, or -1 with the reason in err.
 */
int worker_http_start(const char *addr, skipq_metrics *m, const char *database,
                      probe_fn probe, void *userdata, struct worker_http **out, char *err,
                      size_t errlen);
/* The address bound ("127.0.0.1:9187"). */
const char *worker_http_bound(const struct worker_http *wh);
/* Stop serving and close the connection. NULL: no-op. */
void worker_http_stop(struct worker_http *wh);

#endif /* SKIPQ_CLI_WORKER_HTTP_H */
