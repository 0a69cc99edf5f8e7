/* tests/train/test_optim.c — each optimizer's update, as compiled into the JIT'd
 * training step, against
 *   1. its textbook formula (torch.optim's, written out below in double precision) over
 *      six steps, from the gradient the model itself computes at each step, and
 *   2. PyTorch itself: fixtures from tests/train/fixtures/make_optim_fixtures.py (five
 *      steps of torch.optim on the same weights and batch).
 * Tolerance: |ours - reference| <= 2e-6 + 2e-5 |reference| per parameter element. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>

#include "tests/train/jit.h"

static const char *tiny_bp =
    "layer lin(x: [B, I], n: int) -> [B, n] {\n"
    "    param W: [I, n] init normal(0.5)\n"
    "    param b: [n]    init uniform(-0.5, 0.5)\n"
    "    return x @ W + b\n"
    "}\n"
    "model tiny(x: f32[B, 4], y: label[B, 3]) {\n"
    "    z = lin(x, 3)\n"
    "    output p = softmax(z)\n"
    "    loss softmax_cross_entropy(z, y)\n"
    "}\n";

#define ROWS 8

/* ------------------------------------------------------- 1. the textbook formulas */

/* One torch.optim step in double over the params block (state in s0, s1). */
static void reference_step(int kind, const double *h, int64_t t, int64_t n, double *p, const float *gf, double *s0,
                           double *s1) {
  double norm = 0, gscale = 1;
  for (int64_t i = 0; i < n; i++) norm += (double)gf[i] * gf[i];
  norm = sqrt(norm);
  if (h[BPRT_H_CLIP] > 0) gscale = fmin(1.0, h[BPRT_H_CLIP] / (norm + 1e-6)); /* clip_grad_norm_ */
  double lr = h[BPRT_H_LR], wd = h[BPRT_H_WEIGHT_DECAY], mom = h[BPRT_H_MOMENTUM], eps = h[BPRT_H_EPS];
  for (int64_t i = 0; i < n; i++) {
    double g = gf[i] * gscale;
    double d = kind == BPRT_OPT_ADAMW ? g : g + wd * p[i];
    switch (kind) {
    case BPRT_OPT_SGD:
    case BPRT_OPT_MOMENTUM:
      /* buf = t == 1 ? d : momentum buf + (1 - dampening) d; d = nesterov ? d + momentum buf : buf */
      if (mom != 0) {
        s0[i] = t == 1 ? d : mom * s0[i] + (1 - h[BPRT_H_DAMPENING]) * d;
        d = h[BPRT_H_NESTEROV] != 0 ? d + mom * s0[i] : s0[i];
      }
      p[i] -= lr * d;
      break;
    case BPRT_OPT_ADAGRAD: {
      /* clr = lr / (1 + (t - 1) lr_decay); sum += d^2; p -= clr d / (sqrt(sum) + eps) */
      double clr = lr / (1 + (double)(t - 1) * h[BPRT_H_LR_DECAY]);
      s0[i] = (t == 1 ? h[BPRT_H_INITIAL_ACC] : s0[i]) + d * d;
      p[i] -= clr * d / (sqrt(s0[i]) + eps);
      break;
    }
    case BPRT_OPT_RMSPROP: {
      /* sq = alpha sq + (1 - alpha) d^2; avg = sqrt(sq) + eps; buf = momentum buf + d / avg */
      double a = h[BPRT_H_ALPHA];
      s0[i] = a * (t == 1 ? 0 : s0[i]) + (1 - a) * d * d;
      double avg = sqrt(s0[i]) + eps;
      if (mom > 0) {
        s1[i] = mom * (t == 1 ? 0 : s1[i]) + d / avg;
        p[i] -= lr * s1[i];
      } else {
        p[i] -= lr * d / avg;
      }
      break;
    }
    case BPRT_OPT_ADAM:
    case BPRT_OPT_ADAMW: {
      /* adamw: p *= 1 - lr wd; m = b1 m + (1 - b1) d; v = b2 v + (1 - b2) d^2;
       * p -= (lr / (1 - b1^t)) m / (sqrt(v) / sqrt(1 - b2^t) + eps) */
      double b1 = h[BPRT_H_BETA1], b2 = h[BPRT_H_BETA2];
      if (kind == BPRT_OPT_ADAMW) p[i] *= 1 - lr * wd;
      s0[i] = b1 * (t == 1 ? 0 : s0[i]) + (1 - b1) * d;
      s1[i] = b2 * (t == 1 ? 0 : s1[i]) + (1 - b2) * d * d;
      double bc1 = 1 - pow(b1, (double)t), bc2 = 1 - pow(b2, (double)t);
      p[i] -= (lr / bc1) * s0[i] / (sqrt(s1[i]) / sqrt(bc2) + eps);
      break;
    }
    default: fail_msg("unknown optimizer %d", kind);
    }
  }
}

typedef struct {
  int kind;
  const char *set;   /* "--optimizer" text: the settings over PyTorch's defaults */
} Config;

static const Config formula_configs[] = {
    {BPRT_OPT_SGD, "sgd(lr = 0.5)"},
    {BPRT_OPT_SGD, "sgd(lr = 0.3, momentum = 0.9, dampening = 0.1, weight_decay = 0.01)"},
    {BPRT_OPT_MOMENTUM, "momentum(lr = 0.2, nesterov = true)"},
    {BPRT_OPT_MOMENTUM, "momentum(lr = 0.2, momentum = 0.5, clip = 0.05)"},
    {BPRT_OPT_ADAGRAD, "adagrad(lr = 0.3, lr_decay = 0.01, initial_accumulator_value = 0.1, weight_decay = 0.001)"},
    {BPRT_OPT_RMSPROP, "rmsprop(lr = 0.01, alpha = 0.9)"},
    {BPRT_OPT_RMSPROP, "rmsprop(lr = 0.01, momentum = 0.5, weight_decay = 0.01, eps = 1e-3)"},
    {BPRT_OPT_ADAM, "adam(lr = 0.05, betas = (0.8, 0.99))"},
    {BPRT_OPT_ADAM, "adam(lr = 0.05, weight_decay = 0.01, clip = 0.5)"},
    {BPRT_OPT_ADAMW, "adamw(lr = 0.05, weight_decay = 0.1)"},
    {BPRT_OPT_ADAMW, "adamw(lr = 0.01, eps = 1e-4, clip = 0.2)"},
};

static void batch(float *x, int32_t *y) {
  uint32_t s = 12345;
  for (int i = 0; i < ROWS * 4; i++) {
    s = s * 1664525u + 1013904223u;
    x[i] = (float)((int)(s >> 9) % 2001 - 1000) / 500.0f;
  }
  for (int r = 0; r < ROWS; r++) y[r] = (int32_t)((r * 7 + 1) % 3);
}

static void check_close(const char *what, int step, const char *name, const float *got, const double *want, int64_t n) {
  double worst = 0;
  int64_t at = -1;
  for (int64_t i = 0; i < n; i++) {
    double err = fabs((double)got[i] - want[i]), tol = 2e-6 + 2e-5 * fabs(want[i]);
    if (err > tol && err - tol > worst) worst = err - tol, at = i;
  }
  if (at >= 0)
    fail_msg("%s, step %d, %s[%lld]: got %.9g, want %.9g", what, step, name, (long long)at, (double)got[at], want[at]);
}

static void test_update_formulas(void **state) {
  (void)state;
  float x[ROWS * 4];
  int32_t y[ROWS];
  batch(x, y);
  const void *in[2] = {x, y};
  for (size_t c = 0; c < sizeof formula_configs / sizeof formula_configs[0]; c++) {
    const Config *cf = &formula_configs[c];
    BprtOptSpec spec;
    assert_int_equal(bprt_optimizer_parse(cf->set, &spec), 0);
    assert_int_equal(spec.kind, cf->kind);
    bprt_optimizer_config d;
    bprt_optimizer_init(&d, cf->kind);
    bprt_optimizer_apply(&spec, d.hyper);
    TestJit j;
    assert_true(test_jit(&j, tiny_bp, cf->kind, d.hyper));
    bprt_model *m = bprt_model_create(j.desc, 3);
    assert_non_null(m);
    int64_t n = j.desc->param_floats;
    double *p = calloc((size_t)n, sizeof *p), *s0 = calloc((size_t)n, sizeof *s0), *s1 = calloc((size_t)n, sizeof *s1);
    float *g = malloc(sizeof(float) * (size_t)n);
    for (int t = 1; t <= 6; t++) {
      float loss;
      /* the gradient at the current parameters, then the reference update from it */
      assert_int_equal(bprt_model_loss_and_grad(m, ROWS, in, &loss), 0);
      memcpy(g, bprt_model_grads(m), sizeof(float) * (size_t)n);
      for (int64_t i = 0; i < n; i++) p[i] = bprt_model_params(m)[i];
      reference_step(cf->kind, d.hyper, t, n, p, g, s0, s1);
      assert_int_equal(bprt_model_train_step(m, ROWS, in, &loss), 0);
      /* the same gradient (clipping scales the grads block in place, as clip_grad_norm_) */
      if (d.hyper[BPRT_H_CLIP] == 0) assert_memory_equal(g, bprt_model_grads(m), sizeof(float) * (size_t)n);
      for (int k = 0; k < j.desc->nparams; k++) {
        const bprt_param_desc *pd = &j.desc->params[k];
        int64_t cnt = 1;
        for (int r = 0; r < pd->rank; r++) cnt *= pd->dims[r];
        check_close(cf->set, t, pd->name, bprt_model_params(m) + pd->offset, p + pd->offset, cnt);
      }
    }
    free(p), free(s0), free(s1), free(g);
    bprt_model_destroy(m);
    test_jit_free(&j);
  }
}

/* ------------------------------------------------------------ 2. PyTorch fixtures */

static bool read_floats(FILE *f, const char *tag, int n, float *out) {
  char word[32];
  int cnt;
  if (fscanf(f, "%31s %d", word, &cnt) != 2 || strcmp(word, tag) || cnt != n) return false;
  for (int i = 0; i < n; i++)
    if (fscanf(f, "%f", &out[i]) != 1) return false;
  return true;
}

static void set_param(bprt_model *m, const char *name, const float *v, int64_t n) {
  int k = bprt_model_find_param(m, name);
  if (k < 0) fail_msg("no parameter %s", name);
  bprt_param_info info;
  assert_int_equal(bprt_model_param(m, k, &info), 0);
  assert_int_equal(info.numel, n);
  memcpy(info.values, v, sizeof(float) * (size_t)n);
}

static void test_pytorch_fixtures(void **state) {
  (void)state;
  const char *src = getenv("BPCC_SOURCE_DIR");
  char path[4096];
  snprintf(path, sizeof path, "%s/tests/train/fixtures/optim_fixtures.txt", src ? src : ".");
  FILE *f = fopen(path, "r");
  if (!f) fail_msg("cannot open %s", path);
  float x[32], W0[12], b0[3], yf[8];
  int32_t y[8];
  char word[32];
  int cnt;
  assert_true(read_floats(f, "x", 32, x));
  assert_true(fscanf(f, "%31s %d", word, &cnt) == 2 && !strcmp(word, "y") && cnt == 8);
  for (int i = 0; i < 8; i++) {
    assert_int_equal(fscanf(f, "%f", &yf[i]), 1);
    y[i] = (int32_t)yf[i];
  }
  assert_true(read_floats(f, "W0", 12, W0));
  assert_true(read_floats(f, "b0", 3, b0));
  const void *in[2] = {x, y};
  int configs = 0;
  while (fscanf(f, "%31s", word) == 1) {
    assert_string_equal(word, "config");
    char name[32];
    double h[BPRT_H__COUNT];
    assert_int_equal(fscanf(f, "%31s", name), 1);
    for (int i = 0; i < BPRT_H_STEP; i++) assert_int_equal(fscanf(f, "%lf", &h[i]), 1);
    h[BPRT_H_STEP] = 1;
    int kind = bprt_optimizer_lookup(name);
    assert_true(kind >= 0);
    TestJit j;
    assert_true(test_jit(&j, tiny_bp, kind, h));
    bprt_model *m = bprt_model_create(j.desc, 0);
    set_param(m, "z.W", W0, 12);
    set_param(m, "z.b", b0, 3);
    char what[64];
    snprintf(what, sizeof what, "pytorch %s #%d", name, configs + 1);
    for (int t = 1; t <= 5; t++) {
      int step;
      float W[12], b[3];
      double Wd[12], bd[3];
      assert_true(fscanf(f, "%31s %d", word, &step) == 2 && !strcmp(word, "step") && step == t);
      assert_true(read_floats(f, "W", 12, W));
      assert_true(read_floats(f, "b", 3, b));
      for (int i = 0; i < 12; i++) Wd[i] = W[i];
      for (int i = 0; i < 3; i++) bd[i] = b[i];
      float loss;
      assert_int_equal(bprt_model_train_step(m, 8, in, &loss), 0);
      bprt_param_info info;
      assert_int_equal(bprt_model_param(m, bprt_model_find_param(m, "z.W"), &info), 0);
      check_close(what, t, "z.W", info.values, Wd, 12);
      assert_int_equal(bprt_model_param(m, bprt_model_find_param(m, "z.b"), &info), 0);
      check_close(what, t, "z.b", info.values, bd, 3);
    }
    assert_true(fscanf(f, "%31s", word) == 1 && !strcmp(word, "end"));
    bprt_model_destroy(m);
    test_jit_free(&j);
    configs++;
  }
  fclose(f);
  assert_int_equal(configs, 10);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_update_formulas),
      cmocka_unit_test(test_pytorch_fixtures),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
