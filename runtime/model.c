/* runtime/model.c — the generic model object over a bprt_model_desc.
 *
 * The one idea: generated code is three functions of a frame (model.h); everything a
 * user of a trained model needs around them — memory, initialization, argument
 * checking, hyperparameters, checkpoints — is written once here, in plain C, and is
 * shared by the JIT and by every AOT library (whose m_create, m_train_step, ... are
 * thin wrappers passing their constant descriptor).
 *
 * Memory, all through the runtime's allocation hook (bprt_malloc, 64-byte aligned):
 *   params    desc->param_floats floats, parameter p at desc->params[p].offset
 *   grads     the same layout
 *   opt_state desc->opt_state_floats floats = slots x param_floats, slot k laid out
 *             like params (adam: exp_avg, exp_avg_sq)
 *   workspace ws_fixed + ws_per_batch * B bytes, grown (never shrunk) to the largest
 *             batch seen, together with the output buffers of loss_and_grad/train_step
 *             and a zero label row for forward calls that pass no labels.
 *
 * Every entry point checks its arguments before it touches generated code: a NULL
 * pointer, batch <= 0, a label outside [0, classes) is an error code and a message,
 * never memory corruption. */
#include "runtime/model.h"

#include "runtime/runtime.h"

#include <ctype.h>
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MODEL_RANK BPRT_MODEL_MAX_RANK
#define CHECKPOINT_FORMAT "bpcc-checkpoint"
#define CHECKPOINT_VERSION "1"

struct bprt_model {
  const bprt_model_desc *d;
  uint64_t seed, step;
  double hyper[BPRT_H__COUNT];
  float *params, *grads, *opt_state;
  float *buffers;                    /* NULL when the model has none */
  /* grown with the batch */
  int64_t cap_batch;                 /* workspace and scratch fit this batch */
  unsigned char *workspace;
  float **scratch_out;               /* desc->noutputs buffers */
  int32_t *zero_labels;              /* cap_batch rows of zeros (of the widest label row) */
  int64_t last_batch;                /* rows in scratch_out after grad / step, 0 = none */
  /* the loss scaler (desc->loss_scale_mode): GradScaler's state */
  double scale;                      /* the scale of the next step; 1 when off */
  int64_t good_steps;                /* finite steps since the scale last changed */
  uint64_t skipped;                  /* skipped steps, counted in step too: Adam's t = step - skipped */
  bool grads_bad;                    /* the last loss_and_grad's gradients were not all finite */
  bool last_skipped;                 /* the last train_step / update was skipped */
  /* gradient accumulation (accumulate_grad) */
  bool grads_scaled;                 /* the grads block holds scale * gradients (accumulate_grad
                                        under loss scaling): update unscales and checks them */
  uint64_t micro;                    /* micro-batches since the last accumulate 0: the dropout
                                        key of micro-batch j > 0 is seed + j * BPRT_MICRO_KEY */
  bprt_grad_ready_fn grad_ready;     /* the gradient-ready hook, or NULL */
  void *grad_ready_ctx;
  unsigned char *accum_scratch;      /* desc->ws_accum bytes, allocated by the first
                                        accumulate_grad that adds (frame->accum_scratch) */
};

/* Micro-batch j of a step draws its dropout masks from Philox key seed + j * this (the
 * golden-ratio increment): micro-batch 0 is a plain step's draw, the others independent. */
#define BPRT_MICRO_KEY UINT64_C(0x9E3779B97F4A7C15)

/* Set the message and return code (the runtime's bprt_set_error returns -1). */
static int fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(int code, const char *fmt, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  bprt_set_error("%s", buf);
  return code;
}

static const char *model_name(const bprt_model *m) {
  return m->d->model_name ? m->d->model_name : "model";
}

/* ------------------------------------------------------------------- sizes */

static int64_t param_numel(const bprt_param_desc *p) {
  int64_t n = 1;
  for (int i = 0; i < p->rank; i++) n *= p->dims[i];
  return n;
}

/* The dims a tensor stores: a label's last dim is its number of classes, not stored
 * (label[B, C]: one int32 per row; label[B, T, C]: T per row, one per position). */
static int stored_rank(const bprt_tensor_desc *t) { return t->is_label ? t->rank - 1 : t->rank; }

/* Elements of a tensor of the descriptor for `batch` rows (labels: int32 class indices). */
static int64_t tensor_numel(const bprt_tensor_desc *t, int64_t batch) {
  int64_t n = 1;
  for (int i = 0; i < stored_rank(t); i++) n *= t->dims[i] == BPRT_DIM_BATCH ? batch : t->dims[i];
  return n;
}

/* The elements of one batch row; used to bound the batch so sizes cannot overflow. */
static int64_t tensor_row(const bprt_tensor_desc *t) {
  int64_t n = 1;
  for (int i = 0; i < stored_rank(t); i++)
    if (t->dims[i] != BPRT_DIM_BATCH) n *= t->dims[i];
  return n;
}

/* The int32 values of one row of the widest label input: the zero labels that stand in
 * for absent label inputs are sized for it. */
static int64_t label_row_max(const bprt_model_desc *d) {
  int64_t r = 1;
  for (int i = 0; i < d->ninputs; i++)
    if (d->inputs[i].is_label && tensor_row(&d->inputs[i]) > r) r = tensor_row(&d->inputs[i]);
  return r;
}

/* Names of the optimizer state slots, PyTorch's torch.optim state keys. */
int bprt_model_opt_slots(const bprt_model_desc *d) {
  if (!d || d->param_floats <= 0 || d->opt_state_floats <= 0) return 0;
  return (int)(d->opt_state_floats / d->param_floats);
}

const char *bprt_model_opt_slot_name(const bprt_model_desc *d, int k) {
  static const char *const slot[] = {"slot0", "slot1", "slot2", "slot3"};
  int n = bprt_model_opt_slots(d);
  if (k < 0 || k >= n) return NULL;
  if (d->optimizer >= 0 && d->optimizer < BPRT_OPT__COUNT && k < bprt_optimizers[d->optimizer].slots)
    return bprt_optimizers[d->optimizer].slot_names[k];
  return k < 4 ? slot[k] : "slot";
}

/* A descriptor generated code could be wrong about only through a bug, but checking it
 * once at create keeps every later index and size computation safe. */
static int check_desc(const bprt_model_desc *d) {
  const char *name = d->model_name ? d->model_name : "model";
  if (d->nparams < 0 || (d->nparams > 0 && !d->params) || d->ninputs < 0 ||
      (d->ninputs > 0 && !d->inputs) || d->noutputs < 0 || (d->noutputs > 0 && !d->outputs))
    return fail(BPRT_E_ARG, "%s: malformed model descriptor (tables)", name);
  if (d->param_floats < 0 || d->opt_state_floats < 0 || d->ws_fixed < 0 || d->ws_per_batch < 0 || d->ws_accum < 0)
    return fail(BPRT_E_ARG, "%s: malformed model descriptor (sizes)", name);
  if (d->loss_scale_mode < BPRT_LOSS_SCALE_OFF || d->loss_scale_mode > BPRT_LOSS_SCALE_DYNAMIC ||
      (d->loss_scale_mode != BPRT_LOSS_SCALE_OFF && bprt_loss_scale_check(d->loss_scale) != NULL))
    return fail(BPRT_E_ARG, "%s: malformed model descriptor (loss scale mode %d, scale %g)", name, (int)d->loss_scale_mode,
                d->loss_scale);
  if (d->optimizer < 0 || d->optimizer >= BPRT_OPT__COUNT)
    return fail(BPRT_E_ARG, "%s: unknown optimizer %d in the descriptor", name, (int)d->optimizer);
  if (!d->forward) return fail(BPRT_E_ARG, "%s: the descriptor has no forward function", name);
  for (int i = 0; i < d->nparams; i++) {
    const bprt_param_desc *p = &d->params[i];
    if (!p->name || p->rank < 0 || p->rank > MODEL_RANK || p->offset < 0)
      return fail(BPRT_E_ARG, "%s: malformed parameter %d in the descriptor", name, i);
    for (int k = 0; k < p->rank; k++)
      if (p->dims[k] < 1) return fail(BPRT_E_ARG, "%s: parameter '%s' has dimension %lld", name, p->name, (long long)p->dims[k]);
    if (p->offset + param_numel(p) > d->param_floats)
      return fail(BPRT_E_ARG, "%s: parameter '%s' lies outside the params block", name, p->name);
  }
  if (d->nbuffers < 0 || (d->nbuffers > 0 && !d->buffers) || d->buffer_floats < 0)
    return fail(BPRT_E_ARG, "%s: malformed model descriptor (buffers)", name);
  for (int i = 0; i < d->nbuffers; i++) {
    const bprt_param_desc *p = &d->buffers[i];
    if (!p->name || p->rank < 0 || p->rank > MODEL_RANK || p->offset < 0)
      return fail(BPRT_E_ARG, "%s: malformed buffer %d in the descriptor", name, i);
    for (int k = 0; k < p->rank; k++)
      if (p->dims[k] < 1) return fail(BPRT_E_ARG, "%s: buffer '%s' has dimension %lld", name, p->name, (long long)p->dims[k]);
    if (p->offset + param_numel(p) > d->buffer_floats)
      return fail(BPRT_E_ARG, "%s: buffer '%s' lies outside the buffer block", name, p->name);
  }
  for (int io = 0; io < 2; io++) {
    int n = io ? d->noutputs : d->ninputs;
    const bprt_tensor_desc *t = io ? d->outputs : d->inputs;
    for (int i = 0; i < n; i++) {
      if (!t[i].name || t[i].rank < 0 || t[i].rank > MODEL_RANK || (t[i].is_label && t[i].rank < 1))
        return fail(BPRT_E_ARG, "%s: malformed %s %d in the descriptor", name, io ? "output" : "input", i);
      for (int k = 0; k < t[i].rank; k++)
        if (t[i].dims[k] < 1 && t[i].dims[k] != BPRT_DIM_BATCH)
          return fail(BPRT_E_ARG, "%s: %s '%s' has dimension %lld", name, io ? "output" : "input",
                      t[i].name, (long long)t[i].dims[k]);
    }
  }
  return BPRT_OK;
}

/* --------------------------------------------------------------- lifecycle */

static void fill_opt_state(bprt_model *m) {
  const bprt_model_desc *d = m->d;
  if (!d->opt_state_floats) return;
  float v = d->optimizer == BPRT_OPT_ADAGRAD ? (float)m->hyper[BPRT_H_INITIAL_ACC] : 0.0f;
  for (int64_t i = 0; i < d->opt_state_floats; i++) m->opt_state[i] = v;
}

/* ------------------------------------------------------------ memory */

/* The sizes of everything a model allocates, one function each, used both to allocate
 * and to predict (bprt_model_memory_at): the prediction is the allocation. */
static int64_t block_bytes(int64_t floats) { return (floats < 16 ? 16 : floats) * (int64_t)sizeof(float); }
static int64_t workspace_bytes_at(const bprt_model_desc *d, int64_t cap) {
  int64_t ws = d->ws_fixed + d->ws_per_batch * cap;
  return ws < 64 ? 64 : ws;
}
static int64_t output_bytes_at(const bprt_tensor_desc *t, int64_t cap) {
  int64_t n = tensor_numel(t, cap);
  return (n ? n : 1) * (int64_t)sizeof(float);
}
static int64_t labels_bytes_at(const bprt_model_desc *d, int64_t cap) {
  return cap * label_row_max(d) * (int64_t)sizeof(int32_t);
}
static int64_t object_bytes(const bprt_model_desc *d) {
  return (int64_t)sizeof(struct bprt_model) + (d->noutputs > 0 ? (int64_t)sizeof(float *) * d->noutputs : 0);
}

static bprt_model_memory memory_at(const bprt_model_desc *d, int64_t cap) {
  bprt_model_memory r;
  memset(&r, 0, sizeof r);
  r.params = r.grads = block_bytes(d->param_floats);
  r.opt_state = block_bytes(d->opt_state_floats);
  r.buffers = d->nbuffers > 0 ? block_bytes(d->buffer_floats) : 0;
  r.other = object_bytes(d);
  if (cap > 0) {
    r.workspace = workspace_bytes_at(d, cap);
    for (int i = 0; i < d->noutputs; i++) r.outputs += output_bytes_at(&d->outputs[i], cap);
    r.other += labels_bytes_at(d, cap);
  }
  r.total = r.params + r.grads + r.opt_state + r.buffers + r.workspace + r.outputs + r.other;
  return r;
}

bprt_model_memory bprt_model_memory_at(const bprt_model_desc *d, int64_t batch) {
  return d ? memory_at(d, batch > 0 ? batch : 0) : (bprt_model_memory){0};
}

bprt_model_memory bprt_model_memory_used(const bprt_model *m) {
  return m ? memory_at(m->d, m->workspace ? m->cap_batch : 0) : (bprt_model_memory){0};
}

/* A block of n floats (at least one cache line, so that a model with no parameters
 * still has valid pointers), zeroed. */
static float *alloc_block(int64_t n) {
  if ((uint64_t)n > SIZE_MAX / sizeof(float)) return NULL;
  size_t bytes = (size_t)block_bytes(n);
  float *p = bprt_malloc(bytes);
  if (p) memset(p, 0, bytes);
  return p;
}

bprt_model *bprt_model_create(const bprt_model_desc *d, uint64_t seed) {
  if (!d) {
    fail(BPRT_E_ARG, "model create: NULL descriptor");
    return NULL;
  }
  if (check_desc(d) != BPRT_OK) return NULL;
  if (d->uses_amx && !bprt_amx_request()) {
    fail(BPRT_E_STATE, "%s: the model's products run on AMX tiles and this process may not use them (the kernel "
         "refused arch_prctl ARCH_REQ_XCOMP_PERM); rebuild it with BPCC_GEMM_BF16=dpbf16 or convert",
         d->model_name ? d->model_name : "model");
    return NULL;
  }
  bprt_model *m = bprt_malloc(sizeof *m);
  if (!m) return NULL;
  memset(m, 0, sizeof *m);
  m->d = d;
  m->seed = seed;
  memcpy(m->hyper, d->hyper, sizeof m->hyper);
  m->scale = d->loss_scale_mode != BPRT_LOSS_SCALE_OFF ? d->loss_scale : 1.0;
  m->params = alloc_block(d->param_floats);
  m->grads = alloc_block(d->param_floats);
  m->opt_state = alloc_block(d->opt_state_floats);
  if (d->nbuffers > 0 && !(m->buffers = alloc_block(d->buffer_floats))) {
    bprt_model_destroy(m);
    bprt_set_error("%s: out of memory creating the model", d->model_name ? d->model_name : "model");
    return NULL;
  }
  if (d->noutputs > 0) {
    m->scratch_out = bprt_malloc(sizeof(float *) * (size_t)d->noutputs);
    if (m->scratch_out) memset(m->scratch_out, 0, sizeof(float *) * (size_t)d->noutputs);
  }
  if (!m->params || !m->grads || !m->opt_state || (d->noutputs > 0 && !m->scratch_out)) {
    bprt_model_destroy(m);
    bprt_set_error("%s: out of memory creating the model", d->model_name ? d->model_name : "model");
    return NULL;
  }
  for (int i = 0; i < d->nparams; i++) {
    const bprt_param_desc *p = &d->params[i];
    if (bprt_init_tensor(m->params + p->offset, p->rank, p->dims, p->init, p->init_a, p->init_b,
                         seed, bprt_stream_init((uint32_t)i)) != 0) {
      bprt_prefix_error("%s: parameter '%s'%s%s", model_name(m), p->name, p->loc ? " at " : "",
                        p->loc ? p->loc : "");
      bprt_model_destroy(m);
      return NULL;
    }
  }
  for (int i = 0; i < d->nbuffers; i++) {   /* zeros, ones or a constant: no random draw */
    const bprt_param_desc *p = &d->buffers[i];
    if (bprt_init_tensor(m->buffers + p->offset, p->rank, p->dims, p->init, p->init_a, p->init_b, seed, 0) != 0) {
      bprt_prefix_error("%s: buffer '%s'%s%s", model_name(m), p->name, p->loc ? " at " : "", p->loc ? p->loc : "");
      bprt_model_destroy(m);
      return NULL;
    }
  }
  fill_opt_state(m);
  return m;
}

static void free_batch_buffers(bprt_model *m) {
  bprt_free(m->workspace);
  m->workspace = NULL;
  bprt_free(m->zero_labels);
  m->zero_labels = NULL;
  for (int i = 0; m->scratch_out && i < m->d->noutputs; i++) {
    bprt_free(m->scratch_out[i]);
    m->scratch_out[i] = NULL;
  }
  m->cap_batch = 0;
  m->last_batch = 0;
}

void bprt_model_destroy(bprt_model *m) {
  if (!m) return;
  free_batch_buffers(m);
  bprt_free(m->scratch_out);
  bprt_free(m->accum_scratch);
  bprt_free(m->params);
  bprt_free(m->grads);
  bprt_free(m->opt_state);
  bprt_free(m->buffers);
  bprt_free(m);
}

const bprt_model_desc *bprt_model_get_desc(const bprt_model *m) { return m ? m->d : NULL; }

/* ------------------------------------------------------------ running code */

/* Check batch against the largest that keeps every size in range, then grow the
 * workspace and the scratch buffers to it (all or nothing). */
static int ensure_batch(bprt_model *m, int64_t batch) {
  const bprt_model_desc *d = m->d;
  if (batch <= 0)
    return fail(BPRT_E_BATCH, "%s: batch must be >= 1, got %lld", model_name(m), (long long)batch);
  int64_t limit = INT64_C(1) << 40;
  if (d->ws_per_batch > 0 && (limit - d->ws_fixed) / d->ws_per_batch < limit)
    limit = (limit - d->ws_fixed) / d->ws_per_batch;
  for (int io = 0; io < 2; io++) {
    int n = io ? d->noutputs : d->ninputs;
    const bprt_tensor_desc *t = io ? d->outputs : d->inputs;
    for (int i = 0; i < n; i++) {
      int64_t row = tensor_row(&t[i]);
      if (row > 0 && (INT64_C(1) << 38) / row < limit) limit = (INT64_C(1) << 38) / row;
    }
  }
  if (batch > limit)
    return fail(BPRT_E_BATCH, "%s: batch %lld is too large (at most %lld)", model_name(m), (long long)batch,
                (long long)limit);
  if (batch <= m->cap_batch) return BPRT_OK;
  /* grow geometrically so a slowly rising batch does not reallocate each call */
  int64_t cap = m->cap_batch * 2 > batch && m->cap_batch * 2 <= limit ? m->cap_batch * 2 : batch;
  size_t ws = (size_t)workspace_bytes_at(d, cap);
  unsigned char *w = bprt_malloc(ws);
  int32_t *zl = bprt_malloc((size_t)labels_bytes_at(d, cap));
  float *outs[64];
  float **o = d->noutputs <= 64 ? outs : bprt_malloc(sizeof(float *) * (size_t)d->noutputs);
  bool ok = w && zl && o;
  for (int i = 0; ok && i < d->noutputs; i++) {
    o[i] = bprt_malloc((size_t)output_bytes_at(&d->outputs[i], cap));
    if (!o[i]) {
      for (int k = 0; k < i; k++) bprt_free(o[k]);
      ok = false;
    }
  }
  if (!ok) {
    bprt_free(w);
    bprt_free(zl);
    if (o && o != outs) bprt_free(o);
    return fail(BPRT_E_NOMEM, "%s: out of memory for batch %lld (workspace %zu bytes)", model_name(m),
                (long long)batch, ws);
  }
  free_batch_buffers(m);
  m->workspace = w;
  m->zero_labels = zl;
  memset(zl, 0, (size_t)labels_bytes_at(d, cap));
  for (int i = 0; i < d->noutputs; i++) m->scratch_out[i] = o[i];
  if (o != outs) bprt_free(o);
  m->cap_batch = cap;
  return BPRT_OK;
}

/* Inputs present (labels may be absent where allow_no_labels) and labels in range. */
static int check_inputs(bprt_model *m, int64_t batch, const void *const *inputs, bool allow_no_labels) {
  const bprt_model_desc *d = m->d;
  if (d->ninputs > 0 && !inputs) return fail(BPRT_E_ARG, "%s: inputs is NULL", model_name(m));
  for (int i = 0; i < d->ninputs; i++) {
    const bprt_tensor_desc *t = &d->inputs[i];
    if (!inputs[i]) {
      if (t->is_label && allow_no_labels) continue;
      return fail(BPRT_E_ARG, "%s: input %d ('%s') is NULL", model_name(m), i, t->name);
    }
    if (!t->is_label) continue;
    const int32_t *lab = inputs[i];
    int64_t classes = t->dims[t->rank - 1], row = tensor_row(t);
    for (int64_t k = 0; k < batch * row; k++)
      if (lab[k] < 0 || lab[k] >= classes) {
        if (row == 1)
          return fail(BPRT_E_LABEL, "%s: label %d of input '%s' at row %lld is outside [0, %lld)", model_name(m),
                      (int)lab[k], t->name, (long long)k, (long long)classes);
        return fail(BPRT_E_LABEL, "%s: label %d of input '%s' at row %lld, position %lld is outside [0, %lld)",
                    model_name(m), (int)lab[k], t->name, (long long)(k / row), (long long)(k % row),
                    (long long)classes);
      }
  }
  return BPRT_OK;
}

/* The adapter from the frame's parallel-for to the runtime's global pool: the task
 * signature differs (int32_t worker), so each chunk goes through this trampoline. */
typedef struct {
  bprt_task_fn fn;
  void *ctx;
} TaskAdapter;

static void run_task(void *ctx, int64_t begin, int64_t end, int worker) {
  TaskAdapter *a = ctx;
  a->fn(a->ctx, begin, end, (int32_t)worker);
}

static void pool_parallel_for(void *pool, int64_t n, int64_t grain, bprt_task_fn fn, void *ctx) {
  (void)pool;   /* the process-wide pool of this runtime copy */
  TaskAdapter a = {fn, ctx};
  bprt_parallel_for(n, grain, run_task, &a);
}

/* fn over a frame: the dropout masks of step `t`; the update's count (Adam's bias
 * correction) is t less the skipped steps; the backward's seed is the loss scale. */
typedef struct {
  int32_t accumulate;     /* frame->accumulate */
  double weight;          /* frame->grad_weight */
  uint64_t micro;         /* the micro-batch index (dropout key) */
} RunGrad;
static const RunGrad plain_grad = {0, 1.0, 0};

static int run_ex(bprt_model *m, bprt_entry_fn fn, int64_t batch, const void *const *inputs,
                  float *const *outputs, float *loss, uint64_t t, const RunGrad *rg) {
  const bprt_model_desc *d = m->d;
  const void *in_local[64];
  const void **in = in_local;
  if (d->ninputs > 64) {
    in = bprt_malloc(sizeof(void *) * (size_t)d->ninputs);
    if (!in) return fail(BPRT_E_NOMEM, "%s: out of memory", model_name(m));
  }
  for (int i = 0; i < d->ninputs; i++) in[i] = inputs && inputs[i] ? inputs[i] : (const void *)m->zero_labels;
  double hyper[BPRT_H__COUNT];
  memcpy(hyper, m->hyper, sizeof hyper);
  hyper[BPRT_H_STEP] = (double)(t - m->skipped);
  hyper[BPRT_H_LOSS_SCALE] = m->scale;
  bprt_frame f = {
      .batch = batch,
      .params = m->params,
      .grads = m->grads,
      .opt_state = m->opt_state,
      .workspace = m->workspace,
      .inputs = (const void *const *)in,
      .outputs = outputs,
      .loss = loss,   /* NULL: forward skips what only the loss needs */
      .hyper = hyper,
      .seed = m->seed + rg->micro * BPRT_MICRO_KEY,
      .step = t,
      .pool = NULL,
      .parallel_for = pool_parallel_for,
      .nthreads = bprt_get_threads(),
      .status = 0,
      .buffers = m->buffers,
      .accumulate = rg->accumulate,
      .grad_weight = rg->weight,
      .grad_ready = m->grad_ready,
      .grad_ready_ctx = m->grad_ready_ctx,
      .accum_scratch = rg->accumulate ? m->accum_scratch : NULL,
  };
  if (f.nthreads < 1) f.nthreads = 1;
  fn(&f);
  if (in != in_local) bprt_free(in);
  if (f.status != 0)
    return fail(BPRT_E_LABEL, "%s: the generated code rejected a label (status %d)", model_name(m), (int)f.status);
  return BPRT_OK;
}

static int run(bprt_model *m, bprt_entry_fn fn, int64_t batch, const void *const *inputs,
               float *const *outputs, float *loss, uint64_t t) {
  return run_ex(m, fn, batch, inputs, outputs, loss, t, &plain_grad);
}

int bprt_model_forward(bprt_model *m, int64_t batch, const void *const *inputs, float *const *outputs) {
  if (!m) return fail(BPRT_E_ARG, "forward: NULL model");
  if (m->d->noutputs > 0 && !outputs) return fail(BPRT_E_ARG, "%s: forward: outputs is NULL", model_name(m));
  for (int i = 0; i < m->d->noutputs; i++)
    if (!outputs[i])
      return fail(BPRT_E_ARG, "%s: forward: output %d ('%s') is NULL", model_name(m), i, m->d->outputs[i].name);
  int rc = ensure_batch(m, batch);
  if (rc == BPRT_OK) rc = check_inputs(m, batch, inputs, true);
  if (rc == BPRT_OK) rc = run(m, m->d->forward, batch, inputs, outputs, NULL, m->step);
  if (rc != BPRT_OK) bprt_prefix_error("forward");
  return rc;
}

int bprt_model_forward_discard(bprt_model *m, int64_t batch, const void *const *inputs) {
  if (!m) return fail(BPRT_E_ARG, "forward: NULL model");
  int rc = ensure_batch(m, batch);
  if (rc == BPRT_OK) rc = check_inputs(m, batch, inputs, true);
  if (rc == BPRT_OK) rc = run(m, m->d->forward, batch, inputs, NULL, NULL, m->step);   /* no output copied */
  if (rc != BPRT_OK) bprt_prefix_error("forward");
  return rc;
}

int bprt_model_eval(bprt_model *m, int64_t batch, const void *const *inputs, float *const *outputs, float *loss) {
  if (!m) return fail(BPRT_E_ARG, "eval: NULL model");
  if (!loss) return fail(BPRT_E_ARG, "%s: eval: loss is NULL", model_name(m));
  if (!m->d->has_loss)
    return fail(BPRT_E_STATE, "eval: %s: the model has no loss (declare `loss` in it)", model_name(m));
  int rc = ensure_batch(m, batch);
  if (rc == BPRT_OK) rc = check_inputs(m, batch, inputs, false);
  if (rc == BPRT_OK) rc = run(m, m->d->forward, batch, inputs, outputs, loss, m->step);
  if (rc != BPRT_OK) bprt_prefix_error("eval");
  return rc;
}

/* ------------------------------------------------------------ loss scaling */

/* Gradients g[i0, i1) of the grads block divided by the scale (multiplied by its exact
 * inverse when it is a power of two, so that the unscaled gradient is exactly the
 * one an unscaled backward would give), and whether every one is finite. */
typedef struct {
  float *g;
  double scale;
  int64_t n, chunk;
  uint8_t bad[256];   /* per chunk */
} Unscale;

static void unscale_task(void *ctx, int64_t c0, int64_t c1, int worker) {
  (void)worker;
  Unscale *u = ctx;
  int e;
  bool pow2 = frexp(u->scale, &e) == 0.5;
  float inv = (float)(1.0 / u->scale);
  for (int64_t c = c0; c < c1; c++) {
    int64_t i0 = c * u->chunk, i1 = i0 + u->chunk < u->n ? i0 + u->chunk : u->n;
    uint32_t bad = 0;
    float *g = u->g;
    /* one pass, checked once unscaled (a scale below 1 can overflow a finite one): a
     * float is NaN or infinite exactly when its exponent bits are all ones (an integer
     * OR reduction, which vectorizes) */
#define UNSCALE(expr)                                   \
  for (int64_t i = i0; i < i1; i++) {                   \
    float x = (expr);                                   \
    uint32_t b;                                         \
    memcpy(&b, &x, sizeof b);                           \
    bad |= (uint32_t)((b & 0x7f800000u) == 0x7f800000u); \
    g[i] = x;                                           \
  }
    if (pow2) UNSCALE(g[i] * inv)
    else UNSCALE((float)((double)g[i] / u->scale))
#undef UNSCALE
    u->bad[c] = (uint8_t)bad;
  }
}

/* After the grad entry: unscale the gradients, note whether they are finite. */
static void unscale_grads(bprt_model *m) {
  Unscale u;
  u.g = m->grads;
  u.scale = m->scale;
  u.n = m->d->param_floats;
  u.chunk = INT64_C(1) << 16;
  if (u.n > u.chunk * 256) u.chunk = (u.n + 255) / 256;
  int64_t nch = (u.n + u.chunk - 1) / u.chunk;
  memset(u.bad, 0, sizeof u.bad);
  if (nch > 1) bprt_parallel_for(nch, 1, unscale_task, &u);
  else if (nch == 1) unscale_task(&u, 0, 1, 0);
  m->grads_bad = false;
  for (int64_t c = 0; c < nch; c++) m->grads_bad |= u.bad[c] != 0;
}

/* GradScaler.update: a skipped step halves a dynamic scale; 2000 finite ones in a row
 * double it, unless f32 could not hold the result (the generated code reads it as f32). */
static void scaler_update(bprt_model *m, bool skipped) {
  m->last_skipped = skipped;
  if (skipped) m->skipped++;
  if (m->d->loss_scale_mode != BPRT_LOSS_SCALE_DYNAMIC) return;
  if (skipped) {
    m->scale *= 0.5;
    m->good_steps = 0;
  } else if (++m->good_steps == BPRT_LOSS_SCALE_GROWTH_INTERVAL) {
    m->good_steps = 0;
    if (m->scale * 2 <= FLT_MAX) m->scale *= 2;
  }
}

int bprt_model_scaler(const bprt_model *m, bprt_loss_scaler *out) {
  if (!m || !out) return fail(BPRT_E_ARG, "scaler: NULL %s", m ? "pointer" : "model");
  out->mode = m->d->loss_scale_mode;
  out->scale = m->scale;
  out->good_steps = m->good_steps;
  out->skipped = m->skipped;
  out->last_skipped = m->last_skipped;
  return BPRT_OK;
}

double bprt_model_loss_scale(const bprt_model *m) { return m ? m->scale : 1.0; }
int bprt_model_last_skipped(const bprt_model *m) { return m && m->last_skipped ? 1 : 0; }
int64_t bprt_model_skipped_steps(const bprt_model *m) { return m ? (int64_t)m->skipped : 0; }

/* ------------------------------------------------------------ the gradient entries */

static int grad_or_step_ex(bprt_model *m, bprt_entry_fn fn, const char *what, int64_t batch,
                           const void *const *inputs, float *loss, const RunGrad *rg) {
  if (!m) return fail(BPRT_E_ARG, "%s: NULL model", what);
  if (!fn)
    return fail(BPRT_E_STATE, "%s: %s: the model has no loss, so no gradients (declare `loss` in it)", what,
                model_name(m));
  int rc = ensure_batch(m, batch);
  if (rc == BPRT_OK) rc = check_inputs(m, batch, inputs, false);
  if (rc == BPRT_OK) {
    m->last_batch = 0;
    rc = run_ex(m, fn, batch, inputs, m->scratch_out, loss, m->step + 1, rg);
    if (rc == BPRT_OK) m->last_batch = batch;
  }
  if (rc != BPRT_OK) bprt_prefix_error("%s", what);
  return rc;
}

static int grad_or_step(bprt_model *m, bprt_entry_fn fn, const char *what, int64_t batch,
                        const void *const *inputs, float *loss) {
  int rc = grad_or_step_ex(m, fn, what, batch, inputs, loss, &plain_grad);
  if (rc == BPRT_OK) {
    m->grads_scaled = false;
    m->micro = 0;
  }
  return rc;
}

int bprt_model_loss_and_grad(bprt_model *m, int64_t batch, const void *const *inputs, float *loss) {
  int rc = grad_or_step(m, m ? m->d->grad : NULL, "loss_and_grad", batch, inputs, loss);
  if (rc == BPRT_OK && m->d->loss_scale_mode != BPRT_LOSS_SCALE_OFF) unscale_grads(m);
  return rc;
}

/* g *= scale over the grads block: unscaled gradients back to the units of the backward. */
static void rescale_task(void *ctx, int64_t i0, int64_t i1, int worker) {
  (void)worker;
  const Unscale *u = ctx;
  for (int64_t i = i0; i < i1; i++) u->g[i] = (float)((double)u->g[i] * u->scale);
}

int bprt_model_accumulate_grad(bprt_model *m, int64_t batch, const void *const *inputs, double weight,
                               int accumulate, float *loss) {
  static const char what[] = "accumulate_grad";
  if (!m) return fail(BPRT_E_ARG, "%s: NULL model", what);
  if (!(weight > 0) || !isfinite(weight))
    return fail(BPRT_E_ARG, "%s: %s: weight %g must be a finite number > 0", what, model_name(m), weight);
  if (accumulate != 0 && accumulate != 1)
    return fail(BPRT_E_ARG, "%s: %s: accumulate %d must be 0 (overwrite) or 1 (add)", what, model_name(m), accumulate);
  bool scaling = m->d->loss_scale_mode != BPRT_LOSS_SCALE_OFF;
  if (accumulate && scaling && !m->grads_scaled && m->d->grad) {   /* after loss_and_grad or update */
    Unscale u = {.g = m->grads, .scale = m->scale, .n = m->d->param_floats};
    bprt_parallel_for(u.n, INT64_C(1) << 16, rescale_task, &u);
  }
  if (accumulate && !m->accum_scratch && m->d->ws_accum > 0 &&
      !(m->accum_scratch = bprt_malloc((size_t)m->d->ws_accum)))
    return fail(BPRT_E_NOMEM, "%s: %s: out of memory for the accumulation scratch (%lld bytes)", what, model_name(m),
                (long long)m->d->ws_accum);
  RunGrad rg = {accumulate, weight, accumulate ? m->micro + 1 : 0};
  int rc = grad_or_step_ex(m, m->d->grad, what, batch, inputs, loss, &rg);
  if (rc != BPRT_OK) return rc;
  m->grads_scaled = scaling;
  m->micro = rg.micro;
  return BPRT_OK;
}

int bprt_model_zero_grads(bprt_model *m) {
  if (!m) return fail(BPRT_E_ARG, "zero_grads: NULL model");
  memset(m->grads, 0, sizeof(float) * (size_t)m->d->param_floats);
  m->grads_scaled = m->d->loss_scale_mode != BPRT_LOSS_SCALE_OFF;   /* as after accumulate_grad */
  m->micro = 0;
  return BPRT_OK;
}

int bprt_model_set_grad_ready(bprt_model *m, bprt_grad_ready_fn fn, void *ctx) {
  if (!m) return fail(BPRT_E_ARG, "set_grad_ready: NULL model");
  m->grad_ready = fn;
  m->grad_ready_ctx = fn ? ctx : NULL;
  return BPRT_OK;
}

/* The update entry, or the skip of a step with non-finite gradients. */
static int update(bprt_model *m, const char *what) {
  if (m->grads_scaled) {   /* the sum of accumulate_grad's micro-batches: checked once */
    unscale_grads(m);
    m->grads_scaled = false;
  }
  if (m->d->loss_scale_mode != BPRT_LOSS_SCALE_OFF && m->grads_bad) {
    m->step++;
    scaler_update(m, true);
    return BPRT_OK;
  }
  /* reads params, grads, opt_state and hyper only: no inputs, no workspace */
  int rc = run(m, m->d->update, m->last_batch > 0 ? m->last_batch : 1, NULL, NULL, NULL, m->step + 1);
  if (rc != BPRT_OK) {
    bprt_prefix_error("%s", what);
    return rc;
  }
  m->step++;
  if (m->d->loss_scale_mode != BPRT_LOSS_SCALE_OFF) scaler_update(m, false);
  return BPRT_OK;
}

int bprt_model_train_step(bprt_model *m, int64_t batch, const void *const *inputs, float *loss) {
  if (m && m->d->loss_scale_mode != BPRT_LOSS_SCALE_OFF && m->d->step) {
    /* the gradients are checked between the two halves */
    int rc = grad_or_step(m, m->d->grad, "train_step", batch, inputs, loss);
    if (rc != BPRT_OK) return rc;
    unscale_grads(m);
    return update(m, "train_step");
  }
  int rc = grad_or_step(m, m ? m->d->step : NULL, "train_step", batch, inputs, loss);
  if (rc == BPRT_OK) m->step++;
  return rc;
}

int bprt_model_update(bprt_model *m) {
  if (!m) return fail(BPRT_E_ARG, "update: NULL model");
  if (!m->d->update)
    return fail(BPRT_E_STATE, "update: %s: the model has no optimizer update (declare `loss` in it)", model_name(m));
  return update(m, "update");
}

const float *bprt_model_last_output(const bprt_model *m, int i) {
  if (!m || i < 0 || i >= m->d->noutputs || m->last_batch == 0) return NULL;
  return m->scratch_out[i];
}

/* ------------------------------------------------------- hyperparameters */

int bprt_model_set_hyper(bprt_model *m, int which, double value) {
  if (!m) return fail(BPRT_E_ARG, "set_hyper: NULL model");
  if (which < 0 || which >= BPRT_H_STEP)
    return fail(BPRT_E_RANGE, "%s: hyperparameter index %d is out of range [0, %d) (step is set with set_step; the "
                "loss scale is the loss scaler's)", model_name(m), which, BPRT_H_STEP);
  const char *bad = bprt_hyper_check(which, value);
  if (bad) return fail(BPRT_E_ARG, "%s: %s %s, got %g", model_name(m), bprt_hypers[which].name, bad, value);
  /* and the combinations torch.optim's constructor refuses (SGD's nesterov) */
  double trial[BPRT_H__COUNT];
  memcpy(trial, m->hyper, sizeof trial);
  trial[which] = value;
  bad = bprt_optimizer_check(m->d->optimizer, trial);
  if (bad)
    return fail(BPRT_E_ARG, "%s: %s %g: %s (%s)", model_name(m), bprt_hypers[which].name, value, bad,
                bprt_optimizers[m->d->optimizer].name);
  m->hyper[which] = value;
  return BPRT_OK;
}

int bprt_model_get_hyper(const bprt_model *m, int which, double *value) {
  if (!m || !value) return fail(BPRT_E_ARG, "get_hyper: NULL %s", m ? "value pointer" : "model");
  if (which < 0 || which >= BPRT_H__COUNT)
    return fail(BPRT_E_RANGE, "%s: hyperparameter index %d is out of range [0, %d)", model_name(m), which,
                BPRT_H__COUNT);
  *value = which == BPRT_H_STEP ? (double)m->step : which == BPRT_H_LOSS_SCALE ? m->scale : m->hyper[which];
  return BPRT_OK;
}

int bprt_model_set_lr(bprt_model *m, double lr) { return bprt_model_set_hyper(m, BPRT_H_LR, lr); }

int bprt_model_get_lr(const bprt_model *m, double *lr) { return bprt_model_get_hyper(m, BPRT_H_LR, lr); }

static int unknown_hyper(const char *model, const char *name) {
  char known[512] = "";
  for (int i = 0; i < BPRT_H_STEP; i++) {
    strcat(known, i ? ", " : "");
    strcat(known, bprt_hypers[i].name);
  }
  return fail(BPRT_E_RANGE, "%s: unknown hyperparameter '%s' (known: %s)", model, name, known);
}

int bprt_model_set_hyper_name(bprt_model *m, const char *name, double value) {
  if (!m || !name) return fail(BPRT_E_ARG, "set_hyper: NULL %s", m ? "name" : "model");
  int h = bprt_hyper_lookup(name);
  if (h < 0) return unknown_hyper(model_name(m), name);
  return bprt_model_set_hyper(m, h, value);
}

int bprt_model_get_hyper_name(const bprt_model *m, const char *name, double *value) {
  if (!m || !name || !value) return fail(BPRT_E_ARG, "get_hyper: NULL %s", !m ? "model" : !name ? "name" : "value pointer");
  int h = bprt_hyper_lookup(name);
  if (h < 0) return unknown_hyper(model_name(m), name);
  return bprt_model_get_hyper(m, h, value);
}

static int desc_tensor(const bprt_model_desc *d, bool output, int i, bprt_tensor_desc *out) {
  const char *what = output ? "output" : "input";
  if (!d || !out) return fail(BPRT_E_ARG, "%s_info: NULL %s", what, d ? "info pointer" : "descriptor");
  int n = output ? d->noutputs : d->ninputs;
  if (i < 0 || i >= n)
    return fail(BPRT_E_RANGE, "%s: %s index %d is out of range [0, %d)", d->model_name ? d->model_name : "model", what,
                i, n);
  *out = output ? d->outputs[i] : d->inputs[i];
  return BPRT_OK;
}

int bprt_desc_input(const bprt_model_desc *d, int i, bprt_tensor_desc *out) { return desc_tensor(d, false, i, out); }
int bprt_desc_output(const bprt_model_desc *d, int i, bprt_tensor_desc *out) { return desc_tensor(d, true, i, out); }

uint64_t bprt_model_get_step(const bprt_model *m) { return m ? m->step : 0; }

int64_t bprt_model_workspace_bytes(const bprt_model *m) {
  if (!m || !m->workspace) return 0;
  return m->d->ws_fixed + m->d->ws_per_batch * m->cap_batch;
}

int bprt_model_set_step(bprt_model *m, uint64_t step) {
  if (!m) return fail(BPRT_E_ARG, "set_step: NULL model");
  m->step = step;
  if (m->skipped > step) m->skipped = step;   /* the skipped steps are some of the steps */
  return BPRT_OK;
}

/* ------------------------------------------------------------- parameters */

/* out = what the ABI tells of descriptor p: its values at `values`, its gradient at
 * `grad` (NULL for a buffer) */
static void desc_info(const bprt_param_desc *p, float *values, float *grad, bprt_param_info *out) {
  memset(out, 0, sizeof *out);
  out->name = p->name;
  out->rank = p->rank;
  for (int k = 0; k < p->rank; k++) out->dims[k] = p->dims[k];
  out->numel = param_numel(p);
  out->values = values;
  out->grad = grad;
}

static int find_desc(const bprt_param_desc *d, int n, const char *name) {
  for (int i = 0; i < n; i++)
    if (!strcmp(d[i].name, name)) return i;
  return -1;
}

int bprt_model_param(const bprt_model *m, int i, bprt_param_info *out) {
  if (!m || !out) return fail(BPRT_E_ARG, "param: NULL %s", m ? "info pointer" : "model");
  if (i < 0 || i >= m->d->nparams)
    return fail(BPRT_E_RANGE, "%s: parameter index %d is out of range [0, %d)", model_name(m), i, (int)m->d->nparams);
  const bprt_param_desc *p = &m->d->params[i];
  desc_info(p, m->params + p->offset, m->grads + p->offset, out);
  return BPRT_OK;
}

int bprt_model_find_param(const bprt_model *m, const char *name) {
  return m && name ? find_desc(m->d->params, (int)m->d->nparams, name) : -1;
}

int bprt_model_buffer(const bprt_model *m, int i, bprt_param_info *out) {
  if (!m || !out) return fail(BPRT_E_ARG, "buffer: NULL %s", m ? "info pointer" : "model");
  if (i < 0 || i >= m->d->nbuffers)
    return fail(BPRT_E_RANGE, "%s: buffer index %d is out of range [0, %d)", model_name(m), i, (int)m->d->nbuffers);
  const bprt_param_desc *p = &m->d->buffers[i];
  desc_info(p, m->buffers + p->offset, NULL, out);
  return BPRT_OK;
}

int bprt_model_find_buffer(const bprt_model *m, const char *name) {
  return m && name ? find_desc(m->d->buffers, (int)m->d->nbuffers, name) : -1;
}

float *bprt_model_buffers(bprt_model *m) { return m ? m->buffers : NULL; }
float *bprt_model_params(bprt_model *m) { return m ? m->params : NULL; }
float *bprt_model_grads(bprt_model *m) { return m ? m->grads : NULL; }
float *bprt_model_opt_state(bprt_model *m) { return m ? m->opt_state : NULL; }

/* ------------------------------------------------------------- checkpoints */

/* "optim.<param>.<slot>" for every parameter and slot, in one allocation. */
static char **state_names(const bprt_model *m, int nslots) {
  int np = m->d->nparams;
  size_t bytes = sizeof(char *) * (size_t)(np * nslots + 1);
  size_t strbytes = 0;
  for (int k = 0; k < nslots; k++)
    for (int i = 0; i < np; i++)
      strbytes += strlen(m->d->params[i].name) + strlen(bprt_model_opt_slot_name(m->d, k)) + 8;
  char **names = bprt_malloc(bytes + strbytes + 1);
  if (!names) return NULL;
  char *s = (char *)names + bytes;
  for (int k = 0; k < nslots; k++)
    for (int i = 0; i < np; i++) {
      size_t n = strlen(m->d->params[i].name) + strlen(bprt_model_opt_slot_name(m->d, k)) + 8;
      snprintf(s, n, "optim.%s.%s", m->d->params[i].name, bprt_model_opt_slot_name(m->d, k));
      names[k * np + i] = s;
      s += n;
    }
  return names;
}

int bprt_model_save_meta(const bprt_model *m, const char *path, const char *const *keys,
                         const char *const *values, int nextra) {
  if (!m || !path) return fail(BPRT_E_ARG, "save: NULL %s", m ? "path" : "model");
  if (nextra < 0 || (nextra > 0 && (!keys || !values)))
    return fail(BPRT_E_ARG, "%s: save: bad extra metadata", model_name(m));
  const bprt_model_desc *d = m->d;
  int nslots = bprt_model_opt_slots(d);
  int nt = d->nparams * (1 + nslots) + d->nbuffers;
  BprtTensorRef *t = bprt_malloc(sizeof(BprtTensorRef) * (size_t)(nt + 1));
  BprtMeta *meta = bprt_malloc(sizeof(BprtMeta) * (size_t)(9 + nextra));
  char **names = state_names(m, nslots);
  if (!t || !meta || !names) {
    bprt_free(t);
    bprt_free(meta);
    bprt_free(names);
    return fail(BPRT_E_NOMEM, "%s: out of memory saving '%s'", model_name(m), path);
  }
  for (int k = -1; k < nslots; k++)
    for (int i = 0; i < d->nparams; i++) {
      const bprt_param_desc *p = &d->params[i];
      BprtTensorRef *r = &t[(k + 1) * d->nparams + i];
      memset(r, 0, sizeof *r);
      r->name = k < 0 ? p->name : names[k * d->nparams + i];
      r->rank = p->rank;
      for (int j = 0; j < p->rank; j++) r->dims[j] = p->dims[j];
      r->data = k < 0 ? m->params + p->offset : m->opt_state + (int64_t)k * d->param_floats + p->offset;
    }
  for (int i = 0; i < d->nbuffers; i++) {   /* after the rest, under their path names */
    const bprt_param_desc *p = &d->buffers[i];
    BprtTensorRef *r = &t[d->nparams * (1 + nslots) + i];
    memset(r, 0, sizeof *r);
    r->name = p->name;
    r->rank = p->rank;
    for (int j = 0; j < p->rank; j++) r->dims[j] = p->dims[j];
    r->data = m->buffers + p->offset;
  }
  char step[32], lr[40];
  snprintf(step, sizeof step, "%" PRIu64, m->step);
  snprintf(lr, sizeof lr, "%.17g", m->hyper[BPRT_H_LR]);
  int nm = 0;
  meta[nm++] = (BprtMeta){"format", CHECKPOINT_FORMAT};
  meta[nm++] = (BprtMeta){"format_version", CHECKPOINT_VERSION};
  meta[nm++] = (BprtMeta){"model", model_name(m)};
  meta[nm++] = (BprtMeta){"optimizer", bprt_optimizers[d->optimizer].name};
  meta[nm++] = (BprtMeta){"step", step};
  meta[nm++] = (BprtMeta){"lr", lr};
  /* the loss scaler: the scale with %.17g, so that it survives the round trip exactly */
  char skipped[32], scale[40], good[32];
  snprintf(skipped, sizeof skipped, "%" PRIu64, m->skipped);
  snprintf(scale, sizeof scale, "%.17g", m->scale);
  snprintf(good, sizeof good, "%" PRId64, m->good_steps);
  bool scaling = d->loss_scale_mode != BPRT_LOSS_SCALE_OFF;
  if (scaling || m->skipped > 0) meta[nm++] = (BprtMeta){"skipped_steps", skipped};
  if (scaling) {
    meta[nm++] = (BprtMeta){"loss_scale", scale};
    meta[nm++] = (BprtMeta){"loss_scale_good_steps", good};
  }
  for (int i = 0; i < nextra; i++) meta[nm++] = (BprtMeta){keys[i], values[i]};
  int rc = bprt_st_write(path, t, nt, meta, nm);
  bprt_free(t);
  bprt_free(meta);
  bprt_free(names);
  if (rc != 0) {
    bprt_prefix_error("%s: save", model_name(m));
    return BPRT_E_IO;
  }
  return BPRT_OK;
}

int bprt_model_save(const bprt_model *m, const char *path) {
  return bprt_model_save_meta(m, path, NULL, NULL, 0);
}

static int parse_u64(const char *s, uint64_t *out) {
  if (!s || !*s) return -1;
  uint64_t v = 0;
  for (const char *p = s; *p; p++) {
    if (*p < '0' || *p > '9' || v > (UINT64_MAX - (uint64_t)(*p - '0')) / 10) return -1;
    v = v * 10 + (uint64_t)(*p - '0');
  }
  *out = v;
  return 0;
}

/* The file holds exactly the tensors this model reads, each with its shape: the
 * parameters, and the optimizer state when it is a bpcc checkpoint (ours). skip_optim:
 * the file's optimizer tensors (`optim.*`) are read by nobody (a model that does not
 * train, or weights only) and passed over. The messages, which suggest the fix, are
 * ckmatch.c's. */
static int check_tensors(const bprt_model *m, const BprtCheckpoint *ck, bool ours, bool skip_optim, char **state,
                         int nslots) {
  const bprt_model_desc *d = m->d;
  int np = d->nparams * (ours ? 1 + nslots : 1), n = np + d->nbuffers;
  BprtTensorRef *need = bprt_calloc((size_t)n + 1, sizeof *need);
  if (!need) return bprt_prefix_error("%s", bprt_st_path(ck));
  for (int k = 0; k < n; k++) {
    const bprt_param_desc *p = k >= np ? &d->buffers[k - np] : &d->params[k % d->nparams];
    need[k].name = k >= np || k < d->nparams ? p->name : state[k - d->nparams];
    need[k].rank = p->rank;
    for (int j = 0; j < p->rank; j++) need[k].dims[j] = p->dims[j];
  }
  int rc = bprt_st_match(ck, model_name(m), need, n, skip_optim ? "optim." : NULL);
  bprt_free(need);
  return rc;
}

/* The first non-finite value of a loaded block, named: a NaN or an infinity in the
 * weights would only surface as a NaN loss many steps later (or a silent NaN output of
 * an inference library), far from the file that brought it. names: the optimizer
 * state's tensor names (state_names), NULL to check the parameters only. */
static int check_finite(const bprt_model *m, const char *path, const float *params, const float *state,
                        char *const *names, int nslots, const float *buffers) {
  const bprt_model_desc *d = m->d;
  for (int k = -1; k < (state ? nslots : 0); k++)
    for (int i = 0; i < d->nparams; i++) {
      const bprt_param_desc *p = &d->params[i];
      const float *x = k < 0 ? params + p->offset : state + (int64_t)k * d->param_floats + p->offset;
      int64_t n = param_numel(p);
      for (int64_t j = 0; j < n; j++)
        if (!isfinite(x[j]))
          return fail(BPRT_E_CHECKPOINT, "%s: tensor '%s' holds a non-finite value (%s at flat index %lld)", path,
                      k < 0 ? p->name : names[k * d->nparams + i], isnan(x[j]) ? "nan" : x[j] > 0 ? "inf" : "-inf",
                      (long long)j);
    }
  for (int i = 0; buffers && i < d->nbuffers; i++) {
    const bprt_param_desc *p = &d->buffers[i];
    const float *x = buffers + p->offset;
    for (int64_t j = 0; j < param_numel(p); j++)
      if (!isfinite(x[j]))
        return fail(BPRT_E_CHECKPOINT, "%s: tensor '%s' holds a non-finite value (%s at flat index %lld)", path, p->name,
                    isnan(x[j]) ? "nan" : x[j] > 0 ? "inf" : "-inf", (long long)j);
  }
  return BPRT_OK;
}

static int load(bprt_model *m, const char *path, struct BprtCheckpoint **ck_out, bool weights_only);

/* The loss scaler's state in a bpcc checkpoint's metadata, each key optional (files from
 * before it, or of a model without loss scaling): skipped_steps (at most step),
 * loss_scale (a scale bprt_loss_scale_check accepts), loss_scale_good_steps (below the
 * growth interval). */
typedef struct {
  uint64_t skipped;
  bool has_scale;
  double scale;
  int64_t good;
} ScalerState;

static int load_scaler(const BprtCheckpoint *ck, const char *path, uint64_t step, ScalerState *s) {
  memset(s, 0, sizeof *s);
  const char *v = bprt_st_meta(ck, "skipped_steps");
  if (v && (parse_u64(v, &s->skipped) != 0 || s->skipped > step))
    return fail(BPRT_E_CHECKPOINT, "%s: metadata 'skipped_steps' is not a count of at most the %" PRIu64 " steps: '%s'",
                path, step, v);
  if ((v = bprt_st_meta(ck, "loss_scale"))) {
    char *end;
    s->scale = strtod(v, &end);
    if (end == v || *end || isspace((unsigned char)v[0]) || bprt_loss_scale_check(s->scale))
      return fail(BPRT_E_CHECKPOINT, "%s: metadata 'loss_scale' is not a positive scale within f32's range: '%s'", path, v);
    s->has_scale = true;
  }
  uint64_t good = 0;
  if ((v = bprt_st_meta(ck, "loss_scale_good_steps")) &&
      (parse_u64(v, &good) != 0 || good >= BPRT_LOSS_SCALE_GROWTH_INTERVAL))
    return fail(BPRT_E_CHECKPOINT, "%s: metadata 'loss_scale_good_steps' is not a count below %d: '%s'", path,
                BPRT_LOSS_SCALE_GROWTH_INTERVAL, v);
  s->good = (int64_t)good;
  return BPRT_OK;
}

int bprt_model_load_ck(bprt_model *m, const char *path, struct BprtCheckpoint **ck_out) {
  return load(m, path, ck_out, false);
}

int bprt_model_load_weights(bprt_model *m, const char *path) { return load(m, path, NULL, true); }

/* weights_only: the parameters alone, by name, whatever the file's metadata says (a
 * bpcc checkpoint of another model or optimizer, a file PyTorch wrote): its optim.*
 * tensors are passed over, the optimizer state is reset and the step is 0. */
static int load(bprt_model *m, const char *path, struct BprtCheckpoint **ck_out, bool weights_only) {
  if (ck_out) *ck_out = NULL;
  if (!m || !path) return fail(BPRT_E_ARG, "load: NULL %s", m ? "path" : "model");
  const bprt_model_desc *d = m->d;
  BprtCheckpoint *ck = bprt_st_read(path);
  if (!ck) {
    bprt_prefix_error("%s: load", model_name(m));
    return BPRT_E_CHECKPOINT;
  }
  const char *format = weights_only ? NULL : bprt_st_meta(ck, "format");
  bool ours = format != NULL;
  /* optim.* tensors that are read by nobody: a model that does not train, or weights only */
  bool skip_optim = (ours && !d->grad) || weights_only;
  int rc = BPRT_OK;
  uint64_t step = 0;
  ScalerState scaler = {0, false, 0, 0};
  if (ours) {
    const char *ver = bprt_st_meta(ck, "format_version");
    const char *model = bprt_st_meta(ck, "model");
    const char *opt = bprt_st_meta(ck, "optimizer");
    if (strcmp(format, CHECKPOINT_FORMAT) != 0)
      rc = fail(BPRT_E_CHECKPOINT, "%s: metadata format is '%s', expected '%s'", path, format, CHECKPOINT_FORMAT);
    else if (!ver || strcmp(ver, CHECKPOINT_VERSION) != 0)
      rc = fail(BPRT_E_CHECKPOINT, "%s: checkpoint format version '%s' is not supported (this runtime reads %s)", path,
                ver ? ver : "(missing)", CHECKPOINT_VERSION);
    else if (!model || strcmp(model, model_name(m)) != 0)
      rc = fail(BPRT_E_CHECKPOINT, "%s: checkpoint is for model '%s', not '%s'", path, model ? model : "(unnamed)",
                model_name(m));
    else if (d->grad && (!opt || strcmp(opt, bprt_optimizers[d->optimizer].name) != 0))
      rc = fail(BPRT_E_CHECKPOINT, "%s: checkpoint holds %s optimizer state; this model trains with %s", path,
                opt ? opt : "(no)", bprt_optimizers[d->optimizer].name);
    else if (parse_u64(bprt_st_meta(ck, "step"), &step) != 0)
      rc = fail(BPRT_E_CHECKPOINT, "%s: metadata 'step' is not a count: '%s'", path,
                bprt_st_meta(ck, "step") ? bprt_st_meta(ck, "step") : "(missing)");
    else
      rc = load_scaler(ck, path, step, &scaler);
  }
  /* load into fresh blocks, then swap: the model changes only when everything fit */
  float *params = NULL, *state = NULL, *buffers = NULL;
  char **names = NULL;
  int nslots = bprt_model_opt_slots(d);
  if (rc == BPRT_OK) {
    params = alloc_block(d->param_floats);
    state = alloc_block(d->opt_state_floats);
    buffers = d->nbuffers > 0 ? alloc_block(d->buffer_floats) : NULL;
    names = state_names(m, nslots);
    if (!params || !state || !names || (d->nbuffers > 0 && !buffers)) rc = fail(BPRT_E_NOMEM, "%s: out of memory loading '%s'", model_name(m), path);
  }
  if (rc == BPRT_OK && check_tensors(m, ck, ours, skip_optim, names, nslots) != 0) rc = BPRT_E_CHECKPOINT;
  if (rc == BPRT_OK) memcpy(params, m->params, sizeof(float) * (size_t)d->param_floats);
  for (int i = 0; rc == BPRT_OK && i < d->nparams; i++) {
    const bprt_param_desc *p = &d->params[i];
    if (bprt_st_load(ck, p->name, params + p->offset, p->rank, p->dims) != 0) rc = BPRT_E_CHECKPOINT;
  }
  for (int i = 0; rc == BPRT_OK && i < d->nbuffers; i++) {   /* running statistics: with the weights */
    const bprt_param_desc *p = &d->buffers[i];
    if (bprt_st_load(ck, p->name, buffers + p->offset, p->rank, p->dims) != 0) rc = BPRT_E_CHECKPOINT;
  }
  if (rc == BPRT_OK && ours) {
    for (int k = 0; rc == BPRT_OK && k < nslots; k++)
      for (int i = 0; rc == BPRT_OK && i < d->nparams; i++) {
        const bprt_param_desc *p = &d->params[i];
        if (bprt_st_load(ck, names[k * d->nparams + i], state + (int64_t)k * d->param_floats + p->offset, p->rank,
                         p->dims) != 0)
          rc = BPRT_E_CHECKPOINT;
      }
  }
  if (rc == BPRT_OK) rc = check_finite(m, path, params, ours ? state : NULL, names, nslots, buffers);
  if (rc == BPRT_OK) {
    float *tmp = m->params;
    m->params = params;
    params = tmp;
    tmp = m->buffers;
    m->buffers = buffers;
    buffers = tmp;
    if (ours) {
      tmp = m->opt_state;
      m->opt_state = state;
      state = tmp;
    } else {
      fill_opt_state(m);
    }
    m->step = step;
    /* the scaler: a dynamic scale goes on from the file's; a fixed one is this model's */
    m->skipped = scaler.skipped;
    m->scale = d->loss_scale_mode == BPRT_LOSS_SCALE_OFF ? 1.0 : d->loss_scale;
    m->good_steps = 0;
    if (d->loss_scale_mode == BPRT_LOSS_SCALE_DYNAMIC && scaler.has_scale) {
      m->scale = scaler.scale;
      m->good_steps = scaler.good;
    }
    m->grads_bad = m->last_skipped = false;
  }
  if (rc != BPRT_OK) bprt_prefix_error("%s: load", model_name(m));
  bprt_free(params);
  bprt_free(state);
  bprt_free(buffers);
  bprt_free(names);
  if (rc == BPRT_OK && ck_out)
    *ck_out = ck;
  else
    bprt_st_free(ck);
  return rc;
}

int bprt_model_load(bprt_model *m, const char *path) { return bprt_model_load_ck(m, path, NULL); }
