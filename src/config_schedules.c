/*
 * config_schedules.c - the config's schedules: section, the periodic jobs
 * a worker puts into skipq.schedules when it starts (worker_schedule.c).
 *
 *   schedules:
 *     nightly-report:
 *       cron: "0 3 * * *"          # or @daily, @every 30s
 *       kind: report
 *       payload: {scope: all}      # a mapping, or a JSON object as a string
 *       time_zone: Europe/Berlin   # default UTC
 *       queue: reports             # default "default"
 *       priority: high             # default normal
 *       missed: catch_up           # default skip
 *
 * What can be checked without the database is checked here, with the line
 * and column: the keys, the names, the payload, the priority and the
 * policy. The cron expression and the zone are checked by the server
 * when the worker starts (skipq.schedule_check): the rules live there
 * once, and the worker refuses to start with the schedule's name and the
 * server's message.
 */
#include "config_internal.h"

#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void
skipq__schedules_free(skipq__schedule_cfg *s, size_t n)
{
    for (size_t i = 0; s && i < n; i++) {
        free(s[i].name);
        free(s[i].cron);
        free(s[i].time_zone);
        free(s[i].kind);
        free(s[i].payload);
        free(s[i].queue);
        free(s[i].missed);
    }
    free(s);
}

static char *
dup_or_null(const char *s, bool *fail)
{
    char *c = s ? strdup(s) : NULL;
    if (s && !c)
        *fail = true;
    return c;
}

skipq__schedule_cfg *
skipq__schedules_dup(const skipq__schedule_cfg *s, size_t n)
{
    skipq__schedule_cfg *c = calloc(n ? n : 1, sizeof *c);
    bool fail = !c;

    for (size_t i = 0; !fail && i < n; i++) {
        c[i].priority = s[i].priority;
        c[i].name = dup_or_null(s[i].name, &fail);
        c[i].cron = dup_or_null(s[i].cron, &fail);
        c[i].time_zone = dup_or_null(s[i].time_zone, &fail);
        c[i].kind = dup_or_null(s[i].kind, &fail);
        c[i].payload = dup_or_null(s[i].payload, &fail);
        c[i].queue = dup_or_null(s[i].queue, &fail);
        c[i].missed = dup_or_null(s[i].missed, &fail);
    }
    if (fail) {
        skipq__schedules_free(c, n);
        return NULL;
    }
    return c;
}

/* ---- a payload given as YAML ------------------------------------------ */

/* A plain scalar as YAML's core schema reads it: null, true/false, an
 * integer, a number; anything quoted, and anything else, is a string. */
static json_object *
scalar_json(const yaml_node_t *n)
{
    const char *v = (const char *)n->data.scalar.value;
    char *end;

    if (n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return json_object_new_string_len(v, (int)n->data.scalar.length);
    if (!*v || strcmp(v, "~") == 0 || strcmp(v, "null") == 0)
        return NULL;
    if (strcmp(v, "true") == 0 || strcmp(v, "false") == 0)
        return json_object_new_boolean(v[0] == 't');
    long long i = strtoll(v, &end, 10);
    if (*v != '+' && end != v && !*end)
        return json_object_new_int64(i);
    double d = strtod(v, &end);
    if (*v != '+' && end != v && !*end && d == d && d - d == 0)
        return json_object_new_double(d);
    return json_object_new_string(v);
}

/* node as JSON (*out; NULL is JSON null); nesting is bounded by the
 * loader's depth limit, and every node counts against its visits. */
static skipq_rc
node_json(struct loader *ld, yaml_node_t *n, json_object **out)
{
    skipq_rc rc = SKIPQ_OK;

    *out = NULL;
    if (n->type == YAML_SCALAR_NODE) {
        *out = scalar_json(n);
        return SKIPQ_OK;
    }
    if (n->type == YAML_SEQUENCE_NODE) {
        yaml_node_item_t *it = n->data.sequence.items.start;
        if ((rc = skipq__yaml_visit(ld, n, (size_t)(n->data.sequence.items.top - it))) !=
            SKIPQ_OK)
            return rc;
        *out = json_object_new_array();
        for (; *out && it < n->data.sequence.items.top && rc == SKIPQ_OK; it++) {
            yaml_node_t *item = yaml_document_get_node(ld->doc, *it);
            json_object *j = NULL;
            if (item && (rc = node_json(ld, item, &j)) == SKIPQ_OK)
                json_object_array_add(*out, j);
        }
        return rc;
    }
    yaml_node_pair_t *p = n->data.mapping.pairs.start;
    if ((rc = skipq__yaml_visit(ld, n, (size_t)(n->data.mapping.pairs.top - p))) !=
        SKIPQ_OK)
        return rc;
    *out = json_object_new_object();
    for (; *out && p < n->data.mapping.pairs.top && rc == SKIPQ_OK; p++) {
        yaml_node_t *k = yaml_document_get_node(ld->doc, p->key);
        yaml_node_t *v = yaml_document_get_node(ld->doc, p->value);
        const char *key = NULL;
        json_object *j = NULL;
        if (!k || !v)
            continue;
        if ((rc = skipq__yaml_scalar(ld, k, "a payload key", "a string", &key)) ==
                SKIPQ_OK &&
            (rc = node_json(ld, v, &j)) == SKIPQ_OK)
            json_object_object_add(*out, key, j);
    }
    return rc;
}

/* The payload as JSON text (*out, malloc'd): a mapping, or a string that
 * holds one JSON object. */
static skipq_rc
get_payload(struct loader *ld, yaml_node_t *v, const char *path, char **out)
{
    json_object *o = NULL;
    skipq_error e;
    skipq_rc rc;
    char buf[48];

    if (v->type == YAML_SCALAR_NODE) {
        const char *s = (const char *)v->data.scalar.value;
        if ((rc = skipq_check_payload(s, v->data.scalar.length, ld->cfg->max_payload,
                                      &e)) != SKIPQ_OK)
            return skipq__yaml_wrap(ld, v, rc, &e);
        *out = strdup(s);
    } else if (v->type == YAML_MAPPING_NODE) {
        if ((rc = node_json(ld, v, &o)) != SKIPQ_OK) {
            json_object_put(o);
            return rc;
        }
        const char *s = o ? json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN)
                          : NULL;
        /* the same limits as any payload (size, depth) */
        if (s && (rc = skipq_check_payload(s, strlen(s), ld->cfg->max_payload, &e)) !=
                     SKIPQ_OK) {
            json_object_put(o);
            return skipq__yaml_wrap(ld, v, rc, &e);
        }
        *out = s ? strdup(s) : NULL;
        json_object_put(o);
    } else {
        return skipq__yaml_fail_at(ld, v, SKIPQ_ERR_CONFIG,
                                   "%s must be a mapping or a JSON object, not %s", path,
                                   skipq__yaml_describe(v, buf, sizeof buf));
    }
    return *out ? SKIPQ_OK : skipq__yaml_fail_at(ld, v, SKIPQ_ERR_NOMEM, "out of memory");
}

/* ---- one schedule ------------------------------------------------------ */

enum { S_CRON, S_KIND, S_PAYLOAD, S_TZ, S_QUEUE, S_PRIORITY, S_MISSED, S_NKEYS };

static const char *const schedule_keys[S_NKEYS] = {
    "cron", "kind", "payload", "time_zone", "queue", "priority", "missed",
};

/* Each key's node (NULL: not given); unknown keys warn. */
static skipq_rc
collect_keys(struct loader *ld, yaml_node_t *v, const char *path, yaml_node_t **nodes)
{
    skipq_rc rc;

    if ((rc = skipq__yaml_visit(ld, v,
                                (size_t)(v->data.mapping.pairs.top -
                                         v->data.mapping.pairs.start))) != SKIPQ_OK)
        return rc;
    for (yaml_node_pair_t *p = v->data.mapping.pairs.start; p < v->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = yaml_document_get_node(ld->doc, p->key);
        yaml_node_t *val = yaml_document_get_node(ld->doc, p->value);
        const char *key = NULL;
        int i;

        if (!k || !val)
            continue;
        if ((rc = skipq__yaml_scalar(ld, k, "a key", "a string", &key)) != SKIPQ_OK)
            return rc;
        for (i = 0; i < S_NKEYS && strcmp(key, schedule_keys[i]) != 0; i++)
            ;
        if (i == S_NKEYS)
            skipq__yaml_warn_at(ld, k, "unknown key \"%s.%s\" ignored", path, key);
        else
            nodes[i] = val;
    }
    return SKIPQ_OK;
}

/* A string key: *out malloc'd (def when not given); name-checked when
 * what is not NULL. */
static skipq_rc
get_text(struct loader *ld, yaml_node_t *n, const char *path, const char *key,
         const char *what, const char *def, char **out)
{
    const char *s = def;
    char kpath[300];
    skipq_error e;
    skipq_rc rc;

    snprintf(kpath, sizeof kpath, "%s.%s", path, key);
    if (n && (rc = skipq__yaml_scalar(ld, n, kpath, "a string", &s)) != SKIPQ_OK)
        return rc;
    if (n && what && (rc = skipq_check_name(what, s, &e)) != SKIPQ_OK)
        return skipq__yaml_wrap(ld, n, rc, &e);
    if (!(*out = strdup(s)))
        return skipq__yaml_fail_at(ld, n, SKIPQ_ERR_NOMEM, "out of memory");
    return SKIPQ_OK;
}

static skipq_rc
load_schedule(struct loader *ld, const char *name, yaml_node_t *name_node, yaml_node_t *v,
              skipq__schedule_cfg *s)
{
    yaml_node_t *nodes[S_NKEYS] = {NULL};
    const char *str = NULL;
    skipq_error e;
    skipq_rc rc;
    char path[256], buf[48];

    snprintf(path, sizeof path, "schedules.%s", name);
    if ((rc = skipq_check_name("schedule name", name, &e)) != SKIPQ_OK)
        return skipq__yaml_wrap(ld, name_node, rc, &e);
    if (v->type != YAML_MAPPING_NODE)
        return skipq__yaml_fail_at(ld, v, SKIPQ_ERR_CONFIG,
                                   "%s must be a mapping with cron and kind, not %s", path,
                                   skipq__yaml_describe(v, buf, sizeof buf));
    if ((rc = collect_keys(ld, v, path, nodes)) != SKIPQ_OK)
        return rc;
    if (!nodes[S_CRON] || !nodes[S_KIND])
        return skipq__yaml_fail_at(ld, v, SKIPQ_ERR_CONFIG, "schedule \"%s\" needs %s",
                                   name,
                                   !nodes[S_CRON] ? "a cron expression (cron:)"
                                                  : "a kind (kind:)");
    if (!(s->name = strdup(name)))
        return skipq__yaml_fail_at(ld, v, SKIPQ_ERR_NOMEM, "out of memory");
    if ((rc = get_text(ld, nodes[S_CRON], path, "cron", "cron expression", NULL,
                       &s->cron)) != SKIPQ_OK ||
        (rc = get_text(ld, nodes[S_KIND], path, "kind", "kind", NULL, &s->kind)) !=
            SKIPQ_OK ||
        (rc = get_text(ld, nodes[S_TZ], path, "time_zone", "time zone", "UTC",
                       &s->time_zone)) != SKIPQ_OK ||
        (rc = get_text(ld, nodes[S_QUEUE], path, "queue", "queue", "default", &s->queue)) !=
            SKIPQ_OK ||
        (rc = get_text(ld, nodes[S_MISSED], path, "missed", NULL, "skip", &s->missed)) !=
            SKIPQ_OK)
        return rc;
    if (strcmp(s->missed, "catch-up") == 0)
        s->missed[5] = '_';
    if (strcmp(s->missed, "skip") != 0 && strcmp(s->missed, "catch_up") != 0)
        return skipq__yaml_fail_at(ld, nodes[S_MISSED], SKIPQ_ERR_CONFIG,
                                   "unknown %s.missed \"%s\": use skip or catch_up", path,
                                   s->missed);
    if (nodes[S_PRIORITY]) {
        if ((rc = skipq__yaml_scalar(ld, nodes[S_PRIORITY], path, "a priority", &str)) !=
            SKIPQ_OK)
            return rc;
        if ((rc = skipq_parse_priority(str, &s->priority, &e)) != SKIPQ_OK)
            return skipq__yaml_wrap(ld, nodes[S_PRIORITY], rc, &e);
    }
    if (nodes[S_PAYLOAD]) {
        char kpath[300];
        snprintf(kpath, sizeof kpath, "%s.payload", path);
        if ((rc = get_payload(ld, nodes[S_PAYLOAD], kpath, &s->payload)) != SKIPQ_OK)
            return rc;
    } else if (!(s->payload = strdup("{}"))) {
        return skipq__yaml_fail_at(ld, v, SKIPQ_ERR_NOMEM, "out of memory");
    }
    return SKIPQ_OK;
}

/* schedules: a mapping of names to schedules; replaces the config's list.
 * An empty section is a list of none: the worker then removes the
 * schedules earlier configs put in (docs/config.md). */
skipq_rc
skipq__yaml_schedules(struct loader *ld, const char *path, yaml_node_t *v)
{
    yaml_node_pair_t *start, *top;
    skipq__schedule_cfg *list = NULL;
    size_t n = 0;
    skipq_rc rc = SKIPQ_OK;
    char buf[48];
    bool *dup = NULL;

    if (v->type == YAML_SCALAR_NODE && v->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
        (!v->data.scalar.length || strcmp((const char *)v->data.scalar.value, "~") == 0 ||
         strcmp((const char *)v->data.scalar.value, "null") == 0))
        goto set; /* "schedules:" alone */
    if (v->type != YAML_MAPPING_NODE)
        return skipq__yaml_fail_at(ld, v, SKIPQ_ERR_CONFIG, "%s must be a mapping, not %s",
                                   path, skipq__yaml_describe(v, buf, sizeof buf));
    start = v->data.mapping.pairs.start;
    top = v->data.mapping.pairs.top;
    if (top - start > CONFIG_MAX_LIST)
        return skipq__yaml_fail_at(ld, v, SKIPQ_ERR_CONFIG,
                                   "%s has %zu schedules; the limit is %d", path,
                                   (size_t)(top - start), CONFIG_MAX_LIST);
    if ((rc = skipq__yaml_visit(ld, v, (size_t)(top - start))) != SKIPQ_OK)
        return rc;
    if (!(dup = skipq__yaml_repeated_keys(ld, v)) ||
        !(list = calloc((size_t)(top - start) + 1, sizeof *list))) {
        free(dup);
        return skipq__yaml_fail_at(ld, v, SKIPQ_ERR_NOMEM, "out of memory");
    }
    for (yaml_node_pair_t *pair = start; pair < top && rc == SKIPQ_OK; pair++) {
        yaml_node_t *k = yaml_document_get_node(ld->doc, pair->key);
        yaml_node_t *val = yaml_document_get_node(ld->doc, pair->value);
        const char *name = NULL;

        if (!k || !val)
            continue;
        if ((rc = skipq__yaml_scalar(ld, k, "a schedule name", "a string", &name)) !=
            SKIPQ_OK)
            break;
        if (dup[pair - start]) { /* two definitions: neither is surely meant */
            rc = skipq__yaml_fail_at(ld, k, SKIPQ_ERR_CONFIG, "duplicate schedule \"%s\"",
                                     name);
            break;
        }
        rc = load_schedule(ld, name, k, val, &list[n++]);
    }
    free(dup);
    if (rc != SKIPQ_OK) {
        skipq__schedules_free(list, n);
        return rc;
    }
set:
    skipq__schedules_free(ld->cfg->schedules, ld->cfg->nschedules);
    ld->cfg->schedules = list;
    ld->cfg->nschedules = n;
    ld->cfg->schedules_set = true;
    return SKIPQ_OK;
}
