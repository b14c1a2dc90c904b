/* test_conformance.c - our CLI against llama.cpp's reference outputs in
 * $STREAMLLM_TESTDATA (see its README): for every model in index.tsv, the
 * logits of every prompt and generation position under teacher forcing
 * (`streamllm logits --tokens`) must be within the model's tolerance, with the
 * same top-1 token wherever the reference's margin is clear; and greedy
 * `streamllm run` on stories260K must print exactly the reference text. */
#include "proc.h"
#include "test.h"

#include <math.h>
#include <stdbool.h>
#include <stdint.h>

static char tmpdir[] = "/tmp/sl-conformance-XXXXXX";

static float *read_f32(const char *path, size_t *n) {
    size_t len;
    char *b = test_read_file(path, &len);
    if (!b) return NULL;
    *n = len / sizeof(float);
    return (float *)(void *)b; /* malloc'd: suitably aligned */
}

/* Token ids, one per line; for gen_tokens.txt the id is before a tab. */
static int read_ids(const char *path, int32_t *ids, int cap) {
    size_t len;
    char *b = test_read_file(path, &len);
    if (!b) return -1;
    int n = 0;
    char *save = NULL;
    for (char *line = strtok_r(b, "\n", &save); line && n < cap; line = strtok_r(NULL, "\n", &save))
        ids[n++] = (int32_t)strtol(line, NULL, 10);
    free(b);
    return n;
}

typedef struct row_stats {
    double nrmse;
    bool top1_ok;
    double margin_ratio;
} row_stats;

static row_stats compare_row(const float *ours, const float *ref, size_t V, double tol) {
    double se = 0, sr = 0;
    size_t best_o = 0, best_r = 0, second_r = 1;
    for (size_t j = 0; j < V; j++) {
        double d = (double)ours[j] - ref[j];
        se += d * d;
        sr += (double)ref[j] * ref[j];
        if (ours[j] > ours[best_o]) best_o = j;
    }
    if (ref[1] > ref[0]) best_r = 1, second_r = 0;
    for (size_t j = 2; j < V; j++) {
        if (ref[j] > ref[best_r]) second_r = best_r, best_r = j;
        else if (ref[j] > ref[second_r]) second_r = j;
    }
    double rms = sqrt(sr / V);
    row_stats s = {.nrmse = sqrt(se / V) / rms, .top1_ok = true};
    double margin = ref[best_r] - ref[second_r];
    s.margin_ratio = margin / (8 * tol * rms);
    if (margin > 8 * tol * rms) s.top1_ok = best_o == best_r;
    return s;
}

static void check_model(const char *model_rel, const char *ref_rel, double tol) {
    const char *td = test_data_dir();
    char model[1024], prefix[1024], path[1200], toks_path[1200], out_path[1200], err_path[1200];
    snprintf(model, sizeof model, "%s/%s", td, model_rel);
    snprintf(prefix, sizeof prefix, "%s/%s", td, ref_rel);
    const char *stem = strrchr(ref_rel, '/') ? strrchr(ref_rel, '/') + 1 : ref_rel;

    int32_t prompt[4096], gen[4096];
    snprintf(path, sizeof path, "%s.prompt_tokens.txt", prefix);
    int n_prompt = read_ids(path, prompt, 4096);
    snprintf(path, sizeof path, "%s.gen_tokens.txt", prefix);
    int n_gen = read_ids(path, gen, 4096);
    CHECKF(n_prompt > 0 && n_gen > 1, "reference tokens of %s unreadable", stem);
    if (n_prompt <= 0 || n_gen <= 1) return;

    /* teacher forcing: prompt + gen[0..n_gen-2] */
    snprintf(toks_path, sizeof toks_path, "%s/%s.tokens", tmpdir, stem);
    FILE *f = fopen(toks_path, "w");
    for (int i = 0; i < n_prompt; i++) fprintf(f, "%d\n", prompt[i]);
    for (int i = 0; i + 1 < n_gen; i++) fprintf(f, "%d\n", gen[i]);
    fclose(f);
    snprintf(out_path, sizeof out_path, "%s/%s.f32", tmpdir, stem);
    snprintf(err_path, sizeof err_path, "%s/%s.err", tmpdir, stem);
    char *argv[] = {(char *)test_cli_path(), "logits", "-m", model, "--tokens", toks_path, "-o", out_path, NULL};
    int rc = test_run(argv, NULL, err_path);
    if (rc != 0) {
        char *e = test_read_file(err_path, NULL);
        CHECKF(rc == 0, "%s: logits exited %d: %s", stem, rc, e ? e : "");
        free(e);
        return;
    }

    size_t n_ours = 0, n_pref = 0, n_gref = 0;
    float *ours = read_f32(out_path, &n_ours);
    snprintf(path, sizeof path, "%s.prompt_logits.f32", prefix);
    float *pref = read_f32(path, &n_pref);
    snprintf(path, sizeof path, "%s.gen_logits.f32", prefix);
    float *gref = read_f32(path, &n_gref);
    CHECK(ours && pref && gref);
    if (!ours || !pref || !gref) goto done;
    size_t V = n_pref / (size_t)n_prompt;
    size_t rows = (size_t)n_prompt + n_gen - 1;
    CHECKF(n_ours == rows * V, "%s: got %zu floats, expected %zu x %zu", stem, n_ours, rows, V);
    CHECKF(n_gref == (size_t)n_gen * V, "%s: gen reference has %zu floats", stem, n_gref);
    if (n_ours != rows * V || n_gref != (size_t)n_gen * V) goto done;

    double worst = 0;
    int worst_row = -1, top1_bad = 0;
    for (size_t r = 0; r < rows; r++) {
        /* rows past the prompt line up with gen rows 1..n_gen-1 */
        const float *ref = r < (size_t)n_prompt ? pref + r * V : gref + (r - n_prompt + 1) * V;
        row_stats s = compare_row(ours + r * V, ref, V, tol);
        if (s.nrmse > worst) worst = s.nrmse, worst_row = (int)r;
        if (!s.top1_ok) top1_bad++;
    }
    /* gen row 0 repeats the last prompt row */
    row_stats s0 = compare_row(ours + (size_t)(n_prompt - 1) * V, gref, V, tol);
    if (s0.nrmse > worst) worst = s0.nrmse, worst_row = n_prompt - 1;
    fprintf(stderr, "  %-28s rows %3zu  worst nrmse %.3g (row %d)  tolerance %g  top-1 mismatches %d\n", stem,
            rows, worst, worst_row, tol, top1_bad);
    CHECKF(worst <= tol, "%s: worst nrmse %g > %g at row %d", stem, worst, tol, worst_row);
    CHECKF(top1_bad == 0, "%s: %d rows with a different top-1 token", stem, top1_bad);
done:
    free(ours);
    free(pref);
    free(gref);
}

/* The "text:" line of a summary, unescaped (\n, \", \\). */
static char *summary_text(const char *summary_path) {
    char *b = test_read_file(summary_path, NULL);
    if (!b) return NULL;
    char *line = strstr(b, "\ntext: \"");
    char *out = NULL;
    if (line) {
        const char *p = line + 8;
        const char *end = strrchr(p, '"');
        out = malloc(strlen(p) + 1);
        size_t n = 0;
        for (; p < end; p++) {
            if (*p == '\\' && p + 1 < end) {
                p++;
                out[n++] = *p == 'n' ? '\n' : *p == 't' ? '\t' : *p;
            } else {
                out[n++] = *p;
            }
        }
        out[n] = 0;
    }
    free(b);
    return out;
}

static void check_greedy_text(void) {
    const char *td = test_data_dir();
    char model[1024], summary[1024], out_path[1200], err_path[1200];
    snprintf(model, sizeof model, "%s/models/stories260K.gguf", td);
    snprintf(summary, sizeof summary, "%s/ref/stories260K-f32.summary.txt", td);
    char *want = summary_text(summary);
    CHECKF(want != NULL, "no text line in %s", summary);
    if (!want) return;
    snprintf(out_path, sizeof out_path, "%s/run.out", tmpdir);
    snprintf(err_path, sizeof err_path, "%s/run.err", tmpdir);
    char *argv[] = {(char *)test_cli_path(), "run", "-m", model, "-p", "Once upon a time", "-n", "64",
                    "--temp", "0", NULL};
    int rc = test_run(argv, out_path, err_path);
    char *got = test_read_file(out_path, NULL);
    CHECKF(rc == 0, "run exited %d", rc);
    CHECKF(got && !strcmp(got, want), "greedy text differs:\n got: [%s]\nwant: [%s]", got ? got : "(none)", want);
    free(got);
    free(want);
}

int main(void) {
    char index_path[1024];
    snprintf(index_path, sizeof index_path, "%s/index.tsv", test_data_dir());
    size_t len;
    char *index = test_read_file(index_path, &len);
    if (!index) {
        fprintf(stderr, "SKIP conformance: reference data absent at %s (set STREAMLLM_TESTDATA)\n", test_data_dir());
        if (getenv("CI") && !strcmp(getenv("CI"), "true")) {
            RUN_CASE("conformance data present", CHECK(index != NULL));
        }
        TEST_SUMMARY();
    }
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    char *save = NULL;
    for (char *line = strtok_r(index, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (line[0] == '#' || !line[0]) continue;
        char model[512], ref[512];
        double tol;
        if (sscanf(line, "%511[^\t]\t%511[^\t]\t%lf", model, ref, &tol) != 3) continue;
        char name[600];
        snprintf(name, sizeof name, "logits %s", ref);
        RUN_CASE(name, check_model(model, ref, tol));
    }
    RUN_CASE("greedy run stories260K", check_greedy_text());
    free(index);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
    TEST_SUMMARY();
}
