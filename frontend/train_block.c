/* frontend/train_block.c — the `train` block, checked into a TrainSpec.
 *
 *   train mnist_mlp {
 *       optimizer adam(lr = 1e-3, betas = (0.9, 0.999))
 *       batch 128
 *       epochs 10
 *       seed 42
 *       schedule cosine(T_max = 10, warmup = 1)
 *       clip 1.0
 *       weight_decay 1e-4
 *   }
 *
 * Optimizers and schedules take PyTorch's keyword names and defaults, so a user can
 * copy hyperparameters from a PyTorch script. Each key may appear once. */
#include "frontend/frontend.h"

#include <math.h>
#include <string.h>

static const char *const opt_names[] = {"sgd", "momentum", "adagrad", "rmsprop", "adam", "adamw"};
static const char *const sched_names[] = {"constant", "step", "cosine", "plateau"};

const char *fe_optimizer_name(FeOptimizer o) { return opt_names[o]; }
const char *fe_schedule_name(FeSchedule s) { return sched_names[s]; }

static void optimizer_defaults(TrainSpec *t, FeOptimizer o) {
  t->optimizer = o;
  t->momentum = o == FE_OPT_MOMENTUM ? 0.9 : 0;
  t->dampening = 0;
  t->nesterov = false;
  t->beta1 = 0.9;
  t->beta2 = 0.999;
  t->alpha = 0.99;
  t->centered = false;
  t->amsgrad = false;
  t->lr_decay = 0;
  t->initial_accumulator_value = 0;
  t->weight_decay = o == FE_OPT_ADAMW ? 1e-2 : 0;
  switch (o) {
  case FE_OPT_SGD: case FE_OPT_MOMENTUM: t->lr = 1e-2; t->eps = 0; break;
  case FE_OPT_ADAGRAD: t->lr = 1e-2; t->eps = 1e-10; break;
  case FE_OPT_RMSPROP: t->lr = 1e-2; t->eps = 1e-8; break;
  case FE_OPT_ADAM: case FE_OPT_ADAMW: t->lr = 1e-3; t->eps = 1e-8; break;
  }
}

void fe_train_defaults(TrainSpec *t) {
  memset(t, 0, sizeof *t);
  t->loc = SRCLOC_NONE;
  optimizer_defaults(t, FE_OPT_ADAM);
  t->batch = 32;
  t->epochs = 1;
  t->seed = 0;
  t->schedule = FE_SCHED_CONSTANT;
  t->step_size = 1;
  t->gamma = 0.1;
  t->t_max = 0;   /* 0: the number of epochs */
  t->eta_min = 0;
  t->factor = 0.1;
  t->patience = 10;
  t->threshold = 1e-4;
  t->cooldown = 0;
  t->min_lr = 0;
  t->clip = 0;
}

/* What a keyword argument may hold. */
typedef enum { K_POS, K_NONNEG, K_UNIT, K_INT_POS, K_INT_NONNEG, K_BOOL, K_PAIR } Kind;

typedef struct {
  const char *name;
  Kind kind;
  size_t off;       /* offset in TrainSpec */
  unsigned mask;    /* optimizers (1 << FeOptimizer) or schedules it applies to */
} Key;

#define OFF(f) offsetof(TrainSpec, f)
#define ALL_OPT 0x3Fu
#define O(x) (1u << FE_OPT_##x)
#define S(x) (1u << FE_SCHED_##x)

static const Key opt_keys[] = {
    {"lr", K_POS, OFF(lr), ALL_OPT},
    {"momentum", K_UNIT, OFF(momentum), O(SGD) | O(MOMENTUM) | O(RMSPROP)},
    {"dampening", K_UNIT, OFF(dampening), O(SGD) | O(MOMENTUM)},
    {"nesterov", K_BOOL, OFF(nesterov), O(SGD) | O(MOMENTUM)},
    {"weight_decay", K_NONNEG, OFF(weight_decay), ALL_OPT},
    {"lr_decay", K_NONNEG, OFF(lr_decay), O(ADAGRAD)},
    {"initial_accumulator_value", K_NONNEG, OFF(initial_accumulator_value), O(ADAGRAD)},
    {"eps", K_NONNEG, OFF(eps), O(ADAGRAD) | O(RMSPROP) | O(ADAM) | O(ADAMW)},
    {"alpha", K_UNIT, OFF(alpha), O(RMSPROP)},
    {"centered", K_BOOL, OFF(centered), O(RMSPROP)},
    {"betas", K_PAIR, OFF(beta1), O(ADAM) | O(ADAMW)},
    {"amsgrad", K_BOOL, OFF(amsgrad), O(ADAM) | O(ADAMW)},
};

static const Key sched_keys[] = {
    {"step_size", K_INT_POS, OFF(step_size), S(STEP)},
    {"gamma", K_POS, OFF(gamma), S(STEP)},
    {"T_max", K_INT_POS, OFF(t_max), S(COSINE)},
    {"eta_min", K_NONNEG, OFF(eta_min), S(COSINE)},
    {"warmup", K_INT_NONNEG, OFF(warmup), S(COSINE)},
    {"factor", K_UNIT, OFF(factor), S(PLATEAU)},
    {"patience", K_INT_NONNEG, OFF(patience), S(PLATEAU)},
    {"threshold", K_NONNEG, OFF(threshold), S(PLATEAU)},
    {"cooldown", K_INT_NONNEG, OFF(cooldown), S(PLATEAU)},
    {"min_lr", K_NONNEG, OFF(min_lr), S(PLATEAU)},
};

/* Positional arguments, in PyTorch's order. */
static const char *const sched_positional[][2] = {
    [FE_SCHED_CONSTANT] = {NULL, NULL},
    [FE_SCHED_STEP] = {"step_size", "gamma"},
    [FE_SCHED_COSINE] = {"T_max", "eta_min"},
    [FE_SCHED_PLATEAU] = {"factor", "patience"},
};

static bool number_of(const TrainValue *v, double *out) {
  if (v->kind != TV_NUMBER) return false;
  *out = v->num;
  return true;
}

/* Store value v for key k in t; false (reported) if it does not fit. */
static bool store(TrainSpec *t, const Key *k, const TrainValue *v) {
  char *base = (char *)t;
  double x = 0;
  if (v->kind == TV_NAME && !v->name) return false;   /* bad literal, reported */
  switch (k->kind) {
  case K_BOOL:
    if (v->kind == TV_NAME && (strcmp(v->name, "true") == 0 || strcmp(v->name, "false") == 0)) {
      *(bool *)(base + k->off) = v->name[0] == 't';
      return true;
    }
    diag_error(v->loc, "'%s' must be true or false", k->name);
    return false;
  case K_PAIR: {
    double a, b;
    const TrainValue *p = v->kind == TV_TUPLE ? v->items : NULL;
    if (!p || !p->next || p->next->next || !number_of(p, &a) || !number_of(p->next, &b)) {
      diag_error(v->loc, "'%s' must be a pair of numbers, as in (0.9, 0.999)", k->name);
      return false;
    }
    if (!(a >= 0 && a < 1) || !(b >= 0 && b < 1)) {
      diag_error(v->loc, "'%s' must be two numbers in [0, 1), got (%g, %g)", k->name, a, b);
      return false;
    }
    ((double *)(base + k->off))[0] = a;
    ((double *)(base + k->off))[1] = b;
    return true;
  }
  default:
    break;
  }
  if (!number_of(v, &x)) {
    diag_error(v->loc, "'%s' must be a number", k->name);
    return false;
  }
  switch (k->kind) {
  case K_POS:
    if (!(x > 0)) { diag_error(v->loc, "'%s' must be positive, got %g", k->name, x); return false; }
    break;
  case K_NONNEG:
    if (!(x >= 0)) { diag_error(v->loc, "'%s' must not be negative, got %g", k->name, x); return false; }
    break;
  case K_UNIT:
    if (!(x >= 0 && x < 1)) { diag_error(v->loc, "'%s' must be in [0, 1), got %g", k->name, x); return false; }
    break;
  case K_INT_POS:
  case K_INT_NONNEG:
    if (!v->is_int || x < (k->kind == K_INT_POS ? 1 : 0) || x > 1e15) {
      diag_error(v->loc, "'%s' must be a %s integer, got %g", k->name, k->kind == K_INT_POS ? "positive" : "non-negative", x);
      return false;
    }
    *(int64_t *)(base + k->off) = (int64_t)x;
    return true;
  default:
    break;
  }
  *(double *)(base + k->off) = x;
  return true;
}

/* Match name(args) against a key table for the chosen optimizer or schedule. */
static void apply_args(TrainSpec *t, const TrainItem *it, const Key *keys, int nkeys, unsigned bit,
                       const char *const *positional, int npositional, const char *fname) {
  const char *seen[32];
  int nseen = 0, pos = 0;
  for (const TrainArg *g = it->args; g; g = g->next) {
    const char *name = g->name;
    if (!name) {
      if (pos >= npositional || !positional[pos]) {
        diag_error(g->loc, "too many positional arguments for '%s'; name them, as in lr = 0.01", fname);
        return;
      }
      name = positional[pos++];
    }
    const Key *k = NULL;
    for (int i = 0; i < nkeys; i++)
      if (strcmp(keys[i].name, name) == 0) k = &keys[i];
    if (!k || !(k->mask & bit)) {
      char list[400];
      size_t m = 0;
      list[0] = 0;
      for (int i = 0; i < nkeys && m < sizeof list; i++)
        if (keys[i].mask & bit) m += (size_t)snprintf(list + m, sizeof list - m, "%s%s", m ? ", " : "", keys[i].name);
      diag_error(g->loc, "'%s' has no argument '%s' (it takes: %s)", fname, name, m ? list : "none");
      continue;
    }
    bool dup = false;
    for (int i = 0; i < nseen; i++)
      if (strcmp(seen[i], name) == 0) dup = true;
    if (dup) {
      diag_error(g->loc, "argument '%s' given twice", name);
      continue;
    }
    if (nseen < 32) seen[nseen++] = name;
    store(t, k, g->value);
  }
}

static bool integer_value(const TrainItem *it, int64_t lo, int64_t *out) {
  const TrainValue *v = it->value;
  if (it->has_parens || v->kind != TV_NUMBER || !v->is_int || v->num < (double)lo || v->num > 1e15) {
    if (!(v->kind == TV_NAME && !v->name))
      diag_error(v->loc, "'%s' takes an integer %s %lld", it->key, lo ? "of at least" : ">=", (long long)lo);
    return false;
  }
  *out = (int64_t)v->num;
  return true;
}

void fe_check_train(const Def *train, TrainSpec *t) {
  fe_train_defaults(t);
  t->present = true;
  t->loc = train->loc;
  static const char *const keys[] = {"optimizer", "batch", "epochs", "seed", "schedule", "clip", "weight_decay"};
  const TrainItem *seen[7] = {0};
  bool wd_line = false;
  const TrainItem *opt_item = NULL, *sched_item = NULL;
  for (const TrainItem *it = train->items; it; it = it->next) {
    int k = -1;
    for (int i = 0; i < 7; i++)
      if (strcmp(keys[i], it->key) == 0) k = i;
    if (k < 0) {
      diag_error(it->loc, "unknown train setting '%s' (expected optimizer, batch, epochs, seed, schedule, clip or weight_decay)",
                 it->key);
      continue;
    }
    if (seen[k]) {
      diag_error(it->loc, "'%s' is set twice in this train block", it->key);
      diag_note(seen[k]->loc, "first set here");
      continue;
    }
    seen[k] = it;
    const TrainValue *v = it->value;
    switch (k) {
    case 0: {   /* optimizer NAME[(args)] */
      int o = -1;
      if (v->kind == TV_NAME && v->name)
        for (int i = 0; i < 6; i++)
          if (strcmp(opt_names[i], v->name) == 0) o = i;
      if (o < 0) {
        if (!(v->kind == TV_NAME && !v->name))
          diag_error(v->loc, "unknown optimizer (expected sgd, momentum, adagrad, rmsprop, adam or adamw)");
        break;
      }
      double wd = t->weight_decay;
      optimizer_defaults(t, (FeOptimizer)o);
      if (wd_line) t->weight_decay = wd;
      opt_item = it;
      apply_args(t, it, opt_keys, (int)(sizeof opt_keys / sizeof opt_keys[0]), 1u << o, NULL, 0, v->name);
      break;
    }
    case 1: integer_value(it, 1, &t->batch); break;
    case 2: integer_value(it, 1, &t->epochs); break;
    case 3: {
      int64_t s;
      if (integer_value(it, 0, &s)) t->seed = (uint64_t)s;
      break;
    }
    case 4: {   /* schedule NAME[(args)] */
      int s = -1;
      if (v->kind == TV_NAME && v->name)
        for (int i = 0; i < 4; i++)
          if (strcmp(sched_names[i], v->name) == 0) s = i;
      if (s < 0) {
        if (!(v->kind == TV_NAME && !v->name))
          diag_error(v->loc, "unknown schedule (expected constant, step, cosine or plateau)");
        break;
      }
      t->schedule = (FeSchedule)s;
      apply_args(t, it, sched_keys, (int)(sizeof sched_keys / sizeof sched_keys[0]), 1u << s, sched_positional[s], 2,
                 v->name);
      if (s == FE_SCHED_STEP) {
        bool has = false;
        int pos = 0;
        for (const TrainArg *g = it->args; g; g = g->next) {
          if (g->name ? strcmp(g->name, "step_size") == 0 : pos == 0) has = true;
          if (!g->name) pos++;
        }
        if (!has) diag_error(it->loc, "schedule step needs step_size, as in step(step_size = 10, gamma = 0.5)");
      }
      if (s == FE_SCHED_COSINE) sched_item = it;
      break;
    }
    case 5:
    case 6: {   /* clip NUMBER / weight_decay NUMBER */
      double x;
      if (it->has_parens || !number_of(v, &x) || !(x >= 0)) {
        if (!(v->kind == TV_NAME && !v->name)) diag_error(v->loc, "'%s' takes a non-negative number", it->key);
        break;
      }
      if (k == 5) {
        t->clip = x;
      } else {
        if (opt_item)
          for (const TrainArg *g = opt_item->args; g; g = g->next)
            if (g->name && strcmp(g->name, "weight_decay") == 0) {
              diag_error(it->loc, "weight_decay is set twice: here and in the optimizer's arguments");
              diag_note(g->loc, "set here");
            }
        t->weight_decay = x;
        wd_line = true;
      }
      break;
    }
    }
  }
  if (wd_line && opt_item && seen[0] && seen[6] && seen[6]->loc.line < seen[0]->loc.line) {
    for (const TrainArg *g = opt_item->args; g; g = g->next)
      if (g->name && strcmp(g->name, "weight_decay") == 0) {
        diag_error(seen[6]->loc, "weight_decay is set twice: here and in the optimizer's arguments");
        diag_note(g->loc, "set here");
      }
  }
  /* The warm-up runs inside T_max. Without T_max, T_max follows the epochs, which the
   * command line may change: bpcc train checks that case (runtime/schedule.c). */
  if (sched_item && t->t_max > 0 && t->warmup >= t->t_max) {
    SrcLoc at = sched_item->loc;
    for (const TrainArg *g = sched_item->args; g; g = g->next)
      if (g->name && strcmp(g->name, "warmup") == 0) at = g->loc;
    diag_error(at, "'warmup' (%lld epochs) must be below T_max (%lld)", (long long)t->warmup, (long long)t->t_max);
  }
  if (t->t_max == 0) t->t_max = t->epochs;
}

void fe_print_train(FILE *o, const TrainSpec *t) {
  fprintf(o, "  train:\n    optimizer  %s(lr=%g", fe_optimizer_name(t->optimizer), t->lr);
  switch (t->optimizer) {
  case FE_OPT_SGD:
  case FE_OPT_MOMENTUM:
    fprintf(o, ", momentum=%g, dampening=%g, nesterov=%s", t->momentum, t->dampening, t->nesterov ? "true" : "false");
    break;
  case FE_OPT_ADAGRAD:
    fprintf(o, ", lr_decay=%g, initial_accumulator_value=%g, eps=%g", t->lr_decay, t->initial_accumulator_value, t->eps);
    break;
  case FE_OPT_RMSPROP:
    fprintf(o, ", alpha=%g, eps=%g, momentum=%g, centered=%s", t->alpha, t->eps, t->momentum, t->centered ? "true" : "false");
    break;
  case FE_OPT_ADAM:
  case FE_OPT_ADAMW:
    fprintf(o, ", betas=(%g, %g), eps=%g, amsgrad=%s", t->beta1, t->beta2, t->eps, t->amsgrad ? "true" : "false");
    break;
  }
  fprintf(o, ", weight_decay=%g)\n", t->weight_decay);
  fprintf(o, "    batch      %lld\n    epochs     %lld\n    seed       %llu\n", (long long)t->batch,
          (long long)t->epochs, (unsigned long long)t->seed);
  fprintf(o, "    schedule   %s", fe_schedule_name(t->schedule));
  switch (t->schedule) {
  case FE_SCHED_CONSTANT: break;
  case FE_SCHED_STEP: fprintf(o, "(step_size=%lld, gamma=%g)", (long long)t->step_size, t->gamma); break;
  case FE_SCHED_COSINE:
    fprintf(o, "(T_max=%lld, eta_min=%g", (long long)t->t_max, t->eta_min);
    if (t->warmup > 0) fprintf(o, ", warmup=%lld", (long long)t->warmup);
    fputc(')', o);
    break;
  case FE_SCHED_PLATEAU:
    fprintf(o, "(factor=%g, patience=%lld, threshold=%g, cooldown=%lld, min_lr=%g)", t->factor, (long long)t->patience,
            t->threshold, (long long)t->cooldown, t->min_lr);
    break;
  }
  fputc('\n', o);
  if (t->clip > 0) fprintf(o, "    clip       %g (max global gradient norm)\n", t->clip);
  else fprintf(o, "    clip       none\n");
}
