/*
 * test_worker_http.c - `skipq worker --http`: its probes, its /metrics
 * page and its systemd notifications, through the binary, against a
 * real PostgreSQL.
 *
 * metrics_match_the_table_after_a_drain: a few hundred jobs (successes,
 *   final failures, retries, one cancelled while running, one timed out)
 *   drain while /metrics is scraped over and over; every page passes a
 *   strict check of the text format (below), and at the end the counters
 *   equal the table: outcomes by status, retried = the extra attempts,
 *   one run and one pickup observed per attempt.
 * readyz_follows_the_database: /readyz turns 503 when PostgreSQL stops
 *   and 200 once it is back (a private cluster: restarting the shared one
 *   would break the tests next to us), each within 10 s; /healthz stays
 *   200 throughout, since the loop keeps turning.
 * healthz_fails_while_the_loop_is_stuck: the loop_stall failpoint stops
 *   the main loop after its first completion: /healthz goes from 200 to
 *   503, and the systemd watchdog pings stop.
 * bad_http_address_is_refused: a malformed address exits 2, a port in use
 *   exits 1, each with a clear message and no row changed.
 * sd_notify_protocol: READY=1, WATCHDOG=1, RELOADING=1 and READY=1 around
 *   a SIGHUP, STOPPING=1 on SIGTERM, read from a real AF_UNIX datagram
 *   socket in the abstract namespace; across the reload the counters go
 *   on from where the old worker left them.
 * format_checker_refuses_bad_pages: the checker above fails each kind of
 *   fault it is there to find.
 */
#include "../handlers/faultlib.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

/* ---- a tiny HTTP client ---------------------------------------------------- */

struct reply {
    int status;
    char *headers; /* the whole head */
    char *body;
};

static void
reply_free(struct reply *r)
{
    free(r->headers);
    free(r->body);
    memset(r, 0, sizeof *r);
}

/* GET path from 127.0.0.1:port with HTTP/1.0 (the server closes when it
 * is done); status 0 when it could not be read within 10 s. */
static struct reply
http_get(int port, const char *path)
{
    struct reply r = {0};
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    char req[256], *buf = NULL;
    size_t len = 0, cap = 0;
    int64_t end = tl_now_ms() + 10000;

    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        if (fd >= 0)
            close(fd);
        return r;
    }
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.0\r\nHost: test\r\n\r\n", path);
    if (write(fd, req, (size_t)n) != n) {
        close(fd);
        return r;
    }
    for (;;) {
        struct pollfd p = {fd, POLLIN, 0};
        int64_t left = end - tl_now_ms();
        if (left <= 0 || poll(&p, 1, (int)left) <= 0)
            break;
        if (len + 4096 + 1 > cap) {
            cap = (len + 4096 + 1) * 2;
            buf = realloc(buf, cap);
            if (!buf)
                HARNESS_FAIL("out of memory");
        }
        ssize_t got = read(fd, buf + len, 4096);
        if (got <= 0) {
            if (got == 0) { /* the whole reply */
                buf[len] = '\0';
                char *sep = strstr(buf, "\r\n\r\n");
                if (sep && sscanf(buf, "HTTP/1.%*d %d", &r.status) == 1) {
                    r.headers = strndup(buf, (size_t)(sep - buf));
                    r.body = strdup(sep + 4);
                }
            }
            break;
        }
        len += (size_t)got;
    }
    close(fd);
    free(buf);
    return r;
}

static int
get_status(int port, const char *path)
{
    struct reply r = http_get(port, path);
    int st = r.status;
    reply_free(&r);
    return st;
}

/* The port the worker logged ("serving ... on http://127.0.0.1:PORT"). */
static int
served_port(const char *log)
{
    if (!tl_wait_file_has(log, "serving /healthz, /readyz and /metrics on http://",
                          20000)) {
        fl_dump("worker", log);
        HARNESS_FAIL("the worker did not say where it serves");
    }
    char *out = NULL;
    tl_run(NULL, &out, NULL, "grep -o 'on http://127.0.0.1:[0-9]*' %s | head -1", log);
    const char *colon = out ? strrchr(out, ':') : NULL;
    int port = colon ? atoi(colon + 1) : 0;
    free(out);
    if (port <= 0)
        HARNESS_FAIL("no port in the worker's log");
    return port;
}

struct want_status {
    int port;
    const char *path;
    int status;
};

static bool
has_status(void *arg)
{
    struct want_status *w = arg;
    return get_status(w->port, w->path) == w->status;
}

/* ---- a strict checker of the Prometheus text format 0.0.4 ----------------- */

#define MAX_FAMILIES 64

struct family {
    char name[128];
    char type[16];
    bool help, typed, closed; /* closed: another family began after it */
    int nsamples;
};

struct sample {
    char name[128];
    char labels[512]; /* a="x",b="y", as unescaped; le apart */
    char le[32];      /* "" when none */
    double value;
};

struct page {
    struct family fam[MAX_FAMILIES];
    int nfam;
    struct sample *s;
    int ns, cap;
};

static void
page_free(struct page *p)
{
    free(p->s);
    memset(p, 0, sizeof *p);
}

static bool
is_name(const char *s, size_t n)
{
    if (n == 0 || !(isalpha((unsigned char)s[0]) || s[0] == '_' || s[0] == ':'))
        return false;
    for (size_t i = 1; i < n; i++)
        if (!(isalnum((unsigned char)s[i]) || s[i] == '_' || s[i] == ':'))
            return false;
    return true;
}

static struct family *
find_family(struct page *p, const char *name)
{
    for (int i = 0; i < p->nfam; i++)
        if (strcmp(p->fam[i].name, name) == 0)
            return &p->fam[i];
    return NULL;
}

/* The family a sample belongs to: its own name, or for a histogram the
 * name without _bucket, _sum or _count (*suffix says which). */
static struct family *
family_of(struct page *p, const char *name, const char **suffix)
{
    static const char *const sfx[] = {"_bucket", "_sum", "_count"};
    struct family *f = find_family(p, name);

    *suffix = "";
    if (f && strcmp(f->type, "histogram") != 0)
        return f;
    for (size_t i = 0; i < 3; i++) {
        size_t n = strlen(name), k = strlen(sfx[i]);
        if (n > k && strcmp(name + n - k, sfx[i]) == 0) {
            char base[128];
            snprintf(base, sizeof base, "%.*s", (int)(n - k), name);
            f = find_family(p, base);
            if (f && strcmp(f->type, "histogram") == 0) {
                *suffix = sfx[i];
                return f;
            }
        }
    }
    return NULL;
}

/* {a="x",...} at *pp: names valid, each label once, values with only the
 * escapes \\ \" \n and no raw newline. */
static void
parse_labels(const char **pp, struct sample *sm, int line)
{
    const char *p = *pp;
    char seen[16][64];
    int nseen = 0;
    size_t o = 0;

    sm->labels[0] = sm->le[0] = '\0';
    if (*p != '{')
        return;
    p++;
    while (*p != '}') {
        const char *n0 = p;
        while (isalnum((unsigned char)*p) || *p == '_')
            p++;
        if (!is_name(n0, (size_t)(p - n0)) || p[0] != '=' || p[1] != '"')
            HARNESS_FAIL("line %d: bad label at \"%.20s\"", line, n0);
        char lname[64];
        snprintf(lname, sizeof lname, "%.*s", (int)(p - n0), n0);
        for (int i = 0; i < nseen; i++)
            if (strcmp(seen[i], lname) == 0)
                HARNESS_FAIL("line %d: label %s twice", line, lname);
        if (nseen < 16)
            snprintf(seen[nseen++], sizeof seen[0], "%s", lname);
        p += 2;
        char val[256];
        size_t v = 0;
        while (*p != '"') {
            if (*p == '\0' || *p == '\n')
                HARNESS_FAIL("line %d: unterminated label value", line);
            if (*p == '\\') {
                p++;
                if (*p != '\\' && *p != '"' && *p != 'n')
                    HARNESS_FAIL("line %d: bad escape in a label value", line);
            }
            if (v + 1 < sizeof val)
                val[v++] = *p == 'n' && p[-1] == '\\' ? '\n' : *p;
            p++;
        }
        val[v] = '\0';
        p++;
        if (strcmp(lname, "le") == 0)
            snprintf(sm->le, sizeof sm->le, "%s", val);
        else if (o < sizeof sm->labels)
            o += (size_t)snprintf(sm->labels + o, sizeof sm->labels - o, "%s=\"%s\",",
                                  lname, val);
        if (*p == ',')
            p++;
        else if (*p != '}')
            HARNESS_FAIL("line %d: expected , or } after a label", line);
    }
    *pp = p + 1;
}

static double
parse_value(const char *s, int line)
{
    if (strcmp(s, "+Inf") == 0)
        return INFINITY;
    if (strcmp(s, "-Inf") == 0)
        return -INFINITY;
    char *end = NULL;
    double v = strtod(s, &end);
    if (!*s || !end || *end || isspace((unsigned char)*s))
        HARNESS_FAIL("line %d: bad value \"%s\"", line, s);
    return v;
}

/* One "# HELP" or "# TYPE" line: once each per family, before its samples. */
static void
parse_comment(struct page *p, char *ln, int line, struct family **cur)
{
    bool help = strncmp(ln, "# HELP ", 7) == 0, type = strncmp(ln, "# TYPE ", 7) == 0;
    if (!help && !type)
        return; /* any other comment is allowed */
    char *name = ln + 7, *sp = strchr(name, ' ');
    if (!sp || !is_name(name, (size_t)(sp - name)))
        HARNESS_FAIL("line %d: bad metric name in \"%s\"", line, ln);
    *sp = '\0';
    struct family *f = find_family(p, name);
    if (!f) {
        if (p->nfam == MAX_FAMILIES)
            HARNESS_FAIL("too many families");
        f = &p->fam[p->nfam++];
        memset(f, 0, sizeof *f);
        snprintf(f->name, sizeof f->name, "%s", name);
    }
    if (f->closed || f->nsamples > 0)
        HARNESS_FAIL("line %d: %s's metadata after its samples", line, name);
    if ((help && f->help) || (type && f->typed))
        HARNESS_FAIL("line %d: a second %s line for %s", line, help ? "HELP" : "TYPE",
                     name);
    if (help) {
        f->help = true;
    } else {
        const char *t = sp + 1;
        if (strcmp(t, "counter") && strcmp(t, "gauge") && strcmp(t, "histogram") &&
            strcmp(t, "summary") && strcmp(t, "untyped"))
            HARNESS_FAIL("line %d: unknown type \"%s\"", line, t);
        f->typed = true;
        snprintf(f->type, sizeof f->type, "%s", t);
    }
    if (*cur && *cur != f)
        (*cur)->closed = true;
    *cur = f;
}

/* A sample line: a declared family's, contiguous with the rest of it, the
 * name right for the type (a counter's ends in _total), not seen before. */
static void
parse_sample(struct page *p, const char *ln, int line, struct family **cur)
{
    const char *q = ln;
    while (*q && *q != '{' && *q != ' ')
        q++;
    if (!is_name(ln, (size_t)(q - ln)))
        HARNESS_FAIL("line %d: bad sample name in \"%s\"", line, ln);
    if (p->ns == p->cap) {
        p->cap = p->cap ? p->cap * 2 : 256;
        p->s = realloc(p->s, (size_t)p->cap * sizeof *p->s);
        if (!p->s)
            HARNESS_FAIL("out of memory");
    }
    struct sample *sm = &p->s[p->ns];
    snprintf(sm->name, sizeof sm->name, "%.*s", (int)(q - ln), ln);
    parse_labels(&q, sm, line);
    if (*q != ' ')
        HARNESS_FAIL("line %d: no space before the value", line);
    sm->value = parse_value(q + 1, line);
    const char *suffix;
    struct family *f = family_of(p, sm->name, &suffix);
    if (!f || !f->help || !f->typed)
        HARNESS_FAIL("line %d: %s has no HELP and TYPE before it", line, sm->name);
    if (f != *cur || f->closed)
        HARNESS_FAIL("line %d: %s's samples are not together", line, sm->name);
    if (strcmp(f->type, "counter") == 0) {
        size_t n = strlen(f->name);
        if (n < 6 || strcmp(f->name + n - 6, "_total") != 0)
            HARNESS_FAIL("line %d: counter %s does not end in _total", line, f->name);
        if (sm->value < 0)
            HARNESS_FAIL("line %d: a negative counter", line);
    }
    if ((strcmp(suffix, "_bucket") == 0) != (sm->le[0] != '\0'))
        HARNESS_FAIL("line %d: le belongs on a histogram's buckets only", line);
    for (int i = 0; i < p->ns; i++)
        if (strcmp(p->s[i].name, sm->name) == 0 &&
            strcmp(p->s[i].labels, sm->labels) == 0 && strcmp(p->s[i].le, sm->le) == 0)
            HARNESS_FAIL("line %d: %s{%s} twice", line, sm->name, sm->labels);
    f->nsamples++;
    p->ns++;
}

/* Per label set of histogram f: buckets in increasing le, cumulative,
 * the last +Inf and equal to _count; a _sum. */
static void
check_histogram(const struct page *p, const struct family *f)
{
    char bucket[160], count[160], sum[160];
    snprintf(bucket, sizeof bucket, "%s_bucket", f->name);
    snprintf(count, sizeof count, "%s_count", f->name);
    snprintf(sum, sizeof sum, "%s_sum", f->name);
    for (int i = 0; i < p->ns; i++) {
        if (strcmp(p->s[i].name, count) != 0)
            continue;
        const char *set = p->s[i].labels;
        double last_le = -INFINITY, last = 0;
        int nb = 0, nsum = 0;
        for (int j = 0; j < p->ns; j++) {
            const struct sample *b = &p->s[j];
            if (strcmp(b->labels, set) != 0)
                continue;
            nsum += strcmp(b->name, sum) == 0;
            if (strcmp(b->name, bucket) != 0)
                continue;
            double le = parse_value(b->le, 0);
            if (le <= last_le || b->value < last)
                HARNESS_FAIL("%s{%s}: bucket le=%s out of order or not cumulative", f->name,
                             set, b->le);
            last_le = le;
            last = b->value;
            nb++;
        }
        if (nb == 0 || !isinf(last_le) || last != p->s[i].value || nsum != 1)
            HARNESS_FAIL("%s{%s}: %d buckets, last le %g = %g, _count %g, %d _sum", f->name,
                         set, nb, last_le, last, p->s[i].value, nsum);
    }
}

/* Parse and check a whole exposition; fails the test on any fault. */
static void
parse_page(const char *text, struct page *p)
{
    char *copy = strdup(text), *save = NULL;
    struct family *cur = NULL;
    int line = 0;

    memset(p, 0, sizeof *p);
    if (!copy)
        HARNESS_FAIL("out of memory");
    if (!*text || text[strlen(text) - 1] != '\n')
        HARNESS_FAIL("the page does not end in a newline");
    for (char *ln = strtok_r(copy, "\n", &save); ln; ln = strtok_r(NULL, "\n", &save)) {
        line++;
        if (ln[0] == '#')
            parse_comment(p, ln, line, &cur);
        else
            parse_sample(p, ln, line, &cur);
    }
    for (int i = 0; i < p->nfam; i++) {
        if (!p->fam[i].help || !p->fam[i].typed)
            HARNESS_FAIL("%s lacks its HELP or TYPE", p->fam[i].name);
        if (strcmp(p->fam[i].type, "histogram") == 0)
            check_histogram(p, &p->fam[i]);
    }
    free(copy);
}

/* The sum of name's samples whose labels contain each of the NULL-ended
 * needles ("outcome=\"failed\""). */
static double
page_sum(const struct page *p, const char *name, ...)
{
    double total = 0;
    for (int i = 0; i < p->ns; i++) {
        if (strcmp(p->s[i].name, name) != 0)
            continue;
        va_list ap;
        va_start(ap, name);
        bool all = true;
        for (const char *n = va_arg(ap, const char *); n; n = va_arg(ap, const char *))
            all = all && strstr(p->s[i].labels, n) != NULL;
        va_end(ap);
        if (all)
            total += p->s[i].value;
    }
    return total;
}

static bool
page_has_family(const struct page *p, const char *name)
{
    for (int i = 0; i < p->nfam; i++)
        if (strcmp(p->fam[i].name, name) == 0)
            return true;
    return false;
}

/* GET /metrics, check the headers and the whole page. */
static void
scrape(int port, struct page *p)
{
    struct reply r = http_get(port, "/metrics");
    if (r.status != 200)
        HARNESS_FAIL("/metrics answered %d", r.status);
    ASSERT_CONTAINS(r.headers, "Content-Type: text/plain; version=0.0.4; charset=utf-8");
    parse_page(r.body, p);
    reply_free(&r);
}

/* The checker itself refuses what it must. */
TEST(format_checker_refuses_bad_pages)
{
    static const char *const good = "# HELP a_total x\n# TYPE a_total counter\n"
                                    "a_total{k=\"q\\\"\\\\\\n\"} 1\n"
                                    "# HELP h y\n# TYPE h histogram\n"
                                    "h_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\n"
                                    "h_sum 3.5\nh_count 2\n";
    struct page p;
    parse_page(good, &p);
    ASSERT_EQ((int)page_sum(&p, "a_total", "k=\"q\"\\\n", NULL), 1);
    ASSERT_EQ((int)page_sum(&p, "h_count", NULL), 2);
    page_free(&p);
    /* each of these must fail in a child (HARNESS_FAIL exits) */
    static const char *const bad[] = {
        "# TYPE a_total counter\na_total 1\n",                              /* no HELP */
        "# HELP a_total x\n# TYPE a_total counter\na_total 1\na_total 2\n", /* twice */
        "# HELP a x\n# TYPE a counter\na 1\n",                              /* _total */
        "# HELP a_total x\n# TYPE a_total counter\na_total{k=\"\\t\"} 1\n", /* escape */
        "# HELP h y\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\n"
        "h_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n", /* not cumulative */
        "# HELP h y\n# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\n",
        "# HELP g x\n# TYPE g gauge\ng 1\n# HELP g2 x\n# TYPE g2 gauge\ng2 1\ng 2\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        fflush(NULL);
        pid_t pid = fork();
        if (pid == 0) {
            freopen("/dev/null", "w", stderr);
            struct page q;
            parse_page(bad[i], &q);
            _exit(0);
        }
        int st = tl_wait_pid(pid, 10000);
        if (st == 0)
            HARNESS_FAIL("the checker passed bad page %zu", i);
    }
}

/* ---- the worker under test ------------------------------------------------- */

/* `env skipq worker --config cfg --http 127.0.0.1:0 args`, its log in
 * *log; returns its pid and the port it serves in *port. */
static pid_t
start_worker(const char *env, const char *cfg, const char *args, const char **log,
             int *port)
{
    *log = fl_log();
    pid_t pid = fl_spawn(*log, "%s exec %s worker --config %s --http 127.0.0.1:0 %s",
                         env ? env : "", tl_skipq(), cfg, args ? args : "");
    *port = served_port(*log);
    return pid;
}

static void
stop_worker(pid_t pid, const char *log)
{
    tl_kill(pid, SIGTERM);
    int st = fl_wait_exit(pid, 30000);
    if (st != 0) {
        fl_dump("worker", log);
        HARNESS_FAIL("the worker exited with %d", st);
    }
}

struct drained {
    PGconn *pg;
};

static bool
all_final(void *arg)
{
    PGconn *pg = arg;
    return tl_int(
               pg,
               "SELECT count(*) FROM skipq.jobs WHERE status IN ('queued', 'running')") ==
           0;
}

/* The counters as the table says they must be, compared with a page. */
struct expect {
    int64_t succeeded, failed, cancelled, retried, attempts;
};

static bool
page_matches(const struct page *p, const struct expect *e)
{
    return page_sum(p, "skipq_jobs_processed_total", "outcome=\"succeeded\"", NULL) ==
               (double)e->succeeded &&
           page_sum(p, "skipq_jobs_processed_total", "outcome=\"failed\"", NULL) ==
               (double)e->failed &&
           page_sum(p, "skipq_jobs_processed_total", "outcome=\"cancelled\"", NULL) ==
               (double)e->cancelled &&
           page_sum(p, "skipq_jobs_processed_total", "outcome=\"retried\"", NULL) ==
               (double)e->retried &&
           page_sum(p, "skipq_process_running_jobs", NULL) == 0 &&
           page_sum(p, "skipq_job_run_seconds_count", NULL) == (double)e->attempts &&
           page_sum(p, "skipq_job_pickup_delay_seconds_count", NULL) == (double)e->attempts;
}

TEST(metrics_match_the_table_after_a_drain)
{
    fl_deadline(240);
    PGconn *pg = tl_db();
    int n_ok = fl_sanitized() ? 120 : 240, n_bad = 30, n_flaky = 30;
    /* retries at once, so the drain does not wait out a backoff */
    const char *cfg = fl_file(".yaml",
                              "worker:\n  concurrency: 8\n  poll_interval: 100ms\n"
                              "retry:\n  strategy: fixed\n  base: 0s\n  jitter: 0\n");
    tl_exec(pg, "SELECT skipq.enqueue('sleeper', '{}', timeout => '300 ms',"
                " max_attempts => 1)");
    int64_t cancel_id = tl_int(pg, "SELECT skipq.enqueue('sleeper', '{\"cancel\": 1}')");
    tl_exec(pg,
            "SELECT skipq.enqueue('ok', jsonb_build_object('i', g))"
            " FROM generate_series(1, %d) g",
            n_ok);
    tl_exec(pg,
            "SELECT skipq.enqueue('bad', max_attempts => 2) FROM generate_series(1, %d)",
            n_bad);
    tl_exec(pg,
            "SELECT skipq.enqueue('fla\"ky\\', max_attempts => 3)"
            " FROM generate_series(1, %d)",
            n_flaky);
    const char *log;
    int port;
    pid_t pid = start_worker(NULL, cfg,
                             "--handler ok=true --handler 'bad=echo no >&2; exit 3'"
                             " --handler 'fla\"ky\\=test \"$SKIPQ_JOB_ATTEMPT\" -ge 2'"
                             " --handler 'sleeper=sleep 30'",
                             &log, &port);

    /* scrape while it drains: every page must be well-formed */
    int scrapes = 0;
    bool cancelled = false;
    int64_t end = tl_now_ms() + 120000;
    while (!all_final(pg)) {
        if (tl_now_ms() > end) {
            fl_dump("worker", log);
            HARNESS_FAIL("the jobs did not drain");
        }
        if (!cancelled && tl_int(pg,
                                 "SELECT count(*) FROM skipq.jobs WHERE id = %lld"
                                 " AND status = 'running'",
                                 (long long)cancel_id) == 1) {
            ASSERT_EQ(tl_skipq_run(NULL, NULL, NULL, "jobs cancel %lld",
                                   (long long)cancel_id),
                      0);
            cancelled = true;
        }
        struct page p;
        scrape(port, &p);
        page_free(&p);
        scrapes++;
        usleep(10000);
    }
    ASSERT_TRUE(cancelled);

    /* the counts the table says; the counters catch up within moments
     * (a count follows its commit) */
    struct expect e = {
        .succeeded = tl_int(pg,
                            "SELECT count(*) FROM skipq.jobs WHERE status = 'succeeded'"),
        .failed = tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE status = 'failed'"),
        .cancelled = tl_int(pg,
                            "SELECT count(*) FROM skipq.jobs WHERE status = 'cancelled'"),
        .retried = tl_int(pg, "SELECT sum(attempts - 1) FROM skipq.jobs"),
        .attempts = tl_int(pg, "SELECT sum(attempts) FROM skipq.jobs"),
    };
    ASSERT_EQ(e.succeeded, n_ok + n_flaky);
    ASSERT_EQ(e.failed, n_bad + 1);
    ASSERT_EQ(e.cancelled, 1);
    ASSERT_EQ(e.retried, n_bad + n_flaky);
    struct page p = {0};
    end = tl_now_ms() + 10000;
    for (;;) {
        scrape(port, &p);
        if (page_matches(&p, &e))
            break;
        if (tl_now_ms() > end)
            HARNESS_FAIL(
                "the counters do not match the table: succeeded %g/%lld, failed "
                "%g/%lld, cancelled %g/%lld, retried %g/%lld, runs %g/%lld",
                page_sum(&p, "skipq_jobs_processed_total", "outcome=\"succeeded\"", NULL),
                (long long)e.succeeded,
                page_sum(&p, "skipq_jobs_processed_total", "outcome=\"failed\"", NULL),
                (long long)e.failed,
                page_sum(&p, "skipq_jobs_processed_total", "outcome=\"cancelled\"", NULL),
                (long long)e.cancelled,
                page_sum(&p, "skipq_jobs_processed_total", "outcome=\"retried\"", NULL),
                (long long)e.retried, page_sum(&p, "skipq_job_run_seconds_count", NULL),
                (long long)e.attempts);
        page_free(&p);
        usleep(50000);
    }
    /* per kind, with the label escaped as the format says */
    ASSERT_EQ((int)page_sum(&p, "skipq_jobs_processed_total", "kind=\"fla\"ky\\\"",
                            "outcome=\"retried\"", NULL),
              n_flaky);
    ASSERT_EQ((int)page_sum(&p, "skipq_jobs_processed_total", "kind=\"bad\"",
                            "outcome=\"failed\"", NULL),
              n_bad);
    ASSERT_EQ((int)page_sum(&p, "skipq_jobs_timed_out_total", "kind=\"sleeper\"", NULL), 1);
    ASSERT_EQ((int)page_sum(&p, "skipq_jobs_processed_total", "kind=\"sleeper\"",
                            "outcome=\"failed\"", NULL),
              1);
    ASSERT_EQ((int)page_sum(&p, "skipq_process_running_jobs", NULL), 0);
    ASSERT_EQ((int)page_sum(&p, "skipq_process_free_slots", NULL), 8);
    ASSERT_EQ((int)page_sum(&p, "skipq_process_connected", NULL), 1);
    /* the database-wide families follow, under their own names */
    ASSERT_TRUE(page_has_family(&p, "skipq_jobs"));
    ASSERT_TRUE(page_has_family(&p, "skipq_oldest_runnable_age_seconds"));
    ASSERT_EQ((int)page_sum(&p, "skipq_up", NULL), 1);
    page_free(&p);
    printf("%d pages scraped during the drain, each well-formed\n", scrapes);
    stop_worker(pid, log);
}

/* `pg.sh stop|start` of the private cluster, then how long /readyz took
 * to answer want->status (at most 10 s) once it returned. */
static int64_t
server_then_readyz(const char *action, struct want_status *want, const char *log)
{
    ASSERT_EQ(tl_run(NULL, NULL, NULL, "%s/tests/pg.sh %s %s%s >/dev/null",
                     SKIPQ_TEST_SOURCE_DIR, action, fl_pgdir,
                     strcmp(action, "stop") == 0 ? " fast" : ""),
              0);
    int64_t done = tl_now_ms();
    if (!wait_until(10000, has_status, want)) {
        fl_dump("worker", log);
        HARNESS_FAIL("/readyz did not answer %d within 10 s of the server's %s",
                     want->status, action);
    }
    return tl_now_ms() - done;
}

TEST(readyz_follows_the_database)
{
    fl_deadline(180);
    fl_private_cluster();
    PGconn *pg = tl_db();
    const char *cfg = fl_worker_config(2, "200ms", NULL, NULL);
    const char *log;
    int port;
    pid_t pid = start_worker(NULL, cfg, "--handler ok=true", &log, &port);
    struct want_status ready = {port, "/readyz", 200}, down = {port, "/readyz", 503};
    ASSERT_TRUE(wait_until(20000, has_status, &ready));
    ASSERT_EQ(get_status(port, "/healthz"), 200);

    int64_t t_down = server_then_readyz("stop", &down, log);
    struct reply r = http_get(port, "/readyz");
    ASSERT_CONTAINS(r.body, "not connected to the database");
    reply_free(&r);
    /* the loop goes on turning while it reconnects: alive, not ready */
    ASSERT_EQ(get_status(port, "/healthz"), 200);
    r = http_get(port, "/metrics");
    ASSERT_EQ(r.status, 200);
    ASSERT_CONTAINS(r.body, "\nskipq_process_connected 0\n");
    ASSERT_CONTAINS(r.body, "\nskipq_up 0\n");
    reply_free(&r);
    int64_t t_up = server_then_readyz("start", &ready, log);
    printf("readyz: 503 %lld ms after the server stopped, 200 %lld ms after it was back\n",
           (long long)t_down, (long long)t_up);
    fl_reconnect(pg, 10000);
    tl_exec(pg, "SELECT skipq.enqueue('ok')");
    ASSERT_TRUE(tl_wait_int(pg, 10000, 1,
                            "SELECT count(*) FROM skipq.jobs WHERE status = 'succeeded'"));
    stop_worker(pid, log);
}

/* An AF_UNIX datagram socket in the abstract namespace, as systemd's
 * NOTIFY_SOCKET would be; its name ("@...") in name. */
static int
notify_socket(char *name, size_t n)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(name, n, "@skipq-test-notify-%d-%lld", (int)getpid(), (long long)tl_now_ms());
    size_t len = strlen(name);
    memcpy(sa.sun_path, name, len);
    sa.sun_path[0] = '\0';
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa,
                       (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len)) != 0)
        HARNESS_FAIL("could not bind %s", name);
    return fd;
}

/* The next message on fd within ms (static storage), or NULL. */
static const char *
next_message(int fd, int ms)
{
    static char buf[4096];
    struct pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, ms) <= 0)
        return NULL;
    ssize_t n = recv(fd, buf, sizeof buf - 1, 0);
    if (n < 0)
        return NULL;
    buf[n] = '\0';
    return buf;
}

/* Read messages until one starts with want; how many WATCHDOG=1 came
 * before it. Fails after ms. */
static int
expect_message(int fd, const char *want, int ms)
{
    int64_t end = tl_now_ms() + ms;
    int pings = 0;
    for (;;) {
        int64_t left = end - tl_now_ms();
        const char *m = left > 0 ? next_message(fd, (int)left) : NULL;
        if (!m)
            HARNESS_FAIL("no \"%s\" within %d ms", want, ms);
        if (strncmp(m, want, strlen(want)) == 0)
            return pings;
        pings += strcmp(m, "WATCHDOG=1") == 0;
    }
}

TEST(healthz_fails_while_the_loop_is_stuck)
{
    fl_deadline(120);
    PGconn *pg = tl_db();
    char name[108], env[256];
    int fd = notify_socket(name, sizeof name);
    snprintf(env, sizeof env,
             "SKIPQ_FAILPOINT=loop_stall NOTIFY_SOCKET=%s WATCHDOG_USEC=400000", name);
    const char *cfg = fl_worker_config(2, "100ms", NULL, NULL);
    const char *log;
    int port;
    pid_t pid = start_worker(env, cfg, "--handler ok=true", &log, &port);
    struct want_status healthy = {port, "/healthz", 200}, stuck = {port, "/healthz", 503};
    ASSERT_TRUE(wait_until(20000, has_status, &healthy));
    expect_message(fd, "READY=1", 20000);
    ASSERT_TRUE(expect_message(fd, "WATCHDOG=1", 5000) == 0);

    /* the first completion stalls the loop */
    tl_exec(pg, "SELECT skipq.enqueue('ok')");
    ASSERT_TRUE(tl_wait_int(pg, 20000, 1,
                            "SELECT count(*) FROM skipq.jobs WHERE status = 'succeeded'"));
    ASSERT_TRUE(tl_wait_file_has(log, "failpoint loop_stall", 10000));
    int64_t t0 = tl_now_ms();
    if (!wait_until(20000, has_status, &stuck)) {
        struct reply last = http_get(port, "/healthz");
        fl_dump("worker", log);
        HARNESS_FAIL("/healthz did not turn 503 while the loop is stuck: %d %s",
                     last.status, last.body ? last.body : "(no reply)");
    }
    int64_t took = tl_now_ms() - t0;
    struct reply r = http_get(port, "/healthz");
    ASSERT_CONTAINS(r.body, "the main loop last turned");
    reply_free(&r);
    /* the bound is max(3 x min(poll, heartbeat), 10 s) = 10 s */
    ASSERT_TRUE(took > 8000);
    printf("healthz: 503 %lld ms into the stall\n", (long long)took);
    /* no watchdog ping while unhealthy: drain what was sent before, then
     * a whole second of silence (pings come every 200 ms when healthy) */
    while (next_message(fd, 0))
        ;
    const char *m = next_message(fd, 1000);
    if (m)
        HARNESS_FAIL("a message while the loop is stuck: \"%s\"", m);
    stop_worker(pid, log);
    close(fd);
}

/* skipq_jobs_processed_total{outcome="succeeded"} reaches want. */
struct want_count {
    int port;
    int want;
};

static bool
succeeded_counted(void *arg)
{
    struct want_count *w = arg;
    struct page p;
    scrape(w->port, &p);
    bool ok = page_sum(&p, "skipq_jobs_processed_total", "outcome=\"succeeded\"", NULL) ==
              w->want;
    page_free(&p);
    return ok;
}

TEST(sd_notify_protocol)
{
    fl_deadline(120);
    PGconn *pg = tl_db();
    char name[108], env[256];
    int fd = notify_socket(name, sizeof name);
    snprintf(env, sizeof env, "NOTIFY_SOCKET=%s WATCHDOG_USEC=400000", name);
    const char *cfg = fl_worker_config(2, "100ms", NULL, NULL);
    const char *log;
    int port;
    pid_t pid = start_worker(env, cfg, "--handler ok=true", &log, &port);
    const char *m = next_message(fd, 20000);
    if (!m)
        HARNESS_FAIL("no message from the worker");
    ASSERT_CONTAINS(m, "READY=1"); /* the first: nothing before the start */
    ASSERT_EQ(get_status(port, "/readyz"), 200);
    /* pings every WATCHDOG_USEC / 2 = 200 ms: at least 3 in a second */
    int64_t t0 = tl_now_ms();
    int pings = 0;
    while (tl_now_ms() - t0 < 1000)
        if ((m = next_message(fd, 100)) && strcmp(m, "WATCHDOG=1") == 0)
            pings++;
    ASSERT_TRUE(pings >= 3);
    tl_exec(pg, "SELECT skipq.enqueue('ok')");
    struct want_count one = {port, 1}, two = {port, 2};
    ASSERT_TRUE(wait_until(10000, succeeded_counted, &one));
    /* a reload is bracketed; the new worker's probes answer, and its
     * counts add to the old one's */
    tl_kill(pid, SIGHUP);
    expect_message(fd, "RELOADING=1", 10000);
    ASSERT_TRUE(tl_wait_file_has(log, "took over from worker", 20000));
    expect_message(fd, "READY=1", 10000);
    ASSERT_EQ(get_status(port, "/readyz"), 200);
    tl_exec(pg, "SELECT skipq.enqueue('ok')");
    ASSERT_TRUE(wait_until(10000, succeeded_counted, &two));
    tl_kill(pid, SIGTERM);
    expect_message(fd, "STOPPING=1", 10000);
    ASSERT_EQ(fl_wait_exit(pid, 30000), 0);
    close(fd);
}

TEST(bad_http_address_is_refused)
{
    PGconn *pg = tl_db();
    tl_exec(pg, "SELECT skipq.enqueue('ok')");
    char *out = NULL, *err = NULL;
    int rc = tl_skipq_run(NULL, &out, &err,
                          "worker --once --handler ok=true --http nowhere");
    ASSERT_EQ(rc, 2);
    ASSERT_CONTAINS(err, "--http wants HOST:PORT");
    free(out);
    free(err);
    const char *cfg = fl_file(".yaml", "worker:\n  http: \"127.0.0.1:99999\"\n");
    rc = tl_skipq_run(NULL, &out, &err, "worker --once --config %s --handler ok=true", cfg);
    ASSERT_EQ(rc, 2);
    ASSERT_CONTAINS(err, "worker.http wants HOST:PORT");
    free(out);
    free(err);

    /* a port in use: a clear runtime error, before any claim */
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    socklen_t sl = sizeof sa;
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    ASSERT_TRUE(ls >= 0 && bind(ls, (struct sockaddr *)&sa, sizeof sa) == 0 &&
                listen(ls, 1) == 0 && getsockname(ls, (struct sockaddr *)&sa, &sl) == 0);
    rc = tl_skipq_run(NULL, &out, &err,
                      "worker --once --handler ok=true --http 127.0.0.1:%d",
                      ntohs(sa.sin_port));
    ASSERT_EQ(rc, 1);
    ASSERT_CONTAINS(err, "could not serve --http: could not listen on");
    ASSERT_CONTAINS(err, "Address already in use");
    close(ls);
    free(out);
    free(err);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE status = 'queued'"
                         " AND attempts = 0"),
              1);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.workers"), 0);
}

int
main(int argc, char **argv)
{
    return harness_main(argc, argv);
}
