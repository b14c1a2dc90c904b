/* engine.c - the WebGPU backend (see gpu.h): buffers from the plan, kernels
 * and bind groups created once, dispatch programs recorded per shape bucket,
 * uploads, and the evaluation of a step: submitted whole, or, on demand,
 * segment by segment while the host refills the stream buffers. */
#include "gpu/gpu.h"

#include "gpu/bridge.h"
#include "gpu/kernels.h"
#include "gpu/layout.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* When an op is recorded: always, or only in decode programs whose keys fit
 * one attention split (direct attention) or need several (split + merge). */
enum { OP_ALWAYS, OP_ONE_SPLIT, OP_SPLITS };

/* One dispatch of a program: a kernel with its bindings. */
typedef struct gpu_op {
    sl_gpu_kernel_desc desc;
    int32_t pipeline, bind_group;
    int when;
} gpu_op;

typedef struct op_list {
    gpu_op *v;
    int n, cap;
} op_list;

/* PROG_GREEDY: a decode step, then the argmax of its logits on the GPU */
enum { PROG_DECODE, PROG_PREFILL_NONE, PROG_PREFILL_LAST, PROG_PREFILL_ALL, PROG_GREEDY };

/* A recorded program: segment `seg` of a step of this kind and shape.
 * Segment 0 is the embedding and the resident layers; segment k >= 1 is
 * streamed layer n_resident + k - 1; the last one adds the output head. */
typedef struct program {
    int kind, seg;
    uint32_t n_cap, n_splits;
    int32_t handle;
    int n_dispatches;
} program;

typedef struct pipeline {
    char *source;
    int32_t handle;
} pipeline;

struct sl_gpu_engine {
    sl_model *m;
    sl_gpu_plan *plan;
    int32_t *bufs;          /* bridge handle of each plan buffer */
    uint64_t *uploaded;     /* bytes uploaded per plan tensor */
    pipeline *pipes;
    int n_pipes, cap_pipes;
    op_list embed, dec_layers, pre_layers, final_norm, out_mv, out_mm, argmax;
    int *dec_start, *pre_start; /* [n_layer + 1]: first op of each layer in dec_layers / pre_layers */
    bool fused;             /* decode runs the fused kernels (fused_decode_ok) */
    program *progs;
    int n_progs, cap_progs;
    int32_t n_past;
    int64_t pending_bytes;  /* read-back in flight (eval_begin done, eval_end not yet) */
    bool broken;            /* a submit failed: the KV cache is unknown */
    int last_dispatches;
    /* the evaluation in progress (eval_begin until its last segment is submitted) */
    bool active, all_logits;
    int32_t *tok;           /* its tokens, copied */
    int32_t n_tok, tok_cap, done; /* tokens, capacity, tokens whose batches are submitted */
    int32_t nb;             /* tokens in the current batch */
    int kind, seg;          /* the current batch's program kind and next segment */
    uint32_t n_cap, n_splits;
    int32_t stream_layer;   /* the streamed layer whose weights the host must upload now, or -1 */
    /* as given; layouts, mat-vec tuning and int8 shape every kernel */
    sl_gpu_params params;
    /* weights in their GPU layouts (gpu/layout.h): per plan tensor, the bytes
     * of block groups cut by upload pieces; scratch for the permutation */
    sl_gpu_relayout *relayout;
    unsigned char *scratch;
    /* greedy decoding: whether each id read-back slot waits for greedy_end;
     * whether the tokens buffer holds the id the last greedy step chose */
    bool greedy_pending[SL_GPU_GREEDY_SLOTS], greedy_chained;
};

/* Scratch for permuting weights: runs of up to half of it are written at once. */
#define LAYOUT_SCRATCH_BYTES (1u << 20)

sl_gpu_caps sl_gpu_device_caps(void) {
    sl_gpu_caps c = {
        .max_binding = (uint64_t)wg_caps(WG_CAP_MAX_BINDING),
        .max_buffer = (uint64_t)wg_caps(WG_CAP_MAX_BUFFER),
        .max_invocations = (uint32_t)wg_caps(WG_CAP_MAX_INVOCATIONS),
        .max_wg_storage = (uint32_t)wg_caps(WG_CAP_MAX_WG_STORAGE),
        .max_workgroups = (uint32_t)wg_caps(WG_CAP_MAX_WORKGROUPS),
        .storage_align = (uint32_t)wg_caps(WG_CAP_STORAGE_ALIGN),
        .max_storage_buffers = (uint32_t)wg_caps(WG_CAP_MAX_STORAGE_BUFFERS),
        .has_f16 = wg_caps(WG_CAP_HAS_F16) != 0,
        .has_subgroups = wg_caps(WG_CAP_HAS_SUBGROUPS) != 0,
        .has_subgroup_id = wg_caps(WG_CAP_HAS_SUBGROUP_ID) != 0,
        .has_dot4 = wg_caps(WG_CAP_HAS_DOT4) != 0,
        .subgroup_min = (uint32_t)wg_caps(WG_CAP_SUBGROUP_MIN_SIZE),
    };
    return c;
}

/* ---- pipelines and ops --------------------------------------------------- */

/* The pipeline made already from kernel text src, or 0. */
static int32_t find_pipeline(const sl_gpu_engine *e, const char *src) {
    for (int i = 0; i < e->n_pipes; i++)
        if (!strcmp(e->pipes[i].source, src)) return e->pipes[i].handle;
    return 0;
}

static int32_t get_pipeline(sl_gpu_engine *e, const sl_gpu_kernel_desc *d, sl_error *err) {
    char *src = sl_gpu_kernel_wgsl(d, err);
    if (!src) return 0;
    const int32_t made = find_pipeline(e, src);
    if (made) {
        free(src);
        return made;
    }
    if (e->n_pipes == e->cap_pipes) {
        int nc = e->cap_pipes ? 2 * e->cap_pipes : 32;
        pipeline *np = realloc(e->pipes, (size_t)nc * sizeof *np);
        if (!np) {
            free(src);
            sl_err(err, "out of memory");
            return 0;
        }
        e->pipes = np;
        e->cap_pipes = nc;
    }
    int32_t h = wg_pipeline_create(src, (uint32_t)strlen(src));
    if (!h) {
        free(src);
        sl_err(err, "WebGPU: cannot create a compute pipeline");
        return 0;
    }
    e->pipes[e->n_pipes++] = (pipeline){src, h};
    return h;
}

/* A binding of plan buffer `buf` (bytes [offset, offset + size)). */
static wg_binding bnd(const sl_gpu_engine *e, uint32_t binding, int32_t buf, uint64_t offset, uint64_t size) {
    return (wg_binding){binding, (uint32_t)e->bufs[buf], (uint32_t)offset, (uint32_t)((size + 3) & ~(uint64_t)3)};
}

/* A weight chunk's binding: whole 16-byte words (read as vec4<u32>; the
 * plan rounds its buffer up alike). */
static wg_binding bnd_chunk(const sl_gpu_engine *e, uint32_t binding, const sl_gpu_chunk *ch) {
    return bnd(e, binding, ch->buffer, 0, (ch->bytes + 15) & ~(uint64_t)15);
}

static wg_binding bnd_act(const sl_gpu_engine *e, uint32_t binding, sl_gpu_act a) {
    const sl_gpu_act_plan *ap = &e->plan->acts[a];
    return bnd(e, binding, e->plan->buf_act, ap->offset, ap->size);
}

static wg_binding bnd_whole(const sl_gpu_engine *e, uint32_t binding, int32_t buf) {
    return bnd(e, binding, buf, 0, e->plan->buffers[buf].size);
}

static wg_binding bnd_vec(const sl_gpu_engine *e, uint32_t binding, const sl_gpu_tensor_plan *t) {
    return bnd(e, binding, e->plan->buf_vectors, t->vec_offset, (uint64_t)t->cols * 4);
}

/* Appends a dispatch of kernel d with bindings b[0..n) (binding 0, the step
 * uniform, is added here). */
static int add_op(sl_gpu_engine *e, op_list *l, const sl_gpu_kernel_desc *d, const wg_binding *b, int n,
                  sl_error *err) {
    wg_binding all[10];
    if (n + 1 > 10 || n + 1 != sl_gpu_kernel_n_bindings(d))
        return sl_err(err, "internal: kernel %d given %d bindings, wants %d", (int)d->kernel, n + 1,
                      sl_gpu_kernel_n_bindings(d));
    all[0] = bnd_whole(e, 0, e->plan->buf_uniform);
    memcpy(all + 1, b, (size_t)n * sizeof *b);
    sl_gpu_kernel_desc dd = *d;
    dd.subgroups = e->plan->caps.has_subgroups && e->plan->caps.has_subgroup_id;
    dd.subgroup_min = dd.subgroups ? e->plan->caps.subgroup_min : 0;
    dd.layouts = e->params.layouts;
    dd.max_wg_storage = e->plan->caps.max_wg_storage;
    dd.mv_rows = e->params.mv_rows;
    dd.mv_units = e->params.mv_units;
    dd.mv_min_wgs = e->params.mv_min_wgs;
    dd.mm_tokens = e->params.mm_tokens;
    dd.mm_rows = e->params.mm_rows;
    dd.mm_inv_tokens = e->params.mm_inv_tokens;
    dd.int8_dot = e->params.int8 && e->plan->caps.has_dot4;
    int32_t pipe = get_pipeline(e, &dd, err);
    if (!pipe) return -1;
    int32_t bg = wg_bind_group_create(pipe, all, n + 1);
    if (!bg) return sl_err(err, "WebGPU: cannot create a bind group for kernel %d", (int)d->kernel);
    if (l->n == l->cap) {
        int nc = l->cap ? 2 * l->cap : 64;
        gpu_op *nv = realloc(l->v, (size_t)nc * sizeof *nv);
        if (!nv) return sl_err(err, "out of memory");
        l->v = nv;
        l->cap = nc;
    }
    l->v[l->n++] = (gpu_op){dd, pipe, bg, OP_ALWAYS};
    return 0;
}

static const sl_gpu_tensor_plan *tensor(const sl_gpu_engine *e, const char *fmt, int layer) {
    char name[SL_GGUF_MAX_NAME];
    snprintf(name, sizeof name, fmt, layer);
    return sl_gpu_plan_find(e->plan, name);
}

/* A matrix product: one op per chunk of W's rows. kernel MATVEC or MATMUL;
 * a MATVEC with aux and epilogue NONE or ADD norms X first with weight aux. */
static int add_matrix(sl_gpu_engine *e, op_list *l, sl_gpu_kernel kernel, const sl_gpu_tensor_plan *w,
                      wg_binding x, wg_binding y, sl_gpu_epilogue epi, const wg_binding *aux, sl_error *err) {
    for (int c = 0; c < w->n_chunks; c++) {
        const sl_gpu_chunk *ch = &e->plan->chunks[w->first_chunk + c];
        sl_gpu_kernel_desc d = {.kernel = kernel, .type = w->type, .cols = (uint32_t)w->cols,
                                .rows = (uint32_t)ch->rows, .row0 = (uint32_t)ch->row0,
                                .out_stride = (uint32_t)w->rows, .epilogue = epi,
                                .norm = kernel == SL_GK_MATVEC && aux && (epi == SL_EPI_NONE || epi == SL_EPI_ADD),
                                .eps = e->m->hp.rms_eps};
        wg_binding b[4] = {bnd_chunk(e, 1, ch), x, y};
        int n = 3;
        if (aux) b[n++] = *aux;
        b[1].binding = 2;
        b[2].binding = 3;
        if (aux) b[3].binding = 4;
        if (add_op(e, l, &d, b, n, err)) return -1;
    }
    return 0;
}

static int add_rmsnorm(sl_gpu_engine *e, op_list *l, sl_gpu_act in, wg_binding out, const sl_gpu_tensor_plan *w,
                       sl_error *err) {
    sl_gpu_kernel_desc d = {.kernel = SL_GK_RMSNORM, .n = (uint32_t)e->m->hp.n_embd, .eps = e->m->hp.rms_eps};
    wg_binding b[3] = {bnd_act(e, 1, in), out, bnd_vec(e, 3, w)};
    b[1].binding = 2;
    return add_op(e, l, &d, b, 3, err);
}

/* Whether decode can use the fused kernels (QKV, FFN_IN): RoPE over whole
 * heads without per-head norms, Q/K/V biases all or none, each matrix in one
 * chunk, the arena and the vectors within one binding, 8 storage buffers. */
static bool fused_decode_ok(const sl_gpu_engine *e) {
    const sl_hparams *hp = &e->m->hp;
    const sl_gpu_plan *p = e->plan;
    if (hp->n_rot != hp->head_dim || hp->head_dim % 2 || hp->n_embd % 4 || p->caps.max_storage_buffers < 8 ||
        p->buffers[p->buf_act].size > p->caps.max_binding || p->buffers[p->buf_vectors].size > p->caps.max_binding ||
        (hp->rope_kind != SL_ROPE_NORM && hp->rope_kind != SL_ROPE_NEOX))
        return false;
    static const char *const mats[] = {"blk.%d.attn_q.weight", "blk.%d.attn_k.weight", "blk.%d.attn_v.weight",
                                       "blk.%d.ffn_gate.weight", "blk.%d.ffn_up.weight"};
    for (int il = 0; il < hp->n_layer; il++) {
        if (tensor(e, "blk.%d.attn_q_norm.weight", il) || tensor(e, "blk.%d.attn_k_norm.weight", il)) return false;
        int n_bias = !!tensor(e, "blk.%d.attn_q.bias", il) + !!tensor(e, "blk.%d.attn_k.bias", il) +
                     !!tensor(e, "blk.%d.attn_v.bias", il);
        if (n_bias != 0 && n_bias != 3) return false;
        /* the vectors are read as vec4: norms and biases at 16-byte offsets */
        static const char *const vecs[] = {"blk.%d.attn_norm.weight", "blk.%d.ffn_norm.weight", "blk.%d.attn_q.bias",
                                           "blk.%d.attn_k.bias", "blk.%d.attn_v.bias"};
        for (size_t i = 0; i < sizeof vecs / sizeof vecs[0]; i++) {
            const sl_gpu_tensor_plan *v = tensor(e, vecs[i], il);
            if (v && v->vec_offset % 16) return false;
        }
        for (size_t i = 0; i < sizeof mats / sizeof mats[0]; i++) {
            const sl_gpu_tensor_plan *w = tensor(e, mats[i], il);
            if (!w || w->n_chunks != 1) return false;
        }
    }
    return true;
}

static uint32_t vec_float(const sl_gpu_tensor_plan *t) { return t ? (uint32_t)(t->vec_offset / 4) : 0; }
static uint32_t act_float(const sl_gpu_engine *e, sl_gpu_act a) { return (uint32_t)(e->plan->acts[a].offset / 4); }

/* Decode, fused: norm + Q/K/V + biases + RoPE + K/V store in one dispatch. */
static int add_qkv(sl_gpu_engine *e, op_list *l, int il, const sl_gpu_kernel_desc *head, sl_error *err) {
    const sl_gpu_plan *p = e->plan;
    const sl_gpu_tensor_plan *wq = tensor(e, "blk.%d.attn_q.weight", il), *wk = tensor(e, "blk.%d.attn_k.weight", il),
                             *wv = tensor(e, "blk.%d.attn_v.weight", il),
                             *an = tensor(e, "blk.%d.attn_norm.weight", il),
                             *bq = tensor(e, "blk.%d.attn_q.bias", il);
    sl_gpu_kernel_desc d = *head;
    d.kernel = SL_GK_QKV;
    d.type = wq->type;
    d.type2 = wk->type;
    d.type3 = wv->type;
    d.cols = (uint32_t)wq->cols;
    d.x_off = act_float(e, SL_ACT_X);
    d.y_off = act_float(e, SL_ACT_Q);
    d.g_off = vec_float(an);
    d.has_bias = bq != NULL;
    d.bias_off[0] = vec_float(bq);
    d.bias_off[1] = vec_float(tensor(e, "blk.%d.attn_k.bias", il));
    d.bias_off[2] = vec_float(tensor(e, "blk.%d.attn_v.bias", il));
    const sl_gpu_chunk *cq = &p->chunks[wq->first_chunk], *ck = &p->chunks[wk->first_chunk],
                       *cv = &p->chunks[wv->first_chunk];
    wg_binding b[8] = {bnd_whole(e, 1, p->buf_act),          bnd_whole(e, 2, p->buf_vectors),
                       bnd_chunk(e, 3, cq),                  bnd_chunk(e, 4, ck),
                       bnd_chunk(e, 5, cv),  bnd_whole(e, 6, p->buf_k[il]),
                       bnd_whole(e, 7, p->buf_v[il]),        bnd_whole(e, 8, p->buf_rope)};
    return add_op(e, l, &d, b, 8, err);
}

/* Decode, fused: norm + gate and up + silu(gate) * up in one dispatch. */
static int add_ffn_in(sl_gpu_engine *e, op_list *l, int il, sl_error *err) {
    const sl_gpu_plan *p = e->plan;
    const sl_gpu_tensor_plan *wg = tensor(e, "blk.%d.ffn_gate.weight", il), *wu = tensor(e, "blk.%d.ffn_up.weight", il),
                             *fn = tensor(e, "blk.%d.ffn_norm.weight", il);
    sl_gpu_kernel_desc d = {.kernel = SL_GK_FFN_IN, .type = wg->type, .type2 = wu->type, .cols = (uint32_t)wg->cols,
                            .rows = (uint32_t)wg->rows, .eps = e->m->hp.rms_eps, .x_off = act_float(e, SL_ACT_X),
                            .y_off = act_float(e, SL_ACT_UP), .g_off = vec_float(fn)};
    const sl_gpu_chunk *cg = &p->chunks[wg->first_chunk], *cu = &p->chunks[wu->first_chunk];
    wg_binding b[4] = {bnd_whole(e, 1, p->buf_act), bnd_whole(e, 2, p->buf_vectors), bnd_chunk(e, 3, cg),
                       bnd_chunk(e, 4, cu)};
    return add_op(e, l, &d, b, 4, err);
}

/* Attention norm, Q/K/V products (+ biases), RoPE and K/V store as
 * separate dispatches (prefill; decode where the fused kernel does not apply). */
static int add_qkv_unfused(sl_gpu_engine *e, op_list *l, int il, sl_gpu_kernel mk, const sl_gpu_kernel_desc *head,
                           sl_error *err) {
    const sl_gpu_plan *p = e->plan;
    const sl_gpu_tensor_plan *wq = tensor(e, "blk.%d.attn_q.weight", il), *wk = tensor(e, "blk.%d.attn_k.weight", il),
                             *wv = tensor(e, "blk.%d.attn_v.weight", il), *bq = tensor(e, "blk.%d.attn_q.bias", il),
                             *bk = tensor(e, "blk.%d.attn_k.bias", il), *bv = tensor(e, "blk.%d.attn_v.bias", il),
                             *qn = tensor(e, "blk.%d.attn_q_norm.weight", il),
                             *kn = tensor(e, "blk.%d.attn_k_norm.weight", il),
                             *an = tensor(e, "blk.%d.attn_norm.weight", il);
    if (add_rmsnorm(e, l, SL_ACT_X, bnd_act(e, 2, SL_ACT_XB_ATT), an, err)) return -1;
    const struct {
        const sl_gpu_tensor_plan *w, *b;
        sl_gpu_act out;
    } qkv[3] = {{wq, bq, SL_ACT_Q}, {wk, bk, SL_ACT_K}, {wv, bv, SL_ACT_V}};
    for (int i = 0; i < 3; i++) {
        wg_binding bias = qkv[i].b ? bnd_vec(e, 4, qkv[i].b) : (wg_binding){0};
        if (add_matrix(e, l, mk, qkv[i].w, bnd_act(e, 2, SL_ACT_XB_ATT), bnd_act(e, 3, qkv[i].out),
                       qkv[i].b ? SL_EPI_BIAS : SL_EPI_NONE, qkv[i].b ? &bias : NULL, err))
            return -1;
    }
    sl_gpu_kernel_desc d = *head;
    d.kernel = SL_GK_ROPE_Q;
    d.qk_norm = qn != NULL;
    wg_binding rq[3] = {bnd_act(e, 1, SL_ACT_Q), bnd_whole(e, 2, p->buf_rope)};
    if (qn) rq[2] = bnd_vec(e, 3, qn);
    if (add_op(e, l, &d, rq, qn ? 3 : 2, err)) return -1;
    d.kernel = SL_GK_ROPE_KV;
    d.qk_norm = kn != NULL;
    wg_binding rk[6] = {bnd_act(e, 1, SL_ACT_K), bnd_act(e, 2, SL_ACT_V), bnd_whole(e, 3, p->buf_k[il]),
                        bnd_whole(e, 4, p->buf_v[il]), bnd_whole(e, 5, p->buf_rope)};
    if (kn) rk[5] = bnd_vec(e, 6, kn);
    if (add_op(e, l, &d, rk, kn ? 6 : 5, err)) return -1;
    return 0;
}

/* The ops of every layer, for prefill (mat-muls) or decode (mat-vecs; the
 * fused kernels where they apply; attention direct while the keys fit one
 * split, else split over the keys and merged: both are in the list, each
 * recorded only in the programs it applies to). */
static int build_layers(sl_gpu_engine *e, op_list *l, int *start, bool decode, sl_error *err) {
    const sl_hparams *hp = &e->m->hp;
    const sl_gpu_plan *p = e->plan;
    const bool fused = decode && e->fused;
    const sl_gpu_kernel mk = decode ? SL_GK_MATVEC : SL_GK_MATMUL;
    sl_gpu_kernel_desc head = {.n_head = (uint32_t)hp->n_head, .n_head_kv = (uint32_t)hp->n_head_kv,
                               .head_dim = (uint32_t)hp->head_dim, .n_rot = (uint32_t)hp->n_rot,
                               .rope_kind = hp->rope_kind, .eps = hp->rms_eps,
                               .keys_per_split = (uint32_t)p->attn_keys_per_split,
                               .n_splits = (uint32_t)p->n_splits, .kv_f16 = p->kv_f16};
    for (int il = 0; il < hp->n_layer; il++) {
        start[il] = l->n;
        const sl_gpu_tensor_plan *wq = tensor(e, "blk.%d.attn_q.weight", il), *wk = tensor(e, "blk.%d.attn_k.weight", il),
                                 *wv = tensor(e, "blk.%d.attn_v.weight", il),
                                 *wo = tensor(e, "blk.%d.attn_output.weight", il),
                                 *an = tensor(e, "blk.%d.attn_norm.weight", il),
                                 *fn = tensor(e, "blk.%d.ffn_norm.weight", il),
                                 *wg = tensor(e, "blk.%d.ffn_gate.weight", il),
                                 *wu = tensor(e, "blk.%d.ffn_up.weight", il),
                                 *wd = tensor(e, "blk.%d.ffn_down.weight", il);
        if (!wq || !wk || !wv || !wo || !an || !fn || !wg || !wu || !wd)
            return sl_err(err, "internal: layer %d is missing from the plan", il);
        /* attention */
        if (fused ? add_qkv(e, l, il, &head, err) : add_qkv_unfused(e, l, il, mk, &head, err)) return -1;
        sl_gpu_kernel_desc d = head;
        if (decode) {
            d.kernel = SL_GK_ATTN_DECODE;
            d.attn_direct = true;
            wg_binding ad[4] = {bnd_act(e, 1, SL_ACT_Q), bnd_whole(e, 2, p->buf_k[il]), bnd_whole(e, 3, p->buf_v[il]),
                                bnd_act(e, 4, SL_ACT_ATT)};
            if (add_op(e, l, &d, ad, 4, err)) return -1;
            l->v[l->n - 1].when = OP_ONE_SPLIT;
            d.attn_direct = false;
            ad[3] = bnd_act(e, 4, SL_ACT_PART);
            if (add_op(e, l, &d, ad, 4, err)) return -1;
            l->v[l->n - 1].when = OP_SPLITS;
            d.kernel = SL_GK_ATTN_MERGE;
            wg_binding am[2] = {bnd_act(e, 1, SL_ACT_PART), bnd_act(e, 2, SL_ACT_ATT)};
            if (add_op(e, l, &d, am, 2, err)) return -1;
            l->v[l->n - 1].when = OP_SPLITS;
        } else {
            d.kernel = SL_GK_ATTN_PREFILL;
            wg_binding ap[4] = {bnd_act(e, 1, SL_ACT_Q), bnd_whole(e, 2, p->buf_k[il]), bnd_whole(e, 3, p->buf_v[il]),
                                bnd_act(e, 4, SL_ACT_ATT)};
            if (add_op(e, l, &d, ap, 4, err)) return -1;
        }
        if (add_matrix(e, l, mk, wo, bnd_act(e, 2, SL_ACT_ATT), bnd_act(e, 3, SL_ACT_X), SL_EPI_ADD, NULL, err))
            return -1;
        /* feed-forward */
        if (fused) {
            if (add_ffn_in(e, l, il, err)) return -1;
        } else {
            wg_binding gate = bnd_act(e, 4, SL_ACT_GATE);
            if (add_rmsnorm(e, l, SL_ACT_X, bnd_act(e, 2, SL_ACT_XB_FFN), fn, err) ||
                add_matrix(e, l, mk, wg, bnd_act(e, 2, SL_ACT_XB_FFN), bnd_act(e, 3, SL_ACT_GATE), SL_EPI_NONE, NULL,
                           err) ||
                add_matrix(e, l, mk, wu, bnd_act(e, 2, SL_ACT_XB_FFN), bnd_act(e, 3, SL_ACT_UP), SL_EPI_SILU_MUL,
                           &gate, err))
                return -1;
        }
        if (add_matrix(e, l, mk, wd, bnd_act(e, 2, SL_ACT_UP), bnd_act(e, 3, SL_ACT_X), SL_EPI_ADD, NULL, err))
            return -1;
    }
    start[hp->n_layer] = l->n;
    return 0;
}

/* The ops the mat-vec tuning shapes: the decode layers and the head's
 * mat-vec (which norms the last token itself: no final norm dispatch). */
static int build_matvec_ops(sl_gpu_engine *e, sl_error *err) {
    const sl_gpu_plan *p = e->plan;
    const sl_gpu_tensor_plan *te = sl_gpu_plan_find(p, "token_embd.weight"),
                             *on = sl_gpu_plan_find(p, "output_norm.weight"),
                             *out = p->tied ? te : sl_gpu_plan_find(p, "output.weight");
    wg_binding on_vec = bnd_vec(e, 4, on);
    if (build_layers(e, &e->dec_layers, e->dec_start, true, err) ||
        add_matrix(e, &e->out_mv, SL_GK_MATVEC, out, bnd_act(e, 2, SL_ACT_X), bnd_whole(e, 3, p->buf_logits),
                   SL_EPI_NONE, &on_vec, err))
        return -1;
    return 0;
}

static int build_ops(sl_gpu_engine *e, sl_error *err) {
    const sl_gpu_plan *p = e->plan;
    const sl_gpu_tensor_plan *te = sl_gpu_plan_find(p, "token_embd.weight"),
                             *on = sl_gpu_plan_find(p, "output_norm.weight"),
                             *out = p->tied ? te : sl_gpu_plan_find(p, "output.weight");
    if (!te || !on || !out) return sl_err(err, "internal: the plan lacks the embedding or the output head");
    for (int c = 0; c < te->n_chunks; c++) {
        const sl_gpu_chunk *ch = &p->chunks[te->first_chunk + c];
        sl_gpu_kernel_desc d = {.kernel = SL_GK_EMBED, .type = te->type, .cols = (uint32_t)te->cols,
                                .rows = (uint32_t)ch->rows, .row0 = (uint32_t)ch->row0,
                                .out_stride = (uint32_t)te->cols};
        wg_binding b[3] = {bnd_chunk(e, 1, ch), bnd_whole(e, 2, p->buf_tokens),
                           bnd_act(e, 3, SL_ACT_X)};
        if (add_op(e, &e->embed, &d, b, 3, err)) return -1;
    }
    e->dec_start = calloc((size_t)e->m->hp.n_layer + 1, sizeof *e->dec_start);
    e->pre_start = calloc((size_t)e->m->hp.n_layer + 1, sizeof *e->pre_start);
    if (!e->dec_start || !e->pre_start) return sl_err(err, "out of memory");
    e->fused = fused_decode_ok(e);
    if (build_matvec_ops(e, err) || build_layers(e, &e->pre_layers, e->pre_start, false, err) ||
        add_rmsnorm(e, &e->final_norm, SL_ACT_X, bnd_act(e, 2, SL_ACT_XB_OUT), on, err) ||
        add_matrix(e, &e->out_mm, SL_GK_MATMUL, out, bnd_act(e, 2, SL_ACT_XB_OUT),
                   bnd_whole(e, 3, p->buf_logits), SL_EPI_NONE, NULL, err))
        return -1;
    /* greedy: the argmax of the decode step's logits into tokens[0] */
    const uint32_t V = (uint32_t)e->m->hp.n_vocab, parts = sl_gpu_argmax_parts(V);
    sl_gpu_kernel_desc ap = {.kernel = SL_GK_ARGMAX_PART, .n = V}, af = {.kernel = SL_GK_ARGMAX_FINAL, .n = parts};
    wg_binding bp[2] = {bnd(e, 1, p->buf_logits, 0, (uint64_t)V * 4), bnd_whole(e, 2, p->buf_argmax)};
    wg_binding bf[2] = {bnd_whole(e, 1, p->buf_argmax), bnd(e, 2, p->buf_tokens, 0, 4)};
    if (add_op(e, &e->argmax, &ap, bp, 2, err) || add_op(e, &e->argmax, &af, bf, 2, err)) return -1;
    return 0;
}

/* ---- programs ------------------------------------------------------------ */

/* Records ops [from, to) of list l. */
static void record_list(sl_gpu_engine *e, int32_t prog, const op_list *l, int from, int to, uint32_t n_tokens,
                        uint32_t n_splits, int *count) {
    for (int i = from; i < to; i++) {
        int when = l->v[i].when;
        if ((when == OP_ONE_SPLIT && n_splits != 1) || (when == OP_SPLITS && n_splits == 1)) continue;
        uint32_t g[3];
        sl_gpu_kernel_grid(&l->v[i].desc, n_tokens, n_splits, e->plan->caps.max_workgroups, g);
        wg_program_dispatch(prog, l->v[i].pipeline, l->v[i].bind_group, g[0], g[1], g[2]);
        (*count)++;
    }
}

static int n_segments(const sl_gpu_plan *p) { return 1 + p->hp.n_layer - p->n_resident; }

static const program *get_program(sl_gpu_engine *e, int kind, int seg, uint32_t n_cap, uint32_t n_splits,
                                  sl_error *err) {
    for (int i = 0; i < e->n_progs; i++) {
        const program *pr = &e->progs[i];
        if (pr->kind == kind && pr->seg == seg && pr->n_cap == n_cap && pr->n_splits == n_splits) return pr;
    }
    if (e->n_progs == e->cap_progs) {
        int nc = e->cap_progs ? 2 * e->cap_progs : 16;
        program *np = realloc(e->progs, (size_t)nc * sizeof *np);
        if (!np) {
            sl_err(err, "out of memory");
            return NULL;
        }
        e->progs = np;
        e->cap_progs = nc;
    }
    int32_t h = wg_program_create();
    if (!h) {
        sl_err(err, "WebGPU: cannot create a program");
        return NULL;
    }
    int count = 0;
    const bool decode = kind == PROG_DECODE || kind == PROG_GREEDY;
    const op_list *layers = decode ? &e->dec_layers : &e->pre_layers;
    const int *start = decode ? e->dec_start : e->pre_start;
    const int R = e->plan->n_resident;
    if (seg == 0) record_list(e, h, &e->embed, 0, e->embed.n, n_cap, n_splits, &count);
    if (seg == 0) record_list(e, h, layers, start[0], start[R], n_cap, n_splits, &count);
    else record_list(e, h, layers, start[R + seg - 1], start[R + seg], n_cap, n_splits, &count);
    if (seg == n_segments(e->plan) - 1) {
        const op_list *head = kind == PROG_PREFILL_ALL ? &e->out_mm : kind == PROG_PREFILL_NONE ? NULL : &e->out_mv;
        if (head == &e->out_mm) record_list(e, h, &e->final_norm, 0, e->final_norm.n, n_cap, n_splits, &count);
        if (head) record_list(e, h, head, 0, head->n, n_cap, n_splits, &count);
        if (kind == PROG_GREEDY) record_list(e, h, &e->argmax, 0, e->argmax.n, n_cap, n_splits, &count);
    }
    e->progs[e->n_progs] = (program){kind, seg, n_cap, n_splits, h, count};
    return &e->progs[e->n_progs++];
}

static uint32_t pow2_at_least(uint32_t n, uint32_t cap) {
    uint32_t b = 1;
    while (b < n && b < cap) b *= 2;
    return b < cap ? b : cap;
}

/* Writes the step uniform of a batch of nb tokens after the cached ones;
 * returns the key splits a decode step's attention needs. */
static uint32_t write_step(sl_gpu_engine *e, uint32_t nb) {
    const sl_gpu_plan *p = e->plan;
    uint32_t n_kv = (uint32_t)e->n_past + nb;
    uint32_t step[4] = {nb, (uint32_t)e->n_past, n_kv, 0};
    wg_buffer_write(e->bufs[p->buf_uniform], 0, step, sizeof step);
    uint32_t need = (n_kv + (uint32_t)p->attn_keys_per_split - 1) / (uint32_t)p->attn_keys_per_split;
    return pow2_at_least(need, (uint32_t)p->n_splits);
}

/* ---- engine -------------------------------------------------------------- */

/* The cos/sin table of every (position, pair), computed as the CPU path does. */
static int upload_rope(sl_gpu_engine *e, sl_error *err) {
    const int half = e->m->hp.n_rot / 2;
    const int32_t rows_per_piece = 64;
    float *buf = malloc((size_t)rows_per_piece * (size_t)half * 2 * sizeof(float));
    if (!buf) return sl_err(err, "out of memory");
    for (int32_t p0 = 0; p0 < e->plan->n_ctx; p0 += rows_per_piece) {
        int32_t np = e->plan->n_ctx - p0 < rows_per_piece ? e->plan->n_ctx - p0 : rows_per_piece;
        for (int32_t r = 0; r < np; r++) {
            for (int i = 0; i < half; i++) {
                float theta = (float)(p0 + r) * e->m->rope_inv_freq[i];
                buf[((size_t)r * half + i) * 2] = cosf(theta);
                buf[((size_t)r * half + i) * 2 + 1] = sinf(theta);
            }
        }
        wg_buffer_write(e->bufs[e->plan->buf_rope], (double)p0 * half * 8, buf, (uint32_t)((size_t)np * half * 8));
    }
    free(buf);
    return 0;
}

sl_gpu_engine *sl_gpu_engine_new(sl_model *m, const sl_gpu_params *p, sl_error *err) {
    sl_gpu_caps caps = sl_gpu_device_caps();
    if (caps.max_binding == 0 || caps.max_workgroups == 0) {
        sl_err(err, "no WebGPU device");
        return NULL;
    }
    if (!sl_gpu_matmul_tuning_ok(p->mm_tokens, p->mm_rows, p->mm_inv_tokens, caps.max_wg_storage)) {
        sl_err(err, "bad int8 mat-mul tile: %u tokens x %u rows, %u tokens per invocation (kernels.h)", p->mm_tokens,
               p->mm_rows, p->mm_inv_tokens);
        return NULL;
    }
    sl_gpu_engine *e = calloc(1, sizeof *e);
    if (!e) {
        sl_err(err, "out of memory");
        return NULL;
    }
    e->m = m;
    e->stream_layer = -1;
    e->params = *p;
    /* with the int8 token the K-quant layouts' kernels are the faster ones
     * too (kernels.h); without it only Q4_0's and Q8_0's */
    if (e->params.layouts == SL_GPU_LAYOUTS_FAST && e->params.int8 && caps.has_dot4) e->params.layouts = SL_GPU_LAYOUTS_ALL;
    e->plan = sl_gpu_plan_build(m->gguf, &m->hp, &e->params, &caps, err);
    if (!e->plan) goto fail;
    const sl_gpu_plan *pl = e->plan;
    e->bufs = calloc((size_t)pl->n_buffers, sizeof *e->bufs);
    e->uploaded = calloc((size_t)pl->n_tensors, sizeof *e->uploaded);
    e->relayout = calloc((size_t)pl->n_tensors, sizeof *e->relayout);
    if (!e->bufs || !e->uploaded || !e->relayout) {
        sl_err(err, "out of memory");
        goto fail;
    }
    for (int i = 0; i < pl->n_buffers; i++) {
        e->bufs[i] = wg_buffer_create((double)pl->buffers[i].size, pl->buffers[i].usage);
        if (!e->bufs[i]) {
            sl_err(err, "WebGPU: cannot create buffer '%s' of %llu bytes", pl->buffers[i].name,
                   (unsigned long long)pl->buffers[i].size);
            goto fail;
        }
    }
    if (upload_rope(e, err) || build_ops(e, err)) goto fail;
    return e;
fail:
    sl_gpu_engine_free(e);
    return NULL;
}

static void free_list(op_list *l) {
    for (int i = 0; i < l->n; i++) wg_release(l->v[i].bind_group);
    free(l->v);
    *l = (op_list){0};
}

/* The ops of build_matvec_ops made again under e->params; the programs are
 * recorded again when next used. */
static int rebuild_matvec_ops(sl_gpu_engine *e, sl_error *err) {
    free_list(&e->dec_layers);
    free_list(&e->out_mv);
    for (int i = 0; i < e->n_progs; i++) wg_release(e->progs[i].handle);
    e->n_progs = 0;
    return build_matvec_ops(e, err);
}

int sl_gpu_set_matvec_tuning(sl_gpu_engine *e, uint32_t rows, uint32_t units, uint32_t min_wgs, sl_error *err) {
    if (e->broken) return sl_err(err, "the WebGPU context failed earlier; create a new one");
    if (e->active || e->pending_bytes) return sl_err(err, "an evaluation is in progress");
    for (int i = 0; i < SL_GPU_GREEDY_SLOTS; i++)
        if (e->greedy_pending[i]) return sl_err(err, "a greedy step is in flight");
    if (rows > 4) return sl_err(err, "mat-vec tuning: %u rows per invocation (at most 4)", rows);
    const sl_gpu_params before = e->params;
    e->params.mv_rows = rows;
    e->params.mv_units = units;
    e->params.mv_min_wgs = min_wgs;
    if (rebuild_matvec_ops(e, err) == 0) return 0;
    /* back to the tuning before, which built */
    e->params = before;
    sl_error ignored;
    if (rebuild_matvec_ops(e, &ignored) != 0) e->broken = true;
    return -1;
}

char *sl_gpu_matvec_tuning_sources(const sl_gpu_engine *e, uint32_t rows, uint32_t units, uint32_t min_wgs,
                                   sl_error *err) {
    const op_list *lists[] = {&e->dec_layers, &e->out_mv};
    char *out = NULL;
    size_t n = 0;
    for (size_t li = 0; li < sizeof lists / sizeof lists[0]; li++) {
        for (int i = 0; i < lists[li]->n; i++) {
            sl_gpu_kernel_desc d = lists[li]->v[i].desc;
            if (d.kernel != SL_GK_MATVEC && d.kernel != SL_GK_QKV && d.kernel != SL_GK_FFN_IN) continue;
            d.mv_rows = rows;
            d.mv_units = units;
            d.mv_min_wgs = min_wgs;
            char *src = sl_gpu_kernel_wgsl(&d, err);
            if (!src) {
                free(out);
                return NULL;
            }
            bool known = find_pipeline(e, src) != 0; /* made already, or listed */
            for (size_t at = 0; at < n && !known; at += strlen(out + at) + 1) known = !strcmp(out + at, src);
            if (!known) {
                const size_t sl = strlen(src) + 1;
                char *grown = realloc(out, n + sl + 1);
                if (!grown) {
                    free(src);
                    free(out);
                    sl_err(err, "out of memory");
                    return NULL;
                }
                out = grown;
                memcpy(out + n, src, sl);
                n += sl;
            }
            free(src);
        }
    }
    if (!out && !(out = malloc(1))) {
        sl_err(err, "out of memory");
        return NULL;
    }
    out[n] = '\0';
    return out;
}

/* FNV-1a over every kernel's text: another build of the kernels, or another
 * model shape, gives another value (keys of tuning results). */
double sl_gpu_kernels_hash(const sl_gpu_engine *e) {
    uint64_t h = 1469598103934665603ull;
    for (int i = 0; i < e->n_pipes; i++)
        for (const unsigned char *s = (const unsigned char *)e->pipes[i].source; *s; s++) h = (h ^ *s) * 1099511628211ull;
    return (double)(h >> 11); /* 53 bits: exact in a double */
}

void sl_gpu_engine_free(sl_gpu_engine *e) {
    if (!e) return;
    op_list *lists[] = {&e->embed, &e->dec_layers, &e->pre_layers, &e->final_norm, &e->out_mv, &e->out_mm, &e->argmax};
    for (size_t i = 0; i < sizeof lists / sizeof lists[0]; i++) free_list(lists[i]);
    for (int i = 0; i < e->n_progs; i++) wg_release(e->progs[i].handle);
    free(e->progs);
    for (int i = 0; i < e->n_pipes; i++) {
        wg_release(e->pipes[i].handle);
        free(e->pipes[i].source);
    }
    free(e->pipes);
    if (e->bufs)
        for (int i = 0; i < e->plan->n_buffers; i++)
            if (e->bufs[i]) wg_release(e->bufs[i]);
    free(e->bufs);
    free(e->uploaded);
    if (e->relayout)
        for (int i = 0; i < e->plan->n_tensors; i++) sl_gpu_relayout_free(&e->relayout[i]);
    free(e->relayout);
    free(e->scratch);
    free(e->dec_start);
    free(e->pre_start);
    free(e->tok);
    sl_gpu_plan_free(e->plan);
    free(e);
}

const sl_gpu_plan *sl_gpu_engine_plan(const sl_gpu_engine *e) { return e->plan; }
int32_t sl_gpu_n_ctx(const sl_gpu_engine *e) { return e->plan->n_ctx; }
int32_t sl_gpu_n_past(const sl_gpu_engine *e) { return e->n_past; }
int sl_gpu_n_programs(const sl_gpu_engine *e) { return e->n_progs; }
int sl_gpu_last_dispatches(const sl_gpu_engine *e) { return e->last_dispatches; }
bool sl_gpu_decode_fused(const sl_gpu_engine *e) { return e->fused; }
int64_t sl_gpu_pending_floats(const sl_gpu_engine *e) { return e->pending_bytes / 4; }

void sl_gpu_truncate(sl_gpu_engine *e, int32_t n_keep) {
    if (n_keep < 0) n_keep = 0;
    if (n_keep < e->n_past) {
        e->n_past = n_keep;
        e->greedy_chained = false; /* the id on the GPU followed a dropped token */
    }
}

/* ---- uploads ------------------------------------------------------------- */

/* Writes bytes at a 4-aligned offset of a buffer; a length that is not a
 * multiple of 4 is padded with zeros (only at the end of a tensor). */
static void write_padded(int32_t buf, uint64_t offset, const unsigned char *src, uint64_t len) {
    uint64_t whole = len & ~(uint64_t)3;
    if (whole) wg_buffer_write(buf, (double)offset, src, (uint32_t)whole);
    if (whole < len) {
        unsigned char tail[4] = {0};
        memcpy(tail, src + whole, (size_t)(len - whole));
        wg_buffer_write(buf, (double)(offset + whole), tail, 4);
    }
}

/* Llama 3.1-style rope scaling factors of a header-only model: they change
 * the model's frequencies and so the rope table. */
static int upload_rope_freqs(sl_gpu_engine *e, uint64_t offset, const void *data, uint64_t len, sl_error *err) {
    const sl_gguf_tensor *t = sl_gguf_find_tensor(e->m->gguf, "rope_freqs.weight");
    if (!t || !e->m->rope_freqs_pending) return 1; /* known already */
    if (len == 0) return 0;
    if (offset != 0 || len != t->nbytes || !data) return sl_err(err, "upload of 'rope_freqs.weight': it must come whole");
    const int64_t n = t->ne[0];
    float *f = malloc((size_t)n * sizeof(float));
    if (!f) return sl_err(err, "out of memory");
    sl_dequantize_row((sl_type)t->type, data, f, n);
    int rc = sl_model_set_rope_freqs(e->m, f, n, err);
    free(f);
    return rc ? -1 : upload_rope(e, err);
}

typedef struct layout_sink_ctx {
    const sl_gpu_engine *e;
    const sl_gpu_chunk *chunks; /* the tensor's */
} layout_sink_ctx;

static void layout_sink(void *ctx, int chunk, uint64_t dst, const unsigned char *bytes, uint64_t len) {
    const layout_sink_ctx *c = ctx;
    write_padded(c->e->bufs[c->chunks[chunk].buffer], dst, bytes, len);
}

/* A new upload of tensor i starts: nothing of it counted or carried. */
static void upload_restart(sl_gpu_engine *e, int i) {
    e->uploaded[i] = 0;
    sl_gpu_relayout_reset(&e->relayout[i]);
}

int sl_gpu_upload_tensor(sl_gpu_engine *e, const char *name, uint64_t offset, const void *data, uint64_t len,
                         sl_error *err) {
    const sl_gpu_plan *p = e->plan;
    if (!strcmp(name, "rope_freqs.weight")) return upload_rope_freqs(e, offset, data, len, err);
    const sl_gpu_tensor_plan *t = sl_gpu_plan_find(p, name);
    if (!t) return 1; /* not used on the GPU: skipped */
    if (t->streamed && t->layer != e->stream_layer) return 1; /* its layer's turn has not come */
    if (!t->streamed && e->stream_layer >= 0 && t->layer == e->stream_layer) return 1; /* resident already */
    uint64_t end;
    if (!sl_add_u64(offset, len, &end) || end > t->nbytes)
        return sl_err(err, "upload of '%s': bytes [%llu, +%llu) outside its %llu bytes", name,
                      (unsigned long long)offset, (unsigned long long)len, (unsigned long long)t->nbytes);
    if (len == 0) return 0;
    if (!data) return sl_err(err, "upload of '%s': no data", name);
    if (offset % 4 || (len % 4 && end != t->nbytes))
        return sl_err(err, "upload of '%s': piece [%llu, +%llu) is not 4-byte aligned", name,
                      (unsigned long long)offset, (unsigned long long)len);
    size_t ti = (size_t)(t - p->tensors);
    const sl_gpu_layout *lay = t->is_vector ? NULL : sl_gpu_layout_for(t->type, e->params.layouts);
    if (t->is_vector) {
        int32_t vb = e->bufs[p->buf_vectors];
        if (t->type == SL_TYPE_F32) {
            write_padded(vb, t->vec_offset + offset, data, len);
        } else {
            if (offset != 0 || len != t->nbytes)
                return sl_err(err, "upload of '%s': a %s vector must come whole", name, sl_type_name(t->type));
            float *f = malloc((size_t)t->cols * sizeof(float));
            if (!f) return sl_err(err, "out of memory");
            sl_dequantize_row(t->type, data, f, t->cols);
            wg_buffer_write(vb, (double)t->vec_offset, f, (uint32_t)(t->cols * 4));
            free(f);
        }
    } else if (lay) {
        /* permuted into the format's GPU layout; cut groups wait in the carry */
        if (!e->scratch && !(e->scratch = malloc(LAYOUT_SCRATCH_BYTES))) return sl_err(err, "out of memory");
        layout_sink_ctx ctx = {e, &p->chunks[t->first_chunk]};
        if (sl_gpu_relayout_put(&e->relayout[ti], lay, &p->chunks[t->first_chunk],
                                t->n_chunks, offset, data, len, e->scratch, LAYOUT_SCRATCH_BYTES, layout_sink, &ctx,
                                err))
            return -1;
    } else {
        for (int c = 0; c < t->n_chunks; c++) {
            const sl_gpu_chunk *ch = &p->chunks[t->first_chunk + c];
            uint64_t a = offset > ch->offset ? offset : ch->offset;
            uint64_t b = end < ch->offset + ch->bytes ? end : ch->offset + ch->bytes;
            if (a >= b) continue;
            write_padded(e->bufs[ch->buffer], a - ch->offset, (const unsigned char *)data + (a - offset), b - a);
        }
    }
    e->uploaded[ti] += len;
    return 0;
}

int sl_gpu_upload_model(sl_gpu_engine *e, sl_error *err) {
    for (int i = 0; i < e->plan->n_tensors; i++) {
        const sl_gpu_tensor_plan *t = &e->plan->tensors[i];
        const sl_gguf_tensor *gt = sl_gguf_find_tensor(e->m->gguf, t->name);
        if (t->streamed) continue; /* uploaded when its layer runs */
        if (!gt || !gt->data)
            return sl_err(err, "tensor '%s' has no data in memory (stream it with gpu_upload_tensor)", t->name);
        upload_restart(e, i);
        if (sl_gpu_upload_tensor(e, t->name, 0, gt->data, t->nbytes, err) < 0) return -1;
    }
    const sl_gguf_tensor *rf = sl_gguf_find_tensor(e->m->gguf, "rope_freqs.weight");
    if (rf && rf->data && sl_gpu_upload_tensor(e, rf->name, 0, rf->data, rf->nbytes, err) < 0) return -1;
    return 0;
}

int sl_gpu_check_uploaded(const sl_gpu_engine *e, sl_error *err) {
    if (e->m->rope_freqs_pending) return sl_err(err, "tensor 'rope_freqs.weight' is not uploaded");
    for (int i = 0; i < e->plan->n_tensors; i++)
        if (!e->plan->tensors[i].streamed && e->uploaded[i] != e->plan->tensors[i].nbytes)
            return sl_err(err, "tensor '%s' is not uploaded (%llu of %llu bytes)", e->plan->tensors[i].name,
                          (unsigned long long)e->uploaded[i], (unsigned long long)e->plan->tensors[i].nbytes);
    return 0;
}

/* ---- evaluation ---------------------------------------------------------- */

static int device_error(sl_error *err) {
    char msg[400];
    if (wg_error_text(msg, sizeof msg) == 0) snprintf(msg, sizeof msg, "unknown error");
    return sl_err(err, "WebGPU: %s", msg);
}

/* Submits segments of the evaluation in progress until one needs a streamed
 * layer's weights (e->stream_layer set: the host uploads them and calls
 * eval_continue) or the evaluation is submitted whole. */
static int advance(sl_gpu_engine *e, bool layer_ready, sl_error *err) {
    const sl_gpu_plan *p = e->plan;
    const int32_t V = e->m->hp.n_vocab;
    const int n_seg = n_segments(p);
    while (e->active) {
        if (e->seg == 0) {
            /* a new batch: its program kind and shape, token ids and step uniform */
            int32_t nb = e->n_tok - e->done < p->n_batch ? e->n_tok - e->done : p->n_batch;
            bool last = e->done + nb == e->n_tok;
            e->nb = nb;
            e->kind = !last ? PROG_PREFILL_NONE
                      : e->all_logits ? PROG_PREFILL_ALL
                      : nb == 1 ? PROG_DECODE
                                : PROG_PREFILL_LAST;
            e->n_cap = e->kind == PROG_DECODE ? 1 : pow2_at_least((uint32_t)nb, (uint32_t)p->n_batch);
            const uint32_t splits = write_step(e, (uint32_t)nb);
            e->n_splits = e->kind == PROG_DECODE ? splits : 0;
            uint32_t ids[256];
            for (int32_t i = 0; i < nb; i += 256) {
                int32_t k = nb - i < 256 ? nb - i : 256;
                for (int32_t j = 0; j < k; j++) ids[j] = (uint32_t)e->tok[e->done + i + j];
                wg_buffer_write(e->bufs[p->buf_tokens], (double)i * 4, ids, (uint32_t)k * 4);
            }
        } else if (!layer_ready) {
            /* the stream buffers must first hold this segment's layer */
            e->stream_layer = p->n_resident + e->seg - 1;
            for (int i = 0; i < p->n_tensors; i++)
                if (p->tensors[i].streamed && p->tensors[i].layer == e->stream_layer) upload_restart(e, i);
            return 0;
        }
        layer_ready = false;
        const program *pr = get_program(e, e->kind, e->seg, e->n_cap, e->n_splits, err);
        if (!pr) {
            e->active = false;
            return -1;
        }
        const bool final = e->seg == n_seg - 1 && e->done + e->nb == e->n_tok;
        double read = !final ? 0 : (double)(e->all_logits ? e->nb : 1) * V * 4;
        if (wg_program_run(pr->handle, e->bufs[p->buf_logits], 0, read, e->bufs[p->buf_staging]) != 0) {
            e->broken = true;
            e->active = false;
            return device_error(err);
        }
        e->last_dispatches = e->seg == 0 ? pr->n_dispatches : e->last_dispatches + pr->n_dispatches;
        if (++e->seg == n_seg) {
            e->seg = 0;
            e->n_past += e->nb;
            e->done += e->nb;
            if (final) {
                e->pending_bytes = (int64_t)read;
                e->active = false;
            }
        }
    }
    return 0;
}

int sl_gpu_eval_begin(sl_gpu_engine *e, const int32_t *tokens, int32_t n, bool all_logits, sl_error *err) {
    const sl_gpu_plan *p = e->plan;
    const int32_t V = e->m->hp.n_vocab;
    if (e->broken) return sl_err(err, "the WebGPU context failed earlier; create a new one");
    if (e->active) return sl_err(err, "an evaluation is in progress (upload its layer, then gpu_eval_continue)");
    if (e->pending_bytes) return sl_err(err, "an evaluation is pending (call gpu_eval_end first)");
    if (n <= 0 || !tokens) return sl_err(err, "nothing to evaluate");
    if ((int64_t)e->n_past + n > p->n_ctx)
        return sl_err(err, "context overflow: %d tokens in the cache + %d new exceed the context of %d (use --ctx)",
                      e->n_past, n, p->n_ctx);
    if (all_logits && n > p->n_out)
        return sl_err(err, "all logits of %d tokens requested, but this context returns at most %d rows", n, p->n_out);
    for (int32_t i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= V)
            return sl_err(err, "token id %d at position %d is out of range [0, %d)", tokens[i], i, V);
    if (sl_gpu_check_uploaded(e, err)) return -1;
    if (n > e->tok_cap) {
        int32_t *nt = realloc(e->tok, (size_t)n * sizeof *nt);
        if (!nt) return sl_err(err, "out of memory");
        e->tok = nt;
        e->tok_cap = n;
    }
    memcpy(e->tok, tokens, (size_t)n * sizeof *tokens);
    e->greedy_chained = false; /* the tokens buffer gets these ids */
    e->n_tok = n;
    e->done = 0;
    e->seg = 0;
    e->all_logits = all_logits;
    e->active = true;
    e->stream_layer = -1;
    return advance(e, false, err);
}

int32_t sl_gpu_eval_wants_layer(const sl_gpu_engine *e) { return e->active ? e->stream_layer : -1; }

int sl_gpu_eval_continue(sl_gpu_engine *e, sl_error *err) {
    if (!e->active || e->stream_layer < 0) return sl_err(err, "no evaluation is waiting for a layer");
    const sl_gpu_plan *p = e->plan;
    for (int i = 0; i < p->n_tensors; i++) {
        const sl_gpu_tensor_plan *t = &p->tensors[i];
        if (t->streamed && t->layer == e->stream_layer && e->uploaded[i] != t->nbytes)
            return sl_err(err, "tensor '%s' of streamed layer %d is not uploaded (%llu of %llu bytes)", t->name,
                          e->stream_layer, (unsigned long long)e->uploaded[i], (unsigned long long)t->nbytes);
    }
    e->stream_layer = -1;
    return advance(e, true, err);
}

void sl_gpu_eval_cancel(sl_gpu_engine *e) {
    /* batches submitted whole stay in the cache (n_past counts them); the
     * partial one wrote K/V only at positions the next evaluation rewrites */
    e->active = false;
    e->stream_layer = -1;
}

int sl_gpu_upload_layer(sl_gpu_engine *e, sl_error *err) {
    if (e->stream_layer < 0) return sl_err(err, "no layer is wanted");
    for (int i = 0; i < e->plan->n_tensors; i++) {
        const sl_gpu_tensor_plan *t = &e->plan->tensors[i];
        if (!t->streamed || t->layer != e->stream_layer) continue;
        const sl_gguf_tensor *gt = sl_gguf_find_tensor(e->m->gguf, t->name);
        if (!gt || !gt->data) return sl_err(err, "tensor '%s' has no data in memory", t->name);
        if (sl_gpu_upload_tensor(e, t->name, 0, gt->data, t->nbytes, err) < 0) return -1;
    }
    return 0;
}

int sl_gpu_eval_end(sl_gpu_engine *e, float *logits, sl_error *err) {
    if (!e->pending_bytes) return sl_err(err, "no evaluation is pending");
    uint32_t len = (uint32_t)e->pending_bytes;
    e->pending_bytes = 0;
    /* without a destination the read-back is still ended (unmapped) */
    if (wg_read_mapped(e->bufs[e->plan->buf_staging], logits, logits ? len : 0) != 0) {
        e->broken = true;
        return device_error(err);
    }
    return 0;
}

/* ---- greedy decoding on the GPU ----------------------------------------- */

static bool greedy_slot_ok(int slot) { return slot >= 0 && slot < SL_GPU_GREEDY_SLOTS; }

int sl_gpu_greedy_begin(sl_gpu_engine *e, int32_t token, int slot, sl_error *err) {
    const sl_gpu_plan *p = e->plan;
    const int32_t V = e->m->hp.n_vocab;
    if (e->broken) return sl_err(err, "the WebGPU context failed earlier; create a new one");
    if (e->active || e->pending_bytes) return sl_err(err, "an evaluation is in progress");
    if (!greedy_slot_ok(slot)) return sl_err(err, "greedy read-back slot %d (0 to %d)", slot, SL_GPU_GREEDY_SLOTS - 1);
    if (e->greedy_pending[slot]) return sl_err(err, "greedy read-back slot %d is still pending", slot);
    if (n_segments(p) != 1) return sl_err(err, "greedy decoding on the GPU needs the whole model resident");
    if (token >= V || (token < 0 && !e->greedy_chained))
        return sl_err(err, token < 0 ? "no greedy step left a token on the GPU" : "token id %d is out of range [0, %d)",
                      token, V);
    if (e->n_past + 1 > p->n_ctx)
        return sl_err(err, "context overflow: %d tokens in the cache + 1 new exceed the context of %d (use --ctx)",
                      e->n_past, p->n_ctx);
    if (sl_gpu_check_uploaded(e, err)) return -1;
    if (token >= 0) {
        uint32_t id = (uint32_t)token;
        wg_buffer_write(e->bufs[p->buf_tokens], 0, &id, 4);
    }
    const program *pr = get_program(e, PROG_GREEDY, 0, 1, write_step(e, 1), err);
    if (!pr) return -1;
    if (wg_program_run(pr->handle, e->bufs[p->buf_tokens], 0, 4, e->bufs[p->buf_greedy[slot]]) != 0) {
        e->broken = true;
        return device_error(err);
    }
    e->last_dispatches = pr->n_dispatches;
    e->n_past++;
    e->greedy_pending[slot] = true;
    e->greedy_chained = true;
    return 0;
}

bool sl_gpu_greedy_ok(const sl_gpu_engine *e) { return n_segments(e->plan) == 1; }

int32_t sl_gpu_greedy_staging(const sl_gpu_engine *e, int slot) {
    return greedy_slot_ok(slot) ? e->bufs[e->plan->buf_greedy[slot]] : 0;
}

int32_t sl_gpu_greedy_end(sl_gpu_engine *e, int slot, sl_error *err) {
    if (!greedy_slot_ok(slot) || !e->greedy_pending[slot]) return sl_err(err, "no greedy step pending in slot %d", slot);
    e->greedy_pending[slot] = false;
    uint32_t id = 0;
    if (wg_read_mapped(e->bufs[e->plan->buf_greedy[slot]], &id, 4) != 0) {
        e->broken = true;
        return device_error(err);
    }
    if (id >= (uint32_t)e->m->hp.n_vocab) return sl_err(err, "internal: the GPU chose id %u", id);
    return (int32_t)id;
}
