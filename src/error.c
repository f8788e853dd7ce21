/*
 * error.c - filling skipq_error: a code, the SQLSTATE when the server
 * gave one, and a one-line message saying what we were doing.
 */
#include "internal.h"

#include <stdio.h>
#include <string.h>

static const char *const rc_names[] = {
    [SKIPQ_OK] = "ok",
    [SKIPQ_ERR_NOMEM] = "out of memory",
    [SKIPQ_ERR_INVALID] = "invalid input",
    [SKIPQ_ERR_CONFIG] = "invalid config",
    [SKIPQ_ERR_CONNECT] = "could not connect",
    [SKIPQ_ERR_DB] = "database error",
    [SKIPQ_ERR_NOT_FOUND] = "not found",
    [SKIPQ_ERR_SCHEMA] = "schema mismatch",
    [SKIPQ_ERR_IO] = "i/o error",
    [SKIPQ_ERR_STATE] = "invalid state",
};

const char *
skipq_version(void)
{
    return SKIPQ_VERSION;
}

const char *
skipq_rc_name(skipq_rc rc)
{
    if ((unsigned)rc < sizeof rc_names / sizeof rc_names[0] && rc_names[rc])
        return rc_names[rc];
    return "unknown error";
}

skipq_rc
skipq__vfail(skipq_error *err, skipq_rc code, const char *fmt, va_list ap)
{
    if (err) {
        err->code = code;
        err->sqlstate[0] = '\0';
        vsnprintf(err->message, sizeof err->message, fmt, ap);
    }
    return code;
}

skipq_rc
skipq__fail(skipq_error *err, skipq_rc code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    skipq__vfail(err, code, fmt, ap);
    va_end(ap);
    return code;
}

skipq_rc
skipq_rc_from_sqlstate(const char *sqlstate)
{
    /* 22: data exception (bad JSON, bad value); 23: a CHECK or other
     * integrity constraint: the input was wrong, not the database. */
    if (sqlstate && (strncmp(sqlstate, "22", 2) == 0 || strncmp(sqlstate, "23", 2) == 0))
        return SKIPQ_ERR_INVALID;
    return SKIPQ_ERR_DB;
}

skipq_rc
skipq__db_fail(skipq_error *err, PGconn *pg, const PGresult *res, const char *fmt, ...)
{
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    const char *primary = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    char what[256], msg[384];
    va_list ap;
    skipq_rc code = skipq_rc_from_sqlstate(state);

    if (!state && pg && PQstatus(pg) != CONNECTION_OK)
        code = SKIPQ_ERR_CONNECT;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    if (primary)
        snprintf(msg, sizeof msg, "%s", primary);
    else
        snprintf(msg, sizeof msg, "%s",
                 res && *PQresultErrorMessage(res) ? PQresultErrorMessage(res)
                 : pg                              ? PQerrorMessage(pg)
                                                   : "no connection");
    /* libpq ends messages with a newline; ours are one line */
    for (char *p = msg; *p; p++)
        if (*p == '\n')
            *p = (p[1] ? ' ' : '\0');
    if (err) {
        err->code = code;
        snprintf(err->sqlstate, sizeof err->sqlstate, "%s", state ? state : "");
        snprintf(err->message, sizeof err->message, "%s: %s", what, msg);
    }
    return code;
}
