/* tests/codegen/seqref.c — a plain C reference for the sequence-model ops (batched
 * products, transpose by permutation, embedding and its backward, gelu, causal_mask,
 * softmax along any axis, softmax_xent and onehot over labels of any rank), in double,
 * written from ir/ops.def's definitions independently of the interpreter and of
 * codegen, for tests/codegen/test_cg_seq.c (harness.h cgt_reference). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tests/codegen/seqref.h"

static TensorType resolved(Func *f, int32_t v, int64_t batch) {
  TensorType t = *ir_vtype(f, v);
  for (int i = 0; i < t.rank; i++)
    if (t.dims[i] == DIM_BATCH) t.dims[i] = batch;
  return t;
}

static int64_t prod(const TensorType *t, int from, int to) {
  int64_t p = 1;
  for (int i = from; i < to; i++) p *= t->dims[i];
  return p;
}

/* element offset of operand x (batch dims aligned right with the result's nbr batch
 * dims) for the result's batch index idx[] */
static int64_t batch_off(const TensorType *x, const int64_t *idx, int nbr) {
  int64_t off = 0;
  for (int d = 0; d < nbr; d++) {
    int ix = d - (nbr - (x->rank - 2));
    if (ix < 0 || x->dims[ix] == 1) continue;
    off += idx[d] * prod(x, ix + 1, x->rank);
  }
  return off;
}

static void matmul(const Inst *in, const Tensor *a, const Tensor *b, Tensor *c) {
  const TensorType *at = &a->type, *bt = &b->type, *ct = &c->type;
  int ra = at->rank, rb = bt->rank, rc = ct->rank;
  (void)rb;
  bool ta = in->op == OP_MATMUL_TN, tb = in->op == OP_MATMUL_NT;
  int64_t M = ct->dims[rc - 2], N = ct->dims[rc - 1];
  if (ta && in->iattr[0] == 1) {   /* fold: sum over the leading dims and k */
    int64_t m = at->dims[ra - 1], K = a->numel / m, n = bt->dims[rb - 1];
    for (int64_t i = 0; i < m; i++)
      for (int64_t j = 0; j < n; j++) {
        double s = 0;
        for (int64_t k = 0; k < K; k++) s += a->data[k * m + i] * b->data[k * n + j];
        c->data[i * n + j] = s;
      }
    return;
  }
  int64_t K = ta ? at->dims[ra - 2] : at->dims[ra - 1];
  int nbr = rc - 2;
  int64_t nb = prod(ct, 0, nbr);
  for (int64_t bi = 0; bi < nb; bi++) {
    int64_t idx[2] = {0, 0}, r = bi;
    for (int d = nbr - 1; d >= 0; d--) idx[d] = r % ct->dims[d], r /= ct->dims[d];
    const double *A = a->data + batch_off(at, idx, nbr), *B = b->data + batch_off(bt, idx, nbr);
    double *C = c->data + bi * M * N;
    for (int64_t i = 0; i < M; i++)
      for (int64_t j = 0; j < N; j++) {
        double s = 0;
        for (int64_t k = 0; k < K; k++) {
          double av = ta ? A[k * M + i] : A[i * K + k];
          double bv = tb ? B[j * K + k] : B[k * N + j];
          s += av * bv;
        }
        C[i * N + j] = s;
      }
  }
}

/* the elementwise ops' results as an f32 machine stores them (f64 models: unrounded) */
static double rnd(bool f64, double v) { return f64 ? v : (double)(float)v; }

static double Phi(double x) { return 0.5 * erfc(-x / sqrt(2.0)); }

static double unary(Op op, double x, double dy) {
  const double c = 0.79788456080286535588, a = 0.044715;
  switch (op) {
  case OP_GELU: return x * Phi(x);
  case OP_GELU_TANH: return 0.5 * x * (1 + tanh(c * (x + a * x * x * x)));
  case OP_GELU_GRAD: return dy * (Phi(x) + x * exp(-0.5 * x * x) / 2.50662827463100050242);
  case OP_GELU_TANH_GRAD: {
    double t = tanh(c * (x + a * x * x * x));
    return dy * ((1 + t) / 2 + x * (1 - t * t) * c * (1 + 3 * a * x * x) / 2);
  }
  default: abort();
  }
}

void seqref_run(Func *f, int64_t batch, const Tensor *ins, const Tensor *ps, Tensor *outs) {
  Tensor *v = calloc((size_t)f->ninsts, sizeof *v);
  bool *own = calloc((size_t)f->ninsts, 1);
  int pk = 0, ko = 0;
  for (int32_t i = 0; i < f->ninsts; i++) {
    const Inst *in = &f->insts[i];
    if (in->op == OP_INPUT) { v[i] = ins[in->iattr[0]]; continue; }
    if (in->op == OP_PARAM) { v[i] = ps[pk++]; continue; }
    if (in->op == OP_OUTPUT) {
      memcpy(outs[ko].data, v[in->args[0]].data, (size_t)outs[ko].numel * sizeof(double));
      ko++;
      continue;
    }
    TensorType t = resolved(f, i, batch);
    bool f64 = t.dtype == DT_F64;   /* an f64 model: no rounding to float */
    v[i] = ir_tensor_new(&t);
    own[i] = true;
    Tensor *y = &v[i];
    const Tensor *a = in->nargs > 0 ? &v[in->args[0]] : NULL, *b = in->nargs > 1 ? &v[in->args[1]] : NULL;
    switch ((Op)in->op) {
    case OP_MATMUL: case OP_MATMUL_NT: case OP_MATMUL_TN: matmul(in, a, b, y); break;
    case OP_ADD:   /* b broadcast over a's leading dims (a bias, a mask) or equal shapes */
      for (int64_t k = 0; k < y->numel; k++) y->data[k] = rnd(f64, a->data[k] + b->data[k % b->numel]);
      break;
    case OP_TRANSPOSE: {
      int perm[4], r = a->type.rank;
      ir_transpose_perm(in, r, perm);
      int64_t idx[4] = {0, 0, 0, 0};
      for (int64_t k = 0; k < y->numel; k++) {
        int64_t rem = k, src = 0;
        for (int d = r - 1; d >= 0; d--) idx[d] = rem % y->type.dims[d], rem /= y->type.dims[d];
        for (int d = 0; d < r; d++) src += idx[d] * prod(&a->type, perm[d] + 1, r);
        y->data[k] = a->data[src];
      }
      break;
    }
    case OP_EMBEDDING: {   /* (ids, W[V,d]) */
      int64_t d = b->type.dims[1], V = b->type.dims[0];
      for (int64_t p = 0; p < a->numel; p++) {
        int64_t id = (int64_t)a->data[p];
        for (int64_t j = 0; j < d; j++) y->data[p * d + j] = id >= 0 && id < V ? b->data[id * d + j] : NAN;
      }
      break;
    }
    case OP_EMBEDDING_BWD: {   /* (ids, dy[...,d]) -> [V,d] */
      int64_t d = y->type.dims[1], V = y->type.dims[0];
      for (int64_t p = 0; p < a->numel; p++) {
        int64_t id = (int64_t)a->data[p];
        if (id < 0 || id >= V) continue;
        for (int64_t j = 0; j < d; j++) y->data[id * d + j] += b->data[p * d + j];
      }
      break;
    }
    case OP_GELU: case OP_GELU_TANH:
      for (int64_t k = 0; k < y->numel; k++) y->data[k] = rnd(f64, unary((Op)in->op, a->data[k], 0));
      break;
    case OP_GELU_GRAD: case OP_GELU_TANH_GRAD:
      for (int64_t k = 0; k < y->numel; k++) y->data[k] = rnd(f64, unary((Op)in->op, a->data[k], b->data[k]));
      break;
    case OP_CAUSAL_MASK: {
      int64_t T = y->type.dims[0];
      for (int64_t r = 0; r < T; r++)
        for (int64_t c = 0; c < T; c++) y->data[r * T + c] = c > r ? -INFINITY : 0.0;
      break;
    }
    case OP_SOFTMAX: case OP_LOG_SOFTMAX: {
      int ax = (int)in->iattr[0];
      int64_t outer = prod(&a->type, 0, ax), R = a->type.dims[ax], inner = prod(&a->type, ax + 1, a->type.rank);
      for (int64_t o = 0; o < outer; o++)
        for (int64_t j = 0; j < inner; j++) {
          const double *x = a->data + o * R * inner + j;
          double *out = y->data + o * R * inner + j, mx = -INFINITY, s = 0;
          for (int64_t r = 0; r < R; r++) mx = fmax(mx, x[r * inner]);
          for (int64_t r = 0; r < R; r++) s += exp(x[r * inner] - mx);
          for (int64_t r = 0; r < R; r++)
            out[r * inner] = in->op == OP_SOFTMAX ? exp(x[r * inner] - mx) / s : x[r * inner] - mx - log(s);
        }
      break;
    }
    case OP_SOFTMAX_XENT: {
      int64_t C = a->type.dims[a->type.rank - 1];
      for (int64_t r = 0; r < y->numel; r++) {
        const double *z = a->data + r * C;
        double mx = -INFINITY, s = 0;
        for (int64_t c = 0; c < C; c++) mx = fmax(mx, z[c]);
        for (int64_t c = 0; c < C; c++) s += exp(z[c] - mx);
        int64_t l = (int64_t)b->data[r];
        y->data[r] = l >= 0 && l < C ? log(s) + mx - z[l] : NAN;
      }
      break;
    }
    case OP_ONEHOT: {
      int64_t C = y->type.dims[y->type.rank - 1];
      for (int64_t r = 0; r < a->numel; r++) {
        int64_t l = (int64_t)a->data[r];
        if (l >= 0 && l < C) y->data[r * C + l] = 1;
      }
      break;
    }
    default: abort();
    }
  }
  for (int32_t i = 0; i < f->ninsts; i++)
    if (own[i]) ir_tensor_free(&v[i]);
  free(v);
  free(own);
}
