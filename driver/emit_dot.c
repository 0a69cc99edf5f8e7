/* driver/emit_dot.c — `bpcc --emit=dot FILE.bp`: forward and backward as a Graphviz graph.
 *
 *   bpcc --emit=dot examples/mnist_mlp.bp | dot -Tsvg > mlp.svg
 *
 * One node per instruction of the gradient function (the forward one for a model
 * without a loss), one edge per operand. Kernels are clusters: the grouping is the
 * kernel plan that codegen lowers (passes/kernel_plan.c), so the picture shows the
 * loops that run. Forward instructions are blue, backward
 * ones orange; values recomputed in backward (--recompute,
 * --mem-budget) are dashed and yellow with a red border; leaves (inputs, parameters,
 * constants) are ellipses and sinks (output, loss, grad) double octagons. */
#include "driver/driver.h"

#include <string.h>

/* A double-quoted DOT string; `"` and `\` escaped, newlines as \n. */
static void dot_string(FILE *out, const char *s) {
  fputc('"', out);
  for (; *s; s++) {
    if (*s == '"' || *s == '\\') fprintf(out, "\\%c", *s);
    else if (*s == '\n') fputs("\\n", out);
    else if ((unsigned char)*s >= 32) fputc(*s, out);
  }
  fputc('"', out);
}

static void dot_node(FILE *out, Func *f, int32_t i, const char *indent) {
  const Inst *in = &f->insts[i];
  const OpInfo *info = &ir_ops[in->op];
  char label[512], ty[96];
  int k = 0;
  if (info->flags & OPF_SINK) k = snprintf(label, sizeof label, "%s", info->name);
  else k = snprintf(label, sizeof label, "%%%d = %s", (int)i, info->name);
  if (in->name && k < (int)sizeof label) k += snprintf(label + k, sizeof label - (size_t)k, " %s", in->name);
  if (!(info->flags & OPF_SINK) && k < (int)sizeof label)
    k += snprintf(label + k, sizeof label - (size_t)k, "\n%s", ir_type_str(ir_vtype(f, i), ty, sizeof ty));
  if (in->rule && k < (int)sizeof label) k += snprintf(label + k, sizeof label - (size_t)k, "\n[%s]", in->rule);
  if (in->loc.file >= 0 && in->loc.line > 0 && k < (int)sizeof label)
    snprintf(label + k, sizeof label - (size_t)k, "\n%s:%d:%d", diag_file_name(in->loc.file), in->loc.line, in->loc.col);
  fprintf(out, "%sn%d [label=", indent, (int)i);
  dot_string(out, label);
  if (in->flags & IF_RECOMPUTED)
    fprintf(out, ", style=\"filled,dashed\", fillcolor=\"#fff3b0\", color=\"#d62728\", penwidth=2");
  else if (info->flags & OPF_SINK)
    fprintf(out, ", shape=doubleoctagon, style=filled, fillcolor=\"#e0e0e0\"");
  else if (info->flags & OPF_LEAF)
    fprintf(out, ", shape=ellipse, style=filled, fillcolor=\"#f4f4f4\"");
  else if (in->flags & IF_BACKWARD)
    fprintf(out, ", style=filled, fillcolor=\"#fdd0a2\"");
  else
    fprintf(out, ", style=filled, fillcolor=\"#c6dbef\"");
  fprintf(out, "];\n");
}

static void write_dot(FILE *out, const KernelPlan *s) {
  Func *f = s->f;
  int32_t n = f->ninsts;
  fprintf(out, "digraph ");
  dot_string(out, f->name);
  fprintf(out, " {\n  rankdir=TB;\n  node [shape=box, fontname=\"Helvetica\", fontsize=10];\n");
  fprintf(out, "  edge [color=\"#555555\", arrowsize=0.6];\n");
  fprintf(out, "  label=");
  char title[256];
  snprintf(title, sizeof title, "@%s: forward (blue), backward (orange), recomputed (dashed yellow); clusters are kernels",
           f->name);
  dot_string(out, title);
  fprintf(out, ";\n  labelloc=t;\n");
  int k = 0;
  for (int g = 0; g < s->ngroups; g++) {
    int32_t b = s->group_start[g], e = s->group_start[g + 1];
    if (ir_ops[f->insts[s->order[b]].op].kind == OPK_SINK) continue;   /* a sink: not a kernel */
    fprintf(out, "  subgraph cluster_k%d {\n    label=\"kernel %d%s%s\";\n    style=rounded;\n    color=\"#888888\";\n", k, k,
            s->kind[g] >= KERNEL_GEMM ? ": " : "", s->kind[g] >= KERNEL_GEMM ? kernel_kind_names[s->kind[g]] : "");
    k++;
    for (int32_t m = b; m < e; m++) dot_node(out, f, s->order[m], "    ");
    fprintf(out, "  }\n");
  }
  for (int32_t i = 0; i < n; i++)   /* leaves and sinks, outside the kernels */
    if (s->live[i] && (!s->computed[i] || ir_ops[f->insts[i].op].kind == OPK_SINK)) dot_node(out, f, i, "  ");
  for (int32_t i = 0; i < n; i++) {
    const Inst *in = &f->insts[i];
    for (int q = 0; q < in->nargs && s->live[i]; q++) {
      fprintf(out, "  n%d -> n%d", (int)in->args[q], (int)i);
      if (in->flags & IF_RECOMPUTED) fprintf(out, " [style=dashed, color=\"#d62728\"]");
      fprintf(out, ";\n");
    }
  }
  fprintf(out, "}\n");
}

int emit_dot(Compilation *c, FILE *out) {
  write_dot(out, c->kgrad ? c->kgrad : c->kfwd);
  return 0;
}
