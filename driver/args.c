/* driver/args.c — the command line every command shares.
 *
 * The options below set the one PipelineOptions that a command hands to the pipeline.
 * Every command accepts them where they change what it does; where an option would
 * change nothing, it is an error that says what the option is for, so that a command
 * line never silently means less than it says:
 *
 *   option                       applies when the command ...
 *   --model NAME                 always
 *   -fno-softmax-xent, -fno-log-softmax, -fsoftmax-xent, -fno-fuse-attention
 *                                runs the gradient stages
 *   -fno-fuse                    runs the kernel stage
 *   --recompute=M, --mem-budget  runs the recompute stage (the gradient)
 *   --batch N                    has a batch of its own (train, eval, bench, gradcheck,
 *                                --mem-report), or plans recomputation (--mem-budget,
 *                                --recompute=auto) at it
 *   -O0..-O3, -march=CPU         makes machine code (train, eval, bench, -o,
 *                                --emit=llvm|asm|obj)
 *   --threads N                  plans memory (the products' packing buffers, one set per
 *                                thread) or runs code (the thread pool too)
 *   --watch                      train, --mem-report (every activation an output)
 *   --precision P                compiles a training step (train, bench, -o, --emit
 *                                of a gradient stage or later, --mem-report); not
 *                                gradcheck, which checks the f32 or f64 gradient
 *   --print-after=STAGE          runs that stage ("all": every stage it runs)
 *   --verify-each                always
 *
 * Every command parses its command line from tables (DrvOption, driver.h): its own
 * options, then these. One row gives an option's spelling, whether it takes a value
 * and how (--data SPEC or --data=SPEC; -march=CPU; -O2), and its line in --help, so
 * that what a command accepts, what its --help lists and what "did you mean" offers
 * for a mistyped option cannot drift apart. `--` ends the options (a file named
 * -x.bp after it); `-` alone is standard input.
 */
#include "driver/driver.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_THREADS 1024   /* the runtime's pool (runtime/pool.c) */
#define STR_(x) #x
#define STR(x) STR_(x)

int args_usage_error(const char *command, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "bpcc: error: ");
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fprintf(stderr, "\nTry 'bpcc%s%s --help' for more information.\n", command ? " " : "", command ? command : "");
  return 1;
}

const char *args_value(int argc, char **argv, int *i, const char *name) {
  const char *a = argv[*i];
  size_t n = strlen(name);
  if (strncmp(a, name, n) != 0) return NULL;
  if (a[n] == '=') return a + n + 1;
  if (a[n] != 0) return NULL;
  if (*i + 1 >= argc) {
    fprintf(stderr, "bpcc: error: %s needs a value\n", name);
    return ARGS_MISSING;
  }
  return argv[++*i];
}

/* A value beyond the range (or beyond what strtoll holds) is an error that says the
 * range, never a value wrapped or capped into it. */
bool args_int(const char *opt, const char *s, int64_t lo, int64_t hi, int64_t *out) {
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  bool number = end != s && !*end;
  bool too_big = number && ((errno == ERANGE && v > 0) || v > hi);
  if (!number || errno == ERANGE || v < lo || v > hi) {
    if (hi == INT64_MAX && !too_big)
      fprintf(stderr, "bpcc: error: %s '%s': expected an integer >= %lld\n", opt, s, (long long)lo);
    else
      fprintf(stderr, "bpcc: error: %s '%s': %sexpected an integer from %lld to %lld\n", opt, s,
              too_big ? "too large: " : "", (long long)lo, (long long)hi);
    return false;
  }
  *out = v;
  return true;
}

bool args_real(const char *opt, const char *s, double *out) {
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (end == s || *end || errno == ERANGE || !isfinite(v)) {
    fprintf(stderr, "bpcc: error: %s '%s': expected a number\n", opt, s);
    return false;
  }
  *out = v;
  return true;
}

void args_init(PipelineArgs *a, PipelineOptions *o) {
  memset(a, 0, sizeof *a);
  a->o = o;
}

/* ------------------------------------------------------------------ the pipeline's options */

/* One table: what parses them, what --help lists and what "did you mean" offers. */
const DrvOption args_pipeline_options[] = {
    {ARG_MODEL, "--model", OPT_VALUE, "NAME", "the model to use when the file has several (default: the first)"},
    {ARG_PRINT_AFTER, "--print-after", OPT_VALUE, "=STAGE", "print what a stage made (or all); stages:"},
    {ARG_VERIFY, "--verify-each", OPT_FLAG, NULL, "check the result of every stage (IR, kernel plans, memory plans)"},
    {ARG_PASSES, "-fno-softmax-xent", OPT_FLAG, NULL, "differentiate cross-entropy of a softmax through log and softmax"},
    {ARG_PASSES, "-fsoftmax-xent", OPT_FLAG, NULL, NULL},
    {ARG_PASSES, "-fno-log-softmax", OPT_FLAG, NULL, "keep log(softmax(z)) as written"},
    {ARG_PASSES, "-flog-softmax", OPT_FLAG, NULL, NULL},
    {ARG_PASSES, "-fno-fuse-attention", OPT_FLAG, NULL, "keep softmax(scale q k^T [+ causal_mask]) v unfused"},
    {ARG_PASSES, "-ffuse-attention", OPT_FLAG, NULL, NULL},
    {ARG_FUSE, "-fno-fuse", OPT_FLAG, NULL, "one kernel per instruction (no fusion)"},
    {ARG_FUSE, "-ffuse", OPT_FLAG, NULL, NULL},
    {ARG_RECOMPUTE, "--recompute", OPT_VALUE, "=MODE", "none, sqrt or auto: recompute activations in backward (alias\n--checkpoint)"},
    {ARG_RECOMPUTE, "--checkpoint", OPT_VALUE, "=MODE", NULL},   /* the name before 0.2 */
    {ARG_BUDGET, "--mem-budget", OPT_VALUE, "SIZE", "the most bytes the compiled model may allocate (e.g. 64MiB, 1GB);\n"
                                                     "implies --recompute=auto"},
    {ARG_BATCH, "--batch", OPT_VALUE, "N", "the batch (train, eval, bench, gradcheck, --mem-report; the batch a\n"
                                           "budget is planned at)"},
    {ARG_OPT_LEVEL, "-O", OPT_PREFIX, "-O0 .. -O3", "codegen optimization level (default -O3)"},
    {ARG_MARCH, "-march", OPT_JOINED, "CPU", "native (default), x86-64, x86-64-v2, x86-64-v3 or x86-64-v4"},
    {ARG_THREADS, "--threads", OPT_VALUE, "N", "threads that run the model, 1 to " STR(MAX_THREADS) " (default: one per CPU)"},
    {ARG_WATCH, "--watch", OPT_FLAG, NULL, "train: per-epoch statistics and the memory measured; --mem-report:\n"
                                           "the plan as train --watch compiles it (activations as outputs)"},
    {ARG_PRECISION, "--precision", OPT_VALUE, "P", "f32 (default), bf16 or f16: the training step's products and the\n"
                                                   "activations it keeps (the train block's `precision`)"},
    {ARG_LOSS_SCALE, "--loss-scale", OPT_VALUE, "S", "dynamic, off or a number N: scale the loss of training (GradScaler's\n"
                                                   "dynamic scaling from 2^16; default dynamic for precision f16, else off)"},
    {0, NULL, OPT_FLAG, NULL, NULL},
};

static int given(PipelineArgs *a, int k, const char *spelling) {
  a->given[k] = true;
  a->spelling[k] = spelling;
  return 1;
}

/* One pipeline option, matched in the table, with its value: 1, or -1 after a message. */
static int apply(PipelineArgs *a, const DrvOption *opt, const char *arg, const char *v) {
  PipelineOptions *o = a->o;
  switch (opt->id) {
  case ARG_MODEL:
    o->model = v;
    break;
  case ARG_PASSES:
    if (strstr(arg, "softmax-xent")) o->passes.softmax_xent = arg[2] != 'n';
    else if (strstr(arg, "fuse-attention")) o->passes.fuse_attention = arg[2] != 'n';
    else o->passes.log_softmax = arg[2] != 'n';
    break;
  case ARG_FUSE:
    o->fuse = arg[2] != 'n';
    break;
  case ARG_PRINT_AFTER: {
    int s = pipeline_stage_lookup(v);
    if ((s < STAGE_PARSE || s > STAGE_LLVM) && strcmp(v, "all") != 0) {
      fprintf(stderr, "bpcc: error: --print-after: unknown stage '%s' (stages:", v);
      for (int k = STAGE_PARSE; k <= STAGE_LLVM; k++) fprintf(stderr, " %s", pipeline_stages[k].name);
      fprintf(stderr, ", or all)\n");
      return -1;
    }
    o->print_after = v;
    break;
  }
  case ARG_VERIFY:
    o->verify = true;
    break;
  case ARG_RECOMPUTE: {
    int m = 0;
    while (m < RECOMPUTE__COUNT && strcmp(v, recompute_mode_names[m])) m++;
    if (m == RECOMPUTE__COUNT) {
      fprintf(stderr, "bpcc: error: %s: unknown strategy '%s' (none, sqrt or auto)\n", opt->name, v);
      return -1;
    }
    o->recompute = (RecomputeMode)m;
    o->recompute_set = true;
    break;
  }
  case ARG_BUDGET:
    o->mem_budget = memplan_parse_size(v);
    if (o->mem_budget <= 0) {
      /* say why: a size that reads (its unit is known: "1" + unit parses) but is out of
       * range, or no size at all */
      char *end, unit[32];
      double x = strtod(v, &end);
      snprintf(unit, sizeof unit, "1%s", end);
      if (end != v && !isnan(x) && strlen(end) < 16 && memplan_parse_size(unit) > 0)
        fprintf(stderr, "bpcc: error: --mem-budget '%s': %s\n", v,
                x <= 0 ? "must be more than 0 bytes" : "out of range: a whole number of bytes up to 9e18 (8 EiB)");
      else
        fprintf(stderr, "bpcc: error: --mem-budget: cannot read '%s' as a size (e.g. 64MiB, 1.5GB, 4096; units B, "
                        "KiB, MiB, GiB, KB, MB, GB)\n", v);
      return -1;
    }
    break;
  case ARG_BATCH:
    if (!args_int("--batch", v, 1, INT64_MAX, &o->batch)) return -1;
    break;
  case ARG_OPT_LEVEL:
    if (v[0] < '0' || v[0] > '3' || v[1]) {
      fprintf(stderr, "bpcc: error: %s: the optimization level is -O0, -O1, -O2 or -O3\n", arg);
      return -1;
    }
    o->codegen.opt_level = v[0] - '0';
    break;
  case ARG_MARCH:
    o->codegen.march = v;
    break;
  case ARG_THREADS:
    if (!args_int("--threads", v, 1, MAX_THREADS, &a->threads)) return -1;
    o->codegen.nthreads_hint = (int)a->threads;
    break;
  case ARG_WATCH:
    o->watch = true;
    break;
  case ARG_PRECISION:
    if (!strcmp(v, "f32")) o->precision = DT_F32;
    else if (!strcmp(v, "bf16")) o->precision = DT_BF16;
    else if (!strcmp(v, "f16")) o->precision = DT_F16;
    else {
      fprintf(stderr, "bpcc: error: --precision: unknown precision '%s' (f32, bf16 or f16)\n", v);
      return -1;
    }
    o->precision_set = true;
    break;
  case ARG_LOSS_SCALE: {
    const char *bad = bprt_loss_scale_parse(v, &o->loss_scale_mode, &o->loss_scale);
    if (bad) {
      fprintf(stderr, "bpcc: error: --loss-scale '%s': %s\n", v, bad);
      return -1;
    }
    o->loss_scale_set = true;
    break;
  }
  default:
    ir_die("pipeline option %s has no case", opt->name);
  }
  return given(a, opt->id, arg);
}

/* ------------------------------------------------------------------ parsing from tables */

static const char *const help_names[] = {"-h", "--help"};

/* argv[*i] against one table: 1 matched (*opt, *value; the value's argument consumed),
 * 0 not in it, -1 after a message (a value missing, or given to a flag). */
static int match(const char *command, const DrvOption *table, int argc, char **argv, int *i, const DrvOption **opt,
                 const char **value) {
  const char *a = argv[*i];
  for (const DrvOption *t = table; t->name; t++) {
    size_t n = strlen(t->name);
    if (t->id == OPT_PIPELINE || strncmp(a, t->name, n) != 0) continue;
    const char *rest = a + n;
    switch (t->form) {
    case OPT_FLAG:
      if (*rest == '=') {
        args_usage_error(command, "%s takes no value", t->name);
        return -1;
      }
      if (*rest) continue;
      *value = NULL;
      break;
    case OPT_VALUE:
      if (*rest == '=') {
        *value = rest + 1;
      } else if (*rest) {
        continue;
      } else if (*i + 1 >= argc) {
        bool path = strstr(t->meta, "PATH") || strstr(t->meta, "FILE") || strchr(t->meta, '.');
        args_usage_error(command, "%s needs a %s: %s%s%s", t->name, path ? "path" : "value", t->name,
                         t->meta[0] == '=' ? "" : " ", t->meta);
        return -1;
      } else {
        *value = argv[++*i];
      }
      break;
    case OPT_JOINED:
      if (*rest != '=' && *rest) continue;
      if (!*rest || !rest[1]) {
        args_usage_error(command, "%s needs a value after '=': %s=%s", t->name, t->name, t->meta);
        return -1;
      }
      *value = rest + 1;
      break;
    case OPT_PREFIX:
      if (!*rest) continue;
      *value = rest;
      break;
    }
    *opt = t;
    return 1;
  }
  return 0;
}

int args_pipeline_option(PipelineArgs *a, int argc, char **argv, int *i) {
  const DrvOption *opt;
  const char *v;
  int start = *i;
  int r = match(NULL, args_pipeline_options, argc, argv, i, &opt, &v);
  return r <= 0 ? r : apply(a, opt, argv[start], v);
}

/* The nearest listed option of a table to the one typed (its name up to '='). */
static void suggest_from(DiagSuggest *s, const DrvOption **best, const char *typed, const DrvOption *table) {
  for (const DrvOption *t = table; t && t->name; t++)
    if (t->help && t->form != OPT_PREFIX && diag_suggest(s, typed, t->name)) *best = t;
}

/* "unknown option '--epoch'; did you mean '--epochs'?" */
static void unknown_option(const ArgParser *p, const char *a) {
  char typed[64];
  size_t n = strcspn(a, "=");
  snprintf(typed, sizeof typed, "%.*s", (int)(n < sizeof typed ? n : sizeof typed - 1), a);
  DiagSuggest s = DIAG_SUGGEST_INIT;
  const DrvOption *best = NULL;
  if (strspn(typed, "-") + 2 <= strlen(typed)) {   /* "-x": too short to guess at */
    suggest_from(&s, &best, typed, p->options);
    if (p->pa) suggest_from(&s, &best, typed, args_pipeline_options);
    for (int k = 0; k < 2; k++)
      if (diag_suggest(&s, typed, help_names[k])) best = NULL;
  }
  if (!s.best) {
    if (access(a, F_OK) == 0)   /* a file whose name starts with '-' */
      args_usage_error(p->command, "unknown option '%s' (for the file of that name, write ./%s, or -- before it)", a, a);
    else
      args_usage_error(p->command, "unknown option '%s'", a);
    return;
  }
  /* the value typed with '=' goes with the suggestion: --march=native -> -march=native */
  const char *tail = best && best->form != OPT_FLAG && a[n] == '=' ? a + n : "";
  args_usage_error(p->command, "unknown option '%s'; did you mean '%s%s'?", a, s.best, tail);
}

void args_parser_init(ArgParser *p, const char *command, const DrvOption *options, PipelineArgs *pa, int argc,
                      char **argv) {
  memset(p, 0, sizeof *p);
  p->command = command;
  p->options = options;
  p->pa = pa;
  p->argc = argc;
  p->argv = argv;
}

int args_next(ArgParser *p, const DrvOption **opt, const char **value) {
  for (;;) {
    *opt = NULL;
    *value = NULL;
    if (++p->i >= p->argc) return ARGS_END;
    const char *a = p->argv[p->i];
    if (p->operands_only || a[0] != '-' || a[1] == 0) {   /* "-": standard input */
      *value = a;
      return ARGS_OPERAND;
    }
    if (!strcmp(a, "--")) {   /* the end of the options: -x.bp after it is a file */
      p->operands_only = true;
      continue;
    }
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) return ARGS_HELP;
    int r = match(p->command, p->options, p->argc, p->argv, &p->i, opt, value);
    if (r > 0) return ARGS_OPTION;
    if (r < 0) return ARGS_ERROR;
    if (p->pa) {
      r = match(p->command, args_pipeline_options, p->argc, p->argv, &p->i, opt, value);
      if (r > 0 && apply(p->pa, *opt, a, *value) > 0) continue;
      if (r != 0) return ARGS_ERROR;
    }
    unknown_option(p, a);
    return ARGS_ERROR;
  }
}

/* "--data SPEC", "--recompute=MODE", "-march=CPU", "-O0 .. -O3" */
static int spelling(const DrvOption *t, char *buf, size_t n) {
  if (t->form == OPT_PREFIX) return snprintf(buf, n, "%s", t->meta);
  if (!t->meta) return snprintf(buf, n, "%s", t->name);
  const char *sep = t->form == OPT_JOINED ? "=" : t->meta[0] == '=' ? "" : " ";
  return snprintf(buf, n, "%s%s%s", t->name, sep, t->meta);
}

void args_print_options(FILE *out, const DrvOption *options, int width,
                        void (*more)(FILE *out, const DrvOption *row, int width)) {
  for (const DrvOption *t = options; t->name; t++) {
    if (!t->help) continue;
    char left[64];
    int n = spelling(t, left, sizeof left);
    fprintf(out, "  %-*s ", width, left);
    if (n > width) fprintf(out, " ");
    for (const char *h = t->help; *h;) {
      size_t len = strcspn(h, "\n");
      fprintf(out, "%.*s\n", (int)len, h);
      h += len;
      if (*h == '\n' && *++h) fprintf(out, "  %-*s ", width, "");
    }
    if (more) more(out, t, width);
  }
}

bool args_apply_threads(const PipelineArgs *a) {
  if (a->threads <= 0 || bprt_set_threads((int)a->threads) == 0) return true;
  fprintf(stderr, "bpcc: error: --threads %lld: %s\n", (long long)a->threads, bprt_last_error());
  return false;
}

/* ------------------------------------------------------------------ which apply */

static bool not_for(const PipelineArgs *a, int k, const CommandInfo *cmd, const char *why) {
  if (!a->given[k]) return false;
  fprintf(stderr, "bpcc: error: %s does nothing for %s: %s\n", a->spelling[k], cmd->name, why);
  return true;
}

bool args_check(const PipelineArgs *a, const CommandInfo *cmd) {
  const PipelineOptions *o = a->o;
  bool bad = false;
  bool grad = cmd->gradient && cmd->last >= STAGE_CANONICALIZE;
  bool plans_recompute = o->mem_budget > 0 || (o->recompute_set && o->recompute == RECOMPUTE_AUTO);
  if (!grad) {
    bad |= not_for(a, ARG_PASSES, cmd, "it changes how the gradient is derived, and this command derives none");
    bad |= not_for(a, ARG_LOSS_SCALE, cmd, "it scales the loss of a training step, and this command derives no gradient");
  }
  if (cmd->last < STAGE_KERNELS) bad |= not_for(a, ARG_FUSE, cmd, "it changes the kernel plan, which this command does not make");
  if (!grad || cmd->last < STAGE_RECOMPUTE) {
    bad |= not_for(a, ARG_RECOMPUTE, cmd, "it chooses the activations backward recomputes, and this command has no backward");
    bad |= not_for(a, ARG_BUDGET, cmd, "it bounds the memory of a training step, which this command does not plan");
  }
  if (!cmd->batch && !(grad && cmd->last >= STAGE_RECOMPUTE && plans_recompute))
    bad |= not_for(a, ARG_BATCH, cmd,
                   "the compiled code works for every batch; --batch sets the batch of train, eval, bench, gradcheck "
                   "and --mem-report, and the batch --mem-budget plans at");
  if (cmd->last < STAGE_LLVM) {
    const char *why = "it changes the machine code, which this command does not make (train, eval, bench, -o and "
                      "--emit=llvm|asm|obj do)";
    bad |= not_for(a, ARG_OPT_LEVEL, cmd, why);
    bad |= not_for(a, ARG_MARCH, cmd, why);
  }
  if (cmd->last < STAGE_MEMORY && !cmd->runtime)
    bad |= not_for(a, ARG_THREADS, cmd, "it sets the threads that run a compiled model and size its buffers");
  if (!strcmp(cmd->name, "gradcheck"))
    bad |= not_for(a, ARG_LOSS_SCALE, cmd, "gradcheck checks the unscaled gradient (its interpreter seeds the backward "
                   "with 1)");
  if (strcmp(cmd->name, "train") && strcmp(cmd->name, "--mem-report"))
    bad |= not_for(a, ARG_WATCH, cmd, "it is for train (per-epoch statistics) and --mem-report");
  if (!strcmp(cmd->name, "gradcheck"))
    bad |= not_for(a, ARG_PRECISION, cmd, "gradcheck checks the f32 or f64 gradient (--dtype), whatever the precision");
  else if (!grad || cmd->last < STAGE_PRECISION)
    bad |= not_for(a, ARG_PRECISION, cmd, "it sets the precision of a training step, which this command does not compile");
  if (a->given[ARG_PRINT_AFTER] && strcmp(o->print_after, "all") != 0) {
    int s = pipeline_stage_lookup(o->print_after);
    if (s > (int)cmd->last || (!grad && s >= STAGE_CANONICALIZE && s <= STAGE_RECOMPUTE)) {
      fprintf(stderr, "bpcc: error: --print-after=%s: %s %s\n", o->print_after, cmd->name,
              s > (int)cmd->last ? "stops before that stage" : "derives no gradient");
      bad = true;
    }
  }
  return !bad;
}

/* --print-after's stages under its row */
static void stages(FILE *out, const DrvOption *row, int width) {
  if (row->id != ARG_PRINT_AFTER) return;
  for (int s = STAGE_PARSE; s <= STAGE_LLVM; s++)
    fprintf(out, "  %-*s   %-13s %s\n", width, "", pipeline_stages[s].name, pipeline_stages[s].what);
}

void args_usage(FILE *o) { args_print_options(o, args_pipeline_options, 18, stages); }
