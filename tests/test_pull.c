/* test_pull.c - `streamllm pull` (sl_pull) against an imitation of the
 * Hugging Face hub, run in process on 127.0.0.1 (a port the kernel picks)
 * with libmicrohttpd, pointed at through STREAMLLM_HF_ENDPOINT.
 *
 * The imitation answers /OWNER/REPO/resolve/main/FILE like the hub does for
 * an LFS file: 302 to a CDN URL with X-Linked-Etag: "<sha256>",
 * X-Linked-Size and an ETag that is not the SHA-256; the "CDN" serves the
 * bytes with Range support, an MD5-looking ETag, and counts every body byte
 * it hands out. Knobs make it cut the body after N bytes, corrupt a byte,
 * ignore Range, or act like a small file kept in git (200, sha1 ETag).
 *
 * Cases: source resolution (hf://, URLs, bad forms); a fresh download
 * verified; a present file not fetched again; an interrupted download
 * resumed with only the rest fetched (the byte counter proves it); corrupt
 * downloads rejected with the file and its .part removed, fresh and resumed;
 * a server that ignores Range; a .part that is already complete (416); no
 * published hash; 404; a llama.cpp split set. */
#include <errno.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <unistd.h>

#include "server/pull.h"
#include "shard/shard.h"
#include "test.h"

#define BLOB_SIZE (3u << 20)

static unsigned char *blob;
static char blob_sha[65];
static char tmp[256];

/* ---- the hub imitation --------------------------------------------------- */

static struct {
    pthread_mutex_t lock;
    uint64_t bytes_sent;     /* body bytes handed out by the CDN */
    int cdn_requests;
    uint64_t last_range_start; /* of the last CDN request with a Range; UINT64_MAX: none */
    uint64_t cut_after;      /* > 0: end the body with an error after this many bytes */
    bool corrupt;            /* serve one flipped byte (the published hash stays the true one) */
    bool ignore_range;
} hub = {.lock = PTHREAD_MUTEX_INITIALIZER};

static uint16_t hub_port;

typedef struct body_ctx {
    uint64_t start, end; /* [start, end) of the blob */
    uint64_t cut;        /* absolute position to fail at (0: none) */
} body_ctx;

static ssize_t read_body(void *cls, uint64_t pos, char *buf, size_t max) {
    body_ctx *b = cls;
    uint64_t at = b->start + pos;
    if (b->cut && at >= b->cut) return MHD_CONTENT_READER_END_WITH_ERROR;
    uint64_t stop = b->cut && b->cut < b->end ? b->cut : b->end;
    if (at >= stop) return MHD_CONTENT_READER_END_OF_STREAM;
    size_t n = (size_t)(stop - at) < max ? (size_t)(stop - at) : max;
    memcpy(buf, blob + at, n);
    pthread_mutex_lock(&hub.lock);
    if (hub.corrupt && at <= BLOB_SIZE / 2 && BLOB_SIZE / 2 < at + n) buf[BLOB_SIZE / 2 - at] ^= 0x20;
    hub.bytes_sent += n;
    pthread_mutex_unlock(&hub.lock);
    return (ssize_t)n;
}

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status, struct MHD_Response *r) {
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result hub_handler(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                   const char *version, const char *upload, size_t *upload_size, void **req) {
    (void)cls;
    (void)method;
    (void)version;
    (void)upload;
    (void)upload_size;
    if (!*req) { /* answer on the second call, so keep-alive works */
        *req = (void *)1;
        return MHD_YES;
    }
    /* /OWNER/REPO/resolve/main/FILE */
    char owner[64], repo[64], file[128];
    if (sscanf(url, "/%63[^/]/%63[^/]/resolve/main/%127s", owner, repo, file) == 3) {
        bool known = !strcmp(file, "model.gguf") || !strcmp(file, "resume.gguf") || !strcmp(file, "bad.gguf") ||
                     !strcmp(file, "norange.gguf") || !strcmp(file, "done.gguf") ||
                     !strncmp(file, "set-0000", 8);
        if (!strcmp(file, "small.gguf")) { /* kept in git: served directly, sha1 ETag */
            body_ctx *b = calloc(1, sizeof *b);
            b->end = 1000;
            struct MHD_Response *r = MHD_create_response_from_callback(1000, 4096, read_body, b, free);
            MHD_add_response_header(r, "ETag", "\"0123456789abcdef0123456789abcdef01234567\"");
            return reply(c, 200, r);
        }
        if (!known) return reply(c, 404, MHD_create_response_from_buffer(9, "not found", MHD_RESPMEM_PERSISTENT));
        char loc[256], tag[80], size[32];
        snprintf(loc, sizeof loc, "http://127.0.0.1:%u/cdn/%s", (unsigned)hub_port, file);
        snprintf(tag, sizeof tag, "\"%s\"", blob_sha);
        snprintf(size, sizeof size, "%u", BLOB_SIZE);
        struct MHD_Response *r = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
        MHD_add_response_header(r, "Location", loc);
        MHD_add_response_header(r, "X-Linked-Etag", tag);
        MHD_add_response_header(r, "X-Linked-Size", size);
        MHD_add_response_header(r, "ETag", "W/\"fedcba9876543210fedcba9876543210fedcba98\"");
        MHD_add_response_header(r, "X-Repo-Commit", "1111111111111111111111111111111111111111");
        return reply(c, 302, r);
    }
    if (!strncmp(url, "/cdn/", 5)) {
        const char *range = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Range");
        unsigned long long start = 0;
        bool ranged = range && sscanf(range, "bytes=%llu-", &start) == 1;
        pthread_mutex_lock(&hub.lock);
        hub.cdn_requests++;
        hub.last_range_start = ranged ? start : UINT64_MAX;
        bool ignore = hub.ignore_range;
        uint64_t cut = hub.cut_after;
        pthread_mutex_unlock(&hub.lock);
        if (ignore) {
            ranged = false;
            start = 0;
        }
        if (ranged && start >= BLOB_SIZE) {
            struct MHD_Response *r = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
            char cr[64];
            snprintf(cr, sizeof cr, "bytes */%u", BLOB_SIZE);
            MHD_add_response_header(r, "Content-Range", cr);
            return reply(c, 416, r);
        }
        body_ctx *b = calloc(1, sizeof *b);
        b->start = start;
        b->end = BLOB_SIZE;
        b->cut = cut;
        struct MHD_Response *r = MHD_create_response_from_callback(BLOB_SIZE - start, 65536, read_body, b, free);
        MHD_add_response_header(r, "ETag", "\"9e107d9d372bb6826bd81d3542a419d6\"");
        MHD_add_response_header(r, "Accept-Ranges", "bytes");
        if (ranged) {
            char cr[96];
            snprintf(cr, sizeof cr, "bytes %llu-%u/%u", start, BLOB_SIZE - 1, BLOB_SIZE);
            MHD_add_response_header(r, "Content-Range", cr);
        }
        return reply(c, ranged ? 206 : 200, r);
    }
    return reply(c, 404, MHD_create_response_from_buffer(9, "not found", MHD_RESPMEM_PERSISTENT));
}

static void hub_reset(void) {
    pthread_mutex_lock(&hub.lock);
    hub.bytes_sent = 0;
    hub.cdn_requests = 0;
    hub.last_range_start = UINT64_MAX;
    hub.cut_after = 0;
    hub.corrupt = false;
    hub.ignore_range = false;
    pthread_mutex_unlock(&hub.lock);
}

/* ---- helpers --------------------------------------------------------------- */

static void pathf(char *out, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void pathf(char *out, size_t n, const char *fmt, ...) {
    char rel[256];
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

static bool same_as_blob(const char *path) {
    char hex[65];
    sl_error err;
    return file_size(path) == BLOB_SIZE && sl_sha256_file(path, hex, &err) == 0 && !strcmp(hex, blob_sha);
}

static char log_buf[8192];

/* Pulls src into tmp/out; the log lines go to log_buf. */
static char *pull(const char *src, sl_error *err) {
    char out[512];
    pathf(out, sizeof out, "out");
    FILE *log = fmemopen(log_buf, sizeof log_buf, "w");
    sl_pull_opts o = {.out_dir = out, .log = log, .stall_timeout_s = 10};
    char *path = sl_pull(src, &o, err);
    fclose(log);
    return path;
}

static uint64_t sent(void) {
    pthread_mutex_lock(&hub.lock);
    uint64_t n = hub.bytes_sent;
    pthread_mutex_unlock(&hub.lock);
    return n;
}

/* ---- cases ------------------------------------------------------------------ */

static void test_resolve(void) {
    char url[512], name[128];
    sl_error err;
    setenv("STREAMLLM_HF_ENDPOINT", "https://hub.example/", 1);
    CHECK(sl_pull_resolve("hf://Org/Repo/dir/M-Q4.gguf", url, sizeof url, name, sizeof name, &err) == 0);
    CHECKF(!strcmp(url, "https://hub.example/Org/Repo/resolve/main/dir/M-Q4.gguf"), "%s", url);
    CHECK(!strcmp(name, "M-Q4.gguf"));
    unsetenv("STREAMLLM_HF_ENDPOINT");
    CHECK(sl_pull_resolve("hf://o/r/m.gguf", url, sizeof url, name, sizeof name, &err) == 0);
    CHECK(!strcmp(url, "https://huggingface.co/o/r/resolve/main/m.gguf"));
    CHECK(sl_pull_resolve("https://h.example/a/b.gguf?download=true", url, sizeof url, name, sizeof name, &err) == 0);
    CHECK(!strcmp(name, "b.gguf"));
    static const char *const BAD[] = {"hf://o/r", "hf://o/../m.gguf", "hf://o/r/.m.gguf", "hf://o//m.gguf",
                                      "hf://o/r/a b.gguf", "ftp://h/m.gguf", "https://h.example/", "https://h.example",
                                      "https://h.example/dir/..", "/local/path.gguf"};
    for (size_t i = 0; i < sizeof BAD / sizeof BAD[0]; i++)
        CHECKF(sl_pull_resolve(BAD[i], url, sizeof url, name, sizeof name, &err) != 0, "%s accepted", BAD[i]);
    CHECK(sl_pull_is_remote("hf://x") && sl_pull_is_remote("https://x") && !sl_pull_is_remote("/x.gguf"));
}

static void test_fresh(void) {
    hub_reset();
    sl_error err;
    char *path = pull("hf://org/repo/model.gguf", &err);
    CHECKF(path != NULL, "%s", err.msg);
    if (!path) return;
    char part[600];
    snprintf(part, sizeof part, "%s.part", path);
    CHECK(same_as_blob(path) && file_size(part) < 0);
    CHECKF(strstr(log_buf, "SHA-256 verified") != NULL, "%s", log_buf);
    CHECK(sent() == BLOB_SIZE);
    /* present: not fetched again */
    hub_reset();
    char *again = pull("hf://org/repo/model.gguf", &err);
    CHECK(again && !strcmp(again, path) && sent() == 0);
    free(again);
    free(path);
}

static void test_resume(void) {
    hub_reset();
    hub.cut_after = 1000000; /* the connection dies after ~1 MB */
    sl_error err;
    char *path = pull("hf://org/repo/resume.gguf", &err);
    CHECK(path == NULL && strstr(err.msg, "interrupted") != NULL);
    char dest[512], part[512];
    pathf(dest, sizeof dest, "out/resume.gguf");
    pathf(part, sizeof part, "out/resume.gguf.part");
    long have = file_size(part);
    CHECKF(have > 0 && have <= 1000000 && file_size(dest) < 0, ".part has %ld bytes", have);
    /* again: only the rest is fetched, from where the .part ends */
    hub_reset();
    path = pull("hf://org/repo/resume.gguf", &err);
    CHECKF(path != NULL, "%s", err.msg);
    CHECK(path && same_as_blob(path) && file_size(part) < 0);
    CHECKF(sent() == (uint64_t)(BLOB_SIZE - have), "resumed transfer sent %llu bytes, want %ld",
           (unsigned long long)sent(), (long)BLOB_SIZE - have);
    CHECK(hub.last_range_start == (uint64_t)have);
    CHECK(strstr(log_buf, "resuming") && strstr(log_buf, "SHA-256 verified"));
    free(path);
}

static void test_corrupt(void) {
    char dest[512], part[512];
    pathf(dest, sizeof dest, "out/bad.gguf");
    pathf(part, sizeof part, "out/bad.gguf.part");
    sl_error err;
    /* corrupt from the start */
    hub_reset();
    hub.corrupt = true;
    char *path = pull("hf://org/repo/bad.gguf", &err);
    CHECK(path == NULL && strstr(err.msg, "SHA-256") && strstr(err.msg, "removed"));
    CHECK(file_size(dest) < 0 && file_size(part) < 0);
    /* interrupted, then resumed with a corrupt rest: rejected, .part removed */
    hub_reset();
    hub.cut_after = 500000;
    path = pull("hf://org/repo/bad.gguf", &err);
    CHECK(path == NULL && file_size(part) > 0);
    hub_reset();
    hub.corrupt = true;
    path = pull("hf://org/repo/bad.gguf", &err);
    CHECK(path == NULL && strstr(err.msg, "SHA-256") != NULL);
    CHECK(file_size(dest) < 0 && file_size(part) < 0);
    /* the next pull starts clean (no Range) and succeeds */
    hub_reset();
    path = pull("hf://org/repo/bad.gguf", &err);
    CHECKF(path != NULL, "%s", err.msg);
    CHECK(path && same_as_blob(path) && sent() == BLOB_SIZE && hub.last_range_start == UINT64_MAX);
    free(path);
}

static void test_ignored_range(void) {
    char part[512];
    pathf(part, sizeof part, "out/norange.gguf.part");
    FILE *f = fopen(part, "wb");
    fwrite(blob, 1, 4096, f);
    fputs("garbage", f); /* whatever the .part holds is replaced */
    fclose(f);
    hub_reset();
    hub.ignore_range = true;
    sl_error err;
    char *path = pull("hf://org/repo/norange.gguf", &err);
    CHECKF(path != NULL, "%s", err.msg);
    CHECK(path && same_as_blob(path) && sent() == BLOB_SIZE);
    free(path);
}

static void test_complete_part(void) {
    /* a .part that is already whole (say the rename was interrupted): 416, then verified */
    char part[512];
    pathf(part, sizeof part, "out/done.gguf.part");
    FILE *f = fopen(part, "wb");
    fwrite(blob, 1, BLOB_SIZE, f);
    fclose(f);
    hub_reset();
    sl_error err;
    char *path = pull("hf://org/repo/done.gguf", &err);
    CHECKF(path != NULL, "%s", err.msg);
    CHECK(path && same_as_blob(path) && sent() == 0 && file_size(part) < 0);
    free(path);
}

static void test_no_hash_and_errors(void) {
    hub_reset();
    sl_error err;
    char *path = pull("hf://org/repo/small.gguf", &err);
    CHECKF(path != NULL, "%s", err.msg);
    CHECK(path && file_size(path) == 1000 && strstr(log_buf, "no published SHA-256"));
    free(path);
    path = pull("hf://org/repo/missing.gguf", &err);
    CHECK(path == NULL && strstr(err.msg, "HTTP 404"));
    char part[512];
    pathf(part, sizeof part, "out/missing.gguf.part");
    CHECK(file_size(part) < 0);
    /* a plain URL works the same way */
    char url[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%u/cdn/url.gguf", (unsigned)hub_port);
    path = pull(url, &err);
    CHECKF(path != NULL, "%s", err.msg);
    CHECK(path && same_as_blob(path));
    free(path);
    /* nothing listens here */
    path = pull("http://127.0.0.1:1/x.gguf", &err);
    CHECK(path == NULL);
}

static void test_split_set(void) {
    hub_reset();
    sl_error err;
    char *path = pull("hf://org/repo/set-00001-of-00002.gguf", &err);
    CHECKF(path != NULL, "%s", err.msg);
    char second[512];
    pathf(second, sizeof second, "out/set-00002-of-00002.gguf");
    CHECK(path && strstr(path, "set-00001-of-00002.gguf") && same_as_blob(path) && same_as_blob(second));
    CHECK(sent() == 2ull * BLOB_SIZE);
    free(path);
}

int main(void) {
    blob = malloc(BLOB_SIZE);
    uint32_t x = 12345;
    for (size_t i = 0; i < BLOB_SIZE; i++) {
        x = x * 1664525u + 1013904223u;
        blob[i] = (unsigned char)(x >> 24);
    }
    sl_error err;
    sl_sha256_hex(blob, BLOB_SIZE, blob_sha, &err);
    snprintf(tmp, sizeof tmp, "/tmp/sl-test-pull-XXXXXX");
    if (!mkdtemp(tmp)) return 1;

    struct MHD_Daemon *d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD, 0, NULL, NULL,
                                            hub_handler, NULL, MHD_OPTION_CONNECTION_TIMEOUT, 10u, MHD_OPTION_END);
    if (!d) {
        printf("cannot start the hub imitation\n0 passed, 1 failed\n");
        return 1;
    }
    hub_port = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT)->port;

    RUN(test_resolve);
    char endpoint[64];
    snprintf(endpoint, sizeof endpoint, "http://127.0.0.1:%u", (unsigned)hub_port);
    setenv("STREAMLLM_HF_ENDPOINT", endpoint, 1);
    RUN(test_fresh);
    RUN(test_resume);
    RUN(test_corrupt);
    RUN(test_ignored_range);
    RUN(test_complete_part);
    RUN(test_no_hash_and_errors);
    RUN(test_split_set);

    MHD_stop_daemon(d);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmp);
    free(blob);
    TEST_SUMMARY();
}
