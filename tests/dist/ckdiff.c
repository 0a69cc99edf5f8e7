/* tests/dist/ckdiff.c — compare two bpcc checkpoints tensor by tensor (the tests of
 * data-parallel training, docs/distributed.md).
 *
 *   ckdiff A.safetensors B.safetensors TOL     every tensor of B is in A with its shape,
 *                                             and max|a - b| / max|b| <= TOL for each
 *   ckdiff A B exact                           every tensor bit for bit, and the metadata
 *                                             keys bpcc.step and bpcc.epoch equal
 *
 * The relative difference of a tensor is its largest element difference over its
 * largest magnitude (max|a_i - b_i| / max|b_i|; 0 when both are all zeros): a norm-wise
 * measure that a tensor with elements near zero does not inflate. It prints a line per
 * tensor ("h1.W  max|a-b| 1.2e-08  max|b| 0.95  rel 1.3e-08") and the worst, and exits 0
 * when every tensor is within TOL, 1 otherwise (2: a file or an argument is wrong). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/runtime.h"

static int64_t numel(const BprtTensorRef *t) {
  int64_t n = 1;
  for (int i = 0; i < t->rank; i++) n *= t->dims[i];
  return n;
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: ckdiff A.safetensors B.safetensors TOL|exact\n");
    return 2;
  }
  bool exact = strcmp(argv[3], "exact") == 0;
  double tol = exact ? 0 : atof(argv[3]);
  BprtCheckpoint *a = bprt_st_read(argv[1]), *b = a ? bprt_st_read(argv[2]) : NULL;
  if (!a || !b) {
    fprintf(stderr, "ckdiff: %s\n", bprt_last_error());
    return 2;
  }
  int bad = 0;
  double worst = 0;
  const char *worst_name = "";
  for (int i = 0; i < bprt_st_count(b); i++) {
    const BprtTensorRef *tb = bprt_st_tensor(b, i), *ta = bprt_st_find(a, tb->name);
    if (!ta || ta->rank != tb->rank || numel(ta) != numel(tb)) {
      printf("%s: %s in %s\n", tb->name, ta ? "another shape" : "missing", argv[1]);
      bad++;
      continue;
    }
    int64_t n = numel(tb);
    double dmax = 0, bmax = 0;
    for (int64_t k = 0; k < n; k++) {
      double d = fabs((double)ta->data[k] - (double)tb->data[k]);
      if (d > dmax || isnan(d)) dmax = isnan(d) ? INFINITY : d;
      if (fabs(tb->data[k]) > bmax) bmax = fabs(tb->data[k]);
    }
    double rel = dmax == 0 ? 0 : bmax > 0 ? dmax / bmax : INFINITY;
    bool same = memcmp(ta->data, tb->data, sizeof(float) * (size_t)n) == 0;
    printf("%-24s max|a-b| %-10.3g max|b| %-10.3g rel %.3g%s\n", tb->name, dmax, bmax, rel, same ? "  (identical)" : "");
    if (exact ? !same : !(rel <= tol)) bad++;
    if (rel > worst) worst = rel, worst_name = tb->name;
  }
  if (exact)
    for (int k = 0; k < 2; k++) {
      const char *key = k ? "bpcc.epoch" : "bpcc.step";
      const char *va = bprt_st_meta(a, key), *vb = bprt_st_meta(b, key);
      if (!va || !vb || strcmp(va, vb)) {
        printf("metadata %s: '%s' against '%s'\n", key, va ? va : "(none)", vb ? vb : "(none)");
        bad++;
      }
    }
  printf("%d tensors, worst rel %.3g (%s): %s\n", bprt_st_count(b), worst, worst_name,
         bad ? "DIFFERENT" : exact ? "identical" : "within tolerance");
  bprt_st_free(a);
  bprt_st_free(b);
  return bad ? 1 : 0;
}
