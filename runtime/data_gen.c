/* runtime/data_gen.c — built-in synthetic datasets: spiral, xor, blobs.
 *
 * Each point is a pure function of (seed, row): the noise of row i comes from the
 * counter-based RNG at stream bprt_stream_data(BPRT_DATA_GENERATE, 0), index 2i and
 * 2i+1 (or i*dim + k), so the data are the same on every run and machine. Rows are in
 * class order; training shuffles them anyway.
 *
 *   spiral  (CS231n's) class j of K: radius r in (0, 1), angle 4j + 4r + noise * N(0,1);
 *           x = (r sin t, r cos t).  Defaults n=1000, classes=3, noise=0.2 (with
 *           examples/spiral.bp's 30 epochs, 300 rows reach only ~96% training
 *           accuracy; 1000 reach ~99%).
 *   xor     corners (+-1, +-1) + noise * N(0,1); class 1 where the corner's signs
 *           differ.  Defaults n=200, noise=0.2.
 *   blobs   (scikit-learn's make_blobs) centers U(-10, 10)^dim, points center +
 *           std * N(0,1)^dim.  Defaults n=300, classes=3, dim=2, std=1.0. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "runtime/data_internal.h"

static uint64_t gen_stream(void) { return bprt_stream_data(BPRT_DATA_GENERATE, 0); }

static BprtDataset *labeled(int64_t n, int64_t nfeat, int classes, const char *source) {
  BprtDataset *d = bprt_dataset_new(n, nfeat, 0, source);
  if (d) d->nclasses = classes;
  return d;
}

BprtDataset *bprt_gen_spiral(int64_t n, int classes, double noise, uint64_t seed) {
  if (n < classes || classes < 2 || !(noise >= 0)) {
    bprt_set_error("spiral: need n >= classes >= 2 and noise >= 0 (got n=%" PRId64 ", classes=%d, noise=%g)", n,
                   classes, noise);
    return NULL;
  }
  char source[128];
  snprintf(source, sizeof source, "spiral:n=%" PRId64 ",classes=%d,noise=%g", n, classes, noise);
  BprtDataset *d = labeled(n, 2, classes, source);
  if (!d) return NULL;
  for (int64_t i = 0; i < n; i++) {
    int j = (int)(i * classes / n);
    int64_t first = (j * n + classes - 1) / classes, next = ((j + 1) * n + classes - 1) / classes;
    double r = ((double)(i - first) + 0.5) / (double)(next - first);
    double t = 4.0 * j + 4.0 * r + noise * bprt_rng_normal(seed, gen_stream(), 2 * (uint64_t)i);
    d->x[2 * i] = (float)(r * sin(t));
    d->x[2 * i + 1] = (float)(r * cos(t));
    d->labels[i] = j;
  }
  return d;
}

BprtDataset *bprt_gen_xor(int64_t n, double noise, uint64_t seed) {
  if (n < 4 || !(noise >= 0)) {
    bprt_set_error("xor: need n >= 4 and noise >= 0 (got n=%" PRId64 ", noise=%g)", n, noise);
    return NULL;
  }
  char source[128];
  snprintf(source, sizeof source, "xor:n=%" PRId64 ",noise=%g", n, noise);
  BprtDataset *d = labeled(n, 2, 2, source);
  if (!d) return NULL;
  for (int64_t i = 0; i < n; i++) {
    int c = (int)(i * 4 / n);   /* corners in order: (-1,-1) (1,1) (-1,1) (1,-1) */
    double cx = (c == 1 || c == 3) ? 1.0 : -1.0, cy = (c == 1 || c == 2) ? 1.0 : -1.0;
    d->x[2 * i] = (float)(cx + noise * bprt_rng_normal(seed, gen_stream(), 2 * (uint64_t)i));
    d->x[2 * i + 1] = (float)(cy + noise * bprt_rng_normal(seed, gen_stream(), 2 * (uint64_t)i + 1));
    d->labels[i] = c >= 2;
  }
  return d;
}

BprtDataset *bprt_gen_blobs(int64_t n, int classes, int dim, double std, uint64_t seed) {
  if (n < classes || classes < 1 || dim < 1 || !(std >= 0)) {
    bprt_set_error("blobs: need n >= classes >= 1, dim >= 1 and std >= 0 (got n=%" PRId64
                   ", classes=%d, dim=%d, std=%g)", n, classes, dim, std);
    return NULL;
  }
  char source[160];
  snprintf(source, sizeof source, "blobs:n=%" PRId64 ",classes=%d,dim=%d,std=%g", n, classes, dim, std);
  BprtDataset *d = labeled(n, dim, classes, source);
  if (!d) return NULL;
  uint64_t cs = bprt_stream_data(BPRT_DATA_GENERATE_CENTERS, 0);
  for (int64_t i = 0; i < n; i++) {
    int j = (int)(i * classes / n);
    for (int k = 0; k < dim; k++) {
      double center = -10.0 + 20.0 * bprt_rng_uniform(seed, cs, (uint64_t)j * (uint64_t)dim + (uint64_t)k);
      uint64_t idx = (uint64_t)i * (uint64_t)dim + (uint64_t)k;
      d->x[i * dim + k] = (float)(center + std * bprt_rng_normal(seed, gen_stream(), idx));
    }
    d->labels[i] = j;
  }
  return d;
}

int data_gen_spec(const char *name, const char *opts, uint64_t seed, BprtDataset **out) {
  int which = strcmp(name, "spiral") == 0 ? 0 : strcmp(name, "xor") == 0 ? 1 : strcmp(name, "blobs") == 0 ? 2 : -1;
  if (which < 0) return 0;
  int64_t n = which == 0 ? 1000 : which == 1 ? 200 : 300, classes = 3, dim = 2, s = (int64_t)(seed & INT64_MAX);
  double noise = which == 2 ? 1.0 : 0.2;
  char key[64], val[256];
  const char *p = opts;
  int rc;
  while ((rc = data_opt_next(&p, name, key, sizeof key, val, sizeof val)) == 1) {
    if (strcmp(key, "n") == 0) rc = data_opt_int(name, key, val, 1, INT64_C(100000000), &n);
    else if (strcmp(key, "classes") == 0 && which != 1) rc = data_opt_int(name, key, val, 1, 100000, &classes);
    else if (strcmp(key, "dim") == 0 && which == 2) rc = data_opt_int(name, key, val, 1, 100000, &dim);
    else if (strcmp(key, "noise") == 0 || (strcmp(key, "std") == 0 && which == 2))
      rc = data_opt_double(name, key, val, 0, 1e6, &noise);
    else if (strcmp(key, "seed") == 0) rc = data_opt_int(name, key, val, 0, INT64_MAX, &s);
    else
      return bprt_set_error("%s: unknown option '%s' (known: %s)", name, key,
                            which == 0 ? "n, classes, noise, seed" : which == 1 ? "n, noise, seed"
                                                                                : "n, classes, dim, std, seed");
    if (rc != 0) return -1;
  }
  if (rc < 0) return -1;
  if (which == 0) *out = bprt_gen_spiral(n, (int)classes, noise, (uint64_t)s);
  else if (which == 1) *out = bprt_gen_xor(n, noise, (uint64_t)s);
  else *out = bprt_gen_blobs(n, (int)classes, (int)dim, noise, (uint64_t)s);
  return *out ? 1 : -1;
}
