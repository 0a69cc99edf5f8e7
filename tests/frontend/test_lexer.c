/* tests/frontend/test_lexer.c — the scanner: token kinds, line:col ranges, where
 * newlines are statement ends, and bad bytes and literals reported with locations. */
#include "fe_test.h"

/* The tokens of text as "kind@line:col-endcol" joined by spaces. */
static char *lex(const char *text, size_t len, int *errors) {
  diag_reset();
  char *diags;
  size_t nd;
  FILE *mem = open_memstream(&diags, &nd);
  diag_set_output(mem);
  int file = diag_add_file("t.bp", text, len);
  Arena *a = arena_new();
  FeToken *toks;
  int n = fe_tokenize(a, file, &toks);
  *errors = diag_error_count();
  diag_set_output(NULL);
  fclose(mem);
  free(diags);
  size_t cap = 64 + (size_t)n * 48, k = 0;
  char *out = malloc(cap);
  out[0] = 0;
  for (int i = 0; i < n; i++)
    k += (size_t)snprintf(out + k, cap - k, "%s%s@%d:%d-%d", i ? " " : "", fe_token_name(toks[i].kind), toks[i].loc.line,
                          toks[i].loc.col, toks[i].loc.endcol);
  arena_free(a);
  diag_reset();
  return out;
}

static void test_basic_tokens(void **state) {
  (void)state;
  int e;
  char *s = lex("h = relu(x @ W)\n", 16, &e);
  assert_int_equal(e, 0);
  assert_string_equal(s, "identifier@1:1-2 '='@1:3-4 identifier@1:5-9 '('@1:9-10 identifier@1:10-11 '@'@1:12-13 "
                         "identifier@1:14-15 ')'@1:15-16 end of line@1:16-17 end of file@2:1-1");
  free(s);
}

static void test_keywords_and_arrow(void **state) {
  (void)state;
  int e;
  const char *t = "layer f(x: [B, I]) -> [B] {\n}";
  char *s = lex(t, strlen(t), &e);
  assert_int_equal(e, 0);
  assert_non_null(strstr(s, "'layer'@1:1-6 identifier@1:7-8"));
  assert_non_null(strstr(s, "'->'@1:20-22"));
  /* the newline after '{' is not a statement end; nothing precedes '}' */
  assert_non_null(strstr(s, "'{'@1:27-28 '}'@2:1-2 end of file"));
  free(s);
  /* true and false are keywords (boolean literals); names that start with them are not */
  t = "sum(x, keep = true) + false + trueish";
  s = lex(t, strlen(t), &e);
  assert_int_equal(e, 0);
  assert_non_null(strstr(s, "identifier@1:8-12 '='@1:13-14 'true'@1:15-19 ')'@1:19-20 '+'@1:21-22 'false'@1:23-28"));
  assert_non_null(strstr(s, "identifier@1:31-38"));
  free(s);
}

static void test_newline_rules(void **state) {
  (void)state;
  int e;
  /* inside parentheses and after a binary operator a newline continues the line */
  const char *t = "h = f(a,\n  b) +\n  c\n";
  char *s = lex(t, strlen(t), &e);
  assert_int_equal(e, 0);
  assert_null(strstr(s, "end of line@1"));
  assert_null(strstr(s, "end of line@2"));
  assert_non_null(strstr(s, "identifier@3:3-4 end of line@3:4-5"));
  free(s);
  /* '}' ends the last statement: a newline token is supplied before it */
  t = "{ loss x }";
  s = lex(t, strlen(t), &e);
  assert_string_equal(s, "'{'@1:1-2 'loss'@1:3-7 identifier@1:8-9 end of line@1:10-11 '}'@1:10-11 end of file@1:11-11");
  free(s);
  /* ';' separates statements; comments are skipped */
  t = "a = 1; b = 2 # two\n";
  s = lex(t, strlen(t), &e);
  assert_non_null(strstr(s, "number@1:5-6 end of line@1:6-7 identifier@1:8-9"));
  assert_null(strstr(s, "two"));
  free(s);
}

static void test_numbers(void **state) {
  (void)state;
  double v;
  bool is_int;
  char err[160];
  assert_true(fe_parse_number("800", &v, &is_int, err, sizeof err));
  assert_true(is_int);
  assert_true(v == 800);
  assert_true(fe_parse_number("1e-3", &v, &is_int, err, sizeof err));
  assert_false(is_int);
  assert_true(v == 1e-3);
  assert_true(fe_parse_number(".5", &v, &is_int, err, sizeof err));
  assert_true(v == 0.5);
  assert_false(fe_parse_number("99999999999999999999", &v, &is_int, err, sizeof err));
  assert_string_equal(err, "integer literal '99999999999999999999' is too large");
  assert_false(fe_parse_number("1e400", &v, &is_int, err, sizeof err));
  assert_string_equal(err, "number literal '1e400' is out of range");
  /* underflow is accepted: to a denormal (strtod's ERANGE) or to zero */
  assert_true(fe_parse_number("1e-310", &v, &is_int, err, sizeof err));
  assert_true(v == 1e-310 && v > 0);
  assert_true(fe_parse_number("1e-400", &v, &is_int, err, sizeof err));
  assert_true(v == 0);
  /* beyond f32 but a finite double: parsed; whether it fits f32 is sema's question */
  assert_true(fe_parse_number("1e39", &v, &is_int, err, sizeof err));
  assert_true(v == 1e39);
}

static void test_bad_bytes_reported_once_per_run(void **state) {
  (void)state;
  int e;
  const char t[] = "a \x01\x02 b \xc3\xa9\xff c $ d 12ab";
  char *s = lex(t, sizeof t - 1, &e);
  assert_int_equal(e, 4);   /* controls, non-ASCII run, '$', bad literal */
  assert_non_null(strstr(s, "identifier@1:1-2 identifier@1:6-7 identifier@1:12-13 identifier@1:16-17 number@1:18-22"));
  free(s);
}

static void test_nul_bytes(void **state) {
  (void)state;
  int e;
  const char t[] = "a\0\0\0b";
  char *s = lex(t, 5, &e);
  assert_int_equal(e, 1);
  assert_non_null(strstr(s, "identifier@1:1-2 identifier@1:5-6"));
  free(s);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_basic_tokens),
      cmocka_unit_test(test_keywords_and_arrow),
      cmocka_unit_test(test_newline_rules),
      cmocka_unit_test(test_numbers),
      cmocka_unit_test(test_bad_bytes_reported_once_per_run),
      cmocka_unit_test(test_nul_bytes),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
