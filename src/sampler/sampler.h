/* sampler.h - choosing the next token from logits.
 *
 * Order, as in llama.cpp's default chain: penalties (repetition, frequency,
 * presence, over the last repeat_last_n accepted tokens), then top-k, top-p,
 * min-p, temperature, and a seeded draw. temp <= 0 means greedy (argmax, the
 * lowest id on ties). Same seed and same logits give the same tokens on every
 * platform (xoshiro256** seeded by splitmix64; probabilities computed in
 * double without libm). */
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
/* Picks a token from logits[n_vocab] (not modified). NaN logits count as
 * -inf; if no token has a logit above -inf, the result is 0. -1 only for a
 * NULL argument. */
int32_t sl_sampler_sample(sl_sampler *s, const float *logits);
/* The tokens the next sl_sampler_sample would draw from, after penalties
 * and filters, best first, with their probabilities after temperature
 * (greedy: the argmax alone, probability 1). Writes up to max of them to
 * ids/probs (either may be NULL) and returns how many there are in all.
 * Draws nothing: the random state is left as it was. For tests and for
 * showing alternatives (log-probabilities) to a user. */
int32_t sl_sampler_candidates(sl_sampler *s, const float *logits, int32_t *ids, float *probs,
                              int32_t max);
/* Records a token (prompt or generated) in the penalty history; ids outside
 * [0, n_vocab) are ignored. */
void sl_sampler_accept(sl_sampler *s, int32_t id);
/* Forgets the history and restarts the random sequence from the seed. */
void sl_sampler_reset(sl_sampler *s);

#endif
