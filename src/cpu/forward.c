/* forward.c - the transformer forward pass on the CPU, for a batch of tokens.
 *
 * Reads top to bottom like llama2.c's run.c: embedding, then per layer
 * RMSNorm -> Q/K/V (+bias, +per-head norm) -> RoPE -> KV cache -> causal
 * attention -> output projection -> residual, RMSNorm -> SwiGLU FFN ->
 * residual; then the final norm and the output head. Matrix products
 * (matmul.h) quantize the activations to the weight's format (as llama.cpp
 * does) and split weight rows over the thread pool; the element-wise steps
 * that follow a product run in its epilogue, on the thread that computed the
 * rows, so a layer takes five pool round trips. Attention splits (token,
 * head) pairs. */
#include "cpu/forward.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "cpu/matmul.h"

/* A layer's matrices, ready for products (packed for the CPU's kernels). */
typedef struct cpu_layer {
    sl_mm_weight wq, wk, wv, wo, w_gate, w_up, w_down;
} cpu_layer;

struct sl_cpu_ctx {
    const sl_model *m;
    sl_pool *pool;
    sl_mm *mm;
    cpu_layer *layers;
    sl_mm_weight output;
    int32_t n_ctx, n_batch, n_past;
    int32_t q_dim, kv_dim;
    float *k_cache;   /* [n_layer][n_ctx][kv_dim] */
    float *v_cache;   /* [n_layer][n_ctx][kv_dim] */
    /* activations for one batch of up to n_batch tokens */
    float *x;         /* [n_batch][n_embd] residual stream */
    float *xb;        /* [n_batch][n_embd] normed input of a block; product outputs */
    float *q;         /* [n_batch][q_dim] */
    float *k, *v;     /* [n_batch][kv_dim] */
    float *att;       /* [n_batch][q_dim] attention output */
    float *hb, *hb2;  /* [n_batch][n_ff] FFN gate / up */
    float *rope_cs;   /* [n_batch][n_rot/2][2] cos, sin of each token's angles */
    float *scores;    /* [n_threads][n_ctx] attention scores */
};

/* ---- element-wise steps, run in the epilogues of products ---------------- */

/* Rotates the heads [h0, h1) of vec by the token's angles (cs: cos, sin pairs). */
static void rope(float *vec, int h0, int h1, int head_dim, int n_rot, sl_rope_kind kind, const float *cs) {
    for (int h = h0; h < h1; h++) {
        float *v = vec + (size_t)h * head_dim;
        for (int i = 0; i < n_rot / 2; i++) {
            int a = kind == SL_ROPE_NORM ? 2 * i : i;
            int b = kind == SL_ROPE_NORM ? 2 * i + 1 : i + n_rot / 2;
            float x0 = v[a], x1 = v[b];
            v[a] = x0 * cs[2 * i] - x1 * cs[2 * i + 1];
            v[b] = x0 * cs[2 * i + 1] + x1 * cs[2 * i];
        }
    }
}

/* The angles of each token of the batch: theta = pos * inv_freq[i]. */
static void rope_angles(sl_cpu_ctx *c, int32_t n, int32_t pos0) {
    const int half = c->m->hp.n_rot / 2;
    for (int32_t t = 0; t < n; t++)
        for (int i = 0; i < half; i++) {
            float theta = (float)(pos0 + t) * c->m->rope_inv_freq[i];
            c->rope_cs[((size_t)t * half + i) * 2] = cosf(theta);
            c->rope_cs[((size_t)t * half + i) * 2 + 1] = sinf(theta);
        }
}

/* Q/K/V rows [r0, r1) (whole heads) of every token: bias, per-head norm, RoPE;
 * K and V then go to the cache. */
typedef struct qkv_epilogue_ctx {
    sl_cpu_ctx *c;
    const sl_layer *L;
    int layer;
    int32_t pos0;
} qkv_epilogue_ctx;

static void qkv_epilogue(void *arg, int job, int32_t n, int64_t r0, int64_t r1) {
    qkv_epilogue_ctx *e = arg;
    sl_cpu_ctx *c = e->c;
    const sl_hparams *hp = &c->m->hp;
    const int hd = hp->head_dim, half = hp->n_rot / 2;
    const sl_weight *bias = job == 0 ? &e->L->bq : job == 1 ? &e->L->bk : &e->L->bv;
    const sl_weight *norm = job == 0 ? &e->L->q_norm : job == 1 ? &e->L->k_norm : NULL;
    const int64_t dim = job == 0 ? c->q_dim : c->kv_dim;
    float *out = job == 0 ? c->q : job == 1 ? c->k : c->v;
    for (int32_t t = 0; t < n; t++) {
        float *y = out + (size_t)t * dim;
        if (bias->data)
            for (int64_t r = r0; r < r1; r++) y[r] += ((const float *)bias->data)[r];
        if (job < 2) {
            if (norm->data)
                for (int64_t h = r0 / hd; h < r1 / hd; h++) sl_rmsnorm(y + h * hd, y + h * hd, norm->data, hd, hp->rms_eps);
            rope(y, (int)(r0 / hd), (int)(r1 / hd), hd, hp->n_rot, hp->rope_kind, c->rope_cs + (size_t)t * half * 2);
        }
        if (job > 0) {
            float *cache = job == 1 ? c->k_cache : c->v_cache;
            float *row = cache + ((size_t)e->layer * c->n_ctx + (size_t)(e->pos0 + t)) * c->kv_dim;
            memcpy(row + r0, y + r0, (size_t)(r1 - r0) * sizeof(float));
        }
    }
}

/* x += y over rows [r0, r1) of every token (the residual connection). */
typedef struct residual_ctx {
    float *x;
    const float *y;
    int64_t dim;
} residual_ctx;

static void residual_epilogue(void *arg, int job, int32_t n, int64_t r0, int64_t r1) {
    (void)job;
    residual_ctx *e = arg;
    for (int32_t t = 0; t < n; t++)
        for (int64_t r = r0; r < r1; r++) e->x[(size_t)t * e->dim + r] += e->y[(size_t)t * e->dim + r];
}

/* hb = silu(hb) * hb2 over rows [r0, r1) of every token (SwiGLU). */
static void swiglu_epilogue(void *arg, int job, int32_t n, int64_t r0, int64_t r1) {
    (void)job;
    sl_cpu_ctx *c = arg;
    const int64_t F = c->m->hp.n_ff;
    for (int32_t t = 0; t < n; t++) {
        float *g = c->hb + (size_t)t * F, *u = c->hb2 + (size_t)t * F;
        for (int64_t r = r0; r < r1; r++) g[r] = g[r] / (1.0f + expf(-g[r])) * u[r];
    }
}

/* ---- attention --------------------------------------------------------- */

typedef struct attn_task {
    sl_cpu_ctx *c;
    int layer;
    int32_t n;        /* tokens in the batch */
    int32_t pos0;     /* position of the first */
    atomic_int next;  /* next (token, head) pair */
} attn_task;

/* y += a * x over n floats (y and x do not overlap), in blocks of 8 that
 * compilers turn into vector code. */
static void axpy(float *restrict y, float a, const float *restrict x, int n) {
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) y[i + j] += a * x[i + j];
    for (; i < n; i++) y[i] += a * x[i];
}

static void attention_task_run(void *arg, int ith, int nth) {
    (void)nth;
    attn_task *t = arg;
    sl_cpu_ctx *c = t->c;
    const sl_hparams *hp = &c->m->hp;
    const int hd = hp->head_dim, group = hp->n_head / hp->n_head_kv;
    const float scale = 1.0f / sqrtf((float)hd);
    float *scores = c->scores + (size_t)ith * c->n_ctx;
    const float *kc = c->k_cache + (size_t)t->layer * c->n_ctx * c->kv_dim;
    const float *vc = c->v_cache + (size_t)t->layer * c->n_ctx * c->kv_dim;
    const int total = t->n * hp->n_head;
    const sl_vec_dot_fn dot_f32 = sl_vec_dot_kernel(SL_TYPE_F32); /* the fastest float dot */
    for (;;) {
        int item = atomic_fetch_add(&t->next, 1);
        if (item >= total) break;
        int i = item / hp->n_head, h = item % hp->n_head;
        int32_t n_keys = t->pos0 + i + 1; /* causal: keys 0..pos */
        const float *q = c->q + (size_t)i * c->q_dim + (size_t)h * hd;
        const size_t kv_off = (size_t)(h / group) * hd;
        float max = -INFINITY;
        for (int32_t s = 0; s < n_keys; s++) {
            scores[s] = dot_f32(hd, q, kc + (size_t)s * c->kv_dim + kv_off) * scale;
            if (scores[s] > max) max = scores[s];
        }
        double sum = 0;
        for (int32_t s = 0; s < n_keys; s++) {
            scores[s] = expf(scores[s] - max);
            sum += scores[s];
        }
        float inv = (float)(1.0 / sum);
        float *out = c->att + (size_t)i * c->q_dim + (size_t)h * hd;
        memset(out, 0, (size_t)hd * sizeof(float));
        for (int32_t s = 0; s < n_keys; s++) {
            axpy(out, scores[s] * inv, vc + (size_t)s * c->kv_dim + kv_off, hd);
        }
    }
}

/* ---- the forward pass -------------------------------------------------- */

/* Evaluates tokens[0..n) (n <= n_batch) at positions n_past.., leaving the
 * residual stream in c->x. */
static int forward_batch(sl_cpu_ctx *c, const int32_t *tokens, int32_t n, sl_error *err) {
    const sl_model *m = c->m;
    const sl_hparams *hp = &m->hp;
    const int64_t E = hp->n_embd;
    const int32_t pos0 = c->n_past;

    for (int32_t i = 0; i < n; i++) {
        const char *row = (const char *)m->tok_embd.data + (size_t)tokens[i] * m->tok_embd.row_bytes;
        sl_dequantize_row(m->tok_embd.type, row, c->x + (size_t)i * E, E);
    }
    rope_angles(c, n, pos0);

    for (int l = 0; l < hp->n_layer; l++) {
        const sl_layer *L = &m->layers[l];
        const cpu_layer *W = &c->layers[l];

        /* attention block: Q, K, V of the normed input (then RoPE, cache) */
        qkv_epilogue_ctx qe = {.c = c, .L = L, .layer = l, .pos0 = pos0};
        sl_mm_call qkv = {.x = c->x, .n = n, .norm = L->attn_norm.data, .norm_eps = hp->rms_eps, .norm_out = c->xb,
                          .job = {{&W->wq, c->q}, {&W->wk, c->k}, {&W->wv, c->v}}, .n_jobs = 3,
                          .row_align = hp->head_dim, .epilogue = qkv_epilogue, .epilogue_ctx = &qe};
        if (sl_mm_run(c->mm, c->pool, &qkv, err)) return -1;

        attn_task at = {.c = c, .layer = l, .n = n, .pos0 = pos0};
        atomic_init(&at.next, 0);
        sl_pool_run(c->pool, attention_task_run, &at);

        residual_ctx res = {.x = c->x, .y = c->xb, .dim = E};
        sl_mm_call out = {.x = c->att, .n = n, .job = {{&W->wo, c->xb}}, .n_jobs = 1,
                          .epilogue = residual_epilogue, .epilogue_ctx = &res};
        if (sl_mm_run(c->mm, c->pool, &out, err)) return -1;

        /* feed-forward block: w_down(silu(w_gate x) * w_up x) */
        sl_mm_call gate_up = {.x = c->x, .n = n, .norm = L->ffn_norm.data, .norm_eps = hp->rms_eps, .norm_out = c->xb,
                              .job = {{&W->w_gate, c->hb}, {&W->w_up, c->hb2}}, .n_jobs = 2, .joint = true,
                              .epilogue = swiglu_epilogue, .epilogue_ctx = c};
        if (sl_mm_run(c->mm, c->pool, &gate_up, err)) return -1;
        sl_mm_call down = {.x = c->hb, .n = n, .job = {{&W->w_down, c->xb}}, .n_jobs = 1,
                           .epilogue = residual_epilogue, .epilogue_ctx = &res};
        if (sl_mm_run(c->mm, c->pool, &down, err)) return -1;
    }
    c->n_past += n;
    return 0;
}

int sl_cpu_eval(sl_cpu_ctx *c, const int32_t *tokens, int32_t n, float *logits, bool all_logits,
                sl_error *err) {
    const sl_model *m = c->m;
    const int32_t V = m->hp.n_vocab;
    const int64_t E = m->hp.n_embd;
    if (n <= 0) return sl_err(err, "nothing to evaluate");
    if ((int64_t)c->n_past + n > c->n_ctx)
        return sl_err(err, "context overflow: %d tokens in the cache + %d new exceed the context of %d "
                           "(use --ctx)", c->n_past, n, c->n_ctx);
    for (int32_t i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= V)
            return sl_err(err, "token id %d at position %d is out of range [0, %d)", tokens[i], i, V);

    for (int32_t done = 0; done < n;) {
        int32_t nb = n - done < c->n_batch ? n - done : c->n_batch;
        if (forward_batch(c, tokens + done, nb, err)) return -1;
        /* Output head of the final norm: every row when all logits are wanted, else only the last token's. */
        if (logits && (all_logits || done + nb == n)) {
            int32_t first = all_logits ? 0 : nb - 1;
            sl_mm_call head = {.x = c->x + (size_t)first * E, .n = nb - first, .norm = m->output_norm.data,
                               .norm_eps = m->hp.rms_eps, .norm_out = c->xb,
                               .job = {{&c->output, all_logits ? logits + (size_t)done * V : logits}}, .n_jobs = 1};
            if (sl_mm_run(c->mm, c->pool, &head, err)) return -1;
        }
        done += nb;
    }
    return 0;
}

/* ---- context ----------------------------------------------------------- */

/* Wraps (and packs) every matrix of the model for products. */
static int init_weights(sl_cpu_ctx *c, sl_error *err) {
    const sl_model *m = c->m;
    c->layers = calloc((size_t)m->hp.n_layer, sizeof *c->layers);
    if (!c->layers) return sl_err(err, "out of memory");
    for (int l = 0; l < m->hp.n_layer; l++) {
        const sl_layer *L = &m->layers[l];
        cpu_layer *W = &c->layers[l];
        if (sl_mm_weight_init(&W->wq, &L->wq, true, c->pool, err) || sl_mm_weight_init(&W->wk, &L->wk, true, c->pool, err) ||
            sl_mm_weight_init(&W->wv, &L->wv, true, c->pool, err) || sl_mm_weight_init(&W->wo, &L->wo, true, c->pool, err) ||
            sl_mm_weight_init(&W->w_gate, &L->w_gate, true, c->pool, err) ||
            sl_mm_weight_init(&W->w_up, &L->w_up, true, c->pool, err) ||
            sl_mm_weight_init(&W->w_down, &L->w_down, true, c->pool, err))
            return -1;
    }
    return sl_mm_weight_init(&c->output, &m->output, true, c->pool, err);
}

sl_cpu_ctx *sl_cpu_ctx_new(const sl_model *m, const sl_cpu_params *p, sl_error *err) {
    const sl_hparams *hp = &m->hp;
    if (m->header_only || m->rope_freqs_pending) {
        sl_err(err, "the model's weights are not loaded (opened header-only)");
        return NULL;
    }
    sl_cpu_ctx *c = calloc(1, sizeof *c);
    if (!c) {
        sl_err(err, "out of memory");
        return NULL;
    }
    c->m = m;
    c->n_ctx = p->n_ctx > 0 ? p->n_ctx : (hp->n_ctx_train < 4096 ? hp->n_ctx_train : 4096);
    c->n_batch = p->n_batch > 0 ? p->n_batch : 512;
    if (c->n_batch > c->n_ctx) c->n_batch = c->n_ctx;
    c->q_dim = hp->n_head * hp->head_dim;
    c->kv_dim = hp->n_head_kv * hp->head_dim;
    c->pool = sl_pool_new(p->n_threads, err);
    if (!c->pool) goto fail;
    c->mm = sl_mm_new();
    if (!c->mm) {
        sl_err(err, "out of memory");
        goto fail;
    }
    if (init_weights(c, err)) goto fail;

    const size_t B = (size_t)c->n_batch, cache = (size_t)hp->n_layer * c->n_ctx * c->kv_dim;
    c->k_cache = calloc(cache, sizeof(float));
    c->v_cache = calloc(cache, sizeof(float));
    c->x = malloc(B * hp->n_embd * sizeof(float));
    c->xb = malloc(B * hp->n_embd * sizeof(float));
    c->q = malloc(B * c->q_dim * sizeof(float));
    c->k = malloc(B * c->kv_dim * sizeof(float));
    c->v = malloc(B * c->kv_dim * sizeof(float));
    c->att = malloc(B * c->q_dim * sizeof(float));
    c->hb = malloc(B * hp->n_ff * sizeof(float));
    c->hb2 = malloc(B * hp->n_ff * sizeof(float));
    c->rope_cs = malloc(B * (size_t)(hp->n_rot / 2 > 0 ? hp->n_rot / 2 : 1) * 2 * sizeof(float));
    c->scores = malloc((size_t)sl_pool_size(c->pool) * c->n_ctx * sizeof(float));
    if (!c->k_cache || !c->v_cache || !c->x || !c->xb || !c->q || !c->k || !c->v || !c->att || !c->hb ||
        !c->hb2 || !c->rope_cs || !c->scores) {
        sl_err(err, "out of memory allocating a context of %d tokens (KV cache %.1f MiB)", c->n_ctx,
               2.0 * cache * sizeof(float) / (1 << 20));
        goto fail;
    }
    return c;
fail:
    sl_cpu_ctx_free(c);
    return NULL;
}

void sl_cpu_ctx_free(sl_cpu_ctx *c) {
    if (!c) return;
    if (c->layers) {
        for (int l = 0; l < c->m->hp.n_layer; l++) {
            cpu_layer *W = &c->layers[l];
            sl_mm_weight_free(&W->wq), sl_mm_weight_free(&W->wk), sl_mm_weight_free(&W->wv);
            sl_mm_weight_free(&W->wo), sl_mm_weight_free(&W->w_gate), sl_mm_weight_free(&W->w_up);
            sl_mm_weight_free(&W->w_down);
        }
        free(c->layers);
    }
    sl_mm_weight_free(&c->output);
    sl_mm_free(c->mm);
    sl_pool_free(c->pool);
    free(c->k_cache);
    free(c->v_cache);
    free(c->x);
    free(c->xb);
    free(c->q);
    free(c->k);
    free(c->v);
    free(c->att);
    free(c->hb);
    free(c->hb2);
    free(c->rope_cs);
    free(c->scores);
    free(c);
}

int32_t sl_cpu_n_ctx(const sl_cpu_ctx *c) { return c->n_ctx; }
int32_t sl_cpu_n_past(const sl_cpu_ctx *c) { return c->n_past; }

void sl_cpu_truncate(sl_cpu_ctx *c, int32_t n_keep) {
    if (n_keep < 0) n_keep = 0;
    if (n_keep < c->n_past) c->n_past = n_keep;
}
