/*
 * test_backoff.c - retry delays: each strategy, the cap, jitter bounds,
 * and inputs that would overflow naive arithmetic.
 */
#include "harness.h"

#include "skipq.h"

#include <math.h>

#define FIXED SKIPQ_BACKOFF_FIXED
#define LINEAR SKIPQ_BACKOFF_LINEAR
#define EXPO SKIPQ_BACKOFF_EXPONENTIAL
#define HOUR 3600000LL

TEST(fixed_is_base)
{
    for (int a = 1; a < 50; a++)
        ASSERT_EQ(skipq_backoff_ms(FIXED, 1500, HOUR, 0, a, 0.3), 1500);
}

TEST(linear_grows_by_base)
{
    ASSERT_EQ(skipq_backoff_ms(LINEAR, 1000, HOUR, 0, 1, 0.5), 1000);
    ASSERT_EQ(skipq_backoff_ms(LINEAR, 1000, HOUR, 0, 2, 0.5), 2000);
    ASSERT_EQ(skipq_backoff_ms(LINEAR, 1000, HOUR, 0, 7, 0.5), 7000);
}

TEST(exponential_doubles)
{
    ASSERT_EQ(skipq_backoff_ms(EXPO, 1000, HOUR, 0, 1, 0.5), 1000);
    ASSERT_EQ(skipq_backoff_ms(EXPO, 1000, HOUR, 0, 2, 0.5), 2000);
    ASSERT_EQ(skipq_backoff_ms(EXPO, 1000, HOUR, 0, 3, 0.5), 4000);
    ASSERT_EQ(skipq_backoff_ms(EXPO, 1000, HOUR, 0, 11, 0.5), 1024000);
}

TEST(cap_applies)
{
    ASSERT_EQ(skipq_backoff_ms(EXPO, 1000, 5000, 0, 4, 0.5), 5000);
    ASSERT_EQ(skipq_backoff_ms(LINEAR, 1000, 5000, 0, 6, 0.5), 5000);
    /* base above the cap: the cap wins, for every strategy */
    ASSERT_EQ(skipq_backoff_ms(FIXED, 9000, 5000, 0, 1, 0.5), 5000);
    ASSERT_EQ(skipq_backoff_ms(EXPO, 9000, 5000, 0, 1, 0.5), 5000);
}

TEST(no_cap_when_max_is_zero)
{
    ASSERT_EQ(skipq_backoff_ms(EXPO, 1000, 0, 0, 21, 0.5), 1000LL << 20);
}

TEST(large_attempts_saturate)
{
    int attempts[] = {63, 64, 65, 100, 1000, 1 << 20, 2147483647};

    for (size_t i = 0; i < sizeof attempts / sizeof *attempts; i++) {
        ASSERT_EQ(skipq_backoff_ms(EXPO, 1000, HOUR, 0, attempts[i], 0.5), HOUR);
        if (attempts[i] >= 3600)
            ASSERT_EQ(skipq_backoff_ms(LINEAR, 1000, HOUR, 0, attempts[i], 0.5), HOUR);
        /* no cap at all: saturate at INT64_MAX rather than wrap negative */
        ASSERT_EQ(skipq_backoff_ms(EXPO, 1000, 0, 0, attempts[i], 0.5), INT64_MAX);
    }
    ASSERT_EQ(skipq_backoff_ms(LINEAR, INT64_MAX, 0, 0, 2147483647, 0.5), INT64_MAX);
    ASSERT_EQ(skipq_backoff_ms(EXPO, INT64_MAX, INT64_MAX, 1, 70, 0.999999), INT64_MAX);
    ASSERT_TRUE(skipq_backoff_ms(EXPO, INT64_MAX, 0, 1, 70, 0.0) >= 0);
}

TEST(attempt_below_one_is_one)
{
    ASSERT_EQ(skipq_backoff_ms(EXPO, 1000, HOUR, 0, 0, 0.5), 1000);
    ASSERT_EQ(skipq_backoff_ms(EXPO, 1000, HOUR, 0, -5, 0.5), 1000);
    ASSERT_EQ(skipq_backoff_ms(LINEAR, 1000, HOUR, 0, -2147483647 - 1, 0.5), 1000);
}

TEST(jitter_bounds)
{
    /* +-10% around 10s, before the cap */
    ASSERT_EQ(skipq_backoff_ms(FIXED, 10000, HOUR, 0.1, 1, 0.0), 9000);
    ASSERT_EQ(skipq_backoff_ms(FIXED, 10000, HOUR, 0.1, 1, 0.5), 10000);
    ASSERT_TRUE(skipq_backoff_ms(FIXED, 10000, HOUR, 0.1, 1, 0.999999) <= 11000);
    ASSERT_TRUE(skipq_backoff_ms(FIXED, 10000, HOUR, 0.1, 1, 0.999999) >= 10999);
    for (int i = 0; i <= 1000; i++) {
        double r = i / 1000.0;
        int64_t d = skipq_backoff_ms(EXPO, 1000, HOUR, 0.25, 3, r);
        ASSERT_TRUE(d >= 3000 && d <= 5000);
    }
}

TEST(jitter_never_exceeds_cap)
{
    /* at the cap, jitter only goes down: "max: 1h" means at most 1h */
    for (int i = 0; i <= 1000; i++) {
        double r = i / 1000.0;
        int64_t d = skipq_backoff_ms(EXPO, 1000, HOUR, 0.5, 40, r);
        ASSERT_TRUE(d >= HOUR / 2 && d <= HOUR);
    }
    ASSERT_EQ(skipq_backoff_ms(EXPO, 1000, HOUR, 0.5, 40, 0.99), HOUR);
}

TEST(jitter_is_clamped)
{
    /* jitter > 1 acts as 1: never negative, never above the cap */
    ASSERT_EQ(skipq_backoff_ms(FIXED, 1000, HOUR, 5.0, 1, 0.0), 0);
    ASSERT_EQ(skipq_backoff_ms(FIXED, 1000, HOUR, 5.0, 1, 0.75), 1500);
    /* negative or NaN jitter: none */
    ASSERT_EQ(skipq_backoff_ms(FIXED, 1000, HOUR, -0.5, 1, 0.0), 1000);
    ASSERT_EQ(skipq_backoff_ms(FIXED, 1000, HOUR, NAN, 1, 0.0), 1000);
}

TEST(random_is_clamped)
{
    ASSERT_EQ(skipq_backoff_ms(FIXED, 1000, HOUR, 0.5, 1, -3.0), 500);
    ASSERT_EQ(skipq_backoff_ms(FIXED, 1000, HOUR, 0.5, 1, 7.0), 1500);
    ASSERT_EQ(skipq_backoff_ms(FIXED, 1000, HOUR, 0.5, 1, NAN), 1000);
    ASSERT_EQ(skipq_backoff_ms(FIXED, 1000, HOUR, 0.5, 1, INFINITY), 1500);
}

TEST(never_negative)
{
    ASSERT_EQ(skipq_backoff_ms(FIXED, -1000, HOUR, 0.5, 1, 0.0), 0);
    ASSERT_EQ(skipq_backoff_ms(EXPO, INT64_MIN, HOUR, 0.5, 9, 0.0), 0);
    ASSERT_EQ(skipq_backoff_ms(FIXED, 0, HOUR, 1, 1, 0.9), 0);
    ASSERT_TRUE(skipq_backoff_ms(LINEAR, 1000, -5, 1, 1000, 0.0) >= 0);
}

TEST(unknown_strategy_is_fixed)
{
    ASSERT_EQ(skipq_backoff_ms((skipq_backoff)42, 1000, HOUR, 0, 5, 0.5), 1000);
}

int
main(int argc, char **argv)
{
    return harness_main(argc, argv);
}
