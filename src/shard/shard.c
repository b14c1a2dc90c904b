/* shard.c - splitting a model into hierarchical shards (see shard.h for the
 * layout and the naming), verifying a shard directory, and opening one as a
 * model. Native tool code: POSIX files, OpenSSL's SHA-256. */
#include "shard/shard.h"
#include "quant/quant.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- SHA-256 ---------------------------------------------------------------- */

static void to_hex(const unsigned char *md, char hex[65]) {
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
        hex[2 * i] = digits[md[i] >> 4];
        hex[2 * i + 1] = digits[md[i] & 15];
    }
    hex[64] = 0;
}

int sl_sha256_hex(const void *data, size_t len, char hex[65], sl_error *err) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    if (!EVP_Digest(data, len, md, &md_len, EVP_sha256(), NULL) || md_len != 32)
        return sl_err(err, "SHA-256 failed");
    to_hex(md, hex);
    return 0;
}

/* What hash_fd computes: the whole file's SHA-256, its size, and (when asked
 * for) the SHA-256 of each block of block_bytes (the last one shorter). */
typedef struct file_hashes {
    char whole[65];
    uint64_t size;
    uint64_t block_bytes; /* 0: no block hashes */
    char (*blocks)[65];   /* malloc'd, n_blocks of them */
    uint64_t n_blocks;
} file_hashes;

static bool digest_hex(EVP_MD_CTX *ctx, char hex[65]) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    if (!EVP_DigestFinal_ex(ctx, md, &md_len) || md_len != 32) return false;
    to_hex(md, hex);
    return true;
}

/* Appends the finished block hash to fh->blocks (grown by doubling). */
static bool push_block(file_hashes *fh, EVP_MD_CTX *ctx, uint64_t *cap) {
    if (fh->n_blocks == *cap) {
        uint64_t grown_cap = *cap ? *cap * 2 : 16;
        char(*grown)[65] = realloc(fh->blocks, (size_t)grown_cap * sizeof *grown);
        if (!grown) return false;
        fh->blocks = grown;
        *cap = grown_cap;
    }
    return digest_hex(ctx, fh->blocks[fh->n_blocks++]) && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
}

/* Hashes an open file from its start into fh (fh->block_bytes set by the
 * caller: 0 for the whole-file hash only). One pass over the bytes. */
static int hash_fd(int fd, const char *path, file_hashes *fh, sl_error *err) {
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_MD_CTX *block_ctx = fh->block_bytes ? EVP_MD_CTX_new() : NULL;
    unsigned char *buf = malloc(1 << 20);
    int rc = -1;
    uint64_t in_block = 0, cap = 0;
    fh->size = 0;
    fh->blocks = NULL;
    fh->n_blocks = 0;
    if (!ctx || !buf || !EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) ||
        (fh->block_bytes && (!block_ctx || !EVP_DigestInit_ex(block_ctx, EVP_sha256(), NULL)))) {
        sl_err(err, "out of memory hashing %s", path);
        goto done;
    }
    for (;;) {
        ssize_t got = read(fd, buf, 1 << 20);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) {
            sl_err(err, "cannot read %s: %s", path, strerror(errno));
            goto done;
        }
        if (got == 0) break;
        bool ok = EVP_DigestUpdate(ctx, buf, (size_t)got);
        /* the same bytes, cut at block boundaries */
        for (size_t at = 0; ok && block_ctx && at < (size_t)got;) {
            uint64_t room = fh->block_bytes - in_block;
            size_t n = (uint64_t)got - at < room ? (size_t)got - at : (size_t)room;
            ok = EVP_DigestUpdate(block_ctx, buf + at, n);
            at += n;
            in_block += n;
            if (ok && in_block == fh->block_bytes) {
                ok = push_block(fh, block_ctx, &cap);
                in_block = 0;
            }
        }
        if (!ok) {
            sl_err(err, "SHA-256 of %s failed", path);
            goto done;
        }
        fh->size += (uint64_t)got;
    }
    if (!digest_hex(ctx, fh->whole) || (block_ctx && in_block > 0 && !push_block(fh, block_ctx, &cap))) {
        sl_err(err, "SHA-256 of %s failed", path);
        goto done;
    }
    rc = 0;
done:
    if (rc) {
        free(fh->blocks);
        fh->blocks = NULL;
        fh->n_blocks = 0;
    }
    EVP_MD_CTX_free(ctx);
    EVP_MD_CTX_free(block_ctx);
    free(buf);
    return rc;
}

/* Hashes an open file from its start; when size is not NULL it receives the
 * number of bytes read. */
static int sha256_fd(int fd, const char *path, char hex[65], uint64_t *size, sl_error *err) {
    file_hashes fh = {.block_bytes = 0};
    if (hash_fd(fd, path, &fh, err)) return -1;
    memcpy(hex, fh.whole, 65);
    if (size) *size = fh.size;
    return 0;
}

int sl_sha256_file(const char *path, char hex[65], sl_error *err) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return sl_err(err, "cannot open %s: %s", path, strerror(errno));
    int rc = sha256_fd(fd, path, hex, NULL, err);
    close(fd);
    return rc;
}

/* ---- small helpers ---------------------------------------------------------- */

/* dir + "/" + name, malloc'd. */
static char *join_path(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static bool ends_with(const char *s, size_t n, const char *suffix) {
    size_t k = strlen(suffix);
    return n >= k && memcmp(s + n - k, suffix, k) == 0;
}

/* Length of s without a trailing "-%05d-of-%05d" (any numbers); n if absent. */
static size_t strip_split_suffix(const char *s, size_t n) {
    /* "-00001-of-00004" is 15 characters: '-', 5 digits, "-of-", 5 digits. */
    if (n < 15) return n;
    const char *p = s + n - 15;
    if (p[0] != '-' || memcmp(p + 6, "-of-", 4) != 0) return n;
    for (int i = 0; i < 5; i++)
        if (p[1 + i] < '0' || p[1 + i] > '9' || p[10 + i] < '0' || p[10 + i] > '9') return n;
    return n - 15;
}

/* Length of s without a trailing "-" + 16 lowercase hex digits; n if absent. */
static size_t strip_set_hash(const char *s, size_t n) {
    if (n < 17 || s[n - 17] != '-') return n;
    for (size_t i = n - 16; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return n;
    return n - 17;
}

/* ---- opening ------------------------------------------------------------------ */

/* Checks the opened set against the manifest: files, sizes, and every tensor's
 * place, type, shape and size. */
static int check_against_manifest(const sl_gguf *g, const sl_manifest *m, const char *dir,
                                  sl_error *err) {
    if (sl_gguf_n_files(g) != m->n_shards)
        return sl_err(err, "%s/%s: the GGUF set has %d files, the manifest lists %d", dir,
                      m->shards[0].file, sl_gguf_n_files(g), m->n_shards);
    int64_t n_listed = 0;
    for (int s = 0; s < m->n_shards; s++) {
        const sl_manifest_shard *sh = &m->shards[s];
        uint64_t size = sl_gguf_file_size(g, s);
        if (size != sh->bytes)
            return sl_err(err, "%s/%s: %" PRIu64 " bytes, the manifest says %" PRIu64, dir, sh->file,
                          size, sh->bytes);
        uint64_t data_offset = sl_gguf_file_data_offset(g, s);
        for (int64_t i = 0; i < sh->n_tensors; i++) {
            const sl_manifest_tensor *mt = &sh->tensors[i];
            const sl_gguf_tensor *t = sl_gguf_find_tensor(g, mt->name);
            bool same = t && t->file_index == s && t->type == mt->type && t->n_dims == mt->n_dims &&
                        t->nbytes == mt->bytes && data_offset + t->offset == mt->offset;
            for (uint32_t d = 0; same && d < SL_GGUF_MAX_DIMS; d++) same = t->ne[d] == mt->ne[d];
            if (!same)
                return sl_err(err, "%s/%s: tensor '%s' %s", dir, sh->file, mt->name,
                              t ? "differs from the manifest (type, shape, offset or size)"
                                : "is in the manifest but not in the file");
        }
        n_listed += sh->n_tensors;
    }
    if (n_listed != sl_gguf_n_tensors(g))
        return sl_err(err, "%s: the files hold %" PRId64 " tensors, the manifest lists %" PRId64, dir,
                      sl_gguf_n_tensors(g), n_listed);
    return 0;
}

/* The set must be named as llama.cpp expects (PREFIX-%05d-of-%05d.gguf), since
 * sl_gguf_open_file finds the parts by those names. */
static int check_names(const sl_manifest *m, sl_error *err) {
    if (m->n_shards == 1) return 0;
    const char *first = m->shards[0].file;
    size_t n = strlen(first) - 5; /* without ".gguf" (the parser checked it) */
    char suffix[32];
    snprintf(suffix, sizeof suffix, "-%05d-of-%05d", 1, m->n_shards);
    if (!ends_with(first, n, suffix))
        return sl_err(err, "manifest: shard 1 is %s; expected a name ending in '%s.gguf'", first, suffix);
    size_t prefix = n - strlen(suffix);
    for (int s = 1; s < m->n_shards; s++) {
        char want[300];
        snprintf(want, sizeof want, "%.*s-%05d-of-%05d.gguf", (int)prefix, first, s + 1, m->n_shards);
        if (strcmp(m->shards[s].file, want) != 0)
            return sl_err(err, "manifest: shard %d is %s; expected %s", s + 1, m->shards[s].file, want);
    }
    return 0;
}

static sl_gguf *open_with_manifest(const sl_manifest *m, const char *dir, sl_error *err) {
    if (check_names(m, err)) return NULL;
    char *first = join_path(dir, m->shards[0].file);
    if (!first) {
        sl_err(err, "out of memory");
        return NULL;
    }
    sl_gguf *g = sl_gguf_open_file(first, err);
    free(first);
    if (g && check_against_manifest(g, m, dir, err)) {
        sl_gguf_close(g);
        g = NULL;
    }
    return g;
}

sl_gguf *sl_shard_open(const char *dir_or_manifest, sl_error *err) {
    sl_manifest m;
    char *dir = NULL;
    if (sl_manifest_load(dir_or_manifest, &m, &dir, err)) return NULL;
    sl_gguf *g = open_with_manifest(&m, dir, err);
    sl_manifest_free(&m);
    free(dir);
    return g;
}

sl_gguf *sl_shard_open_model(const char *path, sl_error *err) {
    return sl_shard_is_manifest_path(path) ? sl_shard_open(path, err) : sl_gguf_open_file(path, err);
}

/* ---- verifying ---------------------------------------------------------------- */

int sl_shard_verify(const char *dir_or_manifest, sl_error *err) {
    sl_manifest m;
    char *dir = NULL;
    if (sl_manifest_load(dir_or_manifest, &m, &dir, err)) return -1;
    int rc = -1;
    for (int s = 0; s < m.n_shards; s++) {
        const sl_manifest_shard *sh = &m.shards[s];
        char *path = join_path(dir, sh->file);
        if (!path) {
            sl_err(err, "out of memory");
            goto done;
        }
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        struct stat st;
        if (fd < 0 || fstat(fd, &st) != 0) {
            sl_err(err, "%s: %s", path, strerror(errno));
            if (fd >= 0) close(fd);
            free(path);
            goto done;
        }
        file_hashes fh = {.block_bytes = sh->block_bytes};
        int bad = 0;
        if ((uint64_t)st.st_size != sh->bytes) {
            bad = sl_err(err, "%s: %" PRIu64 " bytes, the manifest says %" PRIu64, path,
                         (uint64_t)st.st_size, sh->bytes);
        } else if (hash_fd(fd, path, &fh, err)) {
            bad = -1;
        } else if (fh.size != sh->bytes) {
            bad = sl_err(err, "%s: changed while being read", path);
        } else if (strcmp(fh.whole, sh->sha256) != 0) {
            bad = sl_err(err, "%s: SHA-256 mismatch (file %.16s..., manifest %.16s...)", path,
                         fh.whole, sh->sha256);
        } else if (fh.n_blocks != sh->n_blocks) {
            bad = sl_err(err, "%s: %" PRIu64 " blocks, the manifest lists %" PRIu64, path,
                         fh.n_blocks, sh->n_blocks);
        } else {
            for (uint64_t b = 0; b < fh.n_blocks && !bad; b++)
                if (strcmp(fh.blocks[b], sh->block_sha256[b]) != 0)
                    bad = sl_err(err, "%s: block %" PRIu64 " of %" PRIu64 " (bytes from %" PRIu64
                                 "): SHA-256 mismatch (file %.16s..., manifest %.16s...)",
                                 path, b + 1, fh.n_blocks, b * sh->block_bytes, fh.blocks[b],
                                 sh->block_sha256[b]);
        }
        free(fh.blocks);
        close(fd);
        free(path);
        if (bad) goto done;
    }
    sl_gguf *g = open_with_manifest(&m, dir, err);
    if (g) {
        sl_gguf_close(g);
        rc = 0;
    }
done:
    sl_manifest_free(&m);
    free(dir);
    return rc;
}

/* ---- splitting ---------------------------------------------------------------- */

typedef enum group {
    GROUP_SMALL,  /* 1-D tensors outside the layers: shard 0 */
    GROUP_EMBD,   /* token_embd.weight */
    GROUP_LAYER,
    GROUP_OUTPUT, /* output.weight */
    GROUP_OTHER,  /* any other tensor outside the layers: a shard each */
} group;

typedef struct planned_tensor {
    const sl_gguf_tensor *t;
    group grp;
    int64_t layer;   /* GROUP_LAYER: blk.N */
    int64_t source;  /* index in the source, to keep the source's order within a group */
    uint64_t padded; /* bytes in the data section */
} planned_tensor;

typedef struct planned_shard {
    int64_t first, count;       /* range of the ordered tensor list */
    int32_t layer_first, layer_last; /* -1 when the shard has no layer tensors */
} planned_shard;

/* "blk.N." gives N; -1 when the name is not a layer tensor. */
static int64_t layer_of(const char *name) {
    if (strncmp(name, "blk.", 4) != 0) return -1;
    const char *p = name + 4;
    int64_t n = 0;
    int digits = 0;
    while (*p >= '0' && *p <= '9' && digits < 9) n = n * 10 + (*p++ - '0'), digits++;
    return digits > 0 && *p == '.' ? n : -1;
}

static int cmp_planned(const void *pa, const void *pb) {
    const planned_tensor *a = pa, *b = pb;
    if (a->grp != b->grp) return a->grp < b->grp ? -1 : 1;
    if (a->layer != b->layer) return a->layer < b->layer ? -1 : 1;
    return a->source < b->source ? -1 : a->source > b->source;
}

typedef struct split_state {
    sl_gguf *src;
    const char *out_dir;
    uint64_t cap, alignment;
    planned_tensor *tensors;
    int64_t n_tensors;
    planned_shard *shards;
    int n_shards, cap_shards;
    char **tmp_paths;           /* written temporaries, removed on failure */
    char (*sha)[65];
    uint64_t *file_bytes;
    uint64_t block_bytes;
    char (**block_sha)[65];     /* per shard: its block hashes */
    uint64_t *n_blocks;
    bool progress;
    uint64_t bytes_done, bytes_total;
} split_state;

static int add_shard(split_state *st, int64_t first, int64_t count, sl_error *err) {
    if (st->n_shards == st->cap_shards) {
        int cap = st->cap_shards ? st->cap_shards * 2 : 16;
        planned_shard *grown = realloc(st->shards, (size_t)cap * sizeof *grown);
        if (!grown) return sl_err(err, "out of memory");
        st->shards = grown;
        st->cap_shards = cap;
    }
    planned_shard *sh = &st->shards[st->n_shards++];
    memset(sh, 0, sizeof *sh);
    sh->first = first;
    sh->count = count;
    sh->layer_first = sh->layer_last = -1;
    for (int64_t i = first; i < first + count; i++) {
        const planned_tensor *p = &st->tensors[i];
        if (p->grp != GROUP_LAYER) continue;
        if (sh->layer_first < 0) sh->layer_first = (int32_t)p->layer;
        sh->layer_last = (int32_t)p->layer;
    }
    return 0;
}

/* Groups the ordered tensors into shards (shard.h says how). */
static int plan_shards(split_state *st, sl_error *err) {
    int64_t i = 0, n = st->n_tensors;
    const planned_tensor *T = st->tensors;
    int64_t start = i;
    while (i < n && T[i].grp == GROUP_SMALL) i++;
    if (add_shard(st, start, i - start, err)) return -1; /* shard 0 exists even without tensors */
    while (i < n && T[i].grp == GROUP_EMBD)
        if (add_shard(st, i++, 1, err)) return -1;
    /* Layers: whole layers while they fit; a layer over the cap alone is cut
     * between its tensors and closes its last shard. */
    int64_t open_first = i;
    uint64_t open_bytes = 0;
    while (i < n && T[i].grp == GROUP_LAYER) {
        int64_t end = i;
        uint64_t layer_bytes = 0;
        while (end < n && T[end].grp == GROUP_LAYER && T[end].layer == T[i].layer)
            layer_bytes += T[end++].padded;
        if (layer_bytes <= st->cap) {
            if (open_bytes > 0 && open_bytes + layer_bytes > st->cap) {
                if (add_shard(st, open_first, i - open_first, err)) return -1;
                open_first = i;
                open_bytes = 0;
            }
            open_bytes += layer_bytes;
            i = end;
            continue;
        }
        if (i > open_first && add_shard(st, open_first, i - open_first, err)) return -1;
        open_first = i;
        open_bytes = 0;
        for (; i < end; i++) {
            if (i > open_first && open_bytes + T[i].padded > st->cap) {
                if (add_shard(st, open_first, i - open_first, err)) return -1;
                open_first = i;
                open_bytes = 0;
            }
            open_bytes += T[i].padded;
        }
        if (add_shard(st, open_first, i - open_first, err)) return -1;
        open_first = i;
        open_bytes = 0;
    }
    if (i > open_first && add_shard(st, open_first, i - open_first, err)) return -1;
    while (i < n) /* output, then the others: one shard each */
        if (add_shard(st, i++, 1, err)) return -1;
    if (st->n_shards > 65535)
        return sl_err(err, "the split needs %d shards, more than llama.cpp's 65535; raise "
                      "--max-shard-size", st->n_shards);
    return 0;
}

/* Orders the source's tensors by group (stable within a group). */
static int order_tensors(split_state *st, sl_error *err) {
    int64_t n = sl_gguf_n_tensors(st->src);
    if (n > INT32_MAX) return sl_err(err, "too many tensors (%" PRId64 ")", n);
    st->tensors = calloc((size_t)(n > 0 ? n : 1), sizeof *st->tensors);
    if (!st->tensors) return sl_err(err, "out of memory");
    st->n_tensors = n;
    for (int64_t i = 0; i < n; i++) {
        planned_tensor *p = &st->tensors[i];
        p->t = sl_gguf_tensor_at(st->src, i);
        p->source = i;
        p->layer = layer_of(p->t->name);
        if (p->layer >= 0) p->grp = GROUP_LAYER;
        else if (p->t->n_dims == 1) p->grp = GROUP_SMALL;
        else if (!strcmp(p->t->name, "token_embd.weight")) p->grp = GROUP_EMBD;
        else if (!strcmp(p->t->name, "output.weight")) p->grp = GROUP_OUTPUT;
        else p->grp = GROUP_OTHER;
        if (p->layer < 0) p->layer = 0;
        p->padded = (p->t->nbytes + st->alignment - 1) / st->alignment * st->alignment;
        if (p->padded < p->t->nbytes || !sl_add_u64(st->bytes_total, p->padded, &st->bytes_total))
            return sl_err(err, "tensor data too large");
    }
    qsort(st->tensors, (size_t)n, sizeof *st->tensors, cmp_planned);
    return 0;
}

static void show_progress(const split_state *st, int shards_done) {
    if (!st->progress) return;
    const int width = 40;
    double frac = st->bytes_total ? (double)st->bytes_done / (double)st->bytes_total : 1.0;
    int filled = (int)(frac * width);
    char bar[64];
    for (int i = 0; i < width; i++) bar[i] = i < filled ? '#' : ' ';
    bar[width] = 0;
    fprintf(stderr, "\rsplit [%s] %3d%%  %d/%d shards  %.1f/%.1f MiB", bar, (int)(frac * 100),
            shards_done, st->n_shards, st->bytes_done / 1048576.0, st->bytes_total / 1048576.0);
    if (shards_done == st->n_shards) fputc('\n', stderr);
    fflush(stderr);
}

static int set_u16(sl_gguf_writer *w, const char *key, uint32_t v) {
    sl_gguf_value value = {.type = SL_GGUF_UINT16};
    value.u64 = v;
    return sl_gguf_set_value(w, key, &value);
}

static bool is_split_key(const char *key) { return strncmp(key, "split.", 6) == 0; }

/* Writes shard k to its temporary file, then hashes it and syncs it. */
static int write_shard(split_state *st, int k, sl_error *err) {
    const planned_shard *sh = &st->shards[k];
    sl_gguf_writer *w = sl_gguf_writer_new();
    if (!w) return sl_err(err, "out of memory");
    int rc = 0;
    if (k == 0) {
        for (int64_t i = 0; i < sl_gguf_n_kv(st->src) && rc == 0; i++) {
            const char *key = sl_gguf_key_at(st->src, i);
            if (!is_split_key(key)) rc = sl_gguf_set_value(w, key, sl_gguf_value_at(st->src, i));
        }
    } else if (st->alignment != SL_GGUF_DEFAULT_ALIGNMENT) {
        /* every part must say how its data is aligned; llama.cpp's own parts
         * carry only the split keys, which is right for the default */
        sl_gguf_set_alignment(w, (uint32_t)st->alignment);
    }
    /* The same keys, types and order as llama.cpp's gguf-split. */
    if (rc == 0)
        rc = set_u16(w, "split.no", (uint32_t)k) ||
             sl_gguf_set_i32(w, "split.tensors.count", (int32_t)st->n_tensors) ||
             set_u16(w, "split.count", (uint32_t)st->n_shards);
    if (rc) {
        sl_gguf_writer_free(w);
        return sl_err(err, "out of memory (or a bad metadata value) building shard %d", k + 1);
    }
    for (int64_t i = sh->first; i < sh->first + sh->count && rc == 0; i++) {
        const sl_gguf_tensor *t = st->tensors[i].t;
        rc = sl_gguf_add_tensor(w, t->name, t->type, t->n_dims, t->ne, t->data, err);
    }
    char name[64];
    snprintf(name, sizeof name, ".split-tmp-%ld-%05d.gguf", (long)getpid(), k + 1);
    char *path = join_path(st->out_dir, name);
    if (!path) rc = sl_err(err, "out of memory");
    if (rc == 0) {
        st->tmp_paths[k] = path;
        rc = sl_gguf_write_file(w, path, NULL, NULL, err);
    } else {
        free(path);
    }
    sl_gguf_writer_free(w);
    if (rc) return -1;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return sl_err(err, "cannot reopen %s: %s", path, strerror(errno));
    file_hashes fh = {.block_bytes = st->block_bytes};
    rc = hash_fd(fd, path, &fh, err);
    if (rc == 0) {
        memcpy(st->sha[k], fh.whole, 65);
        st->file_bytes[k] = fh.size;
        st->block_sha[k] = fh.blocks;
        st->n_blocks[k] = fh.n_blocks;
    }
    if (rc == 0 && fsync(fd) != 0) rc = sl_err(err, "cannot sync %s: %s", path, strerror(errno));
    close(fd);
    return rc;
}

/* The stem of the shard names (see shard.h), made of [A-Za-z0-9._-]. */
static char *derive_stem(const char *model_path, bool manifest_input, sl_error *err) {
    char *owned = NULL;
    const char *name;
    size_t n;
    if (manifest_input) {
        sl_manifest m;
        if (sl_manifest_load(model_path, &m, NULL, err)) return NULL;
        owned = sl_strndup(m.shards[0].file, strlen(m.shards[0].file));
        sl_manifest_free(&m);
        if (!owned) {
            sl_err(err, "out of memory");
            return NULL;
        }
        name = owned;
        n = strlen(name) - 5;
        n = strip_set_hash(name, strip_split_suffix(name, n));
    } else {
        const char *slash = strrchr(model_path, '/');
        name = slash ? slash + 1 : model_path;
        n = strlen(name);
        if (ends_with(name, n, ".gguf")) n -= 5;
        n = strip_split_suffix(name, n);
    }
    if (n > 100) n = 100;
    char *stem = malloc(n + 6);
    if (!stem) {
        free(owned);
        sl_err(err, "out of memory");
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == '-';
        stem[i] = ok ? c : '_';
    }
    if (n == 0 || stem[0] == '.') {
        memmove(stem + 5, stem, n);
        memcpy(stem, "model", 5);
        n += 5;
    }
    stem[n] = 0;
    free(owned);
    return stem;
}

/* Integer metadata ARCH.suffix, or def when absent or not an integer. */
static int64_t arch_int(const sl_gguf *g, const char *arch, const char *suffix, int64_t def) {
    char key[160];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    int64_t v;
    return sl_gguf_get_i64(g, key, &v, NULL) == 1 && v >= 0 ? v : def;
}

/* Model facts and plan estimate for the manifest. */
static int describe_model(const split_state *st, const char *stem, sl_manifest *m, sl_error *err) {
    const sl_gguf *g = st->src;
    sl_gguf_str s;
    char *arch = sl_gguf_get_str(g, "general.architecture", &s, NULL) == 1
                     ? sl_strndup(s.ptr, (size_t)s.len) : sl_strndup("unknown", 7);
    m->arch = arch;
    m->name = sl_gguf_get_str(g, "general.name", &s, NULL) == 1 ? sl_strndup(s.ptr, (size_t)s.len)
                                                                 : sl_strndup(stem, strlen(stem));
    if (!m->arch || !m->name) return sl_err(err, "out of memory");
    /* the type holding the most bytes among the layers' matrices (as sl_model_quant_name) */
    uint64_t by_type[SL_TYPE_COUNT] = {0}, any_type[SL_TYPE_COUNT] = {0};
    for (int64_t i = 0; i < st->n_tensors; i++) {
        const sl_gguf_tensor *t = st->tensors[i].t;
        uint64_t elements = 1;
        for (uint32_t d = 0; d < t->n_dims; d++) elements *= (uint64_t)t->ne[d];
        m->params += elements;
        m->weight_bytes += t->nbytes;
        if (t->type >= 0 && t->type < SL_TYPE_COUNT) {
            any_type[t->type] += t->nbytes;
            if (st->tensors[i].grp == GROUP_LAYER && t->n_dims >= 2) by_type[t->type] += t->nbytes;
        }
    }
    int best = 0;
    bool have_layers = false;
    for (int t = 0; t < SL_TYPE_COUNT; t++) have_layers |= by_type[t] > 0;
    const uint64_t *counts = have_layers ? by_type : any_type;
    for (int t = 1; t < SL_TYPE_COUNT; t++)
        if (counts[t] > counts[best]) best = t;
    const char *qn = sl_type_name(best);
    m->quant = sl_strndup(qn ? qn : "?", strlen(qn ? qn : "?"));
    if (!m->quant) return sl_err(err, "out of memory");

    m->context = arch_int(g, arch, "context_length", 0);
    m->n_embd = arch_int(g, arch, "embedding_length", 0);
    m->n_layer = arch_int(g, arch, "block_count", 0);
    m->n_head = arch_int(g, arch, "attention.head_count", 0);
    m->n_head_kv = arch_int(g, arch, "attention.head_count_kv", m->n_head);
    m->n_ff = arch_int(g, arch, "feed_forward_length", 0);
    m->head_dim = arch_int(g, arch, "attention.key_length", m->n_head > 0 ? m->n_embd / m->n_head : 0);
    m->n_vocab = arch_int(g, arch, "vocab_size", 0);
    const sl_gguf_value *tokens;
    if (m->n_vocab == 0 && sl_gguf_get_arr(g, "tokenizer.ggml.tokens", &tokens, NULL) == 1)
        m->n_vocab = (int64_t)tokens->arr.n;
    const sl_gguf_tensor *embd = sl_gguf_find_tensor(g, "token_embd.weight");
    if (m->n_vocab == 0 && embd && embd->n_dims >= 2) m->n_vocab = embd->ne[1];

    /* Estimate until the WebGPU memory plan exists: f32 K and V for the
     * context the CLI uses by default, min(context, 4096). */
    m->plan_context = m->context > 0 && m->context < 4096 ? m->context : 4096;
    uint64_t kv = 2 * 4;
    if (!sl_mul_u64(kv, (uint64_t)m->n_layer, &kv) || !sl_mul_u64(kv, (uint64_t)m->plan_context, &kv) ||
        !sl_mul_u64(kv, (uint64_t)m->n_head_kv, &kv) || !sl_mul_u64(kv, (uint64_t)m->head_dim, &kv) ||
        !sl_add_u64(kv, m->weight_bytes, &m->plan_bytes))
        return sl_err(err, "model dimensions overflow the memory estimate");
    m->kv_bytes = kv;
    return 0;
}

/* Fills the manifest's shards (names, sizes, hashes, tensors). */
static int describe_shards(const split_state *st, const char *prefix, const char *base_url,
                           sl_manifest *m, sl_error *err) {
    m->shards = calloc((size_t)st->n_shards, sizeof *m->shards);
    if (!m->shards) return sl_err(err, "out of memory");
    m->n_shards = st->n_shards;
    for (int k = 0; k < st->n_shards; k++) {
        const planned_shard *ps = &st->shards[k];
        sl_manifest_shard *sh = &m->shards[k];
        char file[300];
        snprintf(file, sizeof file, "%s-%05d-of-%05d.gguf", prefix, k + 1, st->n_shards);
        sh->file = sl_strndup(file, strlen(file));
        if (base_url) {
            size_t n = strlen(base_url) + strlen(file) + 1;
            sh->url = malloc(n);
            if (sh->url) snprintf(sh->url, n, "%s%s", base_url, file);
        }
        sh->tensors = calloc((size_t)(ps->count > 0 ? ps->count : 1), sizeof *sh->tensors);
        if (!sh->file || (base_url && !sh->url) || !sh->tensors) return sl_err(err, "out of memory");
        sh->bytes = st->file_bytes[k];
        memcpy(sh->sha256, st->sha[k], 65);
        sh->block_bytes = st->block_bytes;
        sh->n_blocks = st->n_blocks[k];
        sh->block_sha256 = st->block_sha[k]; /* the manifest owns them now */
        st->block_sha[k] = NULL;
        sh->layer_first = ps->layer_first;
        sh->layer_last = ps->layer_last;
        /* The writer lays the data out at the end of the file, each tensor
         * padded (the last too); sl_shard_open checks this against the files. */
        uint64_t data_bytes = 0;
        for (int64_t i = ps->first; i < ps->first + ps->count; i++) data_bytes += st->tensors[i].padded;
        if (data_bytes > sh->bytes) return sl_err(err, "shard %d is shorter than its tensors", k + 1);
        uint64_t offset = sh->bytes - data_bytes;
        for (int64_t i = 0; i < ps->count; i++) {
            const planned_tensor *p = &st->tensors[ps->first + i];
            sl_manifest_tensor *t = &sh->tensors[i];
            t->name = sl_strndup(p->t->name, strlen(p->t->name));
            if (!t->name) return sl_err(err, "out of memory");
            sh->n_tensors++;
            t->type = p->t->type;
            t->n_dims = p->t->n_dims;
            memcpy(t->ne, p->t->ne, sizeof t->ne);
            t->offset = offset;
            t->bytes = p->t->nbytes;
            offset += p->padded;
        }
        m->total_bytes += sh->bytes;
    }
    return 0;
}

/* Writes text to dir/name through a synced temporary file and a rename. */
static int write_file_atomic(const char *dir, const char *name, const char *text, sl_error *err) {
    char tmp_name[64];
    snprintf(tmp_name, sizeof tmp_name, ".%s.tmp-%ld", name, (long)getpid());
    char *tmp = join_path(dir, tmp_name), *path = join_path(dir, name);
    int rc = -1;
    if (!tmp || !path) {
        sl_err(err, "out of memory");
        goto done;
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        sl_err(err, "cannot create %s: %s", tmp, strerror(errno));
        goto done;
    }
    size_t len = strlen(text), done_bytes = 0;
    while (done_bytes < len) {
        ssize_t put = write(fd, text + done_bytes, len - done_bytes);
        if (put < 0 && errno == EINTR) continue;
        if (put <= 0) break;
        done_bytes += (size_t)put;
    }
    bool ok = done_bytes == len && fsync(fd) == 0;
    int saved = errno;
    close(fd);
    if (!ok || rename(tmp, path) != 0) {
        sl_err(err, "cannot write %s: %s", path, strerror(ok ? errno : saved));
        unlink(tmp);
        goto done;
    }
    rc = 0;
done:
    free(tmp);
    free(path);
    return rc;
}

static void sync_dir(const char *dir) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

/* Removes the files of the previous manifest that the new one does not name. */
static void remove_orphans(const char *dir, const sl_manifest *old, const sl_manifest *now) {
    for (int i = 0; i < old->n_shards; i++) {
        bool kept = false;
        for (int j = 0; j < now->n_shards && !kept; j++)
            kept = strcmp(old->shards[i].file, now->shards[j].file) == 0;
        if (kept) continue;
        char *path = join_path(dir, old->shards[i].file);
        if (path) unlink(path);
        free(path);
    }
}

int sl_shard_split(const char *model_path, const char *out_dir, const sl_split_opts *opts,
                   sl_error *err) {
    split_state st = {0};
    st.out_dir = out_dir;
    st.cap = opts && opts->max_shard_bytes ? opts->max_shard_bytes : SL_SHARD_DEFAULT_MAX_BYTES;
    st.progress = opts && opts->progress;
    st.block_bytes = opts && opts->block_bytes ? opts->block_bytes : SL_SHARD_DEFAULT_BLOCK_BYTES;
    const char *base_url = opts ? opts->base_url : NULL;
    bool manifest_input = sl_shard_is_manifest_path(model_path);
    sl_manifest m = {0}, old = {0};
    char *stem = NULL, *json = NULL;
    int rc = -1;

    st.src = sl_shard_open_model(model_path, err);
    if (!st.src) return -1;
    stem = derive_stem(model_path, manifest_input, err);
    if (!stem) goto done;
    st.alignment = sl_gguf_alignment(st.src);
    if (mkdir(out_dir, 0755) != 0 && errno != EEXIST) {
        sl_err(err, "cannot create %s: %s", out_dir, strerror(errno));
        goto done;
    }
    struct stat dst;
    if (stat(out_dir, &dst) != 0 || !S_ISDIR(dst.st_mode)) {
        sl_err(err, "%s is not a directory", out_dir);
        goto done;
    }
    if (st.block_bytes < SL_SHARD_MIN_BLOCK_BYTES || st.block_bytes > SL_SHARD_MAX_BLOCK_BYTES ||
        (st.block_bytes & (st.block_bytes - 1)) != 0) {
        sl_err(err, "block size %" PRIu64 " is not a power of two from 64 KiB to 64 MiB", st.block_bytes);
        goto done;
    }
    if (order_tensors(&st, err) || plan_shards(&st, err)) goto done;
    st.tmp_paths = calloc((size_t)st.n_shards, sizeof *st.tmp_paths);
    st.sha = calloc((size_t)st.n_shards, sizeof *st.sha);
    st.file_bytes = calloc((size_t)st.n_shards, sizeof *st.file_bytes);
    st.block_sha = calloc((size_t)st.n_shards, sizeof *st.block_sha);
    st.n_blocks = calloc((size_t)st.n_shards, sizeof *st.n_blocks);
    if (!st.tmp_paths || !st.sha || !st.file_bytes || !st.block_sha || !st.n_blocks) {
        sl_err(err, "out of memory");
        goto done;
    }
    show_progress(&st, 0);
    for (int k = 0; k < st.n_shards; k++) {
        if (write_shard(&st, k, err)) goto done;
        for (int64_t i = st.shards[k].first; i < st.shards[k].first + st.shards[k].count; i++)
            st.bytes_done += st.tensors[i].padded;
        show_progress(&st, k + 1);
    }

    /* The set's hash: of the shards' hashes, one per line. */
    size_t list_len = (size_t)st.n_shards * 65;
    char *list = malloc(list_len);
    char set_hash[65];
    if (!list) {
        sl_err(err, "out of memory");
        goto done;
    }
    for (int k = 0; k < st.n_shards; k++) {
        memcpy(list + (size_t)k * 65, st.sha[k], 64);
        list[(size_t)k * 65 + 64] = '\n';
    }
    int hash_rc = sl_sha256_hex(list, list_len, set_hash, err);
    free(list);
    if (hash_rc) goto done;
    char prefix[128];
    snprintf(prefix, sizeof prefix, "%s-%.16s", stem, set_hash);

    if (describe_model(&st, stem, &m, err) || describe_shards(&st, prefix, base_url, &m, err) ||
        sl_manifest_to_json(&m, &json, err))
        goto done;

    /* Shards under their final names first, then the manifest that names them. */
    sl_error ignored;
    bool had_old = sl_manifest_load(out_dir, &old, NULL, &ignored) == 0;
    for (int k = 0; k < st.n_shards; k++) {
        char *path = join_path(out_dir, m.shards[k].file);
        if (!path || rename(st.tmp_paths[k], path) != 0) {
            sl_err(err, "cannot rename %s to %s: %s", st.tmp_paths[k], path ? path : "?",
                   path ? strerror(errno) : "out of memory");
            free(path);
            goto done;
        }
        free(path);
        free(st.tmp_paths[k]);
        st.tmp_paths[k] = NULL;
    }
    sync_dir(out_dir);
    if (write_file_atomic(out_dir, SL_MANIFEST_NAME, json, err)) goto done;
    sync_dir(out_dir);
    if (had_old) remove_orphans(out_dir, &old, &m);

    /* The manifest's offsets came from the writer's layout: check them
     * against the files as a reader sees them. */
    sl_gguf *check = sl_shard_open(out_dir, err);
    if (!check) goto done;
    sl_gguf_close(check);
    rc = 0;
done:
    if (st.progress && rc) fputc('\n', stderr);
    for (int k = 0; st.tmp_paths && k < st.n_shards; k++) {
        if (st.tmp_paths[k]) unlink(st.tmp_paths[k]);
        free(st.tmp_paths[k]);
    }
    free(st.tmp_paths);
    free(st.sha);
    free(st.file_bytes);
    for (int k = 0; st.block_sha && k < st.n_shards; k++) free(st.block_sha[k]);
    free(st.block_sha);
    free(st.n_blocks);
    free(st.shards);
    free(st.tensors);
    free(stem);
    free(json);
    sl_manifest_free(&m);
    sl_manifest_free(&old);
    sl_gguf_close(st.src);
    return rc;
}
