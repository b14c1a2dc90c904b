/* bridge_native.c - the WebGPU bridge of native builds: no GPU, every call is
 * recorded and checked against the WebGPU validation rules the engine must
 * respect (alignment of writes and bindings, binding size limits, writable
 * bindings that alias other bindings, dispatch sizes). Tests use it to check
 * the memory plan against what the engine really allocates, and the programs
 * it records, without a GPU. Reads back zeros. Not thread-safe (tests only). */
#if !defined(__wasm__)

#include "gpu/bridge.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { OBJ_FREE, OBJ_BUFFER, OBJ_PIPELINE, OBJ_BIND_GROUP, OBJ_PROGRAM };

typedef struct native_obj {
    int kind;
    double size;      /* buffers */
    int usage;        /* buffers */
    char *source;     /* pipelines: WGSL text */
    int n_dispatches; /* programs */
} native_obj;

static native_obj *objs; /* objs[h - 1] is handle h */
static int n_objs, cap_objs;
static wg_native_stats stats;

static const double native_default_caps[WG_CAP_COUNT] = {
    [WG_CAP_MAX_BINDING] = 1073741824.0,  [WG_CAP_MAX_BUFFER] = 1073741824.0,
    [WG_CAP_MAX_INVOCATIONS] = 256,       [WG_CAP_MAX_WG_STORAGE] = 32768,
    [WG_CAP_MAX_WORKGROUPS] = 65535,      [WG_CAP_STORAGE_ALIGN] = 256,
    [WG_CAP_MAX_STORAGE_BUFFERS] = 8,     [WG_CAP_HAS_F16] = 0,
    [WG_CAP_HAS_SUBGROUPS] = 1,           [WG_CAP_HAS_SUBGROUP_ID] = 1,
    [WG_CAP_HAS_DOT4] = 1,                [WG_CAP_SUBGROUP_MIN_SIZE] = 4,
};
static double native_caps[WG_CAP_COUNT];
static int native_caps_set;

static void native_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void native_error(const char *fmt, ...) {
    if (stats.n_errors++ == 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(stats.first_error, sizeof stats.first_error, fmt, ap);
        va_end(ap);
    }
}

static void native_init_caps(void) {
    if (!native_caps_set) {
        memcpy(native_caps, native_default_caps, sizeof native_caps);
        native_caps_set = 1;
    }
}

static int32_t new_obj(int kind) {
    if (n_objs == cap_objs) {
        int nc = cap_objs ? cap_objs * 2 : 64;
        native_obj *p = realloc(objs, (size_t)nc * sizeof *p);
        if (!p) return 0;
        objs = p;
        cap_objs = nc;
    }
    memset(&objs[n_objs], 0, sizeof objs[n_objs]);
    objs[n_objs].kind = kind;
    return ++n_objs;
}

static native_obj *get_obj(int32_t h, int kind) {
    if (h <= 0 || h > n_objs || objs[h - 1].kind != kind) return NULL;
    return &objs[h - 1];
}

double wg_caps(int32_t which) {
    native_init_caps();
    return which >= 0 && which < WG_CAP_COUNT ? native_caps[which] : 0;
}

void wg_native_set_cap(int which, double value) {
    native_init_caps();
    if (which >= 0 && which < WG_CAP_COUNT) native_caps[which] = value;
}

int32_t wg_buffer_create(double size, int32_t usage) {
    native_init_caps();
    if (!(size > 0) || size > native_caps[WG_CAP_MAX_BUFFER] || (uint64_t)size % 4) {
        native_error("buffer_create: bad size %.0f", size);
        return 0;
    }
    if (usage != WG_USAGE_STORAGE && usage != WG_USAGE_UNIFORM && usage != WG_USAGE_READBACK) {
        native_error("buffer_create: bad usage %d", usage);
        return 0;
    }
    int32_t h = new_obj(OBJ_BUFFER);
    if (!h) return 0;
    objs[h - 1].size = size;
    objs[h - 1].usage = usage;
    stats.n_buffers++;
    stats.buffer_bytes += (uint64_t)size;
    if (stats.buffer_bytes > stats.peak_bytes) stats.peak_bytes = stats.buffer_bytes;
    return h;
}

void wg_buffer_write(int32_t buffer, double offset, const void *src, uint32_t len) {
    native_obj *b = get_obj(buffer, OBJ_BUFFER);
    const char *bad = !b                                   ? "not a buffer"
                      : b->usage == WG_USAGE_READBACK      ? "a readback buffer"
                      : (uint64_t)offset % 4 || len % 4    ? "offset or length not a multiple of 4"
                      : offset + len > b->size             ? "range outside the buffer"
                      : len && !src                        ? "no source"
                                                           : NULL;
    if (bad) {
        native_error("buffer_write(%d, %.0f, %u): %s", buffer, offset, len, bad);
        return;
    }
    stats.bytes_written += len;
}

int32_t wg_pipeline_create(const char *wgsl, uint32_t len) {
    if (!wgsl || !len) {
        native_error("pipeline_create: empty source");
        return 0;
    }
    char *s = malloc((size_t)len + 1);
    if (!s) return 0;
    memcpy(s, wgsl, len);
    s[len] = 0;
    int32_t h = new_obj(OBJ_PIPELINE);
    if (!h) {
        free(s);
        return 0;
    }
    objs[h - 1].source = s;
    stats.n_pipelines++;
    return h;
}

/* How the pipeline's source declares @binding(b): 'w' read_write storage,
 * 'r' read-only storage, 'u' uniform, 0 not declared. */
static int binding_access(const char *src, uint32_t binding) {
    char pat[32];
    snprintf(pat, sizeof pat, "@binding(%u)", binding);
    const char *p = strstr(src, pat);
    if (!p) return 0;
    const char *end = strchr(p, ';');
    const char *u = strstr(p, "var<uniform>"), *w = strstr(p, "read_write");
    if (u && (!end || u < end)) return 'u';
    if (w && (!end || w < end)) return 'w';
    return 'r';
}

static int count_bindings(const char *src) {
    int n = 0;
    for (const char *p = src; (p = strstr(p, "@binding(")) != NULL; p++) n++;
    return n;
}

int32_t wg_bind_group_create(int32_t pipeline, const wg_binding *e, int32_t n) {
    native_init_caps();
    native_obj *pl = get_obj(pipeline, OBJ_PIPELINE);
    if (!pl) {
        native_error("bind_group_create: %d is not a pipeline", pipeline);
        return 0;
    }
    if (n != count_bindings(pl->source)) {
        native_error("bind_group_create: %d entries for a pipeline with %d bindings", n, count_bindings(pl->source));
        return 0;
    }
    int n_storage = 0;
    for (int i = 0; i < n; i++) {
        native_obj *b = get_obj((int32_t)e[i].buffer, OBJ_BUFFER);
        int access = binding_access(pl->source, e[i].binding);
        if (!b || !access) {
            native_error("bind_group_create: entry %d (binding %u, buffer %u) is invalid", i, e[i].binding,
                         e[i].buffer);
            return 0;
        }
        double align = access == 'u' ? 256 : native_caps[WG_CAP_STORAGE_ALIGN];
        if (e[i].offset % (uint32_t)align || e[i].size % 4 || e[i].size == 0 ||
            (double)e[i].offset + e[i].size > b->size) {
            native_error("bind_group_create: binding %u [%u, +%u) misaligned or outside buffer of %.0f bytes",
                         e[i].binding, e[i].offset, e[i].size, b->size);
            return 0;
        }
        if (access != 'u') {
            n_storage++;
            if (b->usage != WG_USAGE_STORAGE) {
                native_error("bind_group_create: binding %u is not a storage buffer", e[i].binding);
                return 0;
            }
            if (e[i].size > native_caps[WG_CAP_MAX_BINDING]) {
                native_error("bind_group_create: binding %u of %u bytes exceeds the binding limit %.0f",
                             e[i].binding, e[i].size, native_caps[WG_CAP_MAX_BINDING]);
                return 0;
            }
        } else if (b->usage != WG_USAGE_UNIFORM) {
            native_error("bind_group_create: binding %u is not a uniform buffer", e[i].binding);
            return 0;
        }
        for (int j = 0; j < i; j++) {
            if (e[j].binding == e[i].binding) {
                native_error("bind_group_create: binding %u given twice", e[i].binding);
                return 0;
            }
            if (e[j].buffer != e[i].buffer) continue;
            /* one dispatch may not use a buffer both writable and read-only
             * (any ranges), nor two overlapping writable ranges */
            int other = binding_access(pl->source, e[j].binding);
            if ((access == 'w') != (other == 'w')) {
                native_error("bind_group_create: buffer %u is bound writable and read-only (bindings %u, %u)",
                             e[i].buffer, e[j].binding, e[i].binding);
                return 0;
            }
            bool overlap = e[j].offset < e[i].offset + e[i].size && e[i].offset < e[j].offset + e[j].size;
            if (overlap && access == 'w') {
                native_error("bind_group_create: writable binding %u overlaps binding %u", e[i].binding,
                             e[j].binding);
                return 0;
            }
        }
    }
    if (n_storage > native_caps[WG_CAP_MAX_STORAGE_BUFFERS]) {
        native_error("bind_group_create: %d storage buffers exceed the limit %.0f", n_storage,
                     native_caps[WG_CAP_MAX_STORAGE_BUFFERS]);
        return 0;
    }
    int32_t h = new_obj(OBJ_BIND_GROUP);
    if (h) stats.n_bind_groups++;
    return h;
}

int32_t wg_program_create(void) {
    int32_t h = new_obj(OBJ_PROGRAM);
    if (h) stats.n_programs++;
    return h;
}

void wg_program_dispatch(int32_t program, int32_t pipeline, int32_t bind_group, uint32_t x, uint32_t y,
                         uint32_t z) {
    native_init_caps();
    native_obj *p = get_obj(program, OBJ_PROGRAM);
    double m = native_caps[WG_CAP_MAX_WORKGROUPS];
    if (!p || !get_obj(pipeline, OBJ_PIPELINE) || !get_obj(bind_group, OBJ_BIND_GROUP)) {
        native_error("program_dispatch: bad handle (%d, %d, %d)", program, pipeline, bind_group);
        return;
    }
    if (x == 0 || y == 0 || z == 0 || x > m || y > m || z > m) {
        native_error("program_dispatch: workgroup counts (%u, %u, %u)", x, y, z);
        return;
    }
    p->n_dispatches++;
    stats.n_dispatches++;
}

int32_t wg_program_run(int32_t program, int32_t src, double offset, double len, int32_t staging) {
    if (!get_obj(program, OBJ_PROGRAM)) {
        native_error("program_run: %d is not a program", program);
        return -1;
    }
    if (len > 0) {
        native_obj *s = get_obj(src, OBJ_BUFFER), *st = get_obj(staging, OBJ_BUFFER);
        if (!s || !st || st->usage != WG_USAGE_READBACK || offset + len > s->size || len > st->size ||
            (uint64_t)offset % 4 || (uint64_t)len % 4) {
            native_error("program_run: bad readback of [%.0f, +%.0f)", offset, len);
            return -1;
        }
    }
    stats.n_runs++;
    return stats.n_errors ? -1 : 0;
}

int32_t wg_read_mapped(int32_t staging, void *dst, uint32_t len) {
    native_obj *st = get_obj(staging, OBJ_BUFFER);
    if (!st || st->usage != WG_USAGE_READBACK || len > st->size) {
        native_error("read_mapped: bad staging buffer %d", staging);
        return -1;
    }
    if (len) memset(dst, 0, len);
    return stats.n_errors ? -1 : 0;
}

void wg_release(int32_t h) {
    if (h <= 0 || h > n_objs || objs[h - 1].kind == OBJ_FREE) return;
    native_obj *o = &objs[h - 1];
    if (o->kind == OBJ_BUFFER) {
        stats.n_buffers--;
        stats.buffer_bytes -= (uint64_t)o->size;
    }
    free(o->source);
    memset(o, 0, sizeof *o);
}

uint32_t wg_error_text(char *dst, uint32_t cap) {
    size_t n = stats.n_errors ? strlen(stats.first_error) : 0;
    if (cap == 0) return (uint32_t)n;
    size_t c = n < cap - 1 ? n : cap - 1;
    memcpy(dst, stats.first_error, c);
    dst[c] = 0;
    return (uint32_t)n;
}

const wg_native_stats *wg_native_get_stats(void) { return &stats; }

const char *wg_native_pipeline_source(int32_t h) {
    native_obj *o = get_obj(h, OBJ_PIPELINE);
    return o ? o->source : NULL;
}

void wg_native_reset(void) {
    for (int i = 0; i < n_objs; i++) free(objs[i].source);
    free(objs);
    objs = NULL;
    n_objs = cap_objs = 0;
    memset(&stats, 0, sizeof stats);
    native_caps_set = 0;
}

#else
/* wasm builds take the bridge from the host (module "webgpu"). */
typedef int sl_gpu_bridge_native_unused;
#endif
