/* pretok.h - BPE pre-tokenizers: how tokenizer.ggml.pre splits text into
 * words before merging, and the per-tokenizer flags that come with the name,
 * following llama.cpp's table (src/llama-vocab.cpp). */
#ifndef SL_PRETOK_H
#define SL_PRETOK_H

#include "tokenizer/regex.h"

typedef struct sl_pretok_def sl_pretok_def;

/* What a pre-tokenizer name implies besides its patterns. */
typedef struct sl_pretok_flags {
    bool byte_encode;   /* words are mapped to GPT-2's byte-to-unicode alphabet */
    bool escape_spaces; /* ' ' becomes U+2581 before merging (SentencePiece-style BPE) */
    bool ignore_merges; /* a word that is a whole token is taken as is */
    bool add_bos;       /* default of tokenizer.ggml.add_bos_token */
    bool no_bos;        /* the model has no BOS token unless the metadata names one */
    bool newline_words; /* Gemma 4: a run of '\n' that is a token is taken as is */
} sl_pretok_flags;

/* Looks a tokenizer.ggml.pre name up; NULL when unknown. */
const sl_pretok_def *sl_pretok_find(const char *name);
/* The canonical name and flags of a definition. */
const char *sl_pretok_def_name(const sl_pretok_def *def);
sl_pretok_flags sl_pretok_def_flags(const sl_pretok_def *def);

/* A compiled pre-tokenizer. */
typedef struct sl_pretok sl_pretok;
sl_pretok *sl_pretok_new(const sl_pretok_def *def, sl_error *err);
void sl_pretok_free(sl_pretok *p);

/* Splits cps[0..n) into words; *out receives their lengths in code points
 * (out is reset first; tmp is working space). */
int sl_pretok_split(const sl_pretok *p, sl_regex_scratch *s, const uint32_t *cps, size_t n, sl_re_pieces *out,
                    sl_re_pieces *tmp, sl_error *err);

/* For tests: the patterns of a definition (NULL-terminated list). */
const char *const *sl_pretok_def_patterns(const sl_pretok_def *def);

#endif
