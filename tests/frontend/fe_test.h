/* tests/frontend/fe_test.h — helpers shared by the frontend tests: run the frontend
 * in-process on a text and capture its diagnostics as a string. */
#ifndef BPCC_FE_TEST_H
#define BPCC_FE_TEST_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frontend/frontend.h"

typedef struct {
  Arena *arena;
  FeUnit *unit;
  int errors;
  char *diags;     /* everything the frontend printed (malloc'd) */
  size_t ndiags;
} FeRun;

/* Parse and check `text` under file name `name`, diagnostics captured. */
static inline FeRun fe_run(const char *name, const char *text, size_t len) {
  FeRun r;
  memset(&r, 0, sizeof r);
  diag_reset();
  FILE *mem = open_memstream(&r.diags, &r.ndiags);
  assert_non_null(mem);
  diag_set_output(mem);
  r.arena = arena_new();
  r.unit = fe_compile_text(r.arena, name, text, len);
  r.errors = diag_error_count();
  diag_set_output(NULL);
  fclose(mem);
  return r;
}

static inline FeRun fe_run_str(const char *text) { return fe_run("t.bp", text, strlen(text)); }

static inline void fe_run_free(FeRun *r) {
  arena_free(r->arena);
  free(r->diags);
  diag_reset();
}

/* Read a file under the source tree ($BPCC_SOURCE_DIR). Caller frees. */
static inline char *fe_read_source(const char *rel, size_t *len) {
  const char *root = getenv("BPCC_SOURCE_DIR");
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", root ? root : ".", rel);
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *buf = malloc((size_t)n + 1);
  size_t got = fread(buf, 1, (size_t)n, f);
  buf[got] = 0;
  fclose(f);
  *len = got;
  return buf;
}

#endif
