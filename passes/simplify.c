/* passes/simplify.c — CSE, DCE, constant folding and algebraic rewrite rules.
 *
 * The one idea (tinygrad): simplification is a table of small named rewrite rules,
 * each with its algebra in a comment, applied while the function is rebuilt.
 *
 * Steps:
 *   1. Sweep: rebuild the function in order through ir_emit with an old-to-new id map.
 *      Before an instruction is emitted, its operands (already rebuilt, so already
 *      simplified) are matched by each rule in the table; the first that fires gives
 *      the replacement value. Helper instructions a rule builds go through the same
 *      rules (bounded recursion). Hash-consing in ir_emit is the CSE (operands keep
 *      their order, so the IR reads in the order the source was written).
 *   2. DCE: keep sinks, inputs, params (their order is the calling convention) and
 *      what sinks use; rebuild without the rest.
 *   3. Repeat 1-2 until nothing fires and nothing is removed (at most SIMP_MAX_ROUNDS).
 * A rewritten instruction keeps its location, flags and `from`; a new instruction gets
 * the rule name of the instruction it replaces, or the name of the rewrite rule when it
 * had none (forward code), so the printed IR says which rule produced it.
 *
 * The softmax-CE rule runs on forward code before autodiff (pass_canonicalize) and
 * turns cross-entropy of a softmax into softmax_xent, whose VJP is softmax - onehot;
 * the attention rule, likewise on forward code, turns the unfused spelling of
 * attention into the fused op (one kernel forward, one backward).
 */
#include "passes/passes.h"

#include <math.h>
#include <string.h>

#define SIMP_MAX_ROUNDS 16
#define SIMP_MAX_DEPTH 48

typedef struct {
  Func *g;            /* the function being rebuilt */
  const PassOptions *opt;
  int depth;
  int fired;          /* rules that fired this round */
  int32_t *uses;      /* uses[v], v of g: the operand slots of the source that name a value
                         mapped to v, so far in the sweep (0 for what rules built) */
  int32_t capuses;
} Simp;

typedef int32_t (*RuleFn)(Simp *s, const Inst *in);

typedef struct {
  const char *name;
  RuleFn fn;
} Rule;

static int32_t simp_emit(Simp *s, Inst in);

/* ------------------------------------------------------------------ helpers */

static const Inst *at(Simp *s, int32_t v) { return &s->g->insts[v]; }
static const TensorType *vty(Simp *s, int32_t v) { return ir_vtype(s->g, v); }
static bool is_const(Simp *s, int32_t v) { return at(s, v)->op == OP_CONST; }
static bool is_const_val(Simp *s, int32_t v, double c) { return is_const(s, v) && at(s, v)->fattr[0] == c; }

/* An instruction like `base` (location, call site, flags, from, rule) with a new op and
 * operands. It is named after `rule` when base has no rule of its own. */
static Inst like(const Inst *base, Op op, int nargs, int32_t a, int32_t b, const char *rule) {
  Inst in = ir_inst(op, base->loc);
  in.call = base->call;
  in.flags = base->flags;
  in.from = base->from;
  in.rule = base->rule ? base->rule : rule;
  in.nargs = (uint8_t)nargs;
  in.args[0] = a;
  in.args[1] = b;
  return in;
}

static int32_t mk_const(Simp *s, const Inst *base, double v, TypeId t, const char *rule) {
  Inst in = like(base, OP_CONST, 0, 0, 0, rule);
  const TensorType *tt = ir_type_get(s->g->mod, t);
  in.fattr[0] = tt->dtype == DT_F32 ? (double)(float)v : v;   /* what an f32 machine holds */
  in.type = t;
  return simp_emit(s, in);
}

static int32_t mk_to(Simp *s, const Inst *base, Op op, int32_t a, TypeId t, const char *rule) {
  if (s->g->insts[a].type == t) return a;
  Inst in = like(base, op, 1, a, 0, rule);
  in.type = t;
  return simp_emit(s, in);
}

static bool all_ones_or_scalar(const TensorType *t) {
  for (int i = 0; i < t->rank; i++)
    if (t->dims[i] != 1) return false;
  return true;
}

/* x, made to have type t (x's type broadcasts to t): x itself or broadcast(x). */
static int32_t as_type(Simp *s, const Inst *base, int32_t x, TypeId t, const char *rule) {
  return mk_to(s, base, OP_BROADCAST, x, t, rule);
}

/* True if x broadcast against type t gives exactly t. */
static bool fits(Simp *s, int32_t x, TypeId t) {
  TensorType r;
  const TensorType *tt = ir_type_get(s->g->mod, t);
  if (!ir_broadcast_shape(vty(s, x), tt, &r)) return false;
  return r.rank == tt->rank && memcmp(r.dims, tt->dims, sizeof r.dims) == 0;
}

/* ------------------------------------------------------------------ the rules */

/* fold: u(const a) -> const u(a);  const a op const b -> const (a op b);
 * reshape(const a) -> const a  (a const is one value filled over its type, so this
 * holds for any shapes) */
static int32_t r_fold(Simp *s, const Inst *in) {
  unsigned fl = ir_ops[in->op].flags;
  if (in->op == OP_RESHAPE && is_const(s, in->args[0]))
    return mk_const(s, in, at(s, in->args[0])->fattr[0], in->type, "fold");
  if (!(fl & OPF_EW)) return -1;
  for (int k = 0; k < in->nargs; k++)
    if (!is_const(s, in->args[k])) return -1;
  double v = in->nargs == 1 ? ir_eval_unary((Op)in->op, at(s, in->args[0])->fattr[0], in->fattr[0])
                            : ir_eval_binary((Op)in->op, at(s, in->args[0])->fattr[0], at(s, in->args[1])->fattr[0]);
  return mk_const(s, in, v, in->type, "fold");
}

/* size.static: size(x, axis) -> const n when the counted dims do not involve B */
static int32_t r_size_static(Simp *s, const Inst *in) {
  if (in->op != OP_SIZE) return -1;
  const TensorType *t = vty(s, in->args[0]);
  double n = 1;
  for (int i = 0; i < t->rank; i++) {   /* every dim of the type, as the interpreter counts */
    if (in->iattr[0] != IR_AXIS_ALL && i != in->iattr[0]) continue;
    if (t->dims[i] == DIM_BATCH) return -1;
    n *= (double)t->dims[i];
  }
  return mk_const(s, in, n, in->type, "size.static");
}

/* mul.one: x * 1 -> x,  1 * x -> x  (broadcast to the result type if x is smaller) */
static int32_t r_mul_one(Simp *s, const Inst *in) {
  if (in->op != OP_MUL) return -1;
  for (int k = 0; k < 2; k++)
    if (is_const_val(s, in->args[k], 1.0)) return as_type(s, in, in->args[1 - k], in->type, "mul.one");
  return -1;
}

/* mul.zero: x * 0 -> 0, only where x is finite by construction (0 * inf is nan):
 * x is a finite constant, a size, or the result of onehot, eq, sign, sigmoid, tanh,
 * softmax or dropout_mask, all bounded. */
static bool finite_by_construction(Simp *s, int32_t v) {
  const Inst *x = at(s, v);
  switch ((Op)x->op) {
  case OP_CONST: return isfinite(x->fattr[0]);
  case OP_SIZE: case OP_ONEHOT: case OP_EQ: case OP_SIGN: case OP_SIGMOID: case OP_TANH:
  case OP_SOFTMAX: case OP_DROPOUT_MASK:
    return true;
  default:
    return false;
  }
}

static int32_t r_mul_zero(Simp *s, const Inst *in) {
  if (in->op != OP_MUL) return -1;
  for (int k = 0; k < 2; k++)
    if (is_const_val(s, in->args[k], 0.0) && finite_by_construction(s, in->args[1 - k]))
      return mk_const(s, in, 0.0, in->type, "mul.zero");
  return -1;
}

/* add.zero: x + 0 -> x,  0 + x -> x */
static int32_t r_add_zero(Simp *s, const Inst *in) {
  if (in->op != OP_ADD) return -1;
  for (int k = 0; k < 2; k++)
    if (is_const_val(s, in->args[k], 0.0)) return as_type(s, in, in->args[1 - k], in->type, "add.zero");
  return -1;
}

/* sub.zero: x - 0 -> x;  0 - x -> -x */
static int32_t r_sub_zero(Simp *s, const Inst *in) {
  if (in->op != OP_SUB) return -1;
  if (is_const_val(s, in->args[1], 0.0)) return as_type(s, in, in->args[0], in->type, "sub.zero");
  if (is_const_val(s, in->args[0], 0.0) && at(s, in->args[1])->type == in->type)
    return simp_emit(s, like(in, OP_NEG, 1, in->args[1], 0, "sub.zero"));
  return -1;
}

/* div.one: x / 1 -> x */
static int32_t r_div_one(Simp *s, const Inst *in) {
  if (in->op != OP_DIV || !is_const_val(s, in->args[1], 1.0)) return -1;
  return as_type(s, in, in->args[0], in->type, "div.one");
}

/* neg.neg: -(-x) -> x */
static int32_t r_neg_neg(Simp *s, const Inst *in) {
  if (in->op != OP_NEG || at(s, in->args[0])->op != OP_NEG) return -1;
  return at(s, in->args[0])->args[0];
}

/* neg.mul_const: -(c * x) -> (-c) * x,  -(x * c) -> x * (-c) */
static int32_t r_neg_mul_const(Simp *s, const Inst *in) {
  if (in->op != OP_NEG) return -1;
  const Inst *m = at(s, in->args[0]);
  if (m->op != OP_MUL) return -1;
  for (int k = 0; k < 2; k++) {
    int32_t c = m->args[k], x = m->args[1 - k];
    if (!is_const(s, c)) continue;
    int32_t nc = mk_const(s, in, -at(s, c)->fattr[0], at(s, c)->type, "neg.mul_const");
    return simp_emit(s, like(in, OP_MUL, 2, nc, x, "neg.mul_const"));
  }
  return -1;
}

/* neg.reduce: -sum(-x) -> sum(x), -mean(-x) -> mean(x)  (both are linear) */
static int32_t r_neg_reduce(Simp *s, const Inst *in) {
  if (in->op != OP_NEG) return -1;
  const Inst *r = at(s, in->args[0]);
  if ((r->op != OP_SUM && r->op != OP_MEAN) || at(s, r->args[0])->op != OP_NEG) return -1;
  Inst n = *r;
  n.args[0] = at(s, r->args[0])->args[0];
  n.loc = in->loc;
  n.call = in->call;
  n.flags = in->flags;
  n.from = in->from;
  n.rule = in->rule ? in->rule : r->rule ? r->rule : "neg.reduce";
  return simp_emit(s, n);
}

/* transpose.transpose: transpose(transpose(x, p1), p2) -> transpose(x, c), c[d] = p1[p2[d]]
 * (y = transpose(x, p1) has y.dims[d] = x.dims[p1[d]], so z = transpose(y, p2) has
 * z.dims[d] = x.dims[p1[p2[d]]], element for element), and -> x when c is the identity:
 * (x^T)^T = x, a permutation and its inverse */
static int32_t r_transpose_transpose(Simp *s, const Inst *in) {
  if (in->op != OP_TRANSPOSE || at(s, in->args[0])->op != OP_TRANSPOSE) return -1;
  const Inst *inner = at(s, in->args[0]);
  int32_t x = inner->args[0];
  int r = vty(s, x)->rank, p1[4], p2[4], c[4];
  if (!ir_transpose_perm(inner, r, p1) || !ir_transpose_perm(in, r, p2)) return -1;
  bool identity = true;
  for (int d = 0; d < r; d++) {
    c[d] = p1[p2[d]];
    identity = identity && c[d] == d;
  }
  if (identity) return x;
  Inst t = like(in, OP_TRANSPOSE, 1, x, 0, "transpose.transpose");
  t.iattr[0] = ir_transpose_code(r, c);
  return simp_emit(s, t);
}

/* to.same: broadcast(x) : T, sum_to(x) : T, reshape(x) : T -> x when x already has type T */
static int32_t r_to_same(Simp *s, const Inst *in) {
  if ((in->op != OP_BROADCAST && in->op != OP_SUM_TO && in->op != OP_RESHAPE) || at(s, in->args[0])->type != in->type)
    return -1;
  return in->args[0];
}

/* reshape.reshape: reshape(reshape(x)) : T -> reshape(x) : T  (row-major order is kept by both) */
static int32_t r_reshape_reshape(Simp *s, const Inst *in) {
  if (in->op != OP_RESHAPE || at(s, in->args[0])->op != OP_RESHAPE) return -1;
  return mk_to(s, in, OP_RESHAPE, at(s, in->args[0])->args[0], in->type, "reshape.reshape");
}

/* reshape.bcast: reshape(broadcast(s)) : T -> broadcast(s) : T for s of all-1 dims (a
 * scalar): every element is s, in any shape */
static int32_t r_reshape_bcast(Simp *s, const Inst *in) {
  if (in->op != OP_RESHAPE || at(s, in->args[0])->op != OP_BROADCAST) return -1;
  int32_t x = at(s, in->args[0])->args[0];
  if (!all_ones_or_scalar(vty(s, x)) || !fits(s, x, in->type)) return -1;
  return mk_to(s, in, OP_BROADCAST, x, in->type, "reshape.bcast");
}

/* bcast.bcast: broadcast(broadcast(x)) -> broadcast(x) */
static int32_t r_bcast_bcast(Simp *s, const Inst *in) {
  if (in->op != OP_BROADCAST || at(s, in->args[0])->op != OP_BROADCAST) return -1;
  int32_t x = at(s, in->args[0])->args[0];
  if (!fits(s, x, in->type)) return -1;
  return mk_to(s, in, OP_BROADCAST, x, in->type, "bcast.bcast");
}

/* bcast.hoist: u(broadcast(x)) -> broadcast(u(x)) for elementwise unary u: compute u
 * on the small tensor (a scalar seed of a mean, most often) */
static int32_t r_bcast_hoist(Simp *s, const Inst *in) {
  if (!(ir_ops[in->op].flags & OPF_EW) || in->nargs != 1 || at(s, in->args[0])->op != OP_BROADCAST) return -1;
  Inst u = *in;
  u.args[0] = at(s, in->args[0])->args[0];
  u.rule = in->rule ? in->rule : "bcast.hoist";
  int32_t small = simp_emit(s, u);
  return mk_to(s, in, OP_BROADCAST, small, in->type, "bcast.hoist");
}

/* bcast.fold: a op broadcast(x) -> a op x for a broadcasting elementwise op, when the
 * result type stays the same (the op broadcasts by itself) */
static int32_t r_bcast_fold(Simp *s, const Inst *in) {
  if (!(ir_ops[in->op].flags & OPF_EW) || in->nargs != 2 || (ir_ops[in->op].flags & OPF_ACT_GRAD)) return -1;
  for (int k = 0; k < 2; k++) {
    const Inst *b = at(s, in->args[k]);
    if (b->op != OP_BROADCAST) continue;
    TensorType r;
    const TensorType *tx = vty(s, b->args[0]), *to = vty(s, in->args[1 - k]);
    const TensorType *tt = ir_type_get(s->g->mod, in->type);
    if (!ir_broadcast_shape(tx, to, &r) || r.rank != tt->rank || memcmp(r.dims, tt->dims, sizeof r.dims) != 0)
      continue;
    Inst n = *in;
    n.args[k] = b->args[0];
    return simp_emit(s, n);
  }
  return -1;
}

/* transpose.bcast: broadcast(s)^T -> broadcast(s) for s of all-1 dims (a scalar) */
static int32_t r_transpose_bcast(Simp *s, const Inst *in) {
  if (in->op != OP_TRANSPOSE || at(s, in->args[0])->op != OP_BROADCAST) return -1;
  int32_t x = at(s, in->args[0])->args[0];
  if (!all_ones_or_scalar(vty(s, x)) || !fits(s, x, in->type)) return -1;
  return mk_to(s, in, OP_BROADCAST, x, in->type, "transpose.bcast");
}

/* pow.one: x^1 -> x */
static int32_t r_pow_one(Simp *s, const Inst *in) {
  (void)s;
  if (in->op != OP_POW || in->fattr[0] != 1.0) return -1;
  return in->args[0];
}

/* log_softmax: log(softmax(z, axis)) -> log_softmax(z, axis), the stable form */
static int32_t r_log_softmax(Simp *s, const Inst *in) {
  if (!s->opt->log_softmax || in->op != OP_LOG || at(s, in->args[0])->op != OP_SOFTMAX) return -1;
  const Inst *sm = at(s, in->args[0]);
  Inst n = like(in, OP_LOG_SOFTMAX, 1, sm->args[0], 0, "log_softmax");
  n.iattr[0] = sm->iattr[0];
  return simp_emit(s, n);
}

/* softmax_xent: cross-entropy of a softmax, in the forward loss, with y a label[...,C]
 * and z f32[...,C] of one shape, the classes on the last axis c ([B,C]: c = 1, one row
 * per example; [B,T,V]: c = 2, one row per position), after log_softmax above
 * (log(softmax(z)) is log_softmax(z)):
 *   sum(onehot(y) * log_softmax(z, c), axis=c)   -> -softmax_xent(z, y)            [...]
 *   mean(onehot(y) * log_softmax(z, c), axis=c)  -> -softmax_xent(z, y) * (1/C)    [...]
 *   sum(onehot(y) * log_softmax(z, c))  (all)    -> -sum(softmax_xent(z, y))       []
 *   mean(onehot(y) * log_softmax(z, c)) (all)    -> -mean(softmax_xent(z, y)) / C  []
 * (either operand order; keep=1 gives the same values with 1-dims), because row r of
 * onehot(y) * log_softmax(z) is log softmax(z)[r, y_r] at y_r and 0 elsewhere, and
 * softmax_xent(z, y)[r] = -log softmax(z)[r, y_r]. Then d/dz = (softmax(z) - onehot(y))
 * * scale: for the loss -mean(sum(..., axis=c)) of [B,T,V] logits, scale = 1/(B*T), one
 * over the number of positions. It does not fire for a sigmoid (no log_softmax), a
 * target that is not onehot of a label (an f32 tensor), or a softmax or sum over
 * another axis than the classes. */
static int32_t r_softmax_xent(Simp *s, const Inst *in) {
  if (!s->opt->softmax_xent || (in->flags & IF_BACKWARD) || (in->op != OP_SUM && in->op != OP_MEAN)) return -1;
  int64_t axis = in->iattr[0];
  bool keep = in->iattr[1] != 0;
  const Inst *m = at(s, in->args[0]);
  int64_t cax = (int64_t)vty(s, in->args[0])->rank - 1;   /* the classes' axis */
  if (cax < 1 || (axis != cax && axis != IR_AXIS_ALL)) return -1;
  if (m->op != OP_MUL) return -1;
  int32_t oh = -1, ls = -1;
  for (int k = 0; k < 2; k++)
    if (at(s, m->args[k])->op == OP_ONEHOT && at(s, m->args[1 - k])->op == OP_LOG_SOFTMAX) {
      oh = m->args[k];
      ls = m->args[1 - k];
    }
  if (oh < 0) return -1;
  int32_t y = at(s, oh)->args[0], z = at(s, ls)->args[0];
  const TensorType *tz = vty(s, z), *ty = vty(s, y);
  /* classes on the last axis, the same [...,C] for logits, labels and the product */
  bool same = at(s, ls)->iattr[0] == cax && tz->rank == cax + 1 && ty->rank == cax + 1 && ty->dtype == DT_LABEL &&
              at(s, z)->type == m->type && at(s, oh)->type == m->type;
  for (int i = 0; same && i <= cax; i++) same = tz->dims[i] == ty->dims[i];
  if (!same) return -1;
  int64_t classes = tz->dims[cax];
  Module *mod = s->g->mod;
  DType dt = (DType)tz->dtype;
  const char *R = "softmax_xent";

  Inst base = *in;
  base.rule = R;   /* every instruction of the rewrite names the rule */
  int32_t xent = simp_emit(s, like(&base, OP_SOFTMAX_XENT, 2, z, y, R));          /* [...] */
  int32_t r;
  if (axis == cax) {
    r = simp_emit(s, like(&base, OP_NEG, 1, xent, 0, R));
  } else {
    Inst red = like(&base, in->op, 1, xent, 0, R);
    red.iattr[0] = IR_AXIS_ALL;
    r = simp_emit(s, like(&base, OP_NEG, 1, simp_emit(s, red), 0, R));        /* [] */
  }
  if (in->op == OP_MEAN) {
    int32_t c = mk_const(s, &base, 1.0 / (double)classes, ir_type_scalar(mod, dt), R);
    r = simp_emit(s, like(&base, OP_MUL, 2, r, c, R));
  }
  if (keep)   /* axis c: [...] -> [...,1] (the same elements); all: [] -> [1,...,1] */
    r = mk_to(s, &base, axis == cax ? OP_RESHAPE : OP_BROADCAST, r, in->type, R);
  return r;
}

/* attention: the unfused spelling of scaled-dot-product attention, in forward code,
 *   softmax(scale * (q @ transpose(k)) [+ causal_mask(T)], axis = -1) @ v
 * -> attention(q, k, v, causal, scale), its lse (extra 1) right after it, so that the
 * fused kernel computes it (no [T,S] probabilities in memory) and autodiff uses
 * attention's rule. The algebra: with s = scale q k^T + mask (mask_ij = 0 for j <= i,
 * -inf for j > i: exactly causal_mask's values),
 *   (softmax(s) v)_i = sum_j exp(s_ij) v_j / sum_j exp(s_ij) = attention's o_i
 * for q[...,T,dh], k[...,S,dh], v[...,S,dv] of rank 3 or 4 with equal leading dims.
 * Spellings matched: the scale as `c * x`, `x * c` or `x / c` (scale 1/c) for a scalar
 * constant c > 0 (a positive scale keeps -inf masked entries -inf), or no scale; the
 * mask added on either side, before or after the scale; q @ transpose(k) (a swap of
 * the last two dims) or matmul_nt(q, k). Only when the probabilities have no other use
 * in the source (their one use is this product): otherwise the [T,S] value stays
 * anyway and fusing would compute the scores twice. Not for a mask other than
 * causal_mask, broadcast leading dims, or a softmax over another axis. */
static bool scalar_const(Simp *s, int32_t v, double *c) {
  if (!is_const(s, v) || !all_ones_or_scalar(vty(s, v))) return false;
  *c = at(s, v)->fattr[0];
  return true;
}

static bool swaps_last_two(const Inst *t, int rank) {
  int perm[4];
  if (t->op != OP_TRANSPOSE || !ir_transpose_perm(t, rank, perm)) return false;
  for (int d = 0; d < rank - 2; d++)
    if (perm[d] != d) return false;
  return perm[rank - 2] == rank - 1 && perm[rank - 1] == rank - 2;
}

static int32_t r_attention(Simp *s, const Inst *in) {
  if (!s->opt->fuse_attention || (in->flags & IF_BACKWARD) || in->op != OP_MATMUL) return -1;
  int32_t p = in->args[0], v = in->args[1];
  const Inst *sm = at(s, p);
  int r = vty(s, p)->rank;
  if (sm->op != OP_SOFTMAX || r < 3 || r > 4 || sm->iattr[0] != r - 1 || !s->uses || p >= s->capuses ||
      s->uses[p] != 1)
    return -1;
  /* peel the scale and the mask off the scores */
  int32_t x = sm->args[0];
  double scale = 1, c;
  bool scaled = false, causal = false;
  int32_t mask = -1;
  for (int step = 0; step < 2; step++) {
    const Inst *e = at(s, x);
    int32_t next = -1;
    if (!scaled && e->op == OP_MUL) {
      for (int k = 0; k < 2 && next < 0; k++)
        if (scalar_const(s, e->args[k], &c) && at(s, e->args[1 - k])->type == e->type) {
          next = e->args[1 - k];
          scale = c;
        }
      scaled = next >= 0;
    } else if (!scaled && e->op == OP_DIV && scalar_const(s, e->args[1], &c) && at(s, e->args[0])->type == e->type) {
      next = e->args[0];
      scale = 1 / c;
      scaled = true;
    } else if (!causal && e->op == OP_ADD) {
      for (int k = 0; k < 2 && next < 0; k++)
        if (at(s, e->args[k])->op == OP_CAUSAL_MASK && at(s, e->args[1 - k])->type == e->type) {
          next = e->args[1 - k];
          mask = e->args[k];
        }
      causal = next >= 0;
    }
    if (next < 0) break;
    x = next;
  }
  if (!(scale > 0) || !isfinite(scale)) return -1;
  /* the scores: q @ transpose(k) or matmul_nt(q, k) */
  const Inst *qk = at(s, x);
  int32_t q, k;
  if (qk->op == OP_MATMUL_NT) {
    q = qk->args[0];
    k = qk->args[1];
  } else if (qk->op == OP_MATMUL && swaps_last_two(at(s, qk->args[1]), vty(s, qk->args[1])->rank)) {
    q = qk->args[0];
    k = at(s, qk->args[1])->args[0];
  } else {
    return -1;
  }
  if (qk->iattr[0] != 0) return -1;
  /* q, k, v of one rank, one dtype and equal leading dims (attention does not broadcast) */
  const TensorType *tq = vty(s, q), *tk = vty(s, k), *tv = vty(s, v), *ts = vty(s, x);
  if (tq->rank != r || tk->rank != r || tv->rank != r || tq->dtype != tk->dtype || tq->dtype != tv->dtype) return -1;
  for (int d = 0; d < r - 2; d++)
    if (tk->dims[d] != tq->dims[d] || tv->dims[d] != tq->dims[d]) return -1;
  /* the mask is [T,T] with T the scores' rows and columns (broadcasting could also
   * add a [1,T] or [T,1] mask: not causal attention) */
  if (causal && (ts->dims[r - 2] != ts->dims[r - 1] || vty(s, mask)->rank != 2 || vty(s, mask)->dims[0] != ts->dims[r - 2]))
    return -1;
  const char *R = "attention";
  Inst a = like(in, OP_ATTENTION, 3, q, k, R);
  a.args[2] = v;
  a.iattr[0] = causal;
  a.fattr[0] = scale;
  char err[256];
  if (ir_infer_type(s->g, &a, err, sizeof err) != in->type) return -1;   /* dims that attention does not take */
  int32_t o = simp_emit(s, a);
  Inst e = like(in, OP_EXTRA, 1, o, 0, R);
  e.iattr[0] = 1;
  simp_emit(s, e);
  return o;
}

/* The rule table, in the order rules are tried. */
static const Rule rules[] = {
    {"fold", r_fold},
    {"size.static", r_size_static},
    {"to.same", r_to_same},
    {"mul.one", r_mul_one},
    {"mul.zero", r_mul_zero},
    {"add.zero", r_add_zero},
    {"sub.zero", r_sub_zero},
    {"div.one", r_div_one},
    {"neg.neg", r_neg_neg},
    {"neg.mul_const", r_neg_mul_const},
    {"neg.reduce", r_neg_reduce},
    {"pow.one", r_pow_one},
    {"transpose.transpose", r_transpose_transpose},
    {"transpose.bcast", r_transpose_bcast},
    {"reshape.reshape", r_reshape_reshape},
    {"reshape.bcast", r_reshape_bcast},
    {"bcast.bcast", r_bcast_bcast},
    {"bcast.hoist", r_bcast_hoist},
    {"bcast.fold", r_bcast_fold},
    {"log_softmax", r_log_softmax},
    {"softmax_xent", r_softmax_xent},
    {"attention", r_attention},
};

/* ------------------------------------------------------------------ sweep, CSE, DCE */

/* Apply the first rule that fires, else emit (hash-consing merges duplicates). */
static int32_t simp_emit(Simp *s, Inst in) {
  unsigned fl = ir_ops[in.op].flags;
  if (!(fl & (OPF_LEAF | OPF_SINK)) && s->depth < SIMP_MAX_DEPTH) {
    /* ill-typed input is the verifier's to report, not a rule's to rewrite */
    char err[256];
    TypeId t = ir_infer_type(s->g, &in, err, sizeof err);
    if (t != TYPE_VOID) {
      in.type = t;
      s->depth++;
      for (size_t r = 0; r < sizeof rules / sizeof rules[0]; r++) {
        int32_t v = rules[r].fn(s, &in);
        if (v < 0) continue;
        s->depth--;
        s->fired++;
        if (s->g->insts[v].type != t)
          ir_die("simplify: rule %s changed the type of %s", rules[r].name, ir_ops[in.op].name);
        return v;
      }
      s->depth--;
    }
  }
  return ir_emit(s->g, &in);
}

/* One sweep of src into a new function. */
static Func *sweep(Func *src, const PassOptions *opt, int *fired) {
  Simp s = {pass_func_new_like(src), opt, 0, 0, NULL, 0};
  int32_t *map = bp_xmalloc((size_t)(src->ninsts + 1) * sizeof *map);
  int32_t *src_uses = ir_use_counts(src);
  for (int32_t i = 0; i < src->ninsts; i++) {
    Inst in = src->insts[i];
    for (int k = 0; k < in.nargs; k++) in.args[k] = map[in.args[k]];
    in.from = in.from >= 0 && in.from < i ? map[in.from] : -1;
    map[i] = simp_emit(&s, in);
    if (map[i] >= s.capuses) {   /* grow, zeroed: values rules built have no source uses */
      int32_t cap = s.capuses ? s.capuses : 64;
      while (cap <= map[i]) cap *= 2;
      s.uses = bp_xrealloc(s.uses, (size_t)cap * sizeof *s.uses);
      memset(s.uses + s.capuses, 0, (size_t)(cap - s.capuses) * sizeof *s.uses);
      s.capuses = cap;
    }
    s.uses[map[i]] += src_uses[i];
  }
  bp_free(src_uses);
  bp_free(s.uses);
  bp_free(map);
  *fired = s.fired;
  return s.g;
}

/* Dead-code elimination into a new function. */
static Func *dce(Func *src, int *removed) {
  bool *live = bp_xmalloc((size_t)(src->ninsts + 1) * sizeof *live);
  for (int32_t i = 0; i < src->ninsts; i++) {
    const Inst *in = &src->insts[i];
    live[i] = (ir_ops[in->op].flags & OPF_SINK) || in->op == OP_INPUT || in->op == OP_PARAM || in->op == OP_BUFFER;
  }
  for (int32_t i = src->ninsts - 1; i >= 0; i--)
    if (live[i])
      for (int k = 0; k < src->insts[i].nargs; k++) live[src->insts[i].args[k]] = true;
  /* an extra lives with its producer, used or not: the producer's kernel writes it
   * (attention's lse in an inference entry, attention_bwd's dk of a constant k) */
  for (int32_t i = 0; i < src->ninsts; i++)
    if (src->insts[i].op == OP_EXTRA && live[src->insts[i].args[0]]) live[i] = true;
  Func *g = pass_func_new_like(src);
  int32_t *map = bp_xmalloc((size_t)(src->ninsts + 1) * sizeof *map);
  *removed = 0;
  for (int32_t i = 0; i < src->ninsts; i++) {
    map[i] = -1;
    if (!live[i]) {
      (*removed)++;
      continue;
    }
    Inst in = src->insts[i];
    for (int k = 0; k < in.nargs; k++) in.args[k] = map[in.args[k]];
    in.from = in.from >= 0 && in.from < i ? map[in.from] : -1;
    map[i] = ir_emit(g, &in);
  }
  bp_free(map);
  bp_free(live);
  return g;
}

static Func *simplify(Func *f, const PassOptions *opt) {
  Func *cur = f;
  for (int round = 0; round < SIMP_MAX_ROUNDS; round++) {
    int fired = 0, removed = 0;
    Func *swept = sweep(cur, opt, &fired);
    Func *next = dce(swept, &removed);
    pass_func_drop(swept);
    bool same = next->ninsts == cur->ninsts;
    if (cur != f) pass_func_drop(cur);
    cur = next;
    if (!fired && !removed && same) break;
  }
  return pass_func_replace(f, cur);
}

Func *pass_simplify(Func *f, const PassOptions *opt) { return simplify(f, opt); }

Func *pass_canonicalize(Func *f, const PassOptions *opt) { return simplify(f, opt); }
