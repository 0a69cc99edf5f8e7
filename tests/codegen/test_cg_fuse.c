/* tests/codegen/test_cg_fuse.c — fusion (passes/kernel_plan.c) and the fused kernels.
 *
 * 1. The plan: which groups the rules form on small models (gemm + bias + activation,
 *    activation straight on a product, the activation derivative on the product that
 *    produces the incoming gradient, softmax-CE forward + backward), and where they
 *    must not fire (a product read by anything else, a constant bias).
 * 2. The fused code against the reference interpreter: forward outputs, loss and every
 *    gradient at batch sizes and widths that hit the GEMM's edge tiles (1, 7, 17, 33,
 *    100), on one and on two threads (the product then splits into chunks, and each
 *    chunk's epilogue must find its tiles' place in C), f32 tolerance 1e-5 relative to
 *    each tensor's scale (harness.h). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frontend/frontend.h"
#include "passes/passes.h"
#include "tests/codegen/harness.h"
#include "tests/compile.h"

typedef struct {
  Module *m;
  Func *fwd, *grad;
  Arena *a;
} Compiled;

static Compiled compile(const char *src) {
  Compiled c = {ir_module_new(), NULL, NULL, arena_new()};
  int errors = diag_error_count();
  FeUnit *u = fe_compile_text(c.a, "fuse.bp", src, strlen(src));
  assert_non_null(u);
  assert_int_equal(diag_error_count(), errors);
  assert_int_equal(u->nmodels, 1);
  c.fwd = fe_lower(c.m, u->models[0]);
  assert_non_null(c.fwd);
  c.grad = test_grad(c.fwd, NULL);
  assert_non_null(c.grad);
  return c;
}

static void release(Compiled *c) {
  ir_module_free(c->m);
  arena_free(c->a);
}

/* The groups of f's plan: the count of each kind, and the op names of each fused
 * group joined by '+' (one group a line) into desc. */
static void plan_of(Func *f, int counts[KERNEL__COUNT], char *desc, size_t n) {
  Arena *a = arena_new();
  KernelPlanOptions ko = {true};
  KernelPlan *s = pass_kernel_plan(a, f, PLAN_TRAINING, &ko);
  assert_non_null(s);
  assert_true(kernel_plan_verify(s, "test"));
  memset(counts, 0, KERNEL__COUNT * sizeof *counts);
  size_t k = 0;
  desc[0] = 0;
  for (int g = 0; g < s->ngroups; g++) {
    counts[s->kind[g]]++;
    if (s->kind[g] < KERNEL_GEMM) continue;
    for (int32_t q = s->group_start[g]; q < s->group_start[g + 1] && k + 32 < n; q++)
      k += (size_t)snprintf(desc + k, n - k, "%s%s", q == s->group_start[g] ? "" : "+", ir_ops[f->insts[s->order[q]].op].name);
    if (k + 2 < n) k += (size_t)snprintf(desc + k, n - k, "\n");
  }
  arena_free(a);
}

static const char *mlp =
    "model f(x: f32[B, 33], y: label[B, 7]) {\n"
    "    h1 = sigmoid(dense(x, 17))\n"
    "    h2 = tanh(dense(h1, 100))\n"
    "    h3 = relu(dense(h2, 33))\n"
    "    loss softmax_cross_entropy(dense(h3, 7), y)\n"
    "}\n";

static void test_plan_mlp(void **state) {
  (void)state;
  Compiled c = compile(mlp);
  int counts[KERNEL__COUNT];
  char desc[2048];
  plan_of(c.grad, counts, desc, sizeof desc);
  /* forward: three products with bias and activation, the logits with bias; backward:
   * the three activation derivatives on the products that make dy; softmax-CE once */
  assert_string_equal(desc,
                      "matmul+add+sigmoid\nmatmul+add+tanh\nmatmul+add+relu\nmatmul+add\n"
                      "softmax_xent+softmax+onehot+sub+mul\nmatmul_nt+relu_grad\nmatmul_nt+tanh_grad\nmatmul_nt+sigmoid_grad\n");
  assert_int_equal(counts[KERNEL_GEMM], 7);
  assert_int_equal(counts[KERNEL_XENT], 1);
  release(&c);
}

/* An activation straight on a product (no bias) whose input backward (relu_grad) or
 * an output still reads, and products that must stay alone: one read twice by a
 * multiply, one whose "bias" is a constant. */
static const char *lin =
    "layer lin(x: [B, I], n: int) -> [B, n] {\n"
    "    param W: [I, n] init he_normal\n"
    "    return x @ W\n"
    "}\n"
    "model g(x: f32[B, 15], y: f32[B, 17]) {\n"
    "    a = relu(lin(x, 33))\n"
    "    output z = lin(a, 17)\n"
    "    b = tanh(z)\n"
    "    s = lin(b, 7)\n"
    "    c = lin(s * s, 17) + 0.5\n"
    "    loss mse(c, y)\n"
    "}\n";

static void test_plan_counterexamples(void **state) {
  (void)state;
  Compiled c = compile(lin);
  int counts[KERNEL__COUNT];
  char desc[2048];
  plan_of(c.grad, counts, desc, sizeof desc);
  /* forward: relu on the first product (kept for relu_grad), tanh on z (kept: an
   * output); s * s and the constant add stay elementwise kernels of their own.
   * backward: the derivatives of tanh and relu on the products that make their dy */
  assert_string_equal(desc, "matmul+relu\nmatmul+tanh\nmatmul_nt+tanh_grad\nmatmul_nt+relu_grad\n");
  assert_int_equal(counts[KERNEL_XENT], 0);
  release(&c);
}

/* Convolutions head the same chain (codegen/conv.c): conv2d + its bias [O,1,1] (the
 * stdlib's reshape(b) comes after the conv) + relu or tanh; one without activation,
 * with stride 2; a 1x1 one (no im2col) whose relu is an output. */
static const char *cnn =
    "model k(x: f32[B, 3, 9, 9], y: label[B, 5]) {\n"
    "    a = relu(conv(x, 7, 3, padding = 1))\n"
    "    b = tanh(conv(a, 5, 3))\n"
    "    c = conv(b, 4, 3, stride = 2)\n"
    "    output z = relu(conv(c, 2, 1))\n"
    "    loss softmax_cross_entropy(dense(flatten(c), 5) + dense(flatten(z), 5), y)\n"
    "}\n";

static void test_plan_conv(void **state) {
  (void)state;
  Compiled c = compile(cnn);
  int counts[KERNEL__COUNT];
  char desc[4096];
  plan_of(c.fwd, counts, desc, sizeof desc);
  /* the forward function: its loss is softmax_xent alone (no backward to fuse with) */
  assert_string_equal(desc, "conv2d+add+relu\nconv2d+add+tanh\nconv2d+add\nconv2d+add+relu\nmatmul+add\nmatmul+add\n");
  assert_int_equal(counts[KERNEL_GEMM], 6);
  release(&c);
}

/* cross_entropy of a softmax that is also an output: the softmax stays its own kernel
 * (forward), the fused kernel recomputes the probabilities from the logits. */
/* A max-pool's backward masked by the relu before the pool (pool mask): the 2x2 vector
 * path and the general one (3x3, stride 2, padding 1) fuse; a relu after the pool (its
 * relu_grad comes before the pool's backward) and an average pool do not. */
static const char *pooled =
    "model p(x: f32[B, 2, 12, 10], y: label[B, 5]) {\n"
    "    a = max_pool2d(relu(conv(x, 4, 3, padding = 1)), 2)\n"
    "    b = max_pool2d(relu(conv(a, 3, 3, padding = 1)), 3, stride = 2, padding = 1)\n"
    "    c = relu(max_pool2d(conv(b, 3, 1), 2))\n"
    "    d = avg_pool2d(relu(conv(a, 2, 1)), 2)\n"
    "    loss softmax_cross_entropy(dense(flatten(c), 5) + dense(flatten(d), 5), y)\n"
    "}\n";

static void test_plan_pool_mask(void **state) {
  (void)state;
  Compiled c = compile(pooled);
  int counts[KERNEL__COUNT];
  char desc[4096];
  plan_of(c.grad, counts, desc, sizeof desc);
  assert_int_equal(counts[KERNEL_POOL_MASK], 2);
  assert_non_null(strstr(desc, "max_pool2d_bwd+relu_grad\n"));
  assert_null(strstr(desc, "avg_pool2d_bwd+relu_grad"));
  release(&c);
}

static const char *xent_out =
    "model h(x: f32[B, 7], y: label[B, 33]) {\n"
    "    output p = softmax(dense(x, 33))\n"
    "    loss cross_entropy(p, y)\n"
    "}\n";

static int check_all(Compiled *c) {
  static const int64_t batches[] = {1, 7, 17, 100};
  int fails = 0;
  for (int th = 1; th <= 2; th++)
    for (int b = 0; b < 4; b++) {
      CgtConfig cfg = {-1, 1, th, NULL, true, false};
      int r = cgt_check_forward(c->fwd, batches[b], 1e-5, &cfg) + cgt_check_grad(c->fwd, c->grad, batches[b], 1e-5, &cfg);
      if (r) printf("%s at batch %lld on %d threads failed\n", c->fwd->name, (long long)batches[b], th);
      fails += r;
    }
  return fails;
}

static void test_fused_code(void **state) {
  (void)state;
  const char *srcs[5] = {mlp, lin, xent_out, cnn, pooled};
  int fails = 0;
  for (int k = 0; k < 5; k++) {
    Compiled c = compile(srcs[k]);
    fails += check_all(&c);
    release(&c);
  }
  assert_int_equal(fails, 0);
}

/* Wide enough that the products split into chunks on two threads (>= 2^22
 * multiply-adds, several column panels), with odd edges in every dim. */
static void test_fused_code_parallel(void **state) {
  (void)state;
  Compiled c = compile("model w(x: f32[B, 300], y: label[B, 10]) {\n"
                       "    h = relu(dense(x, 1000))\n"
                       "    g = tanh(dense(h, 517))\n"
                       "    loss softmax_cross_entropy(dense(g, 10), y)\n"
                       "}\n");
  int fails = 0;
  for (int th = 1; th <= 2; th++) {
    CgtConfig cfg = {-1, 1, th, NULL, true, false};
    fails += cgt_check_grad(c.fwd, c.grad, 33, 1e-5, &cfg);
  }
  assert_int_equal(fails, 0);
  release(&c);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_plan_mlp),
      cmocka_unit_test(test_plan_counterexamples), cmocka_unit_test(test_plan_conv),
      cmocka_unit_test(test_plan_pool_mask),
      cmocka_unit_test(test_fused_code),
      cmocka_unit_test(test_fused_code_parallel),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
