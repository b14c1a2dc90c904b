/* gemm_x86.c - AVX-512 (F, BW, VL, VNNI) kernels over packed groups of 16
 * rows (layouts in gemm.h), compiled with target attributes so the file
 * builds with plain -O2; matmul.c uses them only when the quant backend is
 * "avx512".
 *
 * Each 32-bit lane of a 512-bit vector is one row. vpdpbusd multiplies 4
 * unsigned weight bytes of each row by 4 signed activation bytes broadcast
 * from memory, so one instruction covers 16 rows x 4 elements; the
 * corrections for unsigned weights (Q4_0: q-8, Q8_0: q+128, Q6_K: q-32)
 * start the integer accumulators as precomputed multiples of the
 * activation sums. A tile of NT tokens reuses every decoded weight vector. */
#include "cpu/gemm.h"

#if defined(__x86_64__)
#include <immintrin.h>
#include <string.h>

#include "quant/quant_impl.h"

#define TARGET __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")))
#define ALWAYS_INLINE inline __attribute__((always_inline))
#define G 16
#define MAX_NT 4
/* How far ahead of its reads a one-token product prefetches: enough to cover
 * the memory latency at full bandwidth (of 1-16 KiB, 4 KiB measured best). */
#define PREFETCH_AHEAD 4096

/* Decoding one token is bound by memory, and a kernel that does some work
 * per cache line keeps too few misses in flight for the hardware
 * prefetchers to reach full bandwidth: prefetch the lines PREFETCH_AHEAD
 * past block column b's share [pos, pos + len) of the group stream. It runs
 * past the group's end into the next (groups are contiguous; prefetches of
 * addresses past the buffer do not fault, and the address is formed as an
 * integer). */
TARGET static ALWAYS_INLINE void prefetch_ahead(const uint8_t *grp, size_t pos, size_t len) {
    for (size_t o = (pos + PREFETCH_AHEAD) & ~(size_t)63; o < pos + PREFETCH_AHEAD + len; o += 64)
        _mm_prefetch((const char *)((uintptr_t)grp + o), _MM_HINT_T0);
}

/* Four activation bytes broadcast to every lane (an embedded broadcast). */
TARGET static ALWAYS_INLINE __m512i bcast4(const int8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return _mm512_set1_epi32(v);
}

/* The group's 16 f16 scales (row order) as floats. */
TARGET static ALWAYS_INLINE __m512 load_scales(const uint8_t *p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p));
}

TARGET static ALWAYS_INLINE void store_rows(float *y, size_t ldy, int nt, const __m512 *acc, int valid) {
    const __mmask16 mask = (__mmask16)((1u << valid) - 1);
    #pragma GCC unroll 8
    for (int t = 0; t < nt; t++) _mm512_mask_storeu_ps(y + (size_t)t * ldy, mask, acc[t]);
}

/* ---- Q4_0 and Q8_0: blocks of 32 ------------------------------------------ */

/* is_q4: Q4_0 (nibbles, -8 correction) else Q8_0 (bytes + 128, -128 correction). */
TARGET static ALWAYS_INLINE void q8_0_family_tile(bool is_q4, const uint8_t *grp, const sl_gemm_act *a, int32_t t0,
                                                  int nt, float *y, size_t ldy, int valid) {
    const int64_t nb = a->cols / 32;
    const size_t qb = is_q4 ? 16 * G : 32 * G, sb = 2 * G;
    const int32_t *corr = (is_q4 ? a->c8 : a->c128) + (size_t)t0 * nb;
    const float *dy = a->d + (size_t)t0 * nb;
    const int8_t *qy = a->qs + (size_t)t0 * a->cols;
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    __m512 acc[MAX_NT];
    #pragma GCC unroll 8
    for (int t = 0; t < nt; t++) acc[t] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *qp = grp + sl_gemm_quant_offset(b, qb, sb);
        if (nt == 1) prefetch_ahead(grp, (size_t)b * (qb + sb), qb + sb);
        __m512i w[8];
        if (is_q4) {
            #pragma GCC unroll 8
            for (int k = 0; k < 4; k++) {
                __m512i v = _mm512_load_si512((const void *)(qp + 64 * k));
                w[k] = _mm512_and_si512(v, m4);
                w[k + 4] = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
            }
        } else {
            #pragma GCC unroll 8
            for (int k = 0; k < 8; k++) w[k] = _mm512_load_si512((const void *)(qp + 64 * k));
        }
        const __m512 dw = load_scales(grp + sl_gemm_scale_offset(nb, b, qb, sb));
        #pragma GCC unroll 8
        for (int t = 0; t < nt; t++) {
            const int8_t *q8 = qy + (size_t)t * a->cols + 32 * b;
            __m512i p;
            if (nt == 1) {
                /* one token: two chains, so the dependent dpbusd latency halves */
                __m512i p0 = _mm512_set1_epi32(corr[b]), p1 = _mm512_setzero_si512();
                #pragma GCC unroll 8
                for (int k = 0; k < 8; k += 2) {
                    p0 = _mm512_dpbusd_epi32(p0, w[k], bcast4(q8 + 4 * k));
                    p1 = _mm512_dpbusd_epi32(p1, w[k + 1], bcast4(q8 + 4 * k + 4));
                }
                p = _mm512_add_epi32(p0, p1);
            } else {
                p = _mm512_set1_epi32(corr[(size_t)t * nb + b]);
                #pragma GCC unroll 8
                for (int k = 0; k < 8; k++) p = _mm512_dpbusd_epi32(p, w[k], bcast4(q8 + 4 * k));
            }
            __m512 s = _mm512_mul_ps(dw, _mm512_set1_ps(dy[(size_t)t * nb + b]));
            acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), s, acc[t]);
        }
    }
    store_rows(y, ldy, nt, acc, valid);
}

TARGET static void gemm_q4_0(const uint8_t *grp, const sl_gemm_act *a, int32_t t0, int32_t n, float *y, size_t ldy,
                             int valid) {
    int32_t t = 0;
    for (; t + MAX_NT <= n; t += MAX_NT) q8_0_family_tile(true, grp, a, t0 + t, MAX_NT, y + (size_t)t * ldy, ldy, valid);
    switch (n - t) {
    case 3: q8_0_family_tile(true, grp, a, t0 + t, 3, y + (size_t)t * ldy, ldy, valid); break;
    case 2: q8_0_family_tile(true, grp, a, t0 + t, 2, y + (size_t)t * ldy, ldy, valid); break;
    case 1: q8_0_family_tile(true, grp, a, t0 + t, 1, y + (size_t)t * ldy, ldy, valid); break;
    default: break;
    }
}

TARGET static void gemm_q8_0(const uint8_t *grp, const sl_gemm_act *a, int32_t t0, int32_t n, float *y, size_t ldy,
                             int valid) {
    int32_t t = 0;
    for (; t + MAX_NT <= n; t += MAX_NT) q8_0_family_tile(false, grp, a, t0 + t, MAX_NT, y + (size_t)t * ldy, ldy, valid);
    switch (n - t) {
    case 3: q8_0_family_tile(false, grp, a, t0 + t, 3, y + (size_t)t * ldy, ldy, valid); break;
    case 2: q8_0_family_tile(false, grp, a, t0 + t, 2, y + (size_t)t * ldy, ldy, valid); break;
    case 1: q8_0_family_tile(false, grp, a, t0 + t, 1, y + (size_t)t * ldy, ldy, valid); break;
    default: break;
    }
}

/* ---- Q4_K: super-blocks of 256, 8 sub-blocks of 32 ------------------------ */

TARGET static ALWAYS_INLINE void q4_K_tile(const uint8_t *grp, const sl_gemm_act *a, int32_t t0, int nt, float *y,
                                           size_t ldy, int valid) {
    const int64_t nb = a->cols / QK_K, n32 = a->cols / 32;
    const size_t qb = 128 * G, sb = 20 * G;
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    __m512 acc[MAX_NT];
    #pragma GCC unroll 8
    for (int t = 0; t < nt; t++) acc[t] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *qp = grp + sl_gemm_quant_offset(b, qb, sb), *sp = grp + sl_gemm_scale_offset(nb, b, qb, sb);
        if (nt == 1) prefetch_ahead(grp, (size_t)b * (qb + sb), qb + sb);
        __m512i isum[MAX_NT], msum[MAX_NT];
        #pragma GCC unroll 8
        for (int t = 0; t < nt; t++) isum[t] = msum[t] = _mm512_setzero_si512();
        for (int c = 0; c < 4; c++) {
            __m512i lo[8], hi[8];
            #pragma GCC unroll 8
            for (int g = 0; g < 8; g++) {
                __m512i v = _mm512_load_si512((const void *)(qp + (size_t)(8 * c + g) * 64));
                lo[g] = _mm512_and_si512(v, m4);
                hi[g] = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
            }
            const __m512i sc_lo = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(sp + 4 * G + 2 * c * G)));
            const __m512i sc_hi = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(sp + 4 * G + (2 * c + 1) * G)));
            const __m512i mins = _mm512_cvtepu8_epi16(_mm256_loadu_si256((const __m256i *)(sp + 12 * G + 2 * c * G)));
            #pragma GCC unroll 8
            for (int t = 0; t < nt; t++) {
                const int8_t *q8 = a->qs + (size_t)(t0 + t) * a->cols + b * QK_K + 64 * c;
                __m512i p_lo = _mm512_setzero_si512(), p_hi = _mm512_setzero_si512();
                #pragma GCC unroll 8
                for (int g = 0; g < 8; g++) {
                    p_lo = _mm512_dpbusd_epi32(p_lo, lo[g], bcast4(q8 + 4 * g));
                    p_hi = _mm512_dpbusd_epi32(p_hi, hi[g], bcast4(q8 + 32 + 4 * g));
                }
                isum[t] = _mm512_add_epi32(isum[t], _mm512_add_epi32(_mm512_mullo_epi32(p_lo, sc_lo),
                                                                     _mm512_mullo_epi32(p_hi, sc_hi)));
                /* the pair of sub-block sums (int16) broadcast: mins of 2c and 2c+1 */
                int32_t sums;
                memcpy(&sums, a->s32 + (size_t)(t0 + t) * n32 + 8 * b + 2 * c, 4);
                msum[t] = _mm512_dpwssd_epi32(msum[t], mins, _mm512_set1_epi32(sums));
            }
        }
        const __m512 dw = load_scales(sp), dmin = load_scales(sp + 2 * G);
        #pragma GCC unroll 8
        for (int t = 0; t < nt; t++) {
            const __m512 yd = _mm512_set1_ps(a->d[(size_t)(t0 + t) * nb + b]);
            acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[t]), _mm512_mul_ps(dw, yd), acc[t]);
            acc[t] = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(msum[t]), _mm512_mul_ps(dmin, yd), acc[t]);
        }
    }
    store_rows(y, ldy, nt, acc, valid);
}

TARGET static void gemm_q4_K(const uint8_t *grp, const sl_gemm_act *a, int32_t t0, int32_t n, float *y, size_t ldy,
                             int valid) {
    int32_t t = 0;
    for (; t + MAX_NT <= n; t += MAX_NT) q4_K_tile(grp, a, t0 + t, MAX_NT, y + (size_t)t * ldy, ldy, valid);
    switch (n - t) {
    case 3: q4_K_tile(grp, a, t0 + t, 3, y + (size_t)t * ldy, ldy, valid); break;
    case 2: q4_K_tile(grp, a, t0 + t, 2, y + (size_t)t * ldy, ldy, valid); break;
    case 1: q4_K_tile(grp, a, t0 + t, 1, y + (size_t)t * ldy, ldy, valid); break;
    default: break;
    }
}

/* ---- Q6_K: super-blocks of 256, 16 sub-blocks of 16 ----------------------- */

TARGET static ALWAYS_INLINE void q6_K_tile(const uint8_t *grp, const sl_gemm_act *a, int32_t t0, int nt, float *y,
                                           size_t ldy, int valid) {
    const int64_t nb = a->cols / QK_K, n16 = a->cols / 16;
    const size_t qb = 192 * G, sb = 18 * G;
    const __m512i m4 = _mm512_set1_epi8(0x0F), m_high = _mm512_set1_epi8(0x30);
    __m512 acc[MAX_NT];
    #pragma GCC unroll 8
    for (int t = 0; t < nt; t++) acc[t] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *ql = grp + sl_gemm_quant_offset(b, qb, sb), *qh = ql + 128 * G;
        const uint8_t *sp = grp + sl_gemm_scale_offset(nb, b, qb, sb);
        if (nt == 1) prefetch_ahead(grp, (size_t)b * (qb + sb), qb + sb);
        __m512i isum[MAX_NT];
        #pragma GCC unroll 8
        for (int t = 0; t < nt; t++) isum[t] = _mm512_setzero_si512();
        /* runs u = 4v..4v+3 hold the groups of sub-blocks v, v+4, v+8, v+12 */
        for (int v = 0; v < 4; v++) {
            __m512i w[4][4]; /* [sub-block v + 4s][run u - 4v] */
            #pragma GCC unroll 8
            for (int i = 0; i < 4; i++) {
                int u = 4 * v + i;
                __m512i l1 = _mm512_load_si512((const void *)(ql + (size_t)u * 64));
                __m512i l2 = _mm512_load_si512((const void *)(ql + (size_t)(u + 16) * 64));
                __m512i h = _mm512_load_si512((const void *)(qh + (size_t)u * 64));
                w[0][i] = _mm512_or_si512(_mm512_and_si512(l1, m4), _mm512_and_si512(_mm512_slli_epi16(h, 4), m_high));
                w[1][i] = _mm512_or_si512(_mm512_and_si512(l2, m4), _mm512_and_si512(_mm512_slli_epi16(h, 2), m_high));
                w[2][i] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(l1, 4), m4), _mm512_and_si512(h, m_high));
                w[3][i] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(l2, 4), m4),
                                          _mm512_and_si512(_mm512_srli_epi16(h, 2), m_high));
            }
            __m512i sc[4];
            #pragma GCC unroll 8
            for (int s = 0; s < 4; s++)
                sc[s] = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(sp + 2 * G + (size_t)(v + 4 * s) * G)));
            #pragma GCC unroll 8
            for (int t = 0; t < nt; t++) {
                const int8_t *q8 = a->qs + (size_t)(t0 + t) * a->cols + b * QK_K;
                const int32_t *c16 = a->c16 + (size_t)(t0 + t) * n16 + 16 * b;
                #pragma GCC unroll 8
                for (int s = 0; s < 4; s++) {
                    const int sub = v + 4 * s;
                    __m512i p = _mm512_set1_epi32(c16[sub]);
                    #pragma GCC unroll 8
                    for (int i = 0; i < 4; i++) p = _mm512_dpbusd_epi32(p, w[s][i], bcast4(q8 + 16 * sub + 4 * i));
                    isum[t] = _mm512_add_epi32(isum[t], _mm512_mullo_epi32(p, sc[s]));
                }
            }
        }
        const __m512 dw = load_scales(sp);
        #pragma GCC unroll 8
        for (int t = 0; t < nt; t++) {
            const __m512 yd = _mm512_set1_ps(a->d[(size_t)(t0 + t) * nb + b]);
            acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[t]), _mm512_mul_ps(dw, yd), acc[t]);
        }
    }
    store_rows(y, ldy, nt, acc, valid);
}

TARGET static void gemm_q6_K(const uint8_t *grp, const sl_gemm_act *a, int32_t t0, int32_t n, float *y, size_t ldy,
                             int valid) {
    int32_t t = 0;
    for (; t + MAX_NT <= n; t += MAX_NT) q6_K_tile(grp, a, t0 + t, MAX_NT, y + (size_t)t * ldy, ldy, valid);
    switch (n - t) {
    case 3: q6_K_tile(grp, a, t0 + t, 3, y + (size_t)t * ldy, ldy, valid); break;
    case 2: q6_K_tile(grp, a, t0 + t, 2, y + (size_t)t * ldy, ldy, valid); break;
    case 1: q6_K_tile(grp, a, t0 + t, 1, y + (size_t)t * ldy, ldy, valid); break;
    default: break;
    }
}

const sl_gemm_kernels sl_gemm_avx512 = {
    .name = "avx512",
    .group_rows = G,
    .layout = {
        [SL_TYPE_Q4_0] = SL_GEMM_Q4_0, [SL_TYPE_Q8_0] = SL_GEMM_Q8_0,
        [SL_TYPE_Q4_K] = SL_GEMM_Q4_K, [SL_TYPE_Q6_K] = SL_GEMM_Q6_K,
    },
    .fn = {
        [SL_TYPE_Q4_0] = gemm_q4_0, [SL_TYPE_Q8_0] = gemm_q8_0,
        [SL_TYPE_Q4_K] = gemm_q4_K, [SL_TYPE_Q6_K] = gemm_q6_K,
    },
};

#endif
