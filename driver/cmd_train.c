/* driver/cmd_train.c — `bpcc train FILE.bp`: JIT-compile the model and train it.
 *
 *   bpcc train FILE.bp --data SPEC [--val SPEC | --val-split F] [--epochs N | --steps N]
 *                      [--eval-every N] [--batch N]
 *                      [--lr X] [--optimizer NAME(k = v, ...)] [--schedule ...] [--seed N]
 *                      [--threads N] [--save PATH] [--save-every N] [--resume PATH | --init W]
 *                      [--log FILE.csv] [--log-steps] [--watch] [--quiet] [--print-every N]
 *                      [--model NAME] [--loss-scale dynamic|off|N]
 *                      [the pipeline's options: --recompute, --mem-budget, -O, -march, ...]
 *
 * The settings come in three layers, each overriding the one before: PyTorch's defaults
 * for the optimizer, the model's `train` block, the command line (docs/training.md).
 * The model is checked first, the data loaded (the batch is clamped to the training
 * rows), then the pipeline runs to machine code with the batch and the optimizer
 * resolved (a --mem-budget is planned at that batch), and the loop runs
 * (runtime/train.c) over the model object (runtime/model.c).
 *
 * Results go to stdout (the header, a line per epoch, the final line); what only shows
 * that work is going on goes to stderr, and only where it is a terminal: the status
 * line while the data loads and the model compiles, the progress bar
 * (runtime/progress.c). --print-every N adds a line every N steps on stderr, terminal
 * or not.
 *
 * Nothing is lost: the --save path is checked before anything is compiled, the model's
 * memory against what is available before anything is allocated (memcheck.c), and
 * Ctrl-C or SIGTERM during the loop stops it after the current step with a checkpoint
 * of the exact position and the command that resumes it (exit status 130). */
#include "driver/driver.h"
#include "runtime/dist.h"
#include "runtime/progress.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------- options */

typedef struct {
  const char *file;
  const char *data, *val, *optimizer, *schedule, *save, *resume, *init, *log;
  double val_split, lr;
  double timeout, bucket_mb;   /* data-parallel (docs/distributed.md) */
  bool has_timeout, has_bucket_mb;
  bool deterministic;          /* --deterministic-reduce */
  int64_t accumulate;          /* --accumulate N (0: not given) */
  int64_t epochs, steps, eval_every, save_every, print_every;
  uint64_t seed;
  bool has_epochs, has_steps, has_seed, has_lr, has_val_split;
  bool log_steps, quiet;
  PipelineOptions po;   /* --batch, --threads, --watch, --model, --recompute, ... */
  PipelineArgs pa;
  int argc;             /* the command line, for the command that resumes */
  char **argv;
} TrainArgs;

static int arg_error(const char *fmt, const char *a) { return args_usage_error("train", fmt, a); }

enum {
  T_DATA, T_VAL, T_VAL_SPLIT, T_EPOCHS, T_LR, T_OPTIMIZER, T_SCHEDULE, T_SEED, T_SAVE, T_SAVE_EVERY, T_RESUME, T_INIT, T_LOG,
  T_LOG_STEPS, T_QUIET, T_PRINT_EVERY, T_STEPS, T_EVAL_EVERY, T_TIMEOUT, T_BUCKET_MB, T_DETERMINISTIC, T_ACCUMULATE
};

/* train's own options: what it parses, lists in --help and suggests for a typo. The
 * pipeline's (--batch, --threads, --watch, --model, ...) follow from args.c. */
static const DrvOption train_options[] = {
    {T_DATA, "--data", OPT_VALUE, "SPEC", "training data: mnist:DIR, idx:IMAGES,LABELS,\n"
                                          "csv:PATH[:label=COL,header=1], npy:X.npy,Y.npy,\n"
                                          "spiral[:n=1000,classes=3,noise=0.2], xor[:n=200,noise=0.2],\n"
                                          "blobs[:n=300,classes=3,dim=2,std=1.0],\n"
                                          "text:FILE[:seq=T,split=0.9]                    (required)"},
    {T_VAL, "--val", OPT_VALUE, "SPEC", "validation data (default: the SPEC's own test set, as\n"
                                        "mnist's t10k files; else none)"},
    {T_VAL_SPLIT, "--val-split", OPT_VALUE, "F", "hold out a fraction F of the training data instead"},
    {T_EPOCHS, "--epochs", OPT_VALUE, "N", "epochs in all (train block, else 1)"},
    {T_STEPS, "--steps", OPT_VALUE, "N", "train N steps in all instead of epochs (text data:\n"
                                         "always); overrides the block's epochs or steps"},
    {T_EVAL_EVERY, "--eval-every", OPT_VALUE, "N", "with --steps: validate every N steps (and at the end)"},
    {OPT_PIPELINE, "--batch", OPT_VALUE, "N", "rows per step; the last batch may be partial (else 32;\n"
                                            "at most the training rows)"},
    {T_LR, "--lr", OPT_VALUE, "X", "learning rate (after the optimizer's own lr)"},
    {T_OPTIMIZER, "--optimizer", OPT_VALUE, "S", "NAME(k = v, ...): sgd, momentum, adagrad, rmsprop, adam,\n"
                                                 "adamw with torch.optim's argument names, and clip"},
    {T_SCHEDULE, "--schedule", OPT_VALUE, "S", "constant | step(step_size, gamma) | cosine(T_max, eta_min,\n"
                                               "warmup) | plateau(factor, patience, threshold, cooldown,\n"
                                               "min_lr); set once per epoch"},
    {T_SEED, "--seed", OPT_VALUE, "N", "initialization, shuffles, dropout (train block, else 0)"},
    {OPT_PIPELINE, "--threads", OPT_VALUE, "N", "worker threads (default: one per CPU)"},
    {T_SAVE, "--save", OPT_VALUE, "PATH", "write a checkpoint (safetensors) at the end ..."},
    {T_SAVE_EVERY, "--save-every", OPT_VALUE, "N", "... and every N epochs (steps, with --steps)"},
    {T_RESUME, "--resume", OPT_VALUE, "PATH", "continue from a checkpoint, bit for bit (also one that\n"
                                              "Ctrl-C wrote mid-epoch)"},
    {T_INIT, "--init", OPT_VALUE, "W", "start from the parameters of W (a checkpoint or a\n"
                                       "safetensors file by PyTorch); optimizer state fresh"},
    {T_LOG, "--log", OPT_VALUE, "FILE.csv", "one CSV row per epoch ..."},
    {T_LOG_STEPS, "--log-steps", OPT_FLAG, NULL, "... and one per step"},
    {OPT_PIPELINE, "--watch", OPT_FLAG, NULL, "per epoch: gradient norm and update/weight ratio of each\n"
                                            "parameter, mean and std of each output; the memory measured"},
    {T_QUIET, "--quiet", OPT_FLAG, NULL, "only errors and the final line"},
    {T_PRINT_EVERY, "--print-every", OPT_VALUE, "N", "a line every N steps on stderr, terminal or not (the bar\n"
                                                     "is drawn on stderr when it is a terminal)"},
    {OPT_PIPELINE, "--model", OPT_VALUE, "NAME", "the model to train when the file has several"},
    {OPT_PIPELINE, "--precision", OPT_VALUE, "P", "f32 | bf16 | f16: the step's products and kept activations\n"
                                                 "(the train block's precision, else f32)"},
    {OPT_PIPELINE, "--loss-scale", OPT_VALUE, "S", "dynamic | off | N: loss scaling (train block's loss_scale;\n"
                                                 "default dynamic for precision f16, else off); a step with\n"
                                                 "non-finite gradients is skipped and logged on stderr"},
    {T_TIMEOUT, "--timeout", OPT_VALUE, "SECONDS", "under mpirun: the longest wait for the other ranks before\n"
                                                   "the run stops, naming the rank (60; start-up 5x)"},
    {T_BUCKET_MB, "--bucket-mb", OPT_VALUE, "MB", "under mpirun: MiB of gradients per allreduce (2)"},
    {T_DETERMINISTIC, "--deterministic-reduce", OPT_FLAG, NULL, "sum gradients exactly (fixed point): the same bits for any\n"
                                                             "number of ranks with the same --batch"},
    {T_ACCUMULATE, "--accumulate", OPT_VALUE, "N", "micro-batches of --batch rows summed per step (1)"},
    {0, NULL, OPT_FLAG, NULL, NULL},
};

static void train_usage(FILE *o) {
  fprintf(o,
          "usage: bpcc train FILE.bp --data SPEC [options]\n"
          "JIT-compile the model of FILE.bp and train it. Command-line values override the\n"
          "model's train block; %s/docs/training.md lists every default.\n"
          "\n", drv_doc_dir());
  args_print_options(o, train_options, 18, NULL);
  fprintf(o,
          "and the compiler's options (bpcc --help): --recompute=MODE, --mem-budget SIZE,\n"
          "-fno-softmax-xent, -fno-fuse, -O0..-O3, -march=CPU, --print-after=STAGE, --verify-each\n");
}

/* 0 parsed, 1 error (reported), 2 --help printed. */
static int parse_args(int argc, char **argv, TrainArgs *t) {
  memset(t, 0, sizeof *t);
  t->argc = argc;
  t->argv = argv;
  pipeline_options_default(&t->po);
  args_init(&t->pa, &t->po);
  ArgParser p;
  args_parser_init(&p, "train", train_options, &t->pa, argc, argv);
  const DrvOption *opt;
  const char *v;
  for (int k; (k = args_next(&p, &opt, &v)) != ARGS_END;) {
    if (k == ARGS_ERROR) return 1;
    if (k == ARGS_HELP) return 2;
    if (k == ARGS_OPERAND) {
      if (t->file) return arg_error("more than one input file ('%s')", v);
      t->file = v;
      continue;
    }
    switch (opt->id) {
    case T_DATA: t->data = v; break;
    case T_VAL: t->val = v; break;
    case T_OPTIMIZER: t->optimizer = v; break;
    case T_SCHEDULE: t->schedule = v; break;
    case T_SAVE: t->save = v; break;
    case T_RESUME: t->resume = v; break;
    case T_INIT: t->init = v; break;
    case T_LOG: t->log = v; break;
    case T_LOG_STEPS: t->log_steps = true; break;
    case T_QUIET: t->quiet = true; break;
    case T_EPOCHS:
      if (!args_int("--epochs", v, 1, INT64_MAX, &t->epochs)) return 1;
      t->has_epochs = true;
      break;
    case T_STEPS:
      if (!args_int("--steps", v, 1, (INT64_C(1) << 40) - 1, &t->steps)) return 1;
      t->has_steps = true;
      break;
    case T_EVAL_EVERY:
      if (!args_int("--eval-every", v, 1, INT64_MAX, &t->eval_every)) return 1;
      break;
    case T_SAVE_EVERY:
      if (!args_int("--save-every", v, 1, INT64_MAX, &t->save_every)) return 1;
      break;
    case T_PRINT_EVERY:
      if (!args_int("--print-every", v, 1, INT64_MAX, &t->print_every)) return 1;
      break;
    case T_SEED: {
      int64_t s;
      if (!args_int("--seed", v, 0, INT64_MAX, &s)) return 1;
      t->seed = (uint64_t)s;
      t->has_seed = true;
      break;
    }
    case T_LR: {
      if (!args_real("--lr", v, &t->lr)) return 1;
      const char *bad = bprt_hyper_check(BPRT_H_LR, t->lr);
      if (bad) return args_usage_error("train", "--lr '%s': %s", v, bad);
      t->has_lr = true;
      break;
    }
    case T_DETERMINISTIC: t->deterministic = true; break;
    case T_ACCUMULATE:
      if (!args_int("--accumulate", v, 1, 1 << 20, &t->accumulate)) return 1;
      break;
    case T_TIMEOUT:
      if (!args_real("--timeout", v, &t->timeout)) return 1;
      if (!(t->timeout > 0 && t->timeout <= 86400)) return arg_error("--timeout '%s': must be seconds in (0, 86400]", v);
      t->has_timeout = true;
      break;
    case T_BUCKET_MB:
      if (!args_real("--bucket-mb", v, &t->bucket_mb)) return 1;
      if (!(t->bucket_mb >= 0.001 && t->bucket_mb <= 1024)) return arg_error("--bucket-mb '%s': must be in [0.001, 1024]", v);
      t->has_bucket_mb = true;
      break;
    case T_VAL_SPLIT:
      if (!args_real("--val-split", v, &t->val_split)) return 1;
      if (!(t->val_split > 0 && t->val_split < 1)) return arg_error("--val-split '%s': must be between 0 and 1", v);
      t->has_val_split = true;
      break;
    }
  }
  if (!t->file) return arg_error("%s", "no input file");
  if (!t->data) return arg_error("%s", "no data: give --data SPEC (e.g. --data spiral or --data mnist:DIR)");
  if (t->val && t->has_val_split) return arg_error("%s", "--val and --val-split exclude each other");
  if (t->has_epochs && t->has_steps)
    return arg_error("%s", "--epochs and --steps exclude each other (a run is counted in epochs or in steps)");
  if (t->log_steps && !t->log) return arg_error("%s", "--log-steps needs --log FILE.csv");
  if (t->save_every && !t->save) return arg_error("%s", "--save-every needs --save PATH");
  if (t->print_every && t->quiet) return arg_error("%s", "--print-every and --quiet exclude each other");
  if (t->init && t->resume)
    return arg_error("%s", "--init and --resume exclude each other (--init starts a new run from weights only; "
                           "--resume continues a run with its optimizer state)");
  static const CommandInfo train = {"train", STAGE_MACHINE, true, true, true};
  return args_check(&t->pa, &train) ? 0 : 1;
}

/* ------------------------------------------------------- settings: train block + CLI */

/* The optimizer and its hyperparameters: the train block (which holds PyTorch's
 * defaults for what it does not set), then --optimizer, then --lr. */
static int resolve_optimizer(const TrainSpec *ts, const TrainArgs *a, bprt_optimizer_config *opt) {
  *opt = ts->opt;
  if (a->optimizer) {
    BprtOptSpec o;
    if (bprt_optimizer_parse(a->optimizer, &o)) {
      fprintf(stderr, "bpcc: error: %s\n", bprt_last_error());
      return -1;
    }
    if (o.kind != opt->kind) { /* another optimizer: its own defaults; the block's clip stays */
      double clip = opt->hyper[BPRT_H_CLIP];
      bprt_optimizer_init(opt, o.kind);
      opt->hyper[BPRT_H_CLIP] = clip;
    }
    bprt_optimizer_apply(&o, opt->hyper);
  }
  if (a->has_lr) opt->hyper[BPRT_H_LR] = a->lr;
  opt->hyper[BPRT_H_STEP] = 1;
  const char *bad = bprt_optimizer_check(opt->kind, opt->hyper);
  if (bad) {
    fprintf(stderr, "bpcc: error: %s: %s\n", bprt_optimizers[opt->kind].name, bad);
    return -1;
  }
  return 0;
}

/* `epochs` is the run's length in the schedule's unit: epochs, or steps in a run by steps. */
static int resolve_schedule(const TrainSpec *ts, const TrainArgs *a, double lr, int64_t epochs, BprtSchedule *s) {
  bprt_schedule_init(s, (BprtScheduleKind)ts->schedule, lr);
  s->step_size = ts->step_size;
  s->gamma = ts->gamma;
  s->t_max = ts->t_max;
  s->eta_min = ts->eta_min;
  s->warmup = ts->warmup;
  s->factor = ts->factor;
  s->patience = ts->patience;
  s->threshold = ts->threshold;
  s->cooldown = ts->cooldown;
  s->min_lr = ts->min_lr;
  /* the block resolved T_max = 0 to its own epochs; --epochs moves it along */
  if (ts->schedule == FE_SCHED_COSINE && ts->t_max == (ts->steps > 0 ? ts->steps : ts->epochs)) s->t_max = epochs;
  if (a->schedule) {
    bool tset = false;
    if (bprt_schedule_parse(a->schedule, s, &tset)) {
      fprintf(stderr, "bpcc: error: %s\n", bprt_last_error());
      return -1;
    }
    if (s->kind == BPRT_SCHED_COSINE && !tset) s->t_max = epochs;
  }
  if (s->kind == BPRT_SCHED_COSINE && s->t_max == 0) s->t_max = epochs;
  if (bprt_schedule_check(s)) {
    fprintf(stderr, "bpcc: error: %s\n", bprt_last_error());
    return -1;
  }
  return 0;
}

/* ------------------------------------------------------------------- data */

/* Training and validation sets from --data, --val, --val-split. */
static int load_data(const TrainArgs *a, uint64_t seed, BprtDataset **train, BprtDataset **val) {
  *train = *val = NULL;
  BprtDataset *tr = NULL, *own_val = NULL;
  if (bprt_data_load(a->data, seed, &tr, &own_val)) return -1;
  if (tr->text && (a->val || a->has_val_split)) {   /* its split= is the validation part */
    bprt_dataset_free(tr);
    bprt_dataset_free(own_val);
    return bprt_set_error("%s: text data validates on its own last part (text:FILE:split=F); %s does not apply",
                          a->data, a->val ? "--val" : "--val-split");
  }
  if (a->val) {
    bprt_dataset_free(own_val);
    own_val = NULL;
    BprtDataset *v = NULL, *vv = NULL;
    if (bprt_data_load(a->val, seed, &v, &vv)) {
      bprt_dataset_free(tr);
      return -1;
    }
    /* a SPEC with its own test part (mnist:DIR) validates on that part */
    if (vv) {
      bprt_dataset_free(v);
      v = vv;
    }
    *val = v;
  } else if (a->has_val_split) {
    BprtDataset *t2 = NULL, *v2 = NULL;
    int rc = bprt_data_split(tr, a->val_split, seed, &t2, &v2);
    bprt_dataset_free(tr);
    bprt_dataset_free(own_val);
    if (rc) return -1;
    tr = t2;
    *val = v2;
  } else {
    *val = own_val;
  }
  *train = tr;
  return 0;
}

static int64_t numel_of_param(const bprt_param_desc *p) {
  int64_t k = 1;
  for (int j = 0; j < p->rank; j++) k *= p->dims[j];
  return k;
}

static int64_t param_count(const bprt_model_desc *d) {
  int64_t n = 0;
  for (int i = 0; i < d->nparams; i++) n += numel_of_param(&d->params[i]);
  return n;
}

static double seconds_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* "loading mnist:DIR ...", "compiling FILE.bp ...": on a terminal only (a log file
 * would keep it for ever), and not when stdout gets compiler output (--print-after)
 * on the same screen. The line is cleared when the work is done, unless a diagnostic
 * was printed under it: then it stays, as the heading of what was said. */
typedef struct {
  bool on, shown;
  int diags;   /* diagnostics printed before the status */
} Status;

static void status_show(Status *st, const char *what, const char *name) {
  if (!st->on) return;
  char text[4200];
  snprintf(text, sizeof text, "%s %s ...", what, name);
  st->diags = diag_error_count() + diag_warning_count();
  bprt_status_show(stderr, text);
  st->shown = true;
}

static void status_done(Status *st) {
  if (st->shown && diag_error_count() + diag_warning_count() == st->diags) bprt_status_clear(stderr);
  st->shown = false;
}

/* ------------------------------------------------------------------- interruption */

/* The first SIGINT or SIGTERM of the loop; the loop reads it after each step
 * (BprtTrainOptions.stop). The handlers exist only while the loop runs: before it, a
 * Ctrl-C ends bpcc as usual (there is nothing to save yet). */
static volatile sig_atomic_t stop_signal;
static bool stop_quiet;   /* ranks other than 0 of a data-parallel run: rank 0 says it */

static void on_stop_signal(int sig) {
  /* The second: at once. A checkpoint being written then is a temporary file beside
   * the old one, which the next save to that path removes (runtime/safetensors.c). */
  if (stop_signal) _exit(130);
  stop_signal = sig;
  if (stop_quiet) return;
  static const char msg[] = "\nbpcc: interrupted: stopping after this step to write a checkpoint "
                            "(interrupt again to quit at once, without one)\n";
  ssize_t w = write(STDERR_FILENO, msg, sizeof msg - 1);
  (void)w;
}

typedef struct {
  struct sigaction old[2];
  bool set[2];
} StopHandlers;

static const int stop_signals[2] = {SIGINT, SIGTERM};

/* A signal ignored when bpcc started stays ignored: a background job of a shell without
 * job control ignores SIGINT so that the Ctrl-C meant for the foreground spares it. */
static void stop_handlers_install(StopHandlers *h) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  stop_signal = 0;
  for (int i = 0; i < 2; i++) {
    h->set[i] = false;
    if (sigaction(stop_signals[i], NULL, &h->old[i]) == 0 && h->old[i].sa_handler != SIG_IGN)
      h->set[i] = sigaction(stop_signals[i], &sa, NULL) == 0;
  }
}

static void stop_handlers_restore(const StopHandlers *h) {
  for (int i = 0; i < 2; i++)
    if (h->set[i]) sigaction(stop_signals[i], &h->old[i], NULL);
}

/* Where an interrupted run without --save leaves its checkpoint: NAME.interrupted.safetensors
 * in the current directory, NAME the model file's base name without .bp (the model's
 * name for standard input). */
static void interrupted_path(const char *file, const char *model, char *buf, size_t n) {
  const char *base = strrchr(file, '/');
  base = base ? base + 1 : file;
  size_t len = strlen(base);
  if (len > 3 && !strcmp(base + len - 3, ".bp")) len -= 3;
  if (!strcmp(file, "-") || len == 0) snprintf(buf, n, "%s.interrupted.safetensors", model);
  else snprintf(buf, n, "%.*s.interrupted.safetensors", (int)len, base);
}

/* An argument as the shell reads it back: as it is when every character is plain,
 * else in single quotes ('\'' for a quote inside). */
static void put_shell_word(FILE *f, const char *w) {
  bool plain = *w != 0;
  for (const char *p = w; *p && plain; p++)
    plain = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || strchr("_./:=,+@%-", *p);
  if (plain) {
    fputs(w, f);
    return;
  }
  fputc('\'', f);
  for (const char *p = w; *p; p++)
    if (*p == '\'') fputs("'\\''", f);
    else fputc(*p, f);
  fputc('\'', f);
}

/* The command that continues the run: the user's own, less --resume and --init, plus
 * --resume CHECKPOINT; under mpirun ("mpirun -np P " first: any P resumes it with the
 * same global batch, docs/distributed.md). */
static void print_resume_command(FILE *f, const TrainArgs *a, const char *checkpoint, int ranks) {
  if (ranks > 1) fprintf(f, "mpirun -np %d ", ranks);
  put_shell_word(f, drv_program);
  fputs(" train", f);
  for (int i = 1; i < a->argc; i++) {
    const char *w = a->argv[i];
    if (!strcmp(w, "--resume") || !strcmp(w, "--init")) {
      i++;
      continue;
    }
    if (!strncmp(w, "--resume=", 9) || !strncmp(w, "--init=", 7)) continue;
    fputc(' ', f);
    put_shell_word(f, w);
  }
  fputs(" --resume ", f);
  put_shell_word(f, checkpoint);
  fputc('\n', f);
}

/* ------------------------------------------------------------------- data parallelism */

#ifdef BPCC_HAVE_MPI
/* The start-up check of a data-parallel run (docs/distributed.md, "Consistency"): every
 * rank hashes what it compiled — bpcc's version, the kernel plans of the step (the IR it
 * compiles, with its locations), the code options, the parameter layout, the optimizer,
 * the precision, the loss scaling and the batch — and, apart, the run's settings and data;
 * both are compared with rank 0's before the first step. Ranks running another binary,
 * model file, option or data set fail here, together, with a message naming them. */
static int dist_check_start(BprtDist *dist, const Compilation *c, const bprt_model_desc *desc, const BprtTrainOptions *o,
                            const TrainArgs *a, const BprtDataset *train, const BprtDataset *val, double timeout) {
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  if (!f) return bprt_set_error("the start-up check: out of memory");
  char code[400];
  fprintf(f, "bpcc %s\n", BPCC_VERSION);
  if (c->kgrad) kernel_plan_print(f, c->kgrad);
  if (c->kfwd) kernel_plan_print(f, c->kfwd);
  fprintf(f, "%s\nbatch %" PRId64 " precision %d loss_scale %d %.17g optimizer %d", pipeline_describe(c, code, sizeof code),
          o->batch, (int)c->precision, c->loss_scale_mode, c->loss_scale, (int)c->optimizer.kind);
  for (int h = 0; h < BPRT_H__COUNT; h++) fprintf(f, " %.17g", c->optimizer.hyper[h]);
  for (int i = 0; i < desc->nparams; i++) {
    const bprt_param_desc *p = &desc->params[i];
    fprintf(f, "\n%s %d %" PRId64 " %d", p->name, p->rank, p->offset, p->trainable);
    for (int k = 0; k < p->rank; k++) fprintf(f, " %" PRId64, p->dims[k]);
  }
  fclose(f);
  uint64_t h1 = bprt_dist_hash(UINT64_C(0xcbf29ce484222325), text, len);
  free(text);
  char line[1024];   /* bprt_dist_agree keeps its first 239 characters */
  snprintf(line, sizeof line, "bpcc %s, model %s of %s, batch %" PRId64 ", %s", BPCC_VERSION, desc->model_name, c->name,
           o->batch, code);
  if (bprt_dist_agree(dist, "the compiled step", h1, line, timeout)) return -1;
  /* the settings: everything else that decides the steps */
  char set[2000];
  const BprtSchedule *sc = &o->schedule;
  int n = snprintf(set, sizeof set, "data %s %" PRId64 " rows x %" PRId64 "; val %s %" PRId64 "; seed %" PRIu64 " epochs %" PRId64
                   " steps %" PRId64 " eval_every %" PRId64 " accumulate %" PRId64 " deterministic %d; schedule %s %.17g %" PRId64 " %.17g %" PRId64 " %.17g %" PRId64
                   " %.17g %" PRId64 " %.17g %" PRId64 " %.17g; resume %s; init %s",
                   train->source, train->n, train->nfeat, val ? val->source : "-", val ? val->n : 0, o->seed, o->epochs, o->steps,
                   o->eval_every, o->accumulate, (int)o->deterministic, bprt_schedule_names[sc->kind], sc->base_lr, sc->step_size, sc->gamma, sc->t_max, sc->eta_min,
                   sc->warmup, sc->factor, sc->patience, sc->threshold, sc->cooldown, sc->min_lr, a->resume ? a->resume : "-",
                   a->init ? a->init : "-");
  uint64_t h2 = bprt_dist_hash(UINT64_C(0xcbf29ce484222325), set, (size_t)(n < (int)sizeof set ? n : (int)sizeof set - 1));
  snprintf(line, sizeof line, "data %s (%" PRId64 " rows), seed %" PRIu64 ", %s %" PRId64 ", schedule %s", train->source,
           train->n, o->seed, o->steps > 0 ? "steps" : "epochs", o->steps > 0 ? o->steps : o->epochs,
           bprt_schedule_names[sc->kind]);
  return bprt_dist_agree(dist, "the training settings", h2, line, timeout);
}
#endif

/* ------------------------------------------------------------------- the command */

static int train_main(TrainArgs *ap, BprtDist *dist, int rank);

int cmd_train(int argc, char **argv) {
  TrainArgs a;
  int pr = parse_args(argc, argv, &a);
  if (pr == 2) {
    train_usage(stdout);
    return 0;
  }
  if (pr) return 1;
  /* Under mpirun (docs/distributed.md): MPI from here on, rank 0 alone prints, logs and
   * saves; a plain run never touches MPI. */
  int world = 0;
  bool launched = bprt_dist_launched(&world);
  BprtDist *dist = NULL;
  int rank = 0;
#ifdef BPCC_HAVE_MPI
  if (launched) {
    if (!(dist = bprt_dist_init(&argc, &argv))) {
      fprintf(stderr, "bpcc: error: %s\n", bprt_last_error());
      return 1;
    }
    rank = bprt_dist_rank(dist);
    bprt_dist_set_timeout(dist, a.has_timeout ? a.timeout : BPRT_DIST_TIMEOUT);
    if (rank > 0) {   /* quiet: no header, bar, lines, log or checkpoint */
      a.quiet = true;
      a.print_every = 0;
      a.log = NULL;
      a.log_steps = false;
    }
  }
#else
  if (launched && world != 1) {
    fprintf(stderr, "bpcc: error: bpcc train runs under mpirun (%d ranks), but this bpcc was built without MPI, so each "
                    "rank would train alone; rebuild it with Open MPI installed (Debian: openmpi-bin libopenmpi-dev; "
                    "docs/distributed.md)\n", world);
    return 1;
  }
#endif
  if (!dist && (a.has_timeout || a.has_bucket_mb)) {
    fprintf(stderr, "bpcc train: error: %s applies to a data-parallel run under mpirun; this one runs as one process\n",
            a.has_timeout ? "--timeout" : "--bucket-mb");
    return 1;
  }
  int status = train_main(&a, dist, rank);
#ifdef BPCC_HAVE_MPI
  if (dist) {
    if (status == 0 || status == 130) {
      if (bprt_dist_finalize(dist) == 0) return status;
      fprintf(stderr, "bpcc: error: %s\n", bprt_last_error());
    }
    bprt_dist_abort(dist, 1);
  }
#endif
  return status;
}

/* The run itself; under mpirun rank is this process's (dist, else NULL and 0). */
static int train_main(TrainArgs *ap, BprtDist *dist, int rank) {
  TrainArgs a = *ap;
  /* before anything is compiled or loaded, as --log's file is opened before the first step */
  if (rank == 0 && a.save && bprt_st_check_writable(a.save)) {   /* rank 0 alone writes it */
    fprintf(stderr, "bpcc: error: --save %s\n", bprt_last_error());
    return 1;
  }
  const char *from = a.resume ? a.resume : a.init;   /* readable, and a file, before compiling */
  if (from) {
    uint64_t size;
    int fd = bprt_open_regular(from, &size);
    if (fd < 0) {
      fprintf(stderr, "bpcc: error: %s: %s\n", a.resume ? "--resume" : "--init", bprt_last_error());
      return 1;
    }
    close(fd);
  }
  double t_start = seconds_now();
  a.po.runtime = true;
  Compilation c;
  pipeline_init(&c, a.file, &a.po);
  int status = 1;
  bprt_model *m = NULL;
  BprtDataset *train = NULL, *val = NULL;
  if (!pipeline_run(&c, STAGE_CHECK)) goto done;   /* after diagnostics, only the diagnostics */
  const TrainSpec *ts = &c.model->train;
  BprtTrainOptions o;
  bprt_train_options_defaults(&o);
  o.epochs = a.has_epochs ? a.epochs : ts->epochs;
  /* the command line overrides the block: --epochs a block's steps, --steps its epochs */
  o.steps = a.has_steps ? a.steps : a.has_epochs ? 0 : ts->steps;
  o.eval_every = a.eval_every;
  o.batch = a.po.batch > 0 ? a.po.batch : ts->batch;
  o.seed = a.has_seed ? a.seed : ts->seed;
  o.save_path = rank == 0 ? a.save : NULL;
  o.deterministic = a.deterministic;
  if (a.accumulate > 0) o.accumulate = a.accumulate;
  o.save_every = a.save_every;
  o.resume_path = a.resume;
  o.log_path = a.log;
  o.log_steps = a.log_steps;
  o.watch = a.po.watch;
  o.quiet = a.quiet;
  o.print_every = a.print_every;
  o.progress_out = stderr;
  Status st = {!a.quiet && !a.po.print_after && isatty(STDERR_FILENO), false, 0};
  o.model_file = c.name;
  if (resolve_optimizer(ts, &a, &c.opt.optimizer) ||
      resolve_schedule(ts, &a, c.opt.optimizer.hyper[BPRT_H_LR], o.steps > 0 ? o.steps : o.epochs, &o.schedule))
    goto done;
  c.opt.optimizer_set = true;
  if (!args_apply_threads(&a.pa)) goto done;
  status_show(&st, "loading", a.data);
  int loaded = load_data(&a, o.seed, &train, &val);
  status_done(&st);
  if (loaded) {
    fprintf(stderr, "bpcc: error: %s\n", bprt_last_error());
    goto done;
  }
  if (a.eval_every && o.steps == 0) {
    fprintf(stderr, "bpcc: error: --eval-every needs a run by steps (--steps N or `steps N` in the train block); "
                    "a run by epochs validates after each epoch\n");
    goto done;
  }
  if (train->text && o.steps == 0) {
    fprintf(stderr, "bpcc: error: %s: text data has no epochs: train it by steps (--steps N, or `steps N` in the train "
                    "block)\n", a.data);
    goto done;
  }
  if (!train->text && o.batch > train->n) {   /* one batch of every row: the same steps, buffers that fit */
    char rows[64];
    if (!a.quiet)
      fprintf(stderr, "bpcc: note: batch %" PRId64 " is larger than the %s; training with batch %" PRId64
              " (one batch per epoch)\n", o.batch, bprt_fmt_counted(rows, sizeof rows, train->n, "training row", NULL),
              train->n);
    o.batch = train->n;
  }
  c.opt.batch = o.batch;   /* the memory (and a --mem-budget) is planned at the batch that runs */
  o.on_nonfinite = nonfinite_first;
  o.nonfinite_ctx = &c;
  status_show(&st, "compiling", c.name);
  bool compiled = pipeline_run(&c, STAGE_MEMORY) && mem_check_fits(&c, o.batch, "train", true) &&
                  pipeline_run(&c, STAGE_MACHINE);
  status_done(&st);
  if (!compiled) goto done;
  double t_compile = 0;
  for (int s = STAGE_LOWER; s < STAGE__COUNT; s++) t_compile += c.seconds[s];
  const bprt_model_desc *desc = cg_model_desc(c.cg);
  if (bprt_train_bind_text(desc, train) || (val && bprt_train_bind_text(desc, val)) ||
      bprt_train_check_data(desc, train) || (val && bprt_train_check_data(desc, val))) {
    fprintf(stderr, "bpcc: error: %s\n", bprt_last_error());
    goto done;
  }
  m = bprt_model_create(desc, o.seed);
  if (!m || (a.init && bprt_model_load_weights(m, a.init))) {
    fprintf(stderr, "bpcc: error: %s\n", bprt_last_error());
    goto done;
  }
#ifdef BPCC_HAVE_MPI
  if (dist) {   /* the ranks compare what they compiled, then train together */
    double timeout = (a.has_timeout ? a.timeout : BPRT_DIST_TIMEOUT) * BPRT_DIST_START_FACTOR;
    o.comm = bprt_dist_comm(dist, desc, bprt_model_grads(m), a.has_bucket_mb ? a.bucket_mb : BPRT_DIST_BUCKET_MB);
    if (!o.comm || dist_check_start(dist, &c, desc, &o, &a, train, val, timeout)) {
      /* the hashes are gathered by every rank: rank 0 alone says how they differ */
      if (rank == 0 || !o.comm) fprintf(stderr, "bpcc: error: %s\n", bprt_last_error());
      goto done;
    }
  }
#else
  (void)dist;
#endif
  const double *hyper = c.optimizer.hyper;
  int64_t planned = pipeline_memory_at(&c, o.batch).total;
  char f1[64], f2[64];
  if (!a.quiet) {
    char sb[32];
    /* on a terminal each line fits its width (bprt_put_line); in a log, one line each */
    char line[5000];
    snprintf(line, sizeof line, "bpcc train: model %s (%s) from %s, compiled in %s (set-up %s)", desc->model_name,
             bprt_fmt_counted(f1, sizeof f1, param_count(desc), "parameter", NULL), c.name,
             bprt_fmt_duration(f2, sizeof f2, t_compile), bprt_fmt_duration(sb, sizeof sb, seconds_now() - t_start));
    bprt_put_line(stdout, line, 4);
    size_t n;
    if (train->text)   /* "data text:f.txt: 90,000 training bytes, 10,000 validation bytes, seq 64" */
      n = (size_t)snprintf(line, sizeof line, "  data text:%s: %s, %s in %s of %" PRId64 " + 1, vocabulary 256",
                           train->text->path, bprt_fmt_counted(f1, sizeof f1, train->text->split, "training byte", NULL),
                           bprt_fmt_counted(f2, sizeof f2, train->text->size - train->text->split, "validation byte", NULL),
                           bprt_fmt_counted((char[64]){0}, 64, val ? val->n : 0, "window", NULL), train->text->seq);
    else
      n = (size_t)snprintf(line, sizeof line, "  data %s: %s", train->source,
                           bprt_fmt_counted(f1, sizeof f1, train->n, "row", NULL));
    if (val && !train->text)
      snprintf(line + n, sizeof line - n, "; validation %s: %s", val->source,
               bprt_fmt_counted(f1, sizeof f1, val->n, "row", NULL));
    bprt_put_line(stdout, line, 4);
    n = (size_t)snprintf(line, sizeof line, "  %s(lr=%g", bprt_optimizers[c.optimizer.kind].name, hyper[BPRT_H_LR]);
    if (hyper[BPRT_H_WEIGHT_DECAY] > 0)
      n += (size_t)snprintf(line + n, sizeof line - n, ", weight_decay=%g", hyper[BPRT_H_WEIGHT_DECAY]);
    if (hyper[BPRT_H_CLIP] > 0) n += (size_t)snprintf(line + n, sizeof line - n, ", clip=%g", hyper[BPRT_H_CLIP]);
    n += (size_t)snprintf(line + n, sizeof line - n, "), schedule %s, batch %" PRId64 ", ", bprt_schedule_names[o.schedule.kind],
                          o.batch);
    if (o.steps > 0 && o.eval_every > 0)
      n += (size_t)snprintf(line + n, sizeof line - n, "steps %" PRId64 " (validation every %" PRId64 ")", o.steps,
                            o.eval_every);
    else if (o.steps > 0) n += (size_t)snprintf(line + n, sizeof line - n, "steps %" PRId64, o.steps);
    else n += (size_t)snprintf(line + n, sizeof line - n, "epochs %" PRId64, o.epochs);
    n += (size_t)snprintf(line + n, sizeof line - n, ", seed %" PRIu64 ", %d threads", o.seed, bprt_get_threads());
    if (desc->loss_scale_mode == BPRT_LOSS_SCALE_DYNAMIC)
      snprintf(line + n, sizeof line - n, ", loss scale dynamic from %g", desc->loss_scale);
    else if (desc->loss_scale_mode == BPRT_LOSS_SCALE_FIXED)
      snprintf(line + n, sizeof line - n, ", loss scale %g (fixed)", desc->loss_scale);
    bprt_put_line(stdout, line, 4);
    char code[400];
    snprintf(line, sizeof line, "  code: %s", pipeline_describe(&c, code, sizeof code));
    bprt_put_line(stdout, line, 4);
    if (a.init) {
      snprintf(line, sizeof line, "  parameters from %s (--init); optimizer state fresh", a.init);
      bprt_put_line(stdout, line, 4);
    }
    if (c.opt.mem_budget > 0)
      printf("  memory %s planned at batch %" PRId64 " (budget %s)\n", memplan_format_size(planned, sb, sizeof sb), o.batch,
             memplan_format_size(c.opt.mem_budget, (char[32]){0}, 32));
#ifdef BPCC_HAVE_MPI
    if (o.comm) {
      int64_t g = o.batch * o.comm->size;
      snprintf(line, sizeof line, "  data-parallel: %d ranks (%s), global batch %" PRId64 " = %d x %" PRId64
               ", gradients in buckets of %g MiB, timeout %g s", o.comm->size, bprt_dist_library(),
               g < train->n ? g : train->n, o.comm->size, o.batch, a.has_bucket_mb ? a.bucket_mb : BPRT_DIST_BUCKET_MB,
               a.has_timeout ? a.timeout : BPRT_DIST_TIMEOUT);
      bprt_put_line(stdout, line, 4);
    }
#endif
    fflush(stdout);
  }
  BprtTrainResult r;
  char ipath[4096];
  interrupted_path(a.file, desc->model_name, ipath, sizeof ipath);
  o.stop = &stop_signal;
  o.interrupt_path = rank > 0 ? NULL : a.save ? a.save : ipath;
  stop_quiet = rank > 0;
  double t0 = seconds_now();
  StopHandlers handlers;
  stop_handlers_install(&handlers);
  int trc = bprt_train(m, train, val, &o, &r);
  stop_handlers_restore(&handlers);
  if (trc) {
    /* a non-finite step stops every rank alike: rank 0 says so; any other error is this
     * rank's own (a rank that did not join names itself in it) */
    if (rank > 0 && !r.nonfinite) fprintf(stderr, "bpcc: rank %d: error: %s\n", rank, bprt_last_error());
    else if (rank == 0) fprintf(stderr, "bpcc: error: %s\n", bprt_last_error());
    goto done;
  }
  if (rank > 0) {   /* quiet: rank 0 reports */
    status = r.interrupted ? 130 : 0;
    goto done;
  }
  if (r.interrupted && o.steps > 0) {
    fflush(stdout);
    fprintf(stderr, "bpcc: %s at step %" PRId64 " of %" PRId64 "; checkpoint written to %s\nbpcc: resume with: ",
            stop_signal == SIGTERM ? "terminated" : "interrupted", r.steps, o.steps, r.checkpoint);
    print_resume_command(stderr, &a, r.checkpoint, o.comm ? o.comm->size : 1);
    status = 130;
    goto done;
  }
  if (r.interrupted) {
    fflush(stdout);
    fprintf(stderr, "bpcc: %s at step %" PRId64 " (epoch %" PRId64 " of %" PRId64 ", batch %" PRId64 " of %" PRId64
            "); checkpoint written to %s\nbpcc: resume with: ",
            stop_signal == SIGTERM ? "terminated" : "interrupted", r.steps, r.stop_epoch, o.epochs, r.stop_batch,
            r.stop_batches, r.checkpoint);
    print_resume_command(stderr, &a, r.checkpoint, o.comm ? o.comm->size : 1);
    status = 130;
    goto done;
  }
  if (o.steps > 0 && r.last.step == 0) {
    printf("nothing to train: %s has %s done, --steps is %" PRId64 "\n", a.resume,
           bprt_fmt_counted(f1, sizeof f1, r.steps, "step", NULL), o.steps);
    status = 0;
    goto done;
  }
  if (o.steps == 0 && r.last.epoch == 0) {
    printf("nothing to train: %s has %s done, --epochs is %" PRId64 "\n", a.resume,
           bprt_fmt_counted(f1, sizeof f1, r.epochs_done, "epoch", NULL), o.epochs);
    status = 0;
    goto done;
  }
  char f3[64], f4[64];
  char line[5000];
  size_t n;
  if (o.steps > 0)
    n = (size_t)snprintf(line, sizeof line, "trained %s in %s: loss %s",
                         bprt_fmt_counted(f2, sizeof f2, r.steps, "step", NULL),
                         bprt_fmt_duration(f3, sizeof f3, seconds_now() - t0), bprt_fmt_sig(f4, sizeof f4, r.last.loss, 4));
  else
    n = (size_t)snprintf(line, sizeof line, "trained %s (%s) in %s: loss %s",
                         bprt_fmt_counted(f1, sizeof f1, r.epochs_done, "epoch", NULL),
                         bprt_fmt_counted(f2, sizeof f2, r.steps, "step", NULL),
                         bprt_fmt_duration(f3, sizeof f3, seconds_now() - t0), bprt_fmt_sig(f4, sizeof f4, r.last.loss, 4));
#define ADD(...) n += (size_t)snprintf(line + n, n < sizeof line ? sizeof line - n : 0, __VA_ARGS__)
  if (!isnan(r.last.accuracy)) ADD(", accuracy %.2f%%", 100 * r.last.accuracy);
  if (!isnan(r.last.val_loss) && train->text)
    ADD(", val_loss %s nats/char (%s bits/char)", bprt_fmt_sig(f1, sizeof f1, r.last.val_loss, 4),
        bprt_fmt_sig(f2, sizeof f2, r.last.val_loss / log(2.0), 4));
  else if (!isnan(r.last.val_loss)) ADD(", val_loss %s", bprt_fmt_sig(f1, sizeof f1, r.last.val_loss, 4));
  if (!isnan(r.last.val_accuracy)) ADD(", val_accuracy %.2f%%", 100 * r.last.val_accuracy);
  if (desc->loss_scale_mode != BPRT_LOSS_SCALE_OFF)   /* the steps of this run loss scaling skipped */
    ADD("; %s skipped, loss scale %g", bprt_fmt_counted(f1, sizeof f1, r.skipped, "step", NULL), bprt_model_loss_scale(m));
  if (a.save) ADD("; saved %s", a.save);
#undef ADD
  bprt_put_line(stdout, line, 4);
  bprt_model_memory mem = bprt_model_memory_used(m);
  if (a.po.watch)   /* what the model allocated, beside `bpcc --mem-report`'s prediction */
    printf("memory: measured %" PRId64 " bytes at batch %" PRId64 " (workspace %" PRId64 "); planned %" PRId64
           " bytes (bpcc --mem-report --watch --batch %" PRId64 ")\n",
           mem.total, o.batch, mem.workspace, planned, o.batch);
  if (c.opt.mem_budget > 0 && mem.total > c.opt.mem_budget) {
    fprintf(stderr, "bpcc: warning: the model allocated %" PRId64 " bytes, more than --mem-budget %" PRId64
            " (a batch larger than %" PRId64 " ran)\n", mem.total, c.opt.mem_budget, o.batch);
  }
  status = 0;
done:
  bprt_model_destroy(m);
  bprt_dataset_free(train);
  bprt_dataset_free(val);
  pipeline_release(&c);
  return status;
}
