/* tests/codegen/test_cg_cast.c — 16-bit values in the elementwise kernels and the
 * kernel plan (codegen/kernels.c, passes/kernel_plan.c; docs/codegen.md, "16-bit
 * values").
 *
 * 1. Casts bit for bit: f32 -> bf16 -> f32 and f32 -> f16 -> f32 of every half and
 *    bf16 value, the ties of both formats at every exponent (f16's subnormal range,
 *    where the rounding bit moves, included), NaN, inf, f32 subnormals, f16 overflow
 *    (65520 and up to inf) and underflow (2^-25 to 0, just above it to the least
 *    subnormal), and random bit patterns, against ir_round_to (the interpreter's
 *    rounding): the same bits, a NaN for a NaN. Fused (one elementwise loop: the second
 *    cast reads the first from registers) and unfused (it loads the 16-bit buffer), as
 *    one flat loop and as rows with a broadcast operand (a tail per row), for
 *    -march=native, x86-64-v3 (8 lanes) and x86-64 (4 lanes, no F16C: half in
 *    integer code). The object code calls no function it does not define (a libcall
 *    such as __truncsfhf2 would be one).
 * 2. The plan: casts chain with the elementwise ops around them; a product's cast to
 *    16 bits is its epilogue's store when the f32 value has no other reader (and keeps
 *    a scratch buffer for C), and when it has others, C its buffer (not for an
 *    activation whose operand C keeps); norm+cast: a layer norm stores its 16-bit
 *    result, layernorm_bwd and layernorm_bwd_gamma load their 16-bit input; the
 *    printed plan shows the casts.
 * 3. Small models with 16-bit product operands (forward, and hand-written training
 *    steps of an MLP and of a layer norm between two products, in bf16 and in f16)
 *    against the interpreter, one and two threads.
 *    Tolerance, normwise per tensor (harness.h): where nothing computed is rounded to
 *    16 bits before it is read, f32 accumulation: 1e-5; where a product's result is
 *    rounded to 16 bits and read again, the f32 sum of the JIT and the interpreter's
 *    exact sum may round to neighbouring 16-bit values: one unit of the format's last
 *    place at the tensor's scale, 2^-8 (bf16) or 2^-11 (f16).
 * 4. What codegen refuses: a 16-bit input (a located error). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "passes/passes.h"
#include "tests/codegen/harness.h"
#include "tests/compile.h"

static Func *parse(const char *text, const char *name) {
  Module *m = ir_parse("cast.ir", text, strlen(text));
  assert_non_null(m);
  Func *f = ir_func_find(m, name);
  assert_non_null(f);
  return f;
}

/* fwd (and grad) through the pipeline with fusion on or off (-fno-fuse) */
static CgModel *build(Func *fwd, Func *grad, const char *march, bool fuse) {
  PipelineOptions po;
  pipeline_options_default(&po);
  po.codegen.march = march;
  po.codegen.opt_level = 2;
  po.codegen.nthreads_hint = 2;
  po.fuse = fuse;
  po.optimizer_set = true;
  po.optimizer.kind = -1;
  po.forward_only = grad == NULL;
  Compilation c;
  pipeline_init_ir(&c, fwd, grad, &po);
  CgModel *m = pipeline_run(&c, STAGE_LLVM) ? pipeline_take_model(&c) : NULL;
  pipeline_release(&c);
  return m;
}

/* ------------------------------------------------------------------ 1. casts bit for bit */

static float f_of(uint32_t u) {
  float x;
  memcpy(&x, &u, 4);
  return x;
}
static uint32_t u_of(float x) {
  uint32_t u;
  memcpy(&u, &x, 4);
  return u;
}
static float f32_of_f16(uint16_t h) {
  _Float16 v;
  memcpy(&v, &h, 2);
  return (float)v;
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint32_t rand32(void) {
  rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
  return (uint32_t)(rng >> 16);
}

/* The test values; *n of them (allocated). */
static float *cast_values(int64_t *n) {
  int64_t cap = 2 * 65536 + 2 * 256 * 64 + 100000 + 64, k = 0;
  float *x = malloc((size_t)cap * sizeof *x);
  static const uint32_t special[] = {
      0x00000000, 0x80000000, 0x3f800000, 0x7f800000, 0xff800000, 0x7fc00000, 0xffc00000, 0x7f800001, /* sNaN */
      0x7fbfffff, 0x00000001, 0x80000001, 0x007fffff, 0x00400000, 0x00008000, 0x00018000, 0x7f7fffff,
      0x7f7f8000, 0x7f7f7fff, 0x477fe000, /* 65504 */ 0x477fefff, 0x477ff000, /* 65520: to inf */ 0x477ff001,
      0xc77ff000, 0x33000000, /* 2^-25: to 0 */ 0x33000001, 0x337fffff, 0x33800000, /* 2^-24 */ 0x33c00000,
      0x38800000, /* 2^-14 */ 0x387fc000, 0x387fe000, 0x387fffff, 0x3f808000, 0x3f818000, 0x3f807fff, 0x3f801000,
      0x3f803000, 0x3f802000, 0x3f800fff};
  for (size_t i = 0; i < sizeof special / sizeof *special; i++) x[k++] = f_of(special[i]);
  for (uint32_t h = 0; h < 65536; h++) {   /* every half and every bf16 value, exactly */
    x[k++] = f32_of_f16((uint16_t)h);
    x[k++] = f_of(h << 16);
  }
  /* per sign and f32 exponent: the bf16 ties (bit 15 set, lower bits clear, bit 16
   * even or odd) and their neighbours, and f16's: its last kept bit is 2^s with
   * s = 13 in the normal range, s = 13 + (113 - e) below 2^-14 */
  for (uint32_t sign = 0; sign < 2; sign++)
    for (uint32_t e = 0; e < 256; e++) {
      uint32_t base = sign << 31 | e << 23, r = rand32() & 0x7f0000;
      uint32_t m[12] = {0x8000, 0x7fff, 0x8001, 0x18000, 0x17fff, 0x18001, r | 0x8000, r | 0x18000, 0, 0x7fffff, 0, 0};
      for (int i = 0; i < 10; i++) x[k++] = f_of(base | (m[i] & 0x7fffff));
      int s = e >= 113 ? 13 : 13 + (113 - (int)e);
      if (s > 24) continue;
      uint32_t half = 1u << (s - 1), unit = 1u << s;
      uint32_t mant = e == 0 ? 0 : 1u << 23;   /* the implicit bit, in the same shifts */
      for (uint32_t q = 0; q < 4; q++) {   /* an even and an odd last kept bit */
        uint32_t kept = ((rand32() & 0x7fffff) & ~(unit - 1)) | (q & 1 ? unit : 0);
        kept &= 0x7fffff;
        uint32_t v[4] = {kept | half, (kept | half) - 1, (kept | half) + 1, kept | (half - 1)};
        for (int i = 0; i < 4; i++) x[k++] = f_of(base | (v[i] & 0x7fffff));
      }
      (void)mant;
    }
  while (k < cap) x[k++] = f_of(rand32());
  *n = k;
  return x;
}

/* got == ir_round_to(dt, x) as f32 bits; a NaN for a NaN. Returns the mismatches
 * (the first few printed). */
static int64_t check_bits(const char *what, DType dt, const float *x, const float *got, int64_t n) {
  int64_t bad = 0;
  for (int64_t i = 0; i < n; i++) {
    float want = (float)ir_round_to(dt, (double)x[i]);
    bool ok = isnan(want) ? isnan(got[i]) : u_of(want) == u_of(got[i]);
    if (!ok && bad++ < 5)
      printf("  %s %s: x = %08x (%.9g): got %08x, want %08x\n", what, ir_dtype_name(dt), (unsigned)u_of(x[i]),
             (double)x[i], (unsigned)u_of(got[i]), (unsigned)u_of(want));
  }
  return bad;
}

/* Every call the object code makes goes to a function it defines: no libcall. */
static void assert_no_external_calls(CgModel *m) {
  char path[] = "/tmp/bpcc_cast_XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  close(fd);
  assert_int_equal(cg_emit(m, CG_EMIT_ASM, path), 0);
  FILE *fp = fopen(path, "r");
  assert_non_null(fp);
  fseek(fp, 0, SEEK_END);
  long len = ftell(fp);
  fseek(fp, 0, SEEK_SET);
  char *text = malloc((size_t)len + 2);
  text[0] = '\n';
  assert_int_equal(fread(text + 1, 1, (size_t)len, fp), (size_t)len);
  text[len + 1] = 0;
  fclose(fp);
  unlink(path);
  int calls = 0;
  for (char *p = strstr(text, "\tcall"); p; p = strstr(p + 1, "\tcall")) {
    char *q = p + 5;
    while (*q && *q != '\t' && *q != ' ') q++;   /* callq */
    while (*q == '\t' || *q == ' ') q++;
    if (*q == '*') continue;   /* through a register: parallel_for */
    char name[128];
    size_t l = 0;
    while (q[l] && q[l] != '\n' && q[l] != '@' && l + 1 < sizeof name) name[l] = q[l], l++;
    name[l] = 0;
    char def[160];
    snprintf(def, sizeof def, "\n%s:", name);
    if (!strstr(text, def)) fail_msg("the object code calls %s, which it does not define", name);
    calls++;
  }
  assert_null(strstr(text, "__trunc"));
  assert_null(strstr(text, "__extend"));
  free(text);
}

static const char *cast_flat =
    "func @flat {\n"
    "  %0 = input \"x\" : f32[B]\n"
    "  %1 = cast %0 : bf16[B]\n"
    "  %2 = cast %1 : f32[B]\n"
    "  %3 = cast %0 : f16[B]\n"
    "  %4 = cast %3 : f32[B]\n"
    "  output \"b\" %2\n"
    "  output \"h\" %4\n"
    "}\n";

/* rows of 37 with a broadcast operand (s = 1: x * s is x): the nest with the last dim
 * vectorized and a tail on every row */
static const char *cast_rows =
    "func @rows {\n"
    "  %0 = input \"x\" : f32[B,37]\n"
    "  %1 = param \"s\" ones : f32[37]\n"
    "  %2 = mul %0, %1 : f32[B,37]\n"
    "  %3 = cast %2 : bf16[B,37]\n"
    "  %4 = cast %3 : f32[B,37]\n"
    "  %5 = cast %2 : f16[B,37]\n"
    "  %6 = cast %5 : f32[B,37]\n"
    "  output \"b\" %4\n"
    "  output \"h\" %6\n"
    "}\n";

static void run_casts(const char *text, const char *name, int64_t cols, const char *march, bool fuse) {
  Func *f = parse(text, name);
  CgModel *m = build(f, NULL, march, fuse);
  assert_non_null(m);
  assert_no_external_calls(m);
  assert_int_equal(cg_model_jit(m), 0);
  int64_t n;
  float *x = cast_values(&n);
  int64_t batch = n / cols;   /* the flat loop: n % 16 == 13, a tail of 13 */
  if (cols == 1) batch -= (batch - 13) % 16;
  n = batch * cols;
  bprt_model_desc *d = cg_model_desc(m);
  CgtFrame t;
  cgt_frame_init(&t, d, batch, 1);
  memcpy(t.inputs[0], x, (size_t)n * sizeof *x);
  for (int64_t i = 0; i < d->param_floats; i++) t.params[i] = 1.0f;
  d->forward(&t.fr);
  char what[96];
  snprintf(what, sizeof what, "%s %s %s", name, march, fuse ? "fused" : "unfused");
  assert_int_equal(check_bits(what, DT_BF16, x, t.outputs[0], n), 0);
  assert_int_equal(check_bits(what, DT_F16, x, t.outputs[1], n), 0);
  cgt_frame_free(&t);
  free(x);
  cg_model_free(m);
  ir_module_free(f->mod);
}

static void test_cast_bits(void **state) {
  (void)state;
  static const char *marches[] = {"native", "x86-64-v3", "x86-64"};
  for (int a = 0; a < 3; a++)
    for (int fuse = 0; fuse < 2; fuse++) {
      run_casts(cast_flat, "flat", 1, marches[a], fuse);
      run_casts(cast_rows, "rows", 37, marches[a], fuse);
    }
}

/* ------------------------------------------------------------------ 2. the plan */

/* The fused groups of f's training plan, one a line ("op+op"), and every kernel's
 * kind counted. */
static KernelPlan *plan(Arena *a, Func *f, char *desc, size_t n) {
  KernelPlanOptions ko = {true};
  KernelPlan *s = pass_kernel_plan(a, f, PLAN_TRAINING, &ko);
  assert_non_null(s);
  assert_true(kernel_plan_verify(s, "test"));
  size_t k = 0;
  desc[0] = 0;
  for (int g = 0; g < s->ngroups; g++) {
    int32_t b = s->group_start[g], e = s->group_start[g + 1];
    if (e - b < 2) continue;
    for (int32_t q = b; q < e && k + 32 < n; q++)
      k += (size_t)snprintf(desc + k, n - k, "%s%s", q == b ? "" : "+", ir_ops[f->insts[s->order[q]].op].name);
    if (k + 2 < n) k += (size_t)snprintf(desc + k, n - k, "\n");
  }
  return s;
}

/* x and W to bf16 for a product with bias and relu: the relu's 16-bit copy is the
 * epilogue's store (its f32 value internal: C holds the pre-activation, which the
 * output also reads); then a product whose f32 result has a second reader (its cast
 * is an ew kernel), a plain product cast to f16 (C a scratch buffer), and an ew chain
 * that casts back to f32 and to bf16 (neither f32 side stored). */
static const char *plan_ir =
    "func @p {\n"
    "  %0 = input \"x\" : f32[B,33]\n"
    "  %1 = param \"W\" zeros : f32[33,17]\n"
    "  %2 = param \"b\" zeros : f32[17]\n"
    "  %3 = param \"V\" zeros : f32[17,7]\n"
    "  %4 = param \"U\" zeros : f32[7,5]\n"
    "  %5 = cast %0 : bf16[B,33]\n"
    "  %6 = cast %1 : bf16[33,17]\n"
    "  %7 = matmul %5, %6 : f32[B,17]\n"
    "  %8 = add %7, %2 : f32[B,17]\n"
    "  %9 = relu %8 : f32[B,17]\n"
    "  %10 = cast %9 : bf16[B,17]\n"
    "  %11 = cast %3 : bf16[17,7]\n"
    "  %12 = matmul %10, %11 : f32[B,7]\n"
    "  %13 = cast %12 : f16[B,7]\n"
    "  %14 = cast %4 : f16[7,5]\n"
    "  %15 = matmul %13, %14 : f32[B,5]\n"
    "  %16 = cast %15 : f16[B,5]\n"
    "  %17 = cast %16 : f32[B,5]\n"
    "  %18 = exp %17 : f32[B,5]\n"
    "  %19 = mul %18, %18 : f32[B,5]\n"
    "  %20 = cast %19 : bf16[B,5]\n"
    "  %21 = param \"T\" zeros : f32[5,3]\n"
    "  %22 = cast %21 : bf16[5,3]\n"
    "  %23 = matmul %20, %22 : f32[B,3]\n"
    "  output \"pre\" %8\n"
    "  output \"z\" %12\n"
    "  output \"y\" %18\n"
    "  output \"w\" %23\n"
    "}\n";

static void test_plan(void **state) {
  (void)state;
  Func *f = parse(plan_ir, "p");
  Arena *a = arena_new();
  char desc[1024];
  KernelPlan *s = plan(a, f, desc, sizeof desc);
  /* %12 has two readers (its cast and the output): the cast stays out of the product */
  assert_string_equal(desc, "matmul+add+relu+cast\nmatmul+cast\ncast+exp+mul+cast\n");
  assert_false(s->internal[8]);    /* the pre-activation: read by the output */
  assert_true(s->internal[9]);     /* relu's f32 value: only its 16-bit copy is stored */
  assert_false(s->internal[15]);   /* C of a plain product cast to f16: a scratch slot */
  assert_false(s->internal[10]);
  assert_false(s->internal[16]);
  assert_true(s->internal[17]);    /* f32 of a 16-bit value, read by the exp alone */
  assert_false(s->internal[18]);   /* an output */
  assert_true(s->internal[19]);    /* read by its cast to bf16 alone */
  assert_false(s->internal[20]);
  /* the printed plan (what --emit=opt-ir shows) has the casts in their kernels */
  char *buf = NULL;
  size_t len = 0;
  FILE *mf = open_memstream(&buf, &len);
  kernel_plan_print(mf, s);
  fclose(mf);
  if (getenv("CGT_VERBOSE")) printf("%s", buf);
  assert_non_null(strstr(buf, "  # kernel 2: matmul+add+relu+cast  (gemm+epilogue)\n"
                              "  %7 = matmul %5, %6 : f32[B,17]  (internal)\n"
                              "  %8 = add %7, %2 : f32[B,17]\n"
                              "  %9 = relu %8 : f32[B,17]  (internal)\n"
                              "  %10 = cast %9 : bf16[B,17]\n"));
  assert_non_null(strstr(buf, "  # kernel 7: matmul+cast  (gemm+epilogue)\n"
                              "  %15 = matmul %13, %14 : f32[B,5]\n"
                              "  %16 = cast %15 : f16[B,5]\n"
                              "  # kernel 8: cast+exp+mul+cast\n"
                              "  %17 = cast %16 : f32[B,5]  (internal)\n"
                              "  %18 = exp %17 : f32[B,5]\n"
                              "  %19 = mul %18, %18 : f32[B,5]  (internal)\n"
                              "  %20 = cast %19 : bf16[B,5]\n"
                              "  output \"y\" %18\n"));
  free(buf);
  arena_free(a);
  ir_module_free(f->mod);
}

/* ------------------------------------------------------------------ 3. models */

/* text with every "LOW" replaced by low and every "ACT" by act */
static char *with_act(const char *text, const char *low, const char *act) {
  size_t n = strlen(text) + 64 * (strlen(low) + strlen(act)) + 1, k = 0;
  char *out = malloc(n);
  for (const char *p = text; *p;) {
    if (strncmp(p, "LOW", 3) == 0) {
      k += (size_t)snprintf(out + k, n - k, "%s", low);
      p += 3;
    } else if (strncmp(p, "ACT", 3) == 0) {
      k += (size_t)snprintf(out + k, n - k, "%s", act);
      p += 3;
    } else {
      out[k++] = *p++;
    }
  }
  out[k] = 0;
  return out;
}
static char *with_low(const char *text, const char *low) { return with_act(text, low, "relu"); }

/* forward: single products of rank 3 (matmul, matmul_nt: M = B 6), a batched product,
 * each with the 16-bit store of its epilogue or an ew cast, bias and activations */
static const char *fwd_ir =
    "func @f {\n"
    "  %0 = input \"x\" : f32[B,6,12]\n"
    "  %1 = input \"k\" : f32[B,9,5]\n"
    "  %2 = param \"W\" zeros : f32[12,9]\n"
    "  %3 = param \"b\" zeros : f32[9]\n"
    "  %4 = param \"V\" zeros : f32[9,12]\n"
    "  %5 = cast %0 : LOW[B,6,12]\n"
    "  %6 = cast %2 : LOW[12,9]\n"
    "  %7 = matmul %5, %6 : f32[B,6,9]\n"
    "  %8 = add %7, %3 : f32[B,6,9]\n"
    "  %9 = tanh %8 : f32[B,6,9]\n"
    "  %10 = cast %9 : LOW[B,6,9]\n"
    "  %11 = cast %4 : LOW[9,12]\n"
    "  %12 = matmul_nt %10, %6 : f32[B,6,12]\n"
    "  %13 = cast %1 : LOW[B,9,5]\n"
    "  %14 = matmul %10, %13 : f32[B,6,5]\n"
    "  %15 = cast %14 : LOW[B,6,5]\n"
    "  %16 = cast %15 : f32[B,6,5]\n"
    "  %17 = matmul %10, %11 : f32[B,6,12]\n"
    "  %18 = sigmoid %17 : f32[B,6,12]\n"
    "  output \"nt\" %12\n"
    "  output \"bat\" %16\n"
    "  output \"s\" %18\n"
    "}\n";

/* A training step of an MLP as passes/precision.c makes it: products of 16-bit
 * operands forward and backward, the hidden activation kept in 16 bits (the epilogue's
 * store; C keeps the pre-activation relu_grad reads), the logits' gradient cast once
 * for both backward products. With BIAS empty the relu is on the product itself and
 * relu_grad's result has the cast as its only reader (the mask's epilogue stores it). */
static const char *mlp_ir =
    "func @mlp {\n"
    "  %0 = input \"x\" : f32[B,33]\n"
    "  %1 = input \"y\" : label[B,10]\n"
    "  %2 = param \"h.W\" he_normal : f32[33,32]\n"
    "  %3 = param \"h.b\" zeros : f32[32]\n"
    "  %4 = param \"out.W\" xavier_normal : f32[32,10]\n"
    "  %5 = param \"out.b\" zeros : f32[10]\n"
    "  %6 = cast %0 : LOW[B,33]\n"
    "  %7 = cast %2 : LOW[33,32]\n"
    "  %8 = matmul %6, %7 : f32[B,32]\n"
    "  %9 = add %8, %3 : f32[B,32]\n"
    "  %10 = relu %PRE : f32[B,32]\n"
    "  %11 = cast %10 : LOW[B,32]\n"
    "  %12 = cast %4 : LOW[32,10]\n"
    "  %13 = matmul %11, %12 : f32[B,10]\n"
    "  %14 = add %13, %5 : f32[B,10]\n"
    "  %15 = softmax_xent %14, %1 : f32[B]\n"
    "  %16 = mean %15 axis=all : f32[]\n"
    "  loss %16\n"
    "  %18 = size %0 axis=0 : f32[]\n"
    "  %19 = const value=1 : f32[]\n"
    "  %20 = div %19, %18 : f32[]\n"
    "  %21 = softmax %14 axis=1 : f32[B,10]\n"
    "  %22 = onehot %1 : f32[B,10]\n"
    "  %23 = sub %21, %22 : f32[B,10]\n"
    "  %24 = mul %23, %20 : f32[B,10]\n"
    "  %25 = sum_to %24 : f32[10]\n"
    "  %26 = cast %24 : LOW[B,10]\n"
    "  %27 = matmul_tn %11, %26 : f32[32,10]\n"
    "  %28 = matmul_nt %26, %12 : f32[B,32]\n"
    "  %29 = relu_grad %PRE, %28 : f32[B,32]\n"
    "  %30 = sum_to %29 : f32[32]\n"
    "  %31 = cast %29 : LOW[B,32]\n"
    "  %32 = matmul_tn %6, %31 : f32[33,32]\n"
    "  grad %2, %32\n"
    "BGRAD"
    "  grad %4, %27\n"
    "  grad %5, %25\n"
    "}\n";

/* mlp_ir with its hidden bias (PRE = 9: the add, h.b's gradient %30) or without (PRE =
 * 8: the product; h.b unused, its gradient zeros, relu_grad read by the cast alone) */
static char *mlp_text(const char *low, bool bias) {
  char *t = with_low(mlp_ir, low);
  char *out = malloc(strlen(t) + 64);
  size_t k = 0;
  for (const char *p = t; *p;) {
    if (strncmp(p, "%PRE", 4) == 0) k += (size_t)sprintf(out + k, "%%%d", bias ? 9 : 8), p += 4;
    else if (strncmp(p, "BGRAD", 5) == 0) k += (size_t)sprintf(out + k, "%s", bias ? "  grad %3, %30\n" : ""), p += 5;
    else out[k++] = *p++;
  }
  out[k] = 0;
  free(t);
  return out;
}

/* As passes/precision.c keeps a pre-activation that relu_grad reads: cast to 16 bits
 * in forward, back to f32 in backward right before the mask, which then takes it in
 * its product's epilogue (the 16-bit aux), and the mask's result cast for the last
 * product (the epilogue's 16-bit store; C a scratch slot). */
static const char *kept_ir =
    "func @kept {\n"
    "  %0 = input \"x\" : f32[B,12]\n"
    "  %1 = input \"y\" : label[B,6]\n"
    "  %2 = param \"W\" he_normal : f32[12,16]\n"
    "  %3 = param \"V\" xavier_normal : f32[16,6]\n"
    "  %4 = cast %0 : LOW[B,12]\n"
    "  %5 = cast %2 : LOW[12,16]\n"
    "  %6 = matmul %4, %5 : f32[B,16]\n"
    "  %7 = cast %6 : LOW[B,16]\n"
    "  %8 = ACT %6 : f32[B,16]\n"
    "  %9 = cast %8 : LOW[B,16]\n"
    "  %10 = cast %3 : LOW[16,6]\n"
    "  %11 = matmul %9, %10 : f32[B,6]\n"
    "  %12 = softmax_xent %11, %1 : f32[B]\n"
    "  %13 = mean %12 axis=all : f32[]\n"
    "  loss %13\n"
    "  %15 = size %0 axis=0 : f32[]\n"
    "  %16 = const value=1 : f32[]\n"
    "  %17 = div %16, %15 : f32[]\n"
    "  %18 = softmax %11 axis=1 : f32[B,6]\n"
    "  %19 = onehot %1 : f32[B,6]\n"
    "  %20 = sub %18, %19 : f32[B,6]\n"
    "  %21 = mul %20, %17 : f32[B,6]\n"
    "  %22 = cast %21 : LOW[B,6]\n"
    "  %23 = matmul_tn %9, %22 : f32[16,6]\n"
    "  %24 = matmul_nt %22, %10 : f32[B,16]\n"
    "  %25 = cast %7 : f32[B,16]\n"
    "  %26 = ACT_grad %25, %24 : f32[B,16]\n"
    "  %27 = cast %26 : LOW[B,16]\n"
    "  %28 = matmul_tn %4, %27 : f32[12,16]\n"
    "  grad %2, %28\n"
    "  grad %3, %23\n"
    "}\n";

/* A layer norm between two products, as passes/precision.c makes it: its input kept in
 * 16 bits for backward and cast back to f32 before each of layernorm_bwd and
 * layernorm_bwd_gamma (norm+cast: both kernels widen the 16-bit copy as they load it),
 * its result cast for the next product (norm+cast: stored rounded). */
static const char *ln_ir =
    "func @ln {\n"
    "  %0 = input \"x\" : f32[B,12]\n"
    "  %1 = input \"y\" : label[B,6]\n"
    "  %2 = param \"W0\" he_normal : f32[12,16]\n"
    "  %3 = param \"g\" ones : f32[16]\n"
    "  %4 = param \"b\" zeros : f32[16]\n"
    "  %5 = param \"W\" xavier_normal : f32[16,6]\n"
    "  %6 = cast %0 : LOW[B,12]\n"
    "  %7 = cast %2 : LOW[12,16]\n"
    "  %8 = matmul %6, %7 : f32[B,16]\n"
    "  %9 = cast %8 : LOW[B,16]\n"
    "  %10 = layernorm %8, %3, %4 dims=1 eps=1e-05 : f32[B,16]\n"
    "  %11 = cast %10 : LOW[B,16]\n"
    "  %12 = cast %5 : LOW[16,6]\n"
    "  %13 = matmul %11, %12 : f32[B,6]\n"
    "  %14 = softmax_xent %13, %1 : f32[B]\n"
    "  %15 = mean %14 axis=all : f32[]\n"
    "  loss %15\n"
    "  %17 = size %0 axis=0 : f32[]\n"
    "  %18 = const value=1 : f32[]\n"
    "  %19 = div %18, %17 : f32[]\n"
    "  %20 = softmax %13 axis=1 : f32[B,6]\n"
    "  %21 = onehot %1 : f32[B,6]\n"
    "  %22 = sub %20, %21 : f32[B,6]\n"
    "  %23 = mul %22, %19 : f32[B,6]\n"
    "  %24 = cast %23 : LOW[B,6]\n"
    "  %25 = matmul_tn %11, %24 : f32[16,6]\n"
    "  %26 = matmul_nt %24, %12 : f32[B,16]\n"
    "  %27 = cast %9 : f32[B,16]\n"
    "  %28 = layernorm_bwd %27, %3, %26 dims=1 eps=1e-05 : f32[B,16]\n"
    "  %29 = cast %9 : f32[B,16]\n"
    "  %30 = layernorm_bwd_gamma %29, %26 dims=1 eps=1e-05 : f32[16]\n"
    "  %31 = sum_to %26 : f32[16]\n"
    "  %32 = cast %28 : LOW[B,16]\n"
    "  %33 = matmul_tn %6, %32 : f32[12,16]\n"
    "  grad %2, %33\n"
    "  grad %3, %30\n"
    "  grad %4, %31\n"
    "  grad %5, %25\n"
    "}\n";

static void test_models(void **state) {
  (void)state;
  static const char *lows[2] = {"bf16", "f16"};
  /* one unit in the last place of the format, at the tensor's scale (header) */
  static const double ulp[2] = {0x1p-8, 0x1p-11};
  for (int l = 0; l < 2; l++)
    for (int threads = 1; threads <= 2; threads++) {
      CgtConfig cfg = {-1, 1, threads, NULL, true, false};
      char *text = with_low(fwd_ir, lows[l]);
      Func *f = parse(text, "f");
      int64_t batches[2] = {1, 23};
      for (int b = 0; b < 2; b++) assert_int_equal(cgt_check_forward(f, batches[b], ulp[l], &cfg), 0);
      ir_module_free(f->mod);
      free(text);
      if (l == 0) {   /* plan_ir: bf16 and f16 in one model, ew chains with internal casts */
        f = parse(plan_ir, "p");
        for (int b = 0; b < 2; b++) assert_int_equal(cgt_check_forward(f, batches[b], ulp[0], &cfg), 0);
        ir_module_free(f->mod);
      }
      for (int act = 0; act < 2; act++) {   /* relu_grad reads the aux's sign, gelu_grad its value */
        text = with_act(kept_ir, lows[l], act ? "gelu" : "relu");
        Func *k = parse(text, "kept");
        for (int b = 0; b < 2; b++) assert_int_equal(cgt_check_grad(k, k, batches[b] + 10, ulp[l], &cfg), 0);
        ir_module_free(k->mod);
        free(text);
      }
      text = with_low(ln_ir, lows[l]);   /* norm+cast */
      f = parse(text, "ln");
      for (int b = 0; b < 2; b++) assert_int_equal(cgt_check_grad(f, f, batches[b] + 4, ulp[l], &cfg), 0);
      ir_module_free(f->mod);
      free(text);
      for (int bias = 0; bias < 2; bias++) {
        text = mlp_text(lows[l], bias);
        Func *g = parse(text, "mlp");
        for (int b = 0; b < 2; b++) assert_int_equal(cgt_check_grad(g, g, batches[b] + 6, ulp[l], &cfg), 0);
        ir_module_free(g->mod);
        free(text);
      }
    }
}

/* The plans of the training steps: the 16-bit stores and the 16-bit aux in the
 * epilogues */
static void test_plan_mlp(void **state) {
  (void)state;
  for (int bias = 0; bias < 2; bias++) {
    char *text = mlp_text("bf16", bias);
    Func *f = parse(text, "mlp");
    Arena *a = arena_new();
    char desc[1024];
    KernelPlan *s = plan(a, f, desc, sizeof desc);
    if (bias) {
      /* relu_grad's dx is read by the bias gradient's sum_to and by the cast: C is its
       * f32 buffer, the epilogue stores the 16-bit copy beside it */
      assert_string_equal(desc, "matmul+add+relu+cast\nmatmul+add\nsoftmax_xent+softmax+onehot+sub+mul\n"
                                "matmul_nt+relu_grad+cast\n");
      assert_true(s->internal[10]);   /* relu: its bf16 copy alone; C holds %9 for relu_grad */
      assert_false(s->internal[29]);  /* dx: the sum_to reads it */
      assert_true(s->internal[28]);   /* the bare product: C holds dx */
    } else {
      assert_string_equal(desc, "matmul+relu+cast\nmatmul+add\nsoftmax_xent+softmax+onehot+sub+mul\n"
                                "matmul_nt+relu_grad+cast\n");
      assert_false(s->internal[29]);  /* C of the mask's product: a scratch slot */
    }
    arena_free(a);
    ir_module_free(f->mod);
    free(text);
  }
  /* norm+cast: the layer norm stores its bf16 result, its two backward kernels load the
   * bf16 input; the first product stores the kept copy beside the f32 C */
  char *text = with_low(ln_ir, "bf16");
  Func *f = parse(text, "ln");
  Arena *la = arena_new();
  char ldesc[1024];
  KernelPlan *ls = plan(la, f, ldesc, sizeof ldesc);
  assert_string_equal(ldesc, "matmul+cast\nlayernorm+cast\nsoftmax_xent+softmax+onehot+sub+mul\n"
                             "cast+layernorm_bwd\ncast+layernorm_bwd_gamma\n");
  assert_true(ls->internal[10] && ls->internal[27] && ls->internal[29]);
  assert_false(ls->internal[8] || ls->internal[9] || ls->internal[11]);
  arena_free(la);
  ir_module_free(f->mod);
  free(text);
  text = with_act(kept_ir, "f16", "gelu");
  f = parse(text, "kept");
  Arena *a = arena_new();
  char desc[1024];
  KernelPlan *s = plan(a, f, desc, sizeof desc);
  /* the product's epilogue stores the pre-activation's f16 copy (kept for gelu_grad)
   * and the f16 gelu; C holds the f32 pre-activation in a scratch slot */
  assert_string_equal(desc, "matmul+cast+gelu+cast\nsoftmax_xent+softmax+onehot+sub+mul\nmatmul_nt+cast+gelu_grad+cast\n");
  assert_false(s->internal[6]);    /* C: the pre-activation, a scratch slot */
  assert_true(s->internal[8]);     /* the f32 gelu: its f16 copy alone */
  assert_true(s->internal[25]);    /* the f32 copy of the kept pre-activation: never stored */
  assert_false(s->internal[26]);   /* C of the mask's product, cast to f16 for the last one */
  arena_free(a);
  ir_module_free(f->mod);
  free(text);
}

/* ------------------------------------------------------------------ 4. refused */

static void test_refused(void **state) {
  (void)state;
  Func *f = parse("func @r {\n"
                  "  %0 = input \"x\" : bf16[B,4]   # r.bp:2:9\n"
                  "  %1 = cast %0 : f32[B,4]\n"
                  "  output \"y\" %1\n"
                  "}\n",
                  "r");
  int errors = diag_error_count();
  char *buf = NULL;
  size_t len = 0;
  FILE *mf = open_memstream(&buf, &len);
  diag_set_output(mf);
  assert_null(build(f, NULL, "native", true));
  diag_set_output(NULL);
  fclose(mf);
  assert_int_equal(diag_error_count(), errors + 1);
  static const char want[] = "r.bp:2:9: error: codegen: input 'x' is bf16: inputs are f32 (or labels); a cast makes "
                             "16-bit values\n";
  assert_int_equal(strncmp(buf, want, strlen(want)), 0);   /* then the source line (none here) and a caret */
  free(buf);
  ir_module_free(f->mod);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_cast_bits),
      cmocka_unit_test(test_plan),
      cmocka_unit_test(test_plan_mlp),
      cmocka_unit_test(test_models),
      cmocka_unit_test(test_refused),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
