/* tests/ir/test_verify.c — the verifier accepts well-formed functions silently and
 * catches each kind of problem with a message naming the function, the instruction
 * and its location. Each test builds one small function, breaks one invariant the
 * way a buggy pass could (patching the instruction array), and checks the report. */
#include "helpers.h"

/*   %0 = input "x" : f32[B,3]       %5 output "y" %4
 *   %1 = param "w" : f32[3,3]       %6 = mean %4 axis=all : f32[]
 *   %2 = param "b" : f32[3]         %7 loss %6
 *   %3 = matmul %0, %1 : f32[B,3]   %8 = matmul_tn %0, %4 : f32[3,3]
 *   %4 = add %3, %2 : f32[B,3]      %9 grad %1, %8
 * instruction i is at t.bp:(i+1):1 */
static Module *m;
static Func *f;

static SrcLoc at(int file, int i) { return (SrcLoc){file, i + 1, 1, 0}; }

static int setup(void **state) {
  (void)state;
  diag_reset();
  int file = diag_add_file("t.bp", "", 0);
  m = ir_module_new();
  f = ir_func_new(m, "net");
  int32_t x = ir_input(f, "x", 0, ty(m, DT_F32, 2, DIM_BATCH, 3, 0), at(file, 0));
  int32_t w = ir_param(f, "w", ty(m, DT_F32, 2, 3, 3, 0), INIT_ZEROS, 0, 0, at(file, 1));
  int32_t b = ir_param(f, "b", ty(m, DT_F32, 1, 3, 0, 0), INIT_ZEROS, 0, 0, at(file, 2));
  int32_t z = ir_binary(f, OP_MATMUL, x, w, at(file, 3));
  int32_t h = ir_binary(f, OP_ADD, z, b, at(file, 4));
  ir_output(f, "y", h, at(file, 5));
  int32_t l = ir_reduce(f, OP_MEAN, h, IR_AXIS_ALL, false, at(file, 6));
  ir_loss(f, l, at(file, 7));
  int32_t g = ir_binary(f, OP_MATMUL_TN, x, h, at(file, 8));
  ir_grad(f, w, g, at(file, 9));
  assert_int_equal(f->ninsts, 10);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  ir_module_free(m);
  diag_reset();
  return 0;
}

/* Run the verifier; return its stderr (static) and whether it passed. */
static const char *verify(bool *ok, const char *what) {
  static char text[4096];
  Capture c;
  capture_begin(&c);
  *ok = ir_verify(f, what);
  char *s = capture_end(&c);
  snprintf(text, sizeof text, "%s", s);
  bp_free(s);
  return text;
}

static void expect(const char *what, const char *want) {
  bool ok;
  const char *got = verify(&ok, what);
  assert_false(ok);
  assert_string_equal(got, want);
}

static void test_valid_function_passes_silently(void **state) {
  (void)state;
  bool ok;
  assert_string_equal(verify(&ok, "build"), "");
  assert_true(ok);
  /* an empty function is valid */
  Func *e = ir_func_new(m, "empty");
  assert_true(ir_verify(e, NULL));
}

static void test_arity(void **state) {
  (void)state;
  f->insts[4].nargs = 1;
  expect("simplify", "bpcc: verifier (after simplify): @net: %4 = add %3 (t.bp:5:1): add takes 2 operands, has 1\n");
}

static void test_unknown_op(void **state) {
  (void)state;
  f->insts[3].op = OP__COUNT + 7;
  char want[256];
  snprintf(want, sizeof want, "bpcc: verifier: @net: %%3 = ? %%0, %%1 (t.bp:4:1): unknown op %d\n", OP__COUNT + 7);
  expect(NULL, want);
}

static void test_operand_order(void **state) {
  (void)state;
  f->insts[3].args[1] = 4;   /* a use before the definition */
  expect("fuse", "bpcc: verifier (after fuse): @net: %3 = matmul %0, %4 (t.bp:4:1): operand 1 is %4, which is not defined before it\n");
}

static void test_self_reference_and_negative(void **state) {
  (void)state;
  f->insts[4].args[0] = 4;
  f->insts[8].args[0] = -3;
  expect("x",
         "bpcc: verifier (after x): @net: %4 = add %4, %2 (t.bp:5:1): operand 0 is %4, which is not defined before it\n"
         "bpcc: verifier (after x): @net: %8 = matmul_tn %-3, %4 (t.bp:9:1): operand 0 is %-3, which is not defined before it\n");
}

static void test_sink_has_no_users(void **state) {
  (void)state;
  f->insts[6].args[0] = 5;   /* mean of the output sink */
  expect("dce", "bpcc: verifier (after dce): @net: %6 = mean %5 (t.bp:7:1): operand 0 is %5, a output sink, which has no value\n");
}

static void test_type_differs_from_inferred(void **state) {
  (void)state;
  f->insts[4].type = f->insts[1].type;   /* add claims f32[3,3] */
  expect("cse", "bpcc: verifier (after cse): @net: %4 = add %3, %2 (t.bp:5:1): has type f32[3,3], but its operands give f32[B,3]\n"
         /* and the wrong type propagates to the user of %4 */
         "bpcc: verifier (after cse): @net: %8 = matmul_tn %0, %4 (t.bp:9:1): matmul_tn: inner dims differ: f32[B,3], f32[3,3]\n");
}

static void test_shape_error(void **state) {
  (void)state;
  f->insts[3].args[1] = 2;   /* matmul x[B,3] b[3] */
  expect("autodiff",
         "bpcc: verifier (after autodiff): @net: %3 = matmul %0, %2 (t.bp:4:1): matmul needs two float operands of rank 2 to 4 and one dtype: f32[B,3], f32[3]\n");
}

static void test_one_loss(void **state) {
  (void)state;
  Inst in = ir_inst(OP_LOSS, SRCLOC_NONE);
  in.nargs = 1;
  in.args[0] = 6;
  ir_emit(f, &in);
  expect("a", "bpcc: verifier (after a): @net: loss %6: a second loss; the first is instruction 7\n");
}

static void test_grad_points_at_param(void **state) {
  (void)state;
  f->insts[9].args[0] = 0;   /* grad of the input */
  expect("a", "bpcc: verifier (after a): @net: grad %0, %8 (t.bp:10:1): grad: operand 0 must be a param\n");
}

static void test_grad_once_per_param(void **state) {
  (void)state;
  ir_grad(f, 1, 8, SRCLOC_NONE);
  expect("a", "bpcc: verifier (after a): @net: grad %1, %8: parameter %1 already has a grad\n");
}

static void test_grad_type(void **state) {
  (void)state;
  f->insts[9].args[0] = 2;   /* b: f32[3], gradient f32[3,3] */
  expect("a", "bpcc: verifier (after a): @net: grad %2, %8 (t.bp:10:1): grad: gradient type f32[3,3] differs from the parameter's f32[3]\n");
}

static void test_names(void **state) {
  (void)state;
  f->insts[2].name = "w";        /* duplicate parameter name */
  f->insts[0].name = NULL;       /* an input without a name */
  ir_output(f, "y", 4, SRCLOC_NONE);       /* duplicate output name */
  ir_input(f, "x2", 0, f->insts[0].type, SRCLOC_NONE);   /* duplicate input index */
  expect("a",
         "bpcc: verifier (after a): @net: %0 = input (t.bp:1:1): input needs a name\n"
         "bpcc: verifier (after a): @net: %2 = param (t.bp:3:1): parameter name \"w\" is already used by %1\n"
         "bpcc: verifier (after a): @net: output %4: output name \"y\" is already used by an earlier output\n"
         "bpcc: verifier (after a): @net: %11 = input: input index 0 is already used by %0\n");
}

static void test_from_in_range(void **state) {
  (void)state;
  f->insts[8].from = 42;
  f->insts[8].flags = IF_BACKWARD;
  expect("a", "bpcc: verifier (after a): @net: %8 = matmul_tn %0, %4 (t.bp:9:1): derived from %42, which is not an instruction of @net\n");
}

static void test_sink_with_type(void **state) {
  (void)state;
  f->insts[5].type = f->insts[4].type;
  expect("a", "bpcc: verifier (after a): @net: output %4 (t.bp:6:1): a sink must have no type\n");
}

static void test_every_problem_reported(void **state) {
  (void)state;
  f->insts[4].nargs = 1;
  f->insts[6].args[0] = 5;
  f->insts[9].args[0] = 0;
  bool ok;
  const char *got = verify(&ok, "p");
  assert_false(ok);
  int lines = 0;
  for (const char *p = got; *p; p++) lines += *p == '\n';
  assert_int_equal(lines, 3);
}

/* Extras: right after their producer (only its other extras in between), each result
 * index once. %10..%12 = q, k, v; %13 = attention; %14 its lse (ir_attention). */
static int32_t attention_after_net(void) {
  f->cse = false;
  TypeId t = ty(m, DT_F32, 3, 2, 3, 4);
  int32_t q = ir_input(f, "q", 1, t, SRCLOC_NONE), k = ir_input(f, "k", 2, t, SRCLOC_NONE);
  int32_t v = ir_input(f, "v", 3, t, SRCLOC_NONE);
  int32_t lse;
  int32_t o = ir_attention(f, q, k, v, true, 0.5, &lse, SRCLOC_NONE);
  assert_int_equal(o, 13);
  assert_int_equal(lse, 14);
  return o;
}

static void test_extras(void **state) {
  (void)state;
  int32_t o = attention_after_net();
  bool ok;
  assert_string_equal(verify(&ok, "a"), "");
  assert_true(ok);
  int32_t dk, dv;
  int32_t args[6] = {10, 11, 12, o, 14, o};
  ir_attention_bwd(f, args, true, 0.5, &dk, &dv, SRCLOC_NONE);
  assert_string_equal(verify(&ok, "a"), "");
  assert_true(ok);
  /* a second lse, after the backward: not next to attention, and a duplicate */
  ir_extra(f, o, 1, SRCLOC_NONE);
  expect("autodiff",
         "bpcc: verifier (after autodiff): @net: %18 = extra %13: an extra must follow its producer %13 directly (after "
         "its other extras); %15 = attention_bwd is in between\n"
         "bpcc: verifier (after autodiff): @net: %18 = extra %13: result 1 of %13 is already %14\n");
}

static void test_extra_needs_a_multi_result_producer(void **state) {
  (void)state;
  attention_after_net();
  f->insts[14].iattr[0] = 2;        /* attention has one extra result */
  expect("a", "bpcc: verifier (after a): @net: %14 = extra %13: extra: attention has no result 2\n");
  f->insts[14].iattr[0] = 1;
  f->insts[14].args[0] = 4;         /* an extra of add */
  expect("a", "bpcc: verifier (after a): @net: %14 = extra %4: extra: add has no result 1\n");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_valid_function_passes_silently, setup, teardown),
      cmocka_unit_test_setup_teardown(test_arity, setup, teardown),
      cmocka_unit_test_setup_teardown(test_unknown_op, setup, teardown),
      cmocka_unit_test_setup_teardown(test_operand_order, setup, teardown),
      cmocka_unit_test_setup_teardown(test_self_reference_and_negative, setup, teardown),
      cmocka_unit_test_setup_teardown(test_sink_has_no_users, setup, teardown),
      cmocka_unit_test_setup_teardown(test_type_differs_from_inferred, setup, teardown),
      cmocka_unit_test_setup_teardown(test_shape_error, setup, teardown),
      cmocka_unit_test_setup_teardown(test_one_loss, setup, teardown),
      cmocka_unit_test_setup_teardown(test_grad_points_at_param, setup, teardown),
      cmocka_unit_test_setup_teardown(test_grad_once_per_param, setup, teardown),
      cmocka_unit_test_setup_teardown(test_grad_type, setup, teardown),
      cmocka_unit_test_setup_teardown(test_names, setup, teardown),
      cmocka_unit_test_setup_teardown(test_from_in_range, setup, teardown),
      cmocka_unit_test_setup_teardown(test_sink_with_type, setup, teardown),
      cmocka_unit_test_setup_teardown(test_every_problem_reported, setup, teardown),
      cmocka_unit_test_setup_teardown(test_extras, setup, teardown),
      cmocka_unit_test_setup_teardown(test_extra_needs_a_multi_result_producer, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
