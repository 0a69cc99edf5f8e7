/* runtime/train.c — the training loop of `bpcc train`.
 *
 * One idea: everything that decides the next step is a function of (seed, epoch, step)
 * and of the three float blocks (params, optimizer state) — the shuffle of epoch e is
 * Philox(seed, shuffle stream e), dropout masks are Philox(seed, step), the learning rate
 * is the schedule's state — so a checkpoint holding those blocks and (epoch, step,
 * schedule) lets a resumed run continue bit for bit.
 *
 * The loop, per epoch e (0-based):
 *   1. lr = schedule(e); batches of a permutation drawn from (seed, e), the last one
 *      partial;
 *   2. per batch: the step entry point (forward, backward, update) through the model
 *      object; the loss, the outputs and the gradients checked for non-finite values;
 *      running loss and accuracy; the progress bar; a CSV row with --log-steps;
 *   3. at the end: validation loss and accuracy, the schedule's epoch end (plateau sees
 *      the validation loss), --watch statistics, the epoch line and CSV row, and a
 *      checkpoint every --save-every epochs and after the last.
 * A non-finite value stops the loop before any checkpoint is written, so the last good
 * checkpoint stays in place. A step is loss_and_grad, a check of the loss, outputs and
 * gradients, then the update: a bad step leaves the parameters as they were, and a
 * caller's hook (on_nonfinite) gets the batch and those parameters to name the first
 * tensor that went bad. */
#include "runtime/train.h"

#include "runtime/fxsum.h"
#include "runtime/progress.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------ small helpers */

static double now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int64_t numel_of(int rank, const int64_t *dims, int64_t batch) {
  int64_t n = 1;
  for (int i = 0; i < rank; i++) n *= dims[i] == BPRT_DIM_BATCH ? batch : dims[i];
  return n;
}

void bprt_train_options_defaults(BprtTrainOptions *o) {
  memset(o, 0, sizeof *o);
  o->epochs = 1;
  o->batch = 32;
  o->accumulate = 1;
  o->seed = 0;
  bprt_schedule_init(&o->schedule, BPRT_SCHED_CONSTANT, 1e-3);
  o->progress = -1;
}

void bprt_microbatch(int64_t rows, int64_t n, int64_t j, int64_t *start, int64_t *count) {
  if (rows < 0) rows = 0;
  if (n < 1) n = 1;
  if (j < 0) j = 0;
  if (j > n) j = n;
  int64_t q = rows / n, r = rows % n;
  *start = j * q + (j < r ? j : r);
  *count = j < n ? q + (j < r ? 1 : 0) : 0;
}

/* ------------------------------------------------------- data against model inputs */

/* Which model input gets the features, which the labels or targets, and which output
 * is scored for accuracy: with C-class labels the first [B, C] output, by its argmax;
 * with float targets the output the compiler marked as a sigmoid of the targets' shape
 * (desc->sigmoid_output), element by element at threshold 0.5. */
typedef struct {
  int xin, yin;          /* input indices; yin -1 when the model takes features only */
  int acc_out;           /* output index, -1: no accuracy */
  bool threshold;        /* acc_out is a sigmoid scored element-wise at 0.5 */
  int64_t nclasses;
  int64_t out_width;     /* floats per row of acc_out */
} Binding;

static int bind(const bprt_model_desc *d, Binding *b) {
  memset(b, 0, sizeof *b);
  b->xin = b->yin = b->acc_out = -1;
  if (d->ninputs < 1 || d->ninputs > 2)
    return bprt_set_error("model %s has %d inputs; bpcc train feeds 1 (features) or 2 (features, then labels or targets)",
                          d->model_name, (int)d->ninputs);
  for (int i = 0; i < d->ninputs; i++)
    if (d->inputs[i].is_label) b->yin = i;
  for (int i = 0; i < d->ninputs; i++)
    if (i != b->yin && b->xin < 0) b->xin = i;
  if (b->xin < 0) return bprt_set_error("model %s has no feature input (every input is a label)", d->model_name);
  if (b->yin < 0 && d->ninputs == 2) b->yin = 1 - b->xin;
  if (b->yin >= 0 && d->inputs[b->yin].is_label) {
    const bprt_tensor_desc *y = &d->inputs[b->yin];
    b->nclasses = y->dims[y->rank - 1];
    for (int k = 0; k < d->noutputs; k++) {
      const bprt_tensor_desc *t = &d->outputs[k];
      if (t->rank == 2 && t->dims[0] == BPRT_DIM_BATCH && t->dims[1] == b->nclasses) {
        b->acc_out = k;
        b->out_width = b->nclasses;
        break;
      }
    }
  } else if (b->yin >= 0 && d->sigmoid_output > 0 && d->sigmoid_output <= d->noutputs) {
    const bprt_tensor_desc *y = &d->inputs[b->yin], *t = &d->outputs[d->sigmoid_output - 1];
    bool same = t->rank == y->rank;
    for (int i = 0; same && i < t->rank; i++) same = t->dims[i] == y->dims[i];
    if (same) {
      b->acc_out = d->sigmoid_output - 1;
      b->threshold = true;
      b->out_width = numel_of(t->rank, t->dims, 1);
    }
  }
  return 0;
}

/* "label[B,64,256]" */
static void tensor_str(const bprt_tensor_desc *t, char *buf, size_t n) {
  size_t k = (size_t)snprintf(buf, n, "%s[", t->is_label ? "label" : "f32");
  for (int i = 0; i < t->rank && k < n; i++)
    k += t->dims[i] == BPRT_DIM_BATCH ? (size_t)snprintf(buf + k, n - k, "%sB", i ? "," : "")
                                      : (size_t)snprintf(buf + k, n - k, "%s%" PRId64, i ? "," : "", t->dims[i]);
  if (k < n) snprintf(buf + k, n - k, "]");
}

/* Text data feeds a language model: two inputs label[B, T, 256] (the tokens, then the
 * tokens that follow them), the same T. The model's T, or -1 with the reason. */
static int64_t text_model_seq(const bprt_model_desc *d) {
  bool ok = d->ninputs == 2;
  for (int i = 0; ok && i < 2; i++) {
    const bprt_tensor_desc *t = &d->inputs[i];
    ok = t->is_label && t->rank == 3 && t->dims[0] == BPRT_DIM_BATCH && t->dims[1] == d->inputs[0].dims[1];
  }
  char have[600];
  size_t k = 0;
  have[0] = 0;
  for (int i = 0; i < d->ninputs && k < sizeof have; i++) {
    char ty[160];
    tensor_str(&d->inputs[i], ty, sizeof ty);
    k += (size_t)snprintf(have + k, sizeof have - k, "%s%s: %s", i ? ", " : "", d->inputs[i].name, ty);
  }
  if (!ok)
    return bprt_set_error("text data feeds two inputs label[B, T, 256] (the bytes of a window, then the bytes that "
                          "follow them); model %s has %s", d->model_name, k ? have : "no inputs");
  for (int i = 0; i < 2; i++)
    if (d->inputs[i].dims[2] != 256)
      return bprt_set_error("text data has a vocabulary of 256 (bytes); model input %s has %" PRId64 " classes (%s)",
                            d->inputs[i].name, d->inputs[i].dims[2], have);
  return d->inputs[0].dims[1];
}

int bprt_train_bind_text(const bprt_model_desc *d, BprtDataset *ds) {
  if (!d || !ds) return bprt_set_error("bprt_train_bind_text: NULL argument");
  if (!ds->text) return 0;
  int64_t seq = text_model_seq(d);
  if (seq < 0) return bprt_prefix_error("%s", ds->source);
  if (bprt_text_bind(ds, seq)) {
    if (ds->text->seq != seq) {   /* seq= of the SPEC against the model */
      char ty[160];
      tensor_str(&d->inputs[0], ty, sizeof ty);
      return bprt_set_error("text:%s: seq=%" PRId64 " does not match model %s's context T = %" PRId64 " (input %s: %s)",
                            ds->text->path, ds->text->seq, d->model_name, seq, d->inputs[0].name, ty);
    }
    return -1;
  }
  return 0;
}

int bprt_train_check_data(const bprt_model_desc *d, const BprtDataset *ds) {
  Binding b;
  if (ds && ds->text) {
    int64_t seq = text_model_seq(d);
    if (seq < 0) return bprt_prefix_error("%s", ds->source);
    if (ds->text->seq != seq || ds->n < 1)
      return bprt_set_error("%s: the windows are not bound to the model's context T = %" PRId64 " (bprt_train_bind_text)",
                            ds->source, seq);
    return 0;
  }
  if (bind(d, &b)) return -1;
  const bprt_tensor_desc *x = &d->inputs[b.xin];
  if (bprt_data_check_x(ds, x->name, x->rank, x->dims)) return bprt_prefix_error("%s", ds->source);
  if (b.yin >= 0) {
    const bprt_tensor_desc *y = &d->inputs[b.yin];
    int rc = bprt_data_check_y(ds, y->name, y->is_label != 0, y->rank, y->dims);
    if (rc == -2) return -1;   /* "a.csv:9: ...": located already */
    if (rc) return bprt_prefix_error("%s", ds->source);
  }
  return 0;
}

/* The inputs array of one batch. */
static void set_inputs(const Binding *b, const BprtBatchIter *it, const void **inputs) {
  if (it->xtok) {   /* text: the window's bytes, then the bytes that follow them */
    inputs[0] = it->xtok;
    inputs[1] = it->ytok;
    return;
  }
  inputs[b->xin] = it->x;
  if (b->yin >= 0) inputs[b->yin] = it->labels ? (const void *)it->labels : (const void *)it->targets;
}

/* Correct predictions of a batch, and how many predictions were scored (*scored):
 * labels: the argmax of each row of the scored output (the first maximum wins, as
 * torch.argmax) against the row's label, one prediction per row; float targets and a
 * sigmoid output: every element, (p >= 0.5) against (t >= 0.5). Nothing is scored
 * without an accuracy output or without labels or targets in the batch. */
static int64_t count_correct(const Binding *b, const float *out, const BprtBatchIter *it, int64_t *scored) {
  int64_t c = 0;
  *scored = 0;
  if (b->acc_out < 0) return 0;
  if (b->threshold && it->targets) {
    int64_t n = it->rows * b->out_width;
    for (int64_t i = 0; i < n; i++) c += (out[i] >= 0.5f) == (it->targets[i] >= 0.5f);
    *scored = n;
  } else if (!b->threshold && it->labels) {
    for (int64_t r = 0; r < it->rows; r++) {
      const float *row = out + r * b->out_width;
      int64_t best = 0;
      for (int64_t k = 1; k < b->out_width; k++)
        if (row[k] > row[best]) best = k;
      c += best == it->labels[r];
    }
    *scored = it->rows;
  }
  return c;
}

/* Output buffers for batches of up to `batch` rows. */
typedef struct {
  int n;
  float **out;
} Outputs;

static int outputs_alloc(const bprt_model_desc *d, int64_t batch, Outputs *o) {
  o->n = d->noutputs;
  o->out = bprt_calloc((size_t)(d->noutputs > 0 ? d->noutputs : 1), sizeof(float *));
  if (!o->out) return -1;
  for (int k = 0; k < d->noutputs; k++) {
    const bprt_tensor_desc *t = &d->outputs[k];
    o->out[k] = bprt_malloc(sizeof(float) * (size_t)numel_of(t->rank, t->dims, batch));
    if (!o->out[k]) return -1;
  }
  return 0;
}

static void outputs_free(Outputs *o) {
  if (!o->out) return;
  for (int k = 0; k < o->n; k++) bprt_free(o->out[k]);
  bprt_free(o->out);
  o->out = NULL;
}

/* ------------------------------------------------------------ gradient accumulation */


/* --------------------------------------------------------------------- evaluation */

/* Loss (row-weighted mean of the batch losses) and accuracy over d, in inference mode
 * (dropout the identity): the forward entry with the loss (bprt_model_eval). */
static int evaluate(bprt_model *m, const Binding *b, const BprtDataset *d, int64_t batch, Outputs *outs, double *loss,
                    double *acc) {
  const bprt_model_desc *desc = bprt_model_get_desc(m);
  BprtBatchIter it;
  if (bprt_batch_begin(&it, d, batch, false, 0, 0)) return -1;
  const void *inputs[2] = {0, 0};
  double sum = 0;
  int64_t correct = 0, scored = 0, rows = 0;
  int rc = 0;
  while (bprt_batch_next(&it) > 0) {
    set_inputs(b, &it, inputs);
    float l = 0;
    if (bprt_model_eval(m, it.rows, inputs, outs->out, &l)) {
      rc = -1;
      break;
    }
    sum += (double)l * (double)it.rows;
    int64_t k = 0;
    if (b->acc_out >= 0) correct += count_correct(b, outs->out[b->acc_out], &it, &k);
    scored += k;
    rows += it.rows;
  }
  bprt_batch_end(&it);
  (void)desc;
  if (rc) return -1;
  *loss = rows ? sum / (double)rows : NAN;
  *acc = scored ? (double)correct / (double)scored : NAN;
  return 0;
}

/* evaluate() shared out over the ranks of a data-parallel run: batch k (in batches of
 * `batch` rows, in order) on rank k mod size, its loss times rows, correct and scored
 * predictions and rows in slots of its own, summed over the ranks (exact: one rank
 * writes each slot), then added up in batch order as one process adds them, so every
 * rank gets what one process evaluating alone gets, bit for bit. */
static int evaluate_shared(bprt_model *m, const Binding *b, const BprtDataset *d, int64_t batch, Outputs *outs,
                           BprtComm *c, const char *where, double *loss, double *acc) {
  BprtBatchIter it;
  if (bprt_batch_begin(&it, d, batch, false, 0, 0)) return -1;
  int64_t nb = bprt_batch_count(&it);
  double *v = bprt_calloc((size_t)(nb > 0 ? nb : 1) * 4, sizeof(double));
  const void *inputs[2] = {0, 0};
  int rc = v ? 0 : -1;
  for (int64_t k = c->rank; rc == 0 && k < nb; k += c->size) {
    it.pos = k * batch;
    it.index = k;
    if (bprt_batch_next(&it) <= 0) break;
    set_inputs(b, &it, inputs);
    float l = 0;
    if (bprt_model_eval(m, it.rows, inputs, outs->out, &l)) {
      rc = -1;
      break;
    }
    int64_t sc = 0, cc = b->acc_out >= 0 ? count_correct(b, outs->out[b->acc_out], &it, &sc) : 0;
    v[4 * k] = (double)l * (double)it.rows;
    v[4 * k + 1] = (double)cc;
    v[4 * k + 2] = (double)sc;
    v[4 * k + 3] = (double)it.rows;
  }
  bprt_batch_end(&it);
  /* a rank that failed still takes part, so that the others do not wait for it */
  char err[512];
  snprintf(err, sizeof err, "%s", bprt_last_error());
  if (v && c->sum(c, v, nb * 4, where)) rc = -1;
  else if (rc) bprt_set_error("%s", err);
  double sum = 0, correct = 0, scored = 0, rows = 0;
  for (int64_t k = 0; rc == 0 && k < nb; k++) {
    sum += v[4 * k];
    correct += v[4 * k + 1];
    scored += v[4 * k + 2];
    rows += v[4 * k + 3];
  }
  bprt_free(v);
  if (rc) return -1;
  *loss = rows ? sum / rows : NAN;
  *acc = scored ? correct / scored : NAN;
  return 0;
}

int bprt_evaluate(bprt_model *m, const BprtDataset *d, int64_t batch, double *loss, double *accuracy) {
  if (!m || !d || !loss || !accuracy) return bprt_set_error("bprt_evaluate: NULL argument");
  if (batch < 1) return bprt_set_error("batch %" PRId64 ": must be >= 1", batch);
  if (batch > d->n) batch = d->n;   /* one batch of every row: the buffers fit the data */
  const bprt_model_desc *desc = bprt_model_get_desc(m);
  Binding b;
  if (bprt_train_check_data(desc, d)) return -1;
  if (!d->text) bind(desc, &b);
  else if (!d->text_val) return bprt_set_error("%s: evaluation reads the validation windows", d->source);
  else b = (Binding){0, 1, -1, false, 256, 0};
  Outputs outs = {0, NULL};
  int rc = outputs_alloc(desc, batch, &outs) ? -1 : evaluate(m, &b, d, batch, &outs, loss, accuracy);
  outputs_free(&outs);
  return rc;
}

/* -------------------------------------------------------------- non-finite values */

static bool all_finite(const float *x, int64_t n) {
  /* A float is NaN or infinite exactly when its exponent bits are all ones; an integer OR
   * reduction vectorizes (a float sum would be a chain of dependent adds). */
  uint32_t bad = 0;
  for (int64_t i = 0; i < n; i++) {
    uint32_t b;
    memcpy(&b, &x[i], sizeof b);
    bad |= (uint32_t)((b & 0x7f800000u) == 0x7f800000u);
  }
  return bad == 0;
}

/* Name the first non-finite tensor in the order the step computed them: the outputs
 * (forward), the loss, the gradients from the last parameter back to the first
 * (backward), then the updated parameters. `what` from the caller's hook (the first
 * instruction that went non-finite) takes precedence. The sentence ends with what
 * became of the checkpoints: saved_epoch > 0 is the epoch of the last one this run
 * wrote (left in place); otherwise none was written, and a file already at the save
 * path or the checkpoint resumed from is untouched. */
static int report_nonfinite(bprt_model *m, const float *const *outs, int64_t rows, float loss, int64_t step, int64_t epoch,
                            int64_t batch_index, int64_t nbatches, const BprtTrainOptions *o, int64_t saved_epoch,
                            const char *hook_what) {
  const bprt_model_desc *d = bprt_model_get_desc(m);
  char what[512];
  what[0] = 0;
  if (hook_what && hook_what[0]) snprintf(what, sizeof what, "%s", hook_what);
  for (int k = 0; k < d->noutputs && !what[0]; k++) {
    const bprt_tensor_desc *t = &d->outputs[k];
    if (!all_finite(outs[k], numel_of(t->rank, t->dims, rows)))
      snprintf(what, sizeof what, "output '%s'", t->name);
  }
  if (!what[0] && !isfinite(loss)) snprintf(what, sizeof what, "the loss (%g)", (double)loss);
  const float *g = bprt_model_grads(m), *p = bprt_model_params(m);
  for (int i = d->nparams - 1; i >= 0 && !what[0]; i--) {
    const bprt_param_desc *pd = &d->params[i];
    if (!all_finite(g + pd->offset, numel_of(pd->rank, pd->dims, 1)))
      snprintf(what, sizeof what, "the gradient of '%s' (%s)", pd->name, pd->loc ? pd->loc : "?");
  }
  for (int i = 0; i < d->nparams && !what[0]; i++) {
    const bprt_param_desc *pd = &d->params[i];
    if (!all_finite(p + pd->offset, numel_of(pd->rank, pd->dims, 1)))
      snprintf(what, sizeof what, "parameter '%s' after the update (%s)", pd->name, pd->loc ? pd->loc : "?");
  }
  if (!what[0]) return 0;
  char ck[4200];
  if (saved_epoch > 0)   /* a run by steps: the step of the last checkpoint */
    snprintf(ck, sizeof ck, "the last good checkpoint '%s' (%s %" PRId64 ") is left as it was", o->save_path,
             o->steps > 0 ? "step" : "epoch", saved_epoch);
  else if (o->resume_path)
    snprintf(ck, sizeof ck, "no checkpoint was written (the one resumed from, '%s', is left as it was)", o->resume_path);
  else if (o->save_path && access(o->save_path, F_OK) == 0)
    snprintf(ck, sizeof ck, "no checkpoint was written ('%s', from before, is left as it was)", o->save_path);
  else
    snprintf(ck, sizeof ck, "no checkpoint was written");
  if (epoch == 0)   /* text data by steps: no epochs, no batches of them */
    return bprt_set_error("non-finite value at step %" PRId64 ": first in %s; training stopped, %s", step, what, ck);
  return bprt_set_error("non-finite value at step %" PRId64 " (epoch %" PRId64 ", batch %" PRId64 " of %" PRId64
                        "): first in %s; training stopped, %s",
                        step, epoch, batch_index, nbatches, what, ck);
}

/* The loss, the outputs and the gradients of a step are finite (checked before the
 * update, so a bad step leaves the parameters as they were). */
/* The loss, the outputs and the gradients of a step are finite (checked before the
 * update, so a bad step leaves the parameters as they were). */
static bool grads_finite(bprt_model *m, const float *const *outs, int64_t rows, float loss) {
  if (!isfinite(loss)) return false;
  const bprt_model_desc *d = bprt_model_get_desc(m);
  for (int k = 0; k < d->noutputs; k++) {
    const bprt_tensor_desc *t = &d->outputs[k];
    if (!all_finite(outs[k], numel_of(t->rank, t->dims, rows))) return false;
  }
  return all_finite(bprt_model_grads(m), d->param_floats);
}

/* Loss scaling: the step's gradients went non-finite while its loss and outputs did
 * not, and the model skips such steps (the update that follows leaves the parameters). */
static bool scaler_skips(bprt_model *m, const float *const *outs, int64_t rows, float loss) {
  const bprt_model_desc *d = bprt_model_get_desc(m);
  if (d->loss_scale_mode == BPRT_LOSS_SCALE_OFF || !isfinite(loss)) return false;
  for (int k = 0; k < d->noutputs; k++) {
    const bprt_tensor_desc *t = &d->outputs[k];
    if (!all_finite(outs[k], numel_of(t->rank, t->dims, rows))) return false;
  }
  return true;
}

/* After a skipped step (the scaler has moved): its line, and the count of skips in a row
 * (past BPRT_TRAIN_MAX_SKIPS, `what` says why the loop stops; else it is ""). */
static void note_skip(bprt_model *m, BprtProgress *pr, const BprtTrainOptions *o, int64_t step, double before,
                      int64_t *in_row, BprtTrainResult *r, char *what, size_t n) {
  r->skipped++;
  (*in_row)++;
  what[0] = 0;
  double now = bprt_model_loss_scale(m);
  if (!o->quiet) {
    char line[256];
    if (now != before)
      snprintf(line, sizeof line, "step %" PRId64 ": gradients not finite at loss scale %.9g; update skipped, loss scale now %.9g",
               step, before, now);
    else
      snprintf(line, sizeof line, "step %" PRId64 ": gradients not finite at loss scale %.9g (fixed); update skipped", step,
               before);
    bprt_progress_print(pr, line);
  }
  if (*in_row >= BPRT_TRAIN_MAX_SKIPS)
    snprintf(what, n, "the gradients of %d steps in a row, skipped by loss scaling down to scale %.9g (no scale makes "
             "them finite)", BPRT_TRAIN_MAX_SKIPS, now);
}

/* The report of a loop stopped by skipped steps: the hook's first non-finite tensor
 * (in what), followed by why the loop gave up; without the hook's, the reason alone. */
static void skip_report(char *what, size_t n, const char *skip_what) {
  if (!skip_what[0]) return;
  if (!what[0]) {
    snprintf(what, n, "%s", skip_what);
    return;
  }
  size_t k = strlen(what);
  snprintf(what + k, n - k, ", at the last of %s", skip_what);
}

/* ------------------------------------------------------------- data parallelism */

/* Statistics of one optimizer step, a slot per rank (sums over its rows), summed by
 * BprtComm.step_end: each slot is written by one rank, so the sum is exact and the
 * same on every rank. */
enum { DS_LOSS, DS_CORRECT, DS_SCORED, DS_ROWS, DS_BAD, DS_STOP, DS__COUNT };

/* The rows [start, start + count) of a batch as a batch of their own (the same
 * buffers; row data and text windows alike). */
static BprtBatchIter batch_part(const BprtBatchIter *it, const BprtDataset *d, int64_t start, int64_t count) {
  BprtBatchIter p = *it;
  p.rows = count;
  if (it->x) p.x = it->x + start * d->nfeat;
  if (it->labels) p.labels = it->labels + start;
  if (it->targets) p.targets = it->targets + start * d->twidth;
  if (it->xtok) {
    int64_t seq = d->text ? d->text->seq : 0;
    p.xtok = it->xtok + start * seq;
    p.ytok = it->ytok + start * seq;
  }
  return p;
}

/* Rows of a global batch: micro-batches of `batch` rows, ranks x accumulate of them (one
 * in a plain run), at most the n rows of the data. */
static int64_t global_batch(const BprtTrainOptions *o, int64_t batch, int64_t n) {
  if (!o->comm && !o->deterministic && o->accumulate <= 1) return batch;
  int64_t k = (o->comm ? o->comm->size : 1) * (o->accumulate > 1 ? o->accumulate : 1);
  return batch <= n / k ? batch * k : n;
}

/* One optimizer step's gradients over a global batch of it->rows rows, split into
 * size * N micro-batches (bprt_microbatch; N = o->accumulate): this rank trains
 * micro-batches rank*N .. rank*N + N - 1, each weighted by its rows / rows, so that the
 * sum over every micro-batch of every rank is the gradient of the global batch's mean
 * loss; a rank whose micro-batches are empty (the last, short batch) contributes zeros
 * and still takes part. The sum:
 *   float             added up in the gradient block, then summed over the ranks
 *                     (BprtComm.step_end; its buckets leave during the rank's last
 *                     micro-batch, from the grad-ready hook);
 *   --deterministic-reduce   each micro-batch's gradient added exactly into the
 *                     fixed-point accumulator fx (runtime/fxsum.h), summed exactly over
 *                     the ranks, rounded once to f32: the same bits for any split of
 *                     the same micro-batches over ranks and accumulation.
 * *loss: the global batch's mean loss; *correct and *scored summed over the ranks; *bad:
 * some rank's loss or outputs, or the sum, were not finite; *stop: some rank was asked
 * to stop. Each rank's numbers travel in slots of its own (exact sums), and are added
 * up in rank order: the same on every rank. */
static int step_grads(bprt_model *m, const BprtTrainOptions *o, BprtFx *fx, const Binding *b, const BprtDataset *d,
                      const BprtBatchIter *it, int64_t step, float *loss, int64_t *correct, int64_t *scored, bool *bad,
                      bool *stop, int64_t *mrows) {
  BprtComm *c = o->comm;
  int size = c ? c->size : 1, rank = c ? c->rank : 0;
  int64_t nacc = o->accumulate > 1 ? o->accumulate : 1;
  const bprt_model_desc *desc = bprt_model_get_desc(m);
  double stats[DS__COUNT * 64], *mine;
  double *v = size <= 64 ? stats : bprt_calloc((size_t)size * DS__COUNT, sizeof(double));
  if (!v) return -1;
  memset(v, 0, sizeof(double) * (size_t)size * DS__COUNT);
  mine = v + (size_t)rank * DS__COUNT;
  if (c) c->step_begin(c, step);
  int rc = 0;
  bool any = false;
  *mrows = 0;
  for (int64_t i = 0; rc == 0 && i < nacc; i++) {
    int64_t start, count, next_start, next_count = 0;
    bprt_microbatch(it->rows, size * nacc, rank * nacc + i, &start, &count);
    if (count == 0) break;   /* the later ones are empty too */
    if (i + 1 < nacc) bprt_microbatch(it->rows, size * nacc, rank * nacc + i + 1, &next_start, &next_count);
    bool last = next_count == 0;
    BprtBatchIter part = batch_part(it, d, start, count);
    const void *inputs[2] = {0, 0};
    set_inputs(b, &part, inputs);
    double w = (double)count / (double)it->rows;
    float l = 0;
    /* the buckets leave from the hook during the last micro-batch (float sums only) */
    bprt_model_set_grad_ready(m, c && last && !fx ? c->grad_ready : NULL, c);
    if (fx) {   /* this micro-batch's gradient alone (scaled, with loss scaling), then exactly into fx */
      rc = bprt_model_accumulate_grad(m, count, inputs, 1.0, 0, &l);
      if (rc == 0) {
        if (any) bprt_fxsum_add_f32(fx, bprt_model_grads(m), (size_t)desc->param_floats, (float)w);
        else bprt_fxsum_set_f32(fx, bprt_model_grads(m), (size_t)desc->param_floats, (float)w);
      }
    } else {
      rc = bprt_model_accumulate_grad(m, count, inputs, w, any ? 1 : 0, &l);
    }
    bprt_model_set_grad_ready(m, NULL, NULL);
    if (rc) {
      rc = bprt_prefix_error("step %" PRId64, step);
      break;
    }
    any = true;
    *mrows = count;   /* the outputs (bprt_model_last_output) are this micro-batch's */
    int64_t k = 0, cc = 0;
    if (!part.xtok && b->acc_out >= 0) cc = count_correct(b, bprt_model_last_output(m, b->acc_out), &part, &k);
    bool finite = isfinite(l);
    for (int j = 0; j < desc->noutputs && finite; j++) {
      const bprt_tensor_desc *t = &desc->outputs[j];
      finite = all_finite(bprt_model_last_output(m, j), numel_of(t->rank, t->dims, count));
    }
    mine[DS_LOSS] += (double)l * (double)count;
    mine[DS_CORRECT] += (double)cc;
    mine[DS_SCORED] += (double)k;
    mine[DS_ROWS] += (double)count;
    mine[DS_BAD] += finite ? 0 : 1;
  }
  if (rc == 0 && !any) {   /* no rows here this step: zeros, in the form the others send */
    if (fx) bprt_fxsum_zero(fx, (size_t)desc->param_floats);
    else rc = bprt_model_zero_grads(m);
  }
  mine[DS_STOP] = o->stop && *o->stop ? 1 : 0;
  /* a rank that failed still goes to the reduction, so that the others do not wait */
  if (c && c->step_end(c, fx, v, (int64_t)size * DS__COUNT)) rc = -1;
  if (rc == 0) {
    /* in rank order: the same sums, in the same order, on every rank */
    double ls = 0, rows = 0, cc = 0, k = 0, nbad = 0, nstop = 0;
    for (int r = 0; r < size; r++) {
      const double *sr = v + (size_t)r * DS__COUNT;
      ls += sr[DS_LOSS];
      cc += sr[DS_CORRECT];
      k += sr[DS_SCORED];
      rows += sr[DS_ROWS];
      nbad += sr[DS_BAD];
      nstop += sr[DS_STOP];
    }
    unsigned flags = fx ? bprt_fxsum_to_f32(bprt_model_grads(m), fx, (size_t)desc->param_floats) : 0;
    *loss = rows > 0 && nbad == 0 ? (float)(ls / rows) : NAN;
    *correct = (int64_t)cc;
    *scored = (int64_t)k;
    *bad = nbad > 0 || !isfinite(ls);
    (void)flags;   /* a poisoned element is NaN or an infinity in the block: the loop's check finds it */
    *stop = nstop > 0;
  }
  if (v != stats) bprt_free(v);
  return rc;
}

/* ------------------------------------------------------------ progress and logs */

/* The epoch's line, on the results stream (stdout), numbers for people
 * (runtime/progress.h):
 *   "epoch 3/10  loss 0.0612  acc 98.22%  val_loss 0.0702  val_acc 97.86%  lr 0.001  3.2 s" */
static void epoch_line(FILE *out, const BprtEpochStats *s, int64_t epochs) {
  char line[512], a[48];
  size_t o = (size_t)snprintf(line, sizeof line, "epoch %" PRId64 "/%" PRId64 "  loss %s", s->epoch, epochs,
                              bprt_fmt_sig(a, sizeof a, s->loss, 4));
  if (!isnan(s->accuracy)) o += (size_t)snprintf(line + o, sizeof line - o, "  acc %.2f%%", 100 * s->accuracy);
  if (!isnan(s->val_loss))
    o += (size_t)snprintf(line + o, sizeof line - o, "  val_loss %s", bprt_fmt_sig(a, sizeof a, s->val_loss, 4));
  if (!isnan(s->val_accuracy)) o += (size_t)snprintf(line + o, sizeof line - o, "  val_acc %.2f%%", 100 * s->val_accuracy);
  o += (size_t)snprintf(line + o, sizeof line - o, "  lr %s", bprt_fmt_sig(a, sizeof a, s->lr, 4));
  snprintf(line + o, sizeof line - o, "  %s", bprt_fmt_duration(a, sizeof a, s->seconds));
  bprt_put_line(out, line, 2);
  fflush(out);
}

/* --print-every N: "epoch 1/10  step 100/469  loss 0.2345  152 steps/s  00:01<00:02",
 * the epoch's running loss as the bar shows it. */
static void step_line(BprtProgress *p, int64_t epoch, int64_t epochs, int64_t done, int64_t total, double loss) {
  char line[512], a[48], b[48], c[48];
  double el = bprt_progress_elapsed(p);
  double left = done > 0 ? el * (double)(total - done) / (double)done : -1;
  int o = snprintf(line, sizeof line, "epoch %" PRId64 "/%" PRId64 "  step %s/%s  loss %s", epoch, epochs,
                   bprt_fmt_count(a, sizeof a, done), bprt_fmt_count(b, sizeof b, total), bprt_fmt_sig(c, sizeof c, loss, 4));
  o += snprintf(line + o, sizeof line - (size_t)o, "  %s", bprt_fmt_rate(a, sizeof a, done, el));
  snprintf(line + o, sizeof line - (size_t)o, "  %s<%s", bprt_fmt_clock(b, sizeof b, el), bprt_fmt_clock(c, sizeof c, left));
  bprt_progress_print(p, line);
}

/* The CSV: kind,epoch,step,lr,loss,accuracy,val_loss,val_accuracy,seconds — a row per
 * epoch (kind "epoch") and, with --log-steps, per step (kind "step"; its loss is the
 * batch's, accuracy the batch's). Missing values are empty fields. */
static void csv_num(FILE *f, double v) {
  if (isnan(v)) fputc(',', f);
  else fprintf(f, ",%.9g", v);
}

static void csv_row(FILE *f, const char *kind, const BprtEpochStats *s) {
  if (!f) return;
  fprintf(f, "%s,%" PRId64 ",%" PRId64, kind, s->epoch, s->step);
  csv_num(f, s->lr);
  csv_num(f, s->loss);
  csv_num(f, s->accuracy);
  csv_num(f, s->val_loss);
  csv_num(f, s->val_accuracy);
  csv_num(f, s->seconds);
  fputc('\n', f);
}

/* ---------------------------------------------------------------------- --watch */

static double norm2(const float *x, int64_t n) {
  double s = 0;
  for (int64_t i = 0; i < n; i++) s += (double)x[i] * x[i];
  return sqrt(s);
}

static double diff_norm2(const float *a, const float *b, int64_t n) {
  double s = 0;
  for (int64_t i = 0; i < n; i++) {
    double d = (double)a[i] - b[i];
    s += d * d;
  }
  return sqrt(s);
}

/* The last step of the epoch: per parameter the gradient norm and the update/weight
 * ratio |p_new - p_old| / |p_old|; per output the mean and standard deviation. Printed
 * as a table on out (NULL: not printed) and, with --log, written as rows of the watch
 * log csv (NULL: none) with full precision:
 *   epoch,step,kind,name,grad_norm,update_ratio,mean,std
 *   3,1407,parameter,h.W,0.0123456789,0.00123456789,,
 *   3,1407,activation,probs,,,0.1,0.28123456 */
static void watch_report(FILE *out, FILE *csv, int64_t epoch, int64_t step, bprt_model *m, const float *before,
                         const float *const *outs, int64_t rows) {
  const bprt_model_desc *d = bprt_model_get_desc(m);
  const float *p = bprt_model_params(m), *g = bprt_model_grads(m);
  size_t w = 9;
  for (int i = 0; i < d->nparams; i++)
    if (strlen(d->params[i].name) > w) w = strlen(d->params[i].name);
  for (int k = 0; k < d->noutputs; k++)
    if (strlen(d->outputs[k].name) > w) w = strlen(d->outputs[k].name);
  if (out) fprintf(out, "  %-*s  %12s  %13s\n", (int)w, "parameter", "grad_norm", "update/weight");
  for (int i = 0; i < d->nparams; i++) {
    const bprt_param_desc *pd = &d->params[i];
    int64_t n = numel_of(pd->rank, pd->dims, 1);
    double wn = norm2(before + pd->offset, n), un = diff_norm2(p + pd->offset, before + pd->offset, n);
    double gn = norm2(g + pd->offset, n), ratio = wn > 0 ? un / wn : NAN;
    if (out) fprintf(out, "  %-*s  %12.4g  %13.4g\n", (int)w, pd->name, gn, ratio);
    if (csv) {
      fprintf(csv, "%" PRId64 ",%" PRId64 ",parameter,%s", epoch, step, pd->name);
      csv_num(csv, gn);
      csv_num(csv, ratio);
      fputs(",,\n", csv);
    }
  }
  if (out) fprintf(out, "  %-*s  %12s  %13s\n", (int)w, "activation", "mean", "std");
  for (int k = 0; k < d->noutputs; k++) {
    const bprt_tensor_desc *t = &d->outputs[k];
    int64_t n = numel_of(t->rank, t->dims, rows);
    double s = 0, s2 = 0;
    for (int64_t i = 0; i < n; i++) s += outs[k][i];
    double mean = n ? s / (double)n : NAN;
    for (int64_t i = 0; i < n; i++) s2 += (outs[k][i] - mean) * (outs[k][i] - mean);
    double sd = n ? sqrt(s2 / (double)n) : NAN;
    if (out) fprintf(out, "  %-*s  %12.4g  %13.4g\n", (int)w, t->name, mean, sd);
    if (csv) {
      fprintf(csv, "%" PRId64 ",%" PRId64 ",activation,%s,,", epoch, step, t->name);
      csv_num(csv, mean);
      csv_num(csv, sd);
      fputc('\n', csv);
    }
  }
  if (out) fflush(out);
  if (csv) fflush(csv);
}

int bprt_watch_log_path(const char *log_path, char *buf, size_t n) {
  size_t len = strlen(log_path);
  if (len > 4 && strcmp(log_path + len - 4, ".csv") == 0) len -= 4;
  int k = snprintf(buf, n, "%.*s.watch.csv", (int)len, log_path);
  if (k < 0 || (size_t)k >= n) return bprt_set_error("%s: the path is too long for its watch log", log_path);
  return 0;
}

/* Open a CSV log for writing with its header, or for appending when a resumed run finds
 * it (the header is then there already). */
static FILE *open_log(const char *path, bool resume, const char *header) {
  bool append = resume && access(path, F_OK) == 0;
  FILE *f = fopen(path, append ? "a" : "w");
  if (!f) {
    bprt_set_error("%s: cannot open the log for writing", path);
    return NULL;
  }
  if (!append) fprintf(f, "%s\n", header);
  return f;
}

/* --log and, with --watch, its PATH.watch.csv beside it (both appended to on --resume);
 * nothing is left open on an error. */
static int open_logs(const BprtTrainOptions *o, FILE **log, FILE **wlog, char *wpath, size_t wn) {
  if (!o->log_path) return 0;
  if (!(*log = open_log(o->log_path, o->resume_path != NULL, "kind,epoch,step,lr,loss,accuracy,val_loss,val_accuracy,seconds")))
    return -1;
  if (o->watch && (bprt_watch_log_path(o->log_path, wpath, wn) ||
                   !(*wlog = open_log(wpath, o->resume_path != NULL, "epoch,step,kind,name,grad_norm,update_ratio,mean,std")))) {
    fclose(*log);
    *log = NULL;
    return -1;
  }
  return 0;
}

/* The end of a run, by epochs or by steps: a stopped run saves its position (to
 * --interrupt-path, else --save) and the logs are closed; the first error wins. */
static int end_run(bprt_model *m, const BprtTrainOptions *o, const BprtTrainState *st, BprtTrainResult *r, int rc,
                   bool stop, FILE *log, FILE *wlog, const char *wpath) {
  if (rc == 0 && stop) {
    r->interrupted = true;
    r->steps = st->step;
    const char *path = o->interrupt_path ? o->interrupt_path : o->save_path;
    if (path) {
      if (bprt_checkpoint_save(m, path, st)) rc = -1;
      else r->checkpoint = path;
    }
  }
  if (log && fclose(log) && rc == 0) rc = bprt_set_error("%s: write error", o->log_path);
  if (wlog && fclose(wlog) && rc == 0) rc = bprt_set_error("%s: write error", wpath);
  return rc;
}

/* ------------------------------------------------------------------- checkpoints */

/* The schedule's state as "KIND lr=X best=X num_bad=N cooldown_left=N" with %.17g so a
 * double survives the round trip exactly. */
static void schedule_state_str(const BprtSchedule *s, char *buf, size_t n) {
  snprintf(buf, n, "%s lr=%.17g best=%.17g num_bad=%" PRId64 " cooldown_left=%" PRId64, bprt_schedule_names[s->kind], s->lr,
           s->best, s->num_bad, s->cooldown_left);
}

static int missing(const char *path, const char *key) {
  return bprt_set_error("%s: not a bpcc training checkpoint (metadata key '%s' missing)", path, key);
}

/* A decimal integer, the whole string: 0, or -1 when it is not one (or overflows). */
static int parse_int(const char *v, bool sign, long long *out) {
  char *end;
  if (!v[0] || (!sign && v[0] == '-') || v[0] == '+' || v[0] == ' ') return -1;
  errno = 0;
  *out = strtoll(v, &end, 10);
  return *end || errno ? -1 : 0;
}

static int parse_u64(const char *path, const char *key, const char *v, uint64_t *out) {
  char *end;
  if (!v) return missing(path, key);
  errno = 0;
  unsigned long long x = strtoull(v, &end, 10);
  if (end == v || *end || v[0] == '-' || v[0] == '+' || v[0] == ' ' || errno)
    return bprt_set_error("%s: metadata %s = '%s' is not a count", path, key, v);
  *out = (uint64_t)x;
  return 0;
}

/* A count the loop keeps below 2^40 (the RNG streams' epoch and step fields); absent:
 * 0 where `required` is false (checkpoints from before the key existed). */
static int meta_count(const BprtCheckpoint *ck, const char *path, const char *key, bool required, int64_t *out) {
  const char *v = bprt_st_meta(ck, key);
  *out = 0;
  if (!v) return required ? missing(path, key) : 0;
  long long x;
  if (parse_int(v, true, &x)) return bprt_set_error("%s: metadata %s = '%s' is not a count", path, key, v);
  if (x < 0 || x >= BPRT_TRAIN_COUNT_MAX)
    return bprt_set_error("%s: metadata %s = '%s' is out of range (a count below 2^40)", path, key, v);
  *out = x;
  return 0;
}

int bprt_checkpoint_save(bprt_model *m, const char *path, const BprtTrainState *st) {
  char epoch[32], step[32], seed[32], sched[256], rng[240], rows[32], lsum[40], corr[32], period[160];
  snprintf(epoch, sizeof epoch, "%" PRId64, st->epoch);
  snprintf(step, sizeof step, "%" PRId64, st->step);
  snprintf(seed, sizeof seed, "%" PRIu64, st->seed);
  schedule_state_str(&st->schedule, sched, sizeof sched);
  int k = snprintf(rng, sizeof rng, "philox4x32-10 seed=%" PRIu64 " shuffle_epoch=%" PRId64 " shuffle_row=%" PRId64
                   " dropout_step=%" PRId64, st->seed, st->epoch, st->epoch_rows, st->step);
  if (st->text) snprintf(rng + k, sizeof rng - (size_t)k, " text_window=%" PRId64, st->text_windows);
  snprintf(rows, sizeof rows, "%" PRId64, st->epoch_rows);
  snprintf(lsum, sizeof lsum, "%.17g", st->epoch_loss_sum);
  snprintf(corr, sizeof corr, "%" PRId64, st->epoch_correct);
  snprintf(period, sizeof period, "rows=%" PRId64 " loss_sum=%.17g correct=%" PRId64 " scored=%" PRId64,
           st->period_rows, st->period_loss_sum, st->period_correct, st->period_scored);
  const char *keys[] = {"bpcc.epoch", "bpcc.step", "bpcc.seed", "bpcc.schedule", "bpcc.rng",
                        "bpcc.epoch_rows", "bpcc.epoch_loss_sum", "bpcc.epoch_correct", "bpcc.period"};
  const char *values[] = {epoch, step, seed, sched, rng, rows, lsum, corr, period};
  return bprt_model_save_meta(m, path, keys, values, st->by_steps ? 9 : 8) ? -1 : 0;
}

/* bpcc.period "rows=N loss_sum=X correct=K scored=K" of a run by steps; absent: zeros. */
static int load_period(const BprtCheckpoint *ck, const char *path, BprtTrainState *t) {
  const char *v = bprt_st_meta(ck, "bpcc.period");
  t->period_rows = t->period_correct = t->period_scored = 0;
  t->period_loss_sum = 0;
  if (!v) return 0;
  long long r, c, sc;
  double ls;
  int end = -1;
  if (sscanf(v, "rows=%lld loss_sum=%lf correct=%lld scored=%lld%n", &r, &ls, &c, &sc, &end) != 4 || v[end] != 0)
    return bprt_set_error("%s: metadata bpcc.period = '%s' is malformed", path, v);
  if (r < 0 || r >= BPRT_TRAIN_COUNT_MAX || !isfinite(ls) || sc < 0 || sc >= BPRT_TRAIN_COUNT_MAX || c < 0 || c > sc ||
      (r == 0 && ls != 0))
    return bprt_set_error("%s: metadata bpcc.period = '%s' is out of range", path, v);
  t->period_rows = r;
  t->period_loss_sum = ls;
  t->period_correct = c;
  t->period_scored = sc;
  return 0;
}

/* bpcc.schedule: "KIND lr=X best=X num_bad=N cooldown_left=N", the whole string, each
 * value in the range the schedule keeps it in. */
static int load_schedule(const BprtCheckpoint *ck, const char *path, BprtSchedule *s) {
  const char *v = bprt_st_meta(ck, "bpcc.schedule");
  if (!v) return missing(path, "bpcc.schedule");
  char kind[32];
  double lr, best;
  long long bad, cool;
  int end = -1;
  if (sscanf(v, "%31s lr=%lf best=%lf num_bad=%lld cooldown_left=%lld%n", kind, &lr, &best, &bad, &cool, &end) != 5 ||
      v[end] != 0)
    return bprt_set_error("%s: metadata bpcc.schedule = '%s' is malformed", path, v);
  const char *bad_what = !(isfinite(lr) && lr >= 0) ? "lr is not a finite rate >= 0"
                         : isnan(best) || best == -INFINITY ? "best is not a number or +inf"
                         : bad < 0 || bad >= BPRT_TRAIN_COUNT_MAX ? "num_bad is not a count below 2^40"
                         : cool < 0 || cool >= BPRT_TRAIN_COUNT_MAX ? "cooldown_left is not a count below 2^40"
                         : NULL;
  if (bad_what) return bprt_set_error("%s: metadata bpcc.schedule = '%s' is out of range: %s", path, v, bad_what);
  if (strcmp(kind, bprt_schedule_names[s->kind]))
    return bprt_set_error("%s: the checkpoint's schedule is %s, this run's is %s", path, kind, bprt_schedule_names[s->kind]);
  s->lr = lr;
  s->best = best;
  s->num_bad = bad;
  s->cooldown_left = cool;
  return 0;
}

/* The loop state, every key checked for its form, its range and its agreement with the
 * others, so that a damaged or hand-edited file is refused here, by key, rather than
 * resumed into a run that is silently not the one it claims to continue. */
static int load_state(const bprt_model *m, const BprtCheckpoint *ck, const char *path, BprtTrainState *st) {
  BprtTrainState t = *st;
  uint64_t seed = 0;
  if (meta_count(ck, path, "bpcc.epoch", true, &t.epoch) || meta_count(ck, path, "bpcc.step", true, &t.step) ||
      parse_u64(path, "bpcc.seed", bprt_st_meta(ck, "bpcc.seed"), &seed) ||
      meta_count(ck, path, "bpcc.epoch_rows", false, &t.epoch_rows) ||
      meta_count(ck, path, "bpcc.epoch_correct", false, &t.epoch_correct) || load_schedule(ck, path, &t.schedule))
    return -1;
  t.seed = seed;
  if (t.step < t.epoch)
    return bprt_set_error("%s: metadata bpcc.step = '%" PRId64 "' is out of range: fewer steps than the %" PRId64
                          " epochs done (bpcc.epoch)", path, t.step, t.epoch);
  if (bprt_model_get_step(m) != (uint64_t)t.step)
    return bprt_set_error("%s: metadata bpcc.step = '%" PRId64 "' disagrees with step = '%" PRIu64 "'", path, t.step,
                          bprt_model_get_step(m));
  const char *ls = bprt_st_meta(ck, "bpcc.epoch_loss_sum");
  t.epoch_loss_sum = 0;
  if (ls) {
    char *end;
    t.epoch_loss_sum = strtod(ls, &end);
    if (end == ls || *end || !isfinite(t.epoch_loss_sum))
      return bprt_set_error("%s: metadata bpcc.epoch_loss_sum = '%s' is out of range (a finite number)", path, ls);
  }
  if (t.epoch_correct > t.epoch_rows)
    return bprt_set_error("%s: metadata bpcc.epoch_correct = '%" PRId64 "' is out of range: more than the %" PRId64
                          " rows done (bpcc.epoch_rows)", path, t.epoch_correct, t.epoch_rows);
  if (t.epoch_rows == 0 && t.epoch_loss_sum != 0)
    return bprt_set_error("%s: metadata bpcc.epoch_loss_sum = '%s' is out of range: no rows done (bpcc.epoch_rows = 0)",
                          path, ls);
  /* bpcc.rng repeats the position for readers; it must say what the other keys say
   * (shuffle_row is absent in checkpoints from before it existed) */
  const char *rng = bprt_st_meta(ck, "bpcc.rng");
  if (!rng) return missing(path, "bpcc.rng");
  unsigned long long rs;
  long long re, rr = 0, rd, tw = -1;
  int end = -1;
  bool ok = (sscanf(rng, "philox4x32-10 seed=%llu shuffle_epoch=%lld shuffle_row=%lld dropout_step=%lld text_window=%lld%n",
                    &rs, &re, &rr, &rd, &tw, &end) == 5 && rng[end] == 0) ||
            (end = -1, tw = -1, sscanf(rng, "philox4x32-10 seed=%llu shuffle_epoch=%lld shuffle_row=%lld dropout_step=%lld%n",
                                       &rs, &re, &rr, &rd, &end) == 4 && rng[end] == 0) ||
            (end = -1, rr = 0, sscanf(rng, "philox4x32-10 seed=%llu shuffle_epoch=%lld dropout_step=%lld%n", &rs, &re,
                                      &rd, &end) == 3 && rng[end] == 0);
  if (!ok) return bprt_set_error("%s: metadata bpcc.rng = '%s' is malformed", path, rng);
  if (rs != t.seed || re != t.epoch || rr != t.epoch_rows || rd != t.step)
    return bprt_set_error("%s: metadata bpcc.rng = '%s' is out of range: it disagrees with bpcc.seed, bpcc.epoch, "
                          "bpcc.epoch_rows or bpcc.step (seed=%" PRIu64 " shuffle_epoch=%" PRId64 " shuffle_row=%" PRId64
                          " dropout_step=%" PRId64 ")", path, rng, t.seed, t.epoch, t.epoch_rows, t.step);
  t.text = tw >= 0;
  t.text_windows = tw >= 0 ? tw : 0;
  if (tw >= BPRT_TRAIN_COUNT_MAX)
    return bprt_set_error("%s: metadata bpcc.rng = '%s' is out of range: text_window is not a count below 2^40", path, rng);
  t.by_steps = bprt_st_meta(ck, "bpcc.period") != NULL;
  if (load_period(ck, path, &t)) return -1;
  *st = t;
  return 0;
}

int bprt_checkpoint_load(bprt_model *m, const char *path, BprtTrainState *st) {
  BprtCheckpoint *ck = NULL;
  int rc = bprt_model_load_ck(m, path, st ? &ck : NULL) ? -1 : 0;
  if (rc == 0 && st) rc = load_state(m, ck, path, st);
  if (ck) bprt_st_free(ck);
  return rc;
}

/* The end of an epoch (or of a period between evaluations) on every rank of a
 * data-parallel run: rank 0's running statistics (batchnorm's buffers) to all, as
 * PyTorch's DistributedDataParallel broadcasts them, then the parameters compared by
 * a hash. */
static int epoch_sync(bprt_model *m, BprtComm *c, const char *where) {
  const bprt_model_desc *d = bprt_model_get_desc(m);
  char w[96];
  snprintf(w, sizeof w, "the running statistics %s", where);
  if (d->buffer_floats > 0 && c->broadcast(c, bprt_model_buffers(m), d->buffer_floats, w)) return -1;
  return c->check_params(c, bprt_model_params(m), d->param_floats, where);
}

/* Has a stop been asked for (o->stop)? In a data-parallel run, on any rank: the ranks
 * agree, so that all stop after the same step. *rc = -1 when the ranks could not. */
static bool stop_agreed(const BprtTrainOptions *o, const char *where, int *rc) {
  bool mine = o->stop && *o->stop;
  BprtComm *c = o->comm;
  if (!c) return mine;
  double stack[64], *v = c->size <= 64 ? stack : bprt_calloc((size_t)c->size, sizeof(double));
  if (!v) {
    *rc = -1;
    return false;
  }
  memset(v, 0, sizeof(double) * (size_t)c->size);
  v[c->rank] = mine;
  char w[96];
  snprintf(w, sizeof w, "the stop check %s", where);
  bool any = false;
  if (c->sum(c, v, c->size, w)) *rc = -1;
  else
    for (int r = 0; r < c->size; r++) any |= v[r] != 0;
  if (v != stack) bprt_free(v);
  return any;
}

/* ------------------------------------------------------------ the loop by steps */

/* An evaluation's line, on the results stream: text data reports the validation loss in
 * nats per character (the mean cross-entropy over the validation positions) and in bits
 * per character (nats / ln 2):
 *   "step 200/2000  loss 2.135  val_loss 2.012 nats/char  2.903 bits/char  lr 0.001  12.3 s" */
static void eval_line(FILE *out, const BprtEpochStats *s, int64_t steps, bool text) {
  char line[512], a[48], c[48];
  size_t o = (size_t)snprintf(line, sizeof line, "step %" PRId64 "/%" PRId64 "  loss %s", s->step, steps,
                              bprt_fmt_sig(a, sizeof a, s->loss, 4));
  if (!isnan(s->accuracy)) o += (size_t)snprintf(line + o, sizeof line - o, "  acc %.2f%%", 100 * s->accuracy);
  if (!isnan(s->val_loss) && text)
    o += (size_t)snprintf(line + o, sizeof line - o, "  val_loss %s nats/char  %s bits/char",
                          bprt_fmt_sig(a, sizeof a, s->val_loss, 4), bprt_fmt_sig(c, sizeof c, s->val_loss / log(2.0), 4));
  else if (!isnan(s->val_loss))
    o += (size_t)snprintf(line + o, sizeof line - o, "  val_loss %s", bprt_fmt_sig(a, sizeof a, s->val_loss, 4));
  if (!isnan(s->val_accuracy)) o += (size_t)snprintf(line + o, sizeof line - o, "  val_acc %.2f%%", 100 * s->val_accuracy);
  o += (size_t)snprintf(line + o, sizeof line - o, "  lr %s", bprt_fmt_sig(a, sizeof a, s->lr, 4));
  snprintf(line + o, sizeof line - o, "  %s", bprt_fmt_duration(a, sizeof a, s->seconds));
  bprt_put_line(out, line, 2);
  fflush(out);
}

/* --print-every N in a run by steps: "step 100/2000  loss 2.345  12.1 steps/s  00:08<02:37" */
static void steps_line(BprtProgress *p, int64_t done, int64_t total, double loss) {
  char line[512], a[48], b[48], c[48];
  double el = bprt_progress_elapsed(p);
  int64_t run = done - p->first;
  double left = run > 0 ? el * (double)(total - done) / (double)run : -1;
  int o = snprintf(line, sizeof line, "step %s/%s  loss %s", bprt_fmt_count(a, sizeof a, done),
                   bprt_fmt_count(b, sizeof b, total), bprt_fmt_sig(c, sizeof c, loss, 4));
  o += snprintf(line + o, sizeof line - (size_t)o, "  %s", bprt_fmt_rate(a, sizeof a, run, el));
  snprintf(line + o, sizeof line - (size_t)o, "  %s<%s", bprt_fmt_clock(b, sizeof b, el), bprt_fmt_clock(c, sizeof c, left));
  bprt_progress_print(p, line);
}

/* A run of o->steps steps (BprtTrainOptions.steps). Everything that decides step s is a
 * function of s: row data take batch s mod nb of epoch s / nb (nb batches an epoch, in
 * the order of (seed, epoch)), text data windows s*B .. (the text_window counter), the
 * learning rate schedule(s); so the checkpoint's step (and the counter) is the whole
 * position, and a resumed run continues bit for bit. */
static int train_by_steps(bprt_model *m, const BprtDataset *train, const BprtDataset *val, const BprtTrainOptions *o,
                          BprtTrainResult *r) {
  const bprt_model_desc *d = bprt_model_get_desc(m);
  bool text = train->text != NULL;
  if (o->batch < 1) return bprt_set_error("--batch %" PRId64 ": must be >= 1", o->batch);
  if (o->accumulate < 1) return bprt_set_error("--accumulate %" PRId64 ": must be >= 1", o->accumulate);
  if (o->batch > BPRT_TRAIN_COUNT_MAX / o->accumulate)
    return bprt_set_error("--batch %" PRId64 " x --accumulate %" PRId64 ": too large", o->batch, o->accumulate);
  if (o->eval_every < 0) return bprt_set_error("--eval-every %" PRId64 ": must be >= 0", o->eval_every);
  if (o->save_every < 0) return bprt_set_error("--save-every %" PRId64 ": must be >= 0", o->save_every);
  if (o->steps >= BPRT_TRAIN_COUNT_MAX) return bprt_set_error("--steps %" PRId64 ": must be below 2^40", o->steps);
  if (bprt_schedule_check(&o->schedule)) return -1;
  if (text && train->text_val) return bprt_set_error("%s: training needs the training windows", train->source);
  if (bprt_train_check_data(d, train) || (val && bprt_train_check_data(d, val))) return -1;
  Binding b;
  if (text) b = (Binding){0, 1, -1, false, 256, 0};
  else bind(d, &b);
  /* text windows are drawn with replacement: a batch may hold more windows than there
   * are offsets; row data never hold more rows than the set */
  int64_t batch = text || o->batch < train->n ? o->batch : train->n;
  /* data-parallel or deterministic: batch is a micro-batch; a step takes a global batch
   * of ranks x accumulate of them (step_grads) */
  BprtComm *comm = o->comm;
  int64_t gbatch = global_batch(o, batch, text ? INT64_MAX : train->n);
  bool shared = comm || o->deterministic || o->accumulate > 1;
  int64_t nb = text ? 0 : (train->n + gbatch - 1) / gbatch;
  int64_t seq = text ? train->text->seq : 0;
  if (text && gbatch > (INT64_C(1) << 40) / seq) return bprt_set_error("--batch %" PRId64 ": too large", batch);
  if (o->save_path && bprt_st_check_writable(o->save_path)) return -1;

  BprtTrainState st;
  memset(&st, 0, sizeof st);
  st.seed = o->seed;
  st.schedule = o->schedule;
  st.schedule.lr = bprt_schedule_lr(&st.schedule, 0);
  if (o->resume_path) {
    if (bprt_checkpoint_load(m, o->resume_path, &st)) return -1;
    if (st.seed != o->seed)
      return bprt_set_error("%s: the checkpoint was trained with seed %" PRIu64 "; this run has --seed %" PRIu64
                            " (resume with the same seed)", o->resume_path, st.seed, o->seed);
    if (st.step > o->steps)
      return bprt_set_error("%s: the checkpoint has %" PRId64 " steps done; --steps %" PRId64 " asks for fewer",
                            o->resume_path, st.step, o->steps);
    if (st.text != text)
      return bprt_set_error("%s: the checkpoint was trained on %s; this run's data is %s (resume with the same data)",
                            o->resume_path, st.text ? "text windows" : "rows", text ? "text" : "rows");
    if (!text && (st.epoch != st.step / nb || st.epoch_rows != (st.step % nb) * gbatch))
      return bprt_set_error("%s: the checkpoint has %" PRId64 " epochs and %" PRId64 " rows of the next done, which is not "
                            "step %" PRId64 " in batches of %" PRId64 " of %" PRId64 " rows (resume with the same --batch "
                            "and --accumulate, and data)", o->resume_path, st.epoch, st.epoch_rows, st.step, gbatch, train->n);
    bprt_model_set_step(m, st.step);
  }
  st.by_steps = true;
  st.text = text;

  FILE *out = o->out ? o->out : stdout;
  FILE *perr = o->progress_out ? o->progress_out : stderr;
  bool bar = !o->quiet && (o->progress > 0 || (o->progress < 0 && isatty(fileno(perr))));
  FILE *log = NULL, *wlog = NULL;
  char wpath[4200];
  if (open_logs(o, &log, &wlog, wpath, sizeof wpath)) return -1;
  Outputs outs = {0, NULL};
  const float **souts = bprt_calloc((size_t)(d->noutputs > 0 ? d->noutputs : 1), sizeof(float *));
  BprtFx *fx = o->deterministic ? bprt_calloc((size_t)(d->param_floats > 0 ? d->param_floats : 1), sizeof(BprtFx)) : NULL;
  int32_t *xtok = NULL, *ytok = NULL;
  float *before = NULL;   /* --watch: the parameters before the last step of a period */
  int64_t last_rows = 0;
  int rc = souts && (fx || !o->deterministic) ? outputs_alloc(d, batch, &outs) : -1;
  if (!rc && o->watch && !(before = bprt_malloc(sizeof(float) * (size_t)(d->param_floats ? d->param_floats : 1)))) rc = -1;
  if (!rc && text) {
    xtok = bprt_malloc(sizeof(int32_t) * (size_t)(gbatch * seq));
    ytok = bprt_malloc(sizeof(int32_t) * (size_t)(gbatch * seq));
    if (!xtok || !ytok) rc = -1;
  }
  BprtBatchIter it;
  memset(&it, 0, sizeof it);
  int64_t it_epoch = -1, saved = 0, skips_in_row = 0;
  bool stop = false;
  const void *inputs[2] = {0, 0};
  r->steps = st.step;
  r->epochs_done = st.epoch;
  BprtProgress pr;
  while (rc == 0 && !stop && st.step < o->steps) {
    int64_t end = o->eval_every > 0 ? (st.step / o->eval_every + 1) * o->eval_every : o->steps;
    if (end > o->steps) end = o->steps;
    double t0 = now_seconds(), lr = 0;
    bprt_progress_start(&pr, perr, bar, "steps", o->steps);   /* the whole run's bar, a line per evaluation */
    pr.first = st.step;
    float loss = 0;
    while (st.step < end) {
      lr = st.schedule.kind == BPRT_SCHED_PLATEAU ? st.schedule.lr : bprt_schedule_lr(&st.schedule, st.step);
      bprt_model_set_hyper(m, BPRT_H_LR, lr);
      int64_t rows, e = 0, bi = 0;
      BprtBatchIter tw;   /* text: the step's windows as a batch */
      memset(&tw, 0, sizeof tw);
      if (text) {
        bprt_text_train_windows(train, o->seed, (uint64_t)st.text_windows, gbatch, xtok, ytok);
        inputs[0] = xtok;
        inputs[1] = ytok;
        rows = gbatch;
        tw.xtok = xtok;   /* the global batch's windows, for a rank's share of them */
        tw.ytok = ytok;
        tw.rows = rows;
      } else {
        e = st.step / nb;
        bi = st.step % nb;
        if (it_epoch != e) {
          bprt_batch_end(&it);
          if (bprt_batch_begin(&it, train, gbatch, true, o->seed, (uint64_t)e)) {
            rc = -1;
            break;
          }
          it_epoch = e;
        }
        it.pos = bi * gbatch;
        it.index = bi;
        rows = bprt_batch_next(&it);
        set_inputs(&b, &it, inputs);
      }
      if (o->watch && st.step + 1 == end) memcpy(before, bprt_model_params(m), sizeof(float) * (size_t)d->param_floats);
      int64_t lrows = rows, dcorrect = 0, dscored = 0, mrows = 0;
      bool dbad = false, dstop = false;
      if (shared) {   /* this rank's share; the statistics of the global batch */
        if (step_grads(m, o, fx, &b, train, text ? &tw : &it, st.step + 1, &loss, &dcorrect, &dscored, &dbad, &dstop, &mrows)) {
          rc = -1;
          break;
        }
        lrows = 0;
      } else if (bprt_model_loss_and_grad(m, rows, inputs, &loss)) {
        rc = bprt_prefix_error("step %" PRId64, st.step + 1);
        break;
      }
      for (int k = 0; k < d->noutputs; k++) souts[k] = bprt_model_last_output(m, k);
      last_rows = shared ? mrows : lrows;   /* --watch: the last micro-batch's outputs */
      bool finite = !dbad && grads_finite(m, souts, lrows, loss);
      bool skip = !finite && !dbad && scaler_skips(m, souts, lrows, loss);
      double scale = bprt_model_loss_scale(m);
      if ((finite || skip) && bprt_model_update(m)) {
        rc = bprt_prefix_error("step %" PRId64, st.step + 1);
        break;
      }
      st.step++;
      if (text) st.text_windows += rows;
      else st.epoch = st.step / nb, st.epoch_rows = (st.step % nb) * batch;
      char skip_what[512] = "";
      if (skip) note_skip(m, &pr, o, st.step, scale, &skips_in_row, r, skip_what, sizeof skip_what);
      else skips_in_row = 0;
      if ((!finite && !skip) || skip_what[0] || !all_finite(bprt_model_params(m), d->param_floats)) {
        char what[512] = "";
        if (!finite && o->on_nonfinite && !shared) {
          BprtNonfiniteStep ns = {st.step, o->seed, rows, inputs, bprt_model_params(m)};
          if (!o->on_nonfinite(o->nonfinite_ctx, d, &ns, what, sizeof what)) what[0] = 0;
        }
        skip_report(what, sizeof what, skip_what);
        rc = report_nonfinite(m, souts, lrows, loss, st.step, text ? 0 : e + 1, bi + 1, nb, o, saved, what);
        r->nonfinite = true;
        break;
      }
      int64_t k = dscored, c = dcorrect;
      if (!shared && !text && b.acc_out >= 0) c = count_correct(&b, souts[b.acc_out], &it, &k);
      st.period_loss_sum += (double)loss * (double)rows;
      st.period_rows += rows;
      st.period_correct += c;
      st.period_scored += k;
      double mean = st.period_loss_sum / (double)st.period_rows;
      if (o->print_every > 0 && !o->quiet && st.step % o->print_every == 0) steps_line(&pr, st.step, o->steps, mean);
      if (st.step == end) pr.last_draw = -INFINITY;   /* an evaluation's step: drawn, whatever the rate */
      bprt_progress_step(&pr, st.step, mean);
      if (log && o->log_steps) {
        BprtEpochStats s = {text ? 0 : e + 1, st.step, lr, loss, k ? (double)c / (double)k : NAN, NAN, NAN, now_seconds() - t0};
        csv_row(log, "step", &s);
      }
      if (st.step < end && o->save_path && o->save_every > 0 && st.step % o->save_every == 0) {
        if (bprt_checkpoint_save(m, o->save_path, &st)) {
          rc = -1;
          break;
        }
        saved = st.step;
      }
      if (st.step < end && (shared ? dstop : o->stop && *o->stop)) {   /* an evaluation's last step goes on to it */
        stop = true;
        break;
      }
    }
    bprt_progress_break(&pr);   /* the bar's line stays above the evaluation's */
    if (rc || stop) break;
    /* the epoch column: the (1-based) epoch of the period's last step; 0 for text */
    BprtEpochStats s = {text ? 0 : (st.step - 1) / nb + 1, st.step, lr,
                        st.period_rows ? st.period_loss_sum / (double)st.period_rows : NAN,
                        st.period_scored ? (double)st.period_correct / (double)st.period_scored : NAN, NAN, NAN, 0};
    char where[64];
    snprintf(where, sizeof where, "at step %" PRId64, st.step);
    if (comm && epoch_sync(m, comm, where)) {
      rc = -1;
      break;
    }
    if (val) {
      Binding vb = b;
      if (val->text) vb = (Binding){0, 1, -1, false, 256, 0};
      if (comm ? evaluate_shared(m, &vb, val, batch, &outs, comm, where, &s.val_loss, &s.val_accuracy)
               : evaluate(m, &vb, val, batch, &outs, &s.val_loss, &s.val_accuracy)) {
        rc = -1;
        break;
      }
    }
    if (o->watch) {
      if (!o->quiet) fprintf(out, "watch, step %" PRId64 " (the last before this evaluation):\n", st.step);
      watch_report(o->quiet ? NULL : out, wlog, s.epoch, st.step, m, before, souts, last_rows);
    }
    s.seconds = now_seconds() - t0;
    if (st.schedule.kind == BPRT_SCHED_PLATEAU)
      bprt_schedule_epoch_end(&st.schedule, st.step - 1, isnan(s.val_loss) ? s.loss : s.val_loss);
    st.period_rows = st.period_correct = st.period_scored = 0;
    st.period_loss_sum = 0;
    if (!o->quiet) eval_line(out, &s, o->steps, text || (val && val->text));
    csv_row(log, "eval", &s);
    if (log) fflush(log);
    r->last = s;
    r->steps = st.step;
    r->epochs_done = st.epoch;
    if (o->save_path && (st.step == o->steps || (o->save_every > 0 && st.step % o->save_every == 0))) {
      if (bprt_checkpoint_save(m, o->save_path, &st)) rc = -1;
      else saved = st.step;
    }
    if (rc == 0 && st.step < o->steps && stop_agreed(o, where, &rc)) stop = true;
  }
  bprt_batch_end(&it);
  if (rc == 0 && stop) r->stop_epoch = 0;
  rc = end_run(m, o, &st, r, rc, stop, log, wlog, wpath);
  outputs_free(&outs);
  bprt_free(before);
  bprt_free(souts);
  bprt_free(fx);
  bprt_free(xtok);
  bprt_free(ytok);
  return rc;
}

/* ------------------------------------------------------------------------ the loop */

int bprt_train(bprt_model *m, const BprtDataset *train, const BprtDataset *val, const BprtTrainOptions *o,
               BprtTrainResult *r) {
  if (!m || !train || !o || !r) return bprt_set_error("bprt_train: NULL argument");
  const bprt_model_desc *d = bprt_model_get_desc(m);
  memset(r, 0, sizeof *r);
  r->last = (BprtEpochStats){0, 0, NAN, NAN, NAN, NAN, NAN, NAN};
  if (o->steps < 0) return bprt_set_error("--steps %" PRId64 ": must be >= 1", o->steps);
  if (o->steps > 0) return train_by_steps(m, train, val, o, r);
  if (train->text)
    return bprt_set_error("%s: text data has no epochs: train it by steps (--steps N, or `steps N` in the train block)",
                          train->source);
  if (o->batch < 1) return bprt_set_error("--batch %" PRId64 ": must be >= 1", o->batch);
  if (o->accumulate < 1) return bprt_set_error("--accumulate %" PRId64 ": must be >= 1", o->accumulate);
  if (o->batch > BPRT_TRAIN_COUNT_MAX / o->accumulate)
    return bprt_set_error("--batch %" PRId64 " x --accumulate %" PRId64 ": too large", o->batch, o->accumulate);
  /* Batches never hold more rows than the data set: a larger batch is one batch of
   * every row (the same steps), and the buffers are sized for what can come. */
  int64_t batch = o->batch < train->n ? o->batch : train->n;
  /* data-parallel or deterministic: batch is a micro-batch; the iterator walks global
   * batches of ranks x accumulate of them (step_grads) */
  BprtComm *comm = o->comm;
  int64_t gbatch = global_batch(o, batch, train->n);
  bool shared = comm || o->deterministic || o->accumulate > 1;
  if (o->epochs < 1) return bprt_set_error("--epochs %" PRId64 ": must be >= 1", o->epochs);
  if (o->save_every < 0) return bprt_set_error("--save-every %" PRId64 ": must be >= 0", o->save_every);
  if (bprt_schedule_check(&o->schedule)) return -1;
  Binding b;
  if (bprt_train_check_data(d, train)) return -1;
  if (val && bprt_train_check_data(d, val)) return -1;
  bind(d, &b);

  /* the checkpoint paths first: a path that cannot be written is an error now, not
   * after the last epoch */
  if (o->save_path && bprt_st_check_writable(o->save_path)) return -1;
  BprtTrainState st = {.seed = o->seed, .schedule = o->schedule};
  st.schedule.lr = bprt_schedule_lr(&st.schedule, 0);
  if (o->resume_path) {
    if (bprt_checkpoint_load(m, o->resume_path, &st)) return -1;
    if (st.seed != o->seed)
      return bprt_set_error("%s: the checkpoint was trained with seed %" PRIu64 "; this run has --seed %" PRIu64
                            " (resume with the same seed)",
                            o->resume_path, st.seed, o->seed);
    if (st.epoch > o->epochs)
      return bprt_set_error("%s: the checkpoint has %" PRId64 " epochs done; --epochs %" PRId64 " asks for fewer",
                            o->resume_path, st.epoch, o->epochs);
    if (st.epoch_rows >= train->n)
      return bprt_set_error("%s: metadata bpcc.epoch_rows = '%" PRId64 "' is out of range: the training data has %" PRId64
                            " rows (resume with the same data)", o->resume_path, st.epoch_rows, train->n);
    if (st.epoch_rows > 0 && st.epoch == o->epochs)
      return bprt_set_error("%s: the checkpoint stopped inside epoch %" PRId64 "; --epochs %" PRId64 " asks for fewer",
                            o->resume_path, st.epoch + 1, o->epochs);
    bprt_model_set_step(m, st.step);
  }

  FILE *out = o->out ? o->out : stdout;   /* results: epoch lines, --watch tables */
  FILE *perr = o->progress_out ? o->progress_out : stderr;   /* the bar, --print-every lines */
  bool bar = !o->quiet && (o->progress > 0 || (o->progress < 0 && isatty(fileno(perr))));
  BprtProgress pr;
  FILE *log = NULL, *wlog = NULL;
  char wpath[4200];
  if (open_logs(o, &log, &wlog, wpath, sizeof wpath)) return -1;
  Outputs outs = {0, NULL};
  float *before = NULL;   /* --watch: the parameters before the last step of an epoch */
  const float **souts = bprt_calloc((size_t)(d->noutputs > 0 ? d->noutputs : 1), sizeof(float *));
  BprtFx *fx = o->deterministic ? bprt_calloc((size_t)(d->param_floats > 0 ? d->param_floats : 1), sizeof(BprtFx)) : NULL;
  int rc = souts && (fx || !o->deterministic) ? outputs_alloc(d, batch, &outs) : -1;
  if (!rc && o->watch && !(before = bprt_malloc(sizeof(float) * (size_t)(d->param_floats ? d->param_floats : 1)))) rc = -1;
  int64_t saved_epoch = 0;   /* the last checkpoint this run wrote */
  int64_t skips_in_row = 0;  /* loss scaling: skipped steps in a row */
  bool stop = false;         /* *o->stop seen: leave the loop with the position in st */
  const void *inputs[2] = {0, 0};
  r->epochs_done = st.epoch;
  r->steps = st.step;

  for (int64_t e = st.epoch; rc == 0 && !stop && e < o->epochs; e++) {
    double lr = st.schedule.kind == BPRT_SCHED_PLATEAU ? st.schedule.lr : bprt_schedule_lr(&st.schedule, e);
    bprt_model_set_hyper(m, BPRT_H_LR, lr);
    BprtBatchIter it;
    if (bprt_batch_begin(&it, train, gbatch, true, o->seed, (uint64_t)e)) {
      rc = -1;
      break;
    }
    int64_t nb = bprt_batch_count(&it), bi = 0, rows = 0, correct = 0, scored = 0, last_rows = 0;
    double loss_sum = 0, t0 = now_seconds();
    char prefix[64];
    snprintf(prefix, sizeof prefix, "epoch %" PRId64 "/%" PRId64, e + 1, o->epochs);
    bprt_progress_start(&pr, perr, bar, prefix, nb);
    if (st.epoch_rows > 0) {
      /* resumed inside this epoch: the same permutation (seed, e), from the first row not
       * yet trained, with the running sums of the rows before it */
      it.pos = rows = st.epoch_rows;
      it.index = bi = nb - (train->n - rows + gbatch - 1) / gbatch;
      loss_sum = st.epoch_loss_sum;
      correct = st.epoch_correct;
      /* predictions scored per row: one per label, every element of a sigmoid output */
      if (b.acc_out >= 0 && (b.threshold ? train->targets != NULL : train->labels != NULL))
        scored = rows * (b.threshold ? b.out_width : 1);
      st.epoch_rows = st.epoch_correct = 0;
      st.epoch_loss_sum = 0;
      pr.first = bi;
    }
    float loss = 0;
    while (bprt_batch_next(&it) > 0) {
      bi++;
      set_inputs(&b, &it, inputs);
      if (o->watch && bi == nb) memcpy(before, bprt_model_params(m), sizeof(float) * (size_t)d->param_floats);
      /* the step as loss_and_grad + update, so that a non-finite loss, output or
       * gradient is caught before the parameters change */
      /* data-parallel: this rank's share, the gradients summed over the ranks; the loss,
       * accuracy counts and stop requests of the whole global batch */
      int64_t lrows = it.rows, dcorrect = 0, dscored = 0, mrows = 0;
      bool dbad = false, dstop = false;
      if (shared) {
        if (step_grads(m, o, fx, &b, train, &it, st.step + 1, &loss, &dcorrect, &dscored, &dbad, &dstop, &mrows)) {
          rc = -1;
          break;
        }
        lrows = 0;   /* the outputs are this rank's: the statistics speak for them */
      } else if (bprt_model_loss_and_grad(m, it.rows, inputs, &loss)) {
        rc = bprt_prefix_error("step %" PRId64, st.step + 1);
        break;
      }
      for (int k = 0; k < d->noutputs; k++) souts[k] = bprt_model_last_output(m, k);
      bool finite = !dbad && grads_finite(m, souts, lrows, loss);
      bool skip = !finite && !dbad && scaler_skips(m, souts, lrows, loss);   /* loss scaling */
      double scale = bprt_model_loss_scale(m);
      if ((finite || skip) && bprt_model_update(m)) {
        rc = bprt_prefix_error("step %" PRId64, st.step + 1);
        break;
      }
      st.step++;
      last_rows = shared ? mrows : lrows;   /* --watch: the last micro-batch's outputs */
      char skip_what[512] = "";
      if (skip) note_skip(m, &pr, o, st.step, scale, &skips_in_row, r, skip_what, sizeof skip_what);
      else skips_in_row = 0;
      if ((!finite && !skip) || skip_what[0] || !all_finite(bprt_model_params(m), d->param_floats)) {
        /* Before the update: the hook re-evaluates the batch from the parameters, which
         * are still the last good ones, and names the first tensor that went
         * non-finite. After it (only the update overflowed), the loop's report stands. */
        char what[512] = "";
        if (!finite && o->on_nonfinite && !shared) {
          BprtNonfiniteStep ns = {st.step, o->seed, it.rows, inputs, bprt_model_params(m)};
          if (!o->on_nonfinite(o->nonfinite_ctx, d, &ns, what, sizeof what)) what[0] = 0;
        }
        skip_report(what, sizeof what, skip_what);
        rc = report_nonfinite(m, souts, lrows, loss, st.step, e + 1, bi, nb, o, saved_epoch, what);
        r->nonfinite = true;
        break;
      }
      int64_t k = dscored, c = dcorrect;
      if (!shared && b.acc_out >= 0) c = count_correct(&b, souts[b.acc_out], &it, &k);
      loss_sum += (double)loss * (double)it.rows;
      correct += c;
      scored += k;
      rows += it.rows;
      if (o->print_every > 0 && !o->quiet && bi % o->print_every == 0)
        step_line(&pr, e + 1, o->epochs, bi, nb, loss_sum / (double)rows);
      bprt_progress_step(&pr, bi, loss_sum / (double)rows);
      if (log && o->log_steps) {
        BprtEpochStats s = {e + 1, st.step, lr, loss, k ? (double)c / (double)k : NAN, NAN, NAN, now_seconds() - t0};
        csv_row(log, "step", &s);
      }
      if (bi < nb && (shared ? dstop : o->stop && *o->stop)) {   /* an epoch's last step goes on to its end */
        stop = true;
        st.epoch_rows = rows;
        st.epoch_loss_sum = loss_sum;
        st.epoch_correct = correct;
        r->stop_epoch = e + 1;
        r->stop_batch = bi;
        r->stop_batches = nb;
        break;
      }
    }
    bprt_batch_end(&it);
    if (rc || stop) {
      bprt_progress_break(&pr);   /* an error or the stop's report starts a line of its own */
      break;
    }

    BprtEpochStats s = {e + 1, st.step, lr, rows ? loss_sum / (double)rows : NAN,
                        scored ? (double)correct / (double)scored : NAN, NAN, NAN, 0};
    if (o->watch) {
      if (!o->quiet) fprintf(out, "watch, epoch %" PRId64 " (last step):\n", e + 1);
      watch_report(o->quiet ? NULL : out, wlog, e + 1, st.step, m, before, souts, last_rows);
    }
    char where[64];
    snprintf(where, sizeof where, "after epoch %" PRId64, e + 1);
    if (comm && epoch_sync(m, comm, where)) {
      rc = -1;
      break;
    }
    if (val && (comm ? evaluate_shared(m, &b, val, batch, &outs, comm, where, &s.val_loss, &s.val_accuracy)
                     : evaluate(m, &b, val, batch, &outs, &s.val_loss, &s.val_accuracy))) {
      rc = -1;
      break;
    }
    s.seconds = now_seconds() - t0;
    bprt_schedule_epoch_end(&st.schedule, e, isnan(s.val_loss) ? s.loss : s.val_loss);
    st.epoch = e + 1;
    if (!o->quiet) epoch_line(out, &s, o->epochs);
    csv_row(log, "epoch", &s);
    if (log) fflush(log);
    r->last = s;
    r->epochs_done = st.epoch;
    r->steps = st.step;
    if (o->save_path && ((o->save_every > 0 && st.epoch % o->save_every == 0) || st.epoch == o->epochs)) {
      if (bprt_checkpoint_save(m, o->save_path, &st)) rc = -1;
      else saved_epoch = st.epoch;
    }
    if (rc == 0 && st.epoch < o->epochs && stop_agreed(o, where, &rc)) {
      stop = true;
      r->stop_epoch = st.epoch;
      r->stop_batch = r->stop_batches = nb;
    }
  }
  rc = end_run(m, o, &st, r, rc, stop, log, wlog, wpath);
  outputs_free(&outs);
  bprt_free(before);
  bprt_free(souts);
  bprt_free(fx);
  return rc;
}
