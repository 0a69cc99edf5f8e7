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
 * Forward, per (bh, block of BR query rows): for each block of Bc = 4 W keys (only the
 * blocks at or below the diagonal when causal), K's block is transposed into the
 * scratch (Kt[d][j], W x W tiles in registers) so that a query row's Bc scores are four
 * vectors of multiply-adds over d (broadcast q[i,d] times a row of Kt). Rows go in
 * register blocks of RB = 4 (2 with 16 vector registers): 16 independent accumulator
 * chains that share each row of Kt, where one row's four chains would wait on the
 * multiply-add's latency. With the mask, the rows that see only the first c vectors of
 * the block (query - kb < c W) run in a loop of their own that computes c, and rows
 * before the block's first key are skipped. Each row keeps the online softmax state: its
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
 * min(threads, GEMM chunks, items) consecutive ranges, one task each, and every range
 * uses the scratch of its chunk in the GEMM pack area at the front of the workspace (its
 * size is cg_attention_scratch_floats, which cg_gemm_pack_sizes folds in). Each output
 * element is computed by one item in a fixed order, so results are bit-identical for
 * every thread count. Nothing is allocated in the step.
 *
 * Rows of q, k, v, o, do whose length is not a multiple of W are read and written with
 * masked vector loads and stores (llvm.masked.load / store: the lanes past the row are
 * neither read nor written). Masked score lanes take exp(0) and are then replaced by 0:
 * exp of -inf (or of any large negative number) runs the polynomial through subnormals,
 * a microcode assist per operation that made the first version three times slower. Sums
 * run in the model's element type (float, or double in an f64 model). */
#include <math.h>
#include <string.h>

#include "codegen/cg.h"

#define ATTN_BR 64       /* query rows per block */
#define ATTN_BCS 64      /* the scratch's row stride: keys per block at most */
#define ATTN_PAD 16      /* every scratch row and region padded to 16 elements */
#define ATTN_RB 4        /* rows per register block at most */
#define ATTN_NV 4        /* score vectors per row at most (a key block is four vectors) */
#define ATTN_ACC 16      /* accumulator vectors at most */
/* below this many multiply-adds an attention runs on the calling thread */
#define ATTN_PARALLEL_MACS (1 << 16)

static int64_t rup(int64_t n, int64_t m) { return (n + m - 1) / m * m; }

/* The geometry of one attention instruction and where its scratch regions start (in
 * elements from the chunk's base). */
typedef struct {
  int rank;
  int64_t T, S, dh, dv;
  int64_t dhp, dvp;                 /* dh, dv rounded up to ATTN_PAD */
  int64_t kt, pr, acc, m, l;        /* forward: Kt[dh][BCS], p[RB][BCS], acc[BR][dvp], m[BR], l[BR] */
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
    REGION(pr, ATTN_RB * ATTN_BCS);
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
  int RB;                 /* rows per register block */
  int acc_regs;           /* vector accumulators a row block keeps in registers */
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

/* void bpcc_attn_transpose(float *src, i64 ss, float *dst, i64 ds, i64 rows, i64 cols):
 * dst[c ds + r] = src[r ss + c] for r < rows, c < cols (both <= W), and 0 for rows <= r
 * < W: W rows of the source loaded as vectors (masked), transposed in registers in
 * log2(W) stages (rows i and i + b, i & b == 0, exchange their off-diagonal b-blocks:
 * x'[c] = c & b ? y[c - b] : x[c], y'[c] = c & b ? y[c] : x[c + b]), the first `cols`
 * of them stored whole. One function for every block of the module. */
static LLVMValueRef transpose_fn(Attn *a) {
  Cg *cg = a->cg;
  LLVMValueRef fn = LLVMGetNamedFunction(cg->M, "bpcc_attn_transpose");
  if (fn) return fn;
  LLVMBuilderRef B = cg->B;
  LLVMBasicBlockRef here = LLVMGetInsertBlock(B);
  LLVMValueRef caller = cg->fn;
  LLVMTypeRef args[6] = {cg->t_ptr, cg->t_i64, cg->t_ptr, cg->t_i64, cg->t_i64, cg->t_i64};
  fn = cg_new_function(cg, "bpcc_attn_transpose", LLVMFunctionType(cg->t_void, args, 6, 0), true);
  LLVMAddAttributeAtIndex(fn, LLVMAttributeFunctionIndex,
                          LLVMCreateEnumAttribute(cg->C, LLVMGetEnumAttributeKindForName("noinline", 8), 0));
  cg->fn = fn;
  LLVMPositionBuilderAtEnd(B, LLVMAppendBasicBlockInContext(cg->C, fn, "entry"));
  LLVMValueRef src = LLVMGetParam(fn, 0), ss = LLVMGetParam(fn, 1), dst = LLVMGetParam(fn, 2);
  LLVMValueRef ds = LLVMGetParam(fn, 3), rows = LLVMGetParam(fn, 4), cols = LLVMGetParam(fn, 5);
  int W = a->W;
  LLVMTypeRef lty;
  LLVMValueRef lfn = masked_intrinsic(a, "llvm.masked.load", &lty);
  LLVMTypeRef VI = LLVMVectorType(cg->t_i64, (unsigned)W);
  LLVMValueRef iota[64];
  for (int c = 0; c < W; c++) iota[c] = cg_i64(cg, c);
  LLVMValueRef colmask = LLVMBuildICmp(B, LLVMIntSLT, LLVMConstVector(iota, (unsigned)W), cg_splat(cg, cols, VI), "");
  LLVMValueRef zero = fk(a, a->T, 0.0), r[64];
  for (int i = 0; i < W; i++) {
    LLVMValueRef have = LLVMBuildICmp(B, LLVMIntSLT, cg_i64(cg, i), rows, "");
    LLVMValueRef m = LLVMBuildAnd(B, colmask, cg_splat(cg, have, LLVMVectorType(cg->t_i1, (unsigned)W)), "");
    LLVMValueRef la[4] = {at(a, src, mul(a, cg_i64(cg, i), ss)), cg_i32(cg, 4), m, zero};
    r[i] = LLVMBuildCall2(B, lty, lfn, la, 4, "");
  }
  cg_reg_transpose(cg, r, W);
  for (int i = 0; i < W; i++) {
    LLVMBasicBlockRef join = cg_if_begin(cg, LLVMBuildICmp(B, LLVMIntSLT, cg_i64(cg, i), cols, ""));
    cg_store(cg, r[i], dst, mul(a, cg_i64(cg, i), ds));
    cg_if_end(cg, join);
  }
  LLVMBuildRetVoid(B);
  cg->fn = caller;
  LLVMPositionBuilderAtEnd(B, here);
  return fn;
}

/* Kt[d][j] = src[(kb + j) n + d] for j < bc, d < n, and 0 for bc <= j < bc rounded up to
 * W: a block of keys (or values) with the key index along the rows of the scratch, in
 * W x W tiles transposed in registers (element by element with one lane). */
static void transpose_block(Attn *a, LLVMValueRef dst, LLVMValueRef src, LLVMValueRef kb, LLVMValueRef bc, int64_t n) {
  Cg *cg = a->cg;
  if (a->W == 1) {
    CgLoop lj = cg_loop_begin(cg, k64(a, 0), bc, k64(a, 1));
    LLVMValueRef row = mul(a, add(a, kb, lj.iv), k64(a, n));
    CgLoop ld = cg_loop_begin(cg, k64(a, 0), k64(a, n), k64(a, 1));
    cg_store(cg, lds(a, src, add(a, row, ld.iv)), dst, add(a, mul(a, ld.iv, k64(a, ATTN_BCS)), lj.iv));
    cg_loop_end(cg, &ld);
    cg_loop_end(cg, &lj);
    return;
  }
  LLVMValueRef t = transpose_fn(a);
  CgLoop lj = cg_loop_begin(cg, k64(a, 0), bc, k64(a, a->W));
  LLVMValueRef rows = imin(a, k64(a, a->W), sub(a, bc, lj.iv));
  for (int64_t d0 = 0; d0 < n; d0 += a->W) {
    LLVMValueRef args[6] = {at(a, src, add(a, mul(a, add(a, kb, lj.iv), k64(a, n)), k64(a, d0))), k64(a, n),
                            at(a, dst, add(a, k64(a, d0 * ATTN_BCS), lj.iv)), k64(a, ATTN_BCS), rows,
                            k64(a, n - d0 < a->W ? n - d0 : a->W)};
    LLVMBuildCall2(cg->B, LLVMGlobalGetValueType(t), t, args, 6, "");
  }
  cg_loop_end_hint(cg, &lj, CG_LOOP_NO_VECTORIZE | CG_LOOP_NO_UNROLL);
}

/* s[b][c] = sum_d x[xi + b xs + d] Kt[d][c W ..]: the first nvr score vectors of nb rows
 * (x the rows' queries, or their do against V's transpose). The nb nvr accumulators are
 * independent chains (one chain per vector would wait on the multiply-add's latency). */
static void score_rows(Attn *a, LLVMValueRef x, LLVMValueRef xi, int64_t xs, int nb, LLVMValueRef kt, int64_t n, int nvr,
                       LLVMValueRef s[ATTN_RB][ATTN_NV]) {
  LLVMValueRef acc[ATTN_RB][ATTN_NV];
  for (int b = 0; b < nb; b++)
    for (int c = 0; c < nvr; c++) acc[b][c] = var(a, a->T, fk(a, a->T, 0.0), "s");
  CgLoop ld = cg_loop_begin(a->cg, k64(a, 0), k64(a, n), k64(a, 1));
  LLVMValueRef base = mul(a, ld.iv, k64(a, ATTN_BCS)), kv[ATTN_NV];
  for (int c = 0; c < nvr; c++) kv[c] = ldv(a, kt, add(a, base, k64(a, c * a->W)));
  for (int b = 0; b < nb; b++) {
    LLVMValueRef xd = splat(a, lds(a, x, add(a, xi, add(a, k64(a, b * xs), ld.iv))));
    for (int c = 0; c < nvr; c++) set(a, acc[b][c], fmadd(a, xd, kv[c], get(a, a->T, acc[b][c])));
  }
  cg_loop_end(a->cg, &ld);
  for (int b = 0; b < nb; b++)
    for (int c = 0; c < nvr; c++) s[b][c] = get(a, a->T, acc[b][c]);
}

/* max(x, y) as x > y ? x : y (one vmaxps; the scores hold no NaN but from NaN inputs) */
static LLVMValueRef fmax2(Attn *a, LLVMValueRef x, LLVMValueRef y) {
  return LLVMBuildSelect(a->cg->B, LLVMBuildFCmp(a->cg->B, LLVMRealOGT, x, y, ""), x, y, "");
}

/* The largest lane of v: a tree of halves (llvm.vector.reduce.fmax is a NaN-aware
 * chain of scalar steps, the critical path of a row). */
static LLVMValueRef hmax_tree(Attn *a, LLVMValueRef v) {
  LLVMBuilderRef B = a->cg->B;
  for (int w = a->W; w > 1; w /= 2) {
    LLVMValueRef lo[32], hi[32];
    for (int l = 0; l < w / 2; l++) lo[l] = cg_i32(a->cg, l), hi[l] = cg_i32(a->cg, w / 2 + l);
    LLVMValueRef x = LLVMBuildShuffleVector(B, v, LLVMGetUndef(LLVMTypeOf(v)), LLVMConstVector(lo, (unsigned)(w / 2)), "");
    LLVMValueRef y = LLVMBuildShuffleVector(B, v, LLVMGetUndef(LLVMTypeOf(v)), LLVMConstVector(hi, (unsigned)(w / 2)), "");
    v = fmax2(a, x, y);
  }
  if (cg_is_vec(LLVMTypeOf(v))) v = LLVMBuildExtractElement(B, v, cg_i32(a->cg, 0), "");
  return v;
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

/* The rows of a block that see nvr vectors of key block kb when causal: rows r (query
 * i0 + r) with (nvr - 1) W <= i - kb < nvr W (the last count: every row past), in
 * [0, br); a loop per count, each with its vectors fixed (the others' keys are all
 * masked), rows before query kb skipped (they see no key of the block). Without the
 * mask one loop over every row with all nv vectors. Each range runs in blocks of RB
 * rows, then single rows: fn(r, nb, nvr) emits rows [r, r + nb). */
typedef void (*RowsFn)(Attn *a, void *ctx, LLVMValueRef r, int nb, int nvr);

static void rows_blocked(Attn *a, LLVMValueRef r0, LLVMValueRef r1, int nvr, RowsFn fn, void *ctx) {
  LLVMValueRef n = sub(a, r1, r0);
  LLVMValueRef mid = add(a, r0, mul(a, LLVMBuildSDiv(a->cg->B, imax(a, n, k64(a, 0)), k64(a, a->RB), ""), k64(a, a->RB)));
  CgLoop lb = cg_loop_begin(a->cg, r0, mid, k64(a, a->RB));
  fn(a, ctx, lb.iv, a->RB, nvr);
  cg_loop_end(a->cg, &lb);
  if (a->RB > 1) {
    CgLoop l1 = cg_loop_begin(a->cg, mid, r1, k64(a, 1));
    fn(a, ctx, l1.iv, 1, nvr);
    cg_loop_end(a->cg, &l1);
  }
}

static void rows_by_count(Attn *a, LLVMValueRef i0, LLVMValueRef br, LLVMValueRef kb, RowsFn fn, void *ctx) {
  if (!a->causal) {
    rows_blocked(a, k64(a, 0), br, a->nv, fn, ctx);
    return;
  }
  LLVMValueRef d = sub(a, kb, i0);   /* row of query kb */
  for (int c = 1; c <= a->nv; c++) {
    LLVMValueRef r0 = imin(a, imax(a, add(a, d, k64(a, (int64_t)(c - 1) * a->W)), k64(a, 0)), br);
    LLVMValueRef r1 = c < a->nv ? imin(a, imax(a, add(a, d, k64(a, (int64_t)c * a->W)), k64(a, 0)), br) : br;
    rows_blocked(a, r0, r1, c, fn, ctx);
  }
}

/* out row b (n elements at out[oi + b os]) of nb rows:
 *   start    alpha[b] out_b (scratch rows padded to whole vectors; alpha NULL: 1), or
 *            0 when `update` (then out_b += post sum at the end: a tensor row, masked tail)
 *   sum      over t in [t0, t1) of coef[t cs + cj + b cb] src[(rbase + t) n ..]
 * ATTN_ACC / nb vectors of each row at a time in registers: every term loads the source
 * row's vectors once for the nb rows. */
typedef struct {
  int nb;
  LLVMValueRef out, oi;
  int64_t os;
  LLVMValueRef alpha[ATTN_RB];  /* per row, or NULL */
  bool update;                  /* out += post * sum (tensor rows) */
  LLVMValueRef post;
  LLVMValueRef coef, cj;
  int64_t cs, cb;
  LLVMValueRef src, rbase, t0, t1;
} RowAcc;

static void row_acc(Attn *a, const RowAcc *r, int64_t n) {
  LLVMBuilderRef B = a->cg->B;
  int64_t nvr = nvec(a, n);
  int64_t ch = a->acc_regs / r->nb;
  if (ch < 1) ch = 1;
  for (int64_t u0 = 0; u0 < nvr; u0 += ch) {
    int64_t nu = nvr - u0 < ch ? nvr - u0 : ch;
    LLVMValueRef acc[ATTN_RB][ATTN_ACC];
    for (int b = 0; b < r->nb; b++) {
      LLVMValueRef oi = add(a, r->oi, k64(a, b * r->os));
      for (int64_t u = 0; u < nu; u++) {
        LLVMValueRef init = fk(a, a->T, 0.0);
        if (!r->update) {
          init = ldv(a, r->out, add(a, oi, k64(a, (u0 + u) * a->W)));
          if (r->alpha[b]) init = LLVMBuildFMul(B, init, splat(a, r->alpha[b]), "");
        }
        acc[b][u] = var(a, a->T, init, "acc");
      }
    }
    CgLoop lt = cg_loop_begin(a->cg, r->t0, r->t1, k64(a, 1));
    LLVMValueRef ri = mul(a, add(a, r->rbase, lt.iv), k64(a, n));
    LLVMValueRef sv[ATTN_ACC];
    for (int64_t u = 0; u < nu; u++) sv[u] = ld_row(a, r->src, ri, u0 + u, n);
    LLVMValueRef ci = add(a, mul(a, lt.iv, k64(a, r->cs)), r->cj);
    for (int b = 0; b < r->nb; b++) {
      LLVMValueRef c = splat(a, lds(a, r->coef, add(a, ci, k64(a, b * r->cb))));
      for (int64_t u = 0; u < nu; u++) set(a, acc[b][u], fmadd(a, c, sv[u], get(a, a->T, acc[b][u])));
    }
    cg_loop_end(a->cg, &lt);
    for (int b = 0; b < r->nb; b++) {
      LLVMValueRef oi = add(a, r->oi, k64(a, b * r->os));
      for (int64_t u = 0; u < nu; u++) {
        LLVMValueRef x = get(a, a->T, acc[b][u]);
        if (r->update) st_row(a, fmadd(a, x, splat(a, r->post), ld_row(a, r->out, oi, u0 + u, n)), r->out, oi, u0 + u, n);
        else cg_store(a->cg, x, r->out, add(a, oi, k64(a, (u0 + u) * a->W)));
      }
    }
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

/* One key block kb (bc keys) against rows [r, r + nb) of a query block, nvr score
 * vectors each: the online softmax step. */
typedef struct {
  LLVMValueRef q, v, kt, pr, acc, ms, ls;   /* slice pointers and scratch regions */
  LLVMValueRef i0, kb, bc;
} FwdRows;

static void fwd_rows(Attn *a, void *ctx, LLVMValueRef r, int nb, int nvr) {
  FwdRows *f = ctx;
  Cg *cg = a->cg;
  LLVMBuilderRef B = cg->B;
  const AttnLayout *L = &a->L;
  LLVMTypeRef E = a->E;
  LLVMValueRef i = add(a, f->i0, r);
  LLVMValueRef s[ATTN_RB][ATTN_NV], alpha[ATTN_RB];
  score_rows(a, f->q, mul(a, i, k64(a, L->dh)), L->dh, nb, f->kt, L->dh, nvr, s);
  LLVMValueRef ninf = fk(a, a->T, -INFINITY), scale = fk(a, a->T, a->scale);
  for (int b = 0; b < nb; b++) {
    LLVMValueRef rb = add(a, r, k64(a, b)), ib = add(a, i, k64(a, b));
    LLVMValueRef mb = NULL, valid[ATTN_NV];
    for (int c = 0; c < nvr; c++) {
      valid[c] = valid_lanes(a, f->kb, c, ib);
      s[b][c] = LLVMBuildSelect(B, valid[c], LLVMBuildFMul(B, s[b][c], scale, ""), ninf, "");
      mb = c ? fmax2(a, mb, s[b][c]) : s[b][c];
    }
    LLVMValueRef mo = lds(a, f->ms, rb);
    LLVMValueRef mn = fmax2(a, hmax_tree(a, mb), mo);
    /* a row with no key yet (mn = -inf) has p = 0 and alpha = 0 */
    LLVMValueRef empty = LLVMBuildFCmp(B, LLVMRealOEQ, mn, fk(a, E, -INFINITY), "");
    LLVMValueRef msafe = LLVMBuildSelect(B, empty, fk(a, E, 0.0), mn, "");
    /* alpha = exp(m - m'), 0 while the row had no key (its first block: the only one
     * when S <= Bc, so the branch skips the exp there) */
    LLVMValueRef av = var(a, E, fk(a, E, 0.0), "alpha");
    LLVMBasicBlockRef join = cg_if_begin(cg, LLVMBuildFCmp(B, LLVMRealONE, mo, fk(a, E, -INFINITY), ""));
    set(a, av, cg_exp(cg, LLVMBuildFSub(B, mo, msafe, "")));
    cg_if_end(cg, join);
    alpha[b] = get(a, E, av);
    LLVMValueRef psum = NULL;
    for (int c = 0; c < nvr; c++) {
      /* masked lanes take exp(0), not exp(-inf): the polynomial would pass through
       * subnormals there, which cost a microcode assist per operation */
      LLVMValueRef x = LLVMBuildSelect(B, valid[c], LLVMBuildFSub(B, s[b][c], splat(a, msafe), ""), fk(a, a->T, 0.0), "");
      LLVMValueRef e = cg_exp(cg, x);
      LLVMValueRef pc = LLVMBuildSelect(B, valid[c], e, fk(a, a->T, 0.0), "p");
      cg_store(cg, pc, f->pr, k64(a, b * ATTN_BCS + c * a->W));
      psum = c ? LLVMBuildFAdd(B, psum, pc, "") : pc;
    }
    LLVMValueRef lo = lds(a, f->ls, rb);
    cg_store(cg, LLVMBuildFAdd(B, LLVMBuildFMul(B, lo, alpha[b], ""), cg_hsum(cg, psum), ""), f->ls, rb);
    cg_store(cg, mn, f->ms, rb);
  }
  /* acc_b = alpha_b acc_b + sum_j p_bj v[kb + j] over j < bc (and j <= the last row's
   * query when causal: a row before it has p = 0 there, within its nvr vectors) */
  LLVMValueRef jn = a->causal ? imin(a, f->bc, add(a, sub(a, add(a, i, k64(a, nb - 1)), f->kb), k64(a, 1))) : f->bc;
  RowAcc ra;
  memset(&ra, 0, sizeof ra);
  ra.nb = nb, ra.out = f->acc, ra.oi = mul(a, r, k64(a, L->dvp)), ra.os = L->dvp;
  for (int b = 0; b < nb; b++) ra.alpha[b] = alpha[b];
  ra.coef = f->pr, ra.cj = k64(a, 0), ra.cs = 1, ra.cb = ATTN_BCS;
  ra.src = f->v, ra.rbase = f->kb, ra.t0 = k64(a, 0), ra.t1 = jn;
  row_acc(a, &ra, L->dv);
}

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
  FwdRows fr = {q, v, kt, pr, acc, ms, ls, i0, kb, bc};
  rows_by_count(a, i0, br, kb, fwd_rows, &fr);
  cg_loop_end(cg, &lk);
  /* o = acc / l, lse = m + log l */
  lr = cg_loop_begin(cg, k64(a, 0), br, k64(a, 1));
  LLVMValueRef i = add(a, i0, lr.iv);
  LLVMValueRef l = lds(a, ls, lr.iv);
  scale_row(a, o, mul(a, i, k64(a, L->dv)), acc, mul(a, lr.iv, k64(a, L->dvp)), L->dv,
            LLVMBuildFDiv(B, fk(a, E, 1.0), l, "inv"));
  if (lse) cg_store(cg, LLVMBuildFAdd(B, lds(a, ms, lr.iv), cg_log(cg, l), ""), lse, i);
  cg_loop_end(cg, &lr);
}

/* ------------------------------------------------------------------ backward */

/* p = exp(scale q k^T - lse) and ds = p (do v^T - D) of rows [r, r + nb) of a query
 * block against key block kb, nvr vectors each, into the scratch's P and DS rows; the
 * rest of each row (vectors nvr .. nv, keys past the row's query) gets zeros, so that
 * the blocked sums below may read a whole block of columns. */
typedef struct {
  LLVMValueRef q, dO, kt, vt, lse, D, P, DS;
  LLVMValueRef qb, kb;
} BwdRows;

static void bwd_rows(Attn *a, void *ctx, LLVMValueRef r, int nb, int nvr) {
  BwdRows *w = ctx;
  Cg *cg = a->cg;
  LLVMBuilderRef B = cg->B;
  const AttnLayout *L = &a->L;
  LLVMValueRef i = add(a, w->qb, r);
  LLVMValueRef s[ATTN_RB][ATTN_NV], dp[ATTN_RB][ATTN_NV];
  score_rows(a, w->q, mul(a, i, k64(a, L->dh)), L->dh, nb, w->kt, L->dh, nvr, s);
  score_rows(a, w->dO, mul(a, i, k64(a, L->dv)), L->dv, nb, w->vt, L->dv, nvr, dp);
  LLVMValueRef scale = fk(a, a->T, a->scale), zero = fk(a, a->T, 0.0);
  for (int b = 0; b < nb; b++) {
    LLVMValueRef ib = add(a, i, k64(a, b));
    LLVMValueRef lse = splat(a, lds(a, w->lse, ib)), di = splat(a, lds(a, w->D, ib));
    LLVMValueRef rbase = mul(a, add(a, r, k64(a, b)), k64(a, ATTN_BCS));
    for (int c = 0; c < a->nv; c++) {
      LLVMValueRef pc = zero, dsc = zero;
      if (c < nvr) {
        LLVMValueRef valid = valid_lanes(a, w->kb, c, ib);
        /* masked lanes: exp(0) (their scores may be anything, and exp of a large
         * negative number passes through subnormals: a microcode assist each) */
        LLVMValueRef x = LLVMBuildFSub(B, LLVMBuildFMul(B, s[b][c], scale, ""), lse, "");
        LLVMValueRef e = cg_exp(cg, LLVMBuildSelect(B, valid, x, zero, ""));
        pc = LLVMBuildSelect(B, valid, e, zero, "p");
        /* masked lanes: 0 (the scratch past the block may hold anything, and 0 * inf is NaN) */
        dsc = LLVMBuildSelect(B, valid, LLVMBuildFMul(B, pc, LLVMBuildFSub(B, dp[b][c], di, ""), ""), zero, "ds");
      }
      cg_store(cg, pc, w->P, add(a, rbase, k64(a, c * a->W)));
      cg_store(cg, dsc, w->DS, add(a, rbase, k64(a, c * a->W)));
    }
  }
}

/* dV[j] += sum_r p[r,j] do[qb + r], dK[j] += sum_r ds[r,j] q[qb + r] for key rows
 * [j, j + nb) of the block; rows r with qb + r >= kb + j when causal (the ones before
 * have p = 0 and were not computed). */
typedef struct {
  LLVMValueRef q, dO, P, DS, dka, dva;   /* dka, dva NULL: that gradient is not needed */
  LLVMValueRef qb, kb, br;
} BwdKeys;

static void bwd_keys(Attn *a, void *ctx, LLVMValueRef j, int nb, int nvr) {
  BwdKeys *w = ctx;
  const AttnLayout *L = &a->L;
  (void)nvr;
  LLVMValueRef r0 = a->causal ? imin(a, imax(a, k64(a, 0), sub(a, add(a, w->kb, j), w->qb)), w->br) : k64(a, 0);
  RowAcc ra;
  memset(&ra, 0, sizeof ra);
  ra.nb = nb, ra.cj = j, ra.cs = ATTN_BCS, ra.cb = 1;
  ra.rbase = w->qb, ra.t0 = r0, ra.t1 = w->br;
  if (w->dva) {
    ra.out = w->dva, ra.oi = mul(a, j, k64(a, L->dvp)), ra.os = L->dvp;
    ra.coef = w->P, ra.src = w->dO;
    row_acc(a, &ra, L->dv);
  }
  if (w->dka) {
    ra.out = w->dka, ra.oi = mul(a, j, k64(a, L->dhp)), ra.os = L->dhp;
    ra.coef = w->DS, ra.src = w->q;
    row_acc(a, &ra, L->dh);
  }
}

/* dq[i] += scale sum_j ds[r,j] k[kb + j] for rows [r, r + nb) (query i = qb + r), j < bc
 * and j <= the last row's query when causal */
typedef struct {
  LLVMValueRef k, dq, DS;
  LLVMValueRef qb, kb, bc;
} BwdQueries;

static void bwd_queries(Attn *a, void *ctx, LLVMValueRef r, int nb, int nvr) {
  BwdQueries *w = ctx;
  const AttnLayout *L = &a->L;
  (void)nvr;
  LLVMValueRef i = add(a, w->qb, r);
  LLVMValueRef jn = a->causal ? imin(a, w->bc, add(a, sub(a, add(a, i, k64(a, nb - 1)), w->kb), k64(a, 1))) : w->bc;
  RowAcc ra;
  memset(&ra, 0, sizeof ra);
  ra.nb = nb, ra.out = w->dq, ra.oi = mul(a, i, k64(a, L->dh)), ra.os = L->dh;
  ra.update = true, ra.post = fk(a, a->E, a->scale);
  ra.coef = w->DS, ra.cj = mul(a, r, k64(a, ATTN_BCS)), ra.cs = 1, ra.cb = ATTN_BCS;
  ra.src = w->k, ra.rbase = w->kb, ra.t0 = k64(a, 0), ra.t1 = jn;
  row_acc(a, &ra, L->dh);
}

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
  /* 1. p and ds of the block's rows (from query kb on when causal) */
  BwdRows brw = {q, dO, kt, vt, lse, D, P, DS, qb, kb};
  rows_by_count(a, qb, br, kb, bwd_rows, &brw);
  /* 2. the key rows' dV and dK */
  if (dk || dv) {
    BwdKeys bk = {q, dO, P, DS, dk ? dka : NULL, dv ? dva : NULL, qb, kb, br};
    rows_blocked(a, k64(a, 0), bc, 0, bwd_keys, &bk);
  }
  /* 3. the query rows' dq (from query kb on when causal) */
  BwdQueries bq = {k, dq, DS, qb, kb, bc};
  LLVMValueRef rs = a->causal ? imin(a, imax(a, sub(a, kb, qb), k64(a, 0)), br) : k64(a, 0);
  rows_blocked(a, rs, br, 0, bwd_queries, &bq);
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
  /* register blocks: 4 rows x 4 score vectors (16 of the 32 zmm), or 2 x 4 with 16 registers */
  a.RB = cg->prefer512 ? 4 : 2;
  a.acc_regs = cg->prefer512 ? 16 : 8;
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
  CgAside aside = cg_aside_begin(cg);
  LLVMValueRef task = build_task(&a, have);
  cg_aside_end(cg, aside);

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
