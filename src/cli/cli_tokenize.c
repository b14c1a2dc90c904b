/* cli_tokenize.c - `streamllm tokenize`: text to token ids, one line. */
#include "cli/cli.h"
#include "tokenizer/tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cmd_tokenize(int argc, char **argv) {
    cli_opts o;
    if (cli_parse(argc, argv, 2, "tokenize", &o)) return 2;
    if (!o.model) return cli_fail("tokenize", "no model given (-m MODEL)"), 2;
    if (!o.file == !o.text) return cli_fail("tokenize", "give either --file F or the text"), 2;
    sl_error err;
    size_t len = 0;
    char *owned = NULL;
    const char *text = o.text;
    if (o.file) {
        owned = cli_read_file(o.file, &len, &err);
        if (!owned) return cli_fail("tokenize", "%s", err.msg);
        text = owned;
    } else {
        len = strlen(text);
    }
    int rc = 1;
    sl_tokenizer *t = NULL;
    int32_t *ids = NULL;
    size_t n = 0;
    sl_gguf *g = cli_open_gguf(o.model, &err);
    if (!g) goto done;
    t = sl_tokenizer_from_gguf(g, &err);
    sl_gguf_close(g);
    if (!t) goto done;
    /* --no-bos drops the BOS; EOS follows the model's add_eos flag either way. */
    if (sl_tokenize(t, text, len, true, o.parse_special, &ids, &n, &err)) goto done;
    size_t start = 0;
    if (o.no_bos && n > 0 && sl_tokenizer_add_bos(t) && ids[0] == sl_tokenizer_bos(t)) start = 1;
    for (size_t i = start; i < n; i++) printf(i > start ? " %d" : "%d", ids[i]);
    putchar('\n');
    rc = 0;
done:
    if (rc) cli_fail("tokenize", "%s", err.msg);
    free(ids);
    sl_tokenizer_free(t);
    free(owned);
    return rc;
}
