/*
 * cmd_metrics.c - `skipq metrics`: the database-wide state of the queue
 * once, in the Prometheus text format (metrics_db.c writes it), for
 * node_exporter's textfile collector or a cron job. Nothing is printed
 * unless all of it was read, so a failed run never leaves half a file.
 */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage[] =
    "usage: skipq metrics [--config F] [--database URL]\n"
    "\n"
    "Prints the queue's state once in the Prometheus text format (metric\n"
    "names start with skipq_): jobs by queue and status, the oldest\n"
    "runnable job's age, jobs finished in the last minute, paused queues\n"
    "and their limits, workers and their free slots, the rescuer's last\n"
    "run and each schedule's next run. For node_exporter's textfile\n"
    "collector:\n"
    "\n"
    "  skipq metrics > skipq.prom.$$ && mv skipq.prom.$$ skipq.prom\n"
    "\n"
    "It counts the rows of skipq.jobs, as `skipq stats` does: on a large\n"
    "table run it every minute or so, not every few seconds.\n"
    "\n"
    "exit status: 0 printed, 1 the database could not be read (nothing is\n"
    "printed), 2 usage\n";

int
cmd_metrics(int argc, char **argv, struct cli_ctx *ctx)
{
    static const struct option longopts[] = {
        CLI_COMMON_LONGOPTS,
        {0},
    };
    skipq_conn *conn = NULL;
    PGresult *failed = NULL;
    char *text = NULL;
    size_t len = 0;
    int c, rc;

    while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        if ((rc = cli_once(ctx, longopts, c)) != 0)
            return rc;
        if ((rc = cli_common_opt(ctx, c, argv, usage)) != CLI_NEXT)
            return rc;
    }
    if (optind < argc)
        return cli_usage_error("metrics takes no arguments, got \"%.64s\"", argv[optind]);
    if ((rc = cli_connect(ctx, &conn)) != 0)
        return rc;
    FILE *f = open_memstream(&text, &len);
    if (!f) {
        rc = cli_errorf(CLI_EXIT_FAIL, "out of memory");
    } else {
        if (cli_metrics_db_write(skipq_conn_pg(conn), f, &failed) != 0)
            rc = cli_db_fail(skipq_conn_pg(conn), failed, "could not read the metrics");
        if (fclose(f) != 0 && rc == CLI_EXIT_OK)
            rc = cli_errorf(CLI_EXIT_FAIL, "out of memory");
    }
    if (rc == CLI_EXIT_OK && fwrite(text, 1, len, stdout) != len)
        rc = cli_errorf(CLI_EXIT_FAIL, "could not write the metrics");
    free(text);
    PQclear(failed);
    skipq_conn_close(conn);
    return rc;
}
