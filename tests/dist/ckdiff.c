/* tests/dist/ckdiff.c — compare two bpcc checkpoints tensor by tensor (the tests of
 * data-parallel training, docs/distributed.md).
 *
 *   ckdiff A.safetensors B.safetensors TOL     every tensor of B is in A with its shape,
 *                                             and the two groups below are within TOL
 *   ckdiff A B exact                           every tensor bit for bit, and the metadata
 *                                             keys bpcc.step and bpcc.epoch equal
 *
 * The measure is max|a - b| / max|b| over a group: the parameters (the tensors not named
 * optim.*), and each optimizer slot (optim.*.exp_avg, optim.*.momentum_buffer, ...) —
 * the largest element difference over the largest magnitude of the group. A float sum
 * taken in another order (a reduction over ranks) differs by a few ulps of its largest
 * terms, not of its result: a bias whose gradient is a sum that cancels has a small
 * result and the same absolute error, so it is measured at the scale of the model's
 * parameters, not at its own. Each tensor's own ratio is printed beside, for a reader.
 * It prints a line per tensor and per group and exits 0 when every group is within
 * TOL, 1 otherwise (2: a file or an argument is wrong). */
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
  enum { MAXG = 16 };
  char gname[MAXG][64];   /* "parameters", "exp_avg", ... */
  double gdiff[MAXG] = {0}, gmax[MAXG] = {0};
  int ng = 0;
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
    printf("%-32s max|a-b| %-10.3g max|b| %-10.3g own rel %.3g%s\n", tb->name, dmax, bmax, rel, same ? "  (identical)" : "");
    if (exact && !same) bad++;
    /* its group: "parameters", or the slot after the last '.' of optim.NAME.SLOT */
    const char *g = strncmp(tb->name, "optim.", 6) ? "parameters" : strrchr(tb->name, '.') + 1;
    int k = 0;
    while (k < ng && strcmp(gname[k], g)) k++;
    if (k == ng && ng < MAXG) snprintf(gname[ng++], sizeof gname[0], "%s", g);
    if (k < ng) {
      if (dmax > gdiff[k]) gdiff[k] = dmax;
      if (bmax > gmax[k]) gmax[k] = bmax;
    }
  }
  for (int k = 0; k < ng && !exact; k++) {
    double rel = gdiff[k] == 0 ? 0 : gmax[k] > 0 ? gdiff[k] / gmax[k] : INFINITY;
    bool ok = rel <= tol;
    printf("group %-12s max|a-b| %-10.3g max|b| %-10.3g rel %.3g %s\n", gname[k], gdiff[k], gmax[k], rel,
           ok ? "within tolerance" : "OVER");
    if (!ok) bad++;
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
  printf("%d tensors: %s\n", bprt_st_count(b), bad ? "DIFFERENT" : exact ? "identical" : "within tolerance");
  bprt_st_free(a);
  bprt_st_free(b);
  return bad ? 1 : 0;
}
