/* tests/codegen/harness.h — run IR through the JIT and through the reference
 * interpreter on the same random data, and compare (shared by the codegen tests). */
#ifndef BPCC_TESTS_CODEGEN_HARNESS_H
#define BPCC_TESTS_CODEGEN_HARNESS_H

#include <stdbool.h>
#include <stdint.h>

#include "codegen/codegen.h"

/* Random inputs are uniform in [lo, hi); labels uniform over the classes. */
typedef struct {
  double lo, hi;
  int threads;        /* parallel_for threads (1: serial) */
  const char *march;  /* NULL: native */
  bool init_scale;    /* params: rank 2 times sqrt(3 / dims[0]) (a He-like scale), else 0.1 */
  bool f64;           /* compile and interpret cgt_func_to_f64 of the functions instead */
} CgtConfig;

/* A serial / pthread parallel_for with the bprt_parallel_for_fn signature. */
void cgt_parallel_for(void *pool, int64_t n, int64_t grain, bprt_task_fn fn, void *ctx);

/* Every output of f (the forward entry, dropout off) against the interpreter at batch
 * size `batch`, relative to the tensor's scale: |jit - ref| <= tol * max(1, max |ref|)
 * for every element (normwise: an f32 dot product of K terms carries an error relative
 * to its terms, not to a result that cancels to near zero). Prints the max diff of each
 * tensor that fails (all with CGT_VERBOSE set). Returns the number of tensors that
 * failed (or 1 if building failed). */
int cgt_check_forward(Func *f, int64_t batch, double tol, const CgtConfig *cfg);
/* A reference other than the interpreter: outs[k] (allocated by the caller with the
 * type of the k-th output sink, batch resolved) from the inputs and parameters as the
 * interpreter would get them. When cgt_reference is set, cgt_check_forward compares
 * with it instead (tests of ops the interpreter does not know yet). */
typedef void (*CgtRefFn)(Func *f, int64_t batch, const Tensor *ins, const Tensor *ps, Tensor *outs);
extern CgtRefFn cgt_reference;

/* For an f64 model (every float type f64) the JIT runs on double buffers and the
 * reference is the interpreter's INTERP_F64 mode (no rounding to f32); the norm is the
 * same: |jit - ref| <= tol * max(1, max |ref|) per tensor. */

/* The grad entry of a model (fwd, grad) against the interpreter running grad: the
 * loss, every gradient and every output, with the same tolerance rule as above. */
int cgt_check_grad(Func *fwd, Func *grad, int64_t batch, double tol, const CgtConfig *cfg);

/* A frame with blocks sized from desc at `batch`; free with cgt_frame_free. The float
 * pointers hold `esize`-byte elements: float (4) or double (8, an f64 model). */
typedef struct {
  bprt_frame fr;
  int esize;
  float *params, *grads, *state, *loss, *buffers;
  unsigned char *ws;
  void **inputs;
  float **outputs;
  double hyper[BPRT_H__COUNT];
  int ninputs, noutputs;
} CgtFrame;
void cgt_frame_init(CgtFrame *t, const bprt_model_desc *d, int64_t batch, int threads);
void cgt_frame_init_ex(CgtFrame *t, const bprt_model_desc *d, int64_t batch, int threads, int esize);

/* A copy of f (named `name`, in f's module) with every f32 type replaced by f64, for
 * running a model through the f64 code generator and the INTERP_F64 interpreter. */
Func *cgt_func_to_f64(Func *f, const char *name);
void cgt_frame_free(CgtFrame *t);
int64_t cgt_numel(int rank, const int64_t *dims, int64_t batch);

double cgt_urand(uint64_t *state);   /* uniform [0, 1) */

#endif
