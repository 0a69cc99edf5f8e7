/* passes/recompute.c — which forward activations backward keeps, which it recomputes.
 *
 * The one idea (Chen et al. 2016, "Training deep nets with sublinear memory cost"):
 * backward reads forward activations; instead of keeping all of them alive from
 * forward to backward, keep a few (checkpoints) and recompute the others from the
 * nearest checkpoint below, just before backward needs them. Memory falls from O(L) to
 * O(sqrt L) for one extra forward pass.
 *
 * Steps:
 *   1. Links. The candidates are the forward values backward reads (MEM_KEPT in the
 *      memory plan), in forward order: the chain a_1 .. a_L. Inputs, params, constants
 *      and outputs are always available and never candidates. Link i has the bytes of
 *      a_i and a cost: the FLOPs of the forward instructions that recompute a_i when
 *      every other candidate is kept (on a chain of layers: one layer).
 *   2. A plan is keep[1..L]. Every dropped a_i is recomputed once, with what it needs
 *      that is neither kept nor always available (its closure), so the recompute cost
 *      of a plan is the sum of its dropped links' costs (one-level checkpointing: no
 *      value is recomputed twice, as in Chen et al.; Griewank's multi-level revolve,
 *      which recomputes more to go below sqrt memory, is not used).
 *   3. Chain memory model: backward walks down the chain; when it reaches a run of
 *      dropped links [a, b], the run is recomputed and alive together with the kept
 *      links below a. Peak = max(sum of kept, max over runs (kept below a + run)).
 *      recompute_chain_optimal minimizes the cost under a limit on this peak exactly, by
 *      dynamic programming over segment boundaries: a state is the last kept link j
 *      with a Pareto frontier of (kept bytes so far, cost so far); a transition keeps
 *      the next link t > j and drops j+1 .. t-1 (legal if kept-so-far + that run fits).
 *   4. On a general graph the links are still taken in forward order and a plan is
 *      still sound (any set of kept values gives correct gradients: the rewrite
 *      recomputes whatever else is needed); only the chain model's costs and peaks are
 *      then estimates. So every candidate plan is built and measured with the real
 *      memory planner, and the choice uses measured bytes and measured FLOPs.
 *   5. Modes: none keeps everything; sqrt keeps round(sqrt L) evenly spaced links;
 *      auto (or any --mem-budget) evaluates keep-all, sqrt, and the DP optimum at 33
 *      limits between the smallest feasible chain peak and keep-all, then takes the
 *      least recompute FLOPs whose measured total fits the budget (without a budget:
 *      the smallest total). No fit: an error naming the smallest total found.
 *   6. Rewrite (recompute_apply): forward is copied unchanged; before each backward
 *      instruction, the dropped values it reads (and their closure) are re-emitted in
 *      forward order, flagged IF_BACKWARD | IF_RECOMPUTED, rule "recompute", same loc,
 *      `from` = the original. The new function has CSE off, which would merge the copies
 *      back into the originals; this pass runs after simplification for that reason.
 *      The copies compute the same operations on the same operands, so gradients are
 *      bitwise equal to the plan without checkpointing. */
#include "passes/memplan.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ the chain model */

int64_t recompute_chain_memory(const RecomputeLink *links, int n, const bool *keep) {
  int64_t kept = 0, peak = 0, run = 0;
  for (int i = 0; i <= n; i++) {
    if (i == n || keep[i]) {
      if (run > 0 && kept + run > peak) peak = kept + run;
      run = 0;
      if (i < n) kept += links[i].size;
    } else {
      run += links[i].size;
    }
  }
  return kept > peak ? kept : peak;
}

double recompute_chain_cost(const RecomputeLink *links, int n, const bool *keep) {
  double c = 0;
  for (int i = 0; i < n; i++)
    if (!keep[i]) c += links[i].cost;
  return c;
}

typedef struct {
  int64_t kept;
  double cost;
  int32_t pos, parent;  /* pos: the last kept link (-1: start); parent: state index */
} DpState;

typedef struct {
  DpState *s;
  int32_t n, cap;
} DpStates;

static int32_t dp_push(DpStates *st, DpState s) {
  if (st->n == st->cap) {
    st->cap = st->cap ? st->cap * 2 : 256;
    st->s = bp_xrealloc(st->s, (size_t)st->cap * sizeof *st->s);
  }
  st->s[st->n] = s;
  return st->n++;
}

static const DpStates *cmp_states;
static int by_kept_then_cost(const void *x, const void *y) {
  const DpState *a = &cmp_states->s[*(const int32_t *)x], *b = &cmp_states->s[*(const int32_t *)y];
  if (a->kept != b->kept) return a->kept < b->kept ? -1 : 1;
  if (a->cost != b->cost) return a->cost < b->cost ? -1 : 1;
  return 0;
}

/* The frontier is capped so that pathological chains stay fast; real chains (equal
 * sizes, or few distinct sizes) stay far below the cap, and then the DP is exact. */
#define DP_FRONTIER_CAP 4096

double recompute_chain_optimal(const RecomputeLink *links, int n, int64_t limit, bool *keep) {
  /* prefix sums: S(a..b) = ps[b+1] - ps[a] */
  int64_t *ps = bp_xmalloc((size_t)(n + 1) * sizeof *ps);
  double *pc = bp_xmalloc((size_t)(n + 1) * sizeof *pc);
  ps[0] = 0;
  pc[0] = 0;
  for (int i = 0; i < n; i++) {
    ps[i + 1] = ps[i] + links[i].size;
    pc[i + 1] = pc[i] + links[i].cost;
  }
  DpStates st = {0};
  /* frontier[j + 1]: state indices whose last kept link is j */
  int32_t **front = bp_xmalloc((size_t)(n + 1) * sizeof *front);
  int32_t *nfront = bp_xmalloc((size_t)(n + 1) * sizeof *nfront);
  memset(front, 0, (size_t)(n + 1) * sizeof *front);
  memset(nfront, 0, (size_t)(n + 1) * sizeof *nfront);
  front[0] = bp_xmalloc(sizeof **front);
  front[0][0] = dp_push(&st, (DpState){0, 0, -1, -1});
  nfront[0] = 1;

  double best = -1;
  int32_t best_state = -1;
  int32_t *cand = NULL;
  int32_t ncand = 0, capcand = 0;
  for (int t = 0; t <= n; t++) {
    /* t == n: the end (drop every link after the last kept one) */
    ncand = 0;
    for (int j = -1; j < t; j++) {
      for (int32_t k = 0; k < nfront[j + 1]; k++) {
        DpState s = st.s[front[j + 1][k]];
        int64_t run = ps[t] - ps[j + 1];
        if (run > 0 && s.kept + run > limit) continue;
        double cost = s.cost + (pc[t] - pc[j + 1]);
        if (t == n) {
          if (s.kept > limit) continue;
          if (best < 0 || cost < best) { best = cost; best_state = front[j + 1][k]; }
          continue;
        }
        int64_t kept = s.kept + links[t].size;
        if (kept > limit) continue;
        if (ncand == capcand) {
          capcand = capcand ? capcand * 2 : 256;
          cand = bp_xrealloc(cand, (size_t)capcand * sizeof *cand);
        }
        cand[ncand++] = dp_push(&st, (DpState){kept, cost, t, front[j + 1][k]});
      }
    }
    if (t == n) break;
    /* Pareto frontier: ascending kept bytes, strictly descending cost */
    cmp_states = &st;
    if (ncand > 0) qsort(cand, (size_t)ncand, sizeof *cand, by_kept_then_cost);
    front[t + 1] = bp_xmalloc((size_t)(ncand ? ncand : 1) * sizeof **front);
    int32_t m = 0;
    for (int32_t k = 0; k < ncand; k++) {
      if (m > 0 && st.s[cand[k]].cost >= st.s[front[t + 1][m - 1]].cost) continue;
      front[t + 1][m++] = cand[k];
    }
    if (m > DP_FRONTIER_CAP) { /* keep an even spread, always the two ends */
      int32_t w = 0;
      for (int32_t k = 0; k < DP_FRONTIER_CAP; k++)
        front[t + 1][w++] = front[t + 1][(int64_t)k * (m - 1) / (DP_FRONTIER_CAP - 1)];
      m = w;
    }
    nfront[t + 1] = m;
  }
  if (best >= 0 && keep) {
    for (int i = 0; i < n; i++) keep[i] = false;
    for (int32_t s = best_state; s >= 0 && st.s[s].pos >= 0; s = st.s[s].parent) keep[st.s[s].pos] = true;
  }
  for (int i = 0; i <= n; i++) bp_free(front[i]);
  bp_free(front);
  bp_free(nfront);
  bp_free(cand);
  bp_free(st.s);
  bp_free(ps);
  bp_free(pc);
  return best;
}

/* ------------------------------------------------------------ the rewrite */

/* Forward values that are always available in backward: never recomputed. */
static bool always_available(const Inst *in) {
  return in->op == OP_INPUT || in->op == OP_PARAM || in->op == OP_BUFFER || in->op == OP_CONST || in->op == OP_SIZE;
}

/* Never attention, attention_bwd or an extra: one kernel writes the producer's result
 * and its extras' buffers together, so a clone of one would be a second run of the
 * whole kernel writing buffers the clone does not own (and attention is the costliest
 * op to recompute). Their values are kept instead. */
static bool recomputable(const Inst *in) {
  if (in->flags & IF_BACKWARD) return false;
  if (always_available(in)) return false;
  if (in->op == OP_ATTENTION || in->op == OP_ATTENTION_BWD || in->op == OP_EXTRA) return false;
  return (ir_ops[in->op].flags & OPF_PURE) || in->op == OP_DROPOUT_MASK;
}

typedef struct {
  Func *src, *dst;
  const bool *recompute;
  int32_t *map;    /* src value -> dst value (forward copy, backward) */
  int32_t *rmap;   /* src value -> its recomputed copy in dst, or -1 */
  int32_t *list;   /* scratch: values to recompute before one instruction */
  int32_t nlist;
  bool *inlist;
} Rewrite;

/* Collect v's dropped closure (values not yet recomputed) into rw->list. */
static void collect(Rewrite *rw, int32_t v) {
  if (!rw->recompute[v] || rw->rmap[v] >= 0 || rw->inlist[v]) return;
  rw->inlist[v] = true;
  rw->list[rw->nlist++] = v;
  const Inst *in = &rw->src->insts[v];
  for (int k = 0; k < in->nargs; k++) collect(rw, in->args[k]);
}

static int cmp_i32(const void *x, const void *y) {
  int32_t a = *(const int32_t *)x, b = *(const int32_t *)y;
  return a < b ? -1 : a > b;
}

static int32_t operand(Rewrite *rw, int32_t a) { return rw->rmap[a] >= 0 ? rw->rmap[a] : rw->map[a]; }

Func *recompute_apply(Func *f, const bool *recompute, const char *name) {
  Func *g = ir_func_new(f->mod, name ? name : f->name);
  g->cse = false;
  int32_t n = f->ninsts;
  size_t sz = (size_t)(n ? n : 1);
  Rewrite rw = {f, g, recompute, bp_xmalloc(sz * sizeof(int32_t)), bp_xmalloc(sz * sizeof(int32_t)),
                bp_xmalloc(sz * sizeof(int32_t)), 0, bp_xmalloc(sz)};
  for (int32_t i = 0; i < n; i++) { rw.map[i] = rw.rmap[i] = -1; rw.inlist[i] = false; }
  for (int32_t i = 0; i < n; i++) {
    Inst in = f->insts[i];
    if (in.flags & IF_BACKWARD) {
      /* recompute what this instruction reads, in forward order */
      rw.nlist = 0;
      if (in.op != OP_SIZE)  /* reads only the shape: the original serves */
        for (int k = 0; k < in.nargs; k++) collect(&rw, in.args[k]);
      if (rw.nlist > 1) qsort(rw.list, (size_t)rw.nlist, sizeof *rw.list, cmp_i32);
      for (int32_t l = 0; l < rw.nlist; l++) {
        int32_t v = rw.list[l];
        Inst c = f->insts[v];
        for (int k = 0; k < c.nargs; k++) c.args[k] = operand(&rw, c.args[k]);
        c.flags |= IF_BACKWARD | IF_RECOMPUTED;
        c.rule = "recompute";
        c.from = rw.map[v];
        rw.rmap[v] = ir_emit(g, &c);
        rw.inlist[v] = false;
      }
      for (int k = 0; k < in.nargs; k++) in.args[k] = in.op == OP_SIZE ? rw.map[in.args[k]] : operand(&rw, in.args[k]);
    } else {
      /* forward and sinks read the forward values themselves */
      for (int k = 0; k < in.nargs; k++) in.args[k] = rw.map[in.args[k]];
    }
    if (in.from >= 0 && in.from < i) in.from = rw.map[in.from];
    rw.map[i] = ir_emit(g, &in);
  }
  bp_free(rw.map);
  bp_free(rw.rmap);
  bp_free(rw.list);
  bp_free(rw.inlist);
  return g;
}

/* ------------------------------------------------------------ the pass */

const char *const recompute_mode_names[RECOMPUTE__COUNT] = {"none", "sqrt", "auto"};

typedef struct {
  bool *keep;          /* per link */
  int64_t total;       /* measured: fixed blocks + planned workspace */
  double flops;        /* measured: recomputed instructions */
  const char *what;    /* "keep-all", "sqrt", "dp" */
} Candidate;

typedef struct {
  Func *f;
  const RecomputeOptions *opt;
  MemPlan *plan;       /* of f */
  int32_t *links;      /* link -> value */
  int32_t nlinks;
  int32_t *linkof;     /* value -> link or -1 */
  RecomputeLink *chain;
  int64_t fixed;       /* params + grads + optimizer state */
} Ctx;

/* Mark the dropped links' closures: every value a dropped link needs that is neither
 * kept nor always available. */
static void mark(const Ctx *cx, const bool *keep, bool *recompute, int32_t v) {
  const Inst *in = &cx->f->insts[v];
  if (recompute[v] || !recomputable(in)) return;
  if (cx->linkof[v] >= 0 && keep[cx->linkof[v]]) return;
  if (cx->plan->vals[v].kind == MEM_OUTPUT) return;  /* lives in the output buffer */
  recompute[v] = true;
  for (int k = 0; k < in->nargs; k++) mark(cx, keep, recompute, in->args[k]);
}

static bool *recompute_set(const Ctx *cx, const bool *keep) {
  int32_t n = cx->f->ninsts;
  bool *r = bp_xmalloc((size_t)(n ? n : 1));
  memset(r, 0, (size_t)(n ? n : 1));
  for (int32_t l = 0; l < cx->nlinks; l++)
    if (!keep[l]) mark(cx, keep, r, cx->links[l]);
  return r;
}

/* A scratch module with the same type ids, so candidates can be built and measured
 * without adding functions to the real module. */
static Module *scratch_module(Module *m) {
  Module *s = ir_module_new();
  for (int32_t t = 0; t < m->ntypes; t++) {
    const TensorType *tt = &m->types[t];
    ir_type(s, (DType)tt->dtype, tt->rank, tt->dims);
  }
  return s;
}

static Func *copy_into(Module *s, Func *f) {
  Func *g = ir_func_new(s, f->name);
  g->cse = false;
  for (int32_t i = 0; i < f->ninsts; i++) ir_emit(g, &f->insts[i]);
  return g;
}

static void measure(const Ctx *cx, Candidate *c) {
  bool *r = recompute_set(cx, c->keep);
  Module *s = scratch_module(cx->f->mod);
  Func *src = copy_into(s, cx->f);
  Func *g = recompute_apply(src, r, "candidate");
  MemPlan *p = memplan_build(g, cx->opt->batch);
  c->total = cx->opt->measure ? cx->opt->measure(cx->opt->measure_ctx, g)
                              : cx->fixed + memplan_workspace_bytes(p, cx->opt->batch);
  c->flops = 0;
  for (int32_t i = 0; i < g->ninsts; i++)
    if (g->insts[i].flags & IF_RECOMPUTED) c->flops += memplan_inst_flops(g, i, cx->opt->batch);
  memplan_free(p);
  ir_module_free(s);
  bp_free(r);
}

/* The cost of link l: the FLOPs to recompute it when every other link is kept. */
static double link_cost(const Ctx *cx, int32_t l) {
  int32_t n = cx->f->ninsts;
  bool *keep = bp_xmalloc((size_t)(cx->nlinks ? cx->nlinks : 1));
  for (int32_t k = 0; k < cx->nlinks; k++) keep[k] = k != l;
  bool *r = bp_xmalloc((size_t)(n ? n : 1));
  memset(r, 0, (size_t)(n ? n : 1));
  mark(cx, keep, r, cx->links[l]);
  double c = 0;
  for (int32_t i = 0; i < n; i++)
    if (r[i]) c += memplan_inst_flops(cx->f, i, cx->opt->batch);
  bp_free(keep);
  bp_free(r);
  return c;
}

static void sqrt_plan(int32_t n, bool *keep) {
  int32_t nk = (int32_t)lround(sqrt((double)n));
  for (int32_t i = 0; i < n; i++) keep[i] = false;
  for (int32_t j = 0; j < nk; j++) {
    int32_t pos = (int32_t)(((int64_t)(j + 1) * n) / (nk + 1)) - 1;
    if (pos >= 0 && pos < n) keep[pos] = true;
  }
}

static bool same_keep(const bool *a, const bool *b, int32_t n) {
  for (int32_t i = 0; i < n; i++)
    if (a[i] != b[i]) return false;
  return true;
}

static SrcLoc func_loc(Func *f) {
  for (int32_t i = 0; i < f->ninsts; i++)
    if (f->insts[i].loc.file >= 0) return (SrcLoc){f->insts[i].loc.file, 0, 0, 0};
  return SRCLOC_NONE;
}

Func *pass_recompute(Func *f, const RecomputeOptions *opt, RecomputeResult *res) {
  RecomputeResult dummy;
  if (!res) res = &dummy;
  memset(res, 0, sizeof *res);
  Ctx cx = {.f = f, .opt = opt};
  cx.plan = memplan_build(f, opt->batch);
  MemTotals tot = memplan_totals(cx.plan, opt->batch, opt->opt_state_per_param);
  cx.fixed = tot.params + tot.grads + tot.opt_state;
  int32_t n = f->ninsts;
  cx.links = bp_xmalloc((size_t)(n ? n : 1) * sizeof *cx.links);
  cx.linkof = bp_xmalloc((size_t)(n ? n : 1) * sizeof *cx.linkof);
  for (int32_t i = 0; i < n; i++) {
    cx.linkof[i] = -1;
    if (cx.plan->vals[i].kind == MEM_KEPT && recomputable(&f->insts[i])) {
      cx.linkof[i] = cx.nlinks;
      cx.links[cx.nlinks++] = i;
    }
  }
  int32_t L = cx.nlinks;
  cx.chain = bp_xmalloc((size_t)(L ? L : 1) * sizeof *cx.chain);
  for (int32_t l = 0; l < L; l++)
    cx.chain[l] = (RecomputeLink){mem_at(cx.plan->vals[cx.links[l]].slot, opt->batch), link_cost(&cx, l)};
  res->ncandidates = L;

  /* candidate plans */
  int32_t maxc = 40, nc = 0;
  Candidate *cands = bp_xmalloc((size_t)maxc * sizeof *cands);
  size_t kb = (size_t)(L ? L : 1);
  cands[nc] = (Candidate){bp_xmalloc(kb), 0, 0, "keep-all"};
  for (int32_t l = 0; l < L; l++) cands[nc].keep[l] = true;
  nc++;
  bool want_search = opt->mode == RECOMPUTE_AUTO || opt->budget > 0;
  if (opt->mode == RECOMPUTE_SQRT || want_search) {
    cands[nc] = (Candidate){bp_xmalloc(kb), 0, 0, "sqrt"};
    sqrt_plan(L, cands[nc].keep);
    nc++;
  }
  if (want_search && L > 0) {
    int64_t hi = recompute_chain_memory(cx.chain, L, cands[0].keep), lo = 0;
    /* smallest limit the chain admits: binary search on DP feasibility */
    int64_t a = 0, b = hi;
    while (a < b) {
      int64_t mid = a + (b - a) / 2;
      if (recompute_chain_optimal(cx.chain, L, mid, NULL) >= 0) b = mid;
      else a = mid + 1;
    }
    lo = a;
    for (int k = 0; k <= 32 && nc < maxc; k++) {
      int64_t limit = lo + (int64_t)((double)(hi - lo) * k / 32.0);
      bool *keep = bp_xmalloc(kb);
      if (recompute_chain_optimal(cx.chain, L, limit, keep) < 0) { bp_free(keep); continue; }
      bool dup = false;
      for (int32_t c = 0; c < nc && !dup; c++) dup = same_keep(cands[c].keep, keep, L);
      if (dup) { bp_free(keep); continue; }
      cands[nc++] = (Candidate){keep, 0, 0, "dp"};
    }
  }
  for (int32_t c = 0; c < nc; c++) measure(&cx, &cands[c]);

  /* choose */
  int32_t chosen = -1, smallest = 0;
  for (int32_t c = 1; c < nc; c++)
    if (cands[c].total < cands[smallest].total ||
        (cands[c].total == cands[smallest].total && cands[c].flops < cands[smallest].flops))
      smallest = c;
  res->min_feasible = cands[smallest].total;
  if (opt->mode == RECOMPUTE_NONE) chosen = 0;
  else if (opt->mode == RECOMPUTE_SQRT) chosen = 1;
  else if (opt->budget <= 0) chosen = smallest;
  else {
    for (int32_t c = 0; c < nc; c++) {
      if (cands[c].total > opt->budget) continue;
      if (chosen < 0 || cands[c].flops < cands[chosen].flops ||
          (cands[c].flops == cands[chosen].flops && cands[c].total < cands[chosen].total))
        chosen = c;
    }
  }
  Func *out = NULL;
  if (chosen >= 0 && opt->budget > 0 && cands[chosen].total > opt->budget) {
    char b1[32], b2[32];
    diag_error(func_loc(f),
               "memory budget %s (%lld bytes) is too small for --recompute=%s, which needs %s (%lld bytes); "
               "the smallest feasible budget is %s (%lld bytes, with --recompute=auto)",
               memplan_format_size(opt->budget, b1, sizeof b1), (long long)opt->budget,
               recompute_mode_names[opt->mode], memplan_format_size(cands[chosen].total, b2, sizeof b2),
               (long long)cands[chosen].total, memplan_format_size(res->min_feasible, b1, sizeof b1),
               (long long)res->min_feasible);
    chosen = -1;
  } else if (chosen < 0) {
    char b1[32], b2[32], b3[32];
    diag_error(func_loc(f),
               "memory budget %s (%lld bytes) is infeasible: the smallest feasible budget is %s (%lld bytes); "
               "parameters, gradients and optimizer state alone take %s",
               memplan_format_size(opt->budget, b1, sizeof b1), (long long)opt->budget,
               memplan_format_size(res->min_feasible, b2, sizeof b2), (long long)res->min_feasible,
               memplan_format_size(cx.fixed, b3, sizeof b3));
  }
  if (chosen >= 0) {
    res->total = cands[chosen].total;
    res->recompute_flops = cands[chosen].flops;
    for (int32_t l = 0; l < L; l++) res->nkept += cands[chosen].keep[l];
    bool *r = recompute_set(&cx, cands[chosen].keep);
    bool any = false;
    for (int32_t i = 0; i < n && !any; i++) any = r[i];
    out = any ? recompute_apply(f, r, f->name) : f;
    bp_free(r);
  }
  for (int32_t c = 0; c < nc; c++) bp_free(cands[c].keep);
  bp_free(cands);
  bp_free(cx.chain);
  bp_free(cx.links);
  bp_free(cx.linkof);
  memplan_free(cx.plan);
  return out;
}
