/* synth.c - writing random-weight models with real architectures' shapes.
 *
 * Three tables drive everything: the shapes (real config.json values), the
 * quantization presets (llama.cpp file types), and the per-tensor type rules
 * of llama.cpp's quantizer (sl_synth_tensor_type). Weights are generated row
 * by row from a counter-based hash of (seed, tensor name, row, column), so the
 * bytes do not depend on how rows are spread over threads. */
#include "model/synth.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- shapes ------------------------------------------------------------- */

/* From each model's config.json (Instruct variants where base and instruct
 * differ in max_position_embeddings). The tiny shapes are for tests: n_embd
 * 256 so that K-quants apply without llama.cpp's small-row fallbacks. */
static const sl_synth_shape SHAPES[] = {
    /* name            model_name          arch           vocab   embd lay head kv  hd   ff     ctx     eps   rope_base tied  llama3 rope scaling */
    {"llama-3.2-1b",   "Llama-3.2-1B",     SL_ARCH_LLAMA, 128256, 2048, 16, 32, 8,  64,  8192, 131072, 1e-5f, 500000.0f, true,  32, 1, 4, 8192},
    {"llama-3.2-3b",   "Llama-3.2-3B",     SL_ARCH_LLAMA, 128256, 3072, 28, 24, 8,  128, 8192, 131072, 1e-5f, 500000.0f, true,  32, 1, 4, 8192},
    {"llama-3.1-8b",   "Llama-3.1-8B",     SL_ARCH_LLAMA, 128256, 4096, 32, 32, 8,  128, 14336, 131072, 1e-5f, 500000.0f, false, 8, 1, 4, 8192},
    {"llama-2-7b",     "Llama-2-7B",       SL_ARCH_LLAMA, 32000,  4096, 32, 32, 32, 128, 11008, 4096,  1e-5f, 10000.0f,  false, 0, 0, 0, 0},
    {"tinyllama-1.1b", "TinyLlama-1.1B",   SL_ARCH_LLAMA, 32000,  2048, 22, 32, 4,  64,  5632, 2048,   1e-5f, 10000.0f,  false, 0, 0, 0, 0},
    {"mistral-7b",     "Mistral-7B-v0.1",  SL_ARCH_LLAMA, 32000,  4096, 32, 32, 8,  128, 14336, 32768, 1e-5f, 10000.0f,  false, 0, 0, 0, 0},
    {"smollm2-135m",   "SmolLM2-135M",     SL_ARCH_LLAMA, 49152,  576,  30, 9,  3,  64,  1536, 8192,   1e-5f, 100000.0f, true,  0, 0, 0, 0},
    {"smollm2-360m",   "SmolLM2-360M",     SL_ARCH_LLAMA, 49152,  960,  32, 15, 5,  64,  2560, 8192,   1e-5f, 100000.0f, true,  0, 0, 0, 0},
    {"smollm2-1.7b",   "SmolLM2-1.7B",     SL_ARCH_LLAMA, 49152,  2048, 24, 32, 32, 64,  8192, 8192,   1e-5f, 130000.0f, true,  0, 0, 0, 0},
    {"qwen2.5-0.5b",   "Qwen2.5-0.5B",     SL_ARCH_QWEN2, 151936, 896,  24, 14, 2,  64,  4864, 32768,  1e-6f, 1e6f,      true,  0, 0, 0, 0},
    {"qwen2.5-1.5b",   "Qwen2.5-1.5B",     SL_ARCH_QWEN2, 151936, 1536, 28, 12, 2,  128, 8960, 32768,  1e-6f, 1e6f,      true,  0, 0, 0, 0},
    {"qwen2.5-7b",     "Qwen2.5-7B",       SL_ARCH_QWEN2, 152064, 3584, 28, 28, 4,  128, 18944, 32768, 1e-6f, 1e6f,      false, 0, 0, 0, 0},
    {"qwen3-0.6b",     "Qwen3-0.6B",       SL_ARCH_QWEN3, 151936, 1024, 28, 16, 8,  128, 3072, 40960,  1e-6f, 1e6f,      true,  0, 0, 0, 0},
    {"qwen3-1.7b",     "Qwen3-1.7B",       SL_ARCH_QWEN3, 151936, 2048, 28, 16, 8,  128, 6144, 40960,  1e-6f, 1e6f,      true,  0, 0, 0, 0},
    {"tiny",           "tiny",             SL_ARCH_LLAMA, 512,    256,  2,  4,  2,  64,  512,  2048,   1e-5f, 500000.0f, false, 8, 1, 4, 8192},
    {"tiny-qwen2",     "tiny-qwen2",       SL_ARCH_QWEN2, 512,    256,  2,  4,  2,  64,  512,  2048,   1e-6f, 1e6f,      false, 0, 0, 0, 0},
    {"tiny-qwen3",     "tiny-qwen3",       SL_ARCH_QWEN3, 512,    256,  2,  4,  2,  128, 512,  2048,   1e-6f, 1e6f,      true,  0, 0, 0, 0},
};

#define N_SHAPES ((int)(sizeof SHAPES / sizeof SHAPES[0]))

static int ascii_lower(int c) { return c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c; }

static bool same_name(const char *a, const char *b) {
    for (; *a && *b; a++, b++)
        if (ascii_lower((unsigned char)*a) != ascii_lower((unsigned char)*b)) return false;
    return *a == *b;
}

int sl_synth_n_shapes(void) { return N_SHAPES; }

const sl_synth_shape *sl_synth_shape_at(int i) { return i >= 0 && i < N_SHAPES ? &SHAPES[i] : NULL; }

const sl_synth_shape *sl_synth_find_shape(const char *name) {
    for (int i = 0; name && i < N_SHAPES; i++)
        if (same_name(name, SHAPES[i].name)) return &SHAPES[i];
    return NULL;
}

/* ---- presets ------------------------------------------------------------ */

/* llama.cpp's LLAMA_FTYPE values (include/llama.h), as general.file_type. */
enum {
    FT_ALL_F32 = 0, FT_F16 = 1, FT_Q4_0 = 2, FT_Q4_1 = 3, FT_Q8_0 = 7, FT_Q5_0 = 8, FT_Q5_1 = 9,
    FT_Q2_K = 10, FT_Q3_K_S = 11, FT_Q3_K_M = 12, FT_Q3_K_L = 13, FT_Q4_K_S = 14, FT_Q4_K_M = 15,
    FT_Q5_K_S = 16, FT_Q5_K_M = 17, FT_Q6_K = 18, FT_IQ4_NL = 25, FT_BF16 = 32,
};

static const sl_synth_preset PRESETS[] = {
    {"F32", FT_ALL_F32, SL_TYPE_F32},   {"F16", FT_F16, SL_TYPE_F16},
    {"BF16", FT_BF16, SL_TYPE_BF16},    {"Q4_0", FT_Q4_0, SL_TYPE_Q4_0},
    {"Q4_1", FT_Q4_1, SL_TYPE_Q4_1},    {"Q5_0", FT_Q5_0, SL_TYPE_Q5_0},
    {"Q5_1", FT_Q5_1, SL_TYPE_Q5_1},    {"Q8_0", FT_Q8_0, SL_TYPE_Q8_0},
    {"Q2_K", FT_Q2_K, SL_TYPE_Q2_K},    {"Q3_K_S", FT_Q3_K_S, SL_TYPE_Q3_K},
    {"Q3_K_M", FT_Q3_K_M, SL_TYPE_Q3_K}, {"Q3_K_L", FT_Q3_K_L, SL_TYPE_Q3_K},
    {"Q4_K_S", FT_Q4_K_S, SL_TYPE_Q4_K}, {"Q4_K_M", FT_Q4_K_M, SL_TYPE_Q4_K},
    {"Q5_K_S", FT_Q5_K_S, SL_TYPE_Q5_K}, {"Q5_K_M", FT_Q5_K_M, SL_TYPE_Q5_K},
    {"Q6_K", FT_Q6_K, SL_TYPE_Q6_K},    {"IQ4_NL", FT_IQ4_NL, SL_TYPE_IQ4_NL},
};

#define N_PRESETS ((int)(sizeof PRESETS / sizeof PRESETS[0]))

int sl_synth_n_presets(void) { return N_PRESETS; }

const sl_synth_preset *sl_synth_preset_at(int i) { return i >= 0 && i < N_PRESETS ? &PRESETS[i] : NULL; }

const sl_synth_preset *sl_synth_find_preset(const char *name) {
    if (!name) return NULL;
    /* llama-quantize's short names for the medium mixes */
    static const char *const aliases[][2] = {{"Q3_K", "Q3_K_M"}, {"Q4_K", "Q4_K_M"}, {"Q5_K", "Q5_K_M"}};
    for (size_t i = 0; i < sizeof aliases / sizeof aliases[0]; i++)
        if (same_name(name, aliases[i][0])) name = aliases[i][1];
    for (int i = 0; i < N_PRESETS; i++)
        if (same_name(name, PRESETS[i].name)) return &PRESETS[i];
    return NULL;
}

/* ---- per-tensor types (llama.cpp's src/llama-quant.cpp) ------------------ */

/* The layers llama.cpp gives more bits in the *_M mixes: the first and last
 * eighth, and every third layer in between. */
static bool use_more_bits(int layer, int n_layer) {
    return layer < n_layer / 8 || layer >= 7 * n_layer / 8 || (layer - n_layer / 8) % 3 == 2;
}

static int block_size(sl_type t) {
    const sl_type_info *ti = sl_type_get(t);
    return ti ? ti->block_size : 1;
}

/* A type whose block fits rows of ncols elements: llama.cpp's fallbacks. */
static sl_type compatible_type(sl_type t, int64_t ncols) {
    if (ncols % block_size(t) == 0) return t;
    sl_type r;
    switch (t) {
    case SL_TYPE_Q2_K: case SL_TYPE_Q3_K: r = SL_TYPE_Q4_0; break;
    case SL_TYPE_Q4_K: r = SL_TYPE_Q5_0; break;
    case SL_TYPE_Q5_K: r = SL_TYPE_Q5_1; break;
    case SL_TYPE_Q6_K: r = SL_TYPE_Q8_0; break;
    default: r = SL_TYPE_F16; break;
    }
    return ncols % block_size(r) == 0 ? r : SL_TYPE_F16;
}

sl_type sl_synth_tensor_type(const sl_synth_preset *p, sl_synth_role role, int layer, int n_layer,
                             int n_gqa, int64_t ncols, bool tied) {
    if (role == SL_SYNTH_VECTOR) return SL_TYPE_F32;
    const sl_type_info *base = sl_type_get(p->base);
    /* F32/F16/BF16 files: every matrix in that type, no mixing. */
    if (!base || !base->is_quantized) return p->base;
    sl_type t = p->base;
    uint32_t f = p->ftype;

    /* The output head (and token_embd when it is the head too): Q6_K, or
     * Q8_0 when that is the preset or its rows do not fit the preset's blocks. */
    if (role == SL_SYNTH_OUTPUT || (role == SL_SYNTH_TOKEN_EMBD && tied)) {
        if (ncols % base->block_size) t = SL_TYPE_Q8_0;
        else if (t != SL_TYPE_Q8_0) t = SL_TYPE_Q6_K;
        return compatible_type(t, ncols);
    }

    switch (role) {
    case SL_SYNTH_ATTN_V:
        if (f == FT_Q2_K) t = n_gqa >= 4 ? SL_TYPE_Q4_K : SL_TYPE_Q3_K;
        else if (f == FT_Q3_K_M) t = layer < 2 ? SL_TYPE_Q5_K : SL_TYPE_Q4_K;
        else if (f == FT_Q3_K_L) t = SL_TYPE_Q5_K;
        else if (f == FT_IQ4_NL && n_gqa >= 4) t = SL_TYPE_Q5_K;
        else if ((f == FT_Q4_K_M || f == FT_Q5_K_M) && use_more_bits(layer, n_layer)) t = SL_TYPE_Q6_K;
        else if (f == FT_Q4_K_S && layer < 4) t = SL_TYPE_Q5_K;
        break;
    case SL_SYNTH_FFN_DOWN:
        if (f == FT_Q2_K) t = SL_TYPE_Q3_K;
        else if (f == FT_Q3_K_M) t = layer < n_layer / 16 ? SL_TYPE_Q5_K : SL_TYPE_Q4_K;
        else if (f == FT_Q3_K_L) t = SL_TYPE_Q5_K;
        else if ((f == FT_Q4_K_M || f == FT_Q5_K_M) && use_more_bits(layer, n_layer)) t = SL_TYPE_Q6_K;
        else if ((f == FT_IQ4_NL || f == FT_Q4_K_S) && layer < n_layer / 8) t = SL_TYPE_Q5_K;
        break;
    case SL_SYNTH_ATTN_OUT:
        if (f == FT_Q2_K) t = SL_TYPE_Q3_K;
        else if (f == FT_Q3_K_M) t = SL_TYPE_Q4_K;
        else if (f == FT_Q3_K_L) t = SL_TYPE_Q5_K;
        break;
    default: /* token_embd (untied), attn_q, attn_k, ffn_gate, ffn_up: the preset's type */
        break;
    }
    return compatible_type(t, ncols);
}

/* ---- random numbers ----------------------------------------------------- */

/* splitmix64's finalizer: a bijective 64-bit mix, so distinct counters give
 * unrelated outputs. */
static uint64_t mix64(uint64_t x) {
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

static uint64_t hash_name(const char *s) {
    uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a */
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 0x100000001b3ULL;
    return h;
}

#define GOLDEN 0x9e3779b97f4a7c15ULL

/* Row `row` of a tensor: n values uniform in (-1, 1) times `scale`, plus
 * `offset`. Each pair of values is a pure function of (key, row, column). */
static void random_row(uint64_t key, int64_t row, float *out, int64_t n, float scale, float offset) {
    uint64_t row_key = mix64(key ^ mix64((uint64_t)row * GOLDEN + 1));
    const double unit = 1.0 / 8388608.0; /* 2^-23: 24-bit draws centered on 0 */
    for (int64_t j = 0; j < n; j += 2) {
        uint64_t x = mix64(row_key + ((uint64_t)j / 2 + 1) * GOLDEN);
        int32_t hi = (int32_t)(x >> 40) - 8388608;
        int32_t lo = (int32_t)((x >> 8) & 0xffffff) - 8388608;
        out[j] = offset + (float)(((double)hi + 0.5) * unit * scale);
        if (j + 1 < n) out[j + 1] = offset + (float)(((double)lo + 0.5) * unit * scale);
    }
}

/* ---- the tensor plan ---------------------------------------------------- */

/* Uniform(-a, a) has std a/sqrt(3): matrices get std 0.02 as in common
 * initializations; norms 1 with a little noise; biases small. */
#define MATRIX_SCALE (0.02f * 1.7320508f)
#define NORM_NOISE (0.02f * 1.7320508f)
#define BIAS_SCALE (0.01f * 1.7320508f)

typedef enum init_kind { INIT_MATRIX, INIT_NORM, INIT_BIAS, INIT_ROPE_FACTORS } init_kind;

typedef struct synth_tensor {
    char name[SL_GGUF_MAX_NAME];
    sl_type type;
    int64_t cols, rows; /* ne0 and ne1 (rows 1 for vectors) */
    bool is_vector;
    init_kind init;
    uint64_t key;       /* generator key: seed and name */
} synth_tensor;

typedef struct synth_job {
    const sl_synth_params *p;
    sl_synth_shape s;     /* the shape with vocab size, layer count and head_dim resolved */
    synth_tensor *tensors;
    int n_tensors;
    float *scratch;       /* one row of floats per thread */
    int64_t max_cols;
    int n_threads;
    uint64_t bytes_done, bytes_total;
} synth_job;

/* Names come from the fixed formats below, all far shorter than SL_GGUF_MAX_NAME. */
static void add_tensor(synth_job *job, sl_synth_role role, init_kind init, int layer, const char *fmt,
                       int64_t cols, int64_t rows) {
    synth_tensor *t = &job->tensors[job->n_tensors++];
    snprintf(t->name, sizeof t->name, fmt, layer);
    t->is_vector = role == SL_SYNTH_VECTOR;
    t->type = sl_synth_tensor_type(job->p->preset, role, layer, job->s.n_layer,
                                   job->s.n_head / job->s.n_head_kv, cols, job->s.tied);
    t->cols = cols;
    t->rows = rows;
    t->init = init;
    t->key = mix64(mix64(job->p->seed ^ 0x5eed5eed5eed5eedULL) ^ hash_name(t->name));
    if (cols > job->max_cols) job->max_cols = cols;
}

/* Tensors in llama.cpp's names and GGUF shapes ({cols, rows}), layer by layer. */
static int plan_tensors(synth_job *job, sl_error *err) {
    const sl_synth_shape *s = &job->s;
    const int64_t E = s->n_embd, QD = (int64_t)s->n_head * s->head_dim,
                  KD = (int64_t)s->n_head_kv * s->head_dim, F = s->n_ff, V = s->n_vocab;
    /* 4 outside the layers, at most 12 per layer */
    job->tensors = calloc((size_t)s->n_layer * 16 + 8, sizeof *job->tensors);
    if (!job->tensors) return sl_err(err, "out of memory");
    add_tensor(job, SL_SYNTH_TOKEN_EMBD, INIT_MATRIX, 0, "token_embd.weight", E, V);
    if (s->rope_factor > 0) add_tensor(job, SL_SYNTH_VECTOR, INIT_ROPE_FACTORS, 0, "rope_freqs.weight", s->head_dim / 2, 1);
    for (int l = 0; l < s->n_layer; l++) {
        add_tensor(job, SL_SYNTH_VECTOR, INIT_NORM, l, "blk.%d.attn_norm.weight", E, 1);
        add_tensor(job, SL_SYNTH_ATTN_Q, INIT_MATRIX, l, "blk.%d.attn_q.weight", E, QD);
        add_tensor(job, SL_SYNTH_ATTN_K, INIT_MATRIX, l, "blk.%d.attn_k.weight", E, KD);
        add_tensor(job, SL_SYNTH_ATTN_V, INIT_MATRIX, l, "blk.%d.attn_v.weight", E, KD);
        if (s->arch == SL_ARCH_QWEN2) {
            add_tensor(job, SL_SYNTH_VECTOR, INIT_BIAS, l, "blk.%d.attn_q.bias", QD, 1);
            add_tensor(job, SL_SYNTH_VECTOR, INIT_BIAS, l, "blk.%d.attn_k.bias", KD, 1);
            add_tensor(job, SL_SYNTH_VECTOR, INIT_BIAS, l, "blk.%d.attn_v.bias", KD, 1);
        }
        if (s->arch == SL_ARCH_QWEN3) {
            add_tensor(job, SL_SYNTH_VECTOR, INIT_NORM, l, "blk.%d.attn_q_norm.weight", s->head_dim, 1);
            add_tensor(job, SL_SYNTH_VECTOR, INIT_NORM, l, "blk.%d.attn_k_norm.weight", s->head_dim, 1);
        }
        add_tensor(job, SL_SYNTH_ATTN_OUT, INIT_MATRIX, l, "blk.%d.attn_output.weight", QD, E);
        add_tensor(job, SL_SYNTH_VECTOR, INIT_NORM, l, "blk.%d.ffn_norm.weight", E, 1);
        add_tensor(job, SL_SYNTH_FFN_GATE, INIT_MATRIX, l, "blk.%d.ffn_gate.weight", E, F);
        add_tensor(job, SL_SYNTH_FFN_UP, INIT_MATRIX, l, "blk.%d.ffn_up.weight", E, F);
        add_tensor(job, SL_SYNTH_FFN_DOWN, INIT_MATRIX, l, "blk.%d.ffn_down.weight", F, E);
    }
    add_tensor(job, SL_SYNTH_VECTOR, INIT_NORM, 0, "output_norm.weight", E, 1);
    if (!s->tied) add_tensor(job, SL_SYNTH_OUTPUT, INIT_MATRIX, 0, "output.weight", E, V);
    return 0;
}

/* Llama 3.1's rope scaling factors, as convert_hf_to_gguf.py computes them
 * for rope_type "llama3": 1 for short wavelengths, `factor` for long ones,
 * a smooth blend in between. The frequencies are float32 as in its torch code. */
static void llama3_rope_factors(const sl_synth_shape *s, float *out) {
    const double pi = 3.14159265358979323846;
    int dim = s->head_dim;
    double low_wavelen = s->rope_orig_ctx / s->rope_low_freq_factor;
    double high_wavelen = s->rope_orig_ctx / s->rope_high_freq_factor;
    for (int i = 0; i < dim / 2; i++) {
        float freq = 1.0f / powf(s->rope_base, (float)(2 * i) / (float)dim);
        double wavelen = 2 * pi / freq;
        double factor;
        if (wavelen < high_wavelen) factor = 1;
        else if (wavelen > low_wavelen) factor = s->rope_factor;
        else {
            double smooth = (s->rope_orig_ctx / wavelen - s->rope_low_freq_factor) /
                            (s->rope_high_freq_factor - s->rope_low_freq_factor);
            factor = 1 / ((1 - smooth) / s->rope_factor + smooth);
        }
        out[i] = (float)factor;
    }
}

/* ---- generating tensor data --------------------------------------------- */

typedef struct rows_task {
    synth_job *job;
    const synth_tensor *t;
    unsigned char *dst;   /* row `row0` goes here */
    int64_t row0, n_rows;
    size_t row_bytes;
    bool *bad;            /* per thread: a row came out the wrong size */
} rows_task;

static void fill_rows(void *ctx, int ith, int nth) {
    rows_task *task = ctx;
    const synth_tensor *t = task->t;
    float *buf = task->job->scratch + (size_t)ith * (size_t)task->job->max_cols;
    int64_t begin = task->n_rows * ith / nth, end = task->n_rows * (ith + 1) / nth;
    for (int64_t r = begin; r < end; r++) {
        int64_t row = task->row0 + r;
        switch (t->init) {
        case INIT_MATRIX: random_row(t->key, row, buf, t->cols, MATRIX_SCALE, 0.0f); break;
        case INIT_NORM: random_row(t->key, row, buf, t->cols, NORM_NOISE, 1.0f); break;
        case INIT_BIAS: random_row(t->key, row, buf, t->cols, BIAS_SCALE, 0.0f); break;
        case INIT_ROPE_FACTORS: llama3_rope_factors(&task->job->s, buf); break;
        }
        size_t n = sl_quantize_row(t->type, buf, task->dst + (size_t)r * task->row_bytes, t->cols);
        if (n != task->row_bytes) task->bad[ith] = true;
    }
}

static void run_rows(synth_job *job, rows_task *task) {
    if (job->p->pool && task->n_rows > 1) sl_pool_run(job->p->pool, fill_rows, task);
    else fill_rows(task, 0, 1);
}

static int fill_tensor(void *ctx, int64_t index, void *dst, uint64_t nbytes, sl_error *err) {
    synth_job *job = ctx;
    if (index < 0 || index >= job->n_tensors) return sl_err(err, "synth: no tensor %lld", (long long)index);
    const synth_tensor *t = &job->tensors[index];
    size_t row_bytes = sl_row_size(t->type, t->cols);
    if (row_bytes == 0 || (uint64_t)row_bytes * (uint64_t)t->rows != nbytes)
        return sl_err(err, "synth: tensor '%s' has %llu bytes, expected %lld rows of %zu", t->name,
                      (unsigned long long)nbytes, (long long)t->rows, row_bytes);
    bool bad[1024] = {false};
    /* Chunks of about 4M elements, so progress moves and each thread has work. */
    int64_t chunk = ((int64_t)1 << 22) / t->cols;
    if (chunk < job->n_threads) chunk = job->n_threads;
    for (int64_t row0 = 0; row0 < t->rows; row0 += chunk) {
        rows_task task = {job, t, (unsigned char *)dst + (size_t)row0 * row_bytes, row0,
                          t->rows - row0 < chunk ? t->rows - row0 : chunk, row_bytes, bad};
        run_rows(job, &task);
        job->bytes_done += (uint64_t)task.n_rows * row_bytes;
        if (job->p->progress) job->p->progress(job->p->progress_ctx, job->bytes_done, job->bytes_total);
    }
    for (int i = 0; i < job->n_threads; i++)
        if (bad[i]) return sl_err(err, "synth: quantizing '%s' to %s gave rows of the wrong size", t->name,
                                  sl_type_name(t->type));
    return 0;
}

/* ---- metadata ----------------------------------------------------------- */

int sl_synth_vocab_size(const sl_gguf *vocab, int32_t *n_vocab, sl_error *err) {
    const sl_gguf_value *tokens;
    int r = sl_gguf_get_arr(vocab, "tokenizer.ggml.tokens", &tokens, err);
    if (r < 0) return -1;
    if (r == 0) return sl_err(err, "the vocabulary file has no tokenizer.ggml.tokens");
    if (tokens->arr.elem_type != SL_GGUF_STRING)
        return sl_err(err, "tokenizer.ggml.tokens is an array of %s, expected strings",
                      sl_gguf_vtype_name(tokens->arr.elem_type));
    if (tokens->arr.n < 1 || tokens->arr.n > (1u << 24))
        return sl_err(err, "tokenizer.ggml.tokens has %llu entries (expected 1 to 16777216)",
                      (unsigned long long)tokens->arr.n);
    *n_vocab = (int32_t)tokens->arr.n;
    return 0;
}

/* Piece k of the synthetic vocabulary: "▁" alone, then every word over a-z in
 * order of length (a, b, ..., z, aa, ab, ...), each plain and with the "▁"
 * word-start prefix, so that every piece's prefixes are pieces too (SentencePiece
 * merges can reach each one). buf holds at least 32 bytes. */
static void synth_piece(uint64_t k, char *buf) {
    static const char space[] = "\xe2\x96\x81"; /* U+2581 */
    size_t n = 0;
    if (k == 0 || (k - 1) % 2 == 1) {
        memcpy(buf, space, 3);
        n = 3;
    }
    if (k > 0) {
        uint64_t w = (k - 1) / 2 + 1; /* bijective base 26: 1 -> a, 26 -> z, 27 -> aa */
        char letters[16];
        int len = 0;
        while (w > 0 && len < 16) {
            w -= 1;
            letters[len++] = (char)('a' + w % 26);
            w /= 26;
        }
        while (len > 0) buf[n++] = letters[--len];
    }
    buf[n] = 0;
}

/* A valid SentencePiece-style ("llama") vocabulary of n tokens: <unk>, <s>,
 * </s>, the 256 byte tokens, then synthetic pieces with falling scores. */
static int set_synthetic_vocab(sl_gguf_writer *w, int32_t n, sl_error *err) {
    enum { N_SPECIAL = 3, N_BYTES = 256, PIECE_MAX = 32 };
    if (n < N_SPECIAL + N_BYTES + 1)
        return sl_err(err, "a synthetic vocabulary needs at least %d tokens, the shape has %d",
                      N_SPECIAL + N_BYTES + 1, n);
    char *text = malloc((size_t)n * PIECE_MAX);
    const char **tokens = malloc((size_t)n * sizeof *tokens);
    float *scores = malloc((size_t)n * sizeof *scores);
    int32_t *types = malloc((size_t)n * sizeof *types);
    int rc = 0;
    if (!text || !tokens || !scores || !types) {
        rc = sl_err(err, "out of memory");
        goto done;
    }
    for (int32_t i = 0; i < n; i++) {
        char *t = text + (size_t)i * PIECE_MAX;
        tokens[i] = t;
        scores[i] = 0;
        if (i == 0) { strcpy(t, "<unk>"); types[i] = SL_TOKTYPE_UNKNOWN; }
        else if (i == 1) { strcpy(t, "<s>"); types[i] = SL_TOKTYPE_CONTROL; }
        else if (i == 2) { strcpy(t, "</s>"); types[i] = SL_TOKTYPE_CONTROL; }
        else if (i < N_SPECIAL + N_BYTES) {
            snprintf(t, PIECE_MAX, "<0x%02X>", (unsigned)(i - N_SPECIAL));
            types[i] = SL_TOKTYPE_BYTE;
        } else {
            int32_t k = i - (N_SPECIAL + N_BYTES);
            synth_piece((uint64_t)k, t);
            scores[i] = -(float)k;
            types[i] = SL_TOKTYPE_NORMAL;
        }
    }
    if (sl_gguf_set_str(w, "tokenizer.ggml.model", "llama") ||
        sl_gguf_set_arr_str(w, "tokenizer.ggml.tokens", tokens, (uint64_t)n) ||
        sl_gguf_set_arr(w, "tokenizer.ggml.scores", SL_GGUF_FLOAT32, scores, (uint64_t)n) ||
        sl_gguf_set_arr(w, "tokenizer.ggml.token_type", SL_GGUF_INT32, types, (uint64_t)n) ||
        sl_gguf_set_u32(w, "tokenizer.ggml.bos_token_id", 1) ||
        sl_gguf_set_u32(w, "tokenizer.ggml.eos_token_id", 2) ||
        sl_gguf_set_u32(w, "tokenizer.ggml.unknown_token_id", 0) ||
        sl_gguf_set_bool(w, "tokenizer.ggml.add_bos_token", true) ||
        sl_gguf_set_bool(w, "tokenizer.ggml.add_eos_token", false))
        rc = sl_err(err, "out of memory");
done:
    free(text);
    free(tokens);
    free(scores);
    free(types);
    return rc;
}

static int copy_vocab(sl_gguf_writer *w, const sl_gguf *vocab, sl_error *err) {
    for (int64_t i = 0; i < sl_gguf_n_kv(vocab); i++) {
        const char *key = sl_gguf_key_at(vocab, i);
        if (strncmp(key, "tokenizer.", 10) != 0) continue;
        if (sl_gguf_set_value(w, key, sl_gguf_value_at(vocab, i)))
            return sl_err(err, "cannot copy %s from the vocabulary file", key);
    }
    return 0;
}

static int set_metadata(sl_gguf_writer *w, const synth_job *job, sl_error *err) {
    const sl_synth_shape *s = &job->s;
    const char *arch = sl_arch_name(s->arch);
    char name[128], desc[256];
    snprintf(name, sizeof name, "%s (synthetic)", s->model_name);
    snprintf(desc, sizeof desc, "random weights in the shape of %s: streamllm synth --like %s --type %s --seed %llu",
             s->model_name, s->name, job->p->preset->name, (unsigned long long)job->p->seed);
    bool fail = sl_gguf_set_str(w, "general.architecture", arch) || sl_gguf_set_str(w, "general.name", name) ||
                sl_gguf_set_str(w, "general.description", desc) ||
                sl_gguf_set_u32(w, "general.file_type", job->p->preset->ftype) ||
                sl_gguf_set_u32(w, "general.quantization_version", 2);
    struct { const char *suffix; uint32_t value; } ints[] = {
        {"vocab_size", (uint32_t)s->n_vocab},
        {"context_length", (uint32_t)s->n_ctx_train},
        {"embedding_length", (uint32_t)s->n_embd},
        {"block_count", (uint32_t)s->n_layer},
        {"feed_forward_length", (uint32_t)s->n_ff},
        {"attention.head_count", (uint32_t)s->n_head},
        {"attention.head_count_kv", (uint32_t)s->n_head_kv},
        {"rope.dimension_count", (uint32_t)s->head_dim},
    };
    char key[128];
    for (size_t i = 0; i < sizeof ints / sizeof ints[0] && !fail; i++) {
        snprintf(key, sizeof key, "%s.%s", arch, ints[i].suffix);
        fail = sl_gguf_set_u32(w, key, ints[i].value) != 0;
    }
    /* Written only where head_dim differs from n_embd / n_head (Qwen3), as the converter does for such models. */
    if (!fail && s->head_dim * s->n_head != s->n_embd) {
        snprintf(key, sizeof key, "%s.attention.key_length", arch);
        fail = sl_gguf_set_u32(w, key, (uint32_t)s->head_dim) != 0;
        snprintf(key, sizeof key, "%s.attention.value_length", arch);
        fail = fail || sl_gguf_set_u32(w, key, (uint32_t)s->head_dim) != 0;
    }
    if (!fail) {
        snprintf(key, sizeof key, "%s.rope.freq_base", arch);
        fail = sl_gguf_set_f32(w, key, s->rope_base) != 0;
        snprintf(key, sizeof key, "%s.attention.layer_norm_rms_epsilon", arch);
        fail = fail || sl_gguf_set_f32(w, key, s->rms_eps) != 0;
    }
    if (fail) return sl_err(err, "out of memory");
    if (job->p->vocab) return copy_vocab(w, job->p->vocab, err);
    return set_synthetic_vocab(w, s->n_vocab, err);
}

/* ---- putting it together ------------------------------------------------ */

static void job_free(synth_job *job) {
    free(job->tensors);
    free(job->scratch);
}

/* Resolves the shape, plans tensors and fills the writer's metadata. */
static int prepare(const sl_synth_params *p, synth_job *job, sl_gguf_writer **out, sl_error *err) {
    memset(job, 0, sizeof *job);
    *out = NULL;
    if (!p->shape || !p->preset) return sl_err(err, "synth: no shape or type given");
    job->p = p;
    job->s = *p->shape;
    sl_synth_shape *s = &job->s;
    if (p->n_layer > 0) s->n_layer = p->n_layer;
    if (s->head_dim <= 0) s->head_dim = s->n_embd / s->n_head;
    if (p->vocab && sl_synth_vocab_size(p->vocab, &s->n_vocab, err)) return -1;
    if (s->n_layer > 4096) return sl_err(err, "synth: %d layers is too many (at most 4096)", s->n_layer);
    job->n_threads = p->pool ? sl_pool_size(p->pool) : 1;
    if (job->n_threads > 1024) return sl_err(err, "synth: too many threads (%d)", job->n_threads);

    sl_gguf_writer *w = NULL;
    if (plan_tensors(job, err)) goto fail;
    job->scratch = malloc((size_t)job->n_threads * (size_t)job->max_cols * sizeof(float));
    w = sl_gguf_writer_new();
    if (!job->scratch || !w) {
        sl_err(err, "out of memory");
        goto fail;
    }
    if (set_metadata(w, job, err)) goto fail;
    for (int i = 0; i < job->n_tensors; i++) {
        const synth_tensor *t = &job->tensors[i];
        int64_t ne[2] = {t->cols, t->rows};
        if (sl_gguf_add_tensor(w, t->name, (int)t->type, t->is_vector ? 1 : 2, ne, NULL, err)) goto fail;
        job->bytes_total += (uint64_t)sl_row_size(t->type, t->cols) * (uint64_t)t->rows;
    }
    *out = w;
    return 0;
fail:
    sl_gguf_writer_free(w);
    job_free(job);
    return -1;
}

int sl_synth_write_file(const sl_synth_params *p, const char *path, sl_error *err) {
    synth_job job;
    sl_gguf_writer *w;
    if (prepare(p, &job, &w, err)) return -1;
    int rc = sl_gguf_write_file(w, path, fill_tensor, &job, err);
    sl_gguf_writer_free(w);
    job_free(&job);
    return rc;
}

int sl_synth_write_memory(const sl_synth_params *p, void **out, size_t *out_size, sl_error *err) {
    synth_job job;
    sl_gguf_writer *w;
    *out = NULL;
    *out_size = 0;
    if (prepare(p, &job, &w, err)) return -1;
    int rc = sl_gguf_write_memory(w, out, out_size, fill_tensor, &job, err);
    sl_gguf_writer_free(w);
    job_free(&job);
    return rc;
}
