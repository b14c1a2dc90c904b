/* fuzz_chat.c - libFuzzer target for chat templates: detection on an
 * arbitrary template text (it comes from a GGUF's metadata), and rendering of
 * arbitrary messages with every family. The input is split at 0xFF bytes:
 * the template text, then alternating role / content fields. */
#include "tokenizer/chat.h"

#include <stdlib.h>
#include <string.h>

#define MAX_FIELDS 17

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *buf = malloc(size + 1);
    if (!buf) return 0;
    memcpy(buf, data, size);
    buf[size] = 0;
    char *fields[MAX_FIELDS];
    int n = 0;
    fields[n++] = buf;
    for (size_t i = 0; i < size && n < MAX_FIELDS; i++)
        if ((unsigned char)buf[i] == 0xFF) {
            buf[i] = 0;
            fields[n++] = buf + i + 1;
        }
    sl_chat_template detected = sl_chat_detect(fields[0]);
    (void)sl_chat_name(detected);
    (void)sl_chat_from_name(fields[0]);

    sl_chat_msg msgs[MAX_FIELDS / 2];
    size_t n_msgs = 0;
    for (int i = 1; i + 1 < n; i += 2) msgs[n_msgs++] = (sl_chat_msg){fields[i], fields[i + 1]};
    for (int t = 0; t < SL_CHAT_COUNT; t++) {
        char *out = NULL;
        sl_error err;
        if (sl_chat_apply((sl_chat_template)t, msgs, n_msgs, (size & 1) != 0, &out, &err) == 0) {
            if (!out) __builtin_trap(); /* success must give a string */
            free(out);
        } else if (!err.msg[0]) {
            __builtin_trap(); /* failure must say why */
        }
    }
    free(buf);
    return 0;
}
