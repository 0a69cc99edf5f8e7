/* tests/runtime/test_core.c — allocation hook, errors, Philox4x32-10, fills, init. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "ir/ir.h"            /* only for InitKind: the runtime's copy must agree */
#include "runtime/runtime.h"

_Static_assert((int)BPRT_INIT_ZEROS == (int)INIT_ZEROS, "init enum order");
_Static_assert((int)BPRT_INIT_ONES == (int)INIT_ONES, "init enum order");
_Static_assert((int)BPRT_INIT_CONSTANT == (int)INIT_CONSTANT, "init enum order");
_Static_assert((int)BPRT_INIT_NORMAL == (int)INIT_NORMAL, "init enum order");
_Static_assert((int)BPRT_INIT_UNIFORM == (int)INIT_UNIFORM, "init enum order");
_Static_assert((int)BPRT_INIT_XAVIER_UNIFORM == (int)INIT_XAVIER_UNIFORM, "init enum order");
_Static_assert((int)BPRT_INIT_XAVIER_NORMAL == (int)INIT_XAVIER_NORMAL, "init enum order");
_Static_assert((int)BPRT_INIT_HE_UNIFORM == (int)INIT_HE_UNIFORM, "init enum order");
_Static_assert((int)BPRT_INIT_HE_NORMAL == (int)INIT_HE_NORMAL, "init enum order");
_Static_assert((int)BPRT_INIT__COUNT == (int)INIT__COUNT, "init enum order");

/* ------------------------------------------------------------------ allocation */

static void test_alloc_aligned(void **state) {
  (void)state;
  for (size_t n = 0; n < 300; n += 37) {
    void *p = bprt_malloc(n);
    assert_non_null(p);
    assert_int_equal((uintptr_t)p % BPRT_ALIGN, 0);
    memset(p, 0xab, n);
    bprt_free(p);
  }
  unsigned char *z = bprt_calloc(100, 3);
  assert_non_null(z);
  for (int i = 0; i < 300; i++) assert_int_equal(z[i], 0);
  bprt_free(z);
}

static void test_alloc_fail_injection(void **state) {
  (void)state;
  bprt_alloc_fail_after(0);
  assert_null(bprt_malloc(100));
  assert_string_equal(bprt_last_error(), "out of memory (allocating 100 bytes)");
  assert_null(bprt_realloc(NULL, 7));   /* stays failing until reset */
  bprt_alloc_fail_after(2);
  void *a = bprt_malloc(8), *b = bprt_strdup("xy");
  assert_non_null(a);
  assert_non_null(b);
  assert_null(bprt_calloc(4, 4));
  assert_string_equal(bprt_last_error(), "out of memory (allocating 16 bytes)");
  bprt_alloc_fail_after(-1);
  void *c = bprt_malloc(8);
  assert_non_null(c);
  bprt_free(a), bprt_free(b), bprt_free(c);
  assert_null(bprt_calloc(SIZE_MAX / 2, 4));
  assert_non_null(strstr(bprt_last_error(), "overflows"));
  long before = bprt_alloc_count();
  bprt_free(bprt_malloc(1));
  assert_int_equal(bprt_alloc_count(), before + 1);
}

/* ------------------------------------------------------------------ errors */

static void *other_thread(void *arg) {
  (void)arg;
  return (void *)(uintptr_t)(bprt_last_error()[0] == 0 && bprt_set_error("elsewhere") == -1);
}

static void test_errors(void **state) {
  (void)state;
  bprt_clear_error();
  assert_string_equal(bprt_last_error(), "");
  assert_int_equal(bprt_set_error("bad %s at %d", "thing", 7), -1);
  assert_string_equal(bprt_last_error(), "bad thing at 7");
  assert_int_equal(bprt_prefix_error("file.bin"), -1);
  assert_string_equal(bprt_last_error(), "file.bin: bad thing at 7");
  /* Thread-local: another thread starts empty and does not disturb this one. */
  pthread_t t;
  void *ok;
  pthread_create(&t, NULL, other_thread, NULL);
  pthread_join(t, &ok);
  assert_true(ok != NULL);
  assert_string_equal(bprt_last_error(), "file.bin: bad thing at 7");
  /* Long messages are truncated, not overflowed. */
  char big[3000];
  memset(big, 'x', sizeof big - 1);
  big[sizeof big - 1] = 0;
  bprt_set_error("%s", big);
  bprt_prefix_error("%s", big);
  assert_int_equal(strlen(bprt_last_error()), 1023);
  bprt_clear_error();
}

/* ------------------------------------------------------------------ Philox */

/* Random123's tests/kat_vectors, the three "philox4x32 10" lines (ctr[4] key[2] out[4]). */
static void test_philox_kat(void **state) {
  (void)state;
  static const uint32_t kat[3][10] = {
      {0, 0, 0, 0, 0, 0, 0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8},
      {0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0x408f276d, 0x41c83b0e,
       0xa20bc7c6, 0x6d5451fd},
      {0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344, 0xa4093822, 0x299f31d0, 0xd16cfe09, 0x94fdcceb,
       0x5001e420, 0x24126ea1},
  };
  for (int i = 0; i < 3; i++) {
    uint32_t out[4];
    bprt_philox4x32_10(kat[i], kat[i] + 4, out);
    for (int k = 0; k < 4; k++) assert_int_equal(out[k], kat[i][6 + k]);
  }
  /* The (seed, stream, index) layout: seed 0, stream 0, indices 0..3 = block 0. */
  for (int k = 0; k < 4; k++) assert_int_equal(bprt_rng_u32(0, 0, (uint64_t)k), kat[0][6 + k]);
  /* Stream in counter words 2..3, seed in the key: the third vector with block =
   * 0x85a308d3243f6a88 is out of reach of a 64-bit index, so check the words. */
  uint32_t out[4];
  const uint32_t ctr[4] = {5, 0, 0x13198a2e, 0x03707344}, key[2] = {0xa4093822, 0x299f31d0};
  bprt_philox4x32_10(ctr, key, out);
  assert_int_equal(bprt_rng_u32(0x299f31d0a4093822ull, 0x0370734413198a2eull, 5 * 4 + 2), out[2]);
  assert_int_equal(bprt_rng_u64(0x299f31d0a4093822ull, 0x0370734413198a2eull, 5 * 2 + 1),
                   (uint64_t)out[2] | (uint64_t)out[3] << 32);
}

static double mean_of(const float *x, int64_t n) {
  double s = 0;
  for (int64_t i = 0; i < n; i++) s += x[i];
  return s / (double)n;
}

static double std_of(const float *x, int64_t n) {
  double m = mean_of(x, n), s = 0;
  for (int64_t i = 0; i < n; i++) s += (x[i] - m) * (x[i] - m);
  return sqrt(s / (double)n);
}

/* Fills give the same bits whatever the thread count, and equal the scalar functions. */
static void test_fill_thread_independent(void **state) {
  (void)state;
  const int64_t n = 1000003;
  float *ref = malloc(sizeof(float) * (size_t)n), *x = malloc(sizeof(float) * (size_t)n);
  int counts[] = {1, 2, 3, 7};
  for (int kind = 0; kind < 3; kind++) {
    for (int c = 0; c < 4; c++) {
      assert_int_equal(bprt_set_threads(counts[c]), 0);
      float *dst = c == 0 ? ref : x;
      if (kind == 0) bprt_fill_uniform(dst, n, -2.0f, 3.0f, 42, 9, 0);
      if (kind == 1) bprt_fill_normal(dst, n, 1.0f, 0.5f, 42, 9, 0);
      if (kind == 2) bprt_dropout_mask(dst, n, 0.3f, 42, bprt_stream_dropout(1, 77));
      if (c > 0) assert_memory_equal(ref, x, sizeof(float) * (size_t)n);
    }
  }
  /* Offsets: filling from element 5 on gives the tail of the full fill. */
  bprt_fill_normal(ref, n, 0.0f, 1.0f, 3, 4, 0);
  bprt_fill_normal(x, n - 5, 0.0f, 1.0f, 3, 4, 5);
  assert_memory_equal(ref + 5, x, sizeof(float) * (size_t)(n - 5));
  for (int64_t i = 0; i < 1000; i++) assert_true(ref[i] == (float)bprt_rng_normal(3, 4, (uint64_t)i));
  bprt_fill_uniform(ref, 1000, 0.0f, 1.0f, 3, 4, 0);
  for (int64_t i = 0; i < 1000; i++) assert_true(ref[i] == bprt_rng_uniform(3, 4, (uint64_t)i));
  bprt_shutdown();
  free(ref);
  free(x);
}

/* Statistics of 10^6 draws. Standard errors: uniform mean 0.0003, normal mean 0.001,
 * normal std 0.0007; the tolerances are 5 or more of them. */
static void test_rng_statistics(void **state) {
  (void)state;
  const int64_t n = 1000000;
  float *x = malloc(sizeof(float) * (size_t)n);
  bprt_fill_uniform(x, n, 0.0f, 1.0f, 1, 2, 0);
  float lo = 1, hi = 0;
  for (int64_t i = 0; i < n; i++) lo = fminf(lo, x[i]), hi = fmaxf(hi, x[i]);
  assert_true(lo >= 0.0f && hi < 1.0f);
  assert_true(fabs(mean_of(x, n) - 0.5) < 0.002);
  assert_true(fabs(std_of(x, n) - sqrt(1.0 / 12)) < 0.002);
  bprt_fill_normal(x, n, 0.0f, 1.0f, 1, 3, 0);
  assert_true(fabs(mean_of(x, n)) < 0.005);
  assert_true(fabs(std_of(x, n) - 1.0) < 0.005);
  int64_t tail = 0;
  for (int64_t i = 0; i < n; i++) tail += fabsf(x[i]) > 1.959964f;
  assert_true(fabs((double)tail / (double)n - 0.05) < 0.002);     /* 5% outside +-1.96 */
  bprt_dropout_mask(x, n, 0.25f, 5, 6);
  int64_t zeros = 0;
  for (int64_t i = 0; i < n; i++) {
    assert_true(x[i] == 0.0f || x[i] == 1.0f / 0.75f);
    zeros += x[i] == 0.0f;
  }
  assert_true(fabs((double)zeros / (double)n - 0.25) < 0.003);
  /* Different seeds and streams give different sequences. */
  assert_true(bprt_rng_u32(1, 2, 0) != bprt_rng_u32(2, 2, 0));
  assert_true(bprt_rng_u32(1, 2, 0) != bprt_rng_u32(1, 3, 0));
  for (int i = 0; i < 1000; i++) assert_true(bprt_rng_below(7, 8, (uint64_t)i, 10) < 10);
  assert_int_equal(bprt_rng_below(7, 8, 0, 1), 0);
  free(x);
}

/* ------------------------------------------------------------------ init */

static void test_init_exact(void **state) {
  (void)state;
  float x[12];
  const int64_t dims[2] = {3, 4};
  memset(x, 0x7f, sizeof x);
  assert_int_equal(bprt_init_tensor(x, 2, dims, BPRT_INIT_ZEROS, 0, 0, 1, 0), 0);
  for (int i = 0; i < 12; i++) assert_true(x[i] == 0.0f);
  assert_int_equal(bprt_init_tensor(x, 2, dims, BPRT_INIT_ONES, 0, 0, 1, 0), 0);
  for (int i = 0; i < 12; i++) assert_true(x[i] == 1.0f);
  assert_int_equal(bprt_init_tensor(x, 2, dims, BPRT_INIT_CONSTANT, 0.25, 0, 1, 0), 0);
  for (int i = 0; i < 12; i++) assert_true(x[i] == 0.25f);
  assert_int_equal(bprt_init_tensor(x, 0, NULL, BPRT_INIT_CONSTANT, -3, 0, 1, 0), 0);
  assert_true(x[0] == -3.0f);
  /* Same (seed, stream): same values; another stream: different. */
  float y[12];
  bprt_init_tensor(x, 2, dims, BPRT_INIT_HE_NORMAL, 0, 0, 11, 2);
  bprt_init_tensor(y, 2, dims, BPRT_INIT_HE_NORMAL, 0, 0, 11, 2);
  assert_memory_equal(x, y, sizeof x);
  bprt_init_tensor(y, 2, dims, BPRT_INIT_HE_NORMAL, 0, 0, 11, 3);
  assert_memory_not_equal(x, y, sizeof x);
  assert_string_equal(bprt_init_names[BPRT_INIT_XAVIER_UNIFORM], "xavier_uniform");
  assert_string_equal(bprt_init_names[BPRT_INIT_HE_NORMAL], "he_normal");
}

static void test_init_fans(void **state) {
  (void)state;
  double in, out;
  const int64_t w[2] = {784, 800}, v[1] = {10}, conv[4] = {16, 3, 5, 5};   /* conv: [out, in, kh, kw] */
  assert_int_equal(bprt_init_fans(2, w, &in, &out), 0);
  assert_true(in == 784 && out == 800);
  assert_int_equal(bprt_init_fans(1, v, &in, &out), 0);
  assert_true(in == 10 && out == 10);
  assert_int_equal(bprt_init_fans(0, NULL, &in, &out), 0);
  assert_true(in == 1 && out == 1);
  assert_int_equal(bprt_init_fans(4, conv, &in, &out), 0);
  assert_true(in == 75 && out == 400);
  const int64_t bad[2] = {3, 0};
  assert_int_equal(bprt_init_fans(2, bad, &in, &out), -1);
  assert_string_equal(bprt_last_error(), "init: dimension 1 is 0; must be >= 1");
}

/* One distributional check: mean within mtol, std within 1% of the target (standard
 * error of the std of 6e5 draws is 0.1%), and uniform ones inside their bounds. */
static void check_init(int kind, double a, double b, double want_std, double bound) {
  const int64_t dims[2] = {784, 800};
  const int64_t n = 784 * 800;
  float *x = malloc(sizeof(float) * (size_t)n);
  assert_int_equal(bprt_init_tensor(x, 2, dims, kind, a, b, 1234, 5), 0);
  double m = mean_of(x, n), s = std_of(x, n);
  assert_true(fabs(m) < 0.01 * want_std);
  assert_true(fabs(s / want_std - 1.0) < 0.01);
  if (bound > 0)
    for (int64_t i = 0; i < n; i++) assert_true(x[i] >= (float)-bound && x[i] <= (float)bound);
  free(x);
}

static void test_init_statistics(void **state) {
  (void)state;
  check_init(BPRT_INIT_NORMAL, 0.02, 0, 0.02, 0);
  double xu = sqrt(6.0 / (784 + 800));
  check_init(BPRT_INIT_XAVIER_UNIFORM, 0, 0, xu / sqrt(3.0), xu);
  check_init(BPRT_INIT_XAVIER_NORMAL, 0, 0, sqrt(2.0 / (784 + 800)), 0);
  double hu = sqrt(6.0 / 784);
  check_init(BPRT_INIT_HE_UNIFORM, 0, 0, hu / sqrt(3.0), hu);
  check_init(BPRT_INIT_HE_NORMAL, 0, 0, sqrt(2.0 / 784), 0);
  check_init(BPRT_INIT_UNIFORM, -0.5, 0.5, 1.0 / sqrt(12.0), 0.5);
  /* uniform(a, b) with a != -b: mean (a + b) / 2. */
  const int64_t v[1] = {100000};
  float *x = malloc(sizeof(float) * 100000);
  assert_int_equal(bprt_init_tensor(x, 1, v, BPRT_INIT_UNIFORM, -0.1, 0.3, 9, 9), 0);
  for (int i = 0; i < 100000; i++) assert_true(x[i] >= -0.1f && x[i] < 0.3f);
  assert_true(fabs(mean_of(x, 100000) - 0.1) < 0.002);
  free(x);
}

static void test_init_errors(void **state) {
  (void)state;
  float x[4];
  const int64_t d[1] = {4};
  assert_int_equal(bprt_init_tensor(x, 1, d, 99, 0, 0, 0, 0), -1);
  assert_string_equal(bprt_last_error(), "init: unknown initializer kind 99");
  assert_int_equal(bprt_init_tensor(x, 1, d, BPRT_INIT_NORMAL, -1, 0, 0, 0), -1);
  assert_string_equal(bprt_last_error(), "init: normal std -1 must be finite and >= 0");
  assert_int_equal(bprt_init_tensor(x, 1, d, BPRT_INIT_UNIFORM, 1, 0, 0, 0), -1);
  assert_string_equal(bprt_last_error(), "init: uniform(1, 0) needs finite a <= b");
  assert_int_equal(bprt_init_tensor(NULL, 1, d, BPRT_INIT_ZEROS, 0, 0, 0, 0), -1);
  assert_string_equal(bprt_last_error(), "init: NULL data pointer");
  assert_int_equal(bprt_init_tensor(x, 9, d, BPRT_INIT_ZEROS, 0, 0, 0, 0), -1);
  assert_string_equal(bprt_last_error(), "init: rank 9 is out of range 0..8");
  assert_int_equal(bprt_init_tensor(x, 1, d, BPRT_INIT_CONSTANT, INFINITY, 0, 0, 0), -1);
  assert_string_equal(bprt_last_error(), "init: constant value inf is not finite");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_alloc_aligned),       cmocka_unit_test(test_alloc_fail_injection),
      cmocka_unit_test(test_errors),              cmocka_unit_test(test_philox_kat),
      cmocka_unit_test(test_fill_thread_independent), cmocka_unit_test(test_rng_statistics),
      cmocka_unit_test(test_init_exact),          cmocka_unit_test(test_init_fans),
      cmocka_unit_test(test_init_statistics),     cmocka_unit_test(test_init_errors),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  bprt_shutdown();
  return rc;
}
