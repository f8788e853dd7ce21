/*
 * db.c - the bench's private database: created on the server of the
 * configured URL, migrated, emptied between measurements and dropped at
 * the end; the SQL helpers every measurement uses, and filling the queue.
 */
#include "bench.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BATCH_CHUNK 1000000

/* ---- SQL ------------------------------------------------------------------ */

/* Run sql with text parameters; fails the bench (prints, returns 1) on
 * any error. *out (may be NULL) receives a result with rows. */
int
sqlp(PGconn *pg, PGresult **out, const char *sql, int n, const char *const *v)
{
    PGresult *res = PQexecParams(pg, sql, n, NULL, v, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(res);

    if (out)
        *out = NULL;
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        int rc = cli_db_fail(pg, res, "bench: could not run \"%.60s\"", sql);
        PQclear(res);
        return rc == CLI_EXIT_USAGE ? CLI_EXIT_FAIL : rc;
    }
    if (out)
        *out = res;
    else
        PQclear(res);
    return 0;
}

int
sql(PGconn *pg, const char *text)
{
    return sqlp(pg, NULL, text, 0, NULL);
}

/* The first column of the first row as an integer, or -1 on error. */
long long
sql_int(PGconn *pg, const char *text)
{
    PGresult *res;
    long long v = -1;

    if (sqlp(pg, &res, text, 0, NULL) != 0)
        return -1;
    if (PQntuples(res) > 0 && !PQgetisnull(res, 0, 0))
        v = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    PQclear(res);
    return v;
}

/* Empty the queue between measurements, and start from a checkpoint so a
 * measurement does not pay for the previous one's full-page writes.
 * CHECKPOINT needs superuser or pg_checkpoint: without, we go on. */
int
reset_queue(struct bench *b)
{
    if (sql(b->pg, "TRUNCATE skipq.jobs, skipq.workers RESTART IDENTITY") != 0)
        return 1;
    PQclear(PQexec(b->pg, "CHECKPOINT"));
    return 0;
}

/* ---- the bench database ----------------------------------------------- */

/* A conninfo string for the same server as url, database dbname. Values
 * are single-quoted with \ and ' escaped, as libpq's parser expects. */
static char *
conninfo_for(const char *url, const char *dbname)
{
    char *errmsg = NULL;
    PQconninfoOption *opts = PQconninfoParse(url ? url : "", &errmsg);
    size_t cap = 256, len = 0;
    char *out;

    if (!opts) {
        cli_errorf(CLI_EXIT_FAIL, "bench: could not parse the database URL: %s",
                   errmsg ? errmsg : "out of memory");
        PQfreemem(errmsg);
        return NULL;
    }
    for (PQconninfoOption *o = opts; o->keyword; o++)
        if (o->val)
            cap += strlen(o->keyword) + 2 * strlen(o->val) + 4;
    cap += strlen(dbname) + 16;
    out = malloc(cap);
    if (out) {
        for (PQconninfoOption *o = opts; o->keyword; o++) {
            if (!o->val || strcmp(o->keyword, "dbname") == 0)
                continue;
            len += (size_t)snprintf(out + len, cap - len, "%s='", o->keyword);
            for (const char *s = o->val; *s; s++) {
                if (*s == '\'' || *s == '\\')
                    out[len++] = '\\';
                out[len++] = *s;
            }
            out[len++] = '\'';
            out[len++] = ' ';
        }
        snprintf(out + len, cap - len, "dbname='%s'", dbname);
    }
    PQconninfoFree(opts);
    return out;
}

int
create_db(struct bench *b)
{
    char q[128];
    skipq_error err = {0};
    int applied = 0, rc;

    b->ctx->skip_schema_check = 1;
    rc = cli_connect(b->ctx, &b->admin_conn);
    if (rc != 0)
        return rc;
    b->admin = skipq_conn_pg(b->admin_conn);
    snprintf(b->dbname, sizeof b->dbname, "skipq_bench_%d", (int)getpid());
    /* the name is ours (a pid), so it is safe to format in */
    snprintf(q, sizeof q, "DROP DATABASE IF EXISTS %s", b->dbname);
    PQclear(PQexec(b->admin, "SET client_min_messages = warning"));
    if ((rc = sql(b->admin, q)) != 0)
        return rc;
    snprintf(q, sizeof q, "CREATE DATABASE %s", b->dbname);
    if ((rc = sql(b->admin, q)) != 0) {
        b->dbname[0] = '\0';
        return rc;
    }
    b->url = conninfo_for(b->ctx->database, b->dbname);
    if (!b->url)
        return CLI_EXIT_FAIL;
    /* b->url is freed by cmd_bench on every path; the analyzer loses it
     * in the struct (a false "potential leak") */
    if (skipq_conn_open(b->url, &b->conn, &err) != SKIPQ_OK ||
        skipq_migrate(b->conn, &applied, NULL, NULL, &err) !=
            SKIPQ_OK) { // NOLINT(clang-analyzer-unix.Malloc)
        cli_fail(&err);
        return CLI_EXIT_FAIL;
    }
    b->pg = skipq_conn_pg(b->conn);
    PQclear(PQexec(b->pg, "SET client_min_messages = warning"));
    /* The new database's catalogs took the migration's rows: analyze them
     * now, or autovacuum does it on one of the cores in the middle of a
     * measurement (c-batch enqueue showed two modes, 0.65x and 1.05x of
     * raw COPY, from run to run). */
    return sql(b->pg, "VACUUM (ANALYZE)");
}

void
drop_db(struct bench *b)
{
    char q[128];

    skipq_conn_close(b->conn);
    b->conn = NULL;
    b->pg = NULL;
    if (b->admin && b->dbname[0]) {
        snprintf(q, sizeof q, "DROP DATABASE IF EXISTS %s WITH (FORCE)", b->dbname);
        PGresult *res = PQexec(b->admin, q);
        if (PQresultStatus(res) != PGRES_COMMAND_OK)
            cli_db_fail(b->admin, res, "bench: could not drop database \"%s\"", b->dbname);
        PQclear(res);
    }
    skipq_conn_close(b->admin_conn);
    b->admin_conn = NULL;
    b->admin = NULL;
}

/* ---- filling the queue ------------------------------------------------- */

/* N no-op jobs through skipq_enqueue_batch, BATCH_CHUNK per call. */
int
fill_batch(struct bench *b, long long n, const char *kind, double *secs)
{
    size_t chunk = (size_t)(n < BATCH_CHUNK ? n : BATCH_CHUNK);
    skipq_job_spec *specs = calloc(chunk ? chunk : 1, sizeof *specs);
    char *payloads = malloc((chunk ? chunk : 1) * 24);
    skipq_error err = {0};
    int rc = 0;

    if (!specs || !payloads) {
        rc = cli_errorf(CLI_EXIT_FAIL, "bench: out of memory");
        goto out;
    }
    int64_t t0 = now_us();
    for (long long done = 0; done < n && !interrupted;) {
        size_t m = (size_t)(n - done < (long long)chunk ? n - done : (long long)chunk);
        for (size_t i = 0; i < m; i++) {
            snprintf(payloads + i * 24, 24, "{\"i\":%lld}", done + (long long)i);
            specs[i] = (skipq_job_spec){kind, payloads + i * 24};
        }
        if (skipq_enqueue_batch(b->conn, specs, m, NULL, &err) != SKIPQ_OK) {
            rc = fail1(&err);
            goto out;
        }
        done += (long long)m;
    }
    if (secs)
        *secs = (double)(now_us() - t0) / 1e6;
out:
    free(specs);
    free(payloads);
    return interrupted && rc == 0 ? CLI_EXIT_FAIL : rc;
}

/* N no-op jobs in one INSERT ... SELECT: the fastest fill for a backlog. */
int
fill_series(struct bench *b, long long n)
{
    char num[24];
    const char *v[1] = {num};

    snprintf(num, sizeof num, "%lld", n);
    return sqlp(b->pg, NULL,
                "INSERT INTO skipq.jobs (kind, payload) SELECT '" KIND_NOOP "',"
                " pg_catalog.jsonb_build_object('i', g)"
                " FROM pg_catalog.generate_series(1, $1::int8) g",
                1, v);
}
