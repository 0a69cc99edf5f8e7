/* tests/codegen/test_cg_models.c — every example model (examples/NAME.bp) through the
 * frontend, autodiff and codegen, against the reference interpreter: the forward
 * entry's outputs and the grad entry's outputs, loss and every gradient, at batch sizes
 * 1, 7 and 33, tolerance 1e-5 relative to each tensor's scale (harness.h). Inputs are
 * U(-1, 1), weights U(-1, 1) sqrt(3 / fan_in): the scale of a trained network. Then
 * the same in f64: the lowered and differentiated functions with every f32 type made
 * f64 (cgt_func_to_f64), double code against INTERP_F64, tolerance 1e-12 in the same
 * norm: |jit - ref| <= 1e-12 max(1, max |ref|) per tensor. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frontend/frontend.h"
#include "passes/passes.h"
#include "tests/codegen/harness.h"
#include "tests/compile.h"

static char *slurp(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *s = malloc((size_t)n + 1);
  *len = fread(s, 1, (size_t)n, f);
  s[*len] = 0;
  fclose(f);
  return s;
}

static int check_file(const char *path) {
  size_t len = 0;
  char *text = slurp(path, &len);
  assert_non_null(text);
  Arena *a = arena_new();
  int errors = diag_error_count();
  FeUnit *u = fe_compile_text(a, path, text, len);
  assert_non_null(u);
  assert_int_equal(diag_error_count(), errors);
  int fails = 0;
  for (int k = 0; k < u->nmodels; k++) {
    Module *m = ir_module_new();
    Func *fwd = fe_lower(m, u->models[k]);
    Func *grad = test_grad(fwd, NULL);
    assert_non_null(grad);
    static const int64_t batches[] = {1, 7, 33};
    for (int prec = 0; prec < 2; prec++)
      for (int b = 0; b < 3; b++) {
        CgtConfig c = {-1, 1, 1, NULL, true, prec == 1};
        double tol = prec == 1 ? 1e-12 : 1e-5;
        int r = cgt_check_forward(fwd, batches[b], tol, &c) + cgt_check_grad(fwd, grad, batches[b], tol, &c);
        if (r) printf("%s: model %s at batch %lld (%s) failed\n", path, fwd->name, (long long)batches[b], prec ? "f64" : "f32");
        fails += r;
      }
    ir_module_free(m);
  }
  arena_free(a);
  free(text);
  return fails;
}

static void test_examples(void **state) {
  (void)state;
  const char *root = getenv("BPCC_SOURCE_DIR");
  char dir[1024];
  snprintf(dir, sizeof dir, "%s/examples", root ? root : ".");
  DIR *d = opendir(dir);
  assert_non_null(d);
  int files = 0, fails = 0;
  for (struct dirent *e; (e = readdir(d));) {
    size_t n = strlen(e->d_name);
    if (n < 4 || strcmp(e->d_name + n - 3, ".bp") != 0) continue;
    char path[2048];
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    fails += check_file(path);
    files++;
  }
  closedir(d);
  assert_true(files >= 1);
  assert_int_equal(fails, 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_examples)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
