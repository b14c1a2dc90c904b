/* http.h - the few parts of HTTP request handling that the server does itself
 * (libmicrohttpd parses the protocol): the Range header, entity-tag matching
 * for If-None-Match and If-Range, decoding and validating the request path,
 * the CORS origin allow-list, and content types by file extension.
 *
 * Pure functions over NUL-terminated strings, no I/O: fuzz/fuzz_http.c runs
 * them on arbitrary input. */
#ifndef SL_HTTP_H
#define SL_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* What a Range header asks of a representation of a known size. */
typedef enum sl_range_kind {
    SL_RANGE_FULL,          /* absent, another unit, malformed, or several ranges: 200 with everything */
    SL_RANGE_PARTIAL,       /* one satisfiable byte range: 206 */
    SL_RANGE_UNSATISFIABLE, /* one byte range that misses the representation: 416 */
} sl_range_kind;

/* Parses a Range header value (RFC 9110 14.2) for a representation of size
 * bytes. On SL_RANGE_PARTIAL, *first and *length give the bytes to send
 * (length >= 1, first + length <= size). A syntactically invalid header is
 * ignored (SL_RANGE_FULL, as RFC 9110 allows); several ranges are answered
 * with the whole representation too, never with multipart/byteranges. */
sl_range_kind sl_http_parse_range(const char *value, uint64_t size, uint64_t *first, uint64_t *length);

/* If-None-Match: true when the header is "*" or lists etag (a quoted
 * entity-tag such as "\"abc\""), compared weakly (a W/ prefix is ignored).
 * A malformed list matches nothing. */
bool sl_http_etag_list_matches(const char *header, const char *etag);

/* If-Range: true when the header is exactly the strong entity-tag etag. A date
 * or anything else is false (then the whole representation is sent). */
bool sl_http_if_range_matches(const char *header, const char *etag);

typedef enum sl_path_status {
    SL_PATH_OK,        /* out holds the decoded path */
    SL_PATH_BAD,       /* hostile or malformed: bad %-escape, encoded '/' or '\\', NUL,
                          control bytes, '\\', "." or ".." segments: 400 */
    SL_PATH_NOT_FOUND, /* well-formed but never served: empty segments, names starting with '.': 404 */
    SL_PATH_TOO_LONG,  /* does not fit out: 414 */
} sl_path_status;

/* Percent-decodes the path of a request target (raw, as received, without the
 * query) into out (out_size bytes, NUL-terminated) and checks that every
 * segment is a plain name, so that the result can only name something below
 * the directory it is looked up in. "/" alone is OK. */
sl_path_status sl_http_clean_path(const char *raw, char *out, size_t out_size);

/* True when origin may read responses under the allow-list: "*" (any origin)
 * or comma-separated origins such as "https://a.example, http://localhost:3000"
 * (compared without regard to ASCII case). NULL or empty lists allow nothing. */
bool sl_http_origin_allowed(const char *allow_list, const char *origin);

/* Content-Type for a file name by its extension (application/octet-stream
 * when unknown). */
const char *sl_http_content_type(const char *name);

#endif
