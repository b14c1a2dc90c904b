/* main.c - the `streamllm` command: subcommand dispatch and the option parser
 * the subcommands share. */
#include "cli/cli.h"
#include "shard/shard.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char USAGE[] =
    "usage: streamllm COMMAND [options]\n"
    "\n"
    "commands:\n"
    "  info     -m MODEL                       metadata, hyperparameters and tensors\n"
    "  tokenize -m MODEL [--no-bos] [--parse-special] (--file F | TEXT)\n"
    "  run      -m MODEL -p PROMPT [-n N] [--temp T] [--top-k K] [--top-p P] [--min-p P]\n"
    "           [--repeat-penalty R] [--repeat-last-n N] [--frequency-penalty F]\n"
    "           [--presence-penalty P] [--seed S] [-t THREADS] [--ctx N]\n"
    "           [--chat [--system TEXT] [--chat-template NAME]]\n"
    "  logits   -m MODEL (-p PROMPT | --tokens FILE) -o OUT.f32 [-t THREADS] [--ctx N]\n"
    "  bench    -m MODEL [-p N] [-n N] [-r RUNS] [-t THREADS]\n"
    "  synth    --like SHAPE --type TYPE -o OUT.gguf [--vocab VOCAB.gguf] [--seed S] [--layers N] [-t N]\n"
    "  split    MODEL OUTDIR [--max-shard-size 64M] [--base-url URL]\n"
    "                                          hierarchical shards + manifest.json\n"
    "  verify   OUTDIR                         recheck every shard's size and SHA-256\n"
    "  serve    [--models DIR] [MODEL | hf://OWNER/REPO/FILE.gguf ...] [--host 127.0.0.1] [--port 8080]\n"
    "           [--cache DIR] [--public-url URL] [--cors ORIGINS] [--web DIR]   (see serve --help)\n"
    "  pull     (hf://OWNER/REPO/FILE.gguf | URL) [-o DIR]   download a model (resumable, verified)\n"
    "\n"
    "MODEL is a .gguf file, the first file of a llama.cpp split (*-00001-of-0000N.gguf),\n"
    "or a shard directory made by split (or its manifest.json).\n";

int cli_fail(const char *cmd, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    for (char *p = msg; *p; p++)
        if (*p == '\n') *p = ' ';
    fprintf(stderr, "streamllm %s: %s\n", cmd, msg);
    return 1;
}

double cli_now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

char *cli_read_file(const char *path, size_t *len, sl_error *err) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        sl_err(err, "cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        if (n + 1 >= cap) {
            char *grown = realloc(buf, cap * 2);
            if (!grown) break;
            buf = grown;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0) break;
    }
    bool bad = ferror(f) != 0;
    fclose(f);
    if (!buf || bad) {
        free(buf);
        sl_err(err, bad ? "cannot read %s" : "out of memory reading %s", path);
        return NULL;
    }
    buf[n] = 0;
    if (len) *len = n;
    return buf;
}

/* Option table: name, aliases, whether it takes a value. */
typedef enum opt_id {
    OPT_MODEL, OPT_PROMPT, OPT_N, OPT_THREADS, OPT_CTX, OPT_BATCH, OPT_TEMP, OPT_TOPK, OPT_TOPP,
    OPT_MINP, OPT_SEED, OPT_REPEAT, OPT_REPEAT_N, OPT_FREQ, OPT_PRESENCE, OPT_FILE, OPT_TOKENS,
    OPT_OUT, OPT_NO_BOS, OPT_PARSE_SPECIAL, OPT_REPS, OPT_LIKE, OPT_TYPE, OPT_VOCAB, OPT_CHAT,
    OPT_CHAT_TEMPLATE, OPT_SYSTEM, OPT_SHOW_SPECIAL, OPT_VERBOSE, OPT_LAYERS, OPT_MAX_SHARD,
    OPT_BASE_URL,
} opt_id;

typedef struct opt_def {
    opt_id id;
    const char *names[3];
    bool has_value;
} opt_def;

static const opt_def OPTS[] = {
    {OPT_MODEL, {"-m", "--model"}, true},
    {OPT_PROMPT, {"-p", "--prompt"}, true},
    {OPT_N, {"-n", "--n-predict"}, true},
    {OPT_THREADS, {"-t", "--threads"}, true},
    {OPT_CTX, {"--ctx", "-c", "--ctx-size"}, true},
    {OPT_BATCH, {"-b", "--batch-size"}, true},
    {OPT_TEMP, {"--temp"}, true},
    {OPT_TOPK, {"--top-k"}, true},
    {OPT_TOPP, {"--top-p"}, true},
    {OPT_MINP, {"--min-p"}, true},
    {OPT_SEED, {"--seed", "-s"}, true},
    {OPT_REPEAT, {"--repeat-penalty"}, true},
    {OPT_REPEAT_N, {"--repeat-last-n"}, true},
    {OPT_FREQ, {"--frequency-penalty"}, true},
    {OPT_PRESENCE, {"--presence-penalty"}, true},
    {OPT_FILE, {"--file", "-f"}, true},
    {OPT_TOKENS, {"--tokens"}, true},
    {OPT_OUT, {"-o", "--output"}, true},
    {OPT_NO_BOS, {"--no-bos"}, false},
    {OPT_PARSE_SPECIAL, {"--parse-special"}, false},
    {OPT_REPS, {"-r", "--repetitions"}, true},
    {OPT_LIKE, {"--like"}, true},
    {OPT_TYPE, {"--type"}, true},
    {OPT_VOCAB, {"--vocab"}, true},
    {OPT_CHAT, {"--chat"}, false},
    {OPT_CHAT_TEMPLATE, {"--chat-template"}, true},
    {OPT_SYSTEM, {"--system"}, true},
    {OPT_SHOW_SPECIAL, {"--special"}, false},
    {OPT_VERBOSE, {"-v", "--verbose"}, false},
    {OPT_LAYERS, {"--layers"}, true},
    {OPT_MAX_SHARD, {"--max-shard-size"}, true},
    {OPT_BASE_URL, {"--base-url"}, true},
};

static int parse_int(const char *cmd, const char *name, const char *v, long long lo, long long hi, int32_t *out) {
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno || end == v || *end || x < lo || x > hi) {
        cli_fail(cmd, "%s expects an integer in [%lld, %lld], got '%s'", name, lo, hi, v);
        return -1;
    }
    *out = (int32_t)x;
    return 0;
}

/* A byte count with an optional binary suffix: 512, 64K, 64M, 2G (also KiB/KB...). */
static int parse_size(const char *cmd, const char *name, const char *v, uint64_t *out) {
    char *end;
    errno = 0;
    unsigned long long x = strtoull(v, &end, 10);
    unsigned shift = 0;
    if (*end == 'K' || *end == 'k') shift = 10, end++;
    else if (*end == 'M' || *end == 'm') shift = 20, end++;
    else if (*end == 'G' || *end == 'g') shift = 30, end++;
    if (shift && (!strcmp(end, "iB") || !strcmp(end, "B"))) end += strlen(end);
    if (errno || end == v || *end || v[0] == '-' || x == 0 || x > (UINT64_MAX >> shift)) {
        cli_fail(cmd, "%s expects a positive size such as 64M (suffixes K, M, G), got '%s'", name, v);
        return -1;
    }
    *out = (uint64_t)x << shift;
    return 0;
}

static int parse_float(const char *cmd, const char *name, const char *v, double lo, double hi, float *out) {
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (errno || end == v || *end || !(x >= lo && x <= hi)) {
        cli_fail(cmd, "%s expects a number in [%g, %g], got '%s'", name, lo, hi, v);
        return -1;
    }
    *out = (float)x;
    return 0;
}

int cli_parse(int argc, char **argv, int first, const char *cmd, cli_opts *o) {
    memset(o, 0, sizeof *o);
    o->sp = sl_sampler_default_params();
    o->n_predict = -1;
    o->n_prompt = -1;
    o->reps = 5;
    for (int i = first; i < argc; i++) {
        const char *a = argv[i];
        const opt_def *d = NULL;
        for (size_t k = 0; k < sizeof OPTS / sizeof OPTS[0] && !d; k++)
            for (int j = 0; j < 3 && OPTS[k].names[j]; j++)
                if (!strcmp(a, OPTS[k].names[j])) d = &OPTS[k];
        if (!d) {
            if (a[0] == '-' && a[1]) {
                cli_fail(cmd, "unknown option '%s' (see 'streamllm --help')", a);
                return -1;
            }
            if (o->text && (o->text2 || strcmp(cmd, "split") != 0)) {
                cli_fail(cmd, "unexpected argument '%s'", a);
                return -1;
            }
            if (o->text) o->text2 = a; /* split MODEL OUTDIR */
            else o->text = a;
            continue;
        }
        const char *v = NULL;
        if (d->has_value) {
            if (i + 1 >= argc) {
                cli_fail(cmd, "option %s needs a value", a);
                return -1;
            }
            v = argv[++i];
        }
        int rc = 0;
        switch (d->id) {
        case OPT_MODEL: o->model = v; break;
        case OPT_PROMPT:
            /* bench's -p is a prompt length, everyone else's is a prompt */
            if (!strcmp(cmd, "bench")) rc = parse_int(cmd, a, v, 0, 1 << 20, &o->n_prompt);
            else o->prompt = v;
            break;
        case OPT_N: rc = parse_int(cmd, a, v, -1, 1 << 24, &o->n_predict); break;
        case OPT_THREADS: rc = parse_int(cmd, a, v, 1, 1024, &o->n_threads); break;
        case OPT_CTX: rc = parse_int(cmd, a, v, 1, 1 << 24, &o->n_ctx); break;
        case OPT_BATCH: rc = parse_int(cmd, a, v, 1, 1 << 16, &o->n_batch); break;
        case OPT_TEMP: rc = parse_float(cmd, a, v, -1e9, 1e9, &o->sp.temp); break;
        case OPT_TOPK: rc = parse_int(cmd, a, v, -1, 1 << 24, &o->sp.top_k); break;
        case OPT_TOPP: rc = parse_float(cmd, a, v, 0, 1, &o->sp.top_p); break;
        case OPT_MINP: rc = parse_float(cmd, a, v, 0, 1, &o->sp.min_p); break;
        case OPT_SEED: {
            char *end;
            errno = 0;
            unsigned long long s = strtoull(v, &end, 10);
            if (errno || end == v || *end) {
                rc = -1;
                cli_fail(cmd, "%s expects a non-negative integer, got '%s'", a, v);
            }
            o->sp.seed = s;
            break;
        }
        case OPT_REPEAT: rc = parse_float(cmd, a, v, 0, 100, &o->sp.repeat_penalty); break;
        case OPT_REPEAT_N: rc = parse_int(cmd, a, v, -1, 1 << 24, &o->sp.repeat_last_n); break;
        case OPT_FREQ: rc = parse_float(cmd, a, v, -100, 100, &o->sp.freq_penalty); break;
        case OPT_PRESENCE: rc = parse_float(cmd, a, v, -100, 100, &o->sp.presence_penalty); break;
        case OPT_FILE: o->file = v; break;
        case OPT_TOKENS: o->tokens = v; break;
        case OPT_OUT: o->out = v; break;
        case OPT_NO_BOS: o->no_bos = true; break;
        case OPT_PARSE_SPECIAL: o->parse_special = true; break;
        case OPT_REPS: rc = parse_int(cmd, a, v, 1, 1000, &o->reps); break;
        case OPT_LIKE: o->like = v; break;
        case OPT_TYPE: o->type = v; break;
        case OPT_VOCAB: o->vocab = v; break;
        case OPT_CHAT: o->chat = true; break;
        case OPT_CHAT_TEMPLATE: o->chat_template = v; o->chat = true; break;
        case OPT_SYSTEM: o->system = v; break;
        case OPT_SHOW_SPECIAL: o->show_special = true; break;
        case OPT_VERBOSE: o->verbose = true; break;
        case OPT_LAYERS: rc = parse_int(cmd, a, v, 1, 4096, &o->n_layers); break;
        case OPT_MAX_SHARD: rc = parse_size(cmd, a, v, &o->max_shard_bytes); break;
        case OPT_BASE_URL: o->base_url = v; break;
        }
        if (rc) return -1;
    }
    return 0;
}

sl_gguf *cli_open_gguf(const char *path, sl_error *err) { return sl_shard_open_model(path, err); }

sl_model *cli_open_model(const char *path, sl_error *err) {
    sl_gguf *g = cli_open_gguf(path, err);
    if (!g) return NULL;
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/') n--;
    size_t start = n;
    while (start > 0 && path[start - 1] != '/') start--;
    char hint[256];
    snprintf(hint, sizeof hint, "%.*s", (int)(n - start), path + start);
    return sl_model_from_gguf(g, hint, err); /* takes g */
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
        fputs(USAGE, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    static const struct {
        const char *name;
        int (*fn)(int, char **);
    } CMDS[] = {
        {"info", cmd_info},   {"tokenize", cmd_tokenize}, {"run", cmd_run},
        {"logits", cmd_logits}, {"bench", cmd_bench},     {"synth", cmd_synth},
        {"split", cmd_split},   {"verify", cmd_verify},
        {"serve", cmd_serve},   {"pull", cmd_pull},
    };
    for (size_t i = 0; i < sizeof CMDS / sizeof CMDS[0]; i++)
        if (!strcmp(argv[1], CMDS[i].name)) return CMDS[i].fn(argc, argv);
    fprintf(stderr, "streamllm: unknown command '%s'\n%s", argv[1], USAGE);
    return 2;
}
