/* tests/ir/test_interp.c — the reference interpreter on every op, with values worked
 * out by hand (or, for transcendental ones, with Python's math module, quoted in the
 * comments), in f64 and f32; broadcasting, size-1 dims and the batch dim; stable
 * softmax on large logits; dropout masks; the sequence-model ops (gelu, batched and
 * folded products, permutations, rank-3 labels, embedding, the causal mask, attention
 * checked by hand, against its unfused spelling and by differences); and errors that
 * return NULL, not crash.
 * Tolerances: f64 results within 1e-15 relative (most are exact); f32 results are
 * compared with the expected value rounded to float, within 2^-23 relative. */
#include "helpers.h"

#include <math.h>

#define V(...) ((const double[]){__VA_ARGS__})
#define NV(...) (sizeof((const double[]){__VA_ARGS__}) / sizeof(double))

static Module *m;
static Func *f;
static char *diag_text;
static size_t diag_len;
static FILE *diag_fp;

static int setup(void **state) {
  (void)state;
  diag_reset();
  diag_fp = open_memstream(&diag_text, &diag_len);
  diag_set_output(diag_fp);
  m = ir_module_new();
  f = ir_func_new(m, "f");
  return 0;
}

static int teardown(void **state) {
  (void)state;
  diag_set_output(NULL);
  fclose(diag_fp);
  free(diag_text);
  diag_text = NULL;
  ir_module_free(m);
  diag_reset();
  return 0;
}

/* The diagnostics printed so far (first line). */
static const char *first_diag(void) {
  static char line[512];
  fflush(diag_fp);
  const char *s = diag_text ? diag_text : "";
  const char *nl = strchr(s, '\n');
  size_t n = nl ? (size_t)(nl - s) : strlen(s);
  if (n >= sizeof line) n = sizeof line - 1;
  memcpy(line, s, n);
  line[n] = 0;
  return line;
}

/* A tensor with resolved dims and the given values. */
static Tensor tens(DType dt, int rank, int64_t d0, int64_t d1, int64_t d2, const double *vals) {
  TensorType t;
  memset(&t, 0, sizeof t);
  t.dtype = (uint8_t)dt;
  t.rank = (uint8_t)rank;
  t.dims[0] = d0;
  t.dims[1] = d1;
  t.dims[2] = d2;
  Tensor x = ir_tensor_new(&t);
  if (vals) memcpy(x.data, vals, (size_t)x.numel * sizeof(double));
  return x;
}

static TypeId T(DType dt, int rank, int64_t d0, int64_t d1, int64_t d2) { return ty(m, dt, rank, d0, d1, d2); }
static int32_t in_(const char *name, int index, TypeId t) { return ir_input(f, name, index, t, LOC(1, 1)); }

/* value v of `it` equals want[0..n) within rel (0: exactly); in f32 mode want is
 * first rounded to float. */
static void check(Interp *it, int32_t v, InterpMode mode, const double *want, size_t n, double rel) {
  assert_non_null(it);
  const Tensor *t = ir_interp_value(it, v);
  assert_non_null(t);
  assert_int_equal(t->numel, (int64_t)n);
  for (size_t i = 0; i < n; i++) {
    double w = mode == INTERP_F32 ? (double)(float)want[i] : want[i];
    double got = t->data[i];
    bool ok = rel == 0 ? (got == w || (isnan(got) && isnan(w))) : fabs(got - w) <= rel * fabs(w);
    if (!ok) fail_msg("%%%d[%zu]: got %.17g, want %.17g (mode %s)", (int)v, i, got, w, mode == INTERP_F32 ? "f32" : "f64");
  }
}

static void free_tensors(Tensor *t, int n) {
  for (int i = 0; i < n; i++) ir_tensor_free(&t[i]);
}

static const InterpMode modes[2] = {INTERP_F64, INTERP_F32};
static double tol(InterpMode md) { return md == INTERP_F32 ? 0x1p-23 : 1e-15; }

/* ------------------------------------------------------------------ elementwise */

static void test_binary_broadcasting(void **state) {
  (void)state;
  int32_t x = in_("x", 0, T(DT_F32, 2, 2, 3, 0));        /* [[1,2,3],[4,5,6]] */
  int32_t b = in_("b", 1, T(DT_F32, 1, 3, 0, 0));        /* [10,20,30] */
  int32_t c = in_("c", 2, T(DT_F32, 2, 2, 1, 0));        /* [[1],[2]] */
  int32_t r = in_("r", 3, T(DT_F32, 2, 1, 3, 0));        /* [[10,20,30]] */
  int32_t s = ir_scalar(f, 0.5, LOC(1, 1));
  int32_t add = ir_binary(f, OP_ADD, x, b, LOC(1, 1));
  int32_t sub = ir_binary(f, OP_SUB, b, x, LOC(1, 1));
  int32_t mul = ir_binary(f, OP_MUL, s, x, LOC(1, 1));
  int32_t div = ir_binary(f, OP_DIV, x, b, LOC(1, 1));
  int32_t eq = ir_binary(f, OP_EQ, x, c, LOC(1, 1));     /* [2,3] vs [2,1] */
  int32_t outer = ir_binary(f, OP_ADD, c, r, LOC(1, 1)); /* [2,1] + [1,3] -> [2,3] */
  for (int k = 0; k < 2; k++) {
    Tensor in[4] = {tens(DT_F32, 2, 2, 3, 0, V(1, 2, 3, 4, 5, 6)), tens(DT_F32, 1, 3, 0, 0, V(10, 20, 30)),
                    tens(DT_F32, 2, 2, 1, 0, V(1, 5)), tens(DT_F32, 2, 1, 3, 0, V(10, 20, 30))};
    Interp *it = ir_interp_run(f, modes[k], 1, in, 4, NULL, 0, 0, 0);
    check(it, add, modes[k], V(11, 22, 33, 14, 25, 36), 6, 0);
    check(it, sub, modes[k], V(9, 18, 27, 6, 15, 24), 6, 0);
    check(it, mul, modes[k], V(0.5, 1, 1.5, 2, 2.5, 3), 6, 0);
    check(it, div, modes[k], V(0.1, 0.1, 0.1, 0.4, 0.25, 0.2), 6, 0);
    check(it, eq, modes[k], V(1, 0, 0, 0, 1, 0), 6, 0);
    check(it, outer, modes[k], V(11, 21, 31, 15, 25, 35), 6, 0);
    ir_interp_free(it);
    free_tensors(in, 4);
  }
}

static void test_f32_rounds_every_result(void **state) {
  (void)state;
  int32_t a = ir_const(f, 0.1, T(DT_F32, 0, 0, 0, 0), LOC(1, 1));
  int32_t b = ir_const(f, 0.2, T(DT_F32, 0, 0, 0, 0), LOC(1, 1));
  int32_t s = ir_binary(f, OP_ADD, a, b, LOC(1, 1));
  int32_t one = ir_scalar(f, 1, LOC(1, 1));
  int32_t e = ir_unary(f, OP_EXP, one, LOC(1, 1));
  Interp *it = ir_interp_run(f, INTERP_F64, 1, NULL, 0, NULL, 0, 0, 0);
  check(it, s, INTERP_F64, V(0.30000000000000004), 1, 0);
  check(it, e, INTERP_F64, V(2.718281828459045), 1, 0);
  ir_interp_free(it);
  it = ir_interp_run(f, INTERP_F32, 1, NULL, 0, NULL, 0, 0, 0);
  /* (float)((float)0.1 + (float)0.2) = 0.30000001192092896, not (float)0.30000000000000004 */
  const Tensor *t = ir_interp_value(it, s);
  assert_true(t->data[0] == 0.30000001192092896);
  assert_true(ir_interp_value(it, e)->data[0] == 2.7182817459106445);
  ir_interp_free(it);
}

static void test_unary(void **state) {
  (void)state;
  int32_t x = in_("x", 0, T(DT_F32, 1, 4, 0, 0));   /* [-2, 0, 0.5, 4] */
  static const Op ops[] = {OP_NEG, OP_ABS, OP_SIGN, OP_RELU, OP_SQRT, OP_EXP, OP_TANH, OP_SIGMOID};
  int32_t v[8];
  for (int i = 0; i < 8; i++) v[i] = ir_unary(f, ops[i], x, LOC(1, 1));
  int32_t lg = ir_unary(f, OP_LOG, v[5], LOC(1, 1));     /* log(exp(x)) */
  int32_t p15 = ir_pow(f, v[1], 1.5, LOC(1, 1));         /* |x|^1.5 */
  int32_t pm1 = ir_pow(f, x, -1, LOC(1, 1));
  for (int k = 0; k < 2; k++) {
    InterpMode md = modes[k];
    Tensor in[1] = {tens(DT_F32, 1, 4, 0, 0, V(-2, 0, 0.5, 4))};
    Interp *it = ir_interp_run(f, md, 1, in, 1, NULL, 0, 0, 0);
    check(it, v[0], md, V(2, 0, -0.5, -4), 4, 0);
    check(it, v[1], md, V(2, 0, 0.5, 4), 4, 0);
    check(it, v[2], md, V(-1, 0, 1, 1), 4, 0);
    check(it, v[3], md, V(0, 0, 0.5, 4), 4, 0);
    const Tensor *sq = ir_interp_value(it, v[4]);
    assert_true(isnan(sq->data[0]));
    check(it, v[4], md, V(NAN, 0, 0.70710678118654757, 2), 4, 0);
    /* math.exp: 0.1353352832366127, 1, 1.6487212707001282, 54.598150033144236 */
    check(it, v[5], md, V(0.1353352832366127, 1, 1.6487212707001282, 54.598150033144236), 4, tol(md));
    /* math.tanh: -0.9640275800758169, 0, 0.46211715726000974, 0.999329299739067 */
    check(it, v[6], md, V(-0.9640275800758169, 0, 0.46211715726000974, 0.999329299739067), 4, tol(md));
    /* 1/(1+exp(-x)): 0.11920292202211755, 0.5, 0.6224593312018546, 0.9820137900379085 */
    check(it, v[7], md, V(0.11920292202211755, 0.5, 0.6224593312018546, 0.9820137900379085), 4, tol(md));
    check(it, lg, md, V(-2, 0, 0.5, 4), 4, md == INTERP_F32 ? 1e-6 : 1e-15);
    check(it, p15, md, V(2.8284271247461903, 0, 0.35355339059327379, 8), 4, tol(md));
    check(it, pm1, md, V(-0.5, INFINITY, 2, 0.25), 4, 0);
    ir_interp_free(it);
    free_tensors(in, 1);
  }
}

static void test_sigmoid_is_stable(void **state) {
  (void)state;
  int32_t x = in_("x", 0, T(DT_F64, 1, 2, 0, 0));
  int32_t s = ir_unary(f, OP_SIGMOID, x, LOC(1, 1));
  Tensor in[1] = {tens(DT_F64, 1, 2, 0, 0, V(-1000, 1000))};
  Interp *it = ir_interp_run(f, INTERP_F64, 1, in, 1, NULL, 0, 0, 0);
  check(it, s, INTERP_F64, V(0, 1), 2, 0);
  ir_interp_free(it);
  free_tensors(in, 1);
}

static void test_derivative_helpers(void **state) {
  (void)state;
  int32_t a = in_("a", 0, T(DT_F32, 1, 3, 0, 0));
  int32_t d = in_("dy", 1, T(DT_F32, 1, 3, 0, 0));
  int32_t rg = ir_binary(f, OP_RELU_GRAD, a, d, LOC(1, 1));
  int32_t sg = ir_binary(f, OP_SIGMOID_GRAD, a, d, LOC(1, 1));
  int32_t tg = ir_binary(f, OP_TANH_GRAD, a, d, LOC(1, 1));
  for (int k = 0; k < 2; k++) {
    Tensor in[2] = {tens(DT_F32, 1, 3, 0, 0, V(-1, 0.25, 0.5)), tens(DT_F32, 1, 3, 0, 0, V(3, 2, 4))};
    Interp *it = ir_interp_run(f, modes[k], 1, in, 2, NULL, 0, 0, 0);
    check(it, rg, modes[k], V(0, 2, 4), 3, 0);                          /* dy * (x > 0) */
    check(it, sg, modes[k], V(3 * -1 * 2, 2 * 0.25 * 0.75, 4 * 0.5 * 0.5), 3, 0); /* dy y (1-y) */
    check(it, tg, modes[k], V(0, 2 * (1 - 0.0625), 4 * 0.75), 3, 0);    /* dy (1 - y^2) */
    ir_interp_free(it);
    free_tensors(in, 2);
  }
}

/* ------------------------------------------------------------------ matrices */

static void test_matmul_family(void **state) {
  (void)state;
  int32_t a = in_("a", 0, T(DT_F32, 2, 2, 3, 0));    /* [[1,2,3],[4,5,6]] */
  int32_t b = in_("b", 1, T(DT_F32, 2, 3, 2, 0));    /* [[7,8],[9,10],[11,12]] */
  int32_t bt = ir_unary(f, OP_TRANSPOSE, b, LOC(1, 1));
  int32_t at = ir_unary(f, OP_TRANSPOSE, a, LOC(1, 1));
  int32_t mm = ir_binary(f, OP_MATMUL, a, b, LOC(1, 1));
  int32_t nt = ir_binary(f, OP_MATMUL_NT, a, bt, LOC(1, 1));
  int32_t tn = ir_binary(f, OP_MATMUL_TN, at, b, LOC(1, 1));
  for (int k = 0; k < 2; k++) {
    Tensor in[2] = {tens(DT_F32, 2, 2, 3, 0, V(1, 2, 3, 4, 5, 6)), tens(DT_F32, 2, 3, 2, 0, V(7, 8, 9, 10, 11, 12))};
    Interp *it = ir_interp_run(f, modes[k], 1, in, 2, NULL, 0, 0, 0);
    check(it, bt, modes[k], V(7, 9, 11, 8, 10, 12), 6, 0);
    check(it, at, modes[k], V(1, 4, 2, 5, 3, 6), 6, 0);
    check(it, mm, modes[k], V(58, 64, 139, 154), 4, 0);
    check(it, nt, modes[k], V(58, 64, 139, 154), 4, 0);
    check(it, tn, modes[k], V(58, 64, 139, 154), 4, 0);
    assert_int_equal(ir_interp_value(it, mm)->type.dims[0], 2);
    assert_int_equal(ir_interp_value(it, at)->type.dims[0], 3);
    ir_interp_free(it);
    free_tensors(in, 2);
  }
}

static void test_batch_dim(void **state) {
  (void)state;
  /* x: f32[B,2] with B = 3; W: f32[2,1] */
  int32_t x = in_("x", 0, T(DT_F32, 2, DIM_BATCH, 2, 0));
  int32_t w = ir_param(f, "W", T(DT_F32, 2, 2, 1, 0), INIT_ZEROS, 0, 0, LOC(1, 1));
  int32_t y = ir_binary(f, OP_MATMUL, x, w, LOC(1, 1));          /* [B,1] */
  int32_t n = ir_size(f, x, 0, LOC(1, 1));                      /* B */
  int32_t all = ir_size(f, x, IR_AXIS_ALL, LOC(1, 1));          /* 2B */
  int32_t s0 = ir_reduce(f, OP_SUM, x, 0, false, LOC(1, 1));    /* [2] */
  int32_t mean = ir_binary(f, OP_DIV, s0, n, LOC(1, 1));
  int32_t g = ir_binary(f, OP_MATMUL_TN, x, y, LOC(1, 1));      /* [2,1] */
  int32_t bt = ir_unary(f, OP_TRANSPOSE, x, LOC(1, 1));         /* [2,B] */
  Tensor in[1] = {tens(DT_F32, 2, 3, 2, 0, V(1, 2, 3, 4, 5, 6))};
  Tensor par[1] = {tens(DT_F32, 2, 2, 1, 0, V(1, -1))};
  Interp *it = ir_interp_run(f, INTERP_F64, 3, in, 1, par, 1, 0, 0);
  check(it, y, INTERP_F64, V(-1, -1, -1), 3, 0);
  check(it, n, INTERP_F64, V(3), 1, 0);
  check(it, all, INTERP_F64, V(6), 1, 0);
  check(it, s0, INTERP_F64, V(9, 12), 2, 0);
  check(it, mean, INTERP_F64, V(3, 4), 2, 0);
  check(it, g, INTERP_F64, V(-9, -12), 2, 0);
  check(it, bt, INTERP_F64, V(1, 3, 5, 2, 4, 6), 6, 0);
  assert_int_equal(ir_interp_value(it, bt)->type.dims[1], 3);
  ir_interp_free(it);
  /* the same function at batch 1 */
  Tensor in1[1] = {tens(DT_F32, 2, 1, 2, 0, V(5, 7))};
  it = ir_interp_run(f, INTERP_F32, 1, in1, 1, par, 1, 0, 0);
  check(it, y, INTERP_F32, V(-2), 1, 0);
  check(it, mean, INTERP_F32, V(5, 7), 2, 0);
  ir_interp_free(it);
  free_tensors(in, 1);
  free_tensors(in1, 1);
  free_tensors(par, 1);
}

/* ------------------------------------------------------------------ reductions, shapes */

static void test_reductions(void **state) {
  (void)state;
  int32_t x = in_("x", 0, T(DT_F32, 2, 2, 3, 0));   /* [[1,2,3],[4,5,6]] */
  int32_t z = in_("z", 1, T(DT_F32, 3, 2, 2, 2));   /* 1..8 */
  int32_t s1 = ir_reduce(f, OP_SUM, x, 1, false, LOC(1, 1));
  int32_t s1k = ir_reduce(f, OP_SUM, x, 1, true, LOC(1, 1));
  int32_t m0 = ir_reduce(f, OP_MEAN, x, 0, false, LOC(1, 1));
  int32_t x1 = ir_reduce(f, OP_MAX, x, 1, false, LOC(1, 1));
  int32_t x0 = ir_reduce(f, OP_MAX, x, 0, true, LOC(1, 1));
  int32_t xa = ir_reduce(f, OP_MAX, x, IR_AXIS_ALL, false, LOC(1, 1));
  int32_t sa = ir_reduce(f, OP_SUM, x, IR_AXIS_ALL, true, LOC(1, 1));
  int32_t ma = ir_reduce(f, OP_MEAN, x, IR_AXIS_ALL, false, LOC(1, 1));
  int32_t z1 = ir_reduce(f, OP_SUM, z, 1, false, LOC(1, 1));
  int32_t z2 = ir_reduce(f, OP_MEAN, z, 2, true, LOC(1, 1));
  for (int k = 0; k < 2; k++) {
    Tensor in[2] = {tens(DT_F32, 2, 2, 3, 0, V(1, 2, 3, 4, 5, 6)), tens(DT_F32, 3, 2, 2, 2, V(1, 2, 3, 4, 5, 6, 7, 8))};
    Interp *it = ir_interp_run(f, modes[k], 1, in, 2, NULL, 0, 0, 0);
    check(it, s1, modes[k], V(6, 15), 2, 0);
    check(it, s1k, modes[k], V(6, 15), 2, 0);
    assert_int_equal(ir_interp_value(it, s1k)->type.rank, 2);
    check(it, m0, modes[k], V(2.5, 3.5, 4.5), 3, 0);
    check(it, x1, modes[k], V(3, 6), 2, 0);
    check(it, x0, modes[k], V(4, 5, 6), 3, 0);
    check(it, xa, modes[k], V(6), 1, 0);
    check(it, sa, modes[k], V(21), 1, 0);
    check(it, ma, modes[k], V(3.5), 1, 0);
    check(it, z1, modes[k], V(4, 6, 12, 14), 4, 0);
    check(it, z2, modes[k], V(1.5, 3.5, 5.5, 7.5), 4, 0);
    ir_interp_free(it);
    free_tensors(in, 2);
  }
}

/* Rank 4: q[a][b][c][d] = 1 + 12a + 4b + 2c + d over dims [2,3,2,2], reduced over an
 * inner axis with and without keep (the reduced dim stays as 1; the values are the
 * same, only the type differs). */
static void test_reductions_rank4(void **state) {
  (void)state;
  int64_t d4[4] = {2, 3, 2, 2};
  int32_t q = in_("q", 0, ir_type(m, DT_F32, 4, d4));
  int32_t s1 = ir_reduce(f, OP_SUM, q, 1, false, LOC(1, 1));
  int32_t s1k = ir_reduce(f, OP_SUM, q, 1, true, LOC(1, 1));
  int32_t m3k = ir_reduce(f, OP_MEAN, q, 3, true, LOC(1, 1));
  int32_t x2 = ir_reduce(f, OP_MAX, q, 2, false, LOC(1, 1));
  int32_t x0k = ir_reduce(f, OP_MAX, q, 0, true, LOC(1, 1));
  char buf[64];
  assert_string_equal(ir_type_str(ir_vtype(f, s1), buf, sizeof buf), "f32[2,2,2]");
  assert_string_equal(ir_type_str(ir_vtype(f, s1k), buf, sizeof buf), "f32[2,1,2,2]");
  assert_string_equal(ir_type_str(ir_vtype(f, m3k), buf, sizeof buf), "f32[2,3,2,1]");
  assert_string_equal(ir_type_str(ir_vtype(f, x2), buf, sizeof buf), "f32[2,3,2]");
  assert_string_equal(ir_type_str(ir_vtype(f, x0k), buf, sizeof buf), "f32[1,3,2,2]");
  for (int k = 0; k < 2; k++) {
    Tensor in = ir_tensor_new(ir_vtype(f, q));
    for (int64_t i = 0; i < in.numel; i++) in.data[i] = (double)(i + 1);
    Interp *it = ir_interp_run(f, modes[k], 1, &in, 1, NULL, 0, 0, 0);
    check(it, s1, modes[k], V(15, 18, 21, 24, 51, 54, 57, 60), 8, 0);
    check(it, s1k, modes[k], V(15, 18, 21, 24, 51, 54, 57, 60), 8, 0);
    check(it, m3k, modes[k], V(1.5, 3.5, 5.5, 7.5, 9.5, 11.5, 13.5, 15.5, 17.5, 19.5, 21.5, 23.5), 12, 0);
    check(it, x2, modes[k], V(3, 4, 7, 8, 11, 12, 15, 16, 19, 20, 23, 24), 12, 0);
    check(it, x0k, modes[k], V(13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24), 12, 0);
    assert_int_equal(ir_interp_value(it, x0k)->type.rank, 4);
    ir_interp_free(it);
    ir_tensor_free(&in);
  }
}

/* reshape keeps the elements in row-major order; B resolves in any position. */
static void test_reshape(void **state) {
  (void)state;
  int32_t x = in_("x", 0, T(DT_F32, 2, DIM_BATCH, 3, 0));
  int32_t r3 = ir_to_type(f, OP_RESHAPE, x, T(DT_F32, 3, DIM_BATCH, 3, 1), LOC(1, 1));
  int32_t rt = ir_to_type(f, OP_RESHAPE, x, T(DT_F32, 2, 3, DIM_BATCH, 0), LOC(1, 1));
  int32_t rf = ir_to_type(f, OP_RESHAPE, rt, T(DT_F32, 3, 1, DIM_BATCH, 3), LOC(1, 1));
  for (int k = 0; k < 2; k++) {
    Tensor in = tens(DT_F32, 2, 2, 3, 0, V(1, 2, 3, 4, 5, 6.25));
    Interp *it = ir_interp_run(f, modes[k], 2, &in, 1, NULL, 0, 0, 0);
    check(it, r3, modes[k], V(1, 2, 3, 4, 5, 6.25), 6, 0);
    check(it, rt, modes[k], V(1, 2, 3, 4, 5, 6.25), 6, 0);
    check(it, rf, modes[k], V(1, 2, 3, 4, 5, 6.25), 6, 0);
    const Tensor *t = ir_interp_value(it, rt);
    assert_int_equal(t->type.rank, 2);
    assert_int_equal(t->type.dims[0], 3);
    assert_int_equal(t->type.dims[1], 2);
    t = ir_interp_value(it, r3);
    assert_int_equal(t->type.dims[0], 2);
    assert_int_equal(t->type.dims[2], 1);
    ir_interp_free(it);
    ir_tensor_free(&in);
  }
}

/* conv2d and its gradients on a 3x3 image 1..9 with the kernel [[1,0],[0,1]], worked by
 * hand: y[i,j] = x[s i - p, s j - p] + x[s i - p + 1, s j - p + 1]. */
static Tensor tens4(const int64_t *d, const double *vals) {
  TensorType t;
  memset(&t, 0, sizeof t);
  t.dtype = DT_F32;
  t.rank = 4;
  memcpy(t.dims, d, sizeof t.dims);
  Tensor x = ir_tensor_new(&t);
  memcpy(x.data, vals, (size_t)x.numel * sizeof(double));
  return x;
}

static void test_conv2d(void **state) {
  (void)state;
  const int64_t xd[4] = {DIM_BATCH, 1, 3, 3}, kd[4] = {1, 1, 2, 2}, dyd[4] = {DIM_BATCH, 1, 2, 2};
  int32_t x = in_("x", 0, ir_type(m, DT_F32, 4, xd));
  int32_t k = in_("k", 1, ir_type(m, DT_F32, 4, kd));
  int32_t dy = in_("dy", 2, ir_type(m, DT_F32, 4, dyd));
  int32_t y1 = ir_conv2d(f, OP_CONV2D, x, k, 1, 0, 1, TYPE_VOID, LOC(1, 1));
  int32_t y2 = ir_conv2d(f, OP_CONV2D, x, k, 2, 1, 1, TYPE_VOID, LOC(1, 1));
  int32_t y3 = ir_conv2d(f, OP_CONV2D, x, k, 1, 1, 2, TYPE_VOID, LOC(1, 1));   /* taps 2 apart */
  int32_t dx = ir_conv2d(f, OP_CONV2D_BWD_DATA, dy, k, 1, 0, 1, f->insts[x].type, LOC(1, 1));
  int32_t dk = ir_conv2d(f, OP_CONV2D_BWD_WEIGHT, x, dy, 1, 0, 1, f->insts[k].type, LOC(1, 1));
  const int64_t xb[4] = {1, 1, 3, 3}, kb[4] = {1, 1, 2, 2}, dyb[4] = {1, 1, 2, 2};
  for (int mode = 0; mode < 2; mode++) {
    Tensor in[3] = {tens4(xb, V(1, 2, 3, 4, 5, 6, 7, 8, 9)), tens4(kb, V(1, 0, 0, 1)), tens4(dyb, V(1, 1, 1, 1))};
    Interp *it = ir_interp_run(f, modes[mode], 1, in, 3, NULL, 0, 0, 0);
    check(it, y1, modes[mode], V(6, 8, 12, 14), 4, 0);
    check(it, y2, modes[mode], V(1, 3, 7, 14), 4, 0);
    /* y3: Ho = 3 + 2 - 2 - 1 + 1 = 3; y[i,j] = x[i-1,j-1] + x[i+1,j+1] */
    check(it, y3, modes[mode], V(5, 6, 0, 8, 10, 2, 0, 4, 5), 9, 0);
    check(it, dx, modes[mode], V(1, 1, 0, 1, 2, 1, 0, 1, 1), 9, 0);
    check(it, dk, modes[mode], V(12, 16, 24, 28), 4, 0);
    ir_interp_free(it);
    for (int i = 0; i < 3; i++) ir_tensor_free(&in[i]);
  }
}

static void test_broadcast_and_sum_to(void **state) {
  (void)state;
  int32_t x = in_("x", 0, T(DT_F32, 2, 2, 3, 0));   /* [[1,2,3],[4,5,6]] */
  int32_t b = in_("b", 1, T(DT_F32, 1, 3, 0, 0));   /* [10,20,30] */
  int32_t c = in_("c", 2, T(DT_F32, 2, 2, 1, 0));   /* [[7],[8]] */
  int32_t s = ir_scalar(f, 2, LOC(1, 1));
  TypeId t23 = f->insts[x].type;
  int32_t bb = ir_to_type(f, OP_BROADCAST, b, t23, LOC(1, 1));
  int32_t cb = ir_to_type(f, OP_BROADCAST, c, t23, LOC(1, 1));
  int32_t sb = ir_to_type(f, OP_BROADCAST, s, t23, LOC(1, 1));
  int32_t to3 = ir_to_type(f, OP_SUM_TO, x, T(DT_F32, 1, 3, 0, 0), LOC(1, 1));
  int32_t to13 = ir_to_type(f, OP_SUM_TO, x, T(DT_F32, 2, 1, 3, 0), LOC(1, 1));
  int32_t to21 = ir_to_type(f, OP_SUM_TO, x, T(DT_F32, 2, 2, 1, 0), LOC(1, 1));
  int32_t to0 = ir_to_type(f, OP_SUM_TO, x, T(DT_F32, 0, 0, 0, 0), LOC(1, 1));
  Tensor in[3] = {tens(DT_F32, 2, 2, 3, 0, V(1, 2, 3, 4, 5, 6)), tens(DT_F32, 1, 3, 0, 0, V(10, 20, 30)),
                  tens(DT_F32, 2, 2, 1, 0, V(7, 8))};
  for (int k = 0; k < 2; k++) {
    Interp *it = ir_interp_run(f, modes[k], 1, in, 3, NULL, 0, 0, 0);
    check(it, bb, modes[k], V(10, 20, 30, 10, 20, 30), 6, 0);
    check(it, cb, modes[k], V(7, 7, 7, 8, 8, 8), 6, 0);
    check(it, sb, modes[k], V(2, 2, 2, 2, 2, 2), 6, 0);
    check(it, to3, modes[k], V(5, 7, 9), 3, 0);
    check(it, to13, modes[k], V(5, 7, 9), 3, 0);
    check(it, to21, modes[k], V(6, 15), 2, 0);
    check(it, to0, modes[k], V(21), 1, 0);
    ir_interp_free(it);
  }
  free_tensors(in, 3);
}

/* ------------------------------------------------------------------ rows and labels */

static void test_softmax_stable(void **state) {
  (void)state;
  int32_t x = in_("x", 0, T(DT_F32, 2, 2, 3, 0));   /* [[1,2,3],[1000,1001,1000]] */
  int32_t z = in_("z", 1, T(DT_F32, 2, 2, 2, 0));   /* [[1000,0],[1001,0]] */
  int32_t sm = ir_rowop(f, OP_SOFTMAX, x, 1, LOC(1, 1));
  int32_t ls = ir_rowop(f, OP_LOG_SOFTMAX, x, 1, LOC(1, 1));
  int32_t sm0 = ir_rowop(f, OP_SOFTMAX, z, 0, LOC(1, 1));     /* along columns */
  int32_t ls0 = ir_rowop(f, OP_LOG_SOFTMAX, z, 0, LOC(1, 1));
  /* Python: m = max(xs); s = sum(exp(x - m)); [exp(x - m) / s], [x - m - log(s)]
   * [1,2,3]:     0.09003057317038046, 0.24472847105479764, 0.6652409557748218
   *              -2.4076059644443806, -1.4076059644443804, -0.4076059644443804
   * [1000,1001]: 0.2689414213699951, 0.7310585786300049; -1.3132616875182228, -0.31326168751822286
   * [1000,1001,1000]: 0.21194155761708544, 0.5761168847658291, 0.21194155761708544
   *              -1.551444713932051, -0.5514447139320511, -1.551444713932051 */
  for (int k = 0; k < 2; k++) {
    InterpMode md = modes[k];
    Tensor in[2] = {tens(DT_F32, 2, 2, 3, 0, V(1, 2, 3, 1000, 1001, 1000)),
                    tens(DT_F32, 2, 2, 2, 0, V(1000, 0, 1001, 0))};
    Interp *it = ir_interp_run(f, md, 1, in, 2, NULL, 0, 0, 0);
    check(it, sm, md,
          V(0.09003057317038046, 0.24472847105479764, 0.6652409557748218, 0.21194155761708544, 0.5761168847658291,
            0.21194155761708544),
          6, tol(md) * 4);
    check(it, ls, md,
          V(-2.4076059644443806, -1.4076059644443804, -0.4076059644443804, -1.551444713932051, -0.5514447139320511,
            -1.551444713932051),
          6, tol(md) * 4);
    check(it, sm0, md, V(0.2689414213699951, 0.5, 0.7310585786300049, 0.5), 4, tol(md) * 4);
    check(it, ls0, md, V(-1.3132616875182228, -0.6931471805599453, -0.31326168751822286, -0.6931471805599453), 4,
          tol(md) * 4);
    ir_interp_free(it);
    free_tensors(in, 2);
  }
}

/* layernorm over the last dim, a row with a mean of 1001.3 and a std of 1.25 (two passes:
 * no cancellation), and its two backward ops; the values are PyTorch's (float64):
 *   x = [[1,2,3],[1000,1001,1003]], gamma = [1,2,0.5], beta = [0,1,-1], eps = 1e-5,
 *   dy = [[1,0,-1],[0.5,0.5,2]]; y = F.layer_norm(x, (3,), gamma, beta), y.backward(dy) */
static void test_layernorm(void **state) {
  (void)state;
  int32_t x = in_("x", 0, T(DT_F32, 2, DIM_BATCH, 3, 0));
  int32_t g = in_("g", 1, T(DT_F32, 1, 3, 0, 0));
  int32_t b = in_("b", 2, T(DT_F32, 1, 3, 0, 0));
  int32_t dy = in_("dy", 3, T(DT_F32, 2, DIM_BATCH, 3, 0));
  int32_t y = ir_layernorm(f, OP_LAYERNORM, x, g, b, 1, 1e-5, LOC(1, 1));
  int32_t dx = ir_layernorm(f, OP_LAYERNORM_BWD, x, g, dy, 1, 1e-5, LOC(1, 1));
  int32_t dg = ir_layernorm(f, OP_LAYERNORM_BWD_GAMMA, x, dy, -1, 1, 1e-5, LOC(1, 1));
  for (int k = 0; k < 2; k++) {
    InterpMode md = modes[k];
    /* the second row's mean is 800 standard deviations from 0, so the rounding of
     * x - mean (in double, either way) is amplified about 1000 times in f64 */
    double rel = md == INTERP_F32 ? tol(md) * 4 : 1e-12;
    Tensor in[4] = {tens(DT_F32, 2, 2, 3, 0, V(1, 2, 3, 1000, 1001, 1003)), tens(DT_F32, 1, 3, 0, 0, V(1, 2, 0.5)),
                    tens(DT_F32, 1, 3, 0, 0, V(0, 1, -1)), tens(DT_F32, 2, 2, 3, 0, V(1, 0, -1, 0.5, 0.5, 2))};
    Interp *it = ir_interp_run(f, md, 2, in, 4, NULL, 0, 0, 0);
    check(it, y, md,
          V(-1.2247356859083902, 1.0, -0.3876321570458049, -1.0690415314503516, 0.4654792342747591, -0.33184904284357897),
          6, rel);
    check(it, dx, md,
          V(0.10207508522882813, -0.204122614318065, 0.10204752908923709, -0.11454114585049524, 0.1718100006843173,
            -0.057268854833793625),
          6, rel);
    check(it, dg, md, V(-1.759256451633566, -0.13363019143131022, 1.447868142717294), 3, rel);
    ir_interp_free(it);
    free_tensors(in, 4);
  }
}

static void test_onehot_and_softmax_xent(void **state) {
  (void)state;
  int32_t z = in_("z", 0, T(DT_F32, 2, DIM_BATCH, 3, 0));
  int32_t y = in_("y", 1, T(DT_LABEL, 2, DIM_BATCH, 3, 0));
  int32_t oh = ir_unary(f, OP_ONEHOT, y, LOC(1, 1));
  int32_t ce = ir_binary(f, OP_SOFTMAX_XENT, z, y, LOC(1, 1));
  int32_t l = ir_reduce(f, OP_MEAN, ce, IR_AXIS_ALL, false, LOC(1, 1));
  ir_loss(f, l, LOC(1, 1));
  /* the same loss written out: -sum(onehot(y) * log_softmax(z)) / B */
  int32_t ls = ir_rowop(f, OP_LOG_SOFTMAX, z, 1, LOC(1, 1));
  int32_t pr = ir_binary(f, OP_MUL, oh, ls, LOC(1, 1));
  int32_t sm = ir_reduce(f, OP_SUM, pr, 1, false, LOC(1, 1));
  int32_t nl = ir_unary(f, OP_NEG, sm, LOC(1, 1));
  /* rows: [1000,1001,1000] label 1 -> 0.5514447139320511; [0,0,0] label 2 -> log 3 = 1.0986122886681098;
   *       [1,2,3] label 0 -> 2.4076059644443806 */
  for (int k = 0; k < 2; k++) {
    InterpMode md = modes[k];
    Tensor in[2] = {tens(DT_F32, 2, 3, 3, 0, V(1000, 1001, 1000, 0, 0, 0, 1, 2, 3)), tens(DT_LABEL, 2, 3, 3, 0, V(1, 2, 0))};
    assert_int_equal(in[1].numel, 3);
    Interp *it = ir_interp_run(f, md, 3, in, 2, NULL, 0, 0, 0);
    check(it, oh, md, V(0, 1, 0, 0, 0, 1, 1, 0, 0), 9, 0);
    check(it, ce, md, V(0.5514447139320511, 1.0986122886681098, 2.4076059644443806), 3, tol(md) * 4);
    check(it, nl, md, V(0.5514447139320511, 1.0986122886681098, 2.4076059644443806), 3, tol(md) * 4);
    check(it, l, md, V((0.5514447139320511 + 1.0986122886681098 + 2.4076059644443806) / 3), 1, tol(md) * 4);
    assert_null(ir_interp_value(it, l + 1));   /* the loss sink has no value */
    assert_null(ir_interp_value(it, 999));
    assert_null(ir_interp_value(it, -1));
    ir_interp_free(it);
    free_tensors(in, 2);
  }
}

static void test_label_out_of_range_is_an_error(void **state) {
  (void)state;
  int32_t z = in_("z", 0, T(DT_F32, 2, DIM_BATCH, 3, 0));
  int32_t y = in_("y", 1, T(DT_LABEL, 2, DIM_BATCH, 3, 0));
  Func *g = f;
  ir_unary(g, OP_ONEHOT, y, (SrcLoc){-1, 0, 0, 0});
  static const double bad[][2] = {{0, 3}, {-1, 0}, {1.5, 0}, {NAN, 0}};
  static const char *const msg[] = {
      "bpcc: error: interpreter: in @f, %2 = onehot: label 3 in row 1 is not a class index in [0, 3)",
      "bpcc: error: interpreter: in @f, %2 = onehot: label -1 in row 0 is not a class index in [0, 3)",
      "bpcc: error: interpreter: in @f, %2 = onehot: label 1.5 in row 0 is not a class index in [0, 3)",
      "bpcc: error: interpreter: in @f, %2 = onehot: label nan in row 0 is not a class index in [0, 3)",
  };
  for (int i = 0; i < 4; i++) {
    diag_reset();
    rewind(diag_fp);
    fflush(diag_fp);
    if (diag_text) diag_text[0] = 0;
    Tensor in[2] = {tens(DT_F32, 2, 2, 3, 0, NULL), tens(DT_LABEL, 2, 2, 3, 0, bad[i])};
    assert_null(ir_interp_run(f, INTERP_F64, 2, in, 2, NULL, 0, 0, 0));
    assert_string_equal(first_diag(), msg[i]);
    free_tensors(in, 2);
  }
  /* softmax_xent checks too */
  Func *h = ir_func_new(m, "h");
  int32_t z2 = ir_input(h, "z", 0, f->insts[z].type, LOC(1, 1));
  int32_t y2 = ir_input(h, "y", 1, f->insts[y].type, LOC(1, 1));
  ir_binary(h, OP_SOFTMAX_XENT, z2, y2, (SrcLoc){-1, 0, 0, 0});
  diag_reset();
  rewind(diag_fp);
  fflush(diag_fp);
  if (diag_text) diag_text[0] = 0;
  Tensor in[2] = {tens(DT_F32, 2, 1, 3, 0, NULL), tens(DT_LABEL, 2, 1, 3, 0, V(7))};
  assert_null(ir_interp_run(h, INTERP_F32, 1, in, 2, NULL, 0, 0, 0));
  assert_string_equal(first_diag(), "bpcc: error: interpreter: in @h, %2 = softmax_xent: label 7 in row 0 is not a class index in [0, 3)");
  free_tensors(in, 2);
}

/* ------------------------------------------------------------------ leaves */

static void test_const_param_dropout(void **state) {
  (void)state;
  int32_t c = ir_const(f, 0.1, T(DT_F32, 1, 2, 0, 0), LOC(1, 1));
  int32_t w = ir_param(f, "w", T(DT_F32, 1, 2, 0, 0), INIT_ZEROS, 0, 0, LOC(1, 1));
  int32_t d = ir_dropout_mask(f, 0.25, 7, T(DT_F32, 2, DIM_BATCH, 1000, 0), LOC(1, 1));
  int32_t d0 = ir_dropout_mask(f, 0.0, 8, T(DT_F32, 1, 5, 0, 0), LOC(1, 1));
  Tensor par[1] = {tens(DT_F32, 1, 2, 0, 0, V(0.1, -3))};
  Interp *a = ir_interp_run(f, INTERP_F64, 10, NULL, 0, par, 1, 42, 1);
  Interp *b = ir_interp_run(f, INTERP_F64, 10, NULL, 0, par, 1, 42, 1);
  Interp *c2 = ir_interp_run(f, INTERP_F64, 10, NULL, 0, par, 1, 42, 2);
  Interp *c3 = ir_interp_run(f, INTERP_F64, 10, NULL, 0, par, 1, 43, 1);
  Interp *f32 = ir_interp_run(f, INTERP_F32, 10, NULL, 0, par, 1, 0, 0);
  check(a, c, INTERP_F64, V(0.1, 0.1), 2, 0);
  check(f32, c, INTERP_F32, V(0.1, 0.1), 2, 0);
  check(a, w, INTERP_F64, V(0.1, -3), 2, 0);
  check(f32, w, INTERP_F32, V(0.1, -3), 2, 0);   /* leaves are rounded too */
  check(a, d0, INTERP_F64, V(1, 1, 1, 1, 1), 5, 0);
  const Tensor *ma = ir_interp_value(a, d), *mb = ir_interp_value(b, d), *mc = ir_interp_value(c2, d),
               *md = ir_interp_value(c3, d);
  assert_int_equal(ma->numel, 10000);
  int kept = 0, same_step = 0, same_seed = 0;
  for (int64_t i = 0; i < ma->numel; i++) {
    double v = ma->data[i];
    assert_true(v == 0 || v == 1 / 0.75);
    kept += v != 0;
    assert_true(mb->data[i] == v);             /* a function of (seed, step, stream, index) */
    same_step += mc->data[i] == v;
    same_seed += md->data[i] == v;
  }
  /* Bernoulli(0.75) over 10000: mean 7500, sd 43; 5 sd is 217 */
  assert_in_range(kept, 7500 - 217, 7500 + 217);
  /* a different step or seed gives an independent mask: agreement 0.75^2 + 0.25^2 = 62.5% */
  assert_in_range(same_step, 6250 - 250, 6250 + 250);
  assert_in_range(same_seed, 6250 - 250, 6250 + 250);
  ir_interp_free(a);
  ir_interp_free(b);
  ir_interp_free(c2);
  ir_interp_free(c3);
  ir_interp_free(f32);
  free_tensors(par, 1);
}

/* ------------------------------------------------------------------ errors */

static void reset_diag(void) {
  rewind(diag_fp);
  fflush(diag_fp);
  if (diag_text) diag_text[0] = 0;
}

static void test_errors_return_null(void **state) {
  (void)state;
  int file = diag_add_file("e.bp", "", 0);
  int32_t x = ir_input(f, "x", 0, T(DT_F32, 2, DIM_BATCH, 2, 0), (SrcLoc){file, 1, 5, 0});
  int32_t w = ir_param(f, "w", T(DT_F32, 2, 2, 2, 0), INIT_ZEROS, 0, 0, (SrcLoc){file, 2, 5, 0});
  ir_binary(f, OP_MATMUL, x, w, (SrcLoc){file, 3, 5, 0});
  Tensor good_x = tens(DT_F32, 2, 4, 2, 0, NULL), good_w = tens(DT_F32, 2, 2, 2, 0, NULL);
  Tensor bad_x = tens(DT_F32, 2, 3, 2, 0, NULL), lab_x = tens(DT_LABEL, 2, 4, 2, 0, NULL);

  reset_diag();
  assert_null(ir_interp_run(f, INTERP_F64, 3, &good_x, 1, &good_w, 1, 0, 0));   /* batch 3, x has 4 rows */
  assert_string_equal(first_diag(), "e.bp:1:5: error: interpreter: in @f, %0 = input: input \"x\" must be f32[3,2], was given f32[4,2]");
  reset_diag();
  assert_null(ir_interp_run(f, INTERP_F64, 4, &lab_x, 1, &good_w, 1, 0, 0));
  assert_string_equal(first_diag(), "e.bp:1:5: error: interpreter: in @f, %0 = input: input \"x\" must be f32[4,2], was given label[4,2]");
  reset_diag();
  assert_null(ir_interp_run(f, INTERP_F64, 4, &good_x, 1, &bad_x, 1, 0, 0));
  assert_string_equal(first_diag(), "e.bp:2:5: error: interpreter: in @f, %1 = param: parameter \"w\" must be f32[2,2], was given f32[3,2]");
  reset_diag();
  assert_null(ir_interp_run(f, INTERP_F64, 4, &good_x, 1, NULL, 0, 0, 0));
  assert_string_equal(first_diag(), "bpcc: error: interpreter: @f has 1 parameters, was given 0");
  reset_diag();
  assert_null(ir_interp_run(f, INTERP_F64, 4, NULL, 0, &good_w, 1, 0, 0));
  assert_string_equal(first_diag(), "e.bp:1:5: error: interpreter: in @f, %0 = input: input index 0, but 0 inputs were given");
  reset_diag();
  assert_null(ir_interp_run(f, INTERP_F64, 0, &good_x, 1, &good_w, 1, 0, 0));
  assert_string_equal(first_diag(), "bpcc: error: interpreter: in @f: batch size 0 must be at least 1");
  Tensor nodata = good_x;
  nodata.data = NULL;
  reset_diag();
  assert_null(ir_interp_run(f, INTERP_F64, 4, &nodata, 1, &good_w, 1, 0, 0));
  assert_string_equal(first_diag(), "e.bp:1:5: error: interpreter: in @f, %0 = input: input \"x\" has no data");
  /* and the good call works */
  reset_diag();
  int errors = diag_error_count();
  Interp *it = ir_interp_run(f, INTERP_F64, 4, &good_x, 1, &good_w, 1, 0, 0);
  assert_non_null(it);
  assert_int_equal(diag_error_count(), errors);
  ir_interp_free(it);
  ir_tensor_free(&good_x);
  ir_tensor_free(&good_w);
  ir_tensor_free(&bad_x);
  ir_tensor_free(&lab_x);
}

/* IR that did not pass the verifier (a buggy pass) is reported, not run off the end of an array. */
static void test_unverified_ir_is_an_error(void **state) {
  (void)state;
  int32_t x = in_("x", 0, T(DT_F32, 1, 3, 0, 0));
  int32_t y = in_("y", 1, T(DT_LABEL, 2, 1, 3, 0));
  int32_t r = ir_unary(f, OP_RELU, x, (SrcLoc){-1, 0, 0, 0});
  Tensor in[2] = {tens(DT_F32, 1, 3, 0, 0, V(1, 2, 3)), tens(DT_LABEL, 2, 1, 3, 0, V(0))};
  /* a use before the definition */
  f->insts[r].args[0] = r;
  reset_diag();
  assert_null(ir_interp_run(f, INTERP_F64, 1, in, 2, NULL, 0, 0, 0));
  assert_string_equal(first_diag(), "bpcc: error: interpreter: in @f, %2 = relu: operand 0 (%2) has no value before it");
  /* a label where a float belongs */
  f->insts[r].args[0] = y;
  reset_diag();
  assert_null(ir_interp_run(f, INTERP_F64, 1, in, 2, NULL, 0, 0, 0));
  assert_string_equal(first_diag(),
                      "bpcc: error: interpreter: in @f, %2 = relu: labels are only produced by inputs and read by onehot, softmax_xent, embedding, embedding_bwd and size");
  /* a result type that disagrees with the operands */
  f->insts[r].args[0] = x;
  f->insts[r].type = T(DT_F32, 1, 4, 0, 0);
  reset_diag();
  assert_null(ir_interp_run(f, INTERP_F64, 1, in, 2, NULL, 0, 0, 0));
  assert_string_equal(first_diag(), "bpcc: error: interpreter: in @f, %2 = relu: operand shapes do not give the result type f32[4] (operand 0 is f32[3])");
  /* wrong arity */
  f->insts[r].type = f->insts[x].type;
  f->insts[r].nargs = 2;
  reset_diag();
  assert_null(ir_interp_run(f, INTERP_F64, 1, in, 2, NULL, 0, 0, 0));
  assert_string_equal(first_diag(), "bpcc: error: interpreter: in @f, %2 = relu: has 2 operands, the op takes 1");
  free_tensors(in, 2);
}

/* A whole forward pass: a tiny linear softmax classifier, every value by hand. */
static void test_small_model(void **state) {
  (void)state;
  int32_t x = in_("x", 0, T(DT_F64, 2, DIM_BATCH, 2, 0));
  int32_t y = in_("y", 1, T(DT_LABEL, 2, DIM_BATCH, 2, 0));
  int32_t w = ir_param(f, "W", T(DT_F64, 2, 2, 2, 0), INIT_ZEROS, 0, 0, LOC(1, 1));
  int32_t b = ir_param(f, "b", T(DT_F64, 1, 2, 0, 0), INIT_ZEROS, 0, 0, LOC(1, 1));
  int32_t z = ir_binary(f, OP_ADD, ir_binary(f, OP_MATMUL, x, w, LOC(1, 1)), b, LOC(1, 1));
  int32_t p = ir_rowop(f, OP_SOFTMAX, z, 1, LOC(1, 1));
  ir_output(f, "p", p, LOC(1, 1));
  int32_t l = ir_reduce(f, OP_MEAN, ir_binary(f, OP_SOFTMAX_XENT, z, y, LOC(1, 1)), IR_AXIS_ALL, false, LOC(1, 1));
  ir_loss(f, l, LOC(1, 1));
  /* x = [[1,0],[0,1]], W = [[ln 3, 0],[0, 0]], b = [0, 0]: z = [[ln 3, 0],[0, 0]]
   * p = [[3/4, 1/4], [1/2, 1/2]]; y = [0, 1]: loss = (-ln 3/4 - ln 1/2) / 2 */
  Tensor in[2] = {tens(DT_F64, 2, 2, 2, 0, V(1, 0, 0, 1)), tens(DT_LABEL, 2, 2, 2, 0, V(0, 1))};
  Tensor par[2] = {tens(DT_F64, 2, 2, 2, 0, V(log(3.0), 0, 0, 0)), tens(DT_F64, 1, 2, 0, 0, V(0, 0))};
  Interp *it = ir_interp_run(f, INTERP_F64, 2, in, 2, par, 2, 0, 0);
  check(it, p, INTERP_F64, V(0.75, 0.25, 0.5, 0.5), 4, 1e-15);
  check(it, l, INTERP_F64, V((-log(0.75) - log(0.5)) / 2), 1, 1e-15);
  ir_interp_free(it);
  free_tensors(in, 2);
  free_tensors(par, 2);
}

/* ------------------------------------------------------------------ sequence models */

/* A tensor of any rank with the given values (NULL: zeros). */
static Tensor tensd(DType dt, int rank, const int64_t *dims, const double *vals) {
  TensorType t;
  memset(&t, 0, sizeof t);
  t.dtype = (uint8_t)dt;
  t.rank = (uint8_t)rank;
  for (int i = 0; i < rank; i++) t.dims[i] = dims[i];
  Tensor x = ir_tensor_new(&t);
  if (vals) memcpy(x.data, vals, (size_t)x.numel * sizeof(double));
  return x;
}

static TypeId Td(DType dt, int rank, const int64_t *dims) { return ir_type(m, dt, rank, dims); }

/* Deterministic values in [-1, 1) (xorshift64). */
static void fill(Tensor *t, uint64_t seed) {
  uint64_t r = seed * 0x9e3779b97f4a7c15ull | 1;
  for (int64_t k = 0; k < t->numel; k++) {
    r ^= r << 13; r ^= r >> 7; r ^= r << 17;
    t->data[k] = (double)(r >> 11) * 0x1.0p-53 * 2 - 1;
  }
}

/* Values equal within rel relative to 1 + |want| (values near zero compared absolutely). */
static void check_close(const Tensor *got, const Tensor *want, double rel, const char *what) {
  assert_non_null(got);
  assert_non_null(want);
  assert_int_equal(got->numel, want->numel);
  for (int64_t k = 0; k < got->numel; k++)
    if (!(fabs(got->data[k] - want->data[k]) <= rel * (1 + fabs(want->data[k]))))
      fail_msg("%s[%lld]: got %.17g, want %.17g", what, (long long)k, got->data[k], want->data[k]);
}

/* gelu in both forms and their gradients; values from Python's math module:
 * x Phi(x) = x erfc(-x / sqrt 2) / 2 (erfc: no cancellation in the left tail), and
 * d/dx gelu_tanh with u = c (x + a x^3), t = tanh u: (1 + t) / 2 + x (1 - t^2) c (1 + 3 a x^2) / 2. */
static void test_gelu(void **state) {
  (void)state;
  int32_t x = in_("x", 0, T(DT_F32, 1, 5, 0, 0));
  int32_t dy = in_("dy", 1, T(DT_F32, 1, 5, 0, 0));
  int32_t g = ir_unary(f, OP_GELU, x, LOC(1, 1)), gt = ir_unary(f, OP_GELU_TANH, x, LOC(1, 1));
  int32_t gg = ir_binary(f, OP_GELU_GRAD, x, dy, LOC(1, 1)), gtg = ir_binary(f, OP_GELU_TANH_GRAD, x, dy, LOC(1, 1));
  for (int k = 0; k < 2; k++) {
    InterpMode md = modes[k];
    Tensor in[2] = {tens(DT_F32, 1, 5, 0, 0, V(-3, -1, 0, 0.5, 2)), tens(DT_F32, 1, 5, 0, 0, V(1, 2, 1, -1, 0.5))};
    Interp *it = ir_interp_run(f, md, 1, in, 2, NULL, 0, 0, 0);
    check(it, g, md, V(-0.004049694094890287, -0.15865525393145707, 0.0, 0.34573123063700656, 1.9544997361036416), 5,
          tol(md) * 4);
    check(it, gt, md, V(-0.0036373920817729943, -0.15880800939172324, 0.0, 0.34571400982514394, 1.954597694087775), 5,
          tol(md) * 4);
    check(it, gg, md, V(-0.011945647204183927, -0.16663094117537258, 0.5, -0.8674951246561629, 0.5426159005390985), 5,
          tol(md) * 4);
    check(it, gtg, md, V(-0.011584166630969516, -0.1659281676915651, 0.5, -0.8673699035346424, 0.5430496283118091), 5,
          tol(md) * 4);
    ir_interp_free(it);
    free_tensors(in, 2);
  }
  /* constant folding shares the scalar math */
  assert_true(ir_eval_unary(OP_GELU, 2, 0) == 2 * 0.5 * erfc(-2 / sqrt(2.0)));
  assert_true(ir_eval_binary(OP_GELU_GRAD, 0, 3) == 1.5);
  assert_true(ir_eval_binary(OP_GELU_TANH_GRAD, 0, 3) == 1.5);
}

/* Products with batch dims: a[2,2,3] (batch 1 = 2 x batch 0) against a matrix,
 * a batch of matrices, batch dims that broadcast (size 1, rank 4 against rank 3), the
 * transposed forms, and matmul_tn fold=1 (the sum of the per-batch products). */
static void test_batched_matmul(void **state) {
  (void)state;
  int32_t a = in_("a", 0, T(DT_F32, 3, 2, 2, 3));
  int32_t b = in_("b", 1, T(DT_F32, 2, 3, 2, 0));
  int32_t b3 = in_("b3", 2, T(DT_F32, 3, 2, 3, 2));
  int32_t a1 = in_("a1", 3, T(DT_F32, 3, 1, 2, 3));
  int32_t a4 = in_("a4", 4, Td(DT_F32, 4, (int64_t[]){2, 1, 2, 3}));
  int32_t mm = ir_binary(f, OP_MATMUL, a, b, LOC(1, 1));       /* [2,2,2]: rows of one product */
  int32_t mm3 = ir_binary(f, OP_MATMUL, a, b3, LOC(1, 1));     /* [2,2,2] per batch */
  int32_t mb = ir_binary(f, OP_MATMUL, a1, b3, LOC(1, 1));     /* [2,2,2]: a1's one matrix for each */
  int32_t m4 = ir_binary(f, OP_MATMUL, a4, b3, LOC(1, 1));     /* [2,2,2,2]: out[i,j] = a4[i,0] b3[j] */
  int32_t nt = ir_binary(f, OP_MATMUL_NT, a, ir_transpose(f, b3, NULL, LOC(1, 1)), LOC(1, 1));
  int32_t tn = ir_binary(f, OP_MATMUL_TN, ir_transpose(f, a, NULL, LOC(1, 1)), b3, LOC(1, 1));
  int32_t fold = ir_matmul_tn_fold(f, ir_transpose(f, a, NULL, LOC(1, 1)), b3, LOC(1, 1));
  assert_int_equal(ir_vtype(f, fold)->rank, 2);
  assert_int_equal(f->insts[fold].iattr[0], 1);
  /* batch 0 [[1,2,3],[4,5,6]] @ [[7,8],[9,10],[11,12]] = [[58,64],[139,154]];
   * b3 batch 1 = [[1,0],[0,1],[0,0]] keeps the first two columns */
  for (int k = 0; k < 2; k++) {
    InterpMode md = modes[k];
    Tensor in[5] = {tens(DT_F32, 3, 2, 2, 3, V(1, 2, 3, 4, 5, 6, 2, 4, 6, 8, 10, 12)),
                    tens(DT_F32, 2, 3, 2, 0, V(7, 8, 9, 10, 11, 12)),
                    tens(DT_F32, 3, 2, 3, 2, V(7, 8, 9, 10, 11, 12, 1, 0, 0, 1, 0, 0)),
                    tens(DT_F32, 3, 1, 2, 3, V(1, 2, 3, 4, 5, 6)),
                    tensd(DT_F32, 4, (int64_t[]){2, 1, 2, 3}, V(1, 2, 3, 4, 5, 6, 2, 4, 6, 8, 10, 12))};
    Interp *it = ir_interp_run(f, md, 2, in, 5, NULL, 0, 0, 0);
    check(it, mm, md, V(58, 64, 139, 154, 116, 128, 278, 308), 8, 0);
    check(it, mm3, md, V(58, 64, 139, 154, 2, 4, 8, 10), 8, 0);
    check(it, mb, md, V(58, 64, 139, 154, 1, 2, 4, 5), 8, 0);
    check(it, m4, md, V(58, 64, 139, 154, 1, 2, 4, 5, 116, 128, 278, 308, 2, 4, 8, 10), 16, 0);
    check(it, nt, md, V(58, 64, 139, 154, 2, 4, 8, 10), 8, 0);
    check(it, tn, md, V(58, 64, 139, 154, 2, 4, 8, 10), 8, 0);
    check(it, fold, md, V(60, 68, 147, 164), 4, 0);
    const Tensor *t4 = ir_interp_value(it, m4);
    assert_int_equal(t4->type.rank, 4);
    assert_int_equal(t4->type.dims[0], 2);
    assert_int_equal(t4->type.dims[1], 2);
    ir_interp_free(it);
    free_tensors(in, 5);
  }
}

/* Transposes by permutation: y.dims[i] = x.dims[perm[i]], y[i...] = x[j...] with
 * j[perm[d]] = i[d]; expected values from the index formula of x's fill (x = its index). */
static void test_transpose_perm(void **state) {
  (void)state;
  int32_t x3 = in_("x3", 0, T(DT_F64, 3, 2, 3, 4));
  int32_t x4 = in_("x4", 1, Td(DT_F64, 4, (int64_t[]){2, 3, 2, 2}));
  int32_t p201 = ir_transpose(f, x3, (const int[]){2, 0, 1}, LOC(1, 1));
  int32_t swap3 = ir_transpose(f, x3, NULL, LOC(1, 1));
  int32_t p0213 = ir_transpose(f, x4, (const int[]){0, 2, 1, 3}, LOC(1, 1));
  int32_t swap4 = ir_transpose(f, x4, (const int[]){0, 1, 3, 2}, LOC(1, 1));
  assert_int_equal(f->insts[p201].iattr[0], 201);
  assert_int_equal(f->insts[p0213].iattr[0], 213);
  assert_int_equal(f->insts[swap4].iattr[0], 0);   /* the swap of the last two is code 0 */
  double v3[24], v4[24], w201[24], wswap3[24], w0213[24], wswap4[24];
  for (int k = 0; k < 24; k++) v3[k] = v4[k] = k;
  for (int i = 0, n = 0; i < 4; i++)     /* y[i,j,k] = x[j,k,i], y: [4,2,3] */
    for (int j = 0; j < 2; j++)
      for (int k = 0; k < 3; k++) w201[n++] = j * 12 + k * 4 + i;
  for (int i = 0, n = 0; i < 2; i++)     /* y[i,j,k] = x[i,k,j], y: [2,4,3] */
    for (int j = 0; j < 4; j++)
      for (int k = 0; k < 3; k++) wswap3[n++] = i * 12 + k * 4 + j;
  for (int a = 0, n = 0; a < 2; a++)   /* y[a,b,c,d] = x[a,c,b,d], y: [2,2,3,2] */
    for (int b = 0; b < 2; b++)
      for (int c = 0; c < 3; c++)
        for (int d = 0; d < 2; d++) w0213[n++] = a * 12 + c * 4 + b * 2 + d;
  for (int a = 0, n = 0; a < 2; a++)     /* y[a,b,c,d] = x[a,b,d,c], y: [2,3,2,2] */
    for (int b = 0; b < 3; b++)
      for (int c = 0; c < 2; c++)
        for (int d = 0; d < 2; d++) wswap4[n++] = a * 12 + b * 4 + d * 2 + c;
  Tensor in[2] = {tens(DT_F64, 3, 2, 3, 4, v3), tensd(DT_F64, 4, (int64_t[]){2, 3, 2, 2}, v4)};
  Interp *it = ir_interp_run(f, INTERP_F64, 1, in, 2, NULL, 0, 0, 0);
  check(it, p201, INTERP_F64, w201, 24, 0);
  check(it, swap3, INTERP_F64, wswap3, 24, 0);
  check(it, p0213, INTERP_F64, w0213, 24, 0);
  check(it, swap4, INTERP_F64, wswap4, 24, 0);
  const Tensor *t = ir_interp_value(it, p201);
  assert_int_equal(t->type.dims[0], 4);
  assert_int_equal(t->type.dims[1], 2);
  assert_int_equal(t->type.dims[2], 3);
  ir_interp_free(it);
  free_tensors(in, 2);
}

/* Labels of rank 3 (one class per position): onehot, softmax_xent over [B,T,C], the
 * embedding lookup and its scatter-add gradient, and ids out of range. */
static void test_sequence_labels(void **state) {
  (void)state;
  int32_t z = in_("z", 0, T(DT_F32, 3, DIM_BATCH, 2, 3));
  int32_t y = in_("y", 1, T(DT_LABEL, 3, DIM_BATCH, 2, 3));
  int32_t w = ir_param(f, "W", T(DT_F32, 2, 3, 2, 0), INIT_ZEROS, 0, 0, LOC(1, 1));
  int32_t dy = in_("dy", 2, T(DT_F32, 3, DIM_BATCH, 2, 2));
  int32_t oh = ir_unary(f, OP_ONEHOT, y, LOC(1, 1));
  int32_t ce = ir_binary(f, OP_SOFTMAX_XENT, z, y, LOC(1, 1));
  int32_t e = ir_binary(f, OP_EMBEDDING, y, w, LOC(1, 1));
  int32_t eb = ir_binary(f, OP_EMBEDDING_BWD, y, dy, LOC(1, 1));
  assert_int_equal(ir_vtype(f, ce)->rank, 2);
  assert_int_equal(ir_vtype(f, e)->rank, 3);
  /* rows [1000,1001,1000] label 2 -> 1.5514447139320511 (as label 0: the row is symmetric);
   * [0,0,0] label 0 -> log 3; [1,2,3] label 1 -> 1.4076059644443806; [0,0,0] label 2 -> log 3 */
  for (int k = 0; k < 2; k++) {
    InterpMode md = modes[k];
    Tensor in[3] = {tens(DT_F32, 3, 2, 2, 3, V(1000, 1001, 1000, 0, 0, 0, 1, 2, 3, 0, 0, 0)),
                    tens(DT_LABEL, 3, 2, 2, 3, V(2, 0, 1, 2)),
                    tens(DT_F32, 3, 2, 2, 2, V(1, 1, 2, 2, 3, 3, 4, 4))};
    Tensor par[1] = {tens(DT_F32, 2, 3, 2, 0, V(1, 2, 3, 4, 5, 6))};
    assert_int_equal(in[1].numel, 4);
    Interp *it = ir_interp_run(f, md, 2, in, 3, par, 1, 0, 0);
    check(it, oh, md, V(0, 0, 1, 1, 0, 0, 0, 1, 0, 0, 0, 1), 12, 0);
    check(it, ce, md, V(1.5514447139320511, 1.0986122886681098, 1.4076059644443806, 1.0986122886681098), 4,
          tol(md) * 4);
    check(it, e, md, V(5, 6, 1, 2, 3, 4, 5, 6), 8, 0);
    check(it, eb, md, V(2, 2, 3, 3, 5, 5), 6, 0);   /* row 2 gets positions 0 and 3: 1 + 4 */
    ir_interp_free(it);
    free_tensors(in, 3);
    free_tensors(par, 1);
  }
  /* an id out of the table's range: a located error for embedding and embedding_bwd */
  static const char *const msg[] = {
      "bpcc: error: interpreter: in @e, %2 = embedding: id 3 in row 1 is not a class index in [0, 3)",
      "bpcc: error: interpreter: in @g, %2 = embedding_bwd: id -1 in row 0 is not a class index in [0, 3)",
  };
  Func *fe = ir_func_new(m, "e");
  int32_t ey = ir_input(fe, "y", 0, f->insts[y].type, LOC(1, 1));
  int32_t ew = ir_param(fe, "W", f->insts[w].type, INIT_ZEROS, 0, 0, LOC(1, 1));
  ir_binary(fe, OP_EMBEDDING, ey, ew, (SrcLoc){-1, 0, 0, 0});
  Func *g = ir_func_new(m, "g");
  int32_t gy = ir_input(g, "y", 0, f->insts[y].type, LOC(1, 1));
  int32_t gd = ir_input(g, "dy", 1, f->insts[dy].type, LOC(1, 1));
  ir_binary(g, OP_EMBEDDING_BWD, gy, gd, (SrcLoc){-1, 0, 0, 0});
  for (int c = 0; c < 2; c++) {
    diag_reset();
    rewind(diag_fp);
    fflush(diag_fp);
    if (diag_text) diag_text[0] = 0;
    Tensor in[2] = {tens(DT_LABEL, 3, 1, 2, 3, c == 0 ? V(0, 3) : V(-1, 0)), tens(DT_F32, 3, 1, 2, 2, NULL)};
    Tensor par[1] = {tens(DT_F32, 2, 3, 2, 0, NULL)};
    if (c == 0) assert_null(ir_interp_run(fe, INTERP_F64, 1, in, 1, par, 1, 0, 0));
    else assert_null(ir_interp_run(g, INTERP_F32, 1, in, 2, NULL, 0, 0, 0));
    assert_string_equal(first_diag(), msg[c]);
    free_tensors(in, 2);
    free_tensors(par, 1);
  }
}

static void test_causal_mask(void **state) {
  (void)state;
  int32_t cm = ir_causal_mask(f, 3, DT_F32, LOC(1, 1));
  for (int k = 0; k < 2; k++) {
    Interp *it = ir_interp_run(f, modes[k], 1, NULL, 0, NULL, 0, 0, 0);
    check(it, cm, modes[k], V(0, -INFINITY, -INFINITY, 0, 0, -INFINITY, 0, 0, 0), 9, 0);
    ir_interp_free(it);
  }
}

/* Attention by hand: one query dim, q = [1, 1], k = [0, ln 3], v = [4, 8], scale 1.
 * Both queries see scores [0, ln 3]: p = [1/4, 3/4], o = 7, lse = ln 4. Causal: query 0
 * sees key 0 only (o = 4, lse = 0). The backward with do = [1, 0]: non-causal,
 * D_0 = do_0 o_0 = 7, dp_0j = v_j, ds_0 = p (v - 7) = [-3/4, 3/4]; dq_0 = sum_j ds_0j k_j
 * = 3/4 ln 3, dk = ds^T q = [-3/4, 3/4], dv = p^T do = [1/4, 3/4]. */
static void test_attention_by_hand(void **state) {
  (void)state;
  TypeId t = T(DT_F64, 3, 1, 2, 1);
  int32_t q = in_("q", 0, t), k = in_("k", 1, t), v = in_("v", 2, t), d = in_("do", 3, t);
  int32_t lse, clse, dk, dv;
  int32_t o = ir_attention(f, q, k, v, false, 1.0, &lse, LOC(1, 1));
  int32_t co = ir_attention(f, q, k, v, true, 1.0, &clse, LOC(1, 1));
  assert_int_equal(f->insts[lse].op, OP_EXTRA);
  assert_int_equal(lse, o + 1);
  int32_t dq = ir_attention_bwd(f, (const int32_t[]){q, k, v, o, lse, d}, false, 1.0, &dk, &dv, LOC(1, 1));
  Tensor in[4] = {tens(DT_F64, 3, 1, 2, 1, V(1, 1)), tens(DT_F64, 3, 1, 2, 1, V(0, log(3.0))),
                  tens(DT_F64, 3, 1, 2, 1, V(4, 8)), tens(DT_F64, 3, 1, 2, 1, V(1, 0))};
  Interp *it = ir_interp_run(f, INTERP_F64, 1, in, 4, NULL, 0, 0, 0);
  check(it, o, INTERP_F64, V(7, 7), 2, 1e-15);
  check(it, lse, INTERP_F64, V(log(4.0), log(4.0)), 2, 1e-15);
  check(it, co, INTERP_F64, V(4, 7), 2, 1e-15);
  check(it, clse, INTERP_F64, V(0, log(4.0)), 2, 1e-15);
  check(it, dq, INTERP_F64, V(0.75 * log(3.0), 0), 2, 1e-15);
  check(it, dk, INTERP_F64, V(-0.75, 0.75), 2, 1e-15);
  check(it, dv, INTERP_F64, V(0.25, 0.75), 2, 1e-15);
  ir_interp_free(it);
  free_tensors(in, 4);
}

/* Build the unfused spelling softmax(scale q k^T [+ mask]) v and its log-sum-exp next
 * to attention and compare on random values, ranks 3 and 4, S != T, causal or not. */
static void check_attention_unfused(const int64_t *qd, int64_t S, int64_t dv, bool causal, double scale) {
  Module *mm = ir_module_new();
  Func *g = ir_func_new(mm, "g");
  int r = qd[3] ? 4 : 3;
  int64_t kd[4], vd[4];
  memcpy(kd, qd, sizeof kd);
  kd[r - 2] = S;
  memcpy(vd, kd, sizeof vd);
  vd[r - 1] = dv;
  int32_t q = ir_input(g, "q", 0, ir_type(mm, DT_F64, r, qd), LOC(1, 1));
  int32_t k = ir_input(g, "k", 1, ir_type(mm, DT_F64, r, kd), LOC(1, 1));
  int32_t v = ir_input(g, "v", 2, ir_type(mm, DT_F64, r, vd), LOC(1, 1));
  int32_t lse;
  int32_t o = ir_attention(g, q, k, v, causal, scale, &lse, LOC(1, 1));
  int32_t s = ir_binary(g, OP_MUL, ir_binary(g, OP_MATMUL_NT, q, k, LOC(1, 1)), ir_const(g, scale, ir_type_scalar(mm, DT_F64), LOC(1, 1)), LOC(1, 1));
  if (causal) s = ir_binary(g, OP_ADD, s, ir_causal_mask(g, S, DT_F64, LOC(1, 1)), LOC(1, 1));
  int32_t o2 = ir_binary(g, OP_MATMUL, ir_rowop(g, OP_SOFTMAX, s, r - 1, LOC(1, 1)), v, LOC(1, 1));
  int32_t l2 = ir_unary(g, OP_LOG, ir_reduce(g, OP_SUM, ir_unary(g, OP_EXP, s, LOC(1, 1)), r - 1, false, LOC(1, 1)), LOC(1, 1));
  assert_true(ir_verify(g, "test"));
  Tensor in[3] = {tensd(DT_F64, r, qd, NULL), tensd(DT_F64, r, kd, NULL), tensd(DT_F64, r, vd, NULL)};
  for (int i = 0; i < 3; i++) fill(&in[i], 11 + (uint64_t)i);
  Interp *it = ir_interp_run(g, INTERP_F64, 1, in, 3, NULL, 0, 0, 0);
  assert_non_null(it);
  check_close(ir_interp_value(it, o), ir_interp_value(it, o2), 1e-14, "o");
  check_close(ir_interp_value(it, lse), ir_interp_value(it, l2), 1e-14, "lse");
  ir_interp_free(it);
  free_tensors(in, 3);
  ir_module_free(mm);
}

static void test_attention_matches_unfused(void **state) {
  (void)state;
  check_attention_unfused((const int64_t[]){2, 3, 4, 0}, 5, 2, false, 0.5);
  check_attention_unfused((const int64_t[]){2, 3, 4, 0}, 3, 4, true, 0.5);
  check_attention_unfused((const int64_t[]){2, 2, 5, 4}, 5, 3, true, 1 / sqrt(4.0));
  check_attention_unfused((const int64_t[]){1, 2, 3, 2}, 4, 2, false, 2.0);
}

/* attention_bwd against central differences of L = sum(attention(q, k, v) * w), whose
 * gradient in q, k, v is what attention_bwd gives for do = w: h = 1e-5 in f64, so the
 * difference's error is O(h^2) plus rounding O(1e-16 / h); tolerance 1e-8 (1 + |g|). */
static void check_attention_bwd(const int64_t *qd, int64_t S, int64_t dv, bool causal, double scale) {
  Module *mm = ir_module_new();
  Func *g = ir_func_new(mm, "g");
  int r = qd[3] ? 4 : 3;
  int64_t kd[4], vd[4], od[4];
  memcpy(kd, qd, sizeof kd);
  kd[r - 2] = S;
  memcpy(vd, kd, sizeof vd);
  vd[r - 1] = dv;
  memcpy(od, qd, sizeof od);
  od[r - 1] = dv;
  int32_t q = ir_input(g, "q", 0, ir_type(mm, DT_F64, r, qd), LOC(1, 1));
  int32_t k = ir_input(g, "k", 1, ir_type(mm, DT_F64, r, kd), LOC(1, 1));
  int32_t v = ir_input(g, "v", 2, ir_type(mm, DT_F64, r, vd), LOC(1, 1));
  int32_t w = ir_input(g, "w", 3, ir_type(mm, DT_F64, r, od), LOC(1, 1));
  int32_t lse, grads[3];
  int32_t o = ir_attention(g, q, k, v, causal, scale, &lse, LOC(1, 1));
  grads[0] = ir_attention_bwd(g, (const int32_t[]){q, k, v, o, lse, w}, causal, scale, &grads[1], &grads[2], LOC(1, 1));
  assert_true(ir_verify(g, "test"));
  Tensor in[4] = {tensd(DT_F64, r, qd, NULL), tensd(DT_F64, r, kd, NULL), tensd(DT_F64, r, vd, NULL),
                  tensd(DT_F64, r, od, NULL)};
  for (int i = 0; i < 4; i++) fill(&in[i], 21 + (uint64_t)i);
  Interp *it = ir_interp_run(g, INTERP_F64, 1, in, 4, NULL, 0, 0, 0);
  assert_non_null(it);
  const double h = 1e-5;
  for (int which = 0; which < 3; which++) {
    Tensor num = tensd(DT_F64, r, in[which].type.dims, NULL);
    for (int64_t e = 0; e < in[which].numel; e++) {
      double x0 = in[which].data[e], L[2];
      for (int sgn = 0; sgn < 2; sgn++) {
        in[which].data[e] = x0 + (sgn ? -h : h);
        Interp *p = ir_interp_run(g, INTERP_F64, 1, in, 4, NULL, 0, 0, 0);
        assert_non_null(p);
        const Tensor *ot = ir_interp_value(p, o);
        L[sgn] = 0;
        for (int64_t j = 0; j < ot->numel; j++) L[sgn] += ot->data[j] * in[3].data[j];
        ir_interp_free(p);
      }
      in[which].data[e] = x0;
      num.data[e] = (L[0] - L[1]) / (2 * h);
    }
    check_close(ir_interp_value(it, grads[which]), &num, 1e-8, which == 0 ? "dq" : which == 1 ? "dk" : "dv");
    ir_tensor_free(&num);
  }
  ir_interp_free(it);
  free_tensors(in, 4);
  ir_module_free(mm);
}

static void test_attention_bwd_by_differences(void **state) {
  (void)state;
  check_attention_bwd((const int64_t[]){2, 3, 4, 0}, 5, 2, false, 0.7);
  check_attention_bwd((const int64_t[]){2, 4, 3, 0}, 4, 3, true, 0.5);
  check_attention_bwd((const int64_t[]){1, 2, 3, 2}, 3, 2, true, 1 / sqrt(2.0));
}

/* Run f on deterministic pseudo-random inputs and params of the right shapes (labels:
 * valid class indices). Returns the interpreter, or NULL as ir_interp_run does. */
static Interp *run_random(Func *g, InterpMode mode, int64_t batch, uint64_t seed) {
  Tensor ins[8], pars[16];
  int nin = 0, npar = 0;
  memset(ins, 0, sizeof ins);
  memset(pars, 0, sizeof pars);
  uint64_t r = seed | 1;
  for (int32_t i = 0; i < g->ninsts; i++) {
    const Inst *in = &g->insts[i];
    if (in->op != OP_INPUT && in->op != OP_PARAM) continue;
    TensorType t = *ir_vtype(g, i);
    for (int d = 0; d < t.rank; d++)
      if (t.dims[d] == DIM_BATCH) t.dims[d] = batch;
    Tensor x = ir_tensor_new(&t);
    for (int64_t k = 0; k < x.numel; k++) {
      r ^= r << 13; r ^= r >> 7; r ^= r << 17;
      x.data[k] = t.dtype == DT_LABEL ? (double)(r % (uint64_t)t.dims[t.rank - 1])
                                      : (double)(r >> 11) * 0x1.0p-53 * 2 - 1;
    }
    if (in->op == OP_INPUT) {
      assert_true(in->iattr[0] >= 0 && in->iattr[0] < 8);
      ins[in->iattr[0]] = x;
      if (in->iattr[0] + 1 > nin) nin = (int)in->iattr[0] + 1;
    } else {
      assert_true(npar < 16);
      pars[npar++] = x;
    }
  }
  Interp *it = ir_interp_run(g, mode, batch, ins, nin, pars, npar, seed, 1);
  free_tensors(ins, nin);
  free_tensors(pars, npar);
  return it;
}

/* Every op, read from the golden file: runs in both modes at two batch sizes, and
 * values that do not depend on the rounding mode agree. */
static void test_every_op_from_text(void **state) {
  (void)state;
  const char *root = getenv("BPCC_SOURCE_DIR");
  assert_non_null(root);
  char path[4096];
  snprintf(path, sizeof path, "%s/tests/ir/golden/every_op.ir", root);
  size_t len = 0;
  char *text = read_file(path, &len);
  assert_non_null(text);
  Module *pm = ir_parse(path, text, len);
  assert_non_null(pm);
  Func *g = pm->funcs[0];
  int32_t onehot = -1, mask = -1, loss = -1;   /* found by op: the file grows with the op table */
  for (int32_t i = 0; i < g->ninsts; i++) {
    if (g->insts[i].op == OP_ONEHOT) onehot = i;
    if (g->insts[i].op == OP_DROPOUT_MASK) mask = i;
    if (g->insts[i].op == OP_LOSS) loss = g->insts[i].args[0];
  }
  assert_true(onehot >= 0 && mask >= 0 && loss >= 0);
  for (int b = 1; b <= 5; b += 4) {
    Interp *a = run_random(g, INTERP_F64, b, 7);
    Interp *c = run_random(g, INTERP_F32, b, 7);
    assert_non_null(a);
    assert_non_null(c);
    for (int32_t i = 0; i < g->ninsts; i++) {
      const Tensor *ta = ir_interp_value(a, i), *tc = ir_interp_value(c, i);
      if (ir_ops[g->insts[i].op].flags & OPF_SINK) {
        assert_null(ta);
        continue;
      }
      assert_non_null(ta);
      assert_int_equal(ta->numel, tc->numel);
      assert_int_equal(ta->numel, ir_type_numel(ir_vtype(g, i), b));
    }
    /* the onehot rows and the dropout mask are exact in both modes */
    const Tensor *o64 = ir_interp_value(a, onehot), *o32 = ir_interp_value(c, onehot);
    assert_memory_equal(o64->data, o32->data, (size_t)o64->numel * sizeof(double));
    const Tensor *d64 = ir_interp_value(a, mask), *d32 = ir_interp_value(c, mask);
    assert_memory_equal(d64->data, d32->data, (size_t)d64->numel * sizeof(double));
    /* the loss agrees to f32 precision */
    double l64 = ir_interp_value(a, loss)->data[0], l32 = ir_interp_value(c, loss)->data[0];
    assert_true(fabs(l64 - l32) <= 1e-5 * fabs(l64) + 1e-6);
    ir_interp_free(a);
    ir_interp_free(c);
  }
  ir_module_free(pm);
  bp_free(text);
}

/* The sequence-model golden file: every value computed in both modes at two batch
 * sizes, the onehot rows exact in both, the loss agreeing to f32 precision. */
static void test_seq_from_text(void **state) {
  (void)state;
  const char *root = getenv("BPCC_SOURCE_DIR");
  assert_non_null(root);
  char path[4096];
  snprintf(path, sizeof path, "%s/tests/ir/golden/seq.ir", root);
  size_t len = 0;
  char *text = read_file(path, &len);
  assert_non_null(text);
  Module *pm = ir_parse(path, text, len);
  assert_non_null(pm);
  Func *g = pm->funcs[0];
  assert_true(ir_verify(g, "test"));
  int32_t onehot = -1, loss = -1;
  for (int32_t i = 0; i < g->ninsts; i++) {
    if (g->insts[i].op == OP_ONEHOT) onehot = i;
    if (g->insts[i].op == OP_LOSS) loss = g->insts[i].args[0];
  }
  assert_true(onehot >= 0 && loss >= 0);
  for (int b = 1; b <= 3; b += 2) {
    Interp *a = run_random(g, INTERP_F64, b, 5);
    Interp *c = run_random(g, INTERP_F32, b, 5);
    assert_non_null(a);
    assert_non_null(c);
    for (int32_t i = 0; i < g->ninsts; i++) {
      const Tensor *ta = ir_interp_value(a, i), *tc = ir_interp_value(c, i);
      if (ir_ops[g->insts[i].op].flags & OPF_SINK) continue;
      assert_non_null(ta);
      assert_non_null(tc);
      assert_int_equal(ta->numel, ir_type_numel(ir_vtype(g, i), b));
      for (int64_t k = 0; k < ta->numel; k++) assert_false(isnan(ta->data[k]));
    }
    const Tensor *o64 = ir_interp_value(a, onehot), *o32 = ir_interp_value(c, onehot);
    assert_memory_equal(o64->data, o32->data, (size_t)o64->numel * sizeof(double));
    double l64 = ir_interp_value(a, loss)->data[0], l32 = ir_interp_value(c, loss)->data[0];
    assert_true(fabs(l64 - l32) <= 1e-5 * fabs(l64) + 1e-6);
    ir_interp_free(a);
    ir_interp_free(c);
  }
  ir_module_free(pm);
  bp_free(text);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_binary_broadcasting, setup, teardown),
      cmocka_unit_test_setup_teardown(test_f32_rounds_every_result, setup, teardown),
      cmocka_unit_test_setup_teardown(test_unary, setup, teardown),
      cmocka_unit_test_setup_teardown(test_sigmoid_is_stable, setup, teardown),
      cmocka_unit_test_setup_teardown(test_derivative_helpers, setup, teardown),
      cmocka_unit_test_setup_teardown(test_matmul_family, setup, teardown),
      cmocka_unit_test_setup_teardown(test_batch_dim, setup, teardown),
      cmocka_unit_test_setup_teardown(test_reductions, setup, teardown),
      cmocka_unit_test_setup_teardown(test_reductions_rank4, setup, teardown),
      cmocka_unit_test_setup_teardown(test_reshape, setup, teardown),
      cmocka_unit_test_setup_teardown(test_conv2d, setup, teardown),
      cmocka_unit_test_setup_teardown(test_broadcast_and_sum_to, setup, teardown),
      cmocka_unit_test_setup_teardown(test_softmax_stable, setup, teardown),
      cmocka_unit_test_setup_teardown(test_layernorm, setup, teardown),
      cmocka_unit_test_setup_teardown(test_onehot_and_softmax_xent, setup, teardown),
      cmocka_unit_test_setup_teardown(test_label_out_of_range_is_an_error, setup, teardown),
      cmocka_unit_test_setup_teardown(test_const_param_dropout, setup, teardown),
      cmocka_unit_test_setup_teardown(test_errors_return_null, setup, teardown),
      cmocka_unit_test_setup_teardown(test_unverified_ir_is_an_error, setup, teardown),
      cmocka_unit_test_setup_teardown(test_small_model, setup, teardown),
      cmocka_unit_test_setup_teardown(test_every_op_from_text, setup, teardown),
      cmocka_unit_test_setup_teardown(test_gelu, setup, teardown),
      cmocka_unit_test_setup_teardown(test_batched_matmul, setup, teardown),
      cmocka_unit_test_setup_teardown(test_transpose_perm, setup, teardown),
      cmocka_unit_test_setup_teardown(test_sequence_labels, setup, teardown),
      cmocka_unit_test_setup_teardown(test_causal_mask, setup, teardown),
      cmocka_unit_test_setup_teardown(test_attention_by_hand, setup, teardown),
      cmocka_unit_test_setup_teardown(test_attention_matches_unfused, setup, teardown),
      cmocka_unit_test_setup_teardown(test_attention_bwd_by_differences, setup, teardown),
      cmocka_unit_test_setup_teardown(test_seq_from_text, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
