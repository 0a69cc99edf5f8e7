/* tests/codegen/test_cg_models.c — every example model (examples/NAME.bp), the
 * rank-3 reduction model of tests/passes and reductions over every axis of ranks 2-4
 * (with and without keep) through the frontend, autodiff and codegen, against the
 * reference interpreter: the forward entry's outputs and the grad entry's outputs, loss
 * and every gradient, at batch sizes 1, 7 and 33 (the generated reductions: 1 and 7),
 * tolerance 1e-5 relative to each tensor's scale (harness.h). Inputs are
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

static const int64_t all_batches[] = {1, 7, 33};

static int check_text(const char *path, const char *text, size_t len, const int64_t *batches, int nbatches) {
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
    for (int prec = 0; prec < 2; prec++)
      for (int b = 0; b < nbatches; b++) {
        CgtConfig c = {-1, 1, 1, NULL, true, prec == 1};
        double tol = prec == 1 ? 1e-12 : 1e-5;
        int r = cgt_check_forward(fwd, batches[b], tol, &c) + cgt_check_grad(fwd, grad, batches[b], tol, &c);
        if (r) printf("%s: model %s at batch %lld (%s) failed\n", path, fwd->name, (long long)batches[b], prec ? "f64" : "f32");
        fails += r;
      }
    ir_module_free(m);
  }
  arena_free(a);
  return fails;
}

static int check_file(const char *path) {
  size_t len = 0;
  char *text = slurp(path, &len);
  assert_non_null(text);
  int fails = check_text(path, text, len, all_batches, 3);
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

/* tests/passes/reduce_rank3.bp: sum over the inner axis of a rank-3 value without keep
 * (defect 5), mean over the last axis, max with keep broadcast back against its input. */
static void test_reduce_rank3(void **state) {
  (void)state;
  const char *root = getenv("BPCC_SOURCE_DIR");
  char path[1024];
  snprintf(path, sizeof path, "%s/tests/passes/reduce_rank3.bp", root ? root : ".");
  assert_int_equal(check_file(path), 0);
}

/* tests/passes/reshape_rank4.bp: reshape (written and -1 shapes, back to rank 4) and
 * flatten of a rank-4 input, in a layer and in the model, each after a parameter. */
static void test_reshape_rank4(void **state) {
  (void)state;
  const char *root = getenv("BPCC_SOURCE_DIR");
  char path[1024];
  snprintf(path, sizeof path, "%s/tests/passes/reshape_rank4.bp", root ? root : ".");
  assert_int_equal(check_file(path), 0);
}

/* tests/passes/pool_rank4.bp: max_pool2d, avg_pool2d (strides, padding, in a layer)
 * and global_avg_pool of a rank-4 input, each after a parameter. */
static void test_pool_rank4(void **state) {
  (void)state;
  const char *root = getenv("BPCC_SOURCE_DIR");
  char path[1024];
  snprintf(path, sizeof path, "%s/tests/passes/pool_rank4.bp", root ? root : ".");
  assert_int_equal(check_file(path), 0);
}

/* tests/passes/conv_small.bp: the standard library's conv (conv2d + bias), relu, a
 * strided, padded, dilated conv2d in a layer: forward, loss and every gradient (the
 * conv2d_bwd_data and conv2d_bwd_weight kernels) against the interpreter. */
static void test_conv_small(void **state) {
  (void)state;
  const char *root = getenv("BPCC_SOURCE_DIR");
  char path[1024];
  snprintf(path, sizeof path, "%s/tests/passes/conv_small.bp", root ? root : ".");
  assert_int_equal(check_file(path), 0);
}

/* tests/passes/bn_small.bp: bn, resblock and bn1d: the forward entry (running
 * statistics) and the grad entry (batch statistics, the closed-form backward, the
 * running-stat updates) against the interpreter, at batches 1, 7 and 33. */
static void test_bn_small(void **state) {
  (void)state;
  const char *root = getenv("BPCC_SOURCE_DIR");
  char path[1024];
  snprintf(path, sizeof path, "%s/tests/passes/bn_small.bp", root ? root : ".");
  assert_int_equal(check_file(path), 0);
}

/* tests/passes/layernorm_small.bp: layernorm at ranks 2, 3 and 4 (ln, ln_seq, ln_image,
 * dims = 2 with eps = 1e-3): forward, loss and every gradient (the layernorm_bwd and
 * layernorm_bwd_gamma kernels, sum_to for beta) against the interpreter. */
static void test_layernorm_small(void **state) {
  (void)state;
  const char *root = getenv("BPCC_SOURCE_DIR");
  char path[1024];
  snprintf(path, sizeof path, "%s/tests/passes/layernorm_small.bp", root ? root : ".");
  assert_int_equal(check_file(path), 0);
}

/* sum, mean and max over every axis (and all axes) of ranks 2, 3 and 4, with and
 * without keep, from .bp source: the JIT's forward outputs, loss and gradients against
 * the interpreter. One model per rank and keep; each reduction r is an output and adds
 * sum(r * r) to the loss, so its adjoint 2r differs from element to element (a uniform
 * adjoint would hide a gradient spread along the wrong axis). The last dim is 17: a
 * full vector and a tail. Batches 1 and 7 (33 adds time, not coverage, here). */
static void test_reductions_every_axis(void **state) {
  (void)state;
  static const char *const dims[] = {"17", "5, 17", "3, 2, 17"};
  static const char *const ops[] = {"sum", "mean", "max"};
  int fails = 0;
  for (int rank = 2; rank <= 4; rank++)
    for (int keep = 0; keep < 2; keep++) {
      char text[8192], loss[4096];
      size_t k = 0, l = 0;
      const char *d = dims[rank - 2];
      k += (size_t)snprintf(text + k, sizeof text - k,
                            "layer scale(x: [B, %s]) {\n    param s: [%s] init uniform(-1, 1)\n    return x * s\n}\n"
                            "model red%d(x: f32[B, %s]) {\n    h = scale(x)\n", d, d, rank, d);
      for (int o = 0; o < 3; o++)
        for (int axis = -1; axis < rank; axis++) {
          char arg[32] = "";
          if (axis >= 0) snprintf(arg, sizeof arg, ", axis = %d", axis);
          k += (size_t)snprintf(text + k, sizeof text - k, "    output %s%s = %s(h%s%s)\n", ops[o],
                                axis < 0 ? "_all" : (const char *[]){"0", "1", "2", "3"}[axis], ops[o], arg,
                                keep ? ", keep = true" : "");
          l += (size_t)snprintf(loss + l, sizeof loss - l, "%ssum(%s%s ^ 2)", l ? " + " : "", ops[o],
                                axis < 0 ? "_all" : (const char *[]){"0", "1", "2", "3"}[axis]);
        }
      k += (size_t)snprintf(text + k, sizeof text - k, "    loss %s\n}\n", loss);
      assert_true(k < sizeof text && l < sizeof loss);
      char name[64];
      snprintf(name, sizeof name, "red%d%s.bp", rank, keep ? "_keep" : "");
      static const int64_t batches[] = {1, 7};
      int r = check_text(name, text, k, batches, 2);
      if (r) printf("%s:\n%s", name, text);
      fails += r;
    }
  assert_int_equal(fails, 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_examples), cmocka_unit_test(test_reduce_rank3),
                                     cmocka_unit_test(test_reshape_rank4), cmocka_unit_test(test_conv_small),
                                     cmocka_unit_test(test_pool_rank4), cmocka_unit_test(test_bn_small),
                                     cmocka_unit_test(test_layernorm_small),
                                     cmocka_unit_test(test_reductions_every_axis)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
