/* tests/frontend/test_diag.c — diagnostics, exactly.
 *
 * 1. Every tests/frontend/diag/NAME.bp ends with `# expect: LINE:COL: KIND: MESSAGE`
 *    lines (kept at the end so they do not move the program's lines). The frontend's
 *    output lines located in that file must be exactly those lines, in order, and its
 *    error count must equal the number of expected errors.
 * 2. Hostile inputs, generated here rather than committed as binary files: an empty
 *    file, NUL bytes, invalid UTF-8, 100,000-character lines, 10,000 nested
 *    parentheses and unary minuses, huge numbers. Each gets a located error (or none,
 *    where the input is valid), never a crash. */
#include "fe_test.h"

#include <dirent.h>

static int check_file(const char *dir, const char *base) {
  char rel[1024];
  snprintf(rel, sizeof rel, "%s/%s", dir, base);
  size_t len = 0;
  char *text = fe_read_source(rel, &len);
  assert_non_null(text);
  /* the expected lines */
  char *expect[64];
  int nexpect = 0, nerrors = 0;
  for (char *p = text; (p = strstr(p, "# expect: ")) != NULL;) {
    p += 10;
    char *e = strchr(p, '\n');
    size_t n = e ? (size_t)(e - p) : strlen(p);
    assert_true(nexpect < 64);
    expect[nexpect] = strndup(p, n);
    if (strstr(expect[nexpect], ": error: ")) nerrors++;
    nexpect++;
  }
  FeRun r = fe_run(base, text, len);
  /* the output lines located in this file */
  int got = 0, failures = 0;
  size_t blen = strlen(base);
  for (char *line = r.diags; line && *line;) {
    char *e = strchr(line, '\n');
    size_t n = e ? (size_t)(e - line) : strlen(line);
    if (n > blen && strncmp(line, base, blen) == 0 && line[blen] == ':') {
      const char *msg = line + blen + 1;
      size_t mlen = n - blen - 1;
      if (got >= nexpect || strlen(expect[got]) != mlen || strncmp(expect[got], msg, mlen) != 0) {
        fprintf(stderr, "%s: line %d of the output:\n  got:    %.*s\n  expect: %s\n", base, got + 1, (int)mlen, msg,
                got < nexpect ? expect[got] : "(nothing more)");
        failures++;
      }
      got++;
    }
    line = e ? e + 1 : NULL;
  }
  if (got != nexpect) {
    fprintf(stderr, "%s: %d located lines, %d expected\n%s", base, got, nexpect, r.diags);
    failures++;
  }
  if (r.errors != nerrors || nerrors == 0) {
    fprintf(stderr, "%s: %d errors, %d expected\n%s", base, r.errors, nerrors, r.diags);
    failures++;
  }
  for (int i = 0; i < nexpect; i++) free(expect[i]);
  fe_run_free(&r);
  free(text);
  return failures;
}

static void test_diag_files(void **state) {
  (void)state;
  char path[4096];
  const char *root = getenv("BPCC_SOURCE_DIR");
  snprintf(path, sizeof path, "%s/tests/frontend/diag", root ? root : ".");
  DIR *d = opendir(path);
  assert_non_null(d);
  int files = 0, failures = 0;
  for (struct dirent *e; (e = readdir(d)) != NULL;) {
    size_t n = strlen(e->d_name);
    if (n < 4 || strcmp(e->d_name + n - 3, ".bp") != 0) continue;
    failures += check_file("tests/frontend/diag", e->d_name);
    files++;
  }
  closedir(d);
  assert_true(files >= 40);
  assert_int_equal(failures, 0);
}

/* ------------------------------------------------------------------ hostile inputs */

/* Run text; the first line of output must start with `first` and the errors count. */
static void expect_run(const char *text, size_t len, int errors, const char *first) {
  FeRun r = fe_run("h.bp", text, len);
  if (r.errors != errors || (first && strncmp(r.diags, first, strlen(first)) != 0))
    fprintf(stderr, "got %d errors:\n%.2000s\n", r.errors, r.diags);
  assert_int_equal(r.errors, errors);
  if (first) assert_memory_equal(r.diags, first, strlen(first));
  fe_run_free(&r);
}

static const char *const head = "model m(x: f32[B, 2]) {\n    loss ";

static char *with_loss(const char *mid, size_t midlen, size_t *len) {
  size_t h = strlen(head);
  char *t = malloc(h + midlen + 8);
  memcpy(t, head, h);
  memcpy(t + h, mid, midlen);
  memcpy(t + h + midlen, "\n}\n", 4);
  *len = h + midlen + 3;
  return t;
}

static void test_empty_file(void **state) {
  (void)state;
  expect_run("", 0, 1, "h.bp:1:1: error: no model in this file");
  expect_run("\n\n# only a comment\n", 18, 1, "h.bp:1:1: error: no model in this file");
}

static void test_nul_bytes(void **state) {
  (void)state;
  size_t len = 0;
  char *t = with_loss("mean(x)\0\0 + 1", 13, &len);
  expect_run(t, len, 1, "h.bp:2:17: error: invalid control character (byte 0x00) in program text\n");
  free(t);
  char z[64] = {0};
  expect_run(z, sizeof z, 1, "h.bp:1:1: error: invalid control character (byte 0x00) in program text\n");
}

static void test_invalid_utf8(void **state) {
  (void)state;
  size_t len = 0;
  char *t = with_loss("mean(x\xff\xfe\xc3)", 10, &len);
  expect_run(t, len, 1, "h.bp:2:16: error: non-ASCII byte 0xFF in program text (allowed only in comments)\n");
  free(t);
  const char ok[] = "# caf\xc3\xa9 \xff\xfe is fine in a comment\nmodel m(x: f32[B, 2]) {\n    loss mean(x)\n}\n";
  expect_run(ok, sizeof ok - 1, 0, NULL);
}

static void test_long_lines(void **state) {
  (void)state;
  enum { N = 100000 };
  char *mid = malloc(N + 16);
  /* a 100,000-character identifier */
  memcpy(mid, "mean(", 5);
  memset(mid + 5, 'v', N);
  memcpy(mid + 5 + N, ")", 1);
  size_t len = 0;
  char *t = with_loss(mid, N + 6, &len);
  expect_run(t, len, 1, "h.bp:2:15: error: unknown name 'vvvv");
  free(t);
  /* a 100,000-character comment */
  memcpy(mid, "mean(x) #", 9);
  memset(mid + 9, 'c', N);
  t = with_loss(mid, N + 9, &len);
  expect_run(t, len, 0, NULL);
  free(t);
  /* a 100,000-character sum: too deep, reported once */
  size_t k = 0;
  memcpy(mid, "mean(x", 6);
  k = 6;
  while (k + 4 < N) memcpy(mid + k, " + x", 4), k += 4;
  mid[k++] = ')';
  t = with_loss(mid, k, &len);
  expect_run(t, len, 1, "h.bp:2:15: error: expression nested too deeply (more than 200 levels)\n");
  free(t);
  free(mid);
}

static void test_deep_nesting(void **state) {
  (void)state;
  enum { N = 10000 };
  char *mid = malloc(3 * N + 16);
  size_t k = 0;
  memcpy(mid, "mean", 4);
  k = 4;
  for (int i = 0; i < N; i++) mid[k++] = '(';
  mid[k++] = 'x';
  for (int i = 0; i < N; i++) mid[k++] = ')';
  size_t len = 0;
  char *t = with_loss(mid, k, &len);
  expect_run(t, len, 1, "h.bp:2:");
  free(t);
  k = 0;
  memcpy(mid, "mean(", 5);
  k = 5;
  for (int i = 0; i < N; i++) mid[k++] = '-';
  mid[k++] = 'x';
  mid[k++] = ')';
  t = with_loss(mid, k, &len);
  expect_run(t, len, 1, "h.bp:2:");
  free(t);
  /* unbalanced: 10,000 open parentheses and nothing else */
  k = 0;
  for (int i = 0; i < N; i++) mid[k++] = '(';
  t = with_loss(mid, k, &len);
  FeRun r = fe_run("h.bp", t, len);
  assert_true(r.errors >= 1);
  assert_memory_equal(r.diags, "h.bp:", 5);
  fe_run_free(&r);
  free(t);
  free(mid);
}

static void test_huge_numbers(void **state) {
  (void)state;
  size_t len = 0;
  char digits[5100];
  memcpy(digits, "mean(x) * ", 10);
  memset(digits + 10, '9', 5000);
  char *t = with_loss(digits, 5010, &len);
  expect_run(t, len, 1, "h.bp:2:20: error: integer literal '9999999999999999999999999999999999999999...' is too large\n");
  free(t);
  t = with_loss("mean(x) * 1e999999", 18, &len);
  expect_run(t, len, 1, "h.bp:2:20: error: number literal '1e999999' is out of range\n");
  free(t);
  const char dim[] = "model m(x: f32[B, 99999999999]) {\n    loss mean(x)\n}\n";
  expect_run(dim, sizeof dim - 1, 1, "h.bp:1:19: error: a dimension must be an integer between 1 and 2147483647");
}

/* Layers calling layers: too deep, and exponentially many calls after inlining. */
static void test_call_explosion(void **state) {
  (void)state;
  char *t = malloc(200000);
  size_t k = (size_t)sprintf(t, "layer l0(x: [B, I]) { return relu(x) }\n");
  for (int i = 1; i < 40; i++)
    k += (size_t)sprintf(t + k, "layer l%d(x: [B, I]) { return l%d(l%d(x)) }\n", i, i - 1, i - 1);
  k += (size_t)sprintf(t + k, "model m(x: f32[B, 2]) {\n    loss mean(l39(x))\n}\n");
  FeRun r = fe_run("h.bp", t, k);
  assert_int_equal(r.errors, 1);
  assert_non_null(strstr(r.diags, "error: the program is too large: more than 100000 layer calls after inlining"));
  fe_run_free(&r);
  k = (size_t)sprintf(t, "layer l0(x: [B, I]) { return relu(x) }\n");
  for (int i = 1; i < 100; i++) k += (size_t)sprintf(t + k, "layer l%d(x: [B, I]) { return l%d(x) }\n", i, i - 1);
  k += (size_t)sprintf(t + k, "model m(x: f32[B, 2]) {\n    loss mean(l99(x))\n}\n");
  r = fe_run("h.bp", t, k);
  assert_true(r.errors >= 1);
  assert_memory_equal(r.diags, "h.bp:", 5);
  assert_non_null(strstr(r.diags, "error: layer calls nested too deeply (more than 64)"));
  fe_run_free(&r);
  free(t);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_diag_files),
      cmocka_unit_test(test_empty_file),
      cmocka_unit_test(test_nul_bytes),
      cmocka_unit_test(test_invalid_utf8),
      cmocka_unit_test(test_long_lines),
      cmocka_unit_test(test_deep_nesting),
      cmocka_unit_test(test_huge_numbers),
      cmocka_unit_test(test_call_explosion),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
