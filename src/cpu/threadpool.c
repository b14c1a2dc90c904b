/* threadpool.c - pthread implementation of threadpool.h (native builds). */
#include "cpu/threadpool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

/* Waiting, in three stages: poll with a pause instruction (the next task
 * usually comes within microseconds), then poll while yielding the CPU (so a
 * waiting thread never starves a descheduled one when the machine is
 * oversubscribed), then sleep. Counts of polls. */
#define SPIN_PAUSE 2000
#define SPIN_YIELD 20000

static void wait_a_little(int spins) {
    if (spins < SPIN_PAUSE) {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
    } else {
        sched_yield();
    }
}

struct sl_pool {
    int n;
    pthread_t *threads;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    atomic_uint generation;   /* bumped once per task */
    atomic_int pending;       /* workers still running the current task */
    atomic_int sleeping;      /* workers blocked on cv */
    atomic_bool stop;
    atomic_int barrier_count;     /* threads arrived at the current barrier */
    atomic_uint barrier_phase;    /* bumped when all have arrived */
    sl_task_fn fn;
    void *ctx;
};

typedef struct worker_arg {
    sl_pool *pool;
    int ith;
} worker_arg;

static void *worker_main(void *arg) {
    worker_arg wa = *(worker_arg *)arg;
    free(arg);
    sl_pool *p = wa.pool;
    unsigned seen = 0;
    for (;;) {
        unsigned gen;
        int spins = 0;
        while ((gen = atomic_load_explicit(&p->generation, memory_order_acquire)) == seen &&
               !atomic_load(&p->stop)) {
            if (++spins < SPIN_YIELD) {
                wait_a_little(spins);
                continue;
            }
            pthread_mutex_lock(&p->mu);
            atomic_fetch_add(&p->sleeping, 1);
            while (atomic_load(&p->generation) == seen && !atomic_load(&p->stop))
                pthread_cond_wait(&p->cv, &p->mu);
            atomic_fetch_sub(&p->sleeping, 1);
            pthread_mutex_unlock(&p->mu);
            spins = 0;
        }
        if (atomic_load(&p->stop)) return NULL;
        seen = gen;
        p->fn(p->ctx, wa.ith, p->n);
        atomic_fetch_sub_explicit(&p->pending, 1, memory_order_release);
    }
}

int sl_cpu_count(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : (int)n;
}

sl_pool *sl_pool_new(int n_threads, sl_error *err) {
    if (n_threads <= 0) n_threads = sl_cpu_count();
    if (n_threads > 256) n_threads = 256;
    sl_pool *p = calloc(1, sizeof *p);
    if (!p) {
        sl_err(err, "out of memory");
        return NULL;
    }
    p->n = n_threads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    p->threads = calloc((size_t)n_threads, sizeof *p->threads);
    if (!p->threads) {
        sl_pool_free(p);
        sl_err(err, "out of memory");
        return NULL;
    }
    for (int i = 1; i < n_threads; i++) {
        worker_arg *wa = malloc(sizeof *wa);
        if (!wa || pthread_create(&p->threads[i], NULL, worker_main, (wa->pool = p, wa->ith = i, wa))) {
            free(wa);
            p->n = i; /* only threads 1..i-1 exist */
            sl_pool_free(p);
            sl_err(err, "cannot start thread %d", i);
            return NULL;
        }
    }
    return p;
}

void sl_pool_free(sl_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->stop, true);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->n; i++)
        if (p->threads) pthread_join(p->threads[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p->threads);
    free(p);
}

int sl_pool_size(const sl_pool *p) { return p->n; }

void sl_pool_run(sl_pool *p, sl_task_fn fn, void *ctx) {
    if (p->n == 1) {
        fn(ctx, 0, 1);
        return;
    }
    p->fn = fn;
    p->ctx = ctx;
    atomic_store(&p->pending, p->n - 1);
    atomic_fetch_add(&p->generation, 1); /* seq_cst: pairs with the sleeping count */
    if (atomic_load(&p->sleeping) > 0) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
    }
    fn(ctx, 0, p->n);
    for (int spins = 0; atomic_load_explicit(&p->pending, memory_order_acquire) > 0; spins++)
        wait_a_little(spins);
}

void sl_pool_barrier(sl_pool *p) {
    if (p->n == 1) return;
    unsigned phase = atomic_load_explicit(&p->barrier_phase, memory_order_acquire);
    if (atomic_fetch_add_explicit(&p->barrier_count, 1, memory_order_acq_rel) == p->n - 1) {
        atomic_store_explicit(&p->barrier_count, 0, memory_order_relaxed);
        atomic_fetch_add_explicit(&p->barrier_phase, 1, memory_order_release);
        return;
    }
    for (int spins = 0; atomic_load_explicit(&p->barrier_phase, memory_order_acquire) == phase; spins++)
        wait_a_little(spins);
}

/* Huge pages are 2 MiB on x86-64 and most arm64 kernels; madvise is only a hint. */
#define HUGE_PAGE ((size_t)2 << 20)

void *sl_alloc_large(size_t n) {
    if (n < HUGE_PAGE) return aligned_alloc(64, (n + 63) / 64 * 64);
    size_t rounded = (n + HUGE_PAGE - 1) / HUGE_PAGE * HUGE_PAGE;
    if (rounded < n) return NULL;
    void *p = aligned_alloc(HUGE_PAGE, rounded);
#if defined(MADV_HUGEPAGE)
    if (p) madvise(p, rounded, MADV_HUGEPAGE);
#endif
    return p;
}

void sl_free_large(void *p) { free(p); }
