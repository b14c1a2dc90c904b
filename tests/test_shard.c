/* test_shard.c - hierarchical shards: `split` layout rules (metadata shard,
 * whole layers, embeddings and head apart, layers over the cap cut between
 * tensors), llama.cpp's split keys and naming, determinism, verify catching
 * corrupt and truncated shards, the manifest parser's errors, and opening a
 * shard directory as a model.
 *
 * Self-contained cases build small GGUFs with the writer. Cases over the
 * shared test data split every model of index.tsv and the llama.cpp split,
 * check that the output is byte-identical twice and verifies, and that
 * `streamllm logits` on the shard directory equals the unsplit file's output
 * bit for bit (skipped loudly without the data; a failure under CI=true). */
#include "proc.h"
#include "shard/shard.h"
#include "test.h"

#include <dirent.h>
#include <inttypes.h>
#include <stdarg.h>
#include <sys/stat.h>

static char tmpdir[256];

/* A path under tmpdir, returned by value so that it lives as long as the
 * caller keeps it. */
typedef struct tpath {
    char s[512];
} tpath;

static tpath tp(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static tpath tp(const char *fmt, ...) {
    tpath p;
    char name[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    snprintf(p.s, sizeof p.s, "%s/%s", tmpdir, name);
    return p;
}

/* Removes the files of a directory, then the directory (one level). */
static void rm_dir(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char path[1024];
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        unlink(path);
    }
    closedir(d);
    rmdir(dir);
}

static int count_files(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.') n++;
    closedir(d);
    return n;
}

static bool files_equal(const char *a, const char *b) {
    size_t na = 0, nb = 0;
    char *x = test_read_file(a, &na), *y = test_read_file(b, &nb);
    bool same = x && y && na == nb && memcmp(x, y, na) == 0;
    free(x);
    free(y);
    return same;
}

static bool write_bytes(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return false;
    bool ok = fwrite(data, 1, n, f) == n;
    return fclose(f) == 0 && ok;
}

/* ---- a small model made with the writer ---------------------------------- */

typedef struct toy_opts {
    int n_layer;
    int n_embd;     /* multiple of 32 */
    int n_ff;
    bool tied;
    uint32_t alignment; /* 0: default */
} toy_opts;

/* Tensor bytes: a counter-based pattern that differs per tensor. */
static int toy_fill(void *ctx, int64_t index, void *dst, uint64_t nbytes, sl_error *err) {
    (void)ctx;
    (void)err;
    uint32_t x = 2166136261u ^ (uint32_t)index;
    unsigned char *p = dst;
    for (uint64_t i = 0; i < nbytes; i++) {
        x = x * 1664525u + 1013904223u;
        p[i] = (unsigned char)(x >> 24);
    }
    return 0;
}

static int add_t(sl_gguf_writer *w, const char *name, int type, int64_t ne0, int64_t ne1) {
    int64_t ne[2] = {ne0, ne1};
    sl_error err;
    int rc = sl_gguf_add_tensor(w, name, type, ne1 ? 2 : 1, ne, NULL, &err);
    CHECKF(rc == 0, "%s", err.msg);
    return rc;
}

/* Writes a llama-like GGUF (F32 norms, F16 matrices, a Q8_0 output head). */
static bool make_toy(const char *path, const toy_opts *o) {
    sl_gguf_writer *w = sl_gguf_writer_new();
    const char *tokens[] = {"<unk>", "<s>", "</s>", "a", "b", "c", "d", "e"};
    sl_gguf_set_str(w, "general.architecture", "llama");
    sl_gguf_set_str(w, "general.name", "toy model");
    if (o->alignment) sl_gguf_set_alignment(w, o->alignment);
    sl_gguf_set_u32(w, "llama.context_length", 256);
    sl_gguf_set_u32(w, "llama.embedding_length", (uint32_t)o->n_embd);
    sl_gguf_set_u32(w, "llama.block_count", (uint32_t)o->n_layer);
    sl_gguf_set_u32(w, "llama.feed_forward_length", (uint32_t)o->n_ff);
    sl_gguf_set_u32(w, "llama.attention.head_count", 4);
    sl_gguf_set_u32(w, "llama.attention.head_count_kv", 2);
    sl_gguf_set_str(w, "tokenizer.ggml.model", "llama");
    sl_gguf_set_arr_str(w, "tokenizer.ggml.tokens", tokens, 8);
    const int F32 = 0, F16 = 1, Q8_0 = 8;
    const int64_t E = o->n_embd, KV = o->n_embd / 2, V = 8;
    int rc = add_t(w, "token_embd.weight", F16, E, V) | add_t(w, "rope_freqs.weight", F32, 16, 0);
    const struct {
        const char *suffix;
        int type;
        int64_t ne0, ne1;
    } layer[] = {
        {"attn_norm.weight", F32, E, 0}, {"attn_q.weight", F16, E, E},
        {"attn_k.weight", F16, E, KV},   {"attn_v.weight", F16, E, KV},
        {"attn_output.weight", F16, E, E}, {"ffn_norm.weight", F32, E, 0},
        {"ffn_gate.weight", F16, E, o->n_ff}, {"ffn_up.weight", F16, E, o->n_ff},
        {"ffn_down.weight", F16, o->n_ff, E},
    };
    char name[64];
    for (int l = 0; l < o->n_layer; l++)
        for (size_t k = 0; k < sizeof layer / sizeof layer[0]; k++) {
            snprintf(name, sizeof name, "blk.%d.%s", l, layer[k].suffix);
            rc |= add_t(w, name, layer[k].type, layer[k].ne0, layer[k].ne1);
        }
    rc |= add_t(w, "output_norm.weight", F32, E, 0);
    if (!o->tied) rc |= add_t(w, "output.weight", Q8_0, E, V);
    sl_error err;
    if (rc == 0) {
        rc = sl_gguf_write_file(w, path, toy_fill, NULL, &err);
        CHECKF(rc == 0, "%s", err.msg);
    }
    sl_gguf_writer_free(w);
    return rc == 0;
}

static const toy_opts TOY = {.n_layer = 3, .n_embd = 64, .n_ff = 96};

/* Bytes of layer l's tensors in the data section (each padded to 32). */
static uint64_t toy_layer_bytes(const toy_opts *o) {
    uint64_t E = (uint64_t)o->n_embd, F = (uint64_t)o->n_ff;
    return 2 * E * 4 + (E * E * 2) * 2 + (E * E / 2 * 2) * 2 + 3 * (E * F * 2);
}

static int split_to(const char *model, const char *dir, uint64_t cap) {
    sl_split_opts opts = {.max_shard_bytes = cap};
    sl_error err;
    int rc = sl_shard_split(model, dir, &opts, &err);
    CHECKF(rc == 0, "split %s: %s", model, err.msg);
    return rc;
}

static bool load_manifest(const char *dir, sl_manifest *m) {
    sl_error err;
    int rc = sl_manifest_load(dir, m, NULL, &err);
    CHECKF(rc == 0, "%s", err.msg);
    return rc == 0;
}

static int64_t tensor_shard(const sl_manifest *m, const char *name) {
    for (int s = 0; s < m->n_shards; s++)
        for (int64_t t = 0; t < m->shards[s].n_tensors; t++)
            if (!strcmp(m->shards[s].tensors[t].name, name)) return s;
    return -1;
}

/* The layout rules of shard.h, for any manifest made with cap. */
static void check_layout(const sl_manifest *m, uint64_t cap, bool tied) {
    CHECK(m->n_shards >= 2);
    const sl_manifest_shard *first = &m->shards[0];
    CHECK(first->layer_first == -1);
    for (int64_t t = 0; t < first->n_tensors; t++) CHECK(first->tensors[t].n_dims == 1);
    int64_t embd = tensor_shard(m, "token_embd.weight"), out = tensor_shard(m, "output.weight");
    CHECK(embd == 1 && m->shards[1].n_tensors == 1);
    if (tied) CHECK(out == -1);
    else CHECK(out == m->n_shards - 1 && m->shards[out].n_tensors == 1);
    for (int s = 0; s < m->n_shards; s++) {
        const sl_manifest_shard *sh = &m->shards[s];
        uint64_t data = 0;
        for (int64_t t = 0; t < sh->n_tensors; t++) data += (sh->tensors[t].bytes + 31) / 32 * 32;
        if (s > 0) CHECKF(data <= cap || sh->n_tensors == 1, "shard %d holds %" PRIu64 " > cap", s, data);
        if (s > 0 && sh->layer_first >= 0) {
            for (int64_t t = 0; t < sh->n_tensors; t++) CHECK(!strncmp(sh->tensors[t].name, "blk.", 4));
        }
    }
}

/* Every tensor of the shard set has the source's bytes. */
static void check_same_tensors(const char *source, const char *shard_dir) {
    sl_error err;
    sl_gguf *a = sl_gguf_open_file(source, &err);
    CHECKF(a, "%s", err.msg);
    sl_gguf *b = sl_shard_open(shard_dir, &err);
    CHECKF(b, "%s", err.msg);
    if (a && b) {
        CHECK(sl_gguf_n_tensors(a) == sl_gguf_n_tensors(b));
        CHECK(sl_gguf_n_kv(a) - (sl_gguf_find(a, "split.count") ? 3 : 0) == sl_gguf_n_kv(b) - 3);
        for (int64_t i = 0; i < sl_gguf_n_tensors(a); i++) {
            const sl_gguf_tensor *ta = sl_gguf_tensor_at(a, i);
            const sl_gguf_tensor *tb = sl_gguf_find_tensor(b, ta->name);
            CHECKF(tb && tb->type == ta->type && tb->nbytes == ta->nbytes &&
                       memcmp(tb->ne, ta->ne, sizeof ta->ne) == 0 &&
                       memcmp(tb->data, ta->data, ta->nbytes) == 0,
                   "tensor %s differs", ta->name);
        }
    }
    sl_gguf_close(a);
    sl_gguf_close(b);
}

static void test_layout_whole_layers(void) {
    tpath model_p = tp("toy.gguf"), dir_p = tp("whole");
    const char *model = model_p.s, *dir = dir_p.s;
    if (!make_toy(model, &TOY)) return;
    /* Two layers fit the cap, three don't. */
    uint64_t cap = 2 * toy_layer_bytes(&TOY) + 100;
    if (split_to(model, dir, cap)) return;
    sl_manifest m;
    if (!load_manifest(dir, &m)) return;
    check_layout(&m, cap, false);
    CHECK(m.n_shards == 5); /* meta, embd, layers 0-1, layer 2, output */
    CHECK(m.shards[2].layer_first == 0 && m.shards[2].layer_last == 1);
    CHECK(m.shards[3].layer_first == 2 && m.shards[3].layer_last == 2);
    CHECK(tensor_shard(&m, "output_norm.weight") == 0 && tensor_shard(&m, "rope_freqs.weight") == 0);
    CHECK(tensor_shard(&m, "blk.1.ffn_norm.weight") == 2);
    CHECK(!strcmp(m.arch, "llama") && !strcmp(m.name, "toy model") && m.n_layer == 3 && m.n_embd == 64);
    CHECK(m.n_vocab == 8 && m.n_head == 4 && m.n_head_kv == 2 && m.context == 256 && m.head_dim == 16);
    CHECK(!strcmp(m.quant, "F16"));
    CHECK(m.kv_bytes == 2ull * 4 * 3 * 256 * 2 * 16 && m.plan_bytes == m.weight_bytes + m.kv_bytes);
    /* file names: STEM-HASH-%05d-of-%05d.gguf, one hash for the set */
    const char *f0 = m.shards[0].file;
    CHECKF(!strncmp(f0, "toy-", 4) && strlen(f0) == strlen("toy-0123456789abcdef-00001-of-00005.gguf") &&
               !strcmp(f0 + 20, "-00001-of-00005.gguf"),
           "%s", f0);
    for (int s = 1; s < m.n_shards; s++) CHECK(!strncmp(m.shards[s].file, f0, 20));
    CHECK(count_files(dir) == m.n_shards + 1);
    check_same_tensors(model, dir);

    /* llama.cpp's split keys: u16 split.no, i32 split.tensors.count, u16
     * split.count; all metadata in the first part, only those in the others. */
    sl_error err;
    sl_gguf *g = sl_gguf_open_file(tp("whole/%s", m.shards[3].file).s, &err);
    CHECK(g == NULL && strstr(err.msg, "part 4 of 5"));
    for (int s = 0; s < m.n_shards; s++) {
        size_t n = 0;
        char *bytes = test_read_file(tp("whole/%s", m.shards[s].file).s, &n);
        sl_gguf *part = bytes ? sl_gguf_open_memory(bytes, n, 0, &err) : NULL;
        CHECKF(part, "%s", err.msg);
        if (part) {
            const sl_gguf_value *no = sl_gguf_find(part, "split.no"), *count = sl_gguf_find(part, "split.count"),
                                *nt = sl_gguf_find(part, "split.tensors.count");
            CHECK(no && no->type == SL_GGUF_UINT16 && no->u64 == (uint64_t)s);
            CHECK(count && count->type == SL_GGUF_UINT16 && count->u64 == (uint64_t)m.n_shards);
            CHECK(nt && nt->type == SL_GGUF_INT32 && nt->i64 == 3 + 9 * 3 + 1);
            CHECK(s == 0 ? sl_gguf_n_kv(part) == 10 + 3 : sl_gguf_n_kv(part) == 3);
            CHECK(sl_gguf_n_tensors(part) == m.shards[s].n_tensors);
            sl_gguf_close(part);
        }
        free(bytes);
    }
    g = sl_gguf_open_file(tp("whole/%s", f0).s, &err);
    CHECKF(g && sl_gguf_n_files(g) == 5, "%s", g ? "wrong file count" : err.msg);
    sl_gguf_close(g);
    sl_manifest_free(&m);
}

static void test_layer_over_cap(void) {
    tpath model_p = tp("toy.gguf"), dir_p = tp("cut");
    const char *model = model_p.s, *dir = dir_p.s;
    /* A cap below one layer: each layer is cut between its tensors; the
     * biggest tensor (ffn, 64x96 F16 = 12288 bytes) is bigger than the cap. */
    uint64_t cap = 10000;
    if (split_to(model, dir, cap)) return;
    sl_manifest m;
    if (!load_manifest(dir, &m)) return;
    check_layout(&m, cap, false);
    int per_layer[3] = {0};
    for (int s = 0; s < m.n_shards; s++) {
        const sl_manifest_shard *sh = &m.shards[s];
        if (sh->layer_first < 0) continue;
        CHECK(sh->layer_first == sh->layer_last); /* a cut layer shares no shard */
        per_layer[sh->layer_first]++;
    }
    for (int l = 0; l < 3; l++) CHECKF(per_layer[l] > 1, "layer %d in %d shards", l, per_layer[l]);
    check_same_tensors(model, dir);
    sl_error err;
    CHECKF(sl_shard_verify(dir, &err) == 0, "%s", err.msg);
    sl_manifest_free(&m);
}

static void test_tied_and_alignment(void) {
    toy_opts o = TOY;
    o.tied = true;
    o.alignment = 64;
    tpath model_p = tp("tied.gguf"), dir_p = tp("tied");
    const char *model = model_p.s, *dir = dir_p.s;
    if (!make_toy(model, &o) || split_to(model, dir, 0)) return;
    sl_manifest m;
    if (!load_manifest(dir, &m)) return;
    check_layout(&m, SL_SHARD_DEFAULT_MAX_BYTES, true);
    CHECK(m.n_shards == 3 && m.shards[2].layer_first == 0 && m.shards[2].layer_last == 2);
    for (int s = 0; s < m.n_shards; s++)
        for (int64_t t = 0; t < m.shards[s].n_tensors; t++) CHECK(m.shards[s].tensors[t].offset % 64 == 0);
    check_same_tensors(model, dir);
    sl_error err;
    CHECKF(sl_shard_verify(dir, &err) == 0, "%s", err.msg);
    sl_manifest_free(&m);
}

static void test_deterministic_and_resplit(void) {
    tpath model_p = tp("toy.gguf"), a_p = tp("det-a"), b_p = tp("det-b"), c_p = tp("det-c");
    const char *model = model_p.s, *a = a_p.s, *b = b_p.s, *c = c_p.s;
    if (split_to(model, a, 20000) || split_to(model, b, 20000)) return;
    /* a shard directory as input gives the same set again */
    if (split_to(a, c, 20000)) return;
    sl_manifest m;
    if (!load_manifest(a, &m)) return;
    CHECK(files_equal(tp("det-a/manifest.json").s, tp("det-b/manifest.json").s));
    CHECK(files_equal(tp("det-a/manifest.json").s, tp("det-c/manifest.json").s));
    for (int s = 0; s < m.n_shards; s++) {
        CHECK(files_equal(tp("det-a/%s", m.shards[s].file).s, tp("det-b/%s", m.shards[s].file).s));
        CHECK(files_equal(tp("det-a/%s", m.shards[s].file).s, tp("det-c/%s", m.shards[s].file).s));
    }
    CHECK(count_files(b) == m.n_shards + 1 && count_files(c) == m.n_shards + 1);
    /* Re-splitting in place with another cap replaces the set and removes the
     * files only the old manifest named. */
    if (split_to(a, a, 0) == 0) {
        sl_manifest m2;
        if (load_manifest(a, &m2)) {
            CHECK(m2.n_shards == 4 && strcmp(m2.shards[0].file, m.shards[0].file) != 0);
            CHECK(count_files(a) == m2.n_shards + 1);
            sl_error err;
            CHECKF(sl_shard_verify(a, &err) == 0, "%s", err.msg);
            check_same_tensors(model, a);
            sl_manifest_free(&m2);
        }
    }
    /* base URL */
    sl_split_opts opts = {.base_url = "https://cdn.example/m/"};
    sl_error err;
    CHECKF(sl_shard_split(model, b, &opts, &err) == 0, "%s", err.msg);
    sl_manifest m3;
    if (load_manifest(b, &m3)) {
        char want[400];
        snprintf(want, sizeof want, "https://cdn.example/m/%s", m3.shards[1].file);
        CHECK(m3.shards[1].url && !strcmp(m3.shards[1].url, want));
        sl_manifest_free(&m3);
    }
    sl_manifest_free(&m);
}

static void test_verify_catches_damage(void) {
    tpath model_p = tp("toy.gguf"), dir_p = tp("damage");
    const char *model = model_p.s, *dir = dir_p.s;
    if (split_to(model, dir, 20000)) return;
    sl_manifest m;
    if (!load_manifest(dir, &m)) return;
    sl_error err;
    CHECKF(sl_shard_verify(dir, &err) == 0, "%s", err.msg);
    CHECKF(sl_shard_verify(tp("damage/manifest.json").s, &err) == 0, "%s", err.msg);
    tpath victim_p = tp("damage/%s", m.shards[3].file);
    const char *victim = victim_p.s;
    size_t n = 0;
    char *bytes = test_read_file(victim, &n);
    CHECK(bytes && n > 100);
    if (!bytes) return;
    /* one flipped byte in the tensor data */
    bytes[n - 40] ^= 0x20;
    CHECK(write_bytes(victim, bytes, n));
    CHECK(sl_shard_verify(dir, &err) != 0 && strstr(err.msg, m.shards[3].file) && strstr(err.msg, "SHA-256"));
    /* opening checks sizes and structure, not hashes (verify's job) */
    sl_gguf *g = sl_shard_open(dir, &err);
    CHECKF(g != NULL, "%s", err.msg);
    sl_gguf_close(g);
    bytes[n - 40] ^= 0x20;
    /* truncated */
    CHECK(write_bytes(victim, bytes, n - 1));
    CHECK(sl_shard_verify(dir, &err) != 0 && strstr(err.msg, m.shards[3].file) && strstr(err.msg, "bytes"));
    CHECK(sl_shard_open(dir, &err) == NULL && strstr(err.msg, m.shards[3].file));
    /* missing */
    CHECK(unlink(victim) == 0);
    CHECK(sl_shard_verify(dir, &err) != 0 && strstr(err.msg, m.shards[3].file));
    CHECK(sl_shard_open(dir, &err) == NULL && strstr(err.msg, m.shards[3].file));
    CHECK(write_bytes(victim, bytes, n));
    CHECKF(sl_shard_verify(dir, &err) == 0, "%s", err.msg);
    free(bytes);

    /* a manifest whose hash or size disagrees with intact files */
    size_t len = 0;
    char *text = test_read_file(tp("damage/manifest.json").s, &len);
    char *sha = text ? strstr(text, m.shards[2].sha256) : NULL;
    CHECK(sha != NULL);
    if (sha) {
        sha[10] = sha[10] == '0' ? '1' : '0';
        CHECK(write_bytes(tp("damage/manifest.json").s, text, len));
        CHECK(sl_shard_verify(dir, &err) != 0 && strstr(err.msg, m.shards[2].file) &&
              strstr(err.msg, "SHA-256 mismatch"));
    }
    free(text);
    sl_manifest_free(&m);
}

/* Replaces the first occurrence of `from` in text by `to` (new buffer). */
static char *replace(const char *text, const char *from, const char *to) {
    const char *at = strstr(text, from);
    if (!at) return NULL;
    size_t n = strlen(text) - strlen(from) + strlen(to);
    char *out = malloc(n + 1);
    size_t head = (size_t)(at - text);
    memcpy(out, text, head);
    strcpy(out + head, to);
    strcat(out, at + strlen(from));
    return out;
}

/* Parses text with `from` replaced by `to`; the error must contain `want`. */
static void expect_parse_error(const char *text, const char *from, const char *to, const char *want) {
    char *bad = replace(text, from, to);
    CHECKF(bad != NULL, "'%s' not in the manifest", from);
    if (!bad) return;
    sl_manifest m;
    sl_error err = {{0}};
    int rc = sl_manifest_parse(bad, strlen(bad), &m, &err);
    CHECKF(rc != 0 && strstr(err.msg, want), "replacing '%s' by '%s': want error '%s', got %s", from,
           to, want, rc ? err.msg : "success");
    if (rc == 0) sl_manifest_free(&m);
    free(bad);
}

static void test_manifest_errors(void) {
    tpath dir_p = tp("det-b");
    const char *dir = dir_p.s;
    size_t len = 0;
    char *text = test_read_file(tp("det-b/manifest.json").s, &len);
    CHECK(text != NULL);
    if (!text) return;
    sl_manifest m;
    sl_error err;
    CHECKF(sl_manifest_parse(text, len, &m, &err) == 0, "%s", err.msg);
    /* to_json reproduces the file */
    char *again = NULL;
    CHECK(sl_manifest_to_json(&m, &again, &err) == 0 && again && !strcmp(again, text));
    free(again);
    char shard_bytes[64], file0[300], total[64];
    snprintf(shard_bytes, sizeof shard_bytes, "\"bytes\":\t%" PRIu64 ",\n\t\t\t\"sha256\"", m.shards[0].bytes);
    snprintf(file0, sizeof file0, "\"%s\"", m.shards[0].file);
    snprintf(total, sizeof total, "\"bytes\":\t%" PRIu64 ",\n\t\"shards\"", m.total_bytes);

    expect_parse_error(text, "\"format\":\t\"stream-llm/1\"", "\"format\":\t\"stream-llm/2\"", "format");
    expect_parse_error(text, "\"format\":\t\"stream-llm/1\",", "", "missing key 'format'");
    expect_parse_error(text, "\"format\"", "\"extra\": 1, \"format\"", "unknown key 'extra'");
    expect_parse_error(text, "\"file\":", "\"color\": \"red\", \"file\":", "unknown key 'color'");
    expect_parse_error(text, "\"name\":\t\"output_norm", "\"size\": 3, \"name\":\t\"output_norm", "unknown key 'size'");
    char sha_line[128];
    snprintf(sha_line, sizeof sha_line, "\"sha256\":\t\"%s\",", m.shards[0].sha256);
    expect_parse_error(text, sha_line, "", "missing key 'sha256'");
    expect_parse_error(text, "\"sha256\":", "\"sha\":", "unknown key 'sha'");
    expect_parse_error(text, "\"arch\":\t\"llama\",", "", "missing key 'arch'");
    expect_parse_error(text, "\"layers\":\tnull,", "", "missing key 'layers'");
    expect_parse_error(text, "\"layers\":\tnull", "\"layers\":\t[2, 1]", "'layers'");
    expect_parse_error(text, "\"sha256\":\t\"", "\"sha256\":\t\"X", "64 lowercase hex");
    expect_parse_error(text, "\"sha256\":\t\"", "\"sha256\":\t\"A", "64 lowercase hex");
    expect_parse_error(text, shard_bytes, "\"bytes\":\t10,\n\t\t\t\"sha256\"", "outside the shard");
    expect_parse_error(text, shard_bytes, "\"bytes\":\t-1,\n\t\t\t\"sha256\"", "'bytes' must be an integer");
    expect_parse_error(text, shard_bytes, "\"bytes\":\t1.5,\n\t\t\t\"sha256\"", "'bytes' must be an integer");
    expect_parse_error(text, shard_bytes, "\"bytes\":\t\"12\",\n\t\t\t\"sha256\"", "'bytes' must be a number");
    expect_parse_error(text, total, "\"bytes\":\t1,\n\t\"shards\"", "add up to");
    expect_parse_error(text, "\"type\":\t\"F32\"", "\"type\":\t\"F16\"", "type_id 0 is F32");
    expect_parse_error(text, "\"shape\":\t[64]", "\"shape\":\t[65]", "'bytes' is 256");
    expect_parse_error(text, "\"shape\":\t[64]", "\"shape\":\t[]", "'shape'");
    expect_parse_error(text, "\"name\":\t\"rope_freqs.weight\"", "\"name\":\t\"output_norm.weight\"", "appears twice");
    expect_parse_error(text, file0, "\"../evil.gguf\"", "not a plain");
    expect_parse_error(text, file0, "\"x/evil.gguf\"", "not a plain");
    expect_parse_error(text, file0, "\".hidden.gguf\"", "not a plain");
    expect_parse_error(text, "\"format\"", "\"format\": 1, \"format\"", "appears twice");
    expect_parse_error(text, "\"shards\":\t[", "\"shards\":\t[1, ", "expected an object");
    expect_parse_error(text, "{", "{{", "not valid JSON");
    /* trailing text; a truncated document */
    sl_manifest bad;
    char *longer = malloc(len + 3);
    memcpy(longer, text, len);
    memcpy(longer + len, "{}", 3);
    CHECK(sl_manifest_parse(longer, len + 2, &bad, &err) != 0 && strstr(err.msg, "after the JSON"));
    CHECK(sl_manifest_parse(text, len / 2, &bad, &err) != 0 && strstr(err.msg, "not valid JSON"));
    CHECK(sl_manifest_parse("", 0, &bad, &err) != 0);
    CHECK(sl_manifest_parse("[]", 2, &bad, &err) != 0 && strstr(err.msg, "expected an object"));
    free(longer);

    /* manifests that parse but disagree with the files */
    char *wrong = replace(text, shard_bytes, "\"bytes\":\t99999,\n\t\t\t\"sha256\"");
    if (wrong) {
        /* keep the total consistent so that the parser accepts it */
        char new_total[64];
        snprintf(new_total, sizeof new_total, "\"bytes\":\t%" PRIu64 ",\n\t\"shards\"",
                 m.total_bytes - m.shards[0].bytes + 99999);
        char *fixed = replace(wrong, total, new_total);
        CHECK(fixed && write_bytes(tp("det-b/manifest.json").s, fixed, strlen(fixed)));
        CHECK(sl_shard_open(dir, &err) == NULL && strstr(err.msg, m.shards[0].file) && strstr(err.msg, "99999"));
        CHECK(sl_shard_verify(dir, &err) != 0 && strstr(err.msg, m.shards[0].file));
        free(fixed);
        free(wrong);
    }
    CHECK(write_bytes(tp("det-b/manifest.json").s, text, len));
    CHECKF(sl_shard_verify(dir, &err) == 0, "%s", err.msg);
    /* a manifest naming files out of llama.cpp's order */
    char *swapped = replace(text, "-00001-of-", "-00009-of-");
    CHECK(swapped && write_bytes(tp("det-b/manifest.json").s, swapped, strlen(swapped)));
    CHECK(sl_shard_open(dir, &err) == NULL && strstr(err.msg, "expected a name ending"));
    free(swapped);
    CHECK(write_bytes(tp("det-b/manifest.json").s, text, len));
    sl_manifest_free(&m);
    free(text);
}

/* Block hashes: one SHA-256 per block_bytes of each shard (the last block
 * shorter), recomputed here from the files; deterministic; verify checks
 * them; the parser refuses inconsistent ones; manifests without them (older
 * ones) stay valid. */
static void test_block_hashes(void) {
    tpath model_p = tp("blocks.gguf"), a_p = tp("blk-a"), b_p = tp("blk-b");
    const toy_opts o = {.n_layer = 3, .n_embd = 128, .n_ff = 256};
    if (!make_toy(model_p.s, &o)) return;
    sl_split_opts opts = {.block_bytes = 65536};
    sl_error err;
    CHECKF(sl_shard_split(model_p.s, a_p.s, &opts, &err) == 0, "%s", err.msg);
    CHECKF(sl_shard_split(model_p.s, b_p.s, &opts, &err) == 0, "%s", err.msg);
    CHECK(files_equal(tp("blk-a/manifest.json").s, tp("blk-b/manifest.json").s));
    sl_manifest m;
    if (!load_manifest(a_p.s, &m)) return;
    uint64_t most = 0;
    for (int s = 0; s < m.n_shards; s++) {
        const sl_manifest_shard *sh = &m.shards[s];
        CHECK(sh->block_bytes == 65536);
        CHECK(sh->n_blocks == (sh->bytes + 65535) / 65536);
        if (sh->n_blocks > most) most = sh->n_blocks;
        size_t n = 0;
        char *bytes = test_read_file(tp("blk-a/%s", sh->file).s, &n);
        CHECK(bytes && n == sh->bytes);
        for (uint64_t b = 0; bytes && b < sh->n_blocks; b++) {
            size_t from = (size_t)(b * 65536), len = n - from < 65536 ? n - from : 65536;
            char hex[65];
            CHECK(sl_sha256_hex(bytes + from, len, hex, &err) == 0);
            CHECKF(strcmp(hex, sh->block_sha256[b]) == 0, "%s block %" PRIu64, sh->file, b);
        }
        free(bytes);
    }
    CHECKF(most >= 5, "a shard of several blocks (most %" PRIu64 ")", most);
    CHECKF(sl_shard_verify(a_p.s, &err) == 0, "%s", err.msg);

    /* the default: 4 MiB blocks, so each small shard is one block, its hash the file's */
    sl_manifest d;
    if (split_to(model_p.s, b_p.s, 0) == 0 && load_manifest(b_p.s, &d)) {
        for (int s = 0; s < d.n_shards; s++) {
            CHECK(d.shards[s].block_bytes == SL_SHARD_DEFAULT_BLOCK_BYTES && d.shards[s].n_blocks == 1);
            CHECK(!strcmp(d.shards[s].block_sha256[0], d.shards[s].sha256));
        }
        sl_manifest_free(&d);
    }
    sl_split_opts odd = {.block_bytes = 100000};
    CHECK(sl_shard_split(model_p.s, tp("blk-odd").s, &odd, &err) != 0 && strstr(err.msg, "power of two"));
    sl_split_opts tiny = {.block_bytes = 32768};
    CHECK(sl_shard_split(model_p.s, tp("blk-odd").s, &tiny, &err) != 0 && strstr(err.msg, "power of two"));

    /* the parser: both keys or neither, a power of two in range, one hash per block */
    size_t len = 0;
    char *text = test_read_file(tp("blk-a/manifest.json").s, &len);
    CHECK(text != NULL);
    if (!text) {
        sl_manifest_free(&m);
        return;
    }
    int big = 0;
    for (int s = 0; s < m.n_shards; s++)
        if (m.shards[s].n_blocks > m.shards[big].n_blocks) big = s;
    char first_hash[80], two_hashes[160];
    snprintf(first_hash, sizeof first_hash, "[\"%s\", ", m.shards[big].block_sha256[0]);
    snprintf(two_hashes, sizeof two_hashes, "[\"%s\", \"%s\", ", m.shards[big].block_sha256[0],
             m.shards[big].block_sha256[0]);
    expect_parse_error(text, first_hash, "[", "make");                /* one hash missing */
    expect_parse_error(text, first_hash, two_hashes, "make");         /* one too many */
    expect_parse_error(text, "\"block_bytes\":\t65536", "\"block_bytes\":\t65537", "power of two");
    expect_parse_error(text, "\"block_bytes\":\t65536", "\"block_bytes\":\t32768", "power of two");
    expect_parse_error(text, "\"block_bytes\":\t65536", "\"block_bytes\":\t134217728", "power of two");
    expect_parse_error(text, "\"block_bytes\":\t65536", "\"block_bytes\":\t-65536", "'block_bytes' must be an integer");
    expect_parse_error(text, "\"block_bytes\":\t65536,", "", "'block_sha256' without 'block_bytes'");
    expect_parse_error(text, "\"block_sha256\":", "\"block_sha\":", "unknown key 'block_sha'");
    expect_parse_error(text, "\"block_sha256\":\t[\"", "\"block_sha256\":\t[\"X", "64 lowercase hex");
    char list0[100], string0[100];
    snprintf(list0, sizeof list0, "[\"%s\"]", m.shards[0].block_sha256[0]);
    snprintf(string0, sizeof string0, "\"%s\"", m.shards[0].block_sha256[0]);
    expect_parse_error(text, list0, "[1]", "'block_sha256'[0]");
    expect_parse_error(text, list0, string0, "must be an array");

    /* verify: a block hash that disagrees with intact files (the file hash still right) */
    char wrong_block[80];
    snprintf(wrong_block, sizeof wrong_block, "\"%s\"", m.shards[big].block_sha256[2]);
    char fixed[80];
    memcpy(fixed, wrong_block, strlen(wrong_block) + 1);
    fixed[5] = fixed[5] == '0' ? '1' : '0';
    char *bad = replace(text, wrong_block, fixed);
    CHECK(bad && write_bytes(tp("blk-a/manifest.json").s, bad, strlen(bad)));
    CHECK(sl_shard_verify(a_p.s, &err) != 0 && strstr(err.msg, m.shards[big].file) && strstr(err.msg, "block 3 of"));
    free(bad);

    /* an older manifest without block hashes: valid, and verify still checks the files */
    char *old = malloc(len + 1);
    size_t k = 0;
    for (const char *line = text; line && *line;) {
        const char *end = strchr(line, '\n');
        size_t n = end ? (size_t)(end - line) + 1 : strlen(line);
        const char *q = line;
        while (*q == '\t') q++;
        if (strncmp(q, "\"block_", 7) != 0) {
            memcpy(old + k, line, n);
            k += n;
        }
        line += n;
    }
    old[k] = 0;
    sl_manifest om;
    CHECKF(sl_manifest_parse(old, k, &om, &err) == 0, "%s", err.msg);
    if (om.n_shards > 0) {
        CHECK(om.shards[big].block_bytes == 0 && om.shards[big].n_blocks == 0 && !om.shards[big].block_sha256);
        char *json = NULL;
        CHECK(sl_manifest_to_json(&om, &json, &err) == 0 && json && !strcmp(json, old));
        free(json);
        sl_manifest_free(&om);
    }
    CHECK(write_bytes(tp("blk-a/manifest.json").s, old, k));
    CHECKF(sl_shard_verify(a_p.s, &err) == 0, "%s", err.msg);
    free(old);
    free(text);
    sl_manifest_free(&m);
}

static void test_open_forms_and_errors(void) {
    sl_error err;
    tpath dir_p = tp("det-b"), forms_p[4] = {tp("det-b"), tp("det-b/"), tp("det-b/manifest.json"), tp("toy.gguf")};
    const char *dir = dir_p.s;
    CHECK(sl_shard_is_manifest_path(dir) && sl_shard_is_manifest_path(tp("det-b/manifest.json").s));
    CHECK(!sl_shard_is_manifest_path(tp("toy.gguf").s));
    for (int i = 0; i < 4; i++) {
        sl_gguf *g = sl_shard_open_model(forms_p[i].s, &err);
        CHECKF(g && sl_gguf_n_tensors(g) == 31, "%s: %s", forms_p[i].s, g ? "tensor count" : err.msg);
        sl_gguf_close(g);
    }
    CHECK(sl_shard_open(tp("nothing-here").s, &err) == NULL && strstr(err.msg, "nothing-here"));
    CHECK(sl_shard_split(tp("missing.gguf").s, tp("out-x").s, NULL, &err) != 0 &&
          strstr(err.msg, "missing.gguf"));
    CHECK(sl_shard_split(tp("toy.gguf").s, tp("toy.gguf").s, NULL, &err) != 0 &&
          strstr(err.msg, "not a directory"));
    char hex[65];
    CHECK(sl_sha256_hex("abc", 3, hex, &err) == 0 &&
          !strcmp(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
    CHECK(write_bytes(tp("abc.txt").s, "abc", 3) && sl_sha256_file(tp("abc.txt").s, hex, &err) == 0 &&
          !strcmp(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
    CHECK(sl_sha256_file(tp("nope.txt").s, hex, &err) != 0 && strstr(err.msg, "nope.txt"));
}

/* ---- the shared test data ------------------------------------------------ */

static bool ci_mode(void) {
    const char *ci = getenv("CI");
    return ci && !strcmp(ci, "true");
}

/* Runs `streamllm logits` on model with the ref's tokens into out. */
static int run_logits(const char *model, const char *tokens, const char *out) {
    char *argv[] = {(char *)test_cli_path(), "logits", "-m", (char *)model, "--tokens", (char *)tokens,
                    "-o", (char *)out, "-t", "2", NULL};
    tpath err_p = tp("logits.err");
    return test_run(argv, NULL, err_p.s);
}

static void check_testdata_model(const char *data, const char *model_rel, const char *ref_prefix,
                                 int index) {
    char model[512], tokens[512];
    snprintf(model, sizeof model, "%s/%s", data, model_rel);
    snprintf(tokens, sizeof tokens, "%s/%s.prompt_tokens.txt", data, ref_prefix);
    tpath a_p = tp("td%d-a", index), b_p = tp("td%d-b", index);
    const char *a = a_p.s, *b = b_p.s;
    /* 256 KiB forces several layer shards on every sample model */
    if (split_to(model, a, 256 << 10) || split_to(model, b, 256 << 10)) return;
    sl_manifest m;
    if (!load_manifest(a, &m)) return;
    CHECK(files_equal(tp("td%d-a/manifest.json", index).s, tp("td%d-b/manifest.json", index).s));
    for (int s = 0; s < m.n_shards; s++)
        CHECKF(files_equal(tp("td%d-a/%s", index, m.shards[s].file).s,
                           tp("td%d-b/%s", index, m.shards[s].file).s),
               "%s differs between two splits", m.shards[s].file);
    sl_error err;
    CHECKF(sl_shard_verify(a, &err) == 0, "%s", err.msg);
    check_layout(&m, 256 << 10, tensor_shard(&m, "output.weight") < 0);
    /* llama.cpp's naming: the first file opens every part */
    char suffix[32];
    snprintf(suffix, sizeof suffix, "-00001-of-%05d.gguf", m.n_shards);
    const char *f0 = m.shards[0].file;
    CHECKF(strlen(f0) > strlen(suffix) && !strcmp(f0 + strlen(f0) - strlen(suffix), suffix), "%s", f0);
    sl_gguf *g = sl_gguf_open_file(tp("td%d-a/%s", index, f0).s, &err);
    CHECKF(g && sl_gguf_n_files(g) == m.n_shards, "%s", g ? "file count" : err.msg);
    sl_gguf_close(g);
    check_same_tensors(model, a);
    /* logits on the shard directory equal the unsplit file's, bit for bit */
    tpath la_p = tp("td%d-whole.f32", index), lb_p = tp("td%d-shards.f32", index);
    const char *la = la_p.s, *lb = lb_p.s;
    int rc_a = run_logits(model, tokens, la), rc_b = run_logits(a, tokens, lb);
    CHECKF(rc_a == 0 && rc_b == 0, "logits exit status %d / %d", rc_a, rc_b);
    size_t na = 0;
    char *x = test_read_file(la, &na);
    CHECK(x && na > 0 && files_equal(la, lb));
    free(x);
    sl_manifest_free(&m);
    rm_dir(a);
    rm_dir(b);
}

static void test_testdata(void) {
    const char *data = test_data_dir();
    char index_path[512];
    snprintf(index_path, sizeof index_path, "%s/index.tsv", data);
    size_t len = 0;
    char *index = test_read_file(index_path, &len);
    if (!index) {
        fprintf(stderr, "!!! SKIP test_shard testdata cases: testdata absent (%s)\n", index_path);
        CHECKF(!ci_mode(), "CI=true: testdata is required");
        return;
    }
    struct stat st;
    if (stat(test_cli_path(), &st) != 0) {
        fprintf(stderr, "!!! SKIP test_shard testdata cases: %s not built\n", test_cli_path());
        CHECKF(!ci_mode(), "CI=true: the CLI is required");
        free(index);
        return;
    }
    int n = 0;
    for (char *line = strtok(index, "\n"); line; line = strtok(NULL, "\n")) {
        if (line[0] == '#') continue;
        char model[256], ref[256];
        if (sscanf(line, "%255s %255s", model, ref) != 2) continue;
        int before = test_case_failed;
        check_testdata_model(data, model, ref, n++);
        if (test_case_failed && !before) fprintf(stderr, "  (in %s)\n", model);
    }
    CHECK(n >= 2);
    free(index);

    /* The llama.cpp split and the file it was made from give the same set. */
    char whole[512], split[512];
    snprintf(whole, sizeof whole, "%s/models/sv-llama-q8_0.gguf", data);
    snprintf(split, sizeof split, "%s/models/split/sv-llama-q8_0-00001-of-00004.gguf", data);
    tpath a_p = tp("from-whole"), b_p = tp("from-split");
    const char *a = a_p.s, *b = b_p.s;
    if (split_to(whole, a, 0) || split_to(split, b, 0)) return;
    sl_manifest m;
    if (!load_manifest(a, &m)) return;
    CHECK(files_equal(tp("from-whole/manifest.json").s, tp("from-split/manifest.json").s));
    for (int s = 0; s < m.n_shards; s++)
        CHECK(files_equal(tp("from-whole/%s", m.shards[s].file).s, tp("from-split/%s", m.shards[s].file).s));
    sl_manifest_free(&m);
}

/* The CLI: split, verify, info on a shard directory, usage errors. */
static void test_cli(void) {
    struct stat st;
    if (stat(test_cli_path(), &st) != 0) {
        fprintf(stderr, "!!! SKIP test_shard CLI cases: %s not built\n", test_cli_path());
        CHECKF(!ci_mode(), "CI=true: the CLI is required");
        return;
    }
    char *bin = (char *)test_cli_path();
    char model[512], dir[512], out[512], errp[512];
    snprintf(model, sizeof model, "%s", tp("toy.gguf").s);
    snprintf(dir, sizeof dir, "%s", tp("cli").s);
    snprintf(out, sizeof out, "%s", tp("cli.out").s);
    snprintf(errp, sizeof errp, "%s", tp("cli.err").s);
    char *split[] = {bin, "split", model, dir, "--max-shard-size", "16K", NULL};
    CHECK(test_run(split, out, errp) == 0);
    char *verify[] = {bin, "verify", dir, NULL};
    CHECK(test_run(verify, out, errp) == 0);
    char *text = test_read_file(out, NULL);
    CHECK(text && strstr(text, "OK"));
    free(text);
    sl_manifest m;
    if (load_manifest(dir, &m)) {
        CHECK(m.n_shards > 5);
        sl_manifest_free(&m);
    }
    char *info[] = {bin, "info", "-m", dir, NULL};
    CHECK(test_run(info, out, errp) == 0);
    char *bad_size[] = {bin, "split", model, dir, "--max-shard-size", "12X", NULL};
    CHECK(test_run(bad_size, out, errp) == 2);
    char *one_arg[] = {bin, "split", model, NULL};
    CHECK(test_run(one_arg, out, errp) == 2);
    tpath no_dir = tp("no-such-dir");
    char *missing[] = {bin, "verify", no_dir.s, NULL};
    CHECK(test_run(missing, out, errp) == 1);
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/test_shard.XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    RUN(test_layout_whole_layers);
    RUN(test_layer_over_cap);
    RUN(test_tied_and_alignment);
    RUN(test_deterministic_and_resplit);
    RUN(test_verify_catches_damage);
    RUN(test_manifest_errors);
    RUN(test_block_hashes);
    RUN(test_open_forms_and_errors);
    RUN(test_cli);
    RUN(test_testdata);
    /* clean up (one level of directories) */
    DIR *d = opendir(tmpdir);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        tpath p_ = tp("%s", e->d_name);
        const char *p = p_.s;
        struct stat st;
        if (stat(p, &st) == 0 && S_ISDIR(st.st_mode)) rm_dir(p);
        else unlink(p);
    }
    if (d) closedir(d);
    rmdir(tmpdir);
    TEST_SUMMARY();
}
