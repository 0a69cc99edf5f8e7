/* runtime/fxsum.c — exact, order-independent sums of f32 arrays in 128-bit fixed point.
 *
 * The one idea: round each input once onto the grid 2^-76, then add integers, which is
 * exact and associative; round the sum once to f32 at the end. runtime/fxsum.h states
 * the range and the poison encoding. Everything is uint64_t arithmetic (no signed
 * overflow), with no floating-point operation that depends on the rounding mode: the
 * quantisation reads the bits of the double w*x, the conversion builds the bits of the
 * float. The loops are branch-light so that the common case stays a straight line over
 * whole gradient blocks.
 */
#include "runtime/fxsum.h"

#include <stdio.h>
#include <string.h>

#define FX_K BPRT_FX_FRAC_BITS
#define POISON_HI 0x8000000000000000ull
#define FLAG_MASK 15u

/* A valid element has hi (as int64) in [-2^62, 2^62): hi + 2^62 < 2^63 as unsigned.
 * Poison (hi = 2^63) fails the test, as does any other word outside the range. */
static inline int fx_valid(BprtFx v) { return ((v.hi + (1ull << 62)) >> 63) == 0; }

static inline BprtFx fx_poison(unsigned flags) { return (BprtFx){flags, POISON_HI}; }

/* The flags of an element: 0 when valid; those in lo for poison; RANGE for a word no
 * operation of this file makes (memory that never held an accumulator). */
static inline unsigned fx_flags(BprtFx v) {
  if (fx_valid(v)) return 0;
  unsigned f = v.hi == POISON_HI ? (unsigned)(v.lo & FLAG_MASK) : 0;
  return f ? f : BPRT_FX_RANGE;
}

/* q(p): p rounded to the grid 2^-76, ties to even. p = (-1)^sign m 2^e with m < 2^53.
 *   |p| >= 2^50 (exponent field >= 1023+50)  -> poison RANGE; Inf, NaN -> poison;
 *   s = e + 76 >= 0                           -> m << s (< 2^126: exact);
 *   s < 0                                     -> m >> -s rounded (0 once -s >= 54,
 *                                                since then m 2^s < 2^-1). */
static inline BprtFx fx_from_double(double p) {
  uint64_t bits;
  memcpy(&bits, &p, sizeof bits);
  uint64_t sign = bits >> 63;
  unsigned ex = (unsigned)(bits >> 52) & 0x7ffu;
  uint64_t m = bits & ((1ull << 52) - 1);
  if (ex >= 1023u + BPRT_FX_RANGE_LOG2) {
    if (ex < 0x7ffu) return fx_poison(BPRT_FX_RANGE);
    if (m) return fx_poison(BPRT_FX_NAN);
    return fx_poison(sign ? BPRT_FX_NEG_INF : BPRT_FX_POS_INF);
  }
  if (ex) m |= 1ull << 52;
  int s = (int)(ex ? ex : 1u) - 1075 + FX_K; /* p = m 2^(s-76) */
  uint64_t lo, hi;
  if (s >= 64) {
    lo = 0;
    hi = m << (s - 64);
  } else if (s > 0) {
    lo = m << s;
    hi = m >> (64 - s);
  } else if (s == 0) {
    lo = m;
    hi = 0;
  } else if (s > -54) {
    int r = -s; /* 1..53 */
    uint64_t q = m >> r, rem = m & ((1ull << r) - 1), half = 1ull << (r - 1);
    q += (rem > half) | ((rem == half) & q & 1);
    lo = q;
    hi = 0;
  } else {
    lo = 0;
    hi = 0;
  }
  /* two's-complement negation of (hi:lo) when sign: -(x) = ~x + 1 */
  uint64_t neg = 0 - sign; /* all ones or zero */
  lo = (lo ^ neg) + sign;
  hi = (hi ^ neg) + (sign & (lo == 0));
  return (BprtFx){lo, hi};
}

/* a + b with poison: flags OR; a valid sum at or past 2^50 becomes RANGE. Both valid
 * means |a|, |b| < 2^126, so the 128-bit sum cannot wrap. */
static inline BprtFx fx_add(BprtFx a, BprtFx b) {
  uint64_t lo = a.lo + b.lo;
  uint64_t hi = a.hi + b.hi + (lo < a.lo);
  BprtFx r = {lo, hi};
  if (fx_valid(a) & fx_valid(b) & fx_valid(r)) return r;
  unsigned f = fx_flags(a) | fx_flags(b);
  return fx_poison(f ? f : BPRT_FX_RANGE);
}

/* The f32 nearest v (ties to even). u = |v| < 2^126 with its top bit at position L:
 * t = u << (127-L) holds the top 64 bits, the 24 above bit 40 are the significand, the
 * 40 below and any bits shifted out of t decide the rounding. value = m 2^(L-23-76),
 * so the biased exponent is L-76+127; m = 2^24 after rounding up carries into it. */
static inline float fx_to_float(BprtFx v, unsigned *flags) {
  if (!fx_valid(v)) {
    unsigned f = fx_flags(v);
    *flags |= f;
    uint32_t b;
    if ((f & BPRT_FX_NAN) || (f & (BPRT_FX_POS_INF | BPRT_FX_NEG_INF)) == (BPRT_FX_POS_INF | BPRT_FX_NEG_INF) ||
        !(f & (BPRT_FX_POS_INF | BPRT_FX_NEG_INF)))
      b = 0x7fc00000u;
    else
      b = f & BPRT_FX_POS_INF ? 0x7f800000u : 0xff800000u;
    float x;
    memcpy(&x, &b, sizeof x);
    return x;
  }
  uint64_t sign = v.hi >> 63;
  uint64_t neg = 0 - sign;
  uint64_t lo = (v.lo ^ neg) + sign;
  uint64_t hi = (v.hi ^ neg) + (sign & (lo == 0));
  if ((hi | lo) == 0) return 0.0f;
  /* branch-free (the sign and the word holding the top bit vary from element to
   * element): z = leading zeros of the 128-bit magnitude, t its top 64 bits after the
   * shift, sticky whatever is shifted out of t */
  int zh = __builtin_clzll(hi | 1), zl = __builtin_clzll(lo | 1);
  uint64_t in_hi = 0 - (uint64_t)(hi != 0); /* all ones when the top bit is in hi */
  int L = 127 - (int)(((uint64_t)zh & in_hi) | ((uint64_t)(64 + zl) & ~in_hi));
  uint64_t t_hi = (hi << zh) | ((lo >> 1) >> (63 - zh)); /* zh >= 1 for a valid value */
  uint64_t t_lo = lo << zl;
  uint64_t t = (t_hi & in_hi) | (t_lo & ~in_hi);
  uint64_t sticky = (lo << zh) & in_hi;
  uint64_t m = t >> 40, rest = t & ((1ull << 40) - 1), half = 1ull << 39;
  m += (rest > half) | ((rest == half) & ((sticky != 0) | (m & 1)));
  uint32_t b = (uint32_t)(sign << 31) + ((uint32_t)(L - FX_K + 127) << 23) + (uint32_t)(m - (1ull << 23));
  float x;
  memcpy(&x, &b, sizeof x);
  return x;
}

/* ------------------------------------------------------ AVX-512 (x86-64, runtime check)
 *
 * The same arithmetic on 8 elements at a time: lo and hi words de-interleaved into two
 * registers, the branches of the scalar code as lane masks. A group of 8 with any
 * element out of the common case (poison, out of range, Inf, NaN) is done again by the
 * scalar code, from the same inputs, so both paths give the same bits (the tests run
 * every case through both: bprt_fxsum_set_simd). */
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define FX_SIMD 1
#define FX_TARGET __attribute__((target("avx512f,avx512cd,avx512dq,avx512vl")))

static FX_TARGET inline void fx8_load(const BprtFx *p, __m512i *lo, __m512i *hi) {
  const __m512i even = _mm512_setr_epi64(0, 2, 4, 6, 8, 10, 12, 14), odd = _mm512_setr_epi64(1, 3, 5, 7, 9, 11, 13, 15);
  __m512i a = _mm512_loadu_si512((const void *)p), b = _mm512_loadu_si512((const void *)(p + 4));
  *lo = _mm512_permutex2var_epi64(a, even, b);
  *hi = _mm512_permutex2var_epi64(a, odd, b);
}

static FX_TARGET inline void fx8_store(BprtFx *p, __m512i lo, __m512i hi) {
  const __m512i first = _mm512_setr_epi64(0, 8, 1, 9, 2, 10, 3, 11), second = _mm512_setr_epi64(4, 12, 5, 13, 6, 14, 7, 15);
  _mm512_storeu_si512((void *)p, _mm512_permutex2var_epi64(lo, first, hi));
  _mm512_storeu_si512((void *)(p + 4), _mm512_permutex2var_epi64(lo, second, hi));
}

/* lanes whose hi is in [-2^62, 2^62) */
static FX_TARGET inline __mmask8 fx8_valid(__m512i hi) {
  return _mm512_cmplt_epu64_mask(_mm512_add_epi64(hi, _mm512_set1_epi64(1ll << 62)), _mm512_set1_epi64(INT64_MIN));
}

/* fx_from_double on 8 lanes; *ok has the lanes below 2^50 in magnitude (no Inf, NaN). */
static FX_TARGET inline void fx8_from_f32(const float *x, __m512d w, __m512i *plo, __m512i *phi, __mmask8 *ok) {
  __m512i bits = _mm512_castpd_si512(_mm512_mul_pd(_mm512_cvtps_pd(_mm256_loadu_ps(x)), w));
  __m512i ex = _mm512_and_si512(_mm512_srli_epi64(bits, 52), _mm512_set1_epi64(0x7ff));
  *ok = _mm512_cmplt_epu64_mask(ex, _mm512_set1_epi64(1023 + BPRT_FX_RANGE_LOG2));
  __mmask8 normal = _mm512_test_epi64_mask(ex, ex);
  __m512i m = _mm512_and_si512(bits, _mm512_set1_epi64((1ll << 52) - 1));
  m = _mm512_mask_or_epi64(m, normal, m, _mm512_set1_epi64(1ll << 52));
  __m512i s = _mm512_sub_epi64(_mm512_max_epu64(ex, _mm512_set1_epi64(1)), _mm512_set1_epi64(1075 - FX_K));
  __mmask8 left = _mm512_cmpge_epi64_mask(s, _mm512_setzero_si512());
  /* s >= 0: m << s over 128 bits (variable shifts by 64 or more give 0) */
  __m512i llo = _mm512_sllv_epi64(m, s);
  __m512i lhi = _mm512_or_si512(_mm512_sllv_epi64(m, _mm512_sub_epi64(s, _mm512_set1_epi64(64))),
                                _mm512_srlv_epi64(m, _mm512_sub_epi64(_mm512_set1_epi64(64), s)));
  /* s < 0: m >> r rounded to even, r = min(-s, 64) */
  __m512i r = _mm512_min_epi64(_mm512_sub_epi64(_mm512_setzero_si512(), s), _mm512_set1_epi64(64));
  __m512i one = _mm512_set1_epi64(1);
  __m512i q = _mm512_srlv_epi64(m, r);
  __m512i rem = _mm512_and_si512(m, _mm512_sub_epi64(_mm512_sllv_epi64(one, r), one));
  __m512i half = _mm512_sllv_epi64(one, _mm512_sub_epi64(r, one));
  __mmask8 up = _mm512_cmpgt_epu64_mask(rem, half) |
                (_mm512_cmpeq_epi64_mask(rem, half) & _mm512_test_epi64_mask(q, one));
  q = _mm512_mask_add_epi64(q, up, q, one);
  __m512i lo = _mm512_mask_blend_epi64(left, q, llo);
  __m512i hi = _mm512_maskz_mov_epi64(left, lhi);
  /* negate the lanes with the sign bit: -(hi:lo) = (~hi:~lo) + 1 */
  __mmask8 negm = _mm512_movepi64_mask(bits);
  __m512i nlo = _mm512_sub_epi64(_mm512_setzero_si512(), lo);
  __m512i nhi = _mm512_sub_epi64(_mm512_setzero_si512(), hi);
  nhi = _mm512_mask_sub_epi64(nhi, _mm512_test_epi64_mask(lo, lo), nhi, one); /* borrow */
  *plo = _mm512_mask_blend_epi64(negm, lo, nlo);
  *phi = _mm512_mask_blend_epi64(negm, hi, nhi);
}

/* (alo:ahi) + (blo:bhi); *ok: both and the sum valid. */
static FX_TARGET inline void fx8_add(__m512i alo, __m512i ahi, __m512i blo, __m512i bhi, __m512i *rlo, __m512i *rhi,
                                     __mmask8 *ok) {
  __m512i lo = _mm512_add_epi64(alo, blo);
  __mmask8 carry = _mm512_cmplt_epu64_mask(lo, alo);
  __m512i hi = _mm512_add_epi64(ahi, bhi);
  hi = _mm512_mask_add_epi64(hi, carry, hi, _mm512_set1_epi64(1));
  *ok = fx8_valid(ahi) & fx8_valid(bhi) & fx8_valid(hi);
  *rlo = lo;
  *rhi = hi;
}

static FX_TARGET void fx_set_avx512(BprtFx *acc, const float *x, size_t n, float w) {
  __m512d vw = _mm512_set1_pd((double)w);
  size_t i = 0;
  for (; i < n && ((uintptr_t)(acc + i) & 63); i++) acc[i] = fx_from_double((double)x[i] * (double)w);
  for (; i + 8 <= n; i += 8) {
    __m512i lo, hi;
    __mmask8 ok;
    fx8_from_f32(x + i, vw, &lo, &hi, &ok);
    if (ok == 0xff)
      fx8_store(acc + i, lo, hi);
    else
      for (size_t j = i; j < i + 8; j++) acc[j] = fx_from_double((double)x[j] * (double)w);
  }
  for (; i < n; i++) acc[i] = fx_from_double((double)x[i] * (double)w);
}

static FX_TARGET void fx_add_avx512(BprtFx *acc, const float *x, size_t n, float w) {
  __m512d vw = _mm512_set1_pd((double)w);
  size_t i = 0;
  for (; i < n && ((uintptr_t)(acc + i) & 63); i++) acc[i] = fx_add(acc[i], fx_from_double((double)x[i] * (double)w));
  for (; i + 8 <= n; i += 8) {
    __m512i lo, hi, alo, ahi;
    __mmask8 ok, ok2;
    fx8_from_f32(x + i, vw, &lo, &hi, &ok);
    fx8_load(acc + i, &alo, &ahi);
    fx8_add(alo, ahi, lo, hi, &lo, &hi, &ok2);
    if ((ok & ok2) == 0xff)
      fx8_store(acc + i, lo, hi);
    else
      for (size_t j = i; j < i + 8; j++) acc[j] = fx_add(acc[j], fx_from_double((double)x[j] * (double)w));
  }
  for (; i < n; i++) acc[i] = fx_add(acc[i], fx_from_double((double)x[i] * (double)w));
}

static FX_TARGET void fx_combine_avx512(BprtFx *inout, const BprtFx *in, size_t n) {
  size_t i = 0;
  /* scalar up to a 64-byte boundary of inout (as in the other loops: the vector loads
   * and stores then never split a cache line; split ones made this loop slower than
   * the scalar one on arrays larger than the caches, 7.0 against 4.5 ns/element) */
  for (; i < n && ((uintptr_t)(inout + i) & 63); i++) inout[i] = fx_add(inout[i], in[i]);
  for (; i + 8 <= n; i += 8) {
    __m512i alo, ahi, blo, bhi, lo, hi;
    __mmask8 ok;
    fx8_load(inout + i, &alo, &ahi);
    fx8_load(in + i, &blo, &bhi);
    fx8_add(alo, ahi, blo, bhi, &lo, &hi, &ok);
    if (ok == 0xff)
      fx8_store(inout + i, lo, hi);
    else
      for (size_t j = i; j < i + 8; j++) inout[j] = fx_add(inout[j], in[j]);
  }
  for (; i < n; i++) inout[i] = fx_add(inout[i], in[i]);
}

/* fx_to_float on 8 valid lanes. */
static FX_TARGET unsigned fx_to_f32_avx512(float *out, const BprtFx *acc, size_t n) {
  unsigned flags = 0;
  const __m512i one = _mm512_set1_epi64(1);
  size_t i = 0;
  for (; i < n && ((uintptr_t)(acc + i) & 63); i++) out[i] = fx_to_float(acc[i], &flags);
  for (; i + 8 <= n; i += 8) {
    __m512i vlo, vhi;
    fx8_load(acc + i, &vlo, &vhi);
    if (fx8_valid(vhi) != 0xff) {
      for (size_t j = i; j < i + 8; j++) out[j] = fx_to_float(acc[j], &flags);
      continue;
    }
    __mmask8 negm = _mm512_movepi64_mask(vhi);
    __m512i lo = _mm512_mask_sub_epi64(vlo, negm, _mm512_setzero_si512(), vlo);
    __m512i hi = _mm512_mask_sub_epi64(vhi, negm, _mm512_setzero_si512(), vhi);
    hi = _mm512_mask_sub_epi64(hi, negm & _mm512_test_epi64_mask(vlo, vlo), hi, one); /* borrow */
    __mmask8 in_hi = _mm512_test_epi64_mask(hi, hi);
    __mmask8 nonzero = in_hi | _mm512_test_epi64_mask(lo, lo);
    __m512i zh = _mm512_lzcnt_epi64(_mm512_or_si512(hi, one)), zl = _mm512_lzcnt_epi64(_mm512_or_si512(lo, one));
    __m512i t_hi = _mm512_or_si512(_mm512_sllv_epi64(hi, zh),
                                   _mm512_srlv_epi64(lo, _mm512_sub_epi64(_mm512_set1_epi64(64), zh)));
    __m512i t = _mm512_mask_blend_epi64(in_hi, _mm512_sllv_epi64(lo, zl), t_hi);
    __mmask8 sticky = in_hi & _mm512_test_epi64_mask(_mm512_sllv_epi64(lo, zh), _mm512_sllv_epi64(lo, zh));
    __m512i z = _mm512_mask_blend_epi64(in_hi, _mm512_add_epi64(zl, _mm512_set1_epi64(64)), zh);
    __m512i m = _mm512_srli_epi64(t, 40);
    __m512i rest = _mm512_and_si512(t, _mm512_set1_epi64((1ll << 40) - 1)), half = _mm512_set1_epi64(1ll << 39);
    __mmask8 up = _mm512_cmpgt_epu64_mask(rest, half) |
                  (_mm512_cmpeq_epi64_mask(rest, half) & (sticky | _mm512_test_epi64_mask(m, one)));
    m = _mm512_mask_add_epi64(m, up, m, one);
    /* bits = sign<<31 + (127-z-76+127)<<23 + m - 2^23 */
    __m512i e = _mm512_sub_epi64(_mm512_set1_epi64(127 - FX_K + 127), z); /* L-76+127, L = 127-z */
    __m512i b = _mm512_add_epi64(_mm512_slli_epi64(e, 23), _mm512_sub_epi64(m, _mm512_set1_epi64(1ll << 23)));
    b = _mm512_mask_or_epi64(b, negm, b, _mm512_set1_epi64(0x80000000ll));
    b = _mm512_maskz_mov_epi64(nonzero, b);
    _mm256_storeu_si256((__m256i *)(out + i), _mm512_cvtepi64_epi32(b));
  }
  for (; i < n; i++) out[i] = fx_to_float(acc[i], &flags);
  return flags;
}

static int fx_simd_forced = -1; /* -1: use it when the CPU has it (tests set 0 or 1) */

static int fx_simd(void) {
  if (fx_simd_forced >= 0) return fx_simd_forced;
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512cd") &&
         __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
}

int bprt_fxsum_set_simd(int on) {
  fx_simd_forced = -1;
  int have = fx_simd();
  fx_simd_forced = on < 0 ? -1 : on && have;
  return have;
}
#else
#define FX_SIMD 0
int bprt_fxsum_set_simd(int on) {
  (void)on;
  return 0;
}
#endif

void bprt_fxsum_zero(BprtFx *acc, size_t n) {
  if (n) memset(acc, 0, n * sizeof *acc);
}

void bprt_fxsum_set_f32(BprtFx *acc, const float *x, size_t n, float w) {
#if FX_SIMD
  if (fx_simd()) {
    fx_set_avx512(acc, x, n, w);
    return;
  }
#endif
  double dw = w;
  for (size_t i = 0; i < n; i++) acc[i] = fx_from_double((double)x[i] * dw);
}

void bprt_fxsum_add_f32(BprtFx *acc, const float *x, size_t n, float w) {
#if FX_SIMD
  if (fx_simd()) {
    fx_add_avx512(acc, x, n, w);
    return;
  }
#endif
  double dw = w;
  for (size_t i = 0; i < n; i++) acc[i] = fx_add(acc[i], fx_from_double((double)x[i] * dw));
}

void bprt_fxsum_combine(BprtFx *inout, const BprtFx *in, size_t n) {
#if FX_SIMD
  if (fx_simd()) {
    fx_combine_avx512(inout, in, n);
    return;
  }
#endif
  for (size_t i = 0; i < n; i++) inout[i] = fx_add(inout[i], in[i]);
}

unsigned bprt_fxsum_to_f32(float *out, const BprtFx *acc, size_t n) {
#if FX_SIMD
  if (fx_simd()) return fx_to_f32_avx512(out, acc, n);
#endif
  unsigned flags = 0;
  for (size_t i = 0; i < n; i++) out[i] = fx_to_float(acc[i], &flags);
  return flags;
}

unsigned bprt_fxsum_flags(const BprtFx *acc, size_t n) {
  unsigned flags = 0;
  for (size_t i = 0; i < n; i++) flags |= fx_flags(acc[i]);
  return flags;
}

char *bprt_fxsum_describe(unsigned flags, char *buf, size_t size) {
  static const struct {
    unsigned flag;
    const char *text;
  } names[] = {{BPRT_FX_NAN, "NaN"},
               {BPRT_FX_POS_INF, "+Inf"},
               {BPRT_FX_NEG_INF, "-Inf"},
               {BPRT_FX_RANGE, "|sum| >= 2^50"}};
  if (!size) return buf;
  buf[0] = 0;
  size_t at = 0;
  for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
    if (!(flags & names[k].flag)) continue;
    int w = snprintf(buf + at, size - at, "%s%s", at ? ", " : "", names[k].text);
    if (w < 0 || (size_t)w >= size - at) break;
    at += (size_t)w;
  }
  return buf;
}

BprtFx bprt_fx_from_f32(float x, float w) { return fx_from_double((double)x * (double)w); }

float bprt_fx_to_f32(BprtFx v, unsigned *flags) {
  unsigned f = 0;
  float x = fx_to_float(v, &f);
  if (flags) *flags = f;
  return x;
}
