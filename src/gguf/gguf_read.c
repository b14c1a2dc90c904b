/* gguf_read.c - parses a GGUF file (versions 2 and 3) held in memory, and
 * merges the parts of a split set. Portable C11: no file I/O here (gguf_file.c
 * maps files; the browser hands over fetched bytes).
 *
 * Every count read from the file is checked against the bytes that remain
 * before anything is allocated for it, so a small bad file cannot ask for a
 * large allocation; strings, arrays and tensor data are referenced in place. */
#include "gguf/gguf.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- arena: the parsed object's small allocations, freed together -------- */

typedef struct arena_block {
    struct arena_block *next;
    size_t used, cap;
} arena_block;

#define ARENA_ALIGN 16
#define ARENA_HEADER ((sizeof(arena_block) + ARENA_ALIGN - 1) / ARENA_ALIGN * ARENA_ALIGN)
#define ARENA_BLOCK_SIZE (64 * 1024)

typedef struct arena {
    arena_block *head; /* the block being filled; big allocations go behind it */
} arena;

/* count * size bytes, 16-byte aligned, or NULL (overflow / out of memory / zero). */
static void *arena_alloc(arena *a, uint64_t count, uint64_t size) {
    uint64_t total;
    if (!sl_mul_u64(count, size, &total) || total == 0 || total > SIZE_MAX / 2) return NULL;
    size_t n = ((size_t)total + ARENA_ALIGN - 1) / ARENA_ALIGN * ARENA_ALIGN;
    arena_block *b = a->head;
    if (b && b->cap - b->used >= n) {
        void *p = (unsigned char *)b + ARENA_HEADER + b->used;
        b->used += n;
        return p;
    }
    size_t cap = n > ARENA_BLOCK_SIZE / 4 ? n : ARENA_BLOCK_SIZE;
    arena_block *nb = malloc(ARENA_HEADER + cap);
    if (!nb) return NULL;
    nb->used = n;
    nb->cap = cap;
    if (b && cap == n) { /* a dedicated block: keep filling the current one */
        nb->next = b->next;
        b->next = nb;
    } else {
        nb->next = b;
        a->head = nb;
    }
    return (unsigned char *)nb + ARENA_HEADER;
}

static void arena_free(arena *a) {
    arena_block *b = a->head;
    while (b) {
        arena_block *next = b->next;
        free(b);
        b = next;
    }
    a->head = NULL;
}

/* ---- name index: open-addressing hash of keys / tensor names ------------- */

typedef struct name_index {
    int64_t *slots; /* index + 1, 0 = empty */
    uint64_t mask;
} name_index;

static uint64_t hash_name(const char *s) {
    uint64_t h = 1469598103934665603u; /* FNV-1a */
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211u;
    return h;
}

static int index_init(name_index *ix, int64_t n) {
    uint64_t cap = 16;
    while (cap < (uint64_t)n * 2) cap *= 2;
    if (cap > SIZE_MAX / sizeof *ix->slots) return -1;
    ix->slots = calloc((size_t)cap, sizeof *ix->slots);
    ix->mask = cap - 1;
    return ix->slots ? 0 : -1;
}

/* Finds `name` (names[i] gives the i-th name); -1 when absent. */
typedef const char *(*name_at_fn)(const sl_gguf *g, int64_t i);

static int64_t index_find(const name_index *ix, const sl_gguf *g, name_at_fn name_at,
                          const char *name) {
    if (!ix->slots) return -1;
    for (uint64_t h = hash_name(name) & ix->mask;; h = (h + 1) & ix->mask) {
        int64_t v = ix->slots[h];
        if (v == 0) return -1;
        if (strcmp(name_at(g, v - 1), name) == 0) return v - 1;
    }
}

/* Inserts entry i; returns the index of an existing entry with the same name, or -1. */
static int64_t index_insert(name_index *ix, const sl_gguf *g, name_at_fn name_at, int64_t i) {
    const char *name = name_at(g, i);
    for (uint64_t h = hash_name(name) & ix->mask;; h = (h + 1) & ix->mask) {
        int64_t v = ix->slots[h];
        if (v == 0) {
            ix->slots[h] = i + 1;
            return -1;
        }
        if (strcmp(name_at(g, v - 1), name) == 0) return v - 1;
    }
}

/* ---- the parsed object ---------------------------------------------------- */

struct sl_gguf {
    const unsigned char *buf;
    size_t size;
    unsigned flags;
    uint32_t version;
    uint32_t alignment;
    uint64_t data_offset;

    int64_t n_kv;
    char **keys;
    sl_gguf_value *values;
    name_index kv_index;

    int64_t n_tensors;
    sl_gguf_tensor *tensors; /* malloc'd: split parts append to it */
    name_index tensor_index;

    arena mem;

    /* Split sets: parts[i] is file i + 1 (owned). */
    int n_files;
    uint32_t split_count;
    sl_gguf **parts;

    void (*release)(void *ctx);
    void *release_ctx;
};

static const char *key_name_at(const sl_gguf *g, int64_t i) { return g->keys[i]; }
static const char *tensor_name_at(const sl_gguf *g, int64_t i) { return g->tensors[i].name; }

/* ---- byte reader ---------------------------------------------------------- */

typedef struct parser {
    const unsigned char *buf;
    size_t size, pos;
    sl_error *err;
    arena *mem;
    /* What is being read, for error messages. */
    const char *what;  /* "key", "value of", "tensor info" */
    int64_t index;     /* its number, or -1 */
    const char *name;  /* its key / tensor name, or NULL */
} parser;

static int fail(parser *ps, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(parser *ps, const char *fmt, ...) {
    char msg[SL_ERR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (ps->what && ps->name)
        return sl_err(ps->err, "%s (in %s #%" PRId64 " '%.80s')", msg, ps->what, ps->index,
                      ps->name);
    if (ps->what && ps->index >= 0)
        return sl_err(ps->err, "%s (in %s #%" PRId64 ")", msg, ps->what, ps->index);
    if (ps->what) return sl_err(ps->err, "%s (in %s)", msg, ps->what);
    return sl_err(ps->err, "%s", msg);
}

static size_t remaining(const parser *ps) { return ps->size - ps->pos; }

/* Points *out at the next n bytes and consumes them. */
static int take(parser *ps, uint64_t n, const unsigned char **out) {
    if (n > remaining(ps))
        return fail(ps, "truncated GGUF: need %" PRIu64 " bytes at offset %zu, only %zu left", n,
                    ps->pos, remaining(ps));
    *out = ps->buf + ps->pos;
    ps->pos += (size_t)n;
    return 0;
}

static int read_u8(parser *ps, uint8_t *v) {
    const unsigned char *p = NULL;
    if (take(ps, 1, &p)) return -1;
    *v = p[0];
    return 0;
}
static int read_u16(parser *ps, uint16_t *v) {
    const unsigned char *p = NULL;
    if (take(ps, 2, &p)) return -1;
    memcpy(v, p, 2);
    return 0;
}
static int read_u32(parser *ps, uint32_t *v) {
    const unsigned char *p = NULL;
    if (take(ps, 4, &p)) return -1;
    memcpy(v, p, 4);
    return 0;
}
static int read_u64(parser *ps, uint64_t *v) {
    const unsigned char *p = NULL;
    if (take(ps, 8, &p)) return -1;
    memcpy(v, p, 8);
    return 0;
}

/* kind names the string in errors: "string", "key", "tensor name". */
static int read_string(parser *ps, const char *kind, sl_gguf_str *s) {
    uint64_t len;
    if (read_u64(ps, &len)) return -1;
    if (len > remaining(ps))
        return fail(ps, "%s of %" PRIu64 " bytes at offset %zu runs past the end (%zu bytes left)",
                    kind, len, ps->pos - 8, remaining(ps));
    const unsigned char *p = NULL;
    if (take(ps, len, &p)) return -1;
    s->ptr = (const char *)p;
    s->len = len;
    return 0;
}

/* A key or tensor name: a NUL-terminated copy; NUL bytes inside are refused. */
static int read_name(parser *ps, const char *kind, uint64_t max_len, char **out) {
    sl_gguf_str s;
    if (read_string(ps, kind, &s)) return -1;
    if (s.len > max_len)
        return fail(ps, "%s of %" PRIu64 " bytes is too long (at most %" PRIu64 ")", kind, s.len,
                    max_len);
    if (memchr(s.ptr, 0, (size_t)s.len)) return fail(ps, "%s contains a NUL byte", kind);
    char *copy = arena_alloc(ps->mem, s.len + 1, 1);
    if (!copy) return fail(ps, "out of memory");
    memcpy(copy, s.ptr, (size_t)s.len);
    copy[s.len] = 0;
    *out = copy;
    return 0;
}

static int read_value(parser *ps, sl_gguf_vtype type, sl_gguf_value *v, int depth) {
    memset(v, 0, sizeof *v);
    v->type = type;
    switch (type) {
    case SL_GGUF_UINT8: { uint8_t x; if (read_u8(ps, &x)) return -1; v->u64 = x; return 0; }
    case SL_GGUF_INT8: { uint8_t x; if (read_u8(ps, &x)) return -1; v->i64 = (int8_t)x; return 0; }
    case SL_GGUF_UINT16: { uint16_t x; if (read_u16(ps, &x)) return -1; v->u64 = x; return 0; }
    case SL_GGUF_INT16: { uint16_t x; if (read_u16(ps, &x)) return -1; v->i64 = (int16_t)x; return 0; }
    case SL_GGUF_UINT32: { uint32_t x; if (read_u32(ps, &x)) return -1; v->u64 = x; return 0; }
    case SL_GGUF_INT32: { uint32_t x; if (read_u32(ps, &x)) return -1; v->i64 = (int32_t)x; return 0; }
    case SL_GGUF_UINT64: return read_u64(ps, &v->u64);
    case SL_GGUF_INT64: {
        uint64_t x;
        if (read_u64(ps, &x)) return -1;
        memcpy(&v->i64, &x, 8);
        return 0;
    }
    case SL_GGUF_FLOAT32: {
        uint32_t x;
        float f;
        if (read_u32(ps, &x)) return -1;
        memcpy(&f, &x, 4);
        v->f64 = f;
        return 0;
    }
    case SL_GGUF_FLOAT64: {
        uint64_t x;
        if (read_u64(ps, &x)) return -1;
        memcpy(&v->f64, &x, 8);
        return 0;
    }
    case SL_GGUF_BOOL: { uint8_t x; if (read_u8(ps, &x)) return -1; v->b = x != 0; return 0; }
    case SL_GGUF_STRING: return read_string(ps, "string", &v->str);
    case SL_GGUF_ARRAY: {
        if (depth >= SL_GGUF_MAX_ARRAY_DEPTH)
            return fail(ps, "arrays nested deeper than %d levels", SL_GGUF_MAX_ARRAY_DEPTH);
        uint32_t elem;
        uint64_t n;
        if (read_u32(ps, &elem)) return -1;
        if (elem >= SL_GGUF_VTYPE_COUNT)
            return fail(ps, "array has bad element type %" PRIu32, elem);
        if (read_u64(ps, &n)) return -1;
        v->arr.elem_type = (sl_gguf_vtype)elem;
        v->arr.n = n;
        size_t elem_size = sl_gguf_vtype_size(v->arr.elem_type);
        if (elem_size) {
            uint64_t bytes;
            if (!sl_mul_u64(n, elem_size, &bytes) || bytes > remaining(ps))
                return fail(ps, "array of %" PRIu64 " %s runs past the end (%zu bytes left)", n,
                            sl_gguf_vtype_name(v->arr.elem_type), remaining(ps));
            const unsigned char *p = NULL;
            if (take(ps, bytes, &p)) return -1;
            v->arr.data = p;
            return 0;
        }
        /* Strings take at least their 8-byte length, arrays their 12-byte head. */
        uint64_t min_size = elem == SL_GGUF_STRING ? 8 : 12;
        if (n > remaining(ps) / min_size)
            return fail(ps, "array of %" PRIu64 " %s cannot fit in the %zu bytes left", n,
                        sl_gguf_vtype_name(v->arr.elem_type), remaining(ps));
        if (n == 0) return 0;
        sl_gguf_value *items = arena_alloc(ps->mem, n, sizeof *items);
        if (!items) return fail(ps, "out of memory for an array of %" PRIu64 " items", n);
        for (uint64_t i = 0; i < n; i++)
            if (read_value(ps, v->arr.elem_type, &items[i], depth + 1)) return -1;
        v->arr.items = items;
        return 0;
    }
    default:
        return fail(ps, "bad value type %u", (unsigned)type);
    }
}

static uint64_t align_up(uint64_t x, uint64_t alignment) {
    return (x + alignment - 1) / alignment * alignment;
}

typedef struct tensor_span {
    uint64_t start, end;
    int64_t index;
} tensor_span;

static int compare_spans(const void *a, const void *b) {
    const tensor_span *x = a, *y = b;
    if (x->start != y->start) return x->start < y->start ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

/* Tensors of one file must not share bytes. */
static int check_overlaps(const sl_gguf *g, sl_error *err) {
    if (g->n_tensors < 2) return 0;
    tensor_span *spans = malloc((size_t)g->n_tensors * sizeof *spans);
    if (!spans) return sl_err(err, "out of memory");
    int64_t n = 0;
    for (int64_t i = 0; i < g->n_tensors; i++) {
        const sl_gguf_tensor *t = &g->tensors[i];
        if (t->nbytes == 0) continue;
        spans[n++] = (tensor_span){t->offset, t->offset + t->nbytes, i};
    }
    qsort(spans, (size_t)n, sizeof *spans, compare_spans);
    int rc = 0;
    for (int64_t i = 1; i < n; i++) {
        if (spans[i].start < spans[i - 1].end) {
            rc = sl_err(err, "tensors '%s' and '%s' overlap in the file",
                        g->tensors[spans[i - 1].index].name, g->tensors[spans[i].index].name);
            break;
        }
    }
    free(spans);
    return rc;
}

static int parse(sl_gguf *g, sl_error *err) {
    parser ps = {g->buf, g->size, 0, err, &g->mem, NULL, -1, NULL};

    if (g->size < 4 || memcmp(g->buf, "GGUF", 4) != 0)
        return sl_err(err, "not a GGUF file (%s)", g->size < 4 ? "too short" : "bad magic");
    ps.pos = 4;
    ps.what = "header";
    uint32_t version;
    uint64_t n_tensors, n_kv;
    if (read_u32(&ps, &version)) return -1;
    if (version == 1) return sl_err(err, "GGUF version 1 is not supported (too old; only 2 and 3)");
    if (version != 2 && version != 3) {
        if ((version & 0xffff) == 0 && version != 0)
            return sl_err(err, "big-endian GGUF files are not supported (version field 0x%08" PRIx32 ")",
                          version);
        return sl_err(err, "GGUF version %" PRIu32 " is not supported (only 2 and 3)", version);
    }
    g->version = version;
    if (read_u64(&ps, &n_tensors) || read_u64(&ps, &n_kv)) return -1;
    if (n_tensors > INT64_MAX || n_kv > INT64_MAX)
        return sl_err(err, "GGUF header has a negative %s count",
                      n_tensors > INT64_MAX ? "tensor" : "key/value");
    /* Smallest key/value: 8-byte key length, 4-byte type, 1-byte value. */
    if (n_kv > remaining(&ps) / 13)
        return sl_err(err, "GGUF header claims %" PRIu64 " key/value pairs, more than the %zu bytes "
                      "that follow can hold (truncated or corrupt file)", n_kv, remaining(&ps));

    /* ---- key/value pairs ---- */
    g->n_kv = (int64_t)n_kv;
    if (n_kv) {
        g->keys = arena_alloc(&g->mem, n_kv, sizeof *g->keys);
        g->values = arena_alloc(&g->mem, n_kv, sizeof *g->values);
        if (!g->keys || !g->values) return sl_err(err, "out of memory");
    }
    if (index_init(&g->kv_index, g->n_kv)) return sl_err(err, "out of memory");
    for (int64_t i = 0; i < g->n_kv; i++) {
        ps.what = "key";
        ps.index = i;
        ps.name = NULL;
        if (read_name(&ps, "key", UINT64_MAX, &g->keys[i])) return -1;
        ps.name = g->keys[i];
        int64_t dup = index_insert(&g->kv_index, g, key_name_at, i);
        if (dup >= 0) return fail(&ps, "duplicate key (also key #%" PRId64 ")", dup);
        uint32_t type;
        if (read_u32(&ps, &type)) return -1;
        if (type >= SL_GGUF_VTYPE_COUNT) return fail(&ps, "bad value type %" PRIu32, type);
        if (read_value(&ps, (sl_gguf_vtype)type, &g->values[i], 0)) return -1;
    }
    ps.what = NULL;
    ps.name = NULL;
    ps.index = -1;

    /* ---- alignment ---- */
    g->alignment = SL_GGUF_DEFAULT_ALIGNMENT;
    uint64_t alignment;
    int found = sl_gguf_get_u64(g, "general.alignment", &alignment, err);
    if (found < 0) return -1;
    if (found) {
        if (alignment == 0 || alignment > UINT32_MAX || (alignment & (alignment - 1)) != 0)
            return sl_err(err, "general.alignment is %" PRIu64 ", not a nonzero power of two",
                          alignment);
        g->alignment = (uint32_t)alignment;
    }

    /* ---- tensor infos ---- */
    /* Smallest info: 8-byte name length, n_dims, one ne, type, offset. */
    if (n_tensors > remaining(&ps) / 32)
        return sl_err(err, "GGUF header claims %" PRIu64 " tensors, more than the %zu bytes that "
                      "follow can hold (truncated or corrupt file)", n_tensors, remaining(&ps));
    g->n_tensors = (int64_t)n_tensors;
    if (n_tensors) {
        g->tensors = calloc((size_t)n_tensors, sizeof *g->tensors);
        if (!g->tensors) return sl_err(err, "out of memory");
    }
    if (index_init(&g->tensor_index, g->n_tensors)) return sl_err(err, "out of memory");
    for (int64_t i = 0; i < g->n_tensors; i++) {
        sl_gguf_tensor *t = &g->tensors[i];
        char *name;
        ps.what = "tensor info";
        ps.index = i;
        ps.name = NULL;
        if (read_name(&ps, "tensor name", SL_GGUF_MAX_NAME - 1, &name)) return -1;
        t->name = name;
        ps.name = name;
        int64_t dup = index_insert(&g->tensor_index, g, tensor_name_at, i);
        if (dup >= 0) return fail(&ps, "duplicate tensor name (also tensor #%" PRId64 ")", dup);
        if (read_u32(&ps, &t->n_dims)) return -1;
        if (t->n_dims < 1 || t->n_dims > SL_GGUF_MAX_DIMS)
            return fail(&ps, "tensor has %" PRIu32 " dimensions (must be 1..%d)", t->n_dims,
                        SL_GGUF_MAX_DIMS);
        for (uint32_t d = 0; d < SL_GGUF_MAX_DIMS; d++) t->ne[d] = 1;
        for (uint32_t d = 0; d < t->n_dims; d++) {
            uint64_t x;
            if (read_u64(&ps, &x)) return -1;
            memcpy(&t->ne[d], &x, 8);
        }
        uint32_t type;
        if (read_u32(&ps, &type) || read_u64(&ps, &t->offset)) return -1;
        if (type > INT32_MAX)
            return sl_err(err, "tensor '%s' has unknown type id %" PRIu32, name, type);
        t->type = (int)type;
        if (sl_gguf_tensor_nbytes(name, t->type, t->n_dims, t->ne, &t->nbytes, err)) return -1;
        if (t->offset % g->alignment != 0)
            return sl_err(err, "tensor '%s' has offset %" PRIu64 ", not a multiple of the alignment %"
                          PRIu32, name, t->offset, g->alignment);
        uint64_t end;
        if (!sl_add_u64(t->offset, t->nbytes, &end))
            return sl_err(err, "tensor '%s' has offset %" PRIu64 " past any file", name, t->offset);
    }

    /* ---- data section ---- */
    g->data_offset = align_up(ps.pos, g->alignment);
    if (!(g->flags & SL_GGUF_HEADER_ONLY)) {
        uint64_t data_size = g->data_offset <= g->size ? g->size - g->data_offset : 0;
        for (int64_t i = 0; i < g->n_tensors; i++) {
            sl_gguf_tensor *t = &g->tensors[i];
            if (t->offset > data_size || t->nbytes > data_size - t->offset)
                return sl_err(err, "tensor '%s' data (%" PRIu64 " bytes at offset %" PRIu64
                              ") runs past the end of the file (data section is %" PRIu64 " bytes)",
                              t->name, t->nbytes, t->offset, data_size);
            t->data = g->buf + g->data_offset + t->offset;
        }
    }
    return check_overlaps(g, err);
}

sl_gguf *sl_gguf_open_memory(const void *data, size_t size, unsigned flags, sl_error *err) {
    sl_gguf *g = calloc(1, sizeof *g);
    if (!g) {
        sl_err(err, "out of memory");
        return NULL;
    }
    g->buf = data;
    g->size = data ? size : 0;
    g->flags = flags;
    g->n_files = 1;
    if (parse(g, err)) {
        sl_gguf_close(g);
        return NULL;
    }
    return g;
}

void sl_gguf_close(sl_gguf *g) {
    if (!g) return;
    for (int i = 0; i + 1 < g->n_files; i++) sl_gguf_close(g->parts[i]);
    free(g->parts);
    free(g->tensors);
    free(g->kv_index.slots);
    free(g->tensor_index.slots);
    arena_free(&g->mem);
    void (*release)(void *) = g->release;
    void *ctx = g->release_ctx;
    free(g);
    if (release) release(ctx);
}

void sl_gguf_set_release(sl_gguf *g, void (*release)(void *ctx), void *ctx) {
    g->release = release;
    g->release_ctx = ctx;
}

/* ---- accessors ------------------------------------------------------------ */

uint32_t sl_gguf_version(const sl_gguf *g) { return g->version; }
uint32_t sl_gguf_alignment(const sl_gguf *g) { return g->alignment; }
int sl_gguf_n_files(const sl_gguf *g) { return g->n_files; }
uint64_t sl_gguf_data_offset(const sl_gguf *g) { return g->data_offset; }

static const sl_gguf *file_at(const sl_gguf *g, int file_index) {
    if (file_index <= 0 || file_index >= g->n_files) return g;
    return g->parts[file_index - 1];
}
uint64_t sl_gguf_file_data_offset(const sl_gguf *g, int file_index) {
    return file_at(g, file_index)->data_offset;
}
uint64_t sl_gguf_file_size(const sl_gguf *g, int file_index) { return file_at(g, file_index)->size; }

int64_t sl_gguf_n_kv(const sl_gguf *g) { return g->n_kv; }

const char *sl_gguf_key_at(const sl_gguf *g, int64_t i) {
    return i >= 0 && i < g->n_kv ? g->keys[i] : NULL;
}

const sl_gguf_value *sl_gguf_value_at(const sl_gguf *g, int64_t i) {
    return i >= 0 && i < g->n_kv ? &g->values[i] : NULL;
}

const sl_gguf_value *sl_gguf_find(const sl_gguf *g, const char *key) {
    int64_t i = index_find(&g->kv_index, g, key_name_at, key);
    return i >= 0 ? &g->values[i] : NULL;
}

int64_t sl_gguf_n_tensors(const sl_gguf *g) { return g->n_tensors; }

const sl_gguf_tensor *sl_gguf_tensor_at(const sl_gguf *g, int64_t i) {
    return i >= 0 && i < g->n_tensors ? &g->tensors[i] : NULL;
}

const sl_gguf_tensor *sl_gguf_find_tensor(const sl_gguf *g, const char *name) {
    int64_t i = index_find(&g->tensor_index, g, tensor_name_at, name);
    return i >= 0 ? &g->tensors[i] : NULL;
}

/* ---- typed lookups -------------------------------------------------------- */

static bool is_unsigned(sl_gguf_vtype t) {
    return t == SL_GGUF_UINT8 || t == SL_GGUF_UINT16 || t == SL_GGUF_UINT32 || t == SL_GGUF_UINT64;
}
static bool is_signed(sl_gguf_vtype t) {
    return t == SL_GGUF_INT8 || t == SL_GGUF_INT16 || t == SL_GGUF_INT32 || t == SL_GGUF_INT64;
}

static int wrong_type(const char *key, const sl_gguf_value *v, const char *expected, sl_error *err) {
    sl_err(err, "key '%s' has type %s, expected %s", key, sl_gguf_vtype_name(v->type), expected);
    return -1;
}

int sl_gguf_get_u64(const sl_gguf *g, const char *key, uint64_t *out, sl_error *err) {
    const sl_gguf_value *v = sl_gguf_find(g, key);
    if (!v) return 0;
    if (is_unsigned(v->type)) {
        *out = v->u64;
        return 1;
    }
    if (is_signed(v->type)) {
        if (v->i64 < 0) {
            sl_err(err, "key '%s' is %" PRId64 ", expected a non-negative integer", key, v->i64);
            return -1;
        }
        *out = (uint64_t)v->i64;
        return 1;
    }
    return wrong_type(key, v, "an integer", err);
}

int sl_gguf_get_i64(const sl_gguf *g, const char *key, int64_t *out, sl_error *err) {
    const sl_gguf_value *v = sl_gguf_find(g, key);
    if (!v) return 0;
    if (is_signed(v->type)) {
        *out = v->i64;
        return 1;
    }
    if (is_unsigned(v->type)) {
        if (v->u64 > INT64_MAX) {
            sl_err(err, "key '%s' is %" PRIu64 ", too large for a signed 64-bit integer", key, v->u64);
            return -1;
        }
        *out = (int64_t)v->u64;
        return 1;
    }
    return wrong_type(key, v, "an integer", err);
}

int sl_gguf_get_f64(const sl_gguf *g, const char *key, double *out, sl_error *err) {
    const sl_gguf_value *v = sl_gguf_find(g, key);
    if (!v) return 0;
    if (v->type == SL_GGUF_FLOAT32 || v->type == SL_GGUF_FLOAT64) *out = v->f64;
    else if (is_unsigned(v->type)) *out = (double)v->u64;
    else if (is_signed(v->type)) *out = (double)v->i64;
    else return wrong_type(key, v, "a number", err);
    return 1;
}

int sl_gguf_get_bool(const sl_gguf *g, const char *key, bool *out, sl_error *err) {
    const sl_gguf_value *v = sl_gguf_find(g, key);
    if (!v) return 0;
    if (v->type != SL_GGUF_BOOL) return wrong_type(key, v, "bool", err);
    *out = v->b;
    return 1;
}

int sl_gguf_get_str(const sl_gguf *g, const char *key, sl_gguf_str *out, sl_error *err) {
    const sl_gguf_value *v = sl_gguf_find(g, key);
    if (!v) return 0;
    if (v->type != SL_GGUF_STRING) return wrong_type(key, v, "str", err);
    *out = v->str;
    return 1;
}

int sl_gguf_get_arr(const sl_gguf *g, const char *key, const sl_gguf_value **out, sl_error *err) {
    const sl_gguf_value *v = sl_gguf_find(g, key);
    if (!v) return 0;
    if (v->type != SL_GGUF_ARRAY) return wrong_type(key, v, "arr", err);
    *out = v;
    return 1;
}

/* ---- split sets ----------------------------------------------------------- */

/* llama.cpp stores split.count and split.no as u16. */
#define SPLIT_MAX_COUNT 65535

int sl_gguf_split_info(const sl_gguf *g, sl_gguf_split *out, sl_error *err) {
    uint64_t count = 1, no = 0, n_tensors = (uint64_t)g->n_tensors;
    int rc = sl_gguf_get_u64(g, "split.count", &count, err);
    if (rc < 0) return -1;
    if (rc == 1 && count == 0) return sl_err(err, "split.count is 0");
    if (rc == 1 && count > SPLIT_MAX_COUNT)
        return sl_err(err, "split.count is %" PRIu64 ", more than %d", count, SPLIT_MAX_COUNT);
    rc = sl_gguf_get_u64(g, "split.no", &no, err);
    if (rc < 0) return -1;
    if (rc == 0 && count > 1) return sl_err(err, "split.count is %" PRIu64 " but split.no is missing",
                                            count);
    if (no >= count)
        return sl_err(err, "split.no is %" PRIu64 " but split.count is %" PRIu64, no, count);
    if (sl_gguf_get_u64(g, "split.tensors.count", &n_tensors, err) < 0) return -1;
    out->no = (uint32_t)no;
    out->count = (uint32_t)count;
    out->n_tensors = n_tensors;
    return count > 1;
}

int sl_gguf_add_split_part(sl_gguf *g, sl_gguf *part, sl_error *err) {
    sl_gguf_split info, part_info;
    int rc = sl_gguf_split_info(g, &info, err);
    if (rc <= 0) {
        sl_gguf_close(part);
        return rc < 0 ? -1 : sl_err(err, "not the first file of a split set (no split.count)");
    }
    rc = sl_gguf_split_info(part, &part_info, err);
    if (rc <= 0) {
        sl_gguf_close(part);
        return rc < 0 ? -1 : sl_err(err, "part is not a split file (no split.count)");
    }
    if (part_info.count != info.count || part_info.no != (uint32_t)g->n_files) {
        sl_gguf_close(part);
        return sl_err(err, "part has split.no %" PRIu32 " of split.count %" PRIu32
                      ", expected %d of %" PRIu32, part_info.no, part_info.count, g->n_files,
                      info.count);
    }
    sl_gguf **parts = realloc(g->parts, (size_t)g->n_files * sizeof *parts);
    if (!parts) {
        sl_gguf_close(part);
        return sl_err(err, "out of memory");
    }
    g->parts = parts;
    g->parts[g->n_files - 1] = part;
    g->n_files++;

    int64_t n = g->n_tensors + part->n_tensors;
    if (part->n_tensors == 0) return 0;
    if ((uint64_t)n > SIZE_MAX / sizeof *g->tensors) return sl_err(err, "too many tensors");
    sl_gguf_tensor *tensors = realloc(g->tensors, (size_t)n * sizeof *tensors);
    if (!tensors) return sl_err(err, "out of memory");
    g->tensors = tensors;
    name_index ix;
    if (index_init(&ix, n)) return sl_err(err, "out of memory");
    free(g->tensor_index.slots);
    g->tensor_index = ix;
    for (int64_t i = 0; i < part->n_tensors; i++) {
        g->tensors[g->n_tensors + i] = part->tensors[i];
        g->tensors[g->n_tensors + i].file_index = (int)part_info.no;
    }
    int64_t old_n = g->n_tensors;
    g->n_tensors = n;
    for (int64_t i = 0; i < n; i++) {
        int64_t dup = index_insert(&g->tensor_index, g, tensor_name_at, i);
        if (dup >= 0 && i >= old_n) {
            g->n_tensors = old_n; /* keep the object consistent for sl_gguf_close */
            return sl_err(err, "tensor '%s' is in split parts %d and %d", g->tensors[i].name,
                          g->tensors[dup].file_index + 1, g->tensors[i].file_index + 1);
        }
    }
    return 0;
}

int sl_gguf_finish_split(sl_gguf *g, sl_error *err) {
    sl_gguf_split info;
    int rc = sl_gguf_split_info(g, &info, err);
    if (rc <= 0) return rc;
    if ((uint32_t)g->n_files != info.count)
        return sl_err(err, "split set has %d of its %" PRIu32 " parts", g->n_files, info.count);
    if (!sl_gguf_find(g, "split.tensors.count"))
        return sl_err(err, "first split part lacks split.tensors.count");
    if (info.n_tensors != (uint64_t)g->n_tensors)
        return sl_err(err, "split.tensors.count is %" PRIu64 " but the parts hold %" PRId64
                      " tensors", info.n_tensors, g->n_tensors);
    return 0;
}
