/* fuzz_gguf.c - libFuzzer target for the GGUF reader and writer.
 *
 * Parses the input in normal and header-only mode, walks every key, value
 * (nested arrays included) and tensor, checks that lookups agree with the
 * listing, and writes what parsed back out: the rewrite must parse to the same
 * content, and rewriting that must give the same bytes again. Any violation
 * traps, so libFuzzer reports it like a crash. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gguf/gguf.h"

#define REQUIRE(cond) \
    do {              \
        if (!(cond)) __builtin_trap(); \
    } while (0)

static volatile unsigned sink;

/* Reads every byte a value refers to (so ASan sees any bad pointer). */
static void touch_value(const sl_gguf_value *v, int depth) {
    REQUIRE(depth <= SL_GGUF_MAX_ARRAY_DEPTH);
    unsigned sum = 0;
    switch (v->type) {
    case SL_GGUF_STRING:
        for (uint64_t i = 0; i < v->str.len; i++) sum += (unsigned char)v->str.ptr[i];
        break;
    case SL_GGUF_ARRAY: {
        REQUIRE(depth < SL_GGUF_MAX_ARRAY_DEPTH);
        size_t elem_size = sl_gguf_vtype_size(v->arr.elem_type);
        if (elem_size) {
            REQUIRE(v->arr.items == NULL && (v->arr.n == 0 || v->arr.data != NULL));
            const unsigned char *p = v->arr.data;
            for (uint64_t i = 0; i < v->arr.n * elem_size; i++) sum += p[i];
        } else {
            REQUIRE(v->arr.elem_type == SL_GGUF_STRING || v->arr.elem_type == SL_GGUF_ARRAY);
            REQUIRE(v->arr.n == 0 || v->arr.items != NULL);
            for (uint64_t i = 0; i < v->arr.n; i++) {
                REQUIRE(v->arr.items[i].type == v->arr.elem_type);
                touch_value(&v->arr.items[i], depth + 1);
            }
        }
        break;
    }
    default:
        REQUIRE((unsigned)v->type < SL_GGUF_VTYPE_COUNT);
        break;
    }
    sink += sum;
}

static void walk(const sl_gguf *g, bool header_only) {
    char text[256];
    sl_error err;
    for (int64_t i = 0; i < sl_gguf_n_kv(g); i++) {
        const char *key = sl_gguf_key_at(g, i);
        const sl_gguf_value *v = sl_gguf_value_at(g, i);
        REQUIRE(key && v);
        REQUIRE(sl_gguf_find(g, key) == v);
        touch_value(v, 0);
        sl_gguf_format_value(v, 4, text, sizeof text);
        REQUIRE(strlen(text) < sizeof text);
        uint64_t u;
        int64_t s;
        double d;
        bool b;
        sl_gguf_str str;
        const sl_gguf_value *arr;
        REQUIRE(sl_gguf_get_u64(g, key, &u, &err) != 0);
        REQUIRE(sl_gguf_get_i64(g, key, &s, &err) != 0);
        REQUIRE(sl_gguf_get_f64(g, key, &d, &err) != 0);
        REQUIRE(sl_gguf_get_bool(g, key, &b, &err) != 0);
        REQUIRE(sl_gguf_get_str(g, key, &str, &err) != 0);
        REQUIRE(sl_gguf_get_arr(g, key, &arr, &err) != 0);
    }
    REQUIRE(sl_gguf_key_at(g, sl_gguf_n_kv(g)) == NULL);
    uint32_t alignment = sl_gguf_alignment(g);
    REQUIRE(alignment && (alignment & (alignment - 1)) == 0);
    REQUIRE(sl_gguf_data_offset(g) % alignment == 0);
    for (int64_t i = 0; i < sl_gguf_n_tensors(g); i++) {
        const sl_gguf_tensor *t = sl_gguf_tensor_at(g, i);
        REQUIRE(t && t->name && strlen(t->name) < SL_GGUF_MAX_NAME);
        REQUIRE(sl_gguf_find_tensor(g, t->name) == t);
        REQUIRE(t->n_dims >= 1 && t->n_dims <= SL_GGUF_MAX_DIMS);
        REQUIRE(t->offset % alignment == 0);
        if (header_only) {
            REQUIRE(t->data == NULL);
        } else if (t->nbytes) {
            const unsigned char *p = t->data;
            sink += p[0] + p[t->nbytes - 1];
        }
        sl_gguf_format_tensor(t, text, sizeof text);
    }
    sl_gguf_split split;
    sl_gguf_split_info(g, &split, &err);
}

/* Copies every kv and tensor into a writer and writes it to memory. */
static bool rewrite(const sl_gguf *g, void **out, size_t *out_size) {
    sl_error err;
    sl_gguf_writer *w = sl_gguf_writer_new();
    REQUIRE(w);
    for (int64_t i = 0; i < sl_gguf_n_kv(g); i++)
        REQUIRE(sl_gguf_set_value(w, sl_gguf_key_at(g, i), sl_gguf_value_at(g, i)) == 0);
    for (int64_t i = 0; i < sl_gguf_n_tensors(g); i++) {
        const sl_gguf_tensor *t = sl_gguf_tensor_at(g, i);
        REQUIRE(sl_gguf_add_tensor(w, t->name, t->type, t->n_dims, t->ne, t->data, &err) == 0);
    }
    int rc = sl_gguf_write_memory(w, out, out_size, NULL, NULL, &err);
    sl_gguf_writer_free(w);
    return rc == 0;
}

static void check_round_trip(const sl_gguf *g) {
    /* Huge alignments make large (valid) files: not worth the time here. */
    if (sl_gguf_alignment(g) > 4096) return;
    void *first = NULL, *second = NULL;
    size_t first_size = 0, second_size = 0;
    REQUIRE(rewrite(g, &first, &first_size));
    sl_error err;
    sl_gguf *r = sl_gguf_open_memory(first, first_size, 0, &err);
    REQUIRE(r != NULL);
    REQUIRE(sl_gguf_n_kv(r) == sl_gguf_n_kv(g) && sl_gguf_n_tensors(r) == sl_gguf_n_tensors(g));
    for (int64_t i = 0; i < sl_gguf_n_kv(g); i++) {
        REQUIRE(strcmp(sl_gguf_key_at(r, i), sl_gguf_key_at(g, i)) == 0);
        REQUIRE(sl_gguf_value_at(r, i)->type == sl_gguf_value_at(g, i)->type);
    }
    for (int64_t i = 0; i < sl_gguf_n_tensors(g); i++) {
        const sl_gguf_tensor *a = sl_gguf_tensor_at(g, i), *b = sl_gguf_tensor_at(r, i);
        REQUIRE(strcmp(a->name, b->name) == 0 && a->type == b->type && a->nbytes == b->nbytes);
        REQUIRE(memcmp(a->ne, b->ne, sizeof a->ne) == 0);
        REQUIRE(a->nbytes == 0 || memcmp(a->data, b->data, a->nbytes) == 0);
    }
    REQUIRE(rewrite(r, &second, &second_size));
    REQUIRE(second_size == first_size && memcmp(first, second, first_size) == 0);
    sl_gguf_close(r);
    free(first);
    free(second);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    sl_error err;
    err.msg[0] = 0;
    sl_gguf *g = sl_gguf_open_memory(data, size, 0, &err);
    sl_error herr;
    herr.msg[0] = 0;
    sl_gguf *h = sl_gguf_open_memory(data, size, SL_GGUF_HEADER_ONLY, &herr);
    if (!g) REQUIRE(err.msg[0] != 0 && strchr(err.msg, '\n') == NULL);
    if (!h) REQUIRE(herr.msg[0] != 0);
    /* Whatever parses fully also parses header-only, with the same listing. */
    if (g) {
        REQUIRE(h != NULL);
        REQUIRE(sl_gguf_n_kv(h) == sl_gguf_n_kv(g) && sl_gguf_n_tensors(h) == sl_gguf_n_tensors(g));
        REQUIRE(sl_gguf_data_offset(h) == sl_gguf_data_offset(g));
        walk(g, false);
        check_round_trip(g);
    }
    if (h) walk(h, true);
    sl_gguf_close(g);
    sl_gguf_close(h);
    return 0;
}
