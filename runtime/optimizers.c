/* runtime/optimizers.c — the optimizer vocabulary: one table of optimizers, one of their
 * hyperparameters and one of the keyword arguments that set them.
 *
 * Every part of bpcc that names an optimizer or a hyperparameter reads these tables:
 * the frontend (a `train` block's `optimizer adam(lr = 1e-3, betas = (0.9, 0.999))`),
 * the driver (`--optimizer`, `bpcc train`'s header), codegen (how many floats of state
 * the update kernel keeps, the defaults written into a model's descriptor), the memory
 * plan (optimizer state bytes) and the runtime (set_hyper's ranges, the names of the
 * state tensors in a checkpoint). Names, defaults and ranges are torch.optim's, so a
 * user can copy the arguments of a PyTorch script:
 *
 *   optimizer  torch.optim   state per parameter               defaults
 *   sgd        SGD           momentum_buffer                   lr 0.01
 *   momentum   SGD(momentum=0.9)  momentum_buffer              lr 0.01, momentum 0.9
 *   adagrad    Adagrad       sum                               lr 0.01, eps 1e-10
 *   rmsprop    RMSprop       square_avg, momentum_buffer       lr 0.01, alpha 0.99, eps 1e-8
 *   adam       Adam          exp_avg, exp_avg_sq               lr 1e-3, betas (0.9, 0.999), eps 1e-8
 *   adamw      AdamW         exp_avg, exp_avg_sq               as adam, weight_decay 0.01
 *
 * (`momentum` is bpcc's name for SGD with momentum 0.9 by default; sgd always keeps its
 * momentum buffer, so switching momentum on with set_hyper needs no new state.) */
#include "runtime/model.h"

#include <math.h>
#include <ctype.h>
#include <float.h>
#include <stdbool.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

/* ------------------------------------------------------------ hyperparameters */

const bprt_hyper_info bprt_hypers[BPRT_H__COUNT] = {
    [BPRT_H_LR] = {"lr", BPRT_RANGE_NONNEG},
    [BPRT_H_MOMENTUM] = {"momentum", BPRT_RANGE_NONNEG},
    [BPRT_H_DAMPENING] = {"dampening", BPRT_RANGE_NONNEG},
    [BPRT_H_NESTEROV] = {"nesterov", BPRT_RANGE_BOOL},
    [BPRT_H_BETA1] = {"beta1", BPRT_RANGE_UNIT_OPEN},
    [BPRT_H_BETA2] = {"beta2", BPRT_RANGE_UNIT_OPEN},
    [BPRT_H_EPS] = {"eps", BPRT_RANGE_NONNEG},
    [BPRT_H_WEIGHT_DECAY] = {"weight_decay", BPRT_RANGE_NONNEG},
    [BPRT_H_ALPHA] = {"alpha", BPRT_RANGE_NONNEG},
    [BPRT_H_LR_DECAY] = {"lr_decay", BPRT_RANGE_NONNEG},
    [BPRT_H_INITIAL_ACC] = {"initial_accumulator_value", BPRT_RANGE_NONNEG},
    [BPRT_H_CLIP] = {"clip", BPRT_RANGE_NONNEG},
    [BPRT_H_STEP] = {"step", BPRT_RANGE_COUNT},
    [BPRT_H_LOSS_SCALE] = {"loss_scale", BPRT_RANGE_NONNEG},
};

int bprt_hyper_lookup(const char *name) {
  if (!name) return -1;
  for (int i = 0; i < BPRT_H__COUNT; i++)
    if (i < BPRT_H_STEP && !strcmp(name, bprt_hypers[i].name)) return i;
  return -1;
}

const char *bprt_hyper_check(int h, double v) {
  if (h < 0 || h >= BPRT_H__COUNT) return "is not a hyperparameter";
  if (!isfinite(v)) return "must be finite";
  switch (bprt_hypers[h].range) {
  case BPRT_RANGE_NONNEG: return v >= 0 ? NULL : "must be >= 0";
  case BPRT_RANGE_UNIT_OPEN: return v >= 0 && v < 1 ? NULL : "must be in [0, 1)";
  case BPRT_RANGE_BOOL: return v == 0 || v == 1 ? NULL : "must be true or false (1 or 0)";
  case BPRT_RANGE_COUNT: return v >= 1 && v == floor(v) ? NULL : "must be an integer >= 1";
  }
  return NULL;
}

/* ------------------------------------------------------------ optimizers */

#define D(lr, mom, eps, alpha, wd) {[BPRT_H_LR] = lr, [BPRT_H_MOMENTUM] = mom, [BPRT_H_BETA1] = 0.9, \
    [BPRT_H_BETA2] = 0.999, [BPRT_H_EPS] = eps, [BPRT_H_ALPHA] = alpha, [BPRT_H_WEIGHT_DECAY] = wd, [BPRT_H_STEP] = 1, \
    [BPRT_H_LOSS_SCALE] = 1}
const bprt_optimizer_info bprt_optimizers[BPRT_OPT__COUNT] = {
    [BPRT_OPT_SGD] = {"sgd", "torch.optim.SGD", 1, {"momentum_buffer"}, D(1e-2, 0, 1e-8, 0.99, 0)},
    [BPRT_OPT_MOMENTUM] = {"momentum", "torch.optim.SGD", 1, {"momentum_buffer"}, D(1e-2, 0.9, 1e-8, 0.99, 0)},
    [BPRT_OPT_ADAGRAD] = {"adagrad", "torch.optim.Adagrad", 1, {"sum"}, D(1e-2, 0, 1e-10, 0.99, 0)},
    [BPRT_OPT_RMSPROP] = {"rmsprop", "torch.optim.RMSprop", 2, {"square_avg", "momentum_buffer"}, D(1e-2, 0, 1e-8, 0.99, 0)},
    [BPRT_OPT_ADAM] = {"adam", "torch.optim.Adam", 2, {"exp_avg", "exp_avg_sq"}, D(1e-3, 0, 1e-8, 0.99, 0)},
    [BPRT_OPT_ADAMW] = {"adamw", "torch.optim.AdamW", 2, {"exp_avg", "exp_avg_sq"}, D(1e-3, 0, 1e-8, 0.99, 1e-2)},
};
#undef D

int bprt_optimizer_lookup(const char *name) {
  if (!name) return -1;
  for (int k = 0; k < BPRT_OPT__COUNT; k++)
    if (!strcmp(name, bprt_optimizers[k].name)) return k;
  return -1;
}

void bprt_optimizer_init(bprt_optimizer_config *c, int kind) {
  if (kind < 0 || kind >= BPRT_OPT__COUNT) kind = BPRT_OPT_SGD;
  c->kind = kind;
  memcpy(c->hyper, bprt_optimizers[kind].defaults, sizeof c->hyper);
}

const char *bprt_optimizer_check(int kind, const double *hyper) {
  /* torch.optim.SGD: "Nesterov momentum requires a momentum and zero dampening" */
  if ((kind == BPRT_OPT_SGD || kind == BPRT_OPT_MOMENTUM) && hyper[BPRT_H_NESTEROV] != 0 &&
      (hyper[BPRT_H_MOMENTUM] <= 0 || hyper[BPRT_H_DAMPENING] != 0))
    return "nesterov = true requires a momentum > 0 and zero dampening";
  return NULL;
}

/* ------------------------------------------------------------ keyword arguments */

#define O(k) (1u << (k))
#define ALL (O(BPRT_OPT_SGD) | O(BPRT_OPT_MOMENTUM) | O(BPRT_OPT_ADAGRAD) | O(BPRT_OPT_RMSPROP) | O(BPRT_OPT_ADAM) | O(BPRT_OPT_ADAMW))
#define SGDS (O(BPRT_OPT_SGD) | O(BPRT_OPT_MOMENTUM))
#define ADAMS (O(BPRT_OPT_ADAM) | O(BPRT_OPT_ADAMW))
/* In the order a summary prints them (lr first, weight_decay and clip last). */
const bprt_opt_arg bprt_opt_args[] = {
    {"lr", BPRT_H_LR, 1, ALL},
    {"momentum", BPRT_H_MOMENTUM, 1, SGDS},
    {"dampening", BPRT_H_DAMPENING, 1, SGDS},
    {"nesterov", BPRT_H_NESTEROV, 1, SGDS},
    {"lr_decay", BPRT_H_LR_DECAY, 1, O(BPRT_OPT_ADAGRAD)},
    {"initial_accumulator_value", BPRT_H_INITIAL_ACC, 1, O(BPRT_OPT_ADAGRAD)},
    {"alpha", BPRT_H_ALPHA, 1, O(BPRT_OPT_RMSPROP)},
    {"betas", BPRT_H_BETA1, 2, ADAMS},
    {"eps", BPRT_H_EPS, 1, O(BPRT_OPT_ADAGRAD) | O(BPRT_OPT_RMSPROP) | ADAMS},
    {"momentum", BPRT_H_MOMENTUM, 1, O(BPRT_OPT_RMSPROP)},
    /* torch.optim flags bpcc's update kernels do not implement: false is accepted,
     * true is refused rather than ignored */
    {"centered", -1, 1, O(BPRT_OPT_RMSPROP)},
    {"amsgrad", -1, 1, ADAMS},
    {"weight_decay", BPRT_H_WEIGHT_DECAY, 1, ALL},
    {"clip", BPRT_H_CLIP, 1, ALL},
    {"maximize", -1, 1, ALL},
    {"foreach", -1, 1, ALL},
    {NULL, 0, 0, 0},
};
#undef O
#undef ALL
#undef SGDS
#undef ADAMS

const bprt_opt_arg *bprt_opt_arg_lookup(int kind, const char *name, bool *known_elsewhere) {
  if (known_elsewhere) *known_elsewhere = false;
  for (const bprt_opt_arg *a = bprt_opt_args; a->name; a++) {
    if (strcmp(a->name, name)) continue;
    if (kind >= 0 && kind < BPRT_OPT__COUNT && (a->optimizers & (1u << kind))) return a;
    if (known_elsewhere) *known_elsewhere = true;
  }
  return NULL;
}

char *bprt_opt_arg_list(int kind, char *buf, size_t n) {
  size_t k = 0;
  if (n) buf[0] = 0;
  for (const bprt_opt_arg *a = bprt_opt_args; a->name && k < n; a++) {
    if (!(a->optimizers & (1u << kind)) || a->index < 0) continue;
    k += (size_t)snprintf(buf + k, n - k, "%s%s", k ? ", " : "", a->name);
  }
  return buf;
}

/* ------------------------------------------------------------ loss scaling */

const char *const bprt_loss_scale_names[3] = {"off", "fixed", "dynamic"};

const char *bprt_loss_scale_check(double scale) {
  if (!(isfinite(scale) && scale > 0)) return "must be 'dynamic', 'off' or a positive finite number";
  if (scale < FLT_MIN || scale > FLT_MAX) return "must lie within f32's normal range (1.2e-38 to 3.4e38)";
  return NULL;
}

const char *bprt_loss_scale_parse(const char *text, int *mode, double *scale) {
  if (!text) return "must be 'dynamic', 'off' or a positive finite number";
  if (!strcmp(text, "dynamic")) {
    *mode = BPRT_LOSS_SCALE_DYNAMIC;
    *scale = BPRT_LOSS_SCALE_INIT;
    return NULL;
  }
  if (!strcmp(text, "off")) {
    *mode = BPRT_LOSS_SCALE_OFF;
    *scale = 1;
    return NULL;
  }
  char *end;
  double v = text[0] && !isspace((unsigned char)text[0]) ? strtod(text, &end) : NAN;
  if (isnan(v) || *end) return "must be 'dynamic', 'off' or a positive finite number";
  const char *bad = bprt_loss_scale_check(v);
  if (bad) return bad;
  *mode = BPRT_LOSS_SCALE_FIXED;
  *scale = v;
  return NULL;
}
