/* simd128.h - wasm SIMD128 helpers shared by the quant kernels
 * (quant_wasm.c) and the blocked matrix kernels (cpu/gemm_wasm.c). */
#ifndef SL_QUANT_SIMD128_H
#define SL_QUANT_SIMD128_H

#if defined(__wasm_simd128__)
#include <wasm_simd128.h>

/* Four f16 values (u16 lanes 0..3 of h) as f32, exactly (inf and NaN too),
 * without arithmetic on subnormal floats: x86 takes a slow microcode path
 * for those, and wasm cannot flush them (Q6_K super-block scales of small
 * weights, e.g. a token embedding, are mostly f16 subnormals: a multiply
 * by 2^112 to rebias them ran the whole kernel 2x slower). Normal values
 * are rebiased in the exponent bits; subnormals are their 10-bit mantissa
 * times 2^-24, a normal float; inf/NaN get exponent 255. */
static inline v128_t sl_f16x4_to_f32(v128_t h) {
    const v128_t u = wasm_u32x4_extend_low_u16x8(h);
    const v128_t em = wasm_v128_and(u, wasm_i32x4_splat(0x7fff));
    const v128_t normal = wasm_i32x4_add(wasm_i32x4_shl(em, 13), wasm_i32x4_splat(112 << 23));
    const v128_t subnormal = wasm_f32x4_mul(wasm_f32x4_convert_i32x4(em), wasm_f32x4_splat(0x1p-24f));
    v128_t f = wasm_v128_bitselect(subnormal, normal, wasm_i32x4_lt(em, wasm_i32x4_splat(0x400)));
    f = wasm_v128_or(f, wasm_v128_and(wasm_i32x4_gt(em, wasm_i32x4_splat(0x7bff)), wasm_i32x4_splat(0x7f800000)));
    return wasm_v128_or(f, wasm_i32x4_shl(wasm_v128_and(u, wasm_i32x4_splat(0x8000)), 16));
}

#endif
#endif
