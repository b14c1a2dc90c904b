/* layout.h - GPU weight layouts: how the blocks of a matrix chunk are laid
 * out in its GPU buffer, per format (formats as data).
 *
 * GGUF blocks are 18 (Q4_0), 34 (Q8_0), 144 (Q4_K), 210 (Q6_K) bytes: at
 * best 2-byte aligned, so kernels reading them as stored need byte
 * extraction and several narrow loads per quant word. For these formats the
 * engine permutes each chunk (the whole rows held by one storage binding,
 * plan.h) on upload into struct-of-arrays form, same total size: the chunk's
 * nb blocks give `regions`, one after the other, each holding the same
 * pieces of every block:
 *
 *   Q4_0  [nb][16] quants (32 nibbles)          | [nb] f16 d
 *   Q8_0  [nb][32] quants, word-major           | [nb] f16 d
 *   Q4_K  [2 nb][64] quants of half blocks,     | [nb][16] d, dmin, 12 scale bytes
 *         word-major
 *   Q6_K  [2 nb][96] half blocks (64 ql + 32 qh | [nb][16] scales | [nb] f16 d
 *         of that half), word-major
 *
 * A word-major region stores units (a block or half block, unit_bytes each)
 * as 16-byte words, word k of every unit before word k + 1 of any:
 * byte j of unit u is at base + (j / 16) * n_units * 16 + u * 16 + j % 16.
 * Consecutive invocations reading word k of consecutive units then load one
 * contiguous run (coalesced 16-byte loads); every region starts 16-byte
 * aligned. A layout-reading kernel addresses block b of its chunk given the
 * chunk's block count nb (region bases are multiples of nb).
 *
 * Uploads come in pieces at any 4-byte-aligned offset (plan.h, gpu.h); a
 * group of blocks (the fewest whose bytes in every plain region are a
 * multiple of 4: 2 for Q4_0, Q8_0, Q6_K, 1 for Q4_K) is permuted and written
 * once all its bytes arrived: pieces that cut a group leave its bytes in a
 * small carry (sl_gpu_relayout), whatever the order of the pieces. */
#ifndef SL_GPU_LAYOUT_H
#define SL_GPU_LAYOUT_H

#include "gpu/plan.h"

#define SL_GPU_LAYOUT_MAX_PIECES 6
#define SL_GPU_LAYOUT_MAX_REGIONS 3
#define SL_GPU_LAYOUT_MAX_GROUP_BYTES 512

typedef struct sl_gpu_layout_piece {
    uint16_t src, len; /* bytes [src, src + len) of a block */
    uint8_t region;    /* go to this region, after the block's previous pieces there */
} sl_gpu_layout_piece;

typedef struct sl_gpu_layout {
    sl_type type;
    uint32_t block_bytes, block_elems;
    int n_pieces;
    sl_gpu_layout_piece pieces[SL_GPU_LAYOUT_MAX_PIECES];
    int n_regions;
    uint32_t region_bytes[SL_GPU_LAYOUT_MAX_REGIONS]; /* per block */
    uint32_t unit_bytes[SL_GPU_LAYOUT_MAX_REGIONS];   /* word-major units (a multiple of 16), or 0: plain */
    uint32_t group;                                   /* blocks per upload group */
    bool fast;                                        /* used by default (SL_GPU_LAYOUTS_FAST) */
} sl_gpu_layout;

/* The layout of a format, or NULL: stored as in the file (raw). */
const sl_gpu_layout *sl_gpu_layout_get(sl_type type);

/* The layout a matrix of this format takes under `use`, or NULL (raw). */
const sl_gpu_layout *sl_gpu_layout_for(sl_type type, sl_gpu_layouts use);

/* Byte offset of region r in a chunk of nb blocks. */
uint64_t sl_gpu_layout_region_base(const sl_gpu_layout *l, uint64_t nb, int r);

/* Where byte j of block b's data in region r lies (the region's data of a
 * block: its pieces in order), in a chunk of nb blocks. */
uint64_t sl_gpu_layout_offset(const sl_gpu_layout *l, uint64_t nb, int r, uint64_t b, uint32_t j);

/* Receives the permuted bytes: len bytes for offset dst of chunk `chunk` (of
 * the tensor's chunks); dst and len are multiples of 4 except at the chunk's end. */
typedef void (*sl_gpu_layout_sink)(void *ctx, int chunk, uint64_t dst, const unsigned char *bytes, uint64_t len);

/* Permutes blocks [b0, b1) of a chunk of nb blocks, whose raw bytes are
 * src, into a few contiguous runs given to sink (scratch: at least
 * sl_gpu_layout_scratch_min bytes; larger scratch gives fewer, longer runs). */
void sl_gpu_layout_permute(const sl_gpu_layout *l, uint64_t nb, uint64_t b0, uint64_t b1, const unsigned char *src,
                           unsigned char *scratch, size_t scratch_cap, int chunk, sl_gpu_layout_sink sink, void *ctx);
size_t sl_gpu_layout_scratch_min(void);

/* One matrix's upload state: the bytes of groups not yet complete. */
typedef struct sl_gpu_relayout {
    struct sl_gpu_carry *carry;
    int n_carry, cap_carry;
} sl_gpu_relayout;

/* Takes bytes [offset, offset + len) of a matrix of layout l held in chunks
 * (plan chunks: offsets and sizes in the raw tensor). Complete groups go to
 * sink at once; cut ones wait in st until their other bytes arrive. */
int sl_gpu_relayout_put(sl_gpu_relayout *st, const sl_gpu_layout *l, const sl_gpu_chunk *chunks, int n_chunks,
                        uint64_t offset, const unsigned char *data, uint64_t len, unsigned char *scratch,
                        size_t scratch_cap, sl_gpu_layout_sink sink, void *ctx, sl_error *err);
/* Forgets the carried bytes (a new upload of the tensor starts). */
void sl_gpu_relayout_reset(sl_gpu_relayout *st);
/* Groups waiting for bytes. */
int sl_gpu_relayout_pending(const sl_gpu_relayout *st);
void sl_gpu_relayout_free(sl_gpu_relayout *st);

#endif
