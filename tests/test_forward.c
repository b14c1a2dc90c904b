/* test_forward.c - the CPU forward pass against an independent reference.
 *
 * Builds tiny random-weight models (F32) in memory with the GGUF writer, one
 * per architecture variant (llama with GQA, tied output, linear and llama3
 * rope scaling; qwen2 with QKV bias; qwen3 with Q/K norms and a head size that
 * is not n_embd / n_head), evaluates them with sl_cpu_eval and compares with a
 * plain double-precision transformer written here, token by token. Also
 * checks that batching, thread count and cache truncation don't change the
 * results, and that bad token ids and context overflow are errors. */
#include "cpu/forward.h"
#include "test.h"

#include <math.h>

typedef struct spec {
    const char *name;
    const char *arch;
    int embd, layers, heads, kv_heads, head_dim, ff, vocab;
    bool tied, bias, qk_norm, rope_freqs;
    float rope_base, linear_scale;
} spec;

static uint64_t rng_state;
static float frand(void) { /* uniform in [-1, 1) */
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((rng_state >> 40) / (double)(1ull << 24) * 2.0 - 1.0);
}

static float *rand_vec(size_t n, float scale, float offset) {
    float *v = malloc(n * sizeof *v);
    for (size_t i = 0; i < n; i++) v[i] = offset + scale * frand();
    return v;
}

/* Keeps tensor buffers alive until the file is written. */
static float *bufs[256];
static int n_bufs;

static void add(sl_gguf_writer *w, const char *name, int64_t cols, int64_t rows, float scale, float offset) {
    int64_t ne[2] = {cols, rows};
    float *v = rand_vec((size_t)(cols * rows), scale, offset);
    bufs[n_bufs++] = v;
    sl_error err;
    int rc = sl_gguf_add_tensor(w, name, SL_TYPE_F32, rows > 1 ? 2 : 1, ne, v, &err);
    CHECKF(rc == 0, "%s", err.msg);
}

/* A byte-fallback SentencePiece vocabulary: <unk> <s> </s>, 256 byte tokens, letters. */
static void add_vocab(sl_gguf_writer *w, int vocab) {
    char **toks = malloc((size_t)vocab * sizeof *toks);
    float *scores = malloc((size_t)vocab * sizeof *scores);
    int32_t *types = malloc((size_t)vocab * sizeof *types);
    for (int i = 0; i < vocab; i++) {
        toks[i] = malloc(16);
        scores[i] = -(float)i;
        types[i] = SL_TOKTYPE_NORMAL;
        if (i < 3) {
            strcpy(toks[i], i == 0 ? "<unk>" : i == 1 ? "<s>" : "</s>");
            types[i] = i == 0 ? SL_TOKTYPE_UNKNOWN : SL_TOKTYPE_CONTROL;
        } else if (i < 259) {
            snprintf(toks[i], 16, "<0x%02X>", i - 3);
            types[i] = SL_TOKTYPE_BYTE;
        } else {
            snprintf(toks[i], 16, "\xe2\x96\x81%c%d", 'a' + i % 26, i);
        }
    }
    sl_gguf_set_str(w, "tokenizer.ggml.model", "llama");
    sl_gguf_set_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)toks, (uint64_t)vocab);
    sl_gguf_set_arr(w, "tokenizer.ggml.scores", SL_GGUF_FLOAT32, scores, (uint64_t)vocab);
    sl_gguf_set_arr(w, "tokenizer.ggml.token_type", SL_GGUF_INT32, types, (uint64_t)vocab);
    sl_gguf_set_u32(w, "tokenizer.ggml.bos_token_id", 1);
    sl_gguf_set_u32(w, "tokenizer.ggml.eos_token_id", 2);
    for (int i = 0; i < vocab; i++) free(toks[i]);
    free(toks);
    free(scores);
    free(types);
}

static sl_model *build_model(const spec *s, void **file, bool expect_ok) {
    rng_state = 42;
    n_bufs = 0;
    sl_gguf_writer *w = sl_gguf_writer_new();
    char key[128];
    sl_gguf_set_str(w, "general.architecture", s->arch);
    sl_gguf_set_str(w, "general.name", s->name);
#define KV_U32(suffix, v) (snprintf(key, sizeof key, "%s." suffix, s->arch), sl_gguf_set_u32(w, key, (uint32_t)(v)))
    KV_U32("context_length", 256);
    KV_U32("embedding_length", s->embd);
    KV_U32("block_count", s->layers);
    KV_U32("feed_forward_length", s->ff);
    KV_U32("attention.head_count", s->heads);
    KV_U32("attention.head_count_kv", s->kv_heads);
    if (s->head_dim * s->heads != s->embd) KV_U32("attention.key_length", s->head_dim);
    if (s->head_dim * s->heads != s->embd) KV_U32("attention.value_length", s->head_dim);
#undef KV_U32
    snprintf(key, sizeof key, "%s.attention.layer_norm_rms_epsilon", s->arch);
    sl_gguf_set_f32(w, key, 1e-5f);
    snprintf(key, sizeof key, "%s.rope.freq_base", s->arch);
    sl_gguf_set_f32(w, key, s->rope_base);
    if (s->linear_scale > 0) {
        snprintf(key, sizeof key, "%s.rope.scaling.type", s->arch);
        sl_gguf_set_str(w, key, "linear");
        snprintf(key, sizeof key, "%s.rope.scaling.factor", s->arch);
        sl_gguf_set_f32(w, key, s->linear_scale);
    }
    add_vocab(w, s->vocab);

    const int E = s->embd, QD = s->heads * s->head_dim, KD = s->kv_heads * s->head_dim;
    add(w, "token_embd.weight", E, s->vocab, 1.0f, 0);
    add(w, "output_norm.weight", E, 1, 0.2f, 1.0f);
    if (!s->tied) add(w, "output.weight", E, s->vocab, 0.3f, 0);
    if (s->rope_freqs) add(w, "rope_freqs.weight", s->head_dim / 2, 1, 0.5f, 2.0f);
    for (int l = 0; l < s->layers; l++) {
        char n[64];
#define T(fmt, cols, rows, scale, off) (snprintf(n, sizeof n, "blk.%d." fmt, l), add(w, n, cols, rows, scale, off))
        T("attn_norm.weight", E, 1, 0.2f, 1.0f);
        T("attn_q.weight", E, QD, 0.3f, 0);
        T("attn_k.weight", E, KD, 0.3f, 0);
        T("attn_v.weight", E, KD, 0.3f, 0);
        T("attn_output.weight", QD, E, 0.3f, 0);
        if (s->bias) {
            T("attn_q.bias", QD, 1, 0.5f, 0);
            T("attn_k.bias", KD, 1, 0.5f, 0);
            T("attn_v.bias", KD, 1, 0.5f, 0);
        }
        if (s->qk_norm) {
            T("attn_q_norm.weight", s->head_dim, 1, 0.2f, 1.0f);
            T("attn_k_norm.weight", s->head_dim, 1, 0.2f, 1.0f);
        }
        T("ffn_norm.weight", E, 1, 0.2f, 1.0f);
        T("ffn_gate.weight", E, s->ff, 0.3f, 0);
        T("ffn_up.weight", E, s->ff, 0.3f, 0);
        T("ffn_down.weight", s->ff, E, 0.3f, 0);
#undef T
    }
    size_t size = 0;
    sl_error err;
    int rc = sl_gguf_write_memory(w, file, &size, NULL, NULL, &err);
    CHECKF(rc == 0, "write: %s", err.msg);
    sl_gguf_writer_free(w);
    for (int i = 0; i < n_bufs; i++) free(bufs[i]);
    if (rc) return NULL;
    sl_gguf *g = sl_gguf_open_memory(*file, size, 0, &err);
    CHECKF(g != NULL, "read back: %s", err.msg);
    if (!g) return NULL;
    sl_model *m = sl_model_from_gguf(g, s->name, &err);
    if (expect_ok) CHECKF(m != NULL, "model: %s", err.msg);
    return m;
}

/* ---- reference: plain double-precision transformer, one token at a time ---- */

static const float *tensor(const sl_model *m, const char *fmt, int l) {
    char n[64];
    snprintf(n, sizeof n, fmt, l);
    const sl_gguf_tensor *t = sl_gguf_find_tensor(m->gguf, n);
    return t ? t->data : NULL;
}

static void ref_rmsnorm(double *o, const double *x, const float *w, int n) {
    double ss = 0;
    for (int i = 0; i < n; i++) ss += x[i] * x[i];
    double s = 1.0 / sqrt(ss / n + 1e-5);
    for (int i = 0; i < n; i++) o[i] = x[i] * s * w[i];
}

static void ref_matvec(double *y, const float *W, const double *x, int rows, int cols) {
    for (int r = 0; r < rows; r++) {
        double s = 0;
        for (int c = 0; c < cols; c++) s += (double)W[(size_t)r * cols + c] * x[c];
        y[r] = s;
    }
}

static void ref_rope(double *v, int heads, int hd, int pos, bool neox, const spec *s, const float *ff) {
    for (int h = 0; h < heads; h++)
        for (int i = 0; i < hd / 2; i++) {
            double freq = pow(s->rope_base, -2.0 * i / hd);
            if (ff) freq /= ff[i];
            if (s->linear_scale > 0) freq /= s->linear_scale;
            double th = pos * freq, c = cos(th), sn = sin(th);
            int a = neox ? i : 2 * i, b = neox ? i + hd / 2 : 2 * i + 1;
            double x0 = v[h * hd + a], x1 = v[h * hd + b];
            v[h * hd + a] = x0 * c - x1 * sn;
            v[h * hd + b] = x0 * sn + x1 * c;
        }
}

/* logits[n][vocab] for tokens[0..n) */
static void reference(const sl_model *m, const spec *s, const int32_t *tokens, int n, double *logits) {
    const int E = s->embd, hd = s->head_dim, QD = s->heads * hd, KD = s->kv_heads * hd;
    bool neox = strcmp(s->arch, "llama") != 0;
    double *kc = calloc((size_t)s->layers * n * KD, sizeof(double));
    double *vc = calloc((size_t)s->layers * n * KD, sizeof(double));
    double *x = malloc(E * sizeof(double)), *xb = malloc(E * sizeof(double)), *tmp = malloc(E * sizeof(double));
    double *q = malloc(QD * sizeof(double)), *att = malloc(QD * sizeof(double)), *sc = malloc(n * sizeof(double));
    double *g = malloc(s->ff * sizeof(double)), *u = malloc(s->ff * sizeof(double));
    const float *ff = s->rope_freqs ? tensor(m, "rope_freqs.weight", 0) : NULL;
    for (int t = 0; t < n; t++) {
        const float *emb = tensor(m, "token_embd.weight", 0) + (size_t)tokens[t] * E;
        for (int i = 0; i < E; i++) x[i] = emb[i];
        for (int l = 0; l < s->layers; l++) {
            double *k = kc + ((size_t)l * n + t) * KD, *v = vc + ((size_t)l * n + t) * KD;
            ref_rmsnorm(xb, x, tensor(m, "blk.%d.attn_norm.weight", l), E);
            ref_matvec(q, tensor(m, "blk.%d.attn_q.weight", l), xb, QD, E);
            ref_matvec(k, tensor(m, "blk.%d.attn_k.weight", l), xb, KD, E);
            ref_matvec(v, tensor(m, "blk.%d.attn_v.weight", l), xb, KD, E);
            if (s->bias) {
                const float *bq = tensor(m, "blk.%d.attn_q.bias", l), *bk = tensor(m, "blk.%d.attn_k.bias", l),
                            *bv = tensor(m, "blk.%d.attn_v.bias", l);
                for (int i = 0; i < QD; i++) q[i] += bq[i];
                for (int i = 0; i < KD; i++) k[i] += bk[i], v[i] += bv[i];
            }
            if (s->qk_norm) {
                for (int h = 0; h < s->heads; h++)
                    ref_rmsnorm(q + h * hd, q + h * hd, tensor(m, "blk.%d.attn_q_norm.weight", l), hd);
                for (int h = 0; h < s->kv_heads; h++)
                    ref_rmsnorm(k + h * hd, k + h * hd, tensor(m, "blk.%d.attn_k_norm.weight", l), hd);
            }
            ref_rope(q, s->heads, hd, t, neox, s, ff);
            ref_rope(k, s->kv_heads, hd, t, neox, s, ff);
            for (int h = 0; h < s->heads; h++) {
                int kvh = h / (s->heads / s->kv_heads);
                double mx = -1e300, sum = 0;
                for (int j = 0; j <= t; j++) {
                    const double *kj = kc + ((size_t)l * n + j) * KD + kvh * hd;
                    double d = 0;
                    for (int i = 0; i < hd; i++) d += q[h * hd + i] * kj[i];
                    sc[j] = d / sqrt(hd);
                    if (sc[j] > mx) mx = sc[j];
                }
                for (int j = 0; j <= t; j++) sum += (sc[j] = exp(sc[j] - mx));
                for (int i = 0; i < hd; i++) {
                    double a = 0;
                    for (int j = 0; j <= t; j++) a += sc[j] / sum * vc[((size_t)l * n + j) * KD + kvh * hd + i];
                    att[h * hd + i] = a;
                }
            }
            ref_matvec(tmp, tensor(m, "blk.%d.attn_output.weight", l), att, E, QD);
            for (int i = 0; i < E; i++) x[i] += tmp[i];
            ref_rmsnorm(xb, x, tensor(m, "blk.%d.ffn_norm.weight", l), E);
            ref_matvec(g, tensor(m, "blk.%d.ffn_gate.weight", l), xb, s->ff, E);
            ref_matvec(u, tensor(m, "blk.%d.ffn_up.weight", l), xb, s->ff, E);
            for (int i = 0; i < s->ff; i++) g[i] = g[i] / (1 + exp(-g[i])) * u[i];
            ref_matvec(tmp, tensor(m, "blk.%d.ffn_down.weight", l), g, E, s->ff);
            for (int i = 0; i < E; i++) x[i] += tmp[i];
        }
        ref_rmsnorm(xb, x, tensor(m, "output_norm.weight", 0), E);
        const float *out = s->tied ? tensor(m, "token_embd.weight", 0) : tensor(m, "output.weight", 0);
        ref_matvec(logits + (size_t)t * s->vocab, out, xb, s->vocab, E);
    }
    free(kc), free(vc), free(x), free(xb), free(tmp), free(q), free(att), free(sc), free(g), free(u);
}

static double nrmse(const float *a, const double *b, size_t n) {
    double se = 0, sr = 0;
    for (size_t i = 0; i < n; i++) se += (a[i] - b[i]) * (a[i] - b[i]), sr += b[i] * b[i];
    return sqrt(se / (sr + 1e-30));
}

static double max_abs_diff(const float *a, const float *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs((double)a[i] - b[i]));
    return m;
}

#define N_TOK 40

static void check_spec(const spec *s) {
    void *file = NULL;
    sl_model *m = build_model(s, &file, true);
    if (!m) {
        free(file);
        return;
    }
    int32_t toks[N_TOK];
    for (int i = 0; i < N_TOK; i++) toks[i] = (int32_t)((i * 7919 + 13) % s->vocab);
    const size_t V = (size_t)s->vocab;
    double *ref = malloc(N_TOK * V * sizeof(double));
    reference(m, s, toks, N_TOK, ref);

    sl_error err;
    float *all = malloc(N_TOK * V * sizeof(float)), *step = malloc(N_TOK * V * sizeof(float));
    float *one_thread = malloc(N_TOK * V * sizeof(float));
    /* whole sequence in batches of 16, 2 threads */
    sl_cpu_params p = {.n_ctx = 64, .n_batch = 16, .n_threads = 2};
    sl_cpu_ctx *c = sl_cpu_ctx_new(m, &p, &err);
    CHECKF(c != NULL, "%s", err.msg);
    if (!c) goto out;
    CHECKF(sl_cpu_eval(c, toks, N_TOK, all, true, &err) == 0, "%s", err.msg);
    double e = nrmse(all, ref, N_TOK * V);
    CHECKF(e < 2e-6, "%s: batched logits nrmse %g vs the reference", s->name, e);

    /* token by token after truncating the cache: same logits */
    sl_cpu_truncate(c, 0);
    for (int i = 0; i < N_TOK; i++)
        CHECKF(sl_cpu_eval(c, &toks[i], 1, step + i * V, false, &err) == 0, "%s", err.msg);
    CHECKF(max_abs_diff(all, step, N_TOK * V) < 1e-4, "%s: step-by-step differs from batched by %g", s->name,
           max_abs_diff(all, step, N_TOK * V));

    /* resuming from a truncated cache recomputes the same tail */
    sl_cpu_truncate(c, 25);
    CHECK(sl_cpu_n_past(c) == 25);
    CHECKF(sl_cpu_eval(c, toks + 25, N_TOK - 25, step + 25 * V, true, &err) == 0, "%s", err.msg);
    CHECKF(max_abs_diff(all + 25 * V, step + 25 * V, (N_TOK - 25) * V) < 1e-4, "%s: resume after truncate differs",
           s->name);

    /* errors: bad token id, context overflow */
    int32_t bad = s->vocab;
    CHECK(sl_cpu_eval(c, &bad, 1, NULL, false, &err) != 0 && strstr(err.msg, "out of range"));
    sl_cpu_truncate(c, 0);
    int32_t many[65] = {0};
    CHECK(sl_cpu_eval(c, many, 65, NULL, false, &err) != 0 && strstr(err.msg, "context"));
    sl_cpu_ctx_free(c);

    /* one thread, one batch: bit-identical to two threads */
    sl_cpu_params p1 = {.n_ctx = 64, .n_batch = 64, .n_threads = 1};
    c = sl_cpu_ctx_new(m, &p1, &err);
    CHECK(c && sl_cpu_eval(c, toks, N_TOK, one_thread, true, &err) == 0);
    CHECKF(c && max_abs_diff(all, one_thread, N_TOK * V) < 1e-4, "%s: 1 thread differs", s->name);
    sl_cpu_ctx_free(c);
out:
    free(all), free(step), free(one_thread), free(ref);
    sl_model_free(m);
    free(file);
}

static void check_bad_hparams(void) {
    /* a model whose head count does not divide into kv heads is refused with a message */
    spec s = {"bad", "llama", 32, 1, 4, 3, 8, 64, 300, false, false, false, false, 10000, 0};
    void *file = NULL;
    sl_model *m = build_model(&s, &file, false);
    CHECK(m == NULL);
    sl_model_free(m);
    free(file);
}

/* A header-only GGUF gives a model that describes the weights without data:
 * the CPU refuses it, and rope factors given later match the full load. */
static void check_header_only(void) {
    spec s = {"hdr", "llama", 64, 1, 4, 2, 16, 64, 300, false, false, false, true, 500000, 0};
    void *file = NULL;
    sl_model *full = build_model(&s, &file, true);
    if (!full) {
        free(file);
        return;
    }
    const sl_gguf_tensor *ff = sl_gguf_find_tensor(full->gguf, "rope_freqs.weight");
    size_t header = sl_gguf_data_offset(full->gguf);
    sl_error err;
    sl_gguf *g = sl_gguf_open_memory(file, header, SL_GGUF_HEADER_ONLY, &err);
    CHECKF(g != NULL, "%s", err.msg);
    sl_model *m = g ? sl_model_from_gguf(g, "hdr", &err) : NULL;
    CHECKF(m != NULL, "%s", err.msg);
    if (m && ff) {
        CHECK(m->header_only && m->rope_freqs_pending && m->layers[0].wq.data == NULL);
        CHECK(m->layers[0].wq.type == full->layers[0].wq.type && m->layers[0].wq.rows == full->layers[0].wq.rows);
        sl_cpu_params p = {.n_ctx = 16, .n_threads = 1};
        sl_cpu_ctx *c = sl_cpu_ctx_new(m, &p, &err);
        CHECK(c == NULL && strstr(err.msg, "not loaded"));
        sl_cpu_ctx_free(c);
        float bad = -1;
        CHECK(sl_model_set_rope_freqs(m, &bad, 1, &err) != 0);
        CHECK(sl_model_set_rope_freqs(m, ff->data, ff->ne[0], &err) == 0 && !m->rope_freqs_pending);
        CHECK(memcmp(m->rope_inv_freq, full->rope_inv_freq, (size_t)ff->ne[0] * sizeof(float)) == 0);
    }
    sl_model_free(m);
    sl_model_free(full);
    free(file);
}

int main(void) {
    static const spec specs[] = {
        /* name        arch     embd L  H  KV hd  ff  vocab tied   bias   qknorm freqs base     linear */
        {"llama-gqa", "llama", 64, 2, 4, 2, 16, 96, 300, false, false, false, false, 10000, 0},
        {"llama-mqa-tied", "llama", 48, 2, 6, 1, 8, 80, 320, true, false, false, false, 500000, 0},
        {"llama-linear", "llama", 32, 1, 2, 2, 16, 64, 280, false, false, false, false, 10000, 4},
        {"llama-ropefreqs", "llama", 64, 2, 4, 4, 16, 64, 300, true, false, false, true, 500000, 0},
        {"qwen2-bias", "qwen2", 64, 2, 4, 2, 16, 96, 300, true, true, false, false, 1000000, 0},
        {"qwen3-qknorm", "qwen3", 64, 2, 4, 2, 32, 96, 300, true, false, true, false, 1000000, 0},
    };
    for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++) RUN_CASE(specs[i].name, check_spec(&specs[i]));
    RUN(check_bad_hparams);
    RUN(check_header_only);
    TEST_SUMMARY();
}
