/* gemm.h - the blocked matrix-product kernels behind matmul.c: packed weight
 * layouts, the activation format they read, and the kernel tables.
 *
 * Weights are repacked once (when a CPU context is made) into groups of G
 * rows that a kernel reads together: G = 16 for AVX-512 (one 32-bit lane per
 * row of a 512-bit vector), 4 for wasm SIMD128. Inside a group, each block
 * column stores its G scales side by side and then its quants as runs of
 * [G rows][4 bytes]: one vector load gives 4 consecutive elements of every
 * row, which an int8 dot instruction multiplies by 4 activation bytes
 * broadcast to all lanes. So the kernel's accumulator lanes are rows, a tile
 * of tokens reuses each decoded weight vector, and results come out as G
 * consecutive floats per token, ready to store.
 *
 * Layouts per group (sizes per block column; r = row in the group, "[G][4]"
 * = G runs of 4 bytes, rows past the matrix's end are zero):
 *   Q4_0 (18G bytes per 32 elements): d[G] f16; then for k = 0..3 a [G][4]
 *        run of the row's qs[4k..4k+4): low nibbles are elements 4k..4k+3,
 *        high nibbles elements 16+4k..16+4k+3 (levels 0..15, value q-8).
 *   Q8_0 (34G per 32): d[G] f16; for k = 0..7 a [G][4] run of qs[4k..4k+4)
 *        XOR 0x80 (q+128 as unsigned bytes).
 *   Q4_K (148G per 256): d[G] f16, dmin[G] f16, scale[8][G] u8 (6-bit),
 *        min[4][G][2] u8 (mins of sub-blocks 2i and 2i+1 side by side), then
 *        for chunk c = 0..3 and g = 0..7 a [G][4] run of qs[32c+4g..+4): low
 *        nibbles are sub-block 2c elements 4g..4g+3, high ones sub-block 2c+1.
 *   Q6_K (210G per 256): d[G] f16, scale[16][G] i8, then the 6-bit levels q
 *        (0..63, value q-32) of 64 groups of 4 elements (group j = elements
 *        4j..4j+3, sub-block j/4): for p = 0..31 a [G][4] run of nibbles
 *        (low: group p, high: group p+32, bits 0-3 of q), then for u = 0..15
 *        a [G][4] run of 2-bit fields (bits 0-1: group u, 2-3: u+16,
 *        4-5: u+32, 6-7: u+48; bits 4-5 of q).
 *
 * Activations (sl_gemm_act) are quantized once per product with the weight
 * type's own activation quantizer (Q8_0 or Q8_K, bit for bit), and kept with
 * side tables that fold the unsigned-times-signed trick and the K-quant mins
 * into precomputed integers. */
#ifndef SL_CPU_GEMM_H
#define SL_CPU_GEMM_H

#include "quant/quant.h"

/* Quantized activations of n tokens of `cols` elements. */
typedef struct sl_gemm_act {
    sl_type type;          /* SL_TYPE_Q8_0 (blocks of 32) or SL_TYPE_Q8_K (super-blocks of 256) */
    int64_t cols;
    const int8_t *qs;      /* [n][cols] levels */
    const float *d;        /* [n][cols/32] (Q8_0 kind) or [n][cols/256] (Q8_K kind) scales */
    /* Q8_0 kind (Q4_0, Q8_0 weights): per block of 32 */
    const int32_t *c8;     /* [n][cols/32]: -8 * sum of the block's levels */
    const int32_t *c128;   /* [n][cols/32]: -128 * sum */
    /* Q8_K kind (Q4_K, Q6_K weights) */
    const int16_t *s32;    /* [n][cols/32]: sum of the levels of each 32 */
    const int32_t *c16;    /* [n][cols/16]: -32 * sum of each 16 */
    const int16_t *q16;    /* [n][cols] the levels as int16, when the kernels ask (wasm) */
} sl_gemm_act;

/* Bytes for n tokens of `cols` activations of type (Q8_0 or Q8_K), q16: with the int16 copy. */
size_t sl_gemm_act_bytes(sl_type type, int32_t n, int64_t cols, bool q16);
/* Points a's arrays into buf (64-byte aligned, sl_gemm_act_bytes long). */
void sl_gemm_act_init(sl_gemm_act *a, sl_type type, void *buf, int32_t n, int64_t cols, bool q16);
/* Quantizes token t of a from the floats x[cols], as sl_quantize_row(a->type) would. */
void sl_gemm_act_quantize(const sl_gemm_act *a, int32_t t, const float *x);

/* One packed group (G rows) against tokens [0, n) of act, results into
 * y[t * ldy + r] for rows r < valid (the rest of a partial group is skipped). */
typedef void (*sl_gemm_fn)(const uint8_t *group, const sl_gemm_act *act, int32_t t0, int32_t n, float *y,
                           size_t ldy, int valid);

typedef struct sl_gemm_kernels {
    const char *name;
    int group_rows;                  /* G */
    bool want_q16;                   /* activations also as int16 */
    sl_gemm_fn fn[SL_TYPE_COUNT];    /* NULL: type not packed by this family */
} sl_gemm_kernels;

#if defined(__x86_64__)
extern const sl_gemm_kernels sl_gemm_avx512; /* gemm_x86.c; needs AVX-512 F/BW/VL/VNNI */
#endif
#if defined(__wasm_simd128__)
extern const sl_gemm_kernels sl_gemm_simd128; /* gemm_wasm.c */
#endif

/* Bytes of one packed block column of G rows (0: type not packable). */
size_t sl_gemm_block_bytes(sl_type type, int G);
/* Elements per block column of a packable type (32 or 256). */
int sl_gemm_block_elems(sl_type type);

/* Packs rows [r0, r0 + G) of w (rows past `rows` as zeros) into out. */
void sl_gemm_pack_group(sl_type type, int G, const void *w, size_t row_bytes, int64_t rows, int64_t cols,
                        int64_t r0, uint8_t *out);

/* Portable kernel over a packed group of any G (the reference for tests). */
void sl_gemm_ref(sl_type type, int G, const uint8_t *group, const sl_gemm_act *act, int32_t t0, int32_t n, float *y,
                 size_t ldy, int valid);

#endif
