/* bench/aot_step.c — the training step of a model library (`bpcc MODEL.bp -o M.so`),
 * timed in a small C process that does not link LLVM: what an application that embeds
 * the library pays in time and memory.
 *
 *   aot_step LIB.so MODEL BATCH STEPS THREADS
 *   -> aot MODEL ms_median ms_min ms_max peak_rss_mib
 *
 * Inputs are seeded random data of the right shapes (floats uniform in [0, 1), labels
 * uniform over the classes), as `bpcc bench` makes them; 5 warm-up steps, then STEPS
 * timed one by one. Peak RSS is the process's whole high-water mark (getrusage). */
#define _POSIX_C_SOURCE 200809L
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

typedef struct {          /* bpcc_tensor_info of the generated header (docs/abi.md) */
  const char *name;
  int32_t is_label;
  int32_t rank;
  int64_t dims[4];
} tensor_info;

static void *sym(void *lib, const char *model, const char *what) {
  char name[256];
  snprintf(name, sizeof name, "%s_%s", model, what);
  void *p = dlsym(lib, name);
  if (!p) {
    fprintf(stderr, "aot_step: %s not found: %s\n", name, dlerror());
    exit(1);
  }
  return p;
}

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
  if (argc != 6) {
    fprintf(stderr, "usage: aot_step LIB.so MODEL BATCH STEPS THREADS\n");
    return 1;
  }
  const char *model = argv[2];
  long batch = atol(argv[3]), steps = atol(argv[4]), threads = atol(argv[5]);
  if (batch < 1 || steps < 1) return 1;
  void *lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    fprintf(stderr, "aot_step: %s\n", dlerror());
    return 1;
  }
  void *(*create)(uint64_t) = (void *(*)(uint64_t))sym(lib, model, "create");
  int (*ninputs)(void) = (int (*)(void))sym(lib, model, "num_inputs");
  int (*input_info)(int, void *) = (int (*)(int, void *))sym(lib, model, "input_info");
  int (*train_step)(void *, int64_t, const void *const *, float *) =
      (int (*)(void *, int64_t, const void *const *, float *))sym(lib, model, "train_step");
  int (*set_threads)(int) = (int (*)(int))sym(lib, model, "set_threads");
  const char *(*last_error)(void) = (const char *(*)(void))sym(lib, model, "last_error");
  set_threads((int)threads);
  void *net = create(42);
  if (!net) {
    fprintf(stderr, "aot_step: create: %s\n", last_error());
    return 1;
  }
  int ni = ninputs();
  const void **in = calloc((size_t)ni + 1, sizeof *in);
  uint64_t s = 0x9e3779b97f4a7c15ull;
  for (int i = 0; i < ni; i++) {
    tensor_info t;
    if (input_info(i, &t) != 0) return 1;
    int64_t row = 1;
    for (int k = 1; k < t.rank - (t.is_label ? 1 : 0); k++) row *= t.dims[k];
    int64_t n = batch * row;
    if (t.is_label) {   /* one class index per row, or per position of a sequence */
      int32_t *y = malloc((size_t)n * sizeof *y);
      for (int64_t r = 0; r < n; r++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        y[r] = (int32_t)((s >> 33) % (uint64_t)t.dims[t.rank - 1]);
      }
      in[i] = y;
    } else {
      float *x = malloc((size_t)n * sizeof *x);
      for (int64_t e = 0; e < n; e++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        x[e] = (float)((s >> 40) * (1.0 / 16777216.0));
      }
      in[i] = x;
    }
  }
  float loss;
  for (int w = 0; w < 5; w++)
    if (train_step(net, batch, in, &loss) != 0) {
      fprintf(stderr, "aot_step: train_step: %s\n", last_error());
      return 1;
    }
  double *t = malloc((size_t)steps * sizeof *t);
  for (long k = 0; k < steps; k++) {
    double t0 = now_ms();
    train_step(net, batch, in, &loss);
    t[k] = now_ms() - t0;
  }
  qsort(t, (size_t)steps, sizeof *t, cmp);
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  printf("aot %s %.3f %.3f %.3f %.1f\n", model, t[steps / 2], t[0], t[steps - 1], (double)ru.ru_maxrss / 1024.0);
  return 0;
}
