/* test_faults_pull.c - `streamllm pull` (sl_pull) under network and disk
 * faults. A model split into hierarchical shards (a llama.cpp split set plus
 * manifest.json) is served by a misbehaving HTTP server on 127.0.0.1 (raw
 * sockets, one thread per connection, every response "Connection: close",
 * ETag = the file's SHA-256 as a mirror would publish it). Pulling the first
 * shard fetches every part; pulling manifest.json next to them makes a shard
 * folder that sl_shard_verify (`streamllm verify`) checks.
 *
 * Each fault must end in a transparent recovery or in one clear error, and
 * what was complete before stays valid:
 *  - connection closed mid-shard, reset (TCP RST) mid-shard, stalled
 *    mid-shard: resumed by Range, nothing fetched twice (close, stall);
 *  - 500 / 503 (Retry-After): retried after a wait; always 500: one clear
 *    error after the retries; 404: a clear error at once, earlier parts kept,
 *    and the next pull fetches only what is missing;
 *  - slow responses: complete;
 *  - a corrupted byte: detected by SHA-256, downloaded again; always
 *    corrupted: a clear error and nothing left behind;
 *  - Content-Length longer or shorter than the body: completed and verified;
 *  - disk full (a file size limit, SIGXFSZ ignored, so write() fails with
 *    EFBIG as on a full disk; in a child process): a clear error, complete
 *    parts intact, the .part resumable.
 * And the response checks alone (sl_pull_response_*): a 206 elsewhere, a
 * 200 to a resumed request, a second response after the body began (a
 * finding of fuzz/fuzz_pull.c), 416, Retry-After, the verdicts.
 * Self-contained: the model is synthesized. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "model/synth.h"
#include "server/pull.h"
#include "shard/shard.h"
#include "test.h"

/* ---- the misbehaving server ------------------------------------------------ */

typedef enum fault_kind {
    FAULT_CLOSE,   /* send up to byte `at` of the file, then close */
    FAULT_RESET,   /* send up to byte `at`, then reset the connection */
    FAULT_STALL,   /* send up to byte `at`, then nothing until the client gives up */
    FAULT_STATUS,  /* answer `status` (with Retry-After when retry_after >= 0) */
    FAULT_CORRUPT, /* flip a bit of byte `at` */
    FAULT_LENGTH,  /* declare Content-Length `declared` instead of the true length */
    FAULT_SLOW,    /* send `rate` bytes per second */
} fault_kind;

typedef struct fault {
    char file[256]; /* "" for any file */
    fault_kind kind;
    uint64_t at, declared, rate;
    int status, retry_after, times;
} fault;

#define MAX_FAULTS 8
#define MAX_FILES 32

static struct {
    pthread_mutex_t lock;
    char root[512];
    fault faults[MAX_FAULTS];
    int n_faults;
    char names[MAX_FILES][256];
    uint64_t sent[MAX_FILES];
    int requests[MAX_FILES];
    int n_names;
    int listen_fd;
    uint16_t port;
} srv = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void add_fault(fault f) {
    pthread_mutex_lock(&srv.lock);
    if (srv.n_faults < MAX_FAULTS) srv.faults[srv.n_faults++] = f;
    pthread_mutex_unlock(&srv.lock);
}

static void clear_faults_and_counts(void) {
    pthread_mutex_lock(&srv.lock);
    srv.n_faults = 0;
    memset(srv.sent, 0, sizeof srv.sent);
    memset(srv.requests, 0, sizeof srv.requests);
    pthread_mutex_unlock(&srv.lock);
}

/* The first fault of a kind for the file that applies to bytes [start, end); consumed. */
static bool take_fault(const char *file, fault_kind kind, uint64_t start, uint64_t end, fault *out) {
    bool found = false;
    pthread_mutex_lock(&srv.lock);
    for (int i = 0; i < srv.n_faults && !found; i++) {
        fault *f = &srv.faults[i];
        if (f->kind != kind || f->times <= 0 || (f->file[0] && strcmp(f->file, file) != 0)) continue;
        bool positional = kind == FAULT_CLOSE || kind == FAULT_RESET || kind == FAULT_STALL || kind == FAULT_CORRUPT;
        if (positional && (f->at < start || f->at >= end)) continue;
        if (kind != FAULT_SLOW) f->times--;
        *out = *f;
        found = true;
    }
    pthread_mutex_unlock(&srv.lock);
    return found;
}

static int file_index(const char *name) {
    for (int i = 0; i < srv.n_names; i++)
        if (!strcmp(srv.names[i], name)) return i;
    if (srv.n_names == MAX_FILES) return -1;
    snprintf(srv.names[srv.n_names], sizeof srv.names[0], "%s", name);
    return srv.n_names++;
}

static void count(const char *name, uint64_t sent, int requests) {
    pthread_mutex_lock(&srv.lock);
    int i = file_index(name);
    if (i >= 0) {
        srv.sent[i] += sent;
        srv.requests[i] += requests;
    }
    pthread_mutex_unlock(&srv.lock);
}

static uint64_t bytes_sent(const char *name) {
    pthread_mutex_lock(&srv.lock);
    int i = file_index(name);
    uint64_t n = i >= 0 ? srv.sent[i] : 0;
    pthread_mutex_unlock(&srv.lock);
    return n;
}

static int requests_of(const char *name) {
    pthread_mutex_lock(&srv.lock);
    int i = file_index(name);
    int n = i >= 0 ? srv.requests[i] : 0;
    pthread_mutex_unlock(&srv.lock);
    return n;
}

static bool send_all(int fd, const void *buf, size_t n) {
    const char *p = buf;
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return false;
        p += w;
        n -= (size_t)w;
    }
    return true;
}

static void sleep_ms(long ms) {
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static char *read_whole(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)(n > 0 ? n : 0) + 1);
    if (buf && n >= 0 && fread(buf, 1, (size_t)n, f) == (size_t)n) {
        *len = (size_t)n;
    } else {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    return buf;
}

static void respond(int fd, const char *name, const char *range) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", srv.root, name);
    fault f;
    char head[1024];
    if (take_fault(name, FAULT_STATUS, 0, 0, &f)) {
        char retry[64] = "";
        if (f.retry_after >= 0) snprintf(retry, sizeof retry, "Retry-After: %d\r\n", f.retry_after);
        int n = snprintf(head, sizeof head, "HTTP/1.1 %d Fault\r\nContent-Length: 6\r\n%sConnection: close\r\n\r\nfault\n",
                         f.status, retry);
        count(name, 0, 1); /* counted before the client can see it */
        send_all(fd, head, (size_t)n);
        return;
    }
    size_t size;
    char *data = strchr(name, '/') || name[0] == '.' ? NULL : read_whole(path, &size);
    if (!data) {
        static const char nf[] = "HTTP/1.1 404 Not Found\r\nContent-Length: 10\r\nConnection: close\r\n\r\nnot found\n";
        send_all(fd, nf, sizeof nf - 1);
        return;
    }
    count(name, 0, 1);
    char sha[65];
    sl_error err;
    sl_sha256_hex(data, size, sha, &err);
    uint64_t start = 0;
    unsigned long long asked;
    bool ranged = range && sscanf(range, "bytes=%llu-", &asked) == 1;
    if (ranged) start = asked;
    int n;
    if (ranged && start >= size) {
        n = snprintf(head, sizeof head,
                     "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */%zu\r\nContent-Length: 0\r\n"
                     "Connection: close\r\n\r\n", size);
        send_all(fd, head, (size_t)n);
        free(data);
        return;
    }
    uint64_t length = size - start;
    fault lf;
    uint64_t declared = take_fault(name, FAULT_LENGTH, 0, 0, &lf) ? lf.declared : length;
    char cr[128] = "";
    if (ranged) snprintf(cr, sizeof cr, "Content-Range: bytes %llu-%zu/%zu\r\n", (unsigned long long)start, size - 1, size);
    n = snprintf(head, sizeof head,
                 "HTTP/1.1 %s\r\nContent-Length: %llu\r\n%sETag: \"%s\"\r\nAccept-Ranges: bytes\r\n"
                 "Content-Type: application/octet-stream\r\nConnection: close\r\n\r\n",
                 ranged ? "206 Partial Content" : "200 OK", (unsigned long long)declared, cr, sha);
    if (!send_all(fd, head, (size_t)n)) {
        free(data);
        return;
    }
    fault cut = {0}, corrupt = {0}, slow = {0};
    bool has_cut = take_fault(name, FAULT_CLOSE, start + 1, size, &cut) ||
                   take_fault(name, FAULT_RESET, start + 1, size, &cut) ||
                   take_fault(name, FAULT_STALL, start + 1, size, &cut);
    bool has_corrupt = take_fault(name, FAULT_CORRUPT, start, size, &corrupt);
    bool has_slow = take_fault(name, FAULT_SLOW, 0, 0, &slow);
    if (has_corrupt) data[corrupt.at] ^= 0x10;
    uint64_t stop = has_cut ? cut.at : size;
    /* a shorter declared length: send what was declared */
    if (declared < length && stop > start + declared) stop = start + declared;
    uint64_t chunk = has_slow ? (slow.rate / 20 > 0 ? slow.rate / 20 : 1) : 65536;
    for (uint64_t at = start; at < stop;) {
        uint64_t k = stop - at < chunk ? stop - at : chunk;
        count(name, k, 0);
        if (!send_all(fd, data + at, (size_t)k)) break;
        at += k;
        if (has_slow) sleep_ms(50);
    }
    free(data);
    if (!has_cut) return;
    if (cut.kind == FAULT_RESET) {
        struct linger lg = {.l_onoff = 1, .l_linger = 0};
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    } else if (cut.kind == FAULT_STALL) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        for (int i = 0; i < 300; i++) { /* until the client goes away (30 s at most) */
            char b;
            if (poll(&p, 1, 100) > 0 && recv(fd, &b, 1, 0) <= 0) break;
        }
    }
}

static void *connection_main(void *arg) {
    int fd = (int)(intptr_t)arg;
    char req[8192];
    size_t n = 0;
    while (n < sizeof req - 1) {
        ssize_t r = recv(fd, req + n, sizeof req - 1 - n, 0);
        if (r <= 0) break;
        n += (size_t)r;
        req[n] = 0;
        if (strstr(req, "\r\n\r\n")) break;
    }
    req[n] = 0;
    char name[256];
    if (sscanf(req, "GET /f/%255[^ ] HTTP/1.", name) == 1) {
        const char *range = NULL;
        for (char *line = strstr(req, "\r\n"); line; line = strstr(line + 2, "\r\n"))
            if (strncasecmp(line + 2, "Range:", 6) == 0) {
                range = line + 8;
                while (*range == ' ') range++;
                break;
            }
        respond(fd, name, range);
    }
    close(fd);
    return NULL;
}

static void *accept_main(void *arg) {
    (void)arg;
    for (;;) {
        int fd = accept(srv.listen_fd, NULL, NULL);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            return NULL; /* the listener was shut down */
        }
        pthread_t th;
        if (pthread_create(&th, NULL, connection_main, (void *)(intptr_t)fd) != 0) close(fd);
        else pthread_detach(th);
    }
}

static pthread_t acceptor;

static bool start_server(const char *root) {
    snprintf(srv.root, sizeof srv.root, "%s", root);
    srv.listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t alen = sizeof a;
    if (srv.listen_fd < 0 || bind(srv.listen_fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        listen(srv.listen_fd, 64) != 0 || getsockname(srv.listen_fd, (struct sockaddr *)&a, &alen) != 0)
        return false;
    srv.port = ntohs(a.sin_port);
    return pthread_create(&acceptor, NULL, accept_main, NULL) == 0;
}

static void stop_server(void) {
    shutdown(srv.listen_fd, SHUT_RDWR);
    close(srv.listen_fd);
    pthread_join(acceptor, NULL);
}

/* ---- the model and helpers ----------------------------------------------------- */

static char tmp[256], shards_dir[512];
static sl_manifest manifest;
static char log_buf[16384];

static void pathf(char *out, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void pathf(char *out, size_t n, const char *fmt, ...) {
    char rel[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rel, sizeof rel, fmt, ap);
    va_end(ap);
    snprintf(out, n, "%s/%s", tmp, rel);
}

static long file_size(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

static void rm_rf(const char *path) {
    char cmd[1100];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", path);
}

static const char *shard(int i) { return manifest.shards[i].file; }

/* Pulls the shard set (and, when with_manifest, manifest.json) into tmp/DIR. */
static int pull_set(const char *dir, bool with_manifest, sl_pull_opts o, sl_error *err) {
    char out[512], url[1024];
    pathf(out, sizeof out, "%s", dir);
    FILE *log = fmemopen(log_buf, sizeof log_buf, "w");
    o.out_dir = out;
    o.log = log;
    if (!o.stall_timeout_s) o.stall_timeout_s = 10;
    if (!o.retry_delay_ms) o.retry_delay_ms = 20;
    snprintf(url, sizeof url, "http://127.0.0.1:%u/f/%s", (unsigned)srv.port, shard(0));
    char *path = sl_pull(url, &o, err);
    int rc = path ? 0 : -1;
    free(path);
    if (rc == 0 && with_manifest) {
        snprintf(url, sizeof url, "http://127.0.0.1:%u/f/%s", (unsigned)srv.port, SL_MANIFEST_NAME);
        path = sl_pull(url, &o, err);
        rc = path ? 0 : -1;
        free(path);
    }
    fclose(log);
    return rc;
}

static bool verified(const char *dir) {
    char out[512];
    pathf(out, sizeof out, "%s", dir);
    sl_error err;
    int rc = sl_shard_verify(out, &err);
    if (rc) fprintf(stderr, "  verify %s: %s\n", dir, err.msg);
    return rc == 0;
}

/* True when tmp/dir/file is the served file, byte for byte. */
static bool intact(const char *dir, int i) {
    char path[1024], hex[65];
    pathf(path, sizeof path, "%s/%s", dir, shard(i));
    sl_error err;
    return sl_sha256_file(path, hex, &err) == 0 && !strcmp(hex, manifest.shards[i].sha256);
}

static bool one_line(const char *msg) { return msg[0] && !strchr(msg, '\n'); }

/* ---- cases ------------------------------------------------------------------------ */

/* A cut (close / reset / stall) in the middle of shard 2: the pull resumes by itself. */
static void test_cut(fault_kind kind, const char *dir) {
    clear_faults_and_counts();
    uint64_t size = manifest.shards[2].bytes;
    fault f = {.kind = kind, .at = size / 2, .times = 1};
    snprintf(f.file, sizeof f.file, "%s", shard(2));
    add_fault(f);
    sl_error err;
    sl_pull_opts o = {.stall_timeout_s = 2};
    CHECKF(pull_set(dir, true, o, &err) == 0, "%s", err.msg);
    CHECKF(strstr(log_buf, "resuming") != NULL, "%s", log_buf);
    CHECK(verified(dir));
    CHECKF(requests_of(shard(2)) == 2, "%d requests", requests_of(shard(2)));
    if (kind != FAULT_RESET) /* a reset may drop bytes the kernel had not delivered yet */
        CHECKF(bytes_sent(shard(2)) == size, "shard 2: %llu bytes sent for %llu",
               (unsigned long long)bytes_sent(shard(2)), (unsigned long long)size);
}

static void test_close(void) { test_cut(FAULT_CLOSE, "close"); }
static void test_reset(void) { test_cut(FAULT_RESET, "reset"); }
static void test_stall(void) { test_cut(FAULT_STALL, "stall"); }

static void test_server_errors(void) {
    /* 500 twice, then fine: retried */
    clear_faults_and_counts();
    fault f = {.kind = FAULT_STATUS, .status = 500, .retry_after = -1, .times = 2};
    snprintf(f.file, sizeof f.file, "%s", shard(1));
    add_fault(f);
    /* 503 with Retry-After: 1 once */
    fault g = {.kind = FAULT_STATUS, .status = 503, .retry_after = 1, .times = 1};
    snprintf(g.file, sizeof g.file, "%s", shard(3));
    add_fault(g);
    sl_error err;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    CHECKF(pull_set("retry", true, (sl_pull_opts){0}, &err) == 0, "%s", err.msg);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    CHECK(verified("retry"));
    CHECK(requests_of(shard(1)) == 3 && requests_of(shard(3)) == 2);
    CHECKF(secs >= 0.95, "Retry-After: 1 obeyed (%.2f s)", secs);
    CHECKF(strstr(log_buf, "HTTP 503; retrying in 1.0 s") != NULL, "%s", log_buf);

    /* always 500: a clear error after the retries; the parts before stay */
    clear_faults_and_counts();
    f.times = 100;
    snprintf(f.file, sizeof f.file, "%s", shard(2));
    add_fault(f);
    sl_pull_opts o = {.retries = 2};
    CHECK(pull_set("fail500", false, o, &err) != 0);
    CHECKF(one_line(err.msg) && strstr(err.msg, "HTTP 500") && strstr(err.msg, shard(2)), "%s", err.msg);
    CHECKF(requests_of(shard(2)) == 3, "%d requests for 1 + 2 retries", requests_of(shard(2)));
    CHECK(intact("fail500", 0) && intact("fail500", 1));
    char part[1024];
    pathf(part, sizeof part, "fail500/%s.part", shard(2));
    CHECK(file_size(part) < 0); /* nothing arrived: no .part */

    /* 404: at once, no retry */
    clear_faults_and_counts();
    f = (fault){.kind = FAULT_STATUS, .status = 404, .retry_after = -1, .times = 1};
    snprintf(f.file, sizeof f.file, "%s", shard(3));
    add_fault(f);
    CHECK(pull_set("fail404", false, (sl_pull_opts){0}, &err) != 0);
    CHECKF(one_line(err.msg) && strstr(err.msg, "HTTP 404"), "%s", err.msg);
    CHECK(requests_of(shard(3)) == 1);
    CHECK(intact("fail404", 0) && intact("fail404", 1) && intact("fail404", 2));
    /* the server is fine again: only what is missing is fetched */
    clear_faults_and_counts();
    CHECKF(pull_set("fail404", true, (sl_pull_opts){0}, &err) == 0, "%s", err.msg);
    CHECK(verified("fail404"));
    CHECK(bytes_sent(shard(0)) == 0 && bytes_sent(shard(1)) == 0 && bytes_sent(shard(2)) == 0);
    CHECK(bytes_sent(shard(3)) == manifest.shards[3].bytes);
}

static void test_slow(void) {
    clear_faults_and_counts();
    fault f = {.kind = FAULT_SLOW, .rate = 400000, .times = 1};
    add_fault(f);
    sl_error err;
    CHECKF(pull_set("slow", true, (sl_pull_opts){.stall_timeout_s = 2}, &err) == 0, "%s", err.msg);
    CHECK(verified("slow"));
}

static void test_corrupt(void) {
    /* once: detected, downloaded again, verified */
    clear_faults_and_counts();
    uint64_t size = manifest.shards[1].bytes;
    fault f = {.kind = FAULT_CORRUPT, .at = size / 3, .times = 1};
    snprintf(f.file, sizeof f.file, "%s", shard(1));
    add_fault(f);
    sl_error err;
    CHECKF(pull_set("corrupt", true, (sl_pull_opts){0}, &err) == 0, "%s", err.msg);
    CHECKF(strstr(log_buf, "downloading again") != NULL, "%s", log_buf);
    CHECK(verified("corrupt"));
    CHECK(bytes_sent(shard(1)) == 2 * size);
    /* always: a clear error, the file and its .part removed, the parts before kept */
    clear_faults_and_counts();
    f.times = 100;
    add_fault(f);
    CHECK(pull_set("corrupt2", false, (sl_pull_opts){0}, &err) != 0);
    CHECKF(one_line(err.msg) && strstr(err.msg, "SHA-256") && strstr(err.msg, "removed"), "%s", err.msg);
    char p[1024];
    pathf(p, sizeof p, "corrupt2/%s", shard(1));
    CHECK(file_size(p) < 0);
    pathf(p, sizeof p, "corrupt2/%s.part", shard(1));
    CHECK(file_size(p) < 0);
    CHECK(intact("corrupt2", 0));
}

static void test_wrong_length(void) {
    clear_faults_and_counts();
    uint64_t size = manifest.shards[2].bytes;
    fault f = {.kind = FAULT_LENGTH, .declared = size + 5000, .times = 1}; /* longer than the body */
    snprintf(f.file, sizeof f.file, "%s", shard(2));
    add_fault(f);
    fault g = {.kind = FAULT_LENGTH, .declared = manifest.shards[3].bytes / 2, .times = 1}; /* shorter */
    snprintf(g.file, sizeof g.file, "%s", shard(3));
    add_fault(g);
    sl_error err;
    CHECKF(pull_set("length", true, (sl_pull_opts){0}, &err) == 0, "%s", err.msg);
    CHECK(verified("length"));
}

/* Disk full: in a child with a file size limit, so that write() fails (EFBIG). */
static void test_disk_full(void) {
    clear_faults_and_counts();
    uint64_t limit = manifest.shards[0].bytes > manifest.shards[1].bytes ? manifest.shards[0].bytes
                                                                          : manifest.shards[1].bytes;
    limit += manifest.shards[2].bytes / 2; /* parts 0 and 1 fit, part 2 does not */
    int pipefd[2];
    CHECK(pipe(pipefd) == 0);
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        close(pipefd[0]);
        signal(SIGXFSZ, SIG_IGN);
        struct rlimit rl = {.rlim_cur = limit, .rlim_max = limit};
        setrlimit(RLIMIT_FSIZE, &rl);
        sl_error err = {{0}};
        int rc = pull_set("full", false, (sl_pull_opts){0}, &err);
        char msg[SL_ERR_MAX + 8];
        int n = snprintf(msg, sizeof msg, "%d %s", rc, err.msg);
        if (write(pipefd[1], msg, (size_t)n) < 0) _exit(2);
        _exit(0);
    }
    close(pipefd[1]);
    char msg[SL_ERR_MAX + 8] = "";
    ssize_t n = read(pipefd[0], msg, sizeof msg - 1);
    msg[n > 0 ? n : 0] = 0;
    close(pipefd[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    CHECKF(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %d", status);
    CHECKF(!strncmp(msg, "-1 ", 3) && one_line(msg + 3) && strstr(msg, "cannot write the .part file"), "%s", msg);
    CHECKF(strstr(msg, "File too large") || strstr(msg, "No space left"), "%s", msg);
    CHECK(intact("full", 0) && intact("full", 1));
    char part[1024];
    pathf(part, sizeof part, "full/%s.part", shard(2));
    long have = file_size(part);
    CHECKF(have > 0 && (uint64_t)have < manifest.shards[2].bytes, ".part has %ld bytes", have);
    /* room again: the pull resumes the .part and completes */
    clear_faults_and_counts();
    sl_error err;
    CHECKF(pull_set("full", true, (sl_pull_opts){0}, &err) == 0, "%s", err.msg);
    CHECK(verified("full"));
    CHECK(bytes_sent(shard(0)) == 0 && bytes_sent(shard(1)) == 0);
    CHECKF(bytes_sent(shard(2)) == manifest.shards[2].bytes - (uint64_t)have, "resumed: %llu bytes",
           (unsigned long long)bytes_sent(shard(2)));
}

/* The response checks alone (sl_pull_response_*), fed as libcurl would. */
typedef struct mem_part {
    char bytes[64];
    size_t size;
    int truncations;
} mem_part;

static const char *mem_write_at(void *sink, const void *buf, size_t n, uint64_t offset) {
    mem_part *m = sink;
    if (offset != m->size || m->size + n > sizeof m->bytes) return "out of order or too much";
    memcpy(m->bytes + m->size, buf, n);
    m->size += n;
    return NULL;
}

static const char *mem_truncate(void *sink) {
    mem_part *m = sink;
    m->size = 0;
    m->truncations++;
    return NULL;
}

static void feed(sl_pull_response *r, mem_part *m, uint64_t have, const char *const *lines) {
    sl_pull_response_init(r, have);
    m->size = (size_t)have;
    m->truncations = 0;
    r->write_at = mem_write_at;
    r->truncate = mem_truncate;
    r->sink = m;
    for (const char *const *l = lines; *l; l++) {
        if (**l == '>') (void)sl_pull_response_body(r, *l + 1, strlen(*l + 1));
        else (void)sl_pull_response_header(r, *l, strlen(*l));
    }
}

static void test_response_checks(void) {
    sl_pull_response r;
    mem_part m;
    char msg[256];
    /* a second response after the body began is refused (fuzz_pull found it written into the .part) */
    static const char *const second[] = {"HTTP/1.1 200 OK\r\n", "\r\n", ">abc", "HTTP/1.1 200 OK\r\n", ">xyz", NULL};
    feed(&r, &m, 0, second);
    CHECK(m.size == 3 && !memcmp(m.bytes, "abc", 3) && r.write_failed);
    CHECK(sl_pull_response_verdict(&r, false, "", msg, sizeof msg) == SL_PULL_FAIL && strstr(msg, "second response"));
    /* a 206 that resumes elsewhere is refused; one at the right offset appends */
    static const char *const elsewhere[] = {"HTTP/1.1 206 Partial\r\n", "Content-Range: bytes 4-9/10\r\n", ">456789", NULL};
    feed(&r, &m, 3, elsewhere);
    CHECK(r.write_failed && m.size == 3 && sl_pull_response_verdict(&r, true, "", msg, sizeof msg) == SL_PULL_FAIL);
    static const char *const right[] = {"HTTP/1.1 206 Partial\r\n", "Content-Range: bytes 3-9/10\r\n",
                                        "ETag: \"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\"\r\n",
                                        ">3456789", NULL};
    feed(&r, &m, 3, right);
    CHECK(!r.write_failed && m.size == 10 && r.written == 7);
    CHECK(sl_pull_response_verdict(&r, true, "", msg, sizeof msg) == SL_PULL_COMPLETE);
    CHECK(sl_pull_response_sha256(&r) && !strncmp(sl_pull_response_sha256(&r), "9f86d0", 6));
    /* a 200 to a resumed request starts the file over */
    static const char *const ignored[] = {"HTTP/1.1 200 OK\r\n", ">0123456789", NULL};
    feed(&r, &m, 3, ignored);
    CHECK(m.truncations == 1 && m.size == 10 && r.have == 0);
    /* 416 for a whole .part: complete; for another size: restart */
    static const char *const whole[] = {"HTTP/1.1 416 Range Not Satisfiable\r\n", "Content-Range: bytes */10\r\n", NULL};
    feed(&r, &m, 10, whole);
    CHECK(sl_pull_response_verdict(&r, true, "", msg, sizeof msg) == SL_PULL_COMPLETE);
    feed(&r, &m, 12, whole);
    CHECK(sl_pull_response_verdict(&r, true, "", msg, sizeof msg) == SL_PULL_RESTART);
    /* 503 with Retry-After: back off that long; 404: fail */
    static const char *const busy[] = {"HTTP/1.1 503 Busy\r\n", "Retry-After: 7\r\n", ">busy", NULL};
    feed(&r, &m, 0, busy);
    CHECK(m.size == 0 && r.retry_after == 7);
    CHECK(sl_pull_response_verdict(&r, true, "", msg, sizeof msg) == SL_PULL_BACKOFF && !strcmp(msg, "HTTP 503"));
    static const char *const missing[] = {"HTTP/1.1 404 Not Found\r\n", ">nope", NULL};
    feed(&r, &m, 0, missing);
    CHECK(sl_pull_response_verdict(&r, true, "", msg, sizeof msg) == SL_PULL_FAIL && !strcmp(msg, "HTTP 404"));
    /* cut: after some bytes resume, before any fail */
    static const char *const cut[] = {"HTTP/1.1 200 OK\r\n", ">01234", NULL};
    feed(&r, &m, 0, cut);
    CHECK(sl_pull_response_verdict(&r, false, "reset", msg, sizeof msg) == SL_PULL_RESUME && strstr(msg, "after 5 bytes"));
    static const char *const nothing[] = {"HTTP/1.1 200 OK\r\n", NULL};
    feed(&r, &m, 0, nothing);
    CHECK(sl_pull_response_verdict(&r, false, "reset", msg, sizeof msg) == SL_PULL_FAIL);
}

/* ---- main --------------------------------------------------------------------------- */

static int make_model(void) {
    static const sl_synth_shape shape = {"faults", "faults", SL_ARCH_LLAMA, 260, 64, 4, 4, 2, 16, 128, 128, 1e-5f,
                                         10000.0f, false, 0, 0, 0, 0};
    sl_synth_params p = {.shape = &shape, .preset = sl_synth_find_preset("F16"), .seed = 3};
    char model[512];
    pathf(model, sizeof model, "model.gguf");
    pathf(shards_dir, sizeof shards_dir, "served");
    sl_error err;
    sl_split_opts so = {.max_shard_bytes = 96 * 1024};
    if (sl_synth_write_file(&p, model, &err) || sl_shard_split(model, shards_dir, &so, &err) ||
        sl_manifest_load(shards_dir, &manifest, NULL, &err)) {
        fprintf(stderr, "cannot make the test model: %s\n", err.msg);
        return -1;
    }
    return manifest.n_shards >= 5 ? 0 : -1;
}

int main(void) {
    snprintf(tmp, sizeof tmp, "/tmp/sl-test-faults-XXXXXX");
    if (!mkdtemp(tmp)) return 1;
    signal(SIGPIPE, SIG_IGN);
    if (make_model() || !start_server(shards_dir)) {
        printf("cannot set up the test\n0 passed, 1 failed\n");
        rm_rf(tmp);
        return 1;
    }
    RUN(test_response_checks);
    RUN(test_close);
    RUN(test_reset);
    RUN(test_stall);
    RUN(test_server_errors);
    RUN(test_slow);
    RUN(test_corrupt);
    RUN(test_wrong_length);
    RUN(test_disk_full);
    stop_server();
    sl_manifest_free(&manifest);
    rm_rf(tmp);
    TEST_SUMMARY();
}
