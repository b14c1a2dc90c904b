/* cli_split.c - `streamllm split` (a model into hierarchical shards plus
 * manifest.json, see shard/shard.h) and `streamllm verify` (recheck a shard
 * directory's sizes and hashes). */
#include "cli/cli.h"
#include "shard/shard.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int cmd_split(int argc, char **argv) {
    cli_opts o;
    if (cli_parse(argc, argv, 2, "split", &o)) return 2;
    const char *model = o.model ? o.model : o.text;
    const char *out_dir = o.model ? o.text : o.text2;
    if (o.model && o.text2) return cli_fail("split", "unexpected argument '%s'", o.text2), 2;
    if (!model || !out_dir)
        return cli_fail("split", "usage: streamllm split MODEL OUTDIR [--max-shard-size 64M] [--base-url URL]"), 2;
    sl_split_opts opts = {.max_shard_bytes = o.max_shard_bytes, .base_url = o.base_url,
                          .progress = isatty(2) != 0};
    sl_error err;
    if (sl_shard_split(model, out_dir, &opts, &err)) return cli_fail("split", "%s", err.msg);
    sl_manifest m;
    if (sl_manifest_load(out_dir, &m, NULL, &err)) return cli_fail("split", "%s", err.msg);
    printf("%s: %d shards, %" PRIu64 " bytes, first %s\n", out_dir, m.n_shards, m.total_bytes,
           m.shards[0].file);
    sl_manifest_free(&m);
    return 0;
}

int cmd_verify(int argc, char **argv) {
    cli_opts o;
    if (cli_parse(argc, argv, 2, "verify", &o)) return 2;
    const char *dir = o.model ? o.model : o.text;
    if (!dir) return cli_fail("verify", "usage: streamllm verify OUTDIR"), 2;
    sl_error err;
    if (sl_shard_verify(dir, &err)) return cli_fail("verify", "%s", err.msg);
    sl_manifest m;
    if (sl_manifest_load(dir, &m, NULL, &err)) return cli_fail("verify", "%s", err.msg);
    printf("%s: OK, %d shards, %" PRIu64 " bytes, every SHA-256 matches\n", dir, m.n_shards, m.total_bytes);
    sl_manifest_free(&m);
    return 0;
}
