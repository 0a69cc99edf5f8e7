/* passes/autodiff.c — reverse-mode automatic differentiation over the flat array.
 *
 * The one idea: the instructions are stored in topological order, so the chain rule
 * is a reverse loop (ggml's nodes[]). For every value v that depends on a parameter and
 * reaches the loss, adj[v] holds d loss / d v (the adjoint, same type as v); the VJP
 * rule of v's op turns adj[v] into a contribution to each operand's adjoint.
 *
 * Steps:
 *   1. Copy the forward function into a new one through ir_emit (hash-consing on, so
 *      backward instructions that equal forward or earlier backward ones are merged:
 *      softmax(z) in the softmax_xent rule reuses a forward softmax(z)).
 *   2. Activity: a value is active if it depends on a param (forward sweep) and the
 *      loss depends on it (reverse sweep). Only active operands get contributions, so
 *      nothing is derived for inputs, labels or constants.
 *   3. Seed adj[loss] = `loss_scale`, read at run time: the step's loss scale (1 without
 *      loss scaling) times the micro-batch's weight (1 but in gradient accumulation), so
 *      that every gradient comes out scaled and weighted, then for v from the loss down to 0 apply rule[op(v)]. A
 *      value used several times (fan-out: residuals, x*x) sums its contributions with
 *      `add` (rule "fanout"). A contribution of the broadcast shape of an elementwise
 *      op is reduced back with sum_to to the operand's type.
 *   4. `grad %p, adj[p]` for every param in order; a param that does not reach the loss
 *      gets a zero constant (rule "zero") and its grad sink the rule "unreached": a
 *      warning at the parameter says so, and the optimizer leaves it as it is (as
 *      PyTorch leaves a parameter whose .grad is None).
 * Every backward instruction has IF_BACKWARD, `from` = the forward instruction it
 * differentiates, `rule` = e.g. "matmul.da", and that instruction's DSL location.
 * Means and sizes that involve the batch dim use `size`: B is only known at run time.
 */
#include "passes/passes.h"

#include <math.h>
#include <string.h>

typedef struct {
  Func *g;            /* forward copy + backward being built */
  int32_t nfwd;       /* forward instructions are 0 .. nfwd-1 of g */
  int32_t *adj;       /* adj[v] for forward v, -1: none yet */
  bool *active;
  int32_t from;       /* the forward instruction being differentiated */
  const char *rule;   /* the rule name stamped on what is emitted now */
} AD;

/* ------------------------------------------------------------------ emitting backward */

static int32_t bw(AD *ad, Inst in) {
  in.flags |= IF_BACKWARD;
  in.from = ad->from;
  in.rule = ad->rule;
  in.loc = ad->g->insts[ad->from].loc;
  in.call = ad->g->insts[ad->from].call;
  return ir_emit(ad->g, &in);
}

static int32_t bw1(AD *ad, Op op, int32_t a) {
  Inst in = ir_inst(op, SRCLOC_NONE);
  in.nargs = 1;
  in.args[0] = a;
  return bw(ad, in);
}

static int32_t bw2(AD *ad, Op op, int32_t a, int32_t b) {
  Inst in = ir_inst(op, SRCLOC_NONE);
  in.nargs = 2;
  in.args[0] = a;
  in.args[1] = b;
  return bw(ad, in);
}

static const TensorType *ty(AD *ad, int32_t v) { return ir_vtype(ad->g, v); }

/* A scalar constant of v's float dtype. */
static int32_t bw_scalar(AD *ad, double value, int32_t like) {
  Inst in = ir_inst(OP_CONST, SRCLOC_NONE);
  in.fattr[0] = value;
  in.type = ir_type_scalar(ad->g->mod, (DType)ty(ad, like)->dtype);
  return bw(ad, in);
}

static int32_t bw_to(AD *ad, Op op, int32_t a, TypeId t) {
  if (ad->g->insts[a].type == t) return a;
  Inst in = ir_inst(op, SRCLOC_NONE);
  in.nargs = 1;
  in.args[0] = a;
  in.type = t;
  return bw(ad, in);
}

static int32_t bw_reduce(AD *ad, Op op, int32_t a, int64_t axis, bool keep) {
  Inst in = ir_inst(op, SRCLOC_NONE);
  in.nargs = 1;
  in.args[0] = a;
  in.iattr[0] = axis;
  in.iattr[1] = keep;
  return bw(ad, in);
}

static int32_t bw_rowop(AD *ad, Op op, int32_t a, int64_t axis) {
  Inst in = ir_inst(op, SRCLOC_NONE);
  in.nargs = 1;
  in.args[0] = a;
  in.iattr[0] = axis;
  return bw(ad, in);
}

/* 1 / (number of elements of x reduced over axis): a constant when those dims are
 * known, else `div 1, size(x, axis)`, which the runtime resolves with the batch. */
static int32_t bw_recip_count(AD *ad, int32_t x, int64_t axis) {
  const TensorType *t = ty(ad, x);
  double n = 1;
  bool batch = false;
  for (int i = 0; i < t->rank; i++) {
    if (axis != IR_AXIS_ALL && i != axis) continue;
    if (t->dims[i] == DIM_BATCH) batch = true;
    else n *= (double)t->dims[i];
  }
  if (!batch) return bw_scalar(ad, 1.0 / n, x);
  Inst in = ir_inst(OP_SIZE, SRCLOC_NONE);
  in.nargs = 1;
  in.args[0] = x;
  in.iattr[0] = axis;
  int32_t size = bw(ad, in);
  return bw2(ad, OP_DIV, bw_scalar(ad, 1.0, x), size);
}

/* dy, the adjoint of a reduction of x over axis (keep: reduced dim kept as 1), spread
 * back to x's type. Broadcasting aligns trailing dims, so dy is first given x's rank
 * with a 1 at the reduced axis, where that dim is missing and not leading:
 *   all axes, keep, a scalar dy or axis 0:  dx = broadcast(dy) to X
 *   axis k > 0 without keep:                dx = broadcast(reshape(dy) to K) to X,
 *                                           K = X's dims with dims[k] = 1
 * e.g. x: [B,4,5], y = sum(x, axis=1): [B,5];  dy [B,5] -> reshape [B,1,5] -> broadcast
 * [B,4,5]. (Axis 0 needs no reshape: broadcasting adds leading dims by itself.) */
static int32_t expand(AD *ad, int32_t dy, int32_t x, int64_t axis, bool keep) {
  const TensorType *tx = ty(ad, x), *tdy = ty(ad, dy);
  TypeId xt = ad->g->insts[x].type;
  if (axis == IR_AXIS_ALL || keep || tdy->rank == 0 || axis == 0) return bw_to(ad, OP_BROADCAST, dy, xt);
  int64_t d[IR_MAX_RANK];
  for (int i = 0; i < tx->rank; i++) d[i] = i == axis ? 1 : tx->dims[i];
  int32_t kept = bw_to(ad, OP_RESHAPE, dy, ir_type(ad->g->mod, (DType)tx->dtype, tx->rank, d));
  return bw_to(ad, OP_BROADCAST, kept, xt);
}

/* Add contribution c to the adjoint of operand x (reduced to x's type first). */
static void contribute(AD *ad, int32_t x, int32_t c) {
  if (c < 0) return;
  c = bw_to(ad, OP_SUM_TO, c, ad->g->insts[x].type);
  if (ad->adj[x] < 0) {
    ad->adj[x] = c;
    return;
  }
  /* fan-out: x feeds several instructions; d loss / d x is the sum over its uses */
  int32_t saved_from = ad->from;
  const char *saved_rule = ad->rule;
  ad->from = x;
  ad->rule = "fanout";
  ad->adj[x] = bw2(ad, OP_ADD, ad->adj[x], c);
  ad->from = saved_from;
  ad->rule = saved_rule;
}

/* ------------------------------------------------------------------ the VJP rules */

/* Each rule gets y (the forward instruction), its adjoint dy (y's type) and emits the
 * contributions to its active operands. A = operand 0, B = operand 1. */
typedef void (*VjpFn)(AD *ad, int32_t y, const Inst *in, int32_t dy);

#define A (in->args[0])
#define B (in->args[1])
#define ACT(v) (ad->active[v])
#define RULE(name) (ad->rule = (name))

/* y = a + b (broadcast);  da = sum_to(dy, A);  db = sum_to(dy, B) */
static void vjp_add(AD *ad, int32_t y, const Inst *in, int32_t dy) {
  (void)y;
  if (ACT(A)) { RULE("add.da"); contribute(ad, A, dy); }
  if (ACT(B)) { RULE("add.db"); contribute(ad, B, dy); }
}

/* y = a - b;  da = sum_to(dy, A);  db = sum_to(-dy, B) */
static void vjp_sub(AD *ad, int32_t y, const Inst *in, int32_t dy) {
  (void)y;
  if (ACT(A)) { RULE("sub.da"); contribute(ad, A, dy); }
  if (ACT(B)) { RULE("sub.db"); contribute(ad, B, bw1(ad, OP_NEG, dy)); }
}

/* y = a * b;  da = sum_to(dy * b, A);  db = sum_to(dy * a, B) */
static void vjp_mul(AD *ad, int32_t y, const Inst *in, int32_t dy) {
  (void)y;
  if (ACT(A)) { RULE("mul.da"); contribute(ad, A, bw2(ad, OP_MUL, dy, B)); }
  if (ACT(B)) { RULE("mul.db"); contribute(ad, B, bw2(ad, OP_MUL, dy, A)); }
}

/* y = a / b;  da = sum_to(dy / b, A);  db = sum_to(-(dy * y) / b, B)  (= -dy a / b^2) */
static void vjp_div(AD *ad, int32_t y, const Inst *in, int32_t dy) {
  if (ACT(A)) { RULE("div.da"); contribute(ad, A, bw2(ad, OP_DIV, dy, B)); }
  if (ACT(B)) {
    RULE("div.db");
    contribute(ad, B, bw1(ad, OP_NEG, bw2(ad, OP_DIV, bw2(ad, OP_MUL, dy, y), B)));
  }
}

/* y = -x;  dx = -dy */
static void vjp_neg(AD *ad, int32_t y, const Inst *in, int32_t dy) {
  (void)y;
  RULE("neg.dx");
  contribute(ad, A, bw1(ad, OP_NEG, dy));
}

/* y = cast(x) to bf16/f16 or back;  dx = cast(dy) to x's dtype: the rounding's
 * derivative is taken as 1 (straight through), as torch's Tensor.to(dtype) does. Casts
 * are inserted after autodiff (passes/precision.c); this rule serves IR read from a file. */
static void vjp_cast(AD *ad, int32_t y, const Inst *in, int32_t dy) {
  (void)y;
  RULE("cast.dx");
  const TensorType *xt = ty(ad, A);
  Inst c = ir_inst(OP_CAST, SRCLOC_NONE);
  c.nargs = 1;
  c.args[0] = dy;
  c.type = ir_type(ad->g->mod, (DType)xt->dtype, xt->rank, xt->dims);
  contribute(ad, A, bw(ad, c));
}

/* y = exp(x);  dx = dy * y */
static void vjp_exp(AD *ad, int32_t y, const Inst *in, int32_t dy) {
  RULE("exp.dx");
  contribute(ad, A, bw2(ad, OP_MUL, dy, y));
}

/* y = log(x);  dx = dy / x */
static void vjp_log(AD *ad, int32_t y, const Inst *in, int32_t dy) {
  (void)y;
  RULE("log.dx");
  contribute(ad, A, bw2(ad, OP_DIV, dy, A));
}

/* y = sqrt(x);  dx = (dy * 0.5) / y */
static void vjp_sqrt(AD *ad, int32_t y, const Inst *in, int32_t dy) {
  RULE("sqrt.dx");
  contribute(ad, A, bw2(ad, OP_DIV, bw2(ad, OP_MUL, dy, bw_scalar(ad, 0.5, dy)), y));
}

/* y = |x|;  dx = dy * sign(x)  (0 at x = 0, the subgradient PyTorch uses) */
static void vjp_abs(AD *ad, int32_t y, const Inst *in, int32_t dy) {
  (void)y;
  RULE("abs.dx");
  contribute(ad, A, bw2(ad, OP_MUL, dy, bw1(ad, OP_SIGN, A)));
}

/* y = relu(x);  dx = relu_grad(x, dy) = dy * (x > 0) */
static void vjp_relu(AD *ad, int32_t y, const Inst *in, int32_t dy) {
  (void)y;
  RULE("relu.dx");
  contribute(ad, A, bw2(ad, OP_RELU_GRAD, A, dy));
}

/* y = sigmoid(x);  dx = sigmoid_grad(y, dy) = dy * y * (1 - y) */
static void vjp_sigmoid(AD *ad, int32_t y, const Inst *in, int32_t dy) {
  RULE("sigmoid.dx");
  (void)in;
  contribute(ad, A, bw2(ad, OP_SIGMOID_GRAD, y, dy));
}

/* y = tanh(x);  dx = tanh_grad(y, dy) = dy * (1 - y^2) */
static void vjp_tanh(AD *ad, int32_t y, const Inst *in, int32_t dy) {
  RULE("tanh.dx");
  contribute(ad, A, bw2(ad, OP_TANH_GRAD, y, dy));
}

/* y = x^p (p constant);  dx = dy * (p * x^(p-1)) */
static void vjp_pow(AD *ad, int32_t y, const Inst *in, int32_t dy) {
  (void)y;
  RULE("pow.dx");
  double p = in->fattr[0];
  int32_t d;
  if (p == 1) {
    d = dy;
  } else {
    Inst pw = ir_inst(OP_POW, SRCLOC_NONE);
    pw.nargs = 1;
    pw.args[0] = A;
    pw.fattr[0] = p - 1;
    int32_t xp = p == 2 ? A : bw(ad, pw);
    d = bw2(ad, OP_MUL, dy, bw2(ad, OP_MUL, bw_scalar(ad, p, dy), xp));
  }
  contribute(ad, A, d);
}

/* y = relu_grad(x, g) = g * (x > 0);  dx = 0 (almost everywhere);  dg = relu_grad(x, dy) */
static void vjp_relu_grad(AD *ad, int32_t y, const Inst *in, int32_t dy) {
  (void)y;
  if (ACT(B)) { RULE("relu_grad.dg"); contribute(ad, B, bw2(ad, OP_RELU_GRAD, A, dy)); }
}

/* y = sigmoid_grad(s, g) = g s (1 - s);  ds = dy * g * (1 - 2 s);  dg = sigmoid_grad(s, dy) */
static void vjp_sigmoid_grad(AD *ad, int32_t y, const Inst *in, int32_t dy) {
  (void)y;
  if (ACT(A)) {
    RULE("sigmoid_grad.ds");
    int32_t one_m_2s = bw2(ad, OP_SUB, bw_scalar(ad, 1.0, A), bw2(ad, OP_MUL, bw_scalar(ad, 2.0, A), A));
    contribute(ad, A, bw2(ad, OP_MUL, bw2(ad, OP_MUL, dy, B), one_m_2s));
  }
  if (ACT(B)) { RULE("sigmoid_grad.dg"); contribute(ad, B, bw2(ad, OP_SIGMOID_GRAD, A, dy)); }
}

/* y = tanh_grad(t, g) = g (1 - t^2);  dt = dy * g * (-2 t);  dg = tanh_grad(t, dy) */
static void vjp_tanh_grad(AD *ad, int32_t y, const Inst *in, int32_t dy) {
  (void)y;
  if (ACT(A)) {
    RULE("tanh_grad.dt");
    contribute(ad, A, bw2(ad, OP_MUL, bw2(ad, OP_MUL, dy, B), bw2(ad, OP_MUL, bw_scalar(ad, -2.0, A), A)));
  }
  if (ACT(B)) { RULE("tanh_grad.dg"); contribute(ad, B, bw2(ad, OP_TANH_GRAD, A, dy)); }
}

/* matmul_tn with fold=1: a[...,k,m], b[...,k,n] -> [m,n] summed over the leading dims
 * too; a plain matmul_tn where both are rank 2. */
static int32_t bw_tn_fold(AD *ad, int32_t a, int32_t b) {
  Inst in = ir_inst(OP_MATMUL_TN, SRCLOC_NONE);
  in.nargs = 2;
  in.args[0] = a;
  in.args[1] = b;
  in.iattr[0] = ty(ad, a)->rank > 2;
  return bw(ad, in);
}

/* Does the weight-gradient product of x (rank > 2) against a rank-2 operand w fold its
 * batch dims into the sum? x's leading dims are then rows of one product and dy has
 * the same leading dims, so sum over them is part of the product itself. */
static bool folds(AD *ad, int32_t x, int32_t w) { return ty(ad, w)->rank == 2 && ty(ad, x)->rank > 2; }

/* The products broadcast their leading (batch) dims, so each rule is the rank-2 rule
 * per batch index followed by a sum over the dims an operand was broadcast along
 * (contribute's sum_to); where the operand is a rank-2 weight applied to every row of
 * a[B,T,k], that sum is folded into the product (matmul_tn fold=1: no [B,k,n] value).
 *
 * y[...,m,n] = a[...,m,k] b[...,k,n]:
 *   da = dy b^T = matmul_nt(dy, b)            [...,m,k], summed to a's dims
 *   db = a^T dy = matmul_tn(a, dy)            [...,k,n], summed to b's dims
 *      = matmul_tn fold=1 (a, dy)             [k,n] when b is rank 2: sum_{...,m} a dy */
static void vjp_matmul(AD *ad, int32_t y, const Inst *in, int32_t dy) {
  (void)y;
  if (ACT(A)) { RULE("matmul.da"); contribute(ad, A, bw2(ad, OP_MATMUL_NT, dy, B)); }
  if (ACT(B)) {
    RULE("matmul.db");
    contribute(ad, B, folds(ad, A, B) ? bw_tn_fold(ad, A, dy) : bw2(ad, OP_MATMUL_TN, A, dy));
  }
}

/* y[...,m,n] = a[...,m,k] b[...,n,k]^T:
 *   da = dy b = matmul(dy, b)                 [...,m,k]
 *   db = dy^T a = matmul_tn(dy, a)            [...,n,k]; fold=1 when b is rank 2 */
static void vjp_matmul_nt(AD *ad, int32_t y, const Inst *in, int32_t dy) {
  (void)y;
  if (ACT(A)) { RULE("matmul_nt.da"); contribute(ad, A, bw2(ad, OP_MATMUL, dy, B)); }
  if (ACT(B)) {
    RULE("matmul_nt.db");
    contribute(ad, B, folds(ad, A, B) ? bw_tn_fold(ad, dy, A) : bw2(ad, OP_MATMUL_TN, dy, A));
  }
}

/* y[...,m,n] = a[...,k,m]^T b[...,k,n]:
 *   da = b dy^T = matmul_nt(b, dy)            [...,k,m]
 *   db = a dy = matmul(a, dy)                 [...,k,n]
 * fold=1, y[m,n] = sum_i a_i^T b_i over the batch index i (dy [m,n] for every i):
 *   da_i = b_i dy^T = matmul_nt(b, dy),  db_i = a_i dy = matmul(a, dy)  (dy broadcast) */
static void vjp_matmul_tn(AD *ad, int32_t y, const Inst *in, int32_t dy) {
  (void)y;
  if (ACT(A)) { RULE("matmul_tn.da"); contribute(ad, A, bw2(ad, OP_MATMUL_NT, B, dy)); }
  if (ACT(B)) { RULE("matmul_tn.db"); contribute(ad, B, bw2(ad, OP_MATMUL, A, dy)); }
}

/* A conv2d-family instruction with in's stride, padding and dilation; t is the result
 * type the two gradients need (ignored by conv2d, which infers it). */
static int32_t bw_conv(AD *ad, Op op, const Inst *in, int32_t a, int32_t b, TypeId t) {
  Inst c = ir_inst(op, SRCLOC_NONE);
  c.nargs = 2;
  c.args[0] = a;
  c.args[1] = b;
  for (int i = 0; i < 3; i++) c.iattr[i] = in->iattr[i];
  c.type = t;
  return bw(ad, c);
}

/* y = conv2d(x, k):  y[b,o,i,j] = sum_{c,u,v} x[b,c, s i - p + d u, s j - p + d v] k[o,c,u,v]
 * Each x element meets each k element through the same (b,o,i,j,c,u,v) tuples, so
 *   dx[b,c,h,w] = sum_{o,u,v, (i,j) with h = s i - p + d u, ...} dy[b,o,i,j] k[o,c,u,v]
 *               = conv2d_bwd_data(dy, k): the transposed convolution of dy with k
 *   dk[o,c,u,v] = sum_{b,i,j} x[b,c, s i - p + d u, s j - p + d v] dy[b,o,i,j]
 *               = conv2d_bwd_weight(x, dy): x correlated with dy */
static void vjp_conv2d(AD *ad, int32_t y, const Inst *in, int32_t dy) {
  (void)y;
  if (ACT(A)) { RULE("conv2d.dx"); contribute(ad, A, bw_conv(ad, OP_CONV2D_BWD_DATA, in, dy, B, ad->g->insts[A].type)); }
  if (ACT(B)) { RULE("conv2d.dk"); contribute(ad, B, bw_conv(ad, OP_CONV2D_BWD_WEIGHT, in, A, dy, ad->g->insts[B].type)); }
}

/* r = conv2d_bwd_data(g, k): r[b,c,h,w] = sum g[b,o,i,j] k[o,c,u,v] over the tuples
 * above, bilinear in (g, k), so with dr its adjoint:
 *   dg = conv2d(dr, k)                (the forward convolution of dr)
 *   dk = conv2d_bwd_weight(dr, g)     (dr plays x, g plays dy) */
static void vjp_conv2d_bwd_data(AD *ad, int32_t y, const Inst *in, int32_t dy) {
  (void)y;
  if (ACT(A)) { RULE("conv2d_bwd_data.dg"); contribute(ad, A, bw_conv(ad, OP_CONV2D, in, dy, B, TYPE_VOID)); }
  if (ACT(B)) {
    RULE("conv2d_bwd_data.dk");
    contribute(ad, B, bw_conv(ad, OP_CONV2D_BWD_WEIGHT, in, dy, A, ad->g->insts[B].type));
  }
}

/* r = conv2d_bwd_weight(x, g): r[o,c,u,v] = sum x[b,c,h,w] g[b,o,i,j], bilinear, so
 *   dx = conv2d_bwd_data(g, dr)       (dr plays the kernel)
 *   dg = conv2d(x, dr) */
static void vjp_conv2d_bwd_weight(AD *ad, int32_t y, const Inst *in, int32_t dy) {
  (void)y;
  if (ACT(A)) {
    RULE("conv2d_bwd_weight.dx");
    contribute(ad, A, bw_conv(ad, OP_CONV2D_BWD_DATA, in, B, dy, ad->g->insts[A].type));
  }
  if (ACT(B)) { RULE("conv2d_bwd_weight.dg"); contribute(ad, B, bw_conv(ad, OP_CONV2D, in, A, dy, TYPE_VOID)); }
}

/* y = transpose(x, perm): y[i_0..i_r-1] = x[j] with j[perm[d]] = i_d. Each element
 * moves once, so dx is dy moved back: dx = transpose(dy, inv), inv[perm[d]] = d (the
 * swap of the last two dims, code 0, is its own inverse). */
static void vjp_transpose(AD *ad, int32_t y, const Inst *in, int32_t dy) {
  (void)y;
  RULE("transpose.dx");
  int r = ty(ad, A)->rank, perm[4], inv[4];
  if (!ir_transpose_perm(in, r, perm)) return;   /* the verifier rejects it before */
  for (int d = 0; d < r; d++) inv[perm[d]] = d;
  Inst t = ir_inst(OP_TRANSPOSE, SRCLOC_NONE);
  t.nargs = 1;
  t.args[0] = dy;
  t.iattr[0] = ir_transpose_code(r, inv);
  contribute(ad, A, bw(ad, t));
}

/* y = sum(x, axis[, keep]);  dx = expand(dy): dy spread back over the axis (see expand) */
static void vjp_sum(AD *ad, int32_t y, const Inst *in, int32_t dy) {
  (void)y;
  RULE("sum.dx");
  contribute(ad, A, expand(ad, dy, A, in->iattr[0], in->iattr[1] != 0));
}

/* y = mean(x, axis[, keep]) = sum(x, axis) / n;  dx = expand(dy * (1/n)), n = size(x, axis) */
static void vjp_mean(AD *ad, int32_t y, const Inst *in, int32_t dy) {
  (void)y;
  RULE("mean.dx");
  int32_t scaled = bw2(ad, OP_MUL, dy, bw_recip_count(ad, A, in->iattr[0]));
  contribute(ad, A, expand(ad, scaled, A, in->iattr[0], in->iattr[1] != 0));
}

/* y = max(x, axis[, keep]);  dx = expand(dy) * (x == expand(y))  (ties all get dy) */
static void vjp_max(AD *ad, int32_t y, const Inst *in, int32_t dy) {
  RULE("max.dx");
  int64_t axis = in->iattr[0];
  bool keep = in->iattr[1] != 0;
  int32_t ey = expand(ad, y, A, axis, keep);
  int32_t edy = expand(ad, dy, A, axis, keep);
  contribute(ad, A, bw2(ad, OP_MUL, edy, bw2(ad, OP_EQ, A, ey)));
}

/* y = broadcast(x) to T;  dx = sum_to(dy, X) */
static void vjp_broadcast(AD *ad, int32_t y, const Inst *in, int32_t dy) {
  (void)y;
  RULE("broadcast.dx");
  contribute(ad, A, dy);
}

/* y = sum_to(x) to T;  dx = broadcast(dy, X) */
static void vjp_sum_to(AD *ad, int32_t y, const Inst *in, int32_t dy) {
  (void)y;
  RULE("sum_to.dx");
  contribute(ad, A, bw_to(ad, OP_BROADCAST, dy, ad->g->insts[A].type));
}

/* y = reshape(x) (the same elements, new dims);  dx = reshape(dy) back to X's dims */
static void vjp_reshape(AD *ad, int32_t y, const Inst *in, int32_t dy) {
  (void)y;
  RULE("reshape.dx");
  contribute(ad, A, bw_to(ad, OP_RESHAPE, dy, ad->g->insts[A].type));
}

/* y = max_pool2d(x, k, s, p): y[n,c,i,j] = max over the window W(i,j) of x (padded
 * cells -inf). Each y is one cell of x, x[a(i,j)], a = the window's argmax (its first
 * largest cell in row-major order, PyTorch's tie rule), so dy/dx is 1 there and 0 elsewhere:
 *   dx[n,c,h,w] = sum over windows (i,j) with a(i,j) = (h,w) of dy[n,c,i,j]
 * max_pool2d_bwd(x, dy) recomputes a from x instead of storing an index tensor: k*k
 * comparisons per window, no int buffer in the memory plan. */
static int32_t bw_pool(AD *ad, Op op, int32_t a0, int32_t a1, TypeId type, const Inst *like);

static void vjp_max_pool2d(AD *ad, int32_t y, const Inst *in, int32_t dy) {
  (void)y;
  RULE("max_pool2d.dx");
  contribute(ad, A, bw_pool(ad, OP_MAX_POOL2D_BWD, A, dy, TYPE_VOID, in));
}

/* y = avg_pool2d(x, k, s, p): y[n,c,i,j] = (1 / k^2) sum over W(i,j) of x (padded
 * zeros counted in k^2), linear in x with dy/dx = 1/k^2 on each window's cells:
 *   dx[n,c,h,w] = (1 / k^2) sum over windows (i,j) containing (h,w) of dy[n,c,i,j]
 * avg_pool2d_bwd(dy) takes x's type as its result type (Ho does not determine H). */
static void vjp_avg_pool2d(AD *ad, int32_t y, const Inst *in, int32_t dy) {
  (void)y;
  RULE("avg_pool2d.dx");
  contribute(ad, A, bw_pool(ad, OP_AVG_POOL2D_BWD, dy, -1, ad->g->insts[A].type, in));
}

/* dx = avg_pool2d_bwd(dy) is linear in dy: dx = A^T dy with A the averaging of
 * avg_pool2d, so its VJP is d(dy) = A d(dx) = avg_pool2d(d(dx)) with the same window. */
static void vjp_avg_pool2d_bwd(AD *ad, int32_t y, const Inst *in, int32_t dy) {
  (void)y;
  RULE("avg_pool2d_bwd.ddy");
  contribute(ad, A, bw_pool(ad, OP_AVG_POOL2D, dy, -1, TYPE_VOID, in));
}

/* A pooling op (or its backward) over a0 (and a1 >= 0) with `like`'s window (kernel,
 * stride, padding); type TYPE_VOID: inferred from the operands. */
static int32_t bw_pool(AD *ad, Op op, int32_t a0, int32_t a1, TypeId type, const Inst *like) {
  Inst g = ir_inst(op, SRCLOC_NONE);
  g.nargs = a1 >= 0 ? 2 : 1;
  g.args[0] = a0;
  g.args[1] = a1 >= 0 ? a1 : 0;
  if (type != TYPE_VOID) g.type = type;
  memcpy(g.iattr, like->iattr, sizeof g.iattr);
  return bw(ad, g);
}

/* A layernorm-family instruction with like's dims and eps; c < 0: two operands. */
static int32_t bw_layernorm(AD *ad, Op op, const Inst *like, int32_t a, int32_t b, int32_t c) {
  Inst g = ir_inst(op, SRCLOC_NONE);
  g.nargs = c >= 0 ? 3 : 2;
  g.args[0] = a;
  g.args[1] = b;
  g.args[2] = c >= 0 ? c : 0;
  g.iattr[0] = like->iattr[0];
  g.fattr[0] = like->fattr[0];
  return bw(ad, g);
}

/* y = softmax(x, axis);  dx = y * (dy - sum(dy * y, axis, keep)) */
static void vjp_softmax(AD *ad, int32_t y, const Inst *in, int32_t dy) {
  RULE("softmax.dx");
  int32_t s = bw_reduce(ad, OP_SUM, bw2(ad, OP_MUL, dy, y), in->iattr[0], true);
  contribute(ad, A, bw2(ad, OP_MUL, y, bw2(ad, OP_SUB, dy, s)));
}

/* y = log_softmax(x, axis);  dx = dy - softmax(x, axis) * sum(dy, axis, keep) */
static void vjp_log_softmax(AD *ad, int32_t y, const Inst *in, int32_t dy) {
  (void)y;
  RULE("log_softmax.dx");
  int32_t s = bw_reduce(ad, OP_SUM, dy, in->iattr[0], true);
  int32_t p = bw_rowop(ad, OP_SOFTMAX, A, in->iattr[0]);
  contribute(ad, A, bw2(ad, OP_SUB, dy, bw2(ad, OP_MUL, p, s)));
}

/* l[r] = -log softmax(z)[r, y_r] for each row r of the last axis c = rank - 1
 * (z: f32[...,C], y: label[...,C], l: f32[...]: [B,C] -> [B], [B,T,V] -> [B,T])
 * dz[r,:] = (softmax(z)[r,:] - onehot(y)[r,:]) * dl[r]
 * No log, no division by probabilities, no softmax Jacobian: the softmax-CE rule. */
static void vjp_softmax_xent(AD *ad, int32_t y, const Inst *in, int32_t dy) {
  (void)y;
  if (!ACT(A)) return;
  RULE("softmax_xent");
  int64_t c = ty(ad, A)->rank - 1;
  int32_t p = bw_rowop(ad, OP_SOFTMAX, A, c);
  int32_t diff = bw2(ad, OP_SUB, p, bw1(ad, OP_ONEHOT, B));
  int32_t edy = expand(ad, dy, A, c, false);   /* dl[..., None]: [B,T] -> [B,T,1] -> [B,T,V] */
  contribute(ad, A, bw2(ad, OP_MUL, diff, edy));
}

/* y = embedding(ids, W): y[r] = W[ids[r]] (a gather of rows), linear in W, so
 *   dW[v] = sum of dy[r] over the rows r with ids[r] = v = embedding_bwd(ids, dy)
 * (a scatter-add into the rows of the table); the ids are labels, no derivative. */
static void vjp_embedding(AD *ad, int32_t y, const Inst *in, int32_t dy) {
  (void)y;
  if (!ACT(B)) return;
  RULE("embedding.dW");
  contribute(ad, B, bw2(ad, OP_EMBEDDING_BWD, A, dy));
}

/* y = embedding_bwd(ids, g): y[v] = sum_{r: ids[r] = v} g[r], linear in g with the
 * gather as its transpose:  dg[r] = dy[ids[r]] = embedding(ids, dy) */
static void vjp_embedding_bwd(AD *ad, int32_t y, const Inst *in, int32_t dy) {
  (void)y;
  if (!ACT(B)) return;
  RULE("embedding_bwd.dg");
  contribute(ad, B, bw2(ad, OP_EMBEDDING, A, dy));
}

/* y = gelu(x) = x Phi(x);  dx = gelu_grad(x, dy) = dy (Phi(x) + x phi(x)) */
static void vjp_gelu(AD *ad, int32_t y, const Inst *in, int32_t dy) {
  (void)y;
  RULE("gelu.dx");
  contribute(ad, A, bw2(ad, OP_GELU_GRAD, A, dy));
}

/* y = gelu_tanh(x) = x (1 + tanh u) / 2, u = c (x + a x^3);  dx = gelu_tanh_grad(x, dy) */
static void vjp_gelu_tanh(AD *ad, int32_t y, const Inst *in, int32_t dy) {
  (void)y;
  RULE("gelu_tanh.dx");
  contribute(ad, A, bw2(ad, OP_GELU_TANH_GRAD, A, dy));
}

/* y = gelu_grad(x, g) = g f'(x), f = gelu, f'(x) = Phi(x) + x phi(x):
 *   dg = gelu_grad(x, dy)
 *   dx = dy g f''(x),  f''(x) = 2 phi(x) - x^2 phi(x) = phi(x) (2 - x^2),
 *        phi(x) = exp(-x^2 / 2) / sqrt(2 pi) */
static void vjp_gelu_grad(AD *ad, int32_t y, const Inst *in, int32_t dy) {
  (void)y;
  if (ACT(A)) {
    RULE("gelu_grad.dx");
    int32_t x2 = bw2(ad, OP_MUL, A, A);
    int32_t phi = bw2(ad, OP_MUL, bw1(ad, OP_EXP, bw2(ad, OP_MUL, x2, bw_scalar(ad, -0.5, A))),
                      bw_scalar(ad, 0.3989422804014327, A));   /* 1 / sqrt(2 pi) */
    int32_t f2 = bw2(ad, OP_MUL, phi, bw2(ad, OP_SUB, bw_scalar(ad, 2.0, A), x2));
    contribute(ad, A, bw2(ad, OP_MUL, bw2(ad, OP_MUL, dy, B), f2));
  }
  if (ACT(B)) { RULE("gelu_grad.dg"); contribute(ad, B, bw2(ad, OP_GELU_GRAD, A, dy)); }
}

/* y = gelu_tanh_grad(x, g) = g f'(x), f = gelu_tanh, with u = c (x + a x^3),
 * u' = c (1 + 3 a x^2), u'' = 6 a c x, t = tanh u:
 *   f'  = (1 + t) / 2 + x (1 - t^2) u' / 2
 *   f'' = (1 - t^2) u' / 2 + (1 - t^2) u' / 2 + x (-2 t (1 - t^2) u'^2 + (1 - t^2) u'') / 2
 *       = (1 - t^2) (u' + 3 a c x^2 - x t u'^2)
 *   dx = dy g f''(x);  dg = gelu_tanh_grad(x, dy) */
static void vjp_gelu_tanh_grad(AD *ad, int32_t y, const Inst *in, int32_t dy) {
  (void)y;
  if (ACT(A)) {
    RULE("gelu_tanh_grad.dx");
    const double c = 0.7978845608028654, a = 0.044715;   /* sqrt(2 / pi), ops.def */
    int32_t x2 = bw2(ad, OP_MUL, A, A);
    int32_t u = bw2(ad, OP_MUL, bw2(ad, OP_ADD, A, bw2(ad, OP_MUL, bw2(ad, OP_MUL, x2, A), bw_scalar(ad, a, A))),
                    bw_scalar(ad, c, A));
    int32_t t = bw1(ad, OP_TANH, u);
    int32_t up = bw2(ad, OP_MUL, bw2(ad, OP_ADD, bw_scalar(ad, 1.0, A), bw2(ad, OP_MUL, x2, bw_scalar(ad, 3 * a, A))),
                     bw_scalar(ad, c, A));
    int32_t inner = bw2(ad, OP_SUB, bw2(ad, OP_ADD, up, bw2(ad, OP_MUL, x2, bw_scalar(ad, 3 * a * c, A))),
                        bw2(ad, OP_MUL, bw2(ad, OP_MUL, A, t), bw2(ad, OP_MUL, up, up)));
    int32_t f2 = bw2(ad, OP_MUL, bw2(ad, OP_SUB, bw_scalar(ad, 1.0, A), bw2(ad, OP_MUL, t, t)), inner);
    contribute(ad, A, bw2(ad, OP_MUL, bw2(ad, OP_MUL, dy, B), f2));
  }
  if (ACT(B)) { RULE("gelu_tanh_grad.dg"); contribute(ad, B, bw2(ad, OP_GELU_TANH_GRAD, A, dy)); }
}

/* o = attention(q, k, v) = softmax(scale q k^T + mask) v per batch (and head), with
 * lse = log sum_j exp(scale q k_j^T + mask) its extra result 1. With p = exp(s - lse),
 * the probabilities, and do the adjoint of o:
 *   dv = p^T do,  dp = do v^T,  ds = p (dp - D) with D = rowsum(do o) (= rowsum(p dp),
 *   the softmax VJP),  dq = scale ds k,  dk = scale ds^T q
 * all in one kernel: attention_bwd(q, k, v, o, lse, do) -> dq, extras 1: dk, 2: dv,
 * which recomputes p from lse block by block (no [T,S] value). Both extras are emitted
 * right after it, used or not: the kernel writes them. lse is the extra that follows
 * o (pass_autodiff's copy makes sure it exists); it has no adjoint of its own (nothing
 * but attention_bwd reads it; a use that reached the loss is an error in the sweep). */
static void vjp_attention(AD *ad, int32_t y, const Inst *in, int32_t dy) {
  int32_t lse = -1;
  for (int32_t v = y + 1; v < ad->nfwd && ad->g->insts[v].op == OP_EXTRA; v++)
    if (ad->g->insts[v].args[0] == y && ad->g->insts[v].iattr[0] == 1) lse = v;
  if (lse < 0) return;   /* not reached: the copy in pass_autodiff adds the lse */
  RULE("attention.dq");
  Inst b = ir_inst(OP_ATTENTION_BWD, SRCLOC_NONE);
  b.nargs = 6;
  int32_t args[6] = {in->args[0], in->args[1], in->args[2], y, lse, dy};
  memcpy(b.args, args, sizeof args);
  b.iattr[0] = in->iattr[0];
  b.fattr[0] = in->fattr[0];
  int32_t dq = bw(ad, b);
  int32_t dk = -1, dv = -1;
  for (int r = 1; r <= 2; r++) {
    RULE(r == 1 ? "attention.dk" : "attention.dv");
    Inst e = ir_inst(OP_EXTRA, SRCLOC_NONE);
    e.nargs = 1;
    e.args[0] = dq;
    e.iattr[0] = r;
    *(r == 1 ? &dk : &dv) = bw(ad, e);
  }
  if (ACT(in->args[0])) { RULE("attention.dq"); contribute(ad, in->args[0], dq); }
  if (ACT(in->args[1])) { RULE("attention.dk"); contribute(ad, in->args[1], dk); }
  if (ACT(in->args[2])) { RULE("attention.dv"); contribute(ad, in->args[2], dv); }
}

/* Batch normalization, per channel c over its n values (ops.def):
 *   m = mean(x),  v = mean((x - m)^2),  r = (v + eps)^(-1/2),  xhat = (x - m) r
 * xhat = bn_norm(x, m, r) depends on x directly and through m and r. With g = dL/dxhat,
 * dm/dx_i = 1/n and dr/dx_i = -r^3 (x_i - m) / n = -r^2 xhat_i / n, so
 *   dx_i = r g_i - (r / n) sum_j g_j - (r / n) xhat_i sum_j g_j xhat_j
 *        = (r / n) (n g_i - sum(g) - xhat_i sum(g xhat))
 * = bn_norm_bwd(xhat, g, r), one kernel that reads xhat, g and r (PyTorch's closed form;
 * with y = gamma xhat + beta, g = dy gamma, dgamma = sum(dy xhat), dbeta = sum(dy) come
 * from the mul and add rules). The rule passes nothing to m and r: the closed form has
 * already differentiated through them, so bn_mean and bn_var need no rule. It holds
 * only in training form, where m = bn_mean(x) and r comes from bn_var(x, m): the
 * frontend builds nothing else, and the inference form (running statistics, constants
 * to the gradient) is never differentiated. */
static void vjp_bn_norm(AD *ad, int32_t y, const Inst *in, int32_t dy) {
  if (!ACT(A)) return;
  RULE("bn_norm.dx");
  Inst g = ir_inst(OP_BN_NORM_BWD, SRCLOC_NONE);
  g.nargs = 3;
  g.args[0] = y;
  g.args[1] = dy;
  g.args[2] = in->args[2];
  contribute(ad, A, bw(ad, g));
}

/* y = layernorm(x, gamma, beta) over rows of N elements (x's last k dims):
 *   mean = sum(x) / N,  var = sum((x - mean)^2) / N,  rstd = (var + eps)^(-1/2),
 *   xhat = (x - mean) rstd,  y = xhat gamma + beta.
 * With g = dy gamma (the adjoint of xhat), and d mean / dx_j = 1/N,
 * d rstd / dx_j = -rstd^3 (x_j - mean) / N, so d xhat_i / dx_j = rstd (delta_ij - 1/N
 * - xhat_i xhat_j / N), and summing g_i over i:
 *   dx     = rstd (g - mean(g) - xhat mean(g xhat))       layernorm_bwd(x, gamma, dy)
 *   dgamma = sum over rows of dy xhat                     layernorm_bwd_gamma(x, dy)
 *   dbeta  = sum over rows of dy                          sum_to(dy), in contribute
 * The closed form, not the chain through mean, var and sqrt: one kernel per gradient,
 * and nothing of forward kept but x (both ops recompute mean and rstd from x). */
static void vjp_layernorm(AD *ad, int32_t y, const Inst *in, int32_t dy) {
  (void)y;
  if (ACT(A)) {
    RULE("layernorm.dx");
    contribute(ad, A, bw_layernorm(ad, OP_LAYERNORM_BWD, in, A, in->args[1], dy));
  }
  if (ACT(in->args[1])) {
    RULE("layernorm.dgamma");
    contribute(ad, in->args[1], bw_layernorm(ad, OP_LAYERNORM_BWD_GAMMA, in, A, dy, -1));
  }
  if (ACT(in->args[2])) { RULE("layernorm.dbeta"); contribute(ad, in->args[2], dy); }
}

#undef A
#undef B
#undef ACT
#undef RULE

/* The rule table, indexed by op. Ops without an entry have no derivative to pass on:
 * leaves, size (a count), eq and sign (piecewise constant), onehot (of labels), sinks;
 * or max_pool2d_bwd, which autodiff emits but does not differentiate again (its
 * derivative in dy is a gather at each window's argmax, an op the IR does not have);
 * bn_mean and bn_var, whose part bn_norm's closed form takes, and bn_norm_bwd, which
 * is not differentiated again; nor layernorm_bwd and layernorm_bwd_gamma (second
 * derivatives of a layer norm are not needed by training, and their closed forms would
 * be ops of their own); causal_mask (a constant of the shape); attention_bwd (the
 * second derivative of attention: training does not need it) and extra (attention's
 * lse is read only by attention_bwd; the extras of attention_bwd are gradients). */
static const VjpFn vjp_rules[OP__COUNT] = {
    [OP_ADD] = vjp_add,
    [OP_CAST] = vjp_cast,
    [OP_SUB] = vjp_sub,
    [OP_MUL] = vjp_mul,
    [OP_DIV] = vjp_div,
    [OP_NEG] = vjp_neg,
    [OP_EXP] = vjp_exp,
    [OP_LOG] = vjp_log,
    [OP_SQRT] = vjp_sqrt,
    [OP_ABS] = vjp_abs,
    [OP_RELU] = vjp_relu,
    [OP_SIGMOID] = vjp_sigmoid,
    [OP_TANH] = vjp_tanh,
    [OP_POW] = vjp_pow,
    [OP_RELU_GRAD] = vjp_relu_grad,
    [OP_SIGMOID_GRAD] = vjp_sigmoid_grad,
    [OP_TANH_GRAD] = vjp_tanh_grad,
    [OP_MATMUL] = vjp_matmul,
    [OP_MATMUL_NT] = vjp_matmul_nt,
    [OP_MATMUL_TN] = vjp_matmul_tn,
    [OP_TRANSPOSE] = vjp_transpose,
    [OP_CONV2D] = vjp_conv2d,
    [OP_CONV2D_BWD_DATA] = vjp_conv2d_bwd_data,
    [OP_CONV2D_BWD_WEIGHT] = vjp_conv2d_bwd_weight,
    [OP_SUM] = vjp_sum,
    [OP_MEAN] = vjp_mean,
    [OP_MAX] = vjp_max,
    [OP_BROADCAST] = vjp_broadcast,
    [OP_SUM_TO] = vjp_sum_to,
    [OP_RESHAPE] = vjp_reshape,
    [OP_SOFTMAX] = vjp_softmax,
    [OP_LOG_SOFTMAX] = vjp_log_softmax,
    [OP_SOFTMAX_XENT] = vjp_softmax_xent,
    [OP_MAX_POOL2D] = vjp_max_pool2d,
    [OP_AVG_POOL2D] = vjp_avg_pool2d,
    [OP_AVG_POOL2D_BWD] = vjp_avg_pool2d_bwd,
    [OP_BN_NORM] = vjp_bn_norm,
    [OP_LAYERNORM] = vjp_layernorm,
    [OP_EMBEDDING] = vjp_embedding,
    [OP_EMBEDDING_BWD] = vjp_embedding_bwd,
    [OP_GELU] = vjp_gelu,
    [OP_GELU_TANH] = vjp_gelu_tanh,
    [OP_GELU_GRAD] = vjp_gelu_grad,
    [OP_GELU_TANH_GRAD] = vjp_gelu_tanh_grad,
    [OP_ATTENTION] = vjp_attention,
};

/* ------------------------------------------------------------------ the pass */

Func *pass_autodiff(Func *f, const PassOptions *opt) {
  (void)opt;   /* the seed is the loss_scale leaf whatever the options (opt->loss_scale) */
  int32_t loss_sink = -1;
  for (int32_t i = 0; i < f->ninsts; i++) {
    const Inst *in = &f->insts[i];
    if (in->op == OP_GRAD) {
      diag_error(in->loc, "autodiff: @%s already has gradients (grad sinks); differentiate the forward function",
                 f->name);
      return NULL;
    }
    if (in->op == OP_LOSS) {
      if (loss_sink >= 0) {
        diag_error(in->loc, "autodiff: @%s has a second loss; a model has one scalar loss", f->name);
        return NULL;
      }
      loss_sink = i;
    }
  }
  if (loss_sink < 0) {
    diag_error(f->ninsts ? f->insts[0].loc : SRCLOC_NONE,
               "autodiff: @%s has no loss; did you forget a `loss` statement in the model?", f->name);
    return NULL;
  }

  /* 1. forward copy */
  Func *g = pass_func_new_like(f);
  int32_t *map = bp_xmalloc((size_t)(f->ninsts + 1) * sizeof *map);
  for (int32_t i = 0; i < f->ninsts; i++) {
    Inst in = f->insts[i];
    for (int k = 0; k < in.nargs; k++) in.args[k] = map[in.args[k]];
    in.from = in.from >= 0 && in.from < i ? map[in.from] : -1;
    map[i] = ir_emit(g, &in);
    /* attention's VJP reads its lse, extra 1, which must follow it (ir/verify.c): an
     * earlier pass may have dropped it as unused */
    if (in.op == OP_ATTENTION && !(i + 1 < f->ninsts && f->insts[i + 1].op == OP_EXTRA && f->insts[i + 1].args[0] == i))
      ir_extra(g, map[i], 1, in.loc);
  }
  int32_t nfwd = g->ninsts;
  int32_t loss = g->insts[map[loss_sink]].args[0];
  bp_free(map);

  /* 2. activity */
  AD ad = {g, nfwd, NULL, NULL, -1, NULL};
  ad.adj = bp_xmalloc((size_t)(nfwd + 1) * sizeof *ad.adj);
  ad.active = bp_xmalloc((size_t)(nfwd + 1) * sizeof *ad.active);
  bool *needed = bp_xmalloc((size_t)(nfwd + 1) * sizeof *needed);
  for (int32_t i = 0; i < nfwd; i++) {
    const Inst *in = &g->insts[i];
    ad.adj[i] = -1;
    ad.active[i] = in->op == OP_PARAM;
    for (int k = 0; k < in->nargs; k++) ad.active[i] |= ad.active[in->args[k]];
    if (in->type == TYPE_VOID) ad.active[i] = false;
    needed[i] = i == loss;
  }
  for (int32_t i = nfwd - 1; i >= 0; i--)
    if (needed[i] && !(ir_ops[g->insts[i].op].flags & OPF_SINK))
      for (int k = 0; k < g->insts[i].nargs; k++) needed[g->insts[i].args[k]] = true;
  for (int32_t i = 0; i < nfwd; i++) ad.active[i] = ad.active[i] && needed[i];
  bp_free(needed);

  /* 3. seed and sweep */
  if (ad.active[loss]) {
    ad.from = loss;
    ad.rule = "seed";
    {
      /* dL/dL = the step's loss scale times the micro-batch's weight, read at run time
       * (frame->hyper[BPRT_H_LOSS_SCALE] * frame->grad_weight; 1 for a plain unscaled step:
       * multiplying by 1 is exact, so the gradients are those of a constant seed of 1).
       * Always a leaf, so that every compiled step can accumulate weighted micro-batches. */
      Inst ls = ir_inst(OP_LOSS_SCALE, SRCLOC_NONE);
      ls.type = ir_type_scalar(g->mod, (DType)ty(&ad, loss)->dtype);
      ad.adj[loss] = bw(&ad, ls);
    }
    for (int32_t v = loss; v >= 0; v--) {
      if (ad.adj[v] < 0 || !ad.active[v]) continue;
      Inst in = g->insts[v];   /* a copy: emitting may move g->insts */
      if (in.op == OP_EXTRA) {
        /* attention's lse reaching the loss: attention_bwd has no operand for its adjoint */
        diag_error(in.loc, "autodiff: in @%s, %%%d: the loss depends on the extra result %lld of %%%d = %s, "
                   "which has no derivative", f->name, (int)v, (long long)in.iattr[0], (int)in.args[0],
                   ir_ops[g->insts[in.args[0]].op].name);
        bp_free(ad.adj);
        bp_free(ad.active);
        pass_func_drop(g);
        return NULL;
      }
      VjpFn rule = vjp_rules[in.op];
      if (!rule) continue;
      ad.from = v;
      rule(&ad, v, &in, ad.adj[v]);
    }
  }

  /* 4. one grad per param, in order */
  for (int32_t p = 0; p < nfwd; p++) {
    if (g->insts[p].op != OP_PARAM) continue;
    ad.from = p;
    int32_t gv = ad.adj[p];
    bool unreached = gv < 0;
    if (unreached) {
      ad.rule = "zero";   /* the param does not reach the loss: its gradient is 0 */
      Inst z = ir_inst(OP_CONST, SRCLOC_NONE);
      z.type = g->insts[p].type;
      gv = bw(&ad, z);
      diag_warning(g->insts[p].loc, "parameter '%s' does not affect the loss; the optimizer leaves it unchanged",
                   g->insts[p].name ? g->insts[p].name : "?");
    }
    ad.rule = unreached ? PASS_RULE_UNREACHED : "grad";
    Inst s = ir_inst(OP_GRAD, SRCLOC_NONE);
    s.nargs = 2;
    s.args[0] = p;
    s.args[1] = gv;
    bw(&ad, s);
  }
  bp_free(ad.adj);
  bp_free(ad.active);
  return pass_func_replace(f, g);
}
