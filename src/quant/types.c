/* types.c - the tensor type table (ggml type ids, block sizes, names) and the
 * scalar f16/bf16 conversions. */
#include "quant/quant_impl.h"

#define QUANT(name_, bs, size, dot) { name_, bs, size, dot, true }
#define PLAIN(name_, size, dot) { name_, 1, size, dot, false }

static const sl_type_info type_table[SL_TYPE_COUNT] = {
    [SL_TYPE_F32] = PLAIN("F32", 4, SL_TYPE_F32),
    [SL_TYPE_F16] = PLAIN("F16", 2, SL_TYPE_F16),
    [SL_TYPE_BF16] = PLAIN("BF16", 2, SL_TYPE_BF16),
    [SL_TYPE_Q4_0] = QUANT("Q4_0", 32, sizeof(block_q4_0), SL_TYPE_Q8_0),
    [SL_TYPE_Q4_1] = QUANT("Q4_1", 32, sizeof(block_q4_1), SL_TYPE_Q8_1),
    [SL_TYPE_Q5_0] = QUANT("Q5_0", 32, sizeof(block_q5_0), SL_TYPE_Q8_0),
    [SL_TYPE_Q5_1] = QUANT("Q5_1", 32, sizeof(block_q5_1), SL_TYPE_Q8_1),
    [SL_TYPE_Q8_0] = QUANT("Q8_0", 32, sizeof(block_q8_0), SL_TYPE_Q8_0),
    [SL_TYPE_Q8_1] = QUANT("Q8_1", 32, sizeof(block_q8_1), SL_TYPE_Q8_1),
    [SL_TYPE_Q2_K] = QUANT("Q2_K", QK_K, sizeof(block_q2_K), SL_TYPE_Q8_K),
    [SL_TYPE_Q3_K] = QUANT("Q3_K", QK_K, sizeof(block_q3_K), SL_TYPE_Q8_K),
    [SL_TYPE_Q4_K] = QUANT("Q4_K", QK_K, sizeof(block_q4_K), SL_TYPE_Q8_K),
    [SL_TYPE_Q5_K] = QUANT("Q5_K", QK_K, sizeof(block_q5_K), SL_TYPE_Q8_K),
    [SL_TYPE_Q6_K] = QUANT("Q6_K", QK_K, sizeof(block_q6_K), SL_TYPE_Q8_K),
    [SL_TYPE_Q8_K] = QUANT("Q8_K", QK_K, sizeof(block_q8_K), SL_TYPE_Q8_K),
    [SL_TYPE_IQ4_NL] = QUANT("IQ4_NL", 32, sizeof(block_iq4_nl), SL_TYPE_Q8_0),
};

/* ggml ids we know by name but cannot compute with (ggml.h, including ids
 * whose support ggml removed), so errors can name them. */
static const char *const unsupported_names[SL_TYPE_COUNT] = {
    [4] = "Q4_2", [5] = "Q4_3",
    [16] = "IQ2_XXS", [17] = "IQ2_XS", [18] = "IQ3_XXS", [19] = "IQ1_S",
    [21] = "IQ3_S", [22] = "IQ2_S", [23] = "IQ4_XS",
    [24] = "I8", [25] = "I16", [26] = "I32", [27] = "I64", [28] = "F64", [29] = "IQ1_M",
    [31] = "Q4_0_4_4", [32] = "Q4_0_4_8", [33] = "Q4_0_8_8",
    [34] = "TQ1_0", [35] = "TQ2_0",
    [36] = "IQ4_NL_4_4", [37] = "IQ4_NL_4_8", [38] = "IQ4_NL_8_8",
    [39] = "MXFP4", [40] = "NVFP4", [41] = "Q1_0", [42] = "Q2_0",
};

const sl_type_info *sl_type_get(int type) {
    if (type < 0 || type >= SL_TYPE_COUNT || type_table[type].name == NULL) return NULL;
    return &type_table[type];
}

const char *sl_type_name(int type) {
    if (type < 0 || type >= SL_TYPE_COUNT) return NULL;
    return type_table[type].name ? type_table[type].name : unsupported_names[type];
}

static int ascii_upper(int c) { return c >= 'a' && c <= 'z' ? c - 'a' + 'A' : c; }

static bool name_equals(const char *a, const char *b) {
    for (; *a && *b; a++, b++) {
        if (ascii_upper((unsigned char)*a) != ascii_upper((unsigned char)*b)) return false;
    }
    return *a == *b;
}

int sl_type_from_name(const char *name) {
    if (name == NULL) return -1;
    for (int t = 0; t < SL_TYPE_COUNT; t++) {
        const char *known = sl_type_name(t);
        if (known && name_equals(name, known)) return t;
    }
    return -1;
}

size_t sl_row_size(sl_type type, int64_t n) {
    const sl_type_info *info = sl_type_get((int)type);
    if (info == NULL || n < 0 || n % info->block_size != 0) return 0;
    uint64_t bytes;
    if (!sl_mul_u64((uint64_t)(n / info->block_size), info->type_size, &bytes) || bytes > SIZE_MAX) return 0;
    return (size_t)bytes;
}

/* ---- f16 / bf16 --------------------------------------------------------- */

float sl_f16_to_f32(uint16_t h) { return sl_f16_to_f32_inline(h); }

uint16_t sl_f32_to_f16(float f) {
    uint32_t bits = sl_f32_bits(f);
    uint16_t sign = (uint16_t)((bits >> 16) & 0x8000u);
    uint32_t abs = bits & 0x7fffffffu;
    if (abs > 0x7f800000u) { /* NaN: keep the top payload bits, stay a NaN */
        uint16_t payload = (uint16_t)((abs >> 13) & 0x3ffu);
        return (uint16_t)(sign | 0x7c00u | (payload ? payload : 0x200u));
    }
    if (abs >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* >= 65520 rounds to inf */
    if (abs >= 0x38800000u) {                                   /* normal f16 */
        /* Round the 13 dropped bits to nearest even; a carry into the exponent is right. */
        uint32_t rounded = abs + 0x0fffu + ((abs >> 13) & 1u);
        return (uint16_t)(sign | ((rounded - 0x38000000u) >> 13));
    }
    /* Subnormal f16 (or zero): the value in units of 2^-24, rounded to nearest even. */
    uint32_t exp = abs >> 23;
    if (exp < 102) return sign; /* below 2^-25: rounds to zero */
    uint32_t mant = (abs & 0x7fffffu) | 0x800000u;
    uint32_t shift = 126 - exp; /* 14..24 */
    uint32_t q = mant >> shift;
    uint32_t rem = mant & ((1u << shift) - 1);
    uint32_t half = 1u << (shift - 1);
    if (rem > half || (rem == half && (q & 1u))) q++;
    return (uint16_t)(sign | q);
}

float sl_bf16_to_f32(uint16_t h) { return sl_bits_f32((uint32_t)h << 16); }

uint16_t sl_f32_to_bf16(float f) {
    uint32_t bits = sl_f32_bits(f);
    if ((bits & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((bits >> 16) | 0x40u); /* quiet NaN */
    return (uint16_t)((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
}
