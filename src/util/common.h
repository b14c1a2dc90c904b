/* common.h - error reporting and small helpers shared by every part of the core.
 *
 * Every fallible function in the core returns an error through an sl_error: one
 * line of text that names the problem, ready for a CLI to print. No part of the
 * core prints, exits or aborts on bad input. */
#ifndef SL_COMMON_H
#define SL_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SL_ERR_MAX 512

typedef struct sl_error {
    char msg[SL_ERR_MAX];
} sl_error;

/* Formats the message into err (if err is not NULL) and returns -1, so that
 * `return sl_err(err, "...")` reads naturally. */
int sl_err(sl_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Overflow-checked size arithmetic: return false on overflow. */
static inline bool sl_mul_u64(uint64_t a, uint64_t b, uint64_t *out) {
    return !__builtin_mul_overflow(a, b, out);
}
static inline bool sl_add_u64(uint64_t a, uint64_t b, uint64_t *out) {
    return !__builtin_add_overflow(a, b, out);
}

/* Copies n bytes of s into a new NUL-terminated string (NULL when out of memory). */
char *sl_strndup(const char *s, size_t n);

#endif
