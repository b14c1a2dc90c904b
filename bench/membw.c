/* membw.c - memory bandwidth of this machine, STREAM style: read (sum of a
 * large buffer) and copy, with T threads, in huge pages where the OS has
 * them (as the CPU backend's packed weights are). Decoding a token reads
 * every weight once, so model bytes / read bandwidth is the floor of the
 * time per token (bench/cpu.sh prints it).
 *
 *   cc -O2 -pthread bench/membw.c -o build/bench-membw
 *   build/bench-membw [-t THREADS] [-m MIB] [-r REPS]
 *
 * Prints the best of REPS for each test, in GB/s (1e9 bytes per second). */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#if defined(__x86_64__)
#include <immintrin.h>
#define TARGET __attribute__((target("avx2")))
#else
#define TARGET
#endif

typedef struct job {
    const uint8_t *src;
    uint8_t *dst; /* NULL: read only */
    size_t n;
    uint64_t sink;
} job;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

/* Reads n bytes with four independent 32-byte streams of loads. */
TARGET static void *read_job(void *arg) {
    job *j = arg;
#if defined(__x86_64__)
    __m256i s0 = _mm256_setzero_si256(), s1 = s0, s2 = s0, s3 = s0;
    for (size_t i = 0; i + 128 <= j->n; i += 128) {
        s0 = _mm256_xor_si256(s0, _mm256_load_si256((const __m256i *)(j->src + i)));
        s1 = _mm256_xor_si256(s1, _mm256_load_si256((const __m256i *)(j->src + i + 32)));
        s2 = _mm256_xor_si256(s2, _mm256_load_si256((const __m256i *)(j->src + i + 64)));
        s3 = _mm256_xor_si256(s3, _mm256_load_si256((const __m256i *)(j->src + i + 96)));
    }
    s0 = _mm256_xor_si256(_mm256_xor_si256(s0, s1), _mm256_xor_si256(s2, s3));
    j->sink = (uint64_t)_mm256_extract_epi64(s0, 0);
#else
    uint64_t s = 0;
    for (size_t i = 0; i + 8 <= j->n; i += 8) {
        uint64_t v;
        memcpy(&v, j->src + i, 8);
        s ^= v;
    }
    j->sink = s;
#endif
    return NULL;
}

static void *copy_job(void *arg) {
    job *j = arg;
    memcpy(j->dst, j->src, j->n);
    return NULL;
}

/* Seconds for one pass of T threads over n bytes. */
static double pass(int threads, const uint8_t *src, uint8_t *dst, size_t n) {
    pthread_t th[64];
    job jobs[64];
    size_t per = n / (size_t)threads / 128 * 128;
    double t0 = now();
    for (int i = 0; i < threads; i++) {
        jobs[i] = (job){.src = src + per * (size_t)i, .dst = dst ? dst + per * (size_t)i : NULL, .n = per};
        pthread_create(&th[i], NULL, dst ? copy_job : read_job, &jobs[i]);
    }
    for (int i = 0; i < threads; i++) pthread_join(th[i], NULL);
    return now() - t0;
}

static void *huge_alloc(size_t n) {
    size_t huge = (size_t)2 << 20;
    n = (n + huge - 1) / huge * huge;
    void *p = aligned_alloc(huge, n);
#if defined(MADV_HUGEPAGE)
    if (p) madvise(p, n, MADV_HUGEPAGE);
#endif
    if (p) memset(p, 1, n);
    return p;
}

int main(int argc, char **argv) {
    int threads = 2, reps = 5;
    size_t mib = 1024;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "-t") == 0) threads = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "-m") == 0) mib = (size_t)atol(argv[i + 1]);
        else if (strcmp(argv[i], "-r") == 0) reps = atoi(argv[i + 1]);
    }
    if (threads < 1 || threads > 64 || mib < 64 || reps < 1) {
        fprintf(stderr, "usage: bench-membw [-t THREADS (1..64)] [-m MIB (>= 64)] [-r REPS]\n");
        return 2;
    }
    size_t n = mib << 20;
    uint8_t *a = huge_alloc(n), *b = huge_alloc(n / 2);
    if (!a || !b) {
        fprintf(stderr, "bench-membw: out of memory\n");
        return 1;
    }
    double best_read = 1e30, best_copy = 1e30;
    for (int r = 0; r < reps; r++) {
        double t = pass(threads, a, NULL, n);
        if (t < best_read) best_read = t;
        t = pass(threads, a, b, n / 2);
        if (t < best_copy) best_copy = t;
    }
    /* copy moves n/2 bytes in and n/2 out */
    printf("threads %d: read %.1f GB/s, copy %.1f GB/s (read+write)\n", threads, n / best_read / 1e9, n / best_copy / 1e9);
    free(a);
    free(b);
    return 0;
}
