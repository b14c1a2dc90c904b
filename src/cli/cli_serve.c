/* cli_serve.c - `streamllm serve` (the HTTP server over a registry of models)
 * and `streamllm pull` (download a model). Both have options of their own,
 * parsed here; the server itself is src/server/. */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "server/pull.h"
#include "server/registry.h"
#include "server/server.h"

#define MAX_MODEL_ARGS 64

static bool is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static int parse_uint(const char *cmd, const char *name, const char *v, unsigned long lo, unsigned long hi,
                      unsigned long *out) {
    char *end;
    errno = 0;
    unsigned long x = strtoul(v, &end, 10);
    if (errno || end == v || *end || v[0] == '-' || x < lo || x > hi) {
        cli_fail(cmd, "%s expects an integer in [%lu, %lu], got '%s'", name, lo, hi, v);
        return -1;
    }
    *out = x;
    return 0;
}

/* The app's folder when --web is not given: web/ of the project the binary
 * was built in (BIN/../web, as for build/streamllm), else BIN/web, else an
 * installed BIN/../share/stream-llm/web. NULL when there is none. */
static char *default_web_dir(void) {
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) return NULL;
    exe[n] = 0;
    char *slash = strrchr(exe, '/');
    if (!slash) return NULL;
    *slash = 0;
    static const char *const CANDIDATES[] = {"/../web", "/web", "/../share/stream-llm/web"};
    for (size_t i = 0; i < sizeof CANDIDATES / sizeof CANDIDATES[0]; i++) {
        char path[PATH_MAX], real[PATH_MAX];
        int k = snprintf(path, sizeof path, "%s%s", exe, CANDIDATES[i]);
        if (k > 0 && (size_t)k < sizeof path && realpath(path, real) && is_dir(real))
            return sl_strndup(real, strlen(real));
    }
    return NULL;
}

static const char SERVE_USAGE[] =
    "usage: streamllm serve [--models DIR] [MODEL | hf://OWNER/REPO/FILE.gguf ...] [--host 127.0.0.1]\n"
    "                       [--port 8080] [--cache DIR] [--public-url URL] [--cors ORIGINS] [--web DIR]\n"
    "                       [--threads N] [--max-conns N] [--max-conns-per-ip N] [--timeout S]\n"
    "                       [--header-timeout S]\n";

int cmd_serve(int argc, char **argv) {
    const char *models_dir = NULL, *cache = NULL, *public_url = NULL, *web = NULL;
    const char *sources[MAX_MODEL_ARGS];
    int n_sources = 0;
    sl_server_opts so = {.host = "127.0.0.1", .port = 8080, .access_log = stderr};
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        bool has_value = i + 1 < argc;
        unsigned long v = 0;
        int rc = 0;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(SERVE_USAGE, stdout);
            return 0;
        } else if (a[0] == '-' && a[1] && !has_value) {
            cli_fail("serve", "option %s needs a value (or is unknown; see 'streamllm serve --help')", a);
            return 2;
        } else if (!strcmp(a, "--models")) models_dir = argv[++i];
        else if (!strcmp(a, "--host")) so.host = argv[++i];
        else if (!strcmp(a, "--port")) {
            rc = parse_uint("serve", a, argv[++i], 0, 65535, &v);
            so.port = (uint16_t)v;
        } else if (!strcmp(a, "--cache")) cache = argv[++i];
        else if (!strcmp(a, "--public-url")) public_url = argv[++i];
        else if (!strcmp(a, "--cors")) so.cors = argv[++i];
        else if (!strcmp(a, "--web")) web = argv[++i];
        else if (!strcmp(a, "--threads")) {
            rc = parse_uint("serve", a, argv[++i], 1, 256, &v);
            so.threads = (unsigned)v;
        } else if (!strcmp(a, "--max-conns")) {
            rc = parse_uint("serve", a, argv[++i], 1, 1000000, &v);
            so.max_connections = (unsigned)v;
        } else if (!strcmp(a, "--max-conns-per-ip")) {
            rc = parse_uint("serve", a, argv[++i], 1, 1000000, &v);
            so.max_per_ip = (unsigned)v;
        } else if (!strcmp(a, "--timeout")) {
            rc = parse_uint("serve", a, argv[++i], 1, 86400, &v);
            so.idle_timeout_s = (unsigned)v;
        } else if (!strcmp(a, "--header-timeout")) {
            rc = parse_uint("serve", a, argv[++i], 1, 3600, &v);
            so.header_timeout_s = (unsigned)v;
        } else if (a[0] == '-' && a[1]) {
            cli_fail("serve", "unknown option '%s' (see 'streamllm serve --help')", a);
            return 2;
        } else if (n_sources == MAX_MODEL_ARGS) {
            cli_fail("serve", "at most %d MODEL arguments", MAX_MODEL_ARGS);
            return 2;
        } else {
            sources[n_sources++] = a;
        }
        if (rc) return 2;
    }
    if (!models_dir && n_sources == 0) {
        fputs(SERVE_USAGE, stderr);
        cli_fail("serve", "give --models DIR or at least one MODEL");
        return 2;
    }
    if (public_url && strncmp(public_url, "https://", 8) != 0 && strncmp(public_url, "http://", 7) != 0)
        return cli_fail("serve", "--public-url must start with https:// or http://, got '%s'", public_url);

    sl_error err;
    char *default_cache = NULL, *web_dir = NULL;
    if (!cache) {
        char *base = sl_pull_default_dir(&err);
        if (!base) return cli_fail("serve", "%s (or give --cache DIR)", err.msg);
        size_t n = strlen(base) + sizeof "/shards";
        default_cache = malloc(n);
        if (default_cache) snprintf(default_cache, n, "%s/shards", base);
        free(base);
        if (!default_cache) return cli_fail("serve", "out of memory");
        cache = default_cache;
    }
    if (web) {
        if (!is_dir(web)) {
            free(default_cache);
            return cli_fail("serve", "--web %s is not a directory", web);
        }
    } else {
        web_dir = default_web_dir();
        web = web_dir;
        if (!web) fprintf(stderr, "streamllm serve: no web/ folder found next to the binary: / answers 404 (use --web DIR)\n");
    }

    /* Each connection may hold a socket and a file: allow as many descriptors as the system does. */
    struct rlimit files;
    if (getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < files.rlim_max) {
        files.rlim_cur = files.rlim_max;
        setrlimit(RLIMIT_NOFILE, &files);
    }

    sl_registry reg = {0};
    sl_registry_opts ro = {.cache_dir = cache, .public_url = public_url, .progress = isatty(2), .log = stderr};
    int status = 0;
    for (int i = 0; i < n_sources && !status; i++) {
        const char *src = sources[i];
        char *pulled = NULL;
        if (sl_pull_is_remote(src)) {
            sl_pull_opts po = {.progress = isatty(2), .log = stderr};
            pulled = sl_pull(src, &po, &err);
            if (!pulled) {
                status = cli_fail("serve", "%s", err.msg);
                break;
            }
            src = pulled;
        }
        if (sl_registry_add_path(&reg, src, &ro, &err)) status = cli_fail("serve", "%s", err.msg);
        free(pulled);
    }
    if (!status && models_dir && sl_registry_add_dir(&reg, models_dir, &ro, &err))
        status = cli_fail("serve", "%s", err.msg);
    if (!status && sl_registry_finish(&reg, &err)) status = cli_fail("serve", "%s", err.msg);
    if (!status && reg.n_models == 0) fprintf(stderr, "streamllm serve: warning: no models found\n");

    /* SIGINT/SIGTERM are taken by sigwait below; block them before the server's threads start so
     * that they inherit the mask and the signal reaches this thread. */
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    sl_server *server = NULL;
    if (!status) {
        pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
        so.web_dir = web;
        server = sl_server_start(&reg, &so, &err);
        if (!server) status = cli_fail("serve", "%s", err.msg);
    }
    if (server) {
        const char *shown = so.host; /* a wildcard address is opened at the loopback one */
        if (!strcmp(shown, "0.0.0.0")) shown = "127.0.0.1";
        else if (!strcmp(shown, "::")) shown = "::1";
        bool v6 = strchr(shown, ':') != NULL;
        printf("streamllm serve: %d model%s, web app %s\n", reg.n_models, reg.n_models == 1 ? "" : "s",
               web ? web : "(none)");
        printf("open http://%s%s%s:%u/\n", v6 ? "[" : "", shown, v6 ? "]" : "", (unsigned)sl_server_port(server));
        fflush(stdout);
        int sig = 0;
        sigwait(&stop_signals, &sig);
        fprintf(stderr, "streamllm serve: %s, shutting down\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
        sl_server_stop(server);
    }
    sl_registry_free(&reg);
    free(default_cache);
    free(web_dir);
    return status;
}

int cmd_pull(int argc, char **argv) {
    const char *src = NULL, *out = NULL;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs("usage: streamllm pull (hf://OWNER/REPO/FILE.gguf | URL) [-o DIR]\n", stdout);
            return 0;
        } else if (!strcmp(a, "-o") || !strcmp(a, "--output")) {
            if (i + 1 >= argc) {
                cli_fail("pull", "option %s needs a value", a);
                return 2;
            }
            out = argv[++i];
        } else if (a[0] == '-' && a[1]) {
            cli_fail("pull", "unknown option '%s'", a);
            return 2;
        } else if (src) {
            cli_fail("pull", "unexpected argument '%s'", a);
            return 2;
        } else {
            src = a;
        }
    }
    if (!src) {
        cli_fail("pull", "usage: streamllm pull (hf://OWNER/REPO/FILE.gguf | URL) [-o DIR]");
        return 2;
    }
    sl_error err;
    sl_pull_opts po = {.out_dir = out, .progress = isatty(2), .log = stderr};
    char *path = sl_pull(src, &po, &err);
    if (!path) return cli_fail("pull", "%s", err.msg);
    printf("%s\n", path);
    free(path);
    return 0;
}
