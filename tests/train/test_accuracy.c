/* tests/train/test_accuracy.c — accuracy of models with float targets and a sigmoid
 * output (binary or multi-label): element-wise at threshold 0.5, the fraction of target
 * entries where (p >= 0.5) == (t >= 0.5), in bprt_evaluate, in the loop's epoch and
 * validation figures and in the CSV log, against a value computed by hand; and which
 * output the descriptor marks (desc->sigmoid_output). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>

#include "tests/train/jit.h"

static const char *multilabel_bp =
    "model ml(x: f32[B, 2], t: f32[B, 3]) {\n"
    "    output p = sigmoid(dense(x, 3))\n"
    "    loss binary_cross_entropy(p, t)\n"
    "}\n";

/* Four rows, W = [[1, -1, 0.5], [2, 1, -1]], b = [0, 0.25, -0.25]; p >= 0.5 exactly
 * where z = x W + b >= 0:
 *
 *   x            z                      p >= 0.5   t                t >= 0.5   equal
 *   (1, 0)       (1, -0.75, 0.25)       1 0 1      (1, 0, 0.6)      1 0 1      3
 *   (0, 1)       (2, 1.25, -1.25)       1 1 0      (0.9, 0, 0)      1 0 0      2
 *   (-1, 0.25)   (-0.5, 1.5, -1)        0 1 0      (0, 0.5, 1)      0 1 1      2
 *   (0.5, -1)    (-1.5, -1.25, 1)       0 0 1      (1, 0.2, 0.4)    1 0 0      1
 *
 * 8 of 12 entries: accuracy 2/3 (a target of exactly 0.5 counts as positive). */
static const float X[4][2] = {{1, 0}, {0, 1}, {-1, 0.25f}, {0.5f, -1}};
static const float T[4][3] = {{1, 0, 0.6f}, {0.9f, 0, 0}, {0, 0.5f, 1}, {1, 0.2f, 0.4f}};
static const float W[2][3] = {{1, -1, 0.5f}, {2, 1, -1}};
static const float Bias[3] = {0, 0.25f, -0.25f};

static BprtDataset *hand_data(void) {
  BprtDataset *d = bprt_dataset_new(4, 2, 3, "hand");
  assert_non_null(d);
  memcpy(d->x, X, sizeof X);
  memcpy(d->targets, T, sizeof T);
  return d;
}

static void set_weights(bprt_model *m) {
  const bprt_model_desc *d = bprt_model_get_desc(m);
  assert_int_equal(d->nparams, 2);
  for (int i = 0; i < 2; i++) {
    bprt_param_info pi;
    assert_int_equal(bprt_model_param(m, i, &pi), 0);
    if (pi.rank == 2) memcpy(pi.values, W, sizeof W);
    else memcpy(pi.values, Bias, sizeof Bias);
  }
}

static void test_eval_by_hand(void **state) {
  (void)state;
  TestJit j;
  assert_true(test_jit(&j, multilabel_bp, BPRT_OPT_SGD, NULL));
  assert_int_equal(j.desc->sigmoid_output, 1);   /* output 0, p */
  bprt_model *m = bprt_model_create(j.desc, 1);
  assert_non_null(m);
  set_weights(m);
  BprtDataset *d = hand_data();
  double loss, acc;
  for (int64_t batch = 1; batch <= 4; batch++) {   /* partial batches count the same */
    assert_int_equal(bprt_evaluate(m, d, batch, &loss, &acc), 0);
    assert_true(acc == 8.0 / 12.0);
    assert_true(isfinite(loss));
  }
  bprt_dataset_free(d);
  bprt_model_destroy(m);
  test_jit_free(&j);
}

/* The loop with a learning rate of 1e-30 (0 is refused): the two steps move the
 * hand-set parameters by about 1e-30, and no z, all at least 0.25 from 0, across 0. The
 * epoch's training accuracy, the validation accuracy and the CSV rows are 2/3. */
static void test_loop_by_hand(void **state) {
  (void)state;
  TestJit j;
  assert_true(test_jit(&j, multilabel_bp, BPRT_OPT_SGD, NULL));
  bprt_model *m = bprt_model_create(j.desc, 1);
  assert_non_null(m);
  set_weights(m);
  BprtDataset *d = hand_data();
  char *dir = test_tmpdir();
  char *log = test_path(dir, "log.csv");
  BprtTrainOptions o;
  bprt_train_options_defaults(&o);
  o.epochs = 1;
  o.batch = 2;
  o.quiet = true;
  o.log_path = log;
  o.log_steps = true;
  bprt_schedule_init(&o.schedule, BPRT_SCHED_CONSTANT, 1e-30);
  BprtTrainResult r;
  int rc = bprt_train(m, d, d, &o, &r);
  if (rc) fprintf(stderr, "bprt_train: %s\n", bprt_last_error());
  assert_int_equal(rc, 0);
  assert_true(r.last.accuracy == 8.0 / 12.0);
  assert_true(r.last.val_accuracy == 8.0 / 12.0);
  char *text = test_slurp(log, NULL);
  /* two steps of two rows (a shuffled pair each: 6 entries, whatever the pairs' sum),
   * then the epoch: accuracy 0.666666667 and val_accuracy the same */
  assert_non_null(strstr(text, "\nstep,1,1,1e-30,"));
  assert_non_null(strstr(text, "\nstep,1,2,1e-30,"));
  const char *ep = strstr(text, "\nepoch,1,2,1e-30,");
  assert_non_null(ep);
  char loss_s[32], vloss_s[32];
  double acc = 0, vacc = 0;
  assert_int_equal(sscanf(ep + 1, "epoch,1,2,1e-30,%31[^,],%lf,%31[^,],%lf,", loss_s, &acc, vloss_s, &vacc), 4);
  assert_true(fabs(acc - 2.0 / 3.0) < 1e-9 && fabs(vacc - 2.0 / 3.0) < 1e-9);
  assert_non_null(strstr(ep, ",0.666666667,"));
  free(text);
  unlink(log);
  rmdir(dir);
  free(log);
  free(dir);
  bprt_dataset_free(d);
  bprt_model_destroy(m);
  test_jit_free(&j);
}

/* Which output is scored: a sigmoid of the targets' shape, the first in output order;
 * none for a linear output (mse) or a sigmoid of another shape, and then no accuracy. */
static void test_which_output(void **state) {
  (void)state;
  static const struct {
    const char *text;
    int want;
  } cases[] = {
      {"model a(x: f32[B, 2], t: f32[B, 3]) {\n"
       "    output z = dense(x, 3)\n"
       "    output p = sigmoid(z)\n"
       "    loss binary_cross_entropy(p, t)\n"
       "}\n", 2},
      {"model b(x: f32[B, 2], t: f32[B, 1]) {\n"
       "    output p = sigmoid(dense(x, 1))\n"
       "    loss binary_cross_entropy(p, t)\n"
       "}\n", 1},
      {"model c(x: f32[B, 2], t: f32[B, 3]) {\n"
       "    output p = dense(x, 3)\n"
       "    loss mse(p, t)\n"
       "}\n", 0},
      {"model d(x: f32[B, 2], t: f32[B, 3]) {\n"
       "    output h = sigmoid(dense(x, 4))\n"
       "    output p = dense(h, 3)\n"
       "    loss mse(p, t)\n"
       "}\n", 0},
      {"model e(x: f32[B, 2], y: label[B, 3]) {\n"
       "    output p = sigmoid(dense(x, 3))\n"
       "    loss cross_entropy(p, y)\n"
       "}\n", 0},   /* labels: the argmax rule, not the threshold */
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    TestJit j;
    assert_true(test_jit(&j, cases[i].text, BPRT_OPT_SGD, NULL));
    assert_int_equal(j.desc->sigmoid_output, cases[i].want);
    if (j.desc->inputs[1].is_label) {
      test_jit_free(&j);
      continue;
    }
    bprt_model *m = bprt_model_create(j.desc, 1);
    assert_non_null(m);
    int64_t tw = j.desc->inputs[1].dims[1];
    BprtDataset *d = bprt_dataset_new(4, 2, tw, "hand");
    memcpy(d->x, X, sizeof X);
    for (int64_t k = 0; k < 4 * tw; k++) d->targets[k] = (float)(k % 2);
    double loss, acc;
    assert_int_equal(bprt_evaluate(m, d, 4, &loss, &acc), 0);
    assert_true(cases[i].want ? acc >= 0 && acc <= 1 : isnan(acc));
    bprt_dataset_free(d);
    bprt_model_destroy(m);
    test_jit_free(&j);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_eval_by_hand),
      cmocka_unit_test(test_loop_by_hand),
      cmocka_unit_test(test_which_output),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
