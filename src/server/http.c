/* http.c - Range, entity tags, request paths, CORS origins and content types
 * for the server (see http.h). Everything here reads untrusted text: each
 * function walks its input once, bounded by the terminating NUL. */
#include "server/http.h"

#include <string.h>
#include <strings.h>

static const char *skip_ows(const char *p) {
    while (*p == ' ' || *p == '\t') p++;
    return p;
}

static bool is_digit(char c) { return c >= '0' && c <= '9'; }

/* 1*DIGIT, saturating at UINT64_MAX (a huge position is simply past the end). */
static bool parse_u64(const char **pp, uint64_t *out) {
    const char *p = *pp;
    if (!is_digit(*p)) return false;
    uint64_t v = 0;
    for (; is_digit(*p); p++) {
        uint64_t d = (uint64_t)(*p - '0');
        v = v > (UINT64_MAX - d) / 10 ? UINT64_MAX : v * 10 + d;
    }
    *pp = p;
    *out = v;
    return true;
}

sl_range_kind sl_http_parse_range(const char *value, uint64_t size, uint64_t *first, uint64_t *length) {
    if (!value) return SL_RANGE_FULL;
    const char *p = skip_ows(value);
    if (strncasecmp(p, "bytes", 5) != 0) return SL_RANGE_FULL;
    p = skip_ows(p + 5);
    if (*p != '=') return SL_RANGE_FULL;
    p++;

    int n_specs = 0;
    bool has_start = false, has_end = false;
    uint64_t start = 0, end = 0;
    for (;;) {
        p = skip_ows(p);
        if (*p == ',') { /* empty list elements are allowed and ignored */
            p++;
            continue;
        }
        if (!*p) break;
        if (++n_specs > 1) return SL_RANGE_FULL;
        has_start = parse_u64(&p, &start);
        if (*p != '-') return SL_RANGE_FULL;
        p++;
        has_end = parse_u64(&p, &end);
        if (!has_start && !has_end) return SL_RANGE_FULL;
        p = skip_ows(p);
        if (*p && *p != ',') return SL_RANGE_FULL;
    }
    if (n_specs == 0) return SL_RANGE_FULL;

    if (has_start) {
        if (has_end && end < start) return SL_RANGE_FULL; /* invalid spec: ignore the header */
        if (start >= size) return SL_RANGE_UNSATISFIABLE;
        uint64_t last = has_end && end < size - 1 ? end : size - 1;
        *first = start;
        *length = last - start + 1;
        return SL_RANGE_PARTIAL;
    }
    /* suffix range: the last `end` bytes */
    if (end == 0 || size == 0) return SL_RANGE_UNSATISFIABLE;
    if (end > size) end = size;
    *first = size - end;
    *length = end;
    return SL_RANGE_PARTIAL;
}

bool sl_http_etag_list_matches(const char *header, const char *etag) {
    if (!header || !etag) return false;
    const char *p = skip_ows(header);
    if (*p == '*') return *skip_ows(p + 1) == 0;
    size_t etag_len = strlen(etag);
    for (;;) {
        p = skip_ows(p);
        if (*p == ',') {
            p++;
            continue;
        }
        if (!*p) return false;
        if (p[0] == 'W' && p[1] == '/') p += 2;
        if (*p != '"') return false;
        const char *close = strchr(p + 1, '"');
        if (!close) return false;
        size_t n = (size_t)(close - p) + 1;
        if (n == etag_len && memcmp(p, etag, n) == 0) return true;
        p = skip_ows(close + 1);
        if (*p && *p != ',') return false;
    }
}

bool sl_http_if_range_matches(const char *header, const char *etag) {
    if (!header || !etag) return false;
    const char *p = skip_ows(header);
    size_t n = strlen(etag);
    return n > 0 && strncmp(p, etag, n) == 0 && *skip_ows(p + n) == 0;
}

static int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

sl_path_status sl_http_clean_path(const char *raw, char *out, size_t out_size) {
    if (!raw || raw[0] != '/' || out_size < 2) return SL_PATH_BAD;
    size_t n = 0;
    for (const char *p = raw; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '%') {
            int hi = hex_value(p[1]), lo = hi < 0 ? -1 : hex_value(p[2]);
            if (hi < 0 || lo < 0) return SL_PATH_BAD;
            c = (unsigned char)(hi * 16 + lo);
            p += 2;
            /* an encoded separator would let a "segment" span directories */
            if (c == '/' || c == '\\' || c == 0) return SL_PATH_BAD;
        }
        if (c < 0x20 || c == 0x7f || c == '\\') return SL_PATH_BAD;
        if (n + 1 >= out_size) return SL_PATH_TOO_LONG;
        out[n++] = (char)c;
    }
    out[n] = 0;
    if (n == 1) return SL_PATH_OK; /* "/" */

    /* Every segment after the leading '/' must be a plain name. */
    sl_path_status status = SL_PATH_OK;
    const char *seg = out + 1;
    for (;;) {
        const char *slash = strchr(seg, '/');
        size_t len = slash ? (size_t)(slash - seg) : strlen(seg);
        if ((len == 1 && seg[0] == '.') || (len == 2 && seg[0] == '.' && seg[1] == '.')) return SL_PATH_BAD;
        if (len == 0 || seg[0] == '.') status = SL_PATH_NOT_FOUND; /* keep looking for worse */
        if (!slash) break;
        seg = slash + 1;
    }
    return status;
}

bool sl_http_origin_allowed(const char *allow_list, const char *origin) {
    if (!allow_list || !*allow_list || !origin || !*origin) return false;
    const char *p = allow_list;
    size_t origin_len = strlen(origin);
    for (;;) {
        p = skip_ows(p);
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\t')) len--;
        if (len == 1 && p[0] == '*') return true;
        if (len == origin_len && len > 0 && strncasecmp(p, origin, len) == 0) return true;
        if (!end) return false;
        p = end + 1;
    }
}

const char *sl_http_content_type(const char *name) {
    static const struct {
        const char *ext, *type;
    } TYPES[] = {
        {"html", "text/html; charset=utf-8"},
        {"htm", "text/html; charset=utf-8"},
        {"js", "text/javascript; charset=utf-8"},
        {"mjs", "text/javascript; charset=utf-8"},
        {"css", "text/css; charset=utf-8"},
        {"json", "application/json"},
        {"map", "application/json"},
        {"webmanifest", "application/manifest+json"},
        {"wasm", "application/wasm"},
        {"svg", "image/svg+xml"},
        {"png", "image/png"},
        {"jpg", "image/jpeg"},
        {"jpeg", "image/jpeg"},
        {"gif", "image/gif"},
        {"webp", "image/webp"},
        {"ico", "image/x-icon"},
        {"txt", "text/plain; charset=utf-8"},
        {"md", "text/markdown; charset=utf-8"},
        {"woff2", "font/woff2"},
        {"gguf", "application/octet-stream"},
    };
    const char *slash = strrchr(name, '/');
    const char *base = slash ? slash + 1 : name;
    const char *dot = strrchr(base, '.');
    if (dot && dot != base)
        for (size_t i = 0; i < sizeof TYPES / sizeof TYPES[0]; i++)
            if (strcasecmp(dot + 1, TYPES[i].ext) == 0) return TYPES[i].type;
    return "application/octet-stream";
}
