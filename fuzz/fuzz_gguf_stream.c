/* fuzz_gguf_stream.c - libFuzzer target for the streamed loading path of the
 * wasm engine (src/wasm/exports.c, compiled natively): the header-first
 * protocol in which JS hands model_header growing prefixes of each GGUF file
 * (of a llama.cpp split: every part in order) until it accepts one, then
 * writes the weights into wasm memory (whole files, or tensor by tensor at
 * cpu_tensor_dest as the StreamWeightManager does) and calls model_load.
 *
 * Input: the files of the model, one after the other, separated by the 8
 * bytes "\0SLPART\0" (at most 12 files; seeds: fuzz/gen_stream_seeds.c, small
 * models of three architectures whole and split: megabyte-sized seeds such
 * as the test data's would make every run slow). The input's length picks
 * the first prefix size and how weights are written.
 *
 * Beyond memory safety it traps when an answer breaks the protocol: a request
 * for more bytes that is not more than given or is past the file's end; a
 * tensor table that points outside its file; a file whose whole bytes parse
 * header-only but that the prefix protocol refuses. When the model loads, it
 * is run a little: info, tokenizer, detokenizer, chat prompt, one CPU step. */
#include "../src/wasm/exports.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REQUIRE(cond) \
    do {              \
        if (!(cond)) __builtin_trap(); \
    } while (0)

#define MAX_FILES 12
#define MAX_LOAD_BYTES (8u << 20) /* model_load and a CPU step only for inputs this small */

static const char SEPARATOR[8] = {0, 'S', 'L', 'P', 'A', 'R', 'T', 0};

typedef struct part {
    const uint8_t *bytes;
    size_t size;
} part;

static int split_input(const uint8_t *data, size_t size, part *parts) {
    int n = 0;
    size_t start = 0;
    for (size_t i = 0; i + sizeof SEPARATOR <= size && n < MAX_FILES - 1; i++)
        if (memcmp(data + i, SEPARATOR, sizeof SEPARATOR) == 0) {
            parts[n++] = (part){data + start, i - start};
            start = i + sizeof SEPARATOR;
            i = start - 1;
        }
    parts[n++] = (part){data + start, size - start};
    return n;
}

/* Gives one file's header as engine.mjs does: a first prefix, then exactly
 * what model_header asks for. Returns its last answer (0 or -1). */
static double give_header(sl_wasm_model *m, const part *p, size_t first) {
    size_t len = first < p->size ? first : p->size;
    for (int calls = 0;; calls++) {
        /* a copy of just these bytes, so ASan sees any read past them */
        uint8_t *copy = malloc(len ? len : 1);
        REQUIRE(copy);
        memcpy(copy, p->bytes, len);
        double r = wasm_model_header(m, copy, len, (double)p->size);
        free(copy);
        if (r <= 0) {
            REQUIRE(r == 0 || r == -1);
            if (r < 0) REQUIRE(last_error.msg[0] != 0 && strchr(last_error.msg, '\n') == NULL);
            return r;
        }
        REQUIRE(r > (double)len && r <= (double)p->size && r == floor(r)); /* more, and not past the end */
        REQUIRE(calls < 64); /* the asks grow geometrically */
        len = (size_t)r;
    }
}

/* The tensor table must stay inside the files it names. */
static void check_table(const sl_wasm_model *m, const part *parts) {
    int32_t n = wasm_model_n_tensors(m);
    REQUIRE(n >= 0);
    for (int32_t i = 0; i < n; i++) {
        int32_t f = wasm_model_tensor_file(m, i);
        REQUIRE(f >= 0 && f < m->n_files);
        double off = wasm_model_tensor_offset(m, i), bytes = wasm_model_tensor_bytes(m, i);
        REQUIRE(off >= 0 && bytes >= 0 && off + bytes <= (double)parts[f].size);
        REQUIRE(wasm_model_tensor_name(m, i) != NULL);
    }
}

/* Writes the weights as the StreamWeightManager does (tensor by tensor) or
 * as a whole-file load does. */
static bool write_weights(sl_wasm_model *m, const part *parts, bool per_tensor) {
    if (wasm_cpu_weights_alloc(m) != 0) return false;
    if (!per_tensor) {
        for (int k = 0; k < m->n_files; k++) {
            unsigned char *dest = wasm_cpu_file_dest(m, k);
            REQUIRE(dest);
            memcpy(dest, parts[k].bytes, parts[k].size);
        }
        return true;
    }
    for (int32_t i = 0; i < wasm_model_n_tensors(m); i++) {
        unsigned char *dest = wasm_cpu_tensor_dest(m, i);
        REQUIRE(dest);
        size_t off = (size_t)wasm_model_tensor_offset(m, i), bytes = (size_t)wasm_model_tensor_bytes(m, i);
        memcpy(dest, parts[wasm_model_tensor_file(m, i)].bytes + off, bytes);
    }
    return true;
}

static void exercise_model(sl_wasm_model *m) {
    REQUIRE(wasm_model_info(m) != NULL);
    int32_t n_vocab = wasm_model_n_vocab(m);
    REQUIRE(n_vocab > 0);
    static const char text[] = "Hello world, <s> 123 \xc3\xa9t\xc3\xa9!";
    int32_t ids[64];
    int32_t n = wasm_tokenize(m, text, sizeof text - 1, 3, ids, 64);
    if (n > 64) n = 64;
    for (int32_t i = 0; i < n; i++) REQUIRE(ids[i] >= 0 && ids[i] < n_vocab);
    wasm_detok *d = wasm_detok_new(m, 2);
    if (d) {
        for (int32_t i = 0; i < n; i++) {
            int32_t len = wasm_detok_push(d, ids[i]);
            REQUIRE(len >= 0 && (size_t)len < d->cap);
        }
        (void)wasm_detok_push(d, n_vocab - 1);
        (void)wasm_detok_flush(d);
        wasm_detok_free(d);
    }
    free(wasm_chat_prompt(m, NULL, "sys", "hi"));
    sl_cpu_ctx *c = wasm_cpu_new(m, 8, 4);
    if (!c) return;
    float *logits = malloc((size_t)n_vocab * sizeof *logits);
    int32_t tok[2] = {n > 0 ? ids[0] : 0, n_vocab - 1};
    if (logits) (void)wasm_cpu_eval(c, tok, 2, logits, 0);
    free(logits);
    wasm_cpu_free(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    part parts[MAX_FILES];
    int n_parts = split_input(data, size, parts);
    static const size_t FIRST[] = {16, 4096, 1u << 20};
    size_t first = FIRST[size % 3];

    /* What the whole first file says when parsed at once, header-only. */
    sl_error e;
    sl_gguf *whole = sl_gguf_open_memory(parts[0].bytes, parts[0].size, SL_GGUF_HEADER_ONLY, &e);

    sl_wasm_model *m = wasm_model_new();
    REQUIRE(m);
    int given = 0;
    for (int k = 0; k < n_parts; k++) {
        double r = give_header(m, &parts[k], first);
        if (k == 0 && whole) {
            /* a single-file GGUF whose header parses and whose tensors fit must be accepted */
            sl_gguf_split split;
            sl_error se;
            int is_split = sl_gguf_split_info(whole, &split, &se);
            bool fits = true;
            for (int64_t i = 0; i < sl_gguf_n_tensors(whole); i++) {
                const sl_gguf_tensor *t = sl_gguf_tensor_at(whole, i);
                uint64_t end;
                if (!sl_add_u64(sl_gguf_data_offset(whole), t->offset, &end) || !sl_add_u64(end, t->nbytes, &end) ||
                    end > parts[0].size)
                    fits = false;
            }
            if (is_split == 0 && fits) REQUIRE(r == 0);
        }
        if (r != 0) break;
        given++;
        REQUIRE(wasm_model_n_files_given(m) == given);
        if ((uint32_t)given == m->n_expected) break;
    }
    sl_gguf_close(whole);

    if (sl_wasm_model_gguf(m)) {
        REQUIRE(given >= 1 && (uint32_t)given == m->n_expected);
        check_table(m, parts);
        if (size <= MAX_LOAD_BYTES && write_weights(m, parts, (size & 4) != 0)) {
            if (wasm_model_load(m, NULL) == 0) exercise_model(m);
            else REQUIRE(last_error.msg[0] != 0);
        }
    } else {
        /* incomplete: the table is refused, not half given */
        REQUIRE(wasm_model_n_tensors(m) == -1);
    }
    wasm_model_free(m);
    return 0;
}
