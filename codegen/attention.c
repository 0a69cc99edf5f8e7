/* codegen/attention.c — fused scaled-dot-product attention, forward and backward, in the
 * manner of FlashAttention (Dao et al. 2022): no [T,S] matrix is ever stored; a block of
 * queries meets a block of keys in registers and a scratch of a few KiB.
 *
 *   q[BH,T,dh], k[BH,S,dh], v[BH,S,dv]  (BH: every leading dim, B included)
 *   s = scale q k^T (+ -inf where key j > query i when causal)
 *   o = softmax(s) v    lse = log sum_j exp(s_j)       (forward; lse is extra 1)
 *   D = rowsum(do * o), p = exp(s - lse), dp = do v^T, ds = p (dp - D)
 *   dq = scale ds k, dk = scale ds^T q, dv = p^T do     (backward; dk, dv are extras)
 *
 * Forward, per (bh, block of BR query rows): for each block of Bc keys (only the blocks
 * at or below the diagonal when causal), K's block is transposed into the scratch
 * (Kt[d][j]) so that a query row's Bc scores are Bc / W vectors of multiply-adds over
 * d (broadcast q[i,d] times a row of Kt). Each row keeps the online softmax state: its
 * running max m, running sum l and an accumulator acc[dv] (scratch), and per key block
 *   m' = max(m, max_j s_j), p_j = exp(s_j - m'), alpha = exp(m - m'),
 *   l = alpha l + sum_j p_j, acc = alpha acc + sum_j p_j v_j  (v_j rows as vectors)
 * Then o = acc / l and lse = m + log l.
 *
 * Backward, per bh: D for every query row (T floats of scratch), dq zeroed; then for
 * each block of Bc keys (transposed K and V, zeroed dK and dV accumulators) and each
 * block of BR query rows that can see it: the rows' p and ds (BR x Bc, scratch), then
 * dV[j] += sum_i p[i,j] do[i] and dK[j] += sum_i ds[i,j] q[i] (a key row's
 * accumulators in registers over the query rows), and dq[i] += scale sum_j ds[i,j] k[j].
 * The key block's dk = scale dK and dv = dV are then written once.
 *
 * Threads: the work items (forward: bh x query blocks; backward: bh) are cut into at most
 * min(threads, CgModel chunks, items) consecutive ranges, one task each, and every range
 * uses the scratch of its chunk in the GEMM pack area at the front of the workspace (its
 * size is cg_attention_scratch_floats, which cg_gemm_pack_sizes folds in). Each output
 * element is computed by one item in a fixed order, so results are bit-identical for
 * every thread count. Nothing is allocated in the step.
 *
 * Rows of q, k, v, o, do whose length is not a multiple of W are read and written with
 * masked vector loads and stores (llvm.masked.load / store: the lanes past the row are
 * neither read nor written). Sums run in the model's element type (float, or double in
 * an f64 model). */
#include <math.h>
#include <string.h>

#include "codegen/cg.h"

#define ATTN_BR 64       /* query rows per block */
#define ATTN_BCS 64      /* the scratch's row stride: keys per block at most */
#define ATTN_PAD 16      /* every scratch row and region padded to 16 elements */
#define ATTN_CH 8        /* row vectors held in registers at once */
/* below this many multiply-adds an attention runs on the calling thread */
#define ATTN_PARALLEL_MACS (1 << 16)

static int64_t rup(int64_t n, int64_t m) { return (n + m - 1) / m * m; }

/* The geometry of one attention instruction and where its scratch regions start (in
 * elements from the chunk's base). */
typedef struct {
  int rank;
  int64_t T, S, dh, dv;
  int64_t dhp, dvp;                 /* dh, dv rounded up to ATTN_PAD */
  int64_t kt, pr, acc, m, l;        /* forward: Kt[dh][BCS], p row, acc[BR][dvp], m[BR], l[BR] */
  int64_t vt, ds, dka, dva, dd;     /* backward: Kt, Vt[dv][BCS], p[BR][BCS] (pr), ds[BR][BCS],
                                       dK[BCS][dhp], dV[BCS][dvp], D[T] */
  int64_t total;
} AttnLayout;

static void attn_layout(Func *f, const Inst *in, AttnLayout *L) {
  memset(L, 0, sizeof *L);
  const TensorType *q = ir_vtype(f, in->args[0]), *k = ir_vtype(f, in->args[1]), *v = ir_vtype(f, in->args[2]);
  int r = q->rank;
  L->rank = r;
  L->T = q->dims[r - 2], L->dh = q->dims[r - 1], L->S = k->dims[r - 2], L->dv = v->dims[r - 1];
  L->dhp = rup(L->dh, ATTN_PAD), L->dvp = rup(L->dv, ATTN_PAD);
  int64_t o = 0;
#define REGION(field, n) (L->field = o, o += rup((n), ATTN_PAD))
  REGION(kt, L->dh * ATTN_BCS);
  if (in->op == OP_ATTENTION) {
    REGION(pr, ATTN_BCS);
    REGION(acc, ATTN_BR * L->dvp);
    REGION(m, ATTN_BR);
    REGION(l, ATTN_BR);
  } else {
    REGION(vt, L->dv * ATTN_BCS);
    REGION(pr, ATTN_BR * ATTN_BCS);
    REGION(ds, ATTN_BR * ATTN_BCS);
    REGION(dka, ATTN_BCS * L->dhp);
    REGION(dva, ATTN_BCS * L->dvp);
    REGION(dd, L->T);
  }
#undef REGION
  L->total = o;
}

int64_t cg_attention_scratch_floats(Func *f, const Inst *in) {
  AttnLayout L;
  attn_layout(f, in, &L);
  return L.total;
}

/* ------------------------------------------------------------------ emitting */

enum { AP_FRAME, AP_Q, AP_K, AP_V, AP_O, AP_LSE, AP_DO, AP_DQ, AP_DK, AP_DV, AP_SCRATCH, AP__COUNT };

typedef struct {
  Cg *cg;
  const Inst *in;
  AttnLayout L;
  bool bwd, causal;
  double scale;
  int W, Bc, nv;          /* lanes; keys per block (a multiple of W, <= ATTN_BCS); vectors per score row */
  LLVMTypeRef T, E, IT;   /* <W x elem> (elem when W = 1), elem, <W x i32> */
  LLVMValueRef p[AP__COUNT];   /* inside the task: the pointers (NULL: an extra nobody reads) */
} Attn;

static LLVMValueRef add(Attn *a, LLVMValueRef x, LLVMValueRef y) { return LLVMBuildAdd(a->cg->B, x, y, ""); }
static LLVMValueRef mul(Attn *a, LLVMValueRef x, LLVMValueRef y) { return LLVMBuildMul(a->cg->B, x, y, ""); }
static LLVMValueRef sub(Attn *a, LLVMValueRef x, LLVMValueRef y) { return LLVMBuildSub(a->cg->B, x, y, ""); }
static LLVMValueRef k64(Attn *a, int64_t v) { return cg_i64(a->cg, v); }
static LLVMValueRef imin(Attn *a, LLVMValueRef x, LLVMValueRef y) { return cg_min_i64(a->cg, x, y); }
static LLVMValueRef imax(Attn *a, LLVMValueRef x, LLVMValueRef y) {
  return LLVMBuildSelect(a->cg->B, LLVMBuildICmp(a->cg->B, LLVMIntSGT, x, y, ""), x, y, "");
}
static LLVMValueRef at(Attn *a, LLVMValueRef ptr, LLVMValueRef idx) { return cg_gep(a->cg, a->E, ptr, idx); }
static LLVMValueRef fk(Attn *a, LLVMTypeRef T, double v) { return cg_fconst(a->cg, T, v); }
static LLVMValueRef splat(Attn *a, LLVMValueRef s) { return cg_splat(a->cg, s, a->T); }
static LLVMValueRef lds(Attn *a, LLVMValueRef ptr, LLVMValueRef idx) { return cg_load(a->cg, a->E, ptr, idx); }
static LLVMValueRef ldv(Attn *a, LLVMValueRef ptr, LLVMValueRef idx) { return cg_load(a->cg, a->T, ptr, idx); }
/* x * y + z (fused where the target has FMA; a multiply and an add elsewhere) */
static LLVMValueRef fmadd(Attn *a, LLVMValueRef x, LLVMValueRef y, LLVMValueRef z) {
  LLVMValueRef args[3] = {x, y, z};
  return cg_intrinsic(a->cg, "llvm.fmuladd", LLVMTypeOf(x), args, 3);
}
static LLVMValueRef var(Attn *a, LLVMTypeRef T, LLVMValueRef init, const char *name) {
  LLVMValueRef v = cg_alloca(a->cg, T, name);
  LLVMBuildStore(a->cg->B, init, v);
  return v;
}
static LLVMValueRef get(Attn *a, LLVMTypeRef T, LLVMValueRef var) { return LLVMBuildLoad2(a->cg->B, T, var, ""); }
static void set(Attn *a, LLVMValueRef var, LLVMValueRef v) { LLVMBuildStore(a->cg->B, v, var); }

/* <W x i1> with the first `lanes` set */
static LLVMValueRef lane_mask(Attn *a, int lanes) {
  LLVMValueRef e[64];
  LLVMTypeRef i1 = a->cg->t_i1;
  for (int i = 0; i < a->W; i++) e[i] = LLVMConstInt(i1, i < lanes, 0);
  return LLVMConstVector(e, (unsigned)a->W);
}

static LLVMValueRef masked_intrinsic(Attn *a, const char *name, LLVMTypeRef *fty) {
  unsigned id = LLVMLookupIntrinsicID(name, strlen(name));
  LLVMTypeRef ov[2] = {a->T, a->cg->t_ptr};
  *fty = LLVMIntrinsicGetType(a->cg->C, id, ov, 2);
  return LLVMGetIntrinsicDeclaration(a->cg->M, id, ov, 2);
}

/* Vector u of a row of n elements at ptr[idx ..]: a plain load where the whole vector is
 * inside the row, else a masked load of the lanes that are (the others are 0). */
static LLVMValueRef ld_row(Attn *a, LLVMValueRef ptr, LLVMValueRef idx, int64_t u, int64_t n) {
  int64_t lanes = n - u * a->W;
  LLVMValueRef i = add(a, idx, k64(a, u * a->W));
  if (lanes >= a->W) return ldv(a, ptr, i);
  LLVMTypeRef fty;
  LLVMValueRef fn = masked_intrinsic(a, "llvm.masked.load", &fty);
  LLVMValueRef args[4] = {at(a, ptr, i), cg_i32(a->cg, 4), lane_mask(a, (int)lanes), fk(a, a->T, 0.0)};
  return LLVMBuildCall2(a->cg->B, fty, fn, args, 4, "");
}

static void st_row(Attn *a, LLVMValueRef x, LLVMValueRef ptr, LLVMValueRef idx, int64_t u, int64_t n) {
  int64_t lanes = n - u * a->W;
  LLVMValueRef i = add(a, idx, k64(a, u * a->W));
  if (lanes >= a->W) {
    cg_store(a->cg, x, ptr, i);
    return;
  }
  LLVMTypeRef fty;
  LLVMValueRef fn = masked_intrinsic(a, "llvm.masked.store", &fty);
  LLVMValueRef args[4] = {x, at(a, ptr, i), cg_i32(a->cg, 4), lane_mask(a, (int)lanes)};
  LLVMBuildCall2(a->cg->B, fty, fn, args, 4, "");
}

static int64_t nvec(Attn *a, int64_t n) { return (n + a->W - 1) / a->W; }

/* Kt[d][j] = src[(kb + j) n + d] for j < bc, d < n: a block of keys (or values) with the
 * key index along the rows of the scratch. */
static void transpose_block(Attn *a, LLVMValueRef dst, LLVMValueRef src, LLVMValueRef kb, LLVMValueRef bc, int64_t n) {
  CgLoop lj = cg_loop_begin(a->cg, k64(a, 0), bc, k64(a, 1));
  LLVMValueRef row = mul(a, add(a, kb, lj.iv), k64(a, n));
  CgLoop ld = cg_loop_begin(a->cg, k64(a, 0), k64(a, n), k64(a, 1));
  LLVMValueRef x = lds(a, src, add(a, row, ld.iv));
  cg_store(a->cg, x, dst, add(a, mul(a, ld.iv, k64(a, ATTN_BCS)), lj.iv));
  cg_loop_end(a->cg, &ld);
  cg_loop_end(a->cg, &lj);
}

/* acc[c] = sum_d x[xi + d] Kt[d][c W ..] for the nv vectors of a score row. */
static void score_row(Attn *a, LLVMValueRef x, LLVMValueRef xi, LLVMValueRef kt, int64_t n, LLVMValueRef *out) {
  LLVMValueRef acc[ATTN_BCS];
  for (int c = 0; c < a->nv; c++) acc[c] = var(a, a->T, fk(a, a->T, 0.0), "s");
  CgLoop ld = cg_loop_begin(a->cg, k64(a, 0), k64(a, n), k64(a, 1));
  LLVMValueRef xd = splat(a, lds(a, x, add(a, xi, ld.iv)));
  LLVMValueRef base = mul(a, ld.iv, k64(a, ATTN_BCS));
  for (int c = 0; c < a->nv; c++)
    set(a, acc[c], fmadd(a, xd, ldv(a, kt, add(a, base, k64(a, c * a->W))), get(a, a->T, acc[c])));
  cg_loop_end(a->cg, &ld);
  for (int c = 0; c < a->nv; c++) out[c] = get(a, a->T, acc[c]);
}

/* Which lanes of score vector c of key block kb query row i are real keys: j < S, and
 * j <= i when causal (i32 lanes). */
static LLVMValueRef valid_lanes(Attn *a, LLVMValueRef kb, int c, LLVMValueRef i) {
  LLVMBuilderRef B = a->cg->B;
  LLVMValueRef j0 = LLVMBuildTrunc(B, add(a, kb, k64(a, c * a->W)), a->cg->t_i32, "");
  LLVMValueRef jv;
  if (a->W == 1) {
    jv = j0;
  } else {
    LLVMValueRef e[64];
    for (int l = 0; l < a->W; l++) e[l] = cg_i32(a->cg, l);
    LLVMValueRef iota = LLVMConstVector(e, (unsigned)a->W);
    LLVMValueRef s = LLVMBuildInsertElement(B, LLVMGetUndef(a->IT), j0, cg_i32(a->cg, 0), "");
    s = LLVMBuildShuffleVector(B, s, LLVMGetUndef(a->IT), LLVMConstNull(a->IT), "");
    jv = LLVMBuildAdd(B, s, iota, "j");
  }
  LLVMValueRef lim;
  LLVMIntPredicate pred;
  if (a->causal) lim = LLVMBuildTrunc(B, i, a->cg->t_i32, ""), pred = LLVMIntSLE;
  else lim = cg_i32(a->cg, (int32_t)a->L.S), pred = LLVMIntSLT;
  if (a->W > 1) {
    LLVMValueRef s = LLVMBuildInsertElement(B, LLVMGetUndef(a->IT), lim, cg_i32(a->cg, 0), "");
    lim = LLVMBuildShuffleVector(B, s, LLVMGetUndef(a->IT), LLVMConstNull(a->IT), "");
  }
  return LLVMBuildICmp(B, pred, jv, lim, "valid");
}

/* out[oi ..] = alpha out[oi ..] + sum over t in [t0, t1) of coef[t cs + cj] row(t), row(t)
 * the n elements at src[(rbase + t) n] (a tensor row: its tail vector masked) and out a
 * row of the scratch padded to whole vectors; ATTN_CH vectors at a time in registers. */
typedef struct {
  LLVMValueRef out, oi;         /* the output row in the scratch */
  LLVMValueRef alpha;           /* scalar, or NULL: 1 */
  LLVMValueRef coef, cs, cj;    /* coefficient of term t: coef[t cs + cj] */
  LLVMValueRef src, rbase;      /* row t: src[(rbase + t) n ..] */
  LLVMValueRef t0, t1;
} RowAcc;

static void row_acc(Attn *a, const RowAcc *r, int64_t n) {
  int64_t nvr = nvec(a, n);
  for (int64_t u0 = 0; u0 < nvr; u0 += ATTN_CH) {
    int64_t nu = nvr - u0 < ATTN_CH ? nvr - u0 : ATTN_CH;
    LLVMValueRef acc[ATTN_CH];
    for (int64_t u = 0; u < nu; u++) {
      LLVMValueRef init = ldv(a, r->out, add(a, r->oi, k64(a, (u0 + u) * a->W)));
      if (r->alpha) init = LLVMBuildFMul(a->cg->B, init, splat(a, r->alpha), "");
      acc[u] = var(a, a->T, init, "acc");
    }
    CgLoop lt = cg_loop_begin(a->cg, r->t0, r->t1, k64(a, 1));
    LLVMValueRef c = splat(a, lds(a, r->coef, add(a, mul(a, lt.iv, r->cs), r->cj)));
    LLVMValueRef ri = mul(a, add(a, r->rbase, lt.iv), k64(a, n));
    for (int64_t u = 0; u < nu; u++) set(a, acc[u], fmadd(a, c, ld_row(a, r->src, ri, u0 + u, n), get(a, a->T, acc[u])));
    cg_loop_end(a->cg, &lt);
    for (int64_t u = 0; u < nu; u++) cg_store(a->cg, get(a, a->T, acc[u]), r->out, add(a, r->oi, k64(a, (u0 + u) * a->W)));
  }
}

/* dst[di + c] = scale * src[si + c] for c < n (src a padded scratch row, dst a tensor row) */
static void scale_row(Attn *a, LLVMValueRef dst, LLVMValueRef di, LLVMValueRef src, LLVMValueRef si, int64_t n,
                      LLVMValueRef scale) {
  for (int64_t u = 0; u < nvec(a, n); u++) {
    LLVMValueRef x = ldv(a, src, add(a, si, k64(a, u * a->W)));
    if (scale) x = LLVMBuildFMul(a->cg->B, x, splat(a, scale), "");
    st_row(a, x, dst, di, u, n);
  }
}

static void fill0(Attn *a, LLVMValueRef dst, LLVMValueRef n) {
  CgLoop l = cg_loop_begin(a->cg, k64(a, 0), n, k64(a, a->W));   /* n a multiple of W */
  cg_store(a->cg, fk(a, a->T, 0.0), dst, l.iv);
  cg_loop_end(a->cg, &l);
}

/* ------------------------------------------------------------------ forward */

/* Work item w = bh * nqb + qb: query rows [qb BR, +br) of slice bh. */
static void fwd_item(Attn *a, LLVMValueRef w, LLVMValueRef sc) {
  Cg *cg = a->cg;
  LLVMBuilderRef B = cg->B;
  const AttnLayout *L = &a->L;
  int64_t nqb = (L->T + ATTN_BR - 1) / ATTN_BR;
  LLVMValueRef bh = LLVMBuildUDiv(B, w, k64(a, nqb), "bh"), qb = LLVMBuildURem(B, w, k64(a, nqb), "qb");
  LLVMValueRef i0 = mul(a, qb, k64(a, ATTN_BR));
  LLVMValueRef br = imin(a, k64(a, ATTN_BR), sub(a, k64(a, L->T), i0));
  LLVMValueRef q = at(a, a->p[AP_Q], mul(a, bh, k64(a, L->T * L->dh)));
  LLVMValueRef k = at(a, a->p[AP_K], mul(a, bh, k64(a, L->S * L->dh)));
  LLVMValueRef v = at(a, a->p[AP_V], mul(a, bh, k64(a, L->S * L->dv)));
  LLVMValueRef o = at(a, a->p[AP_O], mul(a, bh, k64(a, L->T * L->dv)));
  LLVMValueRef lse = a->p[AP_LSE] ? at(a, a->p[AP_LSE], mul(a, bh, k64(a, L->T))) : NULL;
  LLVMValueRef kt = at(a, sc, k64(a, L->kt)), pr = at(a, sc, k64(a, L->pr)), acc = at(a, sc, k64(a, L->acc));
  LLVMValueRef ms = at(a, sc, k64(a, L->m)), ls = at(a, sc, k64(a, L->l));
  LLVMTypeRef E = a->E;
  /* m = -inf, l = 0, acc = 0 for the block's rows */
  CgLoop lr = cg_loop_begin(cg, k64(a, 0), br, k64(a, 1));
  cg_store(cg, fk(a, E, -INFINITY), ms, lr.iv);
  cg_store(cg, fk(a, E, 0.0), ls, lr.iv);
  cg_loop_end(cg, &lr);
  fill0(a, acc, mul(a, br, k64(a, L->dvp)));
  /* key blocks: all of them, or up to the block's last query when causal */
  LLVMValueRef kend = a->causal ? imin(a, k64(a, L->S), add(a, i0, br)) : k64(a, L->S);
  CgLoop lk = cg_loop_begin(cg, k64(a, 0), kend, k64(a, a->Bc));
  LLVMValueRef kb = lk.iv;
  LLVMValueRef bc = imin(a, k64(a, a->Bc), sub(a, kend, kb));
  transpose_block(a, kt, k, kb, bc, L->dh);
  CgLoop li = cg_loop_begin(cg, k64(a, 0), br, k64(a, 1));
  LLVMValueRef r = li.iv, i = add(a, i0, r);
  LLVMValueRef s[ATTN_BCS], valid[ATTN_BCS];
  score_row(a, q, mul(a, i, k64(a, L->dh)), kt, L->dh, s);
  LLVMValueRef ninf = fk(a, a->T, -INFINITY), scale = fk(a, a->T, a->scale);
  LLVMValueRef mb = NULL;
  for (int c = 0; c < a->nv; c++) {
    valid[c] = valid_lanes(a, kb, c, i);
    s[c] = LLVMBuildSelect(B, valid[c], LLVMBuildFMul(B, s[c], scale, ""), ninf, "");
    mb = c ? cg_max_f(cg, mb, s[c]) : s[c];
  }
  LLVMValueRef mo = lds(a, ms, r);
  LLVMValueRef mn = cg_max_f(cg, mo, cg_hmax(cg, mb));
  /* a row with no key yet (mn = -inf) has p = 0 and alpha = 0 */
  LLVMValueRef empty = LLVMBuildFCmp(B, LLVMRealOEQ, mn, fk(a, E, -INFINITY), "");
  LLVMValueRef msafe = LLVMBuildSelect(B, empty, fk(a, E, 0.0), mn, "");
  LLVMValueRef alpha = LLVMBuildSelect(B, LLVMBuildFCmp(B, LLVMRealOEQ, mo, fk(a, E, -INFINITY), ""), fk(a, E, 0.0),
                                       cg_exp(cg, LLVMBuildFSub(B, mo, msafe, "")), "alpha");
  LLVMValueRef psum = NULL;
  for (int c = 0; c < a->nv; c++) {
    LLVMValueRef e = cg_exp(cg, LLVMBuildFSub(B, s[c], splat(a, msafe), ""));
    LLVMValueRef pc = LLVMBuildSelect(B, valid[c], e, fk(a, a->T, 0.0), "p");
    cg_store(cg, pc, pr, k64(a, c * a->W));
    psum = c ? LLVMBuildFAdd(B, psum, pc, "") : pc;
  }
  LLVMValueRef lo = lds(a, ls, r);
  cg_store(cg, LLVMBuildFAdd(B, LLVMBuildFMul(B, lo, alpha, ""), cg_hsum(cg, psum), ""), ls, r);
  cg_store(cg, mn, ms, r);
  /* acc = alpha acc + sum_j p_j v[kb + j], j < bc (and j <= i when causal) */
  LLVMValueRef jn = a->causal ? imin(a, bc, add(a, sub(a, i, kb), k64(a, 1))) : bc;
  RowAcc ra = {acc, mul(a, r, k64(a, L->dvp)), alpha, pr, k64(a, 1), k64(a, 0), v, kb, k64(a, 0), jn};
  row_acc(a, &ra, L->dv);
  cg_loop_end(cg, &li);
  cg_loop_end(cg, &lk);
  /* o = acc / l, lse = m + log l */
  lr = cg_loop_begin(cg, k64(a, 0), br, k64(a, 1));
  i = add(a, i0, lr.iv);
  LLVMValueRef l = lds(a, ls, lr.iv);
  scale_row(a, o, mul(a, i, k64(a, L->dv)), acc, mul(a, lr.iv, k64(a, L->dvp)), L->dv,
            LLVMBuildFDiv(B, fk(a, E, 1.0), l, "inv"));
  if (lse) cg_store(cg, LLVMBuildFAdd(B, lds(a, ms, lr.iv), cg_log(cg, l), ""), lse, i);
  cg_loop_end(cg, &lr);
}

/* ------------------------------------------------------------------ backward */

/* Work item bh: dq, dk, dv of slice bh. */
static void bwd_item(Attn *a, LLVMValueRef bh, LLVMValueRef sc) {
  Cg *cg = a->cg;
  LLVMBuilderRef B = cg->B;
  const AttnLayout *L = &a->L;
  LLVMTypeRef E = a->E;
  LLVMValueRef qo = mul(a, bh, k64(a, L->T * L->dh)), ko = mul(a, bh, k64(a, L->S * L->dh));
  LLVMValueRef vo = mul(a, bh, k64(a, L->S * L->dv)), oo = mul(a, bh, k64(a, L->T * L->dv));
  LLVMValueRef q = at(a, a->p[AP_Q], qo), k = at(a, a->p[AP_K], ko), v = at(a, a->p[AP_V], vo);
  LLVMValueRef o = at(a, a->p[AP_O], oo), dO = at(a, a->p[AP_DO], oo);
  LLVMValueRef lse = at(a, a->p[AP_LSE], mul(a, bh, k64(a, L->T)));
  LLVMValueRef dq = at(a, a->p[AP_DQ], qo);
  LLVMValueRef dk = a->p[AP_DK] ? at(a, a->p[AP_DK], ko) : NULL;
  LLVMValueRef dv = a->p[AP_DV] ? at(a, a->p[AP_DV], vo) : NULL;
  LLVMValueRef kt = at(a, sc, k64(a, L->kt)), vt = at(a, sc, k64(a, L->vt));
  LLVMValueRef P = at(a, sc, k64(a, L->pr)), DS = at(a, sc, k64(a, L->ds));
  LLVMValueRef dka = at(a, sc, k64(a, L->dka)), dva = at(a, sc, k64(a, L->dva)), D = at(a, sc, k64(a, L->dd));
  LLVMValueRef scale = fk(a, E, a->scale);
  /* D[i] = sum_c do[i,c] o[i,c]; dq = 0 */
  CgLoop li = cg_loop_begin(cg, k64(a, 0), k64(a, L->T), k64(a, 1));
  LLVMValueRef ri = mul(a, li.iv, k64(a, L->dv)), dsum = NULL;
  for (int64_t u = 0; u < nvec(a, L->dv); u++) {
    LLVMValueRef x = LLVMBuildFMul(B, ld_row(a, dO, ri, u, L->dv), ld_row(a, o, ri, u, L->dv), "");
    dsum = u ? LLVMBuildFAdd(B, dsum, x, "") : x;
  }
  cg_store(cg, cg_hsum(cg, dsum), D, li.iv);
  for (int64_t u = 0; u < nvec(a, L->dh); u++) st_row(a, fk(a, a->T, 0.0), dq, mul(a, li.iv, k64(a, L->dh)), u, L->dh);
  cg_loop_end(cg, &li);
  /* key blocks */
  CgLoop lk = cg_loop_begin(cg, k64(a, 0), k64(a, L->S), k64(a, a->Bc));
  LLVMValueRef kb = lk.iv;
  LLVMValueRef bc = imin(a, k64(a, a->Bc), sub(a, k64(a, L->S), kb));
  transpose_block(a, kt, k, kb, bc, L->dh);
  transpose_block(a, vt, v, kb, bc, L->dv);
  if (dk) fill0(a, dka, k64(a, a->Bc * L->dhp));
  if (dv) fill0(a, dva, k64(a, a->Bc * L->dvp));
  /* query blocks that see this key block: all, or from the block holding query kb */
  LLVMValueRef qs = a->causal ? mul(a, LLVMBuildUDiv(B, kb, k64(a, ATTN_BR), ""), k64(a, ATTN_BR)) : k64(a, 0);
  CgLoop lq = cg_loop_begin(cg, qs, k64(a, L->T), k64(a, ATTN_BR));
  LLVMValueRef qb = lq.iv;
  LLVMValueRef br = imin(a, k64(a, ATTN_BR), sub(a, k64(a, L->T), qb));
  /* 1. p and ds of the block's rows */
  CgLoop lr = cg_loop_begin(cg, k64(a, 0), br, k64(a, 1));
  LLVMValueRef r = lr.iv, i = add(a, qb, r);
  LLVMValueRef s[ATTN_BCS], dp[ATTN_BCS];
  score_row(a, q, mul(a, i, k64(a, L->dh)), kt, L->dh, s);
  score_row(a, dO, mul(a, i, k64(a, L->dv)), vt, L->dv, dp);
  LLVMValueRef li_ = splat(a, lds(a, lse, i)), di = splat(a, lds(a, D, i));
  LLVMValueRef rbase = mul(a, r, k64(a, ATTN_BCS));
  for (int c = 0; c < a->nv; c++) {
    LLVMValueRef valid = valid_lanes(a, kb, c, i);
    LLVMValueRef e = cg_exp(cg, LLVMBuildFSub(B, LLVMBuildFMul(B, s[c], splat(a, scale), ""), li_, ""));
    LLVMValueRef pc = LLVMBuildSelect(B, valid, e, fk(a, a->T, 0.0), "p");
    /* masked lanes: 0 (the scratch past the block may hold anything, and 0 * inf is NaN) */
    LLVMValueRef dsc = LLVMBuildSelect(B, valid, LLVMBuildFMul(B, pc, LLVMBuildFSub(B, dp[c], di, ""), ""),
                                       fk(a, a->T, 0.0), "ds");
    cg_store(cg, pc, P, add(a, rbase, k64(a, c * a->W)));
    cg_store(cg, dsc, DS, add(a, rbase, k64(a, c * a->W)));
  }
  cg_loop_end(cg, &lr);
  /* 2. dV[j] += sum_r p[r,j] do[qb + r], dK[j] += sum_r ds[r,j] q[qb + r]; rows r with
   *    qb + r >= kb + j when causal (the others have p = 0) */
  if (dk || dv) {
    CgLoop lj = cg_loop_begin(cg, k64(a, 0), bc, k64(a, 1));
    LLVMValueRef j = lj.iv;
    LLVMValueRef r0 = a->causal ? imax(a, k64(a, 0), sub(a, add(a, kb, j), qb)) : k64(a, 0);
    if (dv) {
      RowAcc ra = {dva, mul(a, j, k64(a, L->dvp)), NULL, P, k64(a, ATTN_BCS), j, dO, qb, r0, br};
      row_acc(a, &ra, L->dv);
    }
    if (dk) {
      RowAcc ra = {dka, mul(a, j, k64(a, L->dhp)), NULL, DS, k64(a, ATTN_BCS), j, q, qb, r0, br};
      row_acc(a, &ra, L->dh);
    }
    cg_loop_end(cg, &lj);
  }
  /* 3. dq[i] += scale sum_j ds[r,j] k[kb + j], j < bc (and j <= i when causal) */
  lr = cg_loop_begin(cg, k64(a, 0), br, k64(a, 1));
  r = lr.iv, i = add(a, qb, r);
  LLVMValueRef jn = a->causal ? imin(a, bc, add(a, sub(a, i, kb), k64(a, 1))) : bc;
  {
    /* dq row += scale * (sum_j ds k_j): the sum in registers, then one update of the row */
    int64_t nvr = nvec(a, L->dh);
    for (int64_t u0 = 0; u0 < nvr; u0 += ATTN_CH) {
      int64_t nu = nvr - u0 < ATTN_CH ? nvr - u0 : ATTN_CH;
      LLVMValueRef acc[ATTN_CH];
      for (int64_t u = 0; u < nu; u++) acc[u] = var(a, a->T, fk(a, a->T, 0.0), "dq");
      CgLoop lj = cg_loop_begin(cg, k64(a, 0), jn, k64(a, 1));
      LLVMValueRef c = splat(a, lds(a, DS, add(a, mul(a, r, k64(a, ATTN_BCS)), lj.iv)));
      LLVMValueRef kr = mul(a, add(a, kb, lj.iv), k64(a, L->dh));
      for (int64_t u = 0; u < nu; u++) set(a, acc[u], fmadd(a, c, ld_row(a, k, kr, u0 + u, L->dh), get(a, a->T, acc[u])));
      cg_loop_end(cg, &lj);
      LLVMValueRef qi = mul(a, i, k64(a, L->dh));
      for (int64_t u = 0; u < nu; u++) {
        LLVMValueRef old = ld_row(a, dq, qi, u0 + u, L->dh);
        st_row(a, fmadd(a, get(a, a->T, acc[u]), splat(a, scale), old), dq, qi, u0 + u, L->dh);
      }
    }
  }
  cg_loop_end(cg, &lr);
  cg_loop_end(cg, &lq);
  /* dk = scale dK, dv = dV for the block's keys */
  CgLoop lj = cg_loop_begin(cg, k64(a, 0), bc, k64(a, 1));
  LLVMValueRef j = lj.iv, kj = add(a, kb, j);
  if (dk) scale_row(a, dk, mul(a, kj, k64(a, L->dh)), dka, mul(a, j, k64(a, L->dhp)), L->dh, scale);
  if (dv) scale_row(a, dv, mul(a, kj, k64(a, L->dv)), dva, mul(a, j, k64(a, L->dvp)), L->dv, NULL);
  cg_loop_end(cg, &lj);
  cg_loop_end(cg, &lk);
}

/* ------------------------------------------------------------------ the task */

/* void task(ctx, c0, c1, tid): chunks [c0, c1) of nch, chunk c runs items
 * [c nwork / nch, (c + 1) nwork / nch) on the scratch of chunk c.
 * ctx = {ptr p[AP__COUNT], i64 nch, i64 nwork}. */
static LLVMTypeRef ctx_type(Cg *cg) {
  LLVMTypeRef f[AP__COUNT + 2];
  for (int i = 0; i < AP__COUNT; i++) f[i] = cg->t_ptr;
  f[AP__COUNT] = f[AP__COUNT + 1] = cg->t_i64;
  return LLVMStructTypeInContext(cg->C, f, AP__COUNT + 2, 0);
}

static LLVMValueRef build_task(Attn *a, const bool *have) {
  Cg *cg = a->cg;
  LLVMBuilderRef B = cg->B;
  LLVMTypeRef ct = ctx_type(cg);
  LLVMValueRef fn = cg_new_function(cg, a->bwd ? "bpcc_attention_bwd_task" : "bpcc_attention_task", cg->t_task, true);
  cg->fn = fn;
  LLVMPositionBuilderAtEnd(B, LLVMAppendBasicBlockInContext(cg->C, fn, "entry"));
  LLVMValueRef ctx = LLVMGetParam(fn, 0);
  for (unsigned f = 0; f < AP__COUNT; f++)
    a->p[f] = have[f] ? LLVMBuildLoad2(B, cg->t_ptr, LLVMBuildStructGEP2(B, ct, ctx, f, ""), "") : NULL;
  LLVMValueRef nch = LLVMBuildLoad2(B, cg->t_i64, LLVMBuildStructGEP2(B, ct, ctx, AP__COUNT, ""), "nch");
  LLVMValueRef nwork = LLVMBuildLoad2(B, cg->t_i64, LLVMBuildStructGEP2(B, ct, ctx, AP__COUNT + 1, ""), "nwork");
  cg->frame = a->p[AP_FRAME];
  CgLoop lc = cg_loop_begin(cg, LLVMGetParam(fn, 1), LLVMGetParam(fn, 2), k64(a, 1));
  LLVMValueRef c = lc.iv;
  LLVMValueRef sc = at(a, a->p[AP_SCRATCH], mul(a, c, k64(a, cg_gemm_pack_floats(cg))));
  LLVMValueRef w0 = LLVMBuildSDiv(B, mul(a, c, nwork), nch, "");
  LLVMValueRef w1 = LLVMBuildSDiv(B, mul(a, add(a, c, k64(a, 1)), nwork), nch, "");
  CgLoop lw = cg_loop_begin(cg, w0, w1, k64(a, 1));
  if (a->bwd) bwd_item(a, lw.iv, sc);
  else fwd_item(a, lw.iv, sc);
  cg_loop_end(cg, &lw);
  cg_loop_end(cg, &lc);
  LLVMBuildRetVoid(B);
  return fn;
}

bool cg_kernel_attention(Cg *cg, Func *f, const int32_t *members, int n, const CgVal *vals) {
  int32_t v = members[0];
  const Inst *in = &f->insts[v];
  if (in->op != OP_ATTENTION && in->op != OP_ATTENTION_BWD)
    ir_die("cg_kernel_attention: %%%d is %s", (int)v, ir_ops[in->op].name);
  Attn a;
  memset(&a, 0, sizeof a);
  a.cg = cg, a.in = in;
  attn_layout(f, in, &a.L);
  if (a.L.total > cg_gemm_pack_floats(cg))
    ir_die("cg_kernel_attention: %lld scratch elements, the chunk has %lld", (long long)a.L.total,
           (long long)cg_gemm_pack_floats(cg));
  a.bwd = in->op == OP_ATTENTION_BWD;
  a.causal = in->iattr[0] != 0;
  a.scale = in->fattr[0];
  a.W = cg->W;
  a.E = cg->t_f32;
  a.T = cg->t_vec;
  a.IT = a.W > 1 ? LLVMVectorType(cg->t_i32, (unsigned)a.W) : cg->t_i32;
  /* four vectors of keys per block (64 f32 with AVX-512), fewer when S is short */
  a.Bc = 4 * a.W > ATTN_BCS ? ATTN_BCS : 4 * a.W;
  int64_t sv = rup(a.L.S, a.W);
  if (sv < a.Bc) a.Bc = (int)sv;
  a.nv = a.Bc / a.W;
  /* the pointers: operands, the result, the extras the plan computes */
  LLVMValueRef ptr[AP__COUNT];
  bool have[AP__COUNT];
  memset(ptr, 0, sizeof ptr);
  for (int k = 0; k < in->nargs; k++)
    if (!vals[in->args[k]].ptr) ir_die("cg_kernel_attention: operand %d of %%%d has no buffer", k, (int)v);
  ptr[AP_FRAME] = cg->frame;
  ptr[AP_Q] = vals[in->args[0]].ptr, ptr[AP_K] = vals[in->args[1]].ptr, ptr[AP_V] = vals[in->args[2]].ptr;
  ptr[AP_SCRATCH] = cg->gemm_pack;
  if (!vals[v].ptr) ir_die("cg_kernel_attention: %%%d has no buffer", (int)v);
  if (a.bwd) {
    ptr[AP_O] = vals[in->args[3]].ptr, ptr[AP_LSE] = vals[in->args[4]].ptr, ptr[AP_DO] = vals[in->args[5]].ptr;
    ptr[AP_DQ] = vals[v].ptr;
  } else {
    ptr[AP_O] = vals[v].ptr;
  }
  for (int m = 1; m < n; m++) {
    const Inst *e = &f->insts[members[m]];
    if (e->op != OP_EXTRA || e->args[0] != v) ir_die("cg_kernel_attention: member %%%d is not an extra of %%%d", members[m], (int)v);
    int slot = a.bwd ? (e->iattr[0] == 1 ? AP_DK : AP_DV) : AP_LSE;
    ptr[slot] = vals[members[m]].ptr;
  }
  for (int k = 0; k < AP__COUNT; k++) have[k] = ptr[k] != NULL;

  /* the task function, built on the side */
  LLVMBuilderRef B = cg->B;
  LLVMBasicBlockRef here = LLVMGetInsertBlock(B);
  LLVMValueRef caller = cg->fn, frame = cg->frame;
  LLVMMetadataRef loc = LLVMGetCurrentDebugLocation2(B);
  LLVMSetCurrentDebugLocation2(B, NULL);
  LLVMValueRef task = build_task(&a, have);
  cg->fn = caller;
  cg->frame = frame;
  LLVMPositionBuilderAtEnd(B, here);
  LLVMSetCurrentDebugLocation2(B, loc);

  /* items: forward bh x query blocks, backward bh; chunks: one per thread at most */
  const TensorType *qt = vals[in->args[0]].t;
  LLVMValueRef bh = cg_dims_prod(cg, qt, 0, qt->rank - 2);
  int64_t nqb = (a.L.T + ATTN_BR - 1) / ATTN_BR;
  LLVMValueRef nwork = a.bwd ? bh : LLVMBuildMul(B, bh, cg_i64(cg, nqb), "");
  int64_t macs = a.L.T * a.L.S * (a.L.dh + a.L.dv);
  LLVMValueRef nth = LLVMBuildSExt(B, cg_frame_field(cg, CG_FR_NTHREADS), cg->t_i64, "");
  LLVMValueRef par = LLVMBuildAnd(B, LLVMBuildICmp(B, LLVMIntSGT, nth, cg_i64(cg, 1), ""),
                                  LLVMBuildICmp(B, LLVMIntSGT, nwork, cg_i64(cg, 1), ""), "");
  par = LLVMBuildAnd(B, par, LLVMBuildICmp(B, LLVMIntSGE, LLVMBuildMul(B, bh, cg_i64(cg, macs), ""),
                                           cg_i64(cg, ATTN_PARALLEL_MACS), ""), "par");
  LLVMValueRef nch = cg_min_i64(cg, cg_min_i64(cg, nth, cg_i64(cg, cg->gemm_chunks)), nwork);
  nch = LLVMBuildSelect(B, par, nch, cg_i64(cg, 1), "nch");
  LLVMTypeRef ct = ctx_type(cg);
  LLVMValueRef ctx = cg_alloca(cg, ct, "attnctx");
  for (unsigned k = 0; k < AP__COUNT; k++)
    LLVMBuildStore(B, ptr[k] ? ptr[k] : LLVMConstNull(cg->t_ptr), LLVMBuildStructGEP2(B, ct, ctx, k, ""));
  LLVMBuildStore(B, nch, LLVMBuildStructGEP2(B, ct, ctx, AP__COUNT, ""));
  LLVMBuildStore(B, nwork, LLVMBuildStructGEP2(B, ct, ctx, AP__COUNT + 1, ""));
  cg_run_task(cg, par, nch, cg_i64(cg, 1), task, ctx, cg_i64(cg, 1));
  return true;
}
