/* tests/aot/test_model.c — the generic model object (runtime/model.c) over a
 * hand-written descriptor: a 3 -> 2 softmax regression whose forward, grad and step are
 * C functions with the generated code's signature. It checks initialization from the
 * seed, argument checking (every misuse is an error code and an exact message), the
 * step count, hyperparameters, parameter enumeration, checkpoints (round trip,
 * bit-exact resume, and every kind of bad file leaves the model unchanged) and
 * allocation failures. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime/model.h"
#include "runtime/runtime.h"
#include "tests/runtime/testutil.h"

/* ------------------------------------------------------------ the tiny model
 * logits[B,2] = x[B,3] W[3,2] + b[2];  loss = mean_r -log softmax(logits_r)[y_r]
 * dlogits = (softmax - onehot(y)) / B;  dW = x^T dlogits;  db = sum_r dlogits
 * step: sgd with momentum, buf = t == 1 ? g : momentum buf + g;  p -= lr buf */
#define W_OFF 0
#define B_OFF 16
#define PARAM_FLOATS 32

typedef struct {
  const float *x;
  const float *params;
  float *out;
} RowCtx;

static void rows_task(void *ctx, int64_t i0, int64_t i1, int32_t tid) {
  (void)tid;
  RowCtx *c = ctx;
  for (int64_t r = i0; r < i1; r++)
    for (int j = 0; j < 2; j++) {
      float s = c->params[B_OFF + j];
      for (int k = 0; k < 3; k++) s += c->x[r * 3 + k] * c->params[W_OFF + k * 2 + j];
      c->out[r * 2 + j] = s;
    }
}

static void tiny_forward(bprt_frame *f) {
  RowCtx c = {f->inputs[0], f->params, f->outputs[0]};
  f->parallel_for(f->pool, f->batch, 4, rows_task, &c);
}

static void tiny_grad(bprt_frame *f) {
  tiny_forward(f);
  const float *x = f->inputs[0];
  const int32_t *y = f->inputs[1];
  /* probabilities in the workspace: per batch 2 floats after a fixed 64 bytes */
  float *p = (float *)(f->workspace + 64);
  double loss = 0;
  for (int i = 0; i < PARAM_FLOATS; i++) f->grads[i] = 0;
  for (int64_t r = 0; r < f->batch; r++) {
    const float *z = f->outputs[0] + r * 2;
    float m = z[0] > z[1] ? z[0] : z[1];
    float e0 = expf(z[0] - m), e1 = expf(z[1] - m);
    p[r * 2] = e0 / (e0 + e1);
    p[r * 2 + 1] = e1 / (e0 + e1);
    loss -= log(p[r * 2 + y[r]]);
    for (int j = 0; j < 2; j++) {
      float d = (p[r * 2 + j] - (j == y[r])) / (float)f->batch;
      f->grads[B_OFF + j] += d;
      for (int k = 0; k < 3; k++) f->grads[W_OFF + k * 2 + j] += x[r * 3 + k] * d;
    }
  }
  *f->loss = (float)(loss / (double)f->batch);
}

static void tiny_step(bprt_frame *f) {
  tiny_grad(f);
  float lr = (float)f->hyper[BPRT_H_LR], mom = (float)f->hyper[BPRT_H_MOMENTUM];
  bool first = f->hyper[BPRT_H_STEP] == 1.0;
  for (int i = 0; i < PARAM_FLOATS; i++) {
    f->opt_state[i] = first ? f->grads[i] : mom * f->opt_state[i] + f->grads[i];
    f->params[i] -= lr * f->opt_state[i];
  }
}

static const bprt_param_desc tiny_params[] = {
    {.name = "W", .rank = 2, .dims = {3, 2}, .offset = W_OFF, .init = BPRT_INIT_XAVIER_UNIFORM, .loc = "tiny.bp:2:5"},
    {.name = "b", .rank = 1, .dims = {2}, .offset = B_OFF, .init = BPRT_INIT_NORMAL, .init_a = 0.5},
};
static const bprt_tensor_desc tiny_inputs[] = {
    {.name = "x", .rank = 2, .dims = {BPRT_DIM_BATCH, 3}},
    {.name = "y", .is_label = 1, .rank = 2, .dims = {BPRT_DIM_BATCH, 2}},
};
static const bprt_tensor_desc tiny_outputs[] = {
    {.name = "logits", .rank = 2, .dims = {BPRT_DIM_BATCH, 2}},
};

#define TINY_DESC(NAME, GRAD, STEP)                                                                   \
  {.model_name = NAME, .nparams = 2, .params = tiny_params, .param_floats = PARAM_FLOATS, .ninputs = 2, \
   .inputs = tiny_inputs, .noutputs = 1, .outputs = tiny_outputs, .optimizer = BPRT_OPT_MOMENTUM,       \
   .hyper = {[BPRT_H_LR] = 0.5, [BPRT_H_MOMENTUM] = 0.9, [BPRT_H_STEP] = 1}, .opt_state_floats = PARAM_FLOATS, \
   .ws_fixed = 64, .ws_per_batch = 8, .forward = tiny_forward, .grad = GRAD, .step = STEP}

static const bprt_model_desc tiny = TINY_DESC("tiny", tiny_grad, tiny_step);
static const bprt_model_desc other = TINY_DESC("other", tiny_grad, tiny_step);
static const bprt_model_desc noloss = TINY_DESC("noloss", NULL, NULL);

/* A separable problem: y = x0 + x1 - x2 > 0. */
static void make_batch(int64_t n, float *x, int32_t *y) {
  for (int64_t r = 0; r < n; r++) {
    for (int k = 0; k < 3; k++) x[r * 3 + k] = (float)sin(0.7 * (double)(r * 3 + k) + 1.0);
    y[r] = x[r * 3] + x[r * 3 + 1] - x[r * 3 + 2] > 0;
  }
}

static void assert_error(int rc, int code, const char *msg) {
  assert_int_equal(rc, code);
  assert_string_equal(bprt_last_error(), msg);
}

/* ------------------------------------------------------------------ tests */

static void test_create_init(void **state) {
  (void)state;
  bprt_model *a = bprt_model_create(&tiny, 42), *b = bprt_model_create(&tiny, 42), *c = bprt_model_create(&tiny, 43);
  assert_non_null(a);
  assert_non_null(b);
  assert_non_null(c);
  float w[6], bias[2];
  assert_int_equal(bprt_init_tensor(w, 2, (int64_t[]){3, 2}, BPRT_INIT_XAVIER_UNIFORM, 0, 0, 42, 0), 0);
  assert_int_equal(bprt_init_tensor(bias, 1, (int64_t[]){2}, BPRT_INIT_NORMAL, 0.5, 0, 42, 1), 0);
  assert_memory_equal(bprt_model_params(a) + W_OFF, w, sizeof w);
  assert_memory_equal(bprt_model_params(a) + B_OFF, bias, sizeof bias);
  assert_memory_equal(bprt_model_params(a), bprt_model_params(b), PARAM_FLOATS * sizeof(float));
  assert_memory_not_equal(bprt_model_params(a), bprt_model_params(c), 6 * sizeof(float));
  assert_true(((uintptr_t)bprt_model_params(a) & 63) == 0);
  assert_true(((uintptr_t)bprt_model_grads(a) & 63) == 0);
  assert_true(((uintptr_t)bprt_model_opt_state(a) & 63) == 0);
  for (int i = 0; i < PARAM_FLOATS; i++) assert_true(bprt_model_grads(a)[i] == 0 && bprt_model_opt_state(a)[i] == 0);
  assert_int_equal(bprt_model_get_step(a), 0);
  assert_ptr_equal(bprt_model_get_desc(a), &tiny);
  /* the values do not depend on the thread count */
  for (int threads = 1; threads <= 4; threads *= 2) {
    assert_int_equal(bprt_set_threads(threads), 0);
    bprt_model *t = bprt_model_create(&tiny, 42);
    assert_memory_equal(bprt_model_params(a), bprt_model_params(t), PARAM_FLOATS * sizeof(float));
    bprt_model_destroy(t);
  }
  assert_int_equal(bprt_set_threads(0), 0);
  bprt_model_destroy(a);
  bprt_model_destroy(b);
  bprt_model_destroy(c);
  bprt_model_destroy(NULL);
}

static void test_bad_descriptor(void **state) {
  (void)state;
  assert_null(bprt_model_create(NULL, 1));
  assert_string_equal(bprt_last_error(), "model create: NULL descriptor");
  bprt_param_desc bad_p[2];
  memcpy(bad_p, tiny_params, sizeof bad_p);
  bad_p[1].offset = 31;
  bprt_model_desc d = tiny;
  d.params = bad_p;
  assert_null(bprt_model_create(&d, 1));
  assert_string_equal(bprt_last_error(), "tiny: parameter 'b' lies outside the params block");
  memcpy(bad_p, tiny_params, sizeof bad_p);
  bad_p[0].init = 99;
  assert_null(bprt_model_create(&d, 1));
  assert_string_equal(bprt_last_error(), "tiny: parameter 'W' at tiny.bp:2:5: init: unknown initializer kind 99");
  d = tiny;
  d.forward = NULL;
  assert_null(bprt_model_create(&d, 1));
  assert_string_equal(bprt_last_error(), "tiny: the descriptor has no forward function");
}

/* A model whose products run on AMX tiles: created where Linux grants the tile state
 * (this process asks, as bprt_model_create does), refused with the reason elsewhere. */
static void test_uses_amx(void **state) {
  (void)state;
  bprt_model_desc d = tiny;
  d.uses_amx = 1;
  bprt_model *m = bprt_model_create(&d, 1);
  if (bprt_amx_request()) {
    assert_non_null(m);
    bprt_model_destroy(m);
  } else {
    assert_null(m);
    assert_string_equal(bprt_last_error(), "tiny: the model's products run on AMX tiles and this process may not use "
                                           "them (the kernel refused arch_prctl ARCH_REQ_XCOMP_PERM); rebuild it with "
                                           "BPCC_GEMM_BF16=dpbf16 or convert");
  }
}

static void test_params(void **state) {
  (void)state;
  bprt_model *m = bprt_model_create(&tiny, 7);
  bprt_param_info pi;
  assert_int_equal(bprt_model_param(m, 0, &pi), BPRT_OK);
  assert_string_equal(pi.name, "W");
  assert_int_equal(pi.rank, 2);
  assert_int_equal(pi.dims[0], 3);
  assert_int_equal(pi.dims[1], 2);
  assert_int_equal(pi.numel, 6);
  assert_ptr_equal(pi.values, bprt_model_params(m) + W_OFF);
  assert_ptr_equal(pi.grad, bprt_model_grads(m) + W_OFF);
  assert_int_equal(bprt_model_param(m, 1, &pi), BPRT_OK);
  assert_string_equal(pi.name, "b");
  assert_int_equal(pi.numel, 2);
  assert_ptr_equal(pi.values, bprt_model_params(m) + B_OFF);
  assert_error(bprt_model_param(m, 2, &pi), BPRT_E_RANGE, "tiny: parameter index 2 is out of range [0, 2)");
  assert_error(bprt_model_param(m, -1, &pi), BPRT_E_RANGE, "tiny: parameter index -1 is out of range [0, 2)");
  assert_error(bprt_model_param(m, 0, NULL), BPRT_E_ARG, "param: NULL info pointer");
  assert_error(bprt_model_param(NULL, 0, &pi), BPRT_E_ARG, "param: NULL model");
  assert_int_equal(bprt_model_find_param(m, "b"), 1);
  assert_int_equal(bprt_model_find_param(m, "c"), -1);
  assert_int_equal(bprt_model_opt_slots(&tiny), 1);
  assert_string_equal(bprt_model_opt_slot_name(&tiny, 0), "momentum_buffer");
  assert_null(bprt_model_opt_slot_name(&tiny, 1));
  bprt_model_destroy(m);
}

static void test_forward(void **state) {
  (void)state;
  bprt_model *m = bprt_model_create(&tiny, 3);
  const int64_t sizes[] = {1, 7, 100, 33, 1000};
  for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
    int64_t n = sizes[s];
    float *x = malloc(sizeof(float) * 3 * (size_t)n), *out = malloc(sizeof(float) * 2 * (size_t)n);
    int32_t *y = malloc(sizeof(int32_t) * (size_t)n);
    make_batch(n, x, y);
    const void *in[2] = {x, NULL};   /* forward needs no labels */
    float *outs[1] = {out};
    assert_int_equal(bprt_model_forward(m, n, in, outs), BPRT_OK);
    const float *p = bprt_model_params(m);
    for (int64_t r = 0; r < n; r++)
      for (int j = 0; j < 2; j++) {
        float e = p[B_OFF + j];
        for (int k = 0; k < 3; k++) e += x[r * 3 + k] * p[W_OFF + k * 2 + j];
        assert_true(out[r * 2 + j] == e);
      }
    free(x);
    free(out);
    free(y);
  }
  bprt_model_destroy(m);
}

/* bprt_model_forward_discard: the forward entry runs with frame->outputs NULL (the
 * generated code then copies no output out), its inputs checked as forward's. */
static float *const *seen_outputs;
static int64_t seen_batch;
static float seen_x;
static void probe_forward(bprt_frame *f) {
  seen_outputs = f->outputs, seen_batch = f->batch;
  seen_x = ((const float *)f->inputs[0])[3];
}
static const bprt_model_desc probe = {
    .model_name = "probe", .nparams = 2, .params = tiny_params, .param_floats = PARAM_FLOATS, .ninputs = 2,
    .inputs = tiny_inputs, .noutputs = 1, .outputs = tiny_outputs, .optimizer = BPRT_OPT_SGD,
    .hyper = {[BPRT_H_LR] = 0.5, [BPRT_H_STEP] = 1}, .ws_fixed = 64, .ws_per_batch = 8, .forward = probe_forward};

static void test_forward_discard(void **state) {
  (void)state;
  bprt_model *m = bprt_model_create(&probe, 3);
  assert_non_null(m);
  float x[15], out[10];
  int32_t y[5];
  make_batch(5, x, y);
  const void *in[2] = {x, NULL};
  seen_outputs = (float *const *)in, seen_batch = 0;
  assert_int_equal(bprt_model_forward_discard(m, 5, in), BPRT_OK);
  assert_null(seen_outputs);
  assert_int_equal(seen_batch, 5);
  assert_true(seen_x == x[3]);
  float *outs[1] = {out};
  assert_int_equal(bprt_model_forward(m, 5, in, outs), BPRT_OK);   /* forward passes them */
  assert_ptr_equal(seen_outputs, outs);
  assert_error(bprt_model_forward_discard(NULL, 5, in), BPRT_E_ARG, "forward: NULL model");
  assert_error(bprt_model_forward_discard(m, 0, in), BPRT_E_BATCH, "forward: probe: batch must be >= 1, got 0");
  assert_error(bprt_model_forward_discard(m, 5, NULL), BPRT_E_ARG, "forward: probe: inputs is NULL");
  const void *no_x[2] = {NULL, y};
  assert_error(bprt_model_forward_discard(m, 5, no_x), BPRT_E_ARG, "forward: probe: input 0 ('x') is NULL");
  y[1] = 2;
  const void *bad_y[2] = {x, y};
  assert_error(bprt_model_forward_discard(m, 5, bad_y), BPRT_E_LABEL,
               "forward: probe: label 2 of input 'y' at row 1 is outside [0, 2)");
  bprt_model_destroy(m);
}

static void test_misuse(void **state) {
  (void)state;
  bprt_model *m = bprt_model_create(&tiny, 3);
  float x[12], out[8], loss = -1;
  int32_t y[4];
  make_batch(4, x, y);
  const void *in[2] = {x, y};
  float *outs[1] = {out};
  assert_error(bprt_model_forward(NULL, 4, in, outs), BPRT_E_ARG, "forward: NULL model");
  assert_error(bprt_model_forward(m, 0, in, outs), BPRT_E_BATCH, "forward: tiny: batch must be >= 1, got 0");
  assert_error(bprt_model_forward(m, -3, in, outs), BPRT_E_BATCH, "forward: tiny: batch must be >= 1, got -3");
  assert_error(bprt_model_forward(m, INT64_C(1) << 50, in, outs), BPRT_E_BATCH,
               "forward: tiny: batch 1125899906842624 is too large (at most 91625968981)");
  assert_error(bprt_model_forward(m, 4, NULL, outs), BPRT_E_ARG, "forward: tiny: inputs is NULL");
  assert_error(bprt_model_forward(m, 4, in, NULL), BPRT_E_ARG, "tiny: forward: outputs is NULL");
  float *no_out[1] = {NULL};
  assert_error(bprt_model_forward(m, 4, in, no_out), BPRT_E_ARG, "tiny: forward: output 0 ('logits') is NULL");
  const void *no_x[2] = {NULL, y};
  assert_error(bprt_model_forward(m, 4, no_x, outs), BPRT_E_ARG, "forward: tiny: input 0 ('x') is NULL");
  const void *no_y[2] = {x, NULL};
  assert_error(bprt_model_train_step(m, 4, no_y, &loss), BPRT_E_ARG, "train_step: tiny: input 1 ('y') is NULL");
  assert_error(bprt_model_loss_and_grad(NULL, 4, in, &loss), BPRT_E_ARG, "loss_and_grad: NULL model");
  assert_error(bprt_model_train_step(m, 0, in, &loss), BPRT_E_BATCH, "train_step: tiny: batch must be >= 1, got 0");
  y[2] = 2;
  assert_error(bprt_model_train_step(m, 4, in, &loss), BPRT_E_LABEL,
               "train_step: tiny: label 2 of input 'y' at row 2 is outside [0, 2)");
  y[2] = -1;
  assert_error(bprt_model_loss_and_grad(m, 4, in, &loss), BPRT_E_LABEL,
               "loss_and_grad: tiny: label -1 of input 'y' at row 2 is outside [0, 2)");
  assert_error(bprt_model_forward(m, 4, in, outs), BPRT_E_LABEL,
               "forward: tiny: label -1 of input 'y' at row 2 is outside [0, 2)");
  assert_int_equal(bprt_model_get_step(m), 0);
  assert_true(loss == -1);
  assert_error(bprt_model_set_hyper(m, BPRT_H__COUNT, 1), BPRT_E_RANGE,
               "tiny: hyperparameter index 14 is out of range [0, 12) (step is set with set_step; the loss scale is "
               "the loss scaler's)");
  assert_error(bprt_model_set_hyper(m, BPRT_H_STEP, 1), BPRT_E_RANGE,
               "tiny: hyperparameter index 12 is out of range [0, 12) (step is set with set_step; the loss scale is "
               "the loss scaler's)");
  assert_error(bprt_model_set_hyper(m, BPRT_H_LOSS_SCALE, 2), BPRT_E_RANGE,
               "tiny: hyperparameter index 13 is out of range [0, 12) (step is set with set_step; the loss scale is "
               "the loss scaler's)");
  assert_error(bprt_model_set_lr(m, NAN), BPRT_E_ARG, "tiny: lr must be finite, got nan");
  assert_error(bprt_model_set_lr(m, -1), BPRT_E_ARG, "tiny: lr must be >= 0, got -1");
  assert_error(bprt_model_set_lr(NULL, 1), BPRT_E_ARG, "set_hyper: NULL model");
  /* What torch.optim's constructors refuse (Adam, SGD, RMSprop, Adagrad: betas outside
   * [0, 1), negative lr, eps, weight_decay, momentum, alpha, lr_decay,
   * initial_accumulator_value), refused by name, the model unchanged. */
  static const struct {
    const char *name;
    double v;
    const char *msg;
  } refused[] = {
      {"beta1", 1.0, "tiny: beta1 must be in [0, 1), got 1"},
      {"beta2", -0.1, "tiny: beta2 must be in [0, 1), got -0.1"},
      {"eps", -1e-8, "tiny: eps must be >= 0, got -1e-08"},
      {"weight_decay", -1, "tiny: weight_decay must be >= 0, got -1"},
      {"momentum", -0.5, "tiny: momentum must be >= 0, got -0.5"},
      {"alpha", -1, "tiny: alpha must be >= 0, got -1"},
      {"lr_decay", -1, "tiny: lr_decay must be >= 0, got -1"},
      {"initial_accumulator_value", -1, "tiny: initial_accumulator_value must be >= 0, got -1"},
      {"lr", INFINITY, "tiny: lr must be finite, got inf"},
      {"nesterov", 2, "tiny: nesterov must be true or false (1 or 0), got 2"},
  };
  double before[BPRT_H__COUNT];
  for (int h = 0; h < BPRT_H__COUNT; h++) bprt_model_get_hyper(m, h, &before[h]);
  for (size_t i = 0; i < sizeof refused / sizeof *refused; i++)
    assert_error(bprt_model_set_hyper_name(m, refused[i].name, refused[i].v), BPRT_E_ARG, refused[i].msg);
  /* SGD: "Nesterov momentum requires a momentum and zero dampening" */
  assert_int_equal(bprt_model_set_hyper_name(m, "dampening", 0.5), BPRT_OK);
  assert_error(bprt_model_set_hyper_name(m, "nesterov", 1), BPRT_E_ARG,
               "tiny: nesterov 1: nesterov = true requires a momentum > 0 and zero dampening (momentum)");
  assert_int_equal(bprt_model_set_hyper_name(m, "dampening", 0), BPRT_OK);
  assert_int_equal(bprt_model_set_hyper_name(m, "nesterov", 1), BPRT_OK);
  assert_error(bprt_model_set_hyper_name(m, "momentum", 0), BPRT_E_ARG,
               "tiny: momentum 0: nesterov = true requires a momentum > 0 and zero dampening (momentum)");
  assert_int_equal(bprt_model_set_hyper_name(m, "nesterov", 0), BPRT_OK);
  for (int h = 0; h < BPRT_H__COUNT; h++) {
    double now;
    bprt_model_get_hyper(m, h, &now);
    if (h != BPRT_H_STEP) assert_true(now == before[h]);
  }
  double v;
  assert_error(bprt_model_get_hyper(m, -1, &v), BPRT_E_RANGE, "tiny: hyperparameter index -1 is out of range [0, 14)");
  assert_error(bprt_model_get_hyper(m, 0, NULL), BPRT_E_ARG, "get_hyper: NULL value pointer");
  assert_error(bprt_model_save(m, NULL), BPRT_E_ARG, "save: NULL path");
  assert_error(bprt_model_load(NULL, "x"), BPRT_E_ARG, "load: NULL model");
  assert_null(bprt_model_last_output(m, 0));
  bprt_model_destroy(m);

  bprt_model *n = bprt_model_create(&noloss, 1);
  y[2] = 1;
  assert_error(bprt_model_train_step(n, 4, in, &loss), BPRT_E_STATE,
               "train_step: noloss: the model has no loss, so no gradients (declare `loss` in it)");
  assert_int_equal(bprt_model_forward(n, 4, in, outs), BPRT_OK);
  bprt_model_destroy(n);
}

static void test_train(void **state) {
  (void)state;
  bprt_model *m = bprt_model_create(&tiny, 5);
  enum { N = 64 };
  float x[N * 3], loss0, loss, grads[PARAM_FLOATS];
  int32_t y[N];
  make_batch(N, x, y);
  const void *in[2] = {x, y};
  float before[PARAM_FLOATS];
  memcpy(before, bprt_model_params(m), sizeof before);
  assert_int_equal(bprt_model_loss_and_grad(m, N, in, &loss0), BPRT_OK);
  assert_int_equal(bprt_model_get_step(m), 0);
  assert_memory_equal(before, bprt_model_params(m), sizeof before);
  memcpy(grads, bprt_model_grads(m), sizeof grads);
  /* the gradient of W[0][0] against a central difference in the loss */
  {
    double h = 1e-2;
    float lp, lm;
    bprt_model_params(m)[0] += (float)h;
    bprt_model_loss_and_grad(m, N, in, &lp);
    bprt_model_params(m)[0] -= (float)(2 * h);
    bprt_model_loss_and_grad(m, N, in, &lm);
    bprt_model_params(m)[0] += (float)h;
    assert_true(fabs((lp - lm) / (2 * h) - grads[0]) < 1e-3);
  }
  const float *logits = bprt_model_last_output(m, 0);
  assert_non_null(logits);
  assert_null(bprt_model_last_output(m, 1));
  double lr;
  assert_int_equal(bprt_model_get_hyper(m, BPRT_H_LR, &lr), BPRT_OK);
  assert_true(lr == 0.5);
  loss = loss0;
  for (int i = 0; i < 50; i++) assert_int_equal(bprt_model_train_step(m, N, in, &loss), BPRT_OK);
  assert_int_equal(bprt_model_get_step(m), 50);
  double t;
  assert_int_equal(bprt_model_get_hyper(m, BPRT_H_STEP, &t), BPRT_OK);
  assert_true(t == 50);
  assert_true(loss < 0.5 * loss0);
  /* lr = 0 freezes the parameters; the step still counts */
  assert_int_equal(bprt_model_set_lr(m, 0), BPRT_OK);
  memcpy(before, bprt_model_params(m), sizeof before);
  assert_int_equal(bprt_model_train_step(m, N, in, &loss), BPRT_OK);
  assert_memory_equal(before, bprt_model_params(m), sizeof before);
  assert_int_equal(bprt_model_get_step(m), 51);
  assert_int_equal(bprt_hyper_lookup("weight_decay"), BPRT_H_WEIGHT_DECAY);
  assert_int_equal(bprt_hyper_lookup("step"), -1);
  assert_int_equal(bprt_hyper_lookup("nope"), -1);
  bprt_model_destroy(m);
}

/* ------------------------------------------------------------- checkpoints */

static void test_checkpoint_round_trip(void **state) {
  (void)state;
  char *dir = make_temp_dir();
  enum { N = 16 };
  float x[N * 3], la, lb;
  int32_t y[N];
  make_batch(N, x, y);
  const void *in[2] = {x, y};
  bprt_model *a = bprt_model_create(&tiny, 11);
  for (int i = 0; i < 3; i++) bprt_model_train_step(a, N, in, &la);
  const char *path = path_in(dir, "tiny.safetensors");
  const char *keys[] = {"epoch"}, *vals[] = {"2"};
  assert_int_equal(bprt_model_save_meta(a, path, keys, vals, 1), BPRT_OK);
  bprt_model *b = bprt_model_create(&tiny, 99);
  BprtCheckpoint *ck = NULL;
  assert_int_equal(bprt_model_load_ck(b, path, &ck), BPRT_OK);
  assert_non_null(ck);
  assert_string_equal(bprt_st_meta(ck, "epoch"), "2");
  assert_string_equal(bprt_st_meta(ck, "model"), "tiny");
  assert_string_equal(bprt_st_meta(ck, "step"), "3");
  assert_string_equal(bprt_st_meta(ck, "optimizer"), "momentum");
  assert_string_equal(bprt_st_meta(ck, "format_version"), "1");
  assert_non_null(bprt_st_find(ck, "optim.W.momentum_buffer"));
  assert_int_equal(bprt_st_count(ck), 4);
  bprt_st_free(ck);
  assert_int_equal(bprt_model_get_step(b), 3);
  assert_memory_equal(bprt_model_params(a) + W_OFF, bprt_model_params(b) + W_OFF, 6 * sizeof(float));
  assert_memory_equal(bprt_model_params(a) + B_OFF, bprt_model_params(b) + B_OFF, 2 * sizeof(float));
  assert_memory_equal(bprt_model_opt_state(a) + W_OFF, bprt_model_opt_state(b) + W_OFF, 6 * sizeof(float));
  /* resume is bit-exact: one more step on each gives the same parameters */
  assert_int_equal(bprt_model_train_step(a, N, in, &la), BPRT_OK);
  assert_int_equal(bprt_model_train_step(b, N, in, &lb), BPRT_OK);
  assert_true(la == lb);
  assert_memory_equal(bprt_model_params(a) + W_OFF, bprt_model_params(b) + W_OFF, 6 * sizeof(float));
  assert_memory_equal(bprt_model_params(a) + B_OFF, bprt_model_params(b) + B_OFF, 2 * sizeof(float));

  /* a plain safetensors file of the parameters (PyTorch's save_file) loads them and
   * resets the optimizer */
  const char *plain = path_in(dir, "plain.safetensors");
  float w[6] = {1, 2, 3, 4, 5, 6}, bias[2] = {7, 8};
  BprtTensorRef t[2] = {{.name = "W", .rank = 2, .dims = {3, 2}, .data = w}, {.name = "b", .rank = 1, .dims = {2}, .data = bias}};
  assert_int_equal(bprt_st_write(plain, t, 2, NULL, 0), 0);
  assert_int_equal(bprt_model_load(b, plain), BPRT_OK);
  assert_memory_equal(bprt_model_params(b) + W_OFF, w, sizeof w);
  assert_memory_equal(bprt_model_params(b) + B_OFF, bias, sizeof bias);
  assert_int_equal(bprt_model_get_step(b), 0);
  for (int i = 0; i < PARAM_FLOATS; i++) assert_true(bprt_model_opt_state(b)[i] == 0);
  bprt_model_destroy(a);
  bprt_model_destroy(b);
  rm_tree(dir);
  free(dir);
}

/* Load `path` into m and expect failure with `msg`, leaving m exactly as it was. */
static void expect_bad_load(bprt_model *m, const char *path, const char *msg) {
  float p[PARAM_FLOATS], s[PARAM_FLOATS];
  memcpy(p, bprt_model_params(m), sizeof p);
  memcpy(s, bprt_model_opt_state(m), sizeof s);
  uint64_t step = bprt_model_get_step(m);
  assert_error(bprt_model_load(m, path), BPRT_E_CHECKPOINT, msg);
  assert_memory_equal(p, bprt_model_params(m), sizeof p);
  assert_memory_equal(s, bprt_model_opt_state(m), sizeof s);
  assert_int_equal(step, bprt_model_get_step(m));
}

static void test_checkpoint_bad(void **state) {
  (void)state;
  char *dir = make_temp_dir();
  char msg[8192];
  enum { N = 8 };
  float x[N * 3], loss;
  int32_t y[N];
  make_batch(N, x, y);
  const void *in[2] = {x, y};
  bprt_model *m = bprt_model_create(&tiny, 1), *o = bprt_model_create(&other, 1);
  bprt_model_train_step(m, N, in, &loss);

  const char *missing = path_in(dir, "missing.safetensors");
  snprintf(msg, sizeof msg, "tiny: load: %s: cannot open: No such file or directory", missing);
  float p[PARAM_FLOATS];
  memcpy(p, bprt_model_params(m), sizeof p);
  assert_int_equal(bprt_model_load(m, missing), BPRT_E_CHECKPOINT);
  assert_non_null(strstr(bprt_last_error(), missing));
  assert_memory_equal(p, bprt_model_params(m), sizeof p);

  /* a FIFO (no writer: opening it must not block) and /dev/zero (never ends) */
  alarm(10);
  const char *fifo = path_in(dir, "fifo.safetensors");
  assert_int_equal(mkfifo(fifo, 0600), 0);
  snprintf(msg, sizeof msg, "tiny: load: %s: a FIFO (named pipe), not a regular file: only regular files can be "
           "read here", fifo);
  expect_bad_load(m, fifo, msg);
  unlink(fifo);
  expect_bad_load(m, "/dev/zero",
                  "tiny: load: /dev/zero: a character device, not a regular file: only regular files can be read here");
  alarm(0);

  const char *garbage = path_in(dir, "garbage.safetensors");
  write_text(garbage, "this is not a checkpoint at all, just text\n");
  memcpy(p, bprt_model_params(m), sizeof p);
  assert_int_equal(bprt_model_load(m, garbage), BPRT_E_CHECKPOINT);
  assert_true(strncmp(bprt_last_error(), "tiny: load: ", 12) == 0);
  assert_non_null(strstr(bprt_last_error(), garbage));

  /* another model's checkpoint */
  const char *oth = path_in(dir, "other.safetensors");
  assert_int_equal(bprt_model_save(o, oth), BPRT_OK);
  snprintf(msg, sizeof msg, "tiny: load: %s: checkpoint is for model 'other', not 'tiny'", oth);
  expect_bad_load(m, oth, msg);

  /* a truncated file */
  const char *good = path_in(dir, "good.safetensors");
  assert_int_equal(bprt_model_save(m, good), BPRT_OK);
  FILE *f = fopen(good, "rb");
  char buf[4096];
  size_t n = fread(buf, 1, sizeof buf, f);
  fclose(f);
  const char *trunc = path_in(dir, "trunc.safetensors");
  write_bytes(trunc, buf, n - 10);
  memcpy(p, bprt_model_params(m), sizeof p);
  assert_int_equal(bprt_model_load(m, trunc), BPRT_E_CHECKPOINT);
  assert_non_null(strstr(bprt_last_error(), trunc));
  assert_memory_equal(p, bprt_model_params(m), sizeof p);

  /* missing and mis-shaped tensors, extra tensors */
  float w[6] = {0}, w2[8] = {0}, bias[2] = {0}, extra[3] = {0};
  const char *only_w = path_in(dir, "only_w.safetensors");
  BprtTensorRef t1[1] = {{.name = "W", .rank = 2, .dims = {3, 2}, .data = w}};
  assert_int_equal(bprt_st_write(only_w, t1, 1, NULL, 0), 0);
  snprintf(msg, sizeof msg, "tiny: load: %s: missing tensor 'b'", only_w);
  expect_bad_load(m, only_w, msg);
  const char *shape = path_in(dir, "shape.safetensors");
  BprtTensorRef t2[2] = {{.name = "W", .rank = 2, .dims = {4, 2}, .data = w2}, {.name = "b", .rank = 1, .dims = {2}, .data = bias}};
  assert_int_equal(bprt_st_write(shape, t2, 2, NULL, 0), 0);
  snprintf(msg, sizeof msg, "tiny: load: %s: tensor 'W' has shape [4,2], expected [3,2]", shape);
  expect_bad_load(m, shape, msg);
  const char *more = path_in(dir, "more.safetensors");
  BprtTensorRef t3[3] = {{.name = "W", .rank = 2, .dims = {3, 2}, .data = w},
                         {.name = "b", .rank = 1, .dims = {2}, .data = bias},
                         {.name = "c", .rank = 1, .dims = {3}, .data = extra}};
  assert_int_equal(bprt_st_write(more, t3, 3, NULL, 0), 0);
  snprintf(msg, sizeof msg, "tiny: load: %s: unexpected tensor 'c' (not in model 'tiny')", more);
  expect_bad_load(m, more, msg);
  /* a bpcc checkpoint without its optimizer state */
  const char *nostate = path_in(dir, "nostate.safetensors");
  BprtMeta meta[5] = {{"format", "bpcc-checkpoint"}, {"format_version", "1"}, {"model", "tiny"},
                      {"optimizer", "momentum"}, {"step", "4"}};
  BprtTensorRef t4[2] = {{.name = "W", .rank = 2, .dims = {3, 2}, .data = w}, {.name = "b", .rank = 1, .dims = {2}, .data = bias}};
  assert_int_equal(bprt_st_write(nostate, t4, 2, meta, 5), 0);
  snprintf(msg, sizeof msg,
           "tiny: load: %s: 2 tensors missing: 'optim.W.momentum_buffer' [3,2], 'optim.b.momentum_buffer' [2]",
           nostate);
  expect_bad_load(m, nostate, msg);
  /* bad metadata */
  const char *badstep = path_in(dir, "badstep.safetensors");
  meta[4].value = "-1";
  assert_int_equal(bprt_st_write(badstep, t4, 2, meta, 5), 0);
  snprintf(msg, sizeof msg, "tiny: load: %s: metadata 'step' is not a count: '-1'", badstep);
  expect_bad_load(m, badstep, msg);
  meta[4].value = "4";
  meta[3].value = "adam";
  assert_int_equal(bprt_st_write(badstep, t4, 2, meta, 5), 0);
  snprintf(msg, sizeof msg, "tiny: load: %s: checkpoint holds adam optimizer state; this model trains with momentum",
           badstep);
  expect_bad_load(m, badstep, msg);
  meta[3].value = "momentum";
  meta[1].value = "7";
  assert_int_equal(bprt_st_write(badstep, t4, 2, meta, 5), 0);
  snprintf(msg, sizeof msg, "tiny: load: %s: checkpoint format version '7' is not supported (this runtime reads 1)",
           badstep);
  expect_bad_load(m, badstep, msg);

  /* the good file still loads */
  assert_int_equal(bprt_model_load(m, good), BPRT_OK);
  /* saving into a directory that does not exist is an I/O error */
  assert_int_equal(bprt_model_save(m, path_in(dir, "no/such/dir.safetensors")), BPRT_E_IO);
  assert_true(strncmp(bprt_last_error(), "tiny: save: ", 12) == 0);
  bprt_model_destroy(m);
  bprt_model_destroy(o);
  rm_tree(dir);
  free(dir);
}

/* Load errors that suggest the fix (runtime/ckmatch.c): a file with PyTorch's names and
 * layout, a transposed weight, several unknown names, and a listing too long for the
 * error buffer, which is cut with a count. */
static void test_checkpoint_hints(void **state) {
  (void)state;
  char *dir = make_temp_dir();
  char msg[8192];
  bprt_model *m = bprt_model_create(&tiny, 1);
  float w[6] = {0}, bias[2] = {0}, extra[3] = {0};

  /* torch's nn.Linear(3, 2).state_dict() saved as it is */
  const char *torch = path_in(dir, "torch.safetensors");
  BprtTensorRef t1[2] = {{.name = "0.weight", .rank = 2, .dims = {2, 3}, .data = w},
                         {.name = "0.bias", .rank = 1, .dims = {2}, .data = bias}};
  assert_int_equal(bprt_st_write(torch, t1, 2, NULL, 0), 0);
  snprintf(msg, sizeof msg,
           "tiny: load: %s: the tensor names do not match model 'tiny' (docs/interop.md)\n"
           "  missing (2): 'W' [3,2], 'b' [2]\n"
           "  unknown (2): '0.bias' [2], '0.weight' [2,3]\n"
           "  '0.bias' [2] could be 'b' [2]\n"
           "  '0.weight' [2,3] could be 'W' [3,2] transposed\n"
           "  bpcc's dense W is [in, out]; a torch nn.Linear weight is [out, in]: save weight.T",
           torch);
  expect_bad_load(m, torch, msg);

  /* renamed, not transposed */
  const char *tr = path_in(dir, "transposed.safetensors");
  BprtTensorRef t2[2] = {{.name = "W", .rank = 2, .dims = {2, 3}, .data = w},
                         {.name = "b", .rank = 1, .dims = {2}, .data = bias}};
  assert_int_equal(bprt_st_write(tr, t2, 2, NULL, 0), 0);
  snprintf(msg, sizeof msg,
           "tiny: load: %s: tensor 'W' has shape [2,3], expected [3,2]: transposed? bpcc's dense W is [in, out]; "
           "a torch nn.Linear weight is [out, in]: save weight.T (docs/interop.md)",
           tr);
  expect_bad_load(m, tr, msg);

  /* two unknown names, none missing */
  const char *more = path_in(dir, "more.safetensors");
  BprtTensorRef t3[4] = {{.name = "W", .rank = 2, .dims = {3, 2}, .data = w},
                         {.name = "b", .rank = 1, .dims = {2}, .data = bias},
                         {.name = "d", .rank = 1, .dims = {1}, .data = extra},
                         {.name = "c", .rank = 1, .dims = {3}, .data = extra}};
  assert_int_equal(bprt_st_write(more, t3, 4, NULL, 0), 0);
  snprintf(msg, sizeof msg, "tiny: load: %s: 2 unexpected tensors (not in model 'tiny'): 'c' [3], 'd' [1]", more);
  expect_bad_load(m, more, msg);

  /* 300 unknown names of 70 characters: the listing is cut, counted, and fits 1 KiB */
  enum { MANY = 300 };
  static char names[MANY][80];
  static BprtTensorRef many[MANY];
  for (int i = 0; i < MANY; i++) {
    snprintf(names[i], sizeof names[i], "layer%03d.%s", i, "a_rather_long_parameter_name_as_some_frameworks_write_them_xxxxxxx");
    many[i] = (BprtTensorRef){.name = names[i], .rank = 1, .dims = {1}, .data = extra};
  }
  const char *lots = path_in(dir, "lots.safetensors");
  assert_int_equal(bprt_st_write(lots, many, MANY, NULL, 0), 0);
  float p[PARAM_FLOATS];
  memcpy(p, bprt_model_params(m), sizeof p);
  assert_int_equal(bprt_model_load(m, lots), BPRT_E_CHECKPOINT);
  assert_memory_equal(p, bprt_model_params(m), sizeof p);
  snprintf(msg, sizeof msg,
           "tiny: load: %s: the tensor names do not match model 'tiny' (docs/interop.md)\n"
           "  missing (2): 'W' [3,2], 'b' [2]\n"
           "  unknown (300): 'layer000.a_rather_long_parameter_name_as_some_frameworks_...' [1], "
           "'layer001.a_rather_long_parameter_name_as_some_frameworks_...' [1], and 298 more",
           lots);
  assert_string_equal(bprt_last_error(), msg);
  bprt_model_destroy(m);
  rm_tree(dir);
  free(dir);
}

/* Every allocation of create, of a first call at a new batch size and of save/load can
 * fail: the result is an error, the model stays usable, nothing leaks (ASan). */
/* The optimizer vocabulary (runtime/optimizers.c): torch.optim's names, defaults and
 * ranges, and the state a model keeps per parameter. */
static void test_optimizer_table(void **state) {
  (void)state;
  static const struct { const char *name; int slots; double lr, eps, wd, mom; } torch[] = {
      {"sgd", 1, 1e-2, 1e-8, 0, 0},      {"momentum", 1, 1e-2, 1e-8, 0, 0.9}, {"adagrad", 1, 1e-2, 1e-10, 0, 0},
      {"rmsprop", 2, 1e-2, 1e-8, 0, 0},  {"adam", 2, 1e-3, 1e-8, 0, 0},       {"adamw", 2, 1e-3, 1e-8, 1e-2, 0},
  };
  for (int k = 0; k < BPRT_OPT__COUNT; k++) {
    bprt_optimizer_config c;
    bprt_optimizer_init(&c, k);
    assert_string_equal(bprt_optimizers[k].name, torch[k].name);
    assert_int_equal(bprt_optimizer_lookup(torch[k].name), k);
    assert_int_equal(bprt_optimizers[k].slots, torch[k].slots);
    for (int s = 0; s < bprt_optimizers[k].slots; s++) assert_non_null(bprt_optimizers[k].slot_names[s]);
    assert_true(c.kind == k && c.hyper[BPRT_H_LR] == torch[k].lr && c.hyper[BPRT_H_EPS] == torch[k].eps);
    assert_true(c.hyper[BPRT_H_WEIGHT_DECAY] == torch[k].wd && c.hyper[BPRT_H_MOMENTUM] == torch[k].mom);
    assert_true(c.hyper[BPRT_H_BETA1] == 0.9 && c.hyper[BPRT_H_BETA2] == 0.999 && c.hyper[BPRT_H_STEP] == 1);
    assert_null(bprt_optimizer_check(k, c.hyper));
  }
  assert_int_equal(bprt_optimizer_lookup("lbfgs"), -1);
  assert_null(bprt_hyper_check(BPRT_H_LR, 0));
  assert_string_equal(bprt_hyper_check(BPRT_H_LR, -1), "must be >= 0");
  assert_string_equal(bprt_hyper_check(BPRT_H_BETA2, 1), "must be in [0, 1)");
  assert_string_equal(bprt_hyper_check(BPRT_H_NESTEROV, 0.5), "must be true or false (1 or 0)");
  assert_string_equal(bprt_hyper_check(BPRT_H_EPS, NAN), "must be finite");
  for (int h = 0; h < BPRT_H_STEP; h++) assert_int_equal(bprt_hyper_lookup(bprt_hypers[h].name), h);
  bool elsewhere;
  assert_null(bprt_opt_arg_lookup(BPRT_OPT_ADAM, "momentum", &elsewhere));
  assert_true(elsewhere);
  const bprt_opt_arg *betas = bprt_opt_arg_lookup(BPRT_OPT_ADAMW, "betas", NULL);
  assert_true(betas && betas->index == BPRT_H_BETA1 && betas->count == 2);
  char list[200];
  assert_string_equal(bprt_opt_arg_list(BPRT_OPT_SGD, list, sizeof list), "lr, momentum, dampening, nesterov, weight_decay, clip");
  double h[BPRT_H__COUNT] = {0};
  h[BPRT_H_NESTEROV] = 1;
  assert_non_null(bprt_optimizer_check(BPRT_OPT_SGD, h));
}

static void test_alloc_failures(void **state) {
  (void)state;
  char *dir = make_temp_dir();
  const char *path = path_in(dir, "m.safetensors");
  enum { N = 8 };
  float x[N * 3], loss;
  int32_t y[N];
  make_batch(N, x, y);
  const void *in[2] = {x, y};
  int created = 0;
  for (long k = 0; k < 40; k++) {
    bprt_alloc_fail_after(k);
    bprt_model *m = bprt_model_create(&tiny, 1);
    int rc = m ? bprt_model_train_step(m, N, in, &loss) : -100;
    int rs = m ? bprt_model_save(m, path) : -100;
    int rl = m && rs == BPRT_OK ? bprt_model_load(m, path) : -100;
    bprt_alloc_fail_after(-1);
    if (!m) {
      assert_non_null(strstr(bprt_last_error(), "out of memory"));
      continue;
    }
    created++;
    assert_true(rc == BPRT_OK || rc == BPRT_E_NOMEM);
    assert_true(rs == BPRT_OK || rs == BPRT_E_IO || rs == BPRT_E_NOMEM);
    assert_true(rl == -100 || rl == BPRT_OK || rl == BPRT_E_NOMEM || rl == BPRT_E_CHECKPOINT);
    /* usable afterwards */
    assert_int_equal(bprt_model_train_step(m, N, in, &loss), BPRT_OK);
    bprt_model_destroy(m);
  }
  assert_true(created > 0);
  rm_tree(dir);
  free(dir);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_create_init),        cmocka_unit_test(test_bad_descriptor),
      cmocka_unit_test(test_params),             cmocka_unit_test(test_forward),
      cmocka_unit_test(test_misuse),             cmocka_unit_test(test_forward_discard),
      cmocka_unit_test(test_train),
      cmocka_unit_test(test_checkpoint_round_trip), cmocka_unit_test(test_checkpoint_bad),
      cmocka_unit_test(test_alloc_failures),     cmocka_unit_test(test_optimizer_table),
      cmocka_unit_test(test_checkpoint_hints),   cmocka_unit_test(test_uses_amx),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
