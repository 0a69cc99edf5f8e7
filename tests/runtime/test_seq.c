/* tests/runtime/test_seq.c — the runtime's pieces for sequence models (issue 14):
 *   - label inputs of rank 3 in the model object: int32 [B, T] storage, every value
 *     checked against the classes with its row and position, zeros [B, T] for a label
 *     input left NULL (forward), the memory accounted for them;
 *   - bprt_sample_logits: greedy, top-k, temperature, the seed, the distribution;
 *   - the steps loop's checkpoint state: bpcc.period and text_window round trip, and
 *     malformed values refused by key.
 * The model is a hand-written descriptor whose forward entry is C: out[b] = the sum of
 * the labels of row b, so that what the entry read is visible. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/train.h"
#include "testutil.h"

TEMP_DIR_FIXTURE

#define T 3
#define C 5

/* out[b, 0] = sum of tok[b, 0..T); loss = that sum over the batch (a number to look at) */
static void seq_forward(bprt_frame *f) {
  const int32_t *tok = f->inputs[0];
  for (int64_t b = 0; b < f->batch; b++) {
    float s = 0;
    for (int t = 0; t < T; t++) s += (float)tok[b * T + t];
    f->outputs[0][b] = s + f->params[0];
  }
  if (f->loss) *f->loss = f->outputs[0][0];
}

static void seq_grad(bprt_frame *f) {
  seq_forward(f);
  f->grads[0] = 1;
}

static void seq_update(bprt_frame *f) { f->params[0] -= (float)f->hyper[BPRT_H_LR] * f->grads[0]; }

static void seq_step(bprt_frame *f) {
  seq_grad(f);
  seq_update(f);
}

static const bprt_param_desc seq_params[] = {{.name = "w", .rank = 1, .dims = {1}, .offset = 0}};
static const bprt_tensor_desc seq_inputs[] = {
    {.name = "tok", .is_label = 1, .rank = 3, .dims = {BPRT_DIM_BATCH, T, C}},
    {.name = "nxt", .is_label = 1, .rank = 3, .dims = {BPRT_DIM_BATCH, T, C}},
};
static const bprt_tensor_desc seq_outputs[] = {{.name = "s", .rank = 2, .dims = {BPRT_DIM_BATCH, 1}}};
static const bprt_model_desc seq = {
    .model_name = "seq", .nparams = 1, .params = seq_params, .param_floats = 16, .ninputs = 2, .inputs = seq_inputs,
    .noutputs = 1, .outputs = seq_outputs, .optimizer = BPRT_OPT_SGD, .hyper = {[BPRT_H_LR] = 0.5, [BPRT_H_STEP] = 1},
    .opt_state_floats = 0, .ws_fixed = 64, .ws_per_batch = 8, .forward = seq_forward, .grad = seq_grad,
    .step = seq_step, .update = seq_update, .has_loss = 1};

static void test_rank3_labels(void **state) {
  (void)state;
  bprt_model *m = bprt_model_create(&seq, 1);
  assert_non_null(m);
  int32_t tok[2 * T] = {1, 2, 3, 4, 4, 0}, nxt[2 * T] = {0, 1, 2, 3, 4, 4};
  float out[2], loss = 0;
  float *outs[1] = {out};
  const void *in[2] = {tok, nxt};
  assert_int_equal(bprt_model_forward(m, 2, in, outs), BPRT_OK);
  assert_true(out[0] == 6 && out[1] == 8);   /* every position of both rows read */
  assert_int_equal(bprt_model_eval(m, 2, in, outs, &loss), BPRT_OK);
  /* a value at the last position of row 1, and a negative one: row and position named */
  nxt[5] = 5;
  assert_int_equal(bprt_model_loss_and_grad(m, 2, in, &loss), BPRT_E_LABEL);
  assert_string_equal(bprt_last_error(), "loss_and_grad: seq: label 5 of input 'nxt' at row 1, position 2 is outside [0, 5)");
  nxt[5] = 4;
  tok[1] = -1;
  assert_int_equal(bprt_model_forward(m, 2, in, outs), BPRT_E_LABEL);
  assert_string_equal(bprt_last_error(), "forward: seq: label -1 of input 'tok' at row 0, position 1 is outside [0, 5)");
  tok[1] = 2;
  /* forward with the second label input NULL: zeros of [B, T] stand in; with the first
   * NULL, the entry reads those zeros for every position (ASan: within the buffer) */
  const void *half[2] = {tok, NULL}, *none[2] = {NULL, NULL};
  assert_int_equal(bprt_model_forward(m, 2, half, outs), BPRT_OK);
  assert_int_equal(bprt_model_forward(m, 7, none, (float *[]){(float[7]){0}}), BPRT_OK);
  float big[7];
  assert_int_equal(bprt_model_forward(m, 7, none, (float *[]){big}), BPRT_OK);
  for (int b = 0; b < 7; b++) assert_true(big[b] == bprt_model_params(m)[0]);
  /* the zero label rows are in the memory: 7 rows (grown to 7) of T int32 */
  bprt_model_memory mem = bprt_model_memory_used(m), at = bprt_model_memory_at(&seq, 7);
  assert_int_equal(mem.total, at.total);
  assert_int_equal(at.other - bprt_model_memory_at(&seq, 0).other, 7 * T * 4);
  assert_int_equal(bprt_model_train_step(m, 2, in, &loss), BPRT_OK);
  bprt_model_destroy(m);
}

/* ------------------------------------------------------------------ sampling */

static void test_sample(void **state) {
  (void)state;
  float z[6] = {0.5f, 2.0f, -1.0f, 2.0f, 1.0f, 0.0f};
  /* greedy: the first largest, whatever the seed */
  for (uint64_t s = 0; s < 4; s++) {
    assert_int_equal(bprt_sample_logits(z, 6, 0, 6, s, s), 1);
    assert_int_equal(bprt_sample_logits(z, 6, 1.0, 1, s, s), 1);   /* top-1 */
  }
  /* top-2 of {2, 2}: only bytes 1 and 3, each about half the time */
  int64_t n1 = 0;
  for (uint64_t i = 0; i < 20000; i++) {
    int64_t b = bprt_sample_logits(z, 6, 1.0, 2, 7, i);
    assert_true(b == 1 || b == 3);
    n1 += b == 1;
  }
  assert_true(n1 > 9500 && n1 < 10500);
  /* the full softmax at t = 1 and t = 0.5: frequencies within 4 standard deviations */
  const double temps[2] = {1.0, 0.5};
  for (int k = 0; k < 2; k++) {
    double p[6], sum = 0;
    for (int j = 0; j < 6; j++) sum += p[j] = exp(z[j] / temps[k]);
    int64_t count[6] = {0};
    const int64_t N = 60000;
    for (int64_t i = 0; i < N; i++) count[bprt_sample_logits(z, 6, temps[k], 256, 11, (uint64_t)i)]++;
    for (int j = 0; j < 6; j++) {
      double q = p[j] / sum, sd = sqrt(q * (1 - q) / (double)N);
      assert_true(fabs((double)count[j] / (double)N - q) < 4 * sd + 1e-9);
    }
  }
  /* a pure function of (seed, index) */
  assert_int_equal(bprt_sample_logits(z, 6, 1.0, 6, 3, 9), bprt_sample_logits(z, 6, 1.0, 6, 3, 9));
  /* errors */
  z[4] = NAN;
  assert_int_equal(bprt_sample_logits(z, 6, 1.0, 6, 0, 0), -1);
  assert_string_equal(bprt_last_error(), "logit 4 is nan, not a finite number");
  z[4] = 1;
  assert_int_equal(bprt_sample_logits(z, 6, -1.0, 6, 0, 0), -1);
  assert_string_equal(bprt_last_error(), "bprt_sample_logits: bad arguments (v 6, temperature -1, top_k 6)");
  assert_int_equal(bprt_sample_logits(z, 6, 1.0, 0, 0, 0), -1);
}

/* ------------------------------------------------------ checkpoints of a run by steps */

static void test_steps_checkpoint(void **state) {
  (void)state;
  bprt_model *m = bprt_model_create(&seq, 1);
  bprt_model_set_step(m, 12);
  BprtTrainState st = {.epoch = 0, .step = 12, .seed = 4, .by_steps = true, .text = true, .text_windows = 192,
                       .period_rows = 32, .period_loss_sum = 70.25, .period_correct = 0, .period_scored = 0};
  bprt_schedule_init(&st.schedule, BPRT_SCHED_CONSTANT, 0.5);
  char path[4200];
  snprintf(path, sizeof path, "%s/ck.st", dir);
  assert_int_equal(bprt_checkpoint_save(m, path, &st), 0);
  BprtTrainState r;
  memset(&r, 0, sizeof r);
  bprt_schedule_init(&r.schedule, BPRT_SCHED_CONSTANT, 0.5);
  assert_int_equal(bprt_checkpoint_load(m, path, &r), 0);
  assert_true(r.by_steps && r.text);
  assert_int_equal(r.step, 12);
  assert_int_equal(r.text_windows, 192);
  assert_int_equal(r.period_rows, 32);
  assert_true(r.period_loss_sum == 70.25);
  /* a run by epochs writes neither key: its checkpoints are as before */
  st.by_steps = st.text = false;
  st.period_rows = 0;
  st.period_loss_sum = 0;
  assert_int_equal(bprt_checkpoint_save(m, path, &st), 0);
  assert_int_equal(bprt_checkpoint_load(m, path, &r), 0);
  assert_false(r.by_steps || r.text);
  assert_int_equal(r.text_windows, 0);
  /* malformed: refused by key */
  const char *bad[][3] = {
      {"bpcc.period", "rows=3 loss_sum=1", "metadata bpcc.period = 'rows=3 loss_sum=1' is malformed"},
      {"bpcc.period", "rows=0 loss_sum=2 correct=0 scored=0",
       "metadata bpcc.period = 'rows=0 loss_sum=2 correct=0 scored=0' is out of range"},
      {"bpcc.period", "rows=4 loss_sum=2 correct=3 scored=2",
       "metadata bpcc.period = 'rows=4 loss_sum=2 correct=3 scored=2' is out of range"},
      {"bpcc.rng", "philox4x32-10 seed=4 shuffle_epoch=0 shuffle_row=0 dropout_step=12 text_window=x",
       "metadata bpcc.rng = 'philox4x32-10 seed=4 shuffle_epoch=0 shuffle_row=0 dropout_step=12 text_window=x' is "
       "malformed"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    const char *keys[] = {"bpcc.epoch", "bpcc.step", "bpcc.seed", "bpcc.schedule", "bpcc.rng", "bpcc.period"};
    const char *vals[] = {"0", "12", "4", "constant lr=0.5 best=inf num_bad=0 cooldown_left=0",
                          "philox4x32-10 seed=4 shuffle_epoch=0 shuffle_row=0 dropout_step=12 text_window=192",
                          "rows=0 loss_sum=0 correct=0 scored=0"};
    vals[strcmp(bad[i][0], "bpcc.rng") == 0 ? 4 : 5] = bad[i][1];
    assert_int_equal(bprt_model_save_meta(m, path, keys, vals, 6), 0);
    assert_int_equal(bprt_checkpoint_load(m, path, &r), -1);
    char want[4800];
    snprintf(want, sizeof want, "%s: %s", path, bad[i][2]);
    assert_string_equal(bprt_last_error(), want);
  }
  bprt_model_destroy(m);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_rank3_labels),
      cmocka_unit_test(test_sample),
      cmocka_unit_test(test_steps_checkpoint),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
