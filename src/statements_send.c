/*
 * statements_send.c - sending the registry's statements (statements.c):
 * prepared once a connection under their prepared names, or unnamed with
 * their text when the session or the skipq_conn says so; and
 * skipq_sql_text(), the texts by name.
 */
#include "statements.h"

#include <stdio.h>
#include <string.h>

skipq_rc
skipq__stmt_prepare(PGconn *pg, skipq__stmt_id id, skipq_error *err)
{
    return skipq__stmts_prepare(pg, &id, 1, skipq__stmts[id].prepared, err);
}

skipq_rc
skipq__stmts_prepare(PGconn *pg, const skipq__stmt_id *ids, size_t n, const char *what,
                     skipq_error *err)
{
    size_t done = 0;
    skipq_rc rc = SKIPQ_OK;

    for (; done < n && rc == SKIPQ_OK; done++) {
        const skipq__stmt *st = &skipq__stmts[ids[done]];
        PGresult *res = PQprepare(pg, st->prepared, st->text, 0, NULL);
        if (PQresultStatus(res) != PGRES_COMMAND_OK)
            rc = skipq__db_fail(err, pg, res, "could not prepare %s", what);
        PQclear(res);
    }
    if (rc != SKIPQ_OK) {
        for (size_t i = 0; i + 1 < done; i++) {
            char sql[80];
            snprintf(sql, sizeof sql, "DEALLOCATE %s", skipq__stmts[ids[i]].prepared);
            PQclear(PQexec(pg, sql)); /* a failure here is a lost connection */
        }
    }
    return rc;
}

/* The statement alone: by name, or by its text. */
static bool
send_one(PGconn *pg, bool named, const skipq__stmt *st, PGparam *prm, int n,
         const char *const *v)
{
    if (prm)
        return named ? PQparamSendQueryPrepared(pg, prm, st->prepared, 0) != 0
                     : PQparamSendQuery(pg, prm, st->text, 0) != 0;
    return named ? PQsendQueryPrepared(pg, st->prepared, n, v, NULL, NULL, 0) != 0
                 : PQsendQueryParams(pg, st->text, n, NULL, v, NULL, NULL, 0) != 0;
}

/* Behind a pooler: lock_timeout for this transaction, sent ahead of the
 * statement into the pipeline. */
static bool
send_lock_timeout(PGconn *pg, int ms)
{
    char val[24];
    const char *v[1] = {val};

    snprintf(val, sizeof val, "%dms", ms);
    return PQsendQueryParams(pg, "SELECT pg_catalog.set_config('lock_timeout', $1, true)",
                             1, NULL, v, NULL, NULL, 0) != 0;
}

/*
 * Run st behind a pooler: lock_timeout, the statement, a sync point, in
 * one round trip and one transaction. *out: the statement's result (the
 * first error, if the settings failed).
 */
static bool
run_pooled(PGconn *pg, int ms, const skipq__stmt *st, PGparam *prm, int n,
           const char *const *v, PGresult **out)
{
    PGresult *keep = NULL;
    int results = 0, nulls = 0;
    bool synced = false;

    *out = NULL;
    if (PQenterPipelineMode(pg) != 1)
        return false;
    bool sent = send_lock_timeout(pg, ms) && send_one(pg, false, st, prm, n, v);
    if ((sent || PQstatus(pg) == CONNECTION_OK) && PQpipelineSync(pg) == 1) {
        while (!synced) {
            PGresult *res = PQgetResult(pg);
            if (!res) {
                /* a NULL ends each statement's results; two in a row:
                 * nothing more is coming (a broken connection) */
                if (PQstatus(pg) != CONNECTION_OK || ++nulls > 1)
                    break;
                continue;
            }
            nulls = 0;
            ExecStatusType s = PQresultStatus(res);
            if (s == PGRES_PIPELINE_SYNC) {
                synced = true;
                PQclear(res);
            } else if (++results == 1 && s == PGRES_TUPLES_OK) {
                PQclear(res); /* the settings took */
            } else if (!keep) {
                keep = res; /* the statement's result, or the settings' error */
            } else {
                PQclear(res);
            }
        }
    }
    if (synced)
        (void)PQexitPipelineMode(pg); /* fails only with results left: a broken link */
    *out = keep;
    ExecStatusType s = PQresultStatus(keep);
    return sent && synced && keep && (s == PGRES_TUPLES_OK || s == PGRES_COMMAND_OK);
}

bool
skipq__stmt_run(PGconn *pg, int send, skipq__stmt_id id, PGparam *prm, int n,
                const char *const *v, PGresult **out)
{
    const skipq__stmt *st = &skipq__stmts[id];
    bool named = st->prepared && send == SKIPQ__SEND_NAMED;
    bool pooled = send >= SKIPQ__SEND_POOLED_MIN && (prm || n > 0 || st->prepared);
    PGresult *res;

    if (!out) /* into the caller's pipeline, whose first statement sets lock_timeout */
        return send_one(pg, named, st, prm, n, v);
    if (pooled)
        return run_pooled(pg, send, st, prm, n, v, out);
    if (prm)
        res = named ? PQparamExecPrepared(pg, prm, st->prepared, 0)
                    : PQparamExec(pg, prm, st->text, 0);
    else if (named)
        res = PQexecPrepared(pg, st->prepared, n, v, NULL, NULL, 0);
    else if (n == 0 && !st->prepared)
        res = PQexec(pg, st->text);
    else
        res = PQexecParams(pg, st->text, n, NULL, v, NULL, NULL, 0);
    *out = res;
    ExecStatusType s = PQresultStatus(res);
    return res && (s == PGRES_TUPLES_OK || s == PGRES_COMMAND_OK);
}

skipq_rc
skipq__stmt_exec(PGconn *pg, int send, skipq__stmt_id id, int n, const char *const *v,
                 PGresult **out, skipq_error *err)
{
    PGresult *res = NULL;
    skipq_rc rc = SKIPQ_OK;

    if (!skipq__stmt_run(pg, send, id, NULL, n, v, &res)) {
        if (n == 0 && !skipq__stmts[id].prepared)
            rc = skipq__db_fail(err, pg, res, "could not run \"%.60s\"",
                                skipq__stmts[id].text);
        else
            rc = skipq__db_fail(err, pg, res, "could not run worker statement");
        PQclear(res);
        res = NULL;
    }
    if (out)
        *out = res;
    else
        PQclear(res);
    return rc;
}

/* ---- by name ------------------------------------------------------------- */

static const struct {
    const char *name;
    const char *text;
} by_name[] = {
    {"claim", skipq__claim_sql},
    {"claim_after", skipq__claim_after_sql},
    {"next_run_at", skipq__next_run_at_sql},
    {"cycle", skipq__cycle_sql},
    {"cycle_quick", skipq__cycle_quick_sql},
    {"complete", skipq__complete_sql},
    {"complete_delete", skipq__complete_delete_sql},
};

const char *
skipq_sql_text(const char *name)
{
    if (name == NULL)
        return NULL;
    for (size_t i = 0; i < sizeof by_name / sizeof by_name[0]; i++)
        if (strcmp(by_name[i].name, name) == 0)
            return by_name[i].text;
    for (size_t i = 0; i < SKIPQ__STMT_COUNT; i++) /* then the registry's names */
        if (strcmp(skipq__stmts[i].name, name) == 0)
            return skipq__stmts[i].text;
    return NULL;
}
