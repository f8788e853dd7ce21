/*
 * config_internal.h - what the config modules share: config.c (lifecycle,
 * copies, getters), config_set.c (the typed setters), config_yaml.c
 * (reading a YAML file) and config_keys.c (what each YAML key sets).
 * struct skipq_config itself is in internal.h: the worker reads it too.
 */
#ifndef SKIPQ_CONFIG_INTERNAL_H
#define SKIPQ_CONFIG_INTERNAL_H

#include "internal.h"

#include <yaml.h>

/* The setter's bound, which the loader names when it refuses a value. */
#define MAX_PREFETCH 10000

/*
 * Reading a config takes time and memory linear in its size, whatever
 * the file holds. At most 1 MiB of it is read (--config /dev/zero read
 * until memory ran out). Nesting is refused as soon as it passes 64
 * levels, while libyaml parses: its scanner takes time quadratic in the
 * depth of flow collections (100,000 "[" took 39 s). What libyaml or the
 * setters look up one by one is counted: anchors, aliases and directives
 * (80,000 anchors took 15 s), queues and handlers. And an alias repeats
 * a whole mapping or list wherever it is used, so the keys and items the
 * loader visits are counted too. No real config comes near any of these.
 */
#define CONFIG_MAX_BYTES ((size_t)1 << 20)
#define CONFIG_MAX_DEPTH 64
#define CONFIG_MAX_ANCHORS 1000 /* and as many aliases */
#define CONFIG_MAX_DIRECTIVES 100
#define CONFIG_MAX_LIST 1000      /* queues of a worker; handlers */
#define CONFIG_EXTRA_VISITS 10000 /* visits an alias may add */

/* ---- the struct's parts (config.c) -------------------------------- */

/* "config is NULL", as SKIPQ_ERR_INVALID. */
skipq_rc skipq__no_config(skipq_error *err);
void skipq__strv_free(char **v); /* NULL: no-op */
/* A NULL-terminated copy of argv; NULL when out of memory. */
char **skipq__strv_dup(const char *const *argv);
void skipq__handler_cfg_free(skipq__handler_cfg *h);
void skipq__queues_free(char **queues, size_t n);

/* ---- the YAML reader (config_yaml.c), for the key rules ------------ */

struct loader {
    skipq_config *cfg; /* the working copy */
    yaml_document_t *doc;
    const char *name;
    skipq_error *err;
    size_t visits;     /* keys and list items looked at so far */
    size_t max_visits; /* the document's nodes, plus what aliases may add */
};

typedef skipq_rc (*key_fn)(struct loader *ld, const char *path, yaml_node_t *value);

struct key_rule {
    const char *key;
    key_fn fn;
};

/* The loader's error: SKIPQ_ERR_CONFIG (or NOMEM) with the place; never
 * SKIPQ_OK. */
skipq_rc skipq__yaml_fail_at(struct loader *ld, const yaml_node_t *node, skipq_rc code,
                             const char *fmt, ...) SKIPQ__PRINTF(4, 5);
/* A setter's or parser's error, placed at node. */
skipq_rc skipq__yaml_wrap(struct loader *ld, const yaml_node_t *node, skipq_rc rc,
                          const skipq_error *inner);
/* A warning through the log hook, placed at node; counted in warnings. */
void skipq__yaml_warn_at(struct loader *ld, const yaml_node_t *node, const char *fmt, ...)
    SKIPQ__PRINTF(3, 4);
/* "a list", "a mapping" or the scalar quoted, for type errors. */
const char *skipq__yaml_describe(const yaml_node_t *node, char *buf, size_t size);
/* node as a C string (never NULL), or an error naming what was expected. */
skipq_rc skipq__yaml_scalar(struct loader *ld, const yaml_node_t *node, const char *path,
                            const char *expected, const char **out);
/* Count n keys or items of node against the budget aliases may exhaust. */
skipq_rc skipq__yaml_visit(struct loader *ld, const yaml_node_t *node, size_t n);
/* For each pair of map, whether an earlier pair has the same key. Owned
 * by the caller; NULL when out of memory. */
bool *skipq__yaml_repeated_keys(struct loader *ld, const yaml_node_t *map);
/* Call the rule for each key of map, in file order; unknown keys warn. */
skipq_rc skipq__yaml_walk(struct loader *ld, yaml_node_t *map, const char *prefix,
                          const struct key_rule *rules, size_t nrules);

/* ---- the key rules (config_keys.c) --------------------------------- */

/* schedules: (config_schedules.c) */
skipq_rc skipq__yaml_schedules(struct loader *ld, const char *path, yaml_node_t *v);

/* Apply the document's top-level mapping root to ld->cfg. */
skipq_rc skipq__config_apply(struct loader *ld, yaml_node_t *root);

#endif
