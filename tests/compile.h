/* tests/compile.h — compile IR functions with bpcc's one pipeline (driver/pipeline.c),
 * as the commands do: the tests never assemble the stages themselves. */
#ifndef BPCC_TESTS_COMPILE_H
#define BPCC_TESTS_COMPILE_H

#include "driver/pipeline.h"

/* fwd as lowered, with its sinks; grad a gradient function already derived (or the same
 * function, for hand-written IR that carries grad sinks), or NULL for forward alone.
 * opt NULL: no update / step entries. The model, which the caller frees with
 * cg_model_free, or NULL after diagnostics. */
static inline CgModel *test_build(Func *fwd, Func *grad, const bprt_optimizer_config *opt, const CgOptions *o) {
  PipelineOptions po;
  pipeline_options_default(&po);
  if (o) po.codegen = *o;
  po.optimizer_set = true;
  if (opt) po.optimizer = *opt;
  else po.optimizer.kind = -1;
  po.forward_only = grad == NULL;
  Compilation c;
  pipeline_init_ir(&c, fwd, grad, &po);
  CgModel *m = pipeline_run(&c, STAGE_LLVM) ? pipeline_take_model(&c) : NULL;
  pipeline_release(&c);
  return m;
}

/* The gradient function of fwd (canonicalize, autodiff, simplify), in fwd's module;
 * NULL after diagnostics. po NULL: the default pass options. */
static inline Func *test_grad(Func *fwd, const PassOptions *po) {
  PipelineOptions o;
  pipeline_options_default(&o);
  if (po) o.passes = *po;
  Compilation c;
  pipeline_init_ir(&c, fwd, NULL, &o);
  Func *g = pipeline_run(&c, STAGE_SIMPLIFY) ? c.grad : NULL;
  pipeline_release(&c);
  return g;
}

#endif
