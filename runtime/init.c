/* runtime/init.c — parameter initialization, as declared in the DSL.
 *
 * The one idea: element i of parameter j is drawn from (seed, stream j, index i) of the
 * counter-based RNG, so initialization is reproducible from the seed alone, whatever
 * the thread count. The formulas are PyTorch's (torch.nn.init) with gain 1 for Xavier
 * and the ReLU gain sqrt(2) for He (kaiming_*_ with a = 0):
 *   xavier_uniform  U(-s, s)  s = sqrt(6 / (fan_in + fan_out))
 *   xavier_normal   N(0, s^2) s = sqrt(2 / (fan_in + fan_out))
 *   he_uniform      U(-s, s)  s = sqrt(6 / fan_in)
 *   he_normal       N(0, s^2) s = sqrt(2 / fan_in)
 * with fans of a dense W[in, out]: fan_in = dims[0], fan_out = dims[1]; of a conv2d
 * weight W[out, in, kh, kw] (PyTorch's layout, rank 3 and up): fan_in = in kh kw,
 * fan_out = out kh kw, as torch.nn.init computes them for nn.Conv2d (runtime.h). */
#include "runtime/runtime.h"

#include <math.h>
#include <string.h>

const char *const bprt_init_names[BPRT_INIT__COUNT] = {
    "zeros",          "ones",          "constant",   "normal",    "uniform",
    "xavier_uniform", "xavier_normal", "he_uniform", "he_normal",
};

int bprt_init_fans(int rank, const int64_t *dims, double *fan_in, double *fan_out) {
  if (rank < 0 || rank > BPRT_MAX_RANK)
    return bprt_set_error("init: rank %d is out of range 0..%d", rank, BPRT_MAX_RANK);
  if (rank > 0 && !dims) return bprt_set_error("init: NULL dims");
  for (int i = 0; i < rank; i++)
    if (dims[i] < 1) return bprt_set_error("init: dimension %d is %lld; must be >= 1", i, (long long)dims[i]);
  double in, out;
  if (rank < 2) {
    in = out = rank == 0 ? 1.0 : (double)dims[0];
  } else {
    double receptive = 1.0;
    for (int i = 2; i < rank; i++) receptive *= (double)dims[i];
    /* rank 2 is bpcc's dense W[in, out]; rank 3 and up a convolution's W[out, in, k...] */
    in = (double)dims[rank == 2 ? 0 : 1] * receptive;
    out = (double)dims[rank == 2 ? 1 : 0] * receptive;
  }
  if (fan_in) *fan_in = in;
  if (fan_out) *fan_out = out;
  return 0;
}

int bprt_init_tensor(float *data, int rank, const int64_t *dims, int kind, double a, double b,
                     uint64_t seed, uint64_t stream) {
  if (kind < 0 || kind >= BPRT_INIT__COUNT)
    return bprt_set_error("init: unknown initializer kind %d", kind);
  double fan_in, fan_out;
  if (bprt_init_fans(rank, dims, &fan_in, &fan_out) != 0) return -1;
  int64_t n = 1;
  for (int i = 0; i < rank; i++) {
    if (dims[i] > INT64_MAX / n) return bprt_set_error("init: tensor too large");
    n *= dims[i];
  }
  if (!data) return bprt_set_error("init: NULL data pointer");
  const char *name = bprt_init_names[kind];
  switch ((BprtInitKind)kind) {
  case BPRT_INIT_ZEROS:
    memset(data, 0, sizeof(float) * (size_t)n);
    return 0;
  case BPRT_INIT_ONES:
  case BPRT_INIT_CONSTANT: {
    float v = kind == BPRT_INIT_ONES ? 1.0f : (float)a;
    if (!isfinite(v)) return bprt_set_error("init: constant value %g is not finite", a);
    for (int64_t i = 0; i < n; i++) data[i] = v;
    return 0;
  }
  case BPRT_INIT_NORMAL:
    if (!(a >= 0) || !isfinite(a))
      return bprt_set_error("init: normal std %g must be finite and >= 0", a);
    bprt_fill_normal(data, n, 0.0f, (float)a, seed, stream, 0);
    return 0;
  case BPRT_INIT_UNIFORM:
    if (!isfinite(a) || !isfinite(b) || a > b)
      return bprt_set_error("init: uniform(%g, %g) needs finite a <= b", a, b);
    bprt_fill_uniform(data, n, (float)a, (float)b, seed, stream, 0);
    return 0;
  case BPRT_INIT_XAVIER_UNIFORM:
  case BPRT_INIT_HE_UNIFORM: {
    double s = kind == BPRT_INIT_XAVIER_UNIFORM ? sqrt(6.0 / (fan_in + fan_out)) : sqrt(6.0 / fan_in);
    bprt_fill_uniform(data, n, (float)-s, (float)s, seed, stream, 0);
    return 0;
  }
  case BPRT_INIT_XAVIER_NORMAL:
  case BPRT_INIT_HE_NORMAL: {
    double s = kind == BPRT_INIT_XAVIER_NORMAL ? sqrt(2.0 / (fan_in + fan_out)) : sqrt(2.0 / fan_in);
    bprt_fill_normal(data, n, 0.0f, (float)s, seed, stream, 0);
    return 0;
  }
  case BPRT_INIT__COUNT:
    break;
  }
  return bprt_set_error("init: unknown initializer '%s'", name);
}
