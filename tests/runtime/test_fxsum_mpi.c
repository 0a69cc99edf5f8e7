/* tests/runtime/test_fxsum_mpi.c — the fixed-point sum as an MPI op, on P ranks
 * (mpirun -np 3): MPI_Allreduce and MPI_Iallreduce of each rank's share of 24 arrays
 * give, on every rank, the same bytes as one process summing all of them, for two
 * different partitions of the arrays over the ranks; poison (NaN, +Inf with -Inf)
 * travels through the reduction. Prints one line per failure, exits 1 on any. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/fxsum_mpi.h"

enum { ROWS = 24, E = 4099 };

static float value(int row, int e) {
  unsigned long long s = 0x9e3779b97f4a7c15ull * (unsigned long long)(row * E + e + 1);
  s ^= s >> 29, s *= 0xbf58476d1ce4e5b9ull, s ^= s >> 32;
  double u = (double)(s >> 11) * 0x1p-53 - 0.5;
  return (float)ldexp(u, (int)(s % 60) - 40); /* 2^-41 .. 2^19, both signs */
}

static int failures;

static void check(int rank, const char *what, const BprtFx *got, const BprtFx *want) {
  if (memcmp(got, want, E * sizeof *got)) {
    printf("rank %d: %s differs from the serial sum\n", rank, what);
    failures++;
  }
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  int rank, P;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &P);
  MPI_Datatype fx;
  MPI_Op sum;
  if (bprt_fxsum_mpi_create(&fx, &sum) != MPI_SUCCESS) {
    printf("rank %d: bprt_fxsum_mpi_create failed\n", rank);
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  static float x[ROWS][E];
  for (int r = 0; r < ROWS; r++)
    for (int e = 0; e < E; e++) x[r][e] = value(r, e);
  x[5][7] = NAN;       /* element 7: NaN */
  x[2][8] = INFINITY;  /* element 8: +Inf and -Inf: NaN */
  x[11][8] = -INFINITY;
  static BprtFx serial[E], acc[E];
  bprt_fxsum_zero(serial, E);
  for (int r = ROWS - 1; r >= 0; r--) bprt_fxsum_add_f32(serial, x[r], E, 0.25f);

  /* 1: rows dealt round robin, blocking allreduce in place */
  bprt_fxsum_zero(acc, E);
  for (int r = rank; r < ROWS; r += P) bprt_fxsum_add_f32(acc, x[r], E, 0.25f);
  MPI_Allreduce(MPI_IN_PLACE, acc, E, fx, sum, MPI_COMM_WORLD);
  check(rank, "MPI_Allreduce (round robin)", acc, serial);

  /* 2: contiguous uneven blocks (rank k takes k+1 shares), nonblocking, separate buffers */
  static BprtFx mine[E];
  int shares = P * (P + 1) / 2, lo = ROWS * (rank * (rank + 1) / 2) / shares,
      hi = ROWS * ((rank + 1) * (rank + 2) / 2) / shares;
  bprt_fxsum_zero(mine, E);
  for (int r = hi - 1; r >= lo; r--) bprt_fxsum_add_f32(mine, x[r], E, 0.25f);
  MPI_Request req;
  MPI_Iallreduce(mine, acc, E, fx, sum, MPI_COMM_WORLD, &req);
  MPI_Wait(&req, MPI_STATUS_IGNORE);
  check(rank, "MPI_Iallreduce (blocks)", acc, serial);

  static float out[E];
  unsigned flags = bprt_fxsum_to_f32(out, acc, E);
  if (flags != (BPRT_FX_NAN | BPRT_FX_POS_INF | BPRT_FX_NEG_INF) || !isnan(out[7]) || !isnan(out[8]) ||
      !isfinite(out[9])) {
    printf("rank %d: flags %u, out[7..9] = %g %g %g\n", rank, flags, out[7], out[8], out[9]);
    failures++;
  }
  bprt_fxsum_mpi_free(&fx, &sum);
  if (fx != MPI_DATATYPE_NULL || sum != MPI_OP_NULL) failures++;
  int total = 0;
  MPI_Allreduce(&failures, &total, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  if (rank == 0) printf("%d ranks: %s\n", P, total ? "FAILED" : "identical to the serial sum");
  MPI_Finalize();
  return total ? 1 : 0;
}
