/* runtime/train.h — the training loop of `bpcc train` and the evaluation of `bpcc eval`
 * (library bpcc_data, beside the data loaders; it includes nothing of the compiler).
 *
 * Table of contents:
 *   schedule.c  learning-rate schedules (constant, step, cosine with warm-up, plateau) and
 *               the `NAME(k = v, ...)` settings of --optimizer and --schedule
 *   train.c     the loop: epochs of shuffled batches over a compiled model, the progress
 *               bar, the CSV log, --watch statistics, non-finite detection, checkpoints
 *               with the loop's state and --resume, evaluation
 *   progress.c  numbers for people, the progress bar, the status line (runtime/progress.h)
 *   sample.c    the next token from a language model's logits (bpcc sample)
 *
 * docs/training.md describes the command line, every default and the checkpoint format.
 * Error convention as in runtime.h: -1 (or NULL) and a message in bprt_last_error(). */
#ifndef BPCC_RUNTIME_TRAIN_H
#define BPCC_RUNTIME_TRAIN_H

#include <signal.h>
#include <stdio.h>

#include "runtime/model.h"
#include "runtime/data.h"
#include "runtime/fxsum.h"
#include "runtime/runtime.h"

/* ------------------------------------------------------------ schedules (schedule.c) */

typedef enum { BPRT_SCHED_CONSTANT, BPRT_SCHED_STEP, BPRT_SCHED_COSINE, BPRT_SCHED_PLATEAU, BPRT_SCHED__COUNT } BprtScheduleKind;

extern const char *const bprt_schedule_names[BPRT_SCHED__COUNT];   /* "constant" ... */

/* A schedule: its settings (PyTorch's names) and the state it carries between epochs.
 * The learning rate is set once per epoch (PyTorch's scheduler.step() after an epoch). */
typedef struct {
  BprtScheduleKind kind;
  double base_lr;
  int64_t step_size;      /* step: every step_size epochs ...            (default 1) */
  double gamma;           /*   ... multiply by gamma                       (0.1) */
  int64_t t_max;          /* cosine: epochs of the whole schedule (0: = --epochs) */
  double eta_min;         /*   the floor                                   (0) */
  int64_t warmup;         /*   epochs of linear warm-up inside t_max     (0) */
  double factor;          /* plateau: multiply by factor ...               (0.1) */
  int64_t patience;       /*   after more than patience bad epochs         (10) */
  double threshold;       /*   relative improvement that counts            (1e-4) */
  int64_t cooldown;       /*   epochs ignored after a reduction            (0) */
  double min_lr;          /*   the floor                                   (0) */
  /* state (saved in checkpoints) */
  double lr;              /* the rate of the coming epoch */
  double best;            /* plateau: best metric so far (+inf at first) */
  int64_t num_bad;        /* plateau: bad epochs in a row */
  int64_t cooldown_left;  /* plateau */
} BprtSchedule;

/* Settings to PyTorch's defaults, lr = base_lr, state fresh. */
void bprt_schedule_init(BprtSchedule *s, BprtScheduleKind kind, double base_lr);
/* Range checks of the settings (after t_max has been resolved). 0 / -1. */
int bprt_schedule_check(const BprtSchedule *s);
/* The learning rate of 0-based epoch `epoch` for constant, step and cosine (a pure
 * function of the epoch); plateau: the current s->lr. */
double bprt_schedule_lr(const BprtSchedule *s, int64_t epoch);
/* End of 0-based epoch `epoch` with its metric (validation loss, else training loss):
 * updates the state and sets s->lr to the rate of epoch + 1. */
void bprt_schedule_epoch_end(BprtSchedule *s, int64_t epoch, double metric);
/* Parse "step(step_size = 5, gamma = 0.5)" into s (keeps s->base_lr, resets the rest to
 * the defaults of the named kind first). *t_max_set tells whether t_max was given.
 * Errors: "--schedule 'SPEC': problem at column N". */
int bprt_schedule_parse(const char *spec, BprtSchedule *s, bool *t_max_set);

/* ------------------------------------------------------- optimizer settings (schedule.c) */

/* `--optimizer NAME(k = v, ...)` with torch.optim's keyword names (the vocabulary of
 * runtime/optimizers.c): lr, momentum,
 * dampening, nesterov, weight_decay (all), betas = (b1, b2), eps, alpha, lr_decay,
 * initial_accumulator_value, and bpcc's clip (max global gradient norm). set[i] tells
 * which BPRT_H_* values were given; the others keep the defaults the caller applies. */
typedef struct {
  int kind;                       /* bprt_optimizer */
  double hyper[BPRT_H__COUNT];
  bool set[BPRT_H__COUNT];
} BprtOptSpec;

int bprt_optimizer_parse(const char *spec, BprtOptSpec *out);
/* hyper[i] = o->hyper[i] for every i that was set. */
void bprt_optimizer_apply(const BprtOptSpec *o, double *hyper);

/* ----------------------------------- data parallelism (runtime/dist.c; docs/distributed.md)
 * The loop's view of the other ranks of a data-parallel run (`mpirun -np P bpcc train`):
 * every rank holds the same model and trains micro-batches rank*N .. rank*N + N - 1
 * (N = accumulate) of each global batch split into size*N (bprt_microbatch), weighted by
 * rows so that the gradients summed over every micro-batch of every rank are the
 * gradient of the global batch's mean loss. runtime/dist.c implements it over MPI; a
 * NULL comm is one process. Every function returns 0, or -1 with an error that names the
 * rank that did not join and where; the loop stops, and the caller ends the job. */
typedef struct BprtComm BprtComm;
struct BprtComm {
  int rank, size;
  /* Before the micro-batches of optimizer step `step` (1-based). */
  void (*step_begin)(BprtComm *c, int64_t step);
  /* The model's grad-ready hook (bprt_model_set_grad_ready, ctx = c) while this rank
   * runs its last micro-batch of a step: a bucket whose gradients are complete is sent
   * on its way (MPI_Iallreduce) while the backward pass goes on. */
  void (*grad_ready)(void *c, int32_t param);
  /* After this rank's micro-batches: the gradient block summed over the ranks (buckets
   * not yet issued first) — or, with fx (--deterministic-reduce), the fixed-point
   * accumulator fx[param_floats] summed exactly (runtime/fxsum.h) — and stats[0..n)
   * summed too. Each slot of stats is nonzero on one rank at most, so that sum is exact
   * and the same on every rank. */
  int (*step_end)(BprtComm *c, BprtFx *fx, double *stats, int64_t n);
  /* v[0..n) summed over the ranks (slots written by one rank each, as stats); `where`
   * names the synchronisation in messages ("the validation of epoch 3"). */
  int (*sum)(BprtComm *c, double *v, int64_t n, const char *where);
  /* v[0..n) of rank 0 copied to every rank (batchnorm's running statistics). */
  int (*broadcast)(BprtComm *c, float *v, int64_t n, const char *where);
  /* The parameters compared across ranks by a hash: -1 naming the first rank whose
   * parameters differ from rank 0's ("after epoch 3"). */
  int (*check_params)(BprtComm *c, const float *p, int64_t n, const char *where);
};

/* ------------------------------------------------------------------ the loop (train.c) */

/* Loss scaling (a model with desc->loss_scale_mode): a step whose loss and outputs are
 * finite but whose gradients are not is skipped, not fatal; the loop writes a line for
 * it on progress_out (unless quiet),
 *   "step 12: gradients not finite at loss scale 65536; update skipped, loss scale now 32768"
 * and counts it. This many skipped steps in a row stop the loop as a non-finite
 * gradient does: no scale makes those gradients finite. */
#define BPRT_TRAIN_MAX_SKIPS 64

/* A step whose loss, outputs or gradients went non-finite, as the loop hands it to
 * BprtTrainOptions.on_nonfinite: the batch as the step got it and the parameter block,
 * the last good values (the loop checks before the update, so the failing step's update
 * never reached them). Valid during the call only. A step where only the update
 * overflowed is reported by the loop itself. */
typedef struct {
  int64_t step;                   /* 1-based global step: the dropout step of the masks */
  uint64_t seed;                  /* the model's seed (dropout masks) */
  int64_t rows;                   /* rows of the batch */
  const void *const *inputs;      /* inputs[i] as desc->inputs, as the step got them */
  const float *params;            /* desc->param_floats: the model's, the last good ones */
} BprtNonfiniteStep;

/* Name the first tensor of the step that went non-finite into what[0..n) (e.g.
 * "'h', a log at nf.bp:3:9 (nan)"); return false to keep the loop's own report (the
 * first of outputs, loss, gradients, updated parameters). */
typedef bool (*BprtNonfiniteFn)(void *ctx, const bprt_model_desc *d, const BprtNonfiniteStep *s, char *what,
                                size_t n);

typedef struct {
  int64_t epochs;            /* total epochs (a resumed run continues up to this) */
  /* A run by steps instead (> 0): `steps` steps in all, batches drawn on across epochs
   * (row data: epoch e = step / batches-per-epoch in the order of (seed, e); text: random
   * windows), validation every eval_every steps (0: at the end only) and at the end, a
   * checkpoint every save_every steps and at the end, schedules counted in steps (their
   * step_size, T_max and warmup are steps; plateau sees each evaluation). Text data
   * trains by steps only. */
  int64_t steps;
  int64_t eval_every;
  int64_t batch;             /* rows of one micro-batch: an optimizer step takes
                                batch * accumulate rows (the global batch) */
  int64_t accumulate;        /* micro-batches summed per optimizer step (>= 1; 1: none) */
  uint64_t seed;             /* shuffles; the model was created from the same seed */
  BprtSchedule schedule;
  const char *save_path;     /* NULL: no checkpoint */
  int64_t save_every;        /* 0: only at the end */
  const char *resume_path;   /* NULL: fresh start */
  const char *log_path;      /* CSV, NULL: none */
  bool log_steps;            /* a CSV row per step too */
  bool watch;                /* per-parameter / per-output statistics every epoch (and,
                                with log_path, rows of bprt_watch_log_path's file) */
  bool quiet;                /* only errors and the final line */
  int progress;              /* 1 progress bar, 0 none, -1 auto: isatty(progress_out) */
  int64_t print_every;       /* > 0: a line every N steps of an epoch on progress_out */
  FILE *out;                 /* results (epoch lines, --watch tables); NULL: stdout */
  FILE *progress_out;        /* the bar and --print-every lines; NULL: stderr */
  const char *model_file;    /* "examples/spiral.bp" for messages and the checkpoint */
  BprtNonfiniteFn on_nonfinite;   /* NULL: the loop's own report */
  void *nonfinite_ctx;
  /* Stopping early (opt-in: the runtime installs no signal handler; `bpcc train` sets
   * *stop from its SIGINT and SIGTERM handlers). The loop reads *stop after every step
   * but an epoch's last and after every epoch's end but the run's last; nonzero there
   * stops it, with a checkpoint of the exact position (the epoch, the rows of it done)
   * written to interrupt_path (NULL: save_path; neither: none), from which --resume
   * continues bit for bit. */
  volatile sig_atomic_t *stop;
  const char *interrupt_path;
  /* Data parallelism (above; NULL: one process). Rank 0 alone prints, logs and writes
   * checkpoints; the others are quiet whatever out and quiet say. A stop request
   * (*stop) on any rank stops every rank after the same step. */
  BprtComm *comm;
  /* --deterministic-reduce: every micro-batch's gradient summed exactly in fixed point
   * (runtime/fxsum.h), then over the ranks, rounded once: the same bits for any number
   * of ranks with the same micro-batch (docs/distributed.md). One process too (with
   * accumulate: the reference a data-parallel run equals). */
  bool deterministic;
} BprtTrainOptions;

void bprt_train_options_defaults(BprtTrainOptions *o);

/* Micro-batch j (0 <= j < n) of a global batch of `rows` rows split into n: rows / n rows
 * each, the first rows % n of them one more, in order (micro-batch j starts at row
 * *start of the global batch and has *count rows; 0 when rows < n and j >= rows).
 * Its gradient weight is *count / rows. The accumulation loop calls it with n =
 * accumulate; a data-parallel loop with n = ranks * accumulate, j = rank * accumulate + i. */
void bprt_microbatch(int64_t rows, int64_t n, int64_t j, int64_t *start, int64_t *count);

/* What one epoch measured. Accuracies are NAN without label targets; validation values
 * NAN without a validation set. */
typedef struct {
  int64_t epoch;             /* 1-based; 0 in a run by steps */
  int64_t step;              /* global steps done at its end */
  double lr;
  double loss, accuracy;     /* training: mean over the epoch's rows */
  double val_loss, val_accuracy;   /* text: val_loss in nats per character */
  double seconds;
} BprtEpochStats;

typedef struct {
  int64_t epochs_done;       /* including the resumed ones */
  int64_t steps;
  BprtEpochStats last;       /* the last epoch (all NAN if none ran) */
  bool nonfinite;            /* stopped on a non-finite loss or gradient */
  int64_t skipped;           /* steps of this run skipped by loss scaling (non-finite
                                gradients; each logged on progress_out) */
  /* stopped by *o->stop (bprt_train returned 0): where, and the checkpoint written
   * (NULL: none asked for) */
  bool interrupted;
  int64_t stop_epoch;        /* 1-based epoch it stopped in (at its end: batch == batches) */
  int64_t stop_batch, stop_batches;
  const char *checkpoint;
} BprtTrainResult;

/* Train m on `train` (val may be NULL). Returns 0 when every epoch ran, -1 with an
 * error otherwise (including the non-finite stop, whose message names the step, the
 * tensor and its DSL location, and says whether a checkpoint of this run is left in
 * place: no checkpoint is written after a non-finite step). A batch larger than the
 * data set is used as one batch of all its rows. */
int bprt_train(bprt_model *m, const BprtDataset *train, const BprtDataset *val, const BprtTrainOptions *o,
               BprtTrainResult *r);

/* Loss and accuracy of the model on d, in batches (no update). Accuracy: with labels
 * the argmax of the first [B, C] output; with float targets and a sigmoid output of the
 * targets' shape (desc->sigmoid_output), the fraction of target elements where
 * (p >= 0.5) == (t >= 0.5); NAN otherwise. */
int bprt_evaluate(bprt_model *m, const BprtDataset *d, int64_t batch, double *loss, double *accuracy);

/* The file --watch statistics go to beside the CSV log: LOG.csv -> LOG.watch.csv (any
 * other name gets ".watch.csv" appended). -1 when it does not fit in n bytes. */
int bprt_watch_log_path(const char *log_path, char *buf, size_t n);

/* Does d fit the model's inputs? (one input: features; two: features and labels or
 * targets). -1 with "SOURCE: data has 784 features per row; model input x expects
 * f32[B,100]" or the like. */
int bprt_train_check_data(const bprt_model_desc *desc, const BprtDataset *d);
/* Text data (d->text): check that the model takes it (two inputs label[B, T, 256]) and
 * bind the windows to the model's T (seq= of the SPEC must equal it). Nothing to do for
 * other data. Call before bprt_train_check_data, for the training and the validation set. */
int bprt_train_bind_text(const bprt_model_desc *desc, BprtDataset *d);

/* ------------------------------------------------------------- sampling (sample.c) */

/* The next token from logits z[0..v): softmax(z / temperature) over the top_k largest
 * logits (ties: the smaller index), drawn with the uniform Philox(seed, sample stream,
 * index); temperature 0 (or top_k 1): the first largest logit. The token, or -1 with an
 * error (a non-finite logit; temperature < 0, top_k < 1, v < 1). */
int64_t bprt_sample_logits(const float *z, int64_t v, double temperature, int64_t top_k, uint64_t seed, uint64_t index);

/* -------------------------------------------------------- checkpoints (train.c) */

/* The loop's state kept in a checkpoint's metadata beside parameters and optimizer
 * state: keys bpcc.epoch, bpcc.step, bpcc.seed, bpcc.schedule (kind and state), bpcc.rng,
 * and the position inside an epoch that was stopped (bpcc.epoch_rows,
 * bpcc.epoch_loss_sum, bpcc.epoch_correct; all 0 at an epoch's end). */
typedef struct {
  int64_t epoch;             /* completed epochs */
  int64_t step;              /* completed steps */
  uint64_t seed;
  BprtSchedule schedule;     /* as at the start of epoch `epoch` + 1 */
  int64_t epoch_rows;        /* rows of epoch `epoch` + 1 trained (its permutation's first) */
  double epoch_loss_sum;     /* the sum of their batch losses times rows */
  int64_t epoch_correct;     /* their correct predictions */
  /* a run by steps (BprtTrainOptions.steps): bpcc.period "rows=N loss_sum=X correct=K
   * scored=K" holds the running sums since the last evaluation; with text data bpcc.rng
   * adds text_window=K, the training windows drawn (window K comes next) */
  bool by_steps, text;
  int64_t text_windows;
  int64_t period_rows, period_correct, period_scored;
  double period_loss_sum;
} BprtTrainState;

/* Values kept in range by the loop, and so checked by load: epoch, step and rows
 * below 2^40 (the width of the RNG streams' epoch and step fields). */
#define BPRT_TRAIN_COUNT_MAX (INT64_C(1) << 40)

int bprt_checkpoint_save(bprt_model *m, const char *path, const BprtTrainState *st);
/* Load parameters and optimizer state into m and the loop state into *st (st may be
 * NULL: weights only, e.g. `bpcc eval`). *st's schedule must hold this run's settings
 * (its kind is checked against the file's). Every key is checked: a missing, malformed
 * or out-of-range value is an error naming the key and the file, e.g.
 * "ck.st: metadata bpcc.step = '-1' is out of range (an integer in [0, 2^40))". */
int bprt_checkpoint_load(bprt_model *m, const char *path, BprtTrainState *st);

#endif
