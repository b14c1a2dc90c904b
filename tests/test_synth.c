/* test_synth.c - `streamllm synth`: synthesized models load and run, are
 * byte-identical for a seed whatever the thread count, follow llama.cpp's
 * per-tensor type choices, and quantized variants stay close to the F32 one.
 *
 * Self-contained (tiny shapes), except one case that checks the type rules
 * against the tensor types of llama.cpp-quantized files in the shared test
 * data (skipped loudly when it is absent). */
#include "cpu/forward.h"
#include "model/synth.h"
#include "proc.h"
#include "test.h"

#include <math.h>
#include <sys/stat.h>

static char tmpdir[256];

static void make_path(char *buf, size_t cap, const char *name) { snprintf(buf, cap, "%s/%s", tmpdir, name); }

static sl_synth_params params(const char *shape, const char *type, uint64_t seed) {
    sl_synth_params p = {0};
    p.shape = sl_synth_find_shape(shape);
    p.preset = sl_synth_find_preset(type);
    p.seed = seed;
    return p;
}

/* Synthesizes into memory; NULL on failure (reported). */
static void *synth_memory(const sl_synth_params *p, size_t *size) {
    void *buf = NULL;
    sl_error err = {{0}};
    int rc = sl_synth_write_memory(p, &buf, size, &err);
    CHECKF(rc == 0, "%s", err.msg);
    return rc == 0 ? buf : NULL;
}

/* Loads a model held in memory (the buffer must outlive the model). */
static sl_model *load_memory(const void *buf, size_t size) {
    sl_error err = {{0}};
    sl_gguf *g = sl_gguf_open_memory(buf, size, 0, &err);
    CHECKF(g != NULL, "%s", err.msg);
    if (!g) return NULL;
    sl_model *m = sl_model_from_gguf(g, "synth", &err);
    CHECKF(m != NULL, "%s", err.msg);
    return m;
}

static const int32_t PROMPT[] = {1, 300, 301, 420, 17, 511, 260, 99};
#define N_PROMPT ((int32_t)(sizeof PROMPT / sizeof PROMPT[0]))

/* Logits of every prompt position, [N_PROMPT][n_vocab]; NULL on failure. */
static float *eval_prompt(const sl_model *m) {
    sl_error err = {{0}};
    sl_cpu_params cp = {.n_ctx = 64, .n_batch = 0, .n_threads = 1};
    sl_cpu_ctx *c = sl_cpu_ctx_new(m, &cp, &err);
    CHECKF(c != NULL, "%s", err.msg);
    if (!c) return NULL;
    float *logits = malloc((size_t)N_PROMPT * (size_t)m->hp.n_vocab * sizeof(float));
    int rc = sl_cpu_eval(c, PROMPT, N_PROMPT, logits, true, &err);
    CHECKF(rc == 0, "%s", err.msg);
    sl_cpu_ctx_free(c);
    if (rc) {
        free(logits);
        return NULL;
    }
    return logits;
}

static double nrmse(const float *a, const float *ref, size_t n) {
    double se = 0, sr = 0;
    for (size_t i = 0; i < n; i++) {
        se += ((double)a[i] - ref[i]) * ((double)a[i] - ref[i]);
        sr += (double)ref[i] * ref[i];
    }
    return sqrt(se / (sr > 0 ? sr : 1));
}

static const sl_gguf_tensor *tensor(const sl_model *m, const char *name) {
    return sl_gguf_find_tensor(m->gguf, name);
}

/* ---- cases ---------------------------------------------------------------- */

/* Every shape and preset of the tables can be found by name; the shapes are consistent. */
static void test_tables(void) {
    for (int i = 0; i < sl_synth_n_shapes(); i++) {
        const sl_synth_shape *s = sl_synth_shape_at(i);
        CHECKF(sl_synth_find_shape(s->name) == s, "%s", s->name);
        CHECKF(s->n_head % s->n_head_kv == 0, "%s", s->name);
        CHECKF(s->head_dim % 2 == 0 && s->n_vocab > 259 && s->n_layer > 0, "%s", s->name);
    }
    for (int i = 0; i < sl_synth_n_presets(); i++) {
        const sl_synth_preset *p = sl_synth_preset_at(i);
        CHECKF(sl_synth_find_preset(p->name) == p, "%s", p->name);
        CHECK(sl_type_get(p->base) != NULL);
    }
    CHECK(sl_synth_find_shape("LLAMA-3.2-1B") == sl_synth_find_shape("llama-3.2-1b"));
    CHECK(sl_synth_find_preset("q4_k") == sl_synth_find_preset("Q4_K_M"));
    CHECK(sl_synth_find_shape("llama-9") == NULL && sl_synth_find_preset("Q7_0") == NULL);
}

/* Spot checks of llama.cpp's rules on real shapes, worked out by hand from
 * llama_tensor_get_type (src/llama-quant.cpp). */
static void test_type_rules(void) {
    const sl_synth_preset *q4km = sl_synth_find_preset("Q4_K_M"), *q4_0 = sl_synth_find_preset("Q4_0"),
                          *q8_0 = sl_synth_find_preset("Q8_0"), *f16 = sl_synth_find_preset("F16"),
                          *q3km = sl_synth_find_preset("Q3_K_M"), *q2k = sl_synth_find_preset("Q2_K"),
                          *q4ks = sl_synth_find_preset("Q4_K_S"), *iq4 = sl_synth_find_preset("IQ4_NL");
    /* Llama-3.2-1B: 16 layers, GQA 4, tied, rows of 2048 (and 8192 for ffn_down). */
    CHECK(sl_synth_tensor_type(q4km, SL_SYNTH_TOKEN_EMBD, 0, 16, 4, 2048, true) == SL_TYPE_Q6_K);
    CHECK(sl_synth_tensor_type(q4km, SL_SYNTH_TOKEN_EMBD, 0, 16, 4, 2048, false) == SL_TYPE_Q4_K);
    CHECK(sl_synth_tensor_type(q4km, SL_SYNTH_OUTPUT, 0, 16, 4, 2048, false) == SL_TYPE_Q6_K);
    CHECK(sl_synth_tensor_type(q4km, SL_SYNTH_ATTN_Q, 0, 16, 4, 2048, true) == SL_TYPE_Q4_K);
    /* use_more_bits(i, 16): i < 2, i >= 14, or (i - 2) % 3 == 2 */
    static const int more[16] = {1, 1, 0, 0, 1, 0, 0, 1, 0, 0, 1, 0, 0, 1, 1, 1};
    for (int l = 0; l < 16; l++) {
        sl_type want = more[l] ? SL_TYPE_Q6_K : SL_TYPE_Q4_K;
        CHECKF(sl_synth_tensor_type(q4km, SL_SYNTH_ATTN_V, l, 16, 4, 2048, true) == want, "attn_v %d", l);
        CHECKF(sl_synth_tensor_type(q4km, SL_SYNTH_FFN_DOWN, l, 16, 4, 8192, true) == want, "ffn_down %d", l);
        CHECK(sl_synth_tensor_type(q4km, SL_SYNTH_FFN_UP, l, 16, 4, 2048, true) == SL_TYPE_Q4_K);
    }
    CHECK(sl_synth_tensor_type(q4km, SL_SYNTH_VECTOR, 0, 16, 4, 2048, true) == SL_TYPE_F32);
    CHECK(sl_synth_tensor_type(q4_0, SL_SYNTH_TOKEN_EMBD, 0, 16, 4, 2048, true) == SL_TYPE_Q6_K);
    CHECK(sl_synth_tensor_type(q4_0, SL_SYNTH_ATTN_V, 0, 16, 4, 2048, true) == SL_TYPE_Q4_0);
    CHECK(sl_synth_tensor_type(q8_0, SL_SYNTH_OUTPUT, 0, 16, 4, 2048, false) == SL_TYPE_Q8_0);
    CHECK(sl_synth_tensor_type(f16, SL_SYNTH_OUTPUT, 0, 16, 4, 2048, false) == SL_TYPE_F16);
    CHECK(sl_synth_tensor_type(f16, SL_SYNTH_VECTOR, 0, 16, 4, 2048, false) == SL_TYPE_F32);
    /* Qwen2.5-0.5B: rows of 896 do not fit 256-blocks: Q4_K -> Q5_0, head -> Q8_0. */
    CHECK(sl_synth_tensor_type(q4km, SL_SYNTH_ATTN_Q, 3, 24, 7, 896, true) == SL_TYPE_Q5_0);
    CHECK(sl_synth_tensor_type(q4km, SL_SYNTH_ATTN_V, 0, 24, 7, 896, true) == SL_TYPE_Q8_0); /* Q6_K -> Q8_0 */
    CHECK(sl_synth_tensor_type(q4km, SL_SYNTH_TOKEN_EMBD, 0, 24, 7, 896, true) == SL_TYPE_Q8_0);
    CHECK(sl_synth_tensor_type(q4km, SL_SYNTH_FFN_DOWN, 0, 24, 7, 4864, true) == SL_TYPE_Q6_K);
    CHECK(sl_synth_tensor_type(q4_0, SL_SYNTH_TOKEN_EMBD, 0, 24, 7, 896, true) == SL_TYPE_Q8_0);
    /* Q3_K_M and Q2_K on Llama-2-7B (32 layers, no GQA) */
    CHECK(sl_synth_tensor_type(q3km, SL_SYNTH_ATTN_V, 1, 32, 1, 4096, false) == SL_TYPE_Q5_K);
    CHECK(sl_synth_tensor_type(q3km, SL_SYNTH_ATTN_V, 2, 32, 1, 4096, false) == SL_TYPE_Q4_K);
    CHECK(sl_synth_tensor_type(q3km, SL_SYNTH_FFN_DOWN, 1, 32, 1, 11008, false) == SL_TYPE_Q5_K);
    CHECK(sl_synth_tensor_type(q3km, SL_SYNTH_FFN_DOWN, 2, 32, 1, 11008, false) == SL_TYPE_Q4_K);
    CHECK(sl_synth_tensor_type(q3km, SL_SYNTH_ATTN_OUT, 9, 32, 1, 4096, false) == SL_TYPE_Q4_K);
    CHECK(sl_synth_tensor_type(q3km, SL_SYNTH_ATTN_Q, 9, 32, 1, 4096, false) == SL_TYPE_Q3_K);
    CHECK(sl_synth_tensor_type(q2k, SL_SYNTH_ATTN_V, 9, 32, 1, 4096, false) == SL_TYPE_Q3_K);
    CHECK(sl_synth_tensor_type(q2k, SL_SYNTH_ATTN_V, 9, 32, 4, 4096, false) == SL_TYPE_Q4_K);
    CHECK(sl_synth_tensor_type(q2k, SL_SYNTH_FFN_DOWN, 9, 32, 1, 11008, false) == SL_TYPE_Q3_K);
    CHECK(sl_synth_tensor_type(q2k, SL_SYNTH_TOKEN_EMBD, 0, 32, 1, 4096, false) == SL_TYPE_Q2_K);
    CHECK(sl_synth_tensor_type(q4ks, SL_SYNTH_ATTN_V, 3, 32, 1, 4096, false) == SL_TYPE_Q5_K);
    CHECK(sl_synth_tensor_type(q4ks, SL_SYNTH_ATTN_V, 4, 32, 1, 4096, false) == SL_TYPE_Q4_K);
    CHECK(sl_synth_tensor_type(iq4, SL_SYNTH_ATTN_V, 4, 32, 4, 4096, false) == SL_TYPE_Q5_K);
    CHECK(sl_synth_tensor_type(iq4, SL_SYNTH_FFN_DOWN, 4, 32, 4, 14336, false) == SL_TYPE_IQ4_NL);
    CHECK(sl_synth_tensor_type(iq4, SL_SYNTH_FFN_DOWN, 3, 32, 4, 14336, false) == SL_TYPE_Q5_K);
}

/* A role from a llama.cpp tensor name, and its layer. */
static sl_synth_role role_of(const char *name, int *layer) {
    *layer = 0;
    sscanf(name, "blk.%d.", layer);
    static const struct { const char *suffix; sl_synth_role role; } roles[] = {
        {"token_embd.weight", SL_SYNTH_TOKEN_EMBD}, {"output.weight", SL_SYNTH_OUTPUT},
        {"attn_q.weight", SL_SYNTH_ATTN_Q},         {"attn_k.weight", SL_SYNTH_ATTN_K},
        {"attn_v.weight", SL_SYNTH_ATTN_V},         {"attn_output.weight", SL_SYNTH_ATTN_OUT},
        {"ffn_gate.weight", SL_SYNTH_FFN_GATE},     {"ffn_up.weight", SL_SYNTH_FFN_UP},
        {"ffn_down.weight", SL_SYNTH_FFN_DOWN},
    };
    size_t n = strlen(name);
    for (size_t i = 0; i < sizeof roles / sizeof roles[0]; i++) {
        size_t k = strlen(roles[i].suffix);
        if (n >= k && !strcmp(name + n - k, roles[i].suffix) && (n == k || name[n - k - 1] == '.'))
            return roles[i].role;
    }
    return SL_SYNTH_VECTOR;
}

/* The rules against files quantized by llama.cpp's llama-quantize. */
static void test_rules_match_llama_cpp(void) {
    static const char *const files[] = {
        "sv-llama-q4_0.gguf", "sv-llama-q4_k_m.gguf", "sv-llama-q6_k.gguf", "sv-llama-q8_0.gguf",
        "sv-llama-f16.gguf", "tiny-llama-spm-q4_k_m.gguf", "tiny-llama3-bpe-q4_k_m.gguf",
    };
    char path[512];
    snprintf(path, sizeof path, "%s/models/%s", test_data_dir(), files[0]);
    struct stat st;
    if (stat(path, &st) != 0) {
        fprintf(stderr, "SKIP test_rules_match_llama_cpp: testdata absent (%s)\n", test_data_dir());
        CHECKF(!getenv("CI") || strcmp(getenv("CI"), "true") != 0, "testdata is required when CI=true");
        return;
    }
    for (size_t f = 0; f < sizeof files / sizeof files[0]; f++) {
        snprintf(path, sizeof path, "%s/models/%s", test_data_dir(), files[f]);
        sl_error err = {{0}};
        sl_gguf *g = sl_gguf_open_file(path, &err);
        CHECKF(g != NULL, "%s: %s", files[f], err.msg);
        if (!g) continue;
        uint64_t ftype = 0, n_layer = 0, n_head = 0, n_head_kv = 0;
        CHECK(sl_gguf_get_u64(g, "general.file_type", &ftype, &err) == 1);
        CHECK(sl_gguf_get_u64(g, "llama.block_count", &n_layer, &err) == 1);
        CHECK(sl_gguf_get_u64(g, "llama.attention.head_count", &n_head, &err) == 1);
        if (sl_gguf_get_u64(g, "llama.attention.head_count_kv", &n_head_kv, &err) != 1) n_head_kv = n_head;
        const sl_synth_preset *preset = NULL;
        for (int i = 0; i < sl_synth_n_presets(); i++)
            if (sl_synth_preset_at(i)->ftype == ftype) preset = sl_synth_preset_at(i);
        CHECKF(preset != NULL, "%s: file type %llu", files[f], (unsigned long long)ftype);
        bool tied = sl_gguf_find_tensor(g, "output.weight") == NULL;
        int mismatches = 0;
        for (int64_t i = 0; preset && n_head_kv && i < sl_gguf_n_tensors(g); i++) {
            const sl_gguf_tensor *t = sl_gguf_tensor_at(g, i);
            int layer;
            sl_synth_role role = role_of(t->name, &layer);
            if (t->n_dims < 2) role = SL_SYNTH_VECTOR;
            sl_type want = sl_synth_tensor_type(preset, role, layer, (int)n_layer, (int)(n_head / n_head_kv),
                                                t->ne[0], tied);
            if ((int)want != t->type && mismatches++ < 5)
                fprintf(stderr, "  %s %s: llama.cpp %s, rules %s\n", files[f], t->name, sl_type_name(t->type),
                        sl_type_name(want));
        }
        CHECKF(mismatches == 0, "%s: %d tensors differ", files[f], mismatches);
        sl_gguf_close(g);
    }
}

/* Each preset of a tiny model loads and gives finite logits; its tensors have
 * the types the rules give. */
static void test_tiny_presets_run(void) {
    static const char *const types[] = {"F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K",
                                        "Q3_K_S", "Q3_K_M", "Q3_K_L", "Q4_K_S", "Q4_K_M", "Q5_K_S", "Q5_K_M",
                                        "Q6_K", "IQ4_NL"};
    static const char *const shapes[] = {"tiny", "tiny-qwen2", "tiny-qwen3"};
    for (size_t si = 0; si < 3; si++) {
        for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
            /* every type on the llama shape; a few on the others */
            if (si > 0 && strcmp(types[ti], "F32") && strcmp(types[ti], "Q4_K_M") && strcmp(types[ti], "Q8_0"))
                continue;
            sl_synth_params p = params(shapes[si], types[ti], 7);
            size_t size;
            void *buf = synth_memory(&p, &size);
            if (!buf) continue;
            sl_model *m = load_memory(buf, size);
            if (m) {
                float *logits = eval_prompt(m);
                bool finite = logits != NULL;
                double sum_sq = 0;
                for (size_t i = 0; logits && i < (size_t)N_PROMPT * (size_t)m->hp.n_vocab; i++) {
                    finite = finite && isfinite(logits[i]);
                    sum_sq += (double)logits[i] * logits[i];
                }
                CHECKF(finite && sum_sq > 0, "%s %s: logits not finite or all zero", shapes[si], types[ti]);
                CHECK(m->hp.n_vocab == 512 && m->hp.n_layer == 2);
                /* tensor types as the rules say */
                const sl_synth_shape *s = p.shape;
                for (int64_t i = 0; i < sl_gguf_n_tensors(m->gguf); i++) {
                    const sl_gguf_tensor *t = sl_gguf_tensor_at(m->gguf, i);
                    int layer;
                    sl_synth_role role = role_of(t->name, &layer);
                    if (t->n_dims < 2) role = SL_SYNTH_VECTOR;
                    sl_type want = sl_synth_tensor_type(p.preset, role, layer, 2, s->n_head / s->n_head_kv,
                                                        t->ne[0], s->tied);
                    CHECKF((int)want == t->type, "%s %s %s: %s, want %s", shapes[si], types[ti], t->name,
                           sl_type_name(t->type), sl_type_name(want));
                }
                free(logits);
            }
            sl_model_free(m);
            free(buf);
        }
    }
}

/* Concrete expectations on written files: the Q4_K_M head is Q6_K, norms F32,
 * llama.cpp's metadata, tied models have no output.weight, qwen2 has biases,
 * qwen3 has Q/K norms and key_length. */
static void test_written_layout(void) {
    sl_synth_params p = params("tiny", "Q4_K_M", 1);
    size_t size;
    void *buf = synth_memory(&p, &size);
    sl_model *m = buf ? load_memory(buf, size) : NULL;
    if (m) {
        CHECK(tensor(m, "output.weight") && tensor(m, "output.weight")->type == SL_TYPE_Q6_K);
        CHECK(tensor(m, "token_embd.weight")->type == SL_TYPE_Q4_K);
        /* use_more_bits(l, 2) is true only for l = 1 (l >= 7*2/8) */
        CHECK(tensor(m, "blk.0.attn_v.weight")->type == SL_TYPE_Q4_K);
        CHECK(tensor(m, "blk.1.attn_v.weight")->type == SL_TYPE_Q6_K);
        CHECK(tensor(m, "blk.0.ffn_down.weight")->type == SL_TYPE_Q4_K);
        CHECK(tensor(m, "blk.1.ffn_down.weight")->type == SL_TYPE_Q6_K);
        CHECK(tensor(m, "blk.1.ffn_gate.weight")->type == SL_TYPE_Q4_K);
        CHECK(tensor(m, "blk.0.attn_norm.weight")->type == SL_TYPE_F32);
        CHECK(tensor(m, "output_norm.weight")->type == SL_TYPE_F32);
        uint64_t v = 0;
        sl_error err;
        CHECK(sl_gguf_get_u64(m->gguf, "general.file_type", &v, &err) == 1 && v == 15);
        CHECK(sl_gguf_get_u64(m->gguf, "general.quantization_version", &v, &err) == 1 && v == 2);
        CHECK(sl_gguf_get_u64(m->gguf, "llama.rope.dimension_count", &v, &err) == 1 && v == 64);
        CHECK(sl_gguf_find(m->gguf, "llama.attention.key_length") == NULL);
        CHECK(m->hp.n_embd == 256 && m->hp.n_head == 4 && m->hp.n_head_kv == 2 && m->hp.n_ff == 512);
        CHECK(fabsf(m->hp.rope_base - 500000.0f) < 1 && fabsf(m->hp.rms_eps - 1e-5f) < 1e-9f);
        CHECK(sl_gguf_alignment(m->gguf) == 32);
        /* Llama 3.1 rope factors: 1 for the fastest pair, `factor` for the slowest, monotone between. */
        const sl_gguf_tensor *rf = tensor(m, "rope_freqs.weight");
        CHECK(rf && rf->type == SL_TYPE_F32 && rf->ne[0] == 32);
        if (rf) {
            float f[32];
            memcpy(f, rf->data, sizeof f);
            CHECK(f[0] == 1.0f && f[31] == 8.0f);
            bool blended = false;
            for (int i = 1; i < 32; i++) {
                CHECK(f[i] >= f[i - 1]);
                blended = blended || (f[i] > 1.0f && f[i] < 8.0f);
            }
            CHECK(blended);
        }
    }
    sl_model_free(m);
    free(buf);

    p = params("tiny-qwen3", "Q4_K_M", 1);
    buf = synth_memory(&p, &size);
    m = buf ? load_memory(buf, size) : NULL;
    if (m) {
        CHECK(tensor(m, "output.weight") == NULL);
        CHECK(tensor(m, "token_embd.weight")->type == SL_TYPE_Q6_K); /* tied: the head's type */
        CHECK(tensor(m, "blk.1.attn_k_norm.weight") && tensor(m, "blk.1.attn_q_norm.weight")->ne[0] == 128);
        CHECK(m->hp.head_dim == 128 && tensor(m, "blk.0.attn_q.weight")->ne[1] == 512);
        CHECK(tensor(m, "rope_freqs.weight") == NULL);
        CHECK(m->hp.arch == SL_ARCH_QWEN3);
    }
    sl_model_free(m);
    free(buf);

    p = params("tiny-qwen2", "Q8_0", 1);
    buf = synth_memory(&p, &size);
    m = buf ? load_memory(buf, size) : NULL;
    if (m) {
        CHECK(tensor(m, "blk.0.attn_q.bias") && tensor(m, "blk.0.attn_q.bias")->type == SL_TYPE_F32);
        CHECK(tensor(m, "blk.1.attn_v.bias") && tensor(m, "blk.1.attn_v.bias")->ne[0] == 128);
        CHECK(tensor(m, "output.weight")->type == SL_TYPE_Q8_0);
        CHECK(m->hp.arch == SL_ARCH_QWEN2);
    }
    sl_model_free(m);
    free(buf);
}

/* Same arguments give the same bytes, with 1, 2 or 3 threads, through a file
 * or memory; another seed gives other weights; --layers changes the count. */
static void test_determinism(void) {
    sl_error err = {{0}};
    sl_pool *pool2 = sl_pool_new(2, &err), *pool3 = sl_pool_new(3, &err);
    CHECK(pool2 && pool3);
    sl_synth_params p = params("tiny", "Q4_K_M", 42);
    size_t n1, n2, n3, n4;
    void *a = synth_memory(&p, &n1);
    p.pool = pool2;
    void *b = synth_memory(&p, &n2);
    p.pool = pool3;
    char path[300];
    make_path(path, sizeof path, "det.gguf");
    int rc = sl_synth_write_file(&p, path, &err);
    CHECKF(rc == 0, "%s", err.msg);
    void *c = test_read_file(path, &n3);
    p.seed = 43;
    void *d = synth_memory(&p, &n4);
    CHECK(a && b && c && d);
    if (a && b && c && d) {
        CHECK(n1 == n2 && memcmp(a, b, n1) == 0);
        CHECK(n1 == n3 && memcmp(a, c, n1) == 0);
        CHECK(n1 == n4 && memcmp(a, d, n1) != 0);
        /* only the weights and the seed in general.description differ */
        sl_gguf *ga = sl_gguf_open_memory(a, n1, 0, &err), *gd = sl_gguf_open_memory(d, n4, 0, &err);
        CHECK(ga && gd && sl_gguf_data_offset(ga) == sl_gguf_data_offset(gd));
        if (ga && gd) {
            const sl_gguf_tensor *ta = sl_gguf_find_tensor(ga, "blk.0.ffn_up.weight"),
                                 *td = sl_gguf_find_tensor(gd, "blk.0.ffn_up.weight");
            CHECK(ta && td && ta->nbytes == td->nbytes && memcmp(ta->data, td->data, ta->nbytes) != 0);
        }
        sl_gguf_close(ga);
        sl_gguf_close(gd);
    }
    free(a);
    free(b);
    free(c);
    free(d);
    remove(path);

    /* --layers 1: one block, and its weights are those of the 2-layer model
     * (weights are keyed by tensor name) */
    p = params("tiny", "F32", 5);
    void *full = synth_memory(&p, &n1);
    p.n_layer = 1;
    void *one = synth_memory(&p, &n2);
    if (full && one) {
        sl_model *mf = load_memory(full, n1), *mo = load_memory(one, n2);
        CHECK(mf && mo && mo->hp.n_layer == 1 && mf->hp.n_layer == 2);
        if (mf && mo) {
            const sl_gguf_tensor *tf = tensor(mf, "blk.0.attn_q.weight"), *to = tensor(mo, "blk.0.attn_q.weight");
            CHECK(tf->nbytes == to->nbytes && memcmp(tf->data, to->data, tf->nbytes) == 0);
            CHECK(tensor(mo, "blk.1.attn_q.weight") == NULL);
        }
        sl_model_free(mf);
        sl_model_free(mo);
    }
    free(full);
    free(one);
    sl_pool_free(pool2);
    sl_pool_free(pool3);
}

/* Weight statistics: matrices uniform with std 0.02 and mean 0, norms near 1. */
static void test_weight_statistics(void) {
    sl_synth_params p = params("tiny", "F32", 3);
    size_t size;
    void *buf = synth_memory(&p, &size);
    sl_model *m = buf ? load_memory(buf, size) : NULL;
    if (m) {
        const sl_gguf_tensor *t = tensor(m, "blk.0.ffn_gate.weight");
        size_t n = (size_t)(t->ne[0] * t->ne[1]);
        double sum = 0, sum_sq = 0, max_abs = 0;
        for (size_t i = 0; i < n; i++) {
            float v;
            memcpy(&v, (const char *)t->data + i * 4, 4);
            sum += v;
            sum_sq += (double)v * v;
            if (fabs(v) > max_abs) max_abs = fabs(v);
        }
        double mean = sum / (double)n, std = sqrt(sum_sq / (double)n - mean * mean);
        CHECKF(fabs(mean) < 1e-3 && fabs(std - 0.02) < 5e-4, "mean %g std %g", mean, std);
        CHECKF(max_abs <= 0.02 * sqrt(3.0) + 1e-6, "max %g", max_abs);
        const sl_gguf_tensor *nrm = tensor(m, "blk.1.ffn_norm.weight");
        for (int i = 0; i < 256; i++) {
            float v;
            memcpy(&v, (const char *)nrm->data + i * 4, 4);
            CHECKF(v > 0.95f && v < 1.05f, "norm %g", v);
        }
    }
    sl_model_free(m);
    free(buf);
}

/* The logits of quantized variants of the same seed stay near the F32 ones.
 * Measured nrmse (seed 11, 8 positions, scalar and AVX2 kernels alike to two
 * digits): F16 0.0007, BF16 0.0054, Q8_0 0.013, Q6_K 0.036, Q5_K_M 0.059,
 * Q4_K_M 0.12, IQ4_NL 0.15, Q4_0 0.15, Q3_K_M 0.17, Q2_K 0.36. That is what
 * per-weight rounding predicts: e.g. Q8_0 rounds a uniform weight with rms
 * error ~0.4% of its rms, plus ~0.4% from rounding activations to Q8_0, over
 * ~5 matmuls in the path of a logit: ~1.3%. Bounds are twice the measured
 * values; the errors must also order as the types' bits do. */
static void test_quantized_close_to_f32(void) {
    static const struct { const char *type; double bound; } cases[] = {
        {"F16", 0.002}, {"BF16", 0.012}, {"Q8_0", 0.03}, {"Q6_K", 0.07}, {"Q5_K_M", 0.12},
        {"Q4_K_M", 0.25}, {"Q4_0", 0.3}, {"IQ4_NL", 0.3}, {"Q3_K_M", 0.35}, {"Q2_K", 0.7},
    };
    enum { N_CASES = sizeof cases / sizeof cases[0] };
    double errors[N_CASES] = {0};
    sl_synth_params p = params("tiny", "F32", 11);
    size_t size;
    void *buf = synth_memory(&p, &size);
    sl_model *m = buf ? load_memory(buf, size) : NULL;
    float *ref = m ? eval_prompt(m) : NULL;
    size_t n = m ? (size_t)N_PROMPT * (size_t)m->hp.n_vocab : 0;
    sl_model_free(m);
    free(buf);
    if (!ref) return;
    for (size_t i = 0; i < N_CASES; i++) {
        p = params("tiny", cases[i].type, 11);
        buf = synth_memory(&p, &size);
        m = buf ? load_memory(buf, size) : NULL;
        float *q = m ? eval_prompt(m) : NULL;
        if (q) {
            double e = errors[i] = nrmse(q, ref, n);
            if (getenv("TEST_VERBOSE"))
                fprintf(stderr, "  %-7s nrmse vs F32 %.4f (bound %.3f)\n", cases[i].type, e, cases[i].bound);
            CHECKF(e < cases[i].bound && e > 0, "%s: nrmse %g, bound %g", cases[i].type, e, cases[i].bound);
        }
        free(q);
        sl_model_free(m);
        free(buf);
    }
    /* F16 < BF16 < Q8_0 < Q6_K < Q5_K_M < Q4_K_M < Q4_0, and Q2_K worst */
    for (int i = 1; i <= 6; i++) CHECKF(errors[i - 1] < errors[i], "%s vs %s", cases[i - 1].type, cases[i].type);
    for (int i = 0; i < N_CASES - 1; i++) CHECK(errors[i] < errors[N_CASES - 1]);
    free(ref);
}

/* The synthetic vocabulary is a working SentencePiece tokenizer: text round-trips. */
static void test_synthetic_vocab(void) {
    sl_synth_params p = params("tiny", "Q8_0", 1);
    size_t size;
    void *buf = synth_memory(&p, &size);
    sl_model *m = buf ? load_memory(buf, size) : NULL;
    if (m) {
        const sl_tokenizer *t = m->tok;
        CHECK(sl_tokenizer_kind(t) == SL_TOK_SPM && sl_tokenizer_n_vocab(t) == 512);
        CHECK(sl_tokenizer_bos(t) == 1 && sl_tokenizer_eos(t) == 2 && sl_tokenizer_add_bos(t));
        CHECK(sl_tokenizer_token_type(t, 3 + 0x41) == SL_TOKTYPE_BYTE);
        CHECK(!strcmp(sl_tokenizer_token_text(t, 3 + 0x0A), "<0x0A>"));
        CHECK(sl_tokenizer_find(t, "\xe2\x96\x81" "a", 4) >= 259);
        const char *text = "a cab, Zebra!\n\xc3\xa9t\xc3\xa9 bad";
        int32_t *ids = NULL;
        size_t n_ids = 0;
        sl_error err = {{0}};
        int rc = sl_tokenize(t, text, strlen(text), true, false, &ids, &n_ids, &err);
        CHECKF(rc == 0, "%s", err.msg);
        if (rc == 0) {
            CHECK(n_ids > 2 && ids[0] == 1);
            char *back = sl_detokenize(t, ids + 1, n_ids - 1, false);
            CHECKF(back && !strcmp(back, text), "round trip gave '%s'", back ? back : "(null)");
            free(back);
            /* "cab" is a piece, so it is one token (after "▁") */
            CHECK(n_ids < strlen(text));
        }
        free(ids);
    }
    sl_model_free(m);
    free(buf);
}

/* --vocab: tokenizer keys and size come from another GGUF. */
static void test_copied_vocab(void) {
    /* a source vocabulary: the synthetic one of a tiny model with 300 tokens */
    sl_synth_shape small = *sl_synth_find_shape("tiny");
    small.n_vocab = 300;
    sl_synth_params p = params("tiny", "F32", 1);
    p.shape = &small;
    size_t vsize, size;
    void *vbuf = synth_memory(&p, &vsize);
    sl_error err = {{0}};
    sl_gguf *vocab = vbuf ? sl_gguf_open_memory(vbuf, vsize, 0, &err) : NULL;
    CHECKF(vocab != NULL, "%s", err.msg);
    if (!vocab) {
        free(vbuf);
        return;
    }
    int32_t nv = 0;
    CHECK(sl_synth_vocab_size(vocab, &nv, &err) == 0 && nv == 300);
    p = params("tiny-qwen2", "Q4_0", 1);
    p.vocab = vocab;
    void *buf = synth_memory(&p, &size);
    sl_model *m = buf ? load_memory(buf, size) : NULL;
    if (m) {
        CHECK(m->hp.n_vocab == 300 && sl_tokenizer_n_vocab(m->tok) == 300);
        CHECK(tensor(m, "token_embd.weight")->ne[1] == 300);
        uint64_t v;
        CHECK(sl_gguf_get_u64(m->gguf, "qwen2.vocab_size", &v, &err) == 1 && v == 300);
        /* every tokenizer key is copied unchanged */
        for (int64_t i = 0; i < sl_gguf_n_kv(vocab); i++) {
            const char *key = sl_gguf_key_at(vocab, i);
            if (strncmp(key, "tokenizer.", 10)) continue;
            char a[256], b[256];
            const sl_gguf_value *mine = sl_gguf_find(m->gguf, key);
            CHECKF(mine != NULL, "%s missing", key);
            if (mine)
                CHECKF(!strcmp(sl_gguf_format_value(sl_gguf_value_at(vocab, i), 1000, a, sizeof a),
                               sl_gguf_format_value(mine, 1000, b, sizeof b)),
                       "%s differs", key);
        }
    }
    sl_model_free(m);
    free(buf);

    /* a file without a vocabulary is an error that says so */
    sl_gguf_writer *w = sl_gguf_writer_new();
    sl_gguf_set_str(w, "general.architecture", "llama");
    void *empty = NULL;
    size_t esize = 0;
    CHECK(sl_gguf_write_memory(w, &empty, &esize, NULL, NULL, &err) == 0);
    sl_gguf *novocab = empty ? sl_gguf_open_memory(empty, esize, 0, &err) : NULL;
    CHECK(novocab != NULL);
    if (novocab) {
        p.vocab = novocab;
        void *out = NULL;
        CHECK(sl_synth_write_memory(&p, &out, &size, &err) != 0 && strstr(err.msg, "tokenizer.ggml.tokens"));
        free(out);
    }
    sl_gguf_close(novocab);
    free(empty);
    sl_gguf_writer_free(w);
    sl_gguf_close(vocab);
    free(vbuf);
}

/* The CLI: exit statuses, a file that loads, the one-line errors. */
static void test_cli(void) {
    const char *cli = test_cli_path();
    if (access(cli, X_OK) != 0) {
        CHECKF(0, "CLI %s not built", cli);
        return;
    }
    char out[300], log[300], errlog[300];
    make_path(out, sizeof out, "cli.gguf");
    make_path(log, sizeof log, "cli.out");
    make_path(errlog, sizeof errlog, "cli.err");
    char *ok[] = {(char *)cli, "synth", "--like", "tiny", "--type", "q4_k_m", "-o", out, "--seed", "9", "-t", "2", NULL};
    CHECK(test_run(ok, log, errlog) == 0);
    sl_error err = {{0}};
    sl_model *m = sl_model_load(out, &err);
    CHECKF(m != NULL, "%s", err.msg);
    if (m) CHECK(tensor(m, "output.weight")->type == SL_TYPE_Q6_K);
    sl_model_free(m);
    /* the library with the same arguments gives the same file */
    sl_synth_params p = params("tiny", "Q4_K_M", 9);
    size_t n1 = 0, n2 = 0;
    void *a = synth_memory(&p, &n1);
    void *b = test_read_file(out, &n2);
    CHECK(a && b && n1 == n2 && memcmp(a, b, n1) == 0);
    free(a);
    free(b);
    remove(out);

    char *bad_shape[] = {(char *)cli, "synth", "--like", "llama-9", "--type", "Q4_0", "-o", out, NULL};
    CHECK(test_run(bad_shape, log, errlog) == 2);
    char *msg = test_read_file(errlog, NULL);
    CHECK(msg && strstr(msg, "unknown shape 'llama-9'") && strstr(msg, "llama-3.2-1b"));
    free(msg);
    char *bad_type[] = {(char *)cli, "synth", "--like", "tiny", "--type", "Q7", "-o", out, NULL};
    CHECK(test_run(bad_type, log, errlog) == 2);
    char *missing[] = {(char *)cli, "synth", "--like", "tiny", NULL};
    CHECK(test_run(missing, log, errlog) == 2);
    char *no_vocab[] = {(char *)cli, "synth", "--like", "tiny", "--type", "F32", "-o", out, "--vocab",
                        "/nonexistent/v.gguf", NULL};
    CHECK(test_run(no_vocab, log, errlog) == 1);
    char *bad_dir[] = {(char *)cli, "synth", "--like", "tiny", "--type", "F32", "-o", "/nonexistent/x.gguf", NULL};
    CHECK(test_run(bad_dir, log, errlog) == 1);
    remove(log);
    remove(errlog);
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/test_synth_XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    RUN(test_tables);
    RUN(test_type_rules);
    RUN(test_rules_match_llama_cpp);
    RUN(test_tiny_presets_run);
    RUN(test_written_layout);
    RUN(test_determinism);
    RUN(test_weight_statistics);
    RUN(test_quantized_close_to_f32);
    RUN(test_synthetic_vocab);
    RUN(test_copied_vocab);
    RUN(test_cli);
    rmdir(tmpdir);
    TEST_SUMMARY();
}
