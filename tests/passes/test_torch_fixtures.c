/* tests/passes/test_torch_fixtures.c — bpcc's gradients equal PyTorch's.
 *
 * tests/fixtures/make_fixtures.py (run once with /usr/bin/python3; its output is
 * committed) stores, for a model, a batch, the weights, and the loss and every gradient
 * computed by torch.autograd in float64. This test needs no Python: it lowers the same
 * .bp model, runs the whole pass pipeline (canonicalize, autodiff, simplify), runs the
 * result in the reference interpreter in f32 with those inputs and weights, and compares
 * the loss and every gradient with a max-diff report per tensor (llm.c's test_gpt2.c):
 *
 *     |bpcc - torch| <= 1e-5 * max(|torch|, 0.01 * max|torch over the tensor|)
 *
 * i.e. 1e-5 relative, with a floor at 1% of the tensor's largest entry so that entries
 * that are nearly zero (where f32 rounding of a sum of cancelling terms dominates) are
 * held to 1e-7 of the tensor's scale instead. The same check runs with the softmax-CE
 * rule off (-fno-softmax-xent). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "frontend/frontend.h"
#include "ir/ir.h"
#include "passes/passes.h"
#include "tests/compile.h"

#define REL_TOL 1e-5
#define FLOOR_FRACTION 0.01
#define MAX_TENSORS 32

typedef struct {
  char kind[16], name[64];
  int rank;
  int64_t dims[IR_MAX_RANK];
  int64_t n;
  double *v;
} FxTensor;

typedef struct {
  FxTensor t[MAX_TENSORS];
  int n;
} Fixture;

static char *slurp(const char *path, size_t *len) {
  FILE *fp = fopen(path, "rb");
  if (!fp) return NULL;
  size_t cap = 1 << 16, n = 0, k;
  char *s = bp_xmalloc(cap);
  while ((k = fread(s + n, 1, cap - n - 1, fp)) > 0) {
    n += k;
    if (n + 1 == cap) s = bp_xrealloc(s, cap *= 2);
  }
  fclose(fp);
  s[n] = 0;
  *len = n;
  return s;
}

static char *source_path(const char *rel) {
  const char *root = getenv("BPCC_SOURCE_DIR");
  static char buf[4096];
  snprintf(buf, sizeof buf, "%s/%s", root ? root : ".", rel);
  return buf;
}

static void load_fixture(const char *rel, Fixture *fx) {
  size_t len;
  char *text = slurp(source_path(rel), &len);
  if (!text) fail_msg("cannot read %s (run /usr/bin/python3 tests/fixtures/make_fixtures.py)", rel);
  memset(fx, 0, sizeof *fx);
  char *p = text;
  while (*p) {
    char *eol = strchr(p, '\n');
    if (eol) *eol = 0;
    if (*p == '#' || *p == 0) {
      p = eol ? eol + 1 : p + strlen(p);
      continue;
    }
    if (fx->n == MAX_TENSORS) fail_msg("%s: more than %d tensors", rel, MAX_TENSORS);
    FxTensor *t = &fx->t[fx->n++];
    int used = 0;
    if (sscanf(p, "%15s %63s %d%n", t->kind, t->name, &t->rank, &used) != 3 || t->rank < 0 || t->rank > IR_MAX_RANK)
      fail_msg("%s: bad header line '%s'", rel, p);
    char *q = p + used;
    t->n = 1;
    for (int i = 0; i < t->rank; i++) {
      t->dims[i] = strtoll(q, &q, 10);
      t->n *= t->dims[i];
    }
    if (strcmp(t->kind, "label") == 0) t->n = t->dims[0];   /* one class index per row */
    if (!eol) fail_msg("%s: '%s' has no values", rel, t->name);
    q = eol + 1;
    t->v = bp_xmalloc((size_t)(t->n ? t->n : 1) * sizeof *t->v);
    for (int64_t i = 0; i < t->n; i++) {
      char *end;
      t->v[i] = strtod(q, &end);
      if (end == q) fail_msg("%s: '%s' has %lld values, needs %lld", rel, t->name, (long long)i, (long long)t->n);
      q = end;
    }
    eol = strchr(q, '\n');
    p = eol ? eol + 1 : q + strlen(q);
  }
  bp_free(text);
}

static FxTensor *find(Fixture *fx, const char *kind, const char *name) {
  for (int i = 0; i < fx->n; i++)
    if (strcmp(fx->t[i].kind, kind) == 0 && strcmp(fx->t[i].name, name) == 0) return &fx->t[i];
  return NULL;
}

static void free_fixture(Fixture *fx) {
  for (int i = 0; i < fx->n; i++) bp_free(fx->t[i].v);
}

/* Compare one tensor; prints the max-diff line; returns true if within tolerance. */
static bool compare(const char *what, const double *got, const double *want, int64_t n) {
  double scale = 0, maxdiff = 0, worst = 0;
  int64_t at = 0;
  for (int64_t i = 0; i < n; i++) scale = fmax(scale, fabs(want[i]));
  for (int64_t i = 0; i < n; i++) {
    double d = fabs(got[i] - want[i]);
    double rel = d / fmax(fabs(want[i]), FLOOR_FRACTION * scale);
    if (!(rel <= worst)) {
      worst = rel;
      at = i;
    }
    maxdiff = fmax(maxdiff, d);
  }
  bool ok = n == 0 || scale == 0 ? maxdiff == 0 : worst <= REL_TOL;
  printf("  %-10s %7lld elements  max |diff| %.3e  max rel %.3e (at %lld: bpcc %.9g, torch %.9g)  %s\n", what,
         (long long)n, maxdiff, worst, (long long)at, n ? got[at] : 0.0, n ? want[at] : 0.0, ok ? "ok" : "FAIL");
  return ok;
}

static void check_model(const char *bp_rel, const char *fixture_rel, bool xent) {
  Fixture fx;
  load_fixture(fixture_rel, &fx);
  size_t len;
  char *src = slurp(source_path(bp_rel), &len);
  if (!src) fail_msg("cannot read %s", bp_rel);
  diag_reset();
  Arena *arena = arena_new();
  FeUnit *u = fe_compile_text(arena, bp_rel, src, len);
  bp_free(src);
  if (!u || u->nmodels < 1 || diag_error_count()) fail_msg("%s does not compile", bp_rel);
  Module *m = ir_module_new();
  Func *fwd = fe_lower(m, u->models[0]);
  PassOptions opt;
  pass_options_default(&opt);
  opt.verify = true;
  opt.softmax_xent = xent;
  Func *g = test_grad(fwd, &opt);
  assert_non_null(g);

  /* inputs by argument index, params in instruction order, from the fixture by name */
  Tensor inputs[8], params[MAX_TENSORS];
  int ni = 0, np = 0;
  int64_t batch = -1;
  const char *pnames[MAX_TENSORS];
  for (int32_t i = 0; i < g->ninsts; i++) {
    const Inst *in = &g->insts[i];
    if (in->op != OP_INPUT && in->op != OP_PARAM) continue;
    bool label = ir_vtype(g, i)->dtype == DT_LABEL;
    FxTensor *t = find(&fx, in->op == OP_PARAM ? "param" : label ? "label" : "input", in->name);
    if (!t) fail_msg("%s: the fixture has no %s '%s'", fixture_rel, ir_ops[in->op].name, in->name);
    TensorType ty = *ir_vtype(g, i);
    for (int d = 0; d < ty.rank; d++) {
      if (ty.dims[d] == DIM_BATCH) ty.dims[d] = batch = t->dims[d];
      if (ty.dims[d] != t->dims[d])
        fail_msg("%s: '%s' has dim %d = %lld in the fixture, %lld in the model", fixture_rel, in->name, d,
                 (long long)t->dims[d], (long long)ty.dims[d]);
    }
    Tensor x = ir_tensor_new(&ty);
    assert_int_equal(x.numel, t->n);
    memcpy(x.data, t->v, (size_t)t->n * sizeof *x.data);
    if (in->op == OP_INPUT) {
      assert_true(in->iattr[0] >= 0 && in->iattr[0] < 8);
      inputs[in->iattr[0]] = x;
      ni++;
    } else {
      pnames[np] = in->name;
      params[np++] = x;
    }
  }
  assert_true(batch > 0);
  Interp *it = ir_interp_run(g, INTERP_F32, batch, inputs, ni, params, np, 1, 1);
  assert_non_null(it);

  printf("%s vs PyTorch (f32 interpreter, batch %lld%s):\n", bp_rel, (long long)batch,
         xent ? "" : ", -fno-softmax-xent");
  bool ok = true;
  int grads = 0;
  for (int32_t i = 0; i < g->ninsts; i++) {
    const Inst *in = &g->insts[i];
    if (in->op == OP_LOSS) {
      ok &= compare("loss", ir_interp_value(it, in->args[0])->data, find(&fx, "loss", "loss")->v, 1);
    } else if (in->op == OP_GRAD) {
      const char *name = g->insts[in->args[0]].name;
      FxTensor *want = find(&fx, "grad", name);
      if (!want) fail_msg("%s: no gradient of '%s'", fixture_rel, name);
      const Tensor *got = ir_interp_value(it, in->args[1]);
      assert_int_equal(got->numel, want->n);
      char label[64];
      snprintf(label, sizeof label, "d %s", name);
      ok &= compare(label, got->data, want->v, want->n);
      grads++;
    }
  }
  assert_int_equal(grads, np);
  (void)pnames;
  ir_interp_free(it);
  for (int i = 0; i < ni; i++) ir_tensor_free(&inputs[i]);
  for (int i = 0; i < np; i++) ir_tensor_free(&params[i]);
  ir_module_free(m);
  arena_free(arena);
  free_fixture(&fx);
  if (!ok) fail_msg("%s: gradients differ from PyTorch's beyond %g relative (table above)", bp_rel, REL_TOL);
}

static void test_mlp_small(void **state) {
  (void)state;
  check_model("tests/fixtures/mlp_small.bp", "tests/fixtures/mlp_small.fixture", true);
  check_model("tests/fixtures/mlp_small.bp", "tests/fixtures/mlp_small.fixture", false);
}

static void test_custom_loss(void **state) {
  (void)state;
  check_model("examples/custom_loss.bp", "tests/fixtures/custom_loss.fixture", true);
  check_model("examples/custom_loss.bp", "tests/fixtures/custom_loss.fixture", false);
}

/* layer norm over the last dim and over two dims (eps 1e-3), and ln after a dense
 * layer: forward by the layernorm op, gradients by its closed-form VJP */
static void test_layernorm_small(void **state) {
  (void)state;
  check_model("tests/fixtures/layernorm_small.bp", "tests/fixtures/layernorm_small.fixture", true);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_mlp_small),
      cmocka_unit_test(test_custom_loss),
      cmocka_unit_test(test_layernorm_small),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
