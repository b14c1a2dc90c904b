/* test_cpu_kernels.c - the CPU matrix-product machinery (src/cpu): packed
 * weight layouts and the blocked kernels against the scalar reference dot
 * products, the activation format against sl_quantize_row, the product
 * driver (several jobs, joint chunks, epilogues, fused RMSNorm) against
 * plain rows for 1..3 threads, and the thread pool's barrier. */
#include <math.h>
#include <stdatomic.h>

#include "cpu/gemm.h"
#include "cpu/matmul.h"
#include "cpu/threadpool.h"
#include "test.h"

static uint64_t rng_state = 7;
static double rng_unit(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return ((rng_state >> 11) + 0.5) / 9007199254740992.0;
}
static float rng_normal(void) {
    return (float)(sqrt(-2 * log(rng_unit())) * cos(6.283185307179586 * rng_unit()));
}
/* When set, the extremes that integer sums must survive: activations all
 * +-1 (every level +-127), Q4 and Q6_K weights mostly at their top level
 * (the relaxed-SIMD kernels sum such products in int16), Q8_0 weights of
 * every byte value, -128 too (which quantizing never makes but a file may
 * hold). */
static bool extreme_values;

/* kind 0: normal, 1: uniform, 2: with outliers, 3: all positive and small */
static void random_floats(float *x, int64_t n, int kind) {
    if (extreme_values) {
        for (int64_t i = 0; i < n; i++) x[i] = rng_unit() < 0.5 ? -1.0f : 1.0f;
        return;
    }
    for (int64_t i = 0; i < n; i++) {
        switch (kind % 4) {
        case 0: x[i] = rng_normal(); break;
        case 1: x[i] = (float)(rng_unit() * 2 - 1); break;
        case 2: x[i] = rng_normal() * (rng_unit() < 0.02 ? 30.0f : 1.0f); break;
        default: x[i] = (float)(rng_unit() + 0.5) * 0.01f; break;
        }
    }
}

static const sl_type packed_types[] = {SL_TYPE_Q4_0, SL_TYPE_Q8_0, SL_TYPE_Q4_K, SL_TYPE_Q6_K};


/* A random weight matrix of `type`, quantized from random floats. */
static uint8_t *random_weight(sl_type type, int64_t rows, int64_t cols, int kind) {
    size_t rb = sl_row_size(type, cols);
    uint8_t *w = malloc(rb * (size_t)rows);
    float *f = malloc((size_t)cols * sizeof(float));
    for (int64_t r = 0; r < rows; r++) {
        random_floats(f, cols, kind + (int)r);
        sl_quantize_row(type, f, w + (size_t)r * rb, cols);
    }
    const size_t blocks = rb / sl_type_get((int)type)->type_size * (size_t)rows;
    for (size_t b = 0; extreme_values && b < blocks; b++) {
        uint8_t *qs = NULL;
        size_t n = 0;
        switch (type) {
        case SL_TYPE_Q8_0: qs = w + 34 * b + 2, n = 32; break;
        case SL_TYPE_Q4_0: qs = w + 18 * b + 2, n = 16; break;
        case SL_TYPE_Q4_K: qs = w + 144 * b + 16, n = 128; break;
        case SL_TYPE_Q6_K: qs = w + 210 * b, n = 192; break; /* ql and qh */
        default: break;
        }
        for (size_t i = 0; i < n; i++)
            qs[i] = type == SL_TYPE_Q8_0 ? (uint8_t)(rng_unit() < 0.2 ? 0x80 : rng_unit() * 256)
                                         : (uint8_t)(rng_unit() < 0.9 ? 0xFF : rng_unit() * 256);
    }
    free(f);
    return w;
}

typedef struct case_data {
    sl_type type, act_type;
    int64_t rows, cols;
    int32_t n;
    uint8_t *w;          /* rows in the file layout */
    size_t row_bytes;
    uint8_t *act_rows;   /* activations as sl_quantize_row makes them */
    size_t act_row_bytes;
    sl_gemm_act act;     /* the same in the kernel format */
    void *act_buf;
    float *ref;          /* [n][rows] sl_vec_dot_ref */
    double *mag;         /* [n][rows] sum over blocks of |contribution| bound, for tolerances */
} case_data;

static void case_init(case_data *c, sl_type type, int64_t rows, int64_t cols, int32_t n, int kind) {
    c->type = type;
    c->act_type = sl_type_get((int)type)->vec_dot_type;
    c->rows = rows, c->cols = cols, c->n = n;
    c->w = random_weight(type, rows, cols, kind);
    c->row_bytes = sl_row_size(type, cols);
    c->act_row_bytes = sl_row_size(c->act_type, cols);
    c->act_rows = malloc(c->act_row_bytes * (size_t)n);
    c->act_buf = aligned_alloc(64, (sl_gemm_act_bytes(c->act_type, n, cols, true) + 63) / 64 * 64);
    sl_gemm_act_init(&c->act, c->act_type, c->act_buf, n, cols, true);
    float *x = malloc((size_t)cols * sizeof(float));
    for (int32_t t = 0; t < n; t++) {
        random_floats(x, cols, kind + 1 + t);
        sl_quantize_row(c->act_type, x, c->act_rows + (size_t)t * c->act_row_bytes, cols);
        sl_gemm_act_quantize(&c->act, t, x);
    }
    free(x);
    c->ref = malloc(sizeof(float) * (size_t)n * rows);
    c->mag = malloc(sizeof(double) * (size_t)n * rows);
    float *wf = malloc((size_t)cols * sizeof(float)), *af = malloc((size_t)cols * sizeof(float));
    for (int32_t t = 0; t < n; t++) {
        sl_dequantize_row(c->act_type, c->act_rows + (size_t)t * c->act_row_bytes, af, cols);
        for (int64_t r = 0; r < rows; r++) {
            c->ref[(size_t)t * rows + r] = sl_vec_dot_ref(type, cols, c->w + (size_t)r * c->row_bytes,
                                                          c->act_rows + (size_t)t * c->act_row_bytes);
            sl_dequantize_row(type, c->w + (size_t)r * c->row_bytes, wf, cols);
            double m = 0;
            for (int64_t i = 0; i < cols; i++) m += fabs((double)wf[i] * af[i]);
            c->mag[(size_t)t * rows + r] = m;
        }
    }
    free(wf), free(af);
}

static void case_free(case_data *c) {
    free(c->w), free(c->act_rows), free(c->act_buf), free(c->ref), free(c->mag);
}

/* The activation format holds what sl_quantize_row makes. */
static void check_act_format(const case_data *c) {
    const int64_t cols = c->cols;
    for (int32_t t = 0; t < c->n; t++) {
        const uint8_t *row = c->act_rows + (size_t)t * c->act_row_bytes;
        const int8_t *qs = c->act.qs + (size_t)t * cols;
        int bad = 0;
        if (c->act_type == SL_TYPE_Q8_0) {
            for (int64_t b = 0; b < cols / 32; b++) {
                const uint8_t *blk = row + 34 * b;
                uint16_t h;
                memcpy(&h, blk, 2);
                int sum = 0;
                for (int i = 0; i < 32; i++) sum += (int8_t)blk[2 + i];
                bad += memcmp(qs + 32 * b, blk + 2, 32) != 0;
                bad += c->act.d[(size_t)t * (cols / 32) + b] != sl_f16_to_f32(h);
                bad += c->act.c8[(size_t)t * (cols / 32) + b] != -8 * sum;
                bad += c->act.c128[(size_t)t * (cols / 32) + b] != -128 * sum;
            }
        } else {
            for (int64_t b = 0; b < cols / 256; b++) {
                const uint8_t *blk = row + 292 * b;
                float d;
                memcpy(&d, blk, 4);
                bad += memcmp(qs + 256 * b, blk + 4, 256) != 0;
                bad += c->act.d[(size_t)t * (cols / 256) + b] != d;
                for (int j = 0; j < 16; j++) {
                    int16_t s;
                    memcpy(&s, blk + 260 + 2 * j, 2);
                    bad += c->act.c16[(size_t)t * (cols / 16) + 16 * b + j] != -32 * s;
                }
                for (int j = 0; j < 8; j++) {
                    int16_t s0, s1;
                    memcpy(&s0, blk + 260 + 4 * j, 2);
                    memcpy(&s1, blk + 262 + 4 * j, 2);
                    bad += c->act.s32[(size_t)t * (cols / 32) + 8 * b + j] != s0 + s1;
                }
            }
        }
        for (int64_t i = 0; i < cols; i++) bad += c->act.q16[(size_t)t * cols + i] != qs[i];
        CHECKF(bad == 0, "%s activations of token %d: %d fields differ from sl_quantize_row", sl_type_name(c->act_type),
               t, bad);
    }
}

/* Runs a kernel (NULL: the portable one) over every group of G rows packed in layout. */
static float *run_packed(const case_data *c, sl_gemm_layout layout, int G, sl_gemm_fn fn) {
    size_t gb = (size_t)(c->cols / sl_gemm_block_elems(layout)) * sl_gemm_block_bytes(layout, G);
    gb = (gb + 63) / 64 * 64;
    int64_t ng = (c->rows + G - 1) / G;
    uint8_t *packed = aligned_alloc(64, gb * (size_t)ng);
    float *y = malloc(sizeof(float) * (size_t)c->n * c->rows);
    for (int64_t g = 0; g < ng; g++) {
        uint8_t *grp = packed + (size_t)g * gb;
        sl_gemm_pack_group(layout, G, c->w, c->row_bytes, c->rows, c->cols, g * G, grp);
        int valid = (int)(c->rows - g * G < G ? c->rows - g * G : G);
        /* tokens in two calls, so offsets t0 > 0 are exercised */
        int32_t half = c->n / 2;
        for (int part = 0; part < 2; part++) {
            int32_t t0 = part ? half : 0, nt = part ? c->n - half : half;
            if (nt == 0) continue;
            float *yt = y + (size_t)t0 * c->rows + (size_t)g * G;
            if (fn) fn(grp, &c->act, t0, nt, yt, (size_t)c->rows, valid);
            else sl_gemm_ref(layout, G, grp, &c->act, t0, nt, yt, (size_t)c->rows, valid);
        }
    }
    free(packed);
    return y;
}

static void check_case(sl_type type, int64_t rows, int64_t cols, int32_t n, int kind) {
    case_data c;
    case_init(&c, type, rows, cols, n, kind);
    check_act_format(&c);
    const size_t total = (size_t)n * rows;
    /* the portable kernel over each layout of the type: the reference dot
       products, bit for bit (Q6_K_I8 adds sub-block sums in another order:
       exact integers, so still bit for bit) */
    for (int l = 1; l < SL_GEMM_LAYOUT_COUNT; l++) {
        if (sl_gemm_layout_type((sl_gemm_layout)l) != type) continue;
        for (int G = 4; G <= 16; G *= 4) {
            float *y = run_packed(&c, (sl_gemm_layout)l, G, NULL);
            size_t diff = 0;
            for (size_t i = 0; i < total; i++) diff += memcmp(&y[i], &c.ref[i], sizeof(float)) != 0;
            CHECKF(diff == 0, "%s layout %d %lldx%lld G=%d: portable packed kernel differs from sl_vec_dot_ref in %zu of %zu",
                   sl_type_name(type), l, (long long)rows, (long long)cols, G, diff, total);
            free(y);
        }
    }
    /* the SIMD kernels: equal up to float rounding (sums in another order) */
    const sl_gemm_kernels *families[2];
    int nf = 0;
#if defined(__x86_64__)
    if (strcmp(sl_quant_backend(), "avx512") == 0) families[nf++] = &sl_gemm_avx512;
#endif
#if defined(__wasm_simd128__)
    families[nf++] = &sl_gemm_simd128;
#endif
    for (int f = 0; f < nf; f++) {
        if (!families[f]->layout[type]) continue;
        float *y = run_packed(&c, families[f]->layout[type], families[f]->group_rows, families[f]->fn[type]);
        double worst = 0;
        for (size_t i = 0; i < total; i++) {
            double e = fabs((double)y[i] - c.ref[i]) / (c.mag[i] + 1e-30);
            if (!(e <= worst)) worst = e; /* NaN counts as worst */
        }
        CHECKF(worst < 1e-6, "%s %lldx%lld n=%d: %s kernel error %g (relative to sum |w*x|)", sl_type_name(type),
               (long long)rows, (long long)cols, n, families[f]->name, worst);
        free(y);
    }
    case_free(&c);
}

static void test_kernels(void) {
    static const int64_t rows[] = {1, 5, 16, 37};
    static const int32_t toks[] = {1, 2, 3, 4, 5, 9};
    for (size_t ti = 0; ti < sizeof packed_types / sizeof packed_types[0]; ti++) {
        sl_type t = packed_types[ti];
        int be = t == SL_TYPE_Q4_0 || t == SL_TYPE_Q8_0 ? 32 : 256;
        for (size_t ri = 0; ri < sizeof rows / sizeof rows[0]; ri++)
            for (size_t ni = 0; ni < sizeof toks / sizeof toks[0]; ni++) {
                int64_t cols = be == 32 ? 32 * (int64_t)(1 + ri * 3 + ni) : 256 * (int64_t)(1 + (ri + ni) % 3);
                check_case(t, rows[ri], cols, toks[ni], (int)(ri + ni));
            }
    }
    extreme_values = true;
    for (size_t ti = 0; ti < sizeof packed_types / sizeof packed_types[0]; ti++)
        for (int32_t n = 1; n <= 5; n += 4) check_case(packed_types[ti], 9, 512, n, 0);
    extreme_values = false;
}

/* ---- the quant backend's row kernels ---------------------------------------- */

/* The active backend's dot products and activation quantizers against the
 * scalar ones (test_quant.c does this per x86 family by name; this runs
 * whatever family the build has, e.g. wasm SIMD128). */
static void test_row_kernels(void) {
    static const sl_type types[] = {SL_TYPE_F32, SL_TYPE_F16, SL_TYPE_Q4_0, SL_TYPE_Q8_0, SL_TYPE_Q4_K, SL_TYPE_Q6_K};
    enum { N = 2048 };
    static float x[N], wf[N], af[N];
    static uint8_t w[N * 4], a[N * 4], a_ref[N * 4];
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        sl_type t = types[ti], at = sl_type_get((int)t)->vec_dot_type;
        double worst = 0;
        int bad_quant = 0;
        for (int trial = 0; trial < 24; trial++) {
            int64_t n = 256 * (1 + trial % 8);
            random_floats(x, n, trial);
            sl_quantize_row(t, x, w, n);
            random_floats(x, n, trial + 1);
            sl_quantize_row(at, x, a, n);
            sl_quant_force_scalar(true);
            sl_quantize_row(at, x, a_ref, n);
            float ref = sl_vec_dot(t, n, w, a);
            sl_quant_force_scalar(false);
            bad_quant += memcmp(a, a_ref, sl_row_size(at, n)) != 0;
            float fast = sl_vec_dot(t, n, w, a);
            sl_dequantize_row(t, w, wf, n);
            sl_dequantize_row(at, a, af, n);
            double mag = 0;
            for (int64_t i = 0; i < n; i++) mag += fabs((double)wf[i] * af[i]);
            double e = fabs((double)fast - ref) / (mag + 1e-30);
            if (!(e <= worst)) worst = e;
        }
        CHECKF(worst < 4e-6, "%s %s: fast vs scalar dot error %g", sl_quant_backend(), sl_type_name(t), worst);
        CHECKF(bad_quant == 0, "%s %s: %d activation rows differ from the scalar quantizer", sl_quant_backend(),
               sl_type_name(at), bad_quant);
    }
}

/* ---- the driver ------------------------------------------------------------ */

typedef struct epi_log {
    atomic_int calls;
    int *covered; /* [job][rows] times each row was finished */
    int64_t rows;
} epi_log;

static void log_epilogue(void *arg, int job, int32_t n, int64_t r0, int64_t r1) {
    (void)n;
    epi_log *e = arg;
    atomic_fetch_add(&e->calls, 1);
    for (int j = 0; j < SL_MM_MAX_JOBS; j++) {
        if (job >= 0 && j != job) continue;
        for (int64_t r = r0; r < r1; r++) e->covered[j * e->rows + r]++;
    }
}

/* Two or three weights of one type sharing an input, through sl_mm_run, with
 * and without packing, on 1..3 threads. */
static void check_driver(sl_type type, int64_t rows, int64_t cols, int32_t n, bool joint) {
    const int n_jobs = joint ? 2 : 3;
    sl_weight w[3];
    uint8_t *data[3];
    for (int j = 0; j < n_jobs; j++) {
        data[j] = random_weight(type, rows, cols, j);
        w[j] = (sl_weight){.data = data[j], .type = type, .cols = cols, .rows = rows, .row_bytes = sl_row_size(type, cols)};
    }
    float *x = malloc(sizeof(float) * (size_t)n * cols), *xn = malloc(sizeof(float) * (size_t)n * cols);
    float *norm = malloc(sizeof(float) * (size_t)cols);
    random_floats(x, (int64_t)n * cols, 2);
    for (int64_t i = 0; i < cols; i++) norm[i] = 0.5f + (float)rng_unit();
    float *y[2][4][3] = {{{0}}}; /* [packed][threads][job] */
    for (int packed = 0; packed < 2; packed++)
        for (int nth = 1; nth <= 3; nth++) {
            sl_error err;
            sl_pool *pool = sl_pool_new(nth, &err);
            sl_mm *mm = sl_mm_new();
            sl_mm_weight mw[3];
            epi_log log = {.rows = rows, .covered = calloc((size_t)SL_MM_MAX_JOBS * rows, sizeof(int))};
            sl_mm_call call = {.x = x, .n = n, .norm = norm, .norm_eps = 1e-5f, .norm_out = xn, .n_jobs = n_jobs,
                               .joint = joint, .row_align = joint ? 0 : 32, .epilogue = log_epilogue, .epilogue_ctx = &log};
            for (int j = 0; j < n_jobs; j++) {
                CHECK(sl_mm_weight_init(&mw[j], &w[j], packed, pool, &err) == 0);
                y[packed][nth][j] = malloc(sizeof(float) * (size_t)n * rows);
                call.job[j] = (sl_mm_job){&mw[j], y[packed][nth][j]};
            }
            CHECKF(sl_mm_run(mm, pool, &call, &err) == 0, "%s", err.msg);
            int wrong = 0;
            for (int j = 0; j < n_jobs; j++)
                for (int64_t r = 0; r < rows; r++) wrong += log.covered[j * rows + r] != 1;
            CHECKF(wrong == 0, "%s: %d rows not finished exactly once", sl_type_name(type), wrong);
            if (joint) CHECK(atomic_load(&log.calls) > 0);
            for (int j = 0; j < n_jobs; j++) sl_mm_weight_free(&mw[j]);
            free(log.covered);
            sl_mm_free(mm);
            sl_pool_free(pool);
        }
    /* the normed input matches sl_rmsnorm */
    float *want = malloc(sizeof(float) * (size_t)cols);
    sl_rmsnorm(want, x + (size_t)(n - 1) * cols, norm, cols, 1e-5f);
    CHECK(memcmp(want, xn + (size_t)(n - 1) * cols, sizeof(float) * (size_t)cols) == 0);
    free(want);
    /* every thread count gives the same bits; packed agrees with plain rows */
    const size_t total = (size_t)n * rows;
    for (int j = 0; j < n_jobs; j++) {
        for (int packed = 0; packed < 2; packed++)
            for (int nth = 2; nth <= 3; nth++)
                CHECKF(memcmp(y[packed][1][j], y[packed][nth][j], total * sizeof(float)) == 0,
                       "%s: %d threads differ from 1 (packed %d)", sl_type_name(type), nth, packed);
        double worst = 0, scale = 0;
        for (size_t i = 0; i < total; i++) scale = fmax(scale, fabs(y[0][1][j][i]));
        for (size_t i = 0; i < total; i++) worst = fmax(worst, fabs(y[1][1][j][i] - y[0][1][j][i]) / scale);
        CHECKF(worst < 1e-5, "%s: packed differs from plain rows by %g", sl_type_name(type), worst);
    }
    for (int packed = 0; packed < 2; packed++)
        for (int nth = 1; nth <= 3; nth++)
            for (int j = 0; j < n_jobs; j++) free(y[packed][nth][j]);
    for (int j = 0; j < n_jobs; j++) free(data[j]);
    free(x), free(xn), free(norm);
}

static void test_driver(void) {
    for (size_t ti = 0; ti < sizeof packed_types / sizeof packed_types[0]; ti++) {
        sl_type t = packed_types[ti];
        int64_t cols = t == SL_TYPE_Q4_0 || t == SL_TYPE_Q8_0 ? 320 : 512;
        check_driver(t, 100, cols, 1, false);
        check_driver(t, 96, cols, 7, true);
        check_driver(t, 200, cols, 70, false);
    }
    /* a type without packed kernels goes through rows in place */
    check_driver(SL_TYPE_Q5_K, 40, 256, 3, true);
    check_driver(SL_TYPE_F16, 40, 64, 3, false);
    /* one token: quantized on every thread (rows in place too); F32 weights
       read the shared normalized rows instead */
    check_driver(SL_TYPE_Q5_K, 40, 256, 1, false);
    check_driver(SL_TYPE_F32, 40, 64, 1, false);
    check_driver(SL_TYPE_F16, 40, 64, 1, true);
}

/* ---- the pool's barrier ------------------------------------------------------ */

typedef struct barrier_task {
    sl_pool *pool;
    atomic_int count;
    atomic_int errors;
} barrier_task;

static void barrier_run(void *arg, int ith, int nth) {
    barrier_task *b = arg;
    for (int phase = 0; phase < 200; phase++) {
        atomic_fetch_add(&b->count, 1);
        sl_pool_barrier(b->pool);
        /* everyone has counted this phase, nobody the next */
        if (atomic_load(&b->count) != nth * (phase + 1)) atomic_fetch_add(&b->errors, 1);
        sl_pool_barrier(b->pool);
    }
    (void)ith;
}

static void test_barrier(void) {
    for (int nth = 1; nth <= 4; nth++) {
        sl_error err;
        barrier_task b = {.pool = sl_pool_new(nth, &err)};
        CHECK(b.pool != NULL);
        if (!b.pool) continue;
        atomic_init(&b.count, 0);
        atomic_init(&b.errors, 0);
        for (int rep = 0; rep < 3; rep++) {
            atomic_store(&b.count, 0);
            sl_pool_run(b.pool, barrier_run, &b);
        }
        CHECKF(atomic_load(&b.errors) == 0, "%d threads: %d phases saw a wrong count", nth, atomic_load(&b.errors));
        sl_pool_free(b.pool);
    }
}

/* The driver on every lower kernel family this CPU has (e.g. AVX2 on an
 * AVX-512 machine: no packed kernels, rows in place), as CPUs without the
 * top family run it. */
static void test_driver_lower_families(void) {
    static const char *const families[] = {"avx2", "scalar"};
    for (size_t i = 0; i < sizeof families / sizeof families[0]; i++) {
        if (strcmp(families[i], sl_quant_backend()) == 0 || sl_quant_set_backend(families[i]) != 0) continue;
        check_driver(SL_TYPE_Q4_0, 100, 320, 1, false);
        check_driver(SL_TYPE_Q4_K, 96, 512, 7, true);
        check_driver(SL_TYPE_Q6_K, 40, 256, 70, false);
        sl_quant_set_backend("auto");
    }
}

int main(void) {
    printf("quant backend: %s\n", sl_quant_backend());
#if defined(__wasm_simd128__)
    printf("gemm kernels: %s\n", sl_gemm_simd128.name);
#endif
    RUN(test_row_kernels);
    RUN(test_kernels);
    RUN(test_driver);
    RUN(test_driver_lower_families);
    RUN(test_barrier);
    TEST_SUMMARY();
}
