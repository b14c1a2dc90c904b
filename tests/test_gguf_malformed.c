/* test_gguf_malformed.c - bad GGUF files must give an error, never a crash.
 *
 * A small valid GGUF is made with the writer (several value types, arrays,
 * string arrays, nested arrays, tensors of different types). Its structure is
 * walked here independently of the library, and many bad files are derived
 * from it into a temp dir: truncations (every byte up to the end of the tensor
 * infos, and some inside the data), corrupted counts, lengths, value and
 * element types, tensor shapes, types, offsets, overlaps, duplicates,
 * alignment, magic and version; plus hand-built files with arrays nested too
 * deep. For each, the library must return an error, and the CLI
 * (`$STREAMLLM_BIN info FILE`) must exit with status 1 printing exactly one
 * non-empty line on stderr. */
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "gguf/gguf.h"
#include "quant/quant.h"
#include "test.h"

extern char **environ;

static char tmp_dir[256];
static const char *cli_bin; /* NULL when the CLI is absent */
static int case_number;

/* ---- the base file and its layout ------------------------------------------ */

#define MAX_ITEMS 32

typedef struct layout {
    size_t n_tensors_off, n_kv_off, kvs_start;
    int n_kv;
    char key[MAX_ITEMS][64];
    size_t kv_start[MAX_ITEMS], kv_type_off[MAX_ITEMS], kv_value_off[MAX_ITEMS], kv_end[MAX_ITEMS];
    uint32_t kv_type[MAX_ITEMS];
    int n_tensors;
    char tname[MAX_ITEMS][64];
    size_t ti_start[MAX_ITEMS], ti_ndims_off[MAX_ITEMS], ti_ne_off[MAX_ITEMS], ti_type_off[MAX_ITEMS],
        ti_offset_off[MAX_ITEMS], ti_end[MAX_ITEMS];
    uint32_t ti_ndims[MAX_ITEMS];
    uint64_t ti_offset[MAX_ITEMS], ti_nbytes[MAX_ITEMS];
    size_t infos_end, data_offset;
} layout;

static unsigned char *base;
static size_t base_size;
static layout L;

static uint32_t get32(size_t off) {
    uint32_t v;
    memcpy(&v, base + off, 4);
    return v;
}
static uint64_t get64(size_t off) {
    uint64_t v;
    memcpy(&v, base + off, 8);
    return v;
}

/* Skips one value of type t in the valid base file (no checks needed). */
static size_t skip_value(size_t pos, uint32_t t) {
    static const size_t sizes[13] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    if (t == SL_GGUF_STRING) return pos + 8 + (size_t)get64(pos);
    if (t != SL_GGUF_ARRAY) return pos + sizes[t];
    uint32_t elem = get32(pos);
    uint64_t n = get64(pos + 4);
    pos += 12;
    if (elem != SL_GGUF_STRING && elem != SL_GGUF_ARRAY) return pos + (size_t)n * sizes[elem];
    for (uint64_t i = 0; i < n; i++) pos = skip_value(pos, elem);
    return pos;
}

static void walk_base(void) {
    size_t pos = 8;
    L.n_tensors_off = pos;
    L.n_tensors = (int)get64(pos);
    L.n_kv_off = pos + 8;
    L.n_kv = (int)get64(pos + 8);
    pos += 16;
    L.kvs_start = pos;
    for (int i = 0; i < L.n_kv; i++) {
        L.kv_start[i] = pos;
        size_t len = (size_t)get64(pos);
        snprintf(L.key[i], sizeof L.key[i], "%.*s", (int)len, (const char *)base + pos + 8);
        pos += 8 + len;
        L.kv_type_off[i] = pos;
        L.kv_type[i] = get32(pos);
        L.kv_value_off[i] = pos + 4;
        pos = skip_value(pos + 4, L.kv_type[i]);
        L.kv_end[i] = pos;
    }
    for (int i = 0; i < L.n_tensors; i++) {
        L.ti_start[i] = pos;
        size_t len = (size_t)get64(pos);
        snprintf(L.tname[i], sizeof L.tname[i], "%.*s", (int)len, (const char *)base + pos + 8);
        pos += 8 + len;
        L.ti_ndims_off[i] = pos;
        L.ti_ndims[i] = get32(pos);
        L.ti_ne_off[i] = pos + 4;
        pos += 4 + 8 * (size_t)L.ti_ndims[i];
        L.ti_type_off[i] = pos;
        L.ti_offset_off[i] = pos + 4;
        L.ti_offset[i] = get64(pos + 4);
        pos += 12;
        L.ti_end[i] = pos;
    }
    L.infos_end = pos;
    L.data_offset = (pos + 31) / 32 * 32;
}

static int key_index(const char *key) {
    for (int i = 0; i < L.n_kv; i++)
        if (strcmp(L.key[i], key) == 0) return i;
    return -1;
}

/* Where an offset of the base file lies, for case names. */
static void describe_offset(size_t off, char *out, size_t cap) {
    if (off < 4) { snprintf(out, cap, "magic"); return; }
    if (off < 8) { snprintf(out, cap, "version"); return; }
    if (off < L.kvs_start) { snprintf(out, cap, off < L.n_kv_off ? "tensor count" : "kv count"); return; }
    for (int i = 0; i < L.n_kv; i++) {
        if (off >= L.kv_end[i]) continue;
        const char *part = off < L.kv_start[i] + 8 ? "key length" : off < L.kv_type_off[i] ? "key"
                           : off < L.kv_value_off[i] ? "value type" : "value";
        snprintf(out, cap, "%s of kv #%d '%s'", part, i, L.key[i]);
        return;
    }
    for (int i = 0; i < L.n_tensors; i++) {
        if (off >= L.ti_end[i]) continue;
        const char *part = off < L.ti_start[i] + 8 ? "name length" : off < L.ti_ndims_off[i] ? "name"
                           : off < L.ti_ne_off[i] ? "n_dims" : off < L.ti_type_off[i] ? "ne"
                           : off < L.ti_offset_off[i] ? "type" : "offset";
        snprintf(out, cap, "%s of tensor info #%d '%s'", part, i, L.tname[i]);
        return;
    }
    if (off < L.data_offset) { snprintf(out, cap, "padding before data"); return; }
    for (int i = 0; i < L.n_tensors; i++) {
        size_t start = L.data_offset + (size_t)L.ti_offset[i];
        if (off >= start && off < start + L.ti_nbytes[i]) {
            snprintf(out, cap, "data of '%s'", L.tname[i]);
            return;
        }
    }
    snprintf(out, cap, "padding in data");
}

static int fill_bytes(void *ctx, int64_t index, void *dst, uint64_t nbytes, sl_error *err) {
    (void)ctx;
    (void)err;
    for (uint64_t j = 0; j < nbytes; j++) ((unsigned char *)dst)[j] = (unsigned char)(index * 31 + j);
    return 0;
}

static bool make_base(void) {
    sl_gguf_writer *w = sl_gguf_writer_new();
    sl_error err;
    bool ok = w != NULL;
    ok = ok && sl_gguf_set_str(w, "general.architecture", "llama") == 0;
    ok = ok && sl_gguf_set_u32(w, "general.alignment", 32) == 0;
    ok = ok && sl_gguf_set_value(w, "test.u8", &(sl_gguf_value){.type = SL_GGUF_UINT8, .u64 = 7}) == 0;
    ok = ok && sl_gguf_set_value(w, "test.i16", &(sl_gguf_value){.type = SL_GGUF_INT16, .i64 = -7}) == 0;
    ok = ok && sl_gguf_set_f32(w, "test.f32", 0.5f) == 0;
    ok = ok && sl_gguf_set_bool(w, "test.bool", true) == 0;
    ok = ok && sl_gguf_set_u64(w, "test.u64", 1234567890123u) == 0;
    ok = ok && sl_gguf_set_value(w, "test.f64", &(sl_gguf_value){.type = SL_GGUF_FLOAT64, .f64 = 2.5}) == 0;
    ok = ok && sl_gguf_set_u32(w, "test.key_a", 1) == 0;
    ok = ok && sl_gguf_set_u32(w, "test.key_b", 2) == 0;
    float scores[5] = {0, -1, -2, -3, -4};
    ok = ok && sl_gguf_set_arr(w, "test.scores", SL_GGUF_FLOAT32, scores, 5) == 0;
    const char *tokens[3] = {"a", "bb", "ccc"};
    ok = ok && sl_gguf_set_arr_str(w, "test.tokens", tokens, 3) == 0;
    uint32_t n1[2] = {1, 2}, n2[1] = {3};
    sl_gguf_value inner[2] = {{.type = SL_GGUF_ARRAY}, {.type = SL_GGUF_ARRAY}};
    inner[0].arr.elem_type = inner[1].arr.elem_type = SL_GGUF_UINT32;
    inner[0].arr.n = 2; inner[0].arr.data = n1;
    inner[1].arr.n = 1; inner[1].arr.data = n2;
    sl_gguf_value nested = {.type = SL_GGUF_ARRAY};
    nested.arr.elem_type = SL_GGUF_ARRAY; nested.arr.n = 2; nested.arr.items = inner;
    ok = ok && sl_gguf_set_value(w, "test.nested", &nested) == 0;
    ok = ok && sl_gguf_set_str(w, "test.str", "hello") == 0;
    /* Tensor names of equal length, so that one can be overwritten with another. */
    struct { const char *name; int type; uint32_t n_dims; int64_t ne[4]; } t[] = {
        {"tensor.a", SL_TYPE_F32, 2, {8, 2}},
        {"tensor.b", SL_TYPE_Q8_0, 2, {32, 2}},
        {"tensor.c", SL_TYPE_F16, 1, {16}},
        {"tensor.d", SL_TYPE_Q4_K, 3, {256, 1, 2}},
    };
    for (int i = 0; ok && i < 4; i++)
        ok = sl_gguf_add_tensor(w, t[i].name, t[i].type, t[i].n_dims, t[i].ne, NULL, &err) == 0;
    void *buf = NULL;
    ok = ok && sl_gguf_write_memory(w, &buf, &base_size, fill_bytes, NULL, &err) == 0;
    sl_gguf_writer_free(w);
    if (!ok) return false;
    base = buf;
    walk_base();
    /* Tensor byte sizes from the library (the base file is valid). */
    sl_gguf *g = sl_gguf_open_memory(base, base_size, 0, &err);
    if (!g) {
        fprintf(stderr, "base file does not parse: %s\n", err.msg);
        return false;
    }
    for (int i = 0; i < L.n_tensors; i++) L.ti_nbytes[i] = sl_gguf_tensor_at(g, i)->nbytes;
    bool same = sl_gguf_data_offset(g) == L.data_offset && sl_gguf_n_kv(g) == L.n_kv;
    sl_gguf_close(g);
    return same;
}

/* ---- running one bad file --------------------------------------------------- */

/* Runs `cli_bin info path`; returns false with a reason unless it exited 1
 * with exactly one non-empty line on stderr. */
static bool cli_rejects(const char *path, char *why, size_t why_cap) {
    char err_path[512];
    snprintf(err_path, sizeof err_path, "%s/stderr.txt", tmp_dir);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 2, err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    char *argv[] = {(char *)cli_bin, "info", (char *)path, NULL};
    pid_t pid;
    int rc = posix_spawn(&pid, cli_bin, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) {
        snprintf(why, why_cap, "cannot run %s: %s", cli_bin, strerror(rc));
        return false;
    }
    /* Bounded wait: a hang is a failure too. */
    int status = 0;
    struct timespec tick = {0, 2 * 1000 * 1000};
    int waited_ms = 0;
    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid) break;
        if (r < 0) {
            snprintf(why, why_cap, "waitpid failed");
            return false;
        }
        if (waited_ms > 20000) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            snprintf(why, why_cap, "CLI hung (killed after 20 s)");
            return false;
        }
        nanosleep(&tick, NULL);
        waited_ms += 2;
    }
    char text[4096] = "";
    FILE *f = fopen(err_path, "rb");
    size_t n = f ? fread(text, 1, sizeof text - 1, f) : 0;
    if (f) fclose(f);
    text[n] = 0;
    if (WIFSIGNALED(status)) {
        snprintf(why, why_cap, "CLI killed by signal %d; stderr: %.300s", WTERMSIG(status), text);
        return false;
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 1) {
        snprintf(why, why_cap, "CLI exit status %d (expected 1); stderr: %.300s",
                 WIFEXITED(status) ? WEXITSTATUS(status) : -1, text);
        return false;
    }
    char *newline = strchr(text, '\n');
    if (n == 0 || !newline || newline == text || newline[1] != 0 || n != (size_t)(newline - text + 1)) {
        snprintf(why, why_cap, "CLI stderr is not exactly one non-empty line: '%.300s'", text);
        return false;
    }
    return true;
}

/* The library (from memory and from the file) and the CLI must reject bytes[0..size).
 * expect: a substring the library's message must contain, or NULL. */
static void check_rejected(const unsigned char *bytes, size_t size, const char *expect) {
    char path[512];
    snprintf(path, sizeof path, "%s/case-%04d.gguf", tmp_dir, case_number++);
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (!f) return;
    CHECK(fwrite(bytes, 1, size, f) == size);
    fclose(f);

    sl_error err = {{0}};
    /* A copy of exactly `size` bytes, so that ASan sees any read past the end. */
    unsigned char *copy = malloc(size ? size : 1);
    memcpy(copy, bytes, size);
    sl_gguf *g = sl_gguf_open_memory(copy, size, 0, &err);
    CHECKF(g == NULL, "library accepted %s", path);
    sl_gguf_close(g);
    CHECKF(err.msg[0] != 0 && strchr(err.msg, '\n') == NULL, "empty or multi-line message");
    if (expect) CHECKF(strstr(err.msg, expect) != NULL, "message '%s' lacks '%s'", err.msg, expect);
    if (getenv("TEST_VERBOSE")) fprintf(stderr, "     -> %s\n", err.msg);
    free(copy);

    err.msg[0] = 0;
    g = sl_gguf_open_file(path, &err);
    CHECKF(g == NULL, "open_file accepted %s", path);
    sl_gguf_close(g);
    CHECKF(err.msg[0] != 0 && strstr(err.msg, path) != NULL, "file error '%s' does not name the file",
           err.msg);

    if (cli_bin) {
        char why[512];
        CHECKF(cli_rejects(path, why, sizeof why), "%s: %s", path, why);
    }
    if (!test_case_failed) unlink(path);
    else fprintf(stderr, "  (bad file kept: %s)\n", path);
}

/* A copy of the base with one value patched (width 1, 2, 4 or 8 bytes at off). */
static void check_patched(size_t off, int width, uint64_t value, const char *expect) {
    unsigned char *b = malloc(base_size);
    memcpy(b, base, base_size);
    memcpy(b + off, &value, (size_t)width); /* little-endian host */
    check_rejected(b, base_size, expect);
    free(b);
}

static void check_patched_bytes(size_t off, const void *bytes, size_t n, const char *expect) {
    unsigned char *b = malloc(base_size);
    memcpy(b, base, base_size);
    memcpy(b + off, bytes, n);
    check_rejected(b, base_size, expect);
    free(b);
}

/* Truncation: normal mode always fails; header-only works once the infos are complete. */
static void check_truncated(size_t cut) {
    check_rejected(base, cut, NULL);
    sl_error err;
    unsigned char *copy = malloc(cut ? cut : 1);
    memcpy(copy, base, cut);
    sl_gguf *h = sl_gguf_open_memory(copy, cut, SL_GGUF_HEADER_ONLY, &err);
    if (cut < L.infos_end) CHECKF(h == NULL, "header-only accepted a %zu-byte prefix", cut);
    else CHECKF(h != NULL && sl_gguf_n_tensors(h) == L.n_tensors, "header-only: %s", err.msg);
    sl_gguf_close(h);
    free(copy);
}

/* ---- hand-built files -------------------------------------------------------- */

typedef struct bytes_out {
    unsigned char *b;
    size_t n, cap;
} bytes_out;

static void emit(bytes_out *o, const void *p, size_t n) {
    if (o->n + n > o->cap) {
        o->cap = (o->n + n) * 2 + 64;
        o->b = realloc(o->b, o->cap);
    }
    memcpy(o->b + o->n, p, n);
    o->n += n;
}
static void emit32(bytes_out *o, uint32_t v) { emit(o, &v, 4); }
static void emit64(bytes_out *o, uint64_t v) { emit(o, &v, 8); }

/* A file with one key "deep": `levels` arrays nested, innermost one u8. */
static bytes_out nested_file(int levels) {
    bytes_out o = {0};
    emit(&o, "GGUF", 4);
    emit32(&o, 3);
    emit64(&o, 0);
    emit64(&o, 1);
    emit64(&o, 4);
    emit(&o, "deep", 4);
    emit32(&o, SL_GGUF_ARRAY);
    for (int i = 1; i < levels; i++) {
        emit32(&o, SL_GGUF_ARRAY);
        emit64(&o, 1);
    }
    emit32(&o, SL_GGUF_UINT8);
    emit64(&o, 1);
    emit(&o, "\x2a", 1);
    return o;
}

static void test_nesting_limit(void) {
    sl_error err;
    bytes_out ok = nested_file(SL_GGUF_MAX_ARRAY_DEPTH);
    sl_gguf *g = sl_gguf_open_memory(ok.b, ok.n, 0, &err);
    CHECKF(g != NULL, "%d levels: %s", SL_GGUF_MAX_ARRAY_DEPTH, err.msg);
    if (g) {
        const sl_gguf_value *v = sl_gguf_find(g, "deep");
        for (int i = 1; v && i < SL_GGUF_MAX_ARRAY_DEPTH; i++) v = v->arr.n == 1 ? &v->arr.items[0] : NULL;
        CHECK(v && v->type == SL_GGUF_ARRAY && v->arr.elem_type == SL_GGUF_UINT8 &&
              ((const unsigned char *)v->arr.data)[0] == 42);
    }
    sl_gguf_close(g);
    free(ok.b);
}

/* ---- the cases ----------------------------------------------------------------- */

#define CASE(name_fmt, ...)                                                           \
    do {                                                                              \
        char case_name[256];                                                          \
        snprintf(case_name, sizeof case_name, name_fmt, __VA_ARGS__);                 \
        RUN_CASE(case_name, CASE_BODY);                                               \
    } while (0)

static void run_truncations(void) {
    char where[160];
    /* Every length up to the end of the tensor infos, the padding, and into the data. */
    for (size_t cut = 0; cut < L.data_offset; cut++) {
        describe_offset(cut, where, sizeof where);
#define CASE_BODY check_truncated(cut)
        CASE("truncate to %zu bytes (cut in %s)", cut, where);
#undef CASE_BODY
    }
    for (int i = 0; i < L.n_tensors; i++) {
        if (L.ti_nbytes[i] == 0) continue;
        size_t start = L.data_offset + (size_t)L.ti_offset[i];
        size_t cuts[3] = {start + 1, start + (size_t)L.ti_nbytes[i] / 2, start + (size_t)L.ti_nbytes[i] - 1};
        for (int k = 0; k < 3; k++) {
            describe_offset(cuts[k], where, sizeof where);
#define CASE_BODY check_truncated(cuts[k])
            CASE("truncate to %zu bytes (cut in %s)", cuts[k], where);
#undef CASE_BODY
        }
    }
}

static void run_header_cases(void) {
#define CASE_BODY check_patched_bytes(0, bad, 4, "not a GGUF")
    const char *bad_magic[] = {"GGUG", "\0\0\0\0", "FUGG", "ggml"};
    for (int i = 0; i < 4; i++) {
        const char *bad = bad_magic[i];
        CASE("bad magic #%d", i);
    }
#undef CASE_BODY
#define CASE_BODY check_patched(4, 4, versions[i], "version")
    uint32_t versions[] = {0, 1, 4, 0xffffffffu, 0x03000000u};
    for (int i = 0; i < 5; i++) CASE("version %" PRIu32, versions[i]);
#undef CASE_BODY
    uint64_t huge[] = {UINT64_MAX, INT64_MAX, UINT64_C(1) << 40, UINT64_C(1) << 32, UINT64_C(1) << 20};
#define CASE_BODY check_patched(L.n_tensors_off, 8, huge[i], NULL)
    for (int i = 0; i < 5; i++) CASE("tensor count %" PRIu64, huge[i]);
#undef CASE_BODY
#define CASE_BODY check_patched(L.n_kv_off, 8, huge[i], NULL)
    for (int i = 0; i < 5; i++) CASE("kv count %" PRIu64, huge[i]);
#undef CASE_BODY
}

static void run_kv_cases(void) {
    uint64_t huge_len[] = {UINT64_MAX, UINT64_C(1) << 63, UINT64_C(1) << 32, 0};
    uint32_t bad_types[] = {13, 255, 0xffffffffu, 0x80000000u};
    for (int i = 0; i < L.n_kv; i++) {
        /* Key length: huge, and one byte past the end of the file. */
        huge_len[3] = base_size - L.kv_start[i] - 8 + 1;
#define CASE_BODY check_patched(L.kv_start[i], 8, huge_len[k], NULL)
        for (int k = 0; k < 4; k++) CASE("kv #%d '%s': key length %" PRIu64, i, L.key[i], huge_len[k]);
#undef CASE_BODY
#define CASE_BODY check_patched(L.kv_type_off[i], 4, bad_types[k], "type")
        for (int k = 0; k < 4; k++) CASE("kv #%d '%s': value type %" PRIu32, i, L.key[i], bad_types[k]);
#undef CASE_BODY
        /* A NUL byte inside the key. */
#define CASE_BODY check_patched(L.kv_start[i] + 8 + 2, 1, 0, "NUL")
        CASE("kv #%d '%s': NUL byte in key", i, L.key[i]);
#undef CASE_BODY
        size_t v = L.kv_value_off[i];
        if (L.kv_type[i] == SL_GGUF_STRING) {
            huge_len[3] = base_size - v - 8 + 1;
#define CASE_BODY check_patched(v, 8, huge_len[k], NULL)
            for (int k = 0; k < 4; k++) CASE("kv #%d '%s': string length %" PRIu64, i, L.key[i], huge_len[k]);
#undef CASE_BODY
        }
        if (L.kv_type[i] == SL_GGUF_ARRAY) {
            uint32_t elem = get32(v);
            uint64_t n = get64(v + 4);
            uint32_t bad_elem[] = {13, 0xffffffffu, SL_GGUF_VTYPE_COUNT + 100};
#define CASE_BODY check_patched(v, 4, bad_elem[k], "element type")
            for (int k = 0; k < 3; k++) CASE("kv #%d '%s': array element type %" PRIu32, i, L.key[i], bad_elem[k]);
#undef CASE_BODY
            uint64_t counts[] = {UINT64_MAX, UINT64_C(1) << 60, UINT64_C(1) << 32 | n, n + 1000};
#define CASE_BODY check_patched(v + 4, 8, counts[k], NULL)
            for (int k = 0; k < 4; k++) CASE("kv #%d '%s': array count %" PRIu64, i, L.key[i], counts[k]);
#undef CASE_BODY
            if (elem == SL_GGUF_STRING) {
                huge_len[3] = base_size - (v + 12) - 8 + 1;
#define CASE_BODY check_patched(v + 12, 8, huge_len[k], NULL)
                for (int k = 0; k < 4; k++)
                    CASE("kv #%d '%s': first string length %" PRIu64, i, L.key[i], huge_len[k]);
#undef CASE_BODY
            }
            if (elem == SL_GGUF_ARRAY) {
                /* The first inner array: its element type and count. */
#define CASE_BODY check_patched(v + 12, 4, bad_elem[k], "element type")
                for (int k = 0; k < 3; k++)
                    CASE("kv #%d '%s': inner array element type %" PRIu32, i, L.key[i], bad_elem[k]);
#undef CASE_BODY
#define CASE_BODY check_patched(v + 16, 8, counts[k], NULL)
                for (int k = 0; k < 4; k++)
                    CASE("kv #%d '%s': inner array count %" PRIu64, i, L.key[i], counts[k]);
#undef CASE_BODY
                /* The inner arrays turned into arrays of arrays: nested deeper than the data allows. */
#define CASE_BODY check_patched(v + 12, 4, SL_GGUF_ARRAY, NULL)
                CASE("kv #%d '%s': inner array of arrays", i, L.key[i]);
#undef CASE_BODY
            }
        }
    }
    /* Duplicate key: test.key_b renamed to test.key_a. */
    int b = key_index("test.key_b");
#define CASE_BODY check_patched_bytes(L.kv_start[b] + 8, "test.key_a", 10, "duplicate key")
    CASE("duplicate key %s", "test.key_a");
#undef CASE_BODY
    /* general.alignment: not a power of two, zero, too large for the data, not an integer. */
    int a = key_index("general.alignment");
    uint64_t aligns[] = {0, 3, 48, 64, UINT64_C(1) << 31};
#define CASE_BODY check_patched(L.kv_value_off[a], 4, aligns[k], NULL)
    for (int k = 0; k < 5; k++) CASE("general.alignment = %" PRIu64, aligns[k]);
#undef CASE_BODY
#define CASE_BODY check_patched(L.kv_type_off[a], 4, SL_GGUF_FLOAT32, "general.alignment")
    CASE("general.alignment %s", "of type f32");
#undef CASE_BODY
}

static void run_tensor_cases(void) {
    for (int i = 0; i < L.n_tensors; i++) {
        const char *tn = L.tname[i];
        uint64_t lens[] = {UINT64_MAX, UINT64_C(1) << 63, base_size - L.ti_start[i] - 8 + 1, SL_GGUF_MAX_NAME};
#define CASE_BODY check_patched(L.ti_start[i], 8, lens[k], NULL)
        for (int k = 0; k < 4; k++) CASE("tensor #%d '%s': name length %" PRIu64, i, tn, lens[k]);
#undef CASE_BODY
#define CASE_BODY check_patched(L.ti_start[i] + 8 + 3, 1, 0, "NUL")
        CASE("tensor #%d '%s': NUL byte in name", i, tn);
#undef CASE_BODY
        uint32_t dims[] = {0, 5, 0xffffffffu};
#define CASE_BODY check_patched(L.ti_ndims_off[i], 4, dims[k], "dimensions")
        for (int k = 0; k < 3; k++) CASE("tensor #%d '%s': n_dims %" PRIu32, i, tn, dims[k]);
#undef CASE_BODY
        /* Shapes: negative, too large for the file, element count overflow. */
        size_t ne = L.ti_ne_off[i], last_ne = ne + 8 * (L.ti_ndims[i] - 1);
        uint64_t neg[] = {UINT64_MAX, UINT64_C(1) << 63};
#define CASE_BODY check_patched(ne, 8, neg[k], "negative")
        for (int k = 0; k < 2; k++) CASE("tensor #%d '%s': ne[0] = %" PRId64, i, tn, (int64_t)neg[k]);
#undef CASE_BODY
#define CASE_BODY check_patched(last_ne, 8, UINT64_MAX, "negative")
        CASE("tensor #%d '%s': last ne = -1", i, tn);
#undef CASE_BODY
#define CASE_BODY check_patched(last_ne, 8, UINT64_C(1) << 40, NULL)
        CASE("tensor #%d '%s': last ne = 2^40 (data past end)", i, tn);
#undef CASE_BODY
#define CASE_BODY check_patched(last_ne, 8, INT64_MAX, NULL)
        CASE("tensor #%d '%s': last ne = INT64_MAX", i, tn);
#undef CASE_BODY
        if (L.ti_ndims[i] >= 2) {
#define CASE_BODY do { unsigned char *m = malloc(base_size); memcpy(m, base, base_size); \
            uint64_t big = UINT64_C(1) << 36; memcpy(m + ne, &big, 8); memcpy(m + ne + 8, &big, 8); \
            check_rejected(m, base_size, "too many elements"); free(m); } while (0)
            CASE("tensor #%d '%s': element count overflow (2^36 x 2^36)", i, tn);
#undef CASE_BODY
        }
        /* ne[0] not a multiple of the block size (only for quantized types). */
        uint64_t ne0 = get64(ne);
        if (ne0 >= 32 && ne0 % 2 == 0) {
#define CASE_BODY check_patched(ne, 8, ne0 - 1, NULL)
            CASE("tensor #%d '%s': ne[0] = %" PRIu64, i, tn, ne0 - 1);
#undef CASE_BODY
        }
        struct { uint32_t id; const char *expect; } types[] = {
            {16, "IQ2_XXS (16)"}, {4, "Q4_2 (4)"}, {1000, "1000"}, {0xffffffffu, "type"}, {0x80000000u, "type"},
        };
#define CASE_BODY check_patched(L.ti_type_off[i], 4, types[k].id, types[k].expect)
        for (int k = 0; k < 5; k++) CASE("tensor #%d '%s': type %" PRIu32, i, tn, types[k].id);
#undef CASE_BODY
        uint64_t off = L.ti_offset[i];
        size_t data_size = base_size - L.data_offset;
        uint64_t offsets[] = {off + 1, off + 16, UINT64_MAX - 31, UINT64_C(1) << 62,
                              (data_size + 31) / 32 * 32, (data_size - L.ti_nbytes[i] + 32) / 32 * 32};
        const char *expect[] = {"multiple of the alignment", "multiple of the alignment", NULL, NULL, NULL, NULL};
#define CASE_BODY check_patched(L.ti_offset_off[i], 8, offsets[k], expect[k])
        for (int k = 0; k < 6; k++) CASE("tensor #%d '%s': offset %" PRIu64, i, tn, offsets[k]);
#undef CASE_BODY
        if (i > 0) {
#define CASE_BODY check_patched(L.ti_offset_off[i], 8, L.ti_offset[i - 1], "overlap")
            CASE("tensor #%d '%s': same offset as the previous tensor", i, tn);
#undef CASE_BODY
#define CASE_BODY check_patched_bytes(L.ti_start[i] + 8, L.tname[0], strlen(L.tname[0]), "duplicate tensor")
            CASE("tensor #%d '%s': renamed to '%s'", i, tn, L.tname[0]);
#undef CASE_BODY
        }
    }
    /* tensor.b (2 Q8_0 blocks, 68 bytes): tensor.c moved 32 bytes into it. */
#define CASE_BODY check_patched(L.ti_offset_off[2], 8, L.ti_offset[1] + 32, "overlap")
    CASE("tensor #2 '%s' inside tensor #1", L.tname[2]);
#undef CASE_BODY
}

static void run_nesting_cases(void) {
    int levels[] = {SL_GGUF_MAX_ARRAY_DEPTH + 1, 64, 100000};
    for (int k = 0; k < 3; k++) {
#define CASE_BODY do { bytes_out o = nested_file(levels[k]); check_rejected(o.b, o.n, "nested"); free(o.b); } while (0)
        CASE("arrays nested %d deep", levels[k]);
#undef CASE_BODY
    }
    /* An array of 2^30 empty arrays in a tiny file. */
#define CASE_BODY do { bytes_out o = {0}; emit(&o, "GGUF", 4); emit32(&o, 3); emit64(&o, 0); emit64(&o, 1); \
        emit64(&o, 1); emit(&o, "k", 1); emit32(&o, SL_GGUF_ARRAY); emit32(&o, SL_GGUF_ARRAY); \
        emit64(&o, UINT64_C(1) << 30); for (int z = 0; z < 8; z++) { emit32(&o, SL_GGUF_UINT8); emit64(&o, 0); } \
        check_rejected(o.b, o.n, NULL); free(o.b); } while (0)
    CASE("%s", "array of 2^30 arrays in a tiny file");
#undef CASE_BODY
    /* Tensor name of 64 bytes (ggml's limit is 63). */
#define CASE_BODY do { bytes_out o = {0}; emit(&o, "GGUF", 4); emit32(&o, 3); emit64(&o, 1); emit64(&o, 0); \
        emit64(&o, 64); for (int z = 0; z < 64; z++) emit(&o, "n", 1); emit32(&o, 1); emit64(&o, 8); \
        emit32(&o, 0); emit64(&o, 0); while (o.n % 32) emit(&o, "", 1); for (int z = 0; z < 32; z++) emit(&o, "", 1); \
        check_rejected(o.b, o.n, "too long"); free(o.b); } while (0)
    CASE("%s", "tensor name of 64 bytes");
#undef CASE_BODY
}

static void find_cli(void) {
    const char *bin = getenv("STREAMLLM_BIN");
    static char path[512];
    if (!bin || !*bin) {
        const char *build = getenv("BUILD");
        snprintf(path, sizeof path, "%s/streamllm", build && *build ? build : "build");
        bin = path;
    }
    if (access(bin, X_OK) == 0) {
        cli_bin = bin;
        return;
    }
    fprintf(stderr, "!!! CLI %s not found: only the library is checked (set STREAMLLM_BIN)\n", bin);
    const char *ci = getenv("CI");
    if (ci && strcmp(ci, "true") == 0) RUN_CASE("CLI present", CHECKF(0, "%s missing under CI=true", bin));
}

int main(void) {
    snprintf(tmp_dir, sizeof tmp_dir, "/tmp/sl_gguf_bad_XXXXXX");
    if (!mkdtemp(tmp_dir)) {
        perror("mkdtemp");
        return 1;
    }
    find_cli();
    RUN_CASE("base file", CHECK(make_base()));
    if (!base) TEST_SUMMARY();
    /* The base itself is accepted, also by the CLI. */
    sl_error err;
    sl_gguf *g = sl_gguf_open_memory(base, base_size, 0, &err);
    RUN_CASE("base file parses", CHECKF(g != NULL, "%s", err.msg));
    sl_gguf_close(g);
    RUN(test_nesting_limit);
    run_truncations();
    run_header_cases();
    run_kv_cases();
    run_tensor_cases();
    run_nesting_cases();
    free(base);
    char err_path[512];
    snprintf(err_path, sizeof err_path, "%s/stderr.txt", tmp_dir);
    unlink(err_path);
    if (rmdir(tmp_dir) != 0) fprintf(stderr, "bad files kept in %s\n", tmp_dir);
    TEST_SUMMARY();
}
