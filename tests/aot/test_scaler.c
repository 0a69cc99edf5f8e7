/* tests/aot/test_scaler.c — the loss scaler of the model object (runtime/model.c) over a
 * hand-written descriptor whose grad entry does what a generated one compiled with loss
 * scaling does: it seeds its "backward" with frame->hyper[BPRT_H_LOSS_SCALE], so the
 * gradient it writes is scale * g. An f16-like overflow is emulated: a scaled gradient
 * above 65504 (f16's largest finite value) is written as +inf. The update entry is SGD
 * and records the step count t it was given (Adam's bias correction reads it).
 *
 * It checks GradScaler's state machine (2^16; x0.5 on a step with non-finite gradients;
 * x2 after 2000 finite steps in a row, not past f32's range), that a skipped step
 * leaves parameters and optimizer state bit-identical and does not advance t, the
 * unscaled gradients, a fixed scale, the checkpoint round trip of the scaler's state
 * and the refusal of bad scaler metadata. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime/model.h"
#include "runtime/runtime.h"

#define PARAM_FLOATS 16

/* The true gradient of the next grad call (g[i] = base * (i + 1)), or NaN everywhere. */
static double grad_base = 0.25;
static bool grad_nan;
static double last_t;   /* hyper[BPRT_H_STEP] of the last update */

static void s_forward(bprt_frame *f) {
  for (int64_t r = 0; r < f->batch; r++) f->outputs[0][r] = f->params[0];
}

static void s_grad(bprt_frame *f) {
  s_forward(f);
  double scale = f->hyper[BPRT_H_LOSS_SCALE];
  for (int i = 0; i < PARAM_FLOATS; i++) {
    double g = grad_base * (i + 1) * scale;
    f->grads[i] = grad_nan ? NAN : fabs(g) > 65504 ? (float)INFINITY : (float)g;
  }
  *f->loss = 1.5f;   /* the loss is computed unscaled */
}

static void s_update(bprt_frame *f) {
  last_t = f->hyper[BPRT_H_STEP];
  float lr = (float)f->hyper[BPRT_H_LR];
  for (int i = 0; i < PARAM_FLOATS; i++) {
    f->opt_state[i] += f->grads[i];
    f->params[i] -= lr * f->grads[i];
  }
}

static void s_step(bprt_frame *f) {
  s_grad(f);
  s_update(f);
}

static const bprt_param_desc s_params[] = {
    {.name = "w", .rank = 1, .dims = {PARAM_FLOATS}, .offset = 0, .init = BPRT_INIT_NORMAL, .init_a = 1, .trainable = 1},
};
static const bprt_tensor_desc s_inputs[] = {{.name = "x", .rank = 2, .dims = {BPRT_DIM_BATCH, 1}}};
static const bprt_tensor_desc s_outputs[] = {{.name = "y", .rank = 2, .dims = {BPRT_DIM_BATCH, 1}}};

#define S_DESC(NAME, MODE, SCALE)                                                                                \
  {.model_name = NAME, .nparams = 1, .params = s_params, .param_floats = PARAM_FLOATS, .ninputs = 1,             \
   .inputs = s_inputs, .noutputs = 1, .outputs = s_outputs, .optimizer = BPRT_OPT_SGD,                          \
   .hyper = {[BPRT_H_LR] = 0.125, [BPRT_H_STEP] = 1, [BPRT_H_LOSS_SCALE] = 1}, .opt_state_floats = PARAM_FLOATS, \
   .ws_fixed = 64, .forward = s_forward, .grad = s_grad, .step = s_step, .update = s_update, .has_loss = 1,       \
   .loss_scale_mode = MODE, .loss_scale = SCALE}

static const bprt_model_desc dyn = S_DESC("s", BPRT_LOSS_SCALE_DYNAMIC, BPRT_LOSS_SCALE_INIT);
static const bprt_model_desc fixed3 = S_DESC("s", BPRT_LOSS_SCALE_FIXED, 3.0);
static const bprt_model_desc off = S_DESC("s", BPRT_LOSS_SCALE_OFF, 1.0);

static const float xrow[4] = {1, 2, 3, 4};
static const void *const inputs[1] = {xrow};

static bprt_loss_scaler scaler(const bprt_model *m) {
  bprt_loss_scaler s;
  assert_int_equal(bprt_model_scaler(m, &s), BPRT_OK);
  return s;
}

static void step(bprt_model *m) {
  float loss = 0;
  assert_int_equal(bprt_model_train_step(m, 4, inputs, &loss), BPRT_OK);
  assert_true(loss == 1.5f);
}

static int setup(void **state) {
  (void)state;
  grad_base = 0.25;
  grad_nan = false;
  last_t = 0;
  return 0;
}

/* The gradients the model leaves are the unscaled ones, exactly (a power of two). */
static void test_unscaled_gradients(void **state) {
  (void)state;
  bprt_model *m = bprt_model_create(&dyn, 1);
  assert_non_null(m);
  assert_true(bprt_model_loss_scale(m) == 65536.0);
  grad_base = 1.0 / 1024;   /* 65536 * 16 / 1024 = 1024: no overflow */
  float loss;
  assert_int_equal(bprt_model_loss_and_grad(m, 4, inputs, &loss), BPRT_OK);
  for (int i = 0; i < PARAM_FLOATS; i++) assert_true(bprt_model_grads(m)[i] == (float)((i + 1) / 1024.0));
  double h;
  assert_int_equal(bprt_model_get_hyper(m, BPRT_H_LOSS_SCALE, &h), BPRT_OK);
  assert_true(h == 65536.0);
  bprt_model_destroy(m);
}

/* x2 after 2000 finite steps in a row, not before; the counter restarts. */
static void test_growth(void **state) {
  (void)state;
  bprt_model *m = bprt_model_create(&dyn, 1);
  grad_base = 1e-6;
  for (int k = 0; k < BPRT_LOSS_SCALE_GROWTH_INTERVAL - 1; k++) step(m);
  bprt_loss_scaler s = scaler(m);
  assert_int_equal(s.mode, BPRT_LOSS_SCALE_DYNAMIC);
  assert_true(s.scale == 65536.0);
  assert_int_equal(s.good_steps, 1999);
  assert_int_equal(s.skipped, 0);
  step(m);
  s = scaler(m);
  assert_true(s.scale == 131072.0);
  assert_int_equal(s.good_steps, 0);
  assert_int_equal(bprt_model_get_step(m), 2000);
  assert_true(last_t == 2000);
  bprt_model_destroy(m);
}

/* A step with non-finite gradients: skipped (parameters and optimizer state bit for bit
 * as they were, the update's t not advanced), the scale halved, the counter reset; the
 * step is counted. */
static void test_backoff_and_skip(void **state) {
  (void)state;
  bprt_model *m = bprt_model_create(&dyn, 1);
  grad_base = 1e-6;
  for (int k = 0; k < 5; k++) step(m);
  assert_int_equal(scaler(m).good_steps, 5);
  assert_true(last_t == 5);
  float p[PARAM_FLOATS], o[PARAM_FLOATS];
  memcpy(p, bprt_model_params(m), sizeof p);
  memcpy(o, bprt_model_opt_state(m), sizeof o);
  grad_nan = true;
  step(m);
  assert_memory_equal(bprt_model_params(m), p, sizeof p);
  assert_memory_equal(bprt_model_opt_state(m), o, sizeof o);
  bprt_loss_scaler s = scaler(m);
  assert_true(s.scale == 32768.0);
  assert_int_equal(s.good_steps, 0);
  assert_int_equal(s.skipped, 1);
  assert_true(s.last_skipped);
  assert_int_equal(bprt_model_last_skipped(m), 1);
  assert_int_equal(bprt_model_skipped_steps(m), 1);
  assert_int_equal(bprt_model_get_step(m), 6);
  assert_true(last_t == 5);   /* no update ran */
  grad_nan = false;
  step(m);
  assert_true(last_t == 6);   /* t = step + 1 - skipped: the skipped step did not count */
  assert_int_equal(bprt_model_last_skipped(m), 0);
  assert_memory_not_equal(bprt_model_params(m), p, sizeof p);
  /* loss_and_grad + update is train_step: the update after bad gradients is skipped */
  grad_nan = true;
  float loss;
  assert_int_equal(bprt_model_loss_and_grad(m, 4, inputs, &loss), BPRT_OK);
  memcpy(p, bprt_model_params(m), sizeof p);
  assert_int_equal(bprt_model_update(m), BPRT_OK);
  assert_memory_equal(bprt_model_params(m), p, sizeof p);
  assert_true(scaler(m).scale == 16384.0);
  assert_int_equal(scaler(m).skipped, 2);
  /* set_step below the skipped steps: they are some of the steps, so they follow */
  assert_int_equal(bprt_model_set_step(m, 1), BPRT_OK);
  assert_int_equal(scaler(m).skipped, 1);
  grad_nan = false;
  step(m);
  assert_true(last_t == 1);
  bprt_model_destroy(m);
}

/* An overflow at 2^16 (the emulated f16 range): the scale backs off, a step skipped
 * each time, until the scaled gradients fit; then the steps run. */
static void test_backoff_until_it_fits(void **state) {
  (void)state;
  bprt_model *m = bprt_model_create(&dyn, 1);
  grad_base = 0.5;   /* the largest scaled gradient is 8 * scale: fits below 65504 from 2^12 */
  for (int k = 0; k < 4; k++) {
    step(m);
    assert_int_equal(bprt_model_last_skipped(m), 1);
  }
  assert_true(bprt_model_loss_scale(m) == 4096.0);
  step(m);
  assert_int_equal(bprt_model_last_skipped(m), 0);
  assert_int_equal(scaler(m).skipped, 4);
  assert_true(last_t == 1);   /* the first update that ran */
  bprt_model_destroy(m);
}

/* Growth stops where f32 would overflow: the generated code reads the scale as f32. */
static void test_growth_within_f32(void **state) {
  (void)state;
  bprt_model_desc big = dyn;
  big.loss_scale = ldexp(1.0, 127);
  bprt_model *m = bprt_model_create(&big, 1);
  assert_non_null(m);
  grad_base = 0;   /* 0 * 2^127: finite */
  for (int k = 0; k < BPRT_LOSS_SCALE_GROWTH_INTERVAL; k++) step(m);
  bprt_loss_scaler s = scaler(m);
  assert_true(s.scale == ldexp(1.0, 127));
  assert_int_equal(s.good_steps, 0);
  bprt_model_destroy(m);
}

/* A fixed scale never changes; a scale that is not a power of two is divided out. */
static void test_fixed(void **state) {
  (void)state;
  bprt_model *m = bprt_model_create(&fixed3, 1);
  assert_true(bprt_model_loss_scale(m) == 3.0);
  grad_base = 0.1;
  float loss;
  assert_int_equal(bprt_model_loss_and_grad(m, 4, inputs, &loss), BPRT_OK);
  for (int i = 0; i < PARAM_FLOATS; i++) {
    float scaled = (float)(0.1 * (i + 1) * 3.0);
    assert_true(bprt_model_grads(m)[i] == (float)((double)scaled / 3.0));
  }
  assert_int_equal(bprt_model_update(m), BPRT_OK);
  grad_nan = true;
  step(m);
  assert_int_equal(bprt_model_last_skipped(m), 1);
  bprt_loss_scaler s = scaler(m);
  assert_int_equal(s.mode, BPRT_LOSS_SCALE_FIXED);
  assert_true(s.scale == 3.0);
  assert_int_equal(s.skipped, 1);
  grad_nan = false;
  for (int k = 0; k < BPRT_LOSS_SCALE_GROWTH_INTERVAL; k++) step(m);
  assert_true(bprt_model_loss_scale(m) == 3.0);
  bprt_model_destroy(m);
}

/* Without loss scaling nothing is checked or skipped and the scale is 1. */
static void test_off(void **state) {
  (void)state;
  bprt_model *m = bprt_model_create(&off, 1);
  grad_nan = true;
  step(m);
  assert_int_equal(bprt_model_last_skipped(m), 0);
  assert_true(bprt_model_loss_scale(m) == 1.0);
  assert_true(isnan(bprt_model_params(m)[0]));
  bprt_model_destroy(m);
}

static char *tmp_path(const char *name) {
  static char buf[4][4096];
  static int k;
  const char *base = getenv("TMPDIR");
  char *p = buf[k++ % 4];
  snprintf(p, 4096, "%s/bpcc-scaler-%d-%s", base && *base ? base : "/tmp", (int)getpid(), name);
  return p;
}

/* The scaler's state survives save and load; a fixed scale is the model's, not the
 * file's; bad metadata is refused with the key and the file named. */
static void test_checkpoint(void **state) {
  (void)state;
  const char *path = tmp_path("ck.safetensors");
  bprt_model *m = bprt_model_create(&dyn, 1);
  grad_base = 1e-6;
  for (int k = 0; k < 7; k++) step(m);
  grad_nan = true;
  step(m);
  grad_nan = false;
  for (int k = 0; k < 3; k++) step(m);
  assert_int_equal(bprt_model_save(m, path), BPRT_OK);
  bprt_model *r = bprt_model_create(&dyn, 2);
  assert_int_equal(bprt_model_load(r, path), BPRT_OK);
  bprt_loss_scaler a = scaler(m), b = scaler(r);
  assert_true(a.scale == 32768.0 && b.scale == a.scale);
  assert_int_equal(b.good_steps, 3);
  assert_int_equal(b.skipped, 1);
  assert_int_equal(bprt_model_get_step(r), 11);
  /* both go on bit for bit */
  step(m);
  step(r);
  assert_memory_equal(bprt_model_params(m), bprt_model_params(r), PARAM_FLOATS * sizeof(float));
  assert_true(last_t == 11);
  bprt_model *f = bprt_model_create(&fixed3, 1);
  assert_int_equal(bprt_model_load(f, path), BPRT_OK);
  assert_true(bprt_model_loss_scale(f) == 3.0);
  assert_int_equal(scaler(f).skipped, 1);

  /* bad values, written as extra metadata of a model without loss scaling (which writes
   * none of these keys itself) */
  bprt_model *o = bprt_model_create(&off, 1);
  for (int k = 0; k < 3; k++) step(o);
  static const struct {
    const char *key, *value, *msg;
  } bad[] = {
      {"loss_scale", "0", "metadata 'loss_scale' is not a positive scale within f32's range: '0'"},
      {"loss_scale", "1e39", "metadata 'loss_scale' is not a positive scale within f32's range: '1e39'"},
      {"loss_scale", "nan", "metadata 'loss_scale' is not a positive scale within f32's range: 'nan'"},
      {"loss_scale", "2x", "metadata 'loss_scale' is not a positive scale within f32's range: '2x'"},
      {"loss_scale_good_steps", "2000", "metadata 'loss_scale_good_steps' is not a count below 2000: '2000'"},
      {"loss_scale_good_steps", "-1", "metadata 'loss_scale_good_steps' is not a count below 2000: '-1'"},
      {"skipped_steps", "4", "metadata 'skipped_steps' is not a count of at most the 3 steps: '4'"},
      {"skipped_steps", "x", "metadata 'skipped_steps' is not a count of at most the 3 steps: 'x'"},
  };
  const char *badpath = tmp_path("bad.safetensors");
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    const char *k[1] = {bad[i].key}, *v[1] = {bad[i].value};
    assert_int_equal(bprt_model_save_meta(o, badpath, k, v, 1), BPRT_OK);
    bprt_loss_scaler before = scaler(r);
    int rc = bprt_model_load(r, badpath);
    assert_int_equal(rc, BPRT_E_CHECKPOINT);
    char want[512];
    snprintf(want, sizeof want, "s: load: %s: %s", badpath, bad[i].msg);
    assert_string_equal(bprt_last_error(), want);
    bprt_loss_scaler after = scaler(r);
    assert_true(after.scale == before.scale && after.skipped == before.skipped && after.good_steps == before.good_steps);
  }
  /* a checkpoint without the keys (a run without loss scaling): the initial scale */
  assert_int_equal(bprt_model_save(o, badpath), BPRT_OK);
  assert_int_equal(bprt_model_load(r, badpath), BPRT_OK);
  b = scaler(r);
  assert_true(b.scale == 65536.0);
  assert_int_equal(b.skipped, 0);
  assert_int_equal(b.good_steps, 0);
  unlink(path);
  unlink(badpath);
  bprt_model_destroy(m);
  bprt_model_destroy(r);
  bprt_model_destroy(f);
  bprt_model_destroy(o);
}

/* A descriptor with a bad mode or scale is refused at create. */
static void test_bad_descriptor(void **state) {
  (void)state;
  bprt_model_desc d = dyn;
  d.loss_scale_mode = 7;
  assert_null(bprt_model_create(&d, 1));
  assert_string_equal(bprt_last_error(), "s: malformed model descriptor (loss scale mode 7, scale 65536)");
  d = fixed3;
  d.loss_scale = 0;
  assert_null(bprt_model_create(&d, 1));
  assert_string_equal(bprt_last_error(), "s: malformed model descriptor (loss scale mode 1, scale 0)");
}

/* The vocabulary: --loss-scale's and the train block's values. */
static void test_parse(void **state) {
  (void)state;
  int mode;
  double scale;
  assert_null(bprt_loss_scale_parse("dynamic", &mode, &scale));
  assert_int_equal(mode, BPRT_LOSS_SCALE_DYNAMIC);
  assert_true(scale == 65536.0);
  assert_null(bprt_loss_scale_parse("off", &mode, &scale));
  assert_int_equal(mode, BPRT_LOSS_SCALE_OFF);
  assert_null(bprt_loss_scale_parse("1024", &mode, &scale));
  assert_int_equal(mode, BPRT_LOSS_SCALE_FIXED);
  assert_true(scale == 1024.0);
  assert_null(bprt_loss_scale_parse("0.5", &mode, &scale));
  assert_true(scale == 0.5);
  const char *not_one = "must be 'dynamic', 'off' or a positive finite number";
  const char *range = "must lie within f32's normal range (1.2e-38 to 3.4e38)";
  assert_string_equal(bprt_loss_scale_parse("0", &mode, &scale), not_one);
  assert_string_equal(bprt_loss_scale_parse("-2", &mode, &scale), not_one);
  assert_string_equal(bprt_loss_scale_parse("inf", &mode, &scale), not_one);
  assert_string_equal(bprt_loss_scale_parse("nan", &mode, &scale), not_one);
  assert_string_equal(bprt_loss_scale_parse("", &mode, &scale), not_one);
  assert_string_equal(bprt_loss_scale_parse(" 2", &mode, &scale), not_one);
  assert_string_equal(bprt_loss_scale_parse("2k", &mode, &scale), not_one);
  assert_string_equal(bprt_loss_scale_parse("Dynamic", &mode, &scale), not_one);
  assert_string_equal(bprt_loss_scale_parse("1e39", &mode, &scale), range);
  assert_string_equal(bprt_loss_scale_parse("1e-39", &mode, &scale), range);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup(test_unscaled_gradients, setup), cmocka_unit_test_setup(test_growth, setup),
      cmocka_unit_test_setup(test_backoff_and_skip, setup),   cmocka_unit_test_setup(test_backoff_until_it_fits, setup),
      cmocka_unit_test_setup(test_growth_within_f32, setup),  cmocka_unit_test_setup(test_fixed, setup),
      cmocka_unit_test_setup(test_off, setup),                cmocka_unit_test_setup(test_checkpoint, setup),
      cmocka_unit_test_setup(test_bad_descriptor, setup),     cmocka_unit_test_setup(test_parse, setup),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
