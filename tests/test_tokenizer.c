/* test_tokenizer.c - the tokenizers: Unicode tables, the regex engine, the
 * pre-tokenizers, the streaming detokenizer and tiny SPM / BPE vocabularies
 * built with the GGUF writer (self-contained); then, from the shared test
 * data, llama.cpp's tokenizer vectors (vocab/ggml-vocab-*.gguf with .inp and
 * .out), the prompt tokens and generated pieces of every reference model, and
 * the speed on a long text. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gguf/gguf.h"
#include "test.h"
#include "tokenizer/pretok.h"
#include "tokenizer/regex.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode.h"

/* ---- helpers ---- */

static bool testdata_present(const char *what) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", test_data_dir(), what);
    FILE *f = fopen(path, "rb");
    if (f) {
        fclose(f);
        return true;
    }
    return false;
}

/* Says loudly that a data-driven part is skipped; under CI=true that fails. */
static void skip_or_fail(const char *part) {
    const char *ci = getenv("CI");
    fprintf(stderr, "SKIP %s: testdata absent at %s\n", part, test_data_dir());
    if (ci && strcmp(ci, "true") == 0) RUN_CASE(part, CHECKF(0, "CI=true: the test data is mandatory"));
}

static char *read_file(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    char *buf = malloc(n > 0 ? (size_t)n + 1 : 1);
    if (!buf) {
        fclose(f);
        return NULL;
    }
    size_t got = n > 0 ? fread(buf, 1, (size_t)n, f) : 0;
    fclose(f);
    buf[got] = 0;
    *size = got;
    return buf;
}

/* Code points of a UTF-8 string, decoded as the tokenizer does. */
static size_t to_cps(const char *s, uint32_t *cps) {
    size_t n = 0, len = strlen(s);
    for (size_t i = 0; i < len;) {
        size_t k;
        cps[n++] = sl_utf8_decode_lenient((const uint8_t *)s + i, len - i, &k);
        i += k;
    }
    return n;
}

/* Joins the pieces of a split, each re-encoded to UTF-8, with '|'. */
static void join_pieces(const uint32_t *cps, const sl_re_pieces *p, char *out, size_t cap) {
    size_t n = 0, at = 0;
    out[0] = 0;
    for (size_t i = 0; i < p->n; i++) {
        if (i && n + 1 < cap) out[n++] = '|';
        for (size_t k = at; k < at + p->len[i]; k++) {
            char enc[4];
            size_t el = sl_utf8_encode(cps[k], enc);
            if (n + el < cap) {
                memcpy(out + n, enc, el);
                n += el;
            }
        }
        at += p->len[i];
    }
    out[n < cap ? n : cap - 1] = 0;
}

/* ---- Unicode ---- */

static void test_unicode_categories(void) {
    CHECK(sl_uni_category('A') == SL_UC_Lu);
    CHECK(sl_uni_category('z') == SL_UC_Ll);
    CHECK(sl_uni_category('7') == SL_UC_Nd);
    CHECK(sl_uni_category(' ') == SL_UC_Zs);
    CHECK(sl_uni_category('~') == SL_UC_Sm);
    CHECK(sl_uni_category('_') == SL_UC_Pc);
    CHECK(sl_uni_category(0x00A0) == SL_UC_Zs);
    CHECK(sl_uni_category(0x00E9) == SL_UC_Ll);   /* é */
    CHECK(sl_uni_category(0x01C5) == SL_UC_Lt);   /* ǅ */
    CHECK(sl_uni_category(0x02B0) == SL_UC_Lm);   /* ʰ */
    CHECK(sl_uni_category(0x4E2D) == SL_UC_Lo);   /* 中 */
    CHECK(sl_uni_category(0x0301) == SL_UC_Mn);   /* combining acute */
    CHECK(sl_uni_category(0x0903) == SL_UC_Mc);
    CHECK(sl_uni_category(0x0663) == SL_UC_Nd);   /* Arabic-Indic three */
    CHECK(sl_uni_category(0x00B2) == SL_UC_No);   /* ² */
    CHECK(sl_uni_category(0x2162) == SL_UC_Nl);   /* Ⅲ */
    CHECK(sl_uni_category(0x1F999) == SL_UC_So);  /* 🦙 */
    CHECK(sl_uni_category(0x20AC) == SL_UC_Sc);   /* € */
    CHECK(sl_uni_category(0x2028) == SL_UC_Zl);
    CHECK(sl_uni_category(0xE000) == SL_UC_Co);
    CHECK(sl_uni_category(0xD800) == SL_UC_Cs);
    CHECK(sl_uni_category(0x200B) == SL_UC_Cf);
    CHECK(sl_uni_category(0x0378) == SL_UC_Cn);   /* unassigned */
    CHECK(sl_uni_category(0x2EBF0) == SL_UC_Lo);  /* CJK Ext. I, new in Unicode 15.1 */
    CHECK(sl_uni_category(0x31EF) == SL_UC_So);   /* new in 15.1 */
    CHECK(sl_uni_category(0x10FFFF) == SL_UC_Cn);
    CHECK(sl_uni_category(0x110000) == SL_UC_Cn);
    CHECK(sl_uni_class(0x4E2D) == SL_UCLASS_L);
    CHECK(sl_uni_class(0x0301) == SL_UCLASS_M);
}

static void test_unicode_space_and_case(void) {
    static const uint32_t spaces[] = {9, 10, 11, 12, 13, 32, 0x85, 0xA0, 0x1680, 0x2000, 0x200A, 0x2028, 0x2029,
                                      0x202F, 0x205F, 0x3000};
    for (size_t i = 0; i < sizeof spaces / sizeof spaces[0]; i++) CHECKF(sl_uni_is_space(spaces[i]), "U+%04X", spaces[i]);
    static const uint32_t not_spaces[] = {0, 8, 14, 0x1C, 0x1F, 'a', 0x200B, 0xFEFF, 0x180E, 0x3001, 0x10FFFF};
    for (size_t i = 0; i < sizeof not_spaces / sizeof not_spaces[0]; i++)
        CHECKF(!sl_uni_is_space(not_spaces[i]), "U+%04X", not_spaces[i]);
    CHECK(sl_uni_tolower('A') == 'a');
    CHECK(sl_uni_tolower('a') == 'a');
    CHECK(sl_uni_tolower('1') == '1');
    CHECK(sl_uni_tolower(0x00C9) == 0x00E9); /* É */
    CHECK(sl_uni_tolower(0x03A9) == 0x03C9); /* Ω */
    CHECK(sl_uni_tolower(0x0100) == 0x0101); /* stride-2 run */
    CHECK(sl_uni_tolower(0x0101) == 0x0101);
    CHECK(sl_uni_tolower(0x0130) == 'i');    /* İ */
    CHECK(sl_uni_tolower(0x01C5) == 0x01C6); /* ǅ */
    CHECK(sl_uni_tolower(0x10400) == 0x10428);
    CHECK(sl_uni_tolower(0x4E2D) == 0x4E2D);
}

static void test_utf8(void) {
    size_t len;
    CHECK(sl_utf8_decode_lenient((const uint8_t *)"a", 1, &len) == 'a' && len == 1);
    CHECK(sl_utf8_decode_lenient((const uint8_t *)"\xC3\xA9", 2, &len) == 0xE9 && len == 2);
    CHECK(sl_utf8_decode_lenient((const uint8_t *)"\xF0\x9F\xA6\x99", 4, &len) == 0x1F999 && len == 4);
    /* llama.cpp's decoder checks continuation bytes and lengths only. */
    CHECK(sl_utf8_decode_lenient((const uint8_t *)"\xC0\x80", 2, &len) == 0 && len == 2);
    CHECK(sl_utf8_decode_lenient((const uint8_t *)"\xED\xA0\x80", 3, &len) == 0xD800 && len == 3);
    CHECK(sl_utf8_decode_lenient((const uint8_t *)"\x80", 1, &len) == 0xFFFD && len == 1);
    CHECK(sl_utf8_decode_lenient((const uint8_t *)"\xE2\x82", 2, &len) == 0xFFFD && len == 1);
    CHECK(sl_utf8_decode_lenient((const uint8_t *)"\xC3\x41", 2, &len) == 0xFFFD && len == 1);
    CHECK(sl_utf8_decode_lenient((const uint8_t *)"\xF8\x88\x80\x80", 4, &len) == 0xFFFD && len == 1);
    CHECK(sl_utf8_decode_lenient((const uint8_t *)"\xF4\x90\x80\x80", 4, &len) == 0xFFFD && len == 1);
    char enc[4];
    CHECK(sl_utf8_encode(0x24, enc) == 1 && enc[0] == 0x24);
    CHECK(sl_utf8_encode(0xE9, enc) == 2 && memcmp(enc, "\xC3\xA9", 2) == 0);
    CHECK(sl_utf8_encode(0x20AC, enc) == 3 && memcmp(enc, "\xE2\x82\xAC", 3) == 0);
    CHECK(sl_utf8_encode(0x10FFFF, enc) == 4 && memcmp(enc, "\xF4\x8F\xBF\xBF", 4) == 0);
    CHECK(sl_utf8_check((const uint8_t *)"\xE2\x82\xAC", 3) == 3);
    CHECK(sl_utf8_check((const uint8_t *)"\xE2\x82", 2) == 0);   /* incomplete */
    CHECK(sl_utf8_check((const uint8_t *)"\xE2\x41", 2) == -1);  /* bad continuation */
    CHECK(sl_utf8_check((const uint8_t *)"\xE2\x82\x41", 3) == -2);
    CHECK(sl_utf8_check((const uint8_t *)"\xC0\x80", 2) == -1);  /* overlong */
    CHECK(sl_utf8_check((const uint8_t *)"\xED\xA0\x80", 3) == -1); /* surrogate */
    CHECK(sl_utf8_check((const uint8_t *)"\xF4\x90\x80\x80", 4) == -1);
    CHECK(sl_utf8_check((const uint8_t *)"\xBF", 1) == -1);
    CHECK(sl_utf8_lead_len(0xF0) == 4 && sl_utf8_lead_len(0x80) == 1 && sl_utf8_lead_len(0xE2) == 3);
}

/* ---- regex engine ---- */

static void check_split(const char *pattern, unsigned flags, const char *text, const char *expected) {
    sl_error err = {{0}};
    sl_regex *re = sl_regex_compile(pattern, flags, &err);
    CHECKF(re != NULL, "compile /%s/: %s", pattern, err.msg);
    if (!re) return;
    uint32_t cps[512];
    size_t n = to_cps(text, cps);
    sl_re_pieces in = {0}, out = {0};
    sl_regex_scratch s = {0};
    if (n) sl_re_pieces_push(&in, n);
    int rc = sl_regex_split(re, &s, cps, &in, &out, &err);
    CHECKF(rc == 0, "%s", err.msg);
    char got[2048];
    join_pieces(cps, &out, got, sizeof got);
    CHECKF(strcmp(got, expected) == 0, "/%s/ on '%s': got '%s', want '%s'", pattern, text, got, expected);
    sl_re_pieces_free(&in);
    sl_re_pieces_free(&out);
    sl_regex_scratch_free(&s);
    sl_regex_free(re);
}

static void test_regex_basics(void) {
    check_split("a|ab", 0, "abab", "a|b|a|b");           /* leftmost-first, not longest */
    check_split("ab|a", 0, "abab", "ab|ab");
    check_split("(ab)+", 0, "ababx", "abab|x");
    check_split("(?:a|b)c", 0, "acbcc", "ac|bc|c");
    check_split("a{2}", 0, "aaaaa", "aa|aa|a");
    check_split("a{2,3}", 0, "aaaaaaa", "aaa|aaa|a");
    check_split("a{2,}", 0, "aaaaab", "aaaaa|b");
    check_split("a{0,1}b", 0, "abbab", "ab|b|ab");
    check_split("x*", 0, "axxb", "a|xx|b");               /* empty matches between */
    check_split("colou?r", 0, "color colour", "color| |colour");
    check_split("a+?", 0, "aaa", "a|a|a");                /* lazy */
    check_split("<.+?>", 0, "<a><bc>", "<a>|<bc>");
    check_split("<.+>", 0, "<a><bc>", "<a><bc>");
    check_split("a++a", 0, "aaa", "aaa");                 /* possessive: no match */
    check_split("(?>a+)b", 0, "aab", "aab");
    check_split("a{1,3}+a", 0, "aaaa", "aaaa");
    check_split("x{", 0, "x{", "x{");                     /* a brace that is no quantifier */
    check_split(".", 0, "a\nb", "a|\n|b");
    check_split("[a-c]+", 0, "abcdcba", "abc|d|cba");
    check_split("[^a-c]+", 0, "abcdcba", "abc|d|cba");
    check_split("[\\-\\]x]+", 0, "a-]xb", "a|-]x|b");
    check_split("[a-]+", 0, "b-a-", "b|-a-");
    check_split("[]a]", 0, "]a", "]a");                   /* [] is an empty class */
    check_split("\\d+", 0, "ab12c345\xD9\xA3", "ab|12|c|345|\xD9\xA3"); /* \d is ASCII */
    check_split("\\D+", 0, "ab12c", "ab|12|c");
    check_split("\\w+", 0, "hi_there, y\xC3\xA9s", "hi_there|, |y|\xC3\xA9|s");
    check_split("\\W+", 0, "a, b", "a|, |b");
    check_split("\\s+", 0, "a \t\n\xC2\xA0" "b", "a| \t\n\xC2\xA0|b");
    check_split("\\S+", 0, "ab  cd", "ab|  |cd");
    check_split("[\\s,]+", 0, "a, b", "a|, |b");
    check_split("\\x41\\u00e9\\u{1F999}", 0, "A\xC3\xA9\xF0\x9F\xA6\x99!", "A\xC3\xA9\xF0\x9F\xA6\x99|!");
    check_split("\\.\\*", 0, "a.*b", "a|.*|b");
    check_split("[\\t\\n]", 0, "a\tb", "a|\t|b");
}

static void test_regex_unicode_classes(void) {
    check_split("\\p{L}+", 0, "h\xC3\xA9llo w\xC3\xB6rld \xE4\xB8\xAD\xE6\x96\x87",
                "h\xC3\xA9llo| |w\xC3\xB6rld| |\xE4\xB8\xAD\xE6\x96\x87");
    check_split("\\p{Lu}+", 0, "abCDe\xC3\x89", "ab|CD|e|\xC3\x89");
    check_split("\\p{Ll}+", 0, "abCDe", "ab|CD|e");
    check_split("\\p{N}+", 0, "a12\xC2\xB2\xD9\xA3x", "a|12\xC2\xB2\xD9\xA3|x");
    check_split("\\p{Nd}+", 0, "1\xC2\xB2" "2", "1|\xC2\xB2|2");
    check_split("\\p{P}+", 0, "a,.!b~", "a|,.!|b~");
    check_split("\\p{S}+", 0, "a$+~b", "a|$+~|b");
    check_split("\\p{M}+", 0, "e\xCC\x81\xCC\x80x", "e|\xCC\x81\xCC\x80|x");
    check_split("\\P{L}+", 0, "ab12cd", "ab|12|cd");
    check_split("[^\\p{L}\\p{N}]+", 0, "ab, 12!", "ab|, |12|!");
    check_split("\\pL+", 0, "ab1", "ab|1");
    check_split("\\p{Han}+", 0, "ab\xE4\xB8\xAD\xE6\x96\x87\xE3\x81\xAE", "ab|\xE4\xB8\xAD\xE6\x96\x87|\xE3\x81\xAE");
    /* llama.cpp's view: letter subcategories are all letters, '~' is in no category. */
    check_split("\\p{Lu}+", SL_RE_LLAMACPP, "abCDe", "abCDe");
    check_split("\\p{S}+", SL_RE_LLAMACPP, "a$+~b", "a|$+|~b");
    check_split("[\\x0b]", SL_RE_LLAMACPP, "a\xC2\xA0" "b", "a|\xC2\xA0|b");
    check_split("[\\x0b]", 0, "a\xC2\xA0" "b", "a\xC2\xA0" "b");
}

static void test_regex_assertions(void) {
    check_split("(?i:ab)", 0, "xAbaBab", "x|Ab|aB|ab");
    check_split("(?i:[a-c]+)", 0, "xABcz", "x|ABc|z");
    check_split("(?i:\\u00e9)", 0, "\xC3\x89", "\xC3\x89");
    check_split("a(?=b)", 0, "acab", "ac|a|b");
    check_split("a(?!b)", 0, "acab", "a|cab");
    check_split("\\s+(?!\\S)", 0, "a   b", "a|  | b");
    check_split("\\s+(?!\\S)|\\s+", 0, "a   b  ", "a|  | |b|  ");
    check_split("^a", 0, "aaa", "a|aa");
    check_split("a$", 0, "aaa", "aa|a");
    check_split("\\s+$", 0, "a  b  ", "a  b|  ");
    check_split("\\bfoo\\b", 0, "foo foobar foo", "foo| foobar |foo");
    check_split("\\Bo", 0, "oboe", "ob|o|e");
    check_split("(?=(\\d{3})+(?!\\d))", 0, "1234567", "1|234|567");
    check_split("(?=(\\d{3})+(?!\\d))", 0, "123456 12", "123|456 12");
    check_split("((?=[\\p{L}])([^a-z]))+", 0, "ABcD\xC3\xA9", "AB|c|D\xC3\xA9");
}

static void test_regex_errors(void) {
    static const char *const bad[] = {"(", "a)", "[a", "*a", "a**", "+", "\\p{Foo}", "\\p{L", "a{3,2}",
                                      "\\q", "(?<=a)", "(?P<x>a)", "\\", "\\xZZ", "[z-a]", "\\u{110000}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        sl_error err = {{0}};
        sl_regex *re = sl_regex_compile(bad[i], 0, &err);
        CHECKF(re == NULL, "/%s/ compiled", bad[i]);
        CHECKF(err.msg[0] != 0, "/%s/ gave no message", bad[i]);
        sl_regex_free(re);
    }
    sl_error err;
    sl_regex *re = sl_regex_compile("((ab){1000}){1000}", 0, &err);
    CHECKF(re == NULL && strstr(err.msg, "too large"), "%s", re ? "compiled" : err.msg);
    sl_regex_free(re);
}

/* Pre-tokenizer splits of tricky strings: llama.cpp's results (its hand-written
 * gpt2 / llama3 splitters, which behave as the patterns). */
typedef struct split_case {
    const char *text;
    const char *pieces[40];
} split_case;

static const split_case gpt2_cases[] = {
    {"I'm here, they'll go; we'd've SHE'S 'LL x'y",
     {"I", "'m", " here", ",", " they", "'ll", " go", ";", " we", "'d", "'ve", " SHE", "'", "S", " '", "LL", " x", "'", "y", NULL}},
    {"It's 12345 and 1,000,000! 3.14159",
     {"It", "'s", " 12345", " and", " 1", ",", "000", ",", "000", "!", " 3", ".", "14159", NULL}},
    {"   leading spaces  and\x09tabs \x0A\x0A newlines\x0D\x0A  \x0A end  ",
     {"  ", " leading", " spaces", " ", " and", "\x09", "tabs", " \x0A\x0A", " newlines", "\x0D\x0A  \x0A", " end", "  ", NULL}},
    {"emoji \xF0\x9F\xA6\x99\xF0\x9F\x9A\x80 ok \xF0\x9F\x98\xB6\xE2\x80\x8D\xF0\x9F\x8C\xAB\xEF\xB8\x8F!",
     {"emoji", " \xF0\x9F\xA6\x99\xF0\x9F\x9A\x80", " ok", " \xF0\x9F\x98\xB6\xE2\x80\x8D\xF0\x9F\x8C\xAB\xEF\xB8\x8F!", NULL}},
    {"\xE4\xB8\xAD\xE6\x96\x87\xE5\xAD\x97\xE7\xAC\xA6 and \xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E\xE3\x81\xAE\xE3\x83\x86\xE3\x82\xAD\xE3\x82\xB9\xE3\x83\x88",
     {"\xE4\xB8\xAD\xE6\x96\x87\xE5\xAD\x97\xE7\xAC\xA6", " and", " \xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E\xE3\x81\xAE\xE3\x83\x86\xE3\x82\xAD\xE3\x82\xB9\xE3\x83\x88", NULL}},
    {"combining \xC3\xA9 e\xCC\x81 a\xCC\x80""b",
     {"combining", " \xC3\xA9", " e", "\xCC\x81", " a", "\xCC\x80", "b", NULL}},
    {"x\xC2\xA0\xC2\xA0y\xE3\x80\x80z  ~~ ~$ +1",
     {"x", "\xC2\xA0", "\xC2\xA0", "y", "\xE3\x80\x80", "z", " ", " ~~", " ~$", " +", "1", NULL}},
    {"Hello\x0A\x0A\x0AWorld\x0D\x0A\x0D\x0A""foo   \x0A",
     {"Hello", "\x0A\x0A", "\x0A", "World", "\x0D\x0A\x0D", "\x0A", "foo", "   \x0A", NULL}},
    {"\xD9\xA3\xD9\xA4\xD9\xA5 \xC2\xB2\xC2\xB3 1234567",
     {"\xD9\xA3\xD9\xA4\xD9\xA5", " \xC2\xB2\xC2\xB3", " 1234567", NULL}},
};
static const split_case llama3_cases[] = {
    {"I'm here, they'll go; we'd've SHE'S 'LL x'y",
     {"I", "'m", " here", ",", " they", "'ll", " go", ";", " we", "'d", "'ve", " SHE", "'S", " '", "LL", " x", "'y", NULL}},
    {"It's 12345 and 1,000,000! 3.14159",
     {"It", "'s", " ", "123", "45", " and", " ", "1", ",", "000", ",", "000", "!", " ", "3", ".", "141", "59", NULL}},
    {"   leading spaces  and\x09tabs \x0A\x0A newlines\x0D\x0A  \x0A end  ",
     {"  ", " leading", " spaces", " ", " and", "\x09tabs", " \x0A\x0A", " newlines", "\x0D\x0A  \x0A", " end", "  ", NULL}},
    {"emoji \xF0\x9F\xA6\x99\xF0\x9F\x9A\x80 ok \xF0\x9F\x98\xB6\xE2\x80\x8D\xF0\x9F\x8C\xAB\xEF\xB8\x8F!",
     {"emoji", " \xF0\x9F\xA6\x99\xF0\x9F\x9A\x80", " ok", " \xF0\x9F\x98\xB6\xE2\x80\x8D\xF0\x9F\x8C\xAB\xEF\xB8\x8F!", NULL}},
    {"\xE4\xB8\xAD\xE6\x96\x87\xE5\xAD\x97\xE7\xAC\xA6 and \xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E\xE3\x81\xAE\xE3\x83\x86\xE3\x82\xAD\xE3\x82\xB9\xE3\x83\x88",
     {"\xE4\xB8\xAD\xE6\x96\x87\xE5\xAD\x97\xE7\xAC\xA6", " and", " \xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E\xE3\x81\xAE\xE3\x83\x86\xE3\x82\xAD\xE3\x82\xB9\xE3\x83\x88", NULL}},
    {"combining \xC3\xA9 e\xCC\x81 a\xCC\x80""b",
     {"combining", " \xC3\xA9", " e", "\xCC\x81", " a", "\xCC\x80""b", NULL}},
    {"x\xC2\xA0\xC2\xA0y\xE3\x80\x80z  ~~ ~$ +1",
     {"x", "\xC2\xA0", "\xC2\xA0y", "\xE3\x80\x80z", " ", " ~~", " ~$", " +", "1", NULL}},
    {"Hello\x0A\x0A\x0AWorld\x0D\x0A\x0D\x0A""foo   \x0A",
     {"Hello", "\x0A\x0A\x0A", "World", "\x0D\x0A\x0D\x0A", "foo", "   \x0A", NULL}},
    {"\xD9\xA3\xD9\xA4\xD9\xA5 \xC2\xB2\xC2\xB3 1234567",
     {"\xD9\xA3\xD9\xA4\xD9\xA5", " ", "\xC2\xB2\xC2\xB3", " ", "123", "456", "7", NULL}},
};

static void check_pretok_cases(const char *pre, const split_case *cases, size_t n_cases) {
    const sl_pretok_def *def = sl_pretok_find(pre);
    CHECKF(def != NULL, "no pre-tokenizer %s", pre);
    if (!def) return;
    sl_error err = {{0}};
    sl_pretok *p = sl_pretok_new(def, &err);
    CHECKF(p != NULL, "%s", err.msg);
    if (!p) return;
    sl_regex_scratch s = {0};
    sl_re_pieces out = {0}, tmp = {0};
    for (size_t i = 0; i < n_cases; i++) {
        uint32_t cps[512];
        size_t n = to_cps(cases[i].text, cps);
        CHECKF(sl_pretok_split(p, &s, cps, n, &out, &tmp, &err) == 0, "%s", err.msg);
        char got[2048], want[2048];
        join_pieces(cps, &out, got, sizeof got);
        size_t w = 0;
        for (size_t k = 0; cases[i].pieces[k]; k++)
            w += (size_t)snprintf(want + w, sizeof want - w, "%s%s", k ? "|" : "", cases[i].pieces[k]);
        CHECKF(strcmp(got, want) == 0, "%s on '%s':\n    got  '%s'\n    want '%s'", pre, cases[i].text, got, want);
    }
    sl_re_pieces_free(&out);
    sl_re_pieces_free(&tmp);
    sl_regex_scratch_free(&s);
    sl_pretok_free(p);
}

static void test_pretok_gpt2(void) { check_pretok_cases("gpt-2", gpt2_cases, sizeof gpt2_cases / sizeof gpt2_cases[0]); }
static void test_pretok_llama3(void) {
    check_pretok_cases("llama-bpe", llama3_cases, sizeof llama3_cases / sizeof llama3_cases[0]);
}

static void test_pretok_table(void) {
    /* Every pattern of every name compiles; names carry llama.cpp's flags. */
    static const char *const names[] = {
        "default", "llama3", "llama-v3", "llama-bpe", "dbrx", "smaug-bpe", "deepseek-llm", "deepseek-coder",
        "deepseek-v3", "falcon", "mpt", "starcoder", "gpt-2", "phi-2", "refact", "command-r", "qwen2", "qwen35",
        "stablelm2", "olmo", "poro-chat", "chatglm-bpe", "viking", "jais", "jais-2", "tekken", "smollm", "codeshell",
        "bloom", "gpt3-finnish", "exaone", "exaone4", "exaone-moe", "chameleon", "minerva-7b", "megrez", "gpt-4o",
        "superbpe", "trillion", "bailingmoe", "llada-moe", "seed-coder", "hunyuan", "kimi-k2", "grok-2", "afmoe",
        "tiny_aya", "laguna", "minimax-m2", "solar-open", "youtu", "gemma4", "jina-v2-es", "minicpm5", "mellum2"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        const sl_pretok_def *def = sl_pretok_find(names[i]);
        CHECKF(def != NULL, "%s missing", names[i]);
        if (!def) continue;
        sl_error err = {{0}};
        sl_pretok *p = sl_pretok_new(def, &err);
        CHECKF(p != NULL, "%s: %s", names[i], err.msg);
        sl_pretok_free(p);
    }
    CHECK(sl_pretok_find("no-such-pre") == NULL);
    CHECK(sl_pretok_def_flags(sl_pretok_find("llama-bpe")).add_bos);
    CHECK(sl_pretok_def_flags(sl_pretok_find("llama-bpe")).ignore_merges);
    CHECK(!sl_pretok_def_flags(sl_pretok_find("gpt-2")).add_bos);
    CHECK(sl_pretok_def_flags(sl_pretok_find("gpt-2")).byte_encode);
    CHECK(!sl_pretok_def_flags(sl_pretok_find("gemma4")).byte_encode);
    CHECK(sl_pretok_def_flags(sl_pretok_find("gemma4")).escape_spaces);
    CHECK(sl_pretok_def_flags(sl_pretok_find("chatglm-bpe")).no_bos);
    CHECK(strcmp(sl_pretok_def_name(sl_pretok_find("llama-v3")), "llama-v3") == 0);
}

/* A few splits of other pre-tokenizers (llama.cpp's results). */
static void test_pretok_others(void) {
    static const split_case deepseek_coder[] = {
        {"Hello, world!\n123 \xE4\xB8\xAD\xE6\x96\x87", {"Hello", ",", " world", "!", "\n", "1", "2", "3", " ", "\xE4\xB8\xAD\xE6\x96\x87", NULL}},
    };
    static const split_case falcon[] = {
        {"x = 12345; y++ ~", {"x", " ", "=", " ", "123", "45", ";", " y", "++", " ", "~", NULL}},
    };
    static const split_case starcoder[] = {
        {"int x=42;", {"int", " x", "=", "4", "2", ";", NULL}},
    };
    static const split_case qwen2[] = {
        {"Qwen's 2024 model", {"Qwen", "'s", " ", "2", "0", "2", "4", " model", NULL}},
    };
    static const split_case superbpe[] = {
        {"1234567 and 89", {"1", "234", "567", " and ", "89", NULL}},
    };
    static const split_case afmoe[] = {
        {"abc1234 5", {"abc", "1", "234", " ", "5", NULL}},
    };
    check_pretok_cases("deepseek-coder", deepseek_coder, 1);
    check_pretok_cases("falcon", falcon, 1);
    check_pretok_cases("starcoder", starcoder, 1);
    check_pretok_cases("qwen2", qwen2, 1);
    check_pretok_cases("superbpe", superbpe, 1);
    check_pretok_cases("afmoe", afmoe, 1);
}

/* ---- tiny vocabularies built with the GGUF writer ---- */

static sl_tokenizer *tok_from_writer(sl_gguf_writer *w, sl_error *err) {
    void *buf = NULL;
    size_t size = 0;
    sl_tokenizer *t = NULL;
    if (sl_gguf_write_memory(w, &buf, &size, NULL, NULL, err) == 0) {
        sl_gguf *g = sl_gguf_open_memory(buf, size, 0, err);
        if (g) {
            t = sl_tokenizer_from_gguf(g, err);
            sl_gguf_close(g);
        }
    }
    free(buf);
    sl_gguf_writer_free(w);
    return t;
}

typedef struct vocab_list {
    char text[300][16];
    const char *ptr[300];
    float score[300];
    int32_t type[300];
    size_t n;
} vocab_list;

static int32_t vocab_add(vocab_list *v, const char *text, float score, int32_t type) {
    snprintf(v->text[v->n], sizeof v->text[v->n], "%s", text);
    v->ptr[v->n] = v->text[v->n];
    v->score[v->n] = score;
    v->type[v->n] = type;
    return (int32_t)v->n++;
}

static void vocab_set(sl_gguf_writer *w, const vocab_list *v) {
    sl_gguf_set_arr_str(w, "tokenizer.ggml.tokens", v->ptr, v->n);
    sl_gguf_set_arr(w, "tokenizer.ggml.scores", SL_GGUF_FLOAT32, v->score, v->n);
    sl_gguf_set_arr(w, "tokenizer.ggml.token_type", SL_GGUF_INT32, v->type, v->n);
}

#define SPM_SPACE 259 /* ids of the tiny SPM vocabulary */
enum { SPM_A = 260, SPM_B, SPM_C, SPM_SA, SPM_AB, SPM_SAB, SPM_ABC, SPM_USER, SPM_SC, SPM_BC };
#define SPM_BYTE(b) (3 + (b))

static sl_gguf_writer *spm_writer(void) {
    static vocab_list v;
    v.n = 0;
    vocab_add(&v, "<unk>", 0, SL_TOKTYPE_UNKNOWN);
    vocab_add(&v, "<s>", 0, SL_TOKTYPE_CONTROL);
    vocab_add(&v, "</s>", 0, SL_TOKTYPE_CONTROL);
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        vocab_add(&v, name, 0, SL_TOKTYPE_BYTE);
    }
    vocab_add(&v, "\xE2\x96\x81", -1.0f, SL_TOKTYPE_NORMAL);
    vocab_add(&v, "a", -2.0f, SL_TOKTYPE_NORMAL);
    vocab_add(&v, "b", -2.0f, SL_TOKTYPE_NORMAL);
    vocab_add(&v, "c", -2.0f, SL_TOKTYPE_NORMAL);
    vocab_add(&v, "\xE2\x96\x81" "a", -1.5f, SL_TOKTYPE_NORMAL);
    vocab_add(&v, "ab", -1.0f, SL_TOKTYPE_NORMAL);
    vocab_add(&v, "\xE2\x96\x81" "ab", -0.5f, SL_TOKTYPE_NORMAL);
    vocab_add(&v, "abc", -3.0f, SL_TOKTYPE_NORMAL);
    vocab_add(&v, "<|user|>", 0, SL_TOKTYPE_USER_DEFINED);
    vocab_add(&v, "\xE2\x96\x81" "c", -2.5f, SL_TOKTYPE_NORMAL);
    vocab_add(&v, "bc", -0.7f, SL_TOKTYPE_NORMAL);
    sl_gguf_writer *w = sl_gguf_writer_new();
    sl_gguf_set_str(w, "general.architecture", "llama");
    sl_gguf_set_str(w, "tokenizer.ggml.model", "llama");
    vocab_set(w, &v);
    sl_gguf_set_u32(w, "tokenizer.ggml.bos_token_id", 1);
    sl_gguf_set_u32(w, "tokenizer.ggml.eos_token_id", 2);
    sl_gguf_set_u32(w, "tokenizer.ggml.unknown_token_id", 0);
    return w;
}

static void expect_ids(const sl_tokenizer *t, const char *text, bool add_special, bool parse_special,
                       const int32_t *want, size_t n_want) {
    int32_t *ids = NULL;
    size_t n = 0;
    sl_error err = {{0}};
    int rc = sl_tokenize(t, text, strlen(text), add_special, parse_special, &ids, &n, &err);
    CHECKF(rc == 0, "'%s': %s", text, err.msg);
    bool same = rc == 0 && n == n_want;
    for (size_t i = 0; same && i < n; i++) same = ids[i] == want[i];
    if (!same) {
        char got[512] = "", exp[512] = "";
        for (size_t i = 0; i < n && strlen(got) < 480; i++) snprintf(got + strlen(got), 32, " %d", ids[i]);
        for (size_t i = 0; i < n_want && strlen(exp) < 480; i++) snprintf(exp + strlen(exp), 32, " %d", want[i]);
        CHECKF(same, "'%s' (special %d/%d): got [%s ] want [%s ]", text, add_special, parse_special, got, exp);
    }
    free(ids);
}
#define EXPECT_IDS(t, text, add, parse, ...)                                           \
    do {                                                                               \
        static const int32_t want_[] = {__VA_ARGS__};                                  \
        expect_ids(t, text, add, parse, want_, sizeof want_ / sizeof want_[0]);        \
    } while (0)

static void expect_piece(const sl_tokenizer *t, int32_t id, bool render, const char *want, size_t want_len) {
    const char *p;
    size_t n = sl_token_to_piece(t, id, render, &p);
    CHECKF(n == want_len && memcmp(p, want, n) == 0, "piece of %d: got '%.*s' want '%s'", id, (int)n, p, want);
}

static void expect_detok(const sl_tokenizer *t, const int32_t *ids, size_t n, bool render, const char *want) {
    char *s = sl_detokenize(t, ids, n, render);
    CHECKF(s && strcmp(s, want) == 0, "detokenized '%s', want '%s'", s ? s : "(null)", want);
    free(s);
}

static void test_spm_tiny(void) {
    sl_error err = {{0}};
    sl_tokenizer *t = tok_from_writer(spm_writer(), &err);
    CHECKF(t != NULL, "%s", err.msg);
    if (!t) return;
    CHECK(sl_tokenizer_kind(t) == SL_TOK_SPM);
    CHECK(sl_tokenizer_n_vocab(t) == 270);
    CHECK(sl_tokenizer_bos(t) == 1 && sl_tokenizer_eos(t) == 2 && sl_tokenizer_unk(t) == 0);
    CHECK(sl_tokenizer_add_bos(t) && !sl_tokenizer_add_eos(t) && sl_tokenizer_add_space_prefix(t));
    CHECK(sl_tokenizer_is_eog(t, 2) && !sl_tokenizer_is_eog(t, 1) && !sl_tokenizer_is_eog(t, -1));
    CHECK(sl_tokenizer_token_type(t, SPM_USER) == SL_TOKTYPE_USER_DEFINED);
    CHECK(sl_tokenizer_token_type(t, SPM_BYTE(65)) == SL_TOKTYPE_BYTE);
    CHECK(sl_tokenizer_find(t, "\xE2\x96\x81" "ab", 5) == SPM_SAB);
    CHECK(sl_tokenizer_find(t, "zz", 2) == -1);
    CHECK(strcmp(sl_tokenizer_token_text(t, SPM_AB), "ab") == 0);
    CHECK(strcmp(sl_tokenizer_pre(t), "default") == 0);

    /* Merges by score: "ab" (-1.0) first, then "▁ab". */
    EXPECT_IDS(t, "ab", false, false, SPM_SAB);
    EXPECT_IDS(t, "ab", true, false, 1, SPM_SAB);
    /* "bc" (-0.7) beats "ab" (-1.0); then "▁a" (-1.5); "▁abc" is no token. */
    EXPECT_IDS(t, "abc", false, false, SPM_SA, SPM_BC);
    EXPECT_IDS(t, " a", false, false, SPM_SPACE, SPM_SA);
    /* Byte fallback for a character with no token. */
    EXPECT_IDS(t, "\xC3\xA9", false, false, SPM_SPACE, SPM_BYTE(0xC3), SPM_BYTE(0xA9));
    /* Invalid UTF-8: the lead byte's length decides the symbol. */
    EXPECT_IDS(t, "\xC3" "a", false, false, SPM_SPACE, SPM_BYTE(0xC3), SPM_BYTE('a'));
    /* User-defined tokens are always matched; text after one gets a space prefix. */
    EXPECT_IDS(t, "a<|user|>b", false, false, SPM_SA, SPM_USER, SPM_SPACE, SPM_B);
    /* Control tokens only with parse_special. */
    EXPECT_IDS(t, "a</s>", false, false, SPM_SA, SPM_BYTE('<'), SPM_BYTE('/'), SPM_BYTE('s'), SPM_BYTE('>'));
    EXPECT_IDS(t, "a</s>", false, true, SPM_SA, 2);
    EXPECT_IDS(t, "</s></s>", true, true, 1, 2, 2);
    int32_t *ids = NULL;
    size_t n = 99;
    CHECK(sl_tokenize(t, "", 0, false, false, &ids, &n, &err) == 0 && n == 0);
    free(ids);
    EXPECT_IDS(t, "", true, false, 1);

    expect_piece(t, SPM_SAB, false, " ab", 3);
    expect_piece(t, 1, false, "", 0);
    expect_piece(t, 1, true, "<s>", 3);
    expect_piece(t, 0, false, "", 0);
    expect_piece(t, SPM_USER, false, "<|user|>", 8);
    expect_piece(t, SPM_BYTE('A'), false, "A", 1);
    expect_piece(t, SPM_BYTE(0), false, "\0", 1);
    expect_piece(t, 99999, true, "", 0);
    expect_piece(t, -5, true, "", 0);

    /* The space SentencePiece added before the first word is dropped again. */
    static const int32_t s1[] = {1, SPM_SAB, SPM_C};
    expect_detok(t, s1, 3, false, "abc");
    expect_detok(t, s1, 3, true, "<s> abc");
    static const int32_t s2[] = {SPM_SA, SPM_USER, SPM_SPACE, SPM_B};
    expect_detok(t, s2, 4, false, "a<|user|> b");
    static const int32_t s3[] = {SPM_SPACE, SPM_BYTE(0xC3), SPM_BYTE(0xA9)};
    expect_detok(t, s3, 3, false, "\xC3\xA9");
    CHECK(sl_tokenizer_max_piece(t) >= 8);

    /* Round trips. */
    static const char *const texts[] = {"ab abc", "  a  b ", "\xC3\xA9t\xC3\xA9 \xE2\x82\xAC", "a\n\tb"};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        CHECK(sl_tokenize(t, texts[i], strlen(texts[i]), true, false, &ids, &n, &err) == 0);
        expect_detok(t, ids, n, false, texts[i]);
        free(ids);
    }
    sl_tokenizer_free(t);

    /* Flags from the metadata. */
    sl_gguf_writer *w = spm_writer();
    sl_gguf_set_bool(w, "tokenizer.ggml.add_eos_token", true);
    sl_gguf_set_bool(w, "tokenizer.ggml.add_space_prefix", false);
    sl_gguf_set_u32(w, "tokenizer.ggml.eos_token_id", 99999); /* out of range: the default stays */
    t = tok_from_writer(w, &err);
    CHECKF(t != NULL, "%s", err.msg);
    if (!t) return;
    EXPECT_IDS(t, "ab", true, false, 1, SPM_AB, 2);
    CHECK(sl_tokenizer_eos(t) == 2);
    static const int32_t s4[] = {SPM_SAB};
    expect_detok(t, s4, 1, false, " ab"); /* no space prefix: nothing to drop */
    sl_tokenizer_free(t);
}

/* GPT-2's byte-to-unicode alphabet, to name the tiny BPE vocabulary's tokens. */
static void byte_char(int b, char out[4]) {
    static int next_of[256];
    static bool init;
    if (!init) {
        int next = 256;
        for (int i = 0; i < 256; i++) {
            bool printable = (i >= 0x21 && i <= 0x7E) || (i >= 0xA1 && i <= 0xAC) || (i >= 0xAE && i <= 0xFF);
            next_of[i] = printable ? i : next++;
        }
        init = true;
    }
    char enc[4];
    size_t n = sl_utf8_encode((uint32_t)next_of[b], enc);
    memcpy(out, enc, n);
    out[n] = 0;
}

enum { BPE_GT = 256, BPE_HE, BPE_GTHE, BPE_LL, BPE_LLO, BPE_HELLO, BPE_GHELLO, BPE_EOT, BPE_TOOL, BPE_HAN };

static sl_gguf_writer *bpe_writer(const char *pre) {
    static vocab_list v;
    v.n = 0;
    for (int b = 0; b < 256; b++) {
        char c[4];
        byte_char(b, c);
        vocab_add(&v, c, 0, SL_TOKTYPE_NORMAL);
    }
    vocab_add(&v, "\xC4\xA0t", 0, SL_TOKTYPE_NORMAL); /* Ġt */
    vocab_add(&v, "he", 0, SL_TOKTYPE_NORMAL);
    vocab_add(&v, "\xC4\xA0the", 0, SL_TOKTYPE_NORMAL);
    vocab_add(&v, "ll", 0, SL_TOKTYPE_NORMAL);
    vocab_add(&v, "llo", 0, SL_TOKTYPE_NORMAL);
    vocab_add(&v, "hello", 0, SL_TOKTYPE_NORMAL);
    vocab_add(&v, "\xC4\xA0hello", 0, SL_TOKTYPE_NORMAL);
    vocab_add(&v, "<|endoftext|>", 0, SL_TOKTYPE_CONTROL);
    vocab_add(&v, "<tool>", 0, SL_TOKTYPE_USER_DEFINED);
    vocab_add(&v, "\xE4\xB8\xAD", 0, SL_TOKTYPE_NORMAL); /* not in the byte alphabet */
    static const char *const merges[] = {"\xC4\xA0 t", "h e", "\xC4\xA0t he", "l l", "ll o", "he llo",
                                         "\xC4\xA0 hello"};
    sl_gguf_writer *w = sl_gguf_writer_new();
    sl_gguf_set_str(w, "tokenizer.ggml.model", "gpt2");
    if (pre) sl_gguf_set_str(w, "tokenizer.ggml.pre", pre);
    sl_gguf_set_arr_str(w, "tokenizer.ggml.tokens", v.ptr, v.n);
    sl_gguf_set_arr(w, "tokenizer.ggml.token_type", SL_GGUF_INT32, v.type, v.n);
    sl_gguf_set_arr_str(w, "tokenizer.ggml.merges", merges, sizeof merges / sizeof merges[0]);
    sl_gguf_set_u32(w, "tokenizer.ggml.bos_token_id", BPE_EOT);
    sl_gguf_set_u32(w, "tokenizer.ggml.eos_token_id", BPE_EOT);
    return w;
}

static void test_bpe_tiny(void) {
    sl_error err = {{0}};
    sl_tokenizer *t = tok_from_writer(bpe_writer("gpt-2"), &err);
    CHECKF(t != NULL, "%s", err.msg);
    if (!t) return;
    CHECK(sl_tokenizer_kind(t) == SL_TOK_BPE);
    CHECK(strcmp(sl_tokenizer_pre(t), "gpt-2") == 0);
    CHECK(!sl_tokenizer_add_bos(t) && !sl_tokenizer_add_space_prefix(t));
    CHECK(sl_tokenizer_is_eog(t, BPE_EOT));
    /* Merges in rank order within each pre-tokenized word. */
    EXPECT_IDS(t, "the hello", false, false, 't', BPE_HE, BPE_GHELLO);
    EXPECT_IDS(t, " the", false, false, BPE_GTHE);
    EXPECT_IDS(t, "hello", true, false, BPE_HELLO);
    EXPECT_IDS(t, "\n", false, false, '\n');
    EXPECT_IDS(t, "\xC3\xA9", false, false, 0xC3, 0xA9);
    /* Control text is plain text unless parse_special. */
    EXPECT_IDS(t, "<|endoftext|>", false, true, BPE_EOT);
    EXPECT_IDS(t, "<|endoftext|>", false, false, '<', '|', 'e', 'n', 'd', 'o', 'f', 't', 'e', 'x', 't', '|', '>');
    EXPECT_IDS(t, "a<tool>b", false, false, 'a', BPE_TOOL, 'b');
    /* Invalid UTF-8 is tokenized as U+FFFD, as llama.cpp does. */
    EXPECT_IDS(t, "\xFF", false, false, 0xEF, 0xBF, 0xBD);

    expect_piece(t, BPE_GHELLO, false, " hello", 6);
    expect_piece(t, '\n', false, "\n", 1);
    expect_piece(t, 0xC3, false, "\xC3", 1);
    expect_piece(t, BPE_EOT, false, "", 0);
    expect_piece(t, BPE_EOT, true, "<|endoftext|>", 13);
    expect_piece(t, BPE_TOOL, false, "<tool>", 6);
    /* A character outside the byte alphabet, as llama.cpp's llama_decode_text writes it. */
    expect_piece(t, BPE_HAN, false, "[UNK_BYTE_0xe4b8ad\xE4\xB8\xAD]", 22);

    static const int32_t s1[] = {BPE_GHELLO, 0xC3, 0xA9, BPE_EOT};
    expect_detok(t, s1, 4, false, " hello\xC3\xA9"); /* BPE keeps a leading space */
    expect_detok(t, s1, 4, true, " hello\xC3\xA9<|endoftext|>");
    static const char *const texts[] = {"Hello, world!", "  two  spaces\n\nand\ttabs", "\xE4\xB8\xAD\xE6\x96\x87 \xF0\x9F\xA6\x99",
                                        "it's 1234"};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        int32_t *ids;
        size_t n;
        CHECK(sl_tokenize(t, texts[i], strlen(texts[i]), true, false, &ids, &n, &err) == 0);
        expect_detok(t, ids, n, false, texts[i]);
        free(ids);
    }
    sl_tokenizer_free(t);

    /* add_bos from the metadata; llama3's defaults. */
    sl_gguf_writer *w = bpe_writer("gpt-2");
    sl_gguf_set_bool(w, "tokenizer.ggml.add_bos_token", true);
    t = tok_from_writer(w, &err);
    if (t) EXPECT_IDS(t, "hello", true, false, BPE_EOT, BPE_HELLO);
    sl_tokenizer_free(t);
    t = tok_from_writer(bpe_writer("llama-bpe"), &err);
    CHECKF(t != NULL, "%s", err.msg);
    if (t) {
        CHECK(sl_tokenizer_add_bos(t));
        EXPECT_IDS(t, "hello", true, false, BPE_EOT, BPE_HELLO);
    }
    sl_tokenizer_free(t);
    /* No tokenizer.ggml.pre: llama.cpp's default pre-tokenizer. */
    t = tok_from_writer(bpe_writer(NULL), &err);
    CHECKF(t && strcmp(sl_tokenizer_pre(t), "default") == 0, "%s", t ? sl_tokenizer_pre(t) : err.msg);
    sl_tokenizer_free(t);
}

/* Pushes ids one by one and joins what the streaming detokenizer emits. */
static void stream(const sl_tokenizer *t, const int32_t *ids, size_t n, bool continuing, char *out, size_t cap,
                   size_t *emitted_per_push) {
    sl_detok d;
    sl_detok_init(&d, t, false);
    if (continuing) d.at_start = false;
    size_t pcap = sl_tokenizer_max_piece(t) + 16;
    char *piece = malloc(pcap);
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        size_t k = sl_detok_push(&d, ids[i], piece, pcap);
        if (emitted_per_push) emitted_per_push[i] = k;
        if (len + k < cap) memcpy(out + len, piece, k), len += k;
    }
    size_t k = sl_detok_flush(&d, piece, pcap);
    if (len + k < cap) memcpy(out + len, piece, k), len += k;
    out[len] = 0;
    free(piece);
}

static void test_streaming_detok(void) {
    sl_error err = {{0}};
    sl_tokenizer *t = tok_from_writer(bpe_writer("gpt-2"), &err);
    CHECKF(t != NULL, "%s", err.msg);
    if (!t) return;
    char out[256];
    size_t per[8];
    /* A 4-byte character over four tokens: held until complete. */
    static const int32_t emoji[] = {0xF0, 0x9F, 0xA6, 0x99, 'x'};
    stream(t, emoji, 5, false, out, sizeof out, per);
    CHECK(strcmp(out, "\xF0\x9F\xA6\x99x") == 0);
    CHECK(per[0] == 0 && per[1] == 0 && per[2] == 0 && per[3] == 4 && per[4] == 1);
    /* A control token (not rendered) in the middle keeps the held bytes. */
    static const int32_t split_ctl[] = {0xC3, BPE_EOT, 0xA9};
    stream(t, split_ctl, 3, false, out, sizeof out, NULL);
    CHECK(strcmp(out, "\xC3\xA9") == 0);
    /* Invalid bytes become U+FFFD; an interrupted character too. */
    static const int32_t bad1[] = {0xFF, 'a'};
    stream(t, bad1, 2, false, out, sizeof out, per);
    CHECK(strcmp(out, "\xEF\xBF\xBD" "a") == 0 && per[0] == 3);
    static const int32_t bad2[] = {0xC3, 'a'};
    stream(t, bad2, 2, false, out, sizeof out, NULL);
    CHECK(strcmp(out, "\xEF\xBF\xBD" "a") == 0);
    static const int32_t bad3[] = {'a', 0xE2, 0x82};
    stream(t, bad3, 3, false, out, sizeof out, NULL);
    CHECK(strcmp(out, "a\xEF\xBF\xBD") == 0); /* flush: one replacement for the incomplete rest */
    static const int32_t bad4[] = {0xED, 0xA0, 0x80}; /* a surrogate: never valid */
    stream(t, bad4, 3, false, out, sizeof out, NULL);
    CHECK(strcmp(out, "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD") == 0);
    static const int32_t bad5[] = {0xE2, 0x82, 'x'};
    stream(t, bad5, 3, false, out, sizeof out, NULL);
    CHECK(strcmp(out, "\xEF\xBF\xBD" "x") == 0);
    /* Output stays valid UTF-8 whatever the byte tokens. */
    for (int a = 0x80; a < 0x100; a += 7) {
        int32_t ids[4] = {a, (a * 3) & 0xFF, 0xA9, 'z'};
        stream(t, ids, 4, false, out, sizeof out, NULL);
        size_t len = strlen(out);
        for (size_t i = 0; i < len;) {
            int r = sl_utf8_check((const uint8_t *)out + i, len - i);
            CHECKF(r > 0, "invalid output after byte 0x%02X", a);
            if (r <= 0) break;
            i += (size_t)r;
        }
    }
    sl_tokenizer_free(t);

    /* SPM: the first word's space is dropped, unless the ids continue a text. */
    t = tok_from_writer(spm_writer(), &err);
    if (!t) return;
    static const int32_t words[] = {1, SPM_SAB, SPM_SC};
    stream(t, words, 3, false, out, sizeof out, NULL);
    CHECK(strcmp(out, "ab c") == 0);
    stream(t, words, 3, true, out, sizeof out, NULL);
    CHECK(strcmp(out, " ab c") == 0);
    /* A buffer too small: what does not fit is dropped, nothing is written past it. */
    sl_detok d;
    sl_detok_init(&d, t, true);
    char tiny[4] = {'x', 'x', 'x', 'x'};
    size_t k = sl_detok_push(&d, SPM_USER, tiny, 3);
    CHECK(k <= 2 && tiny[k] == 0 && tiny[3] == 'x');
    sl_tokenizer_free(t);
}

/* Bad metadata gives an error that names the problem, never a crash. */
static void expect_load_error(sl_gguf_writer *w, const char *needle) {
    sl_error err = {{0}};
    sl_tokenizer *t = tok_from_writer(w, &err);
    CHECKF(t == NULL, "loaded, expected an error with '%s'", needle);
    CHECKF(t != NULL || strstr(err.msg, needle), "error '%s' does not say '%s'", err.msg, needle);
    sl_tokenizer_free(t);
}

static void test_malformed_vocab(void) {
    sl_gguf_writer *w = sl_gguf_writer_new();
    sl_gguf_set_str(w, "tokenizer.ggml.model", "llama");
    expect_load_error(w, "tokenizer.ggml.tokens");

    w = sl_gguf_writer_new();
    expect_load_error(w, "tokenizer.ggml.model");

    w = spm_writer();
    sl_gguf_set_u32(w, "tokenizer.ggml.model", 3);
    expect_load_error(w, "tokenizer.ggml.model");

    w = spm_writer();
    sl_gguf_set_str(w, "tokenizer.ggml.model", "bert");
    expect_load_error(w, "'bert'");

    w = bpe_writer("nope-pre");
    expect_load_error(w, "unknown pre-tokenizer type: 'nope-pre'");

    w = spm_writer();
    int32_t ints[3] = {1, 2, 3};
    sl_gguf_set_arr(w, "tokenizer.ggml.tokens", SL_GGUF_INT32, ints, 3);
    expect_load_error(w, "tokenizer.ggml.tokens");

    w = spm_writer();
    sl_gguf_set_arr_str(w, "tokenizer.ggml.tokens", NULL, 0);
    expect_load_error(w, "empty");

    w = spm_writer();
    float few[2] = {0, 0};
    sl_gguf_set_arr(w, "tokenizer.ggml.scores", SL_GGUF_FLOAT32, few, 2);
    expect_load_error(w, "tokenizer.ggml.scores");

    w = spm_writer();
    uint8_t types8[270] = {0};
    sl_gguf_set_arr(w, "tokenizer.ggml.token_type", SL_GGUF_UINT8, types8, 270);
    expect_load_error(w, "tokenizer.ggml.token_type");

    w = spm_writer();
    static const char *const dup[] = {"a", "b", "a"};
    sl_gguf_set_arr_str(w, "tokenizer.ggml.tokens", dup, 3);
    sl_gguf_remove_key(w, "tokenizer.ggml.scores");
    sl_gguf_remove_key(w, "tokenizer.ggml.token_type");
    expect_load_error(w, "same text");

    w = bpe_writer("gpt-2");
    sl_gguf_remove_key(w, "tokenizer.ggml.merges");
    expect_load_error(w, "tokenizer.ggml.merges");

    w = bpe_writer("gpt-2");
    static const char *const unknown[] = {"h e", "q zz"};
    sl_gguf_set_arr_str(w, "tokenizer.ggml.merges", unknown, 2);
    expect_load_error(w, "tokenizer.ggml.merges[1]");

    w = bpe_writer("gpt-2");
    static const char *const nospace[] = {"he"};
    sl_gguf_set_arr_str(w, "tokenizer.ggml.merges", nospace, 1);
    expect_load_error(w, "no space");

    w = bpe_writer("gpt-2");
    sl_gguf_set_u32(w, "tokenizer.ggml.merges", 7);
    expect_load_error(w, "tokenizer.ggml.merges");

    w = spm_writer();
    sl_gguf_set_str(w, "tokenizer.ggml.add_bos_token", "yes");
    expect_load_error(w, "add_bos_token");

    /* Odd but harmless: tolerated as llama.cpp does. */
    sl_error err = {{0}};
    w = spm_writer();
    static const char *const odd[] = {"", "<s>", "</s>", "x"};
    sl_gguf_set_arr_str(w, "tokenizer.ggml.tokens", odd, 4);
    sl_gguf_remove_key(w, "tokenizer.ggml.scores");
    sl_gguf_remove_key(w, "tokenizer.ggml.token_type");
    sl_gguf_set_u32(w, "tokenizer.ggml.unknown_token_id", 4000);
    sl_tokenizer *t = tok_from_writer(w, &err);
    CHECKF(t != NULL, "%s", err.msg);
    if (t) {
        CHECK(strcmp(sl_tokenizer_token_text(t, 0), "[EMPTY_0]") == 0);
        CHECK(sl_tokenizer_unk(t) == 0);
        /* No byte tokens: each byte of "\u2581q" falls back to <unk>. */
        EXPECT_IDS(t, "q", false, false, 0, 0, 0, 0);
    }
    sl_tokenizer_free(t);
}

/* ---- llama.cpp's tokenizer vectors (shared test data) ---- */

static bool valid_utf8(const char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        int r = sl_utf8_check((const uint8_t *)s + i, n - i);
        if (r <= 0) return false;
        i += (size_t)r;
    }
    return true;
}

static void vocab_vector(const sl_tokenizer *t, const char *text, size_t len, const char *want_line) {
    int32_t want[4096];
    size_t n_want = 0;
    for (const char *p = want_line; *p && n_want < 4096;) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p) break;
        want[n_want++] = (int32_t)v;
        p = end;
    }
    int32_t *ids = NULL;
    size_t n = 0;
    sl_error err = {{0}};
    int rc = sl_tokenize(t, text, len, false, false, &ids, &n, &err);
    CHECKF(rc == 0, "%s", err.msg);
    bool same = rc == 0 && n == n_want;
    for (size_t i = 0; same && i < n; i++) same = ids[i] == want[i];
    if (!same) {
        char got[256] = "";
        for (size_t i = 0; i < n && strlen(got) < 230; i++) snprintf(got + strlen(got), 16, " %d", ids[i]);
        CHECKF(same, "'%.*s': got [%s ] want [%s ]", (int)(len > 60 ? 60 : len), text, got, want_line);
    }
    /* detokenize(tokenize(x)) == x for valid UTF-8 that needed no <unk>. */
    bool has_unk = false;
    for (size_t i = 0; i < n; i++) has_unk |= ids[i] == sl_tokenizer_unk(t);
    if (rc == 0 && !has_unk && valid_utf8(text, len)) {
        char *back = sl_detokenize(t, ids, n, false);
        CHECKF(back && strlen(back) == len && memcmp(back, text, len) == 0, "round trip of '%.*s' gave '%s'",
               (int)(len > 60 ? 60 : len), text, back ? back : "(null)");
        free(back);
    }
    free(ids);
}

static void run_vocab_file(const char *dir, const char *name) {
    char path[1024], inp_path[1100], out_path[1100];
    snprintf(path, sizeof path, "%.700s/%.255s", dir, name);
    snprintf(inp_path, sizeof inp_path, "%.1023s.inp", path);
    snprintf(out_path, sizeof out_path, "%.1023s.out", path);
    size_t inp_size, out_size;
    char *inp = read_file(inp_path, &inp_size);
    char *out = read_file(out_path, &out_size);
    if (!inp || !out) {
        free(inp);
        free(out);
        return; /* a vocabulary without vectors */
    }
    sl_error err = {{0}};
    sl_gguf *g = sl_gguf_open_file(path, &err);
    sl_tokenizer *t = g ? sl_tokenizer_from_gguf(g, &err) : NULL;
    char case_name[512];
    snprintf(case_name, sizeof case_name, "vocab %.255s: load", name);
    RUN_CASE(case_name, CHECKF(t != NULL, "%s", err.msg));
    sl_gguf_close(g);
    if (t) {
        /* Inputs are separated by "\n__ggml_vocab_test__\n"; outputs are one line each. */
        static const char sep[] = "\n__ggml_vocab_test__\n";
        char *ip = inp, *op = out;
        int index = 0;
        for (;;) {
            char *e = strstr(ip, sep);
            size_t il = e ? (size_t)(e - ip) : strlen(ip);
            char *ol = strchr(op, '\n');
            if (ol) *ol = 0;
            if (!e && il == 0 && !*op) break;
            snprintf(case_name, sizeof case_name, "vocab %.255s #%d", name, index++);
            RUN_CASE(case_name, vocab_vector(t, ip, il, op));
            if (!e) break;
            ip = e + sizeof sep - 1;
            op = ol ? ol + 1 : op + strlen(op);
        }
        sl_tokenizer_free(t);
    }
    free(inp);
    free(out);
}

static void run_vocab_conformance(void) {
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/vocab", test_data_dir());
    DIR *d = opendir(dir);
    if (!d) {
        skip_or_fail("tokenizer vectors (vocab/)");
        return;
    }
    char names[64][256];
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < 64) {
        size_t len = strlen(e->d_name);
        if (len > 5 && strcmp(e->d_name + len - 5, ".gguf") == 0 && strncmp(e->d_name, "ggml-vocab-", 11) == 0)
            snprintf(names[n++], sizeof names[0], "%s", e->d_name);
    }
    closedir(d);
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++)
            if (strcmp(names[j], names[i]) < 0) {
                char tmp[256];
                memcpy(tmp, names[i], sizeof tmp);
                memcpy(names[i], names[j], sizeof tmp);
                memcpy(names[j], tmp, sizeof tmp);
            }
    RUN_CASE("vocab files present", CHECKF(n > 0, "no ggml-vocab-*.gguf in %s", dir));
    for (int i = 0; i < n; i++) run_vocab_file(dir, names[i]);
}

/* ---- reference models: prompt tokens and generated pieces ---- */

/* The prompt the reference run used, from its summary ("prompt: \"...\""). */
static bool ref_prompt(const char *prefix, char *out, size_t cap) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s.summary.txt", test_data_dir(), prefix);
    size_t size;
    char *s = read_file(path, &size);
    if (!s) return false;
    char *p = strstr(s, "\nprompt: \"");
    bool ok = false;
    if (p) {
        p += 10;
        char *q = strchr(p, '\n');
        if (q && q > p && q[-1] == '"' && (size_t)(q - 1 - p) < cap) {
            memcpy(out, p, (size_t)(q - 1 - p));
            out[q - 1 - p] = 0;
            ok = true;
        }
    }
    free(s);
    return ok;
}

static void check_prompt_tokens(const sl_tokenizer *t, const char *model, const char *prefix, const char *load_error) {
    CHECKF(t != NULL, "%s: %s", model, load_error);
    if (!t) return;
    char prompt[512];
    CHECKF(ref_prompt(prefix, prompt, sizeof prompt), "no prompt in %s.summary.txt", prefix);
    char path[1024];
    snprintf(path, sizeof path, "%s/%s.prompt_tokens.txt", test_data_dir(), prefix);
    size_t size;
    char *want = read_file(path, &size);
    CHECKF(want != NULL, "cannot read %s", path);
    if (!want) return;
    int32_t *ids = NULL;
    size_t n = 0;
    sl_error err = {{0}};
    CHECKF(sl_tokenize(t, prompt, strlen(prompt), true, true, &ids, &n, &err) == 0, "%s", err.msg);
    char got[2048] = "";
    for (size_t i = 0; i < n && strlen(got) < 2000; i++) snprintf(got + strlen(got), 16, "%d\n", ids[i]);
    CHECKF(strcmp(got, want) == 0, "prompt '%s': got\n%s want\n%s", prompt, got, want);
    free(want);
    free(ids);
}

/* The pieces of the reference's generated tokens ("id<TAB>piece", newlines as \n). */
static void check_gen_pieces(const sl_tokenizer *t, const char *prefix) {
    if (!t) return; /* reported by check_prompt_tokens */
    char path[1024];
    snprintf(path, sizeof path, "%s/%s.gen_tokens.txt", test_data_dir(), prefix);
    size_t size;
    char *s = read_file(path, &size);
    CHECKF(s != NULL, "cannot read %s", path);
    if (!s) return;
    int lines = 0;
    for (char *line = s; *line;) {
        char *nl = strchr(line, '\n');
        if (nl) *nl = 0;
        char *tab = strchr(line, '\t');
        if (tab) {
            int32_t id = (int32_t)strtol(line, NULL, 10);
            const char *piece;
            size_t n = sl_token_to_piece(t, id, true, &piece);
            char esc[256];
            size_t k = 0;
            for (size_t i = 0; i < n && k + 3 < sizeof esc; i++) {
                char c = piece[i];
                if (c == '\n') esc[k++] = '\\', esc[k++] = 'n';
                else if (c == '\t') esc[k++] = '\\', esc[k++] = 't';
                else if (c == '\r') esc[k++] = '\\', esc[k++] = 'r';
                else esc[k++] = c;
            }
            esc[k] = 0;
            CHECKF(strcmp(esc, tab + 1) == 0, "token %d: piece '%s', reference '%s'", id, esc, tab + 1);
            lines++;
        }
        if (!nl) break;
        line = nl + 1;
    }
    CHECKF(lines > 0, "no tokens in %s", path);
    free(s);
}

static void run_model_refs(void) {
    char path[1024];
    snprintf(path, sizeof path, "%s/index.tsv", test_data_dir());
    size_t size;
    char *index = read_file(path, &size);
    if (!index) {
        skip_or_fail("reference models (index.tsv)");
        return;
    }
    for (char *line = index; *line;) {
        char *nl = strchr(line, '\n');
        if (nl) *nl = 0;
        char model[512], prefix[512];
        if (line[0] != '#' && sscanf(line, "%511[^\t]\t%511[^\t]", model, prefix) == 2) {
            char model_path[1100], name[600];
            snprintf(model_path, sizeof model_path, "%s/%s", test_data_dir(), model);
            sl_error err = {{0}};
            sl_gguf *g = sl_gguf_open_file(model_path, &err);
            sl_tokenizer *t = g ? sl_tokenizer_from_gguf(g, &err) : NULL;
            sl_gguf_close(g);
            snprintf(name, sizeof name, "prompt tokens %s", prefix);
            RUN_CASE(name, check_prompt_tokens(t, model, prefix, err.msg));
            snprintf(name, sizeof name, "generated pieces %s", prefix);
            RUN_CASE(name, check_gen_pieces(t, prefix));
            sl_tokenizer_free(t);
        }
        if (!nl) break;
        line = nl + 1;
    }
    free(index);
}

/* 100 KB of text with the 128k-token Llama 3 vocabulary. */
static void check_speed(const sl_tokenizer *t, const char *load_error) {
    CHECKF(t != NULL, "%s", load_error);
    if (!t) return;
    static const char *const parts[] = {"The quick brown fox jumps over the lazy dog. ", "It's 2024, isn't it?\n",
                                        "\xE4\xB8\xAD\xE6\x96\x87\xE5\xAD\x97 ", "    indented code();\n",
                                        "\xF0\x9F\xA6\x99 \xC3\xA9t\xC3\xA9 3.14159 ", "<|eot_id|> "};
    size_t cap = 100 * 1024, len = 0;
    char *text = malloc(cap + 64);
    if (!text) return;
    for (size_t i = 0; len < cap; i++) {
        size_t k = strlen(parts[i % 6]);
        memcpy(text + len, parts[i % 6], k);
        len += k;
    }
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    int32_t *ids = NULL;
    size_t n = 0;
    sl_error err = {{0}};
    CHECKF(sl_tokenize(t, text, len, true, false, &ids, &n, &err) == 0, "%s", err.msg);
    clock_gettime(CLOCK_MONOTONIC, &b);
    double secs = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
    /* Measured: about 0.01 s. The bound only catches a blow-up (say, quadratic
     * backtracking), not a slow machine. */
    double limit = getenv("SL_SANITIZED") ? 30.0 : 5.0;
    fprintf(stderr, "  tokenized %zu bytes into %zu tokens in %.3f s\n", len, n, secs);
    CHECKF(secs < limit, "%.3f s", secs);
    CHECK(n > len / 8);
    free(ids);
    free(text);
}

static void run_speed(void) {
    char path[1024];
    snprintf(path, sizeof path, "%s/vocab/ggml-vocab-llama-bpe.gguf", test_data_dir());
    sl_error err = {{0}};
    sl_gguf *g = sl_gguf_open_file(path, &err);
    if (!g) {
        skip_or_fail("tokenizer speed (vocab/ggml-vocab-llama-bpe.gguf)");
        return;
    }
    sl_tokenizer *t = sl_tokenizer_from_gguf(g, &err);
    sl_gguf_close(g);
    RUN_CASE("speed: 100 KB with Llama 3", check_speed(t, err.msg));
    sl_tokenizer_free(t);
}

int main(void) {
    RUN(test_unicode_categories);
    RUN(test_unicode_space_and_case);
    RUN(test_utf8);
    RUN(test_regex_basics);
    RUN(test_regex_unicode_classes);
    RUN(test_regex_assertions);
    RUN(test_regex_errors);
    RUN(test_pretok_gpt2);
    RUN(test_pretok_llama3);
    RUN(test_pretok_table);
    RUN(test_pretok_others);
    RUN(test_spm_tiny);
    RUN(test_bpe_tiny);
    RUN(test_streaming_detok);
    RUN(test_malformed_vocab);

    if (!testdata_present("index.tsv")) {
        skip_or_fail("tokenizer conformance");
    } else {
        run_vocab_conformance();
        run_model_refs();
        run_speed();
    }
    TEST_SUMMARY();
}
