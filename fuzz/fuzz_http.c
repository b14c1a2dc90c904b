/* fuzz_http.c - libFuzzer target for the request parsing the server does
 * itself (src/server/http.c): the Range header, If-None-Match / If-Range
 * entity tags, request path decoding and validation, the CORS allow-list and
 * content types. The input, cut at its first 0xFF byte, gives two strings
 * (header value or path / etag or origin); the first 8 bytes also give a
 * representation size. Beyond memory safety it traps when a result breaks
 * its contract: a partial range outside the representation, or an accepted
 * path that could leave its directory. */
#include "server/http.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_clean_path(const char *raw) {
    char out[256];
    sl_path_status st = sl_http_clean_path(raw, out, sizeof out);
    if (st != SL_PATH_OK) return;
    size_t n = strlen(out);
    if (n == 0 || n >= sizeof out || out[0] != '/') __builtin_trap();
    if (n == 1) return;
    for (const char *seg = out + 1;;) {
        const char *slash = strchr(seg, '/');
        size_t len = slash ? (size_t)(slash - seg) : strlen(seg);
        if (len == 0 || seg[0] == '.') __builtin_trap(); /* empty, ".", "..", hidden: never OK */
        for (size_t i = 0; i < len; i++)
            if ((unsigned char)seg[i] < 0x20 || seg[i] == '\\' || seg[i] == 0x7f) __builtin_trap();
        if (!slash) break;
        seg = slash + 1;
    }
}

static void check_range(const char *value, uint64_t size) {
    uint64_t first = 0, length = 0;
    if (sl_http_parse_range(value, size, &first, &length) == SL_RANGE_PARTIAL)
        if (length == 0 || first >= size || length > size - first) __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *buf = malloc(size + 2);
    if (!buf) return 0;
    memcpy(buf, data, size);
    buf[size] = 0;
    buf[size + 1] = 0;
    char *second = buf + size + 1; /* "" unless there is a 0xFF */
    for (size_t i = 0; i < size; i++)
        if ((unsigned char)buf[i] == 0xFF) {
            buf[i] = 0;
            second = buf + i + 1;
            break;
        }
    uint64_t rep_size = 0;
    memcpy(&rep_size, data, size < 8 ? size : 8);
    const uint64_t sizes[] = {0, 1, 2, 100, 1ull << 40, UINT64_MAX, rep_size};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) check_range(buf, sizes[i]);
    check_clean_path(buf);
    check_clean_path(second);
    (void)sl_http_etag_list_matches(buf, second);
    (void)sl_http_etag_list_matches(buf, "\"abc\"");
    (void)sl_http_if_range_matches(buf, second);
    (void)sl_http_origin_allowed(buf, second);
    if (!sl_http_content_type(buf)) __builtin_trap();
    free(buf);
    return 0;
}
