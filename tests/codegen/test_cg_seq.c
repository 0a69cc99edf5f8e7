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
#include <stdlib.h>
#include <string.h>

#include "codegen/cg.h"
#include "tests/codegen/harness.h"
#include "passes/memplan.h"
#include "tests/compile.h"
#include "tests/codegen/seqref.h"

#define TOL 1e-5
static const SrcLoc L = {-1, 1, 1, 0};

static int32_t in_f32(Func *f, const char *name, int idx, int rank, const int64_t *dims) {
  return ir_input(f, name, idx, ir_type(f->mod, DT_F32, rank, dims), L);
}
static int32_t par(Func *f, const char *name, int rank, const int64_t *dims) {
  return ir_param(f, name, ir_type(f->mod, DT_F32, rank, dims), INIT_ZEROS, 0, 0, L);
}

/* against seqref.c, then against the reference interpreter (ir/interp.c): two
 * independent references */
static int check(Func *f, int64_t batch, int threads, double tol) {
  CgtConfig c = {-1, 1, threads, NULL, false, false};
  cgt_reference = seqref_run;
  int r = cgt_check_forward(f, batch, tol, &c);
  cgt_reference = NULL;
  return r + cgt_check_forward(f, batch, tol, &c);
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

/* memplan_inst_flops (bpcc bench's GFLOP/s) for the new shapes: 2 numel(c) K, the fold
 * summing over a's leading dims */
static void test_product_flops(void **state) {
  (void)state;
  Module *m = ir_module_new();
  Func *f = ir_func_new(m, "fl");
  int32_t x = in_f32(f, "x", 0, 3, (int64_t[]){DIM_BATCH, 64, 128});
  int32_t dy = in_f32(f, "dy", 1, 3, (int64_t[]){DIM_BATCH, 64, 512});
  int32_t q = in_f32(f, "q", 2, 4, (int64_t[]){DIM_BATCH, 4, 64, 32});
  int32_t w = par(f, "w", 2, (int64_t[]){128, 512});
  int32_t rows = ir_binary(f, OP_MATMUL, x, w, L);
  int32_t nt = ir_binary(f, OP_MATMUL_NT, dy, w, L);
  int32_t fold = ir_matmul_tn_fold(f, x, dy, L);
  int32_t s = ir_binary(f, OP_MATMUL_NT, q, q, L);
  assert_true(memplan_inst_flops(f, rows, 32) == 2.0 * 2048 * 128 * 512);
  assert_true(memplan_inst_flops(f, nt, 32) == 2.0 * 2048 * 512 * 128);
  assert_true(memplan_inst_flops(f, fold, 32) == 2.0 * 128 * 512 * 2048);
  assert_true(memplan_inst_flops(f, s, 32) == 2.0 * 32 * 4 * 64 * 64 * 32);
  ir_module_free(m);
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

/* gelu, gelu_tanh and their gradients in an elementwise kernel, over [-10, 10) */
static void test_gelu_ew(void **state) {
  (void)state;
  int fails = 0;
  for (int th = 1; th <= 2; th++) {
    Module *m = ir_module_new();
    Func *f = ir_func_new(m, "gelu");
    int32_t x = in_f32(f, "x", 0, 2, (int64_t[]){DIM_BATCH, 301});
    int32_t dy = in_f32(f, "dy", 1, 2, (int64_t[]){DIM_BATCH, 301});
    ir_output(f, "g", ir_unary(f, OP_GELU, x, L), L);
    ir_output(f, "gt", ir_unary(f, OP_GELU_TANH, x, L), L);
    ir_output(f, "dg", ir_binary(f, OP_GELU_GRAD, x, dy, L), L);
    ir_output(f, "dgt", ir_binary(f, OP_GELU_TANH_GRAD, x, dy, L), L);
    CgtConfig c = {-10, 10, th, NULL, false, false};
    cgt_reference = seqref_run;
    fails += cgt_check_forward(f, 7, TOL, &c);
    cgt_reference = NULL;
    ir_module_free(m);
  }
  assert_int_equal(fails, 0);
}

/* transpose by permutation: the head split and merge (last dim kept: row copies), the
 * swap of the last two dims and others that move the contiguous dim (register tiles
 * and their edges), ranks 2 to 4, on one and two threads past the parallel threshold */
static int transpose_case(int rank, const int64_t *dims, const int *perm, int64_t batch) {
  int fails = 0;
  for (int th = 1; th <= 2; th++) {
    Module *m = ir_module_new();
    Func *f = ir_func_new(m, "tr");
    int32_t x = in_f32(f, "x", 0, rank, dims);
    ir_output(f, "y", ir_transpose(f, x, perm, L), L);
    int r = check(f, batch, th, 0);
    if (r) printf("transpose rank %d perm %d%d%d%d threads %d failed\n", rank, perm ? perm[0] : -1, perm ? perm[1] : -1,
                  perm && rank > 2 ? perm[2] : -1, perm && rank > 3 ? perm[3] : -1, th);
    fails += r;
    ir_module_free(m);
  }
  return fails;
}

static void test_transpose(void **state) {
  (void)state;
  int fails = 0;
  fails += transpose_case(4, (int64_t[]){DIM_BATCH, 64, 4, 32}, (int[]){0, 2, 1, 3}, 8);
  fails += transpose_case(4, (int64_t[]){DIM_BATCH, 4, 64, 32}, (int[]){0, 2, 1, 3}, 3);
  fails += transpose_case(4, (int64_t[]){DIM_BATCH, 4, 64, 32}, NULL, 8);
  fails += transpose_case(4, (int64_t[]){DIM_BATCH, 3, 37, 21}, NULL, 3);
  fails += transpose_case(4, (int64_t[]){5, 6, 7, DIM_BATCH}, (int[]){3, 1, 0, 2}, 9);
  fails += transpose_case(4, (int64_t[]){DIM_BATCH, 17, 19, 23}, (int[]){3, 2, 1, 0}, 2);
  fails += transpose_case(3, (int64_t[]){DIM_BATCH, 33, 65}, (int[]){2, 0, 1}, 5);
  fails += transpose_case(3, (int64_t[]){DIM_BATCH, 33, 65}, (int[]){1, 0, 2}, 5);
  fails += transpose_case(2, (int64_t[]){DIM_BATCH, 300}, NULL, 301);
  fails += transpose_case(2, (int64_t[]){7, DIM_BATCH}, NULL, 3);
  assert_int_equal(fails, 0);
}

/* The head split and merge of an attention layer, [B,T,D] -> [B,T,H,dh] -> [B,H,T,dh] and
 * back, each one transpose+reshape kernel (passes/kernel_plan.c, view_chain): the
 * reshape keeps no buffer, the transpose reads its operand or writes its result. Values
 * exact on one and two threads; a reshape read by something else keeps its own copy. */
static void test_head_split_merge(void **state) {
  (void)state;
  int fails = 0;
  for (int th = 1; th <= 2; th++) {
    Module *m = ir_module_new();
    Func *f = ir_func_new(m, "heads");
    int32_t x = in_f32(f, "x", 0, 3, (int64_t[]){DIM_BATCH, 64, 128});
    int32_t x2 = ir_binary(f, OP_MUL, x, ir_scalar(f, 2.0, L), L);
    int32_t r = ir_to_type(f, OP_RESHAPE, x2, ir_type(m, DT_F32, 4, (int64_t[]){DIM_BATCH, 64, 4, 32}), L);
    int32_t h = ir_transpose(f, r, (int[]){0, 2, 1, 3}, L);                      /* split: reshape+transpose */
    int32_t h2 = ir_binary(f, OP_ADD, h, ir_scalar(f, 1.0, L), L);
    int32_t t = ir_transpose(f, h2, (int[]){0, 2, 1, 3}, L);
    int32_t y = ir_to_type(f, OP_RESHAPE, t, ir_type(m, DT_F32, 3, (int64_t[]){DIM_BATCH, 64, 128}), L);   /* merge */
    int32_t r2 = ir_to_type(f, OP_RESHAPE, x2, ir_type(m, DT_F32, 4, (int64_t[]){DIM_BATCH, 64, 8, 16}), L);
    int32_t z = ir_transpose(f, r2, (int[]){0, 2, 1, 3}, L);
    ir_output(f, "y", y, L);
    ir_output(f, "z", z, L);
    ir_output(f, "r2", r2, L);   /* read twice: no view */
    Arena *a = arena_new();
    KernelPlanOptions ko = {true};
    KernelPlan *kp = pass_kernel_plan(a, f, PLAN_INFERENCE, &ko);
    assert_non_null(kp);
    assert_true(kernel_plan_verify(kp, "test"));
    assert_int_equal(kp->kernel_of[r], kp->kernel_of[h]);
    assert_int_equal(kp->kind[kp->kernel_of[h]], KERNEL_VIEW);
    assert_true(kp->internal[r]);
    assert_int_equal(kp->kernel_of[t], kp->kernel_of[y]);
    assert_int_equal(kp->kind[kp->kernel_of[y]], KERNEL_VIEW);
    assert_true(kp->internal[t]);
    assert_int_not_equal(kp->kernel_of[r2], kp->kernel_of[z]);
    arena_free(a);
    CgtConfig c = {-1, 1, th, NULL, false, false};
    int rc = cgt_check_forward(f, 5, 0, &c);   /* the interpreter (seqref has no reshape) */
    if (rc) printf("head split and merge, threads %d failed\n", th);
    fails += rc;
    ir_module_free(m);
  }
  assert_int_equal(fails, 0);
}

/* causal_mask(T) added to scores, then softmax along each of the axes of a rank-4
 * value (the last, and the others: column passes) and log_softmax along axis 1 */
static void test_mask_softmax(void **state) {
  (void)state;
  int fails = 0;
  for (int ax = 0; ax < 4; ax++) {
    Module *m = ir_module_new();
    Func *f = ir_func_new(m, "sm");
    int32_t s = in_f32(f, "s", 0, 4, (int64_t[]){DIM_BATCH, 3, 37, 37});
    int32_t cm = ir_causal_mask(f, 37, DT_F32, L);
    ir_output(f, "mask", cm, L);
    int32_t sc = ir_binary(f, OP_ADD, s, cm, L);
    if (ax == 3) ir_output(f, "p", ir_rowop(f, OP_SOFTMAX, sc, ax, L), L);
    else ir_output(f, "p", ir_rowop(f, OP_SOFTMAX, s, ax, L), L);
    if (ax == 1) ir_output(f, "lp", ir_rowop(f, OP_LOG_SOFTMAX, s, ax, L), L);
    int r = check(f, 2, 1, TOL);
    if (r) printf("softmax axis %d failed\n", ax);
    fails += r;
    ir_module_free(m);
  }
  assert_int_equal(fails, 0);
}

/* the same kernels in an f64 model (double buffers, W / 2 lanes): a batched product,
 * one of rows with its bias and GELU epilogue, the fold, transposes of both shapes,
 * embedding and its backward, gelu_tanh and the masks, within 1e-12 */
static void test_f64(void **state) {
  (void)state;
  Module *m = ir_module_new();
  Func *f = ir_func_new(m, "seq64");
  int32_t x = in_f32(f, "x", 0, 3, (int64_t[]){DIM_BATCH, 16, 24});
  int32_t q = in_f32(f, "q", 1, 4, (int64_t[]){DIM_BATCH, 2, 16, 8});
  int32_t ids = labels(f, "ids", 2, 3, (int64_t[]){DIM_BATCH, 16, 9});
  int32_t dy = in_f32(f, "dy", 3, 3, (int64_t[]){DIM_BATCH, 16, 40});
  int32_t w = par(f, "w", 2, (int64_t[]){24, 40});
  int32_t b = par(f, "b", 1, (int64_t[]){40});
  int32_t e = par(f, "e", 2, (int64_t[]){9, 24});
  int32_t h = ir_binary(f, OP_ADD, ir_binary(f, OP_MATMUL, x, w, L), b, L);
  ir_output(f, "h", ir_unary(f, OP_GELU, h, L), L);
  ir_output(f, "ht", ir_unary(f, OP_GELU_TANH, x, L), L);
  ir_output(f, "dh", ir_binary(f, OP_GELU_GRAD, x, ir_binary(f, OP_MATMUL_NT, dy, w, L), L), L);
  ir_output(f, "dht", ir_binary(f, OP_GELU_TANH_GRAD, x, x, L), L);
  ir_output(f, "dw", ir_matmul_tn_fold(f, x, dy, L), L);
  ir_output(f, "s", ir_binary(f, OP_MATMUL_NT, q, q, L), L);
  ir_output(f, "qt", ir_transpose(f, q, (int[]){0, 2, 1, 3}, L), L);
  ir_output(f, "qs", ir_transpose(f, q, NULL, L), L);
  Inst em = ir_inst(OP_EMBEDDING, L);
  em.nargs = 2, em.args[0] = ids, em.args[1] = e;
  ir_output(f, "emb", ir_emit(f, &em), L);
  Inst g = ir_inst(OP_EMBEDDING_BWD, L);
  g.nargs = 2, g.args[0] = ids, g.args[1] = dy;
  g.type = ir_type(m, DT_F32, 2, (int64_t[]){9, 40});
  ir_output(f, "demb", ir_emit(f, &g), L);
  int fails = 0;
  for (int th = 1; th <= 2; th++) {
    CgtConfig c = {-4, 4, th, NULL, false, true};
    cgt_reference = seqref_run;
    fails += cgt_check_forward(f, 3, 1e-12, &c);
    cgt_reference = NULL;
  }
  ir_module_free(m);
  assert_int_equal(fails, 0);
}

/* ---- erf itself: cg_erf over an array, JIT-compiled on its own (f32 or f64) ---- */

static void erf_body(Cg *cg, void *p, LLVMValueRef j, LLVMTypeRef T) {
  LLVMValueRef *io = p;
  cg_store(cg, cg_erf(cg, cg_load(cg, T, io[0], j)), io[1], j);
}

typedef void (*ErfFn)(const void *x, void *y, int64_t n);

/* void erf_n(const T *x, T *y, i64 n) through the vector loop and its scalar tail */
static LLVMOrcLLJITRef erf_jit(bool f64, ErfFn *fn) {
  char err[256];
  int lanes;
  LLVMTargetMachineRef tm = cg_target_machine("native", 2, &lanes, err, sizeof err);
  assert_non_null(tm);
  LLVMOrcThreadSafeContextRef tsc = LLVMOrcCreateNewThreadSafeContext();
  Cg cg;
  memset(&cg, 0, sizeof cg);
  cg.C = LLVMOrcThreadSafeContextGetContext(tsc);
  cg.M = LLVMModuleCreateWithNameInContext("erf", cg.C);
  char *triple = LLVMGetTargetMachineTriple(tm);
  LLVMSetTarget(cg.M, triple);
  LLVMDisposeMessage(triple);
  LLVMTargetDataRef dl = LLVMCreateTargetDataLayout(tm);
  LLVMSetModuleDataLayout(cg.M, dl);
  LLVMDisposeTargetData(dl);
  cg.B = LLVMCreateBuilderInContext(cg.C);
  cg.W = lanes, cg.esize = 4;
  cg_init_types(&cg);
  if (f64) cg_set_f64(&cg);
  LLVMTypeRef args[3] = {cg.t_ptr, cg.t_ptr, cg.t_i64};
  cg.fn = LLVMAddFunction(cg.M, "erf_n", LLVMFunctionType(cg.t_void, args, 3, 0));
  LLVMPositionBuilderAtEnd(cg.B, LLVMAppendBasicBlockInContext(cg.C, cg.fn, "entry"));
  LLVMValueRef io[2] = {LLVMGetParam(cg.fn, 0), LLVMGetParam(cg.fn, 1)};
  cg_vloop(&cg, LLVMGetParam(cg.fn, 2), erf_body, io);
  LLVMBuildRetVoid(cg.B);
  LLVMDisposeBuilder(cg.B);
  assert_int_equal(cg_run_passes(cg.M, tm, 2, err, sizeof err), 0);
  LLVMDisposeTargetMachine(tm);
  LLVMOrcLLJITRef jit;
  assert_null(LLVMOrcCreateLLJIT(&jit, LLVMOrcCreateLLJITBuilder()));
  assert_null(LLVMOrcLLJITAddLLVMIRModule(jit, LLVMOrcLLJITGetMainJITDylib(jit), LLVMOrcCreateNewThreadSafeModule(cg.M, tsc)));
  LLVMOrcDisposeThreadSafeContext(tsc);
  LLVMOrcExecutorAddress addr;
  assert_null(LLVMOrcLLJITLookup(jit, &addr, "erf_n"));
  *fn = (ErfFn)(uintptr_t)addr;
  return jit;
}

/* The measured error of cg_erf against libm's erf (double, the reference) over
 * [-6, 6] in steps of 2^-14 plus the specials (+-0, +-1e-30, +-30, +-inf): in f32 at
 * most 1 ulp of the correctly rounded result (0.995 measured, at x = -1.045, where
 * 1 - erfc begins); in f64 at most 4e-16 relative (2.2e-16 measured). */
static void test_erf_accuracy(void **state) {
  (void)state;
  int64_t n = 12 * 16384 + 1;
  for (int f64 = 0; f64 < 2; f64++) {
    ErfFn fn;
    LLVMOrcLLJITRef jit = erf_jit(f64, &fn);
    size_t es = f64 ? sizeof(double) : sizeof(float);
    void *x = calloc((size_t)n + 8, es), *y = calloc((size_t)n + 8, es);
    double xs[8] = {0.0, -0.0, 1e-30, -1e-30, 30.0, -30.0, INFINITY, -INFINITY};
    for (int64_t k = 0; k < n + 8; k++) {
      double v = k < n ? -6.0 + (double)k / 16384.0 : xs[k - n];
      if (f64) ((double *)x)[k] = v;
      else ((float *)x)[k] = (float)v;
    }
    fn(x, y, n + 8);
    double worst = 0, at = 0;
    for (int64_t k = 0; k < n + 8; k++) {
      double xv = f64 ? ((double *)x)[k] : ((float *)x)[k], got = f64 ? ((double *)y)[k] : ((float *)y)[k];
      double ref = erf(xv);
      double unit = f64 ? fabs(ref) : (double)nextafterf((float)fabs(ref), INFINITY) - (double)(float)fabs(ref);
      if (unit == 0) unit = f64 ? 1e-300 : 1e-45;
      double e = fabs(got - ref) / unit;
      if (!(e <= worst)) worst = e, at = xv;
    }
    printf("  erf %s: max error %.3g %s at x = %.9g\n", f64 ? "f64" : "f32", worst, f64 ? "relative" : "ulp", at);
    assert_true(f64 ? worst <= 4e-16 : worst <= 1.0);
    free(x);
    free(y);
    LLVMOrcDisposeLLJIT(jit);
  }
}

/* the transformer's MLP: gelu(x @ W + b) and gelu_tanh as the product's epilogue, and
 * the backward mask gelu_grad(h, dy @ W^T) as the epilogue of matmul_nt */
static void test_gelu_epilogue(void **state) {
  (void)state;
  int fails = 0;
  for (int th = 1; th <= 2; th++)
    for (int tanh_form = 0; tanh_form < 2; tanh_form++) {
      Module *m = ir_module_new();
      Func *f = ir_func_new(m, "mlp");
      int32_t x = in_f32(f, "x", 0, 3, (int64_t[]){DIM_BATCH, 64, 128});
      int32_t w = par(f, "w", 2, (int64_t[]){128, 512});
      int32_t b = par(f, "b", 1, (int64_t[]){512});
      int32_t h = ir_binary(f, OP_MATMUL, x, w, L);
      int32_t hb = ir_binary(f, OP_ADD, h, b, L);
      ir_output(f, "y", ir_unary(f, tanh_form ? OP_GELU_TANH : OP_GELU, hb, L), L);
      int32_t xg = in_f32(f, "xg", 1, 3, (int64_t[]){DIM_BATCH, 64, 512});
      int32_t dyg = in_f32(f, "dyg", 2, 3, (int64_t[]){DIM_BATCH, 64, 128});
      int32_t wt = par(f, "wt", 2, (int64_t[]){512, 128});
      int32_t dd = ir_binary(f, OP_MATMUL_NT, dyg, wt, L);   /* [B,64,512] */
      ir_output(f, "dx", ir_binary(f, tanh_form ? OP_GELU_TANH_GRAD : OP_GELU_GRAD, xg, dd, L), L);
      int r = check(f, 4, th, TOL);
      if (r) printf("gelu epilogue tanh=%d threads %d failed\n", tanh_form, th);
      fails += r;
      ir_module_free(m);
    }
  assert_int_equal(fails, 0);
}

/* an id outside [0, V): frame->status = 1 and that position's row is NaN; the others
 * are their rows of W, and embedding_bwd adds nothing for it */
static void test_embedding_bad_id(void **state) {
  (void)state;
  Module *m = ir_module_new();
  Func *f = ir_func_new(m, "emb");
  int32_t ids = labels(f, "ids", 0, 3, (int64_t[]){DIM_BATCH, 2, 5});
  int32_t dy = in_f32(f, "dy", 1, 3, (int64_t[]){DIM_BATCH, 2, 3});
  int32_t w = par(f, "w", 2, (int64_t[]){5, 3});
  Inst e = ir_inst(OP_EMBEDDING, L);
  e.nargs = 2, e.args[0] = ids, e.args[1] = w;
  ir_output(f, "y", ir_emit(f, &e), L);
  Inst g = ir_inst(OP_EMBEDDING_BWD, L);
  g.nargs = 2, g.args[0] = ids, g.args[1] = dy;
  g.type = ir_type(m, DT_F32, 2, (int64_t[]){5, 3});
  ir_output(f, "dw", ir_emit(f, &g), L);
  CgOptions o = {"native", 2, 1, false, false};
  CgModel *cm = test_build(f, NULL, NULL, &o);
  assert_non_null(cm);
  assert_int_equal(cg_model_jit(cm), 0);
  bprt_model_desc *d = cg_model_desc(cm);
  CgtFrame t;
  cgt_frame_init(&t, d, 1, 1);
  int32_t *idv = t.inputs[0];
  float *dyv = t.inputs[1];
  idv[0] = 4, idv[1] = 5;   /* 5 is out of range */
  for (int k = 0; k < 6; k++) dyv[k] = (float)(k + 1);
  for (int k = 0; k < 15; k++) t.params[d->params[0].offset + k] = (float)k;
  d->forward(&t.fr);
  assert_int_equal(t.fr.status, 1);
  for (int j = 0; j < 3; j++) {
    assert_true(t.outputs[0][j] == (float)(12 + j));
    assert_true(isnan(t.outputs[0][3 + j]));
  }
  for (int v = 0; v < 5; v++)
    for (int j = 0; j < 3; j++) assert_true(t.outputs[1][v * 3 + j] == (v == 4 ? (float)(j + 1) : 0.0f));
  cgt_frame_free(&t);
  cg_model_free(cm);
  ir_module_free(m);
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
      cmocka_unit_test(test_product_flops),
      cmocka_unit_test(test_transpose),
      cmocka_unit_test(test_head_split_merge),
      cmocka_unit_test(test_mask_softmax),
      cmocka_unit_test(test_erf_accuracy),
      cmocka_unit_test(test_gelu_ew),
      cmocka_unit_test(test_gelu_epilogue),
      cmocka_unit_test(test_embedding),
      cmocka_unit_test(test_embedding_bad_id),
      cmocka_unit_test(test_f64),
      cmocka_unit_test(test_labels_rank3),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
