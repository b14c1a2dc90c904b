/* matmul.h - the matrix products of the CPU forward pass, y = x . W^T.
 *
 * A product quantizes its input once (optionally RMS-normalizing it first)
 * and splits the weight rows over the thread pool, all inside one pool task.
 * Up to SL_MM_MAX_JOBS weights that share an input run together (Q/K/V,
 * gate/up), and an epilogue lets the caller finish each chunk of rows on the
 * thread that computed it (bias, RoPE, SwiGLU, residual add), so a layer
 * needs few pool round trips.
 *
 * Weights that a blocked kernel family supports (gemm.h: AVX-512 VNNI, wasm
 * SIMD128) are repacked when wrapped; others are used in place through
 * sl_vec_dot_multi. Results equal the scalar reference dot products up to
 * float rounding. */
#ifndef SL_CPU_MATMUL_H
#define SL_CPU_MATMUL_H

#include "cpu/threadpool.h"
#include "model/model.h"

struct sl_gemm_kernels;

/* A weight ready for products: the model's, and its packed copy if any. */
typedef struct sl_mm_weight {
    const sl_weight *w;
    const struct sl_gemm_kernels *k; /* NULL: rows in place */
    uint8_t *packed;                 /* [n_groups][group_bytes] */
    size_t group_bytes;
    int64_t n_groups;
} sl_mm_weight;

/* Wraps w, packing it (on the pool's threads) when a kernel family of this
 * CPU supports its type; pack false keeps the rows in place. */
int sl_mm_weight_init(sl_mm_weight *mw, const sl_weight *w, bool pack, sl_pool *pool, sl_error *err);
void sl_mm_weight_free(sl_mm_weight *mw);

/* Called after rows [row0, row1) of job `job` (or of every job, with job -1,
 * for joint products) are computed for all n tokens, on the computing thread. */
typedef void (*sl_mm_epilogue_fn)(void *ctx, int job, int32_t n, int64_t row0, int64_t row1);

enum { SL_MM_MAX_JOBS = 3 };

typedef struct sl_mm_job {
    const sl_mm_weight *w;
    float *y; /* [n][w->rows] */
} sl_mm_job;

typedef struct sl_mm_call {
    const float *x;        /* [n][cols] */
    int32_t n;
    const float *norm;     /* when set, x is RMS-normalized with these weights first ... */
    float norm_eps;
    float *norm_out;       /* ... into norm_out [n][cols] */
    sl_mm_job job[SL_MM_MAX_JOBS];
    int n_jobs;            /* every job's weight has `cols` columns */
    bool joint;            /* jobs have equal rows; a chunk covers the same rows of each */
    int64_t row_align;     /* chunk boundaries fall on multiples of this (0: any) */
    sl_mm_epilogue_fn epilogue; /* optional */
    void *epilogue_ctx;
} sl_mm_call;

/* Scratch for quantized activations. */
typedef struct sl_mm sl_mm;
sl_mm *sl_mm_new(void);
void sl_mm_free(sl_mm *mm);

/* Runs the product(s). Errors: out of memory. */
int sl_mm_run(sl_mm *mm, sl_pool *pool, const sl_mm_call *call, sl_error *err);

/* out = x / rms(x) * weight over n elements (the sum of squares in double, as ggml). */
void sl_rmsnorm(float *out, const float *x, const float *weight, int64_t n, float eps);

#endif
