/* tests/passes/test_precision.c — the precision pass (passes/precision.c) on a small
 * MLP (x[B,16] -> tanh 32 -> relu 32 -> 4 classes, softmax-CE):
 *   - the casts are where the policy puts them: their number, their place (right after
 *     a kept activation's producer; a cast back right before its backward reader), every
 *     product's operands 16-bit, relu_grad reading relu's copy, no backward instruction
 *     reading a kept f32 activation,
 *     every gradient f32, the sinks and names as before, ir_verify;
 *   - the interpreter's gradient of the mixed IR is the f32 gradient within a stated
 *     tolerance (bf16 and f16);
 *   - values that stay f32: an output, the operand of max's gradient mask (eq), softmax;
 *   - recomputation after it gives the same gradients bit for bit;
 *   - precision f32 changes nothing.
 * tests/passes/golden/precision_mlp.ir prints the same MLP's result line by line. */
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

#define BATCH 8

static const char mlp_ir[] =
    "func @mlp {\n"
    "  %0 = input \"x\" : f32[B,16]\n"
    "  %1 = input \"y\" : label[B,4]\n"
    "  %2 = param \"h1.W\" he_normal : f32[16,32]\n"
    "  %3 = param \"h1.b\" zeros : f32[32]\n"
    "  %4 = param \"h2.W\" he_normal : f32[32,32]\n"
    "  %5 = param \"h2.b\" zeros : f32[32]\n"
    "  %6 = param \"out.W\" xavier_normal : f32[32,4]\n"
    "  %7 = param \"out.b\" zeros : f32[4]\n"
    "  %8 = matmul %0, %2 : f32[B,32]\n"
    "  %9 = add %8, %3 : f32[B,32]\n"
    "  %10 = tanh %9 : f32[B,32]\n"
    "  %11 = matmul %10, %4 : f32[B,32]\n"
    "  %12 = add %11, %5 : f32[B,32]\n"
    "  %13 = relu %12 : f32[B,32]\n"
    "  %14 = matmul %13, %6 : f32[B,4]\n"
    "  %15 = add %14, %7 : f32[B,4]\n"
    "  %16 = softmax %15 axis=1 : f32[B,4]\n"
    "  output \"probs\" %16\n"
    "  %18 = softmax_xent %15, %1 : f32[B]\n"
    "  %19 = mean %18 axis=all : f32[]\n"
    "  loss %19\n"
    "}\n";

/* max's gradient mask eq(h, max(h)) reads h; a named hidden value is an output too */
static const char max_ir[] =
    "func @maxnet {\n"
    "  %0 = input \"x\" : f32[B,8]\n"
    "  %1 = param \"W\" normal(0.5) : f32[8,8]\n"
    "  %2 = matmul %0, %1 : f32[B,8]\n"
    "  %3 = tanh %2 : f32[B,8]\n"
    "  %4 = max %3 axis=1 : f32[B]\n"
    "  %5 = sigmoid %2 : f32[B,8]\n"
    "  output \"s\" %5\n"
    "  %7 = mul %5, %5 : f32[B,8]\n"
    "  %8 = sum %7 axis=1 : f32[B]\n"
    "  %9 = add %4, %8 : f32[B]\n"
    "  %10 = mean %9 axis=all : f32[]\n"
    "  loss %10\n"
    "}\n";

/* The gradient function of the first function of text (canonicalize .. simplify). */
static Func *grad_of(const char *text, Module **m) {
  *m = ir_parse("t.ir", text, strlen(text));
  assert_non_null(*m);
  PassOptions po;
  pass_options_default(&po);
  po.verify = true;
  Func *g = test_grad((*m)->funcs[0], &po);
  assert_non_null(g);
  return g;
}

/* The mixed-precision copy of g (g stays as it is). */
static Func *mixed(Func *g, DType low) {
  char name[64];
  snprintf(name, sizeof name, "%s.%s", g->name, ir_dtype_name(low));
  Func *h = pass_precision(ir_func_clone(g, name), low);
  assert_non_null(h);
  assert_true(ir_verify(h, "precision"));
  return h;
}

/* Run g in the f32 interpreter on fixed leaves (the same for every function with the same
 * inputs and parameters): inputs uniform in [-1, 1], labels row % classes, parameters
 * uniform in [-0.4, 0.4]. */
static Interp *run(Func *g) {
  Tensor in[2], par[8];
  memset(in, 0, sizeof in);
  memset(par, 0, sizeof par);
  int np = 0, nin = 0;
  uint64_t st = 12345;
  for (int32_t i = 0; i < g->ninsts; i++) {
    const Inst *x = &g->insts[i];
    if (x->op != OP_INPUT && x->op != OP_PARAM) continue;
    TensorType t = *ir_vtype(g, i);
    for (int d = 0; d < t.rank; d++)
      if (t.dims[d] == DIM_BATCH) t.dims[d] = BATCH;
    Tensor v = ir_tensor_new(&t);
    for (int64_t k = 0; k < v.numel; k++) {
      st = st * 6364136223846793005ull + 1442695040888963407ull;
      double u = (double)(st >> 11) * 0x1.0p-53 * 2 - 1;
      v.data[k] = t.dtype == DT_LABEL ? (double)(k % t.dims[t.rank - 1]) : x->op == OP_PARAM ? 0.4 * u : u;
    }
    if (x->op == OP_INPUT) in[x->iattr[0]] = v, nin++;
    else par[np++] = v;
  }
  Interp *it = ir_interp_run(g, INTERP_F32, BATCH, in, nin, par, np, 1, 1);
  for (int k = 0; k < nin; k++) ir_tensor_free(&in[k]);
  for (int k = 0; k < np; k++) ir_tensor_free(&par[k]);
  assert_non_null(it);
  return it;
}

static int count_op(Func *f, Op op) {
  int n = 0;
  for (int32_t i = 0; i < f->ninsts; i++) n += f->insts[i].op == op;
  return n;
}

/* The value of the first instruction of op in f (forward order), or -1. */
static int32_t first(Func *f, Op op) {
  for (int32_t i = 0; i < f->ninsts; i++)
    if (f->insts[i].op == op) return i;
  return -1;
}

/* Casts of f: to low in forward, to low in backward, back to f32 (all backward). */
static void count_casts(Func *f, int *fwd_low, int *bwd_low, int *bwd_f32) {
  *fwd_low = *bwd_low = *bwd_f32 = 0;
  for (int32_t i = 0; i < f->ninsts; i++) {
    const Inst *in = &f->insts[i];
    if (in->op != OP_CAST) continue;
    assert_string_equal(in->rule, "precision");
    bool bwd = in->flags & IF_BACKWARD, low = ir_dtype_is_low(ir_vtype(f, i)->dtype);
    if (!bwd) assert_true(low);   /* forward only ever makes 16-bit copies */
    *(low ? (bwd ? bwd_low : fwd_low) : bwd_f32) += 1;
  }
}

/* Every gradient within tol * (its largest magnitude) of the reference's, element by
 * element; returns the largest such relative error seen. */
static double compare_grads(Func *ref, Interp *iref, Func *mix, Interp *imix, double tol) {
  int32_t gr[16], gm[16];
  int nr = 0, nm = 0;
  for (int32_t i = 0; i < ref->ninsts; i++)
    if (ref->insts[i].op == OP_GRAD) gr[nr++] = ref->insts[i].args[1];
  for (int32_t i = 0; i < mix->ninsts; i++)
    if (mix->insts[i].op == OP_GRAD) gm[nm++] = mix->insts[i].args[1];
  assert_int_equal(nr, nm);
  double worst = 0;
  for (int p = 0; p < nr; p++) {
    const Tensor *a = ir_interp_value(iref, gr[p]), *b = ir_interp_value(imix, gm[p]);
    assert_int_equal(a->numel, b->numel);
    double scale = 0;
    for (int64_t k = 0; k < a->numel; k++) scale = fmax(scale, fabs(a->data[k]));
    assert_true(scale > 0);
    for (int64_t k = 0; k < a->numel; k++) {
      double e = fabs(a->data[k] - b->data[k]) / scale;
      if (e > tol) fail_msg("gradient %d, element %lld: %.9g vs %.9g (f32), %.3g of its scale > %.3g", p, (long long)k,
                            b->data[k], a->data[k], e, tol);
      worst = fmax(worst, e);
    }
  }
  return worst;
}

/* ------------------------------------------------------------------ the MLP */

static void test_mlp_casts(void **state) {
  (void)state;
  Module *m;
  Func *g = grad_of(mlp_ir, &m);
  char *before = ir_print_to_string(g);
  Func *h = mixed(g, DT_BF16);
  /* forward: x, h1.W, tanh, h2.W, relu, out.W; backward: dlogits, dz2, dz1 and x again
   * to bf16; relu (relu_grad's mask) and tanh back to f32 */
  int fl, bl, bf;
  count_casts(h, &fl, &bl, &bf);
  assert_int_equal(fl, 6);
  assert_int_equal(bl, 4);
  assert_int_equal(bf, 2);
  assert_int_equal(count_op(h, OP_CAST), 12);
  assert_int_equal(h->ninsts, g->ninsts + 12);
  /* the rest is the gradient as it was: same ops in the same order, sinks and names */
  int32_t j = 0;
  for (int32_t i = 0; i < h->ninsts; i++) {
    if (h->insts[i].op == OP_CAST) continue;
    assert_int_equal(h->insts[i].op, g->insts[j].op);
    assert_int_equal(h->insts[i].flags, g->insts[j].flags);
    if (g->insts[j].name) assert_string_equal(h->insts[i].name, g->insts[j].name);
    j++;
  }
  assert_int_equal(j, g->ninsts);
  int nproducts = 0;
  for (int32_t i = 0; i < h->ninsts; i++) {
    const Inst *in = &h->insts[i];
    /* every product reads two bf16 casts and gives f32 */
    if (ir_ops[in->op].kind == OPK_PRODUCT) {
      nproducts++;
      for (int k = 0; k < 2; k++) {
        assert_int_equal(h->insts[in->args[k]].op, OP_CAST);
        assert_int_equal(ir_vtype(h, in->args[k])->dtype, DT_BF16);
      }
      assert_int_equal(ir_vtype(h, i)->dtype, DT_F32);
    }
    /* a kept activation's cast comes right after its producer */
    if (in->op == OP_CAST && !(in->flags & IF_BACKWARD) && h->insts[in->args[0]].op != OP_INPUT &&
        h->insts[in->args[0]].op != OP_PARAM)
      assert_int_equal(in->args[0], i - 1);
    /* a cast back to f32 comes right before the one instruction that reads it */
    if (in->op == OP_CAST && ir_vtype(h, i)->dtype == DT_F32) {
      assert_true(in->flags & IF_BACKWARD);
      assert_int_equal(h->insts[in->args[0]].op, OP_CAST);
      assert_false(h->insts[in->args[0]].flags & IF_BACKWARD);
      const Inst *next = &h->insts[i + 1];
      assert_true(next->op == OP_TANH_GRAD || next->op == OP_RELU_GRAD);
      assert_int_equal(next->args[0], i);
      assert_int_equal(in->from, next->from);
    }
    /* the gradients are f32 */
    if (in->op == OP_GRAD) assert_int_equal(ir_vtype(h, in->args[1])->dtype, DT_F32);
  }
  assert_int_equal(nproducts, 8);   /* 3 forward, 5 backward (no dx of the input) */
  /* relu_grad's mask is relu's output (> 0 exactly where its input is), through its
   * bf16 copy: the relu's input is not kept */
  int32_t rg = first(h, OP_RELU_GRAD), relu = first(h, OP_RELU);
  const Inst *mask = &h->insts[h->insts[rg].args[0]];
  assert_int_equal(mask->op, OP_CAST);
  assert_int_equal(h->insts[mask->args[0]].args[0], relu);
  /* the forward activations backward read in f32 before it now die in forward: no
   * backward instruction reads tanh, the relu's input or relu */
  int32_t acts[3] = {first(h, OP_TANH), first(h, OP_RELU), h->insts[first(h, OP_RELU)].args[0]};
  for (int a = 0; a < 3; a++)
    for (int32_t i = 0; i < h->ninsts; i++)
      for (int k = 0; k < h->insts[i].nargs; k++)
        if (h->insts[i].args[k] == acts[a] && (h->insts[i].flags & IF_BACKWARD))
          fail_msg("backward %%%d (%s) reads the f32 activation %%%d", (int)i, ir_ops[h->insts[i].op].name, (int)acts[a]);
  /* softmax's output (returned, and read by the loss's gradient) stays f32 */
  int32_t sm = first(h, OP_SOFTMAX);
  for (int32_t i = 0; i < h->ninsts; i++)
    if (h->insts[i].op == OP_CAST) assert_int_not_equal(h->insts[i].args[0], sm);
  /* the pass left g as it was */
  char *after = ir_print_to_string(g);
  assert_string_equal(before, after);
  bp_free(before);
  bp_free(after);
  ir_module_free(m);
}

/* The kept activations' bytes: tanh and relu at 2 bytes (the relu's input is not kept:
 * relu_grad reads relu), and the bf16 copies of h2.W and out.W (backward's dh1 = dz2
 * h2.W^T and dh2 = dlogits out.W^T read the forward's). */
static void test_mlp_memory(void **state) {
  (void)state;
  Module *m;
  Func *g = grad_of(mlp_ir, &m);
  Func *h = mixed(g, DT_BF16);
  int64_t kept[2] = {0, 0};
  Func *fs[2] = {g, h};
  for (int k = 0; k < 2; k++) {
    MemPlan *p = memplan_build(fs[k], BATCH);
    kept[k] = memplan_totals(p, BATCH, 0).kept;
    memplan_free(p);
  }
  /* f32: tanh, the relu's input, relu: 3 * 32 * 4 bytes a row */
  assert_int_equal(kept[0], 3 * 32 * 4 * BATCH);
  assert_int_equal(kept[1], 2 * 32 * 2 * BATCH + (32 * 32 + 32 * 4) * 2);
  ir_module_free(m);
}

static void test_mlp_gradients(void **state) {
  (void)state;
  Module *m;
  Func *g = grad_of(mlp_ir, &m);
  Interp *ref = run(g);
  /* bf16 keeps 8 significant bits (unit roundoff u = 2^-8), f16 11 (u = 2^-11). Each
   * product term a b gets a relative error of at most about 2u from its operands, and a
   * gradient passes through at most three products and two kept activations, so each
   * element is within about 7u of the f32 gradient relative to the gradient's largest
   * element; the test allows 8u. */
  static const struct { DType dt; double tol; } cases[] = {{DT_BF16, 8 * 0x1p-8}, {DT_F16, 8 * 0x1p-11}};
  for (int c = 0; c < 2; c++) {
    Func *h = mixed(g, cases[c].dt);
    Interp *mix = run(h);
    double worst = compare_grads(g, ref, h, mix, cases[c].tol);
    /* the rounding is really there: the gradients differ */
    assert_true(worst > 0);
    print_message("%s: largest gradient error %.3g of the gradient's scale (allowed %.3g)\n",
                  ir_dtype_name(cases[c].dt), worst, cases[c].tol);
    ir_interp_free(mix);
  }
  ir_interp_free(ref);
  ir_module_free(m);
}

/* Recomputation after the pass (the pipeline's order): the same gradients, bit for bit. */
static void test_mlp_recompute(void **state) {
  (void)state;
  Module *m;
  Func *g = grad_of(mlp_ir, &m);
  Func *h = mixed(g, DT_BF16);
  Interp *want = run(h);
  Func *hc = ir_func_clone(h, "mlp.bf16.keep");
  RecomputeOptions o = {RECOMPUTE_SQRT, 0, BATCH, 1, NULL, NULL};
  RecomputeResult r;
  Func *rc = pass_recompute(hc, &o, &r);
  assert_non_null(rc);
  assert_true(ir_verify(rc, "recompute"));
  assert_int_equal(r.ncandidates, 4);   /* the bf16 casts of tanh, relu, h2.W and out.W */
  assert_true(r.nkept < r.ncandidates);
  Interp *got = run(rc);
  int32_t a[16], b[16];
  int na = 0, nb = 0;
  for (int32_t i = 0; i < h->ninsts; i++)
    if (h->insts[i].op == OP_GRAD) a[na++] = h->insts[i].args[1];
  for (int32_t i = 0; i < rc->ninsts; i++)
    if (rc->insts[i].op == OP_GRAD) b[nb++] = rc->insts[i].args[1];
  assert_int_equal(na, nb);
  for (int p = 0; p < na; p++) {
    const Tensor *x = ir_interp_value(want, a[p]), *y = ir_interp_value(got, b[p]);
    assert_int_equal(x->numel, y->numel);
    assert_memory_equal(x->data, y->data, sizeof(double) * (size_t)x->numel);
  }
  ir_interp_free(want);
  ir_interp_free(got);
  ir_module_free(m);
}

/* ------------------------------------------------------------------ what stays f32 */

static void test_values_that_stay_f32(void **state) {
  (void)state;
  Module *m;
  Func *g = grad_of(max_ir, &m);
  Func *h = mixed(g, DT_BF16);
  int32_t th = first(h, OP_TANH), sg = first(h, OP_SIGMOID), eq = first(h, OP_EQ);
  assert_true(th >= 0 && sg >= 0 && eq >= 0);
  /* eq compares tanh's own f32 values with their max: tanh is not kept in bf16, and
   * tanh_grad reads it directly */
  assert_int_equal(h->insts[eq].args[0], th);
  for (int32_t i = 0; i < h->ninsts; i++) {
    const Inst *in = &h->insts[i];
    if (in->op == OP_CAST) assert_true(in->args[0] != th && in->args[0] != sg);
    if (in->op == OP_TANH_GRAD) assert_int_equal(in->args[0], th);
    /* the output s is returned in f32: its readers in backward read it, not a copy */
    if (in->op == OP_SIGMOID_GRAD) assert_int_equal(in->args[0], sg);
  }
  /* the casts: x and W for the forward product, dz and x for dW = x^T dz; nothing is
   * kept in bf16 (backward reads tanh, sigmoid and max's result, all f32) */
  int fl, bl, bf;
  count_casts(h, &fl, &bl, &bf);
  assert_int_equal(fl, 2);
  assert_int_equal(bl, 2);
  assert_int_equal(bf, 0);
  Interp *ref = run(g), *mix = run(h);
  compare_grads(g, ref, h, mix, 8 * 0x1p-8);
  ir_interp_free(ref);
  ir_interp_free(mix);
  ir_module_free(m);
}

/* precision f32 is the identity: the same function, untouched. */
static void test_f32_is_identity(void **state) {
  (void)state;
  Module *m;
  Func *g = grad_of(mlp_ir, &m);
  char *before = ir_print_to_string(g);
  assert_ptr_equal(pass_precision(g, DT_F32), g);
  char *after = ir_print_to_string(g);
  assert_string_equal(before, after);
  bp_free(before);
  bp_free(after);
  ir_module_free(m);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_mlp_casts),
      cmocka_unit_test(test_mlp_memory),
      cmocka_unit_test(test_mlp_gradients),
      cmocka_unit_test(test_mlp_recompute),
      cmocka_unit_test(test_values_that_stay_f32),
      cmocka_unit_test(test_f32_is_identity),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
