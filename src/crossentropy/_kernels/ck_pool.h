/* A small fork-safe thread pool (ck_pool.c). */
#ifndef CK_POOL_H
#define CK_POOL_H

#include <stdint.h>
typedef int64_t i64;

typedef void (*ck_task_fn)(void *ctx, i64 task, int tid);

/* Run tasks 0..ntasks-1 on up to nthreads threads (the caller included); tid is
 * in [0, nthreads).  Returns the number of threads that took part. */
int ck_pool_run(ck_task_fn fn, void *ctx, i64 ntasks, int nthreads);
void ck_pool_init(void);
int ck_pool_workers(void);
int ck_available_cpus(void);

#endif
