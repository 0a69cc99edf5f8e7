/* tests/memplan/test_memplan.c — memory planning and recomputation on
 * hand-built IR: lifetimes, kinds, offsets (no two live values share a byte, checked
 * for every pair), the peaks against brute force, the totals, the chain DP against
 * exhaustive search, the infeasible-budget message, and bitwise-equal gradients with
 * checkpointing through the reference interpreter in f32 and f64. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "passes/memplan.h"
#include "tests/memplan/chain.h"

/* ------------------------------------------------------------ checks */

/* Every pair of workspace values whose lifetimes intersect is disjoint in memory, at
 * several batches; every offset is 64-byte aligned; every slot holds its value. */
static void check_plan(const MemPlan *p) {
  static const int64_t batches[] = {1, 2, 3, 7, 64, 256, 1000};
  for (size_t bi = 0; bi < sizeof batches / sizeof batches[0]; bi++) {
    int64_t B = batches[bi];
    int64_t ws = memplan_workspace_bytes(p, B);
    for (int32_t i = 0; i < p->nvals; i++) {
      const MemValue *a = &p->vals[i];
      if (!a->in_workspace) continue;
      int64_t ao = mem_at(a->offset, B), ae = ao + mem_at(a->slot, B);
      assert_true(ao % 64 == 0);
      assert_true(mem_at(a->slot, B) >= mem_at(a->size, B));
      assert_true(ao >= 0 && ae <= ws);
      for (int32_t j = i + 1; j < p->nvals; j++) {
        const MemValue *b = &p->vals[j];
        if (!b->in_workspace) continue;
        bool live_together = a->def <= b->last && b->def <= a->last;
        if (!live_together) continue;
        int64_t bo = mem_at(b->offset, B), be = bo + mem_at(b->slot, B);
        if (mem_at(a->slot, B) == 0 || mem_at(b->slot, B) == 0) continue;
        if (!(ae <= bo || be <= ao))
          fail_msg("%%%d [%d,%d] @%lld+%lld and %%%d [%d,%d] @%lld+%lld overlap at B=%lld", (int)i, a->def,
                   a->last, (long long)ao, (long long)(ae - ao), (int)j, b->def, b->last, (long long)bo,
                   (long long)(be - bo), (long long)B);
      }
    }
    /* the peaks, recomputed by brute force */
    int64_t live_peak = 0;
    for (int32_t t = 0; t < p->nvals; t++) {
      int64_t live = 0;
      for (int32_t i = 0; i < p->nvals; i++)
        if (p->vals[i].in_workspace && p->vals[i].def <= t && t <= p->vals[i].last) live += mem_at(p->vals[i].slot, B);
      if (live > live_peak) live_peak = live;
    }
    assert_int_equal(memplan_live_peak(p, B), live_peak);
    assert_true(ws >= live_peak);
  }
  MemSize top = {0, 0};
  for (int32_t i = 0; i < p->nvals; i++) {
    const MemValue *a = &p->vals[i];
    if (!a->in_workspace) continue;
    MemSize end = {a->offset.fixed + a->slot.fixed, a->offset.per_batch + a->slot.per_batch};
    if (end.fixed > top.fixed) top.fixed = end.fixed;
    if (end.per_batch > top.per_batch) top.per_batch = end.per_batch;
  }
  assert_int_equal(p->workspace.fixed, top.fixed);
  assert_int_equal(p->workspace.per_batch, top.per_batch);
}

/* Lifetimes recomputed by brute force: def is the index, last the largest user (a sink
 * extends to the end). */
static void check_lifetimes(Func *f, const MemPlan *p) {
  for (int32_t v = 0; v < f->ninsts; v++) {
    if (ir_ops[f->insts[v].op].flags & OPF_SINK) continue;
    int32_t last = v;
    for (int32_t u = v + 1; u < f->ninsts; u++)
      for (int k = 0; k < f->insts[u].nargs && f->insts[u].op != OP_SIZE; k++)  /* size reads the shape only */
        if (f->insts[u].args[k] == v) last = (ir_ops[f->insts[u].op].flags & OPF_SINK) ? f->ninsts - 1 : u > last ? u : last;
    assert_int_equal(p->vals[v].def, v);
    assert_int_equal(p->vals[v].last, last);
  }
}

/* ------------------------------------------------------------ memplan */

static void test_forward_chain_two_slots(void **state) {
  (void)state;
  /* a forward-only chain x -> tanh -> tanh -> ... : two slots are enough */
  Module *m = ir_module_new();
  Func *f = ir_func_new(m, "fwd");
  int64_t d[2] = {DIM_BATCH, 100};
  TypeId t = ir_type(m, DT_F32, 2, d);
  int32_t v = ir_input(f, "x", 0, t, chain_loc(1));
  for (int i = 0; i < 10; i++) v = ir_unary(f, i % 2 ? OP_EXP : OP_TANH, v, chain_loc(2 + i));
  int32_t s = ir_reduce(f, OP_SUM, v, IR_AXIS_ALL, false, chain_loc(20));
  ir_loss(f, s, chain_loc(20));
  MemPlan *p = memplan_build(f, 32);
  check_lifetimes(f, p);
  check_plan(p);
  assert_int_equal(p->vals[0].kind, MEM_INPUT);
  assert_int_equal(p->vals[1].kind, MEM_TEMP);
  /* 400 bytes per row round to 448; two slots alternate. The 4-byte loss takes a
   * 64-byte slot above the per-row ones: the live peak (when it is defined, only one
   * row-sized value is live) is below what greedy-by-size reaches here. */
  assert_int_equal(p->vals[1].slot.per_batch, 448);
  assert_int_equal(p->workspace.per_batch, 2 * 448);
  assert_int_equal(p->workspace.fixed, 64);
  assert_int_equal(memplan_live_peak(p, 32), 2 * 448 * 32);
  memplan_free(p);
  ir_module_free(m);
}

static void test_chain_kinds_and_lifetimes(void **state) {
  (void)state;
  Module *m = ir_module_new();
  Func *f = build_chain(m, 4, 24, DT_F32);
  MemPlan *p = memplan_build(f, 8);
  check_lifetimes(f, p);
  check_plan(p);
  int counts[MEM__COUNT] = {0};
  for (int32_t i = 0; i < f->ninsts; i++) counts[p->vals[i].kind]++;
  assert_int_equal(counts[MEM_INPUT], 1);
  assert_int_equal(counts[MEM_PARAM], 8);
  assert_int_equal(counts[MEM_GRADIENT], 8);
  assert_int_equal(counts[MEM_CONST], 2);   /* const 1 and size */
  assert_int_equal(counts[MEM_KEPT], 4);    /* h1..h4: tanh_grad and matmul_tn read them */
  assert_int_equal(counts[MEM_RECOMPUTED], 0);
  for (int32_t i = 0; i < f->ninsts; i++) {
    if (p->vals[i].kind == MEM_KEPT) assert_int_equal(f->insts[i].op, OP_TANH);
    if (f->insts[i].op == OP_MATMUL) assert_int_equal(p->vals[i].kind, MEM_TEMP);
  }
  /* the gradients and params are not in the workspace */
  for (int32_t i = 0; i < f->ninsts; i++)
    if (p->vals[i].kind == MEM_GRADIENT || p->vals[i].kind == MEM_PARAM) assert_false(p->vals[i].in_workspace);
  memplan_free(p);
  ir_module_free(m);
}

static void test_totals(void **state) {
  (void)state;
  Module *m = ir_module_new();
  Func *f = build_chain(m, 3, 16, DT_F32);
  MemPlan *p = memplan_build(f, 10);
  MemTotals t = memplan_totals(p, 10, 2);
  int64_t params = 3 * (16 * 16 + 16) * 4;
  assert_int_equal(t.params, params);
  assert_int_equal(t.grads, params);
  assert_int_equal(t.opt_state, 2 * params);
  assert_int_equal(t.kept, 3 * 10 * 16 * 4);  /* h1..h3 at B = 10 */
  assert_int_equal(t.workspace, memplan_workspace_bytes(p, 10));
  assert_int_equal(t.total, 4 * params + t.workspace);
  memplan_free(p);
  ir_module_free(m);
}

/* The --mem-report table of the hand-built chain: a row per tensor with its kind; and
 * the totals (bytes at B = 10: params 3 * (16*16 + 16) * 4 = 3264). */
static void test_report_text(void **state) {
  (void)state;
  Module *m = ir_module_new();
  Func *f = build_chain(m, 3, 16, DT_F32);
  MemPlan *p = memplan_build(f, 10);
  FILE *fp = tmpfile();
  memplan_print_table(fp, p, 10, 0);
  fflush(fp);
  long n = ftell(fp);
  rewind(fp);
  char *s = bp_xmalloc((size_t)n + 1);
  s[fread(s, 1, (size_t)n, fp)] = 0;
  fclose(fp);
  assert_non_null(strstr(s, "memory plan of @chain at batch 10"));
  MemTotals t = memplan_totals(p, 10, 1);
  assert_int_equal(t.params, 3264);
  assert_int_equal(t.grads, 3264);
  assert_int_equal(t.opt_state, 3264);
  assert_int_equal(t.kept, 1920);
  assert_int_equal(t.total, 3 * 3264 + memplan_workspace_bytes(p, 10));
  /* rows: x is an input, the tanh values are kept, the weight gradients are gradients */
  assert_non_null(strstr(s, "%0     x "));
  assert_non_null(strstr(s, "f32[B,16]               640"));
  assert_non_null(strstr(s, "grad(l1.W)"));
  assert_non_null(strstr(s, "kept for backward\n"));
  int rows = 0;
  for (char *q = s; (q = strchr(q, '\n')); q++)
    if (q[1] == '%') rows++;
  int values = 0;
  for (int32_t i = 0; i < f->ninsts; i++) values += !(ir_ops[f->insts[i].op].flags & OPF_SINK);
  assert_int_equal(rows, values);
  bp_free(s);
  memplan_free(p);
  ir_module_free(m);
}

/* A random DAG of elementwise ops, products and reductions with the later half marked
 * backward, an output and a loss. */
static Func *random_dag(Module *m) {
  Func *f = ir_func_new(m, "dag");
  f->cse = false;
  int64_t W = 8 + rand() % 40;
  int64_t d1[2] = {DIM_BATCH, W}, d2[2] = {W, W}, d4[2] = {W, 3};
  TypeId tb = ir_type(m, DT_F32, 2, d1), tw = ir_type(m, DT_F32, 2, d2), t3 = ir_type(m, DT_F32, 2, d4);
  int32_t pool[200];
  int np = 0;
  pool[np++] = ir_input(f, "x", 0, tb, chain_loc(1));
  int32_t Wp = ir_param(f, "W", tw, INIT_ZEROS, 0, 0, chain_loc(1));
  int32_t W3 = ir_param(f, "W3", t3, INIT_ZEROS, 0, 0, chain_loc(1));
  int n = 10 + rand() % 60;
  for (int k = 0; k < n; k++) {
    int32_t a = pool[rand() % np], b = pool[rand() % np], v;
    bool narrow = false;
    switch (rand() % 6) {
    case 0: v = ir_binary(f, OP_ADD, a, b, chain_loc(2)); break;
    case 1: v = ir_binary(f, OP_MUL, a, b, chain_loc(2)); break;
    case 2: v = ir_unary(f, OP_TANH, a, chain_loc(2)); break;
    case 3: v = ir_binary(f, OP_MATMUL, a, Wp, chain_loc(2)); break;
    case 4: /* a narrow or per-row value that dies at once */
      v = rand() % 2 ? ir_reduce(f, OP_SUM, a, 1, false, chain_loc(2)) : ir_binary(f, OP_MATMUL, a, W3, chain_loc(2));
      narrow = true;
      break;
    default: v = ir_unary(f, OP_EXP, a, chain_loc(2)); break;
    }
    if (k > n / 2) f->insts[v].flags |= IF_BACKWARD;
    if (!narrow) pool[np++] = v;
  }
  int32_t s = ir_reduce(f, OP_MEAN, pool[np - 1], IR_AXIS_ALL, false, chain_loc(3));
  ir_loss(f, s, chain_loc(3));
  ir_output(f, "y", pool[np / 2], chain_loc(3));
  return f;
}

static void test_random_dags(void **state) {
  (void)state;
  srand(12345);
  for (int trial = 0; trial < 60; trial++) {
    Module *m = ir_module_new();
    Func *f = random_dag(m);
    MemPlan *p = memplan_build(f, 1 + rand() % 300);
    assert_true(p->linear);
    check_lifetimes(f, p);
    check_plan(p);
    memplan_free(p);
    ir_module_free(m);
  }
}

/* memplan_build_ex: every non-sink value in the workspace (outputs too), instructions
 * grouped into kernels of 1..4 consecutive steps. No two values whose step intervals
 * intersect share a byte; the live peak over steps equals brute force. */
static void test_build_ex_kernels(void **state) {
  (void)state;
  srand(4242);
  for (int trial = 0; trial < 60; trial++) {
    Module *m = ir_module_new();
    Func *f = random_dag(m);
    int32_t n = f->ninsts;
    bool *ws = bp_xmalloc((size_t)n);
    int32_t *step = bp_xmalloc((size_t)n * sizeof *step);
    int32_t cur = 0, left = 1 + rand() % 4;
    for (int32_t i = 0; i < n; i++) {
      ws[i] = f->insts[i].op != OP_INPUT && f->insts[i].op != OP_PARAM;
      if (left-- == 0) { cur++; left = rand() % 4; }
      step[i] = cur;
    }
    int64_t B = 1 + rand() % 100;
    MemPlan *p = memplan_build_ex(f, B, ws, step);
    int in_ws = 0;
    for (int32_t i = 0; i < n; i++) {
      const MemValue *a = &p->vals[i];
      if (!a->in_workspace) continue;
      in_ws++;
      assert_true(ws[i]);
      for (int32_t j = i + 1; j < n; j++) {
        const MemValue *b = &p->vals[j];
        if (!b->in_workspace) continue;
        if (step[a->def] > step[b->last] || step[b->def] > step[a->last]) continue;
        int64_t ao = mem_at(a->offset, B), bo = mem_at(b->offset, B);
        assert_true(ao + mem_at(a->slot, B) <= bo || bo + mem_at(b->slot, B) <= ao);
      }
    }
    int values = 0;
    for (int32_t i = 0; i < n; i++) values += ws[i] && !(ir_ops[f->insts[i].op].flags & OPF_SINK);
    assert_int_equal(in_ws, values);
    int64_t peak = 0;
    for (int32_t t = 0; t <= step[n - 1]; t++) {
      int64_t live = 0;
      for (int32_t i = 0; i < n; i++)
        if (p->vals[i].in_workspace && step[p->vals[i].def] <= t && t <= step[p->vals[i].last])
          live += mem_at(p->vals[i].slot, B);
      if (live > peak) peak = live;
    }
    assert_int_equal(memplan_live_peak(p, B), peak);
    assert_true(memplan_workspace_bytes(p, B) >= peak);
    memplan_free(p);
    bp_free(ws);
    bp_free(step);
    ir_module_free(m);
  }
}

static void test_nonlinear_batch(void **state) {
  (void)state;
  /* x x^T is f32[B,B]: not linear in B, so the plan holds at its batch only */
  Module *m = ir_module_new();
  Func *f = ir_func_new(m, "gram");
  int64_t d[2] = {DIM_BATCH, 4};
  int32_t x = ir_input(f, "x", 0, ir_type(m, DT_F32, 2, d), chain_loc(1));
  int32_t g = ir_binary(f, OP_MATMUL_NT, x, x, chain_loc(2));
  int32_t s = ir_reduce(f, OP_SUM, g, IR_AXIS_ALL, false, chain_loc(3));
  ir_loss(f, s, chain_loc(3));
  MemPlan *p = memplan_build(f, 10);
  assert_false(p->linear);
  assert_int_equal(p->vals[g].size.fixed, 400);
  assert_int_equal(p->vals[g].size.per_batch, 0);
  memplan_free(p);
  ir_module_free(m);
}

static void test_sizes(void **state) {
  (void)state;
  assert_int_equal(memplan_parse_size("1KiB"), 1024);
  assert_int_equal(memplan_parse_size("64MiB"), 64ll << 20);
  assert_int_equal(memplan_parse_size("2GiB"), 2ll << 30);
  assert_int_equal(memplan_parse_size("3KB"), 3000);
  assert_int_equal(memplan_parse_size("1.5MB"), 1500000);
  assert_int_equal(memplan_parse_size("2GB"), 2000000000ll);
  assert_int_equal(memplan_parse_size("100B"), 100);
  assert_int_equal(memplan_parse_size("4096"), 4096);
  assert_int_equal(memplan_parse_size("12XB"), -1);
  assert_int_equal(memplan_parse_size("-1KiB"), -1);
  assert_int_equal(memplan_parse_size(""), -1);
  assert_int_equal(memplan_parse_size("0.3B"), -1);
  char buf[32];
  assert_string_equal(memplan_format_size(1536, buf, sizeof buf), "1.50 KiB");
  assert_string_equal(memplan_format_size(100, buf, sizeof buf), "100 B");
  /* a label is 4 bytes per row */
  Module *m = ir_module_new();
  int64_t d[2] = {DIM_BATCH, 10};
  MemSize s = memplan_type_size(ir_type_get(m, ir_type(m, DT_LABEL, 2, d)), 5, NULL);
  assert_int_equal(s.fixed, 0);
  assert_int_equal(s.per_batch, 4);
  s = memplan_type_size(ir_type_get(m, ir_type(m, DT_F64, 2, d)), 5, NULL);
  assert_int_equal(s.per_batch, 80);
  ir_module_free(m);
}

/* ------------------------------------------------------------ the chain DP */

static void test_dp_matches_exhaustive(void **state) {
  (void)state;
  srand(777);
  for (int trial = 0; trial < 400; trial++) {
    int n = 1 + rand() % 12;
    RecomputeLink links[12];
    int64_t total = 0;
    for (int i = 0; i < n; i++) {
      links[i].size = trial % 3 == 0 ? 10 : 1 + rand() % 20;
      links[i].cost = (double)(1 + rand() % 50);
      total += links[i].size;
    }
    int64_t limit = rand() % (total + 5);
    double best = -1;
    bool keep[12];
    for (uint32_t mask = 0; mask < (1u << n); mask++) {
      for (int i = 0; i < n; i++) keep[i] = (mask >> i) & 1;
      if (recompute_chain_memory(links, n, keep) > limit) continue;
      double c = recompute_chain_cost(links, n, keep);
      if (best < 0 || c < best) best = c;
    }
    bool got[12];
    double dp = recompute_chain_optimal(links, n, limit, got);
    if (best < 0) {
      assert_true(dp < 0);
      continue;
    }
    assert_true(dp == best);
    assert_true(recompute_chain_memory(links, n, got) <= limit);
    assert_true(recompute_chain_cost(links, n, got) == dp);
  }
}

static void test_chain_memory_model(void **state) {
  (void)state;
  RecomputeLink l[5] = {{10, 1}, {10, 1}, {10, 1}, {10, 1}, {10, 1}};
  bool all[5] = {1, 1, 1, 1, 1}, none[5] = {0}, mid[5] = {0, 1, 0, 0, 1};
  assert_int_equal(recompute_chain_memory(l, 5, all), 50);
  assert_int_equal(recompute_chain_memory(l, 5, none), 50);
  /* runs: [0] with 0 kept below -> 10; [2,3] with 10 kept below -> 30; kept total 20 */
  assert_int_equal(recompute_chain_memory(l, 5, mid), 30);
  assert_true(recompute_chain_cost(l, 5, mid) == 3);
  assert_true(recompute_chain_optimal(l, 5, 9, NULL) < 0);
}

/* ------------------------------------------------------------ checkpointing */

static int count_recomputed(Func *f) {
  int n = 0;
  for (int32_t i = 0; i < f->ninsts; i++) n += (f->insts[i].flags & IF_RECOMPUTED) != 0;
  return n;
}

static void test_sqrt_keeps_less(void **state) {
  (void)state;
  Module *m = ir_module_new();
  Func *f = build_chain(m, 16, 64, DT_F32);
  RecomputeOptions o = {RECOMPUTE_SQRT, 0, 256, 1, NULL, NULL};
  RecomputeResult r;
  Func *g = pass_recompute(f, &o, &r);
  assert_non_null(g);
  assert_true(g != f);
  assert_true(ir_verify(g, "checkpoint"));
  assert_int_equal(r.ncandidates, 16);
  assert_int_equal(r.nkept, 4);
  MemPlan *p0 = memplan_build(f, 256), *p1 = memplan_build(g, 256);
  check_plan(p1);
  MemTotals t0 = memplan_totals(p0, 256, 1), t1 = memplan_totals(p1, 256, 1);
  assert_true(t0.kept >= 3 * t1.kept);
  assert_true(t1.recomputed > 0);
  assert_true(t1.workspace < t0.workspace);
  assert_int_equal(t1.total, r.total);
  /* recomputed instructions: flags, rule, loc and from */
  for (int32_t i = 0; i < g->ninsts; i++) {
    const Inst *in = &g->insts[i];
    if (!(in->flags & IF_RECOMPUTED)) continue;
    assert_true(in->flags & IF_BACKWARD);
    assert_string_equal(in->rule, "recompute");
    assert_true(in->from >= 0 && in->from < i);
    assert_int_equal(g->insts[in->from].op, in->op);
    assert_int_equal(g->insts[in->from].loc.line, in->loc.line);
    assert_false(g->insts[in->from].flags & IF_BACKWARD);
    assert_int_equal(p1->vals[i].kind, MEM_RECOMPUTED);
  }
  /* 12 dropped activations, each recomputed with its matmul and add */
  assert_int_equal(count_recomputed(g), 12 * 3);
  memplan_free(p0);
  memplan_free(p1);
  ir_module_free(m);
}

static void test_none_is_identity(void **state) {
  (void)state;
  Module *m = ir_module_new();
  Func *f = build_chain(m, 5, 8, DT_F32);
  RecomputeOptions o = {RECOMPUTE_NONE, 0, 4, 0, NULL, NULL};
  RecomputeResult r;
  assert_ptr_equal(pass_recompute(f, &o, &r), f);
  assert_int_equal(r.nkept, 5);
  assert_true(r.recompute_flops == 0);
  ir_module_free(m);
}

static char *captured_diag(FILE *fp) {
  fflush(fp);
  long n = ftell(fp);
  rewind(fp);
  char *s = bp_xmalloc((size_t)n + 1);
  size_t k = fread(s, 1, (size_t)n, fp);
  s[k] = 0;
  return s;
}

static void test_budget(void **state) {
  (void)state;
  Module *m = ir_module_new();
  Func *f = build_chain(m, 9, 32, DT_F32);
  FILE *fp = tmpfile();
  diag_set_output(fp);
  int errs = diag_error_count();
  RecomputeOptions o = {RECOMPUTE_AUTO, 1024, 64, 1, NULL, NULL};
  RecomputeResult r;
  assert_null(pass_recompute(f, &o, &r));
  assert_int_equal(diag_error_count(), errs + 1);
  char *msg = captured_diag(fp);
  char want[256];
  snprintf(want, sizeof want, "bpcc: error: memory budget 1.00 KiB (1024 bytes) is infeasible: the smallest feasible budget is ");
  assert_non_null(strstr(msg, want));
  snprintf(want, sizeof want, "(%lld bytes)", (long long)r.min_feasible);
  assert_non_null(strstr(msg, want));
  bp_free(msg);
  diag_set_output(NULL);
  fclose(fp);
  /* the smallest feasible budget is feasible */
  int64_t minb = r.min_feasible;
  o.budget = minb;
  Func *g = pass_recompute(f, &o, &r);
  assert_non_null(g);
  assert_true(r.total <= minb);
  /* one byte less is not */
  fp = tmpfile();
  diag_set_output(fp);
  o.budget = minb - 1;
  assert_null(pass_recompute(f, &o, &r));
  diag_set_output(NULL);
  fclose(fp);
  /* a generous budget recomputes nothing; a middle one recomputes some, within budget */
  RecomputeOptions none = {RECOMPUTE_NONE, 0, 64, 1, NULL, NULL};
  RecomputeResult rn;
  pass_recompute(f, &none, &rn);
  o.budget = rn.total;
  assert_ptr_equal(pass_recompute(f, &o, &r), f);
  assert_true(r.recompute_flops == 0);
  o.budget = (rn.total + minb) / 2;
  g = pass_recompute(f, &o, &r);
  assert_non_null(g);
  assert_true(r.total <= o.budget);
  assert_true(r.recompute_flops > 0);
  MemPlan *p = memplan_build(g, 64);
  assert_int_equal(memplan_totals(p, 64, 1).total, r.total);
  memplan_free(p);
  ir_module_free(m);
}

/* Gradients with checkpointing are bitwise equal to those without. */
static void run_grads(Func *f, InterpMode mode, int64_t B, int64_t W, int L, double **out, int *nout) {
  Tensor x;
  int64_t dx[2] = {B, W};
  TensorType tx = {DT_F32, 2, {B, W, 0, 0}};
  (void)dx;
  x = ir_tensor_new(&tx);
  srand(99);
  for (int64_t i = 0; i < x.numel; i++) x.data[i] = (double)rand() / RAND_MAX * 2 - 1;
  Tensor params[64];
  int np = 0;
  for (int32_t i = 0; i < f->ninsts; i++) {
    if (f->insts[i].op != OP_PARAM) continue;
    params[np] = ir_tensor_new(ir_vtype(f, i));
    for (int64_t k = 0; k < params[np].numel; k++) params[np].data[k] = ((double)rand() / RAND_MAX * 2 - 1) / sqrt((double)W);
    np++;
  }
  assert_int_equal(np, 2 * L);
  Interp *it = ir_interp_run(f, mode, B, &x, 1, params, np, 1, 0);
  assert_non_null(it);
  int n = 0;
  for (int32_t i = 0; i < f->ninsts; i++) {
    if (f->insts[i].op != OP_GRAD && f->insts[i].op != OP_LOSS) continue;
    const Tensor *t = ir_interp_value(it, f->insts[i].args[f->insts[i].op == OP_GRAD ? 1 : 0]);
    assert_non_null(t);
    out[n] = bp_xmalloc((size_t)t->numel * sizeof(double) + 8);
    memcpy(out[n], t->data, (size_t)t->numel * sizeof(double));
    n++;
  }
  *nout = n;
  ir_interp_free(it);
  ir_tensor_free(&x);
  for (int k = 0; k < np; k++) ir_tensor_free(&params[k]);
}

static void test_bitwise_equal_gradients(void **state) {
  (void)state;
  const int L = 8;
  const int64_t W = 12, B = 5;
  Module *m = ir_module_new();
  Func *f = build_chain(m, L, W, DT_F32);
  RecomputeMode modes[2] = {RECOMPUTE_SQRT, RECOMPUTE_AUTO};
  for (int mi = 0; mi < 2; mi++) {
    RecomputeOptions o = {modes[mi], 0, B, 1, NULL, NULL};
    RecomputeResult r;
    Func *g = pass_recompute(f, &o, &r);
    assert_non_null(g);
    assert_true(g != f);
    assert_true(count_recomputed(g) > 0);
    for (int md = 0; md < 2; md++) {
      InterpMode mode = md ? INTERP_F64 : INTERP_F32;
      double *a[64], *b[64];
      int na, nb;
      run_grads(f, mode, B, W, L, a, &na);
      run_grads(g, mode, B, W, L, b, &nb);
      assert_int_equal(na, nb);
      assert_int_equal(na, 1 + 2 * L);
      for (int k = 0; k < na; k++) {
        int64_t numel = k == 0 ? 1 : (k % 2 ? W * W : W);
        assert_memory_equal(a[k], b[k], (size_t)numel * sizeof(double));
        bp_free(a[k]);
        bp_free(b[k]);
      }
    }
  }
  ir_module_free(m);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_forward_chain_two_slots),
      cmocka_unit_test(test_chain_kinds_and_lifetimes),
      cmocka_unit_test(test_totals),
      cmocka_unit_test(test_report_text),
      cmocka_unit_test(test_random_dags),
      cmocka_unit_test(test_build_ex_kernels),
      cmocka_unit_test(test_nonlinear_batch),
      cmocka_unit_test(test_sizes),
      cmocka_unit_test(test_dp_matches_exhaustive),
      cmocka_unit_test(test_chain_memory_model),
      cmocka_unit_test(test_sqrt_keeps_less),
      cmocka_unit_test(test_none_is_identity),
      cmocka_unit_test(test_budget),
      cmocka_unit_test(test_bitwise_equal_gradients),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
