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

/* ---- one transfer -------------------------------------------------------- */

typedef struct transfer {
    int fd;
    uint64_t have;         /* bytes of the .part when the request was sent (0 after a restart) */
    uint64_t written;      /* body bytes written by this transfer */
    long status;           /* of the latest response */
    int n_responses;
    bool body_started, write_failed;
    char write_error[160];
    char linked_etag[80];  /* X-Linked-Etag, unquoted */
    char first_etag[80];   /* ETag of the first response, unquoted */
    int64_t linked_size;   /* X-Linked-Size, -1 when absent */
    int64_t range_start;   /* Content-Range of the latest response: first byte, -1 when absent */
    int64_t range_total;   /* ... and complete length, -1 when absent or '*' */
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

static int64_t parse_i64(const char *s, const char **end) {
    int64_t v = 0;
    bool any = false;
    for (; *s >= '0' && *s <= '9' && v < INT64_MAX / 10 - 10; s++) {
        v = v * 10 + (*s - '0');
        any = true;
    }
    if (end) *end = s;
    return any ? v : -1;
}

static size_t on_header(char *buf, size_t size, size_t n, void *arg) {
    transfer *t = arg;
    size_t len = size * n;
    char line[512];
    size_t k = len < sizeof line - 1 ? len : sizeof line - 1;
    memcpy(line, buf, k);
    line[k] = 0;
    if (strncmp(line, "HTTP/", 5) == 0) { /* a new response of the chain */
        const char *sp = strchr(line, ' ');
        t->status = sp ? (long)parse_i64(sp + 1, NULL) : 0;
        t->n_responses++;
        t->range_start = t->range_total = -1;
        return len;
    }
    const char *colon = strchr(line, ':');
    if (!colon) return len;
    size_t name_len = (size_t)(colon - line);
    const char *v = colon + 1;
    size_t vn = strlen(v);
    if (name_len == 13 && strncasecmp(line, "X-Linked-Etag", 13) == 0) {
        header_token(v, vn, t->linked_etag, sizeof t->linked_etag);
    } else if (name_len == 4 && strncasecmp(line, "ETag", 4) == 0 && t->n_responses == 1) {
        header_token(v, vn, t->first_etag, sizeof t->first_etag);
    } else if (name_len == 13 && strncasecmp(line, "X-Linked-Size", 13) == 0) {
        while (*v == ' ') v++;
        t->linked_size = parse_i64(v, NULL);
    } else if (name_len == 13 && strncasecmp(line, "Content-Range", 13) == 0) {
        /* "bytes FIRST-LAST/TOTAL" or "bytes * /TOTAL" */
        while (*v == ' ') v++;
        if (strncasecmp(v, "bytes ", 6) == 0) {
            const char *p = v + 6;
            t->range_start = *p == '*' ? -1 : parse_i64(p, NULL);
            const char *slash = strchr(p, '/');
            t->range_total = slash ? parse_i64(slash + 1, NULL) : -1;
        }
    }
    return len;
}

static size_t fail_write(transfer *t, const char *msg) {
    snprintf(t->write_error, sizeof t->write_error, "%s", msg);
    t->write_failed = true;
    return 0; /* makes curl stop with CURLE_WRITE_ERROR */
}

static size_t on_body(char *buf, size_t size, size_t n, void *arg) {
    transfer *t = arg;
    size_t len = size * n;
    if (!t->body_started) {
        t->body_started = true;
        if (t->status == 206) {
            if (t->range_start < 0 || (uint64_t)t->range_start != t->have)
                return fail_write(t, "the server resumed at another offset than asked");
        } else if (t->status == 200) {
            if (t->have > 0) { /* the server ignored Range: start over */
                if (ftruncate(t->fd, 0) != 0) return fail_write(t, "cannot truncate the .part file");
                t->have = 0;
            }
        } else {
            return fail_write(t, "");
        }
    }
    for (size_t done = 0; done < len;) {
        ssize_t w = pwrite(t->fd, buf + done, len - done, (off_t)(t->have + t->written));
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return fail_write(t, strerror(errno));
        done += (size_t)w;
        t->written += (uint64_t)w;
    }
    return len;
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
    double rate = secs > 0 ? (double)t->written / secs / (1024.0 * 1024.0) : 0.0;
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
    if (t->progress && t->body_started && (t->status == 200 || t->status == 206))
        draw_progress(t, t->have + (uint64_t)dlnow, dltotal > 0 ? t->have + (uint64_t)dltotal : 0);
    return 0;
}

static bool is_hex64(const char *s) {
    if (strlen(s) != 64) return false;
    for (const char *p = s; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f') || (*p >= 'A' && *p <= 'F'))) return false;
    return true;
}

/* One GET of url into t->fd from t->have on. Returns the curl result. */
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
    snprintf(range, sizeof range, "%llu-", (unsigned long long)t->have);
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
    if (t->have > 0) curl_easy_setopt(h, CURLOPT_RANGE, range);
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

/* Downloads url to dest (via dest.part). */
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
    transfer t = {0};
    bool complete = false;
    for (int attempt = 0; attempt < 2 && !complete; attempt++) {
        if (fstat(fd, &st) != 0) {
            sl_err(err, "cannot stat %s: %s", part, strerror(errno));
            goto done;
        }
        memset(&t, 0, sizeof t);
        t.fd = fd;
        t.have = (uint64_t)st.st_size;
        t.linked_size = t.range_start = t.range_total = -1;
        t.name = name;
        t.progress = o->progress;
        t.start = now_s();
        if (o->log && t.have > 0) fprintf(o->log, "resuming %s at %llu bytes\n", name, (unsigned long long)t.have);
        char curl_msg[CURL_ERROR_SIZE];
        CURLcode cc = run_transfer(url, &t, o, hf, curl_msg);
        if (t.progress && t.body_started) { /* the bar's last state, then a new line */
            t.last_draw = 0;
            uint64_t now_bytes = t.have + t.written;
            draw_progress(&t, now_bytes, cc == CURLE_OK ? now_bytes : 0);
            fputc('\n', stderr);
        }
        if (t.status == 416 && t.have > 0) {
            /* nothing left past what we have: complete if the sizes agree, else start over */
            int64_t total = t.range_total >= 0 ? t.range_total : t.linked_size;
            if (total >= 0 && (uint64_t)total == t.have) {
                complete = true;
            } else if (ftruncate(fd, 0) != 0) {
                sl_err(err, "cannot truncate %s", part);
                goto done;
            }
            continue;
        }
        if (t.write_failed && t.write_error[0]) {
            sl_err(err, "download of %s failed: %s", url, t.write_error);
            goto done;
        }
        if (t.status != 200 && t.status != 206) {
            if (t.status) sl_err(err, "HTTP %ld for %s", t.status, url);
            else sl_err(err, "cannot fetch %s: %s", url, curl_msg[0] ? curl_msg : curl_easy_strerror(cc));
            goto done;
        }
        if (cc != CURLE_OK) {
            sl_err(err, "download of %s interrupted after %llu bytes (%s); run pull again to resume", name,
                   (unsigned long long)(t.have + t.written), curl_msg[0] ? curl_msg : curl_easy_strerror(cc));
            goto done;
        }
        complete = true;
    }
    if (!complete) {
        sl_err(err, "the server refuses to resume %s", url);
        goto done;
    }

    /* Verify: size when published, SHA-256 when published. */
    if (fstat(fd, &st) != 0) {
        sl_err(err, "cannot stat %s", part);
        goto done;
    }
    if (t.linked_size >= 0 && (uint64_t)st.st_size != (uint64_t)t.linked_size) {
        unlink(part);
        sl_err(err, "%s has %lld bytes, the hub says %lld: the download was removed", name, (long long)st.st_size,
               (long long)t.linked_size);
        goto done;
    }
    const char *expected = is_hex64(t.linked_etag) ? t.linked_etag : is_hex64(t.first_etag) ? t.first_etag : NULL;
    char got[65];
    if (expected) {
        if (sl_sha256_file(part, got, err)) goto done;
        if (strcasecmp(got, expected) != 0) {
            unlink(part);
            sl_err(err, "SHA-256 of %s is %s, the hub says %s: the download was removed", name, got, expected);
            goto done;
        }
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
