/*
 * migrate_sql.c - the schema as one SQL script, for teams that apply SQL
 * with their own migration tool (`skipq migrate --print-sql`), and the
 * digest that tells whether a database's functions are this binary's.
 *
 * The script does what skipq_migrate() does, in the same order and under
 * the same locks and settings: each migration in its own transaction,
 * recorded in skipq.schema_migrations, then the functions and views.
 * Applied by psql, it leaves a schema that skipq_schema_current() accepts
 * (test cli.migrate_print_sql_applied_by_psql_is_current).
 */
#include "statements.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * FNV-1a over every text the schema is made of: the migrations, sql/ and
 * the worker's functions. Two binaries with the same schema texts give
 * the same digest, whatever their version.
 */
static uint64_t
hash_text(uint64_t h, const char *text)
{
    for (const unsigned char *p = (const unsigned char *)text; *p; p++)
        h = (h ^ *p) * 1099511628211ULL;
    return h;
}

static uint64_t
schema_hash(void)
{
    uint64_t h = 14695981039346656037ULL;

    for (size_t i = 0; i < skipq__migration_count; i++)
        h = hash_text(h, skipq__migrations[i].text);
    for (size_t i = 0; i < skipq__sql_file_count; i++)
        h = hash_text(h, skipq__sql_files[i].text);
    return hash_text(h, skipq__worker_functions_sql);
}

void
skipq__schema_digest(char *out, size_t n)
{
    snprintf(out, n, "%016llx", (unsigned long long)schema_hash());
}

void
skipq__schema_digest_sql(char *out, size_t n)
{
    char digest[20];

    skipq__schema_digest(digest, sizeof digest);
    snprintf(out, n,
             "CREATE OR REPLACE FUNCTION skipq.schema_digest() RETURNS text\n"
             "    LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog\n"
             "    AS $$SELECT '%s'::text$$;\n"
             "COMMENT ON FUNCTION skipq.schema_digest() IS 'the schema texts of the "
             "skipq that created the functions (skipq migrate --check)';\n",
             digest);
}

/*
 * A migration's guard, first in its transaction: a script applied twice,
 * or from the wrong --from, or past a migration that failed (psql goes
 * on after an error unless ON_ERROR_STOP), stops here with what to do
 * instead of applying a migration out of order. The table may not exist
 * yet, so it is read by EXECUTE.
 */
static void
put_guard(FILE *f, const skipq__sql_file *m, const skipq__sql_file *before)
{
    fprintf(f,
            "DO $skipq$\nDECLARE n int;\nBEGIN\n"
            "    IF pg_catalog.to_regclass('skipq.schema_migrations') IS NULL THEN\n"
            "        n := 0;\n"
            "    ELSE\n"
            "        EXECUTE 'SELECT pg_catalog.count(*)::int FROM skipq.schema_migrations"
            " WHERE version OPERATOR(pg_catalog.=) $1' INTO n USING %d;\n"
            "        IF n > 0 THEN\n"
            "            RAISE EXCEPTION 'migration %s is applied already: print the SQL"
            " --from the last one applied (skipq migrate --status)';\n"
            "        END IF;\n",
            m->version, m->name);
    if (before)
        fprintf(
            f,
            "        EXECUTE 'SELECT pg_catalog.count(*)::int FROM skipq.schema_migrations"
            " WHERE version OPERATOR(pg_catalog.=) $1' INTO n USING %d;\n",
            before->version);
    fprintf(f, "    END IF;\n");
    if (before)
        fprintf(
            f,
            "    IF n = 0 THEN\n"
            "        RAISE EXCEPTION 'migration %s is not applied: apply the ones before"
            " %s first';\n"
            "    END IF;\n",
            before->name, m->name);
    fprintf(f, "END $skipq$;\n");
}

/* One transaction's opening: as begin_migration and lock_migrations do. */
static void
put_begin(FILE *f)
{
    fprintf(f, "%s;\n%s;\n%s;\n%s;\n", skipq_sql_text("migrate_begin"),
            skipq_sql_text("migrate_lock_timeout"), skipq_sql_text("migrate_lock"),
            skipq_sql_text("migrate_vacuum_lock"));
}

skipq_rc
skipq_migrate_sql(int after_version, int with_roles, char **out, skipq_error *err)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    char digest_sql[512];

    *out = NULL;
    if (!f)
        return skipq__fail(err, SKIPQ_ERR_NOMEM, "out of memory");
    fprintf(f,
            "-- skipq %s: %s%.0d, then the functions, as `skipq migrate` applies them.\n"
            "-- Each migration is one transaction; apply them in order, once each; the\n"
            "-- functions are re-applied on every upgrade. Stop at the first error\n"
            "-- (psql -v ON_ERROR_STOP=1). Then: skipq migrate --check.\n",
            SKIPQ_VERSION, after_version ? "the migrations after " : "every migration",
            after_version);
    for (size_t i = 0; i < skipq__migration_count; i++) {
        const skipq__sql_file *m = &skipq__migrations[i];
        if (m->version <= after_version)
            continue;
        fprintf(f, "\n-- migration %s\n", m->name);
        put_begin(f);
        put_guard(f, m, i > 0 ? &skipq__migrations[i - 1] : NULL);
        fprintf(f, "%s\n", m->text);
        /* a name is a file name under migrations/, NNNN_[a-z_]: no quoting needed */
        fprintf(f,
                "INSERT INTO skipq.schema_migrations (version, name, compatible) "
                "VALUES (%d, '%s', %s);\nCOMMIT;\n",
                m->version, m->name,
                skipq__migration_compatible(m->text) ? "true" : "false");
    }
    fprintf(f, "\n-- functions and views\n");
    put_begin(f);
    for (size_t i = 0; i < skipq__sql_file_count; i++)
        fprintf(f, "-- sql/%s.sql\n%s\n", skipq__sql_files[i].name,
                skipq__sql_files[i].text);
    fprintf(f, "%s;\n", skipq__worker_functions_sql);
    skipq__schema_digest_sql(digest_sql, sizeof digest_sql);
    fprintf(f, "%sCOMMIT;\n", digest_sql);
    if (with_roles) {
        fprintf(f, "\n-- roles (skipq migrate --roles)\n");
        put_begin(f);
        for (size_t i = 0; i < skipq__roles_file_count; i++)
            fprintf(f, "%s\n", skipq__roles_files[i].text);
        fprintf(f, "COMMIT;\n");
    }
    if (fclose(f) != 0 || !buf) {
        free(buf);
        return skipq__fail(err, SKIPQ_ERR_NOMEM, "out of memory");
    }
    *out = buf;
    return SKIPQ_OK;
}
