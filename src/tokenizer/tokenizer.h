/* tokenizer.h - text <-> token ids, from a GGUF's tokenizer.* metadata.
 *
 * Two models, as in llama.cpp (src/llama-vocab.cpp), whose results they match:
 *  - "llama": SentencePiece-style (scores, U+2581 for spaces, byte fallback <0xXX>);
 *  - "gpt2":  byte-level BPE (merges), with the pre-tokenizer regexes chosen by
 *             tokenizer.ggml.pre (llama-bpe, gpt-2, qwen2, smollm, deepseek-llm,
 *             deepseek-coder, falcon, starcoder, refact, mpt, command-r, ...,
 *             every name llama.cpp knows; see pretok.c). "gemma4" is BPE over
 *             raw UTF-8 with U+2581 for spaces.
 * Special (control / user-defined) tokens are matched in the text before the
 * model runs, following llama.cpp's rules: with parse_special off, control
 * tokens are tokenized as plain text; user-defined tokens are always matched.
 * Detokenized text is not "cleaned" (llama.cpp's clean_spaces is not applied):
 * it is the concatenation of the pieces. */
#ifndef SL_TOKENIZER_H
#define SL_TOKENIZER_H

#include "gguf/gguf.h"

typedef struct sl_tokenizer sl_tokenizer;

typedef enum sl_tok_kind {
    SL_TOK_SPM = 1, /* tokenizer.ggml.model = "llama" */
    SL_TOK_BPE = 2, /* tokenizer.ggml.model = "gpt2" (or "gemma4") */
} sl_tok_kind;

/* Token attributes (tokenizer.ggml.token_type): */
enum {
    SL_TOKTYPE_NORMAL = 1,
    SL_TOKTYPE_UNKNOWN = 2,
    SL_TOKTYPE_CONTROL = 3,
    SL_TOKTYPE_USER_DEFINED = 4,
    SL_TOKTYPE_UNUSED = 5,
    SL_TOKTYPE_BYTE = 6,
};

/* Builds the tokenizer from metadata. Everything needed is copied, so the
 * sl_gguf may be closed afterwards. */
sl_tokenizer *sl_tokenizer_from_gguf(const sl_gguf *g, sl_error *err);
void sl_tokenizer_free(sl_tokenizer *t);

sl_tok_kind sl_tokenizer_kind(const sl_tokenizer *t);
int32_t sl_tokenizer_n_vocab(const sl_tokenizer *t);
int32_t sl_tokenizer_bos(const sl_tokenizer *t); /* -1 if none */
int32_t sl_tokenizer_eos(const sl_tokenizer *t); /* -1 if none */
int32_t sl_tokenizer_eot(const sl_tokenizer *t); /* -1 if none */
int32_t sl_tokenizer_unk(const sl_tokenizer *t); /* -1 if none */
int32_t sl_tokenizer_pad(const sl_tokenizer *t); /* -1 if none */
bool sl_tokenizer_add_bos(const sl_tokenizer *t);
bool sl_tokenizer_add_eos(const sl_tokenizer *t);
/* SPM: a space is put before the text (and taken back when detokenizing). */
bool sl_tokenizer_add_space_prefix(const sl_tokenizer *t);
/* End of generation: EOS, EOT, <|im_end|>, <end_of_turn>, ... */
bool sl_tokenizer_is_eog(const sl_tokenizer *t, int32_t id);
/* SL_TOKTYPE_* as the tokenizer treats the token (llama.cpp turns some
 * tokens into control tokens, e.g. end-of-turn markers); 0 if undefined. */
int sl_tokenizer_token_type(const sl_tokenizer *t, int32_t id);
float sl_tokenizer_score(const sl_tokenizer *t, int32_t id);
/* The vocabulary entry as stored in the GGUF (e.g. "\u2581the", "<0x0A>", "Ġthe"). */
const char *sl_tokenizer_token_text(const sl_tokenizer *t, int32_t id);
/* Looks a vocabulary entry up by its exact text; -1 if absent. */
int32_t sl_tokenizer_find(const sl_tokenizer *t, const char *text, size_t len);
/* The pre-tokenizer name in use ("llama-bpe", "default", ...). */
const char *sl_tokenizer_pre(const sl_tokenizer *t);

/* Tokenizes text[0..len) (any bytes; invalid UTF-8 is handled as llama.cpp
 * does). add_special: prepend BOS / append EOS as the model's add_bos/add_eos
 * flags say. parse_special: match control tokens written in the text. On
 * success *out is a malloc'd array of *n_out ids. Thread-safe. */
int sl_tokenize(const sl_tokenizer *t, const char *text, size_t len, bool add_special,
                bool parse_special, int32_t **out, size_t *n_out, sl_error *err);

/* Bytes a token stands for in output text (▁ -> space, <0x0A> -> "\n", byte-level
 * BPE decoded), as llama.cpp's token_to_piece. Control and unknown tokens give
 * "" unless render_special; so do ids out of range. May be an incomplete UTF-8
 * sequence. Returns the number of bytes (piece is not NUL-terminated). */
size_t sl_token_to_piece(const sl_tokenizer *t, int32_t id, bool render_special, const char **piece);

/* Streaming detokenizer: turns a sequence of ids into text that is always
 * valid UTF-8, holding back bytes of a character that spans tokens (invalid
 * bytes become U+FFFD). At the start of a text it also drops the leading space
 * SentencePiece adds to the first word, as llama.cpp's detokenizer does; when
 * the ids continue text already shown (generated tokens after a prompt), set
 * at_start = false after sl_detok_init so that a leading space is kept. */
typedef struct sl_detok {
    const sl_tokenizer *tok;
    bool render_special;
    bool at_start;      /* no text produced yet: drop the SPM space prefix */
    uint8_t held[8];    /* bytes of an incomplete character */
    int n_held;
} sl_detok;

void sl_detok_init(sl_detok *d, const sl_tokenizer *t, bool render_special);
/* Writes the text that `id` completes to out (NUL-terminated) and returns its
 * length. cap must be at least sl_tokenizer_max_piece(t) + 16 (text that does
 * not fit a smaller buffer is dropped). */
size_t sl_detok_push(sl_detok *d, int32_t id, char *out, size_t cap);
/* Emits what is held at the end (invalid bytes become U+FFFD). */
size_t sl_detok_flush(sl_detok *d, char *out, size_t cap);
/* Bytes one sl_detok_push can produce at most (longest piece, held bytes,
 * invalid bytes expanded to U+FFFD), for sizing buffers. */
size_t sl_tokenizer_max_piece(const sl_tokenizer *t);

/* Decodes a whole id sequence into a malloc'd NUL-terminated string, as the
 * streaming detokenizer would (NULL when out of memory). */
char *sl_detokenize(const sl_tokenizer *t, const int32_t *ids, size_t n, bool render_special);

#endif
