/* frontend/summary.c — the checked model summary that `bpcc --check` and `make demo`
 * print: parameters with their path names, shapes, element counts and initializers;
 * buffers (running statistics) likewise; inputs; outputs; the loss; and the train
 * settings. */
#include "frontend/frontend.h"

#include <string.h>

char *fe_shape_str(const TensorType *t, char *buf, size_t n) {
  size_t k = (size_t)snprintf(buf, n, "[");
  for (int i = 0; i < t->rank && k < n; i++) {
    if (t->dims[i] == DIM_BATCH) k += (size_t)snprintf(buf + k, n - k, "%sB", i ? "," : "");
    else k += (size_t)snprintf(buf + k, n - k, "%s%lld", i ? "," : "", (long long)t->dims[i]);
  }
  if (k < n) snprintf(buf + k, n - k, "]");
  return buf;
}

int64_t fe_model_param_count(const FeModel *m) {
  int64_t total = 0;
  for (int i = 0; i < m->nparams; i++) total += ir_type_numel(&m->nodes[m->params[i]].type, 1);
  return total;
}

static void init_str(const FeNode *p, char *buf, size_t n) {
  const char *name = ir_init_names[p->iattr];
  if (p->iattr == INIT_CONSTANT) snprintf(buf, n, "%s(%g)", name, p->fattr[0]);
  else if (p->iattr == INIT_NORMAL) snprintf(buf, n, "%s(%g)", name, p->fattr[0]);
  else if (p->iattr == INIT_UNIFORM) snprintf(buf, n, "%s(%g, %g)", name, p->fattr[0], p->fattr[1]);
  else snprintf(buf, n, "%s", name);
}

void fe_print_summary(FILE *o, const FeModel *m) {
  char t[128], s[128], in[96];
  fprintf(o, "model %s  (%s:%d)\n", m->name, diag_file_name(m->loc.file), m->loc.line);
  size_t w = 8;
  for (int i = 0; i < m->nparams; i++) {
    size_t l = strlen(m->nodes[m->params[i]].name);
    if (l > w) w = l;
  }
  for (int i = 0; i < m->ninputs; i++) {
    size_t l = strlen(m->nodes[m->inputs[i]].name);
    if (l > w) w = l;
  }
  for (int i = 0; i < m->noutputs; i++) {
    size_t l = strlen(m->nodes[m->outputs[i]].name);
    if (l > w) w = l;
  }
  int nbuf = 0;
  for (int32_t i = 0; i < m->nnodes; i++)
    if (m->nodes[i].op == OP_BUFFER) {
      size_t l = strlen(m->nodes[i].name);
      if (l > w) w = l;
      nbuf++;
    }
  fprintf(o, "  inputs:\n");
  for (int i = 0; i < m->ninputs; i++) {
    const FeNode *n = &m->nodes[m->inputs[i]];
    fprintf(o, "    %-*s  %s\n", (int)w, n->name, ir_type_str(&n->type, t, sizeof t));
  }
  fprintf(o, "  parameters:\n");
  for (int i = 0; i < m->nparams; i++) {
    const FeNode *n = &m->nodes[m->params[i]];
    init_str(n, in, sizeof in);
    fprintf(o, "    %-*s  %-14s %12lld  %s\n", (int)w, n->name, fe_shape_str(&n->type, s, sizeof s),
            (long long)ir_type_numel(&n->type, 1), in);
  }
  fprintf(o, "    %-*s  %-14s %12lld\n", (int)w, "total", "", (long long)fe_model_param_count(m));
  if (nbuf > 0) {   /* non-trainable state: batchnorm's running statistics */
    fprintf(o, "  buffers:\n");
    for (int32_t i = 0; i < m->nnodes; i++) {
      const FeNode *n = &m->nodes[i];
      if (n->op != OP_BUFFER) continue;
      init_str(n, in, sizeof in);
      fprintf(o, "    %-*s  %-14s %12lld  %s\n", (int)w, n->name, fe_shape_str(&n->type, s, sizeof s),
              (long long)ir_type_numel(&n->type, 1), in);
    }
  }
  fprintf(o, "  outputs:\n");
  if (m->noutputs == 0) fprintf(o, "    (none)\n");
  for (int i = 0; i < m->noutputs; i++) {
    const FeNode *n = &m->nodes[m->outputs[i]];
    fprintf(o, "    %-*s  %s\n", (int)w, n->name, ir_type_str(&n->type, t, sizeof t));
  }
  if (m->loss >= 0) {
    const FeNode *n = &m->nodes[m->loss];
    /* the loss expression as written (its first line) */
    size_t len;
    const char *text = diag_file_text(m->loss_expr.file, &len);
    const char *p = text, *end = text ? text + len : NULL;
    for (int l = 1; p && p < end && l < m->loss_expr.line; p++)
      if (*p == '\n') l++;
    int from = m->loss_expr.col - 1, width = 0;
    if (p) {
      while (p + from + width < end && p[from + width] != '\n' && p[from + width] != '#' &&
             (m->loss_expr.endcol == INT32_MAX || from + width < m->loss_expr.endcol - 1))
        width++;
      while (width > 0 && p[from + width - 1] == ' ') width--;
    }
    fprintf(o, "  loss:\n    %.*s%s  : %s[]  (line %d)\n", width > 60 ? 57 : width, p ? p + from : "",
            width > 60 ? "..." : "", ir_dtype_name((DType)n->type.dtype), n->loc.line);
  }
  if (m->train.present) fe_print_train(o, &m->train);
  else fprintf(o, "  train: no train block (defaults: adam lr=0.001, batch 32, epochs 1, seed 0)\n");
}
