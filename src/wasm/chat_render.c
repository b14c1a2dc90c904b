/* chat_render.c - the export `chat_render`: a whole conversation (system,
 * user, assistant, ... turns) rendered into prompt text by the model's chat
 * template or a named one. The chat API in the browser (web/stream-llm.js)
 * renders every turn on each request; the engine then re-evaluates only the
 * tokens after the prefix the KV cache already holds.
 *
 * JS passes the messages packed in one buffer: for each message its role and
 * its content, each NUL-terminated, in order (2 * n_msgs strings in len
 * bytes). Everything is bounds-checked against len. */
#include "wasm/wasm.h"

#include "tokenizer/chat.h"

#include <stdlib.h>
#include <string.h>

/* Most messages a conversation may have (bounds the index array). */
#define CHAT_MAX_MSGS 65536

/* The template: by name, else the model's own. */
static int pick_template(const sl_model *model, const char *template_name, sl_chat_template *out) {
    if (template_name) {
        *out = sl_chat_from_name(template_name);
        if (*out == SL_CHAT_UNKNOWN) return sl_err(sl_wasm_err(), "unknown chat template '%.100s'", template_name);
        return 0;
    }
    if (!model->chat_template)
        return sl_err(sl_wasm_err(), "the model has no chat template (tokenizer.chat_template); name one, or use "
                                     "a raw text completion");
    *out = sl_chat_detect(model->chat_template);
    if (*out == SL_CHAT_UNKNOWN)
        return sl_err(sl_wasm_err(), "the model's chat template is not one we know; name one (e.g. chatml)");
    return 0;
}

/* Splits buf into 2 * n NUL-terminated strings (role, content, ...). */
static int unpack_messages(const char *buf, size_t len, int32_t n, sl_chat_msg *msgs) {
    size_t at = 0;
    for (int32_t i = 0; i < 2 * n; i++) {
        const void *nul = at < len ? memchr(buf + at, 0, len - at) : NULL;
        if (!nul) return sl_err(sl_wasm_err(), "chat_render: message %d is not NUL-terminated within %zu bytes", i / 2, len);
        const char *s = buf + at;
        if (i % 2 == 0) msgs[i / 2].role = s;
        else msgs[i / 2].content = s;
        at += (size_t)((const char *)nul - s) + 1;
    }
    return 0;
}

/* Renders n_msgs messages packed in buf (len bytes) with template_name (or 0:
 * the model's template). add_assistant != 0: end with the opening of the
 * assistant's turn. Returns a malloc'd NUL-terminated string (JS frees it
 * with free), or 0 with error_message set. */
SL_EXPORT("chat_render") char *wasm_chat_render(const sl_wasm_model *m, const char *template_name, const char *buf,
                                                size_t len, int32_t n_msgs, int32_t add_assistant) {
    const sl_model *model = sl_wasm_model_get(m);
    if (!model) {
        sl_err(sl_wasm_err(), "chat_render: no model loaded");
        return NULL;
    }
    if (n_msgs < 1 || n_msgs > CHAT_MAX_MSGS || (!buf && len)) {
        sl_err(sl_wasm_err(), "chat_render: %d messages (1 to %d expected)", (int)n_msgs, CHAT_MAX_MSGS);
        return NULL;
    }
    sl_chat_template t;
    if (pick_template(model, template_name, &t)) return NULL;
    sl_chat_msg *msgs = calloc((size_t)n_msgs, sizeof *msgs);
    if (!msgs) {
        sl_err(sl_wasm_err(), "out of memory");
        return NULL;
    }
    char *out = NULL;
    if (unpack_messages(buf, len, n_msgs, msgs) == 0)
        sl_chat_apply(t, msgs, (size_t)n_msgs, add_assistant != 0, &out, sl_wasm_err());
    free(msgs);
    return out;
}
