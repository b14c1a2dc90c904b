/* sampler.c - choosing the next token from logits (see sampler.h).
 *
 * The filters follow llama.cpp's samplers (penalties, top-k, top-p, min-p,
 * temperature, draw) in its default order. The draw is reproducible across
 * platforms: the generator is xoshiro256** seeded through splitmix64, all
 * probabilities are computed in double with basic IEEE operations only (our
 * own exp, no libm, no fused multiply-add), and ties are broken by token id,
 * so the same seed and logits give the same tokens natively and in wasm32.
 *
 * Cost for a large vocabulary: one pass to copy the logits; top-k selects with
 * a k-element heap (no full sort); top-p without top-k sorts only a growing
 * prefix of the best tokens until it holds the requested mass. */
#include "sampler/sampler.h"

#include <float.h>
#include <math.h> /* INFINITY only: nothing here calls libm */
#include <stdlib.h>
#include <string.h>

/* Reproducibility needs a*b+c rounded twice everywhere (GCC in ISO C mode
 * already does not contract). */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

typedef struct candidate {
    float logit;
    int32_t id;
} candidate;

struct sl_sampler {
    sl_sampler_params p;
    int32_t n_vocab;
    candidate *cand;  /* [n_vocab] working set */
    double *weight;   /* [n_vocab] unnormalized probabilities of cand */
    uint64_t rng[4];  /* xoshiro256** state */

    /* Penalty history (allocated only when a penalty is on). */
    bool penalties;
    int32_t *count;        /* [n_vocab] occurrences in the window */
    int32_t *distinct;     /* [n_vocab] ids with count > 0 */
    int32_t *distinct_pos; /* [n_vocab] index in distinct, or -1 */
    int32_t n_distinct;
    int32_t *ring;         /* [repeat_last_n] the window, when bounded */
    int32_t ring_len, ring_head;
};

sl_sampler_params sl_sampler_default_params(void) {
    sl_sampler_params p = {
        .temp = 0.8f,
        .top_k = 40,
        .top_p = 0.95f,
        .min_p = 0.05f,
        .repeat_penalty = 1.0f,
        .repeat_last_n = 64,
        .freq_penalty = 0.0f,
        .presence_penalty = 0.0f,
        .seed = 0,
    };
    return p;
}

/* ---- random numbers: splitmix64 to seed, xoshiro256** to draw ---------------- */

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static void rng_seed(uint64_t s[4], uint64_t seed) {
    for (int i = 0; i < 4; i++) s[i] = splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t rng_next(uint64_t s[4]) {
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

/* Uniform in [0, 1), 53 bits. */
static double rng_uniform(uint64_t s[4]) { return (double)(rng_next(s) >> 11) * 0x1.0p-53; }

/* ---- exp for x <= 0 -------------------------------------------------------------
 * e^x = 2^k * e^r with r = x - k ln2, |r| <= ln2/2, e^r by its Taylor series
 * to degree 13 (relative error < 1e-15). Basic operations only, so every IEEE
 * platform gets the same bits, unlike libm's exp. */
static double exp_nonpositive(double x) {
    if (!(x > -708.0)) return 0.0; /* also NaN; e^-708 is far below any probability we care about */
    if (x > 0.0) x = 0.0;
    const double log2e = 1.4426950408889634074;
    const double ln2_hi = 6.93147180369123816490e-01; /* low bits zero: k*ln2_hi is exact */
    const double ln2_lo = 1.90821492927058770002e-10;
    int k = -(int)(0.5 - x * log2e); /* round to nearest, x <= 0 */
    double r = (x - k * ln2_hi) - k * ln2_lo;
    static const double inv_factorial[14] = {
        1.0,
        1.0,
        1.0 / 2,
        1.0 / 6,
        1.0 / 24,
        1.0 / 120,
        1.0 / 720,
        1.0 / 5040,
        1.0 / 40320,
        1.0 / 362880,
        1.0 / 3628800,
        1.0 / 39916800,
        1.0 / 479001600,
        1.0 / 6227020800.0,
    };
    double poly = inv_factorial[13];
    for (int i = 12; i >= 0; i--) poly = poly * r + inv_factorial[i];
    /* 2^k for k in [-1022, 0]: a normal double built from its exponent bits. */
    uint64_t bits = (uint64_t)(k + 1023) << 52;
    double scale;
    memcpy(&scale, &bits, sizeof scale);
    return poly * scale;
}

/* ---- candidate ordering: higher logit first, then lower id --------------------- */

static bool better(const candidate *a, const candidate *b) {
    return a->logit > b->logit || (a->logit == b->logit && a->id < b->id);
}

static int compare_best_first(const void *pa, const void *pb) {
    const candidate *a = pa, *b = pb;
    if (better(a, b)) return -1;
    if (better(b, a)) return 1;
    return 0;
}

/* Min-heap on `better`: the worst of the kept candidates at the root. */
static void sift_down(candidate *heap, size_t n, size_t i) {
    for (;;) {
        size_t worst = i, l = 2 * i + 1, r = l + 1;
        if (l < n && better(&heap[worst], &heap[l])) worst = l;
        if (r < n && better(&heap[worst], &heap[r])) worst = r;
        if (worst == i) return;
        candidate t = heap[i];
        heap[i] = heap[worst];
        heap[worst] = t;
        i = worst;
    }
}

/* Moves the k best of c[0..n) to c[0..k), best first; the others stay in
 * c[k..n) in some order. O(n log k). */
static void select_best(candidate *c, size_t n, size_t k) {
    if (k == 0) return;
    if (k < n) {
        for (size_t i = k / 2; i-- > 0;) sift_down(c, k, i);
        for (size_t j = k; j < n; j++) {
            if (better(&c[j], &c[0])) {
                candidate t = c[0];
                c[0] = c[j];
                c[j] = t;
                sift_down(c, k, 0);
            }
        }
    }
    qsort(c, k < n ? k : n, sizeof *c, compare_best_first);
}

static float sanitize(float v) {
    if (v != v) return -INFINITY; /* NaN: never chosen */
    if (v > FLT_MAX) return FLT_MAX; /* +inf: keep the arithmetic below finite */
    return v;
}

/* ---- construction ------------------------------------------------------------------ */

static bool is_nan(float v) { return v != v; }
static bool is_finite(float v) { return v >= -FLT_MAX && v <= FLT_MAX; }

static int check_params(const sl_sampler_params *p, int32_t n_vocab, sl_error *err) {
    if (!p) return sl_err(err, "sampler: no parameters");
    if (n_vocab < 1) return sl_err(err, "sampler: vocabulary size %d is not positive", (int)n_vocab);
    if (is_nan(p->temp) || is_nan(p->top_p) || is_nan(p->min_p))
        return sl_err(err, "sampler: temperature, top-p and min-p must be numbers");
    if (!(p->repeat_penalty > 0.0f) || !is_finite(p->repeat_penalty))
        return sl_err(err, "sampler: repeat penalty %g must be positive and finite", (double)p->repeat_penalty);
    if (!is_finite(p->freq_penalty) || !is_finite(p->presence_penalty))
        return sl_err(err, "sampler: frequency and presence penalties must be finite");
    if (p->repeat_last_n < -1)
        return sl_err(err, "sampler: repeat_last_n %d must be -1 (all), 0 (off) or positive",
                      (int)p->repeat_last_n);
    /* The largest arrays: weight[n_vocab] and the ring (size_t is 32 bits in wasm32). */
    uint64_t bytes;
    if (!sl_mul_u64((uint64_t)n_vocab, sizeof(double), &bytes) || bytes > SIZE_MAX ||
        !sl_mul_u64((uint64_t)(p->repeat_last_n > 0 ? p->repeat_last_n : 0), sizeof(int32_t), &bytes) ||
        bytes > SIZE_MAX)
        return sl_err(err, "sampler: vocabulary %d or window %d too large for this platform",
                      (int)n_vocab, (int)p->repeat_last_n);
    return 0;
}

sl_sampler *sl_sampler_new(const sl_sampler_params *p, int32_t n_vocab, sl_error *err) {
    if (check_params(p, n_vocab, err) != 0) return NULL;
    sl_sampler *s = calloc(1, sizeof *s);
    if (!s) {
        sl_err(err, "sampler: out of memory");
        return NULL;
    }
    s->p = *p;
    s->n_vocab = n_vocab;
    size_t n = (size_t)n_vocab;
    s->cand = malloc(n * sizeof *s->cand);
    s->weight = malloc(n * sizeof *s->weight);
    bool ok = s->cand && s->weight;
    s->penalties = p->repeat_last_n != 0 &&
                   (p->repeat_penalty != 1.0f || p->freq_penalty != 0.0f || p->presence_penalty != 0.0f);
    if (ok && s->penalties) {
        s->count = calloc(n, sizeof *s->count);
        s->distinct = malloc(n * sizeof *s->distinct);
        s->distinct_pos = malloc(n * sizeof *s->distinct_pos);
        ok = s->count && s->distinct && s->distinct_pos;
        if (ok && p->repeat_last_n > 0) {
            s->ring = malloc((size_t)p->repeat_last_n * sizeof *s->ring);
            ok = s->ring != NULL;
        }
    }
    if (!ok) {
        sl_sampler_free(s);
        sl_err(err, "sampler: out of memory for a vocabulary of %d", (int)n_vocab);
        return NULL;
    }
    sl_sampler_reset(s);
    return s;
}

void sl_sampler_free(sl_sampler *s) {
    if (!s) return;
    free(s->cand);
    free(s->weight);
    free(s->count);
    free(s->distinct);
    free(s->distinct_pos);
    free(s->ring);
    free(s);
}

void sl_sampler_reset(sl_sampler *s) {
    if (!s) return;
    rng_seed(s->rng, s->p.seed);
    if (!s->penalties) return;
    memset(s->count, 0, (size_t)s->n_vocab * sizeof *s->count);
    for (int32_t i = 0; i < s->n_vocab; i++) s->distinct_pos[i] = -1;
    s->n_distinct = 0;
    s->ring_len = s->ring_head = 0;
}

/* ---- penalty history ------------------------------------------------------------- */

static void count_add(sl_sampler *s, int32_t id) {
    if (s->count[id] == INT32_MAX) return; /* unbounded window: saturate */
    if (s->count[id]++ == 0) {
        s->distinct_pos[id] = s->n_distinct;
        s->distinct[s->n_distinct++] = id;
    }
}

static void count_remove(sl_sampler *s, int32_t id) {
    if (--s->count[id] > 0) return;
    /* Swap-remove from the distinct list. */
    int32_t pos = s->distinct_pos[id];
    int32_t last = s->distinct[--s->n_distinct];
    s->distinct[pos] = last;
    s->distinct_pos[last] = pos;
    s->distinct_pos[id] = -1;
}

void sl_sampler_accept(sl_sampler *s, int32_t id) {
    if (!s || !s->penalties || id < 0 || id >= s->n_vocab) return;
    count_add(s, id);
    if (!s->ring) return; /* repeat_last_n == -1: everything counts */
    int32_t cap = s->p.repeat_last_n;
    if (s->ring_len == cap) {
        count_remove(s, s->ring[s->ring_head]); /* the oldest leaves the window */
        s->ring[s->ring_head] = id;
        s->ring_head = (s->ring_head + 1) % cap;
    } else {
        s->ring[(s->ring_head + s->ring_len) % cap] = id;
        s->ring_len++;
    }
}

/* As llama.cpp: a repeated token's logit is divided by the repeat penalty
 * when positive, multiplied when not, then lowered by count * frequency
 * penalty + presence penalty. */
static void apply_penalties(sl_sampler *s) {
    float repeat = s->p.repeat_penalty, freq = s->p.freq_penalty, presence = s->p.presence_penalty;
    for (int32_t i = 0; i < s->n_distinct; i++) {
        int32_t id = s->distinct[i];
        float v = s->cand[id].logit;
        if (v <= 0.0f)
            v *= repeat;
        else
            v /= repeat;
        v -= (float)s->count[id] * freq + presence;
        s->cand[id].logit = sanitize(v);
    }
}

/* ---- sampling ------------------------------------------------------------------------ */

/* Keeps the smallest best-first prefix whose probability mass (softmax at
 * temperature 1) reaches top_p, sorted best first. Returns its size. */
static size_t apply_top_p(candidate *c, size_t n, bool sorted, double top_p) {
    double max = c[0].logit;
    if (!sorted)
        for (size_t i = 1; i < n; i++)
            if (c[i].logit > max) max = c[i].logit;
    double sum = 0.0;
    for (size_t i = 0; i < n; i++) sum += exp_nonpositive((double)c[i].logit - max);
    double target = top_p * sum;

    /* Sort a prefix of the best tokens, grown until it holds the mass. */
    size_t prefix = sorted ? n : (n < 256 ? n : 256);
    for (;;) {
        if (!sorted) select_best(c, n, prefix);
        double cum = 0.0;
        for (size_t i = 0; i < prefix; i++) {
            cum += exp_nonpositive((double)c[i].logit - max);
            if (cum >= target) return i + 1;
        }
        if (prefix == n) return n; /* rounding: the whole set it is */
        prefix = prefix > n / 4 ? n : prefix * 4;
    }
}

/* Keeps the tokens whose probability is at least min_p times the largest. */
static size_t apply_min_p(candidate *c, size_t n, double min_p) {
    size_t best = 0;
    for (size_t i = 1; i < n; i++)
        if (better(&c[i], &c[best])) best = i;
    double max = c[best].logit;
    size_t kept = 0;
    for (size_t i = 0; i < n; i++)
        if (exp_nonpositive((double)c[i].logit - max) >= min_p) c[kept++] = c[i];
    if (kept == 0) { /* min_p > 1: the best one alone */
        c[0] = c[best];
        kept = 1;
    }
    return kept;
}

/* Penalties and filters: leaves the candidates to draw from in cand[0..n)
 * and returns n (>= 1). Greedy leaves the argmax alone. */
static size_t select_candidates(sl_sampler *s, const float *logits) {
    const sl_sampler_params *p = &s->p;
    candidate *c = s->cand;
    size_t n_vocab = (size_t)s->n_vocab;
    for (size_t i = 0; i < n_vocab; i++) {
        c[i].logit = sanitize(logits[i]);
        c[i].id = (int32_t)i;
    }
    if (s->penalties) apply_penalties(s);

    if (p->temp <= 0.0f) { /* greedy: argmax, the lowest id on ties */
        size_t best = 0;
        for (size_t i = 1; i < n_vocab; i++)
            if (c[i].logit > c[best].logit) best = i;
        c[0] = c[best];
        return 1;
    }

    /* Tokens that cannot be drawn (-inf, NaN) leave the set. */
    size_t n = 0;
    for (size_t i = 0; i < n_vocab; i++)
        if (c[i].logit > -INFINITY) c[n++] = c[i];
    if (n == 0) { /* nothing drawable: the lowest id, as greedy would pick */
        c[0] = (candidate){0.0f, 0};
        return 1;
    }

    bool sorted = false;
    if (p->top_k > 0 && (size_t)p->top_k < n) {
        select_best(c, n, (size_t)p->top_k);
        n = (size_t)p->top_k;
        sorted = true;
    }
    if (p->top_p < 1.0f && n > 1) {
        n = apply_top_p(c, n, sorted, p->top_p);
        sorted = true;
    }
    if (p->min_p > 0.0f && n > 1) n = apply_min_p(c, n, p->min_p);
    return n;
}

/* Temperature and softmax numerators: weight[i] for cand[i]; returns their sum. */
static double compute_weights(sl_sampler *s, size_t n) {
    const candidate *c = s->cand;
    double max = c[0].logit;
    for (size_t i = 1; i < n; i++)
        if (c[i].logit > max) max = c[i].logit;
    double temp = s->p.temp > 0.0f ? s->p.temp : 1.0, sum = 0.0;
    for (size_t i = 0; i < n; i++) {
        s->weight[i] = exp_nonpositive(((double)c[i].logit - max) / temp);
        sum += s->weight[i];
    }
    return sum;
}

int32_t sl_sampler_sample(sl_sampler *s, const float *logits) {
    if (!s || !logits) return -1;
    size_t n = select_candidates(s, logits);
    if (s->p.temp <= 0.0f) return s->cand[0].id;

    /* One random number per call, whatever the candidates. */
    double u = rng_uniform(s->rng);
    double sum = compute_weights(s, n);
    double target = u * sum, cum = 0.0;
    for (size_t i = 0; i < n; i++) {
        cum += s->weight[i];
        if (cum > target) return s->cand[i].id;
    }
    /* Rounding left the target past the last step: the last token with weight. */
    for (size_t i = n; i-- > 0;)
        if (s->weight[i] > 0.0) return s->cand[i].id;
    return s->cand[0].id;
}

int32_t sl_sampler_candidates(sl_sampler *s, const float *logits, int32_t *ids, float *probs,
                              int32_t max) {
    if (!s || !logits) return -1;
    size_t n = select_candidates(s, logits);
    qsort(s->cand, n, sizeof *s->cand, compare_best_first);
    double sum = compute_weights(s, n);
    for (size_t i = 0; i < n && (int64_t)i < (int64_t)max; i++) {
        if (ids) ids[i] = s->cand[i].id;
        if (probs) probs[i] = (float)(s->weight[i] / sum);
    }
    return (int32_t)n;
}
