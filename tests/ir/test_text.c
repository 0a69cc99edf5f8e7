/* tests/ir/test_text.c — the text form: the printer's exact output, the round trip
 * print(parse(print(f))) == print(f) over every *.ir file under tests/ (globbed at run
 * time, so golden files added later are covered; a file meant to be rejected is named
 *.bad.ir and skipped), locations and rules surviving the trip, doubles surviving bit
 * for bit, and the parser's diagnostics on malformed text. */
#include "helpers.h"

#include <dirent.h>
#include <math.h>
#include <sys/stat.h>

static char *print_module_str(Module *m) {
  char *s = NULL;
  size_t n = 0;
  FILE *fp = open_memstream(&s, &n);
  ir_print_module(fp, m);
  fclose(fp);
  return s;
}

/* ------------------------------------------------------------ the printer */

static void test_printer_golden(void **state) {
  (void)state;
  diag_reset();
  Module *m = ir_module_new();
  int file = diag_add_file("small.bp", "", 0);
  Func *f = ir_func_new(m, "small");
  int32_t x = ir_input(f, "x", 0, ty(m, DT_F32, 2, DIM_BATCH, 3, 0), (SrcLoc){file, 1, 10, 0});
  int32_t y = ir_input(f, "y", 1, ty(m, DT_LABEL, 2, DIM_BATCH, 2, 0), (SrcLoc){file, 1, 22, 0});
  int32_t w = ir_param(f, "lin.W", ty(m, DT_F32, 2, 3, 2, 0), INIT_UNIFORM, -0.1, 0.1, (SrcLoc){file, 2, 7, 0});
  int32_t z = ir_binary(f, OP_MATMUL, x, w, (SrcLoc){file, 3, 9, 0});
  int32_t p = ir_rowop(f, OP_SOFTMAX, z, 1, (SrcLoc){file, 4, 9, 0});
  ir_output(f, "probs", p, (SrcLoc){file, 4, 3, 0});
  int32_t ce = ir_binary(f, OP_SOFTMAX_XENT, z, y, (SrcLoc){file, 5, 10, 0});
  int32_t l = ir_reduce(f, OP_MEAN, ce, IR_AXIS_ALL, false, (SrcLoc){file, 5, 5, 0});
  ir_loss(f, l, (SrcLoc){file, 5, 5, 0});
  int32_t s = ir_reduce(f, OP_SUM, z, 1, true, SRCLOC_NONE);
  int32_t h = ir_pow(f, s, 0.5, (SrcLoc){file, 6, 1, 0});
  int32_t g = ir_binary(f, OP_MATMUL_TN, x, z, (SrcLoc){file, 3, 9, 0});
  f->insts[g].flags = IF_BACKWARD;
  f->insts[g].rule = "matmul.db";
  f->insts[g].from = z;
  ir_grad(f, w, g, (SrcLoc){file, 2, 7, 0});
  (void)h;
  char *text = ir_print_to_string(f);
  assert_string_equal(text,
                      "func @small {\n"
                      "  %0 = input \"x\" : f32[B,3]                         # small.bp:1:10\n"
                      "  %1 = input \"y\" : label[B,2]                       # small.bp:1:22\n"
                      "  %2 = param \"lin.W\" uniform(-0.1, 0.1) : f32[3,2]  # small.bp:2:7\n"
                      "  %3 = matmul %0, %2 : f32[B,2]                     # small.bp:3:9\n"
                      "  %4 = softmax %3 axis=1 : f32[B,2]                 # small.bp:4:9\n"
                      "  output \"probs\" %4                                 # small.bp:4:3\n"
                      "  %6 = softmax_xent %3, %1 : f32[B]                 # small.bp:5:10\n"
                      "  %7 = mean %6 axis=all : f32[]                     # small.bp:5:5\n"
                      "  loss %7                                           # small.bp:5:5\n"
                      "  %9 = sum %3 axis=1 keep=1 : f32[B,1]\n"
                      "  %10 = pow %9 exponent=0.5 : f32[B,1]              # small.bp:6:1\n"
                      "  %11 = matmul_tn %0, %3 : f32[3,2]                 # small.bp:3:9  [matmul.db from %3]\n"
                      "  grad %2, %11                                      # small.bp:2:7\n"
                      "}\n");
  /* ir_print_func writes the same text */
  char *s2 = NULL;
  size_t n2 = 0;
  FILE *fp = open_memstream(&s2, &n2);
  ir_print_func(fp, f);
  fclose(fp);
  assert_string_equal(s2, text);
  free(s2);
  bp_free(text);
  ir_module_free(m);
  diag_reset();
}

/* ------------------------------------------------------------ the round trip */

static bool ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), k = strlen(suffix);
  return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* Print-parse-print: the second print equals the first. Returns the first print. */
static char *round_trip(const char *path, const char *text, size_t len) {
  Module *m = ir_parse(path, text, len);
  if (!m) fail_msg("%s does not parse", path);
  for (int i = 0; i < m->nfuncs; i++)
    if (!ir_verify(m->funcs[i], "parse")) fail_msg("%s: @%s does not verify", path, m->funcs[i]->name);
  char *p1 = print_module_str(m);
  Module *m2 = ir_parse("<printed>", p1, strlen(p1));
  if (!m2) fail_msg("the printed form of %s does not parse:\n%s", path, p1);
  char *p2 = print_module_str(m2);
  if (strcmp(p1, p2) != 0) fail_msg("%s: print(parse(print(f))) != print(f):\n--- first\n%s--- second\n%s", path, p1, p2);
  free(p2);
  ir_module_free(m2);
  ir_module_free(m);
  return p1;
}

/* The file without its full-line comments and the blank lines before the first func. */
static char *strip_comment_lines(const char *text) {
  char *out = bp_xmalloc(strlen(text) + 1);
  size_t n = 0;
  bool started = false;
  for (const char *p = text; *p;) {
    const char *e = strchr(p, '\n');
    size_t len = e ? (size_t)(e - p + 1) : strlen(p);
    bool comment = p[0] == '#', blank = p[0] == '\n';
    if (!comment && !(blank && !started)) {
      memcpy(out + n, p, len);
      n += len;
      started = true;
    }
    p += len;
  }
  out[n] = 0;
  return out;
}

static int nfiles_checked;

static void walk(const char *dir, const char *golden_dir) {
  DIR *d = opendir(dir);
  if (!d) return;
  struct dirent *e;
  while ((e = readdir(d))) {
    if (e->d_name[0] == '.') continue;
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    struct stat st;
    if (stat(path, &st) != 0) continue;
    if (S_ISDIR(st.st_mode)) {
      walk(path, golden_dir);
      continue;
    }
    if (!ends_with(path, ".ir") || ends_with(path, ".bad.ir")) continue;
    size_t len = 0;
    char *text = read_file(path, &len);
    assert_non_null(text);
    char *p1 = round_trip(path, text, len);
    /* our own golden files are also already in printed form */
    if (strncmp(path, golden_dir, strlen(golden_dir)) == 0) {
      char *want = strip_comment_lines(text);
      if (strcmp(want, p1) != 0) fail_msg("%s is not in printed form; printed:\n%s", path, p1);
      bp_free(want);
    }
    free(p1);
    bp_free(text);
    nfiles_checked++;
  }
  closedir(d);
}

static void test_round_trip_every_ir_file(void **state) {
  (void)state;
  const char *root = getenv("BPCC_SOURCE_DIR");
  assert_non_null(root);
  char tests[4096], golden[4096];
  snprintf(tests, sizeof tests, "%s/tests", root);
  snprintf(golden, sizeof golden, "%s/tests/ir/golden/", root);
  diag_reset();
  nfiles_checked = 0;
  walk(tests, golden);
  assert_true(nfiles_checked >= 3);   /* at least our own golden files */
  diag_reset();
}

/* The roundings of the mixed-precision storage types (ir_round_to): to nearest, ties
 * to even, IEEE overflow and underflow. */
static void test_round_to(void **state) {
  (void)state;
  /* bf16 keeps 8 significant bits: 1 + 2^-8 is a tie between 1 and 1 + 2^-7 */
  assert_true(ir_round_to(DT_BF16, 1.0 + 0x1p-8) == 1.0);
  assert_true(ir_round_to(DT_BF16, 1.0 + 3 * 0x1p-8) == 1.0 + 0x1p-6);
  assert_true(ir_round_to(DT_BF16, 1.0 + 0x1p-8 + 0x1p-12) == 1.0 + 0x1p-7);
  assert_true(ir_round_to(DT_BF16, 0x1.fep127) == 0x1.fep127);   /* the largest bf16 */
  assert_true(isinf(ir_round_to(DT_BF16, 3.4e38)));   /* above the largest bf16, 0x1.fep127 */
  assert_true(ir_round_to(DT_BF16, 1e-30) > 0);       /* f32's exponent range */
  assert_true(isnan(ir_round_to(DT_BF16, NAN)));
  /* f16: 11 significant bits, largest 65504, smallest subnormal 2^-24 */
  assert_true(ir_round_to(DT_F16, 1.0 + 0x1p-11) == 1.0);
  assert_true(ir_round_to(DT_F16, 65504.0) == 65504.0);
  assert_true(isinf(ir_round_to(DT_F16, 65520.0)));
  assert_true(ir_round_to(DT_F16, 0x1p-24) == 0x1p-24);
  assert_true(ir_round_to(DT_F16, 0x1p-26) == 0.0);  /* underflow: a gradient lost */
  assert_true(ir_round_to(DT_F32, 1.0 + 0x1p-30) == 1.0);
  assert_int_equal(ir_dtype_bytes(DT_BF16), 2);
  assert_int_equal(ir_dtype_bytes(DT_F16), 2);
  assert_int_equal(ir_dtype_bytes(DT_F32), 4);
}

/* ------------------------------------------------------------ what the comments carry */

static void test_locations_and_rules(void **state) {
  (void)state;
  diag_reset();
  const char *text =
      "func @f {\n"
      "  %0 = input \"x\" : f32[B,3]       # net.bp:1:10\n"
      "  %1 = relu %0 : f32[B,3]          # net.bp:2:5\n"
      "  %2 = relu_grad %0, %1 : f32[B,3] # net.bp:2:5  [relu.dx from %1]\n"
      "  %3 = exp %0 : f32[B,3]           # [fwd recomputed from %0]\n"
      "  %4 = exp %0 : f32[B,3]           # net.bp:7:1  [fwd \"log of softmax\"]\n"
      "  %5 = neg %0 : f32[B,3]           # [fold from %6]\n"
      "  %6 = neg %5 : f32[B,3]\n"
      "}\n";
  Module *m = ir_parse("loc.ir", text, strlen(text));
  assert_non_null(m);
  Func *f = m->funcs[0];
  assert_false(f->cse);
  assert_int_equal(f->ninsts, 7);   /* %3 and %4 are identical but not merged */
  assert_string_equal(diag_file_name(f->insts[1].loc.file), "net.bp");
  assert_int_equal(f->insts[1].loc.line, 2);
  assert_int_equal(f->insts[1].loc.col, 5);
  assert_int_equal(f->insts[0].loc.file, f->insts[1].loc.file);  /* registered once */
  assert_int_equal(f->insts[1].flags, 0);
  assert_null(f->insts[1].rule);
  assert_int_equal(f->insts[1].from, -1);
  assert_int_equal(f->insts[2].flags, IF_BACKWARD);
  assert_string_equal(f->insts[2].rule, "relu.dx");
  assert_int_equal(f->insts[2].from, 1);
  assert_int_equal(f->insts[3].loc.file, -1);
  assert_int_equal(f->insts[3].flags, IF_RECOMPUTED);
  assert_null(f->insts[3].rule);
  assert_int_equal(f->insts[3].from, 0);
  assert_int_equal(f->insts[4].flags, 0);
  assert_string_equal(f->insts[4].rule, "log of softmax");
  assert_int_equal(f->insts[5].from, 6);   /* `from` may name a later instruction, as the verifier allows */
  ir_module_free(m);

  /* a location in a file that is registered with its text reuses that registration */
  diag_reset();
  int bp = diag_add_file("model.bp", "x = 1\n", 6);
  const char *t2 = "func @g {\n  %0 = input \"x\" : f32[2]  # model.bp:1:1\n}\n";
  m = ir_parse("g.ir", t2, strlen(t2));
  assert_non_null(m);
  assert_int_equal(m->funcs[0]->insts[0].loc.file, bp);
  ir_module_free(m);
  diag_reset();
}

/* The call site `(called at file:line:col)` of a line from a user layer: parsed into
 * Inst.call, printed back the same way, and printed only where it differs from loc. */
static void test_call_sites(void **state) {
  (void)state;
  diag_reset();
  const char *text =
      "func @f {\n"
      "  %0 = input \"x\" : f32[B,3]         # net.bp:1:10\n"
      "  %1 = relu %0 : f32[B,3]           # net.bp:2:5 (called at net.bp:9:7)\n"
      "  %2 = relu_grad %0, %1 : f32[B,3]  # net.bp:2:5 (called at net.bp:9:7)  [relu.dx from %1]\n"
      "  %3 = exp %0 : f32[B,3]            # (called at net.bp:10:3)  [fwd recomputed from %0]\n"
      "  %4 = neg %0 : f32[B,3]            # a (b):c.bp:3:4 (called at x (y):z.bp:12:1)\n"
      "  %5 = relu %0 : f32[B,3]           # net.bp:2:5 (called at net.bp:10:3)  [fwd log_softmax]\n"
      "}\n";
  Module *m = ir_parse("call.ir", text, strlen(text));
  assert_non_null(m);
  Func *f = m->funcs[0];
  assert_int_equal(f->insts[0].call.file, -1);
  assert_false(ir_has_call(&f->insts[0]));
  assert_string_equal(diag_file_name(f->insts[1].call.file), "net.bp");
  assert_int_equal(f->insts[1].call.file, f->insts[1].loc.file);
  assert_int_equal(f->insts[1].call.line, 9);
  assert_int_equal(f->insts[1].call.col, 7);
  assert_int_equal(f->insts[1].loc.line, 2);
  assert_int_equal(f->insts[1].loc.col, 5);
  assert_int_equal(f->insts[2].call.line, 9);
  assert_string_equal(f->insts[2].rule, "relu.dx");
  assert_int_equal(f->insts[2].from, 1);
  assert_int_equal(f->insts[3].loc.file, -1);
  assert_int_equal(f->insts[3].call.line, 10);
  assert_int_equal(f->insts[3].call.col, 3);
  assert_int_equal(f->insts[3].flags, IF_RECOMPUTED);
  assert_string_equal(diag_file_name(f->insts[4].loc.file), "a (b):c.bp");
  assert_string_equal(diag_file_name(f->insts[4].call.file), "x (y):z.bp");
  assert_int_equal(f->insts[4].call.line, 12);
  assert_int_equal(f->insts[5].call.line, 10);
  assert_int_equal(f->insts[5].flags, 0);
  assert_string_equal(f->insts[5].rule, "log_softmax");
  /* the text is in printed form, and survives the round trip */
  char *p1 = round_trip("call.ir", text, strlen(text));
  assert_string_equal(p1, text);
  free(p1);
  ir_module_free(m);

  /* a call site equal to the location (in what prints: file, line, column) or unset
   * (a zeroed Inst) prints nothing */
  diag_reset();
  m = ir_module_new();
  int file = diag_add_file("net.bp", "", 0);
  f = ir_func_new(m, "g");
  int32_t x = ir_input(f, "x", 0, ty(m, DT_F32, 1, 3, 0, 0), (SrcLoc){file, 1, 9, 0});
  int32_t r = ir_unary(f, OP_RELU, x, (SrcLoc){file, 2, 5, 11});
  f->insts[r].call = (SrcLoc){file, 2, 5, 0};
  int32_t e = ir_unary(f, OP_EXP, x, (SrcLoc){file, 3, 5, 0});
  memset(&f->insts[e].call, 0, sizeof f->insts[e].call);
  int32_t n = ir_unary(f, OP_NEG, x, (SrcLoc){file, 4, 5, 0});
  f->insts[n].call = (SrcLoc){file, 8, 3, 9};
  char *got = ir_print_to_string(f);
  assert_string_equal(got,
                      "func @g {\n"
                      "  %0 = input \"x\" : f32[3]  # net.bp:1:9\n"
                      "  %1 = relu %0 : f32[3]    # net.bp:2:5\n"
                      "  %2 = exp %0 : f32[3]     # net.bp:3:5\n"
                      "  %3 = neg %0 : f32[3]     # net.bp:4:5 (called at net.bp:8:3)\n"
                      "}\n");
  bp_free(got);
  ir_module_free(m);
  diag_reset();
}

static void test_doubles_round_trip_exactly(void **state) {
  (void)state;
  diag_reset();
  Module *m = ir_module_new();
  Func *f = ir_func_new(m, "c");
  f->cse = false;
  uint64_t r = 0x123456789abcdefull;
  double vals[600];
  int n = 0;
  static const double fixed[] = {0.1, 1.0 / 3, -2.5e-310, 1e308, 6.02214076e23, 0x1.fffffffffffffp-1, 1e-7, 100};
  for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++) vals[n++] = fixed[i];
  while (n < 600) {   /* random bit patterns (xorshift), skipping nan */
    r ^= r << 13; r ^= r >> 7; r ^= r << 17;
    double v;
    memcpy(&v, &r, sizeof v);
    if (!isnan(v)) vals[n++] = v;
  }
  for (int i = 0; i < n; i++) ir_const(f, vals[i], ir_type_scalar(m, DT_F64), SRCLOC_NONE);
  char *text = ir_print_to_string(f);
  Module *m2 = ir_parse("c.ir", text, strlen(text));
  assert_non_null(m2);
  for (int i = 0; i < n; i++) {
    double got = m2->funcs[0]->insts[i].fattr[0];
    assert_memory_equal(&got, &vals[i], sizeof got);
  }
  bp_free(text);
  ir_module_free(m2);
  ir_module_free(m);
  diag_reset();
}

/* ------------------------------------------------------------ diagnostics */

/* Parse text expecting failure; returns the first line of the diagnostics. */
static char *parse_error(const char *text) {
  static char first[512];
  diag_reset();
  char *out = NULL;
  size_t n = 0;
  FILE *fp = open_memstream(&out, &n);
  diag_set_output(fp);
  Module *m = ir_parse("bad.ir", text, strlen(text));
  diag_set_output(NULL);
  fclose(fp);
  if (m) ir_module_free(m);
  assert_null(m);
  assert_int_equal(diag_error_count(), 1);
  char *nl = strchr(out, '\n');
  size_t k = nl ? (size_t)(nl - out) : strlen(out);
  if (k >= sizeof first) k = sizeof first - 1;
  memcpy(first, out, k);
  first[k] = 0;
  free(out);
  diag_reset();
  return first;
}

#define HEAD "func @f {\n  %0 = input \"x\" : f32[B,3]\n"
#define POOL4 "func @f {\n  %0 = input \"x\" : f32[B,2,5,5]\n"
#define SEQ "func @f {\n  %0 = input \"x\" : f32[B,2,4,3]\n  %1 = input \"k\" : f32[B,2,5,3]\n"
#define LN HEAD "  %1 = input \"g\" : f32[3]\n  %2 = input \"b\" : f32[4]\n"

static void test_parser_diagnostics(void **state) {
  (void)state;
  static const struct {
    const char *text, *msg;
  } cases[] = {
      {"fn @f {\n}\n", "bad.ir:1:1: error: expected 'func', found 'fn'"},
      {"func f {\n}\n", "bad.ir:1:6: error: expected a function name like @f after 'func', found 'f'"},
      {"func @f\n}\n", "bad.ir:1:8: error: expected '{' after the function name, found end of line"},
      {"func @f {\n  %0 = input \"x\" : f32[3]\n", "bad.ir:1:1: error: missing '}' at the end of @f"},
      {HEAD "  %2 = relu %0 : f32[B,3]\n}\n",
       "bad.ir:3:3: error: this is instruction 1, so it defines %1 (values are numbered by position; a sink takes a number too)"},
      {HEAD "  %1 = frob %0 : f32[B,3]\n}\n", "bad.ir:3:8: error: unknown op 'frob'"},
      {HEAD "  %1 = relu %5 : f32[B,3]\n}\n", "bad.ir:3:13: error: %5 is not defined before this instruction"},
      {HEAD "  %1 = relu %1 : f32[B,3]\n}\n", "bad.ir:3:13: error: %1 is not defined before this instruction"},
      {HEAD "  %1 = add %0 : f32[B,3]\n}\n", "bad.ir:3:15: error: expected ',' between operands, found ':'"},
      {HEAD "  %1 = relu %0, %0 : f32[B,3]\n}\n", "bad.ir:3:15: error: relu takes 1 operand"},
      {HEAD "  %1 = relu %0 : f32[B,4]\n}\n",
       "bad.ir:3:18: error: the type f32[B,4] differs from f32[B,3], the type relu gives"},
      {HEAD "  %1 = relu %0\n}\n", "bad.ir:3:15: error: expected ':' and the type of %1, found end of line"},
      {HEAD "  %1 = relu %0 : f8[B,3]\n}\n", "bad.ir:3:18: error: expected a type (f32, f64, bf16, f16 or label), found 'f8'"},
      {HEAD "  %1 = relu %0 : f16[B,3]\n}\n", "bad.ir:3:18: error: the type f16[B,3] differs from f32[B,3], the type relu gives"},
      {HEAD "  %1 = cast %0 : f64[B,3]\n}\n", "bad.ir:3:8: error: cast goes between f32 and bf16 or f16 in one shape: f32[B,3] to f64[B,3]"},
      {HEAD "  %1 = cast %0 : bf16[B,3]\n  %2 = relu %1 : bf16[B,3]\n}\n", "bad.ir:4:8: error: relu needs a float operand"},
      {HEAD "  %1 = relu %0 : f32[B,0]\n}\n", "bad.ir:3:24: error: a dim must be between 1 and 10^15"},
      {HEAD "  %1 = relu %0 : f32[B,x]\n}\n", "bad.ir:3:24: error: expected a dim (a positive integer or B), found 'x'"},
      {HEAD "  %1 = relu %0 : f32[1,2,3,4,5]\n}\n", "bad.ir:3:30: error: a tensor has at most 4 dims"},
      {HEAD "  %1 = sum %0 axis=2 : f32[B]\n}\n", "bad.ir:3:8: error: sum: axis 2 out of range for rank 2"},
      {HEAD "  %1 = sum %0 : f32[B]\n}\n", "bad.ir:3:8: error: sum needs the attribute 'axis'"},
      {HEAD "  %1 = sum %0 axis=1 axis=1 : f32[B]\n}\n", "bad.ir:3:22: error: attribute 'axis' given twice"},
      {HEAD "  %1 = sum %0 p=1 : f32[B]\n}\n", "bad.ir:3:15: error: sum has no attribute 'p'"},
      {HEAD "  %1 = sum %0 axis=x : f32[B]\n}\n", "bad.ir:3:20: error: expected an integer for axis, found 'x'"},
      {HEAD "  %1 = max_pool2d %0 kernel=2 stride=2 padding=0 : f32[B,3]\n}\n",
       "bad.ir:3:8: error: max_pool2d needs a rank-4 float value [N,C,H,W], has f32[B,3]"},
      {POOL4 "  %1 = avg_pool2d %0 kernel=2 stride=2 padding=2 : f32[B,2,4,4]\n}\n",
       "bad.ir:3:8: error: avg_pool2d: kernel 2, stride 2, padding 2: needs 1 <= kernel < 2^31, stride >= 1, 0 <= padding <= kernel / 2"},
      {POOL4 "  %1 = max_pool2d %0 kernel=6 stride=1 padding=0 : f32[B,2,1,1]\n}\n",
       "bad.ir:3:8: error: max_pool2d: a 6x6 window with padding 0 does not fit in f32[B,2,5,5]"},
      {POOL4 "  %1 = max_pool2d %0 kernel=2 stride=2 : f32[B,2,2,2]\n}\n", "bad.ir:3:8: error: max_pool2d needs the attribute 'padding'"},
      {POOL4 "  %1 = max_pool2d %0 kernel=2 stride=-1 padding=0 : f32[B,2,2,2]\n}\n",
       "bad.ir:3:8: error: max_pool2d: kernel 2, stride -1, padding 0: needs 1 <= kernel < 2^31, stride >= 1, 0 <= padding <= kernel / 2"},
      {POOL4 "  %1 = max_pool2d %0 kernel=3 stride=2 padding=1 : f32[B,2,2,2]\n}\n",
       "bad.ir:3:52: error: the type f32[B,2,2,2] differs from f32[B,2,3,3], the type max_pool2d gives"},
      {POOL4 "  %1 = avg_pool2d_bwd %0 kernel=2 stride=2 padding=0 : f32[B,2,9,9]\n}\n",
       "bad.ir:3:8: error: avg_pool2d_bwd: dy is f32[B,2,5,5], the pooled type of f32[B,2,9,9] is f32[B,2,4,4]"},
      {LN "  %3 = layernorm %0, %1, %1 dims=1 eps=0 : f32[B,3]\n}\n", "bad.ir:5:8: error: layernorm: eps 0 is not a positive number"},
      {LN "  %3 = layernorm %0, %1, %1 dims=2 eps=1e-05 : f32[B,3]\n}\n",
       "bad.ir:5:8: error: layernorm: the normalized dims of f32[B,3] include the batch dim"},
      {LN "  %3 = layernorm %0, %1, %1 dims=3 eps=1e-05 : f32[B,3]\n}\n",
       "bad.ir:5:8: error: layernorm: dims=3, but f32[B,3] has rank 2 (1 <= dims <= rank)"},
      {LN "  %3 = layernorm %0, %2, %2 dims=1 eps=1e-05 : f32[B,3]\n}\n",
       "bad.ir:5:8: error: layernorm: the scale and shift must be f32[3], the normalized dims of f32[B,3]; has f32[4]"},
      {LN "  %3 = layernorm %0, %1, %2 dims=1 eps=1e-05 : f32[B,3]\n}\n",
       "bad.ir:5:8: error: layernorm: the shift f32[4] differs from the scale f32[3]"},
      {LN "  %3 = layernorm %0, %1, %1 dims=1 : f32[B,3]\n}\n", "bad.ir:5:8: error: layernorm needs the attribute 'eps'"},
      {LN "  %3 = layernorm_bwd_gamma %0, %1 dims=1 eps=1e-05 : f32[3]\n}\n",
       "bad.ir:5:8: error: layernorm_bwd_gamma: the gradient f32[3] is not the type of x, f32[B,3]"},
      {LN "  %3 = layernorm_bwd_gamma %0, %0 dims=1 eps=1e-05 : f32[B,3]\n}\n",
       "bad.ir:5:54: error: the type f32[B,3] differs from f32[3], the type layernorm_bwd_gamma gives"},
      {HEAD "  %1 = pow %0 exponent=two : f32[B,3]\n}\n", "bad.ir:3:24: error: expected a number for exponent, found 'two'"},
      {HEAD "  %1 = add %0, %0 : f32[B,3] extra\n}\n", "bad.ir:3:30: error: expected the end of the line, found 'extra'"},
      {HEAD "  output \"o\" %0\n  %2 = relu %1 : f32[B,3]\n}\n", "bad.ir:4:13: error: %1 is a output sink and has no value"},
      {HEAD "  %1 = output \"o\" %0\n}\n", "bad.ir:3:8: error: output is a sink and defines no value: write it without '%N ='"},
      {HEAD "  relu %0\n}\n", "bad.ir:3:3: error: relu defines a value: write '%1 = relu'"},
      {"func @f {\n  %0 = input x : f32[3]\n}\n", "bad.ir:2:14: error: expected the name of the input as a string, found 'x'"},
      {"func @f {\n  %0 = input \"x : f32[3]\n}\n", "bad.ir:2:14: error: unterminated string"},
      {"func @f {\n  %0 = input \"\\q\" : f32[3]\n}\n",
       "bad.ir:2:15: error: unknown escape in string (use \\\" \\\\ \\n \\t or \\xHH)"},
      {"func @f {\n  %0 = param \"w\" he : f32[3]\n}\n",
       "bad.ir:2:18: error: expected an initializer (e.g. he_normal, zeros), found 'he'"},
      {"func @f {\n  %0 = param \"w\" uniform(1 : f32[3]\n}\n",
       "bad.ir:2:28: error: expected ')' after the initializer's arguments, found ':'"},
      {"func @f {\n  %0 = param \"w\" zeros : f32[B]\n}\n", "bad.ir:2:8: error: a parameter cannot have the batch dim"},
      {"func @f {\n  %0 = const value=1 : label[3]\n}\n", "bad.ir:2:8: error: const must have a float type"},
      {"func @f {\n  %0 = dropout_mask p=1.5 stream=0 : f32[3]\n}\n",
       "bad.ir:2:8: error: dropout probability 1.5 is not in [0, 1)"},
      {"func @f {\n  %0 = dropout_mask p=0.5 : f32[3]\n}\n", "bad.ir:2:8: error: dropout_mask needs the attribute 'stream'"},
      {HEAD "  %1 = relu %0 : f32[B,3]  # net.bp:3\n}\n", "bad.ir:3:30: error: expected a location 'file:line:col' in the comment"},
      {HEAD "  %1 = relu %0 : f32[B,3]  # net.bp:x:1\n}\n", "bad.ir:3:30: error: expected a location 'file:line:col' in the comment"},
      {HEAD "  %1 = relu %0 : f32[B,3]  # net.bp (called at net.bp:9:7)\n}\n",
       "bad.ir:3:30: error: expected a location 'file:line:col' in the comment"},
      {HEAD "  %1 = relu %0 : f32[B,3]  # net.bp:2:5 (called at net.bp:9)\n}\n",
       "bad.ir:3:52: error: expected a call site 'file:line:col' in the comment"},
      {HEAD "  %1 = relu %0 : f32[B,3]  # net.bp:2:5 (called at net.bp:9:7\n}\n",
       "bad.ir:3:41: error: expected ')' at the end of the call site"},
      {HEAD "  %1 = relu %0 : f32[B,3]  # net.bp:2:5 (called at net.bp:9:7)  [r] x\n}\n",
       "bad.ir:3:69: error: unexpected text after the rule"},
      {HEAD "  %1 = relu %0 : f32[B,3]  # a.bp:1:1  [relu.dx from %7]\n}\n",
       "bad.ir:3:54: error: 'from %7': @f has no instruction 7"},
      {HEAD "  %1 = relu %0 : f32[B,3]  # a.bp:1:1  [relu.dx\n}\n", "bad.ir:3:40: error: missing ']' at the end of the rule"},
      {HEAD "  %1 = relu %0 : f32[B,3]  # a.bp:1:1  [r from %0 extra]\n}\n",
       "bad.ir:3:51: error: unexpected 'extra' in the rule; the form is [fwd recomputed RULE from %N]"},
      {HEAD "  %1 = relu %0 : f32[B,3]  # a.bp:1:1  [r] x\n}\n", "bad.ir:3:44: error: unexpected text after the rule"},
      {HEAD "  %1 = relu %0 : f32[B,3]  # a.bp:1:1  [9r]\n}\n",
       "bad.ir:3:41: error: a rule name is a word or a quoted string, found '9r'"},
      {HEAD "  %1 = relu % : f32[B,3]\n}\n", "bad.ir:3:13: error: expected a value number after '%'"},
      {HEAD "  %1 = relu %0 : f32[B,3] $\n}\n", "bad.ir:3:27: error: unexpected character '$'"},
      {HEAD "  %1 = relu %0 : f32[B,3] \x01\n}\n", "bad.ir:3:27: error: unexpected byte 0x01"},
      {"func @f {\n}\nfunc @f {\n}\n", "bad.ir:3:6: error: function @f is defined twice"},
      {"func @f {\n} x\n", "bad.ir:2:3: error: expected the end of the line after '}', found 'x'"},
      {HEAD "  %1 = matmul %0, %0 : f32[B,B]\n}\n", "bad.ir:3:8: error: matmul: inner dims differ: f32[B,3], f32[B,3]"},
      {HEAD "  %1 = onehot %0 : f32[B,3]\n}\n", "bad.ir:3:8: error: onehot needs a label operand, has f32[B,3]"},
      {HEAD "  %1 = sum %0 axis=1 keep=2 : f32[B,1]\n}\n", "bad.ir:3:22: error: keep is 0 or 1"},
      {HEAD "  %1 = sum %0 axis=99999999999 : f32[B]\n}\n", "bad.ir:3:20: error: integer 99999999999 out of range"},
      {SEQ "  %2 = transpose %0 perm=0013 : f32[B,2,4,3]\n}\n",
       "bad.ir:4:8: error: transpose needs a float operand of rank 2 to 4 and a permutation of its dims (perm=0013)"},
      {SEQ "  %2 = transpose %0 perm=021 : f32[B,2,4,3]\n}\n",
       "bad.ir:4:8: error: transpose needs a float operand of rank 2 to 4 and a permutation of its dims (perm=0021)"},
      {SEQ "  %2 = matmul_nt %0, %1 fold=1 : f32[4,5]\n}\n",
       "bad.ir:4:8: error: matmul_nt: fold=1 needs matmul_tn and operands of one rank"},
      {SEQ "  %2 = matmul_tn %0, %0 fold=2 : f32[3,3]\n}\n",
       "bad.ir:4:8: error: matmul_tn: fold=2 needs matmul_tn and operands of one rank"},
      {SEQ "  %2 = attention %0, %1, %1 causal=1 scale=0.5 : f32[B,2,4,3]\n}\n",
       "bad.ir:4:8: error: attention: causal=1 needs causal 0 or 1 and as many queries as keys"},
      {SEQ "  %2 = attention %0, %1, %1 causal=0 scale=0 : f32[B,2,4,3]\n}\n",
       "bad.ir:4:8: error: attention: the scale must be a finite number > 0"},
      {SEQ "  %2 = attention %0, %1, %1 causal=0 : f32[B,2,4,3]\n}\n",
       "bad.ir:4:8: error: attention needs the attribute 'scale'"},
      {SEQ "  %2 = attention %0, %1, %1 causal=0 scale=0.5 : f32[B,2,4,3]\n  %3 = extra %2 result=2 : f32[B,2,4]\n}\n",
       "bad.ir:5:8: error: extra: attention has no result 2"},
      {SEQ "  %2 = extra %0 result=1 : f32[B,2,4]\n}\n",
       "bad.ir:4:8: error: extra: input has no result 1"},
      {SEQ "  %2 = causal_mask : f32[4,5]\n}\n",
       "bad.ir:4:8: error: causal_mask must be square [T,T] without the batch dim"},
      {"func @f {\n  %0 = input \"t\" : label[B,4,5]\n  %1 = input \"w\" : f32[4,8]\n  %2 = embedding %0, %1 : f32[B,4,8]\n}\n",
       "bad.ir:4:8: error: embedding: the table f32[4,8] needs 5 rows, one per class of label[B,4,5]"},
  };
  int bad = 0;
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const char *got = parse_error(cases[i].text);
    if (strcmp(got, cases[i].msg) != 0) {
      print_error("case %zu:\n%s\nwant: %s\ngot:  %s\n", i, cases[i].text, cases[i].msg, got);
      bad++;
    }
  }
  assert_int_equal(bad, 0);
}

/* The whole report: message, source line, caret under the token. */
static void test_diagnostic_shows_the_line(void **state) {
  (void)state;
  diag_reset();
  char *out = NULL;
  size_t n = 0;
  FILE *fp = open_memstream(&out, &n);
  diag_set_output(fp);
  const char *text = HEAD "  %1 = relu %0 : f32[B,4]\n}\n";
  Module *m = ir_parse("bad.ir", text, strlen(text));
  diag_set_output(NULL);
  fclose(fp);
  assert_null(m);
  assert_string_equal(out,
                      "bad.ir:3:18: error: the type f32[B,4] differs from f32[B,3], the type relu gives\n"
                      "      %1 = relu %0 : f32[B,4]\n"
                      "                     ^~~\n");
  free(out);
  diag_reset();
}

/* Truncating a valid file at every byte never crashes: it parses or reports. */
static void test_every_prefix_is_handled(void **state) {
  (void)state;
  const char *root = getenv("BPCC_SOURCE_DIR");
  assert_non_null(root);
  char path[4096];
  snprintf(path, sizeof path, "%s/tests/ir/golden/corners.ir", root);
  size_t len = 0;
  char *text = read_file(path, &len);
  assert_non_null(text);
  FILE *devnull = fopen("/dev/null", "w");
  for (size_t k = 0; k <= len; k++) {
    diag_reset();
    diag_set_output(devnull);
    Module *m = ir_parse("prefix.ir", text, k);
    if (m) ir_module_free(m);
    else assert_int_equal(diag_error_count(), 1);
  }
  diag_set_output(NULL);
  fclose(devnull);
  bp_free(text);
  diag_reset();
}

/* Random edits of a valid file (seeded, so failures reproduce): the parser either
 * rejects the text with exactly one error or accepts it, and then what it accepted
 * prints and reads back to the same text. */
static void test_mutations_never_crash(void **state) {
  (void)state;
  const char *root = getenv("BPCC_SOURCE_DIR");
  assert_non_null(root);
  static const char *const files[] = {"every_op.ir", "corners.ir", "mlp.ir", "pool.ir", "conv.ir", "layernorm.ir",
                                      "bn.ir", "seq.ir"};
  static const char alphabet[] = "%@=,:[](){}#\"\\ \n0123456789B.-+eafxlpinsum_";
  FILE *devnull = fopen("/dev/null", "w");
  uint64_t r = 0x9e3779b97f4a7c15ull;
  int accepted = 0;
  for (size_t fi = 0; fi < sizeof files / sizeof files[0]; fi++) {
    char path[4096];
    snprintf(path, sizeof path, "%s/tests/ir/golden/%s", root, files[fi]);
    size_t len = 0;
    char *orig = read_file(path, &len);
    assert_non_null(orig);
    char *text = bp_xmalloc(len + 1);
    for (int iter = 0; iter < 700; iter++) {
      memcpy(text, orig, len + 1);
      int edits = 1 + iter % 3;
      for (int e = 0; e < edits; e++) {
        r ^= r << 13; r ^= r >> 7; r ^= r << 17;
        size_t at = (size_t)(r % len);
        text[at] = alphabet[(r >> 32) % (sizeof alphabet - 1)];
      }
      diag_reset();
      diag_set_output(devnull);
      Module *m = ir_parse("mut.ir", text, len);
      if (!m) {
        assert_int_equal(diag_error_count(), 1);
        continue;
      }
      accepted++;
      Capture c;
      capture_begin(&c);
      for (int i = 0; i < m->nfuncs; i++) ir_verify(m->funcs[i], "mutation");
      bp_free(capture_end(&c));
      char *p1 = print_module_str(m);
      Module *m2 = ir_parse("mut2.ir", p1, strlen(p1));
      if (!m2) fail_msg("accepted text does not print back to valid text:\n%s", p1);
      char *p2 = print_module_str(m2);
      assert_string_equal(p1, p2);
      free(p1);
      free(p2);
      ir_module_free(m2);
      ir_module_free(m);
    }
    bp_free(text);
    bp_free(orig);
  }
  diag_set_output(NULL);
  fclose(devnull);
  diag_reset();
  assert_true(accepted > 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_printer_golden),
      cmocka_unit_test(test_round_trip_every_ir_file),
      cmocka_unit_test(test_round_to),
      cmocka_unit_test(test_locations_and_rules),
      cmocka_unit_test(test_call_sites),
      cmocka_unit_test(test_doubles_round_trip_exactly),
      cmocka_unit_test(test_parser_diagnostics),
      cmocka_unit_test(test_diagnostic_shows_the_line),
      cmocka_unit_test(test_every_prefix_is_handled),
      cmocka_unit_test(test_mutations_never_crash),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
