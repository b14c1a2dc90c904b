/* cli.h - what the `streamllm` subcommands share: parsed options and the
 * convention for errors (one line on stderr, exit status 1; usage errors 2). */
#ifndef SL_CLI_H
#define SL_CLI_H

#include "util/common.h"
#include "model/model.h"
#include "sampler/sampler.h"

typedef struct cli_opts {
    const char *model;       /* -m */
    const char *prompt;      /* -p */
    const char *file;        /* --file */
    const char *tokens;      /* --tokens */
    const char *out;         /* -o */
    const char *text;        /* positional text (tokenize), MODEL (split, verify) */
    const char *text2;       /* second positional: split's OUTDIR */
    const char *base_url;    /* split --base-url */
    uint64_t max_shard_bytes; /* split --max-shard-size (0: default) */
    const char *like;        /* synth --like */
    const char *type;        /* synth --type */
    const char *vocab;       /* synth --vocab */
    const char *chat_template; /* --chat-template NAME */
    const char *system;      /* --system */
    int32_t n_predict;       /* -n */
    int32_t n_prompt;        /* bench -p */
    int32_t n_threads;       /* -t */
    int32_t n_ctx;           /* --ctx */
    int32_t n_batch;         /* -b */
    int32_t reps;            /* bench -r */
    int32_t n_layers;        /* synth --layers: override the shape's layer count */
    bool no_bos, parse_special, chat, show_special, verbose, no_display_prompt;
    sl_sampler_params sp;
} cli_opts;

/* Parses argv[first..argc) into o (defaults for what is absent). Prints one
 * line and returns -1 on a usage error; the command then exits with 2. */
int cli_parse(int argc, char **argv, int first, const char *cmd, cli_opts *o);

/* Prints "streamllm CMD: MSG" to stderr, returns 1 (the exit status). */
int cli_fail(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Monotonic clock in seconds, for timings. */
double cli_now_seconds(void);

/* Reads a whole file into a malloc'd NUL-terminated buffer. */
char *cli_read_file(const char *path, size_t *len, sl_error *err);

/* Opens MODEL in any form: a .gguf, the first file of a llama.cpp split, a
 * shard directory or its manifest.json. */
sl_gguf *cli_open_gguf(const char *path, sl_error *err);
/* The same as a runnable model (name hint: the path's base name). */
sl_model *cli_open_model(const char *path, sl_error *err);

int cmd_info(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_logits(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_synth(int argc, char **argv);
int cmd_split(int argc, char **argv);
int cmd_verify(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_pull(int argc, char **argv);

#endif
