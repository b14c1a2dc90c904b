/* synth.h - random-weight models with the shapes of real ones (`streamllm synth`).
 *
 * A synthesized model has a real architecture's hyperparameters and tensor
 * shapes, llama.cpp's per-tensor quantization choices for a preset such as
 * Q4_K_M, and random weights. It is for benchmarks (speed does not depend on
 * the weight values) and for self-contained tests. The file is a function of
 * (shape, preset, seed, layer count, vocabulary) only: every weight comes from
 * a counter-based generator keyed by (seed, tensor name, row), so the thread
 * count does not change a byte. Tensors are generated and quantized one at a
 * time, rows in parallel, so memory stays bounded by the largest tensor. */
#ifndef SL_SYNTH_H
#define SL_SYNTH_H

#include "cpu/threadpool.h"
#include "model/model.h"

/* A real model's shape, from its config.json. */
typedef struct sl_synth_shape {
    const char *name;          /* --like name: "llama-3.2-1b" */
    const char *model_name;    /* the model it imitates, for general.name */
    sl_arch arch;
    int32_t n_vocab;           /* replaced by the vocabulary's size with --vocab */
    int32_t n_embd;
    int32_t n_layer;
    int32_t n_head;
    int32_t n_head_kv;
    int32_t head_dim;          /* 0: n_embd / n_head */
    int32_t n_ff;
    int32_t n_ctx_train;
    float rms_eps;
    float rope_base;
    bool tied;                 /* no output.weight: the head reuses token_embd */
    /* Llama 3.1-style rope scaling (rope_type "llama3"), stored as
     * rope_freqs.weight; factor 0 means none. */
    float rope_factor;
    float rope_low_freq_factor;
    float rope_high_freq_factor;
    int32_t rope_orig_ctx;     /* original_max_position_embeddings */
} sl_synth_shape;

int sl_synth_n_shapes(void);
const sl_synth_shape *sl_synth_shape_at(int i);
/* Case-insensitive; NULL when unknown. */
const sl_synth_shape *sl_synth_find_shape(const char *name);

/* A llama.cpp quantization preset (what llama-quantize calls a file type). */
typedef struct sl_synth_preset {
    const char *name;          /* "Q4_K_M" */
    uint32_t ftype;            /* llama.cpp's LLAMA_FTYPE value, written as general.file_type */
    sl_type base;              /* the type most matrices get */
} sl_synth_preset;

int sl_synth_n_presets(void);
const sl_synth_preset *sl_synth_preset_at(int i);
/* Case-insensitive; also llama-quantize's aliases Q3_K, Q4_K, Q5_K (= *_M).
 * NULL when unknown. */
const sl_synth_preset *sl_synth_find_preset(const char *name);

/* What a tensor is, for the per-tensor type rules. */
typedef enum sl_synth_role {
    SL_SYNTH_TOKEN_EMBD,
    SL_SYNTH_OUTPUT,
    SL_SYNTH_ATTN_Q,
    SL_SYNTH_ATTN_K,
    SL_SYNTH_ATTN_V,
    SL_SYNTH_ATTN_OUT,
    SL_SYNTH_FFN_GATE,
    SL_SYNTH_FFN_UP,
    SL_SYNTH_FFN_DOWN,
    SL_SYNTH_VECTOR,           /* norms, biases, rope factors: always F32 */
} sl_synth_role;

/* The type llama.cpp's quantizer gives a tensor (llama_tensor_get_type):
 * `layer` of `n_layer`, n_gqa = n_head / n_head_kv, ncols = row length,
 * tied = the model has no output.weight. Includes its fallbacks for rows that
 * are not a multiple of the block size (e.g. Q4_K -> Q5_0 for 896 columns). */
sl_type sl_synth_tensor_type(const sl_synth_preset *p, sl_synth_role role, int layer, int n_layer,
                             int n_gqa, int64_t ncols, bool tied);

/* Called after each chunk of rows with the tensor bytes done so far. */
typedef void (*sl_synth_progress_fn)(void *ctx, uint64_t bytes_done, uint64_t bytes_total);

typedef struct sl_synth_params {
    const sl_synth_shape *shape;
    const sl_synth_preset *preset;
    uint64_t seed;
    int32_t n_layer;           /* > 0: replaces the shape's layer count */
    const sl_gguf *vocab;      /* copy its tokenizer.* keys and size; NULL: synthetic vocabulary */
    sl_pool *pool;             /* NULL: everything on the calling thread */
    sl_synth_progress_fn progress; /* may be NULL */
    void *progress_ctx;
} sl_synth_params;

/* Size of the vocabulary in a GGUF's tokenizer.ggml.tokens. */
int sl_synth_vocab_size(const sl_gguf *vocab, int32_t *n_vocab, sl_error *err);

/* Writes the model to a GGUF file (streamed, one tensor in memory at a time). */
int sl_synth_write_file(const sl_synth_params *p, const char *path, sl_error *err);
/* The same into a malloc'd buffer (tests, small models). */
int sl_synth_write_memory(const sl_synth_params *p, void **out, size_t *out_size, sl_error *err);

#endif
