/* pretok.c - the table of BPE pre-tokenizers (see pretok.h).
 *
 * The patterns are llama.cpp's (src/llama-vocab.cpp, llm_tokenizer_bpe), in
 * the order it applies them: the first splits the text, each next one splits
 * every piece further. They run on our regex engine with SL_RE_LLAMACPP, which
 * reproduces how llama.cpp feeds them to std::regex. llama.cpp replaces a few
 * patterns by hand-written code; where that code is not what the pattern says,
 * we do what the code does:
 *   - AFMoE's "\p{AFMoE_digits}" and tiny_aya's digit pattern: a run of
 *     digits is cut into a leading group of (length mod 3) and then groups of
 *     three, and the text before the run goes with the first group;
 *   - Kimi-K2's "\p{Han}+" stands for a whole pattern, written out here.
 * SuperBPE's digit pattern runs as equivalent code, for speed (see below). */
#include "tokenizer/pretok.h"

#include <stdlib.h>
#include <string.h>

#include "tokenizer/unicode.h"

/* Mark hand-written splitters in a pattern list (compared by address). */
static const char afmoe_digits[] = "(AFMoE digits)";
#define AFMOE_DIGITS afmoe_digits
/* SuperBPE's (?=(\d{3})+(?!\d)) matches only empty strings, before every
 * ASCII digit that begins a run of 3k digits up to a non-digit. Run by the
 * engine it takes quadratic time on long numbers; this is the same in linear time. */
static const char superbpe_digits[] = "(?=(\\d{3})+(?!\\d))";

static const char *const pat_default[] = {
    "[\\p{P}\\$\\+<=>\\^~\\|]+",
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)",
    "\\p{N}+",
    "[0-9][0-9][0-9]",
    NULL,
};
static const char *const pat_llama3[] = {
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
    NULL,
};
static const char *const pat_jais2[] = {
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s{512}(?!\\S)|\\s{256}(?!\\S)|\\s{128}(?!\\S)|\\s{64}(?!\\S)|\\s{32}(?!\\S)|\\s{16}(?!\\S)|\\s{8}(?!\\S)|\\s{4}(?!\\S)|\\s{1,2}(?!\\S)|\\s{1}",
    NULL,
};
static const char *const pat_deepseek_llm[] = {
    "[\r\n]",
    "\\s?[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-Ჿᴀ-ᴫᵫ-ᵷᵹ-ᶚḀ-ἕἘ-Ἕἠ-ὅὈ-Ὅὐ-ὗὙὛὝὟ-ώᾀ-ᾴᾶ-ᾼιῂ-ῄῆ-ῌῐ-ΐῖ-Ίῠ-Ῥῲ-ῴῶ-ῼℂℇℊ-ℓℕℙ-ℝℤΩℨK-ℭℯ-ℴℹℼ-ℿⅅ-ⅉⅎↃↄⰀ-ⱻⱾ-ⳤⳫ-ⳮⳲⳳꙀ-ꙭꚀ-ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-ﬗＡ-Ｚａ-ｚ𐐀-𐑏𐒰-𐓓𐓘-𐓻𐲀-𐲲𐳀-𐳲𑢠-𑣟𞤀-𞥃]+",
    "\\s?[!-/:-~！-／：-～‘-‟　-。]+",
    "\\s+$",
    "[一-龥ࠀ-一가-퟿]+",
    "\\p{N}+",
    NULL,
};
static const char *const pat_deepseek3_llm[] = {
    "\\p{N}{1,3}",
    "[一-龥぀-ゟ゠-ヿ]+",
    "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+",
    NULL,
};
static const char *const pat_youtu[] = {
    "[가-힣ㄱ-ㆎ]+|[！…“”‘’—：；，、-〿︰-﹏]+|[ㄅ-ㄯ]+|[一-龥぀-ゟ゠-ヿ]+",
    "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
    NULL,
};
static const char *const pat_deepseek_coder[] = {
    "[\r\n]",
    "\\s?\\p{L}+",
    "\\s?\\p{P}+",
    "[一-龥ࠀ-一가-퟿]+",
    "\\p{N}",
    NULL,
};
static const char *const pat_falcon[] = {
    "[\\p{P}\\$\\+<=>\\^~\\|`]+",
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)",
    "[0-9][0-9][0-9]",
    NULL,
};
static const char *const pat_starcoder[] = {
    "\\p{N}",
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)",
    NULL,
};
static const char *const pat_gpt2[] = {
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)",
    NULL,
};
static const char *const pat_qwen2[] = {
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
    NULL,
};
static const char *const pat_qwen35[] = {
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?[\\p{L}\\p{M}]+|\\p{N}| ?[^\\s\\p{L}\\p{M}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
    NULL,
};
static const char *const pat_poro[] = {
    " ?[^(\\s|.,!?…。，、।۔،)]+",
    NULL,
};
static const char *const pat_viking[] = {
    " ?[^(\\s|.,!?…。，、।۔،)]+",
    "\\p{N}",
    NULL,
};
static const char *const pat_tekken[] = {
    "[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))*((?=[\\p{L}])([^A-Z]))+|[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))+((?=[\\p{L}])([^A-Z]))*|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
    NULL,
};
static const char *const pat_chameleon[] = {
    "<sentinel:[0-9]+>",
    "(IMGIMG)((A|B|C|D|E|F|G|H|I){1,4})Z",
    "([\\t\\n]|    |  )",
    "\\p{N}",
    "[\\p{P}!-/:-@\\[-`{-~]",
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)",
    NULL,
};
static const char *const pat_gpt4o[] = {
    "[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))*((?=[\\p{L}])([^A-Z]))+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))+((?=[\\p{L}])([^A-Z]))*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
    NULL,
};
static const char *const pat_granite_emb_multi[] = {
    "[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}\\p{M}])([^a-z]))*((?=[\\p{L}\\p{M}])([^A-Z]))+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}\\p{M}])([^a-z]))+((?=[\\p{L}\\p{M}])([^A-Z]))*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
    NULL,
};
static const char *const pat_tiny_aya[] = {
    AFMOE_DIGITS,
    "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
    NULL,
};
static const char *const pat_superbpe[] = {
    "\\p{N}+",
    superbpe_digits,
    NULL,
};
static const char *const pat_bailingmoe[] = {
    "'(?:[sSdDmMtT]|[lL][lL]|[vV][eE]|[rR][eE])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]|\\s+(?!\\S)|\\s+",
    NULL,
};
static const char *const pat_seed_coder[] = {
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1}| ?[^\\s\\p{L}\\p{N}\\r\\n]+|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
    NULL,
};
static const char *const pat_afmoe[] = {
    AFMOE_DIGITS,
    "[一-鿿㐀-䶿豈-﫿぀-ゟ゠-ヿ･-ﾟ⼀-⿟เ-๿຀-໿ក-៿က-႟ꩠ-ꩿꧠ-꧿가-힯ᄀ-ᇿ]+",
    "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\\r\\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
    NULL,
};
static const char *const pat_laguna[] = {
    "[^\\n]+|[\\n]+",
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
    NULL,
};
static const char *const pat_exaone_moe[] = {
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?(?:\\p{L}\\p{M}*(?: \\p{L}\\p{M}*)*)+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]?|\\s*[\\r\\n]|\\s+(?!\\S)|\\s+",
    NULL,
};
static const char *const pat_gemma4[] = {
    "[^\\n]+|[\\n]+",
    NULL,
};
static const char *const pat_minicpm5[] = {
    "\\p{N}{1,3}",
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}+| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
    NULL,
};
static const char *const pat_whitespace[] = {
    "\\S+",
    NULL,
};
/* llama.cpp's custom Kimi-K2 splitter, as a pattern: Han runs, words of other
 * letters (with an optional leading non-letter and contraction), 1-3 digit
 * groups, punctuation runs, and white space. */
static const char *const pat_kimi_k2[] = {
    "\\p{Han}+"
    "|[^\\r\\n\\p{L}\\p{N}]?(?:(?!\\p{Han})\\p{L})+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?"
    "|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
    NULL,
};

enum {
    PF_IGNORE_MERGES = 1 << 0,
    PF_ADD_BOS = 1 << 1,
    PF_NO_BOS = 1 << 2,
    PF_RAW_BYTES = 1 << 3,     /* no GPT-2 byte encoding */
    PF_ESCAPE_SPACES = 1 << 4,
    PF_NEWLINE_WORDS = 1 << 5,
};

struct sl_pretok_def {
    const char *name;
    const char *const *patterns;
    unsigned flags;
};

/* Every name llama.cpp accepts for a BPE vocabulary, with what it implies. */
static const sl_pretok_def defs[] = {
    {"default", pat_default, 0},
    {"llama3", pat_llama3, PF_IGNORE_MERGES | PF_ADD_BOS},
    {"llama-v3", pat_llama3, PF_IGNORE_MERGES | PF_ADD_BOS},
    {"llama-bpe", pat_llama3, PF_IGNORE_MERGES | PF_ADD_BOS},
    {"falcon3", pat_llama3, PF_IGNORE_MERGES | PF_ADD_BOS},
    {"falcon-h1", pat_llama3, PF_IGNORE_MERGES | PF_ADD_BOS},
    {"pixtral", pat_llama3, PF_IGNORE_MERGES | PF_ADD_BOS},
    {"midm-2.0", pat_llama3, PF_IGNORE_MERGES | PF_ADD_BOS},
    {"lfm2", pat_llama3, PF_IGNORE_MERGES | PF_ADD_BOS},
    {"jina-v5-nano", pat_llama3, PF_IGNORE_MERGES | PF_ADD_BOS},
    {"dbrx", pat_llama3, 0},
    {"smaug-bpe", pat_llama3, 0},
    {"glm4", pat_llama3, PF_NO_BOS},
    {"chatglm-bpe", pat_llama3, PF_NO_BOS},
    {"jais-2", pat_jais2, 0},
    {"deepseek-llm", pat_deepseek_llm, 0},
    {"deepseek-coder", pat_deepseek_coder, 0},
    {"deepseek-v3", pat_deepseek3_llm, 0},
    {"hunyuan-dense", pat_deepseek3_llm, 0},
    {"joyai-llm", pat_deepseek3_llm, 0},
    {"youtu", pat_youtu, PF_IGNORE_MERGES},
    {"falcon", pat_falcon, 0},
    {"starcoder", pat_starcoder, 0},
    {"refact", pat_starcoder, 0},
    {"command-r", pat_starcoder, 0},
    {"smollm", pat_starcoder, 0},
    {"codeshell", pat_starcoder, 0},
    {"exaone", pat_starcoder, 0},
    {"minerva-7b", pat_starcoder, 0},
    {"mellum2", pat_starcoder, 0},
    {"gpt-2", pat_gpt2, 0},
    {"phi-2", pat_gpt2, 0},
    {"jina-es", pat_gpt2, 0},
    {"jina-de", pat_gpt2, 0},
    {"gigachat", pat_gpt2, 0},
    {"jina-v2-es", pat_gpt2, 0},
    {"jina-v2-de", pat_gpt2, 0},
    {"a.x-4.0", pat_gpt2, 0},
    {"mellum", pat_gpt2, 0},
    {"modern-bert", pat_gpt2, 0},
    {"exaone4", pat_gpt2, 0},
    {"jina-v1-en", pat_gpt2, 0},
    {"jina-v2-code", pat_gpt2, 0},
    {"roberta-bpe", pat_gpt2, 0},
    {"mpt", pat_gpt2, 0},
    {"olmo", pat_gpt2, 0},
    {"jais", pat_gpt2, 0},
    {"trillion", pat_gpt2, 0},
    {"granite-docling", pat_gpt2, 0},
    {"qwen2", pat_qwen2, 0},
    {"deepseek-r1-qwen", pat_qwen2, 0},
    {"kormo", pat_qwen2, 0},
    {"f2llmv2", pat_qwen2, 0},
    {"megrez", pat_qwen2, 0},
    {"stablelm2", pat_qwen2, 0},
    {"hunyuan", pat_qwen2, 0},
    {"solar-open", pat_qwen2, 0},
    {"grok-2", pat_qwen2, 0},
    {"qwen35", pat_qwen35, 0},
    {"poro-chat", pat_poro, 0},
    {"bloom", pat_poro, 0},
    {"gpt3-finnish", pat_poro, 0},
    {"viking", pat_viking, 0},
    {"tekken", pat_tekken, PF_IGNORE_MERGES | PF_ADD_BOS},
    {"chameleon", pat_chameleon, PF_ADD_BOS},
    {"gpt-4o", pat_gpt4o, 0},
    {"llama4", pat_gpt4o, 0},
    {"kanana2", pat_gpt4o, 0},
    {"talkie", pat_gpt4o, 0},
    {"minimax-m2", pat_gpt4o, 0},
    {"granite-embed-multi-97m", pat_granite_emb_multi, PF_IGNORE_MERGES},
    {"tiny_aya", pat_tiny_aya, 0},
    {"cohere2moe", pat_tiny_aya, 0},
    {"kimi-k2", pat_kimi_k2, 0},
    {"superbpe", pat_superbpe, 0},
    {"bailingmoe", pat_bailingmoe, 0},
    {"bailingmoe2", pat_bailingmoe, 0},
    {"llada-moe", pat_bailingmoe, 0},
    {"seed-coder", pat_seed_coder, 0},
    {"afmoe", pat_afmoe, 0},
    {"laguna", pat_laguna, 0},
    {"exaone-moe", pat_exaone_moe, 0},
    {"minicpm5", pat_minicpm5, PF_IGNORE_MERGES},
    {"gemma4", pat_gemma4, PF_RAW_BYTES | PF_ESCAPE_SPACES | PF_ADD_BOS | PF_NEWLINE_WORDS},
    {"granite-embed-multi-311m", pat_gemma4, PF_RAW_BYTES | PF_ESCAPE_SPACES | PF_ADD_BOS | PF_NEWLINE_WORDS},
    {"sarvam-moe", pat_gemma4, PF_RAW_BYTES | PF_ESCAPE_SPACES},
    {"whitespace", pat_whitespace, PF_RAW_BYTES},
};

const sl_pretok_def *sl_pretok_find(const char *name) {
    for (size_t i = 0; i < sizeof defs / sizeof defs[0]; i++)
        if (strcmp(defs[i].name, name) == 0) return &defs[i];
    return NULL;
}

const char *sl_pretok_def_name(const sl_pretok_def *def) { return def->name; }

const char *const *sl_pretok_def_patterns(const sl_pretok_def *def) { return def->patterns; }

sl_pretok_flags sl_pretok_def_flags(const sl_pretok_def *def) {
    sl_pretok_flags f;
    f.byte_encode = !(def->flags & PF_RAW_BYTES);
    f.escape_spaces = (def->flags & PF_ESCAPE_SPACES) != 0;
    f.ignore_merges = (def->flags & PF_IGNORE_MERGES) != 0;
    f.add_bos = (def->flags & PF_ADD_BOS) != 0;
    f.no_bos = (def->flags & PF_NO_BOS) != 0;
    f.newline_words = (def->flags & PF_NEWLINE_WORDS) != 0;
    return f;
}

#define MAX_PATTERNS 8

struct sl_pretok {
    const sl_pretok_def *def;
    size_t n;
    const char *pattern[MAX_PATTERNS];
    sl_regex *re[MAX_PATTERNS]; /* NULL for the hand-written splitters */
};

sl_pretok *sl_pretok_new(const sl_pretok_def *def, sl_error *err) {
    sl_pretok *p = calloc(1, sizeof *p);
    if (!p) {
        sl_err(err, "out of memory");
        return NULL;
    }
    p->def = def;
    for (const char *const *pat = def->patterns; *pat; pat++) {
        if (p->n == MAX_PATTERNS) {
            sl_err(err, "pre-tokenizer '%s' has too many patterns", def->name);
            goto fail;
        }
        if (*pat != afmoe_digits && *pat != superbpe_digits) {
            sl_error e;
            p->re[p->n] = sl_regex_compile(*pat, SL_RE_LLAMACPP, &e);
            if (!p->re[p->n]) {
                sl_err(err, "pre-tokenizer '%s': %s", def->name, e.msg);
                goto fail;
            }
        }
        p->pattern[p->n++] = *pat;
    }
    return p;
fail:
    sl_pretok_free(p);
    return NULL;
}

void sl_pretok_free(sl_pretok *p) {
    if (!p) return;
    for (size_t i = 0; i < p->n; i++) sl_regex_free(p->re[i]);
    free(p);
}

/* llama.cpp's unicode_regex_split_custom_afmoe. */
static int split_digit_groups(const uint32_t *cps, const sl_re_pieces *in, sl_re_pieces *out, sl_error *err) {
    size_t seg_begin = 0;
    for (size_t k = 0; k < in->n; k++) {
        size_t seg_end = seg_begin + in->len[k];
        size_t prev_end = seg_begin, pos = seg_begin;
        while (pos < seg_end) {
            if (!(sl_uni_class(cps[pos]) & SL_UCLASS_N)) {
                pos++;
                continue;
            }
            size_t start = pos;
            while (pos < seg_end && (sl_uni_class(cps[pos]) & SL_UCLASS_N)) pos++;
            size_t cut = start + (pos - start) % 3;
            if (cut == start) cut += 3;
            for (; cut <= pos; cut += 3) {
                if (sl_re_pieces_push(out, cut - prev_end)) return sl_err(err, "out of memory");
                prev_end = cut;
            }
        }
        if (prev_end < seg_end && sl_re_pieces_push(out, seg_end - prev_end)) return sl_err(err, "out of memory");
        seg_begin = seg_end;
    }
    return 0;
}

static bool is_ascii_digit(uint32_t cp) { return cp >= '0' && cp <= '9'; }

/* Cuts every piece before each digit that starts a run of 3k ASCII digits
 * (k >= 1) reaching the end of the run. */
static int split_thousands(const uint32_t *cps, const sl_re_pieces *in, sl_re_pieces *out, sl_error *err) {
    size_t seg_begin = 0;
    for (size_t k = 0; k < in->n; k++) {
        size_t seg_end = seg_begin + in->len[k];
        size_t prev_end = seg_begin, pos = seg_begin;
        while (pos < seg_end) {
            if (!is_ascii_digit(cps[pos])) {
                pos++;
                continue;
            }
            size_t end = pos;
            while (end < seg_end && is_ascii_digit(cps[end])) end++;
            for (size_t cut = pos + (end - pos) % 3; cut + 3 <= end; cut += 3) {
                if (cut > prev_end && sl_re_pieces_push(out, cut - prev_end)) return sl_err(err, "out of memory");
                if (cut > prev_end) prev_end = cut;
            }
            pos = end;
        }
        if (prev_end < seg_end && sl_re_pieces_push(out, seg_end - prev_end)) return sl_err(err, "out of memory");
        seg_begin = seg_end;
    }
    return 0;
}

int sl_pretok_split(const sl_pretok *p, sl_regex_scratch *s, const uint32_t *cps, size_t n, sl_re_pieces *out,
                    sl_re_pieces *tmp, sl_error *err) {
    out->n = 0;
    if (n == 0) return 0;
    if (sl_re_pieces_push(out, n)) return sl_err(err, "out of memory");
    for (size_t i = 0; i < p->n; i++) {
        tmp->n = 0;
        int r;
        if (p->re[i]) r = sl_regex_split(p->re[i], s, cps, out, tmp, err);
        else if (p->pattern[i] == afmoe_digits) r = split_digit_groups(cps, out, tmp, err);
        else r = split_thousands(cps, out, tmp, err);
        if (r) return -1;
        sl_re_pieces swap = *out;
        *out = *tmp;
        *tmp = swap;
    }
    return 0;
}
