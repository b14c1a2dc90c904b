/* layout.c - GPU weight layouts (see layout.h): the table of formats, the
 * permutation of blocks into regions, and the carry of groups cut by
 * upload pieces. */
#include "gpu/layout.h"

#include <stdlib.h>
#include <string.h>

/* .fast: the layouts the default uses without the int8 token (with it the
 * engine takes them all). On an H200 (Dawn/Vulkan) Llama-3.2-1B Q4_K_M
 * decoded at 412 tokens/s with the Q4_K and Q6_K layouts and the f32 token,
 * 482 with those matrices as stored, 836 with the layouts and int8. */
static const sl_gpu_layout LAYOUTS[] = {
    {.type = SL_TYPE_Q4_0, .block_bytes = 18, .block_elems = 32,
     .n_pieces = 2, .pieces = {{2, 16, 0}, {0, 2, 1}},
     .n_regions = 2, .region_bytes = {16, 2}, .unit_bytes = {16, 0}, .group = 2, .fast = true},
    {.type = SL_TYPE_Q8_0, .block_bytes = 34, .block_elems = 32,
     .n_pieces = 2, .pieces = {{2, 32, 0}, {0, 2, 1}},
     .n_regions = 2, .region_bytes = {32, 2}, .unit_bytes = {32, 0}, .group = 2, .fast = true},
    /* d, dmin, scales[12], qs[128] */
    {.type = SL_TYPE_Q4_K, .block_bytes = 144, .block_elems = 256,
     .n_pieces = 2, .pieces = {{16, 128, 0}, {0, 16, 1}},
     .n_regions = 2, .region_bytes = {128, 16}, .unit_bytes = {64, 0}, .group = 1},
    /* ql[128], qh[64], scales[16], d: a half block is ql[64 h..] + qh[32 h..] */
    {.type = SL_TYPE_Q6_K, .block_bytes = 210, .block_elems = 256,
     .n_pieces = 6, .pieces = {{0, 64, 0}, {128, 32, 0}, {64, 64, 0}, {160, 32, 0}, {192, 16, 1}, {208, 2, 2}},
     .n_regions = 3, .region_bytes = {192, 16, 2}, .unit_bytes = {96, 0, 0}, .group = 2},
};

const sl_gpu_layout *sl_gpu_layout_get(sl_type type) {
    for (size_t i = 0; i < sizeof LAYOUTS / sizeof LAYOUTS[0]; i++)
        if (LAYOUTS[i].type == type) return &LAYOUTS[i];
    return NULL;
}

const sl_gpu_layout *sl_gpu_layout_for(sl_type type, sl_gpu_layouts use) {
    const sl_gpu_layout *l = use == SL_GPU_LAYOUTS_NONE ? NULL : sl_gpu_layout_get(type);
    return l && (l->fast || use == SL_GPU_LAYOUTS_ALL) ? l : NULL;
}

uint64_t sl_gpu_layout_region_base(const sl_gpu_layout *l, uint64_t nb, int r) {
    uint64_t base = 0;
    for (int i = 0; i < r; i++) base += nb * l->region_bytes[i];
    return base;
}

uint64_t sl_gpu_layout_offset(const sl_gpu_layout *l, uint64_t nb, int r, uint64_t b, uint32_t j) {
    const uint64_t base = sl_gpu_layout_region_base(l, nb, r);
    const uint32_t ub = l->unit_bytes[r];
    if (!ub) return base + b * l->region_bytes[r] + j;
    const uint64_t upb = l->region_bytes[r] / ub, n_units = nb * upb, u = b * upb + j / ub;
    const uint32_t jj = j % ub;
    return base + (uint64_t)(jj / 16) * n_units * 16 + u * 16 + jj % 16;
}

/* Largest bytes per block of one region, and so of one run in scratch. */
#define MAX_REGION_BYTES 192u

size_t sl_gpu_layout_scratch_min(void) { return 2u * 2u * MAX_REGION_BYTES; }

void sl_gpu_layout_permute(const sl_gpu_layout *l, uint64_t nb, uint64_t b0, uint64_t b1, const unsigned char *src,
                           unsigned char *scratch, size_t scratch_cap, int chunk, sl_gpu_layout_sink sink, void *ctx) {
    /* scratch: the sub-run's data of one region, then one word-major run */
    const size_t half = scratch_cap / 2;
    uint64_t per = half / MAX_REGION_BYTES;
    per -= per % l->group;
    if (per == 0) per = l->group; /* scratch_min guarantees room for one group */
    unsigned char *a = scratch, *w = scratch + half;
    for (uint64_t s0 = b0; s0 < b1; s0 += per) {
        const uint64_t s1 = b1 - s0 < per ? b1 : s0 + per, n = s1 - s0;
        for (int r = 0; r < l->n_regions; r++) {
            const uint32_t rb = l->region_bytes[r];
            for (uint64_t b = 0; b < n; b++) {
                uint32_t pos = 0;
                for (int p = 0; p < l->n_pieces; p++) {
                    const sl_gpu_layout_piece *pc = &l->pieces[p];
                    if (pc->region != r) continue;
                    memcpy(a + b * rb + pos, src + (s0 - b0 + b) * l->block_bytes + pc->src, pc->len);
                    pos += pc->len;
                }
            }
            const uint64_t base = sl_gpu_layout_region_base(l, nb, r);
            const uint32_t ub = l->unit_bytes[r];
            if (!ub) {
                sink(ctx, chunk, base + s0 * rb, a, n * rb);
                continue;
            }
            const uint64_t upb = rb / ub, n_units = nb * upb, u0 = s0 * upb, nu = n * upb;
            for (uint32_t k = 0; k < ub / 16; k++) {
                for (uint64_t i = 0; i < nu; i++) memcpy(w + i * 16, a + i * ub + k * 16, 16);
                sink(ctx, chunk, base + (uint64_t)k * n_units * 16 + u0 * 16, w, nu * 16);
            }
        }
    }
}

/* ---- carry ---------------------------------------------------------------- */

typedef struct sl_gpu_carry {
    int chunk;
    uint64_t group;
    uint32_t len, got;
    unsigned char bytes[SL_GPU_LAYOUT_MAX_GROUP_BYTES];
} sl_gpu_carry;

/* Adds bytes [at, at + n) of group g of chunk c (len bytes long); permutes
 * and writes the group once all of it arrived. */
static int carry_add(sl_gpu_relayout *st, const sl_gpu_layout *l, int c, uint64_t nb, uint64_t g, uint32_t len,
                     uint32_t at, const unsigned char *bytes, uint32_t n, unsigned char *scratch, size_t scratch_cap,
                     sl_gpu_layout_sink sink, void *ctx, sl_error *err) {
    int i = 0;
    while (i < st->n_carry && !(st->carry[i].chunk == c && st->carry[i].group == g)) i++;
    if (i == st->n_carry) {
        if (st->n_carry == st->cap_carry) {
            int nc = st->cap_carry ? 2 * st->cap_carry : 4;
            sl_gpu_carry *np = realloc(st->carry, (size_t)nc * sizeof *np);
            if (!np) return sl_err(err, "out of memory");
            st->carry = np;
            st->cap_carry = nc;
        }
        st->carry[i].chunk = c;
        st->carry[i].group = g;
        st->carry[i].len = len;
        st->carry[i].got = 0;
        st->n_carry++;
    }
    sl_gpu_carry *e = &st->carry[i];
    memcpy(e->bytes + at, bytes, n);
    e->got += n;
    if (e->got < e->len) return 0;
    const uint64_t b0 = g * l->group, b1 = b0 + e->len / l->block_bytes;
    sl_gpu_layout_permute(l, nb, b0, b1 < nb ? b1 : nb, e->bytes, scratch, scratch_cap, c, sink, ctx);
    st->carry[i] = st->carry[--st->n_carry];
    return 0;
}

int sl_gpu_relayout_put(sl_gpu_relayout *st, const sl_gpu_layout *l, const sl_gpu_chunk *chunks, int n_chunks,
                        uint64_t offset, const unsigned char *data, uint64_t len, unsigned char *scratch,
                        size_t scratch_cap, sl_gpu_layout_sink sink, void *ctx, sl_error *err) {
    const uint64_t end = offset + len, gb = (uint64_t)l->group * l->block_bytes;
    if (gb > SL_GPU_LAYOUT_MAX_GROUP_BYTES || scratch_cap < sl_gpu_layout_scratch_min())
        return sl_err(err, "internal: bad layout group or scratch");
    for (int c = 0; c < n_chunks; c++) {
        const sl_gpu_chunk *ch = &chunks[c];
        if (ch->bytes % l->block_bytes) return sl_err(err, "internal: a chunk of partial blocks");
        const uint64_t a = offset > ch->offset ? offset : ch->offset;
        const uint64_t b = end < ch->offset + ch->bytes ? end : ch->offset + ch->bytes;
        if (a >= b) continue;
        const uint64_t nb = ch->bytes / l->block_bytes, n_groups = (nb + l->group - 1) / l->group;
        /* chunk-relative positions */
        uint64_t pos = a - ch->offset;
        const uint64_t stop = b - ch->offset;
        while (pos < stop) {
            const uint64_t g = pos / gb, gs = g * gb, ge = gs + gb < ch->bytes ? gs + gb : ch->bytes;
            if (pos == gs && ge <= stop) {
                /* a run of whole groups */
                const uint64_t g_end = stop == ch->bytes ? n_groups : stop / gb;
                const uint64_t b1 = g_end * l->group < nb ? g_end * l->group : nb;
                sl_gpu_layout_permute(l, nb, g * l->group, b1, data + (ch->offset + gs - offset), scratch,
                                      scratch_cap, c, sink, ctx);
                pos = b1 * l->block_bytes;
            } else {
                const uint64_t to = stop < ge ? stop : ge;
                if (carry_add(st, l, c, nb, g, (uint32_t)(ge - gs), (uint32_t)(pos - gs),
                              data + (ch->offset + pos - offset), (uint32_t)(to - pos), scratch, scratch_cap, sink,
                              ctx, err))
                    return -1;
                pos = to;
            }
        }
    }
    return 0;
}

void sl_gpu_relayout_reset(sl_gpu_relayout *st) { st->n_carry = 0; }

int sl_gpu_relayout_pending(const sl_gpu_relayout *st) { return st->n_carry; }

void sl_gpu_relayout_free(sl_gpu_relayout *st) {
    free(st->carry);
    st->carry = NULL;
    st->n_carry = st->cap_carry = 0;
}
