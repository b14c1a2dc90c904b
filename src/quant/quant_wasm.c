/* quant_wasm.c - wasm SIMD128 kernels: dot products of F32, F16, Q4_0,
 * Q8_0, Q4_K and Q6_K rows, and the Q8_0 / Q8_K activation quantizers;
 * quant_dispatch.c uses them in wasm builds compiled with -msimd128.
 *
 * Written with hand intrinsics: clang-14 vectorizes int8 dots badly. Int8
 * products are widened to int16 and summed with i32x4.dot_i16x8. The integer
 * sums are exact and are scaled exactly as the reference kernels scale them,
 * so the quantized dots give the reference's results bit for bit; the float
 * dots differ only by summation order. The quantizers are bit-identical to
 * the reference ones for finite input. */
#include "quant/quant_impl.h"

#if defined(__wasm_simd128__)
#include <wasm_simd128.h>

#include "quant/simd128.h"

/* ======================= helpers ======================= */

static inline float hsum_f32(v128_t v) {
    v = wasm_f32x4_add(v, wasm_i32x4_shuffle(v, v, 2, 3, 0, 1));
    v = wasm_f32x4_add(v, wasm_i32x4_shuffle(v, v, 1, 0, 3, 2));
    return wasm_f32x4_extract_lane(v, 0);
}

static inline int hsum_i32(v128_t v) {
    v = wasm_i32x4_add(v, wasm_i32x4_shuffle(v, v, 2, 3, 0, 1));
    v = wasm_i32x4_add(v, wasm_i32x4_shuffle(v, v, 1, 0, 3, 2));
    return wasm_i32x4_extract_lane(v, 0);
}

static inline float hmax_f32(v128_t v) {
    v = wasm_f32x4_pmax(v, wasm_i32x4_shuffle(v, v, 2, 3, 0, 1));
    v = wasm_f32x4_pmax(v, wasm_i32x4_shuffle(v, v, 1, 0, 3, 2));
    return wasm_f32x4_extract_lane(v, 0);
}

/* Sum of products of 16 int8 pairs, as int32 lanes. */
static inline v128_t dot_i8x16(v128_t x, v128_t y) {
    v128_t lo = wasm_i32x4_dot_i16x8(wasm_i16x8_extend_low_i8x16(x), wasm_i16x8_extend_low_i8x16(y));
    return wasm_i32x4_add(lo, wasm_i32x4_dot_i16x8(wasm_i16x8_extend_high_i8x16(x), wasm_i16x8_extend_high_i8x16(y)));
}

/* ======================= float dots ======================= */

static float dot_f32_simd(int64_t n, const void *w, const void *act) {
    const uint8_t *x = w, *y = act;
    v128_t a0 = wasm_f32x4_splat(0), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        a0 = wasm_f32x4_add(a0, wasm_f32x4_mul(wasm_v128_load(x + 4 * i), wasm_v128_load(y + 4 * i)));
        a1 = wasm_f32x4_add(a1, wasm_f32x4_mul(wasm_v128_load(x + 4 * i + 16), wasm_v128_load(y + 4 * i + 16)));
        a2 = wasm_f32x4_add(a2, wasm_f32x4_mul(wasm_v128_load(x + 4 * i + 32), wasm_v128_load(y + 4 * i + 32)));
        a3 = wasm_f32x4_add(a3, wasm_f32x4_mul(wasm_v128_load(x + 4 * i + 48), wasm_v128_load(y + 4 * i + 48)));
    }
    for (; i + 4 <= n; i += 4) a0 = wasm_f32x4_add(a0, wasm_f32x4_mul(wasm_v128_load(x + 4 * i), wasm_v128_load(y + 4 * i)));
    float sum = hsum_f32(wasm_f32x4_add(wasm_f32x4_add(a0, a1), wasm_f32x4_add(a2, a3)));
    for (; i < n; i++) sum += sl_load_f32(x + 4 * i) * sl_load_f32(y + 4 * i);
    return sum;
}

static float dot_f16_simd(int64_t n, const void *w, const void *act) {
    const uint8_t *x = w, *y = act;
    v128_t a0 = wasm_f32x4_splat(0), a1 = a0;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        v128_t xh = wasm_v128_load(x + 2 * i), yh = wasm_v128_load(y + 2 * i);
        a0 = wasm_f32x4_add(a0, wasm_f32x4_mul(sl_f16x4_to_f32(xh), sl_f16x4_to_f32(yh)));
        a1 = wasm_f32x4_add(a1, wasm_f32x4_mul(sl_f16x4_to_f32(wasm_i64x2_shuffle(xh, xh, 1, 0)),
                                               sl_f16x4_to_f32(wasm_i64x2_shuffle(yh, yh, 1, 0))));
    }
    float sum = hsum_f32(wasm_f32x4_add(a0, a1));
    for (; i < n; i++) sum += sl_load_f16(x + 2 * i) * sl_load_f16(y + 2 * i);
    return sum;
}

/* ======================= quantized dots ======================= */

static float dot_q8_0_simd(int64_t n, const void *w, const void *act) {
    const block_q8_0 *x = w;
    const block_q8_0 *y = act;
    float sum = 0;
    for (int64_t i = 0; i < n / 32; i++) {
        v128_t p = wasm_i32x4_add(dot_i8x16(wasm_v128_load(x[i].qs), wasm_v128_load(y[i].qs)),
                                  dot_i8x16(wasm_v128_load(x[i].qs + 16), wasm_v128_load(y[i].qs + 16)));
        sum += hsum_i32(p) * (sl_load_f16(x[i].d) * sl_load_f16(y[i].d));
    }
    return sum;
}

static float dot_q4_0_simd(int64_t n, const void *w, const void *act) {
    const block_q4_0 *x = w;
    const block_q8_0 *y = act;
    const v128_t m4 = wasm_i8x16_splat(0x0F), eight = wasm_i8x16_splat(8);
    float sum = 0;
    for (int64_t i = 0; i < n / 32; i++) {
        v128_t q = wasm_v128_load(x[i].qs);
        v128_t lo = wasm_i8x16_sub(wasm_v128_and(q, m4), eight), hi = wasm_i8x16_sub(wasm_u8x16_shr(q, 4), eight);
        v128_t p = wasm_i32x4_add(dot_i8x16(lo, wasm_v128_load(y[i].qs)), dot_i8x16(hi, wasm_v128_load(y[i].qs + 16)));
        sum += hsum_i32(p) * sl_load_f16(x[i].d) * sl_load_f16(y[i].d);
    }
    return sum;
}

static float dot_q4_K_simd(int64_t n, const void *w, const void *act) {
    const block_q4_K *x = w;
    const block_q8_K *y = act;
    const v128_t m4 = wasm_i8x16_splat(0x0F);
    float sum = 0;
    for (int64_t i = 0; i < n / QK_K; i++) {
        v128_t isum = wasm_i32x4_splat(0);
        int summs = 0;
        for (int c = 0; c < 4; c++) {
            uint8_t sc_lo, m_lo, sc_hi, m_hi;
            sl_get_scale_min_k4(2 * c, x[i].scales, &sc_lo, &m_lo);
            sl_get_scale_min_k4(2 * c + 1, x[i].scales, &sc_hi, &m_hi);
            const int8_t *q8 = y[i].qs + 64 * c;
            v128_t plo = wasm_i32x4_splat(0), phi = wasm_i32x4_splat(0);
            for (int h = 0; h < 2; h++) {
                v128_t q = wasm_v128_load(x[i].qs + 32 * c + 16 * h);
                plo = wasm_i32x4_add(plo, dot_i8x16(wasm_v128_and(q, m4), wasm_v128_load(q8 + 16 * h)));
                phi = wasm_i32x4_add(phi, dot_i8x16(wasm_u8x16_shr(q, 4), wasm_v128_load(q8 + 32 + 16 * h)));
            }
            isum = wasm_i32x4_add(isum, wasm_i32x4_add(wasm_i32x4_mul(plo, wasm_i32x4_splat(sc_lo)),
                                                       wasm_i32x4_mul(phi, wasm_i32x4_splat(sc_hi))));
            summs += m_lo * (sl_load_i16(y[i].bsums + 8 * c) + sl_load_i16(y[i].bsums + 8 * c + 2)) +
                     m_hi * (sl_load_i16(y[i].bsums + 8 * c + 4) + sl_load_i16(y[i].bsums + 8 * c + 6));
        }
        float yd = sl_load_f32(y[i].d);
        sum += sl_load_f16(x[i].d) * yd * hsum_i32(isum) - sl_load_f16(x[i].dmin) * yd * summs;
    }
    return sum;
}

static float dot_q6_K_simd(int64_t n, const void *w, const void *act) {
    const block_q6_K *x = w;
    const block_q8_K *y = act;
    const v128_t m4 = wasm_i8x16_splat(0x0F), m2 = wasm_i8x16_splat(0x30), off = wasm_i8x16_splat(32);
    float sum = 0;
    for (int64_t i = 0; i < n / QK_K; i++) {
        v128_t isum = wasm_i32x4_splat(0);
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = x[i].ql + 64 * h, *qh = x[i].qh + 32 * h;
            const int8_t *q8 = y[i].qs + 128 * h;
            for (int l = 0; l < 32; l += 16) {
                v128_t a = wasm_v128_load(ql + l), b = wasm_v128_load(ql + 32 + l), hb = wasm_v128_load(qh + l);
                /* elements 128h + 32k + l.. of quarter k, sub-block 8h + 2k + l/16 */
                v128_t q[4] = {
                    wasm_v128_or(wasm_v128_and(a, m4), wasm_v128_and(wasm_i8x16_shl(hb, 4), m2)),
                    wasm_v128_or(wasm_v128_and(b, m4), wasm_v128_and(wasm_i8x16_shl(hb, 2), m2)),
                    wasm_v128_or(wasm_u8x16_shr(a, 4), wasm_v128_and(hb, m2)),
                    wasm_v128_or(wasm_u8x16_shr(b, 4), wasm_v128_and(wasm_u8x16_shr(hb, 2), m2)),
                };
                for (int k = 0; k < 4; k++) {
                    v128_t p = dot_i8x16(wasm_i8x16_sub(q[k], off), wasm_v128_load(q8 + 32 * k + l));
                    isum = wasm_i32x4_add(isum, wasm_i32x4_mul(p, wasm_i32x4_splat(x[i].scales[8 * h + 2 * k + l / 16])));
                }
            }
        }
        sum += (sl_load_f16(x[i].d) * sl_load_f32(y[i].d)) * hsum_i32(isum);
    }
    return sum;
}

/* ======================= activation quantizers ======================= */

/* Rounds 4x4 floats times mul (ties to even) to 16 saturated int8. */
static inline v128_t round_to_i8(const v128_t v[4], v128_t mul) {
    v128_t i0 = wasm_i32x4_trunc_sat_f32x4(wasm_f32x4_nearest(wasm_f32x4_mul(v[0], mul)));
    v128_t i1 = wasm_i32x4_trunc_sat_f32x4(wasm_f32x4_nearest(wasm_f32x4_mul(v[1], mul)));
    v128_t i2 = wasm_i32x4_trunc_sat_f32x4(wasm_f32x4_nearest(wasm_f32x4_mul(v[2], mul)));
    v128_t i3 = wasm_i32x4_trunc_sat_f32x4(wasm_f32x4_nearest(wasm_f32x4_mul(v[3], mul)));
    return wasm_i8x16_narrow_i16x8(wasm_i16x8_narrow_i32x4(i0, i1), wasm_i16x8_narrow_i32x4(i2, i3));
}

/* The largest |x| of n floats (NaNs skipped, as the reference does). */
static inline float absmax(const float *x, int n) {
    v128_t m = wasm_f32x4_splat(0);
    for (int j = 0; j < n; j += 4) m = wasm_f32x4_pmax(m, wasm_f32x4_abs(wasm_v128_load(x + j)));
    return hmax_f32(m);
}

static void quant_q8_0_simd(const float *src, void *dst, int64_t n) {
    block_q8_0 *y = dst;
    for (int64_t i = 0; i < n / 32; i++, src += 32) {
        float amax = absmax(src, 32);
        v128_t mul = wasm_f32x4_splat(sl_q8_multiplier(amax));
        for (int h = 0; h < 2; h++) {
            v128_t v[4];
            for (int k = 0; k < 4; k++) v[k] = wasm_v128_load(src + 16 * h + 4 * k);
            wasm_v128_store(y[i].qs + 16 * h, round_to_i8(v, mul));
        }
        sl_store_u16(y[i].d, sl_f32_to_f16(amax / 127.0f));
    }
}

static void quant_q8_K_simd(const float *src, void *dst, int64_t n) {
    block_q8_K *y = dst;
    for (int64_t i = 0; i < n / QK_K; i++, src += QK_K) {
        float amax = absmax(src, QK_K);
        if (amax == 0.0f) {
            memset(&y[i], 0, sizeof y[i]);
            continue;
        }
        float max = 0.0f; /* the first element of largest magnitude, with its sign */
        for (int j = 0; j < QK_K; j++)
            if (src[j] == amax || src[j] == -amax) {
                max = src[j];
                break;
            }
        float iscale = sl_q8k_multiplier(max);
        v128_t mul = wasm_f32x4_splat(iscale);
        for (int j = 0; j < QK_K; j += 16) {
            v128_t v[4];
            for (int k = 0; k < 4; k++) v[k] = wasm_v128_load(src + j + 4 * k);
            v128_t q = round_to_i8(v, mul);
            wasm_v128_store(y[i].qs + j, q);
            sl_store_i16(y[i].bsums + 2 * (j / 16), (int16_t)hsum_i32(wasm_i32x4_extadd_pairwise_i16x8(wasm_i16x8_extadd_pairwise_i8x16(q))));
        }
        sl_store_f32(y[i].d, 1.0f / iscale);
    }
}

/* ======================= table ======================= */

const sl_kernel_table sl_kernels_simd128 = {
    .vec_dot = {
        [SL_TYPE_F32] = dot_f32_simd,   [SL_TYPE_F16] = dot_f16_simd,   [SL_TYPE_Q4_0] = dot_q4_0_simd,
        [SL_TYPE_Q8_0] = dot_q8_0_simd, [SL_TYPE_Q4_K] = dot_q4_K_simd, [SL_TYPE_Q6_K] = dot_q6_K_simd,
    },
    .quantize = {
        [SL_TYPE_Q8_0] = quant_q8_0_simd, [SL_TYPE_Q8_K] = quant_q8_K_simd,
    },
};

#endif
