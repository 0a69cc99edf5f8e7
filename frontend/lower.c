/* frontend/lower.c — a checked model (FeGraph) to one IR Func.
 *
 * Semantic analysis already inlined the layers, expanded the standard library, resolved
 * every shape and named every parameter, so lowering is one loop over the nodes in
 * their (topological) order, mapping each to its IR builder call. Node i becomes value
 * map[i]. The builder re-infers every type; a disagreement with the type sema computed
 * is a bug in bpcc and stops with an internal error. Locations: each instruction keeps
 * the DSL location sema gave its node (inside a user layer, the expression there;
 * inside the standard library, the user's call; a parameter, the model-level call that
 * created it) and its call site: the model-level call that instantiated the layer it
 * comes from (none for the model's own statements), which the text form prints where it
 * differs from the location, so the lines of a layer called twice say which call. */
#include "frontend/frontend.h"

#include <string.h>

Func *fe_lower(Module *m, const FeModel *model) { return fe_lower_ex(m, model, false); }

/* batchnorm's node BN_NORM(x, rm, rv) (eps = fattr0, momentum = fattr1) in training form
 * (ops.def; the inference form is passes/modes.c's rewrite of it), PyTorch's
 * BatchNorm in train mode:
 *   m = bn_mean(x, rm)   v = bn_var(x, m, rv)   r = 1 / sqrt(v + eps)   xhat = bn_norm(x, m, r)
 *   assign rm, (1 - momentum) rm + momentum m
 *   assign rv, (1 - momentum) rv + momentum v n / (n - 1)     the unbiased batch variance
 * n = numel(x) / C, the values per channel (a `size`: B is known at run time). With one
 * value per channel (n = 1: batch 1 of [B, C]) the divisor n - 1 is 0, an error in
 * PyTorch; here the divisor becomes 1 ((n - 1) + (n - 1 == 0)), so the running variance
 * decays towards the batch's variance, 0, instead of turning NaN. */
static int32_t lower_batchnorm(Func *f, const FeNode *n, int32_t x, int32_t rm, int32_t rv) {
  Module *m = f->mod;
  SrcLoc loc = n->loc;
  DType dt = (DType)n->type.dtype;
  TypeId st = ir_type_scalar(m, dt);
  double eps = n->fattr[0], mom = n->fattr[1];
  int32_t mean = ir_bn(f, OP_BN_MEAN, x, rm, -1, loc);
  int32_t var = ir_bn(f, OP_BN_VAR, x, mean, rv, loc);
  int32_t rstd = ir_binary(f, OP_DIV, ir_const(f, 1.0, st, loc),
                           ir_unary(f, OP_SQRT, ir_binary(f, OP_ADD, var, ir_const(f, eps, st, loc), loc), loc), loc);
  int32_t xhat = ir_bn(f, OP_BN_NORM, x, mean, rstd, loc);
  int32_t keep = ir_const(f, 1.0 - mom, st, loc), take = ir_const(f, mom, st, loc);
  int32_t new_rm = ir_binary(f, OP_ADD, ir_binary(f, OP_MUL, keep, rm, loc), ir_binary(f, OP_MUL, take, mean, loc), loc);
  int32_t cnt = ir_binary(f, OP_DIV, ir_size(f, x, IR_AXIS_ALL, loc), ir_const(f, (double)n->type.dims[1], st, loc), loc);
  int32_t nm1 = ir_binary(f, OP_SUB, cnt, ir_const(f, 1.0, st, loc), loc);
  int32_t denom = ir_binary(f, OP_ADD, nm1, ir_binary(f, OP_EQ, nm1, ir_const(f, 0.0, st, loc), loc), loc);
  int32_t unbiased = ir_binary(f, OP_MUL, var, ir_binary(f, OP_DIV, cnt, denom, loc), loc);
  int32_t new_rv = ir_binary(f, OP_ADD, ir_binary(f, OP_MUL, keep, rv, loc), ir_binary(f, OP_MUL, take, unbiased, loc), loc);
  ir_assign(f, rm, new_rm, loc);
  ir_assign(f, rv, new_rv, loc);
  return xhat;
}

Func *fe_lower_ex(Module *m, const FeModel *model, bool activations) {
  Func *f = ir_func_new(m, model->name);
  int32_t *map = bp_xmalloc((size_t)(model->nnodes ? model->nnodes : 1) * sizeof *map);
  for (int32_t i = 0; i < model->nnodes; i++) {
    const FeNode *n = &model->nodes[i];
    int32_t a = n->nargs > 0 ? map[n->args[0]] : -1;
    int32_t b = n->nargs > 1 ? map[n->args[1]] : -1;
    TypeId t = ir_type(m, (DType)n->type.dtype, n->type.rank, n->type.dims);
    int32_t v = -1;
    int32_t first = f->ninsts;   /* what this node adds (none if hash-consing merged it) */
    switch (n->op) {
    case OP_INPUT: v = ir_input(f, ir_intern(m, n->name), (int)n->iattr, t, n->loc); break;
    case OP_PARAM: v = ir_param(f, ir_intern(m, n->name), t, (InitKind)n->iattr, n->fattr[0], n->fattr[1], n->loc); break;
    case OP_BUFFER: v = ir_buffer(f, ir_intern(m, n->name), t, (InitKind)n->iattr, n->fattr[0], n->loc); break;
    case OP_BN_NORM: v = lower_batchnorm(f, n, a, b, map[n->args[2]]); break;
    case OP_CONST: v = ir_const(f, n->fattr[0], t, n->loc); break;
    case OP_ADD: case OP_SUB: case OP_MUL: case OP_DIV: case OP_MATMUL: case OP_EMBEDDING:
      v = ir_binary(f, n->op, a, b, n->loc);
      break;
    case OP_NEG: case OP_EXP: case OP_LOG: case OP_SQRT: case OP_ABS:
    case OP_RELU: case OP_SIGMOID: case OP_TANH: case OP_ONEHOT: case OP_GELU: case OP_GELU_TANH:
      v = ir_unary(f, n->op, a, n->loc);
      break;
    case OP_TRANSPOSE: {   /* iattr: the permutation's code (ir_transpose_code), 0 the swap of the last two */
      int perm[4], rank = n->type.rank;
      int64_t code = n->iattr;
      for (int k = rank - 1; k >= 0; k--, code /= 10) perm[k] = (int)(code % 10);
      v = ir_transpose(f, a, n->iattr ? perm : NULL, n->loc);
      break;
    }
    case OP_CAUSAL_MASK: v = ir_causal_mask(f, n->type.dims[0], (DType)n->type.dtype, n->loc); break;
    case OP_ATTENTION:   /* q, k, v; iattr = causal, fattr[0] = scale; the lse extra follows o */
      v = ir_attention(f, a, b, map[n->args[2]], n->iattr != 0, n->fattr[0], NULL, n->loc);
      break;
    case OP_POW: v = ir_pow(f, a, n->fattr[0], n->loc); break;
    case OP_SUM: case OP_MEAN: case OP_MAX: v = ir_reduce(f, n->op, a, (int)n->iattr, n->keep, n->loc); break;
    case OP_SOFTMAX: case OP_LOG_SOFTMAX: v = ir_rowop(f, n->op, a, (int)n->iattr, n->loc); break;
    case OP_RESHAPE: v = ir_to_type(f, OP_RESHAPE, a, t, n->loc); break;
    case OP_MAX_POOL2D: case OP_AVG_POOL2D:   /* iattr = kernel, fattr = stride, padding */
      v = ir_pool(f, n->op, a, n->iattr, (int64_t)n->fattr[0], (int64_t)n->fattr[1], n->loc);
      break;
    case OP_CONV2D: v = ir_conv2d(f, OP_CONV2D, a, b, n->conv[0], n->conv[1], n->conv[2], TYPE_VOID, n->loc); break;
    case OP_LAYERNORM:   /* iattr = dims, fattr[0] = eps */
      v = ir_layernorm(f, OP_LAYERNORM, a, b, map[n->args[2]], n->iattr, n->fattr[0], n->loc);
      break;
    case OP_DROPOUT_MASK: v = ir_dropout_mask(f, n->fattr[0], (int)n->iattr, t, n->loc); break;
    case OP_OUTPUT: ir_output(f, ir_intern(m, n->name), a, n->loc); break;
    case OP_LOSS: ir_loss(f, a, n->loc); break;
    default: ir_die("lowering: unexpected node op %s", ir_ops[n->op].name);
    }
    for (int32_t k = first; k < f->ninsts; k++) f->insts[k].call = n->call;
    if (v >= 0 && f->insts[v].type != t) {
      char s1[96], s2[96];
      ir_die("lowering %s: sema computed %s, the builder %s", ir_ops[n->op].name, ir_type_str(&n->type, s1, sizeof s1),
             ir_type_str(ir_vtype(f, v), s2, sizeof s2));
    }
    map[i] = v;
  }
  /* Named activations as extra outputs, unless the value is already an output (one
   * declared, or an earlier name for the same value: hash-consing merges `a = x + 1`
   * and `b = x + 1`). Marked per value, where a scan of the outputs per activation was
   * quadratic. Names cannot clash: outputs and assignments share the model's names. */
  if (activations) {
    int32_t nvals = f->ninsts;
    bool *is_out = bp_xmalloc((size_t)(nvals ? nvals : 1) * sizeof *is_out);
    memset(is_out, 0, (size_t)nvals * sizeof *is_out);
    for (int32_t j = 0; j < nvals; j++)
      if (f->insts[j].op == OP_OUTPUT) is_out[f->insts[j].args[0]] = true;
    for (int32_t k = 0; k < model->nactivations; k++) {
      int32_t v = map[model->activations[k]];
      if (v < 0 || f->insts[v].type == TYPE_VOID || ir_vtype(f, v)->dtype == DT_LABEL || is_out[v]) continue;
      ir_output(f, ir_intern(m, model->activation_names[k]), v, model->activation_locs[k]);
      is_out[v] = true;
    }
    bp_free(is_out);
  }
  bp_free(map);
  return f;
}
