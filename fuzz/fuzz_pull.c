/* fuzz_pull.c - libFuzzer target for what `streamllm pull` does with the
 * responses it receives (src/server/pull.c, sl_pull_response_*): the header
 * lines of every response of a redirect chain (status, X-Linked-Etag, ETag,
 * X-Linked-Size, Content-Range, Retry-After), the checks before the first
 * body byte is written, the writes into the .part file, the hash it will
 * check, and the verdict once the transfer ends. libcurl is not involved:
 * the input is fed the way its callbacks would be.
 *
 * Input: byte 0 flags (1: the transfer completed; 2: the disk is full after
 * 4 KiB of writes; 4: truncating the .part fails), bytes 1-8 the size of the
 * .part when the request was sent (little-endian), then records ended by
 * '\n': one that starts with 0x01 is a piece of body (the rest of it), any
 * other a header line (given with its '\n', as libcurl does).
 *
 * It traps when a promise breaks: bytes written anywhere but right after
 * what the .part held, written for an error response or a 206 that resumes
 * elsewhere, a truncation that is not before the first byte of a 200 to a
 * resumed request, a published hash that is not 64 hex digits, or a verdict
 * of "complete" for a transfer that failed. */
#include <stdlib.h>
#include <string.h>

#include "server/pull.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REQUIRE(cond) \
    do {              \
        if (!(cond)) __builtin_trap(); \
    } while (0)

#define DISK_BYTES 4096

/* The .part file: what was written where, and what may be asked of it. */
typedef struct sink {
    sl_pull_response *r;
    uint64_t next;        /* where the next write must go */
    uint64_t stored;      /* bytes written into this sink */
    bool disk_full, truncate_fails, truncated, any_write;
    unsigned char disk[DISK_BYTES];
} sink;

static const char *write_at(void *ctx, const void *buf, size_t n, uint64_t offset) {
    sink *s = ctx;
    sl_pull_response *r = s->r;
    REQUIRE(n > 0 && buf);
    REQUIRE(r->status == 200 || r->status == 206);
    /* checked before the first byte (later header lines, trailers, may say anything) */
    if (r->status == 206 && !s->any_write) REQUIRE(r->range_start >= 0 && (uint64_t)r->range_start == r->have);
    REQUIRE(offset == s->next && offset == r->have + r->written);
    if (s->disk_full && s->stored + n > DISK_BYTES) return "cannot write the .part file: No space left on device";
    if (s->stored + n <= DISK_BYTES) memcpy(s->disk + s->stored, buf, n); /* ASan checks buf */
    s->stored += n;
    s->next = offset + n;
    s->any_write = true;
    return NULL;
}

static const char *truncate_part(void *ctx) {
    sink *s = ctx;
    REQUIRE(!s->any_write && !s->truncated);
    REQUIRE(s->r->status == 200 && s->r->have > 0);
    s->truncated = true;
    s->next = 0;
    return s->truncate_fails ? "cannot truncate the .part file" : NULL;
}

static bool is_hex64(const char *h) {
    if (strlen(h) != 64) return false;
    for (const char *p = h; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f') || (*p >= 'A' && *p <= 'F'))) return false;
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 9) return 0;
    uint8_t flags = data[0];
    uint64_t have;
    memcpy(&have, data + 1, 8);
    sl_pull_response r;
    sl_pull_response_init(&r, have);
    sink *s = calloc(1, sizeof *s);
    REQUIRE(s);
    s->r = &r;
    s->next = have;
    s->disk_full = flags & 2;
    s->truncate_fails = flags & 4;
    r.write_at = write_at;
    r.truncate = truncate_part;
    r.sink = s;

    bool stopped = false;
    uint64_t accepted = 0;
    for (size_t at = 9; at < size;) {
        const uint8_t *nl = memchr(data + at, '\n', size - at);
        size_t end = nl ? (size_t)(nl - data) + 1 : size; /* the record with its '\n' */
        size_t len = end - at;
        /* a copy of exactly the record, so ASan sees any read past it */
        char *rec = malloc(len);
        REQUIRE(rec);
        memcpy(rec, data + at, len);
        if (rec[0] == 0x01) {
            if (!stopped) { /* libcurl stops calling once a callback refused */
                size_t got = sl_pull_response_body(&r, rec + 1, len - 1);
                REQUIRE(got == len - 1 || got == 0);
                if (got == 0 && len > 1) {
                    stopped = true;
                    REQUIRE(r.write_failed);
                }
                accepted += got;
            }
        } else {
            REQUIRE(sl_pull_response_header(&r, rec, len) == len);
        }
        free(rec);
        at = end;
    }
    REQUIRE(r.written == accepted);
    if (s->truncated && !s->truncate_fails) REQUIRE(r.have == 0);
    const char *sha = sl_pull_response_sha256(&r);
    REQUIRE(!sha || is_hex64(sha));

    bool ok = (flags & 1) && !stopped;
    char msg[256];
    sl_pull_verdict v = sl_pull_response_verdict(&r, ok, "connection reset", msg, sizeof msg);
    switch (v) {
    case SL_PULL_COMPLETE: {
        bool transferred = ok && !r.write_failed && (r.status == 200 || r.status == 206);
        int64_t total = r.range_total >= 0 ? r.range_total : r.linked_size;
        bool already_whole = r.status == 416 && r.have > 0 && total >= 0 && (uint64_t)total == r.have;
        REQUIRE(transferred || already_whole);
        break;
    }
    case SL_PULL_RESUME:
        REQUIRE(r.written > 0 && !ok);
        REQUIRE(msg[0]);
        break;
    case SL_PULL_RESTART:
        REQUIRE(r.status == 416 && r.have > 0);
        REQUIRE(msg[0]);
        break;
    case SL_PULL_BACKOFF:
        REQUIRE(r.status >= 408 && r.status <= 504);
        REQUIRE(msg[0]);
        break;
    case SL_PULL_FAIL:
        REQUIRE(msg[0]);
        break;
    default:
        __builtin_trap();
    }
    REQUIRE(strlen(msg) < sizeof msg);
    free(s);
    return 0;
}
