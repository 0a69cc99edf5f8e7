/* passes/modes.c — the inference form of a model: what its forward entry computes.
 *
 * A model lowers once, in training form (frontend/lower.c): batchnorm normalizes with
 * the statistics of the batch and `assign`s the running statistics their new values.
 * The forward entry (forward, eval, predict, PyTorch's model.eval()) normalizes with the
 * running statistics and changes nothing. pass_inference rewrites the one into the other:
 *
 *   bn_mean(x, rm)     -> rm        the running mean stands for the batch mean
 *   bn_var(x, m, rv)   -> rv        the running variance for the batch variance
 *   assign %buf, %v    -> (none)    inference updates no state
 *
 * The batch statistics and the update expressions are then dead, and simplify's DCE
 * removes them. Dropout needs no rewrite: its mask op is the identity in a forward
 * entry's kernels (codegen/kernels.c), the same IR in both modes. */
#include "passes/passes.h"

Func *pass_inference(Func *f) {
  Func *g = pass_func_new_like(f);
  int32_t *map = bp_xmalloc((size_t)(f->ninsts + 1) * sizeof *map);
  for (int32_t i = 0; i < f->ninsts; i++) {
    Inst in = f->insts[i];
    map[i] = -1;
    if (in.op == OP_ASSIGN) continue;
    if (in.op == OP_BN_MEAN) { map[i] = map[in.args[1]]; continue; }
    if (in.op == OP_BN_VAR) { map[i] = map[in.args[2]]; continue; }
    for (int k = 0; k < in.nargs; k++) in.args[k] = map[in.args[k]];
    in.from = in.from >= 0 && in.from < i ? map[in.from] : -1;
    map[i] = ir_emit(g, &in);
  }
  bp_free(map);
  return pass_func_replace(f, g);
}
