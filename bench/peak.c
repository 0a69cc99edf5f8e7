/* bench/peak.c — the machine's FP32 FMA peak, measured in the same run as the models.
 *
 * Each thread runs independent chains of vfmadd on 12 vector accumulators (enough to
 * cover FMA latency x throughput on Zen 4 and Intel cores), so the loop is bound by FMA
 * throughput alone. Reports GFLOP/s for 1 thread and for N threads (2 FLOP per lane per
 * FMA). The widest vector ISA the CPU has is chosen at run time.
 *
 * It also names the CPU, from CPUID rather than /proc/cpuinfo, so that every run's header
 * and CSV say which machine the figures belong to (the project's machines change from
 * one session to the next: Intel Xeons, AMD Zen 4 and Zen 5):
 *   cpu_vendor GenuineIntel | AuthenticAMD | ...
 *   cpu_family N, cpu_model N    (decimal, the display family and model)
 *   cpu_model_name ...           (the brand string)
 *   cpu_uarch Zen 4 | Zen 5 | ... | Intel | the vendor   (what the family and model tell) */
#include <cpuid.h>
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

/* AMD's microarchitecture from the display family and model, by the model ranges AMD
 * has published (the ones the Linux kernel keys its Zen feature bits on). A model
 * outside them is not guessed: the caller prints the vendor and numbers instead. */
static const char *amd_uarch(unsigned family, unsigned model) {
  if (family == 0x17) {
    if (model <= 0x2f || (model >= 0x50 && model <= 0x5f)) return "Zen / Zen+";
    if ((model >= 0x30 && model <= 0x4f) || (model >= 0x60 && model <= 0x7f) ||
        (model >= 0x90 && model <= 0x91) || (model >= 0xa0 && model <= 0xaf))
      return "Zen 2";
  } else if (family == 0x19) {
    if (model <= 0x0f || (model >= 0x20 && model <= 0x5f)) return "Zen 3";
    if ((model >= 0x10 && model <= 0x1f) || (model >= 0x60 && model <= 0xaf)) return "Zen 4";
  } else if (family == 0x1a) {
    if (model <= 0x2f || (model >= 0x40 && model <= 0x4f) || (model >= 0x60 && model <= 0x7f))
      return "Zen 5";
  }
  return NULL;
}

/* Prints the cpu_* lines (see the header comment). Intel's model numbers are not turned
 * into a name: under a hypervisor they need not match the core (this project's Xeon
 * reports model 167 and has AMX, which no model-167 part has), so "Intel" and the numbers
 * are all that is claimed. */
static void print_cpu(void) {
  unsigned a, b, c, d;
  char vendor[13] = "unknown";
  unsigned family = 0, model = 0;
  if (__get_cpuid(0, &a, &b, &c, &d)) {
    memcpy(vendor, &b, 4);
    memcpy(vendor + 4, &d, 4);
    memcpy(vendor + 8, &c, 4);
    vendor[12] = 0;
  }
  if (__get_cpuid(1, &a, &b, &c, &d)) {
    unsigned base_family = (a >> 8) & 0xf, base_model = (a >> 4) & 0xf;
    family = base_family == 0xf ? base_family + ((a >> 20) & 0xff) : base_family;
    model = base_family == 0x6 || base_family == 0xf ? (((a >> 16) & 0xf) << 4) | base_model
                                                     : base_model;
  }
  char brand[49] = "";
  if (__get_cpuid_max(0x80000000, NULL) >= 0x80000004) {
    unsigned w[12];
    for (unsigned leaf = 0; leaf < 3; leaf++)
      __get_cpuid(0x80000002 + leaf, &w[4 * leaf], &w[4 * leaf + 1], &w[4 * leaf + 2],
                  &w[4 * leaf + 3]);
    memcpy(brand, w, 48);
    brand[48] = 0;
  }
  /* the brand string is padded with spaces (leading on some Intel parts) */
  char *name = brand;
  while (*name == ' ') name++;
  size_t len = strlen(name);
  while (len > 0 && name[len - 1] == ' ') name[--len] = 0;
  const char *uarch = vendor;
  if (strcmp(vendor, "AuthenticAMD") == 0) {
    uarch = amd_uarch(family, model);
    if (!uarch) uarch = "AMD";
  } else if (strcmp(vendor, "GenuineIntel") == 0) {
    uarch = "Intel";
  }
  printf("cpu_vendor %s\ncpu_family %u\ncpu_model %u\ncpu_model_name %s\ncpu_uarch %s\n", vendor,
         family, model, *name ? name : "unknown", uarch);
}

/* peak [--threads=N] [--quick]: the peak lines; peak --cpu: the cpu_* lines only. */
int main(int argc, char **argv) {
  long iters = ITERS;
  int threads = (int)sysconf(_SC_NPROCESSORS_ONLN);
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--quick") == 0) iters = ITERS / 100;
    else if (strncmp(argv[i], "--threads=", 10) == 0) threads = atoi(argv[i] + 10);
    else if (strcmp(argv[i], "--cpu") == 0) { print_cpu(); return 0; }
  }
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) lanes = 16;
  else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) lanes = 8;
  else { printf("peak: no AVX2/FMA on this CPU\n"); return 1; }
  if (threads < 1 || threads > 64) threads = 1;
  measure(1, iters / 10);   /* warm up clocks */
  double one = measure(1, iters), all = measure(threads, iters);
  printf("peak_gflops_1thread %.1f\npeak_gflops_%dthreads %.1f\nvector_lanes %d\n", one, threads, all, lanes);
  return 0;
}
