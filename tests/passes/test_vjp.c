/* tests/passes/test_vjp.c — every op's VJP rule against central finite differences in
 * f64, on small random shapes with broadcasting, size-1 dims and the batch dim.
 *
 * Each case builds y = op(operands) where the differentiated operands depend on params
 * (a param cannot have the batch dim, so a batch operand is input + param). The harness
 * adds a random cotangent input r of y's type and the loss sum(y * r), so the gradient
 * checked is r^T J for a random r: every entry of the Jacobian counts. Analytic
 * gradients come from pass_autodiff alone and from the whole pipeline (canonicalize,
 * autodiff, simplify); both are compared per element with the five-point difference
 * (8 (L(p+e) - L(p-e)) - (L(p+2e) - L(p-2e))) / 12e, e = 1e-3 (error O(e^4)):
 * |num - ana| / max(|num| + |ana|, 1e-5 max(1, |L|)) <= 1e-6. Values are drawn away from kinks
 * (relu, abs: |v| >= 0.1) and from the domain edge (log, sqrt, div: v in [0.5, 2]). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ir/ir.h"
#include "passes/passes.h"
#include "tests/compile.h"

#define BATCH 3
#define FD_EPS 1e-3
#define TOL 1e-6
#define FD_FLOOR 1e-5  /* times max(1, |L|): below it a difference quotient is rounding noise */

enum { DOM_ANY, DOM_POS, DOM_AWAY0, DOM_LABEL, DOM_SPREAD, DOM_TINY };

typedef struct {
  Module *m;
  Func *f;
  int ninputs;
  uint8_t dom[256];  /* value domain of each leaf, by instruction id */
} Build;

static TypeId tyn(Module *m, DType dt, int rank, int64_t d0, int64_t d1) {
  int64_t d[2] = {d0, d1};
  return ir_type(m, dt, rank, d);
}

/* Leaves of any rank (dims: rank entries, DIM_BATCH allowed for inputs). */
static int32_t par_dims(Build *b, int dom, int rank, const int64_t *dims) {
  char name[16];
  int n = 0;
  for (int i = 0; i < b->f->ninsts; i++) n += b->f->insts[i].op == OP_PARAM;
  snprintf(name, sizeof name, "p%d", n);
  int32_t v = ir_param(b->f, name, ir_type(b->m, DT_F32, rank, dims), INIT_ZEROS, 0, 0, SRCLOC_NONE);
  b->dom[v] = (uint8_t)dom;
  return v;
}

static int32_t inp_dims(Build *b, int dom, int rank, const int64_t *dims) {
  char name[16];
  snprintf(name, sizeof name, "x%d", b->ninputs);
  int32_t v = ir_input(b->f, name, b->ninputs++, ir_type(b->m, DT_F32, rank, dims), SRCLOC_NONE);
  b->dom[v] = (uint8_t)dom;
  return v;
}

static int32_t par(Build *b, int dom, int rank, int64_t d0, int64_t d1) {
  char name[16];
  int n = 0;
  for (int i = 0; i < b->f->ninsts; i++) n += b->f->insts[i].op == OP_PARAM;
  snprintf(name, sizeof name, "p%d", n);
  int32_t v = ir_param(b->f, name, tyn(b->m, DT_F32, rank, d0, d1), INIT_ZEROS, 0, 0, SRCLOC_NONE);
  b->dom[v] = (uint8_t)dom;
  return v;
}

static int32_t inp(Build *b, int dom, DType dt, int rank, int64_t d0, int64_t d1) {
  char name[16];
  snprintf(name, sizeof name, "x%d", b->ninputs);
  int32_t v = ir_input(b->f, name, b->ninputs++, tyn(b->m, dt, rank, d0, d1), SRCLOC_NONE);
  b->dom[v] = (uint8_t)dom;
  return v;
}

/* A [B, n] operand that depends on a param: x[B,n] + p[n]. */
static int32_t batched(Build *b, int dom, int64_t n) {
  int32_t x = inp(b, DOM_ANY, DT_F32, 2, DIM_BATCH, n);
  int32_t p = par(b, DOM_ANY, 1, n, 0);
  int32_t s = ir_binary(b->f, OP_ADD, x, p, SRCLOC_NONE);
  if (dom == DOM_POS) s = ir_unary(b->f, OP_EXP, s, SRCLOC_NONE);
  return s;
}

static double urand(uint64_t *st) {
  *st = *st * 6364136223846793005ull + 1442695040888963407ull;
  return (double)(*st >> 11) * 0x1.0p-53;
}

static void fill(Tensor *t, int dom, uint64_t *st) {
  for (int64_t k = 0; k < t->numel; k++) {
    double u = urand(st);
    switch (dom) {
    case DOM_POS: t->data[k] = 0.5 + 1.5 * u; break;
    case DOM_AWAY0: t->data[k] = (u < 0.5 ? -1 : 1) * (0.1 + 0.9 * urand(st)); break;
    case DOM_LABEL: t->data[k] = floor(u * (double)t->type.dims[t->type.rank - 1]); break;
    /* distinct values 2/numel apart (7919 is a prime above every numel here, so
     * k -> 7919 k mod numel is a permutation): max has no near-ties that a finite
     * difference step could cross */
    case DOM_SPREAD: t->data[k] = 2.0 * (double)((k * 7919) % t->numel) / (double)t->numel - 1.0; break;
    case DOM_TINY: t->data[k] = 0.01 * (2 * u - 1); break;
    default: t->data[k] = 2 * u - 1; break;
    }
  }
}

static TensorType resolved(Func *f, int32_t v) {
  TensorType t = *ir_vtype(f, v);
  for (int i = 0; i < t.rank; i++)
    if (t.dims[i] == DIM_BATCH) t.dims[i] = BATCH;
  return t;
}

typedef int32_t (*BuildFn)(Build *b);

/* Build, differentiate (autodiff alone, or the whole pipeline), compare with finite
 * differences. Returns the number of parameter elements checked. */
static int check_case(const char *name, BuildFn build, bool pipeline) {
  Build b;
  memset(&b, 0, sizeof b);
  b.m = ir_module_new();
  b.f = ir_func_new(b.m, name);
  int32_t y = build(&b);
  int32_t r = inp(&b, DOM_ANY, DT_F32, 0, 0, 0);
  b.f->insts[r].type = b.f->insts[y].type;  /* the cotangent input has y's type */
  int32_t l = ir_reduce(b.f, OP_SUM, ir_binary(b.f, OP_MUL, y, r, SRCLOC_NONE), IR_AXIS_ALL, false, SRCLOC_NONE);
  ir_loss(b.f, l, SRCLOC_NONE);
  assert_true(ir_verify(b.f, "build"));

  /* leaves in the calling convention's order, with random values */
  uint64_t st = 0x1234567ull;
  Tensor inputs[16], params[16];
  int ni = 0, np = 0;
  int32_t param_ids[16];
  for (int32_t i = 0; i < b.f->ninsts; i++) {
    const Inst *in = &b.f->insts[i];
    if (in->op != OP_INPUT && in->op != OP_PARAM) continue;
    TensorType t = resolved(b.f, i);
    Tensor x = ir_tensor_new(&t);
    fill(&x, t.dtype == DT_LABEL ? DOM_LABEL : b.dom[i], &st);
    if (in->op == OP_INPUT) inputs[in->iattr[0]] = x, ni++;
    else param_ids[np] = i, params[np++] = x;
  }

  PassOptions opt;
  pass_options_default(&opt);
  opt.verify = true;
  Func *g = pipeline ? test_grad(b.f, &opt) : pass_autodiff(b.f, &opt);
  assert_non_null(g);
  assert_true(ir_verify(g, name));
  int32_t loss = -1, grads[16];
  int ng = 0;
  for (int32_t i = 0; i < g->ninsts; i++) {
    if (g->insts[i].op == OP_LOSS) loss = g->insts[i].args[0];
    if (g->insts[i].op == OP_GRAD) grads[ng++] = g->insts[i].args[1];
  }
  assert_true(loss >= 0);
  assert_int_equal(ng, np);
  (void)param_ids;

  Interp *it = ir_interp_run(g, INTERP_F64, BATCH, inputs, ni, params, np, 1, 1);
  assert_non_null(it);
  double floor_ = FD_FLOOR * fmax(1.0, fabs(ir_interp_value(it, loss)->data[0]));
  int checked = 0;
  double worst = 0;
  for (int p = 0; p < np; p++) {
    const Tensor *ga = ir_interp_value(it, grads[p]);
    assert_non_null(ga);
    assert_int_equal(ga->numel, params[p].numel);
    for (int64_t k = 0; k < params[p].numel; k++) {
      double keep = params[p].data[k], lv[4];
      static const double step[4] = {1, -1, 2, -2};
      for (int j = 0; j < 4; j++) {
        params[p].data[k] = keep + step[j] * FD_EPS;
        Interp *a = ir_interp_run(g, INTERP_F64, BATCH, inputs, ni, params, np, 1, 1);
        assert_non_null(a);
        lv[j] = ir_interp_value(a, loss)->data[0];
        ir_interp_free(a);
      }
      params[p].data[k] = keep;
      double num = (8 * (lv[0] - lv[1]) - (lv[2] - lv[3])) / (12 * FD_EPS), ana = ga->data[k];
      double den = fabs(num) + fabs(ana);
      double rel = fabs(num - ana) / (den > floor_ ? den : floor_);
      if (rel > worst) worst = rel;
      if (rel > TOL)
        fail_msg("%s (%s): param %d element %lld: finite differences %.12g, autodiff %.12g, rel %.3g > %g", name,
                 pipeline ? "pipeline" : "autodiff", p, (long long)k, num, ana, rel, TOL);
      checked++;
    }
  }
  ir_interp_free(it);
  for (int i = 0; i < ni; i++) ir_tensor_free(&inputs[i]);
  for (int i = 0; i < np; i++) ir_tensor_free(&params[i]);
  ir_module_free(b.m);
  return checked;
}

/* ------------------------------------------------------------------ the cases */

#define F (b->f)
#define N SRCLOC_NONE

static int32_t c_add_bcast(Build *b) { return ir_binary(F, OP_ADD, par(b, 0, 2, 3, 4), par(b, 0, 1, 4, 0), N); }
static int32_t c_add_size1(Build *b) { return ir_binary(F, OP_ADD, par(b, 0, 2, 3, 1), par(b, 0, 2, 1, 4), N); }
static int32_t c_add_batch(Build *b) { return ir_binary(F, OP_ADD, batched(b, 0, 4), par(b, 0, 0, 0, 0), N); }
static int32_t c_sub_bcast(Build *b) { return ir_binary(F, OP_SUB, par(b, 0, 1, 4, 0), par(b, 0, 2, 3, 4), N); }
static int32_t c_mul_bcast(Build *b) { return ir_binary(F, OP_MUL, par(b, 0, 2, 3, 1), par(b, 0, 2, 3, 4), N); }
static int32_t c_mul_batch(Build *b) { return ir_binary(F, OP_MUL, batched(b, 0, 4), par(b, 0, 2, 1, 4), N); }
static int32_t c_div(Build *b) { return ir_binary(F, OP_DIV, par(b, 0, 2, 3, 4), par(b, DOM_POS, 1, 4, 0), N); }
static int32_t c_div_batch(Build *b) { return ir_binary(F, OP_DIV, par(b, 0, 1, 4, 0), batched(b, DOM_POS, 4), N); }
static int32_t c_square(Build *b) { int32_t x = par(b, 0, 2, 2, 3); return ir_binary(F, OP_MUL, x, x, N); }
static int32_t c_neg(Build *b) { return ir_unary(F, OP_NEG, par(b, 0, 2, 2, 3), N); }
static int32_t c_exp(Build *b) { return ir_unary(F, OP_EXP, par(b, 0, 2, 2, 3), N); }
static int32_t c_log(Build *b) { return ir_unary(F, OP_LOG, par(b, DOM_POS, 2, 2, 3), N); }
static int32_t c_sqrt(Build *b) { return ir_unary(F, OP_SQRT, par(b, DOM_POS, 2, 2, 3), N); }
static int32_t c_abs(Build *b) { return ir_unary(F, OP_ABS, par(b, DOM_AWAY0, 2, 2, 3), N); }
static int32_t c_relu(Build *b) { return ir_unary(F, OP_RELU, par(b, DOM_AWAY0, 2, 3, 4), N); }
static int32_t c_sigmoid(Build *b) { return ir_unary(F, OP_SIGMOID, par(b, 0, 2, 2, 3), N); }
static int32_t c_tanh(Build *b) { return ir_unary(F, OP_TANH, par(b, 0, 2, 2, 3), N); }
static int32_t c_pow2(Build *b) { return ir_pow(F, par(b, 0, 2, 2, 3), 2.0, N); }
static int32_t c_pow3(Build *b) { return ir_pow(F, par(b, 0, 1, 5, 0), 3.0, N); }
static int32_t c_pow_half(Build *b) { return ir_pow(F, par(b, DOM_POS, 1, 5, 0), 0.5, N); }
static int32_t c_relu_grad(Build *b) {
  return ir_binary(F, OP_RELU_GRAD, par(b, DOM_AWAY0, 2, 2, 3), par(b, 0, 2, 2, 3), N);
}
static int32_t c_sigmoid_grad(Build *b) { return ir_binary(F, OP_SIGMOID_GRAD, par(b, 0, 2, 2, 3), par(b, 0, 2, 2, 3), N); }
static int32_t c_tanh_grad(Build *b) { return ir_binary(F, OP_TANH_GRAD, par(b, 0, 2, 2, 3), par(b, 0, 2, 2, 3), N); }
static int32_t c_matmul(Build *b) { return ir_binary(F, OP_MATMUL, par(b, 0, 2, 2, 3), par(b, 0, 2, 3, 4), N); }
static int32_t c_matmul_batch(Build *b) { return ir_binary(F, OP_MATMUL, batched(b, 0, 3), par(b, 0, 2, 3, 2), N); }
static int32_t c_matmul_nt(Build *b) { return ir_binary(F, OP_MATMUL_NT, par(b, 0, 2, 2, 3), par(b, 0, 2, 4, 3), N); }
static int32_t c_matmul_tn(Build *b) { return ir_binary(F, OP_MATMUL_TN, par(b, 0, 2, 3, 2), par(b, 0, 2, 3, 4), N); }
static int32_t c_matmul_1(Build *b) { return ir_binary(F, OP_MATMUL, par(b, 0, 2, 1, 3), par(b, 0, 2, 3, 1), N); }
static int32_t c_transpose(Build *b) { return ir_unary(F, OP_TRANSPOSE, batched(b, 0, 3), N); }
static int32_t c_sum0(Build *b) { return ir_reduce(F, OP_SUM, batched(b, 0, 4), 0, false, N); }
static int32_t c_sum1(Build *b) { return ir_reduce(F, OP_SUM, batched(b, 0, 4), 1, false, N); }
static int32_t c_sum1_keep(Build *b) { return ir_reduce(F, OP_SUM, par(b, 0, 2, 3, 4), 1, true, N); }
static int32_t c_sum_all(Build *b) { return ir_reduce(F, OP_SUM, par(b, 0, 2, 3, 4), IR_AXIS_ALL, false, N); }
static int32_t c_mean0_batch(Build *b) { return ir_reduce(F, OP_MEAN, batched(b, 0, 4), 0, false, N); }
static int32_t c_mean1(Build *b) { return ir_reduce(F, OP_MEAN, batched(b, 0, 4), 1, false, N); }
static int32_t c_mean_all(Build *b) { return ir_reduce(F, OP_MEAN, batched(b, 0, 4), IR_AXIS_ALL, false, N); }
static int32_t c_mean_keep(Build *b) { return ir_reduce(F, OP_MEAN, par(b, 0, 2, 3, 4), 0, true, N); }
static int32_t c_max1(Build *b) { return ir_reduce(F, OP_MAX, batched(b, 0, 4), 1, false, N); }
static int32_t c_max0_keep(Build *b) { return ir_reduce(F, OP_MAX, par(b, 0, 2, 3, 4), 0, true, N); }
static int32_t c_max_all(Build *b) { return ir_reduce(F, OP_MAX, par(b, 0, 2, 3, 4), IR_AXIS_ALL, false, N); }
static int32_t c_broadcast(Build *b) {
  return ir_to_type(F, OP_BROADCAST, par(b, 0, 2, 3, 1), tyn(b->m, DT_F32, 2, 3, 4), N);
}
static int32_t c_broadcast_batch(Build *b) {
  return ir_to_type(F, OP_BROADCAST, par(b, 0, 1, 4, 0), tyn(b->m, DT_F32, 2, DIM_BATCH, 4), N);
}
static int32_t c_sum_to(Build *b) { return ir_to_type(F, OP_SUM_TO, batched(b, 0, 4), tyn(b->m, DT_F32, 2, 1, 4), N); }
static int32_t c_softmax1(Build *b) { return ir_rowop(F, OP_SOFTMAX, batched(b, 0, 5), 1, N); }
static int32_t c_softmax0(Build *b) { return ir_rowop(F, OP_SOFTMAX, par(b, 0, 2, 3, 4), 0, N); }
static int32_t c_log_softmax(Build *b) { return ir_rowop(F, OP_LOG_SOFTMAX, batched(b, 0, 5), 1, N); }
static int32_t c_softmax_xent(Build *b) {
  int32_t z = batched(b, 0, 5);
  return ir_binary(F, OP_SOFTMAX_XENT, z, inp(b, DOM_LABEL, DT_LABEL, 2, DIM_BATCH, 5), N);
}
static int32_t c_onehot_mul(Build *b) {   /* onehot(y) * p: no gradient to the labels */
  int32_t oh = ir_unary(F, OP_ONEHOT, inp(b, DOM_LABEL, DT_LABEL, 2, DIM_BATCH, 4), N);
  return ir_binary(F, OP_MUL, oh, par(b, 0, 1, 4, 0), N);
}
static int32_t c_size(Build *b) {        /* x * size(x): size is a count, no gradient */
  int32_t x = batched(b, 0, 4);
  return ir_binary(F, OP_MUL, x, ir_size(F, x, 0, N), N);
}
static int32_t c_eq_sign(Build *b) {     /* p * eq(p, q) + sign(q) */
  int32_t p = par(b, 0, 2, 2, 3), q = par(b, 0, 2, 2, 3);
  int32_t e = ir_binary(F, OP_MUL, p, ir_binary(F, OP_EQ, p, p, N), N);
  return ir_binary(F, OP_ADD, e, ir_unary(F, OP_SIGN, q, N), N);
}
static int32_t c_dropout(Build *b) {
  int32_t x = batched(b, 0, 6);
  int32_t mask = ir_dropout_mask(F, 0.5, 0, F->insts[x].type, N);
  return ir_binary(F, OP_MUL, x, mask, N);
}
static int32_t c_fanout_residual(Build *b) {   /* h = tanh(x W); y = h + tanh(h W2) * h */
  int32_t x = batched(b, 0, 3);
  int32_t h = ir_unary(F, OP_TANH, ir_binary(F, OP_MATMUL, x, par(b, 0, 2, 3, 3), N), N);
  int32_t t = ir_unary(F, OP_TANH, ir_binary(F, OP_MATMUL, h, par(b, 0, 2, 3, 3), N), N);
  return ir_binary(F, OP_ADD, h, ir_binary(F, OP_MUL, t, h, N), N);
}
static int32_t c_unused_param(Build *b) {      /* p1 never reaches the loss: zero gradient */
  int32_t p0 = par(b, 0, 1, 3, 0);
  int32_t p1 = par(b, 0, 1, 3, 0);
  ir_output(F, "side", ir_unary(F, OP_EXP, p1, N), N);
  return ir_unary(F, OP_TANH, p0, N);
}
static int32_t c_chain(Build *b) {   /* a softmax classifier through every kind of op */
  int32_t x = batched(b, 0, 4);
  int32_t h = ir_unary(F, OP_SIGMOID, ir_binary(F, OP_MATMUL, x, par(b, 0, 2, 4, 5), N), N);
  int32_t n = ir_reduce(F, OP_MEAN, ir_pow(F, h, 2.0, N), 1, true, N);
  int32_t z = ir_binary(F, OP_DIV, h, ir_unary(F, OP_SQRT, ir_binary(F, OP_ADD, n, par(b, DOM_POS, 0, 0, 0), N), N), N);
  return ir_rowop(F, OP_LOG_SOFTMAX, z, 1, N);
}

/* reshape: the same elements with new dims (and back, in its VJP) */
static int32_t c_reshape(Build *b) {   /* [2,3] -> [3,2] */
  return ir_to_type(F, OP_RESHAPE, par(b, 0, 2, 2, 3), tyn(b->m, DT_F32, 2, 3, 2), N);
}
static int32_t c_reshape_batch(Build *b) {   /* [B,6] -> [B,1,3,2] */
  int64_t d[4] = {DIM_BATCH, 1, 3, 2};
  return ir_to_type(F, OP_RESHAPE, batched(b, 0, 6), ir_type(b->m, DT_F32, 4, d), N);
}
static int32_t c_reshape_flat(Build *b) {   /* [B,4] -> [4,B]: B moves, row-major order stays */
  int32_t y = ir_to_type(F, OP_RESHAPE, batched(b, 0, 4), tyn(b->m, DT_F32, 2, 4, DIM_BATCH), N);
  return ir_unary(F, OP_TANH, y, N);
}

/* Pooling on NCHW values: windows with stride = kernel, stride < kernel (overlapping
 * windows, a cell feeding several), padding, odd sizes whose last cells no window
 * reaches, 1x1 kernels. Max pools params with distinct values (DOM_SPREAD), so no
 * finite-difference step crosses a tie (ties: test_max_pool_ties); its batch case
 * keeps 27 cells per batch row, 2/27 apart, against a param within 0.01. */
static int32_t par4(Build *b, int dom, int64_t n, int64_t c, int64_t h, int64_t w) {
  int64_t d[4] = {n, c, h, w};
  return par_dims(b, dom, 4, d);
}
static int32_t batched4(Build *b, int dom, int64_t c, int64_t h, int64_t w) {   /* x[B,c,h,w] + p[c,h,w] */
  int64_t d[4] = {DIM_BATCH, c, h, w};
  int32_t x = inp_dims(b, dom, 4, d);
  return ir_binary(F, OP_ADD, x, par_dims(b, dom == DOM_SPREAD ? DOM_TINY : DOM_ANY, 3, d + 1), N);
}
static int32_t c_maxpool_k2(Build *b) { return ir_pool(F, OP_MAX_POOL2D, par4(b, DOM_SPREAD, 2, 3, 4, 4), 2, 2, 0, N); }
static int32_t c_maxpool_overlap_pad(Build *b) {   /* [2,2,7,5] k3 s2 p1 -> [2,2,4,3] */
  return ir_pool(F, OP_MAX_POOL2D, par4(b, DOM_SPREAD, 2, 2, 7, 5), 3, 2, 1, N);
}
static int32_t c_maxpool_s1_pad(Build *b) { return ir_pool(F, OP_MAX_POOL2D, par4(b, DOM_SPREAD, 1, 2, 5, 5), 2, 1, 1, N); }
static int32_t c_maxpool_odd(Build *b) { return ir_pool(F, OP_MAX_POOL2D, par4(b, DOM_SPREAD, 1, 3, 7, 7), 3, 3, 0, N); }
static int32_t c_maxpool_1x1(Build *b) { return ir_pool(F, OP_MAX_POOL2D, par4(b, DOM_SPREAD, 1, 2, 5, 4), 1, 2, 0, N); }
static int32_t c_maxpool_batch(Build *b) {
  return ir_unary(F, OP_TANH, ir_pool(F, OP_MAX_POOL2D, batched4(b, DOM_SPREAD, 1, 3, 3), 2, 1, 0, N), N);
}
static int32_t c_avgpool_k2_batch(Build *b) { return ir_pool(F, OP_AVG_POOL2D, batched4(b, 0, 2, 4, 4), 2, 2, 0, N); }
static int32_t c_avgpool_overlap_pad(Build *b) { return ir_pool(F, OP_AVG_POOL2D, par4(b, 0, 2, 2, 7, 5), 3, 2, 1, N); }
static int32_t c_avgpool_s1_pad(Build *b) { return ir_pool(F, OP_AVG_POOL2D, par4(b, 0, 1, 3, 5, 5), 2, 1, 1, N); }
static int32_t c_avgpool_odd(Build *b) { return ir_pool(F, OP_AVG_POOL2D, par4(b, 0, 1, 3, 7, 7), 3, 3, 0, N); }
static int32_t c_avgpool_1x1(Build *b) { return ir_pool(F, OP_AVG_POOL2D, batched4(b, 0, 3, 3, 3), 1, 2, 0, N); }
static int32_t c_avgpool_bwd(Build *b) {   /* dy [2,2,4,3] spread back to [2,2,7,5], k3 s2 p1 */
  Inst in = ir_inst(OP_AVG_POOL2D_BWD, N);
  in.nargs = 1;
  in.args[0] = par4(b, 0, 2, 2, 4, 3);
  int64_t d[4] = {2, 2, 7, 5};
  in.type = ir_type(b->m, DT_F32, 4, d);
  ir_pool_set(&in, 3, 2, 1);
  return ir_emit(F, &in);
}

/* batchnorm in training form, as frontend/lower.c builds it: xhat = bn_norm(x, m, r)
 * with m = bn_mean(x, rm), v = bn_var(x, m, rv), r = 1/sqrt(v + 1e-5), and the running
 * statistics assigned (sinks: no derivative). bn_norm's rule is the closed form through
 * m and r, so this checks it against differences of the whole chain. Batches 1, 2, 3
 * (the harness's B) and 5, one to many channels, [N,C] and [N,C,H,W] with odd sizes.
 * Two values per channel are drawn apart (DOM_SPREAD): nearly equal ones make the
 * variance tiny, xhat flat in all but eps, and the difference step too coarse. */
static int32_t bn_train(Build *b, int32_t x) {
  const TensorType *xt = ir_vtype(F, x);
  int64_t C = xt->dims[1];
  TypeId ct = ir_type(b->m, DT_F32, 1, &C), st = ir_type_scalar(b->m, DT_F32);
  int32_t rm = ir_buffer(F, "rm", ct, INIT_ZEROS, 0, N), rv = ir_buffer(F, "rv", ct, INIT_ONES, 0, N);
  int32_t m = ir_bn(F, OP_BN_MEAN, x, rm, -1, N);
  int32_t v = ir_bn(F, OP_BN_VAR, x, m, rv, N);
  int32_t r = ir_binary(F, OP_DIV, ir_const(F, 1.0, st, N),
                        ir_unary(F, OP_SQRT, ir_binary(F, OP_ADD, v, ir_const(F, 1e-5, st, N), N), N), N);
  ir_assign(F, rm, ir_binary(F, OP_ADD, ir_binary(F, OP_MUL, ir_const(F, 0.9, st, N), rm, N),
                             ir_binary(F, OP_MUL, ir_const(F, 0.1, st, N), m, N), N), N);
  ir_assign(F, rv, v, N);
  return ir_bn(F, OP_BN_NORM, x, m, r, N);
}
static int32_t c_bn4_batch(Build *b) { return bn_train(b, batched4(b, 0, 3, 3, 5)); }
static int32_t c_bn4_n1(Build *b) { return bn_train(b, par4(b, 0, 1, 2, 3, 3)); }
static int32_t c_bn4_n2_1x1(Build *b) { return bn_train(b, par4(b, DOM_SPREAD, 2, 3, 1, 1)); }
static int32_t c_bn4_n5_odd(Build *b) { return bn_train(b, par4(b, 0, 5, 1, 3, 1)); }
static int32_t c_bn2_batch(Build *b) { return bn_train(b, batched(b, 0, 4)); }
static int32_t c_bn2_n2(Build *b) { return bn_train(b, par(b, DOM_SPREAD, 2, 2, 7)); }
static int32_t c_bn2_n5(Build *b) { return bn_train(b, par(b, DOM_SPREAD, 2, 5, 1)); }
static int32_t c_bn_affine_chain(Build *b) {   /* tanh(xhat gamma + beta), gamma and beta [C,1,1]: the bn layer */
  int32_t xhat = bn_train(b, batched4(b, 0, 2, 3, 3));
  int32_t g = par_dims(b, 0, 3, (int64_t[]){2, 1, 1}), be = par_dims(b, 0, 3, (int64_t[]){2, 1, 1});
  return ir_unary(F, OP_TANH, ir_binary(F, OP_ADD, ir_binary(F, OP_MUL, xhat, g, N), be, N), N);
}

/* conv2d and its two gradients: x[B,C,H,W] = input + param (a param cannot carry B),
 * odd sizes, stride 2 and 3, padding, dilation, 1x1 and non-square kernels. */
static int32_t image(Build *b, int64_t c, int64_t h, int64_t w) {
  int64_t d[4] = {DIM_BATCH, c, h, w};
  return ir_binary(F, OP_ADD, inp_dims(b, DOM_ANY, 4, d), par_dims(b, DOM_ANY, 3, d + 1), N);
}
static int32_t image3(Build *b, int64_t t, int64_t c) {   /* x[B,t,c] = input + param */
  int64_t d[3] = {DIM_BATCH, t, c};
  return ir_binary(F, OP_ADD, inp_dims(b, DOM_ANY, 3, d), par_dims(b, DOM_ANY, 2, d + 1), N);
}
static int32_t kernel(Build *b, int64_t o, int64_t c, int64_t kh, int64_t kw) {
  int64_t d[4] = {o, c, kh, kw};
  return par_dims(b, DOM_ANY, 4, d);
}
static int32_t c_conv3x3(Build *b) { return ir_conv2d(F, OP_CONV2D, image(b, 2, 5, 5), kernel(b, 3, 2, 3, 3), 1, 0, 1, 0, N); }
static int32_t c_conv_stride2_pad(Build *b) {
  return ir_conv2d(F, OP_CONV2D, image(b, 3, 7, 6), kernel(b, 2, 3, 3, 3), 2, 1, 1, 0, N);
}
static int32_t c_conv_dilation(Build *b) {
  return ir_conv2d(F, OP_CONV2D, image(b, 2, 7, 7), kernel(b, 2, 2, 3, 2), 1, 1, 2, 0, N);
}
static int32_t c_conv1x1(Build *b) { return ir_conv2d(F, OP_CONV2D, image(b, 3, 4, 5), kernel(b, 4, 3, 1, 1), 1, 0, 1, 0, N); }
static int32_t c_conv_stride3(Build *b) {   /* odd everything: the floor drops a row and a column */
  return ir_conv2d(F, OP_CONV2D, image(b, 1, 8, 7), kernel(b, 2, 1, 2, 3), 3, 2, 1, 0, N);
}
static int32_t c_conv_tanh_chain(Build *b) {   /* conv, tanh, conv: the gradient passes through a conv */
  int32_t h = ir_unary(F, OP_TANH, ir_conv2d(F, OP_CONV2D, image(b, 2, 6, 6), kernel(b, 3, 2, 3, 3), 1, 1, 1, 0, N), N);
  return ir_conv2d(F, OP_CONV2D, h, kernel(b, 2, 3, 2, 2), 2, 0, 1, 0, N);
}
/* the gradients as forward ops (second derivatives): x[2,2,6,5] * w[3,2,3,3], stride 2,
 * padding 1 -> dy[2,3,3,3] */
static int32_t c_conv_bwd_data(Build *b) {
  int64_t dyd[4] = {2, 3, 3, 3}, xd[4] = {2, 2, 6, 5};
  return ir_conv2d(F, OP_CONV2D_BWD_DATA, par_dims(b, DOM_ANY, 4, dyd), kernel(b, 3, 2, 3, 3), 2, 1, 1,
                   ir_type(b->m, DT_F32, 4, xd), N);
}
static int32_t c_conv_bwd_weight(Build *b) {
  int64_t dyd[4] = {2, 3, 3, 3}, xd[4] = {2, 2, 6, 5}, wd[4] = {3, 2, 3, 3};
  return ir_conv2d(F, OP_CONV2D_BWD_WEIGHT, par_dims(b, DOM_ANY, 4, xd), par_dims(b, DOM_ANY, 4, dyd), 2, 1, 1,
                   ir_type(b->m, DT_F32, 4, wd), N);
}

/* layernorm over the k trailing dims of x (an input + param with B first, or a param),
 * gamma and beta params of those dims: ranks 2, 3, 4, rows of 1 element (xhat = 0) and
 * odd sizes, all dims normalized, a chain of two norms. test_layernorm_sweep adds
 * seeded random shapes. */
static int32_t ln_of(Build *b, int32_t x, int k) {
  const TensorType *t = ir_vtype(F, x);
  int64_t d[4];
  int r = t->rank;
  for (int i = 0; i < k; i++) d[i] = t->dims[r - k + i];
  int32_t g = par_dims(b, DOM_ANY, k, d), be = par_dims(b, DOM_ANY, k, d);
  return ir_layernorm(F, OP_LAYERNORM, x, g, be, k, 1e-5, N);
}
static int32_t c_ln_rank2(Build *b) { return ln_of(b, batched(b, 0, 5), 1); }
static int32_t c_ln_row1(Build *b) { return ln_of(b, batched(b, 0, 1), 1); }
static int32_t c_ln_rank3_k1(Build *b) { return ln_of(b, image3(b, 3, 7), 1); }
static int32_t c_ln_rank3_k2(Build *b) { return ln_of(b, image3(b, 3, 7), 2); }
static int32_t c_ln_rank4_k3(Build *b) { return ln_of(b, image(b, 2, 3, 5), 3); }
static int32_t c_ln_rank4_k1(Build *b) { return ln_of(b, par4(b, DOM_ANY, 2, 3, 1, 5), 2); }
static int32_t c_ln_all(Build *b) { return ln_of(b, par(b, 0, 2, 3, 4), 2); }
static int32_t c_ln_chain(Build *b) {   /* ln(tanh(ln(x))): the gradient passes through a norm */
  return ln_of(b, ir_unary(F, OP_TANH, ln_of(b, image3(b, 2, 3), 1), N), 2);
}

/* Sequence models (issue 14): gelu in both forms and their gradients, products with
 * batch dims (a rank-2 weight on every position: the folded weight gradient; batch dims
 * that broadcast; size-1 leading dims), transposes by permutation, embedding and its
 * scatter-add, softmax along any axis at ranks 3 and 4, softmax_xent on [B,T,V], the
 * causal mask, and attention: ranks 3 and 4, S != T, causal, self-attention (q = k = v:
 * fan-out) and only q active (dk, dv unused). */
static int32_t pd(Build *b, int dom, int rank, int64_t d0, int64_t d1, int64_t d2, int64_t d3) {
  int64_t d[4] = {d0, d1, d2, d3};
  return par_dims(b, dom, rank, d);
}
static int32_t c_gelu(Build *b) { return ir_unary(F, OP_GELU, pd(b, 0, 2, 3, 4, 0, 0), N); }
static int32_t c_gelu_tanh(Build *b) { return ir_unary(F, OP_GELU_TANH, image3(b, 2, 3), N); }
static int32_t c_gelu_grad(Build *b) { return ir_binary(F, OP_GELU_GRAD, par(b, 0, 2, 2, 3), par(b, 0, 2, 2, 3), N); }
static int32_t c_gelu_tanh_grad(Build *b) {
  return ir_binary(F, OP_GELU_TANH_GRAD, par(b, 0, 2, 2, 3), par(b, 0, 2, 2, 3), N);
}
static int32_t c_mm_seq_weight(Build *b) { return ir_binary(F, OP_MATMUL, image3(b, 3, 4), par(b, 0, 2, 4, 2), N); }
static int32_t c_mm_batched(Build *b) {
  return ir_binary(F, OP_MATMUL, pd(b, 0, 3, 2, 3, 4, 0), pd(b, 0, 3, 2, 4, 5, 0), N);
}
static int32_t c_mm_bcast_lead(Build *b) {   /* [2,2,3,4] @ [2,4,2]: b broadcast over dim 0 */
  return ir_binary(F, OP_MATMUL, pd(b, 0, 4, 2, 2, 3, 4), pd(b, 0, 3, 2, 4, 2, 0), N);
}
static int32_t c_mm_size1_lead(Build *b) {   /* [1,3,4] @ [2,4,2] */
  return ir_binary(F, OP_MATMUL, pd(b, 0, 3, 1, 3, 4, 0), pd(b, 0, 3, 2, 4, 2, 0), N);
}
static int32_t c_mm_matrix_by_batch(Build *b) {   /* [3,4] @ [B,4,2] */
  return ir_binary(F, OP_MATMUL, par(b, 0, 2, 3, 4), image3(b, 4, 2), N);
}
static int32_t c_mm_nt_seq_weight(Build *b) { return ir_binary(F, OP_MATMUL_NT, image3(b, 3, 4), par(b, 0, 2, 5, 4), N); }
static int32_t c_mm_nt_scores(Build *b) {   /* q k^T per batch and head */
  return ir_binary(F, OP_MATMUL_NT, pd(b, 0, 4, 2, 2, 3, 4), pd(b, 0, 4, 2, 2, 5, 4), N);
}
static int32_t c_mm_tn_batched(Build *b) {
  return ir_binary(F, OP_MATMUL_TN, image3(b, 3, 4), image3(b, 3, 5), N);
}
static int32_t c_mm_tn_fold(Build *b) { return ir_matmul_tn_fold(F, pd(b, 0, 3, 2, 3, 4, 0), pd(b, 0, 3, 2, 3, 5, 0), N); }
static int32_t c_mm_tn_fold_batch(Build *b) { return ir_matmul_tn_fold(F, image3(b, 3, 4), image3(b, 3, 2), N); }
static int32_t c_transpose_perm3(Build *b) { return ir_transpose(F, image3(b, 3, 4), (const int[]){2, 0, 1}, N); }
static int32_t c_transpose_perm4(Build *b) {
  return ir_transpose(F, image(b, 3, 2, 4), (const int[]){0, 2, 1, 3}, N);
}
static int32_t c_transpose_swap4(Build *b) { return ir_transpose(F, pd(b, 0, 4, 2, 3, 2, 4), NULL, N); }
static int32_t c_embedding(Build *b) {   /* 12 ids over 5 rows: rows repeat, their gradients add */
  int64_t d[3] = {DIM_BATCH, 4, 5};
  int32_t ids = ir_input(F, "ids", b->ninputs++, ir_type(b->m, DT_LABEL, 3, d), N);
  b->dom[ids] = DOM_LABEL;
  return ir_binary(F, OP_EMBEDDING, ids, par(b, 0, 2, 5, 3), N);
}
static int32_t c_embedding_bwd(Build *b) {
  int64_t d[3] = {2, 4, 3};
  int32_t ids = ir_input(F, "ids", b->ninputs++, ir_type(b->m, DT_LABEL, 3, d), N);
  b->dom[ids] = DOM_LABEL;
  return ir_binary(F, OP_EMBEDDING_BWD, ids, pd(b, 0, 3, 2, 4, 3, 0), N);
}
static int32_t c_softmax_rank3(Build *b) { return ir_rowop(F, OP_SOFTMAX, image3(b, 3, 5), 2, N); }
static int32_t c_softmax_rank4_axis2(Build *b) { return ir_rowop(F, OP_SOFTMAX, image(b, 2, 3, 4), 2, N); }
static int32_t c_log_softmax_rank4(Build *b) { return ir_rowop(F, OP_LOG_SOFTMAX, pd(b, 0, 4, 2, 2, 3, 4), 3, N); }
static int32_t c_log_softmax_rank3_axis1(Build *b) { return ir_rowop(F, OP_LOG_SOFTMAX, image3(b, 3, 4), 1, N); }
static int32_t c_softmax_xent_seq(Build *b) {   /* z[B,4,5], y label[B,4,5] -> [B,4] */
  int64_t d[3] = {DIM_BATCH, 4, 5};
  int32_t y = ir_input(F, "y", b->ninputs++, ir_type(b->m, DT_LABEL, 3, d), N);
  b->dom[y] = DOM_LABEL;
  return ir_binary(F, OP_SOFTMAX_XENT, image3(b, 4, 5), y, N);
}
static int32_t c_causal_softmax(Build *b) {   /* softmax(s + causal_mask(3)): masked entries get no gradient */
  int32_t s = ir_binary(F, OP_ADD, pd(b, 0, 3, 2, 3, 3, 0), ir_causal_mask(F, 3, DT_F32, N), N);
  return ir_rowop(F, OP_SOFTMAX, s, 2, N);
}
static int32_t c_attention3(Build *b) {   /* T = 3, S = 5, dh = 4, dv = 2 */
  return ir_attention(F, pd(b, 0, 3, 2, 3, 4, 0), pd(b, 0, 3, 2, 5, 4, 0), pd(b, 0, 3, 2, 5, 2, 0), false, 0.5,
                      NULL, N);
}
static int32_t c_attention4_causal_batch(Build *b) {
  return ir_attention(F, image(b, 2, 3, 4), image(b, 2, 3, 4), image(b, 2, 3, 2), true, 0.5, NULL, N);
}
static int32_t c_attention_self(Build *b) {   /* attention(x, x, x): three contributions to x */
  int32_t x = pd(b, 0, 3, 2, 4, 3, 0);
  return ir_attention(F, x, x, x, true, 1 / sqrt(3.0), NULL, N);
}
static int32_t c_attention_q_only(Build *b) {   /* k, v inputs: only dq reaches a param */
  int64_t kd[3] = {2, 3, 4}, vd[3] = {2, 3, 3};
  return ir_attention(F, pd(b, 0, 3, 2, 3, 4, 0), inp_dims(b, DOM_ANY, 3, kd), inp_dims(b, DOM_ANY, 3, vd), false, 1.3,
                      NULL, N);
}

static struct {
  int rank, k;
  bool batch;
  int64_t dims[4];
} lns;

static int32_t c_ln_sweep(Build *b) {
  int64_t d[4];
  for (int i = 0; i < lns.rank; i++) d[i] = i == 0 && lns.batch ? DIM_BATCH : lns.dims[i];
  int32_t x = lns.batch ? ir_binary(F, OP_ADD, inp_dims(b, DOM_ANY, lns.rank, d), par_dims(b, DOM_ANY, lns.rank - 1, d + 1), N)
                        : par_dims(b, DOM_ANY, lns.rank, d);
  return ln_of(b, x, lns.k);
}

/* Reductions over every axis of every rank, with and without keep (test_reduce_sweep
 * sets the case). x has dims {2,3,2,3} cut to the rank, its first dim B when batch
 * (then x = input + param). Max gets distinct values 2/numel apart (DOM_SPREAD; with a
 * batch, an input spread plus a param within 0.01), so no finite-difference step
 * crosses a tie. */
static struct {
  Op op;
  int rank, axis;   /* axis: 0 .. rank-1 or IR_AXIS_ALL */
  bool keep, batch;
} red;

static int32_t c_reduce_sweep(Build *b) {
  static const int64_t dims[4] = {2, 3, 2, 3};
  int64_t d[4];
  for (int i = 0; i < red.rank; i++) d[i] = i == 0 && red.batch ? DIM_BATCH : dims[i];
  bool mx = red.op == OP_MAX;
  int32_t x;
  if (red.batch) {
    int32_t in = inp_dims(b, mx ? DOM_SPREAD : DOM_ANY, red.rank, d);
    x = ir_binary(F, OP_ADD, in, par_dims(b, mx ? DOM_TINY : DOM_ANY, red.rank - 1, d + 1), N);
  } else {
    x = par_dims(b, mx ? DOM_SPREAD : DOM_ANY, red.rank, d);
  }
  return ir_reduce(F, red.op, x, red.axis, red.keep, N);
}

/* Random compositions: a seeded generator picks ops and operands among the values built
 * so far (shapes [B,4], [4], [4,4], [], [B,1] to start), keeping those that type-check,
 * so the rules meet each other (broadcasts inside reductions inside matmuls, fan-out)
 * and the simplifier's rewrites of backward code are checked too. Only smooth ops:
 * no relu/abs/max kinks; log, sqrt and div get operands bounded away from 0. */
static uint64_t graph_seed;

static int32_t try_emit(Build *b, Inst in) {
  char err[256];
  if (ir_infer_type(b->f, &in, err, sizeof err) == TYPE_VOID) return -1;
  return ir_emit(b->f, &in);
}

static int32_t c_random(Build *b) {
  uint64_t st = graph_seed;
  int32_t v[64];
  int n = 0;
  v[n++] = batched(b, 0, 4);
  v[n++] = par(b, 0, 1, 4, 0);
  v[n++] = par(b, 0, 2, 4, 4);
  v[n++] = par(b, 0, 0, 0, 0);
  v[n++] = ir_reduce(F, OP_SUM, batched(b, 0, 4), 1, true, N);
  static const Op ops[] = {OP_ADD, OP_SUB, OP_MUL, OP_DIV, OP_NEG, OP_EXP, OP_LOG, OP_SQRT, OP_SIGMOID, OP_TANH,
                           OP_POW, OP_MATMUL, OP_MATMUL_NT, OP_MATMUL_TN, OP_TRANSPOSE, OP_SUM, OP_MEAN,
                           OP_SOFTMAX, OP_LOG_SOFTMAX, OP_BROADCAST, OP_SUM_TO};
  for (int tries = 0; tries < 200 && n < 18; tries++) {
    Op op = ops[(size_t)(urand(&st) * (double)(sizeof ops / sizeof ops[0]))];
    /* prefer recent values, so the graph is deep rather than wide */
    int32_t a = v[n - 1 - (int)(urand(&st) * urand(&st) * n)];
    int32_t c = v[(int)(urand(&st) * n)];
    const TensorType *ta = ir_vtype(F, a);
    Inst in = ir_inst(op, N);
    in.nargs = (uint8_t)(ir_ops[op].nargs);
    in.args[0] = a;
    in.args[1] = c;
    int64_t axis = ta->rank ? (int64_t)(urand(&st) * (ta->rank + 1)) : 0;
    if (axis == ta->rank) axis = IR_AXIS_ALL;
    switch (op) {
    case OP_DIV: case OP_LOG: case OP_SQRT: {   /* operand sigmoid(x) + 0.5, in (0.5, 1.5) */
      int32_t pos = op == OP_DIV ? c : a;
      int32_t half = ir_const(F, 0.5, ir_type_scalar(b->m, DT_F32), N);
      int32_t s = ir_binary(F, OP_ADD, ir_unary(F, OP_SIGMOID, pos, N), half, N);
      in.args[op == OP_DIV ? 1 : 0] = s;
      break;
    }
    case OP_EXP: in.args[0] = ir_unary(F, OP_TANH, a, N); break;
    case OP_POW: in.fattr[0] = urand(&st) < 0.5 ? 2.0 : 3.0; break;
    case OP_SUM: case OP_MEAN:
      in.iattr[0] = axis;
      in.iattr[1] = urand(&st) < 0.5;
      break;
    case OP_SOFTMAX: case OP_LOG_SOFTMAX:
      if (ta->rank == 0) continue;
      in.iattr[0] = axis == IR_AXIS_ALL ? ta->rank - 1 : axis;
      break;
    case OP_BROADCAST: in.type = ir_vtype(F, c) == ta ? F->insts[a].type : F->insts[c].type; break;
    case OP_SUM_TO: in.type = F->insts[c].type; break;
    default: break;
    }
    int32_t r = try_emit(b, in);
    if (r >= 0 && r >= v[n - 1]) v[n++] = r;
  }
  /* the loss sees the last value and, through a sum, every value */
  int32_t acc = v[n - 1];
  for (int k = 0; k < n - 1; k++) {
    int32_t t = ir_reduce(F, OP_SUM, v[k], IR_AXIS_ALL, false, N);
    acc = try_emit(b, (Inst){.op = OP_ADD, .nargs = 2, .args = {acc, t}, .type = TYPE_VOID, .from = -1}) >= 0
              ? ir_binary(F, OP_ADD, acc, t, N)
              : acc;
  }
  return acc;
}

#undef F
#undef N

typedef struct {
  const char *name;
  BuildFn fn;
} Case;

static const Case cases[] = {
    {"add_bcast", c_add_bcast}, {"add_size1", c_add_size1}, {"add_batch", c_add_batch},
    {"sub_bcast", c_sub_bcast}, {"mul_bcast", c_mul_bcast}, {"mul_batch", c_mul_batch},
    {"div", c_div}, {"div_batch", c_div_batch}, {"square_fanout", c_square},
    {"neg", c_neg}, {"exp", c_exp}, {"log", c_log}, {"sqrt", c_sqrt}, {"abs", c_abs},
    {"relu", c_relu}, {"sigmoid", c_sigmoid}, {"tanh", c_tanh},
    {"pow2", c_pow2}, {"pow3", c_pow3}, {"pow_half", c_pow_half},
    {"relu_grad", c_relu_grad}, {"sigmoid_grad", c_sigmoid_grad}, {"tanh_grad", c_tanh_grad},
    {"matmul", c_matmul}, {"matmul_batch", c_matmul_batch}, {"matmul_nt", c_matmul_nt},
    {"matmul_tn", c_matmul_tn}, {"matmul_size1", c_matmul_1}, {"transpose_batch", c_transpose},
    {"sum_axis0", c_sum0}, {"sum_axis1", c_sum1}, {"sum_axis1_keep", c_sum1_keep}, {"sum_all", c_sum_all},
    {"mean_axis0_batch", c_mean0_batch}, {"mean_axis1", c_mean1}, {"mean_all_batch", c_mean_all},
    {"mean_keep", c_mean_keep}, {"max_axis1", c_max1}, {"max_axis0_keep", c_max0_keep}, {"max_all", c_max_all},
    {"broadcast", c_broadcast}, {"broadcast_batch", c_broadcast_batch}, {"sum_to", c_sum_to},
    {"softmax_axis1", c_softmax1}, {"softmax_axis0", c_softmax0}, {"log_softmax", c_log_softmax},
    {"softmax_xent", c_softmax_xent}, {"onehot_mul", c_onehot_mul}, {"size", c_size},
    {"eq_sign", c_eq_sign}, {"dropout", c_dropout}, {"fanout_residual", c_fanout_residual},
    {"unused_param", c_unused_param}, {"chain", c_chain},
    {"reshape", c_reshape}, {"reshape_batch", c_reshape_batch}, {"reshape_moves_batch", c_reshape_flat},
    {"max_pool2d_k2", c_maxpool_k2}, {"max_pool2d_k3_s2_p1", c_maxpool_overlap_pad},
    {"max_pool2d_k2_s1_p1", c_maxpool_s1_pad}, {"max_pool2d_k3_odd", c_maxpool_odd},
    {"max_pool2d_1x1_s2", c_maxpool_1x1}, {"max_pool2d_batch", c_maxpool_batch},
    {"avg_pool2d_k2_batch", c_avgpool_k2_batch}, {"avg_pool2d_k3_s2_p1", c_avgpool_overlap_pad},
    {"avg_pool2d_k2_s1_p1", c_avgpool_s1_pad}, {"avg_pool2d_k3_odd", c_avgpool_odd},
    {"avg_pool2d_1x1_s2_batch", c_avgpool_1x1}, {"avg_pool2d_bwd", c_avgpool_bwd},
    {"conv2d_3x3", c_conv3x3}, {"conv2d_stride2_pad", c_conv_stride2_pad}, {"conv2d_dilation", c_conv_dilation},
    {"conv2d_1x1", c_conv1x1}, {"conv2d_stride3_odd", c_conv_stride3}, {"conv2d_chain", c_conv_tanh_chain},
    {"conv2d_bwd_data", c_conv_bwd_data}, {"conv2d_bwd_weight", c_conv_bwd_weight},
    {"batchnorm4_batch", c_bn4_batch}, {"batchnorm4_n1", c_bn4_n1}, {"batchnorm4_n2_1x1", c_bn4_n2_1x1},
    {"batchnorm4_n5_odd", c_bn4_n5_odd}, {"batchnorm2_batch", c_bn2_batch}, {"batchnorm2_n2", c_bn2_n2},
    {"batchnorm2_n5", c_bn2_n5}, {"batchnorm_affine_chain", c_bn_affine_chain},
    {"layernorm_rank2", c_ln_rank2}, {"layernorm_row1", c_ln_row1}, {"layernorm_rank3_dims1", c_ln_rank3_k1},
    {"layernorm_rank3_dims2", c_ln_rank3_k2}, {"layernorm_rank4_dims3", c_ln_rank4_k3},
    {"layernorm_rank4_dims2", c_ln_rank4_k1}, {"layernorm_all_dims", c_ln_all}, {"layernorm_chain", c_ln_chain},
    {"gelu", c_gelu}, {"gelu_tanh_batch", c_gelu_tanh}, {"gelu_grad", c_gelu_grad}, {"gelu_tanh_grad", c_gelu_tanh_grad},
    {"matmul_seq_weight", c_mm_seq_weight}, {"matmul_batched", c_mm_batched}, {"matmul_bcast_lead", c_mm_bcast_lead},
    {"matmul_size1_lead", c_mm_size1_lead}, {"matmul_matrix_by_batch", c_mm_matrix_by_batch},
    {"matmul_nt_seq_weight", c_mm_nt_seq_weight}, {"matmul_nt_scores", c_mm_nt_scores},
    {"matmul_tn_batched", c_mm_tn_batched}, {"matmul_tn_fold", c_mm_tn_fold}, {"matmul_tn_fold_batch", c_mm_tn_fold_batch},
    {"transpose_perm3", c_transpose_perm3}, {"transpose_perm4", c_transpose_perm4}, {"transpose_swap4", c_transpose_swap4},
    {"embedding", c_embedding}, {"embedding_bwd", c_embedding_bwd},
    {"softmax_rank3", c_softmax_rank3}, {"softmax_rank4_axis2", c_softmax_rank4_axis2},
    {"log_softmax_rank4", c_log_softmax_rank4}, {"log_softmax_rank3_axis1", c_log_softmax_rank3_axis1},
    {"softmax_xent_seq", c_softmax_xent_seq}, {"causal_softmax", c_causal_softmax},
    {"attention_rank3", c_attention3}, {"attention_rank4_causal_batch", c_attention4_causal_batch},
    {"attention_self", c_attention_self}, {"attention_q_only", c_attention_q_only},
};

static void test_every_vjp_autodiff(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) assert_true(check_case(cases[i].name, cases[i].fn, false) > 0);
}

static void test_every_vjp_pipeline(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) assert_true(check_case(cases[i].name, cases[i].fn, true) > 0);
}

static void test_random_graphs(void **state) {
  (void)state;
  int checked = 0;
  const char *env = getenv("BPCC_RANDOM_GRAPHS");   /* more graphs when hunting a bug */
  uint64_t count = env ? strtoull(env, NULL, 10) : 150;
  for (graph_seed = 1; graph_seed <= count; graph_seed++) {
    char name[32];
    snprintf(name, sizeof name, "random%llu", (unsigned long long)graph_seed);
    checked += check_case(name, c_random, true);
  }
  assert_true(checked > 1000);
}

/* sum, mean and max over every axis (and all axes) of ranks 1 to 4, with and without
 * keep, with and without the batch dim, through autodiff alone and the pipeline. */
static void test_reduce_sweep(void **state) {
  (void)state;
  static const Op ops[] = {OP_SUM, OP_MEAN, OP_MAX};
  int cases_run = 0;
  for (size_t o = 0; o < 3; o++)
    for (int rank = 1; rank <= IR_MAX_RANK; rank++)
      for (int axis = -1; axis < rank; axis++)
        for (int keep = 0; keep < 2; keep++)
          for (int batch = 0; batch < 2; batch++)
            for (int pipeline = 0; pipeline < 2; pipeline++) {
              red.op = ops[o];
              red.rank = rank;
              red.axis = axis < 0 ? IR_AXIS_ALL : axis;
              red.keep = keep;
              red.batch = batch;
              char name[64];
              snprintf(name, sizeof name, "%s_rank%d_axis%s%d%s%s", ir_ops[ops[o]].name, rank, axis < 0 ? "all" : "",
                       axis < 0 ? rank : axis, keep ? "_keep" : "", batch ? "_batch" : "");
              assert_true(check_case(name, c_reduce_sweep, pipeline) > 0);
              cases_run++;
            }
  /* 3 ops x (2 + 3 + 4 + 5 axes) x 2 keep x 2 batch x 2 */
  assert_int_equal(cases_run, 3 * 14 * 8);
}

/* layernorm on seeded random shapes: rank 2 to 4, dims from {1, 2, 3, 5}, 1 to rank
 * normalized dims (rank - 1 at most with the batch dim), with and without B, through
 * autodiff alone and the pipeline. */
static void test_layernorm_sweep(void **state) {
  (void)state;
  static const int64_t pick[4] = {1, 2, 3, 5};
  uint64_t st = 0x5eed1a7e4ull;
  int run = 0;
  for (int c = 0; c < 24; c++) {
    lns.rank = 2 + (int)(urand(&st) * 3);
    lns.batch = urand(&st) < 0.5;
    int kmax = lns.batch ? lns.rank - 1 : lns.rank;
    lns.k = 1 + (int)(urand(&st) * kmax);
    for (int i = 0; i < lns.rank; i++) lns.dims[i] = pick[(int)(urand(&st) * 4)];
    char name[64];
    int at = snprintf(name, sizeof name, "layernorm_dims%d%s_", lns.k, lns.batch ? "_batch" : "");
    for (int i = 0; i < lns.rank; i++) at += snprintf(name + at, sizeof name - (size_t)at, i ? "x%lld" : "%lld", (long long)lns.dims[i]);
    assert_true(check_case(name, c_ln_sweep, c % 2 == 1) > 0);
    run++;
  }
  assert_int_equal(run, 24);
}

/* Every op with operands that carry a derivative is covered by a case above. */
static void test_cases_cover_every_op(void **state) {
  (void)state;
  bool seen[OP__COUNT] = {false};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    Build b;
    memset(&b, 0, sizeof b);
    b.m = ir_module_new();
    b.f = ir_func_new(b.m, cases[i].name);
    b.f->cse = false;
    cases[i].fn(&b);
    for (int32_t k = 0; k < b.f->ninsts; k++) seen[b.f->insts[k].op] = true;
    ir_module_free(b.m);
  }
  for (int op = 0; op < OP__COUNT; op++) {
    if (op == OP_LOSS || op == OP_GRAD || op == OP_CONST) continue;   /* added by the harness / autodiff */
    if (op == OP_MAX_POOL2D_BWD) continue;   /* no VJP rule (autodiff.c); test_max_pool_ties checks it */
    if (op == OP_BN_NORM_BWD) continue;      /* no VJP rule: emitted by bn_norm's, checked through it */
    /* no VJP rules (autodiff.c): layernorm's VJP emits them, the layernorm cases check them */
    if (op == OP_LAYERNORM_BWD || op == OP_LAYERNORM_BWD_GAMMA) continue;
    /* no VJP rule (autodiff.c: attention's second derivative): attention's VJP emits it,
     * the attention cases check it, and test_interp checks it against differences */
    if (op == OP_ATTENTION_BWD) continue;
    /* cast (straight through, autodiff.c) rounds: finite differences of a rounding are
     * steps, not its derivative; passes/precision.c inserts casts after autodiff */
    if (op == OP_CAST) continue;
    if (op == OP_LOSS_SCALE) continue;   /* a leaf: autodiff's seed with loss scaling, no operands */
    if (!seen[op]) fail_msg("no VJP test case uses op %s", ir_ops[op].name);
  }
}

/* Max pooling at exact ties, where finite differences are kinked: a window of equal
 * cells routes its whole dy to its first cell in row-major order (PyTorch's rule), and
 * max_pool2d's rule emits max_pool2d_bwd. x = 0 on [1,1,4,4] except x[3][3] = 1:
 *   k2 s2 p0:  windows start at (0,0) (0,2) (2,0) (2,2); the last one's max is (3,3)
 *   k3 s2 p1:  windows start at (-1,-1) (-1,1) (1,-1) (1,1); first unpadded cells
 *              (0,0) (0,1) (1,0), and (3,3) the max of the last
 * dy[i][j] = 1 + i * 2 + j, so each dx cell names the window it came from. */
static void test_max_pool_ties(void **state) {
  (void)state;
  static const struct {
    int k, s, p;
    int cells[4][2];
  } ties[] = {{2, 2, 0, {{0, 0}, {0, 2}, {2, 0}, {3, 3}}}, {3, 2, 1, {{0, 0}, {0, 1}, {1, 0}, {3, 3}}}};
  for (size_t c = 0; c < 2; c++) {
    Build b;
    memset(&b, 0, sizeof b);
    b.m = ir_module_new();
    b.f = ir_func_new(b.m, "ties");
    int32_t x = par4(&b, 0, 1, 1, 4, 4);
    int32_t y = ir_pool(b.f, OP_MAX_POOL2D, x, ties[c].k, ties[c].s, ties[c].p, SRCLOC_NONE);
    int32_t r = inp(&b, DOM_ANY, DT_F32, 0, 0, 0);
    b.f->insts[r].type = b.f->insts[y].type;
    ir_loss(b.f, ir_reduce(b.f, OP_SUM, ir_binary(b.f, OP_MUL, y, r, SRCLOC_NONE), IR_AXIS_ALL, false, SRCLOC_NONE),
            SRCLOC_NONE);
    PassOptions opt;
    pass_options_default(&opt);
    Func *g = pass_autodiff(b.f, &opt);
    assert_non_null(g);
    int32_t gv = -1;
    for (int32_t i = 0; i < g->ninsts; i++)
      if (g->insts[i].op == OP_GRAD) gv = g->insts[i].args[1];
    assert_true(gv >= 0);
    assert_int_equal(g->insts[gv].op, OP_MAX_POOL2D_BWD);
    assert_string_equal(g->insts[gv].rule, "max_pool2d.dx");
    TensorType tx = *ir_vtype(g, x), ty_ = *ir_vtype(g, y);
    assert_int_equal(ty_.dims[2], 2);
    assert_int_equal(ty_.dims[3], 2);
    Tensor px = ir_tensor_new(&tx), dy = ir_tensor_new(&ty_);
    px.data[15] = 1;
    for (int k = 0; k < 4; k++) dy.data[k] = 1 + k;
    Interp *it = ir_interp_run(g, INTERP_F64, 1, &dy, 1, &px, 1, 1, 1);
    assert_non_null(it);
    double want[16] = {0};
    for (int k = 0; k < 4; k++) want[ties[c].cells[k][0] * 4 + ties[c].cells[k][1]] += 1 + k;
    const Tensor *dx = ir_interp_value(it, gv);
    for (int k = 0; k < 16; k++)
      if (dx->data[k] != want[k]) fail_msg("k%d s%d p%d: dx[%d] = %g, expected %g", ties[c].k, ties[c].s, ties[c].p,
                                           k, dx->data[k], want[k]);
    ir_interp_free(it);
    ir_tensor_free(&px);
    ir_tensor_free(&dy);
    ir_module_free(b.m);
  }
}

/* A param that does not reach the loss gets a zero constant gradient, rule "zero". */
static void test_unused_param_zero(void **state) {
  (void)state;
  Build b;
  memset(&b, 0, sizeof b);
  b.m = ir_module_new();
  b.f = ir_func_new(b.m, "unused");
  int32_t y = c_unused_param(&b);
  ir_loss(b.f, ir_reduce(b.f, OP_SUM, y, IR_AXIS_ALL, false, SRCLOC_NONE), SRCLOC_NONE);
  PassOptions opt;
  pass_options_default(&opt);
  Func *g = pass_autodiff(b.f, &opt);
  assert_non_null(g);
  int grads = 0;
  for (int32_t i = 0; i < g->ninsts; i++) {
    const Inst *in = &g->insts[i];
    if (in->op != OP_GRAD) continue;
    const Inst *gv = &g->insts[in->args[1]];
    if (strcmp(g->insts[in->args[0]].name, "p1") == 0) {
      assert_int_equal(gv->op, OP_CONST);
      assert_true(gv->fattr[0] == 0.0);
      assert_string_equal(gv->rule, "zero");
    }
    assert_true(in->flags & IF_BACKWARD);
    grads++;
  }
  assert_int_equal(grads, 2);
  ir_module_free(b.m);
}

/* The shapes of the sequence-model gradients: a weight W[k,n] applied to every position
 * of a[B,T,k] gets dW from one matmul_tn fold=1 (a^T dy summed over B and T) and no
 * [B,k,n] value; attention's VJP is one attention_bwd with its two extras right after
 * it, rules attention.dq, .dk, .dv; attention's lse in the loss is a located error. */
static void test_sequence_gradient_shapes(void **state) {
  (void)state;
  Build b;
  memset(&b, 0, sizeof b);
  b.m = ir_module_new();
  b.f = ir_func_new(b.m, "seq");
  int32_t x = image3(&b, 4, 3);
  int32_t w = par(&b, 0, 2, 3, 8);
  int32_t h = ir_binary(b.f, OP_MATMUL, x, w, SRCLOC_NONE);   /* [B,4,8] */
  int64_t d4[4] = {DIM_BATCH, 4, 2, 4};
  int32_t q = ir_transpose(b.f, ir_to_type(b.f, OP_RESHAPE, h, ir_type(b.m, DT_F32, 4, d4), SRCLOC_NONE),
                           (const int[]){0, 2, 1, 3}, SRCLOC_NONE);
  int32_t o = ir_attention(b.f, q, q, q, true, 0.5, NULL, SRCLOC_NONE);
  ir_loss(b.f, ir_reduce(b.f, OP_SUM, o, IR_AXIS_ALL, false, SRCLOC_NONE), SRCLOC_NONE);
  PassOptions opt;
  pass_options_default(&opt);
  Func *g = pass_autodiff(b.f, &opt);
  assert_non_null(g);
  assert_true(ir_verify(g, "seq"));
  int folds = 0, bwds = 0;
  for (int32_t i = 0; i < g->ninsts; i++) {
    const Inst *in = &g->insts[i];
    if (!(in->flags & IF_BACKWARD)) continue;
    if ((in->op == OP_MATMUL_TN || in->op == OP_MATMUL) && ir_vtype(g, i)->rank == 3 &&
        ir_vtype(g, i)->dims[1] == 3 && ir_vtype(g, i)->dims[2] == 8)
      fail_msg("%%%d = %s makes a [B,3,8] value", (int)i, ir_ops[in->op].name);
    if (in->op == OP_MATMUL_TN && in->iattr[0] == 1) {
      assert_string_equal(in->rule, "matmul.db");
      folds++;
    }
    if (in->op == OP_ATTENTION_BWD) {
      bwds++;
      assert_string_equal(in->rule, "attention.dq");
      assert_true(i + 2 < g->ninsts);
      assert_int_equal(g->insts[i + 1].op, OP_EXTRA);
      assert_int_equal(g->insts[i + 1].iattr[0], 1);
      assert_string_equal(g->insts[i + 1].rule, "attention.dk");
      assert_int_equal(g->insts[i + 2].op, OP_EXTRA);
      assert_int_equal(g->insts[i + 2].iattr[0], 2);
      assert_string_equal(g->insts[i + 2].rule, "attention.dv");
      assert_int_equal(in->args[4], in->args[3] + 1);   /* lse: the extra after o */
    }
  }
  assert_int_equal(folds, 1);
  assert_int_equal(bwds, 1);

  /* the loss reads the lse: no derivative for it */
  diag_reset();
  char *out = NULL;
  size_t n = 0;
  FILE *fp = open_memstream(&out, &n);
  diag_set_output(fp);
  Func *f2 = ir_func_new(b.m, "lse");
  int32_t p = ir_param(f2, "q", ir_type(b.m, DT_F32, 3, (int64_t[]){1, 2, 2}), INIT_ZEROS, 0, 0, SRCLOC_NONE);
  int32_t lse;
  ir_attention(f2, p, p, p, false, 1.0, &lse, SRCLOC_NONE);
  ir_loss(f2, ir_reduce(f2, OP_SUM, lse, IR_AXIS_ALL, false, SRCLOC_NONE), SRCLOC_NONE);
  assert_null(pass_autodiff(f2, &opt));
  fclose(fp);
  diag_set_output(NULL);
  assert_non_null(strstr(out, "error: autodiff: in @lse, %2: the loss depends on the extra result 1 of %1 = attention, "
                              "which has no derivative"));
  free(out);
  diag_reset();
  ir_module_free(b.m);
}

/* Misuse: no loss, or gradients already there, is a located error, not a crash. */
static void test_errors(void **state) {
  (void)state;
  diag_reset();
  char *out = NULL;
  size_t n = 0;
  FILE *fp = open_memstream(&out, &n);
  diag_set_output(fp);
  Module *m = ir_module_new();
  Func *f = ir_func_new(m, "noloss");
  int32_t p = ir_param(f, "w", ir_type_scalar(m, DT_F32), INIT_ZEROS, 0, 0, SRCLOC_NONE);
  ir_output(f, "o", ir_unary(f, OP_EXP, p, SRCLOC_NONE), SRCLOC_NONE);
  PassOptions opt;
  pass_options_default(&opt);
  assert_null(pass_autodiff(f, &opt));
  assert_int_equal(m->nfuncs, 1);
  ir_loss(f, ir_unary(f, OP_EXP, p, SRCLOC_NONE), SRCLOC_NONE);
  ir_grad(f, p, p, SRCLOC_NONE);
  assert_null(pass_autodiff(f, &opt));
  fclose(fp);
  diag_set_output(NULL);
  assert_non_null(strstr(out, "error: autodiff: @noloss has no loss; did you forget a `loss` statement in the model?"));
  assert_non_null(strstr(out, "error: autodiff: @noloss already has gradients (grad sinks); differentiate the forward function"));
  free(out);
  ir_module_free(m);
  diag_reset();
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_every_vjp_autodiff),
      cmocka_unit_test(test_every_vjp_pipeline),
      cmocka_unit_test(test_reduce_sweep),
      cmocka_unit_test(test_layernorm_sweep),
      cmocka_unit_test(test_random_graphs),
      cmocka_unit_test(test_cases_cover_every_op),
      cmocka_unit_test(test_max_pool_ties),
      cmocka_unit_test(test_unused_param_zero),
      cmocka_unit_test(test_errors),
      cmocka_unit_test(test_sequence_gradient_shapes),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
