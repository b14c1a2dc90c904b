/* test_gpu_plan.c - the WebGPU backend without a GPU: the static memory plan
 * (sizes, chunking under small binding limits, activation aliasing, budget
 * refusal, header-only planning), and the engine on the native recording
 * bridge (gpu/bridge.h): what it allocates equals the plan, every call
 * passes WebGPU's validation rules, programs are recorded once, uploads and
 * evaluations reject bad input. Self-contained cases use synthesized models;
 * the test-data cases run every model of index.tsv. */
#include "test.h"

#include "gpu/bridge.h"
#include "gpu/gpu.h"
#include "gpu/kernels.h"
#include "gpu/ktest.h"
#include "model/synth.h"

/* The WebGPU backend's sources, compiled into this test: the Makefile's core
 * library does not list src/gpu yet. Harmless once it does (the library's
 * copies are then simply not pulled in). */
#include "../src/gpu/bridge_native.c"
#include "../src/gpu/engine.c"
#include "../src/gpu/kernels.c"
#include "../src/gpu/layout.c"
#include "../src/gpu/ktest.c"
#include "../src/gpu/plan.c"

#include <math.h>

static sl_gpu_caps test_caps(uint64_t max_binding) {
    sl_gpu_caps c = sl_gpu_default_caps();
    c.max_binding = max_binding;
    c.max_buffer = max_binding > c.max_buffer ? max_binding : c.max_buffer;
    return c;
}

/* A synthesized model in memory (the model keeps the buffer alive). */
static sl_model *synth_model(const char *shape, const char *preset, void **buf, size_t *size) {
    sl_synth_params p = {.shape = sl_synth_find_shape(shape), .preset = sl_synth_find_preset(preset), .seed = 3};
    sl_error err;
    if (!p.shape || !p.preset || sl_synth_write_memory(&p, buf, size, &err)) {
        fprintf(stderr, "cannot synthesize %s %s\n", shape, preset);
        return NULL;
    }
    sl_gguf *g = sl_gguf_open_memory(*buf, *size, 0, &err);
    sl_model *m = g ? sl_model_from_gguf(g, shape, &err) : NULL;
    if (!m) fprintf(stderr, "cannot load %s %s: %s\n", shape, preset, err.msg);
    return m;
}

/* Structural checks every plan must pass. */
static void check_plan(const sl_gpu_plan *p, const char *what) {
    uint64_t total = 0, by_kind[SL_GPU_BUF_KIND_COUNT] = {0};
    for (int i = 0; i < p->n_buffers; i++) {
        CHECKF(p->buffers[i].size % 4 == 0 && p->buffers[i].size > 0, "%s: buffer %s size %llu", what,
               p->buffers[i].name, (unsigned long long)p->buffers[i].size);
        total += p->buffers[i].size;
        by_kind[p->buffers[i].kind] += p->buffers[i].size;
    }
    CHECKF(total == p->total, "%s: total %llu != sum %llu", what, (unsigned long long)p->total, (unsigned long long)total);
    for (int k = 0; k < SL_GPU_BUF_KIND_COUNT; k++) CHECK(by_kind[k] == p->by_kind[k]);
    /* matrices: chunks of whole rows covering the tensor, each within a binding, 4-aligned */
    for (int t = 0; t < p->n_tensors; t++) {
        const sl_gpu_tensor_plan *tp = &p->tensors[t];
        if (tp->is_vector) {
            CHECK(tp->vec_offset % 256 == 0);
            CHECK(tp->vec_offset + (uint64_t)tp->cols * 4 <= p->buffers[p->buf_vectors].size);
            continue;
        }
        int64_t row = 0;
        uint64_t off = 0;
        for (int c = 0; c < tp->n_chunks; c++) {
            const sl_gpu_chunk *ch = &p->chunks[tp->first_chunk + c];
            CHECKF(ch->row0 == row && ch->offset == off, "%s: %s chunk %d not contiguous", what, tp->name, c);
            CHECK(ch->bytes == (uint64_t)ch->rows * tp->row_bytes);
            CHECKF(ch->bytes <= p->caps.max_binding, "%s: %s chunk of %llu bytes", what, tp->name,
                   (unsigned long long)ch->bytes);
            CHECK(ch->offset % 4 == 0);
            CHECK(p->buffers[ch->buffer].size >= ch->bytes && p->buffers[ch->buffer].kind == SL_GPU_BUF_WEIGHT);
            row += ch->rows;
            off += ch->bytes;
        }
        CHECKF(row == tp->rows && off == tp->nbytes, "%s: %s chunks cover %lld of %lld rows", what, tp->name,
               (long long)row, (long long)tp->rows);
    }
    /* activations: aligned, inside the arena, apart while alive together */
    uint64_t sum = 0;
    for (int a = 0; a < SL_ACT_COUNT; a++) {
        const sl_gpu_act_plan *x = &p->acts[a];
        sum += x->size;
        CHECK(x->offset % 256 == 0);
        CHECK(x->offset + x->size <= p->buffers[p->buf_act].size);
        for (int b = 0; b < a; b++) {
            const sl_gpu_act_plan *y = &p->acts[b];
            bool live = x->first <= y->last && y->first <= x->last;
            bool overlap = x->offset < y->offset + y->size && y->offset < x->offset + x->size;
            CHECKF(!(live && overlap), "%s: activations %s and %s share bytes while both alive", what, x->name, y->name);
        }
    }
    CHECKF(p->buffers[p->buf_act].size < sum, "%s: no aliasing (%llu >= %llu)", what,
           (unsigned long long)p->buffers[p->buf_act].size, (unsigned long long)sum);
}

static void test_plan_synth(void) {
    const char *presets[] = {"F32", "F16", "Q8_0", "Q4_0", "Q4_K_M", "Q6_K", "Q2_K", "Q3_K_M", "IQ4_NL", "BF16"};
    const char *shapes[] = {"tiny", "tiny-qwen2", "tiny-qwen3"};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++) {
            void *buf = NULL;
            size_t size = 0;
            sl_model *m = synth_model(shapes[s], presets[i], &buf, &size);
            CHECK(m != NULL);
            if (!m) {
                free(buf);
                continue;
            }
            char what[64];
            snprintf(what, sizeof what, "%s %s", shapes[s], presets[i]);
            sl_error err;
            sl_gpu_params params = {.n_ctx = 256, .n_batch = 64, .n_out = 8};
            sl_gpu_caps c = test_caps(128u << 20);
            sl_gpu_plan *p = sl_gpu_plan_build(m->gguf, &m->hp, &params, &c, &err);
            CHECKF(p != NULL, "%s: %s", what, err.msg);
            if (p) {
                check_plan(p, what);
                CHECK(p->n_ctx == 256 && p->n_batch == 64 && p->n_out == 8);
                /* every weight tensor the model binds is in the plan, once (tied heads reuse token_embd) */
                CHECK(sl_gpu_plan_find(p, "token_embd.weight") && sl_gpu_plan_find(p, "blk.1.ffn_down.weight"));
                CHECK(p->tied == (sl_gguf_find_tensor(m->gguf, "output.weight") == NULL));
                CHECK((sl_gpu_plan_find(p, "blk.0.attn_q.bias") != NULL) == (m->hp.arch == SL_ARCH_QWEN2));
                CHECK((sl_gpu_plan_find(p, "blk.0.attn_q_norm.weight") != NULL) == (m->hp.arch == SL_ARCH_QWEN3));
                /* KV: 2 x layers x n_ctx x kv_dim floats */
                CHECK(p->by_kind[SL_GPU_BUF_KV] ==
                      2ull * m->hp.n_layer * 256 * (uint64_t)m->hp.n_head_kv * m->hp.head_dim * 4);
                uint64_t wsum = 0;
                for (int t = 0; t < p->n_tensors; t++)
                    if (!p->tensors[t].is_vector) wsum += (p->tensors[t].nbytes + 3) & ~3ull;
                CHECK(p->by_kind[SL_GPU_BUF_WEIGHT] >= wsum);

                /* the same plan from the header alone (no tensor data) */
                sl_gguf *h = sl_gguf_open_memory(buf, sl_gguf_data_offset(m->gguf), SL_GGUF_HEADER_ONLY, &err);
                CHECKF(h != NULL, "%s: header-only open: %s", what, err.msg);
                if (h) {
                    sl_gpu_plan *ph = sl_gpu_plan_build(h, &m->hp, &params, &c, &err);
                    CHECKF(ph && ph->total == p->total && ph->n_buffers == p->n_buffers, "%s: header-only plan differs",
                           what);
                    sl_gpu_plan_free(ph);
                    sl_gguf_close(h);
                }

                /* budget: exactly enough passes, one byte less is refused with a message */
                sl_gpu_params b = params;
                b.budget = p->total;
                sl_gpu_plan *pb = sl_gpu_plan_build(m->gguf, &m->hp, &b, &c, &err);
                CHECK(pb != NULL);
                sl_gpu_plan_free(pb);
                b.budget = p->total - 1;
                err.msg[0] = 0;
                pb = sl_gpu_plan_build(m->gguf, &m->hp, &b, &c, &err);
                CHECK(pb == NULL && strstr(err.msg, "budget") && strstr(err.msg, "MiB"));
                sl_gpu_plan_free(pb);

                /* a 16 KiB binding limit splits the matrices, never refuses them */
                sl_gpu_caps small = test_caps(16u << 10);
                sl_gpu_params sp = {.n_ctx = 16, .n_batch = 4};
                sl_gpu_plan *ps = sl_gpu_plan_build(m->gguf, &m->hp, &sp, &small, &err);
                if (ps) {
                    check_plan(ps, what);
                    CHECK(ps->n_chunks > p->n_chunks);
                    /* weight buffers are rounded up to 16 bytes each */
                    CHECK(ps->by_kind[SL_GPU_BUF_WEIGHT] == p->by_kind[SL_GPU_BUF_WEIGHT] ||
                          ps->by_kind[SL_GPU_BUF_WEIGHT] < p->by_kind[SL_GPU_BUF_WEIGHT] + 16ull * ps->n_chunks);
                } else {
                    /* only a row or a logits row larger than 16 KiB may refuse, and it says so */
                    CHECKF(strstr(err.msg, "binding limit"), "%s: %s", what, err.msg);
                }
                sl_gpu_plan_free(ps);
            }
            sl_gpu_plan_free(p);
            sl_model_free(m);
            free(buf);
        }
    }
}

static void test_plan_errors(void) {
    void *buf = NULL;
    size_t size = 0;
    sl_model *m = synth_model("tiny", "Q4_0", &buf, &size);
    CHECK(m != NULL);
    if (!m) return;
    sl_error err;
    sl_gpu_caps c = test_caps(128u << 20);
    /* a KV cache layer larger than one binding */
    sl_gpu_caps kvc = test_caps(64u << 10);
    sl_gpu_params big_ctx = {.n_ctx = 1 << 16};
    sl_gpu_plan *p = sl_gpu_plan_build(m->gguf, &m->hp, &big_ctx, &kvc, &err);
    CHECK(p == NULL && strstr(err.msg, "--ctx"));
    sl_gpu_plan_free(p);
    /* a missing tensor is named */
    sl_hparams hp = m->hp;
    hp.n_layer += 1;
    sl_gpu_params dp = {.n_ctx = 64};
    p = sl_gpu_plan_build(m->gguf, &hp, &dp, &c, &err);
    CHECK(p == NULL && strstr(err.msg, "blk.2."));
    sl_gpu_plan_free(p);
    /* a shape that does not match the hyperparameters */
    hp = m->hp;
    hp.n_ff += 32;
    p = sl_gpu_plan_build(m->gguf, &hp, &dp, &c, &err);
    CHECK(p == NULL && strstr(err.msg, "shape"));
    sl_gpu_plan_free(p);
    /* n_out and n_batch are capped sensibly */
    sl_gpu_params capped = {.n_ctx = 32, .n_batch = 1000, .n_out = 1000};
    p = sl_gpu_plan_build(m->gguf, &m->hp, &capped, &c, &err);
    CHECK(p && p->n_batch == 32 && p->n_out == 32);
    sl_gpu_plan_free(p);
    sl_model_free(m);
    free(buf);
}

/* The engine on the recording bridge. split: a 32 KiB binding limit (every
 * matrix in several chunks) with a short context and small batches, the
 * int8 token and a tuned int8 mat-mul tile (a bad tile is refused). */
static void run_engine(sl_model *m, const char *what, bool split) {
    wg_native_reset();
    sl_error err;
    const int32_t n_ctx = split ? 32 : 300, n_batch = split ? 8 : 32, n_out = split ? 4 : 16, prompt = split ? 12 : 40;
    sl_gpu_params params = {.n_ctx = n_ctx, .n_batch = n_batch, .n_out = n_out, .max_binding = split ? 32u << 10 : 0,
                            .int8 = split, .mm_tokens = 48};
    CHECK(sl_gpu_engine_new(m, &params, &err) == NULL && strstr(err.msg, "mat-mul tile"));
    if (split) params.mm_tokens = 32, params.mm_rows = 64, params.mm_inv_tokens = 2;
    else params.mm_tokens = 0;
    sl_gpu_engine *e = sl_gpu_engine_new(m, &params, &err);
    CHECKF(e != NULL, "%s: %s", what, err.msg);
    if (!e) return;
    const wg_native_stats *s = wg_native_get_stats();
    const sl_gpu_plan *p = sl_gpu_engine_plan(e);
    CHECKF(s->n_errors == 0, "%s: %s", what, s->first_error);
    /* what the engine allocates is the plan, exactly (the requirement: within 5%) */
    CHECKF(s->buffer_bytes == p->total && s->n_buffers == p->n_buffers, "%s: allocated %llu in %d buffers, plan %llu in %d",
           what, (unsigned long long)s->buffer_bytes, s->n_buffers, (unsigned long long)p->total, p->n_buffers);
    CHECK(s->n_pipelines < s->n_bind_groups); /* layers share pipelines */

    int32_t toks[300];
    for (int i = 0; i < 300; i++) toks[i] = (i * 7 + 1) % m->hp.n_vocab;
    float *logits = malloc((size_t)n_out * m->hp.n_vocab * sizeof(float));
    CHECK(logits != NULL);
    if (!logits) {
        sl_gpu_engine_free(e);
        return;
    }
    /* nothing uploaded yet: refused, naming a tensor */
    CHECK(sl_gpu_eval_begin(e, toks, 3, false, &err) != 0 && strstr(err.msg, "not uploaded"));
    CHECK(sl_gpu_upload_model(e, &err) == 0);
    CHECK(sl_gpu_check_uploaded(e, &err) == 0);
    CHECKF(s->n_errors == 0, "%s: upload: %s", what, s->first_error);

    /* bad uploads */
    CHECK(sl_gpu_upload_tensor(e, "token_embd.weight", 2, toks, 4, &err) < 0 && strstr(err.msg, "aligned"));
    CHECK(sl_gpu_upload_tensor(e, "token_embd.weight", 1ull << 40, toks, 4, &err) < 0 && strstr(err.msg, "outside"));
    CHECK(sl_gpu_upload_tensor(e, "no.such.tensor", 0, toks, 4, &err) == 1);

    /* prefill in two batches, then decode steps */
    CHECK(sl_gpu_eval_begin(e, toks, prompt, false, &err) == 0);
    CHECK(sl_gpu_pending_floats(e) == m->hp.n_vocab);
    CHECK(sl_gpu_eval_begin(e, toks, 1, false, &err) != 0 && strstr(err.msg, "pending"));
    CHECK(sl_gpu_eval_end(e, logits, &err) == 0);
    CHECK(sl_gpu_n_past(e) == prompt);
    int programs = sl_gpu_n_programs(e);
    for (int i = 0; i < 3; i++) {
        CHECK(sl_gpu_eval_begin(e, toks + i, 1, false, &err) == 0);
        CHECK(sl_gpu_eval_end(e, logits, &err) == 0);
    }
    CHECK(sl_gpu_n_programs(e) == programs + 1); /* one decode program, replayed */
    /* decode dispatches (the keys fit one attention split: no merge): embed chunks + per layer,
     * fused: (norm+q/k/v+rope+store, attention, o chunks, norm+gate+up, down chunks), else (norm,
     * q/k/v chunks, 2 rope, attention, o chunks, norm, gate, up, down chunks) + head chunks, each
     * norming the last token itself */
    int chunks = 0, od_chunks = 0;
    for (int t = 0; t < p->n_tensors; t++) {
        const sl_gpu_tensor_plan *tp = &p->tensors[t];
        if (tp->is_vector || strncmp(tp->name, "blk.", 4) != 0) continue;
        chunks += tp->n_chunks;
        if (strstr(tp->name, "attn_output") || strstr(tp->name, "ffn_down")) od_chunks += tp->n_chunks;
    }
    const sl_gpu_tensor_plan *te = sl_gpu_plan_find(p, "token_embd.weight"),
                             *out = p->tied ? te : sl_gpu_plan_find(p, "output.weight");
    int per_layers = sl_gpu_decode_fused(e) ? m->hp.n_layer * 3 + od_chunks : m->hp.n_layer * 5 + chunks;
    CHECKF(sl_gpu_last_dispatches(e) == te->n_chunks + per_layers + out->n_chunks,
           "%s: %d dispatches per decode step (fused %d)", what, sl_gpu_last_dispatches(e), sl_gpu_decode_fused(e));
    if (split) CHECKF(chunks > 7 * m->hp.n_layer, "%s: weights not split (%d chunks)", what, chunks);
    CHECK(sl_gpu_n_past(e) == prompt + 3);
    /* all logits, within n_out */
    CHECK(sl_gpu_eval_begin(e, toks, n_out + 1, true, &err) != 0 && strstr(err.msg, "at most"));
    CHECK(sl_gpu_eval_begin(e, toks, n_out, true, &err) == 0);
    CHECK(sl_gpu_pending_floats(e) == n_out * (int64_t)m->hp.n_vocab);
    CHECK(sl_gpu_eval_end(e, logits, &err) == 0);
    /* bad input */
    int32_t bad = m->hp.n_vocab;
    CHECK(sl_gpu_eval_begin(e, &bad, 1, false, &err) != 0 && strstr(err.msg, "out of range"));
    int32_t room = n_ctx - sl_gpu_n_past(e);
    CHECK(sl_gpu_eval_begin(e, toks, room + 1, false, &err) != 0 && strstr(err.msg, "context overflow"));
    CHECK(sl_gpu_eval_end(e, logits, &err) != 0);
    sl_gpu_truncate(e, 0);
    CHECK(sl_gpu_n_past(e) == 0);
    CHECKF(s->n_errors == 0, "%s: %s", what, s->first_error);
    sl_gpu_engine_free(e);
    CHECK(s->n_buffers == 0 && s->buffer_bytes == 0);
    free(logits);
}

static void run_on_demand(sl_model *m, const char *what);

static void test_engine_synth(void) {
    const char *cases[][2] = {{"tiny", "Q4_K_M"}, {"tiny-qwen2", "F16"}, {"tiny-qwen3", "Q8_0"}, {"tiny", "IQ4_NL"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        void *buf = NULL;
        size_t size = 0;
        sl_model *m = synth_model(cases[i][0], cases[i][1], &buf, &size);
        CHECK(m != NULL);
        if (m) {
            char what[64];
            snprintf(what, sizeof what, "%s %s", cases[i][0], cases[i][1]);
            run_engine(m, what, false);
            run_engine(m, what, true);
            run_on_demand(m, what);
            sl_model_free(m);
        }
        free(buf);
    }
}

/* On demand: a budget below the full plan keeps the leading layers resident
 * and streams the others through shared buffers; the engine asks for each
 * streamed layer in order, every batch, and its dispatches equal the
 * resident engine's. */
static void run_on_demand(sl_model *m, const char *what) {
    wg_native_reset();
    sl_error err;
    const int32_t L = m->hp.n_layer;
    sl_gpu_params full_params = {.n_ctx = 64, .n_batch = 8, .n_out = 4};
    sl_gpu_caps caps = sl_gpu_default_caps();
    sl_gpu_plan *full = sl_gpu_plan_build(m->gguf, &m->hp, &full_params, &caps, &err);
    CHECKF(full != NULL, "%s: %s", what, err.msg);
    if (!full) return;
    CHECK(full->n_resident == L && full->stream_bytes == 0);
    uint64_t layer_bytes = 0; /* the weights of the last layer */
    for (int t = 0; t < full->n_tensors; t++)
        if (!full->tensors[t].is_vector && full->tensors[t].layer == L - 1) layer_bytes += full->tensors[t].nbytes;
    /* not enough without streaming: refused, unless on demand */
    sl_gpu_params p = full_params;
    p.budget = full->total - layer_bytes / 2;
    CHECK(sl_gpu_plan_build(m->gguf, &m->hp, &p, &caps, &err) == NULL && strstr(err.msg, "budget"));
    p.on_demand = true;
    sl_gpu_plan *od = sl_gpu_plan_build(m->gguf, &m->hp, &p, &caps, &err);
    CHECKF(od != NULL, "%s: %s", what, err.msg);
    if (od) {
        check_plan(od, what);
        CHECKF(od->total <= p.budget && od->n_resident < L && od->stream_bytes > 0, "%s: %d of %d resident", what,
               od->n_resident, L);
        char sum[512];
        CHECK(strstr(sl_gpu_plan_summary(od, sum, sizeof sum), "on demand") != NULL);
        sl_gpu_plan_free(od);
    }
    /* the smallest budget that streams everything; one byte less is refused */
    p.budget = 1;
    CHECK(sl_gpu_plan_build(m->gguf, &m->hp, &p, &caps, &err) == NULL && strstr(err.msg, "one at a time"));
    sl_gpu_plan_free(full);

    /* the engine with half the layers' weights: dispatches equal, layers asked in order */
    p.budget = 0;
    sl_gpu_engine *ref = sl_gpu_engine_new(m, &p, &err);
    CHECK(ref && sl_gpu_upload_model(ref, &err) == 0);
    int32_t toks[24];
    for (int i = 0; i < 24; i++) toks[i] = (i * 5 + 2) % m->hp.n_vocab;
    float *logits = malloc((size_t)m->hp.n_vocab * sizeof(float));
    int ref_prefill = -1, ref_decode = -1;
    if (ref && logits && sl_gpu_eval_begin(ref, toks, 8, false, &err) == 0 && sl_gpu_eval_end(ref, logits, &err) == 0) {
        ref_prefill = sl_gpu_last_dispatches(ref);
        if (sl_gpu_eval_begin(ref, toks, 1, false, &err) == 0 && sl_gpu_eval_end(ref, logits, &err) == 0)
            ref_decode = sl_gpu_last_dispatches(ref);
    }
    const uint64_t ref_total = ref ? sl_gpu_engine_plan(ref)->total : 0;
    sl_gpu_engine_free(ref);
    wg_native_reset();
    p.budget = ref_total - layer_bytes / 2; /* two layers share the stream buffers at least */
    sl_gpu_engine *e = sl_gpu_engine_new(m, &p, &err);
    CHECKF(e != NULL, "%s: %s", what, err.msg);
    if (!e || !logits) {
        sl_gpu_engine_free(e);
        free(logits);
        return;
    }
    const sl_gpu_plan *pl = sl_gpu_engine_plan(e);
    const wg_native_stats *s = wg_native_get_stats();
    const int32_t R = pl->n_resident;
    CHECKF(R < L && pl->total <= p.budget, "%s: %d of %d resident", what, R, L);
    CHECK(s->buffer_bytes == pl->total);
    CHECK(sl_gpu_upload_model(e, &err) == 0); /* skips the streamed matrices */
    CHECK(sl_gpu_eval_wants_layer(e) == -1);
    /* a streamed matrix is not taken before its layer is wanted */
    char name[64];
    snprintf(name, sizeof name, "blk.%d.ffn_up.weight", L - 1);
    CHECK(sl_gpu_upload_tensor(e, name, 0, toks, 4, &err) == 1);
    CHECK(sl_gpu_eval_continue(e, &err) != 0);

    /* 12 tokens in batches of 8: every streamed layer twice, in order */
    CHECK(sl_gpu_eval_begin(e, toks, 12, false, &err) == 0);
    int asked = 0, dispatches = 0;
    bool in_order = true, refused_missing = false;
    for (int32_t want; (want = sl_gpu_eval_wants_layer(e)) >= 0;) {
        in_order &= want == R + asked % (L - R);
        if (asked == 0) {
            CHECK(sl_gpu_eval_begin(e, toks, 1, false, &err) != 0 && strstr(err.msg, "in progress"));
            refused_missing = sl_gpu_eval_continue(e, &err) != 0 && strstr(err.msg, "not uploaded");
        }
        uint64_t before = s->bytes_written;
        if (sl_gpu_upload_layer(e, &err) || sl_gpu_eval_continue(e, &err)) break;
        CHECK(s->bytes_written - before >= layer_bytes / 2);
        asked++;
    }
    CHECKF(in_order && asked == 2 * (L - R), "%s: %d layers asked (%d streamed)", what, asked, L - R);
    CHECK(refused_missing);
    CHECK(sl_gpu_pending_floats(e) == m->hp.n_vocab && sl_gpu_eval_end(e, logits, &err) == 0);
    CHECK(sl_gpu_n_past(e) == 12);
    /* dispatches of a prefill batch and of a decode step, summed over segments */
    sl_gpu_truncate(e, 0);
    CHECK(sl_gpu_eval_begin(e, toks, 8, false, &err) == 0);
    while (sl_gpu_eval_wants_layer(e) >= 0 && sl_gpu_upload_layer(e, &err) == 0 && sl_gpu_eval_continue(e, &err) == 0) {}
    dispatches = sl_gpu_last_dispatches(e);
    CHECK(sl_gpu_eval_end(e, logits, &err) == 0);
    CHECKF(dispatches == ref_prefill, "%s: %d prefill dispatches on demand, %d resident", what, dispatches, ref_prefill);
    CHECK(sl_gpu_eval_begin(e, toks, 1, false, &err) == 0);
    while (sl_gpu_eval_wants_layer(e) >= 0 && sl_gpu_upload_layer(e, &err) == 0 && sl_gpu_eval_continue(e, &err) == 0) {}
    CHECKF(sl_gpu_last_dispatches(e) == ref_decode, "%s: %d decode dispatches on demand, %d resident", what,
           sl_gpu_last_dispatches(e), ref_decode);
    CHECK(sl_gpu_eval_end(e, logits, &err) == 0);
    /* cancelled midway: the context keeps what it had, the next evaluation runs */
    CHECK(sl_gpu_eval_begin(e, toks, 1, false, &err) == 0 && sl_gpu_eval_wants_layer(e) == R);
    sl_gpu_eval_cancel(e);
    CHECK(sl_gpu_n_past(e) == 9 && sl_gpu_eval_wants_layer(e) == -1);
    CHECK(sl_gpu_eval_begin(e, toks, 1, false, &err) == 0);
    while (sl_gpu_eval_wants_layer(e) >= 0 && sl_gpu_upload_layer(e, &err) == 0 && sl_gpu_eval_continue(e, &err) == 0) {}
    CHECK(sl_gpu_eval_end(e, logits, &err) == 0 && sl_gpu_n_past(e) == 10);
    CHECKF(s->n_errors == 0, "%s: %s", what, s->first_error);
    sl_gpu_engine_free(e);
    free(logits);
}

/* Tuning the decode mat-vecs in place (sl_gpu_set_matvec_tuning, for
 * web/engine/gpu-tune.mjs): new kernels with the new shapes, the context and
 * the dispatch count kept; a bad tuning refused with the engine still
 * usable; not while a greedy step is in flight. */
static void test_matvec_retune(void) {
    void *buf = NULL;
    size_t size = 0;
    sl_model *m = synth_model("tiny", "Q4_0", &buf, &size);
    CHECK(m != NULL);
    if (!m) return;
    wg_native_reset();
    sl_error err;
    sl_gpu_params params = {.n_ctx = 64, .n_batch = 8, .n_out = 1, .int8 = true};
    sl_gpu_engine *e = sl_gpu_engine_new(m, &params, &err);
    CHECKF(e != NULL, "%s", err.msg);
    float *logits = malloc((size_t)m->hp.n_vocab * sizeof(float));
    if (!e || !logits || sl_gpu_upload_model(e, &err)) {
        CHECK(0);
        sl_gpu_engine_free(e);
        free(logits);
        sl_model_free(m);
        free(buf);
        return;
    }
    const wg_native_stats *s = wg_native_get_stats();
    int32_t toks[4] = {1, 2, 3, 4};
    CHECK(sl_gpu_eval_begin(e, toks, 4, false, &err) == 0 && sl_gpu_eval_end(e, logits, &err) == 0);
    CHECK(sl_gpu_eval_begin(e, toks, 1, false, &err) == 0 && sl_gpu_eval_end(e, logits, &err) == 0);
    const int decode = sl_gpu_last_dispatches(e);
    const int pipes = s->n_pipelines;
    const double hash = sl_gpu_kernels_hash(e);
    CHECK(sl_gpu_set_matvec_tuning(e, 5, 0, 0, &err) != 0 && strstr(err.msg, "at most 4"));
    CHECK(sl_gpu_set_matvec_tuning(e, 4, 1, 1, &err) == 0);
    CHECKF(s->n_pipelines > pipes && sl_gpu_kernels_hash(e) != hash, "%d -> %d pipelines", pipes, s->n_pipelines);
    bool shaped = false; /* a new mat-vec with 4 rows per invocation */
    for (int32_t h = 1; h < 100000 && !shaped; h++) {
        const char *src = wg_native_pipeline_source(h);
        shaped = src && strstr(src, "kernel: matvec") && strstr(src, "const R: u32 = 4u;");
    }
    CHECK(shaped);
    CHECK(sl_gpu_n_past(e) == 5);
    CHECK(sl_gpu_eval_begin(e, toks, 1, false, &err) == 0 && sl_gpu_eval_end(e, logits, &err) == 0);
    CHECKF(sl_gpu_last_dispatches(e) == decode && sl_gpu_n_past(e) == 6, "%d dispatches, %d before",
           sl_gpu_last_dispatches(e), decode);
    CHECK(sl_gpu_greedy_begin(e, 1, 0, &err) == 0);
    CHECK(sl_gpu_set_matvec_tuning(e, 0, 0, 0, &err) != 0 && strstr(err.msg, "in flight"));
    CHECK(sl_gpu_set_matvec_tuning(e, 0, 0, 0, &err) != 0);
    CHECKF(s->n_errors == 0, "%s", s->first_error);
    sl_gpu_engine_free(e);
    free(logits);
    sl_model_free(m);
    free(buf);
}

/* A header-only model (no weight bytes in memory): every tensor streamed in
 * small pieces as the browser does, the rope factors completing the model. */
static void test_header_only_stream(void) {
    void *buf = NULL;
    size_t size = 0;
    sl_model *full = synth_model("tiny", "Q4_K_M", &buf, &size); /* shape "tiny" has rope_freqs.weight */
    CHECK(full != NULL);
    if (!full) return;
    sl_error err;
    const uint64_t data_off = sl_gguf_data_offset(full->gguf);
    sl_gguf *h = sl_gguf_open_memory(buf, (size_t)data_off, SL_GGUF_HEADER_ONLY, &err);
    sl_model *m = h ? sl_model_from_gguf(h, "tiny", &err) : NULL;
    CHECKF(m && m->header_only && m->rope_freqs_pending, "header-only model: %s", m ? "not pending" : err.msg);
    wg_native_reset();
    sl_gpu_params params = {.n_ctx = 64, .n_batch = 16};
    sl_gpu_engine *e = m ? sl_gpu_engine_new(m, &params, &err) : NULL;
    CHECKF(e != NULL, "%s", err.msg);
    if (e) {
        CHECK(sl_gpu_upload_model(e, &err) != 0 && strstr(err.msg, "no data"));
        int32_t toks[4] = {1, 2, 3, 4};
        for (int64_t i = 0; i < sl_gguf_n_tensors(h); i++) {
            const sl_gguf_tensor *t = sl_gguf_tensor_at(h, i);
            const unsigned char *bytes = (const unsigned char *)buf + data_off + t->offset;
            if (!strcmp(t->name, "rope_freqs.weight")) {
                CHECK(sl_gpu_check_uploaded(e, &err) != 0);
                CHECK(sl_gpu_upload_tensor(e, t->name, 0, bytes, 4, &err) < 0 && strstr(err.msg, "whole"));
            }
            uint64_t piece = t->nbytes <= 4096 ? t->nbytes : 4096;
            for (uint64_t done = 0; done < t->nbytes; done += piece) {
                uint64_t len = t->nbytes - done < piece ? t->nbytes - done : piece;
                CHECKF(sl_gpu_upload_tensor(e, t->name, done, bytes + done, len, &err) >= 0, "%s", err.msg);
            }
        }
        CHECKF(sl_gpu_check_uploaded(e, &err) == 0, "%s", err.msg);
        CHECK(!m->rope_freqs_pending);
        bool same = true;
        for (int i = 0; i < m->hp.n_rot / 2; i++) same = same && m->rope_inv_freq[i] == full->rope_inv_freq[i];
        CHECKF(same, "rope frequencies from the streamed factors differ");
        float *logits = malloc((size_t)m->hp.n_vocab * sizeof(float));
        CHECK(logits && sl_gpu_eval_begin(e, toks, 4, false, &err) == 0 && sl_gpu_eval_end(e, logits, &err) == 0);
        free(logits);
        CHECKF(wg_native_get_stats()->n_errors == 0, "%s", wg_native_get_stats()->first_error);
        sl_gpu_engine_free(e);
    }
    sl_model_free(m);
    sl_model_free(full);
    free(buf);
}

/* The f16 KV cache: asked for on a device with shader-f16, the plan sizes the
 * K/V caches at 2 bytes per element (everything else unchanged) and says so;
 * asked for without shader-f16, they stay f32. The engine's cache kernels
 * (K/V store, both attentions) then enable f16, and no other kernel does. */
static void test_kv_f16(void) {
    void *buf = NULL;
    size_t size = 0;
    sl_model *m = synth_model("tiny", "Q4_0", &buf, &size);
    CHECK(m != NULL);
    if (!m) {
        free(buf);
        return;
    }
    sl_error err;
    sl_gpu_params f32p = {.n_ctx = 257, .n_batch = 16}, f16p = f32p; /* odd n_ctx: padded cache rows */
    f16p.kv_f16 = true;
    sl_gpu_caps c = test_caps(128u << 20), no_f16 = c;
    c.has_f16 = true;
    sl_gpu_plan *p32 = sl_gpu_plan_build(m->gguf, &m->hp, &f32p, &c, &err),
                *p16 = sl_gpu_plan_build(m->gguf, &m->hp, &f16p, &c, &err),
                *pno = sl_gpu_plan_build(m->gguf, &m->hp, &f16p, &no_f16, &err);
    CHECK(p32 && p16 && pno);
    if (p32 && p16 && pno) {
        check_plan(p16, "kv f16");
        CHECK(!p32->kv_f16 && p16->kv_f16 && !pno->kv_f16);
        const uint64_t elems = 257ull * (uint64_t)m->hp.n_head_kv * (uint64_t)m->hp.head_dim;
        const uint64_t kv32 = 2ull * (uint64_t)m->hp.n_layer * elems * 4,
                       kv16 = 2ull * (uint64_t)m->hp.n_layer * ((elems * 2 + 3) & ~3ull);
        CHECKF(p32->by_kind[SL_GPU_BUF_KV] == kv32 && p16->by_kind[SL_GPU_BUF_KV] == kv16,
               "kv bytes: f32 %llu (want %llu), f16 %llu (want %llu)",
               (unsigned long long)p32->by_kind[SL_GPU_BUF_KV], (unsigned long long)kv32,
               (unsigned long long)p16->by_kind[SL_GPU_BUF_KV], (unsigned long long)kv16);
        CHECK(p16->total == p32->total - kv32 + kv16 && pno->total == p32->total);
        char sum[512];
        CHECK(strstr(sl_gpu_plan_summary(p16, sum, sizeof sum), " f16 for 257 tokens") != NULL);
        CHECK(strstr(sl_gpu_plan_summary(pno, sum, sizeof sum), " f32 for 257 tokens") != NULL);
    }
    sl_gpu_plan_free(p32);
    sl_gpu_plan_free(p16);
    sl_gpu_plan_free(pno);

    /* the engine on a recording device with shader-f16 */
    wg_native_reset();
    wg_native_set_cap(WG_CAP_HAS_F16, 1);
    sl_gpu_params ep = {.n_ctx = 33, .n_batch = 8, .n_out = 4, .kv_f16 = true};
    sl_gpu_engine *e = sl_gpu_engine_new(m, &ep, &err);
    CHECKF(e != NULL, "%s", err.msg);
    const wg_native_stats *st = wg_native_get_stats();
    if (e) {
        const sl_gpu_plan *p = sl_gpu_engine_plan(e);
        CHECK(p->kv_f16 && st->buffer_bytes == p->total);
        int32_t toks[12];
        for (int i = 0; i < 12; i++) toks[i] = (i * 5 + 2) % m->hp.n_vocab;
        float *logits = malloc((size_t)m->hp.n_vocab * sizeof(float));
        CHECK(logits && sl_gpu_upload_model(e, &err) == 0);
        CHECK(logits && sl_gpu_eval_begin(e, toks, 10, false, &err) == 0 && sl_gpu_eval_end(e, logits, &err) == 0);
        CHECK(logits && sl_gpu_eval_begin(e, toks + 10, 1, false, &err) == 0 && sl_gpu_eval_end(e, logits, &err) == 0);
        free(logits);
        CHECKF(st->n_errors == 0, "%s", st->first_error);
        /* pipelines: handles are never reused, so scan them all */
        int n_cache = 0, n_f16 = 0, kinds = 0;
        static const char *const users[] = {"kernel: rope_kv", "kernel: qkv", "kernel: attn_decode",
                                            "kernel: attn_prefill"};
        for (int32_t h = 1; h < (1 << 16); h++) {
            const char *src = wg_native_pipeline_source(h);
            if (!src) continue;
            bool cache = strstr(src, "KC: array<") != NULL, f16 = strstr(src, "enable f16;") != NULL;
            n_cache += cache;
            n_f16 += f16;
            CHECK(cache == f16);
            CHECK(!cache || ((strstr(src, "KC: array<f16>") || strstr(src, "KC: array<vec4<f16>>")) &&
                             (strstr(src, "VC: array<f16>") || strstr(src, "VC: array<vec4<f16>>"))));
            for (int k = 0; k < 4; k++)
                if (strstr(src, users[k])) {
                    kinds |= 1 << k;
                    CHECK(cache);
                }
        }
        /* every kernel that stores or reads K/V does so in f16 */
        CHECKF(kinds == 15 && n_cache == n_f16 && n_cache >= 4,
               "%d pipelines use the cache, %d enable f16, kinds %x (want store, fused store, decode, prefill)",
               n_cache, n_f16, kinds);
        sl_gpu_engine_free(e);
    }
    wg_native_reset();
    sl_model_free(m);
    free(buf);
}

/* Every kernel for every format generates, and the kernel test plumbing
 * reports a failure when the GPU returns wrong values (the native bridge
 * reads back zeros). */
static void test_kernels(void) {
    const sl_type types[] = {SL_TYPE_F32, SL_TYPE_F16, SL_TYPE_BF16, SL_TYPE_Q4_0, SL_TYPE_Q4_1, SL_TYPE_Q5_0,
                             SL_TYPE_Q5_1, SL_TYPE_Q8_0, SL_TYPE_Q2_K, SL_TYPE_Q3_K, SL_TYPE_Q4_K, SL_TYPE_Q5_K,
                             SL_TYPE_Q6_K, SL_TYPE_IQ4_NL};
    sl_error err;
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        CHECK(sl_gpu_type_supported(types[i]));
        for (int k = SL_GK_MATVEC; k <= SL_GK_EMBED; k++) {
            sl_gpu_kernel_desc d = {.kernel = (sl_gpu_kernel)k, .type = types[i], .cols = 512, .rows = 7,
                                    .out_stride = 7, .epilogue = SL_EPI_SILU_MUL};
            char *src = sl_gpu_kernel_wgsl(&d, &err);
            CHECKF(src && strstr(src, "fn w8(") && strstr(src, "fn main("), "kernel %d type %d: %s", k, (int)types[i],
                   src ? "incomplete" : err.msg);
            free(src);
        }
    }
    CHECK(!sl_gpu_type_supported(SL_TYPE_Q8_K));
    /* the GPU layouts' readers, and int8 tokens for matrices in a layout; by
     * default (SL_GPU_LAYOUTS_FAST) Q4_K stays as stored (the engine takes
     * SL_GPU_LAYOUTS_ALL when the int8 token is on) */
    for (int i = 0; i < 3; i++) {
        const sl_type ty = i == 0 ? SL_TYPE_Q4_0 : i == 1 ? SL_TYPE_Q8_0 : SL_TYPE_Q4_K;
        sl_gpu_kernel_desc d = {.kernel = SL_GK_MATVEC, .type = ty, .cols = 512, .rows = 7, .out_stride = 7,
                                .int8_dot = true};
        char *src = sl_gpu_kernel_wgsl(&d, &err);
        CHECK(src && (strstr(src, "array<vec4<u32>>") != NULL) == (i < 2) && (strstr(src, "dot4I8Packed") != NULL) == (i < 2));
        free(src);
        d.layouts = SL_GPU_LAYOUTS_ALL;
        src = sl_gpu_kernel_wgsl(&d, &err);
        CHECK(src && strstr(src, "array<vec4<u32>>") && strstr(src, "dot4I8Packed"));
        free(src);
        d.layouts = SL_GPU_LAYOUTS_NONE;
        src = sl_gpu_kernel_wgsl(&d, &err);
        CHECK(src && !strstr(src, "array<vec4<u32>>") && !strstr(src, "dot4I8Packed"));
        free(src);
    }
    /* a decode mat-vec (Llama-3.1-8B's ffn_down: 32 invocations per row) sums
     * its rows by subgroup shuffles only where 32 invocations fit the smallest
     * subgroup, quantizes the int8 token 4 lanes per block where subgroups
     * have 4 lanes, and a normed one applies the RMS scale to its dots */
    for (uint32_t sg = 0; sg <= 32; sg = sg ? 2 * sg : 4) {
        for (int norm = 0; norm < 2; norm++) {
            sl_gpu_kernel_desc d = {.kernel = SL_GK_MATVEC, .type = SL_TYPE_Q4_0, .cols = 14336, .rows = 4096,
                                    .out_stride = 4096, .epilogue = SL_EPI_ADD, .int8_dot = true, .norm = norm,
                                    .layouts = SL_GPU_LAYOUTS_ALL, .max_wg_storage = 49152, .subgroups = sg > 0,
                                    .subgroup_min = sg, .eps = 1e-5f};
            char *src = sl_gpu_kernel_wgsl(&d, &err);
            CHECKF(src && strstr(src, "const T: u32 = 32u;"), "sg %u: %s", sg, src ? "T" : err.msg);
            if (src) {
                CHECKF((strstr(src, "subgroupShuffleXor(res_s, 16u)") != NULL) == (sg >= 32) &&
                           (strstr(src, "R4[ri] = ") != NULL) == (sg < 32),
                       "sg %u: row sums", sg);
                CHECKF((strstr(src, "subgroupShuffleXor(amax, 2u)") != NULL) == (sg >= 4), "sg %u: quantization", sg);
                CHECKF((strstr(src, "return res * g_scale;") != NULL) == (norm == 1), "sg %u norm %d", sg, norm);
            }
            free(src);
        }
    }
    sl_gpu_kernel_desc bad = {.kernel = SL_GK_MATVEC, .type = SL_TYPE_Q4_0, .cols = 33, .rows = 1};
    CHECK(sl_gpu_kernel_wgsl(&bad, &err) == NULL && strstr(err.msg, "shape"));

    /* the int8 mat-mul: every layout, its tile tuning, its grid */
    const sl_type lay_types[] = {SL_TYPE_Q4_0, SL_TYPE_Q8_0, SL_TYPE_Q4_K, SL_TYPE_Q6_K};
    for (int i = 0; i < 4; i++) {
        sl_gpu_kernel_desc d = {.kernel = SL_GK_MATMUL, .type = lay_types[i], .cols = 512, .rows = 300,
                                .out_stride = 300, .epilogue = SL_EPI_ADD, .int8_dot = true,
                                .layouts = SL_GPU_LAYOUTS_ALL};
        char *src = sl_gpu_kernel_wgsl(&d, &err);
        CHECKF(src && strstr(src, "dot4I8Packed") && strstr(src, "var<workgroup> XQ"), "int8 mat-mul type %d", i);
        free(src);
        uint32_t g[3];
        sl_gpu_kernel_grid(&d, 130, 0, 65535, g);
        CHECKF(g[0] == 5 && g[1] == 3, "int8 mat-mul grid %u x %u", g[0], g[1]); /* 64 rows x 64 tokens */
        d.mm_tokens = 32, d.mm_rows = 64, d.mm_inv_tokens = 2;
        sl_gpu_kernel_grid(&d, 130, 0, 65535, g);
        CHECK(g[0] == 5 && g[1] == 5);
        d.int8_dot = false; /* the f32 mat-mul: 64 rows x 32 tokens */
        src = sl_gpu_kernel_wgsl(&d, &err);
        CHECK(src && !strstr(src, "dot4I8Packed"));
        free(src);
        sl_gpu_kernel_grid(&d, 130, 0, 65535, g);
        CHECK(g[0] == 5 && g[1] == 5);
    }
    CHECK(sl_gpu_matmul_tuning_ok(0, 0, 0, 0) && sl_gpu_matmul_tuning_ok(64, 128, 4, 0));
    CHECK(sl_gpu_matmul_tuning_ok(128, 128, 8, 0) && sl_gpu_matmul_tuning_ok(32, 64, 2, 0));
    CHECK(!sl_gpu_matmul_tuning_ok(48, 128, 4, 0) && !sl_gpu_matmul_tuning_ok(64, 100, 4, 0));
    CHECK(!sl_gpu_matmul_tuning_ok(64, 128, 3, 0) && !sl_gpu_matmul_tuning_ok(256, 256, 1, 0)); /* 256 results */
    CHECK(!sl_gpu_matmul_tuning_ok(64, 256, 4, 0) && sl_gpu_matmul_tuning_ok(64, 256, 4, 48u << 10)); /* memory */

    wg_native_reset();
    sl_gpu_ktest_spec s = {.kernel = SL_GK_MATMUL, .type = SL_TYPE_Q4_K, .rows = 20, .cols = 256, .n_tokens = 3,
                           .chunk_rows = 6, .seed = 1};
    sl_gpu_ktest *t = sl_gpu_ktest_begin(&s, &err);
    CHECKF(t != NULL, "%s", err.msg);
    sl_gpu_ktest_result r;
    CHECK(sl_gpu_ktest_end(t, &r, &err) == 0);
    CHECKF(fabs(r.nrmse - 1.0) < 1e-9 && r.n == 60, "zeros from the GPU give nrmse %g over %lld values", r.nrmse,
           (long long)r.n);
    CHECKF(wg_native_get_stats()->n_errors == 0, "%s", wg_native_get_stats()->first_error);
    CHECK(wg_native_get_stats()->n_buffers == 0);
}


/* ---- GPU weight layouts (gpu/layout.h) ------------------------------------ */

/* A C model of the kernels' reading of a permuted chunk of nb blocks: element
 * e of block b, written from the layout's description in layout.h, not from
 * layout.c. */
static float layout_model_elem(sl_type type, const unsigned char *buf, uint64_t nb, uint64_t b, int e) {
    uint16_t h16;
    if (type == SL_TYPE_Q4_0) {
        memcpy(&h16, buf + nb * 16 + 2 * b, 2);
        int j = e % 32, q = (buf[b * 16 + j % 16] >> (j / 16 * 4)) & 15;
        return sl_f16_to_f32(h16) * (float)(q - 8);
    }
    if (type == SL_TYPE_Q8_0) {
        memcpy(&h16, buf + nb * 32 + 2 * b, 2);
        int j = e % 32;
        int8_t q = (int8_t)buf[(uint64_t)(j / 16) * nb * 16 + b * 16 + j % 16];
        return sl_f16_to_f32(h16) * (float)q;
    }
    const uint64_t n_units = 2 * nb, u = 2 * b + (uint64_t)(e / 128);
    const int jj = e % 128;
#define UNIT_BYTE(k) buf[(uint64_t)((k) / 16) * n_units * 16 + u * 16 + (k) % 16]
    if (type == SL_TYPE_Q4_K) {
        const unsigned char *s = buf + nb * 128 + 16 * b, *sc = s + 4;
        uint16_t d, dm;
        memcpy(&d, s, 2);
        memcpy(&dm, s + 2, 2);
        int g = jj / 64, l = jj % 32, hi = (jj / 32) % 2, q = (UNIT_BYTE(32 * g + l) >> (4 * hi)) & 15;
        int sb = e / 32, scv, mv;
        if (sb < 4) {
            scv = sc[sb] & 63;
            mv = sc[sb + 4] & 63;
        } else {
            scv = (sc[sb + 4] & 15) | ((sc[sb - 4] >> 6) << 4);
            mv = (sc[sb + 4] >> 4) | ((sc[sb] >> 6) << 4);
        }
        return sl_f16_to_f32(d) * (float)scv * (float)q - sl_f16_to_f32(dm) * (float)mv;
    }
    /* Q6_K */
    memcpy(&h16, buf + nb * 208 + 2 * b, 2);
    int k = jj / 32, l = jj % 32;
    int ql = (UNIT_BYTE(l + 32 * (k & 1)) >> (4 * (k >> 1))) & 15, qh = (UNIT_BYTE(64 + l) >> (2 * k)) & 3;
    int8_t sc = (int8_t)buf[nb * 192 + 16 * b + (uint64_t)(8 * (e / 128) + l / 16 + 2 * k)];
#undef UNIT_BYTE
    return sl_f16_to_f32(h16) * (float)sc * (float)((ql | (qh << 4)) - 32);
}

typedef struct ltest_sink_ctx {
    unsigned char **bufs; /* per chunk */
    uint64_t *sizes, *ends; /* buffer sizes, chunk bytes */
    int bad;              /* writes outside a chunk's buffer or not 4-aligned */
} ltest_sink_ctx;

static void layout_test_sink(void *ctx, int chunk, uint64_t dst, const unsigned char *bytes, uint64_t len) {
    ltest_sink_ctx *s = ctx;
    if (dst % 4 || dst + len > s->sizes[chunk] || (len % 4 && dst + len != s->ends[chunk])) {
        s->bad++;
        return;
    }
    memcpy(s->bufs[chunk] + dst, bytes, len);
}

/* Uploads a matrix in pieces of `piece` bytes (4-aligned), in order, in
 * reverse or shuffled, and checks every element read through the model. */
static void layout_case(sl_type type, int64_t rows, int64_t cols, int64_t chunk_rows, uint64_t piece, int order) {
    const sl_gpu_layout *l = sl_gpu_layout_get(type);
    CHECK(l != NULL);
    if (!l) return;
    const size_t rb = sl_row_size(type, cols);
    const uint64_t nbytes = rb * (uint64_t)rows;
    unsigned char *raw = malloc(nbytes);
    float *row = malloc((size_t)cols * sizeof(float)), *want = malloc((size_t)cols * sizeof(float));
    sl_gpu_chunk chunks[64];
    unsigned char *bufs[64] = {0};
    uint64_t sizes[64], ends[64];
    int n_chunks = 0;
    uint64_t seed = (uint64_t)type * 977 + (uint64_t)rows;
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t c = 0; c < cols; c++) row[c] = (float)((double)(rng_next(&seed) >> 11) * 0x1p-52 * 2.0 - 1.0);
        sl_quantize_row(type, row, raw + (size_t)r * rb, cols);
    }
    for (int64_t r0 = 0; r0 < rows && n_chunks < 64; r0 += chunk_rows) {
        int64_t nr = rows - r0 < chunk_rows ? rows - r0 : chunk_rows;
        chunks[n_chunks] = (sl_gpu_chunk){.buffer = n_chunks, .row0 = r0, .rows = nr, .offset = (uint64_t)r0 * rb,
                                          .bytes = (uint64_t)nr * rb};
        sizes[n_chunks] = (chunks[n_chunks].bytes + 15) / 16 * 16;
        ends[n_chunks] = chunks[n_chunks].bytes;
        bufs[n_chunks] = calloc(sizes[n_chunks], 1);
        n_chunks++;
    }
    /* the pieces, then their order */
    uint64_t n_pieces = (nbytes + piece - 1) / piece, *ord = malloc(n_pieces * sizeof *ord);
    for (uint64_t i = 0; i < n_pieces; i++) ord[i] = order == 1 ? n_pieces - 1 - i : i;
    if (order == 2)
        for (uint64_t i = n_pieces; i > 1; i--) {
            uint64_t j = rng_next(&seed) % i, t = ord[i - 1];
            ord[i - 1] = ord[j];
            ord[j] = t;
        }
    ltest_sink_ctx sc = {bufs, sizes, ends, 0};
    sl_gpu_relayout st = {0};
    unsigned char scratch[2048];
    sl_error err;
    int rc = 0;
    for (uint64_t i = 0; i < n_pieces && rc == 0; i++) {
        uint64_t off = ord[i] * piece, len = nbytes - off < piece ? nbytes - off : piece;
        rc = sl_gpu_relayout_put(&st, l, chunks, n_chunks, off, raw + off, len, scratch, sizeof scratch,
                                 layout_test_sink, &sc, &err);
    }
    CHECKF(rc == 0, "%s", err.msg);
    CHECKF(sc.bad == 0, "%s: %d writes outside or unaligned", sl_type_name(type), sc.bad);
    CHECKF(sl_gpu_relayout_pending(&st) == 0, "%s: %d groups still waiting", sl_type_name(type),
           sl_gpu_relayout_pending(&st));
    int wrong = 0;
    for (int c = 0; c < n_chunks; c++) {
        const uint64_t nb = chunks[c].bytes / l->block_bytes, bpr = (uint64_t)cols / l->block_elems;
        for (int64_t r = 0; r < chunks[c].rows; r++) {
            sl_dequantize_row(type, raw + chunks[c].offset + (uint64_t)r * rb, want, cols);
            for (int64_t e = 0; e < cols; e++) {
                uint64_t b = (uint64_t)r * bpr + (uint64_t)e / l->block_elems;
                float got = layout_model_elem(type, bufs[c], nb, b, (int)(e % l->block_elems));
                if (!(fabsf(got - want[e]) <= 1e-6f * (1.0f + fabsf(want[e])))) wrong++;
            }
        }
        /* the same bytes as a whole-chunk permutation */
        unsigned char *whole = calloc(sizes[c], 1);
        unsigned char *keep = bufs[c];
        bufs[c] = whole;
        sl_gpu_layout_permute(l, nb, 0, nb, raw + chunks[c].offset, scratch, sizeof scratch, c, layout_test_sink, &sc);
        bufs[c] = keep;
        CHECKF(memcmp(whole, keep, sizes[c]) == 0, "%s chunk %d: pieces and whole permutation differ",
               sl_type_name(type), c);
        free(whole);
    }
    CHECKF(wrong == 0, "%s %lldx%lld pieces of %llu order %d: %d elements differ", sl_type_name(type), (long long)rows,
           (long long)cols, (unsigned long long)piece, order, wrong);
    sl_gpu_relayout_free(&st);
    for (int c = 0; c < n_chunks; c++) free(bufs[c]);
    free(ord);
    free(raw);
    free(row);
    free(want);
}

static void test_layout(void) {
    CHECK(sl_gpu_layout_get(SL_TYPE_Q4_1) == NULL && sl_gpu_layout_get(SL_TYPE_F32) == NULL);
    /* which layouts each policy uses */
    CHECK(sl_gpu_layout_for(SL_TYPE_Q4_0, SL_GPU_LAYOUTS_FAST) && sl_gpu_layout_for(SL_TYPE_Q8_0, SL_GPU_LAYOUTS_FAST));
    CHECK(!sl_gpu_layout_for(SL_TYPE_Q4_K, SL_GPU_LAYOUTS_FAST) && !sl_gpu_layout_for(SL_TYPE_Q6_K, SL_GPU_LAYOUTS_FAST));
    CHECK(sl_gpu_layout_for(SL_TYPE_Q4_K, SL_GPU_LAYOUTS_ALL) && sl_gpu_layout_for(SL_TYPE_Q6_K, SL_GPU_LAYOUTS_ALL));
    CHECK(!sl_gpu_layout_for(SL_TYPE_Q4_0, SL_GPU_LAYOUTS_NONE) && !sl_gpu_layout_for(SL_TYPE_Q4_1, SL_GPU_LAYOUTS_ALL));
    const sl_type types[] = {SL_TYPE_Q4_0, SL_TYPE_Q8_0, SL_TYPE_Q4_K, SL_TYPE_Q6_K};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        const sl_gpu_layout *l = sl_gpu_layout_get(types[i]);
        /* same total size; every region 16-byte aligned for a chunk of an even count of blocks */
        uint32_t sum = 0;
        for (int r = 0; r < l->n_regions; r++) sum += l->region_bytes[r];
        CHECK(sum == l->block_bytes && (uint64_t)l->block_bytes * l->group % 4 == 0);
        for (int r = 0; r < l->n_regions; r++) CHECK(sl_gpu_layout_region_base(l, 6, r) % 16 == 0);
        const bool k = l->block_elems == 256;
        const int64_t cols = k ? 512 : 96, rows = 13;
        /* chunks of 4 rows (the last one odd), and one chunk */
        for (int64_t cr = 4; cr <= rows; cr += rows - 4) {
            const uint64_t pieces[] = {4, 20, 36, 1028, (1u << 20) + 4};
            for (size_t p = 0; p < sizeof pieces / sizeof pieces[0]; p++)
                for (int order = 0; order < 3; order++) layout_case(types[i], rows, cols, cr, pieces[p], order);
        }
    }
}

static void test_testdata_models(void) {
    char path[1400];
    snprintf(path, sizeof path, "%s/index.tsv", test_data_dir());
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "SKIP test_gpu_plan testdata cases: testdata absent at %s\n", test_data_dir());
        CHECK(!(getenv("CI") && !strcmp(getenv("CI"), "true")));
        return;
    }
    char line[256];
    int n = 0;
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '#') continue;
        char *tab = strchr(line, '\t');
        if (!tab) continue;
        *tab = 0;
        snprintf(path, sizeof path, "%.1024s/%s", test_data_dir(), line);
        sl_error err;
        sl_model *m = sl_model_load(path, &err);
        CHECKF(m != NULL, "%s: %s", path, err.msg);
        if (!m) continue;
        run_engine(m, line, false);
        sl_gpu_params params = {.n_ctx = 512};
        sl_gpu_caps c = test_caps(1u << 20);
        sl_gpu_plan *p = sl_gpu_plan_build(m->gguf, &m->hp, &params, &c, &err);
        CHECKF(p != NULL, "%s: %s", line, err.msg);
        if (p) check_plan(p, line);
        sl_gpu_plan_free(p);
        sl_model_free(m);
        n++;
    }
    fclose(f);
    CHECK(n >= 10);
}

int main(void) {
    RUN(test_plan_synth);
    RUN(test_plan_errors);
    RUN(test_engine_synth);
    RUN(test_matvec_retune);
    RUN(test_header_only_stream);
    RUN(test_kernels);
    RUN(test_layout);
    RUN(test_kv_f16);
    RUN(test_testdata_models);
    wg_native_reset();
    TEST_SUMMARY();
}
