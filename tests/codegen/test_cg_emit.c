/* tests/codegen/test_cg_emit.c — what --emit shows: zmm FMA in the assembly of a
 * matmul model on an AVX-512 host (ymm for -march=x86-64-v3), line tables that name
 * the DSL file and line, portable object files, and the errors of bad input. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/codegen/harness.h"
#include "tests/compile.h"

static const char *src = "model m {\n  x: f32[B, 64]\n  h = relu(x @ W)\n  return softmax(h)\n}\n";

/* h = relu(x @ W) at line 3 of model.bp; output softmax(h) at line 4. */
static Func *mlp(Module *m, int file) {
  Func *f = ir_func_new(m, "m");
  SrcLoc l2 = {file, 2, 3, 0}, l3 = {file, 3, 7, 0}, l4 = {file, 4, 10, 0};
  int64_t xd[2] = {DIM_BATCH, 64}, wd[2] = {64, 48};
  int32_t x = ir_input(f, "x", 0, ir_type(m, DT_F32, 2, xd), l2);
  int32_t W = ir_param(f, "W", ir_type(m, DT_F32, 2, wd), INIT_ZEROS, 0, 0, l3);
  int32_t h = ir_unary(f, OP_RELU, ir_binary(f, OP_MATMUL, x, W, l3), l3);
  ir_output(f, "probs", ir_rowop(f, OP_SOFTMAX, h, 1, l4), l4);
  return f;
}

/* The text cg_emit writes for kind, through a temporary file. */
static char *emit_text(CgModel *cm, int kind) {
  static int serial;
  char path[128];
  snprintf(path, sizeof path, "/tmp/bpcc_cg_emit_%ld_%d", (long)getpid(), serial++);
  assert_int_equal(cg_emit(cm, kind, path), 0);
  FILE *fp = fopen(path, "rb");
  assert_non_null(fp);
  fseek(fp, 0, SEEK_END);
  long n = ftell(fp);
  fseek(fp, 0, SEEK_SET);
  char *buf = malloc((size_t)n + 1);
  assert_int_equal(fread(buf, 1, (size_t)n, fp), (size_t)n);
  buf[n] = 0;
  fclose(fp);
  unlink(path);
  return buf;
}

static void test_asm_fma(void **state) {
  (void)state;
  Module *m = ir_module_new();
  Func *f = mlp(m, -1);
  CgOptions o = {"native", 3, 2, false, false};
  CgModel *cm = test_build(f, NULL, NULL, &o);
  assert_non_null(cm);
  char *s = emit_text(cm, CG_EMIT_ASM);
  assert_non_null(strstr(s, "m__forward:"));
  if (cg_model_lanes(cm) == 16) {
    /* AVX-512 host: the micro-kernel's FMAs are on zmm registers */
    assert_non_null(strstr(s, "vfmadd"));
    assert_non_null(strstr(s, "%zmm"));
    const char *p = strstr(s, "vfmadd");
    bool zmm_fma = false;
    for (; p && !zmm_fma; p = strstr(p + 1, "vfmadd")) {
      const char *eol = strchr(p, '\n');
      const char *z = strstr(p, "%zmm");
      if (z && (!eol || z < eol)) zmm_fma = true;
    }
    assert_true(zmm_fma);
  } else {
    printf("host has %d f32 lanes: skipping the zmm check\n", cg_model_lanes(cm));
  }
  free(s);
  cg_model_free(cm);
  /* portable AVX2 code: ymm FMA, no zmm */
  CgOptions v3 = {"x86-64-v3", 3, 2, false, false};
  cm = test_build(f, NULL, NULL, &v3);
  assert_non_null(cm);
  assert_int_equal(cg_model_lanes(cm), 8);
  s = emit_text(cm, CG_EMIT_ASM);
  assert_non_null(strstr(s, "vfmadd"));
  assert_non_null(strstr(s, "%ymm"));
  assert_null(strstr(s, "%zmm"));
  free(s);
  cg_model_free(cm);
  ir_module_free(m);
}

static void test_debug_lines(void **state) {
  (void)state;
  diag_reset();
  int file = diag_add_file("/tmp/proj/model.bp", src, strlen(src));
  Module *m = ir_module_new();
  Func *f = mlp(m, file);
  CgOptions o = {"x86-64-v3", 2, 1, true, false};
  CgModel *cm = test_build(f, NULL, NULL, &o);
  assert_non_null(cm);
  char *ll = emit_text(cm, CG_EMIT_LLVM);
  assert_non_null(strstr(ll, "!DIFile(filename: \"model.bp\", directory: \"/tmp/proj\")"));
  assert_non_null(strstr(ll, "!DILocation(line: 3, column: 7"));
  assert_non_null(strstr(ll, "!DILocation(line: 4, column: 10"));
  free(ll);
  char *as = emit_text(cm, CG_EMIT_ASM);
  assert_non_null(strstr(as, "model.bp"));
  assert_non_null(strstr(as, ".loc\t1 3 7"));
  free(as);
  /* the object file is ELF and the JIT still runs the model */
  char *obj = emit_text(cm, CG_EMIT_OBJ);
  assert_memory_equal(obj, "\177ELF", 4);
  free(obj);
  assert_int_equal(cg_model_jit(cm), 0);
  assert_non_null(cg_model_desc(cm)->forward);
  cg_model_free(cm);
  ir_module_free(m);
  diag_reset();
}

static void test_errors(void **state) {
  (void)state;
  char buf[4096];
  FILE *err = fmemopen(buf, sizeof buf, "w");
  diag_set_output(err);
  Module *m = ir_module_new();
  Func *f = mlp(m, -1);
  CgOptions bad = {"pentium9", 2, 1, false, false};
  assert_null(test_build(f, NULL, NULL, &bad));
  CgModelInput none = {NULL, NULL, NULL, NULL, NULL};
  assert_null(cg_model_build(&none));
  /* f32 and f64 tensors in one model are refused with the instruction named */
  Func *g = ir_func_new(m, "d");
  int64_t dd[1] = {5};
  int32_t x = ir_input(g, "x", 0, ir_type(m, DT_F64, 1, dd), SRCLOC_NONE);
  ir_output(g, "y", ir_unary(g, OP_EXP, x, SRCLOC_NONE), SRCLOC_NONE);
  ir_output(g, "z", ir_input(g, "z", 1, ir_type(m, DT_F32, 1, dd), SRCLOC_NONE), SRCLOC_NONE);
  assert_null(test_build(g, NULL, NULL, NULL));
  /* malformed IR: an operand defined after its use */
  Func *h = ir_func_new(m, "bad");
  int32_t y = ir_input(h, "x", 0, ir_type(m, DT_F32, 1, dd), SRCLOC_NONE);
  ir_output(h, "y", ir_unary(h, OP_EXP, y, SRCLOC_NONE), SRCLOC_NONE);
  h->insts[1].args[0] = 2;
  assert_null(test_build(h, NULL, NULL, NULL));
  fclose(err);
  diag_set_output(NULL);
  assert_non_null(strstr(buf, "unknown -march=pentium9 (use native, x86-64, x86-64-v2, x86-64-v3 or x86-64-v4)"));
  assert_non_null(strstr(buf, "codegen: no forward function"));
  assert_non_null(strstr(buf, "codegen: f32 and f64 tensors in one model (%3 = input in @d is f32, the model is f64)"));
  assert_non_null(strstr(buf, "@bad is not valid IR"));
  ir_module_free(m);
  diag_reset();
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_asm_fma),
      cmocka_unit_test(test_debug_lines),
      cmocka_unit_test(test_errors),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
