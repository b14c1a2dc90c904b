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
 * driven by one JS thread). Lives in the shared linear memory.
 *
 * A task is published like a seqlock: the caller makes `generation` odd,
 * writes fn/ctx/nth/pending, then makes it even again. A worker takes the
 * fields only when it read the same even generation before and after them,
 * so a worker that is not part of a task (ith >= nth) and wakes late can
 * never mix the fields of two tasks and run one twice; a worker that is
 * part of a task always reads it whole, because the caller waits for it
 * before writing the next. */
static struct {
    int n_prepared;
    void *stacks[MAX_WORKERS];
    atomic_int n_running;
    atomic_int stop;
    atomic_int failed;          /* a worker trapped (cpu_worker_failed) */
    atomic_int generation;      /* +2 per task; odd while one is being written */
    atomic_int pending;         /* workers still running the current task */
    _Atomic(sl_task_fn) fn;
    _Atomic(void *) ctx;
    atomic_int nth;             /* threads of the current task (caller included) */
    atomic_int barrier_count;
    atomic_int barrier_phase;
} team;

/* Blocks while *a == value, for 1 ms at most. A function of its own, never
 * inlined, and nothing is used after the wait: V8's baseline compiler
 * (Liftoff; Node 20 / V8 11.3) clobbers a register that holds a live local
 * across memory.atomic.wait32 (a loop `for (i..) { wait32(..); sum += i; }`
 * never ends under --liftoff-only, and works under --no-liftoff). Inline,
 * that corrupted the barrier's callers' loop counters: wrong results at
 * random and hangs, mostly under load (more waits). Across a call, Liftoff
 * keeps the caller's locals in memory. */
__attribute__((noinline)) static void futex_wait(atomic_int *a, int value) {
    __builtin_wasm_memory_atomic_wait32((int *)a, value, 1000000);
}

/* Waits while *a == value: spins, then sleeps until notified. Returns early
 * once a worker has failed (the caller checks team.failed). */
static void wait_while(atomic_int *a, int value) {
    int spins = 0;
    while (atomic_load(a) == value && !atomic_load(&team.failed)) {
        if (spins < SPINS) spins++;
        else futex_wait(a, value);
    }
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
    atomic_fetch_add(&team.generation, 2);
    wake_all(&team.generation);
}

/* Called by JS in a worker whose cpu_worker_run trapped: the pool can no
 * longer finish a task, so every wait ends and the caller's next (or
 * current) sl_pool_run traps instead of waiting forever. */
__attribute__((export_name("cpu_worker_failed"))) void cpu_worker_failed(int i) {
    (void)i;
    atomic_store(&team.failed, 1);
    wake_all(&team.generation);
    wake_all(&team.pending);
    wake_all(&team.barrier_phase);
}

/* A worker's loop: runs each task it takes part in (thread i+1 of nth). */
__attribute__((noinline)) static void worker_loop(int i) {
    const int ith = i + 1;
    int seen = atomic_load(&team.generation) & ~1;
    atomic_fetch_add(&team.n_running, 1);
    for (;;) {
        int gen = atomic_load(&team.generation);
        if (gen == seen || (gen & 1)) {
            wait_while(&team.generation, gen);
            if (atomic_load(&team.failed)) break;
            continue;
        }
        if (atomic_load(&team.stop)) break;
        const int nth = atomic_load(&team.nth);
        sl_task_fn fn = atomic_load(&team.fn);
        void *ctx = atomic_load(&team.ctx);
        if (atomic_load(&team.generation) != gen) continue; /* rewritten meanwhile: not ours */
        seen = gen;
        if (ith < nth) {
            fn(ctx, ith, nth);
            if (atomic_fetch_sub(&team.pending, 1) == 1) wake_all(&team.pending);
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

/* A worker trapped (its Worker reported why): this task's results are
 * incomplete, so the engine's call must fail. A trap reaches JS as a
 * WebAssembly.RuntimeError from the export, rather than a silent hang. */
static void check_workers(void) {
    if (atomic_load(&team.failed)) __builtin_trap();
}

void sl_pool_run(sl_pool *p, sl_task_fn fn, void *ctx) {
    check_workers();
    /* workers may have stopped since the pool was made */
    int n = p->n < sl_cpu_count() ? p->n : sl_cpu_count();
    if (n <= 1) {
        atomic_store(&team.nth, 1); /* no worker runs: the barrier is a no-op */
        fn(ctx, 0, 1);
        return;
    }
    atomic_fetch_add(&team.generation, 1); /* odd: being written */
    atomic_store(&team.fn, fn);
    atomic_store(&team.ctx, ctx);
    atomic_store(&team.nth, n);
    atomic_store(&team.pending, n - 1);
    atomic_fetch_add(&team.generation, 1); /* even: published (wasm atomics are sequentially consistent) */
    wake_all(&team.generation);
    fn(ctx, 0, n);
    for (int pending; (pending = atomic_load(&team.pending)) > 0 && !atomic_load(&team.failed);)
        wait_while(&team.pending, pending);
    check_workers();
}

void sl_pool_barrier(sl_pool *p) {
    (void)p;
    const int nth = atomic_load(&team.nth);
    if (nth <= 1) return;
    int phase = atomic_load(&team.barrier_phase);
    if (atomic_fetch_add(&team.barrier_count, 1) == nth - 1) {
        atomic_store(&team.barrier_count, 0);
        atomic_fetch_add(&team.barrier_phase, 1);
        wake_all(&team.barrier_phase);
        return;
    }
    wait_while(&team.barrier_phase, phase);
}

/* A check of the pool on the running workers (tests/web/cpu_threads.test.mjs):
 * tasks on pools of 2 .. all threads in turn (so some workers sit a task
 * out), each thread counting through `phases` barriers, with one thread in
 * turn held back now and then so that the others stop spinning and block.
 * Returns the number of phases that saw a wrong count plus the threads that
 * did not run exactly the tasks they were part of, or -1 when fewer than 2
 * threads run. */
typedef struct selftest {
    sl_pool *pool;
    atomic_int count, errors, sink;
    atomic_int arrived[32]; /* tasks each thread ran */
    int phases;
} selftest;

static void selftest_task(void *arg, int ith, int nth) {
    selftest *t = arg;
    atomic_fetch_add(&t->arrived[ith & 31], 1);
    for (int phase = 0; phase < t->phases; phase++) {
        if (phase % 8 == 0 && phase / 8 % nth == ith) /* longer than the others spin */
            for (int i = 0; i < 4 * SPINS; i++) atomic_fetch_add(&t->sink, 1);
        atomic_fetch_add(&t->count, 1);
        sl_pool_barrier(t->pool);
        if (atomic_load(&t->count) != nth * (phase + 1)) atomic_fetch_add(&t->errors, 1);
        sl_pool_barrier(t->pool);
    }
}

__attribute__((export_name("cpu_threads_selftest"))) int cpu_threads_selftest(int phases) {
    static selftest t;
    memset(&t, 0, sizeof t);
    t.phases = phases;
    const int n = sl_cpu_count() < 32 ? sl_cpu_count() : 32;
    if (n < 2) return -1;
    int expected[32] = {0};
    for (int task = 0; task < 2 * (n - 1); task++) {
        const int size = 2 + task % (n - 1);
        sl_error err;
        t.pool = sl_pool_new(size, &err);
        if (!t.pool) return -1;
        atomic_store(&t.count, 0);
        sl_pool_run(t.pool, selftest_task, &t);
        sl_pool_free(t.pool);
        for (int i = 0; i < size; i++) expected[i]++;
    }
    int missed = 0;
    for (int i = 0; i < n; i++) missed += atomic_load(&t.arrived[i]) != expected[i];
    return atomic_load(&t.errors) + missed;
}

#endif
