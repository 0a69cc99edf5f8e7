/* tests/codegen/test_cg_gemm.c — matmul, matmul_nt and matmul_tn through the packed
 * GEMM against the interpreter: every edge of the MR x NR tile and of the MC / KC / NC
 * blocks, the batch dim in each position, one and two threads, and the big shapes of
 * an MLP layer (128 x 784 x 1024 and its backward forms). Tolerance 1e-5 relative to
 * the tensor's largest magnitude (harness.h). The test_f64_* cases run the same sweeps
 * on f64 products (the 12 x 16 / 6 x 8 / 6 x 4 double tiles) against INTERP_F64 within
 * 1e-12 in the same norm. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "tests/codegen/harness.h"

#define TOL 1e-5
static const SrcLoc L = {-1, 1, 1, 0};

/* c[M,N] from operands shaped for op; `batch_m`: M is the batch dim B. */
static const char *march = NULL;   /* NULL: native */
static bool f64 = false;           /* the test_f64_* cases */

static int run_one(Op op, int64_t M, int64_t K, int64_t N, bool batch_m, int threads) {
  Module *m = ir_module_new();
  Func *f = ir_func_new(m, "mm");
  int64_t Md = batch_m ? DIM_BATCH : M;
  int64_t ad[2], bd[2];
  if (op == OP_MATMUL_TN) ad[0] = K, ad[1] = Md;
  else ad[0] = Md, ad[1] = K;
  if (op == OP_MATMUL_NT) bd[0] = N, bd[1] = K;
  else bd[0] = K, bd[1] = N;
  int32_t a = ir_input(f, "a", 0, ir_type(m, DT_F32, 2, ad), L);
  int32_t b = ir_param(f, "b", ir_type(m, DT_F32, 2, bd), INIT_ZEROS, 0, 0, L);
  ir_output(f, "c", ir_binary(f, op, a, b, L), L);
  CgtConfig c = {-1, 1, threads, march, false, f64};
  int r = cgt_check_forward(f, batch_m ? M : 2, f64 ? 1e-12 : TOL, &c);
  if (r)
    printf("%s M=%lld K=%lld N=%lld threads=%d march=%s %s failed\n", ir_ops[op].name, (long long)M, (long long)K,
           (long long)N, threads, march ? march : "native", f64 ? "f64" : "f32");
  ir_module_free(m);
  return r;
}

static void test_edges(void **state) {
  (void)state;
  static const int64_t dims[] = {1, 7, 15, 17, 33, 100};
  Op ops[] = {OP_MATMUL, OP_MATMUL_NT, OP_MATMUL_TN};
  int fails = 0;
  for (int o = 0; o < 3; o++)
    for (int i = 0; i < 6; i++)
      for (int j = 0; j < 6; j++)
        for (int k = 0; k < 6; k += 2) fails += run_one(ops[o], dims[i], dims[k], dims[j], (i + j) % 2 == 0, 1);
  assert_int_equal(fails, 0);
}

static void test_blocks(void **state) {
  (void)state;
  /* across KC = 256, MC = 144, and multi-chunk splits along N and along M */
  Op ops[] = {OP_MATMUL, OP_MATMUL_NT, OP_MATMUL_TN};
  int fails = 0;
  for (int o = 0; o < 3; o++) {
    fails += run_one(ops[o], 145, 257, 65, false, 2);
    fails += run_one(ops[o], 300, 513, 40, true, 2);
    fails += run_one(ops[o], 17, 1000, 300, false, 2);
    fails += run_one(ops[o], 1000, 33, 17, true, 2);
  }
  assert_int_equal(fails, 0);
}

static void test_mlp_shapes(void **state) {
  (void)state;
  int fails = 0;
  /* forward x @ W1, backward dY W1^T and X^T dY */
  fails += run_one(OP_MATMUL, 128, 784, 1024, true, 2);
  fails += run_one(OP_MATMUL_NT, 128, 1024, 784, true, 2);
  fails += run_one(OP_MATMUL_TN, 784, 128, 1024, false, 1);
  assert_int_equal(fails, 0);
}

/* The AVX2 (6 x 16 tile) and SSE (6 x 8) micro-kernels of the portable targets. */
static void test_portable(void **state) {
  (void)state;
  static const char *levels[] = {"x86-64-v3", "x86-64-v2"};
  static const int64_t dims[] = {1, 7, 17, 33};
  Op ops[] = {OP_MATMUL, OP_MATMUL_NT, OP_MATMUL_TN};
  int fails = 0;
  for (int l = 0; l < 2; l++) {
    march = levels[l];
    for (int o = 0; o < 3; o++) {
      for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++) fails += run_one(ops[o], dims[i], 33, dims[j], i == j, 1);
      fails += run_one(ops[o], 150, 300, 100, true, 2);
    }
  }
  march = NULL;
  assert_int_equal(fails, 0);
}

static void test_f64_edges(void **state) {
  f64 = true;
  test_edges(state);
  test_portable(state);
  f64 = false;
}

static void test_f64_blocks(void **state) {
  f64 = true;
  test_blocks(state);
  test_mlp_shapes(state);
  f64 = false;
}

/* codegen/blocking.c's rules, for the CPUs of issue 15 as their CPUID describes them */
static void expect_blocking(const CgBlocking *b, int mr, int nr, int kc, int mc, int nc, int fma512) {
  assert_int_equal(b->mr, mr);
  assert_int_equal(b->nr, nr);
  assert_int_equal(b->kc, kc);
  assert_int_equal(b->mc, mc);
  assert_int_equal(b->nc, nc);
  assert_int_equal(b->fma512, fma512);
}

static void test_blocking_rules(void **state) {
  (void)state;
  CgBlocking b;
  char line[400];
  /* another -march than native: the defaults, whatever the host */
  cg_blocking_for("x86-64-v4", 16, &b);
  expect_blocking(&b, 12, 32, 256, 144, 2048, 0);
  cg_blocking_describe(&b, line, sizeof line);
  assert_string_equal(line, "-march=x86-64-v4; tile 12x32, KC 256, MC 144, NC 2048 (not the host (-march=x86-64-v4): the defaults)");
  /* Zen 4 (family 0x19 with AVX-512: double-pumped FMAs, 32 KiB L1d): its tuned values */
  cg_blocking_for("x86-64-v4", 16, &b);
  cg_blocking_rule("AuthenticAMD", 0x19, 0x11, 32, 1024, 16, &b);
  expect_blocking(&b, 12, 32, 256, 144, 2048, 1);
  cg_blocking_describe(&b, line, sizeof line);
  assert_string_equal(line, "AMD family 0x19 model 0x11 (Zen 4), L1d 32 KiB, L2 1024 KiB, 512-bit FMA double-pumped; "
                            "tile 12x32, KC 256, MC 144, NC 2048 (double-pumped 512-bit FMAs (Zen 4): the blocking "
                            "measured on Zen 4)");
  /* Zen 5 (family 0x1a: full width, 48 KiB L1d): the B micro-panel in 2/3 of L1d */
  cg_blocking_for("x86-64-v4", 16, &b);
  cg_blocking_rule("AuthenticAMD", 0x1a, 0x02, 48, 1024, 16, &b);
  expect_blocking(&b, 12, 32, 256, 144, 2048, 2);
  assert_non_null(strstr(b.cpu, "(Zen 5)"));
  /* a full-width Intel part with 32 KiB L1d (Skylake-SP): KC 160; 64 KiB: 320 */
  cg_blocking_for("x86-64-v4", 16, &b);
  cg_blocking_rule("GenuineIntel", 6, 0x55, 32, 1024, 16, &b);
  expect_blocking(&b, 12, 32, 160, 144, 2048, 2);
  cg_blocking_for("x86-64-v4", 16, &b);
  cg_blocking_rule("GenuineIntel", 6, 0xad, 64, 2048, 16, &b);
  expect_blocking(&b, 12, 32, 320, 144, 2048, 2);
  /* caches not reported, or no AVX-512 (Zen 3 is family 0x19 too): the defaults */
  cg_blocking_for("x86-64-v4", 16, &b);
  cg_blocking_rule("GenuineIntel", 6, 0xa7, 0, 0, 16, &b);
  expect_blocking(&b, 12, 32, 256, 144, 2048, 2);
  cg_blocking_for("x86-64-v3", 8, &b);
  cg_blocking_rule("AuthenticAMD", 0x19, 0x21, 32, 512, 8, &b);
  expect_blocking(&b, 6, 16, 256, 144, 2048, 0);
  assert_null(strstr(b.cpu, "Zen"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_blocking_rules),
      cmocka_unit_test(test_edges),
      cmocka_unit_test(test_portable),
      cmocka_unit_test(test_blocks),
      cmocka_unit_test(test_mlp_shapes),
      cmocka_unit_test(test_f64_edges),
      cmocka_unit_test(test_f64_blocks),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
