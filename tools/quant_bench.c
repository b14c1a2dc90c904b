/* quant_bench.c - single-thread speed of the quant kernels: a mat-vec of
 * ROWS rows of COLS elements (sl_vec_dot per row) for each weight type and
 * kernel family, in GB/s of weight bytes, plus activation quantization and
 * K-quant weight quantization speed.
 *
 *   cc -std=c11 -O2 -D_POSIX_C_SOURCE=200809L -Isrc tools/quant_bench.c
 *      src/quant/[all].c src/util/common.c -lm -o /tmp/quant_bench
 *   /tmp/quant_bench [COLS ROWS REPEATS] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "quant/quant.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static uint64_t rng = 88172645463325252ull;
static float rnd(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((rng >> 11) * (1.0 / 9007199254740992.0)) * 2 - 1;
}

int main(int argc, char **argv) {
    int64_t cols = argc > 1 ? atoll(argv[1]) : 2048, rows = argc > 2 ? atoll(argv[2]) : 8192;
    int repeats = argc > 3 ? atoi(argv[3]) : 15;
    const sl_type types[] = {SL_TYPE_Q4_0, SL_TYPE_Q8_0, SL_TYPE_Q4_K, SL_TYPE_Q5_K, SL_TYPE_Q6_K, SL_TYPE_F16,
                             SL_TYPE_F32, SL_TYPE_Q4_1, SL_TYPE_Q5_0, SL_TYPE_Q5_1, SL_TYPE_IQ4_NL,
                             SL_TYPE_Q2_K, SL_TYPE_Q3_K, SL_TYPE_BF16};
    const char *backends[] = {"scalar", "avx2", "avx512"};
    float *x = malloc((size_t)cols * rows * sizeof(float));
    for (int64_t i = 0; i < cols * rows; i++) x[i] = rnd();
    float *out = malloc((size_t)rows * sizeof(float));
    printf("mat-vec %lld x %lld, one thread, best of %d; GB/s of weight bytes\n", (long long)rows, (long long)cols, repeats);
    printf("%-7s %10s", "type", "MB");
    for (int b = 0; b < 3; b++) printf(" %14s", backends[b]);
    printf("\n");
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
        sl_type t = types[k];
        sl_type at = sl_type_get(t)->vec_dot_type;
        size_t row_bytes = sl_row_size(t, cols);
        uint8_t *w = malloc(row_bytes * rows), *act = malloc(sl_row_size(at, cols));
        for (int64_t r = 0; r < rows; r++) sl_quantize_row(t, x + r * cols, w + r * row_bytes, cols);
        sl_quantize_row(at, x, act, cols);
        printf("%-7s %10.1f", sl_type_name(t), row_bytes * rows / 1e6);
        for (int b = 0; b < 3; b++) {
            if (sl_quant_set_backend(backends[b]) != 0) {
                printf(" %14s", "-");
                continue;
            }
            int reps = b == 0 ? 2 : repeats;
            double best = 1e9;
            for (int rep = 0; rep < reps; rep++) {
                double t0 = now();
                for (int64_t r = 0; r < rows; r++) out[r] = sl_vec_dot(t, cols, w + r * row_bytes, act);
                double dt = now() - t0;
                if (dt < best) best = dt;
            }
            printf(" %8.2f GB/s", row_bytes * rows / best / 1e9);
        }
        printf("\n");
        sl_quant_set_backend("auto");
        free(w);
        free(act);
    }
    /* prompt batches: 8 activation rows per weight row, one by one and grouped */
    enum { NACT = 8 };
    printf("\n8 activation rows per weight row (prefill), best backend: ns per row x activation\n");
    const sl_type batch_types[] = {SL_TYPE_Q4_0, SL_TYPE_Q8_0, SL_TYPE_Q4_K, SL_TYPE_Q5_K, SL_TYPE_Q6_K, SL_TYPE_F16};
    int64_t brows = rows < 2048 ? rows : 2048;
    float *bout = malloc((size_t)brows * NACT * sizeof(float));
    for (size_t k = 0; k < sizeof batch_types / sizeof batch_types[0]; k++) {
        sl_type t = batch_types[k];
        sl_type at = sl_type_get(t)->vec_dot_type;
        size_t row_bytes = sl_row_size(t, cols), act_bytes = sl_row_size(at, cols);
        uint8_t *w = malloc(row_bytes * brows), *act = malloc(act_bytes * NACT);
        for (int64_t r = 0; r < brows; r++) sl_quantize_row(t, x + r * cols, w + r * row_bytes, cols);
        for (int j = 0; j < NACT; j++) sl_quantize_row(at, x + j * cols, act + j * act_bytes, cols);
        double best_single = 1e9, best_multi = 1e9;
        for (int rep = 0; rep < repeats; rep++) {
            double t0 = now();
            for (int64_t r = 0; r < brows; r++)
                for (int j = 0; j < NACT; j++) bout[r * NACT + j] = sl_vec_dot(t, cols, w + r * row_bytes, act + j * act_bytes);
            double t1 = now();
            for (int64_t r = 0; r < brows; r++) sl_vec_dot_multi(t, cols, w + r * row_bytes, act, act_bytes, NACT, bout + r * NACT, 1);
            double t2 = now();
            if (t1 - t0 < best_single) best_single = t1 - t0;
            if (t2 - t1 < best_multi) best_multi = t2 - t1;
        }
        printf("%-7s single %7.1f ns   multi %7.1f ns   (x%.2f)\n", sl_type_name(t), best_single / (brows * NACT) * 1e9,
               best_multi / (brows * NACT) * 1e9, best_single / best_multi);
        free(w);
        free(act);
    }
    free(bout);

    /* activation quantization, per row of cols */
    const sl_type acts[] = {SL_TYPE_Q8_0, SL_TYPE_Q8_K, SL_TYPE_F16};
    uint8_t *buf = malloc(sl_row_size(SL_TYPE_F32, cols));
    for (size_t k = 0; k < 3; k++) {
        printf("quantize activation row to %-5s:", sl_type_name(acts[k]));
        for (int b = 0; b < 3; b++) {
            if (sl_quant_set_backend(backends[b]) != 0) continue;
            double best = 1e9;
            for (int rep = 0; rep < 20; rep++) {
                double t0 = now();
                for (int i = 0; i < 100; i++) sl_quantize_row(acts[k], x + (i % 16) * cols, buf, cols);
                double dt = (now() - t0) / 100;
                if (dt < best) best = dt;
            }
            printf("  %s %.2f us", backends[b], best * 1e6);
        }
        printf("\n");
    }
    sl_quant_set_backend("auto");
    /* weight quantization speed */
    const sl_type wq[] = {SL_TYPE_Q4_0, SL_TYPE_Q8_0, SL_TYPE_Q4_K, SL_TYPE_Q5_K, SL_TYPE_Q6_K, SL_TYPE_Q2_K,
                          SL_TYPE_Q3_K, SL_TYPE_IQ4_NL};
    int64_t nq = cols * rows < (1 << 22) ? cols * rows : (1 << 22);
    uint8_t *qbuf = malloc(sl_row_size(SL_TYPE_F32, nq));
    for (size_t k = 0; k < sizeof wq / sizeof wq[0]; k++) {
        double best = 1e9;
        for (int rep = 0; rep < 3; rep++) {
            double t0 = now();
            sl_quantize_row(wq[k], x, qbuf, nq);
            double dt = now() - t0;
            if (dt < best) best = dt;
        }
        printf("quantize weights to %-6s: %6.1f ns/element (%.1f s per 1e9)\n", sl_type_name(wq[k]), best / nq * 1e9,
               best / nq * 1e9);
    }
    (void)out;
    return 0;
}
