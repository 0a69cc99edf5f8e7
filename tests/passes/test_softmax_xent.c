/* tests/passes/test_softmax_xent.c — the softmax-CE rule, from .bp source to gradient IR.
 *
 * Every spelling of cross-entropy of a softmax in issue 3 is written as a small model,
 * lowered by the frontend and run through the pass pipeline. Where the rule must fire,
 * the gradient IR has a forward softmax_xent named by the rule, and its backward part
 * has no log, no division by a tensor (only the scalar 1/B of a mean), no softmax or
 * log_softmax Jacobian, and dz = softmax(z) - onehot(y) (rule "softmax_xent"). Where it
 * must not fire (CE of a sigmoid, f32 targets, a softmax over another axis, a sum over
 * the batch axis) there is no softmax_xent. With -fno-softmax-xent the rule is off, and
 * the gradients of both pipelines agree within 1e-6 relative (f64 interpreter, random
 * inputs), also with -fno-log-softmax, when autodiff goes through log and softmax. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "frontend/frontend.h"
#include "ir/ir.h"
#include "passes/passes.h"
#include "tests/compile.h"

#define BATCH 5

typedef struct {
  const char *name;
  const char *src;
} Spelling;

#define HEAD "model m(x: f32[B, 4], y: label[B, 3]) {\n    z = dense(x, 3)\n"

static const Spelling fires[] = {
    {"cross_entropy_inline", HEAD "    loss cross_entropy(softmax(z), y)\n}\n"},
    {"cross_entropy_named", HEAD "    p = softmax(z)\n    output probs = p\n    loss cross_entropy(p, y)\n}\n"},
    {"softmax_cross_entropy", HEAD "    loss softmax_cross_entropy(z, y)\n}\n"},
    {"hand_mean_inline", HEAD "    loss -mean(sum(onehot(y) * log(softmax(z)), axis = 1))\n}\n"},
    {"hand_mean_named", HEAD "    p = softmax(z)\n    loss -mean(sum(onehot(y) * log(p), axis = 1))\n}\n"},
    {"hand_sum_batch", HEAD "    loss -sum(sum(log(softmax(z)) * onehot(y), axis = 1))\n}\n"},
    {"hand_sum_all", HEAD "    loss -sum(onehot(y) * log(softmax(z)))\n}\n"},
    {"hand_mean_all", HEAD "    loss -mean(onehot(y) * log(softmax(z, axis = 1)))\n}\n"},
    {"log_softmax_nll", HEAD "    loss nll(log_softmax(z, axis = 1), y)\n}\n"},
    {"log_softmax_hand", HEAD "    lp = log_softmax(z, axis = 1)\n    loss -mean(sum(lp * onehot(y), axis = 1))\n}\n"},
    {"two_heads", HEAD "    h = relu(dense(x, 6))\n    z2 = dense(h, 3)\n"
                  "    loss cross_entropy(softmax(z), y) + 0.5 * softmax_cross_entropy(z2, y)\n}\n"},
};

static const Spelling does_not_fire[] = {
    {"ce_of_sigmoid", HEAD "    loss -mean(sum(onehot(y) * log(sigmoid(z)), axis = 1))\n}\n"},
    {"f32_targets", "model m(x: f32[B, 4], t: f32[B, 3]) {\n    z = dense(x, 3)\n"
                    "    loss -mean(sum(t * log(softmax(z)), axis = 1))\n}\n"},
    {"softmax_other_axis", HEAD "    loss -mean(sum(onehot(y) * log(softmax(z, axis = 0)), axis = 1))\n}\n"},
    {"sum_over_batch_axis", HEAD "    loss -mean(sum(onehot(y) * log(softmax(z)), axis = 0))\n}\n"},
    {"label_smoothing", HEAD "    loss -mean(sum((0.9 * onehot(y) + 0.05) * log(softmax(z)), axis = 1))\n}\n"},
    {"bce_of_sigmoid", "model m(x: f32[B, 4], t: f32[B, 3]) {\n    z = dense(x, 3)\n"
                       "    loss binary_cross_entropy(sigmoid(z), t)\n}\n"},
};

/* Lower src and run the pipeline; forward (untouched) and gradient functions. */
static Func *compile(const char *name, const char *src, bool xent, bool log_sm, Module **mod, Func **fwd,
                     Arena **arena) {
  *arena = arena_new();
  FeUnit *u = fe_compile_text(*arena, name, src, strlen(src));
  if (!u || u->nmodels != 1 || diag_error_count()) fail_msg("%s: the model does not compile", name);
  *mod = ir_module_new();
  *fwd = fe_lower(*mod, u->models[0]);
  assert_non_null(*fwd);
  PassOptions opt;
  pass_options_default(&opt);
  opt.verify = true;
  opt.softmax_xent = xent;
  opt.log_softmax = log_sm;
  Func *g = test_grad(*fwd, &opt);
  assert_non_null(g);
  return g;
}

static bool is_scalar(Func *f, int32_t v) { return ir_vtype(f, v)->rank == 0; }

static void check_fires(const Spelling *s) {
  Module *m;
  Func *fwd;
  Arena *a;
  Func *g = compile(s->name, s->src, true, true, &m, &fwd, &a);
  int xent = 0, dz = 0;
  for (int32_t i = 0; i < g->ninsts; i++) {
    const Inst *in = &g->insts[i];
    if (in->op == OP_SOFTMAX_XENT) {
      if (!in->rule || strcmp(in->rule, "softmax_xent") != 0)
        fail_msg("%s: %%%d softmax_xent does not name the rule", s->name, (int)i);
      xent++;
    }
    if (!(in->flags & IF_BACKWARD)) continue;
    if (in->op == OP_LOG || in->op == OP_LOG_SOFTMAX)
      fail_msg("%s: backward %%%d is a %s (rule %s)", s->name, (int)i, ir_ops[in->op].name, in->rule);
    if (in->op == OP_DIV && !is_scalar(g, i))
      fail_msg("%s: backward %%%d divides a tensor (rule %s)", s->name, (int)i, in->rule);
    if (in->rule && (!strncmp(in->rule, "softmax.", 8) || !strncmp(in->rule, "log_softmax.", 12) ||
                     !strncmp(in->rule, "log.", 4)))
      fail_msg("%s: backward %%%d comes from rule %s: a softmax Jacobian or log remains", s->name, (int)i, in->rule);
    /* dz = softmax(z) - onehot(y) */
    if (in->op == OP_SUB && in->rule && !strcmp(in->rule, "softmax_xent") &&
        g->insts[in->args[0]].op == OP_SOFTMAX && g->insts[in->args[1]].op == OP_ONEHOT)
      dz++;
  }
  if (xent < 1) fail_msg("%s: the softmax-CE rule did not fire", s->name);
  if (dz != xent) fail_msg("%s: %d softmax_xent, %d softmax - onehot gradients", s->name, xent, dz);
  ir_module_free(m);
  arena_free(a);
}

static void check_does_not_fire(const Spelling *s) {
  Module *m;
  Func *fwd;
  Arena *a;
  Func *g = compile(s->name, s->src, true, true, &m, &fwd, &a);
  for (int32_t i = 0; i < g->ninsts; i++)
    if (g->insts[i].op == OP_SOFTMAX_XENT) fail_msg("%s: the softmax-CE rule fired at %%%d", s->name, (int)i);
  ir_module_free(m);
  arena_free(a);
}

static void test_fires_for_every_spelling(void **state) {
  (void)state;
  diag_reset();
  for (size_t i = 0; i < sizeof fires / sizeof fires[0]; i++) check_fires(&fires[i]);
}

static void test_does_not_fire_for_counter_examples(void **state) {
  (void)state;
  diag_reset();
  for (size_t i = 0; i < sizeof does_not_fire / sizeof does_not_fire[0]; i++) check_does_not_fire(&does_not_fire[i]);
}

/* Gradients with the rule and with -fno-softmax-xent, f64 interpreter, same inputs. */
static double urand(uint64_t *st) {
  *st = *st * 6364136223846793005ull + 1442695040888963407ull;
  return (double)(*st >> 11) * 0x1.0p-53;
}

static void compare_on_off(const Spelling *s, bool log_sm) {
  Module *m1, *m2;
  Func *f1, *f2;
  Arena *a1, *a2;
  Func *on = compile(s->name, s->src, true, true, &m1, &f1, &a1);
  Func *off = compile(s->name, s->src, false, log_sm, &m2, &f2, &a2);
  for (int32_t i = 0; i < off->ninsts; i++)
    if (off->insts[i].op == OP_SOFTMAX_XENT) fail_msg("%s: -fno-softmax-xent still has softmax_xent", s->name);
  Tensor in[4], par[8];
  int ni = 0, np = 0;
  uint64_t st = 99;
  for (int32_t i = 0; i < f1->ninsts; i++) {
    const Inst *x = &f1->insts[i];
    if (x->op != OP_INPUT && x->op != OP_PARAM) continue;
    TensorType t = *ir_vtype(f1, i);
    for (int d = 0; d < t.rank; d++)
      if (t.dims[d] == DIM_BATCH) t.dims[d] = BATCH;
    Tensor v = ir_tensor_new(&t);
    for (int64_t k = 0; k < v.numel; k++)
      v.data[k] = t.dtype == DT_LABEL ? floor(urand(&st) * (double)t.dims[t.rank - 1]) : 2 * urand(&st) - 1;
    if (x->op == OP_INPUT) in[ni++] = v;
    else par[np++] = v;
  }
  Interp *i1 = ir_interp_run(on, INTERP_F64, BATCH, in, ni, par, np, 1, 1);
  Interp *i2 = ir_interp_run(off, INTERP_F64, BATCH, in, ni, par, np, 1, 1);
  assert_non_null(i1);
  assert_non_null(i2);
  int32_t g1[8], g2[8], n1 = 0, n2 = 0;
  for (int32_t i = 0; i < on->ninsts; i++)
    if (on->insts[i].op == OP_GRAD) g1[n1++] = on->insts[i].args[1];
  for (int32_t i = 0; i < off->ninsts; i++)
    if (off->insts[i].op == OP_GRAD) g2[n2++] = off->insts[i].args[1];
  assert_int_equal(n1, np);
  assert_int_equal(n2, np);
  for (int p = 0; p < np; p++) {
    const Tensor *x = ir_interp_value(i1, g1[p]), *y = ir_interp_value(i2, g2[p]);
    for (int64_t k = 0; k < x->numel; k++) {
      double den = fabs(x->data[k]) + fabs(y->data[k]);
      double rel = den > 1e-12 ? fabs(x->data[k] - y->data[k]) / den : 0;
      if (rel > 1e-6)
        fail_msg("%s: param %d element %lld: rule %.12g, -fno-softmax-xent %.12g (rel %.3g > 1e-6)", s->name, p,
                 (long long)k, x->data[k], y->data[k], rel);
    }
  }
  ir_interp_free(i1);
  ir_interp_free(i2);
  for (int i = 0; i < ni; i++) ir_tensor_free(&in[i]);
  for (int i = 0; i < np; i++) ir_tensor_free(&par[i]);
  ir_module_free(m1);
  ir_module_free(m2);
  arena_free(a1);
  arena_free(a2);
}

static void test_off_gives_same_gradients(void **state) {
  (void)state;
  diag_reset();
  for (size_t i = 0; i < sizeof fires / sizeof fires[0]; i++) compare_on_off(&fires[i], true);
  /* and through log and softmax themselves (-fno-log-softmax as well) */
  for (size_t i = 0; i < sizeof fires / sizeof fires[0]; i++) compare_on_off(&fires[i], false);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_fires_for_every_spelling),
      cmocka_unit_test(test_does_not_fire_for_counter_examples),
      cmocka_unit_test(test_off_gives_same_gradients),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
