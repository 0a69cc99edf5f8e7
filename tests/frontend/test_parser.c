/* tests/frontend/test_parser.c — the grammar: precedence, calls with keywords, types,
 * train blocks, error recovery (several errors per run) and the nesting limit. */
#include "fe_test.h"

/* Parse text; return the --emit=ast dump (malloc'd) and the error count. */
static char *parse(const char *text, size_t len, int *errors, char **diags) {
  diag_reset();
  size_t nd;
  FILE *mem = open_memstream(diags, &nd);
  diag_set_output(mem);
  int file = diag_add_file("t.bp", text, len);
  Arena *a = arena_new();
  FeProgram *p = fe_parse(a, file);
  *errors = diag_error_count();
  diag_set_output(NULL);
  fclose(mem);
  char *out;
  size_t n;
  FILE *o = open_memstream(&out, &n);
  fe_dump_ast(o, p);
  fclose(o);
  arena_free(a);
  diag_reset();
  return out;
}

static char *parse_ok(const char *text) {
  int e;
  char *d;
  char *s = parse(text, strlen(text), &e, &d);
  if (e) fprintf(stderr, "%s", d);
  assert_int_equal(e, 0);
  free(d);
  return s;
}

static void test_precedence(void **state) {
  (void)state;
  char *s = parse_ok("model m(x: f32[B, 2]) {\n  h = -x ^ 2 * 3 + x @ W / 2 - 1\n}\n");
  assert_non_null(strstr(s, "(= h (- (+ (* (neg (^ x 2)) 3) (/ (@ x W) 2)) 1))"));
  free(s);
  s = parse_ok("model m(x: f32[B, 2]) {\n  h = a ^ b ^ c\n  g = (a + b) * c\n}\n");
  assert_non_null(strstr(s, "(= h (^ a (^ b c)))"));
  assert_non_null(strstr(s, "(= g (* (+ a b) c))"));
  free(s);
}

static void test_calls_and_types(void **state) {
  (void)state;
  char *s = parse_ok("layer affine(x: [B, I], n: int, s: float = 0.5) -> [B, n] {\n"
                     "    param W: [I, n] init uniform(-0.1, b = 0.1)\n"
                     "    return sum(x @ W, axis = 1,)\n"
                     "}\n");
  assert_string_equal(s, "(layer affine  @1:7\n"
                         "  (arg x [B,I])  @1:14\n"
                         "  (arg n int)  @1:25\n"
                         "  (arg s float = 0.5)  @1:33\n"
                         "  (returns [B,n])\n"
                         "  (param W [I,n] uniform (neg 0.1) b=0.1)  @2:11\n"
                         "  (return (call sum (@ x W) axis=1))  @3:5\n"
                         ")\n");
  free(s);
}

/* a shape literal is a primary: dims are numbers, names and -1 (reshape's target) */
static void test_shapes(void **state) {
  (void)state;
  char *s = parse_ok("model m(x: f32[B, 1, 28, 28]) {\n    h = reshape(x, [B, 28, -1]) + flatten(x)\n"
                     "    g = reshape(x, [\n      B, 784\n    ])\n}\n");
  assert_non_null(strstr(s, "(= h (+ (call reshape x (shape B 28 -1)) (call flatten x)))"));
  assert_non_null(strstr(s, "(= g (call reshape x (shape B 784)))"));
  free(s);
}

/* keep = true: boolean literals are primaries; in a train block they are values */
static void test_booleans(void **state) {
  (void)state;
  char *s = parse_ok("model m(x: f32[B, 2, 3]) {\n    h = sum(x, 1, keep = true) + max(x, axis = 2, keep = (false))\n}\n"
                     "train m {\n  optimizer sgd(nesterov = true, momentum = 0.9)\n}\n");
  assert_non_null(strstr(s, "(= h (+ (call sum x 1 keep=true) (call max x axis=2 keep=false)))"));
  assert_non_null(strstr(s, "(optimizer sgd nesterov=true momentum=0.9"));
  free(s);
  /* a keyword is not a name: binding `true` is a syntax error at it */
  int e;
  char *d;
  const char *bad = "model m(x: f32[B, 2]) {\n    true = x\n}\n";
  s = parse(bad, strlen(bad), &e, &d);
  assert_int_equal(e, 1);
  assert_non_null(strstr(d, "t.bp:2:5: error: unexpected 'true'"));
  free(d);
  free(s);
}

static void test_train_block(void **state) {
  (void)state;
  char *s = parse_ok("train m {\n  optimizer adam(lr = 1e-3, betas = (0.9, 0.99))\n  batch 64\n  schedule cosine\n"
                     "  schedule step(10, gamma = 0.5)\n}\n");
  assert_string_equal(s, "(train m  @1:7\n"
                         "  (optimizer adam lr=0.001 betas=(0.90000000000000002, 0.98999999999999999))  @2:3\n"
                         "  (batch 64)  @3:3\n"
                         "  (schedule cosine)  @4:3\n"
                         "  (schedule step 10 gamma=0.5)  @5:3\n"
                         ")\n");
  free(s);
}

static void test_recovery_reports_each_error(void **state) {
  (void)state;
  int e;
  char *d;
  const char *t = "model m(x: f32[B, 2]) {\n"
                  "  h = relu(x))\n"        /* 1 */
                  "  g = (x +\n"             /* 2: ')' missing; resumes at the brace */
                  "}\n"
                  "layer f(x [B]) { return x }\n"   /* 3 */
                  "model k(x: f32[B, 2]) {\n"
                  "  loss mean(x) mean\n"    /* 4 */
                  "  output o = relu(x)\n"
                  "}\n";
  char *s = parse(t, strlen(t), &e, &d);
  assert_int_equal(e, 4);
  assert_non_null(strstr(d, "t.bp:2:14: error: unexpected ')'\n"));
  assert_non_null(strstr(d, "t.bp:4:1: error: unexpected end of line"));
  assert_non_null(strstr(d, "t.bp:5:11: error: unexpected '[', expected ':'\n"));
  assert_non_null(strstr(d, "t.bp:7:16: error: unexpected identifier 'mean'"));
  /* statements with a broken right-hand side still bind their names */
  assert_non_null(strstr(s, "(= h <error>)"));
  assert_non_null(strstr(s, "(output o (call relu x))"));
  free(s);
  free(d);
}

static void test_nesting_limit(void **state) {
  (void)state;
  enum { N = 10000 };
  char *t = malloc(4 * N + 100);
  size_t k = (size_t)sprintf(t, "model m(x: f32[B, 2]) {\n  loss ");
  for (int i = 0; i < N; i++) t[k++] = '(';
  t[k++] = 'x';
  for (int i = 0; i < N; i++) t[k++] = ')';
  k += (size_t)sprintf(t + k, "\n}\n");
  int e;
  char *d;
  char *s = parse(t, k, &e, &d);
  assert_int_equal(e, 1);
  assert_non_null(strstr(d, "error: expression nested too deeply (more than 200 levels)"));
  assert_non_null(strstr(d, "t.bp:2:"));
  free(s);
  free(d);
  free(t);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_precedence),
      cmocka_unit_test(test_calls_and_types),
      cmocka_unit_test(test_booleans),
      cmocka_unit_test(test_shapes),
      cmocka_unit_test(test_train_block),
      cmocka_unit_test(test_recovery_reports_each_error),
      cmocka_unit_test(test_nesting_limit),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
