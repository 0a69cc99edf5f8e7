/* tests/passes/test_fdcheck.c — fd_check (driver/fdcheck.c), the numerics of gradcheck.
 *
 * The normalization model of issue 11 (defect 7, tests/passes/norm_layer.bp) passes in
 * f64 at batch 6 with nothing left to "within fd error": the fixed five-point stencil
 * failed its correct gradient at 1.29e-7, the adaptive differences resolve it. A wrong
 * gradient still fails: the derived gradient of one parameter, multiplied by a factor
 * in the IR (a mul by a constant before its grad sink), is caught for factors down to
 * 1 + 4e-7 in f64 (relative error 2e-7, twice the threshold) on the very parameter
 * whose curvature defeated the old stencil, and for 1 + 1e-2 in f32. A model
 * with relu and abs (kinks) passes and fails the same way; a gradient function
 * without grad sinks is an error. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "driver/fdcheck.h"
#include "frontend/frontend.h"
#include "ir/ir.h"
#include "passes/passes.h"
#include "tests/compile.h"

typedef struct {
  Arena *arena;
  Module *mod;
  Func *fwd, *grad;
} Model;

/* Lower src and run bpcc's pipeline to the gradient: forward and gradient functions. */
static void compile(Model *m, const char *name, const char *src) {
  m->arena = arena_new();
  FeUnit *u = fe_compile_text(m->arena, name, src, strlen(src));
  if (!u || u->nmodels < 1 || diag_error_count()) fail_msg("%s: the model does not compile", name);
  m->mod = ir_module_new();
  m->fwd = fe_lower(m->mod, u->models[0]);
  assert_non_null(m->fwd);
  PassOptions opt;
  pass_options_default(&opt);
  opt.verify = true;
  m->grad = test_grad(m->fwd, &opt);
  assert_non_null(m->grad);
}

static void release(Model *m) {
  ir_module_free(m->mod);
  arena_free(m->arena);
}

static char *slurp(const char *path) {
  FILE *fp = fopen(path, "rb");
  if (!fp) fail_msg("cannot read %s", path);
  fseek(fp, 0, SEEK_END);
  long n = ftell(fp);
  fseek(fp, 0, SEEK_SET);
  char *s = bp_xmalloc((size_t)n + 1);
  size_t got = fread(s, 1, (size_t)n, fp);
  s[got] = 0;
  fclose(fp);
  return s;
}

static void compile_file(Model *m, const char *rel) {
  const char *dir = getenv("BPCC_SOURCE_DIR");
  char path[1024];
  snprintf(path, sizeof path, "%s/%s", dir ? dir : ".", rel);
  char *src = slurp(path);
  compile(m, rel, src);
  bp_free(src);
}

/* A copy of g in which the gradient of parameter `pname` is multiplied by factor. */
static Func *scaled_gradient(Func *g, const char *pname, double factor) {
  Func *w = ir_func_new(g->mod, "wrong");
  int32_t *map = bp_xmalloc((size_t)g->ninsts * sizeof *map);
  bool found = false;
  for (int32_t i = 0; i < g->ninsts; i++) {
    Inst in = g->insts[i];
    for (int k = 0; k < in.nargs; k++) in.args[k] = map[in.args[k]];
    if (in.op == OP_GRAD && strcmp(g->insts[g->insts[i].args[0]].name, pname) == 0) {
      TypeId t = ir_type_scalar(g->mod, ir_vtype(w, in.args[1])->dtype);
      in.args[1] = ir_binary(w, OP_MUL, in.args[1], ir_const(w, factor, t, in.loc), in.loc);
      found = true;
    }
    map[i] = ir_emit(w, &in);
  }
  bp_free(map);
  if (!found) fail_msg("no grad sink for %s", pname);
  assert_true(ir_verify(w, "scaled_gradient"));
  return w;
}

/* fd_check's status; its report in *report (bp_malloc'd) if report != NULL. */
static int check(Model *m, Func *grad, bool f32, int64_t batch, char **report) {
  FdOptions o = {.f32 = f32, .batch = batch, .seed = 1, .tol = 0};
  FILE *out = tmpfile();
  assert_non_null(out);
  int status = fd_check(m->fwd, grad, &o, out, "test");
  long n = ftell(out);
  rewind(out);
  char *text = bp_xmalloc((size_t)n + 1);
  text[fread(text, 1, (size_t)n, out)] = 0;
  fclose(out);
  if (report) *report = text;
  else bp_free(text);
  return status;
}

/* The report line of parameter pname contains `what`. */
static bool line_has(const char *report, const char *pname, const char *what) {
  char key[64];
  snprintf(key, sizeof key, "\n  %s ", pname);
  const char *l = strstr(report, key);
  if (!l) return false;
  const char *end = strchr(l + 1, '\n');
  const char *hit = strstr(l, what);
  return hit && (!end || hit < end);
}

static void test_norm_layer_passes(void **state) {
  (void)state;
  diag_reset();
  Model m;
  compile_file(&m, "tests/passes/norm_layer.bp");
  char *r;
  int status = check(&m, m.grad, false, 6, &r);
  if (status != 0 || !strstr(r, "gradcheck: passed") || strstr(r, "within fd error"))
    fail_msg("norm_layer.bp, f64, batch 6: status %d\n%s", status, r);
  bp_free(r);
  assert_int_equal(check(&m, m.grad, true, 6, NULL), 0);
  release(&m);
}

static void test_wrong_gradient_fails(void **state) {
  (void)state;
  diag_reset();
  static const struct {
    const char *param;
    double factor;
    bool f32;
  } cases[] = {
      {"h.W", 1.001, false}, {"h.W", 1 + 1e-6, false}, {"h.W", 1 + 4e-7, false}, {"z.b", 1 + 1e-6, false},
      {"h.W", 1.01, true},   {"z.W", 1.01, true},
  };
  Model m;
  compile_file(&m, "tests/passes/norm_layer.bp");
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    Func *w = scaled_gradient(m.grad, cases[k].param, cases[k].factor);
    char *r;
    int status = check(&m, w, cases[k].f32, 6, &r);
    if (status != 1 || !line_has(r, cases[k].param, "FAIL") || !strstr(r, "gradcheck: FAILED"))
      fail_msg("%s * %.9g (%s): status %d\n%s", cases[k].param, cases[k].factor, cases[k].f32 ? "f32" : "f64",
               status, r);
    bp_free(r);
  }
  release(&m);
}

static void test_kinks(void **state) {
  (void)state;
  diag_reset();
  Model m;
  compile(&m, "kinks",
          "model m(x: f32[B, 4], y: label[B, 3]) {\n"
          "    h = relu(dense(x, 8))\n"
          "    a = abs(dense(h, 5))\n"
          "    loss softmax_cross_entropy(dense(a, 3), y)\n"
          "}\n");
  char *r;
  int status = check(&m, m.grad, false, 8, &r);
  if (status != 0) fail_msg("relu/abs model: status %d\n%s", status, r);
  bp_free(r);
  Func *w = scaled_gradient(m.grad, "h.W", 1 + 1e-6);
  status = check(&m, w, false, 8, &r);
  if (status != 1 || !line_has(r, "h.W", "FAIL")) fail_msg("relu/abs model, h.W * (1 + 1e-6): status %d\n%s", status, r);
  bp_free(r);
  release(&m);
}

static void test_no_gradient_is_an_error(void **state) {
  (void)state;
  diag_reset();
  Model m;
  compile_file(&m, "tests/passes/norm_layer.bp");
  FdOptions o = {.f32 = false, .batch = 2, .seed = 1, .tol = 0};
  FILE *out = tmpfile();
  assert_int_equal(fd_check(m.fwd, m.fwd, &o, out, "test"), -1);   /* the forward has no grad sinks */
  fclose(out);
  release(&m);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_norm_layer_passes),
      cmocka_unit_test(test_wrong_gradient_fails),
      cmocka_unit_test(test_kinks),
      cmocka_unit_test(test_no_gradient_is_an_error),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
