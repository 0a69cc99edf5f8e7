/* runtime/fxsum_mpi.h — the 128-bit fixed-point sum of runtime/fxsum.h as an MPI
 * reduction, for MPI_Allreduce / MPI_Iallreduce (`--deterministic-reduce`).
 *
 * Library bpcc_fxsum_mpi, built only when CMake finds MPI; runtime/fxsum.c itself is
 * MPI-free. Usage:
 *
 *   MPI_Datatype fx; MPI_Op sum;
 *   bprt_fxsum_mpi_create(&fx, &sum);             // after MPI_Init
 *   MPI_Allreduce(MPI_IN_PLACE, acc, n, fx, sum, comm);   // BprtFx acc[n]
 *   bprt_fxsum_to_f32(grad, acc, n);
 *   bprt_fxsum_mpi_free(&fx, &sum);               // before MPI_Finalize
 *
 * The datatype is contiguous 2 x MPI_UINT64_T (one BprtFx: lo, hi); the op is marked
 * commutative, which is true (integer addition, poison flags ORed), so MPI may use any
 * algorithm and still every rank gets the same bits for any P. */
#ifndef BPCC_RUNTIME_FXSUM_MPI_H
#define BPCC_RUNTIME_FXSUM_MPI_H

#include <mpi.h>

#include "runtime/fxsum.h"

/* Create and commit the datatype and create the op. Returns MPI_SUCCESS, or the MPI
 * error code of the call that failed (then nothing is left allocated). */
int bprt_fxsum_mpi_create(MPI_Datatype *type, MPI_Op *op);

/* Free both; they become MPI_DATATYPE_NULL and MPI_OP_NULL. */
void bprt_fxsum_mpi_free(MPI_Datatype *type, MPI_Op *op);

/* The MPI_User_function: inout[i] += in[i] for *len elements of BprtFx. */
void bprt_fxsum_mpi_sum(void *in, void *inout, int *len, MPI_Datatype *type);

#endif
