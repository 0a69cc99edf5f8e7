/* tests/frontend/test_lower.c — lowering the examples to IR: the instruction ops and
 * types in order, parameter names, shapes and inits, inputs, outputs, the loss, source
 * locations, and the verifier's approval. */
#include "fe_test.h"

#include <math.h>

typedef struct {
  Op op;
  const char *type;    /* "f32[B,784]"; NULL for sinks */
  const char *name;    /* INPUT / PARAM / OUTPUT name or NULL */
} Want;

static Func *lower_example(const char *rel, Module *m, FeRun *r) {
  size_t len = 0;
  char *text = fe_read_source(rel, &len);
  assert_non_null(text);
  *r = fe_run(rel, text, len);
  free(text);
  if (r->errors) fprintf(stderr, "%s", r->diags);
  assert_int_equal(r->errors, 0);
  return fe_lower(m, r->unit->models[0]);
}

static void check(Func *f, const Want *w, int n) {
  char buf[64];
  assert_int_equal(f->ninsts, n);
  for (int i = 0; i < n; i++) {
    const Inst *in = &f->insts[i];
    if (in->op != w[i].op) fail_msg("%%%d is %s, expected %s", i, ir_ops[in->op].name, ir_ops[w[i].op].name);
    if (w[i].type) assert_string_equal(ir_type_str(ir_vtype(f, i), buf, sizeof buf), w[i].type);
    else assert_int_equal(in->type, TYPE_VOID);
    if (w[i].name) assert_string_equal(in->name, w[i].name);
    assert_true(in->loc.line > 0);
  }
  assert_true(ir_verify(f, "lowering"));
}

static void test_mnist_mlp(void **state) {
  (void)state;
  Module *m = ir_module_new();
  FeRun r;
  Func *f = lower_example("examples/mnist_mlp.bp", m, &r);
  assert_string_equal(f->name, "mnist_mlp");
  const Want w[] = {
      {OP_INPUT, "f32[B,784]", "x"},
      {OP_INPUT, "label[B,10]", "y"},
      {OP_PARAM, "f32[784,800]", "h.W"},
      {OP_PARAM, "f32[800]", "h.b"},
      {OP_MATMUL, "f32[B,800]", NULL},
      {OP_ADD, "f32[B,800]", NULL},
      {OP_RELU, "f32[B,800]", NULL},
      {OP_PARAM, "f32[800,10]", "logits.W"},
      {OP_PARAM, "f32[10]", "logits.b"},
      {OP_MATMUL, "f32[B,10]", NULL},
      {OP_ADD, "f32[B,10]", NULL},
      {OP_SOFTMAX, "f32[B,10]", NULL},
      {OP_OUTPUT, NULL, "probs"},
      {OP_ONEHOT, "f32[B,10]", NULL},
      {OP_LOG, "f32[B,10]", NULL},
      {OP_MUL, "f32[B,10]", NULL},
      {OP_SUM, "f32[B]", NULL},
      {OP_MEAN, "f32[]", NULL},
      {OP_NEG, "f32[]", NULL},
      {OP_LOSS, NULL, NULL},
  };
  check(f, w, (int)(sizeof w / sizeof w[0]));
  assert_int_equal(f->insts[2].iattr[0], INIT_HE_NORMAL);
  assert_int_equal(f->insts[3].iattr[0], INIT_ZEROS);
  assert_int_equal(f->insts[1].iattr[0], 1);      /* input index */
  assert_int_equal(f->insts[11].iattr[0], 1);     /* softmax over the last axis */
  assert_int_equal(f->insts[16].iattr[0], 1);     /* sum(axis = 1) */
  assert_int_equal(f->insts[17].iattr[0], IR_AXIS_ALL);
  /* the standard library's instructions carry the user's call: dense(x, 800) at 3:19 */
  assert_int_equal(f->insts[4].loc.line, 3);
  assert_int_equal(f->insts[4].loc.col, 19);
  assert_int_equal(f->insts[2].loc.line, 3);
  assert_int_equal(f->insts[19].loc.line, 6);
  /* their call site is that same call, so it does not print: the text is unchanged */
  assert_int_equal(f->insts[4].call.line, 3);
  assert_int_equal(f->insts[4].call.col, 19);
  for (int i = 0; i < f->ninsts; i++) assert_false(ir_has_call(&f->insts[i]));
  fe_run_free(&r);
  ir_module_free(m);
}

static void test_custom_loss(void **state) {
  (void)state;
  Module *m = ir_module_new();
  FeRun r;
  Func *f = lower_example("examples/custom_loss.bp", m, &r);
  assert_string_equal(f->name, "net");
  const Want w[] = {
      {OP_INPUT, "f32[B,2]", "x"},       {OP_INPUT, "label[B,3]", "y"},
      {OP_PARAM, "f32[2,64]", "h.W"},    {OP_PARAM, "f32[64]", "h.b"},
      {OP_MATMUL, "f32[B,64]", NULL},    {OP_ADD, "f32[B,64]", NULL},
      {OP_TANH, "f32[B,64]", NULL},      {OP_PARAM, "f32[64,64]", "h2.W"},
      {OP_PARAM, "f32[64]", "h2.b"},     {OP_MATMUL, "f32[B,64]", NULL},
      {OP_ADD, "f32[B,64]", NULL},       {OP_TANH, "f32[B,64]", NULL},
      {OP_ADD, "f32[B,64]", NULL},       {OP_PARAM, "f32[64,3]", "z.W"},
      {OP_PARAM, "f32[3]", "z.b"},       {OP_MATMUL, "f32[B,3]", NULL},
      {OP_ADD, "f32[B,3]", NULL},        {OP_SOFTMAX, "f32[B,3]", NULL},
      {OP_OUTPUT, NULL, "p"},            {OP_ONEHOT, "f32[B,3]", NULL},
      {OP_LOG, "f32[B,3]", NULL},        {OP_MUL, "f32[B,3]", NULL},
      {OP_SUM, "f32[B]", NULL},          {OP_MEAN, "f32[]", NULL},
      {OP_NEG, "f32[]", NULL},           {OP_LOSS, NULL, NULL},
  };
  check(f, w, (int)(sizeof w / sizeof w[0]));
  /* the residual: add of the first tanh and the second */
  assert_int_equal(f->insts[12].args[0], 6);
  assert_int_equal(f->insts[12].args[1], 11);
  /* a user layer's instructions keep their place in the layer: `x @ W + b` at 5:12 */
  assert_int_equal(f->insts[4].loc.line, 5);
  /* its parameters the model-level call: affine(h, 64) at 14:19 */
  assert_int_equal(f->insts[7].loc.line, 14);
  assert_int_equal(f->insts[7].loc.col, 19);
  /* each call's instructions carry that call: affine(x, 64) at 13:15, affine(h, 64) at
   * 14:19, affine(h2, 3) at 15:10, my_xent(p, y) at 17:10 */
  static const struct { int inst, line, col; } calls[] = {
      {4, 13, 15}, {5, 13, 15}, {9, 14, 19}, {10, 14, 19}, {15, 15, 10}, {16, 15, 10},
      {19, 17, 10}, {20, 17, 10}, {21, 17, 10}, {22, 17, 10}, {23, 17, 10}, {24, 17, 10},
  };
  for (size_t k = 0; k < sizeof calls / sizeof calls[0]; k++) {
    const Inst *in = &f->insts[calls[k].inst];
    assert_true(ir_has_call(in));
    assert_int_equal(in->call.file, in->loc.file);
    assert_int_equal(in->call.line, calls[k].line);
    assert_int_equal(in->call.col, calls[k].col);
  }
  /* the model's own statements have none; the parameters are located at their call */
  assert_int_equal(f->insts[6].call.file, -1);    /* tanh(...) at 13:10 */
  assert_int_equal(f->insts[12].call.file, -1);   /* h + tanh(...) */
  assert_int_equal(f->insts[17].call.file, -1);   /* softmax(z) */
  assert_false(ir_has_call(&f->insts[7]));
  assert_false(ir_has_call(&f->insts[25]));       /* loss */
  fe_run_free(&r);
  ir_module_free(m);
}

static void test_spiral_and_constants(void **state) {
  (void)state;
  Module *m = ir_module_new();
  FeRun r;
  Func *f = lower_example("examples/spiral.bp", m, &r);
  int params = 0, log_softmax = 0;
  for (int i = 0; i < f->ninsts; i++) {
    if (f->insts[i].op == OP_PARAM) params++;
    if (f->insts[i].op == OP_LOG_SOFTMAX) log_softmax++;
  }
  assert_int_equal(params, 6);
  assert_int_equal(log_softmax, 1);
  assert_true(ir_verify(f, "lowering"));
  fe_run_free(&r);
  ir_module_free(m);

  /* numbers become scalar constants of the tensor's dtype; ^ is pow; dropout a mask */
  m = ir_module_new();
  r = fe_run_str("model k(x: f64[B, 3]) {\n    h = dropout(2 * x ^ 3 - 1, 0.5)\n    loss mean(h)\n}\n");
  assert_int_equal(r.errors, 0);
  f = fe_lower(m, r.unit->models[0]);
  const Want w[] = {
      {OP_INPUT, "f64[B,3]", "x"}, {OP_POW, "f64[B,3]", NULL},      {OP_CONST, "f64[]", NULL},
      {OP_MUL, "f64[B,3]", NULL},  {OP_CONST, "f64[]", NULL},       {OP_SUB, "f64[B,3]", NULL},
      {OP_DROPOUT_MASK, "f64[B,3]", NULL}, {OP_MUL, "f64[B,3]", NULL}, {OP_MEAN, "f64[]", NULL},
      {OP_LOSS, NULL, NULL},
  };
  check(f, w, (int)(sizeof w / sizeof w[0]));
  assert_true(f->insts[1].fattr[0] == 3);   /* x ^ 3 first: operands before the product */
  assert_true(f->insts[2].fattr[0] == 2);
  assert_true(f->insts[6].fattr[0] == 0.5);
  fe_run_free(&r);
  ir_module_free(m);
}

/* keep = true lowers to the reduction's keep attribute: the reduced dim stays as 1. */
static void test_reduction_keep(void **state) {
  (void)state;
  Module *m = ir_module_new();
  FeRun r = fe_run_str("model k(x: f32[B, 4, 5]) {\n    a = sum(x, axis = 1)\n    b = max(x, axis = 1, keep = true)\n"
                       "    c = mean(x, keep = true)\n    loss mean(a) + mean(b) + sum(c)\n}\n");
  assert_int_equal(r.errors, 0);
  Func *f = fe_lower(m, r.unit->models[0]);
  const Want w[] = {
      {OP_INPUT, "f32[B,4,5]", "x"}, {OP_SUM, "f32[B,5]", NULL},   {OP_MAX, "f32[B,1,5]", NULL},
      {OP_MEAN, "f32[1,1,1]", NULL}, {OP_MEAN, "f32[]", NULL},     {OP_MEAN, "f32[]", NULL},
      {OP_ADD, "f32[]", NULL},       {OP_SUM, "f32[]", NULL},      {OP_ADD, "f32[]", NULL},
      {OP_LOSS, NULL, NULL},
  };
  check(f, w, (int)(sizeof w / sizeof w[0]));
  assert_true(f->insts[1].iattr[0] == 1 && f->insts[1].iattr[1] == 0);
  assert_true(f->insts[2].iattr[0] == 1 && f->insts[2].iattr[1] == 1);
  assert_true(f->insts[3].iattr[0] == IR_AXIS_ALL && f->insts[3].iattr[1] == 1);
  fe_run_free(&r);
  ir_module_free(m);
}

/* Pooling: the defaults (stride = kernel, padding = 0), keywords, floor in the shape
 * rule, and global_avg_pool as two means (axis 3, then 2), no op of its own. */
static void test_pooling(void **state) {
  (void)state;
  Module *m = ir_module_new();
  FeRun r = fe_run_str("model p(x: f32[B, 3, 7, 5]) {\n    a = max_pool2d(x, 2)\n"
                       "    b = avg_pool2d(x, kernel = 3, stride = 2, padding = 1)\n"
                       "    loss mean(a) + mean(b) + mean(global_avg_pool(x))\n}\n");
  assert_int_equal(r.errors, 0);
  Func *f = fe_lower(m, r.unit->models[0]);
  const Want w[] = {
      {OP_INPUT, "f32[B,3,7,5]", "x"}, {OP_MAX_POOL2D, "f32[B,3,3,2]", NULL}, {OP_AVG_POOL2D, "f32[B,3,4,3]", NULL},
      {OP_MEAN, "f32[]", NULL},        {OP_MEAN, "f32[]", NULL},             {OP_ADD, "f32[]", NULL},
      {OP_MEAN, "f32[B,3,7]", NULL},   {OP_MEAN, "f32[B,3]", NULL},          {OP_MEAN, "f32[]", NULL},
      {OP_ADD, "f32[]", NULL},         {OP_LOSS, NULL, NULL},
  };
  check(f, w, (int)(sizeof w / sizeof w[0]));
  int64_t k, st, pad;
  ir_pool_geom(&f->insts[1], &k, &st, &pad);
  assert_true(k == 2 && st == 2 && pad == 0);
  ir_pool_geom(&f->insts[2], &k, &st, &pad);
  assert_true(k == 3 && st == 2 && pad == 1);
  assert_int_equal(f->insts[6].iattr[0], 3);
  assert_int_equal(f->insts[7].iattr[0], 2);
  fe_run_free(&r);
  ir_module_free(m);
}

/* The sequence-model constructs (issue 14): token labels of rank 3, embed, dim
 * expressions in reshape, transpose by a permutation and of the last two dims, batched
 * '@' (rank 4 by rank 4, rank 3 by a matrix), causal_mask, softmax over the last axis of
 * a rank-4 value, fused attention (its lse extra right after it), both gelu forms, and
 * the softmax cross-entropy over [B, T, V] of the stdlib (the spelling the simplify
 * pass's rule matches: axes normalized to 2). */
static void test_sequence_ops(void **state) {
  (void)state;
  Module *m = ir_module_new();
  FeRun r = fe_run_str("layer lm(tok: label[B, T, V], d: int, heads: int) {\n"
                       "    param W: [V, d] init normal(0.02)\n"
                       "    h = embed(tok, W)\n"
                       "    q = transpose(reshape(h, [B, T, heads, d / heads]), [0, 2, 1, 3])\n"
                       "    s = softmax(q @ transpose(q) + causal_mask(T), axis = -1)\n"
                       "    o = attention(q, q, q, causal = true) + s @ q\n"
                       "    m = reshape(transpose(o, [0, 2, 1, 3]), [B, T, d])\n"
                       "    return gelu(m, approximate = \"tanh\") @ transpose(W) + gelu(m) @ transpose(W)\n"
                       "}\n"
                       "model g(x: label[B, 8, 32], y: label[B, 8, 32]) {\n"
                       "    output logits = lm(x, 16, 2)\n"
                       "    loss softmax_cross_entropy(logits, y)\n"
                       "}\n");
  if (r.errors) fprintf(stderr, "%s", r.diags);
  assert_int_equal(r.errors, 0);
  Func *f = fe_lower(m, r.unit->models[0]);
  const Want w[] = {
      {OP_INPUT, "label[B,8,32]", "x"},       {OP_INPUT, "label[B,8,32]", "y"},
      {OP_PARAM, "f32[32,16]", "logits.W"},   {OP_EMBEDDING, "f32[B,8,16]", NULL},
      {OP_RESHAPE, "f32[B,8,2,8]", NULL},     {OP_TRANSPOSE, "f32[B,2,8,8]", NULL},
      {OP_TRANSPOSE, "f32[B,2,8,8]", NULL},   {OP_MATMUL, "f32[B,2,8,8]", NULL},
      {OP_CAUSAL_MASK, "f32[8,8]", NULL},     {OP_ADD, "f32[B,2,8,8]", NULL},
      {OP_SOFTMAX, "f32[B,2,8,8]", NULL},     {OP_ATTENTION, "f32[B,2,8,8]", NULL},
      {OP_EXTRA, "f32[B,2,8]", NULL},         {OP_MATMUL, "f32[B,2,8,8]", NULL},
      {OP_ADD, "f32[B,2,8,8]", NULL},         {OP_TRANSPOSE, "f32[B,8,2,8]", NULL},
      {OP_RESHAPE, "f32[B,8,16]", NULL},      {OP_GELU_TANH, "f32[B,8,16]", NULL},
      {OP_TRANSPOSE, "f32[16,32]", NULL},     {OP_MATMUL, "f32[B,8,32]", NULL},
      {OP_GELU, "f32[B,8,16]", NULL},         {OP_MATMUL, "f32[B,8,32]", NULL},
      {OP_ADD, "f32[B,8,32]", NULL},          {OP_OUTPUT, NULL, "logits"},
      {OP_ONEHOT, "f32[B,8,32]", NULL},       {OP_LOG_SOFTMAX, "f32[B,8,32]", NULL},
      {OP_MUL, "f32[B,8,32]", NULL},          {OP_SUM, "f32[B,8]", NULL},
      {OP_MEAN, "f32[]", NULL},               {OP_NEG, "f32[]", NULL},
      {OP_LOSS, NULL, NULL},
  };
  check(f, w, (int)(sizeof w / sizeof w[0]));
  assert_int_equal(f->insts[5].iattr[0], 213);   /* perm=0213 */
  assert_int_equal(f->insts[6].iattr[0], 0);     /* the last two swapped */
  assert_int_equal(f->insts[10].iattr[0], 3);    /* softmax axis -1 of rank 4 */
  assert_int_equal(f->insts[11].iattr[0], 1);    /* causal */
  assert_true(fabs(f->insts[11].fattr[0] - 1 / sqrt(8.0)) < 1e-15);   /* 1 / sqrt(dh) */
  assert_int_equal(f->insts[12].args[0], 11);
  assert_int_equal(f->insts[12].iattr[0], 1);    /* the lse extra */
  assert_int_equal(f->insts[25].iattr[0], 2);    /* log_softmax over the vocabulary */
  assert_int_equal(f->insts[27].iattr[0], 2);
  assert_int_equal(f->insts[28].iattr[0], IR_AXIS_ALL);
  fe_run_free(&r);
  ir_module_free(m);
}

/* The small GPT of examples/attention_small.bp: the parameters of the stdlib's
 * embedding, pos_embedding, block (multihead_attention inside) and dense_normal, named
 * as docs/language.md says, with GPT-2's init; the verifier accepts the whole IR. */
static void test_attention_small(void **state) {
  (void)state;
  Module *m = ir_module_new();
  FeRun r;
  Func *f = lower_example("examples/attention_small.bp", m, &r);
  assert_true(ir_verify(f, "lowering"));
  static const char *const names[] = {
      "tok.W", "h.W", "b1.ln1.gamma", "b1.ln1.beta", "b1.attn.q.W", "b1.attn.q.b", "b1.attn.k.W", "b1.attn.k.b",
      "b1.attn.v.W", "b1.attn.v.b", "b1.attn.proj.W", "b1.attn.proj.b", "b1.ln2.gamma", "b1.ln2.beta", "b1.fc.W",
      "b1.fc.b", "b1.proj.W", "b1.proj.b"};
  static const char *const types[] = {
      "f32[32,16]", "f32[8,16]", "f32[16]", "f32[16]", "f32[16,16]", "f32[16]", "f32[16,16]", "f32[16]",
      "f32[16,16]", "f32[16]", "f32[16,16]", "f32[16]", "f32[16]", "f32[16]", "f32[16,64]", "f32[64]",
      "f32[64,16]", "f32[16]"};
  int k = 0, nparams = 0, nattn = 0;
  char buf[64];
  for (int32_t i = 0; i < f->ninsts; i++) {
    const Inst *in = &f->insts[i];
    if (in->op == OP_ATTENTION) {
      nattn++;
      assert_int_equal(in->iattr[0], 1);
      assert_true(fabs(in->fattr[0] - 1 / sqrt(8.0)) < 1e-15);
    }
    if (in->op != OP_PARAM) continue;
    nparams++;
    bool bias = strstr(in->name, ".b") && !strstr(in->name, ".beta") && in->name[strlen(in->name) - 1] == 'b';
    if (strstr(in->name, "gamma")) assert_int_equal(in->iattr[0], INIT_ONES);
    else if (strstr(in->name, "beta") || bias) assert_int_equal(in->iattr[0], INIT_ZEROS);
    else {
      assert_int_equal(in->iattr[0], INIT_NORMAL);
      assert_true(in->fattr[0] == 0.02);
    }
    if (k < (int)(sizeof names / sizeof names[0])) {
      assert_string_equal(in->name, names[k]);
      assert_string_equal(ir_type_str(ir_vtype(f, i), buf, sizeof buf), types[k]);
      k++;
    }
  }
  assert_int_equal(nparams, 2 + 2 * 16 + 2 + 2);
  assert_int_equal(nattn, 2);
  fe_run_free(&r);
  ir_module_free(m);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_mnist_mlp),
      cmocka_unit_test(test_custom_loss),
      cmocka_unit_test(test_spiral_and_constants),
      cmocka_unit_test(test_reduction_keep),
      cmocka_unit_test(test_pooling),
      cmocka_unit_test(test_sequence_ops),
      cmocka_unit_test(test_attention_small),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
