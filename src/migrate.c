/*
 * migrate.c - the schema: applying the embedded migrations once each,
 * under the migration lock, re-applying sql/ (functions, views, roles),
 * and checking that the schema is one this binary can run against.
 */
#include "statements.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * COMMIT, and sure that it committed: a COMMIT can fail (a deferred
 * trigger) and leave the session idle as a good one does, and a COMMIT of
 * a transaction that had already failed reports ROLLBACK as a success.
 */
static skipq_rc
commit(PGconn *pg, skipq_error *err)
{
    PGresult *res = NULL;
    skipq_rc rc = SKIPQ_OK;

    skipq__stmt_run(pg, false, SKIPQ__STMT_COMMIT, NULL, 0, NULL, &res);

    if (PQresultStatus(res) != PGRES_COMMAND_OK)
        rc = skipq__db_fail(err, pg, res,
                            PQstatus(pg) == CONNECTION_BAD
                                ? "could not commit (the connection was lost: "
                                  "it may or may not have committed)"
                                : "could not commit");
    else if (strcmp(PQcmdStatus(res), "COMMIT") != 0)
        rc = skipq__fail(err, SKIPQ_ERR_DB,
                         "could not commit: the transaction was rolled back");
    PQclear(res);
    return rc;
}

typedef struct applied_row {
    int version;
    bool compatible;
    char name[64];
} applied_row;

/*
 * The migrations recorded in the database (none when the schema does not
 * exist yet). *rows is malloc'd; the caller frees it.
 */
static skipq_rc
read_applied(PGconn *pg, applied_row **rows, int *n, skipq_error *err)
{
    PGresult *res = NULL;
    skipq_rc rc = SKIPQ_OK;

    skipq__stmt_run(pg, false, SKIPQ__STMT_MIGRATIONS_EXIST, NULL, 0, NULL, &res);
    *rows = NULL;
    *n = 0;
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        rc = skipq__db_fail(err, pg, res, "could not look for skipq.schema_migrations");
        goto out;
    }
    if (PQgetvalue(res, 0, 0)[0] != 't')
        goto out; /* nothing applied yet */
    PQclear(res);
    skipq__stmt_run(pg, false, SKIPQ__STMT_MIGRATIONS_READ, NULL, 0, NULL, &res);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        rc = skipq__db_fail(err, pg, res, "could not read skipq.schema_migrations");
        goto out;
    }
    *n = PQntuples(res);
    *rows = calloc((size_t)*n + 1, sizeof **rows);
    if (!*rows) {
        rc = skipq__fail(err, SKIPQ_ERR_NOMEM, "out of memory");
        *n = 0;
        goto out;
    }
    for (int i = 0; i < *n; i++) {
        (*rows)[i].version = atoi(PQgetvalue(res, i, 0));
        snprintf((*rows)[i].name, sizeof(*rows)[i].name, "%s", PQgetvalue(res, i, 1));
        (*rows)[i].compatible = PQgetvalue(res, i, 2)[0] == 't';
    }
out:
    PQclear(res);
    return rc;
}

static const applied_row *
find_applied(const applied_row *rows, int n, int version)
{
    for (int i = 0; i < n; i++)
        if (rows[i].version == version)
            return &rows[i];
    return NULL;
}

static bool
known_version(int version)
{
    for (size_t i = 0; i < skipq__migration_count; i++)
        if (skipq__migrations[i].version == version)
            return true;
    return false;
}

/* Does the migration text mark itself compatible with older readers? */
bool
skipq__migration_compatible(const char *text)
{
    return strstr(text, "-- skipq: compatible") != NULL;
}

/*
 * The migration lock, then the workers' vacuum lock (worker_maint.c,
 * vacuum_tick): a VACUUM a worker runs does not give way to DDL as
 * autovacuum does, so a CREATE TRIGGER on skipq.jobs would wait for it,
 * and every claim and insert behind that. Waiting here instead, outside
 * the table's lock queue, lets them run on; and no worker starts a vacuum
 * until the migration commits.
 */
static skipq_rc
lock_migrations(PGconn *pg, skipq_error *err)
{
    PGresult *res = NULL;
    skipq_rc rc;

    /* within the caller's lock_timeout, else 10 s (statements.c) */
    if ((rc = skipq__stmt_exec(pg, false, SKIPQ__STMT_MIGRATE_LOCK_TIMEOUT, 0, NULL, NULL,
                               err)) != SKIPQ_OK ||
        (rc = skipq__stmt_exec(pg, false, SKIPQ__STMT_MIGRATE_LOCK, 0, NULL, NULL, err)) !=
            SKIPQ_OK)
        return rc;
    skipq__stmt_run(pg, false, SKIPQ__STMT_MIGRATE_TRY_VACUUM_LOCK, NULL, 0, NULL, &res);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        rc = skipq__db_fail(err, pg, res, "could not take the vacuum lock");
        PQclear(res);
        return rc;
    }
    bool got = PQgetvalue(res, 0, 0)[0] == 't';
    PQclear(res);
    if (got)
        return SKIPQ_OK;
    /* Say so when a worker holds it; another migrate run that is
     * committing (both its locks go at once, this one a moment later)
     * is not worth a line. */
    skipq__stmt_run(pg, false, SKIPQ__STMT_MIGRATE_VACUUM_HOLDER, NULL, 0, NULL, &res);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        rc = skipq__db_fail(err, pg, res, "could not read who holds the vacuum lock");
        PQclear(res);
        return rc;
    }
    if (PQgetvalue(res, 0, 0)[0] == 't')
        skipq__log(SKIPQ_LOG_INFO, "waiting for a worker's VACUUM of skipq.jobs to end");
    PQclear(res);
    return skipq__stmt_exec(pg, false, SKIPQ__STMT_MIGRATE_VACUUM_LOCK, 0, NULL, NULL, err);
}

/* A migration's transaction, which resolves names as skipq's functions
 * do: pg_catalog first, nothing planted in public (statements.c). */
static skipq_rc
begin_migration(PGconn *pg, skipq_error *err)
{
    return skipq__stmt_exec(pg, false, SKIPQ__STMT_MIGRATE_BEGIN, 0, NULL, NULL, err);
}

/* after a failure, which the caller reports: this one's own is moot */
static void
rollback(PGconn *pg)
{
    PGresult *res = NULL;

    skipq__stmt_run(pg, false, SKIPQ__STMT_ROLLBACK, NULL, 0, NULL, &res);
    PQclear(res);
}

/* Apply one migration in its own transaction, unless another migrate run
 * applied it while we waited for the lock. *did says whether we did. */
static skipq_rc
apply_one(PGconn *pg, const skipq__sql_file *m, bool *did, skipq_error *err)
{
    skipq_rc rc;
    applied_row *rows = NULL;
    int n = 0;
    char vbuf[16];
    const char *params[3];
    PGresult *res = NULL;

    *did = false;
    if ((rc = begin_migration(pg, err)) != SKIPQ_OK)
        return rc;
    if ((rc = lock_migrations(pg, err)) != SKIPQ_OK)
        goto out;
    if ((rc = read_applied(pg, &rows, &n, err)) != SKIPQ_OK)
        goto out;
    if (find_applied(rows, n, m->version))
        goto out;
    res = PQexec(pg, m->text);
    if (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK) {
        rc = skipq__db_fail(err, pg, res, "could not apply migration %s", m->name);
        goto out;
    }
    PQclear(res);
    snprintf(vbuf, sizeof vbuf, "%d", m->version);
    params[0] = vbuf;
    params[1] = m->name;
    params[2] = skipq__migration_compatible(m->text) ? "t" : "f";
    skipq__stmt_run(pg, false, SKIPQ__STMT_MIGRATION_RECORD, NULL, 3, params, &res);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        rc = skipq__db_fail(err, pg, res, "could not record migration %s", m->name);
        goto out;
    }
    *did = true;
out:
    PQclear(res);
    free(rows);
    if (rc == SKIPQ_OK)
        rc = commit(pg, err);
    else
        rollback(pg);
    if (rc != SKIPQ_OK)
        *did = false;
    return rc;
}

/* The functions and views: re-applied by every migrate run. */
static skipq_rc
apply_files(PGconn *pg, const skipq__sql_file *files, size_t n, skipq_error *err)
{
    skipq_rc rc;

    if ((rc = begin_migration(pg, err)) != SKIPQ_OK)
        return rc;
    rc = lock_migrations(pg, err);
    for (size_t i = 0; rc == SKIPQ_OK && i < n; i++) {
        PGresult *res = PQexec(pg, files[i].text);
        if (PQresultStatus(res) != PGRES_COMMAND_OK &&
            PQresultStatus(res) != PGRES_TUPLES_OK)
            rc = skipq__db_fail(err, pg, res, "could not apply sql/%s.sql", files[i].name);
        PQclear(res);
    }
    /* the worker's statements that change jobs, as checked functions
     * (statements.c), after the functions they call */
    if (rc == SKIPQ_OK && files == skipq__sql_files) {
        PGresult *res = NULL;
        skipq__stmt_run(pg, false, SKIPQ__STMT_WORKER_FUNCTIONS, NULL, 0, NULL, &res);
        if (PQresultStatus(res) != PGRES_COMMAND_OK)
            rc = skipq__db_fail(err, pg, res, "could not create the worker's functions");
        PQclear(res);
    }
    /* last: it says the functions above are this binary's (migrate --check) */
    if (rc == SKIPQ_OK && files == skipq__sql_files) {
        char sql[512];
        skipq__schema_digest_sql(sql, sizeof sql);
        rc = skipq__exec(pg, sql, err);
    }
    if (rc == SKIPQ_OK)
        return commit(pg, err);
    rollback(pg);
    return rc;
}

skipq_rc
skipq_migrate(skipq_conn *conn, int *applied_out, skipq_migrate_fn fn, void *userdata,
              skipq_error *err)
{
    skipq_rc rc = SKIPQ_OK;
    int applied = 0;

    for (size_t i = 0; i < skipq__migration_count; i++) {
        bool did = false;
        rc = apply_one(conn->pg, &skipq__migrations[i], &did, err);
        if (rc != SKIPQ_OK)
            break;
        if (did) {
            applied++;
            if (fn) {
                skipq_migration_status st = {skipq__migrations[i].version,
                                             skipq__migrations[i].name, 1, 1};
                fn(&st, userdata);
            }
        }
    }
    if (rc == SKIPQ_OK)
        rc = apply_files(conn->pg, skipq__sql_files, skipq__sql_file_count, err);
    if (rc != SKIPQ_OK && err && strcmp(err->sqlstate, "55P03") == 0) {
        char was[sizeof err->message];
        snprintf(was, sizeof was, "%s", err->message);
        skipq__fail(err, rc,
                    "%s: gave up waiting for a lock another session holds "
                    "(an open transaction on skipq.jobs, or another migrate); "
                    "nothing was changed: retry once it ends, or raise lock_timeout",
                    was);
        snprintf(err->sqlstate, sizeof err->sqlstate, "55P03");
    }
    if (applied_out)
        *applied_out = applied;
    return rc;
}

skipq_rc
skipq_migrate_roles(skipq_conn *conn, skipq_error *err)
{
    return apply_files(conn->pg, skipq__roles_files, skipq__roles_file_count, err);
}

skipq_rc
skipq_migrate_status(skipq_conn *conn, skipq_migrate_fn fn, void *userdata,
                     skipq_error *err)
{
    applied_row *rows = NULL;
    int n = 0;
    skipq_rc rc = read_applied(conn->pg, &rows, &n, err);

    if (rc != SKIPQ_OK)
        return rc;
    for (size_t i = 0; i < skipq__migration_count; i++) {
        const skipq__sql_file *m = &skipq__migrations[i];
        skipq_migration_status st = {m->version, m->name,
                                     find_applied(rows, n, m->version) != NULL, 1};
        fn(&st, userdata);
    }
    for (int i = 0; i < n; i++) {
        if (known_version(rows[i].version))
            continue;
        skipq_migration_status st = {rows[i].version, rows[i].name, 1, 0};
        fn(&st, userdata);
    }
    free(rows);
    return SKIPQ_OK;
}

skipq_rc
skipq_schema_check(skipq_conn *conn, skipq_error *err)
{
    applied_row *rows = NULL;
    int n = 0;
    skipq_rc rc = read_applied(conn->pg, &rows, &n, err);

    if (rc != SKIPQ_OK)
        return rc;
    if (n == 0) {
        rc = skipq__fail(err, SKIPQ_ERR_SCHEMA,
                         "the skipq schema is not installed in this database: "
                         "run skipq migrate");
        goto out;
    }
    for (size_t i = 0; i < skipq__migration_count; i++) {
        if (!find_applied(rows, n, skipq__migrations[i].version)) {
            rc = skipq__fail(err, SKIPQ_ERR_SCHEMA,
                             "migration %s is not applied: run skipq migrate",
                             skipq__migrations[i].name);
            goto out;
        }
    }
    for (int i = 0; i < n; i++) {
        if (known_version(rows[i].version))
            continue;
        if (rows[i].compatible) {
            skipq__log(SKIPQ_LOG_WARN,
                       "the schema has migration %d \"%s\" that this skipq (%s) "
                       "does not know; it is marked compatible, continuing",
                       rows[i].version, rows[i].name, SKIPQ_VERSION);
            continue;
        }
        rc = skipq__fail(err, SKIPQ_ERR_SCHEMA,
                         "this skipq (%s) is older than the schema: migration "
                         "%d \"%s\" is unknown to it; upgrade skipq",
                         SKIPQ_VERSION, rows[i].version, rows[i].name);
        goto out;
    }
out:
    free(rows);
    return rc;
}

skipq_rc
skipq_schema_current(skipq_conn *conn, skipq_error *err)
{
    PGresult *res = NULL;
    char want[20];
    skipq_rc rc = skipq_schema_check(conn, err);

    if (rc != SKIPQ_OK)
        return rc;
    skipq__schema_digest(want, sizeof want);
    skipq__stmt_run(conn->pg, false, SKIPQ__STMT_SCHEMA_DIGEST, NULL, 0, NULL, &res);
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        rc = skipq__db_fail(err, conn->pg, res, "could not read skipq.schema_digest()");
    else if (PQntuples(res) == 0 || !strstr(PQgetvalue(res, 0, 0), want))
        rc = skipq__fail(err, SKIPQ_ERR_SCHEMA,
                         "the schema's functions are not this skipq's (%s): %s; run "
                         "skipq migrate, or apply skipq migrate --print-sql",
                         SKIPQ_VERSION,
                         PQntuples(res) == 0 ? "they carry no digest"
                                             : "they were created by another version");
    PQclear(res);
    return rc;
}
