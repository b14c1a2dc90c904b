/* model.c - building an sl_model from a GGUF: hyperparameters from metadata,
 * weight tensors checked against them. Every missing or inconsistent
 * hyperparameter or tensor is an error that names it. */
#include "model/model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *sl_arch_name(sl_arch a) {
    switch (a) {
    case SL_ARCH_LLAMA: return "llama";
    case SL_ARCH_QWEN2: return "qwen2";
    case SL_ARCH_QWEN3: return "qwen3";
    }
    return "?";
}

/* Reads "<arch>.<suffix>" as an integer in [lo, hi]. Missing: *out = def, or
 * an error when def < 0 (required). */
static int get_int_kv(const sl_gguf *g, const char *arch, const char *suffix, int64_t def,
                      int64_t lo, int64_t hi, int32_t *out, sl_error *err) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    int64_t v;
    int r = sl_gguf_get_i64(g, key, &v, err);
    if (r < 0) return -1;
    if (r == 0) {
        if (def < 0) return sl_err(err, "missing hyperparameter %s", key);
        v = def;
    }
    if (v < lo || v > hi)
        return sl_err(err, "hyperparameter %s = %lld is out of range [%lld, %lld]", key,
                      (long long)v, (long long)lo, (long long)hi);
    *out = (int32_t)v;
    return 0;
}

static int get_float_kv(const sl_gguf *g, const char *arch, const char *suffix, double def,
                        bool required, double lo, double hi, float *out, sl_error *err) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    double v;
    int r = sl_gguf_get_f64(g, key, &v, err);
    if (r < 0) return -1;
    if (r == 0) {
        if (required) return sl_err(err, "missing hyperparameter %s", key);
        v = def;
    }
    if (!(v >= lo && v <= hi))
        return sl_err(err, "hyperparameter %s = %g is out of range [%g, %g]", key, v, lo, hi);
    *out = (float)v;
    return 0;
}

static int load_hparams(const sl_gguf *g, sl_hparams *hp, sl_error *err) {
    sl_gguf_str s;
    int r = sl_gguf_get_str(g, "general.architecture", &s, err);
    if (r < 0) return -1;
    if (r == 0) return sl_err(err, "missing general.architecture");
    char arch[64];
    snprintf(arch, sizeof arch, "%.*s", (int)(s.len < 63 ? s.len : 63), s.ptr);
    if (strlen(arch) != s.len) return sl_err(err, "bad general.architecture");
    if (!strcmp(arch, "llama")) hp->arch = SL_ARCH_LLAMA;
    else if (!strcmp(arch, "qwen2")) hp->arch = SL_ARCH_QWEN2;
    else if (!strcmp(arch, "qwen3")) hp->arch = SL_ARCH_QWEN3;
    else return sl_err(err, "unsupported architecture '%s' (supported: llama, qwen2, qwen3)", arch);

    const int64_t BIG = 1 << 24;
    if (get_int_kv(g, arch, "embedding_length", -1, 1, BIG, &hp->n_embd, err) ||
        get_int_kv(g, arch, "block_count", -1, 1, 4096, &hp->n_layer, err) ||
        get_int_kv(g, arch, "feed_forward_length", -1, 1, BIG, &hp->n_ff, err) ||
        get_int_kv(g, arch, "attention.head_count", -1, 1, 65536, &hp->n_head, err) ||
        get_int_kv(g, arch, "context_length", 2048, 1, 1 << 26, &hp->n_ctx_train, err))
        return -1;
    if (get_int_kv(g, arch, "attention.head_count_kv", hp->n_head, 1, hp->n_head, &hp->n_head_kv, err))
        return -1;
    if (hp->n_head % hp->n_head_kv)
        return sl_err(err, "attention.head_count %d is not a multiple of head_count_kv %d", hp->n_head,
                      hp->n_head_kv);
    int32_t def_hd = hp->n_embd % hp->n_head == 0 ? hp->n_embd / hp->n_head : -1;
    if (get_int_kv(g, arch, "attention.key_length", def_hd, 2, 65536, &hp->head_dim, err)) return -1;
    int32_t vlen;
    if (get_int_kv(g, arch, "attention.value_length", hp->head_dim, 1, 65536, &vlen, err)) return -1;
    if (vlen != hp->head_dim)
        return sl_err(err, "attention.value_length %d differs from key_length %d (unsupported)", vlen,
                      hp->head_dim);
    if (get_int_kv(g, arch, "rope.dimension_count", hp->head_dim, 2, hp->head_dim, &hp->n_rot, err))
        return -1;
    if (hp->n_rot % 2) return sl_err(err, "rope.dimension_count %d is odd", hp->n_rot);
    if (get_float_kv(g, arch, "attention.layer_norm_rms_epsilon", 1e-5, hp->arch == SL_ARCH_LLAMA ? false : true,
                     0, 1, &hp->rms_eps, err) ||
        get_float_kv(g, arch, "rope.freq_base", 10000.0, false, 1e-3, 1e12, &hp->rope_base, err))
        return -1;

    hp->rope_freq_scale = 1.0f;
    char key[128];
    snprintf(key, sizeof key, "%s.rope.scaling.type", arch);
    r = sl_gguf_get_str(g, key, &s, err);
    if (r < 0) return -1;
    bool scaled = r == 1 && !(s.len == 4 && !memcmp(s.ptr, "none", 4));
    if (scaled && !(s.len == 6 && !memcmp(s.ptr, "linear", 6)) && !(s.len == 6 && !memcmp(s.ptr, "llama3", 6)))
        return sl_err(err, "unsupported rope scaling type '%.*s' (supported: none, linear, llama3)",
                      (int)(s.len > 32 ? 32 : s.len), s.ptr);
    float factor = 1.0f;
    if (get_float_kv(g, arch, "rope.scaling.factor", 1.0, false, 0, 1e6, &factor, err)) return -1;
    if (factor == 0) factor = 1.0f; /* llama.cpp treats 0 as "unset" */
    if (scaled && s.len == 6 && !memcmp(s.ptr, "linear", 6)) hp->rope_freq_scale = 1.0f / factor;

    hp->rope_kind = hp->arch == SL_ARCH_LLAMA ? SL_ROPE_NORM : SL_ROPE_NEOX;
    return 0;
}

/* Checks tensor shape [rows][cols] (GGUF ne = {cols, rows}) and fills w. */
static int bind_weight(sl_model *m, sl_weight *w, const char *fmt, int layer, int64_t cols, int64_t rows,
                       bool required, sl_error *err) {
    char name[96];
    snprintf(name, sizeof name, fmt, layer);
    const sl_gguf_tensor *t = sl_gguf_find_tensor(m->gguf, name);
    if (!t) {
        if (required) return sl_err(err, "missing tensor '%s'", name);
        memset(w, 0, sizeof *w);
        return 0;
    }
    bool is_vec = rows == 1;
    uint32_t want_dims = is_vec ? 1 : 2;
    if (t->n_dims > want_dims) {
        for (uint32_t d = want_dims; d < t->n_dims; d++)
            if (t->ne[d] != 1) goto bad_shape;
    }
    if (t->ne[0] != cols || (!is_vec && t->ne[1] != rows) || (is_vec && t->n_dims > 1 && t->ne[1] != 1))
        goto bad_shape;
    const sl_type_info *ti = sl_type_get(t->type);
    if (!ti) return sl_err(err, "tensor '%s' has unsupported type %s (%d)", name,
                           sl_type_name(t->type) ? sl_type_name(t->type) : "unknown", t->type);
    if (cols % ti->block_size)
        return sl_err(err, "tensor '%s': row length %lld is not a multiple of the %s block size %d", name,
                      (long long)cols, ti->name, ti->block_size);
    if (!t->data) m->header_only = true; /* weights come later (GPU upload) */
    w->data = t->data;
    w->type = (sl_type)t->type;
    w->cols = cols;
    w->rows = rows;
    w->row_bytes = sl_row_size(w->type, cols);
    return 0;
bad_shape:
    return sl_err(err, "tensor '%s' has shape [%lld, %lld, %lld, %lld], expected [%lld, %lld]", name,
                  (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2], (long long)t->ne[3],
                  (long long)cols, (long long)rows);
}

/* Small vectors (norms, biases) are used as f32: convert other types once. */
static int vector_to_f32(sl_weight *w, float **owned, sl_error *err) {
    if (!w->data || w->type == SL_TYPE_F32) return 0;
    float *f = malloc((size_t)w->cols * sizeof(float));
    if (!f) return sl_err(err, "out of memory");
    sl_dequantize_row(w->type, w->data, f, w->cols);
    *owned = f;
    w->data = f;
    w->type = SL_TYPE_F32;
    w->row_bytes = (size_t)w->cols * sizeof(float);
    return 0;
}

/* Per-pair angular speeds, as ggml's rope computes them: base^(-2i/n_rot),
 * divided by rope_freqs.weight factors when present (Llama 3.1+ scaling),
 * times the linear scaling factor. A header-only model gets the factors
 * later through sl_model_set_rope_freqs. */
static int build_rope(sl_model *m, sl_error *err) {
    const sl_hparams *hp = &m->hp;
    int half = hp->n_rot / 2;
    m->rope_inv_freq = malloc((size_t)half * sizeof(float));
    if (!m->rope_inv_freq) return sl_err(err, "out of memory");
    sl_weight ff;
    if (bind_weight(m, &ff, "rope_freqs.weight", 0, half, 1, false, err)) return -1;
    float *factors = NULL;
    if (ff.data) {
        factors = malloc((size_t)half * sizeof(float));
        if (!factors) return sl_err(err, "out of memory");
        sl_dequantize_row(ff.type, ff.data, factors, half);
    }
    m->rope_freqs_pending = ff.rows == 1 && ff.cols == half && !ff.data;
    if (factors) {
        int rc = sl_model_set_rope_freqs(m, factors, half, err);
        free(factors);
        return rc;
    }
    for (int i = 0; i < half; i++)
        m->rope_inv_freq[i] = (float)(pow((double)hp->rope_base, -2.0 * i / hp->n_rot) * hp->rope_freq_scale);
    return 0;
}

int sl_model_set_rope_freqs(sl_model *m, const float *factors, int64_t n, sl_error *err) {
    const sl_hparams *hp = &m->hp;
    if (n != hp->n_rot / 2) return sl_err(err, "rope_freqs.weight has %lld factors, expected %d", (long long)n, hp->n_rot / 2);
    for (int64_t i = 0; i < n; i++)
        if (!(factors[i] > 0)) return sl_err(err, "rope_freqs.weight[%lld] = %g is not positive", (long long)i, factors[i]);
    for (int64_t i = 0; i < n; i++)
        m->rope_inv_freq[i] = (float)(pow((double)hp->rope_base, -2.0 * (double)i / hp->n_rot) / factors[i] *
                                      hp->rope_freq_scale);
    m->rope_freqs_pending = false;
    return 0;
}

sl_model *sl_model_from_gguf(sl_gguf *g, const char *name_hint, sl_error *err) {
    sl_model *m = calloc(1, sizeof *m);
    if (!m) {
        sl_gguf_close(g);
        sl_err(err, "out of memory");
        return NULL;
    }
    m->gguf = g;
    sl_hparams *hp = &m->hp;
    if (load_hparams(g, hp, err)) goto fail;

    m->tok = sl_tokenizer_from_gguf(g, err);
    if (!m->tok) goto fail;

    const sl_gguf_tensor *te = sl_gguf_find_tensor(g, "token_embd.weight");
    if (!te) {
        sl_err(err, "missing tensor 'token_embd.weight'");
        goto fail;
    }
    hp->n_vocab = (int32_t)te->ne[1];
    if (te->ne[1] <= 0 || te->ne[1] > (1 << 24)) {
        sl_err(err, "token_embd.weight has %lld rows", (long long)te->ne[1]);
        goto fail;
    }
    if (sl_tokenizer_n_vocab(m->tok) > hp->n_vocab) {
        sl_err(err, "tokenizer has %d tokens but token_embd.weight only %d rows", sl_tokenizer_n_vocab(m->tok),
               hp->n_vocab);
        goto fail;
    }

    const int64_t E = hp->n_embd, QD = (int64_t)hp->n_head * hp->head_dim,
                  KD = (int64_t)hp->n_head_kv * hp->head_dim, F = hp->n_ff, V = hp->n_vocab;
    if (bind_weight(m, &m->tok_embd, "token_embd.weight", 0, E, V, true, err) ||
        bind_weight(m, &m->output_norm, "output_norm.weight", 0, E, 1, true, err) ||
        bind_weight(m, &m->output, "output.weight", 0, E, V, false, err))
        goto fail;
    if (!m->output.data) m->output = m->tok_embd; /* tied embeddings */

    m->layers = calloc((size_t)hp->n_layer, sizeof *m->layers);
    if (!m->layers) {
        sl_err(err, "out of memory");
        goto fail;
    }
    for (int l = 0; l < hp->n_layer; l++) {
        sl_layer *L = &m->layers[l];
        bool qwen2 = hp->arch == SL_ARCH_QWEN2, qwen3 = hp->arch == SL_ARCH_QWEN3;
        if (bind_weight(m, &L->attn_norm, "blk.%d.attn_norm.weight", l, E, 1, true, err) ||
            bind_weight(m, &L->wq, "blk.%d.attn_q.weight", l, E, QD, true, err) ||
            bind_weight(m, &L->wk, "blk.%d.attn_k.weight", l, E, KD, true, err) ||
            bind_weight(m, &L->wv, "blk.%d.attn_v.weight", l, E, KD, true, err) ||
            bind_weight(m, &L->wo, "blk.%d.attn_output.weight", l, QD, E, true, err) ||
            bind_weight(m, &L->bq, "blk.%d.attn_q.bias", l, QD, 1, qwen2, err) ||
            bind_weight(m, &L->bk, "blk.%d.attn_k.bias", l, KD, 1, qwen2, err) ||
            bind_weight(m, &L->bv, "blk.%d.attn_v.bias", l, KD, 1, qwen2, err) ||
            bind_weight(m, &L->q_norm, "blk.%d.attn_q_norm.weight", l, hp->head_dim, 1, qwen3, err) ||
            bind_weight(m, &L->k_norm, "blk.%d.attn_k_norm.weight", l, hp->head_dim, 1, qwen3, err) ||
            bind_weight(m, &L->ffn_norm, "blk.%d.ffn_norm.weight", l, E, 1, true, err) ||
            bind_weight(m, &L->w_gate, "blk.%d.ffn_gate.weight", l, E, F, true, err) ||
            bind_weight(m, &L->w_up, "blk.%d.ffn_up.weight", l, E, F, true, err) ||
            bind_weight(m, &L->w_down, "blk.%d.ffn_down.weight", l, F, E, true, err))
            goto fail;
    }
    if (build_rope(m, err)) goto fail;

    /* Norms and biases as f32 (they are f32 in every file we know; convert otherwise). */
    int n_vec = 0;
    for (int l = 0; l <= hp->n_layer; l++) {
        sl_weight *vecs[8];
        int nv = 0;
        if (l == hp->n_layer) {
            vecs[nv++] = &m->output_norm;
        } else {
            sl_layer *L = &m->layers[l];
            sl_weight *all[] = {&L->attn_norm, &L->ffn_norm, &L->bq, &L->bk, &L->bv, &L->q_norm, &L->k_norm};
            for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) vecs[nv++] = all[i];
        }
        for (int i = 0; i < nv; i++) {
            if (!vecs[i]->data || vecs[i]->type == SL_TYPE_F32) continue;
            float *owned = NULL;
            if (vector_to_f32(vecs[i], &owned, err)) goto fail;
            float **grow = realloc(m->owned_f32, (size_t)(n_vec + 1) * sizeof *grow);
            if (!grow) {
                free(owned);
                sl_err(err, "out of memory");
                goto fail;
            }
            m->owned_f32 = grow;
            m->owned_f32[n_vec++] = owned;
            m->n_owned_f32 = n_vec;
        }
    }

    for (int64_t i = 0; i < sl_gguf_n_tensors(g); i++) {
        const sl_gguf_tensor *t = sl_gguf_tensor_at(g, i);
        m->n_params += (uint64_t)(t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3]);
        m->weight_bytes += t->nbytes;
    }

    sl_gguf_str s;
    int r = sl_gguf_get_str(g, "general.name", &s, NULL);
    m->name = r == 1 ? sl_strndup(s.ptr, s.len) : sl_strndup(name_hint ? name_hint : "model",
                                                              strlen(name_hint ? name_hint : "model"));
    r = sl_gguf_get_str(g, "tokenizer.chat_template", &s, NULL);
    if (r == 1) m->chat_template = sl_strndup(s.ptr, s.len);
    if (!m->name) {
        sl_err(err, "out of memory");
        goto fail;
    }
    return m;
fail:
    sl_model_free(m);
    return NULL;
}

sl_model *sl_model_load(const char *path, sl_error *err) {
    sl_gguf *g = sl_gguf_open_file(path, err);
    if (!g) return NULL;
    const char *base = strrchr(path, '/');
    return sl_model_from_gguf(g, base ? base + 1 : path, err);
}

void sl_model_free(sl_model *m) {
    if (!m) return;
    for (int i = 0; i < m->n_owned_f32; i++) free(m->owned_f32[i]);
    free(m->owned_f32);
    free(m->layers);
    free(m->rope_inv_freq);
    free(m->name);
    free(m->chat_template);
    sl_tokenizer_free(m->tok);
    sl_gguf_close(m->gguf);
    free(m);
}

const char *sl_model_quant_name(const sl_model *m) {
    /* Type holding the most weight bytes among the layer matrices. */
    uint64_t bytes[SL_TYPE_COUNT] = {0};
    for (int l = 0; l < m->hp.n_layer; l++) {
        const sl_layer *L = &m->layers[l];
        const sl_weight *ws[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
        for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++)
            bytes[ws[i]->type] += ws[i]->row_bytes * (uint64_t)ws[i]->rows;
    }
    int best = 0;
    for (int t = 1; t < SL_TYPE_COUNT; t++)
        if (bytes[t] > bytes[best]) best = t;
    const char *n = sl_type_name(best);
    return n ? n : "?";
}
