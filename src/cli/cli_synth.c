/* cli_synth.c - `streamllm synth`: writes a random-weight model with a real
 * architecture's shape (model/synth.h), for benchmarks and tests. */
#include "cli/cli.h"
#include "model/synth.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Comma-separated names from a table, for "unknown ..." messages. */
static void list_names(char *buf, size_t cap, int n, const char *(*name_at)(int)) {
    size_t used = 0;
    buf[0] = 0;
    for (int i = 0; i < n && used < cap; i++) {
        int k = snprintf(buf + used, cap - used, "%s%s", i ? ", " : "", name_at(i));
        if (k < 0) break;
        used += (size_t)k;
    }
}

static const char *shape_name_at(int i) { return sl_synth_shape_at(i)->name; }
static const char *preset_name_at(int i) { return sl_synth_preset_at(i)->name; }

typedef struct progress_state {
    int last_percent;
} progress_state;

static void show_progress(void *ctx, uint64_t done, uint64_t total) {
    progress_state *ps = ctx;
    int percent = total ? (int)(done * 100 / total) : 100;
    if (percent == ps->last_percent) return;
    ps->last_percent = percent;
    fprintf(stderr, "\rsynth: %3d%% (%.0f / %.0f MB)", percent, (double)done / 1e6, (double)total / 1e6);
    if (done >= total) fputc('\n', stderr);
    fflush(stderr);
}

int cmd_synth(int argc, char **argv) {
    cli_opts o;
    if (cli_parse(argc, argv, 2, "synth", &o)) return 2;
    if (o.text) {
        cli_fail("synth", "unexpected argument '%s'", o.text);
        return 2;
    }
    if (!o.like || !o.type || !o.out) {
        cli_fail("synth", "needs --like SHAPE, --type TYPE and -o OUT.gguf");
        return 2;
    }
    char names[1024];
    const sl_synth_shape *shape = sl_synth_find_shape(o.like);
    if (!shape) {
        list_names(names, sizeof names, sl_synth_n_shapes(), shape_name_at);
        cli_fail("synth", "unknown shape '%s' (known: %s)", o.like, names);
        return 2;
    }
    const sl_synth_preset *preset = sl_synth_find_preset(o.type);
    if (!preset) {
        list_names(names, sizeof names, sl_synth_n_presets(), preset_name_at);
        cli_fail("synth", "unknown type '%s' (known: %s)", o.type, names);
        return 2;
    }

    sl_error err = {{0}};
    sl_gguf *vocab = NULL;
    if (o.vocab) {
        vocab = sl_gguf_open_file(o.vocab, &err);
        int32_t n_vocab = 0;
        if (!vocab || sl_synth_vocab_size(vocab, &n_vocab, &err)) {
            sl_gguf_close(vocab);
            return cli_fail("synth", "%s: %s", o.vocab, err.msg);
        }
        if (n_vocab != shape->n_vocab)
            fprintf(stderr, "streamllm synth: note: using the %d tokens of %s instead of %s's %d\n", n_vocab,
                    o.vocab, shape->name, shape->n_vocab);
    }
    sl_pool *pool = sl_pool_new(o.n_threads, &err);
    if (!pool) {
        sl_gguf_close(vocab);
        return cli_fail("synth", "%s", err.msg);
    }

    progress_state ps = {-1};
    sl_synth_params p = {
        .shape = shape,
        .preset = preset,
        .seed = o.sp.seed,
        .n_layer = o.n_layers,
        .vocab = vocab,
        .pool = pool,
        .progress = isatty(STDERR_FILENO) ? show_progress : NULL,
        .progress_ctx = &ps,
    };
    double t0 = now_seconds();
    int rc = sl_synth_write_file(&p, o.out, &err);
    double seconds = now_seconds() - t0;
    sl_pool_free(pool);
    sl_gguf_close(vocab);
    if (rc) return cli_fail("synth", "%s", err.msg);

    struct stat st;
    double mb = stat(o.out, &st) == 0 ? (double)st.st_size / 1e6 : 0;
    printf("wrote %s: %s-shaped %s, %d layers, seed %llu, %.1f MB in %.1f s\n", o.out, shape->name,
           preset->name, o.n_layers > 0 ? o.n_layers : shape->n_layer, (unsigned long long)o.sp.seed, mb,
           seconds);
    return 0;
}
