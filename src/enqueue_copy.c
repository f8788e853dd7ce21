/*
 * enqueue_copy.c - putting jobs in bulk: one COPY for any number of jobs
 * (skipq_copy_*), and skipq_enqueue_batch over it.
 *
 * Every row is checked as skipq_enqueue checks its job (enqueue.c) before
 * any of it is sent; a bad row aborts the COPY, so the server writes none
 * of them. Rows go out through a buffer of fixed size, whatever the size
 * of a payload.
 */
#include "abi.h"
#include "enqueue_internal.h"
#include "statements.h"

#include <json-c/json.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct skipq_copy {
    PGconn *pg;
    skipq_enqueue_opts opts;
    char *tail; /* escaped "\tqueue\tpriority...\n" ending every row */
    size_t tail_len;
    char *buf; /* COPY_BUF bytes, sent whenever full */
    size_t len;
    int64_t rows;
    bool broken; /* a send failed: what reached the server is unknown */
    /* job control: rows go to a staging table, then into skipq.jobs
     * (enqueue_control.c's options and each row's unique key) */
    bool staged;
    char *key_field; /* owned: opts.unique_key_field */
};

/*
 * Rows are escaped into a buffer of fixed size, which goes to the server
 * each time it fills, in the middle of a row if need be (COPY data need
 * not break at rows). Memory stays at COPY_BUF however large a payload
 * (escaped, a payload of max_payload's 1 GB maximum could be 2 GB), and
 * each send fits PQputCopyData's int length: a buffer past 2 GB, cast to
 * int, went negative, and libpq then sends nothing and reports success,
 * so the rows in it were silently lost while the COPY committed the rest.
 */
#define COPY_BUF (256 * 1024)
_Static_assert(COPY_BUF <= INT_MAX, "a send's length is an int");

/*
 * PostgreSQL reads each line of COPY data into one buffer, which cannot
 * reach 1 GB (MaxAllocSize), newline included. A longer row is refused
 * before any of it is sent: the server would read up to a gigabyte of it
 * first, then fail the whole COPY with "out of memory".
 */
#define COPY_LINE_MAX (((size_t)1 << 30) - 2)

static skipq_rc
row_too_long(size_t row, skipq_error *err)
{
    return skipq__fail(err, SKIPQ_ERR_INVALID,
                       "job is too long for COPY: its row is %zu bytes or more, "
                       "and PostgreSQL reads at most %zu in one",
                       row, COPY_LINE_MAX);
}

/* The length of s escaped for COPY's text format. */
static size_t
escaped_len(const char *s, size_t n)
{
    size_t len = n;
    for (size_t i = 0; i < n; i++)
        len += s[i] == '\\' || s[i] == '\n' || s[i] == '\r' || s[i] == '\t';
    return len;
}

/* s escaped for COPY's text format into o, which has room for 2 * n
 * bytes; returns the bytes written. */
static size_t
escape_into(char *o, const char *s, size_t n)
{
    char *start = o;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        switch (c) {
        case '\\':
            *o++ = '\\';
            *o++ = '\\';
            break;
        case '\n':
            *o++ = '\\';
            *o++ = 'n';
            break;
        case '\r':
            *o++ = '\\';
            *o++ = 'r';
            break;
        case '\t':
            *o++ = '\\';
            *o++ = 't';
            break;
        default:
            *o++ = c;
        }
    }
    return (size_t)(o - start);
}

static skipq_rc
broken(skipq_error *err)
{
    return skipq__fail(err, SKIPQ_ERR_STATE, "could not send jobs: an earlier send failed");
}

static skipq_rc
flush(skipq_copy *cp, skipq_error *err)
{
    if (cp->broken)
        return broken(err);
    if (cp->len == 0)
        return SKIPQ_OK;
    if (PQputCopyData(cp->pg, cp->buf, (int)cp->len) != 1) {
        /* part of a row may have gone: no later row may follow it */
        cp->broken = true;
        return skipq__db_fail(err, cp->pg, NULL, "could not send jobs");
    }
    cp->len = 0;
    return SKIPQ_OK;
}

/* Append n bytes of s, escaped for COPY (or as they are), sending the
 * buffer whenever it fills. */
static skipq_rc
put(skipq_copy *cp, const char *s, size_t n, bool escape, skipq_error *err)
{
    skipq_rc rc;

    while (n > 0) {
        size_t room = COPY_BUF - cp->len;
        size_t k = escape ? room / 2 : room; /* an escaped byte takes 2 */
        if (k == 0) {
            if ((rc = flush(cp, err)) != SKIPQ_OK)
                return rc;
            continue;
        }
        if (k > n)
            k = n;
        if (escape) {
            cp->len += escape_into(cp->buf + cp->len, s, k);
        } else {
            memcpy(cp->buf + cp->len, s, k);
            cp->len += k;
        }
        s += k;
        n -= k;
    }
    return SKIPQ_OK;
}

/* The run_at every row of this COPY gets, as text; the server's clock. */
static skipq_rc
copy_run_at(PGconn *pg, const skipq_enqueue_opts *o, char *out, size_t n, skipq_error *err)
{
    char a[24], b[24];
    const char *v[2] = {a, b};
    PGresult *res;
    skipq_rc rc = SKIPQ_OK;

    snprintf(a, sizeof a, "%lld", (long long)o->run_at_us);
    snprintf(b, sizeof b, "%lld", (long long)o->delay_ms);
    if (!o->run_at_us)
        v[0] = NULL;
    skipq__stmt_run(pg, false, SKIPQ__STMT_COPY_RUN_AT, NULL, 2, v, &res);
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        rc = skipq__db_fail(err, pg, res, "could not compute run_at");
    else
        snprintf(out, n, "%s", PQgetvalue(res, 0, 0));
    PQclear(res);
    return rc;
}

/* The session's staging table, created once and emptied for this batch. */
static skipq_rc
stage_create(PGconn *pg, skipq_error *err)
{
    PGresult *res = PQexec(pg, skipq__stmts[SKIPQ__STMT_COPY_STAGE].text);
    skipq_rc rc = SKIPQ_OK;

    if (PQresultStatus(res) != PGRES_COMMAND_OK)
        rc = skipq__db_fail(err, pg, res, "could not create the staging table");
    PQclear(res);
    return rc;
}

/* The unique key of a staged row: its payload's key field (a string or
 * a number), into *key (owned by *obj, which the caller puts); none
 * without opts.unique_key_field. */
static skipq_rc
row_key(const skipq_copy *cp, const char *payload, size_t len, const char **key,
        json_object **obj, skipq_error *err)
{
    json_tokener *tok;
    json_object *v;

    *obj = NULL;
    if (!cp->key_field)
        return SKIPQ_OK;
    if (!(tok = json_tokener_new()))
        return skipq__fail(err, SKIPQ_ERR_NOMEM, "out of memory");
    *obj = json_tokener_parse_ex(tok, payload, (int)len);
    json_tokener_free(tok);
    if (*obj && json_object_object_get_ex(*obj, cp->key_field, &v) &&
        (json_object_is_type(v, json_type_string) ||
         json_object_is_type(v, json_type_int) ||
         json_object_is_type(v, json_type_double)) &&
        (*key = json_object_get_string(v))[0])
        return SKIPQ_OK;
    return skipq__fail(err, SKIPQ_ERR_INVALID,
                       "payload has no field \"%.64s\" (a string or a number) to be its "
                       "unique key",
                       cp->key_field);
}

skipq_rc
skipq_copy_begin(skipq_conn *conn, const skipq_enqueue_opts *opts, skipq_copy **out,
                 skipq_error *err)
{
    skipq_enqueue_opts opts_in;
    const skipq_enqueue_opts *o = &opts_in;
    char cols[256] = "kind, payload, queue, priority";
    char tail[512], run_at[64] = "";
    skipq_copy *cp;
    PGresult *res;
    skipq_rc rc;

    *out = NULL;
    if (!conn)
        return skipq__fail(err, SKIPQ_ERR_STATE, "no connection");
    if ((rc = skipq__enqueue_opts_read(opts, &opts_in, err)) != SKIPQ_OK ||
        (rc = skipq__enq_control_check(o, err)) != SKIPQ_OK)
        return rc;
    if (o->unique_key)
        return skipq__fail(err, SKIPQ_ERR_INVALID,
                           "unique_key is one job's; a batch takes each job's from its "
                           "payload: set unique_key_field");
    if ((o->run_at_us || o->delay_ms) &&
        (rc = copy_run_at(conn->pg, o, run_at, sizeof run_at, err)) != SKIPQ_OK)
        return rc;
    cp = calloc(1, sizeof *cp);
    if (!cp)
        return skipq__fail(err, SKIPQ_ERR_NOMEM, "out of memory");
    cp->pg = conn->pg;
    cp->opts = *o;
    cp->opts.queue = NULL; /* not owned; the tail keeps the name */
    cp->staged = skipq__enq_has_control(o) || o->unique_key_field;
    cp->opts.unique_key_field = NULL;
    if (o->unique_key_field && !(cp->key_field = strdup(o->unique_key_field))) {
        free(cp);
        return skipq__fail(err, SKIPQ_ERR_NOMEM, "out of memory");
    }
    /* each row's key comes after its kind: "kind\tkey\tpayload..." */
    if (cp->staged)
        snprintf(cols, sizeof cols, "kind, unique_key, payload, queue, priority");

    /* Columns not set are left to their defaults. */
    int tl = snprintf(tail, sizeof tail, "\t%d", (int)o->priority);
    if (run_at[0]) {
        strcat(cols, ", run_at");
        tl += snprintf(tail + tl, sizeof tail - (size_t)tl, "\t%s", run_at);
    }
    if (o->max_attempts > 0) {
        strcat(cols, ", max_attempts");
        tl += snprintf(tail + tl, sizeof tail - (size_t)tl, "\t%d", (int)o->max_attempts);
    }
    if (o->has_backoff) {
        strcat(cols, ", backoff_strategy, backoff_base, backoff_max");
        tl += snprintf(tail + tl, sizeof tail - (size_t)tl,
                       "\t%s\t%lld milliseconds\t%lld milliseconds",
                       skipq__backoff_names[o->backoff], (long long)o->backoff_base_ms,
                       (long long)o->backoff_max_ms);
    }
    if (o->timeout_ms > 0) {
        strcat(cols, ", timeout");
        tl += snprintf(tail + tl, sizeof tail - (size_t)tl, "\t%lld milliseconds",
                       (long long)o->timeout_ms);
    }
    /* tail = "\t<queue escaped>" + the rest + "\n" */
    const char *q = o->queue ? o->queue : "default";
    size_t qlen = strlen(q);
    cp->buf = malloc(COPY_BUF);
    cp->tail = malloc(1 + 2 * qlen + (size_t)tl + 1);
    if (!cp->buf || !cp->tail) {
        cp->pg = NULL; /* no COPY started yet */
        skipq_copy_abort(cp, NULL);
        return skipq__fail(err, SKIPQ_ERR_NOMEM, "out of memory");
    }
    cp->tail[0] = '\t';
    cp->tail_len = 1 + escape_into(cp->tail + 1, q, qlen);
    memcpy(cp->tail + cp->tail_len, tail, (size_t)tl);
    cp->tail_len += (size_t)tl;
    cp->tail[cp->tail_len++] = '\n';

    char sql[512];
    if (cp->staged && (rc = stage_create(conn->pg, err)) != SKIPQ_OK) {
        cp->pg = NULL;
        skipq_copy_abort(cp, NULL);
        return rc;
    }
    snprintf(sql, sizeof sql,
             skipq__stmts[cp->staged ? SKIPQ__STMT_COPY_STAGE_IN : SKIPQ__STMT_COPY].text,
             cols);
    res = PQexec(conn->pg, sql);
    if (PQresultStatus(res) != PGRES_COPY_IN) {
        rc = skipq__db_fail(err, conn->pg, res, "could not start COPY");
        PQclear(res);
        cp->pg = NULL; /* nothing to abort on the server */
        skipq_copy_abort(cp, NULL);
        return rc;
    }
    PQclear(res);
    *out = cp;
    return SKIPQ_OK;
}

skipq_rc
skipq_copy_add(skipq_copy *cp, const char *kind, const char *payload_json, size_t len,
               skipq_error *err)
{
    const char *key = NULL;
    json_object *obj = NULL;
    skipq_rc rc;

    if (!cp)
        return skipq__fail(err, SKIPQ_ERR_STATE, "no COPY in progress");
    if (cp->broken)
        return broken(err);
    if ((rc = skipq_check_name("kind", kind, err)) != SKIPQ_OK)
        return rc;
    if (!payload_json) {
        payload_json = "{}";
        len = 2;
    } else if (len == (size_t)-1) {
        len = strlen(payload_json);
    }
    /* the row before escaping first: too long already, it is not read */
    size_t klen = strlen(kind);
    size_t row = klen + 1 + len + cp->tail_len;
    if (len <= skipq__payload_limit(cp->opts.max_payload) && row > COPY_LINE_MAX)
        return row_too_long(row, err);
    if ((rc = skipq_check_payload(payload_json, len, cp->opts.max_payload, err)) !=
        SKIPQ_OK)
        return rc;
    /* counted only when escaping could make it too long */
    if (2 * (klen + len) + 1 + cp->tail_len > COPY_LINE_MAX &&
        (row = escaped_len(kind, klen) + 1 + escaped_len(payload_json, len) +
               cp->tail_len) > COPY_LINE_MAX)
        return row_too_long(row, err);
    if (cp->staged) {
        if ((rc = row_key(cp, payload_json, len, &key, &obj, err)) != SKIPQ_OK)
            goto out;
        if (key && (rc = skipq__enq_key_check("unique_key", key, err)) != SKIPQ_OK)
            goto out;
    }
    if ((rc = put(cp, kind, klen, true, err)) != SKIPQ_OK ||
        (cp->staged && (rc = put(cp, "\t", 1, false, err)) != SKIPQ_OK) ||
        (cp->staged && (rc = key ? put(cp, key, strlen(key), true, err)
                                 : put(cp, "\\N", 2, false, err)) != SKIPQ_OK) ||
        (rc = put(cp, "\t", 1, false, err)) != SKIPQ_OK ||
        (rc = put(cp, payload_json, len, true, err)) != SKIPQ_OK ||
        (rc = put(cp, cp->tail, cp->tail_len, false, err)) != SKIPQ_OK)
        goto out;
    cp->rows++;
out:
    json_object_put(obj);
    return rc;
}

static void
copy_free(skipq_copy *cp)
{
    free(cp->key_field);
    free(cp->buf);
    free(cp->tail);
    free(cp);
}

/* The staged rows into skipq.jobs, in input order: *inserted of *total
 * (statements.c, COPY_STAGE_KEEP and COPY_STAGE_EACH). */
static skipq_rc
stage_move(skipq_copy *cp, int64_t *inserted, int64_t *total, skipq_error *err)
{
    const skipq_enqueue_opts *o = &cp->opts;
    bool keep = !o->unique_mode && !o->n_depends_on && !o->batch;
    skipq__enq_control c;
    PGresult *res = NULL;
    skipq_rc rc;

    if ((rc = skipq__enq_control_fill(&c, o, err)) != SKIPQ_OK)
        return rc;
    /* keep: unique_window, concurrency_key, meta, tags (c.v[1], [5..7]) */
    const char *kv[4] = {c.v[1], c.v[5], c.v[6], c.v[7]};
    if (keep)
        skipq__stmt_run(cp->pg, true, SKIPQ__STMT_COPY_STAGE_KEEP, NULL, 4, kv, &res);
    else
        skipq__stmt_run(cp->pg, true, SKIPQ__STMT_COPY_STAGE_EACH, NULL,
                        SKIPQ__ENQ_CONTROL_NPARAMS, c.v, &res);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        rc = skipq__db_fail(err, cp->pg, res, "could not enqueue %lld jobs",
                            (long long)cp->rows);
    } else {
        *inserted = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
        *total = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
    }
    PQclear(res);
    skipq__enq_control_free(&c);
    return rc;
}

skipq_rc
skipq_copy_end(skipq_copy *cp, int64_t *count_out, skipq_error *err)
{
    return skipq_copy_end_counts(cp, count_out, NULL, err);
}

skipq_rc
skipq_copy_end_counts(skipq_copy *cp, int64_t *count_out, int64_t *existing_out,
                      skipq_error *err)
{
    int64_t inserted = 0, total = 0;
    skipq_rc rc;
    PGresult *res;

    if (!cp)
        return skipq__fail(err, SKIPQ_ERR_STATE, "no COPY in progress");
    rc = flush(cp, err);
    if (rc != SKIPQ_OK) {
        skipq_copy_abort(cp, "client error");
        return rc;
    }
    if (PQputCopyEnd(cp->pg, NULL) != 1) {
        rc = skipq__db_fail(err, cp->pg, NULL, "could not finish COPY");
    }
    while ((res = PQgetResult(cp->pg)) != NULL) {
        if (rc == SKIPQ_OK && PQresultStatus(res) != PGRES_COMMAND_OK)
            rc = skipq__db_fail(err, cp->pg, res, "could not enqueue %lld jobs",
                                (long long)cp->rows);
        PQclear(res);
    }
    inserted = total = cp->rows;
    if (rc == SKIPQ_OK && cp->staged)
        rc = stage_move(cp, &inserted, &total, err);
    if (rc == SKIPQ_OK && count_out)
        *count_out = inserted;
    if (rc == SKIPQ_OK && existing_out)
        *existing_out = total - inserted;
    copy_free(cp);
    return rc;
}

void
skipq_copy_abort(skipq_copy *cp, const char *why)
{
    PGresult *res;

    if (!cp)
        return;
    if (cp->pg) {
        /* The server fails the COPY with our message: no row is written. */
        if (PQputCopyEnd(cp->pg, why ? why : "aborted by client") == 1)
            while ((res = PQgetResult(cp->pg)) != NULL)
                PQclear(res);
    }
    copy_free(cp);
}

/* A spec of the caller's array that cannot be read as one (abi.h). */
static skipq_rc
bad_spec(skipq__in_rc why, size_t stride, skipq_error *err)
{
    if (why == SKIPQ__IN_BAD_SIZE)
        return skipq__fail(err, SKIPQ_ERR_INVALID,
                           "skipq_job_spec stride %zu is not the size of a "
                           "skipq_job_spec: call skipq_enqueue_batch()",
                           stride);
    return skipq__fail(err, SKIPQ_ERR_INVALID,
                       "skipq_job_spec of %zu bytes sets a field this "
                       "libskipq %s does not know (it knows %zu)",
                       stride, skipq_version(), sizeof(skipq_job_spec));
}

skipq_rc
skipq_enqueue_batch_stride(skipq_conn *conn, const skipq_job_spec *jobs, size_t n,
                           size_t stride, const skipq_enqueue_opts *opts, skipq_error *err)
{
    skipq_copy *cp = NULL;
    skipq_job_spec spec;
    skipq__in_rc in;
    skipq_rc rc;

    if (n == 0)
        return SKIPQ_OK;
    if ((in = skipq__job_spec_in(jobs, stride, 0, &spec)) == SKIPQ__IN_BAD_SIZE)
        return bad_spec(in, stride, err);
    if ((rc = skipq_copy_begin(conn, opts, &cp, err)) != SKIPQ_OK)
        return rc;
    for (size_t i = 0; i < n; i++) {
        in = skipq__job_spec_in(jobs, stride, i, &spec);
        rc = in != SKIPQ__IN_OK
                 ? bad_spec(in, stride, err)
                 : skipq_copy_add(cp, spec.kind, spec.payload_json, (size_t)-1, err);
        if (rc != SKIPQ_OK) {
            if (err) {
                char msg[sizeof err->message];
                snprintf(msg, sizeof msg, "job %zu: %s", i, err->message);
                memcpy(err->message, msg, sizeof msg);
            }
            skipq_copy_abort(cp, "invalid job");
            return rc;
        }
    }
    return skipq_copy_end(cp, NULL, err);
}
