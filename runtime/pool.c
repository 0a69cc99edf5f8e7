/* runtime/pool.c — a persistent thread pool with a static parallel-for.
 *
 * The one idea: threads are started once and park between jobs, so a training step's
 * hundreds of small kernels pay a wake-up, not a thread creation. On the project's
 * 2-core machine spinning pools fight each other (shared/notes/performance.md), so a
 * worker spins only ~50 us after a job (back-to-back kernels stay cheap) and then
 * sleeps on a condition variable; with more threads than CPUs it does not spin at all.
 *
 * Scheduling is static and deterministic: a job over [0, n) is cut into c =
 * min(threads, ceil(n / grain)) consecutive chunks whose sizes differ by at most one
 * (the first n % c get one more), and chunk k goes to worker k (the caller is worker 0). A kernel that keeps one
 * partial sum per worker and adds them in worker order therefore gets bit-identical
 * results run after run for a given thread count.
 *
 * Protocol for one job (generation g):
 *   1. the caller (holding `submit`) stores fn, ctx, n, nchunks, sets active = workers,
 *      and bumps generation under `mu`, then broadcasts `wake`;
 *   2. each worker sees the new generation (spinning or woken), runs its chunk if it
 *      has one, and decrements active; the last one signals `done`;
 *   3. the caller runs chunk 0, then waits until active == 0.
 * Every worker checks in for every job, so no worker can read a later job's fields
 * while it still works on an earlier one. */
#if defined(__linux__) && !defined(_GNU_SOURCE)
#define _GNU_SOURCE   /* sched_getaffinity: count the CPUs this process may run on */
#endif
#include "runtime/runtime.h"

#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define SPIN_NS 50000   /* how long an idle worker or waiting caller spins */

typedef struct {
  BprtPool *pool;
  int id;
  uint64_t generation;      /* the last job before this worker started */
} WorkerArg;

struct BprtPool {
  pthread_mutex_t submit;   /* one job at a time */
  pthread_mutex_t mu;       /* guards sleeping on wake / done */
  pthread_cond_t wake, done;
  int threads;              /* workers including the caller */
  uint64_t spin_ns;         /* SPIN_NS, or 0 when there are more threads than CPUs */
  pthread_t *tids;          /* threads - 1 */
  WorkerArg *args;
  /* The current job. Written before generation is bumped; read after it is seen. */
  BprtRangeFn fn;
  void *ctx;
  int64_t n;
  int nchunks;
  _Atomic int active;               /* workers that have not finished this job */
  _Atomic uint64_t generation;
  _Atomic bool stop;
};

/* The worker id while this thread runs a task, else -1: nested parallel-fors run inline.
 * A pthread key rather than _Thread_local, which would make model .so files need
 * ld-linux for __tls_get_addr (see error.c). Stored as worker + 1 (NULL = none). */
static pthread_key_t task_key;
static pthread_once_t task_once = PTHREAD_ONCE_INIT;

static void make_task_key(void) { pthread_key_create(&task_key, NULL); }

static int current_worker(void) {
  pthread_once(&task_once, make_task_key);
  return (int)(intptr_t)pthread_getspecific(task_key) - 1;
}

static void set_current_worker(int worker) {
  pthread_once(&task_once, make_task_key);
  pthread_setspecific(task_key, (void *)(intptr_t)(worker + 1));
}

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

/* The CPUs this process may use (taskset, cgroup cpusets), else the online count. */
int bprt_cpu_count(void) {
#if defined(__linux__)
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) {
    int c = CPU_COUNT(&set);
    if (c >= 1) return c;
  }
#endif
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  if (n < 1) return 1;
  if (n > 1024) return 1024;
  return (int)n;
}

static void run_chunk(BprtPool *p, int k) {
  if (k >= p->nchunks) return;
  int64_t q = p->n / p->nchunks, r = p->n % p->nchunks;
  int64_t begin = k * q + (k < r ? k : r);
  int64_t end = begin + q + (k < r);
  if (begin < end) {
    set_current_worker(k);
    p->fn(p->ctx, begin, end, k);
    set_current_worker(-1);
  }
}

static void *worker_main(void *argp) {
  WorkerArg *arg = argp;
  BprtPool *p = arg->pool;
  /* Not a fresh load of p->generation: a job submitted before this thread got to run
   * must still count as new for it, or the caller would wait for it forever. */
  uint64_t seen = arg->generation;
  for (;;) {
    /* Wait for a new job: spin briefly, then sleep. */
    uint64_t start = now_ns();
    for (int i = 0; atomic_load(&p->generation) == seen && !atomic_load(&p->stop); i++) {
      cpu_relax();
      if ((i & 63) == 63 && now_ns() - start > p->spin_ns) break;
    }
    if (atomic_load(&p->generation) == seen && !atomic_load(&p->stop)) {
      pthread_mutex_lock(&p->mu);
      while (atomic_load(&p->generation) == seen && !atomic_load(&p->stop))
        pthread_cond_wait(&p->wake, &p->mu);
      pthread_mutex_unlock(&p->mu);
    }
    if (atomic_load(&p->stop)) break;
    seen = atomic_load(&p->generation);
    run_chunk(p, arg->id);
    if (atomic_fetch_sub(&p->active, 1) == 1) {
      pthread_mutex_lock(&p->mu);
      pthread_cond_signal(&p->done);
      pthread_mutex_unlock(&p->mu);
    }
  }
  return NULL;
}

/* Join every worker; the pool is left with threads == 1. */
static void stop_workers(BprtPool *p) {
  pthread_mutex_lock(&p->mu);
  atomic_store(&p->stop, true);
  pthread_cond_broadcast(&p->wake);
  pthread_mutex_unlock(&p->mu);
  for (int i = 0; i < p->threads - 1; i++) pthread_join(p->tids[i], NULL);
  bprt_free(p->tids);
  bprt_free(p->args);
  p->tids = NULL;
  p->args = NULL;
  p->threads = 1;
  atomic_store(&p->stop, false);
}

/* Start threads-1 workers. On failure keeps those that started and returns -1. */
static int start_workers(BprtPool *p, int threads) {
  if (threads <= 0) threads = bprt_cpu_count();
  if (threads > 1024) threads = 1024;
  p->threads = 1;
  /* Oversubscribed, a spinning thread only keeps the one it waits for off the CPU.
   * Set before any worker starts: workers read it without a lock. */
  p->spin_ns = threads <= bprt_cpu_count() ? SPIN_NS : 0;
  if (threads == 1) return 0;
  p->tids = bprt_malloc(sizeof(pthread_t) * (size_t)(threads - 1));
  p->args = bprt_malloc(sizeof(WorkerArg) * (size_t)(threads - 1));
  if (!p->tids || !p->args) {
    bprt_free(p->tids);
    bprt_free(p->args);
    p->tids = NULL;
    p->args = NULL;
    return -1;
  }
  /* Workers start with every signal blocked, so process-directed signals (Ctrl-C in
   * `bpcc train`) reach the application's own threads, never a pool worker. */
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  int rc = 0;
  for (int i = 0; i < threads - 1 && rc == 0; i++) {
    p->args[i] = (WorkerArg){p, i + 1, atomic_load(&p->generation)};
    rc = pthread_create(&p->tids[i], NULL, worker_main, &p->args[i]);
    if (rc != 0) bprt_set_error("cannot start thread %d of %d: %s", i + 2, threads, strerror(rc));
    else p->threads++;
  }
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  return rc == 0 ? 0 : -1;
}

BprtPool *bprt_pool_new(int threads) {
  BprtPool *p = bprt_calloc(1, sizeof *p);
  if (!p) return NULL;
  pthread_mutex_init(&p->submit, NULL);
  pthread_mutex_init(&p->mu, NULL);
  pthread_cond_init(&p->wake, NULL);
  pthread_cond_init(&p->done, NULL);
  atomic_init(&p->active, 0);
  atomic_init(&p->generation, 0);
  atomic_init(&p->stop, false);
  p->threads = 1;
  /* A pool that got fewer threads than asked still works; only a failed allocation of
   * the thread table is fatal, and even then the pool runs everything inline. */
  if (start_workers(p, threads) != 0 && p->threads == 1 && threads != 1) {
    bprt_pool_free(p);
    return NULL;
  }
  return p;
}

void bprt_pool_free(BprtPool *p) {
  if (!p) return;
  pthread_mutex_lock(&p->submit);
  stop_workers(p);
  pthread_mutex_unlock(&p->submit);
  pthread_mutex_destroy(&p->submit);
  pthread_mutex_destroy(&p->mu);
  pthread_cond_destroy(&p->wake);
  pthread_cond_destroy(&p->done);
  bprt_free(p);
}

int bprt_pool_threads(const BprtPool *p) { return p ? p->threads : 1; }

int bprt_pool_resize(BprtPool *p, int threads) {
  if (!p) return bprt_set_error("bprt_pool_resize: NULL pool");
  if (current_worker() >= 0) return bprt_set_error("bprt_pool_resize: called from inside a task");
  pthread_mutex_lock(&p->submit);
  stop_workers(p);
  int rc = start_workers(p, threads);
  pthread_mutex_unlock(&p->submit);
  return rc;
}

void bprt_pool_for(BprtPool *p, int64_t n, int64_t grain, BprtRangeFn fn, void *ctx) {
  if (n <= 0 || !fn) return;
  if (grain < 1) grain = 1;
  int self = current_worker();
  if (!p || p->threads == 1 || n <= grain || self >= 0) {
    fn(ctx, 0, n, self >= 0 ? self : 0);
    return;
  }
  pthread_mutex_lock(&p->submit);
  int64_t maxchunks = (n + grain - 1) / grain;
  p->nchunks = maxchunks < p->threads ? (int)maxchunks : p->threads;
  p->fn = fn;
  p->ctx = ctx;
  p->n = n;
  atomic_store(&p->active, p->threads - 1);
  pthread_mutex_lock(&p->mu);
  atomic_fetch_add(&p->generation, 1);
  pthread_cond_broadcast(&p->wake);
  pthread_mutex_unlock(&p->mu);

  run_chunk(p, 0);

  uint64_t start = now_ns();
  for (int i = 0; atomic_load(&p->active) > 0; i++) {
    cpu_relax();
    if ((i & 63) == 63 && now_ns() - start > p->spin_ns) break;
  }
  if (atomic_load(&p->active) > 0) {
    pthread_mutex_lock(&p->mu);
    while (atomic_load(&p->active) > 0) pthread_cond_wait(&p->done, &p->mu);
    pthread_mutex_unlock(&p->mu);
  }
  pthread_mutex_unlock(&p->submit);
}

/* ---------------------------------------------------------------- the global pool */

static pthread_mutex_t global_mu = PTHREAD_MUTEX_INITIALIZER;
static BprtPool *global_pool;
static int global_request;   /* the last bprt_set_threads count (0: one per CPU) */
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

/* fork() copies only the calling thread: in the child the global pool's workers are
 * gone, so the child forgets the pool (its memory is abandoned, not freed: the
 * mutexes in it may be held) and makes a new one, of the size last asked for, on
 * first use. Pools from
 * bprt_pool_new are the owner's business. */
static void atfork_prepare(void) { pthread_mutex_lock(&global_mu); }
static void atfork_parent(void) { pthread_mutex_unlock(&global_mu); }
static void atfork_child(void) {
  global_pool = NULL;
  pthread_mutex_unlock(&global_mu);
}
static void register_atfork(void) { pthread_atfork(atfork_prepare, atfork_parent, atfork_child); }

static BprtPool *global_get(void) {
  pthread_once(&atfork_once, register_atfork);
  pthread_mutex_lock(&global_mu);
  if (!global_pool) global_pool = bprt_pool_new(global_request);
  BprtPool *p = global_pool;
  pthread_mutex_unlock(&global_mu);
  return p;
}

int bprt_set_threads(int threads) {
  pthread_once(&atfork_once, register_atfork);
  pthread_mutex_lock(&global_mu);
  global_request = threads > 0 ? threads : 0;
  int rc = 0;
  if (!global_pool) {
    global_pool = bprt_pool_new(threads);
    if (!global_pool) rc = -1;
  } else {
    rc = bprt_pool_resize(global_pool, threads);
  }
  pthread_mutex_unlock(&global_mu);
  return rc;
}

int bprt_get_threads(void) { return bprt_pool_threads(global_get()); }

/* Without a pool (allocation failed) the job still runs, inline. */
void bprt_parallel_for(int64_t n, int64_t grain, BprtRangeFn fn, void *ctx) {
  bprt_pool_for(global_get(), n, grain, fn, ctx);
}

void bprt_shutdown(void) {
  pthread_mutex_lock(&global_mu);
  bprt_pool_free(global_pool);
  global_pool = NULL;
  pthread_mutex_unlock(&global_mu);
}
