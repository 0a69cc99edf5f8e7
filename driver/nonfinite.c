/* driver/nonfinite.c — naming the first tensor of a training step that went NaN or
 * infinite (the training loop's BprtTrainOptions.on_nonfinite hook).
 *
 * The loop (runtime/train.c) sees a non-finite loss, output or gradient only after
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
#include "driver/driver.h"
#include "driver/fdcheck.h"

#include <math.h>
#include <string.h>

#define NONFINITE_ROWS 256

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

bool nonfinite_first(void *ctx, const bprt_model_desc *d, const BprtNonfiniteStep *s, char *what, size_t n) {
  Compilation *c = ctx;
  if (!c->model || !s->params || !s->inputs) return false;
  /* Lowering and the passes ran once already without complaint; the interpreter's own
   * errors (there should be none) must not interleave with the report. */
  FILE *quiet = fopen("/dev/null", "w");
  if (quiet) diag_set_output(quiet);
  bool found = false;
  /* the gradient IR again, lowered with every named binding as an output */
  PipelineOptions o = c->opt;
  o.watch = true;
  o.print_after = NULL;
  o.recompute_set = false;
  o.mem_budget = 0;
  Compilation g2;
  pipeline_init_model(&g2, c, &o);
  Func *g = pipeline_run(&g2, STAGE_PRECISION) ? g2.grad : NULL;   /* with the step's casts */
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
      int64_t numel = 1;
      for (int q = 0; q < d->params[k].rank; q++) numel *= d->params[k].dims[q];
      if (params[j].numel != numel) ok = false;
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
    found = nonfinite_in(g, it, what, n);
    ir_interp_free(it);
  }
done:
  for (int k = 0; params && k < np; k++) ir_tensor_free(&params[k]);
  bp_free(params);
  bp_free(inputs);
  bp_free(in_desc);
  pipeline_release(&g2);
  diag_set_output(NULL);
  if (quiet) fclose(quiet);
  return found;
}

