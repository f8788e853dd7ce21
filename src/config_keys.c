/*
 * config_keys.c - what each key of a YAML config sets: a table of rules
 * per section (worker, retry, handlers, recover, limits), each key read
 * as its type (integer, duration, fraction, size) and handed to the
 * setter the API exposes, so a value is checked the same way whether it
 * came from a file, a flag or a caller. Reading the file itself, and the
 * place of each error, is config_yaml.c's.
 */
#include "config_internal.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *const strategy_names[] = {
    [SKIPQ_BACKOFF_FIXED] = "fixed",
    [SKIPQ_BACKOFF_LINEAR] = "linear",
    [SKIPQ_BACKOFF_EXPONENTIAL] = "exponential",
};

static bool
is_null(const yaml_node_t *node)
{
    const char *v;

    if (node->type != YAML_SCALAR_NODE ||
        node->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    v = (const char *)node->data.scalar.value;
    return !*v || strcmp(v, "~") == 0 || strcmp(v, "null") == 0 || strcmp(v, "Null") == 0 ||
           strcmp(v, "NULL") == 0;
}

/* A decimal integer that fits int: no hex, octal, "1e3" or "1_000". */
static skipq_rc
get_int(struct loader *ld, const yaml_node_t *node, const char *path, int *out)
{
    const char *s = NULL, *p;
    skipq_rc rc;
    long long v = 0;
    bool neg = false;
    char buf[48];

    if ((rc = skipq__yaml_scalar(ld, node, path, "an integer", &s)) != SKIPQ_OK)
        return rc;
    p = s;
    if (*p == '-' || *p == '+')
        neg = (*p++ == '-');
    if (!*p)
        goto bad;
    for (; *p; p++) {
        if (*p < '0' || *p > '9')
            goto bad;
        v = v * 10 + (*p - '0');
        if (v > (long long)INT_MAX + 1)
            return skipq__yaml_fail_at(ld, node, SKIPQ_ERR_CONFIG, "%s is out of range: %s",
                                       path, skipq__yaml_describe(node, buf, sizeof buf));
    }
    if (neg)
        v = -v;
    if (v > INT_MAX)
        return skipq__yaml_fail_at(ld, node, SKIPQ_ERR_CONFIG, "%s is out of range: %s",
                                   path, skipq__yaml_describe(node, buf, sizeof buf));
    *out = (int)v;
    return SKIPQ_OK;
bad:
    return skipq__yaml_fail_at(ld, node, SKIPQ_ERR_CONFIG, "%s must be an integer, not %s",
                               path, skipq__yaml_describe(node, buf, sizeof buf));
}

static skipq_rc
get_duration(struct loader *ld, const yaml_node_t *node, const char *path, int64_t *out)
{
    skipq_error e;
    const char *s = NULL;
    skipq_rc rc;

    if ((rc = skipq__yaml_scalar(ld, node, path, "a duration", &s)) != SKIPQ_OK)
        return rc;
    if ((rc = skipq_parse_duration(s, out, &e)) != SKIPQ_OK)
        return skipq__yaml_wrap(ld, node, rc, &e);
    return SKIPQ_OK;
}

/*
 * A number in 0..1 written as plain decimal ("0.1", "1", ".25"). Not
 * strtod: it follows LC_NUMERIC, and an application that set a locale
 * with a decimal comma would make "0.1" unreadable.
 */
static skipq_rc
get_fraction(struct loader *ld, const yaml_node_t *node, const char *path, double *out)
{
    const char *s = NULL, *p;
    skipq_rc rc;
    double v = 0, scale = 1;
    bool neg = false, digits = false;
    char buf[48];

    if ((rc = skipq__yaml_scalar(ld, node, path, "a number", &s)) != SKIPQ_OK)
        return rc;
    p = s;
    if (*p == '-' || *p == '+')
        neg = (*p++ == '-');
    for (; *p >= '0' && *p <= '9'; p++, digits = true)
        v = v * 10 + (*p - '0');
    if (*p == '.')
        for (p++; *p >= '0' && *p <= '9'; p++, digits = true)
            v += (*p - '0') * (scale /= 10);
    if (!digits || *p)
        return skipq__yaml_fail_at(ld, node, SKIPQ_ERR_CONFIG,
                                   "%s must be a number, not %s", path,
                                   skipq__yaml_describe(node, buf, sizeof buf));
    *out = neg ? -v : v;
    return SKIPQ_OK;
}

/*
 * Bytes: "1048576", "512KB", "1 MB". K, M and G are powers of 1024, as
 * in postgresql.conf, whichever spelling (K, KB, KiB) is used.
 */
static skipq_rc
get_bytes(struct loader *ld, const yaml_node_t *node, const char *path, size_t *out)
{
    static const struct {
        const char *suffix;
        unsigned shift;
    } units[] = {
        {"", 0},    {"b", 0},    {"k", 10}, {"kb", 10}, {"kib", 10}, {"m", 20},
        {"mb", 20}, {"mib", 20}, {"g", 30}, {"gb", 30}, {"gib", 30},
    };
    const char *s = NULL, *p;
    skipq_rc rc;
    uint64_t v = 0;

    if ((rc = skipq__yaml_scalar(ld, node, path, "a size", &s)) != SKIPQ_OK)
        return rc;
    for (p = s; *p >= '0' && *p <= '9'; p++) {
        v = v * 10 + (uint64_t)(*p - '0');
        if (v > ((uint64_t)1 << 40)) /* far beyond any limit we accept */
            goto bad;
    }
    if (p == s)
        goto bad;
    while (*p == ' ')
        p++;
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (strcasecmp(p, units[i].suffix) == 0) {
            v <<= units[i].shift;
            *out = v > SIZE_MAX ? SIZE_MAX : (size_t)v;
            return SKIPQ_OK;
        }
    }
bad:
    return skipq__yaml_fail_at(ld, node, SKIPQ_ERR_CONFIG,
                               "invalid size \"%s\": expected a number of bytes, "
                               "optionally followed by KB, MB or GB",
                               s);
}

/* A section whose value may be left empty ("worker:" alone). */
static bool
section(struct loader *ld, const yaml_node_t *node, const char *path, skipq_rc *rc)
{
    char buf[48];

    *rc = SKIPQ_OK;
    if (is_null(node))
        return false;
    if (node->type != YAML_MAPPING_NODE) {
        *rc = skipq__yaml_fail_at(ld, node, SKIPQ_ERR_CONFIG,
                                  "%s must be a mapping, not %s", path,
                                  skipq__yaml_describe(node, buf, sizeof buf));
        return false;
    }
    return true;
}

/* ---- database ---- */

static skipq_rc
key_database(struct loader *ld, const char *path, yaml_node_t *v)
{
    skipq_error e;
    const char *s = NULL;
    skipq_rc rc;

    if (!is_null(v) && (rc = skipq__yaml_scalar(ld, v, path, "a string", &s)) != SKIPQ_OK)
        return rc;
    if ((rc = skipq_config_set_database(ld->cfg, s, &e)) != SKIPQ_OK)
        return skipq__yaml_wrap(ld, v, rc, &e);
    return SKIPQ_OK;
}

/* ---- worker ---- */

static skipq_rc
key_queues(struct loader *ld, const char *path, yaml_node_t *v)
{
    skipq_error e;
    const char *s = NULL;
    skipq_rc rc;

    if (v->type == YAML_SEQUENCE_NODE) {
        yaml_node_item_t *it = v->data.sequence.items.start;
        yaml_node_item_t *top = v->data.sequence.items.top;

        if (it == top)
            return skipq__yaml_fail_at(ld, v, SKIPQ_ERR_CONFIG,
                                       "%s must name at least one queue", path);
        /* each queue added is compared with those before it */
        if (top - it > CONFIG_MAX_LIST)
            return skipq__yaml_fail_at(ld, v, SKIPQ_ERR_CONFIG,
                                       "%s lists %zu queues; the limit is %d", path,
                                       (size_t)(top - it), CONFIG_MAX_LIST);
        if ((rc = skipq__yaml_visit(ld, v, (size_t)(top - it))) != SKIPQ_OK)
            return rc;
        for (bool first = true; it < top; it++, first = false) {
            yaml_node_t *item = yaml_document_get_node(ld->doc, *it);
            if (!item)
                continue;
            if ((rc = skipq__yaml_scalar(ld, item, path, "a list of queue names", &s)) !=
                SKIPQ_OK)
                return rc;
            rc = first ? skipq_config_set_queue(ld->cfg, s, &e)
                       : skipq_config_add_queue(ld->cfg, s, &e);
            if (rc != SKIPQ_OK)
                return skipq__yaml_wrap(ld, item, rc, &e);
        }
        return SKIPQ_OK;
    }
    if ((rc = skipq__yaml_scalar(ld, v, path, "a queue name or a list of them", &s)) !=
        SKIPQ_OK)
        return rc;
    if ((rc = skipq_config_set_queue(ld->cfg, s, &e)) != SKIPQ_OK)
        return skipq__yaml_wrap(ld, v, rc, &e);
    return SKIPQ_OK;
}

static skipq_rc
key_priorities(struct loader *ld, const char *path, yaml_node_t *v)
{
    skipq_error e;
    const char *s = NULL;
    skipq_rc rc;
    char *joined;
    size_t len = 0;

    if (v->type != YAML_SEQUENCE_NODE) {
        if ((rc = skipq__yaml_scalar(ld, v, path, "a list of priorities", &s)) != SKIPQ_OK)
            return rc;
        if ((rc = skipq_config_set_priorities(ld->cfg, s, &e)) != SKIPQ_OK)
            return skipq__yaml_wrap(ld, v, rc, &e);
        return SKIPQ_OK;
    }
    if (v->data.sequence.items.start == v->data.sequence.items.top)
        return skipq__yaml_fail_at(ld, v, SKIPQ_ERR_CONFIG,
                                   "%s must name at least one band", path);
    if ((rc = skipq__yaml_visit(ld, v,
                                (size_t)(v->data.sequence.items.top -
                                         v->data.sequence.items.start))) != SKIPQ_OK)
        return rc;
    /* check each item where it stands, so an error points at the item,
     * then hand the setter the same comma-separated form the CLI uses */
    for (yaml_node_item_t *it = v->data.sequence.items.start;
         it < v->data.sequence.items.top; it++) {
        yaml_node_t *item = yaml_document_get_node(ld->doc, *it);
        int16_t lo, hi;

        if (!item)
            continue;
        if ((rc = skipq__yaml_scalar(ld, item, path, "a list of priorities", &s)) !=
            SKIPQ_OK)
            return rc;
        if (strchr(s, ',') || !*s)
            return skipq__yaml_fail_at(ld, item, SKIPQ_ERR_CONFIG,
                                       "unrecognized priority \"%s\": use high, normal, "
                                       "low or a number",
                                       s);
        if ((rc = skipq_parse_priority_band(s, &lo, &hi, &e)) != SKIPQ_OK)
            return skipq__yaml_wrap(ld, item, rc, &e);
        len += strlen(s) + 1;
    }
    if (!(joined = malloc(len + 1)))
        return skipq__yaml_fail_at(ld, v, SKIPQ_ERR_NOMEM, "out of memory");
    joined[0] = '\0';
    len = 0;
    for (yaml_node_item_t *it = v->data.sequence.items.start;
         it < v->data.sequence.items.top; it++) {
        yaml_node_t *item = yaml_document_get_node(ld->doc, *it);
        size_t n;

        if (!item)
            continue;
        n = item->data.scalar.length;
        if (len)
            joined[len++] = ',';
        memcpy(joined + len, item->data.scalar.value, n);
        len += n;
        joined[len] = '\0';
    }
    rc = skipq_config_set_priorities(ld->cfg, joined, &e);
    free(joined);
    if (rc != SKIPQ_OK)
        return skipq__yaml_wrap(ld, v, rc, &e);
    return SKIPQ_OK;
}

static skipq_rc
key_concurrency(struct loader *ld, const char *path, yaml_node_t *v)
{
    skipq_error e;
    skipq_rc rc;
    int n = 0;

    if ((rc = get_int(ld, v, path, &n)) != SKIPQ_OK)
        return rc;
    if ((rc = skipq_config_set_concurrency(ld->cfg, n, &e)) != SKIPQ_OK)
        return skipq__yaml_wrap(ld, v, rc, &e);
    return SKIPQ_OK;
}

static skipq_rc
key_prefetch(struct loader *ld, const char *path, yaml_node_t *v)
{
    skipq_error e;
    skipq_rc rc;
    int n = 0;

    if (v->type == YAML_SCALAR_NODE &&
        strcmp((const char *)v->data.scalar.value, "auto") == 0)
        n = SKIPQ_PREFETCH_AUTO;
    else if ((rc = get_int(ld, v, path, &n)) != SKIPQ_OK)
        return rc;
    else if (n < 0) /* -1 is the C API's "auto", not a YAML spelling */
        return skipq__yaml_fail_at(ld, v, SKIPQ_ERR_CONFIG,
                                   "%s must be \"auto\" or between 0 and %d, not %d", path,
                                   MAX_PREFETCH, n);
    if ((rc = skipq_config_set_prefetch(ld->cfg, n, &e)) != SKIPQ_OK)
        return skipq__yaml_wrap(ld, v, rc, &e);
    return SKIPQ_OK;
}

#define KEY_DURATION(name, setter)                                            \
    static skipq_rc name(struct loader *ld, const char *path, yaml_node_t *v) \
    {                                                                         \
        skipq_error e;                                                        \
        skipq_rc rc;                                                          \
        int64_t ms = 0;                                                       \
        if ((rc = get_duration(ld, v, path, &ms)) != SKIPQ_OK)                \
            return rc;                                                        \
        if ((rc = setter(ld->cfg, ms, &e)) != SKIPQ_OK)                       \
            return skipq__yaml_wrap(ld, v, rc, &e);                           \
        return SKIPQ_OK;                                                      \
    }

KEY_DURATION(key_poll_interval, skipq_config_set_poll_interval)
KEY_DURATION(key_heartbeat_interval, skipq_config_set_heartbeat_interval)
KEY_DURATION(key_lease_timeout, skipq_config_set_lease_timeout)
KEY_DURATION(key_shutdown_timeout, skipq_config_set_shutdown_timeout)
KEY_DURATION(key_retention, skipq_config_set_retention)
KEY_DURATION(key_vacuum_interval, skipq_config_set_vacuum_interval)
KEY_DURATION(key_archive_after, skipq_config_set_archive_after)
KEY_DURATION(key_archive_partition, skipq_config_set_archive_partition)

static skipq_rc
key_on_success(struct loader *ld, const char *path, yaml_node_t *v)
{
    const char *s = NULL;
    skipq_rc rc;

    if ((rc = skipq__yaml_scalar(ld, v, path, "keep or delete", &s)) != SKIPQ_OK)
        return rc;
    if (strcmp(s, "keep") == 0)
        ld->cfg->on_success = SKIPQ_ON_SUCCESS_KEEP;
    else if (strcmp(s, "delete") == 0)
        ld->cfg->on_success = SKIPQ_ON_SUCCESS_DELETE;
    else
        return skipq__yaml_fail_at(ld, v, SKIPQ_ERR_CONFIG,
                                   "unknown %s \"%s\": use keep or delete", path, s);
    return SKIPQ_OK;
}

static skipq_rc
key_handler_stack_size(struct loader *ld, const char *path, yaml_node_t *v)
{
    skipq_error e;
    size_t bytes = 0;
    skipq_rc rc;

    if ((rc = get_bytes(ld, v, path, &bytes)) != SKIPQ_OK)
        return rc;
    if ((rc = skipq_config_set_handler_stack_size(ld->cfg, bytes, &e)) != SKIPQ_OK)
        return skipq__yaml_wrap(ld, v, rc, &e);
    return SKIPQ_OK;
}

static skipq_rc
key_http(struct loader *ld, const char *path, yaml_node_t *v)
{
    skipq_error e;
    const char *s = NULL;
    skipq_rc rc;

    if (is_null(v))
        s = NULL;
    else if ((rc = skipq__yaml_scalar(ld, v, path, "an address such as \":9187\"", &s)) !=
             SKIPQ_OK)
        return rc;
    if ((rc = skipq_config_set_http(ld->cfg, s, &e)) != SKIPQ_OK)
        return skipq__yaml_wrap(ld, v, rc, &e);
    return SKIPQ_OK;
}

static skipq_rc
key_listen_database(struct loader *ld, const char *path, yaml_node_t *v)
{
    skipq_error e;
    const char *s = NULL;
    skipq_rc rc;

    if (!is_null(v) && (rc = skipq__yaml_scalar(ld, v, path, "a string", &s)) != SKIPQ_OK)
        return rc;
    if ((rc = skipq_config_set_listen_database(ld->cfg, s, &e)) != SKIPQ_OK)
        return skipq__yaml_wrap(ld, v, rc, &e);
    return SKIPQ_OK;
}

static skipq_rc
key_listen(struct loader *ld, const char *path, yaml_node_t *v)
{
    const char *s = NULL;
    char buf[48];
    skipq_rc rc;

    if ((rc = skipq__yaml_scalar(ld, v, path, "true or false", &s)) != SKIPQ_OK)
        return rc;
    if (strcmp(s, "true") != 0 && strcmp(s, "false") != 0)
        return skipq__yaml_fail_at(ld, v, SKIPQ_ERR_CONFIG,
                                   "%s must be true or false, not %s", path,
                                   skipq__yaml_describe(v, buf, sizeof buf));
    ld->cfg->listen = strcmp(s, "true") == 0;
    return SKIPQ_OK;
}

static const struct key_rule worker_rules[] = {
    {"listen", key_listen},
    {"listen_database", key_listen_database},
    {"queues", key_queues},
    {"priorities", key_priorities},
    {"concurrency", key_concurrency},
    {"prefetch", key_prefetch},
    {"poll_interval", key_poll_interval},
    {"heartbeat_interval", key_heartbeat_interval},
    {"lease_timeout", key_lease_timeout},
    {"shutdown_timeout", key_shutdown_timeout},
    {"retention", key_retention},
    {"vacuum_interval", key_vacuum_interval},
    {"archive_after", key_archive_after},
    {"archive_partition", key_archive_partition},
    {"on_success", key_on_success},
    {"handler_stack_size", key_handler_stack_size},
    {"http", key_http},
};

/* ---- retry ---- */

static skipq_rc
key_max_attempts(struct loader *ld, const char *path, yaml_node_t *v)
{
    skipq_error e;
    skipq_rc rc;
    int n = 0;

    if ((rc = get_int(ld, v, path, &n)) != SKIPQ_OK)
        return rc;
    if ((rc = skipq_config_set_max_attempts(ld->cfg, n, &e)) != SKIPQ_OK)
        return skipq__yaml_wrap(ld, v, rc, &e);
    return SKIPQ_OK;
}

/* The backoff keys each change one field and go through the one setter,
 * with the other fields as they stand. */
static skipq_rc
set_backoff_field(struct loader *ld, yaml_node_t *v, int strategy, int64_t base,
                  int64_t max, double jitter)
{
    skipq_error e;
    skipq_rc rc = skipq_config_set_backoff(ld->cfg, (skipq_backoff)strategy, base, max,
                                           jitter, &e);
    return rc != SKIPQ_OK ? skipq__yaml_wrap(ld, v, rc, &e) : SKIPQ_OK;
}

static skipq_rc
key_strategy(struct loader *ld, const char *path, yaml_node_t *v)
{
    const skipq_config *c = ld->cfg;
    const char *s = NULL;
    skipq_rc rc;

    if ((rc = skipq__yaml_scalar(ld, v, path, "a strategy", &s)) != SKIPQ_OK)
        return rc;
    for (int i = 0; i < (int)(sizeof strategy_names / sizeof *strategy_names); i++)
        if (strcasecmp(s, strategy_names[i]) == 0)
            return set_backoff_field(ld, v, i, c->backoff_base_ms, c->backoff_max_ms,
                                     c->jitter);
    return skipq__yaml_fail_at(ld, v, SKIPQ_ERR_CONFIG,
                               "unknown backoff strategy \"%s\": use fixed, linear or "
                               "exponential",
                               s);
}

static skipq_rc
key_base(struct loader *ld, const char *path, yaml_node_t *v)
{
    const skipq_config *c = ld->cfg;
    int64_t ms = 0;
    skipq_rc rc = get_duration(ld, v, path, &ms);

    return rc != SKIPQ_OK ? rc
                          : set_backoff_field(ld, v, (int)c->backoff, ms, c->backoff_max_ms,
                                              c->jitter);
}

static skipq_rc
key_max(struct loader *ld, const char *path, yaml_node_t *v)
{
    const skipq_config *c = ld->cfg;
    int64_t ms = 0;
    skipq_rc rc = get_duration(ld, v, path, &ms);

    return rc != SKIPQ_OK ? rc
                          : set_backoff_field(ld, v, (int)c->backoff, c->backoff_base_ms,
                                              ms, c->jitter);
}

static skipq_rc
key_jitter(struct loader *ld, const char *path, yaml_node_t *v)
{
    const skipq_config *c = ld->cfg;
    double j = 0;
    skipq_rc rc = get_fraction(ld, v, path, &j);

    return rc != SKIPQ_OK ? rc
                          : set_backoff_field(ld, v, (int)c->backoff, c->backoff_base_ms,
                                              c->backoff_max_ms, j);
}

static const struct key_rule retry_rules[] = {
    {"max_attempts", key_max_attempts},
    {"strategy", key_strategy},
    {"base", key_base},
    {"max", key_max},
    {"jitter", key_jitter},
};

/* ---- handlers ---- */

/* handlers.<kind>.persistent (true or false) and .processes (N), once
 * the command is set. */
static skipq_rc
load_persistent(struct loader *ld, const char *kind, const char *path,
                yaml_node_t *persistent, yaml_node_t *processes)
{
    const char *s = NULL;
    int n = 0;
    skipq_error e;
    skipq_rc rc;
    char kpath[300], buf[48];

    snprintf(kpath, sizeof kpath, "%s.persistent", path);
    if (persistent &&
        (rc = skipq__yaml_scalar(ld, persistent, kpath, "true or false", &s)) != SKIPQ_OK)
        return rc;
    if (s && strcmp(s, "true") != 0 && strcmp(s, "false") != 0)
        return skipq__yaml_fail_at(ld, persistent, SKIPQ_ERR_CONFIG,
                                   "%s must be true or false, not %s", kpath,
                                   skipq__yaml_describe(persistent, buf, sizeof buf));
    snprintf(kpath, sizeof kpath, "%s.processes", path);
    if (processes && (rc = get_int(ld, processes, kpath, &n)) != SKIPQ_OK)
        return rc;
    if (!s || strcmp(s, "true") != 0) {
        if (!processes)
            return SKIPQ_OK;
        return skipq__yaml_fail_at(ld, processes, SKIPQ_ERR_CONFIG,
                                   "%s needs %s.persistent: true", kpath, path);
    }
    if ((rc = skipq_config_set_handler_persistent(ld->cfg, kind, n, &e)) != SKIPQ_OK)
        return skipq__yaml_wrap(ld, processes ? processes : persistent, rc, &e);
    return SKIPQ_OK;
}

static skipq_rc
load_handler(struct loader *ld, const char *kind, yaml_node_t *kind_node, yaml_node_t *v)
{
    yaml_node_t *command = NULL, *timeout = NULL;
    yaml_node_t *persistent = NULL, *processes = NULL;
    const char **argv = NULL;
    int64_t timeout_ms = 0;
    skipq_error e;
    skipq_rc rc;
    char path[256], buf[48];

    snprintf(path, sizeof path, "handlers.%s", kind);
    if ((rc = skipq_check_name("kind", kind, &e)) != SKIPQ_OK)
        return skipq__yaml_wrap(ld, kind_node, rc, &e);
    if (v->type != YAML_MAPPING_NODE)
        return skipq__yaml_fail_at(ld, v, SKIPQ_ERR_CONFIG,
                                   "%s must be a mapping with a command, not %s", path,
                                   skipq__yaml_describe(v, buf, sizeof buf));
    if ((rc = skipq__yaml_visit(ld, v,
                                (size_t)(v->data.mapping.pairs.top -
                                         v->data.mapping.pairs.start))) != SKIPQ_OK)
        return rc;
    /* collect first: the setter takes the command and timeout together */
    for (yaml_node_pair_t *pair = v->data.mapping.pairs.start;
         pair < v->data.mapping.pairs.top; pair++) {
        yaml_node_t *k = yaml_document_get_node(ld->doc, pair->key);
        yaml_node_t *val = yaml_document_get_node(ld->doc, pair->value);
        const char *key = NULL;

        if (!k || !val)
            continue;
        if ((rc = skipq__yaml_scalar(ld, k, "a key", "a string", &key)) != SKIPQ_OK)
            return rc;
        if (strcmp(key, "command") == 0) {
            command = val;
        } else if (strcmp(key, "timeout") == 0) {
            timeout = val;
        } else if (strcmp(key, "persistent") == 0) {
            persistent = val;
        } else if (strcmp(key, "processes") == 0) {
            processes = val;
        } else {
            skipq__yaml_warn_at(ld, k, "unknown key \"%s.%s\" ignored", path, key);
        }
    }
    if (timeout) {
        char tpath[300];

        snprintf(tpath, sizeof tpath, "%s.timeout", path);
        if ((rc = get_duration(ld, timeout, tpath, &timeout_ms)) != SKIPQ_OK)
            return rc;
    }
    if (!command || is_null(command))
        return skipq__yaml_fail_at(ld, command ? command : v, SKIPQ_ERR_CONFIG,
                                   "handler \"%s\" needs a command", kind);

    if (command->type == YAML_SEQUENCE_NODE) {
        /* a list is argv as is: no shell, no quoting surprises */
        yaml_node_item_t *start = command->data.sequence.items.start;
        size_t n = (size_t)(command->data.sequence.items.top - start), i = 0;

        if (n == 0)
            return skipq__yaml_fail_at(ld, command, SKIPQ_ERR_CONFIG,
                                       "handler \"%s\" needs a command", kind);
        if ((rc = skipq__yaml_visit(ld, command, n)) != SKIPQ_OK)
            return rc;
        if (!(argv = calloc(n + 1, sizeof *argv)))
            return skipq__yaml_fail_at(ld, command, SKIPQ_ERR_NOMEM, "out of memory");
        for (; i < n; i++) {
            yaml_node_t *item = yaml_document_get_node(ld->doc, start[i]);
            if (!item) {
                rc = skipq__yaml_fail_at(ld, command, SKIPQ_ERR_CONFIG,
                                         "handler \"%s\" has a broken command", kind);
                goto out;
            }
            if ((rc = skipq__yaml_scalar(ld, item, path, "a list of strings", &argv[i])) !=
                SKIPQ_OK)
                goto out;
        }
        rc = skipq_config_set_handler_command(ld->cfg, kind, argv, timeout_ms, &e);
    } else {
        const char *s = NULL;

        if ((rc = skipq__yaml_scalar(ld, command, path, "a command", &s)) != SKIPQ_OK)
            return rc;
        rc = skipq_config_set_handler_shell(ld->cfg, kind, s, timeout_ms, &e);
    }
    if (rc != SKIPQ_OK)
        rc = skipq__yaml_wrap(ld, command, rc, &e);
    if (rc == SKIPQ_OK && (persistent || processes))
        rc = load_persistent(ld, kind, path, persistent, processes);
out:
    free(argv);
    return rc;
}

static skipq_rc
key_handlers(struct loader *ld, const char *path, yaml_node_t *v)
{
    yaml_node_pair_t *start, *top;
    skipq_rc rc;
    bool *dup;

    if (!section(ld, v, path, &rc))
        return rc;
    start = v->data.mapping.pairs.start;
    top = v->data.mapping.pairs.top;
    /* each handler set is compared with those before it */
    if (top - start > CONFIG_MAX_LIST)
        return skipq__yaml_fail_at(ld, v, SKIPQ_ERR_CONFIG,
                                   "%s has %zu handlers; the limit is %d", path,
                                   (size_t)(top - start), CONFIG_MAX_LIST);
    if ((rc = skipq__yaml_visit(ld, v, (size_t)(top - start))) != SKIPQ_OK)
        return rc;
    if (!(dup = skipq__yaml_repeated_keys(ld, v)))
        return skipq__yaml_fail_at(ld, v, SKIPQ_ERR_NOMEM, "out of memory");
    for (yaml_node_pair_t *pair = start; pair < top && rc == SKIPQ_OK; pair++) {
        yaml_node_t *k = yaml_document_get_node(ld->doc, pair->key);
        yaml_node_t *val = yaml_document_get_node(ld->doc, pair->value);
        const char *kind = NULL;

        if (!k || !val)
            continue;
        if ((rc = skipq__yaml_scalar(ld, k, "a handler kind", "a string", &kind)) !=
            SKIPQ_OK)
            break;
        if (dup[pair - start])
            skipq__yaml_warn_at(ld, k, "duplicate handler \"%s\": the last one wins", kind);
        rc = load_handler(ld, kind, k, val);
    }
    free(dup);
    return rc;
}

/* ---- recover ---- */

static skipq_rc
key_older_than(struct loader *ld, const char *path, yaml_node_t *v)
{
    skipq_error e;
    int64_t ms = 0;
    skipq_rc rc;

    if ((rc = get_duration(ld, v, path, &ms)) != SKIPQ_OK)
        return rc;
    rc = skipq_config_set_recover_defaults(ld->cfg, ms, ld->cfg->recover_limit, &e);
    return rc != SKIPQ_OK ? skipq__yaml_wrap(ld, v, rc, &e) : SKIPQ_OK;
}

static skipq_rc
key_limit(struct loader *ld, const char *path, yaml_node_t *v)
{
    skipq_error e;
    skipq_rc rc;
    int n = 0;

    if ((rc = get_int(ld, v, path, &n)) != SKIPQ_OK)
        return rc;
    rc = skipq_config_set_recover_defaults(ld->cfg, ld->cfg->recover_older_than_ms, n, &e);
    return rc != SKIPQ_OK ? skipq__yaml_wrap(ld, v, rc, &e) : SKIPQ_OK;
}

static const struct key_rule recover_rules[] = {
    {"older_than", key_older_than},
    {"limit", key_limit},
};

/* ---- limits ---- */

static skipq_rc
key_max_payload(struct loader *ld, const char *path, yaml_node_t *v)
{
    skipq_error e;
    size_t bytes = 0;
    skipq_rc rc;

    if ((rc = get_bytes(ld, v, path, &bytes)) != SKIPQ_OK)
        return rc;
    if ((rc = skipq_config_set_max_payload(ld->cfg, bytes, &e)) != SKIPQ_OK)
        return skipq__yaml_wrap(ld, v, rc, &e);
    return SKIPQ_OK;
}

static const struct key_rule limits_rules[] = {
    {"max_payload", key_max_payload},
};

/* ---- serve ---- */

/* A string key, or null to clear it. */
#define SERVE_STRING_KEY(fn, setter)                                            \
    static skipq_rc fn(struct loader *ld, const char *path, yaml_node_t *v)     \
    {                                                                           \
        skipq_error e;                                                          \
        const char *s = NULL;                                                   \
        skipq_rc rc;                                                            \
        if (!is_null(v) &&                                                      \
            (rc = skipq__yaml_scalar(ld, v, path, "a string", &s)) != SKIPQ_OK) \
            return rc;                                                          \
        if ((rc = setter(ld->cfg, s, &e)) != SKIPQ_OK)                          \
            return skipq__yaml_wrap(ld, v, rc, &e);                             \
        return SKIPQ_OK;                                                        \
    }

SERVE_STRING_KEY(key_serve_http, skipq_config_set_serve_http)
SERVE_STRING_KEY(key_admin_token, skipq_config_set_serve_admin_token)
SERVE_STRING_KEY(key_read_token, skipq_config_set_serve_read_token)

static skipq_rc
key_max_body(struct loader *ld, const char *path, yaml_node_t *v)
{
    skipq_error e;
    size_t bytes = 0;
    skipq_rc rc;

    if ((rc = get_bytes(ld, v, path, &bytes)) != SKIPQ_OK)
        return rc;
    rc = skipq_config_set_serve_limits(ld->cfg, bytes, ld->cfg->serve_rate_limit, &e);
    return rc != SKIPQ_OK ? skipq__yaml_wrap(ld, v, rc, &e) : SKIPQ_OK;
}

static skipq_rc
key_rate_limit(struct loader *ld, const char *path, yaml_node_t *v)
{
    skipq_error e;
    skipq_rc rc;
    int n = 0;

    if ((rc = get_int(ld, v, path, &n)) != SKIPQ_OK)
        return rc;
    rc = skipq_config_set_serve_limits(ld->cfg, ld->cfg->serve_max_body, n, &e);
    return rc != SKIPQ_OK ? skipq__yaml_wrap(ld, v, rc, &e) : SKIPQ_OK;
}

static const struct key_rule serve_rules[] = {
    {"http", key_serve_http},       {"admin_token", key_admin_token},
    {"read_token", key_read_token}, {"max_body", key_max_body},
    {"rate_limit", key_rate_limit},
};

/* ---- top level ---- */

#define NRULES(r) (sizeof(r) / sizeof((r)[0]))

#define ON_SECTION(name, rules)                                               \
    static skipq_rc name(struct loader *ld, const char *path, yaml_node_t *v) \
    {                                                                         \
        skipq_rc rc;                                                          \
        if (!section(ld, v, path, &rc))                                       \
            return rc;                                                        \
        return skipq__yaml_walk(ld, v, path, rules, NRULES(rules));           \
    }

ON_SECTION(on_worker, worker_rules)
ON_SECTION(on_retry, retry_rules)
ON_SECTION(on_recover, recover_rules)
ON_SECTION(on_limits, limits_rules)
ON_SECTION(on_serve, serve_rules)

static const struct key_rule top_rules[] = {
    {"database", key_database},           {"worker", on_worker},   {"retry", on_retry},
    {"handlers", key_handlers},           {"recover", on_recover}, {"limits", on_limits},
    {"schedules", skipq__yaml_schedules}, {"serve", on_serve},
};

skipq_rc
skipq__config_apply(struct loader *ld, yaml_node_t *root)
{
    return skipq__yaml_walk(ld, root, "", top_rules, NRULES(top_rules));
}
