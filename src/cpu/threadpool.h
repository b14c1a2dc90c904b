/* threadpool.h - a fixed pool of worker threads for data-parallel kernels,
 * and the other platform services of the CPU backend (large allocations).
 *
 * sl_pool_run(pool, fn, ctx) runs fn(ctx, ith, nth) on every thread (the caller
 * is thread 0) and returns when all are done. Workers spin briefly before
 * sleeping, because a decode step hands out a hundred or more small tasks and
 * a sleep/wake round trip per task would cost more than the task. */
#ifndef SL_THREADPOOL_H
#define SL_THREADPOOL_H

#include "util/common.h"

typedef struct sl_pool sl_pool;
typedef void (*sl_task_fn)(void *ctx, int ith, int nth);

/* n_threads counts the caller; <= 0 means the number of online CPUs. */
sl_pool *sl_pool_new(int n_threads, sl_error *err);
void sl_pool_free(sl_pool *p);
int sl_pool_size(const sl_pool *p);
void sl_pool_run(sl_pool *p, sl_task_fn fn, void *ctx);
/* Inside a task: returns once every thread of the pool has called it (all
 * threads run every task, so a task may call it between two phases). */
void sl_pool_barrier(sl_pool *p);
/* Number of CPUs available to this process. */
int sl_cpu_count(void);

/* Memory for large long-lived buffers (packed weights): 64-byte aligned and,
 * natively, backed by huge pages where the OS offers them, so streaming
 * through it takes few TLB misses and the hardware prefetchers are not
 * stopped at every 4 KiB page. NULL when out of memory; free with
 * sl_free_large. */
void *sl_alloc_large(size_t n);
void sl_free_large(void *p);

#endif
