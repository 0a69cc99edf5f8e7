/* bench/fxsum_bench.c — ns per element of the 128-bit fixed-point sums (runtime/fxsum.c)
 * over a gradient-sized block, beside a plain f32 add as the floor the memory sets.
 *
 *   cc -O2 -std=c11 -D_POSIX_C_SOURCE=200809L -I. bench/fxsum_bench.c runtime/fxsum.c \
 *      -o fxsum_bench && ./fxsum_bench [N] [REPS]
 *
 * N defaults to 4,194,304 (M3's gradient block is 4.2M floats), REPS (median of) to 9.
 * Inputs are gradient-like: normal(0, 1e-3) with a spread of exponents. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "runtime/fxsum.h"

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static volatile float sink;

int main(int argc, char **argv) {
  size_t n = argc > 1 ? strtoull(argv[1], NULL, 10) : 4194304;
  int reps = argc > 2 ? atoi(argv[2]) : 9;
  if (reps < 1 || reps > 100) reps = 9;
  float *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y), *out = malloc(n * sizeof *out);
  BprtFx *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b);
  if (!x || !y || !out || !a || !b) return 1;
  unsigned long long s = 88172645463325252ull;
  for (size_t i = 0; i < n; i++) {
    s ^= s << 13, s ^= s >> 7, s ^= s << 17;
    double u = ((s >> 11) + 0.5) * 0x1p-53;
    x[i] = (float)(1e-3 * (u - 0.5) * exp2((double)(int)((s & 31) - 16) * 0.5));
    y[i] = -x[i] * 0.75f;
  }
  const char *names[] = {"f32 add (y += x)", "fxsum_set_f32", "fxsum_add_f32", "fxsum_combine", "fxsum_to_f32"};
  int have = bprt_fxsum_set_simd(-1);
  static double t[2][5][100];
  for (int r = 0; r < reps; r++)
    for (int mode = 0; mode <= have; mode++) { /* scalar and AVX-512 interleaved */
      bprt_fxsum_set_simd(mode);
      double t0 = now();
      for (size_t i = 0; i < n; i++) y[i] += x[i];
      double t1 = now();
      bprt_fxsum_set_f32(a, x, n, 0.5f);
      double t2 = now();
      bprt_fxsum_add_f32(a, y, n, 0.5f);
      double t3 = now();
      memcpy(b, a, n * sizeof *a);
      double t4 = now();
      bprt_fxsum_combine(a, b, n);
      double t5 = now();
      unsigned f = bprt_fxsum_to_f32(out, a, n);
      double t6 = now();
      if (f) return 2;
      sink = y[n / 2] + out[n / 3];
      double *tm[5] = {&t[mode][0][r], &t[mode][1][r], &t[mode][2][r], &t[mode][3][r], &t[mode][4][r]};
      *tm[0] = t1 - t0, *tm[1] = t2 - t1, *tm[2] = t3 - t2, *tm[3] = t5 - t4, *tm[4] = t6 - t5;
    }
  printf("n=%zu (%.1f MiB of accumulator), median of %d\n", n, n * 16.0 / 1048576, reps);
  printf("%-18s %22s %22s\n", "", "scalar", have ? "AVX-512" : "");
  for (int k = 0; k < 5; k++) {
    printf("%-18s", names[k]);
    for (int mode = 0; mode <= have; mode++) {
      qsort(t[mode][k], (size_t)reps, sizeof(double), cmp);
      double m = t[mode][k][reps / 2];
      printf(" %8.3f ms %5.2f ns/el", m * 1e3, m * 1e9 / (double)n);
    }
    printf("\n");
  }
  return 0;
}
