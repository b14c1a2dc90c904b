/* unicode.c - lookups in the generated Unicode tables and UTF-8 coding (see unicode.h). */
#include "tokenizer/unicode.h"

/* Category of each ASCII character (the same as the ranges give, without a search). */
static const uint8_t ascii_category[128] = {
    /* 0x00-0x1F: Cc */
    SL_UC_Cc, SL_UC_Cc, SL_UC_Cc, SL_UC_Cc, SL_UC_Cc, SL_UC_Cc, SL_UC_Cc, SL_UC_Cc,
    SL_UC_Cc, SL_UC_Cc, SL_UC_Cc, SL_UC_Cc, SL_UC_Cc, SL_UC_Cc, SL_UC_Cc, SL_UC_Cc,
    SL_UC_Cc, SL_UC_Cc, SL_UC_Cc, SL_UC_Cc, SL_UC_Cc, SL_UC_Cc, SL_UC_Cc, SL_UC_Cc,
    SL_UC_Cc, SL_UC_Cc, SL_UC_Cc, SL_UC_Cc, SL_UC_Cc, SL_UC_Cc, SL_UC_Cc, SL_UC_Cc,
    /*  ! " # $ % & ' */
    SL_UC_Zs, SL_UC_Po, SL_UC_Po, SL_UC_Po, SL_UC_Sc, SL_UC_Po, SL_UC_Po, SL_UC_Po,
    /* ( ) * + , - . / */
    SL_UC_Ps, SL_UC_Pe, SL_UC_Po, SL_UC_Sm, SL_UC_Po, SL_UC_Pd, SL_UC_Po, SL_UC_Po,
    /* 0-9 */
    SL_UC_Nd, SL_UC_Nd, SL_UC_Nd, SL_UC_Nd, SL_UC_Nd, SL_UC_Nd, SL_UC_Nd, SL_UC_Nd,
    SL_UC_Nd, SL_UC_Nd,
    /* : ; < = > ? @ */
    SL_UC_Po, SL_UC_Po, SL_UC_Sm, SL_UC_Sm, SL_UC_Sm, SL_UC_Po, SL_UC_Po,
    /* A-Z */
    SL_UC_Lu, SL_UC_Lu, SL_UC_Lu, SL_UC_Lu, SL_UC_Lu, SL_UC_Lu, SL_UC_Lu, SL_UC_Lu,
    SL_UC_Lu, SL_UC_Lu, SL_UC_Lu, SL_UC_Lu, SL_UC_Lu, SL_UC_Lu, SL_UC_Lu, SL_UC_Lu,
    SL_UC_Lu, SL_UC_Lu, SL_UC_Lu, SL_UC_Lu, SL_UC_Lu, SL_UC_Lu, SL_UC_Lu, SL_UC_Lu,
    SL_UC_Lu, SL_UC_Lu,
    /* [ \ ] ^ _ ` */
    SL_UC_Ps, SL_UC_Po, SL_UC_Pe, SL_UC_Sk, SL_UC_Pc, SL_UC_Sk,
    /* a-z */
    SL_UC_Ll, SL_UC_Ll, SL_UC_Ll, SL_UC_Ll, SL_UC_Ll, SL_UC_Ll, SL_UC_Ll, SL_UC_Ll,
    SL_UC_Ll, SL_UC_Ll, SL_UC_Ll, SL_UC_Ll, SL_UC_Ll, SL_UC_Ll, SL_UC_Ll, SL_UC_Ll,
    SL_UC_Ll, SL_UC_Ll, SL_UC_Ll, SL_UC_Ll, SL_UC_Ll, SL_UC_Ll, SL_UC_Ll, SL_UC_Ll,
    SL_UC_Ll, SL_UC_Ll,
    /* { | } ~ DEL */
    SL_UC_Ps, SL_UC_Sm, SL_UC_Pe, SL_UC_Sm, SL_UC_Cc,
};

int sl_uni_category(uint32_t cp) {
    if (cp < 128) return ascii_category[cp];
    if (cp > SL_UNICODE_MAX) return SL_UC_Cn;
    /* Last range whose first code point is <= cp. */
    size_t lo = 0, hi = sl_uni_cat_ranges_n;
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if ((sl_uni_cat_ranges[mid] >> 5) <= cp) lo = mid;
        else hi = mid;
    }
    return (int)(sl_uni_cat_ranges[lo] & 31u);
}

unsigned sl_uni_class(uint32_t cp) {
    static const uint8_t class_of[SL_UC_COUNT] = {
        [SL_UC_Cn] = SL_UCLASS_UNASSIGNED,
        [SL_UC_Lu] = SL_UCLASS_L, [SL_UC_Ll] = SL_UCLASS_L, [SL_UC_Lt] = SL_UCLASS_L,
        [SL_UC_Lm] = SL_UCLASS_L, [SL_UC_Lo] = SL_UCLASS_L,
        [SL_UC_Mn] = SL_UCLASS_M, [SL_UC_Mc] = SL_UCLASS_M, [SL_UC_Me] = SL_UCLASS_M,
        [SL_UC_Nd] = SL_UCLASS_N, [SL_UC_Nl] = SL_UCLASS_N, [SL_UC_No] = SL_UCLASS_N,
        [SL_UC_Pc] = SL_UCLASS_P, [SL_UC_Pd] = SL_UCLASS_P, [SL_UC_Ps] = SL_UCLASS_P,
        [SL_UC_Pe] = SL_UCLASS_P, [SL_UC_Pi] = SL_UCLASS_P, [SL_UC_Pf] = SL_UCLASS_P,
        [SL_UC_Po] = SL_UCLASS_P,
        [SL_UC_Sm] = SL_UCLASS_S, [SL_UC_Sc] = SL_UCLASS_S, [SL_UC_Sk] = SL_UCLASS_S,
        [SL_UC_So] = SL_UCLASS_S,
        [SL_UC_Zs] = SL_UCLASS_Z, [SL_UC_Zl] = SL_UCLASS_Z, [SL_UC_Zp] = SL_UCLASS_Z,
        [SL_UC_Cc] = SL_UCLASS_C, [SL_UC_Cf] = SL_UCLASS_C, [SL_UC_Cs] = SL_UCLASS_C,
        [SL_UC_Co] = SL_UCLASS_C,
    };
    return class_of[sl_uni_category(cp)];
}

bool sl_uni_is_space(uint32_t cp) {
    if (cp < 128) return cp == ' ' || (cp >= 9 && cp <= 13);
    if (cp > sl_uni_space[sl_uni_space_n - 1]) return false;
    size_t lo = 0, hi = sl_uni_space_n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (sl_uni_space[mid] == cp) return true;
        if (sl_uni_space[mid] < cp) lo = mid + 1;
        else hi = mid;
    }
    return false;
}

uint32_t sl_uni_tolower(uint32_t cp) {
    if (cp < 128) return (cp >= 'A' && cp <= 'Z') ? cp + 32 : cp;
    /* Last run starting at or before cp. */
    size_t lo = 0, hi = sl_uni_lower_n;
    if (hi == 0 || sl_uni_lower[0].first > cp) return cp;
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (sl_uni_lower[mid].first <= cp) lo = mid;
        else hi = mid;
    }
    const sl_uni_case_range *r = &sl_uni_lower[lo];
    uint32_t off = cp - r->first;
    if (off % r->stride != 0 || off / r->stride >= r->count) return cp;
    return (uint32_t)((int64_t)cp + r->delta);
}

size_t sl_utf8_lead_len(uint8_t lead) {
    static const uint8_t len_of_high_nibble[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return len_of_high_nibble[lead >> 4];
}

uint32_t sl_utf8_decode_lenient(const uint8_t *s, size_t n, size_t *len) {
    uint8_t b0 = s[0];
    size_t need;
    uint32_t cp;
    if (b0 < 0x80) {
        *len = 1;
        return b0;
    } else if ((b0 & 0x40) == 0) { /* continuation byte */
        need = 0;
        cp = 0;
    } else if ((b0 & 0x20) == 0) {
        need = 2;
        cp = b0 & 0x1Fu;
    } else if ((b0 & 0x10) == 0) {
        need = 3;
        cp = b0 & 0x0Fu;
    } else if ((b0 & 0x08) == 0) {
        need = 4;
        cp = b0 & 0x07u;
    } else {
        need = 0;
        cp = 0;
    }
    if (need == 0 || need > n) {
        *len = 1;
        return SL_UNICODE_REPLACEMENT;
    }
    for (size_t i = 1; i < need; i++) {
        if ((s[i] & 0xC0) != 0x80) {
            *len = 1;
            return SL_UNICODE_REPLACEMENT;
        }
        cp = (cp << 6) | (s[i] & 0x3Fu);
    }
    if (cp > SL_UNICODE_MAX) {
        *len = 1;
        return SL_UNICODE_REPLACEMENT;
    }
    *len = need;
    return cp;
}

size_t sl_utf8_encode(uint32_t cp, char out[4]) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | ((cp >> 18) & 0x07));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

int sl_utf8_check(const uint8_t *s, size_t n) {
    uint8_t b0 = s[0];
    if (b0 < 0x80) return 1;
    size_t need;
    uint8_t lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
    if (b0 >= 0xC2 && b0 <= 0xDF) need = 2;
    else if (b0 >= 0xE0 && b0 <= 0xEF) {
        need = 3;
        if (b0 == 0xE0) lo = 0xA0;      /* no overlongs */
        else if (b0 == 0xED) hi = 0x9F; /* no surrogates */
    } else if (b0 >= 0xF0 && b0 <= 0xF4) {
        need = 4;
        if (b0 == 0xF0) lo = 0x90;      /* no overlongs */
        else if (b0 == 0xF4) hi = 0x8F; /* nothing past U+10FFFF */
    } else {
        return -1;
    }
    for (size_t i = 1; i < need; i++) {
        if (i >= n) return 0;
        uint8_t b = s[i];
        bool ok = i == 1 ? (b >= lo && b <= hi) : ((b & 0xC0) == 0x80);
        if (!ok) return -(int)i; /* the maximal invalid subpart ends before b */
    }
    return (int)need;
}
