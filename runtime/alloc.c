/* runtime/alloc.c — every allocation of the runtime, through one hook.
 *
 * The one idea: all memory the runtime hands out comes from bprt_malloc / bprt_realloc,
 * so a test can make the Nth allocation fail (bprt_alloc_fail_after) and check that
 * every caller turns it into an error instead of a crash (SQLite's and Lua's approach).
 * Large tensors are aligned to BPRT_ALIGN (64 bytes) so vector loads never split a
 * cache line. Blocks of 4 MiB and more (parameters, gradients, optimizer state and the
 * workspace of a large model) are 2 MiB aligned and advised as huge pages where the
 * kernel offers them (Linux THP in its default madvise mode): the matrix products
 * stream whole weight matrices, and with 4 KiB pages that is a TLB miss every 4 KiB
 * (measured: M2 and M3 steps 3-5% faster, bench/README.md). The countdown is atomic
 * because pool workers may allocate too. */
#if defined(__linux__) && !defined(_DEFAULT_SOURCE)
#define _DEFAULT_SOURCE   /* madvise, MADV_HUGEPAGE */
#endif
#include "runtime/runtime.h"

#include <stdatomic.h>
#if defined(__linux__)
#include <sys/mman.h>
#endif
#include <stdlib.h>
#include <string.h>

static _Atomic long fail_countdown = -1;  /* fail when it reaches 0; -1 = never */
static _Atomic long alloc_calls = 0;

void bprt_alloc_fail_after(long n) { atomic_store(&fail_countdown, n); }

long bprt_alloc_count(void) { return atomic_load(&alloc_calls); }

/* True if this allocation is to fail (the hook). */
static bool should_fail(void) {
  atomic_fetch_add(&alloc_calls, 1);
  long c = atomic_load(&fail_countdown);
  while (c >= 0) {
    if (c == 0) return true;
    if (atomic_compare_exchange_weak(&fail_countdown, &c, c - 1)) return false;
  }
  return false;
}

void *bprt_malloc(size_t n) {
  if (should_fail()) {
    bprt_set_error("out of memory (allocating %zu bytes)", n);
    return NULL;
  }
  void *p = NULL;
  /* Round up so aligned_alloc's size rule holds and tails can be over-read safely. */
  size_t size = (n + BPRT_ALIGN - 1) & ~(size_t)(BPRT_ALIGN - 1);
  const size_t huge = (size_t)2 << 20;
  bool big = size >= 2 * huge;
  if (size < n || posix_memalign(&p, big ? huge : BPRT_ALIGN, size ? size : BPRT_ALIGN) != 0) {
    bprt_set_error("out of memory (allocating %zu bytes)", n);
    return NULL;
  }
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  if (big) (void)madvise(p, size & ~(huge - 1), MADV_HUGEPAGE);   /* advice only: failure is fine */
#endif
  return p;
}

void *bprt_calloc(size_t count, size_t size) {
  if (size && count > SIZE_MAX / size) {
    bprt_set_error("out of memory (allocating %zu x %zu bytes overflows)", count, size);
    return NULL;
  }
  void *p = bprt_malloc(count * size);
  if (p) memset(p, 0, count * size);
  return p;
}

void *bprt_realloc(void *p, size_t n) {
  if (should_fail()) {
    bprt_set_error("out of memory (allocating %zu bytes)", n);
    return NULL;
  }
  void *q = realloc(p, n ? n : 1);
  if (!q) bprt_set_error("out of memory (allocating %zu bytes)", n);
  return q;
}

void bprt_free(void *p) { free(p); }

char *bprt_strdup(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = bprt_malloc(n);
  if (d) memcpy(d, s, n);
  return d;
}
