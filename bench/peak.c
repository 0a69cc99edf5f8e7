/* bench/peak.c — the machine's FP32 FMA peak, measured in the same run as the models.
 *
 * Each thread runs independent chains of vfmadd on 12 vector accumulators (enough to
 * cover FMA latency x throughput on Zen 4 and Intel cores), so the loop is bound by FMA
 * throughput alone. Reports GFLOP/s for 1 thread and for N threads (2 FLOP per lane per
 * FMA). The widest vector ISA the CPU has is chosen at run time. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <immintrin.h>

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

#define ITERS 20000000L

/* Twelve named accumulators (not an array) so they stay in registers at -O2. */
#define FMA12(F)                                                                       \
  a0 = F(a0, b, c); a1 = F(a1, b, c); a2 = F(a2, b, c); a3 = F(a3, b, c);              \
  a4 = F(a4, b, c); a5 = F(a5, b, c); a6 = F(a6, b, c); a7 = F(a7, b, c);              \
  a8 = F(a8, b, c); a9 = F(a9, b, c); a10 = F(a10, b, c); a11 = F(a11, b, c)

__attribute__((target("avx512f"))) static float fma512(long iters) {
  __m512 b = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-7f);
  __m512 a0 = _mm512_set1_ps(0), a1 = _mm512_set1_ps(1), a2 = _mm512_set1_ps(2),
         a3 = _mm512_set1_ps(3), a4 = _mm512_set1_ps(4), a5 = _mm512_set1_ps(5),
         a6 = _mm512_set1_ps(6), a7 = _mm512_set1_ps(7), a8 = _mm512_set1_ps(8),
         a9 = _mm512_set1_ps(9), a10 = _mm512_set1_ps(10), a11 = _mm512_set1_ps(11);
  for (long k = 0; k < iters; k++) { FMA12(_mm512_fmadd_ps); }
  __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)),
                           _mm512_add_ps(_mm512_add_ps(a4, a5), _mm512_add_ps(a6, a7)));
  s = _mm512_add_ps(s, _mm512_add_ps(_mm512_add_ps(a8, a9), _mm512_add_ps(a10, a11)));
  return _mm512_reduce_add_ps(s);
}

__attribute__((target("avx2,fma"))) static float fma256(long iters) {
  __m256 b = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
  __m256 a0 = _mm256_set1_ps(0), a1 = _mm256_set1_ps(1), a2 = _mm256_set1_ps(2),
         a3 = _mm256_set1_ps(3), a4 = _mm256_set1_ps(4), a5 = _mm256_set1_ps(5),
         a6 = _mm256_set1_ps(6), a7 = _mm256_set1_ps(7), a8 = _mm256_set1_ps(8),
         a9 = _mm256_set1_ps(9), a10 = _mm256_set1_ps(10), a11 = _mm256_set1_ps(11);
  for (long k = 0; k < iters; k++) { FMA12(_mm256_fmadd_ps); }
  __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)),
                           _mm256_add_ps(_mm256_add_ps(a4, a5), _mm256_add_ps(a6, a7)));
  s = _mm256_add_ps(s, _mm256_add_ps(_mm256_add_ps(a8, a9), _mm256_add_ps(a10, a11)));
  float out[8];
  _mm256_storeu_ps(out, s);
  return out[0] + out[7];
}

static int lanes;
static volatile float sink;

static void *worker(void *arg) {
  long iters = *(long *)arg;
  sink = lanes == 16 ? fma512(iters) : fma256(iters);
  return NULL;
}

/* GFLOP/s with n threads, best of 3. */
static double measure(int n, long iters) {
  double best = 0;
  for (int rep = 0; rep < 3; rep++) {
    pthread_t t[64];
    double t0 = now();
    for (int i = 0; i < n; i++) pthread_create(&t[i], NULL, worker, &iters);
    for (int i = 0; i < n; i++) pthread_join(t[i], NULL);
    double dt = now() - t0;
    double g = (double)n * (double)iters * 12.0 * lanes * 2.0 / dt * 1e-9;
    if (g > best) best = g;
  }
  return best;
}

int main(int argc, char **argv) {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) lanes = 16;
  else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) lanes = 8;
  else { printf("peak: no AVX2/FMA on this CPU\n"); return 1; }
  long iters = ITERS;
  int threads = (int)sysconf(_SC_NPROCESSORS_ONLN);
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--quick") == 0) iters = ITERS / 100;
    else if (strncmp(argv[i], "--threads=", 10) == 0) threads = atoi(argv[i] + 10);
  }
  if (threads < 1 || threads > 64) threads = 1;
  measure(1, iters / 10);   /* warm up clocks */
  double one = measure(1, iters), all = measure(threads, iters);
  printf("peak_gflops_1thread %.1f\npeak_gflops_%dthreads %.1f\nvector_lanes %d\n", one, threads, all, lanes);
  return 0;
}
