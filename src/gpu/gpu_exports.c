/* gpu_exports.c - the WebGPU backend's exports of engine.wasm (names start
 * with gpu_; conventions in src/wasm/README.md: handles are pointers, 0 on
 * failure; statuses 0 / -1; error_message() says why). Called by
 * web/engine/webgpu.mjs.
 *
 *   gpu_new(m, n_ctx, n_batch, n_out, budget, max_binding, on_demand, kv_f16, layouts,
 *           mv_rows, mv_units, mv_min_wgs, int8, mm_tokens, mm_rows, mm_inv_tokens) -> engine
 *       plan, buffers, kernels for the loaded model m; budget (bytes, 0: none)
 *       refuses plans that exceed it, or with on_demand != 0 streams the
 *       layers that do not fit; max_binding > 0 lowers the binding limit;
 *       kv_f16 != 0: f16 K/V caches if the device has shader-f16;
 *       layouts: 0 the default GPU layouts (Q4_0, Q8_0; all with int8), 1 none (weights as stored), 2 all (kernels.h);
 *       mv_*: mat-vec tuning, 0 for the defaults; int8 != 0: int8 token for
 *       mat-vecs and mat-muls of matrices in a layout where WGSL has dot4I8Packed (gpu/kernels.h);
 *       mm_*: the int8 mat-mul's tile, 0 for the defaults (sl_gpu_matmul_tuning_ok)
 *   gpu_free(e)
 *   gpu_plan_bytes(e) -> f64, gpu_plan_summary(e) -> text, gpu_plan_json(e) -> text
 *   gpu_upload_model(e)                 every tensor from the model's host data
 *   gpu_upload_tensor(e, name, offset, ptr, len) -> 0, 1 (tensor not used), -1
 *   gpu_eval_begin(e, ids, n, all_logits); on demand, while
 *   gpu_eval_wants_layer(e) >= 0: upload that layer's tensors, then
 *   gpu_eval_continue(e) (gpu_eval_cancel(e) gives up); then after
 *   `await bridge.settle()`: gpu_eval_end(e, logits)
 *   gpu_greedy_ok(e); gpu_greedy_slots(); gpu_greedy_begin(e, token or -1, slot); after awaiting the read-back of
 *   gpu_greedy_staging(e, slot): gpu_greedy_end(e, slot) -> id (gpu/gpu.h)
 *   gpu_n_ctx(e), gpu_n_past(e), gpu_n_out(e), gpu_truncate(e, n_keep), gpu_last_dispatches(e)
 *   gpu_ktest_begin(..., kv_f16, layouts, piece, pieces_reversed, mv_rows, mv_units, mv_min_wgs,
 *   norm, int8, mm_tokens, mm_rows, mm_inv_tokens) -> test, gpu_ktest_end(test) -> nrmse (-1 on error),
 *   gpu_ktest_max_abs() -> the last test's largest error (kernel tests) */
#if defined(__wasm__)

#include "gpu/bridge.h"
#include "gpu/gpu.h"
#include "gpu/ktest.h"
#include "wasm/wasm.h"

#include <stdio.h>
#include <string.h>

SL_EXPORT("gpu_new")
sl_gpu_engine *wasm_gpu_new(const sl_wasm_model *wm, int32_t n_ctx, int32_t n_batch, int32_t n_out, double budget,
                            double max_binding, int32_t on_demand, int32_t kv_f16, int32_t layouts,
                            int32_t mv_rows, int32_t mv_units, int32_t mv_min_wgs, int32_t int8,
                            int32_t mm_tokens, int32_t mm_rows, int32_t mm_inv_tokens) {
    /* the model is not const to its owner; the engine completes header-only ones (rope factors) */
    sl_model *m = (sl_model *)sl_wasm_model_get(wm);
    if (!m) {
        sl_err(sl_wasm_err(), "gpu_new: no model loaded");
        return NULL;
    }
    if (!(budget >= 0 && budget < 1e18) || !(max_binding >= 0 && max_binding < 1e18)) {
        sl_err(sl_wasm_err(), "gpu_new: bad budget or binding limit");
        return NULL;
    }
    if (layouts < SL_GPU_LAYOUTS_FAST || layouts > SL_GPU_LAYOUTS_ALL) {
        sl_err(sl_wasm_err(), "gpu_new: bad layouts %d", layouts);
        return NULL;
    }
    if (mv_rows < 0 || mv_rows > 4 || mv_units < 0 || mv_units > 256 || mv_min_wgs < 0) {
        sl_err(sl_wasm_err(), "gpu_new: bad mat-vec tuning (rows %d, units %d, workgroups %d)", mv_rows, mv_units,
               mv_min_wgs);
        return NULL;
    }
    if (mm_tokens < 0 || mm_rows < 0 || mm_inv_tokens < 0) {
        sl_err(sl_wasm_err(), "gpu_new: bad mat-mul tile (%d tokens, %d rows, %d tokens per invocation)", mm_tokens,
               mm_rows, mm_inv_tokens);
        return NULL;
    }
    sl_gpu_params p = {.n_ctx = n_ctx, .n_batch = n_batch, .n_out = n_out, .budget = (uint64_t)budget,
                       .max_binding = (uint64_t)max_binding, .on_demand = on_demand != 0, .kv_f16 = kv_f16 != 0,
                       .layouts = (sl_gpu_layouts)layouts, .mv_rows = (uint32_t)mv_rows, .mv_units = (uint32_t)mv_units,
                       .mv_min_wgs = (uint32_t)mv_min_wgs, .int8 = int8 != 0, .mm_tokens = (uint32_t)mm_tokens,
                       .mm_rows = (uint32_t)mm_rows, .mm_inv_tokens = (uint32_t)mm_inv_tokens};
    return sl_gpu_engine_new(m, &p, sl_wasm_err());
}

SL_EXPORT("gpu_free") void wasm_gpu_free(sl_gpu_engine *e) { sl_gpu_engine_free(e); }

SL_EXPORT("gpu_plan_bytes") double wasm_gpu_plan_bytes(const sl_gpu_engine *e) {
    return e ? (double)sl_gpu_engine_plan(e)->total : 0;
}

static char plan_text[4096];

SL_EXPORT("gpu_plan_summary") const char *wasm_gpu_plan_summary(const sl_gpu_engine *e) {
    if (!e) return "";
    return sl_gpu_plan_summary(sl_gpu_engine_plan(e), plan_text, sizeof plan_text);
}

/* {"bytes", "buffers", "n_ctx", "n_batch", "n_out", "n_layer", "n_resident",
 *  "stream_bytes", "kv_f16", "by_kind": {kind: bytes}} */
SL_EXPORT("gpu_plan_json") const char *wasm_gpu_plan_json(const sl_gpu_engine *e) {
    if (!e) return "{}";
    const sl_gpu_plan *p = sl_gpu_engine_plan(e);
    int n = snprintf(plan_text, sizeof plan_text,
                     "{\"bytes\":%llu,\"buffers\":%d,\"n_ctx\":%d,\"n_batch\":%d,\"n_out\":%d,\"n_layer\":%d,"
                     "\"n_resident\":%d,\"stream_bytes\":%llu,\"kv_f16\":%s,\"by_kind\":{",
                     (unsigned long long)p->total, p->n_buffers, p->n_ctx, p->n_batch, p->n_out, p->hp.n_layer,
                     p->n_resident, (unsigned long long)p->stream_bytes, p->kv_f16 ? "true" : "false");
    for (int k = 0; k < SL_GPU_BUF_KIND_COUNT && n > 0 && (size_t)n < sizeof plan_text; k++)
        n += snprintf(plan_text + n, sizeof plan_text - (size_t)n, "%s\"%s\":%llu", k ? "," : "",
                      sl_gpu_buf_kind_name((sl_gpu_buf_kind)k), (unsigned long long)p->by_kind[k]);
    if (n > 0 && (size_t)n < sizeof plan_text) snprintf(plan_text + n, sizeof plan_text - (size_t)n, "}}");
    return plan_text;
}

SL_EXPORT("gpu_upload_model") int32_t wasm_gpu_upload_model(sl_gpu_engine *e) {
    if (!e) return sl_err(sl_wasm_err(), "gpu_upload_model: no engine");
    return sl_gpu_upload_model(e, sl_wasm_err());
}

SL_EXPORT("gpu_upload_tensor")
int32_t wasm_gpu_upload_tensor(sl_gpu_engine *e, const char *name, double offset, const void *data, double len) {
    if (!e || !name) return sl_err(sl_wasm_err(), "gpu_upload_tensor: no engine or no name");
    if (!(offset >= 0 && offset < 9e15) || !(len >= 0 && len < 4294967296.0))
        return sl_err(sl_wasm_err(), "gpu_upload_tensor: bad offset or length");
    return sl_gpu_upload_tensor(e, name, (uint64_t)offset, data, (uint64_t)len, sl_wasm_err());
}

SL_EXPORT("gpu_check_uploaded") int32_t wasm_gpu_check_uploaded(const sl_gpu_engine *e) {
    if (!e) return sl_err(sl_wasm_err(), "gpu_check_uploaded: no engine");
    return sl_gpu_check_uploaded(e, sl_wasm_err());
}

SL_EXPORT("gpu_eval_begin")
int32_t wasm_gpu_eval_begin(sl_gpu_engine *e, const int32_t *ids, int32_t n, int32_t all_logits) {
    if (!e) return sl_err(sl_wasm_err(), "gpu_eval_begin: no engine");
    return sl_gpu_eval_begin(e, ids, n, all_logits != 0, sl_wasm_err());
}

SL_EXPORT("gpu_eval_wants_layer") int32_t wasm_gpu_eval_wants_layer(const sl_gpu_engine *e) {
    return e ? sl_gpu_eval_wants_layer(e) : -1;
}

SL_EXPORT("gpu_eval_continue") int32_t wasm_gpu_eval_continue(sl_gpu_engine *e) {
    if (!e) return sl_err(sl_wasm_err(), "gpu_eval_continue: no engine");
    return sl_gpu_eval_continue(e, sl_wasm_err());
}

SL_EXPORT("gpu_eval_cancel") void wasm_gpu_eval_cancel(sl_gpu_engine *e) {
    if (e) sl_gpu_eval_cancel(e);
}

SL_EXPORT("gpu_eval_end") int32_t wasm_gpu_eval_end(sl_gpu_engine *e, float *logits) {
    if (!e) return sl_err(sl_wasm_err(), "gpu_eval_end: no engine");
    return sl_gpu_eval_end(e, logits, sl_wasm_err());
}

SL_EXPORT("gpu_greedy_begin") int32_t wasm_gpu_greedy_begin(sl_gpu_engine *e, int32_t token, int32_t slot) {
    if (!e) return sl_err(sl_wasm_err(), "gpu_greedy_begin: no engine");
    return sl_gpu_greedy_begin(e, token, slot, sl_wasm_err());
}
SL_EXPORT("gpu_greedy_ok") int32_t wasm_gpu_greedy_ok(const sl_gpu_engine *e) { return e && sl_gpu_greedy_ok(e); }
SL_EXPORT("gpu_greedy_slots") int32_t wasm_gpu_greedy_slots(void) { return SL_GPU_GREEDY_SLOTS; }
SL_EXPORT("gpu_set_matvec_tuning") int32_t wasm_gpu_set_matvec_tuning(sl_gpu_engine *e, int32_t rows, int32_t units,
                                                                     int32_t min_wgs) {
    if (!e) return sl_err(sl_wasm_err(), "gpu_set_matvec_tuning: no engine");
    if (rows < 0 || units < 0 || min_wgs < 0) return sl_err(sl_wasm_err(), "mat-vec tuning: negative values");
    return sl_gpu_set_matvec_tuning(e, (uint32_t)rows, (uint32_t)units, (uint32_t)min_wgs, sl_wasm_err());
}
/* gpu_matvec_tuning_sources(e, rows, units, min_wgs) -> the kernels' texts,
 * each ending in a NUL, then an empty one (free it); 0 on error */
SL_EXPORT("gpu_matvec_tuning_sources") char *wasm_gpu_matvec_tuning_sources(const sl_gpu_engine *e, int32_t rows,
                                                                          int32_t units, int32_t min_wgs) {
    if (!e || rows < 0 || units < 0 || min_wgs < 0) {
        sl_err(sl_wasm_err(), "gpu_matvec_tuning_sources: bad arguments");
        return NULL;
    }
    return sl_gpu_matvec_tuning_sources(e, (uint32_t)rows, (uint32_t)units, (uint32_t)min_wgs, sl_wasm_err());
}
SL_EXPORT("gpu_kernels_hash") double wasm_gpu_kernels_hash(const sl_gpu_engine *e) { return e ? sl_gpu_kernels_hash(e) : 0; }
SL_EXPORT("gpu_greedy_staging") int32_t wasm_gpu_greedy_staging(const sl_gpu_engine *e, int32_t slot) {
    return e ? sl_gpu_greedy_staging(e, slot) : 0;
}
SL_EXPORT("gpu_greedy_end") int32_t wasm_gpu_greedy_end(sl_gpu_engine *e, int32_t slot) {
    if (!e) return sl_err(sl_wasm_err(), "gpu_greedy_end: no engine");
    return sl_gpu_greedy_end(e, slot, sl_wasm_err());
}

SL_EXPORT("gpu_n_ctx") int32_t wasm_gpu_n_ctx(const sl_gpu_engine *e) { return e ? sl_gpu_n_ctx(e) : 0; }
SL_EXPORT("gpu_n_past") int32_t wasm_gpu_n_past(const sl_gpu_engine *e) { return e ? sl_gpu_n_past(e) : 0; }
SL_EXPORT("gpu_last_dispatches") int32_t wasm_gpu_last_dispatches(const sl_gpu_engine *e) {
    return e ? sl_gpu_last_dispatches(e) : 0;
}
SL_EXPORT("gpu_n_out") int32_t wasm_gpu_n_out(const sl_gpu_engine *e) { return e ? sl_gpu_engine_plan(e)->n_out : 0; }
SL_EXPORT("gpu_truncate") void wasm_gpu_truncate(sl_gpu_engine *e, int32_t n_keep) {
    if (e) sl_gpu_truncate(e, n_keep);
}

/* ---- kernel tests -------------------------------------------------------- */

static sl_gpu_ktest_result last_ktest;

SL_EXPORT("gpu_ktest_begin")
sl_gpu_ktest *wasm_gpu_ktest_begin(int32_t kernel, int32_t type, int32_t rows, int32_t cols, int32_t n_tokens,
                                   int32_t epilogue, int32_t n_head, int32_t n_head_kv, int32_t head_dim,
                                   int32_t n_rot, int32_t rope_kind, int32_t qk_norm, int32_t pos0,
                                   int32_t chunk_rows, int32_t seed, int32_t kv_f16, int32_t layouts,
                                   int32_t piece, int32_t pieces_reversed, int32_t mv_rows, int32_t mv_units,
                                   int32_t mv_min_wgs, int32_t norm, int32_t int8, int32_t mm_tokens,
                                   int32_t mm_rows, int32_t mm_inv_tokens) {
    if (kernel < 0 || kernel >= SL_GK_COUNT || epilogue < SL_EPI_NONE || epilogue > SL_EPI_SILU_MUL ||
        (rope_kind != SL_ROPE_NORM && rope_kind != SL_ROPE_NEOX) || rows < 0 || cols < 0 || n_tokens < 0 ||
        n_head < 0 || n_head_kv < 0 || head_dim < 0 || n_rot < 0 || pos0 < 0 || chunk_rows < 0 || piece < 0 ||
        piece % 4 || layouts < SL_GPU_LAYOUTS_FAST || layouts > SL_GPU_LAYOUTS_ALL || mv_rows < 0 || mv_rows > 4 || mv_units < 0 || mv_units > 256 || mv_min_wgs < 0 ||
        mm_tokens < 0 || mm_rows < 0 || mm_inv_tokens < 0 ||
        !sl_gpu_matmul_tuning_ok((uint32_t)mm_tokens, (uint32_t)mm_rows, (uint32_t)mm_inv_tokens,
                                 (uint32_t)wg_caps(WG_CAP_MAX_WG_STORAGE))) {
        sl_err(sl_wasm_err(), "gpu_ktest_begin: bad arguments");
        return NULL;
    }
    sl_gpu_ktest_spec s = {.kernel = (sl_gpu_kernel)kernel, .type = (sl_type)type, .rows = rows, .cols = cols,
                           .n_tokens = n_tokens, .epilogue = (sl_gpu_epilogue)epilogue, .n_head = n_head,
                           .n_head_kv = n_head_kv, .head_dim = head_dim, .n_rot = n_rot,
                           .rope_kind = (sl_rope_kind)rope_kind, .qk_norm = qk_norm != 0, .pos0 = pos0,
                           .chunk_rows = chunk_rows, .seed = (uint64_t)(uint32_t)seed, .kv_f16 = kv_f16 != 0,
                           .layouts = (sl_gpu_layouts)layouts, .piece = (uint32_t)piece,
                           .pieces_reversed = pieces_reversed != 0, .mv_rows = (uint32_t)mv_rows,
                           .mv_units = (uint32_t)mv_units, .mv_min_wgs = (uint32_t)mv_min_wgs,
                           .norm = norm != 0, .int8 = int8 != 0, .mm_tokens = (uint32_t)mm_tokens,
                           .mm_rows = (uint32_t)mm_rows, .mm_inv_tokens = (uint32_t)mm_inv_tokens};
    if ((kernel >= SL_GK_ROPE_Q) && (n_head == 0 || n_head_kv == 0 || n_head % n_head_kv)) {
        sl_err(sl_wasm_err(), "gpu_ktest_begin: bad head counts %d, %d", n_head, n_head_kv);
        return NULL;
    }
    return sl_gpu_ktest_begin(&s, sl_wasm_err());
}

SL_EXPORT("gpu_ktest_end") double wasm_gpu_ktest_end(sl_gpu_ktest *t) {
    if (sl_gpu_ktest_end(t, &last_ktest, sl_wasm_err())) return -1;
    return last_ktest.nrmse;
}

SL_EXPORT("gpu_ktest_max_abs") double wasm_gpu_ktest_max_abs(void) { return last_ktest.max_abs; }

#else
/* Native builds have no wasm exports; the engine is tested through gpu.h. */
typedef int sl_gpu_exports_unused;
#endif
