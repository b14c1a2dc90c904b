/* pull.c - resumable, verified downloads of model files with libcurl (see
 * pull.h).
 *
 * What the hub publishes (as huggingface_hub reads it): GET
 * /OWNER/REPO/resolve/main/FILE answers an LFS file with a redirect to its
 * CDN and the headers X-Linked-Etag: "<sha256 of the file>" and
 * X-Linked-Size: <bytes>. Small files stored in git get ETag: "<git blob
 * sha1>" instead, which is not a SHA-256 and is not checked. So the expected
 * hash is X-Linked-Etag from any response of the redirect chain, else the
 * first response's ETag when it is 64 hex digits (a mirror that serves the
 * SHA-256 as its ETag); a CDN's own ETag (often an MD5) is never used. */
#include "server/pull.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "shard/shard.h"

#define HF_DEFAULT_ENDPOINT "https://huggingface.co"

bool sl_pull_is_remote(const char *src) {
    return src && (strncmp(src, "hf://", 5) == 0 || strncmp(src, "http://", 7) == 0 ||
                   strncmp(src, "https://", 8) == 0);
}

static bool name_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
           c == '-' || c == '+';
}

/* A plain file name: [A-Za-z0-9._+-]{1,200}, not starting with '.'. */
static bool plain_name(const char *s, size_t n) {
    if (n == 0 || n > 200 || s[0] == '.') return false;
    for (size_t i = 0; i < n; i++)
        if (!name_char(s[i])) return false;
    return true;
}

int sl_pull_resolve(const char *src, char *url, size_t url_size, char *name, size_t name_size, sl_error *err) {
    if (strncmp(src, "hf://", 5) == 0) {
        /* OWNER/REPO/PATH: segments of plain names, PATH one or more of them */
        const char *p = src + 5;
        int n_segments = 0;
        const char *last = p;
        for (const char *seg = p;;) {
            const char *slash = strchr(seg, '/');
            size_t len = slash ? (size_t)(slash - seg) : strlen(seg);
            if (!plain_name(seg, len)) return sl_err(err, "bad hf:// source '%s' (want hf://OWNER/REPO/FILE.gguf)", src);
            n_segments++;
            last = seg;
            if (!slash) break;
            seg = slash + 1;
        }
        if (n_segments < 3) return sl_err(err, "bad hf:// source '%s' (want hf://OWNER/REPO/FILE.gguf)", src);
        const char *repo_end = strchr(strchr(p, '/') + 1, '/');
        const char *endpoint = getenv("STREAMLLM_HF_ENDPOINT");
        if (!endpoint || !*endpoint) endpoint = HF_DEFAULT_ENDPOINT;
        size_t ep_len = strlen(endpoint);
        while (ep_len > 0 && endpoint[ep_len - 1] == '/') ep_len--;
        int n = snprintf(url, url_size, "%.*s/%.*s/resolve/main/%s", (int)ep_len, endpoint, (int)(repo_end - p), p,
                         repo_end + 1);
        if (n < 0 || (size_t)n >= url_size) return sl_err(err, "source too long: %s", src);
        n = snprintf(name, name_size, "%s", last);
        if (n < 0 || (size_t)n >= name_size) return sl_err(err, "file name too long: %s", last);
        return 0;
    }
    if (strncmp(src, "http://", 7) != 0 && strncmp(src, "https://", 8) != 0)
        return sl_err(err, "'%s' is not an hf://, http:// or https:// source", src);
    const char *host = strstr(src, "://") + 3;
    size_t path_end = strcspn(host, "?#");
    const char *slash = memchr(host, '/', path_end);
    const char *base = NULL;
    for (const char *q = slash; q && q < host + path_end; q = memchr(q + 1, '/', (size_t)(host + path_end - q - 1)))
        base = q + 1;
    size_t base_len = base ? (size_t)(host + path_end - base) : 0;
    if (!base || !plain_name(base, base_len))
        return sl_err(err, "cannot name a local file after '%s' (its last path segment must be a plain file name)", src);
    int n = snprintf(url, url_size, "%s", src);
    if (n < 0 || (size_t)n >= url_size) return sl_err(err, "URL too long: %s", src);
    n = snprintf(name, name_size, "%.*s", (int)base_len, base);
    if (n < 0 || (size_t)n >= name_size) return sl_err(err, "file name too long in %s", src);
    return 0;
}

char *sl_pull_default_dir(sl_error *err) {
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    char buf[PATH_MAX];
    int n;
    if (xdg && xdg[0] == '/') n = snprintf(buf, sizeof buf, "%s/stream-llm", xdg);
    else if (home && *home) n = snprintf(buf, sizeof buf, "%s/.cache/stream-llm", home);
    else {
        sl_err(err, "no HOME to put ~/.cache/stream-llm in (use -o DIR)");
        return NULL;
    }
    if (n < 0 || (size_t)n >= sizeof buf) {
        sl_err(err, "cache path too long");
        return NULL;
    }
    return sl_strndup(buf, (size_t)n);
}

static int make_dirs(const char *path, sl_error *err) {
    char buf[PATH_MAX];
    int n = snprintf(buf, sizeof buf, "%s", path);
    if (n < 0 || (size_t)n >= sizeof buf) return sl_err(err, "path too long: %s", path);
    for (char *p = buf + 1;; p++) {
        if (*p == '/' || *p == 0) {
            char saved = *p;
            *p = 0;
            if (mkdir(buf, 0755) != 0 && errno != EEXIST) return sl_err(err, "cannot create %s: %s", buf, strerror(errno));
            *p = saved;
            if (!saved) break;
        }
    }
    return 0;
}

/* ---- what arrives: headers and body of one request (see pull.h) ---------- */

void sl_pull_response_init(sl_pull_response *r, uint64_t have) {
    memset(r, 0, sizeof *r);
    r->have = have;
    r->linked_size = r->range_start = r->range_total = r->retry_after = -1;
}

/* Copies a header value without surrounding blanks, W/ and quotes. */
static void header_token(const char *v, size_t n, char *out, size_t out_size) {
    while (n > 0 && (*v == ' ' || *v == '\t')) {
        v++;
        n--;
    }
    while (n > 0 && (v[n - 1] == '\r' || v[n - 1] == '\n' || v[n - 1] == ' ' || v[n - 1] == '\t')) n--;
    if (n >= 2 && v[0] == 'W' && v[1] == '/') {
        v += 2;
        n -= 2;
    }
    if (n >= 2 && v[0] == '"' && v[n - 1] == '"') {
        v++;
        n -= 2;
    }
    if (n >= out_size) n = 0; /* too long to be a hash: ignore */
    memcpy(out, v, n);
    out[n] = 0;
}

/* Leading decimal digits as a number (stops before it could overflow); -1 when none. */
static int64_t parse_i64(const char *s) {
    int64_t v = 0;
    bool any = false;
    for (; *s >= '0' && *s <= '9' && v < INT64_MAX / 10 - 10; s++) {
        v = v * 10 + (*s - '0');
        any = true;
    }
    return any ? v : -1;
}

size_t sl_pull_response_header(sl_pull_response *r, const char *buf, size_t len) {
    char line[512];
    size_t k = len < sizeof line - 1 ? len : sizeof line - 1;
    memcpy(line, buf, k);
    line[k] = 0;
    if (strncmp(line, "HTTP/", 5) == 0) { /* a new response of the chain */
        const char *sp = strchr(line, ' ');
        r->status = sp ? (long)parse_i64(sp + 1) : 0;
        r->n_responses++;
        r->range_start = r->range_total = r->retry_after = -1;
        return len;
    }
    const char *colon = strchr(line, ':');
    if (!colon) return len;
    size_t name_len = (size_t)(colon - line);
    const char *v = colon + 1;
    size_t vn = strlen(v);
    while (*v == ' ' || *v == '\t') v++;
    if (name_len == 13 && strncasecmp(line, "X-Linked-Etag", 13) == 0) {
        header_token(colon + 1, vn, r->linked_etag, sizeof r->linked_etag);
    } else if (name_len == 4 && strncasecmp(line, "ETag", 4) == 0 && r->n_responses == 1) {
        header_token(colon + 1, vn, r->first_etag, sizeof r->first_etag);
    } else if (name_len == 13 && strncasecmp(line, "X-Linked-Size", 13) == 0) {
        r->linked_size = parse_i64(v);
    } else if (name_len == 11 && strncasecmp(line, "Retry-After", 11) == 0) {
        r->retry_after = parse_i64(v); /* seconds; an HTTP date gives -1 */
    } else if (name_len == 13 && strncasecmp(line, "Content-Range", 13) == 0) {
        /* "bytes FIRST-LAST/TOTAL" or "bytes * /TOTAL" */
        if (strncasecmp(v, "bytes ", 6) == 0) {
            const char *p = v + 6;
            r->range_start = *p == '*' ? -1 : parse_i64(p);
            const char *slash = strchr(p, '/');
            r->range_total = slash ? parse_i64(slash + 1) : -1;
        }
    }
    return len;
}

static size_t fail_write(sl_pull_response *r, const char *msg) {
    snprintf(r->write_error, sizeof r->write_error, "%s", msg);
    r->write_failed = true;
    return 0; /* makes curl stop with CURLE_WRITE_ERROR */
}

size_t sl_pull_response_body(sl_pull_response *r, const char *buf, size_t len) {
    if (r->write_failed) return 0;
    if (r->body_started && r->body_response != r->n_responses) /* libcurl never does this; refuse to mix */
        return fail_write(r, "a second response arrived after the body had begun");
    if (!r->body_started) {
        r->body_started = true;
        r->body_response = r->n_responses;
        if (r->status == 206) {
            if (r->range_start < 0 || (uint64_t)r->range_start != r->have)
                return fail_write(r, "the server resumed at another offset than asked");
        } else if (r->status == 200) {
            if (r->have > 0) { /* the server ignored Range: start over */
                const char *why = r->truncate(r->sink);
                if (why) return fail_write(r, why);
                r->have = 0;
            }
        } else {
            return fail_write(r, ""); /* an error page: the status says what happened */
        }
    }
    uint64_t at;
    if (!sl_add_u64(r->have, r->written, &at) || !sl_add_u64(at, len, &at))
        return fail_write(r, "more bytes than a file can have");
    const char *why = len ? r->write_at(r->sink, buf, len, r->have + r->written) : NULL;
    if (why) return fail_write(r, why);
    r->written += len;
    return len;
}

static bool is_hex64(const char *s) {
    if (strlen(s) != 64) return false;
    for (const char *p = s; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f') || (*p >= 'A' && *p <= 'F'))) return false;
    return true;
}

const char *sl_pull_response_sha256(const sl_pull_response *r) {
    return is_hex64(r->linked_etag) ? r->linked_etag : is_hex64(r->first_etag) ? r->first_etag : NULL;
}

sl_pull_verdict sl_pull_response_verdict(const sl_pull_response *r, bool transfer_ok, const char *transfer_msg,
                                         char *msg, size_t msg_size) {
    msg[0] = 0;
    if (!transfer_msg || !*transfer_msg) transfer_msg = "connection failed";
    if (r->status == 416 && r->have > 0) {
        /* nothing left past what we have: complete if the sizes agree, else start over */
        int64_t total = r->range_total >= 0 ? r->range_total : r->linked_size;
        if (total >= 0 && (uint64_t)total == r->have) return SL_PULL_COMPLETE;
        snprintf(msg, msg_size, "the server refuses to resume");
        return SL_PULL_RESTART;
    }
    if (r->write_failed && r->write_error[0]) {
        snprintf(msg, msg_size, "%s", r->write_error);
        return SL_PULL_FAIL;
    }
    if (r->status != 200 && r->status != 206) {
        if (!r->status) {
            snprintf(msg, msg_size, "%s", transfer_msg);
            return SL_PULL_FAIL;
        }
        snprintf(msg, msg_size, "HTTP %ld", r->status);
        bool transient = r->status == 408 || r->status == 429 || r->status == 500 || r->status == 502 ||
                         r->status == 503 || r->status == 504;
        return transient ? SL_PULL_BACKOFF : SL_PULL_FAIL;
    }
    if (!transfer_ok) {
        snprintf(msg, msg_size, "interrupted after %llu bytes (%s)", (unsigned long long)(r->have + r->written),
                 transfer_msg);
        return r->written > 0 ? SL_PULL_RESUME : SL_PULL_FAIL;
    }
    return SL_PULL_COMPLETE;
}

/* ---- one transfer with libcurl ------------------------------------------- */

typedef struct transfer {
    sl_pull_response r;
    int fd;
    char io_error[160];
    /* progress bar */
    const char *name;
    bool progress;
    double last_draw, start;
} transfer;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static const char *part_write_at(void *sink, const void *buf, size_t n, uint64_t offset) {
    transfer *t = sink;
    const char *p = buf;
    for (size_t done = 0; done < n;) {
        ssize_t w = pwrite(t->fd, p + done, n - done, (off_t)(offset + done));
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) { /* ENOSPC, EFBIG (a file size limit), EIO ... */
            snprintf(t->io_error, sizeof t->io_error, "cannot write the .part file: %s",
                     w < 0 ? strerror(errno) : "no progress");
            return t->io_error;
        }
        done += (size_t)w;
    }
    return NULL;
}

static const char *part_truncate(void *sink) {
    transfer *t = sink;
    return ftruncate(t->fd, 0) == 0 ? NULL : "cannot truncate the .part file";
}

static size_t on_header(char *buf, size_t size, size_t n, void *arg) {
    transfer *t = arg;
    return sl_pull_response_header(&t->r, buf, size * n);
}

static size_t on_body(char *buf, size_t size, size_t n, void *arg) {
    transfer *t = arg;
    return sl_pull_response_body(&t->r, buf, size * n);
}

static void draw_progress(transfer *t, uint64_t now_bytes, uint64_t total) {
    double now = now_s();
    if (now - t->last_draw < 0.1) return;
    t->last_draw = now;
    const int width = 30;
    double frac = total ? (double)now_bytes / (double)total : 0.0;
    if (frac > 1) frac = 1;
    char bar[64];
    int filled = (int)(frac * width);
    for (int i = 0; i < width; i++) bar[i] = i < filled ? '#' : '.';
    bar[width] = 0;
    double secs = now - t->start;
    double rate = secs > 0 ? (double)t->r.written / secs / (1024.0 * 1024.0) : 0.0;
    if (total)
        fprintf(stderr, "\r%s [%s] %5.1f%% %.1f/%.1f MiB %.1f MiB/s ", t->name, bar, 100.0 * frac,
                (double)now_bytes / 1048576.0, (double)total / 1048576.0, rate);
    else
        fprintf(stderr, "\r%s %.1f MiB %.1f MiB/s ", t->name, (double)now_bytes / 1048576.0, rate);
    fflush(stderr);
}

static int on_xfer(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow) {
    (void)ultotal;
    (void)ulnow;
    transfer *t = arg;
    if (t->progress && t->r.body_started && (t->r.status == 200 || t->r.status == 206))
        draw_progress(t, t->r.have + (uint64_t)dlnow, dltotal > 0 ? t->r.have + (uint64_t)dltotal : 0);
    return 0;
}

/* One GET of url into t->fd from t->r.have on. Returns the curl result. */
static CURLcode run_transfer(const char *url, transfer *t, const sl_pull_opts *o, bool hf, char *curl_msg) {
    CURL *h = curl_easy_init();
    if (!h) return CURLE_FAILED_INIT;
    struct curl_slist *headers = NULL;
    const char *token = getenv("HF_TOKEN");
    if (hf && token && *token) {
        char auth[1024];
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
        headers = curl_slist_append(headers, auth); /* curl drops it on a redirect to another host */
    }
    char range[48];
    snprintf(range, sizeof range, "%llu-", (unsigned long long)t->r.have);
    curl_msg[0] = 0;
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, curl_msg);
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(h, CURLOPT_MAXREDIRS, 10L);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "stream-llm/1 (streamllm pull)");
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 30L);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, o->stall_timeout_s > 0 ? o->stall_timeout_s : 60L);
    if (headers) curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
    if (t->r.have > 0) curl_easy_setopt(h, CURLOPT_RANGE, range);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, t);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, t);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_xfer);
    curl_easy_setopt(h, CURLOPT_XFERINFODATA, t);
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    CURLcode rc = curl_easy_perform(h);
    curl_easy_cleanup(h);
    curl_slist_free_all(headers);
    return rc;
}

static void sleep_ms(long ms) {
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* Cuts that made progress are resumed at once, up to this many times a file. */
#define MAX_RESUMES 10
/* The longest Retry-After obeyed (longer ones are cut to this). */
#define MAX_RETRY_AFTER_S 60

/* Downloads url to dest (via dest.part). Transient failures are retried (see
 * sl_pull_opts.retries); what is left on failure is a .part to resume. */
static int download_one(const char *url, const char *dest, const char *name, const sl_pull_opts *o, bool hf,
                        sl_error *err) {
    struct stat st;
    if (stat(dest, &st) == 0 && S_ISREG(st.st_mode)) {
        if (o->log) fprintf(o->log, "have %s (%lld bytes)\n", dest, (long long)st.st_size);
        return 0;
    }
    char part[PATH_MAX];
    int n = snprintf(part, sizeof part, "%s.part", dest);
    if (n < 0 || (size_t)n >= sizeof part) return sl_err(err, "path too long: %s", dest);
    int fd = open(part, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return sl_err(err, "cannot open %s: %s", part, strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        close(fd);
        return sl_err(err, "another pull is writing %s", part);
    }
    int rc = -1;
    int retries = o->retries == 0 ? 3 : o->retries < 0 ? 0 : o->retries;
    long delay_ms = o->retry_delay_ms > 0 ? o->retry_delay_ms : 1000;
    int resumes = MAX_RESUMES, restarts = 1;
    transfer t;
    const char *expected = NULL;
    for (;;) {
        if (fstat(fd, &st) != 0) {
            sl_err(err, "cannot stat %s: %s", part, strerror(errno));
            goto done;
        }
        memset(&t, 0, sizeof t);
        sl_pull_response_init(&t.r, (uint64_t)st.st_size);
        t.r.write_at = part_write_at;
        t.r.truncate = part_truncate;
        t.r.sink = &t;
        t.fd = fd;
        t.name = name;
        t.progress = o->progress;
        t.start = now_s();
        if (o->log && t.r.have > 0)
            fprintf(o->log, "resuming %s at %llu bytes\n", name, (unsigned long long)t.r.have);
        char curl_msg[CURL_ERROR_SIZE];
        CURLcode cc = run_transfer(url, &t, o, hf, curl_msg);
        if (t.progress && t.r.body_started) { /* the bar's last state, then a new line */
            t.last_draw = 0;
            uint64_t now_bytes = t.r.have + t.r.written;
            draw_progress(&t, now_bytes, cc == CURLE_OK ? now_bytes : 0);
            fputc('\n', stderr);
        }
        char why[256];
        sl_pull_verdict v = sl_pull_response_verdict(&t.r, cc == CURLE_OK, curl_msg[0] ? curl_msg : curl_easy_strerror(cc),
                                                     why, sizeof why);
        if (v == SL_PULL_RESTART && restarts-- > 0) {
            if (ftruncate(fd, 0) != 0) {
                sl_err(err, "cannot truncate %s", part);
                goto done;
            }
            continue;
        }
        if (v == SL_PULL_RESUME && resumes-- > 0) {
            if (o->log) fprintf(o->log, "%s: %s; resuming\n", name, why);
            continue;
        }
        if (v == SL_PULL_BACKOFF && retries-- > 0) {
            long wait_ms = t.r.retry_after >= 0 ? 1000L * (t.r.retry_after < MAX_RETRY_AFTER_S ? t.r.retry_after
                                                                                                  : MAX_RETRY_AFTER_S)
                                                 : delay_ms;
            if (o->log) fprintf(o->log, "%s: %s; retrying in %.1f s\n", name, why, wait_ms / 1000.0);
            sleep_ms(wait_ms);
            delay_ms *= 2;
            continue;
        }
        if (v == SL_PULL_RESTART) {
            sl_err(err, "the server refuses to resume %s", url);
            goto done;
        }
        bool cut = !t.r.write_failed && (t.r.status == 200 || t.r.status == 206);
        if (v == SL_PULL_RESUME || (v == SL_PULL_FAIL && cut)) {
            sl_err(err, "download of %s %s; run pull again to resume", name, why);
            goto done;
        }
        if (v != SL_PULL_COMPLETE) {
            if (t.r.write_failed && t.r.write_error[0]) sl_err(err, "download of %s failed: %s", url, why);
            else if (t.r.status) sl_err(err, "%s for %s", why, url);
            else sl_err(err, "cannot fetch %s: %s", url, why);
            goto done;
        }

        /* Verify: size when published, SHA-256 when published. A mismatch is
         * downloaded once more from the start (corruption in transit), then
         * removed so that the next pull starts clean. */
        if (fstat(fd, &st) != 0) {
            sl_err(err, "cannot stat %s", part);
            goto done;
        }
        expected = sl_pull_response_sha256(&t.r);
        bool matches = true;
        if (t.r.linked_size >= 0 && (uint64_t)st.st_size != (uint64_t)t.r.linked_size) {
            sl_err(err, "%s has %lld bytes, the hub says %lld: the download was removed", name,
                   (long long)st.st_size, (long long)t.r.linked_size);
            matches = false;
        } else if (expected) {
            char got[65];
            if (sl_sha256_file(part, got, err)) goto done;
            if (strcasecmp(got, expected) != 0) {
                sl_err(err, "SHA-256 of %s is %s, the hub says %s: the download was removed", name, got, expected);
                matches = false;
            }
        }
        if (matches) break;
        if (retries-- > 0 && ftruncate(fd, 0) == 0) {
            if (o->log) fprintf(o->log, "%s: the download does not match what the server published; downloading again\n", name);
            continue;
        }
        unlink(part);
        goto done;
    }
    if (fsync(fd) != 0 || rename(part, dest) != 0) {
        sl_err(err, "cannot move %s into place: %s", part, strerror(errno));
        goto done;
    }
    if (o->log)
        fprintf(o->log, "saved %s (%lld bytes, %s)\n", dest, (long long)st.st_size,
                expected ? "SHA-256 verified" : "no published SHA-256 to check");
    rc = 0;
done:
    if (rc != 0 && fstat(fd, &st) == 0 && st.st_size == 0) unlink(part); /* nothing worth resuming */
    close(fd);
    return rc;
}

/* "PREFIX-00001-of-00003.gguf" at the end of s: position of the first digit
 * group and the count. */
static bool split_first(const char *s, size_t *digits_at, int *count) {
    const size_t suffix_len = sizeof "-00001-of-00003.gguf" - 1;
    size_t n = strlen(s);
    if (n <= suffix_len) return false;
    const char *p = s + n - suffix_len;
    if (strncmp(p, "-00001-of-", 10) != 0 || strcmp(p + 15, ".gguf") != 0) return false;
    int c = 0;
    for (int i = 10; i < 15; i++) {
        if (p[i] < '0' || p[i] > '9') return false;
        c = c * 10 + (p[i] - '0');
    }
    if (c < 1) return false;
    *digits_at = (size_t)(p - s) + 1;
    *count = c;
    return true;
}

char *sl_pull(const char *src, const sl_pull_opts *o, sl_error *err) {
    char url[4096], name[256];
    if (sl_pull_resolve(src, url, sizeof url, name, sizeof name, err)) return NULL;
    char *dir = o->out_dir ? sl_strndup(o->out_dir, strlen(o->out_dir)) : sl_pull_default_dir(err);
    if (!dir) return NULL;
    char *result = NULL;
    if (make_dirs(dir, err)) goto out;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        sl_err(err, "cannot initialise libcurl");
        goto out;
    }
    bool hf = strncmp(src, "hf://", 5) == 0;
    size_t url_digits, name_digits;
    int count = 1;
    bool split = split_first(url, &url_digits, &count) && split_first(name, &name_digits, &count);
    int rc = 0;
    for (int i = 1; i <= count && rc == 0; i++) {
        if (split) { /* the i-th part: rewrite the 5 digits of the part number */
            char digits[12];
            snprintf(digits, sizeof digits, "%05d", i);
            memcpy(url + url_digits, digits, 5);
            memcpy(name + name_digits, digits, 5);
        }
        char dest[PATH_MAX];
        int n = snprintf(dest, sizeof dest, "%s/%s", dir, name);
        if (n < 0 || (size_t)n >= sizeof dest) rc = sl_err(err, "path too long: %s/%s", dir, name);
        else rc = download_one(url, dest, name, o, hf, err);
        if (rc == 0 && i == 1) result = sl_strndup(dest, strlen(dest));
    }
    curl_global_cleanup();
    if (rc != 0) {
        free(result);
        result = NULL;
    } else if (!result) {
        sl_err(err, "out of memory");
    }
out:
    free(dir);
    return result;
}
