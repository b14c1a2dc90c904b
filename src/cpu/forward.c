/* forward.c - the transformer forward pass on the CPU, for a batch of tokens.
 *
 * Reads top to bottom like llama2.c's run.c: embedding, then per layer
 * RMSNorm -> Q/K/V (+bias, +per-head norm) -> RoPE -> KV cache -> causal
 * attention -> output projection -> residual, RMSNorm -> SwiGLU FFN ->
 * residual; then the final norm and the output head. Matrix products quantize
 * the activations to the weight's vec_dot format (as llama.cpp does) and split
 * weight rows over the thread pool; attention splits (token, head) pairs. */
#include "cpu/forward.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

struct sl_cpu_ctx {
    const sl_model *m;
    sl_pool *pool;
    int32_t n_ctx, n_batch, n_past;
    int32_t q_dim, kv_dim;
    float *k_cache;   /* [n_layer][n_ctx][kv_dim] */
    float *v_cache;   /* [n_layer][n_ctx][kv_dim] */
    /* activations for one batch of up to n_batch tokens */
    float *x;         /* [n_batch][n_embd] residual stream */
    float *xb;        /* [n_batch][n_embd] normed input of a block */
    float *q;         /* [n_batch][q_dim] */
    float *k, *v;     /* [n_batch][kv_dim] */
    float *att;       /* [n_batch][q_dim] attention output */
    float *hb, *hb2;  /* [n_batch][n_ff] FFN gate / up */
    float *scores;    /* [n_threads][n_ctx] attention scores */
    void *act;        /* activations quantized for the dot products */
    size_t act_cap;
};

/* ---- matrix product ---------------------------------------------------- */

/* Rows of W are handed out in chunks. Decoding (a few tokens) is bound by
 * memory: about CHUNKS_PER_THREAD chunks per thread, so each thread streams
 * long contiguous runs of weights (the hardware prefetcher needs them) yet a
 * thread that falls behind can be helped. Prefill is bound by arithmetic:
 * chunks of MIN_CHUNK_ROWS rows, which balance best. */
#define CHUNKS_PER_THREAD 8
#define MIN_CHUNK_ROWS 16
#define DECODE_MAX_TOKENS 4
/* Tokens processed against one chunk of rows while it is hot in cache. */
#define TOKENS_PER_TILE 64

typedef struct matmul_task {
    const sl_weight *w;
    const float *x;        /* [n][cols] */
    int32_t n;
    float *y;              /* [n][rows] */
    const void *act;       /* x in the weight's vec_dot format */
    size_t act_row_bytes;
    sl_type act_type;
    int64_t chunk_rows;
    atomic_int next;       /* next chunk to claim */
} matmul_task;

static void quantize_task(void *arg, int ith, int nth) {
    matmul_task *t = arg;
    for (int32_t i = ith; i < t->n; i += nth)
        sl_quantize_row(t->act_type, t->x + (size_t)i * t->w->cols,
                        (char *)t->act + (size_t)i * t->act_row_bytes, t->w->cols);
}

static void matmul_task_run(void *arg, int ith, int nth) {
    (void)ith;
    (void)nth;
    matmul_task *t = arg;
    const sl_weight *w = t->w;
    const int64_t n_chunks = (w->rows + t->chunk_rows - 1) / t->chunk_rows;
    for (;;) {
        int64_t chunk = atomic_fetch_add(&t->next, 1);
        if (chunk >= n_chunks) break;
        int64_t r0 = chunk * t->chunk_rows;
        int64_t r1 = r0 + t->chunk_rows < w->rows ? r0 + t->chunk_rows : w->rows;
        for (int32_t i0 = 0; i0 < t->n; i0 += TOKENS_PER_TILE) {
            int32_t i1 = i0 + TOKENS_PER_TILE < t->n ? i0 + TOKENS_PER_TILE : t->n;
            /* one weight row against the tile's tokens: the row is decoded once */
            for (int64_t r = r0; r < r1; r++)
                sl_vec_dot_multi(w->type, w->cols, (const char *)w->data + (size_t)r * w->row_bytes,
                                 (const char *)t->act + (size_t)i0 * t->act_row_bytes, t->act_row_bytes,
                                 i1 - i0, &t->y[(size_t)i0 * w->rows + r], w->rows);
        }
    }
}

/* y[n][w->rows] = x[n][w->cols] . W^T */
static int matmul(sl_cpu_ctx *c, const sl_weight *w, const float *x, int32_t n, float *y) {
    matmul_task t = {.w = w, .x = x, .n = n, .y = y};
    t.act_type = sl_type_get(w->type)->vec_dot_type;
    if (t.act_type == SL_TYPE_F32) {
        t.act = x;
        t.act_row_bytes = (size_t)w->cols * sizeof(float);
    } else {
        t.act_row_bytes = sl_row_size(t.act_type, w->cols);
        size_t need = t.act_row_bytes * (size_t)n;
        if (need > c->act_cap) {
            void *p = realloc(c->act, need);
            if (!p) return -1;
            c->act = p;
            c->act_cap = need;
        }
        t.act = c->act;
        sl_pool_run(c->pool, quantize_task, &t);
    }
    int64_t per = w->rows / ((int64_t)sl_pool_size(c->pool) * CHUNKS_PER_THREAD);
    t.chunk_rows = n <= DECODE_MAX_TOKENS && per > MIN_CHUNK_ROWS ? per / MIN_CHUNK_ROWS * MIN_CHUNK_ROWS
                                                                  : MIN_CHUNK_ROWS;
    atomic_init(&t.next, 0);
    sl_pool_run(c->pool, matmul_task_run, &t);
    return 0;
}

/* ---- small element-wise kernels --------------------------------------- */

/* out = x / rms(x) * weight, the sum kept in double as ggml does. */
static void rmsnorm(float *out, const float *x, const float *weight, int64_t n, float eps) {
    double ss = 0;
    for (int64_t i = 0; i < n; i++) ss += (double)(x[i] * x[i]);
    float scale = 1.0f / sqrtf((float)(ss / (double)n) + eps);
    for (int64_t i = 0; i < n; i++) out[i] = x[i] * scale * weight[i];
}

/* Rotates each head of vec[n_heads][head_dim] by position pos. */
static void rope(float *vec, int n_heads, int head_dim, int n_rot, sl_rope_kind kind, const float *inv_freq,
                 int32_t pos) {
    for (int h = 0; h < n_heads; h++) {
        float *v = vec + (size_t)h * head_dim;
        for (int i = 0; i < n_rot / 2; i++) {
            float theta = (float)pos * inv_freq[i];
            float cs = cosf(theta), sn = sinf(theta);
            int a = kind == SL_ROPE_NORM ? 2 * i : i;
            int b = kind == SL_ROPE_NORM ? 2 * i + 1 : i + n_rot / 2;
            float x0 = v[a], x1 = v[b];
            v[a] = x0 * cs - x1 * sn;
            v[b] = x0 * sn + x1 * cs;
        }
    }
}

static void add_bias(float *y, const sl_weight *b, int32_t n, int64_t dim) {
    if (!b->data) return;
    const float *bias = b->data;
    for (int32_t i = 0; i < n; i++)
        for (int64_t j = 0; j < dim; j++) y[(size_t)i * dim + j] += bias[j];
}

/* ---- attention --------------------------------------------------------- */

typedef struct attn_task {
    sl_cpu_ctx *c;
    int layer;
    int32_t n;        /* tokens in the batch */
    int32_t pos0;     /* position of the first */
    atomic_int next;  /* next (token, head) pair */
} attn_task;

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
    for (;;) {
        int item = atomic_fetch_add(&t->next, 1);
        if (item >= total) break;
        int i = item / hp->n_head, h = item % hp->n_head;
        int32_t n_keys = t->pos0 + i + 1; /* causal: keys 0..pos */
        const float *q = c->q + (size_t)i * c->q_dim + (size_t)h * hd;
        const size_t kv_off = (size_t)(h / group) * hd;
        float max = -INFINITY;
        for (int32_t s = 0; s < n_keys; s++) {
            const float *k = kc + (size_t)s * c->kv_dim + kv_off;
            float dot = 0;
            for (int d = 0; d < hd; d++) dot += q[d] * k[d];
            scores[s] = dot * scale;
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
            const float *v = vc + (size_t)s * c->kv_dim + kv_off;
            float p = scores[s] * inv;
            for (int d = 0; d < hd; d++) out[d] += p * v[d];
        }
    }
}

/* ---- the forward pass -------------------------------------------------- */

/* Evaluates tokens[0..n) (n <= n_batch) at positions n_past.. and leaves the
 * final hidden states, normed, in c->xb. */
static int forward_batch(sl_cpu_ctx *c, const int32_t *tokens, int32_t n, sl_error *err) {
    const sl_model *m = c->m;
    const sl_hparams *hp = &m->hp;
    const int64_t E = hp->n_embd, F = hp->n_ff;
    const int hd = hp->head_dim;
    const int32_t pos0 = c->n_past;

    for (int32_t i = 0; i < n; i++) {
        const char *row = (const char *)m->tok_embd.data + (size_t)tokens[i] * m->tok_embd.row_bytes;
        sl_dequantize_row(m->tok_embd.type, row, c->x + (size_t)i * E, E);
    }

    for (int l = 0; l < hp->n_layer; l++) {
        const sl_layer *L = &m->layers[l];

        /* attention block */
        for (int32_t i = 0; i < n; i++)
            rmsnorm(c->xb + (size_t)i * E, c->x + (size_t)i * E, L->attn_norm.data, E, hp->rms_eps);
        if (matmul(c, &L->wq, c->xb, n, c->q) || matmul(c, &L->wk, c->xb, n, c->k) ||
            matmul(c, &L->wv, c->xb, n, c->v))
            return sl_err(err, "out of memory");
        add_bias(c->q, &L->bq, n, c->q_dim);
        add_bias(c->k, &L->bk, n, c->kv_dim);
        add_bias(c->v, &L->bv, n, c->kv_dim);
        for (int32_t i = 0; i < n; i++) {
            float *q = c->q + (size_t)i * c->q_dim, *k = c->k + (size_t)i * c->kv_dim;
            if (L->q_norm.data) {
                for (int h = 0; h < hp->n_head; h++) rmsnorm(q + h * hd, q + h * hd, L->q_norm.data, hd, hp->rms_eps);
                for (int h = 0; h < hp->n_head_kv; h++)
                    rmsnorm(k + h * hd, k + h * hd, L->k_norm.data, hd, hp->rms_eps);
            }
            rope(q, hp->n_head, hd, hp->n_rot, hp->rope_kind, m->rope_inv_freq, pos0 + i);
            rope(k, hp->n_head_kv, hd, hp->n_rot, hp->rope_kind, m->rope_inv_freq, pos0 + i);
        }
        size_t layer_off = (size_t)l * c->n_ctx * c->kv_dim;
        memcpy(c->k_cache + layer_off + (size_t)pos0 * c->kv_dim, c->k, (size_t)n * c->kv_dim * sizeof(float));
        memcpy(c->v_cache + layer_off + (size_t)pos0 * c->kv_dim, c->v, (size_t)n * c->kv_dim * sizeof(float));

        attn_task at = {.c = c, .layer = l, .n = n, .pos0 = pos0};
        atomic_init(&at.next, 0);
        sl_pool_run(c->pool, attention_task_run, &at);

        if (matmul(c, &L->wo, c->att, n, c->xb)) return sl_err(err, "out of memory");
        for (size_t j = 0; j < (size_t)n * E; j++) c->x[j] += c->xb[j];

        /* feed-forward block: w_down(silu(w_gate x) * w_up x) */
        for (int32_t i = 0; i < n; i++)
            rmsnorm(c->xb + (size_t)i * E, c->x + (size_t)i * E, L->ffn_norm.data, E, hp->rms_eps);
        if (matmul(c, &L->w_gate, c->xb, n, c->hb) || matmul(c, &L->w_up, c->xb, n, c->hb2))
            return sl_err(err, "out of memory");
        for (size_t j = 0; j < (size_t)n * F; j++) {
            float g = c->hb[j];
            c->hb[j] = g / (1.0f + expf(-g)) * c->hb2[j];
        }
        if (matmul(c, &L->w_down, c->hb, n, c->xb)) return sl_err(err, "out of memory");
        for (size_t j = 0; j < (size_t)n * E; j++) c->x[j] += c->xb[j];
    }

    for (int32_t i = 0; i < n; i++)
        rmsnorm(c->xb + (size_t)i * E, c->x + (size_t)i * E, m->output_norm.data, E, hp->rms_eps);
    c->n_past += n;
    return 0;
}

int sl_cpu_eval(sl_cpu_ctx *c, const int32_t *tokens, int32_t n, float *logits, bool all_logits,
                sl_error *err) {
    const sl_model *m = c->m;
    const int32_t V = m->hp.n_vocab;
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
        if (logits) {
            /* Output head: every row when all logits are wanted, else only the last token's. */
            if (all_logits) {
                if (matmul(c, &m->output, c->xb, nb, logits + (size_t)done * V)) return sl_err(err, "out of memory");
            } else if (done + nb == n) {
                if (matmul(c, &m->output, c->xb + (size_t)(nb - 1) * m->hp.n_embd, 1, logits))
                    return sl_err(err, "out of memory");
            }
        }
        done += nb;
    }
    return 0;
}

/* ---- context ----------------------------------------------------------- */

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
    c->scores = malloc((size_t)sl_pool_size(c->pool) * c->n_ctx * sizeof(float));
    if (!c->k_cache || !c->v_cache || !c->x || !c->xb || !c->q || !c->k || !c->v || !c->att || !c->hb ||
        !c->hb2 || !c->scores) {
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
    free(c->scores);
    free(c->act);
    free(c);
}

int32_t sl_cpu_n_ctx(const sl_cpu_ctx *c) { return c->n_ctx; }
int32_t sl_cpu_n_past(const sl_cpu_ctx *c) { return c->n_past; }

void sl_cpu_truncate(sl_cpu_ctx *c, int32_t n_keep) {
    if (n_keep < 0) n_keep = 0;
    if (n_keep < c->n_past) c->n_past = n_keep;
}
