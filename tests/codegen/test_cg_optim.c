/* tests/codegen/test_cg_optim.c — <model>__step (grad + update) against plain C
 * implementations of torch.optim's formulas, over several steps, for every optimizer
 * with weight decay, momentum / nesterov variants and clipping by the global norm.
 *
 * The model: loss = sum(W * x) + sum(b * b), so dW = x and db = 2 b; W has 1003
 * elements (a vector tail) or 300000 (the chunked update over two threads), b has 7.
 * Tolerance 1e-5 relative per element. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/codegen/harness.h"
#include "tests/compile.h"

static const SrcLoc L = {-1, 1, 1, 0};
#define NW 1003
#define NB 7

/* The reference: one parameter vector p[n] with its gradient g[n] and state s0, s1. */
static void ref_step(int kind, const double *h, float *p, float *g, float *s0, float *s1, int n, double gscale) {
  double t = h[BPRT_H_STEP], lr = h[BPRT_H_LR], wd = h[BPRT_H_WEIGHT_DECAY], mom = h[BPRT_H_MOMENTUM];
  for (int i = 0; i < n; i++) {
    g[i] = (float)(g[i] * gscale);
    float d = kind == BPRT_OPT_ADAMW ? g[i] : (float)(g[i] + wd * p[i]);
    switch (kind) {
    case BPRT_OPT_SGD: case BPRT_OPT_MOMENTUM:
      if (mom != 0) {
        s0[i] = t <= 1 ? d : (float)(mom * s0[i] + (1 - h[BPRT_H_DAMPENING]) * d);
        d = h[BPRT_H_NESTEROV] != 0 ? (float)(d + mom * s0[i]) : s0[i];
      }
      p[i] = (float)(p[i] - lr * d);
      break;
    case BPRT_OPT_ADAGRAD: {
      double clr = lr / (1 + (t - 1) * h[BPRT_H_LR_DECAY]);
      s0[i] = (float)((t <= 1 ? h[BPRT_H_INITIAL_ACC] : s0[i]) + (double)d * d);
      p[i] = (float)(p[i] - clr * d / (sqrt(s0[i]) + h[BPRT_H_EPS]));
      break;
    }
    case BPRT_OPT_RMSPROP: {
      double a = h[BPRT_H_ALPHA];
      s0[i] = (float)(a * (t <= 1 ? 0 : s0[i]) + (1 - a) * d * d);
      double avg = sqrt(s0[i]) + h[BPRT_H_EPS];
      if (mom > 0) {
        s1[i] = (float)(mom * (t <= 1 ? 0 : s1[i]) + d / avg);
        p[i] = (float)(p[i] - lr * s1[i]);
      } else {
        p[i] = (float)(p[i] - lr * d / avg);
      }
      break;
    }
    default: {
      double b1 = h[BPRT_H_BETA1], b2 = h[BPRT_H_BETA2];
      if (kind == BPRT_OPT_ADAMW) p[i] = (float)(p[i] * (1 - lr * wd));
      s0[i] = (float)(b1 * (t <= 1 ? 0 : s0[i]) + (1 - b1) * d);
      s1[i] = (float)(b2 * (t <= 1 ? 0 : s1[i]) + (1 - b2) * d * d);
      double bc1 = 1 - pow(b1, t), bc2 = 1 - pow(b2, t);
      double den = sqrt(s1[i]) / sqrt(bc2) + h[BPRT_H_EPS];
      p[i] = (float)(p[i] - (lr / bc1) * s0[i] / den);
      break;
    }
    }
  }
}

static Func *model(Module *m, int64_t nw) {
  Func *f = ir_func_new(m, "opt");
  int64_t dw = nw, db = NB;
  TypeId tw = ir_type(m, DT_F32, 1, &dw), tb = ir_type(m, DT_F32, 1, &db);
  int32_t x = ir_input(f, "x", 0, tw, L);
  int32_t W = ir_param(f, "W", tw, INIT_ZEROS, 0, 0, L);
  int32_t b = ir_param(f, "b", tb, INIT_ZEROS, 0, 0, L);
  int32_t s1 = ir_reduce(f, OP_SUM, ir_binary(f, OP_MUL, W, x, L), IR_AXIS_ALL, false, L);
  int32_t s2 = ir_reduce(f, OP_SUM, ir_binary(f, OP_MUL, b, b, L), IR_AXIS_ALL, false, L);
  ir_loss(f, ir_binary(f, OP_ADD, s1, s2, L), L);
  ir_grad(f, W, x, L);
  ir_grad(f, b, ir_binary(f, OP_MUL, b, ir_scalar(f, 2.0, L), L), L);
  return f;
}

/* Run `steps` steps of `opt` and compare params, grads and state each step; W has NW
 * elements (nw = 0) or nw, and the pool `threads` threads. */
static int run_n(const bprt_optimizer_config *opt, int steps, const char *what, int64_t nw, int threads) {
  Module *mod = ir_module_new();
  Func *f = model(mod, nw);
  CgOptions o = {"native", 2, threads, false, false};
  CgModel *m = test_build(f, f, opt, &o);
  assert_non_null(m);
  assert_int_equal(cg_model_jit(m), 0);
  bprt_model_desc *d = cg_model_desc(m);
  assert_non_null(d->step);
  assert_int_equal(d->nparams, 2);
  int64_t ow = d->params[0].offset, ob = d->params[1].offset;
  CgtFrame t;
  cgt_frame_init(&t, d, 1, threads);
  uint64_t rs = 7;
  float *x = t.inputs[0];
  float *rp = calloc((size_t)(nw + NB), sizeof *rp), *rg = calloc((size_t)(nw + NB), sizeof *rg);
  float *r0 = calloc((size_t)(nw + NB), sizeof *r0), *r1 = calloc((size_t)(nw + NB), sizeof *r1);
  for (int i = 0; i < nw; i++) x[i] = (float)(cgt_urand(&rs) * 2 - 1);
  for (int i = 0; i < nw; i++) rp[i] = t.params[ow + i] = (float)(cgt_urand(&rs) * 2 - 1);
  for (int i = 0; i < NB; i++) rp[nw + i] = t.params[ob + i] = (float)(cgt_urand(&rs) * 2 - 1);
  int64_t P = d->param_floats;
  int fails = 0;
  for (int s = 1; s <= steps && !fails; s++) {
    t.hyper[BPRT_H_STEP] = s;
    /* the reference: gradients at the current params, then the update */
    double loss = 0;
    for (int i = 0; i < nw; i++) rg[i] = x[i], loss += (double)rp[i] * x[i];
    for (int i = 0; i < NB; i++) rg[nw + i] = 2 * rp[nw + i], loss += (double)rp[nw + i] * rp[nw + i];
    double gscale = 1;
    if (t.hyper[BPRT_H_CLIP] > 0) {
      double ss = 0;
      for (int i = 0; i < nw + NB; i++) ss += (double)rg[i] * rg[i];
      double c = t.hyper[BPRT_H_CLIP] / (sqrt(ss) + 1e-6);
      gscale = c < 1 ? c : 1;
    }
    /* one state layout per parameter: the state of W at ow, of b at ob */
    ref_step(opt->kind, t.hyper, rp, rg, r0, r1, (int)nw, gscale);
    ref_step(opt->kind, t.hyper, rp + nw, rg + nw, r0 + nw, r1 + nw, NB, gscale);
    d->step(&t.fr);
    assert_int_equal(t.fr.status, 0);
    if (fabs(*t.loss - loss) > 1e-5 * fmax(1, fabs(loss))) {
      printf("%s step %d: loss %.9g, expected %.9g\n", what, s, (double)*t.loss, loss);
      fails++;
    }
    double maxd = 0;
    for (int i = 0; i < nw + NB; i++) {
      int64_t at = i < nw ? ow + i : ob + i - nw;
      double checks[4][2] = {{t.params[at], rp[i]}, {t.grads[at], rg[i]}, {t.state[at], r0[i]}, {0, 0}};
      if (opt->kind == BPRT_OPT_RMSPROP || opt->kind == BPRT_OPT_ADAM || opt->kind == BPRT_OPT_ADAMW)
        checks[3][0] = t.state[P + at], checks[3][1] = r1[i];
      bool has_state = opt->kind != BPRT_OPT_SGD || t.hyper[BPRT_H_MOMENTUM] != 0;
      for (int k = 0; k < 4; k++) {
        if (k == 2 && !has_state) continue;
        double diff = fabs(checks[k][0] - checks[k][1]);
        if (diff > maxd) maxd = diff;
        if (!(diff <= 1e-5 * fmax(1, fabs(checks[k][1])))) {
          if (fails < 5)
            printf("%s step %d: %s[%d] = %.9g, expected %.9g\n", what, s, (const char *[]){"param", "grad", "state0", "state1"}[k],
                   i, checks[k][0], checks[k][1]);
          fails++;
        }
      }
    }
    if (getenv("CGT_VERBOSE")) printf("  %s step %d: max |diff| %.3g\n", what, s, maxd);
  }
  free(rp);
  free(rg);
  free(r0);
  free(r1);
  cgt_frame_free(&t);
  cg_model_free(m);
  ir_module_free(mod);
  return fails;
}

static int run(const bprt_optimizer_config *opt, int steps, const char *what) { return run_n(opt, steps, what, NW, 1); }

static void test_optimizers(void **state) {
  (void)state;
  int fails = 0;
  bprt_optimizer_config o;
  bprt_optimizer_init(&o, BPRT_OPT_SGD);
  o.hyper[BPRT_H_LR] = 0.1;
  fails += run(&o, 4, "sgd");
  o.hyper[BPRT_H_WEIGHT_DECAY] = 0.01;
  o.hyper[BPRT_H_MOMENTUM] = 0.9;
  o.hyper[BPRT_H_DAMPENING] = 0.1;
  fails += run(&o, 5, "sgd+momentum+wd");
  o.hyper[BPRT_H_NESTEROV] = 1;
  o.hyper[BPRT_H_DAMPENING] = 0;
  fails += run(&o, 5, "sgd+nesterov");
  bprt_optimizer_init(&o, BPRT_OPT_MOMENTUM);
  fails += run(&o, 5, "momentum");
  bprt_optimizer_init(&o, BPRT_OPT_ADAGRAD);
  o.hyper[BPRT_H_LR_DECAY] = 0.05;
  o.hyper[BPRT_H_INITIAL_ACC] = 0.1;
  o.hyper[BPRT_H_WEIGHT_DECAY] = 0.001;
  fails += run(&o, 5, "adagrad");
  bprt_optimizer_init(&o, BPRT_OPT_RMSPROP);
  fails += run(&o, 5, "rmsprop");
  o.hyper[BPRT_H_MOMENTUM] = 0.5;
  o.hyper[BPRT_H_WEIGHT_DECAY] = 0.01;
  fails += run(&o, 5, "rmsprop+momentum");
  bprt_optimizer_init(&o, BPRT_OPT_ADAM);
  fails += run(&o, 6, "adam");
  o.hyper[BPRT_H_WEIGHT_DECAY] = 0.05;
  o.hyper[BPRT_H_CLIP] = 1.0;
  fails += run(&o, 6, "adam+wd+clip");
  bprt_optimizer_init(&o, BPRT_OPT_ADAMW);
  o.hyper[BPRT_H_LR] = 0.01;
  fails += run(&o, 6, "adamw");
  o.hyper[BPRT_H_CLIP] = 100.0;  /* above the norm: no clipping */
  fails += run(&o, 3, "adamw+loose clip");
  assert_int_equal(fails, 0);
}

/* A block of 300000 floats: the update runs in chunks over two threads. */
static void test_parallel_update(void **state) {
  (void)state;
  int fails = 0;
  bprt_optimizer_config o;
  bprt_optimizer_init(&o, BPRT_OPT_ADAM);
  o.hyper[BPRT_H_CLIP] = 5.0;
  fails += run_n(&o, 3, "adam, 2 threads", 300000, 2);
  bprt_optimizer_init(&o, BPRT_OPT_SGD);
  o.hyper[BPRT_H_MOMENTUM] = 0.9;
  fails += run_n(&o, 3, "sgd+momentum, 2 threads", 300000, 2);
  assert_int_equal(fails, 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_optimizers), cmocka_unit_test(test_parallel_update)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
