/* tests/codegen/test_cg_seq.c — the sequence-model ops through the JIT against a plain
 * C reference (seqref.c): products with leading batch dims (b of rank 2 as one
 * product with its bias and GELU epilogue, matmul_tn fold=1, true batched products
 * with broadcast batch dims, on one and two threads), transpose by permutation,
 * embedding and its backward, gelu and its gradients, causal_mask, softmax along any
 * axis, softmax_xent and onehot over labels of rank 3. Tolerance 1e-5 relative to the
 * tensor's largest magnitude (harness.h) unless a case says otherwise. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>

#include "tests/codegen/harness.h"
#include "tests/codegen/seqref.h"

#define TOL 1e-5
static const SrcLoc L = {-1, 1, 1, 0};

static int32_t in_f32(Func *f, const char *name, int idx, int rank, const int64_t *dims) {
  return ir_input(f, name, idx, ir_type(f->mod, DT_F32, rank, dims), L);
}
static int32_t par(Func *f, const char *name, int rank, const int64_t *dims) {
  return ir_param(f, name, ir_type(f->mod, DT_F32, rank, dims), INIT_ZEROS, 0, 0, L);
}

static int check(Func *f, int64_t batch, int threads, double tol) {
  CgtConfig c = {-1, 1, threads, NULL, false, false};
  cgt_reference = seqref_run;
  int r = cgt_check_forward(f, batch, tol, &c);
  cgt_reference = NULL;
  return r;
}

/* a @ b for the given shapes (DIM_BATCH allowed), on 1 and 2 threads */
static int product(Op op, int ra, const int64_t *ad, int rb, const int64_t *bd, bool fold, int64_t batch) {
  int fails = 0;
  for (int th = 1; th <= 2; th++) {
    Module *m = ir_module_new();
    Func *f = ir_func_new(m, "mm");
    int32_t a = in_f32(f, "a", 0, ra, ad), b = in_f32(f, "b", 1, rb, bd);
    int32_t c = fold ? ir_matmul_tn_fold(f, a, b, L) : ir_binary(f, op, a, b, L);
    ir_output(f, "c", c, L);
    int r = check(f, batch, th, TOL);
    if (r) printf("%s%s ranks %d,%d threads %d failed\n", ir_ops[op].name, fold ? " fold" : "", ra, rb, th);
    fails += r;
    ir_module_free(m);
  }
  return fails;
}

static void test_products_rows(void **state) {
  (void)state;
  int fails = 0;
  /* [B,T,D] @ [D,N]: one product of B*T rows; the transformer's shapes and edges */
  fails += product(OP_MATMUL, 3, (int64_t[]){DIM_BATCH, 64, 128}, 2, (int64_t[]){128, 512}, false, 32);
  fails += product(OP_MATMUL, 3, (int64_t[]){DIM_BATCH, 7, 33}, 2, (int64_t[]){33, 17}, false, 3);
  fails += product(OP_MATMUL, 4, (int64_t[]){DIM_BATCH, 3, 5, 20}, 2, (int64_t[]){20, 9}, false, 2);
  fails += product(OP_MATMUL_NT, 3, (int64_t[]){DIM_BATCH, 64, 512}, 2, (int64_t[]){128, 512}, false, 8);
  fails += product(OP_MATMUL_NT, 3, (int64_t[]){DIM_BATCH, 5, 19}, 2, (int64_t[]){13, 19}, false, 3);
  /* the weight gradient: [B,T,D]^T [B,T,N] summed over B and T */
  fails += product(OP_MATMUL_TN, 3, (int64_t[]){DIM_BATCH, 64, 128}, 3, (int64_t[]){DIM_BATCH, 64, 512}, true, 8);
  fails += product(OP_MATMUL_TN, 4, (int64_t[]){2, DIM_BATCH, 7, 13}, 4, (int64_t[]){2, DIM_BATCH, 7, 5}, true, 3);
  assert_int_equal(fails, 0);
}

static void test_products_batched(void **state) {
  (void)state;
  int fails = 0;
  /* per batch index: attention's q k^T and p v, broadcast dims, a shared rank-2 operand */
  fails += product(OP_MATMUL_NT, 4, (int64_t[]){DIM_BATCH, 4, 64, 32}, 4, (int64_t[]){DIM_BATCH, 4, 64, 32}, false, 8);
  fails += product(OP_MATMUL, 4, (int64_t[]){DIM_BATCH, 4, 64, 64}, 4, (int64_t[]){DIM_BATCH, 4, 64, 32}, false, 8);
  fails += product(OP_MATMUL_TN, 4, (int64_t[]){DIM_BATCH, 4, 64, 64}, 4, (int64_t[]){DIM_BATCH, 4, 64, 32}, false, 4);
  fails += product(OP_MATMUL, 4, (int64_t[]){DIM_BATCH, 1, 7, 9}, 3, (int64_t[]){3, 9, 5}, false, 2);
  fails += product(OP_MATMUL, 2, (int64_t[]){7, 9}, 3, (int64_t[]){DIM_BATCH, 9, 13}, false, 3);
  fails += product(OP_MATMUL_TN, 3, (int64_t[]){DIM_BATCH, 9, 7}, 2, (int64_t[]){9, 13}, false, 3);
  fails += product(OP_MATMUL_NT, 3, (int64_t[]){3, DIM_BATCH, 9}, 3, (int64_t[]){3, 11, 9}, false, 5);
  assert_int_equal(fails, 0);
}

static int32_t labels(Func *f, const char *name, int idx, int rank, const int64_t *dims) {
  return ir_input(f, name, idx, ir_type(f->mod, DT_LABEL, rank, dims), L);
}

static void test_embedding(void **state) {
  (void)state;
  int fails = 0;
  /* V = 11 rows for 8 x 64 positions: every row gathered and summed many times; d = 128
   * splits the backward into column chunks on two threads, d = 13 has a scalar tail */
  static const int64_t ds[] = {128, 13};
  for (int q = 0; q < 2; q++)
    for (int th = 1; th <= 2; th++) {
      Module *m = ir_module_new();
      Func *f = ir_func_new(m, "emb");
      int64_t d = ds[q];
      int32_t ids = labels(f, "ids", 0, 3, (int64_t[]){DIM_BATCH, 64, 11});
      int32_t dy = in_f32(f, "dy", 1, 3, (int64_t[]){DIM_BATCH, 64, d});
      int32_t w = par(f, "w", 2, (int64_t[]){11, d});
      Inst e = ir_inst(OP_EMBEDDING, L);
      e.nargs = 2, e.args[0] = ids, e.args[1] = w;
      ir_output(f, "y", ir_emit(f, &e), L);
      Inst g = ir_inst(OP_EMBEDDING_BWD, L);
      g.nargs = 2, g.args[0] = ids, g.args[1] = dy;
      g.type = ir_type(m, DT_F32, 2, (int64_t[]){11, d});
      ir_output(f, "dw", ir_emit(f, &g), L);
      int r = check(f, 8, th, TOL);
      if (r) printf("embedding d=%lld threads %d failed\n", (long long)d, th);
      fails += r;
      ir_module_free(m);
    }
  assert_int_equal(fails, 0);
}

/* softmax_xent and onehot over labels [B, T, C] (one class per position) */
static void test_labels_rank3(void **state) {
  (void)state;
  Module *m = ir_module_new();
  Func *f = ir_func_new(m, "xent");
  int32_t z = in_f32(f, "z", 0, 3, (int64_t[]){DIM_BATCH, 7, 37});
  int32_t y = labels(f, "y", 1, 3, (int64_t[]){DIM_BATCH, 7, 37});
  Inst x = ir_inst(OP_SOFTMAX_XENT, L);
  x.nargs = 2, x.args[0] = z, x.args[1] = y;
  ir_output(f, "l", ir_emit(f, &x), L);
  ir_output(f, "o", ir_unary(f, OP_ONEHOT, y, L), L);
  assert_int_equal(check(f, 5, 1, TOL), 0);
  ir_module_free(m);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_products_rows),
      cmocka_unit_test(test_products_batched),
      cmocka_unit_test(test_embedding),
      cmocka_unit_test(test_labels_rank3),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
