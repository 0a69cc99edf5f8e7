/* codegen/pool.c — max_pool2d, avg_pool2d and their backward ops.
 *
 * Every (n, c) plane is independent (windows stay in their plane), so the planes are
 * split into chunks, one task per chunk through frame->parallel_for: the result does
 * not depend on the split. Per plane:
 *
 *   k = s = 2, no padding (the common pooling, LeNet's): vector code over W output
 *   columns at a time: the two input rows of the windows are loaded as 2W contiguous
 *   elements each and split into even and odd columns (shufflevector). Forward takes
 *   the four cells in row-major order; backward-max writes each window's four cells at
 *   once (dy at the argmax, 0 elsewhere: windows do not overlap), backward-avg dy / 4
 *   to each. Masked loads and stores cover the last columns.
 *
 *   otherwise: a scalar loop nest over (oh, ow) and the window's rows and columns
 *   clipped to the unpadded input, so a padded cell costs no branch (max: -inf never
 *   wins; avg: zeros add nothing, the divisor stays k*k). The backward ops zero the
 *   plane of dx, then add each window's contribution (windows overlap when the stride
 *   is below the kernel).
 *
 * Either way the cells of a window are visited in row-major order and a cell replaces
 * the window's best only when larger (or NaN), so the argmax is the interpreter's and
 * PyTorch's: the first largest. */
#include <math.h>
#include <string.h>

#include "codegen/cg.h"

typedef struct {
  Op op;
  bool fwd, mx;
  bool relu_mask;   /* max backward masked by relu_grad (x = relu(p)): dy only where the max > 0 */
  int64_t k, s, p, H, W, HO, WO;
} PoolGeom;

static LLVMValueRef k64(Cg *cg, int64_t v) { return cg_i64(cg, v); }
static LLVMValueRef add(Cg *cg, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildAdd(cg->B, a, b, ""); }
static LLVMValueRef mul(Cg *cg, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildMul(cg->B, a, b, ""); }
static LLVMValueRef fptr(Cg *cg, LLVMValueRef p, LLVMValueRef idx) { return cg_gep(cg, cg->t_f32, p, idx); }

typedef struct {
  LLVMValueRef dst;
} ZeroCtx;

static void zero_body(Cg *cg, void *p, LLVMValueRef j, LLVMTypeRef T) {
  cg_store(cg, cg_fconst(cg, T, 0.0), ((ZeroCtx *)p)->dst, j);
}

/* ---- the general plane: scalar ---- */

static void plane_scalar(Cg *cg, const PoolGeom *g, LLVMValueRef x, LLVMValueRef dy, LLVMValueRef out) {
  LLVMBuilderRef B = cg->B;
  LLVMTypeRef T = cg->t_f32;
  LLVMValueRef zero = k64(cg, 0), one = k64(cg, 1);
  LLVMValueRef H = k64(cg, g->H), W = k64(cg, g->W);
  LLVMValueRef kk = cg_fconst(cg, T, (double)g->k * (double)g->k);
  LLVMValueRef best = cg_alloca(cg, T, "best"), arg = cg_alloca(cg, cg->t_i64, "arg");
  CgLoop lh = cg_loop_begin(cg, zero, k64(cg, g->HO), one);
  CgLoop lw = cg_loop_begin(cg, zero, k64(cg, g->WO), one);
  LLVMValueRef h0 = LLVMBuildSub(B, mul(cg, lh.iv, k64(cg, g->s)), k64(cg, g->p), "h0");
  LLVMValueRef w0 = LLVMBuildSub(B, mul(cg, lw.iv, k64(cg, g->s)), k64(cg, g->p), "w0");
  LLVMValueRef hs = LLVMBuildSelect(B, LLVMBuildICmp(B, LLVMIntSLT, h0, zero, ""), zero, h0, "");
  LLVMValueRef ws = LLVMBuildSelect(B, LLVMBuildICmp(B, LLVMIntSLT, w0, zero, ""), zero, w0, "");
  LLVMValueRef he = cg_min_i64(cg, add(cg, h0, k64(cg, g->k)), H);
  LLVMValueRef we = cg_min_i64(cg, add(cg, w0, k64(cg, g->k)), W);
  LLVMValueRef yi = add(cg, mul(cg, lh.iv, k64(cg, g->WO)), lw.iv);
  LLVMValueRef gv = g->fwd ? NULL : cg_load(cg, T, dy, yi);
  if (!g->fwd && !g->mx) gv = LLVMBuildFDiv(B, gv, kk, "");
  LLVMBuildStore(B, g->fwd && !g->mx ? cg_fconst(cg, T, 0) : cg_fconst(cg, T, -INFINITY), best);
  LLVMBuildStore(B, k64(cg, -1), arg);
  CgLoop wh = cg_loop_begin(cg, hs, he, one);
  CgLoop ww = cg_loop_begin(cg, ws, we, one);
  LLVMValueRef xi = add(cg, mul(cg, wh.iv, W), ww.iv);
  if (g->mx) {
    LLVMValueRef v = cg_load(cg, T, x, xi), cur = LLVMBuildLoad2(B, T, best, "");
    LLVMValueRef take = LLVMBuildOr(B, LLVMBuildICmp(B, LLVMIntSLT, LLVMBuildLoad2(B, cg->t_i64, arg, ""), zero, ""),
                                    LLVMBuildOr(B, LLVMBuildFCmp(B, LLVMRealOGT, v, cur, ""),
                                                LLVMBuildFCmp(B, LLVMRealUNO, v, v, ""), ""), "");
    LLVMBuildStore(B, LLVMBuildSelect(B, take, v, cur, ""), best);
    LLVMBuildStore(B, LLVMBuildSelect(B, take, xi, LLVMBuildLoad2(B, cg->t_i64, arg, ""), ""), arg);
  } else if (g->fwd) {
    LLVMBuildStore(B, LLVMBuildFAdd(B, LLVMBuildLoad2(B, T, best, ""), cg_load(cg, T, x, xi), ""), best);
  } else {
    cg_store(cg, LLVMBuildFAdd(B, cg_load(cg, T, out, xi), gv, ""), out, xi);
  }
  cg_loop_end(cg, &ww);
  cg_loop_end(cg, &wh);
  if (g->fwd) {
    LLVMValueRef r = LLVMBuildLoad2(B, T, best, "");
    cg_store(cg, g->mx ? r : LLVMBuildFDiv(B, r, kk, ""), out, yi);
  } else if (g->mx) {   /* every window holds an unpadded cell (padding <= kernel / 2): arg >= 0 */
    LLVMValueRef at = LLVMBuildLoad2(B, cg->t_i64, arg, "");
    if (g->relu_mask)
      gv = LLVMBuildSelect(B, LLVMBuildFCmp(B, LLVMRealOGT, LLVMBuildLoad2(B, T, best, ""), cg_fconst(cg, T, 0.0), ""), gv,
                           cg_fconst(cg, T, 0.0), "");
    cg_store(cg, LLVMBuildFAdd(B, cg_load(cg, T, out, at), gv, ""), out, at);
  }
  cg_loop_end(cg, &lw);
  cg_loop_end(cg, &lh);
}

/* ---- k = s = 2, no padding: vectors over output columns ---- */

static LLVMValueRef intrinsic_mem(Cg *cg, const char *name, LLVMValueRef *a, int n) {
  LLVMTypeRef ov[2] = {cg->t_vec, cg->t_ptr};
  unsigned id = LLVMLookupIntrinsicID(name, strlen(name));
  return LLVMBuildCall2(cg->B, LLVMIntrinsicGetType(cg->C, id, ov, 2), LLVMGetIntrinsicDeclaration(cg->M, id, ov, 2), a,
                        (unsigned)n, "");
}

static LLVMValueRef mload(Cg *cg, LLVMValueRef p, LLVMValueRef mask, double pass) {
  LLVMValueRef a[4] = {p, cg_i32(cg, cg->esize), mask, cg_fconst(cg, cg->t_vec, pass)};
  return intrinsic_mem(cg, "llvm.masked.load", a, 4);
}

static void mstore(Cg *cg, LLVMValueRef v, LLVMValueRef p, LLVMValueRef mask) {
  LLVMValueRef a[4] = {v, p, cg_i32(cg, cg->esize), mask};
  intrinsic_mem(cg, "llvm.masked.store", a, 4);
}

/* lanes l with base + l < n */
static LLVMValueRef lanes_below(Cg *cg, LLVMValueRef base, LLVMValueRef n) {
  LLVMTypeRef VI = LLVMVectorType(cg->t_i64, (unsigned)cg->W);
  LLVMValueRef iota[16];
  for (int l = 0; l < cg->W; l++) iota[l] = k64(cg, l);
  LLVMValueRef j = LLVMBuildAdd(cg->B, cg_splat(cg, base, VI), LLVMConstVector(iota, (unsigned)cg->W), "");
  return LLVMBuildICmp(cg->B, LLVMIntSLT, j, cg_splat(cg, n, VI), "");
}

/* lanes (first + 2 l) of the 2W elements a ++ b: first = 0 the even ones, 1 the odd */
static LLVMValueRef pick(Cg *cg, LLVMValueRef a, LLVMValueRef b, int first) {
  LLVMValueRef m[16];
  for (int l = 0; l < cg->W; l++) m[l] = LLVMConstInt(cg->t_i32, (unsigned long long)(2 * l + first), 0);
  return LLVMBuildShuffleVector(cg->B, a, b, LLVMConstVector(m, (unsigned)cg->W), "");
}

/* even ++ odd interleaved: lanes [lo half], [hi half] of e0 o0 e1 o1 ... */
static void interleave(Cg *cg, LLVMValueRef e, LLVMValueRef o, LLVMValueRef out[2]) {
  for (int h = 0; h < 2; h++) {
    LLVMValueRef m[16];
    for (int l = 0; l < cg->W; l++) {
      int q = h * cg->W + l;   /* output element q: e[q/2] or o[q/2] */
      m[l] = LLVMConstInt(cg->t_i32, (unsigned long long)((q & 1 ? cg->W : 0) + q / 2), 0);
    }
    out[h] = LLVMBuildShuffleVector(cg->B, e, o, LLVMConstVector(m, (unsigned)cg->W), "");
  }
}

/* take = cur unset || v > cur || v is NaN (the scalar rule, per lane) */
static LLVMValueRef take(Cg *cg, LLVMValueRef v, LLVMValueRef cur) {
  return LLVMBuildOr(cg->B, LLVMBuildFCmp(cg->B, LLVMRealOGT, v, cur, ""), LLVMBuildFCmp(cg->B, LLVMRealUNO, v, v, ""), "");
}

static void plane_2x2(Cg *cg, const PoolGeom *g, LLVMValueRef x, LLVMValueRef dy, LLVMValueRef out) {
  LLVMBuilderRef B = cg->B;
  LLVMTypeRef T = cg->t_vec;
  int Wl = cg->W;
  if (!g->fwd) {   /* cells no window covers (an odd last row or column) stay 0 */
    ZeroCtx z = {out};
    cg_vloop(cg, k64(cg, g->H * g->W), zero_body, &z);
  }
  CgLoop lh = cg_loop_begin(cg, k64(cg, 0), k64(cg, g->HO), k64(cg, 1));
  CgLoop lj = cg_loop_begin(cg, k64(cg, 0), k64(cg, g->WO), k64(cg, Wl));
  LLVMValueRef yi = add(cg, mul(cg, lh.iv, k64(cg, g->WO)), lj.iv);
  LLVMValueRef om = lanes_below(cg, lj.iv, k64(cg, g->WO));            /* the outputs that exist */
  LLVMValueRef c0 = mul(cg, lj.iv, k64(cg, 2)), ncol = k64(cg, 2 * g->WO);
  LLVMValueRef im[2] = {lanes_below(cg, c0, ncol), lanes_below(cg, add(cg, c0, k64(cg, Wl)), ncol)};
  LLVMValueRef cell[2][2];   /* [row u][column v] of every window, per lane */
  LLVMValueRef rowp[2];   /* input row 2 i + u at column 2 j0: in x, and in dx */
  for (int u = 0; u < 2; u++) {
    LLVMValueRef off = add(cg, mul(cg, add(cg, mul(cg, lh.iv, k64(cg, 2)), k64(cg, u)), k64(cg, g->W)), c0);
    rowp[u] = fptr(cg, out, off);
    if (!x) continue;
    LLVMValueRef xr = fptr(cg, x, off);
    LLVMValueRef a = mload(cg, xr, im[0], 0.0), b = mload(cg, fptr(cg, xr, k64(cg, Wl)), im[1], 0.0);
    cell[u][0] = pick(cg, a, b, 0);
    cell[u][1] = pick(cg, a, b, 1);
  }
  if (g->fwd) {
    LLVMValueRef r = cell[0][0];
    for (int q = 1; q < 4; q++) {
      LLVMValueRef v = cell[q / 2][q % 2];
      r = g->mx ? LLVMBuildSelect(B, take(cg, v, r), v, r, "") : LLVMBuildFAdd(B, r, v, "");
    }
    if (!g->mx) r = LLVMBuildFDiv(B, r, cg_fconst(cg, T, 4.0), "");
    mstore(cg, r, fptr(cg, out, yi), om);
  } else {
    LLVMValueRef gv = mload(cg, fptr(cg, dy, yi), om, 0.0);
    LLVMValueRef val[2][2];
    if (g->mx) {   /* the argmax q of each window, first largest (or NaN) in row-major order */
      LLVMTypeRef VI = LLVMVectorType(cg->t_i32, (unsigned)Wl);
      LLVMValueRef r = cell[0][0], at = LLVMConstNull(VI);
      for (int q = 1; q < 4; q++) {
        LLVMValueRef v = cell[q / 2][q % 2], t = take(cg, v, r);
        r = LLVMBuildSelect(B, t, v, r, "");
        at = LLVMBuildSelect(B, t, cg_splat(cg, cg_i32(cg, q), VI), at, "");
      }
      if (g->relu_mask) gv = LLVMBuildSelect(B, LLVMBuildFCmp(B, LLVMRealOGT, r, cg_fconst(cg, T, 0.0), ""), gv, cg_fconst(cg, T, 0.0), "");
      for (int q = 0; q < 4; q++)
        val[q / 2][q % 2] = LLVMBuildSelect(B, LLVMBuildICmp(B, LLVMIntEQ, at, cg_splat(cg, cg_i32(cg, q), VI), ""), gv,
                                            cg_fconst(cg, T, 0.0), "");
    } else {
      LLVMValueRef d = LLVMBuildFDiv(B, gv, cg_fconst(cg, T, 4.0), "");
      val[0][0] = val[0][1] = val[1][0] = val[1][1] = d;
    }
    for (int u = 0; u < 2; u++) {
      LLVMValueRef o[2];
      interleave(cg, val[u][0], val[u][1], o);
      mstore(cg, o[0], rowp[u], im[0]);
      mstore(cg, o[1], fptr(cg, rowp[u], k64(cg, Wl)), im[1]);
    }
  }
  cg_loop_end_hint(cg, &lj, CG_LOOP_NO_VECTORIZE | CG_LOOP_NO_UNROLL);
  cg_loop_end(cg, &lh);
}

/* ---- the task over planes ---- */

enum { PX_X, PX_DY, PX_OUT, PX_PLANES, PX_NCHUNKS, PX__COUNT };

static LLVMTypeRef ctx_type(Cg *cg) {
  LLVMTypeRef f[PX__COUNT] = {cg->t_ptr, cg->t_ptr, cg->t_ptr, cg->t_i64, cg->t_i64};
  return LLVMStructTypeInContext(cg->C, f, PX__COUNT, 0);
}

static LLVMValueRef build_task(Cg *cg, const PoolGeom *g, bool vec) {
  LLVMValueRef fn = cg_new_function(cg, "bpcc_pool_task", cg->t_task, true);
  cg->fn = fn;
  LLVMBuilderRef B = cg->B;
  LLVMPositionBuilderAtEnd(B, LLVMAppendBasicBlockInContext(cg->C, fn, "entry"));
  LLVMTypeRef ct = ctx_type(cg);
  LLVMValueRef f[PX__COUNT];
  for (int i = 0; i < PX__COUNT; i++)
    f[i] = LLVMBuildLoad2(B, LLVMStructGetTypeAtIndex(ct, (unsigned)i), LLVMBuildStructGEP2(B, ct, LLVMGetParam(fn, 0), (unsigned)i, ""), "");
  CgLoop l = cg_loop_begin(cg, LLVMGetParam(fn, 1), LLVMGetParam(fn, 2), k64(cg, 1));
  LLVMValueRef p0 = LLVMBuildSDiv(B, mul(cg, l.iv, f[PX_PLANES]), f[PX_NCHUNKS], "");
  LLVMValueRef p1 = LLVMBuildSDiv(B, mul(cg, add(cg, l.iv, k64(cg, 1)), f[PX_PLANES]), f[PX_NCHUNKS], "");
  CgLoop lp = cg_loop_begin(cg, p0, p1, k64(cg, 1));
  LLVMValueRef xo = mul(cg, lp.iv, k64(cg, g->H * g->W)), yo = mul(cg, lp.iv, k64(cg, g->HO * g->WO));
  LLVMValueRef x = g->op == OP_AVG_POOL2D_BWD ? NULL : fptr(cg, f[PX_X], xo);
  LLVMValueRef dy = g->fwd ? NULL : fptr(cg, f[PX_DY], yo);
  LLVMValueRef out = fptr(cg, f[PX_OUT], g->fwd ? yo : xo);
  if (vec) {
    plane_2x2(cg, g, x, dy, out);
  } else {
    if (!g->fwd) {
      ZeroCtx z = {out};
      cg_vloop(cg, k64(cg, g->H * g->W), zero_body, &z);
    }
    plane_scalar(cg, g, x, dy, out);
  }
  cg_loop_end(cg, &lp);
  cg_loop_end(cg, &l);
  LLVMBuildRetVoid(B);
  return fn;
}

/* Below this many input cells (all planes) a pooling runs on the calling thread. */
#define POOL_PARALLEL_CELLS (1 << 16)

static void pool(Cg *cg, const Inst *in, const CgVal *a, const CgVal *b, const CgVal *out, bool relu_mask) {
  LLVMBuilderRef B = cg->B;
  Op op = (Op)in->op;
  PoolGeom g = {op, op == OP_MAX_POOL2D || op == OP_AVG_POOL2D, op == OP_MAX_POOL2D || op == OP_MAX_POOL2D_BWD,
                relu_mask, 0, 0, 0, 0, 0, 0, 0};
  const TensorType *xt = op == OP_AVG_POOL2D_BWD ? out->t : a->t;
  const TensorType *yt = g.fwd ? out->t : op == OP_MAX_POOL2D_BWD ? b->t : a->t;
  ir_pool_geom(in, &g.k, &g.s, &g.p);
  g.H = xt->dims[2], g.W = xt->dims[3], g.HO = yt->dims[2], g.WO = yt->dims[3];
  bool vec = g.k == 2 && g.s == 2 && g.p == 0 && cg->W > 1;
  LLVMValueRef X = op == OP_AVG_POOL2D_BWD ? LLVMConstNull(cg->t_ptr) : a->ptr;
  LLVMValueRef DY = g.fwd ? LLVMConstNull(cg->t_ptr) : op == OP_MAX_POOL2D_BWD ? b->ptr : a->ptr;

  CgAside aside = cg_aside_begin(cg);
  LLVMValueRef task = build_task(cg, &g, vec);
  cg_aside_end(cg, aside);

  LLVMValueRef planes = cg_dims_prod(cg, xt, 0, 2);
  LLVMValueRef nth = LLVMBuildSExt(B, cg_frame_field(cg, CG_FR_NTHREADS), cg->t_i64, "");
  nth = cg_min_i64(cg, nth, planes);
  LLVMValueRef big = LLVMBuildICmp(B, LLVMIntSGE, mul(cg, planes, k64(cg, g.H * g.W)), k64(cg, POOL_PARALLEL_CELLS), "");
  LLVMValueRef nch = LLVMBuildSelect(B, LLVMBuildAnd(B, big, LLVMBuildICmp(B, LLVMIntSGT, nth, k64(cg, 1), ""), ""), nth, k64(cg, 1), "");
  LLVMTypeRef ct = ctx_type(cg);
  LLVMValueRef ctx = cg_alloca(cg, ct, "poolctx");
  LLVMValueRef vals[PX__COUNT] = {X, DY, out->ptr, planes, nch};
  for (int i = 0; i < PX__COUNT; i++) LLVMBuildStore(B, vals[i], LLVMBuildStructGEP2(B, ct, ctx, (unsigned)i, ""));
  cg_run_task(cg, LLVMBuildICmp(B, LLVMIntSGT, nch, k64(cg, 1), ""), nch, k64(cg, 1), task, ctx, k64(cg, 1));
}

void cg_kernel_pool(Cg *cg, const Inst *in, const CgVal *a, const CgVal *b, const CgVal *out) {
  pool(cg, in, a, b, out, false);
}

/* dx = relu_grad(p, max_pool2d_bwd(relu(p), dy)) in one pass: the result is the
 * relu_grad's buffer (the pooling's backward is internal) */
bool cg_kernel_pool_mask(Cg *cg, Func *f, const int32_t *members, const CgVal *vals) {
  const Inst *h = &f->insts[members[0]];
  pool(cg, h, &vals[h->args[0]], &vals[h->args[1]], &vals[members[1]], true);
  return true;
}
