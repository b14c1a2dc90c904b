/* threadpool_wasm.c - the wasm build's threadpool.h: one thread, the caller.
 *
 * wasi-libc has no pthreads, so in wasm every task runs on the calling thread
 * (fn(ctx, 0, 1)). Threads from a pool of Workers sharing the module's memory
 * replace this file later; the interface stays the same. */
#include "cpu/threadpool.h"

#include <stdlib.h>

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
