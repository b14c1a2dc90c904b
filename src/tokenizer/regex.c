/* regex.c - the backtracking regex engine of the pre-tokenizers (see regex.h).
 *
 * A pattern is parsed into a small syntax tree, then compiled into a program
 * for a backtracking machine: SPLIT pushes the alternative on a stack and
 * failure pops it, so alternatives and quantifiers are tried in ECMAScript's
 * order. Lookarounds and atomic groups run their sub-program by a nested call
 * (their depth is bounded by the pattern's nesting). Greedy repetition of a
 * single-character matcher has its own instruction that consumes the whole
 * run at once and gives characters back one by one on failure. */
#include "tokenizer/regex.h"

#include <stdlib.h>
#include <string.h>

#include "tokenizer/unicode.h"

#define MAX_NESTING 100
#define MAX_PROGRAM (1u << 18)
#define MAX_STACK ((size_t)1 << 26) /* backtrack entries: bounds memory on hostile input */
#define REPEAT_INF UINT32_MAX

/* ---- character classes ---- */

enum { IT_RANGE, IT_CATS, IT_SPACE, IT_DIGIT, IT_WORD, IT_HAN };

typedef struct re_item {
    uint8_t kind;
    bool neg;       /* \S, \P{..}, \D, \W inside a class */
    uint32_t lo, hi; /* range; for IT_CATS lo is a mask of categories */
} re_item;

typedef struct re_class {
    uint32_t first, n; /* items */
    bool neg;          /* [^...] */
    bool icase;
} re_class;

/* ---- program ---- */

enum {
    OP_CHAR,   /* arg: code point (lowercased when flag & F_ICASE) */
    OP_ANY,    /* . */
    OP_CLASS,  /* arg: class index */
    OP_SPLIT,  /* try x, on failure y */
    OP_JMP,    /* x */
    OP_SAVE,   /* regs[arg] = position */
    OP_CHECK,  /* fail when regs[arg] == position (an empty iteration) */
    OP_BOL,
    OP_EOL,
    OP_WORDB,  /* flag & F_NEG: \B */
    OP_LOOK,   /* sub-program at pc+1 up to OP_SUB; continue at x; flag & F_NEG: (?!) */
    OP_ATOMIC, /* sub-program at pc+1 up to OP_SUB; continue at x from where it ended */
    OP_SUB,    /* end of a sub-program */
    OP_REPEAT, /* greedy: matcher at pc+1, arg = min, y = max (-1: no limit); continue at pc+2 */
    OP_MATCH,
};
enum { F_ICASE = 1, F_NEG = 2 };

typedef struct re_inst {
    uint8_t op;
    uint8_t flag;
    uint32_t arg;
    int32_t x, y;
} re_inst;

struct sl_regex {
    re_inst *prog;
    size_t n_prog, cap_prog;
    re_item *items;
    size_t n_items, cap_items;
    re_class *classes;
    size_t n_classes, cap_classes;
    uint32_t n_regs;
    unsigned flags;
};

/* ---- syntax tree ---- */

enum { N_EMPTY, N_CHAR, N_ANY, N_CLASS, N_BOL, N_EOL, N_WORDB, N_CAT, N_ALT, N_LOOK, N_ATOMIC, N_REPEAT };

typedef struct node {
    uint8_t kind;
    bool neg;        /* N_LOOK (?!), N_WORDB \B */
    bool icase;      /* N_CHAR */
    bool greedy;     /* N_REPEAT */
    bool possessive; /* N_REPEAT */
    uint32_t val;    /* N_CHAR code point, N_CLASS index */
    uint32_t min, max;
    int32_t child, last_child, next; /* children are a linked list */
} node;

typedef struct parser {
    const uint32_t *p;
    size_t n, i;
    sl_regex *re;
    node *nodes;
    size_t n_nodes, cap_nodes;
    int depth;
    sl_error *err;
} parser;

static bool grow(void **ptr, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return true;
    if (need > SIZE_MAX / 4 / elem) return false; /* the size would overflow */
    size_t c = *cap ? *cap : 16;
    while (c < need) c *= 2;
    void *q = realloc(*ptr, c * elem);
    if (!q) return false;
    *ptr = q;
    *cap = c;
    return true;
}

static int32_t new_node(parser *ps, uint8_t kind) {
    if (ps->n_nodes >= MAX_PROGRAM) {
        sl_err(ps->err, "regex: pattern too large");
        return -1;
    }
    if (!grow((void **)&ps->nodes, &ps->cap_nodes, ps->n_nodes + 1, sizeof(node))) {
        sl_err(ps->err, "regex: out of memory");
        return -1;
    }
    node *nd = &ps->nodes[ps->n_nodes];
    memset(nd, 0, sizeof *nd);
    nd->kind = kind;
    nd->child = nd->last_child = nd->next = -1;
    return (int32_t)ps->n_nodes++;
}

static void add_child(parser *ps, int32_t parent, int32_t child) {
    node *p = &ps->nodes[parent];
    if (p->last_child < 0) p->child = child;
    else ps->nodes[p->last_child].next = child;
    p->last_child = child;
}

static bool at_end(const parser *ps) { return ps->i >= ps->n; }
static uint32_t peek(const parser *ps) { return ps->i < ps->n ? ps->p[ps->i] : 0; }
static uint32_t peek_at(const parser *ps, size_t k) { return ps->i + k < ps->n ? ps->p[ps->i + k] : 0; }

static int perr(parser *ps, const char *what) {
    return sl_err(ps->err, "regex: %s at offset %zu", what, ps->i);
}

/* Han ideographs as llama.cpp's unicode_cpt_is_han lists them. */
static bool is_han(uint32_t cp) {
    return (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF) ||
           (cp >= 0x20000 && cp <= 0x2A6DF) || (cp >= 0x2A700 && cp <= 0x2EBEF) ||
           (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0x2F800 && cp <= 0x2FA1F);
}

static bool is_word_char(uint32_t cp) {
    return (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z') || (cp >= '0' && cp <= '9') || cp == '_';
}

#define CAT_BIT(c) (1u << (c))
#define MASK_L (CAT_BIT(SL_UC_Lu) | CAT_BIT(SL_UC_Ll) | CAT_BIT(SL_UC_Lt) | CAT_BIT(SL_UC_Lm) | CAT_BIT(SL_UC_Lo))
#define MASK_M (CAT_BIT(SL_UC_Mn) | CAT_BIT(SL_UC_Mc) | CAT_BIT(SL_UC_Me))
#define MASK_N (CAT_BIT(SL_UC_Nd) | CAT_BIT(SL_UC_Nl) | CAT_BIT(SL_UC_No))
#define MASK_P                                                                                  \
    (CAT_BIT(SL_UC_Pc) | CAT_BIT(SL_UC_Pd) | CAT_BIT(SL_UC_Ps) | CAT_BIT(SL_UC_Pe) |           \
     CAT_BIT(SL_UC_Pi) | CAT_BIT(SL_UC_Pf) | CAT_BIT(SL_UC_Po))
#define MASK_S (CAT_BIT(SL_UC_Sm) | CAT_BIT(SL_UC_Sc) | CAT_BIT(SL_UC_Sk) | CAT_BIT(SL_UC_So))
#define MASK_Z (CAT_BIT(SL_UC_Zs) | CAT_BIT(SL_UC_Zl) | CAT_BIT(SL_UC_Zp))
#define MASK_C (CAT_BIT(SL_UC_Cc) | CAT_BIT(SL_UC_Cf) | CAT_BIT(SL_UC_Cs) | CAT_BIT(SL_UC_Co) | CAT_BIT(SL_UC_Cn))

/* Category mask of a \p{name}; 0 when unknown. *han is set for \p{Han}. */
static uint32_t property_mask(const char *name, bool llama, bool *han) {
    static const struct {
        const char *name;
        uint32_t mask;
    } props[] = {
        {"L", MASK_L}, {"M", MASK_M}, {"N", MASK_N}, {"P", MASK_P}, {"S", MASK_S}, {"Z", MASK_Z}, {"C", MASK_C},
        {"Lu", CAT_BIT(SL_UC_Lu)}, {"Ll", CAT_BIT(SL_UC_Ll)}, {"Lt", CAT_BIT(SL_UC_Lt)},
        {"Lm", CAT_BIT(SL_UC_Lm)}, {"Lo", CAT_BIT(SL_UC_Lo)}, {"Mn", CAT_BIT(SL_UC_Mn)},
        {"Mc", CAT_BIT(SL_UC_Mc)}, {"Me", CAT_BIT(SL_UC_Me)}, {"Nd", CAT_BIT(SL_UC_Nd)},
        {"Nl", CAT_BIT(SL_UC_Nl)}, {"No", CAT_BIT(SL_UC_No)}, {"Pc", CAT_BIT(SL_UC_Pc)},
        {"Pd", CAT_BIT(SL_UC_Pd)}, {"Ps", CAT_BIT(SL_UC_Ps)}, {"Pe", CAT_BIT(SL_UC_Pe)},
        {"Pi", CAT_BIT(SL_UC_Pi)}, {"Pf", CAT_BIT(SL_UC_Pf)}, {"Po", CAT_BIT(SL_UC_Po)},
        {"Sm", CAT_BIT(SL_UC_Sm)}, {"Sc", CAT_BIT(SL_UC_Sc)}, {"Sk", CAT_BIT(SL_UC_Sk)},
        {"So", CAT_BIT(SL_UC_So)}, {"Zs", CAT_BIT(SL_UC_Zs)}, {"Zl", CAT_BIT(SL_UC_Zl)},
        {"Zp", CAT_BIT(SL_UC_Zp)}, {"Cc", CAT_BIT(SL_UC_Cc)}, {"Cf", CAT_BIT(SL_UC_Cf)},
        {"Cs", CAT_BIT(SL_UC_Cs)}, {"Co", CAT_BIT(SL_UC_Co)}, {"Cn", CAT_BIT(SL_UC_Cn)},
    };
    *han = false;
    if (strcmp(name, "Han") == 0) {
        *han = true;
        return 0;
    }
    for (size_t k = 0; k < sizeof props / sizeof props[0]; k++) {
        if (strcmp(props[k].name, name) == 0) {
            /* llama.cpp maps every letter subcategory to "letter". */
            if (llama && name[0] == 'L' && name[1]) return MASK_L;
            return props[k].mask;
        }
    }
    return 0;
}

static int add_item(parser *ps, uint8_t kind, bool neg, uint32_t lo, uint32_t hi) {
    sl_regex *re = ps->re;
    if (!grow((void **)&re->items, &re->cap_items, re->n_items + 1, sizeof(re_item)))
        return sl_err(ps->err, "regex: out of memory");
    re->items[re->n_items++] = (re_item){kind, neg, lo, hi};
    return 0;
}

static int hex_value(uint32_t c) {
    if (c >= '0' && c <= '9') return (int)(c - '0');
    if (c >= 'a' && c <= 'f') return (int)(c - 'a' + 10);
    if (c >= 'A' && c <= 'F') return (int)(c - 'A' + 10);
    return -1;
}

/* Reads exactly `digits` hex digits, or {H...} when braces are allowed. */
static int parse_hex(parser *ps, int digits, uint32_t *out) {
    uint32_t v = 0;
    if (peek(ps) == '{') {
        ps->i++;
        int n = 0;
        while (!at_end(ps) && peek(ps) != '}') {
            int h = hex_value(peek(ps));
            if (h < 0 || ++n > 6) return perr(ps, "bad hex escape");
            v = v * 16 + (uint32_t)h;
            ps->i++;
        }
        if (at_end(ps) || n == 0) return perr(ps, "bad hex escape");
        ps->i++;
    } else {
        for (int k = 0; k < digits; k++) {
            int h = hex_value(peek(ps));
            if (h < 0) return perr(ps, "bad hex escape");
            v = v * 16 + (uint32_t)h;
            ps->i++;
        }
    }
    if (v > SL_UNICODE_MAX) return perr(ps, "code point out of range");
    *out = v;
    return 0;
}

/* The escape after a backslash (already consumed). Sets either *cp (a single
 * character, *is_set false) or appends a set item (*is_set true). in_class:
 * \b means backspace. */
static int parse_escape(parser *ps, bool in_class, uint32_t *cp, bool *is_set, bool *is_wordb) {
    *is_set = false;
    *is_wordb = false;
    if (at_end(ps)) return perr(ps, "trailing backslash");
    uint32_t c = ps->p[ps->i++];
    switch (c) {
    case 't': *cp = '\t'; return 0;
    case 'n': *cp = '\n'; return 0;
    case 'r': *cp = '\r'; return 0;
    case 'f': *cp = '\f'; return 0;
    case 'v': *cp = '\v'; return 0;
    case '0': *cp = 0; return 0;
    case 'x': return parse_hex(ps, 2, cp);
    case 'u': return parse_hex(ps, 4, cp);
    case 'b':
        if (in_class) {
            *cp = 8;
            return 0;
        }
        *is_wordb = true;
        return 0;
    case 'B':
        if (in_class) return perr(ps, "\\B in a class");
        *is_wordb = true;
        *cp = 'B';
        return 0;
    case 's': case 'S': *is_set = true; return add_item(ps, IT_SPACE, c == 'S', 0, 0);
    case 'd': case 'D': *is_set = true; return add_item(ps, IT_DIGIT, c == 'D', 0, 0);
    case 'w': case 'W': *is_set = true; return add_item(ps, IT_WORD, c == 'W', 0, 0);
    case 'p': case 'P': {
        char name[16];
        size_t len = 0;
        if (peek(ps) == '{') {
            ps->i++;
            while (!at_end(ps) && peek(ps) != '}') {
                uint32_t ch = ps->p[ps->i++];
                if (ch > 127 || len + 1 >= sizeof name) return perr(ps, "bad property name");
                name[len++] = (char)ch;
            }
            if (at_end(ps)) return perr(ps, "unterminated \\p{");
            ps->i++;
        } else if (!at_end(ps) && peek(ps) < 128) {
            name[len++] = (char)ps->p[ps->i++];
        }
        name[len] = 0;
        bool han;
        uint32_t mask = property_mask(name, ps->re->flags & SL_RE_LLAMACPP, &han);
        if (!han && !mask) return sl_err(ps->err, "regex: unknown property \\p{%s}", name);
        *is_set = true;
        return add_item(ps, han ? IT_HAN : IT_CATS, c == 'P', mask, 0);
    }
    default:
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '1' && c <= '9'))
            return perr(ps, "unsupported escape");
        *cp = c;
        return 0;
    }
}

static int new_class(parser *ps, uint32_t first, bool neg, bool icase, uint32_t *index) {
    sl_regex *re = ps->re;
    if (!grow((void **)&re->classes, &re->cap_classes, re->n_classes + 1, sizeof(re_class)))
        return sl_err(ps->err, "regex: out of memory");
    re->classes[re->n_classes] = (re_class){first, (uint32_t)(re->n_items - first), neg, icase};
    *index = (uint32_t)re->n_classes++;
    return 0;
}

/* [...] after the '['. */
static int parse_class(parser *ps, bool icase, int32_t *out) {
    uint32_t first = (uint32_t)ps->re->n_items;
    bool neg = false;
    if (peek(ps) == '^') {
        neg = true;
        ps->i++;
    }
    for (;;) {
        if (at_end(ps)) return perr(ps, "unterminated [");
        uint32_t c = ps->p[ps->i];
        if (c == ']') {
            ps->i++;
            break;
        }
        uint32_t lo;
        bool is_set = false, wordb;
        ps->i++;
        if (c == '\\') {
            if (parse_escape(ps, true, &lo, &is_set, &wordb)) return -1;
        } else {
            lo = c;
        }
        if (is_set) continue;
        /* A range a-b, unless the '-' is last or the end is a set. */
        if (peek(ps) == '-' && ps->i + 1 < ps->n && peek_at(ps, 1) != ']') {
            ps->i++;
            uint32_t hi = ps->p[ps->i++];
            if (hi == '\\') {
                bool hi_set = false;
                if (parse_escape(ps, true, &hi, &hi_set, &wordb)) return -1;
                if (hi_set) { /* "a-\s": the '-' is literal */
                    if (add_item(ps, IT_RANGE, false, lo, lo) || add_item(ps, IT_RANGE, false, '-', '-'))
                        return -1;
                    continue;
                }
            }
            if (hi < lo) return perr(ps, "range out of order in class");
            if (add_item(ps, IT_RANGE, false, lo, hi)) return -1;
            continue;
        }
        if (add_item(ps, IT_RANGE, false, lo, lo)) return -1;
    }
    uint32_t idx;
    if (new_class(ps, first, neg, icase, &idx)) return -1;
    int32_t nd = new_node(ps, N_CLASS);
    if (nd < 0) return -1;
    ps->nodes[nd].val = idx;
    *out = nd;
    return 0;
}

static int parse_alt(parser *ps, bool icase, int32_t *out);

/* Reads {n}, {n,}, {n,m} if they follow; returns 1 when one was read. */
static int parse_braces(parser *ps, uint32_t *min, uint32_t *max) {
    size_t i = ps->i + 1;
    uint64_t a = 0, b = 0;
    size_t digits = 0;
    while (i < ps->n && ps->p[i] >= '0' && ps->p[i] <= '9') {
        a = a * 10 + (ps->p[i] - '0');
        if (a > 100000) return perr(ps, "repeat count too large");
        i++;
        digits++;
    }
    if (!digits) return 0;
    if (i < ps->n && ps->p[i] == '}') {
        *min = *max = (uint32_t)a;
        ps->i = i + 1;
        return 1;
    }
    if (i >= ps->n || ps->p[i] != ',') return 0;
    i++;
    digits = 0;
    while (i < ps->n && ps->p[i] >= '0' && ps->p[i] <= '9') {
        b = b * 10 + (ps->p[i] - '0');
        if (b > 100000) return perr(ps, "repeat count too large");
        i++;
        digits++;
    }
    if (i >= ps->n || ps->p[i] != '}') return 0;
    *min = (uint32_t)a;
    *max = digits ? (uint32_t)b : REPEAT_INF;
    if (*max < *min) return perr(ps, "repeat counts out of order");
    ps->i = i + 1;
    return 1;
}

static int parse_atom(parser *ps, bool icase, int32_t *out) {
    uint32_t c = ps->p[ps->i];
    int32_t nd;
    switch (c) {
    case '(': {
        ps->i++;
        if (++ps->depth > MAX_NESTING) return perr(ps, "groups nested too deeply");
        uint8_t kind = N_CAT; /* a plain group */
        bool neg = false, group_icase = icase;
        if (peek(ps) == '?') {
            uint32_t k = peek_at(ps, 1);
            if (k == ':') {
                ps->i += 2;
            } else if (k == '=' || k == '!') {
                kind = N_LOOK;
                neg = k == '!';
                ps->i += 2;
            } else if (k == '>') {
                kind = N_ATOMIC;
                ps->i += 2;
            } else if (k == 'i' && peek_at(ps, 2) == ':') {
                group_icase = true;
                ps->i += 3;
            } else {
                return perr(ps, "unsupported group");
            }
        }
        int32_t inner = -1;
        if (parse_alt(ps, group_icase, &inner)) return -1;
        if (peek(ps) != ')' || at_end(ps)) return perr(ps, "missing )");
        ps->i++;
        ps->depth--;
        if (kind == N_CAT) {
            *out = inner;
            return 0;
        }
        nd = new_node(ps, kind);
        if (nd < 0) return -1;
        ps->nodes[nd].neg = neg;
        add_child(ps, nd, inner);
        *out = nd;
        return 0;
    }
    case '[':
        ps->i++;
        return parse_class(ps, icase, out);
    case '.':
        ps->i++;
        nd = new_node(ps, N_ANY);
        break;
    case '^':
        ps->i++;
        nd = new_node(ps, N_BOL);
        break;
    case '$':
        ps->i++;
        nd = new_node(ps, N_EOL);
        break;
    case '*': case '+': case '?':
        return perr(ps, "nothing to repeat");
    case '{': {
        uint32_t a, b;
        int r = parse_braces(ps, &a, &b);
        if (r < 0) return -1;
        if (r > 0) return perr(ps, "nothing to repeat");
        ps->i++;
        nd = new_node(ps, N_CHAR);
        if (nd < 0) return -1;
        ps->nodes[nd].val = '{';
        break;
    }
    case '\\': {
        ps->i++;
        uint32_t cp = 0;
        bool is_set, wordb;
        uint32_t first = (uint32_t)ps->re->n_items;
        if (parse_escape(ps, false, &cp, &is_set, &wordb)) return -1;
        if (wordb) {
            nd = new_node(ps, N_WORDB);
            if (nd < 0) return -1;
            ps->nodes[nd].neg = cp == 'B';
            break;
        }
        if (is_set) {
            uint32_t idx;
            if (new_class(ps, first, false, icase, &idx)) return -1;
            nd = new_node(ps, N_CLASS);
            if (nd < 0) return -1;
            ps->nodes[nd].val = idx;
            break;
        }
        nd = new_node(ps, N_CHAR);
        if (nd < 0) return -1;
        ps->nodes[nd].val = icase ? sl_uni_tolower(cp) : cp;
        ps->nodes[nd].icase = icase;
        break;
    }
    default:
        ps->i++;
        nd = new_node(ps, N_CHAR);
        if (nd < 0) return -1;
        ps->nodes[nd].val = icase ? sl_uni_tolower(c) : c;
        ps->nodes[nd].icase = icase;
        break;
    }
    if (nd < 0) return -1;
    *out = nd;
    return 0;
}

static int parse_repeat(parser *ps, bool icase, int32_t *out) {
    int32_t atom = -1;
    if (parse_atom(ps, icase, &atom)) return -1;
    if (at_end(ps)) {
        *out = atom;
        return 0;
    }
    uint32_t c = peek(ps), min, max;
    if (c == '*') {
        min = 0, max = REPEAT_INF;
        ps->i++;
    } else if (c == '+') {
        min = 1, max = REPEAT_INF;
        ps->i++;
    } else if (c == '?') {
        min = 0, max = 1;
        ps->i++;
    } else if (c == '{') {
        int r = parse_braces(ps, &min, &max);
        if (r < 0) return -1;
        if (r == 0) {
            *out = atom;
            return 0;
        }
    } else {
        *out = atom;
        return 0;
    }
    int32_t nd = new_node(ps, N_REPEAT);
    if (nd < 0) return -1;
    node *r = &ps->nodes[nd];
    r->min = min;
    r->max = max;
    r->greedy = true;
    if (peek(ps) == '?' && !at_end(ps)) {
        r->greedy = false;
        ps->i++;
    } else if (peek(ps) == '+' && !at_end(ps)) {
        r->possessive = true;
        ps->i++;
    }
    add_child(ps, nd, atom);
    c = peek(ps);
    if (!at_end(ps) && (c == '*' || c == '+' || c == '?')) return perr(ps, "nothing to repeat");
    *out = nd;
    return 0;
}

static int parse_concat(parser *ps, bool icase, int32_t *out) {
    int32_t cat = new_node(ps, N_CAT);
    if (cat < 0) return -1;
    while (!at_end(ps) && peek(ps) != '|' && peek(ps) != ')') {
        int32_t item = -1;
        if (parse_repeat(ps, icase, &item)) return -1;
        add_child(ps, cat, item);
    }
    if (ps->nodes[cat].child < 0) ps->nodes[cat].kind = N_EMPTY;
    else if (ps->nodes[ps->nodes[cat].child].next < 0) {
        *out = ps->nodes[cat].child; /* a single item needs no sequence */
        return 0;
    }
    *out = cat;
    return 0;
}

static int parse_alt(parser *ps, bool icase, int32_t *out) {
    int32_t first = -1;
    if (parse_concat(ps, icase, &first)) return -1;
    if (at_end(ps) || peek(ps) != '|') {
        *out = first;
        return 0;
    }
    int32_t alt = new_node(ps, N_ALT);
    if (alt < 0) return -1;
    add_child(ps, alt, first);
    while (!at_end(ps) && peek(ps) == '|') {
        ps->i++;
        int32_t next = -1;
        if (parse_concat(ps, icase, &next)) return -1;
        add_child(ps, alt, next);
    }
    *out = alt;
    return 0;
}

/* ---- compiling ---- */

static bool nullable(const parser *ps, int32_t n) {
    const node *nd = &ps->nodes[n];
    switch (nd->kind) {
    case N_CHAR: case N_ANY: case N_CLASS:
        return false;
    case N_CAT:
        for (int32_t c = nd->child; c >= 0; c = ps->nodes[c].next)
            if (!nullable(ps, c)) return false;
        return true;
    case N_ALT:
        for (int32_t c = nd->child; c >= 0; c = ps->nodes[c].next)
            if (nullable(ps, c)) return true;
        return false;
    case N_REPEAT:
        return nd->min == 0 || nullable(ps, nd->child);
    case N_ATOMIC:
        return nullable(ps, nd->child);
    default:
        return true;
    }
}

static int32_t emit(parser *ps, uint8_t op, uint8_t flag, uint32_t arg, int32_t x, int32_t y) {
    sl_regex *re = ps->re;
    if (re->n_prog >= MAX_PROGRAM) {
        sl_err(ps->err, "regex: pattern too large");
        return -1;
    }
    if (!grow((void **)&re->prog, &re->cap_prog, re->n_prog + 1, sizeof(re_inst))) {
        sl_err(ps->err, "regex: out of memory");
        return -1;
    }
    re->prog[re->n_prog] = (re_inst){op, flag, arg, x, y};
    return (int32_t)re->n_prog++;
}

static int compile_node(parser *ps, int32_t n);

/* One optional-or-looping iteration body, with an emptiness check when the
 * body can match nothing. */
static int compile_iteration(parser *ps, int32_t child, bool check) {
    uint32_t reg = 0;
    if (check) {
        reg = ps->re->n_regs++;
        if (emit(ps, OP_SAVE, 0, reg, 0, 0) < 0) return -1;
    }
    if (compile_node(ps, child)) return -1;
    if (check && emit(ps, OP_CHECK, 0, reg, 0, 0) < 0) return -1;
    return 0;
}

static int compile_repeat(parser *ps, const node *nd) {
    const node *child = &ps->nodes[nd->child];
    bool single = child->kind == N_CHAR || child->kind == N_ANY || child->kind == N_CLASS;
    if (single && nd->greedy) {
        int32_t r = emit(ps, OP_REPEAT, 0, nd->min, 0, nd->max == REPEAT_INF ? -1 : (int32_t)nd->max);
        if (r < 0) return -1;
        return compile_node(ps, nd->child);
    }
    bool check = nullable(ps, nd->child);
    for (uint32_t k = 0; k < nd->min; k++)
        if (compile_node(ps, nd->child)) return -1;
    if (nd->max == REPEAT_INF) {
        int32_t split = emit(ps, OP_SPLIT, 0, 0, 0, 0);
        if (split < 0 || compile_iteration(ps, nd->child, check)) return -1;
        if (emit(ps, OP_JMP, 0, 0, split, 0) < 0) return -1;
        int32_t end = (int32_t)ps->re->n_prog;
        re_inst *s = &ps->re->prog[split];
        s->x = nd->greedy ? split + 1 : end;
        s->y = nd->greedy ? end : split + 1;
        return 0;
    }
    /* Optional copies: each SPLIT exits to the common end, patched below. */
    size_t first_split = ps->re->n_prog;
    for (uint32_t k = nd->min; k < nd->max; k++) {
        int32_t split = emit(ps, OP_SPLIT, 0, 0, 0, 0);
        if (split < 0 || compile_iteration(ps, nd->child, check)) return -1;
    }
    int32_t end = (int32_t)ps->re->n_prog;
    for (size_t pc = first_split; pc < (size_t)end; pc++) {
        re_inst *s = &ps->re->prog[pc];
        if (s->op != OP_SPLIT || s->x != 0 || s->y != 0) continue;
        /* Only our own unpatched SPLITs have x == y == 0 (0 is never a jump target). */
        s->x = nd->greedy ? (int32_t)pc + 1 : end;
        s->y = nd->greedy ? end : (int32_t)pc + 1;
    }
    return 0;
}

static int compile_node(parser *ps, int32_t n) {
    const node nd = ps->nodes[n]; /* the tree does not change while compiling */
    switch (nd.kind) {
    case N_EMPTY:
        return 0;
    case N_CHAR:
        return emit(ps, OP_CHAR, nd.icase ? F_ICASE : 0, nd.val, 0, 0) < 0 ? -1 : 0;
    case N_ANY:
        return emit(ps, OP_ANY, 0, 0, 0, 0) < 0 ? -1 : 0;
    case N_CLASS:
        return emit(ps, OP_CLASS, 0, nd.val, 0, 0) < 0 ? -1 : 0;
    case N_BOL:
        return emit(ps, OP_BOL, 0, 0, 0, 0) < 0 ? -1 : 0;
    case N_EOL:
        return emit(ps, OP_EOL, 0, 0, 0, 0) < 0 ? -1 : 0;
    case N_WORDB:
        return emit(ps, OP_WORDB, nd.neg ? F_NEG : 0, 0, 0, 0) < 0 ? -1 : 0;
    case N_CAT:
        for (int32_t c = nd.child; c >= 0; c = ps->nodes[c].next)
            if (compile_node(ps, c)) return -1;
        return 0;
    case N_ALT: {
        /* SPLIT L1, next; L1: a; JMP end; next: SPLIT L2, ...; last alternative. */
        int32_t jumps_first = -1; /* chain of JMPs to patch, linked through x */
        for (int32_t c = nd.child; c >= 0; c = ps->nodes[c].next) {
            if (ps->nodes[c].next < 0) {
                if (compile_node(ps, c)) return -1;
                break;
            }
            int32_t split = emit(ps, OP_SPLIT, 0, 0, 0, 0);
            if (split < 0) return -1;
            ps->re->prog[split].x = split + 1;
            if (compile_node(ps, c)) return -1;
            int32_t j = emit(ps, OP_JMP, 0, 0, jumps_first, 0);
            if (j < 0) return -1;
            jumps_first = j;
            ps->re->prog[split].y = (int32_t)ps->re->n_prog;
        }
        int32_t end = (int32_t)ps->re->n_prog;
        while (jumps_first >= 0) {
            int32_t prev = ps->re->prog[jumps_first].x;
            ps->re->prog[jumps_first].x = end;
            jumps_first = prev;
        }
        return 0;
    }
    case N_LOOK:
    case N_ATOMIC: {
        int32_t at = emit(ps, nd.kind == N_LOOK ? OP_LOOK : OP_ATOMIC, nd.neg ? F_NEG : 0, 0, 0, 0);
        if (at < 0 || compile_node(ps, nd.child)) return -1;
        if (emit(ps, OP_SUB, 0, 0, 0, 0) < 0) return -1;
        ps->re->prog[at].x = (int32_t)ps->re->n_prog;
        return 0;
    }
    case N_REPEAT: {
        if (nd.max == 0) return 0;
        if (nd.possessive) {
            int32_t at = emit(ps, OP_ATOMIC, 0, 0, 0, 0);
            if (at < 0 || compile_repeat(ps, &nd)) return -1;
            if (emit(ps, OP_SUB, 0, 0, 0, 0) < 0) return -1;
            ps->re->prog[at].x = (int32_t)ps->re->n_prog;
            return 0;
        }
        return compile_repeat(ps, &nd);
    }
    }
    return 0;
}

sl_regex *sl_regex_compile(const char *pattern, unsigned flags, sl_error *err) {
    size_t plen = strlen(pattern);
    sl_regex *re = calloc(1, sizeof *re);
    uint32_t *cps = plen < SIZE_MAX / 8 ? malloc((plen + 1) * sizeof *cps) : NULL;
    parser ps = {0};
    if (!re || !cps) {
        sl_err(err, "regex: out of memory");
        goto fail;
    }
    re->flags = flags;
    size_t n = 0;
    for (size_t i = 0; i < plen;) {
        int k = sl_utf8_check((const uint8_t *)pattern + i, plen - i);
        if (k <= 0) {
            sl_err(err, "regex: pattern is not valid UTF-8");
            goto fail;
        }
        size_t len;
        cps[n++] = sl_utf8_decode_lenient((const uint8_t *)pattern + i, plen - i, &len);
        i += (size_t)k;
    }
    ps.p = cps;
    ps.n = n;
    ps.re = re;
    ps.err = err;
    /* Instruction 0 is a no-op jump so that 0 is never a jump target (see compile_repeat). */
    if (emit(&ps, OP_JMP, 0, 0, 1, 0) < 0) goto fail;
    int32_t root = -1;
    if (parse_alt(&ps, false, &root)) goto fail;
    if (!at_end(&ps)) {
        perr(&ps, "unmatched )");
        goto fail;
    }
    if (compile_node(&ps, root) || emit(&ps, OP_MATCH, 0, 0, 0, 0) < 0) goto fail;
    free(ps.nodes);
    free(cps);
    return re;
fail:
    free(ps.nodes);
    free(cps);
    sl_regex_free(re);
    return NULL;
}

void sl_regex_free(sl_regex *re) {
    if (!re) return;
    free(re->prog);
    free(re->items);
    free(re->classes);
    free(re);
}

/* ---- matching ---- */

typedef struct bt_entry {
    uint8_t kind;
    int32_t pc;  /* BT_RESTORE: the register */
    size_t pos;  /* BT_RESTORE: the old value; BT_REPEAT: the current end of the run */
    size_t lim;  /* BT_REPEAT: the shortest end the run may give back to */
} bt_entry;
enum { BT_THREAD, BT_RESTORE, BT_REPEAT };

typedef struct match_ctx {
    const sl_regex *re;
    sl_regex_scratch *s;
    const uint32_t *text;
    size_t seg_begin, seg_end;
    size_t attempt; /* where this match attempt started */
    bool prev_avail; /* std::regex's match_prev_avail */
    bool not_null;   /* std::regex's match_not_null */
    sl_error *err;
} match_ctx;

void sl_regex_scratch_free(sl_regex_scratch *s) {
    free(s->stack);
    free(s->regs);
    memset(s, 0, sizeof *s);
}

static int push(match_ctx *c, uint8_t kind, int32_t pc, size_t pos, size_t lim) {
    sl_regex_scratch *s = c->s;
    if (s->top >= s->cap) {
        if (s->top >= MAX_STACK) return sl_err(c->err, "regex: backtracking limit reached");
        if (!grow(&s->stack, &s->cap, s->top + 1, sizeof(bt_entry))) return sl_err(c->err, "regex: out of memory");
    }
    ((bt_entry *)s->stack)[s->top++] = (bt_entry){kind, pc, pos, lim};
    return 0;
}

/* The code point at i as the matcher sees it. */
static inline uint32_t char_at(const match_ctx *c, size_t i) {
    uint32_t cp = c->text[i];
    /* llama.cpp hands std::regex U+000B in place of non-ASCII white space. */
    if (cp >= 0x80 && (c->re->flags & SL_RE_LLAMACPP) && sl_uni_is_space(cp)) return 0x0B;
    return cp;
}

static int category_for(const sl_regex *re, uint32_t cp) {
    if ((re->flags & SL_RE_LLAMACPP) && cp == '~') return -1;
    return sl_uni_category(cp);
}

static bool class_has(const sl_regex *re, const re_class *cl, uint32_t cp) {
    int cat = -2; /* not looked up yet */
    for (uint32_t k = 0; k < cl->n; k++) {
        const re_item *it = &re->items[cl->first + k];
        bool m;
        switch (it->kind) {
        case IT_RANGE: m = cp >= it->lo && cp <= it->hi; break;
        case IT_CATS:
            if (cat == -2) cat = category_for(re, cp);
            m = cat >= 0 && ((it->lo >> cat) & 1u);
            break;
        case IT_SPACE: m = sl_uni_is_space(cp); break;
        case IT_DIGIT: m = cp >= '0' && cp <= '9'; break;
        case IT_WORD: m = is_word_char(cp); break;
        default: m = is_han(cp); break;
        }
        if (m != it->neg) return true;
    }
    return false;
}

static bool class_match(const sl_regex *re, uint32_t idx, uint32_t cp) {
    const re_class *cl = &re->classes[idx];
    bool in = class_has(re, cl, cp);
    if (!in && cl->icase) {
        uint32_t lower = sl_uni_tolower(cp);
        uint32_t upper = (cp >= 'a' && cp <= 'z') ? cp - 32 : cp;
        in = (lower != cp && class_has(re, cl, lower)) || (upper != cp && class_has(re, cl, upper));
    }
    return in != cl->neg;
}

/* Whether the single-character instruction `in` accepts cp. */
static inline bool one_match(const sl_regex *re, const re_inst *in, uint32_t cp) {
    switch (in->op) {
    case OP_CHAR: return (in->flag & F_ICASE) ? sl_uni_tolower(cp) == in->arg : cp == in->arg;
    case OP_ANY: return cp != '\n' && cp != '\r';
    default: return class_match(re, in->arg, cp);
    }
}

static bool word_before(const match_ctx *c, size_t pos) {
    if (pos == 0) return false;
    if (pos == c->attempt && !c->prev_avail) return false;
    return is_word_char(char_at(c, pos - 1));
}

/* Runs the program from pc at position pos until OP_MATCH or OP_SUB accepts.
 * Returns 1 (end in *end), 0 (no match) or -1 (error). */
static int run(match_ctx *c, int32_t pc, size_t pos, size_t *end) {
    const sl_regex *re = c->re;
    sl_regex_scratch *s = c->s;
    size_t base = s->top;
    size_t start = pos;
    for (;;) {
        const re_inst *in = &re->prog[pc];
        switch (in->op) {
        case OP_CHAR: case OP_ANY: case OP_CLASS:
            if (pos < c->seg_end && one_match(re, in, char_at(c, pos))) {
                pos++;
                pc++;
                continue;
            }
            goto fail;
        case OP_SPLIT:
            if (push(c, BT_THREAD, in->y, pos, 0)) return -1;
            pc = in->x;
            continue;
        case OP_JMP:
            pc = in->x;
            continue;
        case OP_SAVE:
            if (push(c, BT_RESTORE, (int32_t)in->arg, s->regs[in->arg], 0)) return -1;
            s->regs[in->arg] = pos;
            pc++;
            continue;
        case OP_CHECK:
            if (s->regs[in->arg] == pos) goto fail;
            pc++;
            continue;
        case OP_BOL:
            if (pos == c->attempt && pos == c->seg_begin && !c->prev_avail) {
                pc++;
                continue;
            }
            goto fail;
        case OP_EOL:
            if (pos == c->seg_end) {
                pc++;
                continue;
            }
            goto fail;
        case OP_WORDB: {
            bool left = word_before(c, pos);
            bool right = pos < c->seg_end && is_word_char(char_at(c, pos));
            if ((left != right) != ((in->flag & F_NEG) != 0)) {
                pc++;
                continue;
            }
            goto fail;
        }
        case OP_LOOK: case OP_ATOMIC: {
            size_t sub_end;
            bool saved_not_null = c->not_null;
            c->not_null = false;
            int r = run(c, pc + 1, pos, &sub_end);
            c->not_null = saved_not_null;
            if (r < 0) return -1;
            if (in->op == OP_LOOK) {
                if ((r == 1) != ((in->flag & F_NEG) != 0)) {
                    pc = in->x;
                    continue;
                }
                goto fail;
            }
            if (r == 1) {
                pos = sub_end;
                pc = in->x;
                continue;
            }
            goto fail;
        }
        case OP_REPEAT: {
            const re_inst *m = in + 1;
            size_t max = in->y < 0 ? c->seg_end - pos : (size_t)in->y;
            size_t k = 0;
            while (k < max && pos + k < c->seg_end && one_match(re, m, char_at(c, pos + k))) k++;
            if (k < in->arg) goto fail;
            if (k > in->arg && push(c, BT_REPEAT, pc + 2, pos + k, pos + in->arg)) return -1;
            pos += k;
            pc += 2;
            continue;
        }
        case OP_SUB:
            *end = pos;
            s->top = base;
            return 1;
        case OP_MATCH:
            if (c->not_null && pos == start) goto fail;
            *end = pos;
            s->top = base;
            return 1;
        }
    fail:
        for (;;) {
            if (s->top == base) return 0;
            bt_entry *e = &((bt_entry *)s->stack)[s->top - 1];
            if (e->kind == BT_RESTORE) {
                s->regs[e->pc] = e->pos;
                s->top--;
                continue;
            }
            if (e->kind == BT_THREAD) {
                pc = e->pc;
                pos = e->pos;
                s->top--;
                break;
            }
            /* BT_REPEAT: give back one character. */
            pos = --e->pos;
            pc = e->pc;
            if (e->pos == e->lim) s->top--;
            break;
        }
    }
}

static int match_at(match_ctx *c, size_t pos, size_t *end) {
    sl_regex_scratch *s = c->s;
    if (s->n_regs < c->re->n_regs) {
        size_t *r = realloc(s->regs, (size_t)c->re->n_regs * sizeof *r); /* n_regs < MAX_PROGRAM */
        if (!r) return sl_err(c->err, "regex: out of memory");
        s->regs = r;
        s->n_regs = c->re->n_regs;
    }
    s->top = 0;
    c->attempt = pos;
    return run(c, 0, pos, end);
}

/* When a pattern starts with x+ (x one character, no upper bound) and fails
 * at p, it also fails at every later position of the run of x that starts at
 * p: x+ would end at the same places and what follows would see the same
 * text. Returns the run's length, to skip it (0 when the rule does not apply). */
static size_t failed_run(const match_ctx *c, size_t p) {
    const re_inst *in = &c->re->prog[1];
    if (in->op != OP_REPEAT || in->arg == 0 || in->y >= 0) return 0;
    size_t k = 0;
    while (p + k < c->seg_end && one_match(c->re, in + 1, char_at(c, p + k))) k++;
    return k;
}

/* std::regex_search from `from`: the first position that matches. The first
 * position is tried with the caller's prev_avail, later ones with it set. */
static int search(match_ctx *c, size_t from, size_t *mstart, size_t *mend) {
    bool prev_avail = c->prev_avail;
    for (size_t p = from; p <= c->seg_end; p++) {
        c->prev_avail = prev_avail || p > from;
        int r = match_at(c, p, mend);
        if (r != 0) {
            c->prev_avail = prev_avail;
            if (r > 0) *mstart = p;
            return r;
        }
        size_t skip = failed_run(c, p);
        if (skip > 1) p += skip - 1;
    }
    c->prev_avail = prev_avail;
    return 0;
}

int sl_regex_search(const sl_regex *re, sl_regex_scratch *s, const uint32_t *text, size_t seg_begin,
                    size_t seg_end, size_t from, size_t *mstart, size_t *mend, sl_error *err) {
    match_ctx c = {re, s, text, seg_begin, seg_end, from, from > seg_begin, false, err};
    return search(&c, from, mstart, mend);
}

int sl_re_pieces_push(sl_re_pieces *p, size_t len) {
    if (!grow((void **)&p->len, &p->cap, p->n + 1, sizeof(size_t))) return -1;
    p->len[p->n++] = len;
    return 0;
}

void sl_re_pieces_free(sl_re_pieces *p) {
    free(p->len);
    memset(p, 0, sizeof *p);
}

static int out_piece(sl_re_pieces *out, size_t len, sl_error *err) {
    if (len == 0) return 0;
    if (sl_re_pieces_push(out, len)) return sl_err(err, "regex: out of memory");
    return 0;
}

int sl_regex_split(const sl_regex *re, sl_regex_scratch *s, const uint32_t *text, const sl_re_pieces *in,
                   sl_re_pieces *out, sl_error *err) {
    size_t seg_begin = 0;
    for (size_t k = 0; k < in->n; k++) {
        size_t seg_end = seg_begin + in->len[k];
        match_ctx c = {re, s, text, seg_begin, seg_end, seg_begin, false, false, err};
        size_t prev_end = seg_begin, ms, me;
        int r = search(&c, seg_begin, &ms, &me);
        while (r > 0) {
            if (out_piece(out, ms - prev_end, err) || out_piece(out, me - ms, err)) return -1;
            prev_end = me;
            c.prev_avail = true;
            size_t from = me;
            if (me == ms) {
                /* After an empty match: a non-empty match right there, else search on from the next position. */
                if (me == seg_end) break;
                c.not_null = true;
                size_t e2;
                int r2 = match_at(&c, me, &e2);
                c.not_null = false;
                if (r2 < 0) return -1;
                if (r2 > 0) {
                    ms = me;
                    me = e2;
                    r = 1;
                    continue;
                }
                from = me + 1;
            }
            r = search(&c, from, &ms, &me);
        }
        if (r < 0) return -1;
        if (out_piece(out, seg_end - prev_end, err)) return -1;
        seg_begin = seg_end;
    }
    return 0;
}
