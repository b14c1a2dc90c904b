/* pull.h - `streamllm pull`: downloading a model from the Hugging Face hub
 * (hf://OWNER/REPO/PATH.gguf) or any http(s) URL into a local folder, with
 * libcurl: resumable (FILE.part + Range), a progress bar on a terminal, the
 * SHA-256 the hub publishes for LFS files checked (its X-Linked-Etag), and an
 * atomic rename when done. A download that fails the check is deleted, .part
 * included, so the next pull starts clean. */
#ifndef SL_PULL_H
#define SL_PULL_H

#include <stdio.h>

#include "util/common.h"

typedef struct sl_pull_opts {
    const char *out_dir;      /* NULL: sl_pull_default_dir() */
    bool progress;            /* progress bar on stderr */
    FILE *log;                /* one line per file fetched or found (NULL: quiet) */
    long stall_timeout_s;     /* give up when under 1 byte/s for this long; 0: 60 */
    int retries;              /* transient failures (5xx, 429, a cut that made progress, a bad
                                 hash) retried this many times per file; 0: 3, < 0: none */
    long retry_delay_ms;      /* first wait before retrying a 5xx / 429 (doubling); 0: 1000 */
} sl_pull_opts;

/* True for hf://, http:// and https:// sources. */
bool sl_pull_is_remote(const char *src);

/* The URL to fetch and the local file name for src. hf://OWNER/REPO/PATH maps
 * to $STREAMLLM_HF_ENDPOINT/OWNER/REPO/resolve/main/PATH (endpoint default
 * https://huggingface.co); for an http(s) URL the name is its last path
 * segment. Names must be plain ([A-Za-z0-9._+-], not starting with '.'). */
int sl_pull_resolve(const char *src, char *url, size_t url_size, char *name, size_t name_size, sl_error *err);

/* $XDG_CACHE_HOME/stream-llm, else ~/.cache/stream-llm (malloc'd). */
char *sl_pull_default_dir(sl_error *err);

/* Downloads src into the folder (created if missing) unless the file is
 * already there; for the first file of a llama.cpp split
 * (NAME-00001-of-0000N.gguf) every part is fetched. Returns the local path of
 * the (first) file, malloc'd, or NULL with err set. An interrupted download
 * leaves FILE.part behind; the next call resumes it. */
char *sl_pull(const char *src, const sl_pull_opts *o, sl_error *err);

/* ---- what arrives: one request's responses, fed as libcurl hands them over ----
 * The checks on a download's responses, apart from libcurl, so that a test or
 * fuzz/fuzz_pull.c can feed them arbitrary bytes. */

typedef struct sl_pull_response {
    /* set before the request (sl_pull_response_init) */
    uint64_t have;         /* bytes of the .part when the request was sent */
    /* where the body goes: write_at writes n bytes at offset of the .part,
     * truncate empties it; each returns NULL or the reason it failed */
    const char *(*write_at)(void *sink, const void *buf, size_t n, uint64_t offset);
    const char *(*truncate)(void *sink);
    void *sink;
    /* gathered */
    uint64_t written;      /* body bytes written from `have` on */
    long status;           /* of the latest response of the redirect chain */
    int n_responses;
    int body_response;     /* which response of the chain the body belongs to (1-based) */
    bool body_started, write_failed;
    char write_error[160];
    char linked_etag[80];  /* X-Linked-Etag, unquoted */
    char first_etag[80];   /* ETag of the first response, unquoted */
    int64_t linked_size;   /* X-Linked-Size, -1 when absent */
    int64_t range_start;   /* Content-Range of the latest response: first byte, -1 when absent */
    int64_t range_total;   /* ... and complete length, -1 when absent or '*' */
    int64_t retry_after;   /* Retry-After in seconds, -1 when absent or a date */
} sl_pull_response;

void sl_pull_response_init(sl_pull_response *r, uint64_t have);
/* One header line (with its CRLF) of any response of the chain; returns len. */
size_t sl_pull_response_header(sl_pull_response *r, const char *line, size_t len);
/* A piece of the body: checked (a 206 must resume at `have`; a 200 to a
 * resumed request restarts the file) and written. Returns len, or 0 to stop
 * the transfer (write_failed, with write_error unless the status is not 2xx). */
size_t sl_pull_response_body(sl_pull_response *r, const char *buf, size_t len);
/* The SHA-256 the responses published (64 hex digits), or NULL. */
const char *sl_pull_response_sha256(const sl_pull_response *r);

typedef enum sl_pull_verdict {
    SL_PULL_COMPLETE, /* the .part is whole (to be verified) */
    SL_PULL_RESTART,  /* 416 for a .part that is not the file: empty it and ask again */
    SL_PULL_RESUME,   /* cut after some bytes arrived: ask again for the rest */
    SL_PULL_BACKOFF,  /* 5xx / 429: wait, then ask again */
    SL_PULL_FAIL,     /* msg says why */
} sl_pull_verdict;

/* What to do once a request ended; transfer_ok: libcurl completed it.
 * transfer_msg: libcurl's reason when it did not. msg gets one line. */
sl_pull_verdict sl_pull_response_verdict(const sl_pull_response *r, bool transfer_ok, const char *transfer_msg,
                                         char *msg, size_t msg_size);

#endif
