/* tests/ir/helpers.h — small helpers shared by the IR tests (header-only). */
#ifndef BPCC_TESTS_IR_HELPERS_H
#define BPCC_TESTS_IR_HELPERS_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ir/ir.h"

#define LOC(l, c) ((SrcLoc){0, (l), (c), 0})

/* The type of value v as text, e.g. "f32[B,10]" (a static buffer per call site). */
static inline const char *vtype(Func *f, int32_t v, char *buf, size_t n) {
  return ir_type_str(ir_vtype(f, v), buf, n);
}

static inline TypeId ty(Module *m, DType dt, int rank, int64_t d0, int64_t d1, int64_t d2) {
  int64_t d[3] = {d0, d1, d2};
  return ir_type(m, dt, rank, d);
}

/* Read a whole file (bp_malloc'd, NUL-terminated); NULL if it cannot be read. */
static inline char *read_file(const char *path, size_t *len) {
  FILE *fp = fopen(path, "rb");
  if (!fp) return NULL;
  size_t cap = 4096, n = 0;
  char *s = bp_xmalloc(cap);
  size_t k;
  while ((k = fread(s + n, 1, cap - n - 1, fp)) > 0) {
    n += k;
    if (n + 1 == cap) s = bp_xrealloc(s, cap *= 2);
  }
  fclose(fp);
  s[n] = 0;
  if (len) *len = n;
  return s;
}

/* Capture what a piece of code writes to stderr: begin, run, end (bp_malloc'd text). */
typedef struct {
  int saved;
  FILE *tmp;
} Capture;

static inline void capture_begin(Capture *c) {
  fflush(stderr);
  c->tmp = tmpfile();
  c->saved = dup(2);
  dup2(fileno(c->tmp), 2);
}

static inline char *capture_end(Capture *c) {
  fflush(stderr);
  dup2(c->saved, 2);
  close(c->saved);
  long n = (long)lseek(fileno(c->tmp), 0, SEEK_END);
  char *s = bp_xmalloc((size_t)(n > 0 ? n : 0) + 1);
  rewind(c->tmp);
  size_t k = fread(s, 1, (size_t)(n > 0 ? n : 0), c->tmp);
  s[k] = 0;
  fclose(c->tmp);
  return s;
}

#endif
