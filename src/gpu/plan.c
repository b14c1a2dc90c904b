/* plan.c - the static GPU memory plan (see plan.h): which buffers the WebGPU
 * engine creates, how large, and where every tensor and activation lives. */
#include "gpu/plan.h"

#include "gpu/bridge.h"
#include "gpu/kernels.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Every binding offset is a multiple of this (WebGPU allows at most 256 as
 * minStorageBufferOffsetAlignment, so it suits every device). */
#define BIND_ALIGN 256u
/* Keys one decode-attention workgroup handles. */
#define ATTN_KEYS_PER_SPLIT 256
/* Buffers stay below 2 GiB so that 32-bit offsets and sizes never wrap. */
#define MAX_BUFFER_BYTES ((uint64_t)1 << 31)

sl_gpu_caps sl_gpu_default_caps(void) {
    return (sl_gpu_caps){
        .max_binding = 128u << 20,
        .max_buffer = 256u << 20,
        .max_invocations = 256,
        .max_wg_storage = 16384,
        .max_workgroups = 65535,
        .storage_align = 256,
        .max_storage_buffers = 8,
    };
}

const char *sl_gpu_buf_kind_name(sl_gpu_buf_kind k) {
    static const char *names[SL_GPU_BUF_KIND_COUNT] = {"weights", "vectors", "rope", "kv", "activations",
                                                       "logits", "staging", "uniform", "tokens"};
    return k < SL_GPU_BUF_KIND_COUNT ? names[k] : "?";
}

static uint64_t align_up(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

/* Matrix roles of a layer (the per-layer table in build()) and the chunks
 * one role's matrix may have: bounds for the stream buffers' table. */
#define MAX_ROLES 16
#define MAX_STREAM_CHUNKS 64

typedef struct builder {
    sl_gpu_plan *p;
    int cap_buffers, cap_tensors, cap_chunks;
    uint64_t vec_used;
    /* on demand: the stream buffer of each (role, chunk), -1 until needed */
    int32_t stream_buf[MAX_ROLES][MAX_STREAM_CHUNKS];
} builder;

static int add_buffer(builder *b, sl_gpu_buf_kind kind, int usage, uint64_t size, const char *name,
                      sl_error *err) {
    sl_gpu_plan *p = b->p;
    if (p->n_buffers == b->cap_buffers) {
        int nc = b->cap_buffers ? 2 * b->cap_buffers : 64;
        sl_gpu_buffer_plan *nb = realloc(p->buffers, (size_t)nc * sizeof *nb);
        if (!nb) return sl_err(err, "out of memory");
        p->buffers = nb;
        b->cap_buffers = nc;
    }
    sl_gpu_buffer_plan *bp = &p->buffers[p->n_buffers];
    memset(bp, 0, sizeof *bp);
    bp->kind = kind;
    bp->usage = usage;
    bp->size = align_up(size ? size : 4, 4);
    snprintf(bp->name, sizeof bp->name, "%s", name);
    return p->n_buffers++;
}

/* Finds tensor `name` and checks it is [rows][cols] (a vector when rows == 1). */
static const sl_gguf_tensor *find_checked(const sl_gguf *g, const char *name, int64_t cols, int64_t rows,
                                          bool required, sl_error *err, int *status) {
    *status = 0;
    const sl_gguf_tensor *t = sl_gguf_find_tensor(g, name);
    if (!t) {
        if (required) *status = sl_err(err, "missing tensor '%s'", name);
        return NULL;
    }
    int64_t r = t->n_dims >= 2 ? t->ne[1] : 1;
    if (t->ne[0] != cols || r != rows || t->ne[2] != 1 || t->ne[3] != 1) {
        *status = sl_err(err, "tensor '%s' has shape [%lld, %lld], expected [%lld, %lld]", name,
                         (long long)t->ne[0], (long long)r, (long long)cols, (long long)rows);
        return NULL;
    }
    return t;
}

/* The buffer of chunk `ci` (bytes long) of a matrix: its own, or, for a
 * streamed layer, the stream buffer of its role and chunk index, grown to
 * the largest chunk that shares it. */
static int chunk_buffer(builder *b, const sl_gpu_tensor_plan *tp, int role, int ci, uint64_t bytes, const char *bname,
                        sl_error *err) {
    /* 16-byte multiples: kernels read weights as array<vec4<u32>> (gpu/layout.h) */
    bytes = align_up(bytes, 16);
    if (!tp->streamed) return add_buffer(b, SL_GPU_BUF_WEIGHT, WG_USAGE_STORAGE, bytes, bname, err);
    if (role < 0 || role >= MAX_ROLES || ci >= MAX_STREAM_CHUNKS)
        return sl_err(err, "tensor '%s': too many chunks to stream it (binding limit too small)", tp->name);
    int32_t *slot = &b->stream_buf[role][ci];
    if (*slot < 0) {
        /* "blk.N.attn_q.weight" -> "stream.attn_q.weight#ci" */
        const char *role_name = strchr(tp->name + 4, '.');
        char name[96];
        snprintf(name, sizeof name, "stream.%s#%d", role_name ? role_name + 1 : tp->name, ci);
        *slot = add_buffer(b, SL_GPU_BUF_WEIGHT, WG_USAGE_STORAGE, bytes, name, err);
        return *slot;
    }
    sl_gpu_buffer_plan *bp = &b->p->buffers[*slot];
    if (bytes > bp->size) bp->size = bytes;
    return *slot;
}

/* Adds tensor `name` ([rows][cols]) to the plan; layer >= 0 and role for
 * layer tensors (-1 otherwise). Matrices of layers >= n_resident stream. */
static int add_tensor(builder *b, const sl_gguf *g, const char *name, int64_t cols, int64_t rows, bool vector,
                      bool required, int layer, int role, sl_error *err) {
    sl_gpu_plan *p = b->p;
    int status;
    const sl_gguf_tensor *t = find_checked(g, name, cols, rows, required, err, &status);
    if (status) return -1;
    if (!t) return 0;
    const sl_type_info *ti = sl_type_get(t->type);
    if (!ti || (!vector && !sl_gpu_type_supported((sl_type)t->type)))
        return sl_err(err, "tensor '%s' has type %s, which the WebGPU backend does not support", name,
                      sl_type_name(t->type) ? sl_type_name(t->type) : "unknown");
    if (vector && ti->is_quantized)
        return sl_err(err, "vector tensor '%s' has quantized type %s (unsupported)", name, ti->name);
    if (p->n_tensors == b->cap_tensors) {
        int nc = b->cap_tensors ? 2 * b->cap_tensors : 64;
        sl_gpu_tensor_plan *nt = realloc(p->tensors, (size_t)nc * sizeof *nt);
        if (!nt) return sl_err(err, "out of memory");
        p->tensors = nt;
        b->cap_tensors = nc;
    }
    sl_gpu_tensor_plan *tp = &p->tensors[p->n_tensors];
    memset(tp, 0, sizeof *tp);
    snprintf(tp->name, sizeof tp->name, "%s", name);
    tp->type = (sl_type)t->type;
    tp->cols = cols;
    tp->rows = rows;
    tp->row_bytes = sl_row_size(tp->type, cols);
    tp->nbytes = tp->row_bytes * (uint64_t)rows;
    if (tp->row_bytes == 0 || tp->nbytes != t->nbytes)
        return sl_err(err, "tensor '%s': %llu bytes do not match its shape", name, (unsigned long long)t->nbytes);
    tp->is_vector = vector;
    tp->layer = layer;
    tp->streamed = !vector && layer >= p->n_resident;
    if (vector) {
        tp->vec_offset = b->vec_used;
        b->vec_used = align_up(b->vec_used + (uint64_t)cols * 4, BIND_ALIGN);
        p->n_tensors++;
        return 0;
    }

    /* Whole rows per chunk, as many as one binding holds, an even count when
     * rows are 2 mod 4 bytes long so every chunk starts 4-byte aligned. */
    uint64_t limit = p->caps.max_binding < MAX_BUFFER_BYTES ? p->caps.max_binding : MAX_BUFFER_BYTES;
    if (p->caps.max_buffer < limit) limit = p->caps.max_buffer;
    limit &= ~(uint64_t)15; /* the buffer, rounded up to 16 bytes, must fit too */
    uint64_t per = limit / tp->row_bytes;
    uint64_t step = tp->row_bytes % 4 == 0 ? 1 : tp->row_bytes % 2 == 0 ? 2 : 4;
    per -= per % step;
    if (per == 0)
        return sl_err(err, "tensor '%s': one row of %llu bytes exceeds the device's binding limit of %llu bytes",
                      name, (unsigned long long)tp->row_bytes, (unsigned long long)limit);
    tp->first_chunk = p->n_chunks;
    for (int64_t r0 = 0; r0 < rows; r0 += (int64_t)per) {
        int64_t nr = rows - r0 < (int64_t)per ? rows - r0 : (int64_t)per;
        if (p->n_chunks == b->cap_chunks) {
            int nc = b->cap_chunks ? 2 * b->cap_chunks : 64;
            sl_gpu_chunk *ncs = realloc(p->chunks, (size_t)nc * sizeof *ncs);
            if (!ncs) return sl_err(err, "out of memory");
            p->chunks = ncs;
            b->cap_chunks = nc;
        }
        char bname[96];
        if (r0 == 0 && nr == rows) snprintf(bname, sizeof bname, "%s", name);
        else snprintf(bname, sizeof bname, "%s[%lld:%lld]", name, (long long)r0, (long long)(r0 + nr));
        sl_gpu_chunk *c = &p->chunks[p->n_chunks];
        c->row0 = r0;
        c->rows = nr;
        c->offset = (uint64_t)r0 * tp->row_bytes;
        c->bytes = (uint64_t)nr * tp->row_bytes;
        int bi = chunk_buffer(b, tp, role, tp->n_chunks, c->bytes, bname, err);
        if (bi < 0) return -1;
        p->chunks[p->n_chunks].buffer = bi;
        p->n_chunks++;
        tp->n_chunks++;
    }
    if (tp->streamed) p->stream_bytes += tp->nbytes;
    p->n_tensors++;
    return 0;
}

/* ---- activations --------------------------------------------------------- */

/* Ops of one layer, in order (an activation lives from its first to its last):
 *   0 attention norm      X -> XB_ATT          5 FFN norm   X -> XB_FFN
 *   1 Q, K, V products    XB_ATT -> Q, K, V    6 gate       XB_FFN -> GATE
 *   2 RoPE, KV store      Q; K, V -> cache     7 up         XB_FFN, GATE -> UP
 *   3 attention           Q -> PART -> ATT     8 down       UP -> X (+=)
 *   4 output projection   ATT -> X (+=)        9 final norm + head  X -> XB_OUT -> logits
 * Only X crosses layers, so one layer's pattern gives every overlap. */
static void plan_activations(sl_gpu_plan *p, uint64_t *arena_size) {
    const sl_hparams *hp = &p->hp;
    const uint64_t B = (uint64_t)p->n_batch, E = (uint64_t)hp->n_embd * 4,
                   QD = (uint64_t)hp->n_head * hp->head_dim * 4, KD = (uint64_t)hp->n_head_kv * hp->head_dim * 4,
                   F = (uint64_t)hp->n_ff * 4;
    const struct {
        const char *name;
        uint64_t size;
        int first, last;
    } spec[SL_ACT_COUNT] = {
        [SL_ACT_X] = {"x", B * E, 0, 9},
        [SL_ACT_XB_ATT] = {"xb_att", B * E, 0, 1},
        [SL_ACT_Q] = {"q", B * QD, 1, 3},
        [SL_ACT_K] = {"k", B * KD, 1, 2},
        [SL_ACT_V] = {"v", B * KD, 1, 2},
        [SL_ACT_PART] = {"attn_part", (uint64_t)hp->n_head * p->n_splits * ((uint64_t)hp->head_dim + 2) * 4, 3, 3},
        [SL_ACT_ATT] = {"att", B * QD, 3, 4},
        [SL_ACT_XB_FFN] = {"xb_ffn", B * E, 5, 7},
        [SL_ACT_GATE] = {"gate", B * F, 6, 7},
        [SL_ACT_UP] = {"up", B * F, 7, 8},
        [SL_ACT_XB_OUT] = {"xb_out", B * E, 9, 9},
    };
    int order[SL_ACT_COUNT];
    for (int i = 0; i < SL_ACT_COUNT; i++) {
        p->acts[i] = (sl_gpu_act_plan){spec[i].name, 0, spec[i].size, spec[i].first, spec[i].last};
        order[i] = i;
    }
    /* largest first, ties in enum order (deterministic) */
    for (int i = 1; i < SL_ACT_COUNT; i++) {
        for (int j = i; j > 0 && p->acts[order[j]].size > p->acts[order[j - 1]].size; j--) {
            int t = order[j];
            order[j] = order[j - 1];
            order[j - 1] = t;
        }
    }
    uint64_t end = 0;
    for (int oi = 0; oi < SL_ACT_COUNT; oi++) {
        sl_gpu_act_plan *a = &p->acts[order[oi]];
        /* lowest aligned offset clear of every placed activation alive at the same time */
        uint64_t off = 0;
        for (bool moved = true; moved;) {
            moved = false;
            for (int pj = 0; pj < oi; pj++) {
                const sl_gpu_act_plan *o = &p->acts[order[pj]];
                bool live_together = a->first <= o->last && o->first <= a->last;
                if (live_together && off < o->offset + o->size && o->offset < off + a->size) {
                    off = align_up(o->offset + o->size, BIND_ALIGN);
                    moved = true;
                }
            }
        }
        a->offset = off;
        if (off + a->size > end) end = off + a->size;
    }
    *arena_size = end;
}

/* ---- the plan ------------------------------------------------------------ */

/* The plan with layers [0, n_resident) resident, the rest streamed; the
 * budget is not checked here. */
static sl_gpu_plan *build(const sl_gguf *g, const sl_hparams *hp, const sl_gpu_params *params,
                          const sl_gpu_caps *caps, int32_t n_resident, sl_error *err) {
    sl_gpu_plan *p = calloc(1, sizeof *p);
    if (!p) {
        sl_err(err, "out of memory");
        return NULL;
    }
    builder b = {.p = p};
    memset(b.stream_buf, 0xff, sizeof b.stream_buf); /* all -1 */
    p->n_resident = n_resident;
    p->hp = *hp;
    p->caps = *caps;
    p->kv_f16 = params->kv_f16 && caps->has_f16;
    if (params->max_binding > 0 && params->max_binding < p->caps.max_binding)
        p->caps.max_binding = params->max_binding & ~(uint64_t)3;
    if (p->caps.max_binding < 4096 || p->caps.max_buffer < 4096) {
        sl_err(err, "the device's buffer limits (%llu, %llu bytes) are too small",
               (unsigned long long)p->caps.max_binding, (unsigned long long)p->caps.max_buffer);
        goto fail;
    }
    const uint64_t limit = p->caps.max_binding < p->caps.max_buffer ? p->caps.max_binding : p->caps.max_buffer;

    p->n_ctx = params->n_ctx > 0 ? params->n_ctx : (hp->n_ctx_train < 4096 ? hp->n_ctx_train : 4096);
    p->n_batch = params->n_batch > 0 ? params->n_batch : 256;
    if (p->n_batch > p->n_ctx) p->n_batch = p->n_ctx;
    /* the widest activation row must fit one binding n_batch times */
    int64_t widest = hp->n_embd;
    if ((int64_t)hp->n_head * hp->head_dim > widest) widest = (int64_t)hp->n_head * hp->head_dim;
    if (hp->n_ff > widest) widest = hp->n_ff;
    if ((uint64_t)p->n_batch * (uint64_t)widest * 4 > limit) p->n_batch = (int32_t)(limit / ((uint64_t)widest * 4));
    p->n_out = params->n_out > 0 ? params->n_out : 1;
    if (p->n_out > p->n_batch) p->n_out = p->n_batch;
    if ((uint64_t)p->n_out * (uint64_t)hp->n_vocab * 4 > limit)
        p->n_out = (int32_t)(limit / ((uint64_t)hp->n_vocab * 4));
    if (p->n_batch < 1 || p->n_out < 1) {
        sl_err(err, "one row of activations or logits exceeds the device's binding limit of %llu bytes",
               (unsigned long long)limit);
        goto fail;
    }
    p->attn_keys_per_split = ATTN_KEYS_PER_SPLIT;
    p->n_splits = (p->n_ctx + ATTN_KEYS_PER_SPLIT - 1) / ATTN_KEYS_PER_SPLIT;

    /* weights */
    const int64_t E = hp->n_embd, QD = (int64_t)hp->n_head * hp->head_dim,
                  KD = (int64_t)hp->n_head_kv * hp->head_dim, F = hp->n_ff, V = hp->n_vocab;
    p->tied = sl_gguf_find_tensor(g, "output.weight") == NULL;
    if (add_tensor(&b, g, "token_embd.weight", E, V, false, true, -1, -1, err) ||
        add_tensor(&b, g, "output_norm.weight", E, 1, true, true, -1, -1, err) ||
        add_tensor(&b, g, "output.weight", E, V, false, false, -1, -1, err))
        goto fail;
    for (int l = 0; l < hp->n_layer; l++) {
        static const struct {
            const char *fmt;
            int cols, rows; /* 0 E, 1 QD, 2 KD, 3 F, 4 head_dim, 5 (vector) */
            bool vector, required;
        } lt[] = {
            {"blk.%d.attn_norm.weight", 0, 5, true, true},   {"blk.%d.attn_q.weight", 0, 1, false, true},
            {"blk.%d.attn_k.weight", 0, 2, false, true},     {"blk.%d.attn_v.weight", 0, 2, false, true},
            {"blk.%d.attn_output.weight", 1, 0, false, true}, {"blk.%d.attn_q.bias", 1, 5, true, false},
            {"blk.%d.attn_k.bias", 2, 5, true, false},       {"blk.%d.attn_v.bias", 2, 5, true, false},
            {"blk.%d.attn_q_norm.weight", 4, 5, true, false}, {"blk.%d.attn_k_norm.weight", 4, 5, true, false},
            {"blk.%d.ffn_norm.weight", 0, 5, true, true},    {"blk.%d.ffn_gate.weight", 0, 3, false, true},
            {"blk.%d.ffn_up.weight", 0, 3, false, true},     {"blk.%d.ffn_down.weight", 3, 0, false, true},
        };
        const int64_t dims[6] = {E, QD, KD, F, hp->head_dim, 1};
        for (size_t i = 0; i < sizeof lt / sizeof lt[0]; i++) {
            char name[SL_GGUF_MAX_NAME];
            snprintf(name, sizeof name, lt[i].fmt, l);
            bool required = lt[i].required || (hp->arch == SL_ARCH_QWEN2 && strstr(lt[i].fmt, ".bias")) ||
                            (hp->arch == SL_ARCH_QWEN3 && strstr(lt[i].fmt, "_norm.weight") &&
                             strstr(lt[i].fmt, "attn_"));
            if (add_tensor(&b, g, name, dims[lt[i].cols], dims[lt[i].rows], lt[i].vector, required, l, (int)i, err))
                goto fail;
        }
    }
    p->rope_freq_offset = b.vec_used;
    b.vec_used = align_up(b.vec_used + (uint64_t)(hp->n_rot / 2) * 4, BIND_ALIGN);
    if (b.vec_used > limit) {
        sl_err(err, "norm and bias vectors (%llu bytes) exceed the device's binding limit",
               (unsigned long long)b.vec_used);
        goto fail;
    }
    p->buf_vectors = add_buffer(&b, SL_GPU_BUF_VECTORS, WG_USAGE_STORAGE, b.vec_used, "vectors", err);
    if (p->buf_vectors < 0) goto fail;

    uint64_t rope_bytes = (uint64_t)p->n_ctx * (uint64_t)hp->n_rot * 4;
    uint64_t kv_layer = align_up((uint64_t)p->n_ctx * (uint64_t)KD * (p->kv_f16 ? 2 : 4), 4);
    if (rope_bytes > limit || kv_layer > limit) {
        sl_err(err, "a context of %d tokens needs %llu bytes of KV cache per layer, more than the device's "
                    "binding limit of %llu bytes (use a smaller --ctx)",
               p->n_ctx, (unsigned long long)kv_layer, (unsigned long long)limit);
        goto fail;
    }
    p->buf_rope = add_buffer(&b, SL_GPU_BUF_ROPE, WG_USAGE_STORAGE, rope_bytes, "rope", err);
    if (p->buf_rope < 0) goto fail;
    p->buf_k = calloc((size_t)hp->n_layer, sizeof *p->buf_k);
    p->buf_v = calloc((size_t)hp->n_layer, sizeof *p->buf_v);
    if (!p->buf_k || !p->buf_v) {
        sl_err(err, "out of memory");
        goto fail;
    }
    for (int l = 0; l < hp->n_layer; l++) {
        char name[64];
        snprintf(name, sizeof name, "kv.k.%d", l);
        if ((p->buf_k[l] = add_buffer(&b, SL_GPU_BUF_KV, WG_USAGE_STORAGE, kv_layer, name, err)) < 0) goto fail;
        snprintf(name, sizeof name, "kv.v.%d", l);
        if ((p->buf_v[l] = add_buffer(&b, SL_GPU_BUF_KV, WG_USAGE_STORAGE, kv_layer, name, err)) < 0) goto fail;
    }

    uint64_t arena;
    plan_activations(p, &arena);
    for (int i = 0; i < SL_ACT_COUNT; i++) {
        if (p->acts[i].size > limit) {
            sl_err(err, "activation '%s' (%llu bytes) exceeds the device's binding limit", p->acts[i].name,
                   (unsigned long long)p->acts[i].size);
            goto fail;
        }
    }
    if (arena > p->caps.max_buffer || arena > MAX_BUFFER_BYTES) {
        sl_err(err, "activations need %llu bytes in one buffer, more than the device allows (use a smaller batch)",
               (unsigned long long)arena);
        goto fail;
    }
    uint64_t logits = (uint64_t)p->n_out * (uint64_t)V * 4;
    if ((p->buf_act = add_buffer(&b, SL_GPU_BUF_ACTIVATIONS, WG_USAGE_STORAGE, arena, "activations", err)) < 0 ||
        (p->buf_logits = add_buffer(&b, SL_GPU_BUF_LOGITS, WG_USAGE_STORAGE, logits, "logits", err)) < 0 ||
        (p->buf_staging = add_buffer(&b, SL_GPU_BUF_STAGING, WG_USAGE_READBACK, logits, "staging", err)) < 0 ||
        (p->buf_uniform = add_buffer(&b, SL_GPU_BUF_UNIFORM, WG_USAGE_UNIFORM, 16, "step", err)) < 0 ||
        (p->buf_tokens = add_buffer(&b, SL_GPU_BUF_TOKENS, WG_USAGE_STORAGE, (uint64_t)p->n_batch * 4, "tokens",
                                    err)) < 0 ||
        (p->buf_argmax = add_buffer(&b, SL_GPU_BUF_LOGITS, WG_USAGE_STORAGE, (uint64_t)sl_gpu_argmax_parts((uint32_t)V) * 8,
                                    "argmax", err)) < 0)
        goto fail;
    for (int i = 0; i < SL_GPU_GREEDY_SLOTS; i++) {
        char name[16];
        snprintf(name, sizeof name, "greedy.%d", i);
        if ((p->buf_greedy[i] = add_buffer(&b, SL_GPU_BUF_STAGING, WG_USAGE_READBACK, 4, name, err)) < 0) goto fail;
    }

    for (int i = 0; i < p->n_buffers; i++) {
        p->total += p->buffers[i].size;
        p->by_kind[p->buffers[i].kind] += p->buffers[i].size;
    }
    return p;
fail:
    sl_gpu_plan_free(p);
    return NULL;
}

sl_gpu_plan *sl_gpu_plan_build(const sl_gguf *g, const sl_hparams *hp, const sl_gpu_params *params,
                               const sl_gpu_caps *caps, sl_error *err) {
    sl_gpu_plan *p = build(g, hp, params, caps, hp->n_layer, err);
    if (!p || params->budget == 0 || p->total <= params->budget) return p;
    char sum[512];
    const double MiB = 1 << 20;
    if (!params->on_demand) {
        sl_err(err, "the model needs %.1f MiB of GPU memory but the budget is %.1f MiB (%s)", (double)p->total / MiB,
               (double)params->budget / MiB, sl_gpu_plan_summary(p, sum, sizeof sum));
        sl_gpu_plan_free(p);
        return NULL;
    }
    /* on demand: as many leading layers resident as fit beside the stream
     * buffers (one layer's matrices) and everything else */
    const uint64_t full = p->total;
    for (int32_t r = hp->n_layer - 1; r >= 0; r--) {
        sl_gpu_plan_free(p);
        p = build(g, hp, params, caps, r, err);
        if (!p || p->total <= params->budget) return p;
    }
    sl_err(err, "the model needs %.1f MiB of GPU memory (%.1f MiB with its layers streamed one at a time) but the "
                "budget is %.1f MiB (%s)",
           (double)full / MiB, (double)p->total / MiB, (double)params->budget / MiB,
           sl_gpu_plan_summary(p, sum, sizeof sum));
    sl_gpu_plan_free(p);
    return NULL;
}

void sl_gpu_plan_free(sl_gpu_plan *p) {
    if (!p) return;
    free(p->buffers);
    free(p->tensors);
    free(p->chunks);
    free(p->buf_k);
    free(p->buf_v);
    free(p);
}

const sl_gpu_tensor_plan *sl_gpu_plan_find(const sl_gpu_plan *p, const char *name) {
    for (int i = 0; i < p->n_tensors; i++)
        if (!strcmp(p->tensors[i].name, name)) return &p->tensors[i];
    return NULL;
}

char *sl_gpu_plan_summary(const sl_gpu_plan *p, char *buf, size_t cap) {
    const double MiB = 1 << 20;
    int n = snprintf(buf, cap,
                     "gpu plan: %.1f MiB in %d buffers (weights %.1f, kv %.1f %s for %d tokens, activations %.1f for "
                     "%d tokens, rope %.1f, logits+staging %.1f, vectors %.2f)",
                     (double)p->total / MiB, p->n_buffers, (double)p->by_kind[SL_GPU_BUF_WEIGHT] / MiB,
                     (double)p->by_kind[SL_GPU_BUF_KV] / MiB, p->kv_f16 ? "f16" : "f32", p->n_ctx,
                     (double)p->by_kind[SL_GPU_BUF_ACTIVATIONS] / MiB, p->n_batch,
                     (double)p->by_kind[SL_GPU_BUF_ROPE] / MiB,
                     (double)(p->by_kind[SL_GPU_BUF_LOGITS] + p->by_kind[SL_GPU_BUF_STAGING]) / MiB,
                     (double)p->by_kind[SL_GPU_BUF_VECTORS] / MiB);
    if (p->n_resident < p->hp.n_layer && n > 0 && (size_t)n < cap)
        snprintf(buf + n, cap - (size_t)n, "; on demand: %d of %d layers resident, %.1f MiB streamed per pass",
                 p->n_resident, p->hp.n_layer, (double)p->stream_bytes / MiB);
    return buf;
}
