/*
 * skipq_json.h - json-c conveniences over skipq.h, for callers that use
 * json-c themselves.
 *
 * skipq.h itself names no json-c type: its payloads and results are JSON
 * text (skipq_job_payload_text, skipq_job_set_result_text). This header
 * includes json-c's and adds the same data as json_object values; link
 * json-c too (`pkg-config --libs skipq json-c`). The functions are part
 * of libskipq and of its ABI like those of skipq.h (docs/abi.md).
 */
#ifndef SKIPQ_JSON_H
#define SKIPQ_JSON_H

#include "skipq.h"

#include <json-c/json.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Parse one JSON value (whitespace around it allowed) nested at most
 * SKIPQ_JSON_MAX_DEPTH levels, the limit enqueue applies, so whatever a
 * producer enqueued parses back. len may be (size_t)-1 for strlen; flags
 * are json-c's tokener flags (0 or JSON_TOKENER_STRICT). On SKIPQ_OK *out
 * is the value (NULL for JSON null), the caller's to json_object_put();
 * otherwise *out is NULL and err says "invalid JSON at offset N: ...".
 */
skipq_rc skipq_json_parse(const char *text, size_t len, int flags, json_object **out,
                          skipq_error *err);

/* The payload, parsed. Borrowed: valid during the handler's call. NULL
 * only when out of memory. */
json_object *skipq_job_payload(skipq_job *job);
/* Save a JSON result; takes ownership of result (NULL: no result). */
void skipq_job_set_result(skipq_job *job, json_object *result);

#ifdef __cplusplus
}
#endif

#endif /* SKIPQ_JSON_H */
