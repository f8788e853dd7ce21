/*
 * http.c - the HTTP server of `skipq worker --http` and `skipq serve`
 * (http.h), over libmicrohttpd. It binds the listening socket itself, so
 * a bind error names the address and the reason, and port 0 can report
 * the port it got. Bodies are collected whole before the handler runs;
 * one longer than max_body is answered 413 and never reaches it.
 */
#include "http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

struct http_server {
    struct MHD_Daemon *daemon;
    int fd;
    http_handler_fn fn;
    void *userdata;
    size_t max_body;
    http_limit_fn body_limit;
    char bound[80];
};

/* One request's body as it arrives. */
struct upload {
    char *raw;  /* the path as sent (on_uri), NULL when out of memory */
    bool begun; /* on_request has seen the headers */
    char *buf;
    size_t len, cap, max; /* max: this request's body limit */
};

/* Before libmicrohttpd decodes the URL: the path as the client sent it,
 * so a route's {name} can hold an escaped '/' ("a%2Fb"), which the
 * decoded path would split (test serve.names_with_a_slash_are_reachable).
 * Its result becomes the request's state. */
static void *
on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
    struct upload *up = calloc(1, sizeof *up);
    (void)cls, (void)conn;

    if (up && uri)
        up->raw = strndup(uri, strcspn(uri, "?"));
    return up;
}

const char *
http_header(const struct http_request *rq, const char *name)
{
    return MHD_lookup_connection_value(rq->conn, MHD_HEADER_KIND, name);
}

const char *
http_query(const struct http_request *rq, const char *name)
{
    return MHD_lookup_connection_value(rq->conn, MHD_GET_ARGUMENT_KIND, name);
}

bool
http_printf(struct http_response *rs, const char *fmt, ...)
{
    va_list ap;
    char *s = NULL;

    va_start(ap, fmt);
    int n = vasprintf(&s, fmt, ap);
    va_end(ap);
    free(rs->body);
    rs->body = NULL;
    rs->len = 0;
    if (n < 0) {
        rs->status = 500;
        return false;
    }
    rs->body = s;
    rs->len = (size_t)n;
    return true;
}

void
http_add_header(struct http_response *rs, const char *name, const char *value)
{
    if (rs->nheaders < HTTP_MAX_HEADERS) {
        rs->headers[rs->nheaders][0] = name;
        rs->headers[rs->nheaders][1] = value;
        rs->nheaders++;
    }
}

/* ---- addresses -------------------------------------------------------- */

/* Split "HOST:PORT", "[V6]:PORT" or ":PORT" into host (default
 * 127.0.0.1) and port. false: not of that form. */
static bool
split_addr(const char *addr, char *host, size_t hostlen, char *port, size_t portlen)
{
    const char *colon;

    if (addr[0] == '[') {
        const char *end = strchr(addr, ']');
        if (!end || end[1] != ':' || (size_t)(end - addr - 1) >= hostlen)
            return false;
        snprintf(host, hostlen, "%.*s", (int)(end - addr - 1), addr + 1);
        colon = end + 1;
    } else {
        colon = strrchr(addr, ':');
        if (!colon || memchr(addr, ':', (size_t)(colon - addr)) ||
            (size_t)(colon - addr) >= hostlen)
            return false;
        snprintf(host, hostlen, "%.*s", (int)(colon - addr), addr);
        if (!host[0])
            snprintf(host, hostlen, "127.0.0.1");
    }
    const char *p = colon + 1;
    if (!*p || strlen(p) >= portlen || strspn(p, "0123456789") != strlen(p) ||
        strtol(p, NULL, 10) > 65535)
        return false;
    snprintf(port, portlen, "%s", p);
    return true;
}

bool
http_addr_valid(const char *addr)
{
    char host[256], port[8];
    return addr && split_addr(addr, host, sizeof host, port, sizeof port);
}

bool
http_addr_is_loopback(const char *addr)
{
    char host[256], port[8];
    struct in_addr v4;
    struct in6_addr v6;

    if (!split_addr(addr, host, sizeof host, port, sizeof port))
        return false;
    if (strcasecmp(host, "localhost") == 0)
        return true;
    if (inet_pton(AF_INET, host, &v4) == 1)
        return (ntohl(v4.s_addr) >> 24) == 127;
    return inet_pton(AF_INET6, host, &v6) == 1 && IN6_IS_ADDR_LOOPBACK(&v6);
}

/* "127.0.0.1:8080" or "[::1]:8080" of a socket address. */
static void
format_sockaddr(const struct sockaddr *sa, socklen_t len, char *out, size_t n)
{
    char host[INET6_ADDRSTRLEN + 1] = "?", port[8] = "?";

    getnameinfo(sa, len, host, sizeof host, port, sizeof port,
                NI_NUMERICHOST | NI_NUMERICSERV);
    if (sa->sa_family == AF_INET6)
        snprintf(out, n, "[%s]:%s", host, port);
    else
        snprintf(out, n, "%s:%s", host, port);
}

/* A listening socket on addr, or -1 with the reason in err. */
static int
listen_on(const char *addr, int *family, char *bound, size_t boundlen, char *err,
          size_t errlen)
{
    char host[256], port[8];
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    struct addrinfo *ai = NULL;
    int fd = -1, one = 1, e;

    if (!split_addr(addr, host, sizeof host, port, sizeof port)) {
        snprintf(err, errlen, "address \"%s\" is not HOST:PORT, [IPV6]:PORT or :PORT",
                 addr);
        return -1;
    }
    if ((e = getaddrinfo(host, port, &hints, &ai)) != 0) {
        snprintf(err, errlen, "could not resolve \"%s\": %s", host, gai_strerror(e));
        return -1;
    }
    fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, 64) != 0) {
        snprintf(err, errlen, "could not listen on \"%s\": %s", addr, strerror(errno));
        if (fd >= 0)
            close(fd);
        freeaddrinfo(ai);
        return -1;
    }
    *family = ai->ai_family;
    freeaddrinfo(ai);

    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
        format_sockaddr((struct sockaddr *)&ss, sl, bound, boundlen);
    else
        snprintf(bound, boundlen, "%s", addr);
    return fd;
}

/* ---- requests --------------------------------------------------------- */

static enum MHD_Result
send_response(struct MHD_Connection *conn, struct http_response *rs)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(
        rs->len, rs->body ? rs->body : (void *)"",
        rs->body ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    if (!r) {
        free(rs->body);
        return MHD_NO;
    }
    rs->body = NULL; /* the response's now */
    MHD_add_response_header(r, "Content-Type",
                            rs->content_type ? rs->content_type
                                             : "text/plain; charset=utf-8");
    MHD_add_response_header(r, "Cache-Control", "no-store");
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    for (size_t i = 0; i < rs->nheaders; i++)
        MHD_add_response_header(r, rs->headers[i][0], rs->headers[i][1]);
    enum MHD_Result ok = MHD_queue_response(conn, (unsigned)(rs->status ? rs->status : 200),
                                            r);
    MHD_destroy_response(r);
    return ok;
}

static enum MHD_Result
too_large(struct MHD_Connection *conn, size_t max)
{
    struct http_response rs = {.status = 413, .content_type = "application/json"};
    http_printf(&rs, "{\"error\":\"the request body is larger than %zu bytes\"}\n", max);
    return send_response(conn, &rs);
}

static void
peer_of(struct MHD_Connection *conn, char *out, size_t n)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    char host[INET6_ADDRSTRLEN + 1] = "";

    if (ci && ci->client_addr)
        getnameinfo(ci->client_addr,
                    ci->client_addr->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                                           : sizeof(struct sockaddr_in),
                    host, sizeof host, NULL, 0, NI_NUMERICHOST);
    snprintf(out, n, "%s", host);
}

/* libmicrohttpd calls this first with the headers, then once per piece of
 * the body, then once more with none left: then the handler runs. */
static enum MHD_Result
on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
           const char *version, const char *data, size_t *data_size, void **state)
{
    struct http_server *s = cls;
    struct upload *up = *state;
    (void)version;

    if (!up || !up->raw) /* out of memory in on_uri */
        return MHD_NO;
    if (!up->begun) {
        up->begun = true;
        up->max = s->max_body;
        if (s->body_limit) {
            char peer[INET6_ADDRSTRLEN + 1];
            peer_of(conn, peer, sizeof peer);
            struct http_request rq = {.method = method,
                                      .path = url,
                                      .raw_path = up->raw,
                                      .body = "",
                                      .peer = peer,
                                      .conn = conn};
            struct http_response rs = {0};
            up->max = s->body_limit(&rq, &rs, s->userdata);
            if (rs.status) /* refused on its headers: the body is never read */
                return send_response(conn, &rs);
        }
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
                                                     MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl && strtoull(cl, NULL, 10) > up->max)
            return too_large(conn, up->max); /* before reading any of it */
        return MHD_YES;
    }
    if (*data_size > 0) {
        if (up->len + *data_size > up->max) {
            /* a body longer than it said, or chunked: no more of it is
             * read; the connection closes (a Content-Length over the
             * limit got its 413 above) */
            return MHD_NO;
        }
        if (up->len + *data_size + 1 > up->cap) {
            size_t cap = (up->len + *data_size + 1) * 2;
            char *b = realloc(up->buf, cap > up->max + 1 ? up->max + 1 : cap);
            if (!b)
                return MHD_NO;
            up->buf = b;
            up->cap = cap > up->max + 1 ? up->max + 1 : cap;
        }
        memcpy(up->buf + up->len, data, *data_size);
        up->len += *data_size;
        up->buf[up->len] = '\0';
        *data_size = 0;
        return MHD_YES;
    }

    char peer[INET6_ADDRSTRLEN + 1];
    peer_of(conn, peer, sizeof peer);
    struct http_request rq = {
        .method = method,
        .path = url,
        .raw_path = up->raw,
        .body = up->buf ? up->buf : "",
        .body_len = up->len,
        .peer = peer,
        .conn = conn,
    };
    struct http_response rs = {.status = 200};
    s->fn(&rq, &rs, s->userdata);
    return send_response(conn, &rs);
}

static void
on_completed(void *cls, struct MHD_Connection *conn, void **state,
             enum MHD_RequestTerminationCode why)
{
    struct upload *up = *state;
    (void)cls, (void)conn, (void)why;

    if (up) {
        free(up->raw);
        free(up->buf);
        free(up);
        *state = NULL;
    }
}

/* ---- the server ------------------------------------------------------- */

int
http_start(const char *addr, const struct http_options *opt, http_handler_fn fn,
           void *userdata, struct http_server **out, char *err, size_t errlen)
{
    struct http_server *s = calloc(1, sizeof *s);
    int family = AF_INET;

    *out = NULL;
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    s->fn = fn;
    s->userdata = userdata;
    s->max_body = opt->max_body;
    s->body_limit = opt->body_limit;
    if ((s->fd = listen_on(addr, &family, s->bound, sizeof s->bound, err, errlen)) < 0) {
        free(s);
        return -1;
    }
    /* ITC: http_drain() may stop the accepting while threads poll */
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL | MHD_USE_ITC;
    if (family == AF_INET6)
        flags |= MHD_USE_IPv6;
    s->daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, s, MHD_OPTION_LISTEN_SOCKET, s->fd,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, s, MHD_OPTION_URI_LOG_CALLBACK, on_uri,
        s, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)30, MHD_OPTION_CONNECTION_LIMIT,
        opt->max_connections ? opt->max_connections : 256u,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, opt->per_ip_connections,
        MHD_OPTION_THREAD_POOL_SIZE, (unsigned)(opt->threads > 1 ? opt->threads : 1),
        MHD_OPTION_END);
    if (!s->daemon) {
        snprintf(err, errlen, "could not start the HTTP server on \"%s\"", s->bound);
        close(s->fd);
        free(s);
        return -1;
    }
    *out = s;
    return 0;
}

void
http_drain(struct http_server *s, int ms)
{
    MHD_socket fd = MHD_quiesce_daemon(s->daemon);

    if (fd != MHD_INVALID_SOCKET)
        close(fd); /* ours now: the daemon no longer closes it */
    for (int waited = 0; waited < ms; waited += 20) {
        const union MHD_DaemonInfo *info =
            MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);
        if (!info || info->num_connections == 0)
            break;
        usleep(20 * 1000);
    }
}

void
http_stop(struct http_server *s)
{
    if (!s)
        return;
    MHD_stop_daemon(s->daemon); /* closes the listening socket too */
    free(s);
}

const char *
http_bound(const struct http_server *s)
{
    return s->bound;
}
