/*
 * persist.c - a persistent command handler for tests/integration/
 * test_persistent.c: one job per line on stdin, one answer per line on
 * stdout, driven by its payload (jsonb's text, hence "key": value):
 *
 *   "fail": true        answers outcome "error"
 *   "snooze": true      answers outcome "snooze", for a minute
 *   "garble": true      answers a line that is not JSON
 *   "wrong_id": true    answers for another job
 *   "stray": true       answers, then writes one more line to stdout
 *   "sleep_ms": N       sleeps N ms first
 *   "hang_once": "F"    when file F does not exist: writes its pid to F
 *                       and waits forever (to be killed); else answers
 *
 * The result is {"pid": P, "attempt": A, "payload": ...}. It appends its
 * pid to $PERSIST_STARTS when it starts, "<job id> <pid>" to
 * $PERSIST_RUNS and "<job id> <attempt> <pid>" to $PERSIST_CLAIMS per job
 * it is given (before it answers), and its pid to $PERSIST_EXITS when its
 * stdin ends. No JSON library: the worker writes the
 * request in one fixed shape.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* One line to the file $env names, if it is set. */
static void
append(const char *env, long long a, long long b)
{
    const char *path = getenv(env);
    char line[64];
    if (!path)
        return;
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT, 0600);
    if (fd < 0)
        return;
    int n = b ? snprintf(line, sizeof line, "%lld %lld\n", a, b)
              : snprintf(line, sizeof line, "%lld\n", a);
    if (write(fd, line, (size_t)n) < 0)
        perror("persist: append");
    close(fd);
}

/* "<job id> <attempt> <pid>" to $PERSIST_CLAIMS, if it is set: one
 * write(2) of one short line, so lines of many processes never mix. */
static void
append_claim(long long id, long long attempt)
{
    const char *path = getenv("PERSIST_CLAIMS");
    char line[80];
    if (!path)
        return;
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT, 0600);
    if (fd < 0)
        return;
    int n = snprintf(line, sizeof line, "%lld %lld %d\n", id, attempt, (int)getpid());
    if (write(fd, line, (size_t)n) < 0)
        perror("persist: append_claim");
    close(fd);
}

static long long
number_after(const char *s, const char *key)
{
    const char *p = strstr(s, key);
    return p ? strtoll(p + strlen(key), NULL, 10) : -1;
}

static void
hang_once(const char *payload)
{
    const char *p = strstr(payload, "\"hang_once\": \"");
    char path[512], tmp[600];
    if (!p)
        return;
    p += strlen("\"hang_once\": \"");
    size_t n = strcspn(p, "\"");
    if (n >= sizeof path)
        return;
    memcpy(path, p, n);
    path[n] = '\0';
    if (access(path, F_OK) == 0)
        return;
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f)
        return;
    fprintf(f, "%d\n", (int)getpid());
    fclose(f);
    rename(tmp, path);
    for (;;)
        pause();
}

static void
answer(char *line)
{
    long long id = number_after(line, "{\"id\":");
    long long attempt = number_after(line, "\"attempt\":");
    char *payload = strstr(line, ",\"payload\":");
    size_t len = strlen(line);

    if (len && line[len - 1] == '\n')
        line[--len] = '\0';
    if (!payload || id < 0 || len == 0 || line[len - 1] != '}') {
        fprintf(stderr, "persist: not a request: %s\n", line);
        exit(3);
    }
    payload += strlen(",\"payload\":");
    line[len - 1] = '\0'; /* the request's closing brace */
    append_claim(id, attempt);
    long long ms = number_after(payload, "\"sleep_ms\": ");
    if (ms > 0) {
        struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
    hang_once(payload);
    if (strstr(payload, "\"garble\": true"))
        printf("this is not json\n");
    else if (strstr(payload, "\"wrong_id\": true"))
        printf("{\"id\": %lld, \"outcome\": \"ok\"}\n", id + 1000000);
    else if (strstr(payload, "\"snooze\": true"))
        printf("{\"id\": %lld, \"outcome\": \"snooze\", \"delay_ms\": 60000}\n", id);
    else if (strstr(payload, "\"fail\": true"))
        printf("{\"id\": %lld, \"outcome\": \"error\", \"error\": \"asked to fail\"}\n",
               id);
    else
        printf("{\"id\": %lld, \"outcome\": \"ok\", \"result\": {\"pid\": %d, "
               "\"attempt\": %lld, \"payload\": %s}}\n",
               id, (int)getpid(), attempt, payload);
    if (strstr(payload, "\"stray\": true"))
        printf("a line nobody asked for\n");
    fflush(stdout);
    append("PERSIST_RUNS", id, (long long)getpid());
}

int
main(void)
{
    char *line = NULL;
    size_t cap = 0;

    append("PERSIST_STARTS", (long long)getpid(), 0);
    while (getline(&line, &cap, stdin) > 0)
        answer(line);
    append("PERSIST_EXITS", (long long)getpid(), 0); /* its stdin ended */
    free(line);
    return 0;
}
