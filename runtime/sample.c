/* runtime/sample.c — drawing the next token from a language model's logits (bpcc sample).
 *
 * softmax(z / t) restricted to the k largest logits, drawn with the counter-based RNG:
 * token i of a generation uses the uniform Philox(seed, sample stream, i), so a seed
 * gives the same text on every run and thread count. t = 0 is greedy (the first
 * largest logit, as torch.argmax). Ties in the top-k cut are broken by the smaller
 * index, so the set is the same whatever the sort does. */
#include "runtime/train.h"

#include <math.h>
#include <stdlib.h>

typedef struct {
  float z;
  int32_t i;
} Cand;

/* Larger logit first; of equal ones the smaller index. */
static int by_logit(const void *a, const void *b) {
  const Cand *x = a, *y = b;
  if (x->z != y->z) return x->z < y->z ? 1 : -1;
  return (x->i > y->i) - (x->i < y->i);
}

int64_t bprt_sample_logits(const float *z, int64_t v, double temperature, int64_t top_k, uint64_t seed, uint64_t index) {
  if (!z || v < 1 || !(temperature >= 0) || top_k < 1)
    return bprt_set_error("bprt_sample_logits: bad arguments (v %lld, temperature %g, top_k %lld)", (long long)v,
                          temperature, (long long)top_k);
  for (int64_t j = 0; j < v; j++)
    if (!isfinite(z[j])) return bprt_set_error("logit %lld is %g, not a finite number", (long long)j, (double)z[j]);
  if (temperature == 0 || top_k == 1) {
    int64_t best = 0;
    for (int64_t j = 1; j < v; j++)
      if (z[j] > z[best]) best = j;
    return best;
  }
  Cand *c = bprt_malloc(sizeof(Cand) * (size_t)v);
  if (!c) return -1;
  for (int64_t j = 0; j < v; j++) c[j] = (Cand){z[j], (int32_t)j};
  qsort(c, (size_t)v, sizeof *c, by_logit);
  int64_t k = top_k < v ? top_k : v;
  /* exp((z - max) / t) in double: the largest term is 1, so the sum cannot overflow */
  double sum = 0;
  for (int64_t j = 0; j < k; j++) sum += exp(((double)c[j].z - (double)c[0].z) / temperature);
  double u = (double)(bprt_rng_u64(seed, bprt_stream_data(BPRT_DATA_SAMPLE, 0), index) >> 11) * 0x1p-53 * sum;
  int64_t pick = c[k - 1].i;
  double acc = 0;
  for (int64_t j = 0; j < k; j++) {
    acc += exp(((double)c[j].z - (double)c[0].z) / temperature);
    if (u < acc) {
      pick = c[j].i;
      break;
    }
  }
  bprt_free(c);
  return pick;
}
