/* quant_x86.c - x86-64 SIMD kernels: AVX2 (+FMA, F16C) and AVX-512 (F, BW,
 * VL, VNNI), compiled with per-function target attributes so the file builds
 * with plain -O2; quant_dispatch.c picks a set once by CPU features.
 *
 * Integer inner sums are exact, as in the reference kernels. The K-quant dots
 * reduce each super-block to integers and then scale it exactly as the
 * reference does, so they give the reference's result bit for bit; the
 * 32-element formats accumulate scaled lanes in float (as ggml's SIMD code
 * does), which differs from the reference only by float rounding. Activation
 * quantizers are bit-identical to the reference ones for finite input. The
 * main dot kernels are written as cores over 1..SL_DOT_GROUP activation rows
 * (for sl_vec_dot_multi), so grouped and single results are identical.
 *
 * The 8-bit activations must lie in -127..127 (as sl_quantize_row makes them):
 * kernels using the _mm256_sign_epi8 trick would be wrong for -128. */
#include "quant/quant_impl.h"

#if defined(__x86_64__)
#include <immintrin.h>
#include <math.h>

#define TARGET_AVX2 __attribute__((target("avx2,fma,f16c")))
#define TARGET_AVX512 __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")))
/* The dot kernels are written once as "cores" over 1..SL_DOT_GROUP activation
 * rows that share the weight decoding; the single and the grouped entry points
 * inline the core with a constant count, so both give identical results. */
#define ALWAYS_INLINE inline __attribute__((always_inline))
/* The loops over the activation rows of a group carry "#pragma GCC unroll 4"
 * (SL_DOT_GROUP): unrolled, their accumulators stay in registers. */

/* ======================= helpers ======================= */

TARGET_AVX2 static inline float hsum_ps(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

TARGET_AVX2 static inline int hsum_epi32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 1));
    return _mm_cvtsi128_si32(s);
}

TARGET_AVX2 static inline float hmax_ps(__m256 v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

TARGET_AVX2 static inline float f16_at(const uint8_t *p) { return _cvtsh_ss(sl_load_u16(p)); }

/* Sum of the 16-bit pairs of an int16 vector, as int32 lanes. */
TARGET_AVX2 static inline __m256i sum_pairs_i16(__m256i v) {
    return _mm256_madd_epi16(v, _mm256_set1_epi16(1));
}

/* Signed int8 dot in int32 lanes (4 products each), x and y in -127..127
 * for y (x may be -128). */
TARGET_AVX2 static inline __m256i dot_i8(__m256i x, __m256i y) {
    __m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x));
    return sum_pairs_i16(p);
}

/* The 32 nibbles of 16 bytes as bytes: low nibbles first, then high ones. */
TARGET_AVX2 static inline __m256i nibbles_32(const uint8_t *p) {
    __m128i q = _mm_loadu_si128((const __m128i *)p);
    __m256i both = _mm256_set_m128i(_mm_srli_epi16(q, 4), q);
    return _mm256_and_si256(both, _mm256_set1_epi8(0x0F));
}

/* Q4_K/Q5_K packed 6-bit scales and mins, as 8 bytes each (low byte first). */
static inline void unpack_scale_min_k4(const uint8_t packed[12], uint64_t *scales, uint64_t *mins) {
    uint32_t u0, u1, u2;
    memcpy(&u0, packed, 4);
    memcpy(&u1, packed + 4, 4);
    memcpy(&u2, packed + 8, 4);
    uint32_t s_lo = u0 & 0x3f3f3f3fu;
    uint32_t s_hi = (u2 & 0x0f0f0f0fu) | ((u0 >> 2) & 0x30303030u);
    uint32_t m_lo = u1 & 0x3f3f3f3fu;
    uint32_t m_hi = ((u2 >> 4) & 0x0f0f0f0fu) | ((u1 >> 2) & 0x30303030u);
    *scales = s_lo | ((uint64_t)s_hi << 32);
    *mins = m_lo | ((uint64_t)m_hi << 32);
}

/* sum_j mins[j] * (bsums[2j] + bsums[2j+1]) for Q4_K/Q5_K. */
TARGET_AVX2 static inline int k4_min_sum(uint64_t mins, const block_q8_K *y) {
    __m256i m32 = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128((long long)mins));
    __m256i m_pairs = _mm256_or_si256(m32, _mm256_slli_epi32(m32, 16)); /* m_j in both halves */
    __m256i bsums = _mm256_loadu_si256((const __m256i *)y->bsums);
    return hsum_epi32(_mm256_madd_epi16(bsums, m_pairs));
}

/* ======================= AVX2: activation quantizers ======================= */

/* Rounds (ties to even) 4x8 floats times `mul` to int8, saturating; also
 * returns their int32 sums per lane in *lane_sums when it is not NULL. */
TARGET_AVX2 static inline __m256i round_to_i8(const __m256 v[4], __m256 mul, __m256i *lane_sums) {
    __m256i i0 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v[0], mul), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    __m256i i1 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v[1], mul), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    __m256i i2 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v[2], mul), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    __m256i i3 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v[3], mul), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    if (lane_sums) *lane_sums = _mm256_add_epi32(_mm256_add_epi32(i0, i1), _mm256_add_epi32(i2, i3));
    __m256i p01 = _mm256_packs_epi32(i0, i1); /* 0-3 8-11 | 4-7 12-15 */
    __m256i p23 = _mm256_packs_epi32(i2, i3);
    __m256i p = _mm256_packs_epi16(p01, p23); /* 0-3 8-11 16-19 24-27 | 4-7 12-15 20-23 28-31 */
    return _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

TARGET_AVX2 static float load_absmax_32(const float *x, __m256 v[4]) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 amax = _mm256_setzero_ps();
    for (int k = 0; k < 4; k++) {
        v[k] = _mm256_loadu_ps(x + 8 * k);
        /* the running max as second operand: NaNs are skipped as in the reference */
        amax = _mm256_max_ps(_mm256_andnot_ps(sign, v[k]), amax);
    }
    return hmax_ps(amax);
}

TARGET_AVX2 static void quant_q8_0_avx2(const float *src, void *dst, int64_t n) {
    block_q8_0 *y = dst;
    for (int64_t i = 0; i < n / 32; i++, src += 32) {
        __m256 v[4];
        float amax = load_absmax_32(src, v);
        float id = sl_q8_multiplier(amax);
        __m256i q = round_to_i8(v, _mm256_set1_ps(id), NULL);
        _mm256_storeu_si256((__m256i *)y[i].qs, q);
        sl_store_u16(y[i].d, sl_f32_to_f16(amax / 127.0f));
    }
}

TARGET_AVX2 static void quant_q8_1_avx2(const float *src, void *dst, int64_t n) {
    block_q8_1 *y = dst;
    for (int64_t i = 0; i < n / 32; i++, src += 32) {
        __m256 v[4];
        float amax = load_absmax_32(src, v);
        float id = sl_q8_multiplier(amax);
        __m256i sums;
        __m256i q = round_to_i8(v, _mm256_set1_ps(id), &sums);
        _mm256_storeu_si256((__m256i *)y[i].qs, q);
        float d = amax / 127.0f;
        sl_store_u16(y[i].d, sl_f32_to_f16(d));
        sl_store_u16(y[i].s, sl_f32_to_f16(d * (float)hsum_epi32(sums)));
    }
}

TARGET_AVX2 static void quant_q8_K_avx2(const float *src, void *dst, int64_t n) {
    block_q8_K *y = dst;
    const __m256 sign = _mm256_set1_ps(-0.0f);
    for (int64_t i = 0; i < n / QK_K; i++, src += QK_K) {
        __m256 amax8 = _mm256_setzero_ps();
        for (int j = 0; j < QK_K; j += 8) amax8 = _mm256_max_ps(_mm256_andnot_ps(sign, _mm256_loadu_ps(src + j)), amax8);
        float amax = hmax_ps(amax8);
        if (amax == 0.0f) {
            memset(&y[i], 0, sizeof y[i]);
            continue;
        }
        /* the first element of largest magnitude, with its sign */
        float max = 0.0f;
        __m256 target = _mm256_set1_ps(amax);
        for (int j = 0; j < QK_K; j += 8) {
            int hit = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_andnot_ps(sign, _mm256_loadu_ps(src + j)), target, _CMP_EQ_OQ));
            if (hit) {
                max = src[j + __builtin_ctz((unsigned)hit)];
                break;
            }
        }
        float iscale = sl_q8k_multiplier(max);
        __m256 mul = _mm256_set1_ps(iscale);
        for (int j = 0; j < QK_K; j += 32) {
            __m256 v[4];
            for (int k = 0; k < 4; k++) v[k] = _mm256_loadu_ps(src + j + 8 * k);
            __m256i q = round_to_i8(v, mul, NULL);
            _mm256_storeu_si256((__m256i *)(y[i].qs + j), q);
            /* the sums of elements 0-15 and 16-31 of this 32 */
            __m256i quads = sum_pairs_i16(_mm256_maddubs_epi16(_mm256_set1_epi8(1), q)); /* 8 sums of 4 */
            __m256i h = _mm256_hadd_epi32(quads, quads);
            h = _mm256_hadd_epi32(h, h); /* lane 0: sum of 0-15, lane 4: sum of 16-31 */
            sl_store_i16(y[i].bsums + 2 * (j / 16), (int16_t)_mm256_extract_epi32(h, 0));
            sl_store_i16(y[i].bsums + 2 * (j / 16 + 1), (int16_t)_mm256_extract_epi32(h, 4));
        }
        sl_store_f32(y[i].d, 1.0f / iscale);
    }
}

TARGET_AVX2 static void quant_f16_avx2(const float *src, void *dst, int64_t n) {
    uint8_t *out = dst;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        _mm_storeu_si128((__m128i *)(out + 2 * i), h);
    }
    for (; i < n; i++) sl_store_u16(out + 2 * i, sl_f32_to_f16(src[i]));
}

/* ======================= AVX2: dot products ======================= */

TARGET_AVX2 static float dot_f32_avx2(int64_t n, const void *w, const void *act) {
    const float *x = w, *y = act; /* unaligned float loads go through loadu */
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    __m256 acc2 = _mm256_setzero_ps(), acc3 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 8), _mm256_loadu_ps(y + i + 8), acc1);
        acc2 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 16), _mm256_loadu_ps(y + i + 16), acc2);
        acc3 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 24), _mm256_loadu_ps(y + i + 24), acc3);
    }
    for (; i + 8 <= n; i += 8) acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), acc0);
    float sum = hsum_ps(_mm256_add_ps(_mm256_add_ps(acc0, acc1), _mm256_add_ps(acc2, acc3)));
    const uint8_t *xb = w, *yb = act;
    for (; i < n; i++) sum += sl_load_f32(xb + 4 * i) * sl_load_f32(yb + 4 * i);
    return sum;
}

TARGET_AVX2 static inline __m256 load_f16x8(const uint8_t *p) {
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}

TARGET_AVX2 static float dot_f16_avx2(int64_t n, const void *w, const void *act) {
    const uint8_t *x = w, *y = act;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    __m256 acc2 = _mm256_setzero_ps(), acc3 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        acc0 = _mm256_fmadd_ps(load_f16x8(x + 2 * i), load_f16x8(y + 2 * i), acc0);
        acc1 = _mm256_fmadd_ps(load_f16x8(x + 2 * i + 16), load_f16x8(y + 2 * i + 16), acc1);
        acc2 = _mm256_fmadd_ps(load_f16x8(x + 2 * i + 32), load_f16x8(y + 2 * i + 32), acc2);
        acc3 = _mm256_fmadd_ps(load_f16x8(x + 2 * i + 48), load_f16x8(y + 2 * i + 48), acc3);
    }
    for (; i + 8 <= n; i += 8) acc0 = _mm256_fmadd_ps(load_f16x8(x + 2 * i), load_f16x8(y + 2 * i), acc0);
    float sum = hsum_ps(_mm256_add_ps(_mm256_add_ps(acc0, acc1), _mm256_add_ps(acc2, acc3)));
    for (; i < n; i++) sum += f16_at(x + 2 * i) * f16_at(y + 2 * i);
    return sum;
}

TARGET_AVX2 static inline __m256 load_bf16x8(const uint8_t *p) {
    __m256i u = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(u, 16));
}

TARGET_AVX2 static float dot_bf16_avx2(int64_t n, const void *w, const void *act) {
    const uint8_t *x = w, *y = act;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        acc0 = _mm256_fmadd_ps(load_bf16x8(x + 2 * i), load_bf16x8(y + 2 * i), acc0);
        acc1 = _mm256_fmadd_ps(load_bf16x8(x + 2 * i + 16), load_bf16x8(y + 2 * i + 16), acc1);
    }
    float sum = hsum_ps(_mm256_add_ps(acc0, acc1));
    for (; i < n; i++) sum += sl_bf16_to_f32(sl_load_u16(x + 2 * i)) * sl_bf16_to_f32(sl_load_u16(y + 2 * i));
    return sum;
}

/* Q8_0 and Q4_0 with Q8_0 activations: pairs of blocks into two float
 * accumulators per activation row, as ggml's AVX2 code. */

/* f16 scales of a pair of blocks: dx0, dx1 in the low 16-bit lanes. */
TARGET_AVX2 static inline __m128i pair_halves(const uint8_t *d0, const uint8_t *d1) {
    return _mm_insert_epi16(_mm_cvtsi32_si128(sl_load_u16(d0)), sl_load_u16(d1), 1);
}

/* dx0*dy0 and dx1*dy1 in lanes 0 and 1, the four f16 scales converted at once
 * (the same products as the scalar code's). */
TARGET_AVX2 static inline __m128 pair_scale_products(__m128i dx_halves, const uint8_t *dy0, const uint8_t *dy1) {
    __m128i h = _mm_insert_epi16(_mm_insert_epi16(dx_halves, sl_load_u16(dy0), 2), sl_load_u16(dy1), 3);
    __m128 f = _mm_cvtph_ps(h);
    return _mm_mul_ps(f, _mm_movehl_ps(f, f));
}

/* int32 lanes of sum x*y for a weight block as signed bytes xs (ax = |xs|). */
TARGET_AVX2 static ALWAYS_INLINE __m256i q8_block_dot(__m256i xs, __m256i ax, const block_q8_0 *y) {
    __m256i yq = _mm256_loadu_si256((const __m256i *)y->qs);
    return sum_pairs_i16(_mm256_maddubs_epi16(ax, _mm256_sign_epi8(yq, xs)));
}

/* Block i of a Q4_0 (is_q4) or Q8_0 row as signed bytes. */
TARGET_AVX2 static ALWAYS_INLINE __m256i q80_q40_signed(const void *w, bool is_q4, int64_t i) {
    if (is_q4) return _mm256_sub_epi8(nibbles_32(((const block_q4_0 *)w)[i].qs), _mm256_set1_epi8(8));
    return _mm256_loadu_si256((const __m256i *)((const block_q8_0 *)w)[i].qs);
}
TARGET_AVX2 static ALWAYS_INLINE const uint8_t *q80_q40_scale(const void *w, bool is_q4, int64_t i) {
    return is_q4 ? ((const block_q4_0 *)w)[i].d : ((const block_q8_0 *)w)[i].d;
}

TARGET_AVX2 static ALWAYS_INLINE void q80_q40_core_avx2(int64_t n, const void *w, bool is_q4, const void *const *acts,
                                                        int nact, float *out) {
    __m256 acc0[SL_DOT_GROUP], acc1[SL_DOT_GROUP];
    #pragma GCC unroll 4
    for (int a = 0; a < nact; a++) acc0[a] = acc1[a] = _mm256_setzero_ps();
    int64_t nb = n / 32, i = 0;
    for (; i + 2 <= nb; i += 2) {
        __m256i x0 = q80_q40_signed(w, is_q4, i), x1 = q80_q40_signed(w, is_q4, i + 1);
        __m256i ax0 = _mm256_sign_epi8(x0, x0), ax1 = _mm256_sign_epi8(x1, x1);
        __m128i dx = pair_halves(q80_q40_scale(w, is_q4, i), q80_q40_scale(w, is_q4, i + 1));
        #pragma GCC unroll 4
        for (int a = 0; a < nact; a++) {
            const block_q8_0 *y = acts[a];
            __m128 d = pair_scale_products(dx, y[i].d, y[i + 1].d);
            acc0[a] = _mm256_fmadd_ps(_mm256_broadcastss_ps(d), _mm256_cvtepi32_ps(q8_block_dot(x0, ax0, &y[i])), acc0[a]);
            acc1[a] = _mm256_fmadd_ps(_mm256_broadcastss_ps(_mm_movehdup_ps(d)),
                                      _mm256_cvtepi32_ps(q8_block_dot(x1, ax1, &y[i + 1])), acc1[a]);
        }
    }
    if (i < nb) {
        __m256i x0 = q80_q40_signed(w, is_q4, i), ax0 = _mm256_sign_epi8(x0, x0);
        float dx0 = f16_at(q80_q40_scale(w, is_q4, i));
        #pragma GCC unroll 4
        for (int a = 0; a < nact; a++) {
            const block_q8_0 *y = acts[a];
            __m256 d = _mm256_set1_ps(dx0 * f16_at(y[i].d));
            acc0[a] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(q8_block_dot(x0, ax0, &y[i])), acc0[a]);
        }
    }
    #pragma GCC unroll 4
    for (int a = 0; a < nact; a++) out[a] = hsum_ps(_mm256_add_ps(acc0[a], acc1[a]));
}

TARGET_AVX2 static ALWAYS_INLINE void q8_0_core_avx2(int64_t n, const void *w, const void *const *acts, int nact, float *out) {
    q80_q40_core_avx2(n, w, false, acts, nact, out);
}
TARGET_AVX2 static ALWAYS_INLINE void q4_0_core_avx2(int64_t n, const void *w, const void *const *acts, int nact, float *out) {
    q80_q40_core_avx2(n, w, true, acts, nact, out);
}

TARGET_AVX2 static float dot_q8_0_avx2(int64_t n, const void *w, const void *act) {
    float out;
    q8_0_core_avx2(n, w, &act, 1, &out);
    return out;
}
TARGET_AVX2 static void dots_q8_0_avx2(int64_t n, const void *w, const void *const *acts, float *out) {
    q8_0_core_avx2(n, w, acts, SL_DOT_GROUP, out);
}
TARGET_AVX2 static float dot_q4_0_avx2(int64_t n, const void *w, const void *act) {
    float out;
    q4_0_core_avx2(n, w, &act, 1, &out);
    return out;
}
TARGET_AVX2 static void dots_q4_0_avx2(int64_t n, const void *w, const void *const *acts, float *out) {
    q4_0_core_avx2(n, w, acts, SL_DOT_GROUP, out);
}

/* The 32 fifth bits of a Q5_0/Q5_1 block (bit j for element j) as 0x10 bytes. */
TARGET_AVX2 static inline __m256i q5_high_bits(const uint8_t qh[4]) {
    uint32_t bits;
    memcpy(&bits, qh, 4);
    /* byte k of the result takes byte k/8 of bits, then tests bit k%8 */
    __m256i spread = _mm256_shuffle_epi8(_mm256_set1_epi32((int)bits),
                                         _mm256_setr_epi64x(0, 0x0101010101010101LL, 0x0202020202020202LL,
                                                            0x0303030303030303LL));
    __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ULL);
    __m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit);
    return _mm256_and_si256(set, _mm256_set1_epi8(0x10));
}

TARGET_AVX2 static float dot_q5_0_avx2(int64_t n, const void *w, const void *act) {
    const block_q5_0 *x = w;
    const block_q8_0 *y = act;
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / 32; i++) {
        __m256i q = _mm256_or_si256(nibbles_32(x[i].qs), q5_high_bits(x[i].qh));
        q = _mm256_sub_epi8(q, _mm256_set1_epi8(16));
        __m256i p = dot_i8(q, _mm256_loadu_si256((const __m256i *)y[i].qs));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(f16_at(x[i].d) * f16_at(y[i].d)), _mm256_cvtepi32_ps(p), acc);
    }
    return hsum_ps(acc);
}

/* Unsigned quants (0..31) times int8: int32 lanes. */
TARGET_AVX2 static inline __m256i dot_u8_i8(__m256i q, __m256i y) {
    return sum_pairs_i16(_mm256_maddubs_epi16(q, y));
}

TARGET_AVX2 static float dot_q4_1_avx2(int64_t n, const void *w, const void *act) {
    const block_q4_1 *x = w;
    const block_q8_1 *y = act;
    __m256 acc = _mm256_setzero_ps();
    float mins = 0;
    for (int64_t i = 0; i < n / 32; i++) {
        __m256i p = dot_u8_i8(nibbles_32(x[i].qs), _mm256_loadu_si256((const __m256i *)y[i].qs));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(f16_at(x[i].d) * f16_at(y[i].d)), _mm256_cvtepi32_ps(p), acc);
        mins += f16_at(x[i].m) * f16_at(y[i].s);
    }
    return hsum_ps(acc) + mins;
}

TARGET_AVX2 static float dot_q5_1_avx2(int64_t n, const void *w, const void *act) {
    const block_q5_1 *x = w;
    const block_q8_1 *y = act;
    __m256 acc = _mm256_setzero_ps();
    float mins = 0;
    for (int64_t i = 0; i < n / 32; i++) {
        __m256i q = _mm256_or_si256(nibbles_32(x[i].qs), q5_high_bits(x[i].qh));
        __m256i p = dot_u8_i8(q, _mm256_loadu_si256((const __m256i *)y[i].qs));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(f16_at(x[i].d) * f16_at(y[i].d)), _mm256_cvtepi32_ps(p), acc);
        mins += f16_at(x[i].m) * f16_at(y[i].s);
    }
    return hsum_ps(acc) + mins;
}

TARGET_AVX2 static float dot_iq4_nl_avx2(int64_t n, const void *w, const void *act) {
    const block_iq4_nl *x = w;
    const block_q8_0 *y = act;
    const __m256i table = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)sl_iq4nl_values));
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / 32; i++) {
        __m256i q = _mm256_shuffle_epi8(table, nibbles_32(x[i].qs));
        __m256i p = dot_i8(q, _mm256_loadu_si256((const __m256i *)y[i].qs));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(f16_at(x[i].d) * f16_at(y[i].d)), _mm256_cvtepi32_ps(p), acc);
    }
    return hsum_ps(acc);
}

/* Broadcasts 16-bit lane j (0..7) of the 128-bit s to every 16-bit lane. */
TARGET_AVX2 static inline __m256i broadcast_i16(__m256i s, int j) {
    return _mm256_shuffle_epi8(s, _mm256_set1_epi16((short)(0x0100 + 0x0202 * j)));
}

/* Q4_K and Q5_K: the 32-element sub-block pairs of chunk k (levels lo, hi)
 * against one activation row, into int32 lanes. */
TARGET_AVX2 static ALWAYS_INLINE __m256i k4_chunk_avx2(__m256i acc, __m256i lo, __m256i hi, __m256i s_lo, __m256i s_hi,
                                                       const int8_t *q8) {
    __m256i y0 = _mm256_loadu_si256((const __m256i *)q8);
    __m256i y1 = _mm256_loadu_si256((const __m256i *)(q8 + 32));
    acc = _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(lo, y0), s_lo));
    return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(hi, y1), s_hi));
}

/* The scaled sum of a Q4_K/Q5_K super-block, as the reference computes it. */
TARGET_AVX2 static ALWAYS_INLINE float k4_block_sum(const uint8_t *d, const uint8_t *dmin, int isum, int summs, const block_q8_K *y) {
    float yd = sl_load_f32(y->d);
    return f16_at(d) * yd * isum - f16_at(dmin) * yd * summs;
}

TARGET_AVX2 static ALWAYS_INLINE void q4_K_core_avx2(int64_t n, const void *w, const void *const *acts, int nact, float *out) {
    const block_q4_K *x = w;
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    float sum[SL_DOT_GROUP] = {0};
    for (int64_t i = 0; i < n / QK_K; i++) {
        uint64_t sc8, mins8;
        unpack_scale_min_k4(x[i].scales, &sc8, &mins8);
        __m256i sc = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(_mm_cvtsi64_si128((long long)sc8)));
        __m256i acc[SL_DOT_GROUP];
        #pragma GCC unroll 4
        for (int a = 0; a < nact; a++) acc[a] = _mm256_setzero_si256();
        for (int k = 0; k < 4; k++) {
            __m256i q = _mm256_loadu_si256((const __m256i *)(x[i].qs + 32 * k));
            __m256i lo = _mm256_and_si256(q, m4), hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
            __m256i s_lo = broadcast_i16(sc, 2 * k), s_hi = broadcast_i16(sc, 2 * k + 1);
            #pragma GCC unroll 4
            for (int a = 0; a < nact; a++) {
                const block_q8_K *y = acts[a];
                acc[a] = k4_chunk_avx2(acc[a], lo, hi, s_lo, s_hi, y[i].qs + 64 * k);
            }
        }
        #pragma GCC unroll 4
        for (int a = 0; a < nact; a++) {
            const block_q8_K *y = acts[a];
            sum[a] += k4_block_sum(x[i].d, x[i].dmin, hsum_epi32(acc[a]), k4_min_sum(mins8, &y[i]), &y[i]);
        }
    }
    #pragma GCC unroll 4
    for (int a = 0; a < nact; a++) out[a] = sum[a];
}

TARGET_AVX2 static ALWAYS_INLINE void q5_K_core_avx2(int64_t n, const void *w, const void *const *acts, int nact, float *out) {
    const block_q5_K *x = w;
    const __m256i m4 = _mm256_set1_epi8(0x0F), bit0 = _mm256_set1_epi8(0x01), bit1 = _mm256_set1_epi8(0x02);
    float sum[SL_DOT_GROUP] = {0};
    for (int64_t i = 0; i < n / QK_K; i++) {
        uint64_t sc8, mins8;
        unpack_scale_min_k4(x[i].scales, &sc8, &mins8);
        __m256i sc = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(_mm_cvtsi64_si128((long long)sc8)));
        __m256i h = _mm256_loadu_si256((const __m256i *)x[i].qh); /* bits 2k, 2k+1: chunk k */
        __m256i acc[SL_DOT_GROUP];
        #pragma GCC unroll 4
        for (int a = 0; a < nact; a++) acc[a] = _mm256_setzero_si256();
        for (int k = 0; k < 4; k++) {
            __m256i q = _mm256_loadu_si256((const __m256i *)(x[i].qs + 32 * k));
            __m256i lo = _mm256_or_si256(_mm256_and_si256(q, m4), _mm256_slli_epi16(_mm256_and_si256(h, bit0), 4));
            __m256i hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q, 4), m4),
                                         _mm256_slli_epi16(_mm256_and_si256(h, bit1), 3));
            h = _mm256_srli_epi16(h, 2);
            __m256i s_lo = broadcast_i16(sc, 2 * k), s_hi = broadcast_i16(sc, 2 * k + 1);
            #pragma GCC unroll 4
            for (int a = 0; a < nact; a++) {
                const block_q8_K *y = acts[a];
                acc[a] = k4_chunk_avx2(acc[a], lo, hi, s_lo, s_hi, y[i].qs + 64 * k);
            }
        }
        #pragma GCC unroll 4
        for (int a = 0; a < nact; a++) {
            const block_q8_K *y = acts[a];
            sum[a] += k4_block_sum(x[i].d, x[i].dmin, hsum_epi32(acc[a]), k4_min_sum(mins8, &y[i]), &y[i]);
        }
    }
    #pragma GCC unroll 4
    for (int a = 0; a < nact; a++) out[a] = sum[a];
}

TARGET_AVX2 static float dot_q4_K_avx2(int64_t n, const void *w, const void *act) {
    float out;
    q4_K_core_avx2(n, w, &act, 1, &out);
    return out;
}
TARGET_AVX2 static void dots_q4_K_avx2(int64_t n, const void *w, const void *const *acts, float *out) {
    q4_K_core_avx2(n, w, acts, SL_DOT_GROUP, out);
}
TARGET_AVX2 static float dot_q5_K_avx2(int64_t n, const void *w, const void *act) {
    float out;
    q5_K_core_avx2(n, w, &act, 1, &out);
    return out;
}
TARGET_AVX2 static void dots_q5_K_avx2(int64_t n, const void *w, const void *const *acts, float *out) {
    q5_K_core_avx2(n, w, acts, SL_DOT_GROUP, out);
}

/* Sub-blocks 2k and 2k+1 of a 128-bit lane of 16-bit scales (the lane
 * copied into both halves): scale 2k in the low half, 2k+1 in the high. */
TARGET_AVX2 static inline __m256i scale_pair(__m256i sc_half, int k) {
    __m256i pick = _mm256_set_m128i(_mm_set1_epi16((short)((4 * k + 2) | ((4 * k + 3) << 8))),
                                    _mm_set1_epi16((short)((4 * k) | ((4 * k + 1) << 8))));
    return _mm256_shuffle_epi8(sc_half, pick);
}

/* Q6_K: 32 * sum_sb scale[sb] * bsum[sb], the correction for storing q+32. */
TARGET_AVX2 static inline int q6k_offset_sum(__m256i sc16, const block_q8_K *y) {
    return 32 * hsum_epi32(_mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)y->bsums), sc16));
}

TARGET_AVX2 static ALWAYS_INLINE void q6_K_core_avx2(int64_t n, const void *w, const void *const *acts, int nact, float *out) {
    const block_q6_K *x = w;
    const __m256i m4 = _mm256_set1_epi8(0x0F), m2 = _mm256_set1_epi8(0x03);
    float sum[SL_DOT_GROUP] = {0};
    for (int64_t i = 0; i < n / QK_K; i++) {
        __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)x[i].scales));
        /* 128-bit lane h of the 16 scales, in both lanes */
        __m256i sc_halves[2] = {_mm256_permute2x128_si256(sc16, sc16, 0x00), _mm256_permute2x128_si256(sc16, sc16, 0x11)};
        __m256i acc[SL_DOT_GROUP];
        #pragma GCC unroll 4
        for (int a = 0; a < nact; a++) acc[a] = _mm256_setzero_si256();
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = x[i].ql + 64 * h;
            __m256i qa = _mm256_loadu_si256((const __m256i *)ql);
            __m256i qb = _mm256_loadu_si256((const __m256i *)(ql + 32));
            __m256i hb = _mm256_loadu_si256((const __m256i *)(x[i].qh + 32 * h));
            __m256i q[4], s[4];
            q[0] = _mm256_or_si256(_mm256_and_si256(qa, m4), _mm256_slli_epi16(_mm256_and_si256(hb, m2), 4));
            q[1] = _mm256_or_si256(_mm256_and_si256(qb, m4), _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 2), m2), 4));
            q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(qa, 4), m4), _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 4), m2), 4));
            q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(qb, 4), m4), _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 6), m2), 4));
            for (int k = 0; k < 4; k++) s[k] = scale_pair(sc_halves[h], k);
            #pragma GCC unroll 4
            for (int a = 0; a < nact; a++) {
                const int8_t *q8 = ((const block_q8_K *)acts[a])[i].qs + 128 * h;
                for (int k = 0; k < 4; k++) {
                    __m256i p = _mm256_maddubs_epi16(q[k], _mm256_loadu_si256((const __m256i *)(q8 + 32 * k)));
                    acc[a] = _mm256_add_epi32(acc[a], _mm256_madd_epi16(p, s[k]));
                }
            }
        }
        float dx = f16_at(x[i].d);
        #pragma GCC unroll 4
        for (int a = 0; a < nact; a++) {
            const block_q8_K *y = acts[a];
            int isum = hsum_epi32(acc[a]) - q6k_offset_sum(sc16, &y[i]);
            sum[a] += (dx * sl_load_f32(y[i].d)) * isum;
        }
    }
    #pragma GCC unroll 4
    for (int a = 0; a < nact; a++) out[a] = sum[a];
}

TARGET_AVX2 static float dot_q6_K_avx2(int64_t n, const void *w, const void *act) {
    float out;
    q6_K_core_avx2(n, w, &act, 1, &out);
    return out;
}
TARGET_AVX2 static void dots_q6_K_avx2(int64_t n, const void *w, const void *const *acts, float *out) {
    q6_K_core_avx2(n, w, acts, SL_DOT_GROUP, out);
}

TARGET_AVX2 static float dot_q2_K_avx2(int64_t n, const void *w, const void *act) {
    const block_q2_K *x = w;
    const block_q8_K *y = act;
    const __m256i m2 = _mm256_set1_epi8(3);
    float sum = 0;
    for (int64_t i = 0; i < n / QK_K; i++) {
        __m128i packed = _mm_loadu_si128((const __m128i *)x[i].scales);
        __m256i mins16 = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(packed, 4), _mm_set1_epi8(0x0F)));
        int summs = hsum_epi32(_mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)y[i].bsums), mins16));
        __m256i sc16 = _mm256_cvtepu8_epi16(_mm_and_si128(packed, _mm_set1_epi8(0x0F)));
        __m256i acc = _mm256_setzero_si256();
        for (int c = 0; c < 2; c++) {
            __m256i sc_half = c ? _mm256_permute2x128_si256(sc16, sc16, 0x11) : _mm256_permute2x128_si256(sc16, sc16, 0x00);
            __m256i q = _mm256_loadu_si256((const __m256i *)(x[i].qs + 32 * c));
            for (int j = 0; j < 4; j++) {
                __m256i levels = _mm256_and_si256(q, m2);
                q = _mm256_srli_epi16(q, 2);
                __m256i y8 = _mm256_loadu_si256((const __m256i *)(y[i].qs + 128 * c + 32 * j));
                acc = _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(levels, y8), scale_pair(sc_half, j)));
            }
        }
        int isum = hsum_epi32(acc);
        float yd = sl_load_f32(y[i].d);
        float dall = yd * f16_at(x[i].d), dmin = yd * f16_at(x[i].dmin);
        sum += dall * isum - dmin * summs;
    }
    return sum;
}

TARGET_AVX2 static float dot_q3_K_avx2(int64_t n, const void *w, const void *act) {
    const block_q3_K *x = w;
    const block_q8_K *y = act;
    const __m256i m2 = _mm256_set1_epi8(3), one = _mm256_set1_epi8(1);
    float sum = 0;
    for (int64_t i = 0; i < n / QK_K; i++) {
        int8_t sc[16];
        sl_q3k_scales(x[i].scales, sc);
        __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)sc));
        __m256i hm = _mm256_loadu_si256((const __m256i *)x[i].hmask); /* bit e/32 of byte e%32 */
        __m256i acc = _mm256_setzero_si256();
        for (int c = 0; c < 2; c++) {
            __m256i sc_half = c ? _mm256_permute2x128_si256(sc16, sc16, 0x11) : _mm256_permute2x128_si256(sc16, sc16, 0x00);
            __m256i q = _mm256_loadu_si256((const __m256i *)(x[i].qs + 32 * c));
            for (int j = 0; j < 4; j++) {
                __m256i minus4 = _mm256_slli_epi16(_mm256_andnot_si256(hm, one), 2); /* 4 where the bit is clear */
                hm = _mm256_srli_epi16(hm, 1);
                __m256i levels = _mm256_sub_epi8(_mm256_and_si256(q, m2), minus4); /* -4..3 */
                q = _mm256_srli_epi16(q, 2);
                __m256i y8 = _mm256_loadu_si256((const __m256i *)(y[i].qs + 128 * c + 32 * j));
                __m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(levels, levels), _mm256_sign_epi8(y8, levels));
                acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p, scale_pair(sc_half, j)));
            }
        }
        int isum = hsum_epi32(acc);
        sum += (f16_at(x[i].d) * sl_load_f32(y[i].d)) * isum;
    }
    return sum;
}

/* ======================= AVX-512 ======================= */

TARGET_AVX512 static inline float f16_at_512(const uint8_t *p) { return _cvtsh_ss(sl_load_u16(p)); }

/* Two 256-bit loads as one 512-bit vector. */
TARGET_AVX512 static inline __m512i load_2x256(const void *lo, const void *hi) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)lo)),
                              _mm256_loadu_si256((const __m256i *)hi), 1);
}

TARGET_AVX512 static float dot_f32_avx512(int64_t n, const void *w, const void *act) {
    const float *x = w, *y = act;
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    __m512 acc2 = _mm512_setzero_ps(), acc3 = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 64 <= n; i += 64) {
        acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i), acc0);
        acc1 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 16), _mm512_loadu_ps(y + i + 16), acc1);
        acc2 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 32), _mm512_loadu_ps(y + i + 32), acc2);
        acc3 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 48), _mm512_loadu_ps(y + i + 48), acc3);
    }
    for (; i + 16 <= n; i += 16) acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i), acc0);
    float sum = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(acc0, acc1), _mm512_add_ps(acc2, acc3)));
    const uint8_t *xb = w, *yb = act;
    for (; i < n; i++) sum += sl_load_f32(xb + 4 * i) * sl_load_f32(yb + 4 * i);
    return sum;
}

TARGET_AVX512 static inline __m512 load_f16x16(const uint8_t *p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p));
}

TARGET_AVX512 static ALWAYS_INLINE void f16_core_avx512(int64_t n, const void *w, const void *const *acts, int nact, float *out) {
    const uint8_t *x = w;
    __m512 acc[SL_DOT_GROUP][4];
    #pragma GCC unroll 4
    for (int a = 0; a < nact; a++) acc[a][0] = acc[a][1] = acc[a][2] = acc[a][3] = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 64 <= n; i += 64) {
        __m512 w0 = load_f16x16(x + 2 * i), w1 = load_f16x16(x + 2 * i + 32);
        __m512 w2 = load_f16x16(x + 2 * i + 64), w3 = load_f16x16(x + 2 * i + 96);
        #pragma GCC unroll 4
        for (int a = 0; a < nact; a++) {
            const uint8_t *y = acts[a];
            acc[a][0] = _mm512_fmadd_ps(w0, load_f16x16(y + 2 * i), acc[a][0]);
            acc[a][1] = _mm512_fmadd_ps(w1, load_f16x16(y + 2 * i + 32), acc[a][1]);
            acc[a][2] = _mm512_fmadd_ps(w2, load_f16x16(y + 2 * i + 64), acc[a][2]);
            acc[a][3] = _mm512_fmadd_ps(w3, load_f16x16(y + 2 * i + 96), acc[a][3]);
        }
    }
    for (; i + 16 <= n; i += 16) {
        __m512 w0 = load_f16x16(x + 2 * i);
        #pragma GCC unroll 4
        for (int a = 0; a < nact; a++) acc[a][0] = _mm512_fmadd_ps(w0, load_f16x16((const uint8_t *)acts[a] + 2 * i), acc[a][0]);
    }
    #pragma GCC unroll 4
    for (int a = 0; a < nact; a++) {
        const uint8_t *y = acts[a];
        float sum = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(acc[a][0], acc[a][1]), _mm512_add_ps(acc[a][2], acc[a][3])));
        for (int64_t j = i; j < n; j++) sum += f16_at_512(x + 2 * j) * f16_at_512(y + 2 * j);
        out[a] = sum;
    }
}

TARGET_AVX512 static float dot_f16_avx512(int64_t n, const void *w, const void *act) {
    float out;
    f16_core_avx512(n, w, &act, 1, &out);
    return out;
}
TARGET_AVX512 static void dots_f16_avx512(int64_t n, const void *w, const void *const *acts, float *out) {
    f16_core_avx512(n, w, acts, SL_DOT_GROUP, out);
}

/* Q8_0 and Q4_0 with Q8_0 activations, two blocks per 512-bit vector and
 * one float accumulator per activation row; an odd last block goes through
 * the AVX2 code. The products use VNNI's unsigned-times-signed dpbusd. */
TARGET_AVX512 static ALWAYS_INLINE __m512 q8_pair_fma(__m512i xu, __m512i corr, __m128i dx_halves,
                                                     const block_q8_0 *y, __m512 acc) {
    __m512i yy = load_2x256(y[0].qs, y[1].qs);
    __m512i p = _mm512_sub_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), xu, yy),
                                 _mm512_dpbusd_epi32(_mm512_setzero_si512(), corr, yy));
    __m128 prod = pair_scale_products(dx_halves, y[0].d, y[1].d);
    const __m512i halves = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
    __m512 d = _mm512_permutexvar_ps(halves, _mm512_castps128_ps512(prod));
    return _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(p), acc);
}

/* Q8_0: sum x*y = sum (x+128)*y - 128*sum y. */
TARGET_AVX512 static ALWAYS_INLINE void q8_0_core_avx512(int64_t n, const void *w, const void *const *acts, int nact, float *out) {
    const block_q8_0 *x = w;
    const __m512i bias = _mm512_set1_epi8((char)0x80);
    __m512 acc[SL_DOT_GROUP];
    #pragma GCC unroll 4
    for (int a = 0; a < nact; a++) acc[a] = _mm512_setzero_ps();
    int64_t nb = n / 32, i = 0;
    for (; i + 2 <= nb; i += 2) {
        __m512i xu = _mm512_xor_si512(load_2x256(x[i].qs, x[i + 1].qs), bias);
        __m128i dx = pair_halves(x[i].d, x[i + 1].d);
        #pragma GCC unroll 4
        for (int a = 0; a < nact; a++) acc[a] = q8_pair_fma(xu, bias, dx, &((const block_q8_0 *)acts[a])[i], acc[a]);
    }
    float tail[SL_DOT_GROUP] = {0};
    if (i < nb) {
        const void *tail_acts[SL_DOT_GROUP];
        #pragma GCC unroll 4
        for (int a = 0; a < nact; a++) tail_acts[a] = &((const block_q8_0 *)acts[a])[i];
        q8_0_core_avx2(32, &x[i], tail_acts, nact, tail);
    }
    #pragma GCC unroll 4
    for (int a = 0; a < nact; a++) out[a] = _mm512_reduce_add_ps(acc[a]) + tail[a];
}

/* The nibbles of two Q4 blocks (16 bytes each) as 64 bytes: block a's low
 * nibbles, its high nibbles, then block b's. */
TARGET_AVX512 static inline __m512i nibbles_2x32(const uint8_t *a, const uint8_t *b) {
    __m256i ab = _mm256_set_m128i(_mm_loadu_si128((const __m128i *)b), _mm_loadu_si128((const __m128i *)a));
    __m512i aabb = _mm512_permutexvar_epi64(_mm512_setr_epi64(0, 1, 0, 1, 2, 3, 2, 3), _mm512_castsi256_si512(ab));
    const long long by4 = 0x0004000400040004LL; /* shift each 16-bit lane of the high copies by 4 */
    __m512i shift = _mm512_setr_epi64(0, 0, by4, by4, 0, 0, by4, by4);
    return _mm512_and_si512(_mm512_srlv_epi16(aabb, shift), _mm512_set1_epi8(0x0F));
}

/* Q4_0: sum (q-8)*y = sum q*y - 8*sum y, with q unsigned. */
TARGET_AVX512 static ALWAYS_INLINE void q4_0_core_avx512(int64_t n, const void *w, const void *const *acts, int nact, float *out) {
    const block_q4_0 *x = w;
    const __m512i eight = _mm512_set1_epi8(8);
    __m512 acc[SL_DOT_GROUP];
    #pragma GCC unroll 4
    for (int a = 0; a < nact; a++) acc[a] = _mm512_setzero_ps();
    int64_t nb = n / 32, i = 0;
    for (; i + 2 <= nb; i += 2) {
        __m512i q = nibbles_2x32(x[i].qs, x[i + 1].qs);
        __m128i dx = pair_halves(x[i].d, x[i + 1].d);
        #pragma GCC unroll 4
        for (int a = 0; a < nact; a++) acc[a] = q8_pair_fma(q, eight, dx, &((const block_q8_0 *)acts[a])[i], acc[a]);
    }
    float tail[SL_DOT_GROUP] = {0};
    if (i < nb) {
        const void *tail_acts[SL_DOT_GROUP];
        #pragma GCC unroll 4
        for (int a = 0; a < nact; a++) tail_acts[a] = &((const block_q8_0 *)acts[a])[i];
        q4_0_core_avx2(32, &x[i], tail_acts, nact, tail);
    }
    #pragma GCC unroll 4
    for (int a = 0; a < nact; a++) out[a] = _mm512_reduce_add_ps(acc[a]) + tail[a];
}

TARGET_AVX512 static float dot_q8_0_avx512(int64_t n, const void *w, const void *act) {
    float out;
    q8_0_core_avx512(n, w, &act, 1, &out);
    return out;
}
TARGET_AVX512 static void dots_q8_0_avx512(int64_t n, const void *w, const void *const *acts, float *out) {
    q8_0_core_avx512(n, w, acts, SL_DOT_GROUP, out);
}
TARGET_AVX512 static float dot_q4_0_avx512(int64_t n, const void *w, const void *act) {
    float out;
    q4_0_core_avx512(n, w, &act, 1, &out);
    return out;
}
TARGET_AVX512 static void dots_q4_0_avx512(int64_t n, const void *w, const void *const *acts, float *out) {
    q4_0_core_avx512(n, w, acts, SL_DOT_GROUP, out);
}

/* 16-bit index vectors picking, in each quarter (or half) of a 512-bit
 * vector, one 16-bit lane of the scales. */
TARGET_AVX512 static inline __m512i lane_index_halves(int lo, int hi) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set1_epi16((short)lo)), _mm256_set1_epi16((short)hi), 1);
}
TARGET_AVX512 static inline __m512i lane_index_quarters(int a, int b, int c, int d) {
    __m512i v = _mm512_castsi128_si512(_mm_set1_epi16((short)a));
    v = _mm512_inserti32x4(v, _mm_set1_epi16((short)b), 1);
    v = _mm512_inserti32x4(v, _mm_set1_epi16((short)c), 2);
    return _mm512_inserti32x4(v, _mm_set1_epi16((short)d), 3);
}

/* Q4_K and Q5_K: 128 elements (sub-blocks 4h..4h+3), given their levels as
 * lo = [sb 4h | sb 4h+2] and hi = [sb 4h+1 | sb 4h+3] and the matching
 * scales, against one activation row's q8 (its elements 128h..). */
TARGET_AVX512 static ALWAYS_INLINE __m512i k4_half_dot(__m512i acc, __m512i lo, __m512i hi, __m512i s_lo, __m512i s_hi,
                                                       const int8_t *q8) {
    __m512i ya = _mm512_loadu_si512((const void *)q8);
    __m512i yb = _mm512_loadu_si512((const void *)(q8 + 64));
    __m512i y_lo = _mm512_shuffle_i64x2(ya, yb, 0x44); /* q8[0..32) and q8[64..96) */
    __m512i y_hi = _mm512_shuffle_i64x2(ya, yb, 0xEE); /* q8[32..64) and q8[96..128) */
    acc = _mm512_dpwssd_epi32(acc, _mm512_maddubs_epi16(lo, y_lo), s_lo);
    return _mm512_dpwssd_epi32(acc, _mm512_maddubs_epi16(hi, y_hi), s_hi);
}

/* Q4_K (with_high false) and Q5_K (true: the fifth bits of sub-block sb are bit sb of qh[e % 32]). */
TARGET_AVX512 static ALWAYS_INLINE void k4_core_avx512(int64_t n, const void *w, bool with_high, const void *const *acts,
                                                       int nact, float *out) {
    const __m512i m4 = _mm512_set1_epi8(0x0F), sixteen = _mm512_set1_epi8(16);
    const size_t block_size = with_high ? sizeof(block_q5_K) : sizeof(block_q4_K);
    float sum[SL_DOT_GROUP] = {0};
    for (int64_t i = 0; i < n / QK_K; i++) {
        /* Q4_K and Q5_K share the layout of d, dmin and scales; qs follows qh in Q5_K */
        const uint8_t *blk = (const uint8_t *)w + i * block_size;
        const block_q4_K *head = (const block_q4_K *)blk;
        const uint8_t *qs = with_high ? ((const block_q5_K *)blk)->qs : head->qs;
        uint64_t sc8, mins8;
        unpack_scale_min_k4(head->scales, &sc8, &mins8);
        __m512i sc = _mm512_castsi128_si512(_mm_cvtepu8_epi16(_mm_cvtsi64_si128((long long)sc8)));
        __m512i qh = with_high ? _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)((const block_q5_K *)blk)->qh))
                               : _mm512_setzero_si512();
        __m512i acc[SL_DOT_GROUP];
        #pragma GCC unroll 4
        for (int a = 0; a < nact; a++) acc[a] = _mm512_setzero_si512();
        for (int h = 0; h < 2; h++) {
            __m512i q = _mm512_loadu_si512((const void *)(qs + 64 * h));
            __m512i lo = _mm512_and_si512(q, m4);
            __m512i hi = _mm512_and_si512(_mm512_srli_epi16(q, 4), m4);
            if (with_high) {
                __m512i bits_lo = _mm512_inserti64x4(_mm512_set1_epi8((char)(1 << (4 * h))), _mm256_set1_epi8((char)(1 << (4 * h + 2))), 1);
                __m512i bits_hi = _mm512_inserti64x4(_mm512_set1_epi8((char)(1 << (4 * h + 1))), _mm256_set1_epi8((char)(1 << (4 * h + 3))), 1);
                lo = _mm512_mask_add_epi8(lo, _mm512_test_epi8_mask(qh, bits_lo), lo, sixteen);
                hi = _mm512_mask_add_epi8(hi, _mm512_test_epi8_mask(qh, bits_hi), hi, sixteen);
            }
            __m512i s_lo = _mm512_permutexvar_epi16(lane_index_halves(4 * h, 4 * h + 2), sc);
            __m512i s_hi = _mm512_permutexvar_epi16(lane_index_halves(4 * h + 1, 4 * h + 3), sc);
            #pragma GCC unroll 4
            for (int a = 0; a < nact; a++) {
                const block_q8_K *y = acts[a];
                acc[a] = k4_half_dot(acc[a], lo, hi, s_lo, s_hi, y[i].qs + 128 * h);
            }
        }
        #pragma GCC unroll 4
        for (int a = 0; a < nact; a++) {
            const block_q8_K *y = acts[a];
            sum[a] += k4_block_sum(head->d, head->dmin, _mm512_reduce_add_epi32(acc[a]), k4_min_sum(mins8, &y[i]), &y[i]);
        }
    }
    #pragma GCC unroll 4
    for (int a = 0; a < nact; a++) out[a] = sum[a];
}

TARGET_AVX512 static float dot_q4_K_avx512(int64_t n, const void *w, const void *act) {
    float out;
    k4_core_avx512(n, w, false, &act, 1, &out);
    return out;
}
TARGET_AVX512 static void dots_q4_K_avx512(int64_t n, const void *w, const void *const *acts, float *out) {
    k4_core_avx512(n, w, false, acts, SL_DOT_GROUP, out);
}
TARGET_AVX512 static float dot_q5_K_avx512(int64_t n, const void *w, const void *act) {
    float out;
    k4_core_avx512(n, w, true, &act, 1, &out);
    return out;
}
TARGET_AVX512 static void dots_q5_K_avx512(int64_t n, const void *w, const void *const *acts, float *out) {
    k4_core_avx512(n, w, true, acts, SL_DOT_GROUP, out);
}

TARGET_AVX512 static ALWAYS_INLINE void q6_K_core_avx512(int64_t n, const void *w, const void *const *acts, int nact, float *out) {
    const block_q6_K *x = w;
    const __m512i m4 = _mm512_set1_epi8(0x0F), m_high = _mm512_set1_epi8(0x30);
    /* per 256-bit half: shifts that bring the qh bits of elements 0-31 | 32-63
     * (bits 0-1 | 2-3) and 64-95 | 96-127 (bits 4-5 | 6-7) to bits 4-5 */
    const __m512i left = _mm512_inserti64x4(_mm512_set1_epi16(4), _mm256_set1_epi16(2), 1);
    const __m512i right = _mm512_inserti64x4(_mm512_set1_epi16(0), _mm256_set1_epi16(2), 1);
    float sum[SL_DOT_GROUP] = {0};
    for (int64_t i = 0; i < n / QK_K; i++) {
        __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)x[i].scales));
        __m512i sc = _mm512_castsi256_si512(sc16);
        __m512i acc[SL_DOT_GROUP];
        #pragma GCC unroll 4
        for (int a = 0; a < nact; a++) acc[a] = _mm512_setzero_si512();
        for (int h = 0; h < 2; h++) {
            __m512i ql = _mm512_loadu_si512((const void *)(x[i].ql + 64 * h));
            __m512i qh = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(x[i].qh + 32 * h)));
            __m512i q01 = _mm512_or_si512(_mm512_and_si512(ql, m4), _mm512_and_si512(_mm512_sllv_epi16(qh, left), m_high));
            __m512i q23 = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql, 4), m4),
                                          _mm512_and_si512(_mm512_srlv_epi16(qh, right), m_high));
            int b = 8 * h;
            __m512i s01 = _mm512_permutexvar_epi16(lane_index_quarters(b, b + 1, b + 2, b + 3), sc);
            __m512i s23 = _mm512_permutexvar_epi16(lane_index_quarters(b + 4, b + 5, b + 6, b + 7), sc);
            #pragma GCC unroll 4
            for (int a = 0; a < nact; a++) {
                const int8_t *q8 = ((const block_q8_K *)acts[a])[i].qs + 128 * h;
                __m512i p01 = _mm512_maddubs_epi16(q01, _mm512_loadu_si512((const void *)q8));
                __m512i p23 = _mm512_maddubs_epi16(q23, _mm512_loadu_si512((const void *)(q8 + 64)));
                acc[a] = _mm512_dpwssd_epi32(acc[a], p01, s01);
                acc[a] = _mm512_dpwssd_epi32(acc[a], p23, s23);
            }
        }
        float dx = f16_at_512(x[i].d);
        #pragma GCC unroll 4
        for (int a = 0; a < nact; a++) {
            const block_q8_K *y = acts[a];
            int isum = _mm512_reduce_add_epi32(acc[a]) - q6k_offset_sum(sc16, &y[i]);
            sum[a] += (dx * sl_load_f32(y[i].d)) * isum;
        }
    }
    #pragma GCC unroll 4
    for (int a = 0; a < nact; a++) out[a] = sum[a];
}

TARGET_AVX512 static float dot_q6_K_avx512(int64_t n, const void *w, const void *act) {
    float out;
    q6_K_core_avx512(n, w, &act, 1, &out);
    return out;
}
TARGET_AVX512 static void dots_q6_K_avx512(int64_t n, const void *w, const void *const *acts, float *out) {
    q6_K_core_avx512(n, w, acts, SL_DOT_GROUP, out);
}

/* ======================= tables ======================= */

const sl_kernel_table sl_kernels_avx2 = {
    .vec_dot = {
        [SL_TYPE_F32] = dot_f32_avx2,   [SL_TYPE_F16] = dot_f16_avx2,   [SL_TYPE_BF16] = dot_bf16_avx2,
        [SL_TYPE_Q4_0] = dot_q4_0_avx2, [SL_TYPE_Q4_1] = dot_q4_1_avx2, [SL_TYPE_Q5_0] = dot_q5_0_avx2,
        [SL_TYPE_Q5_1] = dot_q5_1_avx2, [SL_TYPE_Q8_0] = dot_q8_0_avx2, [SL_TYPE_IQ4_NL] = dot_iq4_nl_avx2,
        [SL_TYPE_Q4_K] = dot_q4_K_avx2, [SL_TYPE_Q5_K] = dot_q5_K_avx2, [SL_TYPE_Q6_K] = dot_q6_K_avx2,
        [SL_TYPE_Q2_K] = dot_q2_K_avx2, [SL_TYPE_Q3_K] = dot_q3_K_avx2,
    },
    .vec_dot_group = {
        [SL_TYPE_Q4_0] = dots_q4_0_avx2, [SL_TYPE_Q8_0] = dots_q8_0_avx2, [SL_TYPE_Q4_K] = dots_q4_K_avx2,
        [SL_TYPE_Q5_K] = dots_q5_K_avx2, [SL_TYPE_Q6_K] = dots_q6_K_avx2,
    },
    .quantize = {
        [SL_TYPE_Q8_0] = quant_q8_0_avx2, [SL_TYPE_Q8_1] = quant_q8_1_avx2,
        [SL_TYPE_Q8_K] = quant_q8_K_avx2, [SL_TYPE_F16] = quant_f16_avx2,
    },
};

const sl_kernel_table sl_kernels_avx512 = {
    .vec_dot = {
        [SL_TYPE_F32] = dot_f32_avx512,   [SL_TYPE_F16] = dot_f16_avx512,   [SL_TYPE_BF16] = dot_bf16_avx2,
        [SL_TYPE_Q4_0] = dot_q4_0_avx512, [SL_TYPE_Q4_1] = dot_q4_1_avx2,   [SL_TYPE_Q5_0] = dot_q5_0_avx2,
        [SL_TYPE_Q5_1] = dot_q5_1_avx2,   [SL_TYPE_Q8_0] = dot_q8_0_avx512, [SL_TYPE_IQ4_NL] = dot_iq4_nl_avx2,
        [SL_TYPE_Q4_K] = dot_q4_K_avx512, [SL_TYPE_Q5_K] = dot_q5_K_avx512, [SL_TYPE_Q6_K] = dot_q6_K_avx512,
        [SL_TYPE_Q2_K] = dot_q2_K_avx2,   [SL_TYPE_Q3_K] = dot_q3_K_avx2,
    },
    .vec_dot_group = {
        [SL_TYPE_F16] = dots_f16_avx512,  [SL_TYPE_Q4_0] = dots_q4_0_avx512, [SL_TYPE_Q8_0] = dots_q8_0_avx512,
        [SL_TYPE_Q4_K] = dots_q4_K_avx512, [SL_TYPE_Q5_K] = dots_q5_K_avx512, [SL_TYPE_Q6_K] = dots_q6_K_avx512,
    },
    .quantize = {
        [SL_TYPE_Q8_0] = quant_q8_0_avx2, [SL_TYPE_Q8_1] = quant_q8_1_avx2,
        [SL_TYPE_Q8_K] = quant_q8_K_avx2, [SL_TYPE_F16] = quant_f16_avx2,
    },
};

#endif
