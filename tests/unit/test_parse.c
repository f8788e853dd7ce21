/*
 * test_parse.c - durations, priorities and priority bands: every form
 * we accept, and the near misses we must refuse rather than guess at.
 */
#include "harness.h"

#include "internal.h"

static int64_t
dur_ok(const char *s)
{
    skipq_error err = {0};
    int64_t ms = -12345;

    if (skipq_parse_duration(s, &ms, &err) != SKIPQ_OK)
        HARNESS_FAIL("duration \"%s\" refused: %s", s, err.message);
    return ms;
}

/* Refused with SKIPQ_ERR_INVALID, *out untouched, message returned. */
static const char *
dur_bad(const char *s)
{
    static skipq_error err;
    int64_t ms = -12345;

    memset(&err, 0, sizeof err);
    if (skipq_parse_duration(s, &ms, &err) != SKIPQ_ERR_INVALID)
        HARNESS_FAIL("duration \"%s\" accepted as %" PRId64, s ? s : "(null)", ms);
    ASSERT_EQ(err.code, SKIPQ_ERR_INVALID);
    ASSERT_EQ(ms, -12345);
    return err.message;
}

TEST(duration_units)
{
    ASSERT_EQ(dur_ok("500ms"), 500);
    ASSERT_EQ(dur_ok("30s"), 30000);
    ASSERT_EQ(dur_ok("5m"), 300000);
    ASSERT_EQ(dur_ok("1h"), 3600000);
    ASSERT_EQ(dur_ok("7d"), 7LL * 24 * 3600 * 1000);
    ASSERT_EQ(dur_ok("1ms"), 1);
    ASSERT_EQ(dur_ok("0ms"), 0);
    ASSERT_EQ(dur_ok("0s"), 0);
    ASSERT_EQ(dur_ok("007s"), 7000);
}

TEST(duration_bare_zero)
{
    ASSERT_EQ(dur_ok("0"), 0);
    ASSERT_EQ(dur_ok("00"), 0);
    /* a bare non-zero number is ambiguous (seconds? milliseconds?) */
    ASSERT_CONTAINS(dur_bad("30"), "missing unit");
}

TEST(duration_bad_unit)
{
    ASSERT_STREQ(dur_bad("5x"), "invalid duration \"5x\": expected a number "
                                "followed by ms, s, m, h or d");
    dur_bad("5S");
    dur_bad("5 s");
    dur_bad("5sec");
    dur_bad("5ms5");
    dur_bad("5msx");
    dur_bad("1h30m");
    dur_bad("ms");
    dur_bad("s");
}

TEST(duration_empty)
{
    ASSERT_CONTAINS(dur_bad(""), "invalid duration \"\"");
    dur_bad(NULL);
    dur_bad(" ");
}

TEST(duration_not_integer)
{
    dur_bad("1.5s");
    dur_bad(".5s");
    dur_bad("1e3ms");
    dur_bad("0x10s");
    dur_bad(" 5s");
    dur_bad("5s ");
    dur_bad("+5s");
}

TEST(duration_negative)
{
    ASSERT_CONTAINS(dur_bad("-1s"), "must not be negative");
    ASSERT_CONTAINS(dur_bad("-1s"), "\"-1s\"");
    dur_bad("-0");
    dur_bad("-");
}

TEST(duration_overflow)
{
    /* INT64_MAX milliseconds is fine; one more is not */
    ASSERT_EQ(dur_ok("9223372036854775807ms"), INT64_MAX);
    dur_bad("9223372036854775808ms");
    dur_bad("99999999999999999999999999ms");
    /* the number fits, the product with the unit does not */
    ASSERT_CONTAINS(dur_bad("9223372036854775807s"), "too large");
    ASSERT_CONTAINS(dur_bad("106751991168d"), "too large");
    ASSERT_EQ(dur_ok("106751991167d"), 106751991167LL * 86400000);
}

TEST(duration_long_input_message_is_bounded)
{
    char big[2000];

    memset(big, '7', sizeof big - 2);
    big[sizeof big - 2] = 'x';
    big[sizeof big - 1] = '\0';
    const char *msg = dur_bad(big);
    ASSERT_TRUE(strlen(msg) < 200);
    ASSERT_CONTAINS(msg, "...");
    ASSERT_CONTAINS(msg, "ms, s, m, h or d");
}

TEST(duration_err_may_be_null)
{
    int64_t ms = 1;

    ASSERT_EQ(skipq_parse_duration("5x", &ms, NULL), SKIPQ_ERR_INVALID);
    ASSERT_EQ(ms, 1);
}

static int16_t
prio_ok(const char *s)
{
    skipq_error err = {0};
    int16_t p = 12345;

    if (skipq_parse_priority(s, &p, &err) != SKIPQ_OK)
        HARNESS_FAIL("priority \"%s\" refused: %s", s, err.message);
    return p;
}

static const char *
prio_bad(const char *s)
{
    static skipq_error err;
    int16_t p = 12345;

    memset(&err, 0, sizeof err);
    if (skipq_parse_priority(s, &p, &err) != SKIPQ_ERR_INVALID)
        HARNESS_FAIL("priority \"%s\" accepted as %d", s ? s : "(null)", p);
    ASSERT_EQ(p, 12345);
    return err.message;
}

TEST(priority_names)
{
    ASSERT_EQ(prio_ok("high"), 10);
    ASSERT_EQ(prio_ok("normal"), 0);
    ASSERT_EQ(prio_ok("low"), -10);
    ASSERT_EQ(prio_ok("HIGH"), 10);
    ASSERT_EQ(prio_ok("Normal"), 0);
    ASSERT_EQ(prio_ok("lOw"), -10);
}

TEST(priority_numbers)
{
    ASSERT_EQ(prio_ok("0"), 0);
    ASSERT_EQ(prio_ok("3"), 3);
    ASSERT_EQ(prio_ok("-5"), -5);
    ASSERT_EQ(prio_ok("+7"), 7);
    ASSERT_EQ(prio_ok("32767"), 32767);
    ASSERT_EQ(prio_ok("-32768"), -32768);
}

TEST(priority_unrecognized)
{
    ASSERT_STREQ(prio_bad("urgent"), "unrecognized priority \"urgent\": use "
                                     "high, normal, low or a number");
    prio_bad("");
    prio_bad(NULL);
    prio_bad("high ");
    prio_bad(" high");
    prio_bad("hi");
    prio_bad("1.5");
    prio_bad("-");
    prio_bad("5x");
    prio_bad("0x10");
}

TEST(priority_out_of_range)
{
    ASSERT_STREQ(prio_bad("32768"), "priority \"32768\" is out of range -32768..32767");
    ASSERT_CONTAINS(prio_bad("-32769"), "out of range");
    ASSERT_CONTAINS(prio_bad("99999999999999999999999"), "out of range");
}

static void
band_is(const char *s, int lo, int hi)
{
    skipq_error err = {0};
    int16_t l = 1, h = -1;

    if (skipq_parse_priority_band(s, &l, &h, &err) != SKIPQ_OK)
        HARNESS_FAIL("band \"%s\" refused: %s", s, err.message);
    if (l != lo || h != hi)
        HARNESS_FAIL("band \"%s\": %d..%d, want %d..%d", s, l, h, lo, hi);
}

TEST(priority_bands)
{
    /* the bands tile the whole range: no number is orphaned */
    band_is("high", 10, 32767);
    band_is("normal", -9, 9);
    band_is("low", -32768, -10);
    band_is("High", 10, 32767);
    band_is("3", 3, 3);
    band_is("-5", -5, -5);
    band_is("32767", 32767, 32767);
    band_is("-32768", -32768, -32768);
}

TEST(priority_band_errors)
{
    skipq_error err = {0};
    int16_t lo = 1, hi = 2;

    ASSERT_EQ(skipq_parse_priority_band("urgent", &lo, &hi, &err), SKIPQ_ERR_INVALID);
    ASSERT_CONTAINS(err.message, "unrecognized priority \"urgent\"");
    ASSERT_EQ(lo, 1);
    ASSERT_EQ(hi, 2);
    ASSERT_EQ(skipq_parse_priority_band("40000", &lo, &hi, &err), SKIPQ_ERR_INVALID);
    ASSERT_CONTAINS(err.message, "out of range");
    ASSERT_EQ(skipq_parse_priority_band("high,low", &lo, &hi, NULL), SKIPQ_ERR_INVALID);
}

TEST(now_ms_is_monotonic)
{
    int64_t a = skipq__now_ms(), b = skipq__now_ms();

    ASSERT_TRUE(a > 0);
    ASSERT_TRUE(b >= a);
}

int
main(int argc, char **argv)
{
    return harness_main(argc, argv);
}
