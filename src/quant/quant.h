/* quant.h - tensor element types and quantized block formats.
 *
 * Types and their block layouts are ggml's (the GGUF type ids). Each type is
 * described by data (sl_type_info): block size, bytes per block, and the
 * activation format its dot product consumes (vec_dot_type). As in llama.cpp,
 * activations are rounded to 8-bit blocks (Q8_0, Q8_1, Q8_K) before integer
 * dot products with quantized weights, and to F16/BF16 for F16/BF16 weights, so
 * results line up with llama.cpp's.
 *
 * Row functions take n = number of elements, a multiple of the block size.
 * The dot product dispatches at run time to the fastest kernel the CPU has
 * (portable scalar reference; x86-64 AVX2 and AVX-512; NEON and wasm SIMD128
 * kernels can join the table in quant_dispatch.c). */
#ifndef SL_QUANT_H
#define SL_QUANT_H

#include "util/common.h"

typedef enum sl_type {
    SL_TYPE_F32 = 0,
    SL_TYPE_F16 = 1,
    SL_TYPE_Q4_0 = 2,
    SL_TYPE_Q4_1 = 3,
    SL_TYPE_Q5_0 = 6,
    SL_TYPE_Q5_1 = 7,
    SL_TYPE_Q8_0 = 8,
    SL_TYPE_Q8_1 = 9,
    SL_TYPE_Q2_K = 10,
    SL_TYPE_Q3_K = 11,
    SL_TYPE_Q4_K = 12,
    SL_TYPE_Q5_K = 13,
    SL_TYPE_Q6_K = 14,
    SL_TYPE_Q8_K = 15,
    SL_TYPE_IQ4_NL = 20,
    SL_TYPE_BF16 = 30,
    SL_TYPE_COUNT = 43 /* bound for ids; not every id below it is supported */
} sl_type;

typedef struct sl_type_info {
    const char *name;        /* "Q4_0", "F16", ... */
    int block_size;          /* elements per block (1 for F32/F16/BF16) */
    size_t type_size;        /* bytes per block */
    sl_type vec_dot_type;    /* activation format for sl_vec_dot */
    bool is_quantized;
} sl_type_info;

/* NULL when `type` is not a supported type id. */
const sl_type_info *sl_type_get(int type);
/* "Q4_0"... or NULL for unsupported ids; known-but-unsupported ggml ids
 * (e.g. IQ2_XXS) still get their name so errors can say what they are. */
const char *sl_type_name(int type);
/* Parses a name such as "Q4_0" or "q4_k" (case-insensitive). -1 if unknown.
 * Known-but-unsupported names (e.g. "IQ2_XXS") give their id too: check
 * sl_type_get() before computing with it. */
int sl_type_from_name(const char *name);
/* Bytes of a row of n elements; 0 if n is not a multiple of the block size or
 * the type is unsupported. */
size_t sl_row_size(sl_type type, int64_t n);

/* Scalar conversions. */
float sl_f16_to_f32(uint16_t h);
uint16_t sl_f32_to_f16(float f);     /* round to nearest even */
float sl_bf16_to_f32(uint16_t h);
uint16_t sl_f32_to_bf16(float f);    /* round to nearest even, NaN kept quiet */

/* Dequantizes n elements of `type` from src to dst. With an unsupported type
 * or an n that is not a multiple of the block size, dst gets n NaNs. */
void sl_dequantize_row(sl_type type, const void *src, float *dst, int64_t n);

/* Reference quantizer: n floats to `type` (every type above, including the
 * activation formats Q8_0/Q8_1/Q8_K and F32/F16/BF16). Returns bytes written,
 * 0 for an unsupported type or an n that is not a multiple of the block size.
 * Uses SIMD where available for the activation formats, with results identical
 * to the scalar code for finite input. */
size_t sl_quantize_row(sl_type type, const float *src, void *dst, int64_t n);

/* Dot product of a weight row of `type` with an activation row already in
 * sl_type_get(type)->vec_dot_type format, both of n elements. Uses the fastest
 * available kernel. Activations must come from sl_quantize_row (8-bit quants in
 * -127..127). NaN for an unsupported type or a bad n. */
float sl_vec_dot(sl_type type, int64_t n, const void *w, const void *act);

/* The same with the portable scalar kernel, for testing the fast ones. */
float sl_vec_dot_ref(sl_type type, int64_t n, const void *w, const void *act);

/* One weight row against n_act activation rows (the j-th at act + j*act_stride
 * bytes), into out[j*out_stride]: for each the value sl_vec_dot gives, bit for
 * bit, but faster for prompt batches since the weights are decoded once per
 * group of activation rows. Unsupported type or bad n: NaNs. */
void sl_vec_dot_multi(sl_type type, int64_t n, const void *w, const void *act, size_t act_stride,
                      int64_t n_act, float *out, int64_t out_stride);

/* The kernel sl_vec_dot uses for `type` (NULL if unsupported), for hot loops
 * that look it up once; n must be a multiple of the block size. */
typedef float (*sl_vec_dot_fn)(int64_t n, const void *w, const void *act);
sl_vec_dot_fn sl_vec_dot_kernel(sl_type type);

/* Name of the kernel family sl_vec_dot uses on this CPU ("avx512", "avx2", "scalar", ...). */
const char *sl_quant_backend(void);
/* Forces the scalar kernels (tests, benchmarks). */
void sl_quant_force_scalar(bool on);
/* Selects a kernel family by name ("scalar", "avx2", "avx512"), or the best one
 * for NULL or "auto". Returns 0, or -1 (no change) when this CPU or build lacks
 * it. For tests and benchmarks; not thread-safe against running kernels. */
int sl_quant_set_backend(const char *name);

#endif
