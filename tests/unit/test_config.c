/*
 * test_config.c - the config: defaults, every setter's validation, and the
 * YAML loader's errors and warnings, each with its line and column.
 */
#include "harness.h"

#include "internal.h"

#include <stdarg.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

/* ---- helpers ---- */

static char last_warning[1024];
static int nwarnings;

static void
capture_log(const skipq_log_event *ev, void *userdata)
{
    (void)userdata;
    if (ev->level == SKIPQ_LOG_WARN) {
        snprintf(last_warning, sizeof last_warning, "%s", ev->msg);
        nwarnings++;
    }
}

static void
capture_start(void)
{
    last_warning[0] = '\0';
    nwarnings = 0;
    skipq_set_log(capture_log, NULL);
}

static skipq_config *
new_config(void)
{
    skipq_config *cfg = skipq_config_new();

    ASSERT_TRUE(cfg != NULL);
    return cfg;
}

/* Load yaml into a fresh config that must succeed; caller frees. */
static skipq_config *
load_ok(const char *yaml)
{
    skipq_config *cfg = new_config();
    skipq_error err = {0};

    ASSERT_OK(skipq_config_load_string(cfg, yaml, strlen(yaml), "skipq.yaml", &err), &err);
    return cfg;
}

/* Load yaml that must fail with code; returns the message. */
static const char *
load_bad(const char *yaml, skipq_rc code)
{
    static skipq_error err;
    skipq_config *cfg = new_config();
    skipq_rc rc;

    memset(&err, 0, sizeof err);
    rc = skipq_config_load_string(cfg, yaml, strlen(yaml), "skipq.yaml", &err);
    if (rc != code)
        HARNESS_FAIL("load gave %d (%s), want %d", rc, err.message, code);
    ASSERT_EQ(err.code, code);
    skipq_config_free(cfg);
    return err.message;
}

static char *
temp_file(const char *content)
{
    static char path[64];
    int fd;

    snprintf(path, sizeof path, "/tmp/skipq_test_config_XXXXXX");
    fd = mkstemp(path);
    ASSERT_TRUE(fd >= 0);
    ASSERT_EQ(write(fd, content, strlen(content)), (long long)strlen(content));
    close(fd);
    return path;
}

/* config.example.yaml at the top of the source tree, found from this
 * file's own path (SKIPQ_SOURCE_DIR is defined for testlib.c only). */
static void
example_path(char *buf, size_t size)
{
    const char *me = __FILE__;
    const char *cut = strstr(me, "tests/unit/test_config.c");

    snprintf(buf, size, "%.*sconfig.example.yaml", cut ? (int)(cut - me) : 0, me);
}

/* ---- defaults and setters ---- */

TEST(defaults)
{
    skipq_config *cfg = new_config();

    ASSERT_TRUE(skipq_config_database(cfg) == NULL);
    ASSERT_EQ(skipq_config_queue_count(cfg), 1);
    ASSERT_STREQ(skipq_config_queue(cfg, 0), "default");
    ASSERT_TRUE(skipq_config_queue(cfg, 1) == NULL);
    ASSERT_STREQ(skipq_config_priorities(cfg), "high,normal,low");
    ASSERT_EQ(cfg->nbands, 3);
    ASSERT_EQ(cfg->bands[0].lo, 10);
    ASSERT_EQ(cfg->bands[0].hi, 32767);
    ASSERT_EQ(cfg->bands[1].lo, -9);
    ASSERT_EQ(cfg->bands[2].hi, -10);
    ASSERT_EQ(skipq_config_concurrency(cfg), 8);
    ASSERT_EQ(skipq_config_poll_interval(cfg), 1000);
    ASSERT_EQ(skipq_config_heartbeat_interval(cfg), 5000);
    ASSERT_EQ(skipq_config_lease_timeout(cfg), 30000);
    ASSERT_EQ(skipq_config_shutdown_timeout(cfg), 30000);
    ASSERT_EQ(skipq_config_retention(cfg), 7LL * 24 * 3600 * 1000);
    ASSERT_EQ(skipq_config_vacuum_interval(cfg), 10000);
    ASSERT_EQ(skipq_config_max_attempts(cfg), 5);
    ASSERT_EQ(cfg->backoff, SKIPQ_BACKOFF_EXPONENTIAL);
    ASSERT_EQ(cfg->backoff_base_ms, 1000);
    ASSERT_EQ(cfg->backoff_max_ms, 3600000);
    ASSERT_TRUE(cfg->jitter > 0.099 && cfg->jitter < 0.101);
    ASSERT_EQ(skipq_config_recover_older_than(cfg), 300000);
    ASSERT_EQ(skipq_config_recover_limit(cfg), 1000);
    ASSERT_EQ(skipq_config_max_payload(cfg), 1 << 20);
    ASSERT_EQ(skipq_config_handler_count(cfg), 0);
    ASSERT_EQ(skipq_config_warnings(cfg), 0);
    skipq_config_free(cfg);
    skipq_config_free(NULL);
}

TEST(setters_validate)
{
    skipq_config *cfg = new_config();
    skipq_error err = {0};

    ASSERT_EQ(skipq_config_set_concurrency(cfg, 0, &err), SKIPQ_ERR_INVALID);
    ASSERT_STREQ(err.message, "concurrency must be between 1 and 1024, not 0");
    ASSERT_EQ(skipq_config_set_concurrency(cfg, 1025, &err), SKIPQ_ERR_INVALID);
    ASSERT_EQ(skipq_config_concurrency(cfg), 8);
    ASSERT_OK(skipq_config_set_concurrency(cfg, 1024, &err), &err);
    ASSERT_EQ(skipq_config_concurrency(cfg), 1024);

    ASSERT_EQ(skipq_config_prefetch(cfg), SKIPQ_PREFETCH_AUTO);
    ASSERT_EQ(skipq_config_set_prefetch(cfg, -2, &err), SKIPQ_ERR_INVALID);
    ASSERT_STREQ(err.message, "prefetch must be \"auto\" or between 0 and 10000, not -2");
    ASSERT_EQ(skipq_config_set_prefetch(cfg, 10001, &err), SKIPQ_ERR_INVALID);
    ASSERT_OK(skipq_config_set_prefetch(cfg, 200, &err), &err);
    ASSERT_EQ(skipq_config_prefetch(cfg), 200);
    ASSERT_OK(skipq_config_set_prefetch(cfg, 0, &err), &err);
    ASSERT_EQ(skipq_config_prefetch(cfg), 0);
    ASSERT_OK(skipq_config_set_prefetch(cfg, SKIPQ_PREFETCH_AUTO, &err), &err);
    ASSERT_EQ(skipq_config_prefetch(cfg), SKIPQ_PREFETCH_AUTO);

    ASSERT_EQ(skipq_config_set_poll_interval(cfg, 0, &err), SKIPQ_ERR_INVALID);
    ASSERT_CONTAINS(err.message, "poll_interval must be positive");
    ASSERT_EQ(skipq_config_set_heartbeat_interval(cfg, -1, &err), SKIPQ_ERR_INVALID);
    ASSERT_EQ(skipq_config_set_lease_timeout(cfg, INT64_MAX, &err), SKIPQ_ERR_INVALID);
    ASSERT_CONTAINS(err.message, "at most");
    ASSERT_EQ(skipq_config_set_shutdown_timeout(cfg, -5, &err), SKIPQ_ERR_INVALID);
    ASSERT_OK(skipq_config_set_shutdown_timeout(cfg, 0, &err), &err);
    ASSERT_OK(skipq_config_set_retention(cfg, 0, &err), &err);
    ASSERT_EQ(skipq_config_set_retention(cfg, -1, &err), SKIPQ_ERR_INVALID);
    ASSERT_OK(skipq_config_set_retention(cfg, 7 * 86400000LL, &err), &err);
    ASSERT_EQ(skipq_config_retention(cfg), 7 * 86400000LL);
    ASSERT_OK(skipq_config_set_vacuum_interval(cfg, 0, &err), &err);
    ASSERT_EQ(skipq_config_vacuum_interval(cfg), 0);
    ASSERT_EQ(skipq_config_set_vacuum_interval(cfg, -1, &err), SKIPQ_ERR_INVALID);
    ASSERT_CONTAINS(err.message, "vacuum_interval");

    ASSERT_EQ(skipq_config_set_max_attempts(cfg, 0, &err), SKIPQ_ERR_INVALID);
    ASSERT_STREQ(err.message, "max_attempts must be 1 or more, not 0");

    ASSERT_EQ(skipq_config_set_backoff(cfg, SKIPQ_BACKOFF_FIXED, 1000, 2000, 1.5, &err),
              SKIPQ_ERR_INVALID);
    ASSERT_CONTAINS(err.message, "jitter must be between 0 and 1");
    ASSERT_EQ(skipq_config_set_backoff(cfg, (skipq_backoff)7, 1000, 2000, 0, &err),
              SKIPQ_ERR_INVALID);
    ASSERT_EQ(skipq_config_set_backoff(cfg, SKIPQ_BACKOFF_FIXED, -1, 2000, 0, &err),
              SKIPQ_ERR_INVALID);
    ASSERT_EQ(cfg->backoff, SKIPQ_BACKOFF_EXPONENTIAL); /* unchanged */
    ASSERT_OK(skipq_config_set_backoff(cfg, SKIPQ_BACKOFF_LINEAR, 500, 60000, 0, &err),
              &err);
    ASSERT_EQ(cfg->backoff, SKIPQ_BACKOFF_LINEAR);

    ASSERT_EQ(skipq_config_set_recover_defaults(cfg, 1000, 0, &err), SKIPQ_ERR_INVALID);
    ASSERT_OK(skipq_config_set_recover_defaults(cfg, 1000, 5, &err), &err);
    ASSERT_EQ(skipq_config_recover_limit(cfg), 5);

    ASSERT_EQ(skipq_config_set_max_payload(cfg, 0, &err), SKIPQ_ERR_INVALID);
    ASSERT_EQ(skipq_config_set_max_payload(cfg, (size_t)2 << 30, &err), SKIPQ_ERR_INVALID);
    ASSERT_OK(skipq_config_set_max_payload(cfg, 4096, &err), &err);

    /* err may be NULL; NULL cfg is refused, not a crash */
    ASSERT_EQ(skipq_config_set_concurrency(cfg, 0, NULL), SKIPQ_ERR_INVALID);
    ASSERT_EQ(skipq_config_set_concurrency(NULL, 1, &err), SKIPQ_ERR_INVALID);
    skipq_config_free(cfg);
}

TEST(database_setter)
{
    skipq_config *cfg = new_config();
    skipq_error err = {0};

    ASSERT_OK(skipq_config_set_database(cfg, "postgresql:///x", &err), &err);
    ASSERT_STREQ(skipq_config_database(cfg), "postgresql:///x");
    ASSERT_OK(skipq_config_set_database(cfg, "", &err), &err);
    ASSERT_TRUE(skipq_config_database(cfg) == NULL);
    ASSERT_OK(skipq_config_set_database(cfg, "dbname=y", &err), &err);
    ASSERT_OK(skipq_config_set_database(cfg, NULL, &err), &err);
    ASSERT_TRUE(skipq_config_database(cfg) == NULL);
    skipq_config_free(cfg);
}

TEST(queue_setters)
{
    skipq_config *cfg = new_config();
    skipq_error err = {0};

    ASSERT_OK(skipq_config_set_queue(cfg, "mail", &err), &err);
    ASSERT_OK(skipq_config_add_queue(cfg, "images", &err), &err);
    ASSERT_OK(skipq_config_add_queue(cfg, "mail", &err), &err); /* again */
    ASSERT_EQ(skipq_config_queue_count(cfg), 2);
    ASSERT_STREQ(skipq_config_queue(cfg, 0), "mail");
    ASSERT_STREQ(skipq_config_queue(cfg, 1), "images");
    ASSERT_EQ(skipq_config_add_queue(cfg, "", &err), SKIPQ_ERR_INVALID);
    ASSERT_EQ(skipq_config_set_queue(cfg, NULL, &err), SKIPQ_ERR_INVALID);
    ASSERT_EQ(skipq_config_queue_count(cfg), 2);
    ASSERT_OK(skipq_config_set_queue(cfg, "solo", &err), &err);
    ASSERT_EQ(skipq_config_queue_count(cfg), 1);
    skipq_config_free(cfg);
}

TEST(priorities_setter)
{
    skipq_config *cfg = new_config();
    skipq_error err = {0};

    ASSERT_OK(skipq_config_set_priorities(cfg, "high, -5", &err), &err);
    ASSERT_STREQ(skipq_config_priorities(cfg), "high, -5");
    ASSERT_EQ(cfg->nbands, 2);
    ASSERT_EQ(cfg->bands[0].lo, 10);
    ASSERT_EQ(cfg->bands[1].lo, -5);
    ASSERT_EQ(cfg->bands[1].hi, -5);
    ASSERT_OK(skipq_config_set_priorities(cfg, "3", &err), &err);
    ASSERT_EQ(cfg->nbands, 1);

    ASSERT_EQ(skipq_config_set_priorities(cfg, "high,urgent", &err), SKIPQ_ERR_INVALID);
    ASSERT_STREQ(err.message, "unrecognized priority \"urgent\": use high, "
                              "normal, low or a number");
    ASSERT_EQ(skipq_config_set_priorities(cfg, "high,,low", &err), SKIPQ_ERR_INVALID);
    ASSERT_CONTAINS(err.message, "empty band");
    ASSERT_EQ(skipq_config_set_priorities(cfg, "", &err), SKIPQ_ERR_INVALID);
    ASSERT_EQ(skipq_config_set_priorities(cfg, ",", &err), SKIPQ_ERR_INVALID);
    ASSERT_STREQ(skipq_config_priorities(cfg), "3"); /* unchanged */
    skipq_config_free(cfg);
}

TEST(handler_setters)
{
    skipq_config *cfg = new_config();
    skipq_error err = {0};
    const char *argv[] = {"/bin/echo", "hi", NULL};
    const char *empty[] = {NULL};
    const skipq__handler_cfg *h;

    ASSERT_OK(skipq_config_set_handler_command(cfg, "a", argv, 1000, &err), &err);
    ASSERT_OK(skipq_config_set_handler_shell(cfg, "b", "echo $X | wc", 0, &err), &err);
    ASSERT_EQ(skipq_config_handler_count(cfg), 2);
    ASSERT_STREQ(skipq_config_handler_kind(cfg, 0), "a");
    ASSERT_STREQ(skipq_config_handler_kind(cfg, 1), "b");
    ASSERT_TRUE(skipq_config_handler_kind(cfg, 2) == NULL);

    h = skipq__config_handler(cfg, "a");
    ASSERT_TRUE(h != NULL);
    ASSERT_STREQ(h->argv[0], "/bin/echo");
    ASSERT_STREQ(h->argv[1], "hi");
    ASSERT_TRUE(h->argv[2] == NULL);
    ASSERT_EQ(h->timeout_ms, 1000);
    h = skipq__config_handler(cfg, "b");
    ASSERT_STREQ(h->argv[0], "/bin/sh");
    ASSERT_STREQ(h->argv[1], "-c");
    ASSERT_STREQ(h->argv[2], "echo $X | wc");
    ASSERT_TRUE(h->argv[3] == NULL);
    ASSERT_TRUE(skipq__config_handler(cfg, "c") == NULL);

    /* same kind again replaces */
    ASSERT_OK(skipq_config_set_handler_shell(cfg, "a", "true", 5, &err), &err);
    ASSERT_EQ(skipq_config_handler_count(cfg), 2);
    ASSERT_STREQ(skipq__config_handler(cfg, "a")->argv[2], "true");

    ASSERT_EQ(skipq_config_set_handler_command(cfg, "x", empty, 0, &err),
              SKIPQ_ERR_INVALID);
    ASSERT_STREQ(err.message, "handler \"x\" needs a command");
    ASSERT_EQ(skipq_config_set_handler_command(cfg, "x", NULL, 0, &err), SKIPQ_ERR_INVALID);
    ASSERT_EQ(skipq_config_set_handler_shell(cfg, "x", "", 0, &err), SKIPQ_ERR_INVALID);
    ASSERT_EQ(skipq_config_set_handler_shell(cfg, "", "true", 0, &err), SKIPQ_ERR_INVALID);
    ASSERT_EQ(skipq_config_set_handler_command(cfg, "x", argv, -1, &err),
              SKIPQ_ERR_INVALID);
    ASSERT_EQ(skipq_config_handler_count(cfg), 2);
    skipq_config_free(cfg);
}

/* A plain command naming an executable by path skips the shell; anything
 * the shell would interpret, a builtin or a PATH lookup keeps it. */
TEST(handler_shell_runs_plain_commands_directly)
{
    skipq_config *cfg = new_config();
    skipq_error err = {0};
    const skipq__handler_cfg *h;
    static const char *const via_shell[] = {
        "true",                    /* a builtin, or a PATH lookup */
        "/bin/echo $HOME",         /* a variable */
        "/bin/echo 'a b'",         /* quotes */
        "/bin/echo a > /dev/null", /* a redirection */
        "/bin/ls *",               /* a glob */
        "X=1 /bin/true",           /* an assignment */
        "/bin/true; /bin/false",   /* a list */
        "/no/such/program",        /* sh reports "not found", exit 127 */
        "/etc/passwd",             /* not executable */
        "/bin/echo ~",             /* tilde */
    };

    ASSERT_OK(skipq_config_set_handler_shell(cfg, "d", "  /bin/echo  hi\tthere ", 0, &err),
              &err);
    h = skipq__config_handler(cfg, "d");
    ASSERT_STREQ(h->argv[0], "/bin/echo");
    ASSERT_STREQ(h->argv[1], "hi");
    ASSERT_STREQ(h->argv[2], "there");
    ASSERT_TRUE(h->argv[3] == NULL);
    for (size_t i = 0; i < sizeof via_shell / sizeof via_shell[0]; i++) {
        ASSERT_OK(skipq_config_set_handler_shell(cfg, "s", via_shell[i], 0, &err), &err);
        h = skipq__config_handler(cfg, "s");
        ASSERT_STREQ(h->argv[0], "/bin/sh");
        ASSERT_STREQ(h->argv[2], via_shell[i]);
    }
    skipq_config_free(cfg);
}

TEST(dup_is_deep)
{
    skipq_config *cfg = load_ok("database: dbname=a\n"
                                "worker: {queues: [q1, q2], priorities: 3}\n"
                                "handlers: {k: {command: [x, y]}}\n");
    skipq_config *copy = skipq__config_dup(cfg);
    skipq_error err = {0};

    ASSERT_TRUE(copy != NULL);
    ASSERT_OK(skipq_config_set_queue(cfg, "other", &err), &err);
    ASSERT_OK(skipq_config_set_database(cfg, NULL, &err), &err);
    skipq_config_free(cfg);
    ASSERT_STREQ(skipq_config_database(copy), "dbname=a");
    ASSERT_EQ(skipq_config_queue_count(copy), 2);
    ASSERT_STREQ(skipq_config_queue(copy, 1), "q2");
    ASSERT_STREQ(skipq_config_priorities(copy), "3");
    ASSERT_EQ(copy->nbands, 1);
    ASSERT_STREQ(skipq__config_handler(copy, "k")->argv[1], "y");
    skipq_config_free(copy);
    ASSERT_TRUE(skipq__config_dup(NULL) == NULL);
}

/* ---- loading ---- */

TEST(example_file_loads)
{
    char path[4096];
    skipq_config *cfg = new_config();
    skipq_error err = {0};
    const skipq__handler_cfg *h;

    capture_start();
    example_path(path, sizeof path);
    ASSERT_OK(skipq_config_load(cfg, path, &err), &err);
    ASSERT_EQ(nwarnings, 0);
    ASSERT_EQ(skipq_config_warnings(cfg), 0);
    ASSERT_STREQ(skipq_config_database(cfg), "postgresql://skipq@localhost:5432/app");
    ASSERT_EQ(skipq_config_queue_count(cfg), 1);
    ASSERT_STREQ(skipq_config_queue(cfg, 0), "default");
    ASSERT_STREQ(skipq_config_priorities(cfg), "high,normal,low");
    ASSERT_EQ(skipq_config_concurrency(cfg), 8);
    ASSERT_EQ(skipq_config_poll_interval(cfg), 1000);
    ASSERT_EQ(skipq_config_heartbeat_interval(cfg), 5000);
    ASSERT_EQ(skipq_config_lease_timeout(cfg), 30000);
    ASSERT_EQ(skipq_config_shutdown_timeout(cfg), 30000);
    ASSERT_EQ(skipq_config_retention(cfg), 7LL * 24 * 3600 * 1000);
    ASSERT_EQ(skipq_config_vacuum_interval(cfg), 10000);
    ASSERT_EQ(skipq_config_max_attempts(cfg), 5);
    ASSERT_EQ(cfg->backoff, SKIPQ_BACKOFF_EXPONENTIAL);
    ASSERT_EQ(cfg->backoff_base_ms, 1000);
    ASSERT_EQ(cfg->backoff_max_ms, 3600000);
    ASSERT_TRUE(cfg->jitter > 0.099 && cfg->jitter < 0.101);
    ASSERT_EQ(skipq_config_recover_older_than(cfg), 300000);
    ASSERT_EQ(skipq_config_recover_limit(cfg), 1000);
    ASSERT_EQ(skipq_config_max_payload(cfg), 1 << 20);
    ASSERT_EQ(skipq_config_handler_count(cfg), 3);
    h = skipq__config_handler(cfg, "send_email");
    ASSERT_TRUE(h != NULL);
    ASSERT_STREQ(h->argv[0], "/usr/local/bin/send-email");
    ASSERT_STREQ(h->argv[2], "noreply@example.com");
    ASSERT_EQ(h->timeout_ms, 30000);
    h = skipq__config_handler(cfg, "resize_image");
    ASSERT_TRUE(h != NULL);
    ASSERT_STREQ(h->argv[0], "/bin/sh");
    ASSERT_STREQ(h->argv[1], "-c");
    ASSERT_CONTAINS(h->argv[2], "| upload-thumbnail");
    ASSERT_EQ(h->timeout_ms, 300000);
    ASSERT_TRUE(!h->persistent);
    h = skipq__config_handler(cfg, "thumbnail");
    ASSERT_TRUE(h != NULL);
    ASSERT_TRUE(h->persistent);
    ASSERT_EQ(h->processes, 4);
    ASSERT_EQ(h->timeout_ms, 10000);
    skipq_config_free(cfg);
    skipq_set_log(NULL, NULL);
}

TEST(every_key_loads)
{
    skipq_config *cfg = load_ok("database: \"host=db dbname=jobs\"\n"
                                "worker:\n"
                                "  queues: [mail, images]\n"
                                "  priorities: \"high, 3\"\n"
                                "  concurrency: 32\n"
                                "  poll_interval: 250ms\n"
                                "  heartbeat_interval: 2s\n"
                                "  lease_timeout: 1m\n"
                                "  shutdown_timeout: 0\n"
                                "  retention: 7d\n"
                                "  vacuum_interval: 30s\n"
                                "retry:\n"
                                "  max_attempts: 3\n"
                                "  strategy: linear\n"
                                "  base: 2h\n" /* above the old max: fine */
                                "  max: 4h\n"
                                "  jitter: .25\n"
                                "recover:\n"
                                "  older_than: 1h\n"
                                "  limit: 50\n"
                                "limits:\n"
                                "  max_payload: 512KB\n");

    ASSERT_STREQ(skipq_config_database(cfg), "host=db dbname=jobs");
    ASSERT_EQ(skipq_config_queue_count(cfg), 2);
    ASSERT_STREQ(skipq_config_queue(cfg, 1), "images");
    ASSERT_EQ(cfg->nbands, 2);
    ASSERT_EQ(cfg->bands[1].lo, 3);
    ASSERT_EQ(skipq_config_concurrency(cfg), 32);
    ASSERT_EQ(skipq_config_poll_interval(cfg), 250);
    ASSERT_EQ(skipq_config_heartbeat_interval(cfg), 2000);
    ASSERT_EQ(skipq_config_lease_timeout(cfg), 60000);
    ASSERT_EQ(skipq_config_shutdown_timeout(cfg), 0);
    ASSERT_EQ(skipq_config_retention(cfg), 7 * 86400000LL);
    ASSERT_EQ(skipq_config_vacuum_interval(cfg), 30000);
    ASSERT_EQ(skipq_config_max_attempts(cfg), 3);
    ASSERT_EQ(cfg->backoff, SKIPQ_BACKOFF_LINEAR);
    ASSERT_EQ(cfg->backoff_base_ms, 2 * 3600000LL);
    ASSERT_EQ(cfg->backoff_max_ms, 4 * 3600000LL);
    ASSERT_TRUE(cfg->jitter > 0.249 && cfg->jitter < 0.251);
    ASSERT_EQ(skipq_config_recover_older_than(cfg), 3600000);
    ASSERT_EQ(skipq_config_recover_limit(cfg), 50);
    ASSERT_EQ(skipq_config_max_payload(cfg), 512 * 1024);
    skipq_config_free(cfg);
}

TEST(single_queue_string)
{
    skipq_config *cfg = load_ok("worker:\n  queues: mail\n");

    ASSERT_EQ(skipq_config_queue_count(cfg), 1);
    ASSERT_STREQ(skipq_config_queue(cfg, 0), "mail");
    skipq_config_free(cfg);
}

TEST(priorities_list)
{
    skipq_config *cfg = load_ok("worker:\n  priorities: [high, -5, LOW]\n");

    ASSERT_STREQ(skipq_config_priorities(cfg), "high,-5,LOW");
    ASSERT_EQ(cfg->nbands, 3);
    ASSERT_EQ(cfg->bands[1].lo, -5);
    ASSERT_EQ(cfg->bands[2].lo, -32768);
    skipq_config_free(cfg);
}

TEST(max_payload_forms)
{
    static const struct {
        const char *text;
        size_t bytes;
    } cases[] = {
        {"4096", 4096}, {"1MB", 1 << 20},  {"1 MB", 1 << 20}, {"512KB", 524288},
        {"2k", 2048},   {"1MiB", 1 << 20}, {"1gb", 1 << 30},  {"100b", 100},
    };
    char yaml[128];

    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        snprintf(yaml, sizeof yaml, "limits:\n  max_payload: %s\n", cases[i].text);
        skipq_config *cfg = load_ok(yaml);
        ASSERT_EQ(skipq_config_max_payload(cfg), cases[i].bytes);
        skipq_config_free(cfg);
    }
    ASSERT_CONTAINS(load_bad("limits:\n  max_payload: 1XB\n", SKIPQ_ERR_CONFIG),
                    "line 2, column 16: invalid size \"1XB\"");
    ASSERT_CONTAINS(load_bad("limits:\n  max_payload: 2GB\n", SKIPQ_ERR_CONFIG),
                    "max_payload must be between");
    load_bad("limits:\n  max_payload: -1\n", SKIPQ_ERR_CONFIG);
    load_bad("limits:\n  max_payload: 99999999999999999999999\n", SKIPQ_ERR_CONFIG);
}

TEST(handler_command_list_vs_string)
{
    skipq_config *cfg = load_ok("handlers:\n"
                                "  list_kind:\n"
                                "    command: [/bin/echo, \"a b\", '$HOME']\n"
                                "  shell_kind:\n"
                                "    command: echo \"$HOME\" | wc -c\n"
                                "    timeout: 10s\n");
    const skipq__handler_cfg *h = skipq__config_handler(cfg, "list_kind");

    ASSERT_TRUE(h != NULL);
    ASSERT_STREQ(h->argv[0], "/bin/echo");
    ASSERT_STREQ(h->argv[1], "a b");
    ASSERT_STREQ(h->argv[2], "$HOME"); /* no shell: no expansion */
    ASSERT_TRUE(h->argv[3] == NULL);
    ASSERT_EQ(h->timeout_ms, 0);
    h = skipq__config_handler(cfg, "shell_kind");
    ASSERT_TRUE(h != NULL);
    ASSERT_STREQ(h->argv[0], "/bin/sh");
    ASSERT_STREQ(h->argv[1], "-c");
    ASSERT_STREQ(h->argv[2], "echo \"$HOME\" | wc -c");
    ASSERT_TRUE(h->argv[3] == NULL);
    ASSERT_EQ(h->timeout_ms, 10000);
    skipq_config_free(cfg);
}

TEST(handler_errors)
{
    ASSERT_STREQ(load_bad("handlers:\n  k:\n    timeout: 5s\n", SKIPQ_ERR_CONFIG),
                 "could not load config \"skipq.yaml\": line 3, column 5: "
                 "handler \"k\" needs a command");
    ASSERT_CONTAINS(load_bad("handlers:\n  k:\n    command: []\n", SKIPQ_ERR_CONFIG),
                    "line 3, column 14: handler \"k\" needs a command");
    ASSERT_CONTAINS(load_bad("handlers:\n  k:\n    command: [a, [b]]\n", SKIPQ_ERR_CONFIG),
                    "line 3, column 18: handlers.k must be a list of strings, "
                    "not a list");
    ASSERT_CONTAINS(load_bad("handlers:\n  k:\n    command: {a: b}\n", SKIPQ_ERR_CONFIG),
                    "line 3, column 14: handlers.k must be a command, "
                    "not a mapping");
    ASSERT_CONTAINS(load_bad("handlers:\n  k: ./run.sh\n", SKIPQ_ERR_CONFIG),
                    "line 2, column 6: handlers.k must be a mapping");
    ASSERT_CONTAINS(load_bad("handlers:\n  k:\n    command: x\n"
                             "    timeout: 5x\n",
                             SKIPQ_ERR_CONFIG),
                    "line 4, column 14: invalid duration \"5x\"");
    ASSERT_CONTAINS(load_bad("handlers:\n  \"\":\n    command: x\n", SKIPQ_ERR_CONFIG),
                    "line 2, column 3: kind must not be empty");
    ASSERT_CONTAINS(load_bad("handlers:\n  k:\n    command: ['', x]\n", SKIPQ_ERR_CONFIG),
                    "program name is empty");
}

TEST(unknown_key_warns_with_line_and_column)
{
    skipq_config *cfg;

    capture_start();
    cfg = load_ok("worker:\n"
                  "  concurrency: 4\n"
                  "  concurency: 5\n"
                  "colour: blue\n");
    ASSERT_EQ(nwarnings, 2);
    ASSERT_EQ(skipq_config_warnings(cfg), 2);
    ASSERT_STREQ(last_warning, "config \"skipq.yaml\": line 4, column 1: "
                               "unknown key \"colour\" ignored");
    ASSERT_EQ(skipq_config_concurrency(cfg), 4);
    skipq_config_free(cfg);

    capture_start();
    cfg = load_ok("worker:\n  concurency: 5\n");
    ASSERT_STREQ(last_warning, "config \"skipq.yaml\": line 2, column 3: "
                               "unknown key \"worker.concurency\" ignored");
    skipq_config_free(cfg);

    capture_start();
    cfg = load_ok("handlers:\n  k:\n    command: x\n    retries: 3\n");
    ASSERT_STREQ(last_warning, "config \"skipq.yaml\": line 4, column 5: "
                               "unknown key \"handlers.k.retries\" ignored");
    ASSERT_EQ(skipq_config_warnings(cfg), 1);
    skipq_config_free(cfg);
    skipq_set_log(NULL, NULL);
}

TEST(duplicate_key_warns)
{
    skipq_config *cfg;

    capture_start();
    cfg = load_ok("worker:\n  concurrency: 4\n  concurrency: 6\n");
    ASSERT_EQ(nwarnings, 1);
    ASSERT_CONTAINS(last_warning, "line 3, column 3: duplicate key "
                                  "\"worker.concurrency\"");
    ASSERT_EQ(skipq_config_concurrency(cfg), 6); /* the last one wins */
    skipq_config_free(cfg);
    skipq_set_log(NULL, NULL);
}

TEST(wrong_types_name_line_and_column)
{
    ASSERT_STREQ(load_bad("worker:\n  concurrency: eight\n", SKIPQ_ERR_CONFIG),
                 "could not load config \"skipq.yaml\": line 2, column 16: "
                 "worker.concurrency must be an integer, not \"eight\"");
    ASSERT_CONTAINS(load_bad("worker:\n  concurrency: [1]\n", SKIPQ_ERR_CONFIG),
                    "line 2, column 16: worker.concurrency must be an "
                    "integer, not a list");
    ASSERT_CONTAINS(load_bad("worker:\n  concurrency: 0x10\n", SKIPQ_ERR_CONFIG),
                    "must be an integer");
    ASSERT_CONTAINS(load_bad("worker:\n  concurrency: 99999999999\n", SKIPQ_ERR_CONFIG),
                    "out of range");
    ASSERT_CONTAINS(load_bad("worker: 5\n", SKIPQ_ERR_CONFIG),
                    "line 1, column 9: worker must be a mapping, not \"5\"");
    ASSERT_CONTAINS(load_bad("retry: [1, 2]\n", SKIPQ_ERR_CONFIG),
                    "line 1, column 8: retry must be a mapping, not a list");
    ASSERT_CONTAINS(load_bad("worker:\n  queues: {a: 1}\n", SKIPQ_ERR_CONFIG),
                    "line 2, column 11: worker.queues must be a queue name "
                    "or a list of them, not a mapping");
    ASSERT_CONTAINS(load_bad("worker:\n  queues: []\n", SKIPQ_ERR_CONFIG),
                    "line 2, column 11: worker.queues must name at least one "
                    "queue");
    ASSERT_CONTAINS(load_bad("database: [a]\n", SKIPQ_ERR_CONFIG),
                    "line 1, column 11: database must be a string");
    ASSERT_CONTAINS(load_bad("retry:\n  jitter: lots\n", SKIPQ_ERR_CONFIG),
                    "line 2, column 11: retry.jitter must be a number");
    ASSERT_CONTAINS(load_bad("retry:\n  jitter: 1.5\n", SKIPQ_ERR_CONFIG),
                    "line 2, column 11: jitter must be between 0 and 1");
    ASSERT_CONTAINS(load_bad("retry:\n  strategy: random\n", SKIPQ_ERR_CONFIG),
                    "line 2, column 13: unknown backoff strategy \"random\"");
    ASSERT_CONTAINS(load_bad("retry:\n  max_attempts: 0\n", SKIPQ_ERR_CONFIG),
                    "line 2, column 17: max_attempts must be 1 or more");
    ASSERT_CONTAINS(load_bad("recover:\n  limit: 0\n", SKIPQ_ERR_CONFIG),
                    "line 2, column 10: recover limit must be 1 or more");
    ASSERT_CONTAINS(load_bad("worker:\n  concurrency: 2000\n", SKIPQ_ERR_CONFIG),
                    "line 2, column 16: concurrency must be between 1 and "
                    "1024, not 2000");
    ASSERT_CONTAINS(load_bad("? [a]\n: b\n", SKIPQ_ERR_CONFIG),
                    "line 1, column 3: keys must be strings");
}

TEST(prefetch_in_file)
{
    skipq_config *cfg = load_ok("worker:\n  prefetch: 64\n");
    ASSERT_EQ(skipq_config_prefetch(cfg), 64);
    skipq_config_free(cfg);
    cfg = load_ok("worker:\n  prefetch: 0\n  prefetch: auto\n");
    ASSERT_EQ(skipq_config_prefetch(cfg), SKIPQ_PREFETCH_AUTO);
    skipq_config_free(cfg);
    ASSERT_STREQ(load_bad("worker:\n  prefetch: -1\n", SKIPQ_ERR_CONFIG),
                 "could not load config \"skipq.yaml\": line 2, column 13: "
                 "worker.prefetch must be \"auto\" or between 0 and 10000, not -1");
    ASSERT_CONTAINS(load_bad("worker:\n  prefetch: lots\n", SKIPQ_ERR_CONFIG),
                    "line 2, column 13: worker.prefetch must be an integer");
    ASSERT_CONTAINS(load_bad("worker:\n  prefetch: 10001\n", SKIPQ_ERR_CONFIG),
                    "line 2, column 13: prefetch must be \"auto\" or between 0 and 10000,"
                    " not 10001");
}

TEST(on_success_in_file_and_api)
{
    skipq_error err = {0};
    skipq_config *cfg = load_ok("worker:\n  concurrency: 2\n");
    ASSERT_EQ(skipq_config_on_success(cfg), SKIPQ_ON_SUCCESS_KEEP); /* the default */
    skipq_config_free(cfg);
    cfg = load_ok("worker:\n  on_success: delete\n");
    ASSERT_EQ(skipq_config_on_success(cfg), SKIPQ_ON_SUCCESS_DELETE);
    ASSERT_OK(skipq_config_set_on_success(cfg, SKIPQ_ON_SUCCESS_KEEP, &err), &err);
    ASSERT_EQ(skipq_config_on_success(cfg), SKIPQ_ON_SUCCESS_KEEP);
    ASSERT_EQ(skipq_config_set_on_success(cfg, (skipq_on_success)7, &err),
              SKIPQ_ERR_INVALID);
    ASSERT_STREQ(err.message, "on_success must be keep or delete, not 7");
    ASSERT_EQ(skipq_config_on_success(cfg), SKIPQ_ON_SUCCESS_KEEP);
    skipq_config_free(cfg);
    ASSERT_STREQ(load_bad("worker:\n  on_success: drop\n", SKIPQ_ERR_CONFIG),
                 "could not load config \"skipq.yaml\": line 2, column 15: "
                 "unknown worker.on_success \"drop\": use keep or delete");
    ASSERT_CONTAINS(
        load_bad("worker:\n  on_success: [keep]\n", SKIPQ_ERR_CONFIG),
        "line 2, column 15: worker.on_success must be keep or delete, not a list");
}

TEST(http_in_file_and_api)
{
    skipq_error err = {0};
    skipq_config *cfg = load_ok("worker:\n  concurrency: 2\n");
    ASSERT_TRUE(skipq_config_http(cfg) == NULL); /* off by default */
    skipq_config_free(cfg);
    cfg = load_ok("worker:\n  http: \":9187\"\n");
    ASSERT_STREQ(skipq_config_http(cfg), ":9187");
    skipq_config *dup = skipq__config_dup(cfg); /* the worker's copy keeps it */
    ASSERT_STREQ(skipq_config_http(dup), ":9187");
    skipq_config_free(dup);
    ASSERT_OK(skipq_config_set_http(cfg, "", &err), &err); /* "" turns it off */
    ASSERT_TRUE(skipq_config_http(cfg) == NULL);
    ASSERT_EQ(skipq_config_set_http(cfg, "127.0.0.1: 80", &err), SKIPQ_ERR_INVALID);
    ASSERT_CONTAINS(err.message, "must not contain spaces");
    skipq_config_free(cfg);
    cfg = load_ok("worker:\n  http: ~\n");
    ASSERT_TRUE(skipq_config_http(cfg) == NULL);
    skipq_config_free(cfg);
    ASSERT_CONTAINS(load_bad("worker:\n  http: [1]\n", SKIPQ_ERR_CONFIG),
                    "line 2, column 9: worker.http must be an address");
}

TEST(bad_duration_in_file)
{
    ASSERT_STREQ(load_bad("worker:\n"
                          "  concurrency: 4\n"
                          "  poll_interval: 5x\n",
                          SKIPQ_ERR_CONFIG),
                 "could not load config \"skipq.yaml\": line 3, column 18: "
                 "invalid duration \"5x\": expected a number followed by ms, "
                 "s, m, h or d");
    ASSERT_CONTAINS(load_bad("worker:\n  lease_timeout: 30\n", SKIPQ_ERR_CONFIG),
                    "line 2, column 18: invalid duration \"30\": missing unit");
    ASSERT_CONTAINS(load_bad("worker:\n  heartbeat_interval: 0\n", SKIPQ_ERR_CONFIG),
                    "heartbeat_interval must be positive");
    ASSERT_CONTAINS(load_bad("recover:\n  older_than: -1s\n", SKIPQ_ERR_CONFIG),
                    "line 2, column 15: invalid duration \"-1s\"");
}

TEST(unknown_priority_in_file)
{
    /* the example from STYLE.md, to the character */
    ASSERT_STREQ(load_bad("# skipq.yaml\n"
                          "database: dbname=app\n"
                          "\n"
                          "worker:\n"
                          "  queues:\n"
                          "    - default\n"
                          "    - mail\n"
                          "  concurrency: 4\n"
                          "  poll_interval: 1s\n"
                          "  priorities:\n"
                          "    - high\n"
                          "    - urgent\n",
                          SKIPQ_ERR_CONFIG),
                 "could not load config \"skipq.yaml\": line 12, column 7: "
                 "unrecognized priority \"urgent\""
                 ": use high, normal, low "
                 "or a number");
    ASSERT_CONTAINS(load_bad("worker:\n  priorities: high,urgent\n", SKIPQ_ERR_CONFIG),
                    "line 2, column 15: unrecognized priority \"urgent\"");
    ASSERT_CONTAINS(load_bad("worker:\n  priorities: [high, 'a,b']\n", SKIPQ_ERR_CONFIG),
                    "line 2, column 22: unrecognized priority \"a,b\"");
    ASSERT_CONTAINS(load_bad("worker:\n  priorities: [high, 40000]\n", SKIPQ_ERR_CONFIG),
                    "line 2, column 22: priority \"40000\" is out of range");
}

TEST(empty_file)
{
    skipq_config *cfg = new_config();
    skipq_error err = {0};
    char *path = temp_file("");

    ASSERT_EQ(skipq_config_load(cfg, path, &err), SKIPQ_ERR_CONFIG);
    ASSERT_CONTAINS(err.message, "could not load config \"");
    ASSERT_CONTAINS(err.message, "\": file is empty");
    unlink(path);
    skipq_config_free(cfg);

    ASSERT_STREQ(load_bad("", SKIPQ_ERR_CONFIG),
                 "could not load config \"skipq.yaml\": file is empty");
    ASSERT_CONTAINS(load_bad("# only a comment\n\n", SKIPQ_ERR_CONFIG), "is empty");
}

TEST(empty_sections_are_fine)
{
    skipq_config *cfg = load_ok("worker:\nretry: ~\nhandlers:\ndatabase:\n");

    ASSERT_EQ(skipq_config_concurrency(cfg), 8);
    ASSERT_TRUE(skipq_config_database(cfg) == NULL);
    skipq_config_free(cfg);
}

TEST(not_yaml)
{
    ASSERT_STREQ(load_bad("worker:\n  queues: [a, b\n", SKIPQ_ERR_CONFIG),
                 "could not load config \"skipq.yaml\": line 3, column 1: "
                 "did not find expected ',' or ']' while parsing a flow "
                 "sequence started at line 2, column 11");
    ASSERT_CONTAINS(load_bad("a: b: c\n", SKIPQ_ERR_CONFIG), "line 1, column");
    ASSERT_CONTAINS(load_bad("\tworker: {}\n", SKIPQ_ERR_CONFIG), "line 1, column 1");
    ASSERT_CONTAINS(load_bad("x: \"\xff\"\n", SKIPQ_ERR_CONFIG), "byte 4");
}

TEST(top_level_not_a_mapping)
{
    ASSERT_STREQ(load_bad("- worker\n- retry\n", SKIPQ_ERR_CONFIG),
                 "could not load config \"skipq.yaml\": line 1, column 1: "
                 "the top level must be a mapping of settings, not a list");
    ASSERT_CONTAINS(load_bad("just text\n", SKIPQ_ERR_CONFIG), "not \"just text\"");
}

TEST(more_than_one_document)
{
    ASSERT_CONTAINS(load_bad("worker: {}\n---\nretry: {}\n", SKIPQ_ERR_CONFIG),
                    "line 3, column 1: more than one YAML document");
}

TEST(missing_file)
{
    skipq_config *cfg = new_config();
    skipq_error err = {0};

    ASSERT_EQ(skipq_config_load(cfg, "/nonexistent/skipq.yaml", &err), SKIPQ_ERR_CONFIG);
    ASSERT_STREQ(err.message, "could not load config "
                              "\"/nonexistent/skipq.yaml\": No such file or "
                              "directory");
    ASSERT_EQ(skipq_config_load(cfg, "/", &err), SKIPQ_ERR_CONFIG);
    ASSERT_CONTAINS(err.message, "could not load config \"/\": ");
    skipq_config_free(cfg);
}

TEST(file_errors_name_the_file)
{
    skipq_config *cfg = new_config();
    skipq_error err = {0};
    char *path = temp_file("worker:\n  priorities: [urgent]\n");
    char want[128];

    ASSERT_EQ(skipq_config_load(cfg, path, &err), SKIPQ_ERR_CONFIG);
    snprintf(want, sizeof want, "could not load config \"%s\": line 2, column 16", path);
    ASSERT_CONTAINS(err.message, want);
    unlink(path);
    skipq_config_free(cfg);
}

TEST(failed_load_changes_nothing)
{
    skipq_config *cfg = new_config();
    skipq_error err = {0};
    const char *yaml = "database: dbname=new\n"
                       "worker:\n  queues: [x, y]\n  concurrency: 3\n"
                       "retry:\n  max_attempts: nope\n";

    ASSERT_EQ(skipq_config_load_string(cfg, yaml, strlen(yaml), "f", &err),
              SKIPQ_ERR_CONFIG);
    ASSERT_TRUE(skipq_config_database(cfg) == NULL);
    ASSERT_EQ(skipq_config_queue_count(cfg), 1);
    ASSERT_STREQ(skipq_config_queue(cfg, 0), "default");
    ASSERT_EQ(skipq_config_concurrency(cfg), 8);
    skipq_config_free(cfg);
}

TEST(load_applies_over_current_settings)
{
    skipq_config *cfg = new_config();
    skipq_error err = {0};
    const char *yaml = "worker:\n  concurrency: 3\n";

    ASSERT_OK(skipq_config_set_max_attempts(cfg, 9, &err), &err);
    ASSERT_OK(skipq_config_load_string(cfg, yaml, strlen(yaml), NULL, NULL), &err);
    ASSERT_EQ(skipq_config_concurrency(cfg), 3);
    ASSERT_EQ(skipq_config_max_attempts(cfg), 9);
    /* the flag beats the file: a setter after the load wins */
    ASSERT_OK(skipq_config_set_concurrency(cfg, 5, &err), &err);
    ASSERT_EQ(skipq_config_concurrency(cfg), 5);
    skipq_config_free(cfg);
}

TEST(nul_in_scalar_is_refused)
{
    skipq_config *cfg = new_config();
    skipq_error err = {0};
    const char yaml[] = "database: \"a\\0b\"\n";

    ASSERT_EQ(skipq_config_load_string(cfg, yaml, sizeof yaml - 1, "n", &err),
              SKIPQ_ERR_CONFIG);
    ASSERT_CONTAINS(err.message, "must not contain a NUL character");
    skipq_config_free(cfg);
}

TEST(load_string_uses_length)
{
    skipq_config *cfg = new_config();
    skipq_error err = {0};
    const char *yaml = "worker:\n  concurrency: 3\nTRAILING GARBAGE: [";

    /* only the first 24 bytes count: what follows is never read */
    ASSERT_OK(skipq_config_load_string(cfg, yaml, 24, "n", &err), &err);
    ASSERT_EQ(skipq_config_concurrency(cfg), 3);
    skipq_config_free(cfg);
}

int
main(int argc, char **argv)
{
    return harness_main(argc, argv);
}

/* ---- hostile files: time and memory linear in the size ---- */

/* A growing string for the big inputs below. */
typedef struct text {
    char *s;
    size_t len, cap;
} text;

static void text_add(text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
text_add(text *t, const char *fmt, ...)
{
    va_list ap;
    int n;

    for (;;) {
        va_start(ap, fmt);
        n = vsnprintf(t->s ? t->s + t->len : NULL, t->s ? t->cap - t->len : 0, fmt, ap);
        va_end(ap);
        ASSERT_TRUE(n >= 0);
        if (t->s && t->len + (size_t)n < t->cap)
            break;
        t->cap = t->cap ? t->cap * 2 : 4096;
        while (t->cap <= t->len + (size_t)n)
            t->cap *= 2;
        t->s = realloc(t->s, t->cap);
        ASSERT_TRUE(t->s != NULL);
    }
    t->len += (size_t)n;
}

/* Seconds of CPU since start: the bound asserted below is many times
 * what each load takes, and far below what it took before. */
static double
cpu_seconds(clock_t start)
{
    return (double)(clock() - start) / CLOCKS_PER_SEC;
}

/* The key numbered i, 4 letters: "aaaa", "baaa", ... */
static void
add_key(text *t, unsigned i, const char *rest)
{
    text_add(t, "%c%c%c%c%s", 'a' + i % 26, 'a' + i / 26 % 26, 'a' + i / 676 % 26,
             'a' + i / 17576 % 26, rest);
}

/*
 * At most 1 MiB is read: `--config /dev/zero` grew to gigabytes. A file
 * of exactly 1 MiB loads; one byte more is refused, naming the file and
 * the limit, and so is a longer string.
 */
TEST(config_size_is_capped)
{
    skipq_config *cfg = new_config();
    skipq_error err = {0};
    size_t limit = (size_t)1 << 20;
    text t = {0};

    text_add(&t, "worker:\n  concurrency: 3\n");
    while (t.len < limit - 100)
        text_add(&t, "# %-70s\n", "padding");
    while (t.len < limit - 1)
        text_add(&t, "#");
    text_add(&t, "\n");
    ASSERT_EQ(t.len, limit);
    const char *path = temp_file(t.s);
    ASSERT_OK(skipq_config_load(cfg, path, &err), &err);
    ASSERT_EQ(skipq_config_concurrency(cfg), 3);
    unlink(path);

    text_add(&t, "\n");
    path = temp_file(t.s);
    ASSERT_EQ(skipq_config_load(cfg, path, &err), SKIPQ_ERR_CONFIG);
    char want[128];
    snprintf(want, sizeof want, "could not load config \"%s\": more than 1048576 bytes",
             path);
    ASSERT_CONTAINS(err.message, want);
    ASSERT_CONTAINS(err.message, "1 MiB");
    unlink(path);
    ASSERT_EQ(skipq_config_load_string(cfg, t.s, t.len, "big.yaml", &err),
              SKIPQ_ERR_CONFIG);
    ASSERT_CONTAINS(err.message,
                    "could not load config \"big.yaml\": more than 1048576 bytes");

    /* a device that never ends: refused after the limit, not read on */
    clock_t start = clock();
    ASSERT_EQ(skipq_config_load(cfg, "/dev/zero", &err), SKIPQ_ERR_CONFIG);
    ASSERT_CONTAINS(err.message,
                    "could not load config \"/dev/zero\": more than 1048576 bytes");
    ASSERT_TRUE(cpu_seconds(start) < 5);
    ASSERT_EQ(skipq_config_concurrency(cfg), 3); /* unchanged */
    free(t.s);
    skipq_config_free(cfg);
}

/*
 * Each key was compared with every key before it, to warn about
 * duplicates: 40,000 unknown keys took 30 s, and these 100,000 (600 kB)
 * took minutes. Now a sort: every key warned about once, in a fraction
 * of a second, and duplicates still found.
 */
TEST(many_unknown_keys_load_in_linear_time)
{
    enum { N = 100000 };
    text t = {0};

    for (unsigned i = 0; i < N; i++)
        add_key(&t, i, ":\n");
    add_key(&t, 7, ": again\n");
    text_add(&t, "worker:\n  concurrency: 2\n  concurrency: 4\n");
    ASSERT_TRUE(t.len < (size_t)1 << 20);
    capture_start();
    clock_t start = clock();
    skipq_config *cfg = load_ok(t.s);
    double s = cpu_seconds(start);
    printf("%d unknown keys: %.3f s of CPU\n", N, s);
    ASSERT_TRUE(s < 5);
    ASSERT_EQ(skipq_config_concurrency(cfg), 4);
    /* each unknown key, the repeated one twice, and its duplicate and
     * concurrency's */
    ASSERT_EQ(nwarnings, N + 3);
    ASSERT_EQ(skipq_config_warnings(cfg), N + 3);
    ASSERT_CONTAINS(last_warning, "line 100004, column 3: duplicate key "
                                  "\"worker.concurrency\": the last one wins");
    skipq_config_free(cfg);
    skipq_set_log(NULL, NULL);
    free(t.s);
}

/*
 * libyaml's scanner takes time quadratic in the depth of flow
 * collections: 150,000 "[" (300 kB) took over a minute, and then loaded.
 * Nesting past 64 levels is refused while parsing, at the first level
 * too deep, whatever follows; block nesting too.
 */
TEST(deep_nesting_is_refused_early)
{
    enum { DEPTH = 150000 };
    text t = {0};

    text_add(&t, "x: ");
    for (int i = 0; i < DEPTH; i++)
        text_add(&t, "[");
    for (int i = 0; i < DEPTH; i++)
        text_add(&t, "]");
    text_add(&t, "\n");
    clock_t start = clock();
    const char *msg = load_bad(t.s, SKIPQ_ERR_CONFIG);
    double s = cpu_seconds(start);
    printf("%d levels: %.3f s of CPU: %s\n", DEPTH, s, msg);
    ASSERT_TRUE(s < 5);
    /* the top-level mapping is the first level: the 64th "[" the 65th */
    ASSERT_STREQ(msg, "could not load config \"skipq.yaml\": line 1, column 67: "
                      "nesting deeper than 64 levels");
    free(t.s);

    /* mappings in block style: 64 levels load, 65 do not */
    for (int depth = 64; depth <= 65; depth++) {
        text b = {0};
        for (int i = 0; i < depth; i++)
            text_add(&b, "%*sk:\n", i, "");
        if (depth == 64) {
            skipq_config_free(load_ok(b.s));
        } else {
            ASSERT_STREQ(load_bad(b.s, SKIPQ_ERR_CONFIG),
                         "could not load config \"skipq.yaml\": line 65, column 65: "
                         "nesting deeper than 64 levels");
        }
        free(b.s);
    }
}

/*
 * The other things libyaml or the setters look up one by one are
 * counted: 80,000 anchors took 15 s and 90,000 %TAG directives 20 s
 * (each compared with those before it), 100,000 queues 30 s. And an
 * alias repeats a whole mapping wherever it is used: 200 uses of one of
 * 1,000 unknown keys meant 200,000 warnings from a 12 kB file.
 */
TEST(anchors_aliases_directives_and_lists_are_bounded)
{
    text t = {0};

    /* 1,000 anchors and 1,000 aliases load; one more of either does not */
    text_add(&t, "x: [");
    for (int i = 0; i < 1000; i++)
        text_add(&t, "&a%d %d, ", i, i);
    for (int i = 0; i < 1000; i++)
        text_add(&t, "*a%d, ", i);
    text_add(&t, "0]\n");
    skipq_config_free(load_ok(t.s));
    t.len = 0;
    text_add(&t, "x: [");
    for (int i = 0; i <= 1000; i++)
        text_add(&t, "&a%d %d, ", i, i);
    text_add(&t, "0]\n");
    ASSERT_CONTAINS(load_bad(t.s, SKIPQ_ERR_CONFIG), "more than 1000 anchors");
    t.len = 0;
    text_add(&t, "x: [&a 0");
    for (int i = 0; i <= 1000; i++)
        text_add(&t, ", *a");
    text_add(&t, "]\n");
    ASSERT_CONTAINS(load_bad(t.s, SKIPQ_ERR_CONFIG), "more than 1000 aliases");

    /* directives */
    t.len = 0;
    for (int i = 0; i <= 100; i++)
        text_add(&t, "%%TAG !t%d! tag:example.com,2024:%d:\n", i, i);
    text_add(&t, "---\nworker:\n  concurrency: 2\n");
    ASSERT_STREQ(load_bad(t.s, SKIPQ_ERR_CONFIG),
                 "could not load config \"skipq.yaml\": line 101: more than 100 "
                 "directives (lines starting with %)");

    /* an alias repeating a large mapping */
    t.len = 0;
    text_add(&t, "x: &m {");
    for (unsigned i = 0; i < 1000; i++)
        add_key(&t, i, ": 1, ");
    text_add(&t, "z: 1}\n");
    for (int i = 0; i < 200; i++)
        text_add(&t, "worker: *m\n");
    capture_start();
    ASSERT_CONTAINS(load_bad(t.s, SKIPQ_ERR_CONFIG),
                    "aliases repeat more keys and items than the config holds");
    ASSERT_TRUE(nwarnings < 20000);
    skipq_set_log(NULL, NULL);
    /* used a few times, as configs do to share a handler, it loads */
    t.len = 0;
    text_add(&t, "handlers:\n  a: &h {command: [\"true\"], timeout: 5s}\n");
    for (int i = 0; i < 100; i++)
        text_add(&t, "  k%d: *h\n", i);
    skipq_config *cfg = load_ok(t.s);
    ASSERT_EQ(skipq_config_handler_count(cfg), 101);
    skipq_config_free(cfg);

    /* queues and handlers: 1,000 each */
    for (int n = 1000; n <= 1001; n++) {
        t.len = 0;
        text_add(&t, "worker:\n  queues:\n");
        for (int i = 0; i < n; i++)
            text_add(&t, "    - q%d\n", i);
        text_add(&t, "handlers:\n");
        for (int i = 0; i < n; i++)
            text_add(&t, "  k%d: {command: \"true\"}\n", i);
        if (n == 1000) {
            cfg = load_ok(t.s);
            ASSERT_EQ(skipq_config_queue_count(cfg), 1000);
            ASSERT_EQ(skipq_config_handler_count(cfg), 1000);
            skipq_config_free(cfg);
        } else {
            ASSERT_CONTAINS(load_bad(t.s, SKIPQ_ERR_CONFIG),
                            "worker.queues lists 1001 queues; the limit is 1000");
        }
    }
    t.len = 0;
    text_add(&t, "handlers:\n");
    for (int i = 0; i < 1001; i++)
        text_add(&t, "  k%d: {command: \"true\"}\n", i);
    ASSERT_CONTAINS(load_bad(t.s, SKIPQ_ERR_CONFIG),
                    "handlers has 1001 handlers; the limit is 1000");
    free(t.s);
}
