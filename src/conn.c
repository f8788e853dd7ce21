/*
 * conn.c - connections, the database a command resolves, and the schema:
 * applying the embedded migrations once each and checking that the schema
 * is one this binary can run against.
 */
#include "internal.h"

#include <ctype.h>
#include <libpqtypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- connection strings, shown without their secrets -------------------- */

/*
 * A growing string; on allocation failure ok turns false and stays so,
 * and the caller gives up at the end.
 */
typedef struct strbuf {
    char *s;
    size_t len, cap;
    bool ok;
} strbuf;

static void
sb_putn(strbuf *b, const char *p, size_t n)
{
    if (!b->ok)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = (b->len + n + 1) * 2;
        char *s = realloc(b->s, cap);
        if (!s) {
            b->ok = false;
            return;
        }
        b->s = s;
        b->cap = cap;
    }
    memcpy(b->s + b->len, p, n);
    b->len += n;
    b->s[b->len] = '\0';
}

static void
sb_puts(strbuf *b, const char *p)
{
    sb_putn(b, p, strlen(p));
}

/* Percent-encode all but RFC 3986's unreserved characters (and keep,
 * when given, the characters in keep). */
static void
sb_put_encoded(strbuf *b, const char *p, const char *keep)
{
    static const char hex[] = "0123456789ABCDEF";

    for (; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
            (c >= '0' && c <= '9') || strchr("-._~", c) ||
            (keep && strchr(keep, c))) {
            sb_putn(b, p, 1);
        } else {
            char e[3] = {'%', hex[c >> 4], hex[c & 0xF]};
            sb_putn(b, e, 3);
        }
    }
}

/* A key/value value, quoted when libpq would need it to be. */
static void
sb_put_quoted(strbuf *b, const char *v)
{
    bool plain = *v != '\0';

    for (const char *p = v; *p && plain; p++)
        if (isspace((unsigned char)*p) || *p == '\'' || *p == '\\')
            plain = false;
    if (plain) {
        sb_puts(b, v);
        return;
    }
    sb_putn(b, "'", 1);
    for (const char *p = v; *p; p++) {
        if (*p == '\'' || *p == '\\')
            sb_putn(b, "\\", 1);
        sb_putn(b, p, 1);
    }
    sb_putn(b, "'", 1);
}

/*
 * Options whose value is a secret: libpq marks them with dispchar "*"
 * (password, sslpassword, and whatever later versions add); the names
 * are a second net for a libpq that does not.
 */
static bool
secret_option(const PQconninfoOption *o)
{
    return (o->dispchar && o->dispchar[0] == '*') ||
           strstr(o->keyword, "password") != NULL ||
           strstr(o->keyword, "secret") != NULL;
}

/* dbname may itself be a connection string (libpq expands it in some
 * calls): it is shown masked too. */
static bool
nested_conninfo(const PQconninfoOption *o)
{
    return strcmp(o->keyword, "dbname") == 0 &&
           (strstr(o->val, "://") != NULL || strchr(o->val, '=') != NULL);
}

static const char *
uri_scheme(const char *url)
{
    if (strncmp(url, "postgresql://", 13) == 0)
        return "postgresql://";
    if (strncmp(url, "postgres://", 11) == 0)
        return "postgres://";
    return NULL;
}

/*
 * libpq takes a URI's user and password up to the first '@' before the
 * first '/'. A password with an unencoded '/' or '@' in it is then read
 * as host, port or database name ("u:pa/ss@h/db": host "u", port "pa",
 * dbname "ss@h/db"): any '@' after that point, or a second '@' before
 * it, means the text around it may be a password, whatever libpq made of
 * it.
 */
static bool
uri_ambiguous(const char *url, const char *scheme)
{
    const char *auth = url + strlen(scheme);
    size_t alen = strcspn(auth, "/");
    const char *at = memchr(auth, '@', alen);
    const char *path = auth + alen;
    size_t plen = strcspn(path, "?");

    if (at && memchr(at + 1, '@', alen - (size_t)(at + 1 - auth)))
        return true;
    return memchr(path, '@', plen) != NULL;
}

static char *mask_conninfo(const char *url, int depth);

static void
sb_put_value(strbuf *b, const PQconninfoOption *o, bool uri, int depth)
{
    if (secret_option(o)) {
        sb_puts(b, "****");
    } else if (nested_conninfo(o)) {
        char *inner = mask_conninfo(o->val, depth + 1);
        if (!inner) {
            b->ok = false;
            return;
        }
        if (uri)
            sb_put_encoded(b, inner, NULL);
        else
            sb_put_quoted(b, inner);
        free(inner);
    } else if (uri) {
        sb_put_encoded(b, o->val, NULL);
    } else {
        sb_put_quoted(b, o->val);
    }
}

static const char *
opt_val(const PQconninfoOption *opts, const char *keyword)
{
    for (const PQconninfoOption *o = opts; o->keyword; o++)
        if (strcmp(o->keyword, keyword) == 0)
            return o->val;
    return NULL;
}

static size_t
count_items(const char *list)
{
    size_t n = 1;
    for (; *list; list++)
        n += *list == ',';
    return n;
}

/* host[:port] items of a URI's authority: IPv6 addresses in brackets,
 * socket directories percent-encoded. */
static void
sb_put_hosts(strbuf *b, const char *hosts, const char *ports)
{
    size_t nports = ports ? count_items(ports) : 0;
    const char *h = hosts ? hosts : "", *p = ports;

    for (size_t i = 0;; i++) {
        size_t hn = strcspn(h, ",");
        char *one = strndup(h, hn);
        if (!one) {
            b->ok = false;
            return;
        }
        if (i)
            sb_putn(b, ",", 1);
        if (strchr(one, ':')) {
            sb_putn(b, "[", 1);
            sb_put_encoded(b, one, ":");
            sb_putn(b, "]", 1);
        } else {
            sb_put_encoded(b, one, NULL);
        }
        free(one);
        if (p && *p != '\0') {
            size_t pn = strcspn(p, ",");
            char *port = strndup(p, pn);
            if (!port) {
                b->ok = false;
                return;
            }
            if (pn) {
                sb_putn(b, ":", 1);
                sb_put_encoded(b, port, NULL);
            }
            free(port);
            if (nports > 1)
                p += pn + (p[pn] == ',');
        }
        h += hn;
        if (*h != ',')
            break;
        h++;
    }
}

/*
 * The connection string rebuilt from what libpq parsed, every secret as
 * "****". A URI stays a URI (user, host, port and database in their
 * places when that says the same thing; the rest as parameters), a
 * key/value string stays one, in libpq's order of the keywords. NULL when
 * libpq cannot parse it or when out of memory.
 */
static char *
rebuild(const char *url, const char *scheme, bool hide_userinfo, int depth)
{
    char *errmsg = NULL;
    PQconninfoOption *opts = PQconninfoParse(url, &errmsg);
    strbuf b = {.ok = true};

    PQfreemem(errmsg); /* may quote the string itself: never shown */
    if (!opts)
        return NULL;
    sb_puts(&b, "");
    if (scheme) {
        const char *user = opt_val(opts, "user");
        const char *hosts = opt_val(opts, "host");
        const char *ports = opt_val(opts, "port");
        const char *db = opt_val(opts, "dbname");
        bool secret_set = false, in_authority, first = true;

        for (const PQconninfoOption *o = opts; o->keyword; o++)
            if (o->val && strcmp(o->keyword, "password") == 0)
                secret_set = true;
        /* one port for several hosts, or as many ports as hosts, fit
         * host:port items; anything else goes as parameters as given */
        in_authority =
            !ports || !hosts || count_items(ports) == 1 ||
            count_items(ports) == count_items(hosts);
        if (hosts && hosts[0] == '\0')
            in_authority = false;
        sb_puts(&b, scheme);
        if (hide_userinfo) {
            sb_puts(&b, "****@");
        } else {
            if (user)
                sb_put_encoded(&b, user, NULL);
            if (secret_set)
                sb_puts(&b, ":****");
            if (user || secret_set)
                sb_putn(&b, "@", 1);
        }
        if (in_authority && hosts)
            sb_put_hosts(&b, hosts, ports);
        else if (in_authority && ports)
            sb_put_hosts(&b, "", ports);
        if (db) {
            const PQconninfoOption *dbo = opts;
            while (strcmp(dbo->keyword, "dbname") != 0)
                dbo++;
            sb_putn(&b, "/", 1);
            sb_put_value(&b, dbo, true, depth);
        }
        for (const PQconninfoOption *o = opts; o->keyword; o++) {
            if (!o->val || strcmp(o->keyword, "user") == 0 ||
                strcmp(o->keyword, "password") == 0 ||
                strcmp(o->keyword, "dbname") == 0 ||
                (in_authority && (strcmp(o->keyword, "host") == 0 ||
                                  strcmp(o->keyword, "port") == 0)))
                continue;
            sb_putn(&b, first ? "?" : "&", 1);
            sb_puts(&b, o->keyword);
            sb_putn(&b, "=", 1);
            sb_put_value(&b, o, true, depth);
            first = false;
        }
    } else {
        bool first = true;
        for (const PQconninfoOption *o = opts; o->keyword; o++) {
            if (!o->val)
                continue;
            if (!first)
                sb_putn(&b, " ", 1);
            sb_puts(&b, o->keyword);
            sb_putn(&b, "=", 1);
            sb_put_value(&b, o, false, depth);
            first = false;
        }
    }
    PQconninfoFree(opts);
    if (!b.ok) {
        free(b.s);
        return NULL;
    }
    return b.s;
}

#define UNPARSABLE "(a connection string libpq cannot parse; not shown)"

static char *
mask_conninfo(const char *url, int depth)
{
    const char *scheme = uri_scheme(url);
    char *out;

    if (depth > 2)
        return strdup("****");
    if (scheme && uri_ambiguous(url, scheme)) {
        /* show what follows the last '@' of the part before the query:
         * the host and database the user meant; the rest is hidden */
        size_t pre = strcspn(url, "?");
        const char *at = url + pre;
        char *tail = NULL;

        while (at > url && *at != '@')
            at--;
        if (asprintf(&tail, "%s%s", scheme, at + 1) < 0)
            return NULL;
        out = rebuild(tail, scheme, true, depth);
        free(tail);
        return out ? out : strdup(UNPARSABLE);
    }
    out = rebuild(url, scheme, false, depth);
    if (!out) /* out of memory, or libpq could not parse it */
        return strdup(UNPARSABLE);
    if (!*out && depth == 0) { /* "": libpq's defaults and PG* variables */
        free(out);
        return strdup("(PG* environment)");
    }
    return out;
}

char *
skipq_mask_url(const char *url)
{
    if (!url)
        return strdup("(PG* environment)");
    return mask_conninfo(url, 0);
}

const char *
skipq_resolve_database(const char *explicit_url, const skipq_config *cfg)
{
    const char *env = getenv("SKIPQ_DATABASE_URL");

    if (explicit_url && *explicit_url)
        return explicit_url;
    if (env && *env)
        return env;
    if (cfg && skipq_config_database(cfg))
        return skipq_config_database(cfg);
    return NULL;
}

bool
skipq__types_init(PGconn *pg)
{
    return PQinitTypes(pg) != 0;
}

/*
 * Refuse, before libpq sees it, a string whose errors would print its
 * text: libpq's parse errors quote the string or a piece of it ("invalid
 * URI ...: \"postgresql://u:secret@[::1\""), and a URI whose password
 * has an unencoded '/' or '@' makes libpq report a piece of the password
 * as a port or a host name.
 */
static skipq_rc
check_conninfo(const char *url, skipq_error *err)
{
    const char *scheme;
    char *errmsg = NULL, *masked;
    PQconninfoOption *opts;
    skipq_rc rc;

    if (!url || !*url)
        return SKIPQ_OK;
    opts = PQconninfoParse(url, &errmsg);
    if (!opts) {
        char what[256];
        if (!errmsg)
            return skipq__fail(err, SKIPQ_ERR_NOMEM, "out of memory");
        /* libpq's words up to the first quote: what follows it is ours */
        snprintf(what, sizeof what, "%.*s", (int)strcspn(errmsg, "\"\n"),
                 errmsg);
        PQfreemem(errmsg);
        for (size_t n = strlen(what);
             n > 0 && (what[n - 1] == ' ' || what[n - 1] == ':'); n--)
            what[n - 1] = '\0';
        return skipq__fail(err, SKIPQ_ERR_CONNECT,
                           "could not connect: libpq cannot parse the "
                           "connection string (%s); it is not shown, as it "
                           "may hold a password",
                           what);
    }
    PQconninfoFree(opts);
    scheme = uri_scheme(url);
    if (!scheme || !uri_ambiguous(url, scheme))
        return SKIPQ_OK;
    masked = skipq_mask_url(url);
    rc = skipq__fail(err, SKIPQ_ERR_CONNECT,
                     "could not connect to %s: the URI has an \"@\" that "
                     "libpq would not read as the end of the user name and "
                     "password; percent-encode \"@\", \"/\" and \":\" in "
                     "a password as %%40, %%2F and %%3A",
                     masked ? masked : "the database");
    free(masked);
    return rc;
}

/*
 * Server messages that are not errors (a WARNING from a trigger, "the
 * connection will be terminated" before a shutdown) go to the log hook,
 * as one line that names them as the server's. libpq's default printed
 * them raw on stderr, escape sequences and all (test
 * server_warnings_go_through_the_log).
 */
static void
server_notice(void *arg, const PGresult *res)
{
    const char *sev = PQresultErrorField(res, PG_DIAG_SEVERITY);
    const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
    (void)arg;
    skipq__log(SKIPQ_LOG_WARN, "server %s: %s", sev ? sev : "notice",
               msg ? msg : PQresultErrorMessage(res));
}

skipq_rc
skipq__connect(const char *url, PGconn **out, skipq_error *err)
{
    skipq_rc rc = check_conninfo(url, err);
    PGconn *pg;

    *out = NULL;
    if (rc != SKIPQ_OK)
        return rc;
    pg = PQconnectdb(url ? url : "");
    if (!pg)
        return skipq__fail(err, SKIPQ_ERR_NOMEM, "out of memory");
    if (PQstatus(pg) != CONNECTION_OK) {
        char *masked = skipq_mask_url(url);
        char msg[384];
        snprintf(msg, sizeof msg, "%s", PQerrorMessage(pg));
        for (char *p = msg; *p; p++)
            if (*p == '\n')
                *p = p[1] ? ' ' : '\0';
        rc = skipq__fail(err, SKIPQ_ERR_CONNECT,
                         "could not connect to %s: %s",
                         masked ? masked : "the database", msg);
        free(masked);
        PQfinish(pg);
        return rc;
    }
    PQsetNoticeReceiver(pg, server_notice, NULL);
    if (!skipq__types_init(pg)) {
        PQfinish(pg);
        return skipq__fail(err, SKIPQ_ERR_NOMEM, "out of memory");
    }
    /* our own NOTICEs (IF NOT EXISTS ...) are noise for callers */
    rc = skipq__exec(pg, "SET client_min_messages = warning", err);
    if (rc != SKIPQ_OK) {
        PQfinish(pg);
        return rc;
    }
    *out = pg;
    return SKIPQ_OK;
}

skipq_rc
skipq__exec(PGconn *pg, const char *sql, skipq_error *err)
{
    PGresult *res = PQexec(pg, sql);
    ExecStatusType st = PQresultStatus(res);
    skipq_rc rc = SKIPQ_OK;

    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
        rc = skipq__db_fail(err, pg, res, "could not run \"%.60s\"", sql);
    PQclear(res);
    return rc;
}

skipq_rc
skipq_conn_open(const char *url, skipq_conn **out, skipq_error *err)
{
    skipq_conn *c = calloc(1, sizeof *c);
    skipq_rc rc;

    *out = NULL;
    if (!c)
        return skipq__fail(err, SKIPQ_ERR_NOMEM, "out of memory");
    rc = skipq__connect(url, &c->pg, err);
    if (rc != SKIPQ_OK) {
        free(c);
        return rc;
    }
    c->types_ready = true;
    *out = c;
    return SKIPQ_OK;
}

void
skipq_conn_close(skipq_conn *conn)
{
    if (!conn)
        return;
    PQfinish(conn->pg);
    free(conn);
}

PGconn *
skipq_conn_pg(skipq_conn *conn)
{
    return conn ? conn->pg : NULL;
}

/* ---- migrations -------------------------------------------------------- */

/*
 * COMMIT, and sure that it committed: a COMMIT can fail (a deferred
 * trigger) and leave the session idle as a good one does, and a COMMIT of
 * a transaction that had already failed reports ROLLBACK as a success.
 */
static skipq_rc
commit(PGconn *pg, skipq_error *err)
{
    PGresult *res = PQexec(pg, "COMMIT");
    skipq_rc rc = SKIPQ_OK;

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
    PGresult *res = PQexec(pg,
        "SELECT pg_catalog.to_regclass('skipq.schema_migrations') IS NOT NULL");
    skipq_rc rc = SKIPQ_OK;

    *rows = NULL;
    *n = 0;
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        rc = skipq__db_fail(err, pg, res, "could not look for skipq.schema_migrations");
        goto out;
    }
    if (PQgetvalue(res, 0, 0)[0] != 't')
        goto out; /* nothing applied yet */
    PQclear(res);
    res = PQexec(pg, "SELECT version, name, compatible FROM skipq.schema_migrations "
                     "ORDER BY version");
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
        snprintf((*rows)[i].name, sizeof (*rows)[i].name, "%s", PQgetvalue(res, i, 1));
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
static bool
migration_compatible(const char *text)
{
    return strstr(text, "-- skipq: compatible") != NULL;
}

/*
 * The migration lock, then the workers' vacuum lock (worker.c,
 * vacuum_tick): a VACUUM a worker runs does not give way to DDL as
 * autovacuum does, so a CREATE TRIGGER on skipq.jobs would wait for it,
 * and every claim and insert behind that. Waiting here instead, outside
 * the table's lock queue, lets them run on; and no worker starts a vacuum
 * until the migration commits.
 */
static skipq_rc
lock_migrations(PGconn *pg, skipq_error *err)
{
    char sql[512];
    /*
     * Every lock the migration waits for is waited for within a bound:
     * the caller's lock_timeout, else 10 s. DDL on skipq.jobs queues
     * behind any open transaction that touched the table, and every
     * claim and insert then queues behind the DDL: a migrate stuck behind
     * an operator's forgotten transaction stalled the whole queue (test
     * migrate_behind_a_row_lock_gives_up).
     */
    skipq_rc rc0 = skipq__exec(pg,
        "SELECT pg_catalog.set_config('lock_timeout', CASE"
        " WHEN pg_catalog.current_setting('lock_timeout') OPERATOR(pg_catalog.=) '0'"
        " THEN '10s' ELSE pg_catalog.current_setting('lock_timeout') END, true)", err);
    if (rc0 != SKIPQ_OK)
        return rc0;
    snprintf(sql, sizeof sql, "SELECT pg_advisory_xact_lock(%d, %d)", SKIPQ__LOCK_CLASS,
             SKIPQ__LOCK_MIGRATE);
    skipq_rc rc = skipq__exec(pg, sql, err);
    if (rc != SKIPQ_OK)
        return rc;
    snprintf(sql, sizeof sql, "SELECT pg_try_advisory_xact_lock(%d, %d)", SKIPQ__LOCK_CLASS,
             SKIPQ__LOCK_VACUUM);
    PGresult *res = PQexec(pg, sql);
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
    snprintf(sql, sizeof sql,
             "SELECT EXISTS (SELECT FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
             " WHERE l.locktype = 'advisory' AND l.classid = %d AND l.objid = %d"
             " AND l.objsubid = 2 AND l.granted AND l.database = (SELECT oid FROM pg_database"
             " WHERE datname = current_database())"
             " AND a.application_name = 'skipq maintenance')",
             SKIPQ__LOCK_CLASS, SKIPQ__LOCK_VACUUM);
    res = PQexec(pg, sql);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        rc = skipq__db_fail(err, pg, res, "could not read who holds the vacuum lock");
        PQclear(res);
        return rc;
    }
    if (PQgetvalue(res, 0, 0)[0] == 't')
        skipq__log(SKIPQ_LOG_INFO, "waiting for a worker's VACUUM of skipq.jobs to end");
    PQclear(res);
    snprintf(sql, sizeof sql, "SELECT pg_advisory_xact_lock(%d, %d)", SKIPQ__LOCK_CLASS,
             SKIPQ__LOCK_VACUUM);
    return skipq__exec(pg, sql, err);
}

/*
 * A migration's transaction resolves names as skipq's functions do
 * (sql/functions.sql): what it creates (views, column defaults, checks,
 * the trigger's condition) is bound to what each name means when it is
 * created, and that must never be a function or operator another role
 * planted in public, which would also run at once with the rights of
 * whoever migrates, often a superuser. Everything skipq creates is named
 * by schema. SET LOCAL ends with the transaction: the caller's connection
 * keeps its own search_path.
 */
static const char begin_migration_sql[] =
    "BEGIN; SET LOCAL search_path = pg_catalog, pg_temp";

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
    if ((rc = skipq__exec(pg, begin_migration_sql, err)) != SKIPQ_OK)
        return rc;
    if ((rc = lock_migrations(pg, err)) != SKIPQ_OK)
        goto out;
    if ((rc = read_applied(pg, &rows, &n, err)) != SKIPQ_OK)
        goto out;
    if (find_applied(rows, n, m->version))
        goto out;
    res = PQexec(pg, m->text);
    if (PQresultStatus(res) != PGRES_COMMAND_OK &&
        PQresultStatus(res) != PGRES_TUPLES_OK) {
        rc = skipq__db_fail(err, pg, res, "could not apply migration %s", m->name);
        goto out;
    }
    PQclear(res);
    snprintf(vbuf, sizeof vbuf, "%d", m->version);
    params[0] = vbuf;
    params[1] = m->name;
    params[2] = migration_compatible(m->text) ? "t" : "f";
    res = PQexecParams(pg,
        "INSERT INTO skipq.schema_migrations (version, name, compatible) "
        "VALUES ($1, $2, $3)", 3, NULL, params, NULL, NULL, 0);
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
        PQclear(PQexec(pg, "ROLLBACK"));
    if (rc != SKIPQ_OK)
        *did = false;
    return rc;
}

/* The functions and views: re-applied by every migrate run. */
static skipq_rc
apply_files(PGconn *pg, const skipq__sql_file *files, size_t n,
            skipq_error *err)
{
    skipq_rc rc;

    if ((rc = skipq__exec(pg, begin_migration_sql, err)) != SKIPQ_OK)
        return rc;
    rc = lock_migrations(pg, err);
    for (size_t i = 0; rc == SKIPQ_OK && i < n; i++) {
        PGresult *res = PQexec(pg, files[i].text);
        if (PQresultStatus(res) != PGRES_COMMAND_OK &&
            PQresultStatus(res) != PGRES_TUPLES_OK)
            rc = skipq__db_fail(err, pg, res, "could not apply sql/%s.sql",
                                files[i].name);
        PQclear(res);
    }
    /* the worker's statements that change jobs, as checked functions
     * (worker.c), after the functions they call */
    if (rc == SKIPQ_OK && files == skipq__sql_files) {
        PGresult *res = PQexec(pg, skipq__worker_functions_sql);
        if (PQresultStatus(res) != PGRES_COMMAND_OK)
            rc = skipq__db_fail(err, pg, res, "could not create the worker's functions");
        PQclear(res);
    }
    if (rc == SKIPQ_OK)
        return commit(pg, err);
    PQclear(PQexec(pg, "ROLLBACK"));
    return rc;
}

skipq_rc
skipq_migrate(skipq_conn *conn, int *applied_out, skipq_migrate_fn fn,
              void *userdata, skipq_error *err)
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
        rc = apply_files(conn->pg, skipq__sql_files, skipq__sql_file_count,
                         err);
    if (rc != SKIPQ_OK && err && strcmp(err->sqlstate, "55P03") == 0) {
        char was[sizeof err->message];
        snprintf(was, sizeof was, "%s", err->message);
        skipq__fail(err, rc, "%s: gave up waiting for a lock another session holds "
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
skipq__apply_roles(skipq_conn *conn, skipq_error *err)
{
    return apply_files(conn->pg, skipq__roles_files, skipq__roles_file_count,
                       err);
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
