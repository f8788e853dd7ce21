/*
 * web.c - find an embedded dashboard file by its path (web.h).
 */
#include "web.h"

#include <string.h>

const struct web_asset *
web_asset_find(const char *path)
{
    if (strcmp(path, "/") == 0)
        path = "/index.html";
    for (size_t i = 0; i < web_asset_count; i++)
        if (strcmp(web_assets[i].path, path) == 0)
            return &web_assets[i];
    return NULL;
}
