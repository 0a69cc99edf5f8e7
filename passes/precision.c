/* passes/precision.c — mixed precision: which values of the training step are 16-bit.
 *
 * `precision bf16` (or f16; train block, --precision) runs this pass on the gradient
 * function after simplification; the forward entry (forward, eval, predict) stays f32.
 * The types are the IR's storage types (ir/ir.h): only a `cast` makes a bf16 or f16
 * value, only a cast or a matrix product reads one, and a product of two 16-bit operands
 * accumulates in f32 and gives f32. The rules, with L the low type (bf16 or f16):
 *
 *   products    c = a @ b            -> c = cast(a, L) @ cast(b, L)
 *               every matmul, matmul_nt and matmul_tn (any rank) with f32 operands.
 *               A value is cast once, and every product that reads it reads that cast:
 *               the bf16 copy of a parameter W serves the forward y = x W and the
 *               backward dx = dy W^T; the copy of dy serves dx and dW. An input is
 *               cast once in forward and once in backward (low_of: its f32 buffer is
 *               there all step, a kept copy would add memory).
 *   kept        v forward, read in backward  -> v16 = cast(v, L) right after v;
 *               backward products read v16 itself, any other backward reader
 *               cast(v16, f32), placed right before it. No backward instruction reads
 *               v, so v dies in forward, and the memory plan keeps v16 at 2 bytes an
 *               element. "Activation" means a value with the batch dim B that a kernel
 *               computes: inputs, parameters and other leaves, and the values below,
 *               stay as they are.
 *   relu mask   relu_grad(x, dy) -> relu_grad(relu(x), dy) where forward has y = relu(x):
 *               y > 0 exactly where x > 0 (a NaN gives 0 in both), so backward reads y,
 *               which it keeps anyway when a product reads it, and the pre-activation x
 *               is no longer kept.
 *   f32         softmax, log_softmax, softmax_xent, the reductions (sum, mean, max,
 *               sum_to), the batch statistics (bn_mean, bn_var: no B dim) and fused
 *               attention (o and lse) keep their f32 results for backward; so does a
 *               value that an output sink returns, or that a backward `eq` (max's
 *               gradient mask: x == max(x) must compare the values max read) or
 *               attention_bwd (its probabilities exp(s - lse) must be the forward's)
 *               reads. Everything except the products computes in f32 as before:
 *               elementwise ops, normalization, losses, convolutions (their kernels
 *               read f32 operands: an activation a convolution's backward reads is kept
 *               in L and cast back, as for any other reader) and the update.
 *   gradients   every product gives f32, so every `grad` sink receives f32: the
 *               parameters (master weights) and the optimizer state stay f32.
 *
 * The casts this adds carry the rule "precision" and the location of the instruction
 * that needed them (the producer of a kept value, else the reader); a backward cast also
 * `from` its reader's forward instruction. Nothing else changes but relu_grad's mask
 * operand: the same instructions, sinks, names and order, in one sweep with an
 * old-to-new id map. */
#include "passes/passes.h"

#include <string.h>

/* Results that stay f32 when backward reads them (see the header comment). */
static bool result_stays_f32(const Func *f, const Inst *in) {
  if (ir_ops[in->op].flags & (OPF_LEAF | OPF_REDUCE | OPF_SINK)) return true;
  switch ((Op)in->op) {
  case OP_SOFTMAX: case OP_LOG_SOFTMAX: case OP_SOFTMAX_XENT: case OP_SUM_TO: case OP_SIZE:
  case OP_BN_MEAN: case OP_BN_VAR: case OP_ATTENTION: case OP_CAST:
    return true;
  case OP_EXTRA: return f->insts[in->args[0]].op == OP_ATTENTION;
  default: return false;
  }
}

/* Backward readers that need the very f32 value the forward computed. */
static bool reads_exact(const Inst *in) { return in->op == OP_EQ || in->op == OP_ATTENTION_BWD; }

static bool is_product(const Inst *in) { return ir_ops[in->op].kind == OPK_PRODUCT; }

static bool has_batch(const TensorType *t) {
  for (int k = 0; k < t->rank; k++)
    if (t->dims[k] == DIM_BATCH) return true;
  return false;
}

/* For each value x, the forward relu(x), or -1. */
static int32_t *relus(Func *f) {
  int32_t n = f->ninsts, *r = bp_xmalloc((size_t)(n ? n : 1) * sizeof *r);
  for (int32_t i = 0; i < n; i++) r[i] = -1;
  for (int32_t i = 0; i < n; i++)
    if (f->insts[i].op == OP_RELU && !(f->insts[i].flags & IF_BACKWARD) && r[f->insts[i].args[0]] < 0)
      r[f->insts[i].args[0]] = i;
  return r;
}

/* Operand k of in as the pass reads it: a backward relu_grad's mask is relu's output
 * where forward has one (the relu mask rule). */
static int32_t operand(const Inst *in, int k, const int32_t *relu_of) {
  int32_t a = in->args[k];
  if (in->op == OP_RELU_GRAD && k == 0 && (in->flags & IF_BACKWARD) && relu_of[a] >= 0) return relu_of[a];
  return a;
}

/* The forward values kept in 16 bits for backward. */
static bool *kept_low(Func *f, const int32_t *relu_of) {
  int32_t n = f->ninsts;
  bool *bwd = bp_xmalloc((size_t)(n ? n : 1)), *pinned = bp_xmalloc((size_t)(n ? n : 1));
  memset(bwd, 0, (size_t)(n ? n : 1));
  memset(pinned, 0, (size_t)(n ? n : 1));
  for (int32_t i = 0; i < n; i++) {
    const Inst *in = &f->insts[i];
    if (in->op == OP_OUTPUT || in->op == OP_LOSS) pinned[in->args[0]] = true;
    if (!(in->flags & IF_BACKWARD) || (ir_ops[in->op].flags & OPF_SINK) || in->op == OP_SIZE) continue;
    for (int k = 0; k < in->nargs; k++) {
      int32_t a = operand(in, k, relu_of);
      bwd[a] = true;
      if (reads_exact(in)) pinned[a] = true;
    }
  }
  for (int32_t i = 0; i < n; i++) {
    const Inst *in = &f->insts[i];
    const TensorType *t = ir_vtype(f, i);
    bwd[i] = bwd[i] && !pinned[i] && !(in->flags & IF_BACKWARD) && !result_stays_f32(f, in) && t->dtype == DT_F32 &&
             has_batch(t);
  }
  bp_free(pinned);
  return bwd;
}

typedef struct {
  Func *g;
  DType low;
  int32_t *map;    /* old id -> new id */
  int32_t *lowof;  /* old id -> its 16-bit cast in g, or -1 */
  int32_t *lowof_bwd;  /* an input's cast for backward products, or -1 */
} Prec;

/* cast(x, dt) in g for the instruction `at` (its location and call; backward if it is,
 * then `from` its forward instruction). */
static int32_t emit_cast(Func *g, int32_t x, DType dt, const Inst *at, int32_t from) {
  const TensorType *t = ir_vtype(g, x);
  Inst c = ir_inst(OP_CAST, at->loc);
  c.nargs = 1;
  c.args[0] = x;
  c.type = ir_type(g->mod, dt, t->rank, t->dims);
  c.call = at->call;
  c.flags = at->flags & IF_BACKWARD;
  c.rule = "precision";
  c.from = c.flags & IF_BACKWARD ? from : -1;
  return ir_emit(g, &c);
}

/* The cast of old value v to the low type: made at its first use, then shared. An input
 * has one cast in forward and one in backward: its f32 buffer is the caller's, there all
 * step, so keeping its 16-bit copy from forward to backward would only add memory. */
static int32_t low_of(Prec *p, int32_t v, const Inst *at, int32_t from) {
  int32_t *slot = p->g->insts[p->map[v]].op == OP_INPUT && (at->flags & IF_BACKWARD) ? &p->lowof_bwd[v] : &p->lowof[v];
  if (*slot < 0) *slot = emit_cast(p->g, p->map[v], p->low, at, from);
  return *slot;
}

Func *pass_precision(Func *f, DType low) {
  if (!ir_dtype_is_low(low)) return f;
  int32_t n = f->ninsts;
  size_t sz = (size_t)(n ? n : 1);
  int32_t *relu_of = relus(f);
  bool *kept = kept_low(f, relu_of);
  Prec p = {pass_func_new_like(f), low, bp_xmalloc(sz * sizeof(int32_t)), bp_xmalloc(sz * sizeof(int32_t)),
            bp_xmalloc(sz * sizeof(int32_t))};
  p.g->cse = false;   /* the function keeps its instructions as they are; low_of shares the casts */
  for (int32_t i = 0; i < n; i++) p.map[i] = p.lowof[i] = p.lowof_bwd[i] = -1;
  for (int32_t i = 0; i < n; i++) {
    Inst in = f->insts[i];
    bool bwd = in.flags & IF_BACKWARD, sink = ir_ops[in.op].flags & OPF_SINK;
    int32_t from = in.from >= 0 && in.from < i ? p.map[in.from] : -1;
    for (int k = 0; k < in.nargs; k++) {
      int32_t a = operand(&f->insts[i], k, relu_of);
      if (is_product(&in) && ir_vtype(f, a)->dtype == DT_F32)
        in.args[k] = low_of(&p, a, &in, from);
      else if (kept[a] && bwd && !sink && in.op != OP_SIZE)   /* its own f32 copy, right before it */
        in.args[k] = emit_cast(p.g, p.lowof[a], DT_F32, &in, from);
      else
        in.args[k] = p.map[a];
    }
    in.from = from;
    p.map[i] = ir_emit(p.g, &in);
    if (kept[i]) low_of(&p, i, &f->insts[i], -1);   /* right after the producer, in forward */
  }
  /* the gradients stay f32: every product gives f32, and nothing else reads 16 bits */
  for (int32_t i = 0; i < p.g->ninsts; i++) {
    const Inst *in = &p.g->insts[i];
    if (in->op == OP_GRAD && ir_vtype(p.g, in->args[1])->dtype != ir_vtype(p.g, in->args[0])->dtype)
      ir_die("precision: the gradient of %%%d is %s", in->args[0], ir_dtype_name((DType)ir_vtype(p.g, in->args[1])->dtype));
  }
  bp_free(kept);
  bp_free(relu_of);
  bp_free(p.map);
  bp_free(p.lowof);
  bp_free(p.lowof_bwd);
  return pass_func_replace(f, p.g);
}
