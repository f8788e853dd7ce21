/*
 * test_fault_schema.c - a worker refuses to run against a schema it does
 * not match: a migration it does not know (newer schema) unless that
 * migration is marked compatible with older readers, or one of its own
 * migrations missing (run skipq migrate first).
 */
#include "../handlers/faultlib.h"

static int
run_worker_once(char **err)
{
    return tl_skipq_run(NULL, NULL, err, "worker --once --handler 'k=true'");
}

TEST(newer_schema_refused)
{
    PGconn *pg = tl_db();
    char *err = NULL;
    fl_deadline(60);
    tl_exec(pg, "INSERT INTO skipq.schema_migrations (version, name)"
                " VALUES (9999, 'from_the_future')");
    int64_t id = tl_int(pg, "SELECT skipq.enqueue('k')");
    ASSERT_EQ(run_worker_once(&err), 1);
    ASSERT_CONTAINS(err, "older than the schema");
    ASSERT_CONTAINS(err, "9999");
    /* it did not touch anything, nor register */
    char *st = tl_str(pg, "SELECT status FROM skipq.jobs WHERE id = %" PRId64, id);
    ASSERT_STREQ(st, "queued");
    ASSERT_EQ(tl_int(pg, "SELECT count(*) FROM skipq.workers"), 0);
    free(st), free(err);
}

TEST(newer_schema_compatible)
{
    PGconn *pg = tl_db();
    char *err = NULL;
    fl_deadline(60);
    tl_exec(pg, "INSERT INTO skipq.schema_migrations (version, name, compatible)"
                " VALUES (9999, '9999_additive_only', true)");
    int64_t id = tl_int(pg, "SELECT skipq.enqueue('k')");
    ASSERT_EQ(run_worker_once(&err), 0);
    ASSERT_CONTAINS(err, "migration 9999 \"9999_additive_only\"");
    ASSERT_CONTAINS(err, "compatible");
    char *st = tl_str(pg, "SELECT status FROM skipq.jobs WHERE id = %" PRId64, id);
    ASSERT_STREQ(st, "succeeded");
    free(st), free(err);
}

TEST(missing_migration)
{
    PGconn *pg = tl_db();
    char *err = NULL;
    fl_deadline(60);
    tl_exec(pg, "DELETE FROM skipq.schema_migrations WHERE version = 1");
    int64_t id = tl_int(pg, "SELECT skipq.enqueue('k')");
    ASSERT_EQ(run_worker_once(&err), 1);
    ASSERT_CONTAINS(err, "run skipq migrate");
    char *st = tl_str(pg, "SELECT status FROM skipq.jobs WHERE id = %" PRId64, id);
    ASSERT_STREQ(st, "queued");
    free(st), free(err);
}

TEST(no_schema)
{
    tl_empty_db();
    char *err = NULL;
    fl_deadline(60);
    ASSERT_EQ(run_worker_once(&err), 1);
    ASSERT_CONTAINS(err, "run skipq migrate");
    free(err);
}

int
main(int argc, char **argv)
{
    return harness_main(argc, argv);
}
