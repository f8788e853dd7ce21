/*
 * test_search_path.c - a producer who may create objects in schema public
 * (PostgreSQL 14 and older, upgraded databases, or an explicit GRANT)
 * plants functions and operators there that shadow the ones skipq's
 * statements and SQL functions use, then every CLI command and a worker
 * run as the producer, worker, admin and superuser roles. None of the
 * planted objects may run: had one run, it would have run with the
 * rights of whoever ran skipq (docs/security.md, "Objects other roles
 * planted: search_path").
 *
 * pg_catalog is searched first, so a planted object can only win where it
 * matches the argument types better than pg_catalog's own: a polymorphic
 * or variadic "any" function (cardinality, unnest, jsonb_build_object,
 * format, to_json, array_agg ...), an enum or array comparison (which
 * pg_catalog's anyenum/anyarray operators serve), or an operator that
 * needs a cast (integer * interval, oid = integer, text || bigint). The
 * planting below finds every such (name, argument types) for the names
 * skipq uses and the types it passes, and plants one that records it ran
 * and then does what the real one does (so a run is counted, not turned
 * into a failure somewhere else). The count is a sequence: nextval is not
 * undone when the statement that ran the shadow fails and rolls back.
 *
 * Roles are cluster-wide and tests run at once: the login roles get names
 * unique to this process and are dropped at exit, passed or not.
 */
#include "skipq.h"
#include "testlib.h"

#include <signal.h>
#include <unistd.h>

/* ---- the planted objects ---------------------------------------------- */

/*
 * The recording: public.shadow_hits counts every run, public.shadow_log
 * says what ran, as whom and in which statement (lost with a rollback).
 * Both are the producer's, writable by every role.
 */
static const char plant_recorder_sql[] =
    "CREATE SEQUENCE public.shadow_hits;"
    "CREATE TABLE public.shadow_log ("
    "  what text, who name DEFAULT current_user,"
    "  query text DEFAULT pg_catalog.current_query());"
    "GRANT USAGE, UPDATE ON SEQUENCE public.shadow_hits TO PUBLIC;"
    "GRANT INSERT ON public.shadow_log TO PUBLIC;"
    "CREATE FUNCTION public.shadow_fired(what_ran text) RETURNS void"
    " LANGUAGE plpgsql AS $$ BEGIN"
    "  PERFORM pg_catalog.nextval('public.shadow_hits'::pg_catalog.regclass);"
    "  INSERT INTO public.shadow_log (what) VALUES (what_ran);"
    " END $$;";

/*
 * The types skipq's statements and functions pass to operators and
 * functions. The planting SQL itself names every function and operator by
 * schema: the producer's own session would otherwise resolve its names to
 * what it has just planted.
 */
#define SHADOW_TYPES                                                            \
    "ARRAY['skipq.job_status', 'skipq.backoff_strategy', 'skipq.job_status[]'," \
    " 'bigint', 'integer', 'smallint', 'numeric', 'double precision', 'text',"  \
    " 'name', '\"char\"', 'oid', 'regclass', 'jsonb', 'json', 'timestamptz',"   \
    " 'interval', 'boolean', 'bigint[]', 'integer[]', 'smallint[]', 'text[]',"  \
    " 'tid', 'tid[]']"

/*
 * Operators: for each name and pair of types for which pg_catalog has no
 * exact operator but resolves one (through anyenum, anyarray, anynonarray
 * or an implicit cast), plant the exact one. And (l, l) where pg_catalog
 * resolves `l op 'literal'` only with another right type: an untyped
 * literal is taken as the other side's type, so an exact (l, l) would win
 * (payload -> 'key', status = 'queued'). Those return NULL: the literal
 * was read as l, not as the type the built-in takes.
 */
static const char plant_operators_sql[] =
    "DO $plant$ DECLARE"
    "  ops text[] := ARRAY['=', '<>', '<', '>', '<=', '>=', '+', '-', '*', '/',"
    "    '||', '->', '->>', '#>', '#>>', '~', '~~', '@>', '<@', '?'];"
    "  types text[] := " SHADOW_TYPES ";"
    "  o text; l text; r text; rt text; body text; fn text; n int := 0;"
    " BEGIN"
    "  types := ARRAY(SELECT t FROM pg_catalog.unnest(types) t"
    "                 WHERE pg_catalog.to_regtype(t) IS NOT NULL);"
    "  FOREACH o IN ARRAY ops LOOP FOREACH l IN ARRAY types LOOP"
    "  FOREACH r IN ARRAY types LOOP"
    "   CONTINUE WHEN EXISTS (SELECT FROM pg_catalog.pg_operator p"
    "     WHERE p.oprname OPERATOR(pg_catalog.=) o"
    "       AND p.oprleft OPERATOR(pg_catalog.=) l::pg_catalog.regtype::pg_catalog.oid"
    "       AND p.oprright OPERATOR(pg_catalog.=) r::pg_catalog.regtype::pg_catalog.oid"
    "       AND p.oprnamespace OPERATOR(pg_catalog.=)"
    "           'pg_catalog'::pg_catalog.regnamespace::pg_catalog.oid);"
    "   BEGIN"
    "    EXECUTE pg_catalog.format('SELECT pg_catalog.pg_typeof(NULL::%s"
    "      OPERATOR(pg_catalog.%s) NULL::%s)::pg_catalog.text', l, o, r) INTO rt;"
    "    body := pg_catalog.format('$1 OPERATOR(pg_catalog.%s) $2', o);"
    "   EXCEPTION WHEN OTHERS THEN"
    "    CONTINUE WHEN l IS DISTINCT FROM r;"
    "    BEGIN"
    "     EXECUTE pg_catalog.format('SELECT pg_catalog.pg_typeof(NULL::%s"
    "       OPERATOR(pg_catalog.%s) NULL)::pg_catalog.text', l, o) INTO rt;"
    "     body := 'NULL';"
    "    EXCEPTION WHEN OTHERS THEN CONTINUE;"
    "    END;"
    "   END;"
    "   n := n OPERATOR(pg_catalog.+) 1;"
    "   fn := pg_catalog.format('public.shadow_op_%s', n);"
    "   EXECUTE pg_catalog.format("
    "     'CREATE FUNCTION %s(%s, %s) RETURNS %s LANGUAGE plpgsql AS %L', fn, l, r, rt,"
    "     pg_catalog.format('BEGIN PERFORM public.shadow_fired(%L); RETURN %s; END',"
    "       pg_catalog.format('operator %s (%s, %s)', o, l, r), body));"
    "   EXECUTE pg_catalog.format("
    "     'CREATE OPERATOR public.%s (LEFTARG = %s, RIGHTARG = %s, FUNCTION = %s)',"
    "     o, l, r, fn);"
    "  END LOOP; END LOOP; END LOOP;"
    " END $plant$;";

/*
 * Functions and aggregates skipq calls, with one or two arguments of the
 * types above: each (name, types) pg_catalog resolves without an exact
 * match. The variadic "any" ones (jsonb_build_object, format) are planted
 * with the argument types of the calls skipq makes; their first argument
 * is an untyped literal, which an exact text parameter beats as well.
 */
static const char plant_functions_sql[] =
    "DO $plant$ DECLARE"
    "  names text[] := ARRAY['lower', 'btrim', 'current_setting', 'set_config',"
    "    'pg_notify', 'cardinality', 'unnest', 'to_json', 'to_jsonb',"
    "    'string_to_array', 'array_to_string', 'array_length', 'hashtext',"
    "    'has_table_privilege', 'pg_has_role', 'to_regclass', 'pg_advisory_lock',"
    "    'pg_advisory_lock_shared', 'pg_advisory_unlock', 'pg_advisory_unlock_shared',"
    "    'pg_advisory_xact_lock', 'pg_try_advisory_lock', 'pg_try_advisory_lock_shared',"
    "    'pg_try_advisory_xact_lock', 'pg_stat_get_dead_tuples', 'pg_stat_get_live_tuples',"
    "    'pg_stat_get_last_vacuum_time', 'pg_stat_get_last_autovacuum_time',"
    "    'jsonb_array_length', 'octet_length', 'jsonb_typeof', 'pg_column_size',"
    "    'pg_table_size', 'pg_indexes_size', 'date_part', 'extract', 'length',"
    "    'array_position', 'array_append', 'array_cat', 'nextval'];"
    "  aggs text[] := ARRAY['count', 'max', 'min', 'array_agg', 'sum', 'jsonb_agg',"
    "    'json_agg', 'bool_and', 'bool_or'];"
    "  calls text[] := ARRAY["
    "    'jsonb_build_object(text, integer, text, timestamptz, text, bigint, text, text)',"
    "    'jsonb_build_object(text, timestamptz, text, boolean, text, skipq.job_status, text, name)',"
    "    'jsonb_build_object(text, timestamptz, text, boolean, text, text, text, name)',"
    "    'format(text, bigint)', 'format(text, bigint, bigint)', 'format(text, text)',"
    "    'format(text, name)', 'format(text, text, text)'];"
    "  types text[] := " SHADOW_TYPES ";"
    "  f text; a text; b text; args text; rt text; fn text; n int := 0; agg boolean;"
    " BEGIN"
    "  types := ARRAY(SELECT t FROM pg_catalog.unnest(types) t"
    "                 WHERE pg_catalog.to_regtype(t) IS NOT NULL);"
    "  FOREACH f IN ARRAY pg_catalog.array_cat(names, aggs) LOOP"
    "   agg := f OPERATOR(pg_catalog.=) ANY (aggs);"
    "   FOREACH a IN ARRAY types LOOP"
    "   FOREACH b IN ARRAY pg_catalog.array_prepend(NULL::text, types) LOOP"
    "    CONTINUE WHEN agg AND (b IS NOT NULL OR a LIKE '%[]');"
    "    args := CASE WHEN b IS NULL THEN a ELSE pg_catalog.format('%s, %s', a, b) END;"
    /*   pg_catalog's own hides ours; or pg_catalog has none of that arity */
    "    CONTINUE WHEN EXISTS (SELECT FROM pg_catalog.pg_proc p"
    "      WHERE p.proname OPERATOR(pg_catalog.=) f"
    "        AND p.pronamespace OPERATOR(pg_catalog.=)"
    "            'pg_catalog'::pg_catalog.regnamespace::pg_catalog.oid"
    "        AND p.proargtypes OPERATOR(pg_catalog.=) pg_catalog.format('%s %s',"
    "            a::pg_catalog.regtype::pg_catalog.oid,"
    "            b::pg_catalog.regtype::pg_catalog.oid)::pg_catalog.oidvector);"
    "    CONTINUE WHEN NOT EXISTS (SELECT FROM pg_catalog.pg_proc p"
    "      WHERE p.proname OPERATOR(pg_catalog.=) f"
    "        AND p.pronamespace OPERATOR(pg_catalog.=)"
    "            'pg_catalog'::pg_catalog.regnamespace::pg_catalog.oid"
    "        AND p.pronargs OPERATOR(pg_catalog.=) CASE WHEN b IS NULL THEN 1 ELSE 2 END);"
    "    BEGIN"
    /*    the result type, without calling the function (LIMIT 0) */
    "     EXECUTE pg_catalog.format('SELECT pg_catalog.pg_typeof(s.x)::pg_catalog.text"
    "       FROM (SELECT) d LEFT JOIN (SELECT pg_catalog.%I(%s) AS x LIMIT 0) s ON true',"
    "       f, CASE WHEN b IS NULL THEN pg_catalog.format('NULL::%s', a)"
    "               ELSE pg_catalog.format('NULL::%s, NULL::%s', a, b) END) INTO rt;"
    "    EXCEPTION WHEN OTHERS THEN CONTINUE;"
    "    END;"
    "    n := n OPERATOR(pg_catalog.+) 1;"
    "    fn := pg_catalog.format('public.shadow_fn_%s', n);"
    "    IF agg THEN"
    /*    the inputs gathered, and pg_catalog's aggregate over them at the end */
    "     EXECUTE pg_catalog.format("
    "       'CREATE FUNCTION %s(s %s[], v %s) RETURNS %s[] LANGUAGE plpgsql AS %L', fn, a, a, a,"
    "       pg_catalog.format('BEGIN PERFORM public.shadow_fired(%L);"
    "         RETURN pg_catalog.array_append(s, v); END',"
    "         pg_catalog.format('aggregate %s(%s)', f, a)));"
    "     EXECUTE pg_catalog.format("
    "       'CREATE FUNCTION %s_final(s %s[]) RETURNS %s LANGUAGE sql AS %L', fn, a, rt,"
    "       pg_catalog.format('SELECT pg_catalog.%I(x) FROM pg_catalog.unnest(s) x', f));"
    "     EXECUTE pg_catalog.format('CREATE AGGREGATE public.%I(%s) (SFUNC = %s,"
    "       STYPE = %s[], FINALFUNC = %s_final)', f, a, fn, a, fn);"
    "    ELSE"
    "     EXECUTE pg_catalog.format("
    "       'CREATE FUNCTION public.%I(%s) RETURNS %s%s LANGUAGE plpgsql AS %L', f, args,"
    "       CASE WHEN f OPERATOR(pg_catalog.=) 'unnest' THEN 'SETOF ' ELSE '' END, rt,"
    "       pg_catalog.format('BEGIN PERFORM public.shadow_fired(%L); %s END',"
    "         pg_catalog.format('function %s(%s)', f, args),"
    "         pg_catalog.format(CASE WHEN f OPERATOR(pg_catalog.=) 'unnest'"
    "                                THEN 'RETURN QUERY SELECT %s;'"
    "                                WHEN rt OPERATOR(pg_catalog.=) 'void' THEN 'PERFORM %s;'"
    "                                ELSE 'RETURN %s;' END,"
    "           pg_catalog.format('pg_catalog.%I(%s)', f,"
    "             CASE WHEN b IS NULL THEN '$1' ELSE '$1, $2' END))));"
    "    END IF;"
    "   END LOOP; END LOOP;"
    "  END LOOP;"
    "  FOREACH f IN ARRAY calls LOOP"
    "   CONTINUE WHEN f LIKE '%skipq.%' AND pg_catalog.to_regtype('skipq.job_status') IS NULL;"
    "   CONTINUE WHEN pg_catalog.to_regprocedure("
    "     pg_catalog.format('public.%s', f)) IS NOT NULL;"
    "   args := (SELECT pg_catalog.string_agg(pg_catalog.format('$%s', i), ', ')"
    "            FROM pg_catalog.generate_series(1, pg_catalog.array_length("
    "              pg_catalog.string_to_array(f, ','), 1)) i);"
    "   EXECUTE pg_catalog.format("
    "     'CREATE FUNCTION public.%s RETURNS %s LANGUAGE plpgsql AS %L', f,"
    "     CASE WHEN f LIKE 'format%' THEN 'text' ELSE 'jsonb' END,"
    "     pg_catalog.format('BEGIN PERFORM public.shadow_fired(%L); RETURN pg_catalog.%s(%s); END',"
    "       pg_catalog.format('function %s', f), pg_catalog.split_part(f, '(', 1), args));"
    "  END LOOP;"
    " END $plant$;";

/* ---- roles -------------------------------------------------------------- */

/* The superuser's connection that reads the record (for run()). */
static PGconn *shadow_pg;

struct logins {
    char producer[64], worker[64], admin[64];
    char *producer_url, *worker_url, *admin_url;
};

static void
exec_as(PGconn *c, const char *what, const char *sql)
{
    PGresult *res = PQexec(c, sql);
    if (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK)
        HARNESS_FAIL("%s: %s", what, PQresultErrorMessage(res));
    PQclear(res);
}

/* The login roles, dropped at exit whether the test passed or not (roles
 * are the cluster's; the test database goes at exit too, after this). */
static struct logins *cleanup_logins;

static void
drop_logins(void)
{
    struct logins *l = cleanup_logins;
    if (!l)
        return;
    cleanup_logins = NULL;
    PGconn *c = tl_connect();
    const char *names[] = {l->producer, l->worker, l->admin};
    for (size_t i = 0; i < 3 && PQstatus(c) == CONNECTION_OK; i++) {
        char sql[256];
        snprintf(sql, sizeof sql, "DROP OWNED BY %s", names[i]); /* fails if none */
        PQclear(PQexec(c, sql));
        snprintf(sql, sizeof sql, "DROP ROLE IF EXISTS %s", names[i]);
        PQclear(PQexec(c, sql));
    }
    PQfinish(c);
    free(l->producer_url);
    free(l->worker_url);
    free(l->admin_url);
}

/* Names unique to this process, dropped at exit. */
static void
name_logins(struct logins *l)
{
    snprintf(l->producer, sizeof l->producer, "tsp_producer_%d", (int)getpid());
    snprintf(l->worker, sizeof l->worker, "tsp_worker_%d", (int)getpid());
    snprintf(l->admin, sizeof l->admin, "tsp_admin_%d", (int)getpid());
    cleanup_logins = l;
    atexit(drop_logins);
}

/* As role: plant the recorder and the shadows. pg, the superuser's
 * connection the test checks through, then resolves past them. */
static void
plant(PGconn *pg, const char *role)
{
    PGconn *p = tl_connect_as(role);
    exec_as(p, "plant the recorder", plant_recorder_sql);
    exec_as(p, "plant operators", plant_operators_sql);
    exec_as(p, "plant functions", plant_functions_sql);
    PQfinish(p);
    tl_exec(pg, "SET search_path = pg_catalog, pg_temp");
    shadow_pg = pg;
}

/* Nothing outside public depends on a function or operator planted there:
 * no view, default, check, index or trigger was bound to one. */
static void
assert_nothing_bound(PGconn *pg)
{
    ASSERT_EQ(
        tl_int(
            pg,
            "SELECT count(*) FROM pg_depend d"
            " WHERE ((d.refclassid = 'pg_proc'::regclass AND d.refobjid IN"
            "         (SELECT oid FROM pg_proc WHERE pronamespace = 'public'::regnamespace))"
            "     OR (d.refclassid = 'pg_operator'::regclass AND d.refobjid IN"
            "         (SELECT oid FROM pg_operator"
            "          WHERE oprnamespace = 'public'::regnamespace)))"
            "   AND NOT (d.classid = 'pg_proc'::regclass AND d.objid IN"
            "         (SELECT oid FROM pg_proc WHERE pronamespace = 'public'::regnamespace))"
            "   AND NOT (d.classid = 'pg_operator'::regclass AND d.objid IN"
            "         (SELECT oid FROM pg_operator"
            "          WHERE oprnamespace = 'public'::regnamespace))"),
        0);
}

/*
 * The roles (sql/roles.sql) and a producer, a worker and an admin login;
 * public open to every role, as before PostgreSQL 15; the producer's
 * shadows planted. pg, the superuser's connection the test checks
 * through, then resolves past them.
 */
static void
setup(PGconn *pg, struct logins *l)
{
    char *err = NULL;
    int st = tl_skipq_run(NULL, NULL, &err, "migrate --roles");
    if (st != 0)
        HARNESS_FAIL("migrate --roles: exit %d: %s", st, err);
    free(err);
    name_logins(l);
    tl_exec(pg, "CREATE ROLE %s LOGIN IN ROLE skipq_producer", l->producer);
    tl_exec(pg, "CREATE ROLE %s LOGIN IN ROLE skipq_worker", l->worker);
    tl_exec(pg, "CREATE ROLE %s LOGIN IN ROLE skipq_admin", l->admin);
    l->producer_url = tl_url_as(l->producer);
    l->worker_url = tl_url_as(l->worker);
    l->admin_url = tl_url_as(l->admin);
    tl_exec(pg, "GRANT CREATE ON SCHEMA public TO PUBLIC");

    plant(pg, l->producer);
    /* the planting worked: cardinality(bigint[]) and job_status = job_status
     * are planted, and win where a name is not written by schema */
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM pg_catalog.pg_proc"
                         " WHERE pronamespace = 'public'::regnamespace"
                         " AND oid::regprocedure::text IN"
                         "   ('public.cardinality(bigint[])', 'cardinality(bigint[])')"),
              1);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM pg_catalog.pg_operator"
                         " WHERE oprnamespace = 'public'::regnamespace AND oprname = '='"
                         " AND oprleft = 'skipq.job_status'::regtype"
                         " AND oprright = 'skipq.job_status'::regtype"),
              1);
    PGconn *w = tl_connect_as(l->worker);
    exec_as(w, "a shadow that wins",
            "SELECT cardinality('{1}'::bigint[]),"
            " 'queued'::skipq.job_status = 'queued'");
    PQfinish(w);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM public.shadow_log"), 2);
    tl_exec(pg, "TRUNCATE public.shadow_log");
    tl_exec(pg, "ALTER SEQUENCE public.shadow_hits RESTART");
}

/* No planted object has run: say which did, as whom, in what. */
static void
assert_none_ran(PGconn *pg, const char *after)
{
    if (tl_int(pg, "SELECT CASE WHEN is_called THEN last_value ELSE 0 END"
                   " FROM public.shadow_hits") == 0)
        return;
    PGresult *res = PQexec(pg, "SELECT what, who, query FROM public.shadow_log"
                               " GROUP BY 1, 2, 3 ORDER BY 1, 2 LIMIT 20");
    fprintf(stderr, "planted objects ran (after %s):\n", after);
    for (int r = 0; PQresultStatus(res) == PGRES_TUPLES_OK && r < PQntuples(res); r++)
        fprintf(stderr, "  %s, as %s, in: %.300s\n", PQgetvalue(res, r, 0),
                PQgetvalue(res, r, 1), PQgetvalue(res, r, 2));
    PQclear(res);
    HARNESS_FAIL("planted objects ran after %s (the log above; a statement that"
                 " failed rolls its entries back, not the count)",
                 after);
}

/* Wait for an integer query to give want; when it does not, planted
 * objects that ran may be why (one planted for an untyped literal returns
 * NULL), so they are named first. */
#define WAIT_INT(pg, ms, want, ...)                                 \
    do {                                                            \
        if (!tl_wait_int(pg, ms, want, __VA_ARGS__)) {              \
            assert_none_ran(pg, "a wait that timed out");           \
            HARNESS_FAIL("timed out waiting for %s", #__VA_ARGS__); \
        }                                                           \
    } while (0)

/* skipq ARGS --database URL, exit status want; stdin from in (may be NULL). */
static void
run(const char *url, int want, const char *in, const char *args)
{
    char *out = NULL, *err = NULL;
    int st = tl_skipq_run(in, &out, &err, "%s --database '%s'", args, url);
    if (st != want) {
        fprintf(stderr, "skipq %s: exit %d\n", args, st);
        assert_none_ran(shadow_pg, args);
        HARNESS_FAIL("skipq %s: exit %d, wanted %d\nstdout: %s\nstderr: %s", args, st, want,
                     out, err);
    }
    free(out);
    free(err);
}

/* A worker that is gone: registered, holding a running job, its session
 * lock free. Returns the job's id. */
static int64_t
plant_dead_worker(PGconn *pg, const char *kind, const char *queue)
{
    int64_t w = tl_int(pg,
                       "INSERT INTO skipq.workers (host, pid, queues, priorities,"
                       " concurrency, version) VALUES ('gone', 1, '{%s}', 'all', 1, 'x')"
                       " RETURNING id",
                       queue);
    return tl_int(pg,
                  "INSERT INTO skipq.jobs (kind, queue, status, attempts, claims,"
                  " locked_by, started_at) VALUES ('%s', '%s', 'running', 1, 1, %lld,"
                  " now()) RETURNING id",
                  kind, queue, (long long)w);
}

/* ---- the tests ------------------------------------------------------------ */

TEST(cli_commands_run_no_planted_object)
{
    PGconn *pg = tl_db();
    static struct logins l; /* static: drop_logins() reads it at exit */
    char args[256];

    setup(pg, &l);

    /* migrate re-creates the functions, views and trigger: as the admin,
     * and as a superuser with the roles */
    run(l.admin_url, 0, NULL, "migrate");
    run(tl_url(), 0, NULL, "migrate --roles");
    run(l.admin_url, 0, NULL, "migrate --status");
    assert_none_ran(pg, "migrate");
    assert_nothing_bound(pg);

    /* enqueue: the four-parameter insert, the full one, --run-at, COPY */
    run(l.producer_url, 0, NULL, "enqueue k '{\"a\":1}'");
    run(l.producer_url, 0, NULL,
        "enqueue k '{\"a\":2}' --queue q --priority high --in 1s --max-attempts 3"
        " --timeout 10s --backoff exponential --backoff-base 1s --backoff-max 1m");
    run(l.producer_url, 0, NULL, "enqueue k '{}' --run-at '2001-02-03 04:05:06+00'");
    run(l.producer_url, 0, "{\"b\":1}\n{\"b\":2}\n",
        "enqueue bad --queue q --priority low --in 1ms --max-attempts 1");
    run(l.producer_url, 0, "{\"c\":1}\n", "enqueue k --backoff fixed --backoff-base 1s");
    assert_none_ran(pg, "enqueue");

    /* a worker runs them: claims, successes, failures */
    const char *cfg = tl_tmpfile(".yaml");
    tl_write_file(cfg, "worker:\n  queues: [default, q]\n  poll_interval: 100ms\n"
                       "retry:\n  max_attempts: 1\n");
    tl_exec(pg, "UPDATE skipq.jobs SET run_at = now()");
    snprintf(args, sizeof args,
             "worker --once --config %s --handler k=true --handler 'bad=exit 3'", cfg);
    run(l.worker_url, 0, NULL, args);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE status = 'succeeded'"), 4);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE status = 'failed'"), 2);
    assert_none_ran(pg, "worker --once");

    /* reading, as each role */
    int64_t failed = tl_int(pg, "SELECT min(id) FROM skipq.jobs WHERE status = 'failed'");
    const char *urls[] = {l.producer_url, l.worker_url, l.admin_url, tl_url()};
    for (size_t i = 0; i < sizeof urls / sizeof urls[0]; i++) {
        run(urls[i], 0, NULL, "jobs ls");
        run(urls[i], 0, NULL,
            "jobs ls --status failed,succeeded --queue q --kind bad"
            " --since 10m --limit 5 --json");
        run(urls[i], 0, NULL, "jobs ls --since '2001-01-01 00:00:00+00'");
        snprintf(args, sizeof args, "jobs show %lld", (long long)failed);
        run(urls[i], 0, NULL, args);
        snprintf(args, sizeof args, "jobs show %lld --json", (long long)failed);
        run(urls[i], 0, NULL, args);
        run(urls[i], 0, NULL, "stats");
        run(urls[i], 0, NULL, "stats --json");
    }
    assert_none_ran(pg, "jobs ls, jobs show, stats");

    /* retry and cancel, as the admin */
    snprintf(args, sizeof args, "jobs retry %lld", (long long)failed);
    run(l.admin_url, 0, NULL, args);
    int64_t queued = tl_int(pg, "SELECT skipq.enqueue('k')");
    int64_t running = plant_dead_worker(pg, "k", "default");
    snprintf(args, sizeof args, "jobs cancel %lld %lld", (long long)queued,
             (long long)running);
    run(l.admin_url, 0, NULL, args);
    assert_none_ran(pg, "jobs retry, jobs cancel");

    /* the tag and meta filters, bulk runs and delete */
    tl_exec(pg, "SELECT skipq.enqueue('k', tags => '{t}', meta => '{\"m\": 1}')");
    run(l.producer_url, 0, NULL, "jobs ls --tag t --meta m=1 --json");
    run(l.admin_url, 0, NULL, "jobs cancel --tag t --meta m=1 --dry-run");
    run(l.admin_url, 0, NULL, "jobs cancel --tag t --meta m=1");
    run(l.admin_url, 0, NULL, "jobs retry --status cancelled --tag t");
    run(l.admin_url, 0, NULL, "recover --status failed --tag t --meta m=1 --dry-run");
    snprintf(args, sizeof args, "jobs delete %lld", (long long)queued);
    run(l.admin_url, 0, NULL, args);
    assert_none_ran(pg, "jobs filters, jobs delete");

    /* recover, each status, dry and for real, as the admin and a superuser */
    tl_exec(pg, "UPDATE skipq.jobs SET status = 'failed', finished_at = now()"
                " WHERE kind = 'bad'");
    plant_dead_worker(pg, "k", "q");
    static const char *const recovers[] = {
        "recover --status failed --older-than 0s --dry-run",
        "recover --status failed --older-than 0s --queue q --kind bad --priority low"
        " --extra-attempts 2 --yes",
        "recover --status queued --older-than 0s --dry-run",
        "recover --status queued --older-than 0s --yes",
        "recover --status running --dry-run",
        "recover --status running --queue q --kind k --yes",
        "recover --status running --yes",
    };
    for (size_t i = 0; i < sizeof recovers / sizeof recovers[0]; i++) {
        run(l.admin_url, 0, NULL, recovers[i]);
        run(tl_url(), 0, NULL, recovers[i]);
    }
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE status = 'running'"), 0);
    assert_none_ran(pg, "recover");

    /* prune, as the admin */
    tl_exec(pg, "UPDATE skipq.jobs SET status = 'succeeded', finished_at = now()"
                " WHERE status = 'queued'");
    run(l.admin_url, 0, NULL,
        "prune --older-than 0s --status succeeded,cancelled,failed"
        " --batch 2");
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs"), 0);
    assert_none_ran(pg, "prune");

    /* the SQL API, as an application would call it */
    PGconn *a = tl_connect_as(l.admin);
    exec_as(a, "skipq.enqueue",
            "SELECT skipq.enqueue('k', '{\"d\": 1}', 'q', 'high',"
            " now(), 3, 'linear', '1 second', '1 minute', '10 seconds')");
    exec_as(a, "skipq.enqueue", "SELECT skipq.enqueue('k', priority => 5)");
    exec_as(a, "queue_stats", "SELECT * FROM skipq.queue_stats");
    exec_as(a, "failed_jobs", "SELECT * FROM skipq.failed_jobs");
    exec_as(a, "stale_jobs", "SELECT * FROM skipq.stale_jobs");
    exec_as(a, "active_workers", "SELECT * FROM skipq.active_workers");
    PQfinish(a);
    assert_none_ran(pg, "the SQL API");

    /* the C API: alone (one statement), inside the caller's transaction
     * (prepared, and skipq_enqueue_tx), and a batch (COPY) */
    skipq_conn *sc;
    skipq_error e;
    skipq_enqueue_opts o = SKIPQ_ENQUEUE_OPTS_INIT;
    o.queue = "q";
    o.delay_ms = 1000;
    o.max_attempts = 2;
    o.has_backoff = 1;
    o.backoff = SKIPQ_BACKOFF_LINEAR;
    o.backoff_base_ms = 100;
    o.backoff_max_ms = 1000;
    o.timeout_ms = 5000;
    skipq_job_spec specs[2] = {{"k", "{\"e\": 1}"}, {"k", NULL}};
    ASSERT_OK(skipq_conn_open(l.producer_url, &sc, &e), &e);
    ASSERT_OK(skipq_enqueue(sc, "k", NULL, NULL, NULL, &e), &e);
    ASSERT_OK(skipq_enqueue(sc, "k", "{}", &o, NULL, &e), &e);
    exec_as(skipq_conn_pg(sc), "begin", "BEGIN");
    ASSERT_OK(skipq_enqueue(sc, "k", NULL, NULL, NULL, &e), &e);
    ASSERT_OK(skipq_enqueue(sc, "k", NULL, &o, NULL, &e), &e);
    ASSERT_OK(skipq_enqueue_tx(skipq_conn_pg(sc), "k", NULL, &o, NULL, &e), &e);
    exec_as(skipq_conn_pg(sc), "commit", "COMMIT");
    ASSERT_OK(skipq_enqueue_batch(sc, specs, 2, &o, &e), &e);
    skipq_conn_close(sc);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs"), 9);
    assert_none_ran(pg, "the C API");
}

/* One request to serve at base as the admin; its status must be want. */
static void
serve_req(const char *base, const char *method, const char *path, const char *body,
          int want)
{
    char url[256], *resp = NULL;

    snprintf(url, sizeof url, "%s%s", base, path);
    int st = tl_http(method, url, "Authorization: Bearer tsp-admin-token-0123456789\r\n",
                     body, NULL, &resp);
    if (st != want) {
        assert_none_ran(shadow_pg, path);
        HARNESS_FAIL("%s %s: %d, wanted %d: %s", method, path, st, want, resp ? resp : "");
    }
    free(resp);
}

/* Every statement of skipq serve's API, as a skipq_admin login (the
 * role docs/security.md names for it). */
TEST(serve_runs_no_planted_object)
{
    PGconn *pg = tl_db();
    static struct logins l;
    char base[64], path[128], args[512];

    setup(pg, &l);
    ASSERT_EQ(tl_skipq_run(NULL, NULL, NULL, "schedule add nightly '0 3 * * *' report"), 0);
    int64_t parent = tl_int(pg, "SELECT skipq.enqueue('k')");
    plant_dead_worker(pg, "k", "default");
    snprintf(args, sizeof args, "--database '%s'", l.admin_url);
    pid_t srv = tl_serve("SKIPQ_ADMIN_TOKEN=tsp-admin-token-0123456789", args, base,
                         sizeof base, NULL);

    snprintf(args, sizeof args,
             "{\"kind\": \"k\", \"payload\": {\"a\": 1}, \"queue\": \"q\", \"priority\": 5,"
             " \"delay\": \"1s\", \"max_attempts\": 3, \"unique_key\": \"u\","
             " \"unique_mode\": \"replace\", \"unique_window\": \"1m\","
             " \"concurrency_key\": \"c\", \"depends_on\": [%lld], \"tags\": [\"t\"],"
             " \"meta\": {\"m\": 1}}",
             (long long)parent);
    serve_req(base, "POST", "/api/jobs", args, 201);
    serve_req(base, "POST", "/api/jobs",
              "{\"kind\": \"k\", \"run_at\": \"2030-01-01T00:00:00Z\"}", 201);
    char batch[1024];
    snprintf(
        batch, sizeof batch,
        "{\"jobs\": [{\"kind\": \"k\"}, %s, {\"kind\": \"k\", \"run_at\": \"2030-01-01\"}]}",
        args);
    serve_req(base, "POST", "/api/jobs/batch", batch, 201);
    serve_req(
        base, "POST", "/api/jobs/batch",
        "{\"jobs\": [{\"kind\": \"k\"}, {\"kind\": \"k\", \"depends_on\": [999999]}]}",
        400);
    serve_req(base, "GET",
              "/api/jobs?status=queued,running&queue=q&kind=k&limit=2&cursor=99", NULL,
              200);
    snprintf(path, sizeof path, "/api/jobs/%lld", (long long)parent);
    serve_req(base, "GET", path, NULL, 200);
    snprintf(path, sizeof path, "/api/jobs/%lld/cancel", (long long)parent);
    serve_req(base, "POST", path, NULL, 200);
    snprintf(path, sizeof path, "/api/jobs/%lld/retry", (long long)parent);
    serve_req(base, "POST", path, NULL, 200);
    snprintf(args, sizeof args, "{\"ids\": [%lld, 999999]}", (long long)parent);
    serve_req(base, "POST", "/api/jobs/cancel", args, 200);
    serve_req(base, "POST", "/api/jobs/retry", args, 200);
    serve_req(
        base, "POST", "/api/recover",
        "{\"status\": [\"failed\", \"queued\", \"running\"], \"older_than\": \"0s\","
        " \"queue\": \"default\", \"kind\": \"k\", \"priority\": \"normal\", \"limit\": 10,"
        " \"dry_run\": true}",
        200);
    serve_req(base, "POST", "/api/recover", "{\"status\": \"running\"}", 200);
    tl_exec(pg,
            "UPDATE skipq.jobs SET status = 'succeeded', finished_at = now()"
            " WHERE id = %lld",
            (long long)parent);
    static const char *const reads[] = {"/api/stats", "/api/throughput?minutes=5",
                                        "/api/workers", "/api/queues", "/api/schedules"};
    for (size_t i = 0; i < sizeof reads / sizeof reads[0]; i++)
        serve_req(base, "GET", reads[i], NULL, 200);
    serve_req(base, "POST", "/api/queues/q/pause", "{\"kind\": \"k\"}", 200);
    serve_req(base, "POST", "/api/queues/q/resume", NULL, 200);
    serve_req(base, "POST", "/api/schedules/nightly/pause", NULL, 200);
    serve_req(base, "POST", "/api/schedules/nightly/resume", NULL, 200);
    tl_kill(srv, SIGTERM);
    ASSERT_EQ(tl_wait_pid(srv, 15000), 0);
    assert_none_ran(pg, "skipq serve");
}

TEST(worker_start_rescue_and_upkeep_run_no_planted_object)
{
    PGconn *pg = tl_db();
    static struct logins l; /* static: drop_logins() reads it at exit */
    char args[512];

    setup(pg, &l);
    /* a worker that died holding a job; a finished row for retention */
    int64_t lost = plant_dead_worker(pg, "k", "default");
    tl_exec(pg, "INSERT INTO skipq.jobs (kind, status, finished_at, updated_at)"
                " VALUES ('old', 'succeeded', now() - interval '1 hour',"
                " now() - interval '1 hour')");

    const char *cfg = tl_tmpfile(".yaml"), *log = tl_tmpfile(".log");
    tl_write_file(cfg, "worker:\n  poll_interval: 200ms\n  heartbeat_interval: 200ms\n"
                       "  lease_timeout: 2s\n  shutdown_timeout: 200ms\n  retention: 1m\n"
                       "  vacuum_interval: 1s\n  concurrency: 2\n"
                       "retry:\n  max_attempts: 2\n  strategy: fixed\n  base: 100ms\n");
    pid_t w = tl_spawn(log,
                       "exec %s worker --config %s --handler k=true --handler 'bad=exit 3'"
                       " --handler 'slow=exec sleep 30' --database '%s'",
                       tl_skipq(), cfg, l.worker_url);

    /* its rescuer puts the lost job back, and it runs */
    WAIT_INT(pg, 15000, 1,
             "SELECT count(*) FROM skipq.jobs WHERE id = %lld"
             " AND status = 'succeeded'",
             (long long)lost);
    /* retention (its first turn a few seconds after the start) */
    WAIT_INT(pg, 15000, 0, "SELECT count(*) FROM skipq.jobs WHERE kind = 'old'");
    /* its vacuum turn looks whether it may */
    ASSERT_TRUE(tl_wait_file_has(log, "vacuum: this role may not vacuum skipq.jobs",
                                 10000));
    assert_none_ran(pg, "a worker's start, rescue and retention");

    /* an idle worker waits: the enqueue that wakes it, a failure retried */
    run(l.producer_url, 0, NULL, "enqueue k '{}'");
    run(l.producer_url, 0, NULL, "enqueue bad '{}'");
    WAIT_INT(pg, 10000, 2,
             "SELECT count(*) FROM skipq.jobs"
             " WHERE kind = 'k' AND status = 'succeeded'");
    WAIT_INT(pg, 10000, 1,
             "SELECT count(*) FROM skipq.jobs"
             " WHERE kind = 'bad' AND status = 'failed'"
             " AND attempts = 2");
    assert_none_ran(pg, "claims and completions");

    /* a cancel of a running job */
    int64_t slow = tl_int(pg, "SELECT skipq.enqueue('slow')");
    WAIT_INT(pg, 10000, 1,
             "SELECT count(*) FROM skipq.jobs WHERE id = %lld"
             " AND status = 'running'",
             (long long)slow);
    snprintf(args, sizeof args, "jobs cancel %lld", (long long)slow);
    run(l.admin_url, 0, NULL, args);
    WAIT_INT(pg, 10000, 1,
             "SELECT count(*) FROM skipq.jobs WHERE id = %lld"
             " AND status = 'cancelled'",
             (long long)slow);
    assert_none_ran(pg, "cancel");

    /* its connection cut while it runs a job: it reconnects and reconciles */
    slow = tl_int(pg, "SELECT skipq.enqueue('slow')");
    WAIT_INT(pg, 10000, 1,
             "SELECT count(*) FROM skipq.jobs WHERE id = %lld"
             " AND status = 'running'",
             (long long)slow);
    int64_t before = tl_int(pg,
                            "SELECT pid FROM pg_stat_activity"
                            " WHERE application_name = 'skipq worker' AND usename = '%s'",
                            l.worker);
    tl_exec(pg, "SELECT pg_terminate_backend(%lld)", (long long)before);
    WAIT_INT(pg, 15000, 1,
             "SELECT count(*) FROM pg_stat_activity"
             " WHERE application_name = 'skipq worker'"
             " AND usename = '%s' AND pid <> %lld",
             l.worker, (long long)before);
    /* it works on after the reconnect */
    run(l.producer_url, 0, NULL, "enqueue k '{}'");
    WAIT_INT(pg, 10000, 3,
             "SELECT count(*) FROM skipq.jobs"
             " WHERE kind = 'k' AND status = 'succeeded'");
    assert_none_ran(pg, "a reconnect");

    /* stopped with the slow job running: it hands it back */
    tl_kill(w, SIGTERM);
    ASSERT_EQ(tl_wait_pid(w, 15000), 0);
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.jobs WHERE status = 'running'"), 0);
    assert_none_ran(pg, "a worker's shutdown");
}

/* A first install into a database where the shadows were planted first:
 * what the migrations create (checks, defaults, index predicates, views,
 * the trigger's condition) is bound to the built-ins, and no shadow runs
 * as the superuser who installs. Only the types that exist yet are
 * planted for: skipq's enums come with the migration. */
TEST(first_migrate_binds_and_runs_no_planted_object)
{
    PGconn *pg = tl_empty_db();
    static struct logins l; /* static: drop_logins() reads it at exit */

    name_logins(&l);
    tl_exec(pg, "CREATE ROLE %s LOGIN", l.producer);
    tl_exec(pg, "GRANT CREATE ON SCHEMA public TO PUBLIC");
    plant(pg, l.producer);
    ASSERT_TRUE(tl_int(pg, "SELECT count(*) FROM pg_proc WHERE pronamespace ="
                           " 'public'::regnamespace AND proname = 'pg_column_size'") > 0);
    run(tl_url(), 0, NULL, "migrate --roles");
    assert_none_ran(pg, "the first migrate");
    assert_nothing_bound(pg);
    ASSERT_TRUE(tl_int(pg, "SELECT count(*) FROM skipq.schema_migrations") > 0);

    /* an object bound to a planted function before skipq pinned its
     * names (as a first install then did to the payload's size check):
     * every migrate names it */
    tl_exec(pg, "ALTER TABLE skipq.jobs ADD CONSTRAINT legacy_size"
                " CHECK (public.pg_column_size(payload) >= 0)");
    char *err = NULL;
    ASSERT_EQ(tl_skipq_run(NULL, NULL, &err, "migrate"), 0);
    ASSERT_CONTAINS(err, "constraint legacy_size on table skipq.jobs uses function"
                         " public.pg_column_size(jsonb), which is neither PostgreSQL's"
                         " nor skipq's");
    free(err);
    tl_exec(pg, "ALTER TABLE skipq.jobs DROP CONSTRAINT legacy_size");
    ASSERT_EQ(tl_skipq_run(NULL, NULL, &err, "migrate"), 0);
    ASSERT_TRUE(strstr(err, "neither PostgreSQL's nor skipq's") == NULL);
    free(err);
    assert_none_ran(pg, "migrate");
}

/* The admin's worker: it owns the table, so it vacuums it, and it may
 * delete what succeeded. */
TEST(admin_worker_vacuum_and_delete_run_no_planted_object)
{
    PGconn *pg = tl_db();
    static struct logins l; /* static: drop_logins() reads it at exit */

    setup(pg, &l);
    /* enough dead rows that the worker vacuums at its first look */
    tl_exec(pg, "ALTER TABLE skipq.jobs SET (autovacuum_enabled = false)");
    tl_exec(pg,
            "INSERT INTO skipq.jobs (kind) SELECT 'gone' FROM generate_series(1, 12000)");
    tl_exec(pg, "DELETE FROM skipq.jobs WHERE kind = 'gone'");
    tl_exec(pg, "SELECT skipq.enqueue('k') FROM generate_series(1, 5)");
    const char *cfg = tl_tmpfile(".yaml");
    tl_write_file(cfg, "worker:\n  vacuum_interval: 1s\n  poll_interval: 200ms\n"
                       "  on_success: delete\n  shutdown_timeout: 200ms\n");
    pid_t w = tl_spawn(NULL, "exec %s worker --config %s --handler k=true --database '%s'",
                       tl_skipq(), cfg, l.admin_url);
    WAIT_INT(pg, 10000, 0, "SELECT count(*) FROM skipq.jobs");
    WAIT_INT(pg, 15000, 1,
             "SELECT least(vacuum_count, 1)"
             " FROM pg_stat_user_tables"
             " WHERE relid = 'skipq.jobs'::regclass");
    tl_kill(w, SIGTERM);
    ASSERT_EQ(tl_wait_pid(w, 15000), 0);
    assert_none_ran(pg, "the admin's worker");
}

/* The supervisor records a crashed worker's jobs. */
static skipq_worker *child_worker;

static void
on_term(int sig)
{
    (void)sig;
    if (child_worker)
        skipq_worker_stop(child_worker);
}

static skipq_outcome
crash_handler(skipq_job *job, void *ud)
{
    (void)job;
    (void)ud;
    signal(SIGSEGV, SIG_DFL);
    kill(getpid(), SIGSEGV);
    pause();
    return SKIPQ_JOB_ERROR;
}

static int
run_worker(void *ud)
{
    const skipq_config *cfg = ud;
    skipq_error err;
    skipq_worker *w = NULL;
    if (skipq_worker_new(cfg, &w, &err) ||
        skipq_worker_register(w, "crash", crash_handler, NULL, &err)) {
        fprintf(stderr, "worker: %s\n", err.message);
        return 1;
    }
    child_worker = w;
    signal(SIGTERM, on_term);
    skipq_rc rc = skipq_worker_run(w, &err);
    if (rc != SKIPQ_OK)
        fprintf(stderr, "worker: %s\n", err.message);
    child_worker = NULL;
    skipq_worker_free(w);
    return rc == SKIPQ_OK ? 0 : 1;
}

TEST(supervisor_rescue_runs_no_planted_object)
{
    PGconn *pg = tl_db();
    static struct logins l; /* static: drop_logins() reads it at exit */
    skipq_error err;

    setup(pg, &l);
    skipq_config *cfg = skipq_config_new();
    ASSERT_OK(skipq_config_set_concurrency(cfg, 1, &err), &err);
    ASSERT_OK(skipq_config_set_poll_interval(cfg, 200, &err), &err);
    ASSERT_OK(skipq_config_set_max_attempts(cfg, 1, &err), &err);
    ASSERT_OK(skipq_config_set_database(cfg, l.worker_url, &err), &err);
    int64_t bad = tl_int(pg, "SELECT skipq.enqueue('crash')");
    pid_t sup = fork();
    if (sup == 0) {
        setpgid(0, 0);
        int status = 0;
        skipq_rc rc = skipq_supervise(cfg, l.worker_url, run_worker, cfg, &status, &err);
        _exit(rc != SKIPQ_OK ? 100 : status);
    }
    setpgid(sup, sup);
    WAIT_INT(pg, 20000, 1,
             "SELECT count(*) FROM skipq.jobs WHERE id = %lld"
             " AND status = 'failed'",
             (long long)bad);
    kill(sup, SIGTERM);
    int st = tl_wait_pid(sup, 15000);
    if (st < 0)
        kill(-sup, SIGKILL);
    ASSERT_EQ(st, 0);
    skipq_config_free(cfg);
    assert_none_ran(pg, "the supervisor's rescue");
}

int
main(int argc, char **argv)
{
    return harness_main(argc, argv);
}
