/* test.h - the tiny test harness every test program uses.
 *
 * A test program runs cases with RUN_CASE; a case fails when any CHECK in it
 * fails. At the end TEST_SUMMARY prints "N passed, N failed" (the line the
 * runner and CI read) and gives the exit status. */
#ifndef SL_TEST_H
#define SL_TEST_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int test_passed, test_failed, test_case_failed;

#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (!(cond)) {                                                               \
            test_case_failed = 1;                                                    \
            fprintf(stderr, "  check failed %s:%d: %s\n", __FILE__, __LINE__, #cond); \
        }                                                                            \
    } while (0)

/* CHECK with a printf-style explanation. */
#define CHECKF(cond, ...)                                                            \
    do {                                                                             \
        if (!(cond)) {                                                               \
            test_case_failed = 1;                                                    \
            fprintf(stderr, "  check failed %s:%d: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                            \
            fputc('\n', stderr);                                                     \
        }                                                                            \
    } while (0)

/* Runs one case: `call` is any statement, name a string for the report. */
#define RUN_CASE(name, call)                                       \
    do {                                                           \
        test_case_failed = 0;                                      \
        call;                                                      \
        if (test_case_failed) {                                    \
            test_failed++;                                         \
            fprintf(stderr, "FAIL %s\n", (name));                  \
        } else {                                                   \
            test_passed++;                                         \
            if (getenv("TEST_VERBOSE")) fprintf(stderr, "ok   %s\n", (name)); \
        }                                                          \
    } while (0)

#define RUN(fn) RUN_CASE(#fn, fn())

#define TEST_SUMMARY()                                                  \
    do {                                                                \
        printf("%d passed, %d failed\n", test_passed, test_failed);    \
        return test_failed ? 1 : 0;                                     \
    } while (0)

/* The shared reference data ($STREAMLLM_TESTDATA, default ../shared/testdata). */
static inline const char *test_data_dir(void) {
    const char *d = getenv("STREAMLLM_TESTDATA");
    return d && *d ? d : "../shared/testdata";
}

#endif
