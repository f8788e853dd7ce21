/*
 * persistent.c - a persistent command handler (docs/worker.md,
 * "Persistent command handlers"). The worker starts it once and writes
 * one job per line on its stdin:
 *
 *   {"id": 7, "kind": "echo", "queue": "default", "attempt": 1, "payload": {...}}
 *
 * and it answers one line per job on its stdout:
 *
 *   {"id": 7, "outcome": "ok", "result": {...}}
 *   {"id": 7, "outcome": "error", "error": "the payload asked to fail"}
 *
 * This one echoes the payload as the result, and fails a job whose
 * payload says {"fail": true}. Run it from the config with
 *
 *   handlers:
 *     echo:
 *       command: [/path/to/example_persistent]
 *       persistent: true
 *
 * With --once it is an ordinary command handler instead: one payload on
 * stdin, the result on stdout, a process per job (`skipq bench command`
 * times both ways).
 */
#define _POSIX_C_SOURCE 200809L
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The job's work: NULL and *error on failure, else the result. */
static json_object *
work(json_object *payload, const char **error)
{
    json_object *fail = NULL;

    if (json_object_object_get_ex(payload, "fail", &fail) &&
        json_object_get_boolean(fail)) {
        *error = "the payload asked to fail";
        return NULL;
    }
    return json_object_get(payload); /* the echo: a new reference */
}

/* One request line in, one answer line out. */
static void
answer(const char *line)
{
    json_object *req = json_tokener_parse(line);
    json_object *id = NULL, *payload = NULL;
    json_object *ans = json_object_new_object();
    const char *error = NULL;

    if (!req || !json_object_object_get_ex(req, "id", &id)) {
        /* not a request: say so on stderr and stop, the worker restarts us */
        fprintf(stderr, "persistent: not a request: %.80s\n", line);
        exit(1);
    }
    json_object_object_get_ex(req, "payload", &payload);
    json_object_object_add(ans, "id", json_object_get(id));
    json_object *result = work(payload, &error);
    if (error) {
        json_object_object_add(ans, "outcome", json_object_new_string("error"));
        json_object_object_add(ans, "error", json_object_new_string(error));
    } else {
        json_object_object_add(ans, "outcome", json_object_new_string("ok"));
        json_object_object_add(ans, "result", result);
    }
    /* one line, flushed: the worker waits for it */
    printf("%s\n", json_object_to_json_string_ext(ans, JSON_C_TO_STRING_PLAIN));
    fflush(stdout);
    json_object_put(ans);
    json_object_put(req);
}

/* --once: the payload is all of stdin; exit 0 with the result, or 1. */
static int
once(void)
{
    char buf[65536];
    size_t n = fread(buf, 1, sizeof buf - 1, stdin);
    const char *error = NULL;

    buf[n] = '\0';
    json_object *payload = json_tokener_parse(buf);
    json_object *result = work(payload, &error);
    json_object_put(payload);
    if (error) {
        fprintf(stderr, "%s\n", error);
        return 1;
    }
    printf("%s\n", json_object_to_json_string_ext(result, JSON_C_TO_STRING_PLAIN));
    json_object_put(result);
    return 0;
}

int
main(int argc, char **argv)
{
    char *line = NULL;
    size_t cap = 0;

    if (argc > 1 && strcmp(argv[1], "--once") == 0)
        return once();
    /* until the worker closes our stdin (it stops), one job per line */
    while (getline(&line, &cap, stdin) > 0)
        answer(line);
    free(line);
    return 0;
}
