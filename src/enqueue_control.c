/*
 * enqueue_control.c - a job with job control's options: a unique key,
 * parents, a batch, a concurrency key, meta, tags.
 *
 * Such a job goes in through skipq.enqueue_unique (sql/enqueue.sql), one
 * statement that settles a taken key with the unique index, not with a
 * read before the insert, and says whether it inserted a row. The plain
 * job never comes here: its insert stays the one of enqueue.c.
 */
#include "enqueue_internal.h"
#include "statements.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* the longest unique or concurrency key (the columns' CHECK) */
#define KEY_MAX 1000

bool
skipq__enq_has_control(const skipq_enqueue_opts *o)
{
    return o->unique_key || o->n_depends_on || o->batch || o->concurrency_key ||
           o->meta_json || o->n_tags || o->unique_mode || o->unique_window_ms ||
           o->run_if_parent_fails;
}

skipq_rc
skipq__enq_key_check(const char *what, const char *key, skipq_error *err)
{
    size_t n = strlen(key);

    if (n == 0 || n > KEY_MAX)
        return skipq__fail(err, SKIPQ_ERR_INVALID, "%s must be 1 to %d bytes, not %zu",
                           what, KEY_MAX, n);
    return SKIPQ_OK;
}

skipq_rc
skipq__enq_control_check(const skipq_enqueue_opts *o, skipq_error *err)
{
    skipq_rc rc;

    if (o->unique_key &&
        (rc = skipq__enq_key_check("unique_key", o->unique_key, err)) != SKIPQ_OK)
        return rc;
    if (o->concurrency_key &&
        (rc = skipq__enq_key_check("concurrency_key", o->concurrency_key, err)) != SKIPQ_OK)
        return rc;
    if (o->unique_mode < SKIPQ_UNIQUE_KEEP || o->unique_mode > SKIPQ_UNIQUE_DEBOUNCE)
        return skipq__fail(err, SKIPQ_ERR_INVALID, "unknown unique_mode %d",
                           (int)o->unique_mode);
    if (o->unique_window_ms < 0)
        return skipq__fail(err, SKIPQ_ERR_INVALID, "unique_window_ms must not be negative");
    if ((o->unique_mode || o->unique_window_ms) && !o->unique_key && !o->unique_key_field)
        return skipq__fail(err, SKIPQ_ERR_INVALID,
                           "unique_mode and unique_window_ms need a unique_key");
    if (o->n_depends_on && !o->depends_on)
        return skipq__fail(err, SKIPQ_ERR_INVALID,
                           "n_depends_on is %zu but depends_on is NULL", o->n_depends_on);
    for (size_t i = 0; i < o->n_depends_on; i++)
        if (o->depends_on[i] <= 0)
            return skipq__fail(err, SKIPQ_ERR_INVALID,
                               "depends_on[%zu] is not a job id: %lld", i,
                               (long long)o->depends_on[i]);
    if (o->batch < 0)
        return skipq__fail(err, SKIPQ_ERR_INVALID, "batch is not a batch id: %lld",
                           (long long)o->batch);
    if (o->n_tags && !o->tags)
        return skipq__fail(err, SKIPQ_ERR_INVALID, "n_tags is %zu but tags is NULL",
                           o->n_tags);
    for (size_t i = 0; i < o->n_tags; i++)
        if (!o->tags[i] || !o->tags[i][0])
            return skipq__fail(err, SKIPQ_ERR_INVALID, "tags[%zu] is empty", i);
    if (o->meta_json &&
        (rc = skipq_check_payload(o->meta_json, (size_t)-1, 0, err)) != SKIPQ_OK) {
        if (err) {
            char was[sizeof err->message];
            snprintf(was, sizeof was, "%s", err->message);
            skipq__fail(err, rc, "meta: %s", was);
        }
        return rc;
    }
    return SKIPQ_OK;
}

/* n ids as an int8[] literal: {1,2,3} */
static char *
ids_literal(const int64_t *ids, size_t n)
{
    char *s = malloc(n * 21 + 3), *o = s;

    if (!s)
        return NULL;
    *o++ = '{';
    for (size_t i = 0; i < n; i++)
        o += sprintf(o, i ? ",%lld" : "%lld", (long long)ids[i]);
    *o++ = '}';
    *o = '\0';
    return s;
}

/* n strings as a text[] literal, each quoted: {"a","b \"c\""} */
static char *
texts_literal(const char *const *v, size_t n)
{
    size_t len = 3;
    char *s, *o;

    for (size_t i = 0; i < n; i++)
        len += 2 * strlen(v[i]) + 3;
    if (!(s = o = malloc(len)))
        return NULL;
    *o++ = '{';
    for (size_t i = 0; i < n; i++) {
        if (i)
            *o++ = ',';
        *o++ = '"';
        for (const char *c = v[i]; *c; c++) {
            if (*c == '"' || *c == '\\')
                *o++ = '\\';
            *o++ = *c;
        }
        *o++ = '"';
    }
    *o++ = '}';
    *o = '\0';
    return s;
}

static const char *const mode_names[] = {"keep", "replace", "debounce"};

skipq_rc
skipq__enq_control_fill(skipq__enq_control *c, const skipq_enqueue_opts *o,
                        skipq_error *err)
{
    memset(c, 0, sizeof *c);
    if (o->n_depends_on && !(c->depends_on = ids_literal(o->depends_on, o->n_depends_on)))
        return skipq__fail(err, SKIPQ_ERR_NOMEM, "out of memory");
    if (o->n_tags && !(c->tags = texts_literal(o->tags, o->n_tags))) {
        skipq__enq_control_free(c);
        return skipq__fail(err, SKIPQ_ERR_NOMEM, "out of memory");
    }
    snprintf(c->window, sizeof c->window, "%lld", (long long)o->unique_window_ms);
    snprintf(c->batch, sizeof c->batch, "%lld", (long long)o->batch);
    c->v[0] = mode_names[o->unique_mode];
    c->v[1] = o->unique_window_ms ? c->window : NULL;
    c->v[2] = c->depends_on;
    c->v[3] = o->run_if_parent_fails ? "run" : "cancel";
    c->v[4] = o->batch ? c->batch : NULL;
    c->v[5] = o->concurrency_key;
    c->v[6] = o->meta_json;
    c->v[7] = c->tags;
    return SKIPQ_OK;
}

void
skipq__enq_control_free(skipq__enq_control *c)
{
    free(c->depends_on);
    free(c->tags);
    c->depends_on = c->tags = NULL;
}

skipq_rc
skipq__enq_control_run(PGconn *pg, const skipq__enq_params *p, const skipq_enqueue_opts *o,
                       int64_t *id_out, int *inserted_out, skipq_error *err)
{
    const char *v[SKIPQ__ENQ_NPARAMS + 1 + SKIPQ__ENQ_CONTROL_NPARAMS];
    skipq__enq_control c;
    PGresult *res = NULL;
    skipq_rc rc;

    if ((rc = skipq__enq_control_fill(&c, o, err)) != SKIPQ_OK)
        return rc;
    memcpy(v, p->v, sizeof p->v);
    v[SKIPQ__ENQ_NPARAMS] = o->unique_key;
    memcpy(v + SKIPQ__ENQ_NPARAMS + 1, c.v, sizeof c.v);
    /* unnamed: a call of a function, rare next to the plain insert */
    skipq__stmt_run(pg, true, SKIPQ__STMT_ENQUEUE_UNIQUE, NULL, sizeof v / sizeof v[0], v,
                    &res);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1 ||
        PQgetisnull(res, 0, 0)) {
        rc = skipq__db_fail(err, pg, res, "could not enqueue job");
    } else {
        if (id_out)
            *id_out = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
        if (inserted_out)
            *inserted_out = PQgetvalue(res, 0, 1)[0] == 't';
    }
    PQclear(res);
    skipq__enq_control_free(&c);
    return rc;
}
