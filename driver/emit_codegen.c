/* driver/emit_codegen.c — `bpcc --emit=llvm|asm|obj FILE.bp`: the whole model
 * compiled by codegen/ (forward; with a loss also autodiff, grad and the training step
 * with the optimizer of the `train` block), printed as optimized LLVM IR, assembly, or
 * an object file, on standard output. -O0..-O3 and -march=CPU (main.c) set
 * drv_codegen. Line tables are on, so the assembly and the object map each kernel to
 * its line of the .bp file. */
#include <string.h>

#include "codegen/codegen.h"
#include "driver/driver.h"
#include "passes/passes.h"

DrvCodegenOptions drv_codegen = {"native", 3, false};

/* The optimizer and hyperparameters of a train block (TrainSpec holds PyTorch's
 * defaults for whatever the block leaves out). */
void drv_train_optimizer(const TrainSpec *ts, bprt_optimizer_config *opt) { *opt = ts->opt; }

static bool has_loss(const Func *f) {
  for (int32_t i = 0; i < f->ninsts; i++)
    if (f->insts[i].op == OP_LOSS) return true;
  return false;
}

static int emit_kind(DrvCompilation *c, int kind) {
  int errors = diag_error_count();
  Func *grad = NULL;
  if (has_loss(c->func)) {
    PassOptions po;
    pass_options_default(&po);
    char gname[256];
    snprintf(gname, sizeof gname, "%s.grad", c->func->name);
    grad = pass_run_pipeline(ir_func_clone(c->func, gname), &po);
    if (!grad || diag_error_count() != errors) return 1;
  }
  bprt_optimizer_config opt;
  drv_train_optimizer(&c->model->train, &opt);
  CgOptions o = {drv_codegen.march, drv_codegen.opt_level, 0, true, false};
  CgModel *m = cg_model_build(c->func, grad, grad ? &opt : NULL, &o);
  if (!m) return 1;
  int rc = cg_emit(m, kind, "-");
  cg_model_free(m);
  return rc == 0 ? 0 : 1;
}

int drv_emit_llvm(DrvCompilation *c, FILE *out) {
  (void)out;
  return emit_kind(c, CG_EMIT_LLVM);
}

int drv_emit_asm(DrvCompilation *c, FILE *out) {
  (void)out;
  return emit_kind(c, CG_EMIT_ASM);
}

int drv_emit_obj(DrvCompilation *c, FILE *out) {
  (void)out;
  return emit_kind(c, CG_EMIT_OBJ);
}
