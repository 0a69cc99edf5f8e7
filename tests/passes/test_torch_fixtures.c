/* tests/passes/test_torch_fixtures.c — bpcc's gradients, training steps and inference
 * outputs equal PyTorch's.
 *
 * tests/fixtures/make_fixtures.py (run once with /usr/bin/python3; its output is
 * committed; the format is in its docstring) stores, for a model, computed by PyTorch in
 * float64: on a batch, the weights, the loss, the outputs and every gradient; and, for
 * some models, a few torch.optim steps on further batches (the loss of each, the
 * parameters after each) and the outputs of the trained model on another batch. This
 * test needs no Python. For each fixture (one line in `fixtures` below) it
 *   1. lowers the same .bp model, runs the whole pass pipeline (canonicalize, autodiff,
 *      simplify) and runs the result in the reference interpreter in f32: loss, outputs,
 *      every gradient; with the softmax-CE rule on and off (-fno-softmax-xent); for a
 *      model with buffers, also on step 1's batch: the running statistics it assigns
 *      (step 1 starts from the buffers' initial values, the interpreter's only start);
 *   2. compiles the model as `bpcc train` does (kernel plan, memory plan, LLVM, ORC JIT)
 *      twice: in f64 (every f32 type made f64: the same kernels on doubles), run through
 *      its entry points on a frame of doubles, and in f32, run through the runtime's
 *      model object (what train, eval and the C ABI run). Each does loss_and_grad at
 *      the fixture's weights (loss, outputs, every gradient); then, from the same
 *      weights with zero optimizer state and the fixture's optimizer, one train_step
 *      per step section (the step's loss, every parameter and buffer after it); then
 *      eval on the eval batch (inference mode: loss and outputs, batchnorm with the
 *      running statistics the steps left).
 * Every tensor gets a max-diff line (llm.c's test_gpt2.c) and must satisfy
 *
 *     |bpcc - torch| <= 1e-5 * max(|torch|, 0.01 * max|torch over the tensor|)
 *
 * i.e. 1e-5 relative, with a floor at 1% of the tensor's largest entry so that entries
 * that are nearly zero (where f32 rounding of a sum of cancelling terms dominates) are
 * held to 1e-7 of the tensor's scale instead. One exception: the gradients of the f32
 * native code are held to 1e-5 of the tensor's largest entry (normwise, the rule of
 * tests/codegen/harness.h for f32 native code). Its products accumulate in f32, as
 * PyTorch's float32 kernels do, and a gradient entry that is the small difference of
 * large terms then carries an error relative to those terms: on custom_loss (d h2.b)
 * and lenet_small (d c2.W) PyTorch itself run in float32 misses the elementwise rule by
 * the same 1.19e-5 and 1.13e-5 that bpcc's f32 code does. The interpreter (sums in
 * double, rounded once) and the f64 native code meet the elementwise rule on every
 * gradient (the f64 code within 2e-7, the fixture's nine digits).
 * The parameters after the steps are held to the elementwise rule in f32 too: PyTorch
 * runs the steps in float64, bpcc in f32, so they differ by the f32 rounding of each
 * parameter (6e-8 relative) plus lr times the gradients' f32 errors (the normwise 1e-6
 * at worst measured here, over the at most 1 + 1.9 + 2.71 gradients that momentum 0.9
 * sums in three steps: about 3e-7 of the gradient scale times lr 0.05), far below 1e-5
 * of the parameters' scale.
 * A fixture whose line in `fixtures` says f32_normwise (cnn_bn_small: four batchnorms)
 * holds its f32 gradients, in the interpreter too, and its f32 parameters after the
 * steps to the normwise rule, and then runs the interpreter in f64 as well, held to the
 * elementwise rule with everything else. A batchnorm's backward subtracts from dy its
 * mean and its projection on the normalized input, and a batchnorm downstream makes the
 * gradient upstream of it such a difference too (cnn_bn_small's d r1.n2.beta has an
 * entry that is exactly 0), so an f32 gradient entry carries an error relative to the
 * terms that cancelled, not to itself: on this fixture bpcc's f32 interpreter misses the
 * elementwise rule by 9.6e-5 and PyTorch itself in float32 by 6.1e-5, while normwise
 * bpcc's f32 interpreter, its f32 native code and PyTorch's float32 stay within 1.2e-6,
 * 2.8e-6 and 3.4e-6 of the scale; the f64 interpreter and native code meet the
 * elementwise rule on every tensor. The losses, outputs and running statistics keep the
 * elementwise rule in f32, except where the line also says f32_outputs_normwise
 * (attention_small, the two-block GPT: f32 gradients, parameters and outputs all
 * normwise, the interpreter in f64 elementwise): two layernorms, a softmax over the keys
 * and a residual sum per block make its logits and gradients sums of terms that cancel,
 * and PyTorch itself in float32 misses the elementwise rule by 1.5e-5 on the logits and
 * 2.6e-5 on d b1.attn.q.W, while staying within 5.8e-7 normwise; bpcc's f32 interpreter
 * and native code stay within 3.8e-7 and 4.3e-7 normwise.
 * A gradient tensor that PyTorch gives as zero to float64 rounding (every entry below
 * 1e-12 of the fixture's largest gradient entry) is zero in exact arithmetic and has no
 * scale of its own: it is held to 1e-5 of the fixture's largest gradient entry (the
 * normwise rule over the model's whole gradient). attention_small's key biases are such:
 * q . b_k adds the same number to every score of a row, which softmax ignores, so
 * d attn.k.b = 0; PyTorch's float64 gives 1e-17 of the largest gradient, its float32
 * 1.4e-8, bpcc's f32 3.2e-8 at most and its f64 1e-16.
 * make_fixtures.py checks that no relu input or max-pool window is within 1e-5 of its
 * kink on any pass, so no branch can flip between float64 and f32. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "codegen/codegen.h"
#include "frontend/frontend.h"
#include "ir/ir.h"
#include "passes/passes.h"
#include "runtime/runtime.h"
#include "runtime/train.h"
#include "tests/codegen/harness.h"
#include "tests/compile.h"

#define REL_TOL 1e-5
#define FLOOR_FRACTION 0.01
#define MAX_INPUTS 8

/* The section of a tensor: 0 the gradient check, K >= 1 training step K, or eval. */
#define SECTION_EVAL (-1)

typedef struct {
  char kind[16], name[64];
  int section;
  int rank;
  int64_t dims[IR_MAX_RANK];
  int64_t n;
  double *v;
} FxTensor;

typedef struct {
  const char *path;         /* relative to the source tree, for messages */
  FxTensor *t;
  int n, cap;
  char optimizer[256];      /* "sgd(lr = 0.05, momentum = 0.9)", or "" */
  int nsteps;
  bool eval;
} Fixture;

static char *slurp(const char *path, size_t *len) {
  FILE *fp = fopen(path, "rb");
  if (!fp) return NULL;
  size_t cap = 1 << 16, n = 0, k;
  char *s = bp_xmalloc(cap);
  while ((k = fread(s + n, 1, cap - n - 1, fp)) > 0) {
    n += k;
    if (n + 1 == cap) s = bp_xrealloc(s, cap *= 2);
  }
  fclose(fp);
  s[n] = 0;
  *len = n;
  return s;
}

static char *source_path(const char *rel) {
  const char *root = getenv("BPCC_SOURCE_DIR");
  static char buf[4096];
  snprintf(buf, sizeof buf, "%s/%s", root ? root : ".", rel);
  return buf;
}

static const char *section_name(int s, char *buf, size_t n) {
  if (s == 0) snprintf(buf, n, "gradients");
  else if (s == SECTION_EVAL) snprintf(buf, n, "eval");
  else snprintf(buf, n, "step %d", s);
  return buf;
}

/* A directive line (make_fixtures.py's docstring): optimizer SPEC, step K, eval. */
static bool directive(Fixture *fx, const char *line, int *section) {
  const char *rel = fx->path;
  if (strncmp(line, "optimizer ", 10) == 0) {
    if (*section != 0 || fx->optimizer[0]) fail_msg("%s: 'optimizer' must come once, before the steps", rel);
    snprintf(fx->optimizer, sizeof fx->optimizer, "%s", line + 10);
    return true;
  }
  if (strncmp(line, "step ", 5) == 0) {
    int k = atoi(line + 5);
    if (k != fx->nsteps + 1 || *section == SECTION_EVAL || !fx->optimizer[0])
      fail_msg("%s: '%s' out of order (steps 1, 2, ... after 'optimizer', before 'eval')", rel, line);
    *section = ++fx->nsteps;
    return true;
  }
  if (strcmp(line, "eval") == 0) {
    if (fx->eval) fail_msg("%s: two 'eval' sections", rel);
    fx->eval = true;
    *section = SECTION_EVAL;
    return true;
  }
  return false;
}

static void load_fixture(const char *rel, Fixture *fx) {
  size_t len;
  char *text = slurp(source_path(rel), &len);
  if (!text) fail_msg("cannot read %s (run /usr/bin/python3 tests/fixtures/make_fixtures.py)", rel);
  memset(fx, 0, sizeof *fx);
  fx->path = rel;
  int section = 0;
  char *p = text;
  while (*p) {
    char *eol = strchr(p, '\n');
    if (eol) *eol = 0;
    if (*p == '#' || *p == 0 || directive(fx, p, &section)) {
      p = eol ? eol + 1 : p + strlen(p);
      continue;
    }
    if (fx->n == fx->cap) fx->t = bp_xrealloc(fx->t, sizeof *fx->t * (size_t)(fx->cap = fx->cap ? 2 * fx->cap : 64));
    FxTensor *t = &fx->t[fx->n++];
    memset(t, 0, sizeof *t);
    t->section = section;
    int used = 0;
    if (sscanf(p, "%15s %63s %d%n", t->kind, t->name, &t->rank, &used) != 3 || t->rank < 0 || t->rank > IR_MAX_RANK)
      fail_msg("%s: bad header line '%s'", rel, p);
    char *q = p + used;
    t->n = 1;
    for (int i = 0; i < t->rank; i++) {
      t->dims[i] = strtoll(q, &q, 10);
      t->n *= t->dims[i];
    }
    if (strcmp(t->kind, "label") == 0) {   /* one class index per row or position: the dims but the classes */
      if (t->rank < 2) fail_msg("%s: label '%s' has rank %d, needs its rows and its classes", rel, t->name, t->rank);
      t->n = 1;
      for (int i = 0; i < t->rank - 1; i++) t->n *= t->dims[i];
    }
    if (!eol) fail_msg("%s: '%s' has no values", rel, t->name);
    q = eol + 1;
    t->v = bp_xmalloc((size_t)(t->n ? t->n : 1) * sizeof *t->v);
    for (int64_t i = 0; i < t->n; i++) {
      char *end;
      t->v[i] = strtod(q, &end);
      if (end == q) fail_msg("%s: '%s' has %lld values, needs %lld", rel, t->name, (long long)i, (long long)t->n);
      q = end;
    }
    eol = strchr(q, '\n');
    p = eol ? eol + 1 : q + strlen(q);
  }
  bp_free(text);
}

static FxTensor *find(Fixture *fx, int section, const char *kind, const char *name) {
  for (int i = 0; i < fx->n; i++)
    if (fx->t[i].section == section && strcmp(fx->t[i].kind, kind) == 0 && strcmp(fx->t[i].name, name) == 0)
      return &fx->t[i];
  return NULL;
}

static int count(Fixture *fx, int section, const char *kind) {
  int c = 0;
  for (int i = 0; i < fx->n; i++) c += fx->t[i].section == section && strcmp(fx->t[i].kind, kind) == 0;
  return c;
}

static FxTensor *need(Fixture *fx, int section, const char *kind, const char *name) {
  FxTensor *t = find(fx, section, kind, name);
  char sn[32];
  if (!t) fail_msg("%s (%s): no %s '%s'", fx->path, section_name(section, sn, sizeof sn), kind, name);
  return t;
}

static void free_fixture(Fixture *fx) {
  for (int i = 0; i < fx->n; i++) bp_free(fx->t[i].v);
  bp_free(fx->t);
}

/* Compare one tensor; prints the max-diff line; returns true if within tolerance. */
static bool compare_floor(const char *what, const double *got, const double *want, int64_t n, double floor_fraction) {
  double scale = 0, maxdiff = 0, worst = 0;
  int64_t at = 0;
  for (int64_t i = 0; i < n; i++) scale = fmax(scale, fabs(want[i]));
  for (int64_t i = 0; i < n; i++) {
    double d = fabs(got[i] - want[i]);
    double rel = d / fmax(fabs(want[i]), floor_fraction * scale);
    if (!(rel <= worst)) {
      worst = rel;
      at = i;
    }
    maxdiff = fmax(maxdiff, d);
  }
  bool ok = n == 0 || scale == 0 ? maxdiff == 0 : worst <= REL_TOL;
  printf("  %-16s %7lld elements  max |diff| %.3e  max rel %.3e (at %lld: bpcc %.9g, torch %.9g)  %s\n", what,
         (long long)n, maxdiff, worst, (long long)at, n ? got[at] : 0.0, n ? want[at] : 0.0, ok ? "ok" : "FAIL");
  return ok;
}

static bool compare(const char *what, const double *got, const double *want, int64_t n) {
  return compare_floor(what, got, want, n, FLOOR_FRACTION);
}

/* The normwise rule (see the top of the file): the f32 native gradients, and for a
 * fixture marked f32_normwise every f32 gradient and parameter. */
static bool compare_normwise(const char *prefix, const char *name, const double *got, const FxTensor *want) {
  char label[96];
  snprintf(label, sizeof label, "%s%s (norm)", prefix, name);
  return compare_floor(label, got, want->v, want->n, 1.0);
}

/* The fixture being checked holds its f32 gradients and parameters to the normwise rule,
 * and its f32 outputs too (its line in `fixtures` below). */
static bool f32_normwise, f32_outputs_normwise;

/* The largest |entry| of the fixture's gradients (section 0), and the fraction of it
 * below which a whole gradient tensor of PyTorch's is zero in exact arithmetic: float64
 * rounding is all PyTorch computed (attention_small's key biases: softmax ignores a
 * constant added to a row of scores, and q . b_k is one, so d k.b = 0 exactly; PyTorch
 * gives 1e-17 of the largest gradient). Such a tensor has no scale of its own to be
 * relative to: bpcc's entries are held to |bpcc| <= 1e-5 of the largest gradient entry
 * of the model, the normwise rule over the whole gradient. */
static double grad_scale;
#define ZERO_FRACTION 1e-12

static double fixture_grad_scale(Fixture *fx) {
  double m = 0;
  for (int i = 0; i < fx->n; i++)
    if (fx->t[i].section == 0 && strcmp(fx->t[i].kind, "grad") == 0)
      for (int64_t k = 0; k < fx->t[i].n; k++) m = fmax(m, fabs(fx->t[i].v[k]));
  return m;
}

/* A gradient: elementwise, or normwise (see the top of the file), or, where PyTorch's
 * tensor is zero in exact arithmetic, against the model's largest gradient entry. */
static bool compare_grad(const char *name, const double *got, const FxTensor *want, bool normwise) {
  double scale = 0;
  for (int64_t i = 0; i < want->n; i++) scale = fmax(scale, fabs(want->v[i]));
  if (grad_scale > 0 && scale <= ZERO_FRACTION * grad_scale) {
    double worst = 0;
    int64_t at = 0;
    for (int64_t i = 0; i < want->n; i++)
      if (!(fabs(got[i] - want->v[i]) <= worst)) worst = fabs(got[i] - want->v[i]), at = i;
    bool ok = worst <= REL_TOL * grad_scale;
    printf("  d %-14s %7lld elements  max |diff| %.3e  of the largest gradient %.3e (at %lld: bpcc %.9g, torch %.9g; "
           "zero in exact arithmetic)  %s\n",
           name, (long long)want->n, worst, worst / grad_scale, (long long)at, want->n ? got[at] : 0.0,
           want->n ? want->v[at] : 0.0, ok ? "ok" : "FAIL");
    return ok;
  }
  if (normwise) return compare_normwise("d ", name, got, want);
  char label[96];
  snprintf(label, sizeof label, "d %s", name);
  return compare(label, got, want->v, want->n);
}

typedef struct {
  Arena *arena;
  Module *module;
  Func *fwd;
} Lowered;

static void lower(const char *bp_rel, Lowered *l) {
  size_t len;
  char *src = slurp(source_path(bp_rel), &len);
  if (!src) fail_msg("cannot read %s", bp_rel);
  diag_reset();
  l->arena = arena_new();
  FeUnit *u = fe_compile_text(l->arena, bp_rel, src, len);
  bp_free(src);
  if (!u || u->nmodels < 1 || diag_error_count()) fail_msg("%s does not compile", bp_rel);
  l->module = ir_module_new();
  l->fwd = fe_lower(l->module, u->models[0]);
}

static void unlower(Lowered *l) {
  ir_module_free(l->module);
  arena_free(l->arena);
}

/* --------------------------------------------------- 1. the f32 reference interpreter */

/* g in the interpreter on the batch of `section` at the gradient check's parameters
 * (section 0). The interpreter starts every buffer at its initial value (zeros, ones):
 * the fixture's must be those. */
static Interp *interp_section(Func *g, Fixture *fx, int section, InterpMode mode, int64_t *batch_out) {
  /* inputs by argument index, params in instruction order, from the fixture by name */
  Tensor inputs[MAX_INPUTS], params[256];
  int ni = 0, np = 0;
  int64_t batch = -1;
  for (int32_t i = 0; i < g->ninsts; i++) {
    const Inst *in = &g->insts[i];
    if (in->op == OP_BUFFER) {
      FxTensor *t = need(fx, 0, "buffer", in->name);
      double v = in->iattr[0] == INIT_ONES ? 1.0 : in->iattr[0] == INIT_CONSTANT ? in->fattr[0] : 0.0;
      for (int64_t k = 0; k < t->n; k++)
        if (t->v[k] != v)
          fail_msg("%s: buffer '%s' starts at %.9g, not at its initial value %g (the interpreter's only start)",
                   fx->path, in->name, t->v[k], v);
      continue;
    }
    if (in->op != OP_INPUT && in->op != OP_PARAM) continue;
    bool label = ir_vtype(g, i)->dtype == DT_LABEL;
    FxTensor *t = in->op == OP_PARAM ? need(fx, 0, "param", in->name) : need(fx, section, label ? "label" : "input", in->name);
    TensorType ty = *ir_vtype(g, i);
    for (int d = 0; d < ty.rank; d++) {
      if (ty.dims[d] == DIM_BATCH) ty.dims[d] = batch = t->dims[d];
      if (ty.dims[d] != t->dims[d])
        fail_msg("%s: '%s' has dim %d = %lld in the fixture, %lld in the model", fx->path, in->name, d,
                 (long long)t->dims[d], (long long)ty.dims[d]);
    }
    Tensor x = ir_tensor_new(&ty);
    assert_int_equal(x.numel, t->n);
    memcpy(x.data, t->v, (size_t)t->n * sizeof *x.data);
    if (in->op == OP_INPUT) {
      assert_true(in->iattr[0] >= 0 && in->iattr[0] < MAX_INPUTS);
      inputs[in->iattr[0]] = x;
      ni++;
    } else {
      assert_true(np < 256);
      params[np++] = x;
    }
  }
  assert_true(batch > 0);
  assert_int_equal(np, count(fx, 0, "param"));
  Interp *it = ir_interp_run(g, mode, batch, inputs, ni, params, np, 1, 1);
  assert_non_null(it);
  for (int i = 0; i < ni; i++) ir_tensor_free(&inputs[i]);
  for (int i = 0; i < np; i++) ir_tensor_free(&params[i]);
  *batch_out = batch;
  return it;
}

static bool check_interp(const char *bp_rel, Fixture *fx, bool xent, InterpMode mode) {
  Lowered l;
  lower(bp_rel, &l);
  PassOptions opt;
  pass_options_default(&opt);
  opt.verify = true;
  opt.softmax_xent = xent;
  Func *g = test_grad(l.fwd, &opt);
  assert_non_null(g);
  int64_t batch;
  Interp *it = interp_section(g, fx, 0, mode, &batch);
  bool normwise = mode == INTERP_F32 && f32_normwise;
  int np = count(fx, 0, "param");

  const char *how = mode == INTERP_F32 ? "f32" : "f64";
  printf("%s vs PyTorch (%s interpreter, batch %lld%s):\n", bp_rel, how, (long long)batch,
         xent ? "" : ", -fno-softmax-xent");
  bool ok = true;
  int grads = 0, outputs = 0;
  for (int32_t i = 0; i < g->ninsts; i++) {
    const Inst *in = &g->insts[i];
    if (in->op == OP_LOSS) {
      ok &= compare("loss", ir_interp_value(it, in->args[0])->data, need(fx, 0, "loss", "loss")->v, 1);
    } else if (in->op == OP_OUTPUT) {
      FxTensor *want = find(fx, 0, "output", in->name);
      if (!want) continue;
      const Tensor *got = ir_interp_value(it, in->args[0]);
      assert_int_equal(got->numel, want->n);
      char label[96];
      snprintf(label, sizeof label, "out %s", in->name);
      ok &= mode == INTERP_F32 && f32_outputs_normwise ? compare_normwise("out ", in->name, got->data, want)
                                                       : compare(label, got->data, want->v, want->n);
      outputs++;
    } else if (in->op == OP_GRAD) {
      const char *name = g->insts[in->args[0]].name;
      FxTensor *want = need(fx, 0, "grad", name);
      const Tensor *got = ir_interp_value(it, in->args[1]);
      assert_int_equal(got->numel, want->n);
      ok &= compare_grad(name, got->data, want, normwise);
      grads++;
    }
  }
  assert_int_equal(grads, np);
  assert_int_equal(outputs, count(fx, 0, "output"));
  ir_interp_free(it);

  /* The buffers' updates (batchnorm's running statistics): step 1 starts from section
   * 0's parameters and buffers, and its buffers are the running statistics of its
   * batch's training-mode forward pass, which the grad function assigns. */
  if (fx->nsteps && count(fx, 1, "buffer")) {
    it = interp_section(g, fx, 1, mode, &batch);
    printf("%s vs PyTorch (%s interpreter, running statistics of step 1's batch %lld):\n", bp_rel, how, (long long)batch);
    int assigns = 0;
    for (int32_t i = 0; i < g->ninsts; i++) {
      const Inst *in = &g->insts[i];
      if (in->op != OP_ASSIGN) continue;
      const char *name = g->insts[in->args[0]].name;
      FxTensor *want = need(fx, 1, "buffer", name);
      const Tensor *got = ir_interp_value(it, in->args[1]);
      assert_int_equal(got->numel, want->n);
      char label[96];
      snprintf(label, sizeof label, "1: %s", name);
      ok &= compare(label, got->data, want->v, want->n);
      assigns++;
    }
    assert_int_equal(assigns, count(fx, 1, "buffer"));
    ir_interp_free(it);
  }
  unlower(&l);
  return ok;
}

/* ------------------------------------------------------- 2. the JIT-compiled model */

/* The compiled model run two ways: f32 through the runtime's model object (what `bpcc
 * train`, eval and the C ABI run: loss_and_grad, train_step, eval), and f64 (the same
 * model with every f32 type made f64, cgt_func_to_f64: the same kernels on doubles)
 * through its entry points on a frame of doubles. Values come back as doubles. */
typedef struct {
  bool f64;
  const bprt_model_desc *d;
  bprt_model *m;        /* f32 */
  CgtFrame fr;          /* f64 */
  uint64_t step;
  const void *in[MAX_INPUTS];
  void *buf[MAX_INPUTS];
  float *out[MAX_INPUTS];
  int64_t rows;
  double *scratch;
} Engine;

static int64_t numel_of(int rank, const int64_t *dims, int64_t rows) {
  int64_t n = 1;
  for (int k = 0; k < rank; k++) n *= dims[k] == BPRT_DIM_BATCH ? rows : dims[k];
  return n;
}

static int64_t max_rows(Fixture *fx) {
  int64_t r = 1;
  for (int i = 0; i < fx->n; i++)
    if (strcmp(fx->t[i].kind, "input") == 0 || strcmp(fx->t[i].kind, "label") == 0) r = r > fx->t[i].dims[0] ? r : fx->t[i].dims[0];
  return r;
}

/* A model with the fixture's weights (section 0), optimizer state zero and step 0:
 * every parameter of the model from the fixture, every parameter of the fixture in the
 * model. */
static void engine_open(Engine *e, Fixture *fx, const bprt_model_desc *d, bool f64) {
  memset(e, 0, sizeof *e);
  e->f64 = f64;
  e->d = d;
  assert_true(d->ninputs <= MAX_INPUTS && d->noutputs <= MAX_INPUTS);
  int64_t rows = max_rows(fx);
  if (f64) {
    cgt_frame_init_ex(&e->fr, d, rows, 1, 8);
  } else {
    e->m = bprt_model_create(d, 0);
    if (!e->m) fail_msg("bprt_model_create: %s", bprt_last_error());
    for (int i = 0; i < d->ninputs; i++)
      e->buf[i] = bp_xmalloc((size_t)numel_of(d->inputs[i].rank - (d->inputs[i].is_label ? 1 : 0), d->inputs[i].dims, rows) * 4);
    for (int i = 0; i < d->noutputs; i++)
      e->out[i] = bp_xmalloc((size_t)numel_of(d->outputs[i].rank, d->outputs[i].dims, rows) * 4);
  }
  e->scratch = bp_xmalloc(sizeof(double) * (size_t)(d->param_floats + d->buffer_floats + 1));
  for (int k = 0; k < d->nparams; k++) {
    const bprt_param_desc *pd = &d->params[k];
    FxTensor *t = need(fx, 0, "param", pd->name);
    if (t->rank != pd->rank || memcmp(t->dims, pd->dims, sizeof(int64_t) * (size_t)t->rank) != 0)
      fail_msg("%s: param '%s' has another shape than the model's", fx->path, pd->name);
    for (int64_t i = 0; i < t->n; i++) {
      if (f64) ((double *)e->fr.params)[pd->offset + i] = t->v[i];
      else bprt_model_params(e->m)[pd->offset + i] = (float)t->v[i];
    }
  }
  assert_int_equal(d->nparams, count(fx, 0, "param"));
  /* the buffers (batchnorm's running statistics) likewise, into the buffer block */
  for (int k = 0; k < d->nbuffers; k++) {
    const bprt_param_desc *bd = &d->buffers[k];
    FxTensor *t = need(fx, 0, "buffer", bd->name);
    if (t->rank != bd->rank || memcmp(t->dims, bd->dims, sizeof(int64_t) * (size_t)t->rank) != 0)
      fail_msg("%s: buffer '%s' has another shape than the model's", fx->path, bd->name);
    if (!f64) assert_int_equal(bprt_model_find_buffer(e->m, bd->name), k);
    for (int64_t i = 0; i < t->n; i++) {
      if (f64) ((double *)e->fr.buffers)[bd->offset + i] = t->v[i];
      else bprt_model_buffers(e->m)[bd->offset + i] = (float)t->v[i];
    }
  }
  assert_int_equal(d->nbuffers, count(fx, 0, "buffer"));
}

static void engine_close(Engine *e) {
  if (e->f64) cgt_frame_free(&e->fr);
  else bprt_model_destroy(e->m);
  for (int i = 0; i < MAX_INPUTS; i++) bp_free(e->buf[i]), bp_free(e->out[i]);
  bp_free(e->scratch);
}

/* The batch of a section into the engine's input buffers, in the model's input order. */
static void engine_batch(Engine *e, Fixture *fx, int section) {
  const bprt_model_desc *d = e->d;
  int64_t rows = -1;
  for (int i = 0; i < d->ninputs; i++) {
    const bprt_tensor_desc *td = &d->inputs[i];
    FxTensor *t = need(fx, section, td->is_label ? "label" : "input", td->name);
    if (t->rank != td->rank) fail_msg("%s: '%s' has rank %d, the model's %d", fx->path, td->name, t->rank, td->rank);
    for (int k = 1; k < td->rank; k++)
      if (t->dims[k] != td->dims[k])
        fail_msg("%s: '%s' has dim %d = %lld, the model's %lld", fx->path, td->name, k, (long long)t->dims[k],
                 (long long)td->dims[k]);
    if (rows >= 0 && t->dims[0] != rows)
      fail_msg("%s: '%s' has %lld rows, not %lld", fx->path, td->name, (long long)t->dims[0], (long long)rows);
    rows = t->dims[0];
    void *dst = e->f64 ? e->fr.inputs[i] : e->buf[i];
    for (int64_t k = 0; k < t->n; k++) {
      if (td->is_label) ((int32_t *)dst)[k] = (int32_t)t->v[k];
      else if (e->f64) ((double *)dst)[k] = t->v[k];
      else ((float *)dst)[k] = (float)t->v[k];
    }
    e->in[i] = dst;
  }
  e->rows = rows;
  e->fr.fr.batch = rows;
}

typedef enum { RUN_GRAD, RUN_STEP, RUN_EVAL } RunKind;

/* loss_and_grad, train_step or eval on the current batch; returns the loss. */
static double engine_run(Engine *e, RunKind kind) {
  if (e->f64) {
    bprt_frame *f = &e->fr.fr;
    f->step = kind == RUN_EVAL ? e->step : e->step + 1;   /* as the runtime (model.c) */
    e->fr.hyper[BPRT_H_STEP] = (double)f->step;
    (kind == RUN_GRAD ? e->d->grad : kind == RUN_STEP ? e->d->step : e->d->forward)(f);
    assert_int_equal(f->status, 0);
    if (kind == RUN_STEP) e->step++;
    return *(double *)e->fr.loss;
  }
  float loss;
  int rc = kind == RUN_GRAD ? bprt_model_loss_and_grad(e->m, e->rows, e->in, &loss)
         : kind == RUN_STEP ? bprt_model_train_step(e->m, e->rows, e->in, &loss)
                            : bprt_model_eval(e->m, e->rows, e->in, e->out, &loss);
  if (rc != BPRT_OK) fail_msg("%s", bprt_last_error());
  return loss;
}

/* Parameter k's values or gradient, buffer k's values, or output k of the last run, as
 * doubles. */
static const double *engine_values(Engine *e, const char *what, int k) {
  const bprt_model_desc *d = e->d;
  int64_t off = 0, n;
  const void *src;
  if (strcmp(what, "output") == 0) {
    n = numel_of(d->outputs[k].rank, d->outputs[k].dims, e->rows);
    src = e->f64 ? (const void *)e->fr.outputs[k] : e->out[k];
  } else if (strcmp(what, "buffer") == 0) {
    n = numel_of(d->buffers[k].rank, d->buffers[k].dims, 1);
    off = d->buffers[k].offset;
    src = e->f64 ? (const void *)e->fr.buffers : (const void *)bprt_model_buffers(e->m);
  } else {
    n = numel_of(d->params[k].rank, d->params[k].dims, 1);
    off = d->params[k].offset;
    bool grad = strcmp(what, "grad") == 0;
    src = e->f64 ? (const void *)(grad ? e->fr.grads : e->fr.params)
                 : (const void *)(grad ? bprt_model_grads(e->m) : bprt_model_params(e->m));
  }
  for (int64_t i = 0; i < n; i++)
    e->scratch[i] = e->f64 ? ((const double *)src)[off + i] : ((const float *)src)[off + i];
  return e->scratch;
}

static bool compare_to(const char *prefix, const char *name, const double *got, const FxTensor *want) {
  char label[96];
  snprintf(label, sizeof label, "%s%s", prefix, name);
  return compare(label, got, want->v, want->n);
}

/* Output i of the last run: elementwise, or in f32 normwise for a fixture so marked. */
static bool compare_output(Engine *e, int i, const FxTensor *want) {
  const char *name = e->d->outputs[i].name;
  const double *got = engine_values(e, "output", i);
  return !e->f64 && f32_outputs_normwise ? compare_normwise("out ", name, got, want) : compare_to("out ", name, got, want);
}


/* The f32 outputs of the last loss_and_grad / train_step are the runtime's. */
static void engine_grad_outputs(Engine *e) {
  if (e->f64) return;
  for (int i = 0; i < e->d->noutputs; i++)
    memcpy(e->out[i], bprt_model_last_output(e->m, i),
           sizeof(float) * (size_t)numel_of(e->d->outputs[i].rank, e->d->outputs[i].dims, e->rows));
}

static bool check_jit(const char *bp_rel, Fixture *fx, bool f64) {
  Lowered l;
  lower(bp_rel, &l);
  Func *g = test_grad(l.fwd, NULL);
  assert_non_null(g);
  /* The forward entry (eval) runs the model in inference form, batchnorm with its
   * running statistics: pipeline_init_ir builds it from the training form it is given
   * (driver/pipeline.c), as the pipeline's canonicalize stage does from source. */
  Func *fwd = l.fwd;
  if (f64) {
    fwd = cgt_func_to_f64(fwd, "fwd64");
    g = cgt_func_to_f64(g, "grad64");
  }
  bprt_optimizer_config opt;
  if (fx->optimizer[0]) {
    BprtOptSpec spec;
    if (bprt_optimizer_parse(fx->optimizer, &spec) != 0)
      fail_msg("%s: optimizer '%s': %s", fx->path, fx->optimizer, bprt_last_error());
    bprt_optimizer_init(&opt, spec.kind);
    bprt_optimizer_apply(&spec, opt.hyper);
  } else {
    bprt_optimizer_init(&opt, BPRT_OPT_SGD);
  }
  CgOptions co = {"native", 2, 2, false, false};
  CgModel *cg = test_build(fwd, g, &opt, &co);
  assert_non_null(cg);
  assert_int_equal(cg_model_jit(cg), 0);
  assert_int_equal(cg_model_elem_bytes(cg), f64 ? 8 : 4);
  const bprt_model_desc *d = cg_model_desc(cg);
  const char *how = f64 ? "JIT f64, frame" : "JIT f32, runtime";
  bool ok = true;

  /* the gradients at the fixture's weights */
  Engine e;
  engine_open(&e, fx, d, f64);
  engine_batch(&e, fx, 0);
  printf("%s vs PyTorch (%s: loss_and_grad, batch %lld):\n", bp_rel, how, (long long)e.rows);
  double loss = engine_run(&e, RUN_GRAD);
  engine_grad_outputs(&e);
  ok &= compare("loss", &loss, need(fx, 0, "loss", "loss")->v, 1);
  for (int i = 0; i < d->noutputs; i++) {
    FxTensor *want = find(fx, 0, "output", d->outputs[i].name);
    if (want) ok &= compare_output(&e, i, want);
  }
  for (int k = 0; k < d->nparams; k++) {
    const double *got = engine_values(&e, "grad", k);
    FxTensor *want = need(fx, 0, "grad", d->params[k].name);
    ok &= compare_grad(d->params[k].name, got, want, !f64);
  }
  engine_close(&e);

  /* the training steps from the same weights, then inference */
  if (fx->nsteps || fx->eval) {
    engine_open(&e, fx, d, f64);
    char prefix[32];
    for (int s = 1; s <= fx->nsteps; s++) {
      engine_batch(&e, fx, s);
      printf("%s vs PyTorch (%s: train_step %d, %s, batch %lld):\n", bp_rel, how, s, fx->optimizer, (long long)e.rows);
      loss = engine_run(&e, RUN_STEP);
      ok &= compare("loss", &loss, need(fx, s, "loss", "loss")->v, 1);
      snprintf(prefix, sizeof prefix, "%d: ", s);
      for (int k = 0; k < d->nparams; k++) {
        const double *got = engine_values(&e, "param", k);
        FxTensor *want = need(fx, s, "param", d->params[k].name);
        ok &= !f64 && f32_normwise ? compare_normwise(prefix, d->params[k].name, got, want)
                                   : compare_to(prefix, d->params[k].name, got, want);
      }
      assert_int_equal(count(fx, s, "param"), d->nparams);
      for (int k = 0; k < d->nbuffers; k++)
        ok &= compare_to(prefix, d->buffers[k].name, engine_values(&e, "buffer", k), need(fx, s, "buffer", d->buffers[k].name));
      assert_int_equal(count(fx, s, "buffer"), d->nbuffers);
    }
    if (fx->eval) {
      engine_batch(&e, fx, SECTION_EVAL);
      printf("%s vs PyTorch (%s: eval after %d steps, batch %lld):\n", bp_rel, how, fx->nsteps, (long long)e.rows);
      loss = engine_run(&e, RUN_EVAL);
      ok &= compare("loss", &loss, need(fx, SECTION_EVAL, "loss", "loss")->v, 1);
      int compared = 0;
      for (int i = 0; i < d->noutputs; i++) {
        FxTensor *want = find(fx, SECTION_EVAL, "output", d->outputs[i].name);
        if (want) ok &= compare_output(&e, i, want), compared++;
      }
      assert_int_equal(compared, count(fx, SECTION_EVAL, "output"));
    }
    engine_close(&e);
  }
  cg_model_free(cg);
  unlower(&l);
  return ok;
}

/* Everything a fixture holds: adding a model is one call of this. */
static void check_model(const char *bp_rel, const char *fixture_rel, bool normwise, bool outputs_normwise) {
  Fixture fx;
  load_fixture(fixture_rel, &fx);
  f32_normwise = normwise;
  f32_outputs_normwise = outputs_normwise;
  grad_scale = fixture_grad_scale(&fx);
  bool ok = check_interp(bp_rel, &fx, true, INTERP_F32);
  ok &= check_interp(bp_rel, &fx, false, INTERP_F32);
  /* the elementwise rule then holds in f64, the interpreter's as the native code's */
  if (normwise) ok &= check_interp(bp_rel, &fx, true, INTERP_F64);
  ok &= check_jit(bp_rel, &fx, true);
  ok &= check_jit(bp_rel, &fx, false);
  free_fixture(&fx);
  if (!ok) fail_msg("%s: bpcc differs from PyTorch beyond %g relative (table above)", bp_rel, REL_TOL);
}

/* The fixtures: the model's .bp, its fixture, whether its f32 gradients and parameters
 * are held to the normwise rule and whether its f32 outputs are (see the top of the
 * file), one line each (the test's name is the fixture's). */
typedef struct {
  const char *bp, *fixture;
  bool f32_normwise, f32_outputs_normwise;
} FixtureLine;
static const FixtureLine fixtures[] = {
    {"tests/fixtures/mlp_small.bp", "tests/fixtures/mlp_small.fixture", false, false},
    {"examples/custom_loss.bp", "tests/fixtures/custom_loss.fixture", false, false},
    {"tests/fixtures/lenet_small.bp", "tests/fixtures/lenet_small.fixture", false, false},
    {"tests/fixtures/layernorm_small.bp", "tests/fixtures/layernorm_small.fixture", false, false},
    {"tests/fixtures/cnn_bn_small.bp", "tests/fixtures/cnn_bn_small.fixture", true, false},
    {"examples/attention_small.bp", "tests/fixtures/attention_small.fixture", true, true},
};
#define NFIXTURES (sizeof fixtures / sizeof fixtures[0])

static void test_fixture(void **state) {
  const FixtureLine *f = *state;
  check_model(f->bp, f->fixture, f->f32_normwise, f->f32_outputs_normwise);
}

int main(void) {
  struct CMUnitTest tests[NFIXTURES];
  for (size_t i = 0; i < NFIXTURES; i++)
    tests[i] = (struct CMUnitTest){fixtures[i].fixture, test_fixture, NULL, NULL, (void *)&fixtures[i]};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
