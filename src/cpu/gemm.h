/* gemm.h - the blocked matrix-product kernels behind matmul.c: packed weight
 * layouts, the activation format they read, and the kernel tables.
 *
 * Weights are repacked once (when a CPU context is made) into groups of G
 * rows that a kernel reads together: G = 16 for AVX-512 (one 32-bit lane per
 * row of a 512-bit vector), 4 for wasm SIMD128. Inside a group, each block
 * column has a quant part, runs of [G rows][4 bytes], and a scale part with
 * the G rows' scales side by side: one vector load gives 4 consecutive
 * elements of every row, which an int8 dot instruction multiplies by 4
 * activation bytes broadcast to all lanes. So the kernel's accumulator lanes
 * are rows, a tile of tokens reuses each decoded weight vector, and results
 * come out as G consecutive floats per token, ready to store.
 *
 * Block columns are stored in pairs, [quants b][quants b+1][scales b]
 * [scales b+1] (an unpaired last one as [quants][scales]), and groups follow
 * each other: a product reads its rows as one stream, front to back, that
 * software prefetching can run ahead of (decoding is bound by memory), and
 * every quant part starts 64-byte aligned for G = 16.
 *
 * What the parts of a block column hold, scale part first (r = row in the
 * group, "[G][4]" = G runs of 4 bytes, rows past the matrix's end are zero):
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
 *   Q6_K_I8 (276G per 256): d[G] f32, scale[16][G] i8; for j = 0..63 a [G][4]
 *        run of group j's values q-32 as signed bytes.
 *   *_F32: as above with d (and dmin) as f32, 2 (Q4_K: 4) more bytes per row
 *        and block column.
 *
 * Activations (sl_gemm_act) are quantized once per product with the weight
 * type's own activation quantizer (Q8_0 or Q8_K, bit for bit), and kept with
 * side tables that fold the unsigned-times-signed trick and the K-quant mins
 * into precomputed integers. */
#ifndef SL_CPU_GEMM_H
#define SL_CPU_GEMM_H

#include "quant/quant.h"

/* The packed layouts. A type can have more than one; each kernel family
 * packs a type in the layout its instructions read best. */
typedef enum sl_gemm_layout {
    SL_GEMM_NONE = 0,
    /* f16 scales (AVX-512 converts them in hardware) */
    SL_GEMM_Q4_0,
    SL_GEMM_Q8_0,
    SL_GEMM_Q4_K,
    SL_GEMM_Q6_K,     /* 6-bit levels as a nibble plane and a 2-bit plane (below) */
    /* the same with the f16 scales d (and dmin) stored as f32: wasm SIMD128
       has no f16 conversion, and converting with integer tricks in the
       kernels' loops costs registers V8 does not have */
    SL_GEMM_Q4_0_F32,
    SL_GEMM_Q8_0_F32,
    SL_GEMM_Q4_K_F32,
    SL_GEMM_Q6_K_I8,  /* f32 d, and 6-bit levels minus 32 as signed bytes: 23%
                         more bytes, but no unpacking (SIMD128 has no byte shifts) */
    SL_GEMM_LAYOUT_COUNT
} sl_gemm_layout;

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
    sl_gemm_layout layout[SL_TYPE_COUNT]; /* SL_GEMM_NONE: type not packed by this family */
    sl_gemm_fn fn[SL_TYPE_COUNT];
} sl_gemm_kernels;

#if defined(__x86_64__)
extern const sl_gemm_kernels sl_gemm_avx512; /* gemm_x86.c; needs AVX-512 F/BW/VL/VNNI */
#endif
#if defined(__wasm_simd128__)
extern const sl_gemm_kernels sl_gemm_simd128; /* gemm_wasm.c */
#endif

/* The type a layout holds (SL_TYPE_COUNT for none). */
sl_type sl_gemm_layout_type(sl_gemm_layout layout);
/* Bytes of one packed block column of G rows, and of its quant and scale
 * parts (0: no such layout). */
size_t sl_gemm_block_bytes(sl_gemm_layout layout, int G);
size_t sl_gemm_quant_bytes(sl_gemm_layout layout, int G);
size_t sl_gemm_scale_bytes(sl_gemm_layout layout, int G);

/* Where the quant and the scale part of block column b (of nb) start in a
 * group whose parts are qb and sb bytes (the pairs described above). */
static inline size_t sl_gemm_quant_offset(int64_t b, size_t qb, size_t sb) {
    return (size_t)(b & ~(int64_t)1) * (qb + sb) + (size_t)(b & 1) * qb;
}
static inline size_t sl_gemm_scale_offset(int64_t nb, int64_t b, size_t qb, size_t sb) {
    const int64_t first = b & ~(int64_t)1;
    const size_t in_pair = nb - first >= 2 ? 2 : 1;
    return (size_t)first * (qb + sb) + in_pair * qb + (size_t)(b & 1) * sb;
}
/* Elements per block column of a layout (32 or 256; 0: none). */
int sl_gemm_block_elems(sl_gemm_layout layout);

/* Packs rows [r0, r0 + G) of w, a matrix of the layout's type (rows past
 * `rows` as zeros), into out. */
void sl_gemm_pack_group(sl_gemm_layout layout, int G, const void *w, size_t row_bytes, int64_t rows, int64_t cols,
                        int64_t r0, uint8_t *out);

/* Portable kernel over a packed group of any G (the reference for tests). */
void sl_gemm_ref(sl_gemm_layout layout, int G, const uint8_t *group, const sl_gemm_act *act, int32_t t0, int32_t n,
                 float *y, size_t ldy, int valid);

#endif
