/* examples/embed/embed.c — a C program that trains a model compiled by bpcc.
 *
 *   bpcc classifier.bp -o classifier.so
 *   cc -I. embed.c classifier.so -o embed -lm -Wl,-rpath,'$ORIGIN' && ./embed
 *
 * (docs/abi.md: the RUNPATH $ORIGIN finds classifier.so beside the program, from any
 * working directory; CMake projects use bpcc_add_model, as CMakeLists.txt here does.)
 *
 * It includes the generated header, creates the model, trains it on a small problem
 * built in here (three interleaved spirals in the plane), prints the falling loss,
 * measures the accuracy with forward, and round-trips a checkpoint. The exit status is
 * 0 only if the loss fell to under half its first value and the accuracy is above 90%,
 * so `make test` runs it as a test. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "classifier.h"

#define N_PER_CLASS 100
#define N (3 * N_PER_CLASS)
#define BATCH 50
#define EPOCHS 150

/* Three spirals: class k, point i at radius r = i / n and angle 4 r + 2 pi k / 3, with a
 * small deterministic wobble instead of random noise. */
static void make_spirals(float x[N][2], int32_t y[N]) {
  for (int k = 0; k < 3; k++)
    for (int i = 0; i < N_PER_CLASS; i++) {
      int r = k * N_PER_CLASS + i;
      double rad = (double)i / N_PER_CLASS;
      double t = 4.0 * rad + 2.0 * 3.14159265358979 * k / 3.0 + 0.1 * sin(12.9898 * r);
      x[r][0] = (float)(rad * sin(t));
      x[r][1] = (float)(rad * cos(t));
      y[r] = k;
    }
}

static int check(int rc, const char *what) {
  if (rc != BPCC_OK) {
    fprintf(stderr, "embed: %s: %s (code %d)\n", what, classifier_last_error(), rc);
    exit(1);
  }
  return rc;
}

/* Accuracy over the whole set, with forward. */
static double accuracy(classifier *net, float x[N][2], const int32_t y[N]) {
  static float logits[N][3];
  const void *in[CLASSIFIER_NUM_INPUTS] = {x, NULL};   /* labels are not needed */
  float *out[CLASSIFIER_NUM_OUTPUTS] = {&logits[0][0]};
  check(classifier_forward(net, N, in, out), "forward");
  int right = 0;
  for (int r = 0; r < N; r++) {
    int best = 0;
    for (int c = 1; c < 3; c++)
      if (logits[r][c] > logits[r][best]) best = c;
    right += best == y[r];
  }
  return (double)right / N;
}

int main(int argc, char **argv) {
  static float x[N][2];
  static int32_t y[N];
  make_spirals(x, y);

  classifier *net = classifier_create(42);
  if (!net) {
    fprintf(stderr, "embed: create: %s\n", classifier_last_error());
    return 1;
  }
  printf("model classifier: %d parameters\n", classifier_num_params());
  for (int i = 0; i < classifier_num_params(); i++) {
    bpcc_param_info p;
    check(classifier_param(net, i, &p), "param");
    printf("  %-10s [", p.name);
    for (int k = 0; k < p.rank; k++) printf("%s%lld", k ? "," : "", (long long)p.dims[k]);
    printf("]\n");
  }

  /* Mini-batches in a fixed interleaved order (row r, r + 6, r + 12, ...), so each
   * batch holds all three classes. */
  static float bx[BATCH][2];
  static int32_t by[BATCH];
  const void *in[CLASSIFIER_NUM_INPUTS] = {bx, by};
  double first = 0, last = 0;
  for (int epoch = 0; epoch < EPOCHS; epoch++) {
    double sum = 0;
    for (int b = 0; b < N / BATCH; b++) {
      for (int j = 0; j < BATCH; j++) {
        int r = (j * (N / BATCH) + b) % N;
        bx[j][0] = x[r][0];
        bx[j][1] = x[r][1];
        by[j] = y[r];
      }
      float loss;
      check(classifier_train_step(net, BATCH, in, &loss), "train_step");
      sum += loss;
    }
    double mean = sum / (N / BATCH);
    if (epoch == 0) first = mean;
    last = mean;
    if (epoch % 25 == 0 || epoch == EPOCHS - 1) printf("epoch %3d  loss %.4f\n", epoch + 1, mean);
    if (epoch == 100) check(classifier_set_lr(net, 0.005), "set_lr");   /* a hand-made schedule */
  }
  double acc = accuracy(net, x, y);
  printf("steps %lld  accuracy %.1f%%\n", (long long)classifier_get_step(net), 100.0 * acc);

  /* Save, load into a fresh model, and check it predicts the same. */
  const char *path = argc > 1 ? argv[1] : "classifier.safetensors";
  check(classifier_save(net, path), "save");
  classifier *copy = classifier_create(7);
  check(classifier_load(copy, path), "load");
  double acc2 = accuracy(copy, x, y);
  printf("checkpoint %s: loaded at step %lld, accuracy %.1f%%\n", path, (long long)classifier_get_step(copy),
         100.0 * acc2);
  remove(path);
  classifier_destroy(copy);
  classifier_destroy(net);

  if (!(last < 0.5 * first) || acc <= 0.9 || acc2 != acc) {
    fprintf(stderr, "embed: FAILED: loss %.4f -> %.4f, accuracy %.3f (copy %.3f)\n", first, last, acc, acc2);
    return 1;
  }
  printf("ok: the loss fell from %.4f to %.4f\n", first, last);
  return 0;
}
