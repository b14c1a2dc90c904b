/* test_server.c - `streamllm serve`'s registry and HTTP server, in process,
 * over raw sockets on 127.0.0.1 (a port the kernel picks):
 *  - registry: scanning a models folder (hidden, .part, later split parts and
 *    broken files skipped; duplicate names get distinct ids), the shard cache
 *    reused while the source is unchanged and re-split when its mtime changes
 *    or, with size and mtime kept, its bytes do; --public-url in the served
 *    manifest;
 *  - routes and the list's keys; Range (206, suffix, open, clamped; 416 with
 *    bytes * /SIZE; malformed and multiple ranges answered 200), If-Range,
 *    HEAD, ETag + If-None-Match (304), Cache-Control, COOP/COEP/CORP, CORS on
 *    (a list, "*") and off, preflights;
 *  - hostile paths (dot segments raw and %-encoded, encoded slashes and
 *    backslashes, NUL, symlinks out of the web folder, directories, hidden
 *    files, files of the shard folder the manifest does not name), oversized
 *    URIs and headers, unsupported methods (405 + Allow), a request body;
 *  - a slowloris client (a header byte a second) cut off while other clients
 *    are served, an idle connection cut, the per-IP connection limit, keep-alive,
 *    the access log, a shard changed on disk.
 * Self-contained: the model is synthesized. */
#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "model/synth.h"
#include "server/http.h"
#include "server/registry.h"
#include "server/server.h"
#include "shard/shard.h"
#include "test.h"

static char tmp[256];
static const char SECRET[] = "TOPSECRET-4242";

static void pathf(char *out, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void pathf(char *out, size_t n, const char *fmt, ...) {
    char rel[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rel, sizeof rel, fmt, ap);
    va_end(ap);
    snprintf(out, n, "%s/%s", tmp, rel);
}

static bool write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    if (!f) return false;
    bool ok = fputs(text, f) >= 0;
    return fclose(f) == 0 && ok;
}

static char *read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)(n < 0 ? 0 : n) + 1);
    if (buf && n >= 0 && fread(buf, 1, (size_t)n, f) == (size_t)n) {
        buf[n] = 0;
        *len = (size_t)n;
    } else {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    return buf;
}

static void rm_tree(const char *path) {
    struct stat st;
    if (lstat(path, &st) != 0) return;
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        struct dirent *e;
        while (d && (e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            char sub[1024];
            snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
            rm_tree(sub);
        }
        if (d) closedir(d);
        rmdir(path);
    } else {
        unlink(path);
    }
}

static bool synth_model(const char *path, uint64_t seed) {
    sl_synth_params p = {.shape = sl_synth_find_shape("tiny"), .preset = sl_synth_find_preset("Q8_0"), .seed = seed};
    sl_error err;
    int rc = sl_synth_write_file(&p, path, &err);
    CHECKF(rc == 0, "%s", err.msg);
    return rc == 0;
}

/* ---- a raw HTTP client ----------------------------------------------------- */

typedef struct http_resp {
    int status;      /* 0: no status line came back */
    char *head;      /* status line + headers */
    char *body;
    size_t body_len;
} http_resp;

static void resp_free(http_resp *r) {
    free(r->head);
    free(r->body);
    memset(r, 0, sizeof *r);
}

static int connect_port(uint16_t port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    struct timeval tv = {.tv_sec = 8};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static bool send_all(int fd, const char *p, size_t n) {
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0) return false;
        p += w;
        n -= (size_t)w;
    }
    return true;
}

/* Parses one response out of buf[0..len) (a body of Content-Length bytes,
 * or everything after the headers when there is none / head_only). */
static size_t parse_resp(const char *buf, size_t len, bool head_only, http_resp *r) {
    memset(r, 0, sizeof *r);
    const char *end = NULL;
    for (size_t i = 0; i + 3 < len; i++)
        if (!memcmp(buf + i, "\r\n\r\n", 4)) {
            end = buf + i;
            break;
        }
    if (!end) return 0;
    size_t head_len = (size_t)(end - buf);
    r->head = malloc(head_len + 1);
    memcpy(r->head, buf, head_len);
    r->head[head_len] = 0;
    if (sscanf(r->head, "HTTP/1.%*d %d", &r->status) != 1) r->status = 0;
    size_t body_at = head_len + 4, body_len = len - body_at;
    const char *cl = NULL;
    for (const char *p = r->head; (p = strchr(p, '\n')); p++)
        if (!strncasecmp(p + 1, "Content-Length:", 15)) cl = p + 16;
    if (cl && !head_only && r->status != 304) {
        size_t want = (size_t)strtoull(cl, NULL, 10);
        if (want < body_len) body_len = want;
    }
    if (head_only || r->status == 304) body_len = 0;
    r->body = malloc(body_len + 1);
    memcpy(r->body, buf + body_at, body_len);
    r->body[body_len] = 0;
    r->body_len = body_len;
    return body_at + body_len;
}

/* Reads until the server closes (or the 8 s receive timeout). */
static char *recv_all(int fd, size_t *len) {
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (n == cap) buf = realloc(buf, cap *= 2);
        ssize_t got = recv(fd, buf + n, cap - n, 0);
        if (got <= 0) break;
        n += (size_t)got;
    }
    *len = n;
    return buf;
}

/* Sends raw request bytes on a fresh connection, reads the answer to close. */
static void http_raw(uint16_t port, const char *req, size_t req_len, bool head_only, http_resp *r) {
    memset(r, 0, sizeof *r);
    int fd = connect_port(port);
    if (fd < 0) return;
    send_all(fd, req, req_len);
    size_t len;
    char *buf = recv_all(fd, &len);
    close(fd);
    parse_resp(buf, len, head_only, r);
    free(buf);
}

static void http_req(uint16_t port, const char *method, const char *target, const char *headers, http_resp *r) {
    char req[8192];
    int n = snprintf(req, sizeof req, "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n%s\r\n", method,
                     target, headers ? headers : "");
    http_raw(port, req, (size_t)n, !strcmp(method, "HEAD"), r);
}

static void http_get(uint16_t port, const char *target, const char *headers, http_resp *r) {
    http_req(port, "GET", target, headers, r);
}

/* The value of a response header (case-insensitive name), or "" when absent. */
static const char *hdr(const http_resp *r, const char *name, char *out, size_t n) {
    out[0] = 0;
    size_t k = strlen(name);
    for (const char *p = r->head; p && (p = strchr(p, '\n')); p++) {
        if (strncasecmp(p + 1, name, k) == 0 && p[1 + k] == ':') {
            const char *v = p + 2 + k;
            while (*v == ' ') v++;
            size_t len = strcspn(v, "\r\n");
            if (len >= n) len = n - 1;
            memcpy(out, v, len);
            out[len] = 0;
            break;
        }
    }
    return out;
}

static bool has_hdr(const http_resp *r, const char *name) {
    size_t k = strlen(name);
    for (const char *p = r->head; p && (p = strchr(p, '\n')); p++)
        if (strncasecmp(p + 1, name, k) == 0 && p[1 + k] == ':') return true;
    return false;
}

/* ---- fixtures ---------------------------------------------------------------- */

static char models_dir[512], cache_dir[512], web_dir[512], web2_dir[512];
static char shard_name[256], shard_path[1024];
static size_t shard_size;
static char *shard_bytes;
static char shard_sha[65];

static char *log_text(FILE *f, char **buf) {
    fflush(f);
    return *buf;
}

static void setup_files(void) {
    char p[1024], q[1024];
    pathf(models_dir, sizeof models_dir, "models");
    pathf(cache_dir, sizeof cache_dir, "cache");
    pathf(web_dir, sizeof web_dir, "web");
    pathf(web2_dir, sizeof web2_dir, "web2");
    mkdir(models_dir, 0755);
    mkdir(web_dir, 0755);
    mkdir(web2_dir, 0755);
    pathf(p, sizeof p, "models/tiny.gguf");
    synth_model(p, 1);
    pathf(p, sizeof p, "models/sub");
    mkdir(p, 0755);
    pathf(p, sizeof p, "models/sub/tiny.gguf"); /* the same name again: a distinct id */
    synth_model(p, 2);
    pathf(p, sizeof p, "models/.hidden.gguf");
    synth_model(p, 3);
    pathf(p, sizeof p, "models/broken.gguf");
    write_text(p, "not a gguf file");
    pathf(p, sizeof p, "models/partial.gguf.part");
    write_text(p, "half a download");
    pathf(p, sizeof p, "models/x-00002-of-00002.gguf"); /* a later split part: never a model of its own */
    write_text(p, "not even read");

    /* the web folder, with things that must never be served */
    pathf(p, sizeof p, "web/index.html");
    write_text(p, "<!doctype html><title>test app</title><p>app page</p>\n");
    pathf(p, sizeof p, "web/stream-llm.js");
    write_text(p, "export function createEngine() {}\n");
    pathf(p, sizeof p, "web/sub");
    mkdir(p, 0755);
    pathf(p, sizeof p, "web/sub/page.css");
    write_text(p, "body { color: red }\n");
    pathf(p, sizeof p, "web/.env");
    write_text(p, SECRET);
    pathf(p, sizeof p, "outside");
    mkdir(p, 0755);
    pathf(p, sizeof p, "outside/secret.txt");
    write_text(p, SECRET);
    pathf(p, sizeof p, "outside/secret.txt");
    pathf(q, sizeof q, "web/leak.txt");
    CHECK(symlink(p, q) == 0); /* a file symlink pointing out */
    pathf(p, sizeof p, "outside");
    pathf(q, sizeof q, "web/linkdir");
    CHECK(symlink(p, q) == 0); /* a directory symlink pointing out */
    pathf(q, sizeof q, "web/fifo");
    CHECK(mkfifo(q, 0644) == 0); /* must not block a worker */
    pathf(p, sizeof p, "web2/index.html"); /* no stream-llm.js here */
    write_text(p, "<p>second</p>\n");
}

static sl_registry reg;
static sl_server *srv;
static uint16_t port;
static char access_log_path[512];
static FILE *access_log;

static void test_registry(void) {
    char *buf = NULL;
    size_t len = 0;
    FILE *log = open_memstream(&buf, &len);
    sl_registry_opts o = {.cache_dir = cache_dir, .log = log};
    sl_error err;
    CHECKF(sl_registry_add_dir(&reg, models_dir, &o, &err) == 0, "%s", err.msg);
    CHECK(sl_registry_finish(&reg, &err) == 0);
    const char *text = log_text(log, &buf);
    CHECKF(reg.n_models == 2, "%d models; log:\n%s", reg.n_models, text);
    CHECKF(strstr(text, "skipping") && strstr(text, "broken.gguf"), "%s", text);
    CHECK(!strstr(text, ".hidden") && !strstr(text, "partial") && !strstr(text, "00002-of-00002"));
    CHECK(strstr(text, "split now") != NULL);
    const sl_model_entry *a = sl_registry_find(&reg, "tiny"), *b = sl_registry_find(&reg, "tiny-2");
    CHECK(a && b);
    if (!a || !b) {
        fclose(log);
        free(buf);
        return;
    }
    CHECK(strcmp(a->shard_dir, b->shard_dir) != 0);
    CHECK(a->n_files == a->n_shards + 1 && a->n_shards >= 2);
    CHECK(!strcmp(a->files[a->n_files - 1].name, "manifest.json") && a->files[a->n_files - 1].data);
    /* shard 1 (the second file) is what the HTTP cases fetch */
    snprintf(shard_name, sizeof shard_name, "%s", a->files[1].name);
    snprintf(shard_path, sizeof shard_path, "%s/%s", a->shard_dir, shard_name);
    shard_bytes = read_all(shard_path, &shard_size);
    CHECK(shard_bytes && shard_size == a->files[1].bytes && shard_size > 100);
    memcpy(shard_sha, a->files[1].etag + 1, 64);
    shard_sha[64] = 0;
    /* the served manifest points at this server */
    cJSON *m = cJSON_Parse(a->manifest);
    cJSON *s0 = cJSON_GetArrayItem(cJSON_GetObjectItem(m, "shards"), 1);
    char want[512];
    snprintf(want, sizeof want, "/models/tiny/%s", shard_name);
    const cJSON *url = cJSON_GetObjectItem(s0, "url");
    CHECKF(cJSON_IsString(url) && !strcmp(url->valuestring, want), "%s", cJSON_IsString(url) ? url->valuestring : "-");
    cJSON_Delete(m);
    fclose(log);
    free(buf);
}

static void test_cache_key(void) {
    char src[512], *buf = NULL;
    size_t len = 0;
    pathf(src, sizeof src, "models/tiny.gguf");
    sl_error err;
    /* unchanged: reused */
    FILE *log = open_memstream(&buf, &len);
    sl_registry_opts o = {.cache_dir = cache_dir, .log = log};
    sl_registry r = {0};
    CHECK(sl_registry_add_path(&r, src, &o, &err) == 0);
    CHECKF(strstr(log_text(log, &buf), "cached") != NULL, "%s", buf);
    sl_registry_free(&r);
    fclose(log);
    free(buf);

    /* same size, same mtime, other bytes (within the first 4 MiB): re-split */
    struct stat st;
    stat(src, &st);
    size_t n;
    char *bytes = read_all(src, &n);
    CHECK(bytes && n > 200);
    if (!bytes) return;
    long at = (long)n - 1; /* the last byte of tensor data */
    FILE *f = fopen(src, "r+b");
    fseek(f, at, SEEK_SET);
    fputc(bytes[at] ^ 0x01, f);
    fclose(f);
    struct timespec times[2] = {st.st_atim, st.st_mtim};
    utimensat(AT_FDCWD, src, times, 0);
    buf = NULL;
    log = open_memstream(&buf, &len);
    o.log = log;
    CHECKF(sl_registry_add_path(&r, src, &o, &err) == 0, "%s", err.msg);
    CHECKF(strstr(log_text(log, &buf), "split now") != NULL, "%s", buf);
    CHECK(r.n_models == 1 && strcmp(r.models[0].files[r.models[0].n_files - 2].name, "") != 0);
    sl_registry_free(&r);
    fclose(log);
    free(buf);
    /* back to the original bytes, a new mtime: re-split again */
    f = fopen(src, "r+b");
    fseek(f, at, SEEK_SET);
    fputc(bytes[at], f);
    fclose(f);
    free(bytes);
    struct timespec later[2] = {st.st_atim, {st.st_mtim.tv_sec + 10, 0}};
    utimensat(AT_FDCWD, src, later, 0);
    buf = NULL;
    log = open_memstream(&buf, &len);
    o.log = log;
    CHECK(sl_registry_add_path(&r, src, &o, &err) == 0);
    CHECKF(strstr(log_text(log, &buf), "split now") != NULL, "%s", buf);
    const sl_model_entry *e = r.n_models ? &r.models[0] : NULL;
    CHECK(e && !strcmp(e->files[1].name, shard_name)); /* the same content: the same shard names */
    sl_registry_free(&r);
    fclose(log);
    free(buf);

    /* --public-url: shard urls on the CDN */
    o.log = NULL;
    o.public_url = "https://cdn.example/m/";
    CHECK(sl_registry_add_path(&r, src, &o, &err) == 0);
    if (r.n_models == 1) {
        char want[512];
        snprintf(want, sizeof want, "\"url\":\"https://cdn.example/m/tiny/%s\"", shard_name);
        CHECKF(strstr(r.models[0].manifest, want) != NULL, "%s", r.models[0].manifest);
    }
    sl_registry_free(&r);
}

static void start_server(const char *cors, const char *web) {
    sl_server_opts so = {.port = 0,
                         .web_dir = web,
                         .cors = cors,
                         .threads = 2,
                         .max_per_ip = 8,
                         .idle_timeout_s = 5,
                         .header_timeout_s = 2,
                         .access_log = access_log};
    sl_error err;
    srv = sl_server_start(&reg, &so, &err);
    CHECKF(srv != NULL, "%s", err.msg);
    port = srv ? sl_server_port(srv) : 0;
    CHECK(port != 0);
}

static void test_api(void) {
    http_resp r;
    char v[256];
    http_get(port, "/api/models", NULL, &r);
    CHECK(r.status == 200);
    CHECK(!strncmp(hdr(&r, "Content-Type", v, sizeof v), "application/json", 16));
    CHECK(!strcmp(hdr(&r, "Cache-Control", v, sizeof v), "no-cache"));
    cJSON *j = cJSON_Parse(r.body);
    cJSON *list = cJSON_GetObjectItem(j, "models");
    CHECK(cJSON_GetArraySize(list) == 2);
    cJSON *m = cJSON_GetArrayItem(list, 0);
    static const char *const KEYS[] = {"id", "name", "arch", "params", "quant", "bytes", "context", "plan_bytes", "manifest"};
    for (size_t i = 0; i < sizeof KEYS / sizeof KEYS[0]; i++) CHECKF(cJSON_GetObjectItem(m, KEYS[i]), "key %s", KEYS[i]);
    CHECK(cJSON_GetObjectItem(m, "params")->valuedouble > 1e5);
    CHECK(!strcmp(cJSON_GetObjectItem(m, "arch")->valuestring, "llama"));
    CHECK(!strcmp(cJSON_GetObjectItem(m, "quant")->valuestring, "Q8_0"));
    char manifest_url[256];
    snprintf(manifest_url, sizeof manifest_url, "%s", cJSON_GetObjectItem(m, "manifest")->valuestring);
    cJSON_Delete(j);
    resp_free(&r);

    http_get(port, manifest_url, NULL, &r);
    CHECK(r.status == 200);
    char etag[128];
    hdr(&r, "ETag", etag, sizeof etag);
    CHECK(strlen(etag) == 66);
    j = cJSON_Parse(r.body);
    CHECK(j && !strcmp(cJSON_GetObjectItem(j, "format")->valuestring, "stream-llm/1"));
    cJSON_Delete(j);
    resp_free(&r);
    char h[256];
    snprintf(h, sizeof h, "If-None-Match: %s\r\n", etag);
    http_get(port, manifest_url, h, &r);
    CHECK(r.status == 304 && r.body_len == 0);
    resp_free(&r);
    http_get(port, "/models/tiny/manifest.json", NULL, &r); /* the same manifest, where "file" resolves */
    CHECK(r.status == 200 && !strcmp(hdr(&r, "ETag", v, sizeof v), etag));
    resp_free(&r);
    http_get(port, "/api/models/nope", NULL, &r);
    CHECK(r.status == 404);
    resp_free(&r);
}

static void test_shard_get(void) {
    char target[512], v[256], want[128];
    snprintf(target, sizeof target, "/models/tiny/%s", shard_name);
    http_resp r;
    http_get(port, target, NULL, &r);
    CHECK(r.status == 200 && r.body_len == shard_size && !memcmp(r.body, shard_bytes, shard_size));
    snprintf(want, sizeof want, "\"%s\"", shard_sha);
    CHECK(!strcmp(hdr(&r, "ETag", v, sizeof v), want));
    CHECK(!strcmp(hdr(&r, "Cache-Control", v, sizeof v), "public, max-age=31536000, immutable"));
    CHECK(!strcmp(hdr(&r, "Cross-Origin-Resource-Policy", v, sizeof v), "cross-origin"));
    CHECK(!strcmp(hdr(&r, "Accept-Ranges", v, sizeof v), "bytes"));
    CHECK(!strcmp(hdr(&r, "X-Content-Type-Options", v, sizeof v), "nosniff"));
    CHECK(!has_hdr(&r, "Access-Control-Allow-Origin")); /* no Origin sent */
    resp_free(&r);

    http_req(port, "HEAD", target, NULL, &r);
    snprintf(want, sizeof want, "%zu", shard_size);
    CHECK(r.status == 200 && r.body_len == 0 && !strcmp(hdr(&r, "Content-Length", v, sizeof v), want));
    resp_free(&r);

    /* If-None-Match: exact, weak, in a list, "*" -> 304; others -> 200 */
    const char *match[] = {"\"%s\"", "W/\"%s\"", "\"x\", \"%s\"", "*"};
    for (int i = 0; i < 4; i++) {
        char h[256], tag[128];
        snprintf(tag, sizeof tag, match[i], shard_sha);
        snprintf(h, sizeof h, "If-None-Match: %s\r\n", tag);
        http_get(port, target, h, &r);
        CHECKF(r.status == 304 && r.body_len == 0, "%s -> %d", tag, r.status);
        CHECK(!strcmp(hdr(&r, "Cache-Control", v, sizeof v), "public, max-age=31536000, immutable"));
        resp_free(&r);
    }
    http_get(port, target, "If-None-Match: \"0000\"\r\n", &r);
    CHECK(r.status == 200 && r.body_len == shard_size);
    resp_free(&r);
}

static void expect_range(const char *range, int status, uint64_t first, uint64_t len) {
    char target[512], h[256], v[256], want[128];
    snprintf(target, sizeof target, "/models/tiny/%s", shard_name);
    snprintf(h, sizeof h, "Range: %s\r\n", range);
    http_resp r;
    http_get(port, target, h, &r);
    CHECKF(r.status == status, "Range: %s -> %d, want %d", range, r.status, status);
    if (status == 206) {
        snprintf(want, sizeof want, "bytes %llu-%llu/%zu", (unsigned long long)first,
                 (unsigned long long)(first + len - 1), shard_size);
        CHECKF(!strcmp(hdr(&r, "Content-Range", v, sizeof v), want), "Range: %s -> Content-Range %s", range, v);
        CHECK(r.body_len == len && !memcmp(r.body, shard_bytes + first, len));
    } else if (status == 416) {
        snprintf(want, sizeof want, "bytes */%zu", shard_size);
        CHECK(!strcmp(hdr(&r, "Content-Range", v, sizeof v), want));
    } else {
        CHECK(r.body_len == shard_size && !has_hdr(&r, "Content-Range"));
    }
    resp_free(&r);
}

static void test_ranges(void) {
    char s[64];
    uint64_t n = shard_size;
    expect_range("bytes=10-19", 206, 10, 10);
    expect_range("bytes=0-0", 206, 0, 1);
    expect_range("bytes=-5", 206, n - 5, 5);
    snprintf(s, sizeof s, "bytes=%llu-", (unsigned long long)(n - 3));
    expect_range(s, 206, n - 3, 3);
    expect_range("bytes=0-99999999999", 206, 0, n);                 /* end clamped */
    expect_range("bytes=-99999999999", 206, 0, n);                  /* suffix longer than the file */
    expect_range("BYTES = 5-6", 206, 5, 2);                         /* unit case, blanks */
    snprintf(s, sizeof s, "bytes=%llu-", (unsigned long long)n);
    expect_range(s, 416, 0, 0);                                     /* starts at the end */
    expect_range("bytes=99999999999999999999999-", 416, 0, 0);      /* overflowing number */
    expect_range("bytes=-0", 416, 0, 0);
    expect_range("bytes=abc", 200, 0, 0);                           /* malformed: ignored */
    expect_range("bytes=5-3", 200, 0, 0);                           /* last < first: invalid, ignored */
    expect_range("items=0-1", 200, 0, 0);                           /* another unit */
    expect_range("bytes=0-1-2", 200, 0, 0);
    expect_range("bytes=--1", 200, 0, 0);
    expect_range("bytes=", 200, 0, 0);
    expect_range("bytes=0-1,5-6", 200, 0, 0);                       /* several ranges: all of it */

    /* If-Range: the ETag -> the range; anything else -> everything */
    char target[512], h[256];
    snprintf(target, sizeof target, "/models/tiny/%s", shard_name);
    snprintf(h, sizeof h, "Range: bytes=1-2\r\nIf-Range: \"%s\"\r\n", shard_sha);
    http_resp r;
    http_get(port, target, h, &r);
    CHECK(r.status == 206 && r.body_len == 2);
    resp_free(&r);
    http_get(port, target, "Range: bytes=1-2\r\nIf-Range: \"other\"\r\n", &r);
    CHECK(r.status == 200 && r.body_len == shard_size);
    resp_free(&r);
    /* HEAD ignores Range (RFC 9110: GET only) */
    http_req(port, "HEAD", target, "Range: bytes=1-2\r\n", &r);
    CHECK(r.status == 200);
    resp_free(&r);
}

static void test_app(void) {
    http_resp r;
    char v[256];
    http_get(port, "/", NULL, &r);
    CHECK(r.status == 200 && strstr(r.body, "test app"));
    CHECK(!strcmp(hdr(&r, "Cross-Origin-Opener-Policy", v, sizeof v), "same-origin"));
    CHECK(!strcmp(hdr(&r, "Cross-Origin-Embedder-Policy", v, sizeof v), "require-corp"));
    CHECK(!strncmp(hdr(&r, "Content-Type", v, sizeof v), "text/html", 9));
    char etag[128], h[200];
    hdr(&r, "ETag", etag, sizeof etag);
    resp_free(&r);
    snprintf(h, sizeof h, "If-None-Match: %s\r\n", etag);
    http_get(port, "/", h, &r);
    CHECK(r.status == 304);
    resp_free(&r);
    http_get(port, "/stream-llm.js", NULL, &r);
    CHECK(r.status == 200 && strstr(r.body, "createEngine"));
    CHECK(!strncmp(hdr(&r, "Content-Type", v, sizeof v), "text/javascript", 15));
    CHECK(!strcmp(hdr(&r, "Cross-Origin-Embedder-Policy", v, sizeof v), "require-corp"));
    resp_free(&r);
    http_get(port, "/sub/page.css", "Range: bytes=0-3\r\n", &r);
    CHECK(r.status == 206 && r.body_len == 4 && !memcmp(r.body, "body", 4));
    resp_free(&r);
    http_get(port, "/missing.html", NULL, &r);
    CHECK(r.status == 404);
    resp_free(&r);
}

static void test_hostile_paths(void) {
    static const struct {
        const char *target;
        int status;
    } CASES[] = {
        {"/../etc/passwd", 400},
        {"/../../../../../../etc/passwd", 400},
        {"/models/tiny/../../etc/passwd", 400},
        {"/sub/../index.html", 400},
        {"/./index.html", 400},
        {"/%2e%2e/%2e%2e/etc/passwd", 400},
        {"/%2E%2E/outside/secret.txt", 400},
        {"/.%2e/outside/secret.txt", 400},
        {"/models/tiny/..%2f..%2f..%2fetc%2fpasswd", 400},
        {"/models%2ftiny%2fmanifest.json", 400},
        {"/sub%2fpage.css", 400},
        {"/%5c..%5coutside", 400},
        {"/sub\\..\\index.html", 400},
        {"/index.html%00.png", 400},
        {"/%00", 400},
        {"/%zz", 400},
        {"/%2", 400},
        {"/%0d%0aSet-Cookie:x", 400},
        {"http://127.0.0.1/../etc/passwd", 400},
        {"//etc/passwd", 404},
        {"/.env", 404},
        {"/%2eenv", 404},
        {"/leak.txt", 404},            /* symlink to a file outside */
        {"/linkdir/secret.txt", 404},  /* symlinked directory outside */
        {"/linkdir", 404},
        {"/sub", 404},                 /* directories are not listed */
        {"/sub/", 404},
        {"/fifo", 404},
        {"/models/tiny/", 404},
        {"/models/tiny", 404},
        {"/models/tiny/.stream-llm-source", 404}, /* in the shard folder, not in the manifest */
        {"/models/nope/manifest.json", 404},
        {"/models/tiny/manifest.json/x", 404},
        {"/api/models/tiny/x", 404},
    };
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) {
        http_resp r;
        http_get(port, CASES[i].target, NULL, &r);
        CHECKF(r.status == CASES[i].status, "%s -> %d, want %d", CASES[i].target, r.status, CASES[i].status);
        CHECKF(!r.body || !strstr(r.body, SECRET), "%s leaked the secret", CASES[i].target);
        CHECKF(!r.body || !strstr(r.body, "root:"), "%s leaked /etc/passwd", CASES[i].target);
        resp_free(&r);
    }
    /* A raw NUL inside the request target: MHD 0.9.75 ends the target there, so
     * at most the (checked) path before it is served, never what follows. */
    static const char nul_req[] = "GET /index.html\0/../../outside/secret.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    http_resp r;
    http_raw(port, nul_req, sizeof nul_req - 1, false, &r);
    CHECKF(r.status == 0 || r.status == 400 || (r.status == 200 && strstr(r.body, "test app")), "raw NUL -> %d", r.status);
    CHECK(!r.body || !strstr(r.body, SECRET));
    resp_free(&r);
    static const char nul_req2[] = "GET /%2e%2e\0/index.html HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    http_raw(port, nul_req2, sizeof nul_req2 - 1, false, &r);
    CHECKF(r.status == 0 || r.status == 400, "raw NUL after .. -> %d", r.status);
    resp_free(&r);
    /* a decoded path longer than the server's bound: 414 */
    char *long_target = malloc(3100);
    strcpy(long_target, "/");
    for (int i = 0; i < 3000; i++) strcat(long_target, "a");
    http_get(port, long_target, NULL, &r);
    CHECK(r.status == 414);
    resp_free(&r);
    free(long_target);
}

static void test_oversized(void) {
    /* a request line larger than the connection's memory: refused by MHD */
    size_t n = 64 * 1024;
    char *req = malloc(n + 256);
    int k = sprintf(req, "GET /");
    memset(req + k, 'a', n);
    k += (int)n;
    k += sprintf(req + k, " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    http_resp r;
    http_raw(port, req, (size_t)k, false, &r);
    CHECKF(r.status == 414 || r.status == 0, "huge URI -> %d", r.status);
    resp_free(&r);
    /* one huge header */
    k = sprintf(req, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Big: ");
    memset(req + k, 'b', n);
    k += (int)n;
    k += sprintf(req + k, "\r\n\r\n");
    http_raw(port, req, (size_t)k, false, &r);
    CHECKF(r.status == 431 || r.status == 0, "huge header -> %d", r.status);
    resp_free(&r);
    /* many headers */
    k = sprintf(req, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
    for (int i = 0; i < 4000 && (size_t)k < n; i++) k += sprintf(req + k, "X-H%d: v\r\n", i);
    k += sprintf(req + k, "\r\n");
    http_raw(port, req, (size_t)k, false, &r);
    CHECKF(r.status == 431 || r.status == 0, "many headers -> %d", r.status);
    resp_free(&r);
    free(req);
    /* and the server still answers */
    http_get(port, "/api/models", NULL, &r);
    CHECK(r.status == 200);
    resp_free(&r);
}

static void test_methods(void) {
    static const char *const METHODS[] = {"POST", "PUT", "DELETE", "PATCH", "TRACE", "PROPFIND", "FOO"};
    for (size_t i = 0; i < sizeof METHODS / sizeof METHODS[0]; i++) {
        http_resp r;
        char v[128];
        http_req(port, METHODS[i], "/api/models", NULL, &r);
        CHECKF(r.status == 405, "%s -> %d", METHODS[i], r.status);
        CHECK(!strcmp(hdr(&r, "Allow", v, sizeof v), "GET, HEAD, OPTIONS"));
        resp_free(&r);
    }
    /* a POST with a body, and a GET with one */
    static const char post[] = "POST /api/models HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello";
    http_resp r;
    http_raw(port, post, sizeof post - 1, false, &r);
    CHECK(r.status == 405);
    resp_free(&r);
    static const char get_body[] = "GET /api/models HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello";
    http_raw(port, get_body, sizeof get_body - 1, false, &r);
    CHECK(r.status == 400);
    resp_free(&r);
}

static void test_cors(bool enabled) {
    char target[512], v[256];
    snprintf(target, sizeof target, "/models/tiny/%s", shard_name);
    http_resp r;
    http_get(port, target, "Origin: https://good.example\r\nRange: bytes=0-9\r\n", &r);
    CHECK(r.status == 206);
    if (enabled) {
        CHECK(!strcmp(hdr(&r, "Access-Control-Allow-Origin", v, sizeof v), "https://good.example"));
        hdr(&r, "Access-Control-Expose-Headers", v, sizeof v);
        CHECK(strstr(v, "Content-Range") && strstr(v, "Content-Length") && strstr(v, "ETag") && strstr(v, "Accept-Ranges"));
        CHECK(!strcmp(hdr(&r, "Vary", v, sizeof v), "Origin"));
    } else {
        CHECK(!has_hdr(&r, "Access-Control-Allow-Origin") && !has_hdr(&r, "Access-Control-Expose-Headers"));
    }
    resp_free(&r);
    http_get(port, target, "Origin: https://evil.example\r\n", &r);
    CHECK(r.status == 200 && !has_hdr(&r, "Access-Control-Allow-Origin"));
    resp_free(&r);
    /* preflight */
    http_req(port, "OPTIONS", target,
             "Origin: https://good.example\r\nAccess-Control-Request-Method: GET\r\n"
             "Access-Control-Request-Headers: range\r\n",
             &r);
    CHECK(r.status == 204);
    CHECK(!strcmp(hdr(&r, "Allow", v, sizeof v), "GET, HEAD, OPTIONS"));
    if (enabled) {
        CHECK(!strcmp(hdr(&r, "Access-Control-Allow-Origin", v, sizeof v), "https://good.example"));
        CHECK(strstr(hdr(&r, "Access-Control-Allow-Methods", v, sizeof v), "GET") != NULL);
        CHECK(!strcmp(hdr(&r, "Access-Control-Allow-Headers", v, sizeof v), "range"));
    } else {
        CHECK(!has_hdr(&r, "Access-Control-Allow-Origin"));
    }
    resp_free(&r);
    http_req(port, "OPTIONS", target, "Origin: https://evil.example\r\nAccess-Control-Request-Method: GET\r\n", &r);
    CHECK(r.status == 204 && !has_hdr(&r, "Access-Control-Allow-Origin"));
    resp_free(&r);
}

static void test_cors_any(void) {
    http_resp r;
    char v[64];
    http_get(port, "/api/models", "Origin: https://anyone.example\r\n", &r);
    CHECK(r.status == 200 && !strcmp(hdr(&r, "Access-Control-Allow-Origin", v, sizeof v), "*"));
    resp_free(&r);
    http_get(port, "/stream-llm.js", NULL, &r); /* web2 has none */
    CHECK(r.status == 404);
    resp_free(&r);
}

static void test_keep_alive(void) {
    int fd = connect_port(port);
    CHECK(fd >= 0);
    if (fd < 0) return;
    static const char two[] = "GET /api/models HTTP/1.1\r\nHost: x\r\n\r\n"
                              "GET /api/models HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    send_all(fd, two, sizeof two - 1);
    size_t len;
    char *buf = recv_all(fd, &len);
    close(fd);
    http_resp a, b;
    size_t used = parse_resp(buf, len, false, &a);
    parse_resp(buf + used, len - used, false, &b);
    CHECK(a.status == 200 && b.status == 200 && a.body_len == b.body_len && a.body_len > 0);
    resp_free(&a);
    resp_free(&b);
    free(buf);
}

/* ---- slow clients ------------------------------------------------------------ */

typedef struct slow_result {
    double cut_after_s; /* when the server closed the connection; < 0: never */
    int bytes_sent;
} slow_result;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Sends a request line, then one header byte per second, for up to 12 s. */
static void *slowloris(void *arg) {
    slow_result *res = arg;
    res->cut_after_s = -1;
    int fd = connect_port(port);
    if (fd < 0) return NULL;
    double t0 = now_s();
    static const char line[] = "GET / HTTP/1.1\r\nHost: x\r\n";
    send_all(fd, line, sizeof line - 1);
    struct timeval tv = {.tv_sec = 1};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    for (int i = 0; i < 12; i++) {
        char b = "X-Slow: aaaaaaaaaaaaaaaaaaaaaaa"[i % 20];
        if (send(fd, &b, 1, MSG_NOSIGNAL) != 1) break;
        res->bytes_sent++;
        char buf[256];
        ssize_t got = recv(fd, buf, sizeof buf, 0); /* waits up to 1 s */
        if (got == 0 || (got < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) break;
    }
    res->cut_after_s = now_s() - t0;
    close(fd);
    return NULL;
}

static void test_slowloris(void) {
    sl_server_stats before, after;
    sl_server_get_stats(srv, &before);
    pthread_t th;
    slow_result res = {0};
    pthread_create(&th, NULL, slowloris, &res);
    /* others keep being served meanwhile, promptly */
    int ok = 0;
    double worst = 0;
    for (int i = 0; i < 10; i++) {
        double t0 = now_s();
        http_resp r;
        http_get(port, "/api/models", NULL, &r);
        double dt = now_s() - t0;
        if (dt > worst) worst = dt;
        ok += r.status == 200;
        resp_free(&r);
        usleep(200 * 1000);
    }
    pthread_join(th, NULL);
    CHECKF(ok == 10, "%d of 10 normal requests answered", ok);
    CHECKF(worst < 2.0, "slowest normal request took %.2f s", worst);
    /* header timeout 2 s, checked every 0.25 s: cut well before the 12 s the client would go on */
    CHECKF(res.cut_after_s > 1.5 && res.cut_after_s < 6.0, "slow client cut after %.2f s (%d bytes)", res.cut_after_s,
           res.bytes_sent);
    sl_server_get_stats(srv, &after);
    CHECK(after.header_timeouts >= before.header_timeouts + 1);
}

static void test_idle_and_limits(void) {
    /* an idle connection (sends nothing) is cut too */
    int fd = connect_port(port);
    CHECK(fd >= 0);
    double t0 = now_s();
    char b;
    ssize_t got = recv(fd, &b, 1, 0); /* 8 s receive timeout */
    double dt = now_s() - t0;
    CHECKF(got == 0 && dt < 5.0, "idle connection: recv %zd after %.2f s", got, dt);
    close(fd);

    /* per-IP limit 8: the 9th connection is refused, then all is well again
     * (first let MHD finish closing earlier connections: they count until then) */
    sl_server_stats st = {0};
    for (int i = 0; i < 40; i++) {
        sl_server_get_stats(srv, &st);
        if (st.connections == 0) break;
        usleep(50 * 1000);
    }
    CHECK(st.connections == 0);
    int fds[8];
    for (int i = 0; i < 8; i++) fds[i] = connect_port(port);
    for (int i = 0; i < 40; i++) {
        sl_server_get_stats(srv, &st);
        if (st.connections == 8) break;
        usleep(50 * 1000);
    }
    CHECKF(st.connections == 8, "%u connections open", st.connections);
    int extra = connect_port(port);
    CHECK(extra >= 0); /* the kernel accepts; MHD closes it at once */
    if (extra >= 0) {
        static const char req[] = "GET /api/models HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
        send_all(extra, req, sizeof req - 1);
        size_t len;
        char *buf = recv_all(extra, &len);
        CHECKF(len == 0, "9th connection got %zu bytes", len);
        free(buf);
        close(extra);
    }
    for (int i = 0; i < 8; i++)
        if (fds[i] >= 0) close(fds[i]);
    usleep(300 * 1000);
    http_resp r;
    http_get(port, "/api/models", NULL, &r);
    CHECK(r.status == 200);
    resp_free(&r);
}

static void test_access_log(void) {
    fflush(access_log);
    size_t len;
    char *text = read_all(access_log_path, &len);
    CHECK(text != NULL);
    if (!text) return;
    CHECK(strstr(text, "\"method\":\"GET\",\"path\":\"/api/models\",\"status\":200") != NULL);
    CHECK(strstr(text, "\"status\":206") && strstr(text, "\"status\":416") && strstr(text, "\"status\":405"));
    CHECK(strstr(text, "\"event\":\"header-timeout\"") != NULL);
    /* every line is one JSON object with the keys */
    int lines = 0, bad = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        cJSON *j = cJSON_Parse(line);
        lines++;
        if (!j) bad++;
        else if (!cJSON_GetObjectItem(j, "event") &&
                 !(cJSON_GetObjectItem(j, "method") && cJSON_GetObjectItem(j, "path") &&
                   cJSON_GetObjectItem(j, "status") && cJSON_GetObjectItem(j, "bytes") && cJSON_GetObjectItem(j, "ms")))
            bad++;
        cJSON_Delete(j);
    }
    CHECKF(lines > 50 && bad == 0, "%d lines, %d bad", lines, bad);
    free(text);
}

static void test_shard_changed(void) {
    /* a shard that no longer has its recorded size is refused, not served */
    FILE *f = fopen(shard_path, "ab");
    fputc('!', f);
    fclose(f);
    char target[512];
    snprintf(target, sizeof target, "/models/tiny/%s", shard_name);
    http_resp r;
    http_get(port, target, NULL, &r);
    CHECK(r.status == 500);
    resp_free(&r);
    /* and the next start splits again */
    char src[512], *buf = NULL;
    size_t len = 0;
    pathf(src, sizeof src, "models/tiny.gguf");
    FILE *log = open_memstream(&buf, &len);
    sl_registry_opts o = {.cache_dir = cache_dir, .log = log};
    sl_registry r2 = {0};
    sl_error err;
    CHECK(sl_registry_add_path(&r2, src, &o, &err) == 0);
    CHECKF(strstr(log_text(log, &buf), "split now") != NULL, "%s", buf);
    sl_registry_free(&r2);
    fclose(log);
    free(buf);
}

static void test_http_units(void) {
    uint64_t a = 0, n = 0;
    CHECK(sl_http_parse_range("bytes=0-", 0, &a, &n) == SL_RANGE_UNSATISFIABLE);
    CHECK(sl_http_parse_range("bytes=-1", 0, &a, &n) == SL_RANGE_UNSATISFIABLE);
    CHECK(sl_http_parse_range("bytes=3-3", 4, &a, &n) == SL_RANGE_PARTIAL && a == 3 && n == 1);
    CHECK(sl_http_parse_range("bytes=0-1,", 4, &a, &n) == SL_RANGE_PARTIAL && a == 0 && n == 2);
    CHECK(sl_http_parse_range(NULL, 4, &a, &n) == SL_RANGE_FULL);
    char out[64];
    CHECK(sl_http_clean_path("/", out, sizeof out) == SL_PATH_OK && !strcmp(out, "/"));
    CHECK(sl_http_clean_path("/a%20b/c", out, sizeof out) == SL_PATH_OK && !strcmp(out, "/a b/c"));
    CHECK(sl_http_clean_path("/..", out, sizeof out) == SL_PATH_BAD);
    CHECK(sl_http_clean_path("/a/%2E", out, sizeof out) == SL_PATH_BAD);
    CHECK(sl_http_clean_path("/a/", out, sizeof out) == SL_PATH_NOT_FOUND);
    CHECK(sl_http_clean_path("", out, sizeof out) == SL_PATH_BAD);
    CHECK(sl_http_clean_path("/abcdefgh", out, 5) == SL_PATH_TOO_LONG);
    CHECK(sl_http_origin_allowed("https://a.example, http://B.example:3000", "http://b.example:3000"));
    CHECK(!sl_http_origin_allowed("https://a.example", "https://a.example.evil"));
    CHECK(!sl_http_origin_allowed("https://a.example", "https://a.exampl"));
    CHECK(!sl_http_origin_allowed(NULL, "https://a.example") && !sl_http_origin_allowed("", "x"));
    CHECK(sl_http_origin_allowed("*", "null"));
    CHECK(sl_http_etag_list_matches("W/\"a\" , \"b\"", "\"b\""));
    CHECK(!sl_http_etag_list_matches("\"a", "\"a\""));
    CHECK(!sl_http_etag_list_matches("* x", "\"a\""));
    CHECK(sl_http_if_range_matches(" \"a\" ", "\"a\"") && !sl_http_if_range_matches("W/\"a\"", "\"a\""));
    CHECK(!strcmp(sl_http_content_type("x/A.WASM"), "application/wasm"));
    CHECK(!strcmp(sl_http_content_type(".js"), "application/octet-stream"));
    char slug[80];
    sl_registry_slug("/m/Foo Bar-00001-of-00003.gguf", slug, sizeof slug);
    CHECK(!strcmp(slug, "foo-bar"));
    sl_registry_slug("/m/.x/manifest.json", slug, sizeof slug);
    CHECK(!strcmp(slug, "x"));
    sl_registry_slug("/m/Q.gguf", slug, sizeof slug);
    CHECK(!strcmp(slug, "q"));
}

int main(void) {
    snprintf(tmp, sizeof tmp, "/tmp/sl-test-server-XXXXXX");
    if (!mkdtemp(tmp)) {
        perror("mkdtemp");
        return 1;
    }
    pathf(access_log_path, sizeof access_log_path, "access.log");
    access_log = fopen(access_log_path, "w");

    RUN(test_http_units);
    RUN(setup_files);
    RUN(test_registry);
    if (reg.n_models == 2) {
        RUN(test_cache_key);
        RUN_CASE("server start (CORS list)", start_server("https://good.example, https://other.example", web_dir));
        if (srv) {
            RUN(test_api);
            RUN(test_shard_get);
            RUN(test_ranges);
            RUN(test_app);
            RUN(test_hostile_paths);
            RUN(test_oversized);
            RUN(test_methods);
            RUN_CASE("test_cors(on)", test_cors(true));
            RUN(test_keep_alive);
            RUN(test_slowloris);
            RUN(test_idle_and_limits);
            sl_server_stop(srv);
            srv = NULL;
        }
        RUN_CASE("server start (CORS off)", start_server(NULL, web_dir));
        if (srv) {
            RUN_CASE("test_cors(off)", test_cors(false));
            sl_server_stop(srv);
            srv = NULL;
        }
        RUN_CASE("server start (CORS *)", start_server("*", web2_dir));
        if (srv) {
            RUN(test_cors_any);
            RUN(test_shard_changed);
            sl_server_stop(srv);
            srv = NULL;
        }
        RUN(test_access_log);
    }
    sl_registry_free(&reg);
    free(shard_bytes);
    fclose(access_log);
    rm_tree(tmp);
    TEST_SUMMARY();
}
