/* tests/memplan/test_recompute_models.c — checkpointing on real models: bench/m3_deep.bp and
 * every .bp file in examples/ and tests/memplan/residual.bp, lowered by the frontend and differentiated by the pass
 * pipeline. For each of --checkpoint=sqrt and auto (and a budget between the smallest
 * feasible one and keep-all), the loss and every gradient through the reference
 * interpreter are bitwise equal to those without checkpointing, in f32 and in f64; the
 * memory plan of each is checked (no two live values overlap); and on m3_deep, sqrt
 * keeps at least 3x fewer activation bytes than none. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "frontend/frontend.h"
#include "passes/memplan.h"
#include "passes/passes.h"
#include "tests/compile.h"

#define BATCH 3

static char *slurp(const char *path, size_t *len) {
  FILE *fp = fopen(path, "rb");
  if (!fp) return NULL;
  fseek(fp, 0, SEEK_END);
  long n = ftell(fp);
  rewind(fp);
  char *s = bp_xmalloc((size_t)n + 1);
  *len = fread(s, 1, (size_t)n, fp);
  s[*len] = 0;
  fclose(fp);
  return s;
}

typedef struct {
  Arena *arena;
  Module *mod;
  Func *grad;
} Model;

static bool load(const char *path, Model *m) {
  size_t len = 0;
  char *src = slurp(path, &len);
  if (!src) fail_msg("cannot read %s", path);
  diag_reset();
  m->arena = arena_new();
  FeUnit *u = fe_compile_text(m->arena, path, src, len);
  bp_free(src);
  if (!u || u->nmodels < 1 || diag_error_count()) fail_msg("%s does not compile", path);
  if (u->models[0]->loss < 0) return false;  /* inference only: nothing to checkpoint */
  m->mod = ir_module_new();
  Func *fwd = fe_lower(m->mod, u->models[0]);
  PassOptions opt;
  pass_options_default(&opt);
  opt.verify = true;
  m->grad = test_grad(fwd, &opt);
  assert_non_null(m->grad);
  return true;
}

static void release(Model *m) {
  if (m->mod) ir_module_free(m->mod);
  arena_free(m->arena);
}

static uint64_t rng(uint64_t *s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
static double urand(uint64_t *s) { return (double)(rng(s) >> 11) * 0x1.0p-53; }

/* The loss and every gradient of f, concatenated (bp_malloc'd; *n values). */
static double *grads_of(Func *f, InterpMode mode, int64_t *n) {
  Tensor inputs[8], params[256];
  int ni = 0, np = 0;
  uint64_t st = 42;
  for (int32_t i = 0; i < f->ninsts; i++) {
    const Inst *in = &f->insts[i];
    if (in->op != OP_INPUT && in->op != OP_PARAM) continue;
    TensorType t = *ir_vtype(f, i);
    for (int d = 0; d < t.rank; d++)
      if (t.dims[d] == DIM_BATCH) t.dims[d] = BATCH;
    Tensor x = ir_tensor_new(&t);
    for (int64_t k = 0; k < x.numel; k++)
      x.data[k] = t.dtype == DT_LABEL ? floor(urand(&st) * (double)t.dims[t.rank - 1]) : 0.5 * (2 * urand(&st) - 1);
    if (in->op == OP_INPUT) {
      assert_true(in->iattr[0] >= 0 && in->iattr[0] < 8);
      inputs[in->iattr[0]] = x;
      ni++;
    } else {
      assert_true(np < 256);
      params[np++] = x;
    }
  }
  Interp *it = ir_interp_run(f, mode, BATCH, inputs, ni, params, np, 7, 3);
  assert_non_null(it);
  int64_t total = 0;
  for (int32_t i = 0; i < f->ninsts; i++) {
    const Inst *in = &f->insts[i];
    if (in->op == OP_LOSS || in->op == OP_GRAD) total += ir_interp_value(it, in->args[in->op == OP_GRAD])->numel;
  }
  double *out = bp_xmalloc((size_t)(total ? total : 1) * sizeof *out);
  int64_t k = 0;
  for (int32_t i = 0; i < f->ninsts; i++) {
    const Inst *in = &f->insts[i];
    if (in->op != OP_LOSS && in->op != OP_GRAD) continue;
    const Tensor *t = ir_interp_value(it, in->args[in->op == OP_GRAD]);
    memcpy(out + k, t->data, (size_t)t->numel * sizeof *out);
    k += t->numel;
  }
  *n = total;
  ir_interp_free(it);
  for (int i = 0; i < ni; i++) ir_tensor_free(&inputs[i]);
  for (int i = 0; i < np; i++) ir_tensor_free(&params[i]);
  return out;
}

static void check_no_overlap(Func *g) {
  MemPlan *p = memplan_build(g, BATCH);
  for (int32_t i = 0; i < p->nvals; i++) {
    const MemValue *a = &p->vals[i];
    if (!a->in_workspace) continue;
    for (int32_t j = i + 1; j < p->nvals; j++) {
      const MemValue *b = &p->vals[j];
      if (!b->in_workspace || a->last < b->def || b->last < a->def) continue;
      int64_t ao = mem_at(a->offset, BATCH), bo = mem_at(b->offset, BATCH);
      assert_true(ao + mem_at(a->slot, BATCH) <= bo || bo + mem_at(b->slot, BATCH) <= ao);
    }
  }
  memplan_free(p);
}

/* Every checkpointing plan gives the same bits as none. */
static void check_model(const char *path) {
  Model m = {0};
  if (!load(path, &m)) {
    release(&m);
    return;
  }
  int64_t n0, n1;
  double *ref32 = grads_of(m.grad, INTERP_F32, &n0);
  double *ref64 = grads_of(m.grad, INTERP_F64, &n0);
  RecomputeOptions none = {RECOMPUTE_NONE, 0, BATCH, 2, NULL, NULL};
  RecomputeResult rn, rmin;
  assert_ptr_equal(pass_recompute(m.grad, &none, &rn), m.grad);
  RecomputeOptions aut = {RECOMPUTE_AUTO, 0, BATCH, 2, NULL, NULL};
  assert_non_null(pass_recompute(m.grad, &aut, &rmin));
  RecomputeOptions plans[3] = {{RECOMPUTE_SQRT, 0, BATCH, 2, NULL, NULL}, {RECOMPUTE_AUTO, 0, BATCH, 2, NULL, NULL},
                          {RECOMPUTE_AUTO, (rn.total + rmin.min_feasible) / 2, BATCH, 2, NULL, NULL}};
  int recomputing = 0;
  for (int k = 0; k < 3; k++) {
    RecomputeResult r;
    Func *g = pass_recompute(m.grad, &plans[k], &r);
    assert_non_null(g);
    if (plans[k].budget) assert_true(r.total <= plans[k].budget);
    if (g == m.grad) continue;
    recomputing++;
    assert_true(ir_verify(g, "checkpoint"));
    check_no_overlap(g);
    double *a = grads_of(g, INTERP_F32, &n1);
    assert_int_equal(n0, n1);
    assert_memory_equal(a, ref32, (size_t)n0 * sizeof *a);
    bp_free(a);
    a = grads_of(g, INTERP_F64, &n1);
    assert_memory_equal(a, ref64, (size_t)n0 * sizeof *a);
    bp_free(a);
  }
  printf("%s: %d activations read by backward, %d checkpointed plans bitwise equal (f32, f64)\n", path,
         rn.ncandidates, recomputing);
  bp_free(ref32);
  bp_free(ref64);
  release(&m);
}

static const char *src_dir(void) {
  const char *s = getenv("BPCC_SOURCE_DIR");
  return s ? s : ".";
}

static void test_m3_deep(void **state) {
  (void)state;
  char path[4096];
  snprintf(path, sizeof path, "%s/bench/m3_deep.bp", src_dir());
  check_model(path);
  /* the done-when figure: sqrt keeps at least 3x fewer bytes than none at batch 256 */
  Model m = {0};
  assert_true(load(path, &m));
  RecomputeOptions none = {RECOMPUTE_NONE, 0, 256, 1, NULL, NULL}, sq = {RECOMPUTE_SQRT, 0, 256, 1, NULL, NULL};
  Func *g = pass_recompute(m.grad, &sq, NULL);
  MemPlan *p0 = memplan_build(m.grad, 256), *p1 = memplan_build(g, 256);
  MemTotals t0 = memplan_totals(p0, 256, 1), t1 = memplan_totals(p1, 256, 1);
  printf("m3_deep at batch 256: kept %lld bytes (none), %lld bytes (sqrt)\n", (long long)t0.kept, (long long)t1.kept);
  assert_int_equal(t0.kept, 17ll * 256 * 512 * 4);  /* h1..h16 and pred - y */
  assert_true(t0.kept >= 3 * t1.kept);
  (void)none;
  memplan_free(p0);
  memplan_free(p1);
  release(&m);
}

/* Skip connections, dropout masks, several activations: a general graph. */
static void test_residual(void **state) {
  (void)state;
  char path[4096];
  snprintf(path, sizeof path, "%s/tests/memplan/residual.bp", src_dir());
  check_model(path);
}

static void test_examples(void **state) {
  (void)state;
  char dir[4096];
  snprintf(dir, sizeof dir, "%s/examples", src_dir());
  DIR *d = opendir(dir);
  assert_non_null(d);
  int count = 0;
  struct dirent *e;
  while ((e = readdir(d))) {
    size_t n = strlen(e->d_name);
    if (n < 4 || strcmp(e->d_name + n - 3, ".bp") != 0) continue;
    char path[8192];
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    check_model(path);
    count++;
  }
  closedir(d);
  assert_true(count >= 2);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_m3_deep),
      cmocka_unit_test(test_residual),
      cmocka_unit_test(test_examples),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
