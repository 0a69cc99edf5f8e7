/* tests/train/test_accum.c — gradient accumulation and the gradient-ready hook (issue 16):
 * micro-batches weighted by rows sum to the gradient of the whole batch (1e-6 relative),
 * every kind of kernel that writes a gradient adds when frame->accumulate is set (bit for
 * bit: g + g), the hook reports every parameter once with its gradient complete, loss
 * scaling checks the sum once, and the loop's `accumulate` trains as one batch of N * b. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>

#include "tests/train/jit.h"

static const char *spiral_bp =
    "model spiral(x: f32[B, 2], y: label[B, 3]) {\n"
    "    h1     = tanh(dense_xavier(x, 32))\n"
    "    h2     = tanh(dense_xavier(h1, 32))\n"
    "    logits = dense_xavier(h2, 3)\n"
    "    output probs = softmax(logits)\n"
    "    loss softmax_cross_entropy(logits, y)\n"
    "}\n";

/* |a - b| <= tol * max(|a|, |b|, floor) elementwise; the largest relative error. */
static double rel_err(const float *a, const float *b, int64_t n, double floor_) {
  double worst = 0;
  for (int64_t i = 0; i < n; i++) {
    double s = fmax(fmax(fabs(a[i]), fabs(b[i])), floor_);
    double e = fabs((double)a[i] - (double)b[i]) / s;
    if (e > worst || isnan(e)) worst = isnan(e) ? INFINITY : e;
  }
  return worst;
}

/* ||a - b|| / ||a|| (2-norms): how far a summed gradient is from one computed at once
 * (f32 sums in another order differ elementwise most where they cancel). */
static double norm_err(const float *a, const float *b, int64_t n) {
  double num = 0, den = 0;
  for (int64_t i = 0; i < n; i++) {
    num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
    den += (double)a[i] * a[i];
  }
  return den > 0 ? sqrt(num / den) : sqrt(num);
}

/* Spiral rows [r0, r0 + n) as model inputs. */
typedef struct {
  const BprtDataset *d;
  int64_t r0;
  const void *in[2];
} Rows;
static const void *const *rows(Rows *r, const BprtDataset *d, int64_t r0) {
  r->d = d;
  r->r0 = r0;
  r->in[0] = d->x + r0 * d->nfeat;
  r->in[1] = d->labels + r0;
  return r->in;
}

/* The gradient of one batch of 48 rows against 2 micro-batches of 24 (weights 1/2) and
 * against 3 unequal ones (20, 16, 12 rows: weights by rows), within 1e-6 relative; then
 * steps of Adam from either, parameters within 1e-6 relative after 5 steps. */
static void test_micro_batches_equal_one_batch(void **state) {
  (void)state;
  TestJit j;
  assert_true(test_jit(&j, spiral_bp, BPRT_OPT_ADAM, NULL));
  BprtDataset *d = bprt_gen_spiral(48 * 5, 3, 0.2, 11);
  const int64_t n = j.desc->param_floats;
  bprt_model *one = bprt_model_create(j.desc, 3), *two = bprt_model_create(j.desc, 3),
             *three = bprt_model_create(j.desc, 3);
  assert_non_null(one);
  assert_non_null(two);
  assert_non_null(three);
  Rows r;
  const int64_t cut3[4] = {0, 20, 36, 48};
  for (int s = 0; s < 5; s++) {
    int64_t base = 48 * s;
    float l1, la, lb, lsum = 0;
    assert_int_equal(bprt_model_loss_and_grad(one, 48, rows(&r, d, base), &l1), BPRT_OK);
    assert_int_equal(bprt_model_accumulate_grad(two, 24, rows(&r, d, base), 0.5, 0, &la), BPRT_OK);
    assert_int_equal(bprt_model_accumulate_grad(two, 24, rows(&r, d, base + 24), 0.5, 1, &lb), BPRT_OK);
    assert_true(fabs(0.5 * (la + lb) - l1) <= 1e-6 * fabs(l1));
    for (int k = 0; k < 3; k++) {
      int64_t b = cut3[k + 1] - cut3[k];
      float l;
      assert_int_equal(bprt_model_accumulate_grad(three, b, rows(&r, d, base + cut3[k]), (double)b / 48.0, k > 0, &l),
                       BPRT_OK);
      lsum += (float)b / 48.0f * l;
    }
    assert_true(fabs(lsum - l1) <= 1e-6 * fabs(l1));
    double e2 = norm_err(bprt_model_grads(one), bprt_model_grads(two), n);
    double e3 = norm_err(bprt_model_grads(one), bprt_model_grads(three), n);
    if (e2 > 1e-6 || e3 > 1e-6) fail_msg("step %d: gradients differ by %g (2 micro-batches), %g (3)", s, e2, e3);
    assert_int_equal(bprt_model_update(one), BPRT_OK);
    assert_int_equal(bprt_model_update(two), BPRT_OK);
    assert_int_equal(bprt_model_update(three), BPRT_OK);
  }
  assert_int_equal(bprt_model_get_step(two), 5);
  double e2 = rel_err(bprt_model_params(one), bprt_model_params(two), n, 1e-3);
  double e3 = rel_err(bprt_model_params(one), bprt_model_params(three), n, 1e-3);
  if (e2 > 1e-6 || e3 > 1e-6) fail_msg("parameters after 5 steps differ by %g (2 micro-batches), %g (3)", e2, e3);
  /* weight 1, accumulate 0 is loss_and_grad, bit for bit */
  float l1, l2;
  assert_int_equal(bprt_model_loss_and_grad(one, 48, rows(&r, d, 0), &l1), BPRT_OK);
  assert_int_equal(bprt_model_accumulate_grad(two, 48, rows(&r, d, 0), 1.0, 0, &l2), BPRT_OK);
  assert_memory_equal(&l1, &l2, sizeof l1);
  /* misuse: errors, nothing run */
  assert_int_equal(bprt_model_accumulate_grad(two, 48, rows(&r, d, 0), 0.0, 0, NULL), BPRT_E_ARG);
  assert_int_equal(bprt_model_accumulate_grad(two, 48, rows(&r, d, 0), NAN, 0, NULL), BPRT_E_ARG);
  assert_int_equal(bprt_model_accumulate_grad(two, 48, rows(&r, d, 0), 1.0, 2, NULL), BPRT_E_ARG);
  assert_non_null(strstr(bprt_last_error(), "accumulate 2 must be 0 (overwrite) or 1 (add)"));
  assert_int_equal(bprt_model_accumulate_grad(NULL, 48, rows(&r, d, 0), 1.0, 0, NULL), BPRT_E_ARG);
  assert_int_equal(bprt_model_accumulate_grad(two, 0, rows(&r, d, 0), 1.0, 0, NULL), BPRT_E_BATCH);
  bprt_model_destroy(one);
  bprt_model_destroy(two);
  bprt_model_destroy(three);
  bprt_dataset_free(d);
  test_jit_free(&j);
}

/* ---------------------------------------------- every kernel that writes a gradient */

static char *slurp_example(const char *name) {
  const char *src = getenv("BPCC_SOURCE_DIR");
  char path[4096];
  snprintf(path, sizeof path, "%s/examples/%s", src && *src ? src : ".", name);
  FILE *fp = fopen(path, "rb");
  if (!fp) return NULL;
  fseek(fp, 0, SEEK_END);
  long sz = ftell(fp);
  fseek(fp, 0, SEEK_SET);
  char *t = malloc((size_t)sz + 1);
  size_t got = fread(t, 1, (size_t)sz, fp);
  t[got] = 0;
  fclose(fp);
  return t;
}

/* Inputs of `batch` rows for any model: floats in [-1, 1), labels in [0, classes). */
static void **make_inputs(const bprt_model_desc *d, int64_t batch) {
  void **in = calloc((size_t)d->ninputs, sizeof *in);
  uint64_t x = 88172645463325252ull;
  for (int i = 0; i < d->ninputs; i++) {
    const bprt_tensor_desc *t = &d->inputs[i];
    int64_t row = 1;
    int stored = t->is_label ? t->rank - 1 : t->rank;
    for (int k = 1; k < stored; k++) row *= t->dims[k];
    int64_t n = row * batch;
    if (t->is_label) {
      int32_t *l = aligned_alloc(64, (size_t)((n * 4 + 63) / 64 * 64));
      for (int64_t e = 0; e < n; e++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        l[e] = (int32_t)(x % (uint64_t)t->dims[t->rank - 1]);
      }
      in[i] = l;
    } else {
      float *f = aligned_alloc(64, (size_t)((n * 4 + 63) / 64 * 64));
      for (int64_t e = 0; e < n; e++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        f[e] = (float)((double)(x >> 11) / 9007199254740992.0 * 2 - 1);
      }
      in[i] = f;
    }
  }
  return in;
}

static int64_t h_numel(const bprt_param_desc *p) {
  int64_t n = 1;
  for (int i = 0; i < p->rank; i++) n *= p->dims[i];
  return n;
}

typedef struct {
  bprt_model *m;
  int64_t n;
  int32_t order[64];
  int count[64];
  int calls;
  bool complete;            /* each gradient, when reported, is its final value */
  float *at_report;         /* the grads block as each parameter was reported */
} Hook;

static void hook_fn(void *ctx, int32_t k) {
  Hook *h = ctx;
  if (k < 0 || k >= 64) {
    h->complete = false;
    return;
  }
  if (h->calls < 64) h->order[h->calls] = k;
  h->calls++;
  h->count[k]++;
  bprt_param_info pi;
  if (bprt_model_param(h->m, k, &pi) != BPRT_OK) h->complete = false;
  else memcpy(h->at_report + (pi.grad - bprt_model_grads(h->m)), pi.grad, sizeof(float) * (size_t)pi.numel);
}

/* For each example model: the gradient of a batch added to itself (accumulate 1, the same
 * rows: batch statistics and all are the same) is exactly twice it — so every kernel that
 * writes a gradient (products, bias reductions, convolutions, embeddings, layernorm,
 * batchnorm) adds when asked and overwrites when not; the hook reports each parameter
 * once per call, in the same order every call, and its gradient is final when reported. */
static void test_every_kernel_adds(void **state) {
  (void)state;
  const char *names[] = {"spiral.bp", "lenet.bp", "cnn_bn.bp", "attention_small.bp", "tinygpt.bp", "custom_loss.bp"};
  for (size_t e = 0; e < sizeof names / sizeof *names; e++) {
    char *text = slurp_example(names[e]);
    if (!text) fail_msg("examples/%s not found (BPCC_SOURCE_DIR)", names[e]);
    TestJit j;
    if (!test_jit(&j, text, BPRT_OPT_SGD, NULL)) fail_msg("%s does not compile", names[e]);
    const bprt_model_desc *d = j.desc;
    assert_true(d->nparams <= 64);
    int64_t B = 4, n = d->param_floats;
    void **in = make_inputs(d, B);
    bprt_model *m = bprt_model_create(d, 5);
    assert_non_null(m);
    Hook h;
    memset(&h, 0, sizeof h);
    h.m = m;
    h.complete = true;
    h.at_report = calloc((size_t)n + 1, sizeof(float));
    assert_int_equal(bprt_model_set_grad_ready(m, hook_fn, &h), BPRT_OK);
    float l1, l2;
    float *g = bprt_model_grads(m);
    for (int64_t i = 0; i < n; i++) g[i] = NAN;   /* overwritten, never read */
    assert_int_equal(bprt_model_accumulate_grad(m, B, (const void *const *)in, 1.0, 0, &l1), BPRT_OK);
    float *g1 = malloc(sizeof(float) * (size_t)n + 1);
    memcpy(g1, g, sizeof(float) * (size_t)n);
    int trainable = 0;
    for (int k = 0; k < d->nparams; k++) {
      trainable++;
      if (h.count[k] != 1) fail_msg("%s: parameter %s reported %d times", names[e], d->params[k].name, h.count[k]);
    }
    assert_int_equal(h.calls, trainable);
    for (int k = 0; k < d->nparams; k++) {
      bprt_param_info pi;
      assert_int_equal(bprt_model_param(m, k, &pi), BPRT_OK);
      if (memcmp(h.at_report + (pi.grad - g), pi.grad, sizeof(float) * (size_t)pi.numel) != 0)
        fail_msg("%s: the gradient of %s changed after it was reported ready", names[e], pi.name);
    }
    int32_t first_order[64];
    memcpy(first_order, h.order, sizeof first_order);
    for (int k = 0; k < d->nparams; k++)
      for (int64_t i = d->params[k].offset, end = i + h_numel(&d->params[k]); i < end; i++)
        if (isnan(g1[i])) fail_msg("%s: %s: gradient element %lld was not written", names[e], d->params[k].name,
                                   (long long)(i - d->params[k].offset));
    memset(h.count, 0, sizeof h.count);
    h.calls = 0;
    assert_int_equal(bprt_model_accumulate_grad(m, B, (const void *const *)in, 1.0, 1, &l2), BPRT_OK);
    assert_int_equal(h.calls, trainable);
    assert_memory_equal(first_order, h.order, sizeof(int32_t) * (size_t)trainable);
    assert_memory_equal(&l1, &l2, sizeof l1);
    for (int k = 0; k < d->nparams; k++) {
      const bprt_param_desc *pd = &d->params[k];
      for (int64_t i = pd->offset, end = i + h_numel(pd); i < end; i++)
        if (g[i] != 2 * g1[i])
          fail_msg("%s: %s[%lld]: accumulated %.9g, expected 2 x %.9g", names[e], pd->name,
                   (long long)(i - pd->offset), g[i], g1[i]);
      if (memcmp(h.at_report + pd->offset, g + pd->offset, sizeof(float) * (size_t)h_numel(pd)) != 0)
        fail_msg("%s: the accumulated gradient of %s changed after it was reported ready", names[e], pd->name);
    }
    /* the hook off: nothing reported */
    assert_int_equal(bprt_model_set_grad_ready(m, NULL, &h), BPRT_OK);
    h.calls = 0;
    assert_int_equal(bprt_model_train_step(m, B, (const void *const *)in, &l2), BPRT_OK);
    assert_int_equal(h.calls, 0);
    free(g1);
    free(h.at_report);
    for (int i = 0; i < d->ninputs; i++) free(in[i]);
    free(in);
    bprt_model_destroy(m);
    test_jit_free(&j);
    free(text);
  }
}

/* Loss scaling: the grads block holds the scaled sum until update, which unscales it and
 * checks it once: an accumulate 1 after loss_and_grad (unscaled gradients) scales the
 * block back first, and equals the unscaled model's sum within 1e-6; a non-finite
 * micro-batch skips the whole step. */
static void test_loss_scaled_accumulation(void **state) {
  (void)state;
  TestJit js, jp;
  assert_true(test_jit_scaled(&js, spiral_bp, BPRT_OPT_ADAM, NULL, BPRT_LOSS_SCALE_FIXED, 1024.0));
  assert_true(test_jit(&jp, spiral_bp, BPRT_OPT_ADAM, NULL));
  BprtDataset *d = bprt_gen_spiral(96, 3, 0.2, 5);
  bprt_model *s = bprt_model_create(js.desc, 9), *p = bprt_model_create(jp.desc, 9);
  const int64_t n = jp.desc->param_floats;
  Rows r;
  float l;
  for (int step = 0; step < 3; step++) {
    assert_int_equal(bprt_model_accumulate_grad(p, 16, rows(&r, d, 32 * step), 1.0, 0, &l), BPRT_OK);
    assert_int_equal(bprt_model_accumulate_grad(p, 16, rows(&r, d, 32 * step + 16), 1.0, 1, &l), BPRT_OK);
    assert_int_equal(bprt_model_loss_and_grad(s, 16, rows(&r, d, 32 * step), &l), BPRT_OK);
    assert_int_equal(bprt_model_accumulate_grad(s, 16, rows(&r, d, 32 * step + 16), 1.0, 1, &l), BPRT_OK);
    assert_int_equal(bprt_model_update(p), BPRT_OK);
    assert_int_equal(bprt_model_update(s), BPRT_OK);
    assert_int_equal(bprt_model_last_skipped(s), 0);
    double e = rel_err(bprt_model_grads(p), bprt_model_grads(s), n, 1e-3);
    if (e > 1e-6) fail_msg("step %d: unscaled sums differ by %g", step, e);
  }
  double e = rel_err(bprt_model_params(p), bprt_model_params(s), n, 1e-3);
  if (e > 1e-6) fail_msg("parameters differ by %g", e);
  /* a non-finite micro-batch skips the whole step */
  float xbad[2 * 16];
  int32_t ybad[16] = {0};
  for (int i = 0; i < 32; i++) xbad[i] = i == 3 ? INFINITY : 0.5f;
  const void *bad[2] = {xbad, ybad};
  float *before = malloc(sizeof(float) * (size_t)n);
  memcpy(before, bprt_model_params(s), sizeof(float) * (size_t)n);
  assert_int_equal(bprt_model_accumulate_grad(s, 16, rows(&r, d, 0), 0.5, 0, &l), BPRT_OK);
  assert_int_equal(bprt_model_accumulate_grad(s, 16, bad, 0.5, 1, &l), BPRT_OK);
  assert_int_equal(bprt_model_update(s), BPRT_OK);
  assert_int_equal(bprt_model_last_skipped(s), 1);
  assert_int_equal(bprt_model_get_step(s), 4);
  assert_memory_equal(before, bprt_model_params(s), sizeof(float) * (size_t)n);
  free(before);
  bprt_model_destroy(s);
  bprt_model_destroy(p);
  bprt_dataset_free(d);
  test_jit_free(&js);
  test_jit_free(&jp);
}

/* The loss-scaled sum equals the unscaled one: two steps, parameters within 1e-6. */
static void test_loss_scaled_equals_plain(void **state) {
  (void)state;
  TestJit js, jp;
  assert_true(test_jit_scaled(&js, spiral_bp, BPRT_OPT_ADAM, NULL, BPRT_LOSS_SCALE_DYNAMIC, 65536.0));
  assert_true(test_jit(&jp, spiral_bp, BPRT_OPT_ADAM, NULL));
  BprtDataset *d = bprt_gen_spiral(96, 3, 0.2, 5);
  bprt_model *s = bprt_model_create(js.desc, 9), *p = bprt_model_create(jp.desc, 9);
  Rows r;
  float l;
  for (int step = 0; step < 3; step++) {
    assert_int_equal(bprt_model_train_step(p, 32, rows(&r, d, 32 * step), &l), BPRT_OK);
    assert_int_equal(bprt_model_accumulate_grad(s, 20, rows(&r, d, 32 * step), 20.0 / 32, 0, &l), BPRT_OK);
    assert_int_equal(bprt_model_accumulate_grad(s, 12, rows(&r, d, 32 * step + 20), 12.0 / 32, 1, &l), BPRT_OK);
    assert_int_equal(bprt_model_update(s), BPRT_OK);
  }
  double e = rel_err(bprt_model_params(p), bprt_model_params(s), jp.desc->param_floats, 1e-3);
  if (e > 1e-6) fail_msg("loss-scaled accumulation differs by %g", e);
  bprt_model_destroy(s);
  bprt_model_destroy(p);
  bprt_dataset_free(d);
  test_jit_free(&js);
  test_jit_free(&jp);
}

/* bprt_microbatch: rows / n each, the first rows % n one more, in order. */
static void test_microbatch_split(void **state) {
  (void)state;
  int64_t s, c;
  const int64_t want[][3] = {{100, 4, 25}, {10, 4, 3}, {3, 4, 1}};
  for (int t = 0; t < 3; t++) {
    int64_t rows_ = want[t][0], n = want[t][1], next = 0, total = 0;
    for (int64_t j = 0; j < n; j++) {
      bprt_microbatch(rows_, n, j, &s, &c);
      assert_int_equal(s, next);
      next = s + c;
      total += c;
    }
    assert_int_equal(total, rows_);
    bprt_microbatch(rows_, n, 0, &s, &c);
    assert_int_equal(c, want[t][2]);
  }
  bprt_microbatch(10, 4, 1, &s, &c);   /* 3 3 2 2 */
  assert_int_equal(s, 3);
  assert_int_equal(c, 3);
  bprt_microbatch(10, 4, 3, &s, &c);
  assert_int_equal(s, 8);
  assert_int_equal(c, 2);
  bprt_microbatch(3, 4, 3, &s, &c);    /* 1 1 1 0 */
  assert_int_equal(s, 3);
  assert_int_equal(c, 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_microbatch_split),
      cmocka_unit_test(test_micro_batches_equal_one_batch),
      cmocka_unit_test(test_every_kernel_adds),
      cmocka_unit_test(test_loss_scaled_accumulation),
      cmocka_unit_test(test_loss_scaled_equals_plain),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
