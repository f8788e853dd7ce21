/*
 * testlib.c - fresh databases, waits with deadlines, and running the CLI
 * for integration tests. See testlib.h.
 */
#include "testlib.h"
#include "lock_keys.h"

#include <errno.h>
#include <netdb.h>
#include <strings.h>
#include <sys/socket.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char db_name[64];
static char db_url[1024];
static PGconn *db_conn;
static char admin_url[1024];

int64_t
tl_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int
tl_count_notifies(PGconn *l, int ms, const char *payload)
{
    int n = 0;
    int64_t end = tl_now_ms() + ms;
    for (;;) {
        PGnotify *nf;
        PQconsumeInput(l);
        while ((nf = PQnotifies(l))) {
            if (strcmp(nf->relname, "skipq") == 0 &&
                (!payload || strcmp(nf->extra, payload) == 0))
                n++;
            PQfreemem(nf);
        }
        int64_t left = end - tl_now_ms();
        if (left <= 0)
            return n;
        struct pollfd p = {PQsocket(l), POLLIN, 0};
        poll(&p, 1, (int)left);
    }
}

void
tl_idle_lock(PGconn *pg, const char *q, bool on)
{
    tl_exec(pg,
            "SELECT pg_advisory_%slock_shared(" SKIPQ__LOCK_CLASS_IDLE_S
            ", hashtext('%s'))",
            on ? "" : "un", q);
}

static const char *
base_url(void)
{
    const char *u = getenv("SKIPQ_TEST_PG");
    if (!u || !*u)
        HARNESS_FAIL("SKIPQ_TEST_PG is not set: run the suite with "
                     "scripts/test.sh, which starts a PostgreSQL for it");
    return u;
}

/* url with its database replaced by db */
static void
url_for(const char *db, char *out, size_t n)
{
    const char *u = base_url();
    const char *slash = strrchr(u, '/');
    size_t keep = slash ? (size_t)(slash - u) : strlen(u);
    snprintf(out, n, "%.*s/%s", (int)keep, u, db);
}

static void
drop_db(void)
{
    if (db_conn) {
        PQfinish(db_conn);
        db_conn = NULL;
    }
    if (!db_name[0] || getenv("SKIPQ_TEST_KEEP_DB"))
        return;
    PGconn *admin = PQconnectdb(admin_url);
    if (PQstatus(admin) == CONNECTION_OK) {
        char sql[160];
        snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", db_name);
        PQclear(PQexec(admin, sql));
    }
    PQfinish(admin);
}

static PGconn *
make_db(const char *template_db)
{
    url_for("postgres", admin_url, sizeof admin_url);
    PGconn *admin = PQconnectdb(admin_url);
    if (PQstatus(admin) != CONNECTION_OK)
        HARNESS_FAIL("could not connect to the test server: %s", PQerrorMessage(admin));
    snprintf(db_name, sizeof db_name, "t_%d_%ld", (int)getpid(),
             (long)(tl_now_ms() % 100000000));
    char sql[256];
    snprintf(sql, sizeof sql, "CREATE DATABASE %s%s%s", db_name,
             template_db ? " TEMPLATE " : "", template_db ? template_db : "");
    /* the template may be busy for a moment while another test clones it */
    for (int tries = 0;; tries++) {
        PGresult *res = PQexec(admin, sql);
        bool ok = PQresultStatus(res) == PGRES_COMMAND_OK;
        if (!ok && tries >= 100)
            HARNESS_FAIL("could not create %s: %s", db_name, PQresultErrorMessage(res));
        PQclear(res);
        if (ok)
            break;
        usleep(50000);
    }
    PQfinish(admin);
    atexit(drop_db);
    url_for(db_name, db_url, sizeof db_url);
    setenv("SKIPQ_DATABASE_URL", db_url, 1);
    unsetenv("SKIPQ_CONFIG");
    db_conn = tl_connect();
    return db_conn;
}

PGconn *
tl_db(void)
{
    return make_db("skipq_template");
}

PGconn *
tl_empty_db(void)
{
    return make_db(NULL);
}

const char *
tl_url(void)
{
    return db_url;
}

PGconn *
tl_connect(void)
{
    PGconn *pg = PQconnectdb(db_url);
    if (PQstatus(pg) != CONNECTION_OK)
        HARNESS_FAIL("could not connect to %s: %s", db_url, PQerrorMessage(pg));
    PQclear(PQexec(pg, "SET client_min_messages = warning"));
    return pg;
}

static PGresult *
vquery(PGconn *pg, const char *fmt, va_list ap)
{
    char *sql = NULL;
    if (vasprintf(&sql, fmt, ap) < 0)
        HARNESS_FAIL("out of memory");
    PGresult *res = PQexec(pg, sql);
    ExecStatusType st = PQresultStatus(res);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
        HARNESS_FAIL("SQL failed: %s\n  %s", PQresultErrorMessage(res), sql);
    free(sql);
    return res;
}

void
tl_exec(PGconn *pg, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    PQclear(vquery(pg, fmt, ap));
    va_end(ap);
}

int64_t
tl_int(PGconn *pg, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    PGresult *res = vquery(pg, fmt, ap);
    va_end(ap);
    if (PQntuples(res) < 1 || PQgetisnull(res, 0, 0))
        HARNESS_FAIL("query returned no value");
    int64_t v = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    PQclear(res);
    return v;
}

char *
tl_str(PGconn *pg, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    PGresult *res = vquery(pg, fmt, ap);
    va_end(ap);
    if (PQntuples(res) < 1)
        HARNESS_FAIL("query returned no row");
    char *s = PQgetisnull(res, 0, 0) ? NULL : strdup(PQgetvalue(res, 0, 0));
    PQclear(res);
    return s;
}

bool
wait_until(int ms, bool (*cond)(void *arg), void *arg)
{
    int64_t end = tl_now_ms() + ms;
    for (;;) {
        if (cond(arg))
            return true;
        if (tl_now_ms() >= end)
            return false;
        usleep(5000);
    }
}

bool
tl_wait_int(PGconn *pg, int ms, int64_t want, const char *fmt, ...)
{
    char *sql = NULL;
    va_list ap;
    va_start(ap, fmt);
    if (vasprintf(&sql, fmt, ap) < 0)
        HARNESS_FAIL("out of memory");
    va_end(ap);
    int64_t end = tl_now_ms() + ms, got = -1;
    for (;;) {
        got = tl_int(pg, "%s", sql);
        if (got == want || tl_now_ms() >= end)
            break;
        usleep(10000);
    }
    if (got != want)
        fprintf(stderr, "tl_wait_int: %s gave %" PRId64 ", wanted %" PRId64 "\n", sql, got,
                want);
    free(sql);
    return got == want;
}

const char *
tl_skipq(void)
{
    static char path[2048];
    const char *wrap = getenv("SKIPQ_CLI_WRAPPER");
    snprintf(path, sizeof path, "%s%s%s", wrap ? wrap : "", wrap ? " " : "",
             SKIPQ_BIN_PATH);
    return path;
}

/* Read a pipe to EOF into a malloc'd string. */
static void
drain_fds(int ofd, int efd, const char *in, char **out, char **err, int infd)
{
    size_t olen = 0, elen = 0, inlen = in ? strlen(in) : 0, inoff = 0;
    char *ob = calloc(1, 1), *eb = calloc(1, 1);
    struct pollfd p[3];
    bool oopen = true, eopen = true;

    if (infd >= 0 && inlen == 0) {
        close(infd);
        infd = -1;
    }
    while (oopen || eopen || infd >= 0) {
        int n = 0;
        int oi = -1, ei = -1, ii = -1;
        if (oopen) {
            p[n] = (struct pollfd){ofd, POLLIN, 0};
            oi = n++;
        }
        if (eopen) {
            p[n] = (struct pollfd){efd, POLLIN, 0};
            ei = n++;
        }
        if (infd >= 0) {
            p[n] = (struct pollfd){infd, POLLOUT, 0};
            ii = n++;
        }
        if (poll(p, (nfds_t)n, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        char buf[65536];
        if (oi >= 0 && p[oi].revents) {
            ssize_t r = read(ofd, buf, sizeof buf);
            if (r <= 0)
                oopen = false;
            else {
                ob = realloc(ob, olen + (size_t)r + 1);
                memcpy(ob + olen, buf, (size_t)r);
                olen += (size_t)r;
                ob[olen] = 0;
            }
        }
        if (ei >= 0 && p[ei].revents) {
            ssize_t r = read(efd, buf, sizeof buf);
            if (r <= 0)
                eopen = false;
            else {
                eb = realloc(eb, elen + (size_t)r + 1);
                memcpy(eb + elen, buf, (size_t)r);
                elen += (size_t)r;
                eb[elen] = 0;
            }
        }
        if (ii >= 0 && p[ii].revents) {
            ssize_t w = write(infd, in + inoff, inlen - inoff);
            if (w <= 0 || (inoff += (size_t)w) >= inlen) {
                close(infd);
                infd = -1;
            }
        }
    }
    if (out)
        *out = ob;
    else
        free(ob);
    if (err)
        *err = eb;
    else
        free(eb);
}

static int
vrun(const char *in, char **out, char **err, const char *prefix, const char *fmt,
     va_list ap)
{
    char *args = NULL, *cmd = NULL;
    if (vasprintf(&args, fmt, ap) < 0 || asprintf(&cmd, "%s%s", prefix, args) < 0)
        HARNESS_FAIL("out of memory");
    free(args);
    int pin[2], pout[2], perr[2];
    if (pipe(pin) || pipe(pout) || pipe(perr))
        HARNESS_FAIL("pipe: %s", strerror(errno));
    signal(SIGPIPE, SIG_IGN);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(pin[0], 0);
        dup2(pout[1], 1);
        dup2(perr[1], 2);
        /* close every pipe end but 0, 1 and 2: a daemon the command
         * starts (pg_ctl's postmaster) would otherwise keep a write end
         * open, and the drain below would wait for its EOF forever */
        close(pin[0]);
        close(pin[1]);
        close(pout[0]);
        close(pout[1]);
        close(perr[0]);
        close(perr[1]);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    close(pin[0]);
    close(pout[1]);
    close(perr[1]);
    drain_fds(pout[0], perr[0], in, out, err, pin[1]);
    close(pout[0]);
    close(perr[0]);
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    free(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

int
tl_run(const char *in, char **out, char **err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = vrun(in, out, err, "", fmt, ap);
    va_end(ap);
    return rc;
}

int
tl_skipq_run(const char *in, char **out, char **err, const char *fmt, ...)
{
    char prefix[2100];
    snprintf(prefix, sizeof prefix, "%s ", tl_skipq());
    va_list ap;
    va_start(ap, fmt);
    int rc = vrun(in, out, err, prefix, fmt, ap);
    va_end(ap);
    return rc;
}

/* Process groups started by tl_spawn: killed at exit, so a failing test
 * leaves nothing running. */
static pid_t spawned[64];
static int nspawned;

static void
kill_spawned(void)
{
    for (int i = 0; i < nspawned; i++)
        kill(-spawned[i], SIGKILL);
}

pid_t
tl_spawn(const char *log, const char *fmt, ...)
{
    char *cmd = NULL;
    va_list ap;
    va_start(ap, fmt);
    if (vasprintf(&cmd, fmt, ap) < 0)
        HARNESS_FAIL("out of memory");
    va_end(ap);
    pid_t pid = fork();
    if (pid == 0) {
        setpgid(0, 0);
        int fd = open(log ? log : "/dev/null", O_WRONLY | O_CREAT | O_APPEND, 0644);
        int nul = open("/dev/null", O_RDONLY);
        dup2(nul, 0);
        dup2(fd, 1);
        dup2(fd, 2);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    setpgid(pid, pid);
    free(cmd);
    if (nspawned == 0)
        atexit(kill_spawned);
    if (nspawned < 64)
        spawned[nspawned++] = pid;
    return pid;
}

void
tl_kill(pid_t pid, int sig)
{
    kill(-pid, sig);
}

int
tl_wait_pid(pid_t pid, int ms)
{
    int64_t end = tl_now_ms() + ms;
    for (;;) {
        int st = 0;
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid)
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        if (r < 0)
            return -1;
        if (tl_now_ms() >= end)
            return -1;
        usleep(5000);
    }
}

/* The names tl_tmpfile gave out: removed when the test passes. */
static char **tmpfiles;
static int ntmpfiles;

static void
remove_tmpfiles(void)
{
    for (int i = 0; i < ntmpfiles; i++) {
        unlink(tmpfiles[i]);
        free(tmpfiles[i]);
    }
    free(tmpfiles);
    tmpfiles = NULL;
    ntmpfiles = 0;
}

const char *
tl_tmpfile(const char *suffix)
{
    static char buf[8][256];
    static int i;
    char *p = buf[i++ % 8];
    static int n;
    snprintf(p, 256, "/tmp/skipq-test-%d-%d%s", (int)getpid(), n++, suffix ? suffix : "");
    char **more = realloc(tmpfiles, (size_t)(ntmpfiles + 1) * sizeof *tmpfiles);
    if (!more || !(more[ntmpfiles] = strdup(p)))
        HARNESS_FAIL("out of memory");
    tmpfiles = more;
    ntmpfiles++;
    harness_on_pass = remove_tmpfiles;
    return p;
}

void
tl_write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f)
        HARNESS_FAIL("could not write %s: %s", path, strerror(errno));
    fputs(text, f);
    fclose(f);
}

const char *
tl_write_config(const char *body)
{
    const char *path = tl_tmpfile(".yaml");
    tl_write_file(path, body);
    return path;
}

struct file_has {
    const char *path, *needle;
};

static bool
file_contains(void *arg)
{
    struct file_has *f = arg;
    char *out = NULL;
    bool found = false;
    FILE *fp = fopen(f->path, "r");
    if (!fp)
        return false;
    size_t cap = 0, len = 0;
    char buf[4096];
    size_t r;
    while ((r = fread(buf, 1, sizeof buf, fp)) > 0) {
        char *n = realloc(out, cap = len + r + 1);
        if (!n)
            break;
        out = n;
        memcpy(out + len, buf, r);
        len += r;
        out[len] = '\0';
    }
    fclose(fp);
    found = out && strstr(out, f->needle);
    free(out);
    return found;
}

bool
tl_wait_file_has(const char *path, const char *needle, int ms)
{
    struct file_has f = {path, needle};
    return wait_until(ms, file_contains, &f);
}

char *
tl_shq(const char *s)
{
    size_t n = 2;
    for (const char *p = s; *p; p++)
        n += *p == '\'' ? 4 : 1;
    char *out = malloc(n + 1), *o = out;
    if (!out)
        HARNESS_FAIL("out of memory");
    *o++ = '\'';
    for (const char *p = s; *p; p++) {
        if (*p == '\'') {
            memcpy(o, "'\\''", 4);
            o += 4;
        } else {
            *o++ = *p;
        }
    }
    *o++ = '\'';
    *o = '\0';
    return out;
}

char *
tl_url_as(const char *user)
{
    const char *url = tl_url(), *at = strchr(url, '@');
    char *out = NULL;

    ASSERT_TRUE(at != NULL);
    ASSERT_TRUE(asprintf(&out, "postgresql://%s%s", user, at) > 0);
    return out;
}

PGconn *
tl_connect_as(const char *user)
{
    char *url = tl_url_as(user);
    PGconn *c = PQconnectdb(url);

    if (PQstatus(c) != CONNECTION_OK)
        HARNESS_FAIL("connect as %s: %s", user, PQerrorMessage(c));
    free(url);
    return c;
}

void
tl_apply_roles(void)
{
    char *err = NULL;
    int st = tl_skipq_run(NULL, NULL, &err, "migrate --roles");

    if (st != 0)
        HARNESS_FAIL("migrate --roles: exit %d: %s", st, err);
    free(err);
}

void
tl_expect_denied(PGconn *c, const char *sql)
{
    PGresult *res = PQexec(c, sql);

    if (PQresultStatus(res) != PGRES_FATAL_ERROR ||
        !strstr(PQresultErrorMessage(res), "permission denied"))
        HARNESS_FAIL("%s: wanted permission denied, got %s %s", sql,
                     PQresStatus(PQresultStatus(res)), PQresultErrorMessage(res));
    PQclear(res);
}

/* ---- HTTP ------------------------------------------------------------ */

/* Connect to url's host and port; *path points at url's path. -1: none. */
static int
http_connect(const char *url, char *hostport, size_t hplen, const char **path)
{
    const char *hp = strncmp(url, "http://", 7) == 0 ? url + 7 : url;
    size_t n = strcspn(hp, "/");
    char host[128], port[16];

    snprintf(hostport, hplen, "%.*s", (int)n, hp);
    *path = hp[n] ? hp + n : "/";
    const char *colon = strrchr(hostport, ':');
    if (!colon)
        return -1;
    snprintf(port, sizeof port, "%s", colon + 1);
    if (hostport[0] == '[')
        snprintf(host, sizeof host, "%.*s", (int)(colon - hostport - 2), hostport + 1);
    else
        snprintf(host, sizeof host, "%.*s", (int)(colon - hostport), hostport);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai = NULL;
    if (getaddrinfo(host, port, &hints, &ai) != 0)
        return -1;
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
        close(fd);
        fd = -1;
    }
    freeaddrinfo(ai);
    return fd;
}

int
tl_http(const char *method, const char *url, const char *headers, const char *body,
        char **resp_headers, char **resp_body)
{
    char hostport[160], *req = NULL, *resp = NULL;
    const char *path;
    size_t blen = body ? strlen(body) : 0, len = 0, cap = 0;
    int fd = http_connect(url, hostport, sizeof hostport, &path), status = -1;

    if (resp_headers)
        *resp_headers = NULL;
    if (resp_body)
        *resp_body = NULL;
    if (fd < 0)
        return -1;
    signal(SIGPIPE, SIG_IGN); /* a server that answers early closes on us */
    bool has_host = headers && (strncasecmp(headers, "Host:", 5) == 0 ||
                                strcasestr(headers, "\r\nHost:") != NULL);
    /* a Content-Length among headers announces a body that is not sent */
    bool has_length = headers && (strncasecmp(headers, "Content-Length:", 15) == 0 ||
                                  strcasestr(headers, "\r\nContent-Length:") != NULL);
    char length[48] = "";
    if (!has_length)
        snprintf(length, sizeof length, "Content-Length: %zu\r\n", blen);
    int n = asprintf(&req, "%s %s HTTP/1.1\r\n%s%s%sConnection: close\r\n%s%s\r\n", method,
                     path, has_host ? "" : "Host: ", has_host ? "" : hostport,
                     has_host ? "" : "\r\n", length, headers ? headers : "");
    if (n < 0)
        HARNESS_FAIL("out of memory");
    bool sent = write(fd, req, (size_t)n) == n;
    for (size_t off = 0; sent && off < blen;) {
        ssize_t w = write(fd, body + off, blen - off);
        if (w <= 0)
            break; /* the server may answer (413) and close before reading it all */
        off += (size_t)w;
    }
    free(req);
    int64_t deadline = tl_now_ms() + 30000;
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int64_t left = deadline - tl_now_ms();
        if (left <= 0 || poll(&p, 1, (int)left) <= 0)
            break;
        if (len + 65536 + 1 > cap) {
            cap = (len + 65536 + 1) * 2;
            if (!(resp = realloc(resp, cap)))
                HARNESS_FAIL("out of memory");
        }
        ssize_t r = read(fd, resp + len, cap - len - 1);
        if (r <= 0)
            break;
        len += (size_t)r;
    }
    close(fd);
    if (!resp)
        return -1;
    resp[len] = '\0';
    char *end = strstr(resp, "\r\n\r\n");
    if (strncmp(resp, "HTTP/1.", 7) == 0 && end) {
        status = atoi(resp + 9);
        *end = '\0';
        if (resp_headers)
            *resp_headers = strdup(resp);
        if (resp_body)
            *resp_body = strdup(end + 4);
    }
    free(resp);
    return status;
}

pid_t
tl_serve(const char *env, const char *args, char *base, size_t baselen,
         const char **log_out)
{
    const char *log = tl_tmpfile(".log");
    char *text = NULL;

    /* exec: the signals the test sends reach serve, not a shell */
    pid_t pid = tl_spawn(log, "exec env %s %s serve --http 127.0.0.1:0 %s", env, tl_skipq(),
                         args);
    if (!tl_wait_file_has(log, "serving the API and dashboard on http://", 15000)) {
        tl_run(NULL, &text, NULL, "cat %s", log);
        HARNESS_FAIL("skipq serve did not start: %s", text ? text : "");
    }
    if (tl_run(NULL, &text, NULL, "cat %s", log) != 0)
        HARNESS_FAIL("could not read %s", log);
    const char *at = strstr(text, "http://127.0.0.1:");
    if (!at)
        HARNESS_FAIL("no address in: %s", text);
    snprintf(base, baselen, "%.*s", (int)strspn(at + 7, "0123456789.:") + 7, at);
    free(text);
    if (log_out)
        *log_out = log;
    return pid;
}
