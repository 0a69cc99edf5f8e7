/* tests/runtime/test_mnist.c — the real MNIST files, where they exist.
 *
 * Reads $BPCC_SOURCE_DIR/../shared/data/mnist (CI has it); where it is absent the test
 * says so loudly and is skipped. The label counts are the published ones. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "runtime/data.h"

static void test_mnist_real(void **state) {
  (void)state;
  const char *src = getenv("BPCC_SOURCE_DIR");
  char dir[4096];
  snprintf(dir, sizeof dir, "%s/../shared/data/mnist", src ? src : ".");
  struct stat st;
  if (stat(dir, &st) != 0) {
    fprintf(stderr, "\n*** SKIPPED: MNIST not found at %s (set BPCC_SOURCE_DIR; the files are "
                    "../shared/data/mnist beside the checkout) ***\n\n", dir);
    skip();
  }
  char spec[4200];
  snprintf(spec, sizeof spec, "mnist:%s", dir);
  BprtDataset *tr, *te;
  if (bprt_data_load(spec, 0, &tr, &te) != 0) fail_msg("%s", bprt_last_error());
  assert_int_equal(tr->n, 60000);
  assert_int_equal(te->n, 10000);
  assert_int_equal(tr->nfeat, 784);
  assert_int_equal(te->nfeat, 784);
  assert_int_equal(tr->frank, 2);
  assert_int_equal(tr->fdims[0], 28);
  assert_int_equal(tr->nclasses, 10);
  static const int train_counts[10] = {5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949};
  static const int test_counts[10] = {980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009};
  int ctr[10] = {0}, cte[10] = {0};
  for (int64_t i = 0; i < tr->n; i++) ctr[tr->labels[i]]++;
  for (int64_t i = 0; i < te->n; i++) cte[te->labels[i]]++;
  for (int c = 0; c < 10; c++) {
    assert_int_equal(ctr[c], train_counts[c]);
    assert_int_equal(cte[c], test_counts[c]);
  }
  /* Pixels in [0, 1]; the well-known mean of the training set is 0.1307. */
  double sum = 0;
  float lo = 1, hi = 0;
  for (int64_t i = 0; i < tr->n * tr->nfeat; i++) {
    sum += tr->x[i];
    lo = fminf(lo, tr->x[i]);
    hi = fmaxf(hi, tr->x[i]);
  }
  assert_true(lo == 0.0f && hi == 1.0f);
  assert_true(fabs(sum / (double)(tr->n * tr->nfeat) - 0.1307) < 0.0005);
  bprt_dataset_free(tr);
  bprt_dataset_free(te);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_mnist_real)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
