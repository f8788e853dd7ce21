/*
 * test_prefetch.c - the prefetch policy (worker_prefetch.c): a fixed
 * setting as is, 0 off, and under auto nothing before 16 runs were
 * measured, never more than 256, nothing while a parked job already
 * waits longer, parked jobs given back after 100 ms, and completions
 * held back only while claimed-ahead jobs wait.
 */
#include "harness.h"

#include "skipq.h"
#include "worker_prefetch.h"

#define AUTO SKIPQ_PREFETCH_AUTO
#define NONE INT64_MAX

/* st after n runs of run_us each */
static skipq__prefetch_stats
after_runs(int n, int64_t run_us)
{
    skipq__prefetch_stats st = {0};
    for (int i = 0; i < n; i++)
        skipq__prefetch_note_run(&st, run_us);
    return st;
}

TEST(fixed_values_are_used_as_is_and_zero_is_off)
{
    skipq__prefetch_stats st = after_runs(100, 10);
    ASSERT_EQ(skipq__prefetch_allowance(&st, 0, 8, 1000, NONE), 0);
    ASSERT_EQ(skipq__prefetch_allowance(&st, 7, 8, 1000, NONE), 7);
    ASSERT_EQ(skipq__prefetch_allowance(&st, 10000, 8, 1000, 0), 10000);
    /* a fixed value needs no measurement, and so no look at the pool */
    ASSERT_TRUE(!skipq__prefetch_needs_oldest(&st, 7));
}

TEST(none_until_16_jobs_have_run)
{
    for (int n = 0; n < 16; n++) {
        skipq__prefetch_stats st = after_runs(n, 10);
        ASSERT_EQ(skipq__prefetch_allowance(&st, AUTO, 8, 1000, NONE), 0);
        ASSERT_TRUE(!skipq__prefetch_needs_oldest(&st, AUTO));
    }
    skipq__prefetch_stats st = after_runs(16, 1000);
    ASSERT_TRUE(skipq__prefetch_needs_oldest(&st, AUTO));
    /* 8 executors, 1 ms a job: 5 ms of work is 40 jobs */
    ASSERT_EQ(skipq__prefetch_allowance(&st, AUTO, 8, 1000, NONE), 40);
}

TEST(runs_that_did_not_run_are_not_counted)
{
    skipq__prefetch_stats st = after_runs(20, 0);
    ASSERT_EQ(st.run_samples, 0);
    ASSERT_EQ(skipq__prefetch_allowance(&st, AUTO, 8, 1000, NONE), 0);
}

TEST(bounded_by_256)
{
    skipq__prefetch_stats st = after_runs(100, 1);
    ASSERT_EQ(skipq__prefetch_allowance(&st, AUTO, 64, 1000, NONE), 256);
    st = after_runs(100, 100000); /* 100 ms jobs: none ahead */
    ASSERT_EQ(skipq__prefetch_allowance(&st, AUTO, 64, 1000, NONE), 3);
    ASSERT_EQ(skipq__prefetch_allowance(&st, AUTO, 8, 1000, NONE), 0);
}

TEST(none_while_a_parked_job_already_waits_longer)
{
    skipq__prefetch_stats st = after_runs(100, 100);
    ASSERT_TRUE(skipq__prefetch_allowance(&st, AUTO, 8, 1000, 1000 - 5) > 0);
    ASSERT_EQ(skipq__prefetch_allowance(&st, AUTO, 8, 1000, 1000 - 6), 0);
}

TEST(parked_jobs_go_back_after_100_ms_and_stop_claiming_ahead)
{
    ASSERT_TRUE(!skipq__prefetch_stale(1000, NONE));
    ASSERT_TRUE(!skipq__prefetch_stale(1000, 900));
    ASSERT_TRUE(skipq__prefetch_stale(1000, 899));
    ASSERT_EQ(skipq__prefetch_check_at(NONE), NONE);
    ASSERT_EQ(skipq__prefetch_check_at(900), 1001);

    skipq__prefetch_stats st = after_runs(100, 10);
    skipq__prefetch_note_stale(&st, 150, 8);
    ASSERT_EQ(skipq__prefetch_allowance(&st, AUTO, 8, 1000, NONE), 0);
    /* short runs bring it back, 1/32 at a time */
    for (int i = 0; i < 400; i++)
        skipq__prefetch_note_run(&st, 10);
    ASSERT_TRUE(skipq__prefetch_allowance(&st, AUTO, 8, 1000, NONE) > 0);
}

TEST(completions_wait_for_company_only_briefly)
{
    /* within 5 ms, fewer than half the executors' worth done */
    ASSERT_TRUE(skipq__prefetch_may_hold(1004, 1000, 3, 8));
    ASSERT_TRUE(!skipq__prefetch_may_hold(1005, 1000, 3, 8));
    ASSERT_TRUE(!skipq__prefetch_may_hold(1001, 1000, 4, 8));
    /* while over half the allowance waits and no executor is idle */
    ASSERT_TRUE(skipq__prefetch_hold(11, 0, 20));
    ASSERT_TRUE(!skipq__prefetch_hold(10, 0, 20));
    ASSERT_TRUE(!skipq__prefetch_hold(11, 1, 20));
}

int
main(int argc, char **argv)
{
    return harness_main(argc, argv);
}
