/*
 * jobs_filter.c - the tag and meta filters that `jobs ls`, `jobs cancel`,
 * `jobs retry` and `recover` share: --tag T (repeatable; the job has
 * every tag given) and --meta KEY=VALUE (repeatable; the job's meta
 * contains every pair, jsonb containment). Both go to the server as one
 * JSON parameter each, never as SQL text.
 */
#include "cli.h"
#include "skipq_json.h"

#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>

/* A tag is what a producer may store: 1..200 bytes of UTF-8 (the name
 * rules), so a typo'd empty --tag '' is refused rather than matching
 * nothing. */
static int
add_tag(struct cli_job_filter *f, const char *tag)
{
    int rc;

    if ((rc = cli_check_name("tag", tag)) != 0)
        return rc;
    if (!f->tags && !(f->tags = json_object_new_array()))
        return cli_errorf(CLI_EXIT_FAIL, "out of memory");
    json_object_array_add(f->tags, json_object_new_string(tag));
    return 0;
}

/* KEY=VALUE: VALUE is JSON when it reads as JSON (42, true, "42",
 * {"a": 1}), else a string. */
static int
add_meta(struct cli_job_filter *f, const char *arg)
{
    const char *eq = strchr(arg, '=');
    json_object *v = NULL;
    char *key;

    if (!eq || eq == arg)
        return cli_usage_error("--meta: expected KEY=VALUE, not \"%.64s\"", arg);
    if (!(key = strndup(arg, (size_t)(eq - arg))))
        return cli_errorf(CLI_EXIT_FAIL, "out of memory");
    if (skipq_json_parse(eq + 1, (size_t)-1, JSON_TOKENER_STRICT, &v, NULL) != SKIPQ_OK ||
        !*(eq + 1))
        v = json_object_new_string(eq + 1);
    if (!f->meta && !(f->meta = json_object_new_object())) {
        json_object_put(v);
        free(key);
        return cli_errorf(CLI_EXIT_FAIL, "out of memory");
    }
    json_object_object_add(f->meta, key, v);
    free(key);
    return 0;
}

int
cli_filter_opt(struct cli_job_filter *f, int c, const char *arg)
{
    if (c == CLI_OPT_TAG)
        return add_tag(f, arg);
    if (c == CLI_OPT_META)
        return add_meta(f, arg);
    return CLI_NEXT;
}

static const char *
json_text(json_object *o)
{
    return o ? json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
                                                     JSON_C_TO_STRING_NOSLASHESCAPE)
             : NULL;
}

const char *
cli_filter_tags(const struct cli_job_filter *f)
{
    return json_text(f->tags);
}

const char *
cli_filter_meta(const struct cli_job_filter *f)
{
    return json_text(f->meta);
}

int
cli_filter_any(const struct cli_job_filter *f)
{
    return f->tags || f->meta;
}

void
cli_filter_free(struct cli_job_filter *f)
{
    json_object_put(f->tags);
    json_object_put(f->meta);
    f->tags = f->meta = NULL;
}
