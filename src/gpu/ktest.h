/* ktest.h - testing one WebGPU kernel against a CPU reference: random
 * inputs (weights quantized by the C quantizer), the kernel run through the
 * bridge exactly as the engine runs it (rows split into chunks when asked),
 * and the reference computed in double precision over the dequantized
 * weights. Two calls, like an evaluation: begin submits and starts the
 * read-back; after the host awaited the bridge, end compares. */
#ifndef SL_GPU_KTEST_H
#define SL_GPU_KTEST_H

#include "gpu/kernels.h"

typedef struct sl_gpu_ktest_spec {
    sl_gpu_kernel kernel;     /* ATTN_DECODE also runs ATTN_MERGE */
    sl_type type;             /* MATVEC, MATMUL, EMBED */
    int32_t rows, cols;       /* weights; RMSNORM: cols = length */
    int32_t n_tokens;
    sl_gpu_epilogue epilogue;
    int32_t n_head, n_head_kv, head_dim, n_rot;
    sl_rope_kind rope_kind;
    bool qk_norm;
    int32_t pos0;             /* position of the first token (ROPE_*, ATTN_*) */
    int32_t chunk_rows;       /* > 0: split the weights into chunks of about this many rows */
    bool kv_f16;              /* ROPE_KV, ATTN_*: f16 K/V caches (the device must have shader-f16);
                                 the reference sees the cache values rounded to f16 as the GPU stores them */
    uint64_t seed;
    /* weights (MATVEC, MATMUL, EMBED): as stored in the file instead of the
     * format's GPU layout (gpu/layout.h) as `layouts` says; else uploaded through the layout's
     * permutation in pieces of `piece` bytes (a multiple of 4; 0: whole),
     * the last piece first when pieces_reversed */
    sl_gpu_layouts layouts;
    uint32_t piece;
    bool pieces_reversed;
    uint32_t mv_rows, mv_units, mv_min_wgs; /* mat-vec tuning (kernels.h) */
    bool norm;                /* MATVEC: RMSNorm of the token (eps 1e-5) times a random weight first */
    bool int8;                /* MATVEC, MATMUL: int8 token for matrices in a GPU layout (kernels.h; the device
                                 must have dot4I8Packed) */
    uint32_t mm_tokens, mm_rows, mm_inv_tokens; /* int8 mat-mul tile tuning (kernels.h) */
} sl_gpu_ktest_spec;

typedef struct sl_gpu_ktest_result {
    double nrmse;             /* rms(gpu - ref) / rms(ref) */
    double max_abs;           /* largest |gpu - ref| */
    double ref_rms;
    int64_t n;                /* values compared */
} sl_gpu_ktest_result;

typedef struct sl_gpu_ktest sl_gpu_ktest;

sl_gpu_ktest *sl_gpu_ktest_begin(const sl_gpu_ktest_spec *s, sl_error *err);
/* Compares and frees t. */
int sl_gpu_ktest_end(sl_gpu_ktest *t, sl_gpu_ktest_result *r, sl_error *err);

#endif
