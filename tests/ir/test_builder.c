/* tests/ir/test_builder.c — the builder and type inference (ir/ir.c): the result type
 * of every op, hash-consing, and the exact message of each shape error that
 * ir_infer_type catches. */
#include "helpers.h"

typedef struct {
  Module *m;
  Func *f;
  int32_t x, y, w, b, s, lab;   /* x: f32[B,4]  y: f32[B,3]  w: f32[4,3]  b: f32[3]  s: f32[]  lab: label[B,3] */
} Fx;

static Fx fx;

static int setup(void **state) {
  (void)state;
  fx.m = ir_module_new();
  fx.f = ir_func_new(fx.m, "t");
  fx.x = ir_input(fx.f, "x", 0, ty(fx.m, DT_F32, 2, DIM_BATCH, 4, 0), LOC(1, 1));
  fx.y = ir_input(fx.f, "y", 1, ty(fx.m, DT_F32, 2, DIM_BATCH, 3, 0), LOC(1, 1));
  fx.lab = ir_input(fx.f, "lab", 2, ty(fx.m, DT_LABEL, 2, DIM_BATCH, 3, 0), LOC(1, 1));
  fx.w = ir_param(fx.f, "w", ty(fx.m, DT_F32, 2, 4, 3, 0), INIT_HE_NORMAL, 0, 0, LOC(2, 1));
  fx.b = ir_param(fx.f, "b", ty(fx.m, DT_F32, 1, 3, 0, 0), INIT_ZEROS, 0, 0, LOC(2, 1));
  fx.s = ir_scalar(fx.f, 2.0, LOC(3, 1));
  return 0;
}

static int teardown(void **state) {
  (void)state;
  ir_module_free(fx.m);
  return 0;
}

#define TYPE_IS(v, text)                                  \
  do {                                                    \
    char buf_[64];                                        \
    assert_string_equal(vtype(fx.f, (v), buf_, sizeof buf_), (text)); \
  } while (0)

static void test_types_and_interning(void **state) {
  (void)state;
  Module *m = fx.m;
  TypeId a = ty(m, DT_F32, 2, DIM_BATCH, 4, 0), b = ty(m, DT_F32, 2, DIM_BATCH, 4, 0);
  assert_int_equal(a, b);
  assert_int_not_equal(a, ty(m, DT_F64, 2, DIM_BATCH, 4, 0));
  assert_int_not_equal(a, ty(m, DT_F32, 2, 4, DIM_BATCH, 0));
  char buf[64];
  assert_string_equal(ir_type_str(ir_type_get(m, ir_type_scalar(m, DT_F32)), buf, sizeof buf), "f32[]");
  assert_string_equal(ir_type_str(ir_type_get(m, fx.f->insts[fx.lab].type), buf, sizeof buf), "label[B,3]");
  /* label[B,3] holds one class index per row */
  assert_int_equal(ir_type_numel(ir_vtype(fx.f, fx.lab), 5), 5);
  assert_int_equal(ir_type_numel(ir_vtype(fx.f, fx.x), 5), 20);
  assert_int_equal(ir_type_numel(ir_vtype(fx.f, fx.s), 5), 1);
}

static void test_leaves(void **state) {
  (void)state;
  TYPE_IS(fx.x, "f32[B,4]");
  TYPE_IS(fx.lab, "label[B,3]");
  TYPE_IS(fx.w, "f32[4,3]");
  TYPE_IS(fx.s, "f32[]");
  int32_t c = ir_const(fx.f, 1.5, ty(fx.m, DT_F64, 1, 7, 0, 0), LOC(1, 1));
  TYPE_IS(c, "f64[7]");
  int32_t d = ir_dropout_mask(fx.f, 0.25, 3, fx.f->insts[fx.x].type, LOC(1, 1));
  TYPE_IS(d, "f32[B,4]");
  assert_int_equal(fx.f->insts[d].iattr[0], 3);
  assert_true(fx.f->insts[d].fattr[0] == 0.25);
  assert_int_equal(fx.f->insts[fx.w].iattr[0], INIT_HE_NORMAL);
  assert_string_equal(fx.f->insts[fx.w].name, "w");
  assert_int_equal(fx.f->insts[fx.y].iattr[0], 1);
}

static void test_elementwise_and_broadcasting(void **state) {
  (void)state;
  Func *f = fx.f;
  int32_t mm = ir_binary(f, OP_MATMUL, fx.x, fx.w, LOC(4, 1));
  TYPE_IS(mm, "f32[B,3]");
  static const Op bin[] = {OP_ADD, OP_SUB, OP_MUL, OP_DIV, OP_EQ};
  for (size_t i = 0; i < sizeof bin / sizeof bin[0]; i++) {
    TYPE_IS(ir_binary(f, bin[i], mm, fx.b, LOC(1, 1)), "f32[B,3]");     /* [B,3] op [3] */
    TYPE_IS(ir_binary(f, bin[i], fx.s, mm, LOC(1, 1)), "f32[B,3]");     /* [] op [B,3] */
  }
  /* size-1 dims stretch: [B,1] + [1,3] -> [B,3]; [4,1] * [3] -> [4,3] */
  int32_t col = ir_reduce(f, OP_SUM, mm, 1, true, LOC(5, 1));
  TYPE_IS(col, "f32[B,1]");
  int32_t row = ir_reduce(f, OP_SUM, fx.w, 0, true, LOC(5, 1));
  TYPE_IS(row, "f32[1,3]");
  TYPE_IS(ir_binary(f, OP_ADD, col, row, LOC(1, 1)), "f32[B,3]");
  int32_t c41 = ir_reduce(f, OP_MAX, fx.w, 1, true, LOC(5, 1));
  TYPE_IS(c41, "f32[4,1]");
  TYPE_IS(ir_binary(f, OP_MUL, c41, fx.b, LOC(1, 1)), "f32[4,3]");
  static const Op un[] = {OP_NEG, OP_EXP, OP_LOG, OP_SQRT, OP_ABS, OP_SIGN, OP_RELU, OP_SIGMOID, OP_TANH};
  for (size_t i = 0; i < sizeof un / sizeof un[0]; i++) TYPE_IS(ir_unary(f, un[i], mm, LOC(1, 1)), "f32[B,3]");
  int32_t p = ir_pow(f, mm, 3.0, LOC(6, 1));
  TYPE_IS(p, "f32[B,3]");
  assert_true(f->insts[p].fattr[0] == 3.0);
  static const Op gr[] = {OP_RELU_GRAD, OP_SIGMOID_GRAD, OP_TANH_GRAD};
  for (size_t i = 0; i < 3; i++) TYPE_IS(ir_binary(f, gr[i], mm, fx.y, LOC(1, 1)), "f32[B,3]");
}

static void test_matmul_family(void **state) {
  (void)state;
  Func *f = fx.f;
  int32_t mm = ir_binary(f, OP_MATMUL, fx.x, fx.w, LOC(4, 1));          /* [B,4][4,3] */
  TYPE_IS(mm, "f32[B,3]");
  TYPE_IS(ir_binary(f, OP_MATMUL_NT, mm, fx.w, LOC(1, 1)), "f32[B,4]");            /* [B,3][4,3]^T */
  TYPE_IS(ir_binary(f, OP_MATMUL_TN, fx.x, mm, LOC(1, 1)), "f32[4,3]");            /* [B,4]^T[B,3] */
  TYPE_IS(ir_unary(f, OP_TRANSPOSE, fx.x, LOC(1, 1)), "f32[4,B]");
  TYPE_IS(ir_unary(f, OP_TRANSPOSE, fx.w, LOC(1, 1)), "f32[3,4]");
}

static void test_reductions_rows_and_labels(void **state) {
  (void)state;
  Func *f = fx.f;
  static const Op red[] = {OP_SUM, OP_MEAN, OP_MAX};
  for (size_t i = 0; i < 3; i++) {
    TYPE_IS(ir_reduce(f, red[i], fx.x, 0, false, LOC(1, 1)), "f32[4]");
    TYPE_IS(ir_reduce(f, red[i], fx.x, 1, false, LOC(1, 1)), "f32[B]");
    TYPE_IS(ir_reduce(f, red[i], fx.x, 0, true, LOC(1, 1)), "f32[1,4]");
    TYPE_IS(ir_reduce(f, red[i], fx.x, IR_AXIS_ALL, false, LOC(1, 1)), "f32[]");
    TYPE_IS(ir_reduce(f, red[i], fx.x, IR_AXIS_ALL, true, LOC(1, 1)), "f32[1,1]");
  }
  TYPE_IS(ir_size(f, fx.x, 0, LOC(1, 1)), "f32[]");
  TYPE_IS(ir_size(f, fx.x, IR_AXIS_ALL, LOC(1, 1)), "f32[]");
  TYPE_IS(ir_rowop(f, OP_SOFTMAX, fx.y, 1, LOC(1, 1)), "f32[B,3]");
  TYPE_IS(ir_rowop(f, OP_LOG_SOFTMAX, fx.y, 0, LOC(1, 1)), "f32[B,3]");
  TYPE_IS(ir_unary(f, OP_ONEHOT, fx.lab, LOC(1, 1)), "f32[B,3]");
  TYPE_IS(ir_binary(f, OP_SOFTMAX_XENT, fx.y, fx.lab, LOC(1, 1)), "f32[B]");
  TYPE_IS(ir_to_type(f, OP_BROADCAST, fx.b, fx.f->insts[fx.y].type, LOC(1, 1)), "f32[B,3]");
  TYPE_IS(ir_to_type(f, OP_SUM_TO, fx.y, fx.f->insts[fx.b].type, LOC(1, 1)), "f32[3]");
  TYPE_IS(ir_to_type(f, OP_SUM_TO, fx.y, ty(fx.m, DT_F32, 2, 1, 3, 0), LOC(1, 1)), "f32[1,3]");
  /* reshape: any dims with the same element count for every batch (B may move) */
  TYPE_IS(ir_to_type(f, OP_RESHAPE, fx.x, ty(fx.m, DT_F32, 3, DIM_BATCH, 2, 2), LOC(1, 1)), "f32[B,2,2]");
  TYPE_IS(ir_to_type(f, OP_RESHAPE, fx.x, ty(fx.m, DT_F32, 2, 4, DIM_BATCH, 0), LOC(1, 1)), "f32[4,B]");
  TYPE_IS(ir_to_type(f, OP_RESHAPE, fx.w, ty(fx.m, DT_F32, 1, 12, 0, 0), LOC(1, 1)), "f32[12]");
  TYPE_IS(ir_to_type(f, OP_RESHAPE, fx.b, ty(fx.m, DT_F32, 3, 1, 3, 1), LOC(1, 1)), "f32[1,3,1]");
  /* to its own type: the identity, no instruction */
  int32_t n = f->ninsts;
  assert_int_equal(ir_to_type(f, OP_BROADCAST, fx.y, f->insts[fx.y].type, LOC(1, 1)), fx.y);
  assert_int_equal(f->ninsts, n);
}

static void test_sinks(void **state) {
  (void)state;
  Func *f = fx.f;
  int32_t l = ir_reduce(f, OP_MEAN, fx.y, IR_AXIS_ALL, false, LOC(1, 1));
  int32_t n = f->ninsts;
  ir_output(f, "probs", fx.y, LOC(7, 1));
  ir_loss(f, l, LOC(8, 1));
  ir_grad(f, fx.w, fx.w, LOC(9, 1));
  assert_int_equal(f->ninsts, n + 3);
  assert_int_equal(f->insts[n].type, TYPE_VOID);
  assert_string_equal(f->insts[n].name, "probs");
  assert_int_equal(f->insts[n + 1].op, OP_LOSS);
  assert_int_equal(f->insts[n + 2].args[1], fx.w);
  int32_t *uses = ir_use_counts(f);
  assert_int_equal(uses[fx.w], 2);
  assert_int_equal(uses[fx.y], 2);   /* mean and output */
  bp_free(uses);
}

static void test_hash_consing(void **state) {
  (void)state;
  Func *f = fx.f;
  int32_t a = ir_binary(f, OP_ADD, fx.x, fx.x, LOC(1, 1));
  int32_t b = ir_binary(f, OP_ADD, fx.x, fx.x, LOC(1, 1));
  assert_int_equal(a, b);
  int32_t c = ir_binary(f, OP_SUB, fx.x, fx.x, LOC(1, 1));
  assert_int_not_equal(a, c);
  /* different attributes: different values */
  assert_int_not_equal(ir_reduce(f, OP_SUM, fx.x, 0, false, LOC(1, 1)), ir_reduce(f, OP_SUM, fx.x, 0, true, LOC(1, 1)));
  /* leaves are never merged, even when equal (inputs and params have identity) */
  int32_t d1 = ir_dropout_mask(f, 0.5, 1, f->insts[fx.x].type, LOC(1, 1));
  int32_t d2 = ir_dropout_mask(f, 0.5, 1, f->insts[fx.x].type, LOC(1, 1));
  assert_int_not_equal(d1, d2);
  /* constants are pure and merge */
  assert_int_equal(ir_scalar(f, 2.0, LOC(9, 9)), fx.s);
  /* with cse off, nothing merges */
  f->cse = false;
  assert_int_not_equal(ir_binary(f, OP_ADD, fx.x, fx.x, LOC(1, 1)), a);
}

/* ir_infer_type on a hand-made instruction: the error text, or "" if well-typed. */
static const char *infer_err(Inst in) {
  static char err[256];
  ir_infer_type(fx.f, &in, err, sizeof err);
  return err;
}

static Inst mk(Op op, int nargs, int32_t a, int32_t b) {
  Inst in = ir_inst(op, LOC(1, 1));
  in.nargs = (uint8_t)nargs;
  in.args[0] = a;
  in.args[1] = b;
  return in;
}

/* conv2d's type rule: the output size formula, the dilation-3 hash-consing key, and
 * the exact text of each error, for the forward op and its two gradients. */
static void test_conv2d_types(void **state) {
  (void)state;
  Func *f = fx.f;
  Module *m = fx.m;
  const int64_t xd[4] = {DIM_BATCH, 3, 9, 8}, kd[4] = {4, 3, 3, 2}, k5[4] = {4, 3, 5, 5}, kc[4] = {4, 2, 3, 3};
  int32_t x = ir_input(f, "img", 9, ir_type(m, DT_F32, 4, xd), LOC(1, 1));
  int32_t k = ir_param(f, "k", ir_type(m, DT_F32, 4, kd), INIT_HE_NORMAL, 0, 0, LOC(1, 1));
  int32_t kbig = ir_param(f, "k5", ir_type(m, DT_F32, 4, k5), INIT_HE_NORMAL, 0, 0, LOC(1, 1));
  int32_t kch = ir_param(f, "kc", ir_type(m, DT_F32, 4, kc), INIT_HE_NORMAL, 0, 0, LOC(1, 1));
  /* Ho = floor((9 + 2 - 2*2 - 1) / 2) + 1 = 4, Wo = floor((8 + 2 - 2*1 - 1) / 2) + 1 = 4 */
  int32_t y = ir_conv2d(f, OP_CONV2D, x, k, 2, 1, 2, TYPE_VOID, LOC(1, 1));
  char s[64];
  assert_string_equal(ir_type_str(ir_vtype(f, y), s, sizeof s), "f32[B,4,4,4]");
  assert_int_equal(ir_conv_out(28, 5, 1, 2, 1), 28);
  assert_int_equal(ir_conv_out(7, 3, 2, 0, 1), 3);
  assert_int_equal(ir_conv_out(4, 3, 1, 0, 2), 0);   /* span 5 > 4 */
  /* dilation is part of the instruction's identity */
  assert_int_not_equal(ir_conv2d(f, OP_CONV2D, x, k, 2, 1, 1, TYPE_VOID, LOC(1, 1)), y);
  assert_int_equal(ir_conv2d(f, OP_CONV2D, x, k, 2, 1, 2, TYPE_VOID, LOC(1, 1)), y);
  Inst c = mk(OP_CONV2D, 2, x, kch);
  c.iattr[0] = 1; c.iattr[2] = 1;
  assert_string_equal(infer_err(c), "conv2d: the image has 3 channels, the weights expect 2: f32[B,3,9,8], f32[4,2,3,3]");
  c = mk(OP_CONV2D, 2, x, kbig);
  c.iattr[0] = 1; c.iattr[2] = 3;
  assert_string_equal(infer_err(c), "conv2d: the kernel 5x5 (dilation 3) is larger than the padded image 9x8");
  c = mk(OP_CONV2D, 2, x, k);
  assert_string_equal(infer_err(c), "conv2d: stride 0, padding 0, dilation 0 (stride and dilation >= 1, padding >= 0)");
  c = mk(OP_CONV2D, 2, fx.x, k);
  c.iattr[0] = 1; c.iattr[2] = 1;
  assert_string_equal(infer_err(c), "conv2d needs rank-4 float operands of one dtype: f32[B,4], f32[4,3,3,2]");
  c = mk(OP_CONV2D_BWD_DATA, 2, y, k);
  c.iattr[0] = 2; c.iattr[1] = 1; c.iattr[2] = 2;
  assert_string_equal(infer_err(c), "conv2d_bwd_data needs a result type");
  c.type = f->insts[x].type;
  assert_string_equal(infer_err(c), "");
  c.iattr[1] = 0;   /* the padding changes the forward's output: y is not its shape */
  assert_string_equal(infer_err(c), "conv2d_bwd_data: the gradient f32[B,4,4,4] is not the shape of "
                                    "conv2d(f32[B,3,9,8], f32[4,3,3,2]), f32[B,4,3,3]");
  c = mk(OP_CONV2D_BWD_WEIGHT, 2, x, y);
  c.iattr[0] = 2; c.iattr[1] = 1; c.iattr[2] = 2;
  c.type = f->insts[k].type;
  assert_string_equal(infer_err(c), "");
  c.type = f->insts[kbig].type;
  assert_string_equal(infer_err(c), "conv2d_bwd_weight: the gradient f32[B,4,4,4] is not the shape of "
                                    "conv2d(f32[B,3,9,8], f32[4,3,5,5]), f32[B,4,2,1]");
}

static void test_shape_errors(void **state) {
  (void)state;
  Func *f = fx.f;
  int32_t mm = ir_binary(f, OP_MATMUL, fx.x, fx.w, LOC(4, 1));   /* f32[B,3] */
  int32_t d64 = ir_const(f, 1, ty(fx.m, DT_F64, 1, 3, 0, 0), LOC(1, 1));
  assert_string_equal(infer_err(mk(OP_ADD, 2, fx.x, mm)), "add: shapes f32[B,4] and f32[B,3] do not broadcast");
  assert_string_equal(infer_err(mk(OP_MUL, 2, fx.b, d64)), "mul needs two float operands of one dtype: f32[3], f64[3]");
  assert_string_equal(infer_err(mk(OP_SUB, 2, fx.lab, fx.y)),
                      "sub needs two float operands of one dtype: label[B,3], f32[B,3]");
  assert_string_equal(infer_err(mk(OP_MATMUL, 2, fx.x, mm)), "matmul: inner dims differ: f32[B,4], f32[B,3]");
  assert_string_equal(infer_err(mk(OP_MATMUL, 2, fx.b, fx.w)),
                      "matmul needs two float operands of rank 2 to 4 and one dtype: f32[3], f32[4,3]");
  assert_string_equal(infer_err(mk(OP_MATMUL_NT, 2, fx.x, fx.w)), "matmul_nt: inner dims differ: f32[B,4], f32[4,3]");
  assert_string_equal(infer_err(mk(OP_MATMUL_TN, 2, fx.w, fx.x)), "matmul_tn: inner dims differ: f32[4,3], f32[B,4]");
  assert_string_equal(infer_err(mk(OP_TRANSPOSE, 1, fx.b, 0)), "transpose needs a float operand of rank 2 to 4 and a permutation of its dims (perm=0)");
  assert_string_equal(infer_err(mk(OP_RELU_GRAD, 2, fx.x, mm)),
                      "relu_grad needs two float operands of one type: f32[B,4], f32[B,3]");
  assert_string_equal(infer_err(mk(OP_EXP, 1, fx.lab, 0)), "exp needs a float operand");
  Inst r = mk(OP_SUM, 1, fx.x, 0);
  r.iattr[0] = 2;
  assert_string_equal(infer_err(r), "sum: axis 2 out of range for rank 2");
  Inst sz = mk(OP_SIZE, 1, fx.b, 0);
  sz.iattr[0] = 1;
  assert_string_equal(infer_err(sz), "size: axis 1 out of range for rank 1");
  Inst sm = mk(OP_SOFTMAX, 1, fx.s, 0);
  assert_string_equal(infer_err(sm), "softmax needs a float tensor of rank >= 1");
  Inst ls = mk(OP_LOG_SOFTMAX, 1, fx.y, 0);
  ls.iattr[0] = 5;
  assert_string_equal(infer_err(ls), "log_softmax: axis 5 out of range for rank 2");
  assert_string_equal(infer_err(mk(OP_ONEHOT, 1, fx.y, 0)), "onehot needs a label operand, has f32[B,3]");
  assert_string_equal(infer_err(mk(OP_SOFTMAX_XENT, 2, fx.x, fx.lab)),
                      "softmax_xent needs logits f32[...,C] and labels label[...,C] of one shape: f32[B,4], label[B,3]");
  Inst bc = mk(OP_BROADCAST, 1, fx.x, 0);
  bc.type = f->insts[fx.y].type;
  assert_string_equal(infer_err(bc), "broadcast: f32[B,4] does not broadcast to f32[B,3]");
  Inst st = mk(OP_SUM_TO, 1, fx.b, 0);
  st.type = f->insts[fx.y].type;
  assert_string_equal(infer_err(st), "sum_to: f32[B,3] does not broadcast to f32[3]");
  Inst rs = mk(OP_RESHAPE, 1, fx.x, 0);
  rs.type = f->insts[fx.y].type;
  assert_string_equal(infer_err(rs), "reshape: f32[B,4] and f32[B,3] differ in element count");
  rs = mk(OP_RESHAPE, 1, fx.w, 0);
  rs.type = ty(fx.m, DT_F32, 2, DIM_BATCH, 12, 0);
  assert_string_equal(infer_err(rs), "reshape: f32[4,3] and f32[B,12] differ in element count");
  rs.type = ty(fx.m, DT_F64, 1, 12, 0, 0);
  assert_string_equal(infer_err(rs), "reshape needs a float operand of the result's dtype: f32[4,3] to f64[12]");
  rs = mk(OP_RESHAPE, 1, fx.lab, 0);
  rs.type = ty(fx.m, DT_LABEL, 2, DIM_BATCH, 3, 0);
  assert_string_equal(infer_err(rs), "reshape needs a float operand of the result's dtype: label[B,3] to label[B,3]");
  rs = mk(OP_RESHAPE, 1, fx.x, 0);
  assert_string_equal(infer_err(rs), "reshape needs a result type");
  assert_string_equal(infer_err(mk(OP_LOSS, 1, fx.x, 0)), "the loss must be a float scalar, is f32[B,4]");
  assert_string_equal(infer_err(mk(OP_OUTPUT, 1, fx.lab, 0)), "output must be a float tensor");
  assert_string_equal(infer_err(mk(OP_GRAD, 2, fx.x, fx.x)), "grad: operand 0 must be a param");
  assert_string_equal(infer_err(mk(OP_GRAD, 2, fx.w, fx.b)), "grad: gradient type f32[3] differs from the parameter's f32[4,3]");
  assert_string_equal(infer_err(mk(OP_ADD, 1, fx.x, 0)), "add takes 2 operands, has 1");
  assert_string_equal(infer_err(mk(OP_NEG, 1, 999, 0)), "operand 0 of neg is %999, which is not defined before it");
  Inst p = ir_inst(OP_PARAM, LOC(1, 1));
  p.type = f->insts[fx.x].type;
  assert_string_equal(infer_err(p), "a parameter cannot have the batch dim");
  Inst dm = ir_inst(OP_DROPOUT_MASK, LOC(1, 1));
  dm.type = f->insts[fx.x].type;
  dm.fattr[0] = 1.0;
  assert_string_equal(infer_err(dm), "dropout probability 1 is not in [0, 1)");
  Inst lf = ir_inst(OP_CONST, LOC(1, 1));
  lf.type = f->insts[fx.lab].type;
  assert_string_equal(infer_err(lf), "const must have a float type");
  /* sinks are well-typed with TYPE_VOID and no message */
  char err[64];
  Inst out = mk(OP_OUTPUT, 1, fx.x, 0);
  assert_int_equal(ir_infer_type(f, &out, err, sizeof err), TYPE_VOID);
  assert_string_equal(err, "");
  /* the batch dim never unifies with a number */
  int32_t w3 = ir_param(f, "w3", ty(fx.m, DT_F32, 2, 5, 3, 0), INIT_ZEROS, 0, 0, LOC(1, 1));
  assert_string_equal(infer_err(mk(OP_ADD, 2, fx.y, w3)), "add: shapes f32[B,3] and f32[5,3] do not broadcast");
}

static void test_lookup_tables(void **state) {
  (void)state;
  assert_int_equal(ir_op_lookup("matmul_tn", 9), OP_MATMUL_TN);
  assert_int_equal(ir_op_lookup("matmul", 6), OP_MATMUL);
  assert_int_equal(ir_op_lookup("nope", 4), -1);
  assert_int_equal(ir_init_lookup("he_normal"), INIT_HE_NORMAL);
  assert_int_equal(ir_init_lookup("he"), -1);
  for (int i = 0; i < OP__COUNT; i++) assert_int_equal(ir_op_lookup(ir_ops[i].name, strlen(ir_ops[i].name)), i);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_types_and_interning, setup, teardown),
      cmocka_unit_test_setup_teardown(test_leaves, setup, teardown),
      cmocka_unit_test_setup_teardown(test_elementwise_and_broadcasting, setup, teardown),
      cmocka_unit_test_setup_teardown(test_matmul_family, setup, teardown),
      cmocka_unit_test_setup_teardown(test_reductions_rows_and_labels, setup, teardown),
      cmocka_unit_test_setup_teardown(test_sinks, setup, teardown),
      cmocka_unit_test_setup_teardown(test_hash_consing, setup, teardown),
      cmocka_unit_test_setup_teardown(test_shape_errors, setup, teardown),
      cmocka_unit_test_setup_teardown(test_conv2d_types, setup, teardown),
      cmocka_unit_test(test_lookup_tables),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
