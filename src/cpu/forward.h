/* forward.h - evaluating a model on the CPU: KV cache, batched prompt
 * processing, and single-token decode steps. */
#ifndef SL_CPU_FORWARD_H
#define SL_CPU_FORWARD_H

#include "cpu/threadpool.h"
#include "model/model.h"

typedef struct sl_cpu_ctx sl_cpu_ctx;

typedef struct sl_cpu_params {
    int32_t n_ctx;      /* KV cache length in tokens; <= 0: min(n_ctx_train, 4096) */
    int32_t n_batch;    /* tokens evaluated together in prefill; <= 0: 512 */
    int32_t n_threads;  /* <= 0: all CPUs */
} sl_cpu_params;

sl_cpu_ctx *sl_cpu_ctx_new(const sl_model *m, const sl_cpu_params *p, sl_error *err);
void sl_cpu_ctx_free(sl_cpu_ctx *c);

int32_t sl_cpu_n_ctx(const sl_cpu_ctx *c);
/* Tokens currently in the KV cache. */
int32_t sl_cpu_n_past(const sl_cpu_ctx *c);
/* Forgets the cache from position n_keep on (0: start over). */
void sl_cpu_truncate(sl_cpu_ctx *c, int32_t n_keep);

/* Appends tokens[0..n) at the end of the cache and evaluates them.
 * logits: when all_logits, [n][n_vocab] for every token; otherwise [n_vocab]
 * for the last one. NULL to skip the output head. Errors: token id out of
 * range, context overflow. */
int sl_cpu_eval(sl_cpu_ctx *c, const int32_t *tokens, int32_t n, float *logits, bool all_logits,
                sl_error *err);

#endif
