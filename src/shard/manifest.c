/* manifest.c - manifest.json of a shard directory: strict parsing and
 * validation (text in, struct out, no disk access: the fuzz target's
 * surface), deterministic serialization, and loading from a directory.
 * Native tool code: cJSON and stdio. */
#include "shard/shard.h"
#include "quant/quant.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* JSON numbers are doubles: integers are exact up to 2^53. */
#define JSON_MAX_INT 9007199254740992.0
/* A manifest larger than this is not one we wrote. */
#define MANIFEST_MAX_BYTES (256u << 20)
#define FILE_NAME_MAX 255
/* split.count is a u16 in llama.cpp's split layout. */
#define MAX_SHARDS 65535

void sl_manifest_free(sl_manifest *m) {
    if (!m) return;
    for (int s = 0; s < m->n_shards; s++) {
        sl_manifest_shard *sh = &m->shards[s];
        for (int64_t t = 0; t < sh->n_tensors; t++) free(sh->tensors[t].name);
        free(sh->tensors);
        free(sh->block_sha256);
        free(sh->file);
        free(sh->url);
    }
    free(m->shards);
    free(m->name);
    free(m->arch);
    free(m->quant);
    memset(m, 0, sizeof *m);
}

/* ---- parsing -------------------------------------------------------------- */

/* Where in the document an error is, e.g. "shards[2].tensors[5]". */
typedef struct jpath {
    char text[128];
} jpath;

static int fail_at(sl_error *err, const jpath *at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail_at(sl_error *err, const jpath *at, const char *fmt, ...) {
    char msg[SL_ERR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return sl_err(err, "manifest: %s%s%s", at->text, at->text[0] ? ": " : "", msg);
}

/* Checks an object's keys: each key of `known` (at most 15) at most once and,
 * when `closed`, no other key. */
static int check_keys(const cJSON *obj, const char *const *known, bool closed, const jpath *at,
                      sl_error *err) {
    if (!cJSON_IsObject(obj)) return fail_at(err, at, "expected an object");
    int seen[16] = {0};
    for (const cJSON *c = obj->child; c; c = c->next) {
        int k = 0;
        while (known[k] && strcmp(c->string, known[k]) != 0) k++;
        if (known[k] && ++seen[k] > 1) return fail_at(err, at, "key '%s' appears twice", known[k]);
        if (!known[k] && closed) return fail_at(err, at, "unknown key '%.64s'", c->string);
    }
    return 0;
}

static const cJSON *get(const cJSON *obj, const char *key) {
    return cJSON_GetObjectItemCaseSensitive(obj, key);
}

/* A required (or, with `optional`, possibly absent) non-negative integer. */
static int get_uint(const cJSON *obj, const char *key, bool optional, uint64_t *out,
                    const jpath *at, sl_error *err) {
    const cJSON *v = get(obj, key);
    *out = 0;
    if (!v) return optional ? 0 : fail_at(err, at, "missing key '%s'", key);
    if (!cJSON_IsNumber(v)) return fail_at(err, at, "'%s' must be a number", key);
    double d = v->valuedouble;
    if (!isfinite(d) || d < 0 || d > JSON_MAX_INT || d != floor(d))
        return fail_at(err, at, "'%s' must be an integer in [0, 2^53], got %g", key, d);
    *out = (uint64_t)d;
    return 0;
}

/* Same, for fields kept as int64_t. */
static int get_int(const cJSON *obj, const char *key, bool optional, int64_t *out,
                   const jpath *at, sl_error *err) {
    uint64_t u;
    if (get_uint(obj, key, optional, &u, at, err)) return -1;
    *out = (int64_t)u;
    return 0;
}

/* A required string, copied. */
static int get_str(const cJSON *obj, const char *key, char **out, const jpath *at, sl_error *err) {
    const cJSON *v = get(obj, key);
    if (!v) return fail_at(err, at, "missing key '%s'", key);
    if (!cJSON_IsString(v) || !v->valuestring) return fail_at(err, at, "'%s' must be a string", key);
    *out = sl_strndup(v->valuestring, strlen(v->valuestring));
    return *out ? 0 : sl_err(err, "out of memory");
}

/* A shard file name must stay inside the manifest's directory and be safe to
 * serve: [A-Za-z0-9._-], not starting with '.', ending in ".gguf". */
static bool plain_file_name(const char *s) {
    size_t n = strlen(s);
    if (n < 6 || n > FILE_NAME_MAX || s[0] == '.' || strcmp(s + n - 5, ".gguf") != 0) return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == '-';
        if (!ok) return false;
    }
    return true;
}

static bool lower_hex64(const char *s) {
    if (strlen(s) != 64) return false;
    for (int i = 0; i < 64; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return false;
    return true;
}

static int parse_model(const cJSON *model, sl_manifest *m, sl_error *err) {
    static const char *const keys[] = {"name", "arch", "params", "quant", "context", "n_vocab",
                                       "n_embd", "n_layer", "n_head", "n_head_kv", "head_dim",
                                       "n_ff", NULL};
    jpath at = {"model"};
    if (!model) return sl_err(err, "manifest: missing key 'model'");
    if (check_keys(model, keys, false, &at, err)) return -1;
    if (get_str(model, "name", &m->name, &at, err) || get_str(model, "arch", &m->arch, &at, err) ||
        get_str(model, "quant", &m->quant, &at, err) ||
        get_uint(model, "params", false, &m->params, &at, err) ||
        get_int(model, "context", false, &m->context, &at, err) ||
        get_int(model, "n_vocab", false, &m->n_vocab, &at, err) ||
        get_int(model, "n_embd", false, &m->n_embd, &at, err) ||
        get_int(model, "n_layer", false, &m->n_layer, &at, err) ||
        get_int(model, "n_head", false, &m->n_head, &at, err) ||
        get_int(model, "n_head_kv", false, &m->n_head_kv, &at, err) ||
        get_int(model, "head_dim", true, &m->head_dim, &at, err) ||
        get_int(model, "n_ff", true, &m->n_ff, &at, err))
        return -1;
    return 0;
}

static int parse_plan(const cJSON *plan, sl_manifest *m, sl_error *err) {
    static const char *const keys[] = {"bytes", "weight_bytes", "kv_bytes", "context", "estimate",
                                       NULL};
    jpath at = {"plan"};
    if (!plan) return sl_err(err, "manifest: missing key 'plan'");
    if (check_keys(plan, keys, false, &at, err)) return -1;
    return get_uint(plan, "bytes", false, &m->plan_bytes, &at, err) ||
                   get_uint(plan, "weight_bytes", true, &m->weight_bytes, &at, err) ||
                   get_uint(plan, "kv_bytes", true, &m->kv_bytes, &at, err) ||
                   get_int(plan, "context", true, &m->plan_context, &at, err)
               ? -1
               : 0;
}

static int parse_tensor(const cJSON *jt, sl_manifest_tensor *t, const jpath *at, sl_error *err) {
    static const char *const keys[] = {"name", "type", "type_id", "shape", "offset", "bytes", NULL};
    if (check_keys(jt, keys, true, at, err) || get_str(jt, "name", &t->name, at, err)) return -1;
    size_t name_len = strlen(t->name);
    if (name_len == 0 || name_len >= SL_GGUF_MAX_NAME)
        return fail_at(err, at, "tensor name must have 1..%d bytes", SL_GGUF_MAX_NAME - 1);
    const cJSON *type = get(jt, "type");
    if (!type) return fail_at(err, at, "missing key 'type'");
    if (!cJSON_IsString(type)) return fail_at(err, at, "'type' must be a string");
    uint64_t type_id;
    if (get_uint(jt, "type_id", false, &type_id, at, err)) return -1;
    const char *type_name = type_id < SL_TYPE_COUNT ? sl_type_name((int)type_id) : NULL;
    if (!type_name) return fail_at(err, at, "unknown type_id %" PRIu64, type_id);
    if (strcmp(type->valuestring, type_name) != 0)
        return fail_at(err, at, "'type' is \"%.32s\" but type_id %" PRIu64 " is %s",
                       type->valuestring, type_id, type_name);
    t->type = (int)type_id;
    const cJSON *shape = get(jt, "shape");
    if (!shape) return fail_at(err, at, "missing key 'shape'");
    int n_dims = cJSON_IsArray(shape) ? cJSON_GetArraySize(shape) : -1;
    if (n_dims < 1 || n_dims > SL_GGUF_MAX_DIMS)
        return fail_at(err, at, "'shape' must be an array of 1..%d integers", SL_GGUF_MAX_DIMS);
    t->n_dims = (uint32_t)n_dims;
    int d = 0;
    for (const cJSON *e = shape->child; e; e = e->next, d++) {
        if (!cJSON_IsNumber(e) || !isfinite(e->valuedouble) || e->valuedouble < 0 ||
            e->valuedouble > JSON_MAX_INT || e->valuedouble != floor(e->valuedouble))
            return fail_at(err, at, "'shape' must be an array of 1..%d integers", SL_GGUF_MAX_DIMS);
        t->ne[d] = (int64_t)e->valuedouble;
    }
    for (; d < SL_GGUF_MAX_DIMS; d++) t->ne[d] = 1;
    if (get_uint(jt, "offset", false, &t->offset, at, err) ||
        get_uint(jt, "bytes", false, &t->bytes, at, err))
        return -1;
    uint64_t expect;
    sl_error shape_err;
    if (sl_gguf_tensor_nbytes(t->name, t->type, t->n_dims, t->ne, &expect, &shape_err))
        return fail_at(err, at, "%s", shape_err.msg);
    if (expect != t->bytes)
        return fail_at(err, at, "'bytes' is %" PRIu64 ", but type %s and shape give %" PRIu64,
                       t->bytes, type_name, expect);
    return 0;
}

/* "block_bytes" and "block_sha256": both or neither; a power of two in
 * range, and exactly one hash per block of the file. */
static int parse_blocks(const cJSON *js, sl_manifest_shard *sh, const jpath *at, sl_error *err) {
    const cJSON *list = get(js, "block_sha256");
    bool have_size = get(js, "block_bytes") != NULL;
    if (!have_size && !list) return 0;
    if (!have_size) return fail_at(err, at, "'block_sha256' without 'block_bytes'");
    if (!list) return fail_at(err, at, "'block_bytes' without 'block_sha256'");
    if (get_uint(js, "block_bytes", false, &sh->block_bytes, at, err)) return -1;
    uint64_t b = sh->block_bytes;
    if (b < SL_SHARD_MIN_BLOCK_BYTES || b > SL_SHARD_MAX_BLOCK_BYTES || (b & (b - 1)) != 0)
        return fail_at(err, at, "'block_bytes' must be a power of two from %llu to %llu, got %" PRIu64,
                       (unsigned long long)SL_SHARD_MIN_BLOCK_BYTES,
                       (unsigned long long)SL_SHARD_MAX_BLOCK_BYTES, b);
    if (!cJSON_IsArray(list)) return fail_at(err, at, "'block_sha256' must be an array");
    uint64_t want = sh->bytes / b + (sh->bytes % b != 0);
    uint64_t got = (uint64_t)cJSON_GetArraySize(list);
    if (got != want)
        return fail_at(err, at, "'block_sha256' has %" PRIu64 " hashes, but %" PRIu64
                       " bytes in blocks of %" PRIu64 " make %" PRIu64, got, sh->bytes, b, want);
    if (want > 0) {
        sh->block_sha256 = calloc((size_t)want, sizeof *sh->block_sha256);
        if (!sh->block_sha256) return sl_err(err, "out of memory");
    }
    uint64_t i = 0;
    for (const cJSON *e = list->child; e; e = e->next, i++) {
        if (!cJSON_IsString(e) || !lower_hex64(e->valuestring))
            return fail_at(err, at, "'block_sha256'[%" PRIu64 "] must be 64 lowercase hex digits", i);
        memcpy(sh->block_sha256[i], e->valuestring, 65);
    }
    sh->n_blocks = want;
    return 0;
}

static int parse_shard(const cJSON *js, sl_manifest_shard *sh, int index, sl_error *err) {
    static const char *const keys[] = {"file", "url", "bytes", "sha256", "block_bytes",
                                       "block_sha256", "layers", "tensors", NULL};
    jpath at;
    snprintf(at.text, sizeof at.text, "shards[%d]", index);
    sh->layer_first = sh->layer_last = -1;
    if (check_keys(js, keys, true, &at, err) || get_str(js, "file", &sh->file, &at, err)) return -1;
    if (!plain_file_name(sh->file))
        return fail_at(err, &at, "file \"%.80s\" is not a plain *.gguf file name", sh->file);
    snprintf(at.text, sizeof at.text, "shards[%d] (%.80s)", index, sh->file);
    if (get(js, "url") && get_str(js, "url", &sh->url, &at, err)) return -1;
    if (get_uint(js, "bytes", false, &sh->bytes, &at, err)) return -1;
    const cJSON *sha = get(js, "sha256");
    if (!sha) return fail_at(err, &at, "missing key 'sha256'");
    if (!cJSON_IsString(sha) || !lower_hex64(sha->valuestring))
        return fail_at(err, &at, "'sha256' must be 64 lowercase hex digits");
    memcpy(sh->sha256, sha->valuestring, 65);
    if (parse_blocks(js, sh, &at, err)) return -1;

    const cJSON *layers = get(js, "layers");
    if (!layers) return fail_at(err, &at, "missing key 'layers'");
    if (!cJSON_IsNull(layers)) {
        const cJSON *a = cJSON_IsArray(layers) ? layers->child : NULL;
        const cJSON *b = a ? a->next : NULL;
        bool ok = b && !b->next && cJSON_IsNumber(a) && cJSON_IsNumber(b) &&
                  a->valuedouble >= 0 && a->valuedouble <= b->valuedouble &&
                  b->valuedouble < INT32_MAX && a->valuedouble == floor(a->valuedouble) &&
                  b->valuedouble == floor(b->valuedouble);
        if (!ok) return fail_at(err, &at, "'layers' must be null or [first, last] with first <= last");
        sh->layer_first = (int32_t)a->valuedouble;
        sh->layer_last = (int32_t)b->valuedouble;
    }

    const cJSON *tensors = get(js, "tensors");
    if (!tensors) return fail_at(err, &at, "missing key 'tensors'");
    if (!cJSON_IsArray(tensors)) return fail_at(err, &at, "'tensors' must be an array");
    int n = cJSON_GetArraySize(tensors);
    if (n > 0) {
        sh->tensors = calloc((size_t)n, sizeof *sh->tensors);
        if (!sh->tensors) return sl_err(err, "out of memory");
    }
    uint64_t end_prev = 0;
    for (const cJSON *jt = tensors->child; jt; jt = jt->next) {
        sl_manifest_tensor *t = &sh->tensors[sh->n_tensors];
        jpath tat;
        snprintf(tat.text, sizeof tat.text, "%.96s.tensors[%" PRId64 "]", at.text, sh->n_tensors);
        sh->n_tensors++; /* counted before parsing so that free releases its name */
        if (parse_tensor(jt, t, &tat, err)) return -1;
        uint64_t end;
        if (!sl_add_u64(t->offset, t->bytes, &end) || end > sh->bytes)
            return fail_at(err, &tat, "tensor '%s' (offset %" PRIu64 ", %" PRIu64
                           " bytes) lies outside the shard's %" PRIu64 " bytes",
                           t->name, t->offset, t->bytes, sh->bytes);
        if (t->offset < end_prev)
            return fail_at(err, &tat, "tensor '%s' overlaps the one before it", t->name);
        end_prev = end;
    }
    return 0;
}

/* Sorts names and returns the first one that appears twice, or NULL. */
static int cmp_names(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static const char *first_duplicate(const char **names, size_t n) {
    qsort(names, n, sizeof *names, cmp_names);
    for (size_t i = 1; i < n; i++)
        if (strcmp(names[i - 1], names[i]) == 0) return names[i];
    return NULL;
}

/* Tensor names are unique across the whole manifest (they are one model), and
 * so are file names. */
static int check_unique(const sl_manifest *m, sl_error *err) {
    int64_t n = m->n_shards;
    for (int s = 0; s < m->n_shards; s++) n += m->shards[s].n_tensors;
    const char **names = malloc((size_t)n * sizeof *names);
    if (!names) return sl_err(err, "out of memory");
    int64_t k = 0;
    for (int s = 0; s < m->n_shards; s++)
        for (int64_t t = 0; t < m->shards[s].n_tensors; t++) names[k++] = m->shards[s].tensors[t].name;
    int rc = 0;
    const char *dup = first_duplicate(names, (size_t)k);
    if (dup) {
        rc = sl_err(err, "manifest: tensor '%s' appears twice", dup);
    } else {
        for (int s = 0; s < m->n_shards; s++) names[s] = m->shards[s].file;
        dup = first_duplicate(names, (size_t)m->n_shards);
        if (dup) rc = sl_err(err, "manifest: file %s appears twice", dup);
    }
    free(names);
    return rc;
}

static int parse_root(const cJSON *root, sl_manifest *m, sl_error *err) {
    static const char *const keys[] = {"format", "model", "plan", "bytes", "shards", NULL};
    jpath at = {""};
    if (check_keys(root, keys, true, &at, err)) return -1;
    const cJSON *format = get(root, "format");
    if (!format) return sl_err(err, "manifest: missing key 'format'");
    if (!cJSON_IsString(format) || strcmp(format->valuestring, SL_MANIFEST_FORMAT) != 0)
        return sl_err(err, "manifest: 'format' must be \"%s\"", SL_MANIFEST_FORMAT);
    if (parse_model(get(root, "model"), m, err) || parse_plan(get(root, "plan"), m, err)) return -1;
    uint64_t total;
    if (get_uint(root, "bytes", false, &total, &at, err)) return -1;

    const cJSON *shards = get(root, "shards");
    if (!shards) return sl_err(err, "manifest: missing key 'shards'");
    int n = cJSON_IsArray(shards) ? cJSON_GetArraySize(shards) : 0;
    if (n < 1 || n > MAX_SHARDS)
        return sl_err(err, "manifest: 'shards' must be an array of 1..%d shards", MAX_SHARDS);
    m->shards = calloc((size_t)n, sizeof *m->shards);
    if (!m->shards) return sl_err(err, "out of memory");
    for (const cJSON *js = shards->child; js; js = js->next) {
        sl_manifest_shard *sh = &m->shards[m->n_shards];
        m->n_shards++;
        if (parse_shard(js, sh, m->n_shards - 1, err)) return -1;
        if (!sl_add_u64(m->total_bytes, sh->bytes, &m->total_bytes))
            return sl_err(err, "manifest: shard sizes overflow");
    }
    if (total != m->total_bytes)
        return sl_err(err, "manifest: 'bytes' is %" PRIu64 " but the shards add up to %" PRIu64,
                      total, m->total_bytes);
    return check_unique(m, err);
}

int sl_manifest_parse(const char *text, size_t len, sl_manifest *m, sl_error *err) {
    memset(m, 0, sizeof *m);
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, false);
    if (!root) {
        size_t at = end && end >= text && end <= text + len ? (size_t)(end - text) : 0;
        const char *where = cJSON_GetErrorPtr();
        if (where && where >= text && where <= text + len) at = (size_t)(where - text);
        return sl_err(err, "manifest: not valid JSON (error near byte %zu)", at);
    }
    /* Nothing but whitespace may follow the document. */
    for (const char *p = end; p && p < text + len; p++)
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
            cJSON_Delete(root);
            return sl_err(err, "manifest: unexpected text after the JSON document (byte %zu)",
                          (size_t)(p - text));
        }
    int rc = parse_root(root, m, err);
    cJSON_Delete(root);
    if (rc) sl_manifest_free(m);
    return rc;
}

/* ---- loading from disk ---------------------------------------------------- */

static bool is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

bool sl_shard_is_manifest_path(const char *path) {
    if (is_dir(path)) return true;
    size_t n = strlen(path);
    return n >= 5 && strcmp(path + n - 5, ".json") == 0;
}

int sl_manifest_load(const char *dir_or_manifest, sl_manifest *m, char **dir_out, sl_error *err) {
    memset(m, 0, sizeof *m);
    if (dir_out) *dir_out = NULL;
    size_t n = strlen(dir_or_manifest);
    while (n > 1 && dir_or_manifest[n - 1] == '/') n--; /* "dir/" is "dir" */
    char *dir = NULL, *path = NULL;
    if (is_dir(dir_or_manifest)) {
        dir = sl_strndup(dir_or_manifest, n);
        path = malloc(n + sizeof "/" SL_MANIFEST_NAME);
        if (path) snprintf(path, n + sizeof "/" SL_MANIFEST_NAME, "%.*s/%s", (int)n, dir_or_manifest, SL_MANIFEST_NAME);
    } else {
        const char *slash = strrchr(dir_or_manifest, '/');
        dir = slash ? sl_strndup(dir_or_manifest, slash == dir_or_manifest ? 1 : (size_t)(slash - dir_or_manifest))
                    : sl_strndup(".", 1);
        path = sl_strndup(dir_or_manifest, strlen(dir_or_manifest));
    }
    if (!dir || !path) {
        free(dir);
        free(path);
        return sl_err(err, "out of memory");
    }
    int rc = -1;
    char *text = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) {
        sl_err(err, "cannot open %s: %s", path, strerror(errno));
        goto done;
    }
    size_t cap = 1 << 16, len = 0;
    text = malloc(cap);
    while (text) {
        if (len == cap) {
            if (cap >= MANIFEST_MAX_BYTES) {
                sl_err(err, "%s: larger than %u MiB, not a manifest", path, MANIFEST_MAX_BYTES >> 20);
                goto done;
            }
            char *grown = realloc(text, cap * 2);
            if (!grown) break;
            text = grown;
            cap *= 2;
        }
        size_t got = fread(text + len, 1, cap - len, f);
        len += got;
        if (got == 0) break;
    }
    if (!text) {
        sl_err(err, "out of memory reading %s", path);
        goto done;
    }
    if (ferror(f)) {
        sl_err(err, "cannot read %s: %s", path, strerror(errno));
        goto done;
    }
    sl_error parse_err;
    if (sl_manifest_parse(text, len, m, &parse_err)) {
        sl_err(err, "%s: %s", path, parse_err.msg);
        goto done;
    }
    rc = 0;
    if (dir_out) {
        *dir_out = dir;
        dir = NULL;
    }
done:
    if (f) fclose(f);
    free(text);
    free(dir);
    free(path);
    return rc;
}

/* ---- serialization -------------------------------------------------------- */

/* Integers go in as raw text so that every value prints exactly. */
static bool add_uint(cJSON *obj, const char *key, uint64_t v) {
    char buf[24];
    snprintf(buf, sizeof buf, "%" PRIu64, v);
    return cJSON_AddRawToObject(obj, key, buf) != NULL;
}

static bool add_int_item(cJSON *arr, uint64_t v) {
    char buf[24];
    snprintf(buf, sizeof buf, "%" PRIu64, v);
    cJSON *item = cJSON_CreateRaw(buf);
    return item && cJSON_AddItemToArray(arr, item);
}

static bool build_tensor(cJSON *arr, const sl_manifest_tensor *t) {
    cJSON *jt = cJSON_CreateObject();
    if (!jt || !cJSON_AddItemToArray(arr, jt)) {
        cJSON_Delete(jt);
        return false;
    }
    const char *type_name = sl_type_name(t->type);
    cJSON *shape = NULL;
    bool ok = cJSON_AddStringToObject(jt, "name", t->name) &&
              cJSON_AddStringToObject(jt, "type", type_name ? type_name : "?") &&
              add_uint(jt, "type_id", (uint64_t)t->type) &&
              (shape = cJSON_AddArrayToObject(jt, "shape")) != NULL;
    for (uint32_t d = 0; ok && d < t->n_dims; d++) ok = add_int_item(shape, (uint64_t)t->ne[d]);
    return ok && add_uint(jt, "offset", t->offset) && add_uint(jt, "bytes", t->bytes);
}

static bool build_shard(cJSON *arr, const sl_manifest_shard *sh) {
    cJSON *js = cJSON_CreateObject();
    if (!js || !cJSON_AddItemToArray(arr, js)) {
        cJSON_Delete(js);
        return false;
    }
    bool ok = cJSON_AddStringToObject(js, "file", sh->file) &&
              (!sh->url || cJSON_AddStringToObject(js, "url", sh->url)) &&
              add_uint(js, "bytes", sh->bytes) && cJSON_AddStringToObject(js, "sha256", sh->sha256);
    if (ok && sh->block_bytes > 0) {
        cJSON *blocks = NULL;
        ok = add_uint(js, "block_bytes", sh->block_bytes) &&
             (blocks = cJSON_AddArrayToObject(js, "block_sha256")) != NULL;
        for (uint64_t i = 0; ok && i < sh->n_blocks; i++) {
            cJSON *h = cJSON_CreateString(sh->block_sha256[i]);
            ok = h && cJSON_AddItemToArray(blocks, h);
            if (!ok) cJSON_Delete(h);
        }
    }
    if (!ok) return false;
    if (sh->layer_first < 0) {
        ok = cJSON_AddNullToObject(js, "layers") != NULL;
    } else {
        cJSON *layers = cJSON_AddArrayToObject(js, "layers");
        ok = layers && add_int_item(layers, (uint64_t)sh->layer_first) &&
             add_int_item(layers, (uint64_t)sh->layer_last);
    }
    cJSON *tensors = ok ? cJSON_AddArrayToObject(js, "tensors") : NULL;
    if (!tensors) return false;
    for (int64_t t = 0; t < sh->n_tensors; t++)
        if (!build_tensor(tensors, &sh->tensors[t])) return false;
    return true;
}

int sl_manifest_to_json(const sl_manifest *m, char **out, sl_error *err) {
    *out = NULL;
    cJSON *root = cJSON_CreateObject();
    cJSON *model = NULL, *plan = NULL, *shards = NULL;
    bool ok = root && cJSON_AddStringToObject(root, "format", SL_MANIFEST_FORMAT) &&
              (model = cJSON_AddObjectToObject(root, "model")) != NULL &&
              cJSON_AddStringToObject(model, "name", m->name ? m->name : "") &&
              cJSON_AddStringToObject(model, "arch", m->arch ? m->arch : "") &&
              add_uint(model, "params", m->params) &&
              cJSON_AddStringToObject(model, "quant", m->quant ? m->quant : "") &&
              add_uint(model, "context", (uint64_t)m->context) &&
              add_uint(model, "n_vocab", (uint64_t)m->n_vocab) &&
              add_uint(model, "n_embd", (uint64_t)m->n_embd) &&
              add_uint(model, "n_layer", (uint64_t)m->n_layer) &&
              add_uint(model, "n_head", (uint64_t)m->n_head) &&
              add_uint(model, "n_head_kv", (uint64_t)m->n_head_kv) &&
              add_uint(model, "head_dim", (uint64_t)m->head_dim) &&
              add_uint(model, "n_ff", (uint64_t)m->n_ff) &&
              (plan = cJSON_AddObjectToObject(root, "plan")) != NULL &&
              add_uint(plan, "bytes", m->plan_bytes) &&
              add_uint(plan, "weight_bytes", m->weight_bytes) &&
              add_uint(plan, "kv_bytes", m->kv_bytes) &&
              add_uint(plan, "context", (uint64_t)m->plan_context) &&
              cJSON_AddTrueToObject(plan, "estimate") &&
              add_uint(root, "bytes", m->total_bytes) &&
              (shards = cJSON_AddArrayToObject(root, "shards")) != NULL;
    for (int s = 0; ok && s < m->n_shards; s++) ok = build_shard(shards, &m->shards[s]);
    char *text = ok ? cJSON_Print(root) : NULL;
    cJSON_Delete(root);
    if (!text) return sl_err(err, "out of memory building the manifest");
    size_t n = strlen(text);
    *out = malloc(n + 2);
    if (*out) {
        memcpy(*out, text, n);
        (*out)[n] = '\n';
        (*out)[n + 1] = 0;
    }
    cJSON_free(text);
    return *out ? 0 : sl_err(err, "out of memory building the manifest");
}
