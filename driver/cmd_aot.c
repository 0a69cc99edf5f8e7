/* driver/cmd_aot.c — `bpcc FILE.bp -o NAME.so`: the model as a shared library with a C
 * ABI, and NAME.h beside it (docs/abi.md).
 *
 *   bpcc FILE.bp -o NAME.so [--model NAME] [-march=CPU] [-O0..-O3]
 *
 * The pipeline is `--emit=obj`'s — lower, autodiff + simplification when the model has
 * a loss, codegen with the optimizer of the `train` block — then codegen/aot.c adds
 * the descriptor and the ABI and links the runtime in. -march=native (the default)
 * gives a library for CPUs like this one; -march=x86-64-v3 (AVX2 + FMA) one that runs
 * on any x86-64 machine of the last decade. */
#include "codegen/codegen.h"
#include "driver/driver.h"
#include "passes/passes.h"

static bool has_loss(const Func *f) {
  for (int32_t i = 0; i < f->ninsts; i++)
    if (f->insts[i].op == OP_LOSS) return true;
  return false;
}

int drv_write_library(const char *path, const char *model, const char *out) {
  DrvCompilation c;
  if (!drv_compile(&c, path, DRV_LOWER, model) || !c.func) {
    drv_release(&c);
    return 1;
  }
  if (!cg_check_runtime_f32(c.func)) {
    drv_release(&c);
    return 1;
  }
  int errors = diag_error_count();
  Func *grad = NULL;
  if (has_loss(c.func)) {
    PassOptions po;
    pass_options_default(&po);
    char gname[256];
    snprintf(gname, sizeof gname, "%s.grad", c.func->name);
    grad = pass_run_pipeline(ir_func_clone(c.func, gname), &po);
    if (!grad || diag_error_count() != errors) {
      drv_release(&c);
      return 1;
    }
  }
  bprt_optimizer_config opt;
  drv_train_optimizer(&c.model->train, &opt);
  CgOptions o = {drv_codegen.march, drv_codegen.opt_level, 0, true, false};
  CgModel *m = cg_model_build(c.func, grad, grad ? &opt : NULL, &o);
  int rc = 1;
  if (m) {
    CgAotOptions ao = {c.name, NULL};
    rc = cg_aot_write(m, out, &ao) == 0 ? 0 : 1;
    cg_model_free(m);
  }
  drv_release(&c);
  return rc;
}
