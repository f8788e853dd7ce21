/*
 * http.h - the small HTTP server that `skipq worker --http` and `skipq
 * serve` share, over libmicrohttpd: bind an address (loopback unless one
 * is named), read each request's body up to a limit (413 beyond it), and
 * hand whole requests to one handler, which fills in a response.
 *
 * Every response carries "Cache-Control: no-store" and
 * "X-Content-Type-Options: nosniff"; the handler adds its own headers.
 */
#ifndef SKIPQ_CLI_HTTP_H
#define SKIPQ_CLI_HTTP_H

#include <stdbool.h>
#include <stddef.h>

struct MHD_Connection;

/* One request, whole. Valid only during the handler's call. */
struct http_request {
    const char *method;   /* "GET", "POST", ... */
    const char *path;     /* "/api/jobs/12": the URL's path, without the query */
    const char *raw_path; /* the same as sent, its %-escapes not decoded */
    const char *body;     /* NUL-terminated; "" when there was none */
    size_t body_len;
    const char *peer; /* the client's numeric address */
    struct MHD_Connection *conn;
};

/* A request header (case-insensitive name) or query argument; NULL when
 * absent. Borrowed for the handler's call. */
const char *http_header(const struct http_request *rq, const char *name);
const char *http_query(const struct http_request *rq, const char *name);

#define HTTP_MAX_HEADERS 4

/* What the handler fills in. body is malloc'd and becomes the server's;
 * a handler that leaves it NULL sends an empty body. */
struct http_response {
    int status;               /* 200 unless set */
    const char *content_type; /* static; "text/plain; charset=utf-8" unless set */
    char *body;
    size_t len;
    const char *headers[HTTP_MAX_HEADERS][2]; /* name, value: static, or
                                                 living until the server sent
                                                 the response */
    size_t nheaders;
};

/* Set rs->body to a copy of text (printf-style). false: out of memory
 * (rs->status becomes 500). */
bool http_printf(struct http_response *rs, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Add a header; at most HTTP_MAX_HEADERS (the rest are dropped). The
 * strings are copied when the response is sent. */
void http_add_header(struct http_response *rs, const char *name, const char *value);

typedef void (*http_handler_fn)(const struct http_request *rq, struct http_response *rs,
                                void *userdata);

/*
 * Called once a request's headers are in, before any of its body is read
 * (rq->body is ""): returns the most body bytes the request may send (a
 * longer body gets 413), or fills in rs (rs->status set: 401, 403, 429)
 * to answer at once, so a request that may not go on never has its body
 * read or buffered. NULL: max_body for every request.
 */
typedef size_t (*http_limit_fn)(const struct http_request *rq, struct http_response *rs,
                                void *userdata);

struct http_options {
    size_t max_body;          /* bytes; a longer body gets 413 without the handler */
    int threads;              /* handler threads (1: one thread runs every request) */
    http_limit_fn body_limit; /* checks the headers, and overrides max_body; may be NULL */
    unsigned max_connections; /* 0: 256 */
    unsigned per_ip_connections; /* open connections one address may hold; 0: no limit */
};

struct http_server;

/*
 * Parse addr ("HOST:PORT", "[V6]:PORT", or ":PORT" for 127.0.0.1) and
 * start serving it on threads of the server's own, calling fn for each
 * request. Port 0 takes a free port (see http_bound). 0, or -1 with the
 * reason in err ("could not listen on \"...\": ...").
 */
int http_start(const char *addr, const struct http_options *opt, http_handler_fn fn,
               void *userdata, struct http_server **out, char *err, size_t errlen);
/* Stop accepting connections, then wait up to ms for the open ones to
 * finish their requests and close (an idle keep-alive connection holds
 * it to the end). Call http_stop() after it. */
void http_drain(struct http_server *s, int ms);
/* Stop: waits for running handlers to return. NULL: no-op. */
void http_stop(struct http_server *s);
/* The address actually bound, "127.0.0.1:8080" ("[::1]:8080" for v6). */
const char *http_bound(const struct http_server *s);
/* true when addr has one of http_start's forms (nothing is resolved):
 * a false is a usage error, where http_start's failure to bind is not. */
bool http_addr_valid(const char *addr);
/* true when addr's host is a loopback address (127.0.0.0/8 or ::1). */
bool http_addr_is_loopback(const char *addr);

#endif /* SKIPQ_CLI_HTTP_H */
