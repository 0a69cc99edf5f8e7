/* driver/emit.c — --check and the --emit kinds: each prints what one stage of the
 * pipeline made (drv_emits[] in main.c names the stage each needs).
 *
 *   --check       the checked models' summaries           (check)
 *   tokens        the tokens with their line:col ranges   (read)
 *   ast           the syntax tree                         (parse)
 *   ir            the forward IR                          (lower)
 *   grad-ir       forward + backward IR                   (recompute)
 *   opt-ir        the training step's kernel plan         (kernels)
 *   dot           the same as a Graphviz graph            (kernels, emit_dot.c)
 *   llvm|asm|obj  the compiled module                     (llvm)
 * What opt-ir and dot show is the plan codegen lowers, and llvm, asm and obj the
 * module the JIT and -o compile: every option applies as it does for train. */
#include "driver/driver.h"

#include <string.h>

int emit_check(Compilation *c, FILE *out) {
  bool first = true;
  for (int i = 0; i < c->unit->nmodels; i++) {
    if (c->opt.model && c->unit->models[i] != c->model) continue;
    if (!first) fputc('\n', out);
    first = false;
    fe_print_summary(out, c->unit->models[i]);
  }
  return 0;
}

static int emit_tokens(Compilation *c, FILE *out) {
  FeToken *toks;
  int errors = diag_error_count();
  int n = fe_tokenize(c->arena, c->file, &toks);
  fe_dump_tokens(out, toks, n);
  return diag_error_count() == errors ? 0 : 1;
}

static int emit_ast(Compilation *c, FILE *out) {
  fe_dump_ast(out, c->program);
  return 0;
}

static int emit_ir(Compilation *c, FILE *out) {
  ir_print_func(out, c->fwd);
  return 0;
}

/* A model without a loss has no gradient to show. */
static bool has_grad(Compilation *c) {
  if (c->grad) return true;
  diag_error(c->fwd->ninsts ? c->fwd->insts[0].loc : SRCLOC_NONE,
             "@%s has no loss, so no gradient; did you forget a `loss` statement in the model?", c->fwd->name);
  return false;
}

static int emit_grad_ir(Compilation *c, FILE *out) {
  if (!has_grad(c)) return 1;
  ir_print_func(out, c->grad);
  return 0;
}

static int emit_opt_ir(Compilation *c, FILE *out) {
  kernel_plan_print(out, c->kgrad ? c->kgrad : c->kfwd);
  return 0;
}

static int emit_code(Compilation *c, int kind, FILE *out) { return cg_emit_to(c->cg, kind, out) == 0 ? 0 : 1; }
static int emit_llvm(Compilation *c, FILE *out) { return emit_code(c, CG_EMIT_LLVM, out); }
static int emit_asm(Compilation *c, FILE *out) { return emit_code(c, CG_EMIT_ASM, out); }
static int emit_obj(Compilation *c, FILE *out) { return emit_code(c, CG_EMIT_OBJ, out); }

const DrvEmit drv_emits[] = {
    {"tokens", STAGE_READ, emit_tokens, "the tokens with their line:col ranges"},
    {"ast", STAGE_PARSE, emit_ast, "the syntax tree (printed even when it has errors)"},
    {"ir", STAGE_LOWER, emit_ir, "the forward IR of the model"},
    {"grad-ir", STAGE_RECOMPUTE, emit_grad_ir, "forward + backward IR after autodiff, simplification and recomputation"},
    {"opt-ir", STAGE_KERNELS, emit_opt_ir, "the training step's IR as the kernels it compiles to (the kernel plan)"},
    {"dot", STAGE_KERNELS, emit_dot, "Graphviz: forward and backward, kernels as clusters, recomputed values dashed"},
    {"llvm", STAGE_LLVM, emit_llvm, "the optimized LLVM IR of the entry points"},
    {"asm", STAGE_LLVM, emit_asm, "their assembly (-O0..-O3, -march=CPU apply)"},
    {"obj", STAGE_LLVM, emit_obj, "an ELF object file"},
    {NULL, STAGE_READ, NULL, NULL},
};
