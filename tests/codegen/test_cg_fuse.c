/* tests/codegen/test_cg_fuse.c — GEMM epilogue fusion against the interpreter.
 *
 * y = act(op(a, b) + bias) with act in {none, relu, tanh, sigmoid}, for matmul,
 * matmul_nt and matmul_tn, at shapes on every edge of the MR x NR tile and the KC
 * block (the epilogue runs once per tile, after its last KC block), the batch dim as M,
 * one and two threads (tiles of parallel chunks), with the intermediate sum also an
 * output (every member still stores its result). A second form reads a full [M,N]
 * operand and a scalar in the epilogue: z = tanh_grad(y, op(a, b)) * 0.5, the shape of
 * the activation derivative on the product that produces dy. Each case also checks that
 * the module holds a fused epilogue (bpcc_gemm_epilogue0, built at -O0 so that it is not
 * inlined). Tolerance 1e-5 relative to the tensor's largest magnitude (harness.h). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <llvm-c/Core.h>
#include <stdio.h>

#include "tests/codegen/harness.h"

#define TOL 1e-5
#define ACT_NONE OP_INPUT   /* no activation */
static const SrcLoc L = {-1, 1, 1, 0};

enum { FORM_BIAS, FORM_DERIV };

static Func *build(Module *m, Op op, int64_t M, int64_t K, int64_t N, Op act, int form) {
  Func *f = ir_func_new(m, "fuse");
  int64_t ad[2], bd[2];
  M = DIM_BATCH;   /* the caller runs at batch M */
  if (op == OP_MATMUL_TN) ad[0] = K, ad[1] = M;
  else ad[0] = M, ad[1] = K;
  if (op == OP_MATMUL_NT) bd[0] = N, bd[1] = K;
  else bd[0] = K, bd[1] = N;
  int32_t a = ir_input(f, "a", 0, ir_type(m, DT_F32, 2, ad), L);
  int32_t b = ir_param(f, "b", ir_type(m, DT_F32, 2, bd), INIT_ZEROS, 0, 0, L);
  int32_t mm = ir_binary(f, op, a, b, L);
  if (form == FORM_BIAS) {
    int64_t nd[1] = {N};
    int32_t bias = ir_param(f, "bias", ir_type(m, DT_F32, 1, nd), INIT_ZEROS, 0, 0, L);
    int32_t s = ir_binary(f, OP_ADD, mm, bias, L);
    ir_output(f, "pre", s, L);
    ir_output(f, "y", act == ACT_NONE ? s : ir_unary(f, act, s, L), L);
  } else {
    int64_t od[2] = {M, N};
    int32_t y = ir_input(f, "y", 1, ir_type(m, DT_F32, 2, od), L);
    int32_t g = ir_binary(f, OP_TANH_GRAD, y, mm, L);
    int32_t half = ir_const(f, 0.5, ir_type(m, DT_F32, 0, od), L);
    ir_output(f, "z", ir_binary(f, OP_MUL, g, half, L), L);
  }
  return f;
}

/* the module built at -O0 holds the epilogue of a fused product */
static bool has_epilogue(Func *f) {
  CgOptions o = {"native", 0, 2, false};
  CgModel *cm = cg_model_build(f, NULL, NULL, &o);
  if (!cm) return false;
  bool ok = LLVMGetNamedFunction(cg_model_module(cm), "bpcc_gemm_epilogue0") != NULL;
  cg_model_free(cm);
  return ok;
}

static int run_one(Op op, int64_t M, int64_t K, int64_t N, Op act, int form, int threads) {
  Module *m = ir_module_new();
  Func *f = build(m, op, M, K, N, act, form);
  CgtConfig c = {-1, 1, threads, NULL, false, false};
  int r = cgt_check_forward(f, M, TOL, &c);
  if (!has_epilogue(f)) {
    printf("not fused: ");
    r++;
  }
  if (r)
    printf("%s M=%lld K=%lld N=%lld %s form=%d threads=%d failed\n", ir_ops[op].name, (long long)M, (long long)K,
           (long long)N, act == ACT_NONE ? "none" : ir_ops[act].name, form, threads);
  ir_module_free(m);
  return r;
}

static const Op ops[3] = {OP_MATMUL, OP_MATMUL_NT, OP_MATMUL_TN};

static void test_bias_act(void **state) {
  (void)state;
  static const Op acts[4] = {ACT_NONE, OP_RELU, OP_TANH, OP_SIGMOID};
  static const int64_t shapes[][3] = {{1, 1, 1}, {5, 3, 7}, {13, 17, 33}, {12, 300, 32}, {25, 9, 50}};
  int fails = 0;
  for (int o = 0; o < 3; o++)
    for (int a = 0; a < 4; a++)
      for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        fails += run_one(ops[o], shapes[s][0], shapes[s][1], shapes[s][2], acts[a], FORM_BIAS, 1);
  assert_int_equal(fails, 0);
}

static void test_parallel(void **state) {
  (void)state;
  int fails = 0;
  for (int o = 0; o < 3; o++) {
    fails += run_one(ops[o], 150, 260, 200, OP_TANH, FORM_BIAS, 2);
    fails += run_one(ops[o], 37, 520, 500, OP_RELU, FORM_BIAS, 2);
  }
  assert_int_equal(fails, 0);
}

static void test_derivative(void **state) {
  (void)state;
  int fails = 0;
  for (int o = 0; o < 3; o++) {
    fails += run_one(ops[o], 13, 17, 33, ACT_NONE, FORM_DERIV, 1);
    fails += run_one(ops[o], 150, 260, 200, ACT_NONE, FORM_DERIV, 2);
  }
  assert_int_equal(fails, 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_bias_act),
      cmocka_unit_test(test_parallel),
      cmocka_unit_test(test_derivative),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
