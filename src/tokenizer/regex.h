/* regex.h - a small backtracking regular expression engine over code points,
 * for the pre-tokenizer patterns of BPE tokenizers.
 *
 * Semantics are ECMAScript's (as in std::regex, which llama.cpp uses):
 * leftmost-first alternation, greedy quantifiers that backtrack, an iteration
 * of a quantified group that matches nothing ends the loop. Supported:
 *   a|b  (...)  (?:...)  (?i:...)  (?=...)  (?!...)  (?>...)
 *   *  +  ?  {n}  {n,}  {n,m}, each greedy, lazy (suffix ?) or possessive (suffix +)
 *   [...]  [^...]  with ranges and class escapes inside;  . (not \n, \r)  ^  $  \b  \B
 *   \s \S \d \D \w \W (\d and \w are ASCII, as in ECMAScript)
 *   \p{..} \P{..}: L Lu Ll Lt Lm Lo M Mn Mc Me N Nd Nl No P Pc Pd Ps Pe Pi Pf Po
 *                  S Sm Sc Sk So Z Zs Zl Zp C Cc Cf Cs Co Cn, and Han (the CJK
 *                  ideograph ranges llama.cpp's unicode_cpt_is_han lists)
 *   \t \n \r \f \v \0 \xHH \x{H..} \uHHHH \u{H..} and \ before any other
 *   non-alphanumeric character.
 * No captures (groups only group) and no back-references.
 *
 * SL_RE_LLAMACPP makes classes behave as they do under llama.cpp's
 * unicode_regex_split, which runs std::regex on text where non-ASCII
 * characters were replaced by one byte per category:
 *   - \p{Lu} \p{Ll} \p{Lt} \p{Lm} \p{Lo} all mean \p{L};
 *   - '~' is in no category (llama.cpp's ASCII symbol list omits it);
 *   - a non-ASCII white-space character matches everything as U+000B does. */
#ifndef SL_REGEX_H
#define SL_REGEX_H

#include "util/common.h"

typedef struct sl_regex sl_regex;

enum {
    SL_RE_LLAMACPP = 1u << 0, /* compile flag, see above */
};

sl_regex *sl_regex_compile(const char *pattern, unsigned flags, sl_error *err);
void sl_regex_free(sl_regex *re);

/* Working memory for matching; one per thread. Zero-initialize, then
 * sl_regex_scratch_free when done. */
typedef struct sl_regex_scratch {
    void *stack;
    size_t top, cap;
    size_t *regs;
    size_t n_regs;
} sl_regex_scratch;
void sl_regex_scratch_free(sl_regex_scratch *s);

/* A list of piece lengths (in code points) that together cover a text. */
typedef struct sl_re_pieces {
    size_t *len;
    size_t n, cap;
} sl_re_pieces;
int sl_re_pieces_push(sl_re_pieces *p, size_t len);
void sl_re_pieces_free(sl_re_pieces *p);

/* Leftmost match in text[seg_begin..seg_end) starting at or after `from`.
 * Returns 1 and sets *mstart and *mend, 0 when there is none, -1 when out of
 * memory (err set). */
int sl_regex_search(const sl_regex *re, sl_regex_scratch *s, const uint32_t *text, size_t seg_begin,
                    size_t seg_end, size_t from, size_t *mstart, size_t *mend, sl_error *err);

/* Splits each piece of `in` (lengths over text) the way llama.cpp's
 * unicode_regex_split applies one pattern: every match becomes a piece and so
 * does the text between matches (std::regex_iterator's rules for empty
 * matches; ^ and $ are the piece's ends). Empty pieces are dropped. Appends
 * to *out. */
int sl_regex_split(const sl_regex *re, sl_regex_scratch *s, const uint32_t *text, const sl_re_pieces *in,
                   sl_re_pieces *out, sl_error *err);

#endif
