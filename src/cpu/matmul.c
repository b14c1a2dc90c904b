/* matmul.c - matrix products for the CPU forward pass (matmul.h): weight
 * packing for the blocked kernels (layouts in gemm.h), activation
 * quantization, the portable reference kernel over packed groups, and the
 * driver that splits rows over the thread pool.
 *
 * A product runs as one pool task in two phases: every thread quantizes
 * (and RMS-normalizes) some of the tokens, a barrier, then threads claim
 * chunks of rows until none are left. A one-token product skips the
 * barrier: every thread quantizes the token into its own copy, which costs
 * less than the wait (and on a busy machine, a waiting thread may be the
 * one that is descheduled). Decoding a few tokens is bound by
 * memory: about CHUNKS_PER_THREAD long chunks per thread, so each streams
 * long contiguous runs of weights yet a thread that falls behind can be
 * helped. Prefill is bound by arithmetic: small chunks, which balance best,
 * and tokens in blocks whose activations stay in the L2 cache. */
#include "cpu/matmul.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "cpu/gemm.h"
#include "quant/quant_impl.h"

#define CHUNKS_PER_THREAD 8
#define DECODE_MAX_TOKENS 4
/* Products of up to this many tokens quantize them on every thread (no barrier). */
#define PRIVATE_ACT_MAX_TOKENS 1
#define PREFILL_CHUNK_ROWS 32
/* Tokens whose activations are reused against a chunk of rows while in cache. */
#define TOKEN_BLOCK 64

/* ---- packed layouts ------------------------------------------------------ */

sl_type sl_gemm_layout_type(sl_gemm_layout layout) {
    switch (layout) {
    case SL_GEMM_Q4_0:
    case SL_GEMM_Q4_0_F32: return SL_TYPE_Q4_0;
    case SL_GEMM_Q8_0:
    case SL_GEMM_Q8_0_F32: return SL_TYPE_Q8_0;
    case SL_GEMM_Q4_K:
    case SL_GEMM_Q4_K_F32: return SL_TYPE_Q4_K;
    case SL_GEMM_Q6_K:
    case SL_GEMM_Q6_K_I8: return SL_TYPE_Q6_K;
    default: return SL_TYPE_COUNT;
    }
}

int sl_gemm_block_elems(sl_gemm_layout layout) {
    switch (sl_gemm_layout_type(layout)) {
    case SL_TYPE_Q4_0:
    case SL_TYPE_Q8_0: return 32;
    case SL_TYPE_Q4_K:
    case SL_TYPE_Q6_K: return QK_K;
    default: return 0;
    }
}

/* Bytes of each f16 scale of the block (d, and dmin) in the layout: 2 or 4 (as f32). */
static size_t scale_width(sl_gemm_layout layout) {
    return layout == SL_GEMM_Q4_0_F32 || layout == SL_GEMM_Q8_0_F32 || layout == SL_GEMM_Q4_K_F32 ||
                   layout == SL_GEMM_Q6_K_I8
               ? 4
               : 2;
}

size_t sl_gemm_quant_bytes(sl_gemm_layout layout, int G) {
    switch (layout) {
    case SL_GEMM_Q4_0:
    case SL_GEMM_Q4_0_F32: return 16 * (size_t)G;
    case SL_GEMM_Q8_0:
    case SL_GEMM_Q8_0_F32: return 32 * (size_t)G;
    case SL_GEMM_Q4_K:
    case SL_GEMM_Q4_K_F32: return 128 * (size_t)G;
    case SL_GEMM_Q6_K: return 192 * (size_t)G;
    case SL_GEMM_Q6_K_I8: return 256 * (size_t)G;
    default: return 0;
    }
}

size_t sl_gemm_scale_bytes(sl_gemm_layout layout, int G) {
    const size_t ds = scale_width(layout);
    switch (sl_gemm_layout_type(layout)) {
    case SL_TYPE_Q4_0:
    case SL_TYPE_Q8_0: return ds * (size_t)G;
    case SL_TYPE_Q4_K: return (2 * ds + 16) * (size_t)G;
    case SL_TYPE_Q6_K: return (ds + 16) * (size_t)G;
    default: return 0;
    }
}

size_t sl_gemm_block_bytes(sl_gemm_layout layout, int G) {
    return sl_gemm_quant_bytes(layout, G) + sl_gemm_scale_bytes(layout, G);
}

/* Row r's scale in a [G] array of ds-byte scales at p: stored from the
 * block's f16 (as f32 when ds is 4, exactly), read as a float. */
static void put_scale(uint8_t *p, size_t ds, int r, const uint8_t f16[2]) {
    if (ds == 2) {
        memcpy(p + 2 * r, f16, 2);
    } else {
        float f = sl_load_f16(f16);
        memcpy(p + 4 * r, &f, 4);
    }
}
static float get_scale(const uint8_t *p, size_t ds, int r) {
    return ds == 2 ? sl_load_f16(p + 2 * r) : sl_load_f32(p + 4 * r);
}

/* The 6-bit levels (0..63) of a Q6_K block, element order. */
static void q6_K_levels(const block_q6_K *b, uint8_t q[QK_K]) {
    for (int h = 0; h < 2; h++) {
        const uint8_t *ql = b->ql + 64 * h, *qh = b->qh + 32 * h;
        uint8_t *o = q + 128 * h;
        for (int l = 0; l < 32; l++) {
            o[l] = (uint8_t)((ql[l] & 0xF) | ((qh[l] & 3) << 4));
            o[l + 32] = (uint8_t)((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4));
            o[l + 64] = (uint8_t)((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4));
            o[l + 96] = (uint8_t)((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4));
        }
    }
}

/* Block column b of row r of the group into its quant (qp) and scale (sp)
 * parts. A run of 4 bytes is copied as one 32-bit word. */
static void copy_run(uint8_t *dst, const uint8_t *src, uint32_t flip) {
    uint32_t v;
    memcpy(&v, src, 4);
    v ^= flip;
    memcpy(dst, &v, 4);
}

static void pack_block(sl_gemm_layout layout, int G, int r, const uint8_t *blk, uint8_t *qp, uint8_t *sp) {
    const size_t ds = scale_width(layout);
    switch (sl_gemm_layout_type(layout)) {
    case SL_TYPE_Q4_0: {
        const block_q4_0 *x = (const block_q4_0 *)blk;
        put_scale(sp, ds, r, x->d);
        for (int k = 0; k < 4; k++) copy_run(qp + (k * G + r) * 4, x->qs + 4 * k, 0);
        break;
    }
    case SL_TYPE_Q8_0: {
        const block_q8_0 *x = (const block_q8_0 *)blk;
        put_scale(sp, ds, r, x->d);
        for (int k = 0; k < 8; k++) copy_run(qp + (k * G + r) * 4, (const uint8_t *)x->qs + 4 * k, 0x80808080u);
        break;
    }
    case SL_TYPE_Q4_K: {
        const block_q4_K *x = (const block_q4_K *)blk;
        uint8_t *sc = sp + 2 * ds * G, *mins = sc + 8 * G;
        put_scale(sp, ds, r, x->d);
        put_scale(sp + ds * G, ds, r, x->dmin);
        for (int j = 0; j < 8; j++) {
            uint8_t s, m;
            sl_get_scale_min_k4(j, x->scales, &s, &m);
            sc[j * G + r] = s;
            mins[((j / 2) * G + r) * 2 + j % 2] = m;
        }
        for (int k = 0; k < 32; k++) copy_run(qp + (k * G + r) * 4, x->qs + 4 * k, 0);
        break;
    }
    case SL_TYPE_Q6_K: {
        const block_q6_K *x = (const block_q6_K *)blk;
        uint8_t q[QK_K];
        put_scale(sp, ds, r, x->d);
        for (int s = 0; s < 16; s++) sp[ds * G + s * G + r] = (uint8_t)x->scales[s];
        q6_K_levels(x, q);
        if (layout == SL_GEMM_Q6_K_I8) {
            /* q - 32 in -32..31: the two's complement byte */
            for (int j = 0; j < 64; j++)
                for (int i = 0; i < 4; i++) qp[(j * G + r) * 4 + i] = (uint8_t)(q[4 * j + i] - 32);
            break;
        }
        for (int p = 0; p < 32; p++)
            for (int i = 0; i < 4; i++)
                qp[(p * G + r) * 4 + i] = (uint8_t)((q[4 * p + i] & 0xF) | (q[4 * (p + 32) + i] & 0xF) << 4);
        uint8_t *hp = qp + 128 * G;
        for (int u = 0; u < 16; u++)
            for (int i = 0; i < 4; i++)
                hp[(u * G + r) * 4 + i] = (uint8_t)((q[4 * u + i] >> 4) | (q[4 * (u + 16) + i] >> 4) << 2 |
                                                    (q[4 * (u + 32) + i] >> 4) << 4 | (q[4 * (u + 48) + i] >> 4) << 6);
        break;
    }
    default: break;
    }
}

void sl_gemm_pack_group(sl_gemm_layout layout, int G, const void *w, size_t row_bytes, int64_t rows, int64_t cols,
                        int64_t r0, uint8_t *out) {
    /* rows past the end are packed from a block of zeros: scale 0 */
    static const uint8_t zero_block[sizeof(block_q8_K)];
    const int be = sl_gemm_block_elems(layout);
    if (be == 0) return;
    const int64_t nb = cols / be;
    const size_t qb = sl_gemm_quant_bytes(layout, G), sb = sl_gemm_scale_bytes(layout, G);
    const size_t src_block = sl_type_get((int)sl_gemm_layout_type(layout))->type_size;
    for (int r = 0; r < G; r++) {
        const uint8_t *row = r0 + r < rows ? (const uint8_t *)w + (size_t)(r0 + r) * row_bytes : NULL;
        for (int64_t b = 0; b < nb; b++)
            pack_block(layout, G, r, row ? row + (size_t)b * src_block : zero_block,
                       out + sl_gemm_quant_offset(b, qb, sb), out + sl_gemm_scale_offset(nb, b, qb, sb));
    }
}

/* ---- the reference kernel over packed groups ---------------------------- */

/* The 4 levels of row r, run k of a [G][4]-run plane. */
static const uint8_t *run(const uint8_t *plane, int G, int k, int r) { return plane + ((size_t)k * G + r) * 4; }

static float ref_row(sl_gemm_layout layout, int G, const uint8_t *group, const sl_gemm_act *a, int32_t t, int r) {
    const int be = sl_gemm_block_elems(layout);
    const int64_t nb = a->cols / be;
    const size_t qb = sl_gemm_quant_bytes(layout, G), sb = sl_gemm_scale_bytes(layout, G), ds = scale_width(layout);
    const int8_t *y = a->qs + (size_t)t * a->cols;
    float sum = 0;
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *qp = group + sl_gemm_quant_offset(b, qb, sb), *sp = group + sl_gemm_scale_offset(nb, b, qb, sb);
        const int8_t *yb = y + b * be;
        switch (layout) {
        case SL_GEMM_Q4_0:
        case SL_GEMM_Q4_0_F32: {
            int isum = 0;
            for (int k = 0; k < 4; k++)
                for (int i = 0; i < 4; i++) {
                    uint8_t q = run(qp, G, k, r)[i];
                    isum += ((q & 0xF) - 8) * yb[4 * k + i] + ((q >> 4) - 8) * yb[16 + 4 * k + i];
                }
            sum += (float)isum * get_scale(sp, ds, r) * a->d[(size_t)t * nb + b];
            break;
        }
        case SL_GEMM_Q8_0:
        case SL_GEMM_Q8_0_F32: {
            int isum = 0;
            for (int k = 0; k < 8; k++)
                for (int i = 0; i < 4; i++) isum += ((int)run(qp, G, k, r)[i] - 128) * yb[4 * k + i];
            sum += (get_scale(sp, ds, r) * a->d[(size_t)t * nb + b]) * (float)isum;
            break;
        }
        case SL_GEMM_Q4_K:
        case SL_GEMM_Q4_K_F32: {
            int isum = 0, msum = 0;
            for (int c = 0; c < 4; c++)
                for (int g = 0; g < 8; g++)
                    for (int i = 0; i < 4; i++) {
                        uint8_t q = run(qp, G, 8 * c + g, r)[i];
                        isum += sp[2 * ds * G + (2 * c) * G + r] * (q & 0xF) * yb[64 * c + 4 * g + i];
                        isum += sp[2 * ds * G + (2 * c + 1) * G + r] * (q >> 4) * yb[64 * c + 32 + 4 * g + i];
                    }
            for (int j = 0; j < 8; j++)
                msum += sp[(2 * ds + 8) * G + ((j / 2) * G + r) * 2 + j % 2] * a->s32[(size_t)t * (a->cols / 32) + 8 * b + j];
            float yd = a->d[(size_t)t * nb + b];
            sum += get_scale(sp, ds, r) * yd * (float)isum - get_scale(sp + ds * G, ds, r) * yd * (float)msum;
            break;
        }
        case SL_GEMM_Q6_K: {
            int isum = 0;
            for (int j = 0; j < 64; j++) {
                int sub = 0;
                for (int i = 0; i < 4; i++) {
                    int lo = (run(qp, G, j % 32, r)[i] >> (j < 32 ? 0 : 4)) & 0xF;
                    int hi = (run(qp + 128 * G, G, j % 16, r)[i] >> (2 * (j / 16))) & 3;
                    sub += ((lo | hi << 4) - 32) * yb[4 * j + i];
                }
                isum += (int8_t)sp[ds * G + (j / 4) * G + r] * sub;
            }
            sum += (get_scale(sp, ds, r) * a->d[(size_t)t * nb + b]) * (float)isum;
            break;
        }
        case SL_GEMM_Q6_K_I8: {
            int isum = 0;
            for (int sub = 0; sub < 16; sub++) {
                int ssum = 0;
                for (int j = 4 * sub; j < 4 * sub + 4; j++)
                    for (int i = 0; i < 4; i++) ssum += (int8_t)run(qp, G, j, r)[i] * yb[4 * j + i];
                isum += (int8_t)sp[ds * G + sub * G + r] * ssum;
            }
            sum += (get_scale(sp, ds, r) * a->d[(size_t)t * nb + b]) * (float)isum;
            break;
        }
        default: return NAN;
        }
    }
    return sum;
}

void sl_gemm_ref(sl_gemm_layout layout, int G, const uint8_t *group, const sl_gemm_act *act, int32_t t0, int32_t n,
                 float *y, size_t ldy, int valid) {
    for (int32_t t = 0; t < n; t++)
        for (int r = 0; r < valid; r++) y[(size_t)t * ldy + r] = ref_row(layout, G, group, act, t0 + t, r);
}

/* ---- weights -------------------------------------------------------------- */

/* The kernel family that packs this type on this CPU, or NULL. The choice
 * follows the quant backend (sl_quant_set_backend), so tests that force the
 * scalar kernels get plain rows. */
static const sl_gemm_kernels *kernels_for(sl_type type) {
    const char *backend = sl_quant_backend();
    (void)backend;
    (void)type;
#if defined(__x86_64__)
    if (strcmp(backend, "avx512") == 0 && sl_gemm_avx512.layout[type]) return &sl_gemm_avx512;
#endif
#if defined(__wasm_simd128__)
    if (strcmp(backend, "simd128") == 0 && sl_gemm_simd128.layout[type]) return &sl_gemm_simd128;
#endif
    return NULL;
}

typedef struct pack_task {
    sl_mm_weight *mw;
    atomic_long next;
} pack_task;

static void pack_task_run(void *arg, int ith, int nth) {
    (void)ith;
    (void)nth;
    pack_task *t = arg;
    sl_mm_weight *mw = t->mw;
    const sl_weight *w = mw->w;
    for (;;) {
        long g = atomic_fetch_add(&t->next, 1);
        if (g >= mw->n_groups) break;
        sl_gemm_pack_group(mw->k->layout[w->type], mw->k->group_rows, w->data, w->row_bytes, w->rows, w->cols,
                           (int64_t)g * mw->k->group_rows, mw->packed + (size_t)g * mw->group_bytes);
    }
}

int sl_mm_weight_init(sl_mm_weight *mw, const sl_weight *w, bool pack, sl_pool *pool, sl_error *err) {
    memset(mw, 0, sizeof *mw);
    mw->w = w;
    const sl_gemm_kernels *k = pack && w->data ? kernels_for(w->type) : NULL;
    const sl_gemm_layout layout = k ? k->layout[w->type] : SL_GEMM_NONE;
    if (!k || w->cols % sl_gemm_block_elems(layout) != 0) return 0;
    const int G = k->group_rows;
    /* groups start on 64-byte boundaries, for aligned vector loads */
    size_t bytes = (size_t)(w->cols / sl_gemm_block_elems(layout)) * sl_gemm_block_bytes(layout, G);
    mw->group_bytes = (bytes + 63) / 64 * 64;
    mw->n_groups = (w->rows + G - 1) / G;
    size_t total;
    if (__builtin_mul_overflow(mw->group_bytes, (size_t)mw->n_groups, &total)) return sl_err(err, "weight too large");
    mw->packed = sl_alloc_large(total);
    if (!mw->packed) return sl_err(err, "out of memory packing a %lld x %lld weight", (long long)w->rows,
                                   (long long)w->cols);
    mw->k = k;
    pack_task t = {.mw = mw};
    atomic_init(&t.next, 0);
    sl_pool_run(pool, pack_task_run, &t);
    return 0;
}

void sl_mm_weight_free(sl_mm_weight *mw) {
    sl_free_large(mw->packed);
    memset(mw, 0, sizeof *mw);
}

/* ---- activations ------------------------------------------------------------ */

/* Rounds up to 64 bytes, so each array of a buffer starts aligned. */
static size_t up64(size_t n) { return (n + 63) / 64 * 64; }

size_t sl_gemm_act_bytes(sl_type type, int32_t n, int64_t cols, bool q16) {
    const size_t N = (size_t)n, C = (size_t)cols;
    size_t bytes = up64(N * C) + (q16 ? up64(N * C * 2) : 0);
    if (type == SL_TYPE_Q8_0) return bytes + 3 * up64(N * (C / 32) * 4);
    return bytes + up64(N * (C / QK_K) * 4) + up64(N * (C / 32) * 2) + up64(N * (C / 16) * 4);
}

void sl_gemm_act_init(sl_gemm_act *a, sl_type type, void *buf, int32_t n, int64_t cols, bool q16) {
    const size_t N = (size_t)n, C = (size_t)cols;
    char *p = buf;
    memset(a, 0, sizeof *a);
    a->type = type;
    a->cols = cols;
    a->qs = (const int8_t *)p, p += up64(N * C);
    if (q16) a->q16 = (const int16_t *)p, p += up64(N * C * 2);
    if (type == SL_TYPE_Q8_0) {
        a->d = (const float *)p, p += up64(N * (C / 32) * 4);
        a->c8 = (const int32_t *)p, p += up64(N * (C / 32) * 4);
        a->c128 = (const int32_t *)p;
    } else {
        a->d = (const float *)p, p += up64(N * (C / QK_K) * 4);
        a->s32 = (const int16_t *)p, p += up64(N * (C / 32) * 2);
        a->c16 = (const int32_t *)p;
    }
}

/* The arrays are the caller's buffer (sl_gemm_act_init): written through casts. */
void sl_gemm_act_quantize(const sl_gemm_act *a, int32_t t, const float *x) {
    const int64_t cols = a->cols;
    int8_t *qs = (int8_t *)a->qs + (size_t)t * cols;
    if (a->type == SL_TYPE_Q8_0) {
        const int64_t nb = cols / 32;
        float *d = (float *)a->d + (size_t)t * nb;
        int32_t *c8 = (int32_t *)a->c8 + (size_t)t * nb, *c128 = (int32_t *)a->c128 + (size_t)t * nb;
        block_q8_0 blk[8];
        for (int64_t b0 = 0; b0 < nb; b0 += 8) {
            int64_t m = nb - b0 < 8 ? nb - b0 : 8;
            sl_quantize_row(SL_TYPE_Q8_0, x + b0 * 32, blk, m * 32);
            for (int64_t j = 0; j < m; j++) {
                int sum = 0;
                for (int i = 0; i < 32; i++) sum += blk[j].qs[i];
                memcpy(qs + (b0 + j) * 32, blk[j].qs, 32);
                d[b0 + j] = sl_load_f16(blk[j].d);
                c8[b0 + j] = -8 * sum;
                c128[b0 + j] = -128 * sum;
            }
        }
    } else {
        const int64_t nb = cols / QK_K;
        float *d = (float *)a->d + (size_t)t * nb;
        int16_t *s32 = (int16_t *)a->s32 + (size_t)t * (cols / 32);
        int32_t *c16 = (int32_t *)a->c16 + (size_t)t * (cols / 16);
        block_q8_K blk;
        for (int64_t b = 0; b < nb; b++) {
            sl_quantize_row(SL_TYPE_Q8_K, x + b * QK_K, &blk, QK_K);
            memcpy(qs + b * QK_K, blk.qs, QK_K);
            d[b] = sl_load_f32(blk.d);
            for (int j = 0; j < 16; j++) c16[16 * b + j] = -32 * sl_load_i16(blk.bsums + 2 * j);
            for (int j = 0; j < 8; j++)
                s32[8 * b + j] = (int16_t)(sl_load_i16(blk.bsums + 4 * j) + sl_load_i16(blk.bsums + 4 * j + 2));
        }
    }
    if (a->q16) {
        int16_t *q16 = (int16_t *)a->q16 + (size_t)t * cols;
        for (int64_t i = 0; i < cols; i++) q16[i] = qs[i];
    }
}

/* The input of one job: in the weight's vec_dot format (rows in place) or in
 * the kernel format (packed). Jobs with equal needs share a slot. */
typedef struct act_slot {
    sl_type type;          /* the vec_dot format */
    bool packed;
    bool q16;
    void *rows;            /* rows in place: standard blocks (unused for F32) */
    size_t row_bytes;
    sl_gemm_act act;       /* packed */
    void *buf;
    size_t cap;
} act_slot;

struct sl_mm {
    act_slot slot[SL_MM_MAX_JOBS];
    float *norm_scratch;   /* [threads][cols]: private normalized inputs */
    size_t norm_cap;       /* floats */
};

sl_mm *sl_mm_new(void) { return calloc(1, sizeof(sl_mm)); }

void sl_mm_free(sl_mm *mm) {
    if (!mm) return;
    for (int i = 0; i < SL_MM_MAX_JOBS; i++) free(mm->slot[i].buf);
    free(mm->norm_scratch);
    free(mm);
}

/* Sizes the slot's buffer for n tokens of cols. */
static int slot_reserve(act_slot *s, int32_t n, int64_t cols) {
    size_t need;
    if (s->packed) {
        need = sl_gemm_act_bytes(s->type, n, cols, s->q16);
    } else {
        s->row_bytes = sl_row_size(s->type, cols);
        need = s->type == SL_TYPE_F32 ? 0 : s->row_bytes * (size_t)n;
    }
    if (need > s->cap) {
        void *p = aligned_alloc(64, up64(need));
        if (!p) return -1;
        free(s->buf);
        s->buf = p;
        s->cap = need;
    }
    if (s->packed) sl_gemm_act_init(&s->act, s->type, s->buf, n, cols, s->q16);
    else s->rows = s->buf;
    return 0;
}

static void slot_quantize(act_slot *s, const float *x, int32_t t, int64_t cols) {
    if (s->packed) sl_gemm_act_quantize(&s->act, t, x);
    else if (s->type != SL_TYPE_F32) sl_quantize_row(s->type, x, (char *)s->rows + (size_t)t * s->row_bytes, cols);
}

/* ---- the product ------------------------------------------------------------ */

typedef struct mm_task {
    sl_mm *mm;
    sl_pool *pool;
    const sl_mm_call *call;
    int64_t cols;
    int slot_of[SL_MM_MAX_JOBS];
    int n_slots;
    bool private_act;      /* each thread quantizes every token into its own rows [ith * n, ith * n + n) */
    int64_t chunk_rows[SL_MM_MAX_JOBS];
    int64_t first_chunk[SL_MM_MAX_JOBS + 1]; /* chunk index where each job starts */
    atomic_long next;
} mm_task;

void sl_rmsnorm(float *out, const float *x, const float *weight, int64_t n, float eps) {
    double ss = 0;
    for (int64_t i = 0; i < n; i++) ss += (double)(x[i] * x[i]);
    float scale = 1.0f / sqrtf((float)(ss / (double)n) + eps);
    for (int64_t i = 0; i < n; i++) out[i] = x[i] * scale * weight[i];
}

/* Rows [r0, r1) of one job for every token, on thread ith. */
static void compute_rows(const mm_task *t, int j, int64_t r0, int64_t r1, int ith) {
    const sl_mm_call *c = t->call;
    const sl_mm_weight *mw = c->job[j].w;
    const sl_weight *w = mw->w;
    const act_slot *s = &t->mm->slot[t->slot_of[j]];
    float *y = c->job[j].y;
    const size_t ldy = (size_t)w->rows;
    /* the thread's own copy of the quantized tokens (F32 rows are read in place) */
    const int32_t act0 = t->private_act && s->type != SL_TYPE_F32 ? ith * c->n : 0;
    for (int32_t t0 = 0; t0 < c->n; t0 += TOKEN_BLOCK) {
        int32_t nt = c->n - t0 < TOKEN_BLOCK ? c->n - t0 : TOKEN_BLOCK;
        if (mw->k) {
            const int G = mw->k->group_rows;
            const sl_gemm_fn fn = mw->k->fn[w->type];
            for (int64_t g = r0 / G; g * G < r1; g++) {
                int64_t valid = w->rows - g * G < G ? w->rows - g * G : G;
                fn(mw->packed + (size_t)g * mw->group_bytes, &s->act, act0 + t0, nt,
                   y + (size_t)t0 * ldy + (size_t)g * G, ldy, (int)valid);
            }
        } else {
            const void *act = s->type == SL_TYPE_F32 ? (const void *)(c->norm ? c->norm_out : c->x) : s->rows;
            const size_t stride = s->type == SL_TYPE_F32 ? (size_t)t->cols * sizeof(float) : s->row_bytes;
            for (int64_t r = r0; r < r1; r++)
                sl_vec_dot_multi(w->type, w->cols, (const char *)w->data + (size_t)r * w->row_bytes,
                                 (const char *)act + (size_t)(act0 + t0) * stride, stride, nt,
                                 y + (size_t)t0 * ldy + r, w->rows);
        }
    }
}

static void mm_task_run(void *arg, int ith, int nth) {
    mm_task *t = arg;
    const sl_mm_call *c = t->call;
    if (t->private_act) {
        /* phase 1 alone: every token into this thread's rows; the token's
           owner also writes norm_out, which no other thread reads */
        for (int32_t i = 0; i < c->n; i++) {
            const float *x = c->x + (size_t)i * t->cols;
            if (c->norm) {
                float *xn = i % nth == ith ? c->norm_out + (size_t)i * t->cols
                                           : t->mm->norm_scratch + (size_t)ith * t->cols;
                sl_rmsnorm(xn, x, c->norm, t->cols, c->norm_eps);
                x = xn;
            }
            for (int s = 0; s < t->n_slots; s++) slot_quantize(&t->mm->slot[s], x, ith * c->n + i, t->cols);
        }
    } else {
        /* phase 1: this thread's tokens, normalized and quantized */
        for (int32_t i = ith; i < c->n; i += nth) {
            const float *x = c->x + (size_t)i * t->cols;
            if (c->norm) {
                float *xn = c->norm_out + (size_t)i * t->cols;
                sl_rmsnorm(xn, x, c->norm, t->cols, c->norm_eps);
                x = xn;
            }
            for (int s = 0; s < t->n_slots; s++) slot_quantize(&t->mm->slot[s], x, i, t->cols);
        }
        sl_pool_barrier(t->pool);
    }
    /* phase 2: chunks of rows */
    const int64_t total = t->first_chunk[c->joint ? 1 : c->n_jobs];
    for (;;) {
        int64_t chunk = atomic_fetch_add(&t->next, 1);
        if (chunk >= total) break;
        int j = 0;
        if (!c->joint)
            while (chunk >= t->first_chunk[j + 1]) j++;
        const int64_t rows = c->job[j].w->w->rows;
        int64_t r0 = (chunk - t->first_chunk[j]) * t->chunk_rows[j];
        int64_t r1 = r0 + t->chunk_rows[j] < rows ? r0 + t->chunk_rows[j] : rows;
        if (c->joint) {
            for (int k = 0; k < c->n_jobs; k++) compute_rows(t, k, r0, r1, ith);
            if (c->epilogue) c->epilogue(c->epilogue_ctx, -1, c->n, r0, r1);
        } else {
            compute_rows(t, j, r0, r1, ith);
            if (c->epilogue) c->epilogue(c->epilogue_ctx, j, c->n, r0, r1);
        }
    }
}

static int64_t gcd64(int64_t a, int64_t b) {
    while (b) {
        int64_t r = a % b;
        a = b;
        b = r;
    }
    return a;
}

int sl_mm_run(sl_mm *mm, sl_pool *pool, const sl_mm_call *c, sl_error *err) {
    mm_task t = {.mm = mm, .pool = pool, .call = c, .cols = c->job[0].w->w->cols};
    const int nth = sl_pool_size(pool);
    /* activation slots: one per distinct need */
    for (int j = 0; j < c->n_jobs; j++) {
        const sl_mm_weight *mw = c->job[j].w;
        sl_type type = sl_type_get(mw->w->type)->vec_dot_type;
        bool packed = mw->k != NULL, q16 = packed && mw->k->want_q16;
        int s = 0;
        while (s < t.n_slots && !(mm->slot[s].type == type && mm->slot[s].packed == packed)) s++;
        if (s == t.n_slots) {
            mm->slot[s].type = type;
            mm->slot[s].packed = packed;
            mm->slot[s].q16 = q16;
            t.n_slots++;
        }
        mm->slot[s].q16 |= q16;
        t.slot_of[j] = s;
    }
    /* private copies: only when no F32 weight reads the shared normalized rows */
    t.private_act = nth > 1 && c->n <= PRIVATE_ACT_MAX_TOKENS;
    for (int s = 0; s < t.n_slots; s++)
        if (c->norm && mm->slot[s].type == SL_TYPE_F32) t.private_act = false;
    const int32_t act_tokens = t.private_act ? c->n * nth : c->n;
    for (int s = 0; s < t.n_slots; s++)
        if (slot_reserve(&mm->slot[s], act_tokens, t.cols)) return sl_err(err, "out of memory");
    if (t.private_act && c->norm && (size_t)nth * (size_t)t.cols > mm->norm_cap) {
        float *p = malloc((size_t)nth * (size_t)t.cols * sizeof(float));
        if (!p) return sl_err(err, "out of memory");
        free(mm->norm_scratch);
        mm->norm_scratch = p;
        mm->norm_cap = (size_t)nth * (size_t)t.cols;
    }
    /* chunks: a multiple of the kernel's group and of row_align */
    t.first_chunk[0] = 0;
    for (int j = 0; j < c->n_jobs; j++) {
        const sl_mm_weight *mw = c->job[j].w;
        int64_t unit = mw->k ? mw->k->group_rows : 1;
        if (c->row_align > 0) unit = unit / gcd64(unit, c->row_align) * c->row_align;
        int64_t rows = mw->w->rows, chunk;
        if (c->n <= DECODE_MAX_TOKENS) {
            chunk = rows / ((int64_t)nth * CHUNKS_PER_THREAD);
        } else {
            chunk = PREFILL_CHUNK_ROWS;
        }
        if (chunk < 16) chunk = 16;
        chunk = (chunk + unit - 1) / unit * unit;
        if (c->joint) chunk = j == 0 ? chunk : t.chunk_rows[0];
        t.chunk_rows[j] = chunk;
        t.first_chunk[j + 1] = t.first_chunk[j] + (rows + chunk - 1) / chunk;
    }
    atomic_init(&t.next, 0);
    sl_pool_run(pool, mm_task_run, &t);
    return 0;
}
