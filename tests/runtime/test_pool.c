/* tests/runtime/test_pool.c — the thread pool: coverage, schedule, resize, parking,
 * nesting, concurrent callers. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "runtime/runtime.h"

typedef struct {
  _Atomic int *hits;          /* per index */
  int threads;
  _Atomic int bad_worker;
  int64_t begin[64], end[64]; /* per worker: the range it ran */
  _Atomic int calls[64];
} Cover;

static void cover_fn(void *ctxp, int64_t begin, int64_t end, int worker) {
  Cover *c = ctxp;
  if (worker < 0 || worker >= c->threads) {
    atomic_store(&c->bad_worker, 1);
    return;
  }
  atomic_fetch_add(&c->calls[worker], 1);
  c->begin[worker] = begin;
  c->end[worker] = end;
  for (int64_t i = begin; i < end; i++) atomic_fetch_add(&c->hits[i], 1);
}

/* Run one job and check: every index once, worker k ran chunk k, chunks consecutive
 * and balanced (sizes differ by at most one). */
static void check_cover(BprtPool *p, int64_t n, int64_t grain) {
  Cover c;
  memset(&c, 0, sizeof c);
  c.threads = bprt_pool_threads(p);
  c.hits = calloc((size_t)(n ? n : 1), sizeof *c.hits);
  bprt_pool_for(p, n, grain, cover_fn, &c);
  assert_int_equal(atomic_load(&c.bad_worker), 0);
  for (int64_t i = 0; i < n; i++) {
    if (atomic_load(&c.hits[i]) != 1)
      fail_msg("n=%lld grain=%lld threads=%d: index %lld hit %d times", (long long)n, (long long)grain, c.threads,
               (long long)i, atomic_load(&c.hits[i]));
  }
  if (n > 0) {
    int64_t g = grain < 1 ? 1 : grain;
    int64_t chunks = c.threads == 1 || n <= g ? 1 : ((n + g - 1) / g < c.threads ? (n + g - 1) / g : c.threads);
    int64_t at = 0, minsz = n, maxsz = 0;
    for (int k = 0; k < chunks; k++) {
      assert_int_equal(atomic_load(&c.calls[k]), 1);
      assert_int_equal(c.begin[k], at);
      at = c.end[k];
      int64_t sz = c.end[k] - c.begin[k];
      minsz = sz < minsz ? sz : minsz;
      maxsz = sz > maxsz ? sz : maxsz;
    }
    assert_int_equal(at, n);
    assert_true(maxsz - minsz <= 1);
    for (int k = (int)chunks; k < c.threads; k++) assert_int_equal(atomic_load(&c.calls[k]), 0);
  }
  free(c.hits);
}

static void test_cover_all(void **state) {
  (void)state;
  const int threads[] = {1, 2, 3, 4, 7, 16};
  const int64_t sizes[] = {0, 1, 2, 3, 5, 7, 15, 16, 17, 33, 100, 1000, 4097, 100000};
  const int64_t grains[] = {0, 1, 7, 1000};
  for (size_t t = 0; t < sizeof threads / sizeof *threads; t++) {
    BprtPool *p = bprt_pool_new(threads[t]);
    assert_non_null(p);
    assert_int_equal(bprt_pool_threads(p), threads[t]);
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++)
      for (size_t g = 0; g < sizeof grains / sizeof *grains; g++) check_cover(p, sizes[s], grains[g]);
    bprt_pool_free(p);
  }
}

/* Thousands of tiny jobs back to back: the wake / check-in protocol under stress. */
static void test_many_small_jobs(void **state) {
  (void)state;
  BprtPool *p = bprt_pool_new(4);
  for (int i = 0; i < 20000; i++) check_cover(p, 8, 1);
  bprt_pool_free(p);
}

static void test_resize(void **state) {
  (void)state;
  BprtPool *p = bprt_pool_new(2);
  check_cover(p, 1000, 1);
  assert_int_equal(bprt_pool_resize(p, 5), 0);
  assert_int_equal(bprt_pool_threads(p), 5);
  check_cover(p, 1000, 1);
  assert_int_equal(bprt_pool_resize(p, 1), 0);
  assert_int_equal(bprt_pool_threads(p), 1);
  check_cover(p, 1000, 1);
  assert_int_equal(bprt_pool_resize(p, 0), 0);
  assert_int_equal(bprt_pool_threads(p), bprt_cpu_count());
  check_cover(p, 1000, 1);
  bprt_pool_free(p);
  /* The global pool: set, query, use, shut down, and come back lazily. */
  assert_int_equal(bprt_set_threads(3), 0);
  assert_int_equal(bprt_get_threads(), 3);
  assert_int_equal(bprt_set_threads(2), 0);
  assert_int_equal(bprt_get_threads(), 2);
  bprt_shutdown();
  assert_int_equal(bprt_get_threads(), 2);   /* restarted with the count asked for */
  assert_int_equal(bprt_set_threads(0), 0);
  assert_int_equal(bprt_get_threads(), bprt_cpu_count());
  bprt_shutdown();
}

/* A parallel-for inside a task runs inline in that worker: no deadlock. */
typedef struct {
  BprtPool *pool;
  _Atomic int64_t sum;
} Nest;

static void inner_fn(void *ctxp, int64_t begin, int64_t end, int worker) {
  (void)worker;
  Nest *n = ctxp;
  for (int64_t i = begin; i < end; i++) atomic_fetch_add(&n->sum, i);
}

static void outer_fn(void *ctxp, int64_t begin, int64_t end, int worker) {
  (void)worker;
  Nest *n = ctxp;
  for (int64_t i = begin; i < end; i++) bprt_pool_for(n->pool, 100, 1, inner_fn, n);
  /* Inside a task of a multi-thread pool, resizing is refused. */
  if (bprt_pool_threads(n->pool) > 1) assert_int_equal(bprt_pool_resize(n->pool, 3), -1);
}

static void test_nested_and_single(void **state) {
  (void)state;
  for (int t = 1; t <= 3; t++) {
    Nest n = {bprt_pool_new(t), 0};
    bprt_pool_for(n.pool, 10, 1, outer_fn, &n);
    assert_int_equal(atomic_load(&n.sum), 10 * 4950);
    bprt_pool_free(n.pool);
  }
  assert_string_equal(bprt_last_error(), "bprt_pool_resize: called from inside a task");
  /* NULL pool: runs inline. */
  Nest n = {NULL, 0};
  bprt_pool_for(NULL, 100, 1, inner_fn, &n);
  assert_int_equal(atomic_load(&n.sum), 4950);
}

/* Several threads submitting to one pool at once are serialized, each job correct. */
static void *submitter(void *arg) {
  BprtPool *p = arg;
  for (int i = 0; i < 300; i++) check_cover(p, 64 + i % 50, 1);
  return NULL;
}

static void test_concurrent_callers(void **state) {
  (void)state;
  BprtPool *p = bprt_pool_new(3);
  pthread_t t[4];
  for (int i = 0; i < 4; i++) pthread_create(&t[i], NULL, submitter, p);
  for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
  bprt_pool_free(p);
}

static double cpu_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Idle workers park: with 4 idle workers the process burns (almost) no CPU while the
 * main thread sleeps 200 ms. Spinning workers would burn about 800 ms. */
static void test_idle_workers_park(void **state) {
  (void)state;
  BprtPool *p = bprt_pool_new(5);
  check_cover(p, 1000, 1);
  struct timespec settle = {0, 20 * 1000 * 1000}, nap = {0, 200 * 1000 * 1000};
  nanosleep(&settle, NULL);
  double c0 = cpu_seconds();
  nanosleep(&nap, NULL);
  double used = cpu_seconds() - c0;
  assert_true(used < 0.05);
  check_cover(p, 1000, 1);   /* and they wake up again */
  bprt_pool_free(p);
}

/* Allocation failure while creating a pool: NULL with a message, never a crash. */
static void test_pool_alloc_failure(void **state) {
  (void)state;
  for (long k = 0; k < 4; k++) {
    bprt_alloc_fail_after(k);
    BprtPool *p = bprt_pool_new(4);
    bprt_alloc_fail_after(-1);
    if (!p) {
      assert_non_null(strstr(bprt_last_error(), "out of memory (allocating "));
      continue;
    }
    check_cover(p, 100, 1);
    bprt_pool_free(p);
  }
}

/* After fork() the child gets a fresh global pool of the same size instead of waiting
 * on workers that fork did not copy. */
static void test_fork_child_pool(void **state) {
  (void)state;
  assert_int_equal(bprt_set_threads(3), 0);
  Nest n = {NULL, 0};
  bprt_parallel_for(100, 1, inner_fn, &n);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    Nest c = {NULL, 0};
    bprt_parallel_for(1000, 1, inner_fn, &c);
    _exit(atomic_load(&c.sum) == 499500 && bprt_get_threads() == 3 ? 0 : 1);
  }
  int status = 0;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  bprt_parallel_for(100, 1, inner_fn, &n);   /* the parent's pool still works */
  assert_int_equal(atomic_load(&n.sum), 2 * 4950);
  bprt_shutdown();
}

/* Process-directed signals land on the application's thread, never on a worker. */
static pthread_t handled_on;
static volatile sig_atomic_t handled;

static void on_usr1(int sig) {
  (void)sig;
  handled_on = pthread_self();
  handled = 1;
}

static void test_workers_block_signals(void **state) {
  (void)state;
  BprtPool *p = bprt_pool_new(4);
  check_cover(p, 1000, 1);
  struct sigaction sa, old;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_usr1;
  sigaction(SIGUSR1, &sa, &old);
  /* With SIGUSR1 blocked here, a worker that did not block it would take it. */
  sigset_t usr1, prev;
  sigemptyset(&usr1);
  sigaddset(&usr1, SIGUSR1);
  handled = 0;
  pthread_sigmask(SIG_BLOCK, &usr1, &prev);
  kill(getpid(), SIGUSR1);
  struct timespec wait = {0, 30 * 1000 * 1000};
  nanosleep(&wait, NULL);
  assert_int_equal(handled, 0);
  pthread_sigmask(SIG_SETMASK, &prev, NULL);   /* pending: delivered here, now */
  assert_int_equal(handled, 1);
  assert_true(pthread_equal(handled_on, pthread_self()));
  sigaction(SIGUSR1, &old, NULL);
  bprt_pool_free(p);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_cover_all),         cmocka_unit_test(test_many_small_jobs),
      cmocka_unit_test(test_resize),            cmocka_unit_test(test_nested_and_single),
      cmocka_unit_test(test_concurrent_callers), cmocka_unit_test(test_idle_workers_park),
      cmocka_unit_test(test_pool_alloc_failure), cmocka_unit_test(test_fork_child_pool),
      cmocka_unit_test(test_workers_block_signals),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
