/*
 * worker_schedule.c - the worker's part in schedules (sql/schedules.sql):
 * putting the config's schedules: into skipq.schedules when it starts,
 * and the tick on the maintenance connection that enqueues due slots.
 *
 * Which worker enqueues a slot does not matter, and that only one does
 * is the server's business: skipq.schedule_tick() takes its turn on a row
 * of skipq.maintenance (FOR UPDATE SKIP LOCKED) and sets each schedule's
 * next slot by compare-and-set in the job's transaction. The worker only
 * decides when to ask: at the next slot the server named, and at least
 * once a second so that a schedule added meanwhile is seen.
 */
#include "worker.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Append s to *buf as an element of an array literal: quoted, with " and
 * \ escaped. false when out of memory. */
static bool
lit_append(char **buf, size_t *len, size_t *cap, const char *s, bool first)
{
    size_t need = *len + 2 * strlen(s) + 4;
    if (need > *cap) {
        size_t ncap = need * 2;
        char *n = realloc(*buf, ncap);
        if (!n)
            return false;
        *buf = n;
        *cap = ncap;
    }
    char *p = *buf + *len;
    if (!first)
        *p++ = ',';
    *p++ = '"';
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            *p++ = '\\';
        *p++ = *s;
    }
    *p++ = '"';
    *p = '\0';
    *len = (size_t)(p - *buf);
    return true;
}

/* The array literal of one field of every schedule (malloc'd; NULL when
 * out of memory). */
static char *
field_literal(const skipq_config *cfg, size_t off)
{
    size_t len = 1, cap = 64;
    char *buf = malloc(cap);
    if (!buf)
        return NULL;
    buf[0] = '{';
    buf[1] = '\0';
    for (size_t i = 0; i < cfg->nschedules; i++) {
        const char *s;
        char prio[8];
        if (off == (size_t)-1) {
            snprintf(prio, sizeof prio, "%d", cfg->schedules[i].priority);
            s = prio;
        } else {
            s = *(char *const *)((const char *)&cfg->schedules[i] + off);
        }
        if (!lit_append(&buf, &len, &cap, s, i == 0)) {
            free(buf);
            return NULL;
        }
    }
    buf[len++] = '}';
    buf[len] = '\0';
    return buf;
}

/*
 * Make skipq.schedules' config rows this config's schedules (when it has
 * a schedules: section), before the worker claims. A schedule defined in
 * SQL under the same name is taken over by the config's, with a warning;
 * config schedules the config no longer lists are removed. A schedule
 * the server refuses (its cron expression, its zone) stops the start:
 * SKIPQ_ERR_CONFIG with the schedule's name and the server's message.
 */
skipq_rc
skipq__schedule_sync(skipq_worker *w, PGconn *pg, skipq_error *err)
{
    static const size_t offs[8] = {
        offsetof(skipq__schedule_cfg, name),
        offsetof(skipq__schedule_cfg, cron),
        offsetof(skipq__schedule_cfg, time_zone),
        offsetof(skipq__schedule_cfg, kind),
        offsetof(skipq__schedule_cfg, payload),
        offsetof(skipq__schedule_cfg, queue),
        (size_t)-1,
        offsetof(skipq__schedule_cfg, missed),
    };
    char *v[8] = {NULL};
    PGresult *res = NULL;
    skipq_rc rc = SKIPQ_OK;

    if (!w->cfg->schedules_set)
        return SKIPQ_OK;
    for (int i = 0; i < 8; i++)
        if (!(v[i] = field_literal(w->cfg, offs[i]))) {
            rc = skipq__fail(err, SKIPQ_ERR_NOMEM, "out of memory");
            goto out;
        }
    /* behind a pooler, in a transaction with its own lock_timeout */
    int send = w->sess.send >= SKIPQ__SEND_POOLED_MIN ? w->sess.send : SKIPQ__SEND_UNNAMED;
    if (!skipq__stmt_run(pg, send, SKIPQ__STMT_SCHEDULE_SYNC, NULL, 8,
                         (const char *const *)v, &res) ||
        PQresultStatus(res) != PGRES_TUPLES_OK) {
        rc = skipq__db_fail(err, pg, res, "could not apply the config's schedules");
        /* a definition the server refused is the config's fault */
        if (strcmp(err->sqlstate, "22023") == 0 || strcmp(err->sqlstate, "55000") == 0)
            err->code = rc = SKIPQ_ERR_CONFIG;
        goto out;
    }
    for (int r = 0; r < PQntuples(res); r++) {
        const char *name = PQgetvalue(res, r, 0), *action = PQgetvalue(res, r, 1);
        if (strcmp(action, "replaced") == 0)
            skipq__log(SKIPQ_LOG_WARN,
                       "schedule \"%s\" was defined in SQL; the config's definition "
                       "replaces it",
                       name);
        else
            skipq__log(SKIPQ_LOG_INFO, "schedule \"%s\" %s (config)", name, action);
    }
out:
    PQclear(res);
    for (int i = 0; i < 8; i++)
        free(v[i]);
    return rc;
}

enum { TICK_EVERY_MS = 1000, TICK_MIN_MS = 20 };

/*
 * One tick on the maintenance connection: the due slots enqueued, and how
 * long to wait for the next tick: until the next slot the server named
 * (at least TICK_MIN_MS, so a slot another worker is enqueueing is not
 * asked about in a spin), at most TICK_EVERY_MS. With no schedule the
 * call is one probe of an empty index a second.
 */
int64_t
skipq__schedule_tick(PGconn *pg, bool quiet)
{
    PGresult *res = NULL;
    skipq_error e;
    int64_t wait = TICK_EVERY_MS;

    if (skipq__stmt_exec(pg, true, SKIPQ__STMT_SCHEDULE_TICK, 0, NULL, &res, &e) !=
        SKIPQ_OK) {
        skipq__log(quiet ? SKIPQ_LOG_DEBUG : SKIPQ_LOG_WARN, "schedules: %s", e.message);
        return wait;
    }
    if (PQntuples(res) == 1) {
        int n = atoi(PQgetvalue(res, 0, 0));
        if (n > 0)
            skipq__log(SKIPQ_LOG_DEBUG, "schedules: enqueued %d job(s)", n);
        if (!PQgetisnull(res, 0, 1)) {
            long long next = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
            wait = next < TICK_MIN_MS ? TICK_MIN_MS : next < TICK_EVERY_MS ? next : wait;
        }
    }
    PQclear(res);
    return wait;
}
