/* cli_run.c - `streamllm run` (generate text) and `streamllm logits` (write
 * the logits of every position of a sequence, for comparison with
 * llama.cpp's reference outputs). */
#include "cli/cli.h"
#include "cpu/forward.h"
#include "tokenizer/chat.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Model + CPU context for a command; n_tokens_hint grows the context when a
 * longer sequence is known up front. */
typedef struct session {
    sl_model *m;
    sl_cpu_ctx *ctx;
} session;

static int session_open(session *s, const cli_opts *o, int32_t n_needed, sl_error *err) {
    memset(s, 0, sizeof *s);
    s->m = cli_open_model(o->model, err);
    if (!s->m) return -1;
    sl_cpu_params p = {.n_ctx = o->n_ctx, .n_batch = o->n_batch, .n_threads = o->n_threads};
    if (p.n_ctx <= 0) {
        int32_t def = s->m->hp.n_ctx_train < 4096 ? s->m->hp.n_ctx_train : 4096;
        p.n_ctx = n_needed > def ? n_needed : def;
    }
    s->ctx = sl_cpu_ctx_new(s->m, &p, err);
    return s->ctx ? 0 : -1;
}

static void session_close(session *s) {
    sl_cpu_ctx_free(s->ctx);
    sl_model_free(s->m);
}

/* Builds the prompt text: the raw prompt, or with --chat the model's chat
 * template applied to (system,) user. */
static int prompt_text(const cli_opts *o, const sl_model *m, char **out, sl_error *err) {
    if (!o->chat) {
        *out = sl_strndup(o->prompt, strlen(o->prompt));
        return *out ? 0 : sl_err(err, "out of memory");
    }
    sl_chat_template t;
    if (o->chat_template) {
        t = sl_chat_from_name(o->chat_template);
        if (t == SL_CHAT_UNKNOWN) return sl_err(err, "unknown chat template '%s'", o->chat_template);
    } else {
        if (!m->chat_template) return sl_err(err, "the model has no tokenizer.chat_template; use --chat-template NAME");
        t = sl_chat_detect(m->chat_template);
        if (t == SL_CHAT_UNKNOWN)
            return sl_err(err, "the model's chat template is not one we know; use --chat-template NAME");
    }
    sl_chat_msg msgs[2];
    size_t n = 0;
    if (o->system) msgs[n++] = (sl_chat_msg){"system", o->system};
    msgs[n++] = (sl_chat_msg){"user", o->prompt};
    return sl_chat_apply(t, msgs, n, true, out, err);
}

int cmd_run(int argc, char **argv) {
    cli_opts o;
    if (cli_parse(argc, argv, 2, "run", &o)) return 2;
    if (!o.model) return cli_fail("run", "no model given (-m MODEL)"), 2;
    if (!o.prompt) return cli_fail("run", "no prompt given (-p PROMPT)"), 2;
    int32_t n_predict = o.n_predict < 0 ? 128 : o.n_predict;

    sl_error err;
    session s;
    char *text = NULL;
    int32_t *ids = NULL;
    float *logits = NULL;
    sl_sampler *smp = NULL;
    char *piece = NULL;
    int rc = 1;
    if (session_open(&s, &o, 0, &err) || prompt_text(&o, s.m, &text, &err)) goto done;
    size_t n_ids = 0;
    if (sl_tokenize(s.m->tok, text, strlen(text), true, true, &ids, &n_ids, &err)) goto done;
    if (n_ids == 0) {
        sl_err(&err, "the prompt has no tokens");
        goto done;
    }
    if ((int64_t)n_ids + n_predict > sl_cpu_n_ctx(s.ctx)) {
        sl_err(&err, "prompt (%zu tokens) + %d to generate exceed the context of %d tokens (use --ctx)", n_ids,
               n_predict, sl_cpu_n_ctx(s.ctx));
        goto done;
    }
    const int32_t V = s.m->hp.n_vocab;
    logits = malloc((size_t)V * sizeof(float));
    smp = sl_sampler_new(&o.sp, V, &err);
    size_t piece_cap = sl_tokenizer_max_piece(s.m->tok) + 16;
    piece = malloc(piece_cap);
    if (!logits || !smp || !piece) {
        if (smp) sl_err(&err, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < n_ids; i++) sl_sampler_accept(smp, ids[i]);

    double t0 = cli_now_seconds();
    if (sl_cpu_eval(s.ctx, ids, (int32_t)n_ids, logits, false, &err)) goto done;
    double t1 = cli_now_seconds();

    sl_detok dt;
    sl_detok_init(&dt, s.m->tok, o.show_special);
    dt.at_start = false; /* the text continues the prompt: keep the first piece's space */
    int32_t n_gen = 0;
    for (; n_gen < n_predict; n_gen++) {
        int32_t id = sl_sampler_sample(smp, logits);
        if (sl_tokenizer_is_eog(s.m->tok, id)) break;
        sl_sampler_accept(smp, id);
        size_t len = sl_detok_push(&dt, id, piece, piece_cap);
        fwrite(piece, 1, len, stdout);
        fflush(stdout);
        if (n_gen + 1 < n_predict && sl_cpu_eval(s.ctx, &id, 1, logits, false, &err)) goto done;
    }
    size_t len = sl_detok_flush(&dt, piece, piece_cap);
    fwrite(piece, 1, len, stdout);
    if (isatty(STDOUT_FILENO)) putchar('\n');
    fflush(stdout);
    double t2 = cli_now_seconds();
    fprintf(stderr, "prompt: %zu tokens, %.2f tok/s; generation: %d tokens, %.2f tok/s (%d threads)\n", n_ids,
            n_ids / (t1 - t0), n_gen, n_gen > 1 ? (n_gen - 1) / (t2 - t1) : 0.0,
            o.n_threads > 0 ? o.n_threads : sl_cpu_count());
    rc = 0;
done:
    if (rc) cli_fail("run", "%s", err.msg);
    free(piece);
    sl_sampler_free(smp);
    free(logits);
    free(ids);
    free(text);
    if (s.m) session_close(&s);
    return rc;
}

/* Parses whitespace-separated token ids. */
static int read_token_file(const char *path, int32_t **out, size_t *n_out, sl_error *err) {
    size_t len;
    char *buf = cli_read_file(path, &len, err);
    if (!buf) return -1;
    size_t cap = 64, n = 0;
    int32_t *ids = malloc(cap * sizeof *ids);
    char *p = buf;
    int rc = -1;
    if (!ids) {
        sl_err(err, "out of memory");
        goto done;
    }
    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
        if (!*p) break;
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < 0 || v > INT32_MAX ||
            (*end && *end != ' ' && *end != '\t' && *end != '\n' && *end != '\r')) {
            sl_err(err, "%s: token %zu is not a non-negative integer", path, n + 1);
            goto done;
        }
        if (n == cap) {
            int32_t *grown = realloc(ids, 2 * cap * sizeof *ids);
            if (!grown) {
                sl_err(err, "out of memory");
                goto done;
            }
            ids = grown;
            cap *= 2;
        }
        ids[n++] = (int32_t)v;
        p = end;
    }
    if (n == 0) {
        sl_err(err, "%s holds no token ids", path);
        goto done;
    }
    *out = ids;
    *n_out = n;
    ids = NULL;
    rc = 0;
done:
    free(ids);
    free(buf);
    return rc;
}

int cmd_logits(int argc, char **argv) {
    cli_opts o;
    if (cli_parse(argc, argv, 2, "logits", &o)) return 2;
    if (!o.model) return cli_fail("logits", "no model given (-m MODEL)"), 2;
    if (!o.prompt == !o.tokens) return cli_fail("logits", "give either -p PROMPT or --tokens FILE"), 2;
    if (!o.out) return cli_fail("logits", "no output file given (-o OUT.f32)"), 2;

    sl_error err;
    int32_t *ids = NULL;
    size_t n = 0;
    float *logits = NULL;
    FILE *f = NULL;
    session s = {0};
    int rc = 1;
    if (o.tokens && read_token_file(o.tokens, &ids, &n, &err)) goto done;
    if (session_open(&s, &o, (int32_t)(n > INT32_MAX ? INT32_MAX : n), &err)) goto done;
    if (o.prompt && sl_tokenize(s.m->tok, o.prompt, strlen(o.prompt), true, true, &ids, &n, &err)) goto done;
    if (n == 0) {
        sl_err(&err, "the prompt has no tokens");
        goto done;
    }
    const size_t V = (size_t)s.m->hp.n_vocab;
    if (n > (size_t)sl_cpu_n_ctx(s.ctx)) {
        sl_err(&err, "%zu tokens exceed the context of %d tokens (use --ctx)", n, sl_cpu_n_ctx(s.ctx));
        goto done;
    }
    logits = malloc(n * V * sizeof(float));
    if (!logits) {
        sl_err(&err, "out of memory for %zu x %zu logits", n, V);
        goto done;
    }
    if (sl_cpu_eval(s.ctx, ids, (int32_t)n, logits, true, &err)) goto done;
    f = fopen(o.out, "wb");
    if (!f) {
        sl_err(&err, "cannot create %s: %s", o.out, strerror(errno));
        goto done;
    }
    if (fwrite(logits, sizeof(float), n * V, f) != n * V || fclose(f) != 0) {
        f = NULL;
        sl_err(&err, "cannot write %s: %s", o.out, strerror(errno));
        remove(o.out);
        goto done;
    }
    f = NULL;
    fprintf(stderr, "wrote %zu x %zu logits to %s\n", n, V, o.out);
    rc = 0;
done:
    if (f) fclose(f);
    if (rc) cli_fail("logits", "%s", err.msg);
    free(logits);
    free(ids);
    if (s.m) session_close(&s);
    return rc;
}
