/* gpu.h - the WebGPU backend: a model evaluated by WGSL kernels through the
 * bridge (gpu/bridge.h).
 *
 * Creating an engine builds the static memory plan (gpu/plan.h), refuses
 * when it exceeds the budget, creates every buffer, generates the kernels
 * and creates their pipelines and bind groups once. Weights then arrive by
 * sl_gpu_upload_tensor (streamed, any 4-byte-aligned pieces) or
 * sl_gpu_upload_model (from a model whose data is in memory).
 *
 * A step is one recorded dispatch program (decode: mat-vecs; prefill: tiled
 * mat-muls), replayed with one compute pass and one submit; per step only the
 * step uniform (n_tokens, pos0, n_kv) and the token ids are written. Programs
 * are recorded once per shape bucket (tokens rounded up to a power of two,
 * decode attention splits likewise) and reused. Only logits come back.
 *
 * Evaluation is two calls because wasm cannot wait for the GPU:
 * sl_gpu_eval_begin submits the work and starts the read-back; once the host
 * has awaited the bridge, sl_gpu_eval_end copies the logits out. */
#ifndef SL_GPU_GPU_H
#define SL_GPU_GPU_H

#include "gpu/plan.h"

typedef struct sl_gpu_engine sl_gpu_engine;

/* The device's caps, as the bridge reports them. */
sl_gpu_caps sl_gpu_device_caps(void);

/* m must outlive the engine; its tensor data is not needed (header-only
 * models work: upload with sl_gpu_upload_tensor). The engine completes such
 * a model: rope_freqs.weight given to sl_gpu_upload_tensor goes to
 * sl_model_set_rope_freqs. */
sl_gpu_engine *sl_gpu_engine_new(sl_model *m, const sl_gpu_params *p, sl_error *err);
void sl_gpu_engine_free(sl_gpu_engine *e);

const sl_gpu_plan *sl_gpu_engine_plan(const sl_gpu_engine *e);

/* Bytes [offset, offset + len) of the GGUF tensor `name`. offset must be a
 * multiple of 4, and len too unless the piece ends the tensor. Norm and bias
 * vectors that are not F32, and rope_freqs.weight, must come whole (they are
 * converted). Returns 0, 1 when the tensor is not used on the GPU (skipped),
 * or -1. */
int sl_gpu_upload_tensor(sl_gpu_engine *e, const char *name, uint64_t offset, const void *data, uint64_t len,
                         sl_error *err);
/* Uploads every tensor from the model's data (which must be in memory). */
int sl_gpu_upload_model(sl_gpu_engine *e, sl_error *err);
/* 0 when every planned tensor is fully uploaded, else -1 naming the first missing. */
int sl_gpu_check_uploaded(const sl_gpu_engine *e, sl_error *err);

int32_t sl_gpu_n_ctx(const sl_gpu_engine *e);
int32_t sl_gpu_n_past(const sl_gpu_engine *e);
void sl_gpu_truncate(sl_gpu_engine *e, int32_t n_keep);

/* Appends tokens[0..n) to the context and submits their evaluation. With
 * all_logits the logits of every token come back (n <= plan->n_out), else
 * the last token's. Errors: bad ids, context overflow, an eval pending. */
int sl_gpu_eval_begin(sl_gpu_engine *e, const int32_t *tokens, int32_t n, bool all_logits, sl_error *err);
/* On demand (plan->n_resident < n_layer), eval_begin submits the step up to
 * the first streamed layer and returns; then, while eval_wants_layer gives a
 * layer >= 0, the host uploads that layer's tensors (sl_gpu_upload_tensor
 * takes a streamed layer's matrices only while it is wanted; the others
 * return 1) and calls eval_continue, which submits it and goes on. The host
 * reads the next layer while the GPU runs the previous one. eval_cancel
 * abandons the evaluation (e.g. the weights could not be read); the context
 * keeps the tokens of the batches submitted whole. */
int32_t sl_gpu_eval_wants_layer(const sl_gpu_engine *e);
int sl_gpu_eval_continue(sl_gpu_engine *e, sl_error *err);
void sl_gpu_eval_cancel(sl_gpu_engine *e);
/* Uploads the wanted layer from the model's data (which must be in memory). */
int sl_gpu_upload_layer(sl_gpu_engine *e, sl_error *err);
/* After the host awaited the bridge: copies the logits ([n][n_vocab] or
 * [n_vocab] floats) to `logits`. */
int sl_gpu_eval_end(sl_gpu_engine *e, float *logits, sl_error *err);
/* Floats eval_end will write (0 when nothing is pending). */
int64_t sl_gpu_pending_floats(const sl_gpu_engine *e);

/* Greedy decoding on the GPU (whole model resident): a decode step of
 * `token` (>= 0), or (-1) of the id the previous greedy step chose, whose
 * argmax is taken on the GPU too; that id becomes the next step's input there
 * and is read back (4 bytes) into read-back slot `slot` (0 to
 * SL_GPU_GREEDY_SLOTS - 1). So the host submits steps n + 1, n + 2... before
 * it reads step n's id: the GPU does not wait for the host between tokens,
 * nor through a pause of the host shorter than the steps queued (Node paused
 * 13-38 ms now and then; with one step queued, Llama-3.1-8B on an H200
 * idled through it; web/engine/engine.mjs queues about 50 ms). greedy_staging gives the slot's bridge buffer
 * (the host awaits its read-back), greedy_end its id. Stopping after step n
 * with later steps in flight: greedy_end them too, and truncate to drop their
 * tokens. SL_GPU_GREEDY_SLOTS: gpu/plan.h. */
int sl_gpu_greedy_begin(sl_gpu_engine *e, int32_t token, int slot, sl_error *err);
int32_t sl_gpu_greedy_staging(const sl_gpu_engine *e, int slot);
int32_t sl_gpu_greedy_end(sl_gpu_engine *e, int slot, sl_error *err);
/* Whether greedy_begin can run (the whole model resident). */
bool sl_gpu_greedy_ok(const sl_gpu_engine *e);

/* Changes the mat-vec tuning (kernels.h: mv_rows, mv_units, mv_min_wgs; 0:
 * defaults) of a live engine: its decode kernels are built again, nothing
 * else changes (weights, caches and context stay). For tuning on the device
 * (web/engine/gpu-tune.mjs); not while an evaluation or a greedy step is in
 * flight. */
int sl_gpu_set_matvec_tuning(sl_gpu_engine *e, uint32_t rows, uint32_t units, uint32_t min_wgs, sl_error *err);
/* The texts of the kernels that tuning would add (not made yet), each
 * ending in a NUL, then an empty one (malloc'd): to compile them ahead,
 * before trying the tuning. */
char *sl_gpu_matvec_tuning_sources(const sl_gpu_engine *e, uint32_t rows, uint32_t units, uint32_t min_wgs,
                                   sl_error *err);
/* A hash of the text of every kernel the engine made so far (at creation:
 * those of the given tuning, for the model's shapes). */
double sl_gpu_kernels_hash(const sl_gpu_engine *e);

/* Programs recorded so far and dispatches in the last one run (for tests). */
int sl_gpu_n_programs(const sl_gpu_engine *e);
int sl_gpu_last_dispatches(const sl_gpu_engine *e);
/* Decode runs the fused kernels (norm + Q/K/V + RoPE + K/V store; norm + gate/up). */
bool sl_gpu_decode_fused(const sl_gpu_engine *e);

#endif
