/* ir/arena.c — bump arenas: one per compilation, nothing freed one by one.
 *
 * Every allocation of the compiler goes through arena_alloc, and every arena block
 * through bp_malloc (ir/ir.h), the one hook that tests use to fail the Nth allocation.
 * An arena that cannot grow reports an internal error: the compiler has no partial
 * state worth keeping after running out of memory. */
#include "ir/ir.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct Block {
  struct Block *next;
  size_t used, cap;
  _Alignas(16) unsigned char data[];
} Block;

struct Arena {
  Block *head;
  size_t total;
};

static long alloc_countdown = -1;   /* fail when it reaches 0; -1 = never */

void bp_alloc_fail_after(long n) { alloc_countdown = n; }

void *bp_malloc(size_t n) {
  if (alloc_countdown >= 0) {
    if (alloc_countdown == 0) return NULL;
    alloc_countdown--;
  }
  return malloc(n ? n : 1);
}

void bp_free(void *p) { free(p); }

/* Running out of memory in the compiler is reported, not a crash: exit status 1. */
static _Noreturn void oom(size_t n) {
  fprintf(stderr, "bpcc: error: out of memory (allocating %zu bytes)\n", n);
  exit(1);
}

void *bp_xmalloc(size_t n) {
  void *p = bp_malloc(n);
  if (!p) oom(n);
  return p;
}

void *bp_xrealloc(void *p, size_t n) {
  if (alloc_countdown >= 0) {
    if (alloc_countdown == 0) oom(n);
    alloc_countdown--;
  }
  void *q = realloc(p, n ? n : 1);
  if (!q) oom(n);
  return q;
}

Arena *arena_new(void) {
  Arena *a = bp_xmalloc(sizeof *a);
  a->head = NULL;
  a->total = 0;
  return a;
}

void arena_free(Arena *a) {
  if (!a) return;
  for (Block *b = a->head, *next; b; b = next) {
    next = b->next;
    bp_free(b);
  }
  bp_free(a);
}

void *arena_alloc(Arena *a, size_t n) {
  n = (n + 15) & ~(size_t)15;
  Block *b = a->head;
  if (!b || b->cap - b->used < n) {
    size_t cap = n > 60000 ? n : 64 * 1024 - sizeof(Block);
    b = bp_xmalloc(sizeof(Block) + cap);
    b->cap = cap;
    b->used = 0;
    b->next = a->head;
    a->head = b;
  }
  void *p = b->data + b->used;
  b->used += n;
  a->total += n;
  memset(p, 0, n);
  return p;
}

char *arena_strndup(Arena *a, const char *s, size_t n) {
  char *p = arena_alloc(a, n + 1);
  memcpy(p, s, n);
  p[n] = 0;
  return p;
}

char *arena_strdup(Arena *a, const char *s) { return arena_strndup(a, s, strlen(s)); }

char *arena_printf(Arena *a, const char *fmt, ...) {
  va_list ap, ap2;
  va_start(ap, fmt);
  va_copy(ap2, ap);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  char *p = arena_alloc(a, (size_t)n + 1);
  vsnprintf(p, (size_t)n + 1, fmt, ap2);
  va_end(ap2);
  return p;
}
