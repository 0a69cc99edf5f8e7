/* tests/passes/test_seq_passes.c — the passes after autodiff on a sequence model:
 * recompute (passes/recompute.c) never clones attention, attention_bwd or an extra
 * (one kernel writes the producer's buffer and its extras'), at every mode, and the
 * gradients it gives are the ones without recompute (f64 interpreter, bitwise: the
 * copies compute the same operations on the same operands); the function stays valid
 * (ir_verify: extras right after their producer). The model: a chain of layers
 * h = h + attention(heads(tanh(h W_l))), x [B,4,8] with 2 heads of 4. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <string.h>

#include "ir/ir.h"
#include "passes/memplan.h"
#include "passes/passes.h"
#include "tests/compile.h"

#define LAYERS 6
#define BATCH 2

static Func *build(Module *m) {
  Func *f = ir_func_new(m, "seq");
  SrcLoc n = SRCLOC_NONE;
  int64_t dx[3] = {DIM_BATCH, 4, 8}, dh[4] = {DIM_BATCH, 4, 2, 4}, dw[2] = {8, 8};
  int32_t h = ir_input(f, "x", 0, ir_type(m, DT_F32, 3, dx), n);
  for (int l = 0; l < LAYERS; l++) {
    char name[16];
    snprintf(name, sizeof name, "W%d", l);
    int32_t w = ir_param(f, name, ir_type(m, DT_F32, 2, dw), INIT_NORMAL, 0.3, 0, n);
    int32_t a = ir_unary(f, OP_TANH, ir_binary(f, OP_MATMUL, h, w, n), n);
    int32_t q = ir_transpose(f, ir_to_type(f, OP_RESHAPE, a, ir_type(m, DT_F32, 4, dh), n), (const int[]){0, 2, 1, 3}, n);
    int32_t o = ir_attention(f, q, q, q, true, 0.5, NULL, n);
    int32_t back = ir_to_type(f, OP_RESHAPE, ir_transpose(f, o, (const int[]){0, 2, 1, 3}, n), ir_type(m, DT_F32, 3, dx), n);
    h = ir_binary(f, OP_ADD, h, back, n);
  }
  ir_loss(f, ir_reduce(f, OP_SUM, ir_binary(f, OP_MUL, h, h, n), IR_AXIS_ALL, false, n), n);
  return f;
}

/* The grad sinks' values of g on fixed leaves. */
static Interp *run(Func *g) {
  Tensor in[1], par[LAYERS];
  memset(in, 0, sizeof in);
  memset(par, 0, sizeof par);
  int np = 0;
  uint64_t st = 99;
  for (int32_t i = 0; i < g->ninsts; i++) {
    const Inst *x = &g->insts[i];
    if (x->op != OP_INPUT && x->op != OP_PARAM) continue;
    TensorType t = *ir_vtype(g, i);
    for (int d = 0; d < t.rank; d++)
      if (t.dims[d] == DIM_BATCH) t.dims[d] = BATCH;
    Tensor v = ir_tensor_new(&t);
    for (int64_t k = 0; k < v.numel; k++) {
      st = st * 6364136223846793005ull + 1442695040888963407ull;
      v.data[k] = ((double)(st >> 11) * 0x1.0p-53 - 0.5) * (x->op == OP_PARAM ? 0.6 : 2);
    }
    if (x->op == OP_INPUT) in[0] = v;
    else par[np++] = v;
  }
  Interp *it = ir_interp_run(g, INTERP_F64, BATCH, in, 1, par, np, 1, 1);
  ir_tensor_free(&in[0]);
  for (int i = 0; i < np; i++) ir_tensor_free(&par[i]);
  return it;
}

static void test_recompute_keeps_attention(void **state) {
  (void)state;
  for (int mode = RECOMPUTE_SQRT; mode <= RECOMPUTE_AUTO; mode++) {
    Module *m = ir_module_new();
    PassOptions po;
    pass_options_default(&po);
    po.verify = true;
    Func *g = test_grad(build(m), &po);
    assert_non_null(g);
    int attn = 0;
    for (int32_t i = 0; i < g->ninsts; i++) attn += g->insts[i].op == OP_ATTENTION_BWD;
    assert_int_equal(attn, LAYERS);
    Interp *before = run(g);
    assert_non_null(before);
    int32_t grads[LAYERS], ng = 0;
    for (int32_t i = 0; i < g->ninsts; i++)
      if (g->insts[i].op == OP_GRAD) grads[ng++] = g->insts[i].args[1];
    assert_int_equal(ng, LAYERS);
    double want[LAYERS][64];
    for (int p = 0; p < LAYERS; p++) memcpy(want[p], ir_interp_value(before, grads[p])->data, sizeof want[p]);
    ir_interp_free(before);

    RecomputeOptions o = {(RecomputeMode)mode, 0, BATCH, 1, NULL, NULL};
    RecomputeResult r;
    Func *h = pass_recompute(g, &o, &r);
    assert_non_null(h);
    assert_true(ir_verify(h, "recompute"));
    int recomputed = 0;
    for (int32_t i = 0; i < h->ninsts; i++) {
      const Inst *in = &h->insts[i];
      if (!(in->flags & IF_RECOMPUTED)) continue;
      recomputed++;
      if (in->op == OP_ATTENTION || in->op == OP_ATTENTION_BWD || in->op == OP_EXTRA)
        fail_msg("%s: %%%d = %s is a recomputed copy", recompute_mode_names[mode], (int)i, ir_ops[in->op].name);
    }
    if (mode == RECOMPUTE_SQRT) assert_true(recomputed > 0);   /* the tanh and products around it are */
    Interp *after = run(h);
    assert_non_null(after);
    ng = 0;
    for (int32_t i = 0; i < h->ninsts; i++)
      if (h->insts[i].op == OP_GRAD) {
        const Tensor *t = ir_interp_value(after, h->insts[i].args[1]);
        assert_int_equal(t->numel, 64);
        assert_memory_equal(t->data, want[ng], sizeof want[ng]);
        ng++;
      }
    assert_int_equal(ng, LAYERS);
    ir_interp_free(after);
    ir_module_free(m);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_recompute_keeps_attention),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
