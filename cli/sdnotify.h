/*
 * sdnotify.h - systemd's notification protocol (sd_notify(3)) without
 * libsystemd: one datagram per message to the AF_UNIX socket named by
 * $NOTIFY_SOCKET (a path, or "@name" for the abstract namespace).
 */
#ifndef SKIPQ_CLI_SDNOTIFY_H
#define SKIPQ_CLI_SDNOTIFY_H

#include <stdbool.h>
#include <stdint.h>

/* Is $NOTIFY_SOCKET set (is there anyone to tell)? */
bool sdnotify_wanted(void);
/* Send msg ("READY=1", "STOPPING=1", several lines joined by '\n'),
 * without blocking. 0 sent, 1 no $NOTIFY_SOCKET, -1 could not send
 * (errno set; EAGAIN: the manager's queue is full). Any thread. */
int sdnotify(const char *msg);
/* "RELOADING=1" with the MONOTONIC_USEC that Type=notify-reload wants. */
int sdnotify_reloading(void);
/* The watchdog period in microseconds asked by $WATCHDOG_USEC (when
 * $WATCHDOG_PID is unset or names this process); 0 none. */
uint64_t sdnotify_watchdog_usec(void);

#endif /* SKIPQ_CLI_SDNOTIFY_H */
