/*
 * sdnotify.c - systemd's notification protocol without libsystemd (see
 * sdnotify.h): the message goes as one datagram, so it arrives whole or
 * not at all, and nothing is kept open between messages. A socket that is
 * gone or full is the service manager's business: the message is dropped
 * and the worker goes on
 * (tests/integration/test_worker_http.c reads the messages from a real
 * socket).
 */
#include "sdnotify.h"

#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

bool
sdnotify_wanted(void)
{
    const char *p = getenv("NOTIFY_SOCKET");
    return p && *p;
}

int
sdnotify(const char *msg)
{
    const char *path = getenv("NOTIFY_SOCKET");
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t n;
    int rc = -1;

    if (!path || !*path)
        return 1;
    n = strlen(path);
    if ((path[0] != '/' && path[0] != '@') || n >= sizeof sa.sun_path) {
        errno = EINVAL;
        return -1;
    }
    memcpy(sa.sun_path, path, n);
    if (path[0] == '@')
        sa.sun_path[0] = '\0'; /* abstract: the length says where it ends */
    socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n +
                                (path[0] == '@' ? 0 : 1));
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    /* never blocks: a manager that does not read its socket (a full queue)
     * must not stall the threads that tell it things, which may hold the
     * lock the probes take (test worker_http.healthz_fails_while_the_loop_is_stuck) */
    if (sendto(fd, msg, strlen(msg), MSG_NOSIGNAL | MSG_DONTWAIT, (struct sockaddr *)&sa,
               len) >= 0)
        rc = 0;
    int e = errno;
    close(fd);
    errno = e;
    return rc;
}

int
sdnotify_reloading(void)
{
    struct timespec ts;
    char msg[64];

    clock_gettime(CLOCK_MONOTONIC, &ts);
    snprintf(msg, sizeof msg, "RELOADING=1\nMONOTONIC_USEC=%" PRIu64,
             (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u);
    return sdnotify(msg);
}

uint64_t
sdnotify_watchdog_usec(void)
{
    const char *usec = getenv("WATCHDOG_USEC"), *pid = getenv("WATCHDOG_PID");
    char *end = NULL;

    if (!usec || !*usec)
        return 0;
    if (pid && *pid && strtoll(pid, NULL, 10) != (long long)getpid())
        return 0; /* meant for another process */
    unsigned long long v = strtoull(usec, &end, 10);
    return end && *end == '\0' ? (uint64_t)v : 0;
}
