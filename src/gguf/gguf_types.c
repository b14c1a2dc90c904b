/* gguf_types.c - the tables and checks the GGUF reader, writer and tools share:
 * metadata value type names and sizes, tensor shape validation and byte sizes,
 * and one-line text descriptions of values and tensors. Portable C11. */
#include "gguf/gguf.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "quant/quant.h"

static const struct {
    const char *name;
    size_t size; /* bytes of one element; 0 for variable-size types */
} vtypes[SL_GGUF_VTYPE_COUNT] = {
    [SL_GGUF_UINT8] = {"u8", 1},     [SL_GGUF_INT8] = {"i8", 1},
    [SL_GGUF_UINT16] = {"u16", 2},   [SL_GGUF_INT16] = {"i16", 2},
    [SL_GGUF_UINT32] = {"u32", 4},   [SL_GGUF_INT32] = {"i32", 4},
    [SL_GGUF_FLOAT32] = {"f32", 4},  [SL_GGUF_BOOL] = {"bool", 1},
    [SL_GGUF_STRING] = {"str", 0},   [SL_GGUF_ARRAY] = {"arr", 0},
    [SL_GGUF_UINT64] = {"u64", 8},   [SL_GGUF_INT64] = {"i64", 8},
    [SL_GGUF_FLOAT64] = {"f64", 8},
};

const char *sl_gguf_vtype_name(sl_gguf_vtype t) {
    if ((unsigned)t >= SL_GGUF_VTYPE_COUNT) return "unknown";
    return vtypes[t].name;
}

size_t sl_gguf_vtype_size(sl_gguf_vtype t) {
    if ((unsigned)t >= SL_GGUF_VTYPE_COUNT) return 0;
    return vtypes[t].size;
}

int sl_gguf_tensor_nbytes(const char *name, int type, uint32_t n_dims, const int64_t *ne,
                          uint64_t *nbytes, sl_error *err) {
    if (n_dims < 1 || n_dims > SL_GGUF_MAX_DIMS)
        return sl_err(err, "tensor '%s' has %" PRIu32 " dimensions (must be 1..%d)", name, n_dims,
                      SL_GGUF_MAX_DIMS);
    uint64_t n_elements = 1;
    for (uint32_t i = 0; i < n_dims; i++) {
        if (ne[i] < 0)
            return sl_err(err, "tensor '%s' has negative size ne[%" PRIu32 "] = %" PRId64, name, i,
                          ne[i]);
        if (!sl_mul_u64(n_elements, (uint64_t)ne[i], &n_elements) || n_elements > INT64_MAX)
            return sl_err(err, "tensor '%s' has too many elements (overflow at ne[%" PRIu32 "])",
                          name, i);
    }
    const sl_type_info *info = sl_type_get(type);
    if (!info) {
        const char *type_name = sl_type_name(type);
        if (type_name)
            return sl_err(err, "tensor '%s' has unsupported type %s (%d)", name, type_name, type);
        return sl_err(err, "tensor '%s' has unknown type id %d", name, type);
    }
    uint64_t block = (uint64_t)info->block_size;
    if (block == 0 || (uint64_t)ne[0] % block != 0)
        return sl_err(err, "tensor '%s' has ne[0] = %" PRId64 ", not a multiple of %s's block size %d",
                      name, ne[0], info->name, info->block_size);
    /* n_elements / block whole blocks; each type_size bytes. */
    uint64_t bytes;
    if (!sl_mul_u64(n_elements / block, (uint64_t)info->type_size, &bytes))
        return sl_err(err, "tensor '%s' is too large (byte size overflows)", name);
    *nbytes = bytes;
    return 0;
}

/* ---- text descriptions --------------------------------------------------- */

typedef struct text_out {
    char *buf;
    size_t cap, len; /* len may exceed cap - 1: output is cut there */
} text_out;

static void out_fmt(text_out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void out_fmt(text_out *o, const char *fmt, ...) {
    if (o->cap == 0 || o->len >= o->cap - 1) return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(o->buf + o->len, o->cap - o->len, fmt, ap);
    va_end(ap);
    if (n > 0) o->len += (size_t)n;
    if (o->len > o->cap - 1) o->len = o->cap - 1;
}

static void out_str(text_out *o, const char *s, uint64_t len) {
    out_fmt(o, "\"");
    for (uint64_t i = 0; i < len && o->len < o->cap - 1; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') out_fmt(o, "\\%c", c);
        else if (c == '\n') out_fmt(o, "\\n");
        else if (c >= 0x20 && c < 0x7f) out_fmt(o, "%c", c);
        else out_fmt(o, "\\x%02x", c);
    }
    out_fmt(o, "\"");
}

static void out_value(text_out *o, const sl_gguf_value *v, size_t max_items);

/* One element of a packed scalar array. */
static void out_packed(text_out *o, sl_gguf_vtype t, const unsigned char *p) {
    switch (t) {
    case SL_GGUF_UINT8: out_fmt(o, "%u", p[0]); break;
    case SL_GGUF_INT8: out_fmt(o, "%d", (int8_t)p[0]); break;
    case SL_GGUF_BOOL: out_fmt(o, "%s", p[0] ? "true" : "false"); break;
    case SL_GGUF_UINT16: { uint16_t x; memcpy(&x, p, 2); out_fmt(o, "%u", x); break; }
    case SL_GGUF_INT16: { int16_t x; memcpy(&x, p, 2); out_fmt(o, "%d", x); break; }
    case SL_GGUF_UINT32: { uint32_t x; memcpy(&x, p, 4); out_fmt(o, "%" PRIu32, x); break; }
    case SL_GGUF_INT32: { int32_t x; memcpy(&x, p, 4); out_fmt(o, "%" PRId32, x); break; }
    case SL_GGUF_FLOAT32: { float x; memcpy(&x, p, 4); out_fmt(o, "%.9g", x); break; }
    case SL_GGUF_UINT64: { uint64_t x; memcpy(&x, p, 8); out_fmt(o, "%" PRIu64, x); break; }
    case SL_GGUF_INT64: { int64_t x; memcpy(&x, p, 8); out_fmt(o, "%" PRId64, x); break; }
    case SL_GGUF_FLOAT64: { double x; memcpy(&x, p, 8); out_fmt(o, "%.17g", x); break; }
    default: out_fmt(o, "?"); break;
    }
}

static void out_value(text_out *o, const sl_gguf_value *v, size_t max_items) {
    switch (v->type) {
    case SL_GGUF_UINT8: case SL_GGUF_UINT16: case SL_GGUF_UINT32: case SL_GGUF_UINT64:
        out_fmt(o, "%" PRIu64, v->u64);
        break;
    case SL_GGUF_INT8: case SL_GGUF_INT16: case SL_GGUF_INT32: case SL_GGUF_INT64:
        out_fmt(o, "%" PRId64, v->i64);
        break;
    case SL_GGUF_FLOAT32: out_fmt(o, "%.9g", v->f64); break;
    case SL_GGUF_FLOAT64: out_fmt(o, "%.17g", v->f64); break;
    case SL_GGUF_BOOL: out_fmt(o, "%s", v->b ? "true" : "false"); break;
    case SL_GGUF_STRING: out_str(o, v->str.ptr, v->str.len); break;
    case SL_GGUF_ARRAY: {
        out_fmt(o, "[");
        uint64_t shown = v->arr.n < max_items ? v->arr.n : max_items;
        size_t elem_size = sl_gguf_vtype_size(v->arr.elem_type);
        for (uint64_t i = 0; i < shown; i++) {
            if (i) out_fmt(o, ", ");
            if (v->arr.items) out_value(o, &v->arr.items[i], max_items);
            else if (elem_size && v->arr.data)
                out_packed(o, v->arr.elem_type, (const unsigned char *)v->arr.data + i * elem_size);
        }
        if (shown < v->arr.n) out_fmt(o, "%s... %" PRIu64 " items", shown ? ", " : "", v->arr.n);
        out_fmt(o, "]");
        break;
    }
    default: out_fmt(o, "?"); break;
    }
}

char *sl_gguf_format_value(const sl_gguf_value *v, size_t max_items, char *buf, size_t cap) {
    text_out o = {buf, cap, 0};
    if (cap == 0) return buf;
    buf[0] = 0;
    out_value(&o, v, max_items);
    return buf;
}

char *sl_gguf_format_tensor(const sl_gguf_tensor *t, char *buf, size_t cap) {
    text_out o = {buf, cap, 0};
    if (cap == 0) return buf;
    buf[0] = 0;
    const char *type_name = sl_type_name(t->type);
    out_fmt(&o, "%s %s [", t->name, type_name ? type_name : "?");
    for (uint32_t i = 0; i < t->n_dims && i < SL_GGUF_MAX_DIMS; i++)
        out_fmt(&o, "%s%" PRId64, i ? ", " : "", t->ne[i]);
    out_fmt(&o, "] %" PRIu64 " bytes @ %" PRIu64, t->nbytes, t->offset);
    if (t->file_index) out_fmt(&o, " (file %d)", t->file_index);
    return buf;
}
