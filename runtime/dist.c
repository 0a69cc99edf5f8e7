/* runtime/dist.c — data-parallel training over MPI: the only file of bpcc that includes
 * mpi.h (runtime/dist.h; docs/distributed.md).
 *
 * One idea: every rank runs the same compiled step on its share of the global batch, and
 * the ranks meet at a few collectives whose order is the same on every rank: the start
 * (hashes of the compiled step and of the settings), per optimizer step the gradient
 * buckets and one small vector of statistics, per epoch the validation sums, the
 * running statistics and a hash of the parameters. Nothing waits without a deadline.
 *
 * Gradients (the grads block, param_floats floats) are cut into buckets of about
 * --bucket-mb MiB, contiguous ranges of the block, the first bucket at its end (the
 * backward pass completes the last layers' gradients first). The grad-ready hook counts
 * the trainable parameters of each bucket down; a bucket whose count reaches zero, and
 * every one before it in that fixed order, is summed in place with MPI_Iallreduce at
 * once, while the backward pass computes the rest. The order in which buckets are issued
 * is the same on every rank whatever the order the hook reports them in, as MPI requires
 * of collectives. Open MPI progresses a non-blocking collective only inside MPI calls,
 * so the hook also tests the buckets in flight.
 *
 * A wait that passes its deadline asks the others where they are (a message on a
 * communicator of its own, answered by every rank that timed out too) and names the
 * ranks it did not hear from. */
#include "runtime/dist.h"

#include <mpi.h>

#include "runtime/fxsum_mpi.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "runtime/runtime.h"

/* ------------------------------------------------------------------ small helpers */

static double now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* An MPI error code as its text. */
static int mpi_error(int code, const char *call) {
  char text[MPI_MAX_ERROR_STRING];
  int n = 0;
  if (MPI_Error_string(code, text, &n) != MPI_SUCCESS) snprintf(text, sizeof text, "error %d", code);
  return bprt_set_error("%s failed: %s", call, text);
}

uint64_t bprt_dist_hash(uint64_t h, const void *p, size_t n) {
  /* FNV-1a over 8-byte words (then the tail), each word mixed with a multiply-xorshift:
   * a few GB/s, and every bit of the input reaches the result */
  const unsigned char *b = p;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t w;
    memcpy(&w, b + i, 8);
    w *= UINT64_C(0x9e3779b97f4a7c15);
    w ^= w >> 29;
    h = (h ^ w) * UINT64_C(0x100000001b3);
  }
  for (; i < n; i++) h = (h ^ b[i]) * UINT64_C(0x100000001b3);
  h ^= h >> 31;
  return h;
}

/* ------------------------------------------------------------------ the job */

typedef struct {
  int64_t lo, hi;      /* floats [lo, hi) of the grads block */
  int pending;         /* trainable parameters whose gradient is not complete yet */
  int trainable;
  bool issued, done;
  MPI_Request req;
} Bucket;

typedef struct {
  BprtComm base;       /* first: the loop's BprtComm is this */
  BprtDist *d;
  const bprt_model_desc *desc;
  float *grads;
  int nbuckets, next;  /* buckets[next] is the first not issued */
  Bucket *buckets;     /* in the order they are issued */
  int *bucket_of;      /* per parameter */
  int64_t step;
  MPI_Datatype fx_type;   /* --deterministic-reduce: BprtFx and its exact sum (fxsum_mpi.h) */
  MPI_Op fx_sum;
  bool fx_made;
  MPI_Request stats_req;
  bool failed;         /* an MPI call of the hook failed: step_end reports it */
  char hook_error[512];
} Comm;

struct BprtDist {
  MPI_Comm world, diag;   /* duplicates of MPI_COMM_WORLD: collectives, and the questions of a timeout */
  int rank, size;
  double timeout;
  int64_t seq;            /* synchronisations entered so far (the same count on every rank) */
  Comm *comm;
};

BprtDist *bprt_dist_init(int *argc, char ***argv) {
  int provided = 0, rc = MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
  if (rc != MPI_SUCCESS) {
    mpi_error(rc, "MPI_Init_thread");
    return NULL;
  }
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  BprtDist *d = bprt_calloc(1, sizeof *d);
  if (!d) return NULL;
  if ((rc = MPI_Comm_dup(MPI_COMM_WORLD, &d->world)) != MPI_SUCCESS ||
      (rc = MPI_Comm_dup(MPI_COMM_WORLD, &d->diag)) != MPI_SUCCESS) {
    mpi_error(rc, "MPI_Comm_dup");
    bprt_free(d);
    return NULL;
  }
  MPI_Comm_set_errhandler(d->world, MPI_ERRORS_RETURN);
  MPI_Comm_set_errhandler(d->diag, MPI_ERRORS_RETURN);
  MPI_Comm_rank(d->world, &d->rank);
  MPI_Comm_size(d->world, &d->size);
  d->timeout = BPRT_DIST_TIMEOUT;
  return d;
}

int bprt_dist_rank(const BprtDist *d) { return d->rank; }
int bprt_dist_size(const BprtDist *d) { return d->size; }
void bprt_dist_set_timeout(BprtDist *d, double seconds) { d->timeout = seconds; }

const char *bprt_dist_library(void) {
  static char v[MPI_MAX_LIBRARY_VERSION_STRING];
  int n = 0;
  if (!v[0] && MPI_Get_library_version(v, &n) == MPI_SUCCESS) {
    v[strcspn(v, ",\n")] = 0;   /* "Open MPI v4.1.4, package: ..." */
  }
  return v;
}

_Noreturn void bprt_dist_abort(BprtDist *d, int code) {
  fflush(stdout);
  fflush(stderr);
  MPI_Abort(d ? d->world : MPI_COMM_WORLD, code);
  exit(code);   /* MPI_Abort does not return; should it, the job still ends */
}

/* ------------------------------------------------------------------ waiting */

/* After a missed deadline: tell every other rank which synchronisation this rank waits
 * in (its sequence number), and listen for grace seconds for theirs. The ranks not
 * heard from did not join; a rank heard from at another synchronisation is named with
 * it. The message goes to the error. */
static int name_missing(BprtDist *d, const char *where, double waited) {
  int64_t mine = d->seq;
  MPI_Request *sends = bprt_calloc((size_t)d->size, sizeof(MPI_Request));
  int64_t *theirs = bprt_calloc((size_t)d->size, sizeof(int64_t));
  bool *heard = bprt_calloc((size_t)d->size, sizeof(bool));
  if (!sends || !theirs || !heard) {
    bprt_free(sends);
    bprt_free(theirs);
    bprt_free(heard);
    return bprt_set_error("rank %d: a rank did not join %s within %.0f s; stopping", d->rank, where, waited);
  }
  for (int r = 0; r < d->size; r++) {
    sends[r] = MPI_REQUEST_NULL;
    if (r != d->rank) MPI_Isend(&mine, 1, MPI_INT64_T, r, 1, d->diag, &sends[r]);
  }
  heard[d->rank] = true;
  int left = d->size - 1;
  /* the others time out within about the time a step takes of this rank (they entered
   * the same wait about then): a few seconds of listening, at most the timeout */
  double grace = d->timeout < 5 ? d->timeout : 5, t0 = now_seconds();
  while (left > 0 && now_seconds() - t0 < grace) {
    int flag = 0;
    MPI_Status st;
    if (MPI_Iprobe(MPI_ANY_SOURCE, 1, d->diag, &flag, &st) != MPI_SUCCESS) break;
    if (!flag) {
      nanosleep(&(struct timespec){0, 1000000}, NULL);
      continue;
    }
    int64_t v = 0;
    MPI_Recv(&v, 1, MPI_INT64_T, st.MPI_SOURCE, 1, d->diag, MPI_STATUS_IGNORE);
    if (!heard[st.MPI_SOURCE]) left--;
    heard[st.MPI_SOURCE] = true;
    theirs[st.MPI_SOURCE] = v;
  }
  char missing[256] = "", elsewhere[256] = "";
  size_t nm = 0, ne = 0;
  int count = 0;
  for (int r = 0; r < d->size; r++) {
    if (!heard[r]) {
      if (nm < sizeof missing)
        nm += (size_t)snprintf(missing + nm, sizeof missing - nm, "%s%d", count ? ", " : "", r);
      count++;
    } else if (r != d->rank && theirs[r] != mine && ne < sizeof elsewhere) {
      ne += (size_t)snprintf(elsewhere + ne, sizeof elsewhere - ne, "; rank %d waits at another synchronisation (%s)", r,
                             theirs[r] < mine ? "an earlier one" : "a later one");
    }
  }
  bprt_free(sends);   /* never waited on: the job is about to end */
  bprt_free(theirs);
  bprt_free(heard);
  if (count == 0)
    return bprt_set_error("%s did not complete within %.0f s although every rank answered%s; stopping", where, waited,
                          elsewhere);
  return bprt_set_error("rank%s %s did not join %s within %.0f s%s; stopping", count > 1 ? "s" : "", missing, where, waited,
                        elsewhere);
}

/* Test reqs[0..n) until all are complete or timeout seconds have passed since t0: spin
 * for the first 200 us (a step's reduction usually completes within them), then sleep
 * between tests, 50 us and from 20 ms on 1 ms, so that a rank waiting for a slower one
 * (one still compiling, one writing a checkpoint) leaves it the cores. */
static int wait_all(BprtDist *d, int n, MPI_Request *reqs, double t0, double timeout, const char *where) {
  double entered = now_seconds();
  for (;;) {
    int flag = 0, rc = MPI_Testall(n, reqs, &flag, MPI_STATUSES_IGNORE);
    if (rc != MPI_SUCCESS) return mpi_error(rc, where);
    if (flag) return 0;
    double t = now_seconds();
    if (t - t0 > timeout) return name_missing(d, where, timeout);
    if (t - entered > 0.02) nanosleep(&(struct timespec){0, 1000000}, NULL);
    else if (t - entered > 0.0002) nanosleep(&(struct timespec){0, 50000}, NULL);
  }
}

int bprt_dist_agree(BprtDist *d, const char *what, uint64_t hash, const char *line, double timeout) {
  enum { LINE = 240 };
  typedef struct {
    uint64_t hash;
    char line[LINE];
  } Entry;
  Entry mine;
  memset(&mine, 0, sizeof mine);
  mine.hash = hash;
  snprintf(mine.line, sizeof mine.line, "%s", line);
  Entry *all = bprt_calloc((size_t)d->size, sizeof(Entry));
  if (!all) return -1;
  char where[160];
  snprintf(where, sizeof where, "the start-up check of %s", what);
  d->seq++;
  double t0 = now_seconds();
  MPI_Request req;
  int rc = MPI_Iallgather(&mine, (int)sizeof mine, MPI_BYTE, all, (int)sizeof mine, MPI_BYTE, d->world, &req);
  if (rc != MPI_SUCCESS) rc = mpi_error(rc, "MPI_Iallgather");
  else rc = wait_all(d, 1, &req, t0, timeout, where);
  for (int r = 1; rc == 0 && r < d->size; r++)
    if (all[r].hash != all[0].hash)
      rc = bprt_set_error("ranks 0 and %d differ in %s: rank 0 has '%s' (hash %016" PRIx64 "), rank %d has '%s' (hash "
                          "%016" PRIx64 "); every rank must run the same bpcc on the same model, data and options",
                          r, what, all[0].line, all[0].hash, r, all[r].line, all[r].hash);
  bprt_free(all);
  return rc;
}

int bprt_dist_finalize(BprtDist *d) {
  if (!d) return 0;
  d->seq++;
  MPI_Request req;
  int rc = MPI_Ibarrier(d->world, &req);
  if (rc != MPI_SUCCESS) rc = mpi_error(rc, "MPI_Ibarrier");
  else rc = wait_all(d, 1, &req, now_seconds(), d->timeout, "the end of the run");
  if (rc) return rc;   /* the caller aborts the job */
  if (d->comm) {
    if (d->comm->fx_made) bprt_fxsum_mpi_free(&d->comm->fx_type, &d->comm->fx_sum);
    bprt_free(d->comm->buckets);
    bprt_free(d->comm->bucket_of);
    bprt_free(d->comm);
  }
  MPI_Comm_free(&d->world);
  MPI_Comm_free(&d->diag);
  bprt_free(d);
  MPI_Finalize();
  return 0;
}

/* ------------------------------------------------------------------ the loop's comm */

/* Issue bucket b: its floats summed over the ranks, in place. A failure is kept for
 * step_end to report (the hook returns nothing). */
static void issue(Comm *c, int b) {
  Bucket *k = &c->buckets[b];
  k->issued = true;
  k->done = false;
  int rc = MPI_Iallreduce(MPI_IN_PLACE, c->grads + k->lo, (int)(k->hi - k->lo), MPI_FLOAT, MPI_SUM, c->d->world, &k->req);
  if (rc != MPI_SUCCESS && !c->failed) {
    c->failed = true;
    mpi_error(rc, "MPI_Iallreduce");
    snprintf(c->hook_error, sizeof c->hook_error, "%s", bprt_last_error());
  }
}

/* Progress for the buckets in flight (Open MPI moves a non-blocking collective on only
 * inside MPI calls). */
static void progress(Comm *c) {
  for (int b = 0; b < c->next; b++) {
    Bucket *k = &c->buckets[b];
    if (k->done) continue;
    int flag = 0;
    if (MPI_Test(&k->req, &flag, MPI_STATUS_IGNORE) == MPI_SUCCESS && flag) k->done = true;
    else break;   /* in order: the later ones wait behind it */
  }
}

static void issue_ready(Comm *c) {
  while (c->next < c->nbuckets && c->buckets[c->next].pending == 0) issue(c, c->next++);
}

static void comm_step_begin(BprtComm *base, int64_t step) {
  Comm *c = (Comm *)base;
  c->step = step;
  c->next = 0;
  for (int b = 0; b < c->nbuckets; b++) {
    c->buckets[b].pending = c->buckets[b].trainable;
    c->buckets[b].issued = c->buckets[b].done = false;
    c->buckets[b].req = MPI_REQUEST_NULL;
  }
}

static void comm_grad_ready(void *ctx, int32_t param) {
  Comm *c = ctx;
  if (param < 0 || param >= c->desc->nparams) return;
  int b = c->bucket_of[param];
  if (b >= 0 && c->buckets[b].pending > 0) c->buckets[b].pending--;
  issue_ready(c);
  progress(c);
}

/* --deterministic-reduce: the accumulator's buckets (the same ranges, 16 bytes an
 * element), summed exactly with fxsum's op, all issued now (the accumulator is complete
 * only after the last micro-batch). */
static void issue_fx(Comm *c, BprtFx *fx) {
  if (!c->fx_made) {
    int rc = bprt_fxsum_mpi_create(&c->fx_type, &c->fx_sum);
    if (rc != MPI_SUCCESS) {
      c->failed = true;
      mpi_error(rc, "bprt_fxsum_mpi_create");
      snprintf(c->hook_error, sizeof c->hook_error, "%s", bprt_last_error());
      return;
    }
    c->fx_made = true;
  }
  for (int b = 0; b < c->nbuckets; b++) {
    Bucket *k = &c->buckets[b];
    k->issued = true;
    int rc = MPI_Iallreduce(MPI_IN_PLACE, fx + k->lo, (int)(k->hi - k->lo), c->fx_type, c->fx_sum, c->d->world, &k->req);
    if (rc != MPI_SUCCESS && !c->failed) {
      c->failed = true;
      mpi_error(rc, "MPI_Iallreduce");
      snprintf(c->hook_error, sizeof c->hook_error, "%s", bprt_last_error());
    }
  }
  c->next = c->nbuckets;
}

static int comm_step_end(BprtComm *base, BprtFx *fx, double *stats, int64_t n) {
  Comm *c = (Comm *)base;
  BprtDist *d = c->d;
  /* a rank whose last micro-batch was empty, or parameters the hook never reported:
   * the rest now, in the same order as every rank */
  if (fx) issue_fx(c, fx);
  for (int b = c->next; b < c->nbuckets; b++) c->buckets[b].pending = 0;
  issue_ready(c);
  if (c->failed) return bprt_set_error("%s", c->hook_error);
  d->seq++;
  double t0 = now_seconds();
  int rc = MPI_Iallreduce(MPI_IN_PLACE, stats, (int)n, MPI_DOUBLE, MPI_SUM, d->world, &c->stats_req);
  if (rc != MPI_SUCCESS) return mpi_error(rc, "MPI_Iallreduce");
  char where[96];
  snprintf(where, sizeof where, "the gradient reduction of step %" PRId64, c->step);
  /* the buckets' requests and the statistics' in one array for MPI_Testall */
  MPI_Request reqs[65];
  int done = 0;
  for (int b0 = 0; b0 < c->nbuckets; b0 += 64) {
    int nb = c->nbuckets - b0 < 64 ? c->nbuckets - b0 : 64;
    for (int b = 0; b < nb; b++) reqs[b] = c->buckets[b0 + b].done ? MPI_REQUEST_NULL : c->buckets[b0 + b].req;
    if (b0 + nb == c->nbuckets) reqs[nb++] = c->stats_req, done = 1;
    if (wait_all(d, nb, reqs, t0, d->timeout, where)) return -1;
  }
  if (!done && wait_all(d, 1, &c->stats_req, t0, d->timeout, where)) return -1;
  for (int b = 0; b < c->nbuckets; b++) c->buckets[b].done = true;
  return 0;
}

static int comm_sum(BprtComm *base, double *v, int64_t n, const char *where) {
  Comm *c = (Comm *)base;
  c->d->seq++;
  MPI_Request req;
  int rc = MPI_Iallreduce(MPI_IN_PLACE, v, (int)n, MPI_DOUBLE, MPI_SUM, c->d->world, &req);
  if (rc != MPI_SUCCESS) return mpi_error(rc, "MPI_Iallreduce");
  return wait_all(c->d, 1, &req, now_seconds(), c->d->timeout, where);
}

static int comm_broadcast(BprtComm *base, float *v, int64_t n, const char *where) {
  Comm *c = (Comm *)base;
  c->d->seq++;
  MPI_Request req;
  int rc = MPI_Ibcast(v, (int)n, MPI_FLOAT, 0, c->d->world, &req);
  if (rc != MPI_SUCCESS) return mpi_error(rc, "MPI_Ibcast");
  return wait_all(c->d, 1, &req, now_seconds(), c->d->timeout, where);
}

static int comm_check_params(BprtComm *base, const float *p, int64_t n, const char *where) {
  Comm *c = (Comm *)base;
  BprtDist *d = c->d;
  uint64_t mine = bprt_dist_hash(UINT64_C(0xcbf29ce484222325), p, sizeof(float) * (size_t)n);
  uint64_t *all = bprt_calloc((size_t)d->size, sizeof(uint64_t));
  if (!all) return -1;
  char w[160];
  snprintf(w, sizeof w, "the parameter check %s", where);
  d->seq++;
  MPI_Request req;
  int rc = MPI_Iallgather(&mine, 1, MPI_UINT64_T, all, 1, MPI_UINT64_T, d->world, &req);
  if (rc != MPI_SUCCESS) rc = mpi_error(rc, "MPI_Iallgather");
  else rc = wait_all(d, 1, &req, now_seconds(), d->timeout, w);
  for (int r = 1; rc == 0 && r < d->size; r++)
    if (all[r] != all[0])
      rc = bprt_set_error("the parameters of rank %d differ from rank 0's %s (hash %016" PRIx64 " against %016" PRIx64
                          "): the ranks no longer train the same model",
                          r, where, all[r], all[0]);
  bprt_free(all);
  return rc;
}

/* Buckets of about bucket_mb MiB over the grads block, from its end to its start. */
BprtComm *bprt_dist_comm(BprtDist *d, const bprt_model_desc *desc, float *grads, double bucket_mb) {
  if (d->comm) return &d->comm->base;
  Comm *c = bprt_calloc(1, sizeof *c);
  int np = desc->nparams;
  int *order = bprt_calloc((size_t)(np > 0 ? np : 1), sizeof(int));
  if (!c || !order) goto fail;
  c->bucket_of = bprt_calloc((size_t)(np > 0 ? np : 1), sizeof(int));
  c->buckets = bprt_calloc((size_t)(np > 0 ? np : 1), sizeof(Bucket));
  if (!c->bucket_of || !c->buckets) goto fail;
  /* parameters by offset, the last first (insertion sort: tens of parameters) */
  for (int i = 0; i < np; i++) {
    int j = i;
    while (j > 0 && desc->params[order[j - 1]].offset < desc->params[i].offset) {
      order[j] = order[j - 1];
      j--;
    }
    order[j] = i;
  }
  int64_t limit = (int64_t)(bucket_mb * 1048576.0 / sizeof(float));
  if (limit < 1) limit = 1;
  int nb = 0;
  for (int k = 0; k < np; k++) {
    const bprt_param_desc *p = &desc->params[order[k]];
    /* a new bucket when the open one would pass the limit with this parameter; a
     * parameter larger than the limit is a bucket of its own */
    if (nb == 0 || c->buckets[nb - 1].hi - p->offset > limit) {
      int64_t hi = nb == 0 ? desc->param_floats : c->buckets[nb - 1].lo;
      c->buckets[nb++] = (Bucket){.lo = p->offset, .hi = hi};
    }
    Bucket *b = &c->buckets[nb - 1];
    b->lo = p->offset;
    if (p->trainable) b->trainable++;
    c->bucket_of[order[k]] = nb - 1;
  }
  if (nb > 0) c->buckets[nb - 1].lo = 0;   /* the padding before the first parameter, if any */
  c->nbuckets = nb;
  bprt_free(order);
  c->d = d;
  c->desc = desc;
  c->grads = grads;
  c->base.rank = d->rank;
  c->base.size = d->size;
  c->base.step_begin = comm_step_begin;
  c->base.grad_ready = comm_grad_ready;
  c->base.step_end = comm_step_end;
  c->base.sum = comm_sum;
  c->base.broadcast = comm_broadcast;
  c->base.check_params = comm_check_params;
  d->comm = c;
  return &c->base;
fail:
  if (c) {
    bprt_free(c->bucket_of);
    bprt_free(c->buckets);
  }
  bprt_free(c);
  bprt_free(order);
  return NULL;
}
