/* fuzz_tokenizer.c - libFuzzer target for the tokenizers: arbitrary bytes are
 * tokenized with small vocabularies built in memory with the GGUF writer (a
 * SentencePiece one, and byte-level BPE ones with each pre-tokenizer), and
 * the ids are detokenized, whole and streamed, which must give valid UTF-8.
 * Input: byte 0 picks the vocabulary, byte 1 the flags, the rest is the text. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf/gguf.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const pre_names[] = {
    "default", "llama-bpe", "gpt-2", "qwen2", "qwen35", "deepseek-llm", "deepseek-coder", "deepseek-v3", "falcon",
    "starcoder", "command-r", "tekken", "chameleon", "gpt-4o", "bloom", "viking", "jais-2", "superbpe", "afmoe",
    "tiny_aya", "kimi-k2", "exaone-moe", "youtu", "bailingmoe", "seed-coder", "granite-embed-multi-97m",
    "minicpm5", "laguna", "gemma4", "whitespace",
};
#define N_PRE (sizeof pre_names / sizeof pre_names[0])

static sl_tokenizer *toks[N_PRE + 1];

static sl_tokenizer *load(sl_gguf_writer *w) {
    void *buf = NULL;
    size_t n = 0;
    sl_error err;
    sl_tokenizer *t = NULL;
    if (sl_gguf_write_memory(w, &buf, &n, NULL, NULL, &err) == 0) {
        sl_gguf *g = sl_gguf_open_memory(buf, n, 0, &err);
        if (g) t = sl_tokenizer_from_gguf(g, &err);
        sl_gguf_close(g);
    }
    free(buf);
    sl_gguf_writer_free(w);
    if (!t) __builtin_trap(); /* the vocabularies below are valid */
    return t;
}

/* A few merged tokens over the 256 single-byte ones, plus special tokens. */
static const char *const bpe_extra[] = {"\xC4\xA0t", "he", "\xC4\xA0the", "in", "\xC4\xA0" "a", "er", "<|endoftext|>",
                                        "<tool>", "\xE2\x96\x81" "a", "<0x41>"};
static const char *const bpe_merges[] = {"\xC4\xA0 t", "h e", "\xC4\xA0t he", "i n", "\xC4\xA0 a", "e r"};

static sl_tokenizer *bpe_vocab(const char *pre) {
    static char names[256][4];
    const char *tokens[256 + 10];
    int32_t types[256 + 10];
    size_t n = 0, next = 256;
    for (int b = 0; b < 256; b++) {
        bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        char enc[4];
        size_t k = sl_utf8_encode(printable ? (uint32_t)b : (uint32_t)next++, enc);
        memcpy(names[b], enc, k);
        names[b][k] = 0;
        tokens[n] = names[b];
        types[n++] = SL_TOKTYPE_NORMAL;
    }
    for (size_t i = 0; i < sizeof bpe_extra / sizeof bpe_extra[0]; i++) {
        tokens[n] = bpe_extra[i];
        types[n++] = i == 6 ? SL_TOKTYPE_CONTROL : i == 7 ? SL_TOKTYPE_USER_DEFINED : i == 9 ? SL_TOKTYPE_BYTE
                                                                                          : SL_TOKTYPE_NORMAL;
    }
    sl_gguf_writer *w = sl_gguf_writer_new();
    sl_gguf_set_str(w, "tokenizer.ggml.model", "gpt2");
    sl_gguf_set_str(w, "tokenizer.ggml.pre", pre);
    sl_gguf_set_arr_str(w, "tokenizer.ggml.tokens", tokens, n);
    sl_gguf_set_arr(w, "tokenizer.ggml.token_type", SL_GGUF_INT32, types, n);
    sl_gguf_set_arr_str(w, "tokenizer.ggml.merges", bpe_merges, sizeof bpe_merges / sizeof bpe_merges[0]);
    sl_gguf_set_u32(w, "tokenizer.ggml.bos_token_id", 262);
    sl_gguf_set_u32(w, "tokenizer.ggml.eos_token_id", 262);
    return load(w);
}

static sl_tokenizer *spm_vocab(void) {
    static char bytes[256][8];
    static const char *const words[] = {"\xE2\x96\x81", "a", "b", "\xE2\x96\x81" "a", "ab", "\xE2\x96\x81" "ab",
                                        "<|user|>", "\xC3\xA9", "\xE2\x96\x81\xE2\x96\x81"};
    const char *tokens[3 + 256 + 9];
    float scores[3 + 256 + 9];
    int32_t types[3 + 256 + 9];
    size_t n = 0;
    tokens[n] = "<unk>", scores[n] = 0, types[n++] = SL_TOKTYPE_UNKNOWN;
    tokens[n] = "<s>", scores[n] = 0, types[n++] = SL_TOKTYPE_CONTROL;
    tokens[n] = "</s>", scores[n] = 0, types[n++] = SL_TOKTYPE_CONTROL;
    for (int b = 0; b < 256; b++) {
        snprintf(bytes[b], sizeof bytes[b], "<0x%02X>", b);
        tokens[n] = bytes[b], scores[n] = 0, types[n++] = SL_TOKTYPE_BYTE;
    }
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++) {
        tokens[n] = words[i];
        scores[n] = -(float)i;
        types[n++] = i == 6 ? SL_TOKTYPE_USER_DEFINED : SL_TOKTYPE_NORMAL;
    }
    sl_gguf_writer *w = sl_gguf_writer_new();
    sl_gguf_set_str(w, "tokenizer.ggml.model", "llama");
    sl_gguf_set_arr_str(w, "tokenizer.ggml.tokens", tokens, n);
    sl_gguf_set_arr(w, "tokenizer.ggml.scores", SL_GGUF_FLOAT32, scores, n);
    sl_gguf_set_arr(w, "tokenizer.ggml.token_type", SL_GGUF_INT32, types, n);
    return load(w);
}

static void check_utf8(const char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        int r = sl_utf8_check((const uint8_t *)s + i, n - i);
        if (r <= 0) __builtin_trap(); /* detokenized text must be valid UTF-8 */
        i += (size_t)r;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2) return 0;
    size_t which = data[0] % (N_PRE + 1);
    if (!toks[which]) toks[which] = which == N_PRE ? spm_vocab() : bpe_vocab(pre_names[which]);
    const sl_tokenizer *t = toks[which];
    bool add_special = data[1] & 1, parse_special = data[1] & 2, render = data[1] & 4;
    const char *text = (const char *)data + 2;
    size_t len = size - 2;

    int32_t *ids = NULL;
    size_t n = 0;
    sl_error err;
    if (sl_tokenize(t, text, len, add_special, parse_special, &ids, &n, &err) != 0) {
        if (!err.msg[0]) __builtin_trap(); /* a failure must say why */
        return 0;
    }
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= sl_tokenizer_n_vocab(t)) __builtin_trap();

    char *whole = sl_detokenize(t, ids, n, render);
    if (!whole) __builtin_trap();
    check_utf8(whole, strlen(whole));

    /* Streamed, every piece on its own is valid too, and all of them make the whole. */
    size_t cap = sl_tokenizer_max_piece(t) + 16, total = 0;
    char *piece = malloc(cap);
    sl_detok d;
    sl_detok_init(&d, t, render);
    for (size_t i = 0; i <= n; i++) {
        size_t k = i < n ? sl_detok_push(&d, ids[i], piece, cap) : sl_detok_flush(&d, piece, cap);
        if (k >= cap || piece[k] != 0) __builtin_trap();
        check_utf8(piece, k);
        if (memcmp(whole + total, piece, k) != 0) __builtin_trap();
        total += k;
    }
    if (whole[total] != 0) __builtin_trap();
    free(piece);
    free(whole);
    free(ids);
    return 0;
}
