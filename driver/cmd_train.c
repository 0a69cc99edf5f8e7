/* driver/cmd_train.c — `bpcc train FILE.bp`: JIT-compile the model and train it.
 *
 *   bpcc train FILE.bp [--data SPEC] [--val SPEC | --val-split F] [--epochs N] [--batch N]
 *                      [--lr X] [--optimizer NAME(k = v, ...)] [--schedule ...] [--seed N]
 *                      [--threads N] [--save PATH] [--save-every N] [--resume PATH]
 *                      [--log FILE.csv] [--log-steps] [--watch] [--quiet] [--model NAME]
 *
 * The settings come in three layers, each overriding the one before: PyTorch's defaults
 * for the optimizer, the model's `train` block, the command line (docs/training.md).
 * Then: autodiff + simplification (passes/), one LLVM module with forward, grad and step
 * (codegen/), ORC JIT, the model object (runtime/model.c) and the loop (runtime/train.c).
 * drv_build_jit is shared with `bpcc eval`. */
#include "runtime/train.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "codegen/codegen.h"
#include "driver/driver.h"
#include "passes/passes.h"

/* ------------------------------------------------------------- building the model */

struct CgModel *drv_build_jit(DrvCompilation *c, int optimizer, const double *hyper, int threads) {
  if (!c->func) {
    fprintf(stderr, "bpcc: error: %s has no model to train\n", c->name);
    return NULL;
  }
  if (!cg_check_runtime_f32(c->func)) return NULL;
  int errors = diag_error_count();
  PassOptions po;
  pass_options_default(&po);
  char gname[256];
  snprintf(gname, sizeof gname, "%s.grad", c->func->name);
  Func *grad = ir_func_clone(c->func, gname);
  grad = pass_run_pipeline(grad, &po);
  if (!grad || diag_error_count() != errors) return NULL;
  grad = drv_checkpoint(c, grad, NULL);   /* --checkpoint, --mem-budget (cmd_memreport.c) */
  if (!grad) return NULL;
  bprt_optimizer_config opt;
  bprt_optimizer_init(&opt, optimizer);
  memcpy(opt.hyper, hyper, sizeof opt.hyper);
  CgOptions co = {"native", 3, threads, false, drv_codegen.profile};
  CgModel *m = cg_model_build(c->func, grad, &opt, &co);
  if (!m) return NULL;
  if (cg_model_jit(m) != 0) {
    cg_model_free(m);
    return NULL;
  }
  return m;
}

/* ------------------------------------------------------------------- options */

typedef struct {
  const char *file, *model;
  const char *data, *val, *optimizer, *schedule, *save, *resume, *log;
  double val_split, lr;
  int64_t epochs, batch, save_every, threads;
  uint64_t seed;
  bool has_epochs, has_batch, has_seed, has_lr, has_val_split;
  bool log_steps, watch, quiet;
} TrainArgs;

static int arg_error(const char *fmt, const char *a) {
  fprintf(stderr, "bpcc: error: ");
  fprintf(stderr, fmt, a);
  fprintf(stderr, "\nTry 'bpcc train --help' for more information.\n");
  return 1;
}

static bool parse_int(const char *opt, const char *s, int64_t lo, int64_t *out) {
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (end == s || *end || errno || v < lo) {
    fprintf(stderr, "bpcc: error: %s '%s': expected an integer >= %lld\n", opt, s, (long long)lo);
    return false;
  }
  *out = v;
  return true;
}

static bool parse_real(const char *opt, const char *s, double *out) {
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (end == s || *end || errno || !isfinite(v)) {
    fprintf(stderr, "bpcc: error: %s '%s': expected a number\n", opt, s);
    return false;
  }
  *out = v;
  return true;
}

static void train_usage(FILE *o) {
  fprintf(o,
          "usage: bpcc train FILE.bp [options]\n"
          "JIT-compile the model of FILE.bp and train it. Command-line values override the\n"
          "model's train block; docs/training.md lists every default.\n"
          "\n"
          "  --data SPEC          training data: mnist:DIR, idx:IMAGES,LABELS,\n"
          "                       csv:PATH[:label=COL,header=1], npy:X.npy,Y.npy,\n"
          "                       spiral[:n=1000,classes=3,noise=0.2], xor[:n=200,noise=0.2],\n"
          "                       blobs[:n=300,classes=3,dim=2,std=1.0]          (required)\n"
          "  --val SPEC           validation data (default: the SPEC's own test set, as\n"
          "                       mnist's t10k files; else none)\n"
          "  --val-split F        hold out a fraction F of the training data instead\n"
          "  --epochs N           epochs in all (train block, else 1)\n"
          "  --batch N            rows per step; the last batch may be partial (else 32;\n"
          "                       at most the training rows)\n"
          "  --checkpoint=MODE    none, sqrt or auto: recompute activations in backward\n"
          "  --mem-budget SIZE    the most bytes a step may use (e.g. 64MiB); implies auto\n"
          "  --lr X               learning rate (after the optimizer's own lr)\n"
          "  --optimizer S        NAME(k = v, ...): sgd, momentum, adagrad, rmsprop, adam,\n"
          "                       adamw with torch.optim's argument names, and clip\n"
          "  --schedule S         constant | step(step_size, gamma) | cosine(T_max, eta_min,\n"
          "                       warmup) | plateau(factor, patience, threshold, cooldown,\n"
          "                       min_lr); set once per epoch\n"
          "  --seed N             initialization, shuffles, dropout (train block, else 0)\n"
          "  --threads N          worker threads (default: one per CPU)\n"
          "  --save PATH          write a checkpoint (safetensors) at the end ...\n"
          "  --save-every N       ... and every N epochs\n"
          "  --resume PATH        continue from a checkpoint, bit for bit\n"
          "  --log FILE.csv       one CSV row per epoch ...\n"
          "  --log-steps          ... and one per step\n"
          "  --watch              per epoch: gradient norm and update/weight ratio of each\n"
          "                       parameter, mean and std of each output\n"
          "  --quiet              only errors and the final line\n"
          "  --model NAME         the model to train when the file has several\n");
}

/* "--opt VALUE" or "--opt=VALUE": the value, or NULL (reported) when missing. */
static const char *opt_value(int argc, char **argv, int *i, const char *name) {
  const char *a = argv[*i];
  size_t n = strlen(name);
  if (strncmp(a, name, n) != 0) return NULL;
  if (a[n] == '=') return a + n + 1;
  if (a[n] != 0) return NULL;
  if (*i + 1 >= argc) {
    arg_error("%s needs a value", name);
    return (const char *)-1;
  }
  return argv[++*i];
}

#define BAD_VALUE ((const char *)-1)

/* 0 parsed, 1 error (reported), 2 --help printed. */
static int parse_args(int argc, char **argv, TrainArgs *t, bool eval) {
  memset(t, 0, sizeof *t);
  t->threads = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v;
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) return 2;
#define STR(NAME, FIELD)                                   \
  if ((v = opt_value(argc, argv, &i, NAME)) != NULL) {     \
    if (v == BAD_VALUE) return 1;                          \
    t->FIELD = v;                                          \
    continue;                                              \
  }
#define INT(NAME, FIELD, LO, FLAG)                                   \
  if ((v = opt_value(argc, argv, &i, NAME)) != NULL) {               \
    if (v == BAD_VALUE || !parse_int(NAME, v, LO, &t->FIELD)) return 1; \
    FLAG;                                                            \
    continue;                                                        \
  }
    STR("--data", data)
    STR("--model", model)
    INT("--batch", batch, 1, t->has_batch = true)
    INT("--threads", threads, 1, (void)0)
    if (eval) {
      STR("--weights", resume)
    } else {
      STR("--val", val)
      STR("--optimizer", optimizer)
      STR("--schedule", schedule)
      STR("--save", save)
      STR("--resume", resume)
      STR("--log", log)
      INT("--epochs", epochs, 1, t->has_epochs = true)
      INT("--save-every", save_every, 1, (void)0)
      if ((v = opt_value(argc, argv, &i, "--seed")) != NULL) {
        int64_t s;
        if (v == BAD_VALUE || !parse_int("--seed", v, 0, &s)) return 1;
        t->seed = (uint64_t)s;
        t->has_seed = true;
        continue;
      }
      if ((v = opt_value(argc, argv, &i, "--lr")) != NULL) {
        if (v == BAD_VALUE || !parse_real("--lr", v, &t->lr)) return 1;
        if (!(t->lr > 0)) return arg_error("--lr '%s': must be > 0", v);
        t->has_lr = true;
        continue;
      }
      if ((v = opt_value(argc, argv, &i, "--val-split")) != NULL) {
        if (v == BAD_VALUE || !parse_real("--val-split", v, &t->val_split)) return 1;
        if (!(t->val_split > 0 && t->val_split < 1)) return arg_error("--val-split '%s': must be between 0 and 1", v);
        t->has_val_split = true;
        continue;
      }
      if ((!strncmp(a, "--checkpoint", 12) || !strncmp(a, "--mem-budget", 12)) && drv_mem_flag(a, argv, argc, &i))
        continue;   /* cmd_memreport.c */
      if (!strcmp(a, "--log-steps")) {
        t->log_steps = true;
        continue;
      }
      if (!strcmp(a, "--watch")) {
        t->watch = true;
        continue;
      }
      if (!strcmp(a, "--quiet")) {
        t->quiet = true;
        continue;
      }
    }
#undef STR
#undef INT
    if (a[0] == '-' && a[1]) return arg_error("unknown option '%s'", a);
    if (t->file) return arg_error("more than one input file ('%s')", a);
    t->file = a;
  }
  if (!t->file) return arg_error("%s", "no input file");
  if (!t->data) return arg_error("%s", "no data: give --data SPEC (e.g. --data spiral or --data mnist:DIR)");
  if (t->val && t->has_val_split) return arg_error("%s", "--val and --val-split exclude each other");
  if (t->log_steps && !t->log) return arg_error("%s", "--log-steps needs --log FILE.csv");
  if (t->save_every && !t->save) return arg_error("%s", "--save-every needs --save PATH");
  return 0;
}

/* ------------------------------------------------------- settings: train block + CLI */

/* The optimizer and its hyperparameters: the train block (which holds PyTorch's
 * defaults for what it does not set), then --optimizer, then --lr. */
static int resolve_optimizer(const TrainSpec *ts, const TrainArgs *a, int *kind, double *hyper) {
  *kind = ts->opt.kind;
  memcpy(hyper, ts->opt.hyper, sizeof ts->opt.hyper);
  bprt_optimizer_config d;
  if (a->optimizer) {
    BprtOptSpec o;
    if (bprt_optimizer_parse(a->optimizer, &o)) {
      fprintf(stderr, "bpcc: error: %s\n", bprt_last_error());
      return -1;
    }
    if (o.kind != *kind) { /* another optimizer: its own defaults; the block's clip stays */
      double clip = hyper[BPRT_H_CLIP];
      *kind = o.kind;
      bprt_optimizer_init(&d, *kind);
      memcpy(hyper, d.hyper, sizeof d.hyper);
      hyper[BPRT_H_CLIP] = clip;
    }
    bprt_optimizer_apply(&o, hyper);
  }
  if (a->has_lr) hyper[BPRT_H_LR] = a->lr;
  hyper[BPRT_H_STEP] = 1;
  return 0;
}

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
  if (ts->schedule == FE_SCHED_COSINE && ts->t_max == ts->epochs) s->t_max = epochs;
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

/* ------------------------------------------------- non-finite values: the first one */

/* The loop (runtime/train.c) sees a non-finite loss, output or gradient only after
 * loss_and_grad ran (before the update, so the model still holds the parameters the
 * step used). To name the tensor where it began, the failing batch is evaluated again
 * in the reference interpreter (ir/interp.c, f32 mode) with those parameters: forward,
 * loss and backward, as the
 * gradient IR computes them (`bpcc --emit=grad-ir`), lowered with every named binding
 * as an output so that a value can be called by its name. The first instruction, in
 * instruction order, with a NaN or infinite element is reported with its op, its name
 * and its DSL location. A batch of more than NONFINITE_ROWS rows is evaluated in pieces
 * of that many rows; the first piece that goes non-finite names the tensor. Dropout
 * masks are the interpreter's own (same rate, other bits). When the interpreter finds
 * nothing (an overflow only the compiled code's summation order produces), the loop's
 * own report stands, as it does for a parameter that only the update made non-finite. */
#define NONFINITE_ROWS 256

/* The name bound to value v: an output sink's (declared outputs and, lowered with
 * activations, every `name = expr`), else a leaf's own. */
static const char *value_name(const Func *g, int32_t v) {
  for (int32_t j = v + 1; j < g->ninsts; j++)
    if (g->insts[j].op == OP_OUTPUT && g->insts[j].args[0] == v) return g->insts[j].name;
  return g->insts[v].name;
}

static void loc_text(SrcLoc l, char *buf, size_t n) {
  const char *file = l.file >= 0 ? diag_file_name(l.file) : NULL;
  if (file) snprintf(buf, n, "%s:%d:%d", file, (int)l.line, (int)l.col);
  else snprintf(buf, n, "?");
}

/* Describe instruction i of g, whose value holds the non-finite element x. */
static void describe_inst(const Func *g, int32_t i, double x, char *what, size_t n) {
  const Inst *in = &g->insts[i];
  const char *op = ir_ops[in->op].name, *name = value_name(g, i);
  const char *val = isnan(x) ? "nan" : x > 0 ? "inf" : "-inf";
  char loc[600];
  loc_text(in->loc, loc, sizeof loc);
  if (in->op == OP_PARAM) snprintf(what, n, "parameter '%s' before the update, at %s (%s)", name, loc, val);
  else if (in->op == OP_INPUT) snprintf(what, n, "input '%s' at %s (%s)", name, loc, val);
  else if (in->flags & IF_BACKWARD) {
    const char *through = in->from >= 0 && in->from < i ? value_name(g, in->from) : NULL;
    snprintf(what, n, "the %s of the backward pass (rule %s%s%s%s) at %s (%s)", op, in->rule ? in->rule : "?",
             through ? ", through '" : "", through ? through : "", through ? "'" : "", loc, val);
  } else if (name) snprintf(what, n, "'%s', the %s at %s (%s)", name, op, loc, val);
  else snprintf(what, n, "the %s at %s (%s)", op, loc, val);
}

/* The desc entry of the input or parameter called name, or -1. */
static int desc_input(const bprt_model_desc *d, const char *name) {
  for (int k = 0; k < d->ninputs; k++)
    if (name && !strcmp(d->inputs[k].name, name)) return k;
  return -1;
}

static int desc_param(const bprt_model_desc *d, const char *name) {
  for (int k = 0; k < d->nparams; k++)
    if (name && !strcmp(d->params[k].name, name)) return k;
  return -1;
}

/* Rows [r0, r0 + rows) of input k of the batch as an interpreter tensor of type t. */
static Tensor input_rows(const bprt_model_desc *d, int k, const BprtNonfiniteStep *s, const TensorType *t, int64_t r0,
                         int64_t rows) {
  TensorType rt = *t;
  for (int j = 0; j < rt.rank; j++)
    if (rt.dims[j] == DIM_BATCH) rt.dims[j] = rows;
  Tensor x = ir_tensor_new(&rt);
  if (d->inputs[k].is_label) {
    const int32_t *lab = (const int32_t *)s->inputs[k] + r0;
    for (int64_t r = 0; r < x.numel; r++) x.data[r] = lab[r];
  } else {
    int64_t per_row = rows > 0 ? x.numel / rows : 0;
    const float *src = (const float *)s->inputs[k] + r0 * per_row;
    for (int64_t e = 0; e < x.numel; e++) x.data[e] = src[e];
  }
  return x;
}

static bool first_nonfinite(void *ctx, const bprt_model_desc *d, const BprtNonfiniteStep *s, char *what, size_t n) {
  DrvCompilation *c = ctx;
  if (!c->model || !s->params || !s->inputs) return false;
  /* Lowering and the passes ran once already without complaint; the interpreter's own
   * errors (there should be none) must not interleave with the report. */
  FILE *quiet = fopen("/dev/null", "w");
  if (quiet) diag_set_output(quiet);
  bool found = false;
  Module *mod = ir_module_new();
  Func *g = drv_grad_func(fe_lower_ex(mod, c->model, true));
  int np = 0, nin = 0, j = 0;
  Tensor *params = NULL, *inputs = NULL;
  int *in_desc = NULL;
  bool ok = true;
  if (!g) goto done;
  for (int32_t i = 0; i < g->ninsts; i++) {
    if (g->insts[i].op == OP_PARAM) np++;
    if (g->insts[i].op == OP_INPUT && g->insts[i].iattr[0] + 1 > nin) nin = (int)g->insts[i].iattr[0] + 1;
  }
  params = bp_xmalloc(sizeof(Tensor) * (size_t)(np ? np : 1));
  inputs = bp_xmalloc(sizeof(Tensor) * (size_t)(nin ? nin : 1));
  in_desc = bp_xmalloc(sizeof(int) * (size_t)(nin ? nin : 1));
  memset(params, 0, sizeof(Tensor) * (size_t)(np ? np : 1));
  memset(inputs, 0, sizeof(Tensor) * (size_t)(nin ? nin : 1));
  for (int k = 0; k < nin; k++) in_desc[k] = -1;
  for (int32_t i = 0; i < g->ninsts && ok; i++) {
    const Inst *in = &g->insts[i];
    if (in->op == OP_INPUT) {
      in_desc[in->iattr[0]] = desc_input(d, in->name);
      if (in_desc[in->iattr[0]] < 0) ok = false;
    } else if (in->op == OP_PARAM) {
      int k = desc_param(d, in->name);
      if (k < 0) {
        ok = false;
        break;
      }
      params[j] = ir_tensor_new(ir_vtype(g, i));
      if (params[j].numel != numel_of_param(&d->params[k])) ok = false;
      for (int64_t e = 0; ok && e < params[j].numel; e++) params[j].data[e] = s->params[d->params[k].offset + e];
      j++;
    }
  }
  for (int k = 0; k < nin; k++)
    if (in_desc[k] < 0) ok = false;
  for (int64_t r0 = 0; ok && !found && r0 < s->rows; r0 += NONFINITE_ROWS) {
    int64_t rows = s->rows - r0 < NONFINITE_ROWS ? s->rows - r0 : NONFINITE_ROWS;
    for (int32_t i = 0; i < g->ninsts; i++)
      if (g->insts[i].op == OP_INPUT)
        inputs[g->insts[i].iattr[0]] = input_rows(d, in_desc[g->insts[i].iattr[0]], s, ir_vtype(g, i), r0, rows);
    Interp *it = ir_interp_run(g, INTERP_F32, rows, inputs, nin, params, np, s->seed, (uint64_t)s->step);
    for (int k = 0; k < nin; k++) ir_tensor_free(&inputs[k]);
    if (!it) break;
    for (int32_t i = 0; i < g->ninsts && !found; i++) {
      const Inst *in = &g->insts[i];
      if ((ir_ops[in->op].flags & OPF_SINK) || ir_vtype(g, i)->dtype == DT_LABEL) continue;
      const Tensor *t = ir_interp_value(it, i);
      for (int64_t e = 0; t && e < t->numel; e++)
        if (!isfinite(t->data[e])) {
          describe_inst(g, i, t->data[e], what, n);
          found = true;
          break;
        }
    }
    ir_interp_free(it);
  }
done:
  for (int k = 0; params && k < np; k++) ir_tensor_free(&params[k]);
  bp_free(params);
  bp_free(inputs);
  bp_free(in_desc);
  ir_module_free(mod);
  diag_set_output(NULL);
  if (quiet) fclose(quiet);
  return found;
}

/* ------------------------------------------------------------------- the command */

int cmd_train(int argc, char **argv) {
  TrainArgs a;
  int pr = parse_args(argc, argv, &a, false);
  if (pr == 2) {
    train_usage(stdout);
    return 0;
  }
  if (pr) return 1;
  double t_start = seconds_now();
  DrvCompilation c;
  drv_lower_activations = a.watch;   /* --watch reports every named activation */
  bool compiled = drv_compile(&c, a.file, DRV_LOWER, a.model);
  if (!compiled || !c.model) {   /* after diagnostics, only the diagnostics */
    if (compiled) fprintf(stderr, "bpcc: error: %s has no model to train\n", c.name);
    drv_release(&c);
    return 1;
  }
  const TrainSpec *ts = &c.model->train;
  BprtTrainOptions o;
  bprt_train_options_defaults(&o);
  o.epochs = a.has_epochs ? a.epochs : ts->epochs;
  o.batch = a.has_batch ? a.batch : ts->batch;
  o.seed = a.has_seed ? a.seed : ts->seed;
  o.save_path = a.save;
  o.save_every = a.save_every;
  o.resume_path = a.resume;
  o.log_path = a.log;
  o.log_steps = a.log_steps;
  o.watch = a.watch;
  o.quiet = a.quiet;
  o.model_file = c.name;
  int kind;
  double hyper[BPRT_H__COUNT];
  int status = 1;
  CgModel *cm = NULL;
  bprt_model *m = NULL;
  BprtDataset *train = NULL, *val = NULL;
  if (resolve_optimizer(ts, &a, &kind, hyper) || resolve_schedule(ts, &a, hyper[BPRT_H_LR], o.epochs, &o.schedule))
    goto done;
  if (a.threads > 0 && bprt_set_threads((int)a.threads)) {
    fprintf(stderr, "bpcc: error: --threads %lld: %s\n", (long long)a.threads, bprt_last_error());
    goto done;
  }
  if (load_data(&a, o.seed, &train, &val)) {
    fprintf(stderr, "bpcc: error: %s\n", bprt_last_error());
    goto done;
  }
  if (o.batch > train->n) {   /* one batch of every row: the same steps, buffers that fit */
    if (!a.quiet)
      fprintf(stderr, "bpcc: note: batch %" PRId64 " is larger than the %" PRId64 " training row%s; training with batch %" PRId64
              " (one batch per epoch)\n", o.batch, train->n, train->n == 1 ? "" : "s", train->n);
    o.batch = train->n;
  }
  o.on_nonfinite = first_nonfinite;
  o.nonfinite_ctx = &c;
  double t_compile = seconds_now();
  cm = drv_build_jit(&c, kind, hyper, (int)a.threads);
  t_compile = seconds_now() - t_compile;
  if (!cm) goto done;
  const bprt_model_desc *desc = cg_model_desc(cm);
  if (bprt_train_check_data(desc, train) || (val && bprt_train_check_data(desc, val))) {
    fprintf(stderr, "bpcc: error: %s\n", bprt_last_error());
    goto done;
  }
  m = bprt_model_create(desc, o.seed);
  if (!m) {
    fprintf(stderr, "bpcc: error: %s\n", bprt_last_error());
    goto done;
  }
  if (!a.quiet) {
    printf("bpcc train: model %s (%" PRId64 " parameters) from %s, compiled in %.2fs (set-up %.2fs)\n",
           desc->model_name, param_count(desc), c.name, t_compile, seconds_now() - t_start);
    printf("  data %s: %" PRId64 " rows", train->source, train->n);
    if (val) printf("; validation %s: %" PRId64 " rows", val->source, val->n);
    printf("\n  %s(lr=%g", bprt_optimizers[kind].name, hyper[BPRT_H_LR]);
    if (hyper[BPRT_H_WEIGHT_DECAY] > 0) printf(", weight_decay=%g", hyper[BPRT_H_WEIGHT_DECAY]);
    if (hyper[BPRT_H_CLIP] > 0) printf(", clip=%g", hyper[BPRT_H_CLIP]);
    printf("), schedule %s, batch %" PRId64 ", epochs %" PRId64 ", seed %" PRIu64 ", %d threads\n",
           bprt_schedule_names[o.schedule.kind], o.batch, o.epochs, o.seed, bprt_get_threads());
    fflush(stdout);
  }
  BprtTrainResult r;
  double t0 = seconds_now();
  if (bprt_train(m, train, val, &o, &r)) {
    fprintf(stderr, "bpcc: error: %s\n", bprt_last_error());
    goto done;
  }
  if (r.last.epoch == 0) {
    printf("nothing to train: %s has %" PRId64 " epochs done, --epochs is %" PRId64 "\n", a.resume, r.epochs_done,
           o.epochs);
    status = 0;
    goto done;
  }
  printf("trained %" PRId64 " epochs (%" PRId64 " steps) in %.1fs: loss %.4f", r.epochs_done, r.steps, seconds_now() - t0,
         r.last.loss);
  if (!isnan(r.last.accuracy)) printf(", accuracy %.2f%%", 100 * r.last.accuracy);
  if (!isnan(r.last.val_loss)) printf(", val_loss %.4f", r.last.val_loss);
  if (!isnan(r.last.val_accuracy)) printf(", val_accuracy %.2f%%", 100 * r.last.val_accuracy);
  if (a.save) printf("; saved %s", a.save);
  printf("\n");
  if (a.watch) {   /* the planned workspace, as allocated, beside `bpcc --mem-report`'s prediction */
    const bprt_model_desc *d = cg_model_desc(cm);
    printf("workspace: measured %" PRId64 " bytes at batch %" PRId64 "; predicted %" PRId64 " bytes "
           "(bpcc --mem-report --watch --batch %" PRId64 ")\n",
           bprt_model_workspace_bytes(m), o.batch, d->ws_fixed + d->ws_per_batch * o.batch, o.batch);
  }
  status = 0;
done:
  bprt_model_destroy(m);
  bprt_dataset_free(train);
  bprt_dataset_free(val);
  if (cm) cg_model_free(cm);
  drv_release(&c);
  return status;
}
