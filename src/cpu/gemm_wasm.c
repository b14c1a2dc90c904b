/* gemm_wasm.c - wasm SIMD128 kernels over packed groups of 4 rows (layouts
 * in gemm.h); matmul.c uses them when the quant backend is "simd128".
 *
 * A run of the layout is one 16-byte vector: 4 elements of each of the 4
 * rows. Widened to int16 it makes two vectors (rows 0-1 and rows 2-3) that
 * i32x4.dot_i16x8 multiplies by the token's 4 int16 activations splatted
 * twice, giving per-row partial sums in lanes [r0, r0, r1, r1] and
 * [r2, r2, r3, r3] (rowsum4 adds the pairs). Weights are widened once per
 * block and reused for a tile of tokens. Integer sums are exact, so results
 * differ from the reference dot products only by float rounding. */
#include "cpu/gemm.h"

#if defined(__wasm_simd128__)
#include <wasm_simd128.h>

#include "quant/quant_impl.h"

#define G 4
#define MAX_NT 4
#define ALWAYS_INLINE inline __attribute__((always_inline))

/* [r0, r0, r1, r1] and [r2, r2, r3, r3] int32 partial sums as [r0, r1, r2, r3]. */
static ALWAYS_INLINE v128_t rowsum4(v128_t a01, v128_t a23) {
    return wasm_i32x4_add(wasm_i32x4_shuffle(a01, a23, 0, 2, 4, 6), wasm_i32x4_shuffle(a01, a23, 1, 3, 5, 7));
}

/* The group's 4 f16 scales at p as f32 (exact for finite values). */
static ALWAYS_INLINE v128_t scales4(const uint8_t *p) {
    v128_t u = wasm_u32x4_extend_low_u16x8(wasm_v128_load64_zero(p));
    v128_t em = wasm_v128_and(u, wasm_i32x4_splat(0x7fff));
    v128_t f = wasm_f32x4_mul(wasm_i32x4_shl(em, 13), wasm_f32x4_splat(0x1p112f));
    return wasm_v128_or(f, wasm_i32x4_shl(wasm_v128_and(u, wasm_i32x4_splat(0x8000)), 16));
}

static ALWAYS_INLINE void store_rows(float *y, size_t ldy, int nt, const v128_t *acc, int valid) {
    for (int t = 0; t < nt; t++) {
        float *yt = y + (size_t)t * ldy;
        if (valid == G) {
            wasm_v128_store(yt, acc[t]);
        } else {
            float v[G];
            wasm_v128_store(v, acc[t]);
            for (int r = 0; r < valid; r++) yt[r] = v[r];
        }
    }
}

/* The int16 activations of token t, elements e..e+3, splatted twice. */
static ALWAYS_INLINE v128_t act4(const sl_gemm_act *a, int32_t t, int64_t e) {
    return wasm_v128_load64_splat(a->q16 + (size_t)t * a->cols + e);
}

/* p01/p23 += the run's 4 elements of each row (levels v) times y. */
static ALWAYS_INLINE void run_dot(v128_t v, v128_t y, v128_t *p01, v128_t *p23) {
    *p01 = wasm_i32x4_add(*p01, wasm_i32x4_dot_i16x8(wasm_i16x8_extend_low_i8x16(v), y));
    *p23 = wasm_i32x4_add(*p23, wasm_i32x4_dot_i16x8(wasm_i16x8_extend_high_i8x16(v), y));
}

/* ---- Q4_0 and Q8_0: blocks of 32 ------------------------------------------- */

/* is_q4: Q4_0 (nibbles, levels 0..15, -8 correction) else Q8_0 (bytes + 128). */
static ALWAYS_INLINE void q8_0_family_tile(bool is_q4, const uint8_t *grp, const sl_gemm_act *a, int32_t t0, int nt,
                                           float *y, size_t ldy, int valid) {
    const int64_t nb = a->cols / 32;
    const size_t qb = is_q4 ? 16 * G : 32 * G;
    const uint8_t *sp = grp + (size_t)nb * qb;
    const v128_t m4w = wasm_i16x8_splat(0x0F), flip = wasm_i8x16_splat((int8_t)0x80);
    v128_t acc[MAX_NT];
    #pragma unroll
    for (int t = 0; t < nt; t++) acc[t] = wasm_f32x4_splat(0);
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *qp = grp + (size_t)b * qb;
        v128_t p01[MAX_NT], p23[MAX_NT];
        #pragma unroll
        for (int t = 0; t < nt; t++) p01[t] = p23[t] = wasm_i32x4_splat(0);
        #pragma unroll
        for (int k = 0; k < (is_q4 ? 4 : 8); k++) {
            v128_t v = wasm_v128_load(qp + 16 * k);
            if (is_q4) {
                /* nibbles split after widening: 16-bit shifts are native, byte shifts are not */
                v128_t w01 = wasm_u16x8_extend_low_u8x16(v), w23 = wasm_u16x8_extend_high_u8x16(v);
                v128_t lo01 = wasm_v128_and(w01, m4w), lo23 = wasm_v128_and(w23, m4w);
                v128_t hi01 = wasm_u16x8_shr(w01, 4), hi23 = wasm_u16x8_shr(w23, 4);
                #pragma unroll
                for (int t = 0; t < nt; t++) {
                    v128_t ylo = act4(a, t0 + t, 32 * b + 4 * k), yhi = act4(a, t0 + t, 32 * b + 16 + 4 * k);
                    p01[t] = wasm_i32x4_add(p01[t], wasm_i32x4_add(wasm_i32x4_dot_i16x8(lo01, ylo), wasm_i32x4_dot_i16x8(hi01, yhi)));
                    p23[t] = wasm_i32x4_add(p23[t], wasm_i32x4_add(wasm_i32x4_dot_i16x8(lo23, ylo), wasm_i32x4_dot_i16x8(hi23, yhi)));
                }
            } else {
                v = wasm_v128_xor(v, flip);
                #pragma unroll
                for (int t = 0; t < nt; t++) run_dot(v, act4(a, t0 + t, 32 * b + 4 * k), &p01[t], &p23[t]);
            }
        }
        const v128_t dw = scales4(sp + (size_t)b * 2 * G);
        #pragma unroll
        for (int t = 0; t < nt; t++) {
            const size_t bi = (size_t)(t0 + t) * nb + b;
            v128_t r = rowsum4(p01[t], p23[t]);
            if (is_q4) r = wasm_i32x4_add(r, wasm_i32x4_splat(a->c8[bi]));
            acc[t] = wasm_f32x4_add(acc[t], wasm_f32x4_mul(wasm_f32x4_convert_i32x4(r),
                                                           wasm_f32x4_mul(dw, wasm_f32x4_splat(a->d[bi]))));
        }
    }
    store_rows(y, ldy, nt, acc, valid);
}

/* ---- Q4_K ----------------------------------------------------------------- */

/* Four bytes at p (one per row) as int32 lanes. */
static ALWAYS_INLINE v128_t bytes4_u32(const uint8_t *p) {
    return wasm_u32x4_extend_low_u16x8(wasm_u16x8_extend_low_u8x16(wasm_v128_load32_zero(p)));
}
static ALWAYS_INLINE v128_t bytes4_i32(const uint8_t *p) {
    return wasm_i32x4_extend_low_i16x8(wasm_i16x8_extend_low_i8x16(wasm_v128_load32_zero(p)));
}

static ALWAYS_INLINE void q4_K_tile(const uint8_t *grp, const sl_gemm_act *a, int32_t t0, int nt, float *y,
                                    size_t ldy, int valid) {
    const int64_t nb = a->cols / QK_K, n32 = a->cols / 32;
    const uint8_t *sp0 = grp + (size_t)nb * 128 * G;
    const v128_t m4 = wasm_i8x16_splat(0x0F);
    v128_t acc[MAX_NT];
    #pragma unroll
    for (int t = 0; t < nt; t++) acc[t] = wasm_f32x4_splat(0);
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *qp = grp + (size_t)b * 128 * G, *sp = sp0 + (size_t)b * 20 * G;
        v128_t isum[MAX_NT], msum[MAX_NT];
        #pragma unroll
        for (int t = 0; t < nt; t++) isum[t] = msum[t] = wasm_i32x4_splat(0);
        for (int c = 0; c < 4; c++) {
            v128_t l01[MAX_NT], l23[MAX_NT], h01[MAX_NT], h23[MAX_NT];
            #pragma unroll
            for (int t = 0; t < nt; t++) l01[t] = l23[t] = h01[t] = h23[t] = wasm_i32x4_splat(0);
            #pragma unroll
            for (int g = 0; g < 8; g++) {
                v128_t v = wasm_v128_load(qp + (size_t)(8 * c + g) * 16);
                v128_t lo = wasm_v128_and(v, m4), hi = wasm_u8x16_shr(v, 4);
                #pragma unroll
                for (int t = 0; t < nt; t++) {
                    const int64_t e = b * QK_K + 64 * c + 4 * g;
                    run_dot(lo, act4(a, t0 + t, e), &l01[t], &l23[t]);
                    run_dot(hi, act4(a, t0 + t, e + 32), &h01[t], &h23[t]);
                }
            }
            const v128_t sc_lo = bytes4_u32(sp + 4 * G + 2 * c * G), sc_hi = bytes4_u32(sp + 4 * G + (2 * c + 1) * G);
            /* mins of sub-blocks 2c, 2c+1 as int16 pairs per row, against the pair of 32-sums */
            const v128_t mins = wasm_u16x8_extend_low_u8x16(wasm_v128_load64_zero(sp + 12 * G + 2 * c * G));
            #pragma unroll
            for (int t = 0; t < nt; t++) {
                v128_t p = wasm_i32x4_add(wasm_i32x4_mul(rowsum4(l01[t], l23[t]), sc_lo),
                                          wasm_i32x4_mul(rowsum4(h01[t], h23[t]), sc_hi));
                isum[t] = wasm_i32x4_add(isum[t], p);
                v128_t sums = wasm_v128_load32_splat(a->s32 + (size_t)(t0 + t) * n32 + 8 * b + 2 * c);
                msum[t] = wasm_i32x4_add(msum[t], wasm_i32x4_dot_i16x8(mins, sums));
            }
        }
        const v128_t dw = scales4(sp), dmin = scales4(sp + 2 * G);
        #pragma unroll
        for (int t = 0; t < nt; t++) {
            const v128_t yd = wasm_f32x4_splat(a->d[(size_t)(t0 + t) * nb + b]);
            acc[t] = wasm_f32x4_add(acc[t], wasm_f32x4_mul(wasm_f32x4_convert_i32x4(isum[t]), wasm_f32x4_mul(dw, yd)));
            acc[t] = wasm_f32x4_sub(acc[t], wasm_f32x4_mul(wasm_f32x4_convert_i32x4(msum[t]), wasm_f32x4_mul(dmin, yd)));
        }
    }
    store_rows(y, ldy, nt, acc, valid);
}

/* ---- Q6_K (one token at a time: four sub-blocks are summed at once) -------- */

static void q6_K_row(const uint8_t *grp, const sl_gemm_act *a, int32_t t, float *y, int valid) {
    const int64_t nb = a->cols / QK_K, n16 = a->cols / 16;
    const uint8_t *sp0 = grp + (size_t)nb * 192 * G;
    const v128_t m4 = wasm_i8x16_splat(0x0F), m_high = wasm_i8x16_splat(0x30);
    v128_t acc = wasm_f32x4_splat(0);
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *ql = grp + (size_t)b * 192 * G, *qh = ql + 128 * G, *sp = sp0 + (size_t)b * 18 * G;
        v128_t isum = wasm_i32x4_splat(0);
        /* runs u = 4v..4v+3 hold the groups of sub-blocks v, v+4, v+8, v+12 */
        for (int v = 0; v < 4; v++) {
            v128_t p01[4], p23[4];
            #pragma unroll
            for (int s = 0; s < 4; s++) p01[s] = p23[s] = wasm_i32x4_splat(0);
            #pragma unroll
            for (int i = 0; i < 4; i++) {
                const int u = 4 * v + i;
                v128_t l1 = wasm_v128_load(ql + (size_t)u * 16), l2 = wasm_v128_load(ql + (size_t)(u + 16) * 16);
                v128_t h = wasm_v128_load(qh + (size_t)u * 16);
                v128_t w[4] = {
                    wasm_v128_or(wasm_v128_and(l1, m4), wasm_v128_and(wasm_i8x16_shl(h, 4), m_high)),
                    wasm_v128_or(wasm_v128_and(l2, m4), wasm_v128_and(wasm_i8x16_shl(h, 2), m_high)),
                    wasm_v128_or(wasm_u8x16_shr(l1, 4), wasm_v128_and(h, m_high)),
                    wasm_v128_or(wasm_u8x16_shr(l2, 4), wasm_v128_and(wasm_u8x16_shr(h, 2), m_high)),
                };
                #pragma unroll
                for (int s = 0; s < 4; s++) run_dot(w[s], act4(a, t, b * QK_K + 16 * (v + 4 * s) + 4 * i), &p01[s], &p23[s]);
            }
            #pragma unroll
            for (int s = 0; s < 4; s++) {
                const int sub = v + 4 * s;
                v128_t r = wasm_i32x4_add(rowsum4(p01[s], p23[s]), wasm_i32x4_splat(a->c16[(size_t)t * n16 + 16 * b + sub]));
                isum = wasm_i32x4_add(isum, wasm_i32x4_mul(r, bytes4_i32(sp + 2 * G + (size_t)sub * G)));
            }
        }
        const v128_t yd = wasm_f32x4_splat(a->d[(size_t)t * nb + b]);
        acc = wasm_f32x4_add(acc, wasm_f32x4_mul(wasm_f32x4_convert_i32x4(isum), wasm_f32x4_mul(scales4(sp), yd)));
    }
    store_rows(y, 0, 1, &acc, valid);
}

/* ---- entry points: tiles of up to 4 tokens (Q4_K: 2), then single ones ---- */

static void gemm_q4_0(const uint8_t *grp, const sl_gemm_act *a, int32_t t0, int32_t n, float *y, size_t ldy, int valid) {
    int32_t t = 0;
    for (; t + 4 <= n; t += 4) q8_0_family_tile(true, grp, a, t0 + t, 4, y + (size_t)t * ldy, ldy, valid);
    for (; t < n; t++) q8_0_family_tile(true, grp, a, t0 + t, 1, y + (size_t)t * ldy, ldy, valid);
}

static void gemm_q8_0(const uint8_t *grp, const sl_gemm_act *a, int32_t t0, int32_t n, float *y, size_t ldy, int valid) {
    int32_t t = 0;
    for (; t + 4 <= n; t += 4) q8_0_family_tile(false, grp, a, t0 + t, 4, y + (size_t)t * ldy, ldy, valid);
    for (; t < n; t++) q8_0_family_tile(false, grp, a, t0 + t, 1, y + (size_t)t * ldy, ldy, valid);
}

static void gemm_q4_K(const uint8_t *grp, const sl_gemm_act *a, int32_t t0, int32_t n, float *y, size_t ldy, int valid) {
    int32_t t = 0;
    for (; t + 2 <= n; t += 2) q4_K_tile(grp, a, t0 + t, 2, y + (size_t)t * ldy, ldy, valid);
    for (; t < n; t++) q4_K_tile(grp, a, t0 + t, 1, y + (size_t)t * ldy, ldy, valid);
}

static void gemm_q6_K(const uint8_t *grp, const sl_gemm_act *a, int32_t t0, int32_t n, float *y, size_t ldy, int valid) {
    for (int32_t t = 0; t < n; t++) q6_K_row(grp, a, t0 + t, y + (size_t)t * ldy, valid);
}

const sl_gemm_kernels sl_gemm_simd128 = {
    .name = "simd128",
    .group_rows = G,
    .want_q16 = true,
    .fn = {
        [SL_TYPE_Q4_0] = gemm_q4_0, [SL_TYPE_Q8_0] = gemm_q8_0,
        [SL_TYPE_Q4_K] = gemm_q4_K, [SL_TYPE_Q6_K] = gemm_q6_K,
    },
};

#endif
