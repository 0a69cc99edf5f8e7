/* tests/codegen/test_cg_attention.c — the fused attention kernels (codegen/attention.c)
 * and what the plans give them (passes/kernel_plan.c, passes/memplan.c).
 *
 * 1. attention and attention_bwd through the JIT against a plain C reference in double
 *    precision (the naive formulas of ir/ops.def, the [T,S] matrices written out), on
 *    random q, k, v, do uniform in [-2, 2): shapes with T and S below, at and past one
 *    block (17, 64, 70, 130), dh and dv that are not multiples of the vector width (8,
 *    13, 17, 24), T != S without the mask, rank 3 with the batch dim and rank 4, causal
 *    and not. f32: |jit - ref| <= 1e-5 max(1, max |ref|) per tensor (harness.h's rule);
 *    the f64 model (cgt_func_to_f64): 1e-12.
 * 2. The same results bit for bit on 1, 2 and 3 threads (the work is split by blocks,
 *    each result computed by one task in a fixed order).
 * 3. Other vector widths: x86-64 (SSE, 4 lanes), x86-64-v3 (AVX2, 8 lanes); sharp rows
 *    (scale 8 / sqrt(dh): scores tens apart, p underflowing, the running max rescaled).
 * 4. The reference interpreter (ir/interp.c) through the harness: the forward entry, and
 *    a training step of sum(attention(q, k, v) * r) whose gradients are attention_bwd's.
 * 5. The plans: the producer and its extras are one kernel, also without fusion; an
 *    extra never shares bytes with what its kernel reads or writes (the memory plan on
 *    instructions and on kernels); the tinygpt attention at T = 1024 (B 32, 4 heads,
 *    dh 32) keeps no [T,T] buffer: the workspace and the per-chunk scratch are far
 *    below one [B,H,T,T] tensor. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "passes/memplan.h"
#include "passes/passes.h"
#include "tests/codegen/harness.h"
#include "tests/compile.h"

#define TOL 1e-5
#define TOL64 1e-12

static const SrcLoc L = {-1, 1, 1, 0};

typedef struct {
  int nlead;
  int64_t lead[2];     /* DIM_BATCH allowed */
  int64_t T, S, dh, dv;
  bool causal;
} Shape;

static TypeId tt(Module *m, const Shape *s, int64_t a, int64_t b, DType dt) {
  int64_t d[4];
  int r = 0;
  for (int i = 0; i < s->nlead; i++) d[r++] = s->lead[i];
  d[r++] = a;
  if (b > 0) d[r++] = b;
  return ir_type(m, dt, r, d);
}

/* inputs q, k, v, do; outputs o, lse (attention) and dq, dk, dv (attention_bwd of o, lse). */
static Func *build(Module *m, const Shape *s, double scale) {
  Func *f = ir_func_new(m, "attn");
  int32_t q = ir_input(f, "q", 0, tt(m, s, s->T, s->dh, DT_F32), L);
  int32_t k = ir_input(f, "k", 1, tt(m, s, s->S, s->dh, DT_F32), L);
  int32_t v = ir_input(f, "v", 2, tt(m, s, s->S, s->dv, DT_F32), L);
  int32_t dO = ir_input(f, "do", 3, tt(m, s, s->T, s->dv, DT_F32), L);
  int32_t lse, dk, dv;
  int32_t o = ir_attention(f, q, k, v, s->causal, scale, &lse, L);
  int32_t args[6] = {q, k, v, o, lse, dO};
  int32_t dq = ir_attention_bwd(f, args, s->causal, scale, &dk, &dv, L);
  ir_output(f, "o", o, L);
  ir_output(f, "lse", lse, L);
  ir_output(f, "dq", dq, L);
  ir_output(f, "dk", dk, L);
  ir_output(f, "dv", dv, L);
  return f;
}

/* The naive reference for one slice, in double: s = scale q k^T + mask, p = softmax(s),
 * o = p v, lse = log sum exp s; D = rowsum(do o), dp = do v^T, ds = p (dp - D),
 * dq = scale ds k, dk = scale ds^T q, dv = p^T do. */
static void reference(const Shape *s, double scale, const double *q, const double *k, const double *v, const double *dO,
                      double *o, double *lse, double *dq, double *dk, double *dv) {
  int64_t T = s->T, S = s->S, dh = s->dh, dvn = s->dv;
  double *p = calloc((size_t)(T * S), sizeof *p), *ds = calloc((size_t)(T * S), sizeof *ds);
  for (int64_t i = 0; i < T; i++) {
    double mx = -INFINITY;
    for (int64_t j = 0; j < S; j++) {
      double x = 0;
      for (int64_t d = 0; d < dh; d++) x += q[i * dh + d] * k[j * dh + d];
      x = s->causal && j > i ? -INFINITY : scale * x;
      p[i * S + j] = x;
      mx = fmax(mx, x);
    }
    double sum = 0;
    for (int64_t j = 0; j < S; j++) sum += exp(p[i * S + j] - mx);
    lse[i] = mx + log(sum);
    for (int64_t j = 0; j < S; j++) p[i * S + j] = exp(p[i * S + j] - lse[i]);
    for (int64_t c = 0; c < dvn; c++) {
      double x = 0;
      for (int64_t j = 0; j < S; j++) x += p[i * S + j] * v[j * dvn + c];
      o[i * dvn + c] = x;
    }
  }
  for (int64_t i = 0; i < T; i++) {
    double D = 0;
    for (int64_t c = 0; c < dvn; c++) D += dO[i * dvn + c] * o[i * dvn + c];
    for (int64_t j = 0; j < S; j++) {
      double dp = 0;
      for (int64_t c = 0; c < dvn; c++) dp += dO[i * dvn + c] * v[j * dvn + c];
      ds[i * S + j] = p[i * S + j] * (dp - D);
    }
  }
  memset(dq, 0, (size_t)(T * dh) * sizeof *dq);
  memset(dk, 0, (size_t)(S * dh) * sizeof *dk);
  memset(dv, 0, (size_t)(S * dvn) * sizeof *dv);
  for (int64_t i = 0; i < T; i++)
    for (int64_t j = 0; j < S; j++) {
      for (int64_t d = 0; d < dh; d++) {
        dq[i * dh + d] += scale * ds[i * S + j] * k[j * dh + d];
        dk[j * dh + d] += scale * ds[i * S + j] * q[i * dh + d];
      }
      for (int64_t c = 0; c < dvn; c++) dv[j * dvn + c] += p[i * S + j] * dO[i * dvn + c];
    }
  free(p);
  free(ds);
}

static double elem(const void *p, int es, int64_t k) {
  return es == 8 ? ((const double *)p)[k] : (double)((const float *)p)[k];
}

/* |got - ref| <= tol max(1, max |ref|) over n elements; prints the worst on failure */
static int compare(const char *what, const Shape *s, const void *got, int es, const double *ref, int64_t n, double tol) {
  double scale = 1, worst = 0;
  int64_t wk = 0, bad = 0;
  for (int64_t k = 0; k < n; k++) scale = fmax(scale, fabs(ref[k]));
  for (int64_t k = 0; k < n; k++) {
    double d = fabs(elem(got, es, k) - ref[k]);
    if (!(d <= worst)) worst = d, wk = k;
    if (!(d <= tol * scale)) bad++;
  }
  if (bad)
    printf("  FAIL %-3s T %lld S %lld dh %lld dv %lld causal %d (f%d): %lld of %lld off, max %.3g at %lld (jit %.9g, ref %.9g)\n",
           what, (long long)s->T, (long long)s->S, (long long)s->dh, (long long)s->dv, s->causal, es * 8, (long long)bad,
           (long long)n, worst, (long long)wk, elem(got, es, wk), ref[wk]);
  else if (getenv("CGT_VERBOSE"))
    printf("  ok   %-3s T %lld S %lld dh %lld dv %lld causal %d (f%d): max %.3g\n", what, (long long)s->T, (long long)s->S,
           (long long)s->dh, (long long)s->dv, s->causal, es * 8, worst);
  return bad != 0;
}

/* Compile the shape's function (f64: the f64 model), run it on 1, 2 and 3 threads, check
 * each run against the reference and the runs against each other bit for bit. Returns
 * the number of failures. */
static int run_shape_scaled(const Shape *s, int64_t batch, const char *march, bool f64, double sharp) {
  Module *m = ir_module_new();
  double scale = sharp / sqrt((double)s->dh);
  Func *f = build(m, s, scale);
  if (f64) f = cgt_func_to_f64(f, "attn64");
  const char *lvl = getenv("CGT_OPT");   /* as the harness: CGT_OPT=0..3, default 2 */
  CgOptions o = {march ? march : "native", lvl ? atoi(lvl) : 2, 4, false, false};
  CgModel *cm = test_build(f, NULL, NULL, &o);
  assert_non_null(cm);
  assert_int_equal(cg_model_jit(cm), 0);
  bprt_model_desc *d = cg_model_desc(cm);
  int es = cg_model_elem_bytes(cm);
  assert_int_equal(es, f64 ? 8 : 4);
  assert_int_equal(d->ninputs, 4);
  assert_int_equal(d->noutputs, 5);
  int64_t bh = 1;
  for (int i = 0; i < s->nlead; i++) bh *= s->lead[i] == DIM_BATCH ? batch : s->lead[i];
  int64_t nin[4] = {s->T * s->dh, s->S * s->dh, s->S * s->dv, s->T * s->dv};
  int64_t nout[5] = {s->T * s->dv, s->T, s->T * s->dh, s->S * s->dh, s->S * s->dv};
  double *in[4], *ref[5];
  uint64_t rs = 7;
  for (int t = 0; t < 4; t++) {
    in[t] = malloc((size_t)(bh * nin[t]) * sizeof(double));
    for (int64_t e = 0; e < bh * nin[t]; e++) {
      double x = -2 + 4 * cgt_urand(&rs);
      in[t][e] = f64 ? x : (double)(float)x;
    }
  }
  for (int t = 0; t < 5; t++) ref[t] = malloc((size_t)(bh * nout[t]) * sizeof(double));
  for (int64_t b = 0; b < bh; b++)
    reference(s, scale, in[0] + b * nin[0], in[1] + b * nin[1], in[2] + b * nin[2], in[3] + b * nin[3], ref[0] + b * nout[0],
              ref[1] + b * nout[1], ref[2] + b * nout[2], ref[3] + b * nout[3], ref[4] + b * nout[4]);
  static const char *const names[5] = {"o", "lse", "dq", "dk", "dv"};
  int fails = 0;
  void *first[5] = {NULL};
  for (int threads = 1; threads <= 3; threads++) {
    CgtFrame fr;
    cgt_frame_init_ex(&fr, d, batch, threads, es);
    for (int t = 0; t < 4; t++)
      for (int64_t e = 0; e < bh * nin[t]; e++) {
        if (es == 8) ((double *)fr.inputs[t])[e] = in[t][e];
        else ((float *)fr.inputs[t])[e] = (float)in[t][e];
      }
    d->forward(&fr.fr);
    assert_int_equal(fr.fr.status, 0);
    for (int t = 0; t < 5; t++) {
      size_t bytes = (size_t)(bh * nout[t] * es);
      if (threads == 1) {
        fails += compare(names[t], s, fr.outputs[t], es, ref[t], bh * nout[t], f64 ? TOL64 : TOL);
        first[t] = malloc(bytes);
        memcpy(first[t], fr.outputs[t], bytes);
      } else if (memcmp(first[t], fr.outputs[t], bytes) != 0) {
        printf("  FAIL %s on %d threads differs from 1 thread (T %lld S %lld)\n", names[t], threads, (long long)s->T,
               (long long)s->S);
        fails++;
      }
    }
    cgt_frame_free(&fr);
  }
  for (int t = 0; t < 4; t++) free(in[t]);
  for (int t = 0; t < 5; t++) free(ref[t]), free(first[t]);
  cg_model_free(cm);
  ir_module_free(m);
  return fails;
}

static int run_shape(const Shape *s, int64_t batch, const char *march, bool f64) {
  return run_shape_scaled(s, batch, march, f64, 1.3);
}

static const Shape shapes[] = {
    {2, {2, 3}, 17, 17, 8, 8, false},
    {2, {2, 3}, 17, 17, 8, 8, true},
    {2, {1, 2}, 64, 64, 32, 32, false},
    {2, {1, 2}, 64, 64, 32, 32, true},
    {2, {2, 3}, 17, 40, 24, 13, false},        /* T != S, dh and dv past a vector */
    {1, {DIM_BATCH}, 70, 70, 20, 20, true},    /* two query blocks, the batch dim */
    {1, {DIM_BATCH}, 70, 130, 17, 33, false},  /* three key blocks */
    {2, {DIM_BATCH, 4}, 130, 130, 32, 32, true},
    {1, {DIM_BATCH}, 1, 1, 3, 1, true},        /* one query, one key */
    {2, {3, 2}, 5, 1, 16, 16, false},          /* one key: p = 1 */
};
#define NSHAPES ((int)(sizeof shapes / sizeof shapes[0]))

static void test_attention_f32(void **state) {
  (void)state;
  int fails = 0;
  for (int i = 0; i < NSHAPES; i++) fails += run_shape(&shapes[i], 3, NULL, false);
  assert_int_equal(fails, 0);
}

static void test_attention_f64(void **state) {
  (void)state;
  int fails = 0;
  for (int i = 0; i < NSHAPES; i++) fails += run_shape(&shapes[i], 2, NULL, true);
  assert_int_equal(fails, 0);
}

/* sharp softmax rows (scores up to ~60 apart): the online rescaling across key blocks
 * (alpha = exp(m - m') far from 1) and p underflowing to 0 */
static void test_attention_sharp(void **state) {
  (void)state;
  int fails = 0;
  for (int i = 4; i < 8; i++) fails += run_shape_scaled(&shapes[i], 2, NULL, false, 8.0);
  fails += run_shape_scaled(&shapes[7], 2, NULL, true, 8.0);
  assert_int_equal(fails, 0);
}

/* the 4- and 8-lane code (masked tails of another width, fewer keys per block) */
static void test_attention_portable(void **state) {
  (void)state;
  const char *marchs[] = {"x86-64", "x86-64-v3"};
  int fails = 0;
  for (int a = 0; a < 2; a++)
    for (int i = 0; i < NSHAPES; i += 3) fails += run_shape(&shapes[i], 2, marchs[a], false);
  fails += run_shape(&shapes[4], 2, "x86-64-v3", true);
  assert_int_equal(fails, 0);
}

/* ------------------------------------------------------------------ the interpreter */

/* The same kernels against the reference interpreter (ir/interp.c), through the
 * harness: the forward entry of build()'s function, then a training step of
 * loss = sum(attention(q, k, v) * r) with q, k, v parameters, whose gradients autodiff
 * makes with attention_bwd (do = r). Two threads. */
static int interp_shape(const Shape *s, bool f64) {
  int fails = 0;
  Module *m = ir_module_new();
  double scale = 1.3 / sqrt((double)s->dh);
  Func *f = build(m, s, scale);
  CgtConfig c = {-2, 2, 2, NULL, false, f64};
  fails += cgt_check_forward(f, 3, f64 ? TOL64 : TOL, &c);
  bool batch = false;   /* parameters have no batch dim */
  for (int i = 0; i < s->nlead; i++) batch |= s->lead[i] == DIM_BATCH;
  if (batch) {
    ir_module_free(m);
    return fails;
  }
  Func *g = ir_func_new(m, "attnloss");
  int32_t q = ir_param(g, "q", tt(m, s, s->T, s->dh, DT_F32), INIT_NORMAL, 1.0, 0, L);
  int32_t k = ir_param(g, "k", tt(m, s, s->S, s->dh, DT_F32), INIT_NORMAL, 1.0, 0, L);
  int32_t v = ir_param(g, "v", tt(m, s, s->S, s->dv, DT_F32), INIT_NORMAL, 1.0, 0, L);
  int32_t r = ir_input(g, "r", 0, tt(m, s, s->T, s->dv, DT_F32), L);
  int32_t o = ir_attention(g, q, k, v, s->causal, scale, NULL, L);
  ir_loss(g, ir_reduce(g, OP_SUM, ir_binary(g, OP_MUL, o, r, L), IR_AXIS_ALL, false, L), L);
  Func *grad = test_grad(g, NULL);
  assert_non_null(grad);
  int ops[OP__COUNT] = {0};
  for (int32_t i = 0; i < grad->ninsts; i++) ops[grad->insts[i].op]++;
  assert_int_equal(ops[OP_ATTENTION], 1);
  assert_int_equal(ops[OP_ATTENTION_BWD], 1);
  fails += cgt_check_grad(g, grad, 3, f64 ? TOL64 : TOL, &c);
  ir_module_free(m);
  return fails;
}

static void test_attention_interp(void **state) {
  (void)state;
  int fails = 0;
  for (int i = 0; i < NSHAPES; i++) {
    int r = interp_shape(&shapes[i], false) + interp_shape(&shapes[i], true);
    if (r) printf("  shape %d failed against the interpreter\n", i);
    fails += r;
  }
  assert_int_equal(fails, 0);
}

/* ------------------------------------------------------------------ the plans */

static bool share_bytes(const MemPlan *p, int32_t a, int32_t b, int64_t batch) {
  const MemValue *u = &p->vals[a], *v = &p->vals[b];
  if (!u->in_workspace || !v->in_workspace) return false;
  int64_t ua = mem_at(u->offset, batch), ub = ua + mem_at(u->slot, batch);
  int64_t va = mem_at(v->offset, batch), vb = va + mem_at(v->slot, batch);
  return ua < vb && va < ub;
}

/* q, k, v computed (temporaries whose last reader is the attention), so that a plan
 * that started the extras' lifetimes at their own instruction would hand them q's, k's
 * or v's bytes. */
static Func *build_planned(Module *m, const Shape *s, int32_t *ids) {
  Func *f = ir_func_new(m, "attnplan");
  int32_t x = ir_input(f, "x", 0, tt(m, s, s->T, s->dh, DT_F32), L);
  int32_t dO = ir_input(f, "do", 1, tt(m, s, s->T, s->dv, DT_F32), L);
  int32_t q = ir_unary(f, OP_NEG, x, L);
  int32_t k = ir_unary(f, OP_TANH, x, L);
  int32_t v = ir_unary(f, OP_SIGMOID, x, L);
  int32_t lse, dk, dv;
  int32_t o = ir_attention(f, q, k, v, s->causal, 0.125, &lse, L);
  int32_t args[6] = {q, k, v, o, lse, dO};
  int32_t dq = ir_attention_bwd(f, args, s->causal, 0.125, &dk, &dv, L);
  int32_t y = ir_binary(f, OP_ADD, ir_binary(f, OP_ADD, dq, dk, L), dv, L);
  ir_output(f, "y", y, L);
  int32_t r[9] = {q, k, v, o, lse, dO, dq, dk, dv};
  memcpy(ids, r, sizeof r);
  return f;
}

enum { I_Q, I_K, I_V, I_O, I_LSE, I_DO, I_DQ, I_DK, I_DV };

static void check_extras_apart(const MemPlan *p, const int32_t *id, int64_t batch) {
  assert_true(memplan_verify(p, "test"));
  /* lse against everything attention reads or writes, dk and dv against everything
   * attention_bwd reads or writes (and each other) */
  for (int k = I_Q; k <= I_O; k++) assert_false(share_bytes(p, id[I_LSE], id[k], batch));
  for (int e = I_DK; e <= I_DV; e++)
    for (int k = I_Q; k <= I_DV; k++)
      if (k != e) assert_false(share_bytes(p, id[e], id[k], batch));
}

static void test_attention_plans(void **state) {
  (void)state;
  Shape s = {2, {DIM_BATCH, 4}, 64, 64, 32, 32, true};
  Module *m = ir_module_new();
  int32_t id[9];
  Func *f = build_planned(m, &s, id);
  for (int fuse = 0; fuse < 2; fuse++) {
    Arena *a = arena_new();
    KernelPlanOptions ko = {fuse != 0};
    KernelPlan *kp = pass_kernel_plan(a, f, PLAN_INFERENCE, &ko);
    assert_non_null(kp);
    assert_true(kernel_plan_verify(kp, "test"));
    /* one kernel each: attention + lse, attention_bwd + dk + dv */
    assert_int_equal(kp->kernel_of[id[I_O]], kp->kernel_of[id[I_LSE]]);
    assert_int_equal(kp->kernel_of[id[I_DQ]], kp->kernel_of[id[I_DK]]);
    assert_int_equal(kp->kernel_of[id[I_DQ]], kp->kernel_of[id[I_DV]]);
    assert_int_equal(kp->kind[kp->kernel_of[id[I_O]]], KERNEL_ATTN);
    assert_int_equal(kp->kind[kp->kernel_of[id[I_DQ]]], KERNEL_ATTN);
    int g = kp->kernel_of[id[I_DQ]];
    assert_int_equal(kp->group_start[g + 1] - kp->group_start[g], 3);
    assert_int_equal(kp->group_start[kp->kernel_of[id[I_O]] + 1] - kp->group_start[kp->kernel_of[id[I_O]]], 2);
    for (int k = I_Q; k <= I_DV; k++) assert_false(kp->internal[id[k]]);
    MemPlan *mp = memplan_of_kernels(kp);
    check_extras_apart(mp, id, 1);
    check_extras_apart(mp, id, 32);
    memplan_free(mp);
    arena_free(a);
  }
  /* the plan over instructions: an extra's lifetime starts at its producer */
  MemPlan *p = memplan_build(f, 8);
  assert_int_equal(p->vals[id[I_LSE]].def, id[I_O]);
  assert_int_equal(p->vals[id[I_DV]].def, id[I_DQ]);
  check_extras_apart(p, id, 8);
  memplan_free(p);
  ir_module_free(m);
}

/* tinygpt's attention at T = 1024: B 32, 4 heads, dh 32 (d 128). The memory plan of the
 * step holds q, k, v, o, lse and the gradients, nothing of [T,T]: the workspace is a
 * small fraction of one [B,4,T,T] f32 tensor (512 MiB) and the attention scratch of a
 * chunk is below one [T,T] slice. */
static void test_attention_no_tt(void **state) {
  (void)state;
  const int64_t B = 32, T = 1024;
  Shape s = {2, {DIM_BATCH, 4}, T, T, 32, 32, true};
  Module *m = ir_module_new();
  int32_t id[9];
  Func *f = build_planned(m, &s, id);
  Arena *a = arena_new();
  KernelPlan *kp = pass_kernel_plan(a, f, PLAN_INFERENCE, NULL);
  assert_non_null(kp);
  MemPlan *mp = memplan_of_kernels(kp);
  int64_t tt_bytes = B * 4 * T * T * 4;
  for (int32_t i = 0; i < f->ninsts; i++) {
    if (f->insts[i].type == TYPE_VOID) continue;
    const TensorType *t = ir_vtype(f, i);
    /* no value whose last two dims are [T,T] */
    assert_false(t->rank >= 2 && t->dims[t->rank - 1] == T && t->dims[t->rank - 2] == T);
    assert_true(mem_at(mp->vals[i].size, B) <= tt_bytes / 32);   /* [B,4,T,dh]: dh / T of it */
  }
  CgOptions o = {"native", 2, 16, false, false};
  int64_t extra = cg_workspace_extra(&o, kp, NULL, 4);
  int64_t ws = memplan_workspace_bytes(mp, B) + extra;
  printf("  T = 1024: workspace %lld bytes (%lld of them scratch for 16 chunks), one [B,4,T,T] f32 %lld\n",
         (long long)ws, (long long)extra, (long long)tt_bytes);
  /* the values are [B,4,T,32] (16 MiB, 1/32 of [B,4,T,T]), fewer than eight alive at once */
  assert_true(ws < tt_bytes / 4);
  assert_true(extra / 16 < T * T * 4 / 8);
  memplan_free(mp);
  arena_free(a);
  ir_module_free(m);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_attention_f32),      cmocka_unit_test(test_attention_f64),
      cmocka_unit_test(test_attention_portable), cmocka_unit_test(test_attention_sharp),
      cmocka_unit_test(test_attention_interp),   cmocka_unit_test(test_attention_plans),
      cmocka_unit_test(test_attention_no_tt),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
