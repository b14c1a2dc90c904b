/* shard.h - hierarchical shards: splitting a model into llama.cpp-split GGUF
 * files plus manifest.json, verifying them, and opening a shard directory as a
 * model (native: SHA-256 by OpenSSL libcrypto, JSON by cJSON).
 *
 * Layout (DESIGN.md "Shards"): shard 0 holds all metadata, the tokenizer and
 * the small tensors (norms, rope factors); each layer's tensors stay together
 * in one shard (grouped up to the size cap); token_embd and output have
 * shards of their own. File names carry a content hash, so they can be served
 * immutable. Same input, byte-identical output.
 *
 * Order of shards: 0 = metadata + every 1-D tensor outside the layers
 * (output_norm, rope_freqs, ...); then token_embd.weight; then the layers in
 * order, whole layers packed while the shard's tensor data (each tensor padded
 * to the alignment) stays within the cap (a layer larger than the cap alone is
 * cut between its tensors over several shards; one tensor larger than the cap
 * gets a shard to itself); then output.weight; then any other tensor outside
 * the layers, one shard each.
 *
 * File names: STEM-HASH-%05d-of-%05d.gguf, where HASH is the first 16 hex
 * digits of the SHA-256 of the shards' SHA-256 hex digests joined by '\n'
 * (a hash of the whole set). One hash for the whole set keeps llama.cpp's
 * split naming PREFIX-%05d-of-%05d.gguf (PREFIX = STEM-HASH), so llama.cpp
 * opens the set unchanged, and a name still names exactly one content: any
 * change to any shard changes every name. STEM is the input's file name
 * without ".gguf" (and without "-00001-of-0000N" for a llama.cpp split, or
 * "-HASH-00001-of-0000N" for a shard directory), so re-splitting a shard
 * directory or a llama.cpp split of the same model reproduces the same set. */
#ifndef SL_SHARD_H
#define SL_SHARD_H

#include "gguf/gguf.h"

#define SL_SHARD_DEFAULT_MAX_BYTES (64ull << 20)
/* Each shard is also hashed in blocks of this many bytes (the last one
 * shorter), so that a downloader can trust, store and refetch a shard block
 * by block. A power of two in [MIN, MAX]. */
#define SL_SHARD_DEFAULT_BLOCK_BYTES (4ull << 20)
#define SL_SHARD_MIN_BLOCK_BYTES (64ull << 10)
#define SL_SHARD_MAX_BLOCK_BYTES (64ull << 20)
#define SL_MANIFEST_FORMAT "stream-llm/1"
#define SL_MANIFEST_NAME "manifest.json"

typedef struct sl_split_opts {
    uint64_t max_shard_bytes; /* 0: SL_SHARD_DEFAULT_MAX_BYTES */
    const char *base_url;     /* when set, each shard gets "url": base_url + file */
    uint64_t block_bytes;     /* 0: SL_SHARD_DEFAULT_BLOCK_BYTES */
    bool progress;            /* progress bar on stderr */
} sl_split_opts;

/* Splits model_path (a .gguf, the first file of a llama.cpp split, or a shard
 * directory / manifest.json) into out_dir (created if missing): the shard
 * files and manifest.json. Writes to temporary names and renames at the end,
 * so an interrupted split never leaves a manifest that points at bad files.
 * Shard files of an earlier manifest in out_dir that the new one no longer
 * names are removed after the new manifest is in place. */
int sl_shard_split(const char *model_path, const char *out_dir, const sl_split_opts *opts, sl_error *err);

/* Rechecks every shard's size and SHA-256 (and its block SHA-256s, when the
 * manifest has them) against the manifest (dir or path of manifest.json),
 * then that the files' GGUF structure matches it. On failure err names the
 * first bad file (and block). */
int sl_shard_verify(const char *dir_or_manifest, sl_error *err);

/* True when path is a shard directory or a manifest.json. */
bool sl_shard_is_manifest_path(const char *path);

/* Opens a shard directory / manifest.json as one GGUF (metadata from shard 0,
 * tensors of every shard), checking each shard's size and each tensor's type,
 * shape, offset and size against the manifest (hashes: sl_shard_verify). */
sl_gguf *sl_shard_open(const char *dir_or_manifest, sl_error *err);

/* Opens any form of MODEL: a shard directory or manifest.json (sl_shard_open),
 * else a .gguf or the first file of a llama.cpp split (sl_gguf_open_file). */
sl_gguf *sl_shard_open_model(const char *path, sl_error *err);

/* SHA-256 of a file as 64 lowercase hex characters + NUL. */
int sl_sha256_file(const char *path, char hex[65], sl_error *err);
/* SHA-256 of bytes in memory, same form. */
int sl_sha256_hex(const void *data, size_t len, char hex[65], sl_error *err);

/* ---- manifest.json ------------------------------------------------------ */

typedef struct sl_manifest_tensor {
    char *name;
    int type;                    /* ggml type id ("type" is its name, "type_id" the id) */
    uint32_t n_dims;
    int64_t ne[SL_GGUF_MAX_DIMS]; /* "shape", ne[0] first; unused dims are 1 */
    uint64_t offset;             /* absolute offset of the data in the shard file */
    uint64_t bytes;
} sl_manifest_tensor;

typedef struct sl_manifest_shard {
    char *file;                  /* a plain file name (no '/', no leading '.'), relative to the manifest */
    char *url;                   /* NULL when absent */
    uint64_t bytes;              /* file size */
    char sha256[65];             /* lowercase hex; of the whole file (names it, keys caches) */
    /* "block_bytes" and "block_sha256" (optional, both or neither): the file
     * cut into blocks of block_bytes (the last one shorter), the SHA-256 of
     * each. block_bytes is 0 when absent. */
    uint64_t block_bytes;
    uint64_t n_blocks;           /* ceil(bytes / block_bytes) */
    char (*block_sha256)[65];
    int32_t layer_first, layer_last; /* "layers": [first, last]; -1, -1 when null */
    sl_manifest_tensor *tensors;
    int64_t n_tensors;
} sl_manifest_shard;

typedef struct sl_manifest {
    /* "model" */
    char *name;                  /* general.name, or the file stem */
    char *arch;
    char *quant;                 /* most common matrix type, e.g. "Q4_K" */
    uint64_t params;
    int64_t context;             /* training context length (0 when unknown) */
    int64_t n_vocab, n_embd, n_layer, n_head, n_head_kv;
    int64_t head_dim, n_ff;      /* optional keys: 0 when absent */
    /* "plan" (an estimate until the WebGPU memory plan exists: "estimate": true) */
    uint64_t plan_bytes;         /* weights + KV cache for the default context */
    uint64_t weight_bytes;       /* sum of the tensors' bytes (optional key: 0 when absent) */
    uint64_t kv_bytes;           /* f32 K and V for plan_context positions (optional) */
    int64_t plan_context;        /* the default context: min(context, 4096) (optional) */
    /* "shards" */
    sl_manifest_shard *shards;
    int n_shards;
    uint64_t total_bytes;        /* "bytes": sum of the shards' file sizes */
} sl_manifest;

/* Parses and validates manifest.json text (len bytes, need not be
 * NUL-terminated) without touching the disk: every required key present with
 * its type, no unknown keys (except inside "model" and "plan", which are open
 * for extension), "format" == SL_MANIFEST_FORMAT, integers exact and within
 * 2^53, file names plain and unique, tensor names unique, tensors inside their
 * shard and of the size their type and shape give; block hashes, when present,
 * one per block_bytes (a power of two in [SL_SHARD_MIN_BLOCK_BYTES,
 * SL_SHARD_MAX_BLOCK_BYTES]) of the file. On error *m is left empty
 * (safe to free). */
int sl_manifest_parse(const char *text, size_t len, sl_manifest *m, sl_error *err);
/* Reads dir/manifest.json (or the manifest path itself) and parses it. When
 * dir_out is not NULL it receives the directory the shard files are in
 * (malloc'd, no trailing '/'). */
int sl_manifest_load(const char *dir_or_manifest, sl_manifest *m, char **dir_out, sl_error *err);
void sl_manifest_free(sl_manifest *m);
/* The manifest as JSON text (malloc'd, NUL-terminated, ends in a newline):
 * the same bytes for the same content. */
int sl_manifest_to_json(const sl_manifest *m, char **out, sl_error *err);

#endif
