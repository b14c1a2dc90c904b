/* test_gguf.c - the GGUF reader and writer: files built with the writer and
 * read back (every value type, nested arrays, alignments, zero tensors,
 * header-only mode, split sets in a temp dir, writer errors), then every model
 * of the shared test data (known keys and shapes, byte-identical rewrite). */
#include <dirent.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gguf/gguf.h"
#include "quant/quant.h"
#include "test.h"

static char tmp_dir[256];

static const char *tmp_path(const char *name) {
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", tmp_dir, name);
    return path;
}

static bool read_whole(const char *path, unsigned char **data, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) return false;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    *data = malloc(n > 0 ? (size_t)n : 1);
    *size = fread(*data, 1, (size_t)n, f) ;
    fclose(f);
    return *size == (size_t)n;
}

/* Deep equality of two values (floats bitwise through their stored double). */
static bool values_equal(const sl_gguf_value *a, const sl_gguf_value *b) {
    if (a->type != b->type) return false;
    switch (a->type) {
    case SL_GGUF_UINT8: case SL_GGUF_UINT16: case SL_GGUF_UINT32: case SL_GGUF_UINT64:
        return a->u64 == b->u64;
    case SL_GGUF_INT8: case SL_GGUF_INT16: case SL_GGUF_INT32: case SL_GGUF_INT64:
        return a->i64 == b->i64;
    case SL_GGUF_FLOAT32: case SL_GGUF_FLOAT64:
        return memcmp(&a->f64, &b->f64, sizeof a->f64) == 0;
    case SL_GGUF_BOOL: return a->b == b->b;
    case SL_GGUF_STRING:
        return a->str.len == b->str.len && (a->str.len == 0 || memcmp(a->str.ptr, b->str.ptr, a->str.len) == 0);
    case SL_GGUF_ARRAY: {
        if (a->arr.elem_type != b->arr.elem_type || a->arr.n != b->arr.n) return false;
        size_t es = sl_gguf_vtype_size(a->arr.elem_type);
        if (es) return a->arr.n == 0 || memcmp(a->arr.data, b->arr.data, a->arr.n * es) == 0;
        for (uint64_t i = 0; i < a->arr.n; i++)
            if (!values_equal(&a->arr.items[i], &b->arr.items[i])) return false;
        return true;
    }
    default: return false;
    }
}

/* ---- every value type ------------------------------------------------------ */

static const char *const scalar_keys[] = {"t.u8", "t.i8", "t.u16", "t.i16", "t.u32", "t.i32",
                                           "t.f32", "t.bool", "t.u64", "t.i64", "t.f64"};

static void test_value_types(void) {
    sl_gguf_writer *w = sl_gguf_writer_new();
    CHECK(w != NULL);
    sl_gguf_value v;
    v = (sl_gguf_value){.type = SL_GGUF_UINT8, .u64 = 250}; CHECK(sl_gguf_set_value(w, "t.u8", &v) == 0);
    v = (sl_gguf_value){.type = SL_GGUF_INT8, .i64 = -100}; CHECK(sl_gguf_set_value(w, "t.i8", &v) == 0);
    v = (sl_gguf_value){.type = SL_GGUF_UINT16, .u64 = 65000}; CHECK(sl_gguf_set_value(w, "t.u16", &v) == 0);
    v = (sl_gguf_value){.type = SL_GGUF_INT16, .i64 = -32000}; CHECK(sl_gguf_set_value(w, "t.i16", &v) == 0);
    CHECK(sl_gguf_set_u32(w, "t.u32", 4000000000u) == 0);
    CHECK(sl_gguf_set_i32(w, "t.i32", -2000000000) == 0);
    CHECK(sl_gguf_set_f32(w, "t.f32", 1.5e-5f) == 0);
    CHECK(sl_gguf_set_bool(w, "t.bool", true) == 0);
    CHECK(sl_gguf_set_u64(w, "t.u64", UINT64_MAX - 7) == 0);
    v = (sl_gguf_value){.type = SL_GGUF_INT64, .i64 = INT64_MIN + 3}; CHECK(sl_gguf_set_value(w, "t.i64", &v) == 0);
    v = (sl_gguf_value){.type = SL_GGUF_FLOAT64, .f64 = -3.141592653589793}; CHECK(sl_gguf_set_value(w, "t.f64", &v) == 0);
    CHECK(sl_gguf_set_str(w, "t.str", "hello, gguf") == 0);
    CHECK(sl_gguf_set_str_n(w, "t.str_bytes", "a\0b\xff\n", 5) == 0);
    CHECK(sl_gguf_set_str(w, "t.str_empty", "") == 0);

    /* Arrays of every scalar type. */
    uint8_t u8s[] = {0, 1, 255};
    int8_t i8s[] = {-128, 0, 127};
    uint16_t u16s[] = {1, 65535};
    int16_t i16s[] = {-32768, 32767};
    uint32_t u32s[] = {7, 0xffffffffu, 0, 42};
    int32_t i32s[] = {INT32_MIN, -1, INT32_MAX};
    float f32s[] = {0.0f, -1.25f, 3.4e38f, 1e-45f};
    uint8_t bools[] = {1, 0, 1};
    uint64_t u64s[] = {UINT64_MAX, 0};
    int64_t i64s[] = {INT64_MIN, INT64_MAX, 0};
    double f64s[] = {1e300, -0.0, 2.5};
    CHECK(sl_gguf_set_arr(w, "a.u8", SL_GGUF_UINT8, u8s, 3) == 0);
    CHECK(sl_gguf_set_arr(w, "a.i8", SL_GGUF_INT8, i8s, 3) == 0);
    CHECK(sl_gguf_set_arr(w, "a.u16", SL_GGUF_UINT16, u16s, 2) == 0);
    CHECK(sl_gguf_set_arr(w, "a.i16", SL_GGUF_INT16, i16s, 2) == 0);
    CHECK(sl_gguf_set_arr(w, "a.u32", SL_GGUF_UINT32, u32s, 4) == 0);
    CHECK(sl_gguf_set_arr(w, "a.i32", SL_GGUF_INT32, i32s, 3) == 0);
    CHECK(sl_gguf_set_arr(w, "a.f32", SL_GGUF_FLOAT32, f32s, 4) == 0);
    CHECK(sl_gguf_set_arr(w, "a.bool", SL_GGUF_BOOL, bools, 3) == 0);
    CHECK(sl_gguf_set_arr(w, "a.u64", SL_GGUF_UINT64, u64s, 2) == 0);
    CHECK(sl_gguf_set_arr(w, "a.i64", SL_GGUF_INT64, i64s, 3) == 0);
    CHECK(sl_gguf_set_arr(w, "a.f64", SL_GGUF_FLOAT64, f64s, 3) == 0);
    CHECK(sl_gguf_set_arr(w, "a.empty", SL_GGUF_FLOAT32, NULL, 0) == 0);
    CHECK(sl_gguf_set_arr(w, "a.bad", SL_GGUF_STRING, u8s, 3) == -1); /* scalars only */
    const char *strs[] = {"<unk>", "", "▁the", "x y z"};
    CHECK(sl_gguf_set_arr_str(w, "a.str", strs, 4) == 0);
    CHECK(sl_gguf_set_arr_str(w, "a.str_empty", NULL, 0) == 0);

    /* Nested arrays: [[1,2],[3],[]] of u32, [["a"],["b","c"]], and 8 levels deep. */
    uint32_t n1[] = {1, 2}, n2[] = {3};
    sl_gguf_value inner[3];
    for (int i = 0; i < 3; i++) inner[i] = (sl_gguf_value){.type = SL_GGUF_ARRAY};
    inner[0].arr.elem_type = inner[1].arr.elem_type = inner[2].arr.elem_type = SL_GGUF_UINT32;
    inner[0].arr.n = 2; inner[0].arr.data = n1;
    inner[1].arr.n = 1; inner[1].arr.data = n2;
    inner[2].arr.n = 0;
    sl_gguf_value outer = {.type = SL_GGUF_ARRAY};
    outer.arr.elem_type = SL_GGUF_ARRAY; outer.arr.n = 3; outer.arr.items = inner;
    CHECK(sl_gguf_set_value(w, "n.u32", &outer) == 0);

    sl_gguf_value sa[3] = {{.type = SL_GGUF_STRING, .str = {"a", 1}},
                           {.type = SL_GGUF_STRING, .str = {"b", 1}},
                           {.type = SL_GGUF_STRING, .str = {"cc", 2}}};
    sl_gguf_value sinner[2] = {{.type = SL_GGUF_ARRAY}, {.type = SL_GGUF_ARRAY}};
    sinner[0].arr.elem_type = sinner[1].arr.elem_type = SL_GGUF_STRING;
    sinner[0].arr.n = 1; sinner[0].arr.items = &sa[0];
    sinner[1].arr.n = 2; sinner[1].arr.items = &sa[1];
    sl_gguf_value souter = {.type = SL_GGUF_ARRAY};
    souter.arr.elem_type = SL_GGUF_ARRAY; souter.arr.n = 2; souter.arr.items = sinner;
    CHECK(sl_gguf_set_value(w, "n.str", &souter) == 0);

    /* levels[0] is the innermost array of i8; each next level holds the previous. */
    sl_gguf_value levels[SL_GGUF_MAX_ARRAY_DEPTH + 1];
    int8_t deep = -5;
    levels[0] = (sl_gguf_value){.type = SL_GGUF_ARRAY};
    levels[0].arr.elem_type = SL_GGUF_INT8; levels[0].arr.n = 1; levels[0].arr.data = &deep;
    for (int i = 1; i <= SL_GGUF_MAX_ARRAY_DEPTH; i++) {
        levels[i] = (sl_gguf_value){.type = SL_GGUF_ARRAY};
        levels[i].arr.elem_type = SL_GGUF_ARRAY; levels[i].arr.n = 1; levels[i].arr.items = &levels[i - 1];
    }
    CHECK(sl_gguf_set_value(w, "n.deep", &levels[SL_GGUF_MAX_ARRAY_DEPTH - 1]) == 0);
    CHECK(sl_gguf_set_value(w, "n.too_deep", &levels[SL_GGUF_MAX_ARRAY_DEPTH]) == -1);
    /* Values the writer refuses: out-of-range scalars, mismatched items, bad types. */
    v = (sl_gguf_value){.type = SL_GGUF_UINT8, .u64 = 256};
    CHECK(sl_gguf_set_value(w, "bad", &v) == -1);
    v = (sl_gguf_value){.type = SL_GGUF_INT16, .i64 = 40000};
    CHECK(sl_gguf_set_value(w, "bad", &v) == -1);
    v = (sl_gguf_value){.type = (sl_gguf_vtype)13};
    CHECK(sl_gguf_set_value(w, "bad", &v) == -1);
    sl_gguf_value mixed = {.type = SL_GGUF_ARRAY};
    mixed.arr.elem_type = SL_GGUF_STRING; mixed.arr.n = 2; mixed.arr.items = &inner[0];
    CHECK(sl_gguf_set_value(w, "bad", &mixed) == -1);

    void *buf = NULL;
    size_t size = 0;
    sl_error err = {{0}};
    CHECKF(sl_gguf_write_memory(w, &buf, &size, NULL, NULL, &err) == 0, "%s", err.msg);
    sl_gguf *g = sl_gguf_open_memory(buf, size, 0, &err);
    CHECKF(g != NULL, "%s", err.msg);
    if (g) {
        CHECK(sl_gguf_version(g) == 3);
        CHECK(sl_gguf_n_tensors(g) == 0);
        CHECK(sl_gguf_n_kv(g) == 31);
        CHECK(sl_gguf_find(g, "bad") == NULL);
        /* Order of keys is the order of first set. */
        for (int i = 0; i < 11; i++) CHECK(strcmp(sl_gguf_key_at(g, i), scalar_keys[i]) == 0);
        CHECK(sl_gguf_key_at(g, 31) == NULL && sl_gguf_value_at(g, -1) == NULL);
        const sl_gguf_value *x;
        x = sl_gguf_find(g, "t.u8"); CHECK(x && x->type == SL_GGUF_UINT8 && x->u64 == 250);
        x = sl_gguf_find(g, "t.i8"); CHECK(x && x->type == SL_GGUF_INT8 && x->i64 == -100);
        x = sl_gguf_find(g, "t.u16"); CHECK(x && x->type == SL_GGUF_UINT16 && x->u64 == 65000);
        x = sl_gguf_find(g, "t.i16"); CHECK(x && x->type == SL_GGUF_INT16 && x->i64 == -32000);
        x = sl_gguf_find(g, "t.u32"); CHECK(x && x->type == SL_GGUF_UINT32 && x->u64 == 4000000000u);
        x = sl_gguf_find(g, "t.i32"); CHECK(x && x->type == SL_GGUF_INT32 && x->i64 == -2000000000);
        x = sl_gguf_find(g, "t.f32"); CHECK(x && x->type == SL_GGUF_FLOAT32 && x->f64 == (double)1.5e-5f);
        x = sl_gguf_find(g, "t.bool"); CHECK(x && x->type == SL_GGUF_BOOL && x->b);
        x = sl_gguf_find(g, "t.u64"); CHECK(x && x->type == SL_GGUF_UINT64 && x->u64 == UINT64_MAX - 7);
        x = sl_gguf_find(g, "t.i64"); CHECK(x && x->type == SL_GGUF_INT64 && x->i64 == INT64_MIN + 3);
        x = sl_gguf_find(g, "t.f64"); CHECK(x && x->type == SL_GGUF_FLOAT64 && x->f64 == -3.141592653589793);
        x = sl_gguf_find(g, "t.str_bytes");
        CHECK(x && x->type == SL_GGUF_STRING && x->str.len == 5 && memcmp(x->str.ptr, "a\0b\xff\n", 5) == 0);
        x = sl_gguf_find(g, "t.str_empty"); CHECK(x && x->type == SL_GGUF_STRING && x->str.len == 0);

        /* Typed getters. */
        uint64_t u;
        int64_t i;
        double d;
        bool b;
        sl_gguf_str s;
        const sl_gguf_value *arr;
        CHECK(sl_gguf_get_u64(g, "t.u16", &u, &err) == 1 && u == 65000);
        CHECK(sl_gguf_get_u64(g, "t.i32", &u, &err) == -1 && strstr(err.msg, "t.i32"));
        CHECK(sl_gguf_get_u64(g, "t.str", &u, &err) == -1 && strstr(err.msg, "t.str"));
        CHECK(sl_gguf_get_u64(g, "missing", &u, &err) == 0);
        CHECK(sl_gguf_get_i64(g, "t.i8", &i, &err) == 1 && i == -100);
        CHECK(sl_gguf_get_i64(g, "t.u32", &i, &err) == 1 && i == 4000000000);
        CHECK(sl_gguf_get_i64(g, "t.u64", &i, &err) == -1 && strstr(err.msg, "t.u64"));
        CHECK(sl_gguf_get_f64(g, "t.f32", &d, &err) == 1 && d == (double)1.5e-5f);
        CHECK(sl_gguf_get_f64(g, "t.i16", &d, &err) == 1 && d == -32000.0);
        CHECK(sl_gguf_get_f64(g, "t.bool", &d, &err) == -1);
        CHECK(sl_gguf_get_bool(g, "t.bool", &b, &err) == 1 && b);
        CHECK(sl_gguf_get_bool(g, "t.u8", &b, &err) == -1 && strstr(err.msg, "t.u8"));
        CHECK(sl_gguf_get_str(g, "t.str", &s, &err) == 1 && s.len == 11 && memcmp(s.ptr, "hello, gguf", 11) == 0);
        CHECK(sl_gguf_get_str(g, "a.str", &s, &err) == -1);
        CHECK(sl_gguf_get_arr(g, "a.str", &arr, &err) == 1 && arr->arr.n == 4);
        CHECK(sl_gguf_get_arr(g, "t.str", &arr, &err) == -1);
        CHECK(sl_gguf_get_arr(g, "nope", &arr, &err) == 0);

        /* Scalar arrays keep the packed bytes. */
        struct { const char *key; sl_gguf_vtype t; const void *data; uint64_t n; } arrays[] = {
            {"a.u8", SL_GGUF_UINT8, u8s, 3},    {"a.i8", SL_GGUF_INT8, i8s, 3},
            {"a.u16", SL_GGUF_UINT16, u16s, 2}, {"a.i16", SL_GGUF_INT16, i16s, 2},
            {"a.u32", SL_GGUF_UINT32, u32s, 4}, {"a.i32", SL_GGUF_INT32, i32s, 3},
            {"a.f32", SL_GGUF_FLOAT32, f32s, 4}, {"a.bool", SL_GGUF_BOOL, bools, 3},
            {"a.u64", SL_GGUF_UINT64, u64s, 2}, {"a.i64", SL_GGUF_INT64, i64s, 3},
            {"a.f64", SL_GGUF_FLOAT64, f64s, 3}, {"a.empty", SL_GGUF_FLOAT32, NULL, 0},
        };
        for (size_t k = 0; k < sizeof arrays / sizeof arrays[0]; k++) {
            x = sl_gguf_find(g, arrays[k].key);
            CHECKF(x && x->type == SL_GGUF_ARRAY && x->arr.elem_type == arrays[k].t &&
                   x->arr.n == arrays[k].n && x->arr.items == NULL &&
                   (arrays[k].n == 0 ||
                    memcmp(x->arr.data, arrays[k].data, arrays[k].n * sl_gguf_vtype_size(arrays[k].t)) == 0),
                   "%s", arrays[k].key);
        }
        x = sl_gguf_find(g, "a.str");
        CHECK(x && x->arr.elem_type == SL_GGUF_STRING && x->arr.n == 4 && x->arr.items);
        if (x && x->arr.items)
            for (int k = 0; k < 4; k++)
                CHECK(x->arr.items[k].type == SL_GGUF_STRING && x->arr.items[k].str.len == strlen(strs[k]) &&
                      memcmp(x->arr.items[k].str.ptr, strs[k], strlen(strs[k])) == 0);
        x = sl_gguf_find(g, "a.str_empty");
        CHECK(x && x->arr.elem_type == SL_GGUF_STRING && x->arr.n == 0);
        x = sl_gguf_find(g, "n.u32"); CHECK(x && values_equal(x, &outer));
        x = sl_gguf_find(g, "n.str"); CHECK(x && values_equal(x, &souter));
        x = sl_gguf_find(g, "n.deep"); CHECK(x && values_equal(x, &levels[SL_GGUF_MAX_ARRAY_DEPTH - 1]));
        CHECK(!values_equal(&outer, &souter));

        /* Copy every value through set_value into a second file: same bytes. */
        sl_gguf_writer *w2 = sl_gguf_writer_new();
        for (int64_t k = 0; k < sl_gguf_n_kv(g); k++)
            CHECK(sl_gguf_set_value(w2, sl_gguf_key_at(g, k), sl_gguf_value_at(g, k)) == 0);
        void *buf2 = NULL;
        size_t size2 = 0;
        CHECK(sl_gguf_write_memory(w2, &buf2, &size2, NULL, NULL, &err) == 0);
        CHECK(size2 == size && buf2 && memcmp(buf, buf2, size) == 0);
        free(buf2);
        sl_gguf_writer_free(w2);

        /* Text descriptions. */
        char text[256];
        CHECK(strcmp(sl_gguf_format_value(sl_gguf_find(g, "a.str"), 2, text, sizeof text),
                     "[\"<unk>\", \"\", ... 4 items]") == 0);
        CHECK(strcmp(sl_gguf_format_value(sl_gguf_find(g, "n.u32"), 5, text, sizeof text),
                     "[[1, 2], [3], []]") == 0);
        CHECK(strcmp(sl_gguf_format_value(sl_gguf_find(g, "t.str_bytes"), 5, text, sizeof text),
                     "\"a\\x00b\\xff\\n\"") == 0);
        CHECK(strcmp(sl_gguf_format_value(sl_gguf_find(g, "t.i8"), 5, text, 4), "-10") == 0);
        sl_gguf_close(g);
    }
    free(buf);
    sl_gguf_writer_free(w);
}

/* Setting a key twice replaces it in place; removing a key drops it. */
static void test_replace_remove(void) {
    sl_gguf_writer *w = sl_gguf_writer_new();
    CHECK(sl_gguf_set_u32(w, "a", 1) == 0);
    CHECK(sl_gguf_set_str(w, "b", "two") == 0);
    CHECK(sl_gguf_set_u32(w, "c", 3) == 0);
    CHECK(sl_gguf_set_str(w, "a", "replaced") == 0);
    sl_gguf_remove_key(w, "c");
    sl_gguf_remove_key(w, "not there");
    void *buf = NULL;
    size_t size = 0;
    sl_error err;
    CHECK(sl_gguf_write_memory(w, &buf, &size, NULL, NULL, &err) == 0);
    sl_gguf *g = sl_gguf_open_memory(buf, size, 0, &err);
    CHECK(g != NULL);
    if (g) {
        CHECK(sl_gguf_n_kv(g) == 2);
        CHECK(strcmp(sl_gguf_key_at(g, 0), "a") == 0 && strcmp(sl_gguf_key_at(g, 1), "b") == 0);
        sl_gguf_str s;
        CHECK(sl_gguf_get_str(g, "a", &s, &err) == 1 && s.len == 8);
        CHECK(sl_gguf_find(g, "c") == NULL);
        sl_gguf_close(g);
    }
    free(buf);
    sl_gguf_writer_free(w);
}

/* ---- tensors, alignment, fill callback, files -------------------------------- */

typedef struct tensor_spec {
    const char *name;
    int type;
    uint32_t n_dims;
    int64_t ne[4];
} tensor_spec;

static const tensor_spec specs[] = {
    {"token_embd.weight", SL_TYPE_Q8_0, 2, {64, 5}},
    {"norm", SL_TYPE_F32, 1, {7}},
    {"blk.0.w", SL_TYPE_Q4_K, 2, {256, 3}},
    {"blk.0.h", SL_TYPE_F16, 3, {3, 2, 5}},
    {"empty", SL_TYPE_F32, 2, {0, 4}},
    {"four_d", SL_TYPE_BF16, 4, {2, 1, 3, 1}},
    {"q4_0", SL_TYPE_Q4_0, 1, {96}},
};
#define N_SPECS (int)(sizeof specs / sizeof specs[0])

static uint64_t spec_nbytes(const tensor_spec *s) {
    const sl_type_info *info = sl_type_get(s->type);
    uint64_t n = 1;
    for (uint32_t d = 0; d < s->n_dims; d++) n *= (uint64_t)s->ne[d];
    return n / (uint64_t)info->block_size * info->type_size;
}

/* Deterministic bytes for tensor i. */
static unsigned char pattern(int64_t tensor, uint64_t j) {
    return (unsigned char)(tensor * 37 + j * 13 + (j >> 8));
}

static int fill_pattern(void *ctx, int64_t index, void *dst, uint64_t nbytes, sl_error *err) {
    int *calls = ctx;
    (*calls)++;
    (void)err;
    for (uint64_t j = 0; j < nbytes; j++) ((unsigned char *)dst)[j] = pattern(index, j);
    return 0;
}

static int fill_fails(void *ctx, int64_t index, void *dst, uint64_t nbytes, sl_error *err) {
    (void)ctx; (void)dst; (void)nbytes;
    return sl_err(err, "fill of tensor %" PRId64 " failed on purpose", index);
}

/* A writer with the spec tensors; tensor 0 and 2 come from buffers, the rest from fill. */
static sl_gguf_writer *make_tensor_writer(uint32_t alignment, unsigned char **owned0, unsigned char **owned2) {
    sl_gguf_writer *w = sl_gguf_writer_new();
    sl_error err;
    CHECK(sl_gguf_set_str(w, "general.architecture", "test") == 0);
    if (alignment) sl_gguf_set_alignment(w, alignment);
    uint64_t n0 = spec_nbytes(&specs[0]), n2 = spec_nbytes(&specs[2]);
    *owned0 = malloc(n0);
    *owned2 = malloc(n2);
    for (uint64_t j = 0; j < n0; j++) (*owned0)[j] = pattern(0, j);
    for (uint64_t j = 0; j < n2; j++) (*owned2)[j] = pattern(2, j);
    for (int i = 0; i < N_SPECS; i++) {
        const void *data = i == 0 ? *owned0 : i == 2 ? *owned2 : NULL;
        CHECKF(sl_gguf_add_tensor(w, specs[i].name, specs[i].type, specs[i].n_dims, specs[i].ne, data, &err) == 0,
               "%s", err.msg);
    }
    return w;
}

static void check_tensors(const sl_gguf *g, uint32_t alignment, size_t file_size, bool header_only) {
    CHECK(sl_gguf_n_tensors(g) == N_SPECS);
    CHECK(sl_gguf_alignment(g) == alignment);
    CHECK(sl_gguf_data_offset(g) % alignment == 0);
    uint64_t expect_offset = 0;
    for (int i = 0; i < N_SPECS && i < sl_gguf_n_tensors(g); i++) {
        const sl_gguf_tensor *t = sl_gguf_tensor_at(g, i);
        CHECK(t == sl_gguf_find_tensor(g, specs[i].name));
        CHECK(strcmp(t->name, specs[i].name) == 0 && t->type == specs[i].type && t->n_dims == specs[i].n_dims);
        for (uint32_t d = 0; d < 4; d++) CHECK(t->ne[d] == (d < specs[i].n_dims ? specs[i].ne[d] : 1));
        CHECK(t->nbytes == spec_nbytes(&specs[i]));
        CHECK(t->offset == expect_offset && t->offset % alignment == 0);
        CHECK(t->file_index == 0);
        expect_offset += (t->nbytes + alignment - 1) / alignment * alignment;
        if (header_only) {
            CHECK(t->data == NULL);
        } else {
            bool same = t->data != NULL;
            for (uint64_t j = 0; same && j < t->nbytes; j++) same = ((const unsigned char *)t->data)[j] == pattern(i, j);
            CHECKF(same, "data of %s", t->name);
        }
    }
    if (!header_only) CHECK(sl_gguf_data_offset(g) + expect_offset == file_size);
    CHECK(sl_gguf_find_tensor(g, "nope") == NULL);
    CHECK(sl_gguf_tensor_at(g, N_SPECS) == NULL);
}

static void test_alignment(uint32_t alignment) {
    unsigned char *d0, *d2;
    sl_gguf_writer *w = make_tensor_writer(alignment == SL_GGUF_DEFAULT_ALIGNMENT ? 0 : alignment, &d0, &d2);
    void *buf = NULL;
    size_t size = 0;
    sl_error err;
    int calls = 0;
    CHECKF(sl_gguf_write_memory(w, &buf, &size, fill_pattern, &calls, &err) == 0, "%s", err.msg);
    CHECK(calls == N_SPECS - 2);
    CHECK(size % alignment == 0);
    sl_gguf *g = sl_gguf_open_memory(buf, size, 0, &err);
    CHECKF(g != NULL, "alignment %u: %s", alignment, err.msg);
    if (g) {
        check_tensors(g, alignment, size, false);
        /* Header-only from the prefix up to the data section. */
        size_t prefix = (size_t)sl_gguf_data_offset(g);
        sl_gguf_close(g);
        sl_gguf *h = sl_gguf_open_memory(buf, prefix, SL_GGUF_HEADER_ONLY, &err);
        CHECKF(h != NULL, "%s", err.msg);
        if (h) check_tensors(h, alignment, size, true);
        sl_gguf_close(h);
    }
    /* The same through a file, with the data streamed: identical bytes. */
    calls = 0;
    const char *path = tmp_path("aligned.gguf");
    CHECKF(sl_gguf_write_file(w, path, fill_pattern, &calls, &err) == 0, "%s", err.msg);
    unsigned char *file = NULL;
    size_t file_size = 0;
    CHECK(read_whole(path, &file, &file_size));
    CHECK(file_size == size && memcmp(file, buf, size) == 0);
    sl_gguf *gf = sl_gguf_open_file(path, &err);
    CHECKF(gf != NULL, "%s", err.msg);
    if (gf) {
        check_tensors(gf, alignment, size, false);
        CHECK(sl_gguf_n_files(gf) == 1 && sl_gguf_file_size(gf, 0) == size);
        sl_gguf_close(gf);
    }
    free(file);
    unlink(path);
    free(buf);
    sl_gguf_writer_free(w);
    free(d0);
    free(d2);
}

/* Header-only parsing: exactly when the prefix holds all tensor infos. */
static void test_header_only(void) {
    unsigned char *d0, *d2;
    sl_gguf_writer *w = make_tensor_writer(0, &d0, &d2);
    void *buf = NULL;
    size_t size = 0;
    sl_error err;
    int calls = 0;
    CHECK(sl_gguf_write_memory(w, &buf, &size, fill_pattern, &calls, &err) == 0);
    /* Find the end of the infos: the shortest prefix that opens header-only. */
    size_t shortest = 0;
    for (size_t cut = 0; cut <= size; cut++) {
        sl_gguf *h = sl_gguf_open_memory(buf, cut, SL_GGUF_HEADER_ONLY, &err);
        if (h) {
            shortest = cut;
            check_tensors(h, 32, size, true);
            sl_gguf_close(h);
            break;
        }
        CHECK(err.msg[0] != 0);
    }
    CHECK(shortest > 0);
    /* The data offset is that end rounded up to the alignment, and every longer prefix works. */
    sl_gguf *full = sl_gguf_open_memory(buf, size, 0, &err);
    CHECK(full && sl_gguf_data_offset(full) == (shortest + 31) / 32 * 32);
    sl_gguf_close(full);
    for (size_t cut = shortest; cut <= size; cut += 97) {
        sl_gguf *h = sl_gguf_open_memory(buf, cut, SL_GGUF_HEADER_ONLY, &err);
        CHECK(h != NULL);
        sl_gguf_close(h);
        if (cut < size) CHECK(sl_gguf_open_memory(buf, cut, 0, &err) == NULL);
    }
    free(buf);
    sl_gguf_writer_free(w);
    free(d0);
    free(d2);
}

static void test_zero_tensors(void) {
    sl_gguf_writer *w = sl_gguf_writer_new();
    void *buf = NULL;
    size_t size = 0;
    sl_error err;
    CHECK(sl_gguf_write_memory(w, &buf, &size, NULL, NULL, &err) == 0);
    CHECK(size == 32); /* 24-byte header padded to the alignment */
    CHECK(buf && memcmp(buf, "GGUF\3\0\0\0", 8) == 0);
    sl_gguf *g = sl_gguf_open_memory(buf, size, 0, &err);
    CHECK(g && sl_gguf_n_kv(g) == 0 && sl_gguf_n_tensors(g) == 0 && sl_gguf_data_offset(g) == 32);
    sl_gguf_close(g);
    /* Without the trailing padding (as gguf-py writes tensorless files) it still opens. */
    g = sl_gguf_open_memory(buf, 24, 0, &err);
    CHECK(g != NULL);
    sl_gguf_close(g);
    free(buf);

    CHECK(sl_gguf_set_str(w, "general.architecture", "none") == 0);
    sl_gguf_set_alignment(w, 64);
    CHECK(sl_gguf_write_memory(w, &buf, &size, NULL, NULL, &err) == 0);
    CHECK(size == 128);
    g = sl_gguf_open_memory(buf, size, 0, &err);
    CHECK(g && sl_gguf_alignment(g) == 64 && sl_gguf_n_tensors(g) == 0 && sl_gguf_n_kv(g) == 2);
    sl_gguf_close(g);
    free(buf);
    sl_gguf_writer_free(w);
}

/* Version 2 files have the same layout as version 3. */
static void test_version2(void) {
    unsigned char *d0, *d2;
    sl_gguf_writer *w = make_tensor_writer(0, &d0, &d2);
    void *buf = NULL;
    size_t size = 0;
    sl_error err;
    int calls = 0;
    CHECK(sl_gguf_write_memory(w, &buf, &size, fill_pattern, &calls, &err) == 0);
    ((unsigned char *)buf)[4] = 2;
    sl_gguf *g = sl_gguf_open_memory(buf, size, 0, &err);
    CHECK(g && sl_gguf_version(g) == 2);
    if (g) check_tensors(g, 32, size, false);
    sl_gguf_close(g);
    ((unsigned char *)buf)[4] = 1;
    CHECK(sl_gguf_open_memory(buf, size, 0, &err) == NULL && strstr(err.msg, "version 1"));
    free(buf);
    sl_gguf_writer_free(w);
    free(d0);
    free(d2);
}

static void test_writer_errors(void) {
    sl_gguf_writer *w = sl_gguf_writer_new();
    sl_error err;
    int64_t ne[4] = {32, 2, 1, 1};
    char long_name[SL_GGUF_MAX_NAME + 1];
    memset(long_name, 'x', SL_GGUF_MAX_NAME);
    long_name[SL_GGUF_MAX_NAME] = 0;
    CHECK(sl_gguf_add_tensor(w, long_name, SL_TYPE_F32, 2, ne, NULL, &err) == -1 && strstr(err.msg, "too long"));
    long_name[SL_GGUF_MAX_NAME - 1] = 0; /* 63 bytes: the longest allowed */
    CHECK(sl_gguf_add_tensor(w, long_name, SL_TYPE_F32, 2, ne, NULL, &err) == 0);
    CHECK(sl_gguf_add_tensor(w, "a", SL_TYPE_F32, 2, ne, NULL, &err) == 0);
    CHECK(sl_gguf_add_tensor(w, "a", SL_TYPE_F32, 2, ne, NULL, &err) == -1 && strstr(err.msg, "'a'"));
    CHECK(sl_gguf_add_tensor(w, "b", 16, 2, ne, NULL, &err) == -1 && strstr(err.msg, "IQ2_XXS (16)"));
    CHECK(sl_gguf_add_tensor(w, "b", 1000, 2, ne, NULL, &err) == -1 && strstr(err.msg, "1000"));
    CHECK(sl_gguf_add_tensor(w, "b", SL_TYPE_F32, 0, ne, NULL, &err) == -1);
    CHECK(sl_gguf_add_tensor(w, "b", SL_TYPE_F32, 5, ne, NULL, &err) == -1);
    int64_t bad_ne[4] = {-1, 1, 1, 1};
    CHECK(sl_gguf_add_tensor(w, "b", SL_TYPE_F32, 1, bad_ne, NULL, &err) == -1 && strstr(err.msg, "negative"));
    int64_t big_ne[4] = {INT64_C(1) << 32, INT64_C(1) << 32, 1, 1};
    CHECK(sl_gguf_add_tensor(w, "b", SL_TYPE_F32, 2, big_ne, NULL, &err) == -1 && strstr(err.msg, "too many"));
    int64_t odd_ne[4] = {33, 1, 1, 1};
    CHECK(sl_gguf_add_tensor(w, "b", SL_TYPE_Q8_0, 1, odd_ne, NULL, &err) == -1 && strstr(err.msg, "block size"));
    void *buf = NULL;
    size_t size = 0;
    /* Tensors without data need a fill callback. */
    CHECK(sl_gguf_write_memory(w, &buf, &size, NULL, NULL, &err) == -1 && strstr(err.msg, "fill"));
    CHECK(buf == NULL);
    CHECK(sl_gguf_write_memory(w, &buf, &size, fill_fails, NULL, &err) == -1 && strstr(err.msg, "on purpose"));
    const char *path = tmp_path("failed.gguf");
    CHECK(sl_gguf_write_file(w, path, fill_fails, NULL, &err) == -1 && strstr(err.msg, "on purpose"));
    CHECK(access(path, F_OK) != 0); /* no partial file left behind */
    CHECK(sl_gguf_write_file(w, "/nonexistent-dir/x.gguf", fill_pattern, &(int){0}, &err) == -1 &&
          strstr(err.msg, "nonexistent-dir"));
    /* Bad alignments are refused when writing. */
    sl_gguf_set_alignment(w, 0);
    CHECK(sl_gguf_write_memory(w, &buf, &size, fill_pattern, &(int){0}, &err) == -1 && strstr(err.msg, "alignment"));
    sl_gguf_set_alignment(w, 48);
    CHECK(sl_gguf_write_memory(w, &buf, &size, fill_pattern, &(int){0}, &err) == -1 && strstr(err.msg, "alignment"));
    CHECK(sl_gguf_set_str(w, "general.alignment", "32") == 0);
    CHECK(sl_gguf_write_memory(w, &buf, &size, fill_pattern, &(int){0}, &err) == -1 && strstr(err.msg, "alignment"));
    sl_gguf_set_alignment(w, 16);
    CHECK(sl_gguf_write_memory(w, &buf, &size, fill_pattern, &(int){0}, &err) == 0);
    sl_gguf *g = sl_gguf_open_memory(buf, size, 0, &err);
    CHECK(g && sl_gguf_alignment(g) == 16 && sl_gguf_n_tensors(g) == 2);
    sl_gguf_close(g);
    free(buf);
    sl_gguf_writer_free(w);
}

static void test_open_errors(void) {
    sl_error err;
    const char *missing = tmp_path("does-not-exist.gguf");
    CHECK(sl_gguf_open_file(missing, &err) == NULL);
    char expect[600];
    snprintf(expect, sizeof expect, "cannot open %s: No such file or directory", missing);
    CHECKF(strcmp(err.msg, expect) == 0, "%s", err.msg);
    CHECK(sl_gguf_open_file(tmp_dir, &err) == NULL && strstr(err.msg, "directory"));
    const char *empty = tmp_path("empty.gguf");
    FILE *f = fopen(empty, "wb");
    CHECK(f != NULL);
    if (f) fclose(f);
    CHECK(sl_gguf_open_file(empty, &err) == NULL && strstr(err.msg, empty) && strstr(err.msg, "not a GGUF"));
    unlink(empty);
    CHECK(sl_gguf_open_memory(NULL, 0, 0, &err) == NULL && err.msg[0]);
    CHECK(sl_gguf_open_memory("GGUF", 4, 0, &err) == NULL && strstr(err.msg, "truncated"));
    CHECK(sl_gguf_open_memory("GGML\3\0\0\0", 8, 0, &err) == NULL && strstr(err.msg, "not a GGUF"));
    CHECK(sl_gguf_open_memory("GGUF\0\0\0\3", 8, 0, &err) == NULL && strstr(err.msg, "big-endian"));
}

/* ---- split sets ------------------------------------------------------------ */

/* Writes part k (0-based) of an n-part split of the spec tensors; tensor i goes
 * to part i % n. `no` and `count` are the split keys written (normally k, n). */
static void write_split_part(const char *prefix, int k, int n, int no, int count, int tensors_count,
                             const char *extra_tensor) {
    sl_gguf_writer *w = sl_gguf_writer_new();
    sl_error err;
    if (k == 0) CHECK(sl_gguf_set_str(w, "general.architecture", "split-test") == 0);
    CHECK(sl_gguf_set_value(w, "split.no", &(sl_gguf_value){.type = SL_GGUF_UINT16, .u64 = (uint64_t)no}) == 0);
    CHECK(sl_gguf_set_value(w, "split.count", &(sl_gguf_value){.type = SL_GGUF_UINT16, .u64 = (uint64_t)count}) == 0);
    CHECK(sl_gguf_set_i32(w, "split.tensors.count", tensors_count) == 0);
    for (int i = k; i < N_SPECS; i += n)
        CHECK(sl_gguf_add_tensor(w, specs[i].name, specs[i].type, specs[i].n_dims, specs[i].ne, NULL, &err) == 0);
    int64_t ne1[1] = {8};
    if (extra_tensor) CHECK(sl_gguf_add_tensor(w, extra_tensor, SL_TYPE_F32, 1, ne1, NULL, &err) == 0);
    char path[600];
    snprintf(path, sizeof path, "%s-%05d-of-%05d.gguf", prefix, k + 1, n);
    /* The fill pattern depends on the index in this file: give it the global one. */
    int calls = 0;
    CHECKF(sl_gguf_write_file(w, path, fill_pattern, &calls, &err) == 0, "%s", err.msg);
    sl_gguf_writer_free(w);
}

/* fill_pattern numbers tensors per file; the global index of the j-th tensor of part k is k + j*n. */
static void check_split(const sl_gguf *g, int n) {
    CHECK(sl_gguf_n_files(g) == n);
    CHECK(sl_gguf_n_tensors(g) == N_SPECS);
    int64_t pos = 0;
    for (int k = 0; k < n; k++) {
        int j = 0;
        for (int i = k; i < N_SPECS; i += n, j++, pos++) {
            const sl_gguf_tensor *t = sl_gguf_tensor_at(g, pos);
            CHECK(t && strcmp(t->name, specs[i].name) == 0 && t->file_index == k);
            CHECK(t == sl_gguf_find_tensor(g, specs[i].name));
            bool same = t && t->data;
            for (uint64_t b = 0; same && b < t->nbytes; b++) same = ((const unsigned char *)t->data)[b] == pattern(j, b);
            CHECKF(same, "data of %s", specs[i].name);
            if (t) CHECK(t->offset % 32 == 0);
        }
        CHECK(sl_gguf_file_data_offset(g, k) % 32 == 0 && sl_gguf_file_size(g, k) > 0);
    }
    sl_gguf_str arch;
    sl_error err;
    CHECK(sl_gguf_get_str(g, "general.architecture", &arch, &err) == 1 && arch.len == 10);
}

static void test_split(void) {
    char prefix[400];
    snprintf(prefix, sizeof prefix, "%s/model", tmp_dir);
    char first[600], second[600], third[600];
    snprintf(first, sizeof first, "%s-00001-of-00003.gguf", prefix);
    snprintf(second, sizeof second, "%s-00002-of-00003.gguf", prefix);
    snprintf(third, sizeof third, "%s-00003-of-00003.gguf", prefix);
    for (int k = 0; k < 3; k++) write_split_part(prefix, k, 3, k, 3, N_SPECS, NULL);
    sl_error err;
    sl_gguf *g = sl_gguf_open_file(first, &err);
    CHECKF(g != NULL, "%s", err.msg);
    if (g) check_split(g, 3);
    sl_gguf_close(g);

    /* Opening a later part says to open the first. */
    CHECK(sl_gguf_open_file(second, &err) == NULL && strstr(err.msg, "part 2 of 3"));

    /* A missing part is named. */
    char moved[640];
    snprintf(moved, sizeof moved, "%s.moved", third);
    CHECK(rename(third, moved) == 0);
    CHECK(sl_gguf_open_file(first, &err) == NULL && strstr(err.msg, third) && strstr(err.msg, "No such file"));
    CHECK(rename(moved, third) == 0);

    /* A part with the wrong split.no. */
    write_split_part(prefix, 2, 3, 1, 3, N_SPECS, NULL);
    CHECK(sl_gguf_open_file(first, &err) == NULL && strstr(err.msg, third) && strstr(err.msg, "split.no"));
    /* A part from a split of another size. */
    write_split_part(prefix, 2, 3, 2, 4, N_SPECS, NULL);
    CHECK(sl_gguf_open_file(first, &err) == NULL && strstr(err.msg, third));
    /* The same tensor in two parts. */
    write_split_part(prefix, 2, 3, 2, 3, N_SPECS + 1, "norm");
    CHECK(sl_gguf_open_file(first, &err) == NULL && strstr(err.msg, "'norm'"));
    /* split.tensors.count must match. */
    write_split_part(prefix, 2, 3, 2, 3, N_SPECS, "extra");
    CHECK(sl_gguf_open_file(first, &err) == NULL && strstr(err.msg, "split.tensors.count"));
    write_split_part(prefix, 2, 3, 2, 3, N_SPECS, NULL);
    write_split_part(prefix, 0, 3, 0, 3, N_SPECS + 2, NULL);
    CHECK(sl_gguf_open_file(first, &err) == NULL && strstr(err.msg, "split.tensors.count"));
    write_split_part(prefix, 0, 3, 0, 3, N_SPECS, NULL);
    g = sl_gguf_open_file(first, &err);
    CHECKF(g != NULL, "%s", err.msg);
    sl_gguf_close(g);

    /* The first part under a name that does not follow the pattern. */
    char renamed[600];
    snprintf(renamed, sizeof renamed, "%s/renamed.gguf", tmp_dir);
    CHECK(rename(first, renamed) == 0);
    CHECK(sl_gguf_open_file(renamed, &err) == NULL && strstr(err.msg, "-00001-of-00003.gguf"));
    CHECK(rename(renamed, first) == 0);

    /* Malformed split keys. */
    sl_gguf_writer *w = sl_gguf_writer_new();
    CHECK(sl_gguf_set_u32(w, "split.count", 3) == 0);
    void *buf = NULL;
    size_t size = 0;
    CHECK(sl_gguf_write_memory(w, &buf, &size, NULL, NULL, &err) == 0);
    sl_gguf *m = sl_gguf_open_memory(buf, size, 0, &err);
    sl_gguf_split info;
    CHECK(m && sl_gguf_split_info(m, &info, &err) == -1 && strstr(err.msg, "split.no"));
    sl_gguf_close(m);
    free(buf);
    CHECK(sl_gguf_set_str(w, "split.no", "0") == 0);
    CHECK(sl_gguf_write_memory(w, &buf, &size, NULL, NULL, &err) == 0);
    m = sl_gguf_open_memory(buf, size, 0, &err);
    CHECK(m && sl_gguf_split_info(m, &info, &err) == -1 && strstr(err.msg, "split.no"));
    sl_gguf_close(m);
    free(buf);
    sl_gguf_writer_free(w);

    for (int k = 0; k < 3; k++) {
        char p[600];
        snprintf(p, sizeof p, "%s-%05d-of-00003.gguf", prefix, k + 1);
        unlink(p);
    }
}

/* ---- shared test data ----------------------------------------------------- */

static bool testdata_present(const char *what) {
    char path[600];
    snprintf(path, sizeof path, "%s/models", test_data_dir());
    struct stat st;
    if (stat(path, &st) == 0) return true;
    fprintf(stderr, "!!! SKIP %s: testdata absent (%s)\n", what, path);
    const char *ci = getenv("CI");
    if (ci && strcmp(ci, "true") == 0) {
        fprintf(stderr, "CI=true: testdata is required\n");
        CHECK(!"testdata present");
    }
    return false;
}

/* Copies every kv and tensor of g into a writer and writes it to memory. */
static int rewrite(const sl_gguf *g, void **out, size_t *out_size, sl_error *err) {
    sl_gguf_writer *w = sl_gguf_writer_new();
    for (int64_t i = 0; i < sl_gguf_n_kv(g); i++)
        if (sl_gguf_set_value(w, sl_gguf_key_at(g, i), sl_gguf_value_at(g, i))) {
            sl_gguf_writer_free(w);
            return sl_err(err, "set_value failed");
        }
    for (int64_t i = 0; i < sl_gguf_n_tensors(g); i++) {
        const sl_gguf_tensor *t = sl_gguf_tensor_at(g, i);
        if (sl_gguf_add_tensor(w, t->name, t->type, t->n_dims, t->ne, t->data, err)) {
            sl_gguf_writer_free(w);
            return -1;
        }
    }
    int rc = sl_gguf_write_memory(w, out, out_size, NULL, NULL, err);
    sl_gguf_writer_free(w);
    return rc;
}

/* Re-read content is identical: same keys, values, tensor infos and data. */
static bool same_content(const sl_gguf *a, const sl_gguf *b) {
    if (sl_gguf_n_kv(a) != sl_gguf_n_kv(b) || sl_gguf_n_tensors(a) != sl_gguf_n_tensors(b)) return false;
    for (int64_t i = 0; i < sl_gguf_n_kv(a); i++)
        if (strcmp(sl_gguf_key_at(a, i), sl_gguf_key_at(b, i)) != 0 ||
            !values_equal(sl_gguf_value_at(a, i), sl_gguf_value_at(b, i)))
            return false;
    for (int64_t i = 0; i < sl_gguf_n_tensors(a); i++) {
        const sl_gguf_tensor *x = sl_gguf_tensor_at(a, i), *y = sl_gguf_tensor_at(b, i);
        if (strcmp(x->name, y->name) != 0 || x->type != y->type || x->n_dims != y->n_dims ||
            memcmp(x->ne, y->ne, sizeof x->ne) != 0 || x->nbytes != y->nbytes ||
            memcmp(x->data, y->data, x->nbytes) != 0)
            return false;
    }
    return true;
}

static void check_model(const char *path, const char *name) {
    sl_error err;
    sl_gguf *g = sl_gguf_open_file(path, &err);
    CHECKF(g != NULL, "%s: %s", name, err.msg);
    if (!g) return;
    CHECK(sl_gguf_version(g) == 3 && sl_gguf_n_files(g) == 1);
    CHECK(sl_gguf_n_kv(g) > 10 && sl_gguf_n_tensors(g) > 10);
    sl_gguf_str arch = {0};
    CHECK(sl_gguf_get_str(g, "general.architecture", &arch, &err) == 1);
    const char *expect_arch = strstr(name, "qwen2") ? "qwen2" : "llama";
    CHECKF(arch.len == strlen(expect_arch) && memcmp(arch.ptr, expect_arch, arch.len) == 0, "%s", name);
    char key[128];
    snprintf(key, sizeof key, "%.*s.embedding_length", (int)arch.len, arch.ptr);
    uint64_t n_embd = 0;
    CHECK(sl_gguf_get_u64(g, key, &n_embd, &err) == 1);
    CHECKF(n_embd == (strstr(name, "stories260K") ? 64u : 256u), "%s n_embd %" PRIu64, name, n_embd);
    const sl_gguf_value *tokens = NULL;
    CHECK(sl_gguf_get_arr(g, "tokenizer.ggml.tokens", &tokens, &err) == 1);
    uint64_t n_vocab = tokens ? tokens->arr.n : 0;
    CHECK(tokens && tokens->arr.elem_type == SL_GGUF_STRING);
    uint64_t expect_vocab = strstr(name, "llama3") ? 128256 : strstr(name, "spm") ? 32000 : 512;
    CHECKF(n_vocab == expect_vocab, "%s vocab %" PRIu64, name, n_vocab);
    const sl_gguf_tensor *emb = sl_gguf_find_tensor(g, "token_embd.weight");
    CHECKF(emb && emb->n_dims == 2 && (uint64_t)emb->ne[0] == n_embd && (uint64_t)emb->ne[1] == n_vocab, "%s", name);
    bool tied = strstr(name, "tied") || strstr(name, "llama3");
    CHECKF((sl_gguf_find_tensor(g, "output.weight") == NULL) == tied, "%s output.weight", name);

    /* Rewriting every kv and tensor gives back the same bytes (llama.cpp's layout). */
    unsigned char *bytes = NULL;
    size_t n = 0;
    CHECK(read_whole(path, &bytes, &n));
    void *buf = NULL;
    size_t size = 0;
    CHECKF(rewrite(g, &buf, &size, &err) == 0, "%s", err.msg);
    CHECKF(size == n && buf && bytes && memcmp(buf, bytes, n) == 0, "%s: rewrite is not byte-identical", name);
    free(buf);
    free(bytes);
    sl_gguf_close(g);
}

static void test_testdata_models(void) {
    if (!testdata_present("testdata models")) return;
    char dir[600];
    snprintf(dir, sizeof dir, "%s/models", test_data_dir());
    DIR *d = opendir(dir);
    CHECK(d != NULL);
    if (!d) return;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (len < 6 || strcmp(e->d_name + len - 5, ".gguf") != 0) continue;
        char path[1200];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        check_model(path, e->d_name);
        n++;
    }
    closedir(d);
    CHECKF(n >= 12, "found %d models", n);
}

/* The llama.cpp split set holds exactly sv-llama-q8_0.gguf's tensors and bytes. */
static void test_testdata_split(void) {
    if (!testdata_present("testdata split")) return;
    char first[600], whole[600];
    snprintf(first, sizeof first, "%s/models/split/sv-llama-q8_0-00001-of-00004.gguf", test_data_dir());
    snprintf(whole, sizeof whole, "%s/models/sv-llama-q8_0.gguf", test_data_dir());
    sl_error err;
    sl_gguf *s = sl_gguf_open_file(first, &err);
    CHECKF(s != NULL, "%s", err.msg);
    sl_gguf *g = sl_gguf_open_file(whole, &err);
    CHECKF(g != NULL, "%s", err.msg);
    if (s && g) {
        CHECK(sl_gguf_n_files(s) == 4);
        CHECK(sl_gguf_n_tensors(s) == 39 && sl_gguf_n_tensors(g) == 39);
        int per_file[4] = {0};
        for (int64_t i = 0; i < sl_gguf_n_tensors(s); i++) {
            const sl_gguf_tensor *t = sl_gguf_tensor_at(s, i);
            const sl_gguf_tensor *u = sl_gguf_find_tensor(g, t->name);
            CHECKF(u && u->type == t->type && memcmp(u->ne, t->ne, sizeof t->ne) == 0 &&
                   u->nbytes == t->nbytes && memcmp(u->data, t->data, t->nbytes) == 0, "%s", t->name);
            if (t->file_index >= 0 && t->file_index < 4) per_file[t->file_index]++;
            if (i > 0) CHECK(t->file_index >= sl_gguf_tensor_at(s, i - 1)->file_index);
        }
        CHECK(per_file[0] == 10 && per_file[1] == 10 && per_file[2] == 10 && per_file[3] == 9);
        const sl_gguf_tensor *emb = sl_gguf_find_tensor(s, "token_embd.weight");
        CHECK(emb && emb->type == SL_TYPE_Q8_0 && emb->ne[0] == 256 && emb->ne[1] == 512);
        sl_gguf_str arch;
        CHECK(sl_gguf_get_str(s, "general.architecture", &arch, &err) == 1 && arch.len == 5 &&
              memcmp(arch.ptr, "llama", 5) == 0);
        /* Every metadata key of the whole file is in the first part with the same value. */
        for (int64_t i = 0; i < sl_gguf_n_kv(g); i++) {
            const sl_gguf_value *v = sl_gguf_find(s, sl_gguf_key_at(g, i));
            CHECKF(v && values_equal(v, sl_gguf_value_at(g, i)), "%s", sl_gguf_key_at(g, i));
        }
        /* Each part rewrites byte-identically too. */
        for (int k = 1; k <= 4; k++) {
            char part[600];
            snprintf(part, sizeof part, "%s/models/split/sv-llama-q8_0-%05d-of-00004.gguf", test_data_dir(), k);
            unsigned char *bytes = NULL;
            size_t n = 0;
            CHECK(read_whole(part, &bytes, &n));
            sl_gguf *p = sl_gguf_open_memory(bytes, n, 0, &err);
            CHECKF(p != NULL, "%s", err.msg);
            void *buf = NULL;
            size_t size = 0;
            if (p) CHECK(rewrite(p, &buf, &size, &err) == 0 && size == n && memcmp(buf, bytes, n) == 0);
            free(buf);
            sl_gguf_close(p);
            free(bytes);
        }
    }
    sl_gguf_close(s);
    sl_gguf_close(g);
}

/* Tokenizer-only files (written by gguf-py without trailing padding): the
 * rewrite adds the padding and reads back identically. */
static void test_testdata_vocab(void) {
    if (!testdata_present("testdata vocab")) return;
    char dir[600];
    snprintf(dir, sizeof dir, "%s/vocab", test_data_dir());
    DIR *d = opendir(dir);
    CHECK(d != NULL);
    if (!d) return;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (len < 6 || strcmp(e->d_name + len - 5, ".gguf") != 0) continue;
        char path[1200];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        unsigned char *bytes = NULL;
        size_t size = 0;
        CHECK(read_whole(path, &bytes, &size));
        sl_error err;
        sl_gguf *g = sl_gguf_open_memory(bytes, size, 0, &err);
        CHECKF(g != NULL, "%s: %s", e->d_name, err.msg);
        void *buf = NULL;
        size_t out_size = 0;
        if (g) {
            CHECK(sl_gguf_n_tensors(g) == 0 && sl_gguf_find(g, "tokenizer.ggml.model") != NULL);
            CHECK(rewrite(g, &buf, &out_size, &err) == 0);
            CHECK(out_size == (size + 31) / 32 * 32 && memcmp(buf, bytes, size) == 0);
            sl_gguf *r = buf ? sl_gguf_open_memory(buf, out_size, 0, &err) : NULL;
            CHECK(r && same_content(g, r));
            sl_gguf_close(r);
        }
        free(buf);
        sl_gguf_close(g);
        free(bytes);
        n++;
    }
    closedir(d);
    CHECK(n >= 5);
}

int main(void) {
    snprintf(tmp_dir, sizeof tmp_dir, "/tmp/sl_gguf_XXXXXX");
    if (!mkdtemp(tmp_dir)) {
        perror("mkdtemp");
        return 1;
    }
    RUN(test_value_types);
    RUN(test_replace_remove);
    RUN_CASE("alignment 1", test_alignment(1));
    RUN_CASE("alignment 8", test_alignment(8));
    RUN_CASE("alignment 32 (default)", test_alignment(32));
    RUN_CASE("alignment 64", test_alignment(64));
    RUN_CASE("alignment 4096", test_alignment(4096));
    RUN(test_header_only);
    RUN(test_zero_tensors);
    RUN(test_version2);
    RUN(test_writer_errors);
    RUN(test_open_errors);
    RUN(test_split);
    RUN(test_testdata_models);
    RUN(test_testdata_split);
    RUN(test_testdata_vocab);
    rmdir(tmp_dir);
    TEST_SUMMARY();
}
