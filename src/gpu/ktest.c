/* ktest.c - one WebGPU kernel against a CPU reference (see ktest.h). The
 * reference follows src/cpu/forward.c's math in double precision. */
#include "gpu/ktest.h"

#include "gpu/bridge.h"
#include "gpu/layout.h"
#include "quant/quant.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MAX_BUFS 64

struct sl_gpu_ktest {
    int32_t bufs[MAX_BUFS];
    int n_bufs;
    int32_t pipes[MAX_BUFS], groups[MAX_BUFS], program;
    int n_pipes;
    int32_t out_buf, staging;
    float *expect;        /* reference values of the read-back buffer */
    void *got;            /* the read-back bytes */
    int64_t n_out;        /* values read back */
    int out_bytes;        /* bytes per value read back: 4 (f32), or 2 (an f16 cache) */
};

static uint64_t rng_next(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Uniform in [-1, 1). */
static float rng_float(uint64_t *s) { return (float)((double)(rng_next(s) >> 11) * 0x1p-52 - 1.0); }

/* v as an f16 cache holds it (round to nearest even, as the GPU converts). */
static float round_f16(float v) { return sl_f16_to_f32(sl_f32_to_f16(v)); }

/* The f16 bits of n floats (malloc'd). */
static uint16_t *to_f16(const float *v, int64_t n) {
    uint16_t *h = malloc((size_t)(n > 0 ? n : 1) * sizeof *h);
    if (h)
        for (int64_t i = 0; i < n; i++) h[i] = sl_f32_to_f16(v[i]);
    return h;
}

static float *random_floats(uint64_t *s, int64_t n, float scale) {
    float *v = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    if (v)
        for (int64_t i = 0; i < n; i++) v[i] = rng_float(s) * scale;
    return v;
}

static int32_t new_buffer(sl_gpu_ktest *t, uint64_t size, int usage, sl_error *err) {
    if (t->n_bufs == MAX_BUFS) {
        sl_err(err, "ktest: too many buffers");
        return 0;
    }
    int32_t h = wg_buffer_create((double)((size + 3) & ~(uint64_t)3), usage);
    if (!h) {
        sl_err(err, "ktest: cannot create a buffer of %llu bytes", (unsigned long long)size);
        return 0;
    }
    t->bufs[t->n_bufs++] = h;
    return h;
}

/* A storage buffer holding bytes (padded to 4). */
static int32_t upload(sl_gpu_ktest *t, const void *data, uint64_t size, sl_error *err) {
    int32_t h = new_buffer(t, size, WG_USAGE_STORAGE, err);
    if (!h) return 0;
    uint64_t whole = size & ~(uint64_t)3;
    if (whole) wg_buffer_write(h, 0, data, (uint32_t)whole);
    if (whole < size) {
        unsigned char tail[4] = {0};
        memcpy(tail, (const unsigned char *)data + whole, (size_t)(size - whole));
        wg_buffer_write(h, (double)whole, tail, 4);
    }
    return h;
}

static wg_binding bind(uint32_t binding, int32_t buf, uint64_t offset, uint64_t size) {
    return (wg_binding){binding, (uint32_t)buf, (uint32_t)offset, (uint32_t)((size + 3) & ~(uint64_t)3)};
}

/* Adds a dispatch of d to t's program. b[0] is the uniform. */
static int dispatch(sl_gpu_ktest *t, const sl_gpu_kernel_desc *desc, const wg_binding *b, int n,
                    uint32_t n_tokens, uint32_t n_splits, sl_error *err) {
    sl_gpu_kernel_desc dd = *desc, *d = &dd;
    d->subgroups = wg_caps(WG_CAP_HAS_SUBGROUPS) != 0 && wg_caps(WG_CAP_HAS_SUBGROUP_ID) != 0;
    d->subgroup_min = d->subgroups ? (uint32_t)wg_caps(WG_CAP_SUBGROUP_MIN_SIZE) : 0;
    d->max_wg_storage = (uint32_t)wg_caps(WG_CAP_MAX_WG_STORAGE);
    if (n != sl_gpu_kernel_n_bindings(d)) return sl_err(err, "ktest: %d bindings for kernel %d", n, (int)d->kernel);
    char *src = sl_gpu_kernel_wgsl(d, err);
    if (!src) return -1;
    int32_t pipe = wg_pipeline_create(src, (uint32_t)strlen(src));
    free(src);
    if (!pipe) return sl_err(err, "ktest: cannot create the pipeline");
    int32_t bg = wg_bind_group_create(pipe, b, n);
    if (!bg || t->n_pipes == MAX_BUFS) {
        wg_release(pipe);
        if (bg) wg_release(bg);
        return sl_err(err, "ktest: cannot create the bind group");
    }
    t->pipes[t->n_pipes] = pipe;
    t->groups[t->n_pipes++] = bg;
    uint32_t g[3];
    sl_gpu_kernel_grid(d, n_tokens, n_splits, (uint32_t)wg_caps(WG_CAP_MAX_WORKGROUPS), g);
    wg_program_dispatch(t->program, pipe, bg, g[0], g[1], g[2]);
    return 0;
}

static float silu_mul(double g, double v) { return (float)(g / (1.0 + exp(-g)) * v); }

static void ktest_free(sl_gpu_ktest *t) {
    if (!t) return;
    for (int i = 0; i < t->n_pipes; i++) {
        wg_release(t->groups[i]);
        wg_release(t->pipes[i]);
    }
    if (t->program) wg_release(t->program);
    for (int i = 0; i < t->n_bufs; i++) wg_release(t->bufs[i]);
    free(t->expect);
    free(t->got);
    free(t);
}

/* ---- ops ------------------------------------------------------------------ */

typedef struct weight_sink {
    const int32_t *bufs;
} weight_sink;

static void sink_write(void *ctx, int chunk, uint64_t dst, const unsigned char *bytes, uint64_t len) {
    const weight_sink *w = ctx;
    uint64_t whole = len & ~(uint64_t)3;
    if (whole) wg_buffer_write(w->bufs[chunk], (double)dst, bytes, (uint32_t)whole);
    if (whole < len) {
        unsigned char tail[4] = {0};
        memcpy(tail, bytes + whole, (size_t)(len - whole));
        wg_buffer_write(w->bufs[chunk], (double)(dst + whole), tail, 4);
    }
}

/* The weights wq ([rows][rb] bytes) into buffers of `per` rows each (16-byte
 * multiples), as stored or permuted into the format's layout from pieces
 * as the spec says. */
static int upload_weights(sl_gpu_ktest *t, const sl_gpu_ktest_spec *s, const unsigned char *wq, size_t rb, int64_t per,
                          int32_t *bufs, sl_error *err) {
    const sl_gpu_layout *lay = sl_gpu_layout_for(s->type, s->layouts);
    sl_gpu_chunk chunks[MAX_BUFS];
    int n = 0;
    for (int64_t r0 = 0; r0 < s->rows; r0 += per) {
        int64_t nr = s->rows - r0 < per ? s->rows - r0 : per;
        if (n == MAX_BUFS / 2) return sl_err(err, "ktest: too many chunks");
        const uint64_t bytes = (uint64_t)nr * rb;
        chunks[n] = (sl_gpu_chunk){.buffer = n, .row0 = r0, .rows = nr, .offset = (uint64_t)r0 * rb, .bytes = bytes};
        if (!(bufs[n] = new_buffer(t, (bytes + 15) & ~(uint64_t)15, WG_USAGE_STORAGE, err))) return -1;
        n++;
    }
    weight_sink ws = {bufs};
    const uint64_t total = (uint64_t)s->rows * rb;
    if (!lay) {
        for (int c = 0; c < n; c++) sink_write(&ws, c, 0, wq + chunks[c].offset, chunks[c].bytes);
        return 0;
    }
    const uint64_t piece = s->piece ? s->piece : total, n_pieces = (total + piece - 1) / piece;
    if (s->piece % 4) return sl_err(err, "ktest: pieces of %llu bytes are not 4-byte aligned", (unsigned long long)piece);
    sl_gpu_relayout st = {0};
    const size_t cap = 1u << 16;
    unsigned char *scratch = malloc(cap);
    int rc = scratch ? 0 : sl_err(err, "out of memory");
    for (uint64_t i = 0; i < n_pieces && rc == 0; i++) {
        const uint64_t k = s->pieces_reversed ? n_pieces - 1 - i : i, off = k * piece;
        const uint64_t len = total - off < piece ? total - off : piece;
        rc = sl_gpu_relayout_put(&st, lay, chunks, n, off, wq + off, len, scratch, cap, sink_write, &ws, err);
    }
    if (rc == 0 && sl_gpu_relayout_pending(&st)) rc = sl_err(err, "ktest: weight groups left incomplete");
    sl_gpu_relayout_free(&st);
    free(scratch);
    return rc;
}

/* MATVEC, MATMUL, EMBED: weights quantized from random floats. */
static int run_weights(sl_gpu_ktest *t, const sl_gpu_ktest_spec *s, int32_t ub, uint64_t *rng, sl_error *err) {
    const int64_t R = s->rows, C = s->cols, N = s->n_tokens;
    const size_t rb = sl_row_size(s->type, C);
    if (rb == 0 || R <= 0 || N <= 0) return sl_err(err, "ktest: bad shape %lldx%lld for %s", (long long)R, (long long)C,
                                                   sl_type_name(s->type) ? sl_type_name(s->type) : "?");
    int rc = -1;
    unsigned char *wq = malloc((size_t)R * rb);
    float *wf = malloc((size_t)(R * C) * sizeof(float)), *row = random_floats(rng, C, 1.0f);
    float *x = NULL, *y0 = NULL, *aux = NULL;
    uint32_t *ids = NULL;
    int32_t wbufs[MAX_BUFS];
    float *xn = NULL; /* the normed token (norm) */
    const bool norm = s->norm && s->kernel == SL_GK_MATVEC;
    if (norm && s->epilogue != SL_EPI_NONE && s->epilogue != SL_EPI_ADD) {
        sl_err(err, "ktest: a normed mat-vec has no bias or gate input");
        goto done;
    }
    if (!wq || !wf || !row) goto oom;
    for (int64_t r = 0; r < R; r++) {
        for (int64_t c = 0; c < C; c++) row[c] = rng_float(rng);
        sl_quantize_row(s->type, row, wq + (size_t)r * rb, C);
        sl_dequantize_row(s->type, wq + (size_t)r * rb, wf + (size_t)r * C, C);
    }
    /* chunks of whole rows, each a multiple of 4 bytes (as the plan makes them) */
    int64_t per = s->chunk_rows > 0 ? s->chunk_rows : R;
    if (rb % 4) per += per % 2;

    const bool embed = s->kernel == SL_GK_EMBED, matvec = s->kernel == SL_GK_MATVEC;
    const int64_t out_rows = matvec ? 1 : N, out_cols = embed ? C : R;
    t->n_out = out_rows * out_cols;
    t->expect = malloc((size_t)t->n_out * sizeof(float));
    if (!t->expect) goto oom;
    int32_t yb, xb = 0, ab = 0;
    if (embed) {
        ids = malloc((size_t)N * sizeof *ids);
        if (!ids) goto oom;
        for (int64_t i = 0; i < N; i++) ids[i] = (uint32_t)(i == 0 ? 0 : i == 1 ? R - 1 : (int64_t)(rng_next(rng) % (uint64_t)R));
        for (int64_t i = 0; i < N; i++) memcpy(t->expect + i * C, wf + (size_t)ids[i] * C, (size_t)C * sizeof(float));
        if (!(xb = upload(t, ids, (uint64_t)N * 4, err))) goto done;
        if (!(yb = new_buffer(t, (uint64_t)t->n_out * 4, WG_USAGE_STORAGE, err))) goto done;
    } else {
        x = random_floats(rng, N * C, 1.0f);
        y0 = random_floats(rng, t->n_out, 1.0f);
        aux = random_floats(rng, s->epilogue == SL_EPI_BIAS ? R : norm ? C : t->n_out, 2.0f);
        xn = malloc((size_t)C * sizeof *xn);
        if (!x || !y0 || !aux || !xn) goto oom;
        for (int64_t o = 0; o < out_rows; o++) {
            const float *xr = x + (size_t)(matvec ? N - 1 : o) * C;
            if (norm) {
                /* RMSNorm of the token times the weight (aux) first */
                double ss = 0;
                for (int64_t c = 0; c < C; c++) ss += (double)xr[c] * xr[c];
                const double sc = 1.0 / sqrt(ss / (double)C + 1e-5);
                for (int64_t c = 0; c < C; c++) xn[c] = (float)(xr[c] * sc * aux[c]);
                xr = xn;
            }
            for (int64_t r = 0; r < R; r++) {
                double acc = 0;
                for (int64_t c = 0; c < C; c++) acc += (double)wf[(size_t)r * C + c] * xr[c];
                size_t idx = (size_t)(o * R + r);
                float v = (float)acc;
                switch (s->epilogue) {
                case SL_EPI_NONE: t->expect[idx] = v; break;
                case SL_EPI_BIAS: t->expect[idx] = v + aux[r]; break;
                case SL_EPI_ADD: t->expect[idx] = y0[idx] + v; break;
                case SL_EPI_SILU_MUL: t->expect[idx] = silu_mul(aux[idx], v); break;
                }
            }
        }
        if (!(xb = upload(t, x, (uint64_t)(N * C) * 4, err))) goto done;
        if (!(yb = upload(t, y0, (uint64_t)t->n_out * 4, err))) goto done;
        if (s->epilogue == SL_EPI_BIAS || s->epilogue == SL_EPI_SILU_MUL || norm)
            if (!(ab = upload(t, aux, (uint64_t)(s->epilogue == SL_EPI_BIAS ? R : norm ? C : t->n_out) * 4, err)))
                goto done;
    }
    if (upload_weights(t, s, wq, rb, per, wbufs, err)) goto done;
    for (int64_t r0 = 0, c = 0; r0 < R; r0 += per, c++) {
        int64_t nr = R - r0 < per ? R - r0 : per;
        int32_t wb = wbufs[c];
        sl_gpu_kernel_desc d = {.kernel = s->kernel, .type = s->type, .cols = (uint32_t)C, .rows = (uint32_t)nr,
                                .row0 = (uint32_t)r0, .out_stride = (uint32_t)(embed ? C : R),
                                .epilogue = embed ? SL_EPI_NONE : s->epilogue, .layouts = s->layouts,
                                .mv_rows = s->mv_rows, .mv_units = s->mv_units, .mv_min_wgs = s->mv_min_wgs,
                                .norm = norm, .eps = 1e-5f, .int8_dot = s->int8, .mm_tokens = s->mm_tokens,
                                .mm_rows = s->mm_rows, .mm_inv_tokens = s->mm_inv_tokens};
        wg_binding b[5] = {bind(0, ub, 0, 16), bind(1, wb, 0, ((uint64_t)nr * rb + 15) & ~(uint64_t)15), bind(2, xb, 0, embed ? (uint64_t)N * 4 : (uint64_t)(N * C) * 4),
                           bind(3, yb, 0, (uint64_t)t->n_out * 4)};
        int n = 4;
        if (ab) b[n++] = bind(4, ab, 0, (uint64_t)(s->epilogue == SL_EPI_BIAS ? R : norm ? C : t->n_out) * 4);
        if (dispatch(t, &d, b, n, (uint32_t)N, 0, err)) goto done;
    }
    t->out_buf = yb;
    rc = 0;
    goto done;
oom:
    sl_err(err, "out of memory");
done:
    free(wq);
    free(wf);
    free(row);
    free(x);
    free(y0);
    free(aux);
    free(xn);
    free(ids);
    return rc;
}

static int run_rmsnorm(sl_gpu_ktest *t, const sl_gpu_ktest_spec *s, int32_t ub, uint64_t *rng, sl_error *err) {
    const int64_t C = s->cols, N = s->n_tokens;
    const float eps = 1e-5f;
    float *x = random_floats(rng, N * C, 3.0f), *g = random_floats(rng, C, 1.0f);
    t->n_out = N * C;
    t->expect = malloc((size_t)t->n_out * sizeof(float));
    int rc = -1;
    if (!x || !g || !t->expect) {
        sl_err(err, "out of memory");
        goto done;
    }
    for (int64_t i = 0; i < N; i++) {
        double ss = 0;
        for (int64_t c = 0; c < C; c++) ss += (double)x[i * C + c] * x[i * C + c];
        double scale = 1.0 / sqrt(ss / (double)C + eps);
        for (int64_t c = 0; c < C; c++) t->expect[i * C + c] = (float)(x[i * C + c] * scale * g[c]);
    }
    int32_t xb = upload(t, x, (uint64_t)(N * C) * 4, err), gb = xb ? upload(t, g, (uint64_t)C * 4, err) : 0,
            yb = gb ? new_buffer(t, (uint64_t)(N * C) * 4, WG_USAGE_STORAGE, err) : 0;
    if (!yb) goto done;
    sl_gpu_kernel_desc d = {.kernel = SL_GK_RMSNORM, .n = (uint32_t)C, .eps = eps};
    wg_binding b[4] = {bind(0, ub, 0, 16), bind(1, xb, 0, (uint64_t)(N * C) * 4), bind(2, yb, 0, (uint64_t)(N * C) * 4),
                       bind(3, gb, 0, (uint64_t)C * 4)};
    if (dispatch(t, &d, b, 4, (uint32_t)N, 0, err)) goto done;
    t->out_buf = yb;
    rc = 0;
done:
    free(x);
    free(g);
    return rc;
}

/* Rotates/norms one head as forward.c does (double precision). */
static void ref_head(const float *in, double *out, int hd, int n_rot, sl_rope_kind kind, const float *cs_sn,
                     const float *norm, float eps) {
    double scale = 1;
    if (norm) {
        double ss = 0;
        for (int i = 0; i < hd; i++) ss += (double)in[i] * in[i];
        scale = 1.0 / sqrt(ss / hd + eps);
    }
    for (int i = 0; i < hd; i++) out[i] = norm ? in[i] * scale * norm[i] : in[i];
    for (int i = 0; i < n_rot / 2; i++) {
        int a = kind == SL_ROPE_NORM ? 2 * i : i, b = kind == SL_ROPE_NORM ? 2 * i + 1 : i + n_rot / 2;
        double x0 = out[a], x1 = out[b], c = cs_sn[2 * i], sn = cs_sn[2 * i + 1];
        out[a] = x0 * c - x1 * sn;
        out[b] = x0 * sn + x1 * c;
    }
}

static int run_rope(sl_gpu_ktest *t, const sl_gpu_ktest_spec *s, int32_t ub, uint64_t *rng, sl_error *err) {
    const bool is_q = s->kernel == SL_GK_ROPE_Q;
    const int hd = s->head_dim, nh = is_q ? s->n_head : s->n_head_kv, half = s->n_rot / 2;
    const int64_t N = s->n_tokens, D = (int64_t)nh * hd, n_ctx = s->pos0 + N;
    const float eps = 1e-6f;
    int rc = -1;
    float *src = random_floats(rng, N * D, 2.0f), *v = random_floats(rng, N * D, 2.0f),
          *norm = random_floats(rng, hd, 1.5f), *table = malloc((size_t)(n_ctx * half * 2 + 1) * sizeof(float));
    double *head = malloc((size_t)hd * sizeof(double));
    /* caches: K at 0, V at an aligned offset after it, one buffer; f16 caches
     * are read back as stored and compared with the reference rounded the
     * same way */
    const bool f16 = !is_q && s->kv_f16;
    const int esz = f16 ? 2 : 4;
    const uint64_t cache_bytes = (uint64_t)(n_ctx * D) * (uint64_t)esz, v_off = (cache_bytes + 255) / 256 * 256;
    t->out_bytes = esz;
    t->n_out = is_q ? N * D : (int64_t)(v_off / (uint64_t)esz) + n_ctx * D;
    t->expect = calloc((size_t)t->n_out, sizeof(float));
    if (!src || !v || !norm || !table || !head || !t->expect) {
        sl_err(err, "out of memory");
        goto done;
    }
    for (int64_t p = 0; p < n_ctx; p++) {
        for (int i = 0; i < half; i++) {
            float theta = (float)p * (float)pow(10000.0, -2.0 * i / s->n_rot);
            table[(p * half + i) * 2] = cosf(theta);
            table[(p * half + i) * 2 + 1] = sinf(theta);
        }
    }
    for (int64_t i = 0; i < N; i++) {
        for (int h = 0; h < nh; h++) {
            ref_head(src + i * D + (int64_t)h * hd, head, hd, s->n_rot, s->rope_kind, table + (s->pos0 + i) * half * 2,
                     s->qk_norm ? norm : NULL, eps);
            float *dst = is_q ? t->expect + i * D + (int64_t)h * hd : t->expect + (s->pos0 + i) * D + (int64_t)h * hd;
            for (int k = 0; k < hd; k++) dst[k] = f16 ? round_f16((float)head[k]) : (float)head[k];
            if (!is_q) {
                float *vdst = t->expect + (int64_t)(v_off / (uint64_t)esz) + (s->pos0 + i) * D + (int64_t)h * hd;
                const float *vsrc = v + i * D + (int64_t)h * hd;
                for (int k = 0; k < hd; k++) vdst[k] = f16 ? round_f16(vsrc[k]) : vsrc[k];
            }
        }
    }
    int32_t sb = upload(t, src, (uint64_t)(N * D) * 4, err), rb = sb ? upload(t, table, (uint64_t)(n_ctx * half * 2) * 4, err) : 0,
            nb = rb ? upload(t, norm, (uint64_t)hd * 4, err) : 0;
    if (!nb) goto done;
    sl_gpu_kernel_desc d = {.kernel = s->kernel, .n_head = (uint32_t)s->n_head, .n_head_kv = (uint32_t)s->n_head_kv,
                            .head_dim = (uint32_t)hd, .n_rot = (uint32_t)s->n_rot, .rope_kind = s->rope_kind,
                            .qk_norm = s->qk_norm, .eps = eps, .kv_f16 = f16};
    wg_binding b[7];
    int n = 0;
    b[n++] = bind(0, ub, 0, 16);
    if (is_q) {
        b[n++] = bind(1, sb, 0, (uint64_t)(N * D) * 4);
        b[n++] = bind(2, rb, 0, (uint64_t)(n_ctx * half * 2) * 4);
        if (s->qk_norm) b[n++] = bind(3, nb, 0, (uint64_t)hd * 4);
        t->out_buf = sb;
    } else {
        int32_t vb = upload(t, v, (uint64_t)(N * D) * 4, err),
                cb = vb ? new_buffer(t, (uint64_t)t->n_out * (uint64_t)esz, WG_USAGE_STORAGE, err) : 0;
        if (!cb) goto done;
        b[n++] = bind(1, sb, 0, (uint64_t)(N * D) * 4);
        b[n++] = bind(2, vb, 0, (uint64_t)(N * D) * 4);
        b[n++] = bind(3, cb, 0, cache_bytes);
        b[n++] = bind(4, cb, v_off, cache_bytes);
        b[n++] = bind(5, rb, 0, (uint64_t)(n_ctx * half * 2) * 4);
        if (s->qk_norm) b[n++] = bind(6, nb, 0, (uint64_t)hd * 4);
        t->out_buf = cb;
    }
    if (dispatch(t, &d, b, n, (uint32_t)N, 0, err)) goto done;
    rc = 0;
done:
    free(src);
    free(v);
    free(norm);
    free(table);
    free(head);
    return rc;
}

/* Causal attention with GQA: token i (position pos0 + i) sees keys 0..pos0+i. */
static int run_attention(sl_gpu_ktest *t, const sl_gpu_ktest_spec *s, int32_t ub, uint64_t *rng, sl_error *err) {
    const bool decode = s->kernel == SL_GK_ATTN_DECODE;
    const int hd = s->head_dim, nh = s->n_head, nkv = s->n_head_kv, group = nh / nkv;
    const int64_t N = decode ? 1 : s->n_tokens, QD = (int64_t)nh * hd, KD = (int64_t)nkv * hd,
                  n_ctx = s->pos0 + N + 3; /* a few unused cache rows */
    const uint32_t ks = 256, n_splits = (uint32_t)((s->pos0 + N + ks - 1) / ks);
    int rc = -1;
    float *q = random_floats(rng, N * QD, 1.0f), *kc = random_floats(rng, n_ctx * KD, 1.0f),
          *vc = random_floats(rng, n_ctx * KD, 1.0f);
    uint16_t *kh = NULL, *vh = NULL; /* the caches' f16 bits (kv_f16) */
    double *sc = malloc((size_t)n_ctx * sizeof(double));
    t->n_out = N * QD;
    t->expect = malloc((size_t)t->n_out * sizeof(float));
    if (!q || !kc || !vc || !sc || !t->expect) {
        sl_err(err, "out of memory");
        goto done;
    }
    /* scale the queries so that softmaxes are neither flat nor one-hot */
    for (int64_t i = 0; i < N * QD; i++) q[i] *= 2.0f;
    /* f16 caches: the reference sees the values they hold */
    if (s->kv_f16)
        for (int64_t i = 0; i < n_ctx * KD; i++) {
            kc[i] = round_f16(kc[i]);
            vc[i] = round_f16(vc[i]);
        }
    const double scale = 1.0 / sqrt((double)hd);
    for (int64_t i = 0; i < N; i++) {
        int64_t nk = s->pos0 + i + 1;
        for (int h = 0; h < nh; h++) {
            const float *qh = q + i * QD + (int64_t)h * hd;
            const int64_t ko = (int64_t)(h / group) * hd;
            double mx = -INFINITY, sum = 0;
            for (int64_t j = 0; j < nk; j++) {
                double dt = 0;
                for (int k = 0; k < hd; k++) dt += (double)qh[k] * kc[j * KD + ko + k];
                sc[j] = dt * scale;
                if (sc[j] > mx) mx = sc[j];
            }
            for (int64_t j = 0; j < nk; j++) sum += (sc[j] = exp(sc[j] - mx));
            for (int k = 0; k < hd; k++) {
                double acc = 0;
                for (int64_t j = 0; j < nk; j++) acc += sc[j] * vc[j * KD + ko + k];
                t->expect[i * QD + (int64_t)h * hd + k] = (float)(acc / sum);
            }
        }
    }
    const uint64_t cache_bytes = (uint64_t)(n_ctx * KD) * (s->kv_f16 ? 2 : 4);
    if (s->kv_f16) {
        kh = to_f16(kc, n_ctx * KD);
        vh = to_f16(vc, n_ctx * KD);
        if (!kh || !vh) {
            sl_err(err, "out of memory");
            goto done;
        }
    }
    int32_t qb = upload(t, q, (uint64_t)(N * QD) * 4, err),
            kb = qb ? upload(t, kh ? (const void *)kh : kc, cache_bytes, err) : 0,
            vb = kb ? upload(t, vh ? (const void *)vh : vc, cache_bytes, err) : 0,
            ob = vb ? new_buffer(t, (uint64_t)(N * QD) * 4, WG_USAGE_STORAGE, err) : 0;
    if (!ob) goto done;
    sl_gpu_kernel_desc d = {.kernel = s->kernel, .n_head = (uint32_t)nh, .n_head_kv = (uint32_t)nkv,
                            .head_dim = (uint32_t)hd, .n_rot = 0, .keys_per_split = ks, .n_splits = n_splits,
                            .kv_f16 = s->kv_f16};
    wg_binding b[5] = {bind(0, ub, 0, 16), bind(1, qb, 0, (uint64_t)(N * QD) * 4), bind(2, kb, 0, cache_bytes),
                       bind(3, vb, 0, cache_bytes), bind(4, ob, 0, (uint64_t)(N * QD) * 4)};
    if (decode) {
        uint64_t part_bytes = (uint64_t)nh * n_splits * ((uint64_t)hd + 2) * 4;
        int32_t pb = new_buffer(t, part_bytes, WG_USAGE_STORAGE, err);
        if (!pb) goto done;
        b[4] = bind(4, pb, 0, part_bytes);
        if (dispatch(t, &d, b, 5, 1, n_splits, err)) goto done;
        d.kernel = SL_GK_ATTN_MERGE;
        wg_binding m[3] = {bind(0, ub, 0, 16), bind(1, pb, 0, part_bytes), bind(2, ob, 0, (uint64_t)(N * QD) * 4)};
        if (dispatch(t, &d, m, 3, 1, n_splits, err)) goto done;
    } else if (dispatch(t, &d, b, 5, (uint32_t)N, 0, err)) {
        goto done;
    }
    t->out_buf = ob;
    rc = 0;
done:
    free(q);
    free(kc);
    free(vc);
    free(kh);
    free(vh);
    free(sc);
    return rc;
}

/* ---- begin / end ------------------------------------------------------------ */

sl_gpu_ktest *sl_gpu_ktest_begin(const sl_gpu_ktest_spec *s, sl_error *err) {
    sl_gpu_ktest *t = calloc(1, sizeof *t);
    if (!t) {
        sl_err(err, "out of memory");
        return NULL;
    }
    uint64_t rng = s->seed * 2654435761u + 12345;
    int32_t ub = new_buffer(t, 16, WG_USAGE_UNIFORM, err);
    t->program = ub ? wg_program_create() : 0;
    if (!t->program) goto fail;
    int32_t n = s->kernel == SL_GK_ATTN_DECODE ? 1 : s->n_tokens;
    uint32_t step[4] = {(uint32_t)n, (uint32_t)s->pos0, (uint32_t)(s->pos0 + n), 0};
    wg_buffer_write(ub, 0, step, sizeof step);
    if (n <= 0 || s->cols < 0) {
        sl_err(err, "ktest: bad token count %d", n);
        goto fail;
    }
    if (s->int8 && !wg_caps(WG_CAP_HAS_DOT4)) {
        sl_err(err, "ktest: int8 dot products need WGSL's packed_4x8_integer_dot_product, which is missing");
        goto fail;
    }
    if (s->kv_f16 && !wg_caps(WG_CAP_HAS_F16)) {
        sl_err(err, "ktest: an f16 KV cache needs shader-f16, which the device lacks");
        goto fail;
    }
    t->out_bytes = 4;
    int rc;
    switch (s->kernel) {
    case SL_GK_MATVEC:
    case SL_GK_MATMUL:
    case SL_GK_EMBED: rc = run_weights(t, s, ub, &rng, err); break;
    case SL_GK_RMSNORM: rc = run_rmsnorm(t, s, ub, &rng, err); break;
    case SL_GK_ROPE_Q:
    case SL_GK_ROPE_KV: rc = run_rope(t, s, ub, &rng, err); break;
    case SL_GK_ATTN_DECODE:
    case SL_GK_ATTN_PREFILL: rc = run_attention(t, s, ub, &rng, err); break;
    default: rc = sl_err(err, "ktest: kernel %d cannot be tested alone", (int)s->kernel);
    }
    if (rc) goto fail;
    const uint64_t read_bytes = ((uint64_t)t->n_out * (uint64_t)t->out_bytes + 3) & ~(uint64_t)3;
    t->staging = new_buffer(t, read_bytes, WG_USAGE_READBACK, err);
    t->got = malloc((size_t)read_bytes);
    if (!t->staging || !t->got) {
        if (t->staging) sl_err(err, "out of memory");
        goto fail;
    }
    if (wg_program_run(t->program, t->out_buf, 0, (double)read_bytes, t->staging)) {
        char msg[300];
        wg_error_text(msg, sizeof msg);
        sl_err(err, "WebGPU: %s", msg);
        goto fail;
    }
    return t;
fail:
    ktest_free(t);
    return NULL;
}

int sl_gpu_ktest_end(sl_gpu_ktest *t, sl_gpu_ktest_result *r, sl_error *err) {
    memset(r, 0, sizeof *r);
    if (!t) return sl_err(err, "ktest: no test");
    int rc = 0;
    const uint64_t read_bytes = ((uint64_t)t->n_out * (uint64_t)t->out_bytes + 3) & ~(uint64_t)3;
    if (wg_read_mapped(t->staging, t->got, (uint32_t)read_bytes)) {
        char msg[300];
        wg_error_text(msg, sizeof msg);
        rc = sl_err(err, "WebGPU: %s", msg);
    } else {
        double se = 0, sr = 0;
        const unsigned char *got = t->got;
        for (int64_t i = 0; i < t->n_out; i++) {
            float g;
            if (t->out_bytes == 2) {
                uint16_t h;
                memcpy(&h, got + i * 2, 2);
                g = sl_f16_to_f32(h);
            } else {
                memcpy(&g, got + i * 4, 4);
            }
            double d = (double)g - t->expect[i];
            if (!(fabs(d) <= r->max_abs)) r->max_abs = isnan(d) ? INFINITY : fabs(d);
            se += d * d;
            sr += (double)t->expect[i] * t->expect[i];
        }
        r->n = t->n_out;
        r->ref_rms = sqrt(sr / (double)(t->n_out ? t->n_out : 1));
        r->nrmse = sr > 0 ? sqrt(se / sr) : sqrt(se);
        if (isnan(r->nrmse)) r->nrmse = INFINITY;
    }
    ktest_free(t);
    return rc;
}
