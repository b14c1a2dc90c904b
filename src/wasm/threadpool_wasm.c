/* threadpool_wasm.c - the wasm build's threadpool.h.
 *
 * wasi-libc has no pthreads. The plain build (no atomics) runs every task on
 * the calling thread. The threaded build (-matomics -mbulk-memory, linked
 * with a shared, imported memory: engine-mt.wasm) gets its threads from JS
 * (web/engine/threads.mjs): cpu_threads_prepare(n) reserves n worker stacks,
 * then JS starts n Workers that instantiate the same module on the same
 * memory and each call cpu_worker_run(i), which moves onto its own stack and
 * serves tasks until cpu_threads_stop(). A pool then uses the caller plus up
 * to the workers that are running. Waiting spins briefly, then blocks in
 * memory.atomic.wait32: a decode step hands out tasks every few microseconds,
 * and a wake-up from a blocking wait costs tens of them. Workers never
 * allocate (wasi-libc's malloc is not thread-safe). */
#include "cpu/threadpool.h"

#include <stdlib.h>

void *sl_alloc_large(size_t n) { return aligned_alloc(64, (n + 63) / 64 * 64); }
void sl_free_large(void *p) { free(p); }

#if !defined(__wasm_atomics__)

struct sl_pool {
    int n;
};

int sl_cpu_count(void) { return 1; }

sl_pool *sl_pool_new(int n_threads, sl_error *err) {
    (void)n_threads; /* always 1 here */
    sl_pool *p = malloc(sizeof *p);
    if (!p) {
        sl_err(err, "out of memory");
        return NULL;
    }
    p->n = 1;
    return p;
}

void sl_pool_free(sl_pool *p) { free(p); }

int sl_pool_size(const sl_pool *p) { return p->n; }

void sl_pool_run(sl_pool *p, sl_task_fn fn, void *ctx) {
    (void)p;
    fn(ctx, 0, 1);
}

void sl_pool_barrier(sl_pool *p) { (void)p; }

#else /* threaded build */

#include <stdatomic.h>
#include <string.h>

#define MAX_WORKERS 63
#define WORKER_STACK ((size_t)1 << 20)
/* Polls of an atomic before blocking (a poll is a few nanoseconds). */
#define SPINS 20000

/* The worker team, shared by every pool (one runs at a time: the engine is
 * driven by one JS thread). Lives in the shared linear memory. */
static struct {
    int n_prepared;
    void *stacks[MAX_WORKERS];
    atomic_int n_running;
    atomic_int stop;
    atomic_int generation;      /* bumped once per task */
    atomic_int pending;         /* workers still running the current task */
    /* the current task: atomics too (seen with V8's baseline compiler: plain
       fields published this way were read stale by workers) */
    _Atomic(sl_task_fn) fn;
    _Atomic(void *) ctx;
    atomic_int nth;             /* threads of the current task (caller included) */
    atomic_int barrier_count;
    atomic_int barrier_phase;
} team;

/* Waits while *a == value: spins, then sleeps until notified. */
static void wait_while(atomic_int *a, int value) {
    for (int spins = 0; atomic_load_explicit(a, memory_order_acquire) == value; spins++)
        if (spins >= SPINS) __builtin_wasm_memory_atomic_wait32((int *)a, value, 1000000); /* 1 ms at most */
}

static void wake_all(atomic_int *a) { __builtin_wasm_memory_atomic_notify((int *)a, (unsigned)-1); }

__attribute__((export_name("cpu_threads_prepare"))) int cpu_threads_prepare(int n) {
    if (n > MAX_WORKERS) n = MAX_WORKERS;
    while (team.n_prepared < n) {
        void *s = malloc(WORKER_STACK);
        if (!s) break;
        team.stacks[team.n_prepared++] = s;
    }
    return team.n_prepared;
}

__attribute__((export_name("cpu_threads_running"))) int cpu_threads_running(void) { return atomic_load(&team.n_running); }

__attribute__((export_name("cpu_threads_stop"))) void cpu_threads_stop(void) {
    atomic_store(&team.stop, 1);
    atomic_fetch_add(&team.generation, 1);
    wake_all(&team.generation);
}

/* A worker's loop: runs each task it takes part in (thread i+1 of nth). */
__attribute__((noinline)) static void worker_loop(int i) {
    int seen = atomic_load(&team.generation);
    atomic_fetch_add(&team.n_running, 1);
    for (;;) {
        wait_while(&team.generation, seen);
        if (atomic_load(&team.stop)) break;
        seen = atomic_load(&team.generation);
        atomic_thread_fence(memory_order_seq_cst); /* the task's own data, written before it was published */
        int ith = i + 1, nth = atomic_load(&team.nth);
        if (ith < nth) {
            sl_task_fn fn = atomic_load(&team.fn);
            fn(atomic_load(&team.ctx), ith, nth);
            if (atomic_fetch_sub_explicit(&team.pending, 1, memory_order_acq_rel) == 1) wake_all(&team.pending);
        }
    }
    atomic_fetch_sub(&team.n_running, 1);
}

/* The module's stack pointer, a global of each instance (each Worker has its own). */
__asm__(".globaltype __stack_pointer, i32\n");

/* Runs worker i on its own stack until cpu_threads_stop(). Called by JS in
 * Worker i; touches no stack before switching (worker_loop has the frame). */
__attribute__((export_name("cpu_worker_run"))) void cpu_worker_run(int i) {
    if (i < 0 || i >= team.n_prepared) return;
    char *top = (char *)team.stacks[i] + WORKER_STACK;
    __asm__ volatile("local.get %0\n\tglobal.set __stack_pointer" : : "r"(top));
    worker_loop(i);
}

struct sl_pool {
    int n;
};

int sl_cpu_count(void) { return 1 + atomic_load(&team.n_running); }

sl_pool *sl_pool_new(int n_threads, sl_error *err) {
    sl_pool *p = malloc(sizeof *p);
    if (!p) {
        sl_err(err, "out of memory");
        return NULL;
    }
    int have = sl_cpu_count();
    p->n = n_threads <= 0 || n_threads > have ? have : n_threads;
    return p;
}

void sl_pool_free(sl_pool *p) { free(p); }

int sl_pool_size(const sl_pool *p) { return p->n; }

void sl_pool_run(sl_pool *p, sl_task_fn fn, void *ctx) {
    /* workers may have stopped since the pool was made */
    int n = p->n < sl_cpu_count() ? p->n : sl_cpu_count();
    if (n <= 1) {
        atomic_store(&team.nth, 1); /* no worker runs: the barrier is a no-op */
        fn(ctx, 0, 1);
        return;
    }
    atomic_store(&team.fn, fn);
    atomic_store(&team.ctx, ctx);
    atomic_store(&team.nth, n);
    atomic_store(&team.pending, n - 1);
    atomic_thread_fence(memory_order_seq_cst);
    atomic_fetch_add(&team.generation, 1); /* seq_cst: publishes the task */
    wake_all(&team.generation);
    fn(ctx, 0, n);
    for (int pending; (pending = atomic_load_explicit(&team.pending, memory_order_acquire)) > 0;)
        wait_while(&team.pending, pending);
}

void sl_pool_barrier(sl_pool *p) {
    (void)p;
    const int nth = atomic_load(&team.nth);
    if (nth <= 1) return;
    int phase = atomic_load_explicit(&team.barrier_phase, memory_order_acquire);
    if (atomic_fetch_add_explicit(&team.barrier_count, 1, memory_order_acq_rel) == nth - 1) {
        atomic_store_explicit(&team.barrier_count, 0, memory_order_relaxed);
        atomic_fetch_add_explicit(&team.barrier_phase, 1, memory_order_release);
        wake_all(&team.barrier_phase);
        return;
    }
    wait_while(&team.barrier_phase, phase);
}

/* A check of the pool on the running workers (tests/web/cpu_threads.test.mjs):
 * every thread counts through `phases` barriers, three tasks in a row;
 * returns the number of phases that saw a wrong count plus the threads that
 * did not run each task once, or -1 when fewer than 2 threads run. The
 * state is static: on V8's baseline tier, a first call kept it in the
 * caller's stack frame saw stray counts (not understood; the engine's own
 * tasks, whose state is on the stack, give identical logits on 1 and 2
 * threads in both tiers). */
typedef struct selftest {
    sl_pool *pool;
    atomic_int count, errors;
    atomic_int arrived[32]; /* tasks each thread ran */
    int phases;
} selftest;

static void selftest_task(void *arg, int ith, int nth) {
    selftest *t = arg;
    atomic_fetch_add(&t->arrived[ith & 31], 1);
    for (int phase = 0; phase < t->phases; phase++) {
        atomic_fetch_add(&t->count, 1);
        sl_pool_barrier(t->pool);
        if (atomic_load(&t->count) != nth * (phase + 1)) atomic_fetch_add(&t->errors, 1);
        sl_pool_barrier(t->pool);
    }
}

__attribute__((export_name("cpu_threads_selftest"))) int cpu_threads_selftest(int phases) {
    static selftest t;
    sl_error err;
    memset(&t, 0, sizeof t);
    t.pool = sl_pool_new(0, &err);
    t.phases = phases;
    if (!t.pool) return -1;
    int n = sl_pool_size(t.pool);
    for (int rep = 0; rep < 3; rep++) {
        atomic_store(&t.count, 0);
        sl_pool_run(t.pool, selftest_task, &t);
    }
    sl_pool_free(t.pool);
    if (n < 2) return -1;
    int missed = 0;
    for (int i = 0; i < n && i < 32; i++) missed += atomic_load(&t.arrived[i]) != 3;
    return atomic_load(&t.errors) + missed;
}

#endif
