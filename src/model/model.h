/* model.h - a loaded language model: architecture, hyperparameters, weights.
 *
 * The model is a description (hyperparameters from GGUF metadata, weight
 * tensors pointing into the mapped file) independent of where it runs; the
 * CPU backend (cpu/forward.h) and later the WebGPU backend evaluate it.
 * Supported architectures: llama (Llama 2/3/3.x, Mistral, TinyLlama, SmolLM),
 * qwen2 (QKV bias), qwen3 (per-head Q/K RMSNorm). */
#ifndef SL_MODEL_H
#define SL_MODEL_H

#include "gguf/gguf.h"
#include "quant/quant.h"
#include "tokenizer/tokenizer.h"

typedef enum sl_arch {
    SL_ARCH_LLAMA,
    SL_ARCH_QWEN2,
    SL_ARCH_QWEN3,
} sl_arch;

typedef enum sl_rope_kind {
    SL_ROPE_NORM, /* rotate pairs (2i, 2i+1): llama */
    SL_ROPE_NEOX, /* rotate pairs (i, i + n_rot/2): qwen2, qwen3 */
} sl_rope_kind;

typedef struct sl_hparams {
    sl_arch arch;
    int32_t n_vocab;
    int32_t n_ctx_train;
    int32_t n_embd;
    int32_t n_layer;
    int32_t n_head;
    int32_t n_head_kv;
    int32_t head_dim;     /* attention.key_length (= value_length), default n_embd / n_head */
    int32_t n_ff;
    int32_t n_rot;        /* rope.dimension_count, default head_dim */
    float rms_eps;
    float rope_base;
    float rope_freq_scale; /* 1 / rope.scaling.factor for linear scaling, else 1 */
    sl_rope_kind rope_kind;
} sl_hparams;

/* A weight matrix of `rows` rows, each `cols` elements of `type` (GGUF ne0 = cols). */
typedef struct sl_weight {
    const void *data;
    sl_type type;
    int64_t cols;
    int64_t rows;
    size_t row_bytes;
} sl_weight;

typedef struct sl_layer {
    sl_weight attn_norm;          /* [n_embd] f32 */
    sl_weight wq;                 /* [n_head*head_dim rows][n_embd] */
    sl_weight wk, wv;             /* [n_head_kv*head_dim rows][n_embd] */
    sl_weight wo;                 /* [n_embd rows][n_head*head_dim] */
    sl_weight bq, bk, bv;         /* qwen2 biases, data NULL otherwise */
    sl_weight q_norm, k_norm;     /* qwen3 per-head norms [head_dim], data NULL otherwise */
    sl_weight ffn_norm;           /* [n_embd] */
    sl_weight w_gate, w_up;       /* [n_ff rows][n_embd] */
    sl_weight w_down;             /* [n_embd rows][n_ff] */
} sl_layer;

typedef struct sl_model {
    sl_gguf *gguf;
    sl_hparams hp;
    sl_tokenizer *tok;
    char *name;                   /* general.name, or the file's base name */
    sl_weight tok_embd;           /* [n_vocab rows][n_embd] */
    sl_weight output_norm;        /* [n_embd] */
    sl_weight output;             /* [n_vocab rows][n_embd]; = tok_embd when tied */
    sl_layer *layers;             /* [n_layer] */
    float *rope_inv_freq;         /* [n_rot/2]: per-pair angular speed, scaling applied */
    char *chat_template;          /* tokenizer.chat_template or NULL */
    uint64_t n_params;
    uint64_t weight_bytes;
    float **owned_f32;            /* norm/bias vectors converted to f32 at load */
    int n_owned_f32;
    bool header_only;             /* tensor data absent (opened SL_GGUF_HEADER_ONLY): weight data NULL */
    bool rope_freqs_pending;      /* rope_freqs.weight exists but its data has not been given yet */
} sl_model;

/* Gives the rope_freqs.weight factors of a header-only model once they are
 * known (n = n_rot / 2), updating rope_inv_freq. */
int sl_model_set_rope_freqs(sl_model *m, const float *factors, int64_t n, sl_error *err);

/* Loads a model from a GGUF (or the first file of a split). */
sl_model *sl_model_load(const char *path, sl_error *err);
/* Builds a model over an already opened GGUF (takes ownership of g, also on
 * failure). g may be header-only: the model then describes the weights
 * (types, shapes) without their data, for backends that upload them. */
sl_model *sl_model_from_gguf(sl_gguf *g, const char *name_hint, sl_error *err);
void sl_model_free(sl_model *m);

const char *sl_arch_name(sl_arch a);
/* The most common weight type, e.g. "Q4_K" (for display; "Q4_K_M" mixes are shown by general.file_type). */
const char *sl_model_quant_name(const sl_model *m);

#endif
