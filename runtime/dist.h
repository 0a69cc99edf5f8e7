/* runtime/dist.h — data-parallel training over MPI (`mpirun -np P bpcc train`).
 *
 * Library bpcc_dist, built when CMake finds MPI (it defines BPCC_HAVE_MPI for what links
 * it); runtime/dist.c is the only file of bpcc that includes mpi.h. Only the bpcc command
 * links it: bpcc_runtime, bpcc_data and the model libraries bpcc writes stay MPI-free.
 * The training loop (runtime/train.c) sees the other ranks through a BprtComm
 * (runtime/train.h), which bprt_dist_comm makes; docs/distributed.md has the design.
 *
 * Every wait polls with a deadline: a rank that died or stalls makes the others fail
 * with a message that names it and the synchronisation it missed ("rank 1 did not join
 * the gradient reduction of step 12 within 30 s"), never a hang. The caller then ends
 * the job with bprt_dist_abort (MPI_Abort), which mpirun turns into the end of every
 * rank.
 *
 * Error convention as in runtime.h: -1 (or NULL) and a message in bprt_last_error(). */
#ifndef BPCC_RUNTIME_DIST_H
#define BPCC_RUNTIME_DIST_H

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include "runtime/train.h"

/* Was this process started by an MPI launcher? Open MPI's mpirun sets
 * OMPI_COMM_WORLD_SIZE in every rank's environment, a PMIx launcher (Open MPI 4 and 5,
 * srun --mpi=pmix) PMIX_RANK. *size: OMPI_COMM_WORLD_SIZE, 0 when the launcher does not
 * say. Plain `bpcc train` finds neither and never touches MPI. (Inline: a bpcc built
 * without MPI asks it too, to say so.) */
static inline bool bprt_dist_launched(int *size) {
  const char *s = getenv("OMPI_COMM_WORLD_SIZE");
  *size = s ? atoi(s) : 0;
  return s != NULL || getenv("PMIX_RANK") != NULL;
}

#define BPRT_DIST_TIMEOUT 60.0          /* --timeout: seconds any wait on the other ranks takes */
#define BPRT_DIST_START_FACTOR 5        /* start-up (after loading and compiling): 5 x --timeout */
#define BPRT_DIST_BUCKET_MB 2.0         /* --bucket-mb: MiB of gradients per MPI_Iallreduce */

typedef struct BprtDist BprtDist;

/* MPI_Init_thread (MPI called from the main thread only), errors returned rather than
 * fatal. NULL + error. */
BprtDist *bprt_dist_init(int *argc, char ***argv);
int bprt_dist_rank(const BprtDist *d);
int bprt_dist_size(const BprtDist *d);
/* "Open MPI v4.1.4" (MPI_Get_library_version's first line). */
const char *bprt_dist_library(void);
/* Seconds each later wait may take (--timeout). */
void bprt_dist_set_timeout(BprtDist *d, double seconds);

/* Start-up: every rank's hash of `what` (e.g. "the compiled step") and a line that
 * describes it (the model, file, options) are gathered and compared with rank 0's,
 * waiting up to `timeout` seconds. -1 on any difference, naming the ranks:
 *   "ranks 0 and 1 differ in the compiled step: rank 0 has 'bpcc 0.1.0 spiral.bp ...'
 *    (hash 1a2b...), rank 1 has '...' (hash 3c4d...); every rank must run the same bpcc
 *    binary on the same model and options" */
int bprt_dist_agree(BprtDist *d, const char *what, uint64_t hash, const char *line, double timeout);

/* The loop's communicator for model desc (grads: its gradient block): gradients summed
 * in buckets of bucket_mb MiB issued from the grad-ready hook. NULL + error. Freed with
 * the BprtDist. */
BprtComm *bprt_dist_comm(BprtDist *d, const bprt_model_desc *desc, float *grads, double bucket_mb);
/* A 64-bit hash of n bytes (the parameters compared every epoch, the compiled step). */
uint64_t bprt_dist_hash(uint64_t h, const void *p, size_t n);

/* MPI_Abort(code): every rank of the job ends; does not return. */
_Noreturn void bprt_dist_abort(BprtDist *d, int code);
/* MPI_Finalize after a run every rank finished alike (a barrier with the deadline first:
 * -1 + error when a rank did not come); frees d. */
int bprt_dist_finalize(BprtDist *d);

#endif
