/* tests/train/jit.h — compile a .bp text to a JIT'd model in-process, the way `bpcc
 * train` does (frontend, lower, autodiff pipeline, codegen, ORC JIT), for the loop tests. */
#ifndef BPCC_TESTS_TRAIN_JIT_H
#define BPCC_TESTS_TRAIN_JIT_H

#include "runtime/train.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "codegen/codegen.h"
#include "frontend/frontend.h"
#include "passes/passes.h"
#include "tests/compile.h"

typedef struct {
  Arena *arena;
  Module *module;
  CgModel *cg;
  const bprt_model_desc *desc;
  TrainSpec train;
} TestJit;

/* NULL pointers in *j and a message on stderr when the text does not compile. hyper:
 * BPRT_H__COUNT values, or NULL for the optimizer's PyTorch defaults. */
static inline bool test_jit(TestJit *j, const char *text, int optimizer, const double *hyper) {
  memset(j, 0, sizeof *j);
  j->arena = arena_new();
  FeUnit *u = fe_compile_text(j->arena, "test.bp", text, strlen(text));
  if (!u || diag_error_count() || u->nmodels < 1) return false;
  FeModel *fm = u->models[0];
  j->train = fm->train;
  j->module = ir_module_new();
  Func *f = fe_lower(j->module, fm);
  Func *g = test_grad(f, NULL);
  if (!g) return false;
  bprt_optimizer_config opt;
  bprt_optimizer_init(&opt, optimizer);
  if (hyper) memcpy(opt.hyper, hyper, sizeof opt.hyper);
  CgOptions co = {"native", 2, 2, false, false};
  j->cg = test_build(f, g, &opt, &co);
  if (!j->cg || cg_model_jit(j->cg) != 0) return false;
  j->desc = cg_model_desc(j->cg);
  return true;
}

/* As test_jit, with loss scaling (bprt_loss_scale_mode and its scale) compiled in, as
 * `--loss-scale` compiles it: the backward seeded with `loss_scale`, the descriptor's
 * mode and initial scale set. */
static inline bool test_jit_scaled(TestJit *j, const char *text, int optimizer, const double *hyper, int mode,
                                   double scale) {
  memset(j, 0, sizeof *j);
  j->arena = arena_new();
  FeUnit *u = fe_compile_text(j->arena, "test.bp", text, strlen(text));
  if (!u || diag_error_count() || u->nmodels < 1) return false;
  FeModel *fm = u->models[0];
  j->train = fm->train;
  j->module = ir_module_new();
  Func *f = fe_lower(j->module, fm);
  PassOptions po;
  pass_options_default(&po);
  po.loss_scale = mode != BPRT_LOSS_SCALE_OFF;
  Func *g = test_grad(f, &po);
  if (!g) return false;
  bprt_optimizer_config opt;
  bprt_optimizer_init(&opt, optimizer);
  if (hyper) memcpy(opt.hyper, hyper, sizeof opt.hyper);
  CgOptions co = {"native", 2, 2, false, false};
  j->cg = test_build(f, g, &opt, &co);
  if (!j->cg || cg_model_jit(j->cg) != 0) return false;
  bprt_model_desc *d = cg_model_desc(j->cg);
  d->loss_scale_mode = mode;
  d->loss_scale = scale;
  j->desc = d;
  return true;
}

static inline void test_jit_free(TestJit *j) {
  if (j->cg) cg_model_free(j->cg);
  if (j->module) ir_module_free(j->module);
  if (j->arena) arena_free(j->arena);
  memset(j, 0, sizeof *j);
}

/* A fresh temporary directory (removed by the caller with test_rmdir). */
static inline char *test_tmpdir(void) {
  const char *base = getenv("TMPDIR");
  static char buf[4096];
  snprintf(buf, sizeof buf, "%s/bpcc-train-XXXXXX", base && *base ? base : "/tmp");
  return mkdtemp(buf) ? strdup(buf) : NULL;
}

static inline char *test_path(const char *dir, const char *name) {
  size_t n = strlen(dir) + strlen(name) + 2;
  char *p = malloc(n);
  snprintf(p, n, "%s/%s", dir, name);
  return p;
}

/* Read a whole file; NULL if absent. */
static inline char *test_slurp(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *b = malloc((size_t)n + 1);
  size_t got = fread(b, 1, (size_t)n, f);
  fclose(f);
  b[got] = 0;
  if (len) *len = got;
  return b;
}

#endif
