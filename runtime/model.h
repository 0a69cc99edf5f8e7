/* runtime/model.h — the contract between generated code and the runtime.
 *
 * A compiled model is a descriptor (bprt_model_desc: tables of parameters, inputs,
 * outputs, block sizes) plus four entry points with one signature, void fn(bprt_frame *):
 *
 *   forward  inputs -> outputs, and *loss when frame->loss is set (inference mode:
 *            dropout is the identity; the loss needs the labels)
 *   grad     inputs -> outputs, *loss, grads block    (gradients overwritten, not added)
 *   step     grad, then the optimizer update of the params block in place
 *   update   the optimizer update alone, from the grads block (step = grad + update)
 *
 * The JIT (`bpcc train`) builds a descriptor in memory and looks the entry points up in
 * the JIT; an AOT shared library (`bpcc model.bp -o m.so`) holds the descriptor as a
 * constant and the C ABI (m.h: m_create, m_train_step, ...) wraps bprt_model_*.
 * Parameters, gradients and optimizer state each live in one float block; the layout
 * (offsets, in floats, 64-byte aligned) is fixed at compile time. Activations and
 * temporaries live in one workspace whose size is fixed + per_batch * batch bytes.
 *
 * Generated code calls nothing by symbol except libm-free intrinsics: the runtime
 * services it needs (parallel-for) come through function pointers in the frame, so the
 * same object works in the JIT and in a shared library. */
#ifndef BPCC_RUNTIME_MODEL_H
#define BPCC_RUNTIME_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BPRT_MODEL_MAX_RANK 4
#define BPRT_DIM_BATCH (-1)

/* Optimizer hyperparameters, read by the update kernel at run time from frame->hyper
 * (so that schedules and set_lr work without recompiling). Names and defaults follow
 * PyTorch's torch.optim. */
enum {
  BPRT_H_LR,            /* learning rate (after the schedule) */
  BPRT_H_MOMENTUM,      /* sgd momentum / rmsprop momentum */
  BPRT_H_DAMPENING,
  BPRT_H_NESTEROV,      /* 0 or 1 */
  BPRT_H_BETA1,
  BPRT_H_BETA2,
  BPRT_H_EPS,
  BPRT_H_WEIGHT_DECAY,  /* L2 added to the gradient; decoupled for adamw */
  BPRT_H_ALPHA,         /* rmsprop smoothing */
  BPRT_H_LR_DECAY,      /* adagrad */
  BPRT_H_INITIAL_ACC,   /* adagrad initial_accumulator_value */
  BPRT_H_CLIP,          /* max global gradient norm; 0 = off */
  BPRT_H_STEP,          /* 1-based step count t (adam bias correction) */
  BPRT_H_LOSS_SCALE,    /* the loss scale of this step: the seed of the backward when the model
                           trains with loss scaling (1 without); the model object sets it, as
                           it sets STEP */
  BPRT_H__COUNT
};

/* --------------------------- loss scaling (model.c; the vocabulary: optimizers.c; docs/runtime.md)
 * Mixed-precision training scales the loss so that small gradients survive f16: the
 * gradient entry seeds its backward with the scale (so every gradient comes out scaled),
 * the model object divides the gradients by it and checks them for NaN and infinity;
 * a step with a non-finite gradient is skipped (parameters, optimizer state and Adam's
 * bias-correction count unchanged). Dynamic scaling is torch.cuda.amp.GradScaler's, with
 * its defaults: the scale starts at 2^16, halves on a skipped step and doubles after
 * 2000 finite steps in a row (unless that leaves f32's range). A fixed scale never
 * changes. */
typedef enum {
  BPRT_LOSS_SCALE_OFF,      /* the seed is 1: no check, no skip */
  BPRT_LOSS_SCALE_FIXED,    /* a constant scale N */
  BPRT_LOSS_SCALE_DYNAMIC,  /* GradScaler */
} bprt_loss_scale_mode;
#define BPRT_LOSS_SCALE_INIT 65536.0           /* GradScaler's init_scale */
#define BPRT_LOSS_SCALE_GROWTH_INTERVAL 2000   /* growth_interval; growth_factor 2, backoff_factor 0.5 */
/* "dynamic", "off" or a number: *mode and *scale (the initial scale: 2^16 for dynamic, 1
 * for off). NULL, or a phrase saying what is wrong ("must be a positive number ..."). */
const char *bprt_loss_scale_parse(const char *text, int *mode, double *scale);
/* A fixed scale N is a positive finite number that f32 holds as a normal number (the
 * scale is applied in f32): NULL, or a phrase. */
const char *bprt_loss_scale_check(double scale);
extern const char *const bprt_loss_scale_names[3];   /* "off", "fixed", "dynamic" */

typedef enum {
  BPRT_OPT_SGD,         /* also momentum / nesterov through BPRT_H_MOMENTUM, BPRT_H_NESTEROV */
  BPRT_OPT_MOMENTUM,
  BPRT_OPT_ADAGRAD,
  BPRT_OPT_RMSPROP,
  BPRT_OPT_ADAM,
  BPRT_OPT_ADAMW,
  BPRT_OPT__COUNT
} bprt_optimizer;

/* ------------------------------------------ the optimizer vocabulary (optimizers.c)
 * One table of optimizers and one of hyperparameters with torch.optim's names,
 * defaults and ranges, read by every part of bpcc that names them. */
typedef enum {
  BPRT_RANGE_NONNEG,     /* >= 0 */
  BPRT_RANGE_UNIT_OPEN,  /* [0, 1): betas */
  BPRT_RANGE_BOOL,       /* 0 or 1: nesterov */
  BPRT_RANGE_COUNT,      /* an integer >= 1: step */
} bprt_hyper_range;

typedef struct {
  const char *name;          /* PyTorch's keyword ("lr", "momentum", ...; "beta1", "beta2") */
  bprt_hyper_range range;
} bprt_hyper_info;
extern const bprt_hyper_info bprt_hypers[BPRT_H__COUNT];

typedef struct {
  const char *name;               /* "adam" (train blocks, --optimizer, checkpoints) */
  const char *torch;              /* "torch.optim.Adam" */
  int32_t slots;                  /* floats of state per parameter float */
  const char *slot_names[2];      /* PyTorch's state keys: checkpoint tensors optim.<param>.<slot> */
  double defaults[BPRT_H__COUNT]; /* PyTorch's defaults; STEP = 1 */
} bprt_optimizer_info;
extern const bprt_optimizer_info bprt_optimizers[BPRT_OPT__COUNT];

/* A keyword argument of `NAME(k = v, ...)` (train blocks and --optimizer): the
 * hyperparameter it sets (count 2: "betas" sets beta1 and beta2), or index -1 for a
 * torch.optim flag that bpcc accepts only as false (amsgrad, centered, ...). */
typedef struct {
  const char *name;
  int32_t index, count;
  uint32_t optimizers;            /* bit per bprt_optimizer that takes it */
} bprt_opt_arg;
extern const bprt_opt_arg bprt_opt_args[];   /* NULL-terminated, in summary order */

/* An optimizer and its hyperparameters: what a train block, the command line and the
 * descriptor of a compiled model hold. */
typedef struct {
  int32_t kind;                   /* bprt_optimizer */
  double hyper[BPRT_H__COUNT];
} bprt_optimizer_config;

int bprt_optimizer_lookup(const char *name);                 /* -1 if unknown */
void bprt_optimizer_init(bprt_optimizer_config *c, int kind);   /* kind with PyTorch's defaults */
/* Constraints between hyperparameters (nesterov needs momentum); NULL or a phrase. */
const char *bprt_optimizer_check(int kind, const double *hyper);
/* NULL if value is in the range of hyperparameter h, else a phrase: "must be >= 0". */
const char *bprt_hyper_check(int h, double value);
/* By PyTorch name: "lr", "momentum", "dampening", "nesterov", "beta1", "beta2", "eps",
 * "weight_decay", "alpha", "lr_decay", "initial_accumulator_value", "clip". -1 if unknown. */
int bprt_hyper_lookup(const char *name);
/* The keyword argument `name` of optimizer kind, or NULL; *known_elsewhere tells
 * whether another optimizer takes it (for "adam takes no argument 'momentum'"). */
const bprt_opt_arg *bprt_opt_arg_lookup(int kind, const char *name, bool *known_elsewhere);
/* "lr, momentum, dampening, ..." : the arguments kind takes, into buf. */
char *bprt_opt_arg_list(int kind, char *buf, size_t n);

/* A task for parallel-for: process items [i0, i1) as thread tid. */
typedef void (*bprt_task_fn)(void *ctx, int64_t i0, int64_t i1, int32_t tid);
typedef void (*bprt_parallel_for_fn)(void *pool, int64_t n, int64_t grain, bprt_task_fn fn, void *ctx);

/* What every entry point receives. Pointers are 64-byte aligned. */
typedef struct bprt_frame {
  int64_t batch;                 /* B for this call, >= 1 */
  float *params;                 /* desc->param_floats */
  float *grads;                  /* desc->param_floats */
  float *opt_state;              /* desc->opt_state_floats */
  unsigned char *workspace;      /* >= desc->ws_fixed + desc->ws_per_batch * batch bytes */
  const void *const *inputs;     /* inputs[i]: float[B * ...] or int32_t labels [B * ...]
                                    (the dims before the class dim) */
  float *const *outputs;         /* outputs[i]: float[B * ...] */
  float *loss;                   /* one float, written by grad and step */
  const double *hyper;           /* BPRT_H__COUNT values */
  uint64_t seed, step;           /* dropout masks: Philox(seed, stream, step, element) */
  void *pool;                    /* passed to parallel_for */
  bprt_parallel_for_fn parallel_for;
  int32_t nthreads;              /* threads in the pool (>= 1) */
  int32_t status;                /* 0 ok; generated code sets nonzero on a bad label */
  float *buffers;                /* desc->buffer_floats: non-trainable state (running
                                    statistics), read by both entries, written by grad */
  /* Gradient accumulation and data parallelism (docs/codegen.md, "Accumulation and the
   * gradient-ready hook"); read at run time by grad and step, ignored by forward. */
  int32_t accumulate;            /* 0: grad overwrites the grads block; 1: it adds this
                                    call's gradients to it (grads += g), in place */
  double grad_weight;            /* the weight w of this call's gradient: the backward is
                                    seeded with hyper[BPRT_H_LOSS_SCALE] * w, so the grads
                                    block gets scale * w * dloss/dparam (1: a plain step) */
  void (*grad_ready)(void *ctx, int32_t param);   /* NULL, or called by grad and step right
                                    after the kernel that completes parameter `param`'s
                                    gradient (desc->params index), once per trainable
                                    parameter per call, in the order of the compiled step */
  void *grad_ready_ctx;
  unsigned char *accum_scratch;  /* >= desc->ws_accum bytes where accumulate is set: a
                                    gradient a kernel writes in place goes here first and
                                    is then added to the grads block (NULL otherwise) */
} bprt_frame;

typedef void (*bprt_entry_fn)(bprt_frame *f);

typedef struct {
  const char *name;              /* path name, e.g. "h.W" */
  int32_t rank;
  int64_t dims[BPRT_MODEL_MAX_RANK];
  int64_t offset;                /* in floats, into params and grads */
  int32_t init;                  /* InitKind numbering of ir/ir.h */
  double init_a, init_b;
  const char *loc;               /* "file.bp:3:18" for reports */
  int32_t trainable;             /* 1: the optimizer updates it; 0: it does not reach the
                                    loss (a zero gradient), so it is left as it is */
} bprt_param_desc;

typedef struct {
  const char *name;
  int32_t is_label;              /* int32 class indices, nclasses = dims[rank-1], stored for
                                    the dims before it: label[B, C] one per row, label[B, T, C]
                                    [B, T] (one per position), row-major */
  int32_t rank;
  int64_t dims[BPRT_MODEL_MAX_RANK];   /* dims[0] = BPRT_DIM_BATCH for inputs and outputs */
} bprt_tensor_desc;

typedef struct bprt_model_desc {
  const char *model_name;
  int32_t nparams;
  const bprt_param_desc *params;
  int64_t param_floats;
  int32_t ninputs;
  const bprt_tensor_desc *inputs;
  int32_t noutputs;
  const bprt_tensor_desc *outputs;
  int32_t optimizer;             /* bprt_optimizer */
  double hyper[BPRT_H__COUNT];   /* defaults from the train block */
  int64_t opt_state_floats;
  int64_t ws_fixed, ws_per_batch;
  bprt_entry_fn forward, grad, step, update;   /* step = grad, then update */
  int32_t has_loss;              /* forward computes the loss when frame->loss is set */
  int32_t sigmoid_output;        /* 1 + the index of the first output that is a sigmoid of
                                    the shape of a float second input (the targets), which
                                    accuracy reads at threshold 0.5; 0: none */
  /* Buffers: non-trainable model state (batchnorm's running mean and variance) in their
   * own block, described as parameters are (offset into the buffer block; init zeros,
   * ones or constant; trainable 0): no gradient, no optimizer state. The grad entry
   * (train_step, loss_and_grad) updates them in place; forward only reads them. */
  int32_t nbuffers;
  const bprt_param_desc *buffers;
  int64_t buffer_floats;
  /* 1: products run on AMX tiles (codegen/gemm_lowp.c); bprt_model_create asks the
   * kernel for the tile state (bprt_amx_request) and fails if it is refused. */
  int32_t uses_amx;
  /* Loss scaling (bprt_loss_scale_mode): with a mode other than off the grad entry's
   * backward is seeded with hyper[BPRT_H_LOSS_SCALE] (its gradients come out scaled), and
   * the model object unscales, checks and skips (above). loss_scale: the scale a model
   * starts with (fixed: the scale). */
  int32_t loss_scale_mode;
  double loss_scale;
  /* Bytes of frame->accum_scratch a grad call with accumulate set needs (the largest
   * total of one kernel's in-place gradients); the model object allocates it at the
   * first such call, so a model that never accumulates never pays for it. */
  int64_t ws_accum;
} bprt_model_desc;

/* ------------------------------------------------------ the model object (model.c)
 * A generic trained-model object over a descriptor: the params, grads and opt_state
 * blocks, a workspace grown to the largest batch seen, the step count and the
 * hyperparameters. The JIT (`bpcc train`) and every AOT library (m_create, ...) use
 * it. Functions returning int give BPRT_OK or a BPRT_E_* code with a message in
 * bprt_last_error() (runtime/runtime.h); misuse never crashes. */
enum {
  BPRT_OK = 0,
  BPRT_E_ARG = -1,        /* a NULL pointer or an invalid argument */
  BPRT_E_BATCH = -2,      /* batch <= 0 or too large */
  BPRT_E_RANGE = -3,      /* an index out of range, an unknown hyperparameter name */
  BPRT_E_LABEL = -4,      /* a label outside [0, classes) */
  BPRT_E_NOMEM = -5,      /* out of memory */
  BPRT_E_IO = -6,         /* a checkpoint could not be written */
  BPRT_E_CHECKPOINT = -7, /* not a valid checkpoint for this model */
  BPRT_E_STATE = -8,      /* the model lacks the entry point (no loss: no grad / step) */
};

typedef struct bprt_model bprt_model;

typedef struct {
  const char *name;       /* path name, e.g. "h.W" */
  int32_t rank;
  int64_t dims[BPRT_MODEL_MAX_RANK];
  int64_t numel;
  float *values;          /* numel floats inside the params block */
  float *grad;            /* numel floats inside the grads block */
} bprt_param_info;

/* Parameters initialized as declared from seed (stream = parameter index); grads and
 * optimizer state zeroed (adagrad: initial_accumulator_value). NULL + error on failure. */
bprt_model *bprt_model_create(const bprt_model_desc *d, uint64_t seed);
void bprt_model_destroy(bprt_model *m);                  /* NULL is fine */
const bprt_model_desc *bprt_model_get_desc(const bprt_model *m);
/* inputs[i] as desc->inputs (float rows, or int32 labels); outputs[i] as desc->outputs.
 * forward: label inputs may be NULL. The label values are checked before the call. */
int bprt_model_forward(bprt_model *m, int64_t batch, const void *const *inputs, float *const *outputs);
/* forward whose outputs are not wanted: the kernels run, no output is copied out (what
 * `bpcc bench --gemm` times: a product's result stays where its threads wrote it). */
int bprt_model_forward_discard(bprt_model *m, int64_t batch, const void *const *inputs);
/* Inference mode (dropout the identity, as forward) with the loss: outputs (may be NULL,
 * or hold NULL entries to skip them) and *loss for labelled inputs; what eval and
 * validation report. BPRT_E_STATE if the model has no loss. */
int bprt_model_eval(bprt_model *m, int64_t batch, const void *const *inputs, float *const *outputs, float *loss);
/* Training mode (dropout drawn): loss and gradients (overwriting the grads block); no
 * update, the step stays. */
int bprt_model_loss_and_grad(bprt_model *m, int64_t batch, const void *const *inputs, float *loss);
/* Gradient accumulation (one micro-batch of a larger batch): training mode, the loss
 * of these `batch` rows in *loss (may be NULL), and weight * their gradient written into
 * the grads block (accumulate 0) or added to it (accumulate 1), with no second buffer.
 * With weight = rows / rows of the whole batch for every micro-batch, the sum is the
 * gradient of the mean loss over the whole batch; bprt_model_update then applies it.
 * weight is a finite number > 0. With loss scaling the grads block holds the *scaled*
 * sum (scale * sum of w g) until update unscales it and checks it for NaN and infinity,
 * once, on the sum (an accumulate 1 after loss_and_grad, whose gradients are unscaled,
 * first scales the block back). Buffers (running statistics) update per call. */
int bprt_model_accumulate_grad(bprt_model *m, int64_t batch, const void *const *inputs, double weight,
                               int accumulate, float *loss);
/* The gradient-ready hook (frame->grad_ready): fn(ctx, param) is called by every later
 * loss_and_grad, accumulate_grad and train_step right after parameter param's gradient
 * is complete in the grads block, on the calling thread, once per trainable parameter
 * (desc->params index) in an order fixed at compile time (docs/codegen.md). fn NULL:
 * off. A hook must not call back into the model. */
typedef void (*bprt_grad_ready_fn)(void *ctx, int32_t param);
/* A zero gradient in the grads block, as accumulate_grad would leave it (scaled, for the
 * update to unscale and check): what a rank of a data-parallel run whose micro-batches
 * of a step are empty (the last, short batch) contributes to the sum (docs/distributed.md). */
int bprt_model_zero_grads(bprt_model *m);
int bprt_model_set_grad_ready(bprt_model *m, bprt_grad_ready_fn fn, void *ctx);
/* Forward, backward and the optimizer update at t = step + 1; then step = t. */
int bprt_model_train_step(bprt_model *m, int64_t batch, const void *const *inputs, float *loss);
/* The optimizer update alone at t = step + 1, from the gradients in the grads block (of
 * the last loss_and_grad); then step = t. loss_and_grad + update is train_step, which
 * lets a caller look at the loss and gradients before the parameters change.
 * With loss scaling, loss_and_grad leaves the unscaled gradients in the grads block and
 * notes whether they are all finite; an update after non-finite ones is skipped (no
 * change but the scaler's: a dynamic scale halves) and still counts a step, so that
 * the dropout masks of every step differ; the update's t (Adam's bias correction) is
 * step + 1 - skipped steps. After accumulate_grad the update unscales the summed
 * gradients first and makes that check once, on the sum. */
int bprt_model_update(bprt_model *m);
/* The loss scaler: the mode (desc->loss_scale_mode), the scale of the next step (1
 * when off), finite steps in a row since the scale last changed, steps skipped in all
 * (of this model and the checkpoints it resumed), and whether the last train_step or
 * update was skipped. */
typedef struct {
  int32_t mode;
  double scale;
  int64_t good_steps;
  uint64_t skipped;
  bool last_skipped;
} bprt_loss_scaler;
int bprt_model_scaler(const bprt_model *m, bprt_loss_scaler *out);
double bprt_model_loss_scale(const bprt_model *m);      /* the scale of the next step; 1 when off */
int bprt_model_last_skipped(const bprt_model *m);       /* 1: the last train_step / update was skipped */
int64_t bprt_model_skipped_steps(const bprt_model *m);  /* skipped in all (resumed ones too) */
/* Outputs of the last loss_and_grad / train_step (batch rows), or NULL. */
const float *bprt_model_last_output(const bprt_model *m, int i);
/* BPRT_H_*: a value outside the hyperparameter's range (bprt_hyper_check) is refused. */
int bprt_model_set_hyper(bprt_model *m, int which, double value);
int bprt_model_get_hyper(const bprt_model *m, int which, double *value);
int bprt_model_set_lr(bprt_model *m, double lr);
int bprt_model_get_lr(const bprt_model *m, double *lr);
/* By name (bprt_hyper_lookup); an unknown name is BPRT_E_RANGE listing the known ones. */
int bprt_model_set_hyper_name(bprt_model *m, const char *name, double value);
int bprt_model_get_hyper_name(const bprt_model *m, const char *name, double *value);
/* Copy the descriptor of input / output i into *out. BPRT_E_RANGE / BPRT_E_ARG. */
int bprt_desc_input(const bprt_model_desc *d, int i, bprt_tensor_desc *out);
int bprt_desc_output(const bprt_model_desc *d, int i, bprt_tensor_desc *out);
uint64_t bprt_model_get_step(const bprt_model *m);
/* Bytes of the workspace allocated now (ws_fixed + ws_per_batch * the largest batch
 * seen), 0 before the first call: what `bpcc train --watch` reports as measured. */
int64_t bprt_model_workspace_bytes(const bprt_model *m);
/* Everything a model allocates, by purpose: what bprt_model_create and calls with
 * `batch` rows (the largest so far) hold. `bpcc --mem-report` predicts it with
 * bprt_model_memory_at; bprt_model_memory_used measures a live model; the two agree. */
typedef struct {
  int64_t params, grads, opt_state;   /* the three blocks (at least one cache line each) */
  int64_t buffers;                    /* the buffer block (none without buffers) */
  int64_t workspace;                  /* ws_fixed + ws_per_batch * batch */
  int64_t outputs;                    /* the outputs of the last step, for the caller */
  int64_t other;                      /* the object, its tables, a zero label row */
  int64_t total;
} bprt_model_memory;
bprt_model_memory bprt_model_memory_at(const bprt_model_desc *d, int64_t batch);
bprt_model_memory bprt_model_memory_used(const bprt_model *m);   /* now (batch buffers: the largest batch seen) */
int bprt_model_set_step(bprt_model *m, uint64_t step);
int bprt_model_param(const bprt_model *m, int i, bprt_param_info *out);
int bprt_model_find_param(const bprt_model *m, const char *name);   /* index or -1 */
/* Buffer i (0 <= i < desc->nbuffers): name, shape and values (grad is NULL). */
int bprt_model_buffer(const bprt_model *m, int i, bprt_param_info *out);
int bprt_model_find_buffer(const bprt_model *m, const char *name);  /* index or -1 */
float *bprt_model_buffers(bprt_model *m);       /* the buffer block (NULL without buffers) */
float *bprt_model_params(bprt_model *m);        /* the blocks, for the trainer */
float *bprt_model_grads(bprt_model *m);
float *bprt_model_opt_state(bprt_model *m);
/* Optimizer state slots: opt_state_floats / param_floats arrays laid out like params;
 * slot k of parameter p is saved as "optim.<p>.<name>" (PyTorch's state names). */
int bprt_model_opt_slots(const bprt_model_desc *d);
const char *bprt_model_opt_slot_name(const bprt_model_desc *d, int k);
/* Checkpoints (safetensors): parameters and buffers under their names, optimizer state, metadata
 * format = "bpcc-checkpoint", format_version = "1", model, optimizer, step (and, once a
 * step was skipped, skipped_steps; with loss scaling, loss_scale and
 * loss_scale_good_steps: the scaler's state, restored by load). `extra`
 * adds metadata (the trainer's epoch, schedule, RNG state); may be NULL. Atomic. */
int bprt_model_save(const bprt_model *m, const char *path);
int bprt_model_save_meta(const bprt_model *m, const char *path, const char *const *keys,
                         const char *const *values, int nextra);
/* All or nothing: on any error the model is unchanged. A bpcc checkpoint must name this
 * model and hold every parameter and optimizer tensor with its shape (a model that does
 * not train — no grad entry — reads the parameters and passes over the optimizer
 * state); a plain safetensors file (no bpcc metadata) loads the parameters only,
 * resetting the optimizer state and the step. A NaN or an infinity in a parameter or in
 * the optimizer state read is BPRT_E_CHECKPOINT naming the tensor and the file. */
int bprt_model_load(bprt_model *m, const char *path);
/* The parameters alone (fine-tuning, `bpcc train --init`): every parameter by its name
 * and shape from a bpcc checkpoint of any model and optimizer or a plain safetensors
 * file; the file's optimizer state (optim.*) and metadata are passed over, the model's
 * optimizer state is reset and its step is 0. All or nothing, as load. */
int bprt_model_load_weights(bprt_model *m, const char *path);
/* As load; on success *ck (if ck) is the open checkpoint, for reading the trainer's
 * metadata with bprt_st_meta; the caller frees it with bprt_st_free. */
struct BprtCheckpoint;
int bprt_model_load_ck(bprt_model *m, const char *path, struct BprtCheckpoint **ck);

#endif
