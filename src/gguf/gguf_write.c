/* gguf_write.c - writes version-3 GGUF files: metadata, tensor infos, and
 * tensor data padded to `general.alignment` exactly as llama.cpp lays it out
 * (tensors in add order, each padded, including the last), so that copying a
 * llama.cpp file through the writer reproduces it byte for byte.
 * Tensor data is streamed one tensor at a time. Portable C11 (stdio). */
#include "gguf/gguf.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct writer_kv {
    char *key;
    sl_gguf_value value;
    void *storage; /* owns every string and array the value points to */
} writer_kv;

typedef struct writer_tensor {
    char *name;
    int type;
    uint32_t n_dims;
    int64_t ne[SL_GGUF_MAX_DIMS];
    const void *data; /* borrowed; NULL: the fill callback produces it */
    uint64_t nbytes;
    uint64_t offset;  /* in the data section, set when writing */
} writer_tensor;

struct sl_gguf_writer {
    writer_kv *kvs;
    int64_t n_kv, cap_kv;
    writer_tensor *tensors;
    int64_t n_tensors, cap_tensors;
    bool out_of_memory; /* a setter without a return value failed */
};

sl_gguf_writer *sl_gguf_writer_new(void) { return calloc(1, sizeof(sl_gguf_writer)); }

void sl_gguf_writer_free(sl_gguf_writer *w) {
    if (!w) return;
    for (int64_t i = 0; i < w->n_kv; i++) {
        free(w->kvs[i].key);
        free(w->kvs[i].storage);
    }
    for (int64_t i = 0; i < w->n_tensors; i++) free(w->tensors[i].name);
    free(w->kvs);
    free(w->tensors);
    free(w);
}

/* ---- deep copies of values ------------------------------------------------ */

/* Checks a caller's value and adds up the storage a copy needs: `items` bytes
 * of sl_gguf_value arrays and `raw` bytes of strings and packed elements. */
static int measure_value(const sl_gguf_value *v, int depth, uint64_t *items, uint64_t *raw) {
    switch (v->type) {
    case SL_GGUF_UINT8: return v->u64 <= UINT8_MAX ? 0 : -1;
    case SL_GGUF_UINT16: return v->u64 <= UINT16_MAX ? 0 : -1;
    case SL_GGUF_UINT32: return v->u64 <= UINT32_MAX ? 0 : -1;
    case SL_GGUF_INT8: return v->i64 >= INT8_MIN && v->i64 <= INT8_MAX ? 0 : -1;
    case SL_GGUF_INT16: return v->i64 >= INT16_MIN && v->i64 <= INT16_MAX ? 0 : -1;
    case SL_GGUF_INT32: return v->i64 >= INT32_MIN && v->i64 <= INT32_MAX ? 0 : -1;
    case SL_GGUF_UINT64: case SL_GGUF_INT64: case SL_GGUF_FLOAT32: case SL_GGUF_FLOAT64:
    case SL_GGUF_BOOL:
        return 0;
    case SL_GGUF_STRING:
        if (v->str.len && !v->str.ptr) return -1;
        return sl_add_u64(*raw, v->str.len, raw) ? 0 : -1;
    case SL_GGUF_ARRAY: {
        if (depth >= SL_GGUF_MAX_ARRAY_DEPTH) return -1;
        sl_gguf_vtype elem = v->arr.elem_type;
        if ((unsigned)elem >= SL_GGUF_VTYPE_COUNT) return -1;
        size_t elem_size = sl_gguf_vtype_size(elem);
        uint64_t bytes;
        if (elem_size) {
            if (v->arr.n && !v->arr.data) return -1;
            if (!sl_mul_u64(v->arr.n, elem_size, &bytes)) return -1;
            return sl_add_u64(*raw, bytes, raw) ? 0 : -1;
        }
        if (v->arr.n && !v->arr.items) return -1;
        if (!sl_mul_u64(v->arr.n, sizeof(sl_gguf_value), &bytes) || !sl_add_u64(*items, bytes, items))
            return -1;
        for (uint64_t i = 0; i < v->arr.n; i++) {
            if (v->arr.items[i].type != elem) return -1;
            if (measure_value(&v->arr.items[i], depth + 1, items, raw)) return -1;
        }
        return 0;
    }
    default:
        return -1;
    }
}

static void copy_value(sl_gguf_value *dst, const sl_gguf_value *src, sl_gguf_value **items,
                       unsigned char **raw) {
    *dst = *src;
    /* Empty strings and arrays point nowhere (the storage may not exist). */
    if (src->type == SL_GGUF_STRING) {
        dst->str.ptr = src->str.len ? (const char *)*raw : "";
        if (src->str.len) {
            memcpy(*raw, src->str.ptr, (size_t)src->str.len);
            *raw += src->str.len;
        }
    } else if (src->type == SL_GGUF_ARRAY) {
        size_t elem_size = sl_gguf_vtype_size(src->arr.elem_type);
        dst->arr.data = NULL;
        dst->arr.items = NULL;
        if (src->arr.n == 0) return;
        if (elem_size) {
            size_t bytes = (size_t)src->arr.n * elem_size;
            memcpy(*raw, src->arr.data, bytes);
            dst->arr.data = *raw;
            *raw += bytes;
        } else {
            sl_gguf_value *mine = *items;
            *items += src->arr.n;
            for (uint64_t i = 0; i < src->arr.n; i++) copy_value(&mine[i], &src->arr.items[i], items, raw);
            dst->arr.items = mine;
        }
    }
}

static int64_t find_kv(const sl_gguf_writer *w, const char *key) {
    for (int64_t i = 0; i < w->n_kv; i++)
        if (strcmp(w->kvs[i].key, key) == 0) return i;
    return -1;
}

int sl_gguf_set_value(sl_gguf_writer *w, const char *key, const sl_gguf_value *v) {
    uint64_t items_bytes = 0, raw_bytes = 0, total;
    if (!key || measure_value(v, 0, &items_bytes, &raw_bytes)) return -1;
    if (!sl_add_u64(items_bytes, raw_bytes, &total) || total > SIZE_MAX) return -1;
    void *storage = NULL;
    if (total) {
        storage = malloc((size_t)total);
        if (!storage) return -1;
    }
    sl_gguf_value copy;
    sl_gguf_value *items = storage;
    unsigned char *raw = storage ? (unsigned char *)storage + items_bytes : NULL;
    copy_value(&copy, v, &items, &raw);

    int64_t i = find_kv(w, key);
    if (i >= 0) { /* replace in place: the key keeps its position */
        free(w->kvs[i].storage);
        w->kvs[i].value = copy;
        w->kvs[i].storage = storage;
        return 0;
    }
    if (w->n_kv == w->cap_kv) {
        int64_t cap = w->cap_kv ? w->cap_kv * 2 : 16;
        writer_kv *kvs = realloc(w->kvs, (size_t)cap * sizeof *kvs);
        if (!kvs) {
            free(storage);
            return -1;
        }
        w->kvs = kvs;
        w->cap_kv = cap;
    }
    char *key_copy = sl_strndup(key, strlen(key));
    if (!key_copy) {
        free(storage);
        return -1;
    }
    w->kvs[w->n_kv++] = (writer_kv){key_copy, copy, storage};
    return 0;
}

int sl_gguf_set_u32(sl_gguf_writer *w, const char *key, uint32_t v) {
    sl_gguf_value val = {.type = SL_GGUF_UINT32, .u64 = v};
    return sl_gguf_set_value(w, key, &val);
}

int sl_gguf_set_i32(sl_gguf_writer *w, const char *key, int32_t v) {
    sl_gguf_value val = {.type = SL_GGUF_INT32, .i64 = v};
    return sl_gguf_set_value(w, key, &val);
}

int sl_gguf_set_u64(sl_gguf_writer *w, const char *key, uint64_t v) {
    sl_gguf_value val = {.type = SL_GGUF_UINT64, .u64 = v};
    return sl_gguf_set_value(w, key, &val);
}

int sl_gguf_set_f32(sl_gguf_writer *w, const char *key, float v) {
    sl_gguf_value val = {.type = SL_GGUF_FLOAT32, .f64 = v};
    return sl_gguf_set_value(w, key, &val);
}

int sl_gguf_set_bool(sl_gguf_writer *w, const char *key, bool v) {
    sl_gguf_value val = {.type = SL_GGUF_BOOL, .b = v};
    return sl_gguf_set_value(w, key, &val);
}

int sl_gguf_set_str(sl_gguf_writer *w, const char *key, const char *v) {
    return sl_gguf_set_str_n(w, key, v, strlen(v));
}

int sl_gguf_set_str_n(sl_gguf_writer *w, const char *key, const char *v, uint64_t len) {
    sl_gguf_value val = {.type = SL_GGUF_STRING, .str = {v, len}};
    return sl_gguf_set_value(w, key, &val);
}

int sl_gguf_set_arr(sl_gguf_writer *w, const char *key, sl_gguf_vtype elem_type, const void *data,
                    uint64_t n) {
    if (sl_gguf_vtype_size(elem_type) == 0) return -1; /* scalars only */
    sl_gguf_value val = {.type = SL_GGUF_ARRAY};
    val.arr.elem_type = elem_type;
    val.arr.n = n;
    val.arr.data = data;
    return sl_gguf_set_value(w, key, &val);
}

int sl_gguf_set_arr_str(sl_gguf_writer *w, const char *key, const char *const *v, uint64_t n) {
    if (n > SIZE_MAX / sizeof(sl_gguf_value)) return -1;
    sl_gguf_value *items = n ? malloc((size_t)n * sizeof *items) : NULL;
    if (n && !items) return -1;
    for (uint64_t i = 0; i < n; i++)
        items[i] = (sl_gguf_value){.type = SL_GGUF_STRING, .str = {v[i], strlen(v[i])}};
    sl_gguf_value val = {.type = SL_GGUF_ARRAY};
    val.arr.elem_type = SL_GGUF_STRING;
    val.arr.n = n;
    val.arr.items = items;
    int rc = sl_gguf_set_value(w, key, &val);
    free(items);
    return rc;
}

void sl_gguf_remove_key(sl_gguf_writer *w, const char *key) {
    int64_t i = find_kv(w, key);
    if (i < 0) return;
    free(w->kvs[i].key);
    free(w->kvs[i].storage);
    memmove(&w->kvs[i], &w->kvs[i + 1], (size_t)(w->n_kv - i - 1) * sizeof *w->kvs);
    w->n_kv--;
}

void sl_gguf_set_alignment(sl_gguf_writer *w, uint32_t alignment) {
    /* The key is the one place the alignment lives, as readers see it. */
    if (sl_gguf_set_u32(w, "general.alignment", alignment)) w->out_of_memory = true;
}

/* ---- tensors -------------------------------------------------------------- */

int sl_gguf_add_tensor(sl_gguf_writer *w, const char *name, int type, uint32_t n_dims,
                       const int64_t *ne, const void *data, sl_error *err) {
    size_t name_len = strlen(name);
    if (name_len >= SL_GGUF_MAX_NAME)
        return sl_err(err, "tensor name '%.80s' is too long (%zu bytes, at most %d)", name,
                      name_len, SL_GGUF_MAX_NAME - 1);
    for (int64_t i = 0; i < w->n_tensors; i++)
        if (strcmp(w->tensors[i].name, name) == 0)
            return sl_err(err, "tensor '%s' added twice", name);
    uint64_t nbytes;
    if (sl_gguf_tensor_nbytes(name, type, n_dims, ne, &nbytes, err)) return -1;
    if (w->n_tensors == w->cap_tensors) {
        int64_t cap = w->cap_tensors ? w->cap_tensors * 2 : 16;
        writer_tensor *tensors = realloc(w->tensors, (size_t)cap * sizeof *tensors);
        if (!tensors) return sl_err(err, "out of memory");
        w->tensors = tensors;
        w->cap_tensors = cap;
    }
    writer_tensor *t = &w->tensors[w->n_tensors];
    memset(t, 0, sizeof *t);
    t->name = sl_strndup(name, name_len);
    if (!t->name) return sl_err(err, "out of memory");
    t->type = type;
    t->n_dims = n_dims;
    for (uint32_t d = 0; d < SL_GGUF_MAX_DIMS; d++) t->ne[d] = d < n_dims ? ne[d] : 1;
    t->data = data;
    t->nbytes = nbytes;
    w->n_tensors++;
    return 0;
}

/* ---- serialization -------------------------------------------------------- */

/* Where bytes go: a file, a buffer, or nowhere (counting only). */
typedef struct sink {
    FILE *file;
    unsigned char *mem;
    uint64_t pos;
    bool failed;
} sink;

static void put(sink *s, const void *p, uint64_t n) {
    if (s->failed || n == 0) return;
    if (s->file && fwrite(p, 1, (size_t)n, s->file) != n) s->failed = true;
    if (s->mem) memcpy(s->mem + s->pos, p, (size_t)n);
    s->pos += n;
}

static void put_u8(sink *s, uint8_t v) { put(s, &v, 1); }
static void put_u16(sink *s, uint16_t v) { put(s, &v, 2); }
static void put_u32(sink *s, uint32_t v) { put(s, &v, 4); }
static void put_u64(sink *s, uint64_t v) { put(s, &v, 8); }

static void put_str(sink *s, const char *p, uint64_t len) {
    put_u64(s, len);
    put(s, p, len);
}

static void put_zeros(sink *s, uint64_t n) {
    static const unsigned char zeros[256];
    while (n) {
        uint64_t k = n < sizeof zeros ? n : sizeof zeros;
        put(s, zeros, k);
        n -= k;
    }
}

/* The value's bytes after its type tag (array elements carry no tag). */
static void put_value(sink *s, const sl_gguf_value *v) {
    switch (v->type) {
    case SL_GGUF_UINT8: put_u8(s, (uint8_t)v->u64); break;
    case SL_GGUF_INT8: put_u8(s, (uint8_t)(int8_t)v->i64); break;
    case SL_GGUF_UINT16: put_u16(s, (uint16_t)v->u64); break;
    case SL_GGUF_INT16: put_u16(s, (uint16_t)(int16_t)v->i64); break;
    case SL_GGUF_UINT32: put_u32(s, (uint32_t)v->u64); break;
    case SL_GGUF_INT32: put_u32(s, (uint32_t)(int32_t)v->i64); break;
    case SL_GGUF_UINT64: put_u64(s, v->u64); break;
    case SL_GGUF_INT64: put_u64(s, (uint64_t)v->i64); break;
    case SL_GGUF_FLOAT32: { float f = (float)v->f64; put(s, &f, 4); break; }
    case SL_GGUF_FLOAT64: put(s, &v->f64, 8); break;
    case SL_GGUF_BOOL: put_u8(s, v->b ? 1 : 0); break;
    case SL_GGUF_STRING: put_str(s, v->str.ptr, v->str.len); break;
    case SL_GGUF_ARRAY: {
        put_u32(s, (uint32_t)v->arr.elem_type);
        put_u64(s, v->arr.n);
        size_t elem_size = sl_gguf_vtype_size(v->arr.elem_type);
        if (elem_size) put(s, v->arr.data, v->arr.n * elem_size);
        else for (uint64_t i = 0; i < v->arr.n; i++) put_value(s, &v->arr.items[i]);
        break;
    }
    default: break;
    }
}

/* Header, metadata and tensor infos, up to (not including) the padding. */
static void put_header(sink *s, const sl_gguf_writer *w) {
    put(s, "GGUF", 4);
    put_u32(s, 3);
    put_u64(s, (uint64_t)w->n_tensors);
    put_u64(s, (uint64_t)w->n_kv);
    for (int64_t i = 0; i < w->n_kv; i++) {
        put_str(s, w->kvs[i].key, strlen(w->kvs[i].key));
        put_u32(s, (uint32_t)w->kvs[i].value.type);
        put_value(s, &w->kvs[i].value);
    }
    for (int64_t i = 0; i < w->n_tensors; i++) {
        const writer_tensor *t = &w->tensors[i];
        put_str(s, t->name, strlen(t->name));
        put_u32(s, t->n_dims);
        for (uint32_t d = 0; d < t->n_dims; d++) put_u64(s, (uint64_t)t->ne[d]);
        put_u32(s, (uint32_t)t->type);
        put_u64(s, t->offset);
    }
}

static uint64_t pad_to(uint64_t x, uint64_t alignment) {
    return (x + alignment - 1) / alignment * alignment;
}

/* Checks the writer, sets tensor offsets, and returns the alignment, the data
 * section offset and the file size. */
static int plan(sl_gguf_writer *w, uint64_t *alignment, uint64_t *data_offset, uint64_t *total,
                sl_error *err) {
    if (w->out_of_memory) return sl_err(err, "out of memory while setting metadata");
    *alignment = SL_GGUF_DEFAULT_ALIGNMENT;
    int64_t ai = find_kv(w, "general.alignment");
    if (ai >= 0) {
        const sl_gguf_value *v = &w->kvs[ai].value;
        uint64_t a = 0;
        if (v->type == SL_GGUF_UINT8 || v->type == SL_GGUF_UINT16 || v->type == SL_GGUF_UINT32 ||
            v->type == SL_GGUF_UINT64)
            a = v->u64;
        else if (v->type == SL_GGUF_INT8 || v->type == SL_GGUF_INT16 || v->type == SL_GGUF_INT32 ||
                 v->type == SL_GGUF_INT64)
            a = v->i64 > 0 ? (uint64_t)v->i64 : 0;
        else return sl_err(err, "general.alignment has type %s, expected an integer",
                           sl_gguf_vtype_name(v->type));
        if (a == 0 || a > UINT32_MAX || (a & (a - 1)) != 0)
            return sl_err(err, "general.alignment is %" PRIu64 ", not a nonzero power of two", a);
        *alignment = a;
    }
    uint64_t offset = 0;
    for (int64_t i = 0; i < w->n_tensors; i++) {
        w->tensors[i].offset = offset;
        uint64_t padded = pad_to(w->tensors[i].nbytes, *alignment);
        if (padded < w->tensors[i].nbytes || !sl_add_u64(offset, padded, &offset))
            return sl_err(err, "tensor data too large");
    }
    sink counter = {0};
    put_header(&counter, w);
    *data_offset = pad_to(counter.pos, *alignment);
    if (!sl_add_u64(*data_offset, offset, total)) return sl_err(err, "tensor data too large");
    return 0;
}

/* Writes everything into s (a file or a buffer of the planned size). */
static int write_all(sl_gguf_writer *w, sink *s, uint64_t alignment, sl_gguf_fill_fn fill,
                     void *ctx, sl_error *err) {
    put_header(s, w);
    put_zeros(s, pad_to(s->pos, alignment) - s->pos);
    unsigned char *buffer = NULL;
    int rc = 0;
    for (int64_t i = 0; i < w->n_tensors && rc == 0; i++) {
        const writer_tensor *t = &w->tensors[i];
        if (t->data) {
            put(s, t->data, t->nbytes);
        } else if (!fill) {
            rc = sl_err(err, "tensor '%s' has no data and no fill callback was given", t->name);
        } else if (s->mem) {
            rc = fill(ctx, i, s->mem + s->pos, t->nbytes, err);
            s->pos += t->nbytes;
        } else if (t->nbytes) {
            if (t->nbytes > SIZE_MAX || !(buffer = malloc((size_t)t->nbytes))) {
                rc = sl_err(err, "out of memory for tensor '%s' (%" PRIu64 " bytes)", t->name,
                            t->nbytes);
                break;
            }
            rc = fill(ctx, i, buffer, t->nbytes, err);
            if (rc == 0) put(s, buffer, t->nbytes);
            free(buffer);
            buffer = NULL;
        }
        put_zeros(s, pad_to(s->pos, alignment) - s->pos);
        if (s->failed) rc = sl_err(err, "write failed");
    }
    return rc ? -1 : 0;
}

int sl_gguf_write_file(sl_gguf_writer *w, const char *path, sl_gguf_fill_fn fill, void *ctx,
                       sl_error *err) {
    uint64_t alignment, data_offset, total;
    if (plan(w, &alignment, &data_offset, &total, err)) return -1;
    FILE *f = fopen(path, "wb");
    if (!f) return sl_err(err, "cannot create %s", path);
    sink s = {f, NULL, 0, false};
    int rc = write_all(w, &s, alignment, fill, ctx, err);
    if (fclose(f) != 0 && rc == 0) rc = sl_err(err, "cannot write %s", path);
    if (rc == 0 && s.failed) rc = sl_err(err, "cannot write %s", path);
    if (rc) remove(path);
    return rc;
}

int sl_gguf_write_memory(sl_gguf_writer *w, void **out, size_t *out_size, sl_gguf_fill_fn fill,
                         void *ctx, sl_error *err) {
    uint64_t alignment, data_offset, total;
    *out = NULL;
    *out_size = 0;
    if (plan(w, &alignment, &data_offset, &total, err)) return -1;
    if (total > SIZE_MAX) return sl_err(err, "file of %" PRIu64 " bytes does not fit in memory", total);
    unsigned char *mem = malloc((size_t)total);
    if (!mem) return sl_err(err, "out of memory for a %" PRIu64 "-byte file", total);
    sink s = {NULL, mem, 0, false};
    if (write_all(w, &s, alignment, fill, ctx, err)) {
        free(mem);
        return -1;
    }
    *out = mem;
    *out_size = (size_t)total;
    return 0;
}
