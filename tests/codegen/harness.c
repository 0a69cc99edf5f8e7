/* tests/codegen/harness.c — JIT versus the reference interpreter on one Func. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "passes/passes.h"
#include "tests/codegen/harness.h"
#include "tests/compile.h"

double cgt_urand(uint64_t *s) {
  *s = *s * 6364136223846793005ull + 1442695040888963407ull;
  return (double)(*s >> 11) * 0x1.0p-53;
}

typedef struct {
  bprt_task_fn fn;
  void *ctx;
  int64_t n;
  int tid, nthreads;
} Worker;

static void *worker_main(void *p) {
  Worker *w = p;
  int64_t i0 = w->n * w->tid / w->nthreads, i1 = w->n * (w->tid + 1) / w->nthreads;
  if (i1 > i0) w->fn(w->ctx, i0, i1, w->tid);
  return NULL;
}

/* pool = (intptr_t) number of threads */
void cgt_parallel_for(void *pool, int64_t n, int64_t grain, bprt_task_fn fn, void *ctx) {
  (void)grain;
  int nt = (int)(intptr_t)pool;
  if (nt <= 1 || n <= 1) {
    fn(ctx, 0, n, 0);
    return;
  }
  if (nt > 16) nt = 16;
  pthread_t th[16];
  Worker w[16];
  for (int i = 0; i < nt; i++) {
    w[i] = (Worker){fn, ctx, n, i, nt};
    if (i > 0) pthread_create(&th[i], NULL, worker_main, &w[i]);
  }
  worker_main(&w[0]);
  for (int i = 1; i < nt; i++) pthread_join(th[i], NULL);
}

int64_t cgt_numel(int rank, const int64_t *dims, int64_t batch) {
  int64_t n = 1;
  for (int i = 0; i < rank; i++) n *= dims[i] == BPRT_DIM_BATCH ? batch : dims[i];
  return n;
}

static void *zalloc(size_t n) {
  size_t sz = (n + 63) / 64 * 64 + 64;
  void *p = aligned_alloc(64, sz);
  memset(p, 0, sz);
  return p;
}

Func *cgt_func_to_f64(Func *f, const char *name) {
  Func *g = ir_func_clone(f, name);
  for (int32_t i = 0; i < g->ninsts; i++) {
    Inst *in = &g->insts[i];
    if (in->type == TYPE_VOID) continue;
    const TensorType *t = ir_type_get(g->mod, in->type);
    if (t->dtype != DT_F32) continue;
    int64_t dims[IR_MAX_RANK];
    for (int k = 0; k < t->rank; k++) dims[k] = t->dims[k];
    in->type = ir_type(g->mod, DT_F64, t->rank, dims);
  }
  return g;
}

void cgt_frame_init(CgtFrame *t, const bprt_model_desc *d, int64_t batch, int threads) {
  cgt_frame_init_ex(t, d, batch, threads, 4);
}

void cgt_frame_init_ex(CgtFrame *t, const bprt_model_desc *d, int64_t batch, int threads, int esize) {
  memset(t, 0, sizeof *t);
  size_t es = (size_t)esize;
  t->esize = esize;
  t->params = zalloc((size_t)d->param_floats * es);
  t->grads = zalloc((size_t)d->param_floats * es);
  t->state = zalloc((size_t)d->opt_state_floats * es);
  /* buffers start at their initial values, as the interpreter's (zeros, ones, a constant) */
  t->buffers = zalloc((size_t)d->buffer_floats * es);
  for (int i = 0; i < d->nbuffers; i++) {
    const bprt_param_desc *b = &d->buffers[i];
    double v = b->init == 1 ? 1.0 : b->init == 2 ? b->init_a : 0.0;   /* INIT_ONES, INIT_CONSTANT */
    int64_t n = cgt_numel(b->rank, b->dims, 1);
    for (int64_t k = 0; k < n; k++) {
      if (esize == 8) ((double *)t->buffers)[b->offset + k] = v;
      else t->buffers[b->offset + k] = (float)v;
    }
  }
  t->ws = zalloc((size_t)(d->ws_fixed + d->ws_per_batch * batch));
  t->loss = zalloc(es);
  t->ninputs = d->ninputs;
  t->noutputs = d->noutputs;
  t->inputs = zalloc(sizeof(void *) * (size_t)(d->ninputs + 1));
  t->outputs = zalloc(sizeof(float *) * (size_t)(d->noutputs + 1));
  for (int i = 0; i < d->ninputs; i++) {
    const bprt_tensor_desc *in = &d->inputs[i];
    int64_t n = cgt_numel(in->is_label ? in->rank - 1 : in->rank, in->dims, batch);
    t->inputs[i] = zalloc((size_t)n * (in->is_label ? 4 : es));
  }
  for (int i = 0; i < d->noutputs; i++) {
    const bprt_tensor_desc *o = &d->outputs[i];
    t->outputs[i] = zalloc((size_t)cgt_numel(o->rank, o->dims, batch) * es);
  }
  memcpy(t->hyper, d->hyper, sizeof t->hyper);
  /* the backward's seed reads the loss scale: 1 without loss scaling, as the model
   * object sets it (a desc compiled without a train block has zeros here) */
  if (d->loss_scale_mode == BPRT_LOSS_SCALE_OFF) t->hyper[BPRT_H_LOSS_SCALE] = 1;
  bprt_frame *f = &t->fr;
  f->batch = batch;
  f->params = t->params;
  f->grads = t->grads;
  f->opt_state = t->state;
  f->buffers = t->buffers;
  f->workspace = t->ws;
  f->inputs = (const void *const *)t->inputs;
  f->outputs = (float *const *)t->outputs;
  f->loss = t->loss;
  f->hyper = t->hyper;
  f->grad_weight = 1;   /* a plain step: the backward's seed is hyper[LOSS_SCALE] * 1 */
  f->seed = 1234;
  f->step = 1;
  f->pool = (void *)(intptr_t)threads;
  f->parallel_for = cgt_parallel_for;
  f->nthreads = threads;
}

void cgt_frame_free(CgtFrame *t) {
  for (int i = 0; i < t->ninputs; i++) free(t->inputs[i]);
  for (int i = 0; i < t->noutputs; i++) free(t->outputs[i]);
  free(t->inputs);
  free(t->outputs);
  free(t->params);
  free(t->grads);
  free(t->state);
  free(t->buffers);
  free(t->ws);
  free(t->loss);
}

static TensorType resolve(const TensorType *t, int64_t batch) {
  TensorType r = *t;
  for (int i = 0; i < r.rank; i++)
    if (r.dims[i] == DIM_BATCH) r.dims[i] = batch;
  return r;
}

/* |got - ref| <= tol * max(1, max |ref|) for all n elements; prints a line on failure.
 * got holds floats (esize 4) or doubles (esize 8). */
static int compare(const char *what, const TensorType *type, int64_t batch, const void *gotp, int esize,
                   const double *ref, int64_t n, double tol) {
#define GOT(k) (esize == 8 ? ((const double *)gotp)[k] : (double)((const float *)gotp)[k])
  double maxdiff = 0, scale = 1;
  int64_t worst = 0, bad = 0;
  for (int64_t k = 0; k < n; k++)
    if (isfinite(ref[k])) scale = fmax(scale, fabs(ref[k]));
  for (int64_t k = 0; k < n; k++) {
    double r = ref[k], g = GOT(k);
    double diff = fabs(g - r);
    if (isnan(r) && isnan(g)) diff = 0;
    else if (isinf(r) && g == r) diff = 0;
    else if (isnan(diff)) diff = INFINITY;
    if (diff > maxdiff) maxdiff = diff, worst = k;
    if (!(diff <= tol * scale)) bad++;
  }
  char ts[64];
  ir_type_str(type, ts, sizeof ts);
  if (bad) {
    printf("  FAIL %-12s %-14s batch %lld: %lld of %lld elements off, max |diff| %.3g at %lld (jit %.9g, ref %.9g)\n",
           what, ts, (long long)batch, (long long)bad, (long long)n, maxdiff, (long long)worst, GOT(worst),
           ref[worst]);
    return 1;
  }
  if (getenv("CGT_VERBOSE")) printf("  ok   %-12s %-14s batch %lld: max |diff| %.3g\n", what, ts, (long long)batch, maxdiff);
  return 0;
#undef GOT
}

static int check_model(Func *f, Func *grad, int64_t batch, double tol, const CgtConfig *cfg);
CgtRefFn cgt_reference = NULL;

int cgt_check_forward(Func *f, int64_t batch, double tol, const CgtConfig *cfg) {
  return check_model(f, NULL, batch, tol, cfg);
}

int cgt_check_grad(Func *fwd, Func *grad, int64_t batch, double tol, const CgtConfig *cfg) {
  return check_model(fwd, grad, batch, tol, cfg);
}

/* Forward (grad NULL): outputs of the forward entry. Else the grad entry: outputs, the
 * loss and the gradients, against the interpreter running grad. */
static int check_model(Func *fwd, Func *grad, int64_t batch, double tol, const CgtConfig *cfg) {
  CgtConfig defcfg = {-1, 1, 1, NULL, false, false};
  if (!cfg) cfg = &defcfg;
  if (cfg->f64) {
    fwd = cgt_func_to_f64(fwd, fwd->name);
    if (grad) grad = cgt_func_to_f64(grad, grad->name);
  }
  /* CGT_OPT=0..3 picks the optimization level (default 2), to run a test at -O0 */
  const char *lvl = getenv("CGT_OPT");
  CgOptions o = {cfg->march ? cfg->march : "native", lvl ? atoi(lvl) : 2, 2, false, false};
  CgModel *m = test_build(fwd, grad, NULL, &o);
  if (!m) return 1;
  /* the reference computes what the entry does: grad, or the forward entry's inference
   * form (batchnorm with its running statistics, passes/modes.c) */
  Func *f = grad ? grad : pass_inference(ir_func_clone(fwd, fwd->name));
  if (cg_model_jit(m) != 0) {
    cg_model_free(m);
    return 1;
  }
  bprt_model_desc *d = cg_model_desc(m);
  int es = cg_model_elem_bytes(m);
  CgtFrame t;
  cgt_frame_init_ex(&t, d, batch, cfg->threads, es);
  uint64_t rs = 42;
  /* interpreter tensors in f's instruction order */
  int nin = d->ninputs, np = 0;
  for (int32_t i = 0; i < f->ninsts; i++) np += f->insts[i].op == OP_PARAM;
  Tensor *ins = calloc((size_t)nin + 1, sizeof *ins), *ps = calloc((size_t)np + 1, sizeof *ps);
  int pk = 0;
  for (int32_t i = 0; i < f->ninsts; i++) {
    const Inst *in = &f->insts[i];
    if (in->op != OP_INPUT && in->op != OP_PARAM) continue;
    TensorType ty = resolve(ir_vtype(f, i), batch);
    Tensor *x = in->op == OP_INPUT ? &ins[in->iattr[0]] : &ps[pk++];
    if (x->data) continue;
    *x = ir_tensor_new(&ty);
    if (ty.dtype == DT_LABEL) {
      int32_t *dst = t.inputs[in->iattr[0]];
      int64_t C = ty.dims[ty.rank - 1];
      for (int64_t k = 0; k < x->numel; k++) {
        int32_t c = (int32_t)(cgt_urand(&rs) * (double)C);
        x->data[k] = c;
        dst[k] = c;
      }
      continue;
    }
    void *dst;
    if (in->op == OP_INPUT) dst = t.inputs[in->iattr[0]];
    else {
      int q = 0;
      while (strcmp(d->params[q].name, in->name) != 0) q++;
      dst = (char *)t.params + d->params[q].offset * es;
    }
    /* weights of a realistic scale: U(-1, 1) sqrt(3 / fan_in), variance 1 / fan_in */
    double pscale = in->op == OP_PARAM && cfg->init_scale ? (ty.rank == 2 ? sqrt(3.0 / (double)ty.dims[0]) : 0.1) : 1;
    for (int64_t k = 0; k < x->numel; k++) {
      double v = pscale * (cfg->lo + (cfg->hi - cfg->lo) * cgt_urand(&rs));
      if (es == 8) ((double *)dst)[k] = v;
      else ((float *)dst)[k] = (float)v, v = (float)v;
      x->data[k] = v;
    }
  }
  if (grad) d->grad(&t.fr);
  else d->forward(&t.fr);
  int fails = t.fr.status != 0;
  if (cgt_reference && !grad) {
    int ko = 0;
    for (int32_t i = 0; i < f->ninsts; i++) ko += f->insts[i].op == OP_OUTPUT;
    Tensor *outs = calloc((size_t)ko + 1, sizeof *outs);
    ko = 0;
    for (int32_t i = 0; i < f->ninsts; i++)
      if (f->insts[i].op == OP_OUTPUT) {
        TensorType ty = resolve(ir_vtype(f, f->insts[i].args[0]), batch);
        outs[ko++] = ir_tensor_new(&ty);
      }
    cgt_reference(f, batch, ins, ps, outs);
    ko = 0;
    for (int32_t i = 0; i < f->ninsts; i++)
      if (f->insts[i].op == OP_OUTPUT) {
        fails += compare(f->insts[i].name, &outs[ko].type, batch, t.outputs[ko], es, outs[ko].data, outs[ko].numel, tol);
        ko++;
      }
    for (int k = 0; k < ko; k++) ir_tensor_free(&outs[k]);
    free(outs);
    for (int i = 0; i < nin; i++) ir_tensor_free(&ins[i]);
    for (int i = 0; i < np; i++) ir_tensor_free(&ps[i]);
    free(ins);
    free(ps);
    cgt_frame_free(&t);
    cg_model_free(m);
    return fails;
  }
  Interp *it = ir_interp_run(f, es == 8 ? INTERP_F64 : INTERP_F32, batch, ins, nin, ps, np, 1234, 1);
  if (!it) fails = 1;
  int ko = 0;
  for (int32_t i = 0; it && i < f->ninsts; i++) {
    const Inst *in = &f->insts[i];
    if (in->op == OP_OUTPUT) {
      const Tensor *ref = ir_interp_value(it, in->args[0]);
      fails += compare(in->name, &ref->type, batch, t.outputs[ko++], es, ref->data, ref->numel, tol);
    } else if (in->op == OP_LOSS && grad) {
      const Tensor *ref = ir_interp_value(it, in->args[0]);
      fails += compare("loss", &ref->type, batch, t.loss, es, ref->data, 1, tol);
    } else if (in->op == OP_GRAD) {
      const Tensor *ref = ir_interp_value(it, in->args[1]);
      const char *pn = f->insts[in->args[0]].name;
      int q = 0;
      while (strcmp(d->params[q].name, pn) != 0) q++;
      char what[96];
      snprintf(what, sizeof what, "d %s", pn);
      fails += compare(what, &ref->type, batch, (char *)t.grads + d->params[q].offset * es, es, ref->data, ref->numel, tol);
    }
  }
  ir_interp_free(it);
  for (int i = 0; i < nin; i++) ir_tensor_free(&ins[i]);
  for (int i = 0; i < np; i++) ir_tensor_free(&ps[i]);
  free(ins);
  free(ps);
  cgt_frame_free(&t);
  cg_model_free(m);
  return fails;
}
