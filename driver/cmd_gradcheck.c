/* driver/cmd_gradcheck.c — `bpcc gradcheck`, and `--emit=grad-ir` with the pass options.
 *
 *   bpcc gradcheck FILE.bp [--model NAME] [--dtype f64|f32] [--batch N] [--seed S]
 *                  [--tol T] [-fno-softmax-xent]
 *
 * Lowers the model (FILE.ir: parses the IR text instead) and runs the pass pipeline on
 * a clone to get the gradient function; fd_check (fdcheck.c, which describes the
 * method) compares its gradients with finite differences of the untouched forward
 * function. Exit status 0 if every parameter is within the threshold, 1 otherwise. */
#include "driver/driver.h"
#include "driver/fdcheck.h"
#include "passes/passes.h"

#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ pass options */

static PassOptions drv_pass_options;
static bool pass_options_ready;

static PassOptions *drv_passes(void) {
  if (!pass_options_ready) {
    pass_options_default(&drv_pass_options);
    pass_options_ready = true;
  }
  return &drv_pass_options;
}

bool drv_pass_flag(const char *a, char **argv, int argc, int *i) {
  PassOptions *o = drv_passes();
  if (strcmp(a, "-fno-softmax-xent") == 0) o->softmax_xent = false;
  else if (strcmp(a, "-fsoftmax-xent") == 0) o->softmax_xent = true;
  else if (strcmp(a, "-fno-log-softmax") == 0) o->log_softmax = false;
  else if (strcmp(a, "--verify-each") == 0) o->verify = true;
  else if (strncmp(a, "--print-after=", 14) == 0) o->print_after = a + 14;
  else if (strcmp(a, "--print-after") == 0 && *i + 1 < argc) o->print_after = argv[++*i];
  else return false;
  if (o->print_after && strcmp(o->print_after, "all") != 0 && !pass_lookup(o->print_after)) {
    fprintf(stderr, "bpcc: error: --print-after: unknown pass '%s' (passes:", o->print_after);
    for (int k = 0; k < pass_pipeline_count; k++) fprintf(stderr, " %s", pass_pipeline[k].name);
    fprintf(stderr, ", or all)\n");
    exit(1);
  }
  return true;
}

Func *drv_grad_func(Func *fwd) {
  int errors = diag_error_count();
  char name[256];
  snprintf(name, sizeof name, "%s.grad", fwd->name);
  Func *g = ir_func_clone(fwd, name);
  g = pass_run_pipeline(g, drv_passes());
  if (!g || diag_error_count() != errors) return NULL;
  return g;
}

int emit_grad_ir(DrvCompilation *c, FILE *out) {
  if (!c->func) {
    fprintf(stderr, "bpcc: error: %s has no model to differentiate\n", c->name);
    return 1;
  }
  Func *g = drv_grad_func(c->func);
  if (g) g = drv_checkpoint(c, g, NULL);   /* --checkpoint / --mem-budget (cmd_memreport.c) */
  if (!g) return 1;
  ir_print_func(out, g);
  return 0;
}

/* ------------------------------------------------------------------ the command */

static void usage_gc(FILE *o) {
  fprintf(o,
          "usage: bpcc gradcheck FILE.bp [--model NAME] [--dtype f64|f32] [--batch N] [--seed S]\n"
          "                      [--tol T] [-fno-softmax-xent]\n"
          "Checks every parameter's derived gradient against central finite differences in the\n"
          "reference interpreter (all elements of tensors up to %d elements, %d sampled\n"
          "above), Richardson-extrapolated over steps chosen per element, each with an estimate\n"
          "of its error (fd err). Threshold on max |g_num - g_ana| / max(|g_num| + |g_ana|, floor):\n"
          "1e-7 in f64 (floor 1e-4), 1e-3 in f32 (floor 1e-3). Exit status 1 if an element is\n"
          "above the threshold and its disagreement above its fd err.\n",
          FD_ALL_MAX, FD_SAMPLES);
}

static int gc_arg_error(const char *fmt, const char *a) {
  fprintf(stderr, "bpcc: error: gradcheck: ");
  fprintf(stderr, fmt, a);
  fprintf(stderr, "\nTry 'bpcc gradcheck --help' for more information.\n");
  return 1;
}

static bool parse_int(const char *s, int64_t lo, int64_t *out) {
  char *end;
  long long v = strtoll(s, &end, 10);
  if (!*s || *end || v < lo) return false;
  *out = v;
  return true;
}

/* Lower FILE.bp, or parse FILE.ir (the first function). */
static Func *load(DrvCompilation *c, const char *path, const char *model, Module **ir_module) {
  size_t n = strlen(path);
  *ir_module = NULL;
  if (n > 3 && strcmp(path + n - 3, ".ir") == 0) {
    char *text;
    size_t len;
    memset(c, 0, sizeof *c);
    if (!drv_read_file(path, &text, &len)) return NULL;
    *ir_module = ir_parse(path, text, len);
    bp_free(text);
    if (!*ir_module || (*ir_module)->nfuncs == 0) return NULL;
    if (!ir_verify((*ir_module)->funcs[0], "parsing")) return NULL;
    return (*ir_module)->funcs[0];
  }
  if (!drv_compile(c, path, DRV_LOWER, model)) return NULL;
  if (!c->func) {
    fprintf(stderr, "bpcc: error: %s has no model to check\n", c->name);
    return NULL;
  }
  return c->func;
}

int cmd_gradcheck(int argc, char **argv) {
  const char *file = NULL, *model = NULL;
  bool f32 = false;
  int64_t batch = 4, seed = 1;
  double tol = -1;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
      usage_gc(stdout);
      return 0;
    }
    const char *val = NULL;
    if (a[0] == '-' && a[1] == '-' && strchr(a, '=')) val = strchr(a, '=') + 1;
    bool takes = !strncmp(a, "--dtype", 7) || !strncmp(a, "--batch", 7) || !strncmp(a, "--seed", 6) ||
                 !strncmp(a, "--tol", 5) || !strncmp(a, "--model", 7);
    if (takes && !val) {
      if (i + 1 >= argc) return gc_arg_error("%s needs a value", a);
      val = argv[++i];
    }
    if (!strncmp(a, "--dtype", 7)) {
      if (strcmp(val, "f32") == 0) f32 = true;
      else if (strcmp(val, "f64") == 0) f32 = false;
      else return gc_arg_error("--dtype must be f64 or f32, not '%s'", val);
    } else if (!strncmp(a, "--batch", 7)) {
      if (!parse_int(val, 1, &batch) || batch > 4096) return gc_arg_error("--batch must be an integer in [1, 4096], not '%s'", val);
    } else if (!strncmp(a, "--seed", 6)) {
      if (!parse_int(val, 0, &seed)) return gc_arg_error("--seed must be a non-negative integer, not '%s'", val);
    } else if (!strncmp(a, "--tol", 5)) {
      char *end;
      tol = strtod(val, &end);
      if (!*val || *end || !(tol > 0)) return gc_arg_error("--tol must be a positive number, not '%s'", val);
    } else if (!strncmp(a, "--model", 7)) {
      model = val;
    } else if (drv_pass_flag(a, argv, argc, &i)) {
      continue;
    } else if (a[0] == '-' && a[1]) {
      return gc_arg_error("unknown option '%s'", a);
    } else if (file) {
      return gc_arg_error("more than one input file ('%s')", a);
    } else {
      file = a;
    }
  }
  if (!file) return gc_arg_error("%s", "no input file");

  DrvCompilation c;
  Module *irm = NULL;
  Func *fwd = load(&c, file, model, &irm);
  int status = 1;
  if (fwd) {
    bool has_loss = false;
    for (int32_t i = 0; i < fwd->ninsts; i++) has_loss |= fwd->insts[i].op == OP_LOSS;
    Func *grad = NULL;
    if (!has_loss) fprintf(stderr, "bpcc: error: gradcheck: @%s has no loss to differentiate\n", fwd->name);
    else grad = drv_grad_func(fwd);
    FdOptions o = {.f32 = f32, .batch = batch, .seed = (uint64_t)seed, .tol = tol};
    if (grad) status = fd_check(fwd, grad, &o, stdout, file) == 0 ? 0 : 1;
  }
  if (irm) ir_module_free(irm);
  else drv_release(&c);
  return status;
}
