/* A small, fork-safe thread pool for the kernels.
 *
 * Why not OpenMP: libgomp's threads do not survive fork(), and a child that uses
 * OpenMP after its parent did hangs; that is what multiprocessing (fork start
 * method), DataLoader workers and dask's forked workers do.  Here a
 * pthread_atfork handler waits for a job in flight to end and resets the pool in
 * the child, which starts fresh workers on its first parallel call.
 *
 * A job is `ntasks` independent tasks (row blocks); the calling thread takes part.
 * Which thread runs which task does not matter for the results: every task
 * writes its own rows, and reductions run afterwards in a fixed order.  Workers
 * spin briefly after a job (back-to-back calls need no wake-up) and then sleep
 * on a condition variable.  One job runs at a time; a second Python thread that
 * calls while a job runs does its work alone, without the pool.
 */
#define _GNU_SOURCE
#include "ck_pool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <unistd.h>
#if defined(__linux__)
#include <sched.h>
#endif

#define CK_MAXT 256
#define CK_SPIN 2000 /* polls (~0.1 ms) before a worker sleeps */

/* jstate: bits 63..32 the job's generation (low 31 bits), bit 31 "open", bits
 * 30..0 the number of workers inside the job.  A worker joins only an open job
 * of the generation it was woken for (CAS), so the caller, once it has closed
 * the job, waits only for workers that are actually running tasks, never for
 * one that was not scheduled yet (on a busy machine it does all tasks itself). */
#define J_OPEN 0x80000000ULL
#define J_COUNT 0x7fffffffULL

static pthread_mutex_t job_mu = PTHREAD_MUTEX_INITIALIZER; /* one job at a time */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;     /* sleeping and waking */
static pthread_cond_t cv_work = PTHREAD_COND_INITIALIZER;
static pthread_cond_t cv_done = PTHREAD_COND_INITIALIZER;
static int nworkers;                 /* started, ids 1..nworkers */
static atomic_ulong gen;             /* job generation: a new job increments it */
static atomic_ullong jstate;
static ck_task_fn job_fn;
static void *job_ctx;
static i64 job_n;
static int job_want;                 /* worker ids < job_want take part */
static atomic_llong next_task;
static atomic_int sleeping;          /* workers blocked on cv_work */
static atomic_int waiting;           /* the caller is blocked on cv_done */
static unsigned long start_gen[CK_MAXT]; /* the generation a worker was created in */

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static void run_tasks(int tid)
{
    i64 t;
    while ((t = atomic_fetch_add_explicit(&next_task, 1, memory_order_relaxed)) < job_n)
        job_fn(job_ctx, t, tid);
}

static int try_join(unsigned long g)
{
    unsigned long long s = atomic_load(&jstate);
    for (;;) {
        if ((s >> 32) != (g & 0x7fffffffUL) || !(s & J_OPEN))
            return 0;
        if (atomic_compare_exchange_weak(&jstate, &s, s + 1))
            return 1;
    }
}

static void *worker(void *arg)
{
    int id = (int)(intptr_t)arg;
    /* not the current gen: the job that made us may already have been announced */
    unsigned long seen = start_gen[id];
    for (;;) {
        unsigned long g;
        int spins = 0;
        while ((g = atomic_load_explicit(&gen, memory_order_acquire)) == seen) {
            if (++spins < CK_SPIN) {
                cpu_relax();
                continue;
            }
            pthread_mutex_lock(&mu);
            atomic_fetch_add(&sleeping, 1);
            /* seq_cst, paired with the caller's increment of gen and load of sleeping */
            while ((g = atomic_load(&gen)) == seen)
                pthread_cond_wait(&cv_work, &mu);
            atomic_fetch_sub(&sleeping, 1);
            pthread_mutex_unlock(&mu);
            break;
        }
        seen = g;
        if (id < job_want && try_join(g)) {
            run_tasks(id);
            unsigned long long s = atomic_fetch_sub(&jstate, 1);
            if ((s & J_COUNT) == 1 && !(s & J_OPEN) && atomic_load(&waiting)) {
                pthread_mutex_lock(&mu);
                pthread_cond_signal(&cv_done);
                pthread_mutex_unlock(&mu);
            }
        }
    }
    return NULL;
}

static void ensure_workers(int want)
{
    while (nworkers < want && nworkers < CK_MAXT - 1) {
        pthread_t th;
        pthread_attr_t at;
        pthread_attr_init(&at);
        pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
        start_gen[nworkers + 1] = atomic_load(&gen);
        int rc = pthread_create(&th, &at, worker, (void *)(intptr_t)(nworkers + 1));
        pthread_attr_destroy(&at);
        if (rc != 0)
            break; /* fewer threads: still correct */
        nworkers++;
    }
}

int ck_pool_run(ck_task_fn fn, void *ctx, i64 ntasks, int nthreads)
{
    if (nthreads > ntasks)
        nthreads = (int)ntasks;
    if (nthreads > CK_MAXT)
        nthreads = CK_MAXT;
    if (nthreads <= 1 || pthread_mutex_trylock(&job_mu) != 0) {
        for (i64 t = 0; t < ntasks; t++)
            fn(ctx, t, 0);
        return 1;
    }
    ensure_workers(nthreads - 1);
    int want = nthreads <= nworkers + 1 ? nthreads : nworkers + 1;
    if (want <= 1) {
        pthread_mutex_unlock(&job_mu);
        for (i64 t = 0; t < ntasks; t++)
            fn(ctx, t, 0);
        return 1;
    }
    job_fn = fn;
    job_ctx = ctx;
    job_n = ntasks;
    job_want = want;
    atomic_store_explicit(&next_task, 0, memory_order_relaxed);
    unsigned long g = atomic_load(&gen) + 1;
    atomic_store(&jstate, ((unsigned long long)(g & 0x7fffffffUL) << 32) | J_OPEN);
    atomic_store(&gen, g); /* seq_cst: a worker going to sleep sees it, or we see it asleep */
    if (atomic_load(&sleeping) > 0) {
        pthread_mutex_lock(&mu);
        pthread_cond_broadcast(&cv_work);
        pthread_mutex_unlock(&mu);
    }
    run_tasks(0);
    /* close the job: from now on no worker joins; wait for those inside */
    unsigned long long s = atomic_fetch_and(&jstate, ~J_OPEN);
    if (s & J_COUNT) {
        int spins = 0;
        while (atomic_load(&jstate) & J_COUNT) {
            if (++spins < 100 * CK_SPIN) { /* they are running tasks: short */
                cpu_relax();
                continue;
            }
            pthread_mutex_lock(&mu);
            atomic_store(&waiting, 1);
            while (atomic_load(&jstate) & J_COUNT)
                pthread_cond_wait(&cv_done, &mu);
            atomic_store(&waiting, 0);
            pthread_mutex_unlock(&mu);
            break;
        }
    }
    pthread_mutex_unlock(&job_mu);
    return want;
}

/* fork: hold both locks across fork() (no job in flight, no worker inside the
 * condition variables), then give the child an empty pool */
static void before_fork(void)
{
    pthread_mutex_lock(&job_mu);
    pthread_mutex_lock(&mu);
}
static void after_fork_parent(void)
{
    pthread_mutex_unlock(&mu);
    pthread_mutex_unlock(&job_mu);
}
static void after_fork_child(void)
{
    pthread_mutex_init(&job_mu, NULL);
    pthread_mutex_init(&mu, NULL);
    pthread_cond_init(&cv_work, NULL);
    pthread_cond_init(&cv_done, NULL);
    nworkers = 0; /* the parent's workers do not exist here */
    atomic_store(&sleeping, 0);
    atomic_store(&waiting, 0);
    atomic_store(&jstate, 0);
}

static int ck_forks_registered;

void ck_pool_init(void)
{
    if (!ck_forks_registered) {
        pthread_atfork(before_fork, after_fork_parent, after_fork_child);
        ck_forks_registered = 1;
    }
}

int ck_pool_workers(void) { return nworkers; }

int ck_available_cpus(void)
{
#if defined(__linux__)
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        int n = CPU_COUNT(&set);
        if (n > 0)
            return n;
    }
#endif
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}
