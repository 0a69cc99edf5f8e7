/* driver/args.c — the command line every command shares.
 *
 * The options below set the one PipelineOptions that a command hands to the pipeline.
 * Every command accepts them where they change what it does; where an option would
 * change nothing, it is an error that says what the option is for, so that a command
 * line never silently means less than it says:
 *
 *   option                       applies when the command ...
 *   --model NAME                 always
 *   -fno-softmax-xent, -fno-log-softmax, -fsoftmax-xent
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
 *   --print-after=STAGE          runs that stage ("all": every stage it runs)
 *   --verify-each                always
 */
#include "driver/driver.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define MAX_THREADS 1024   /* the runtime's pool (runtime/pool.c) */

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

static int given(PipelineArgs *a, int k, const char *spelling) {
  a->given[k] = true;
  a->spelling[k] = spelling;
  return 1;
}

int args_pipeline_option(PipelineArgs *a, int argc, char **argv, int *i) {
  PipelineOptions *o = a->o;
  const char *arg = argv[*i], *v;
#define VALUE(NAME) ((v = args_value(argc, argv, i, NAME)) != NULL)
  if (VALUE("--model")) {
    if (v == ARGS_MISSING) return -1;
    o->model = v;
    return given(a, ARG_MODEL, arg);
  }
  if (!strcmp(arg, "-fno-softmax-xent") || !strcmp(arg, "-fsoftmax-xent")) {
    o->passes.softmax_xent = arg[2] != 'n';
    return given(a, ARG_PASSES, arg);
  }
  if (!strcmp(arg, "-fno-log-softmax") || !strcmp(arg, "-flog-softmax")) {
    o->passes.log_softmax = arg[2] != 'n';
    return given(a, ARG_PASSES, arg);
  }
  if (!strcmp(arg, "-fno-fuse") || !strcmp(arg, "-ffuse")) {
    o->fuse = arg[2] != 'n';
    return given(a, ARG_FUSE, arg);
  }
  if (VALUE("--print-after")) {
    if (v == ARGS_MISSING) return -1;
    int s = pipeline_stage_lookup(v);
    if ((s < STAGE_PARSE || s > STAGE_LLVM) && strcmp(v, "all") != 0) {
      fprintf(stderr, "bpcc: error: --print-after: unknown stage '%s' (stages:", v);
      for (int k = STAGE_PARSE; k <= STAGE_LLVM; k++) fprintf(stderr, " %s", pipeline_stages[k].name);
      fprintf(stderr, ", or all)\n");
      return -1;
    }
    o->print_after = v;
    return given(a, ARG_PRINT_AFTER, arg);
  }
  if (!strcmp(arg, "--verify-each")) {
    o->verify = true;
    return given(a, ARG_VERIFY, arg);
  }
  if (VALUE("--recompute") || VALUE("--checkpoint")) {   /* --checkpoint: the name before 0.2 */
    if (v == ARGS_MISSING) return -1;
    int m = 0;
    while (m < RECOMPUTE__COUNT && strcmp(v, recompute_mode_names[m])) m++;
    if (m == RECOMPUTE__COUNT) {
      fprintf(stderr, "bpcc: error: %.*s: unknown strategy '%s' (none, sqrt or auto)\n", (int)strcspn(arg, "="), arg, v);
      return -1;
    }
    o->recompute = (RecomputeMode)m;
    o->recompute_set = true;
    return given(a, ARG_RECOMPUTE, arg);
  }
  if (VALUE("--mem-budget")) {
    if (v == ARGS_MISSING) return -1;
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
    return given(a, ARG_BUDGET, arg);
  }
  if (VALUE("--batch")) {
    if (v == ARGS_MISSING || !args_int("--batch", v, 1, INT64_MAX, &o->batch)) return -1;
    return given(a, ARG_BATCH, arg);
  }
  if (arg[0] == '-' && arg[1] == 'O' && arg[2] >= '0' && arg[2] <= '3' && arg[3] == 0) {
    o->codegen.opt_level = arg[2] - '0';
    return given(a, ARG_OPT_LEVEL, arg);
  }
  if (!strncmp(arg, "-march=", 7)) {
    o->codegen.march = arg + 7;
    return given(a, ARG_MARCH, arg);
  }
  if (VALUE("--threads")) {
    if (v == ARGS_MISSING || !args_int("--threads", v, 1, MAX_THREADS, &a->threads)) return -1;
    o->codegen.nthreads_hint = (int)a->threads;
    return given(a, ARG_THREADS, arg);
  }
  if (!strcmp(arg, "--watch")) {
    o->watch = true;
    return given(a, ARG_WATCH, arg);
  }
#undef VALUE
  return 0;
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
  if (!grad)
    bad |= not_for(a, ARG_PASSES, cmd, "it changes how the gradient is derived, and this command derives none");
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
  if (strcmp(cmd->name, "train") && strcmp(cmd->name, "--mem-report"))
    bad |= not_for(a, ARG_WATCH, cmd, "it is for train (per-epoch statistics) and --mem-report");
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

void args_usage(FILE *o) {
  fprintf(o,
          "  --model NAME       the model to use when the file has several (default: the first)\n"
          "  --print-after=STAGE  print what a stage made (or all); stages:\n");
  for (int s = STAGE_PARSE; s <= STAGE_LLVM; s++)
    fprintf(o, "                       %-13s %s\n", pipeline_stages[s].name, pipeline_stages[s].what);
  fprintf(o,
          "  --verify-each      check the result of every stage (IR, kernel plans, memory plans)\n"
          "  -fno-softmax-xent  differentiate cross-entropy of a softmax through log and softmax\n"
          "  -fno-log-softmax   keep log(softmax(z)) as written\n"
          "  -fno-fuse          one kernel per instruction (no fusion)\n"
          "  --recompute=MODE   none, sqrt or auto: recompute activations in backward (alias\n"
          "                     --checkpoint)\n"
          "  --mem-budget SIZE  the most bytes the compiled model may allocate (e.g. 64MiB, 1GB);\n"
          "                     implies --recompute=auto\n"
          "  --batch N          the batch (train, eval, bench, gradcheck, --mem-report; the batch a\n"
          "                     budget is planned at)\n"
          "  -O0 .. -O3         codegen optimization level (default -O3)\n"
          "  -march=CPU         native (default), x86-64, x86-64-v2, x86-64-v3 or x86-64-v4\n"
          "  --threads N        threads that run the model, 1 to %d (default: one per CPU)\n"
          "  --watch            train: per-epoch statistics and the memory measured; --mem-report:\n"
          "                     the plan as train --watch compiles it (activations as outputs)\n", MAX_THREADS);
}
