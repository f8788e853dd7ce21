/*
 * main.c - a program that embeds skipq: it uses the public header, libpq's
 * PGconn and json-c's json_object through it, and reports the version of
 * the library it runs with.
 */
#include <skipq.h>

#include <json-c/json.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <string.h>

int
main(void)
{
    json_object *payload = json_object_new_object();
    PGconn *pg = NULL; /* what skipq_conn_pg() would give */

    json_object_object_add(payload, "n", json_object_new_int(1));
    printf("skipq %s, payload %s, conn %p\n", skipq_version(),
           json_object_to_json_string(payload), (void *)pg);
    json_object_put(payload);
    return strcmp(skipq_version(), SKIPQ_VERSION) == 0 ? 0 : 1;
}
