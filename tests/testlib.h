/*
 * testlib.h - helpers for integration tests against the real PostgreSQL
 * that scripts/test.sh (tests/pg.sh) started for this run.
 *
 * Every test gets its own database: tl_db() clones the migrated template
 * (skipq_template), tl_empty_db() makes an empty one. Both are dropped at
 * exit. SKIPQ_DATABASE_URL is set to the test's database, so CLI runs and
 * workers started by the test use it.
 */
#ifndef SKIPQ_TESTLIB_H
#define SKIPQ_TESTLIB_H

#include "harness.h"

#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define TL_PRINTF(f, a) __attribute__((format(printf, f, a)))

/* A fresh migrated database; returns a connection to it (owned by
 * testlib, closed at exit). Its URL is tl_url(). */
PGconn *tl_db(void);
/* A fresh database without the skipq schema. */
PGconn *tl_empty_db(void);
/* URL of the current test database (static storage). */
const char *tl_url(void);
/* A new connection to the test database; caller PQfinish()es it. */
PGconn *tl_connect(void);

/* Run SQL (printf-style; tests only, values are ours). Fails the test on
 * error. */
void tl_exec(PGconn *pg, const char *fmt, ...) TL_PRINTF(2, 3);
/* First column of the first row as an integer; fails on error/no row. */
int64_t tl_int(PGconn *pg, const char *fmt, ...) TL_PRINTF(2, 3);
/* First column of the first row as a string (malloc'd; NULL for SQL NULL). */
char *tl_str(PGconn *pg, const char *fmt, ...) TL_PRINTF(2, 3);

/* Poll cond every few ms until it returns true or ms pass. */
bool wait_until(int ms, bool (*cond)(void *arg), void *arg);
/* Wait until SQL (an integer query) returns want. */
bool tl_wait_int(PGconn *pg, int ms, int64_t want, const char *fmt, ...) TL_PRINTF(4, 5);

/* The skipq binary under test (with $SKIPQ_CLI_WRAPPER prefix, e.g.
 * valgrind). */
const char *tl_skipq(void);

/*
 * Run a shell command line; stdin_data (may be NULL) is written to its
 * stdin. *out and *err (may be NULL) get its output (malloc'd). Returns
 * the exit status, or 128+signal.
 */
int tl_run(const char *stdin_data, char **out, char **err, const char *fmt, ...)
    TL_PRINTF(4, 5);
/* Run `skipq ARGS` the same way (ARGS is shell text). */
int tl_skipq_run(const char *stdin_data, char **out, char **err, const char *fmt, ...)
    TL_PRINTF(4, 5);

/* Start a shell command in the background in its own process group,
 * stdout/stderr appended to log (may be NULL: /dev/null). */
pid_t tl_spawn(const char *log, const char *fmt, ...) TL_PRINTF(2, 3);
/* Send sig to the process group of pid. */
void tl_kill(pid_t pid, int sig);
/* Wait for pid up to ms; its exit status (or 128+signal), -1 on timeout. */
int tl_wait_pid(pid_t pid, int ms);

/* Monotonic milliseconds. */
int64_t tl_now_ms(void);
/* Notifications on channel skipq (with this payload, unless NULL) that
 * reach the listening connection l within ms. */
int tl_count_notifies(PGconn *l, int ms, const char *payload);
/* Hold (on) or release the idle lock a waiting worker holds for queue q,
 * on pg's session: skipq_enqueue notifies only while one is held. */
void tl_idle_lock(PGconn *pg, const char *q, bool on);
/* s single-quoted for /bin/sh (malloc'd). */
char *tl_shq(const char *s);
/* The test database's URL with its user replaced by user (malloc'd). */
char *tl_url_as(const char *user);
/* A connection to the test database as user; fails the test if it
 * cannot connect. Caller PQfinish()es it. */
PGconn *tl_connect_as(const char *user);

/* A temp file path unique to this process (static storage per call). */
const char *tl_tmpfile(const char *suffix);
/* Write text to a file. */
void tl_write_file(const char *path, const char *text);
/* A config file holding body, in a temp file (static storage). */
const char *tl_write_config(const char *body);
/* Wait up to ms for the file at path to contain needle. */
bool tl_wait_file_has(const char *path, const char *needle, int ms);

/* `skipq migrate --roles` on the test database; fails the test if it
 * fails. */
void tl_apply_roles(void);
/* sql on c must fail with "permission denied"; fails the test if not. */
void tl_expect_denied(PGconn *c, const char *sql);

/*
 * One HTTP/1.1 request over a TCP socket, answered whole (the connection
 * is closed after it): url is "http://HOST:PORT/path?query"; headers (may
 * be NULL) are extra "Name: value" lines, each ending in "\r\n" (a Host
 * line among them replaces the default); body may be NULL. Returns the
 * status (-1: no answer within 30s); *resp_headers and *resp_body (each
 * may be NULL) get the response's parts (malloc'd).
 */
int tl_http(const char *method, const char *url, const char *headers, const char *body,
            char **resp_headers, char **resp_body);
/* (A "Content-Length:" line among headers replaces the body's own: the
 * request announces a body it does not send.) */
/*
 * Start `skipq serve --http 127.0.0.1:0 ARGS` with env (env(1)'s
 * arguments: NAME=VALUE, -u NAME; may be "") and wait for the line that
 * names its address: base gets "http://127.0.0.1:PORT", *log_out (may be
 * NULL) its log file. Returns its pid (signals reach serve itself).
 */
pid_t tl_serve(const char *env, const char *args, char *base, size_t baselen,
               const char **log_out);

#endif
