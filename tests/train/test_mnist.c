/* tests/train/test_mnist.c — one epoch of examples/mnist_mlp.bp (its train block: adam
 * lr 1e-3, batch 128, seed 42) on the real MNIST files must reach >= 96% test accuracy.
 * Where BPCC_SOURCE_DIR/../shared/data/mnist is absent the test says SKIPPED loudly and
 * exits 77 (ctest's SKIP_RETURN_CODE). */
#include <math.h>

#include "tests/train/jit.h"

int main(void) {
  const char *src = getenv("BPCC_SOURCE_DIR");
  if (!src) src = ".";
  char dir[4096], probe[4200], bp[4200];
  snprintf(dir, sizeof dir, "%s/../shared/data/mnist", src);
  snprintf(probe, sizeof probe, "%s/train-images-idx3-ubyte.gz", dir);
  char probe_raw[4200];
  snprintf(probe_raw, sizeof probe_raw, "%s/train-images-idx3-ubyte", dir);
  if (access(probe, R_OK) != 0 && access(probe_raw, R_OK) != 0) {
    printf("\n*** SKIPPED: train_mnist: no MNIST files in %s ***\n\n", dir);
    return 77;
  }
  snprintf(bp, sizeof bp, "%s/examples/mnist_mlp.bp", src);
  char *text = test_slurp(bp, NULL);
  if (!text) {
    fprintf(stderr, "FAIL: cannot read %s\n", bp);
    return 1;
  }
  TestJit j;
  if (!test_jit(&j, text, BPRT_OPT_ADAM, NULL)) {
    fprintf(stderr, "FAIL: %s does not compile\n", bp);
    return 1;
  }
  BprtDataset *train = NULL, *test = NULL;
  char spec[4200];
  snprintf(spec, sizeof spec, "mnist:%s", dir);
  if (bprt_data_load(spec, 42, &train, &test) || !test) {
    fprintf(stderr, "FAIL: %s\n", bprt_last_error());
    return 1;
  }
  bprt_model *m = bprt_model_create(j.desc, j.train.seed);
  BprtTrainOptions o;
  bprt_train_options_defaults(&o);
  o.epochs = 1;
  o.batch = j.train.batch;
  o.seed = j.train.seed;
  o.progress = 0;
  bprt_schedule_init(&o.schedule, BPRT_SCHED_CONSTANT, j.train.opt.hyper[BPRT_H_LR]);
  BprtTrainResult r;
  if (!m || bprt_train(m, train, test, &o, &r)) {
    fprintf(stderr, "FAIL: %s\n", bprt_last_error());
    return 1;
  }
  double loss, acc;
  if (bprt_evaluate(m, test, 1000, &loss, &acc)) {
    fprintf(stderr, "FAIL: %s\n", bprt_last_error());
    return 1;
  }
  printf("mnist_mlp, 1 epoch (batch %lld, adam lr %g, seed %llu): test loss %.4f, test accuracy %.2f%%\n",
         (long long)o.batch, j.train.opt.hyper[BPRT_H_LR], (unsigned long long)o.seed, loss, 100 * acc);
  int status = acc >= 0.96 ? 0 : 1;
  if (status) fprintf(stderr, "FAIL: test accuracy %.2f%% < 96%%\n", 100 * acc);
  bprt_model_destroy(m);
  bprt_dataset_free(train);
  bprt_dataset_free(test);
  test_jit_free(&j);
  free(text);
  return status;
}
