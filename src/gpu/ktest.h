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
