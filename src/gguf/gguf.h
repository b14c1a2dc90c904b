/* gguf.h - reading and writing GGUF files (versions 2 and 3).
 *
 * A GGUF file is: header (magic "GGUF", version, tensor count, kv count), the
 * metadata key/value pairs, the tensor infos, padding to `general.alignment`
 * (default 32), then the tensor data. Everything read from a file is bounds
 * checked: a bad file gives an sl_error that names the problem, never a crash,
 * a hang or an allocation larger than the file could justify.
 *
 * The reader works on bytes in memory (the core has no file I/O, so it also
 * runs in wasm); gguf_file.c adds mmap-based opening of a file and of every
 * part of a llama.cpp split (name-00001-of-0000N.gguf). */
#ifndef SL_GGUF_H
#define SL_GGUF_H

#include "util/common.h"

#define SL_GGUF_DEFAULT_ALIGNMENT 32
#define SL_GGUF_MAX_DIMS 4
/* Tensor names are shorter than this (ggml's GGML_MAX_NAME). */
#define SL_GGUF_MAX_NAME 64
/* Arrays of arrays may nest this deep (a plain array is depth 1). */
#define SL_GGUF_MAX_ARRAY_DEPTH 8

typedef enum sl_gguf_vtype {
    SL_GGUF_UINT8 = 0,
    SL_GGUF_INT8 = 1,
    SL_GGUF_UINT16 = 2,
    SL_GGUF_INT16 = 3,
    SL_GGUF_UINT32 = 4,
    SL_GGUF_INT32 = 5,
    SL_GGUF_FLOAT32 = 6,
    SL_GGUF_BOOL = 7,
    SL_GGUF_STRING = 8,
    SL_GGUF_ARRAY = 9,
    SL_GGUF_UINT64 = 10,
    SL_GGUF_INT64 = 11,
    SL_GGUF_FLOAT64 = 12,
    SL_GGUF_VTYPE_COUNT
} sl_gguf_vtype;

/* A string inside the file: not NUL-terminated, may contain any bytes. */
typedef struct sl_gguf_str {
    const char *ptr;
    uint64_t len;
} sl_gguf_str;

typedef struct sl_gguf_value sl_gguf_value;
struct sl_gguf_value {
    sl_gguf_vtype type;
    union {
        uint64_t u64;   /* UINT8/16/32/64 */
        int64_t i64;    /* INT8/16/32/64 */
        double f64;     /* FLOAT32/64 */
        bool b;         /* BOOL */
        sl_gguf_str str;/* STRING */
        struct {
            sl_gguf_vtype elem_type;
            uint64_t n;
            /* Scalar element types: the packed little-endian elements as in the file. */
            const void *data;
            /* STRING and ARRAY element types: n parsed values. */
            const sl_gguf_value *items;
        } arr;          /* ARRAY */
    };
};

typedef struct sl_gguf_tensor {
    const char *name;        /* NUL-terminated */
    uint32_t n_dims;
    int64_t ne[SL_GGUF_MAX_DIMS]; /* ne[0] is the contiguous (row) dimension; unused dims are 1 */
    int type;                /* ggml type id (see quant/quant.h) */
    uint64_t offset;         /* offset in its file's data section */
    uint64_t nbytes;         /* bytes of data */
    const void *data;        /* the bytes, or NULL when opened header-only */
    int file_index;          /* which file of a split holds it (0 for single files) */
} sl_gguf_tensor;

typedef struct sl_gguf sl_gguf;

/* Flags for sl_gguf_open_memory. */
enum {
    /* The buffer holds only the start of the file (at least up to the end of
     * the tensor infos): tensor data is not checked against the buffer size and
     * tensor->data is NULL. Used for the browser's header-first planning. */
    SL_GGUF_HEADER_ONLY = 1u << 0,
};

/* Parses a GGUF held in memory. The buffer is borrowed and must outlive the
 * returned object. */
sl_gguf *sl_gguf_open_memory(const void *data, size_t size, unsigned flags, sl_error *err);

/* Opens a file by mmap. When the file is the first of a llama.cpp split
 * (keys split.no / split.count / split.tensors.count), the other parts are
 * opened from the sibling files named NAME-0000k-of-0000N.gguf and their
 * tensors are merged into this object (metadata comes from the first part). */
sl_gguf *sl_gguf_open_file(const char *path, sl_error *err);

void sl_gguf_close(sl_gguf *g);

uint32_t sl_gguf_version(const sl_gguf *g);
uint32_t sl_gguf_alignment(const sl_gguf *g);
/* Number of files (1, or split.count). */
int sl_gguf_n_files(const sl_gguf *g);
/* Offset of the data section in the first file (bytes of header+kv+infos+padding). */
uint64_t sl_gguf_data_offset(const sl_gguf *g);

/* Metadata. Keys are NUL-terminated copies; values point into the buffer. */
int64_t sl_gguf_n_kv(const sl_gguf *g);
const char *sl_gguf_key_at(const sl_gguf *g, int64_t i);
const sl_gguf_value *sl_gguf_value_at(const sl_gguf *g, int64_t i);
const sl_gguf_value *sl_gguf_find(const sl_gguf *g, const char *key);

/* Typed lookups. Return 1 when found and convertible, 0 when missing, -1 when
 * present with a type that does not fit (err says which key and why).
 * get_u64/get_i64 accept any integer type whose value fits; get_f64 accepts
 * FLOAT32/FLOAT64 and integers. */
int sl_gguf_get_u64(const sl_gguf *g, const char *key, uint64_t *out, sl_error *err);
int sl_gguf_get_i64(const sl_gguf *g, const char *key, int64_t *out, sl_error *err);
int sl_gguf_get_f64(const sl_gguf *g, const char *key, double *out, sl_error *err);
int sl_gguf_get_bool(const sl_gguf *g, const char *key, bool *out, sl_error *err);
int sl_gguf_get_str(const sl_gguf *g, const char *key, sl_gguf_str *out, sl_error *err);
/* An array value (any element type); out->arr holds the elements. */
int sl_gguf_get_arr(const sl_gguf *g, const char *key, const sl_gguf_value **out, sl_error *err);

const char *sl_gguf_vtype_name(sl_gguf_vtype t);

/* Tensors (of every file of a split, in file order). */
int64_t sl_gguf_n_tensors(const sl_gguf *g);
const sl_gguf_tensor *sl_gguf_tensor_at(const sl_gguf *g, int64_t i);
const sl_gguf_tensor *sl_gguf_find_tensor(const sl_gguf *g, const char *name);

/* ---- writer ------------------------------------------------------------ */

typedef struct sl_gguf_writer sl_gguf_writer;

/* Produces the bytes of tensor `index` (in add order) into dst[0..nbytes). */
typedef int (*sl_gguf_fill_fn)(void *ctx, int64_t index, void *dst, uint64_t nbytes, sl_error *err);

sl_gguf_writer *sl_gguf_writer_new(void);
void sl_gguf_writer_free(sl_gguf_writer *w);

/* Setting a key twice replaces the earlier value (order of first set is kept).
 * Strings and arrays are copied. Return 0, or -1 when out of memory or the
 * value is invalid (unknown type, a scalar out of its type's range, array items
 * not of the element type, arrays nested deeper than SL_GGUF_MAX_ARRAY_DEPTH).
 * The alignment lives in the key general.alignment (u32; default 32), which
 * sl_gguf_set_alignment sets; writing fails if it is not a power of two. */
int sl_gguf_set_u32(sl_gguf_writer *w, const char *key, uint32_t v);
int sl_gguf_set_i32(sl_gguf_writer *w, const char *key, int32_t v);
int sl_gguf_set_u64(sl_gguf_writer *w, const char *key, uint64_t v);
int sl_gguf_set_f32(sl_gguf_writer *w, const char *key, float v);
int sl_gguf_set_bool(sl_gguf_writer *w, const char *key, bool v);
int sl_gguf_set_str(sl_gguf_writer *w, const char *key, const char *v);
int sl_gguf_set_str_n(sl_gguf_writer *w, const char *key, const char *v, uint64_t len);
/* Array of scalars: n packed elements of elem_type. */
int sl_gguf_set_arr(sl_gguf_writer *w, const char *key, sl_gguf_vtype elem_type, const void *data, uint64_t n);
int sl_gguf_set_arr_str(sl_gguf_writer *w, const char *key, const char *const *v, uint64_t n);
/* Copies any value (including nested arrays) read from another file. */
int sl_gguf_set_value(sl_gguf_writer *w, const char *key, const sl_gguf_value *v);
/* Removes a key if present. */
void sl_gguf_remove_key(sl_gguf_writer *w, const char *key);
void sl_gguf_set_alignment(sl_gguf_writer *w, uint32_t alignment);

/* Adds a tensor. data may be NULL, in which case the fill callback given to
 * write produces its bytes. nbytes is computed from type and shape. data is
 * borrowed: it must stay valid until the file is written. Errors: duplicate
 * name, name of SL_GGUF_MAX_NAME bytes or more, bad shape or type. */
int sl_gguf_add_tensor(sl_gguf_writer *w, const char *name, int type, uint32_t n_dims,
                       const int64_t *ne, const void *data, sl_error *err);

/* Writes a version-3 GGUF. Streams tensor data; never holds the whole file. */
int sl_gguf_write_file(sl_gguf_writer *w, const char *path, sl_gguf_fill_fn fill, void *ctx,
                       sl_error *err);
/* Same, into a malloc'd buffer (*out, *out_size), for tests and fuzzing. */
int sl_gguf_write_memory(sl_gguf_writer *w, void **out, size_t *out_size, sl_gguf_fill_fn fill,
                         void *ctx, sl_error *err);

/* ---- additions: shared tables, split sets, descriptions ---------------- */

/* Bytes of one element of a scalar value type; 0 for STRING, ARRAY and
 * unknown types. */
size_t sl_gguf_vtype_size(sl_gguf_vtype t);

/* Validates a tensor's shape and type (1..4 dims, every ne >= 0, element
 * count within int64, a type sl_type_get knows, ne[0] a multiple of its block
 * size) and computes its byte size. name is only used in the error. */
int sl_gguf_tensor_nbytes(const char *name, int type, uint32_t n_dims, const int64_t *ne,
                          uint64_t *nbytes, sl_error *err);

/* The split.* keys of one file. Returns 1 when the file is part of a split
 * (split.count present and > 1), 0 when not, -1 when the keys are malformed. */
typedef struct sl_gguf_split {
    uint32_t no;         /* 0-based index of this part */
    uint32_t count;      /* number of parts */
    uint64_t n_tensors;  /* split.tensors.count: tensors in all parts together */
} sl_gguf_split;
int sl_gguf_split_info(const sl_gguf *g, sl_gguf_split *out, sl_error *err);

/* Split sets assembled by the caller (gguf_file.c does this from sibling
 * files; the browser does it from fetched shards). `part` must be the next
 * part in order: its split.no and split.count are checked. Its tensors are
 * appended with file_index = its split.no. g takes ownership of part, also on
 * error. sl_gguf_finish_split checks that every part arrived and that
 * split.tensors.count matches the merged tensor count. */
int sl_gguf_add_split_part(sl_gguf *g, sl_gguf *part, sl_error *err);
int sl_gguf_finish_split(sl_gguf *g, sl_error *err);

/* Called by sl_gguf_close, e.g. to unmap the buffer the object was parsed from. */
void sl_gguf_set_release(sl_gguf *g, void (*release)(void *ctx), void *ctx);

/* Data section offset and size of file `file_index` of a split (0 = first). */
uint64_t sl_gguf_file_data_offset(const sl_gguf *g, int file_index);
uint64_t sl_gguf_file_size(const sl_gguf *g, int file_index);

/* One-line text of a value for `info`: numbers, quoted strings (bytes outside
 * printable ASCII escaped), arrays as "[a, b, ... N items]" showing at most
 * max_items elements. Always NUL-terminates (when cap > 0); returns buf. */
char *sl_gguf_format_value(const sl_gguf_value *v, size_t max_items, char *buf, size_t cap);

/* One-line description of a tensor: "NAME TYPE [ne0, ne1] NBYTES bytes @ OFFSET". */
char *sl_gguf_format_tensor(const sl_gguf_tensor *t, char *buf, size_t cap);

#endif
