/* quant_impl.h - internals shared by the files of src/quant: block layouts, byte
 * helpers, scalar f16 conversion, and the kernel tables.
 *
 * Blocks are described as structs of byte arrays (alignment 1), so a pointer
 * to any byte of a tensor can be read as blocks without alignment UB; 16/32-bit
 * fields are read with memcpy (one load after optimisation). Layouts and sizes
 * are ggml's (ggml-common.h); the static asserts pin the sizes. */
#ifndef SL_QUANT_IMPL_H
#define SL_QUANT_IMPL_H

#include <float.h>
#include <string.h>

#include "quant/quant.h"

#define QK_K 256 /* elements of a K-quant super-block */

typedef struct { uint8_t d[2]; uint8_t qs[16]; } block_q4_0;            /* x = d*(q-8) */
typedef struct { uint8_t d[2]; uint8_t m[2]; uint8_t qs[16]; } block_q4_1; /* x = d*q + m */
typedef struct { uint8_t d[2]; uint8_t qh[4]; uint8_t qs[16]; } block_q5_0; /* x = d*(q-16) */
typedef struct { uint8_t d[2]; uint8_t m[2]; uint8_t qh[4]; uint8_t qs[16]; } block_q5_1;
typedef struct { uint8_t d[2]; int8_t qs[32]; } block_q8_0;
/* s = d * sum(qs), precomputed for the min term of Q4_1/Q5_1 dots. */
typedef struct { uint8_t d[2]; uint8_t s[2]; int8_t qs[32]; } block_q8_1;
typedef struct { uint8_t d[2]; uint8_t qs[16]; } block_iq4_nl;         /* x = d*kvalues[q] */

/* Q2_K: 16 sub-blocks of 16; scales[j] = scale (low nibble) | min (high nibble). */
typedef struct { uint8_t scales[16]; uint8_t qs[64]; uint8_t d[2]; uint8_t dmin[2]; } block_q2_K;
/* Q3_K: 16 sub-blocks of 16, 6-bit signed scales (biased by 32) packed in 12 bytes. */
typedef struct { uint8_t hmask[32]; uint8_t qs[64]; uint8_t scales[12]; uint8_t d[2]; } block_q3_K;
/* Q4_K/Q5_K: 8 sub-blocks of 32, 6-bit scales and mins packed in 12 bytes. */
typedef struct { uint8_t d[2]; uint8_t dmin[2]; uint8_t scales[12]; uint8_t qs[128]; } block_q4_K;
typedef struct { uint8_t d[2]; uint8_t dmin[2]; uint8_t scales[12]; uint8_t qh[32]; uint8_t qs[128]; } block_q5_K;
/* Q6_K: 16 sub-blocks of 16, int8 scales. */
typedef struct { uint8_t ql[128]; uint8_t qh[64]; int8_t scales[16]; uint8_t d[2]; } block_q6_K;
/* Q8_K (activations only): float d, and bsums[j] = sum of qs[16j..16j+16) as int16. */
typedef struct { uint8_t d[4]; int8_t qs[QK_K]; uint8_t bsums[QK_K / 16 * 2]; } block_q8_K;

_Static_assert(sizeof(block_q4_0) == 18, "q4_0 size");
_Static_assert(sizeof(block_q4_1) == 20, "q4_1 size");
_Static_assert(sizeof(block_q5_0) == 22, "q5_0 size");
_Static_assert(sizeof(block_q5_1) == 24, "q5_1 size");
_Static_assert(sizeof(block_q8_0) == 34, "q8_0 size");
_Static_assert(sizeof(block_q8_1) == 36, "q8_1 size");
_Static_assert(sizeof(block_iq4_nl) == 18, "iq4_nl size");
_Static_assert(sizeof(block_q2_K) == 84, "q2_K size");
_Static_assert(sizeof(block_q3_K) == 110, "q3_K size");
_Static_assert(sizeof(block_q4_K) == 144, "q4_K size");
_Static_assert(sizeof(block_q5_K) == 176, "q5_K size");
_Static_assert(sizeof(block_q6_K) == 210, "q6_K size");
_Static_assert(sizeof(block_q8_K) == 292, "q8_K size");

/* The 16 levels of IQ4_NL (ggml's kvalues_iq4nl). */
extern const int8_t sl_iq4nl_values[16];

/* ---- byte helpers ------------------------------------------------------- */

static inline uint16_t sl_load_u16(const void *p) { uint16_t v; memcpy(&v, p, 2); return v; }
static inline void sl_store_u16(void *p, uint16_t v) { memcpy(p, &v, 2); }
static inline int16_t sl_load_i16(const void *p) { int16_t v; memcpy(&v, p, 2); return v; }
static inline void sl_store_i16(void *p, int16_t v) { memcpy(p, &v, 2); }
static inline float sl_load_f32(const void *p) { float v; memcpy(&v, p, 4); return v; }
static inline void sl_store_f32(void *p, float v) { memcpy(p, &v, 4); }
static inline uint32_t sl_f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static inline float sl_bits_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

/* Exact f16 -> f32. The exponent is rebiased by one multiply by 2^112, which
 * also normalises subnormals exactly. Inf and NaN keep their payload bits. */
static inline float sl_f16_to_f32_inline(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t em = h & 0x7fffu;
    if (em >= 0x7c00u) return sl_bits_f32(sign | 0x7f800000u | ((em & 0x3ffu) << 13));
    float f = sl_bits_f32(em << 13) * 0x1p112f;
    return sl_bits_f32(sl_f32_bits(f) | sign);
}
static inline float sl_load_f16(const void *p) { return sl_f16_to_f32_inline(sl_load_u16(p)); }

/* Round to nearest, ties to even, for |f| < 2^22: adding 1.5*2^23 leaves the
 * rounded integer in the low mantissa bits. NaN gives 0; no UB for any input. */
static inline int sl_round_int(float f) {
    uint32_t u = sl_f32_bits(f + 12582912.0f);
    return (int)(u & 0x007fffffu) - 0x00400000;
}

/* 127/amax, the multiplier of the 8-bit activation quantizers (Q8_0/Q8_1),
 * and -127/max for Q8_K: kept finite when a tiny amax would overflow it, so
 * the scalar and SIMD roundings agree (and the block quantizes to zeros). */
static inline float sl_q8_multiplier(float amax) {
    if (amax == 0.0f) return 0.0f;
    float id = 127.0f / amax;
    return id <= FLT_MAX ? id : FLT_MAX;
}
static inline float sl_q8k_multiplier(float max) {
    float id = -127.0f / max;
    return id > FLT_MAX ? FLT_MAX : id < -FLT_MAX ? -FLT_MAX : id;
}

/* The 6-bit scale and min of sub-block j (0..7) of a Q4_K/Q5_K block. */
static inline void sl_get_scale_min_k4(int j, const uint8_t *q, uint8_t *scale, uint8_t *min) {
    if (j < 4) {
        *scale = q[j] & 63;
        *min = q[j + 4] & 63;
    } else {
        *scale = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        *min = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

/* The 16 signed scales (-32..31) of a Q3_K block. */
static inline void sl_q3k_scales(const uint8_t *packed, int8_t out[16]) {
    for (int j = 0; j < 16; j++) {
        int low = j < 8 ? packed[j] & 0xF : packed[j - 8] >> 4;
        int high = (packed[8 + j % 4] >> (2 * (j / 4))) & 3;
        out[j] = (int8_t)((low | (high << 4)) - 32);
    }
}

/* ---- kernels ------------------------------------------------------------ */

/* n is a multiple of the type's block size (checked by the caller). */
typedef void (*sl_quantize_fn)(const float *src, void *dst, int64_t n);
/* One weight row against exactly SL_DOT_GROUP activation rows: out[a] is
 * what the type's vec_dot gives for acts[a], bit for bit. */
enum { SL_DOT_GROUP = 4 };
typedef void (*sl_vec_dot_group_fn)(int64_t n, const void *w, const void *const *acts, float *out);
typedef void (*sl_dequantize_fn)(const void *src, float *dst, int64_t n);

/* A kernel set, indexed by type id; NULL where the set has no kernel. Fast
 * quantizers must be bit-identical to the reference ones (for finite input). */
typedef struct sl_kernel_table {
    sl_vec_dot_fn vec_dot[SL_TYPE_COUNT];
    sl_vec_dot_group_fn vec_dot_group[SL_TYPE_COUNT]; /* optional: weights decoded once per group */
    sl_quantize_fn quantize[SL_TYPE_COUNT];
    sl_dequantize_fn dequantize[SL_TYPE_COUNT];
} sl_kernel_table;

/* Portable scalar kernels, complete for every supported type (quant_ref.c). */
extern const sl_kernel_table sl_kernels_ref;

#if defined(__x86_64__)
/* quant_x86.c: AVX2+FMA+F16C, and AVX-512 F/BW/VL/VNNI (which also holds the
 * AVX2 kernels it does not replace). */
extern const sl_kernel_table sl_kernels_avx2;
extern const sl_kernel_table sl_kernels_avx512;
#endif
#if defined(__wasm_simd128__)
/* quant_wasm.c: wasm SIMD128. */
extern const sl_kernel_table sl_kernels_simd128;
#endif

#endif
