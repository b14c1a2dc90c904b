/* tokenizer.c - SentencePiece-style and byte-level BPE tokenizers built from a
 * GGUF's tokenizer.* metadata, matching llama.cpp's llama-vocab.cpp: the same
 * defaults, special-token partitioning, merge order, byte fallback and
 * detokenization (see tokenizer.h). */
#include "tokenizer/tokenizer.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/pretok.h"
#include "tokenizer/unicode.h"

/* Token attributes, as llama.cpp's llama_token_attr. */
enum {
    ATTR_UNKNOWN = 1 << 0,
    ATTR_UNUSED = 1 << 1,
    ATTR_NORMAL = 1 << 2,
    ATTR_CONTROL = 1 << 3,
    ATTR_USER_DEFINED = 1 << 4,
    ATTR_BYTE = 1 << 5,
    ATTR_LSTRIP = 1 << 7,
    ATTR_RSTRIP = 1 << 8,
};
#define ATTR_SPECIAL (ATTR_UNKNOWN | ATTR_CONTROL)

/* "\u2581", SentencePiece's visible space. */
#define SPACE_MARK "\xE2\x96\x81"
#define SPACE_MARK_LEN 3

/* Open-addressing hash map from token text to id. */
typedef struct text_map {
    uint32_t *slot; /* id + 1, 0 = empty */
    size_t mask;
} text_map;

/* Open-addressing hash map from a pair of ids to a merge rank. */
typedef struct pair_map {
    uint64_t *key; /* (left << 32) | right; UINT64_MAX = empty */
    int32_t *rank;
    size_t mask;
} pair_map;

struct sl_tokenizer {
    sl_tok_kind kind;
    int32_t n_vocab;
    char *text;          /* all token texts, each NUL-terminated */
    uint32_t *text_off;  /* n_vocab + 1 offsets into text */
    float *score;
    uint16_t *attr;
    bool *eog;
    char *piece;         /* pieces with render_special, as llama.cpp caches them */
    uint32_t *piece_off; /* n_vocab + 1 */
    size_t max_piece;
    text_map map;
    pair_map merges;
    int32_t *special; /* tokens matched in the text before tokenizing, longest first */
    size_t n_special;
    int32_t bos, eos, eot, eom, unk, sep, pad, mask_id;
    int32_t fim_pre, fim_suf, fim_mid, fim_pad, fim_rep, fim_sep;
    bool add_bos, add_eos, add_space_prefix;
    char pre_name[64];
    sl_pretok *pretok;
    sl_pretok_flags pflags;
    int32_t byte_token[256]; /* byte fallback: SPM's <0xXX>; BPE's token of one byte */
    uint8_t cp_to_byte[324]; /* GPT-2 byte decoding: code point -> byte (valid where byte_cp matches) */
    uint16_t byte_cp[256];   /* GPT-2 byte encoding: byte -> code point */
};

/* ---- small helpers ---- */

static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) {
        h ^= (uint8_t)s[i];
        h *= 1099511628211ull;
    }
    return h ^ (h >> 29);
}

static uint64_t hash_pair(uint64_t k) {
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdull;
    k ^= k >> 33;
    k *= 0xc4ceb9fe1a85ec53ull;
    return k ^ (k >> 33);
}

static const char *tok_text(const sl_tokenizer *t, int32_t id, size_t *len) {
    *len = t->text_off[id + 1] - t->text_off[id] - 1;
    return t->text + t->text_off[id];
}

static int32_t map_find(const sl_tokenizer *t, const char *s, size_t n) {
    size_t i = hash_bytes(s, n) & t->map.mask;
    for (;;) {
        uint32_t v = t->map.slot[i];
        if (!v) return -1;
        size_t len;
        const char *x = tok_text(t, (int32_t)(v - 1), &len);
        if (len == n && memcmp(x, s, n) == 0) return (int32_t)(v - 1);
        i = (i + 1) & t->map.mask;
    }
}

static int32_t merge_rank(const sl_tokenizer *t, int32_t left, int32_t right) {
    if (!t->merges.key || left < 0 || right < 0) return -1;
    uint64_t k = ((uint64_t)(uint32_t)left << 32) | (uint32_t)right;
    size_t i = hash_pair(k) & t->merges.mask;
    for (;;) {
        if (t->merges.key[i] == UINT64_MAX) return -1;
        if (t->merges.key[i] == k) return t->merges.rank[i];
        i = (i + 1) & t->merges.mask;
    }
}

static size_t table_size(size_t n) {
    size_t s = 16;
    while (s < 2 * n) s *= 2;
    return s;
}

/* realloc of n elements of `size` bytes; NULL when the size overflows (on
 * 32-bit targets too) or memory is short. realloc_n(NULL, ...) allocates. */
static void *realloc_n(void *p, size_t n, size_t size) {
    uint64_t bytes;
    if (!sl_mul_u64(n, size, &bytes) || bytes > SIZE_MAX / 2) return NULL;
    return realloc(p, bytes ? (size_t)bytes : 1);
}

/* A growable byte buffer. */
typedef struct buf {
    char *p;
    size_t n, cap;
} buf;

static bool buf_reserve(buf *b, size_t extra) {
    if (b->n + extra <= b->cap) return true;
    if (extra > SIZE_MAX / 4 || b->n > SIZE_MAX / 4) return false;
    size_t c = b->cap ? b->cap : 64;
    while (c < b->n + extra) c *= 2;
    char *q = realloc(b->p, c);
    if (!q) return false;
    b->p = q;
    b->cap = c;
    return true;
}

static bool buf_add(buf *b, const void *s, size_t n) {
    if (!buf_reserve(b, n + 1)) return false;
    if (n) memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
    return true;
}

/* A growable list of token ids. */
typedef struct ids {
    int32_t *p;
    size_t n, cap;
} ids;

static bool ids_push(ids *v, int32_t id) {
    if (v->n == v->cap) {
        size_t c = v->cap ? v->cap * 2 : 64;
        int32_t *q = realloc_n(v->p, c, sizeof *q);
        if (!q) return false;
        v->p = q;
        v->cap = c;
    }
    v->p[v->n++] = id;
    return true;
}

/* GPT-2's byte-to-unicode alphabet: printable Latin-1 bytes stand for
 * themselves, the others for U+0100 onwards in byte order. */
static void init_byte_alphabet(sl_tokenizer *t) {
    uint16_t next = 256;
    memset(t->cp_to_byte, 0, sizeof t->cp_to_byte);
    for (int b = 0; b < 256; b++) {
        bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        t->byte_cp[b] = printable ? (uint16_t)b : next++;
        t->cp_to_byte[t->byte_cp[b]] = (uint8_t)b;
    }
}

static bool cp_is_byte_char(const sl_tokenizer *t, uint32_t cp, uint8_t *byte) {
    if (cp >= sizeof t->cp_to_byte) return false;
    uint8_t b = t->cp_to_byte[cp];
    if (t->byte_cp[b] != cp) return false;
    *byte = b;
    return true;
}

/* ---- loading ---- */

/* Reads an array key that must hold elem_type elements (missing: *out NULL). */
static int get_array(const sl_gguf *g, const char *key, sl_gguf_vtype elem_type, const sl_gguf_value **out,
                     sl_error *err) {
    *out = NULL;
    int r = sl_gguf_get_arr(g, key, out, err);
    if (r < 0) return -1;
    if (r == 0) return 0;
    if ((*out)->arr.elem_type != elem_type)
        return sl_err(err, "%s: array of %s, expected %s", key, sl_gguf_vtype_name((*out)->arr.elem_type),
                      sl_gguf_vtype_name(elem_type));
    return 0;
}

/* A string array element, cut at its first NUL as llama.cpp reads it. */
static sl_gguf_str arr_str(const sl_gguf_value *arr, uint64_t i) {
    sl_gguf_str s = arr->arr.items[i].str;
    const char *nul = s.len ? memchr(s.ptr, 0, s.len) : NULL;
    if (nul) s.len = (uint64_t)(nul - s.ptr);
    return s;
}

static int get_string(const sl_gguf *g, const char *key, char *out, size_t cap, bool *found, sl_error *err) {
    sl_gguf_str s;
    *found = false;
    out[0] = 0;
    int r = sl_gguf_get_str(g, key, &s, err);
    if (r < 0) return -1;
    if (r == 0) return 0;
    size_t n = s.len;
    const char *nul = n ? memchr(s.ptr, 0, n) : NULL;
    if (nul) n = (size_t)(nul - s.ptr);
    if (n >= cap) return sl_err(err, "%s is too long (%zu bytes)", key, n);
    memcpy(out, s.ptr, n);
    out[n] = 0;
    *found = true;
    return 0;
}

static int load_tokens(sl_tokenizer *t, const sl_gguf *g, sl_error *err) {
    const sl_gguf_value *tokens, *scores, *types;
    if (get_array(g, "tokenizer.ggml.tokens", SL_GGUF_STRING, &tokens, err)) return -1;
    if (!tokens) return sl_err(err, "no tokenizer.ggml.tokens in the model");
    if (tokens->arr.n == 0) return sl_err(err, "tokenizer.ggml.tokens is empty");
    if (tokens->arr.n > (uint64_t)INT32_MAX / 2) return sl_err(err, "tokenizer.ggml.tokens has too many entries");
    size_t n = (size_t)tokens->arr.n;
    if (get_array(g, "tokenizer.ggml.scores", SL_GGUF_FLOAT32, &scores, err)) return -1;
    if (scores && scores->arr.n < n)
        return sl_err(err, "tokenizer.ggml.scores has %llu entries for %zu tokens",
                      (unsigned long long)scores->arr.n, n);
    if (get_array(g, "tokenizer.ggml.token_type", SL_GGUF_INT32, &types, err)) return -1;
    if (types && types->arr.n < n)
        return sl_err(err, "tokenizer.ggml.token_type has %llu entries for %zu tokens",
                      (unsigned long long)types->arr.n, n);

    /* Texts: an empty one becomes "[EMPTY_<id>]" as in llama.cpp. */
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        sl_gguf_str s = arr_str(tokens, i);
        total += (s.len ? s.len : 24) + 1;
    }
    if (total > UINT32_MAX) return sl_err(err, "tokenizer.ggml.tokens is too large");
    t->n_vocab = (int32_t)n;
    t->text = realloc_n(NULL, (size_t)total, 1);
    t->text_off = realloc_n(NULL, n + 1, sizeof *t->text_off);
    t->score = realloc_n(NULL, n, sizeof *t->score);
    t->attr = realloc_n(NULL, n, sizeof *t->attr);
    t->eog = calloc(n, sizeof *t->eog);
    size_t slots = table_size(n);
    t->map.slot = calloc(slots, sizeof *t->map.slot);
    t->map.mask = slots - 1;
    if (!t->text || !t->text_off || !t->score || !t->attr || !t->eog || !t->map.slot)
        return sl_err(err, "out of memory for %zu tokens", n);
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        sl_gguf_str s = arr_str(tokens, i);
        t->text_off[i] = (uint32_t)off;
        if (s.len) {
            memcpy(t->text + off, s.ptr, s.len);
            off += s.len;
        } else {
            char tmp[32];
            int k = snprintf(tmp, sizeof tmp, "[EMPTY_%zu]", i);
            memcpy(t->text + off, tmp, (size_t)k);
            off += (size_t)k;
        }
        t->text[off++] = 0;
        t->text_off[i + 1] = (uint32_t)off;

        float sc = 0.0f;
        if (scores) memcpy(&sc, (const char *)scores->arr.data + i * 4, 4);
        t->score[i] = sc;
        int32_t ty = SL_TOKTYPE_NORMAL;
        if (types) memcpy(&ty, (const char *)types->arr.data + i * 4, 4);
        switch (ty) {
        case SL_TOKTYPE_NORMAL: t->attr[i] = ATTR_NORMAL; break;
        case SL_TOKTYPE_UNKNOWN: t->attr[i] = ATTR_UNKNOWN; break;
        case SL_TOKTYPE_CONTROL: t->attr[i] = ATTR_CONTROL; break;
        case SL_TOKTYPE_USER_DEFINED: t->attr[i] = ATTR_USER_DEFINED; break;
        case SL_TOKTYPE_UNUSED: t->attr[i] = ATTR_UNUSED; break;
        case SL_TOKTYPE_BYTE: t->attr[i] = ATTR_BYTE; break;
        default: t->attr[i] = 0; break; /* undefined */
        }

        size_t len;
        const char *txt = tok_text(t, (int32_t)i, &len);
        size_t h = hash_bytes(txt, len) & t->map.mask;
        for (;;) {
            uint32_t v = t->map.slot[h];
            if (!v) {
                t->map.slot[h] = (uint32_t)i + 1;
                break;
            }
            size_t l2;
            const char *x = tok_text(t, (int32_t)(v - 1), &l2);
            if (l2 == len && memcmp(x, txt, len) == 0)
                return sl_err(err, "tokenizer.ggml.tokens: tokens %u and %zu have the same text", v - 1, i);
            h = (h + 1) & t->map.mask;
        }
    }
    return 0;
}

static int load_merges(sl_tokenizer *t, const sl_gguf *g, bool required, sl_error *err) {
    const sl_gguf_value *merges;
    if (get_array(g, "tokenizer.ggml.merges", SL_GGUF_STRING, &merges, err)) return -1;
    if (!merges) return required ? sl_err(err, "no tokenizer.ggml.merges in the BPE model") : 0;
    if (merges->arr.n > (uint64_t)INT32_MAX / 2) return sl_err(err, "tokenizer.ggml.merges has too many entries");
    size_t n = (size_t)merges->arr.n;
    size_t slots = table_size(n);
    t->merges.key = realloc_n(NULL, slots, sizeof *t->merges.key);
    t->merges.rank = realloc_n(NULL, slots, sizeof *t->merges.rank);
    if (!t->merges.key || !t->merges.rank) return sl_err(err, "out of memory for %zu merges", n);
    memset(t->merges.key, 0xFF, slots * sizeof *t->merges.key);
    t->merges.mask = slots - 1;
    for (size_t i = 0; i < n; i++) {
        sl_gguf_str s = arr_str(merges, i);
        /* "left right", split at the first space after the first byte. */
        const char *sp = s.len > 1 ? memchr(s.ptr + 1, ' ', s.len - 1) : NULL;
        if (!sp) return sl_err(err, "tokenizer.ggml.merges[%zu] has no space", i);
        size_t ln = (size_t)(sp - s.ptr), rn = s.len - ln - 1;
        int32_t left = map_find(t, s.ptr, ln), right = map_find(t, sp + 1, rn);
        if (left < 0 || right < 0)
            return sl_err(err, "tokenizer.ggml.merges[%zu] '%.*s' names a token that is not in the vocabulary", i,
                          (int)(s.len > 64 ? 64 : s.len), s.ptr);
        uint64_t k = ((uint64_t)(uint32_t)left << 32) | (uint32_t)right;
        size_t h = hash_pair(k) & t->merges.mask;
        while (t->merges.key[h] != UINT64_MAX && t->merges.key[h] != k) h = (h + 1) & t->merges.mask;
        if (t->merges.key[h] == UINT64_MAX) { /* the first rank of a repeated pair counts */
            t->merges.key[h] = k;
            t->merges.rank[h] = (int32_t)i;
        }
    }
    return 0;
}

/* Reads a special-token id: out-of-range defaults are dropped, out-of-range
 * metadata keeps the default (llama.cpp's rules). */
static int load_special_id(sl_tokenizer *t, const sl_gguf *g, const char *key, int32_t *id, sl_error *err) {
    if (*id >= t->n_vocab) *id = -1;
    int64_t v;
    int r = sl_gguf_get_i64(g, key, &v, err);
    if (r < 0) return -1;
    if (r > 0 && v >= 0 && v < t->n_vocab) *id = (int32_t)v;
    return 0;
}

static int load_bool(const sl_gguf *g, const char *key, bool *out, sl_error *err) {
    bool v;
    int r = sl_gguf_get_bool(g, key, &v, err);
    if (r < 0) return -1;
    if (r > 0) *out = v;
    return 0;
}

static bool text_is(const sl_tokenizer *t, int32_t id, const char *s) {
    size_t len;
    const char *x = tok_text(t, id, &len);
    return len == strlen(s) && memcmp(x, s, len) == 0;
}

/* If *id is unset, a token whose text is in `list` becomes it and is made a
 * control token. llama.cpp takes whichever its hash map yields first; we take
 * the earliest text in the list (e.g. <|eot_id|> before <|end_of_text|>). */
static void detect_special(sl_tokenizer *t, int32_t *id, const char *const *list) {
    if (*id >= 0) return;
    for (; *list; list++) {
        int32_t i = map_find(t, *list, strlen(*list));
        if (i >= 0) {
            *id = i;
            t->attr[i] |= ATTR_CONTROL;
            return;
        }
    }
}

static void detect_special_tokens(sl_tokenizer *t) {
    static const char *const eot[] = {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>",
                                      "<|end_of_text|>", "<EOT>", "_<EOT>", "[EOT]",
                                      "<\xEF\xBD\x9C" "end\xE2\x96\x81" "of\xE2\x96\x81" "sentence\xEF\xBD\x9C>",
                                      "<end_of_utterance>", NULL};
    static const char *const eom[] = {"<|eom_id|>", NULL};
    static const char *const fim_pre[] = {"<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>",
                                          "<\xEF\xBD\x9C" "fim\xE2\x96\x81" "begin\xEF\xBD\x9C>", "<PRE>",
                                          "\xE2\x96\x81<PRE>", "<|code_prefix|>", "<|prefix|>", NULL};
    static const char *const fim_suf[] = {"<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>",
                                          "<\xEF\xBD\x9C" "fim\xE2\x96\x81" "hole\xEF\xBD\x9C>", "<SUF>",
                                          "\xE2\x96\x81<SUF>", "<|code_suffix|>", "<|suffix|>", NULL};
    static const char *const fim_mid[] = {"<|fim_middle|>", "<fim-middle>", "<fim_middle>",
                                          "<\xEF\xBD\x9C" "fim\xE2\x96\x81" "end\xEF\xBD\x9C>", "<MID>",
                                          "\xE2\x96\x81<MID>", "<|code_middle|>", "<|middle|>", NULL};
    static const char *const fim_pad[] = {"<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]", NULL};
    static const char *const fim_rep[] = {"<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>", NULL};
    static const char *const fim_sep[] = {"<|file_sep|>", NULL};
    static const char *const eog[] = {"<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>",
                                      "<|calls|>", "<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>",
                                      "_<EOT>", "[EOT]", "[EOS]", "<|end_of_text|>", "<end_of_utterance>", "<eos>",
                                      "<turn|>", "<|tool_response>",
                                      "<\xEF\xBD\x9C" "end\xE2\x96\x81" "of\xE2\x96\x81" "sentence\xEF\xBD\x9C>",
                                      "[e~[", NULL};
    static const char *const always_rendered[] = {"<|channel|>", "<|message|>", "<|start|>", "<|constrain|>", NULL};

    detect_special(t, &t->eot, eot);
    detect_special(t, &t->eom, eom);
    detect_special(t, &t->fim_pre, fim_pre);
    detect_special(t, &t->fim_suf, fim_suf);
    detect_special(t, &t->fim_mid, fim_mid);
    detect_special(t, &t->fim_pad, fim_pad);
    detect_special(t, &t->fim_rep, fim_rep);
    detect_special(t, &t->fim_sep, fim_sep);

    /* Control tokens named "unused..." are unused. */
    for (int32_t i = 0; i < t->n_vocab; i++) {
        size_t len;
        const char *x = tok_text(t, i, &len);
        if ((t->attr[i] & ATTR_CONTROL) && strstr(x, "unused")) t->attr[i] |= ATTR_UNUSED;
    }

    /* End of generation. */
    if (t->fim_pad >= 0) t->eog[t->fim_pad] = true;
    if (t->fim_rep >= 0) t->eog[t->fim_rep] = true;
    if (t->fim_sep >= 0) t->eog[t->fim_sep] = true;
    for (const char *const *s = eog; *s; s++) {
        int32_t i = map_find(t, *s, strlen(*s));
        if (i >= 0) {
            t->eog[i] = true;
            t->attr[i] |= ATTR_CONTROL;
        }
    }
    for (const char *const *s = always_rendered; *s; s++) {
        int32_t i = map_find(t, *s, strlen(*s));
        if (i >= 0) t->attr[i] = ATTR_USER_DEFINED; /* gpt-oss */
    }
    if (t->eos >= 0) t->eog[t->eos] = true;
    if (t->eot >= 0) t->eog[t->eot] = true;
    if (t->eom >= 0) t->eog[t->eom] = true;

    /* o200k_harmony and solar-open: <|end|> ends a message, not the generation. */
    int32_t end_id = -1;
    bool has_return = false, has_call = false, has_flush = false, has_tool_response = false;
    int32_t s_id = -1;
    for (int32_t i = 0; i < t->n_vocab; i++) {
        if (!t->eog[i]) continue;
        if (text_is(t, i, "<|return|>")) has_return = true;
        else if (text_is(t, i, "<|call|>") || text_is(t, i, "<|calls|>")) has_call = true;
        else if (text_is(t, i, "<|flush|>")) has_flush = true;
        else if (text_is(t, i, "<|end|>")) end_id = i;
        if (text_is(t, i, "<|tool_response>")) has_tool_response = true;
        else if (text_is(t, i, "</s>")) s_id = i;
    }
    if (end_id >= 0 && ((has_return && has_call) || (has_call && has_flush))) {
        t->eog[end_id] = false;
        t->attr[end_id] = ATTR_USER_DEFINED;
    }
    /* Gemma 4 and PaddleOCR: </s> is not an end of generation. */
    if (has_tool_response && s_id >= 0) {
        t->eog[s_id] = false;
        t->attr[s_id] = ATTR_NORMAL;
    }
}

/* Special tokens are tried longest first (ties: lower id first). */
static int cmp_special(const sl_tokenizer *t, int32_t x, int32_t y) {
    uint32_t lx = t->text_off[x + 1] - t->text_off[x], ly = t->text_off[y + 1] - t->text_off[y];
    if (lx != ly) return lx > ly ? -1 : 1;
    return x < y ? -1 : x > y;
}

/* A merge sort (qsort has no context argument in C11). */
static void sort_special(sl_tokenizer *t, int32_t *v, int32_t *tmp, size_t n) {
    if (n < 2) return;
    size_t h = n / 2;
    sort_special(t, v, tmp, h);
    sort_special(t, v + h, tmp, n - h);
    size_t i = 0, j = h, k = 0;
    while (i < h && j < n) tmp[k++] = cmp_special(t, v[j], v[i]) < 0 ? v[j++] : v[i++];
    while (i < h) tmp[k++] = v[i++];
    while (j < n) tmp[k++] = v[j++];
    memcpy(v, tmp, n * sizeof *v);
}

static int build_special_list(sl_tokenizer *t, sl_error *err) {
    size_t n = 0;
    for (int32_t i = 0; i < t->n_vocab; i++)
        if (t->attr[i] & (ATTR_CONTROL | ATTR_USER_DEFINED | ATTR_UNKNOWN)) n++;
    t->special = realloc_n(NULL, n, sizeof *t->special);
    int32_t *tmp = realloc_n(NULL, n, sizeof *tmp);
    if (!t->special || !tmp) {
        free(tmp);
        return sl_err(err, "out of memory");
    }
    for (int32_t i = 0; i < t->n_vocab; i++)
        if (t->attr[i] & (ATTR_CONTROL | ATTR_USER_DEFINED | ATTR_UNKNOWN)) t->special[t->n_special++] = i;
    sort_special(t, t->special, tmp, t->n_special);
    free(tmp);
    return 0;
}

static int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* The byte of a "<0xXX>" token: strtol of the two characters after "<0x". */
static uint8_t byte_token_value(const char *s, size_t len) {
    unsigned v = 0;
    for (size_t i = 3; i < 5 && i < len; i++) {
        int h = hex_digit(s[i]);
        if (h < 0) break;
        v = v * 16 + (unsigned)h;
    }
    return (uint8_t)v;
}

/* The text a token stands for, rendering special tokens (llama.cpp's
 * token_to_piece with special = true, as cached at load). */
static bool make_piece(const sl_tokenizer *t, int32_t id, buf *out) {
    size_t len;
    const char *s = tok_text(t, id, &len);
    uint16_t a = t->attr[id];
    if (a & (ATTR_SPECIAL | ATTR_USER_DEFINED)) return buf_add(out, s, len);
    if (a & ATTR_NORMAL) {
        if (t->kind == SL_TOK_SPM || t->pflags.escape_spaces) {
            for (size_t i = 0; i < len;) {
                if (i + SPACE_MARK_LEN <= len && memcmp(s + i, SPACE_MARK, SPACE_MARK_LEN) == 0) {
                    if (!buf_add(out, " ", 1)) return false;
                    i += SPACE_MARK_LEN;
                } else {
                    if (!buf_add(out, s + i, 1)) return false;
                    i++;
                }
            }
            return true;
        }
        /* Byte-level BPE: each character is one byte of the text. */
        for (size_t i = 0; i < len;) {
            size_t n;
            uint32_t cp = sl_utf8_decode_lenient((const uint8_t *)s + i, len - i, &n);
            i += n;
            uint8_t b;
            if (cp_is_byte_char(t, cp, &b)) {
                if (!buf_add(out, &b, 1)) return false;
                continue;
            }
            /* llama.cpp's llama_decode_text writes this for a character outside the alphabet. */
            char enc[4], hex[16];
            size_t el = sl_utf8_encode(cp, enc);
            if (!buf_add(out, "[UNK_BYTE_0x", 12)) return false;
            for (size_t k = 0; k < el; k++) {
                snprintf(hex, sizeof hex, "%02x", (unsigned)(uint8_t)enc[k]);
                if (!buf_add(out, hex, 2)) return false;
            }
            if (!buf_add(out, s, len) || !buf_add(out, "]", 1)) return false;
        }
        return true;
    }
    if (a & ATTR_BYTE) {
        uint8_t b = byte_token_value(s, len);
        return buf_add(out, &b, 1);
    }
    return true; /* unused or undefined tokens have no text */
}

static int build_pieces(sl_tokenizer *t, sl_error *err) {
    buf all = {0};
    t->piece_off = realloc_n(NULL, (size_t)t->n_vocab + 1, sizeof *t->piece_off);
    if (!t->piece_off) return sl_err(err, "out of memory");
    size_t longest = 0;
    for (int32_t i = 0; i < t->n_vocab; i++) {
        t->piece_off[i] = (uint32_t)all.n;
        if (!make_piece(t, i, &all) || all.n > UINT32_MAX) {
            free(all.p);
            return sl_err(err, "out of memory for token pieces");
        }
        size_t len = all.n - t->piece_off[i];
        if (len > longest) longest = len;
    }
    t->piece_off[t->n_vocab] = (uint32_t)all.n;
    t->piece = all.p ? all.p : calloc(1, 1);
    if (!t->piece) return sl_err(err, "out of memory");
    /* One push may also release 3 held bytes, and every byte may become U+FFFD. */
    t->max_piece = 3 * (longest + 4);
    return 0;
}

static void lowercase_ascii(char *s) {
    for (; *s; s++)
        if (*s >= 'A' && *s <= 'Z') *s = (char)(*s + 32);
}

static void set_attr_by_text(sl_tokenizer *t, const char *text, uint16_t bit, bool on) {
    int32_t id = map_find(t, text, strlen(text));
    if (id < 0) return;
    if (on) t->attr[id] |= bit;
    else t->attr[id] &= (uint16_t)~bit;
}

/* llama.cpp's per-model strip attributes (names that are missing or odd are
 * simply not matched). */
static void apply_strip_attributes(sl_tokenizer *t, const sl_gguf *g) {
    char name[256], arch[128];
    bool found;
    if (get_string(g, "general.name", name, sizeof name, &found, NULL)) name[0] = 0;
    if (get_string(g, "general.architecture", arch, sizeof arch, &found, NULL)) arch[0] = 0;
    lowercase_ascii(name);
    const char *pre = t->pre_name;
    if (strstr(pre, "jina-v2-de") || strstr(pre, "jina-v2-es") || strstr(pre, "jina-v2-code") ||
        strstr(arch, "nomic-bert-moe") || strstr(arch, "jina-bert-v3")) {
        set_attr_by_text(t, "<mask>", ATTR_LSTRIP, true);
    } else if (strstr(name, "phi-3") || strstr(name, "phi3")) {
        for (size_t i = 0; i < t->n_special; i++) t->attr[t->special[i]] |= ATTR_RSTRIP;
        set_attr_by_text(t, "</s>", ATTR_RSTRIP, true);
        set_attr_by_text(t, "<unk>", ATTR_RSTRIP, false);
        set_attr_by_text(t, "<s>", ATTR_RSTRIP, false);
        set_attr_by_text(t, "<|endoftext|>", ATTR_RSTRIP, false);
    } else if (strstr(name, "modern-bert")) {
        set_attr_by_text(t, "[MASK]", ATTR_LSTRIP, true);
    }
}

static void init_byte_tokens(sl_tokenizer *t) {
    static const char hex[] = "0123456789ABCDEF";
    for (int b = 0; b < 256; b++) {
        char name[7] = {'<', '0', 'x', hex[b >> 4], hex[b & 15], '>', 0};
        int32_t id = -1;
        if (t->kind == SL_TOK_SPM || !t->pflags.byte_encode) {
            id = map_find(t, name, 6);
            if (id < 0 && t->kind == SL_TOK_SPM && b != 0) {
                char one = (char)b;
                id = map_find(t, &one, 1); /* SPM falls back to the byte itself */
            }
        } else {
            char one = (char)b; /* byte-level BPE looks the raw byte up */
            id = map_find(t, &one, 1);
        }
        t->byte_token[b] = id;
    }
}

sl_tokenizer *sl_tokenizer_from_gguf(const sl_gguf *g, sl_error *err) {
    sl_tokenizer *t = calloc(1, sizeof *t);
    if (!t) {
        sl_err(err, "out of memory");
        return NULL;
    }
    init_byte_alphabet(t);
    char model[64], pre[64];
    bool has_model, has_pre;
    if (get_string(g, "tokenizer.ggml.model", model, sizeof model, &has_model, err)) goto fail;
    if (!has_model) {
        sl_err(err, "no tokenizer.ggml.model in the model");
        goto fail;
    }
    if (get_string(g, "tokenizer.ggml.pre", pre, sizeof pre, &has_pre, err)) goto fail;

    t->eot = t->eom = t->sep = t->pad = t->mask_id = -1;
    t->fim_pre = t->fim_suf = t->fim_mid = t->fim_pad = t->fim_rep = t->fim_sep = -1;
    const sl_pretok_def *def = NULL;
    if (strcmp(model, "llama") == 0) {
        t->kind = SL_TOK_SPM;
        t->bos = 1, t->eos = 2, t->unk = 0;
        t->add_space_prefix = true;
        t->add_bos = true;
        snprintf(t->pre_name, sizeof t->pre_name, "default");
    } else if (strcmp(model, "gpt2") == 0 || strcmp(model, "gemma4") == 0) {
        t->kind = SL_TOK_BPE;
        if (strcmp(model, "gemma4") == 0) {
            t->bos = t->eos = t->unk = -1;
            snprintf(pre, sizeof pre, "gemma4");
        } else {
            t->bos = 11, t->eos = 11, t->unk = -1; /* llama.cpp's defaults for BPE */
        }
        def = sl_pretok_find(pre[0] ? pre : "default");
        if (!def) {
            sl_err(err, "unknown pre-tokenizer type: '%s'", pre);
            goto fail;
        }
        snprintf(t->pre_name, sizeof t->pre_name, "%s", sl_pretok_def_name(def));
        t->pflags = sl_pretok_def_flags(def);
        t->add_bos = t->pflags.add_bos;
        if (t->pflags.no_bos) t->bos = -1;
    } else {
        sl_err(err, "unsupported tokenizer model '%s' (supported: llama, gpt2)", model);
        goto fail;
    }
    if (load_bool(g, "tokenizer.ggml.add_space_prefix", &t->add_space_prefix, err)) goto fail;
    if (load_tokens(t, g, err)) goto fail;
    if (t->kind == SL_TOK_BPE &&
        load_merges(t, g, strcmp(t->pre_name, "kimi-k2") != 0, err))
        goto fail;
    if (def && !(t->pretok = sl_pretok_new(def, err))) goto fail;

    static const struct {
        const char *key;
        size_t field;
    } id_keys[] = {
        {"tokenizer.ggml.bos_token_id", offsetof(sl_tokenizer, bos)},
        {"tokenizer.ggml.eos_token_id", offsetof(sl_tokenizer, eos)},
        {"tokenizer.ggml.eot_token_id", offsetof(sl_tokenizer, eot)},
        {"tokenizer.ggml.eom_token_id", offsetof(sl_tokenizer, eom)},
        {"tokenizer.ggml.unknown_token_id", offsetof(sl_tokenizer, unk)},
        {"tokenizer.ggml.seperator_token_id", offsetof(sl_tokenizer, sep)},
        {"tokenizer.ggml.padding_token_id", offsetof(sl_tokenizer, pad)},
        {"tokenizer.ggml.mask_token_id", offsetof(sl_tokenizer, mask_id)},
        {"tokenizer.ggml.fim_pre_token_id", offsetof(sl_tokenizer, fim_pre)},
        {"tokenizer.ggml.fim_suf_token_id", offsetof(sl_tokenizer, fim_suf)},
        {"tokenizer.ggml.fim_mid_token_id", offsetof(sl_tokenizer, fim_mid)},
        {"tokenizer.ggml.fim_pad_token_id", offsetof(sl_tokenizer, fim_pad)},
        {"tokenizer.ggml.fim_rep_token_id", offsetof(sl_tokenizer, fim_rep)},
        {"tokenizer.ggml.fim_sep_token_id", offsetof(sl_tokenizer, fim_sep)},
        {"tokenizer.ggml.prefix_token_id", offsetof(sl_tokenizer, fim_pre)},
        {"tokenizer.ggml.suffix_token_id", offsetof(sl_tokenizer, fim_suf)},
        {"tokenizer.ggml.middle_token_id", offsetof(sl_tokenizer, fim_mid)},
    };
    for (size_t i = 0; i < sizeof id_keys / sizeof id_keys[0]; i++) {
        int32_t *field = (int32_t *)((char *)t + id_keys[i].field);
        if (load_special_id(t, g, id_keys[i].key, field, err)) goto fail;
    }
    if (load_bool(g, "tokenizer.ggml.add_bos_token", &t->add_bos, err)) goto fail;
    if (load_bool(g, "tokenizer.ggml.add_eos_token", &t->add_eos, err)) goto fail;
    if (strcmp(t->pre_name, "gemma4") == 0 || strcmp(t->pre_name, "granite-embed-multi-311m") == 0)
        t->add_bos = true; /* llama.cpp forces it for Gemma 4 */

    detect_special_tokens(t);
    if (build_special_list(t, err) || build_pieces(t, err)) goto fail;
    apply_strip_attributes(t, g);
    init_byte_tokens(t);
    return t;
fail:
    sl_tokenizer_free(t);
    return NULL;
}

void sl_tokenizer_free(sl_tokenizer *t) {
    if (!t) return;
    free(t->text);
    free(t->text_off);
    free(t->score);
    free(t->attr);
    free(t->eog);
    free(t->piece);
    free(t->piece_off);
    free(t->map.slot);
    free(t->merges.key);
    free(t->merges.rank);
    free(t->special);
    sl_pretok_free(t->pretok);
    free(t);
}

/* ---- queries ---- */

sl_tok_kind sl_tokenizer_kind(const sl_tokenizer *t) { return t->kind; }
int32_t sl_tokenizer_n_vocab(const sl_tokenizer *t) { return t->n_vocab; }
int32_t sl_tokenizer_bos(const sl_tokenizer *t) { return t->bos; }
int32_t sl_tokenizer_eos(const sl_tokenizer *t) { return t->eos; }
int32_t sl_tokenizer_eot(const sl_tokenizer *t) { return t->eot; }
int32_t sl_tokenizer_unk(const sl_tokenizer *t) { return t->unk; }
int32_t sl_tokenizer_pad(const sl_tokenizer *t) { return t->pad; }
bool sl_tokenizer_add_bos(const sl_tokenizer *t) { return t->add_bos; }
bool sl_tokenizer_add_eos(const sl_tokenizer *t) { return t->add_eos; }
bool sl_tokenizer_add_space_prefix(const sl_tokenizer *t) { return t->add_space_prefix; }
const char *sl_tokenizer_pre(const sl_tokenizer *t) { return t->pre_name; }
size_t sl_tokenizer_max_piece(const sl_tokenizer *t) { return t->max_piece; }

bool sl_tokenizer_is_eog(const sl_tokenizer *t, int32_t id) {
    return id >= 0 && id < t->n_vocab && t->eog[id];
}

int sl_tokenizer_token_type(const sl_tokenizer *t, int32_t id) {
    if (id < 0 || id >= t->n_vocab) return 0;
    uint16_t a = t->attr[id];
    if (a & ATTR_CONTROL) return SL_TOKTYPE_CONTROL;
    if (a & ATTR_USER_DEFINED) return SL_TOKTYPE_USER_DEFINED;
    if (a & ATTR_UNKNOWN) return SL_TOKTYPE_UNKNOWN;
    if (a & ATTR_BYTE) return SL_TOKTYPE_BYTE;
    if (a & ATTR_UNUSED) return SL_TOKTYPE_UNUSED;
    if (a & ATTR_NORMAL) return SL_TOKTYPE_NORMAL;
    return 0;
}

const char *sl_tokenizer_token_text(const sl_tokenizer *t, int32_t id) {
    if (id < 0 || id >= t->n_vocab) return "";
    return t->text + t->text_off[id];
}

int32_t sl_tokenizer_find(const sl_tokenizer *t, const char *text, size_t len) {
    return map_find(t, text, len);
}

float sl_tokenizer_score(const sl_tokenizer *t, int32_t id) {
    return id >= 0 && id < t->n_vocab ? t->score[id] : 0.0f;
}

/* ---- tokenizing ---- */

/* A piece of the input: raw text [off, off+len) or a special token. */
typedef struct fragment {
    int32_t token; /* -1 for text */
    size_t off, len;
} fragment;

typedef struct frag_list {
    fragment *p;
    size_t n, cap;
} frag_list;

static bool frag_push(frag_list *l, int32_t token, size_t off, size_t len) {
    if (l->n == l->cap) {
        size_t c = l->cap ? l->cap * 2 : 16;
        fragment *q = realloc_n(l->p, c, sizeof *q);
        if (!q) return false;
        l->p = q;
        l->cap = c;
    }
    l->p[l->n++] = (fragment){token, off, len};
    return true;
}

static const char *find_bytes(const char *hay, size_t hn, const char *needle, size_t nn) {
    if (nn == 0 || nn > hn) return NULL;
    const char *end = hay + hn - nn + 1;
    for (const char *p = hay; p < end;) {
        p = memchr(p, needle[0], (size_t)(end - p));
        if (!p) return NULL;
        if (memcmp(p, needle, nn) == 0) return p;
        p++;
    }
    return NULL;
}

static bool c_isspace(char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

/* llama.cpp's tokenizer_st_partition: for each special token, longest first,
 * every text fragment is cut at each occurrence of it. */
static int partition(const sl_tokenizer *t, const char *text, size_t len, bool parse_special, frag_list *out,
                     sl_error *err) {
    frag_list cur = {0}, next = {0};
    int rc = -1;
    if (len && !frag_push(&cur, -1, 0, len)) goto oom;
    for (size_t s = 0; s < t->n_special && cur.n; s++) {
        int32_t id = t->special[s];
        uint16_t a = t->attr[id];
        if (!parse_special && (a & ATTR_SPECIAL)) continue;
        size_t tl;
        const char *tt = tok_text(t, id, &tl);
        if (!find_bytes(text, len, tt, tl)) continue; /* not anywhere in the text */
        next.n = 0;
        for (size_t f = 0; f < cur.n; f++) {
            fragment fr = cur.p[f];
            if (fr.token >= 0) {
                if (!frag_push(&next, fr.token, 0, 0)) goto oom;
                continue;
            }
            size_t off = fr.off, rem = fr.len;
            for (;;) {
                const char *m = find_bytes(text + off, rem, tt, tl);
                if (!m) {
                    if (rem && !frag_push(&next, -1, off, rem)) goto oom;
                    break;
                }
                size_t mpos = (size_t)(m - text);
                size_t left = mpos - off;
                if (a & ATTR_LSTRIP)
                    while (left > 0 && c_isspace(text[off + left - 1])) left--;
                if (left && !frag_push(&next, -1, off, left)) goto oom;
                if (!frag_push(&next, id, 0, 0)) goto oom;
                size_t r_off = mpos + tl, r_len = off + rem - r_off;
                if (a & ATTR_RSTRIP)
                    while (r_len > 0 && c_isspace(text[r_off])) r_off++, r_len--;
                off = r_off;
                rem = r_len;
                if (!rem) break;
            }
        }
        frag_list swap = cur;
        cur = next;
        next = swap;
    }
    *out = cur;
    cur.p = NULL;
    rc = 0;
    goto done;
oom:
    sl_err(err, "out of memory");
done:
    free(cur.p);
    free(next.p);
    return rc;
}

/* A symbol of the merge algorithms: bytes [off, off+n) of the word, linked. */
typedef struct symbol {
    size_t off, n;
    int32_t prev, next;
    int32_t id; /* BPE: the token of this text, or -1 */
} symbol;

typedef struct bigram {
    float score;  /* SPM */
    int32_t rank; /* BPE */
    int32_t left, right;
    int32_t left_id, right_id; /* BPE: the symbols' tokens when queued */
    size_t size;               /* SPM: bytes of the pair when queued */
} bigram;

/* Work memory of one sl_tokenize call. */
typedef struct work {
    symbol *sym;
    size_t n_sym, cap_sym;
    bigram *heap;
    size_t n_heap, cap_heap;
    buf word;
    uint32_t *cps;
    size_t cap_cps;
    sl_re_pieces pieces, tmp;
    sl_regex_scratch scratch;
    ids out;
} work;

static void work_free(work *w) {
    free(w->sym);
    free(w->heap);
    free(w->word.p);
    free(w->cps);
    sl_re_pieces_free(&w->pieces);
    sl_re_pieces_free(&w->tmp);
    sl_regex_scratch_free(&w->scratch);
}

static bool sym_push(work *w, symbol s) {
    if (w->n_sym == w->cap_sym) {
        size_t c = w->cap_sym ? w->cap_sym * 2 : 64;
        symbol *q = realloc_n(w->sym, c, sizeof *q);
        if (!q) return false;
        w->sym = q;
        w->cap_sym = c;
    }
    w->sym[w->n_sym++] = s;
    return true;
}

/* Heap order: SPM pops the highest score, BPE the lowest rank; ties go to the leftmost pair. */
static bool before(bool spm, const bigram *a, const bigram *b) {
    if (spm) {
        if (a->score != b->score) return a->score > b->score;
    } else if (a->rank != b->rank) {
        return a->rank < b->rank;
    }
    return a->left < b->left;
}

static bool heap_push(work *w, bool spm, bigram b) {
    if (w->n_heap == w->cap_heap) {
        size_t c = w->cap_heap ? w->cap_heap * 2 : 64;
        bigram *q = realloc_n(w->heap, c, sizeof *q);
        if (!q) return false;
        w->heap = q;
        w->cap_heap = c;
    }
    size_t i = w->n_heap++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!before(spm, &b, &w->heap[parent])) break;
        w->heap[i] = w->heap[parent];
        i = parent;
    }
    w->heap[i] = b;
    return true;
}

static bigram heap_pop(work *w, bool spm) {
    bigram top = w->heap[0];
    bigram last = w->heap[--w->n_heap];
    size_t i = 0, n = w->n_heap;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && before(spm, &w->heap[c + 1], &w->heap[c])) c++;
        if (!before(spm, &w->heap[c], &last)) break;
        w->heap[i] = w->heap[c];
        i = c;
    }
    if (n) w->heap[i] = last;
    return top;
}

/* Splits word bytes into one symbol per character (by lead byte). */
static bool split_chars(work *w, const char *s, size_t n) {
    w->n_sym = 0;
    for (size_t off = 0; off < n;) {
        size_t len = sl_utf8_lead_len((uint8_t)s[off]);
        if (len > n - off) len = n - off;
        symbol sym = {off, len, (int32_t)w->n_sym - 1, off + len == n ? -1 : (int32_t)w->n_sym + 1, -1};
        if (!sym_push(w, sym)) return false;
        off += len;
    }
    return true;
}

static bool spm_add_bigram(const sl_tokenizer *t, work *w, const char *s, int32_t left, int32_t right) {
    if (left < 0 || right < 0) return true;
    const symbol *l = &w->sym[left], *r = &w->sym[right];
    int32_t id = map_find(t, s + l->off, l->n + r->n);
    if (id < 0) return true;
    bigram b = {t->score[id], 0, left, right, 0, 0, l->n + r->n};
    return heap_push(w, true, b);
}

/* llama.cpp's llm_tokenizer_spm: merge the best-scoring adjacent pair that is
 * a token until none is; characters left over become byte tokens. */
static int spm_tokenize(const sl_tokenizer *t, work *w, const char *s, size_t n, sl_error *err) {
    if (!split_chars(w, s, n)) goto oom;
    w->n_heap = 0;
    for (size_t i = 1; i < w->n_sym; i++)
        if (!spm_add_bigram(t, w, s, (int32_t)i - 1, (int32_t)i)) goto oom;
    while (w->n_heap) {
        bigram b = heap_pop(w, true);
        symbol *l = &w->sym[b.left], *r = &w->sym[b.right];
        if (l->n == 0 || r->n == 0 || l->n + r->n != b.size) continue;
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0) w->sym[r->next].prev = b.left;
        if (!spm_add_bigram(t, w, s, l->prev, b.left) || !spm_add_bigram(t, w, s, b.left, l->next)) goto oom;
    }
    for (int32_t i = w->n_sym ? 0 : -1; i != -1; i = w->sym[i].next) {
        const symbol *sym = &w->sym[i];
        int32_t id = map_find(t, s + sym->off, sym->n);
        if (id >= 0) {
            if (!ids_push(&w->out, id)) goto oom;
            continue;
        }
        for (size_t k = 0; k < sym->n; k++) {
            int32_t bid = t->byte_token[(uint8_t)s[sym->off + k]];
            if (bid < 0) bid = t->unk;
            if (bid < 0) return sl_err(err, "no token for byte 0x%02X and no unknown token", (uint8_t)s[sym->off + k]);
            if (!ids_push(&w->out, bid)) goto oom;
        }
    }
    return 0;
oom:
    return sl_err(err, "out of memory");
}

static bool bpe_add_bigram(const sl_tokenizer *t, work *w, int32_t left, int32_t right) {
    if (left < 0 || right < 0) return true;
    int32_t lid = w->sym[left].id, rid = w->sym[right].id;
    int32_t rank = merge_rank(t, lid, rid);
    if (rank < 0) return true;
    bigram b = {0.0f, rank, left, right, lid, rid, 0};
    return heap_push(w, false, b);
}

/* llama.cpp's llm_tokenizer_bpe_session for one word: apply the lowest-ranked
 * merge until none applies; symbols that are not tokens become byte tokens. */
static int bpe_word(const sl_tokenizer *t, work *w, const char *s, size_t n, sl_error *err) {
    if (n == 0) return 0;
    int32_t whole = -1;
    if (t->pflags.ignore_merges) whole = map_find(t, s, n);
    if (whole < 0 && t->pflags.newline_words && strspn(s, "\n") == n) whole = map_find(t, s, n);
    if (whole >= 0) return ids_push(&w->out, whole) ? 0 : sl_err(err, "out of memory");

    if (!split_chars(w, s, n)) goto oom;
    for (size_t i = 0; i < w->n_sym; i++) w->sym[i].id = map_find(t, s + w->sym[i].off, w->sym[i].n);
    w->n_heap = 0;
    for (size_t i = 1; i < w->n_sym; i++)
        if (!bpe_add_bigram(t, w, (int32_t)i - 1, (int32_t)i)) goto oom;
    while (w->n_heap) {
        bigram b = heap_pop(w, false);
        symbol *l = &w->sym[b.left], *r = &w->sym[b.right];
        if (l->n == 0 || r->n == 0 || l->id != b.left_id || r->id != b.right_id) continue; /* outdated */
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0) w->sym[r->next].prev = b.left;
        l->id = map_find(t, s + l->off, l->n);
        if (!bpe_add_bigram(t, w, l->prev, b.left) || !bpe_add_bigram(t, w, b.left, l->next)) goto oom;
    }
    for (size_t i = 0; i < w->n_sym; i++) {
        const symbol *sym = &w->sym[i];
        if (sym->n == 0) continue;
        if (sym->id >= 0) {
            if (!ids_push(&w->out, sym->id)) goto oom;
            continue;
        }
        for (size_t k = 0; k < sym->n; k++) {
            int32_t bid = t->byte_token[(uint8_t)s[sym->off + k]];
            if (bid >= 0 && !ids_push(&w->out, bid)) goto oom; /* llama.cpp drops bytes without a token */
        }
    }
    return 0;
oom:
    return sl_err(err, "out of memory");
}

static int bpe_tokenize(const sl_tokenizer *t, work *w, const char *text, size_t len, sl_error *err) {
    /* SentencePiece-style BPE (Gemma 4) sees spaces as U+2581. */
    buf escaped = {0};
    if (t->pflags.escape_spaces) {
        for (size_t i = 0; i < len; i++) {
            bool ok = text[i] == ' ' ? buf_add(&escaped, SPACE_MARK, SPACE_MARK_LEN) : buf_add(&escaped, text + i, 1);
            if (!ok) {
                free(escaped.p);
                return sl_err(err, "out of memory");
            }
        }
        text = escaped.p ? escaped.p : "";
        len = escaped.n;
    }
    /* Code points as llama.cpp decodes them (an invalid byte is U+FFFD). */
    if (len + 1 > w->cap_cps) {
        uint32_t *q = len < SIZE_MAX ? realloc_n(w->cps, len + 1, sizeof *q) : NULL;
        if (!q) {
            free(escaped.p);
            return sl_err(err, "out of memory");
        }
        w->cps = q;
        w->cap_cps = len + 1;
    }
    size_t n = 0;
    for (size_t i = 0; i < len;) {
        size_t k;
        w->cps[n++] = sl_utf8_decode_lenient((const uint8_t *)text + i, len - i, &k);
        i += k;
    }
    free(escaped.p);
    if (sl_pretok_split(t->pretok, &w->scratch, w->cps, n, &w->pieces, &w->tmp, err)) return -1;
    size_t pos = 0;
    for (size_t p = 0; p < w->pieces.n; p++) {
        w->word.n = 0;
        for (size_t k = pos; k < pos + w->pieces.len[p]; k++) {
            char enc[4];
            size_t el = sl_utf8_encode(w->cps[k], enc);
            if (t->pflags.byte_encode) {
                for (size_t b = 0; b < el; b++) {
                    char enc2[4];
                    size_t el2 = sl_utf8_encode(t->byte_cp[(uint8_t)enc[b]], enc2);
                    if (!buf_add(&w->word, enc2, el2)) return sl_err(err, "out of memory");
                }
            } else if (!buf_add(&w->word, enc, el)) {
                return sl_err(err, "out of memory");
            }
        }
        pos += w->pieces.len[p];
        if (bpe_word(t, w, w->word.p, w->word.n, err)) return -1;
    }
    return 0;
}

int sl_tokenize(const sl_tokenizer *t, const char *text, size_t len, bool add_special, bool parse_special,
                int32_t **out, size_t *n_out, sl_error *err) {
    *out = NULL;
    *n_out = 0;
    if (!text && len) return sl_err(err, "tokenize: no text");
    if (len > (size_t)INT32_MAX / 8) return sl_err(err, "tokenize: text too long (%zu bytes)", len);
    frag_list frags = {0};
    work w = {0};
    buf spm_text = {0};
    int rc = -1;
    if (partition(t, text, len, parse_special, &frags, err)) goto done;
    if (add_special && t->add_bos && t->bos >= 0 && !ids_push(&w.out, t->bos)) goto oom;
    bool prev_special = true; /* SPM: text after a special token (or at the start) gets a space */
    for (size_t f = 0; f < frags.n; f++) {
        const fragment *fr = &frags.p[f];
        if (fr->token >= 0) {
            if (!ids_push(&w.out, fr->token)) goto oom;
            prev_special = true;
            continue;
        }
        if (t->kind == SL_TOK_SPM) {
            spm_text.n = 0;
            if (t->add_space_prefix && prev_special && !buf_add(&spm_text, SPACE_MARK, SPACE_MARK_LEN)) goto oom;
            for (size_t i = fr->off; i < fr->off + fr->len; i++) {
                bool ok = text[i] == ' ' ? buf_add(&spm_text, SPACE_MARK, SPACE_MARK_LEN)
                                         : buf_add(&spm_text, text + i, 1);
                if (!ok) goto oom;
            }
            if (spm_tokenize(t, &w, spm_text.p, spm_text.n, err)) goto done;
        } else {
            if (bpe_tokenize(t, &w, text + fr->off, fr->len, err)) goto done;
        }
        prev_special = false;
    }
    if (add_special && t->add_eos && t->eos >= 0 && !ids_push(&w.out, t->eos)) goto oom;
    *n_out = w.out.n;
    *out = w.out.p ? w.out.p : realloc_n(NULL, 1, sizeof(int32_t));
    if (!*out) goto oom;
    w.out.p = NULL;
    rc = 0;
    goto done;
oom:
    sl_err(err, "out of memory");
done:
    free(frags.p);
    free(spm_text.p);
    free(w.out.p);
    work_free(&w);
    return rc;
}

/* ---- detokenizing ---- */

size_t sl_token_to_piece(const sl_tokenizer *t, int32_t id, bool render_special, const char **piece) {
    if (id < 0 || id >= t->n_vocab || (!render_special && (t->attr[id] & ATTR_SPECIAL))) {
        *piece = "";
        return 0;
    }
    *piece = t->piece + t->piece_off[id];
    return t->piece_off[id + 1] - t->piece_off[id];
}

void sl_detok_init(sl_detok *d, const sl_tokenizer *t, bool render_special) {
    memset(d, 0, sizeof *d);
    d->tok = t;
    d->render_special = render_special;
    d->at_start = true;
}

/* Appends bytes to out (keeping room for the NUL) if they fit. */
static void put(char *out, size_t cap, size_t *n, const void *s, size_t len) {
    if (cap == 0 || *n + len > cap - 1) return; /* the caller's buffer is too small: drop */
    memcpy(out + *n, s, len);
    *n += len;
}

size_t sl_detok_push(sl_detok *d, int32_t id, char *out, size_t cap) {
    const char *piece;
    size_t plen = sl_token_to_piece(d->tok, id, d->render_special, &piece);
    size_t n = 0;
    if (plen && d->at_start) {
        d->at_start = false;
        /* SentencePiece put a space before the first word: take it back. */
        if (d->tok->add_space_prefix && piece[0] == ' ') piece++, plen--;
    }
    /* Bytes to look at: the held ones, then the piece. */
    size_t total = (size_t)d->n_held + plen, i = 0;
    while (i < total) {
        uint8_t win[4];
        size_t wn = 0;
        for (; wn < 4 && i + wn < total; wn++) {
            size_t k = i + wn;
            win[wn] = k < (size_t)d->n_held ? d->held[k] : (uint8_t)piece[k - (size_t)d->n_held];
        }
        int r = sl_utf8_check(win, wn);
        if (r > 0) {
            put(out, cap, &n, win, (size_t)r);
            i += (size_t)r;
        } else if (r == 0) {
            break; /* an incomplete character at the end: hold it */
        } else {
            put(out, cap, &n, "\xEF\xBF\xBD", 3);
            i += (size_t)-r;
        }
    }
    uint8_t rest[8];
    size_t nr = total - i;
    for (size_t k = 0; k < nr; k++) {
        size_t src = i + k;
        rest[k] = src < (size_t)d->n_held ? d->held[src] : (uint8_t)piece[src - (size_t)d->n_held];
    }
    memcpy(d->held, rest, nr);
    d->n_held = (int)nr;
    if (cap) out[n] = 0;
    return n;
}

size_t sl_detok_flush(sl_detok *d, char *out, size_t cap) {
    size_t n = 0;
    if (d->n_held) put(out, cap, &n, "\xEF\xBF\xBD", 3);
    d->n_held = 0;
    if (cap) out[n] = 0;
    return n;
}

char *sl_detokenize(const sl_tokenizer *t, const int32_t *ids_in, size_t n, bool render_special) {
    sl_detok d;
    sl_detok_init(&d, t, render_special);
    size_t cap = t->max_piece + 16;
    char *tmp = malloc(cap);
    buf all = {0};
    if (!tmp || !buf_add(&all, "", 0)) goto fail;
    for (size_t i = 0; i < n; i++) {
        size_t k = sl_detok_push(&d, ids_in[i], tmp, cap);
        if (!buf_add(&all, tmp, k)) goto fail;
    }
    size_t k = sl_detok_flush(&d, tmp, cap);
    if (!buf_add(&all, tmp, k)) goto fail;
    free(tmp);
    return all.p;
fail:
    free(tmp);
    free(all.p);
    return NULL;
}
