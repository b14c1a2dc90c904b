/* fuzz_server.c - libFuzzer target for the HTTP request handling of
 * `streamllm serve` as a whole (src/server/server.c on libmicrohttpd, with
 * the registry of src/server/registry.c): the input is sent as raw bytes on
 * a TCP connection to a server running in this process, then the connection
 * is half-closed and the answer read. Pipelined requests, bodies, methods,
 * Range / If-None-Match / If-Range / Origin headers and hostile paths all
 * come from the input; "@SHARD@" in it is replaced by the name of a real
 * shard of the served model, so that model files are reached too, and an
 * input that ends with a complete request gets one more request with
 * "Connection: close" (see LAST).
 *
 * The server is set up once: a tiny synthesized model split into its cache,
 * a web folder with an index, a hidden file and symlinks pointing out of it
 * to a secret. Beyond memory safety (sanitizers cover the server's threads),
 * it traps when an answer is not HTTP, when the secret or /etc/passwd leaks
 * into any answer, or on a 500. The folder is removed at exit. Each connection comes from its own loopback
 * address (127.0.x.y) so that neither the per-IP limit nor ephemeral ports
 * run out. */
#define _GNU_SOURCE /* memmem */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "model/synth.h"
#include "server/registry.h"
#include "server/server.h"
#include "shard/shard.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REQUIRE(cond) \
    do {              \
        if (!(cond)) __builtin_trap(); \
    } while (0)

#define MAX_REQUEST (64 * 1024)
#define MAX_ANSWER (8 << 20)
#define QUIET_MS 25

static const char SECRET[] = "FUZZ-SECRET-7731";

static sl_registry reg;
static sl_server *srv;
static uint16_t port;
static char shard_name[256];
static uint32_t next_source;

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    REQUIRE(f);
    fputs(text, f);
    fclose(f);
}

static char tmp[] = "/tmp/sl-fuzz-server-XXXXXX";

static void remove_tmp(void) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmp);
}

static void setup(void) {
    REQUIRE(mkdtemp(tmp));
    atexit(remove_tmp);
    char p[512], q[512];
    /* the model: one layer, vocabulary 260, split into small shards */
    static const sl_synth_shape shape = {"fuzz", "fuzz", SL_ARCH_LLAMA, 260, 32, 1, 2, 1, 16, 64, 64, 1e-5f,
                                         10000.0f, false, 0, 0, 0, 0};
    sl_synth_params sp = {.shape = &shape, .preset = sl_synth_find_preset("Q8_0"), .seed = 1};
    sl_error err;
    snprintf(p, sizeof p, "%s/fuzz-model.gguf", tmp);
    REQUIRE(sl_synth_write_file(&sp, p, &err) == 0);
    snprintf(q, sizeof q, "%s/cache", tmp);
    sl_registry_opts ro = {.cache_dir = q, .max_shard_bytes = 8192};
    REQUIRE(sl_registry_add_path(&reg, p, &ro, &err) == 0);
    REQUIRE(sl_registry_finish(&reg, &err) == 0);
    REQUIRE(reg.n_models == 1 && reg.models[0].n_files >= 2);
    snprintf(shard_name, sizeof shard_name, "%s", reg.models[0].files[0].name);
    /* a secret inside the shard folder (not in the manifest) and outside the web folder */
    snprintf(p, sizeof p, "%s/secret.txt", reg.models[0].shard_dir);
    write_text(p, SECRET);
    snprintf(p, sizeof p, "%s/outside", tmp);
    mkdir(p, 0755);
    snprintf(p, sizeof p, "%s/outside/secret.txt", tmp);
    write_text(p, SECRET);
    snprintf(p, sizeof p, "%s/web", tmp);
    mkdir(p, 0755);
    snprintf(p, sizeof p, "%s/web/index.html", tmp);
    write_text(p, "<!doctype html><p>app</p>\n");
    snprintf(p, sizeof p, "%s/web/sub", tmp);
    mkdir(p, 0755);
    snprintf(p, sizeof p, "%s/web/sub/a.js", tmp);
    write_text(p, "export {};\n");
    snprintf(p, sizeof p, "%s/web/.env", tmp);
    write_text(p, SECRET);
    snprintf(p, sizeof p, "%s/outside/secret.txt", tmp);
    snprintf(q, sizeof q, "%s/web/leak.txt", tmp);
    REQUIRE(symlink(p, q) == 0);
    snprintf(p, sizeof p, "%s/outside", tmp);
    snprintf(q, sizeof q, "%s/web/linkdir", tmp);
    REQUIRE(symlink(p, q) == 0);
    static char web[512];
    snprintf(web, sizeof web, "%s/web", tmp);
    FILE *quiet = fopen("/dev/null", "w"); /* the access log and MHD's messages */
    REQUIRE(quiet);
    sl_server_opts so = {.host = "127.0.0.1", .web_dir = web, .cors = "https://good.example, http://localhost:3000",
                         .threads = 2, .idle_timeout_s = 2, .header_timeout_s = 2, .access_log = quiet};
    srv = sl_server_start(&reg, &so, &err);
    REQUIRE(srv);
    port = sl_server_port(srv);
}

/* Ends an input that ends like a complete request: MHD (0.9.75, epoll) does
 * not notice a half-close that arrives while it answers a keep-alive
 * request, and would hold the connection until its idle timeout. */
static const char LAST[] = "GET /api/models HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";

/* The input with each "@SHARD@" replaced by the shard's name (and LAST). */
static char *expand(const uint8_t *data, size_t size, size_t *out_len) {
    static const char MACRO[] = "@SHARD@";
    size_t mlen = sizeof MACRO - 1, slen = strlen(shard_name);
    size_t cap = size + sizeof LAST + (size / mlen + 1) * slen;
    char *out = malloc(cap);
    REQUIRE(out);
    size_t n = 0;
    for (size_t i = 0; i < size;) {
        if (i + mlen <= size && memcmp(data + i, MACRO, mlen) == 0) {
            memcpy(out + n, shard_name, slen);
            n += slen;
            i += mlen;
        } else {
            out[n++] = (char)data[i++];
        }
    }
    if (n >= 4 && memcmp(out + n - 4, "\r\n\r\n", 4) == 0) {
        memcpy(out + n, LAST, sizeof LAST - 1);
        n += sizeof LAST - 1;
    }
    *out_len = n;
    return out;
}

static int connect_server(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(fd >= 0);
    /* a source address of its own: 127.0.0.2 .. 127.0.255.254 */
    uint32_t k = next_source++ % 65000u + 2u;
    struct sockaddr_in src = {.sin_family = AF_INET};
    src.sin_addr.s_addr = htonl(0x7f000000u | k);
    if (bind(fd, (struct sockaddr *)&src, sizeof src) != 0) {
        close(fd);
        return -1;
    }
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    struct timeval tv = {.tv_sec = 10};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    return fd;
}

/* Checks every answer in buf[0..len): HTTP status lines, no 500, nothing
 * secret (unless the request itself carried it: a CORS preflight's answer
 * names the headers it asked for). */
static void check_answers(const char *buf, size_t len, bool secret_sent) {
    if (len == 0) return; /* closed without an answer (refused before a request) */
    REQUIRE(len >= 12 && (memcmp(buf, "HTTP/1.1 ", 9) == 0 || memcmp(buf, "HTTP/1.0 ", 9) == 0));
    REQUIRE(secret_sent || !memmem(buf, len, SECRET, sizeof SECRET - 1));
    REQUIRE(!memmem(buf, len, "root:x:", 7));
    for (const char *p = buf; (p = memmem(p, len - (size_t)(p - buf), "HTTP/1.1 5", 10)) != NULL; p++)
        REQUIRE(memcmp(p, "HTTP/1.1 500", 12) != 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!srv) setup();
    if (size > MAX_REQUEST) return 0;
    size_t len;
    char *req = expand(data, size, &len);
    int fd = connect_server();
    if (fd < 0) {
        free(req);
        return 0;
    }
    for (size_t sent = 0; sent < len;) {
        ssize_t w = send(fd, req + sent, len - sent, MSG_NOSIGNAL);
        if (w <= 0) break; /* the server may close early (a refused request) */
        sent += (size_t)w;
    }
    const bool secret_sent = memmem(req, len, SECRET, sizeof SECRET - 1) != NULL;
    free(req);
    shutdown(fd, SHUT_WR);
    /* Read until the server closes, or until it has been quiet for QUIET_MS:
     * an incomplete request gets no answer, and MHD would notice the
     * half-close only at its timeout. */
    char *buf = malloc(MAX_ANSWER);
    REQUIRE(buf);
    size_t got = 0;
    while (got < MAX_ANSWER) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int ready = poll(&pfd, 1, QUIET_MS);
        if (ready < 0 && errno == EINTR) continue;
        if (ready <= 0) break;
        ssize_t r = recv(fd, buf + got, MAX_ANSWER - got, 0);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += (size_t)r;
    }
    check_answers(buf, got, secret_sent);
    free(buf);
    /* close without TIME_WAIT (a reset): thousands of connections a second */
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(fd);
    return 0;
}
