/* gen_stream_seeds.c - writes the seeds of fuzz/seeds/fuzz_gguf_stream/: tiny
 * synthesized models (llama with rope factors, qwen2 with biases, qwen3 with
 * tied embeddings; Q8_0 and F16) that load and run, each as one file and as
 * the hierarchical shards `streamllm split` makes of it, the shards joined by
 * the separator fuzz_gguf_stream.c splits its input at.
 *
 *   make build/libstreamllm.a build/libstreamllm-tools.a
 *   cc -std=c11 -D_DEFAULT_SOURCE -Isrc fuzz/gen_stream_seeds.c build/libstreamllm-tools.a build/libstreamllm.a \
 *      -lcjson -lcrypto -lm -pthread -o /tmp/gen_stream_seeds
 *   /tmp/gen_stream_seeds fuzz/seeds/fuzz_gguf_stream */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/synth.h"
#include "shard/shard.h"

static const char SEPARATOR[8] = {0, 'S', 'L', 'P', 'A', 'R', 'T', 0};

static void *read_file(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    void *buf = n > 0 ? malloc((size_t)n) : NULL;
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    *size = buf ? (size_t)n : 0;
    return buf;
}

static int write_file(const char *path, const void *a, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = fwrite(a, 1, n, f);
    return fclose(f) == 0 && w == n ? 0 : -1;
}

/* One model: NAME.gguf, and NAME-split (its shards joined by SEPARATOR). */
static int seed(const char *dir, const char *name, const sl_synth_shape *shape, const char *preset) {
    sl_synth_params p = {.shape = shape, .preset = sl_synth_find_preset(preset), .seed = 1};
    sl_error err;
    char path[1024], shards[1024];
    snprintf(path, sizeof path, "/tmp/gen-stream-%s.gguf", name);
    snprintf(shards, sizeof shards, "/tmp/gen-stream-%s-shards", name);
    if (!p.preset || sl_synth_write_file(&p, path, &err)) {
        fprintf(stderr, "%s: %s\n", name, p.preset ? err.msg : "no preset");
        return -1;
    }
    size_t n;
    void *model = read_file(path, &n);
    char out[1024];
    snprintf(out, sizeof out, "%s/%s.gguf", dir, name);
    if (!model || write_file(out, model, n)) return -1;
    free(model);

    sl_split_opts so = {.max_shard_bytes = 4096};
    if (sl_shard_split(path, shards, &so, &err)) {
        fprintf(stderr, "%s: %s\n", name, err.msg);
        return -1;
    }
    sl_manifest m;
    if (sl_manifest_load(shards, &m, NULL, &err)) {
        fprintf(stderr, "%s: %s\n", name, err.msg);
        return -1;
    }
    snprintf(out, sizeof out, "%s/%s-split", dir, name);
    FILE *f = fopen(out, "wb");
    for (int s = 0; f && s < m.n_shards; s++) {
        char shard[2048];
        snprintf(shard, sizeof shard, "%s/%s", shards, m.shards[s].file);
        void *bytes = read_file(shard, &n);
        if (s > 0) fwrite(SEPARATOR, 1, sizeof SEPARATOR, f);
        if (bytes) fwrite(bytes, 1, n, f);
        free(bytes);
    }
    printf("%s: %d shards\n", name, m.n_shards);
    sl_manifest_free(&m);
    return f && fclose(f) == 0 ? 0 : -1;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    /* vocabulary 260 (the smallest synthetic one), one layer: 4 shards */
    sl_synth_shape llama = {"fuzz-llama", "fuzz-llama", SL_ARCH_LLAMA, 260, 32, 1, 2, 1, 16, 64, 64, 1e-5f,
                            500000.0f, false, 8, 1, 4, 64};
    sl_synth_shape qwen2 = {"fuzz-qwen2", "fuzz-qwen2", SL_ARCH_QWEN2, 260, 32, 1, 2, 2, 16, 64, 64, 1e-6f,
                            1e6f, false, 0, 0, 0, 0};
    sl_synth_shape qwen3 = {"fuzz-qwen3", "fuzz-qwen3", SL_ARCH_QWEN3, 260, 32, 1, 2, 1, 32, 64, 64, 1e-6f,
                            1e6f, true, 0, 0, 0, 0};
    int rc = 0;
    rc |= seed(argv[1], "llama-q8_0", &llama, "Q8_0");
    rc |= seed(argv[1], "qwen2-f16", &qwen2, "F16");
    rc |= seed(argv[1], "qwen3-q8_0", &qwen3, "Q8_0");
    return rc ? 1 : 0;
}
