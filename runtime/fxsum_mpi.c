/* runtime/fxsum_mpi.c — the fixed-point sum (runtime/fxsum.c) as an MPI datatype and a
 * commutative MPI_Op. Compiled only when MPI is found (library bpcc_fxsum_mpi). */
#include "runtime/fxsum_mpi.h"

void bprt_fxsum_mpi_sum(void *in, void *inout, int *len, MPI_Datatype *type) {
  (void)type; /* only ever registered for the 2 x MPI_UINT64_T type */
  if (*len > 0) bprt_fxsum_combine(inout, in, (size_t)*len);
}

int bprt_fxsum_mpi_create(MPI_Datatype *type, MPI_Op *op) {
  _Static_assert(sizeof(BprtFx) == 2 * sizeof(uint64_t), "BprtFx is two uint64 words, no padding");
  *type = MPI_DATATYPE_NULL;
  *op = MPI_OP_NULL;
  int rc = MPI_Type_contiguous(2, MPI_UINT64_T, type);
  if (rc == MPI_SUCCESS) rc = MPI_Type_commit(type);
  if (rc == MPI_SUCCESS) rc = MPI_Op_create(bprt_fxsum_mpi_sum, 1, op);
  if (rc != MPI_SUCCESS) bprt_fxsum_mpi_free(type, op);
  return rc;
}

void bprt_fxsum_mpi_free(MPI_Datatype *type, MPI_Op *op) {
  if (*op != MPI_OP_NULL) MPI_Op_free(op);
  if (*type != MPI_DATATYPE_NULL) MPI_Type_free(type);
  *op = MPI_OP_NULL;
  *type = MPI_DATATYPE_NULL;
}
