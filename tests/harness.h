/*
 * harness.h - the small test harness every skipq test binary uses.
 *
 *   TEST(name) { ... ASSERT_EQ(a, b); ... }
 *   int main(int argc, char **argv) { return harness_main(argc, argv); }
 *
 * A binary answers `--list` (one case per line) and runs one case when
 * given its name, all of them otherwise; tests/CMakeLists.txt registers
 * each case with CTest. Integration helpers (fresh database, waiting on a
 * condition with a deadline, running the CLI) are in tests/testlib.h.
 */
#ifndef SKIPQ_HARNESS_H
#define SKIPQ_HARNESS_H

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef void (*harness_fn)(void);
struct harness_case {
    const char *name;
    harness_fn fn;
};

#define HARNESS_MAX 256
extern struct harness_case harness_cases[HARNESS_MAX];
extern int harness_ncases;
extern const char *harness_current;
/* Called once every case that ran has passed (testlib sets it to remove
 * the test's temporary files; a failed test keeps them to look at). */
extern void (*harness_on_pass)(void);

#define TEST(name)                                                                       \
    static void test_##name(void);                                                       \
    __attribute__((constructor)) static void register_##name(void)                       \
    {                                                                                    \
        if (harness_ncases < HARNESS_MAX)                                                \
            harness_cases[harness_ncases++] = (struct harness_case){#name, test_##name}; \
    }                                                                                    \
    static void test_##name(void)

#define HARNESS_FAIL(...)                                                    \
    do {                                                                     \
        fprintf(stderr, "%s:%d: %s: ", __FILE__, __LINE__, harness_current); \
        fprintf(stderr, __VA_ARGS__);                                        \
        fprintf(stderr, "\n");                                               \
        exit(1);                                                             \
    } while (0)

#define ASSERT_TRUE(c)                             \
    do {                                           \
        if (!(c))                                  \
            HARNESS_FAIL("expected true: %s", #c); \
    } while (0)

#define ASSERT_EQ(a, b)                                             \
    do {                                                            \
        long long a_ = (long long)(a), b_ = (long long)(b);         \
        if (a_ != b_)                                               \
            HARNESS_FAIL("%s == %s: %lld != %lld", #a, #b, a_, b_); \
    } while (0)

#define ASSERT_STREQ(a, b)                                                         \
    do {                                                                           \
        const char *a_ = (a), *b_ = (b);                                           \
        if (!a_ || !b_ || strcmp(a_, b_) != 0)                                     \
            HARNESS_FAIL("%s == %s: \"%s\" != \"%s\"", #a, #b, a_ ? a_ : "(null)", \
                         b_ ? b_ : "(null)");                                      \
    } while (0)

/* haystack contains needle */
#define ASSERT_CONTAINS(hay, needle)                                           \
    do {                                                                       \
        const char *h_ = (hay), *n_ = (needle);                                \
        if (!h_ || !strstr(h_, n_))                                            \
            HARNESS_FAIL("expected \"%s\" in \"%s\"", n_, h_ ? h_ : "(null)"); \
    } while (0)

/* an skipq_rc call that must succeed; prints the error message if not */
#define ASSERT_OK(call, errp)                                                \
    do {                                                                     \
        int rc_ = (int)(call);                                               \
        if (rc_ != 0)                                                        \
            HARNESS_FAIL("%s failed (%d): %s", #call, rc_, (errp)->message); \
    } while (0)

int harness_main(int argc, char **argv);

#endif
