/* exports.c - the engine API of engine.wasm: the functions JavaScript calls.
 *
 * Handles (model, CPU context, sampler, detokenizer) are pointers into wasm
 * memory, 0 on failure; calls that return a status give 0 for success and -1
 * for failure. After any failure the export error_message gives one line that
 * names the problem. Byte counts and file offsets are doubles (exact up to
 * 2^53, files may be larger than the 4 GiB of wasm memory); pointers are i32
 * and JS reads them with `>>> 0`. The order of calls is in README.md.
 *
 * Loading is header first: JS gives the first bytes of each GGUF file (of a
 * llama.cpp split: every part in order) until model_header accepts them, then
 * knows every tensor's file, offset and size before any weight is fetched.
 * For the CPU backend, cpu_weights_alloc then reserves each file's image in
 * wasm memory; JS writes the files (whole, or tensor by tensor) there and
 * calls model_load. */
#include "wasm/wasm.h"

#include "cpu/forward.h"
#include "sampler/sampler.h"
#include "tokenizer/chat.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static sl_error last_error;

sl_error *sl_wasm_err(void) { return &last_error; }

SL_EXPORT("error_message") const char *wasm_error_message(void) { return last_error.msg; }

/* ---- memory for JS: buffers it passes in (text, ids, logits, file bytes) ---- */

SL_EXPORT("malloc") void *wasm_malloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) sl_err(&last_error, "out of memory (%zu bytes)", n);
    return p;
}

SL_EXPORT("free") void wasm_free(void *p) { free(p); }

/* ---- model loading ------------------------------------------------------ */

/* One GGUF file of the model (one part of a split). */
typedef struct wasm_file {
    unsigned char *image; /* the file's bytes: its header, or the whole file after cpu_weights_alloc */
    uint64_t size;        /* bytes of the whole file */
    uint64_t header_size; /* bytes before the data section (tensor data starts here), at most size */
} wasm_file;

struct sl_wasm_model {
    wasm_file *files;
    int n_files;          /* files given so far */
    uint32_t n_expected;  /* files the model has: split.count, or 1; 0 before the first */
    sl_gguf *header;      /* header-only parse of the files given (tensor table); NULL after load */
    bool host_weights;    /* images hold whole files (CPU backend) */
    sl_model *model;      /* after model_load */
    char *info;           /* model_info's JSON, made on first call */
};

const sl_model *sl_wasm_model_get(const sl_wasm_model *m) { return m ? m->model : NULL; }

const sl_gguf *sl_wasm_model_gguf(const sl_wasm_model *m) {
    if (!m) return NULL;
    if (m->model) return m->model->gguf;
    return m->n_files > 0 && (uint32_t)m->n_files == m->n_expected ? m->header : NULL;
}

SL_EXPORT("model_new") sl_wasm_model *wasm_model_new(void) {
    sl_wasm_model *m = calloc(1, sizeof *m);
    if (!m) sl_err(&last_error, "out of memory");
    return m;
}

SL_EXPORT("model_free") void wasm_model_free(sl_wasm_model *m) {
    if (!m) return;
    sl_model_free(m->model); /* closes its gguf, which borrows the images */
    sl_gguf_close(m->header);
    for (int i = 0; i < m->n_files; i++) free(m->files[i].image);
    free(m->files);
    free(m->info);
    free(m);
}

/* A byte count from JS: a whole number in [0, 2^53]. */
static bool valid_size(double v) { return v >= 0 && v <= 9007199254740992.0 && v == floor(v); }

/* Checks that the tensors of file k (whose data section starts at data_offset)
 * lie inside its size, so that JS can write each at its offset. */
static int check_tensors_fit(const sl_gguf *g, int k, uint64_t data_offset, uint64_t file_size) {
    for (int64_t i = 0; i < sl_gguf_n_tensors(g); i++) {
        const sl_gguf_tensor *t = sl_gguf_tensor_at(g, i);
        if (t->file_index != k) continue;
        uint64_t start, end;
        if (!sl_add_u64(data_offset, t->offset, &start) || !sl_add_u64(start, t->nbytes, &end) ||
            end > file_size)
            return sl_err(&last_error, "tensor '%s' (%llu bytes at offset %llu) runs past the end of file %d "
                          "(%llu bytes)", t->name, (unsigned long long)t->nbytes,
                          (unsigned long long)start, k + 1, (unsigned long long)file_size);
    }
    return 0;
}

/* Parses file k's header from its image and adds it to m->header. */
static int add_header(sl_wasm_model *m, int k) {
    wasm_file *f = &m->files[k];
    sl_gguf *g = sl_gguf_open_memory(f->image, (size_t)f->header_size, SL_GGUF_HEADER_ONLY, &last_error);
    if (!g) return -1;
    if (k == 0) {
        m->header = g;
        return 0;
    }
    sl_error e;
    if (sl_gguf_add_split_part(m->header, g, &e)) return sl_err(&last_error, "file %d of the split: %s", k + 1, e.msg);
    return 0;
}

/* Gives the first `len` bytes of the next file of the model (the first file,
 * or the next part of a split), whose whole size is file_size. Returns 0 when
 * they hold the file's whole header (accepted: the bytes are copied, JS may
 * free them); N > len when more is needed: call again with at least the first
 * N bytes; -1 on error (not a GGUF, a bad header, parts out of order). */
SL_EXPORT("model_header") double wasm_model_header(sl_wasm_model *m, const void *bytes, size_t len,
                                                   double file_size) {
    if (!m || (!bytes && len)) return sl_err(&last_error, "model_header: no model or no bytes");
    if (m->model) return sl_err(&last_error, "model_header: the model is loaded already");
    if (m->n_expected && (uint32_t)m->n_files == m->n_expected)
        return sl_err(&last_error, "model_header: all %u files of the model were given already", m->n_expected);
    if (!valid_size(file_size) || (double)len > file_size)
        return sl_err(&last_error, "model_header: file size %.0f is invalid or smaller than the %zu bytes given",
                      file_size, len);
    if (len >= 4 && memcmp(bytes, "GGUF", 4) != 0) return sl_err(&last_error, "not a GGUF file (bad magic)");

    sl_error parse_err;
    sl_gguf *g = sl_gguf_open_memory(bytes, len, SL_GGUF_HEADER_ONLY, &parse_err);
    if (!g) {
        if ((double)len < file_size) {
            double want = len < 65536 ? 65536 : 2.0 * (double)len;
            return want < file_size ? want : file_size;
        }
        return sl_err(&last_error, "%s", parse_err.msg);
    }
    uint64_t header_size = sl_gguf_data_offset(g);
    int64_t n_tensors = sl_gguf_n_tensors(g);
    sl_gguf_split split;
    int is_split = sl_gguf_split_info(g, &split, &last_error);
    sl_gguf_close(g);
    if (is_split < 0) return -1;
    if (m->n_files == 0) {
        if (is_split && split.no != 0)
            return sl_err(&last_error, "this is part %u of %u of a split: give part 1 first", split.no + 1,
                          split.count);
        m->n_expected = is_split ? split.count : 1;
    }
    if (header_size > (uint64_t)file_size) {
        if (n_tensors > 0)
            return sl_err(&last_error, "the header (%llu bytes) is larger than the file (%.0f bytes)",
                          (unsigned long long)header_size, file_size);
        header_size = (uint64_t)file_size; /* no tensors: the padding after the header may be absent */
    }

    wasm_file *files = realloc(m->files, (size_t)(m->n_files + 1) * sizeof *files);
    if (!files) return sl_err(&last_error, "out of memory");
    m->files = files;
    wasm_file *f = &m->files[m->n_files];
    f->size = (uint64_t)file_size;
    f->header_size = header_size;
    f->image = calloc(1, (size_t)header_size + 1);
    if (!f->image) return sl_err(&last_error, "out of memory for a %llu-byte header", (unsigned long long)header_size);
    memcpy(f->image, bytes, header_size < len ? (size_t)header_size : len); /* the rest is padding */
    int k = m->n_files++;
    if (add_header(m, k) || check_tensors_fit(m->header, k, header_size, f->size)) {
        /* forget this file (the header keeps the parts before it) */
        m->n_files--;
        free(f->image);
        if (k == 0) {
            sl_gguf_close(m->header);
            m->header = NULL;
            m->n_expected = 0;
        } else {
            /* add_split_part may have appended the part: rebuild from the files before */
            sl_error keep = last_error;
            sl_gguf_close(m->header);
            m->header = NULL;
            for (int i = 0; i < m->n_files; i++)
                if (add_header(m, i)) break;
            last_error = keep;
        }
        return -1;
    }
    return 0;
}

/* Files the model consists of (split.count, or 1; 0 before the first header),
 * and how many were given. */
SL_EXPORT("model_n_files") int32_t wasm_model_n_files(const sl_wasm_model *m) { return m ? (int32_t)m->n_expected : 0; }
SL_EXPORT("model_n_files_given") int32_t wasm_model_n_files_given(const sl_wasm_model *m) { return m ? m->n_files : 0; }

/* The tensor table (once every header was given; -1 / 0 before). */
static const sl_gguf_tensor *tensor_at(const sl_wasm_model *m, int32_t i) {
    const sl_gguf *g = sl_wasm_model_gguf(m);
    if (!g) {
        sl_err(&last_error, "the model's headers are not complete");
        return NULL;
    }
    if (i < 0 || i >= sl_gguf_n_tensors(g)) {
        sl_err(&last_error, "tensor index %d out of range", i);
        return NULL;
    }
    return sl_gguf_tensor_at(g, i);
}

SL_EXPORT("model_n_tensors") int32_t wasm_model_n_tensors(const sl_wasm_model *m) {
    const sl_gguf *g = sl_wasm_model_gguf(m);
    if (!g) return sl_err(&last_error, "the model's headers are not complete");
    return (int32_t)sl_gguf_n_tensors(g);
}

SL_EXPORT("model_tensor_name") const char *wasm_model_tensor_name(const sl_wasm_model *m, int32_t i) {
    const sl_gguf_tensor *t = tensor_at(m, i);
    return t ? t->name : NULL;
}

SL_EXPORT("model_tensor_type") int32_t wasm_model_tensor_type(const sl_wasm_model *m, int32_t i) {
    const sl_gguf_tensor *t = tensor_at(m, i);
    return t ? t->type : -1;
}

/* Which file (0-based part of a split) holds tensor i. */
SL_EXPORT("model_tensor_file") int32_t wasm_model_tensor_file(const sl_wasm_model *m, int32_t i) {
    const sl_gguf_tensor *t = tensor_at(m, i);
    return t ? t->file_index : -1;
}

/* Offset of tensor i's bytes from the start of its file. */
SL_EXPORT("model_tensor_offset") double wasm_model_tensor_offset(const sl_wasm_model *m, int32_t i) {
    const sl_gguf_tensor *t = tensor_at(m, i);
    if (!t) return -1;
    return (double)(m->files[t->file_index].header_size + t->offset);
}

SL_EXPORT("model_tensor_bytes") double wasm_model_tensor_bytes(const sl_wasm_model *m, int32_t i) {
    const sl_gguf_tensor *t = tensor_at(m, i);
    return t ? (double)t->nbytes : -1;
}

/* ---- CPU weights: the files' images in wasm memory ------------------------ */

/* The largest file image one malloc can give (2 GiB less some slack). */
#define MAX_FILE_IMAGE ((1u << 31) - (1u << 20))

/* Reserves the whole image of every file in wasm memory (its header already
 * in place). Then JS writes each file's bytes at cpu_file_dest(m, k) (whole,
 * or each tensor at cpu_tensor_dest) and calls model_load. */
SL_EXPORT("cpu_weights_alloc") int32_t wasm_cpu_weights_alloc(sl_wasm_model *m) {
    if (!sl_wasm_model_gguf(m) || m->model) return sl_err(&last_error, "cpu_weights_alloc: give every header first");
    if (m->host_weights) return 0;
    uint64_t total = 0;
    for (int k = 0; k < m->n_files; k++)
        if (!sl_add_u64(total, m->files[k].size, &total)) total = UINT64_MAX;
    if (total > (uint64_t)SIZE_MAX - 65536)
        return sl_err(&last_error, "the model's %llu bytes do not fit in wasm memory (4 GiB)", (unsigned long long)total);
    /* wasi-libc's malloc grows memory through sbrk(intptr_t): one block stays below 2 GiB */
    for (int k = 0; k < m->n_files; k++)
        if (m->files[k].size > MAX_FILE_IMAGE)
            return sl_err(&last_error, "file %d is %llu bytes; in wasm one file can be at most %u bytes (split the model)",
                          k + 1, (unsigned long long)m->files[k].size, MAX_FILE_IMAGE);
    unsigned char **images = calloc((size_t)m->n_files, sizeof *images);
    if (!images) return sl_err(&last_error, "out of memory");
    for (int k = 0; k < m->n_files; k++) {
        images[k] = malloc((size_t)m->files[k].size + 1);
        if (!images[k]) {
            for (int i = 0; i < k; i++) free(images[i]);
            free(images);
            return sl_err(&last_error, "out of memory for %llu bytes of weights in wasm memory",
                          (unsigned long long)total);
        }
    }
    /* the header parse borrows the old images: rebuild it over the new ones */
    sl_gguf_close(m->header);
    m->header = NULL;
    for (int k = 0; k < m->n_files; k++) {
        wasm_file *f = &m->files[k];
        memcpy(images[k], f->image, (size_t)f->header_size);
        free(f->image);
        f->image = images[k];
    }
    free(images);
    m->host_weights = true;
    for (int k = 0; k < m->n_files; k++)
        if (add_header(m, k)) return -1; /* parsed before: only out of memory */
    return 0;
}

/* Where file k's byte 0 goes: JS writes bytes [a, b) of the file at
 * cpu_file_dest(m, k) + a. */
SL_EXPORT("cpu_file_dest") unsigned char *wasm_cpu_file_dest(sl_wasm_model *m, int32_t k) {
    if (!m || !m->host_weights || k < 0 || k >= m->n_files) {
        sl_err(&last_error, "cpu_file_dest: no image for file %d (call cpu_weights_alloc first)", k);
        return NULL;
    }
    return m->files[k].image;
}

/* Where tensor i's bytes go (model_tensor_bytes of them). */
SL_EXPORT("cpu_tensor_dest") unsigned char *wasm_cpu_tensor_dest(sl_wasm_model *m, int32_t i) {
    const sl_gguf_tensor *t = tensor_at(m, i);
    if (!t) return NULL;
    unsigned char *image = wasm_cpu_file_dest(m, t->file_index);
    return image ? image + m->files[t->file_index].header_size + t->offset : NULL;
}

/* Builds the model (hyperparameters, tokenizer, weights) once every file's
 * bytes are in place. name: a NUL-terminated name for models without
 * general.name, or 0. Without cpu_weights_alloc the weights are not in wasm
 * memory (a GPU backend uploads them): the model then has no host data. */
SL_EXPORT("model_load") int32_t wasm_model_load(sl_wasm_model *m, const char *name) {
    if (!sl_wasm_model_gguf(m) || m->model) return sl_err(&last_error, "model_load: give every header first");
    sl_gguf *g = NULL;
    if (m->host_weights) {
        for (int k = 0; k < m->n_files; k++) {
            sl_error e;
            sl_gguf *part = sl_gguf_open_memory(m->files[k].image, (size_t)m->files[k].size, 0, &e);
            if (!part) {
                sl_gguf_close(g);
                return sl_err(&last_error, "file %d: %s", k + 1, e.msg);
            }
            if (k == 0) {
                g = part;
            } else if (sl_gguf_add_split_part(g, part, &e)) {
                sl_gguf_close(g);
                return sl_err(&last_error, "file %d: %s", k + 1, e.msg);
            }
        }
        sl_gguf_close(m->header);
    } else {
        g = m->header;
    }
    m->header = NULL;
    if (sl_gguf_finish_split(g, &last_error)) {
        sl_gguf_close(g);
        return -1;
    }
    m->model = sl_model_from_gguf(g, name, &last_error);
    return m->model ? 0 : -1;
}

/* Appends s to the JSON text at *p as a string (quotes, escapes). */
static void json_str(char **p, const char *end, const char *s) {
    int n = snprintf(*p, (size_t)(end - *p), "\"");
    *p += n;
    for (; *s && *p + 8 < end; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') n = snprintf(*p, (size_t)(end - *p), "\\%c", c);
        else if (c < 0x20) n = snprintf(*p, (size_t)(end - *p), "\\u%04x", c);
        else n = snprintf(*p, (size_t)(end - *p), "%c", c);
        *p += n;
    }
    n = snprintf(*p, (size_t)(end - *p), "\"");
    *p += n;
}

/* The loaded model's facts as JSON: name, arch, quant, n_vocab, n_ctx_train,
 * n_embd, n_layer, n_head, n_head_kv, head_dim, n_ff, params, weight_bytes,
 * bos, eos, add_bos, chat_template (the detected family or null). */
SL_EXPORT("model_info") const char *wasm_model_info(sl_wasm_model *m) {
    if (!m || !m->model) {
        sl_err(&last_error, "model_info: no model loaded");
        return NULL;
    }
    if (m->info) return m->info;
    const size_t cap = 4096;
    char *buf = malloc(cap), *p = buf, *end = buf + cap;
    if (!buf) {
        sl_err(&last_error, "out of memory");
        return NULL;
    }
    const sl_model *md = m->model;
    const sl_hparams *hp = &md->hp;
    p += snprintf(p, (size_t)(end - p), "{\"name\":");
    json_str(&p, end - 1024, md->name);
    p += snprintf(p, (size_t)(end - p), ",\"arch\":\"%s\",\"quant\":\"%s\"", sl_arch_name(hp->arch),
                  sl_model_quant_name(md));
    p += snprintf(p, (size_t)(end - p),
                  ",\"n_vocab\":%d,\"n_ctx_train\":%d,\"n_embd\":%d,\"n_layer\":%d,\"n_head\":%d,"
                  "\"n_head_kv\":%d,\"head_dim\":%d,\"n_ff\":%d,\"params\":%llu,\"weight_bytes\":%llu,"
                  "\"bos\":%d,\"eos\":%d,\"add_bos\":%s,\"chat_template\":",
                  hp->n_vocab, hp->n_ctx_train, hp->n_embd, hp->n_layer, hp->n_head, hp->n_head_kv, hp->head_dim,
                  hp->n_ff, (unsigned long long)md->n_params, (unsigned long long)md->weight_bytes,
                  sl_tokenizer_bos(md->tok), sl_tokenizer_eos(md->tok), sl_tokenizer_add_bos(md->tok) ? "true" : "false");
    sl_chat_template t = md->chat_template ? sl_chat_detect(md->chat_template) : SL_CHAT_UNKNOWN;
    if (t == SL_CHAT_UNKNOWN) p += snprintf(p, (size_t)(end - p), "null}");
    else p += snprintf(p, (size_t)(end - p), "\"%s\"}", sl_chat_name(t));
    m->info = buf;
    return buf;
}

SL_EXPORT("model_n_vocab") int32_t wasm_model_n_vocab(const sl_wasm_model *m) {
    return m && m->model ? m->model->hp.n_vocab : sl_err(&last_error, "no model loaded");
}

/* ---- tokenizer ------------------------------------------------------------ */

enum {
    TOKENIZE_ADD_SPECIAL = 1,   /* BOS/EOS as the model wants */
    TOKENIZE_PARSE_SPECIAL = 2, /* control tokens written in the text are matched */
};

/* Tokenizes text[0..len) (UTF-8). Writes up to cap ids to out and returns how
 * many there are in all (more than cap: call again with a larger buffer), or
 * -1. flags: 1 add BOS/EOS, 2 parse special tokens. */
SL_EXPORT("tokenize") int32_t wasm_tokenize(const sl_wasm_model *m, const char *text, size_t len, int32_t flags,
                                            int32_t *out, int32_t cap) {
    if (!m || !m->model) return sl_err(&last_error, "tokenize: no model loaded");
    if ((!text && len) || cap < 0 || (!out && cap)) return sl_err(&last_error, "tokenize: bad arguments");
    int32_t *ids = NULL;
    size_t n = 0;
    if (sl_tokenize(m->model->tok, text ? text : "", len, flags & TOKENIZE_ADD_SPECIAL,
                    flags & TOKENIZE_PARSE_SPECIAL, &ids, &n, &last_error))
        return -1;
    if (n > INT32_MAX) {
        free(ids);
        return sl_err(&last_error, "tokenize: too many tokens");
    }
    if (cap > 0) memcpy(out, ids, (n < (size_t)cap ? n : (size_t)cap) * sizeof *ids);
    free(ids);
    return (int32_t)n;
}

SL_EXPORT("token_is_eog") int32_t wasm_token_is_eog(const sl_wasm_model *m, int32_t id) {
    return m && m->model && sl_tokenizer_is_eog(m->model->tok, id);
}

/* Streaming detokenizer: text that is always whole UTF-8 characters. */
typedef struct wasm_detok {
    sl_detok d;
    char *text; /* the last push's / flush's text, NUL-terminated */
    size_t cap;
} wasm_detok;

/* flags: 1 render special tokens, 2 the text continues earlier text (keep
 * the first piece's leading space, as after a prompt). */
SL_EXPORT("detok_new") wasm_detok *wasm_detok_new(const sl_wasm_model *m, int32_t flags) {
    if (!m || !m->model) {
        sl_err(&last_error, "detok_new: no model loaded");
        return NULL;
    }
    wasm_detok *d = calloc(1, sizeof *d);
    if (d) {
        d->cap = sl_tokenizer_max_piece(m->model->tok) + 16;
        d->text = malloc(d->cap);
    }
    if (!d || !d->text) {
        free(d);
        sl_err(&last_error, "out of memory");
        return NULL;
    }
    sl_detok_init(&d->d, m->model->tok, flags & 1);
    if (flags & 2) d->d.at_start = false;
    d->text[0] = 0;
    return d;
}

/* Adds a token; returns the bytes of text it completes (at detok_text). */
SL_EXPORT("detok_push") int32_t wasm_detok_push(wasm_detok *d, int32_t id) {
    return d ? (int32_t)sl_detok_push(&d->d, id, d->text, d->cap) : 0;
}

/* Ends the text: returns the bytes still held back (at detok_text). */
SL_EXPORT("detok_flush") int32_t wasm_detok_flush(wasm_detok *d) {
    return d ? (int32_t)sl_detok_flush(&d->d, d->text, d->cap) : 0;
}

SL_EXPORT("detok_text") const char *wasm_detok_text(const wasm_detok *d) { return d ? d->text : NULL; }

SL_EXPORT("detok_free") void wasm_detok_free(wasm_detok *d) {
    if (!d) return;
    free(d->text);
    free(d);
}

/* Renders a prompt with a chat template: template_name (e.g. "chatml") or 0
 * for the model's own; system may be 0. Returns a malloc'd NUL-terminated
 * string (JS frees it with free), or 0. */
SL_EXPORT("chat_prompt") char *wasm_chat_prompt(const sl_wasm_model *m, const char *template_name,
                                                const char *system, const char *user) {
    if (!m || !m->model || !user) {
        sl_err(&last_error, "chat_prompt: no model loaded or no text");
        return NULL;
    }
    sl_chat_template t;
    if (template_name) {
        t = sl_chat_from_name(template_name);
        if (t == SL_CHAT_UNKNOWN) {
            sl_err(&last_error, "unknown chat template '%.100s'", template_name);
            return NULL;
        }
    } else {
        if (!m->model->chat_template) {
            sl_err(&last_error, "the model has no tokenizer.chat_template; use --chat-template NAME");
            return NULL;
        }
        t = sl_chat_detect(m->model->chat_template);
        if (t == SL_CHAT_UNKNOWN) {
            sl_err(&last_error, "the model's chat template is not one we know; use --chat-template NAME");
            return NULL;
        }
    }
    sl_chat_msg msgs[2];
    size_t n = 0;
    if (system) msgs[n++] = (sl_chat_msg){"system", system};
    msgs[n++] = (sl_chat_msg){"user", user};
    char *out = NULL;
    return sl_chat_apply(t, msgs, n, true, &out, &last_error) ? NULL : out;
}

/* ---- CPU backend ----------------------------------------------------------- */

/* n_ctx <= 0: min(n_ctx_train, 4096); n_batch <= 0: 512. */
SL_EXPORT("cpu_new") sl_cpu_ctx *wasm_cpu_new(const sl_wasm_model *m, int32_t n_ctx, int32_t n_batch) {
    if (!m || !m->model) {
        sl_err(&last_error, "cpu_new: no model loaded");
        return NULL;
    }
    if (!m->host_weights) {
        sl_err(&last_error, "cpu_new: the weights are not in wasm memory (call cpu_weights_alloc before model_load)");
        return NULL;
    }
    /* every thread there is: the caller, plus the worker threads that run in
       the threaded build (src/wasm/threadpool_wasm.c) */
    sl_cpu_params p = {.n_ctx = n_ctx, .n_batch = n_batch, .n_threads = 0};
    return sl_cpu_ctx_new(m->model, &p, &last_error);
}

SL_EXPORT("cpu_free") void wasm_cpu_free(sl_cpu_ctx *c) { sl_cpu_ctx_free(c); }

/* Evaluates ids[0..n) after the cached tokens; logits: [n][n_vocab] floats
 * when all_logits, else [n_vocab] for the last token; 0 to skip them. */
SL_EXPORT("cpu_eval") int32_t wasm_cpu_eval(sl_cpu_ctx *c, const int32_t *ids, int32_t n, float *logits,
                                            int32_t all_logits) {
    if (!c || !ids || n <= 0) return sl_err(&last_error, "cpu_eval: no context or no tokens");
    return sl_cpu_eval(c, ids, n, logits, all_logits != 0, &last_error) ? -1 : 0;
}

SL_EXPORT("cpu_n_ctx") int32_t wasm_cpu_n_ctx(const sl_cpu_ctx *c) { return c ? sl_cpu_n_ctx(c) : 0; }
SL_EXPORT("cpu_n_past") int32_t wasm_cpu_n_past(const sl_cpu_ctx *c) { return c ? sl_cpu_n_past(c) : 0; }
SL_EXPORT("cpu_truncate") void wasm_cpu_truncate(sl_cpu_ctx *c, int32_t n_keep) {
    if (c) sl_cpu_truncate(c, n_keep);
}

/* ---- sampler ---------------------------------------------------------------- */

/* Sampler parameters, set by name so that JS need not know the struct:
 * sampler_params() gives the defaults (llama.cpp's CLI defaults), then
 * sampler_param_set(p, "temp", 0.7) etc., sampler_new(p, n_vocab); free(p). */
SL_EXPORT("sampler_params") sl_sampler_params *wasm_sampler_params(void) {
    sl_sampler_params *p = malloc(sizeof *p);
    if (!p) {
        sl_err(&last_error, "out of memory");
        return NULL;
    }
    *p = sl_sampler_default_params();
    return p;
}

/* Names: temp, top_k, top_p, min_p, repeat_penalty, repeat_last_n,
 * freq_penalty, presence_penalty, seed (exact up to 2^53), seed_hi and
 * seed_lo (the two 32-bit halves of a 64-bit seed). */
SL_EXPORT("sampler_param_set") int32_t wasm_sampler_param_set(sl_sampler_params *p, const char *name, double v) {
    if (!p || !name) return sl_err(&last_error, "sampler_param_set: bad arguments");
    bool is_int = v == floor(v);
    if (!strcmp(name, "temp")) p->temp = (float)v;
    else if (!strcmp(name, "top_p")) p->top_p = (float)v;
    else if (!strcmp(name, "min_p")) p->min_p = (float)v;
    else if (!strcmp(name, "repeat_penalty")) p->repeat_penalty = (float)v;
    else if (!strcmp(name, "freq_penalty")) p->freq_penalty = (float)v;
    else if (!strcmp(name, "presence_penalty")) p->presence_penalty = (float)v;
    else if (!strcmp(name, "top_k") && is_int && v >= -1 && v <= INT32_MAX) p->top_k = (int32_t)v;
    else if (!strcmp(name, "repeat_last_n") && is_int && v >= -1 && v <= INT32_MAX) p->repeat_last_n = (int32_t)v;
    else if (!strcmp(name, "seed") && valid_size(v)) p->seed = (uint64_t)v;
    else if (!strcmp(name, "seed_hi") && is_int && v >= 0 && v <= UINT32_MAX)
        p->seed = (p->seed & 0xffffffffu) | (uint64_t)v << 32;
    else if (!strcmp(name, "seed_lo") && is_int && v >= 0 && v <= UINT32_MAX)
        p->seed = (p->seed & ~(uint64_t)0xffffffffu) | (uint64_t)v;
    else return sl_err(&last_error, "sampler parameter '%.40s' is unknown or %g is out of its range", name, v);
    return 0;
}

SL_EXPORT("sampler_new") sl_sampler *wasm_sampler_new(const sl_sampler_params *p, int32_t n_vocab) {
    if (!p) {
        sl_err(&last_error, "sampler_new: no parameters");
        return NULL;
    }
    return sl_sampler_new(p, n_vocab, &last_error);
}

SL_EXPORT("sampler_free") void wasm_sampler_free(sl_sampler *s) { sl_sampler_free(s); }
SL_EXPORT("sampler_sample") int32_t wasm_sampler_sample(sl_sampler *s, const float *logits) {
    return sl_sampler_sample(s, logits);
}
SL_EXPORT("sampler_accept") void wasm_sampler_accept(sl_sampler *s, int32_t id) {
    if (s) sl_sampler_accept(s, id);
}
SL_EXPORT("sampler_reset") void wasm_sampler_reset(sl_sampler *s) {
    if (s) sl_sampler_reset(s);
}
