/* quant_ref.c - portable scalar reference kernels: dequantization, quantization
 * and dot products for every supported type.
 *
 * Quantizers follow the arithmetic of ggml's reference quantizers (the ones
 * llama-quantize uses without an importance matrix), so files we write look
 * like llama.cpp's. The 8-bit activation quantizers (Q8_0/Q8_1) follow ggml's
 * x86 runtime path instead (scale 127/amax, ties to even), which our SIMD
 * versions reproduce bit for bit. Dot products follow ggml's pairing with
 * activation formats, with exact integer inner sums and float scaling. */
#include <float.h>
#include <math.h>

#include "quant/quant_impl.h"

const int8_t sl_iq4nl_values[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                    1, 13, 25, 38, 53, 69, 89, 113};

#define GROUP_MAX_EPS 1e-15f

static int clamp_int(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

/* float -> int by truncation, clamped to [0, hi] before converting (NaN -> 0),
 * as ggml's (int8_t)(v) casts are for in-range values. */
static int trunc_clamp(float v, int hi) {
    if (!(v > 0.0f)) return 0;
    if (v >= (float)hi) return hi;
    return (int)v;
}

/* ======================= dequantization ======================= */

static void dequant_f32(const void *src, float *dst, int64_t n) { memcpy(dst, src, (size_t)n * 4); }

static void dequant_f16(const void *src, float *dst, int64_t n) {
    const uint8_t *p = src;
    for (int64_t i = 0; i < n; i++) dst[i] = sl_load_f16(p + 2 * i);
}

static void dequant_bf16(const void *src, float *dst, int64_t n) {
    const uint8_t *p = src;
    for (int64_t i = 0; i < n; i++) dst[i] = sl_bf16_to_f32(sl_load_u16(p + 2 * i));
}

static void dequant_q4_0(const void *src, float *dst, int64_t n) {
    const block_q4_0 *x = src;
    for (int64_t i = 0; i < n / 32; i++, dst += 32) {
        float d = sl_load_f16(x[i].d);
        for (int j = 0; j < 16; j++) {
            dst[j] = ((x[i].qs[j] & 0xF) - 8) * d;
            dst[j + 16] = ((x[i].qs[j] >> 4) - 8) * d;
        }
    }
}

static void dequant_q4_1(const void *src, float *dst, int64_t n) {
    const block_q4_1 *x = src;
    for (int64_t i = 0; i < n / 32; i++, dst += 32) {
        float d = sl_load_f16(x[i].d), m = sl_load_f16(x[i].m);
        for (int j = 0; j < 16; j++) {
            dst[j] = (x[i].qs[j] & 0xF) * d + m;
            dst[j + 16] = (x[i].qs[j] >> 4) * d + m;
        }
    }
}

static uint32_t load_qh(const uint8_t qh[4]) {
    uint32_t v;
    memcpy(&v, qh, 4);
    return v;
}

static void dequant_q5_0(const void *src, float *dst, int64_t n) {
    const block_q5_0 *x = src;
    for (int64_t i = 0; i < n / 32; i++, dst += 32) {
        float d = sl_load_f16(x[i].d);
        uint32_t qh = load_qh(x[i].qh);
        for (int j = 0; j < 16; j++) {
            int lo = (x[i].qs[j] & 0xF) | (int)(((qh >> j) & 1u) << 4);
            int hi = (x[i].qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1u) << 4);
            dst[j] = (lo - 16) * d;
            dst[j + 16] = (hi - 16) * d;
        }
    }
}

static void dequant_q5_1(const void *src, float *dst, int64_t n) {
    const block_q5_1 *x = src;
    for (int64_t i = 0; i < n / 32; i++, dst += 32) {
        float d = sl_load_f16(x[i].d), m = sl_load_f16(x[i].m);
        uint32_t qh = load_qh(x[i].qh);
        for (int j = 0; j < 16; j++) {
            int lo = (x[i].qs[j] & 0xF) | (int)(((qh >> j) & 1u) << 4);
            int hi = (x[i].qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1u) << 4);
            dst[j] = lo * d + m;
            dst[j + 16] = hi * d + m;
        }
    }
}

static void dequant_q8_0(const void *src, float *dst, int64_t n) {
    const block_q8_0 *x = src;
    for (int64_t i = 0; i < n / 32; i++, dst += 32) {
        float d = sl_load_f16(x[i].d);
        for (int j = 0; j < 32; j++) dst[j] = x[i].qs[j] * d;
    }
}

static void dequant_q8_1(const void *src, float *dst, int64_t n) {
    const block_q8_1 *x = src;
    for (int64_t i = 0; i < n / 32; i++, dst += 32) {
        float d = sl_load_f16(x[i].d);
        for (int j = 0; j < 32; j++) dst[j] = x[i].qs[j] * d;
    }
}

static void dequant_iq4_nl(const void *src, float *dst, int64_t n) {
    const block_iq4_nl *x = src;
    for (int64_t i = 0; i < n / 32; i++, dst += 32) {
        float d = sl_load_f16(x[i].d);
        for (int j = 0; j < 16; j++) {
            dst[j] = d * sl_iq4nl_values[x[i].qs[j] & 0xF];
            dst[j + 16] = d * sl_iq4nl_values[x[i].qs[j] >> 4];
        }
    }
}

/* K-quant levels of one super-block, in element order. Decoding a whole
 * block with simple loops keeps the scalar kernels fast (and vectorisable). */

/* Q2_K/Q3_K 2-bit fields: element 128c + 32j + l is bits 2j..2j+1 of qs[32c + l]. */
static void levels_2bit(const uint8_t *qs, int8_t *out) {
    for (int c = 0; c < 2; c++) {
        for (int j = 0; j < 4; j++) {
            for (int l = 0; l < 32; l++) out[128 * c + 32 * j + l] = (int8_t)((qs[32 * c + l] >> (2 * j)) & 3);
        }
    }
}

/* Q3_K: the 2-bit field, minus 4 unless the element's hmask bit is set (bit
 * e/32 of hmask[e%32]): -4..3. */
static void levels_q3_K(const block_q3_K *b, int8_t *out) {
    levels_2bit(b->qs, out);
    for (int j = 0; j < 8; j++) {
        for (int l = 0; l < 32; l++) out[32 * j + l] = (int8_t)(out[32 * j + l] - ((b->hmask[l] >> j) & 1 ? 0 : 4));
    }
}

/* Q4_K/Q5_K 4-bit fields: element 64c + l is the low nibble of qs[32c + l],
 * element 64c + 32 + l its high nibble. */
static void levels_4bit(const uint8_t *qs, int8_t *out) {
    for (int c = 0; c < 4; c++) {
        for (int l = 0; l < 32; l++) {
            out[64 * c + l] = (int8_t)(qs[32 * c + l] & 0xF);
            out[64 * c + 32 + l] = (int8_t)(qs[32 * c + l] >> 4);
        }
    }
}

/* Q5_K: the fifth bit of element e is bit e/32 of qh[e%32]: 0..31. */
static void levels_q5_K(const block_q5_K *b, int8_t *out) {
    levels_4bit(b->qs, out);
    for (int j = 0; j < 8; j++) {
        for (int l = 0; l < 32; l++) out[32 * j + l] = (int8_t)(out[32 * j + l] | (((b->qh[l] >> j) & 1) << 4));
    }
}

/* Q6_K: in half h, element 128h + 32k + l (k < 4) has low nibble k/2 of
 * ql[64h + 32(k%2) + l] and high bits 2k..2k+1 of qh[32h + l]; minus 32. */
static void levels_q6_K(const block_q6_K *b, int8_t *out) {
    for (int h = 0; h < 2; h++) {
        const uint8_t *ql = b->ql + 64 * h, *qh = b->qh + 32 * h;
        int8_t *o = out + 128 * h;
        for (int l = 0; l < 32; l++) {
            o[l] = (int8_t)(((ql[l] & 0xF) | ((qh[l] & 3) << 4)) - 32);
            o[l + 32] = (int8_t)(((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32);
            o[l + 64] = (int8_t)(((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
            o[l + 96] = (int8_t)(((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
        }
    }
}

static void dequant_q2_K(const void *src, float *dst, int64_t n) {
    const block_q2_K *x = src;
    int8_t L[QK_K];
    for (int64_t i = 0; i < n / QK_K; i++, dst += QK_K) {
        float d = sl_load_f16(x[i].d), dmin = sl_load_f16(x[i].dmin);
        levels_2bit(x[i].qs, L);
        for (int sb = 0; sb < 16; sb++) {
            float dl = d * (x[i].scales[sb] & 0xF), ml = dmin * (x[i].scales[sb] >> 4);
            for (int e = 16 * sb; e < 16 * sb + 16; e++) dst[e] = dl * L[e] - ml;
        }
    }
}

static void dequant_q3_K(const void *src, float *dst, int64_t n) {
    const block_q3_K *x = src;
    int8_t L[QK_K], sc[16];
    for (int64_t i = 0; i < n / QK_K; i++, dst += QK_K) {
        float d = sl_load_f16(x[i].d);
        sl_q3k_scales(x[i].scales, sc);
        levels_q3_K(&x[i], L);
        for (int sb = 0; sb < 16; sb++) {
            float dl = d * sc[sb];
            for (int e = 16 * sb; e < 16 * sb + 16; e++) dst[e] = dl * L[e];
        }
    }
}

static void dequant_k4(const uint8_t *d_half, const uint8_t *dmin_half, const uint8_t *scales, const int8_t *L, float *dst) {
    float d = sl_load_f16(d_half), dmin = sl_load_f16(dmin_half);
    for (int sb = 0; sb < 8; sb++) {
        uint8_t sc, m;
        sl_get_scale_min_k4(sb, scales, &sc, &m);
        float dl = d * sc, ml = dmin * m;
        for (int e = 32 * sb; e < 32 * sb + 32; e++) dst[e] = dl * L[e] - ml;
    }
}

static void dequant_q4_K(const void *src, float *dst, int64_t n) {
    const block_q4_K *x = src;
    int8_t L[QK_K];
    for (int64_t i = 0; i < n / QK_K; i++, dst += QK_K) {
        levels_4bit(x[i].qs, L);
        dequant_k4(x[i].d, x[i].dmin, x[i].scales, L, dst);
    }
}

static void dequant_q5_K(const void *src, float *dst, int64_t n) {
    const block_q5_K *x = src;
    int8_t L[QK_K];
    for (int64_t i = 0; i < n / QK_K; i++, dst += QK_K) {
        levels_q5_K(&x[i], L);
        dequant_k4(x[i].d, x[i].dmin, x[i].scales, L, dst);
    }
}

static void dequant_q6_K(const void *src, float *dst, int64_t n) {
    const block_q6_K *x = src;
    int8_t L[QK_K];
    for (int64_t i = 0; i < n / QK_K; i++, dst += QK_K) {
        float d = sl_load_f16(x[i].d);
        levels_q6_K(&x[i], L);
        for (int e = 0; e < QK_K; e++) dst[e] = d * x[i].scales[e / 16] * L[e];
    }
}

static void dequant_q8_K(const void *src, float *dst, int64_t n) {
    const block_q8_K *x = src;
    for (int64_t i = 0; i < n / QK_K; i++, dst += QK_K) {
        float d = sl_load_f32(x[i].d);
        for (int j = 0; j < QK_K; j++) dst[j] = d * x[i].qs[j];
    }
}

/* ======================= quantization: simple types ======================= */

static void quant_f32(const float *src, void *dst, int64_t n) { memcpy(dst, src, (size_t)n * 4); }

static void quant_f16(const float *src, void *dst, int64_t n) {
    uint8_t *p = dst;
    for (int64_t i = 0; i < n; i++) sl_store_u16(p + 2 * i, sl_f32_to_f16(src[i]));
}

static void quant_bf16(const float *src, void *dst, int64_t n) {
    uint8_t *p = dst;
    for (int64_t i = 0; i < n; i++) sl_store_u16(p + 2 * i, sl_f32_to_bf16(src[i]));
}

/* The element of largest magnitude (first one on ties), with its sign. */
static float signed_absmax(const float *x, int n, float *amax_out) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < n; j++) {
        float ax = fabsf(x[j]);
        if (ax > amax) {
            amax = ax;
            max = x[j];
        }
    }
    *amax_out = amax;
    return max;
}

static void quant_q4_0(const float *src, void *dst, int64_t n) {
    block_q4_0 *y = dst;
    for (int64_t i = 0; i < n / 32; i++, src += 32) {
        float amax;
        float max = signed_absmax(src, 32, &amax);
        float d = max / -8.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        sl_store_u16(y[i].d, sl_f32_to_f16(d));
        for (int j = 0; j < 16; j++) {
            int lo = trunc_clamp(src[j] * id + 8.5f, 15);
            int hi = trunc_clamp(src[j + 16] * id + 8.5f, 15);
            y[i].qs[j] = (uint8_t)(lo | (hi << 4));
        }
    }
}

static void min_max(const float *x, int n, float *min_out, float *max_out) {
    float min = FLT_MAX, max = -FLT_MAX;
    for (int j = 0; j < n; j++) {
        if (x[j] < min) min = x[j];
        if (x[j] > max) max = x[j];
    }
    *min_out = min;
    *max_out = max;
}

static void quant_q4_1(const float *src, void *dst, int64_t n) {
    block_q4_1 *y = dst;
    for (int64_t i = 0; i < n / 32; i++, src += 32) {
        float min, max;
        min_max(src, 32, &min, &max);
        float d = (max - min) / 15.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        sl_store_u16(y[i].d, sl_f32_to_f16(d));
        sl_store_u16(y[i].m, sl_f32_to_f16(min));
        for (int j = 0; j < 16; j++) {
            int lo = trunc_clamp((src[j] - min) * id + 0.5f, 15);
            int hi = trunc_clamp((src[j + 16] - min) * id + 0.5f, 15);
            y[i].qs[j] = (uint8_t)(lo | (hi << 4));
        }
    }
}

static void quant_q5_0(const float *src, void *dst, int64_t n) {
    block_q5_0 *y = dst;
    for (int64_t i = 0; i < n / 32; i++, src += 32) {
        float amax;
        float max = signed_absmax(src, 32, &amax);
        float d = max / -16.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        sl_store_u16(y[i].d, sl_f32_to_f16(d));
        uint32_t qh = 0;
        for (int j = 0; j < 16; j++) {
            int lo = trunc_clamp(src[j] * id + 16.5f, 31);
            int hi = trunc_clamp(src[j + 16] * id + 16.5f, 31);
            y[i].qs[j] = (uint8_t)((lo & 0xF) | ((hi & 0xF) << 4));
            qh |= (uint32_t)(lo >> 4) << j;
            qh |= (uint32_t)(hi >> 4) << (j + 16);
        }
        memcpy(y[i].qh, &qh, 4);
    }
}

static void quant_q5_1(const float *src, void *dst, int64_t n) {
    block_q5_1 *y = dst;
    for (int64_t i = 0; i < n / 32; i++, src += 32) {
        float min, max;
        min_max(src, 32, &min, &max);
        float d = (max - min) / 31.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        sl_store_u16(y[i].d, sl_f32_to_f16(d));
        sl_store_u16(y[i].m, sl_f32_to_f16(min));
        uint32_t qh = 0;
        for (int j = 0; j < 16; j++) {
            int lo = trunc_clamp((src[j] - min) * id + 0.5f, 31);
            int hi = trunc_clamp((src[j + 16] - min) * id + 0.5f, 31);
            y[i].qs[j] = (uint8_t)((lo & 0xF) | ((hi & 0xF) << 4));
            qh |= (uint32_t)(lo >> 4) << j;
            qh |= (uint32_t)(hi >> 4) << (j + 16);
        }
        memcpy(y[i].qh, &qh, 4);
    }
}

/* Q8_0/Q8_1 blocks of 32: d = amax/127, q = round_even(x * 127/amax), as
 * ggml's x86 activation quantizer. Returns the sum of the quants. */
static int quant_8bit_block(const float *x, float *d_out, int8_t *qs) {
    float amax = 0.0f;
    for (int j = 0; j < 32; j++) {
        float ax = fabsf(x[j]);
        if (ax > amax) amax = ax;
    }
    float id = sl_q8_multiplier(amax);
    int sum = 0;
    for (int j = 0; j < 32; j++) {
        int q = clamp_int(sl_round_int(x[j] * id), -128, 127);
        qs[j] = (int8_t)q;
        sum += q;
    }
    *d_out = amax / 127.0f;
    return sum;
}

static void quant_q8_0(const float *src, void *dst, int64_t n) {
    block_q8_0 *y = dst;
    for (int64_t i = 0; i < n / 32; i++, src += 32) {
        float d;
        quant_8bit_block(src, &d, y[i].qs);
        sl_store_u16(y[i].d, sl_f32_to_f16(d));
    }
}

static void quant_q8_1(const float *src, void *dst, int64_t n) {
    block_q8_1 *y = dst;
    for (int64_t i = 0; i < n / 32; i++, src += 32) {
        float d;
        int sum = quant_8bit_block(src, &d, y[i].qs);
        sl_store_u16(y[i].d, sl_f32_to_f16(d));
        sl_store_u16(y[i].s, sl_f32_to_f16(d * (float)sum));
    }
}

static void quant_q8_K(const float *src, void *dst, int64_t n) {
    block_q8_K *y = dst;
    for (int64_t i = 0; i < n / QK_K; i++, src += QK_K) {
        float amax;
        float max = signed_absmax(src, QK_K, &amax);
        if (amax == 0.0f) {
            memset(&y[i], 0, sizeof y[i]);
            continue;
        }
        float iscale = sl_q8k_multiplier(max);
        for (int j = 0; j < QK_K; j++) {
            int q = sl_round_int(iscale * src[j]);
            y[i].qs[j] = (int8_t)clamp_int(q, -128, 127);
        }
        for (int j = 0; j < QK_K / 16; j++) {
            int sum = 0;
            for (int l = 0; l < 16; l++) sum += y[i].qs[16 * j + l];
            sl_store_i16(y[i].bsums + 2 * j, (int16_t)sum);
        }
        sl_store_f32(y[i].d, 1.0f / iscale);
    }
}

/* ======================= quantization: K-quants ======================= */

/* The searches below try many candidate scales per sub-block; only the
 * scales (and mins) they return are kept: the callers recompute the levels
 * from the final quantized scales, as ggml does. Their sums run in LANES
 * independent partial sums, so compilers can vectorise them and the float
 * additions do not form one long dependency chain. n is a multiple of LANES. */
enum { LANES = 8 };

/* Clamps, then rounds to the nearest integer (ties to even), as floats.
 * clamp_levels runs as a loop of its own: keeping the selects apart from the
 * rounding lets compilers turn them into vector min/max. */
static float clamp_f(float v, float lo, float hi) {
    v = v > lo ? v : lo;
    return v < hi ? v : hi;
}
static void clamp_levels(int n, float scale, const float *x, float lo, float hi, float *out) {
    for (int i = 0; i < n; i++) out[i] = clamp_f(scale * x[i], lo, hi);
}
static float round_f(float v) { return (v + 12582912.0f) - 12582912.0f; }

/* Pairwise, so the reduction is 3 additions deep. */
static float sum_lanes(const float *lanes) {
    return ((lanes[0] + lanes[4]) + (lanes[2] + lanes[6])) + ((lanes[1] + lanes[5]) + (lanes[3] + lanes[7]));
}

/* For levels l_i = round(clamp(iscale * xm_i, 0, nmax)): sum w*l, w*l^2, wx*l. n <= 32. */
static void level_sums(int n, float iscale, float nmax, const float *xm, const float *w,
                       const float *wx, float *sum_l, float *sum_l2, float *sum_xl) {
    float v[32];
    clamp_levels(n, iscale, xm, 0.0f, nmax, v);
    float sl[LANES] = {0}, sl2[LANES] = {0}, sxl[LANES] = {0};
    for (int i = 0; i < n; i += LANES) {
        for (int k = 0; k < LANES; k++) {
            float l = round_f(v[i + k]);
            float wl = w[i + k] * l;
            sl[k] += wl;
            sl2[k] += wl * l;
            sxl[k] += wx[i + k] * l;
        }
    }
    *sum_l = sum_lanes(sl);
    *sum_l2 = sum_lanes(sl2);
    *sum_xl = sum_lanes(sxl);
}

/* sum_i w_i (s*l_i + m - x_i)^2, expanded into the weighted sums of l, l^2,
 * x*l, 1, x and x^2. */
static double weighted_sq_error(double s, double m, float sum_l, float sum_l2, float sum_xl,
                                float sum_w, float sum_x, double sum_x2) {
    return s * s * sum_l2 + 2 * s * m * sum_l - 2 * s * sum_xl + m * m * sum_w - 2 * m * sum_x + sum_x2;
}

/* Best scale s and offset m (m <= 0) for x ~ s*l + m with integer l in
 * [0, nmax], weighted by w (ggml's make_qkx2_quants search): start from the
 * min/max fit, then try nstep+1 scales around it, each followed by a weighted
 * least-squares refit of s and m. Returns s; *neg_min receives -m. The
 * squared error is evaluated in closed form from the sums. n <= 32. */
static float fit_scale_min(int n, int nmax, const float *x, const float *w, float *neg_min,
                           float rmin, float rdelta, int nstep) {
    float min = x[0], max = x[0];
    float sum_w = 0, sum_x = 0;
    double sum_x2 = 0;
    float wx[32], xm[32];
    for (int i = 0; i < n; i++) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        wx[i] = w[i] * x[i];
        sum_w += w[i];
        sum_x += wx[i];
        sum_x2 += (double)wx[i] * x[i];
    }
    if (min > 0) min = 0;
    if (!(max > min)) { /* constant block (or NaN) */
        *neg_min = -min;
        return 0.0f;
    }
    for (int i = 0; i < n; i++) xm[i] = x[i] - min;
    float fnmax = (float)nmax;
    float iscale = nmax / (max - min);
    float scale = 1 / iscale;
    float sum_l, sum_l2, sum_xl;
    level_sums(n, iscale, fnmax, xm, w, wx, &sum_l, &sum_l2, &sum_xl);
    double best_error = weighted_sq_error(scale, min, sum_l, sum_l2, sum_xl, sum_w, sum_x, sum_x2);
    for (int is = 0; is <= nstep; is++) {
        iscale = (rmin + rdelta * is + nmax) / (max - min);
        level_sums(n, iscale, fnmax, xm, w, wx, &sum_l, &sum_l2, &sum_xl);
        float D = sum_w * sum_l2 - sum_l * sum_l;
        if (D > 0) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
            float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
            if (this_min > 0) {
                this_min = 0;
                this_scale = sum_xl / sum_l2;
            }
            double err = weighted_sq_error(this_scale, this_min, sum_l, sum_l2, sum_xl, sum_w, sum_x, sum_x2);
            if (err < best_error) {
                best_error = err;
                scale = this_scale;
                if (this_min != min) { /* later candidates are taken relative to the new min */
                    min = this_min;
                    for (int i = 0; i < n; i++) xm[i] = x[i] - min;
                }
            }
        }
    }
    *neg_min = -min;
    return scale;
}

/* sum w |s*l + m - x| for levels l = round(clamp(iscale * xm, 0, nmax)). n <= 16. */
static float mad_error(int n, float iscale, float nmax, const float *xm, const float *x,
                       const float *w, float s, float m) {
    float v[16], lanes[LANES] = {0};
    clamp_levels(n, iscale, xm, 0.0f, nmax, v);
    for (int i = 0; i < n; i += LANES) {
        for (int k = 0; k < LANES; k++) lanes[k] += w[i + k] * fabsf(s * round_f(v[i + k]) + m - x[i + k]);
    }
    return sum_lanes(lanes);
}

/* The same search minimising the weighted absolute error (Q2_K), which has
 * no closed form: evaluated element by element. n <= 16. */
static float fit_scale_min_mad(int n, int nmax, const float *x, const float *w, float *neg_min,
                               float rmin, float rdelta, int nstep) {
    float min = x[0], max = x[0];
    float sum_w = 0, sum_x = 0;
    float wx[16], xm[16];
    for (int i = 0; i < n; i++) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        wx[i] = w[i] * x[i];
        sum_w += w[i];
        sum_x += wx[i];
    }
    if (min > 0) min = 0;
    if (!(max > min)) {
        *neg_min = -min;
        return 0.0f;
    }
    for (int i = 0; i < n; i++) xm[i] = x[i] - min;
    float fnmax = (float)nmax;
    float iscale = nmax / (max - min);
    float scale = 1 / iscale;
    float best_error = mad_error(n, iscale, fnmax, xm, x, w, scale, min);
    for (int is = 0; is <= nstep; is++) {
        iscale = (rmin + rdelta * is + nmax) / (max - min);
        float sum_l, sum_l2, sum_xl;
        level_sums(n, iscale, fnmax, xm, w, wx, &sum_l, &sum_l2, &sum_xl);
        float D = sum_w * sum_l2 - sum_l * sum_l;
        if (D > 0) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
            float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
            if (this_min > 0) {
                this_min = 0;
                this_scale = sum_xl / sum_l2;
            }
            float err = mad_error(n, iscale, fnmax, xm, x, w, this_scale, this_min);
            if (err < best_error) {
                best_error = err;
                scale = this_scale;
                if (this_min != min) {
                    min = this_min;
                    for (int i = 0; i < n; i++) xm[i] = x[i] - min;
                }
            }
        }
    }
    *neg_min = -min;
    return scale;
}

/* For levels l_i = round(clamp(iscale*x_i, -nmax, nmax-1)): sum wx*l and w*l^2. n <= 16. */
static void sym_level_sums(int n, float iscale, float nmax, const float *x, const float *w,
                           const float *wx, float *sum_lx, float *sum_l2) {
    float v[16];
    clamp_levels(n, iscale, x, -nmax, nmax - 1, v);
    float slx[LANES] = {0}, sl2[LANES] = {0};
    for (int i = 0; i < n; i += LANES) {
        for (int k = 0; k < LANES; k++) {
            float l = round_f(v[i + k]);
            slx[k] += wx[i + k] * l;
            sl2[k] += w[i + k] * l * l;
        }
    }
    *sum_lx = sum_lanes(slx);
    *sum_l2 = sum_lanes(sl2);
}

/* Symmetric scale for x ~ s*l, l in [-nmax, nmax-1], weighted by x^2
 * (ggml's make_qx_quants, rmse_type 1): the max fit and 18 candidate scales
 * around it, each refit by least squares. n <= 16. */
static float fit_scale_sym(int n, int nmax, const float *x) {
    float amax;
    float max = signed_absmax(x, n, &amax);
    if (!(amax >= GROUP_MAX_EPS)) return 0.0f;
    float w[16], wx[16];
    for (int i = 0; i < n; i++) {
        w[i] = x[i] * x[i];
        wx[i] = w[i] * x[i];
    }
    float fnmax = (float)nmax;
    float slx, sl2;
    sym_level_sums(n, -fnmax / max, fnmax, x, w, wx, &slx, &sl2);
    float scale = sl2 != 0 ? slx / sl2 : 0.0f;
    float best = scale * slx;
    for (int is = -9; is <= 9; is++) {
        if (is == 0) continue;
        sym_level_sums(n, -(fnmax + 0.1f * is) / max, fnmax, x, w, wx, &slx, &sl2);
        if (sl2 > 0 && slx * slx > best * sl2) {
            scale = slx / sl2;
            best = scale * slx;
        }
    }
    return scale;
}

/* Q3_K's sub-block scale (ggml's make_q3_quants with rmse): start from the
 * max fit, then up to 5 rounds of moving single levels while the weighted
 * fit improves. L receives l + nmax, l in [-nmax, nmax-1]. */
static float fit_scale_q3(int n, int nmax, const float *x, int8_t *L) {
    float amax;
    float max = signed_absmax(x, n, &amax);
    if (!(amax >= GROUP_MAX_EPS)) {
        memset(L, 0, (size_t)n);
        return 0.0f;
    }
    float iscale = -nmax / max;
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; i++) {
        int l = clamp_int(sl_round_int(iscale * x[i]), -nmax, nmax - 1);
        L[i] = (int8_t)l;
        float w = x[i] * x[i];
        sumlx += w * x[i] * l;
        suml2 += w * l * l;
    }
    for (int round = 0; round < 5; round++) {
        int changed = 0;
        for (int i = 0; i < n; i++) {
            float w = x[i] * x[i];
            float slx = sumlx - w * x[i] * L[i];
            if (slx > 0) {
                float sl2 = suml2 - w * L[i] * L[i];
                int new_l = clamp_int(sl_round_int(x[i] * sl2 / slx), -nmax, nmax - 1);
                if (new_l != L[i]) {
                    slx += w * x[i] * new_l;
                    sl2 += w * new_l * new_l;
                    if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
                        L[i] = (int8_t)new_l;
                        sumlx = slx;
                        suml2 = sl2;
                        changed++;
                    }
                }
            }
        }
        if (!changed) break;
    }
    for (int i = 0; i < n; i++) L[i] = (int8_t)(L[i] + nmax);
    return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

/* Packs 2-bit levels as Q2_K/Q3_K store them (see levels_2bit). */
static void pack_2bit(const uint8_t *L, uint8_t *qs) {
    for (int j = 0; j < QK_K; j += 128) {
        for (int l = 0; l < 32; l++) {
            qs[j / 4 + l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) |
                                      (L[j + l + 96] << 6));
        }
    }
}

static void quant_q2_K(const float *src, void *dst, int64_t n) {
    block_q2_K *y = dst;
    uint8_t L[QK_K];
    float weights[16], mins[16], scales[16];
    for (int64_t i = 0; i < n / QK_K; i++, src += QK_K) {
        float max_scale = 0, max_min = 0;
        for (int j = 0; j < 16; j++) {
            for (int l = 0; l < 16; l++) weights[l] = fabsf(src[16 * j + l]);
            scales[j] = fit_scale_min_mad(16, 3, src + 16 * j, weights, &mins[j], -0.5f, 0.1f, 15);
            if (scales[j] > max_scale) max_scale = scales[j];
            if (mins[j] > max_min) max_min = mins[j];
        }
        memset(y[i].scales, 0, 16);
        if (max_scale > 0) {
            float iscale = 15.0f / max_scale;
            for (int j = 0; j < 16; j++) y[i].scales[j] = (uint8_t)clamp_int(sl_round_int(iscale * scales[j]), 0, 15);
            sl_store_u16(y[i].d, sl_f32_to_f16(max_scale / 15.0f));
        } else {
            sl_store_u16(y[i].d, 0);
        }
        if (max_min > 0) {
            float iscale = 15.0f / max_min;
            for (int j = 0; j < 16; j++) {
                y[i].scales[j] |= (uint8_t)(clamp_int(sl_round_int(iscale * mins[j]), 0, 15) << 4);
            }
            sl_store_u16(y[i].dmin, sl_f32_to_f16(max_min / 15.0f));
        } else {
            sl_store_u16(y[i].dmin, 0);
        }
        float d_all = sl_load_f16(y[i].d), dmin_all = sl_load_f16(y[i].dmin);
        for (int j = 0; j < 16; j++) {
            float d = d_all * (y[i].scales[j] & 0xF);
            if (d == 0.0f) { /* the sub-block decodes to -dm whatever its levels */
                memset(L + 16 * j, 0, 16);
                continue;
            }
            float dm = dmin_all * (y[i].scales[j] >> 4);
            for (int l = 0; l < 16; l++) {
                L[16 * j + l] = (uint8_t)clamp_int(sl_round_int((src[16 * j + l] + dm) / d), 0, 3);
            }
        }
        pack_2bit(L, y[i].qs);
    }
}

static void quant_q3_K(const float *src, void *dst, int64_t n) {
    block_q3_K *y = dst;
    int8_t L[QK_K];
    float scales[16];
    for (int64_t i = 0; i < n / QK_K; i++, src += QK_K) {
        float max_scale = 0, amax = 0;
        for (int j = 0; j < 16; j++) {
            scales[j] = fit_scale_q3(16, 4, src + 16 * j, L + 16 * j);
            if (fabsf(scales[j]) > amax) {
                amax = fabsf(scales[j]);
                max_scale = scales[j];
            }
        }
        memset(y[i].scales, 0, 12);
        if (max_scale != 0.0f) {
            float iscale = -32.0f / max_scale;
            for (int j = 0; j < 16; j++) {
                int l = clamp_int(sl_round_int(iscale * scales[j]), -32, 31) + 32;
                if (j < 8) y[i].scales[j] = (uint8_t)(l & 0xF);
                else y[i].scales[j - 8] |= (uint8_t)((l & 0xF) << 4);
                y[i].scales[j % 4 + 8] |= (uint8_t)((l >> 4) << (2 * (j / 4)));
            }
            sl_store_u16(y[i].d, sl_f32_to_f16(1 / iscale));
        } else {
            sl_store_u16(y[i].d, 0);
        }
        int8_t sc[16];
        sl_q3k_scales(y[i].scales, sc);
        float d_all = sl_load_f16(y[i].d);
        for (int j = 0; j < 16; j++) {
            float d = d_all * sc[j];
            if (d == 0.0f) continue;
            for (int l = 0; l < 16; l++) {
                L[16 * j + l] = (int8_t)(clamp_int(sl_round_int(src[16 * j + l] / d), -4, 3) + 4);
            }
        }
        memset(y[i].hmask, 0, 32);
        uint8_t low[QK_K];
        for (int e = 0; e < QK_K; e++) {
            int l = L[e];
            if (l > 3) {
                y[i].hmask[e % 32] |= (uint8_t)(1u << (e / 32));
                l -= 4;
            }
            low[e] = (uint8_t)l;
        }
        pack_2bit(low, y[i].qs);
    }
}

/* Packs the 6-bit scales and mins of Q4_K/Q5_K (inverse of sl_get_scale_min_k4). */
static void pack_scale_min_k4(const uint8_t ls[8], const uint8_t lm[8], uint8_t *q) {
    for (int j = 0; j < 8; j++) {
        if (j < 4) {
            q[j] = ls[j];
            q[j + 4] = lm[j];
        } else {
            q[j + 4] = (uint8_t)((ls[j] & 0xF) | ((lm[j] & 0xF) << 4));
            q[j - 4] |= (uint8_t)((ls[j] >> 4) << 6);
            q[j] |= (uint8_t)((lm[j] >> 4) << 6);
        }
    }
}

/* Shared by Q4_K (nmax 15) and Q5_K (nmax 31): per sub-block scale/min search,
 * 6-bit quantization of scales and mins, then the final levels. */
static void quant_k4_levels(const float *x, int nmax, float rmin, int nstep, uint8_t *L,
                            uint8_t packed_scales[12], uint16_t *d_out, uint16_t *dmin_out) {
    float mins[8], scales[8], weights[32];
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < 8; j++) {
        const float *xb = x + 32 * j;
        float sum_x2 = 0;
        for (int l = 0; l < 32; l++) sum_x2 += xb[l] * xb[l];
        float av_x = sqrtf(sum_x2 / 32);
        for (int l = 0; l < 32; l++) weights[l] = av_x + fabsf(xb[l]);
        scales[j] = fit_scale_min(32, nmax, xb, weights, &mins[j], rmin, 0.1f, nstep);
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }
    float inv_scale = max_scale > 0 ? 63.0f / max_scale : 0.0f;
    float inv_min = max_min > 0 ? 63.0f / max_min : 0.0f;
    uint8_t ls[8], lm[8];
    for (int j = 0; j < 8; j++) {
        ls[j] = (uint8_t)clamp_int(sl_round_int(inv_scale * scales[j]), 0, 63);
        lm[j] = (uint8_t)clamp_int(sl_round_int(inv_min * mins[j]), 0, 63);
    }
    memset(packed_scales, 0, 12);
    pack_scale_min_k4(ls, lm, packed_scales);
    *d_out = sl_f32_to_f16(max_scale / 63.0f);
    *dmin_out = sl_f32_to_f16(max_min / 63.0f);
    float d_all = sl_f16_to_f32(*d_out), dmin_all = sl_f16_to_f32(*dmin_out);
    for (int j = 0; j < 8; j++) {
        float d = d_all * ls[j];
        if (d == 0.0f) { /* the sub-block decodes to -dm whatever its levels */
            memset(L + 32 * j, 0, 32);
            continue;
        }
        float dm = dmin_all * lm[j];
        for (int l = 0; l < 32; l++) {
            L[32 * j + l] = (uint8_t)clamp_int(sl_round_int((x[32 * j + l] + dm) / d), 0, nmax);
        }
    }
}

static void quant_q4_K(const float *src, void *dst, int64_t n) {
    block_q4_K *y = dst;
    uint8_t L[QK_K];
    for (int64_t i = 0; i < n / QK_K; i++, src += QK_K) {
        uint16_t d, dmin;
        quant_k4_levels(src, 15, -1.0f, 20, L, y[i].scales, &d, &dmin);
        sl_store_u16(y[i].d, d);
        sl_store_u16(y[i].dmin, dmin);
        for (int j = 0; j < QK_K; j += 64) {
            for (int l = 0; l < 32; l++) y[i].qs[j / 2 + l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 4));
        }
    }
}

static void quant_q5_K(const float *src, void *dst, int64_t n) {
    block_q5_K *y = dst;
    uint8_t L[QK_K];
    for (int64_t i = 0; i < n / QK_K; i++, src += QK_K) {
        uint16_t d, dmin;
        quant_k4_levels(src, 31, -0.5f, 15, L, y[i].scales, &d, &dmin);
        sl_store_u16(y[i].d, d);
        sl_store_u16(y[i].dmin, dmin);
        memset(y[i].qh, 0, 32);
        for (int e = 0; e < QK_K; e++) {
            if (L[e] > 15) y[i].qh[e % 32] |= (uint8_t)(1u << (e / 32));
        }
        for (int j = 0; j < QK_K; j += 64) {
            for (int l = 0; l < 32; l++) {
                y[i].qs[j / 2 + l] = (uint8_t)((L[j + l] & 0xF) | ((L[j + l + 32] & 0xF) << 4));
            }
        }
    }
}

static void quant_q6_K(const float *src, void *dst, int64_t n) {
    block_q6_K *y = dst;
    int8_t L[QK_K];
    float scales[16];
    for (int64_t i = 0; i < n / QK_K; i++, src += QK_K) {
        float max_scale = 0, max_abs_scale = 0;
        for (int ib = 0; ib < 16; ib++) {
            scales[ib] = fit_scale_sym(16, 32, src + 16 * ib);
            if (fabsf(scales[ib]) > max_abs_scale) {
                max_abs_scale = fabsf(scales[ib]);
                max_scale = scales[ib];
            }
        }
        if (!(max_abs_scale >= GROUP_MAX_EPS)) {
            memset(&y[i], 0, sizeof y[i]);
            continue;
        }
        float iscale = -128.0f / max_scale;
        sl_store_u16(y[i].d, sl_f32_to_f16(1 / iscale));
        for (int ib = 0; ib < 16; ib++) {
            y[i].scales[ib] = (int8_t)clamp_int(sl_round_int(iscale * scales[ib]), -128, 127);
        }
        float d_all = sl_load_f16(y[i].d);
        for (int j = 0; j < 16; j++) {
            float d = d_all * y[i].scales[j];
            if (d == 0.0f) { /* level 32 is 0 */
                memset(L + 16 * j, 32, 16);
                continue;
            }
            for (int l = 0; l < 16; l++) {
                L[16 * j + l] = (int8_t)(clamp_int(sl_round_int(src[16 * j + l] / d), -32, 31) + 32);
            }
        }
        for (int h = 0; h < 2; h++) {
            const int8_t *Lh = L + 128 * h;
            uint8_t *ql = y[i].ql + 64 * h, *qh = y[i].qh + 32 * h;
            for (int l = 0; l < 32; l++) {
                ql[l] = (uint8_t)((Lh[l] & 0xF) | ((Lh[l + 64] & 0xF) << 4));
                ql[l + 32] = (uint8_t)((Lh[l + 32] & 0xF) | ((Lh[l + 96] & 0xF) << 4));
                qh[l] = (uint8_t)((Lh[l] >> 4) | ((Lh[l + 32] >> 4) << 2) | ((Lh[l + 64] >> 4) << 4) |
                                  ((Lh[l + 96] >> 4) << 6));
            }
        }
    }
}

/* Index of the IQ4_NL level nearest to x, the upper one on ties (ggml's
 * best_index_int8): the number of midpoints m_k <= x between adjacent levels.
 * The doubled midpoints are integers, so t = floor(2x) decides; t is bucketed
 * by 16, and each bucket holds at most one doubled midpoint. */
static const int8_t iq4nl_bucket_base[31] = {0, 0, 1, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7,
                                             8, 9, 9, 10, 11, 11, 12, 12, 13, 13, 14, 14, 14, 15, 15};
static const int16_t iq4nl_bucket_mid[31] = {999, -231, 999, 999, -187, 999, -148, 999, -114, 999, -84,
                                             999, -57, 999, -32, -9, 14, 999, 38, 63, 999, 91,
                                             999, 122, 999, 158, 999, 999, 202, 999, 999};

static int iq4nl_nearest(float x) {
    float t2 = 2.0f * x;
    if (t2 != t2) return 15; /* NaN: as ggml's search */
    if (t2 < -256.0f) return 0;
    if (t2 >= 224.0f) return 15;
    int t = (int)t2;
    if ((float)t > t2) t--; /* floor */
    int bucket = (t + 256) >> 4;
    return iq4nl_bucket_base[bucket] + (t >= iq4nl_bucket_mid[bucket]);
}

/* IQ4_NL: the scale is searched over 15 candidates (ggml's quantize_iq4_nl
 * without importance weights: weights x^2), then levels are the nearest ones. */
static void quant_iq4_nl(const float *src, void *dst, int64_t n) {
    block_iq4_nl *y = dst;
    const int8_t *values = sl_iq4nl_values;
    for (int64_t i = 0; i < n / 32; i++, src += 32) {
        float amax;
        float max = signed_absmax(src, 32, &amax);
        float d = 0.0f;
        if (amax >= GROUP_MAX_EPS) {
            d = -max / values[0];
            float id = 1 / d;
            float sumqx = 0, sumq2 = 0;
            for (int j = 0; j < 32; j++) {
                float q = values[iq4nl_nearest(id * src[j])], w = src[j] * src[j];
                sumqx += w * q * src[j];
                sumq2 += w * q * q;
            }
            d = sumq2 > 0 ? sumqx / sumq2 : 0.0f;
            float best = d * sumqx;
            for (int itry = -7; itry <= 7; itry++) {
                id = (itry + values[0]) / max;
                sumqx = sumq2 = 0;
                for (int j = 0; j < 32; j++) {
                    float q = values[iq4nl_nearest(id * src[j])], w = src[j] * src[j];
                    sumqx += w * q * src[j];
                    sumq2 += w * q * q;
                }
                if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
                    d = sumqx / sumq2;
                    best = d * sumqx;
                }
            }
        }
        sl_store_u16(y[i].d, sl_f32_to_f16(d));
        float id = d != 0.0f ? 1 / d : 0.0f;
        for (int j = 0; j < 16; j++) {
            int lo = iq4nl_nearest(id * src[j]), hi = iq4nl_nearest(id * src[j + 16]);
            y[i].qs[j] = (uint8_t)(lo | (hi << 4));
        }
    }
}

/* ======================= dot products ======================= */

static float dot_f32(int64_t n, const void *w, const void *act) {
    const uint8_t *x = w, *y = act;
    double sum = 0;
    for (int64_t i = 0; i < n; i++) sum += (double)(sl_load_f32(x + 4 * i) * sl_load_f32(y + 4 * i));
    return (float)sum;
}

static float dot_f16(int64_t n, const void *w, const void *act) {
    const uint8_t *x = w, *y = act;
    double sum = 0;
    for (int64_t i = 0; i < n; i++) sum += (double)(sl_load_f16(x + 2 * i) * sl_load_f16(y + 2 * i));
    return (float)sum;
}

static float dot_bf16(int64_t n, const void *w, const void *act) {
    const uint8_t *x = w, *y = act;
    double sum = 0;
    for (int64_t i = 0; i < n; i++) {
        sum += (double)(sl_bf16_to_f32(sl_load_u16(x + 2 * i)) * sl_bf16_to_f32(sl_load_u16(y + 2 * i)));
    }
    return (float)sum;
}

static float dot_q4_0(int64_t n, const void *w, const void *act) {
    const block_q4_0 *x = w;
    const block_q8_0 *y = act;
    float sum = 0;
    for (int64_t i = 0; i < n / 32; i++) {
        int sumi = 0;
        for (int j = 0; j < 16; j++) {
            sumi += ((x[i].qs[j] & 0xF) - 8) * y[i].qs[j];
            sumi += ((x[i].qs[j] >> 4) - 8) * y[i].qs[j + 16];
        }
        sum += sumi * sl_load_f16(x[i].d) * sl_load_f16(y[i].d);
    }
    return sum;
}

static float dot_q4_1(int64_t n, const void *w, const void *act) {
    const block_q4_1 *x = w;
    const block_q8_1 *y = act;
    float sum = 0;
    for (int64_t i = 0; i < n / 32; i++) {
        int sumi = 0;
        for (int j = 0; j < 16; j++) {
            sumi += (x[i].qs[j] & 0xF) * y[i].qs[j];
            sumi += (x[i].qs[j] >> 4) * y[i].qs[j + 16];
        }
        sum += (sl_load_f16(x[i].d) * sl_load_f16(y[i].d)) * sumi + sl_load_f16(x[i].m) * sl_load_f16(y[i].s);
    }
    return sum;
}

static float dot_q5_0(int64_t n, const void *w, const void *act) {
    const block_q5_0 *x = w;
    const block_q8_0 *y = act;
    float sum = 0;
    for (int64_t i = 0; i < n / 32; i++) {
        uint32_t qh = load_qh(x[i].qh);
        int sumi = 0;
        for (int j = 0; j < 16; j++) {
            int lo = ((x[i].qs[j] & 0xF) | (int)(((qh >> j) & 1u) << 4)) - 16;
            int hi = ((x[i].qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1u) << 4)) - 16;
            sumi += lo * y[i].qs[j] + hi * y[i].qs[j + 16];
        }
        sum += (sl_load_f16(x[i].d) * sl_load_f16(y[i].d)) * sumi;
    }
    return sum;
}

static float dot_q5_1(int64_t n, const void *w, const void *act) {
    const block_q5_1 *x = w;
    const block_q8_1 *y = act;
    float sum = 0;
    for (int64_t i = 0; i < n / 32; i++) {
        uint32_t qh = load_qh(x[i].qh);
        int sumi = 0;
        for (int j = 0; j < 16; j++) {
            int lo = (x[i].qs[j] & 0xF) | (int)(((qh >> j) & 1u) << 4);
            int hi = (x[i].qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1u) << 4);
            sumi += lo * y[i].qs[j] + hi * y[i].qs[j + 16];
        }
        sum += (sl_load_f16(x[i].d) * sl_load_f16(y[i].d)) * sumi + sl_load_f16(x[i].m) * sl_load_f16(y[i].s);
    }
    return sum;
}

static float dot_q8_0(int64_t n, const void *w, const void *act) {
    const block_q8_0 *x = w;
    const block_q8_0 *y = act;
    float sum = 0;
    for (int64_t i = 0; i < n / 32; i++) {
        int sumi = 0;
        for (int j = 0; j < 32; j++) sumi += x[i].qs[j] * y[i].qs[j];
        sum += sumi * (sl_load_f16(x[i].d) * sl_load_f16(y[i].d));
    }
    return sum;
}

static float dot_q8_1(int64_t n, const void *w, const void *act) {
    const block_q8_1 *x = w;
    const block_q8_1 *y = act;
    float sum = 0;
    for (int64_t i = 0; i < n / 32; i++) {
        int sumi = 0;
        for (int j = 0; j < 32; j++) sumi += x[i].qs[j] * y[i].qs[j];
        sum += sumi * (sl_load_f16(x[i].d) * sl_load_f16(y[i].d));
    }
    return sum;
}

static float dot_iq4_nl(int64_t n, const void *w, const void *act) {
    const block_iq4_nl *x = w;
    const block_q8_0 *y = act;
    float sum = 0;
    for (int64_t i = 0; i < n / 32; i++) {
        int sumi = 0;
        for (int j = 0; j < 16; j++) {
            sumi += y[i].qs[j] * sl_iq4nl_values[x[i].qs[j] & 0xF];
            sumi += y[i].qs[j + 16] * sl_iq4nl_values[x[i].qs[j] >> 4];
        }
        sum += (sl_load_f16(y[i].d) * sl_load_f16(x[i].d)) * sumi;
    }
    return sum;
}

static int q8k_bsum(const block_q8_K *b, int j) { return sl_load_i16(b->bsums + 2 * j); }

/* sum of L[i] * q[i] over n elements. */
static int dot_levels(const int8_t *L, const int8_t *q, int n) {
    int s = 0;
    for (int i = 0; i < n; i++) s += L[i] * q[i];
    return s;
}

static float dot_q2_K(int64_t n, const void *w, const void *act) {
    const block_q2_K *x = w;
    const block_q8_K *y = act;
    int8_t L[QK_K];
    float sum = 0;
    for (int64_t i = 0; i < n / QK_K; i++) {
        levels_2bit(x[i].qs, L);
        int summs = 0, isum = 0;
        for (int sb = 0; sb < 16; sb++) {
            summs += q8k_bsum(&y[i], sb) * (x[i].scales[sb] >> 4);
            isum += (x[i].scales[sb] & 0xF) * dot_levels(L + 16 * sb, y[i].qs + 16 * sb, 16);
        }
        float yd = sl_load_f32(y[i].d);
        float dall = yd * sl_load_f16(x[i].d), dmin = yd * sl_load_f16(x[i].dmin);
        sum += dall * isum - dmin * summs;
    }
    return sum;
}

static float dot_q3_K(int64_t n, const void *w, const void *act) {
    const block_q3_K *x = w;
    const block_q8_K *y = act;
    int8_t L[QK_K], sc[16];
    float sum = 0;
    for (int64_t i = 0; i < n / QK_K; i++) {
        sl_q3k_scales(x[i].scales, sc);
        levels_q3_K(&x[i], L);
        int isum = 0;
        for (int sb = 0; sb < 16; sb++) isum += sc[sb] * dot_levels(L + 16 * sb, y[i].qs + 16 * sb, 16);
        sum += (sl_load_f16(x[i].d) * sl_load_f32(y[i].d)) * isum;
    }
    return sum;
}

/* Q4_K/Q5_K: sum over sub-blocks of scale * dot - min * bsums, scaled. */
static float dot_k4_block(const uint8_t *d, const uint8_t *dmin, const uint8_t *scales, const int8_t *L,
                          const block_q8_K *y) {
    int summs = 0, isum = 0;
    for (int sb = 0; sb < 8; sb++) {
        uint8_t sc, m;
        sl_get_scale_min_k4(sb, scales, &sc, &m);
        summs += m * (q8k_bsum(y, 2 * sb) + q8k_bsum(y, 2 * sb + 1));
        isum += sc * dot_levels(L + 32 * sb, y->qs + 32 * sb, 32);
    }
    float yd = sl_load_f32(y->d);
    return sl_load_f16(d) * yd * isum - sl_load_f16(dmin) * yd * summs;
}

static float dot_q4_K(int64_t n, const void *w, const void *act) {
    const block_q4_K *x = w;
    const block_q8_K *y = act;
    int8_t L[QK_K];
    float sum = 0;
    for (int64_t i = 0; i < n / QK_K; i++) {
        levels_4bit(x[i].qs, L);
        sum += dot_k4_block(x[i].d, x[i].dmin, x[i].scales, L, &y[i]);
    }
    return sum;
}

static float dot_q5_K(int64_t n, const void *w, const void *act) {
    const block_q5_K *x = w;
    const block_q8_K *y = act;
    int8_t L[QK_K];
    float sum = 0;
    for (int64_t i = 0; i < n / QK_K; i++) {
        levels_q5_K(&x[i], L);
        sum += dot_k4_block(x[i].d, x[i].dmin, x[i].scales, L, &y[i]);
    }
    return sum;
}

static float dot_q6_K(int64_t n, const void *w, const void *act) {
    const block_q6_K *x = w;
    const block_q8_K *y = act;
    int8_t L[QK_K];
    float sum = 0;
    for (int64_t i = 0; i < n / QK_K; i++) {
        levels_q6_K(&x[i], L);
        int isum = 0;
        for (int sb = 0; sb < 16; sb++) isum += x[i].scales[sb] * dot_levels(L + 16 * sb, y[i].qs + 16 * sb, 16);
        sum += (sl_load_f16(x[i].d) * sl_load_f32(y[i].d)) * isum;
    }
    return sum;
}

static float dot_q8_K(int64_t n, const void *w, const void *act) {
    const block_q8_K *x = w;
    const block_q8_K *y = act;
    float sum = 0;
    for (int64_t i = 0; i < n / QK_K; i++) {
        int sumi = 0;
        for (int j = 0; j < QK_K; j++) sumi += x[i].qs[j] * y[i].qs[j];
        sum += (sl_load_f32(x[i].d) * sl_load_f32(y[i].d)) * sumi;
    }
    return sum;
}

/* ======================= table ======================= */

const sl_kernel_table sl_kernels_ref = {
    .vec_dot = {
        [SL_TYPE_F32] = dot_f32,   [SL_TYPE_F16] = dot_f16,   [SL_TYPE_BF16] = dot_bf16,
        [SL_TYPE_Q4_0] = dot_q4_0, [SL_TYPE_Q4_1] = dot_q4_1, [SL_TYPE_Q5_0] = dot_q5_0,
        [SL_TYPE_Q5_1] = dot_q5_1, [SL_TYPE_Q8_0] = dot_q8_0, [SL_TYPE_Q8_1] = dot_q8_1,
        [SL_TYPE_Q2_K] = dot_q2_K, [SL_TYPE_Q3_K] = dot_q3_K, [SL_TYPE_Q4_K] = dot_q4_K,
        [SL_TYPE_Q5_K] = dot_q5_K, [SL_TYPE_Q6_K] = dot_q6_K, [SL_TYPE_Q8_K] = dot_q8_K,
        [SL_TYPE_IQ4_NL] = dot_iq4_nl,
    },
    .quantize = {
        [SL_TYPE_F32] = quant_f32,   [SL_TYPE_F16] = quant_f16,   [SL_TYPE_BF16] = quant_bf16,
        [SL_TYPE_Q4_0] = quant_q4_0, [SL_TYPE_Q4_1] = quant_q4_1, [SL_TYPE_Q5_0] = quant_q5_0,
        [SL_TYPE_Q5_1] = quant_q5_1, [SL_TYPE_Q8_0] = quant_q8_0, [SL_TYPE_Q8_1] = quant_q8_1,
        [SL_TYPE_Q2_K] = quant_q2_K, [SL_TYPE_Q3_K] = quant_q3_K, [SL_TYPE_Q4_K] = quant_q4_K,
        [SL_TYPE_Q5_K] = quant_q5_K, [SL_TYPE_Q6_K] = quant_q6_K, [SL_TYPE_Q8_K] = quant_q8_K,
        [SL_TYPE_IQ4_NL] = quant_iq4_nl,
    },
    .dequantize = {
        [SL_TYPE_F32] = dequant_f32,   [SL_TYPE_F16] = dequant_f16,   [SL_TYPE_BF16] = dequant_bf16,
        [SL_TYPE_Q4_0] = dequant_q4_0, [SL_TYPE_Q4_1] = dequant_q4_1, [SL_TYPE_Q5_0] = dequant_q5_0,
        [SL_TYPE_Q5_1] = dequant_q5_1, [SL_TYPE_Q8_0] = dequant_q8_0, [SL_TYPE_Q8_1] = dequant_q8_1,
        [SL_TYPE_Q2_K] = dequant_q2_K, [SL_TYPE_Q3_K] = dequant_q3_K, [SL_TYPE_Q4_K] = dequant_q4_K,
        [SL_TYPE_Q5_K] = dequant_q5_K, [SL_TYPE_Q6_K] = dequant_q6_K, [SL_TYPE_Q8_K] = dequant_q8_K,
        [SL_TYPE_IQ4_NL] = dequant_iq4_nl,
    },
};
