/* driver/fdcheck.h — derived gradients against finite differences of the loss, the
 * numerics of `bpcc gradcheck` (fdcheck.c describes the method; cmd_gradcheck.c parses
 * the command line and builds the two functions).
 *
 * Depends on the IR layer alone (the reference interpreter), so tests link it as the
 * library bpcc_fdcheck without the driver. */
#ifndef BPCC_DRIVER_FDCHECK_H
#define BPCC_DRIVER_FDCHECK_H

#include "ir/ir.h"

#include <stdio.h>

typedef struct {
  bool f32;        /* the analytic gradient in the f32 interpreter (the loss is always f64) */
  int64_t batch;   /* B of every [B, ...] input */
  uint64_t seed;   /* inputs, labels, parameters, sampled elements, dropout masks */
  double tol;      /* threshold on the relative error; <= 0: 1e-7 in f64, 1e-3 in f32 */
  int64_t samples; /* > 0: at most this many elements per parameter (all of a smaller one) */
} FdOptions;

/* Elements checked per parameter: all of one with at most FD_ALL_MAX elements, else
 * FD_SAMPLES distinct ones drawn with the seed; with FdOptions.samples = n, all of one
 * with at most n elements, else n drawn (--samples: a large model's quick check). */
#define FD_ALL_MAX 4096
#define FD_SAMPLES 256

/* Check every parameter's gradient in `grad` (the gradient IR: one grad sink per
 * parameter) against finite differences of the loss of `fwd` (the lowered forward IR,
 * untouched by any pass), both in the reference interpreter. Prints the report to out;
 * `label` names the model in its first line (the file, say). Returns 0 when every
 * parameter is within tolerance, 1 when some parameter is above it, -1 on an error
 * (reported on stderr). */
int fd_check(Func *fwd, Func *grad, const FdOptions *o, FILE *out, const char *label);

/* The first instruction of g, in order, whose value in `it` (an interpreter run of g)
 * holds a NaN or an infinity, described into what[0..n): "'h', the log at m.bp:3:9
 * (nan)", "the matmul of the backward pass (rule ..., through 'h') at ... (inf)",
 * "input 'x' at ..."; false if every value is finite. gradcheck names where a loss went
 * bad with it, and the training loop's diagnosis (nonfinite.c) the tensor of a step. */
bool nonfinite_in(Func *g, Interp *it, char *what, size_t n);

#endif
