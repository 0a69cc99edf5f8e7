/* ir/interp.c — the reference interpreter: the oracle for codegen and gradcheck.
 *
 * It is slow and simple on purpose: one loop over the instructions, every value a
 * freshly allocated row-major array of doubles, every op written the obvious way, so
 * that a reader can check it against the op table by eye. Two modes:
 *   INTERP_F64  computes in double and keeps every result as is;
 *   INTERP_F32  rounds every leaf and every op's result to float (accumulations inside
 *               one op, e.g. a matmul's dot products, run in double and round once),
 *               which is what an f32 machine computes, up to summation order.
 * In both modes a value of a mixed-precision storage type (bf16, f16: a `cast`'s result)
 * is rounded to that type (ir_round_to); a product of such operands is exact in double,
 * then rounded to its f32 result.
 * Shapes follow the op table: NumPy broadcasting over trailing dims, the batch dim B
 * bound to `batch`. Bad input (wrong shapes, a label out of range, unverified IR) is a
 * located error through diag_error and a NULL result, never a crash.
 *
 * Dropout masks come from a counter-based hash, so a mask element depends only on
 * (seed, step, stream, element index) and not on evaluation order:
 *   h = splitmix64(splitmix64(splitmix64(splitmix64(seed) ^ step) ^ stream) ^ index)
 *   u = (h >> 11) * 2^-53  in [0, 1);  keep = u >= p;  mask = keep / (1 - p)
 * These are the interpreter's own masks: the runtime draws its masks from
 * Philox4x32-10, so interpreter and generated code agree on a mask's statistics, not
 * on its bits. */
#include "ir/ir.h"

#include <math.h>
#include <stdarg.h>
#include <string.h>

struct Interp {
  Func *f;
  InterpMode mode;
  int64_t batch;
  Tensor *vals;   /* one per instruction; data == NULL: not computed (sinks) */
};

/* ------------------------------------------------------------------ tensors */

Tensor ir_tensor_new(const TensorType *t) {
  Tensor x;
  memset(&x, 0, sizeof x);
  x.type = *t;
  x.numel = ir_type_numel(t, 1);
  if (x.numel < 0) x.numel = 0;
  size_t bytes = (size_t)(x.numel ? x.numel : 1) * sizeof(double);
  x.data = bp_xmalloc(bytes);
  memset(x.data, 0, bytes);
  return x;
}

void ir_tensor_free(Tensor *t) {
  if (!t) return;
  bp_free(t->data);
  t->data = NULL;
  t->numel = 0;
}

static TensorType resolve(const TensorType *t, int64_t batch) {
  TensorType r = *t;
  for (int i = 0; i < r.rank; i++)
    if (r.dims[i] == DIM_BATCH) r.dims[i] = batch;
  return r;
}

static bool same_shape(const TensorType *a, const TensorType *b) {
  if (a->rank != b->rank) return false;
  for (int i = 0; i < a->rank; i++)
    if (a->dims[i] != b->dims[i]) return false;
  return true;
}

/* The flat index into `src` of the element that broadcasting sends to flat index
 * `flat` of `out` (trailing dims aligned, size-1 dims of src repeated). */
static int64_t bcast_index(const TensorType *src, const TensorType *out, int64_t flat) {
  int64_t idx[IR_MAX_RANK];
  for (int i = out->rank - 1; i >= 0; i--) {
    idx[i] = flat % out->dims[i];
    flat /= out->dims[i];
  }
  int64_t s = 0;
  for (int i = 0; i < src->rank; i++) {
    int oi = out->rank - src->rank + i;
    int64_t k = src->dims[i] == 1 || oi < 0 ? 0 : idx[oi];
    s = s * src->dims[i] + k;
  }
  return s;
}

/* Split a shape at `axis` into outer x n x inner (row-major). */
static void split_axis(const TensorType *t, int axis, int64_t *outer, int64_t *n, int64_t *inner) {
  *outer = *inner = 1;
  for (int i = 0; i < axis; i++) *outer *= t->dims[i];
  *n = t->dims[axis];
  for (int i = axis + 1; i < t->rank; i++) *inner *= t->dims[i];
}

/* ------------------------------------------------------------------ errors */

static void inst_error(Interp *it, int32_t i, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void inst_error(Interp *it, int32_t i, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  const Inst *in = &it->f->insts[i];
  diag_error(in->loc, "interpreter: in @%s, %%%d = %s: %s", it->f->name ? it->f->name : "?", (int)i,
             in->op < OP__COUNT ? ir_ops[in->op].name : "?", msg);
}

static void type_str(const TensorType *t, char *buf, size_t n) { ir_type_str(t, buf, n); }

/* ------------------------------------------------------------------ RNG */

static uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

static double uniform01(uint64_t seed, uint64_t step, uint64_t stream, uint64_t index) {
  uint64_t h = splitmix64(splitmix64(splitmix64(splitmix64(seed) ^ step) ^ stream) ^ index);
  return (double)(h >> 11) * 0x1.0p-53;
}

/* ------------------------------------------------------------------ elementwise math */

static double sigmoid(double x) {
  if (x >= 0) return 1.0 / (1.0 + exp(-x));
  double e = exp(x);
  return e / (1.0 + e);
}

/* GELU's constants (ops.def): c = sqrt(2/pi) and a of the tanh approximation. */
#define GELU_C 0.7978845608028654   /* sqrt(2 / pi) */
#define GELU_A 0.044715
#ifndef M_SQRT1_2
#define M_SQRT1_2 0.70710678118654752440
#endif

/* d/dx gelu(x) = Phi(x) + x phi(x), phi(x) = exp(-x^2 / 2) / sqrt(2 pi) */
static double gelu_deriv(double x) {
  return 0.5 * erfc(-x * M_SQRT1_2) + x * exp(-0.5 * x * x) * 0.3989422804014327;   /* 1 / sqrt(2 pi) */
}

/* d/dx gelu_tanh(x), u = c (x + a x^3), t = tanh u: (1 + t) / 2 + x (1 - t^2) c (1 + 3 a x^2) / 2 */
static double gelu_tanh_deriv(double x) {
  double t = tanh(GELU_C * (x + GELU_A * x * x * x));
  return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * GELU_C * (1.0 + 3.0 * GELU_A * x * x);
}

/* The scalar math of every elementwise op, shared with constant folding (simplify.c). */
double ir_eval_unary(Op op, double x, double attr) {
  switch (op) {
  case OP_NEG: return -x;
  case OP_EXP: return exp(x);
  case OP_LOG: return log(x);
  case OP_SQRT: return sqrt(x);
  case OP_ABS: return fabs(x);
  case OP_SIGN: return x > 0 ? 1.0 : x < 0 ? -1.0 : 0.0;
  case OP_RELU: return x > 0 ? x : 0.0;
  case OP_SIGMOID: return sigmoid(x);
  case OP_TANH: return tanh(x);
  case OP_GELU: return 0.5 * x * erfc(-x * M_SQRT1_2);          /* x Phi(x), erfc: exact in the left tail */
  case OP_GELU_TANH: return 0.5 * x * (1.0 + tanh(GELU_C * (x + GELU_A * x * x * x)));
  case OP_POW: return pow(x, attr);
  default: return NAN;
  }
}

double ir_eval_binary(Op op, double a, double b) {
  switch (op) {
  case OP_ADD: return a + b;
  case OP_SUB: return a - b;
  case OP_MUL: return a * b;
  case OP_DIV: return a / b;
  case OP_EQ: return a == b ? 1.0 : 0.0;
  case OP_RELU_GRAD: return a > 0 ? b : 0.0;              /* (x, dy) */
  case OP_SIGMOID_GRAD: return b * a * (1.0 - a);         /* (y, dy) */
  case OP_TANH_GRAD: return b * (1.0 - a * a);            /* (y, dy) */
  case OP_GELU_GRAD: return b * gelu_deriv(a);             /* (x, dy) */
  case OP_GELU_TANH_GRAD: return b * gelu_tanh_deriv(a);   /* (x, dy) */
  default: return NAN;
  }
}

/* ------------------------------------------------------------------ pooling */

/* Max and average pooling and their backward ops over windows of k x k cells at
 * stride s on an input padded by p on each side: window (oh, ow) covers rows
 * oh*s - p .. oh*s - p + k - 1 (likewise columns); padded cells are skipped (max: -inf;
 * avg: zeros, still counted in the divisor k*k, PyTorch's count_include_pad=True).
 * The argmax of a window is its first largest cell in row-major order, a NaN winning
 * as in PyTorch. x: the pooled value [N,C,H,W]; y: the pooled shape [N,C,Ho,Wo].
 * Returns false when the shapes do not agree with the attributes. */
static bool eval_pool(const Inst *in, const TensorType *xt, const TensorType *yt, const double *x, const double *dy,
                      double *out) {
  int64_t k, s, p;
  ir_pool_geom(in, &k, &s, &p);
  if (xt->rank != 4 || yt->rank != 4 || xt->dims[0] != yt->dims[0] || xt->dims[1] != yt->dims[1] || k < 1 || s < 1 ||
      yt->dims[2] != ir_pool_out(xt->dims[2], k, s, p) || yt->dims[3] != ir_pool_out(xt->dims[3], k, s, p))
    return false;
  int64_t NC = xt->dims[0] * xt->dims[1], H = xt->dims[2], W = xt->dims[3], Ho = yt->dims[2], Wo = yt->dims[3];
  bool fwd = in->op == OP_MAX_POOL2D || in->op == OP_AVG_POOL2D;
  bool mx = in->op == OP_MAX_POOL2D || in->op == OP_MAX_POOL2D_BWD;
  if (!fwd)
    for (int64_t q = 0; q < NC * H * W; q++) out[q] = 0;
  for (int64_t c = 0; c < NC; c++)
    for (int64_t oh = 0; oh < Ho; oh++)
      for (int64_t ow = 0; ow < Wo; ow++) {
        int64_t yi = (c * Ho + oh) * Wo + ow, arg = -1;
        double acc = 0;
        for (int64_t i = 0; i < k; i++)
          for (int64_t j = 0; j < k; j++) {
            int64_t h = oh * s - p + i, w = ow * s - p + j;
            if (h < 0 || h >= H || w < 0 || w >= W) continue;
            int64_t xi = (c * H + h) * W + w;
            if (!mx && fwd) acc += x[xi];
            else if (!mx) out[xi] += dy[yi] / ((double)k * (double)k);
            else if (arg < 0 || x[xi] > x[arg] || isnan(x[xi])) arg = xi;
          }
        if (fwd) out[yi] = mx ? x[arg] : acc / ((double)k * (double)k);
        else if (mx) out[arg] += dy[yi];
      }
  return true;
}

/* ------------------------------------------------------------------ convolution */

/* The one loop nest of conv2d and its two gradients, over the forward's index space:
 *   y[b,o,i,j] = sum_{c,u,v} x[b,c,h,w] k[o,c,u,v],  h = s i - p + d u,  w = s j - p + d v
 * (positions outside the image read the zero padding and are skipped). Each gradient
 * walks the same (b,o,i,j,c,u,v) tuples and accumulates the other product:
 *   dx[b,c,h,w] += dy[b,o,i,j] k[o,c,u,v]      (conv2d_bwd_data: dy, k -> dx)
 *   dk[o,c,u,v] += x[b,c,h,w] dy[b,o,i,j]      (conv2d_bwd_weight: x, dy -> dk)
 * The sums run in double; the result is rounded once (f32 mode) like every op's. */
static void conv2d_loops(Op op, const Inst *in, const Tensor *a, const Tensor *b, Tensor *out) {
  const int64_t *xd = op == OP_CONV2D_BWD_DATA ? out->type.dims : a->type.dims;
  const int64_t *kd = op == OP_CONV2D_BWD_WEIGHT ? out->type.dims : b->type.dims;
  const double *x = op == OP_CONV2D_BWD_DATA ? NULL : a->data;
  const double *k = op == OP_CONV2D_BWD_WEIGHT ? NULL : b->data;
  const double *dy = op == OP_CONV2D ? NULL : op == OP_CONV2D_BWD_DATA ? a->data : b->data;
  const int64_t *yd = op == OP_CONV2D ? out->type.dims : op == OP_CONV2D_BWD_DATA ? a->type.dims : b->type.dims;
  int64_t B = xd[0], C = xd[1], H = xd[2], W = xd[3], O = kd[0], KH = kd[2], KW = kd[3], HO = yd[2], WO = yd[3];
  int64_t s = in->iattr[0], p = in->iattr[1], d = in->iattr[2];
  double *r = out->data;
  for (int64_t n = 0; n < out->numel; n++) r[n] = 0;
  for (int64_t bb = 0; bb < B; bb++)
    for (int64_t o = 0; o < O; o++)
      for (int64_t i = 0; i < HO; i++)
        for (int64_t j = 0; j < WO; j++) {
          int64_t yi = ((bb * O + o) * HO + i) * WO + j;
          double acc = 0;
          for (int64_t c = 0; c < C; c++)
            for (int64_t u = 0; u < KH; u++) {
              int64_t h = s * i - p + d * u;
              if (h < 0 || h >= H) continue;
              for (int64_t v = 0; v < KW; v++) {
                int64_t w = s * j - p + d * v;
                if (w < 0 || w >= W) continue;
                int64_t xi = ((bb * C + c) * H + h) * W + w, ki = ((o * C + c) * KH + u) * KW + v;
                if (op == OP_CONV2D) acc += x[xi] * k[ki];
                else if (op == OP_CONV2D_BWD_DATA) r[xi] += dy[yi] * k[ki];
                else r[ki] += x[xi] * dy[yi];
              }
            }
          if (op == OP_CONV2D) r[yi] = acc;
        }
}

/* ------------------------------------------------------------------ products */

/* The matrix products over the last two dims (ops.def): c[...,m,n] = A[...,m,k] B[...,k,n]
 * with A = a or a^T (matmul_tn), B = b or b^T (matmul_nt). The dims before the last
 * two broadcast NumPy-style: batch index bi of c takes a's and b's matrix at the index
 * broadcasting sends it to (a rank-2 operand: its one matrix for every bi). matmul_tn
 * with fold=1 sums the per-batch products into one [m,n] (a weight gradient). Sums run
 * in double, in (batch, k) order. False when the shapes do not fit. */
static bool eval_matmul(const Inst *in, const Tensor *a, const Tensor *b, Tensor *out) {
  const TensorType *at = &a->type, *bt = &b->type, *ot = &out->type;
  int ra = at->rank, rb = bt->rank;
  if (ra < 2 || rb < 2 || ot->rank < 2) return false;
  bool ta = in->op == OP_MATMUL_TN, tb = in->op == OP_MATMUL_NT, fold = in->iattr[0] != 0;
  int64_t M = ta ? at->dims[ra - 1] : at->dims[ra - 2], K = ta ? at->dims[ra - 2] : at->dims[ra - 1];
  int64_t Kb = tb ? bt->dims[rb - 1] : bt->dims[rb - 2], N = tb ? bt->dims[rb - 2] : bt->dims[rb - 1];
  if (K != Kb || M != ot->dims[ot->rank - 2] || N != ot->dims[ot->rank - 1]) return false;
  TensorType la = *at, lb = *bt, lo = *ot, r;   /* the leading (batch) dims */
  la.rank = (uint8_t)(ra - 2);
  lb.rank = (uint8_t)(rb - 2);
  lo.rank = (uint8_t)(ot->rank - 2);
  if (fold) {
    if (in->op != OP_MATMUL_TN || in->iattr[0] != 1 || ot->rank != 2 || !same_shape(&la, &lb)) return false;
    lo = la;
  } else if (!ir_broadcast_shape(&la, &lb, &r) || !same_shape(&r, &lo)) {
    return false;
  }
  int64_t nb = 1;
  for (int d = 0; d < lo.rank; d++) nb *= lo.dims[d];
  double *y = out->data;
  for (int64_t e = 0; e < out->numel; e++) y[e] = 0;
  for (int64_t bi = 0; bi < nb; bi++) {
    const double *A = a->data + bcast_index(&la, &lo, bi) * M * K;
    const double *B = b->data + bcast_index(&lb, &lo, bi) * K * N;
    double *C = fold ? y : y + bi * M * N;
    for (int64_t m = 0; m < M; m++)
      for (int64_t n = 0; n < N; n++) {
        double s = 0;
        for (int64_t k = 0; k < K; k++) {
          double av = ta ? A[k * M + m] : A[m * K + k];
          double bv = tb ? B[n * K + k] : B[k * N + n];
          s += av * bv;
        }
        C[m * N + n] += s;
      }
  }
  return true;
}

/* ------------------------------------------------------------------ attention */

/* Scaled-dot-product attention and its backward, one (batch, head) matrix at a time,
 * written from the definition (ops.def), not blockwise: with q[...,T,dh], k[...,S,dh],
 * v[...,S,dv], s_tj = scale q_t . k_j + mask_tj (mask_tj = -inf where causal and j > t):
 *   lse_t = log sum_j exp(s_tj)                     (the max subtracted first)
 *   o_t = sum_j p_tj v_j,  p_tj = exp(s_tj - lse_t)
 * backward, from q, k, v, o, lse and do:
 *   D_t = do_t . o_t,  dp_tj = do_t . v_j,  ds_tj = p_tj (dp_tj - D_t)
 *   dq_t = scale sum_j ds_tj k_j,  dk_j = scale sum_t ds_tj q_t,  dv_j = sum_t p_tj do_t
 * p is recomputed from lse as the fused kernel does, so a wrong lse shows. `p` is the
 * producer (attention or attention_bwd), `which` the result wanted (0: the op's own,
 * else its extra's index); an extra recomputes its producer, the interpreter having one
 * value per instruction. False when the shapes do not fit. */
static bool eval_attention(Interp *it, const Inst *p, int which, Tensor *out) {
  const Tensor *q = &it->vals[p->args[0]], *k = &it->vals[p->args[1]], *v = &it->vals[p->args[2]];
  int r = q->type.rank;
  if (r < 3 || r > 4 || k->type.rank != r || v->type.rank != r) return false;
  int64_t T = q->type.dims[r - 2], S = k->type.dims[r - 2], dh = q->type.dims[r - 1], dv = v->type.dims[r - 1];
  if (k->type.dims[r - 1] != dh || v->type.dims[r - 2] != S) return false;
  int64_t nb = 1;
  for (int d = 0; d < r - 2; d++) {
    if (k->type.dims[d] != q->type.dims[d] || v->type.dims[d] != q->type.dims[d]) return false;
    nb *= q->type.dims[d];
  }
  bool causal = p->iattr[0] != 0, bwd = p->op == OP_ATTENTION_BWD;
  if (causal && T != S) return false;
  double scale = p->fattr[0];
  const Tensor *o = bwd ? &it->vals[p->args[3]] : NULL, *lse = bwd ? &it->vals[p->args[4]] : NULL;
  const Tensor *dout = bwd ? &it->vals[p->args[5]] : NULL;
  if (bwd && (o->numel != nb * T * dv || dout->numel != nb * T * dv || lse->numel != nb * T)) return false;
  int64_t want = !bwd ? (which == 0 ? nb * T * dv : nb * T)
                      : (which == 0 ? nb * T * dh : which == 1 ? nb * S * dh : nb * S * dv);
  if (out->numel != want) return false;
  double *row = bp_xmalloc((size_t)(S ? S : 1) * sizeof *row);
  double *dq = NULL, *dk = NULL, *dvv = NULL;
  if (bwd) {   /* all three gradients, then the one asked for is copied out */
    dq = bp_xmalloc((size_t)(nb * T * dh + 1) * sizeof *dq);
    dk = bp_xmalloc((size_t)(nb * S * dh + 1) * sizeof *dk);
    dvv = bp_xmalloc((size_t)(nb * S * dv + 1) * sizeof *dvv);
    memset(dq, 0, (size_t)(nb * T * dh + 1) * sizeof *dq);
    memset(dk, 0, (size_t)(nb * S * dh + 1) * sizeof *dk);
    memset(dvv, 0, (size_t)(nb * S * dv + 1) * sizeof *dvv);
  }
  for (int64_t bi = 0; bi < nb; bi++) {
    const double *Q = q->data + bi * T * dh, *K = k->data + bi * S * dh, *Vv = v->data + bi * S * dv;
    for (int64_t t = 0; t < T; t++) {
      const double *qt = Q + t * dh;
      double mx = -INFINITY;
      for (int64_t j = 0; j < S; j++) {
        double s = 0;
        for (int64_t c = 0; c < dh; c++) s += qt[c] * K[j * dh + c];
        row[j] = causal && j > t ? -INFINITY : scale * s;
        mx = fmax(mx, row[j]);
      }
      if (!bwd) {
        double sum = 0;
        for (int64_t j = 0; j < S; j++) sum += exp(row[j] - mx);
        double l = mx + log(sum);
        if (which == 1) {
          out->data[bi * T + t] = l;
          continue;
        }
        double *ot = out->data + (bi * T + t) * dv;
        for (int64_t c = 0; c < dv; c++) ot[c] = 0;
        for (int64_t j = 0; j < S; j++) {
          double pj = exp(row[j] - l);
          for (int64_t c = 0; c < dv; c++) ot[c] += pj * Vv[j * dv + c];
        }
        continue;
      }
      const double *dot = dout->data + (bi * T + t) * dv, *oto = o->data + (bi * T + t) * dv;
      double l = lse->data[bi * T + t], D = 0;
      for (int64_t c = 0; c < dv; c++) D += dot[c] * oto[c];
      for (int64_t j = 0; j < S; j++) {
        double pj = exp(row[j] - l), dp = 0;
        for (int64_t c = 0; c < dv; c++) dp += dot[c] * Vv[j * dv + c];
        double ds = pj * (dp - D);
        for (int64_t c = 0; c < dh; c++) {
          dq[(bi * T + t) * dh + c] += scale * ds * K[j * dh + c];
          dk[(bi * S + j) * dh + c] += scale * ds * qt[c];
        }
        for (int64_t c = 0; c < dv; c++) dvv[(bi * S + j) * dv + c] += pj * dot[c];
      }
    }
  }
  if (bwd) memcpy(out->data, which == 0 ? dq : which == 1 ? dk : dvv, (size_t)want * sizeof(double));
  bp_free(row);
  bp_free(dq);
  bp_free(dk);
  bp_free(dvv);
  return true;
}

/* ------------------------------------------------------------------ labels */

/* Is c (a label read as a double) a class index in [0, n)? Reports it otherwise. */
static bool label_ok(Interp *it, int32_t i, double c, int64_t r, int64_t n, const char *what) {
  if (c >= 0 && c < (double)n && c == floor(c)) return true;
  inst_error(it, i, "%s %g in row %lld is not a class index in [0, %lld)", what, c, (long long)r, (long long)n);
  return false;
}

/* ------------------------------------------------------------------ one instruction */

/* Compute instruction i into *out (already allocated with its resolved type).
 * Returns false after reporting an error. */
static bool eval(Interp *it, int32_t i, const Inst *in, Tensor *out, const Tensor *a, const Tensor *b,
                 uint64_t seed, uint64_t step) {
  char s1[96], s2[96];
  const TensorType *ot = &out->type;
  double *y = out->data;
  switch ((Op)in->op) {
  case OP_CONST:
    for (int64_t k = 0; k < out->numel; k++) y[k] = in->fattr[0];
    return true;

  case OP_SIZE: {
    double n = 1;
    if (in->iattr[0] == IR_AXIS_ALL) {
      for (int d = 0; d < a->type.rank; d++) n *= (double)a->type.dims[d];
    } else if (in->iattr[0] >= 0 && in->iattr[0] < a->type.rank) {
      n = (double)a->type.dims[in->iattr[0]];
    } else {
      inst_error(it, i, "axis %lld out of range for rank %d", (long long)in->iattr[0], a->type.rank);
      return false;
    }
    y[0] = n;
    return true;
  }

  case OP_ADD: case OP_SUB: case OP_MUL: case OP_DIV: case OP_EQ: {
    TensorType r;
    if (!ir_broadcast_shape(&a->type, &b->type, &r) || !same_shape(&r, ot)) {
      type_str(&a->type, s1, sizeof s1);
      type_str(&b->type, s2, sizeof s2);
      inst_error(it, i, "shapes %s and %s do not broadcast to the result", s1, s2);
      return false;
    }
    for (int64_t k = 0; k < out->numel; k++)
      y[k] = ir_eval_binary((Op)in->op, a->data[bcast_index(&a->type, ot, k)], b->data[bcast_index(&b->type, ot, k)]);
    return true;
  }

  case OP_NEG: case OP_EXP: case OP_LOG: case OP_SQRT: case OP_ABS: case OP_SIGN:
  case OP_RELU: case OP_SIGMOID: case OP_TANH: case OP_POW: case OP_GELU: case OP_GELU_TANH:
    if (!same_shape(&a->type, ot)) break;
    for (int64_t k = 0; k < out->numel; k++) y[k] = ir_eval_unary((Op)in->op, a->data[k], in->fattr[0]);
    return true;

  case OP_CAST:   /* the rounding to the result's dtype follows every op (ir_interp_run) */
    if (!same_shape(&a->type, ot)) break;
    for (int64_t k = 0; k < out->numel; k++) y[k] = a->data[k];
    return true;

  case OP_RELU_GRAD: case OP_SIGMOID_GRAD: case OP_TANH_GRAD: case OP_GELU_GRAD: case OP_GELU_TANH_GRAD:
    if (!same_shape(&a->type, ot) || !same_shape(&b->type, ot)) break;
    for (int64_t k = 0; k < out->numel; k++) y[k] = ir_eval_binary((Op)in->op, a->data[k], b->data[k]);
    return true;

  case OP_MATMUL: case OP_MATMUL_NT: case OP_MATMUL_TN:
    if (!eval_matmul(in, a, b, out)) break;
    return true;

  case OP_CONV2D: case OP_CONV2D_BWD_DATA: case OP_CONV2D_BWD_WEIGHT:
    if (a->type.rank != 4 || b->type.rank != 4 || ot->rank != 4) break;
    conv2d_loops((Op)in->op, in, a, b, out);
    return true;

  case OP_TRANSPOSE: {
    /* y[i_0 .. i_{r-1}] = x[j] with j[perm[d]] = i_d: walk y in order, index x */
    int perm[4];
    int r = a->type.rank;
    if (!ir_transpose_perm(in, r, perm) || ot->rank != r) break;
    bool ok = true;
    for (int d = 0; d < r; d++) ok = ok && ot->dims[d] == a->type.dims[perm[d]];
    if (!ok) break;
    int64_t stride[IR_MAX_RANK], idx[IR_MAX_RANK];
    int64_t st = 1;
    for (int d = r - 1; d >= 0; d--) {
      stride[d] = st;
      st *= a->type.dims[d];
    }
    for (int64_t k = 0; k < out->numel; k++) {
      int64_t rem = k, src = 0;
      for (int d = r - 1; d >= 0; d--) {
        idx[d] = rem % ot->dims[d];
        rem /= ot->dims[d];
      }
      for (int d = 0; d < r; d++) src += idx[d] * stride[perm[d]];
      y[k] = a->data[src];
    }
    return true;
  }

  case OP_SUM: case OP_MEAN: case OP_MAX: {
    int64_t axis = in->iattr[0];
    if (axis == IR_AXIS_ALL) {
      if (out->numel != 1) break;
      double s = in->op == OP_MAX ? -INFINITY : 0.0;
      for (int64_t k = 0; k < a->numel; k++) s = in->op == OP_MAX ? fmax(s, a->data[k]) : s + a->data[k];
      if (in->op == OP_MAX && a->numel > 0) {      /* nan propagates, as in NumPy */
        for (int64_t k = 0; k < a->numel; k++)
          if (isnan(a->data[k])) s = NAN;
      }
      y[0] = in->op == OP_MEAN ? s / (double)a->numel : s;
      return true;
    }
    if (axis < 0 || axis >= a->type.rank) {
      inst_error(it, i, "axis %lld out of range for rank %d", (long long)axis, a->type.rank);
      return false;
    }
    int64_t outer, n, inner;
    split_axis(&a->type, (int)axis, &outer, &n, &inner);
    if (out->numel != outer * inner) break;
    for (int64_t o = 0; o < outer; o++)
      for (int64_t q = 0; q < inner; q++) {
        double s = in->op == OP_MAX ? -INFINITY : 0.0;
        bool nan = false;
        for (int64_t j = 0; j < n; j++) {
          double v = a->data[(o * n + j) * inner + q];
          if (isnan(v)) nan = true;
          s = in->op == OP_MAX ? fmax(s, v) : s + v;
        }
        if (in->op == OP_MAX && nan) s = NAN;
        y[o * inner + q] = in->op == OP_MEAN ? s / (double)n : s;
      }
    return true;
  }

  case OP_BROADCAST: {
    TensorType r;
    if (!ir_broadcast_shape(ot, &a->type, &r) || !same_shape(&r, ot)) {
      type_str(&a->type, s1, sizeof s1);
      type_str(ot, s2, sizeof s2);
      inst_error(it, i, "%s does not broadcast to %s", s1, s2);
      return false;
    }
    for (int64_t k = 0; k < out->numel; k++) y[k] = a->data[bcast_index(&a->type, ot, k)];
    return true;
  }

  case OP_SUM_TO: {
    TensorType r;
    if (!ir_broadcast_shape(&a->type, ot, &r) || !same_shape(&r, &a->type)) {
      type_str(&a->type, s1, sizeof s1);
      type_str(ot, s2, sizeof s2);
      inst_error(it, i, "%s cannot be summed to %s", s1, s2);
      return false;
    }
    for (int64_t k = 0; k < out->numel; k++) y[k] = 0;
    for (int64_t k = 0; k < a->numel; k++) y[bcast_index(ot, &a->type, k)] += a->data[k];
    return true;
  }

  case OP_RESHAPE:
    /* the same elements in the same (row-major) order, with new dims */
    if (a->numel != out->numel) {
      type_str(&a->type, s1, sizeof s1);
      type_str(ot, s2, sizeof s2);
      inst_error(it, i, "%s cannot be reshaped to %s", s1, s2);
      return false;
    }
    memcpy(y, a->data, (size_t)out->numel * sizeof *y);
    return true;

  case OP_MAX_POOL2D: case OP_AVG_POOL2D:
    if (!eval_pool(in, &a->type, ot, a->data, NULL, y)) break;
    return true;
  case OP_MAX_POOL2D_BWD:
    if (!same_shape(&a->type, ot) || !eval_pool(in, ot, &b->type, a->data, b->data, y)) break;
    return true;
  case OP_AVG_POOL2D_BWD:
    if (!eval_pool(in, ot, &a->type, NULL, a->data, y)) break;
    return true;

  case OP_SOFTMAX: case OP_LOG_SOFTMAX: {
    /* stable: subtract the max of each row before exp */
    int64_t axis = in->iattr[0];
    if (axis < 0 || axis >= a->type.rank || !same_shape(&a->type, ot)) break;
    int64_t outer, n, inner;
    split_axis(&a->type, (int)axis, &outer, &n, &inner);
    for (int64_t o = 0; o < outer; o++)
      for (int64_t q = 0; q < inner; q++) {
        const double *x = a->data + o * n * inner + q;
        double *r = y + o * n * inner + q;
        double mx = -INFINITY, s = 0;
        for (int64_t j = 0; j < n; j++) mx = fmax(mx, x[j * inner]);
        for (int64_t j = 0; j < n; j++) s += exp(x[j * inner] - mx);
        for (int64_t j = 0; j < n; j++)
          r[j * inner] = in->op == OP_SOFTMAX ? exp(x[j * inner] - mx) / s : x[j * inner] - mx - log(s);
      }
    return true;
  }

  case OP_ONEHOT: {
    /* label[..., C] -> f32[..., C]: row r is e_{y[r]} */
    if (a->type.dtype != DT_LABEL || a->type.rank < 1 || !same_shape(&a->type, ot)) break;
    int64_t C = a->type.dims[a->type.rank - 1];
    for (int64_t k = 0; k < out->numel; k++) y[k] = 0;
    for (int64_t r = 0; r < a->numel; r++) {
      if (!label_ok(it, i, a->data[r], r, C, "label")) return false;
      y[r * C + (int64_t)a->data[r]] = 1.0;
    }
    return true;
  }

  case OP_SOFTMAX_XENT: {
    /* z[..., C], y label[..., C] -> loss[...]: one row r per position,
     * loss[r] = (max_r - z[r, y[r]]) + log(sum_j exp(z[r,j] - max_r)) */
    if (a->type.rank < 2 || b->type.dtype != DT_LABEL || !same_shape(&a->type, &b->type) ||
        ot->rank != a->type.rank - 1 || out->numel != b->numel)
      break;
    int64_t R = b->numel, C = a->type.dims[a->type.rank - 1];
    for (int64_t r = 0; r < R; r++) {
      double c = b->data[r];
      if (!label_ok(it, i, c, r, C, "label")) return false;
      const double *z = a->data + r * C;
      double mx = -INFINITY, s = 0;
      for (int64_t j = 0; j < C; j++) mx = fmax(mx, z[j]);
      for (int64_t j = 0; j < C; j++) s += exp(z[j] - mx);
      y[r] = (mx - z[(int64_t)c]) + log(s);   /* mx - z first: exact, no cancellation */
    }
    return true;
  }

  case OP_EMBEDDING: case OP_EMBEDDING_BWD: {
    /* embedding: y[r] = W[ids[r]] (rows of d);  embedding_bwd: dW[ids[r]] += dy[r] */
    bool fwd = in->op == OP_EMBEDDING;
    const TensorType *wt = fwd ? &b->type : ot;   /* the table's shape [V, d] */
    int64_t V = a->type.rank ? a->type.dims[a->type.rank - 1] : 0, R = a->numel;
    if (a->type.dtype != DT_LABEL || wt->rank != 2 || wt->dims[0] != V ||
        (fwd ? out->numel : b->numel) != R * wt->dims[1])
      break;
    int64_t d = wt->dims[1];
    if (!fwd)
      for (int64_t k = 0; k < out->numel; k++) y[k] = 0;
    for (int64_t r = 0; r < R; r++) {
      if (!label_ok(it, i, a->data[r], r, V, "id")) return false;
      int64_t v = (int64_t)a->data[r];
      for (int64_t c = 0; c < d; c++) {
        if (fwd) y[r * d + c] = b->data[v * d + c];
        else y[v * d + c] += b->data[r * d + c];
      }
    }
    return true;
  }

  case OP_CAUSAL_MASK: {
    /* [T,T]: 0 where j <= i, -inf where j > i */
    if (ot->rank != 2 || ot->dims[0] != ot->dims[1]) break;
    int64_t T = ot->dims[0];
    for (int64_t r = 0; r < T; r++)
      for (int64_t c = 0; c < T; c++) y[r * T + c] = c > r ? -INFINITY : 0.0;
    return true;
  }

  case OP_LOSS_SCALE:   /* the reference gradient is the unscaled one */
    y[0] = 1.0;
    return true;

  case OP_ATTENTION: case OP_ATTENTION_BWD:
    if (!eval_attention(it, in, 0, out)) break;
    return true;

  case OP_EXTRA: {
    const Inst *p = &it->f->insts[in->args[0]];
    int64_t idx = in->iattr[0];
    if (!((p->op == OP_ATTENTION && idx == 1) || (p->op == OP_ATTENTION_BWD && (idx == 1 || idx == 2)))) {
      inst_error(it, i, "%s has no result %lld", ir_ops[p->op].name, (long long)idx);
      return false;
    }
    if (!eval_attention(it, p, (int)idx, out)) break;
    return true;
  }

  /* batchnorm, per channel c = dim 1 over the n = numel / C values of the other dims:
   * x viewed as [N, C, S] (S = H*W, or 1 for [N, C]). Sums in double, in element order. */
  case OP_BN_MEAN: case OP_BN_VAR: case OP_BN_NORM: case OP_BN_NORM_BWD: {
    const TensorType *xt = &a->type;
    int64_t N = xt->dims[0], C = xt->dims[1], S = xt->rank == 4 ? xt->dims[2] * xt->dims[3] : 1;
    double n = (double)(N * S);
    const Tensor *c3 = in->nargs > 2 ? &it->vals[in->args[2]] : NULL;
    for (int64_t ch = 0; ch < C; ch++) {
      if (in->op == OP_BN_MEAN || in->op == OP_BN_VAR) {
        double s = 0, m = in->op == OP_BN_VAR ? b->data[ch] : 0;
        for (int64_t bi = 0; bi < N; bi++)
          for (int64_t k = 0; k < S; k++) {
            double d = a->data[(bi * C + ch) * S + k] - m;
            s += in->op == OP_BN_VAR ? d * d : d;
          }
        y[ch] = s / n;
      } else if (in->op == OP_BN_NORM) {   /* xhat = (x - m) r */
        for (int64_t bi = 0; bi < N; bi++)
          for (int64_t k = 0; k < S; k++) {
            int64_t e = (bi * C + ch) * S + k;
            y[e] = (a->data[e] - b->data[ch]) * c3->data[ch];
          }
      } else {   /* dx = r (g - mean(g) - xhat mean(g xhat)) */
        double sg = 0, sgx = 0;
        for (int64_t bi = 0; bi < N; bi++)
          for (int64_t k = 0; k < S; k++) {
            int64_t e = (bi * C + ch) * S + k;
            sg += b->data[e];
            sgx += b->data[e] * a->data[e];
          }
        double mg = sg / n, mgx = sgx / n;
        for (int64_t bi = 0; bi < N; bi++)
          for (int64_t k = 0; k < S; k++) {
            int64_t e = (bi * C + ch) * S + k;
            y[e] = c3->data[ch] * (b->data[e] - mg - a->data[e] * mgx);
          }
      }
    }
    return true;
  }

  case OP_DROPOUT_MASK: {
    double p = in->fattr[0];
    if (!(p >= 0 && p < 1)) {
      inst_error(it, i, "dropout probability %g is not in [0, 1)", p);
      return false;
    }
    for (int64_t k = 0; k < out->numel; k++)
      y[k] = uniform01(seed, step, (uint64_t)in->iattr[0], (uint64_t)k) >= p ? 1.0 / (1.0 - p) : 0.0;
    return true;
  }

  default:
    inst_error(it, i, "the interpreter has no rule for this op");
    return false;
  }
  /* A shape check above failed: the IR was not verified. */
  type_str(ot, s1, sizeof s1);
  if (a) type_str(&a->type, s2, sizeof s2);
  inst_error(it, i, "operand shapes do not give the result type %s (operand 0 is %s)", s1, a ? s2 : "none");
  return false;
}

/* layernorm and its two backward ops, row by row: a row is the last k = iattr0 dims
 * (N elements), mean and rstd = 1 / sqrt(var + eps) with the biased variance, computed
 * in two passes (the mean first, then the squared deviations: no cancellation).
 *   layernorm(x, gamma, beta)      y = xhat gamma + beta,  xhat = (x - mean) rstd
 *   layernorm_bwd(x, gamma, dy)    dx = rstd (g - mean(g) - xhat mean(g xhat)),  g = dy gamma
 *   layernorm_bwd_gamma(x, dy)     dgamma = sum over rows of dy xhat */
static bool eval_layernorm(Interp *it, int32_t i, const Inst *in, Tensor *out, const Tensor *const *args) {
  const Tensor *x = args[0];
  int64_t k = in->iattr[0];
  if (k < 1 || k > x->type.rank) {
    inst_error(it, i, "dims=%lld out of range for rank %d", (long long)k, x->type.rank);
    return false;
  }
  int64_t n = 1;
  for (int d = x->type.rank - (int)k; d < x->type.rank; d++) n *= x->type.dims[d];
  bool gam = in->op == OP_LAYERNORM_BWD_GAMMA;
  const Tensor *side = gam ? NULL : args[1];
  const Tensor *dy = in->op == OP_LAYERNORM ? NULL : args[gam ? 1 : 2];
  const Tensor *beta = in->op == OP_LAYERNORM ? args[2] : NULL;
  if (n < 1 || x->numel % n != 0 || (side && side->numel != n) || (beta && beta->numel != n) ||
      (dy && dy->numel != x->numel) || out->numel != (gam ? n : x->numel)) {
    inst_error(it, i, "operand shapes do not fit a layer norm over %lld elements", (long long)n);
    return false;
  }
  double *y = out->data;
  if (gam)
    for (int64_t j = 0; j < n; j++) y[j] = 0;
  for (int64_t r = 0; r < x->numel / n; r++) {
    const double *xr = x->data + r * n;
    double mean = 0, var = 0;
    for (int64_t j = 0; j < n; j++) mean += xr[j];
    mean /= (double)n;
    for (int64_t j = 0; j < n; j++) var += (xr[j] - mean) * (xr[j] - mean);
    var /= (double)n;
    double rstd = 1.0 / sqrt(var + in->fattr[0]);
    if (in->op == OP_LAYERNORM) {
      for (int64_t j = 0; j < n; j++) y[r * n + j] = (xr[j] - mean) * rstd * side->data[j] + beta->data[j];
    } else if (gam) {
      for (int64_t j = 0; j < n; j++) y[j] += dy->data[r * n + j] * (xr[j] - mean) * rstd;
    } else {
      const double *dr = dy->data + r * n;
      double mg = 0, mgx = 0;
      for (int64_t j = 0; j < n; j++) {
        double g = dr[j] * side->data[j];
        mg += g;
        mgx += g * (xr[j] - mean) * rstd;
      }
      mg /= (double)n;
      mgx /= (double)n;
      for (int64_t j = 0; j < n; j++)
        y[r * n + j] = rstd * (dr[j] * side->data[j] - mg - (xr[j] - mean) * rstd * mgx);
    }
  }
  return true;
}

/* Check a caller-provided leaf against its declared type and copy it in. */
static bool load_leaf(Interp *it, int32_t i, Tensor *out, const Tensor *given, const char *what) {
  char s1[96], s2[96];
  bool label = out->type.dtype == DT_LABEL;
  if (given && given->numel > 0 && !given->data) {
    inst_error(it, i, "%s \"%s\" has no data", what, it->f->insts[i].name ? it->f->insts[i].name : "");
    return false;
  }
  if (!given || (given->numel > 0 && !given->data) || ((given->type.dtype == DT_LABEL) != label) ||
      !same_shape(&given->type, &out->type) || given->numel != out->numel) {
    type_str(&out->type, s1, sizeof s1);
    if (given) type_str(&given->type, s2, sizeof s2);
    inst_error(it, i, "%s \"%s\" must be %s, was given %s", what, it->f->insts[i].name ? it->f->insts[i].name : "",
               s1, given ? s2 : "nothing");
    return false;
  }
  memcpy(out->data, given->data, (size_t)out->numel * sizeof(double));
  return true;
}

/* ------------------------------------------------------------------ the loop */

Interp *ir_interp_run(Func *f, InterpMode mode, int64_t batch, const Tensor *inputs, int ninputs,
                      const Tensor *params, int nparams, uint64_t seed, uint64_t step) {
  Interp *it = bp_xmalloc(sizeof *it);
  it->f = f;
  it->mode = mode;
  it->batch = batch;
  it->vals = bp_xmalloc((size_t)(f->ninsts ? f->ninsts : 1) * sizeof *it->vals);
  memset(it->vals, 0, (size_t)(f->ninsts ? f->ninsts : 1) * sizeof *it->vals);

  if (batch < 1) {
    diag_error(SRCLOC_NONE, "interpreter: in @%s: batch size %lld must be at least 1", f->name, (long long)batch);
    goto fail;
  }
  int nparam_insts = 0;
  for (int32_t i = 0; i < f->ninsts; i++)
    if (f->insts[i].op == OP_PARAM) nparam_insts++;
  if (nparams != nparam_insts) {
    diag_error(SRCLOC_NONE, "interpreter: @%s has %d parameters, was given %d", f->name, nparam_insts, nparams);
    goto fail;
  }

  int param_index = 0;
  for (int32_t i = 0; i < f->ninsts; i++) {
    const Inst *in = &f->insts[i];
    if (in->op >= OP__COUNT) {
      diag_error(in->loc, "interpreter: in @%s, %%%d has unknown op %u", f->name, (int)i, (unsigned)in->op);
      goto fail;
    }
    const OpInfo *info = &ir_ops[in->op];
    if (in->nargs > IR_MAX_ARGS || (info->nargs >= 0 && in->nargs != info->nargs)) {
      inst_error(it, i, "has %d operands, the op takes %d", in->nargs, info->nargs);
      goto fail;
    }
    const Tensor *args[IR_MAX_ARGS] = {NULL, NULL, NULL};
    for (int k = 0; k < in->nargs; k++) {
      int32_t v = in->args[k];
      if (v < 0 || v >= i || !it->vals[v].data) {
        inst_error(it, i, "operand %d (%%%d) has no value before it", k, (int)v);
        goto fail;
      }
      args[k] = &it->vals[v];
    }
    if (info->flags & OPF_SINK) continue;
    if (in->type < 0 || in->type >= f->mod->ntypes) {
      inst_error(it, i, "has no type");
      goto fail;
    }
    /* Labels hold one class index per row, not one number per element: only
     * onehot, softmax_xent, embedding(_bwd) and size read them, and only inputs produce them. */
    bool label_in = false;
    for (int k = 0; k < in->nargs; k++) label_in = label_in || args[k]->type.dtype == DT_LABEL;
    if ((label_in && in->op != OP_ONEHOT && in->op != OP_SOFTMAX_XENT && in->op != OP_EMBEDDING &&
         in->op != OP_EMBEDDING_BWD && in->op != OP_SIZE) ||
        (ir_type_get(f->mod, in->type)->dtype == DT_LABEL && in->op != OP_INPUT)) {
      inst_error(it, i, "labels are only produced by inputs and read by onehot, softmax_xent, embedding, embedding_bwd and size");
      goto fail;
    }
    TensorType t = resolve(ir_type_get(f->mod, in->type), batch);
    Tensor *out = &it->vals[i];
    *out = ir_tensor_new(&t);
    bool ok;
    if (in->op == OP_INPUT) {
      int64_t idx = in->iattr[0];
      if (idx < 0 || idx >= ninputs) {
        inst_error(it, i, "input index %lld, but %d inputs were given", (long long)idx, ninputs);
        goto fail;
      }
      ok = load_leaf(it, i, out, &inputs[idx], "input");
    } else if (in->op == OP_PARAM) {
      ok = load_leaf(it, i, out, &params[param_index++], "parameter");
    } else if (in->op == OP_BUFFER) {   /* its initial value: zeros, ones or a constant */
      double v = in->iattr[0] == INIT_ONES ? 1.0 : in->iattr[0] == INIT_CONSTANT ? in->fattr[0] : 0.0;
      for (int64_t k = 0; k < out->numel; k++) out->data[k] = v;
      ok = true;
    } else if (in->op == OP_LAYERNORM || in->op == OP_LAYERNORM_BWD || in->op == OP_LAYERNORM_BWD_GAMMA) {
      ok = eval_layernorm(it, i, in, out, args);
    } else {
      ok = eval(it, i, in, out, args[0], args[1], seed, step);
    }
    if (!ok) goto fail;
    if (ir_dtype_is_low(t.dtype))   /* bf16, f16: rounded in both modes, as stored */
      for (int64_t k = 0; k < out->numel; k++) out->data[k] = ir_round_to((DType)t.dtype, out->data[k]);
    else if (mode == INTERP_F32 && t.dtype != DT_LABEL)
      for (int64_t k = 0; k < out->numel; k++) out->data[k] = (double)(float)out->data[k];
  }
  return it;

fail:
  ir_interp_free(it);
  return NULL;
}

const Tensor *ir_interp_value(Interp *it, int32_t v) {
  if (!it || v < 0 || v >= it->f->ninsts || !it->vals[v].data) return NULL;
  return &it->vals[v];
}

void ir_interp_free(Interp *it) {
  if (!it) return;
  for (int32_t i = 0; i < it->f->ninsts; i++) ir_tensor_free(&it->vals[i]);
  bp_free(it->vals);
  bp_free(it);
}
