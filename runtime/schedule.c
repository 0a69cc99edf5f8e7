/* runtime/schedule.c — learning-rate schedules and the `NAME(k = v, ...)` settings of
 * `--optimizer` and `--schedule`.
 *
 * The schedules are PyTorch's, stepped once per epoch as PyTorch's examples step them
 * (scheduler.step() after each epoch): the learning rate of epoch e (0-based) is
 *   constant   base
 *   step       base * gamma^floor(e / step_size)                      (StepLR)
 *   cosine     e <  warmup: base * (e + 1) / warmup                    (linear warm-up)
 *              e >= warmup: eta_min + (base - eta_min) (1 + cos(pi (e - warmup) /
 *                           (t_max - warmup))) / 2,  e - warmup capped at t_max - warmup
 *                                                        (CosineAnnealingLR after warm-up)
 *   plateau    ReduceLROnPlateau(mode="min", threshold_mode="rel") on the validation loss
 *              (the training loss when there is no validation set): after an epoch whose
 *              loss is not below best * (1 - threshold), a bad epoch is counted; more
 *              than `patience` bad epochs in a row multiply the rate by `factor` (not
 *              below min_lr), then `cooldown` epochs count no bad epochs.
 * Everything a schedule remembers is in BprtSchedule, so a checkpoint can hold it and a
 * resumed run continues exactly. */
#include "runtime/train.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

const char *const bprt_schedule_names[BPRT_SCHED__COUNT] = {"constant", "step", "cosine", "plateau"};

void bprt_schedule_init(BprtSchedule *s, BprtScheduleKind kind, double base_lr) {
  memset(s, 0, sizeof *s);
  s->kind = kind;
  s->base_lr = base_lr;
  s->step_size = 1;
  s->gamma = 0.1;
  s->t_max = 0; /* 0: the number of epochs (set by the caller) */
  s->eta_min = 0;
  s->warmup = 0;
  s->factor = 0.1;
  s->patience = 10;
  s->threshold = 1e-4;
  s->cooldown = 0;
  s->min_lr = 0;
  s->lr = base_lr;
  s->best = INFINITY;
  s->num_bad = 0;
  s->cooldown_left = 0;
}

int bprt_schedule_check(const BprtSchedule *s) {
  if (!(s->base_lr > 0) || !isfinite(s->base_lr))
    return bprt_set_error("learning rate %g: must be a positive finite number", s->base_lr);
  switch (s->kind) {
  case BPRT_SCHED_CONSTANT: return 0;
  case BPRT_SCHED_STEP:
    if (s->step_size < 1) return bprt_set_error("schedule step: step_size %lld must be >= 1", (long long)s->step_size);
    if (!(s->gamma > 0) || !isfinite(s->gamma)) return bprt_set_error("schedule step: gamma %g must be > 0", s->gamma);
    return 0;
  case BPRT_SCHED_COSINE:
    if (s->t_max < 1) return bprt_set_error("schedule cosine: t_max %lld must be >= 1", (long long)s->t_max);
    if (s->warmup < 0 || s->warmup >= s->t_max)
      return bprt_set_error("schedule cosine: warmup %lld must be >= 0 and below t_max %lld", (long long)s->warmup,
                            (long long)s->t_max);
    if (!(s->eta_min >= 0) || !isfinite(s->eta_min))
      return bprt_set_error("schedule cosine: eta_min %g must be >= 0", s->eta_min);
    return 0;
  case BPRT_SCHED_PLATEAU:
    if (!(s->factor > 0 && s->factor < 1)) return bprt_set_error("schedule plateau: factor %g must be in (0, 1)", s->factor);
    if (s->patience < 0) return bprt_set_error("schedule plateau: patience %lld must be >= 0", (long long)s->patience);
    if (s->cooldown < 0) return bprt_set_error("schedule plateau: cooldown %lld must be >= 0", (long long)s->cooldown);
    if (!(s->threshold >= 0) || !isfinite(s->threshold))
      return bprt_set_error("schedule plateau: threshold %g must be >= 0", s->threshold);
    if (!(s->min_lr >= 0) || !isfinite(s->min_lr)) return bprt_set_error("schedule plateau: min_lr %g must be >= 0", s->min_lr);
    return 0;
  default: return bprt_set_error("unknown schedule kind %d", (int)s->kind);
  }
}

double bprt_schedule_lr(const BprtSchedule *s, int64_t epoch) {
  switch (s->kind) {
  case BPRT_SCHED_STEP: return s->base_lr * pow(s->gamma, (double)(epoch / s->step_size));
  case BPRT_SCHED_COSINE: {
    /* base * (e+1)/warmup  ->  eta_min + (base - eta_min) (1 + cos(pi t / T)) / 2 */
    if (epoch < s->warmup) return s->base_lr * (double)(epoch + 1) / (double)s->warmup;
    int64_t t = epoch - s->warmup, T = s->t_max - s->warmup;
    if (t > T) t = T;
    return s->eta_min + (s->base_lr - s->eta_min) * (1 + cos(M_PI * (double)t / (double)T)) / 2;
  }
  case BPRT_SCHED_PLATEAU: return s->lr;
  default: return s->base_lr;
  }
}

void bprt_schedule_epoch_end(BprtSchedule *s, int64_t epoch, double metric) {
  if (s->kind != BPRT_SCHED_PLATEAU) {
    s->lr = bprt_schedule_lr(s, epoch + 1);
    return;
  }
  /* torch.optim.lr_scheduler.ReduceLROnPlateau.step(metric), mode min, rel threshold.
   * A NaN metric is never an improvement (as in PyTorch: NaN < x is false). */
  if (metric < s->best * (1 - s->threshold)) {
    s->best = metric;
    s->num_bad = 0;
  } else {
    s->num_bad++;
  }
  if (s->cooldown_left > 0) {
    s->cooldown_left--;
    s->num_bad = 0;
  }
  if (s->num_bad > s->patience) {
    double new_lr = fmax(s->lr * s->factor, s->min_lr);
    if (s->lr - new_lr > 1e-8) s->lr = new_lr; /* PyTorch's eps */
    s->cooldown_left = s->cooldown;
    s->num_bad = 0;
  }
}

/* ------------------------------------------------------- NAME(k = v, ...) settings */

/* The small grammar shared by --optimizer and --schedule:
 *   spec  = NAME [ "(" [ arg { "," arg } ] ")" ]
 *   arg   = KEY "=" value
 *   value = NUMBER | "true" | "false" | "(" NUMBER { "," NUMBER } ")"
 * Spaces are allowed between tokens. */
typedef struct {
  const char *spec, *p;
  const char *what;   /* "--optimizer" */
  const char *key_at; /* the current argument's key, for errors about the key */
} Lex;

/* An error about the key of the current argument points at the key. */
static int key_error(Lex *l, const char *msg);

static void skip_ws(Lex *l) {
  while (*l->p && isspace((unsigned char)*l->p)) l->p++;
}

static int lex_error(Lex *l, const char *msg) {
  return bprt_set_error("%s '%s': %s at column %d", l->what, l->spec, msg, (int)(l->p - l->spec) + 1);
}

static int key_error(Lex *l, const char *msg) {
  l->p = l->key_at;
  return lex_error(l, msg);
}

static int lex_ident(Lex *l, char *buf, size_t n) {
  skip_ws(l);
  size_t k = 0;
  if (!isalpha((unsigned char)*l->p) && *l->p != '_') return lex_error(l, "expected a name");
  while (isalnum((unsigned char)*l->p) || *l->p == '_') {
    if (k + 1 >= n) return lex_error(l, "name too long");
    buf[k++] = *l->p++;
  }
  buf[k] = 0;
  return 0;
}

static int lex_number(Lex *l, double *out) {
  skip_ws(l);
  char *end;
  errno = 0;
  double v = strtod(l->p, &end);
  if (end == l->p) return lex_error(l, "expected a number");
  if (errno == ERANGE || !isfinite(v)) return lex_error(l, "number out of range");
  /* strtod accepts "nan", "inf", hex: only plain decimal numbers are settings. */
  for (const char *c = l->p; c < end; c++)
    if (!(isdigit((unsigned char)*c) || strchr("+-.eE", *c))) return lex_error(l, "expected a decimal number");
  l->p = end;
  *out = v;
  return 0;
}

/* One value: a number, true/false, or a tuple of up to 4 numbers. */
typedef struct {
  int n;          /* 1 for a scalar or boolean, else the tuple length */
  bool is_bool, is_tuple;
  double v[4];
} Value;

static int lex_value(Lex *l, Value *v) {
  memset(v, 0, sizeof *v);
  skip_ws(l);
  if (*l->p == '(') {
    l->p++;
    v->is_tuple = true;
    for (;;) {
      if (v->n == 4) return lex_error(l, "tuple too long");
      if (lex_number(l, &v->v[v->n++])) return -1;
      skip_ws(l);
      if (*l->p == ',') {
        l->p++;
        continue;
      }
      if (*l->p == ')') {
        l->p++;
        return 0;
      }
      return lex_error(l, "expected ',' or ')' in a tuple");
    }
  }
  if (isalpha((unsigned char)*l->p)) {
    char word[16];
    const char *start = l->p;
    if (lex_ident(l, word, sizeof word)) word[0] = 0;
    if (!strcmp(word, "true") || !strcmp(word, "True")) v->v[0] = 1;
    else if (!strcmp(word, "false") || !strcmp(word, "False")) v->v[0] = 0;
    else {
      l->p = start;
      return lex_error(l, "expected a number, true or false");
    }
    v->n = 1;
    v->is_bool = true;
    return 0;
  }
  v->n = 1;
  return lex_number(l, &v->v[0]);
}

/* Parse "NAME(a, b, k = v, ...)" calling fn(ctx, l, key, value) per argument.
 * Positional arguments come first and take the names positional(ctx)[0], [1], ... (in
 * PyTorch's order), as in the train block. */
typedef int (*ArgFn)(void *ctx, Lex *l, const char *key, const Value *v);
typedef const char *const *(*PositionalFn)(void *ctx);

/* Is the text at l->p a keyword argument `NAME =`? */
static bool at_keyword(const Lex *l) {
  const char *p = l->p;
  while (*p && isspace((unsigned char)*p)) p++;
  if (!isalpha((unsigned char)*p) && *p != '_') return false;
  while (isalnum((unsigned char)*p) || *p == '_') p++;
  while (*p && isspace((unsigned char)*p)) p++;
  return *p == '=';
}

static int parse_call(Lex *l, char *name, size_t nname, ArgFn fn, void *ctx, int (*on_name)(void *, Lex *, const char *),
                      PositionalFn positional) {
  if (lex_ident(l, name, nname)) return -1;
  if (on_name(ctx, l, name)) return -1;
  skip_ws(l);
  if (*l->p == '(') {
    l->p++;
    skip_ws(l);
    if (*l->p == ')') {
      l->p++;
    } else {
      int npos = 0;
      bool seen_keyword = false;
      for (;;) {
        char key[64];
        skip_ws(l);
        l->key_at = l->p;
        if (at_keyword(l)) {
          if (lex_ident(l, key, sizeof key)) return -1;
          skip_ws(l);
          l->p++; /* '=' */
          seen_keyword = true;
        } else {
          if (*l->p == ')' || *l->p == ',' || !*l->p) return lex_error(l, "expected an argument");
          if (isalpha((unsigned char)*l->p) || *l->p == '_') {
            const char *w = l->p;
            while (isalnum((unsigned char)*w) || *w == '_') w++;
            size_t n = (size_t)(w - l->p);
            bool is_bool = (n == 4 && (!strncmp(l->p, "true", 4) || !strncmp(l->p, "True", 4))) ||
                           (n == 5 && (!strncmp(l->p, "false", 5) || !strncmp(l->p, "False", 5)));
            if (!is_bool) {
              l->p = w;
              skip_ws(l);
              return lex_error(l, "expected '='");
            }
          }
          const char *const *names = positional(ctx);
          int avail = 0;
          while (names && names[avail]) avail++;
          if (seen_keyword) return lex_error(l, "a positional argument after a keyword argument");
          if (npos >= avail) return lex_error(l, "too many positional arguments; name them, as in lr = 0.01");
          snprintf(key, sizeof key, "%s", names[npos++]);
        }
        Value v;
        const char *at = l->p;
        if (lex_value(l, &v)) return -1;
        const char *after = l->p;
        l->p = at; /* errors about the value point at it */
        skip_ws(l);
        if (fn(ctx, l, key, &v)) return -1;
        l->p = after;
        skip_ws(l);
        if (*l->p == ',') {
          l->p++;
          continue;
        }
        if (*l->p == ')') {
          l->p++;
          break;
        }
        return lex_error(l, "expected ',' or ')'");
      }
    }
  }
  skip_ws(l);
  if (*l->p) return lex_error(l, "unexpected text");
  return 0;
}

/* ------------------------------------------------------------------- optimizers */

/* The optimizer vocabulary is runtime/optimizers.c's tables (model.h). */

static int opt_on_name(void *ctx, Lex *l, const char *name) {
  BprtOptSpec *o = ctx;
  int k = bprt_optimizer_lookup(name);
  if (k < 0) {
    char msg[200];
    size_t m = (size_t)snprintf(msg, sizeof msg, "unknown optimizer (known:");
    for (int i = 0; i < BPRT_OPT__COUNT && m < sizeof msg; i++)
      m += (size_t)snprintf(msg + m, sizeof msg - m, "%s %s", i ? "," : "", bprt_optimizers[i].name);
    if (m < sizeof msg) snprintf(msg + m, sizeof msg - m, ")");
    l->p -= strlen(name);
    return lex_error(l, msg);
  }
  o->kind = k;
  return 0;
}

static int opt_arg(void *ctx, Lex *l, const char *key, const Value *v) {
  BprtOptSpec *o = ctx;
  char msg[200];
  bool elsewhere;
  const bprt_opt_arg *a = bprt_opt_arg_lookup(o->kind, key, &elsewhere);
  if (!a) {
    if (elsewhere) snprintf(msg, sizeof msg, "%s takes no argument '%s'", bprt_optimizers[o->kind].name, key);
    else snprintf(msg, sizeof msg, "unknown argument '%s' for %s", key, bprt_optimizers[o->kind].name);
    return key_error(l, msg);
  }
  if (a->index < 0) {   /* a torch.optim flag bpcc's update kernels do not implement */
    if (v->is_bool && v->v[0] == 0) return 0;
    if (!v->is_bool) return lex_error(l, "expected true or false");
    snprintf(msg, sizeof msg, "%s = true is not supported by bpcc's update kernels", key);
    return lex_error(l, msg);
  }
  bool is_bool = bprt_hypers[a->index].range == BPRT_RANGE_BOOL;
  if (a->count == 2) {   /* betas = (b1, b2) */
    if (!v->is_tuple || v->n != 2) return lex_error(l, "betas must be a pair (beta1, beta2)");
  } else if (v->is_tuple || is_bool != v->is_bool) {
    return lex_error(l, is_bool ? "expected true or false" : "expected a number");
  }
  for (int j = 0; j < a->count; j++) {
    const char *bad = bprt_hyper_check(a->index + j, v->v[j]);
    if (bad) {
      snprintf(msg, sizeof msg, "%s %s", a->count == 2 ? key : bprt_hypers[a->index].name, bad);
      return lex_error(l, msg);
    }
  }
  for (int j = 0; j < a->count; j++) {
    o->hyper[a->index + j] = v->v[j];
    o->set[a->index + j] = true;
  }
  return 0;
}

/* torch.optim's first argument after the parameters is lr. */
static const char *const *opt_positional(void *ctx) {
  (void)ctx;
  static const char *const names[] = {"lr", NULL};
  return names;
}

int bprt_optimizer_parse(const char *spec, BprtOptSpec *out) {
  memset(out, 0, sizeof *out);
  if (!spec) return bprt_set_error("--optimizer: missing value");
  Lex l = {spec, spec, "--optimizer", spec};
  char name[32];
  if (parse_call(&l, name, sizeof name, opt_arg, out, opt_on_name, opt_positional)) return -1;
  bprt_optimizer_config c;   /* the arguments over the optimizer's defaults */
  bprt_optimizer_init(&c, out->kind);
  bprt_optimizer_apply(out, c.hyper);
  const char *bad = bprt_optimizer_check(out->kind, c.hyper);
  if (bad) return bprt_set_error("--optimizer '%s': %s", spec, bad);
  return 0;
}

void bprt_optimizer_apply(const BprtOptSpec *o, double *hyper) {
  for (int i = 0; i < BPRT_H__COUNT; i++)
    if (o->set[i]) hyper[i] = o->hyper[i];
}

/* -------------------------------------------------------------------- schedules */

typedef struct {
  BprtSchedule *s;
  bool seen_t_max;
} SchedCtx;

static int sched_on_name(void *ctx, Lex *l, const char *name) {
  SchedCtx *c = ctx;
  for (int k = 0; k < BPRT_SCHED__COUNT; k++)
    if (!strcmp(name, bprt_schedule_names[k])) {
      double lr = c->s->base_lr;
      bprt_schedule_init(c->s, (BprtScheduleKind)k, lr);
      return 0;
    }
  l->p -= strlen(name);
  return lex_error(l, "unknown schedule (known: constant, step, cosine, plateau)");
}

static int sched_arg(void *ctx, Lex *l, const char *key, const Value *v) {
  SchedCtx *c = ctx;
  BprtSchedule *s = c->s;
  char msg[200];
  struct {
    const char *key;
    BprtScheduleKind kind;
    bool is_int;
    void *field;
  } table[] = {
      {"step_size", BPRT_SCHED_STEP, true, &s->step_size}, {"gamma", BPRT_SCHED_STEP, false, &s->gamma},
      {"T_max", BPRT_SCHED_COSINE, true, &s->t_max},       {"t_max", BPRT_SCHED_COSINE, true, &s->t_max},
      {"eta_min", BPRT_SCHED_COSINE, false, &s->eta_min},
      {"warmup", BPRT_SCHED_COSINE, true, &s->warmup},     {"patience", BPRT_SCHED_PLATEAU, true, &s->patience},
      {"factor", BPRT_SCHED_PLATEAU, false, &s->factor},   {"threshold", BPRT_SCHED_PLATEAU, false, &s->threshold},
      {"cooldown", BPRT_SCHED_PLATEAU, true, &s->cooldown}, {"min_lr", BPRT_SCHED_PLATEAU, false, &s->min_lr},
  };
  for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
    if (strcmp(table[i].key, key)) continue;
    if (table[i].kind != s->kind) break;
    if (v->is_tuple || v->is_bool) return lex_error(l, "expected a number");
    if (table[i].is_int) {
      if (v->v[0] != floor(v->v[0])) {
        snprintf(msg, sizeof msg, "%s must be an integer", key);
        return lex_error(l, msg);
      }
      if (fabs(v->v[0]) > 1e15) {   /* (the range of a train block's integers) */
        snprintf(msg, sizeof msg, "%s %g is out of range (at most 1e15)", key, v->v[0]);
        return lex_error(l, msg);
      }
      *(int64_t *)table[i].field = (int64_t)v->v[0];
      if (!strcmp(key, "t_max") || !strcmp(key, "T_max")) c->seen_t_max = true;
    } else {
      *(double *)table[i].field = v->v[0];
    }
    return 0;
  }
  snprintf(msg, sizeof msg, "unknown argument '%s' for schedule %s", key, bprt_schedule_names[s->kind]);
  return key_error(l, msg);
}

/* PyTorch's order, as the train block: StepLR(step_size, gamma), CosineAnnealingLR(T_max,
 * eta_min), ReduceLROnPlateau(factor, patience) (bpcc's order for the last). */
static const char *const *sched_positional(void *ctx) {
  static const char *const pos[BPRT_SCHED__COUNT][3] = {
      {NULL, NULL, NULL}, {"step_size", "gamma", NULL}, {"T_max", "eta_min", NULL}, {"factor", "patience", NULL}};
  return pos[((SchedCtx *)ctx)->s->kind];
}

int bprt_schedule_parse(const char *spec, BprtSchedule *s, bool *t_max_set) {
  if (!spec) return bprt_set_error("--schedule: missing value");
  SchedCtx c = {s, false};
  Lex l = {spec, spec, "--schedule", spec};
  char name[32];
  if (parse_call(&l, name, sizeof name, sched_arg, &c, sched_on_name, sched_positional)) return -1;
  if (t_max_set) *t_max_set = c.seen_t_max;
  return 0;
}
