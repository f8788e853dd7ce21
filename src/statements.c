/*
 * statements.c - the statements the library sends, by name.
 */
#include "worker_internal.h"

#include <string.h>

static const struct {
    const char *name;
    const char *text;
} statements[] = {
    {"claim", skipq__claim_sql},
    {"claim_after", skipq__claim_after_sql},
    {"next_run_at", skipq__next_run_at_sql},
    {"cycle", skipq__cycle_sql},
    {"cycle_quick", skipq__cycle_quick_sql},
    {"complete", skipq__complete_sql},
    {"complete_delete", skipq__complete_delete_sql},
};

const char *
skipq_sql_text(const char *name)
{
    if (name == NULL)
        return NULL;
    for (size_t i = 0; i < sizeof statements / sizeof statements[0]; i++)
        if (strcmp(statements[i].name, name) == 0)
            return statements[i].text;
    return NULL;
}
