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
  int L;
  uint64_t t, sticky;
  if (hi) {
    int z = __builtin_clzll(hi);
    L = 127 - z;
    t = z ? (hi << z) | (lo >> (64 - z)) : hi;
    sticky = z ? lo << z : lo;
  } else {
    int z = __builtin_clzll(lo);
    L = 63 - z;
    t = lo << z;
    sticky = 0;
  }
  uint64_t m = t >> 40, rest = t & ((1ull << 40) - 1), half = 1ull << 39;
  m += (rest > half) | ((rest == half) & ((sticky != 0) | (m & 1)));
  uint32_t b = (uint32_t)(sign << 31) + ((uint32_t)(L - FX_K + 127) << 23) + (uint32_t)(m - (1ull << 23));
  float x;
  memcpy(&x, &b, sizeof x);
  return x;
}

void bprt_fxsum_zero(BprtFx *acc, size_t n) {
  if (n) memset(acc, 0, n * sizeof *acc);
}

void bprt_fxsum_set_f32(BprtFx *acc, const float *x, size_t n, float w) {
  double dw = w;
  for (size_t i = 0; i < n; i++) acc[i] = fx_from_double((double)x[i] * dw);
}

void bprt_fxsum_add_f32(BprtFx *acc, const float *x, size_t n, float w) {
  double dw = w;
  for (size_t i = 0; i < n; i++) acc[i] = fx_add(acc[i], fx_from_double((double)x[i] * dw));
}

void bprt_fxsum_combine(BprtFx *inout, const BprtFx *in, size_t n) {
  for (size_t i = 0; i < n; i++) inout[i] = fx_add(inout[i], in[i]);
}

unsigned bprt_fxsum_to_f32(float *out, const BprtFx *acc, size_t n) {
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
