/* tests/frontend/test_sweep.c — every prefix of every example (examples/NAME.bp) fed to the
 * frontend: each either checks cleanly or gets diagnostics that are all located
 * (`file:LINE:COL: error:` with LINE >= 1), and none crashes or hangs. */
#include "fe_test.h"

#include <dirent.h>

/* Every error line of the output is located in the file. */
static bool all_located(const char *diags, const char *name) {
  size_t n = strlen(name);
  for (const char *line = diags; line && *line;) {
    const char *e = strchr(line, '\n');
    const char *err = strstr(line, ": error: ");
    if (err && (!e || err < e)) {
      int l = 0, c = 0;
      if (strncmp(line, name, n) != 0 || sscanf(line + n, ":%d:%d: error: ", &l, &c) != 2 || l < 1 || c < 1) return false;
    }
    line = e ? e + 1 : NULL;
  }
  return true;
}

static void test_prefixes(void **state) {
  (void)state;
  char path[4096];
  const char *root = getenv("BPCC_SOURCE_DIR");
  snprintf(path, sizeof path, "%s/examples", root ? root : ".");
  DIR *d = opendir(path);
  assert_non_null(d);
  int files = 0;
  long runs = 0, clean = 0;
  for (struct dirent *e; (e = readdir(d)) != NULL;) {
    size_t n = strlen(e->d_name);
    if (n < 4 || strcmp(e->d_name + n - 3, ".bp") != 0) continue;
    char rel[1024];
    snprintf(rel, sizeof rel, "examples/%s", e->d_name);
    size_t len = 0;
    char *text = fe_read_source(rel, &len);
    assert_non_null(text);
    for (size_t k = 0; k <= len; k++) {
      FeRun r = fe_run(e->d_name, text, k);
      if (r.errors == 0) clean++;
      if (r.errors > 0 && !all_located(r.diags, e->d_name)) {
        fprintf(stderr, "prefix of %zu bytes of %s:\n%s", k, e->d_name, r.diags);
        fail();
      }
      fe_run_free(&r);
      runs++;
    }
    /* the whole file checks cleanly */
    FeRun r = fe_run(e->d_name, text, len);
    assert_int_equal(r.errors, 0);
    fe_run_free(&r);
    free(text);
    files++;
  }
  closedir(d);
  assert_true(files >= 3);
  assert_true(clean >= files);
  printf("swept %ld prefixes of %d examples (%ld check cleanly)\n", runs, files, clean);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_prefixes),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
