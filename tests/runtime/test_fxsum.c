/* tests/runtime/test_fxsum.c — the 128-bit fixed-point sums of runtime/fxsum.c: the
 * grid and its rounding, exact sums against long double and against 128-bit integers,
 * the same bits for any order and grouping, correct rounding back to f32 (ties, sticky
 * bits in the low word), tiny and subnormal inputs, the range, NaN and infinities.
 *
 * The references are independent of the code under test: quantisation by long double
 * (x*2^76 is exact in its 64-bit significand, nearbyintl rounds ties to even) and
 * __int128 sums; correct rounding is checked as a property against the two f32
 * neighbours in exact integer arithmetic. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fenv.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/fxsum.h"

__extension__ typedef __int128 i128;
__extension__ typedef unsigned __int128 u128;

static i128 to_i128(BprtFx v) { return (i128)(((u128)v.hi << 64) | v.lo); }

static uint32_t fbits(float x) {
  uint32_t b;
  memcpy(&b, &x, sizeof b);
  return b;
}

/* Reference quantisation: round(w*x*2^76), ties to even, in long double. */
static i128 ref_q(float x, float w) {
  long double p = (long double)x * (long double)w; /* exact: 48 bits */
  long double y = ldexpl(p, BPRT_FX_FRAC_BITS);     /* exact: a power of two */
  return (i128)nearbyintl(y);
}

/* f * 2^76 as an integer: exact for an f32 whose last significand bit is at or above
 * 2^-76, which holds for every result of the conversion and, from 2^-52 up, for its
 * two neighbours. */
static i128 f_scaled(float f) {
  long double y = ldexpl((long double)f, BPRT_FX_FRAC_BITS);
  return (i128)y;
}

static i128 iabs(i128 a) { return a < 0 ? -a : a; }

/* f is the f32 nearest s * 2^-76, ties to the even significand. */
static void check_rounded(i128 s, float f) {
  if (s == 0) {
    assert_true(f == 0.0f);
    return;
  }
  assert_true(isfinite(f));
  assert_true((s < 0) == (f < 0));
  if (iabs(s) < ((i128)1 << 24)) { /* 24 bits or fewer: exact */
    assert_true(f_scaled(f) == s);
    return;
  }
  float up = nextafterf(f, INFINITY), down = nextafterf(f, -INFINITY);
  i128 d = iabs(s - f_scaled(f)), du = iabs(s - f_scaled(up)), dd = iabs(s - f_scaled(down));
  if (d > du || d > dd) fail_msg("%a is not the nearest f32 (hi %llx lo %llx)", (double)f,
                                 (unsigned long long)((u128)s >> 64), (unsigned long long)s);
  if (d == du || d == dd) assert_int_equal(fbits(f) & 1, 0); /* a tie: the even one */
}

static double u01(uint64_t *st) {
  *st ^= *st << 13;
  *st ^= *st >> 7;
  *st ^= *st << 17;
  return (double)(*st >> 11) * 0x1p-53;
}

/* A float with a random significand, a random sign and exponent in [elo, ehi]. */
static float rand_float(uint64_t *st, int elo, int ehi) {
  float m = (float)(1.0 + u01(st));
  int e = elo + (int)(u01(st) * (ehi - elo + 1));
  float x = ldexpf(m, e);
  return u01(st) < 0.5 ? -x : x;
}

/* -------------------------------------------------------------------- the grid */

static void test_grid_hand_cases(void **state) {
  (void)state;
  BprtFx v = bprt_fx_from_f32(1.0f, 1.0f); /* 2^76 */
  assert_int_equal(v.lo, 0);
  assert_int_equal(v.hi, 1ull << 12);
  v = bprt_fx_from_f32(-1.0f, 1.0f);
  assert_int_equal(v.lo, 0);
  assert_int_equal(v.hi, (uint64_t)-(1ll << 12));
  v = bprt_fx_from_f32(0x1p-76f, 1.0f); /* one unit of the grid */
  assert_int_equal(v.lo, 1);
  assert_int_equal(v.hi, 0);
  v = bprt_fx_from_f32(-0x1p-76f, 1.0f);
  assert_int_equal(v.lo, UINT64_MAX);
  assert_int_equal(v.hi, UINT64_MAX);
  /* halfway cases on the grid go to even */
  assert_true(to_i128(bprt_fx_from_f32(0x1p-77f, 1.0f)) == 0);          /* 0.5 -> 0 */
  assert_true(to_i128(bprt_fx_from_f32(0x3p-77f, 1.0f)) == 2);          /* 1.5 -> 2 */
  assert_true(to_i128(bprt_fx_from_f32(0x5p-77f, 1.0f)) == 2);          /* 2.5 -> 2 */
  assert_true(to_i128(bprt_fx_from_f32(-0x3p-77f, 1.0f)) == -2);        /* -1.5 -> -2 */
  assert_true(to_i128(bprt_fx_from_f32(0x1.8p-77f, 1.0f)) == 1);        /* 0.75 -> 1 */
  assert_true(to_i128(bprt_fx_from_f32(0x1.fffffep-78f, 1.0f)) == 0);   /* < 0.5 -> 0 */
  /* the smallest exact normal: 2^-53 (1 + 2^-23) = 2^23 + 1 units */
  assert_true(to_i128(bprt_fx_from_f32(0x1.000002p-53f, 1.0f)) == (1 << 23) + 1);
  /* 2^-60 (1 + 2^-23): the last bit is 2^-7 of a unit and rounds away */
  assert_true(to_i128(bprt_fx_from_f32(0x1.000002p-60f, 1.0f)) == (1 << 16));
  /* the largest in range: (2 - 2^-23) 2^49 = 2^126 - 2^102 units */
  v = bprt_fx_from_f32(0x1.fffffep49f, 1.0f);
  assert_true(to_i128(v) == ((i128)1 << 126) - ((i128)1 << 102));
  assert_int_equal(bprt_fxsum_flags(&v, 1), 0);
  /* the zeros */
  assert_true(to_i128(bprt_fx_from_f32(0.0f, 1.0f)) == 0);
  assert_true(to_i128(bprt_fx_from_f32(-0.0f, 1.0f)) == 0);
  assert_true(to_i128(bprt_fx_from_f32(5.0f, 0.0f)) == 0);
}

/* Random inputs of every magnitude the grid holds, weights 1 and others: the same
 * integer as the long-double reference, and the f32 conversion is x itself for w = 1. */
static void test_quantise_matches_reference(void **state) {
  (void)state;
  uint64_t st = 0x9e3779b97f4a7c15ull;
  const float ws[] = {1.0f, 0.5f, 0.1f, 1.0f / 3.0f, -7.25f, 1e-6f};
  for (int k = 0; k < 200000; k++) {
    float x = rand_float(&st, -90, 45);
    float w = ws[k % 6];
    double p = fabs((double)x * (double)w);
    BprtFx v = bprt_fx_from_f32(x, w);
    if (p >= 0x1p50) {
      assert_int_equal(bprt_fxsum_flags(&v, 1), BPRT_FX_RANGE);
      continue;
    }
    assert_int_equal(bprt_fxsum_flags(&v, 1), 0);
    i128 r = ref_q(x, w);
    if (to_i128(v) != r) fail_msg("q(%a * %a): hi %llx lo %llx", (double)x, (double)w, (unsigned long long)v.hi,
                                  (unsigned long long)v.lo);
    unsigned flags = 99;
    float back = bprt_fx_to_f32(v, &flags);
    assert_int_equal(flags, 0);
    if (w == 1.0f && fabsf(x) >= 0x1p-53f) assert_int_equal(fbits(back), fbits(x)); /* exact */
    check_rounded(r, back);
  }
}

/* ---------------------------------------------------------------- exact sums */

/* Inputs whose exact sum fits a long double (exponents -10..20, 1000 terms: bits from
 * 2^-33 to 2^31): the conversion equals (float) of the exact sum, one rounding. A plain
 * f32 loop differs from it, which shows that the test can tell. */
static void test_sum_exact_against_long_double(void **state) {
  (void)state;
  enum { N = 1000, E = 64 };
  uint64_t st = 12345;
  float *x = malloc(sizeof(float) * N * E);
  for (int i = 0; i < N * E; i++) x[i] = rand_float(&st, -10, 20);
  BprtFx acc[E];
  bprt_fxsum_zero(acc, E);
  for (int r = 0; r < N; r++) bprt_fxsum_add_f32(acc, x + r * E, E, 1.0f);
  float out[E];
  assert_int_equal(bprt_fxsum_to_f32(out, acc, E), 0);
  int f32_differs = 0;
  for (int e = 0; e < E; e++) {
    long double s = 0;
    float naive = 0;
    for (int r = 0; r < N; r++) {
      s += x[r * E + e];
      naive += x[r * E + e];
    }
    assert_int_equal(fbits(out[e]), fbits((float)s));
    f32_differs += fbits(naive) != fbits(out[e]);
  }
  assert_true(f32_differs > 0);
  free(x);
}

/* Wide-range inputs (2^-90 .. 2^40, weights): the accumulator holds exactly the sum of
 * the reference quantisations, and its conversion is correctly rounded. */
static void test_sum_exact_wide_range(void **state) {
  (void)state;
  enum { N = 400, E = 97 };
  uint64_t st = 777;
  float *x = malloc(sizeof(float) * N * E);
  for (int i = 0; i < N * E; i++) x[i] = rand_float(&st, -90, 40);
  BprtFx acc[E];
  bprt_fxsum_set_f32(acc, x, E, 0.3f);
  for (int r = 1; r < N; r++) bprt_fxsum_add_f32(acc, x + r * E, E, 0.3f);
  float out[E];
  assert_int_equal(bprt_fxsum_to_f32(out, acc, E), 0);
  for (int e = 0; e < E; e++) {
    i128 s = 0;
    for (int r = 0; r < N; r++) s += ref_q(x[r * E + e], 0.3f);
    assert_true(to_i128(acc[e]) == s);
    check_rounded(s, out[e]);
  }
  free(x);
}

/* The conversion of random 128-bit values of every length (1 .. 126 bits), both signs:
 * correctly rounded, including values whose rounding hinges on bits of the low word
 * beyond the top 64. */
static void test_convert_random_integers(void **state) {
  (void)state;
  uint64_t st = 4242;
  for (int k = 0; k < 200000; k++) {
    int len = 1 + k % 126;
    uint64_t a = (uint64_t)(u01(&st) * 0x1p64), b = (uint64_t)(u01(&st) * 0x1p64);
    u128 u = ((u128)a << 64 | b) >> (128 - len);
    u |= (u128)1 << (len - 1);
    if (k % 5 == 0 && len > 30) /* a tie: ...1000...0 below the 24th bit, sticky or not */
      u = (u >> (len - 24) << (len - 24)) | ((u128)1 << (len - 25)) | (u128)(k % 10 == 0);
    i128 s = k & 1 ? -(i128)u : (i128)u;
    BprtFx v = {(uint64_t)(u128)s, (uint64_t)((u128)s >> 64)};
    unsigned flags = 99;
    float f = bprt_fx_to_f32(v, &flags);
    assert_int_equal(flags, 0);
    check_rounded(s, f);
  }
}

/* Ties to even with hand values: 1 + 2^-24 is halfway between 1 and 1 + 2^-23. */
static void test_rounding_ties(void **state) {
  (void)state;
  struct {
    float a[3];
    float want;
  } cases[] = {
      {{1.0f, 0x1p-24f, 0}, 1.0f},                          /* tie, even below */
      {{0x1.000002p0f, 0x1p-24f, 0}, 0x1.000004p0f},        /* tie, even above */
      {{1.0f, 0x1p-24f, 0x1p-76f}, 0x1.000002p0f},          /* sticky breaks the tie */
      {{1.0f, 0x1p-24f, -0x1p-76f}, 1.0f},                  /* just below the tie */
      {{-1.0f, -0x1p-24f, 0}, -1.0f},                       /* negative tie */
      {{-0x1.000002p0f, -0x1p-24f, 0}, -0x1.000004p0f},     /* negative tie, up */
      {{0x1p40f, 0x1p16f, 0}, 0x1p40f},                     /* tie on a large value */
      {{0x1p40f, 0x1p16f, 0x1p-76f}, 0x1.000002p40f},       /* sticky in the low word */
      {{0x1p40f, 0x1p16f, -0x1p-76f}, 0x1p40f},             /* the borrow from the low word */
      {{0x1.fffffep0f, 0x1p-24f, 0}, 2.0f},                 /* carry into the exponent */
      {{0x1p-30f, 0x1p-54f, 0}, 0x1p-30f},                  /* tie on a small value */
      {{0x1p-30f, 0x1p-54f, 0x1p-76f}, 0x1.000002p-30f},
  };
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    BprtFx acc;
    bprt_fxsum_zero(&acc, 1);
    for (int j = 0; j < 3; j++) bprt_fxsum_add_f32(&acc, &cases[k].a[j], 1, 1.0f);
    float out;
    assert_int_equal(bprt_fxsum_to_f32(&out, &acc, 1), 0);
    if (fbits(out) != fbits(cases[k].want)) fail_msg("case %zu: %a, want %a", k, (double)out, (double)cases[k].want);
  }
}

/* ------------------------------------------------------- order independence */

static void shuffle(int *p, int n, uint64_t *st) {
  for (int i = n - 1; i > 0; i--) {
    int j = (int)(u01(st) * (i + 1));
    int t = p[i];
    p[i] = p[j];
    p[j] = t;
  }
}

/* 64 arrays of 300 wide-range values with cancellation, summed 1) in order, 2) in 20
 * random permutations, 3) split into random parts ("ranks") each summed alone and the
 * parts combined in a random order, as a tree or a chain: the same 16-byte words and
 * the same f32 bits every time. */
static void test_order_independent(void **state) {
  (void)state;
  enum { R = 64, E = 300 };
  uint64_t st = 99;
  float *x = malloc(sizeof(float) * R * E);
  for (int i = 0; i < R * E; i++) x[i] = rand_float(&st, -70, 30);
  for (int e = 0; e < E; e += 7) x[5 * E + e] = -x[3 * E + e]; /* exact cancellations */
  BprtFx ref[E], acc[E], part[R][E];
  bprt_fxsum_zero(ref, E);
  for (int r = 0; r < R; r++) bprt_fxsum_add_f32(ref, x + r * E, E, 1.0f);
  float want[E];
  assert_int_equal(bprt_fxsum_to_f32(want, ref, E), 0);
  int perm[R];
  for (int r = 0; r < R; r++) perm[r] = r;
  for (int trial = 0; trial < 40; trial++) {
    shuffle(perm, R, &st);
    if (trial < 20) { /* one accumulator, another order */
      bprt_fxsum_zero(acc, E);
      for (int r = 0; r < R; r++) bprt_fxsum_add_f32(acc, x + perm[r] * E, E, 1.0f);
    } else { /* P parts of random sizes, then combined */
      int P = 2 + (int)(u01(&st) * 15), at = 0;
      for (int p = 0; p < P; p++) {
        int take = p == P - 1 ? R - at : (int)(u01(&st) * (R - at));
        bprt_fxsum_zero(part[p], E);
        for (int r = at; r < at + take; r++) bprt_fxsum_add_f32(part[p], x + perm[r] * E, E, 1.0f);
        at += take;
      }
      if (trial & 1) { /* a chain from the last part */
        memcpy(acc, part[P - 1], sizeof acc);
        for (int p = P - 2; p >= 0; p--) bprt_fxsum_combine(acc, part[p], E);
      } else { /* a binary tree, as recursive doubling does */
        for (int step = 1; step < P; step *= 2)
          for (int p = 0; p + step < P; p += 2 * step) bprt_fxsum_combine(part[p], part[p + step], E);
        memcpy(acc, part[0], sizeof acc);
      }
    }
    assert_memory_equal(acc, ref, sizeof ref);
    float out[E];
    assert_int_equal(bprt_fxsum_to_f32(out, acc, E), 0);
    assert_memory_equal(out, want, sizeof want);
  }
  free(x);
}

/* -------------------------------------------------- tiny and subnormal inputs */

static void test_tiny_and_subnormal(void **state) {
  (void)state;
  /* subnormal f32 and anything below half a unit of the grid are 0 */
  const float zero_in[] = {FLT_TRUE_MIN, -FLT_TRUE_MIN, 0x1p-130f, FLT_MIN, 0x1p-77f, -0x1p-77f};
  for (size_t k = 0; k < sizeof zero_in / sizeof zero_in[0]; k++)
    assert_true(to_i128(bprt_fx_from_f32(zero_in[k], 1.0f)) == 0);
  /* a large weight lifts a subnormal into the grid: 2^-149 * 2^80 = 2^-69 */
  assert_true(to_i128(bprt_fx_from_f32(FLT_TRUE_MIN, 0x1p80f)) == 128);
  /* 1000 copies of 2^-70 sum to 1000 * 64 units exactly (f32 would also; the point is
   * that tiny values add up rather than vanish) */
  float t = 0x1p-70f;
  BprtFx acc;
  bprt_fxsum_zero(&acc, 1);
  for (int k = 0; k < 1000; k++) bprt_fxsum_add_f32(&acc, &t, 1, 1.0f);
  assert_true(to_i128(acc) == 64000);
  float out;
  assert_int_equal(bprt_fxsum_to_f32(&out, &acc, 1), 0);
  assert_true(out == 1000.0f * 0x1p-70f);
  /* the smallest nonzero sum converts to 2^-76 exactly, and 0 to +0 */
  BprtFx one = {1, 0}, zero = {0, 0};
  assert_true(bprt_fx_to_f32(one, NULL) == 0x1p-76f);
  assert_int_equal(fbits(bprt_fx_to_f32(zero, NULL)), 0);
  /* x + (-x) is +0 whatever x */
  float pair[2] = {0x1.234566p-40f, -0x1.234566p-40f};
  bprt_fxsum_set_f32(&acc, pair, 1, 1.0f);
  bprt_fxsum_add_f32(&acc, pair + 1, 1, 1.0f);
  assert_true(to_i128(acc) == 0);
}

/* ---------------------------------------------------- negative values */

static void test_negative(void **state) {
  (void)state;
  float v[] = {3.5f, -10.25f, 0x1p-60f, -0x1p-60f, -0x1.8p-50f};
  BprtFx acc;
  bprt_fxsum_zero(&acc, 1);
  for (int k = 0; k < 5; k++) bprt_fxsum_add_f32(&acc, &v[k], 1, 1.0f);
  /* 3.5 - 10.25 - 1.5*2^-50 exactly, then rounded */
  i128 s = ref_q(3.5f, 1) + ref_q(-10.25f, 1) + ref_q(-0x1.8p-50f, 1);
  assert_true(to_i128(acc) == s);
  float out;
  assert_int_equal(bprt_fxsum_to_f32(&out, &acc, 1), 0);
  assert_true(out == -6.75f); /* 1.5*2^-50 is below half an ulp of 6.75 */
  check_rounded(s, out);
  /* a sum that crosses zero both ways, with borrows through the low word */
  float w[] = {-0x1p-76f, 0x1p-76f, 0x1p-76f, -0x1p-75f, 0x1p40f, -0x1p40f, -0x1p-76f};
  bprt_fxsum_zero(&acc, 1);
  i128 r = 0;
  for (int k = 0; k < 7; k++) {
    bprt_fxsum_add_f32(&acc, &w[k], 1, 1.0f);
    r += ref_q(w[k], 1);
    assert_true(to_i128(acc) == r);
  }
  assert_true(bprt_fx_to_f32(acc, NULL) == -0x1p-75f);
  /* weights may be negative */
  assert_true(to_i128(bprt_fx_from_f32(2.0f, -0.5f)) == -((i128)1 << 76));
}

/* ------------------------------------------------------- range and specials */

static void test_range(void **state) {
  (void)state;
  char buf[80];
  /* an input at 2^50 */
  float big = 0x1p50f;
  BprtFx acc;
  bprt_fxsum_set_f32(&acc, &big, 1, 1.0f);
  assert_int_equal(bprt_fxsum_flags(&acc, 1), BPRT_FX_RANGE);
  big = -0x1p50f;
  bprt_fxsum_set_f32(&acc, &big, 1, 1.0f);
  assert_int_equal(bprt_fxsum_flags(&acc, 1), BPRT_FX_RANGE);
  /* a weight that carries x out of range */
  float one = 1.0f;
  bprt_fxsum_set_f32(&acc, &one, 1, 0x1p51f);
  assert_int_equal(bprt_fxsum_flags(&acc, 1), BPRT_FX_RANGE);
  /* a sum that reaches 2^50: sticky even after subtracting again */
  float h = 0x1p49f, mh = -0x1p49f;
  bprt_fxsum_zero(&acc, 1);
  bprt_fxsum_add_f32(&acc, &h, 1, 1.0f);
  assert_int_equal(bprt_fxsum_flags(&acc, 1), 0);
  bprt_fxsum_add_f32(&acc, &h, 1, 1.0f);
  assert_int_equal(bprt_fxsum_flags(&acc, 1), BPRT_FX_RANGE);
  bprt_fxsum_add_f32(&acc, &mh, 1, 1.0f);
  float out = 0;
  assert_int_equal(bprt_fxsum_to_f32(&out, &acc, 1), BPRT_FX_RANGE);
  assert_true(isnan(out));
  assert_string_equal(bprt_fxsum_describe(BPRT_FX_RANGE, buf, sizeof buf), "|sum| >= 2^50");
  /* -2^49 * 2 = -2^50 is the bottom of the range, one unit less is out */
  bprt_fxsum_zero(&acc, 1);
  bprt_fxsum_add_f32(&acc, &mh, 1, 1.0f);
  bprt_fxsum_add_f32(&acc, &mh, 1, 1.0f);
  assert_int_equal(bprt_fxsum_flags(&acc, 1), 0);
  assert_true(bprt_fx_to_f32(acc, NULL) == -0x1p50f);
  float unit = -0x1p-76f;
  bprt_fxsum_add_f32(&acc, &unit, 1, 1.0f);
  assert_int_equal(bprt_fxsum_flags(&acc, 1), BPRT_FX_RANGE);
  /* combining with an overflowing partner, and two in-range parts that overflow */
  BprtFx a, b;
  bprt_fxsum_set_f32(&a, &h, 1, 1.0f);
  bprt_fxsum_set_f32(&b, &h, 1, 1.0f);
  bprt_fxsum_combine(&a, &b, 1);
  assert_int_equal(bprt_fxsum_flags(&a, 1), BPRT_FX_RANGE);
  /* a word no operation makes (hi outside [-2^62, 2^62)) reads as out of range */
  BprtFx junk = {0, 1ull << 62};
  assert_int_equal(bprt_fxsum_flags(&junk, 1), BPRT_FX_RANGE);
  /* the doubling case in = inout */
  bprt_fxsum_set_f32(&a, &one, 1, 1.0f);
  bprt_fxsum_combine(&a, &a, 1);
  assert_true(bprt_fx_to_f32(a, NULL) == 2.0f);
}

static void test_nan_inf(void **state) {
  (void)state;
  char buf[80];
  float vals[] = {1.0f, INFINITY, -INFINITY, NAN, -NAN, 2.0f};
  struct {
    int pick[3];
    unsigned flags;
    uint32_t want;
  } cases[] = {
      {{1, 0, 5}, BPRT_FX_POS_INF, 0x7f800000u},
      {{2, 0, 0}, BPRT_FX_NEG_INF, 0xff800000u},
      {{1, 2, 0}, BPRT_FX_POS_INF | BPRT_FX_NEG_INF, 0x7fc00000u},
      {{3, 0, 5}, BPRT_FX_NAN, 0x7fc00000u},
      {{0, 4, 1}, BPRT_FX_NAN | BPRT_FX_POS_INF, 0x7fc00000u},
  };
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    /* every order of the three inputs, in one accumulator and as combined parts */
    static const int orders[6][3] = {{0, 1, 2}, {0, 2, 1}, {1, 0, 2}, {1, 2, 0}, {2, 0, 1}, {2, 1, 0}};
    for (int o = 0; o < 6; o++) {
      BprtFx acc, p[3];
      bprt_fxsum_zero(&acc, 1);
      for (int j = 0; j < 3; j++) {
        const float *x = &vals[cases[k].pick[orders[o][j]]];
        bprt_fxsum_add_f32(&acc, x, 1, 1.0f);
        bprt_fxsum_set_f32(&p[j], x, 1, 1.0f);
      }
      bprt_fxsum_combine(&p[2], &p[1], 1);
      bprt_fxsum_combine(&p[2], &p[0], 1);
      assert_memory_equal(&acc, &p[2], sizeof acc);
      float out;
      assert_int_equal(bprt_fxsum_to_f32(&out, &acc, 1), cases[k].flags);
      assert_int_equal(fbits(out), cases[k].want);
    }
  }
  /* the flags of an array are the OR of its elements; valid elements convert as usual */
  float x[4] = {1.0f, NAN, 3.0f, -INFINITY};
  BprtFx acc[4];
  bprt_fxsum_set_f32(acc, x, 4, 1.0f);
  float out[4];
  assert_int_equal(bprt_fxsum_to_f32(out, acc, 4), BPRT_FX_NAN | BPRT_FX_NEG_INF);
  assert_true(out[0] == 1.0f && isnan(out[1]) && out[2] == 3.0f && out[3] == -INFINITY);
  assert_string_equal(bprt_fxsum_describe(BPRT_FX_NAN | BPRT_FX_NEG_INF, buf, sizeof buf), "NaN, -Inf");
  assert_string_equal(bprt_fxsum_describe(15, buf, sizeof buf), "NaN, +Inf, -Inf, |sum| >= 2^50");
  assert_string_equal(bprt_fxsum_describe(0, buf, sizeof buf), "");
  assert_string_equal(bprt_fxsum_describe(15, buf, 9), "NaN, +In"); /* truncated, terminated */
  /* Inf * 0 as a weight is NaN */
  assert_int_equal(bprt_fxsum_flags((BprtFx[]){bprt_fx_from_f32(INFINITY, 0.0f)}, 1), BPRT_FX_NAN);
}

/* The rounding mode of the caller does not matter: no operation depends on it. */
static void test_rounding_mode_independent(void **state) {
  (void)state;
  uint64_t st = 5;
  enum { E = 512 };
  float x[E], y[E], a[E], b[E];
  for (int i = 0; i < E; i++) {
    x[i] = rand_float(&st, -80, 40);
    y[i] = rand_float(&st, -80, 40);
  }
  BprtFx acc[E], acc2[E];
  bprt_fxsum_set_f32(acc, x, E, 0.1f);
  bprt_fxsum_add_f32(acc, y, E, 0.1f);
  bprt_fxsum_to_f32(a, acc, E);
  const int modes[] = {FE_UPWARD, FE_DOWNWARD, FE_TOWARDZERO};
  for (int m = 0; m < 3; m++) {
    fesetround(modes[m]);
    bprt_fxsum_set_f32(acc2, x, E, 0.1f);
    bprt_fxsum_add_f32(acc2, y, E, 0.1f);
    bprt_fxsum_to_f32(b, acc2, E);
    fesetround(FE_TONEAREST);
    assert_memory_equal(acc, acc2, sizeof acc);
    assert_memory_equal(a, b, sizeof a);
  }
}

/* The AVX-512 and the scalar code agree bit for bit on arrays of every length mod 8
 * and every alignment (the vector loops start at a 64-byte boundary), with specials and out-of-range values sprinkled in (each forces its group of 8 onto
 * the scalar path) and values of every size, weights included. */
static void test_simd_matches_scalar(void **state) {
  (void)state;
  enum { N = 1003 };
  static float x[N], y[N], outs[2][N];
  static BprtFx accs[2][N], other[N];
  unsigned flags[2];
  uint64_t st = 31337;
  for (int trial = 0; trial < 40; trial++) {
    for (int i = 0; i < N; i++) {
      x[i] = rand_float(&st, -100, 45);
      y[i] = rand_float(&st, -80, 20);
    }
    if (trial % 4 == 1) x[(int)(u01(&st) * N)] = NAN;
    if (trial % 4 == 2) y[(int)(u01(&st) * N)] = -INFINITY;
    if (trial % 4 == 3) x[(int)(u01(&st) * N)] = 0x1p60f;
    if (trial % 5 == 0) x[(int)(u01(&st) * N)] = -0.0f;
    size_t off = (size_t)trial % 4, n = N - 4 - (size_t)trial % 9; /* every alignment mod 64 bytes */
    float w = trial % 3 ? 0.1f : 1.0f;
    for (int mode = 0; mode < 2; mode++) {
      bprt_fxsum_set_simd(mode);
      bprt_fxsum_set_f32(accs[mode] + off, x + off, n, w);
      bprt_fxsum_add_f32(accs[mode] + off, y + off, n, -w);
      bprt_fxsum_set_f32(other + (trial / 4) % 4, y + off, n, 3.0f);
      bprt_fxsum_combine(accs[mode] + off, other + (trial / 4) % 4, n);
      flags[mode] = bprt_fxsum_to_f32(outs[mode] + off, accs[mode] + off, n);
    }
    bprt_fxsum_set_simd(-1);
    assert_memory_equal(accs[0] + off, accs[1] + off, n * sizeof(BprtFx));
    assert_memory_equal(outs[0] + off, outs[1] + off, n * sizeof(float));
    assert_int_equal(flags[0], flags[1]);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_grid_hand_cases),
      cmocka_unit_test(test_quantise_matches_reference),
      cmocka_unit_test(test_sum_exact_against_long_double),
      cmocka_unit_test(test_sum_exact_wide_range),
      cmocka_unit_test(test_convert_random_integers),
      cmocka_unit_test(test_rounding_ties),
      cmocka_unit_test(test_order_independent),
      cmocka_unit_test(test_tiny_and_subnormal),
      cmocka_unit_test(test_negative),
      cmocka_unit_test(test_range),
      cmocka_unit_test(test_nan_inf),
      cmocka_unit_test(test_rounding_mode_independent),
      cmocka_unit_test(test_simd_matches_scalar),
  };
  /* every test on the scalar code, then on AVX-512 when the CPU has it */
  int have = bprt_fxsum_set_simd(0);
  int failed = cmocka_run_group_tests_name("scalar", tests, NULL, NULL);
  if (have) {
    bprt_fxsum_set_simd(1);
    failed += cmocka_run_group_tests_name("avx512", tests, NULL, NULL);
  } else {
    print_message("no AVX-512 on this CPU: the vector code is not tested here\n");
  }
  return failed;
}
