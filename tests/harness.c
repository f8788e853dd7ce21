/*
 * harness.c - runs the TEST() cases of one binary: all, one by name, or
 * lists them (--list) for CTest.
 */
#include "harness.h"

#include <sys/time.h>

struct harness_case harness_cases[HARNESS_MAX];
int harness_ncases;
const char *harness_current = "";
void (*harness_on_pass)(void);

static double
now_s(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

int
harness_main(int argc, char **argv)
{
    int ran = 0;

    if (argc > 1 && strcmp(argv[1], "--list") == 0) {
        for (int i = 0; i < harness_ncases; i++)
            printf("%s\n", harness_cases[i].name);
        return 0;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    for (int i = 0; i < harness_ncases; i++) {
        if (argc > 1 && strcmp(argv[1], harness_cases[i].name) != 0)
            continue;
        double t0 = now_s();
        harness_current = harness_cases[i].name;
        printf("RUN  %s\n", harness_current);
        harness_cases[i].fn();
        printf("OK   %s (%.2fs)\n", harness_current, now_s() - t0);
        ran++;
    }
    if (ran == 0) {
        fprintf(stderr, "no test named \"%s\"\n", argc > 1 ? argv[1] : "");
        return 1;
    }
    if (harness_on_pass)
        harness_on_pass();
    return 0;
}
