/* sampler.h - choosing the next token from logits.
 *
 * Order, as in llama.cpp's default chain: penalties (repetition, frequency,
 * presence, over the last repeat_last_n accepted tokens), then top-k, top-p,
 * min-p, temperature, and a seeded draw. temp <= 0 means greedy (argmax, the
 * lowest id on ties). Same seed and same logits give the same tokens. */
#ifndef SL_SAMPLER_H
#define SL_SAMPLER_H

#include "util/common.h"

typedef struct sl_sampler_params {
    float temp;             /* <= 0: greedy */
    int32_t top_k;          /* <= 0: off */
    float top_p;            /* >= 1: off */
    float min_p;            /* <= 0: off */
    float repeat_penalty;   /* 1: off */
    int32_t repeat_last_n;  /* tokens of history the penalties look at; 0: off, -1: all */
    float freq_penalty;     /* 0: off */
    float presence_penalty; /* 0: off */
    uint64_t seed;
} sl_sampler_params;

/* Defaults of llama.cpp's CLI: temp 0.8, top_k 40, top_p 0.95, min_p 0.05,
 * penalties off, repeat_last_n 64, seed 0. */
sl_sampler_params sl_sampler_default_params(void);

typedef struct sl_sampler sl_sampler;

sl_sampler *sl_sampler_new(const sl_sampler_params *p, int32_t n_vocab, sl_error *err);
void sl_sampler_free(sl_sampler *s);
/* Picks a token from logits[n_vocab] (not modified). */
int32_t sl_sampler_sample(sl_sampler *s, const float *logits);
/* Records a token (prompt or generated) in the penalty history. */
void sl_sampler_accept(sl_sampler *s, int32_t id);
void sl_sampler_reset(sl_sampler *s);

#endif
