/* bridge.h - the WebGPU bridge: the few GPU operations the C engine asks of its
 * host. In the wasm build these are imports of module "webgpu", implemented
 * by web/engine/webgpu.mjs on a navigator.gpu-style device (Chrome, or Dawn in
 * Node); in native builds bridge_native.c records the calls (and checks them
 * against WebGPU's validation rules) so the plan and the programs can be
 * tested without a GPU.
 *
 * Objects are integer handles > 0 (0 = failure). Sizes and buffer offsets
 * are doubles (exact up to 2^53); wasm pointers and lengths are 32-bit and
 * arrive in JS as signed numbers (the bridge reads them with `>>> 0`).
 *
 *   caps(which)                       -> adapter/device fact (WG_CAP_*)
 *   buffer_create(size, usage)        -> buffer (WG_USAGE_*; size a multiple of 4)
 *   buffer_write(buf, off, ptr, len)  queue.writeBuffer (off, len multiples of 4)
 *   pipeline_create(wgsl, len)        -> compute pipeline, entry point "main",
 *                                        layout "auto" (bind group 0 only)
 *   bind_group_create(pipe, ents, n)  -> bind group of pipeline's group 0;
 *                                        ents: n wg_binding structs in memory
 *   program_create()                  -> empty dispatch program
 *   program_dispatch(prog, pipe, bg, x, y, z)   appends a dispatch
 *   program_run(prog, src, off, len, staging)   one command encoder: one
 *        compute pass with every dispatch in order, then (len > 0) a copy of
 *        src[off, off+len) into staging (a WG_USAGE_READBACK buffer), one
 *        submit, then staging.mapAsync. Returns 0, or -1 when the device has
 *        reported an error (error_text tells it).
 *   read_mapped(staging, ptr, len)    after JS awaited the bridge (see below):
 *        copies the mapped bytes into memory and unmaps. 0, or -1 on error.
 *   release(handle)                   destroys a buffer / forgets any object
 *   error_text(ptr, cap)              -> length of the first device error
 *                                        message (copied, truncated to cap)
 *
 * wasm cannot block, so a step that reads back is two calls from JS into the
 * engine: the first ends with program_run (GPU work submitted, mapAsync
 * pending); JS awaits `bridge.settle()` (every pending mapAsync); the second
 * calls read_mapped and consumes the bytes. Writes and runs are ordered by
 * the queue, so several steps can be submitted before one read. */
#ifndef SL_GPU_BRIDGE_H
#define SL_GPU_BRIDGE_H

#include <stdint.h>

enum {
    WG_CAP_MAX_BINDING = 0,        /* maxStorageBufferBindingSize */
    WG_CAP_MAX_BUFFER = 1,         /* maxBufferSize */
    WG_CAP_MAX_INVOCATIONS = 2,    /* maxComputeInvocationsPerWorkgroup */
    WG_CAP_MAX_WG_STORAGE = 3,     /* maxComputeWorkgroupStorageSize */
    WG_CAP_MAX_WORKGROUPS = 4,     /* maxComputeWorkgroupsPerDimension */
    WG_CAP_STORAGE_ALIGN = 5,      /* minStorageBufferOffsetAlignment */
    WG_CAP_MAX_STORAGE_BUFFERS = 6,/* maxStorageBuffersPerShaderStage */
    WG_CAP_HAS_F16 = 7,            /* 1 when the device has shader-f16 */
    WG_CAP_HAS_SUBGROUPS = 8,      /* 1 when the device has subgroups */
    WG_CAP_HAS_SUBGROUP_ID = 9,    /* 1 when WGSL has the subgroup_id builtin (language feature) */
    WG_CAP_HAS_DOT4 = 10,          /* 1 when WGSL has dot4I8Packed (packed_4x8_integer_dot_product) */
    WG_CAP_SUBGROUP_MIN_SIZE = 11, /* the adapter's subgroupMinSize (0: unknown or no subgroups) */
    WG_CAP_COUNT
};

enum {
    WG_USAGE_STORAGE = 1,  /* STORAGE | COPY_DST | COPY_SRC */
    WG_USAGE_UNIFORM = 2,  /* UNIFORM | COPY_DST */
    WG_USAGE_READBACK = 4, /* MAP_READ | COPY_DST */
};

/* One entry of a bind group (16 bytes; the bridge reads it as 4 u32). */
typedef struct wg_binding {
    uint32_t binding;
    uint32_t buffer;
    uint32_t offset; /* multiple of WG_CAP_STORAGE_ALIGN (uniforms: of 256) */
    uint32_t size;   /* multiple of 4 */
} wg_binding;

#if defined(__wasm__)
#define WG_IMPORT(name) __attribute__((import_module("webgpu"), import_name(name)))
#else
#define WG_IMPORT(name)
#endif

WG_IMPORT("caps") double wg_caps(int32_t which);
WG_IMPORT("buffer_create") int32_t wg_buffer_create(double size, int32_t usage);
WG_IMPORT("buffer_write") void wg_buffer_write(int32_t buffer, double offset, const void *src, uint32_t len);
WG_IMPORT("pipeline_create") int32_t wg_pipeline_create(const char *wgsl, uint32_t len);
WG_IMPORT("bind_group_create") int32_t wg_bind_group_create(int32_t pipeline, const wg_binding *entries, int32_t n);
WG_IMPORT("program_create") int32_t wg_program_create(void);
WG_IMPORT("program_dispatch") void wg_program_dispatch(int32_t program, int32_t pipeline, int32_t bind_group,
                                                       uint32_t x, uint32_t y, uint32_t z);
WG_IMPORT("program_run") int32_t wg_program_run(int32_t program, int32_t src, double offset, double len,
                                                int32_t staging);
WG_IMPORT("read_mapped") int32_t wg_read_mapped(int32_t staging, void *dst, uint32_t len);
WG_IMPORT("release") void wg_release(int32_t handle);
WG_IMPORT("error_text") uint32_t wg_error_text(char *dst, uint32_t cap);

#if !defined(__wasm__)
/* ---- native recording bridge (bridge_native.c), for tests ------------- */

typedef struct wg_native_stats {
    int n_buffers;           /* live buffers */
    uint64_t buffer_bytes;   /* bytes of live buffers */
    uint64_t peak_bytes;
    int n_pipelines, n_bind_groups, n_programs;
    int n_dispatches;        /* in every program together */
    int n_runs;
    uint64_t bytes_written;
    int n_errors;            /* calls that WebGPU would reject */
    char first_error[256];
} wg_native_stats;

/* Caps the native bridge reports (defaults: SwiftShader's). */
void wg_native_set_cap(int which, double value);
const wg_native_stats *wg_native_get_stats(void);
/* The WGSL text of pipeline handle h (NULL if not a pipeline). */
const char *wg_native_pipeline_source(int32_t h);
/* Forgets every object and counter, and restores the default caps. */
void wg_native_reset(void);
#endif

#endif
