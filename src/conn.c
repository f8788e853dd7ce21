/*
 * conn.c - connections: the database a command resolves, connection
 * strings shown without their secrets, and opening a libpq connection
 * that logs server notices through the hook. The schema (migrations,
 * the version check) is migrate.c's.
 */
#include "statements.h"

#include <ctype.h>
#include <libpqtypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            strchr("-._~", c) || (keep && strchr(keep, c))) {
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
           strstr(o->keyword, "password") != NULL || strstr(o->keyword, "secret") != NULL;
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
        in_authority = !ports || !hosts || count_items(ports) == 1 ||
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
                strcmp(o->keyword, "password") == 0 || strcmp(o->keyword, "dbname") == 0 ||
                (in_authority &&
                 (strcmp(o->keyword, "host") == 0 || strcmp(o->keyword, "port") == 0)))
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
        snprintf(what, sizeof what, "%.*s", (int)strcspn(errmsg, "\"\n"), errmsg);
        PQfreemem(errmsg);
        for (size_t n = strlen(what); n > 0 && (what[n - 1] == ' ' || what[n - 1] == ':');
             n--)
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
        rc = skipq__fail(err, SKIPQ_ERR_CONNECT, "could not connect to %s: %s",
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
    rc = skipq__stmt_exec(pg, false, SKIPQ__STMT_QUIET_NOTICES, 0, NULL, NULL, err);
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
    /* Statements unnamed, none prepared by name, as the worker's with the
     * same variable: what a transaction pooler needs (test
     * enqueue_with_unnamed_statements_prepares_nothing). */
    const char *unnamed = getenv("SKIPQ_UNNAMED_STATEMENTS");
    c->unnamed = unnamed && strcmp(unnamed, "1") == 0;
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

void
skipq__hostname(char *out, size_t n)
{
    const char *env = getenv("SKIPQ_HOSTNAME");

    out[0] = '\0';
    if (env && *env)
        snprintf(out, n, "%s", env);
    else if (gethostname(out, n - 1) != 0)
        snprintf(out, n, "unknown");
    out[n - 1] = '\0';
}
