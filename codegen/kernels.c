/* codegen/kernels.c — one loop nest per kernel.
 *
 * A kernel is a group of instructions (passes/ decide the grouping). Elementwise
 * groups share one loop over their common result shape: the last dim is the vector
 * dim (cg_vloop: <W x float> then a scalar tail), outer dims are plain loops, and each
 * operand from outside the group is read with its broadcast strides (stride 0 on a
 * broadcast dim; on the vector dim stride 0 is a splat of one element). When every
 * operand is either the full shape or a single element the nest collapses to one loop
 * over all elements. Members read each other's results from registers.
 * 16-bit values (bf16, f16: only a cast makes them, only a cast or a product reads
 * them) are widened to f32 on load (gemm_lowp.c: bf16 a shift, f16 F16C's vcvtph2ps
 * or integer code) and a cast to them is rounded to nearest even with integer code
 * that is ir_round_to bit for bit, stored in 16 bits and held in registers as the f32
 * value it stands for; any other kernel refuses them (cg_check_dtypes).
 *
 * The other kernels see a tensor around an axis as [outer, R, inner] (row-major):
 *   reductions   inner == 1: vector accumulators along R, one horizontal reduce per row;
 *                otherwise vectors across inner, a loop over R
 *   softmax      the same two shapes: max, sum of exp(x - max), then the scaled row
 *   xent, onehot rows of C classes (labels of any rank); a label outside [0, C) sets
 *                frame->status = 1
 *   embedding    a row copy per position; its backward by column chunks of dW (the same
 *                sum order for any thread count)
 *   transpose    any permutation: row copies, or W x W tiles transposed in registers
 *   causal_mask  two fills per row
 *   sum_to       zero the result, accumulate each element of the operand at its
 *                broadcast position (vector add, or a vector sum when the result's
 *                last dim is broadcast)
 *   reshape      a copy of the operand's elements into the result's buffer (row-major
 *                order is unchanged, so one vector loop over all elements)
 *   dropout      Philox4x32-10 blocks of 4 words, exactly runtime/rng.c's bprt_dropout_mask
 *   pooling      codegen/pool.c (planes split over threads; 2x2 windows as vectors)
 *   batchnorm    per channel: N rows of H*W contiguous elements, vector loops, f64 sums
 *   layer norm   per row of the trailing dims: mean, variance (two passes), then the
 *                apply or the gradient; a task over rows through parallel_for
 */
#include <math.h>
#include <string.h>

#include "codegen/cg.h"

bool cg_op_is_ew(const Inst *in) { return ir_ops[in->op].kind == OPK_EW; }

static LLVMValueRef fk(Cg *cg, LLVMTypeRef T, double v) { return cg_fconst(cg, T, v); }

/* y = op(a, b) on float or <W x float>; the interpreter's formulas (ir/interp.c). */
LLVMValueRef cg_ew_apply(Cg *cg, const Inst *in, LLVMValueRef a, LLVMValueRef b) {
  LLVMBuilderRef B = cg->B;
  LLVMTypeRef T = LLVMTypeOf(a);
  switch ((Op)in->op) {
  case OP_ADD: return LLVMBuildFAdd(B, a, b, "");
  case OP_SUB: return LLVMBuildFSub(B, a, b, "");
  case OP_MUL: return LLVMBuildFMul(B, a, b, "");
  case OP_DIV: return LLVMBuildFDiv(B, a, b, "");
  case OP_EQ: return LLVMBuildSelect(B, LLVMBuildFCmp(B, LLVMRealOEQ, a, b, ""), fk(cg, T, 1), fk(cg, T, 0), "");
  case OP_NEG: return LLVMBuildFNeg(B, a, "");
  case OP_EXP: return cg_exp(cg, a);
  case OP_LOG: return cg_log(cg, a);
  case OP_SQRT: return cg_intrinsic(cg, "llvm.sqrt", T, &a, 1);
  case OP_ABS: return cg_intrinsic(cg, "llvm.fabs", T, &a, 1);
  case OP_SIGN: {
    LLVMValueRef pos = LLVMBuildSelect(B, LLVMBuildFCmp(B, LLVMRealOGT, a, fk(cg, T, 0), ""), fk(cg, T, 1), fk(cg, T, 0), "");
    return LLVMBuildSelect(B, LLVMBuildFCmp(B, LLVMRealOLT, a, fk(cg, T, 0), ""), fk(cg, T, -1), pos, "");
  }
  case OP_RELU: return LLVMBuildSelect(B, LLVMBuildFCmp(B, LLVMRealOGT, a, fk(cg, T, 0), ""), a, fk(cg, T, 0), "");
  case OP_SIGMOID: return cg_sigmoid(cg, a);
  case OP_TANH: return cg_tanh(cg, a);
  case OP_POW: return cg_pow_const(cg, a, in->fattr[0]);
  case OP_RELU_GRAD:     /* (x, dy) -> x > 0 ? dy : 0 */
    return LLVMBuildSelect(B, LLVMBuildFCmp(B, LLVMRealOGT, a, fk(cg, T, 0), ""), b, fk(cg, T, 0), "");
  case OP_SIGMOID_GRAD:  /* (y, dy) -> dy * y * (1 - y) */
    return LLVMBuildFMul(B, LLVMBuildFMul(B, b, a, ""), LLVMBuildFSub(B, fk(cg, T, 1), a, ""), "");
  case OP_TANH_GRAD:     /* (y, dy) -> dy * (1 - y^2) */
    return LLVMBuildFMul(B, b, LLVMBuildFSub(B, fk(cg, T, 1), LLVMBuildFMul(B, a, a, ""), ""), "");
  case OP_GELU: return cg_gelu(cg, a);
  case OP_GELU_TANH: return cg_gelu_tanh(cg, a);
  case OP_GELU_GRAD: return cg_gelu_grad(cg, a, b);             /* (x, dy) */
  case OP_GELU_TANH_GRAD: return cg_gelu_tanh_grad(cg, a, b);   /* (x, dy) */
  case OP_BROADCAST: return a;
  case OP_CAST: break;   /* its rounding depends on the result's dtype: ew_body */
  default: break;
  }
  ir_die("cg_ew_apply: %s is not elementwise", ir_ops[in->op].name);
}

/* Only a cast and the matrix products read or make 16-bit values (the IR's rule, which
 * the verifier enforces); codegen checks it again for each kernel's members and stops
 * with an internal error rather than read 16-bit buffers as floats. In an f64 model
 * there are none at all. */
bool cg_check_dtypes(Cg *cg, Func *f, const int32_t *members, int n) {
  for (int k = 0; k < n; k++) {
    const Inst *in = &f->insts[members[k]];
    bool product = ir_ops[in->op].kind == OPK_PRODUCT;
    bool cast = in->op == OP_CAST;
    bool low_res = in->type != TYPE_VOID && ir_dtype_is_low(ir_vtype(f, members[k])->dtype);
    int32_t bad = -1;
    if (low_res && !cast) bad = members[k];
    for (int q = 0; q < in->nargs && bad < 0; q++)
      if (ir_dtype_is_low(ir_vtype(f, in->args[q])->dtype) && !cast && !product && in->op != OP_SIZE) bad = in->args[q];
    if (bad < 0 && (cast || product) && cg->esize != 4 &&
        (low_res || ir_dtype_is_low(ir_vtype(f, in->args[0])->dtype)))
      bad = members[k];
    if (bad >= 0) {
      char ts[64];
      ir_type_str(ir_vtype(f, bad), ts, sizeof ts);
      diag_error(in->loc, "codegen: internal error: %%%d = %s %s %%%d : %s, a 16-bit value (only a cast and the matrix "
                 "products of an f32 model take them)", (int)members[k], ir_ops[in->op].name,
                 bad == members[k] ? "makes" : "reads", (int)bad, ts);
      return false;
    }
  }
  return true;
}

/* ------------------------------------------------------------------ elementwise groups */

enum { EXT_CONST, EXT_VEC, EXT_SPLAT };

typedef struct {
  Func *f;
  const int32_t *members;
  int n;
  const CgVal *vals;
  int next;
  int32_t ext_id[KERNEL_MAX_GROUP * IR_MAX_ARGS];
  int ext_mode[KERNEL_MAX_GROUP * IR_MAX_ARGS];
  LLVMValueRef ext_base[KERNEL_MAX_GROUP * IR_MAX_ARGS];
  LLVMValueRef out_base;
} EwCtx;

static int member_index(const EwCtx *c, int32_t v) {
  for (int k = 0; k < c->n; k++)
    if (c->members[k] == v) return k;
  return -1;
}

static int ext_index(const EwCtx *c, int32_t v) {
  for (int k = 0; k < c->next; k++)
    if (c->ext_id[k] == v) return k;
  return -1;
}

/* Element idx of v as T (float or <W x float>): 16-bit buffers widened exactly. */
static LLVMValueRef ew_load(Cg *cg, const CgVal *v, LLVMTypeRef T, LLVMValueRef idx) {
  CgElem e = cg_elem_of(v->t->dtype);
  return e == CG_ELEM_FLOAT ? cg_load(cg, T, v->ptr, idx) : cg_load_elem(cg, T, e, v->ptr, idx);
}

static void ew_body(Cg *cg, void *ctxp, LLVMValueRef j, LLVMTypeRef T) {
  EwCtx *c = ctxp;
  LLVMValueRef res[KERNEL_MAX_GROUP];
  for (int k = 0; k < c->n; k++) {
    const Inst *in = &c->f->insts[c->members[k]];
    LLVMValueRef args[IR_MAX_ARGS] = {NULL, NULL, NULL};
    for (int a = 0; a < in->nargs; a++) {
      int m = member_index(c, in->args[a]);
      if (m >= 0) {
        args[a] = res[m];
        continue;
      }
      int e = ext_index(c, in->args[a]);
      const CgVal *v = &c->vals[in->args[a]];
      if (c->ext_mode[e] == EXT_CONST) args[a] = cg_fconst(cg, T, v->cval);
      else if (c->ext_mode[e] == EXT_SPLAT) args[a] = cg_splat(cg, ew_load(cg, v, cg->t_f32, c->ext_base[e]), T);
      else args[a] = ew_load(cg, v, T, LLVMBuildAdd(cg->B, c->ext_base[e], j, ""));
    }
    const CgVal *out = &c->vals[c->members[k]];
    LLVMValueRef idx = LLVMBuildAdd(cg->B, c->out_base, j, "");
    CgElem oe = cg_elem_of(out->t->dtype);
    if (in->op == OP_CAST && oe != CG_ELEM_FLOAT) {
      /* f32 -> bf16 / f16: the bits stored, their f32 value for the group's readers */
      LLVMValueRef bits = cg_elem_from_f32(cg, args[0], oe);
      if (out->ptr) {
        LLVMValueRef s = LLVMBuildStore(cg->B, bits, cg_gep(cg, LLVMInt16TypeInContext(cg->C), out->ptr, idx));
        LLVMSetAlignment(s, 2);
      }
      res[k] = cg_elem_to_f32(cg, bits, oe);
      continue;
    }
    /* a cast to f32 reads its operand already widened */
    res[k] = in->op == OP_CAST ? args[0] : cg_ew_apply(cg, in, args[0], args[1]);
    /* no buffer: internal (the f32 side of a cast that only the group reads) */
    if (out->ptr) cg_store(cg, res[k], out->ptr, idx);
  }
}

static bool same_dims(const TensorType *a, const TensorType *b) {
  if (a->rank != b->rank) return false;
  for (int i = 0; i < a->rank; i++)
    if (a->dims[i] != b->dims[i]) return false;
  return true;
}

static bool single_element(const TensorType *t) {
  for (int i = 0; i < t->rank; i++)
    if (t->dims[i] != 1) return false;
  return true;
}

/* Stride (in elements) of operand type a along dim d of the result type o (rank r),
 * NumPy-aligned on the right; 0 where a is broadcast. */
static LLVMValueRef bcast_stride(Cg *cg, const TensorType *a, const TensorType *o, int d) {
  int ia = d - (o->rank - a->rank);
  if (ia < 0 || (a->dims[ia] == 1 && o->dims[d] != 1)) return cg_i64(cg, 0);
  return cg_dims_prod(cg, a, ia + 1, a->rank);
}

bool cg_kernel_ew(Cg *cg, Func *f, const int32_t *members, int n, const CgVal *vals) {
  if (n < 1 || n > KERNEL_MAX_GROUP) ir_die("elementwise group of %d instructions", n);
  EwCtx c;
  memset(&c, 0, sizeof c);
  c.f = f, c.members = members, c.n = n, c.vals = vals;
  const TensorType *ot = ir_vtype(f, members[0]);
  bool flat = true;
  for (int k = 0; k < n; k++) {
    const Inst *in = &f->insts[members[k]];
    if (!same_dims(ir_vtype(f, members[k]), ot)) ir_die("elementwise group members differ in shape");
    for (int a = 0; a < in->nargs; a++) {
      int32_t v = in->args[a];
      if (member_index(&c, v) >= 0 || ext_index(&c, v) >= 0) continue;
      c.ext_id[c.next++] = v;
      const TensorType *t = ir_vtype(f, v);
      if (!vals[v].is_const && !same_dims(t, ot) && !single_element(t)) flat = false;
    }
  }
  if (flat || ot->rank <= 1) {
    /* one loop over all elements */
    c.out_base = cg_i64(cg, 0);
    for (int e = 0; e < c.next; e++) {
      const CgVal *v = &vals[c.ext_id[e]];
      c.ext_base[e] = cg_i64(cg, 0);
      if (v->is_const) c.ext_mode[e] = EXT_CONST;
      else if (same_dims(v->t, ot) || (ot->rank == 1 && v->t->rank == 1 && v->t->dims[0] == ot->dims[0]))
        c.ext_mode[e] = EXT_VEC;
      else c.ext_mode[e] = EXT_SPLAT;
    }
    cg_vloop(cg, cg_numel(cg, ot), ew_body, &c);
    return true;
  }
  /* outer dims as loops, the last dim vectorized */
  int r = ot->rank;
  CgLoop loops[IR_MAX_RANK];
  for (int d = 0; d < r - 1; d++) loops[d] = cg_loop_begin(cg, cg_i64(cg, 0), cg_dim(cg, ot, d), cg_i64(cg, 1));
  c.out_base = cg_i64(cg, 0);
  for (int d = 0; d < r - 1; d++)
    c.out_base = LLVMBuildAdd(cg->B, c.out_base, LLVMBuildMul(cg->B, loops[d].iv, cg_dims_prod(cg, ot, d + 1, r), ""), "");
  for (int e = 0; e < c.next; e++) {
    const CgVal *v = &vals[c.ext_id[e]];
    if (v->is_const) {
      c.ext_mode[e] = EXT_CONST;
      c.ext_base[e] = cg_i64(cg, 0);
      continue;
    }
    LLVMValueRef base = cg_i64(cg, 0);
    for (int d = 0; d < r - 1; d++)
      base = LLVMBuildAdd(cg->B, base, LLVMBuildMul(cg->B, loops[d].iv, bcast_stride(cg, v->t, ot, d), ""), "");
    c.ext_base[e] = base;
    int il = v->t->rank - 1;
    bool inner_bcast = il < 0 || (v->t->dims[il] == 1 && ot->dims[r - 1] != 1);
    c.ext_mode[e] = inner_bcast ? EXT_SPLAT : EXT_VEC;
  }
  cg_vloop(cg, cg_dim(cg, ot, r - 1), ew_body, &c);
  for (int d = r - 2; d >= 0; d--) cg_loop_end(cg, &loops[d]);
  return true;
}

/* ------------------------------------------------------------------ copies */

typedef struct {
  const CgVal *src;
  LLVMValueRef dst;
} CopyCtx;

static void copy_body(Cg *cg, void *p, LLVMValueRef j, LLVMTypeRef T) {
  CopyCtx *c = p;
  cg_store(cg, cg_val_load(cg, c->src, T, j), c->dst, j);
}

void cg_kernel_copy(Cg *cg, const CgVal *src, LLVMValueRef dst, const TensorType *t) {
  CopyCtx c = {src, dst};
  cg_vloop(cg, cg_numel(cg, t), copy_body, &c);
}

typedef struct {
  LLVMValueRef dst;
  double v;
} FillCtx;

static void fill_body(Cg *cg, void *p, LLVMValueRef j, LLVMTypeRef T) {
  FillCtx *c = p;
  cg_store(cg, cg_fconst(cg, T, c->v), c->dst, j);
}

static void fill(Cg *cg, LLVMValueRef dst, LLVMValueRef n, double v) {
  FillCtx c = {dst, v};
  cg_vloop(cg, n, fill_body, &c);
}

/* ------------------------------------------------------------------ reductions over rows */

/* [outer, R, inner] around `axis` (IR_AXIS_ALL: [1, numel, 1]); inner1 when inner is 1
 * at compile time. */
static void split_axis(Cg *cg, const TensorType *t, int64_t axis, LLVMValueRef *outer, LLVMValueRef *R,
                       LLVMValueRef *inner, bool *inner1) {
  if (axis == IR_AXIS_ALL) {
    *outer = cg_i64(cg, 1), *R = cg_numel(cg, t), *inner = cg_i64(cg, 1), *inner1 = true;
    return;
  }
  *outer = cg_dims_prod(cg, t, 0, (int)axis);
  *R = cg_dim(cg, t, (int)axis);
  *inner = cg_dims_prod(cg, t, (int)axis + 1, t->rank);
  *inner1 = true;
  for (int i = (int)axis + 1; i < t->rank; i++)
    if (t->dims[i] != 1) *inner1 = false;
}

/* A row accumulator: a vector and a scalar alloca, combined at the end. */
typedef struct {
  int op;                /* OP_SUM or OP_MAX */
  LLVMValueRef accv, accs;
  LLVMValueRef src, base;  /* x = src[base + j] */
  LLVMValueRef sub;        /* exp(x - sub) is accumulated when expsum */
  bool expsum;
  LLVMValueRef store;      /* when not NULL: exp(x - sub) is stored here at base + j */
} RowAcc;

static LLVMValueRef combine(Cg *cg, int op, LLVMValueRef a, LLVMValueRef b) {
  return op == OP_MAX ? cg_max_f(cg, a, b) : LLVMBuildFAdd(cg->B, a, b, "");
}

/* Sums accumulate in f64 lanes (as the interpreter does): a long f32 sum that cancels
 * would otherwise lose digits in proportion to its length. */
static LLVMTypeRef acc_type(Cg *cg, int op, LLVMTypeRef T) {
  if (op == OP_MAX) return T;
  return cg_is_vec(T) ? LLVMVectorType(cg->t_f64, LLVMGetVectorSize(T)) : cg->t_f64;
}

/* v widened to a sum's accumulator type (acc_type) */
static LLVMValueRef sum_wide(Cg *cg, LLVMValueRef v, LLVMTypeRef T) {
  LLVMTypeRef AT = acc_type(cg, OP_SUM, T);
  return AT == T ? v : LLVMBuildFPExt(cg->B, v, AT, "");
}

/* acc += v, v already widened: the vector accumulator for a vector T, the scalar one for
 * the loop's scalar tail */
static void sum_acc(Cg *cg, LLVMValueRef accv, LLVMValueRef accs, LLVMValueRef v, LLVMTypeRef T) {
  LLVMValueRef acc = cg_is_vec(T) ? accv : accs;
  LLVMBuildStore(cg->B, LLVMBuildFAdd(cg->B, LLVMBuildLoad2(cg->B, LLVMTypeOf(v), acc, ""), v, ""), acc);
}

static void rowacc_body(Cg *cg, void *p, LLVMValueRef j, LLVMTypeRef T) {
  RowAcc *c = p;
  LLVMValueRef idx = LLVMBuildAdd(cg->B, c->base, j, "");
  LLVMValueRef x = cg_load(cg, T, c->src, idx);
  if (c->expsum) {
    x = cg_exp(cg, LLVMBuildFSub(cg->B, x, cg_splat(cg, c->sub, T), ""));
    if (c->store) cg_store(cg, x, c->store, idx);
  }
  LLVMTypeRef AT = acc_type(cg, c->op, T);
  if (AT != T) x = LLVMBuildFPExt(cg->B, x, AT, "");
  LLVMValueRef acc = cg_is_vec(T) ? c->accv : c->accs;
  LLVMValueRef old = LLVMBuildLoad2(cg->B, AT, acc, "");
  LLVMBuildStore(cg->B, combine(cg, c->op, old, x), acc);
}

/* op over src[base .. base + n): a scalar f32 value. */
static LLVMValueRef row_reduce(Cg *cg, int op, LLVMValueRef src, LLVMValueRef base, LLVMValueRef n,
                               LLVMValueRef expsub, LLVMValueRef store) {
  double id = op == OP_MAX ? -INFINITY : 0.0;
  LLVMTypeRef VT = acc_type(cg, op, cg->t_vec), ST = acc_type(cg, op, cg->t_f32);
  RowAcc c = {op, cg_alloca(cg, VT, "accv"), cg_alloca(cg, ST, "accs"), src, base, expsub, expsub != NULL, store};
  LLVMBuildStore(cg->B, cg_fconst(cg, VT, id), c.accv);
  LLVMBuildStore(cg->B, cg_fconst(cg, ST, id), c.accs);
  cg_vloop(cg, n, rowacc_body, &c);
  LLVMValueRef v = LLVMBuildLoad2(cg->B, VT, c.accv, "");
  LLVMValueRef s = LLVMBuildLoad2(cg->B, ST, c.accs, "");
  LLVMValueRef h = op == OP_MAX ? cg_hmax(cg, v) : cg_hsum(cg, v);
  LLVMValueRef r = combine(cg, op, h, s);
  return ST == cg->t_f32 ? r : LLVMBuildFPTrunc(cg->B, r, cg->t_f32, "");
}

typedef struct {
  int op;
  LLVMValueRef src, dst, R, inner, obase, dbase;
} ColCtx;

/* Vectors across inner: acc = op over r of src[obase + r inner + j]. */
static void col_body(Cg *cg, void *p, LLVMValueRef j, LLVMTypeRef T) {
  ColCtx *c = p;
  int op = c->op == OP_MAX ? OP_MAX : OP_SUM;
  LLVMTypeRef AT = acc_type(cg, op, T);
  LLVMValueRef acc = cg_alloca(cg, AT, "acc");
  LLVMValueRef x0 = cg_load(cg, T, c->src, LLVMBuildAdd(cg->B, c->obase, j, ""));
  LLVMBuildStore(cg->B, AT == T ? x0 : LLVMBuildFPExt(cg->B, x0, AT, ""), acc);
  CgLoop l = cg_loop_begin(cg, cg_i64(cg, 1), c->R, cg_i64(cg, 1));
  LLVMValueRef idx = LLVMBuildAdd(cg->B, LLVMBuildAdd(cg->B, c->obase, LLVMBuildMul(cg->B, l.iv, c->inner, ""), ""), j, "");
  LLVMValueRef x = cg_load(cg, T, c->src, idx);
  if (AT != T) x = LLVMBuildFPExt(cg->B, x, AT, "");
  LLVMBuildStore(cg->B, combine(cg, op, LLVMBuildLoad2(cg->B, AT, acc, ""), x), acc);
  cg_loop_end(cg, &l);
  LLVMValueRef r = LLVMBuildLoad2(cg->B, AT, acc, "");
  if (AT != T) r = LLVMBuildFPTrunc(cg->B, r, T, "");
  if (c->op == OP_MEAN) r = LLVMBuildFDiv(cg->B, r, cg_splat(cg, LLVMBuildSIToFP(cg->B, c->R, cg->t_f32, ""), T), "");
  cg_store(cg, r, c->dst, LLVMBuildAdd(cg->B, c->dbase, j, ""));
}

static void kernel_reduce(Cg *cg, const Inst *in, const CgVal *a, const CgVal *out) {
  LLVMValueRef outer, R, inner;
  bool inner1;
  split_axis(cg, a->t, in->iattr[0], &outer, &R, &inner, &inner1);
  CgLoop lo = cg_loop_begin(cg, cg_i64(cg, 0), outer, cg_i64(cg, 1));
  LLVMValueRef obase = LLVMBuildMul(cg->B, lo.iv, LLVMBuildMul(cg->B, R, inner, ""), "");
  if (inner1) {
    LLVMValueRef r = row_reduce(cg, in->op == OP_MAX ? OP_MAX : OP_SUM, a->ptr, obase, R, NULL, NULL);
    if (in->op == OP_MEAN) r = LLVMBuildFDiv(cg->B, r, LLVMBuildSIToFP(cg->B, R, cg->t_f32, ""), "");
    cg_store(cg, r, out->ptr, lo.iv);
  } else {
    ColCtx c = {in->op, a->ptr, out->ptr, R, inner, obase, LLVMBuildMul(cg->B, lo.iv, inner, "")};
    cg_vloop(cg, inner, col_body, &c);
  }
  cg_loop_end(cg, &lo);
}

/* ------------------------------------------------------------------ softmax rows */

typedef struct {
  bool log;
  LLVMValueRef src, dst, base, mx, s, logs;
} SmCtx;

static void sm_final_body(Cg *cg, void *p, LLVMValueRef j, LLVMTypeRef T) {
  SmCtx *c = p;
  LLVMValueRef idx = LLVMBuildAdd(cg->B, c->base, j, "");
  LLVMValueRef y;
  if (c->log) {
    LLVMValueRef x = cg_load(cg, T, c->src, idx);
    y = LLVMBuildFSub(cg->B, LLVMBuildFSub(cg->B, x, cg_splat(cg, c->mx, T), ""), cg_splat(cg, c->logs, T), "");
  } else {
    y = LLVMBuildFDiv(cg->B, cg_load(cg, T, c->dst, idx), cg_splat(cg, c->s, T), "");
  }
  cg_store(cg, y, c->dst, idx);
}

typedef struct {
  bool log;
  LLVMValueRef src, dst, R, inner, obase;
} SmColCtx;

static void sm_col_body(Cg *cg, void *p, LLVMValueRef j, LLVMTypeRef T) {
  SmColCtx *c = p;
  LLVMBuilderRef B = cg->B;
  LLVMValueRef mx = cg_alloca(cg, T, "mx"), s = cg_alloca(cg, T, "s");
  LLVMValueRef base = LLVMBuildAdd(B, c->obase, j, "");
  LLVMBuildStore(B, cg_fconst(cg, T, -INFINITY), mx);
  LLVMBuildStore(B, cg_fconst(cg, T, 0), s);
  CgLoop l1 = cg_loop_begin(cg, cg_i64(cg, 0), c->R, cg_i64(cg, 1));
  LLVMValueRef i1 = LLVMBuildAdd(B, base, LLVMBuildMul(B, l1.iv, c->inner, ""), "");
  LLVMBuildStore(B, cg_max_f(cg, LLVMBuildLoad2(B, T, mx, ""), cg_load(cg, T, c->src, i1)), mx);
  cg_loop_end(cg, &l1);
  LLVMValueRef m = LLVMBuildLoad2(B, T, mx, "");
  CgLoop l2 = cg_loop_begin(cg, cg_i64(cg, 0), c->R, cg_i64(cg, 1));
  LLVMValueRef i2 = LLVMBuildAdd(B, base, LLVMBuildMul(B, l2.iv, c->inner, ""), "");
  LLVMValueRef e = cg_exp(cg, LLVMBuildFSub(B, cg_load(cg, T, c->src, i2), m, ""));
  if (!c->log) cg_store(cg, e, c->dst, i2);
  LLVMBuildStore(B, LLVMBuildFAdd(B, LLVMBuildLoad2(B, T, s, ""), e, ""), s);
  cg_loop_end(cg, &l2);
  LLVMValueRef sum = LLVMBuildLoad2(B, T, s, "");
  LLVMValueRef logs = c->log ? cg_log(cg, sum) : NULL;
  CgLoop l3 = cg_loop_begin(cg, cg_i64(cg, 0), c->R, cg_i64(cg, 1));
  LLVMValueRef i3 = LLVMBuildAdd(B, base, LLVMBuildMul(B, l3.iv, c->inner, ""), "");
  LLVMValueRef y = c->log ? LLVMBuildFSub(B, LLVMBuildFSub(B, cg_load(cg, T, c->src, i3), m, ""), logs, "")
                          : LLVMBuildFDiv(B, cg_load(cg, T, c->dst, i3), sum, "");
  cg_store(cg, y, c->dst, i3);
  cg_loop_end(cg, &l3);
}

static void kernel_softmax(Cg *cg, const Inst *in, const CgVal *a, const CgVal *out) {
  bool lg = in->op == OP_LOG_SOFTMAX;
  LLVMValueRef outer, R, inner;
  bool inner1;
  split_axis(cg, a->t, in->iattr[0], &outer, &R, &inner, &inner1);
  CgLoop lo = cg_loop_begin(cg, cg_i64(cg, 0), outer, cg_i64(cg, 1));
  LLVMValueRef obase = LLVMBuildMul(cg->B, lo.iv, LLVMBuildMul(cg->B, R, inner, ""), "");
  if (inner1) {
    LLVMValueRef mx = row_reduce(cg, OP_MAX, a->ptr, obase, R, NULL, NULL);
    LLVMValueRef s = row_reduce(cg, OP_SUM, a->ptr, obase, R, mx, lg ? NULL : out->ptr);
    SmCtx c = {lg, a->ptr, out->ptr, obase, mx, s, lg ? cg_log(cg, s) : NULL};
    cg_vloop(cg, R, sm_final_body, &c);
  } else {
    SmColCtx c = {lg, a->ptr, out->ptr, R, inner, obase};
    cg_vloop(cg, inner, sm_col_body, &c);
  }
  cg_loop_end(cg, &lo);
}

/* ------------------------------------------------------------------ labels */

/* label in [0, C)? else frame->status = 1. Returns the i1 condition. */
static LLVMValueRef label_ok(Cg *cg, LLVMValueRef l, LLVMValueRef C) {
  LLVMValueRef l64 = LLVMBuildSExt(cg->B, l, cg->t_i64, "");
  LLVMValueRef ok = LLVMBuildAnd(cg->B, LLVMBuildICmp(cg->B, LLVMIntSGE, l64, cg_i64(cg, 0), ""),
                                 LLVMBuildICmp(cg->B, LLVMIntSLT, l64, C, ""), "labelok");
  LLVMBasicBlockRef join = cg_if_begin(cg, LLVMBuildNot(cg->B, ok, ""));
  LLVMBuildStore(cg->B, cg_i32(cg, 1), cg_frame_field_ptr(cg, CG_FR_STATUS));
  cg_if_end(cg, join);
  return ok;
}

static LLVMValueRef load_label(Cg *cg, const CgVal *y, LLVMValueRef r) {
  LLVMValueRef p = cg_gep(cg, cg->t_i32, y->ptr, r);
  LLVMValueRef l = LLVMBuildLoad2(cg->B, cg->t_i32, p, "label");
  LLVMSetAlignment(l, 4);
  return l;
}

/* One row r of softmax-CE: max and sum of exp(z - max) over the row, the label, and
 * loss[r] = log(sum_j exp(z[r,j] - max_r)) + max_r - z[r, y[r]] stored (NaN for a label
 * out of range, which also sets frame->status). */
typedef struct {
  LLVMValueRef base, mx, s, lab;
} XentRow;

static XentRow xent_row(Cg *cg, const CgVal *z, const CgVal *y, const CgVal *loss, LLVMValueRef r, LLVMValueRef C) {
  XentRow x;
  x.base = LLVMBuildMul(cg->B, r, C, "");
  x.mx = row_reduce(cg, OP_MAX, z->ptr, x.base, C, NULL, NULL);
  x.s = row_reduce(cg, OP_SUM, z->ptr, x.base, C, x.mx, NULL);
  x.lab = load_label(cg, y, r);
  LLVMValueRef ok = label_ok(cg, x.lab, C);
  LLVMValueRef li = LLVMBuildSelect(cg->B, ok, LLVMBuildSExt(cg->B, x.lab, cg->t_i64, ""), cg_i64(cg, 0), "");
  LLVMValueRef zl = cg_load(cg, cg->t_f32, z->ptr, LLVMBuildAdd(cg->B, x.base, li, ""));
  LLVMValueRef lv = LLVMBuildFSub(cg->B, LLVMBuildFAdd(cg->B, cg_log(cg, x.s), x.mx, ""), zl, "");
  cg_store(cg, LLVMBuildSelect(cg->B, ok, lv, LLVMConstReal(cg->t_f32, NAN), ""), loss->ptr, r);
  return x;
}

/* logits [..., C]: every dim before the last is a row (labels of any rank) */
static void xent_rows(Cg *cg, const CgVal *z, LLVMValueRef *rows, LLVMValueRef *C) {
  *rows = cg_dims_prod(cg, z->t, 0, z->t->rank - 1);
  *C = cg_dim(cg, z->t, z->t->rank - 1);
}

static void kernel_xent(Cg *cg, const CgVal *z, const CgVal *y, const CgVal *out) {
  LLVMValueRef rows, C;
  xent_rows(cg, z, &rows, &C);
  CgLoop l = cg_loop_begin(cg, cg_i64(cg, 0), rows, cg_i64(cg, 1));
  xent_row(cg, z, y, out, l.iv, C);
  cg_loop_end(cg, &l);
}

static void kernel_onehot(Cg *cg, const CgVal *y, const CgVal *out) {
  const TensorType *t = out->t;
  LLVMValueRef C = cg_dim(cg, t, t->rank - 1);
  fill(cg, out->ptr, cg_numel(cg, t), 0.0);
  LLVMValueRef rows = cg_numel(cg, y->t);
  CgLoop l = cg_loop_begin(cg, cg_i64(cg, 0), rows, cg_i64(cg, 1));
  LLVMValueRef lab = load_label(cg, y, l.iv);
  LLVMValueRef ok = label_ok(cg, lab, C);
  LLVMBasicBlockRef join = cg_if_begin(cg, ok);
  LLVMValueRef idx = LLVMBuildAdd(cg->B, LLVMBuildMul(cg->B, l.iv, C, ""), LLVMBuildSExt(cg->B, lab, cg->t_i64, ""), "");
  cg_store(cg, LLVMConstReal(cg->t_f32, 1.0), out->ptr, idx);
  cg_if_end(cg, join);
  cg_loop_end(cg, &l);
}

/* embedding: y[p, :] = W[ids[p], :] for every position p (rows of d contiguous
 * elements, a vector copy each); an id outside [0, V) sets frame->status and gives a
 * row of NaN (as softmax_xent's loss row), so the loss shows it and __step skips the
 * update. On the calling thread: B*T rows of d floats are a copy of a few hundred KiB. */
typedef struct {
  LLVMValueRef src, dst, sbase, dbase, ok;
} EmbCtx;

static void emb_body(Cg *cg, void *p, LLVMValueRef j, LLVMTypeRef T) {
  EmbCtx *c = p;
  LLVMValueRef v = cg_load(cg, T, c->src, LLVMBuildAdd(cg->B, c->sbase, j, ""));
  LLVMValueRef okv = cg_is_vec(T) ? cg_splat(cg, c->ok, LLVMVectorType(cg->t_i1, LLVMGetVectorSize(T))) : c->ok;
  v = LLVMBuildSelect(cg->B, okv, v, cg_fconst(cg, T, NAN), "");
  cg_store(cg, v, c->dst, LLVMBuildAdd(cg->B, c->dbase, j, ""));
}

static void kernel_embedding(Cg *cg, const CgVal *ids, const CgVal *w, const CgVal *out) {
  LLVMBuilderRef B = cg->B;
  LLVMValueRef V = cg_dim(cg, w->t, 0), d = cg_dim(cg, w->t, 1);
  CgLoop l = cg_loop_begin(cg, cg_i64(cg, 0), cg_numel(cg, ids->t), cg_i64(cg, 1));
  LLVMValueRef lab = load_label(cg, ids, l.iv);
  LLVMValueRef ok = label_ok(cg, lab, V);
  LLVMValueRef li = LLVMBuildSelect(B, ok, LLVMBuildSExt(B, lab, cg->t_i64, ""), cg_i64(cg, 0), "");
  EmbCtx c = {w->ptr, out->ptr, LLVMBuildMul(B, li, d, ""), LLVMBuildMul(B, l.iv, d, ""), ok};
  cg_vloop(cg, d, emb_body, &c);
  cg_loop_end(cg, &l);
}

/* embedding_bwd: dW[v, :] = sum of dy[p, :] over the positions p with ids[p] = v, in
 * the order of p. Deterministic for any thread count: the work is split by columns of
 * dW (whole vectors), never by positions, so each element is one thread's sum in the
 * same order whatever the split. A task over column chunks: zero the chunk's columns
 * of dW, then add each position's slice. Ids outside [0, V) add nothing (the forward
 * embedding of the same ids has set frame->status). */
enum { EBX_IDS, EBX_DY, EBX_DW, EBX_ROWS, EBX_NCH, EBX__COUNT };
#define EMB_GRAIN 32768   /* elements of dy per chunk, at least */

static LLVMTypeRef ebx_type(Cg *cg) {
  LLVMTypeRef f[EBX__COUNT] = {cg->t_ptr, cg->t_ptr, cg->t_ptr, cg->t_i64, cg->t_i64};
  return LLVMStructTypeInContext(cg->C, f, EBX__COUNT, 0);
}

static void addrow_body(Cg *cg, void *p, LLVMValueRef j, LLVMTypeRef T) {
  EmbCtx *c = p;
  LLVMValueRef di = LLVMBuildAdd(cg->B, c->dbase, j, "");
  LLVMValueRef v = LLVMBuildFAdd(cg->B, cg_load(cg, T, c->dst, di), cg_load(cg, T, c->src, LLVMBuildAdd(cg->B, c->sbase, j, "")), "");
  cg_store(cg, v, c->dst, di);
}

static void zero_body(Cg *cg, void *p, LLVMValueRef j, LLVMTypeRef T) {
  EmbCtx *c = p;
  cg_store(cg, cg_fconst(cg, T, 0.0), c->dst, LLVMBuildAdd(cg->B, c->dbase, j, ""));
}

static LLVMValueRef emb_bwd_task(Cg *cg, int64_t V, int64_t d) {
  LLVMBuilderRef B = cg->B;
  LLVMValueRef fn = cg_new_function(cg, "bpcc_embedding_bwd_task", cg->t_task, true);
  cg->fn = fn;
  LLVMPositionBuilderAtEnd(B, LLVMAppendBasicBlockInContext(cg->C, fn, "entry"));
  LLVMTypeRef ct = ebx_type(cg);
  LLVMValueRef ctx = LLVMGetParam(fn, 0), f[EBX__COUNT];
  for (unsigned i = 0; i < EBX__COUNT; i++)
    f[i] = LLVMBuildLoad2(B, LLVMStructGetTypeAtIndex(ct, i), LLVMBuildStructGEP2(B, ct, ctx, i, ""), "");
  int64_t w = cg->W > 1 ? cg->W : 1, nvec = (d + w - 1) / w;
  LLVMValueRef one = cg_i64(cg, 1);
  CgLoop lc = cg_loop_begin(cg, LLVMGetParam(fn, 1), LLVMGetParam(fn, 2), one);
  LLVMValueRef v0 = LLVMBuildSDiv(B, LLVMBuildMul(B, lc.iv, cg_i64(cg, nvec), ""), f[EBX_NCH], "");
  LLVMValueRef v1 = LLVMBuildSDiv(B, LLVMBuildMul(B, LLVMBuildAdd(B, lc.iv, one, ""), cg_i64(cg, nvec), ""), f[EBX_NCH], "");
  LLVMValueRef c0 = cg_min_i64(cg, LLVMBuildMul(B, v0, cg_i64(cg, w), ""), cg_i64(cg, d));
  LLVMValueRef c1 = cg_min_i64(cg, LLVMBuildMul(B, v1, cg_i64(cg, w), ""), cg_i64(cg, d));
  LLVMValueRef nc = LLVMBuildSub(B, c1, c0, "");
  CgLoop lz = cg_loop_begin(cg, cg_i64(cg, 0), cg_i64(cg, V), one);
  EmbCtx z = {NULL, f[EBX_DW], NULL, LLVMBuildAdd(B, LLVMBuildMul(B, lz.iv, cg_i64(cg, d), ""), c0, ""), NULL};
  cg_vloop(cg, nc, zero_body, &z);
  cg_loop_end(cg, &lz);
  CgLoop lp = cg_loop_begin(cg, cg_i64(cg, 0), f[EBX_ROWS], one);
  LLVMValueRef lab = LLVMBuildLoad2(B, cg->t_i32, cg_gep(cg, cg->t_i32, f[EBX_IDS], lp.iv), "label");
  LLVMSetAlignment(lab, 4);
  LLVMValueRef l64 = LLVMBuildSExt(B, lab, cg->t_i64, "");
  LLVMValueRef ok = LLVMBuildAnd(B, LLVMBuildICmp(B, LLVMIntSGE, l64, cg_i64(cg, 0), ""),
                                 LLVMBuildICmp(B, LLVMIntSLT, l64, cg_i64(cg, V), ""), "");
  LLVMBasicBlockRef join = cg_if_begin(cg, ok);
  EmbCtx a = {f[EBX_DY], f[EBX_DW], LLVMBuildAdd(B, LLVMBuildMul(B, lp.iv, cg_i64(cg, d), ""), c0, ""),
              LLVMBuildAdd(B, LLVMBuildMul(B, l64, cg_i64(cg, d), ""), c0, ""), NULL};
  cg_vloop(cg, nc, addrow_body, &a);
  cg_if_end(cg, join);
  cg_loop_end(cg, &lp);
  cg_loop_end(cg, &lc);
  LLVMBuildRetVoid(B);
  return fn;
}

static void kernel_embedding_bwd(Cg *cg, const CgVal *ids, const CgVal *dy, const CgVal *out) {
  LLVMBuilderRef B = cg->B;
  int64_t V = out->t->dims[0], d = out->t->dims[1];
  CgAside aside = cg_aside_begin(cg);
  LLVMValueRef task = emb_bwd_task(cg, V, d);
  cg_aside_end(cg, aside);
  LLVMValueRef rows = cg_numel(cg, ids->t);
  /* chunks: the pool's threads, at most one per vector of columns, once dy has
   * EMB_GRAIN elements per chunk */
  int64_t w = cg->W > 1 ? cg->W : 1, nvec = (d + w - 1) / w;
  LLVMValueRef nth = LLVMBuildSExt(B, cg_frame_field(cg, CG_FR_NTHREADS), cg->t_i64, "");
  LLVMValueRef byn = LLVMBuildSDiv(B, LLVMBuildMul(B, rows, cg_i64(cg, d), ""), cg_i64(cg, EMB_GRAIN), "");
  LLVMValueRef nch = cg_min_i64(cg, cg_min_i64(cg, nth, byn), cg_i64(cg, nvec));
  nch = LLVMBuildSelect(B, LLVMBuildICmp(B, LLVMIntSLT, nch, cg_i64(cg, 1), ""), cg_i64(cg, 1), nch, "nchunks");
  LLVMTypeRef ct = ebx_type(cg);
  LLVMValueRef ctx = cg_alloca(cg, ct, "embctx");
  LLVMValueRef fields[EBX__COUNT] = {ids->ptr, dy->ptr, out->ptr, rows, nch};
  for (unsigned i = 0; i < EBX__COUNT; i++) LLVMBuildStore(B, fields[i], LLVMBuildStructGEP2(B, ct, ctx, i, ""));
  cg_run_task(cg, LLVMBuildICmp(B, LLVMIntSGT, nch, cg_i64(cg, 1), ""), nch, cg_i64(cg, 1), task, ctx, nch);
}

/* causal_mask [T, T]: row r is 0 in columns 0..r and -inf after, two fills per row.
 * A kernel of its own (as dropout's mask): T^2 floats written once per call of the
 * entry (16 KiB at T = 64), read by the elementwise kernel that adds it to the scores,
 * which then needs no index arithmetic of its own. */
static void kernel_causal_mask(Cg *cg, const CgVal *out) {
  LLVMBuilderRef B = cg->B;
  LLVMValueRef T = cg_dim(cg, out->t, 0), one = cg_i64(cg, 1);
  CgLoop l = cg_loop_begin(cg, cg_i64(cg, 0), T, one);
  LLVMValueRef row = cg_gep(cg, cg->t_f32, out->ptr, LLVMBuildMul(B, l.iv, T, ""));
  LLVMValueRef keep = LLVMBuildAdd(B, l.iv, one, "");
  fill(cg, row, keep, 0.0);
  fill(cg, cg_gep(cg, cg->t_f32, row, keep), LLVMBuildSub(B, T, keep, ""), -INFINITY);
  cg_loop_end(cg, &l);
}

/* ------------------------------------------------------------------ fused groups */

static bool is_member(const int32_t *members, int n, int32_t v) {
  for (int k = 0; k < n; k++)
    if (members[k] == v) return true;
  return false;
}

/* members[0] = c = matmul*(a, b); then, as passes/kernel_plan.c forms them: d = add(c, bias)
 * and e = act(d), or e = act(c), or g = mask(aux, c); a convolution's bias, then its
 * inference-mode batchnorm bn_norm(d or c, mean, rstd) [mul gamma [add beta]], then the
 * activation. The product writes its tiles
 * into the buffer of the last value before the activation that has one (an internal
 * value has none) and runs the epilogue on them; the activation goes to its own
 * buffer when that value is kept (STORE_PRE). */
/* The product `in` (result type ct) into dst, with the epilogue ep (NULL: none). */
static bool kernel_gemm(Cg *cg, Func *f, const Inst *in, const TensorType *ct, const CgVal *vals, LLVMValueRef dst,
                        const CgEpilogue *ep) {
  const CgVal *a = &vals[in->args[0]], *b = &vals[in->args[1]];
  if (a->is_const || b->is_const) {
    /* a constant matrix operand: materialize it in the output's scratch first is not
     * possible (aliasing); the lowering never makes one, report it */
    diag_error(in->loc, "codegen: %s of a constant matrix is not supported", ir_ops[in->op].name);
    return false;
  }
  const TensorType *at = a->t, *bt = b->t;
  int ra = at->rank, rc = ct->rank;
  CgGemmTypes ty = {cg_elem_of(at->dtype), cg_elem_of(bt->dtype)};   /* 16-bit operands: gemm_lowp.c */
  bool tn = in->op == OP_MATMUL_TN;
  if (cg_product_single(f, in)) {
    /* one product: rows of a (all its leading dims) times b, or fold's sum over them */
    LLVMValueRef N = cg_dim(cg, ct, rc - 1), M, K;
    if (tn) M = cg_dim(cg, at, ra - 1), K = cg_dims_prod(cg, at, 0, ra - 1);
    else M = cg_dims_prod(cg, at, 0, ra - 1), K = cg_dim(cg, at, ra - 1);
    cg_gemm(cg, (Op)in->op, &ty, a->ptr, b->ptr, dst, M, N, K, cg->gemm_pack, ep);
    return true;
  }
  /* one product per index of the result's batch dims (rc - 2 of them, 1 or 2) */
  LLVMValueRef M = cg_dim(cg, ct, rc - 2), N = cg_dim(cg, ct, rc - 1);
  LLVMValueRef K = cg_dim(cg, at, tn ? ra - 2 : ra - 1);
  int nbr = rc - 2;
  LLVMValueRef d[2], sa[2], sb[2];
  for (int q = 0; q < 2; q++) {
    int dd = q - (2 - nbr);   /* the result's batch dim for slot q (slot 0 is 1 with one batch dim) */
    if (dd < 0) {
      d[q] = cg_i64(cg, 1), sa[q] = sb[q] = cg_i64(cg, 0);
      continue;
    }
    d[q] = cg_dim(cg, ct, dd);
    const TensorType *ops[2] = {at, bt};
    LLVMValueRef *st[2] = {&sa[q], &sb[q]};
    for (int o = 0; o < 2; o++) {
      const TensorType *x = ops[o];
      int ix = dd - (nbr - (x->rank - 2));
      *st[o] = ix < 0 || (x->dims[ix] == 1 && ct->dims[dd] != 1) ? cg_i64(cg, 0) : cg_dims_prod(cg, x, ix + 1, x->rank);
    }
  }
  CgBatch bb = {d[0], d[1], sa[0], sa[1], sb[0], sb[1]};
  cg_gemm_batched(cg, (Op)in->op, &ty, a->ptr, b->ptr, dst, M, N, K, &bb, cg->gemm_pack, ep);
  return true;
}

bool cg_kernel_gemm_fused(Cg *cg, Func *f, const int32_t *members, int n, const CgVal *vals) {
  const Inst *gi = &f->insts[members[0]];
  const CgVal *c = &vals[members[0]];
  CgEpilogue ep;
  memset(&ep, 0, sizeof ep);
  LLVMValueRef dst = c->ptr;
  int32_t prev = members[0];
  for (int k = 1; k < n; k++) {
    int32_t v = members[k];
    const Inst *in = &f->insts[v];
    LLVMValueRef other = in->nargs == 2 ? vals[in->args[0] == prev ? in->args[1] : in->args[0]].ptr : NULL;
    switch ((Op)in->op) {
    case OP_ADD:   /* after batchnorm its shift beta, else the bias */
      if (ep.flags & CG_EP_BN_ROW) ep.flags |= CG_EP_SHIFT_ROW, ep.beta = other;
      else ep.flags |= gi->op == OP_CONV2D ? CG_EP_BIAS_ROW : CG_EP_BIAS, ep.bias = other;
      dst = vals[v].ptr;
      break;
    case OP_BN_NORM:
      ep.flags |= CG_EP_BN_ROW;
      ep.mean = vals[in->args[1]].ptr;
      ep.rstd = vals[in->args[2]].ptr;
      dst = vals[v].ptr;
      break;
    case OP_MUL:   /* batchnorm's scale gamma */
      ep.flags |= CG_EP_SCALE_ROW;
      ep.gamma = other;
      dst = vals[v].ptr;
      break;
    case OP_RELU: case OP_TANH: case OP_SIGMOID: case OP_GELU: case OP_GELU_TANH:
      ep.flags |= cg_ep_flag_of((Op)in->op);
      if (vals[prev].ptr) {   /* the value before the activation is read elsewhere too */
        ep.flags |= CG_EP_STORE_PRE;
        ep.out2 = vals[v].ptr;
      } else {
        dst = vals[v].ptr;
      }
      break;
    case OP_RELU_GRAD: case OP_TANH_GRAD: case OP_SIGMOID_GRAD: case OP_GELU_GRAD: case OP_GELU_TANH_GRAD:
      ep.flags |= cg_ep_flag_of((Op)in->op);
      if (!(ep.flags & CG_EP_AUX16)) ep.aux = vals[in->args[0]].ptr;
      dst = vals[v].ptr;
      break;
    case OP_CAST:
      if (gi->op == OP_CONV2D) ir_die("cg_kernel_gemm_fused: a cast in a convolution's group");
      if (cg_elem_of(vals[v].t->dtype) == CG_ELEM_FLOAT) {
        /* the mask's aux, kept in 16 bits: the epilogue widens it (the cast is internal) */
        CgElem e = cg_elem_of(vals[in->args[0]].t->dtype);
        if (k + 1 >= n || !(cg_ep_flag_of((Op)f->insts[members[k + 1]].op) & CG_EP_MASKS) || e == CG_ELEM_FLOAT)
          ir_die("cg_kernel_gemm_fused: a cast back to f32 that is no mask's operand");
        ep.flags |= e == CG_ELEM_BF16 ? CG_EP_AUX_BF16 : CG_EP_AUX_F16;
        ep.aux = vals[in->args[0]].ptr;
        continue;   /* prev stays the product */
      }
      /* the last member: the final value stored in 16 bits too */
      if (k != n - 1) ir_die("cg_kernel_gemm_fused: a cast inside a gemm group");
      ep.flags |= vals[v].t->dtype == DT_BF16 ? CG_EP_STORE_BF16 : CG_EP_STORE_F16;
      ep.out2 = vals[v].ptr;   /* with STORE_PRE: act(x) there, in 16 bits alone (the plan */
      break;                   /* left the f32 activation internal) */
    default:
      ir_die("cg_kernel_gemm_fused: %s in a gemm group", ir_ops[in->op].name);
    }
    prev = v;
  }
  if (!dst || (ep.flags & (CG_EP_BIAS | CG_EP_BIAS_ROW) && !ep.bias) || (ep.flags & CG_EP_STORE_PRE && !ep.out2) ||
      (ep.flags & CG_EP_MASKS && !ep.aux) ||
      (ep.flags & CG_EP_BN_ROW && (!ep.mean || !ep.rstd)) || (ep.flags & CG_EP_SCALE_ROW && !ep.gamma) ||
      (ep.flags & CG_EP_SHIFT_ROW && !ep.beta) || (ep.flags & (CG_EP_BN_ROW | CG_EP_SCALE_ROW) && gi->op != OP_CONV2D))
    ir_die("cg_kernel_gemm_fused: a fused value has no buffer");
  if (gi->op == OP_CONV2D) {   /* conv.c: C is y, one image at a time */
    CgVal y = *c;
    y.ptr = dst;
    cg_kernel_conv(cg, gi, &vals[gi->args[0]], &vals[gi->args[1]], &y, &ep);
    return true;
  }
  return kernel_gemm(cg, f, gi, c->t, vals, dst, &ep);
}

typedef struct {
  LLVMValueRef z, p, g, base, mx, s, lab, k;
} XentCtx;

/* p = exp(z - max) / sum (the softmax kernel's formula), g = (p - onehot) * k */
static void xent_body(Cg *cg, void *ctxp, LLVMValueRef j, LLVMTypeRef T) {
  XentCtx *c = ctxp;
  LLVMBuilderRef B = cg->B;
  LLVMValueRef idx = LLVMBuildAdd(B, c->base, j, "");
  LLVMValueRef e = cg_exp(cg, LLVMBuildFSub(B, cg_load(cg, T, c->z, idx), cg_splat(cg, c->mx, T), ""));
  LLVMValueRef p = LLVMBuildFDiv(B, e, cg_splat(cg, c->s, T), "");
  if (c->p) cg_store(cg, p, c->p, idx);
  LLVMValueRef col = j, lab = LLVMBuildSExt(B, c->lab, cg->t_i64, "");
  if (cg_is_vec(T)) {
    unsigned w = LLVMGetVectorSize(T);
    LLVMValueRef iota[64];
    for (unsigned i = 0; i < w; i++) iota[i] = cg_i64(cg, i);
    LLVMTypeRef VI = LLVMVectorType(cg->t_i64, w);
    col = LLVMBuildAdd(B, cg_splat(cg, j, VI), LLVMConstVector(iota, w), "");
    lab = cg_splat(cg, lab, VI);
  }
  LLVMValueRef oh = LLVMBuildSelect(B, LLVMBuildICmp(B, LLVMIntEQ, col, lab, ""), cg_fconst(cg, T, 1), cg_fconst(cg, T, 0), "");
  LLVMValueRef g = LLVMBuildFMul(B, LLVMBuildFSub(B, p, oh, ""), cg_splat(cg, c->k, T), "");
  cg_store(cg, g, c->g, idx);
}

/* members: l = softmax_xent(z, y), [p = softmax(z)], o = onehot(y), s = sub(p, o),
 * g = mul(s, k). Per row: max and sum of exp over the logits, the loss row, then p and g
 * in one sweep; o and s never exist in memory. */
bool cg_kernel_xent_fused(Cg *cg, Func *f, const int32_t *members, int n, const CgVal *vals) {
  const Inst *li = &f->insts[members[0]];
  const CgVal *z = &vals[li->args[0]], *y = &vals[li->args[1]], *loss = &vals[members[0]];
  LLVMValueRef pptr = NULL, gptr = NULL, k = NULL;
  for (int q = 1; q < n; q++) {
    const Inst *in = &f->insts[members[q]];
    if (in->op == OP_SOFTMAX) pptr = vals[members[q]].ptr;   /* NULL when internal */
    if (in->op == OP_MUL) {
      int32_t kv = is_member(members, n, in->args[0]) ? in->args[1] : in->args[0];
      k = cg_val_load(cg, &vals[kv], cg->t_f32, cg_i64(cg, 0));
      gptr = vals[members[q]].ptr;
    }
  }
  if (!gptr || !k || !loss->ptr || !z->ptr) ir_die("cg_kernel_xent_fused: a fused value has no buffer");
  LLVMValueRef rows, C;
  xent_rows(cg, z, &rows, &C);
  CgLoop l = cg_loop_begin(cg, cg_i64(cg, 0), rows, cg_i64(cg, 1));
  XentRow x = xent_row(cg, z, y, loss, l.iv, C);
  XentCtx c = {z->ptr, pptr, gptr, x.base, x.mx, x.s, x.lab, k};
  cg_vloop(cg, C, xent_body, &c);
  cg_loop_end(cg, &l);
  return true;
}

/* ------------------------------------------------------------------ shape movement */

/* transpose by a permutation (ranks 2 to 4), y.dims[i] = x.dims[perm[i]]. Both seen at
 * rank 4 (leading dims of 1); SX[i] is x's stride along y's dim i. Two shapes:
 *   rows   perm keeps the last dim (the head split [B,T,H,D] -> [B,H,T,D]): each line
 *          of y's last dim is a contiguous line of x, a vector copy
 *   tiles  x's contiguous dim becomes y's dim q < 3: W x W tiles over (q, 3), each
 *          loaded as W vectors along x's contiguous dim, transposed in registers
 *          (log2 W rounds of shufflevector) and stored as W vectors along y's last
 *          dim; edge tiles element by element
 * A task over units (lines, or rows of tiles), run through parallel_for from
 * TR_PAR elements on; units are independent, so the split changes no result. */
enum { TX_X, TX_Y, TX_Y0, TX_Y1, TX_Y2, TX_Y3, TX_S0, TX_S1, TX_S2, TX_S3, TX__COUNT };
#define TR_PAR 65536
#define TR_GRAIN 16384

static LLVMTypeRef tx_type(Cg *cg) {
  LLVMTypeRef f[TX__COUNT];
  for (int i = 0; i < TX__COUNT; i++) f[i] = i < 2 ? cg->t_ptr : cg->t_i64;
  return LLVMStructTypeInContext(cg->C, f, TX__COUNT, 0);
}

typedef struct {
  LLVMValueRef src, dst, sbase, dbase;
} CopyRowCtx;

static void copyrow_body(Cg *cg, void *p, LLVMValueRef j, LLVMTypeRef T) {
  CopyRowCtx *c = p;
  cg_store(cg, cg_load(cg, T, c->src, LLVMBuildAdd(cg->B, c->sbase, j, "")), c->dst, LLVMBuildAdd(cg->B, c->dbase, j, ""));
}

/* v[r][l] <- v[l][r]: a W x W block transposed in registers (W a power of two, <= 64),
 * log2 W stages of two-vector shuffles (stage h swaps the off-diagonal h x h blocks of
 * every 2h x 2h block). The transposes, the convolutions' lane paths, the GEMM's
 * transposed packing and attention's K and V tiles share it. */
void cg_reg_transpose(Cg *cg, LLVMValueRef *v, int W) {
  for (int b = W / 2; b >= 1; b /= 2) {
    LLVMValueRef mx[64], my[64];
    for (int c = 0; c < W; c++) {
      mx[c] = LLVMConstInt(cg->t_i32, (unsigned long long)((c & b) ? W + c - b : c), 0);
      my[c] = LLVMConstInt(cg->t_i32, (unsigned long long)((c & b) ? W + c : c + b), 0);
    }
    LLVMValueRef maskx = LLVMConstVector(mx, (unsigned)W), masky = LLVMConstVector(my, (unsigned)W);
    for (int i = 0; i < W; i++) {
      if (i & b) continue;
      LLVMValueRef x = v[i], y = v[i + b];
      v[i] = LLVMBuildShuffleVector(cg->B, x, y, maskx, "");
      v[i + b] = LLVMBuildShuffleVector(cg->B, x, y, masky, "");
    }
  }
}

static LLVMValueRef tr_task(Cg *cg, int q) {
  LLVMBuilderRef B = cg->B;
  LLVMValueRef fn = cg_new_function(cg, "bpcc_transpose_task", cg->t_task, true);
  cg->fn = fn;
  LLVMPositionBuilderAtEnd(B, LLVMAppendBasicBlockInContext(cg->C, fn, "entry"));
  LLVMTypeRef ct = tx_type(cg);
  LLVMValueRef ctx = LLVMGetParam(fn, 0), f[TX__COUNT];
  for (unsigned i = 0; i < TX__COUNT; i++)
    f[i] = LLVMBuildLoad2(B, LLVMStructGetTypeAtIndex(ct, i), LLVMBuildStructGEP2(B, ct, ctx, i, ""), "");
  LLVMValueRef *Y = &f[TX_Y0], *SX = &f[TX_S0], one = cg_i64(cg, 1);
  LLVMValueRef SY[4] = {NULL, NULL, NULL, one};
  for (int i = 2; i >= 0; i--) SY[i] = LLVMBuildMul(B, SY[i + 1], Y[i + 1], "");
  CgLoop lu = cg_loop_begin(cg, LLVMGetParam(fn, 1), LLVMGetParam(fn, 2), one);
  if (q == 3) {   /* rows: unit u = line (i0, i1, i2) of y */
    LLVMValueRef i2 = LLVMBuildSRem(B, lu.iv, Y[2], ""), t = LLVMBuildSDiv(B, lu.iv, Y[2], "");
    LLVMValueRef i1 = LLVMBuildSRem(B, t, Y[1], ""), i0 = LLVMBuildSDiv(B, t, Y[1], "");
    LLVMValueRef xb = LLVMBuildAdd(B, LLVMBuildAdd(B, LLVMBuildMul(B, i0, SX[0], ""), LLVMBuildMul(B, i1, SX[1], ""), ""),
                                   LLVMBuildMul(B, i2, SX[2], ""), "");
    CopyRowCtx c = {f[TX_X], f[TX_Y], xb, LLVMBuildMul(B, lu.iv, Y[3], "")};
    cg_vloop(cg, Y[3], copyrow_body, &c);
  } else {   /* tiles: unit u = (j1, j2, tile row ta) over y's dims o1, o2 and q */
    int o[2], no = 0;
    for (int i = 0; i < 3; i++)
      if (i != q) o[no++] = i;
    int TW = cg->W > 1 ? cg->W : 16;
    LLVMValueRef tw = cg_i64(cg, TW);
    LLVMValueRef nta = LLVMBuildSDiv(B, LLVMBuildAdd(B, Y[q], cg_i64(cg, TW - 1), ""), tw, "");
    LLVMValueRef ta = LLVMBuildSRem(B, lu.iv, nta, ""), t = LLVMBuildSDiv(B, lu.iv, nta, "");
    LLVMValueRef j2 = LLVMBuildSRem(B, t, Y[o[1]], ""), j1 = LLVMBuildSDiv(B, t, Y[o[1]], "");
    LLVMValueRef a0 = LLVMBuildMul(B, ta, tw, "");
    LLVMValueRef xb = LLVMBuildAdd(B, LLVMBuildAdd(B, LLVMBuildMul(B, j1, SX[o[0]], ""), LLVMBuildMul(B, j2, SX[o[1]], ""), ""), a0, "");
    LLVMValueRef yb = LLVMBuildAdd(B, LLVMBuildAdd(B, LLVMBuildMul(B, j1, SY[o[0]], ""), LLVMBuildMul(B, j2, SY[o[1]], ""), ""),
                                   LLVMBuildMul(B, a0, SY[q], ""), "");
    LLVMValueRef na = cg_min_i64(cg, tw, LLVMBuildSub(B, Y[q], a0, ""));
    CgLoop lb = cg_loop_begin(cg, cg_i64(cg, 0), Y[3], tw);
    LLVMValueRef nb = cg_min_i64(cg, tw, LLVMBuildSub(B, Y[3], lb.iv, ""));
    LLVMValueRef full = LLVMBuildAnd(B, LLVMBuildICmp(B, LLVMIntEQ, na, tw, ""), LLVMBuildICmp(B, LLVMIntEQ, nb, tw, ""), "");
    if (cg->W > 1) {
      LLVMBasicBlockRef bfull = LLVMAppendBasicBlockInContext(cg->C, fn, "trfull");
      LLVMBasicBlockRef bedge = LLVMAppendBasicBlockInContext(cg->C, fn, "tredge");
      LLVMBasicBlockRef bjoin = LLVMAppendBasicBlockInContext(cg->C, fn, "trjoin");
      LLVMBuildCondBr(B, full, bfull, bedge);
      LLVMPositionBuilderAtEnd(B, bfull);
      LLVMValueRef v[64];
      for (int b = 0; b < TW; b++)   /* x's line at y column b0 + b: W elements along q */
        v[b] = cg_load(cg, cg->t_vec, f[TX_X], LLVMBuildAdd(B, xb, LLVMBuildMul(B, LLVMBuildAdd(B, lb.iv, cg_i64(cg, b), ""), SX[3], ""), ""));
      cg_reg_transpose(cg, v, TW);
      for (int a = 0; a < TW; a++)
        cg_store(cg, v[a], f[TX_Y], LLVMBuildAdd(B, LLVMBuildAdd(B, yb, LLVMBuildMul(B, cg_i64(cg, a), SY[q], ""), ""), lb.iv, ""));
      LLVMBuildBr(B, bjoin);
      LLVMPositionBuilderAtEnd(B, bedge);
      CgLoop la = cg_loop_begin(cg, cg_i64(cg, 0), na, one);
      CgLoop lc = cg_loop_begin(cg, cg_i64(cg, 0), nb, one);
      LLVMValueRef col = LLVMBuildAdd(B, lb.iv, lc.iv, "");
      LLVMValueRef val = cg_load(cg, cg->t_f32, f[TX_X], LLVMBuildAdd(B, LLVMBuildAdd(B, xb, la.iv, ""), LLVMBuildMul(B, col, SX[3], ""), ""));
      cg_store(cg, val, f[TX_Y], LLVMBuildAdd(B, LLVMBuildAdd(B, yb, LLVMBuildMul(B, la.iv, SY[q], ""), ""), col, ""));
      cg_loop_end_hint(cg, &lc, CG_LOOP_NO_VECTORIZE | CG_LOOP_NO_UNROLL);
      cg_loop_end_hint(cg, &la, CG_LOOP_NO_VECTORIZE | CG_LOOP_NO_UNROLL);
      LLVMBuildBr(B, bjoin);
      LLVMPositionBuilderAtEnd(B, bjoin);
    } else {
      (void)full;
      CgLoop la = cg_loop_begin(cg, cg_i64(cg, 0), na, one);
      CgLoop lc = cg_loop_begin(cg, cg_i64(cg, 0), nb, one);
      LLVMValueRef col = LLVMBuildAdd(B, lb.iv, lc.iv, "");
      LLVMValueRef val = cg_load(cg, cg->t_f32, f[TX_X], LLVMBuildAdd(B, LLVMBuildAdd(B, xb, la.iv, ""), LLVMBuildMul(B, col, SX[3], ""), ""));
      cg_store(cg, val, f[TX_Y], LLVMBuildAdd(B, LLVMBuildAdd(B, yb, LLVMBuildMul(B, la.iv, SY[q], ""), ""), col, ""));
      cg_loop_end(cg, &lc);
      cg_loop_end(cg, &la);
    }
    cg_loop_end(cg, &lb);
  }
  cg_loop_end(cg, &lu);
  LLVMBuildRetVoid(B);
  return fn;
}

static void kernel_transpose(Cg *cg, const Inst *in, const CgVal *x, const CgVal *y) {
  LLVMBuilderRef B = cg->B;
  int r = x->t->rank, perm[4];
  if (!ir_transpose_perm(in, r, perm)) ir_die("kernel_transpose: a bad permutation %lld", (long long)in->iattr[0]);
  int pad = 4 - r, q = 3;
  LLVMValueRef Y[4], SX[4];
  for (int i = 0; i < 4; i++) {
    if (i < pad) {
      Y[i] = cg_i64(cg, 1), SX[i] = cg_i64(cg, 0);
      continue;
    }
    int xd = perm[i - pad];
    Y[i] = cg_dim(cg, x->t, xd);
    SX[i] = cg_dims_prod(cg, x->t, xd + 1, r);
    if (xd == r - 1) q = i;
  }
  CgAside aside = cg_aside_begin(cg);
  LLVMValueRef task = tr_task(cg, q);
  cg_aside_end(cg, aside);
  /* units and the elements in one */
  LLVMValueRef units, per;
  if (q == 3) {
    units = LLVMBuildMul(B, LLVMBuildMul(B, Y[0], Y[1], ""), Y[2], "");
    per = Y[3];
  } else {
    int TW = cg->W > 1 ? cg->W : 16, o[2], no = 0;
    for (int i = 0; i < 3; i++)
      if (i != q) o[no++] = i;
    LLVMValueRef nta = LLVMBuildSDiv(B, LLVMBuildAdd(B, Y[q], cg_i64(cg, TW - 1), ""), cg_i64(cg, TW), "");
    units = LLVMBuildMul(B, LLVMBuildMul(B, Y[o[0]], Y[o[1]], ""), nta, "");
    per = LLVMBuildMul(B, Y[3], cg_i64(cg, TW), "");
  }
  LLVMTypeRef ct = tx_type(cg);
  LLVMValueRef ctx = cg_alloca(cg, ct, "trctx");
  LLVMValueRef fields[TX__COUNT] = {x->ptr, y->ptr, Y[0], Y[1], Y[2], Y[3], SX[0], SX[1], SX[2], SX[3]};
  for (unsigned i = 0; i < TX__COUNT; i++) LLVMBuildStore(B, fields[i], LLVMBuildStructGEP2(B, ct, ctx, i, ""));
  LLVMValueRef total = cg_numel(cg, y->t);
  LLVMValueRef par = LLVMBuildAnd(B, LLVMBuildICmp(B, LLVMIntSGT, cg_frame_field(cg, CG_FR_NTHREADS), cg_i32(cg, 1), ""),
                                  LLVMBuildICmp(B, LLVMIntSGE, total, cg_i64(cg, TR_PAR), ""), "");
  LLVMValueRef per1 = LLVMBuildSelect(B, LLVMBuildICmp(B, LLVMIntSLT, per, cg_i64(cg, 1), ""), cg_i64(cg, 1), per, "");
  LLVMValueRef grain = LLVMBuildAdd(B, LLVMBuildSDiv(B, cg_i64(cg, TR_GRAIN), per1, ""), cg_i64(cg, 1), "");
  cg_run_task(cg, par, units, grain, task, ctx, units);
}

typedef struct {
  LLVMValueRef src, dst, sbase, dbase;
} AddCtx;

static void addto_body(Cg *cg, void *p, LLVMValueRef j, LLVMTypeRef T) {
  AddCtx *c = p;
  LLVMValueRef di = LLVMBuildAdd(cg->B, c->dbase, j, "");
  LLVMValueRef v = LLVMBuildFAdd(cg->B, cg_load(cg, T, c->dst, di), cg_load(cg, T, c->src, LLVMBuildAdd(cg->B, c->sbase, j, "")), "");
  cg_store(cg, v, c->dst, di);
}

/* out (small) = the operand (big) summed over the dims broadcasting stretched. */
static void kernel_sum_to(Cg *cg, const CgVal *a, const CgVal *out) {
  LLVMBuilderRef B = cg->B;
  const TensorType *big = a->t, *small = out->t;
  fill(cg, out->ptr, cg_numel(cg, small), 0.0);
  int r = big->rank;
  if (r == 0) {
    cg_store(cg, cg_val_load(cg, a, cg->t_f32, cg_i64(cg, 0)), out->ptr, cg_i64(cg, 0));
    return;
  }
  /* trailing dims summed away (1 in small, aligned to the right) make one contiguous row:
   * a bias gradient [O, 1, 1] of [B, O, H, W] sums rows of H W, not H rows of W */
  int il = small->rank - 1;
  bool inner_bcast = il < 0 || (small->dims[il] == 1 && big->dims[r - 1] != 1);
  int inner = r - 1;
  while (inner_bcast && inner > 0) {
    int k = small->rank - (r - (inner - 1));   /* small's dim under big's dim inner - 1 */
    if (k >= 0 && small->dims[k] != 1) break;
    inner--;
  }
  CgLoop loops[IR_MAX_RANK];
  for (int d = 0; d < inner; d++) loops[d] = cg_loop_begin(cg, cg_i64(cg, 0), cg_dim(cg, big, d), cg_i64(cg, 1));
  LLVMValueRef sbase = cg_i64(cg, 0), dbase = cg_i64(cg, 0);
  for (int d = 0; d < inner; d++) {
    sbase = LLVMBuildAdd(B, sbase, LLVMBuildMul(B, loops[d].iv, cg_dims_prod(cg, big, d + 1, r), ""), "");
    dbase = LLVMBuildAdd(B, dbase, LLVMBuildMul(B, loops[d].iv, bcast_stride(cg, small, big, d), ""), "");
  }
  LLVMValueRef n = cg_dims_prod(cg, big, inner, r);
  if (inner_bcast) {
    LLVMValueRef s = row_reduce(cg, OP_SUM, a->ptr, sbase, n, NULL, NULL);
    LLVMValueRef old = cg_load(cg, cg->t_f32, out->ptr, dbase);
    cg_store(cg, LLVMBuildFAdd(B, old, s, ""), out->ptr, dbase);
  } else {
    AddCtx c = {a->ptr, out->ptr, sbase, dbase};
    cg_vloop(cg, n, addto_body, &c);
  }
  for (int d = inner - 1; d >= 0; d--) cg_loop_end(cg, &loops[d]);
}

/* ------------------------------------------------------------------ layer norm */

/* layernorm, layernorm_bwd and layernorm_bwd_gamma over rows of N elements (the last k
 * dims of x, a compile-time constant: they never hold B). Per row r, base = r N:
 *   1. mean = sum(x) / N, then var = sum((x - mean)^2) / N: two vector passes over the
 *      row (the second finds it in L1 for any N up to 8K f32), accumulated in f64 lanes
 *      like every sum here; rstd = 1 / sqrt(var + eps) in double, then the element type.
 *      Two passes rather than one of sum and sum of squares: no cancellation when
 *      |mean| >> std.
 *   2. layernorm:      y = (x - mean) rstd gamma + beta
 *      layernorm_bwd:  a third pass for sum(g) and sum(g xhat), g = dy gamma, then
 *                      dx = rstd (g - mean(g) - xhat mean(g xhat))
 *      layernorm_bwd_gamma: dgamma[j] += dy xhat over the rows in order (zeroed first).
 * layernorm and layernorm_bwd run as a task over ranges of rows (rows are independent,
 * so the result does not depend on the split) through frame->parallel_for when the pool
 * has more than one thread, at least LN_GRAIN elements per chunk; layernorm_bwd_gamma
 * sums over rows into one [N] result and runs on the calling thread (it reads x and dy
 * once). No buffer besides the operands and the result. */
#define LN_GRAIN 32768

enum { LN_SUM, LN_VAR, LN_GSUMS, LN_APPLY, LN_DX, LN_DGAMMA };

typedef struct {
  int mode;
  LLVMValueRef x, gamma, side, out;   /* side: beta (LN_APPLY) or dy */
  LLVMValueRef base;                  /* the row's first element */
  LLVMValueRef mean, rstd, mg, mgx;   /* element-type scalars */
  LLVMValueRef acc[2][2];             /* two sums: [which][vector, scalar] allocas */
} LnCtx;

static void ln_acc_add(Cg *cg, LnCtx *c, int which, LLVMValueRef v, LLVMTypeRef T) {
  sum_acc(cg, c->acc[which][0], c->acc[which][1], sum_wide(cg, v, T), T);
}

static void ln_body(Cg *cg, void *p, LLVMValueRef j, LLVMTypeRef T) {
  LnCtx *c = p;
  LLVMBuilderRef B = cg->B;
  LLVMValueRef idx = LLVMBuildAdd(B, c->base, j, "");
  LLVMValueRef x = cg_load(cg, T, c->x, idx);
  if (c->mode == LN_SUM) {
    ln_acc_add(cg, c, 0, x, T);
    return;
  }
  LLVMValueRef d = LLVMBuildFSub(B, x, cg_splat(cg, c->mean, T), "");
  if (c->mode == LN_VAR) {
    ln_acc_add(cg, c, 0, LLVMBuildFMul(B, d, d, ""), T);
    return;
  }
  LLVMValueRef xhat = LLVMBuildFMul(B, d, cg_splat(cg, c->rstd, T), "xhat");
  if (c->mode == LN_APPLY) {
    LLVMValueRef y = LLVMBuildFMul(B, xhat, cg_load(cg, T, c->gamma, j), "");
    cg_store(cg, LLVMBuildFAdd(B, y, cg_load(cg, T, c->side, j), ""), c->out, idx);
    return;
  }
  LLVMValueRef dy = cg_load(cg, T, c->side, idx);
  if (c->mode == LN_DGAMMA) {
    cg_store(cg, LLVMBuildFAdd(B, cg_load(cg, T, c->out, j), LLVMBuildFMul(B, dy, xhat, ""), ""), c->out, j);
    return;
  }
  LLVMValueRef g = LLVMBuildFMul(B, dy, cg_load(cg, T, c->gamma, j), "g");
  if (c->mode == LN_GSUMS) {
    ln_acc_add(cg, c, 0, g, T);
    ln_acc_add(cg, c, 1, LLVMBuildFMul(B, g, xhat, ""), T);
    return;
  }
  /* LN_DX */
  LLVMValueRef t = LLVMBuildFSub(B, LLVMBuildFSub(B, g, cg_splat(cg, c->mg, T), ""),
                                 LLVMBuildFMul(B, xhat, cg_splat(cg, c->mgx, T), ""), "");
  cg_store(cg, LLVMBuildFMul(B, t, cg_splat(cg, c->rstd, T), ""), c->out, idx);
}

/* One pass of mode over the row; the mode's sums (f64) into sums[]. */
static void ln_pass(Cg *cg, LnCtx *c, int mode, int64_t n, LLVMValueRef sums[2]) {
  int nacc = mode == LN_GSUMS ? 2 : mode == LN_SUM || mode == LN_VAR ? 1 : 0;
  LLVMTypeRef VT = acc_type(cg, OP_SUM, cg->t_vec), ST = acc_type(cg, OP_SUM, cg->t_f32);
  for (int q = 0; q < nacc; q++) {
    LLVMBuildStore(cg->B, cg_fconst(cg, VT, 0), c->acc[q][0]);
    LLVMBuildStore(cg->B, cg_fconst(cg, ST, 0), c->acc[q][1]);
  }
  c->mode = mode;
  cg_vloop(cg, cg_i64(cg, n), ln_body, c);
  for (int q = 0; q < nacc; q++) {
    LLVMValueRef v = cg_hsum(cg, LLVMBuildLoad2(cg->B, VT, c->acc[q][0], ""));
    LLVMValueRef r = LLVMBuildFAdd(cg->B, v, LLVMBuildLoad2(cg->B, ST, c->acc[q][1], ""), "");
    sums[q] = ST == cg->t_f64 ? r : LLVMBuildFPExt(cg->B, r, cg->t_f64, "");
  }
}

static LLVMValueRef to_elem(Cg *cg, LLVMValueRef d) {
  return cg->t_f32 == cg->t_f64 ? d : LLVMBuildFPTrunc(cg->B, d, cg->t_f32, "");
}

/* Rows [r0, r1) of op into c->out (accumulating for LN_DGAMMA). */
static void ln_rows(Cg *cg, LnCtx *c, Op op, int64_t n, double eps, LLVMValueRef r0, LLVMValueRef r1) {
  LLVMBuilderRef B = cg->B;
  LLVMTypeRef VT = acc_type(cg, OP_SUM, cg->t_vec), ST = acc_type(cg, OP_SUM, cg->t_f32);
  for (int q = 0; q < 2; q++) {
    c->acc[q][0] = cg_alloca(cg, VT, "lnaccv");
    c->acc[q][1] = cg_alloca(cg, ST, "lnaccs");
  }
  LLVMValueRef dn = LLVMConstReal(cg->t_f64, (double)n);
  CgLoop lr = cg_loop_begin(cg, r0, r1, cg_i64(cg, 1));
  c->base = LLVMBuildMul(B, lr.iv, cg_i64(cg, n), "lnbase");
  LLVMValueRef sums[2];
  ln_pass(cg, c, LN_SUM, n, sums);
  c->mean = to_elem(cg, LLVMBuildFDiv(B, sums[0], dn, "mean"));
  ln_pass(cg, c, LN_VAR, n, sums);
  LLVMValueRef ve = LLVMBuildFAdd(B, LLVMBuildFDiv(B, sums[0], dn, ""), LLVMConstReal(cg->t_f64, eps), "");
  LLVMValueRef sd = cg_intrinsic(cg, "llvm.sqrt", cg->t_f64, &ve, 1);
  c->rstd = to_elem(cg, LLVMBuildFDiv(B, LLVMConstReal(cg->t_f64, 1.0), sd, "rstd"));
  if (op == OP_LAYERNORM) {
    ln_pass(cg, c, LN_APPLY, n, sums);
  } else if (op == OP_LAYERNORM_BWD_GAMMA) {
    ln_pass(cg, c, LN_DGAMMA, n, sums);
  } else {
    ln_pass(cg, c, LN_GSUMS, n, sums);
    c->mg = to_elem(cg, LLVMBuildFDiv(B, sums[0], dn, "mg"));
    c->mgx = to_elem(cg, LLVMBuildFDiv(B, sums[1], dn, "mgx"));
    ln_pass(cg, c, LN_DX, n, sums);
  }
  cg_loop_end(cg, &lr);
}

/* The task of a layernorm or layernorm_bwd instruction: rows [i0, i1) with the four
 * pointers (x, gamma, beta or dy, out) from its context. */
static LLVMValueRef ln_task(Cg *cg, Op op, int64_t n, double eps) {
  LLVMTypeRef ptrs[4] = {cg->t_ptr, cg->t_ptr, cg->t_ptr, cg->t_ptr};
  LLVMTypeRef ct = LLVMStructTypeInContext(cg->C, ptrs, 4, 0);
  LLVMValueRef fn = cg_new_function(cg, op == OP_LAYERNORM ? "bpcc_layernorm_task" : "bpcc_layernorm_bwd_task",
                                    cg->t_task, true);
  cg->fn = fn;
  LLVMPositionBuilderAtEnd(cg->B, LLVMAppendBasicBlockInContext(cg->C, fn, "entry"));
  LLVMValueRef ctx = LLVMGetParam(fn, 0), f[4];
  for (unsigned i = 0; i < 4; i++) f[i] = LLVMBuildLoad2(cg->B, cg->t_ptr, LLVMBuildStructGEP2(cg->B, ct, ctx, i, ""), "");
  LnCtx c;
  memset(&c, 0, sizeof c);
  c.x = f[0], c.gamma = f[1], c.side = f[2], c.out = f[3];
  ln_rows(cg, &c, op, n, eps, LLVMGetParam(fn, 1), LLVMGetParam(fn, 2));
  LLVMBuildRetVoid(cg->B);
  return fn;
}

static void kernel_layernorm(Cg *cg, Func *f, const Inst *in, const CgVal *vals, const CgVal *out) {
  LLVMBuilderRef B = cg->B;
  Op op = (Op)in->op;
  const CgVal *x = &vals[in->args[0]];
  int k = (int)in->iattr[0];
  int64_t n = 1;
  for (int d = x->t->rank - k; d < x->t->rank; d++) n *= x->t->dims[d];
  LLVMValueRef rows = cg_dims_prod(cg, x->t, 0, x->t->rank - k);
  for (int a = 0; a < in->nargs; a++)
    if (!vals[in->args[a]].ptr) ir_die("layernorm: operand %d of %%%d has no buffer", a, in->args[a]);
  (void)f;
  if (op == OP_LAYERNORM_BWD_GAMMA) {
    fill(cg, out->ptr, cg_i64(cg, n), 0.0);
    LnCtx c;
    memset(&c, 0, sizeof c);
    c.x = x->ptr, c.side = vals[in->args[1]].ptr, c.out = out->ptr;
    ln_rows(cg, &c, op, n, in->fattr[0], cg_i64(cg, 0), rows);
    return;
  }
  /* the task is a function of its own: build it, then come back */
  CgAside aside = cg_aside_begin(cg);
  LLVMValueRef task = ln_task(cg, op, n, in->fattr[0]);
  cg_aside_end(cg, aside);

  LLVMTypeRef ptrs[4] = {cg->t_ptr, cg->t_ptr, cg->t_ptr, cg->t_ptr};
  LLVMTypeRef ct = LLVMStructTypeInContext(cg->C, ptrs, 4, 0);
  LLVMValueRef ctx = cg_alloca(cg, ct, "lnctx");
  LLVMValueRef fields[4] = {x->ptr, vals[in->args[1]].ptr, vals[in->args[2]].ptr, out->ptr};
  for (unsigned i = 0; i < 4; i++) LLVMBuildStore(B, fields[i], LLVMBuildStructGEP2(B, ct, ctx, i, ""));
  LLVMValueRef par = LLVMBuildICmp(B, LLVMIntSGT, cg_frame_field(cg, CG_FR_NTHREADS), cg_i32(cg, 1), "");
  int64_t grain = n >= LN_GRAIN ? 1 : (LN_GRAIN + n - 1) / n;
  cg_run_task(cg, par, rows, cg_i64(cg, grain), task, ctx, rows);
}

/* ------------------------------------------------------------------ dropout */

/* mask[i] = u(seed, stream, i) < p ? 0 : 1 / (1 - p), u = (philox word >> 8) 2^-24, with
 * stream = 1<<62 | id<<40 | step (runtime.h bprt_stream_dropout). Without training
 * (the forward entry) dropout is the identity: mask = 1. */
static void kernel_dropout(Cg *cg, const Inst *in, const CgVal *out, bool training) {
  LLVMBuilderRef B = cg->B;
  LLVMValueRef n = cg_numel(cg, out->t);
  if (!training) {
    fill(cg, out->ptr, n, 1.0);
    return;
  }
  float p = (float)in->fattr[0];
  float scale = 1.0f / (1.0f - p);
  LLVMValueRef step = LLVMBuildAnd(B, cg_frame_field(cg, CG_FR_STEP), cg_i64(cg, (INT64_C(1) << 40) - 1), "");
  uint64_t hi = (UINT64_C(1) << 62) | ((uint64_t)(in->iattr[0] & 0x3fffff) << 40);
  LLVMValueRef stream = LLVMBuildOr(B, step, LLVMConstInt(cg->t_i64, hi, 0), "stream");
  LLVMValueRef seed = cg_frame_field(cg, CG_FR_SEED);
  LLVMValueRef nblk = LLVMBuildSDiv(B, LLVMBuildAdd(B, n, cg_i64(cg, 3), ""), cg_i64(cg, 4), "");
  CgLoop l = cg_loop_begin(cg, cg_i64(cg, 0), nblk, cg_i64(cg, 1));
  LLVMValueRef w[4];
  cg_philox(cg, l.iv, stream, seed, w);
  for (int lane = 0; lane < 4; lane++) {
    LLVMValueRef i = LLVMBuildAdd(B, LLVMBuildMul(B, l.iv, cg_i64(cg, 4), ""), cg_i64(cg, lane), "");
    LLVMBasicBlockRef join = cg_if_begin(cg, LLVMBuildICmp(B, LLVMIntSLT, i, n, ""));
    LLVMValueRef u = LLVMBuildUIToFP(B, LLVMBuildLShr(B, w[lane], cg_i32(cg, 8), ""), cg->t_f32, "");
    u = LLVMBuildFMul(B, u, LLVMConstReal(cg->t_f32, 1.0 / 16777216.0), "");
    LLVMValueRef drop = LLVMBuildFCmp(B, LLVMRealOLT, u, LLVMConstReal(cg->t_f32, p), "");
    LLVMValueRef v = LLVMBuildSelect(B, drop, LLVMConstReal(cg->t_f32, 0.0), LLVMConstReal(cg->t_f32, scale), "");
    cg_store(cg, v, out->ptr, i);
    cg_if_end(cg, join);
  }
  cg_loop_end(cg, &l);
}

/* ------------------------------------------------------------------ dispatch */

/* ------------------------------------------------------------------ batchnorm */

/* The batchnorm ops (ops.def) per channel c of x viewed as [N, C, S] (S = H*W, 1 for
 * [N, C]): channel c is N rows of S contiguous elements at (b C + c) S. Each row is a
 * vector loop; sums accumulate in f64 lanes, as the interpreter's (a long f32 sum over
 * N*H*W values would lose digits). Channels are independent: the loop over them is
 * split across the thread pool when the work is large enough. */
typedef enum { BN_SUM, BN_SUMSQ, BN_NORM, BN_BWD_SUMS, BN_BWD_APPLY } BnPass;

typedef struct {
  BnPass pass;
  LLVMValueRef x, g, y;          /* element pointers (g: the cotangent; y: the result) */
  LLVMValueRef base;             /* the row's first element */
  LLVMValueRef m, r, mg, mgx;    /* per-channel scalars (T's element type) */
  LLVMValueRef accv, accs, accv2, accs2;   /* f64 accumulators: vector and scalar */
} BnCtx;

static void bn_body(Cg *cg, void *p, LLVMValueRef j, LLVMTypeRef T) {
  BnCtx *c = p;
  LLVMBuilderRef B = cg->B;
  LLVMValueRef idx = LLVMBuildAdd(B, c->base, j, "");
  LLVMValueRef x = cg_load(cg, T, c->x, idx);
  switch (c->pass) {
  case BN_SUM: sum_acc(cg, c->accv, c->accs, sum_wide(cg, x, T), T); break;
  case BN_SUMSQ: {   /* (x - m)^2 in f64 */
    LLVMValueRef xw = sum_wide(cg, x, T);
    LLVMValueRef d = LLVMBuildFSub(B, xw, cg_splat(cg, c->m, LLVMTypeOf(xw)), "");
    sum_acc(cg, c->accv, c->accs, LLVMBuildFMul(B, d, d, ""), T);
    break;
  }
  case BN_NORM:   /* xhat = (x - m) r */
    cg_store(cg, LLVMBuildFMul(B, LLVMBuildFSub(B, x, cg_splat(cg, c->m, T), ""), cg_splat(cg, c->r, T), ""), c->y, idx);
    break;
  case BN_BWD_SUMS: {   /* x is xhat here: sum(g), sum(g xhat) */
    LLVMValueRef g = cg_load(cg, T, c->g, idx);
    sum_acc(cg, c->accv, c->accs, sum_wide(cg, g, T), T);
    sum_acc(cg, c->accv2, c->accs2, sum_wide(cg, LLVMBuildFMul(B, g, x, ""), T), T);
    break;
  }
  case BN_BWD_APPLY: {  /* dx = r (g - mean(g) - xhat mean(g xhat)) */
    LLVMValueRef g = cg_load(cg, T, c->g, idx);
    LLVMValueRef t = LLVMBuildFSub(B, LLVMBuildFSub(B, g, cg_splat(cg, c->mg, T), ""),
                                   LLVMBuildFMul(B, x, cg_splat(cg, c->mgx, T), ""), "");
    cg_store(cg, LLVMBuildFMul(B, t, cg_splat(cg, c->r, T), ""), c->y, idx);
    break;
  }
  }
}

/* One pass over channel ch's N rows. */
static void bn_rows(Cg *cg, BnCtx *c, LLVMValueRef N, LLVMValueRef C, LLVMValueRef S, LLVMValueRef ch) {
  CgLoop lb = cg_loop_begin(cg, cg_i64(cg, 0), N, cg_i64(cg, 1));
  c->base = LLVMBuildMul(cg->B, LLVMBuildAdd(cg->B, LLVMBuildMul(cg->B, lb.iv, C, ""), ch, ""), S, "");
  cg_vloop(cg, S, bn_body, c);
  cg_loop_end(cg, &lb);
}

/* Zero the accumulators, run a pass, return the f64 sum (acc 1 or 2). */
static LLVMValueRef bn_sum(Cg *cg, LLVMValueRef accv, LLVMValueRef accs) {
  LLVMTypeRef VT = LLVMVectorType(cg->t_f64, (unsigned)cg->W), ST = cg->t_f64;
  if (cg->W == 1) VT = ST;
  LLVMValueRef h = cg_hsum(cg, LLVMBuildLoad2(cg->B, VT, accv, ""));
  return LLVMBuildFAdd(cg->B, h, LLVMBuildLoad2(cg->B, ST, accs, ""), "");
}

typedef struct {
  const Inst *in;
  const CgVal *x, *a1, *a2, *out;
} BnKernel;

/* The body of channel ch (an i64) of one batchnorm op: what the per-channel loop runs. */
static void bn_channel(Cg *cg, const BnKernel *k, LLVMValueRef ch) {
  LLVMBuilderRef B = cg->B;
  const TensorType *xt = k->x->t;
  LLVMValueRef N = cg_dim(cg, xt, 0), C = cg_dim(cg, xt, 1);
  LLVMValueRef S = xt->rank == 4 ? cg_dims_prod(cg, xt, 2, 4) : cg_i64(cg, 1);
  LLVMValueRef nf = LLVMBuildSIToFP(B, LLVMBuildMul(B, N, S, ""), cg->t_f64, "");
  LLVMTypeRef VT = cg->W == 1 ? cg->t_f64 : LLVMVectorType(cg->t_f64, (unsigned)cg->W), ST = cg->t_f64;
  BnCtx c;
  memset(&c, 0, sizeof c);
  c.x = k->x->ptr;
  c.y = k->out->ptr;
  c.accv = cg_alloca(cg, VT, "bnv");
  c.accs = cg_alloca(cg, ST, "bns");
  c.accv2 = cg_alloca(cg, VT, "bnv2");
  c.accs2 = cg_alloca(cg, ST, "bns2");
  LLVMValueRef accs[4] = {c.accv, c.accs, c.accv2, c.accs2};
  for (int i = 0; i < 4; i++) LLVMBuildStore(B, cg_fconst(cg, i % 2 ? ST : VT, 0.0), accs[i]);
  LLVMTypeRef E = cg->t_f32;   /* the element type (double in an f64 model) */
  switch ((Op)k->in->op) {
  case OP_BN_MEAN:
  case OP_BN_VAR: {
    c.pass = k->in->op == OP_BN_MEAN ? BN_SUM : BN_SUMSQ;
    if (c.pass == BN_SUMSQ) {
      LLVMValueRef m = cg_val_load(cg, k->a1, E, ch);
      c.m = E == cg->t_f64 ? m : LLVMBuildFPExt(B, m, cg->t_f64, "");
    }
    bn_rows(cg, &c, N, C, S, ch);
    LLVMValueRef r = LLVMBuildFDiv(B, bn_sum(cg, c.accv, c.accs), nf, "");
    cg_store(cg, E == cg->t_f64 ? r : LLVMBuildFPTrunc(B, r, E, ""), k->out->ptr, ch);
    break;
  }
  case OP_BN_NORM: {
    const CgVal *rv = k->a2;
    c.pass = BN_NORM;
    c.m = cg_val_load(cg, k->a1, E, ch);
    c.r = cg_val_load(cg, rv, E, ch);
    bn_rows(cg, &c, N, C, S, ch);
    break;
  }
  case OP_BN_NORM_BWD: {
    c.g = k->a1->ptr;
    c.pass = BN_BWD_SUMS;
    bn_rows(cg, &c, N, C, S, ch);
    LLVMValueRef mg = LLVMBuildFDiv(B, bn_sum(cg, c.accv, c.accs), nf, "");
    LLVMValueRef mgx = LLVMBuildFDiv(B, bn_sum(cg, c.accv2, c.accs2), nf, "");
    c.mg = E == cg->t_f64 ? mg : LLVMBuildFPTrunc(B, mg, E, "");
    c.mgx = E == cg->t_f64 ? mgx : LLVMBuildFPTrunc(B, mgx, E, "");
    c.r = cg_val_load(cg, k->a2, E, ch);
    c.pass = BN_BWD_APPLY;
    bn_rows(cg, &c, N, C, S, ch);
    break;
  }
  default:
    ir_die("codegen: %s is not a batchnorm op", ir_ops[k->in->op].name);
  }
}

/* The channels [begin, end) as a parallel-for task: ctx = {frame, x, a1, a2, out}. The
 * task reads the batch from the frame (cg->frame is pointed at it while it is built). */
static LLVMValueRef bn_task(Cg *cg, const BnKernel *k) {
  LLVMBuilderRef B = cg->B;
  LLVMTypeRef ct = LLVMArrayType(cg->t_ptr, 5);
  LLVMValueRef fn = cg_new_function(cg, "bpcc_bn_task", cg->t_task, true);
  cg->fn = fn;
  LLVMPositionBuilderAtEnd(B, LLVMAppendBasicBlockInContext(cg->C, fn, "entry"));
  LLVMValueRef ctx = LLVMGetParam(fn, 0), p[5];
  for (int i = 0; i < 5; i++)
    p[i] = LLVMBuildLoad2(B, cg->t_ptr, LLVMBuildGEP2(B, ct, ctx, (LLVMValueRef[]){cg_i64(cg, 0), cg_i64(cg, i)}, 2, ""), "");
  cg->frame = p[0];
  CgVal x = *k->x, a1 = *k->a1, a2 = k->a2 ? *k->a2 : *k->a1, out = *k->out;
  x.ptr = p[1], a1.ptr = p[2], a2.ptr = p[3], out.ptr = p[4];
  BnKernel kk = {k->in, &x, &a1, k->a2 ? &a2 : NULL, &out};
  CgLoop lc = cg_loop_begin(cg, LLVMGetParam(fn, 1), LLVMGetParam(fn, 2), cg_i64(cg, 1));
  bn_channel(cg, &kk, lc.iv);
  cg_loop_end(cg, &lc);
  LLVMBuildRetVoid(B);
  return fn;
}

/* Channels are independent, so the loop over them is split across the pool (grain one
 * channel) when there are two threads, two channels and 32K elements; the values do not
 * depend on the split. */
static void kernel_bn(Cg *cg, const Inst *in, const CgVal *vals, const CgVal *out) {
  BnKernel k = {in, &vals[in->args[0]], &vals[in->args[1]], in->nargs > 2 ? &vals[in->args[2]] : NULL, out};
  LLVMBuilderRef B = cg->B;
  LLVMValueRef C = cg_dim(cg, k.x->t, 1);
  /* the task function, built on the side */
  LLVMValueRef frame = cg->frame;
  CgAside aside = cg_aside_begin(cg);
  LLVMValueRef task = bn_task(cg, &k);
  cg_aside_end(cg, aside);
  LLVMTypeRef ct = LLVMArrayType(cg->t_ptr, 5);
  LLVMValueRef ctx = cg_alloca(cg, ct, "bnctx");
  LLVMValueRef ptrs[5] = {frame, k.x->ptr, k.a1->ptr, k.a2 ? k.a2->ptr : k.a1->ptr, out->ptr};
  for (int i = 0; i < 5; i++)
    LLVMBuildStore(B, ptrs[i], LLVMBuildGEP2(B, ct, ctx, (LLVMValueRef[]){cg_i64(cg, 0), cg_i64(cg, i)}, 2, ""));
  LLVMValueRef big = LLVMBuildICmp(B, LLVMIntSGE, cg_numel(cg, k.x->t), cg_i64(cg, 32768), "");
  LLVMValueRef par = LLVMBuildAnd(B, LLVMBuildAnd(B, LLVMBuildICmp(B, LLVMIntSGT, cg_frame_field(cg, CG_FR_NTHREADS), cg_i32(cg, 1), ""),
                                                  LLVMBuildICmp(B, LLVMIntSGT, C, cg_i64(cg, 1), ""), ""), big, "");
  cg_run_task(cg, par, C, cg_i64(cg, 1), task, ctx, C);
}

/* A transpose and its neighbouring reshape in one copy (passes/kernel_plan.c,
 * view_chain): the reshape's value has no buffer of its own, so the transpose reads the
 * reshape's operand, or writes the reshape's result, under the reshape's type. */
bool cg_kernel_view(Cg *cg, Func *f, const int32_t *members, int n, const CgVal *vals) {
  if (n != 2) ir_die("transpose+reshape kernel of %d instructions", n);
  const Inst *a = &f->insts[members[0]], *b = &f->insts[members[1]];
  if (a->op == OP_RESHAPE && b->op == OP_TRANSPOSE) {
    CgVal x = vals[a->args[0]];
    x.t = vals[members[0]].t;
    kernel_transpose(cg, b, &x, &vals[members[1]]);
  } else if (a->op == OP_TRANSPOSE && b->op == OP_RESHAPE) {
    CgVal y = vals[members[1]];
    y.t = vals[members[0]].t;
    kernel_transpose(cg, a, &vals[a->args[0]], &y);
  } else {
    ir_die("transpose+reshape kernel of %s and %s", ir_ops[a->op].name, ir_ops[b->op].name);
  }
  return true;
}

bool cg_kernel(Cg *cg, Func *f, int32_t v, const CgVal *vals, bool training) {
  const Inst *in = &f->insts[v];
  const CgVal *out = &vals[v];
  const CgVal *a = in->nargs > 0 ? &vals[in->args[0]] : NULL;
  const CgVal *b = in->nargs > 1 ? &vals[in->args[1]] : NULL;
  switch ((Op)in->op) {
  case OP_INPUT: case OP_PARAM: case OP_CONST: case OP_BUFFER:
    return true;
  case OP_SIZE: {
    LLVMValueRef n = in->iattr[0] == IR_AXIS_ALL ? cg_dims_prod(cg, a->t, 0, a->t->rank) : cg_dim(cg, a->t, (int)in->iattr[0]);
    cg_store(cg, LLVMBuildSIToFP(cg->B, n, cg->t_f32, ""), out->ptr, cg_i64(cg, 0));
    return true;
  }
  case OP_MATMUL: case OP_MATMUL_NT: case OP_MATMUL_TN: return kernel_gemm(cg, f, in, out->t, vals, out->ptr, NULL);
  case OP_TRANSPOSE: kernel_transpose(cg, in, a, out); return true;
  case OP_SUM: case OP_MEAN: case OP_MAX: kernel_reduce(cg, in, a, out); return true;
  case OP_SUM_TO: kernel_sum_to(cg, a, out); return true;
  case OP_RESHAPE: cg_kernel_copy(cg, a, out->ptr, out->t); return true;   /* same elements, same order */
  case OP_SOFTMAX: case OP_LOG_SOFTMAX: kernel_softmax(cg, in, a, out); return true;
  case OP_ONEHOT: kernel_onehot(cg, a, out); return true;
  case OP_EMBEDDING: kernel_embedding(cg, a, b, out); return true;
  case OP_EMBEDDING_BWD: kernel_embedding_bwd(cg, a, b, out); return true;
  case OP_SOFTMAX_XENT: kernel_xent(cg, a, b, out); return true;
  case OP_DROPOUT_MASK: kernel_dropout(cg, in, out, training); return true;
  case OP_CAUSAL_MASK: kernel_causal_mask(cg, out); return true;
  case OP_LOSS_SCALE: {   /* frame->hyper[BPRT_H_LOSS_SCALE] * frame->grad_weight, doubles */
    LLVMValueRef h = cg_gep(cg, cg->t_f64, cg_frame_field(cg, CG_FR_HYPER), cg_i64(cg, BPRT_H_LOSS_SCALE));
    LLVMValueRef s = LLVMBuildLoad2(cg->B, cg->t_f64, h, "loss_scale");
    LLVMSetAlignment(s, 8);
    s = LLVMBuildFMul(cg->B, s, cg_frame_field(cg, CG_FR_GRAD_WEIGHT), "seed");
    cg_store(cg, LLVMBuildFPCast(cg->B, s, cg->t_f32, ""), out->ptr, cg_i64(cg, 0));
    return true;
  }
  case OP_LAYERNORM: case OP_LAYERNORM_BWD: case OP_LAYERNORM_BWD_GAMMA: kernel_layernorm(cg, f, in, vals, out); return true;
  case OP_CONV2D: case OP_CONV2D_BWD_DATA: case OP_CONV2D_BWD_WEIGHT: cg_kernel_conv(cg, in, a, b, out, NULL); return true;
  case OP_MAX_POOL2D: case OP_AVG_POOL2D: case OP_MAX_POOL2D_BWD: case OP_AVG_POOL2D_BWD:
    cg_kernel_pool(cg, in, a, b, out);
    return true;
  case OP_BN_MEAN: case OP_BN_VAR: case OP_BN_NORM: case OP_BN_NORM_BWD: kernel_bn(cg, in, vals, out); return true;
  case OP_ATTENTION: case OP_ATTENTION_BWD: return cg_kernel_attention(cg, f, &v, 1, vals);   /* no extra computed */
  default:
    break;
  }
  if (cg_op_is_ew(in)) {
    int32_t m = v;
    return cg_kernel_ew(cg, f, &m, 1, vals);
  }
  diag_error(in->loc, "codegen: no kernel for %s", ir_ops[in->op].name);
  return false;
}
