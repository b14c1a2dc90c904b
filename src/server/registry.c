/* registry.c - finding models, splitting them once into the cache, and what
 * the server answers about them (see registry.h). Native only (POSIX files,
 * cJSON).
 *
 * Cache layout: CACHE/SLUG-P/ where P is the first 16 hex digits of the
 * SHA-256 of the source's real path, so one source always has one folder.
 * The folder's ".stream-llm-source" holds the source key: the SHA-256 of a
 * text naming the shard format, the size cap, and for every file of the
 * source (each part of a llama.cpp split; the manifest of a shard directory)
 * its real path, size, modification time (ns) and the SHA-256 of its first
 * 4 MiB (the GGUF header lives there: a same-size, same-mtime copy of other
 * content is still noticed). When the key differs the source is split again
 * into the same folder (sl_shard_split replaces the files and removes shards
 * the new manifest no longer names). The key is written only after a split
 * succeeded, and shard sizes are rechecked on every start. */
#include "server/registry.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "shard/shard.h"

#define KEY_FILE ".stream-llm-source"
#define HEAD_HASH_BYTES (4u << 20)
#define MAX_SCAN_DEPTH 4
#define MAX_MANIFEST_BYTES (64u << 20)

static void logf_line(const sl_registry_opts *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void logf_line(const sl_registry_opts *o, const char *fmt, ...) {
    if (!o->log) return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(o->log, fmt, ap);
    va_end(ap);
    fputc('\n', o->log);
    fflush(o->log);
}

static bool ends_with_ci(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcasecmp(s + n - m, suffix) == 0;
}

static bool is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* out = dir/name; false when it does not fit. */
static bool join_path(char *out, size_t size, const char *dir, const char *name) {
    int n = snprintf(out, size, "%s/%s", dir, name);
    return n >= 0 && (size_t)n < size;
}

/* "NAME-00001-of-00003.gguf": *no = 1, *count = 3, *prefix_len = strlen("NAME"). */
static bool split_part_name(const char *base, int *no, int *count, size_t *prefix_len) {
    const size_t suffix_len = sizeof "-00001-of-00003.gguf" - 1;
    size_t n = strlen(base);
    if (n <= suffix_len) return false;
    const char *s = base + n - suffix_len;
    if (s[0] != '-' || strncmp(s + 6, "-of-", 4) != 0 || strcasecmp(s + 15, ".gguf") != 0) return false;
    int a = 0, b = 0;
    for (int i = 0; i < 5; i++) {
        if (s[1 + i] < '0' || s[1 + i] > '9' || s[10 + i] < '0' || s[10 + i] > '9') return false;
        a = a * 10 + (s[1 + i] - '0');
        b = b * 10 + (s[10 + i] - '0');
    }
    if (a < 1 || b < 1 || a > b) return false;
    *no = a;
    *count = b;
    *prefix_len = n - suffix_len;
    return true;
}

void sl_registry_slug(const char *path, char *out, size_t out_size) {
    char buf[PATH_MAX];
    snprintf(buf, sizeof buf, "%s", path);
    size_t n = strlen(buf);
    while (n > 1 && buf[n - 1] == '/') buf[--n] = 0;
    char *base = strrchr(buf, '/');
    base = base ? base + 1 : buf;
    if (strcmp(base, SL_MANIFEST_NAME) == 0 && base > buf) { /* .../DIR/manifest.json: DIR */
        base[-1] = 0;
        char *parent = strrchr(buf, '/');
        base = parent ? parent + 1 : buf;
    }
    int no, count;
    size_t prefix_len;
    if (split_part_name(base, &no, &count, &prefix_len)) base[prefix_len] = 0;
    else if (ends_with_ci(base, ".gguf")) base[strlen(base) - 5] = 0;

    size_t k = 0;
    for (const char *p = base; *p && k + 1 < out_size && k < 64; p++) {
        char c = *p;
        if (c >= 'A' && c <= 'Z') c = (char)(c - 'A' + 'a');
        bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
        if (k == 0 && (c == '.' || c == '-')) continue; /* never a hidden-looking id */
        out[k++] = ok ? c : '-';
    }
    if (k == 0 && out_size > 5) k = (size_t)snprintf(out, out_size, "model");
    if (out_size) out[k < out_size ? k : out_size - 1] = 0;
}

/* Reads a whole (small) file; NUL-terminated. */
static char *read_file(const char *path, size_t max, size_t *len, sl_error *err) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        sl_err(err, "cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size > max) {
        fclose(f);
        sl_err(err, "%s is not a regular file of at most %zu bytes", path, max);
        return NULL;
    }
    size_t n = (size_t)st.st_size;
    char *buf = malloc(n + 1);
    size_t got = buf ? fread(buf, 1, n, f) : 0;
    fclose(f);
    if (!buf || got != n) {
        free(buf);
        sl_err(err, "cannot read %s", path);
        return NULL;
    }
    buf[n] = 0;
    *len = n;
    return buf;
}

/* Appends to a growing text buffer. */
typedef struct text_buf {
    char *s;
    size_t len, cap;
    bool failed;
} text_buf;

static void tb_printf(text_buf *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void tb_printf(text_buf *t, const char *fmt, ...) {
    if (t->failed) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(t->s ? t->s + t->len : NULL, t->s ? t->cap - t->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            t->failed = true;
            return;
        }
        if (t->s && t->len + (size_t)n < t->cap) {
            t->len += (size_t)n;
            return;
        }
        size_t cap = t->cap ? t->cap * 2 : 1024;
        while (cap <= t->len + (size_t)n) cap *= 2;
        char *grown = realloc(t->s, cap);
        if (!grown) {
            t->failed = true;
            return;
        }
        t->s = grown;
        t->cap = cap;
    }
}

static int describe_file(text_buf *t, const char *path, unsigned char *head, sl_error *err) {
    char real[PATH_MAX];
    if (!realpath(path, real)) return sl_err(err, "cannot resolve %s: %s", path, strerror(errno));
    FILE *f = fopen(real, "rb");
    if (!f) return sl_err(err, "cannot open %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return sl_err(err, "%s is not a regular file", path);
    }
    size_t got = fread(head, 1, HEAD_HASH_BYTES, f);
    bool bad = ferror(f) != 0;
    fclose(f);
    if (bad) return sl_err(err, "cannot read %s", path);
    char hex[65];
    if (sl_sha256_hex(head, got, hex, err)) return -1;
    tb_printf(t, "file=%s\nsize=%lld\nmtime=%lld.%09ld\nhead_sha256=%s\n", real, (long long)st.st_size,
              (long long)st.st_mtim.tv_sec, (long)st.st_mtim.tv_nsec, hex);
    return 0;
}

/* The source key described at the top of this file. */
static int source_key(const char *path, uint64_t max_shard_bytes, char key[65], sl_error *err) {
    text_buf t = {0};
    /* block_bytes: caches split before the manifests had block hashes are split again */
    tb_printf(&t, "stream-llm shard cache\nformat=%s\nmax_shard_bytes=%llu\nblock_bytes=%llu\n", SL_MANIFEST_FORMAT,
              (unsigned long long)max_shard_bytes, (unsigned long long)SL_SHARD_DEFAULT_BLOCK_BYTES);
    unsigned char *head = malloc(HEAD_HASH_BYTES);
    int rc = head ? 0 : sl_err(err, "out of memory");
    if (!rc && sl_shard_is_manifest_path(path)) {
        char manifest[PATH_MAX];
        bool fits = is_dir(path) ? join_path(manifest, sizeof manifest, path, SL_MANIFEST_NAME)
                                 : snprintf(manifest, sizeof manifest, "%s", path) < (int)sizeof manifest;
        rc = fits ? describe_file(&t, manifest, head, err) : sl_err(err, "path too long: %s", path);
    } else if (!rc) {
        const char *slash = strrchr(path, '/');
        const char *base = slash ? slash + 1 : path;
        int no, count;
        size_t prefix_len;
        if (split_part_name(base, &no, &count, &prefix_len) && no == 1) {
            size_t dir_len = (size_t)(base - path) + prefix_len;
            for (int i = 1; i <= count && !rc; i++) {
                char part[PATH_MAX];
                int n = snprintf(part, sizeof part, "%.*s-%05d-of-%05d.gguf", (int)dir_len, path, i, count);
                if (n < 0 || (size_t)n >= sizeof part) rc = sl_err(err, "path too long: %s", path);
                else rc = describe_file(&t, part, head, err);
            }
        } else {
            rc = describe_file(&t, path, head, err);
        }
    }
    free(head);
    if (!rc && t.failed) rc = sl_err(err, "out of memory");
    if (!rc) rc = sl_sha256_hex(t.s, t.len, key, err);
    free(t.s);
    return rc;
}

static int make_dirs(const char *path, sl_error *err) {
    char buf[PATH_MAX];
    int n = snprintf(buf, sizeof buf, "%s", path);
    if (n < 0 || (size_t)n >= sizeof buf) return sl_err(err, "path too long: %s", path);
    for (char *p = buf + 1; ; p++) {
        if (*p == '/' || *p == 0) {
            char saved = *p;
            *p = 0;
            if (mkdir(buf, 0755) != 0 && errno != EEXIST) return sl_err(err, "cannot create %s: %s", buf, strerror(errno));
            *p = saved;
            if (!saved) break;
        }
    }
    if (!is_dir(path)) return sl_err(err, "%s is not a directory", path);
    return 0;
}

/* The manifest in dir loads and every shard file has its recorded size. */
static bool shards_intact(const char *dir) {
    sl_manifest m = {0};
    if (sl_manifest_load(dir, &m, NULL, NULL) != 0) return false;
    bool ok = true;
    for (int i = 0; i < m.n_shards && ok; i++) {
        char path[PATH_MAX];
        struct stat st;
        ok = join_path(path, sizeof path, dir, m.shards[i].file) && lstat(path, &st) == 0 && S_ISREG(st.st_mode) && (uint64_t)st.st_size == m.shards[i].bytes;
    }
    sl_manifest_free(&m);
    return ok;
}

static bool key_matches(const char *dir, const char *key) {
    char path[PATH_MAX];
    if (!join_path(path, sizeof path, dir, KEY_FILE)) return false;
    size_t len;
    char *text = read_file(path, 1024, &len, NULL);
    bool same = text && len >= 64 && memcmp(text, key, 64) == 0;
    free(text);
    return same;
}

static int write_key(const char *dir, const char *key, sl_error *err) {
    char path[PATH_MAX], tmp[PATH_MAX];
    if (!join_path(path, sizeof path, dir, KEY_FILE) || !join_path(tmp, sizeof tmp, dir, KEY_FILE ".tmp"))
        return sl_err(err, "path too long: %s", dir);
    FILE *f = fopen(tmp, "wb");
    if (!f) return sl_err(err, "cannot write %s: %s", tmp, strerror(errno));
    bool ok = fprintf(f, "%s\n", key) == 65;
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, path) != 0) {
        unlink(tmp);
        return sl_err(err, "cannot write %s", path);
    }
    return 0;
}

/* Splits source into dir unless dir already holds it. *fresh: it was split now. */
static int prepare_shards(const char *source, const char *dir, const sl_registry_opts *o, bool *fresh, sl_error *err) {
    char key[65];
    if (source_key(source, o->max_shard_bytes, key, err)) return -1;
    if (make_dirs(dir, err)) return -1;
    *fresh = false;
    if (key_matches(dir, key) && shards_intact(dir)) return 0;
    char path[PATH_MAX];
    if (join_path(path, sizeof path, dir, KEY_FILE)) unlink(path);
    sl_split_opts so = {.max_shard_bytes = o->max_shard_bytes, .progress = o->progress};
    if (sl_shard_split(source, dir, &so, err)) {
        rmdir(dir); /* when nothing is left in it */
        return -1;
    }
    *fresh = true;
    return write_key(dir, key, err);
}

static void free_entry(sl_model_entry *m) {
    free(m->id);
    free(m->source);
    free(m->shard_dir);
    if (m->dir_fd >= 0) close(m->dir_fd);
    free(m->manifest);
    for (int i = 0; i < m->n_files; i++) free(m->files[i].name);
    free(m->files);
    free(m->name);
    free(m->arch);
    free(m->quant);
    memset(m, 0, sizeof *m);
    m->dir_fd = -1;
}

static char *dup_str(const char *s) { return s ? sl_strndup(s, strlen(s)) : NULL; }

/* Where the shards of model id are fetched from: PUBLIC_URL/ID/ or /models/ID/. */
static void shard_base_url(const sl_registry_opts *o, const char *id, char *out, size_t n) {
    if (o->public_url) {
        size_t len = strlen(o->public_url);
        while (len > 0 && o->public_url[len - 1] == '/') len--;
        snprintf(out, n, "%.*s/%s/", (int)len, o->public_url, id);
    } else {
        snprintf(out, n, "/models/%s/", id);
    }
}

/* The manifest text with each shard's "url" set (the rest kept as written). */
static char *served_manifest(const char *text, const char *id, const sl_registry_opts *o, sl_error *err) {
    cJSON *root = cJSON_Parse(text);
    cJSON *shards = root ? cJSON_GetObjectItemCaseSensitive(root, "shards") : NULL;
    if (!cJSON_IsArray(shards)) {
        cJSON_Delete(root);
        sl_err(err, "manifest of %s has no shard list", id);
        return NULL;
    }
    char base[2048];
    shard_base_url(o, id, base, sizeof base);
    bool ok = true;
    const cJSON *shard;
    cJSON_ArrayForEach(shard, shards) {
        const cJSON *file = cJSON_GetObjectItemCaseSensitive(shard, "file");
        if (!cJSON_IsString(file)) {
            ok = false;
            break;
        }
        char url[4096];
        snprintf(url, sizeof url, "%s%s", base, file->valuestring);
        cJSON_DeleteItemFromObjectCaseSensitive((cJSON *)shard, "url");
        ok = ok && cJSON_AddStringToObject((cJSON *)shard, "url", url) != NULL;
    }
    char *out = ok ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    if (!out) sl_err(err, "cannot build the manifest of %s", id);
    return out;
}

static bool id_taken(const sl_registry *r, const char *id) {
    for (int i = 0; i < r->n_models; i++)
        if (strcmp(r->models[i].id, id) == 0) return true;
    return false;
}

static int fill_entry(sl_model_entry *e, const sl_registry_opts *o, sl_error *err) {
    sl_manifest m = {0};
    if (sl_manifest_load(e->shard_dir, &m, NULL, err)) return -1;
    char path[PATH_MAX];
    size_t len;
    char *text = NULL;
    if (!join_path(path, sizeof path, e->shard_dir, SL_MANIFEST_NAME)) sl_err(err, "path too long: %s", e->shard_dir);
    else text = read_file(path, MAX_MANIFEST_BYTES, &len, err);
    int rc = text ? 0 : -1;
    if (!rc) {
        e->manifest = served_manifest(text, e->id, o, err);
        rc = e->manifest ? 0 : -1;
    }
    free(text);
    char hex[65];
    if (!rc) {
        e->manifest_len = strlen(e->manifest);
        rc = sl_sha256_hex(e->manifest, e->manifest_len, hex, err);
    }
    if (!rc) {
        snprintf(e->manifest_etag, sizeof e->manifest_etag, "\"%s\"", hex);
        e->files = calloc((size_t)m.n_shards + 1, sizeof *e->files);
        if (!e->files) rc = sl_err(err, "out of memory");
    }
    for (int i = 0; !rc && i < m.n_shards; i++) {
        sl_served_file *f = &e->files[e->n_files++];
        f->name = dup_str(m.shards[i].file);
        f->bytes = m.shards[i].bytes;
        f->immutable = true;
        snprintf(f->etag, sizeof f->etag, "\"%s\"", m.shards[i].sha256);
        if (!f->name) rc = sl_err(err, "out of memory");
    }
    if (!rc) {
        sl_served_file *f = &e->files[e->n_files++];
        f->name = dup_str(SL_MANIFEST_NAME);
        f->bytes = e->manifest_len;
        f->data = e->manifest;
        memcpy(f->etag, e->manifest_etag, sizeof f->etag);
        if (!f->name) rc = sl_err(err, "out of memory");
    }
    if (!rc) {
        e->name = dup_str(m.name ? m.name : e->id);
        e->arch = dup_str(m.arch ? m.arch : "");
        e->quant = dup_str(m.quant ? m.quant : "");
        e->params = m.params;
        e->bytes = m.total_bytes;
        e->plan_bytes = m.plan_bytes;
        e->context = m.context;
        e->n_shards = m.n_shards;
        if (!e->name || !e->arch || !e->quant) rc = sl_err(err, "out of memory");
    }
    if (!rc) {
        e->dir_fd = open(e->shard_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (e->dir_fd < 0) rc = sl_err(err, "cannot open %s: %s", e->shard_dir, strerror(errno));
    }
    sl_manifest_free(&m);
    return rc;
}

int sl_registry_add_path(sl_registry *r, const char *path, const sl_registry_opts *o, sl_error *err) {
    char real[PATH_MAX];
    if (!realpath(path, real)) return sl_err(err, "cannot open %s: %s", path, strerror(errno));
    if (!o->cache_dir) return sl_err(err, "no cache directory for shards");

    char slug[80], id[96], path_hash[65];
    sl_registry_slug(real, slug, sizeof slug);
    snprintf(id, sizeof id, "%s", slug);
    for (int k = 2; id_taken(r, id); k++) snprintf(id, sizeof id, "%s-%d", slug, k);
    if (sl_sha256_hex(real, strlen(real), path_hash, err)) return -1;

    sl_model_entry e = {.dir_fd = -1};
    char dir[PATH_MAX];
    int n = snprintf(dir, sizeof dir, "%s/%s-%.16s", o->cache_dir, slug, path_hash);
    if (n < 0 || (size_t)n >= sizeof dir) return sl_err(err, "cache path too long: %s", o->cache_dir);
    e.id = dup_str(id);
    e.source = dup_str(real);
    e.shard_dir = dup_str(dir);
    bool fresh = false;
    int rc = e.id && e.source && e.shard_dir ? 0 : sl_err(err, "out of memory");
    if (!rc) rc = prepare_shards(real, dir, o, &fresh, err);
    if (!rc) rc = fill_entry(&e, o, err);
    if (!rc) {
        sl_model_entry *grown = realloc(r->models, ((size_t)r->n_models + 1) * sizeof *grown);
        if (!grown) rc = sl_err(err, "out of memory");
        else {
            r->models = grown;
            r->models[r->n_models++] = e;
        }
    }
    if (rc) {
        free_entry(&e);
        return -1;
    }
    logf_line(o, "model %s: %s -> %s (%d shards, %.1f MiB, %s)", id, real, dir, e.n_shards,
              (double)e.bytes / (1024.0 * 1024.0), fresh ? "split now" : "cached");
    if (o->public_url) {
        char base[2048];
        shard_base_url(o, id, base, sizeof base);
        logf_line(o, "  shards of %s are fetched from %s: upload the files of %s/ there", id, base, dir);
    }
    return 0;
}

/* Adds the models of dir: its files first (in name order), then what its
 * folders hold, so that a top-level file gets the plain id. */
static void scan_dir(sl_registry *r, const char *dir, int depth, const char *cache_real, const sl_registry_opts *o) {
    struct dirent **names = NULL;
    int n = scandir(dir, &names, NULL, alphasort);
    if (n < 0) {
        logf_line(o, "skipping %s: %s", dir, strerror(errno));
        return;
    }
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < n; i++) {
            const char *name = names[i]->d_name;
            char full[PATH_MAX];
            struct stat st;
            if (name[0] == '.' || !join_path(full, sizeof full, dir, name) || stat(full, &st) != 0) continue;
            sl_error e;
            if (pass == 0 && S_ISREG(st.st_mode) && ends_with_ci(name, ".gguf")) {
                int no, count;
                size_t prefix_len;
                bool later_part = split_part_name(name, &no, &count, &prefix_len) && no != 1;
                if (!later_part && sl_registry_add_path(r, full, o, &e)) logf_line(o, "skipping %s: %s", full, e.msg);
            } else if (pass == 1 && S_ISDIR(st.st_mode)) {
                char real[PATH_MAX], manifest[PATH_MAX];
                if (!join_path(manifest, sizeof manifest, full, SL_MANIFEST_NAME)) continue;
                if (realpath(full, real) && cache_real && strcmp(real, cache_real) == 0) continue; /* our cache */
                if (access(manifest, F_OK) == 0) {
                    if (sl_registry_add_path(r, full, o, &e)) logf_line(o, "skipping %s: %s", full, e.msg);
                } else if (depth < MAX_SCAN_DEPTH) {
                    scan_dir(r, full, depth + 1, cache_real, o);
                }
            }
        }
    }
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
}

int sl_registry_add_dir(sl_registry *r, const char *dir, const sl_registry_opts *o, sl_error *err) {
    if (!is_dir(dir)) return sl_err(err, "%s is not a directory", dir);
    if (!o->cache_dir) return sl_err(err, "no cache directory for shards");
    if (make_dirs(o->cache_dir, err)) return -1;
    char cache_real[PATH_MAX];
    bool have_cache = realpath(o->cache_dir, cache_real) != NULL;
    scan_dir(r, dir, 0, have_cache ? cache_real : NULL, o);
    return 0;
}

int sl_registry_finish(sl_registry *r, sl_error *err) {
    cJSON *root = cJSON_CreateObject();
    cJSON *list = root ? cJSON_AddArrayToObject(root, "models") : NULL;
    bool ok = list != NULL;
    for (int i = 0; ok && i < r->n_models; i++) {
        const sl_model_entry *m = &r->models[i];
        cJSON *o = cJSON_CreateObject();
        char url[256];
        snprintf(url, sizeof url, "/api/models/%s", m->id);
        ok = o && cJSON_AddItemToArray(list, o) && cJSON_AddStringToObject(o, "id", m->id) &&
             cJSON_AddStringToObject(o, "name", m->name) && cJSON_AddStringToObject(o, "arch", m->arch) &&
             cJSON_AddNumberToObject(o, "params", (double)m->params) &&
             cJSON_AddStringToObject(o, "quant", m->quant) &&
             cJSON_AddNumberToObject(o, "bytes", (double)m->bytes) &&
             cJSON_AddNumberToObject(o, "context", (double)m->context) &&
             cJSON_AddNumberToObject(o, "plan_bytes", (double)m->plan_bytes) &&
             cJSON_AddNumberToObject(o, "shards", m->n_shards) && cJSON_AddStringToObject(o, "manifest", url);
    }
    char *text = ok ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    if (!text) return sl_err(err, "cannot build the model list");
    char hex[65];
    if (sl_sha256_hex(text, strlen(text), hex, err)) {
        free(text);
        return -1;
    }
    free(r->list_json);
    r->list_json = text;
    r->list_len = strlen(text);
    snprintf(r->list_etag, sizeof r->list_etag, "\"%s\"", hex);
    return 0;
}

const sl_model_entry *sl_registry_find(const sl_registry *r, const char *id) {
    for (int i = 0; i < r->n_models; i++)
        if (strcmp(r->models[i].id, id) == 0) return &r->models[i];
    return NULL;
}

const sl_served_file *sl_model_find_file(const sl_model_entry *m, const char *name) {
    for (int i = 0; i < m->n_files; i++)
        if (strcmp(m->files[i].name, name) == 0) return &m->files[i];
    return NULL;
}

void sl_registry_free(sl_registry *r) {
    for (int i = 0; i < r->n_models; i++) free_entry(&r->models[i]);
    free(r->models);
    free(r->list_json);
    memset(r, 0, sizeof *r);
}
