/* gen_gguf_seeds.c - writes the small seed files of fuzz/seeds/fuzz_gguf/ with
 * the GGUF writer: a model-like file (every value type, nested and string
 * arrays, tensors of several types), a split part with alignment 64, a
 * tokenizer-like file without tensors, and an empty GGUF.
 *
 *   make build/libstreamllm.a
 *   cc -std=c11 -Isrc fuzz/gen_gguf_seeds.c build/libstreamllm.a -lm -pthread -o /tmp/gen_gguf_seeds
 *   /tmp/gen_gguf_seeds fuzz/seeds/fuzz_gguf */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf/gguf.h"
#include "quant/quant.h"

static int fill(void *ctx, int64_t index, void *dst, uint64_t nbytes, sl_error *err) {
    (void)ctx;
    (void)err;
    for (uint64_t i = 0; i < nbytes; i++) ((unsigned char *)dst)[i] = (unsigned char)(index * 7 + i * 3);
    return 0;
}

static int write_seed(sl_gguf_writer *w, const char *dir, const char *name) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    sl_error err;
    int rc = sl_gguf_write_file(w, path, fill, NULL, &err);
    if (rc) fprintf(stderr, "%s: %s\n", path, err.msg);
    sl_gguf_writer_free(w);
    return rc;
}

static int add(sl_gguf_writer *w, const char *name, int type, uint32_t n_dims, int64_t a, int64_t b) {
    int64_t ne[4] = {a, b, 1, 1};
    sl_error err;
    if (sl_gguf_add_tensor(w, name, type, n_dims, ne, NULL, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    const char *dir = argv[1];
    int rc = 0;

    /* A model-like file. */
    sl_gguf_writer *w = sl_gguf_writer_new();
    sl_gguf_set_str(w, "general.architecture", "llama");
    sl_gguf_set_u32(w, "llama.embedding_length", 32);
    sl_gguf_set_i32(w, "test.i32", -5);
    sl_gguf_set_u64(w, "test.u64", 1u << 20);
    sl_gguf_set_f32(w, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
    sl_gguf_set_bool(w, "test.bool", true);
    sl_gguf_value v = {.type = SL_GGUF_UINT8, .u64 = 200};
    sl_gguf_set_value(w, "test.u8", &v);
    v = (sl_gguf_value){.type = SL_GGUF_INT16, .i64 = -300};
    sl_gguf_set_value(w, "test.i16", &v);
    v = (sl_gguf_value){.type = SL_GGUF_FLOAT64, .f64 = 0.25};
    sl_gguf_set_value(w, "test.f64", &v);
    v = (sl_gguf_value){.type = SL_GGUF_INT64, .i64 = -1};
    sl_gguf_set_value(w, "test.i64", &v);
    float scores[4] = {0, -1.5f, -2, -3};
    sl_gguf_set_arr(w, "tokenizer.ggml.scores", SL_GGUF_FLOAT32, scores, 4);
    const char *tokens[4] = {"<unk>", "<s>", "</s>", "\xe2\x96\x81the"};
    sl_gguf_set_arr_str(w, "tokenizer.ggml.tokens", tokens, 4);
    uint16_t shorts[3] = {1, 2, 3};
    sl_gguf_value inner[2] = {{.type = SL_GGUF_ARRAY}, {.type = SL_GGUF_ARRAY}};
    inner[0].arr.elem_type = inner[1].arr.elem_type = SL_GGUF_UINT16;
    inner[0].arr.n = 3; inner[0].arr.data = shorts;
    inner[1].arr.n = 1; inner[1].arr.data = shorts + 2;
    sl_gguf_value nested = {.type = SL_GGUF_ARRAY};
    nested.arr.elem_type = SL_GGUF_ARRAY; nested.arr.n = 2; nested.arr.items = inner;
    sl_gguf_set_value(w, "test.nested", &nested);
    rc |= add(w, "token_embd.weight", SL_TYPE_Q8_0, 2, 32, 4);
    rc |= add(w, "output_norm.weight", SL_TYPE_F32, 1, 32, 1);
    rc |= add(w, "blk.0.attn_q.weight", SL_TYPE_F16, 2, 8, 4);
    rc |= add(w, "blk.0.ffn_up.weight", SL_TYPE_Q4_K, 2, 256, 1);
    rc |= write_seed(w, dir, "model.gguf");

    /* A split part with a larger alignment. */
    w = sl_gguf_writer_new();
    sl_gguf_set_alignment(w, 64);
    v = (sl_gguf_value){.type = SL_GGUF_UINT16, .u64 = 1};
    sl_gguf_set_value(w, "split.no", &v);
    v = (sl_gguf_value){.type = SL_GGUF_UINT16, .u64 = 2};
    sl_gguf_set_value(w, "split.count", &v);
    sl_gguf_set_i32(w, "split.tensors.count", 4);
    rc |= add(w, "blk.1.attn_k.weight", SL_TYPE_Q4_0, 2, 32, 2);
    rc |= add(w, "blk.1.ffn_norm.weight", SL_TYPE_BF16, 1, 16, 1);
    rc |= write_seed(w, dir, "split-part.gguf");

    /* A tokenizer-only file. */
    w = sl_gguf_writer_new();
    sl_gguf_set_str(w, "tokenizer.ggml.model", "gpt2");
    const char *vocab[12] = {"a", "b", "c", "ab", "bc", "abc", "\xc4\xa0", "\xc4\xa0" "a", "<|end|>", "!", "?", "."};
    sl_gguf_set_arr_str(w, "tokenizer.ggml.tokens", vocab, 12);
    int32_t types[12] = {1, 1, 1, 1, 1, 1, 1, 1, 3, 1, 1, 1};
    sl_gguf_set_arr(w, "tokenizer.ggml.token_type", SL_GGUF_INT32, types, 12);
    const char *merges[4] = {"a b", "b c", "ab c", "\xc4\xa0 a"};
    sl_gguf_set_arr_str(w, "tokenizer.ggml.merges", merges, 4);
    sl_gguf_set_u32(w, "tokenizer.ggml.eos_token_id", 8);
    rc |= write_seed(w, dir, "tokenizer.gguf");

    rc |= write_seed(sl_gguf_writer_new(), dir, "empty.gguf");
    return rc ? 1 : 0;
}
