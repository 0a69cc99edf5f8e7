/* codegen/gemm.c — the matrix products: packed, register-blocked, cache-blocked GEMM
 * in the structure of BLIS (Van Zee & van de Geijn, "BLIS: A Framework for Rapidly
 * Instantiating BLAS Functionality", 2015), generated as LLVM IR.
 *
 *   C[M,N] = A(i,k) B(k,j)   with  A(i,k) = a[i,k] (matmul, matmul_nt) or a[k,i] (matmul_tn)
 *                                  B(k,j) = b[k,j] (matmul, matmul_tn) or b[j,k] (matmul_nt)
 *
 *   for jc in N step NC                       B block KC x NC: L3
 *     for pc in K step KC
 *       pack B[pc:+kc, jc:+nc] into panels of NR columns (k-major, zero padded)
 *       for ic in M step MC                   A block MC x KC: L2
 *         pack A[ic:+mc, pc:+kc] into panels of MR rows (k-major, zero padded)
 *         for jr in nc step NR                one B micro-panel KC x NR: L1
 *           for ir in mc step MR
 *             micro-kernel: C[MR x NR] (+)= Apanel Bpanel
 *
 * The micro-kernel keeps the MR x NR tile of C in MR * NR / W vector registers (12 x 32
 * f32 = 24 zmm with AVX-512, 6 x 16 = 12 ymm with AVX2): per k it loads NR / W vectors
 * of B and broadcasts MR values of A into llvm.fma. The first KC block overwrites C,
 * later ones accumulate; edge tiles go through a stack tile. Packing reads the source
 * along its contiguous dim (the loop order depends on the variant).
 *
 * Epilogue (passes/kernel_plan.c): after the micro-kernel has written a tile of C for the last
 * K block, the core calls the group's epilogue function on that tile while it is in L1
 * — bias add, a convolution's inference-mode batchnorm, activation, or the
 * activation's derivative in backward — one small
 * function per flag set (CgEpilogue), so the GEMM core itself is built once per variant
 * and shared by every product of the module, fused or not.
 *
 * Threads: the caller splits C into chunks of whole MR row panels where M > N, else of
 * whole NR column panels (the cut that duplicates less packing), one task per chunk
 * through frame->parallel_for; every chunk has its
 * own pack buffers in the workspace (cg_gemm_pack_floats floats each, indexed by chunk,
 * not by thread, so results do not depend on the pool). Products under
 * CG_GEMM_PARALLEL_MACS multiply-adds run on the calling thread (but for those with
 * a quarter of them over CG_GEMM_PARALLEL_FLOATS elements or more). */
#include <stdio.h>
#include <string.h>

#include "codegen/cg.h"

enum { V_NN, V_NT, V_TN };

/* The pack buffers of one chunk hold an A block (mc <= MC rows in MR-row panels, kc <=
 * KC deep) and a B block (kc deep, nc <= NC columns in NR-column panels). A model's
 * products bound mc, kc and nc further by their own M, K and N, where those are fixed
 * (the batch dim can be anything: then the blocking's bound): the sizes below, rounded
 * to 12 rows and 32 columns (multiples of every MR and NR), are what its buffers need. */
static int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

/* The GEMMs of a convolution (codegen/conv.c), per image, and the im2col buffer each
 * needs: forward M = O, K = C kh kw, N = Ho Wo; backward-data M = C kh kw, K = O,
 * N = Ho Wo; backward-weights M = O, K = Ho Wo, N = C kh kw. All fixed (no batch dim). */
static void conv_shapes(Func *f, const Inst *in, int64_t mkn[3], int64_t *col) {
  const TensorType *kt = in->op == OP_CONV2D_BWD_WEIGHT ? ir_vtype(f, (int32_t)(in - f->insts)) : ir_vtype(f, in->args[1]);
  const TensorType *yt = in->op == OP_CONV2D ? ir_vtype(f, (int32_t)(in - f->insts))
                         : in->op == OP_CONV2D_BWD_DATA ? ir_vtype(f, in->args[0]) : ir_vtype(f, in->args[1]);
  int64_t O = kt->dims[0], CKK = kt->dims[1] * kt->dims[2] * kt->dims[3], P = yt->dims[2] * yt->dims[3];
  if (in->op == OP_CONV2D) mkn[0] = O, mkn[1] = CKK, mkn[2] = P;
  else if (in->op == OP_CONV2D_BWD_DATA) mkn[0] = CKK, mkn[1] = O, mkn[2] = P;
  else mkn[0] = O, mkn[1] = P, mkn[2] = CKK;
  *col = cg_conv_direct_b(f, in) ? 0 : CKK * P;
  /* conv.c's own paths (channels or images in the lanes) */
  int64_t own = cg_conv_own_floats(f, in);
  if (own > *col) *col = own;
  /* backward-weights as rows (conv.c rowconv_bww) keeps O x W partial sums per tap */
  if (in->op == OP_CONV2D_BWD_WEIGHT && in->iattr[0] == 1 && O <= 12 && O * CKK * 16 > *col) *col = O * CKK * 16;
}

/* The product that a matmul* instruction runs (per batch index where it is batched):
 *   matmul_tn fold=1        a[...,k,m], b[...,k,n]: one TN product, K = numel(a) / m
 *   b of rank 2 (not TN)    a's leading dims are rows: M = numel(a) / K, one product
 *   otherwise               one product per index of the result's batch dims
 * M, N, K in elements; DIM_BATCH where they depend on B. */
static int64_t dims_prod(const TensorType *t, int from, int to) {
  int64_t p = 1;
  for (int i = from; i < to; i++) {
    if (t->dims[i] == DIM_BATCH) return DIM_BATCH;
    p *= t->dims[i];
  }
  return p;
}

bool cg_product_single(Func *f, const Inst *in) {
  const TensorType *a = ir_vtype(f, in->args[0]), *b = ir_vtype(f, in->args[1]);
  if (in->op == OP_MATMUL_TN) return in->iattr[0] == 1 || (a->rank == 2 && b->rank == 2);
  return b->rank == 2;
}

void cg_product_mnk(Func *f, const Inst *in, int64_t *M, int64_t *N, int64_t *K) {
  const TensorType *a = ir_vtype(f, in->args[0]), *b = ir_vtype(f, in->args[1]);
  int ra = a->rank, rb = b->rank;
  bool single = cg_product_single(f, in);
  switch ((Op)in->op) {
  case OP_MATMUL_TN:
    *M = a->dims[ra - 1], *N = b->dims[rb - 1];
    *K = single ? dims_prod(a, 0, ra - 1) : a->dims[ra - 2];
    break;
  case OP_MATMUL_NT:
    *K = a->dims[ra - 1], *N = b->dims[rb - 2];
    *M = single ? dims_prod(a, 0, ra - 1) : a->dims[ra - 2];
    break;
  default:
    *K = a->dims[ra - 1], *N = b->dims[rb - 1];
    *M = single ? dims_prod(a, 0, ra - 1) : a->dims[ra - 2];
    break;
  }
}

void cg_gemm_pack_sizes(const KernelPlan *const *plans, int nplans, const CgBlocking *bk, int64_t *a_floats,
                        int64_t *b_floats, int64_t *col_floats) {
  int64_t mmax = 0, kmax = 0, nmax = 0, cmax = 0;
  int64_t k16 = 0;   /* the deepest K block of a product with 16-bit operands */
  for (int q = 0; q < nplans; q++) {
    const KernelPlan *p = plans[q];
    if (!p) continue;
    Func *f = p->f;
    for (int32_t i = 0; i < f->ninsts; i++) {
      const Inst *in = &f->insts[i];
      if (!p->computed[i]) continue;
      int64_t M, N, K;
      if (ir_ops[in->op].kind == OPK_PRODUCT) {
        cg_product_mnk(f, in, &M, &N, &K);
        if (ir_dtype_is_low(ir_vtype(f, in->args[0])->dtype) || ir_dtype_is_low(ir_vtype(f, in->args[1])->dtype)) {
          int64_t k = K == DIM_BATCH || K > CG_GEMM_KC16 ? CG_GEMM_KC16 : K;
          if (k > k16) k16 = k;
        }
      } else if (ir_ops[in->op].kind == OPK_CONV) {
        int64_t mkn[3], col;
        conv_shapes(f, in, mkn, &col);
        M = mkn[0], K = mkn[1], N = mkn[2];
        if (col > cmax) cmax = col;
      } else if (ir_ops[in->op].kind == OPK_ATTN) {   /* its blocks' scratch (attention.c) */
        int64_t s = cg_attention_scratch_floats(f, in);
        if (s > cmax) cmax = s;
        continue;
      } else {
        continue;
      }
      M = M == DIM_BATCH || M > bk->mc ? bk->mc : M;
      K = K == DIM_BATCH || K > bk->kc ? bk->kc : K;
      N = N == DIM_BATCH || N > bk->nc ? bk->nc : N;
      if (M > mmax) mmax = M;
      if (K > kmax) kmax = K;
      if (N > nmax) nmax = N;
    }
  }
  cg_gemm_pack_for(mmax, nmax, kmax, k16, a_floats, b_floats);
  /* the im2col buffer follows the B block: keep it 64-byte aligned (16 f32) */
  *col_floats = round_up(cmax, 16);
}

void cg_gemm_pack_for(int64_t M, int64_t N, int64_t K, int64_t K16, int64_t *a_floats, int64_t *b_floats) {
  *a_floats = round_up(M, 12) * K;
  *b_floats = K * round_up(N, 32);
  if (K16 > 0) {   /* gemm_lowp.c: 16-bit panels of 32 rows / columns, K in pairs or in 32s */
    /* the register-tile cores block K as the f32 core does (K: the f32 bound, blocking.c's KC) */
    int64_t k = K16 < K ? K16 : K, n16 = N < CG_GEMM_NC16 ? N : CG_GEMM_NC16;
    int64_t a16 = round_up(M, 32) * round_up(K16, 32);
    int64_t b16 = round_up(k, 32) * round_up(N, 32), bamx = round_up(K16, 32) * round_up(n16, 32);
    if (bamx > b16) b16 = bamx;
    if ((a16 + 1) / 2 > *a_floats) *a_floats = (a16 + 1) / 2;
    if ((b16 + 1) / 2 > *b_floats) *b_floats = (b16 + 1) / 2;
  }
}

int64_t cg_gemm_pack_floats(Cg *cg) { return cg->pack_a_floats + cg->pack_b_floats + cg->conv_col_floats; }

static LLVMValueRef add(Cg *cg, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildAdd(cg->B, a, b, ""); }
static LLVMValueRef mul(Cg *cg, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildMul(cg->B, a, b, ""); }
static LLVMValueRef sub(Cg *cg, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildSub(cg->B, a, b, ""); }
static LLVMValueRef fptr(Cg *cg, LLVMValueRef p, LLVMValueRef idx) { return cg_gep(cg, cg->t_f32, p, idx); }
static LLVMValueRef max0(Cg *cg, LLVMValueRef n) {
  return LLVMBuildSelect(cg->B, LLVMBuildICmp(cg->B, LLVMIntSGT, n, cg_i64(cg, 0), ""), n, cg_i64(cg, 0), "");
}

/* ------------------------------------------------------------------ micro-kernel */

/* void ukernel(i64 kc, float *Ap, float *Bp, float *C, i64 ldc, i64 mr, i64 nr, i1 overwrite)
 * computing ROWS (<= MR) rows of the tile: the full kernel has ROWS = MR; a 4-row one
 * serves a last row panel of at most 4 rows (M = 64 is 5 x 12 + 4 and would otherwise
 * compute 72 rows for 64), an 8-row one 5 to 8. HALF: the first NR / 2 columns only (a
 * last column panel of at most NR / 2: N = 10, 100, 784 = 24 x 32 + 16). The packed
 * panels keep their MR and NR strides. Not inlined: the JIT compiles the micro-kernels
 * on the other thread than the GEMM core (target.c). */
static LLVMValueRef build_ukernel(Cg *cg, int ROWS, bool HALF) {
  LLVMTypeRef args[8] = {cg->t_i64, cg->t_ptr, cg->t_ptr, cg->t_ptr, cg->t_i64, cg->t_i64, cg->t_i64, cg->t_i1};
  LLVMTypeRef fty = LLVMFunctionType(cg->t_void, args, 8, 0);
  char fname[48];
  snprintf(fname, sizeof fname, "bpcc_gemm_ukernel_%d%s", ROWS, HALF ? "h" : "");
  LLVMValueRef fn = LLVMGetNamedFunction(cg->M, fname);   /* one set for every core */
  if (fn) return fn;
  fn = cg_new_function(cg, fname, fty, true);
  LLVMAddAttributeAtIndex(fn, LLVMAttributeFunctionIndex,
                          LLVMCreateEnumAttribute(cg->C, LLVMGetEnumAttributeKindForName("noinline", 8), 0));
  for (unsigned i = 2; i <= 4; i++)
    LLVMAddAttributeAtIndex(fn, i, LLVMCreateEnumAttribute(cg->C, LLVMGetEnumAttributeKindForName("noalias", 7), 0));
  cg->fn = fn;
  LLVMPositionBuilderAtEnd(cg->B, LLVMAppendBasicBlockInContext(cg->C, fn, "entry"));
  LLVMValueRef kc = LLVMGetParam(fn, 0), Ap = LLVMGetParam(fn, 1), Bp = LLVMGetParam(fn, 2), C = LLVMGetParam(fn, 3);
  LLVMValueRef ldc = LLVMGetParam(fn, 4), mr = LLVMGetParam(fn, 5), nr = LLVMGetParam(fn, 6), ow = LLVMGetParam(fn, 7);
  int MR = ROWS, APS = cg->MR, NR = cg->NR, W = cg->W, NV = NR / W / (HALF ? 2 : 1), NW = NV * W;
  LLVMValueRef acc[16][8];
  for (int i = 0; i < MR; i++)
    for (int v = 0; v < NV; v++) {
      acc[i][v] = cg_alloca(cg, cg->t_vec, "c");
      LLVMBuildStore(cg->B, cg_fconst(cg, cg->t_vec, 0), acc[i][v]);
    }
  CgLoop p = cg_loop_begin(cg, cg_i64(cg, 0), kc, cg_i64(cg, 1));
  LLVMValueRef bv[8];
  for (int v = 0; v < NV; v++) bv[v] = cg_load(cg, cg->t_vec, Bp, add(cg, mul(cg, p.iv, cg_i64(cg, NR)), cg_i64(cg, v * W)));
  for (int i = 0; i < MR; i++) {
    LLVMValueRef a = cg_splat(cg, cg_load(cg, cg->t_f32, Ap, add(cg, mul(cg, p.iv, cg_i64(cg, APS)), cg_i64(cg, i))), cg->t_vec);
    for (int v = 0; v < NV; v++) {
      LLVMValueRef fa[3] = {a, bv[v], LLVMBuildLoad2(cg->B, cg->t_vec, acc[i][v], "")};
      LLVMBuildStore(cg->B, cg_intrinsic(cg, "llvm.fma", cg->t_vec, fa, 3), acc[i][v]);
    }
  }
  cg_loop_end_hint(cg, &p, CG_LOOP_NO_UNROLL);
  /* write back: full tiles straight from registers, narrower edge tiles with masked
   * vector stores (a stack tile on scalar targets); a kernel of fewer rows than MR
   * always takes the row-by-row path: less code */
  LLVMValueRef full = LLVMBuildAnd(cg->B, LLVMBuildICmp(cg->B, LLVMIntEQ, mr, cg_i64(cg, ROWS < APS ? -1 : MR), ""),
                                   LLVMBuildICmp(cg->B, LLVMIntEQ, nr, cg_i64(cg, NW), ""), "");
  LLVMBasicBlockRef bfull = LLVMAppendBasicBlockInContext(cg->C, fn, "full");
  LLVMBasicBlockRef bedge = LLVMAppendBasicBlockInContext(cg->C, fn, "edge");
  LLVMBasicBlockRef bret = LLVMAppendBasicBlockInContext(cg->C, fn, "ret");
  LLVMBuildCondBr(cg->B, full, bfull, bedge);
  LLVMPositionBuilderAtEnd(cg->B, bfull);
  for (int i = 0; i < MR; i++)
    for (int v = 0; v < NV; v++) {
      LLVMValueRef idx = add(cg, mul(cg, cg_i64(cg, i), ldc), cg_i64(cg, v * W));
      LLVMValueRef c = LLVMBuildLoad2(cg->B, cg->t_vec, acc[i][v], "");
      LLVMValueRef sum = LLVMBuildFAdd(cg->B, c, cg_load(cg, cg->t_vec, C, idx), "");
      cg_store(cg, LLVMBuildSelect(cg->B, ow, c, sum, ""), C, idx);
    }
  LLVMBuildBr(cg->B, bret);
  /* an edge tile of full width (the last row panel when M is not a multiple of MR):
   * the rows that exist, straight from registers */
  LLVMPositionBuilderAtEnd(cg->B, bedge);
  LLVMBasicBlockRef browedge = LLVMAppendBasicBlockInContext(cg->C, fn, "rowedge");
  LLVMBasicBlockRef bscalar = LLVMAppendBasicBlockInContext(cg->C, fn, "scalaredge");
  LLVMBuildCondBr(cg->B, LLVMBuildICmp(cg->B, LLVMIntEQ, nr, cg_i64(cg, NW), ""), browedge, bscalar);
  LLVMPositionBuilderAtEnd(cg->B, browedge);
  for (int i = 0; i < MR; i++) {
    LLVMBasicBlockRef join = cg_if_begin(cg, LLVMBuildICmp(cg->B, LLVMIntSLT, cg_i64(cg, i), mr, ""));
    for (int v = 0; v < NV; v++) {
      LLVMValueRef idx = add(cg, mul(cg, cg_i64(cg, i), ldc), cg_i64(cg, v * W));
      LLVMValueRef c = LLVMBuildLoad2(cg->B, cg->t_vec, acc[i][v], "");
      LLVMValueRef sum = LLVMBuildFAdd(cg->B, c, cg_load(cg, cg->t_vec, C, idx), "");
      cg_store(cg, LLVMBuildSelect(cg->B, ow, c, sum, ""), C, idx);
    }
    cg_if_end(cg, join);
  }
  LLVMBuildBr(cg->B, bret);
  LLVMPositionBuilderAtEnd(cg->B, bscalar);
  if (W > 1) {   /* narrower: each row's vectors masked to the columns v W + l < nr */
    LLVMTypeRef VI = LLVMVectorType(cg->t_i64, (unsigned)W);
    LLVMTypeRef ov[2] = {cg->t_vec, cg->t_ptr};
    unsigned lid = LLVMLookupIntrinsicID("llvm.masked.load", 16), sid = LLVMLookupIntrinsicID("llvm.masked.store", 17);
    LLVMValueRef lfn = LLVMGetIntrinsicDeclaration(cg->M, lid, ov, 2), sfn = LLVMGetIntrinsicDeclaration(cg->M, sid, ov, 2);
    LLVMTypeRef lty = LLVMIntrinsicGetType(cg->C, lid, ov, 2), sty = LLVMIntrinsicGetType(cg->C, sid, ov, 2);
    LLVMValueRef mask[8];
    for (int v = 0; v < NV; v++) {
      LLVMValueRef iota[16];
      for (int l = 0; l < W; l++) iota[l] = cg_i64(cg, v * W + l);
      mask[v] = LLVMBuildICmp(cg->B, LLVMIntSLT, LLVMConstVector(iota, (unsigned)W), cg_splat(cg, nr, VI), "");
    }
    for (int i = 0; i < MR; i++) {
      LLVMBasicBlockRef join = cg_if_begin(cg, LLVMBuildICmp(cg->B, LLVMIntSLT, cg_i64(cg, i), mr, ""));
      for (int v = 0; v < NV; v++) {
        LLVMValueRef ptr = fptr(cg, C, add(cg, mul(cg, cg_i64(cg, i), ldc), cg_i64(cg, v * W)));
        LLVMValueRef c = LLVMBuildLoad2(cg->B, cg->t_vec, acc[i][v], "");
        LLVMValueRef la[4] = {ptr, cg_i32(cg, cg->esize), mask[v], cg_fconst(cg, cg->t_vec, 0)};
        LLVMValueRef old = LLVMBuildCall2(cg->B, lty, lfn, la, 4, "");
        LLVMValueRef val = LLVMBuildSelect(cg->B, ow, c, LLVMBuildFAdd(cg->B, c, old, ""), "");
        LLVMValueRef sa[4] = {val, ptr, cg_i32(cg, cg->esize), mask[v]};
        LLVMBuildCall2(cg->B, sty, sfn, sa, 4, "");
      }
      cg_if_end(cg, join);
    }
    LLVMBuildBr(cg->B, bret);
  } else {
    LLVMValueRef tile = cg_alloca(cg, LLVMArrayType(cg->t_f32, (unsigned)(MR * NW)), "tile");
    for (int i = 0; i < MR; i++)
      for (int v = 0; v < NV; v++)
        cg_store(cg, LLVMBuildLoad2(cg->B, cg->t_vec, acc[i][v], ""), tile, cg_i64(cg, i * NW + v * W));
    CgLoop li = cg_loop_begin(cg, cg_i64(cg, 0), mr, cg_i64(cg, 1));
    CgLoop lj = cg_loop_begin(cg, cg_i64(cg, 0), nr, cg_i64(cg, 1));
    LLVMValueRef cidx = add(cg, mul(cg, li.iv, ldc), lj.iv);
    LLVMValueRef t = cg_load(cg, cg->t_f32, tile, add(cg, mul(cg, li.iv, cg_i64(cg, NW)), lj.iv));
    LLVMValueRef sv = LLVMBuildFAdd(cg->B, t, cg_load(cg, cg->t_f32, C, cidx), "");
    cg_store(cg, LLVMBuildSelect(cg->B, ow, t, sv, ""), C, cidx);
    cg_loop_end(cg, &lj);
    cg_loop_end(cg, &li);
    LLVMBuildBr(cg->B, bret);
  }
  LLVMPositionBuilderAtEnd(cg->B, bret);
  LLVMBuildRetVoid(cg->B);
  return fn;
}

/* ------------------------------------------------------------------ packing */

/* One panel: dst[p * P + q] = src(q, p) for p < kc, q < ext (ext <= P), where src(q, p)
 * = base[q * qs + p * ps] and one of qs, ps is 1 (every operand layout of the three
 * variants): qc says which, at run time, and the loop over the contiguous one is inner
 * with its stride the constant 1, so it becomes vector loads. */
/* void bpcc_pack_t16(float *src, i64 qs, float *dst, i64 P, i64 rows): one W x W block,
 * rows q < `rows` of the source (src + q qs, W contiguous floats each) transposed into
 * W rows of the panel (dst + p P, `rows` floats each). One function, however many
 * panels use it: the shuffle network is the most expensive code to compile. */
static LLVMValueRef build_pack_t16(Cg *cg) {
  int W = cg->W;
  LLVMTypeRef args[5] = {cg->t_ptr, cg->t_i64, cg->t_ptr, cg->t_i64, cg->t_i64};
  LLVMValueRef fn = cg_new_function(cg, "bpcc_pack_t16", LLVMFunctionType(cg->t_void, args, 5, 0), true);
  LLVMAddAttributeAtIndex(fn, LLVMAttributeFunctionIndex,
                          LLVMCreateEnumAttribute(cg->C, LLVMGetEnumAttributeKindForName("noinline", 8), 0));
  cg->fn = fn;
  LLVMPositionBuilderAtEnd(cg->B, LLVMAppendBasicBlockInContext(cg->C, fn, "entry"));
  LLVMValueRef src = LLVMGetParam(fn, 0), qs = LLVMGetParam(fn, 1), dst = LLVMGetParam(fn, 2);
  LLVMValueRef P = LLVMGetParam(fn, 3), rows = LLVMGetParam(fn, 4);
  LLVMTypeRef ov[2] = {cg->t_vec, cg->t_ptr};
  unsigned lid = LLVMLookupIntrinsicID("llvm.masked.load", 16), sid = LLVMLookupIntrinsicID("llvm.masked.store", 17);
  LLVMValueRef lfn = LLVMGetIntrinsicDeclaration(cg->M, lid, ov, 2), sfn = LLVMGetIntrinsicDeclaration(cg->M, sid, ov, 2);
  LLVMTypeRef lty = LLVMIntrinsicGetType(cg->C, lid, ov, 2), sty = LLVMIntrinsicGetType(cg->C, sid, ov, 2);
  LLVMTypeRef VI = LLVMVectorType(cg->t_i64, (unsigned)W);
  LLVMValueRef iota[16];
  for (int c = 0; c < W; c++) iota[c] = cg_i64(cg, c);
  /* lanes < rows: the panel's width; rows i < rows: the source rows that exist */
  LLVMValueRef lanes = LLVMBuildICmp(cg->B, LLVMIntSLT, LLVMConstVector(iota, (unsigned)W), cg_splat(cg, rows, VI), "");
  LLVMValueRef r[16];
  for (int i = 0; i < W; i++) {
    LLVMValueRef have = cg_splat(cg, LLVMBuildICmp(cg->B, LLVMIntSLT, cg_i64(cg, i), rows, ""), LLVMVectorType(cg->t_i1, (unsigned)W));
    LLVMValueRef la[4] = {cg_gep(cg, cg->t_f32, src, mul(cg, cg_i64(cg, i), qs)), cg_i32(cg, 4), have, cg_fconst(cg, cg->t_vec, 0)};
    r[i] = LLVMBuildCall2(cg->B, lty, lfn, la, 4, "");
  }
  cg_reg_transpose(cg, r, W);
  for (int i = 0; i < W; i++) {
    LLVMValueRef sa[4] = {r[i], cg_gep(cg, cg->t_f32, dst, mul(cg, cg_i64(cg, i), P)), cg_i32(cg, 4), lanes};
    LLVMBuildCall2(cg->B, sty, sfn, sa, 4, "");
  }
  LLVMBuildRetVoid(cg->B);
  return fn;
}

/* A full panel of P columns with p contiguous in the source (the transposed operand:
 * B of matmul_nt, P = NR; A of matmul and matmul_nt, P = MR): W x W blocks transposed
 * in registers (bpcc_pack_t16, masked to the panel's width when P is not a multiple of
 * W), so the panel is written with whole vectors, not element by element. p in
 * [0, kc rounded down to W); the caller packs the rest. Block transpose in log2(W)
 * stages: for b = W/2 .. 1, rows i and i + b (i & b == 0) exchange their off-diagonal
 * b-blocks:  x'[c] = c & b ? y[c - b] : x[c],   y'[c] = c & b ? y[c] : x[c + b]. */
static void pack_transposed(Cg *cg, LLVMValueRef dst, LLVMValueRef base, LLVMValueRef qs, int P, LLVMValueRef ext,
                            LLVMValueRef kfull) {
  int W = cg->W;
  LLVMValueRef t16 = LLVMGetNamedFunction(cg->M, "bpcc_pack_t16");
  if (!t16) {
    LLVMBasicBlockRef here = LLVMGetInsertBlock(cg->B);
    LLVMValueRef fn = cg->fn;
    t16 = build_pack_t16(cg);
    cg->fn = fn;
    LLVMPositionBuilderAtEnd(cg->B, here);
  }
  CgLoop lp = cg_loop_begin(cg, cg_i64(cg, 0), kfull, cg_i64(cg, W));
  for (int qg = 0; qg < P; qg += W) {
    LLVMValueRef a[5] = {fptr(cg, base, add(cg, mul(cg, cg_i64(cg, qg), qs), lp.iv)), qs,
                         fptr(cg, dst, add(cg, mul(cg, lp.iv, cg_i64(cg, P)), cg_i64(cg, qg))), cg_i64(cg, P),
                         cg_min_i64(cg, cg_i64(cg, P - qg < W ? P - qg : W), max0(cg, sub(cg, ext, cg_i64(cg, qg))))};
    LLVMBuildCall2(cg->B, LLVMGlobalGetValueType(t16), t16, a, 5, "");
  }
  cg_loop_end_hint(cg, &lp, CG_LOOP_NO_VECTORIZE | CG_LOOP_NO_UNROLL);
}

/* The source element at idx widened to the model's float (e: a 16-bit operand). */
static LLVMValueRef src_load(Cg *cg, CgElem e, LLVMValueRef base, LLVMValueRef idx) {
  return e == CG_ELEM_FLOAT ? cg_load(cg, cg->t_f32, base, idx) : cg_load_elem(cg, cg->t_f32, e, base, idx);
}
static LLVMValueRef src_ptr(Cg *cg, CgElem e, LLVMValueRef base, LLVMValueRef idx) {
  return e == CG_ELEM_FLOAT ? fptr(cg, base, idx) : cg_gep(cg, LLVMInt16TypeInContext(cg->C), base, idx);
}

static void pack_panel(Cg *cg, CgElem e, LLVMValueRef dst, LLVMValueRef base, LLVMValueRef qs, LLVMValueRef ps,
                       LLVMValueRef qc, int P, LLVMValueRef ext, LLVMValueRef kc) {
  LLVMValueRef one = cg_i64(cg, 1), zero = cg_i64(cg, 0);
  LLVMBasicBlockRef bq = LLVMAppendBasicBlockInContext(cg->C, cg->fn, "packq");
  LLVMBasicBlockRef bp = LLVMAppendBasicBlockInContext(cg->C, cg->fn, "packp");
  LLVMBasicBlockRef join = LLVMAppendBasicBlockInContext(cg->C, cg->fn, "packjoin");
  LLVMBuildCondBr(cg->B, qc, bq, bp);
  for (int contig_q = 1; contig_q >= 0; contig_q--) {
    LLVMPositionBuilderAtEnd(cg->B, contig_q ? bq : bp);
    LLVMValueRef p0 = zero;
    if (!contig_q && cg->W == 16 && cg->esize == 4 && e == CG_ELEM_FLOAT) {
      /* whole W x W blocks transposed in registers first, masked to the panel's
       * columns that exist (a partial panel's others are zeros already) */
      LLVMValueRef kfull = LLVMBuildAnd(cg->B, kc, cg_i64(cg, ~(int64_t)15), "");
      pack_transposed(cg, dst, base, qs, P, ext, kfull);
      p0 = kfull;
    }
    CgLoop lo = cg_loop_begin(cg, zero, contig_q ? kc : ext, one);
    CgLoop li = cg_loop_begin(cg, contig_q ? zero : p0, contig_q ? ext : kc, one);
    LLVMValueRef q = contig_q ? li.iv : lo.iv, p = contig_q ? lo.iv : li.iv;
    LLVMValueRef src = contig_q ? add(cg, q, mul(cg, p, ps)) : add(cg, mul(cg, q, qs), p);
    cg_store(cg, src_load(cg, e, base, src), dst, add(cg, mul(cg, p, cg_i64(cg, P)), q));
    cg_loop_end(cg, &li);
    cg_loop_end(cg, &lo);
    LLVMBuildBr(cg->B, join);
  }
  LLVMPositionBuilderAtEnd(cg->B, join);
}

/* llvm.masked.load (lanes off: 0) or, with val, llvm.masked.store of <W x elem> at p */
static LLVMValueRef masked(Cg *cg, LLVMValueRef p, LLVMValueRef mask, LLVMValueRef val) {
  LLVMTypeRef ov[2] = {cg->t_vec, cg->t_ptr};
  const char *name = val ? "llvm.masked.store" : "llvm.masked.load";
  unsigned id = LLVMLookupIntrinsicID(name, strlen(name));
  LLVMValueRef fn = LLVMGetIntrinsicDeclaration(cg->M, id, ov, 2);
  LLVMTypeRef fty = LLVMIntrinsicGetType(cg->C, id, ov, 2);
  LLVMValueRef la[4] = {p, cg_i32(cg, cg->esize), mask, cg_fconst(cg, cg->t_vec, 0)};
  LLVMValueRef sa[4] = {val, p, cg_i32(cg, cg->esize), mask};
  return LLVMBuildCall2(cg->B, fty, fn, val ? sa : la, 4, "");
}

/* lanes l of <W x i1> with from + l < n (from: a constant, n: i64) */
static LLVMValueRef lanes_below(Cg *cg, int from, LLVMValueRef n) {
  LLVMValueRef iota[16];
  for (int l = 0; l < cg->W; l++) iota[l] = cg_i64(cg, from + l);
  return LLVMBuildICmp(cg->B, LLVMIntSLT, LLVMConstVector(iota, (unsigned)cg->W),
                       cg_splat(cg, n, LLVMVectorType(cg->t_i64, (unsigned)cg->W)), "");
}

/* A block whose q is contiguous in the source (qs = 1: B of matmul and matmul_tn, A of
 * matmul_tn), packed in the source's order, ROWS (1 or 8) k rows at a time: for each
 * panel, those rows' P floats as whole vectors (the last partial panel masked, zeros
 * past its edge). Reading along the source rows streams them (a panel at a time would
 * read P floats from each of kc rows a row stride apart: a new page per row for the
 * weights, which the prefetchers do not follow), and 8 rows at a time write each panel
 * 8 P floats in a row (one row at a time, the stores go to panels kc P floats apart,
 * the same L1 sets). */
static void pack_rows_at(Cg *cg, LLVMValueRef dst, LLVMValueRef base, LLVMValueRef ps, int P, LLVMValueRef nfull,
                         LLVMValueRef rest, LLVMValueRef kc, LLVMValueRef k, int ROWS) {
  int W = cg->W;
  LLVMValueRef zero = cg_i64(cg, 0);
  LLVMValueRef src[8], drow[8];
  for (int r = 0; r < ROWS; r++) {
    LLVMValueRef kr = add(cg, k, cg_i64(cg, r));
    src[r] = fptr(cg, base, mul(cg, kr, ps)), drow[r] = fptr(cg, dst, mul(cg, kr, cg_i64(cg, P)));
  }
  CgLoop lq = cg_loop_begin(cg, zero, nfull, cg_i64(cg, P));
  LLVMValueRef off = mul(cg, lq.iv, kc);
  for (int r = 0; r < ROWS; r++)
    for (int q = 0; q < P; q += W) {
      int n = P - q < W ? P - q : W;
      LLVMTypeRef VT = n == 1 ? cg->t_f32 : LLVMVectorType(cg->t_f32, (unsigned)n);
      cg_store(cg, cg_load(cg, VT, src[r], add(cg, lq.iv, cg_i64(cg, q))), drow[r], add(cg, off, cg_i64(cg, q)));
    }
  cg_loop_end_hint(cg, &lq, CG_LOOP_NO_VECTORIZE | CG_LOOP_NO_UNROLL);
  LLVMBasicBlockRef join = cg_if_begin(cg, LLVMBuildICmp(cg->B, LLVMIntSGT, rest, zero, ""));
  LLVMValueRef doff = mul(cg, nfull, kc);
  for (int r = 0; r < ROWS; r++)
    for (int q = 0; q < P; q += W) {
      LLVMValueRef v = masked(cg, fptr(cg, src[r], add(cg, nfull, cg_i64(cg, q))), lanes_below(cg, q, rest), NULL);
      masked(cg, fptr(cg, drow[r], add(cg, doff, cg_i64(cg, q))), lanes_below(cg, q, cg_i64(cg, P)), v);
    }
  cg_if_end(cg, join);
}

static void pack_block_rows(Cg *cg, LLVMValueRef dst, LLVMValueRef base, LLVMValueRef ps, int P, LLVMValueRef len,
                            LLVMValueRef kc) {
  LLVMValueRef nfull = mul(cg, LLVMBuildSDiv(cg->B, len, cg_i64(cg, P), ""), cg_i64(cg, P));
  LLVMValueRef rest = sub(cg, len, nfull);
  LLVMValueRef k8 = LLVMBuildAnd(cg->B, kc, cg_i64(cg, ~(int64_t)7), "");
  CgLoop l8 = cg_loop_begin(cg, cg_i64(cg, 0), k8, cg_i64(cg, 8));
  pack_rows_at(cg, dst, base, ps, P, nfull, rest, kc, l8.iv, 8);
  cg_loop_end_hint(cg, &l8, CG_LOOP_NO_VECTORIZE | CG_LOOP_NO_UNROLL);
  CgLoop l1 = cg_loop_begin(cg, k8, kc, cg_i64(cg, 1));
  pack_rows_at(cg, dst, base, ps, P, nfull, rest, kc, l1.iv, 1);
  cg_loop_end_hint(cg, &l1, CG_LOOP_NO_VECTORIZE | CG_LOOP_NO_UNROLL);
}

/* Pack a block of `len` rows (A, P = MR) or columns (B, P = NR) into panels of P. */
static void pack_block(Cg *cg, CgElem e, LLVMValueRef dst, LLVMValueRef base, LLVMValueRef qs, LLVMValueRef ps,
                       LLVMValueRef qc, int P, LLVMValueRef len, LLVMValueRef kc) {
  LLVMBasicBlockRef bjoin0 = NULL;
  if (cg->W > 1 && e == CG_ELEM_FLOAT) {   /* q contiguous: in the source's order */
    LLVMBasicBlockRef brows = LLVMAppendBasicBlockInContext(cg->C, cg->fn, "packrows");
    LLVMBasicBlockRef bpan = LLVMAppendBasicBlockInContext(cg->C, cg->fn, "packpanels");
    bjoin0 = LLVMAppendBasicBlockInContext(cg->C, cg->fn, "packdone");
    LLVMBuildCondBr(cg->B, qc, brows, bpan);
    LLVMPositionBuilderAtEnd(cg->B, brows);
    pack_block_rows(cg, dst, base, ps, P, len, kc);
    LLVMBuildBr(cg->B, bjoin0);
    LLVMPositionBuilderAtEnd(cg->B, bpan);
  }
  CgLoop l = cg_loop_begin(cg, cg_i64(cg, 0), len, cg_i64(cg, P));
  LLVMValueRef ext = cg_min_i64(cg, cg_i64(cg, P), sub(cg, len, l.iv));
  LLVMValueRef pdst = fptr(cg, dst, mul(cg, l.iv, kc));
  LLVMValueRef pbase = src_ptr(cg, e, base, mul(cg, l.iv, qs));
  LLVMValueRef isfull = LLVMBuildICmp(cg->B, LLVMIntEQ, ext, cg_i64(cg, P), "");
  LLVMBasicBlockRef bpart = LLVMAppendBasicBlockInContext(cg->C, cg->fn, "packpart");
  LLVMBasicBlockRef bjoin = LLVMAppendBasicBlockInContext(cg->C, cg->fn, "packed");
  LLVMBuildCondBr(cg->B, isfull, bjoin, bpart);
  /* a partial panel: zeros first, so the micro-kernel reads zeros past the edge */
  LLVMPositionBuilderAtEnd(cg->B, bpart);
  CgLoop z = cg_loop_begin(cg, cg_i64(cg, 0), mul(cg, kc, cg_i64(cg, P)), cg_i64(cg, 1));
  cg_store(cg, LLVMConstReal(cg->t_f32, 0), pdst, z.iv);
  cg_loop_end(cg, &z);
  LLVMBuildBr(cg->B, bjoin);
  LLVMPositionBuilderAtEnd(cg->B, bjoin);
  pack_panel(cg, e, pdst, pbase, qs, ps, qc, P, ext, kc);
  cg_loop_end(cg, &l);
  if (bjoin0) {
    LLVMBuildBr(cg->B, bjoin0);
    LLVMPositionBuilderAtEnd(cg->B, bjoin0);
  }
}

/* ------------------------------------------------------------------ the blocked loops */

/* void epi(void *ectx, float *Ctile, i64 ldc, i64 mr, i64 nr) */
static LLVMTypeRef epi_type(Cg *cg) {
  LLVMTypeRef args[5] = {cg->t_ptr, cg->t_ptr, cg->t_i64, cg->t_i64, cg->t_i64};
  return LLVMFunctionType(cg->t_void, args, 5, 0);
}

/* void core(i64 M, i64 N, i64 K, float *A, i64 ars, i64 acs, float *B, i64 brs, i64 bcs,
 *           float *C, i64 ldc, float *Ap, float *Bp, epi *fn (or NULL), void *ectx, i64 acc)
 * with A(i,k) = A[i*ars + k*acs], B(k,j) = B[k*brs + j*bcs]: one function for the three
 * variants (their layouts differ only in these strides). acc != 0: C += A B (the first K
 * block adds to C too; convolution's weight gradient sums its images this way). */
static LLVMValueRef build_core(Cg *cg, CgElem ta, CgElem tb, const char *name) {
  /* the micro-kernels: MR rows, and (with MR = 12) 4 rows for a last row panel of at
   * most 4 (M = 64, 256, 784: 4 left over) */
  LLVMValueRef uk_full = build_ukernel(cg, cg->MR, false);
  LLVMValueRef uk4 = cg->MR > 8 ? build_ukernel(cg, 4, false) : NULL;
  LLVMValueRef uk8 = cg->MR > 8 ? build_ukernel(cg, 8, false) : NULL;
  /* and of half the width (NR = 2 W vectors: one), for a last column panel of <= W */
  bool half = cg->W > 1 && cg->NR == 2 * cg->W;
  LLVMValueRef hk_full = half ? build_ukernel(cg, cg->MR, true) : NULL;
  LLVMValueRef hk4 = half && uk4 ? build_ukernel(cg, 4, true) : NULL;
  LLVMValueRef hk8 = half && uk8 ? build_ukernel(cg, 8, true) : NULL;
  LLVMTypeRef args[16] = {cg->t_i64, cg->t_i64, cg->t_i64, cg->t_ptr, cg->t_i64, cg->t_i64, cg->t_ptr, cg->t_i64,
                          cg->t_i64, cg->t_ptr, cg->t_i64, cg->t_ptr, cg->t_ptr, cg->t_ptr, cg->t_ptr, cg->t_i64};
  LLVMTypeRef fty = LLVMFunctionType(cg->t_void, args, 16, 0);
  LLVMValueRef fn = cg_new_function(cg, name, fty, true);
  static const unsigned noalias_args[5] = {4, 7, 10, 12, 13};   /* A, B, C, Ap, Bp (1-based) */
  for (int i = 0; i < 5; i++)
    LLVMAddAttributeAtIndex(fn, noalias_args[i], LLVMCreateEnumAttribute(cg->C, LLVMGetEnumAttributeKindForName("noalias", 7), 0));
  cg->fn = fn;
  LLVMPositionBuilderAtEnd(cg->B, LLVMAppendBasicBlockInContext(cg->C, fn, "entry"));
  LLVMValueRef P[16];
  for (unsigned i = 0; i < 16; i++) P[i] = LLVMGetParam(fn, i);
  LLVMValueRef M = P[0], N = P[1], K = P[2], A = P[3], ars = P[4], acs = P[5], Bm = P[6], brs = P[7], bcs = P[8];
  LLVMValueRef Cm = P[9], ldc = P[10], Ap = P[11], Bp = P[12], efn = P[13], ectx = P[14];
  LLVMValueRef one = cg_i64(cg, 1);
  LLVMValueRef aqc = LLVMBuildICmp(cg->B, LLVMIntEQ, ars, one, "aqc");
  LLVMValueRef bqc = LLVMBuildICmp(cg->B, LLVMIntEQ, bcs, one, "bqc");

  CgLoop jc = cg_loop_begin(cg, cg_i64(cg, 0), N, cg_i64(cg, cg->NC));
  LLVMValueRef nc = cg_min_i64(cg, cg_i64(cg, cg->NC), sub(cg, N, jc.iv));
  /* K in equal blocks of at most KC (784 = 4 x 196, not 3 x 256 + 16: a short last
   * block costs a whole pass of C loads and stores for little work) */
  LLVMValueRef nkb = LLVMBuildSDiv(cg->B, add(cg, K, cg_i64(cg, cg->KC - 1)), cg_i64(cg, cg->KC), "");
  LLVMValueRef kstep = LLVMBuildSDiv(cg->B, add(cg, K, sub(cg, nkb, one)), nkb, "kstep");
  CgLoop pc = cg_loop_begin(cg, cg_i64(cg, 0), K, kstep);
  LLVMValueRef kc = cg_min_i64(cg, kstep, sub(cg, K, pc.iv));
  /* B panels: q = column j (stride bcs), p = k (stride brs) */
  LLVMValueRef bbase = src_ptr(cg, tb, Bm, add(cg, mul(cg, pc.iv, brs), mul(cg, jc.iv, bcs)));
  pack_block(cg, tb, Bp, bbase, bcs, brs, bqc, cg->NR, nc, kc);
  CgLoop ic = cg_loop_begin(cg, cg_i64(cg, 0), M, cg_i64(cg, cg->MC));
  LLVMValueRef mc = cg_min_i64(cg, cg_i64(cg, cg->MC), sub(cg, M, ic.iv));
  LLVMValueRef abase = src_ptr(cg, ta, A, add(cg, mul(cg, ic.iv, ars), mul(cg, pc.iv, acs)));
  pack_block(cg, ta, Ap, abase, ars, acs, aqc, cg->MR, mc, kc);
  LLVMValueRef overwrite = LLVMBuildAnd(cg->B, LLVMBuildICmp(cg->B, LLVMIntEQ, pc.iv, cg_i64(cg, 0), ""),
                                        LLVMBuildICmp(cg->B, LLVMIntEQ, P[15], cg_i64(cg, 0), ""), "");
  LLVMValueRef last = LLVMBuildICmp(cg->B, LLVMIntEQ, add(cg, pc.iv, kc), K, "");
  LLVMValueRef doepi = LLVMBuildAnd(cg->B, last, LLVMBuildICmp(cg->B, LLVMIntNE, efn, LLVMConstNull(cg->t_ptr), ""), "");
  CgLoop jr = cg_loop_begin(cg, cg_i64(cg, 0), nc, cg_i64(cg, cg->NR));
  LLVMValueRef nr = cg_min_i64(cg, cg_i64(cg, cg->NR), sub(cg, nc, jr.iv));
  CgLoop ir = cg_loop_begin(cg, cg_i64(cg, 0), mc, cg_i64(cg, cg->MR));
  LLVMValueRef mr = cg_min_i64(cg, cg_i64(cg, cg->MR), sub(cg, mc, ir.iv));
  LLVMValueRef cidx = add(cg, mul(cg, add(cg, ic.iv, ir.iv), ldc), add(cg, jc.iv, jr.iv));
  LLVMValueRef uargs[8] = {kc, fptr(cg, Ap, mul(cg, ir.iv, kc)), fptr(cg, Bp, mul(cg, jr.iv, kc)),
                           fptr(cg, Cm, cidx), ldc, mr, nr, overwrite};
  /* a last row panel of at most 4 or 8 rows: a kernel of that many rows (a 6- or
   * 16-channel convolution's M, M = 64's last 4); a last column panel of at most W
   * columns: one of half the width. One call through the chosen pointer. */
  LLVMValueRef narrow = half ? LLVMBuildICmp(cg->B, LLVMIntSLE, nr, cg_i64(cg, cg->W), "") : NULL;
  LLVMValueRef ukp = half ? LLVMBuildSelect(cg->B, narrow, hk_full, uk_full, "") : uk_full;
  if (uk4) {
    LLVMValueRef k8 = half ? LLVMBuildSelect(cg->B, narrow, hk8, uk8, "") : uk8;
    LLVMValueRef k4 = half ? LLVMBuildSelect(cg->B, narrow, hk4, uk4, "") : uk4;
    ukp = LLVMBuildSelect(cg->B, LLVMBuildICmp(cg->B, LLVMIntSLE, mr, cg_i64(cg, 8), ""), k8, ukp, "");
    ukp = LLVMBuildSelect(cg->B, LLVMBuildICmp(cg->B, LLVMIntSLE, mr, cg_i64(cg, 4), ""), k4, ukp, "");
  }
  LLVMBuildCall2(cg->B, LLVMGlobalGetValueType(uk_full), ukp, uargs, 8, "");
  /* the epilogue, once the tile holds its final sum */
  LLVMBasicBlockRef ejoin = cg_if_begin(cg, doepi);
  LLVMValueRef eargs[5] = {ectx, uargs[3], ldc, mr, nr};
  LLVMBuildCall2(cg->B, epi_type(cg), efn, eargs, 5, "");
  cg_if_end(cg, ejoin);
  cg_loop_end(cg, &ir);
  cg_loop_end(cg, &jr);
  cg_loop_end(cg, &ic);
  cg_loop_end(cg, &pc);
  cg_loop_end(cg, &jc);
  LLVMBuildRetVoid(cg->B);
  return fn;
}

/* ------------------------------------------------------------------ tasks */

/* The context a gemm task reads: what the caller stores before parallel_for. */
enum { GX_A, GX_B, GX_C, GX_PACK, GX_M, GX_N, GX_K, GX_NCHUNKS, GX_SPLITM, GX_EFN, GX_ECTX, GX_VARIANT, GX__COUNT };

static LLVMTypeRef ctx_type(Cg *cg) {
  LLVMTypeRef f[GX__COUNT] = {cg->t_ptr, cg->t_ptr, cg->t_ptr, cg->t_ptr, cg->t_i64, cg->t_i64,
                              cg->t_i64, cg->t_i64, cg->t_i64, cg->t_ptr, cg->t_ptr, cg->t_i64};
  return LLVMStructTypeInContext(cg->C, f, GX__COUNT, 0);
}

/* [s, e) of chunk c of n panels of size P over len: whole panels, balanced. */
static void chunk_range(Cg *cg, LLVMValueRef c, LLVMValueRef nch, LLVMValueRef len, int P, LLVMValueRef *s, LLVMValueRef *e) {
  LLVMValueRef panels = LLVMBuildSDiv(cg->B, add(cg, len, cg_i64(cg, P - 1)), cg_i64(cg, P), "");
  LLVMValueRef p0 = LLVMBuildSDiv(cg->B, mul(cg, c, panels), nch, "");
  LLVMValueRef p1 = LLVMBuildSDiv(cg->B, mul(cg, add(cg, c, cg_i64(cg, 1)), panels), nch, "");
  *s = cg_min_i64(cg, mul(cg, p0, cg_i64(cg, P)), len);
  *e = cg_min_i64(cg, mul(cg, p1, cg_i64(cg, P)), len);
}

/* One task for the three variants: the variant (a ctx field) picks the leading
 * dimensions and strides that the shared core takes. */
/* A task's prologue: the function (the builder at its entry) and its context struct of
 * type ct loaded field by field into f[0..n). */
static LLVMValueRef task_begin(Cg *cg, const char *name, LLVMTypeRef ct, int n, LLVMValueRef *f) {
  LLVMValueRef fn = cg_new_function(cg, name, cg->t_task, true);
  cg->fn = fn;
  LLVMPositionBuilderAtEnd(cg->B, LLVMAppendBasicBlockInContext(cg->C, fn, "entry"));
  LLVMValueRef ctx = LLVMGetParam(fn, 0);
  for (int i = 0; i < n; i++)
    f[i] = LLVMBuildLoad2(cg->B, LLVMStructGetTypeAtIndex(ct, (unsigned)i), LLVMBuildStructGEP2(cg->B, ct, ctx, (unsigned)i, ""), "");
  return fn;
}

/* The variant's strides for the shared core, A(i,k) = A[i*ars + k*acs] and
 * B(k,j) = B[k*brs + j*bcs]: st = {ars, acs, brs, bcs} */
static void variant_strides(Cg *cg, LLVMValueRef variant, LLVMValueRef M, LLVMValueRef N, LLVMValueRef K, LLVMValueRef st[4]) {
  LLVMValueRef ta = LLVMBuildICmp(cg->B, LLVMIntEQ, variant, cg_i64(cg, V_TN), "ta");
  LLVMValueRef tb = LLVMBuildICmp(cg->B, LLVMIntEQ, variant, cg_i64(cg, V_NT), "tb");
  LLVMValueRef one = cg_i64(cg, 1);
  LLVMValueRef lda = LLVMBuildSelect(cg->B, ta, M, K, ""), ldb = LLVMBuildSelect(cg->B, tb, K, N, "");
  st[0] = LLVMBuildSelect(cg->B, ta, one, lda, ""), st[1] = LLVMBuildSelect(cg->B, ta, lda, one, "");
  st[2] = LLVMBuildSelect(cg->B, tb, one, ldb, ""), st[3] = LLVMBuildSelect(cg->B, tb, ldb, one, "");
}

static LLVMValueRef build_task(Cg *cg, LLVMValueRef core, const char *name, CgElem ta, CgElem tb) {
  LLVMValueRef f[GX__COUNT];
  LLVMValueRef fn = task_begin(cg, name, ctx_type(cg), GX__COUNT, f);
  LLVMValueRef M = f[GX_M], N = f[GX_N], K = f[GX_K], st[4];
  variant_strides(cg, f[GX_VARIANT], M, N, K, st);
  LLVMValueRef ars = st[0], acs = st[1], brs = st[2], bcs = st[3];
  LLVMValueRef z = cg_i64(cg, 0), ldc = N;
  CgLoop l = cg_loop_begin(cg, LLVMGetParam(fn, 1), LLVMGetParam(fn, 2), cg_i64(cg, 1));
  LLVMValueRef splitm = LLVMBuildICmp(cg->B, LLVMIntNE, f[GX_SPLITM], cg_i64(cg, 0), "");
  LLVMValueRef sm, em, sn, en;
  chunk_range(cg, l.iv, f[GX_NCHUNKS], M, cg->MR, &sm, &em);
  chunk_range(cg, l.iv, f[GX_NCHUNKS], N, cg->NR, &sn, &en);
  LLVMValueRef rs = LLVMBuildSelect(cg->B, splitm, sm, z, ""), re = LLVMBuildSelect(cg->B, splitm, em, M, "");
  LLVMValueRef cs = LLVMBuildSelect(cg->B, splitm, z, sn, ""), ce = LLVMBuildSelect(cg->B, splitm, N, en, "");
  LLVMValueRef Ms = sub(cg, re, rs), Ns = sub(cg, ce, cs);
  LLVMValueRef As = src_ptr(cg, ta, f[GX_A], mul(cg, rs, ars));
  LLVMValueRef Bs = src_ptr(cg, tb, f[GX_B], mul(cg, cs, bcs));
  LLVMValueRef Cs = fptr(cg, f[GX_C], add(cg, mul(cg, rs, ldc), cs));
  LLVMValueRef pk = fptr(cg, f[GX_PACK], mul(cg, l.iv, cg_i64(cg, cg_gemm_pack_floats(cg))));
  LLVMValueRef bp = fptr(cg, pk, cg_i64(cg, cg->pack_a_floats));
  LLVMValueRef nonempty = LLVMBuildAnd(cg->B, LLVMBuildICmp(cg->B, LLVMIntSGT, Ms, z, ""),
                                       LLVMBuildICmp(cg->B, LLVMIntSGT, Ns, z, ""), "");
  LLVMBasicBlockRef join = cg_if_begin(cg, nonempty);
  LLVMValueRef args[16] = {Ms, Ns, K, As, ars, acs, Bs, brs, bcs, Cs, ldc, pk, bp, f[GX_EFN], f[GX_ECTX], z};
  LLVMBuildCall2(cg->B, LLVMGlobalGetValueType(core), core, args, 16, "");
  cg_if_end(cg, join);
  cg_loop_end(cg, &l);
  LLVMBuildRetVoid(cg->B);
  return fn;
}

/* Batched products: one core call per batch index, the batches split into chunks (one
 * task per chunk, each with its own pack buffers). The result's batch dims are
 * [nb / d1, d1]; batch bi reads a at (bi / d1) sa0 + (bi % d1) sa1 (0 strides where a
 * broadcasts) and b likewise, and writes C at bi M N. */
enum { BX_A, BX_B, BX_C, BX_PACK, BX_M, BX_N, BX_K, BX_NCHUNKS, BX_EFN, BX_ECTX, BX_VARIANT, BX_NB, BX_D1, BX_SA0,
       BX_SA1, BX_SB0, BX_SB1, BX__COUNT };

static LLVMTypeRef bctx_type(Cg *cg) {
  LLVMTypeRef f[BX__COUNT];
  for (int i = 0; i < BX__COUNT; i++)
    f[i] = i <= BX_PACK || i == BX_EFN || i == BX_ECTX ? cg->t_ptr : cg->t_i64;
  return LLVMStructTypeInContext(cg->C, f, BX__COUNT, 0);
}

static LLVMValueRef build_batch_task(Cg *cg, LLVMValueRef core, const char *name, CgElem ta, CgElem tb) {
  LLVMValueRef f[BX__COUNT];
  LLVMValueRef fn = task_begin(cg, name, bctx_type(cg), BX__COUNT, f);
  LLVMValueRef M = f[BX_M], N = f[BX_N], K = f[BX_K], st[4];
  variant_strides(cg, f[BX_VARIANT], M, N, K, st);
  LLVMValueRef ars = st[0], acs = st[1], brs = st[2], bcs = st[3];
  LLVMValueRef one = cg_i64(cg, 1), z = cg_i64(cg, 0);
  CgLoop l = cg_loop_begin(cg, LLVMGetParam(fn, 1), LLVMGetParam(fn, 2), one);
  LLVMValueRef b0 = LLVMBuildSDiv(cg->B, mul(cg, l.iv, f[BX_NB]), f[BX_NCHUNKS], "");
  LLVMValueRef b1 = LLVMBuildSDiv(cg->B, mul(cg, add(cg, l.iv, one), f[BX_NB]), f[BX_NCHUNKS], "");
  LLVMValueRef pk = fptr(cg, f[BX_PACK], mul(cg, l.iv, cg_i64(cg, cg_gemm_pack_floats(cg))));
  LLVMValueRef bp = fptr(cg, pk, cg_i64(cg, cg->pack_a_floats));
  CgLoop lb = cg_loop_begin(cg, b0, b1, one);
  LLVMValueRef i0 = LLVMBuildSDiv(cg->B, lb.iv, f[BX_D1], ""), i1 = LLVMBuildSRem(cg->B, lb.iv, f[BX_D1], "");
  LLVMValueRef As = src_ptr(cg, ta, f[BX_A], add(cg, mul(cg, i0, f[BX_SA0]), mul(cg, i1, f[BX_SA1])));
  LLVMValueRef Bs = src_ptr(cg, tb, f[BX_B], add(cg, mul(cg, i0, f[BX_SB0]), mul(cg, i1, f[BX_SB1])));
  LLVMValueRef Cs = fptr(cg, f[BX_C], mul(cg, lb.iv, mul(cg, M, N)));
  LLVMValueRef args[16] = {M, N, K, As, ars, acs, Bs, brs, bcs, Cs, N, pk, bp, f[BX_EFN], f[BX_ECTX], z};
  LLVMBuildCall2(cg->B, LLVMGlobalGetValueType(core), core, args, 16, "");
  cg_loop_end(cg, &lb);
  cg_loop_end(cg, &l);
  LLVMBuildRetVoid(cg->B);
  return fn;
}

/* ------------------------------------------------------------------ epilogues */

/* What an epilogue reads: the whole C (to place a tile), the bias, aux and out2, for
 * operands per row (a convolution's: C is [B, O, Ho Wo] seen as rows of Ho Wo) the
 * period O of the rows' channel, and batchnorm's per-channel operands. */
enum { EX_C, EX_BIAS, EX_AUX, EX_OUT2, EX_ROWS, EX_MEAN, EX_RSTD, EX_GAMMA, EX_BETA, EX_OUT3, EX__COUNT };

static LLVMTypeRef ectx_type(Cg *cg) {
  LLVMTypeRef f[EX__COUNT] = {cg->t_ptr, cg->t_ptr, cg->t_ptr, cg->t_ptr, cg->t_i64,
                              cg->t_ptr, cg->t_ptr, cg->t_ptr, cg->t_ptr, cg->t_ptr};
  return LLVMStructTypeInContext(cg->C, f, EX__COUNT, 0);
}

typedef struct {
  int flags;
  LLVMValueRef C, bias, aux, out2, out3, row, col;   /* row: element offset of the row in C */
  LLVMValueRef rowv[CG_EPV__COUNT];            /* per-row operands: bias[(row / ldc) % rows], ... */
} EpiCtx;

/* the epilogue's activation and mask flags, one each at most, and their ops */
static const struct {
  int flag;
  Op op;
} ep_ops[] = {
    {CG_EP_RELU, OP_RELU}, {CG_EP_TANH, OP_TANH}, {CG_EP_SIGMOID, OP_SIGMOID}, {CG_EP_GELU, OP_GELU},
    {CG_EP_GELU_TANH, OP_GELU_TANH}, {CG_EP_RELU_GRAD, OP_RELU_GRAD}, {CG_EP_TANH_GRAD, OP_TANH_GRAD},
    {CG_EP_SIGMOID_GRAD, OP_SIGMOID_GRAD}, {CG_EP_GELU_GRAD, OP_GELU_GRAD}, {CG_EP_GELU_TANH_GRAD, OP_GELU_TANH_GRAD},
};

static Op ep_op(int flags, int among) {
  for (size_t k = 0; k < sizeof ep_ops / sizeof ep_ops[0]; k++)
    if (flags & among & ep_ops[k].flag) return ep_ops[k].op;
  return OP_INPUT;
}
Op cg_ep_act(int flags) { return ep_op(flags, CG_EP_ACTS); }
Op cg_ep_mask(int flags) { return ep_op(flags, CG_EP_MASKS); }
int cg_ep_flag_of(Op op) {
  for (size_t k = 0; k < sizeof ep_ops / sizeof ep_ops[0]; k++)
    if (ep_ops[k].op == op) return ep_ops[k].flag;
  return 0;
}

static LLVMValueRef epi_inst(Cg *cg, Op op, LLVMValueRef a, LLVMValueRef b) {
  Inst in;
  memset(&in, 0, sizeof in);
  in.op = (uint16_t)op;
  return cg_ew_apply(cg, &in, a, b);
}

LLVMValueRef cg_ep_channel(Cg *cg, int flags, LLVMValueRef x, const LLVMValueRef v[CG_EPV__COUNT]) {
  if (flags & CG_EP_BIAS_ROW) x = epi_inst(cg, OP_ADD, x, v[CG_EPV_BIAS]);
  if (flags & CG_EP_BN_ROW)   /* bn_norm's xhat = (x - m) r (codegen/kernels.c) */
    x = LLVMBuildFMul(cg->B, LLVMBuildFSub(cg->B, x, v[CG_EPV_MEAN], ""), v[CG_EPV_RSTD], "");
  if (flags & CG_EP_SCALE_ROW) x = epi_inst(cg, OP_MUL, x, v[CG_EPV_GAMMA]);
  if (flags & CG_EP_SHIFT_ROW) x = epi_inst(cg, OP_ADD, x, v[CG_EPV_BETA]);
  return x;
}

/* x = C[row + j] (+ bias[col + j]) (per-channel steps) (masked by aux) (activated),
 * stored (twice). The formulas are the unfused kernels' (cg_ew_apply, cg_ep_channel),
 * so fusing changes no bit. */
static void epi_body(Cg *cg, void *p, LLVMValueRef j, LLVMTypeRef T) {
  EpiCtx *c = p;
  LLVMValueRef idx = add(cg, c->row, j);
  LLVMValueRef x = cg_load(cg, T, c->C, idx);
  if (c->flags & CG_EP_BIAS) x = epi_inst(cg, OP_ADD, x, cg_load(cg, T, c->bias, add(cg, c->col, j)));
  LLVMValueRef rv[CG_EPV__COUNT] = {NULL};
  for (int k = 0; k < CG_EPV__COUNT; k++)
    if (c->rowv[k]) rv[k] = cg_is_vec(T) ? cg_splat(cg, c->rowv[k], T) : c->rowv[k];
  x = cg_ep_channel(cg, c->flags, x, rv);
  if (c->flags & CG_EP_MASKS) {
    LLVMValueRef aux = c->flags & CG_EP_AUX16
                           ? cg_load_elem(cg, T, c->flags & CG_EP_AUX_BF16 ? CG_ELEM_BF16 : CG_ELEM_F16, c->aux, idx)
                           : cg_load(cg, T, c->aux, idx);
    x = epi_inst(cg, cg_ep_mask(c->flags), aux, x);
  }
  bool pre = c->flags & CG_EP_ACTS && c->flags & CG_EP_STORE_PRE;
  LLVMValueRef y = c->flags & CG_EP_ACTS ? epi_inst(cg, cg_ep_act(c->flags), x, NULL) : x;
  cg_store(cg, pre ? x : y, c->C, idx);
  if (c->flags & CG_EP_STORE16)   /* out2 in 16 bits: the final value */
    cg_store_elem(cg, y, c->flags & CG_EP_STORE_BF16 ? CG_ELEM_BF16 : CG_ELEM_F16, c->out2, idx);
  else if (pre)
    cg_store(cg, y, c->out2, idx);
  if (c->flags & CG_EP_PRE16)     /* out3 in 16 bits: the pre-activation C keeps */
    cg_store_elem(cg, x, c->flags & CG_EP_STORE_BF16 ? CG_ELEM_BF16 : CG_ELEM_F16, c->out3, idx);
}

static LLVMValueRef build_epilogue(Cg *cg, int flags) {
  char name[48];
  snprintf(name, sizeof name, "bpcc_gemm_epilogue_%d", flags);
  LLVMValueRef fn = cg_new_function(cg, name, epi_type(cg), true);
  cg->fn = fn;
  LLVMPositionBuilderAtEnd(cg->B, LLVMAppendBasicBlockInContext(cg->C, fn, "entry"));
  LLVMTypeRef et = ectx_type(cg);
  LLVMValueRef ectx = LLVMGetParam(fn, 0), tile = LLVMGetParam(fn, 1), ldc = LLVMGetParam(fn, 2);
  LLVMValueRef mr = LLVMGetParam(fn, 3), nr = LLVMGetParam(fn, 4);
  LLVMValueRef f[EX__COUNT];
  for (int i = 0; i < EX__COUNT; i++)
    f[i] = LLVMBuildLoad2(cg->B, LLVMStructGetTypeAtIndex(et, (unsigned)i), LLVMBuildStructGEP2(cg->B, et, ectx, (unsigned)i, ""), "");
  /* the tile's element offset in C, and its column */
  LLVMValueRef bytes = LLVMBuildSub(cg->B, LLVMBuildPtrToInt(cg->B, tile, cg->t_i64, ""),
                                    LLVMBuildPtrToInt(cg->B, f[EX_C], cg->t_i64, ""), "");
  LLVMValueRef off = LLVMBuildSDiv(cg->B, bytes, cg_i64(cg, cg->esize), "");
  LLVMValueRef col = LLVMBuildSRem(cg->B, off, ldc, "");
  /* a full tile (nr = NR): NR / W vectors a row; an edge tile: a rolled scalar loop.
   * Rows are not unrolled: the function stays small, the loads hit L1 either way. */
  LLVMValueRef fullw = LLVMBuildICmp(cg->B, LLVMIntEQ, nr, cg_i64(cg, cg->NR), "");
  LLVMBasicBlockRef bfull = LLVMAppendBasicBlockInContext(cg->C, fn, "full");
  LLVMBasicBlockRef bedge = LLVMAppendBasicBlockInContext(cg->C, fn, "edge");
  LLVMBasicBlockRef bret = LLVMAppendBasicBlockInContext(cg->C, fn, "ret");
  LLVMBuildCondBr(cg->B, fullw, bfull, bedge);
  for (int full = 1; full >= 0; full--) {
    LLVMPositionBuilderAtEnd(cg->B, full ? bfull : bedge);
    CgLoop li = cg_loop_begin(cg, cg_i64(cg, 0), mr, cg_i64(cg, 1));
    EpiCtx c = {flags, f[EX_C], f[EX_BIAS], f[EX_AUX], f[EX_OUT2], f[EX_OUT3], add(cg, off, mul(cg, li.iv, ldc)), col, {NULL}};
    if (flags & (CG_EP_BIAS_ROW | CG_EP_BN_ROW | CG_EP_SCALE_ROW | CG_EP_SHIFT_ROW)) {
      LLVMValueRef ch = LLVMBuildSRem(cg->B, LLVMBuildSDiv(cg->B, c.row, ldc, ""), f[EX_ROWS], "");
      static const int src[CG_EPV__COUNT] = {EX_BIAS, EX_MEAN, EX_RSTD, EX_GAMMA, EX_BETA};
      for (int k = 0; k < CG_EPV__COUNT; k++)
        if (cg_ep_uses(flags, k)) c.rowv[k] = cg_load(cg, cg->t_f32, f[src[k]], ch);
    }
    if (full) {
      for (int v = 0; v < cg->NR; v += cg->W) epi_body(cg, &c, cg_i64(cg, v), cg->W > 1 ? cg->t_vec : cg->t_f32);
    } else {
      CgLoop lj = cg_loop_begin(cg, cg_i64(cg, 0), nr, cg_i64(cg, 1));
      epi_body(cg, &c, lj.iv, cg->t_f32);
      cg_loop_end_hint(cg, &lj, CG_LOOP_NO_VECTORIZE | CG_LOOP_NO_UNROLL);
    }
    cg_loop_end_hint(cg, &li, CG_LOOP_NO_VECTORIZE | CG_LOOP_NO_UNROLL);
    LLVMBuildBr(cg->B, bret);
  }
  LLVMPositionBuilderAtEnd(cg->B, bret);
  LLVMBuildRetVoid(cg->B);
  return fn;
}

/* ------------------------------------------------------------------ the call site */

/* Build a helper function with build(), then come back to the entry point being emitted. */
static LLVMValueRef build_aside(Cg *cg, bool task, int flags) {
  CgAside aside = cg_aside_begin(cg);
  LLVMValueRef made;
  if (task) {
    made = build_task(cg, build_core(cg, CG_ELEM_FLOAT, CG_ELEM_FLOAT, "bpcc_gemm_core"), "bpcc_gemm_task", CG_ELEM_FLOAT,
                      CG_ELEM_FLOAT);
  } else if (flags < 0) {   /* the batched task, on the core built with the plain one */
    made = build_batch_task(cg, LLVMGetNamedFunction(cg->M, "bpcc_gemm_core"), "bpcc_gemm_batch_task", CG_ELEM_FLOAT,
                            CG_ELEM_FLOAT);
  } else {
    made = build_epilogue(cg, flags);
  }
  cg_aside_end(cg, aside);
  return made;
}

LLVMValueRef cg_gemm_core(Cg *cg) {
  if (!cg->gemm_task) cg->gemm_task = build_aside(cg, true, 0);
  LLVMValueRef core = LLVMGetNamedFunction(cg->M, "bpcc_gemm_core");
  if (!core) ir_die("cg_gemm_core: no core");
  return core;
}

/* 16-bit operands: the f32 core with packing that widens them (the conversion path of
 * gemm_lowp.c), and the tasks of every core, named by the operand types. */
static const char *const elem_tag[] = {"f", "b", "h"};

LLVMValueRef cg_gemm_convert_core(Cg *cg, CgElem ta, CgElem tb) {
  char name[48];
  snprintf(name, sizeof name, "bpcc_gemm_core_cvt_%s%s", elem_tag[ta], elem_tag[tb]);
  LLVMValueRef core = LLVMGetNamedFunction(cg->M, name);
  if (core) return core;
  CgAside aside = cg_aside_begin(cg);
  core = build_core(cg, ta, tb, name);
  cg_aside_end(cg, aside);
  return core;
}

static LLVMValueRef typed_task(Cg *cg, const CgGemmTypes *ty, bool batched) {
  CgElem ta = ty ? ty->a : CG_ELEM_FLOAT, tb = ty ? ty->b : CG_ELEM_FLOAT;
  if (ta == CG_ELEM_FLOAT && tb == CG_ELEM_FLOAT) {
    if (!cg->gemm_task) cg->gemm_task = build_aside(cg, true, 0);
    if (!batched) return cg->gemm_task;
    LLVMValueRef task = LLVMGetNamedFunction(cg->M, "bpcc_gemm_batch_task");
    return task ? task : build_aside(cg, false, -1);
  }
  if (cg->esize != 4) ir_die("cg_gemm: 16-bit operands in an f64 model");
  char name[48];
  snprintf(name, sizeof name, "bpcc_gemm_%stask_%s%s", batched ? "batch_" : "", elem_tag[ta], elem_tag[tb]);
  LLVMValueRef task = LLVMGetNamedFunction(cg->M, name);
  if (task) return task;
  LLVMValueRef core = cg_gemm_lowp_core(cg, ta, tb);
  CgAside aside = cg_aside_begin(cg);
  task = batched ? build_batch_task(cg, core, name, ta, tb) : build_task(cg, core, name, ta, tb);
  cg_aside_end(cg, aside);
  return task;
}

void cg_gemm_epilogue(Cg *cg, const CgEpilogue *ep, LLVMValueRef Cm, LLVMValueRef rows, LLVMValueRef *efn,
                      LLVMValueRef *ectx) {
  *efn = LLVMConstNull(cg->t_ptr), *ectx = LLVMConstNull(cg->t_ptr);
  if (!ep || !ep->flags) return;
  if (ep->flags < 0 || ep->flags >= CG_EP__LIMIT || (ep->flags & CG_EP_STORE16) == CG_EP_STORE16 ||
      (ep->flags & CG_EP_AUX16) == CG_EP_AUX16 || (ep->flags & CG_EP_AUX16 && !(ep->flags & CG_EP_MASKS)) ||
      (ep->flags & CG_EP_PRE16 && (!(ep->flags & CG_EP_STORE16) || !(ep->flags & CG_EP_STORE_PRE) || !(ep->flags & CG_EP_ACTS))))
    ir_die("cg_gemm: epilogue flags %d", ep->flags);
  char name[48];   /* one function per flag set, built on first use */
  snprintf(name, sizeof name, "bpcc_gemm_epilogue_%d", ep->flags);
  *efn = LLVMGetNamedFunction(cg->M, name);
  if (!*efn) *efn = build_aside(cg, false, ep->flags);
  LLVMTypeRef et = ectx_type(cg);
  *ectx = cg_alloca(cg, et, "epictx");
  LLVMValueRef ev[EX__COUNT] = {Cm, ep->bias, ep->aux, ep->out2, rows, ep->mean, ep->rstd, ep->gamma, ep->beta, ep->out3};
  for (int i = 0; i < EX__COUNT; i++)
    LLVMBuildStore(cg->B, ev[i] ? ev[i] : LLVMConstNull(LLVMStructGetTypeAtIndex(et, (unsigned)i)),
                   LLVMBuildStructGEP2(cg->B, et, *ectx, (unsigned)i, ""));
}

void cg_gemm(Cg *cg, Op op, const CgGemmTypes *ty, LLVMValueRef A, LLVMValueRef Bm, LLVMValueRef Cm, LLVMValueRef M,
             LLVMValueRef N, LLVMValueRef K, LLVMValueRef pack, const CgEpilogue *ep) {
  int variant = op == OP_MATMUL_NT ? V_NT : op == OP_MATMUL_TN ? V_TN : V_NN;
  LLVMValueRef task = typed_task(cg, ty, false);
  LLVMValueRef efn, ectx;
  cg_gemm_epilogue(cg, ep, Cm, NULL, &efn, &ectx);
  LLVMBuilderRef B = cg->B;
  LLVMTypeRef ct = ctx_type(cg);
  LLVMValueRef ctx = cg_alloca(cg, ct, "gemmctx");
  /* chunks: one below the size threshold, else the pool's threads (at most gemm_chunks),
   * split along the longer of M and N: every chunk packs the whole of the other
   * operand's block, so the split duplicates the packing of A (M x K) when it cuts N
   * and of B (K x N) when it cuts M. [B*T, 128] @ [128, 512] cut along N had each
   * thread pack all 2048 rows of A (1 MiB) for a quarter of a millisecond of FMAs.
   * A side with fewer than 2 panels per chunk is not cut (neither: one chunk). */
  LLVMValueRef nth = LLVMBuildSExt(B, cg_frame_field(cg, CG_FR_NTHREADS), cg->t_i64, "");
  nth = cg_min_i64(cg, nth, cg_i64(cg, cg->gemm_chunks));
  nth = LLVMBuildSelect(B, LLVMBuildICmp(B, LLVMIntSLT, nth, cg_i64(cg, 1), ""), cg_i64(cg, 1), nth, "");
  LLVMValueRef macs = mul(cg, mul(cg, M, N), K);
  LLVMValueRef big = LLVMBuildICmp(B, LLVMIntSGE, macs, cg_i64(cg, CG_GEMM_PARALLEL_MACS), "");
  /* a product of 1.3M multiply-adds over 128 x 1024 floats (M2's output layer, forward
   * and backward) took 0.246 ms on one thread, 0.129 on two (the three together) */
  LLVMValueRef elems = add(cg, add(cg, mul(cg, M, N), mul(cg, M, K)), mul(cg, K, N));
  LLVMValueRef wide = LLVMBuildAnd(B, LLVMBuildICmp(B, LLVMIntSGE, macs, cg_i64(cg, CG_GEMM_PARALLEL_MACS / 4), ""),
                                   LLVMBuildICmp(B, LLVMIntSGE, elems, cg_i64(cg, CG_GEMM_PARALLEL_FLOATS), ""), "");
  big = LLVMBuildOr(B, big, wide, "");
  LLVMValueRef nch = LLVMBuildSelect(B, big, nth, cg_i64(cg, 1), "");
  LLVMValueRef pn = LLVMBuildSDiv(B, add(cg, N, cg_i64(cg, cg->NR - 1)), cg_i64(cg, cg->NR), "");
  LLVMValueRef pm = LLVMBuildSDiv(B, add(cg, M, cg_i64(cg, cg->MR - 1)), cg_i64(cg, cg->MR), "");
  LLVMValueRef twice = mul(cg, nch, cg_i64(cg, 2));
  LLVMValueRef mtoo = LLVMBuildICmp(B, LLVMIntSLT, pm, twice, "");
  LLVMValueRef splitm = LLVMBuildOr(B, LLVMBuildICmp(B, LLVMIntSLT, pn, twice, ""),
                                    LLVMBuildAnd(B, LLVMBuildICmp(B, LLVMIntSGT, M, N, ""), LLVMBuildNot(B, mtoo, ""), ""), "");
  nch = LLVMBuildSelect(B, LLVMBuildAnd(B, splitm, mtoo, ""), cg_i64(cg, 1), nch, "nchunks");
  LLVMValueRef vals[GX__COUNT] = {A, Bm, Cm, pack, M, N, K, nch, LLVMBuildZExt(B, splitm, cg->t_i64, ""), efn, ectx,
                                  cg_i64(cg, variant)};
  for (int i = 0; i < GX__COUNT; i++) LLVMBuildStore(B, vals[i], LLVMBuildStructGEP2(B, ct, ctx, (unsigned)i, ""));
  LLVMValueRef par = LLVMBuildICmp(B, LLVMIntSGT, nch, cg_i64(cg, 1), "");
  LLVMBasicBlockRef bpar = LLVMAppendBasicBlockInContext(cg->C, cg->fn, "gemmpar");
  LLVMBasicBlockRef bser = LLVMAppendBasicBlockInContext(cg->C, cg->fn, "gemmser");
  LLVMBasicBlockRef bjoin = LLVMAppendBasicBlockInContext(cg->C, cg->fn, "gemmdone");
  LLVMBuildCondBr(B, par, bpar, bser);
  LLVMPositionBuilderAtEnd(B, bpar);
  LLVMValueRef pf = cg_frame_field(cg, CG_FR_PARALLEL_FOR);
  LLVMValueRef pargs[5] = {cg_frame_field(cg, CG_FR_POOL), nch, cg_i64(cg, 1), task, ctx};
  LLVMBuildCall2(B, cg->t_pfor, pf, pargs, 5, "");
  LLVMBuildBr(B, bjoin);
  LLVMPositionBuilderAtEnd(B, bser);
  LLVMValueRef sargs[4] = {ctx, cg_i64(cg, 0), cg_i64(cg, 1), cg_i32(cg, 0)};
  LLVMBuildCall2(B, cg->t_task, task, sargs, 4, "");
  LLVMBuildBr(B, bjoin);
  LLVMPositionBuilderAtEnd(B, bjoin);
}

void cg_gemm_batched(Cg *cg, Op op, const CgGemmTypes *ty, LLVMValueRef A, LLVMValueRef Bm, LLVMValueRef Cm,
                     LLVMValueRef M, LLVMValueRef N, LLVMValueRef K, const CgBatch *bt, LLVMValueRef pack,
                     const CgEpilogue *ep) {
  int variant = op == OP_MATMUL_NT ? V_NT : op == OP_MATMUL_TN ? V_TN : V_NN;
  LLVMValueRef task = typed_task(cg, ty, true);
  /* the epilogue sees the whole C: a tile's offset from it gives its column and its
   * place in aux and out2, whichever batch wrote it */
  LLVMValueRef efn, ectx;
  cg_gemm_epilogue(cg, ep, Cm, NULL, &efn, &ectx);
  LLVMBuilderRef B = cg->B;
  LLVMTypeRef ct = bctx_type(cg);
  LLVMValueRef ctx = cg_alloca(cg, ct, "gemmbctx");
  LLVMValueRef nb = mul(cg, bt->d0, bt->d1);
  /* chunks of whole batches: the pool's threads (at most gemm_chunks and nb) once the
   * batches together pass the size threshold */
  LLVMValueRef nth = LLVMBuildSExt(B, cg_frame_field(cg, CG_FR_NTHREADS), cg->t_i64, "");
  nth = cg_min_i64(cg, cg_min_i64(cg, nth, cg_i64(cg, cg->gemm_chunks)), nb);
  nth = LLVMBuildSelect(B, LLVMBuildICmp(B, LLVMIntSLT, nth, cg_i64(cg, 1), ""), cg_i64(cg, 1), nth, "");
  LLVMValueRef macs = mul(cg, mul(cg, mul(cg, M, N), K), nb);
  LLVMValueRef big = LLVMBuildICmp(B, LLVMIntSGE, macs, cg_i64(cg, CG_GEMM_PARALLEL_MACS), "");
  LLVMValueRef nch = LLVMBuildSelect(B, big, nth, cg_i64(cg, 1), "nchunks");
  LLVMValueRef vals[BX__COUNT] = {A, Bm, Cm, pack, M, N, K, nch, efn, ectx, cg_i64(cg, variant), nb, bt->d1,
                                  bt->sa0, bt->sa1, bt->sb0, bt->sb1};
  for (int i = 0; i < BX__COUNT; i++) LLVMBuildStore(B, vals[i], LLVMBuildStructGEP2(B, ct, ctx, (unsigned)i, ""));
  cg_run_task(cg, LLVMBuildICmp(B, LLVMIntSGT, nch, cg_i64(cg, 1), ""), nch, cg_i64(cg, 1), task, ctx, nch);
}
