/* tests/passes/test_simplify.c — simplification keeps the meaning of a function.
 *
 * The golden tests (golden/simplify_rules.ir) pin what each rule produces; this test
 * pins that it is right: every function of the IR files below is run in the f64
 * interpreter before and after pass_simplify (and pass_canonicalize, which adds the
 * softmax-CE rule) on the same random inputs and parameters, and every sink's value
 * (outputs, loss, grads, in order) must agree within 1e-12 relative. Then it checks
 * that simplification reaches a fixed point: simplifying twice prints the same IR. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ir/ir.h"
#include "passes/passes.h"

#define BATCH 3

static char *slurp(const char *rel, size_t *len) {
  char path[4096];
  const char *root = getenv("BPCC_SOURCE_DIR");
  snprintf(path, sizeof path, "%s/%s", root ? root : ".", rel);
  FILE *fp = fopen(path, "rb");
  if (!fp) return NULL;
  size_t cap = 1 << 16, n = 0, k;
  char *s = bp_xmalloc(cap);
  while ((k = fread(s + n, 1, cap - n - 1, fp)) > 0) {
    n += k;
    if (n + 1 == cap) s = bp_xrealloc(s, cap *= 2);
  }
  fclose(fp);
  s[n] = 0;
  *len = n;
  return s;
}

static double urand(uint64_t *st) {
  *st = *st * 6364136223846793005ull + 1442695040888963407ull;
  return (double)(*st >> 11) * 0x1.0p-53;
}

/* Random leaves for f: small positive values, so log and sqrt are defined everywhere and
 * the unsimplified log(softmax) of a wide layer does not underflow to log(0). */
static void make_leaves(Func *f, Tensor *in, int *ni, Tensor *par, int *np) {
  uint64_t st = 7;
  *ni = *np = 0;
  for (int32_t i = 0; i < f->ninsts; i++) {
    const Inst *x = &f->insts[i];
    if (x->op != OP_INPUT && x->op != OP_PARAM) continue;
    TensorType t = *ir_vtype(f, i);
    for (int d = 0; d < t.rank; d++)
      if (t.dims[d] == DIM_BATCH) t.dims[d] = BATCH;
    Tensor v = ir_tensor_new(&t);
    for (int64_t k = 0; k < v.numel; k++)
      v.data[k] = t.dtype == DT_LABEL ? floor(urand(&st) * (double)t.dims[t.rank - 1]) : 0.05 + 0.1 * urand(&st);
    if (x->op == OP_INPUT) {
      in[x->iattr[0]] = v;
      (*ni)++;
    } else {
      par[(*np)++] = v;
    }
  }
}

static void sink_values(Func *f, Interp *it, const Tensor **vals, int *n) {
  *n = 0;
  for (int32_t i = 0; i < f->ninsts; i++) {
    const Inst *x = &f->insts[i];
    if (!(ir_ops[x->op].flags & OPF_SINK)) continue;
    vals[(*n)++] = ir_interp_value(it, x->args[x->op == OP_GRAD ? 1 : 0]);
  }
}

static void check_file(const char *rel, Func *(*pass)(Func *, const PassOptions *), const char *pass_name) {
  size_t len = 0;
  char *text = slurp(rel, &len);
  if (!text) fail_msg("cannot read %s", rel);
  Module *m = ir_parse(rel, text, len);
  bp_free(text);
  assert_non_null(m);
  int nf = m->nfuncs;
  for (int fi = 0; fi < nf; fi++) {
    Func *f = m->funcs[fi];
    Tensor in[16], par[16];
    int ni, np;
    make_leaves(f, in, &ni, par, &np);
    Interp *before = ir_interp_run(f, INTERP_F64, BATCH, in, ni, par, np, 5, 1);
    if (!before) continue;   /* a function the interpreter rejects on these inputs */
    const Tensor *va[64], *vb[64];
    int na, nb;
    sink_values(f, before, va, &na);

    PassOptions opt;
    pass_options_default(&opt);
    opt.verify = true;
    Func *g = pass(ir_func_clone(f, "simplified"), &opt);
    assert_non_null(g);
    assert_true(ir_verify(g, pass_name));
    Interp *after = ir_interp_run(g, INTERP_F64, BATCH, in, ni, par, np, 5, 1);
    assert_non_null(after);
    sink_values(g, after, vb, &nb);
    if (na != nb) fail_msg("%s @%s: %d sinks before %s, %d after", rel, f->name, na, pass_name, nb);
    for (int s = 0; s < na; s++) {
      assert_int_equal(va[s]->numel, vb[s]->numel);
      for (int64_t k = 0; k < va[s]->numel; k++) {
        double a = va[s]->data[k], b = vb[s]->data[k];
        if (isnan(a) && isnan(b)) continue;
        double den = fabs(a) + fabs(b);
        if (a != b && !(den > 0 && fabs(a - b) / den <= 1e-12))
          fail_msg("%s @%s, after %s: sink %d element %lld: %.17g before, %.17g after", rel, f->name, pass_name, s,
                   (long long)k, a, b);
      }
    }
    ir_interp_free(before);
    ir_interp_free(after);   /* before g is replaced below */
    /* a fixed point: once more changes nothing */
    char *once = ir_print_to_string(g);
    Func *g2 = pass(g, &opt);
    char *twice = ir_print_to_string(g2);
    if (strcmp(once, twice) != 0) fail_msg("%s @%s: %s is not at a fixed point:\n%s\nthen\n%s", rel, f->name, pass_name, once, twice);
    bp_free(once);
    bp_free(twice);
    for (int i = 0; i < ni; i++) ir_tensor_free(&in[i]);
    for (int i = 0; i < np; i++) ir_tensor_free(&par[i]);
  }
  ir_module_free(m);
}

static const char *const files[] = {
    "tests/passes/golden/simplify_rules.ir",
    "tests/passes/golden/canonicalize_xent.ir",
    "tests/passes/golden/pipeline_xent.ir",
    "tests/passes/golden/autodiff_shapes.ir",
    "tests/passes/golden/seq_xent.ir",
    "tests/passes/golden/fuse_attention.ir",
    "tests/ir/golden/seq.ir",
    "tests/ir/golden/every_op.ir",
    "tests/ir/golden/mlp.ir",
};

static void test_simplify_keeps_values(void **state) {
  (void)state;
  diag_reset();
  for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) check_file(files[i], pass_simplify, "simplify");
}

static void test_canonicalize_keeps_values(void **state) {
  (void)state;
  diag_reset();
  for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) check_file(files[i], pass_canonicalize, "canonicalize");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_simplify_keeps_values),
      cmocka_unit_test(test_canonicalize_keeps_values),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
