/* cli_info.c - `streamllm info`: a GGUF's metadata, tensors and, when it is a
 * model we can run, its hyperparameters. */
#include "cli/cli.h"
#include "model/model.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

/* Prints a string value escaped and cut to `max` bytes. */
static void print_str(const sl_gguf_str *s, size_t max) {
    putchar('"');
    for (uint64_t i = 0; i < s->len && i < max; i++) {
        unsigned char ch = (unsigned char)s->ptr[i];
        if (ch == '"' || ch == '\\') printf("\\%c", ch);
        else if (ch == '\n') fputs("\\n", stdout);
        else if (ch < 0x20 || ch == 0x7f) printf("\\x%02x", ch);
        else putchar(ch);
    }
    putchar('"');
    if (s->len > max) printf("... (%" PRIu64 " bytes)", s->len);
}

static void print_scalar(const sl_gguf_value *v) {
    switch (v->type) {
    case SL_GGUF_UINT8: case SL_GGUF_UINT16: case SL_GGUF_UINT32: case SL_GGUF_UINT64:
        printf("%" PRIu64, v->u64);
        break;
    case SL_GGUF_INT8: case SL_GGUF_INT16: case SL_GGUF_INT32: case SL_GGUF_INT64:
        printf("%" PRId64, v->i64);
        break;
    case SL_GGUF_FLOAT32: case SL_GGUF_FLOAT64: printf("%g", v->f64); break;
    case SL_GGUF_BOOL: fputs(v->b ? "true" : "false", stdout); break;
    case SL_GGUF_STRING: print_str(&v->str, 120); break;
    default: break;
    }
}

static void print_value(const sl_gguf_value *v) {
    if (v->type != SL_GGUF_ARRAY) {
        print_scalar(v);
        return;
    }
    printf("[%s x %" PRIu64 "]", sl_gguf_vtype_name(v->arr.elem_type), v->arr.n);
    if (v->arr.items) {
        if (v->arr.n && v->arr.items[0].type == SL_GGUF_STRING) {
            fputs(" ", stdout);
            for (uint64_t i = 0; i < v->arr.n && i < 4; i++) {
                print_str(&v->arr.items[i].str, 24);
                fputs(i + 1 < v->arr.n ? ", " : "", stdout);
            }
            if (v->arr.n > 4) fputs("...", stdout);
        }
    }
}

int cmd_info(int argc, char **argv) {
    cli_opts o;
    if (cli_parse(argc, argv, 2, "info", &o)) return 2;
    const char *path = o.model ? o.model : o.text;
    if (!path) return cli_fail("info", "no model given (streamllm info -m MODEL)"), 2;
    sl_error err;
    sl_gguf *g = cli_open_gguf(path, &err);
    if (!g) return cli_fail("info", "%s", err.msg);

    printf("file: %s\n", path);
    printf("gguf version: %u, files: %d, alignment: %u, metadata: %" PRId64 ", tensors: %" PRId64 "\n",
           sl_gguf_version(g), sl_gguf_n_files(g), sl_gguf_alignment(g), sl_gguf_n_kv(g), sl_gguf_n_tensors(g));
    puts("metadata:");
    for (int64_t i = 0; i < sl_gguf_n_kv(g); i++) {
        printf("  %-40s ", sl_gguf_key_at(g, i));
        print_value(sl_gguf_value_at(g, i));
        putchar('\n');
    }
    puts("tensors:");
    uint64_t total = 0;
    for (int64_t i = 0; i < sl_gguf_n_tensors(g); i++) {
        const sl_gguf_tensor *t = sl_gguf_tensor_at(g, i);
        char shape[96] = "";
        size_t n = 0;
        for (uint32_t d = 0; d < t->n_dims && n < sizeof shape; d++)
            n += (size_t)snprintf(shape + n, sizeof shape - n, d ? ", %" PRId64 : "%" PRId64, t->ne[d]);
        const char *tn = sl_type_name(t->type);
        printf("  %-32s %-7s [%s] %" PRIu64 " bytes\n", t->name, tn ? tn : "?", shape, t->nbytes);
        total += t->nbytes;
    }
    printf("tensor bytes: %" PRIu64 " (%.2f MiB)\n", total, total / 1048576.0);

    sl_model *m = sl_model_from_gguf(g, path, &err); /* takes g */
    if (!m) {
        printf("model: not runnable: %s\n", err.msg);
        return 0;
    }
    const sl_hparams *hp = &m->hp;
    printf("model: %s, arch %s, %.2fM params, %s, vocab %d (%s tokenizer, pre '%s')\n", m->name,
           sl_arch_name(hp->arch), m->n_params / 1e6, sl_model_quant_name(m), hp->n_vocab,
           sl_tokenizer_kind(m->tok) == SL_TOK_SPM ? "spm" : "bpe", sl_tokenizer_pre(m->tok));
    printf("  n_embd %d, n_layer %d, n_head %d, n_head_kv %d, head_dim %d, n_ff %d, n_ctx_train %d\n",
           hp->n_embd, hp->n_layer, hp->n_head, hp->n_head_kv, hp->head_dim, hp->n_ff, hp->n_ctx_train);
    printf("  rope: %s, base %g, n_rot %d, freq scale %g; rms eps %g; output %s\n",
           hp->rope_kind == SL_ROPE_NORM ? "norm" : "neox", hp->rope_base, hp->n_rot, hp->rope_freq_scale,
           hp->rms_eps, m->output.data == m->tok_embd.data ? "tied to token_embd" : "separate");
    sl_model_free(m);
    return 0;
}
