/* driver/fdcheck.c — derived gradients against finite differences of the loss, both
 * computed by the reference interpreter (ir/interp.c); `bpcc gradcheck`.
 *
 *   1. The caller lowers the model and runs the pass pipeline on a clone to get the
 *      gradient function. The finite differences use the lowered forward function
 *      untouched by any pass, so a wrong rewrite shows up too.
 *   2. Random inputs (uniform [-1, 1]), labels (uniform classes) and parameters
 *      (uniform [-a, a], a = 1/sqrt(rows) for a matrix, 0.5 for vectors and scalars),
 *      from a seeded generator: the same seed gives the same check.
 *   3. Elements: every element of a parameter with at most FD_ALL_MAX (4096) elements,
 *      otherwise FD_SAMPLES (256) distinct elements drawn with the seed (--samples N:
 *      all of a parameter with at most N elements, otherwise N drawn).
 *   4. g_num, per element, by Richardson extrapolation of central differences
 *      (Richardson 1911; Ridders 1982, "Accurate computation of F'(x) and F'(x)F''(x)"):
 *        D_i = (L(p + s_i) - L(p - s_i)) / 2 s_i,   s_i = 2 h0 / 2^i,  h0 = 1e-3
 *        A[i][0] = D_i,  A[i][j] = A[i][j-1] + (A[i][j-1] - A[i-1][j-1]) / (4^j - 1)
 *      D_i = L' + c1 s^2 + c2 s^4 + ...; column j cancels the terms up to s^2j, so
 *      A[1][1] is the five-point stencil (8 (L(p+e) - L(p-e)) - (L(p+2e) - L(p-2e))) / 12e
 *      at e = h0, A[2][1] the same at h0/2, and A[2][2] their extrapolation, O(h^6).
 *      Each level costs two loss evaluations.
 *   5. Candidates for g_num and their estimated errors err = trunc + rnd:
 *        a five-point value A[i][1]:     trunc = 16/15 |A[i+1][1] - A[i][1]|  (its
 *                                        error, from the same stencil at half the step)
 *        an extrapolation A[i][j], j >= 2: trunc = |A[i][j] - A[i][j-1]|  (the error
 *                                        of the less accurate neighbour: a bound)
 *        rnd: each L carries ~FD_ROUND (4) units of roundoff u of |L|, so
 *             R[i][0] = FD_ROUND u max|L(p +- s_i)| / s_i, and the bounds add through
 *             the extrapolation: R[i][j] = (4^j R[i][j-1] + R[i-1][j-1]) / (4^j - 1)
 *      g_num is the candidate with the smallest err: the five-point value where the
 *      function is smooth on the scale of h0 (rounding dominates there, and the
 *      extrapolation from smaller steps has more of it), an extrapolation where it
 *      curves. Levels are added while err is above FD_GOOD (1/10) of what the
 *      threshold allows for the element, truncation still dominates, and the newest
 *      level did not make err worse than 2x the best, up to FD_LEVELS (6: the finest
 *      step is h0/16). Three levels (six evaluations) are the least; a smooth element
 *      stops there. A function that curves sharply on the scale of h0 goes on: for a
 *      batch normalization over 6 rows (eps 1e-5) the fixed five-point stencil at
 *      e = 1e-3 was off by 1.3e-7 relative and failed a correct gradient (issue 11,
 *      defect 7; tests/passes/norm_layer.bp).
 *   6. Per parameter: the max over its elements of
 *        rel = |g_num - g_ana| / max(|g_num| + |g_ana|, floor)      (0/0 = 0)
 *      and of err on the same scale ("fd err"). The floor (1e-4 in f64, 1e-3 in f32)
 *      keeps rounding noise on gradients that are zero or tiny from counting as error.
 *      Threshold: 1e-7 in f64, 1e-3 in f32 (f32 rounding of a whole forward and
 *      backward pass; FdOptions.tol overrides). An element fails when rel is above the
 *      threshold and |g_num - g_ana| is above its err; one above the threshold but
 *      within its own err is not resolved by the differences and is counted apart
 *      ("within fd error"), not failed — the report prints both figures, so a wrong
 *      rule (a disagreement far above fd err) reads differently from noise.
 *   7. L is computed in f64 in both modes; with f32 the analytic gradient runs in f32,
 *      so the check measures what an f32 machine computes against the true derivative.
 *   8. Kinks (relu, abs, sign: a derivative that jumps): at every evaluation the sign
 *      pattern of every relu/abs/sign operand is compared with the one at p. If one
 *      flipped within the first three levels, the ladder straddles a kink, so h0
 *      shrinks tenfold (down to 1e-6) and the ladder restarts; if it still flips, the
 *      element sits within 2e-6 of a kink and is skipped and counted ("skipped at
 *      kinks"). A flip at a deeper level (the operand crossed zero twice) ends the
 *      ladder with the levels before it. So no reported number is polluted by a kink.
 *      A max (max_pool2d's windows, the max reduction) has a kink where its argmax
 *      changes: the pattern also holds the index each window's or row's max came
 *      from, compared the same way. (Exact ties at p are measure zero for random
 *      inputs; relu's zeros tie, but their derivative is 0 on both sides.)
 *   9. Dropout: every run uses the same seed and step, so the same masks. */
#include "driver/fdcheck.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define FD_H0 1e-3        /* the five-point e of the first ladder: its steps are 2e-3, 1e-3, ... */
#define FD_H0_MIN 1e-6    /* at kinks h0 shrinks tenfold, down to this */
#define FD_LEVELS 6       /* central differences at 2 h0 / 2^i, i < FD_LEVELS */
#define FD_MIN_LEVELS 3   /* the first extrapolated value with an error estimate */
#define FD_ROUND 4.0      /* rounding of one loss evaluation, in units of u |L| */
#define FD_GOOD 0.1       /* refine until err is this fraction of the allowed error */

/* ------------------------------------------------------------------ random numbers */

static uint64_t rng_next(uint64_t *s) {   /* splitmix64 */
  uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static double rng_unif(uint64_t *s) { return (double)(rng_next(s) >> 11) * 0x1.0p-53; }

/* ------------------------------------------------------------------ the loss */

typedef struct {
  Func *fwd;
  int64_t batch;
  uint64_t seed;
  Tensor *inputs, *params;  /* [ninputs] by input index, [nparams] in instruction order */
  int ninputs, nparams;
  int32_t *param_ids;       /* [nparams]: the param instructions in fwd */
  int32_t loss;             /* the loss value in fwd */
  int64_t nsigns;           /* the kink pattern's entries: relu/abs/sign operands, max results */
  int32_t *base_signs;      /* [nsigns]: the pattern at the unperturbed parameters */
  int32_t *signs;           /* [nsigns]: scratch */
  int64_t runs;             /* loss evaluations so far */
} FdState;

static TensorType resolved(const TensorType *t, int64_t batch) {
  TensorType r = *t;
  for (int i = 0; i < r.rank; i++)
    if (r.dims[i] == DIM_BATCH) r.dims[i] = batch;
  return r;
}

static bool is_kink_op(Op op) { return ir_ops[op].flags & OPF_KINK; }   /* relu, abs, sign (ir/ops.def) */
static bool is_max_op(Op op) { return op == OP_MAX || op == OP_MAX_POOL2D; }

/* The entries instruction `in` adds to the kink pattern: one sign per element of a
 * relu/abs/sign operand, one argmax per element of a max's result. */
static int64_t kink_entries(Func *f, const Inst *in, int64_t batch) {
  if (is_kink_op((Op)in->op)) return ir_type_numel(ir_vtype(f, in->args[0]), batch);
  if (is_max_op((Op)in->op)) return ir_type_numel(ir_vtype(f, (int32_t)(in - f->insts)), batch);
  return 0;
}

/* The argmax of each window of max_pool2d (the same first-largest rule as the
 * interpreter), or of each row of a max reduction, into pat; returns the entries. */
static int64_t max_pattern(const Inst *in, const Tensor *x, int64_t nout, int32_t *pat) {
  if (in->op == OP_MAX_POOL2D) {
    int64_t k, s, p;
    ir_pool_geom(in, &k, &s, &p);
    int64_t H = x->type.dims[2], W = x->type.dims[3], Ho = ir_pool_out(H, k, s, p), Wo = ir_pool_out(W, k, s, p);
    int64_t n = 0, NC = x->type.dims[0] * x->type.dims[1];
    for (int64_t c = 0; c < NC && n < nout; c++)
      for (int64_t oh = 0; oh < Ho; oh++)
        for (int64_t ow = 0; ow < Wo && n < nout; ow++) {
          int64_t arg = -1;
          for (int64_t i = 0; i < k; i++)
            for (int64_t j = 0; j < k; j++) {
              int64_t h = oh * s - p + i, w = ow * s - p + j;
              if (h < 0 || h >= H || w < 0 || w >= W) continue;
              int64_t xi = (c * H + h) * W + w;
              if (arg < 0 || x->data[xi] > x->data[arg]) arg = xi;
            }
          pat[n++] = (int32_t)(arg < 0 ? -1 : arg % (H * W));
        }
    return n;
  }
  int64_t outer = 1, len = x->numel, inner = 1;
  if (in->iattr[0] != IR_AXIS_ALL) {
    int axis = (int)in->iattr[0];
    len = x->type.dims[axis];
    for (int d = 0; d < axis; d++) outer *= x->type.dims[d];
    for (int d = axis + 1; d < x->type.rank; d++) inner *= x->type.dims[d];
  }
  int64_t n = 0;
  for (int64_t o = 0; o < outer; o++)
    for (int64_t q = 0; q < inner && n < nout; q++) {
      int64_t arg = 0;
      for (int64_t j = 1; j < len; j++)
        if (x->data[(o * len + j) * inner + q] > x->data[(o * len + arg) * inner + q]) arg = j;
      pat[n++] = (int32_t)arg;
    }
  return n;
}

/* Run the forward function in f64: the loss (NaN on error), and the kink pattern (the
 * sign of every relu/abs/sign operand, the argmax of every max) into signs[nsigns]. */
static double run_loss(FdState *st, int32_t *signs) {
  st->runs++;
  Interp *it = ir_interp_run(st->fwd, INTERP_F64, st->batch, st->inputs, st->ninputs, st->params, st->nparams,
                             st->seed, 1);
  if (!it) return NAN;
  double l = ir_interp_value(it, st->loss)->data[0];
  int64_t k = 0;
  for (int32_t i = 0; i < st->fwd->ninsts; i++) {
    const Inst *in = &st->fwd->insts[i];
    const Tensor *x = kink_entries(st->fwd, in, st->batch) ? ir_interp_value(it, in->args[0]) : NULL;
    if (!x) continue;
    if (is_max_op((Op)in->op)) {
      k += max_pattern(in, x, st->nsigns - k, signs + k);
      continue;
    }
    for (int64_t e = 0; e < x->numel && k < st->nsigns; e++)
      signs[k++] = (x->data[e] > 0) - (x->data[e] < 0);
  }
  ir_interp_free(it);
  return l;
}

/* L at element e of P moved by s; *kink |= some relu/abs/sign operand changed sign. */
static double loss_at(FdState *st, Tensor *P, int64_t e, double keep, double s, bool *kink) {
  P->data[e] = keep + s;
  double l = run_loss(st, st->signs);
  P->data[e] = keep;
  *kink |= memcmp(st->signs, st->base_signs, (size_t)st->nsigns * sizeof *st->signs) != 0;
  return l;
}

/* ------------------------------------------------------------------ one derivative */

typedef struct {
  double value;   /* g_num; NaN when skipped at a kink (or a loss was NaN) */
  double err;     /* its estimated error (absolute): trunc + rnd */
  double trunc;   /* ... of truncation */
  double rnd;     /* ... of rounding */
  bool kink;      /* skipped: every ladder straddled a kink */
} FdDeriv;

/* dL/dP[e] by the ladder of the file comment (4, 5, 8). Refining stops once err is at
 * most good * max(|g_num| + |g_ana|, floor), or rounding dominates it. */
static FdDeriv derivative(FdState *st, Tensor *P, int64_t e, double g_ana, double good, double floor_) {
  const double u = DBL_EPSILON / 2;
  const FdDeriv none = {NAN, INFINITY, INFINITY, INFINITY, false};
  double keep = P->data[e];
  for (double h0 = FD_H0; h0 >= FD_H0_MIN * 0.999; h0 /= 10) {
    double A[FD_LEVELS][FD_LEVELS], R[FD_LEVELS][FD_LEVELS];   /* [level][column], j <= i */
    FdDeriv best = none;
    bool kink = false;
    int i;
    for (i = 0; i < FD_LEVELS; i++) {
      double s = 2 * h0 / (double)(1 << i);
      double lp = loss_at(st, P, e, keep, s, &kink);
      double lm = loss_at(st, P, e, keep, -s, &kink);
      if (kink) break;
      A[i][0] = (lp - lm) / (2 * s);
      R[i][0] = FD_ROUND * u * fmax(fabs(lp), fabs(lm)) / s;
      double row = INFINITY;   /* the smallest err of this level's candidates */
      for (int j = 1; j <= i; j++) {
        double f = ldexp(1, 2 * j) - 1;   /* 4^j - 1 */
        A[i][j] = A[i][j - 1] + (A[i][j - 1] - A[i - 1][j - 1]) / f;
        R[i][j] = ((f + 1) * R[i][j - 1] + R[i - 1][j - 1]) / f;
        if (j == 1 && i < 2) continue;
        FdDeriv d = j == 1 ? (FdDeriv){A[i - 1][1], 0, 16.0 / 15 * fabs(A[i][1] - A[i - 1][1]), R[i - 1][1], false}
                           : (FdDeriv){A[i][j], 0, fabs(A[i][j] - A[i][j - 1]), R[i][j], false};
        d.err = d.trunc + d.rnd;
        if (isnan(d.err)) d.err = INFINITY;   /* a NaN loss: NaN unless a later level is clean */
        row = fmin(row, d.err);
        if (d.err < best.err || isnan(best.value)) best = d;
      }
      if (i + 1 < FD_MIN_LEVELS) continue;
      if (best.err <= good * fmax(fabs(best.value) + fabs(g_ana), floor_)) break;   /* good enough */
      if (best.trunc <= best.rnd || row > 2 * best.err) break;   /* smaller steps add more rounding */
    }
    if (!kink || i >= FD_MIN_LEVELS) return best;   /* a flip past level 3: the levels before it */
  }
  return (FdDeriv){NAN, INFINITY, INFINITY, INFINITY, true};
}

/* ------------------------------------------------------------------ the check */

/* Random inputs, labels and parameters (file comment, 2). */
static void random_values(FdState *st, bool f32) {
  Func *fwd = st->fwd;
  uint64_t rs = st->seed * 0x2545f4914f6cdd1dull + 17;
  int np = 0;
  for (int32_t i = 0; i < fwd->ninsts; i++) {
    const Inst *in = &fwd->insts[i];
    if (in->op != OP_INPUT && in->op != OP_PARAM) continue;
    TensorType t = resolved(ir_vtype(fwd, i), st->batch);
    Tensor x = ir_tensor_new(&t);
    double a = t.rank == 2 ? 1.0 / sqrt((double)t.dims[0]) : 0.5;
    for (int64_t k = 0; k < x.numel; k++) {
      double r = rng_unif(&rs);
      if (t.dtype == DT_LABEL) x.data[k] = floor(r * (double)t.dims[t.rank - 1]);
      else if (in->op == OP_INPUT) x.data[k] = 2 * r - 1;
      else x.data[k] = (2 * r - 1) * a;
      if (f32 && t.dtype != DT_LABEL) x.data[k] = (double)(float)x.data[k];
    }
    if (in->op == OP_INPUT) {
      ir_tensor_free(&st->inputs[in->iattr[0]]);
      st->inputs[in->iattr[0]] = x;
    } else {
      st->param_ids[np] = i;
      st->params[np++] = x;
    }
  }
}

/* The elements of parameter p to check (file comment, 3): idx[*m], bp_malloc'd. */
static int64_t *pick_elements(int64_t n, uint64_t seed, int64_t samples, int p, int64_t *m) {
  if (samples > 0) *m = n <= samples ? n : samples;
  else *m = n <= FD_ALL_MAX ? n : FD_SAMPLES;
  int64_t *idx = bp_xmalloc((size_t)(*m + 1) * sizeof *idx);
  if (*m == n) {
    for (int64_t k = 0; k < n; k++) idx[k] = k;
    return idx;
  }
  uint64_t ps = seed * 1000003u + (uint64_t)p;   /* distinct: rejection against those drawn */
  for (int64_t k = 0; k < *m; k++) {
    int64_t e;
    bool dup;
    do {
      e = (int64_t)(rng_unif(&ps) * (double)n);
      dup = false;
      for (int64_t j = 0; j < k; j++) dup |= idx[j] == e;
    } while (dup);
    idx[k] = e;
  }
  return idx;
}

/* ------------------------------------------------------- naming a non-finite value */

/* The name bound to value v: an output sink's (declared outputs and, lowered with
 * activations, every `name = expr`), else a leaf's own. */
static const char *value_name(const Func *g, int32_t v) {
  for (int32_t j = v + 1; j < g->ninsts; j++)
    if (g->insts[j].op == OP_OUTPUT && g->insts[j].args[0] == v) return g->insts[j].name;
  return g->insts[v].name;
}

static void loc_text(SrcLoc l, char *buf, size_t n) {
  const char *file = l.file >= 0 ? diag_file_name(l.file) : NULL;
  if (file) snprintf(buf, n, "%s:%d:%d", file, (int)l.line, (int)l.col);
  else snprintf(buf, n, "?");
}

/* Describe instruction i of g, whose value holds the non-finite element x. */
static void describe_inst(Func *g, int32_t i, double x, char *what, size_t n) {
  const Inst *in = &g->insts[i];
  const char *op = ir_ops[in->op].name, *name = value_name(g, i);
  const char *val = isnan(x) ? "nan" : x > 0 ? "inf" : "-inf";
  char loc[600];
  loc_text(in->loc, loc, sizeof loc);
  if (in->op == OP_PARAM) snprintf(what, n, "parameter '%s' before the update, at %s (%s)", name, loc, val);
  else if (in->op == OP_INPUT) snprintf(what, n, "input '%s' at %s (%s)", name, loc, val);
  else if (in->flags & IF_BACKWARD) {
    const char *through = in->from >= 0 && in->from < i ? value_name(g, in->from) : NULL;
    snprintf(what, n, "the %s of the backward pass (rule %s%s%s%s) at %s (%s)", op, in->rule ? in->rule : "?",
             through ? ", through '" : "", through ? through : "", through ? "'" : "", loc, val);
  } else if (name) snprintf(what, n, "'%s', the %s at %s (%s)", name, op, loc, val);
  else snprintf(what, n, "the %s at %s (%s)", op, loc, val);
}

bool nonfinite_in(Func *g, Interp *it, char *what, size_t n) {
  for (int32_t i = 0; i < g->ninsts; i++) {
    const Inst *in = &g->insts[i];
    if ((ir_ops[in->op].flags & OPF_SINK) || ir_vtype(g, i)->dtype == DT_LABEL) continue;
    const Tensor *t = ir_interp_value(it, i);
    for (int64_t e = 0; t && e < t->numel; e++)
      if (!isfinite(t->data[e])) {
        describe_inst(g, i, t->data[e], what, n);
        return true;
      }
  }
  return false;
}

/* The gradient value of each parameter in grad: grad_of[p] for the p-th param in
 * instruction order (the order both functions take their parameters in). */
static bool gradient_values(FdState *st, Func *grad, int32_t *grad_of) {
  int32_t *ordinal = bp_xmalloc((size_t)(grad->ninsts + 1) * sizeof *ordinal);
  int np = 0;
  bool ok = true;
  for (int32_t i = 0; i < grad->ninsts; i++) {
    const Inst *in = &grad->insts[i];
    ordinal[i] = -1;
    if (in->op != OP_PARAM) continue;
    const char *want = np < st->nparams ? st->fwd->insts[st->param_ids[np]].name : NULL;
    if (ok && (!want || !in->name || strcmp(in->name, want) != 0)) {
      fprintf(stderr, "bpcc: error: gradcheck: parameter %d of @%s is '%s', of @%s '%s'\n", np, grad->name,
              in->name ? in->name : "?", st->fwd->name, want ? want : "(none)");
      ok = false;
    }
    ordinal[i] = np++;
  }
  if (ok && np != st->nparams) {
    fprintf(stderr, "bpcc: error: gradcheck: @%s has %d parameters, @%s %d\n", grad->name, np, st->fwd->name,
            st->nparams);
    ok = false;
  }
  for (int p = 0; p < st->nparams; p++) grad_of[p] = -1;
  for (int32_t i = 0; ok && i < grad->ninsts; i++)
    if (grad->insts[i].op == OP_GRAD && ordinal[grad->insts[i].args[0]] >= 0)
      grad_of[ordinal[grad->insts[i].args[0]]] = grad->insts[i].args[1];
  for (int p = 0; ok && p < st->nparams; p++) {
    if (grad_of[p] >= 0) continue;
    fprintf(stderr, "bpcc: error: gradcheck: @%s has no grad for parameter '%s'\n", grad->name,
            st->fwd->insts[st->param_ids[p]].name);
    ok = false;
  }
  bp_free(ordinal);
  return ok;
}

int fd_check(Func *fwd, Func *grad, const FdOptions *o, FILE *out, const char *label) {
  bool f32 = o->f32;
  double tol = o->tol > 0 ? o->tol : f32 ? 1e-3 : 1e-7;
  double floor_ = f32 ? 1e-3 : 1e-4;
  int status = -1;
  FdState st;
  memset(&st, 0, sizeof st);
  Interp *ana = NULL;
  int32_t *grad_of = NULL;
  st.fwd = fwd;
  st.batch = o->batch;
  st.seed = o->seed;
  st.loss = -1;
  for (int32_t i = 0; i < fwd->ninsts; i++) {
    const Inst *in = &fwd->insts[i];
    if (in->op == OP_LOSS) st.loss = in->args[0];
    if (in->op == OP_INPUT && in->iattr[0] + 1 > st.ninputs) st.ninputs = (int)in->iattr[0] + 1;
    if (in->op == OP_PARAM) st.nparams++;
    st.nsigns += kink_entries(fwd, in, st.batch);
  }
  if (st.loss < 0) {
    fprintf(stderr, "bpcc: error: gradcheck: @%s has no loss to differentiate\n", fwd->name);
    return -1;
  }
  st.inputs = bp_xmalloc((size_t)(st.ninputs + 1) * sizeof *st.inputs);
  memset(st.inputs, 0, (size_t)(st.ninputs + 1) * sizeof *st.inputs);
  st.params = bp_xmalloc((size_t)(st.nparams + 1) * sizeof *st.params);
  st.param_ids = bp_xmalloc((size_t)(st.nparams + 1) * sizeof *st.param_ids);
  st.base_signs = bp_xmalloc((size_t)(st.nsigns + 1) * sizeof *st.base_signs);
  st.signs = bp_xmalloc((size_t)(st.nsigns + 1) * sizeof *st.signs);
  random_values(&st, f32);
  grad_of = bp_xmalloc((size_t)(st.nparams + 1) * sizeof *grad_of);
  if (!gradient_values(&st, grad, grad_of)) goto done;

  /* the analytic gradients, and the loss at p */
  ana = ir_interp_run(grad, f32 ? INTERP_F32 : INTERP_F64, st.batch, st.inputs, st.ninputs, st.params, st.nparams,
                      st.seed, 1);
  if (!ana) goto done;
  double l0 = run_loss(&st, st.base_signs);
  if (!isfinite(l0)) {   /* nothing to differentiate: say where it went bad */
    char what[1200] = "the loss";
    Interp *it = ir_interp_run(fwd, INTERP_F64, st.batch, st.inputs, st.ninputs, st.params, st.nparams, st.seed, 1);
    if (it) {
      nonfinite_in(fwd, it, what, sizeof what);
      ir_interp_free(it);
    }
    fprintf(stderr, "bpcc: error: gradcheck %s: @%s: the loss is %g at the random point (batch %lld, seed %llu); the first "
            "non-finite value is %s. Nothing can be checked: does a function get values outside its domain (a log of "
            "a value <= 0: cross_entropy takes probabilities; softmax_cross_entropy takes logits)?\n",
            label, fwd->name, l0, (long long)st.batch, (unsigned long long)st.seed, what);
    goto done;
  }

  fprintf(out, "gradcheck %s: @%s, %s, batch %lld, seed %llu, loss %.9g\n", label, fwd->name, f32 ? "f32" : "f64",
          (long long)st.batch, (unsigned long long)st.seed, l0);
  fprintf(out, "  threshold %g on max |g_num - g_ana| / max(|g_num| + |g_ana|, %g)\n", tol, floor_);
  fprintf(out, "  g_num: central differences at steps %g / 2^k (k < %d, as needed), Richardson-extrapolated;"
          " fd err: its estimated error, same scale\n", 2 * FD_H0, FD_LEVELS);
  bool ok = true;
  int64_t total_skipped = 0, total_unresolved = 0;
  for (int p = 0; p < st.nparams; p++) {
    Tensor *P = &st.params[p];
    const Tensor *G = ir_interp_value(ana, grad_of[p]);
    const Inst *pin = &fwd->insts[st.param_ids[p]];
    int64_t m;
    int64_t *idx = pick_elements(P->numel, st.seed, o->samples, p, &m);
    double worst = 0, worst_fd = 0;   /* max rel, max err on the same scale */
    int64_t skipped = 0, unresolved = 0, failed = 0;
    int64_t bad_at = -1;              /* the failing element with the largest rel */
    double bad_rel = 0, bad_num = 0, bad_err = 0, bad_ana = 0;
    for (int64_t k = 0; k < m; k++) {
      int64_t e = idx[k];
      double g = G->data[e];
      FdDeriv d = derivative(&st, P, e, g, FD_GOOD * tol, floor_);
      if (d.kink) {
        skipped++;
        continue;
      }
      double den = fmax(fabs(d.value) + fabs(g), floor_);
      double diff = fabs(d.value - g);
      double rel = diff == 0 ? 0 : diff / den;
      worst_fd = fmax(worst_fd, d.err / den);
      if (!(rel <= worst)) worst = rel;   /* NaN counts as worst */
      if (rel <= tol) continue;
      if (diff <= d.err) {                /* not resolved by the differences */
        unresolved++;
        continue;
      }
      failed++;
      if (bad_at < 0 || !(rel <= bad_rel)) {
        bad_at = e;
        bad_rel = rel;
        bad_num = d.value;
        bad_err = d.err;
        bad_ana = g;
      }
    }
    total_skipped += skipped;
    total_unresolved += unresolved;
    char ts[96];
    ir_type_str(ir_vtype(fwd, st.param_ids[p]), ts, sizeof ts);
    ok &= failed == 0;
    fprintf(out, "  %-14s %-14s %6lld of %-8lld max rel err %-10.3g fd err %-9.2g", pin->name, ts,
            (long long)(m - skipped), (long long)P->numel, worst, worst_fd);
    if (pin->loc.file >= 0) fprintf(out, " %s:%d:%d", diag_file_name(pin->loc.file), (int)pin->loc.line, (int)pin->loc.col);
    fprintf(out, "  %s", failed ? "FAIL" : "ok");
    if (failed)
      fprintf(out, " (%lld above the threshold; element %lld: numeric %.10g +- %.2g, derived %.10g)", (long long)failed,
              (long long)bad_at, bad_num, bad_err, bad_ana);
    if (unresolved) fprintf(out, " (%lld within fd error)", (long long)unresolved);
    if (skipped) fprintf(out, " (%lld skipped at kinks)", (long long)skipped);
    fprintf(out, "\n");
    bp_free(idx);
  }
  fprintf(out, "gradcheck: %s (%d parameters, %lld loss evaluations", ok ? "passed" : "FAILED", st.nparams,
          (long long)st.runs);
  if (total_unresolved) fprintf(out, ", %lld elements within fd error", (long long)total_unresolved);
  if (total_skipped) fprintf(out, ", %lld elements skipped at kinks", (long long)total_skipped);
  fprintf(out, ")\n");
  status = ok ? 0 : 1;

done:
  bp_free(grad_of);
  if (ana) ir_interp_free(ana);
  for (int i = 0; i < st.ninputs; i++) ir_tensor_free(&st.inputs[i]);
  for (int i = 0; i < st.nparams; i++) ir_tensor_free(&st.params[i]);
  bp_free(st.inputs);
  bp_free(st.params);
  bp_free(st.param_ids);
  bp_free(st.base_signs);
  bp_free(st.signs);
  return status;
}
