/* test_wasm_exports.c - the wasm module's export layer (src/wasm/exports.c)
 * compiled natively, so that its header-first loading runs under gcc and
 * under ASan/UBSan: the "give me more bytes" protocol, every truncation and
 * random corruption of a header (errors, never a crash), and that a model
 * loaded through the exports computes exactly what the native path does.
 * exports.c is part of the wasm build only, hence the #include of the .c. */
#include "test.h"

#include "../src/wasm/exports.c"
#include "model/synth.h"

static unsigned char *model_buf;
static size_t model_size;

/* A small synthesized model (shape "tiny", Q4_K_M) in memory. */
static int make_model(void) {
    sl_synth_params p = {
        .shape = sl_synth_find_shape("tiny"),
        .preset = sl_synth_find_preset("Q4_K_M"),
        .seed = 7,
    };
    sl_error err;
    void *out = NULL;
    if (!p.shape || !p.preset || sl_synth_write_memory(&p, &out, &model_size, &err)) {
        fprintf(stderr, "cannot synthesize the test model: %s\n", p.shape && p.preset ? err.msg : "no shape");
        return -1;
    }
    model_buf = out;
    return 0;
}

/* Gives the header as JS does: the first bytes, more while asked. Returns
 * model_header's last result (0 accepted, -1 error). */
static double give_header(sl_wasm_model *m, const unsigned char *buf, size_t size, int *n_calls) {
    size_t len = size < 16 ? size : 16;
    for (int calls = 1;; calls++) {
        double r = wasm_model_header(m, buf, len, (double)size);
        if (n_calls) *n_calls = calls;
        if (r <= 0) return r;
        if (r <= (double)len || r > (double)size) return -2; /* a broken answer */
        len = (size_t)r;
    }
}

/* The whole flow on buf: headers, weights, model, one evaluation. Returns 0
 * when it loaded and evaluated, -1 on an error (with a message). */
static int load_and_eval(const unsigned char *buf, size_t size, float *logits_out) {
    sl_wasm_model *m = wasm_model_new();
    int rc = -1;
    sl_cpu_ctx *c = NULL;
    last_error.msg[0] = 0;
    double r = give_header(m, buf, size, NULL);
    CHECKF(r == 0 || r == -1, "model_header gave %g", r);
    if (r != 0) goto done;
    if (wasm_cpu_weights_alloc(m)) goto done;
    unsigned char *dest = wasm_cpu_file_dest(m, 0);
    CHECK(dest != NULL);
    if (!dest) goto done;
    memcpy(dest, buf, size);
    if (wasm_model_load(m, "test")) goto done;
    c = wasm_cpu_new(m, 16, 0);
    if (!c) goto done;
    int32_t ids[4] = {1, 2, 3, 4};
    const int32_t V = wasm_model_n_vocab(m);
    float *logits = malloc((size_t)V * 4 * sizeof(float));
    CHECK(logits != NULL);
    rc = wasm_cpu_eval(c, ids, 4, logits, 1);
    if (rc == 0 && logits_out) memcpy(logits_out, logits, (size_t)V * 4 * sizeof(float));
    free(logits);
done:
    if (rc) CHECKF(last_error.msg[0] != 0, "a failure without a message");
    wasm_cpu_free(c);
    wasm_model_free(m);
    return rc;
}

static void test_protocol(void) {
    sl_wasm_model *m = wasm_model_new();
    int calls = 0;
    CHECK(give_header(m, model_buf, model_size, &calls) == 0);
    CHECKF(calls >= 2, "the first 16 bytes cannot hold the header (%d calls)", calls);
    sl_gguf *g = sl_gguf_open_memory(model_buf, model_size, 0, NULL);
    CHECK(g != NULL);
    if (!g) goto done;
    CHECK(wasm_model_n_tensors(m) == sl_gguf_n_tensors(g));
    for (int32_t i = 0; i < wasm_model_n_tensors(m); i++) {
        const sl_gguf_tensor *t = sl_gguf_tensor_at(g, i);
        CHECK(!strcmp(wasm_model_tensor_name(m, i), t->name));
        CHECK(wasm_model_tensor_offset(m, i) == (double)(sl_gguf_data_offset(g) + t->offset));
        CHECK(wasm_model_tensor_bytes(m, i) == (double)t->nbytes);
        CHECK(wasm_model_tensor_type(m, i) == t->type);
    }
    CHECK(wasm_model_tensor_name(m, -1) == NULL && wasm_model_tensor_name(m, 1 << 20) == NULL);
    CHECK(wasm_cpu_file_dest(m, 0) == NULL); /* not before cpu_weights_alloc */
    CHECK(wasm_cpu_weights_alloc(m) == 0);
    CHECK(wasm_cpu_file_dest(m, 1) == NULL);
    /* tensor by tensor */
    for (int32_t i = 0; i < wasm_model_n_tensors(m); i++)
        memcpy(wasm_cpu_tensor_dest(m, i), model_buf + (size_t)wasm_model_tensor_offset(m, i),
               (size_t)wasm_model_tensor_bytes(m, i));
    CHECK(wasm_model_load(m, NULL) == 0);
    CHECK(wasm_model_load(m, NULL) == -1); /* twice */
    CHECK(give_header(m, model_buf, model_size, NULL) == -1);
    const char *info = wasm_model_info(m);
    CHECKF(info && strstr(info, "\"arch\":\"llama\"") && strstr(info, "\"n_vocab\":512"), "info: %s", info ? info : "");
    sl_gguf_close(g);
done:
    wasm_model_free(m);
}

/* Logits through the exports equal the native path's, bit for bit. */
static void test_same_as_native(void) {
    sl_error err;
    sl_gguf *g = sl_gguf_open_memory(model_buf, model_size, 0, &err);
    sl_model *md = g ? sl_model_from_gguf(g, "test", &err) : NULL;
    CHECKF(md != NULL, "%s", err.msg);
    if (!md) return;
    sl_cpu_params p = {.n_ctx = 16, .n_threads = 1};
    sl_cpu_ctx *c = sl_cpu_ctx_new(md, &p, &err);
    const size_t V = (size_t)md->hp.n_vocab;
    float *want = malloc(V * 4 * sizeof(float)), *got = malloc(V * 4 * sizeof(float));
    int32_t ids[4] = {1, 2, 3, 4};
    CHECK(c && want && got && sl_cpu_eval(c, ids, 4, want, true, &err) == 0);
    CHECK(load_and_eval(model_buf, model_size, got) == 0);
    CHECK(memcmp(want, got, V * 4 * sizeof(float)) == 0);
    free(want);
    free(got);
    sl_cpu_ctx_free(c);
    sl_model_free(md);
}

/* Every truncated file (the file ends after len bytes): an error, or for
 * cuts inside the last tensor's padding a model; never a crash. */
static void test_truncations(void) {
    sl_gguf *g = sl_gguf_open_memory(model_buf, model_size, 0, NULL);
    size_t header = g ? (size_t)sl_gguf_data_offset(g) : 0;
    sl_gguf_close(g);
    CHECK(header > 0);
    int loaded = 0;
    for (size_t len = 0; len < model_size; len += len < header + 64 ? 1 : 4099) {
        unsigned char *cut = malloc(len ? len : 1);
        memcpy(cut, model_buf, len);
        if (load_and_eval(cut, len, NULL) == 0) loaded++;
        free(cut);
    }
    CHECKF(loaded == 0, "%d truncated files loaded", loaded);
}

/* Random bytes of the header replaced: errors or models, never a crash. */
static void test_corruptions(void) {
    sl_gguf *g = sl_gguf_open_memory(model_buf, model_size, 0, NULL);
    size_t header = g ? (size_t)sl_gguf_data_offset(g) : 0;
    sl_gguf_close(g);
    unsigned char *bad = malloc(model_size);
    uint64_t state = 12345;
    int errors = 0;
    const int n = getenv("SL_SANITIZED") ? 150 : 400;
    for (int i = 0; i < n; i++) {
        memcpy(bad, model_buf, model_size);
        for (int k = 0; k < 1 + i % 3; k++) {
            state = state * 6364136223846793005ull + 1442695040888963407ull;
            size_t at = (size_t)((state >> 33) % header);
            bad[at] = (unsigned char)(state >> 13);
        }
        if (load_and_eval(bad, model_size, NULL)) errors++;
    }
    CHECKF(errors > 0, "no corruption was noticed");
    free(bad);
}

static void test_tokenize_and_sampler(void) {
    sl_wasm_model *m = wasm_model_new();
    CHECK(wasm_tokenize(m, "x", 1, 1, NULL, 0) == -1); /* no model yet */
    CHECK(give_header(m, model_buf, model_size, NULL) == 0 && wasm_cpu_weights_alloc(m) == 0);
    memcpy(wasm_cpu_file_dest(m, 0), model_buf, model_size);
    CHECK(wasm_model_load(m, NULL) == 0);
    const char *text = "hello world, hello";
    int32_t n = wasm_tokenize(m, text, strlen(text), 1, NULL, 0);
    CHECKF(n > 2, "%d tokens", n);
    int32_t ids[64];
    CHECK(n <= 64 && wasm_tokenize(m, text, strlen(text), 1, ids, 2) == n);
    CHECK(wasm_tokenize(m, text, strlen(text), 1, ids, 64) == n);
    wasm_detok *d = wasm_detok_new(m, 0);
    CHECK(d != NULL);
    char out[256] = "";
    for (int32_t i = 0; d && i < n; i++) {
        int32_t len = wasm_detok_push(d, ids[i]);
        strncat(out, wasm_detok_text(d), (size_t)len);
    }
    if (d) strncat(out, wasm_detok_text(d), (size_t)wasm_detok_flush(d));
    wasm_detok_free(d);
    CHECKF(strstr(out, "hello") != NULL, "detokenized: [%s]", out);

    sl_sampler_params *p = wasm_sampler_params();
    CHECK(wasm_sampler_param_set(p, "seed_hi", 1) == 0 && wasm_sampler_param_set(p, "seed_lo", 2) == 0);
    CHECK(p->seed == ((1ull << 32) | 2));
    CHECK(wasm_sampler_param_set(p, "top_k", -2) == -1 && wasm_sampler_param_set(p, "seed", -1) == -1);
    CHECK(wasm_sampler_param_set(p, "temp", 0) == 0);
    sl_sampler *s = wasm_sampler_new(p, 3);
    float logits[3] = {1, 5, 2};
    CHECK(s && wasm_sampler_sample(s, logits) == 1);
    wasm_sampler_free(s);
    free(p);
    wasm_model_free(m);
}

int main(void) {
    if (make_model()) {
        RUN_CASE("synthesize the test model", CHECK(0));
        TEST_SUMMARY();
    }
    RUN(test_protocol);
    RUN(test_same_as_native);
    RUN(test_truncations);
    RUN(test_corruptions);
    RUN(test_tokenize_and_sampler);
    free(model_buf);
    TEST_SUMMARY();
}
