/*
 * test_browser.c - the dashboard in Debian's headless Chromium, end to end
 * (tests/browser/dashboard.mjs, run through tests/browser/run.sh): the
 * counts it shows are SQL's, and so are its job lists (filters, paging,
 * live refresh); retry, pause and recover change what SQL says only once
 * confirmed in the page, and not with the read token; hostile job data is
 * shown as text; no console error, page error or dialog happens on the
 * way. It starts its
 * own `skipq serve` on this test's database and leaves a screenshot of the
 * queues page in tests/browser/out/dashboard.png.
 *
 * Named test_browser* so it runs once, in the plain suite (label once).
 */
#include "harness.h"
#include "testlib.h"

#include <stdlib.h>

TEST(dashboard)
{
    (void)tl_db(); /* sets SKIPQ_DATABASE_URL, which the script seeds */
    char *bin = tl_shq(tl_skipq());
    char *out = NULL, *err = NULL;
    int rc = tl_run(NULL, &out, &err, "SKIPQ_BIN=%s %s/tests/browser/run.sh", bin,
                    SKIPQ_TEST_SOURCE_DIR);
    /* its progress lines (and the screenshot's path) go to the test's log */
    fputs(out ? out : "", stdout);
    if (rc != 0)
        HARNESS_FAIL("tests/browser/run.sh exited %d:\n%s", rc, err ? err : "");
    free(out);
    free(err);
    free(bin);
}

int
main(int argc, char **argv)
{
    return harness_main(argc, argv);
}
