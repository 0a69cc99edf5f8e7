/* tests/train/test_schedule.c — learning-rate schedules against their formulas, and the
 * `NAME(k = v, ...)` parser of --optimizer / --schedule with its exact messages. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <string.h>

#include "runtime/train.h"

#define PI 3.14159265358979323846

static void test_constant(void **state) {
  (void)state;
  BprtSchedule s;
  bprt_schedule_init(&s, BPRT_SCHED_CONSTANT, 0.05);
  assert_int_equal(bprt_schedule_check(&s), 0);
  for (int e = 0; e < 20; e++) {
    assert_true(bprt_schedule_lr(&s, e) == 0.05);
    bprt_schedule_epoch_end(&s, e, 1.0);
    assert_true(s.lr == 0.05);
  }
}

/* StepLR: base * gamma^floor(e / step_size). */
static void test_step(void **state) {
  (void)state;
  BprtSchedule s;
  s.base_lr = 0.1;
  assert_int_equal(bprt_schedule_parse("step(step_size = 3, gamma = 0.5)", &s, NULL), 0);
  assert_int_equal(s.kind, BPRT_SCHED_STEP);
  assert_int_equal(s.step_size, 3);
  assert_true(s.gamma == 0.5);
  assert_true(s.base_lr == 0.1);
  for (int e = 0; e < 12; e++) {
    double want = 0.1 * pow(0.5, e / 3);
    assert_true(fabs(bprt_schedule_lr(&s, e) - want) <= 1e-15 * want);
    bprt_schedule_epoch_end(&s, e, 0);
    double next = 0.1 * pow(0.5, (e + 1) / 3);
    assert_true(fabs(s.lr - next) <= 1e-15 * next);
  }
  assert_true(fabs(bprt_schedule_lr(&s, 2) - 0.1) < 1e-17);
  assert_true(fabs(bprt_schedule_lr(&s, 3) - 0.05) < 1e-17);
}

/* CosineAnnealingLR: eta_min + (base - eta_min)(1 + cos(pi e / T)) / 2, after a linear
 * warm-up base (e + 1) / W. */
static void test_cosine(void **state) {
  (void)state;
  BprtSchedule s;
  s.base_lr = 1e-2;
  bool tset = false;
  assert_int_equal(bprt_schedule_parse("cosine(t_max = 10, eta_min = 1e-4)", &s, &tset), 0);
  assert_true(tset);
  assert_int_equal(bprt_schedule_check(&s), 0);
  for (int e = 0; e < 14; e++) {
    int t = e > 10 ? 10 : e;
    double want = 1e-4 + (1e-2 - 1e-4) * (1 + cos(PI * t / 10)) / 2;
    assert_true(fabs(bprt_schedule_lr(&s, e) - want) <= 1e-14);
  }
  assert_true(fabs(bprt_schedule_lr(&s, 0) - 1e-2) < 1e-16);
  assert_true(fabs(bprt_schedule_lr(&s, 10) - 1e-4) < 1e-16);
  assert_true(fabs(bprt_schedule_lr(&s, 5) - (1e-4 + (1e-2 - 1e-4) / 2)) < 1e-16);

  /* warm-up of 2 epochs inside t_max = 6: 0.5b, b, then cosine over 4 epochs */
  s.base_lr = 1.0;
  assert_int_equal(bprt_schedule_parse("cosine(t_max=6,warmup=2)", &s, &tset), 0);
  assert_int_equal(bprt_schedule_check(&s), 0);
  double want[] = {0.5, 1.0, 1.0, (1 + cos(PI / 4)) / 2, 0.5, (1 + cos(3 * PI / 4)) / 2, 0, 0};
  for (int e = 0; e < 8; e++) assert_true(fabs(bprt_schedule_lr(&s, e) - want[e]) < 1e-15);

  /* PyTorch's spelling T_max, and positional arguments in PyTorch's order */
  assert_int_equal(bprt_schedule_parse("cosine(8, 0.5)", &s, &tset), 0);
  assert_true(tset && s.t_max == 8 && s.eta_min == 0.5);
  assert_int_equal(bprt_schedule_parse("cosine(T_max = 9)", &s, &tset), 0);
  assert_true(tset && s.t_max == 9);
  assert_int_equal(bprt_schedule_parse("step(4, gamma = 0.3)", &s, &tset), 0);
  assert_true(s.step_size == 4 && s.gamma == 0.3);
  assert_int_equal(bprt_schedule_parse("plateau(0.5, 3)", &s, &tset), 0);
  assert_true(s.factor == 0.5 && s.patience == 3);

  /* t_max not given: the caller fills in --epochs */
  assert_int_equal(bprt_schedule_parse("cosine", &s, &tset), 0);
  assert_false(tset);
  assert_int_equal(s.t_max, 0);
  assert_int_equal(bprt_schedule_check(&s), -1);
  assert_string_equal(bprt_last_error(), "schedule cosine: t_max 0 must be >= 1");
}

/* ReduceLROnPlateau(mode=min, factor, patience, threshold=1e-4 rel, cooldown, min_lr),
 * traced by hand from torch/optim/lr_scheduler.py. */
static void test_plateau(void **state) {
  (void)state;
  BprtSchedule s;
  s.base_lr = 1.0;
  assert_int_equal(bprt_schedule_parse("plateau(patience = 2, factor = 0.5)", &s, NULL), 0);
  assert_int_equal(bprt_schedule_check(&s), 0);
  /* losses: improve, improve, flat x3 -> reduce after the third bad epoch (> patience) */
  double loss[] = {1.0, 0.9, 0.9, 0.95, 0.9, 0.9, 0.9, 0.89999, 0.5, 0.6, 0.6, 0.6};
  double lr[] = {1, 1, 1, 1, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.25, 0.125};
  for (int e = 0; e < 12; e++) {
    assert_true(bprt_schedule_lr(&s, e) == (e == 0 ? 1.0 : lr[e - 1]));
    bprt_schedule_epoch_end(&s, e, loss[e]);
    assert_true(s.lr == lr[e]);
  }
  /* 0.89999 is not below 0.9 * (1 - 1e-4): a bad epoch, as in PyTorch */
  /* cooldown: after a reduction, `cooldown` epochs count no bad epochs */
  assert_int_equal(bprt_schedule_parse("plateau(patience=0, factor=0.1, cooldown=2, min_lr=0.005)", &s, NULL), 0);
  double l2[] = {1, 1, 1, 1, 1, 1, 1};
  double r2[] = {1, 0.1, 0.1, 0.1, 0.01, 0.01, 0.01};
  for (int e = 0; e < 7; e++) {
    bprt_schedule_epoch_end(&s, e, l2[e]);
    assert_true(fabs(s.lr - r2[e]) < 1e-15);
  }
  /* min_lr floor */
  bprt_schedule_epoch_end(&s, 7, 1);
  assert_true(fabs(s.lr - 0.005) < 1e-15);
  /* NaN is never an improvement */
  BprtSchedule p;
  s.base_lr = 1.0;
  p.base_lr = 1.0;
  assert_int_equal(bprt_schedule_parse("plateau(patience=0)", &p, NULL), 0);
  bprt_schedule_epoch_end(&p, 0, NAN);
  assert_true(fabs(p.lr - 0.1) < 1e-15);
}

static void expect_sched_error(const char *spec, const char *msg) {
  BprtSchedule s;
  s.base_lr = 0.1;
  assert_int_equal(bprt_schedule_parse(spec, &s, NULL), -1);
  assert_string_equal(bprt_last_error(), msg);
}

static void test_schedule_errors(void **state) {
  (void)state;
  expect_sched_error("linear", "--schedule 'linear': unknown schedule (known: constant, step, cosine, plateau) at column 1");
  expect_sched_error("step(gamma = 0.5, patience = 3)", "--schedule 'step(gamma = 0.5, patience = 3)': unknown argument 'patience' for schedule step at column 19");
  expect_sched_error("step(step_size = 2.5)", "--schedule 'step(step_size = 2.5)': step_size must be an integer at column 18");
  expect_sched_error("step(step_size 2)", "--schedule 'step(step_size 2)': expected '=' at column 16");
  expect_sched_error("step(gamma = 0.5", "--schedule 'step(gamma = 0.5': expected ',' or ')' at column 17");
  expect_sched_error("step(gamma = nan)", "--schedule 'step(gamma = nan)': expected a number, true or false at column 14");
  expect_sched_error("step(gamma 2)", "--schedule 'step(gamma 2)': expected '=' at column 12");
  expect_sched_error("step() x", "--schedule 'step() x': unexpected text at column 8");
  expect_sched_error("step(gamma = 0.5, 3)", "--schedule 'step(gamma = 0.5, 3)': a positional argument after a keyword argument at column 19");
  expect_sched_error("step(1, 0.5, 3)", "--schedule 'step(1, 0.5, 3)': too many positional arguments; name them, as in lr = 0.01 at column 14");
  expect_sched_error("step(gamma = 1e999)", "--schedule 'step(gamma = 1e999)': number out of range at column 14");
  BprtSchedule s;
  bprt_schedule_init(&s, BPRT_SCHED_STEP, 0.1);
  s.step_size = 0;
  assert_int_equal(bprt_schedule_check(&s), -1);
  assert_string_equal(bprt_last_error(), "schedule step: step_size 0 must be >= 1");
  bprt_schedule_init(&s, BPRT_SCHED_PLATEAU, 0.1);
  s.factor = 1.5;
  assert_int_equal(bprt_schedule_check(&s), -1);
  assert_string_equal(bprt_last_error(), "schedule plateau: factor 1.5 must be in (0, 1)");
  bprt_schedule_init(&s, BPRT_SCHED_CONSTANT, -1);
  assert_int_equal(bprt_schedule_check(&s), -1);
  assert_string_equal(bprt_last_error(), "learning rate -1: must be a positive finite number");
}

static void test_optimizer_parse(void **state) {
  (void)state;
  BprtOptSpec o;
  assert_int_equal(bprt_optimizer_parse("adam(lr = 1e-3, betas = (0.8, 0.99), eps=1e-6, weight_decay = 0.1)", &o), 0);
  assert_int_equal(o.kind, BPRT_OPT_ADAM);
  assert_true(o.set[BPRT_H_LR] && o.hyper[BPRT_H_LR] == 1e-3);
  assert_true(o.set[BPRT_H_BETA1] && o.hyper[BPRT_H_BETA1] == 0.8);
  assert_true(o.set[BPRT_H_BETA2] && o.hyper[BPRT_H_BETA2] == 0.99);
  assert_true(o.set[BPRT_H_EPS] && o.hyper[BPRT_H_EPS] == 1e-6);
  assert_true(o.set[BPRT_H_WEIGHT_DECAY] && o.hyper[BPRT_H_WEIGHT_DECAY] == 0.1);
  assert_false(o.set[BPRT_H_MOMENTUM]);
  double hyper[BPRT_H__COUNT] = {0};
  hyper[BPRT_H_ALPHA] = 7;
  bprt_optimizer_apply(&o, hyper);
  assert_true(hyper[BPRT_H_LR] == 1e-3 && hyper[BPRT_H_ALPHA] == 7 && hyper[BPRT_H_BETA2] == 0.99);

  assert_int_equal(bprt_optimizer_parse("sgd", &o), 0);
  assert_int_equal(o.kind, BPRT_OPT_SGD);
  for (int i = 0; i < BPRT_H__COUNT; i++) assert_false(o.set[i]);
  assert_int_equal(bprt_optimizer_parse("sgd(momentum = 0.9, nesterov = true, clip = 1)", &o), 0);
  assert_true(o.hyper[BPRT_H_NESTEROV] == 1 && o.hyper[BPRT_H_CLIP] == 1);
  assert_int_equal(bprt_optimizer_parse("momentum(nesterov = true)", &o), 0);
  assert_int_equal(o.kind, BPRT_OPT_MOMENTUM);
  assert_int_equal(bprt_optimizer_parse(" rmsprop ( alpha = 0.9 , momentum = 0.5 , centered = false ) ", &o), 0);
  assert_int_equal(o.kind, BPRT_OPT_RMSPROP);
  assert_true(o.hyper[BPRT_H_ALPHA] == 0.9);
  assert_int_equal(bprt_optimizer_parse("adagrad(lr_decay = 0.01, initial_accumulator_value = 0.1)", &o), 0);
  assert_true(o.hyper[BPRT_H_LR_DECAY] == 0.01 && o.hyper[BPRT_H_INITIAL_ACC] == 0.1);
  assert_int_equal(bprt_optimizer_parse("sgd(0.5, momentum = 0.1)", &o), 0);
  assert_true(o.hyper[BPRT_H_LR] == 0.5 && o.hyper[BPRT_H_MOMENTUM] == 0.1);
  assert_int_equal(bprt_optimizer_parse("adamw()", &o), 0);
  assert_int_equal(o.kind, BPRT_OPT_ADAMW);
}

static void expect_opt_error(const char *spec, const char *msg) {
  BprtOptSpec o;
  assert_int_equal(bprt_optimizer_parse(spec, &o), -1);
  assert_string_equal(bprt_last_error(), msg);
}

static void test_optimizer_errors(void **state) {
  (void)state;
  expect_opt_error("lbfgs(lr = 1)", "--optimizer 'lbfgs(lr = 1)': unknown optimizer (known: sgd, momentum, adagrad, rmsprop, adam, adamw) at column 1");
  expect_opt_error("adam(momentum = 0.9)", "--optimizer 'adam(momentum = 0.9)': adam takes no argument 'momentum' at column 6");
  expect_opt_error("adam(beta1 = 0.9)", "--optimizer 'adam(beta1 = 0.9)': unknown argument 'beta1' for adam at column 6");
  expect_opt_error("adam(betas = 0.9)", "--optimizer 'adam(betas = 0.9)': betas must be a pair (beta1, beta2) at column 14");
  expect_opt_error("adam(amsgrad = true)", "--optimizer 'adam(amsgrad = true)': amsgrad = true is not supported by bpcc's update kernels at column 16");
  expect_opt_error("sgd(lr = -1)", "--optimizer 'sgd(lr = -1)': lr must be >= 0 at column 10");
  expect_opt_error("sgd(nesterov = 1)", "--optimizer 'sgd(nesterov = 1)': expected true or false at column 16");
  expect_opt_error("sgd(lr = true)", "--optimizer 'sgd(lr = true)': expected a number at column 10");
  expect_opt_error("sgd(nesterov = true)", "--optimizer 'sgd(nesterov = true)': nesterov = true requires a momentum > 0 and zero dampening");
  expect_opt_error("sgd(momentum = -0.5)", "--optimizer 'sgd(momentum = -0.5)': momentum must be >= 0 at column 16");
  expect_opt_error("adam(betas = (0.9, 1))", "--optimizer 'adam(betas = (0.9, 1))': betas must be in [0, 1) at column 14");
  expect_opt_error("", "--optimizer '': expected a name at column 1");
  expect_opt_error("adam(lr = 1e-3,)", "--optimizer 'adam(lr = 1e-3,)': expected an argument at column 16");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_constant),        cmocka_unit_test(test_step),
      cmocka_unit_test(test_cosine),          cmocka_unit_test(test_plateau),
      cmocka_unit_test(test_schedule_errors), cmocka_unit_test(test_optimizer_parse),
      cmocka_unit_test(test_optimizer_errors),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
