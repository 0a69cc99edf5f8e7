/* examples/ddp/ddp.c — data-parallel training with MPI in an application that embeds a
 * model library (docs/abi.md). The library stays MPI-free; this program does the MPI.
 *
 *   bpcc examples/spiral.bp -o spiral.so
 *   mpicc -O2 -I. ddp.c spiral.so -o ddp -lm -Wl,-rpath,'$ORIGIN'
 *   mpirun -np 2 ./ddp --steps 100 --batch 60
 *
 * (README.md here: the build with --deterministic, which adds bpcc's runtime/fxsum.c.)
 *
 * One step of synchronous data-parallel SGD, as PyTorch's DistributedDataParallel does:
 *   1. every rank takes its shard of the global batch: G rows, rank r the rows
 *      [r G/P, (r+1) G/P), the same rows in the same order one process would use;
 *   2. spiral_loss_and_grad on the shard: each rank's gradient block holds the gradient
 *      of the mean loss over its G/P rows;
 *   3. MPI_Allreduce(SUM) of the gradients, then * 1/P: the gradient of the mean loss
 *      over all G rows (with --overlap, MPI_Iallreduce per parameter from the library's
 *      gradient-ready hook while the backward goes on);
 *   4. spiral_update: the same update on every rank, so the parameters stay equal.
 * With --deterministic the gradients are summed in 128-bit fixed point over micro-batches
 * of a fixed size (runtime/fxsum.h), so the result is the same bits for any P.
 *
 * Rank 0 prints the loss and writes the parameters (--out); `ddp --compare A B` compares
 * two such files, for the test (tests/example_ddp). */
#include <math.h>
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "spiral.h"
#ifdef DDP_DETERMINISTIC
#include "runtime/fxsum_mpi.h"
#endif

#define N_PER_CLASS 100
#define N (3 * N_PER_CLASS)

static int rank, nranks;

static void die(const char *fmt, const char *arg) {
  fprintf(stderr, "ddp: rank %d: ", rank);
  fprintf(stderr, fmt, arg);
  fprintf(stderr, "\n");
  MPI_Abort(MPI_COMM_WORLD, 1);
  exit(1);
}

static void check(int rc, const char *what) {
  if (rc == BPCC_OK) return;
  fprintf(stderr, "ddp: rank %d: %s: %s (code %d)\n", rank, what, spiral_last_error(), rc);
  MPI_Abort(MPI_COMM_WORLD, 1);
  exit(1);
}

/* The data: three interleaved spirals (as examples/embed), the same on every rank, and a
 * fixed order of the rows (a permutation drawn from a fixed seed). */
static float xs[N][2];
static int32_t ys[N];
static int order[N];

static void make_data(void) {
  for (int k = 0; k < 3; k++)
    for (int i = 0; i < N_PER_CLASS; i++) {
      int r = k * N_PER_CLASS + i;
      double rad = (double)i / N_PER_CLASS;
      double t = 4.0 * rad + 2.0 * 3.14159265358979 * k / 3.0 + 0.1 * sin(12.9898 * r);
      xs[r][0] = (float)(rad * sin(t));
      xs[r][1] = (float)(rad * cos(t));
      ys[r] = k;
    }
  uint64_t s = 0x2545f4914f6cdd1dull;
  for (int i = 0; i < N; i++) order[i] = i;
  for (int i = N - 1; i > 0; i--) {
    s ^= s << 13, s ^= s >> 7, s ^= s << 17;
    int j = (int)(s % (uint64_t)(i + 1)), t = order[i];
    order[i] = order[j];
    order[j] = t;
  }
}

/* Rows [first, first+rows) of global batch `step` (G rows each, cycling through the
 * data) into bx, by. */
static void gather(int64_t step, int G, int first, int rows, float (*bx)[2], int32_t *by) {
  for (int j = 0; j < rows; j++) {
    int r = order[(int)((step * G + first + j) % N)];
    bx[j][0] = xs[r][0];
    bx[j][1] = xs[r][1];
    by[j] = ys[r];
  }
}

/* The parameters: pointers to each one's values and gradient inside the model. */
static bpcc_param_info params[SPIRAL_NUM_PARAMS];

/* ---------------------------------------------- --overlap: the gradient-ready hook */

static MPI_Request reqs[SPIRAL_NUM_PARAMS];
static int issued[SPIRAL_NUM_PARAMS], nissued;

static void issue(int i) {
  MPI_Iallreduce(MPI_IN_PLACE, params[i].grad, (int)params[i].numel, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, &reqs[i]);
  issued[i] = 1;
  nissued++;
}

/* Called by the library right after parameter i's gradient is complete, in the order
 * the compiled step produces them: the same order on every rank, as MPI requires of
 * collectives. MPI_Testall lets the earlier reductions progress (Open MPI moves a
 * nonblocking collective only inside MPI calls). */
static void grad_ready(void *ctx, int32_t i) {
  (void)ctx;
  issue(i);
  int done;
  MPI_Testall(SPIRAL_NUM_PARAMS, reqs, &done, MPI_STATUSES_IGNORE);
}

/* ------------------------------------------------------------------ the options */

typedef struct {
  int64_t steps;
  int batch, micro, overlap, deterministic, threads;
  uint64_t seed;
  const char *out;
} Options;

static void usage(void) {
  if (rank == 0)
    fprintf(stderr,
            "usage: mpirun -np P ddp [--steps N] [--batch G] [--seed S] [--threads T] [--overlap]\n"
            "                        [--deterministic [--micro M]] [--out FILE]\n"
            "       ddp --compare A B [--rtol R]\n");
  MPI_Finalize();
  exit(1);
}

static long long num(const char *opt, const char *s, long long lo) {
  char *end;
  long long v = s ? strtoll(s, &end, 10) : 0;
  if (!s || *end || v < lo) {
    if (rank == 0) fprintf(stderr, "ddp: %s needs an integer >= %lld, got '%s'\n", opt, lo, s ? s : "");
    MPI_Finalize();
    exit(1);
  }
  return v;
}

/* ------------------------------------------------------- --out and --compare */

/* The parameters as "DDP1", then per parameter: name length, name, numel, floats. */
static void write_params(const char *path) {
  FILE *f = fopen(path, "wb");
  if (!f) die("cannot write %s", path);
  fwrite("DDP1", 1, 4, f);
  for (int i = 0; i < SPIRAL_NUM_PARAMS; i++) {
    int32_t len = (int32_t)strlen(params[i].name);
    int64_t n = params[i].numel;
    fwrite(&len, sizeof len, 1, f);
    fwrite(params[i].name, 1, (size_t)len, f);
    fwrite(&n, sizeof n, 1, f);
    fwrite(params[i].values, sizeof(float), (size_t)n, f);
  }
  if (fclose(f)) die("cannot write %s", path);
}

typedef struct {
  char name[64];
  int64_t n;
  float *v;
} Tensor;

static int read_params(const char *path, Tensor *t, int max) {
  FILE *f = fopen(path, "rb");
  char magic[4];
  if (!f || fread(magic, 1, 4, f) != 4 || memcmp(magic, "DDP1", 4)) {
    fprintf(stderr, "ddp: %s: not a parameter file of ddp --out\n", path);
    exit(1);
  }
  int k = 0;
  int32_t len;
  while (fread(&len, sizeof len, 1, f) == 1) {
    if (k == max || len <= 0 || len >= 64 || fread(t[k].name, 1, (size_t)len, f) != (size_t)len ||
        fread(&t[k].n, sizeof t[k].n, 1, f) != 1 || t[k].n <= 0 || t[k].n > (1 << 26)) {
      fprintf(stderr, "ddp: %s: corrupt at tensor %d\n", path, k);
      exit(1);
    }
    t[k].name[len] = 0;
    t[k].v = malloc((size_t)t[k].n * sizeof(float));
    if (!t[k].v || fread(t[k].v, sizeof(float), (size_t)t[k].n, f) != (size_t)t[k].n) {
      fprintf(stderr, "ddp: %s: truncated in tensor '%s'\n", path, t[k].name);
      exit(1);
    }
    k++;
  }
  fclose(f);
  return k;
}

/* Per tensor: max |a - b| / max |a| <= rtol; rtol 0 asks for the same bits. */
static int compare(const char *pa, const char *pb, double rtol) {
  static Tensor a[64], b[64];
  int na = read_params(pa, a, 64), nb = read_params(pb, b, 64), bad = na != nb;
  for (int i = 0; i < na && i < nb; i++) {
    if (strcmp(a[i].name, b[i].name) || a[i].n != b[i].n) {
      printf("%s: '%s' against '%s': different tensors\n", pa, a[i].name, b[i].name);
      bad = 1;
      continue;
    }
    double dmax = 0, amax = 0;
    for (int64_t j = 0; j < a[i].n; j++) {
      double d = fabs((double)a[i].v[j] - b[i].v[j]);
      if (!(d <= dmax)) dmax = d; /* NaN counts as a difference */
      if (fabs(a[i].v[j]) > amax) amax = fabs(a[i].v[j]);
    }
    int same = !memcmp(a[i].v, b[i].v, (size_t)a[i].n * sizeof(float));
    double rel = amax > 0 ? dmax / amax : dmax;
    int ok = rtol == 0 ? same : rel <= rtol;
    printf("%-10s %8lld  max|a-b| %.3g  relative %.3g  %s%s\n", a[i].name, (long long)a[i].n, dmax, rel,
           same ? "identical" : "differs", ok ? "" : "  FAIL");
    bad |= !ok;
  }
  printf("%s\n", bad ? "FAIL" : rtol == 0 ? "ok: bit-identical" : "ok: within the tolerance");
  return bad;
}

/* ---------------------------------------------------------------------- main */

int main(int argc, char **argv) {
  if (argc >= 4 && !strcmp(argv[1], "--compare")) /* no MPI needed */
    return compare(argv[2], argv[3], argc >= 6 && !strcmp(argv[4], "--rtol") ? atof(argv[5]) : 1e-6);
  MPI_Init(&argc, &argv);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &nranks);
  Options o = {.steps = 100, .batch = 60, .micro = 10, .threads = 1, .seed = 1};
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--steps")) o.steps = num(a, v, 1), i++;
    else if (!strcmp(a, "--batch")) o.batch = (int)num(a, v, 1), i++;
    else if (!strcmp(a, "--micro")) o.micro = (int)num(a, v, 1), i++;
    else if (!strcmp(a, "--seed")) o.seed = (uint64_t)num(a, v, 0), i++;
    else if (!strcmp(a, "--threads")) o.threads = (int)num(a, v, 1), i++;
    else if (!strcmp(a, "--out") && v) o.out = v, i++;
    else if (!strcmp(a, "--overlap")) o.overlap = 1;
    else if (!strcmp(a, "--deterministic")) o.deterministic = 1;
    else usage();
  }
#ifndef DDP_DETERMINISTIC
  if (o.deterministic) {
    if (rank == 0) fprintf(stderr, "ddp: --deterministic: built without runtime/fxsum.c (README.md)\n");
    MPI_Finalize();
    return 1;
  }
#endif
  if (o.batch % nranks || (o.deterministic && (o.batch / nranks) % o.micro)) {
    if (rank == 0)
      fprintf(stderr, "ddp: the global batch %d must split evenly over %d ranks%s\n", o.batch, nranks,
              o.deterministic ? " and then into micro-batches of --micro rows" : "");
    MPI_Finalize();
    return 1;
  }
  const int local = o.batch / nranks, first = rank * local;
  make_data();
  check(spiral_set_threads(o.threads), "set_threads");
  spiral *net = spiral_create(o.seed);
  if (!net) die("create: %s", spiral_last_error());
  int64_t total = 0;
  for (int i = 0; i < SPIRAL_NUM_PARAMS; i++) {
    check(spiral_param(net, i, &params[i]), "param");
    total += params[i].numel;
    /* the same start everywhere: rank 0's parameters (equal anyway for one seed) */
    MPI_Bcast(params[i].values, (int)params[i].numel, MPI_FLOAT, 0, MPI_COMM_WORLD);
  }
  if (rank == 0)
    printf("ddp: %d ranks, global batch %d (%d per rank), %lld parameters, %s\n", nranks, o.batch, local,
           (long long)total,
           o.deterministic ? "deterministic (fixed-point) reduction" : o.overlap ? "allreduce overlapped" : "allreduce");
  if (o.overlap) check(spiral_set_grad_ready(net, grad_ready, NULL), "set_grad_ready");

#ifdef DDP_DETERMINISTIC
  MPI_Datatype fxtype = MPI_DATATYPE_NULL;
  MPI_Op fxop = MPI_OP_NULL;
  BprtFx *acc = NULL;
  if (o.deterministic) {
    if (bprt_fxsum_mpi_create(&fxtype, &fxop) != MPI_SUCCESS) die("%s", "cannot create the fixed-point MPI op");
    acc = malloc((size_t)total * sizeof *acc);
    if (!acc) die("%s", "out of memory");
  }
#endif

  float (*bx)[2] = malloc((size_t)local * sizeof *bx);
  int32_t *by = malloc((size_t)local * sizeof *by);
  const void *in[SPIRAL_NUM_INPUTS] = {bx, by};
  for (int64_t step = 0; step < o.steps; step++) {
    double loss_sum = 0; /* this rank's rows: sum of the per-row losses */
    if (!o.deterministic) {
      float loss;
      gather(step, o.batch, first, local, bx, by);
      nissued = 0;
      for (int i = 0; i < SPIRAL_NUM_PARAMS; i++) issued[i] = 0, reqs[i] = MPI_REQUEST_NULL;
      check(spiral_loss_and_grad(net, local, in, &loss), "loss_and_grad");
      loss_sum = (double)loss * local;
      /* 3: sum over the ranks (what the hook has not issued yet), then the mean */
      for (int i = 0; i < SPIRAL_NUM_PARAMS; i++)
        if (o.overlap && !issued[i]) issue(i);
        else if (!o.overlap) MPI_Allreduce(MPI_IN_PLACE, params[i].grad, (int)params[i].numel, MPI_FLOAT, MPI_SUM,
                                           MPI_COMM_WORLD);
      if (o.overlap) MPI_Waitall(SPIRAL_NUM_PARAMS, reqs, MPI_STATUSES_IGNORE);
      if (nranks > 1)
        for (int i = 0; i < SPIRAL_NUM_PARAMS; i++)
          for (int64_t j = 0; j < params[i].numel; j++) params[i].grad[j] *= 1.0f / (float)nranks;
    } else {
#ifdef DDP_DETERMINISTIC
      /* micro-batches of o.micro rows, the same ones for any P; each one's gradient (the
       * mean over its rows) enters the sum with the weight micro/G, rounded once onto
       * the fixed-point grid; the sum is exact, so any P gives the same bits */
      bprt_fxsum_zero(acc, (size_t)total);
      for (int mb = 0; mb < local / o.micro; mb++) {
        float loss;
        gather(step, o.batch, first + mb * o.micro, o.micro, bx, by);
        check(spiral_loss_and_grad(net, o.micro, in, &loss), "loss_and_grad");
        loss_sum += (double)loss * o.micro;
        int64_t at = 0;
        for (int i = 0; i < SPIRAL_NUM_PARAMS; i++) {
          bprt_fxsum_add_f32(acc + at, params[i].grad, (size_t)params[i].numel, (float)o.micro / (float)o.batch);
          at += params[i].numel;
        }
      }
      MPI_Allreduce(MPI_IN_PLACE, acc, (int)total, fxtype, fxop, MPI_COMM_WORLD);
      int64_t at = 0;
      unsigned flags = 0;
      for (int i = 0; i < SPIRAL_NUM_PARAMS; i++) {
        flags |= bprt_fxsum_to_f32(params[i].grad, acc + at, (size_t)params[i].numel);
        at += params[i].numel;
      }
      if (flags) {
        char why[80];
        die("the gradient sum holds %s", bprt_fxsum_describe(flags, why, sizeof why));
      }
#endif
    }
    check(spiral_update(net), "update"); /* 4: the same update on every rank */
    double global = 0;
    MPI_Reduce(&loss_sum, &global, 1, MPI_DOUBLE, MPI_SUM, 0, MPI_COMM_WORLD);
    if (rank == 0 && (step % 25 == 0 || step == o.steps - 1))
      printf("step %4lld  loss %.5f\n", (long long)step + 1, global / o.batch);
  }
  if (o.out && rank == 0) write_params(o.out);
#ifdef DDP_DETERMINISTIC
  if (o.deterministic) bprt_fxsum_mpi_free(&fxtype, &fxop);
  free(acc);
#endif
  free(bx);
  free(by);
  spiral_destroy(net);
  MPI_Finalize();
  return 0;
}
