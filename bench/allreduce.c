/* bench/allreduce.c — MPI_Allreduce latency and bandwidth on this machine, and a fit of
 * the alpha-beta model that docs/distributed.md ("Cost model") predicts with.
 *
 *   mpicc -O2 -std=c11 -I. bench/allreduce.c runtime/fxsum.c runtime/fxsum_mpi.c \
 *         -o allreduce -lm
 *   mpirun -np 2 ./allreduce [MAX_BYTES [MIN_BYTES]]   (bench/dist.sh does both)
 *
 * For each size from 4 B to MAX_BYTES (default 64 MiB), powers of two: MPI_Allreduce of
 * that many bytes of f32 with MPI_SUM, in place, repeated for about 0.15 s after a
 * warm-up, in rounds between barriers; the time of one call is the slowest rank's mean
 * over a round, and the figure is the fastest round (measure()). Beside it, the same
 * number of f32 gradients reduced as --deterministic-reduce does: 16-byte fixed-point words
 * (runtime/fxsum.h, 4x the bytes) with the commutative op of runtime/fxsum_mpi.c.
 *
 * Then the least-squares fit of t(n) = a + b n over all sizes, weighted by 1/t^2 (so the
 * small sizes, microseconds, count as much as the large ones, milliseconds): a is the
 * latency of one allreduce, 1/b its bus bandwidth. For P ranks a ring allreduce makes
 * 2(P-1) steps each moving n/P bytes, so a = 2(P-1) alpha and b = 2(P-1)/P beta + the
 * reduction's cost per byte; the program prints alpha and beta for P = its size. */
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/fxsum_mpi.h"

/* Seconds per allreduce of `count` elements of `type`: the fastest of many short rounds
 * (each round: `reps` calls between barriers, about 1 ms, its time the slowest rank's
 * mean), run for `budget` seconds and at least 7 rounds. The minimum rather than the
 * median: on a shared machine a round that loses a rank's CPU to another process
 * measures the scheduler, not MPI (with 2 vCPUs and other jobs, most of them do). */
static double measure(void *buf, int count, MPI_Datatype type, MPI_Op op, double budget) {
  for (int k = 0; k < 3; k++) MPI_Allreduce(MPI_IN_PLACE, buf, count, type, op, MPI_COMM_WORLD);
  MPI_Barrier(MPI_COMM_WORLD);
  double t0 = MPI_Wtime();
  MPI_Allreduce(MPI_IN_PLACE, buf, count, type, op, MPI_COMM_WORLD);
  double one = MPI_Wtime() - t0;
  MPI_Bcast(&one, 1, MPI_DOUBLE, 0, MPI_COMM_WORLD); /* rank 0 decides, all agree */
  int reps = (int)(1e-3 / (one > 1e-7 ? one : 1e-7));
  if (reps < 1) reps = 1;
  if (reps > 1000) reps = 1000;
  double best = 1e30, start = MPI_Wtime();
  for (int r = 0;; r++) {
    MPI_Barrier(MPI_COMM_WORLD);
    t0 = MPI_Wtime();
    for (int i = 0; i < reps; i++) MPI_Allreduce(MPI_IN_PLACE, buf, count, type, op, MPI_COMM_WORLD);
    double t = (MPI_Wtime() - t0) / reps, slowest;
    MPI_Allreduce(&t, &slowest, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    if (slowest < best) best = slowest;
    int stop = r >= 6 && MPI_Wtime() - start > budget;
    MPI_Bcast(&stop, 1, MPI_INT, 0, MPI_COMM_WORLD);
    if (stop) break;
  }
  return best;
}

/* Weighted least squares of t = a + b n with weights 1/t^2. */
static void fit(const double *n, const double *t, int k, double *a, double *b) {
  double s00 = 0, s01 = 0, s11 = 0, r0 = 0, r1 = 0;
  for (int i = 0; i < k; i++) {
    double w = 1 / (t[i] * t[i]);
    s00 += w, s01 += w * n[i], s11 += w * n[i] * n[i], r0 += w * t[i], r1 += w * n[i] * t[i];
  }
  double det = s00 * s11 - s01 * s01;
  *a = (r0 * s11 - r1 * s01) / det;
  *b = (s00 * r1 - s01 * r0) / det;
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  int rank, P;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &P);
  long long maxb = argc > 1 ? atoll(argv[1]) : 64ll << 20;
  if (maxb < 4 || maxb > (1ll << 30)) maxb = 64ll << 20;
  long long minb = argc > 2 ? atoll(argv[2]) : 4;
  if (minb < 4 || minb > maxb) minb = 4;
  MPI_Datatype fxtype;
  MPI_Op fxop;
  if (bprt_fxsum_mpi_create(&fxtype, &fxop) != MPI_SUCCESS) MPI_Abort(MPI_COMM_WORLD, 1);
  size_t nmax = (size_t)maxb / 4;
  float *f = malloc(nmax * sizeof *f);
  BprtFx *fx = malloc(nmax * sizeof *fx);
  if (!f || !fx) MPI_Abort(MPI_COMM_WORLD, 1);
  /* zeros: an in-place sum repeated thousands of times would overflow any other values
   * (f32 to Inf, fixed point to poison, which takes the slow path); the time of an
   * addition does not depend on the values otherwise */
  memset(f, 0, nmax * sizeof *f);
  bprt_fxsum_zero(fx, nmax);
  double ns[32], ts[32], tfx[32];
  int k = 0;
  if (rank == 0) {
    printf("MPI_Allreduce on %d ranks, in place, fastest round of about 1 ms (slowest rank)\n", P);
    printf("%12s %12s %10s   %12s %10s\n", "bytes (f32)", "f32 SUM us", "GB/s", "fixed-pt us", "x f32");
  }
  for (long long bytes = minb; bytes <= maxb; bytes *= 2, k++) {
    int count = (int)(bytes / 4);
    ns[k] = (double)bytes;
    ts[k] = measure(f, count, MPI_FLOAT, MPI_SUM, 0.15);
    tfx[k] = measure(fx, count, fxtype, fxop, 0.15);
    if (rank == 0)
      printf("%12lld %12.2f %10.3f   %12.2f %10.2f\n", bytes, ts[k] * 1e6, bytes / ts[k] * 1e-9, tfx[k] * 1e6,
             tfx[k] / ts[k]);
  }
  if (rank == 0) {
    double a, b, afx, bfx;
    fit(ns, ts, k, &a, &b);
    fit(ns, tfx, k, &afx, &bfx); /* per f32 byte of gradient */
    printf("fit t = a + b n (weights 1/t^2), n in f32 bytes:\n");
    printf("  f32 SUM:     a = %.2f us, 1/b = %.2f GB/s\n", a * 1e6, 1e-9 / b);
    printf("  fixed point: a = %.2f us, 1/b = %.2f GB/s of f32 gradient (%.2f GB/s of 16-byte words)\n", afx * 1e6,
           1e-9 / bfx, 4e-9 / bfx);
    if (P > 1)
      printf("  ring model, P = %d: alpha = a / 2(P-1) = %.2f us per message, beta = b P / 2(P-1) = %.3f ns/byte "
             "(%.2f GB/s per link)\n",
             P, a / (2.0 * (P - 1)) * 1e6, b * P / (2.0 * (P - 1)) * 1e9, 1e-9 / (b * P / (2.0 * (P - 1))));
  }
  bprt_fxsum_mpi_free(&fxtype, &fxop);
  free(f);
  free(fx);
  MPI_Finalize();
  return 0;
}
