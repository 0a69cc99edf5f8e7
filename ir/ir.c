/* ir/ir.c — modules, interned types, the op table and the builder.
 *
 * The builder is where types are inferred: ir_emit computes an instruction's type from
 * its op, operands and attributes (ir_infer_type), so no pass can build an ill-typed
 * instruction silently, and the verifier re-runs the same function over a whole Func.
 * Pure instructions are hash-consed: emitting `mul %3, %4` twice yields one value, which
 * is common-subexpression elimination for free (tinygrad, QBE's GVN in spirit). */
#include "ir/ir.h"

#include <math.h>
#include <stdarg.h>
#include <string.h>

const OpInfo ir_ops[OP__COUNT] = {
#define OP(e, name, nargs, kind, flags) [OP_##e] = {name, nargs, kind, flags},
#include "ir/ops.def"
#undef OP
};

int ir_op_lookup(const char *name, size_t len) {
  for (int i = 0; i < OP__COUNT; i++)
    if (strlen(ir_ops[i].name) == len && memcmp(ir_ops[i].name, name, len) == 0) return i;
  return -1;
}

const char *const ir_init_names[INIT__COUNT] = {
    [INIT_ZEROS] = "zeros",
    [INIT_ONES] = "ones",
    [INIT_CONSTANT] = "constant",
    [INIT_NORMAL] = "normal",
    [INIT_UNIFORM] = "uniform",
    [INIT_XAVIER_UNIFORM] = "xavier_uniform",
    [INIT_XAVIER_NORMAL] = "xavier_normal",
    [INIT_HE_UNIFORM] = "he_uniform",
    [INIT_HE_NORMAL] = "he_normal",
};

int ir_init_lookup(const char *name) {
  for (int i = 0; i < INIT__COUNT; i++)
    if (strcmp(ir_init_names[i], name) == 0) return i;
  return -1;
}

/* ------------------------------------------------------------------ modules */

Module *ir_module_new(void) {
  Module *m = bp_xmalloc(sizeof *m);
  memset(m, 0, sizeof *m);
  m->arena = arena_new();
  return m;
}

static void func_release(Func *f) {
  bp_free(f->insts);
  bp_free(f->hash);
}

void ir_module_free(Module *m) {
  if (!m) return;
  for (int i = 0; i < m->nfuncs; i++) func_release(m->funcs[i]);
  bp_free(m->funcs);
  bp_free(m->types);
  arena_free(m->arena);
  bp_free(m);
}

const char *ir_intern(Module *m, const char *s) { return s ? arena_strdup(m->arena, s) : NULL; }

/* ------------------------------------------------------------------ types */

const char *ir_dtype_name(DType dt) {
  switch (dt) {
  case DT_F32: return "f32";
  case DT_F64: return "f64";
  case DT_LABEL: return "label";
  case DT_BF16: return "bf16";
  case DT_F16: return "f16";
  }
  return "?";
}

int ir_dtype_bytes(DType dt) { return dt == DT_F64 ? 8 : ir_dtype_is_low(dt) ? 2 : 4; }

double ir_round_to(DType dt, double x) {
  switch (dt) {
  case DT_F32: return (double)(float)x;
  case DT_BF16: {
    float f = (float)x;
    if (f != f) return x;
    uint32_t u;
    memcpy(&u, &f, 4);
    u += 0x7fffu + ((u >> 16) & 1u);   /* to nearest, ties to even (an overflow carries into inf) */
    u &= 0xffff0000u;
    memcpy(&f, &u, 4);
    return (double)f;
  }
  case DT_F16: return (double)(_Float16)(float)x;
  case DT_F64: case DT_LABEL: break;
  }
  return x;
}

TypeId ir_type(Module *m, DType dt, int rank, const int64_t *dims) {
  if (rank < 0 || rank > IR_MAX_RANK) ir_die("tensor rank %d out of range", rank);
  TensorType t;
  memset(&t, 0, sizeof t);
  t.dtype = (uint8_t)dt;
  t.rank = (uint8_t)rank;
  for (int i = 0; i < rank; i++) t.dims[i] = dims[i];
  for (TypeId i = 0; i < m->ntypes; i++)
    if (memcmp(&m->types[i], &t, sizeof t) == 0) return i;
  if (m->ntypes == m->captypes) {
    m->captypes = m->captypes ? m->captypes * 2 : 32;
    m->types = bp_xrealloc(m->types, (size_t)m->captypes * sizeof *m->types);
  }
  m->types[m->ntypes] = t;
  return m->ntypes++;
}

TypeId ir_type_scalar(Module *m, DType dt) { return ir_type(m, dt, 0, NULL); }

/* Elements of a tensor of type t with B = batch. A label[B, C] tensor holds one class
 * index per row: numel is the product of all dims but the last. */
int64_t ir_type_numel(const TensorType *t, int64_t batch) {
  int64_t n = 1;
  int r = t->dtype == DT_LABEL && t->rank > 0 ? t->rank - 1 : t->rank;
  for (int i = 0; i < r; i++) n *= t->dims[i] == DIM_BATCH ? batch : t->dims[i];
  return n;
}

char *ir_type_str(const TensorType *t, char *buf, size_t n) {
  size_t k = (size_t)snprintf(buf, n, "%s[", ir_dtype_name((DType)t->dtype));
  for (int i = 0; i < t->rank && k < n; i++) {
    if (t->dims[i] == DIM_BATCH)
      k += (size_t)snprintf(buf + k, n - k, "%sB", i ? "," : "");
    else
      k += (size_t)snprintf(buf + k, n - k, "%s%lld", i ? "," : "", (long long)t->dims[i]);
  }
  if (k < n) snprintf(buf + k, n - k, "]");
  return buf;
}

/* NumPy broadcasting over trailing dims. The batch dim B matches only B or 1: it never
 * unifies with a number, since its value is chosen at run time. */
bool ir_broadcast_shape(const TensorType *a, const TensorType *b, TensorType *out) {
  TensorType r;
  memset(&r, 0, sizeof r);
  r.dtype = a->dtype;
  r.rank = a->rank > b->rank ? a->rank : b->rank;
  for (int i = 0; i < r.rank; i++) {
    int ia = a->rank - r.rank + i, ib = b->rank - r.rank + i;
    int64_t da = ia >= 0 ? a->dims[ia] : 1, db = ib >= 0 ? b->dims[ib] : 1;
    if (da == db) r.dims[i] = da;
    else if (da == 1) r.dims[i] = db;
    else if (db == 1) r.dims[i] = da;
    else return false;
  }
  *out = r;
  return true;
}

static bool is_float(const TensorType *t) { return t->dtype == DT_F32 || t->dtype == DT_F64; }

/* ------------------------------------------------------------------ type inference */

static TypeId fail(char *err, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static TypeId fail(char *err, size_t n, const char *fmt, ...) {
  if (err && n) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, n, fmt, ap);
    va_end(ap);
  }
  return TYPE_VOID;
}

int64_t ir_conv_out(int64_t n, int64_t k, int64_t stride, int64_t pad, int64_t dil) {
  int64_t span = dil * (k - 1) + 1;     /* the extent of the dilated kernel */
  if (n < 1 || k < 1 || stride < 1 || pad < 0 || dil < 1 || n + 2 * pad < span) return 0;
  return (n + 2 * pad - span) / stride + 1;
}

/* layernorm, layernorm_bwd, layernorm_bwd_gamma: x (arg 0) normalized over its k =
 * iattr0 trailing dims with eps = fattr0; the value sidev (gamma or beta, -1: none) must
 * have the type of those dims, dyv (-1: none) the type of x. Returns the normalized
 * shape's type (gamma's), or TYPE_VOID with err set. (Type ids, not pointers, after
 * ir_type: interning a new type may move the type table.) */
static TypeId layernorm_check(Func *f, const Inst *in, int32_t sidev, int32_t dyv, char *err, size_t errlen) {
  Module *m = f->mod;
  const char *name = ir_ops[in->op].name;
  TensorType x = *ir_vtype(f, in->args[0]);
  char s1[64], s2[64], s3[64];
  int64_t k = in->iattr[0];
  if (!is_float(&x) || x.rank < 1)
    return fail(err, errlen, "%s needs a float tensor of rank >= 1, has %s", name, ir_type_str(&x, s1, sizeof s1));
  if (k < 1 || k > x.rank)
    return fail(err, errlen, "%s: dims=%lld, but %s has rank %d (1 <= dims <= rank)", name, (long long)k,
                ir_type_str(&x, s1, sizeof s1), x.rank);
  for (int i = x.rank - (int)k; i < x.rank; i++)
    if (x.dims[i] == DIM_BATCH)
      return fail(err, errlen, "%s: the normalized dims of %s include the batch dim", name, ir_type_str(&x, s1, sizeof s1));
  if (!(in->fattr[0] > 0) || !isfinite(in->fattr[0]))
    return fail(err, errlen, "%s: eps %g is not a positive number", name, in->fattr[0]);
  TypeId nt = ir_type(m, (DType)x.dtype, (int)k, x.dims + (x.rank - k));
  if (sidev >= 0 && f->insts[sidev].type != nt)
    return fail(err, errlen, "%s: the scale and shift must be %s, the normalized dims of %s; has %s", name,
                ir_type_str(ir_type_get(m, nt), s1, sizeof s1), ir_type_str(&x, s2, sizeof s2),
                ir_type_str(ir_vtype(f, sidev), s3, sizeof s3));
  if (dyv >= 0 && f->insts[dyv].type != f->insts[in->args[0]].type)
    return fail(err, errlen, "%s: the gradient %s is not the type of x, %s", name, ir_type_str(ir_vtype(f, dyv), s1, sizeof s1),
                ir_type_str(&x, s2, sizeof s2));
  return nt;
}

TypeId ir_infer_type(Func *f, const Inst *in, char *err, size_t errlen) {
  Module *m = f->mod;
  char s1[64], s2[64];
  if (err && errlen) err[0] = 0;
  if (in->op >= OP__COUNT) return fail(err, errlen, "unknown op %d", in->op);
  const OpInfo *info = &ir_ops[in->op];
  if (info->nargs >= 0 && in->nargs != info->nargs)
    return fail(err, errlen, "%s takes %d operands, has %d", info->name, info->nargs, in->nargs);
  const TensorType *a = NULL, *b = NULL;
  for (int i = 0; i < in->nargs; i++) {
    int32_t v = in->args[i];
    if (v < 0 || v >= f->ninsts)
      return fail(err, errlen, "operand %d of %s is %%%d, which is not defined before it", i,
                  info->name, v);
    if (f->insts[v].type == TYPE_VOID)
      return fail(err, errlen, "operand %d of %s is a sink and has no value", i, info->name);
  }
  if (in->nargs > 0) a = ir_vtype(f, in->args[0]);
  if (in->nargs > 1) b = ir_vtype(f, in->args[1]);

  if (info->flags & OPF_LEAF) {
    if (in->type < 0 || in->type >= m->ntypes) return fail(err, errlen, "%s needs a type", info->name);
    const TensorType *t = ir_type_get(m, in->type);
    if (in->op != OP_INPUT && !is_float(t))
      return fail(err, errlen, "%s must have a float type", info->name);
    if (in->op == OP_PARAM || in->op == OP_BUFFER) {
      for (int i = 0; i < t->rank; i++)
        if (t->dims[i] == DIM_BATCH) return fail(err, errlen, "a %s cannot have the batch dim", in->op == OP_PARAM ? "parameter" : "buffer");
      if (in->iattr[0] < 0 || in->iattr[0] >= INIT__COUNT)
        return fail(err, errlen, "unknown initializer %lld", (long long)in->iattr[0]);
    }
    if (in->op == OP_CAUSAL_MASK && (t->rank != 2 || t->dims[0] != t->dims[1] || t->dims[0] == DIM_BATCH))
      return fail(err, errlen, "causal_mask must be square [T,T] without the batch dim");
    if (in->op == OP_LOSS_SCALE && (t->rank != 0 || !is_float(t)))
      return fail(err, errlen, "loss_scale is a scalar (f32[] or f64[])");
    if (in->op == OP_DROPOUT_MASK && !(in->fattr[0] >= 0 && in->fattr[0] < 1))
      return fail(err, errlen, "dropout probability %g is not in [0, 1)", in->fattr[0]);
    return in->type;
  }

  switch ((Op)in->op) {
  case OP_SIZE:
    if (in->iattr[0] != IR_AXIS_ALL && (in->iattr[0] < 0 || in->iattr[0] >= a->rank))
      return fail(err, errlen, "size: axis %lld out of range for rank %d", (long long)in->iattr[0], a->rank);
    return ir_type_scalar(m, a->dtype == DT_F64 ? DT_F64 : DT_F32);

  case OP_ADD: case OP_SUB: case OP_MUL: case OP_DIV: case OP_EQ: {
    TensorType r;
    if (!is_float(a) || !is_float(b) || a->dtype != b->dtype)
      return fail(err, errlen, "%s needs two float operands of one dtype: %s, %s", info->name,
                  ir_type_str(a, s1, sizeof s1), ir_type_str(b, s2, sizeof s2));
    if (!ir_broadcast_shape(a, b, &r))
      return fail(err, errlen, "%s: shapes %s and %s do not broadcast", info->name,
                  ir_type_str(a, s1, sizeof s1), ir_type_str(b, s2, sizeof s2));
    return ir_type(m, (DType)r.dtype, r.rank, r.dims);
  }

  case OP_NEG: case OP_EXP: case OP_LOG: case OP_SQRT: case OP_ABS: case OP_SIGN:
  case OP_RELU: case OP_SIGMOID: case OP_TANH: case OP_POW: case OP_GELU: case OP_GELU_TANH:
    if (!is_float(a)) return fail(err, errlen, "%s needs a float operand", info->name);
    return f->insts[in->args[0]].type;

  case OP_CAST: {
    if (in->type < 0 || in->type >= m->ntypes) return fail(err, errlen, "cast needs a result type");
    const TensorType *t = ir_type_get(m, in->type);
    bool low_a = ir_dtype_is_low(a->dtype), low_t = ir_dtype_is_low(t->dtype);
    if (!((a->dtype == DT_F32 && low_t) || (low_a && t->dtype == DT_F32)) || t->rank != a->rank ||
        memcmp(t->dims, a->dims, sizeof t->dims) != 0)
      return fail(err, errlen, "cast goes between f32 and bf16 or f16 in one shape: %s to %s",
                  ir_type_str(a, s1, sizeof s1), ir_type_str(t, s2, sizeof s2));
    return in->type;
  }

  case OP_RELU_GRAD: case OP_SIGMOID_GRAD: case OP_TANH_GRAD: case OP_GELU_GRAD: case OP_GELU_TANH_GRAD:
    if (f->insts[in->args[0]].type != f->insts[in->args[1]].type || !is_float(a))
      return fail(err, errlen, "%s needs two float operands of one type: %s, %s", info->name,
                  ir_type_str(a, s1, sizeof s1), ir_type_str(b, s2, sizeof s2));
    return f->insts[in->args[0]].type;

  case OP_MATMUL: case OP_MATMUL_NT: case OP_MATMUL_TN: {
    /* the last two dims are the matrices; the dims before them broadcast */
    if (!(is_float(a) || ir_dtype_is_low(a->dtype)) || a->dtype != b->dtype || a->rank < 2 || b->rank < 2)
      return fail(err, errlen, "%s needs two float operands of rank 2 to 4 and one dtype: %s, %s",
                  info->name, ir_type_str(a, s1, sizeof s1), ir_type_str(b, s2, sizeof s2));
    /* bf16 or f16 operands accumulate in f32 */
    DType rdt = ir_dtype_is_low(a->dtype) ? DT_F32 : (DType)a->dtype;
    int ra = a->rank, rb = b->rank;
    int64_t m_ = in->op == OP_MATMUL_TN ? a->dims[ra - 1] : a->dims[ra - 2];
    int64_t ka = in->op == OP_MATMUL_TN ? a->dims[ra - 2] : a->dims[ra - 1];
    int64_t kb = in->op == OP_MATMUL_NT ? b->dims[rb - 1] : b->dims[rb - 2];
    int64_t n_ = in->op == OP_MATMUL_NT ? b->dims[rb - 2] : b->dims[rb - 1];
    if (ka != kb)
      return fail(err, errlen, "%s: inner dims differ: %s, %s", info->name,
                  ir_type_str(a, s1, sizeof s1), ir_type_str(b, s2, sizeof s2));
    if (in->iattr[0] != 0) {
      if (in->op != OP_MATMUL_TN || in->iattr[0] != 1 || ra != rb)
        return fail(err, errlen, "%s: fold=%lld needs matmul_tn and operands of one rank", info->name, (long long)in->iattr[0]);
      for (int i = 0; i < ra - 2; i++)
        if (a->dims[i] != b->dims[i])
          return fail(err, errlen, "%s fold: leading dims differ: %s, %s", info->name,
                      ir_type_str(a, s1, sizeof s1), ir_type_str(b, s2, sizeof s2));
      int64_t d[2] = {m_, n_};
      return ir_type(m, rdt, 2, d);
    }
    TensorType la = *a, lb = *b, r;   /* the batch dims, broadcast */
    la.rank = (uint8_t)(ra - 2);
    lb.rank = (uint8_t)(rb - 2);
    if (!ir_broadcast_shape(&la, &lb, &r))
      return fail(err, errlen, "%s: batch dims do not broadcast: %s, %s", info->name,
                  ir_type_str(a, s1, sizeof s1), ir_type_str(b, s2, sizeof s2));
    int nb = 0;
    for (int i = 0; i < r.rank; i++) nb += r.dims[i] == DIM_BATCH;
    if (nb > 1 || (r.rank > 0 && (m_ == DIM_BATCH || n_ == DIM_BATCH) && nb > 0))
      return fail(err, errlen, "%s: the result would hold the batch dim twice: %s, %s", info->name,
                  ir_type_str(a, s1, sizeof s1), ir_type_str(b, s2, sizeof s2));
    int64_t d[IR_MAX_RANK];
    for (int i = 0; i < r.rank; i++) d[i] = r.dims[i];
    d[r.rank] = m_;
    d[r.rank + 1] = n_;
    return ir_type(m, rdt, r.rank + 2, d);
  }

  case OP_TRANSPOSE: {
    int perm[4];
    if (!is_float(a) || !ir_transpose_perm(in, a->rank, perm))
      return fail(err, errlen, "transpose needs a float operand of rank 2 to 4 and a permutation of its dims (perm=%0*lld)",
                  a->rank, (long long)in->iattr[0]);
    int64_t d[IR_MAX_RANK];
    for (int i = 0; i < a->rank; i++) d[i] = a->dims[perm[i]];
    return ir_type(m, (DType)a->dtype, a->rank, d);
  }

  case OP_SUM: case OP_MEAN: case OP_MAX: {
    if (!is_float(a)) return fail(err, errlen, "%s needs a float operand", info->name);
    int64_t axis = in->iattr[0];
    bool keep = in->iattr[1] != 0;
    int64_t d[IR_MAX_RANK];
    int r = 0;
    if (axis == IR_AXIS_ALL) {
      if (keep) for (int i = 0; i < a->rank; i++) d[r++] = 1;
    } else {
      if (axis < 0 || axis >= a->rank)
        return fail(err, errlen, "%s: axis %lld out of range for rank %d", info->name, (long long)axis, a->rank);
      for (int i = 0; i < a->rank; i++) {
        if (i != axis) d[r++] = a->dims[i];
        else if (keep) d[r++] = 1;
      }
    }
    return ir_type(m, (DType)a->dtype, r, d);
  }

  case OP_BROADCAST: case OP_SUM_TO: {
    if (in->type < 0 || in->type >= m->ntypes) return fail(err, errlen, "%s needs a result type", info->name);
    const TensorType *t = ir_type_get(m, in->type);
    const TensorType *big = in->op == OP_BROADCAST ? t : a, *small = in->op == OP_BROADCAST ? a : t;
    TensorType r;
    if (!is_float(a) || t->dtype != a->dtype || !ir_broadcast_shape(big, small, &r) || r.rank != big->rank ||
        memcmp(r.dims, big->dims, sizeof r.dims) != 0)
      return fail(err, errlen, "%s: %s does not broadcast to %s", info->name,
                  ir_type_str(small, s1, sizeof s1), ir_type_str(big, s2, sizeof s2));
    return in->type;
  }

  case OP_RESHAPE: {
    /* Row-major reinterpretation: the element count must agree for every batch size,
     * so both types have the same product of fixed dims and the same number of B dims. */
    if (in->type < 0 || in->type >= m->ntypes) return fail(err, errlen, "reshape needs a result type");
    const TensorType *t = ir_type_get(m, in->type);
    int64_t na = 1, nt = 1;
    int ba = 0, bt = 0;
    for (int i = 0; i < a->rank; i++) {
      if (a->dims[i] == DIM_BATCH) ba++;
      else na *= a->dims[i];
    }
    for (int i = 0; i < t->rank; i++) {
      if (t->dims[i] == DIM_BATCH) bt++;
      else nt *= t->dims[i];
    }
    if (!is_float(a) || t->dtype != a->dtype)
      return fail(err, errlen, "reshape needs a float operand of the result's dtype: %s to %s",
                  ir_type_str(a, s1, sizeof s1), ir_type_str(t, s2, sizeof s2));
    if (na != nt || ba != bt)
      return fail(err, errlen, "reshape: %s and %s differ in element count", ir_type_str(a, s1, sizeof s1),
                  ir_type_str(t, s2, sizeof s2));
    return in->type;
  }

  case OP_MAX_POOL2D: case OP_AVG_POOL2D: case OP_MAX_POOL2D_BWD: case OP_AVG_POOL2D_BWD: {
    /* x is the pooled value: arg0, or the result type of avg_pool2d_bwd(dy) */
    const TensorType *x = a;
    if (in->op == OP_AVG_POOL2D_BWD) {
      if (in->type < 0 || in->type >= m->ntypes) return fail(err, errlen, "avg_pool2d_bwd needs a result type");
      x = ir_type_get(m, in->type);
    }
    int64_t k, s, p;
    ir_pool_geom(in, &k, &s, &p);
    if (!is_float(x) || x->rank != 4)
      return fail(err, errlen, "%s needs a rank-4 float value [N,C,H,W], has %s", info->name, ir_type_str(x, s1, sizeof s1));
    if (k < 1 || k > INT32_MAX || s < 1 || p < 0 || 2 * p > k)
      return fail(err, errlen, "%s: kernel %lld, stride %lld, padding %lld: needs 1 <= kernel < 2^31, stride >= 1, "
                  "0 <= padding <= kernel / 2", info->name, (long long)k, (long long)s, (long long)p);
    if (x->dims[2] == DIM_BATCH || x->dims[3] == DIM_BATCH || x->dims[2] + 2 * p < k || x->dims[3] + 2 * p < k)
      return fail(err, errlen, "%s: a %lldx%lld window with padding %lld does not fit in %s", info->name, (long long)k,
                  (long long)k, (long long)p, ir_type_str(x, s1, sizeof s1));
    int64_t d[4] = {x->dims[0], x->dims[1], ir_pool_out(x->dims[2], k, s, p), ir_pool_out(x->dims[3], k, s, p)};
    TypeId yt = ir_type(m, (DType)x->dtype, 4, d);
    if (in->op == OP_MAX_POOL2D || in->op == OP_AVG_POOL2D) return yt;
    const TensorType *dy = in->op == OP_MAX_POOL2D_BWD ? b : a;
    int32_t dyv = in->args[in->op == OP_MAX_POOL2D_BWD ? 1 : 0];
    char s3[64];
    if (f->insts[dyv].type != yt)
      return fail(err, errlen, "%s: dy is %s, the pooled type of %s is %s", info->name, ir_type_str(dy, s1, sizeof s1),
                  ir_type_str(x, s2, sizeof s2), ir_type_str(ir_type_get(m, yt), s3, sizeof s3));
    return in->op == OP_MAX_POOL2D_BWD ? f->insts[in->args[0]].type : in->type;
  }

  case OP_CONV2D: case OP_CONV2D_BWD_DATA: case OP_CONV2D_BWD_WEIGHT: {
    /* All three are checked as the forward conv2d x[B,C,H,W] * w[O,C,kh,kw] -> y they
     * belong to: the gradients name the operands and the result differently. */
    const TensorType *t = in->op == OP_CONV2D ? NULL : (in->type >= 0 && in->type < m->ntypes ? ir_type_get(m, in->type) : NULL);
    if (in->op != OP_CONV2D && !t) return fail(err, errlen, "%s needs a result type", info->name);
    const TensorType *x = in->op == OP_CONV2D_BWD_DATA ? t : a;
    const TensorType *w = in->op == OP_CONV2D_BWD_WEIGHT ? t : b;
    const TensorType *dy = in->op == OP_CONV2D ? NULL : in->op == OP_CONV2D_BWD_DATA ? a : b;
    if (!is_float(a) || !is_float(b) || a->dtype != b->dtype || (t && t->dtype != a->dtype) || x->rank != 4 ||
        w->rank != 4 || (dy && dy->rank != 4))
      return fail(err, errlen, "%s needs rank-4 float operands of one dtype: %s, %s", info->name,
                  ir_type_str(a, s1, sizeof s1), ir_type_str(b, s2, sizeof s2));
    int64_t st = in->iattr[0], pad = in->iattr[1], dil = in->iattr[2];
    if (st < 1 || pad < 0 || dil < 1)
      return fail(err, errlen, "%s: stride %lld, padding %lld, dilation %lld (stride and dilation >= 1, padding >= 0)",
                  info->name, (long long)st, (long long)pad, (long long)dil);
    for (int i = 0; i < 4; i++)
      if (w->dims[i] == DIM_BATCH || (i > 0 && x->dims[i] == DIM_BATCH))
        return fail(err, errlen, "%s: only the first dim of the image may be the batch: %s, %s", info->name,
                    ir_type_str(x, s1, sizeof s1), ir_type_str(w, s2, sizeof s2));
    if (x->dims[1] != w->dims[1])
      return fail(err, errlen, "%s: the image has %lld channels, the weights expect %lld: %s, %s", info->name,
                  (long long)x->dims[1], (long long)w->dims[1], ir_type_str(x, s1, sizeof s1), ir_type_str(w, s2, sizeof s2));
    int64_t ho = ir_conv_out(x->dims[2], w->dims[2], st, pad, dil), wo = ir_conv_out(x->dims[3], w->dims[3], st, pad, dil);
    if (ho < 1 || wo < 1)
      return fail(err, errlen, "%s: the kernel %lldx%lld (dilation %lld) is larger than the padded image %lldx%lld",
                  info->name, (long long)w->dims[2], (long long)w->dims[3], (long long)dil,
                  (long long)(x->dims[2] + 2 * pad), (long long)(x->dims[3] + 2 * pad));
    int64_t d[4] = {x->dims[0], w->dims[0], ho, wo};
    TypeId yt = ir_type(m, (DType)a->dtype, 4, d);
    if (in->op == OP_CONV2D) return yt;
    if (memcmp(ir_type_get(m, yt)->dims, dy->dims, sizeof d) != 0) {
      char s3[96], s4[96];
      return fail(err, errlen, "%s: the gradient %s is not the shape of conv2d(%s, %s), %s", info->name,
                  ir_type_str(dy, s1, sizeof s1), ir_type_str(x, s2, sizeof s2), ir_type_str(w, s3, sizeof s3),
                  ir_type_str(ir_type_get(m, yt), s4, sizeof s4));
    }
    return in->type;
  }

  case OP_BN_MEAN: case OP_BN_VAR: case OP_BN_NORM: case OP_BN_NORM_BWD: {
    /* x (or xhat) [N,C] or [N,C,H,W]; the per-channel operands [C] of x's dtype */
    if (!is_float(a) || (a->rank != 2 && a->rank != 4) || a->dims[1] == DIM_BATCH)
      return fail(err, errlen, "%s needs a float value [N,C] or [N,C,H,W] with C fixed, has %s", info->name,
                  ir_type_str(a, s1, sizeof s1));
    TypeId ct = ir_type(m, (DType)a->dtype, 1, &a->dims[1]);
    for (int k = 1; k < in->nargs; k++) {
      bool like_x = in->op == OP_BN_NORM_BWD && k == 1;
      TypeId want = like_x ? f->insts[in->args[0]].type : ct;
      if (f->insts[in->args[k]].type != want)
        return fail(err, errlen, "%s: operand %d is %s, expected %s", info->name, k,
                    ir_type_str(ir_vtype(f, in->args[k]), s1, sizeof s1), ir_type_str(ir_type_get(m, want), s2, sizeof s2));
    }
    return in->op == OP_BN_MEAN || in->op == OP_BN_VAR ? ct : f->insts[in->args[0]].type;
  }

  case OP_SOFTMAX: case OP_LOG_SOFTMAX:
    if (!is_float(a) || a->rank < 1) return fail(err, errlen, "%s needs a float tensor of rank >= 1", info->name);
    if (in->iattr[0] < 0 || in->iattr[0] >= a->rank)
      return fail(err, errlen, "%s: axis %lld out of range for rank %d", info->name, (long long)in->iattr[0], a->rank);
    return f->insts[in->args[0]].type;

  case OP_LAYERNORM: case OP_LAYERNORM_BWD: case OP_LAYERNORM_BWD_GAMMA: {
    /* (x, gamma, beta), (x, gamma, dy): gamma and beta (the second operand, the third
     * of layernorm too) have x's trailing dims; dy x's type */
    bool fwd = in->op == OP_LAYERNORM, gam = in->op == OP_LAYERNORM_BWD_GAMMA;
    TypeId nt = layernorm_check(f, in, gam ? -1 : in->args[1], gam ? in->args[1] : fwd ? -1 : in->args[2], err, errlen);
    if (nt == TYPE_VOID) return TYPE_VOID;
    if (fwd && f->insts[in->args[2]].type != nt)
      return fail(err, errlen, "layernorm: the shift %s differs from the scale %s", ir_type_str(ir_vtype(f, in->args[2]), s1, sizeof s1),
                  ir_type_str(ir_vtype(f, in->args[1]), s2, sizeof s2));
    return gam ? nt : f->insts[in->args[0]].type;
  }

  case OP_ONEHOT:
    if (a->dtype != DT_LABEL) return fail(err, errlen, "onehot needs a label operand, has %s", ir_type_str(a, s1, sizeof s1));
    /* f32; f64 where the instruction is already typed f64 (a model converted to f64) */
    return ir_type(m, in->type != TYPE_VOID && ir_type_get(m, in->type)->dtype == DT_F64 ? DT_F64 : DT_F32, a->rank, a->dims);

  case OP_SOFTMAX_XENT: {
    bool same = is_float(a) && b->dtype == DT_LABEL && a->rank == b->rank && a->rank >= 2;
    for (int i = 0; same && i < a->rank; i++) same = a->dims[i] == b->dims[i];
    if (!same)
      return fail(err, errlen, "softmax_xent needs logits f32[...,C] and labels label[...,C] of one shape: %s, %s",
                  ir_type_str(a, s1, sizeof s1), ir_type_str(b, s2, sizeof s2));
    return ir_type(m, (DType)a->dtype, a->rank - 1, a->dims);
  }

  case OP_EMBEDDING: case OP_EMBEDDING_BWD: {
    /* (ids label[...,V], W [V,d]) -> [...,d];  (ids, dy [...,d]) -> [V,d] */
    if (a->dtype != DT_LABEL || !is_float(b))
      return fail(err, errlen, "%s needs labels and a float operand: %s, %s", info->name,
                  ir_type_str(a, s1, sizeof s1), ir_type_str(b, s2, sizeof s2));
    int64_t V = a->dims[a->rank - 1];
    if (in->op == OP_EMBEDDING) {
      if (b->rank != 2 || b->dims[0] != V)
        return fail(err, errlen, "embedding: the table %s needs %lld rows, one per class of %s",
                    ir_type_str(b, s2, sizeof s2), (long long)V, ir_type_str(a, s1, sizeof s1));
      int64_t d[IR_MAX_RANK];
      for (int i = 0; i < a->rank - 1; i++) d[i] = a->dims[i];
      d[a->rank - 1] = b->dims[1];
      return ir_type(m, (DType)b->dtype, a->rank, d);
    }
    bool ok = b->rank == a->rank;
    for (int i = 0; ok && i < a->rank - 1; i++) ok = a->dims[i] == b->dims[i];
    if (!ok)
      return fail(err, errlen, "embedding_bwd: dy %s does not match the ids %s", ir_type_str(b, s2, sizeof s2),
                  ir_type_str(a, s1, sizeof s1));
    int64_t d[2] = {V, b->dims[b->rank - 1]};
    return ir_type(m, (DType)b->dtype, 2, d);
  }

  case OP_ATTENTION: case OP_ATTENTION_BWD: {
    const TensorType *q = a, *k = b, *v = ir_vtype(f, in->args[2]);
    int r = q->rank;
    bool ok = r >= 3 && r <= 4 && is_float(q) && k->rank == r && v->rank == r && k->dtype == q->dtype && v->dtype == q->dtype &&
              k->dims[r - 1] == q->dims[r - 1] && v->dims[r - 2] == k->dims[r - 2];
    for (int i = 0; ok && i < r - 2; i++) ok = k->dims[i] == q->dims[i] && v->dims[i] == q->dims[i];
    for (int i = r - 2; ok && i < r; i++) ok = q->dims[i] != DIM_BATCH && k->dims[i] != DIM_BATCH && v->dims[i] != DIM_BATCH;
    if (!ok)
      return fail(err, errlen, "%s needs q[...,T,dh], k[...,S,dh], v[...,S,dv] of rank 3 or 4 with equal leading dims: %s, %s, %s",
                  info->name, ir_type_str(q, s1, sizeof s1), ir_type_str(k, s2, sizeof s2),
                  ir_type_str(v, (char[64]){0}, 64));
    if (in->iattr[0] != 0 && (in->iattr[0] != 1 || q->dims[r - 2] != k->dims[r - 2]))
      return fail(err, errlen, "%s: causal=%lld needs causal 0 or 1 and as many queries as keys", info->name,
                  (long long)in->iattr[0]);
    if (!(in->fattr[0] > 0) || !isfinite(in->fattr[0]))
      return fail(err, errlen, "%s: the scale must be a finite number > 0", info->name);
    int64_t d[IR_MAX_RANK];
    for (int i = 0; i < r; i++) d[i] = q->dims[i];
    d[r - 1] = v->dims[r - 1];
    TypeId ot = ir_type(m, (DType)q->dtype, r, d);
    if (in->op == OP_ATTENTION) return ot;
    TypeId lt = ir_type(m, (DType)q->dtype, r - 1, q->dims);
    if (f->insts[in->args[3]].type != ot || f->insts[in->args[5]].type != ot || f->insts[in->args[4]].type != lt)
      return fail(err, errlen, "attention_bwd: o and do must be %s and lse %s",
                  ir_type_str(ir_type_get(m, ot), s1, sizeof s1), ir_type_str(ir_type_get(m, lt), s2, sizeof s2));
    return f->insts[in->args[0]].type;
  }

  case OP_EXTRA: {
    const Inst *p = &f->insts[in->args[0]];
    if (p->op == OP_ATTENTION && in->iattr[0] == 1) {
      const TensorType *q = ir_vtype(f, p->args[0]);
      return ir_type(m, (DType)q->dtype, q->rank - 1, q->dims);
    }
    if (p->op == OP_ATTENTION_BWD && (in->iattr[0] == 1 || in->iattr[0] == 2))
      return f->insts[p->args[in->iattr[0]]].type;   /* dk like k, dv like v */
    return fail(err, errlen, "extra: %s has no result %lld", ir_ops[p->op].name, (long long)in->iattr[0]);
  }

  case OP_OUTPUT:
    if (!is_float(a)) return fail(err, errlen, "output must be a float tensor");
    return TYPE_VOID;
  case OP_LOSS:
    if (!is_float(a) || a->rank != 0)
      return fail(err, errlen, "the loss must be a float scalar, is %s", ir_type_str(a, s1, sizeof s1));
    return TYPE_VOID;
  case OP_GRAD:
    if (f->insts[in->args[0]].op != OP_PARAM) return fail(err, errlen, "grad: operand 0 must be a param");
    if (f->insts[in->args[0]].type != f->insts[in->args[1]].type)
      return fail(err, errlen, "grad: gradient type %s differs from the parameter's %s",
                  ir_type_str(b, s2, sizeof s2), ir_type_str(a, s1, sizeof s1));
    return TYPE_VOID;

  case OP_ASSIGN:
    if (f->insts[in->args[0]].op != OP_BUFFER) return fail(err, errlen, "assign: operand 0 must be a buffer");
    if (f->insts[in->args[0]].type != f->insts[in->args[1]].type)
      return fail(err, errlen, "assign: the value's type %s differs from the buffer's %s",
                  ir_type_str(b, s2, sizeof s2), ir_type_str(a, s1, sizeof s1));
    return TYPE_VOID;

  default:
    break;
  }
  return fail(err, errlen, "no type rule for %s", info->name);
}

/* ------------------------------------------------------------------ functions */

Func *ir_func_new(Module *m, const char *name) {
  Func *f = arena_alloc(m->arena, sizeof *f);
  f->mod = m;
  f->name = ir_intern(m, name);
  f->cse = true;
  if (m->nfuncs == m->capfuncs) {
    m->capfuncs = m->capfuncs ? m->capfuncs * 2 : 4;
    m->funcs = bp_xrealloc(m->funcs, (size_t)m->capfuncs * sizeof *m->funcs);
  }
  m->funcs[m->nfuncs++] = f;
  return f;
}

Func *ir_func_find(Module *m, const char *name) {
  for (int i = 0; i < m->nfuncs; i++)
    if (strcmp(m->funcs[i]->name, name) == 0) return m->funcs[i];
  return NULL;
}

static uint64_t mix(uint64_t h, uint64_t v) {
  h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
  return h * 0xff51afd7ed558ccdull;
}

static uint64_t inst_hash(const Inst *in) {
  uint64_t h = mix(in->op, (uint64_t)(uint32_t)in->type);
  for (int i = 0; i < in->nargs; i++) h = mix(h, (uint64_t)(uint32_t)in->args[i]);
  for (int i = 0; i < IR_NIATTR; i++) h = mix(h, (uint64_t)in->iattr[i]);
  uint64_t fb;
  memcpy(&fb, &in->fattr[0], 8); h = mix(h, fb);
  memcpy(&fb, &in->fattr[1], 8); h = mix(h, fb);
  if (in->name) for (const char *p = in->name; *p; p++) h = mix(h, (unsigned char)*p);
  return h;
}

static bool inst_same(const Inst *a, const Inst *b) {
  if (a->op != b->op || a->type != b->type || a->nargs != b->nargs) return false;
  for (int i = 0; i < a->nargs; i++)
    if (a->args[i] != b->args[i]) return false;
  if (memcmp(a->iattr, b->iattr, sizeof a->iattr) != 0) return false;
  if (memcmp(a->fattr, b->fattr, sizeof a->fattr) != 0) return false;
  if ((a->name == NULL) != (b->name == NULL)) return false;
  return !a->name || strcmp(a->name, b->name) == 0;
}

static void hash_insert(Func *f, int32_t v) {
  if ((f->ninsts + 1) * 2 > f->hashcap) {  /* grow and rehash every pure inst */
    int32_t cap = f->hashcap ? f->hashcap * 2 : 256;
    while (cap < (f->ninsts + 1) * 2) cap *= 2;
    bp_free(f->hash);
    f->hash = bp_xmalloc((size_t)cap * sizeof *f->hash);
    for (int32_t i = 0; i < cap; i++) f->hash[i] = -1;
    f->hashcap = cap;
    for (int32_t i = 0; i < f->ninsts; i++) {
      if (i == v || !(ir_ops[f->insts[i].op].flags & OPF_PURE)) continue;
      uint64_t h = inst_hash(&f->insts[i]) & (uint64_t)(cap - 1);
      while (f->hash[h] >= 0) h = (h + 1) & (uint64_t)(cap - 1);
      f->hash[h] = i;
    }
  }
  uint64_t h = inst_hash(&f->insts[v]) & (uint64_t)(f->hashcap - 1);
  while (f->hash[h] >= 0) h = (h + 1) & (uint64_t)(f->hashcap - 1);
  f->hash[h] = v;
}

static int32_t hash_find(Func *f, const Inst *in) {
  if (!f->hashcap) return -1;
  uint64_t h = inst_hash(in) & (uint64_t)(f->hashcap - 1);
  for (; f->hash[h] >= 0; h = (h + 1) & (uint64_t)(f->hashcap - 1))
    if (inst_same(&f->insts[f->hash[h]], in)) return f->hash[h];
  return -1;
}

int32_t ir_emit(Func *f, const Inst *proto) {
  Inst in = *proto;
  char err[256];
  TypeId t = ir_infer_type(f, &in, err, sizeof err);
  if (t == TYPE_VOID && err[0]) ir_die("ill-typed %s in @%s: %s", ir_ops[in.op].name, f->name, err);
  in.type = t;
  if (in.name) in.name = ir_intern(f->mod, in.name);
  bool pure = (ir_ops[in.op].flags & OPF_PURE) != 0;
  if (pure && f->cse) {
    int32_t old = hash_find(f, &in);
    if (old >= 0) return old;
  }
  if (f->ninsts == f->cap) {
    f->cap = f->cap ? f->cap * 2 : 64;
    f->insts = bp_xrealloc(f->insts, (size_t)f->cap * sizeof *f->insts);
  }
  int32_t v = f->ninsts++;
  f->insts[v] = in;
  if (pure && f->cse) hash_insert(f, v);
  return v;
}

Func *ir_func_clone(Func *f, const char *name) {
  Func *g = ir_func_new(f->mod, name);
  g->cse = f->cse;
  for (int32_t i = 0; i < f->ninsts; i++) {
    if (g->ninsts == g->cap) {
      g->cap = g->cap ? g->cap * 2 : 64;
      g->insts = bp_xrealloc(g->insts, (size_t)g->cap * sizeof *g->insts);
    }
    g->insts[g->ninsts++] = f->insts[i];
    if (g->cse && (ir_ops[f->insts[i].op].flags & OPF_PURE)) hash_insert(g, i);
  }
  return g;
}

/* ------------------------------------------------------------------ constructors */

Inst ir_inst(Op op, SrcLoc loc) {
  Inst in;
  memset(&in, 0, sizeof in);
  in.op = (uint16_t)op;
  in.type = TYPE_VOID;
  in.loc = loc;
  in.call = SRCLOC_NONE;
  in.from = -1;
  return in;
}

int32_t ir_input(Func *f, const char *name, int index, TypeId t, SrcLoc loc) {
  Inst in = ir_inst(OP_INPUT, loc);
  in.name = name;
  in.iattr[0] = index;
  in.type = t;
  return ir_emit(f, &in);
}

int32_t ir_param(Func *f, const char *name, TypeId t, InitKind init, double a, double b, SrcLoc loc) {
  Inst in = ir_inst(OP_PARAM, loc);
  in.name = name;
  in.type = t;
  in.iattr[0] = init;
  in.fattr[0] = a;
  in.fattr[1] = b;
  return ir_emit(f, &in);
}

int32_t ir_buffer(Func *f, const char *name, TypeId t, InitKind init, double value, SrcLoc loc) {
  Inst in = ir_inst(OP_BUFFER, loc);
  in.name = name;
  in.type = t;
  in.iattr[0] = init;
  in.fattr[0] = value;
  return ir_emit(f, &in);
}

int32_t ir_const(Func *f, double v, TypeId t, SrcLoc loc) {
  Inst in = ir_inst(OP_CONST, loc);
  in.fattr[0] = v;
  in.type = t;
  return ir_emit(f, &in);
}

int32_t ir_scalar(Func *f, double v, SrcLoc loc) { return ir_const(f, v, ir_type_scalar(f->mod, DT_F32), loc); }

int32_t ir_unary(Func *f, Op op, int32_t a, SrcLoc loc) {
  Inst in = ir_inst(op, loc);
  in.nargs = 1;
  in.args[0] = a;
  return ir_emit(f, &in);
}

int32_t ir_cast(Func *f, int32_t x, DType dt, SrcLoc loc) {
  const TensorType *t = ir_vtype(f, x);
  Inst in = ir_inst(OP_CAST, loc);
  in.nargs = 1;
  in.args[0] = x;
  in.type = ir_type(f->mod, dt, t->rank, t->dims);
  return ir_emit(f, &in);
}

int32_t ir_binary(Func *f, Op op, int32_t a, int32_t b, SrcLoc loc) {
  Inst in = ir_inst(op, loc);
  in.nargs = 2;
  in.args[0] = a;
  in.args[1] = b;
  return ir_emit(f, &in);
}

int32_t ir_pow(Func *f, int32_t a, double exponent, SrcLoc loc) {
  Inst in = ir_inst(OP_POW, loc);
  in.nargs = 1;
  in.args[0] = a;
  in.fattr[0] = exponent;
  return ir_emit(f, &in);
}

int32_t ir_reduce(Func *f, Op op, int32_t a, int axis, bool keep, SrcLoc loc) {
  Inst in = ir_inst(op, loc);
  in.nargs = 1;
  in.args[0] = a;
  in.iattr[0] = axis;
  in.iattr[1] = keep;
  return ir_emit(f, &in);
}

int32_t ir_size(Func *f, int32_t a, int axis, SrcLoc loc) {
  Inst in = ir_inst(OP_SIZE, loc);
  in.nargs = 1;
  in.args[0] = a;
  in.iattr[0] = axis;
  return ir_emit(f, &in);
}

int32_t ir_rowop(Func *f, Op op, int32_t a, int axis, SrcLoc loc) {
  Inst in = ir_inst(op, loc);
  in.nargs = 1;
  in.args[0] = a;
  in.iattr[0] = axis;
  return ir_emit(f, &in);
}

int32_t ir_to_type(Func *f, Op op, int32_t a, TypeId t, SrcLoc loc) {
  if (f->insts[a].type == t) return a;   /* broadcast / sum_to / reshape to its own type: identity */
  Inst in = ir_inst(op, loc);
  in.nargs = 1;
  in.args[0] = a;
  in.type = t;
  return ir_emit(f, &in);
}

int32_t ir_pool(Func *f, Op op, int32_t x, int64_t kernel, int64_t stride, int64_t padding, SrcLoc loc) {
  Inst in = ir_inst(op, loc);
  in.nargs = 1;
  in.args[0] = x;
  ir_pool_set(&in, kernel, stride, padding);
  return ir_emit(f, &in);
}

int32_t ir_conv2d(Func *f, Op op, int32_t a, int32_t b, int64_t stride, int64_t pad, int64_t dil, TypeId t,
                  SrcLoc loc) {
  Inst in = ir_inst(op, loc);
  in.nargs = 2;
  in.args[0] = a;
  in.args[1] = b;
  in.iattr[0] = stride;
  in.iattr[1] = pad;
  in.iattr[2] = dil;
  in.type = op == OP_CONV2D ? TYPE_VOID : t;
  return ir_emit(f, &in);
}

int32_t ir_layernorm(Func *f, Op op, int32_t a, int32_t b, int32_t c, int64_t dims, double eps, SrcLoc loc) {
  Inst in = ir_inst(op, loc);
  in.nargs = op == OP_LAYERNORM_BWD_GAMMA ? 2 : 3;
  in.args[0] = a;
  in.args[1] = b;
  if (in.nargs == 3) in.args[2] = c;
  in.iattr[0] = dims;
  in.fattr[0] = eps;
  return ir_emit(f, &in);
}

int32_t ir_dropout_mask(Func *f, double p, int stream, TypeId t, SrcLoc loc) {
  Inst in = ir_inst(OP_DROPOUT_MASK, loc);
  in.fattr[0] = p;
  in.iattr[0] = stream;
  in.type = t;
  return ir_emit(f, &in);
}

int32_t ir_transpose(Func *f, int32_t a, const int *perm, SrcLoc loc) {
  Inst in = ir_inst(OP_TRANSPOSE, loc);
  in.nargs = 1;
  in.args[0] = a;
  if (perm) in.iattr[0] = ir_transpose_code(ir_vtype(f, a)->rank, perm);
  return ir_emit(f, &in);
}

int32_t ir_matmul_tn_fold(Func *f, int32_t a, int32_t b, SrcLoc loc) {
  Inst in = ir_inst(OP_MATMUL_TN, loc);
  in.nargs = 2;
  in.args[0] = a;
  in.args[1] = b;
  in.iattr[0] = ir_vtype(f, a)->rank > 2;   /* rank 2: the plain product */
  return ir_emit(f, &in);
}

int32_t ir_causal_mask(Func *f, int64_t t, DType dt, SrcLoc loc) {
  Inst in = ir_inst(OP_CAUSAL_MASK, loc);
  int64_t d[2] = {t, t};
  in.type = ir_type(f->mod, dt, 2, d);
  return ir_emit(f, &in);
}

int32_t ir_loss_scale(Func *f, DType dt, SrcLoc loc) {
  Inst in = ir_inst(OP_LOSS_SCALE, loc);
  in.type = ir_type_scalar(f->mod, dt);
  return ir_emit(f, &in);
}

int32_t ir_extra(Func *f, int32_t p, int index, SrcLoc loc) {
  Inst in = ir_inst(OP_EXTRA, loc);
  in.nargs = 1;
  in.args[0] = p;
  in.iattr[0] = index;
  in.call = f->insts[p].call;
  in.from = f->insts[p].from;
  in.rule = f->insts[p].rule;
  in.flags = f->insts[p].flags;
  return ir_emit(f, &in);
}

int32_t ir_attention(Func *f, int32_t q, int32_t k, int32_t v, bool causal, double scale, int32_t *lse, SrcLoc loc) {
  Inst in = ir_inst(OP_ATTENTION, loc);
  in.nargs = 3;
  in.args[0] = q;
  in.args[1] = k;
  in.args[2] = v;
  in.iattr[0] = causal;
  in.fattr[0] = scale;
  int32_t o = ir_emit(f, &in);
  int32_t l = ir_extra(f, o, 1, loc);
  if (lse) *lse = l;
  return o;
}

int32_t ir_attention_bwd(Func *f, const int32_t args[6], bool causal, double scale, int32_t *dk, int32_t *dv,
                         SrcLoc loc) {
  Inst in = ir_inst(OP_ATTENTION_BWD, loc);
  in.nargs = 6;
  for (int i = 0; i < 6; i++) in.args[i] = args[i];
  in.iattr[0] = causal;
  in.fattr[0] = scale;
  int32_t dq = ir_emit(f, &in);
  int32_t k = ir_extra(f, dq, 1, loc), v = ir_extra(f, dq, 2, loc);
  if (dk) *dk = k;
  if (dv) *dv = v;
  return dq;
}

void ir_output(Func *f, const char *name, int32_t v, SrcLoc loc) {
  Inst in = ir_inst(OP_OUTPUT, loc);
  in.nargs = 1;
  in.args[0] = v;
  in.name = name;
  ir_emit(f, &in);
}

void ir_loss(Func *f, int32_t v, SrcLoc loc) {
  Inst in = ir_inst(OP_LOSS, loc);
  in.nargs = 1;
  in.args[0] = v;
  ir_emit(f, &in);
}

void ir_grad(Func *f, int32_t param, int32_t g, SrcLoc loc) {
  Inst in = ir_inst(OP_GRAD, loc);
  in.nargs = 2;
  in.args[0] = param;
  in.args[1] = g;
  ir_emit(f, &in);
}

void ir_assign(Func *f, int32_t buffer, int32_t v, SrcLoc loc) {
  Inst in = ir_inst(OP_ASSIGN, loc);
  in.nargs = 2;
  in.args[0] = buffer;
  in.args[1] = v;
  ir_emit(f, &in);
}

int32_t ir_bn(Func *f, Op op, int32_t a, int32_t b, int32_t c, SrcLoc loc) {
  Inst in = ir_inst(op, loc);
  in.nargs = (uint8_t)ir_ops[op].nargs;
  in.args[0] = a;
  in.args[1] = b;
  in.args[2] = c;
  return ir_emit(f, &in);
}

int32_t *ir_use_counts(Func *f) {
  int32_t *uses = bp_xmalloc((size_t)(f->ninsts ? f->ninsts : 1) * sizeof *uses);
  memset(uses, 0, (size_t)(f->ninsts ? f->ninsts : 1) * sizeof *uses);
  for (int32_t i = 0; i < f->ninsts; i++)
    for (int k = 0; k < f->insts[i].nargs; k++) uses[f->insts[i].args[k]]++;
  return uses;
}
