/* driver/cmd_gradcheck.c — `bpcc gradcheck`: derived gradients against finite differences.
 *
 *   bpcc gradcheck FILE.bp [--model NAME] [--dtype f64|f32] [--batch N] [--seed S]
 *                  [--tol T] [-fno-softmax-xent] [--recompute=MODE] [--print-after=STAGE]
 *
 * Runs the pipeline up to the gradient as every command does (FILE.ir: the IR text
 * parsed instead of lowered, then the same stages), so that what is checked is the
 * gradient bpcc compiles, recomputation included; fd_check (fdcheck.c, which describes
 * the method) compares it with finite differences of the lowered forward function,
 * untouched by any pass. Exit status 0 if every parameter is within the threshold, 1
 * otherwise. */
#include "driver/driver.h"
#include "driver/fdcheck.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { G_DTYPE, G_SEED, G_TOL, G_SAMPLES };

/* gradcheck's options (parsed, listed in --help, suggested); then the pipeline's */
static const DrvOption gradcheck_options[] = {
    {G_DTYPE, "--dtype", OPT_VALUE, "f64|f32", "the precision of the check (default f64)"},
    {OPT_PIPELINE, "--batch", OPT_VALUE, "N", "rows of the random batch, 1 to 4096 (default 4)"},
    {G_SEED, "--seed", OPT_VALUE, "S", "the seed of the parameters and the batch (default 1)"},
    {G_TOL, "--tol", OPT_VALUE, "T", "a threshold instead of the dtype's (above)"},
    {G_SAMPLES, "--samples", OPT_VALUE, "N", "at most N elements of each parameter (all of a smaller one; a quick check)"},
    {OPT_PIPELINE, "--model", OPT_VALUE, "NAME", "the model when the file has several"},
    {OPT_PIPELINE, "-fno-softmax-xent", OPT_FLAG, NULL, "check the gradient derived without the softmax-CE rule"},
    {OPT_PIPELINE, "--recompute", OPT_VALUE, "=MODE", "check the gradient with recomputation (none, sqrt, auto)"},
    {0, NULL, OPT_FLAG, NULL, NULL},
};

static void usage_gc(FILE *o) {
  fprintf(o,
          "usage: bpcc gradcheck FILE.bp|FILE.ir [options]\n"
          "Checks every parameter's derived gradient against central finite differences in the\n"
          "reference interpreter (all elements of tensors up to %d elements, %d sampled\n"
          "above), Richardson-extrapolated over steps chosen per element, each with an estimate\n"
          "of its error (fd err). Threshold on max |g_num - g_ana| / max(|g_num| + |g_ana|, floor):\n"
          "1e-7 in f64 (floor 1e-4), 1e-3 in f32 (floor 1e-3). Exit status 1 if an element is\n"
          "above the threshold and its disagreement above its fd err.\n"
          "\n",
          FD_ALL_MAX, FD_SAMPLES);
  args_print_options(o, gradcheck_options, 18, NULL);
}

static int gc_arg_error(const char *fmt, const char *a) {
  fprintf(stderr, "bpcc: error: gradcheck: ");
  fprintf(stderr, fmt, a);
  fprintf(stderr, "\nTry 'bpcc gradcheck --help' for more information.\n");
  return 1;
}

/* The pipeline up to the gradient (recompute: the IR gradcheck interprets) of FILE.bp,
 * or of FILE.ir's first function, parsed and then run through the same stages. */
static bool load(Compilation *c, const char *path, const PipelineOptions *o, Module **ir_module) {
  size_t n = strlen(path);
  *ir_module = NULL;
  pipeline_init(c, path, o);
  if (n > 3 && strcmp(path + n - 3, ".ir") == 0) {
    char *text;
    size_t len;
    if (!pipeline_read_file(path, &text, &len)) return false;
    *ir_module = ir_parse(path, text, len);
    bp_free(text);
    if (!*ir_module || (*ir_module)->nfuncs == 0) return false;
    pipeline_release(c);
    pipeline_init_ir(c, (*ir_module)->funcs[0], NULL, o);
  }
  if (!pipeline_run(c, STAGE_LOWER)) return false;
  if (!pipeline_has_loss(c)) {
    fprintf(stderr, "bpcc: error: gradcheck: @%s has no loss to differentiate\n", c->fwd->name);
    return false;
  }
  return pipeline_run(c, STAGE_RECOMPUTE);
}

int cmd_gradcheck(int argc, char **argv) {
  const char *file = NULL;
  bool f32 = false;
  int64_t seed = 1;
  double tol = -1;
  int64_t samples = 0;
  PipelineOptions po;
  pipeline_options_default(&po);
  PipelineArgs pa;
  args_init(&pa, &po);
  ArgParser p;
  args_parser_init(&p, "gradcheck", gradcheck_options, &pa, argc, argv);
  const DrvOption *opt;
  const char *v;
  for (int k; (k = args_next(&p, &opt, &v)) != ARGS_END;) {
    if (k == ARGS_ERROR) return 1;
    if (k == ARGS_HELP) {
      usage_gc(stdout);
      return 0;
    }
    if (k == ARGS_OPERAND) {
      if (file) return gc_arg_error("more than one input file ('%s')", v);
      file = v;
    } else if (opt->id == G_DTYPE) {
      if (strcmp(v, "f32") == 0) f32 = true;
      else if (strcmp(v, "f64") == 0) f32 = false;
      else return gc_arg_error("--dtype must be f64 or f32, not '%s'", v);
    } else if (opt->id == G_SEED) {
      if (!args_int("--seed", v, 0, INT64_MAX, &seed)) return 1;
    } else if (opt->id == G_SAMPLES) {
      if (!args_int("--samples", v, 1, INT64_MAX, &samples)) return 1;
    } else if (opt->id == G_TOL) {
      char *end;
      tol = strtod(v, &end);
      if (!*v || *end || !(tol > 0) || !isfinite(tol))
        return gc_arg_error("--tol must be a positive finite number, not '%s'", v);
    }
  }
  if (!file) return gc_arg_error("%s", "no input file");
  if (po.batch > 4096) {
    char b[32];
    snprintf(b, sizeof b, "%lld", (long long)po.batch);
    return gc_arg_error("--batch must be an integer in [1, 4096], not '%s'", b);
  }
  static const CommandInfo gradcheck = {"gradcheck", STAGE_RECOMPUTE, true, true, false};
  if (!args_check(&pa, &gradcheck)) return 1;
  if (po.batch == 0) po.batch = 4;
  /* the gradient it checks is the f32 (or f64) one: a train block's precision is not */
  po.precision = DT_F32;
  po.precision_set = true;

  Compilation c;
  Module *irm = NULL;
  int status = 1;
  if (load(&c, file, &po, &irm)) {
    int nrec = 0;
    for (int32_t i = 0; i < c.grad->ninsts; i++) nrec += (c.grad->insts[i].flags & IF_RECOMPUTED) != 0;
    printf("gradcheck: the gradient IR of @%s: %d instructions, %d of them recomputed\n", c.fwd->name, (int)c.grad->ninsts,
           nrec);
    FdOptions o = {.f32 = f32, .batch = po.batch, .seed = (uint64_t)seed, .tol = tol, .samples = samples};
    status = fd_check(c.fwd, c.grad, &o, stdout, file) == 0 ? 0 : 1;
  }
  pipeline_release(&c);
  if (irm) ir_module_free(irm);
  return status;
}
