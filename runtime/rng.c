/* runtime/rng.c — Philox4x32-10, the counter-based RNG, and the fills built on it.
 *
 * The one idea: a random number is a pure function of (seed, stream, index), computed
 * by encrypting the counter (index, stream) under the key seed. No state is carried
 * from one draw to the next, so initialization and dropout masks are the same whatever
 * the number of threads and the order they run in, and a resumed run redraws exactly
 * what the first run drew. The layout of key and counter is in runtime.h.
 *
 * Philox4x32 round (Salmon et al. 2011, Random123's philox.h):
 *   (hi0, lo0) = M0 * c0;  (hi1, lo1) = M1 * c2          (32x32 -> 64-bit products)
 *   c' = { hi1 ^ c1 ^ k0,  lo1,  hi0 ^ c3 ^ k1,  lo0 }
 * and the key is bumped by the Weyl constants (W0, W1) between rounds; 10 rounds. */
#include "runtime/runtime.h"

#include <math.h>

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

void bprt_philox4x32_10(const uint32_t counter[4], const uint32_t key[2], uint32_t out[4]) {
  uint32_t c0 = counter[0], c1 = counter[1], c2 = counter[2], c3 = counter[3];
  uint32_t k0 = key[0], k1 = key[1];
  for (int round = 0; round < 10; round++) {
    if (round > 0) {
      k0 += PHILOX_W0;
      k1 += PHILOX_W1;
    }
    uint64_t p0 = (uint64_t)PHILOX_M0 * c0;
    uint64_t p1 = (uint64_t)PHILOX_M1 * c2;
    uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0;
    uint32_t n1 = (uint32_t)p1;
    uint32_t n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1;
    uint32_t n3 = (uint32_t)p0;
    c0 = n0, c1 = n1, c2 = n2, c3 = n3;
  }
  out[0] = c0, out[1] = c1, out[2] = c2, out[3] = c3;
}

/* The 4 words of block `block` of (seed, stream). */
static inline void block4(uint64_t seed, uint64_t stream, uint64_t block, uint32_t out[4]) {
  const uint32_t ctr[4] = {(uint32_t)block, (uint32_t)(block >> 32), (uint32_t)stream,
                           (uint32_t)(stream >> 32)};
  const uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
  bprt_philox4x32_10(ctr, key, out);
}

uint32_t bprt_rng_u32(uint64_t seed, uint64_t stream, uint64_t index) {
  uint32_t r[4];
  block4(seed, stream, index / 4, r);
  return r[index % 4];
}

uint64_t bprt_rng_u64(uint64_t seed, uint64_t stream, uint64_t index) {
  uint32_t r[4];
  block4(seed, stream, index / 2, r);
  unsigned lane = (unsigned)(index % 2) * 2;
  return (uint64_t)r[lane] | (uint64_t)r[lane + 1] << 32;
}

/* Top 24 bits scaled to [0, 1): exactly representable in float. */
static inline float u01_24(uint32_t u) { return (float)(u >> 8) * (1.0f / 16777216.0f); }

float bprt_rng_uniform(uint64_t seed, uint64_t stream, uint64_t index) {
  return u01_24(bprt_rng_u32(seed, stream, index));
}

/* Box-Muller on one pair of words: (u + 0.5) / 2^32 is in (0, 1), so log never sees 0. */
static inline double box_muller(uint32_t ua, uint32_t ub, int use_sin) {
  double u1 = ((double)ua + 0.5) * (1.0 / 4294967296.0);
  double u2 = ((double)ub + 0.5) * (1.0 / 4294967296.0);
  double r = sqrt(-2.0 * log(u1));
  double t = 6.283185307179586476925 * u2;
  return use_sin ? r * sin(t) : r * cos(t);
}

double bprt_rng_normal(uint64_t seed, uint64_t stream, uint64_t index) {
  uint32_t r[4];
  block4(seed, stream, index / 4, r);
  unsigned lane = (unsigned)(index % 4);
  unsigned pair = lane / 2 * 2;
  return box_muller(r[pair], r[pair + 1], lane & 1);
}

uint64_t bprt_rng_below(uint64_t seed, uint64_t stream, uint64_t index, uint64_t bound) {
  if (bound <= 1) return 0;
  return bprt_rng_u64(seed, stream, index) % bound;
}

/* ------------------------------------------------------------ parallel fills */

typedef struct {
  float *out;
  float a, b;
  uint64_t seed, stream, offset;
  int kind;       /* 0 uniform [a, b), 1 normal (mean a, std b), 2 dropout (p = a, scale b) */
} FillJob;

/* One range of a fill; the per-block loop draws 4 values per Philox call. */
static void fill_range(void *ctxp, int64_t begin, int64_t end, int worker) {
  (void)worker;
  const FillJob *j = ctxp;
  for (int64_t i = begin; i < end;) {
    uint64_t idx = j->offset + (uint64_t)i;
    uint32_t r[4];
    block4(j->seed, j->stream, idx / 4, r);
    for (unsigned lane = (unsigned)(idx % 4); lane < 4 && i < end; lane++, i++) {
      float v;
      if (j->kind == 0) {
        v = j->a + (j->b - j->a) * u01_24(r[lane]);
        if (v >= j->b && j->b > j->a) v = j->a;  /* rounding can reach b; keep [a, b) */
      } else if (j->kind == 1) {
        unsigned pair = lane / 2 * 2;
        v = (float)(j->a + j->b * box_muller(r[pair], r[pair + 1], lane & 1));
      } else {
        v = u01_24(r[lane]) < j->a ? 0.0f : j->b;
      }
      j->out[i] = v;
    }
  }
}

static void fill(FillJob *j, int64_t n) { bprt_parallel_for(n, 16384, fill_range, j); }

void bprt_fill_uniform(float *out, int64_t n, float a, float b, uint64_t seed, uint64_t stream,
                       uint64_t offset) {
  FillJob j = {out, a, b, seed, stream, offset, 0};
  fill(&j, n);
}

void bprt_fill_normal(float *out, int64_t n, float mean, float std, uint64_t seed,
                      uint64_t stream, uint64_t offset) {
  FillJob j = {out, mean, std, seed, stream, offset, 1};
  fill(&j, n);
}

void bprt_dropout_mask(float *mask, int64_t n, float p, uint64_t seed, uint64_t stream) {
  FillJob j = {mask, p, p < 1.0f ? 1.0f / (1.0f - p) : 0.0f, seed, stream, 0, 2};
  fill(&j, n);
}
