/* frontend/train_block.c — the `train` block, checked into a TrainSpec.
 *
 *   train mnist_mlp {
 *       optimizer adam(lr = 1e-3, betas = (0.9, 0.999))
 *       batch 128
 *       epochs 10             (or: steps 2000, for data without epochs: text)
 *       seed 42
 *       schedule cosine(T_max = 10, warmup = 1)
 *       clip 1.0
 *       weight_decay 1e-4
 *       precision bf16        (or f16, f32: the training step's, passes/precision.c)
 *       loss_scale dynamic    (or: off, or a constant such as 1024)
 *   }
 *
 * Optimizers and schedules take PyTorch's keyword names and defaults, so a user can
 * copy hyperparameters from a PyTorch script. Each key may appear once. */
#include "frontend/frontend.h"

#include <math.h>
#include <string.h>

static const char *const sched_names[] = {"constant", "step", "cosine", "plateau"};

const char *fe_schedule_name(FeSchedule s) { return sched_names[s]; }

void fe_train_defaults(TrainSpec *t) {
  memset(t, 0, sizeof *t);
  t->loc = SRCLOC_NONE;
  bprt_optimizer_init(&t->opt, BPRT_OPT_ADAM);
  t->batch = 32;
  t->accumulate = 1;
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
  t->loss_scale_mode = BPRT_LOSS_SCALE_OFF;
  t->loss_scale = 1;
}

/* What a keyword argument may hold. */
typedef enum { K_POS, K_NONNEG, K_UNIT, K_INT_POS, K_INT_NONNEG } Kind;

typedef struct {
  const char *name;
  Kind kind;
  size_t off;       /* offset in TrainSpec */
  unsigned mask;    /* schedules it applies to (1 << FeSchedule) */
} Key;

#define OFF(f) offsetof(TrainSpec, f)
#define S(x) (1u << FE_SCHED_##x)

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

/* One keyword argument of `optimizer NAME(k = v, ...)`, through the optimizer vocabulary
 * (runtime/optimizers.c): names, ranges and the flags bpcc accepts only as false are
 * the ones `--optimizer` and set_hyper use. */
static void store_opt_arg(TrainSpec *t, const char *name, const bprt_opt_arg *a, const TrainValue *v) {
  if (v->kind == TV_NAME && !v->name) return;   /* bad literal, reported */
  bool is_bool = a->index < 0 || bprt_hypers[a->index].range == BPRT_RANGE_BOOL;
  double x[2] = {0, 0};
  if (a->count == 2) {
    const TrainValue *p = v->kind == TV_TUPLE ? v->items : NULL;
    if (!p || !p->next || p->next->next || !number_of(p, &x[0]) || !number_of(p->next, &x[1])) {
      diag_error(v->loc, "'%s' must be a pair of numbers, as in (0.9, 0.999)", name);
      return;
    }
  } else if (is_bool) {
    if (!(v->kind == TV_NAME && (strcmp(v->name, "true") == 0 || strcmp(v->name, "false") == 0))) {
      diag_error(v->loc, "'%s' must be true or false", name);
      return;
    }
    x[0] = v->name[0] == 't';
  } else if (!number_of(v, &x[0])) {
    diag_error(v->loc, "'%s' must be a number", name);
    return;
  }
  if (a->index < 0) {   /* a torch.optim flag bpcc's update kernels do not implement */
    if (x[0] != 0)
      diag_error(v->loc, "'%s = true' is not supported by bpcc's update kernels (only %s = false)", name, name);
    return;
  }
  for (int j = 0; j < a->count; j++) {
    const char *bad = bprt_hyper_check(a->index + j, x[j]);
    if (bad) {
      if (a->count == 2) diag_error(v->loc, "'%s' %s, got (%g, %g)", name, bad, x[0], x[1]);
      else diag_error(v->loc, "'%s' %s, got %g", name, bad, x[0]);
      return;
    }
  }
  for (int j = 0; j < a->count; j++) t->opt.hyper[a->index + j] = x[j];
}

/* The arguments of `optimizer NAME(...)`: keyword only (torch.optim's first positional
 * argument is the parameters). */
static void apply_opt_args(TrainSpec *t, const TrainItem *it, const char *fname) {
  const char *seen[32];
  int nseen = 0;
  for (const TrainArg *g = it->args; g; g = g->next) {
    if (!g->name) {
      diag_error(g->loc, "too many positional arguments for '%s'; name them, as in lr = 0.01", fname);
      continue;
    }
    const bprt_opt_arg *a = bprt_opt_arg_lookup(t->opt.kind, g->name, NULL);
    if (!a) {
      char list[400];
      diag_error(g->loc, "'%s' has no argument '%s' (it takes: %s)", fname, g->name,
                 bprt_opt_arg_list(t->opt.kind, list, sizeof list));
      continue;
    }
    bool dup = false;
    for (int i = 0; i < nseen; i++)
      if (strcmp(seen[i], g->name) == 0) dup = true;
    if (dup) {
      diag_error(g->loc, "argument '%s' given twice", g->name);
      continue;
    }
    if (nseen < 32) seen[nseen++] = g->name;
    store_opt_arg(t, g->name, a, g->value);
  }
}

/* Match name(args) against the key table of the chosen schedule. */
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
  static const char *const keys[] = {"optimizer", "batch", "epochs", "seed", "schedule", "clip", "weight_decay", "steps",
                                     "precision", "loss_scale", "accumulate"};
  enum { NKEYS = (int)(sizeof keys / sizeof keys[0]) };
  const TrainItem *seen[NKEYS] = {0};
  bool wd_line = false;
  const TrainItem *opt_item = NULL, *sched_item = NULL;
  for (const TrainItem *it = train->items; it; it = it->next) {
    int k = -1;
    for (int i = 0; i < NKEYS; i++)
      if (strcmp(keys[i], it->key) == 0) k = i;
    if (k < 0) {
      diag_error(it->loc,
                 "unknown train setting '%s' (expected optimizer, batch, epochs, steps, seed, schedule, clip, weight_decay, "
                 "precision, loss_scale or accumulate)",
                 it->key);
      continue;
    }
    /* a run is counted in epochs or in steps, not both */
    if ((k == 2 && seen[7]) || (k == 7 && seen[2])) {
      diag_error(it->loc, "'%s' and '%s' exclude each other (a run is counted in epochs or in steps)", it->key,
                 seen[k == 2 ? 7 : 2]->key);
      diag_note(seen[k == 2 ? 7 : 2]->loc, "'%s' set here", seen[k == 2 ? 7 : 2]->key);
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
      int o = v->kind == TV_NAME && v->name ? bprt_optimizer_lookup(v->name) : -1;
      if (o < 0) {
        if (!(v->kind == TV_NAME && !v->name)) {
          char list[200];
          size_t m = 0;
          for (int i = 0; i < BPRT_OPT__COUNT && m < sizeof list; i++)
            m += (size_t)snprintf(list + m, sizeof list - m, "%s%s", i == 0 ? "" : i == BPRT_OPT__COUNT - 1 ? " or " : ", ",
                                  bprt_optimizers[i].name);
          diag_error(v->loc, "unknown optimizer (expected %s)", list);
        }
        break;
      }
      double wd = t->opt.hyper[BPRT_H_WEIGHT_DECAY], clip = t->opt.hyper[BPRT_H_CLIP];
      bprt_optimizer_init(&t->opt, o);
      if (wd_line) t->opt.hyper[BPRT_H_WEIGHT_DECAY] = wd;
      t->opt.hyper[BPRT_H_CLIP] = clip;
      opt_item = it;
      apply_opt_args(t, it, v->name);
      const char *bad = bprt_optimizer_check(o, t->opt.hyper);
      if (bad) diag_error(it->loc, "%s: %s", v->name, bad);
      break;
    }
    case 1: integer_value(it, 1, &t->batch); break;
    case 10: integer_value(it, 1, &t->accumulate); break;   /* micro-batches per step */
    case 2: integer_value(it, 1, &t->epochs); break;
    case 7: integer_value(it, 1, &t->steps); break;
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
    case 9: {   /* loss_scale dynamic | off | NUMBER: the vocabulary of --loss-scale */
      if (v->kind == TV_NAME && !v->name) break;   /* bad literal, reported */
      int mode = -1;
      double scale = 1;
      if (it->has_parens) {
        diag_error(v->loc, "'loss_scale' takes dynamic, off or a positive number, without arguments");
      } else if (v->kind == TV_NUMBER) {
        if (!(isfinite(v->num) && v->num > 0))
          diag_error(v->loc, "'loss_scale' must be dynamic, off or a positive number, got %g", v->num);
        else if (bprt_loss_scale_check(v->num))
          diag_error(v->loc, "'loss_scale' %s, got %g", bprt_loss_scale_check(v->num), v->num);
        else
          mode = BPRT_LOSS_SCALE_FIXED, scale = v->num;
      } else if (v->kind == TV_NAME && (!strcmp(v->name, "dynamic") || !strcmp(v->name, "off"))) {
        bprt_loss_scale_parse(v->name, &mode, &scale);
      } else {
        diag_error(v->loc, "'loss_scale' must be dynamic, off or a positive number");
      }
      if (mode >= 0) {
        t->loss_scale_set = true;
        t->loss_scale_mode = mode;
        t->loss_scale = scale;
      }
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
        t->opt.hyper[BPRT_H_CLIP] = x;
      } else {
        t->opt.hyper[BPRT_H_WEIGHT_DECAY] = x;
        wd_line = true;
      }
      break;
    }
    case 8: {   /* precision f32 | bf16 | f16 */
      static const struct { const char *name; DType dt; } precisions[] = {{"f32", DT_F32}, {"bf16", DT_BF16}, {"f16", DT_F16}};
      if (v->kind == TV_NAME && !v->name) break;   /* bad literal, reported */
      int p = -1;
      for (int i = 0; i < 3 && v->kind == TV_NAME && !it->has_parens; i++)
        if (strcmp(precisions[i].name, v->name) == 0) p = i;
      if (p >= 0) t->precision = precisions[p].dt;
      else if (v->kind == TV_NAME && !it->has_parens) diag_error(v->loc, "unknown precision '%s' (expected f32, bf16 or f16)", v->name);
      else diag_error(v->loc, "'precision' takes f32, bf16 or f16");
      break;
    }
    }
  }
  /* clip and weight_decay may be a line of the block or an argument of the optimizer,
   * not both (whichever comes first) */
  for (int k = 5; k <= 6 && opt_item; k++) {
    if (!seen[k]) continue;
    for (const TrainArg *g = opt_item->args; g; g = g->next)
      if (g->name && strcmp(g->name, keys[k]) == 0) {
        diag_error(seen[k]->loc, "%s is set twice: here and in the optimizer's arguments", keys[k]);
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
  if (t->t_max == 0) t->t_max = t->steps > 0 ? t->steps : t->epochs;
}

void fe_print_train(FILE *o, const TrainSpec *t) {
  /* optimizer NAME(every argument it takes, in the vocabulary's order; clip below) */
  const double *h = t->opt.hyper;
  fprintf(o, "  train:\n    optimizer  %s(", bprt_optimizers[t->opt.kind].name);
  bool first = true;
  for (const bprt_opt_arg *a = bprt_opt_args; a->name; a++) {
    if (!(a->optimizers & (1u << t->opt.kind)) || a->index == BPRT_H_CLIP || (a->index < 0 && !strcmp(a->name, "maximize")) ||
        (a->index < 0 && !strcmp(a->name, "foreach")))
      continue;
    fprintf(o, "%s%s=", first ? "" : ", ", a->name);
    first = false;
    if (a->index < 0) fprintf(o, "false");
    else if (a->count == 2) fprintf(o, "(%g, %g)", h[a->index], h[a->index + 1]);
    else if (bprt_hypers[a->index].range == BPRT_RANGE_BOOL) fprintf(o, "%s", h[a->index] != 0 ? "true" : "false");
    else fprintf(o, "%g", h[a->index]);
  }
  fprintf(o, ")\n");
  fprintf(o, "    batch      %lld\n", (long long)t->batch);
  if (t->accumulate > 1) fprintf(o, "    accumulate %lld\n", (long long)t->accumulate);
  if (t->steps > 0) fprintf(o, "    steps      %lld\n", (long long)t->steps);
  else fprintf(o, "    epochs     %lld\n", (long long)t->epochs);
  fprintf(o, "    seed       %llu\n", (unsigned long long)t->seed);
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
  if (h[BPRT_H_CLIP] > 0) fprintf(o, "    clip       %g (max global gradient norm)\n", h[BPRT_H_CLIP]);
  else fprintf(o, "    clip       none\n");
  if (t->precision != DT_F32) fprintf(o, "    precision  %s (the training step's products and kept activations)\n", ir_dtype_name(t->precision));
  if (t->loss_scale_set && t->loss_scale_mode == BPRT_LOSS_SCALE_FIXED) fprintf(o, "    loss_scale %g (fixed)\n", t->loss_scale);
  else if (t->loss_scale_set) fprintf(o, "    loss_scale %s\n", bprt_loss_scale_names[t->loss_scale_mode]);
}
