/* quant_oracle_driver.c - command-line access to the quant kernels for
 * tools/check_quant_layouts.py, which compares them with gguf-py (not run in CI).
 *
 *   quant_oracle_driver random    TYPE NBLOCKS SEED BLOCKS_OUT FLOATS_OUT
 *       random block bytes (f16 scale fields patched to sane finite values),
 *       and our dequantization of them
 *   quant_oracle_driver quantized TYPE NBLOCKS SEED BLOCKS_OUT FLOATS_OUT
 *       our quantization of random normal floats, and our dequantization
 *   quant_oracle_driver quantize  TYPE FLOATS_IN BLOCKS_OUT
 *   quant_oracle_driver dequantize TYPE BLOCKS_IN FLOATS_OUT
 *
 * Files are raw little-endian bytes / float32. The random generator is the
 * 64-bit LCG the script and tests/test_quant.c also use. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quant/quant.h"

static uint64_t lcg_state;
static uint8_t lcg_byte(void) {
    lcg_state = lcg_state * 6364136223846793005ull + 1442695040888963407ull;
    return (uint8_t)(lcg_state >> 33);
}
static double lcg_unit(void) { /* (0, 1) */
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) v = (v << 8) | lcg_byte();
    return (v + 0.5) / 4294967296.0;
}

/* A finite f16 of magnitude in [2^-8, 1), random sign. */
static uint16_t sane_f16(void) {
    uint16_t lo = lcg_byte(), hi = lcg_byte(); /* separate statements: a fixed order */
    uint16_t mant = (uint16_t)((lo | (hi << 8)) & 0x3ff);
    uint16_t exp = (uint16_t)(15 - 8 + lcg_byte() % 8);
    uint16_t sign = (uint16_t)((lcg_byte() & 1) << 15);
    return (uint16_t)(sign | (exp << 10) | mant);
}

/* Byte offsets of the f16 fields of one block of each type (-1 ends). */
static const int *f16_fields(sl_type t) {
    static const int d0[] = {0, -1}, d0m2[] = {0, 2, -1}, q2k[] = {80, 82, -1}, q3k[] = {108, -1},
                     q6k[] = {208, -1}, none[] = {-1};
    switch (t) {
    case SL_TYPE_Q4_0: case SL_TYPE_Q5_0: case SL_TYPE_Q8_0: case SL_TYPE_IQ4_NL: return d0;
    case SL_TYPE_Q4_1: case SL_TYPE_Q5_1: case SL_TYPE_Q8_1: case SL_TYPE_Q4_K: case SL_TYPE_Q5_K: return d0m2;
    case SL_TYPE_Q2_K: return q2k;
    case SL_TYPE_Q3_K: return q3k;
    case SL_TYPE_Q6_K: return q6k;
    default: return none;
    }
}

static void random_blocks(sl_type t, int64_t nblocks, uint8_t *out) {
    const sl_type_info *info = sl_type_get(t);
    size_t size = info->type_size;
    for (int64_t b = 0; b < nblocks; b++) {
        uint8_t *blk = out + b * size;
        for (size_t i = 0; i < size; i++) blk[i] = lcg_byte();
        if (t == SL_TYPE_F16) {
            uint16_t h = sane_f16();
            memcpy(blk, &h, 2);
        } else if (t == SL_TYPE_BF16) {
            uint16_t sign = (uint16_t)((lcg_byte() & 0x80) << 8);
            uint16_t h = (uint16_t)(sign | (0x3c00 + lcg_byte() % 0x600)); /* |x| ~ 2^-7..2^5 */
            memcpy(blk, &h, 2);
        } else if (t == SL_TYPE_F32) {
            float f = (float)(lcg_unit() * 2 - 1);
            memcpy(blk, &f, 4);
        } else if (t == SL_TYPE_Q8_K) {
            float d = (float)(lcg_unit() * 0.01);
            memcpy(blk, &d, 4);
        } else {
            for (const int *f = f16_fields(t); *f >= 0; f++) {
                uint16_t h = sane_f16();
                memcpy(blk + *f, &h, 2);
            }
        }
    }
}

static int write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, n, f) != n || fclose(f) != 0) {
        fprintf(stderr, "cannot write %s\n", path);
        return -1;
    }
    return 0;
}

static void *read_file(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    void *buf = malloc(size > 0 ? (size_t)size : 1);
    if (!buf || fread(buf, 1, (size_t)size, f) != (size_t)size) {
        fclose(f);
        free(buf);
        return NULL;
    }
    fclose(f);
    *n = (size_t)size;
    return buf;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: see the comment at the top of quant_oracle_driver.c\n");
        return 2;
    }
    int type = sl_type_from_name(argv[2]);
    const sl_type_info *info = sl_type_get(type);
    if (!info) {
        fprintf(stderr, "unsupported type %s\n", argv[2]);
        return 2;
    }
    if ((!strcmp(argv[1], "random") || !strcmp(argv[1], "quantized")) && argc == 7) {
        int64_t nblocks = atoll(argv[3]);
        lcg_state = strtoull(argv[4], NULL, 10);
        int64_t n = nblocks * info->block_size;
        uint8_t *blocks = malloc((size_t)nblocks * info->type_size);
        float *x = malloc((size_t)n * sizeof(float));
        if (!strcmp(argv[1], "random")) {
            random_blocks(type, nblocks, blocks);
        } else {
            for (int64_t i = 0; i < n; i++) {
                double u = lcg_unit(), v = lcg_unit();
                x[i] = (float)(sqrt(-2 * log(u)) * cos(6.283185307179586 * v));
            }
            sl_quantize_row(type, x, blocks, n);
        }
        sl_dequantize_row(type, blocks, x, n);
        int rc = write_file(argv[5], blocks, (size_t)nblocks * info->type_size) ||
                 write_file(argv[6], x, (size_t)n * sizeof(float));
        free(blocks);
        free(x);
        return rc ? 1 : 0;
    }
    if (!strcmp(argv[1], "quantize") && argc == 5) {
        size_t bytes;
        float *x = read_file(argv[3], &bytes);
        if (!x) return 1;
        int64_t n = (int64_t)(bytes / sizeof(float));
        size_t out_size = sl_row_size(type, n);
        uint8_t *blocks = malloc(out_size ? out_size : 1);
        if (sl_quantize_row(type, x, blocks, n) != out_size || out_size == 0) return 1;
        int rc = write_file(argv[4], blocks, out_size);
        free(x);
        free(blocks);
        return rc ? 1 : 0;
    }
    if (!strcmp(argv[1], "dequantize") && argc == 5) {
        size_t bytes;
        uint8_t *blocks = read_file(argv[3], &bytes);
        if (!blocks) return 1;
        int64_t n = (int64_t)(bytes / info->type_size) * info->block_size;
        float *x = malloc((size_t)n * sizeof(float) + 1);
        sl_dequantize_row(type, blocks, x, n);
        int rc = write_file(argv[4], x, (size_t)n * sizeof(float));
        free(x);
        free(blocks);
        return rc ? 1 : 0;
    }
    fprintf(stderr, "bad arguments\n");
    return 2;
}
