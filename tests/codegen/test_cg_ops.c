/* tests/codegen/test_cg_ops.c — every op through the JIT against the reference
 * interpreter, on shapes that exercise vector tails and blocking edges
 * (1, 7, 15, 17, 33, 100, 1000). f32 tolerance: |jit - ref| <= 1e-5 max(1, max |ref|) (harness.h). */
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
#include "tests/compile.h"

#define TOL 1e-5

static const int64_t sizes[] = {1, 7, 15, 17, 33, 100, 1000};
#define NSIZES ((int)(sizeof sizes / sizeof sizes[0]))
static const SrcLoc L = {-1, 1, 1, 0};

static TypeId ty(Module *m, int rank, int64_t d0, int64_t d1, int64_t d2) {
  int64_t d[3] = {d0, d1, d2};
  return ir_type(m, DT_F32, rank, d);
}

static TypeId ty4(Module *m, int64_t d0, int64_t d1, int64_t d2, int64_t d3) {
  int64_t d[4] = {d0, d1, d2, d3};
  return ir_type(m, DT_F32, 4, d);
}

static const char *march = NULL;   /* NULL: native; test_portable sets the x86-64 levels */

/* set by the test_f64_* cases: the same graphs converted to f64 (cgt_func_to_f64),
 * compiled to double code and compared with INTERP_F64 within TOL64 */
static bool f64 = false;
#define TOL64 1e-12

static int check(Func *f, int64_t batch, double lo, double hi) {
  CgtConfig c = {lo, hi, 1, march, false, f64};
  return cgt_check_forward(f, batch, f64 ? TOL64 : TOL, &c);
}

/* The same through the grad (training) entry: f as it is, batchnorm's batch statistics;
 * two threads (kernels that split their work take the parallel path when it is big). */
static int check_training(Func *f, int64_t batch, double lo, double hi) {
  CgtConfig c = {lo, hi, 2, march, false, f64};
  return cgt_check_grad(f, ir_func_clone(f, "train"), batch, f64 ? TOL64 : TOL, &c);
}

static void test_unary(void **state) {
  (void)state;
  struct { Op op; double lo, hi, p; } cases[] = {
      {OP_NEG, -3, 3, 0}, {OP_EXP, -10, 10, 0}, {OP_LOG, 1e-3, 50, 0}, {OP_SQRT, 0, 9, 0},
      {OP_ABS, -3, 3, 0}, {OP_SIGN, -3, 3, 0}, {OP_RELU, -3, 3, 0}, {OP_SIGMOID, -12, 12, 0},
      {OP_TANH, -5, 5, 0}, {OP_TANH, -0.7, 0.7, 0}, {OP_POW, -2, 2, 2}, {OP_POW, -2, 2, 3},
      {OP_POW, 0.1, 4, 0.5}, {OP_POW, 0.1, 4, 1.7}, {OP_POW, 0.2, 3, -2}, {OP_EXP, -90, 80, 0},
  };
  int fails = 0;
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
    for (int s = 0; s < NSIZES; s++) {
      Module *m = ir_module_new();
      Func *f = ir_func_new(m, "unary");
      int32_t x = ir_input(f, "x", 0, ty(m, 2, DIM_BATCH, sizes[s], 0), L);
      int32_t y = cases[c].op == OP_POW ? ir_pow(f, x, cases[c].p, L) : ir_unary(f, cases[c].op, x, L);
      ir_output(f, ir_ops[cases[c].op].name, y, L);
      int r = check(f, 3, cases[c].lo, cases[c].hi);
      if (r) printf("unary %s (p=%g) n=%lld failed\n", ir_ops[cases[c].op].name, cases[c].p, (long long)sizes[s]);
      fails += r;
      ir_module_free(m);
    }
  assert_int_equal(fails, 0);
}

static void test_binary_broadcast(void **state) {
  (void)state;
  Op ops[] = {OP_ADD, OP_SUB, OP_MUL, OP_DIV, OP_EQ, OP_RELU_GRAD, OP_SIGMOID_GRAD, OP_TANH_GRAD};
  int fails = 0;
  for (size_t o = 0; o < sizeof ops / sizeof ops[0]; o++)
    for (int s = 0; s < NSIZES; s++) {
      int64_t n = sizes[s];
      Module *m = ir_module_new();
      Func *f = ir_func_new(m, "binary");
      int32_t a = ir_input(f, "a", 0, ty(m, 2, DIM_BATCH, n, 0), L);
      int32_t b = ir_input(f, "b", 1, ty(m, 2, DIM_BATCH, n, 0), L);
      ir_output(f, "same", ir_binary(f, ops[o], a, b, L), L);
      if (!(ir_ops[ops[o]].flags & OPF_EW) || ops[o] < OP_RELU_GRAD) {
        int32_t row = ir_param(f, "row", ty(m, 1, n, 0, 0), INIT_ZEROS, 0, 0, L);
        int32_t col = ir_input(f, "col", 2, ty(m, 2, DIM_BATCH, 1, 0), L);
        int32_t sc = ir_scalar(f, 0.75, L);
        ir_output(f, "row", ir_binary(f, ops[o], a, row, L), L);
        ir_output(f, "rowl", ir_binary(f, ops[o], row, a, L), L);
        ir_output(f, "col", ir_binary(f, ops[o], a, col, L), L);
        ir_output(f, "scalar", ir_binary(f, ops[o], sc, a, L), L);
        /* [n,1] op [1,n] -> [n,n] (rank-2 outer broadcast) */
        int32_t cn = ir_param(f, "cn", ty(m, 2, n > 40 ? 40 : n, 1, 0), INIT_ZEROS, 0, 0, L);
        int32_t rn = ir_param(f, "rn", ty(m, 2, 1, n, 0), INIT_ZEROS, 0, 0, L);
        ir_output(f, "outer", ir_binary(f, ops[o], cn, rn, L), L);
        /* rank 3 with a middle broadcast */
        int32_t r3 = ir_input(f, "r3", 3, ty(m, 3, DIM_BATCH, 3, n), L);
        int32_t m3 = ir_param(f, "m3", ty(m, 3, 2, 1, n), INIT_ZEROS, 0, 0, L);
        (void)m3;
        ir_output(f, "r3", ir_binary(f, ops[o], r3, ir_param(f, "p3", ty(m, 2, 3, 1, 0), INIT_ZEROS, 0, 0, L), L), L);
      }
      int r = check(f, 2, ops[o] == OP_DIV ? 0.5 : -2, 2);
      if (r) printf("binary %s n=%lld failed\n", ir_ops[ops[o]].name, (long long)n);
      fails += r;
      ir_module_free(m);
    }
  assert_int_equal(fails, 0);
}

static void test_reductions(void **state) {
  (void)state;
  Op ops[] = {OP_SUM, OP_MEAN, OP_MAX};
  int fails = 0;
  for (size_t o = 0; o < 3; o++)
    for (int s = 0; s < NSIZES; s++) {
      int64_t n = sizes[s];
      Module *m = ir_module_new();
      Func *f = ir_func_new(m, "reduce");
      int32_t x = ir_input(f, "x", 0, ty(m, 2, DIM_BATCH, n, 0), L);
      int32_t x3 = ir_input(f, "x3", 1, ty(m, 3, DIM_BATCH, 5, n), L);
      /* rank 4 with B inside: every axis has a multi-dim outer or inner extent. Sizes
       * up to 17 (a full vector and a tail): larger ones add compile time, not
       * coverage, over ranks 2 and 3 */
      bool rank4 = n <= 17;
      int32_t x4 = rank4 ? ir_input(f, "x4", 2, ty4(m, 2, n, DIM_BATCH, 3), L) : -1;
      char nm[32];
      for (int keep = 0; keep < 2; keep++) {
        int axes[] = {IR_AXIS_ALL, 0, 1};
        for (int a = 0; a < 3; a++) {
          snprintf(nm, sizeof nm, "r2_%d_%d", axes[a], keep);
          ir_output(f, nm, ir_reduce(f, ops[o], x, axes[a], keep, L), L);
        }
        for (int a = -1; a < 3; a++) {
          snprintf(nm, sizeof nm, "r3_%d_%d", a, keep);
          ir_output(f, nm, ir_reduce(f, ops[o], x3, a, keep, L), L);
        }
        for (int a = -1; a < 4 && rank4; a++) {
          snprintf(nm, sizeof nm, "r4_%d_%d", a, keep);
          ir_output(f, nm, ir_reduce(f, ops[o], x4, a, keep, L), L);
        }
      }
      int r = check(f, 4, -2, 2);
      if (r) printf("reduce %s n=%lld failed\n", ir_ops[ops[o]].name, (long long)n);
      fails += r;
      ir_module_free(m);
    }
  assert_int_equal(fails, 0);
}

static void test_softmax_rows(void **state) {
  (void)state;
  int fails = 0;
  for (int s = 0; s < NSIZES; s++) {
    int64_t n = sizes[s];
    Module *m = ir_module_new();
    Func *f = ir_func_new(m, "rows");
    int32_t x = ir_input(f, "x", 0, ty(m, 2, DIM_BATCH, n, 0), L);
    int64_t ld[2] = {DIM_BATCH, n};
    int32_t y = ir_input(f, "y", 1, ir_type(m, DT_LABEL, 2, ld), L);
    ir_output(f, "softmax1", ir_rowop(f, OP_SOFTMAX, x, 1, L), L);
    ir_output(f, "logsoftmax1", ir_rowop(f, OP_LOG_SOFTMAX, x, 1, L), L);
    ir_output(f, "softmax0", ir_rowop(f, OP_SOFTMAX, x, 0, L), L);
    ir_output(f, "logsoftmax0", ir_rowop(f, OP_LOG_SOFTMAX, x, 0, L), L);
    ir_output(f, "xent", ir_binary(f, OP_SOFTMAX_XENT, x, y, L), L);
    ir_output(f, "onehot", ir_unary(f, OP_ONEHOT, y, L), L);
    ir_output(f, "size", ir_size(f, x, IR_AXIS_ALL, L), L);
    ir_output(f, "size0", ir_size(f, x, 0, L), L);
    int r = check(f, 5, -20, 20);
    if (r) printf("rows n=%lld failed\n", (long long)n);
    fails += r;
    ir_module_free(m);
  }
  assert_int_equal(fails, 0);
}

static void test_shape_ops(void **state) {
  (void)state;
  int fails = 0;
  for (int s = 0; s < NSIZES; s++) {
    int64_t n = sizes[s];
    Module *m = ir_module_new();
    Func *f = ir_func_new(m, "shape");
    int32_t x = ir_input(f, "x", 0, ty(m, 2, DIM_BATCH, n, 0), L);
    int32_t v = ir_param(f, "v", ty(m, 1, n, 0, 0), INIT_ZEROS, 0, 0, L);
    ir_output(f, "bcast", ir_to_type(f, OP_BROADCAST, v, ty(m, 2, DIM_BATCH, n, 0), L), L);
    ir_output(f, "sumto_row", ir_to_type(f, OP_SUM_TO, x, ty(m, 1, n, 0, 0), L), L);
    ir_output(f, "sumto_keep", ir_to_type(f, OP_SUM_TO, x, ty(m, 2, 1, n, 0), L), L);
    ir_output(f, "sumto_col", ir_to_type(f, OP_SUM_TO, x, ty(m, 2, DIM_BATCH, 1, 0), L), L);
    ir_output(f, "sumto_all", ir_to_type(f, OP_SUM_TO, x, ty(m, 0, 0, 0, 0), L), L);
    int32_t w = ir_param(f, "w", ty(m, 2, n, 37, 0), INIT_ZEROS, 0, 0, L);
    ir_output(f, "transpose", ir_unary(f, OP_TRANSPOSE, w, L), L);
    ir_output(f, "transposeB", ir_unary(f, OP_TRANSPOSE, x, L), L);
    /* reshape: a copy in row-major order, B anywhere; of a parameter; of a constant
     * (materialized: a reshape is not elementwise) */
    ir_output(f, "reshape_col", ir_to_type(f, OP_RESHAPE, x, ty(m, 3, DIM_BATCH, n, 1), L), L);
    ir_output(f, "reshape_mid", ir_to_type(f, OP_RESHAPE, x, ty4(m, DIM_BATCH, 1, n, 1), L), L);
    ir_output(f, "reshape_moveB", ir_to_type(f, OP_RESHAPE, x, ty(m, 2, n, DIM_BATCH, 0), L), L);
    ir_output(f, "reshape_param", ir_to_type(f, OP_RESHAPE, w, ty(m, 3, 37, 1, n), L), L);
    int32_t c6 = ir_const(f, 0.25, ty(m, 2, 2, 3, 0), L);
    ir_output(f, "reshape_const", ir_to_type(f, OP_RESHAPE, c6, ty(m, 1, 6, 0, 0), L), L);
    /* a reshape feeding an elementwise kernel that broadcasts it back (autodiff's
     * spread of a reduction's gradient): [B] -> [B,1] -> [B,n] */
    int32_t rs = ir_reduce(f, OP_SUM, x, 1, false, L);
    int32_t col = ir_to_type(f, OP_RESHAPE, rs, ty(m, 2, DIM_BATCH, 1, 0), L);
    ir_output(f, "spread", ir_binary(f, OP_MUL, ir_to_type(f, OP_BROADCAST, col, ty(m, 2, DIM_BATCH, n, 0), L), x, L), L);
    int r = check(f, 3, -2, 2);
    if (r) printf("shape ops n=%lld failed\n", (long long)n);
    fails += r;
    ir_module_free(m);
  }
  assert_int_equal(fails, 0);
}

/* Pooling: channels and sizes of 1, 3, 7, 17 and 33 (square and odd, h != w; one
 * model each: a JIT compile per shape is what costs), windows with stride = kernel,
 * stride 2 with padding, stride 1 (overlapping), 1x1 and 5x5; each forward op and both
 * backward ops (dy: a pooled value). relu(x) pools windows of zeros, so max meets ties:
 * dx must go to each window's first cell. 2x2 windows with stride 2 run as vectors
 * (codegen/pool.c; odd sizes leave a row or column no window covers, and masked last
 * columns); 7 x 48 x 67 at batch 3 (67536 cells: over the 2^16 where the planes are
 * split) runs on one and two threads. f64 runs the first four shapes. test_portable
 * runs this again at 8 and 4 lanes. */
static void test_pooling(void **state) {
  (void)state;
  static const int64_t shapes[][3] = {{1, 1, 1},   {3, 7, 7},   {17, 7, 17},  {7, 33, 3},
                                      {33, 17, 17}, {1, 33, 33}, {7, 48, 67}};
  static const int geo[][3] = {{1, 1, 0}, {2, 2, 0}, {3, 2, 1}, {3, 1, 1}, {2, 1, 1}, {1, 2, 0}, {5, 3, 2}};
  int fails = 0, outputs = 0;
  size_t nshapes = f64 ? 4 : sizeof shapes / sizeof shapes[0];
  for (size_t z = 0; z < nshapes; z++) {
    const int64_t *hw = &shapes[z][1];
    Module *m = ir_module_new();
    Func *f = ir_func_new(m, "pool");
    int32_t x = ir_input(f, "x", 0, ty4(m, DIM_BATCH, shapes[z][0], hw[0], hw[1]), L);
    int32_t r = ir_unary(f, OP_RELU, x, L);
    for (size_t g = 0; g < sizeof geo / sizeof geo[0]; g++) {
      int k = geo[g][0], st = geo[g][1], p = geo[g][2];
      if (hw[0] + 2 * p < k || hw[1] + 2 * p < k) continue;
      char name[64];
      int32_t mx = ir_pool(f, OP_MAX_POOL2D, x, k, st, p, L), av = ir_pool(f, OP_AVG_POOL2D, x, k, st, p, L);
      int32_t mr = ir_pool(f, OP_MAX_POOL2D, r, k, st, p, L);
      Inst mb = ir_inst(OP_MAX_POOL2D_BWD, L), ab = ir_inst(OP_AVG_POOL2D_BWD, L);
      mb.nargs = 2;
      mb.args[0] = r;   /* ties */
      mb.args[1] = av;
      ab.nargs = 1;
      ab.args[0] = mx;
      ab.type = f->insts[x].type;
      ir_pool_set(&mb, k, st, p);
      ir_pool_set(&ab, k, st, p);
      const int32_t vals[5] = {mx, av, mr, ir_emit(f, &mb), ir_emit(f, &ab)};
      static const char *const what[5] = {"max", "avg", "max_relu", "max_bwd", "avg_bwd"};
      for (int o = 0; o < 5; o++) {
        snprintf(name, sizeof name, "%s_k%d_s%d_p%d", what[o], k, st, p);
        ir_output(f, name, vals[o], L);
        outputs++;
      }
    }
    /* over 2^16 input cells the planes are split across threads: 1 and 2 */
    int maxthreads = 3 * shapes[z][0] * hw[0] * hw[1] >= (1 << 16) ? 2 : 1;
    for (int threads = 1; threads <= maxthreads; threads++) {
      CgtConfig c = {-2, 2, threads, march, false, f64};
      int rr = cgt_check_forward(f, 3, f64 ? TOL64 : TOL, &c);
      if (rr) printf("pooling c=%lld %lldx%lld (%d threads) failed\n", (long long)shapes[z][0], (long long)hw[0],
                     (long long)hw[1], threads);
      fails += rr;
    }
    ir_module_free(m);
  }
  assert_int_equal(fails, 0);
  assert_true(outputs > (f64 ? 50 : 150));
}

/* Batchnorm's four ops (ops.def) as the frontend chains them: bn_mean, bn_var, the
 * rstd 1/sqrt(v + eps), bn_norm, and bn_norm_bwd with an independent cotangent g, on
 * 1, 3, 7, 17 and 33 channels of [B, C, H, W] (odd and square sizes, 1x1, widths that
 * leave a vector tail) and of [B, C], at batch 3 and batch 1; [3,33,17,33] is large
 * enough for the kernels' split over channels across two threads. Inputs from [-2, 2)
 * shifted by 3 (a mean far from 0, as after a relu) and the buffers at their initial
 * values (the interpreter's and the harness's). */
static void test_batchnorm(void **state) {
  (void)state;
  static const int64_t shapes[][3] = {{1, 1, 1}, {3, 7, 7}, {7, 17, 3}, {17, 5, 33}, {33, 3, 1}, {33, 17, 33},
                                      {3, 0, 0}, {17, 0, 0}, {33, 0, 0}, {1, 0, 0}};
  static const int64_t batches[] = {3, 1};
  int fails = 0, outputs = 0;
  size_t nshapes = f64 ? 7 : sizeof shapes / sizeof shapes[0];
  for (size_t z = 0; z < nshapes; z++)
    for (int bi = 0; bi < 2; bi++) {
      int64_t C = shapes[z][0];
      bool r4 = shapes[z][1] > 0;
      if (!r4 && batches[bi] == 1) continue;   /* one value per channel: var 0, rstd 1/sqrt(eps) */
      Module *m = ir_module_new();
      Func *f = ir_func_new(m, "bn");
      TypeId xt = r4 ? ty4(m, DIM_BATCH, C, shapes[z][1], shapes[z][2]) : ty(m, 2, DIM_BATCH, C, 0);
      TypeId ct = ty(m, 1, C, 0, 0);
      TypeId st = ir_type_scalar(m, DT_F32);
      int32_t x0 = ir_input(f, "x", 0, xt, L), g = ir_input(f, "g", 1, xt, L);
      int32_t x = ir_binary(f, OP_ADD, x0, ir_scalar(f, 3.0, L), L);
      int32_t rm = ir_buffer(f, "rm", ct, INIT_ZEROS, 0, L), rv = ir_buffer(f, "rv", ct, INIT_ONES, 0, L);
      int32_t mean = ir_bn(f, OP_BN_MEAN, x, rm, -1, L);
      int32_t var = ir_bn(f, OP_BN_VAR, x, mean, rv, L);
      int32_t r = ir_binary(f, OP_DIV, ir_const(f, 1.0, st, L),
                            ir_unary(f, OP_SQRT, ir_binary(f, OP_ADD, var, ir_const(f, 1e-5, st, L), L), L), L);
      int32_t xhat = ir_bn(f, OP_BN_NORM, x, mean, r, L);
      int32_t dx = ir_bn(f, OP_BN_NORM_BWD, xhat, g, r, L);
      /* the inference form: the running statistics in place of the batch's */
      int32_t xinf = ir_bn(f, OP_BN_NORM, x, rm, ir_binary(f, OP_DIV, ir_const(f, 1.0, st, L), ir_unary(f, OP_SQRT, rv, L), L), L);
      const int32_t vals[5] = {mean, var, xhat, dx, xinf};
      static const char *const what[5] = {"mean", "var", "xhat", "dx", "xhat_running"};
      for (int o = 0; o < 5; o++) ir_output(f, what[o], vals[o], L);
      outputs += 5;
      int rr = check_training(f, batches[bi], -2, 2);
      if (rr)
        printf("batchnorm c=%lld %lldx%lld batch %lld failed\n", (long long)C, (long long)shapes[z][1],
               (long long)shapes[z][2], (long long)batches[bi]);
      fails += rr;
      ir_module_free(m);
    }
  assert_int_equal(fails, 0);
  assert_true(outputs >= (f64 ? 60 : 75));
}

static void test_f64_batchnorm(void **state) {
  f64 = true;
  test_batchnorm(state);
  f64 = false;
}

static void test_f64_pooling(void **state) {
  f64 = true;
  test_pooling(state);
  f64 = false;
}

/* conv2d and its two gradients, each an output, on 1, 3, 7, 17 and 33 channels (3 to 33
 * output channels), odd image sizes, stride 1, 2 and 3, padding, dilation, 1x1 kernels
 * (with stride 1 and no padding the image is the im2col matrix: no buffer) and
 * non-square kernels; widths 17 and 33 give whole vectors and masked edges (stride 1).
 * The GEMM blocking (codegen/conv.c: per image, forward O x C kh kw x Ho Wo, backward-
 * data C kh kw x O x Ho Wo, backward-weights O x Ho Wo x C kh kw): 17 and 33 output
 * channels leave 5 and 9 rows after whole 12-row panels (the 8-row micro-kernel), 3
 * leaves 3 (the 4-row one); C kh kw = 425 > KC = 256 and 297 > MC = 144 (two blocks);
 * Ho Wo = 289 > KC (backward-weights sums two K blocks per image) and 2304 > NC = 2048.
 * LeNet's two layers and 7 -> 6 channels on 30 x 30 take the register-blocked rows
 * (forward; backward-weights when O x vectors per row <= 12) at 16 lanes, the GEMM at
 * 8 and 4 and in f64; backward-weights rows take the taps of a kernel row in groups
 * (LeNet's c1: 3 + 2; the 1 x 7 dilated case with 5 channels: 4 + 3). The forward
 * with the output channels in the lanes takes O = 16 and 13 at 16 lanes (stride 2 with
 * padding; dilation 2 with rows of 30 in segments), and at 8 and 4 lanes O = 3 to 7
 * (LeNet's c1, strides, padding, dilation). Backward-data of stride 1 with at most 12
 * input channels takes the images in the lanes (every such case here: batch 3 and 5
 * fill part of one group; padding 3 with dilation 3; padding 3 of a 3 x 3 kernel, where
 * the transposed padding is -1); with 14 channels on rows of 12 it takes the transposed
 * convolution's rows at 16 lanes (C x vectors per row <= 24), the GEMM at 8 and 4.
 * LeNet's c2 (case 14) also runs at batch 37: three groups of 16 images (the last of
 * 5), split over two chunks on two threads. Backward-weights with the output channels
 * in the lanes (at least half of them used, at most 4 vectors, blocks of at least 3
 * taps, vectors of 32 or 64 bytes) takes at 16 lanes LeNet's c2 (O = 16), the cases
 * with 17 (2 vectors) and 33 output channels (3 vectors: 25 taps in blocks of 9 + 8 +
 * 8), the forward's cases above and the last five: O = 16 with stride 2 and padding, 13
 * with dilation 2, 31 (2 vectors) with stride 2, dilation 2 and a 3 x 2 kernel, 47 (3
 * vectors, 15 units on two chunks split inside a channel), 11 with stride 2; at 8 lanes
 * (AVX2) those with 6 to 17 output channels the rows do not take (17: 3 vectors, blocks
 * of 3 taps); in f64 with AVX2 (4 lanes) those with 3 to 7 (stride 2 with dilation 2,
 * padding, two chunks); not with 16-byte vectors (SSE). Batch 3 and 5: chunks of
 * unequal images. The cases over 2^20 multiply-adds run split across two chunks with
 * two threads (forward and backward-data over images, backward-weights over dW's
 * columns or rows, or taps), and on one. */
static void test_conv(void **state) {
  (void)state;
  static const struct { int64_t c, o, h, w, kh, kw, s, p, d; } cases[] = {
      {1, 3, 8, 8, 3, 3, 1, 0, 1},   {3, 7, 9, 17, 3, 3, 1, 1, 1}, {3, 17, 7, 7, 3, 3, 2, 1, 1},
      {7, 3, 11, 33, 5, 5, 1, 2, 1}, {7, 7, 13, 9, 3, 2, 2, 2, 2}, {3, 3, 5, 6, 1, 1, 1, 0, 1},
      {1, 1, 17, 17, 2, 3, 3, 1, 1}, {3, 7, 15, 15, 3, 3, 1, 3, 3}, {17, 33, 17, 17, 5, 5, 1, 2, 1},
      {33, 17, 7, 9, 3, 3, 1, 1, 1}, {33, 7, 17, 17, 1, 1, 1, 0, 1}, {17, 3, 33, 33, 1, 1, 2, 0, 1},
      {3, 3, 48, 48, 3, 3, 1, 1, 1}, {1, 6, 28, 28, 5, 5, 1, 2, 1},  {6, 16, 14, 14, 5, 5, 1, 0, 1},
      {7, 6, 30, 30, 5, 5, 1, 2, 1},  {2, 5, 12, 20, 1, 7, 1, 3, 2}, {5, 16, 13, 11, 3, 3, 2, 1, 1},
      {3, 13, 12, 30, 3, 3, 1, 2, 2}, {2, 5, 9, 9, 3, 3, 1, 3, 1},   {14, 3, 9, 12, 3, 3, 1, 1, 1},
      {8, 16, 33, 33, 3, 3, 2, 1, 1}, {4, 13, 30, 30, 3, 3, 1, 2, 2}, {3, 31, 20, 20, 3, 2, 2, 1, 2},
      {5, 47, 14, 14, 5, 5, 1, 0, 1}, {6, 11, 12, 12, 5, 5, 2, 2, 1},
  };
  int fails = 0;
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    Module *m = ir_module_new();
    Func *f = ir_func_new(m, "conv");
    int32_t x = ir_input(f, "x", 0, ty4(m, DIM_BATCH, cases[k].c, cases[k].h, cases[k].w), L);
    int32_t w = ir_input(f, "w", 1, ty4(m, cases[k].o, cases[k].c, cases[k].kh, cases[k].kw), L);
    int32_t y = ir_conv2d(f, OP_CONV2D, x, w, cases[k].s, cases[k].p, cases[k].d, TYPE_VOID, L);
    ir_output(f, "y", y, L);
    /* the gradients of dy = tanh(y), a buffer of its own */
    int32_t dy = ir_unary(f, OP_TANH, y, L);
    ir_output(f, "dx", ir_conv2d(f, OP_CONV2D_BWD_DATA, dy, w, cases[k].s, cases[k].p, cases[k].d, f->insts[x].type, L), L);
    ir_output(f, "dw", ir_conv2d(f, OP_CONV2D_BWD_WEIGHT, x, dy, cases[k].s, cases[k].p, cases[k].d, f->insts[w].type, L), L);
    const TensorType *yt = ir_vtype(f, y);
    int64_t macs = 5 * cases[k].o * cases[k].c * cases[k].kh * cases[k].kw * yt->dims[2] * yt->dims[3];
    for (int threads = 1; threads <= (macs >= (1 << 20) ? 2 : 1); threads++)
      for (int64_t batch = 3; batch <= (k == 14 ? 37 : 5); batch += batch == 5 ? 32 : 2) {
        CgtConfig c = {-1, 1, threads, march, false, f64};
        int r = cgt_check_forward(f, batch, f64 ? TOL64 : TOL, &c);
        if (r) printf("conv case %zu failed (batch %lld, %d threads)\n", k, (long long)batch, threads);
        fails += r;
      }
    ir_module_free(m);
  }
  assert_int_equal(fails, 0);
}

/* layernorm, layernorm_bwd and layernorm_bwd_gamma over rows of 1, 3, 7, 17, 33 and
 * 1000 elements (vector tails at 16, 8 and 4 lanes), ranks 2, 3 and 4 with 1 to 3
 * normalized dims, x shifted by 3 (a mean far from 0 against a std near 0.6), on one
 * thread and split over two (each value: the same rows either way). gamma, beta and dy
 * are inputs of their own. */
static void test_layernorm(void **state) {
  (void)state;
  static const struct { int rank, k; int64_t d[3]; } cases[] = {
      {2, 1, {1}},        {2, 1, {3}},        {2, 1, {7}},         {2, 1, {17}},      {2, 1, {33}},
      {2, 1, {1000}},     {3, 1, {7, 17}},    {3, 2, {7, 17}},     {3, 1, {33, 3}},   {3, 2, {1, 1}},
      {4, 3, {3, 7, 17}}, {4, 1, {3, 7, 33}}, {4, 2, {17, 3, 7}},  {4, 3, {17, 1, 33}},
  };
  int fails = 0;
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
    for (int threads = 1; threads <= 2; threads++) {
      Module *m = ir_module_new();
      Func *f = ir_func_new(m, "ln");
      int64_t d[4] = {DIM_BATCH, cases[c].d[0], cases[c].d[1], cases[c].d[2]};
      int r = cases[c].rank, k = cases[c].k;
      TypeId xt = ir_type(m, DT_F32, r, d), nt = ir_type(m, DT_F32, k, d + r - k);
      int32_t x0 = ir_input(f, "x", 0, xt, L);
      int32_t x = ir_binary(f, OP_ADD, x0, ir_scalar(f, 3.0, L), L);
      int32_t g = ir_input(f, "gamma", 1, nt, L), b = ir_input(f, "beta", 2, nt, L);
      int32_t dy = ir_input(f, "dy", 3, xt, L);
      ir_output(f, "y", ir_layernorm(f, OP_LAYERNORM, x, g, b, k, 1e-5, L), L);
      ir_output(f, "dx", ir_layernorm(f, OP_LAYERNORM_BWD, x, g, dy, k, 1e-5, L), L);
      ir_output(f, "dgamma", ir_layernorm(f, OP_LAYERNORM_BWD_GAMMA, x, dy, -1, k, 1e-5, L), L);
      CgtConfig cfg = {-1, 1, threads, march, false, f64};
      int rr = cgt_check_forward(f, 5, f64 ? TOL64 : TOL, &cfg);
      if (rr) printf("layernorm case %zu (rank %d, dims=%d) on %d thread(s) failed\n", c, r, k, threads);
      fails += rr;
      ir_module_free(m);
    }
  assert_int_equal(fails, 0);
}

static void test_f64_layernorm(void **state) {
  f64 = true;
  test_layernorm(state);
  f64 = false;
}

/* A chain of ops feeding each other, with constants read by every kernel kind. */
static void test_chain(void **state) {
  (void)state;
  Module *m = ir_module_new();
  Func *f = ir_func_new(m, "chain");
  int32_t x = ir_input(f, "x", 0, ty(m, 2, DIM_BATCH, 33, 0), L);
  int32_t c = ir_const(f, 0.5, ty(m, 2, 33, 17, 0), L);
  int32_t h = ir_binary(f, OP_MATMUL, x, c, L);
  int32_t t = ir_unary(f, OP_TANH, h, L);
  int32_t s = ir_reduce(f, OP_SUM, ir_const(f, 2.0, ty(m, 2, 4, 17, 0), L), 0, false, L);
  int32_t u = ir_binary(f, OP_ADD, t, s, L);
  ir_output(f, "u", ir_rowop(f, OP_SOFTMAX, u, 1, L), L);
  ir_output(f, "k", ir_const(f, 3.0, ty(m, 1, 5, 0, 0), L), L);
  assert_int_equal(check(f, 9, -1, 1), 0);
  ir_module_free(m);
}

/* runtime/rng.c's generator (declared here: runtime.h and model.h both define
 * BPRT_MAX_RANK). The generated mask must equal bprt_dropout_mask bit for bit. */
void bprt_dropout_mask(float *mask, int64_t n, float p, uint64_t seed, uint64_t stream);

static void test_dropout(void **state) {
  (void)state;
  for (int s = 0; s < NSIZES; s++) {
    int64_t n = sizes[s];
    Module *m = ir_module_new();
    Func *f = ir_func_new(m, "drop");
    TypeId t = ty(m, 2, DIM_BATCH, n, 0);
    int32_t mask = ir_dropout_mask(f, 0.3, 5, t, L);
    ir_output(f, "mask", mask, L);
    ir_loss(f, ir_reduce(f, OP_SUM, mask, IR_AXIS_ALL, false, L), L);
    CgOptions o = {"native", 2, 1, false, false};
    CgModel *cm = test_build(f, f, NULL, &o);
    assert_non_null(cm);
    assert_int_equal(cg_model_jit(cm), 0);
    bprt_model_desc *d = cg_model_desc(cm);
    CgtFrame fr;
    int64_t batch = 3, numel = batch * n;
    cgt_frame_init(&fr, d, batch, 1);
    float *want = calloc((size_t)numel, sizeof *want);
    for (uint64_t step = 1; step <= 3; step++) {
      fr.fr.step = step;
      fr.fr.seed = 99 + step;
      d->grad(&fr.fr);
      /* stream = 1<<62 | id<<40 | step (bprt_stream_dropout) */
      uint64_t stream = (UINT64_C(1) << 62) | (UINT64_C(5) << 40) | step;
      bprt_dropout_mask(want, numel, 0.3f, 99 + step, stream);
      assert_memory_equal(fr.outputs[0], want, (size_t)numel * sizeof *want);
      double sum = 0;
      for (int64_t k = 0; k < numel; k++) sum += want[k];
      assert_true(fabs(*fr.loss - sum) <= 1e-5 * fmax(1, sum));
    }
    /* inference: dropout is the identity */
    d->forward(&fr.fr);
    for (int64_t k = 0; k < numel; k++) assert_true(fr.outputs[0][k] == 1.0f);
    free(want);
    cgt_frame_free(&fr);
    cg_model_free(cm);
    ir_module_free(m);
  }
}

/* The fusion rule: adjacent elementwise instructions of one type share a kernel. */
static void test_schedule(void **state) {
  (void)state;
  Module *m = ir_module_new();
  Func *f = ir_func_new(m, "sched");
  TypeId t = ty(m, 2, DIM_BATCH, 33, 0);
  int32_t x = ir_input(f, "x", 0, t, L);                         /* %0 */
  int32_t a = ir_unary(f, OP_RELU, x, L);                        /* %1 group 0 */
  int32_t b = ir_binary(f, OP_MUL, a, x, L);                     /* %2 group 0 */
  int32_t c = ir_reduce(f, OP_SUM, b, 1, true, L);               /* %3 group 1 */
  int32_t d = ir_binary(f, OP_SUB, b, c, L);                     /* %4 group 2 */
  int32_t e = ir_unary(f, OP_EXP, d, L);                         /* %5 group 2 */
  ir_output(f, "e", e, L);                                       /* %6 group 3 */
  Arena *ar = arena_new();
  KernelPlanOptions fused = {true}, single = {false};
  KernelPlan *sc = pass_kernel_plan(ar, f, PLAN_INFERENCE, &fused);
  assert_int_equal(sc->ngroups, 4);
  int32_t want_start[5] = {0, 2, 3, 5, 6}, want_order[6] = {1, 2, 3, 4, 5, 6};
  assert_memory_equal(sc->group_start, want_start, sizeof want_start);
  assert_memory_equal(sc->order, want_order, sizeof want_order);
  assert_true(kernel_plan_verify(sc, "test"));
  sc = pass_kernel_plan(ar, f, PLAN_INFERENCE, &single);
  assert_int_equal(sc->ngroups, 6);
  assert_true(kernel_plan_verify(sc, "test"));
  arena_free(ar);
  /* and the fused kernels compute what the interpreter does */
  assert_int_equal(check(f, 5, -2, 2), 0);
  ir_module_free(m);
}

/* The same kernels with 8 lanes (AVX2) and 4 lanes (SSE): other vector tails. */
static void test_portable(void **state) {
  static const char *levels[] = {"x86-64-v3", "x86-64-v2"};
  for (int l = 0; l < 2; l++) {
    march = levels[l];
    test_unary(state);
    test_reductions(state);
    test_softmax_rows(state);
    test_shape_ops(state);
    test_conv(state);
    test_pooling(state);
    test_batchnorm(state);
    test_layernorm(state);
  }
  march = NULL;
}

/* f64: every op above again on double code (8 lanes with AVX-512, then 4 and 2). */
static void test_f64_elementwise(void **state) {
  f64 = true;
  test_unary(state);
  test_binary_broadcast(state);
  f64 = false;
}

static void test_f64_rows(void **state) {
  f64 = true;
  test_reductions(state);
  test_softmax_rows(state);
  test_shape_ops(state);
  test_conv(state);
  test_chain(state);
  test_schedule(state);
  f64 = false;
}

static void test_f64_portable(void **state) {
  f64 = true;
  test_portable(state);
  f64 = false;
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_unary),        cmocka_unit_test(test_binary_broadcast),
      cmocka_unit_test(test_reductions),   cmocka_unit_test(test_softmax_rows),
      cmocka_unit_test(test_shape_ops),    cmocka_unit_test(test_chain),
      cmocka_unit_test(test_conv),
      cmocka_unit_test(test_dropout),      cmocka_unit_test(test_schedule),
      cmocka_unit_test(test_portable),     cmocka_unit_test(test_f64_elementwise),
      cmocka_unit_test(test_f64_rows),     cmocka_unit_test(test_f64_portable),
      cmocka_unit_test(test_pooling),      cmocka_unit_test(test_f64_pooling),
      cmocka_unit_test(test_batchnorm),    cmocka_unit_test(test_f64_batchnorm),
      cmocka_unit_test(test_layernorm),    cmocka_unit_test(test_f64_layernorm),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
