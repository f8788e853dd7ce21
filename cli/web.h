/*
 * web.h - the dashboard's files, embedded in the binary at build time
 * (cli/embed.cmake turns cli/web/ into web_assets.c), served by `skipq
 * serve` at "/" and beside it.
 */
#ifndef SKIPQ_CLI_WEB_H
#define SKIPQ_CLI_WEB_H

#include <stddef.h>

struct web_asset {
    const char *path; /* "/index.html" */
    const char *type; /* its Content-Type */
    const unsigned char *data;
    size_t len;
};

extern const struct web_asset web_assets[];
extern const size_t web_asset_count;

/* The asset at path ("/" is "/index.html"); NULL when there is none. */
const struct web_asset *web_asset_find(const char *path);

#endif /* SKIPQ_CLI_WEB_H */
