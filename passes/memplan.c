/* passes/memplan.c — lifetimes, kinds and workspace offsets of every value.
 *
 * The one idea: a value needs memory from the instruction that defines it to its last
 * use, so two values whose lifetimes do not intersect can share bytes. Inputs, params,
 * constants, outputs and gradients live elsewhere (the caller's buffers, the params and
 * grads blocks, immediates); everything else — kept activations, recomputed values,
 * temporaries — gets an offset into one workspace.
 *
 * Sizes are linear in the batch (f32[B,512] is 2048 bytes per row), and so are offsets:
 * every offset is a sum of slots below it, each slot rounded up to 64 bytes per
 * component, so the plan is 64-byte aligned and valid for every batch >= 1. The runtime
 * allocates workspace.fixed + workspace.per_batch * B bytes (runtime/model.h).
 *
 * Algorithm (greedy by size, best fit — TFLite's "greedy by size" planner with linear
 * sizes):
 *   1. One sweep: lifetime [def, last use] of every value; a use by a sink extends it
 *      to the end. Classify each value (MemKind).
 *   2. Order workspace values by slot size at the plan batch, largest first (ties:
 *      earlier definition first).
 *   3. For each value v, the already placed values whose lifetimes intersect v's are
 *      its conflicts. Candidate offsets: 0, the end of each conflict, and the
 *      componentwise maximum of all their ends (always free). A candidate is free when
 *      for every conflict u, v ends below u's start for all B, or starts above u's end
 *      for all B (a <= b for all B >= 1 iff a(1) <= b(1) and a.per_batch <= b.per_batch).
 *   4. Best fit: among free candidates take the one with the smallest gap left above v
 *      (to the next conflict, at the plan batch); a candidate with nothing above is a
 *      gap of infinite size; ties go to the lower offset.
 *   5. The workspace is the componentwise maximum of offset + slot.
 * A size instruction reads only its operand's shape, so it is not a use.
 * Lifetimes are inclusive, so an instruction's result never shares bytes with its own
 * operands (no in-place updates: codegen may read operands while writing the result). */
#include "passes/memplan.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

const char *const memplan_kind_names[MEM__COUNT] = {
    [MEM_NONE] = "-",          [MEM_INPUT] = "input",     [MEM_PARAM] = "parameter",
    [MEM_CONST] = "constant",  [MEM_OUTPUT] = "output",   [MEM_GRADIENT] = "gradient",
    [MEM_KEPT] = "kept",       [MEM_RECOMPUTED] = "recomputed", [MEM_TEMP] = "temporary",
    [MEM_BUFFER] = "buffer",
};

/* ------------------------------------------------------------------ sizes */

static int64_t align64(int64_t n) { return (n + 63) / 64 * 64; }

MemSize memplan_type_size(const TensorType *t, int64_t batch, bool *linear) {
  int64_t elem = ir_dtype_bytes((DType)t->dtype);  /* labels: one int32 per row */
  int r = t->dtype == DT_LABEL && t->rank > 0 ? t->rank - 1 : t->rank;
  int64_t rest = 1;
  int nbatch = 0;
  for (int i = 0; i < r; i++) {
    if (t->dims[i] == DIM_BATCH) nbatch++;
    else rest *= t->dims[i];
  }
  if (nbatch == 0) return (MemSize){rest * elem, 0};
  if (nbatch == 1) return (MemSize){0, rest * elem};
  if (linear) *linear = false;  /* e.g. f32[B,B]: fixed at this batch */
  return (MemSize){ir_type_numel(t, batch) * elem, 0};
}

int64_t memplan_parse_size(const char *s) {
  if (!s || !*s) return -1;
  char *end;
  double v = strtod(s, &end);
  if (end == s || !(v >= 0) || isinf(v)) return -1;
  static const struct { const char *suffix; double mult; } units[] = {
      {"", 1}, {"B", 1}, {"KiB", 1024.0}, {"MiB", 1048576.0}, {"GiB", 1073741824.0},
      {"TiB", 1099511627776.0}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12},
      {"kB", 1e3}, {"K", 1024.0}, {"M", 1048576.0}, {"G", 1073741824.0},
  };
  for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
    if (strcmp(end, units[i].suffix) == 0) {
      double b = v * units[i].mult;
      if (b > 9.0e18 || b != floor(b)) return -1;
      return (int64_t)b;
    }
  }
  return -1;
}

char *memplan_format_size(int64_t bytes, char *buf, size_t n) {
  static const char *const names[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = (double)bytes;
  int u = 0;
  while (v >= 1024.0 && u < 4) { v /= 1024.0; u++; }
  if (u == 0) snprintf(buf, n, "%" PRId64 " B", bytes);
  else snprintf(buf, n, "%.2f %s", v, names[u]);
  return buf;
}

/* ------------------------------------------------------------------ FLOPs */

double memplan_inst_flops(Func *f, int32_t v, int64_t batch) {
  const Inst *in = &f->insts[v];
  const OpInfo *info = &ir_ops[in->op];
  if (info->flags & (OPF_LEAF | OPF_SINK)) {
    if (in->op == OP_DROPOUT_MASK) return (double)ir_type_numel(ir_vtype(f, v), batch);
    return 0;
  }
  double out = (double)ir_type_numel(ir_vtype(f, v), batch);
  double a0 = (double)ir_type_numel(ir_vtype(f, in->args[0]), batch);
  switch (in->op) {
  case OP_MATMUL: case OP_MATMUL_NT: case OP_MATMUL_TN: {
    /* a multiply-add per result element and k; matmul_tn fold=1 sums over a's leading
     * dims too (k = numel(a) / m); a batched product's batches are in out */
    const TensorType *a = ir_vtype(f, in->args[0]);
    int r = a->rank;
    if (in->op == OP_MATMUL_TN && in->iattr[0] == 1) return 2.0 * out * a0 / (double)a->dims[r - 1];
    int64_t k = in->op == OP_MATMUL_TN ? a->dims[r - 2] : a->dims[r - 1];
    if (k == DIM_BATCH) k = batch;
    return 2.0 * out * (double)k;
  }
  case OP_CONV2D: case OP_CONV2D_BWD_DATA: case OP_CONV2D_BWD_WEIGHT: {
    /* one multiply-add per (output element, c, u, v) of the forward conv2d: the
     * gradients walk the same tuples (zero-padding taps counted, as usual) */
    const TensorType *k = in->op == OP_CONV2D_BWD_WEIGHT ? ir_vtype(f, v) : ir_vtype(f, in->args[1]);
    int32_t y = in->op == OP_CONV2D ? v : in->op == OP_CONV2D_BWD_DATA ? in->args[0] : in->args[1];
    return 2.0 * (double)ir_type_numel(ir_vtype(f, y), batch) * (double)(k->dims[1] * k->dims[2] * k->dims[3]);
  }
  case OP_SIZE: case OP_EXTRA: return 0;   /* an extra: its producer's kernel computes it */
  case OP_ATTENTION: case OP_ATTENTION_BWD: {
    /* per (query, key) pair: the score (2 dh) and p v (2 dv) forward; backward the score,
     * dp (2 dv), dv (2 dv), dk and dq (2 dh each); half the pairs when causal */
    const TensorType *q = ir_vtype(f, in->args[0]), *k = ir_vtype(f, in->args[1]), *vv = ir_vtype(f, in->args[2]);
    int r = q->rank;
    double pairs = (double)ir_type_numel(q, batch) / (double)q->dims[r - 1] * (double)k->dims[r - 2];
    if (in->iattr[0]) pairs *= 0.5;
    double dh = (double)q->dims[r - 1], dv = (double)vv->dims[r - 1];
    return pairs * (in->op == OP_ATTENTION ? 2 * dh + 2 * dv : 6 * dh + 4 * dv);
  }
  case OP_SUM: case OP_MEAN: case OP_MAX: case OP_SUM_TO: return a0;
  case OP_SOFTMAX: case OP_LOG_SOFTMAX: case OP_SOFTMAX_XENT: return 5.0 * a0;
  /* per element: the two stats passes (3), then the apply (3) / the sums and dx (7) /
   * dy xhat accumulated (3) */
  case OP_LAYERNORM: return 6.0 * a0;
  case OP_LAYERNORM_BWD: return 10.0 * a0;
  case OP_LAYERNORM_BWD_GAMMA: return 6.0 * a0;
  case OP_MAX_POOL2D: case OP_AVG_POOL2D: case OP_MAX_POOL2D_BWD: case OP_AVG_POOL2D_BWD: {
    /* one compare or add per window cell: k*k per pooled element (dy for the bwd ops) */
    double k = (double)in->iattr[0];
    const TensorType *y = ir_vtype(f, in->op == OP_MAX_POOL2D_BWD ? in->args[1] : in->op == OP_AVG_POOL2D_BWD ? in->args[0] : v);
    return (double)ir_type_numel(y, batch) * k * k;
  }
  default: return out;
  }
}

/* ------------------------------------------------------------------ classification */

/* Pass 1: lifetimes and kinds. */
static void classify(MemPlan *p, int64_t batch) {
  Func *f = p->f;
  int32_t n = f->ninsts;
  p->bwd_start = n;
  for (int32_t i = 0; i < n; i++)
    if (f->insts[i].flags & IF_BACKWARD) { p->bwd_start = i; break; }

  size_t nbytes = (size_t)(n > 0 ? n : 1) * sizeof(bool);
  bool *used_by_bwd = bp_xmalloc(nbytes);
  memset(used_by_bwd, 0, nbytes);
  for (int32_t i = 0; i < n; i++) {
    MemValue *mv = &p->vals[i];
    mv->def = mv->last = i;
    mv->kind = MEM_TEMP;
  }
  /* Uses: the last one wins; a sink keeps its operand to the end. */
  for (int32_t i = 0; i < n; i++) {
    const Inst *in = &f->insts[i];
    bool sink = ir_ops[in->op].flags & OPF_SINK;
    if (in->op == OP_SIZE) continue;  /* reads only the shape: not a use of the data */
    for (int k = 0; k < in->nargs; k++) {
      int32_t a = in->args[k];
      if (a < 0 || a >= i) continue;  /* the verifier rejects these */
      p->vals[a].last = sink ? n - 1 : (i > p->vals[a].last ? i : p->vals[a].last);
      if (in->flags & IF_BACKWARD) used_by_bwd[a] = true;
    }
  }
  /* An extra result is written by its producer's kernel: it lives from the producer on,
   * so it never shares bytes with what the producer reads or writes. */
  for (int32_t i = 0; i < n; i++)
    if (f->insts[i].op == OP_EXTRA && f->insts[i].args[0] < i) p->vals[i].def = f->insts[i].args[0];
  /* Kinds, most specific last so that it wins. */
  for (int32_t i = 0; i < n; i++) {
    const Inst *in = &f->insts[i];
    MemValue *mv = &p->vals[i];
    if (ir_ops[in->op].flags & OPF_SINK) { mv->kind = MEM_NONE; continue; }
    if (in->flags & IF_RECOMPUTED) mv->kind = MEM_RECOMPUTED;
    else if (!(in->flags & IF_BACKWARD) && used_by_bwd[i]) mv->kind = MEM_KEPT;
  }
  for (int32_t i = 0; i < n; i++) {  /* where sinks send their operands */
    const Inst *in = &f->insts[i];
    if (in->op == OP_OUTPUT && in->nargs >= 1) p->vals[in->args[0]].kind = MEM_OUTPUT;
    if (in->op == OP_GRAD && in->nargs >= 2) p->vals[in->args[1]].kind = MEM_GRADIENT;
  }
  for (int32_t i = 0; i < n; i++) {
    const Inst *in = &f->insts[i];
    MemValue *mv = &p->vals[i];
    if (in->op == OP_INPUT) mv->kind = MEM_INPUT;
    else if (in->op == OP_PARAM) mv->kind = MEM_PARAM;
    else if (in->op == OP_BUFFER) mv->kind = MEM_BUFFER;
    else if ((in->op == OP_CONST || in->op == OP_SIZE) && mv->kind != MEM_GRADIENT)
      mv->kind = MEM_CONST;
    if (mv->kind != MEM_NONE) mv->size = memplan_type_size(ir_vtype(f, i), batch, &p->linear);
    mv->in_workspace = mv->kind == MEM_KEPT || mv->kind == MEM_RECOMPUTED || mv->kind == MEM_TEMP;
    if (mv->in_workspace) mv->slot = (MemSize){align64(mv->size.fixed), align64(mv->size.per_batch)};
  }
  bp_free(used_by_bwd);
}

/* ------------------------------------------------------------------ placement */

static MemSize ms_add(MemSize a, MemSize b) { return (MemSize){a.fixed + b.fixed, a.per_batch + b.per_batch}; }
static MemSize ms_max(MemSize a, MemSize b) {
  return (MemSize){a.fixed > b.fixed ? a.fixed : b.fixed, a.per_batch > b.per_batch ? a.per_batch : b.per_batch};
}
/* a <= b for every batch >= 1 */
static bool ms_le(MemSize a, MemSize b) {
  return a.fixed + a.per_batch <= b.fixed + b.per_batch && a.per_batch <= b.per_batch;
}

static const MemPlan *sort_plan;
static int64_t sort_batch;
static int by_size_desc(const void *x, const void *y) {
  int32_t a = *(const int32_t *)x, b = *(const int32_t *)y;
  int64_t sa = mem_at(sort_plan->vals[a].slot, sort_batch), sb = mem_at(sort_plan->vals[b].slot, sort_batch);
  if (sa != sb) return sa > sb ? -1 : 1;
  return a < b ? -1 : a > b;
}

/* Lifetimes in steps: an instruction's own index, or its kernel's (memplan_build_ex):
 * from the step of the definition to the latest step of a reader. */
static int32_t step_of(const MemPlan *p, int32_t i) { return p->step ? p->step[i] : i; }
static int32_t last_step(const MemPlan *p, const MemValue *v) {
  return p->last_step ? p->last_step[v - p->vals] : step_of(p, v->last);
}
static bool overlaps(const MemPlan *p, const MemValue *a, const MemValue *b) {
  return step_of(p, a->def) <= last_step(p, b) && step_of(p, b->def) <= last_step(p, a);
}

static void place(MemPlan *p) {
  int32_t n = p->nvals, nws = 0;
  int32_t *order = bp_xmalloc((size_t)(n ? n : 1) * sizeof *order);
  int32_t *conf = bp_xmalloc((size_t)(n ? n : 1) * sizeof *conf);
  MemSize *cand = bp_xmalloc((size_t)(n + 2) * sizeof *cand);
  for (int32_t i = 0; i < n; i++)
    if (p->vals[i].in_workspace) order[nws++] = i;
  sort_plan = p;
  sort_batch = p->plan_batch;
  qsort(order, (size_t)nws, sizeof *order, by_size_desc);

  int32_t nplaced = 0;
  for (int32_t oi = 0; oi < nws; oi++) {
    MemValue *v = &p->vals[order[oi]];
    int32_t nconf = 0, ncand = 0;
    MemSize top = {0, 0};
    cand[ncand++] = (MemSize){0, 0};
    for (int32_t j = 0; j < nplaced; j++) {
      MemValue *u = &p->vals[order[j]];
      if (!overlaps(p, u, v)) continue;
      conf[nconf++] = order[j];
      MemSize end = ms_add(u->offset, u->slot);
      cand[ncand++] = end;
      top = ms_max(top, end);
    }
    cand[ncand++] = top;
    int best = -1;
    int64_t best_gap = 0, best_off = 0;
    for (int c = 0; c < ncand; c++) {
      MemSize lo = cand[c], hi = ms_add(cand[c], v->slot);
      bool free_ = true, above = false;
      int64_t gap = 0;
      for (int32_t j = 0; j < nconf && free_; j++) {
        MemValue *u = &p->vals[conf[j]];
        MemSize uend = ms_add(u->offset, u->slot);
        if (ms_le(hi, u->offset)) {
          int64_t g = mem_at(u->offset, p->plan_batch) - mem_at(hi, p->plan_batch);
          if (!above || g < gap) gap = g;
          above = true;
        } else if (!ms_le(uend, lo)) {
          free_ = false;
        }
      }
      if (!free_) continue;
      int64_t off = mem_at(lo, p->plan_batch);
      /* best fit: a bounded gap beats the open top; smaller gaps beat larger ones */
      bool better = best < 0 ||
                    (above && (best_gap < 0 || gap < best_gap || (gap == best_gap && off < best_off))) ||
                    (!above && best_gap < 0 && off < best_off);
      if (better) {
        best = c;
        best_gap = above ? gap : -1;
        best_off = off;
      }
    }
    /* `top` is always free, so best >= 0 */
    v->offset = cand[best];
    p->workspace = ms_max(p->workspace, ms_add(v->offset, v->slot));
    order[nplaced++] = order[oi];
  }
  bp_free(order);
  bp_free(conf);
  bp_free(cand);
}

/* ------------------------------------------------------------------ API */

MemPlan *memplan_build_ex(Func *f, int64_t batch, const bool *in_workspace, const int32_t *step) {
  MemPlan *p = bp_xmalloc(sizeof *p);
  memset(p, 0, sizeof *p);
  p->f = f;
  int32_t n = p->nvals = f->ninsts;
  p->plan_batch = batch >= 1 ? batch : 1;
  p->linear = true;
  p->vals = bp_xmalloc((size_t)(n ? n : 1) * sizeof *p->vals);
  memset(p->vals, 0, (size_t)(n ? n : 1) * sizeof *p->vals);
  classify(p, p->plan_batch);
  if (step) {
    /* kernels may run in another order than their instructions (passes/kernel_plan.c): a
     * value lives from its kernel to the latest kernel that reads it */
    p->step = bp_xmalloc((size_t)(n ? n : 1) * sizeof *p->step);
    p->last_step = bp_xmalloc((size_t)(n ? n : 1) * sizeof *p->last_step);
    int32_t maxstep = 0;
    for (int32_t i = 0; i < n; i++) {
      p->step[i] = p->last_step[i] = step[i];
      if (step[i] > maxstep) maxstep = step[i];
    }
    for (int32_t i = 0; i < n; i++) {
      const Inst *in = &f->insts[i];
      if (in->op == OP_SIZE) continue;
      bool sink = ir_ops[in->op].flags & OPF_SINK;
      for (int k = 0; k < in->nargs; k++) {
        int32_t a = in->args[k];
        if (a < 0 || a >= i) continue;
        int32_t s = sink ? maxstep : step[i];
        if (s > p->last_step[a]) p->last_step[a] = s;
      }
    }
  }
  if (in_workspace) {
    for (int32_t i = 0; i < n; i++) {
      MemValue *mv = &p->vals[i];
      mv->in_workspace = in_workspace[i] && mv->kind != MEM_NONE;
      mv->slot = mv->in_workspace ? (MemSize){align64(mv->size.fixed), align64(mv->size.per_batch)} : (MemSize){0, 0};
    }
  }
  place(p);
  return p;
}

MemPlan *memplan_build(Func *f, int64_t batch) { return memplan_build_ex(f, batch, NULL, NULL); }

void memplan_free(MemPlan *p) {
  if (!p) return;
  bp_free(p->vals);
  bp_free(p->step);
  bp_free(p->last_step);
  bp_free(p);
}

int64_t memplan_workspace_bytes(const MemPlan *p, int64_t batch) { return mem_at(p->workspace, batch); }

int64_t memplan_live_peak(const MemPlan *p, int64_t batch) {
  /* a sweep over lifetime events: +slot at def, -slot after last */
  int32_t n = 0;
  for (int32_t i = 0; i < p->nvals; i++) {
    int32_t s = last_step(p, &p->vals[i]);
    if (s + 1 > n) n = s + 1;
  }
  int64_t *delta = bp_xmalloc((size_t)(n + 1) * sizeof *delta);
  memset(delta, 0, (size_t)(n + 1) * sizeof *delta);
  for (int32_t i = 0; i < p->nvals; i++) {
    const MemValue *v = &p->vals[i];
    if (!v->in_workspace) continue;
    delta[step_of(p, v->def)] += mem_at(v->slot, batch);
    delta[last_step(p, v) + 1] -= mem_at(v->slot, batch);
  }
  int64_t live = 0, peak = 0;
  for (int32_t t = 0; t < n; t++) {
    live += delta[t];
    if (live > peak) peak = live;
  }
  bp_free(delta);
  return peak;
}

MemTotals memplan_totals(const MemPlan *p, int64_t batch, int opt_state_per_param) {
  MemTotals t;
  memset(&t, 0, sizeof t);
  for (int32_t i = 0; i < p->nvals; i++) {
    const MemValue *v = &p->vals[i];
    int64_t b = mem_at(v->size, batch);
    switch (v->kind) {
    case MEM_PARAM: t.params += b; break;
    case MEM_BUFFER: t.buffers += b; break;
    case MEM_KEPT: t.kept += v->in_workspace ? b : 0; break;   /* inside a kernel: no bytes */
    case MEM_RECOMPUTED: t.recomputed += v->in_workspace ? b : 0; break;
    case MEM_TEMP: t.temporaries += v->in_workspace ? b : 0; break;
    default: break;
    }
  }
  /* The gradient block mirrors the parameter block (a param whose gradient is a
   * constant zero still has its slot), and so does each optimizer state buffer. */
  for (int32_t i = 0; i < p->nvals; i++)
    if (p->f->insts[i].op == OP_GRAD) { t.grads = t.params; break; }
  t.opt_state = t.params * (opt_state_per_param > 0 ? opt_state_per_param : 0);
  t.workspace = memplan_workspace_bytes(p, batch);
  t.total = t.params + t.grads + t.opt_state + t.buffers + t.workspace;
  return t;
}

/* ------------------------------------------------------------------ the model */

MemPlan *memplan_of_kernels(const KernelPlan *kp) {
  Func *f = kp->f;
  int32_t n = f->ninsts;
  bool *in_ws = bp_xmalloc((size_t)(n + 1) * sizeof *in_ws);
  int32_t *step = bp_xmalloc((size_t)(n + 1) * sizeof *step);
  for (int32_t i = 0; i < n; i++) {
    in_ws[i] = kp->computed[i] && f->insts[i].type != TYPE_VOID && kp->direct_grad[i] < 0 && !kp->internal[i];
    step[i] = kp->kernel_of[i] >= 0 ? kp->kernel_of[i] : 0;
  }
  MemPlan *p = memplan_build_ex(f, 1, in_ws, step);
  bp_free(in_ws);
  bp_free(step);
  return p;
}

int32_t memplan_elem_bytes(Func *f) {
  for (int32_t i = 0; f && i < f->ninsts; i++) {
    if (f->insts[i].type == TYPE_VOID) continue;
    int d = ir_vtype(f, i)->dtype;
    if (d == DT_F32) return 4;
    if (d == DT_F64) return 8;
  }
  return 4;
}

int64_t memplan_accum_bytes_of(const KernelPlan *kp, int32_t i, int32_t elem_bytes) {
  if (!kp || kp->direct_grad[i] < 0) return 0;
  int64_t bytes = ir_type_numel(ir_vtype(kp->f, i), 1) * elem_bytes;
  return (bytes + 63) / 64 * 64;
}

/* The accumulation scratch: the largest total of one kernel's in-place gradients. */
static int64_t accum_scratch(const KernelPlan *kp, int32_t elem_bytes) {
  int64_t most = 0;
  for (int g = 0; kp && g < kp->ngroups; g++) {
    int64_t sum = 0;
    for (int32_t q = kp->group_start[g]; q < kp->group_start[g + 1]; q++)
      sum += memplan_accum_bytes_of(kp, kp->order[q], elem_bytes);
    if (sum > most) most = sum;
  }
  return most;
}

ModelMemory *memplan_model(const KernelPlan *fwd, const KernelPlan *grad, int opt_slots, int64_t extra) {
  ModelMemory *m = bp_xmalloc(sizeof *m);
  memset(m, 0, sizeof *m);
  Func *pf = m->pf = grad ? grad->f : fwd->f;
  m->elem_bytes = memplan_elem_bytes(pf);
  for (int32_t i = 0; i < pf->ninsts; i++) m->nparams += pf->insts[i].op == OP_PARAM;
  m->param_inst = bp_xmalloc((size_t)(m->nparams + 1) * sizeof *m->param_inst);
  m->param_offset = bp_xmalloc((size_t)(m->nparams + 1) * sizeof *m->param_offset);
  m->param_trained = bp_xmalloc((size_t)(m->nparams + 1) * sizeof *m->param_trained);
  /* a parameter the loss does not reach (autodiff marks its grad sink "unreached") is
   * not trained: it goes after the trained ones, so the update stops before it */
  bool *unreached = bp_xmalloc((size_t)(pf->ninsts + 1) * sizeof *unreached);
  memset(unreached, 0, (size_t)(pf->ninsts + 1) * sizeof *unreached);
  for (int32_t i = 0; grad && i < pf->ninsts; i++)
    if (pf->insts[i].op == OP_GRAD && pf->insts[i].rule && !strcmp(pf->insts[i].rule, PASS_RULE_UNREACHED))
      unreached[pf->insts[i].args[0]] = true;
  int32_t k = 0;
  for (int32_t i = 0; i < pf->ninsts; i++)
    if (pf->insts[i].op == OP_PARAM) {
      m->param_inst[k] = i;
      m->param_trained[k++] = !unreached[i];
    }
  int64_t off = 0;
  for (int pass = 0; pass < 2; pass++) {   /* trained, then the others */
    for (k = 0; k < m->nparams; k++) {
      if (m->param_trained[k] != (pass == 0)) continue;
      const TensorType *t = ir_vtype(pf, m->param_inst[k]);
      int64_t numel = 1;
      for (int d = 0; d < t->rank; d++) numel *= t->dims[d] == DIM_BATCH ? 1 : t->dims[d];
      m->param_offset[k] = off;
      off = (off + numel + MEMPLAN_PARAM_ALIGN - 1) / MEMPLAN_PARAM_ALIGN * MEMPLAN_PARAM_ALIGN;
    }
    if (pass == 0) m->trained_floats = off;
  }
  bp_free(unreached);
  m->param_floats = off;
  m->opt_state_floats = grad ? (int64_t)(opt_slots > 0 ? opt_slots : 0) * off : 0;
  /* buffers: their own block, in instruction order */
  for (int32_t i = 0; i < pf->ninsts; i++) m->nbuffers += pf->insts[i].op == OP_BUFFER;
  m->buffer_inst = bp_xmalloc((size_t)(m->nbuffers + 1) * sizeof *m->buffer_inst);
  m->buffer_offset = bp_xmalloc((size_t)(m->nbuffers + 1) * sizeof *m->buffer_offset);
  off = 0;
  k = 0;
  for (int32_t i = 0; i < pf->ninsts; i++)
    if (pf->insts[i].op == OP_BUFFER) {
      int64_t numel = ir_type_numel(ir_vtype(pf, i), 1);
      m->buffer_inst[k] = i;
      m->buffer_offset[k++] = off;
      off = (off + numel + MEMPLAN_PARAM_ALIGN - 1) / MEMPLAN_PARAM_ALIGN * MEMPLAN_PARAM_ALIGN;
    }
  m->buffer_floats = off;
  m->fwd = memplan_of_kernels(fwd);
  m->grad = grad ? memplan_of_kernels(grad) : NULL;
  m->extra = extra;
  m->accum_bytes = accum_scratch(grad, m->elem_bytes);
  MemSize w = m->fwd->workspace;
  if (m->grad) w = ms_max(w, m->grad->workspace);
  m->workspace = (MemSize){extra + m->accum_bytes + w.fixed, w.per_batch};
  return m;
}

void memplan_model_free(ModelMemory *m) {
  if (!m) return;
  memplan_free(m->fwd);
  memplan_free(m->grad);
  bp_free(m->param_inst);
  bp_free(m->param_offset);
  bp_free(m->param_trained);
  bp_free(m->buffer_inst);
  bp_free(m->buffer_offset);
  bp_free(m);
}

bool memplan_verify(const MemPlan *p, const char *what) {
  int errors = 0;
  for (int32_t i = 0; i < p->nvals; i++) {
    const MemValue *u = &p->vals[i];
    if (!u->in_workspace) continue;
    MemSize end = ms_add(u->offset, u->slot);
    if (u->offset.fixed % 64 || u->offset.per_batch % 64 || !ms_le(end, p->workspace) ||
        mem_at(u->slot, 1) < mem_at(u->size, 1) || u->slot.per_batch < u->size.per_batch) {
      if (errors++ < 20)
        fprintf(stderr, "bpcc: memory plan of @%s after %s: %%%d is misplaced (offset %lld + %lld B, slot %lld + %lld B)\n",
                p->f->name, what, (int)i, (long long)u->offset.fixed, (long long)u->offset.per_batch,
                (long long)u->slot.fixed, (long long)u->slot.per_batch);
      continue;
    }
    for (int32_t j = i + 1; j < p->nvals; j++) {
      const MemValue *v = &p->vals[j];
      if (!v->in_workspace || !overlaps(p, u, v)) continue;
      MemSize vend = ms_add(v->offset, v->slot);
      if (ms_le(end, v->offset) || ms_le(vend, u->offset)) continue;
      if (errors++ < 20)
        fprintf(stderr, "bpcc: memory plan of @%s after %s: %%%d and %%%d are alive together and share bytes\n",
                p->f->name, what, (int)i, (int)j);
    }
  }
  return errors == 0;
}

/* ------------------------------------------------------------------ the report */

/* The DSL name of a source line's binding: `h1 = ...` or `output pred = ...` -> h1,
 * pred. Empty if the line binds nothing. */
static void binding_name(SrcLoc loc, char *buf, size_t n) {
  buf[0] = 0;
  size_t len;
  const char *text = diag_file_text(loc.file, &len);
  if (!text || loc.line <= 0) return;
  const char *p = text, *end = text + len;
  for (int l = 1; l < loc.line && p < end; p++)
    if (*p == '\n') l++;
  while (p < end && (*p == ' ' || *p == '\t')) p++;
  if (end - p > 7 && !strncmp(p, "output", 6) && (p[6] == ' ' || p[6] == '\t')) {
    p += 6;
    while (p < end && (*p == ' ' || *p == '\t')) p++;
  }
  const char *s = p;
  while (p < end && (*p == '_' || (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (p > s && *p >= '0' && *p <= '9'))) p++;
  const char *e = p;
  while (p < end && (*p == ' ' || *p == '\t')) p++;
  if (e == s || p >= end || *p != '=' || (p + 1 < end && p[1] == '=')) return;
  snprintf(buf, n, "%.*s", (int)(e - s), s);
}

static bool same_line(SrcLoc a, SrcLoc b) { return a.file == b.file && a.line == b.line && a.file >= 0; }

/* Names for the report: inputs and params by their own name, outputs by the output's
 * name, gradients as grad(param), a forward value by the binding of its source line
 * when it is the last instruction computed on that line, recomputed values after the
 * value they recompute; everything else by %id. */
static char **report_names(Arena *a, const MemPlan *p) {
  Func *f = p->f;
  int32_t n = f->ninsts;
  char **names = arena_alloc(a, (size_t)(n ? n : 1) * sizeof *names);
  char buf[128];
  int32_t prev = -1;  /* previous non-leaf forward instruction */
  for (int32_t i = 0; i <= n; i++) {
    const Inst *in = i < n ? &f->insts[i] : NULL;
    bool fwd = in && !(in->flags & IF_BACKWARD) && !(ir_ops[in->op].flags & (OPF_LEAF | OPF_SINK));
    if (in && !fwd && (ir_ops[in->op].flags & OPF_LEAF)) continue;
    /* prev ends a run of its line when this one is on another line (or not forward) */
    if (prev >= 0 && (!fwd || !same_line(f->insts[prev].loc, in->loc))) {
      binding_name(f->insts[prev].loc, buf, sizeof buf);
      if (buf[0]) names[prev] = arena_strdup(a, buf);
    }
    prev = fwd ? i : -1;
  }
  for (int32_t i = 0; i < n; i++) {
    const Inst *in = &f->insts[i];
    if ((in->op == OP_INPUT || in->op == OP_PARAM || in->op == OP_BUFFER) && in->name) names[i] = arena_strdup(a, in->name);
    if (in->op == OP_OUTPUT && in->name && in->nargs == 1) names[in->args[0]] = arena_strdup(a, in->name);
    if (in->op == OP_GRAD && in->nargs == 2 && f->insts[in->args[0]].name)
      names[in->args[1]] = arena_printf(a, "grad(%s)", f->insts[in->args[0]].name);
  }
  for (int32_t i = 0; i < n; i++) {
    const Inst *in = &f->insts[i];
    if ((in->flags & IF_RECOMPUTED) && in->from >= 0 && in->from < i && names[in->from]) names[i] = names[in->from];
    if (!names[i]) names[i] = arena_printf(a, "%%%d", (int)i);
  }
  return names;
}

void memplan_print_table(FILE *out, const MemPlan *p, int64_t batch, int64_t base) {
  Func *f = p->f;
  Arena *a = arena_new();
  char **names = report_names(a, p);
  char tbuf[96], lbuf[160];
  fprintf(out, "memory plan of @%s at batch %lld (B = %lld)\n", f->name, (long long)batch, (long long)batch);
  fprintf(out, "%-6s %-16s %-28s %-14s %12s %13s %12s  %s\n", "value", "name", "location", "shape", "bytes",
          "lifetime", "offset", "kind");
  for (int32_t i = 0; i < f->ninsts; i++) {
    const Inst *in = &f->insts[i];
    const MemValue *v = &p->vals[i];
    if (v->kind == MEM_NONE) continue;
    if (in->loc.file >= 0 && in->loc.line > 0)
      snprintf(lbuf, sizeof lbuf, "%s:%d:%d", diag_file_name(in->loc.file), in->loc.line, in->loc.col);
    else
      snprintf(lbuf, sizeof lbuf, "-");
    char life[40], off[32];
    snprintf(life, sizeof life, "[%d,%d]", (int)v->def, (int)v->last);
    if (v->in_workspace) snprintf(off, sizeof off, "%lld", (long long)(base + mem_at(v->offset, batch)));
    else snprintf(off, sizeof off, "-");
    const char *kind = memplan_kind_names[v->kind];
    if (v->kind == MEM_KEPT) kind = "kept for backward";
    bool regs = p->step && !v->in_workspace && (v->kind == MEM_KEPT || v->kind == MEM_RECOMPUTED || v->kind == MEM_TEMP);
    fprintf(out, "%%%-5d %-16s %-28s %-14s %12lld %13s %12s  %s%s\n", (int)i, names[i], lbuf,
            ir_type_str(ir_vtype(f, i), tbuf, sizeof tbuf), (long long)mem_at(v->size, batch), life, off, kind,
            regs ? ", in registers (inside its kernel)" : "");
  }
  arena_free(a);
}
