/* cli_bench.c - `streamllm bench`: prompt processing (ppN) and generation
 * (tgN) speed on the CPU, printed as a markdown table in the style of
 * llama.cpp's llama-bench. Each test runs once to warm up, then RUNS times;
 * the table shows the median and the standard deviation. */
#include "cli/cli.h"
#include "cpu/forward.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* One timed run: pp evaluates n tokens as one batch, tg n tokens one at a
 * time; both from an empty cache, as llama-bench does. Returns tokens/s. */
static int run_once(sl_cpu_ctx *ctx, const int32_t *toks, int32_t n, bool tg, float *logits, double *tps,
                    sl_error *err) {
    sl_cpu_truncate(ctx, 0);
    double t0 = cli_now_seconds();
    if (tg) {
        for (int32_t i = 0; i < n; i++)
            if (sl_cpu_eval(ctx, &toks[i], 1, logits, false, err)) return -1;
    } else if (sl_cpu_eval(ctx, toks, n, logits, false, err)) {
        return -1;
    }
    *tps = n / (cli_now_seconds() - t0);
    return 0;
}

int cmd_bench(int argc, char **argv) {
    cli_opts o;
    if (cli_parse(argc, argv, 2, "bench", &o)) return 2;
    if (!o.model) return cli_fail("bench", "no model given (-m MODEL)"), 2;
    const int32_t n_pp = o.n_prompt < 0 ? 512 : o.n_prompt, n_tg = o.n_predict < 0 ? 128 : o.n_predict;
    const int threads = o.n_threads > 0 ? o.n_threads : sl_cpu_count();

    sl_error err;
    sl_model *m = cli_open_model(o.model, &err);
    if (!m) return cli_fail("bench", "%s", err.msg);
    int32_t need = n_pp > n_tg ? n_pp : n_tg;
    sl_cpu_params p = {.n_ctx = need > 0 ? need : 1, .n_batch = n_pp > 0 ? n_pp : 1, .n_threads = threads};
    sl_cpu_ctx *ctx = sl_cpu_ctx_new(m, &p, &err);
    int32_t *toks = malloc((size_t)(need > 0 ? need : 1) * sizeof *toks);
    float *logits = malloc((size_t)m->hp.n_vocab * sizeof(float));
    double *runs = malloc((size_t)o.reps * sizeof *runs);
    int rc = 1;
    if (!ctx || !toks || !logits || !runs) {
        if (ctx) sl_err(&err, "out of memory");
        goto done;
    }
    /* Deterministic pseudo-random token ids (speed does not depend on them). */
    uint32_t state = 12345;
    for (int32_t i = 0; i < need; i++) {
        state = state * 1664525u + 1013904223u;
        toks[i] = (int32_t)((state >> 8) % (uint32_t)m->hp.n_vocab);
    }

    double size_gib = m->weight_bytes / (1024.0 * 1024.0 * 1024.0);
    printf("| model | size | params | backend | threads | test | t/s |\n");
    printf("| --- | ---: | ---: | --- | ---: | ---: | ---: |\n");
    fflush(stdout);
    for (int pass = 0; pass < 2; pass++) {
        bool tg = pass == 1;
        int32_t n = tg ? n_tg : n_pp;
        if (n <= 0) continue;
        double warm;
        if (run_once(ctx, toks, n, tg, logits, &warm, &err)) goto done;
        for (int r = 0; r < o.reps; r++)
            if (run_once(ctx, toks, n, tg, logits, &runs[r], &err)) goto done;
        double mean = 0, var = 0;
        for (int r = 0; r < o.reps; r++) mean += runs[r] / o.reps;
        for (int r = 0; r < o.reps; r++) var += (runs[r] - mean) * (runs[r] - mean);
        double sd = o.reps > 1 ? sqrt(var / (o.reps - 1)) : 0;
        qsort(runs, (size_t)o.reps, sizeof *runs, cmp_double);
        double median = o.reps % 2 ? runs[o.reps / 2] : 0.5 * (runs[o.reps / 2 - 1] + runs[o.reps / 2]);
        printf("| %s %s %s | %.2f GiB | %.2f B | CPU (%s) | %d | %s%d | %.2f ± %.2f |\n", sl_arch_name(m->hp.arch),
               m->name, sl_model_quant_name(m), size_gib, m->n_params / 1e9, sl_quant_backend(), threads,
               tg ? "tg" : "pp", n, median, sd);
        fflush(stdout);
    }
    rc = 0;
done:
    if (rc) cli_fail("bench", "%s", err.msg);
    free(runs);
    free(logits);
    free(toks);
    sl_cpu_ctx_free(ctx);
    sl_model_free(m);
    return rc;
}
