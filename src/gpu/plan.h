/* plan.h - the static GPU memory plan: before any weight is uploaded, every
 * GPU buffer the WebGPU engine will create and its size, from the model's
 * hyperparameters and tensor infos alone (a header-only GGUF is enough).
 *
 * Buffers:
 * - weights: one buffer per chunk of whole rows of each matrix; a matrix
 *   larger than one storage binding is split into several chunks (never
 *   refused). Chunk sizes are multiples of 4 bytes so uploads stay aligned;
 *   their buffers are rounded up to 16 bytes (read as vec4<u32>), and the
 *   formats of gpu/layout.h hold their blocks permuted (same size).
 * - vectors: norms and biases as f32, plus RoPE's per-pair inverse
 *   frequencies, packed at aligned offsets in one buffer.
 * - rope: cos/sin of every (position, pair), [n_ctx][n_rot/2][2] f32.
 * - kv: per layer, a K and a V cache of [n_ctx][n_head_kv*head_dim] f32, or
 *   f16 (half the bytes) when asked and the device has shader-f16.
 * - activations: one arena; each activation of a step lives from the op that
 *   writes it to the last op that reads it, and activations whose lifetimes
 *   do not overlap share bytes (first fit, largest first).
 * - logits [n_out][n_vocab] f32 and the readback staging buffer of the
 *   same size, the step uniform and the token ids of a step.
 *
 * On-demand mode (params.on_demand): when everything does not fit the
 * budget, layers [0, n_resident) keep their own weight buffers and the
 * matrices of layers [n_resident, n_layer) share one set of "stream" buffers
 * (per matrix role and chunk, as large as the largest layer needs), refilled
 * from the host before each of those layers runs (gpu.h). Norms, biases, KV
 * caches and everything else stay resident. */
#ifndef SL_GPU_PLAN_H
#define SL_GPU_PLAN_H

#include "gpu/kernels.h"
#include "model/model.h"

/* What the device offers (from the adapter's limits and features). */
typedef struct sl_gpu_caps {
    uint64_t max_binding;         /* maxStorageBufferBindingSize */
    uint64_t max_buffer;          /* maxBufferSize */
    uint32_t max_invocations;     /* maxComputeInvocationsPerWorkgroup */
    uint32_t max_wg_storage;      /* maxComputeWorkgroupStorageSize */
    uint32_t max_workgroups;      /* maxComputeWorkgroupsPerDimension */
    uint32_t storage_align;       /* minStorageBufferOffsetAlignment */
    uint32_t max_storage_buffers; /* maxStorageBuffersPerShaderStage */
    bool has_f16, has_subgroups;
    bool has_subgroup_id;         /* WGSL's subgroup_id / num_subgroups builtins */
    bool has_dot4;                /* WGSL's dot4I8Packed and pack4xI8 */
    uint32_t subgroup_min;        /* the smallest subgroup size (0: unknown) */
} sl_gpu_caps;

/* WebGPU's default limits: what every device offers. */
sl_gpu_caps sl_gpu_default_caps(void);

typedef struct sl_gpu_params {
    int32_t n_ctx;        /* KV cache length; <= 0: min(n_ctx_train, 4096) */
    int32_t n_batch;      /* tokens per prefill step; <= 0: 256; capped at n_ctx */
    int32_t n_out;        /* logits rows one step can return; <= 0: 1 (the last token) */
    uint64_t budget;      /* bytes the plan may use; 0: no limit */
    uint64_t max_binding; /* > 0: use this binding limit instead of the device's (tests) */
    bool on_demand;       /* over the budget: stream layers instead of refusing */
    bool kv_f16;          /* f16 K/V caches when the device has shader-f16 (else f32) */
    sl_gpu_layouts layouts; /* which formats take their GPU layouts (kernels.h, gpu/layout.h) */
    uint32_t mv_rows, mv_units, mv_min_wgs; /* mat-vec tuning (kernels.h; 0: defaults) */
    uint32_t mm_tokens, mm_rows, mm_inv_tokens; /* int8 mat-mul tile tuning (kernels.h; 0: defaults) */
    bool int8;            /* int8 token for mat-vecs of matrices in a GPU layout where WGSL has
                           * dot4I8Packed (kernels.h); with it, FAST layouts means ALL */
} sl_gpu_params;

/* Read-back slots of greedy decoding on the GPU (gpu.h: sl_gpu_greedy_begin). */
enum { SL_GPU_GREEDY_SLOTS = 32 };

typedef enum sl_gpu_buf_kind {
    SL_GPU_BUF_WEIGHT,
    SL_GPU_BUF_VECTORS,
    SL_GPU_BUF_ROPE,
    SL_GPU_BUF_KV,
    SL_GPU_BUF_ACTIVATIONS,
    SL_GPU_BUF_LOGITS,
    SL_GPU_BUF_STAGING,
    SL_GPU_BUF_UNIFORM,
    SL_GPU_BUF_TOKENS,
    SL_GPU_BUF_KIND_COUNT
} sl_gpu_buf_kind;

typedef struct sl_gpu_buffer_plan {
    sl_gpu_buf_kind kind;
    int usage;              /* WG_USAGE_* (gpu/bridge.h) */
    uint64_t size;          /* bytes, a multiple of 4 */
    char name[80];
} sl_gpu_buffer_plan;

/* Rows [row0, row0 + rows) of a matrix, bytes [offset, offset + bytes) of
 * its tensor data, held at the start of buffer `buffer`. */
typedef struct sl_gpu_chunk {
    int32_t buffer;
    int64_t row0, rows;
    uint64_t offset, bytes;
} sl_gpu_chunk;

typedef struct sl_gpu_tensor_plan {
    char name[SL_GGUF_MAX_NAME];
    sl_type type;           /* as in the file */
    int64_t cols, rows;
    uint64_t row_bytes, nbytes;
    bool is_vector;         /* stored as f32 in the vectors buffer */
    int32_t layer;          /* blk.N tensors: N; others: -1 */
    bool streamed;          /* a matrix of a streamed layer: its chunks are in the stream buffers */
    int32_t first_chunk, n_chunks; /* matrices: plan->chunks[first_chunk..] */
    uint64_t vec_offset;    /* vectors: byte offset in the vectors buffer (cols * 4 bytes) */
} sl_gpu_tensor_plan;

/* The activations of one step, in the arena. */
typedef enum sl_gpu_act {
    SL_ACT_X,      /* [n_batch][n_embd] residual stream: the whole step */
    SL_ACT_XB_ATT, /* [n_batch][n_embd] normed input of attention */
    SL_ACT_Q,      /* [n_batch][n_head*head_dim] */
    SL_ACT_K,      /* [n_batch][n_head_kv*head_dim] */
    SL_ACT_V,
    SL_ACT_PART,   /* decode attention partials [n_head][n_splits][head_dim + 2] */
    SL_ACT_ATT,    /* [n_batch][n_head*head_dim] attention output */
    SL_ACT_XB_FFN, /* [n_batch][n_embd] normed input of the FFN */
    SL_ACT_GATE,   /* [n_batch][n_ff] */
    SL_ACT_UP,     /* [n_batch][n_ff] silu(gate) * up */
    SL_ACT_XB_OUT, /* [n_batch][n_embd] final norm */
    SL_ACT_COUNT
} sl_gpu_act;

typedef struct sl_gpu_act_plan {
    const char *name;
    uint64_t offset, size;  /* in the arena; offset aligned for binding */
    int first, last;        /* ops of a layer (see plan.c) during which it lives */
} sl_gpu_act_plan;

typedef struct sl_gpu_plan {
    sl_hparams hp;
    int32_t n_ctx, n_batch, n_out;
    sl_gpu_caps caps;       /* max_binding already lowered to params->max_binding */
    bool tied;              /* the output head is token_embd */
    bool kv_f16;            /* the K/V caches hold f16 (asked, and the device has shader-f16) */
    int32_t attn_keys_per_split; /* decode attention: keys per workgroup */
    int32_t n_splits;       /* ceil(n_ctx / attn_keys_per_split) */
    int32_t n_resident;     /* layers with their own weight buffers; n_layer unless on demand */
    uint64_t stream_bytes;  /* weight bytes re-uploaded per pass through the layers (on demand) */

    sl_gpu_buffer_plan *buffers;
    int n_buffers;
    sl_gpu_tensor_plan *tensors;
    int n_tensors;
    sl_gpu_chunk *chunks;
    int n_chunks;
    sl_gpu_act_plan acts[SL_ACT_COUNT];

    int32_t buf_vectors, buf_rope, buf_act, buf_logits, buf_staging, buf_uniform, buf_tokens;
    /* greedy decoding on the GPU (gpu.h): the argmax's partials (kind LOGITS),
     * SL_GPU_GREEDY_SLOTS 4-byte id read-back slots (kind STAGING) */
    int32_t buf_argmax, buf_greedy[SL_GPU_GREEDY_SLOTS];
    int32_t *buf_k, *buf_v; /* [n_layer] */
    uint64_t rope_freq_offset; /* rope_inv_freq [n_rot/2] f32 in the vectors buffer */

    uint64_t total;
    uint64_t by_kind[SL_GPU_BUF_KIND_COUNT];
} sl_gpu_plan;

/* Builds the plan. The tensors the engine uses must be in g with shapes that
 * match hp; their data is not needed. Fails with a clear message when the
 * total exceeds params->budget (with on_demand: when it does so even with a
 * single layer's matrices on the GPU at a time; otherwise as many leading
 * layers stay resident as fit), or when a single row, a layer's KV cache or
 * the RoPE table cannot fit one binding. */
sl_gpu_plan *sl_gpu_plan_build(const sl_gguf *g, const sl_hparams *hp, const sl_gpu_params *params,
                               const sl_gpu_caps *caps, sl_error *err);
void sl_gpu_plan_free(sl_gpu_plan *p);

/* The tensor plan of a GGUF tensor name, or NULL. */
const sl_gpu_tensor_plan *sl_gpu_plan_find(const sl_gpu_plan *p, const char *name);

/* One line: "gpu plan: 123.4 MiB (weights ..., kv ..., activations ..., ...)". */
char *sl_gpu_plan_summary(const sl_gpu_plan *p, char *buf, size_t cap);

const char *sl_gpu_buf_kind_name(sl_gpu_buf_kind k);

#endif
