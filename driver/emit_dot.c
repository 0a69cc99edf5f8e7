/* driver/emit_dot.c — `bpcc --emit=dot FILE.bp`: forward and backward as a Graphviz graph.
 *
 *   bpcc --emit=dot examples/mnist_mlp.bp | dot -Tsvg > mlp.svg
 *
 * One node per instruction of the gradient function (the forward one for a model
 * without a loss), one edge per operand. Kernels are clusters: the grouping is the
 * code generator's own schedule (fuse_plan in passes/fuse.c, with fusion on),
 * so the picture shows the loops that run. Forward instructions are blue, backward
 * ones orange; values recomputed in backward by checkpointing (--checkpoint,
 * --mem-budget) are dashed and yellow with a red border; leaves (inputs, parameters,
 * constants) are ellipses and sinks (output, loss, grad) double octagons. */
#include "codegen/cg.h"
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

static void write_dot(FILE *out, Func *f) {
  Arena *a = arena_new();
  int32_t n = f->ninsts;
  bool *computed = arena_alloc(a, (size_t)(n + 1) * sizeof *computed);
  for (int32_t i = 0; i < n; i++) {
    const Inst *in = &f->insts[i];
    computed[i] = !(ir_ops[in->op].flags & (OPF_LEAF | OPF_SINK)) || in->op == OP_DROPOUT_MASK;
  }
  FusePlan s;
  fuse_plan(a, f, computed, true, &s);
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
  for (int g = 0; g < s.ngroups; g++) {
    int32_t b = s.group_start[g], e = s.group_start[g + 1];
    fprintf(out, "  subgraph cluster_k%d {\n    label=\"kernel %d%s%s\";\n    style=rounded;\n    color=\"#888888\";\n", g, g,
            s.kind[g] >= FUSE_GEMM ? ": " : "", s.kind[g] >= FUSE_GEMM ? fuse_kind_names[s.kind[g]] : "");
    for (int32_t k = b; k < e; k++) dot_node(out, f, s.order[k], "    ");
    fprintf(out, "  }\n");
  }
  for (int32_t i = 0; i < n; i++)
    if (!computed[i]) dot_node(out, f, i, "  ");
  for (int32_t i = 0; i < n; i++) {
    const Inst *in = &f->insts[i];
    for (int k = 0; k < in->nargs; k++) {
      fprintf(out, "  n%d -> n%d", (int)in->args[k], (int)i);
      if (in->flags & IF_RECOMPUTED) fprintf(out, " [style=dashed, color=\"#d62728\"]");
      fprintf(out, ";\n");
    }
  }
  fprintf(out, "}\n");
  arena_free(a);
}

int emit_dot(DrvCompilation *c, FILE *out) {
  if (!c->func) {
    fprintf(stderr, "bpcc: error: %s has no model to draw\n", c->name);
    return 1;
  }
  Func *f = c->func;
  if (c->model && c->model->loss >= 0) {
    f = drv_grad_func(c->func);
    if (!f) return 1;
    f = drv_checkpoint(c, f, NULL);
    if (!f) return 1;
  }
  write_dot(out, f);
  return 0;
}

/* `bpcc --emit=opt-ir FILE.bp`: the gradient IR (after autodiff, simplification and
 * checkpointing) as the kernels it compiles to, in the order they run: the leaves
 * (inputs, parameters, constants) first, then each kernel as a line
 * `# kernel K: op+op+... (kind)` followed by its members, each sink after the kernel
 * that produces its operand. Members marked `internal` never reach memory. The
 * grouping and the order are passes/fuse.c's, the ones codegen lowers and --emit=dot
 * draws as clusters. */
int emit_opt_ir(DrvCompilation *c, FILE *out) {
  if (!c->func) {
    fprintf(stderr, "bpcc: error: %s has no model\n", c->name);
    return 1;
  }
  Func *f = c->func;
  if (c->model && c->model->loss >= 0) {
    f = drv_grad_func(c->func);
    if (!f) return 1;
    f = drv_checkpoint(c, f, NULL);
    if (!f) return 1;
  }
  Arena *a = arena_new();
  int32_t n = f->ninsts;
  bool *computed = arena_alloc(a, (size_t)(n + 1) * sizeof *computed);
  int32_t *pos = arena_alloc(a, (size_t)(n + 1) * sizeof *pos);   /* kernel position of a value, -1: leaf */
  for (int32_t i = 0; i < n; i++) {
    const Inst *in = &f->insts[i];
    computed[i] = !(ir_ops[in->op].flags & (OPF_LEAF | OPF_SINK)) || in->op == OP_DROPOUT_MASK;
    pos[i] = -1;
  }
  FusePlan s;
  fuse_plan(a, f, computed, true, &s);
  for (int g = 0; g < s.ngroups; g++)
    for (int32_t k = s.group_start[g]; k < s.group_start[g + 1]; k++) pos[s.order[k]] = g;
  /* the printer writes `func @name {`, one line per instruction, then `}` */
  char *text = ir_print_to_string(f);
  const char **line = arena_alloc(a, (size_t)(n + 2) * sizeof *line);
  size_t *len = arena_alloc(a, (size_t)(n + 2) * sizeof *len);
  char *p = text;
  int32_t nl = 0;
  while (p && *p && nl < n + 2) {
    char *e = strchr(p, '\n');
    line[nl] = p;
    len[nl++] = e ? (size_t)(e - p + 1) : strlen(p);
    p = e ? e + 1 : NULL;
  }
  if (nl < n + 2) {
    fwrite(text, 1, strlen(text), out);   /* not the shape expected: print it as it is */
  } else {
    fwrite(line[0], 1, len[0], out);
    int32_t *sink_after = arena_alloc(a, (size_t)(n + 1) * sizeof *sink_after);
    for (int32_t i = 0; i < n; i++) {
      const Inst *in = &f->insts[i];
      sink_after[i] = -2;
      if (computed[i]) continue;
      if (!(ir_ops[in->op].flags & OPF_SINK)) {
        fwrite(line[i + 1], 1, len[i + 1], out);   /* a leaf */
        continue;
      }
      sink_after[i] = -1;
      for (int q = 0; q < in->nargs; q++)
        if (pos[in->args[q]] > sink_after[i]) sink_after[i] = pos[in->args[q]];
    }
    for (int32_t i = 0; i < n; i++)
      if (sink_after[i] == -1) fwrite(line[i + 1], 1, len[i + 1], out);
    for (int g = 0; g < s.ngroups; g++) {
      fprintf(out, "  # kernel %d:", g);
      for (int32_t k = s.group_start[g]; k < s.group_start[g + 1]; k++)
        fprintf(out, "%s%s", k == s.group_start[g] ? " " : "+", ir_ops[f->insts[s.order[k]].op].name);
      if (s.kind[g] >= FUSE_GEMM) fprintf(out, "  (%s)", fuse_kind_names[s.kind[g]]);
      fprintf(out, "\n");
      for (int32_t k = s.group_start[g]; k < s.group_start[g + 1]; k++) {
        int32_t v = s.order[k];
        size_t l = len[v + 1];
        if (s.internal[v] && l > 0 && line[v + 1][l - 1] == '\n') {
          fwrite(line[v + 1], 1, l - 1, out);
          fputs("  (internal)\n", out);
        } else {
          fwrite(line[v + 1], 1, l, out);
        }
      }
      for (int32_t i = 0; i < n; i++)
        if (sink_after[i] == g) fwrite(line[i + 1], 1, len[i + 1], out);
    }
    fwrite(line[n + 1], 1, len[n + 1], out);
  }
  fprintf(out, "# %d kernels\n", s.ngroups);
  bp_free(text);
  arena_free(a);
  return 0;
}
