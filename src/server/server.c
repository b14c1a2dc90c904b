/* server.c - the HTTP server of `streamllm serve` (see server.h), on
 * libmicrohttpd with a pool of epoll threads. MHD parses HTTP and enforces
 * the connection limits (total, per IP), the idle timeout and the size of a
 * request's line + headers (its per-connection memory: 414 / 431 beyond).
 *
 * What MHD does not do is done here:
 *  - slow headers: MHD's timeout restarts with every byte received, so a
 *    client sending a header byte a second would never time out. Each
 *    connection is tracked from MHD's connection notifications; a reaper
 *    thread shuts down the socket of any connection whose request headers are
 *    not complete header_timeout_s after it opened (or after its previous
 *    request ended). The CLOSED notification, which MHD sends before it closes
 *    the socket, takes the same lock, so the reaper never touches a socket
 *    number that has been reused.
 *  - paths: MHD is told not to decode %-escapes (an identity unescape
 *    callback); sl_http_clean_path decodes and refuses anything that is not a
 *    plain path. Model files are looked up by name in the manifest (nothing
 *    else in the folder is reachable); web files are opened one segment at a
 *    time with O_NOFOLLOW below the web folder, so no symlink is followed.
 *  - Range / If-None-Match / If-Range, CORS, cross-origin isolation headers.
 * File bodies go out with sendfile (MHD_create_response_from_fd_at_offset64;
 * SIGPIPE is ignored so that MHD may use it). */
#include "server/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "server/http.h"

#define MAX_PATH_BYTES 2048
#define IMMUTABLE "public, max-age=31536000, immutable"
#define EXPOSED_HEADERS "Content-Range, Content-Length, ETag, Accept-Ranges"
#define ALLOWED_METHODS "GET, HEAD, OPTIONS"

/* One open connection, for the header-timeout reaper. */
typedef struct conn_track {
    struct conn_track *prev, *next;
    int fd;
    double wait_since_ms; /* when it began waiting for a request's headers; < 0 while one is handled */
    bool cut;
    char ip[INET6_ADDRSTRLEN];
} conn_track;

/* One request, from its request line to its completion (for the access log). */
typedef struct request_ctx {
    double start_ms;
    char ip[INET6_ADDRSTRLEN];
    char method[16];
    char uri[512];
    unsigned status;
    uint64_t bytes;
    bool handled;
} request_ctx;

struct sl_server {
    struct MHD_Daemon *daemon;
    const sl_registry *reg;
    sl_server_opts o;
    int web_fd;
    uint16_t port;
    pthread_mutex_t lock; /* guards conns, the counters and stopping */
    pthread_cond_t wake;
    conn_track *conns;
    unsigned n_conns;
    uint64_t requests, header_timeouts;
    bool stopping;
    pthread_t reaper;
    bool reaper_started;
    pthread_mutex_t log_lock;
};

typedef enum resp_kind {
    KIND_APP,   /* the web app: cross-origin isolated */
    KIND_MODEL, /* manifests and shards: readable from other origins */
    KIND_API,   /* JSON answers */
    KIND_ERROR,
} resp_kind;

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* ---- access log ---------------------------------------------------------- */

/* Appends s to buf as the inside of a JSON string (ASCII only). */
static size_t json_escape(char *buf, size_t cap, size_t n, const char *s) {
    static const char HEX[] = "0123456789abcdef";
    for (const unsigned char *p = (const unsigned char *)s; *p && n + 7 < cap; p++) {
        if (*p == '"' || *p == '\\') {
            buf[n++] = '\\';
            buf[n++] = (char)*p;
        } else if (*p < 0x20 || *p >= 0x7f) {
            n += (size_t)snprintf(buf + n, cap - n, "\\u00%c%c", HEX[*p >> 4], HEX[*p & 15]);
        } else {
            buf[n++] = (char)*p;
        }
    }
    buf[n] = 0;
    return n;
}

static void log_time(char out[32]) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, 32 - n, ".%03dZ", (int)(ts.tv_nsec / 1000000));
}

static void log_write(sl_server *s, const char *line, size_t len) {
    if (!s->o.access_log) return;
    pthread_mutex_lock(&s->log_lock);
    fwrite(line, 1, len, s->o.access_log);
    fflush(s->o.access_log);
    pthread_mutex_unlock(&s->log_lock);
}

static void log_request(sl_server *s, const request_ctx *rq, const char *end) {
    if (!s->o.access_log) return;
    char line[1200], t[32];
    log_time(t);
    size_t n = (size_t)snprintf(line, sizeof line, "{\"time\":\"%s\",\"ip\":\"%s\",\"method\":\"", t, rq->ip);
    n = json_escape(line, sizeof line, n, rq->method[0] ? rq->method : "-");
    n += (size_t)snprintf(line + n, sizeof line - n, "\",\"path\":\"");
    n = json_escape(line, sizeof line, n, rq->uri);
    n += (size_t)snprintf(line + n, sizeof line - n, "\",\"status\":%u,\"bytes\":%llu,\"ms\":%.3f,\"end\":\"%s\"}\n",
                          rq->status, (unsigned long long)rq->bytes, now_ms() - rq->start_ms, end);
    if (n >= sizeof line) n = sizeof line - 1;
    log_write(s, line, n);
}

static void mhd_logger(void *cls, const char *fmt, va_list ap) {
    sl_server *s = cls;
    FILE *f = s->o.access_log ? s->o.access_log : stderr;
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r')) msg[--n] = 0;
    char line[700], t[32];
    log_time(t);
    size_t len = (size_t)snprintf(line, sizeof line, "{\"time\":\"%s\",\"event\":\"mhd\",\"message\":\"", t);
    len = json_escape(line, sizeof line, len, msg);
    len += (size_t)snprintf(line + len, sizeof line - len, "\"}\n");
    if (len >= sizeof line) len = sizeof line - 1;
    pthread_mutex_lock(&s->log_lock);
    fwrite(line, 1, len, f);
    fflush(f);
    pthread_mutex_unlock(&s->log_lock);
}

/* ---- connection tracking and the header-timeout reaper ------------------- */

static conn_track *track_of(struct MHD_Connection *c) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? (conn_track *)ci->socket_context : NULL;
}

static void set_waiting(sl_server *s, struct MHD_Connection *c, bool waiting) {
    conn_track *t = track_of(c);
    if (!t) return;
    pthread_mutex_lock(&s->lock);
    t->wait_since_ms = waiting ? now_ms() : -1.0;
    pthread_mutex_unlock(&s->lock);
}

static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode code) {
    sl_server *s = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        conn_track *t = calloc(1, sizeof *t);
        if (!t) return; /* untracked: MHD's own idle timeout still applies */
        const union MHD_ConnectionInfo *fd = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        const union MHD_ConnectionInfo *addr = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        t->fd = fd ? fd->connect_fd : -1;
        snprintf(t->ip, sizeof t->ip, "?");
        if (addr && addr->client_addr) {
            const struct sockaddr *sa = addr->client_addr;
            if (sa->sa_family == AF_INET) {
                struct sockaddr_in in4;
                memcpy(&in4, sa, sizeof in4);
                inet_ntop(AF_INET, &in4.sin_addr, t->ip, sizeof t->ip);
            } else if (sa->sa_family == AF_INET6) {
                struct sockaddr_in6 in6;
                memcpy(&in6, sa, sizeof in6);
                inet_ntop(AF_INET6, &in6.sin6_addr, t->ip, sizeof t->ip);
            }
        }
        t->wait_since_ms = now_ms();
        pthread_mutex_lock(&s->lock);
        t->next = s->conns;
        if (s->conns) s->conns->prev = t;
        s->conns = t;
        s->n_conns++;
        pthread_mutex_unlock(&s->lock);
        *socket_context = t;
    } else if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
        conn_track *t = *socket_context;
        if (!t) return;
        pthread_mutex_lock(&s->lock);
        if (t->prev) t->prev->next = t->next;
        else s->conns = t->next;
        if (t->next) t->next->prev = t->prev;
        s->n_conns--;
        pthread_mutex_unlock(&s->lock);
        free(t);
        *socket_context = NULL;
    }
}

static void *reaper_main(void *arg) {
    sl_server *s = arg;
    double limit_ms = 1000.0 * s->o.header_timeout_s;
    pthread_mutex_lock(&s->lock);
    while (!s->stopping) {
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_nsec += 250 * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&s->wake, &s->lock, &until);
        double now = now_ms();
        for (conn_track *t = s->conns; t; t = t->next) {
            if (t->cut || t->fd < 0 || t->wait_since_ms < 0 || now - t->wait_since_ms <= limit_ms) continue;
            shutdown(t->fd, SHUT_RDWR); /* MHD sees the end of the stream and closes it */
            t->cut = true;
            s->header_timeouts++;
            if (s->o.access_log) {
                char line[256], ts[32];
                log_time(ts);
                int n = snprintf(line, sizeof line,
                                 "{\"time\":\"%s\",\"ip\":\"%s\",\"event\":\"header-timeout\",\"ms\":%.0f}\n", ts,
                                 t->ip, now - t->wait_since_ms);
                if (n > 0 && (size_t)n < sizeof line) log_write(s, line, (size_t)n);
            }
        }
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

/* ---- requests ------------------------------------------------------------ */

static void *on_uri(void *cls, const char *uri, struct MHD_Connection *c) {
    (void)cls;
    request_ctx *rq = calloc(1, sizeof *rq);
    if (!rq) return NULL;
    rq->start_ms = now_ms();
    snprintf(rq->uri, sizeof rq->uri, "%s", uri ? uri : "");
    conn_track *t = track_of(c);
    snprintf(rq->ip, sizeof rq->ip, "%s", t ? t->ip : "?");
    return rq;
}

static void on_completed(void *cls, struct MHD_Connection *c, void **req_cls, enum MHD_RequestTerminationCode toe) {
    sl_server *s = cls;
    request_ctx *rq = *req_cls;
    *req_cls = NULL;
    set_waiting(s, c, true);
    if (!rq) return;
    if (!rq->status) {
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_HTTP_STATUS);
        if (ci) rq->status = ci->http_status;
    }
    static const char *const ENDS[] = {"ok", "error", "timeout", "shutdown", "read-error", "client-abort"};
    log_request(s, rq, (unsigned)toe < sizeof ENDS / sizeof ENDS[0] ? ENDS[toe] : "other");
    pthread_mutex_lock(&s->lock);
    s->requests++;
    pthread_mutex_unlock(&s->lock);
    free(rq);
}

/* Leaves %-escapes in place: sl_http_clean_path decodes them, strictly. */
static size_t keep_escapes(void *cls, struct MHD_Connection *c, char *s) {
    (void)cls;
    (void)c;
    return strlen(s);
}

static const char *header(struct MHD_Connection *c, const char *name) {
    return MHD_lookup_connection_value(c, MHD_HEADER_KIND, name);
}

static void add_cors(sl_server *s, struct MHD_Connection *c, struct MHD_Response *r) {
    if (!s->o.cors) return;
    bool any = strcmp(s->o.cors, "*") == 0;
    if (!any) MHD_add_response_header(r, MHD_HTTP_HEADER_VARY, "Origin");
    const char *origin = header(c, "Origin");
    if (!origin || !sl_http_origin_allowed(s->o.cors, origin)) return;
    /* an echoed origin equals an entry of the configured list */
    MHD_add_response_header(r, "Access-Control-Allow-Origin", any ? "*" : origin);
    MHD_add_response_header(r, "Access-Control-Expose-Headers", EXPOSED_HEADERS);
}

static void add_policy(sl_server *s, struct MHD_Connection *c, struct MHD_Response *r, resp_kind kind) {
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    if (kind == KIND_APP) {
        MHD_add_response_header(r, "Cross-Origin-Opener-Policy", "same-origin");
        MHD_add_response_header(r, "Cross-Origin-Embedder-Policy", "require-corp");
        MHD_add_response_header(r, "Cross-Origin-Resource-Policy", "same-origin");
    } else if (kind == KIND_MODEL || kind == KIND_API) {
        MHD_add_response_header(r, "Cross-Origin-Resource-Policy", "cross-origin");
    }
    add_cors(s, c, r);
}

static enum MHD_Result queue(struct MHD_Connection *c, request_ctx *rq, unsigned status, struct MHD_Response *r,
                             uint64_t body_bytes) {
    if (!r) return MHD_NO; /* out of memory: MHD closes the connection */
    rq->status = status;
    rq->bytes = body_bytes;
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result answer_status(sl_server *s, struct MHD_Connection *c, request_ctx *rq, unsigned status,
                                     const char *text, bool head) {
    char body[128];
    int n = snprintf(body, sizeof body, "%u %s\n", status, text);
    size_t len = n > 0 && (size_t)n < sizeof body ? (size_t)n : 0;
    struct MHD_Response *r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_COPY);
    if (!r) return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain; charset=utf-8");
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    if (status == MHD_HTTP_METHOD_NOT_ALLOWED) MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, ALLOWED_METHODS);
    add_policy(s, c, r, KIND_ERROR);
    return queue(c, rq, status, r, head ? 0 : len);
}

/* A CORS preflight (or a plain OPTIONS): 204 with what is allowed. */
static enum MHD_Result answer_options(sl_server *s, struct MHD_Connection *c, request_ctx *rq) {
    struct MHD_Response *r = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
    if (!r) return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, ALLOWED_METHODS);
    const char *origin = header(c, "Origin");
    if (s->o.cors && strcmp(s->o.cors, "*") != 0) MHD_add_response_header(r, MHD_HTTP_HEADER_VARY, "Origin");
    if (s->o.cors && origin && header(c, "Access-Control-Request-Method") &&
        sl_http_origin_allowed(s->o.cors, origin)) {
        MHD_add_response_header(r, "Access-Control-Allow-Origin", strcmp(s->o.cors, "*") == 0 ? "*" : origin);
        MHD_add_response_header(r, "Access-Control-Allow-Methods", "GET, HEAD");
        /* Echo the requested headers when they are a plain list of names. */
        const char *asked = header(c, "Access-Control-Request-Headers");
        bool plain = asked && strlen(asked) < 512;
        for (const char *p = asked; plain && *p; p++)
            plain = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '-' ||
                    *p == ',' || *p == ' ';
        MHD_add_response_header(r, "Access-Control-Allow-Headers", plain ? asked : "Range, If-None-Match, If-Range");
        MHD_add_response_header(r, "Access-Control-Max-Age", "86400");
    }
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    return queue(c, rq, MHD_HTTP_NO_CONTENT, r, 0);
}

/* Bytes held in memory (the model list, manifests): 200 or 304. */
static enum MHD_Result answer_memory(sl_server *s, struct MHD_Connection *c, request_ctx *rq, const char *data,
                                     size_t len, const char *etag, resp_kind kind, bool head) {
    bool not_modified = sl_http_etag_list_matches(header(c, MHD_HTTP_HEADER_IF_NONE_MATCH), etag);
    struct MHD_Response *r = MHD_create_response_from_buffer(len, (void *)data, MHD_RESPMEM_PERSISTENT);
    if (!r) return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    MHD_add_response_header(r, MHD_HTTP_HEADER_ETAG, etag);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    add_policy(s, c, r, kind);
    /* MHD sends no body for HEAD and 304 (Content-Length stays the full size) */
    unsigned status = not_modified ? MHD_HTTP_NOT_MODIFIED : MHD_HTTP_OK;
    return queue(c, rq, status, r, head || not_modified ? 0 : len);
}

/* An open file (fd is consumed): 200, 206, 304 or 416, body by sendfile. */
static enum MHD_Result answer_file(sl_server *s, struct MHD_Connection *c, request_ctx *rq, int fd, uint64_t size,
                                   const char *etag, const char *cache_control, const char *type, resp_kind kind,
                                   bool head) {
    bool not_modified = sl_http_etag_list_matches(header(c, MHD_HTTP_HEADER_IF_NONE_MATCH), etag);
    unsigned status = not_modified ? MHD_HTTP_NOT_MODIFIED : MHD_HTTP_OK;
    uint64_t first = 0, length = size;
    const char *range = header(c, MHD_HTTP_HEADER_RANGE);
    const char *if_range = header(c, MHD_HTTP_HEADER_IF_RANGE);
    /* Range applies to GET only (RFC 9110 14.2); If-Range that does not match means "send it all" */
    if (!not_modified && !head && range && (!if_range || sl_http_if_range_matches(if_range, etag))) {
        sl_range_kind k = sl_http_parse_range(range, size, &first, &length);
        if (k == SL_RANGE_PARTIAL) {
            status = MHD_HTTP_PARTIAL_CONTENT;
        } else if (k == SL_RANGE_UNSATISFIABLE) {
            close(fd);
            char body[] = "416 range not satisfiable\n", cr[64];
            snprintf(cr, sizeof cr, "bytes */%llu", (unsigned long long)size);
            struct MHD_Response *r = MHD_create_response_from_buffer(sizeof body - 1, body, MHD_RESPMEM_MUST_COPY);
            if (!r) return MHD_NO;
            MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_RANGE, cr);
            MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain; charset=utf-8");
            MHD_add_response_header(r, MHD_HTTP_HEADER_ACCEPT_RANGES, "bytes");
            MHD_add_response_header(r, MHD_HTTP_HEADER_ETAG, etag);
            add_policy(s, c, r, kind);
            return queue(c, rq, MHD_HTTP_RANGE_NOT_SATISFIABLE, r, sizeof body - 1);
        } else {
            first = 0;
            length = size;
        }
    }
    struct MHD_Response *r = MHD_create_response_from_fd_at_offset64(length, fd, first);
    if (!r) {
        close(fd);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    MHD_add_response_header(r, MHD_HTTP_HEADER_ETAG, etag);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, cache_control);
    MHD_add_response_header(r, MHD_HTTP_HEADER_ACCEPT_RANGES, "bytes");
    if (status == MHD_HTTP_PARTIAL_CONTENT) {
        char cr[96];
        snprintf(cr, sizeof cr, "bytes %llu-%llu/%llu", (unsigned long long)first,
                 (unsigned long long)(first + length - 1), (unsigned long long)size);
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_RANGE, cr);
    }
    add_policy(s, c, r, kind);
    return queue(c, rq, status, r, head || not_modified ? 0 : length);
}

/* Opens rel (segments of plain names, checked by sl_http_clean_path) below
 * root without following any symlink; -1 when absent or not reachable so. */
static int open_beneath(int root, const char *rel) {
    char buf[MAX_PATH_BYTES];
    int n = snprintf(buf, sizeof buf, "%s", rel);
    if (n < 0 || (size_t)n >= sizeof buf) return -1;
    int dir = root;
    char *seg = buf;
    for (;;) {
        char *slash = strchr(seg, '/');
        if (!slash) break;
        *slash = 0;
        int next = openat(dir, seg, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (dir != root) close(dir);
        if (next < 0) return -1;
        dir = next;
        seg = slash + 1;
    }
    /* O_NONBLOCK: a FIFO must not block the worker; it is refused below anyway */
    int fd = openat(dir, seg, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    if (dir != root) close(dir);
    return fd;
}

static enum MHD_Result answer_web(sl_server *s, struct MHD_Connection *c, request_ctx *rq, const char *path,
                                  bool head) {
    const char *rel = strcmp(path, "/") == 0 ? "index.html" : path + 1;
    int fd = s->web_fd >= 0 ? open_beneath(s->web_fd, rel) : -1;
    struct stat st;
    if (fd >= 0 && (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))) { /* directories are never listed */
        close(fd);
        fd = -1;
    }
    if (fd < 0) return answer_status(s, c, rq, MHD_HTTP_NOT_FOUND, "not found", head);
    char etag[80];
    snprintf(etag, sizeof etag, "\"%llx-%llx-%lx\"", (unsigned long long)st.st_size,
             (unsigned long long)st.st_mtim.tv_sec, (unsigned long)st.st_mtim.tv_nsec);
    return answer_file(s, c, rq, fd, (uint64_t)st.st_size, etag, "no-cache", sl_http_content_type(rel), KIND_APP,
                       head);
}

static enum MHD_Result answer_model_file(sl_server *s, struct MHD_Connection *c, request_ctx *rq, const char *rest,
                                         bool head) {
    const char *slash = strchr(rest, '/');
    char id[256];
    if (!slash || (size_t)(slash - rest) >= sizeof id || strchr(slash + 1, '/'))
        return answer_status(s, c, rq, MHD_HTTP_NOT_FOUND, "not found", head);
    memcpy(id, rest, (size_t)(slash - rest));
    id[slash - rest] = 0;
    const sl_model_entry *m = sl_registry_find(s->reg, id);
    const sl_served_file *f = m ? sl_model_find_file(m, slash + 1) : NULL;
    if (!f) return answer_status(s, c, rq, MHD_HTTP_NOT_FOUND, "not found", head);
    if (f->data) return answer_memory(s, c, rq, f->data, (size_t)f->bytes, f->etag, KIND_MODEL, head);
    int fd = openat(m->dir_fd, f->name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    struct stat st;
    if (fd < 0) return answer_status(s, c, rq, MHD_HTTP_NOT_FOUND, "not found", head);
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size != f->bytes) {
        close(fd); /* the shard changed under us: refuse rather than serve bytes that do not match the ETag */
        return answer_status(s, c, rq, MHD_HTTP_INTERNAL_SERVER_ERROR, "shard changed on disk", head);
    }
    return answer_file(s, c, rq, fd, f->bytes, f->etag, f->immutable ? IMMUTABLE : "no-cache",
                       "application/octet-stream", KIND_MODEL, head);
}

static enum MHD_Result route(sl_server *s, struct MHD_Connection *c, request_ctx *rq, const char *url,
                             const char *method) {
    if (strcmp(method, MHD_HTTP_METHOD_OPTIONS) == 0) return answer_options(s, c, rq);
    bool head = strcmp(method, MHD_HTTP_METHOD_HEAD) == 0;

    char path[MAX_PATH_BYTES];
    switch (sl_http_clean_path(url, path, sizeof path)) {
    case SL_PATH_OK: break;
    case SL_PATH_BAD: return answer_status(s, c, rq, MHD_HTTP_BAD_REQUEST, "bad request path", head);
    case SL_PATH_NOT_FOUND: return answer_status(s, c, rq, MHD_HTTP_NOT_FOUND, "not found", head);
    case SL_PATH_TOO_LONG: return answer_status(s, c, rq, MHD_HTTP_URI_TOO_LONG, "request path too long", head);
    }

    const sl_registry *reg = s->reg;
    if (strcmp(path, "/api/models") == 0)
        return answer_memory(s, c, rq, reg->list_json, reg->list_len, reg->list_etag, KIND_API, head);
    if (strncmp(path, "/api/models/", 12) == 0) {
        const sl_model_entry *m = sl_registry_find(reg, path + 12);
        if (!m) return answer_status(s, c, rq, MHD_HTTP_NOT_FOUND, "no such model", head);
        return answer_memory(s, c, rq, m->manifest, m->manifest_len, m->manifest_etag, KIND_MODEL, head);
    }
    if (strncmp(path, "/models/", 8) == 0) return answer_model_file(s, c, rq, path + 8, head);
    return answer_web(s, c, rq, path, head);
}

/* MHD calls this once when the headers are in, then again (with any body)
 * until the request is complete. Answers are queued on the last call: one
 * queued on the first call makes MHD close the connection after it (0.9.75),
 * which is what refusals of methods and bodies want, and what GETs must avoid
 * so that connections are kept alive. */
static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_size,
                                  void **req_cls) {
    sl_server *s = cls;
    (void)version;
    (void)upload_data;
    request_ctx *rq = *req_cls;
    if (!rq) { /* the URI callback could not allocate */
        rq = calloc(1, sizeof *rq);
        if (!rq) return MHD_NO;
        rq->start_ms = now_ms();
        *req_cls = rq;
    }
    if (!rq->handled) { /* first call: the headers are complete */
        rq->handled = true;
        snprintf(rq->method, sizeof rq->method, "%s", method);
        set_waiting(s, c, false);
        bool allowed = !strcmp(method, MHD_HTTP_METHOD_GET) || !strcmp(method, MHD_HTTP_METHOD_HEAD) ||
                       !strcmp(method, MHD_HTTP_METHOD_OPTIONS);
        if (!allowed) return answer_status(s, c, rq, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed", false);
        const char *length = header(c, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (header(c, MHD_HTTP_HEADER_TRANSFER_ENCODING) || (length && strcmp(length, "0") != 0))
            return answer_status(s, c, rq, MHD_HTTP_BAD_REQUEST, "request body not accepted", false);
        return MHD_YES;
    }
    if (*upload_size != 0) { /* not expected (refused above); drop it */
        *upload_size = 0;
        return MHD_YES;
    }
    if (rq->status) return MHD_YES; /* already answered */
    return route(s, c, rq, url, method);
}

/* ---- lifetime ------------------------------------------------------------ */

static int resolve_host(const char *host, uint16_t port, struct sockaddr_storage *addr, bool *v6, sl_error *err) {
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(host, NULL, &hints, &res);
    if (rc != 0 || !res) return sl_err(err, "cannot resolve host '%s': %s", host, gai_strerror(rc));
    memset(addr, 0, sizeof *addr);
    memcpy(addr, res->ai_addr, res->ai_addrlen < sizeof *addr ? res->ai_addrlen : sizeof *addr);
    *v6 = res->ai_family == AF_INET6;
    freeaddrinfo(res);
    if (*v6) {
        struct sockaddr_in6 a;
        memcpy(&a, addr, sizeof a);
        a.sin6_port = htons(port);
        memcpy(addr, &a, sizeof a);
    } else {
        struct sockaddr_in a;
        memcpy(&a, addr, sizeof a);
        a.sin_port = htons(port);
        memcpy(addr, &a, sizeof a);
    }
    return 0;
}

sl_server *sl_server_start(const sl_registry *reg, const sl_server_opts *opts, sl_error *err) {
    sl_server *s = calloc(1, sizeof *s);
    if (!s) {
        sl_err(err, "out of memory");
        return NULL;
    }
    s->reg = reg;
    s->o = *opts;
    if (!s->o.host) s->o.host = "127.0.0.1";
    if (!s->o.threads) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        s->o.threads = n < 1 ? 1 : n > 8 ? 8 : (unsigned)n;
    }
    if (!s->o.max_connections) s->o.max_connections = 1024;
    /* a connection may hold a socket and an open file: stay within the descriptor limit */
    struct rlimit files;
    if (getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur != RLIM_INFINITY && files.rlim_cur > 128 &&
        s->o.max_connections > (files.rlim_cur - 64) / 2)
        s->o.max_connections = (unsigned)((files.rlim_cur - 64) / 2);
    if (!s->o.max_per_ip) s->o.max_per_ip = 256;
    if (!s->o.idle_timeout_s) s->o.idle_timeout_s = 30;
    if (!s->o.header_timeout_s) s->o.header_timeout_s = 10;
    if (!s->o.memory_limit) s->o.memory_limit = 32 * 1024;
    s->web_fd = -1;
    pthread_mutex_init(&s->lock, NULL);
    pthread_mutex_init(&s->log_lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->wake, &ca);
    pthread_condattr_destroy(&ca);

    if (s->o.web_dir) {
        s->web_fd = open(s->o.web_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (s->web_fd < 0) {
            sl_err(err, "cannot open web folder %s: %s", s->o.web_dir, strerror(errno));
            sl_server_stop(s);
            return NULL;
        }
    }
    struct sockaddr_storage addr;
    bool v6 = false;
    if (resolve_host(s->o.host, s->o.port, &addr, &v6, err)) {
        sl_server_stop(s);
        return NULL;
    }
    /* sendfile raises SIGPIPE when a client goes away; MHD uses it only when told SIGPIPE is handled */
    signal(SIGPIPE, SIG_IGN);
    unsigned flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_USE_ERROR_LOG | (v6 ? MHD_USE_IPv6 : 0);
    s->daemon = MHD_start_daemon(
        flags, s->o.port, NULL, NULL, on_request, s, MHD_OPTION_EXTERNAL_LOGGER, mhd_logger, s,
        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
        MHD_OPTION_THREAD_POOL_SIZE, s->o.threads, MHD_OPTION_CONNECTION_LIMIT, s->o.max_connections,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, s->o.max_per_ip, MHD_OPTION_CONNECTION_TIMEOUT, s->o.idle_timeout_s,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, s->o.memory_limit, MHD_OPTION_NOTIFY_CONNECTION, on_connection, s,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, s, MHD_OPTION_URI_LOG_CALLBACK, on_uri, s,
        MHD_OPTION_UNESCAPE_CALLBACK, keep_escapes, s, MHD_OPTION_SIGPIPE_HANDLED_BY_APP, 1, MHD_OPTION_END);
    if (!s->daemon) {
        sl_err(err, "cannot listen on %s:%u (address in use, or not allowed)", s->o.host, (unsigned)s->o.port);
        sl_server_stop(s);
        return NULL;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
    s->port = di ? di->port : s->o.port;
    if (pthread_create(&s->reaper, NULL, reaper_main, s) != 0) {
        sl_err(err, "cannot start the header-timeout thread");
        sl_server_stop(s);
        return NULL;
    }
    s->reaper_started = true;
    return s;
}

uint16_t sl_server_port(const sl_server *s) { return s->port; }

void sl_server_get_stats(sl_server *s, sl_server_stats *out) {
    pthread_mutex_lock(&s->lock);
    out->requests = s->requests;
    out->header_timeouts = s->header_timeouts;
    out->connections = s->n_conns;
    pthread_mutex_unlock(&s->lock);
}

void sl_server_stop(sl_server *s) {
    if (!s) return;
    if (s->daemon) MHD_stop_daemon(s->daemon); /* closes every connection: their tracks go */
    pthread_mutex_lock(&s->lock);
    s->stopping = true;
    pthread_cond_signal(&s->wake);
    pthread_mutex_unlock(&s->lock);
    if (s->reaper_started) pthread_join(s->reaper, NULL);
    while (s->conns) {
        conn_track *t = s->conns;
        s->conns = t->next;
        free(t);
    }
    if (s->web_fd >= 0) close(s->web_fd);
    pthread_cond_destroy(&s->wake);
    pthread_mutex_destroy(&s->lock);
    pthread_mutex_destroy(&s->log_lock);
    free(s);
}
