/* driver/cmd_memreport.c — `bpcc --mem-report FILE.bp` and the memory options.
 *
 *   bpcc --mem-report FILE.bp [--batch N] [--checkpoint=none|sqrt|auto] [--mem-budget SIZE]
 *
 * prints, before anything runs, the memory plan of one training step: every tensor
 * with its DSL name and location, shape, bytes, lifetime, workspace offset and kind
 * (kept for backward, recomputed, temporary, gradient, ...), then the totals for
 * parameters, gradients, optimizer state, kept activations and the workspace peak.
 * --checkpoint and --mem-budget also apply to --emit=grad-ir and --emit=dot, which then
 * show the recomputed instructions. The batch defaults to the train block's. */
#include "codegen/codegen.h"
#include "driver/driver.h"
#include "passes/memplan.h"
#include "passes/passes.h"

#include <stdlib.h>
#include <string.h>

DrvMemOptions drv_mem = {false, RECOMPUTE_NONE, false, 0, 0};

static _Noreturn void mem_usage_error(const char *what, const char *arg, const char *hint) {
  fprintf(stderr, "bpcc: error: %s '%s'%s\nTry 'bpcc --help' for more information.\n", what, arg, hint);
  exit(1);
}

/* The option's value: `--opt=VALUE` or `--opt VALUE`. */
static const char *option_value(const char *a, const char *opt, char **argv, int argc, int *i) {
  size_t n = strlen(opt);
  if (strncmp(a, opt, n) != 0) return NULL;
  if (a[n] == '=') return a + n + 1;
  if (a[n] != 0) return NULL;
  if (*i + 1 >= argc) mem_usage_error("missing value after", opt, "");
  return argv[++*i];
}

bool drv_mem_flag(const char *a, char **argv, int argc, int *i) {
  const char *v;
  if (strcmp(a, "--mem-report") == 0) {
    drv_mem.report = true;
  } else if (strcmp(a, "--watch") == 0) {   /* plan the step as `bpcc train --watch` compiles it */
    drv_lower_activations = true;
  } else if ((v = option_value(a, "--checkpoint", argv, argc, i))) {
    if (strcmp(v, "none") == 0) drv_mem.mode = RECOMPUTE_NONE;
    else if (strcmp(v, "sqrt") == 0) drv_mem.mode = RECOMPUTE_SQRT;
    else if (strcmp(v, "auto") == 0) drv_mem.mode = RECOMPUTE_AUTO;
    else mem_usage_error("--checkpoint: unknown strategy", v, " (none, sqrt or auto)");
    drv_mem.mode_set = true;
  } else if ((v = option_value(a, "--mem-budget", argv, argc, i))) {
    drv_mem.budget = memplan_parse_size(v);
    if (drv_mem.budget <= 0)
      mem_usage_error("--mem-budget: cannot read", v, " as a size (e.g. 64MiB, 1.5GB, 4096; units B, KiB, MiB, GiB, KB, MB, GB)");
  } else if ((v = option_value(a, "--batch", argv, argc, i))) {
    char *end;
    long long b = strtoll(v, &end, 10);
    if (end == v || *end || b < 1 || b > (1ll << 31)) mem_usage_error("--batch: expected a positive integer, got", v, "");
    drv_mem.batch = b;
  } else {
    return false;
  }
  return true;
}

int64_t drv_mem_batch(const DrvCompilation *c) {
  if (drv_mem.batch > 0) return drv_mem.batch;
  if (c->model && c->model->train.batch > 0) return c->model->train.batch;
  return 32;
}

int drv_mem_opt_factor(const DrvCompilation *c) {
  if (!c->model) return 0;
  const TrainSpec *t = &c->model->train;
  return bprt_optimizers[t->opt.kind].slots;
}

Func *drv_checkpoint(DrvCompilation *c, Func *grad, RecomputeResult *res) {
  RecomputeResult local;
  if (!res) res = &local;
  memset(res, 0, sizeof *res);
  if (!drv_mem.mode_set && drv_mem.budget <= 0) return grad;
  RecomputeOptions o = {drv_mem.mode_set ? drv_mem.mode : RECOMPUTE_AUTO, drv_mem.budget, drv_mem_batch(c), drv_mem_opt_factor(c)};
  Func *g = pass_recompute(grad, &o, res);
  if (!g) return NULL;
  if (g != grad) g = pass_func_replace(grad, g);
#ifdef BPCC_DEBUG
  if (!ir_verify(g, "checkpoint")) return NULL;
#endif
  return g;
}

static const char *mode_name(void) {
  if (!drv_mem.mode_set && drv_mem.budget <= 0) return "none";
  switch (drv_mem.mode_set ? drv_mem.mode : RECOMPUTE_AUTO) {
  case RECOMPUTE_NONE: return "none";
  case RECOMPUTE_SQRT: return "sqrt";
  case RECOMPUTE_AUTO: return "auto";
  }
  return "?";
}

int drv_mem_report(const char *path, const char *model) {
  DrvCompilation c;
  int status = 1;
  if (!drv_compile(&c, path, DRV_LOWER, model)) goto done;
  int64_t batch = drv_mem_batch(&c);
  Func *f = c.func;
  bool training = c.model && c.model->loss >= 0;
  if (training) {
    f = drv_grad_func(c.func);
    if (!f) goto done;
  }
  RecomputeResult r;
  memset(&r, 0, sizeof r);
  if (training) {
    f = drv_checkpoint(&c, f, &r);
    if (!f) goto done;
  }
  MemPlan *p = memplan_build(f, batch);
  int k = drv_mem_opt_factor(&c);
  memplan_print_report(stdout, p, batch, training ? k : 0);
  char b1[32], b2[32];
  if (training) {
    printf("\ncheckpointing: %s", mode_name());
    if (r.ncandidates > 0 && (drv_mem.mode_set || drv_mem.budget > 0))
      printf(", %d of %d activations read by backward kept, %.4g MFLOP recomputed per step", r.nkept, r.ncandidates,
             r.recompute_flops / 1e6);
    printf("\n");
    if (drv_mem.budget > 0)
      printf("budget: %s (%lld bytes), total %s: fits\n", memplan_format_size(drv_mem.budget, b1, sizeof b1),
             (long long)drv_mem.budget, memplan_format_size(memplan_totals(p, batch, k).total, b2, sizeof b2));
    printf("optimizer: %s (%d float%s of state per parameter)\n", bprt_optimizers[c.model->train.opt.kind].name, k,
           k == 1 ? "" : "s");
  }
  memplan_free(p);
  if (training) {
    /* What the compiled step allocates: every value a kernel writes (also gradients and
     * outputs before their sinks copy them out), placed by the same planner with kernel
     * lifetimes, plus the GEMM packing buffers. `bpcc train --watch` measures it. */
    bprt_optimizer_config opt;
    drv_train_optimizer(&c.model->train, &opt);
    CgOptions co = {"native", 0, 0, false, false};
    CgModel *cm = cg_model_build(c.func, f, &opt, &co);
    if (!cm) goto done;
    const bprt_model_desc *d = cg_model_desc(cm);
    int64_t ws = d->ws_fixed + d->ws_per_batch * batch;
    printf("workspace of the compiled step: %s (%lld bytes) at batch %lld\n", memplan_format_size(ws, b1, sizeof b1),
           (long long)ws, (long long)batch);
    cg_model_free(cm);
  }
  status = 0;
done:
  drv_release(&c);
  return status;
}
