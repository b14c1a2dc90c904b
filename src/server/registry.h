/* registry.h - the models a server offers.
 *
 * Every model (a .gguf, the first file of a llama.cpp split, or a shard
 * directory / manifest.json) is split into shards once, into its own folder of
 * the cache directory, and reused while its source is unchanged: the folder
 * records a key of the source (see source_key in registry.c) and is re-split
 * in place when the key differs. Each entry holds what the server answers
 * with: the manifest as served (every shard with a "url"), the list of files
 * that may be served from the folder (nothing else can be), and the facts
 * /api/models lists. The registry is read-only once built, so the server's
 * threads share it without locks. */
#ifndef SL_REGISTRY_H
#define SL_REGISTRY_H

#include <stdio.h>

#include "util/common.h"

typedef struct sl_served_file {
    char *name;      /* plain file name inside the model's shard folder */
    uint64_t bytes;  /* its size, as the manifest records it */
    char etag[68];   /* quoted: "\"<sha256 hex>\"" */
    bool immutable;  /* content-hashed shard (true) or the manifest (false) */
    const char *data; /* the bytes when served from memory (the manifest), else NULL */
} sl_served_file;

typedef struct sl_model_entry {
    char *id;            /* URL-safe: [a-z0-9._-] */
    char *source;        /* the path it was made from */
    char *shard_dir;     /* its folder in the cache */
    int dir_fd;          /* that folder, open: files are opened relative to it */
    char *manifest;      /* the manifest as served */
    size_t manifest_len;
    char manifest_etag[68];
    sl_served_file *files; /* the shards, then "manifest.json" */
    int n_files;
    /* facts for /api/models */
    char *name, *arch, *quant;
    uint64_t params, bytes, plan_bytes;
    int64_t context;
    int n_shards;
} sl_model_entry;

typedef struct sl_registry {
    sl_model_entry *models;
    int n_models;
    char *list_json; /* GET /api/models, built by sl_registry_finish */
    size_t list_len;
    char list_etag[68];
} sl_registry;

typedef struct sl_registry_opts {
    const char *cache_dir;    /* where shard folders live (created if missing) */
    const char *public_url;   /* when set, shard "url"s are PUBLIC_URL/ID/FILE, else /models/ID/FILE */
    uint64_t max_shard_bytes; /* 0: the shard default */
    bool progress;            /* split progress bars on stderr */
    FILE *log;                /* one line per model added or skipped (NULL: quiet) */
} sl_registry_opts;

/* Adds one model from path (split into the cache unless already there).
 * Fails with err on anything wrong with it. */
int sl_registry_add_path(sl_registry *r, const char *path, const sl_registry_opts *o, sl_error *err);

/* Adds every model under dir (recursively, a few levels deep; hidden entries,
 * the cache folder itself, *.part downloads and the later files of a
 * llama.cpp split are skipped). A model that fails is reported on o->log and
 * skipped; the call fails only when dir cannot be read. */
int sl_registry_add_dir(sl_registry *r, const char *dir, const sl_registry_opts *o, sl_error *err);

/* Builds the /api/models answer; call once after adding. */
int sl_registry_finish(sl_registry *r, sl_error *err);

const sl_model_entry *sl_registry_find(const sl_registry *r, const char *id);
const sl_served_file *sl_model_find_file(const sl_model_entry *m, const char *name);

void sl_registry_free(sl_registry *r);

/* The id a model source gets (before de-duplication): its file name without
 * ".gguf" and a llama.cpp split suffix, lowercased, other bytes than
 * [a-z0-9._-] as '-'. Exposed for tests. */
void sl_registry_slug(const char *path, char *out, size_t out_size);

#endif
