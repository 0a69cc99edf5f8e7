/* driver/fdcheck.c — derived gradients against central finite differences of the loss,
 * both computed by the reference interpreter (ir/interp.c); `bpcc gradcheck`.
 *
 *   1. The caller lowers the model and runs the pass pipeline on a clone to get the
 *      gradient function. The finite differences use the lowered forward function
 *      untouched by any pass, so a wrong rewrite shows up too.
 *   2. Random inputs (uniform [-1, 1]), labels (uniform classes) and parameters
 *      (uniform [-a, a], a = 1/sqrt(rows) for a matrix, 0.5 for vectors and scalars),
 *      from a seeded generator: the same seed gives the same check.
 *   3. Elements: every element of a parameter with at most FD_ALL_MAX (4096) elements,
 *      otherwise FD_SAMPLES (256) distinct elements drawn with the seed.
 *   4. g_num by the five-point central stencil
 *        (8 (L(p+e) - L(p-e)) - (L(p+2e) - L(p-2e))) / 12e,   e = 1e-3,
 *      whose truncation error is O(e^4) (~1e-13) and rounding error ~2e-16 |L| / e
 *      (~3e-13 |L|): the plain two-point difference cannot reach 1e-7 on small
 *      gradients. L is computed in f64 in both modes; with f32 the analytic gradient
 *      runs in f32, so the check measures what an f32 machine computes against the
 *      true derivative.
 *   5. Per parameter: the max over its elements of
 *        |g_num - g_ana| / max(|g_num| + |g_ana|, floor)      (0/0 = 0)
 *      The floor (1e-4 in f64, 1e-3 in f32) keeps finite-difference noise on gradients
 *      that are zero or tiny from counting as error (noise / floor stays ~1e-9).
 *      Threshold: 1e-7 in f64, 1e-3 in f32 (f32 rounding of a whole forward and
 *      backward pass; FdOptions.tol overrides).
 *   6. Kinks (relu, abs, sign: a derivative that jumps): at each of the four points
 *      the sign pattern of every relu/abs/sign operand is compared with the one at p.
 *      If a sign flipped, the stencil straddles a kink, so e shrinks tenfold (down to
 *      1e-6); if it still flips, the element sits within 2e-6 of a kink and is skipped
 *      and counted ("skipped at kinks"). So no reported number is polluted by a kink.
 *      Ties of max are not detected (measure zero for random inputs).
 *   7. Dropout: every run uses the same seed and step, so the same masks. */
#include "driver/fdcheck.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define FD_EPS 1e-3
#define FD_EPS_MIN 1e-6

/* ------------------------------------------------------------------ random numbers */

static uint64_t rng_next(uint64_t *s) {   /* splitmix64 */
  uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static double rng_unif(uint64_t *s) { return (double)(rng_next(s) >> 11) * 0x1.0p-53; }

/* ------------------------------------------------------------------ the check */

typedef struct {
  Func *fwd, *grad;
  int64_t batch;
  Tensor *inputs, *params;  /* [ninputs] by input index, [nparams] in instruction order */
  int ninputs, nparams;
  int32_t *param_ids;       /* [nparams]: the param instructions in fwd */
  int32_t fwd_loss;         /* the loss value in fwd */
  uint64_t seed;
} GC;

static TensorType resolved(const TensorType *t, int64_t batch) {
  TensorType r = *t;
  for (int i = 0; i < r.rank; i++)
    if (r.dims[i] == DIM_BATCH) r.dims[i] = batch;
  return r;
}

/* Run the forward function in f64; the loss (NaN on error) and, if signs != NULL,
 * the sign pattern of every relu/abs/sign operand appended into signs. */
static double run_loss(GC *gc, signed char *signs, int64_t nsigns) {
  Interp *it = ir_interp_run(gc->fwd, INTERP_F64, gc->batch, gc->inputs, gc->ninputs, gc->params, gc->nparams,
                             gc->seed, 1);
  if (!it) return NAN;
  double l = ir_interp_value(it, gc->fwd_loss)->data[0];
  if (signs) {
    int64_t k = 0;
    for (int32_t i = 0; i < gc->fwd->ninsts; i++) {
      Op op = (Op)gc->fwd->insts[i].op;
      if (op != OP_RELU && op != OP_ABS && op != OP_SIGN) continue;
      const Tensor *x = ir_interp_value(it, gc->fwd->insts[i].args[0]);
      for (int64_t e = 0; e < x->numel && k < nsigns; e++) signs[k++] = (signed char)((x->data[e] > 0) - (x->data[e] < 0));
    }
  }
  ir_interp_free(it);
  return l;
}

static int64_t count_signs(GC *gc) {
  int64_t n = 0;
  for (int32_t i = 0; i < gc->fwd->ninsts; i++) {
    Op op = (Op)gc->fwd->insts[i].op;
    if (op != OP_RELU && op != OP_ABS && op != OP_SIGN) continue;
    TensorType t = resolved(ir_vtype(gc->fwd, gc->fwd->insts[i].args[0]), gc->batch);
    n += ir_type_numel(&t, gc->batch);
  }
  return n;
}

int fd_check(Func *fwd, Func *grad, const FdOptions *o, FILE *out, const char *label) {
  bool f32 = o->f32;
  int64_t batch = o->batch;
  double tol = o->tol > 0 ? o->tol : f32 ? 1e-3 : 1e-7;
  double floor_ = f32 ? 1e-3 : 1e-4;
  int status = -1;
  GC gc;
  memset(&gc, 0, sizeof gc);
  Interp *ana = NULL;
  int32_t *grad_of = NULL;
  signed char *base_signs = NULL, *signs = NULL;
  gc.fwd = fwd;
  gc.grad = grad;
  gc.batch = batch;
  gc.seed = o->seed;
  gc.fwd_loss = -1;
  for (int32_t i = 0; i < fwd->ninsts; i++) {
    if (fwd->insts[i].op == OP_LOSS) gc.fwd_loss = fwd->insts[i].args[0];
    if (fwd->insts[i].op == OP_INPUT) gc.ninputs = (int)(fwd->insts[i].iattr[0] + 1 > gc.ninputs ? fwd->insts[i].iattr[0] + 1 : gc.ninputs);
    if (fwd->insts[i].op == OP_PARAM) gc.nparams++;
  }
  if (gc.fwd_loss < 0) {
    fprintf(stderr, "bpcc: error: gradcheck: @%s has no loss to differentiate\n", fwd->name);
    goto done;
  }

  /* 2. random inputs, labels and parameters */
  uint64_t rs = o->seed * 0x2545f4914f6cdd1dull + 17;
  gc.inputs = bp_xmalloc((size_t)(gc.ninputs + 1) * sizeof *gc.inputs);
  gc.params = bp_xmalloc((size_t)(gc.nparams + 1) * sizeof *gc.params);
  gc.param_ids = bp_xmalloc((size_t)(gc.nparams + 1) * sizeof *gc.param_ids);
  memset(gc.inputs, 0, (size_t)(gc.ninputs + 1) * sizeof *gc.inputs);
  int np = 0;
  for (int32_t i = 0; i < fwd->ninsts; i++) {
    const Inst *in = &fwd->insts[i];
    if (in->op != OP_INPUT && in->op != OP_PARAM) continue;
    TensorType t = resolved(ir_vtype(fwd, i), batch);
    Tensor x = ir_tensor_new(&t);
    double a = t.rank == 2 ? 1.0 / sqrt((double)t.dims[0]) : 0.5;
    for (int64_t k = 0; k < x.numel; k++) {
      double u = rng_unif(&rs);
      if (t.dtype == DT_LABEL) x.data[k] = floor(u * (double)t.dims[t.rank - 1]);
      else if (in->op == OP_INPUT) x.data[k] = 2 * u - 1;
      else x.data[k] = (2 * u - 1) * a;
      if (f32 && t.dtype != DT_LABEL) x.data[k] = (double)(float)x.data[k];
    }
    if (in->op == OP_INPUT) {
      ir_tensor_free(&gc.inputs[in->iattr[0]]);
      gc.inputs[in->iattr[0]] = x;
    } else {
      gc.param_ids[np] = i;
      gc.params[np++] = x;
    }
  }

  /* analytic gradients */
  ana = ir_interp_run(gc.grad, f32 ? INTERP_F32 : INTERP_F64, batch, gc.inputs, gc.ninputs, gc.params, gc.nparams,
                      gc.seed, 1);
  if (!ana) goto done;
  grad_of = bp_xmalloc((size_t)(gc.nparams + 1) * sizeof *grad_of);
  {
    int k = 0;
    for (int32_t i = 0; i < gc.grad->ninsts; i++)
      if (gc.grad->insts[i].op == OP_GRAD) grad_of[k++] = gc.grad->insts[i].args[1];
    if (k != gc.nparams) ir_die("gradcheck: %d grads for %d params", k, gc.nparams);
  }

  int64_t nsigns = count_signs(&gc);
  base_signs = bp_xmalloc((size_t)(nsigns + 1));
  signs = bp_xmalloc((size_t)(nsigns + 1));
  double l0 = run_loss(&gc, base_signs, nsigns);
  if (isnan(l0)) goto done;

  fprintf(out, "gradcheck %s: @%s, %s, batch %lld, seed %llu, loss %.9g\n", label, fwd->name, f32 ? "f32" : "f64",
          (long long)batch, (unsigned long long)o->seed, l0);
  fprintf(out, "  threshold %g on max |g_num - g_ana| / max(|g_num| + |g_ana|, %g); five-point differences, e = %g\n",
          tol, floor_, FD_EPS);
  bool ok = true;
  int64_t total_skipped = 0;
  for (int p = 0; p < gc.nparams; p++) {
    Tensor *P = &gc.params[p];
    const Tensor *G = ir_interp_value(ana, grad_of[p]);
    const Inst *pin = &fwd->insts[gc.param_ids[p]];
    int64_t n = P->numel, m = n <= FD_ALL_MAX ? n : FD_SAMPLES;
    int64_t *idx = bp_xmalloc((size_t)(m + 1) * sizeof *idx);
    if (m == n) {
      for (int64_t k = 0; k < n; k++) idx[k] = k;
    } else {   /* m distinct elements: rejection against the ones drawn so far */
      uint64_t ps = o->seed * 1000003u + (uint64_t)p;
      for (int64_t k = 0; k < m; k++) {
        int64_t e;
        bool dup;
        do {
          e = (int64_t)(rng_unif(&ps) * (double)n);
          dup = false;
          for (int64_t j = 0; j < k; j++) dup |= idx[j] == e;
        } while (dup);
        idx[k] = e;
      }
    }
    double worst = 0;
    int64_t worst_at = -1, skipped = 0;
    double worst_num = 0, worst_ana = 0;
    for (int64_t k = 0; k < m; k++) {
      int64_t e = idx[k];
      double keep = P->data[e], num = NAN;
      for (double eps = FD_EPS; eps >= FD_EPS_MIN * 0.999; eps /= 10) {
        static const double step[4] = {1, -1, 2, -2};
        double l[4];
        bool kink = false;
        for (int j = 0; j < 4; j++) {
          P->data[e] = keep + step[j] * eps;
          l[j] = run_loss(&gc, signs, nsigns);
          kink |= memcmp(signs, base_signs, (size_t)nsigns) != 0;
        }
        P->data[e] = keep;
        if (!kink) {   /* the five-point stencil: error O(e^4) */
          num = (8 * (l[0] - l[1]) - (l[2] - l[3])) / (12 * eps);
          break;
        }
      }
      if (isnan(num)) {
        skipped++;
        continue;
      }
      double g = G->data[e];
      double den = fabs(num) + fabs(g);
      double rel = den == 0 ? 0 : fabs(num - g) / (den > floor_ ? den : floor_);
      if (!(rel <= worst)) {   /* NaN counts as worst */
        worst = rel;
        worst_at = e;
        worst_num = num;
        worst_ana = g;
      }
    }
    total_skipped += skipped;
    char ts[96];
    ir_type_str(ir_vtype(fwd, gc.param_ids[p]), ts, sizeof ts);
    bool pass = worst <= tol;
    ok &= pass;
    fprintf(out, "  %-14s %-14s %6lld of %-8lld max rel err %-10.3g", pin->name, ts, (long long)(m - skipped),
            (long long)n, worst);
    if (pin->loc.file >= 0) fprintf(out, " %s:%d:%d", diag_file_name(pin->loc.file), (int)pin->loc.line, (int)pin->loc.col);
    fprintf(out, "  %s", pass ? "ok" : "FAIL");
    if (!pass && worst_at >= 0)
      fprintf(out, " (element %lld: numeric %.10g, derived %.10g)", (long long)worst_at, worst_num, worst_ana);
    if (skipped) fprintf(out, " (%lld skipped at kinks)", (long long)skipped);
    fprintf(out, "\n");
    bp_free(idx);
  }
  fprintf(out, "gradcheck: %s (%d parameters%s)\n", ok ? "passed" : "FAILED", gc.nparams,
          total_skipped ? ", some elements skipped at kinks" : "");
  status = ok ? 0 : 1;

done:
  bp_free(grad_of);
  bp_free(base_signs);
  bp_free(signs);
  if (ana) ir_interp_free(ana);
  for (int i = 0; gc.inputs && i < gc.ninputs; i++) ir_tensor_free(&gc.inputs[i]);
  for (int i = 0; gc.params && i < gc.nparams; i++) ir_tensor_free(&gc.params[i]);
  bp_free(gc.inputs);
  bp_free(gc.params);
  bp_free(gc.param_ids);
  return status;
}
