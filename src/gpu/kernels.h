/* kernels.h - WGSL compute kernels, generated as text from templates: one
 * kernel per op, specialised by weight format and by the shapes baked in as
 * constants. Every kernel accumulates in f32 and needs nothing beyond core
 * WebGPU (workgroups of at most 256 invocations, 16 KiB of workgroup memory),
 * except that an f16 KV cache (kv_f16) needs shader-f16.
 *
 * Weights of the formats with a GPU layout (gpu/layout.h: Q4_0, Q8_0, Q4_K,
 * Q6_K) are read in that layout as array<vec4<u32>> (raw_layout: as stored
 * in the file, like the others); the other formats from array<u32> with
 * byte extraction, so GGUF blocks of any size (18, 34, 210 bytes...) need no
 * alignment. Each format provides one function: the 8 consecutive elements
 * of a row that start at an element index divisible by 8, dequantized
 * exactly as the C reference does (src/quant/quant_ref.c).
 *
 * Every kernel binds the step uniform at binding 0:
 *   struct Step { n_tokens: u32, pos0: u32, n_kv: u32, pad: u32 }
 * n_tokens: tokens of this step; pos0: position of the first; n_kv = pos0 +
 * n_tokens. Bindings per kernel (r = read-only storage, rw = read_write):
 *   MATVEC, MATMUL  1 W r (a chunk of rows), 2 X r [tokens][cols],
 *                   3 Y rw [tokens][out_stride], 4 A r (epilogue BIAS: [rows]; SILU_MUL: like Y)
 *   EMBED           1 W r, 2 tokens r (u32), 3 Y rw [tokens][cols]
 *   RMSNORM         1 X r, 2 Y rw, 3 weight r
 *   ROPE_Q          1 Q rw [tokens][n_head*head_dim], 2 rope r, 3 q_norm r (if qk_norm)
 *   ROPE_KV         1 K r, 2 V r, 3 K cache rw, 4 V cache rw, 5 rope r, 6 k_norm r (if qk_norm)
 *   ATTN_DECODE     1 Q r, 2 K cache r, 3 V cache r, 4 partials rw
 *   ATTN_MERGE      1 partials r, 2 out rw
 *   ATTN_PREFILL    1 Q r, 2 K cache r, 3 V cache r, 4 out rw
 *   QKV             1 arena rw (X in, Q out), 2 vectors r (norm, biases), 3 Wq r, 4 Wk r, 5 Wv r,
 *                   6 K cache rw, 7 V cache rw, 8 rope r
 *   FFN_IN          1 arena rw (X in, silu(gate)*up out), 2 vectors r (norm), 3 Wgate r, 4 Wup r
 *   ARGMAX_PART     1 logits r (n floats), 2 partials rw (vec2<u32>: the value's bits, the id)
 *   ARGMAX_FINAL    1 partials r (n of them), 2 tokens rw (u32: the id at index 0)
 * MATVEC with `norm` reads X un-normed and binds the norm weight at 4.
 * Activation inputs are declared read_write too (they share the arena
 * buffer with the outputs; WebGPU forbids mixing read-only and writable
 * uses of one buffer in a dispatch). The rope table is [n_ctx][n_rot/2] pairs (cos, sin); caches are
 * [n_ctx][n_head_kv*head_dim] (f32, or f16 with kv_f16); partials [n_head][n_splits][2 + head_dim]
 * (max score, sum of exps, weighted sum of V). */
#ifndef SL_GPU_KERNELS_H
#define SL_GPU_KERNELS_H

#include "model/model.h"

typedef enum sl_gpu_kernel {
    SL_GK_MATVEC,       /* y = W x, x the token at row n_tokens-1 of X; y goes to row 0 of Y */
    SL_GK_MATMUL,       /* Y[t] = W X[t] for t < n_tokens, tiled (tokens x rows per workgroup) */
    SL_GK_EMBED,        /* Y[t] = row tokens[t] of the matrix, when it is in this chunk */
    SL_GK_RMSNORM,      /* Y[t] = X[t] / rms(X[t]) * weight */
    SL_GK_ROPE_Q,       /* per-head norm (optional) and RoPE of Q, in place */
    SL_GK_ROPE_KV,      /* the same for K, stored with V at cache rows pos0 + t */
    SL_GK_ATTN_DECODE,  /* one token: one workgroup per (head, split of keys_per_split keys) */
    SL_GK_ATTN_MERGE,   /* combines the splits of each head */
    SL_GK_ATTN_PREFILL, /* one workgroup per (head, token), causal, online softmax */
    SL_GK_QKV,          /* decode, fused: RMSNorm, Q/K/V mat-vecs (+ biases), RoPE, K/V stored */
    SL_GK_FFN_IN,       /* decode, fused: RMSNorm, gate and up mat-vecs, silu(gate) * up */
    SL_GK_ARGMAX_PART,  /* greedy sampling: the largest of each 4096 logits (first on ties) */
    SL_GK_ARGMAX_FINAL, /* the largest of those: the id, into the tokens buffer (the next step's input) */
    SL_GK_COUNT
} sl_gpu_kernel;

/* Which weight matrices take their format's GPU layout (gpu/layout.h); the
 * others are read as stored in the file. */
typedef enum sl_gpu_layouts {
    SL_GPU_LAYOUTS_FAST, /* the default: formats whose layout kernels measured faster (Q4_0, Q8_0;
                          * the engine takes ALL when the int8 token is on) */
    SL_GPU_LAYOUTS_NONE, /* every matrix as stored */
    SL_GPU_LAYOUTS_ALL,  /* every format with a layout (also Q4_K, Q6_K: tests, tuning) */
} sl_gpu_layouts;

typedef enum sl_gpu_epilogue {
    SL_EPI_NONE,
    SL_EPI_BIAS,     /* + A[row] */
    SL_EPI_ADD,      /* Y += result (residual) */
    SL_EPI_SILU_MUL, /* Y = silu(A) * result (A: the gate, same layout as Y) */
} sl_gpu_epilogue;

typedef struct sl_gpu_kernel_desc {
    sl_gpu_kernel kernel;
    /* MATVEC, MATMUL, EMBED: a chunk of `rows` rows starting at row `row0` */
    sl_type type;
    uint32_t cols, rows, row0;
    uint32_t out_stride;        /* floats per row of Y (the whole matrix's rows) */
    sl_gpu_epilogue epilogue;
    /* RMSNORM; ARGMAX_PART: logits; ARGMAX_FINAL: partials */
    uint32_t n;
    float eps;                  /* RMSNORM, ROPE_* with qk_norm */
    /* ROPE_*, ATTN_* */
    uint32_t n_head, n_head_kv, head_dim, n_rot;
    sl_rope_kind rope_kind;
    bool qk_norm;
    uint32_t keys_per_split, n_splits; /* ATTN_DECODE, ATTN_MERGE */
    bool attn_direct;           /* ATTN_DECODE with one split: writes the output (binding 4), no merge */
    /* MATVEC: RMSNorm of X (eps) times the weight at binding 4 first, computed
     * by every workgroup (the separate RMSNorm dispatch saved) */
    bool norm;
    /* QKV, FFN_IN: cols = n_embd; types of the second and third matrices (K, V;
     * up); rows = n_ff (FFN_IN); offsets in floats: of X and of the output in
     * the arena, of the norm weight and the biases (has_bias) in the vectors */
    sl_type type2, type3;
    uint32_t x_off, y_off, g_off, bias_off[3];
    bool has_bias;
    /* Which formats are read in their GPU layout (gpu/layout.h); the uploads
     * must match. */
    sl_gpu_layouts layouts;
    /* MATVEC, QKV, FFN_IN: the device's workgroup memory (bytes; 0: WebGPU's
     * default 16 KiB): the token is kept there when it fits. Tuning (0:
     * defaults): rows per invocation (MATVEC, FFN_IN; at most 4), units of a
     * row per invocation (a unit: 32 elements of Q4_0/Q8_0, 128 of Q4_K/Q6_K,
     * 8 of the others), the fewest workgroups worth fewer rows per invocation. */
    uint32_t max_wg_storage;
    uint32_t mv_rows, mv_units, mv_min_wgs;
    /* MATMUL with the int8 token (int8_dot, a matrix in a GPU layout): tile
     * tuning (0: defaults, 64 tokens x 64 rows, 2 tokens per invocation;
     * see sl_gpu_matmul_tuning_ok) */
    uint32_t mm_tokens, mm_rows, mm_inv_tokens;
    /* MATVEC, QKV, FFN_IN: matrices in a GPU layout (Q4_0, Q8_0, Q4_K,
     * Q6_K) take the token as int8 (per 32 elements a scale and the sum, like
     * llama.cpp's Q8_1, and the sums of each 16, quantized by every workgroup
     * into workgroup memory) and dot4I8Packed (WGSL language feature
     * packed_4x8_integer_dot_product), where that fits workgroup memory; else
     * the f32 token as without. MATMUL: the same for matrices in a layout,
     * each workgroup quantizing the tokens of its tile 32 columns at a time. */
    bool int8_dot;
    /* Workgroup sums and maxima through subgroup operations (the device has
     * the subgroups feature and WGSL the subgroup_id builtin); else through
     * workgroup memory only. */
    bool subgroups;
    /* With subgroups: the device's smallest subgroup size (0: unknown). The
     * mat-vecs sum a row's partial dots by subgroup shuffles where its
     * invocations fit one subgroup, and quantize the int8 token 4 lanes per
     * block of 32 from 4 on. */
    uint32_t subgroup_min;
    /* ROPE_KV, ATTN_DECODE, ATTN_PREFILL: the K and V caches hold f16
     * (`enable f16;`: the device must have shader-f16); ROPE_KV rounds what
     * it stores, the attention kernels widen what they read and accumulate
     * in f32. Other kernels ignore it. */
    bool kv_f16;
} sl_gpu_kernel_desc;

/* Formats with kernels: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0,
 * Q2_K..Q6_K, IQ4_NL. */
bool sl_gpu_type_supported(sl_type t);

/* The WGSL source (malloc'd, NUL-terminated), or NULL with err set. */
char *sl_gpu_kernel_wgsl(const sl_gpu_kernel_desc *d, sl_error *err);

/* Workgroups to dispatch for n_tokens tokens (for MATVEC: rows, folded into
 * two dimensions under max_per_dim). */
void sl_gpu_kernel_grid(const sl_gpu_kernel_desc *d, uint32_t n_tokens, uint32_t n_splits,
                        uint32_t max_per_dim, uint32_t grid[3]);

/* Whether an int8 mat-mul tile tuning is valid (all 0: the defaults):
 * tokens per tile 32, 64, 128 or 256; rows per tile a multiple of 16 up to
 * 256; tokens per invocation dividing the tile's, with the 256 invocations
 * covering the tile (rows per invocation = tokens * rows / 256 / tokens per
 * invocation, at most 64 results per invocation) and the tiles fitting
 * max_wg_storage bytes of workgroup memory (0: 16 KiB). */
bool sl_gpu_matmul_tuning_ok(uint32_t tokens, uint32_t rows, uint32_t inv_tokens, uint32_t max_wg_storage);

/* Partials of ARGMAX_PART over n logits (its workgroups). */
uint32_t sl_gpu_argmax_parts(uint32_t n_logits);

/* Number of bindings the kernel declares (including the step uniform). */
int sl_gpu_kernel_n_bindings(const sl_gpu_kernel_desc *d);

#endif
