/*
 * config_yaml.c - reading a YAML config: the file (at most 1 MiB), the
 * checks made while libyaml parses (nesting depth, anchors, aliases,
 * directives), one document only, errors placed at line and column, and
 * walking a mapping key by key with warnings for unknown and repeated
 * keys. What each key sets is config_keys.c's.
 *
 * The loader works on a copy and swaps it in at the end, so a config that
 * fails to load leaves the caller's settings exactly as they were instead
 * of half applied.
 */
#include "config_internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Where a node starts, 1-based as editors count. */
static unsigned long
line_of(const yaml_node_t *node)
{
    return (unsigned long)node->start_mark.line + 1;
}

static unsigned long
column_of(const yaml_node_t *node)
{
    return (unsigned long)node->start_mark.column + 1;
}

/* The loader's error: SKIPQ_ERR_CONFIG (or NOMEM) with the place. */
skipq_rc
skipq__yaml_fail_at(struct loader *ld, const yaml_node_t *node, skipq_rc code,
                    const char *fmt, ...)
{
    char msg[sizeof ld->err->message];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    code = code == SKIPQ_ERR_NOMEM ? code : SKIPQ_ERR_CONFIG;
    (void)skipq__fail(ld->err, code,
                      "could not load config \"%s\": line %lu, column %lu: "
                      "%s",
                      ld->name, line_of(node), column_of(node), msg);
    return code; /* never SKIPQ_OK, which the callers rely on */
}

/* A setter's or parser's error, placed at node. */
skipq_rc
skipq__yaml_wrap(struct loader *ld, const yaml_node_t *node, skipq_rc rc,
                 const skipq_error *inner)
{
    return skipq__yaml_fail_at(ld, node, rc, "%s", inner->message);
}

void
skipq__yaml_warn_at(struct loader *ld, const yaml_node_t *node, const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    ld->cfg->warnings++;
    skipq__log(SKIPQ_LOG_WARN, "config \"%s\": line %lu, column %lu: %s", ld->name,
               line_of(node), column_of(node), msg);
}

/* "a list", "a mapping" or the scalar quoted, for type errors. */
const char *
skipq__yaml_describe(const yaml_node_t *node, char *buf, size_t size)
{
    if (node->type == YAML_SEQUENCE_NODE)
        return "a list";
    if (node->type == YAML_MAPPING_NODE)
        return "a mapping";
    if (node->type != YAML_SCALAR_NODE)
        return "nothing";
    if (node->data.scalar.length > 40)
        snprintf(buf, size, "\"%.36s...\"", (const char *)node->data.scalar.value);
    else
        snprintf(buf, size, "\"%s\"", (const char *)node->data.scalar.value);
    return buf;
}

/* node as a C string, or an error naming what was expected. */
skipq_rc
skipq__yaml_scalar(struct loader *ld, const yaml_node_t *node, const char *path,
                   const char *expected, const char **out)
{
    char buf[48];

    *out = ""; /* never NULL, also on the error paths */
    if (node->type != YAML_SCALAR_NODE)
        return skipq__yaml_fail_at(ld, node, SKIPQ_ERR_CONFIG, "%s must be %s, not %s",
                                   path, expected,
                                   skipq__yaml_describe(node, buf, sizeof buf));
    /* "\0" is valid YAML; C strings would silently cut it short */
    if (strlen((const char *)node->data.scalar.value) != node->data.scalar.length)
        return skipq__yaml_fail_at(ld, node, SKIPQ_ERR_CONFIG,
                                   "%s must not contain a NUL character", path);
    *out = (const char *)node->data.scalar.value;
    return SKIPQ_OK;
}

/* Count n keys or items of node against the loader's budget: without
 * aliases each node is visited once, so only aliases can exhaust it. */
skipq_rc
skipq__yaml_visit(struct loader *ld, const yaml_node_t *node, size_t n)
{
    ld->visits += n;
    if (ld->visits <= ld->max_visits)
        return SKIPQ_OK;
    return skipq__yaml_fail_at(ld, node, SKIPQ_ERR_CONFIG,
                               "aliases repeat more keys and items than the config holds "
                               "(%zu)",
                               ld->max_visits);
}

struct key_ref {
    const char *key;
    size_t i;
};

static int
cmp_key_ref(const void *a, const void *b)
{
    const struct key_ref *x = a, *y = b;
    int c = strcmp(x->key, y->key);

    return c ? c : (x->i > y->i) - (x->i < y->i);
}

/*
 * For each pair of map, whether an earlier pair has the same (scalar)
 * key: by sorting, so a mapping of n keys costs n log n. Comparing each
 * key with every earlier one took 30 s for 40,000 keys. Owned by the
 * caller; NULL when out of memory.
 */
bool *
skipq__yaml_repeated_keys(struct loader *ld, const yaml_node_t *map)
{
    yaml_node_pair_t *start = map->data.mapping.pairs.start;
    size_t n = (size_t)(map->data.mapping.pairs.top - start), m = 0;
    bool *dup = calloc(n ? n : 1, sizeof *dup);
    struct key_ref *refs = malloc((n ? n : 1) * sizeof *refs);

    if (!dup || !refs) {
        free(dup);
        free(refs);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *k = yaml_document_get_node(ld->doc, start[i].key);
        if (k && k->type == YAML_SCALAR_NODE && k->data.scalar.value)
            refs[m++] = (struct key_ref){(const char *)k->data.scalar.value, i};
    }
    qsort(refs, m, sizeof *refs, cmp_key_ref);
    for (size_t j = 1; j < m; j++)
        if (strcmp(refs[j - 1].key, refs[j].key) == 0)
            dup[refs[j].i] = true;
    free(refs);
    return dup;
}

/*
 * Call the rule for each key of map, in file order (so a repeated key's
 * last value wins, as most YAML readers do; we also warn about it).
 * Unknown keys are warnings, not errors: a config written for a newer
 * skipq should still start an older worker.
 */
skipq_rc
skipq__yaml_walk(struct loader *ld, yaml_node_t *map, const char *prefix,
                 const struct key_rule *rules, size_t nrules)
{
    yaml_node_pair_t *start = map->data.mapping.pairs.start;
    yaml_node_pair_t *top = map->data.mapping.pairs.top;
    skipq_rc rc;
    bool *dup;

    if ((rc = skipq__yaml_visit(ld, map, (size_t)(top - start))) != SKIPQ_OK)
        return rc;
    if (!(dup = skipq__yaml_repeated_keys(ld, map)))
        return skipq__yaml_fail_at(ld, map, SKIPQ_ERR_NOMEM, "out of memory");
    for (yaml_node_pair_t *pair = start; pair < top && rc == SKIPQ_OK; pair++) {
        yaml_node_t *k = yaml_document_get_node(ld->doc, pair->key);
        yaml_node_t *v = yaml_document_get_node(ld->doc, pair->value);
        char path[256];
        const char *key = NULL;
        size_t i;

        if (!k || !v)
            continue;
        if (k->type != YAML_SCALAR_NODE) {
            rc = skipq__yaml_fail_at(ld, k, SKIPQ_ERR_CONFIG, "keys must be strings%s%s",
                                     *prefix ? " in " : "", prefix);
            break;
        }
        if ((rc = skipq__yaml_scalar(ld, k, "a key", "a string", &key)) != SKIPQ_OK)
            break;
        snprintf(path, sizeof path, "%s%s%s", prefix, *prefix ? "." : "", key);
        if (dup[pair - start])
            skipq__yaml_warn_at(ld, k, "duplicate key \"%s\": the last one wins", path);
        for (i = 0; i < nrules; i++)
            if (strcmp(rules[i].key, key) == 0)
                break;
        if (i == nrules) {
            skipq__yaml_warn_at(ld, k, "unknown key \"%s\" ignored", path);
            continue;
        }
        rc = rules[i].fn(ld, path, v);
    }
    free(dup);
    return rc;
}

/* libyaml's own complaint, placed where it found the problem. */
static skipq_rc
syntax_error(const yaml_parser_t *p, const char *name, skipq_error *err)
{
    const char *problem = p->problem ? p->problem : "could not parse";

    if (p->error == YAML_MEMORY_ERROR)
        return skipq__fail(err, SKIPQ_ERR_NOMEM,
                           "could not load config \"%s\": out of memory", name);
    if (p->error == YAML_READER_ERROR)
        return skipq__fail(err, SKIPQ_ERR_CONFIG,
                           "could not load config \"%s\": byte %zu: %s", name,
                           p->problem_offset, problem);
    if (p->context)
        return skipq__fail(err, SKIPQ_ERR_CONFIG,
                           "could not load config \"%s\": line %lu, column %lu: %s %s "
                           "started at line %lu, column %lu",
                           name, (unsigned long)p->problem_mark.line + 1,
                           (unsigned long)p->problem_mark.column + 1, problem, p->context,
                           (unsigned long)p->context_mark.line + 1,
                           (unsigned long)p->context_mark.column + 1);
    return skipq__fail(err, SKIPQ_ERR_CONFIG,
                       "could not load config \"%s\": line %lu, column %lu: %s", name,
                       (unsigned long)p->problem_mark.line + 1,
                       (unsigned long)p->problem_mark.column + 1, problem);
}

/* The precheck's error, at the event's place. */
static skipq_rc
fail_at_mark(const char *name, yaml_mark_t mark, skipq_error *err, const char *what)
{
    return skipq__fail(err, SKIPQ_ERR_CONFIG,
                       "could not load config \"%s\": line %lu, column %lu: %s", name,
                       (unsigned long)mark.line + 1, (unsigned long)mark.column + 1, what);
}

/*
 * Before libyaml builds the document: libyaml takes time quadratic in the
 * number of directives of a document (each is compared with those before
 * it, before the document starts), which a line count bounds; then the
 * events, in one pass that stops at the first level too deep or the
 * anchor or alias too many, so a pathological file costs no more than
 * its first few kilobytes. Syntax errors are found here too.
 */
static skipq_rc
precheck(const char *yaml, size_t len, const char *name, skipq_error *err)
{
    yaml_parser_t parser;
    yaml_event_t ev;
    size_t directives = 0, depth = 0, anchors = 0, aliases = 0;
    char what[64];
    skipq_rc rc = SKIPQ_OK;

    /* libyaml takes any '%' at the start of a line for a directive */
    for (size_t i = 0; i < len; i++) {
        if (yaml[i] == '%' && (i == 0 || yaml[i - 1] == '\n' || yaml[i - 1] == '\r') &&
            ++directives > CONFIG_MAX_DIRECTIVES) {
            unsigned long line = 1;
            for (size_t j = 0; j < i; j++)
                line += yaml[j] == '\n';
            return skipq__fail(err, SKIPQ_ERR_CONFIG,
                               "could not load config \"%s\": line %lu: more "
                               "than %d directives (lines starting with %%)",
                               name, line, CONFIG_MAX_DIRECTIVES);
        }
    }
    if (!yaml_parser_initialize(&parser))
        return skipq__fail(err, SKIPQ_ERR_NOMEM,
                           "could not load config \"%s\": out of memory", name);
    yaml_parser_set_input_string(&parser, (const unsigned char *)yaml, len);
    for (;;) {
        const yaml_char_t *anchor = NULL;
        bool done;

        if (!yaml_parser_parse(&parser, &ev)) {
            rc = syntax_error(&parser, name, err);
            break;
        }
        what[0] = '\0';
        switch (ev.type) {
        case YAML_MAPPING_START_EVENT:
            anchor = ev.data.mapping_start.anchor;
            if (++depth > CONFIG_MAX_DEPTH)
                snprintf(what, sizeof what, "nesting deeper than %d levels",
                         CONFIG_MAX_DEPTH);
            break;
        case YAML_SEQUENCE_START_EVENT:
            anchor = ev.data.sequence_start.anchor;
            if (++depth > CONFIG_MAX_DEPTH)
                snprintf(what, sizeof what, "nesting deeper than %d levels",
                         CONFIG_MAX_DEPTH);
            break;
        case YAML_MAPPING_END_EVENT:
        case YAML_SEQUENCE_END_EVENT:
            depth--;
            break;
        case YAML_SCALAR_EVENT:
            anchor = ev.data.scalar.anchor;
            break;
        case YAML_ALIAS_EVENT:
            if (++aliases > CONFIG_MAX_ANCHORS)
                snprintf(what, sizeof what, "more than %d aliases", CONFIG_MAX_ANCHORS);
            break;
        default:
            break;
        }
        if (anchor && ++anchors > CONFIG_MAX_ANCHORS)
            snprintf(what, sizeof what, "more than %d anchors", CONFIG_MAX_ANCHORS);
        if (what[0])
            rc = fail_at_mark(name, ev.start_mark, err, what);
        done = ev.type == YAML_STREAM_END_EVENT;
        yaml_event_delete(&ev);
        if (rc != SKIPQ_OK || done)
            break;
    }
    yaml_parser_delete(&parser);
    return rc;
}

static skipq_rc
load_document(skipq_config *work, yaml_parser_t *parser, const char *name, skipq_error *err)
{
    yaml_document_t doc, extra;
    yaml_node_t *root;
    skipq_rc rc;
    char buf[48];

    if (!yaml_parser_load(parser, &doc))
        return syntax_error(parser, name, err);
    root = yaml_document_get_root_node(&doc);
    if (!root) {
        /* nothing but comments and blank lines counts as empty too */
        rc = skipq__fail(err, SKIPQ_ERR_CONFIG,
                         "could not load config \"%s\": file is empty", name);
        goto out;
    }
    struct loader ld = {
        work, &doc, name,
        err,  0,    (size_t)(doc.nodes.top - doc.nodes.start) + CONFIG_EXTRA_VISITS};
    if (root->type != YAML_MAPPING_NODE) {
        rc = skipq__yaml_fail_at(&ld, root, SKIPQ_ERR_CONFIG,
                                 "the top level must be a mapping of settings, not %s",
                                 skipq__yaml_describe(root, buf, sizeof buf));
        goto out;
    }
    if ((rc = skipq__config_apply(&ld, root)) != SKIPQ_OK)
        goto out;

    /* "---" then a second document is almost surely two files pasted
     * together; reading only the first would hide half of them */
    if (!yaml_parser_load(parser, &extra)) {
        rc = syntax_error(parser, name, err);
        goto out;
    }
    root = yaml_document_get_root_node(&extra);
    if (root)
        rc = skipq__yaml_fail_at(&ld, root, SKIPQ_ERR_CONFIG,
                                 "more than one YAML document");
    yaml_document_delete(&extra);
out:
    yaml_document_delete(&doc);
    return rc;
}

static skipq_rc
too_large(const char *name, skipq_error *err)
{
    return skipq__fail(err, SKIPQ_ERR_CONFIG,
                       "could not load config \"%s\": more than %zu bytes, "
                       "the limit for a config (1 MiB)",
                       name, CONFIG_MAX_BYTES);
}

skipq_rc
skipq_config_load_string(skipq_config *cfg, const char *yaml, size_t len, const char *name,
                         skipq_error *err)
{
    yaml_parser_t parser;
    skipq_config *work;
    skipq_rc rc;

    if (!name)
        name = "<string>";
    if (!cfg)
        return skipq__no_config(err);
    if (!yaml)
        len = 0;
    if (len > CONFIG_MAX_BYTES)
        return too_large(name, err);
    if ((rc = precheck(yaml ? yaml : "", len, name, err)) != SKIPQ_OK)
        return rc;
    if (!(work = skipq__config_dup(cfg)))
        return skipq__fail(err, SKIPQ_ERR_NOMEM,
                           "could not load config \"%s\": out of memory", name);
    if (!yaml_parser_initialize(&parser)) {
        skipq_config_free(work);
        return skipq__fail(err, SKIPQ_ERR_NOMEM,
                           "could not load config \"%s\": out of memory", name);
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)(yaml ? yaml : ""), len);
    rc = load_document(work, &parser, name, err);
    yaml_parser_delete(&parser);
    if (rc == SKIPQ_OK) {
        /* swap contents, so the caller's pointer stays valid */
        struct skipq_config tmp = *cfg;
        *cfg = *work;
        *work = tmp;
    } else {
        /* the settings stay as they were, but what was said was said */
        cfg->warnings = work->warnings;
    }
    skipq_config_free(work);
    return rc;
}

skipq_rc
skipq_config_load(skipq_config *cfg, const char *path, skipq_error *err)
{
    FILE *f;
    char *buf = NULL, *grown;
    size_t len = 0, cap = 0, n;
    skipq_rc rc;

    if (!path)
        return skipq__fail(err, SKIPQ_ERR_CONFIG, "could not load config: no file name");
    if (!(f = fopen(path, "rb")))
        return skipq__fail(err, SKIPQ_ERR_CONFIG, "could not load config \"%s\": %s", path,
                           strerror(errno));
    /* one byte past the limit tells a file at the limit from a longer
     * one, /dev/zero included, without reading on */
    while (len <= CONFIG_MAX_BYTES) {
        if (len == cap) {
            cap = cap ? cap * 2 : 4096;
            if (cap > CONFIG_MAX_BYTES + 1)
                cap = CONFIG_MAX_BYTES + 1;
            if (!(grown = realloc(buf, cap))) {
                rc = skipq__fail(err, SKIPQ_ERR_NOMEM,
                                 "could not load config \"%s\": out of memory", path);
                goto out;
            }
            buf = grown;
        }
        n = fread(buf + len, 1, cap - len, f);
        len += n;
        if (n == 0)
            break;
    }
    if (ferror(f)) {
        /* e.g. EISDIR: fopen succeeds on a directory, reading fails */
        rc = skipq__fail(err, SKIPQ_ERR_CONFIG, "could not load config \"%s\": %s", path,
                         strerror(errno ? errno : EIO));
        goto out;
    }
    if (len > CONFIG_MAX_BYTES) {
        rc = too_large(path, err);
        goto out;
    }
    rc = skipq_config_load_string(cfg, buf, len, path, err);
out:
    free(buf);
    fclose(f);
    return rc;
}
