/* fuzz_manifest.c - libFuzzer target for the manifest.json parser.
 *
 * The input is taken as manifest text (nothing on disk is consulted). What
 * parses must satisfy the parser's promises (tensors inside their shard,
 * sizes adding up, one block hash per block), and serializing it must give text that parses to the
 * same manifest: serializing that again gives the same bytes. Any violation
 * traps, so libFuzzer reports it like a crash. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "shard/shard.h"

#define REQUIRE(cond) \
    do {              \
        if (!(cond)) __builtin_trap(); \
    } while (0)

static void check_invariants(const sl_manifest *m) {
    REQUIRE(m->n_shards >= 1 && m->shards);
    uint64_t total = 0;
    for (int s = 0; s < m->n_shards; s++) {
        const sl_manifest_shard *sh = &m->shards[s];
        REQUIRE(sh->file && strlen(sh->sha256) == 64 && !strchr(sh->file, '/') && sh->file[0] != '.');
        REQUIRE((sh->layer_first < 0) == (sh->layer_last < 0) && sh->layer_first <= sh->layer_last);
        total += sh->bytes;
        if (sh->block_bytes == 0) {
            REQUIRE(sh->n_blocks == 0 && !sh->block_sha256);
        } else {
            REQUIRE((sh->block_bytes & (sh->block_bytes - 1)) == 0);
            REQUIRE(sh->block_bytes >= SL_SHARD_MIN_BLOCK_BYTES && sh->block_bytes <= SL_SHARD_MAX_BLOCK_BYTES);
            REQUIRE(sh->n_blocks == sh->bytes / sh->block_bytes + (sh->bytes % sh->block_bytes != 0));
            for (uint64_t b = 0; b < sh->n_blocks; b++) REQUIRE(strlen(sh->block_sha256[b]) == 64);
        }
        for (int64_t t = 0; t < sh->n_tensors; t++) {
            const sl_manifest_tensor *mt = &sh->tensors[t];
            REQUIRE(mt->name && mt->n_dims >= 1 && mt->n_dims <= SL_GGUF_MAX_DIMS);
            REQUIRE(mt->offset <= sh->bytes && mt->bytes <= sh->bytes - mt->offset);
        }
    }
    REQUIRE(total == m->total_bytes);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    sl_manifest m;
    sl_error err;
    if (sl_manifest_parse((const char *)data, size, &m, &err) != 0) {
        REQUIRE(err.msg[0] != 0);
        return 0;
    }
    check_invariants(&m);
    char *first = NULL, *second = NULL;
    REQUIRE(sl_manifest_to_json(&m, &first, &err) == 0);
    sl_manifest again;
    REQUIRE(sl_manifest_parse(first, strlen(first), &again, &err) == 0);
    REQUIRE(again.n_shards == m.n_shards && again.total_bytes == m.total_bytes);
    REQUIRE(sl_manifest_to_json(&again, &second, &err) == 0);
    REQUIRE(strcmp(first, second) == 0);
    free(first);
    free(second);
    sl_manifest_free(&again);
    sl_manifest_free(&m);
    return 0;
}
