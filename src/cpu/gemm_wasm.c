/* gemm_wasm.c - wasm SIMD128 kernels over packed groups of 4 rows (layouts
 * in gemm.h); matmul.c uses them when the quant backend is "simd128".
 *
 * A run of the layout is one 16-byte vector: 4 elements of each of the 4
 * rows. Widened to int16 it makes two vectors (rows 0-1 and rows 2-3) that
 * i32x4.dot_i16x8 multiplies by the token's 4 int16 activations splatted
 * twice, giving per-row partial sums in lanes [r0, r0, r1, r1] and
 * [r2, r2, r3, r3] (rowsum4 adds the pairs). Weights are widened once per
 * block and reused for a tile of tokens. Integer sums are exact, so results
 * differ from the reference dot products only by float rounding. The
 * layouts keep scales as f32 (SIMD128 has no f16 conversion), and Q6_K's
 * levels as signed bytes (SL_GEMM_Q6_K_I8): without byte shifts, unpacking
 * 6-bit fields made the kernel 3x slower where it is bound by arithmetic
 * (prefill); decoding streams 31% more bytes instead. */
#include "cpu/gemm.h"

#if defined(__wasm_simd128__)
#include <wasm_simd128.h>

#include "quant/quant_impl.h"

#define G 4
#define MAX_NT 4
/* A loop over runs that clang must not unroll: wasm has unlimited locals, so
 * clang's schedule of an unrolled block keeps many vectors live, and V8,
 * with 16 vector registers on x86-64, spills them (measured: Q4_K 1.3-1.5x
 * faster rolled). */
#define ROLLED _Pragma("clang loop unroll(disable)")
/* (unused: each build uses either the SIMD128 tiles or the relaxed ones) */
#define ALWAYS_INLINE inline __attribute__((always_inline, unused))

/* [r0, r0, r1, r1] and [r2, r2, r3, r3] int32 partial sums as [r0, r1, r2, r3]. */
static ALWAYS_INLINE v128_t rowsum4(v128_t a01, v128_t a23) {
    return wasm_i32x4_add(wasm_i32x4_shuffle(a01, a23, 0, 2, 4, 6), wasm_i32x4_shuffle(a01, a23, 1, 3, 5, 7));
}

/* The group's 4 scales at p (f32 in the layouts of this family). */
static ALWAYS_INLINE v128_t scales4(const uint8_t *p) { return wasm_v128_load(p); }

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
    const size_t qb = is_q4 ? 16 * G : 32 * G, sb = 4 * G;
    const v128_t m4w = wasm_i16x8_splat(0x0F), flip = wasm_i8x16_splat((int8_t)0x80);
    v128_t acc[MAX_NT];
    #pragma unroll
    for (int t = 0; t < nt; t++) acc[t] = wasm_f32x4_splat(0);
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *qp = grp + sl_gemm_quant_offset(b, qb, sb);
        v128_t p01[MAX_NT], p23[MAX_NT];
        #pragma unroll
        for (int t = 0; t < nt; t++) p01[t] = p23[t] = wasm_i32x4_splat(0);
        ROLLED
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
        const v128_t dw = scales4(grp + sl_gemm_scale_offset(nb, b, qb, sb));
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

/* The end of a Q4_K super-block for nt tokens: the integer sums of quants
 * (isum) and of mins (msum) scaled by the rows' d and dmin (at sp) and the
 * tokens' scales, into acc. Shared by the SIMD128 and relaxed tiles. */
static ALWAYS_INLINE void q4_K_block_end(v128_t *acc, const v128_t *isum, const v128_t *msum, const uint8_t *sp,
                                         const sl_gemm_act *a, int32_t t0, int nt, int64_t nb, int64_t b) {
    const v128_t dw = scales4(sp), dmin = scales4(sp + 4 * G);
    #pragma unroll
    for (int t = 0; t < nt; t++) {
        const v128_t yd = wasm_f32x4_splat(a->d[(size_t)(t0 + t) * nb + b]);
        acc[t] = wasm_f32x4_add(acc[t], wasm_f32x4_mul(wasm_f32x4_convert_i32x4(isum[t]), wasm_f32x4_mul(dw, yd)));
        acc[t] = wasm_f32x4_sub(acc[t], wasm_f32x4_mul(wasm_f32x4_convert_i32x4(msum[t]), wasm_f32x4_mul(dmin, yd)));
    }
}

static ALWAYS_INLINE void q4_K_tile(const uint8_t *grp, const sl_gemm_act *a, int32_t t0, int nt, float *y,
                                    size_t ldy, int valid) {
    const int64_t nb = a->cols / QK_K, n32 = a->cols / 32;
    const size_t qb = 128 * G, sb = 24 * G;
    const v128_t m4w = wasm_i16x8_splat(0x0F);
    v128_t acc[MAX_NT];
    #pragma unroll
    for (int t = 0; t < nt; t++) acc[t] = wasm_f32x4_splat(0);
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *qp = grp + sl_gemm_quant_offset(b, qb, sb), *sp = grp + sl_gemm_scale_offset(nb, b, qb, sb);
        v128_t isum[MAX_NT], msum[MAX_NT];
        #pragma unroll
        for (int t = 0; t < nt; t++) isum[t] = msum[t] = wasm_i32x4_splat(0);
        for (int c = 0; c < 4; c++) {
            v128_t l01[MAX_NT], l23[MAX_NT], h01[MAX_NT], h23[MAX_NT];
            #pragma unroll
            for (int t = 0; t < nt; t++) l01[t] = l23[t] = h01[t] = h23[t] = wasm_i32x4_splat(0);
            ROLLED
            for (int g = 0; g < 8; g++) {
                v128_t v = wasm_v128_load(qp + (size_t)(8 * c + g) * 16);
                /* nibbles split after widening: 16-bit shifts are native, byte shifts are not */
                const v128_t w01 = wasm_u16x8_extend_low_u8x16(v), w23 = wasm_u16x8_extend_high_u8x16(v);
                const v128_t lo01 = wasm_v128_and(w01, m4w), lo23 = wasm_v128_and(w23, m4w);
                const v128_t hi01 = wasm_u16x8_shr(w01, 4), hi23 = wasm_u16x8_shr(w23, 4);
                #pragma unroll
                for (int t = 0; t < nt; t++) {
                    const int64_t e = b * QK_K + 64 * c + 4 * g;
                    const v128_t ylo = act4(a, t0 + t, e), yhi = act4(a, t0 + t, e + 32);
                    l01[t] = wasm_i32x4_add(l01[t], wasm_i32x4_dot_i16x8(lo01, ylo));
                    l23[t] = wasm_i32x4_add(l23[t], wasm_i32x4_dot_i16x8(lo23, ylo));
                    h01[t] = wasm_i32x4_add(h01[t], wasm_i32x4_dot_i16x8(hi01, yhi));
                    h23[t] = wasm_i32x4_add(h23[t], wasm_i32x4_dot_i16x8(hi23, yhi));
                }
            }
            const v128_t sc_lo = bytes4_u32(sp + 8 * G + 2 * c * G), sc_hi = bytes4_u32(sp + 8 * G + (2 * c + 1) * G);
            /* mins of sub-blocks 2c, 2c+1 as int16 pairs per row, against the pair of 32-sums */
            const v128_t mins = wasm_u16x8_extend_low_u8x16(wasm_v128_load64_zero(sp + 16 * G + 2 * c * G));
            #pragma unroll
            for (int t = 0; t < nt; t++) {
                v128_t p = wasm_i32x4_add(wasm_i32x4_mul(rowsum4(l01[t], l23[t]), sc_lo),
                                          wasm_i32x4_mul(rowsum4(h01[t], h23[t]), sc_hi));
                isum[t] = wasm_i32x4_add(isum[t], p);
                v128_t sums = wasm_v128_load32_splat(a->s32 + (size_t)(t0 + t) * n32 + 8 * b + 2 * c);
                msum[t] = wasm_i32x4_add(msum[t], wasm_i32x4_dot_i16x8(mins, sums));
            }
        }
        q4_K_block_end(acc, isum, msum, sp, a, t0, nt, nb, b);
    }
    store_rows(y, ldy, nt, acc, valid);
}

/* ---- Q6_K, packed as signed bytes (SL_GEMM_Q6_K_I8) ---------------------- */

/* Byte levels need no unpacking, so this is the Q8_0 kernel with a scale per
 * sub-block of 16 (4 runs): a sub-block's row sums are multiplied by the
 * rows' scales before they join the block's integer sum. */
static ALWAYS_INLINE void q6_K_tile(const uint8_t *grp, const sl_gemm_act *a, int32_t t0, int nt, float *y,
                                    size_t ldy, int valid) {
    const int64_t nb = a->cols / QK_K;
    const size_t qb = 256 * G, sb = 20 * G;
    v128_t acc[MAX_NT];
    #pragma unroll
    for (int t = 0; t < nt; t++) acc[t] = wasm_f32x4_splat(0);
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *qp = grp + sl_gemm_quant_offset(b, qb, sb), *sp = grp + sl_gemm_scale_offset(nb, b, qb, sb);
        v128_t isum[MAX_NT];
        #pragma unroll
        for (int t = 0; t < nt; t++) isum[t] = wasm_i32x4_splat(0);
        for (int sub = 0; sub < 16; sub++) {
            v128_t p01[MAX_NT], p23[MAX_NT];
            #pragma unroll
            for (int t = 0; t < nt; t++) p01[t] = p23[t] = wasm_i32x4_splat(0);
            #pragma unroll
            for (int i = 0; i < 4; i++) {
                const v128_t v = wasm_v128_load(qp + (size_t)(4 * sub + i) * 16);
                const v128_t w01 = wasm_i16x8_extend_low_i8x16(v), w23 = wasm_i16x8_extend_high_i8x16(v);
                #pragma unroll
                for (int t = 0; t < nt; t++) {
                    const v128_t yv = act4(a, t0 + t, b * QK_K + 16 * sub + 4 * i);
                    p01[t] = wasm_i32x4_add(p01[t], wasm_i32x4_dot_i16x8(w01, yv));
                    p23[t] = wasm_i32x4_add(p23[t], wasm_i32x4_dot_i16x8(w23, yv));
                }
            }
            const v128_t sc = bytes4_i32(sp + 4 * G + (size_t)sub * G);
            #pragma unroll
            for (int t = 0; t < nt; t++) isum[t] = wasm_i32x4_add(isum[t], wasm_i32x4_mul(rowsum4(p01[t], p23[t]), sc));
        }
        const v128_t dw = scales4(sp);
        #pragma unroll
        for (int t = 0; t < nt; t++) {
            const v128_t yd = wasm_f32x4_splat(a->d[(size_t)(t0 + t) * nb + b]);
            acc[t] = wasm_f32x4_add(acc[t], wasm_f32x4_mul(wasm_f32x4_convert_i32x4(isum[t]), wasm_f32x4_mul(dw, yd)));
        }
    }
    store_rows(y, ldy, nt, acc, valid);
}

/* ---- relaxed SIMD (engine-relaxed.wasm, clang-16 -mrelaxed-simd) ----------
 *
 * i16x8.relaxed_dot_i8x16_i7x16_s multiplies 16 byte pairs and adds
 * neighbours into int16 lanes (dot16): with the token's 4 int8 activations
 * splatted as its first operand and a run (row r's 4 levels in 32-bit lane
 * r) as the second, row r's products land in int16 lanes 2r and 2r+1, and
 * the weights need no widening. The standard fixes its result only when the
 * second operand's bytes are in 0..127 (x86 engines use pmaddubsw, which
 * reads them as unsigned, ARM ones sdot, which reads them as signed): it is
 * always the weights here, as levels in that range, Q4 nibbles (0..15) and
 * Q6_K levels q (0..63, the -32 folded into the activations' c16). Sums stay
 * in int16 while they cannot overflow (a Q4 lane gains at most 2*128*15 =
 * 3840 per dot: 8 dots; a Q6_K lane 2*128*63 = 16128: 2), then a pairwise
 * widening add makes per-row int32 sums. Not the fused
 * i32x4.relaxed_dot_i8x16_i7x16_add_s: V8's baseline compiler (Node 20,
 * V8 11.3) gets it wrong when the accumulator's register is reused for the
 * result (it adds the dot twice). Integer sums are exact, so results equal
 * the SIMD128 kernels' bit for bit. Q8_0 keeps the SIMD128 kernel: its
 * bytes would need two 7-bit halves, and widened int16 dots are as fast. */
#if defined(__wasm_relaxed_simd__)

/* Pair sums of the products of activation bytes and levels (0..127), int16 lanes. */
static ALWAYS_INLINE v128_t dot16(v128_t act, v128_t levels) {
    return (v128_t)__builtin_wasm_relaxed_dot_i8x16_i7x16_s_i16x8((__i8x16)act, (__i8x16)levels);
}

/* int16 pair sums [r0, r0, r1, r1, ...] as int32 row sums [r0, r1, r2, r3]. */
static ALWAYS_INLINE v128_t rows4(v128_t pairs) { return wasm_i32x4_extadd_pairwise_i16x8(pairs); }

/* The int8 activations of token t, elements e..e+3, in every lane. */
static ALWAYS_INLINE v128_t act4_i8(const sl_gemm_act *a, int32_t t, int64_t e) {
    return wasm_v128_load32_splat(a->qs + (size_t)t * a->cols + e);
}

/* Low and high nibbles of a run's bytes (a 16-bit shift: byte shifts are not native on x86). */
static ALWAYS_INLINE v128_t nibbles_lo(v128_t v) { return wasm_v128_and(v, wasm_i8x16_splat(0x0F)); }
static ALWAYS_INLINE v128_t nibbles_hi(v128_t v) { return wasm_v128_and(wasm_u16x8_shr(v, 4), wasm_i8x16_splat(0x0F)); }

static ALWAYS_INLINE void q4_0_tile_relaxed(const uint8_t *grp, const sl_gemm_act *a, int32_t t0, int nt, float *y,
                                            size_t ldy, int valid) {
    const int64_t nb = a->cols / 32;
    const size_t qb = 16 * G, sb = 4 * G;
    v128_t acc[MAX_NT];
    #pragma unroll
    for (int t = 0; t < nt; t++) acc[t] = wasm_f32x4_splat(0);
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *qp = grp + sl_gemm_quant_offset(b, qb, sb);
        v128_t p[MAX_NT]; /* int16: 8 dots */
        #pragma unroll
        for (int t = 0; t < nt; t++) p[t] = wasm_i16x8_splat(0);
        ROLLED
        for (int k = 0; k < 4; k++) {
            const v128_t v = wasm_v128_load(qp + 16 * k), lo = nibbles_lo(v), hi = nibbles_hi(v);
            #pragma unroll
            for (int t = 0; t < nt; t++) {
                p[t] = wasm_i16x8_add(p[t], dot16(act4_i8(a, t0 + t, 32 * b + 4 * k), lo));
                p[t] = wasm_i16x8_add(p[t], dot16(act4_i8(a, t0 + t, 32 * b + 16 + 4 * k), hi));
            }
        }
        const v128_t dw = scales4(grp + sl_gemm_scale_offset(nb, b, qb, sb));
        #pragma unroll
        for (int t = 0; t < nt; t++) {
            const size_t bi = (size_t)(t0 + t) * nb + b;
            const v128_t r = wasm_i32x4_add(rows4(p[t]), wasm_i32x4_splat(a->c8[bi]));
            acc[t] = wasm_f32x4_add(acc[t], wasm_f32x4_mul(wasm_f32x4_convert_i32x4(r),
                                                           wasm_f32x4_mul(dw, wasm_f32x4_splat(a->d[bi]))));
        }
    }
    store_rows(y, ldy, nt, acc, valid);
}

static ALWAYS_INLINE void q4_K_tile_relaxed(const uint8_t *grp, const sl_gemm_act *a, int32_t t0, int nt, float *y,
                                            size_t ldy, int valid) {
    const int64_t nb = a->cols / QK_K, n32 = a->cols / 32;
    const size_t qb = 128 * G, sb = 24 * G;
    v128_t acc[MAX_NT];
    #pragma unroll
    for (int t = 0; t < nt; t++) acc[t] = wasm_f32x4_splat(0);
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *qp = grp + sl_gemm_quant_offset(b, qb, sb), *sp = grp + sl_gemm_scale_offset(nb, b, qb, sb);
        v128_t isum[MAX_NT], msum[MAX_NT];
        #pragma unroll
        for (int t = 0; t < nt; t++) isum[t] = msum[t] = wasm_i32x4_splat(0);
        for (int c = 0; c < 4; c++) {
            v128_t l[MAX_NT], h[MAX_NT]; /* int16: 8 dots each */
            #pragma unroll
            for (int t = 0; t < nt; t++) l[t] = h[t] = wasm_i16x8_splat(0);
            ROLLED
            for (int g = 0; g < 8; g++) {
                const v128_t v = wasm_v128_load(qp + (size_t)(8 * c + g) * 16), lo = nibbles_lo(v), hi = nibbles_hi(v);
                #pragma unroll
                for (int t = 0; t < nt; t++) {
                    const int64_t e = b * QK_K + 64 * c + 4 * g;
                    l[t] = wasm_i16x8_add(l[t], dot16(act4_i8(a, t0 + t, e), lo));
                    h[t] = wasm_i16x8_add(h[t], dot16(act4_i8(a, t0 + t, e + 32), hi));
                }
            }
            const v128_t sc_lo = bytes4_u32(sp + 8 * G + 2 * c * G), sc_hi = bytes4_u32(sp + 8 * G + (2 * c + 1) * G);
            /* mins of sub-blocks 2c, 2c+1 as int16 pairs per row, against the pair of 32-sums */
            const v128_t mins = wasm_u16x8_extend_low_u8x16(wasm_v128_load64_zero(sp + 16 * G + 2 * c * G));
            #pragma unroll
            for (int t = 0; t < nt; t++) {
                isum[t] = wasm_i32x4_add(isum[t], wasm_i32x4_add(wasm_i32x4_mul(rows4(l[t]), sc_lo),
                                                                 wasm_i32x4_mul(rows4(h[t]), sc_hi)));
                const v128_t sums = wasm_v128_load32_splat(a->s32 + (size_t)(t0 + t) * n32 + 8 * b + 2 * c);
                msum[t] = wasm_i32x4_add(msum[t], wasm_i32x4_dot_i16x8(mins, sums));
            }
        }
        q4_K_block_end(acc, isum, msum, sp, a, t0, nt, nb, b);
    }
    store_rows(y, ldy, nt, acc, valid);
}

/* SL_GEMM_Q6_K_I8 holds q - 32: adding 32 back gives levels 0..63, and the
 * activations' c16 (-32 * the sum of each 16) takes the offset off again. */
static ALWAYS_INLINE void q6_K_tile_relaxed(const uint8_t *grp, const sl_gemm_act *a, int32_t t0, int nt, float *y,
                                            size_t ldy, int valid) {
    const int64_t nb = a->cols / QK_K, n16 = a->cols / 16;
    const size_t qb = 256 * G, sb = 20 * G;
    const v128_t off = wasm_i8x16_splat(32);
    v128_t acc[MAX_NT];
    #pragma unroll
    for (int t = 0; t < nt; t++) acc[t] = wasm_f32x4_splat(0);
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *qp = grp + sl_gemm_quant_offset(b, qb, sb), *sp = grp + sl_gemm_scale_offset(nb, b, qb, sb);
        v128_t isum[MAX_NT];
        #pragma unroll
        for (int t = 0; t < nt; t++) isum[t] = wasm_i32x4_splat(0);
        ROLLED
        for (int sub = 0; sub < 16; sub++) {
            const uint8_t *q = qp + (size_t)sub * 64;
            const v128_t v0 = wasm_i8x16_add(wasm_v128_load(q), off), v1 = wasm_i8x16_add(wasm_v128_load(q + 16), off);
            const v128_t v2 = wasm_i8x16_add(wasm_v128_load(q + 32), off), v3 = wasm_i8x16_add(wasm_v128_load(q + 48), off);
            const v128_t sc = bytes4_i32(sp + 4 * G + (size_t)sub * G);
            #pragma unroll
            for (int t = 0; t < nt; t++) {
                const int64_t e = b * QK_K + 16 * sub;
                /* int16: 2 dots each */
                const v128_t p01 = wasm_i16x8_add(dot16(act4_i8(a, t0 + t, e), v0), dot16(act4_i8(a, t0 + t, e + 4), v1));
                const v128_t p23 = wasm_i16x8_add(dot16(act4_i8(a, t0 + t, e + 8), v2), dot16(act4_i8(a, t0 + t, e + 12), v3));
                v128_t p = wasm_i32x4_add(wasm_i32x4_add(rows4(p01), rows4(p23)),
                                          wasm_i32x4_splat(a->c16[(size_t)(t0 + t) * n16 + 16 * b + sub]));
                isum[t] = wasm_i32x4_add(isum[t], wasm_i32x4_mul(p, sc));
            }
        }
        const v128_t dw = scales4(sp);
        #pragma unroll
        for (int t = 0; t < nt; t++) {
            const v128_t yd = wasm_f32x4_splat(a->d[(size_t)(t0 + t) * nb + b]);
            acc[t] = wasm_f32x4_add(acc[t], wasm_f32x4_mul(wasm_f32x4_convert_i32x4(isum[t]), wasm_f32x4_mul(dw, yd)));
        }
    }
    store_rows(y, ldy, nt, acc, valid);
}

#define FAMILY_NAME "simd128-relaxed"
#else
#define FAMILY_NAME "simd128"
#endif

/* ---- entry points: tiles of up to 4 tokens (Q4_K, Q6_K: 2), then single ones */

static void gemm_q4_0(const uint8_t *grp, const sl_gemm_act *a, int32_t t0, int32_t n, float *y, size_t ldy, int valid) {
    int32_t t = 0;
#if defined(__wasm_relaxed_simd__)
    for (; t + 4 <= n; t += 4) q4_0_tile_relaxed(grp, a, t0 + t, 4, y + (size_t)t * ldy, ldy, valid);
    for (; t < n; t++) q4_0_tile_relaxed(grp, a, t0 + t, 1, y + (size_t)t * ldy, ldy, valid);
#else
    for (; t + 4 <= n; t += 4) q8_0_family_tile(true, grp, a, t0 + t, 4, y + (size_t)t * ldy, ldy, valid);
    for (; t < n; t++) q8_0_family_tile(true, grp, a, t0 + t, 1, y + (size_t)t * ldy, ldy, valid);
#endif
}

static void gemm_q8_0(const uint8_t *grp, const sl_gemm_act *a, int32_t t0, int32_t n, float *y, size_t ldy, int valid) {
    int32_t t = 0;
    for (; t + 4 <= n; t += 4) q8_0_family_tile(false, grp, a, t0 + t, 4, y + (size_t)t * ldy, ldy, valid);
    for (; t < n; t++) q8_0_family_tile(false, grp, a, t0 + t, 1, y + (size_t)t * ldy, ldy, valid);
}

static void gemm_q4_K(const uint8_t *grp, const sl_gemm_act *a, int32_t t0, int32_t n, float *y, size_t ldy, int valid) {
    int32_t t = 0;
#if defined(__wasm_relaxed_simd__)
    for (; t + 2 <= n; t += 2) q4_K_tile_relaxed(grp, a, t0 + t, 2, y + (size_t)t * ldy, ldy, valid);
    for (; t < n; t++) q4_K_tile_relaxed(grp, a, t0 + t, 1, y + (size_t)t * ldy, ldy, valid);
#else
    for (; t + 2 <= n; t += 2) q4_K_tile(grp, a, t0 + t, 2, y + (size_t)t * ldy, ldy, valid);
    for (; t < n; t++) q4_K_tile(grp, a, t0 + t, 1, y + (size_t)t * ldy, ldy, valid);
#endif
}

static void gemm_q6_K(const uint8_t *grp, const sl_gemm_act *a, int32_t t0, int32_t n, float *y, size_t ldy, int valid) {
    int32_t t = 0;
#if defined(__wasm_relaxed_simd__)
    for (; t + 2 <= n; t += 2) q6_K_tile_relaxed(grp, a, t0 + t, 2, y + (size_t)t * ldy, ldy, valid);
    for (; t < n; t++) q6_K_tile_relaxed(grp, a, t0 + t, 1, y + (size_t)t * ldy, ldy, valid);
#else
    for (; t + 2 <= n; t += 2) q6_K_tile(grp, a, t0 + t, 2, y + (size_t)t * ldy, ldy, valid);
    for (; t < n; t++) q6_K_tile(grp, a, t0 + t, 1, y + (size_t)t * ldy, ldy, valid);
#endif
}

const sl_gemm_kernels sl_gemm_simd128 = {
    .name = FAMILY_NAME,
    .group_rows = G,
    .want_q16 = true,
    .layout = {
        [SL_TYPE_Q4_0] = SL_GEMM_Q4_0_F32, [SL_TYPE_Q8_0] = SL_GEMM_Q8_0_F32,
        [SL_TYPE_Q4_K] = SL_GEMM_Q4_K_F32, [SL_TYPE_Q6_K] = SL_GEMM_Q6_K_I8,
    },
    .fn = {
        [SL_TYPE_Q4_0] = gemm_q4_0, [SL_TYPE_Q8_0] = gemm_q8_0,
        [SL_TYPE_Q4_K] = gemm_q4_K, [SL_TYPE_Q6_K] = gemm_q6_K,
    },
};

#endif
