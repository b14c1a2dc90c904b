/* test_quant.c - tensor types and quant formats (src/quant): the type table,
 * f16/bf16 conversions (exhaustive round trips, rounding), quantize/dequantize
 * error bounds, dot products against float dots of the dequantized rows, the
 * SIMD kernels against the scalar ones, golden values of every block layout
 * (computed by gguf-py, see tools/check_quant_layouts.py), bad-argument
 * handling, and real llama.cpp-quantized tensors from the shared test data. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf/gguf.h"
#include "quant/quant.h"
#include "test.h"

static const sl_type all_types[] = {
    SL_TYPE_F32,  SL_TYPE_F16,  SL_TYPE_BF16, SL_TYPE_Q4_0, SL_TYPE_Q4_1, SL_TYPE_Q5_0,
    SL_TYPE_Q5_1, SL_TYPE_Q8_0, SL_TYPE_Q8_1, SL_TYPE_Q2_K, SL_TYPE_Q3_K, SL_TYPE_Q4_K,
    SL_TYPE_Q5_K, SL_TYPE_Q6_K, SL_TYPE_Q8_K, SL_TYPE_IQ4_NL,
};
#define N_TYPES (int)(sizeof all_types / sizeof all_types[0])

/* ---- random numbers --------------------------------------------------- */

static uint64_t rng_state = 1;
static uint64_t rng_next(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}
static double rng_unit(void) { return ((rng_next() >> 11) + 0.5) / 9007199254740992.0; }
static float rng_normal(void) {
    return (float)(sqrt(-2 * log(rng_unit())) * cos(6.283185307179586 * rng_unit()));
}
static void random_floats(float *x, int64_t n, int kind) {
    for (int64_t i = 0; i < n; i++) {
        switch (kind % 4) {
        case 0: x[i] = rng_normal(); break;
        case 1: x[i] = (float)(rng_unit() * 2 - 1); break;
        case 2: x[i] = rng_normal() * (rng_unit() < 0.01 ? 20.0f : 1.0f); break; /* outliers */
        default: x[i] = (float)(rng_unit() + 0.5) * 0.01f; break;                 /* one-signed, small */
        }
    }
}

/* Random block bytes with sane f16 scale fields: the generator of
 * tools/quant_oracle_driver.c (same LCG, same order), so the golden values
 * below describe these bytes. */
static uint64_t lcg_state;
static uint8_t lcg_byte(void) {
    lcg_state = lcg_state * 6364136223846793005ull + 1442695040888963407ull;
    return (uint8_t)(lcg_state >> 33);
}
static double lcg_unit(void) {
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) v = (v << 8) | lcg_byte();
    return (v + 0.5) / 4294967296.0;
}
static uint16_t sane_f16(void) {
    uint16_t lo = lcg_byte(), hi = lcg_byte();
    uint16_t mant = (uint16_t)((lo | (hi << 8)) & 0x3ff);
    uint16_t exp = (uint16_t)(15 - 8 + lcg_byte() % 8);
    uint16_t sign = (uint16_t)((lcg_byte() & 1) << 15);
    return (uint16_t)(sign | (exp << 10) | mant);
}
static const int *f16_fields(sl_type t) {
    static const int d0[] = {0, -1}, d0m2[] = {0, 2, -1}, q2k[] = {80, 82, -1}, q3k[] = {108, -1},
                     q6k[] = {208, -1}, none[] = {-1};
    switch (t) {
    case SL_TYPE_Q4_0: case SL_TYPE_Q5_0: case SL_TYPE_Q8_0: case SL_TYPE_IQ4_NL: return d0;
    case SL_TYPE_Q4_1: case SL_TYPE_Q5_1: case SL_TYPE_Q8_1: case SL_TYPE_Q4_K: case SL_TYPE_Q5_K: return d0m2;
    case SL_TYPE_Q2_K: return q2k;
    case SL_TYPE_Q3_K: return q3k;
    case SL_TYPE_Q6_K: return q6k;
    default: return none;
    }
}
static void random_blocks(sl_type t, int64_t nblocks, uint8_t *out) {
    size_t size = sl_type_get(t)->type_size;
    for (int64_t b = 0; b < nblocks; b++) {
        uint8_t *blk = out + b * size;
        for (size_t i = 0; i < size; i++) blk[i] = lcg_byte();
        if (t == SL_TYPE_F16) {
            uint16_t h = sane_f16();
            memcpy(blk, &h, 2);
        } else if (t == SL_TYPE_BF16) {
            uint16_t sign = (uint16_t)((lcg_byte() & 0x80) << 8);
            uint16_t h = (uint16_t)(sign | (0x3c00 + lcg_byte() % 0x600));
            memcpy(blk, &h, 2);
        } else if (t == SL_TYPE_F32) {
            float f = (float)(lcg_unit() * 2 - 1);
            memcpy(blk, &f, 4);
        } else if (t == SL_TYPE_Q8_K) {
            float d = (float)(lcg_unit() * 0.01);
            memcpy(blk, &d, 4);
        } else {
            for (const int *f = f16_fields(t); *f >= 0; f++) {
                uint16_t h = sane_f16();
                memcpy(blk + *f, &h, 2);
            }
        }
    }
}

static uint32_t f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static float bits_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

/* ---- type table --------------------------------------------------------- */

static void test_type_table(void) {
    static const struct { sl_type t; const char *name; int bs; size_t size; sl_type dot; bool q; } want[] = {
        {SL_TYPE_F32, "F32", 1, 4, SL_TYPE_F32, false},      {SL_TYPE_F16, "F16", 1, 2, SL_TYPE_F16, false},
        {SL_TYPE_BF16, "BF16", 1, 2, SL_TYPE_BF16, false},   {SL_TYPE_Q4_0, "Q4_0", 32, 18, SL_TYPE_Q8_0, true},
        {SL_TYPE_Q4_1, "Q4_1", 32, 20, SL_TYPE_Q8_1, true},  {SL_TYPE_Q5_0, "Q5_0", 32, 22, SL_TYPE_Q8_0, true},
        {SL_TYPE_Q5_1, "Q5_1", 32, 24, SL_TYPE_Q8_1, true},  {SL_TYPE_Q8_0, "Q8_0", 32, 34, SL_TYPE_Q8_0, true},
        {SL_TYPE_Q8_1, "Q8_1", 32, 36, SL_TYPE_Q8_1, true},  {SL_TYPE_Q2_K, "Q2_K", 256, 84, SL_TYPE_Q8_K, true},
        {SL_TYPE_Q3_K, "Q3_K", 256, 110, SL_TYPE_Q8_K, true}, {SL_TYPE_Q4_K, "Q4_K", 256, 144, SL_TYPE_Q8_K, true},
        {SL_TYPE_Q5_K, "Q5_K", 256, 176, SL_TYPE_Q8_K, true}, {SL_TYPE_Q6_K, "Q6_K", 256, 210, SL_TYPE_Q8_K, true},
        {SL_TYPE_Q8_K, "Q8_K", 256, 292, SL_TYPE_Q8_K, true}, {SL_TYPE_IQ4_NL, "IQ4_NL", 32, 18, SL_TYPE_Q8_0, true},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const sl_type_info *info = sl_type_get(want[i].t);
        CHECKF(info != NULL, "type %d", want[i].t);
        if (!info) continue;
        CHECKF(strcmp(info->name, want[i].name) == 0, "%s", want[i].name);
        CHECK(info->block_size == want[i].bs);
        CHECKF(info->type_size == want[i].size, "%s size %zu", want[i].name, info->type_size);
        CHECK(info->vec_dot_type == want[i].dot);
        CHECK(info->is_quantized == want[i].q);
        CHECK(strcmp(sl_type_name(want[i].t), want[i].name) == 0);
        CHECK(sl_type_from_name(want[i].name) == (int)want[i].t);
        /* the activation format of every type is itself a supported type */
        CHECK(sl_type_get(info->vec_dot_type) != NULL);
        CHECK(sl_row_size(want[i].t, 0) == 0);
        CHECK(sl_row_size(want[i].t, want[i].bs * 3) == 3 * want[i].size);
        if (want[i].bs > 1) {
            CHECK(sl_row_size(want[i].t, want[i].bs + 1) == 0);
            CHECK(sl_row_size(want[i].t, want[i].bs / 2) == 0);
        }
        CHECK(sl_row_size(want[i].t, -want[i].bs) == 0);
    }
    /* known ggml ids that we cannot compute with keep their names */
    static const struct { int id; const char *name; } named[] = {
        {16, "IQ2_XXS"}, {17, "IQ2_XS"}, {18, "IQ3_XXS"}, {19, "IQ1_S"}, {21, "IQ3_S"}, {22, "IQ2_S"},
        {23, "IQ4_XS"}, {24, "I8"}, {25, "I16"}, {26, "I32"}, {27, "I64"}, {28, "F64"}, {29, "IQ1_M"},
        {34, "TQ1_0"}, {35, "TQ2_0"}, {39, "MXFP4"},
    };
    for (size_t i = 0; i < sizeof named / sizeof named[0]; i++) {
        CHECK(sl_type_get(named[i].id) == NULL);
        const char *name = sl_type_name(named[i].id);
        CHECKF(name && strcmp(name, named[i].name) == 0, "id %d", named[i].id);
        CHECK(sl_type_from_name(named[i].name) == named[i].id);
        CHECK(sl_row_size((sl_type)named[i].id, 256) == 0);
    }
    CHECK(sl_type_from_name("q4_k") == SL_TYPE_Q4_K);
    CHECK(sl_type_from_name("iq4_nl") == SL_TYPE_IQ4_NL);
    CHECK(sl_type_from_name("bf16") == SL_TYPE_BF16);
    CHECK(sl_type_from_name("Q4_K_M") == -1);
    CHECK(sl_type_from_name("") == -1);
    CHECK(sl_type_from_name(NULL) == -1);
    CHECK(sl_type_from_name("Q4") == -1);
    CHECK(sl_type_get(-1) == NULL && sl_type_name(-1) == NULL);
    CHECK(sl_type_get(SL_TYPE_COUNT) == NULL && sl_type_name(SL_TYPE_COUNT) == NULL);
    CHECK(sl_type_get(1000) == NULL && sl_type_name(1000) == NULL);
    CHECK(sl_type_name(4) != NULL && sl_type_get(4) == NULL); /* removed Q4_2 */
    CHECK(sl_row_size((sl_type)-1, 32) == 0 && sl_row_size((sl_type)99, 32) == 0);
    CHECK(sl_row_size(SL_TYPE_F32, INT64_MAX) == 0); /* overflows */
}

/* ---- f16 / bf16 --------------------------------------------------------- */

/* f16 -> f32 by definition, independent of the code under test. */
static double f16_value(uint16_t h) {
    int exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
    double v = exp == 0 ? ldexp(mant, -24) : ldexp(1024 + mant, exp - 25);
    return h & 0x8000 ? -v : v;
}

static void test_f16_exhaustive(void) {
    int bad_value = 0, bad_roundtrip = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = sl_f16_to_f32((uint16_t)h);
        int exp = (h >> 10) & 0x1f;
        if (exp == 31) {
            bool is_nan = (h & 0x3ff) != 0;
            if (is_nan != isnan(f) || (!is_nan && (!isinf(f) || (signbit(f) != 0) != ((h & 0x8000) != 0)))) bad_value++;
        } else if ((double)f != f16_value((uint16_t)h) || (signbit(f) != 0) != ((h & 0x8000) != 0)) {
            bad_value++;
        }
        if (sl_f32_to_f16(f) != h) bad_roundtrip++; /* NaN payloads included */
    }
    CHECKF(bad_value == 0, "%d wrong f16 values", bad_value);
    CHECKF(bad_roundtrip == 0, "%d f16 values do not round-trip", bad_roundtrip);
}

/* The nearest f16 to f (ties to even), by search over the f16 values. */
static uint16_t f16_nearest(float f) {
    double x = fabs((double)f);
    uint16_t sign = signbit(f) ? 0x8000 : 0;
    if (x >= 65520.0) return sign | 0x7c00;
    uint16_t lo = 0, hi = 0x7bff; /* largest f16 <= x by binary search */
    while (lo < hi) {
        uint16_t mid = (uint16_t)((lo + hi + 1) / 2);
        if (f16_value(mid) <= x) lo = mid;
        else hi = (uint16_t)(mid - 1);
    }
    if (lo == 0x7bff) return sign | lo;
    double below = f16_value(lo), above = f16_value((uint16_t)(lo + 1));
    uint16_t pick = x - below < above - x ? lo : x - below > above - x ? (uint16_t)(lo + 1) : (lo & 1 ? (uint16_t)(lo + 1) : lo);
    return sign | pick;
}

static void test_f32_to_f16_rounding(void) {
    int bad = 0;
    /* a sweep over all exponents and many mantissas, and every halfway point */
    for (uint64_t u = 0; u < 0x80000000u && bad < 10; u += 0x3777) {
        float f = bits_f32((uint32_t)u);
        if (isnan(f)) continue;
        if (sl_f32_to_f16(f) != f16_nearest(f) || sl_f32_to_f16(-f) != f16_nearest(-f)) bad++;
    }
    for (uint16_t h = 0; h < 0x7bff && bad < 10; h++) {
        float mid = (float)((f16_value(h) + f16_value((uint16_t)(h + 1))) / 2); /* exact in float */
        uint16_t want = h & 1 ? (uint16_t)(h + 1) : h;
        if (sl_f32_to_f16(mid) != want || sl_f32_to_f16(-mid) != (want | 0x8000)) bad++;
        float above = nextafterf(mid, INFINITY), below = nextafterf(mid, 0);
        if (sl_f32_to_f16(above) != h + 1 || sl_f32_to_f16(below) != h) bad++;
    }
    CHECKF(bad == 0, "%d wrongly rounded values", bad);
    CHECK(sl_f32_to_f16(65504.0f) == 0x7bff);
    CHECK(sl_f32_to_f16(65519.99f) == 0x7bff);
    CHECK(sl_f32_to_f16(65520.0f) == 0x7c00);
    CHECK(sl_f32_to_f16(1e10f) == 0x7c00 && sl_f32_to_f16(-1e10f) == 0xfc00);
    CHECK(sl_f32_to_f16(INFINITY) == 0x7c00 && sl_f32_to_f16(-INFINITY) == 0xfc00);
    CHECK((sl_f32_to_f16(NAN) & 0x7c00) == 0x7c00 && (sl_f32_to_f16(NAN) & 0x3ff) != 0);
    CHECK(sl_f32_to_f16(bits_f32(0x7f800001u)) != 0x7c00); /* tiny payload stays NaN */
    CHECK(sl_f32_to_f16(5.96046448e-08f) == 0x0001);  /* 2^-24 */
    CHECK(sl_f32_to_f16(2.98023224e-08f) == 0x0000);  /* 2^-25: tie to even zero */
    CHECK(sl_f32_to_f16(2.99e-08f) == 0x0001);
    CHECK(sl_f32_to_f16(-0.0f) == 0x8000);
    CHECK(sl_f32_to_f16(1e-30f) == 0 && sl_f32_to_f16(bits_f32(1)) == 0);
}

static void test_bf16(void) {
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = sl_bf16_to_f32((uint16_t)h);
        if (f32_bits(f) != h << 16) bad++;
        uint16_t back = sl_f32_to_bf16(f);
        bool nan = (h & 0x7f80) == 0x7f80 && (h & 0x7f);
        if (nan ? back != (h | 0x40) : back != h) bad++;
    }
    CHECKF(bad == 0, "%d bf16 values wrong", bad);
    /* round to nearest even on the 16 dropped bits */
    CHECK(sl_f32_to_bf16(bits_f32(0x3f808000u)) == 0x3f80); /* tie, even stays */
    CHECK(sl_f32_to_bf16(bits_f32(0x3f818000u)) == 0x3f82); /* tie, odd rounds up */
    CHECK(sl_f32_to_bf16(bits_f32(0x3f808001u)) == 0x3f81);
    CHECK(sl_f32_to_bf16(bits_f32(0x3f807fffu)) == 0x3f80);
    CHECK(sl_f32_to_bf16(bits_f32(0x7f7fffffu)) == 0x7f80); /* FLT_MAX rounds to inf */
    CHECK(sl_f32_to_bf16(bits_f32(0xff800000u)) == 0xff80);
    CHECK(sl_f32_to_bf16(bits_f32(0x7f800001u)) == 0x7fc0); /* signalling NaN comes back quiet */
}

/* ---- quantization error and dot products ------------------------------- */

static double rmse_rel(const float *a, const float *b, int64_t n) {
    double e = 0, s = 0;
    for (int64_t i = 0; i < n; i++) {
        e += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        s += (double)b[i] * b[i];
    }
    return sqrt(e / s);
}

/* rmse/rms bound of a quantize -> dequantize round trip of normal data. */
static double round_trip_bound(sl_type t) {
    switch (t) {
    case SL_TYPE_F32: return 0;
    case SL_TYPE_F16: return 2.5e-4;
    case SL_TYPE_BF16: return 2.0e-3;
    case SL_TYPE_Q4_0: return 0.098;
    case SL_TYPE_Q4_1: return 0.089;
    case SL_TYPE_Q5_0: return 0.050;
    case SL_TYPE_Q5_1: return 0.043;
    case SL_TYPE_Q8_0: case SL_TYPE_Q8_1: return 0.0062;
    case SL_TYPE_Q2_K: return 0.33;
    case SL_TYPE_Q3_K: return 0.175;
    case SL_TYPE_Q4_K: return 0.080;
    case SL_TYPE_Q5_K: return 0.041;
    case SL_TYPE_Q6_K: return 0.0205;
    case SL_TYPE_Q8_K: return 0.0082;
    case SL_TYPE_IQ4_NL: return 0.088;
    default: return 0;
    }
}

static void test_round_trip(void) {
    enum { N = 8192 };
    static float x[N], y[N];
    static uint8_t q[N * 4];
    rng_state = 12345;
    for (int k = 0; k < N_TYPES; k++) {
        sl_type t = all_types[k];
        random_floats(x, N, 0);
        size_t bytes = sl_quantize_row(t, x, q, N);
        CHECK(bytes == sl_row_size(t, N));
        sl_dequantize_row(t, q, y, N);
        double err = rmse_rel(y, x, N);
        CHECKF(err <= round_trip_bound(t), "%s: rmse/rms %.5f > %.5f", sl_type_name(t), err, round_trip_bound(t));
        if (getenv("TEST_VERBOSE")) fprintf(stderr, "  %-7s rmse/rms %.5f (bound %.5f)\n", sl_type_name(t), err, round_trip_bound(t));
        /* other distributions: still a faithful (if looser) copy */
        for (int kind = 1; kind < 4; kind++) {
            random_floats(x, N, kind);
            sl_quantize_row(t, x, q, N);
            sl_dequantize_row(t, q, y, N);
            double e = rmse_rel(y, x, N);
            CHECKF(e <= 4.5 * round_trip_bound(t) + 1e-7, "%s kind %d: rmse/rms %.5f", sl_type_name(t), kind, e);
            if (getenv("TEST_VERBOSE")) fprintf(stderr, "  %-7s kind %d rmse/rms %.5f\n", sl_type_name(t), kind, e);
        }
        /* zeros stay zeros, and the quantizers are deterministic */
        memset(x, 0, sizeof x);
        sl_quantize_row(t, x, q, N);
        sl_dequantize_row(t, q, y, N);
        int nonzero = 0;
        for (int i = 0; i < N; i++) nonzero += y[i] != 0;
        CHECKF(nonzero == 0, "%s: zeros do not stay zero", sl_type_name(t));
    }
}

/* sum of |w_i a_i| over the dequantized rows, the scale of dot errors, and
 * the float dot itself. */
static double float_dot(sl_type wt, const void *w, sl_type at, const void *a, int64_t n, double *abs_sum) {
    float *fw = malloc((size_t)n * sizeof(float)), *fa = malloc((size_t)n * sizeof(float));
    sl_dequantize_row(wt, w, fw, n);
    sl_dequantize_row(at, a, fa, n);
    double dot = 0, s = 0;
    for (int64_t i = 0; i < n; i++) {
        dot += (double)fw[i] * fa[i];
        s += fabs((double)fw[i] * fa[i]);
    }
    free(fw);
    free(fa);
    *abs_sum = s;
    return dot;
}

/* The dot product of quantized rows is the float dot of their dequantized
 * values (exact integer sums, float scaling). Q4_1/Q5_1 use Q8_1's s field,
 * which holds d*sum(q) rounded to f16: a small extra error. */
static void test_dot_vs_float(void) {
    enum { N = 4096 };
    static float x[N];
    static uint8_t w[N * 4], a[N * 4];
    rng_state = 777;
    for (int k = 0; k < N_TYPES; k++) {
        sl_type t = all_types[k];
        sl_type at = sl_type_get(t)->vec_dot_type;
        double worst = 0, worst_exact = 0;
        for (int trial = 0; trial < 8; trial++) {
            random_floats(x, N, trial);
            sl_quantize_row(t, x, w, N);
            float exact_w[N];
            memcpy(exact_w, x, sizeof exact_w);
            random_floats(x, N, 0);
            sl_quantize_row(at, x, a, N);
            double s, want = float_dot(t, w, at, a, N, &s);
            double got = sl_vec_dot_ref(t, N, w, a);
            double fast = sl_vec_dot(t, N, w, a);
            double e = fabs(got - want) / s, ef = fabs(fast - want) / s;
            if (e > worst) worst = e;
            if (ef > worst) worst = ef;
            /* against the unquantized rows: quantization error of both sides */
            double exact = 0, exact_abs = 0;
            for (int i = 0; i < N; i++) {
                exact += (double)exact_w[i] * x[i];
                exact_abs += fabs((double)exact_w[i] * x[i]);
            }
            double ee = fabs(got - exact) / exact_abs;
            if (ee > worst_exact) worst_exact = ee;
        }
        double bound = (t == SL_TYPE_Q4_1 || t == SL_TYPE_Q5_1) ? 1e-3 : 2e-6;
        CHECKF(worst <= bound, "%s: dot vs dequantized float dot: rel %.3g", sl_type_name(t), worst);
        CHECKF(worst_exact <= 0.1, "%s: dot vs unquantized dot: rel %.3g", sl_type_name(t), worst_exact);
        if (getenv("TEST_VERBOSE")) fprintf(stderr, "  %-7s dot rel err %.3g, vs float %.3g\n", sl_type_name(t), worst, worst_exact);
    }
}

/* SIMD against scalar: many rows of many lengths, from the quantizers and
 * from random bytes (every bit pattern of levels and scales). */
static void fast_vs_ref(const char *backend) {
    enum { MAXB = 40 };
    static float x[MAXB * 256];
    static uint8_t w[MAXB * 292], a[MAXB * 292];
    if (sl_quant_set_backend(backend) != 0) {
        fprintf(stderr, "  (no %s kernels on this machine)\n", backend);
        return;
    }
    CHECK(strcmp(sl_quant_backend(), backend) == 0);
    rng_state = 4242;
    lcg_state = 4242;
    for (int k = 0; k < N_TYPES; k++) {
        sl_type t = all_types[k];
        const sl_type_info *info = sl_type_get(t);
        sl_type at = info->vec_dot_type;
        int bs = info->block_size > 1 ? info->block_size : 1;
        double worst = 0;
        int mismatched_quant = 0;
        for (int trial = 0; trial < 200; trial++) {
            int64_t n;
            if (bs == 1) n = 1 + (int64_t)(rng_next() % 700);
            else n = bs * (1 + (int64_t)(rng_next() % (bs == 256 ? 8 : MAXB)));
            if (trial % 2) {
                random_blocks(t, n / bs, w);
            } else {
                random_floats(x, n, trial / 2);
                sl_quantize_row(t, x, w, n);
            }
            random_floats(x, n, trial % 3);
            sl_quantize_row(at, x, a, n);
            /* the fast activation quantizer gives the scalar one's bytes */
            sl_quant_force_scalar(true);
            static uint8_t a_ref[MAXB * 292];
            sl_quantize_row(at, x, a_ref, n);
            sl_quant_force_scalar(false);
            if (memcmp(a, a_ref, sl_row_size(at, n)) != 0) mismatched_quant++;
            double s;
            float_dot(t, w, at, a, n, &s);
            float ref = sl_vec_dot_ref(t, n, w, a), fast = sl_vec_dot(t, n, w, a);
            double e = fabs((double)fast - ref) / (s + 1e-30);
            if (!(e <= worst)) worst = e; /* NaN counts as worst */
        }
        /* several activation rows at once: the single-row results, bit for bit */
        {
            enum { NACT = 7 };
            static uint8_t acts[NACT][MAXB * 292];
            int64_t n = bs == 1 ? 333 : bs * (bs == 256 ? 5 : 13);
            random_floats(x, n, 1);
            sl_quantize_row(t, x, w, n);
            size_t stride = sizeof acts[0];
            for (int j = 0; j < NACT; j++) {
                random_floats(x, n, j);
                sl_quantize_row(at, x, acts[j], n);
            }
            float out[2 * NACT];
            sl_vec_dot_multi(t, n, w, acts, stride, NACT, out, 2);
            int differ = 0;
            for (int j = 0; j < NACT; j++) differ += memcmp(&out[2 * j], &(float){sl_vec_dot(t, n, w, acts[j])}, 4) != 0;
            CHECKF(differ == 0, "%s %s: %d of %d multi-row dots differ from single ones", backend, info->name, differ, NACT);
        }
        CHECKF(worst <= 4e-6, "%s %s: fast vs reference dot: rel %.3g", backend, info->name, worst);
        CHECKF(mismatched_quant == 0, "%s %s: %d activation rows differ from the scalar quantizer", backend,
               sl_type_name(at), mismatched_quant);
        if (getenv("TEST_VERBOSE")) fprintf(stderr, "  %s %-7s fast vs ref %.3g\n", backend, info->name, worst);
    }
    sl_quant_set_backend("auto");
}

static void test_fast_vs_ref(void) {
    fprintf(stderr, "  quant backend: %s\n", sl_quant_backend());
    const char *best = sl_quant_backend();
    fast_vs_ref("avx2");
    fast_vs_ref("avx512");
    CHECK(strcmp(sl_quant_backend(), best) == 0);
    CHECK(sl_quant_set_backend("no-such-kernels") == -1);
    static float x[1024];
    static uint8_t w[4 * 144], a[4 * 292];
    /* forcing scalar makes sl_vec_dot the reference */
    sl_quant_force_scalar(true);
    CHECK(strcmp(sl_quant_backend(), "scalar") == 0);
    random_blocks(SL_TYPE_Q4_K, 4, w);
    random_floats(x, 1024, 0);
    sl_quantize_row(SL_TYPE_Q8_K, x, a, 1024);
    CHECK(sl_vec_dot(SL_TYPE_Q4_K, 1024, w, a) == sl_vec_dot_ref(SL_TYPE_Q4_K, 1024, w, a));
    sl_quant_force_scalar(false);
    CHECK(sl_vec_dot_kernel(SL_TYPE_Q4_0) != NULL && sl_vec_dot_kernel((sl_type)16) == NULL);
}

/* Edge cases of the activation quantizers: ties, huge and tiny values. */
static void test_activation_edge_cases(void) {
    static float x[512];
    static uint8_t q[1024], r[1024];
    const sl_type acts[] = {SL_TYPE_Q8_0, SL_TYPE_Q8_1, SL_TYPE_Q8_K, SL_TYPE_F16};
    for (int c = 0; c < 6; c++) {
        for (int i = 0; i < 512; i++) {
            switch (c) {
            case 0: x[i] = (float)((i % 255) - 127); break;       /* exact levels */
            case 1: x[i] = (float)(i % 64) * 0.5f - 16; break;    /* ties after scaling */
            case 2: x[i] = i == 7 ? 3e38f : 1.0f; break;          /* huge */
            case 3: x[i] = (float)(i % 5) * 1e-40f; break;        /* subnormal */
            case 4: x[i] = i % 2 ? -1.0f : 1.0f; break;            /* equal magnitudes, both signs */
            default: x[i] = -(float)i; break;
            }
        }
        for (size_t k = 0; k < sizeof acts / sizeof acts[0]; k++) {
            sl_quant_force_scalar(true);
            size_t bytes = sl_quantize_row(acts[k], x, r, 512);
            sl_quant_force_scalar(false);
            const char *backends[] = {"avx2", "avx512"};
            for (int b = 0; b < 2; b++) {
                if (sl_quant_set_backend(backends[b]) != 0) continue;
                sl_quantize_row(acts[k], x, q, 512);
                CHECKF(memcmp(q, r, bytes) == 0, "%s %s case %d: fast quantizer differs", backends[b],
                       sl_type_name(acts[k]), c);
            }
            sl_quant_set_backend("auto");
        }
    }
    /* Q8_K keeps the sign of the first largest element and its bsums */
    for (int i = 0; i < 256; i++) x[i] = i == 3 ? -2.0f : i == 9 ? 2.0f : 0.5f;
    sl_quantize_row(SL_TYPE_Q8_K, x, q, 256);
    float d;
    memcpy(&d, q, 4);
    CHECK(d > 0 && (int8_t)q[4 + 3] == -127 && (int8_t)q[4 + 9] == 127);
    int16_t bsum0;
    memcpy(&bsum0, q + 4 + 256, 2);
    int s = 0;
    for (int i = 0; i < 16; i++) s += (int8_t)q[4 + i];
    CHECK(bsum0 == s);
}

/* ---- layouts: golden values from gguf-py ------------------------------ */

/* tools/check_quant_layouts.py --golden: dequantization by gguf-py of the
 * random blocks above (seed 99, 2 blocks or 64 elements): the sum of all
 * values and the values at 0, 1, n/7, n/3, n/2, n-5, n-1. */
static const struct { sl_type t; double sum; float v[7]; } golden[] = {
    {SL_TYPE_F32, -4.0853002183139324, {-0.71367681, 0.304229409, 0.0528085157, 0.736788213, -0.972501755, -0.0817252249, -0.11667525}},
    {SL_TYPE_F16, -1.5554771423339844, {0.0869140625, 0.302734375, 0.0688476562, -0.0128173828, 0.00768661499, -0.352294922, -0.121520996}},
    {SL_TYPE_BF16, -0.1412353515625, {-0.0149536133, 0.0107421875, -0.0112304688, 0.0296630859, -0.0103149414, -0.0119628906, 0.029296875}},
    {SL_TYPE_Q4_0, 4.481201171875, {1.44042969, 0.540161133, -0.720214844, 0.900268555, -0.0498046875, -0.0747070312, -0.0622558594}},
    {SL_TYPE_Q4_1, 44.031784057617188, {0.417327881, 0.38722229, 0.477539062, 0.311958313, 1.13623047, 0.475219727, 1.90740967}},
    {SL_TYPE_Q5_0, -6.0074462890625, {0.350280762, 1.86816406, 1.63464355, -0.350280762, -0.881347656, -1.5423584, -0.110168457}},
    {SL_TYPE_Q5_1, 264.00390625, {3.8134613, 1.90330505, 10.0214691, 14.7968597, 0.319580078, 1.48999023, 0.594970703}},
    {SL_TYPE_Q8_0, -102.9072265625, {-51.4335938, 53.7297363, 27.5537109, 34.4421387, 80.0625, -92.5722656, 72.5566406}},
    {SL_TYPE_Q8_1, 85.729827880859375, {18.8085938, -47.0214844, -8.359375, -50.6787109, -0.541534424, -1.58294678, 0.583190918}},
    {SL_TYPE_Q2_K, -986.39806365966797, {2.59179688, 2.11083984, -1.27587891, -4.44555664, -0.0124282837, -1.83984375, -1.86055756}},
    {SL_TYPE_Q3_K, -4.2630195617675781, {0, -0.0841941833, -0.0561294556, 0.120277405, 0.141563416, 0.113250732, 0.339752197}},
    {SL_TYPE_Q4_K, -20012.600074768066, {-1.04956055, -1.43270874, -2.15411377, 0.605361938, -91.6624374, -0.321876526, -0.321876526}},
    {SL_TYPE_Q5_K, 8066.0496368408203, {-9.29818726, -11.3861389, -12.0529709, -14.5446777, 116.991943, 91.1852417, 106.320007}},
    {SL_TYPE_Q6_K, 11552.1005859375, {110.48291, -42.7675781, -26.1357422, -173.050293, -58.7402344, -663.373047, -947.675781}},
    {SL_TYPE_Q8_K, -5.5443142876029015, {0.314868897, -0.787172258, -0.542274237, 0.166180819, -0.186837077, 0.0160146058, 0.146800563}},
    {SL_TYPE_IQ4_NL, 50.9912109375, {22.8668213, 6.30187988, -9.54284668, 11.7034912, -0.610107422, -1.03344727, -0.809326172}},
};

static void test_golden_layouts(void) {
    static uint8_t blocks[2 * 292];
    static float y[512];
    for (size_t g = 0; g < sizeof golden / sizeof golden[0]; g++) {
        sl_type t = golden[g].t;
        const sl_type_info *info = sl_type_get(t);
        int64_t nblocks = info->block_size > 1 ? 2 : 64;
        int64_t n = nblocks * info->block_size;
        lcg_state = 99;
        random_blocks(t, nblocks, blocks);
        sl_dequantize_row(t, blocks, y, n);
        double sum = 0, mag = 0;
        for (int64_t i = 0; i < n; i++) {
            sum += y[i];
            mag += fabs(y[i]);
        }
        CHECKF(fabs(sum - golden[g].sum) <= 1e-6 * mag, "%s: sum %.17g, gguf-py %.17g", info->name, sum, golden[g].sum);
        const int64_t picks[7] = {0, 1, n / 7, n / 3, n / 2, n - 5, n - 1};
        for (int p = 0; p < 7; p++) {
            float want = golden[g].v[p];
            CHECKF(fabsf(y[picks[p]] - want) <= 1e-6f * fabsf(want) + 1e-30f, "%s: value %lld is %.9g, gguf-py %.9g",
                   info->name, (long long)picks[p], y[picks[p]], want);
        }
    }
}

/* ---- bad arguments ------------------------------------------------------ */

static void test_bad_arguments(void) {
    float x[64], y[64];
    uint8_t q[256];
    for (int i = 0; i < 64; i++) x[i] = (float)i;
    CHECK(sl_quantize_row((sl_type)16, x, q, 32) == 0); /* IQ2_XXS: known, unsupported */
    CHECK(sl_quantize_row((sl_type)-3, x, q, 32) == 0);
    CHECK(sl_quantize_row(SL_TYPE_Q4_0, x, q, 33) == 0);
    CHECK(sl_quantize_row(SL_TYPE_Q4_K, x, q, 64) == 0);
    CHECK(sl_quantize_row(SL_TYPE_Q4_0, x, q, -32) == 0);
    CHECK(sl_quantize_row(SL_TYPE_Q4_0, x, q, 0) == 0);
    sl_dequantize_row((sl_type)16, q, y, 64);
    int nans = 0;
    for (int i = 0; i < 64; i++) nans += isnan(y[i]);
    CHECK(nans == 64);
    for (int i = 0; i < 64; i++) y[i] = 0;
    sl_dequantize_row(SL_TYPE_Q4_0, q, y, 40);
    nans = 0;
    for (int i = 0; i < 40; i++) nans += isnan(y[i]);
    CHECK(nans == 40 && y[40] == 0); /* n elements, no more */
    CHECK(isnan(sl_vec_dot((sl_type)16, 32, q, q)));
    CHECK(isnan(sl_vec_dot(SL_TYPE_Q4_0, 31, q, q)));
    CHECK(isnan(sl_vec_dot_ref(SL_TYPE_Q4_K, 32, q, q)));
    float outs[3] = {0, 0, 0};
    sl_vec_dot_multi(SL_TYPE_Q4_K, 32, q, q, 0, 2, outs, 1);
    CHECK(isnan(outs[0]) && isnan(outs[1]) && outs[2] == 0);
    CHECK(sl_vec_dot(SL_TYPE_Q8_0, 0, q, q) == 0.0f);
    /* odd lengths of the plain types */
    float a[7] = {1, 2, 3, 4, 5, 6, 7}, b[7] = {1, 1, 1, 1, 1, 1, 2};
    CHECK(sl_vec_dot(SL_TYPE_F32, 7, a, b) == 35.0f);
    CHECK(sl_vec_dot(SL_TYPE_F32, 0, a, b) == 0.0f);
    /* rows need no alignment */
    static uint8_t buf[1 + 34 * 4], act[1 + 34 * 4];
    float v[128];
    for (int i = 0; i < 128; i++) v[i] = (float)(i % 17) - 8;
    sl_quantize_row(SL_TYPE_Q8_0, v, buf + 1, 128);
    sl_quantize_row(SL_TYPE_Q8_0, v, act + 1, 128);
    CHECK(sl_vec_dot(SL_TYPE_Q8_0, 128, buf + 1, act + 1) == sl_vec_dot_ref(SL_TYPE_Q8_0, 128, buf + 1, act + 1));
    sl_dequantize_row(SL_TYPE_Q8_0, buf + 1, y, 64);
    CHECK(fabsf(y[5] - v[5]) < 0.05f);
}

/* ---- real tensors ------------------------------------------------------- */

static int seen_types[SL_TYPE_COUNT];

/* Up to 4 rows of a tensor: dequantized values requantize to the same bytes
 * (Q4_0, Q8_0: exact for llama.cpp's quantizer), and the dots agree. */
static void check_real_tensor(const sl_gguf_tensor *t) {
    const sl_type_info *info = sl_type_get(t->type);
    if (!info || !t->data || t->ne[0] % info->block_size) return;
    int64_t n = t->ne[0], rows = t->ne[1] * t->ne[2] * t->ne[3];
    size_t row_bytes = sl_row_size(t->type, n);
    sl_type at = info->vec_dot_type;
    float *f = malloc((size_t)n * sizeof(float)), *x = malloc((size_t)n * sizeof(float));
    uint8_t *requant = malloc(row_bytes), *act = malloc(sl_row_size(at, n));
    seen_types[t->type]++;
    for (int64_t r = 0; r < rows && r < 4; r++) {
        const uint8_t *row = (const uint8_t *)t->data + (rows > 4 ? r * (rows / 4) : r) * row_bytes;
        sl_dequantize_row(t->type, row, f, n);
        bool finite = true;
        for (int64_t i = 0; i < n; i++) finite &= isfinite(f[i]) != 0;
        CHECKF(finite, "%s: non-finite values", t->name);
        if (t->type == SL_TYPE_Q4_0 || t->type == SL_TYPE_Q8_0 || t->type == SL_TYPE_F16 || t->type == SL_TYPE_F32) {
            sl_quantize_row(t->type, f, requant, n);
            CHECKF(memcmp(requant, row, row_bytes) == 0, "%s (%s): quantize(dequantize(row)) differs", t->name, info->name);
        }
        random_floats(x, n, 0);
        sl_quantize_row(at, x, act, n);
        double s, want = float_dot(t->type, row, at, act, n, &s);
        double ref = sl_vec_dot_ref(t->type, n, row, act), fast = sl_vec_dot(t->type, n, row, act);
        CHECKF(fabs(ref - want) <= 2e-6 * s, "%s: reference dot %.9g, float %.9g", t->name, ref, want);
        CHECKF(fabs(fast - ref) <= 4e-6 * s, "%s: fast dot %.9g, reference %.9g", t->name, fast, ref);
    }
    free(f);
    free(x);
    free(requant);
    free(act);
}

static void test_real_tensors(void) {
    static const char *files[] = {"sv-llama-q4_0.gguf", "sv-llama-q8_0.gguf", "sv-llama-q4_k_m.gguf",
                                  "sv-llama-q6_k.gguf", "sv-llama-f16.gguf"};
    char path[1024];
    snprintf(path, sizeof path, "%s/models/%s", test_data_dir(), files[0]);
    FILE *probe = fopen(path, "rb");
    if (!probe) {
        fprintf(stderr, "SKIP real tensors: testdata absent (%s)\n", path);
        const char *ci = getenv("CI");
        CHECKF(!(ci && strcmp(ci, "true") == 0), "CI=true: testdata is required");
        return;
    }
    fclose(probe);
    memset(seen_types, 0, sizeof seen_types);
    rng_state = 31337;
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(path, sizeof path, "%s/models/%s", test_data_dir(), files[i]);
        sl_error err;
        sl_gguf *g = sl_gguf_open_file(path, &err);
        CHECKF(g != NULL, "%s: %s", path, err.msg);
        if (!g) continue;
        for (int64_t k = 0; k < sl_gguf_n_tensors(g); k++) check_real_tensor(sl_gguf_tensor_at(g, k));
        sl_gguf_close(g);
    }
    const sl_type needed[] = {SL_TYPE_Q4_0, SL_TYPE_Q8_0, SL_TYPE_Q4_K, SL_TYPE_Q6_K, SL_TYPE_F16, SL_TYPE_F32};
    for (size_t i = 0; i < sizeof needed / sizeof needed[0]; i++) {
        CHECKF(seen_types[needed[i]] > 0, "no %s tensor seen in the test models", sl_type_name(needed[i]));
    }
}

int main(void) {
    RUN(test_type_table);
    RUN(test_f16_exhaustive);
    RUN(test_f32_to_f16_rounding);
    RUN(test_bf16);
    RUN(test_round_trip);
    RUN(test_dot_vs_float);
    RUN(test_fast_vs_ref);
    RUN(test_activation_edge_cases);
    RUN(test_golden_layouts);
    RUN(test_bad_arguments);
    RUN(test_real_tensors);
    TEST_SUMMARY();
}
