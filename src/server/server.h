/* server.h - `streamllm serve`'s HTTP server on libmicrohttpd: the model list,
 * manifests and shard bytes of a registry, and the web app from a folder.
 *
 * Routes (DESIGN.md "Server"): GET /api/models, GET /api/models/{id},
 * GET /models/{id}/{file} (only the files the model's manifest names),
 * GET / and any other path from the web folder (GET /stream-llm.js too).
 * GET and HEAD, with OPTIONS for CORS preflights; anything else is 405.
 * One line of JSON per request on the access log. */
#ifndef SL_SERVER_H
#define SL_SERVER_H

#include <stdio.h>

#include "server/registry.h"

typedef struct sl_server_opts {
    const char *host;          /* address to bind; NULL: 127.0.0.1 */
    uint16_t port;             /* 0: any free port (see sl_server_port) */
    const char *web_dir;       /* the app's files; NULL: none (/ is 404) */
    const char *cors;          /* NULL: no CORS; "*" or comma-separated origins */
    unsigned threads;          /* worker threads; 0: one per core, at most 8 */
    unsigned max_connections;  /* 0: 1024 */
    unsigned max_per_ip;       /* 0: 256 */
    unsigned idle_timeout_s;   /* no progress for this long closes a connection; 0: 30 */
    unsigned header_timeout_s; /* a request's headers must be complete this long after the
                                  connection (or its previous request) began; 0: 10 */
    size_t memory_limit;       /* per connection, bounds request line + headers; 0: 32 KiB */
    FILE *access_log;          /* NULL: no access log */
} sl_server_opts;

typedef struct sl_server sl_server;

typedef struct sl_server_stats {
    uint64_t requests;         /* requests answered (any status) */
    uint64_t header_timeouts;  /* connections cut for not finishing their headers in time */
    unsigned connections;      /* open now */
} sl_server_stats;

/* Starts serving reg (which must outlive the server) on its own threads. */
sl_server *sl_server_start(const sl_registry *reg, const sl_server_opts *opts, sl_error *err);
uint16_t sl_server_port(const sl_server *s);
void sl_server_get_stats(sl_server *s, sl_server_stats *out);
/* Stops accepting, closes every connection, joins the threads, frees s. */
void sl_server_stop(sl_server *s);

#endif
