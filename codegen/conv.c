/* codegen/conv.c — conv2d, conv2d_bwd_data and conv2d_bwd_weight on the shared GEMM core
 * (gemm.c), through an im2col buffer per chunk in the workspace.
 *
 * The IR's layouts stay: images NCHW, weights [O, C, kh, kw] (PyTorch's). Per image b,
 * with col[(c,u,v), (i,j)] = x[b, c, s i - p + d u, s j - p + d v] (0 in the padding),
 * CKK = C kh kw rows and P = Ho Wo columns, the three ops are products of row-major
 * matrices that the core reads with strides, without any relayout of x, y or W:
 *
 *   conv2d             y_b[O, P]     = W[O, CKK] col_b[CKK, P]          (NN; + bias, bn, act)
 *   conv2d_bwd_data    dcol[CKK, P]  = W^T dy_b[O, P], dx_b = col2im(dcol) (TN)
 *   conv2d_bwd_weight  dW[O, CKK]   += dy_b[O, P] col_b^T                 (NT, summed over b)
 *
 * so y_b and dx_b are written in place in the NCHW result, and a 1x1 convolution with
 * stride 1 and no padding reads (writes) x_b itself as col (dcol): no buffer. Where
 * these products are too skinny, direct paths measured faster (each below, at its code):
 *
 *   conv2d             output channels in the lanes (lanes_fwd_ok: O fills the vectors),
 *                      else register-blocked rows (rowconv_ok: stride 1, short rows)
 *   conv2d_bwd_data    images in the lanes (bl_floats: stride 1, C <= 12), else the
 *                      transposed convolution's rows (rowconv_ok), else im2col's GEMM
 *   conv2d_bwd_weight  register-blocked rows for few output channels (rowconv_ok), else
 *                      the output channels in the lanes (lanes_nvo: half of them used)
 *
 * Threads: forward and backward-data split the batch into chunks of whole images (or
 * groups of W images in the lanes; each image is computed the same way whatever the
 * chunk, so results do not depend on the thread count); backward-weights sums over
 * images, so the GEMM path splits its result instead, into chunks of W columns of dW
 * (the rows of col each chunk needs), or of MR-row panels when dW has too few columns,
 * every chunk running the images in order 0..B-1; the rows path splits the images
 * into the compile-time number of chunks and adds their partial sums in chunk order
 * (rowconv_bww); the lanes path splits its taps in whole blocks, every chunk running the
 * images in order (lanes_bww). Either way the sums are the same on one thread or two.
 * Each chunk has its own pack buffers and im2col buffer in the workspace (indexed by
 * chunk, cg_gemm_pack_floats each), sized by cg_gemm_pack_sizes for the model's
 * convolutions; nothing is allocated in the step. */
#include <stdlib.h>
#include <string.h>

#include "codegen/cg.h"

bool cg_conv_direct_b(Func *f, const Inst *in) {
  const TensorType *kt = in->op == OP_CONV2D_BWD_WEIGHT ? ir_vtype(f, (int32_t)(in - f->insts)) : ir_vtype(f, in->args[1]);
  return kt->dims[2] == 1 && kt->dims[3] == 1 && in->iattr[0] == 1 && in->iattr[1] == 0;
}

typedef struct {
  Op op;
  int64_t C, H, W, O, KH, KW, HO, WO, s, p, d, CKK, P;
  bool direct;   /* 1x1, stride 1, no padding: col is the image */
  bool rowconv;  /* forward as register-blocked rows, no GEMM (rowconv_ok) */
  bool batchl;   /* backward-data with the images in the lanes (bl_floats) */
  bool lanes;    /* forward with the output channels in the lanes (lanes_fwd_ok) */
  bool flip;     /* the rows of backward-data's transposed convolution (transposed()) */
  int epflags;   /* the forward's epilogue (CG_EP_*) */
} Geom;

static LLVMValueRef add(Cg *cg, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildAdd(cg->B, a, b, ""); }
static LLVMValueRef mul(Cg *cg, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildMul(cg->B, a, b, ""); }
static LLVMValueRef sub(Cg *cg, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildSub(cg->B, a, b, ""); }
static LLVMValueRef k64(Cg *cg, int64_t v) { return cg_i64(cg, v); }
static LLVMValueRef fptr(Cg *cg, LLVMValueRef p, LLVMValueRef idx) { return cg_gep(cg, cg->t_f32, p, idx); }
static LLVMValueRef max0(Cg *cg, LLVMValueRef n) {
  return LLVMBuildSelect(cg->B, LLVMBuildICmp(cg->B, LLVMIntSGT, n, k64(cg, 0), ""), n, k64(cg, 0), "");
}

/* ceil(max(n, 0) / s) for s >= 1: the first index whose s * index reaches n */
static LLVMValueRef ceil_div_pos(Cg *cg, LLVMValueRef n, int64_t s) {
  return LLVMBuildSDiv(cg->B, add(cg, max0(cg, n), k64(cg, s - 1)), k64(cg, s), "");
}

/* The output indices t in [lo, hi) whose input coordinate s t - p + off lies in
 * [0, extent): hi >= lo. */
static void valid_range(Cg *cg, const Geom *g, LLVMValueRef off, int64_t extent, int64_t nout, LLVMValueRef *lo,
                        LLVMValueRef *hi) {
  *lo = cg_min_i64(cg, ceil_div_pos(cg, sub(cg, k64(cg, g->p), off), g->s), k64(cg, nout));
  LLVMValueRef h = cg_min_i64(cg, ceil_div_pos(cg, sub(cg, k64(cg, extent + g->p), off), g->s), k64(cg, nout));
  *hi = LLVMBuildSelect(cg->B, LLVMBuildICmp(cg->B, LLVMIntSLT, h, *lo, ""), *lo, h, "");
}

/* [s, e) of chunk c of n over len, in whole panels of P, balanced (gemm.c's split) */
static void chunk_range(Cg *cg, LLVMValueRef c, LLVMValueRef nch, LLVMValueRef len, int64_t P, LLVMValueRef *s,
                        LLVMValueRef *e) {
  LLVMValueRef panels = LLVMBuildSDiv(cg->B, add(cg, len, k64(cg, P - 1)), k64(cg, P), "");
  LLVMValueRef p0 = LLVMBuildSDiv(cg->B, mul(cg, c, panels), nch, "");
  LLVMValueRef p1 = LLVMBuildSDiv(cg->B, mul(cg, add(cg, c, k64(cg, 1)), panels), nch, "");
  *s = cg_min_i64(cg, mul(cg, p0, k64(cg, P)), len);
  *e = cg_min_i64(cg, mul(cg, p1, k64(cg, P)), len);
}

/* ---- row segments: zero, copy (im2col), add (col2im); stride 1 as vector code ---- */

typedef struct {
  int kind;              /* 0: dst = 0; 1: dst = src; 2: dst += src */
  LLVMValueRef dst, src;
} Seg;

static void seg_body(Cg *cg, void *p, LLVMValueRef j, LLVMTypeRef T) {
  Seg *c = p;
  if (c->kind == 0) {
    cg_store(cg, cg_fconst(cg, T, 0.0), c->dst, j);
  } else if (c->kind == 1) {
    cg_store(cg, cg_load(cg, T, c->src, j), c->dst, j);
  } else {
    cg_store(cg, LLVMBuildFAdd(cg->B, cg_load(cg, T, c->dst, j), cg_load(cg, T, c->src, j), ""), c->dst, j);
  }
}

static void seg(Cg *cg, int kind, LLVMValueRef dst, LLVMValueRef src, LLVMValueRef n) {
  Seg c = {kind, dst, src};
  cg_vloop(cg, n, seg_body, &c);
}

/* n elements; the image side strided by s (the col side is contiguous) */
static void seg_strided(Cg *cg, const Geom *g, int kind, LLVMValueRef col, LLVMValueRef img, LLVMValueRef n) {
  if (g->s == 1) {
    if (kind == 1) seg(cg, 1, col, img, n);
    else seg(cg, 2, img, col, n);
    return;
  }
  CgLoop l = cg_loop_begin(cg, k64(cg, 0), n, k64(cg, 1));
  LLVMValueRef ii = mul(cg, l.iv, k64(cg, g->s));
  if (kind == 1) {
    cg_store(cg, cg_load(cg, cg->t_f32, img, ii), col, l.iv);
  } else {
    LLVMValueRef v = LLVMBuildFAdd(cg->B, cg_load(cg, cg->t_f32, img, ii), cg_load(cg, cg->t_f32, col, l.iv), "");
    cg_store(cg, v, img, ii);
  }
  cg_loop_end_hint(cg, &l, CG_LOOP_NO_VECTORIZE | CG_LOOP_NO_UNROLL);
}

/* ---- stride 1: whole vectors, masked at the edges ---- */

/* llvm.masked.load / store of <W x elem> at p (alignment of one element) */
static LLVMValueRef mload(Cg *cg, LLVMValueRef p, LLVMValueRef mask) {
  LLVMTypeRef ov[2] = {cg->t_vec, cg->t_ptr};
  unsigned id = LLVMLookupIntrinsicID("llvm.masked.load", 16);
  LLVMValueRef a[4] = {p, cg_i32(cg, cg->esize), mask, cg_fconst(cg, cg->t_vec, 0.0)};
  return LLVMBuildCall2(cg->B, LLVMIntrinsicGetType(cg->C, id, ov, 2), LLVMGetIntrinsicDeclaration(cg->M, id, ov, 2), a, 4, "");
}

static void mstore(Cg *cg, LLVMValueRef v, LLVMValueRef p, LLVMValueRef mask) {
  LLVMTypeRef ov[2] = {cg->t_vec, cg->t_ptr};
  unsigned id = LLVMLookupIntrinsicID("llvm.masked.store", 17);
  LLVMValueRef a[4] = {v, p, cg_i32(cg, cg->esize), mask};
  LLVMBuildCall2(cg->B, LLVMIntrinsicGetType(cg->C, id, ov, 2), LLVMGetIntrinsicDeclaration(cg->M, id, ov, 2), a, 4, "");
}

/* lanes jb + l in [lo, hi) */
static LLVMValueRef lanes_in(Cg *cg, LLVMValueRef jb, LLVMValueRef lo, LLVMValueRef hi) {
  LLVMTypeRef VI = LLVMVectorType(cg->t_i64, (unsigned)cg->W);
  LLVMValueRef iota[16];
  for (int l = 0; l < cg->W; l++) iota[l] = cg_i64(cg, l);
  LLVMValueRef j = LLVMBuildAdd(cg->B, cg_splat(cg, jb, VI), LLVMConstVector(iota, (unsigned)cg->W), "");
  return LLVMBuildAnd(cg->B, LLVMBuildICmp(cg->B, LLVMIntSGE, j, cg_splat(cg, lo, VI), ""),
                      LLVMBuildICmp(cg->B, LLVMIntSLT, j, cg_splat(cg, hi, VI), ""), "");
}

/* One output row of col (WO cells at drow) from the image row at xrow, where cell j
 * reads xrow[j] for j in [jlo, je) and is 0 elsewhere (to_col); or col2im: xrow[j] +=
 * drow[j] for j in [jlo, je). Masked lanes touch no memory, so xrow may point before
 * the image row (padding). */
static void row_masked(Cg *cg, const Geom *g, bool to_col, LLVMValueRef drow, LLVMValueRef xrow, LLVMValueRef jlo,
                       LLVMValueRef je) {
  CgLoop lj = cg_loop_begin(cg, k64(cg, 0), k64(cg, g->WO), k64(cg, cg->W));
  LLVMValueRef in = lanes_in(cg, lj.iv, jlo, je);
  LLVMValueRef xp = fptr(cg, xrow, lj.iv), dp = fptr(cg, drow, lj.iv);
  if (to_col) {
    mstore(cg, mload(cg, xp, in), dp, lanes_in(cg, lj.iv, k64(cg, 0), k64(cg, g->WO)));
  } else {
    mstore(cg, LLVMBuildFAdd(cg->B, mload(cg, xp, in), mload(cg, dp, in), ""), xp, in);
  }
  cg_loop_end_hint(cg, &lj, CG_LOOP_NO_VECTORIZE | CG_LOOP_NO_UNROLL);
}

/* Stride 1, rows of at most 8 vectors (Wo <= 8 W): row r's column masks are the same
 * for every output row i, so they are made once per r and the row is unrolled into its
 * vectors: [0, ilo) and [ihi, Ho) are rows of zeros (stores), [ilo, ihi) copies
 * (masked loads; a vector wholly inside the row stores unmasked). */
static void im2col_rows_unrolled(Cg *cg, const Geom *g, LLVMValueRef crow, LLVMValueRef ximg, LLVMValueRef du,
                                 LLVMValueRef dv, LLVMValueRef ilo, LLVMValueRef ihi, LLVMValueRef jlo,
                                 LLVMValueRef jhi) {
  int NVR = (int)((g->WO + cg->W - 1) / cg->W);
  LLVMValueRef ldm[8], stm[8];
  for (int q = 0; q < NVR; q++) {
    ldm[q] = lanes_in(cg, k64(cg, q * cg->W), jlo, jhi);
    stm[q] = (q + 1) * cg->W <= g->WO ? NULL : lanes_in(cg, k64(cg, q * cg->W), k64(cg, 0), k64(cg, g->WO));
  }
  LLVMValueRef zv = cg_fconst(cg, cg->t_vec, 0.0);
  for (int part = 0; part < 3; part++) {
    LLVMValueRef lo = part == 0 ? k64(cg, 0) : part == 1 ? ilo : ihi;
    LLVMValueRef hi = part == 0 ? ilo : part == 1 ? ihi : k64(cg, g->HO);
    CgLoop li = cg_loop_begin(cg, lo, hi, k64(cg, 1));
    LLVMValueRef drow = fptr(cg, crow, mul(cg, li.iv, k64(cg, g->WO)));
    LLVMValueRef xrow = NULL;
    if (part == 1) {   /* image row h = i - p + d u, from column dv - p */
      LLVMValueRef h = add(cg, li.iv, sub(cg, du, k64(cg, g->p)));
      xrow = fptr(cg, ximg, add(cg, mul(cg, h, k64(cg, g->W)), sub(cg, dv, k64(cg, g->p))));
    }
    for (int q = 0; q < NVR; q++) {
      LLVMValueRef v = part == 1 ? mload(cg, fptr(cg, xrow, k64(cg, q * cg->W)), ldm[q]) : zv;
      if (stm[q]) mstore(cg, v, fptr(cg, drow, k64(cg, q * cg->W)), stm[q]);
      else cg_store(cg, v, drow, k64(cg, q * cg->W));
    }
    cg_loop_end_hint(cg, &li, CG_LOOP_NO_VECTORIZE | CG_LOOP_NO_UNROLL);
  }
}

/* col2im with stride 1, as a gather into registers: each vector of dx_b (image row h,
 * columns w..w+W) is the sum over the kernel taps (u, v) of dcol[(c,u,v), i, j] with
 * i = h + p - d u, j = w + p - d v, masked to 0 <= j < Wo and w < W; one store per
 * vector, no clearing of dx_b, and no store of one tap that the next tap reloads (a
 * scatter-add over rows stalls on store-to-load forwarding). */
static void col2im_gather(Cg *cg, const Geom *g, LLVMValueRef xb, LLVMValueRef col) {
  LLVMBuilderRef B = cg->B;
  int Wl = cg->W;
  LLVMValueRef acc = cg_alloca(cg, cg->t_vec, "c2i");
  CgLoop lc = cg_loop_begin(cg, k64(cg, 0), k64(cg, g->C), k64(cg, 1));
  CgLoop lh = cg_loop_begin(cg, k64(cg, 0), k64(cg, g->H), k64(cg, 1));
  CgLoop lw = cg_loop_begin(cg, k64(cg, 0), k64(cg, g->W), k64(cg, Wl));
  LLVMBuildStore(B, cg_fconst(cg, cg->t_vec, 0.0), acc);
  LLVMValueRef wmask = lanes_in(cg, lw.iv, k64(cg, 0), k64(cg, g->W));
  CgLoop lu = cg_loop_begin(cg, k64(cg, 0), k64(cg, g->KH), k64(cg, 1));
  LLVMValueRef i = sub(cg, add(cg, lh.iv, k64(cg, g->p)), mul(cg, lu.iv, k64(cg, g->d)));
  LLVMValueRef ivalid = LLVMBuildAnd(B, LLVMBuildICmp(B, LLVMIntSGE, i, k64(cg, 0), ""),
                                     LLVMBuildICmp(B, LLVMIntSLT, i, k64(cg, g->HO), ""), "");
  LLVMBasicBlockRef join = cg_if_begin(cg, ivalid);
  LLVMValueRef rbase = mul(cg, add(cg, mul(cg, lc.iv, k64(cg, g->KH)), lu.iv), k64(cg, g->KW));
  CgLoop lv = cg_loop_begin(cg, k64(cg, 0), k64(cg, g->KW), k64(cg, 1));
  LLVMValueRef j0 = sub(cg, add(cg, lw.iv, k64(cg, g->p)), mul(cg, lv.iv, k64(cg, g->d)));
  /* lanes: j0 + l in [0, Wo) and w + l < W, i.e. l in [-j0, Wo - j0) and wmask */
  LLVMValueRef m = LLVMBuildAnd(B, lanes_in(cg, j0, k64(cg, 0), k64(cg, g->WO)), wmask, "");
  LLVMValueRef src = fptr(cg, col, add(cg, mul(cg, add(cg, rbase, lv.iv), k64(cg, g->P)), add(cg, mul(cg, i, k64(cg, g->WO)), j0)));
  LLVMBuildStore(B, LLVMBuildFAdd(B, LLVMBuildLoad2(B, cg->t_vec, acc, ""), mload(cg, src, m), ""), acc);
  cg_loop_end_hint(cg, &lv, CG_LOOP_NO_VECTORIZE | CG_LOOP_NO_UNROLL);
  cg_if_end(cg, join);
  cg_loop_end_hint(cg, &lu, CG_LOOP_NO_VECTORIZE | CG_LOOP_NO_UNROLL);
  LLVMValueRef dst = fptr(cg, xb, add(cg, mul(cg, add(cg, mul(cg, lc.iv, k64(cg, g->H)), lh.iv), k64(cg, g->W)), lw.iv));
  mstore(cg, LLVMBuildLoad2(B, cg->t_vec, acc, ""), dst, wmask);
  cg_loop_end_hint(cg, &lw, CG_LOOP_NO_VECTORIZE | CG_LOOP_NO_UNROLL);
  cg_loop_end(cg, &lh);
  cg_loop_end(cg, &lc);
}

/* Rows [r0, r1) of col_b from x_b (to_col), or col2im: x_b += the rows' cells (x_b
 * zeroed by the caller). Row r = (c, u, v); in row r, output row i reads image row
 * h = s i - p + d u and its valid columns [jlo, jhi) read w = s j - p + d v; im2col
 * writes zeros around them, so col needs no clearing. With stride 1 a row is whole
 * vectors with masked edges; with a larger stride, scalar gathers. */
static void im2col(Cg *cg, const Geom *g, bool to_col, LLVMValueRef xb, LLVMValueRef col, LLVMValueRef r0,
                   LLVMValueRef r1) {
  LLVMBuilderRef B = cg->B;
  bool masked = g->s == 1 && cg->W > 1;
  CgLoop lr = cg_loop_begin(cg, r0, r1, k64(cg, 1));
  LLVMValueRef c = LLVMBuildSDiv(B, lr.iv, k64(cg, g->KH * g->KW), "");
  LLVMValueRef u = LLVMBuildSRem(B, LLVMBuildSDiv(B, lr.iv, k64(cg, g->KW), ""), k64(cg, g->KH), "");
  LLVMValueRef v = LLVMBuildSRem(B, lr.iv, k64(cg, g->KW), "");
  LLVMValueRef du = mul(cg, u, k64(cg, g->d)), dv = mul(cg, v, k64(cg, g->d));
  LLVMValueRef ilo, ihi, jlo, jhi;
  valid_range(cg, g, du, g->H, g->HO, &ilo, &ihi);
  valid_range(cg, g, dv, g->W, g->WO, &jlo, &jhi);
  LLVMValueRef w0 = add(cg, mul(cg, jlo, k64(cg, g->s)), sub(cg, dv, k64(cg, g->p)));   /* w at jlo */
  LLVMValueRef crow = fptr(cg, col, mul(cg, sub(cg, lr.iv, r0), k64(cg, g->P)));
  LLVMValueRef ximg = fptr(cg, xb, mul(cg, c, k64(cg, g->H * g->W)));
  LLVMValueRef nj = sub(cg, jhi, jlo);
  if (to_col && masked && g->WO <= 8 * cg->W) {
    im2col_rows_unrolled(cg, g, crow, ximg, du, dv, ilo, ihi, jlo, jhi);
  } else if (to_col) {
    CgLoop li = cg_loop_begin(cg, k64(cg, 0), k64(cg, g->HO), k64(cg, 1));
    LLVMValueRef valid = LLVMBuildAnd(B, LLVMBuildICmp(B, LLVMIntSGE, li.iv, ilo, ""), LLVMBuildICmp(B, LLVMIntSLT, li.iv, ihi, ""), "");
    LLVMValueRef je = LLVMBuildSelect(B, valid, jhi, jlo, "");
    LLVMValueRef drow = fptr(cg, crow, mul(cg, li.iv, k64(cg, g->WO)));
    LLVMValueRef h = add(cg, mul(cg, li.iv, k64(cg, g->s)), sub(cg, du, k64(cg, g->p)));
    LLVMValueRef hrow = fptr(cg, ximg, mul(cg, LLVMBuildSelect(B, valid, h, k64(cg, 0), ""), k64(cg, g->W)));
    if (masked) {
      row_masked(cg, g, true, drow, fptr(cg, hrow, sub(cg, dv, k64(cg, g->p))), jlo, je);
    } else {
      seg(cg, 0, drow, NULL, jlo);
      seg_strided(cg, g, 1, fptr(cg, drow, jlo), fptr(cg, hrow, w0), sub(cg, je, jlo));
      seg(cg, 0, fptr(cg, drow, je), NULL, sub(cg, k64(cg, g->WO), je));
    }
    cg_loop_end(cg, &li);
  } else {
    CgLoop li = cg_loop_begin(cg, ilo, ihi, k64(cg, 1));
    LLVMValueRef h = add(cg, mul(cg, li.iv, k64(cg, g->s)), sub(cg, du, k64(cg, g->p)));
    LLVMValueRef hrow = fptr(cg, ximg, mul(cg, h, k64(cg, g->W)));
    LLVMValueRef drow = fptr(cg, crow, mul(cg, li.iv, k64(cg, g->WO)));
    if (masked) row_masked(cg, g, false, drow, fptr(cg, hrow, sub(cg, dv, k64(cg, g->p))), jlo, jhi);
    else seg_strided(cg, g, 2, fptr(cg, drow, jlo), fptr(cg, hrow, w0), nj);
    cg_loop_end(cg, &li);
  }
  cg_loop_end(cg, &lr);
}

/* ---- forward as register-blocked rows ---- */

/* A forward convolution with stride 1 whose output row is at most 2 vectors and whose
 * O x (vectors per row) accumulators fit the registers (<= 24, at least half of the
 * lanes used) runs without im2col or GEMM: for each output row i, the O x NVR
 * accumulators sum, over the taps (c, u, v), a broadcast weight times one masked load
 * of the image row (loaded once per tap, used by every output channel). LeNet's c1
 * (O = 6, C kh kw = 25) does 2 x 6 FMAs per tap and row where the GEMM path packed a
 * 25 x 784 im2col matrix per image for a 6-row product. */
static Geom transposed(const Geom *g);

static bool rowconv_ok(Cg *cg, const Geom *g) {
  if (g->op == OP_CONV2D_BWD_DATA) {
    if (g->s != 1 || g->KH != g->KW) return false;
    Geom t = transposed(g);
    int64_t nvr = (t.WO + cg->W - 1) / cg->W;
    return cg->W > 1 && nvr <= 2 && 2 * t.WO >= nvr * cg->W && t.O * nvr <= 24;
  }
  int64_t nvr = (g->WO + cg->W - 1) / cg->W;
  if (g->s != 1 || cg->W <= 1 || nvr > 2 || 2 * g->WO < nvr * cg->W) return false;
  if (g->op == OP_CONV2D) return g->O * nvr <= 24;
  /* backward-weights loads dy once per FMA: it wins only for few channels (measured:
   * LeNet's c1, O = 6, 0.54 -> 0.22 ms; c2, O = 16, 0.38 -> 0.69 ms, so c2 takes the
   * channels in the lanes, lanes_bww) */
  return g->op == OP_CONV2D_BWD_WEIGHT && g->O * nvr <= 12;
}

/* Backward-weights as rows: dW[o, tap] = sum over images b, output rows i and columns j
 * of dy[b, o, i, j] x[b, c, i + d u - p, j + d v - p]. The taps of one kernel row (c, u)
 * share dy's rows, so they go in groups of consecutive columns v (bww_groups: at most
 * the core's accumulator count of O x group partial sums): per output row the O dy
 * vectors are loaded once for the whole group (one load per group-size FMAs, where one
 * tap at a time loaded dy once per FMA and was load-bound). The chunks split the
 * images (the same images each chunk's previous kernels wrote: LeNet's c1 split by taps
 * read every image on both cores, 1.2 MB of dy each, and ran slower on two threads than
 * on one): each keeps the O vector partial sums of every tap in its buffer (acc:
 * [tap][o][W], O C kh kw W elements), loaded per image and group, the rows added (one
 * masked load of the image row per tap and row, used by all O channels), stored back;
 * then bww_reduce adds the chunks' sums in chunk order and across the lanes into
 * dW. The chunks are the compile-time gemm_chunks whatever the threads at run time, so
 * the result does not depend on the thread count. */
typedef struct {
  int n, base, rem;   /* groups per kernel row; sizes base + (group < rem) */
} BwwGroups;

static BwwGroups bww_groups(Cg *cg, const Geom *g) {
  int64_t budget = cg->W > 1 ? cg->MR * cg->NR / cg->W : 1;   /* the micro-kernel's accumulators */
  int64_t gmax = budget / g->O < 1 ? 1 : budget / g->O;
  if (gmax > g->KW) gmax = g->KW;
  if (gmax > 24) gmax = 24;   /* rowconv_bww_group's arrays */
  BwwGroups r;
  r.n = (int)((g->KW + gmax - 1) / gmax);
  r.base = (int)(g->KW / r.n), r.rem = (int)(g->KW % r.n);
  return r;
}


/* one group of S taps (c, u, v0 .. v0 + S - 1) of one image */
static void rowconv_bww_group(Cg *cg, const Geom *g, int S, LLVMValueRef xb, LLVMValueRef yb, LLVMValueRef first,
                              LLVMValueRef abase, LLVMValueRef c, LLVMValueRef u, LLVMValueRef v0) {
  LLVMBuilderRef B = cg->B;
  int Wl = cg->W, NVR = (int)((g->WO + Wl - 1) / Wl), O = (int)g->O;
  LLVMValueRef a[24][24];
  for (int o = 0; o < O; o++)
    for (int s = 0; s < S; s++) {
      a[o][s] = cg_alloca(cg, cg->t_vec, "wacc");
      LLVMValueRef old = cg_load(cg, cg->t_vec, abase, k64(cg, ((int64_t)s * O + o) * Wl));
      LLVMBuildStore(B, LLVMBuildSelect(B, first, cg_fconst(cg, cg->t_vec, 0.0), old, ""), a[o][s]);
    }
  LLVMValueRef du = mul(cg, u, k64(cg, g->d));
  LLVMValueRef ilo, ihi;
  valid_range(cg, g, du, g->H, g->HO, &ilo, &ihi);
  LLVMValueRef xm[24][2], ym[2], xc[24];
  for (int s = 0; s < S; s++) {
    LLVMValueRef dv = mul(cg, add(cg, v0, k64(cg, s)), k64(cg, g->d));
    LLVMValueRef jlo = sub(cg, k64(cg, g->p), dv), jhi = cg_min_i64(cg, sub(cg, k64(cg, g->W + g->p), dv), k64(cg, g->WO));
    for (int q = 0; q < NVR; q++) xm[s][q] = lanes_in(cg, k64(cg, q * Wl), jlo, jhi);
    /* x[c, i + d u - p, j + d v - p] */
    xc[s] = fptr(cg, xb, add(cg, mul(cg, c, k64(cg, g->H * g->W)), sub(cg, mul(cg, sub(cg, du, k64(cg, g->p)), k64(cg, g->W)), sub(cg, k64(cg, g->p), dv))));
  }
  for (int q = 0; q < NVR; q++)
    ym[q] = (q + 1) * Wl <= g->WO ? NULL : lanes_in(cg, k64(cg, q * Wl), k64(cg, 0), k64(cg, g->WO));
  CgLoop li = cg_loop_begin(cg, ilo, ihi, k64(cg, 1));
  for (int q = 0; q < NVR; q++) {
    LLVMValueRef xv[24];
    for (int s = 0; s < S; s++)
      xv[s] = mload(cg, fptr(cg, xc[s], add(cg, mul(cg, li.iv, k64(cg, g->W)), k64(cg, q * Wl))), xm[s][q]);
    for (int o = 0; o < O; o++) {
      LLVMValueRef yi = add(cg, mul(cg, add(cg, k64(cg, o * g->HO), li.iv), k64(cg, g->WO)), k64(cg, q * Wl));
      LLVMValueRef yv = ym[q] ? mload(cg, fptr(cg, yb, yi), ym[q]) : cg_load(cg, cg->t_vec, yb, yi);
      for (int s = 0; s < S; s++) {
        LLVMValueRef fa[3] = {xv[s], yv, LLVMBuildLoad2(B, cg->t_vec, a[o][s], "")};
        LLVMBuildStore(B, cg_intrinsic(cg, "llvm.fma", cg->t_vec, fa, 3), a[o][s]);
      }
    }
  }
  cg_loop_end_hint(cg, &li, CG_LOOP_NO_VECTORIZE | CG_LOOP_NO_UNROLL);
  for (int o = 0; o < O; o++)
    for (int s = 0; s < S; s++)
      cg_store(cg, LLVMBuildLoad2(B, cg->t_vec, a[o][s], ""), abase, k64(cg, ((int64_t)s * O + o) * Wl));
}

/* the chunk's images [b0, b1), every unit (C kh x groups); the partial sums stay in
 * the chunk's acc (bww_reduce adds the chunks') */
static void rowconv_bww(Cg *cg, const Geom *g, LLVMValueRef X, LLVMValueRef DY, LLVMValueRef acc, LLVMValueRef b0,
                        LLVMValueRef b1) {
  LLVMBuilderRef B = cg->B;
  int Wl = cg->W, O = (int)g->O;
  BwwGroups gr = bww_groups(cg, g);
  CgLoop lb = cg_loop_begin(cg, b0, b1, k64(cg, 1));
  LLVMValueRef xb = fptr(cg, X, mul(cg, lb.iv, k64(cg, g->C * g->H * g->W)));
  LLVMValueRef yb = fptr(cg, DY, mul(cg, lb.iv, k64(cg, g->O * g->P)));
  LLVMValueRef first = LLVMBuildICmp(B, LLVMIntEQ, lb.iv, b0, "");
  CgLoop lk = cg_loop_begin(cg, k64(cg, 0), k64(cg, g->C * g->KH * gr.n), k64(cg, 1));
  LLVMValueRef cu = LLVMBuildSDiv(B, lk.iv, k64(cg, gr.n), ""), grp = LLVMBuildSRem(B, lk.iv, k64(cg, gr.n), "");
  LLVMValueRef c = LLVMBuildSDiv(B, cu, k64(cg, g->KH), ""), u = LLVMBuildSRem(B, cu, k64(cg, g->KH), "");
  LLVMValueRef v0 = add(cg, mul(cg, grp, k64(cg, gr.base)), cg_min_i64(cg, grp, k64(cg, gr.rem)));
  LLVMValueRef tap = add(cg, mul(cg, cu, k64(cg, g->KW)), v0);
  LLVMValueRef abase = fptr(cg, acc, mul(cg, tap, k64(cg, O * Wl)));
  if (gr.rem > 0) {   /* groups of base + 1 taps first, then of base */
    LLVMValueRef big = LLVMBuildICmp(B, LLVMIntSLT, grp, k64(cg, gr.rem), "");
    LLVMBasicBlockRef bbig = LLVMAppendBasicBlockInContext(cg->C, cg->fn, "bwwbig");
    LLVMBasicBlockRef bsmall = LLVMAppendBasicBlockInContext(cg->C, cg->fn, "bwwsmall");
    LLVMBasicBlockRef bjoin = LLVMAppendBasicBlockInContext(cg->C, cg->fn, "bwwjoin");
    LLVMBuildCondBr(B, big, bbig, bsmall);
    LLVMPositionBuilderAtEnd(B, bbig);
    rowconv_bww_group(cg, g, gr.base + 1, xb, yb, first, abase, c, u, v0);
    LLVMBuildBr(B, bjoin);
    LLVMPositionBuilderAtEnd(B, bsmall);
    rowconv_bww_group(cg, g, gr.base, xb, yb, first, abase, c, u, v0);
    LLVMBuildBr(B, bjoin);
    LLVMPositionBuilderAtEnd(B, bjoin);
  } else {
    rowconv_bww_group(cg, g, gr.base, xb, yb, first, abase, c, u, v0);
  }
  cg_loop_end_hint(cg, &lk, CG_LOOP_NO_VECTORIZE | CG_LOOP_NO_UNROLL);
  cg_loop_end(cg, &lb);
}

/* After the chunks of a backward-weights split over images: dW[o, tap] = the chunks'
 * partial sums added in chunk order (chunks without an image skipped; 0 when no chunk
 * had one). The rows keep a vector per (tap, o) at (tap O + o) W, summed across its
 * lanes at the end (vec); the lanes path one float at tap tstride + o. The chunks are
 * the compile-time gemm_chunks whatever the threads at run time, so the result does not
 * depend on them. */
static void bww_reduce(Cg *cg, const Geom *g, bool vec, int64_t tstride, LLVMValueRef DW, LLVMValueRef Bn,
                       LLVMValueRef nch) {
  LLVMBuilderRef B = cg->B;
  LLVMTypeRef T = vec ? cg->t_vec : cg->t_f32;
  LLVMValueRef stride = k64(cg, cg_gemm_pack_floats(cg)), cofs = k64(cg, cg->pack_a_floats + cg->pack_b_floats);
  LLVMValueRef sum = cg_alloca(cg, T, "bwwsum");
  CgLoop lt = cg_loop_begin(cg, k64(cg, 0), k64(cg, g->CKK), k64(cg, 1));
  CgLoop lo = cg_loop_begin(cg, k64(cg, 0), k64(cg, g->O), k64(cg, 1));
  LLVMBuildStore(B, cg_fconst(cg, T, 0.0), sum);
  CgLoop lc = cg_loop_begin(cg, k64(cg, 0), nch, k64(cg, 1));
  LLVMValueRef b0, b1;
  chunk_range(cg, lc.iv, nch, Bn, 1, &b0, &b1);
  LLVMBasicBlockRef join = cg_if_begin(cg, LLVMBuildICmp(B, LLVMIntSLT, b0, b1, ""));
  LLVMValueRef acc = fptr(cg, cg->gemm_pack, add(cg, mul(cg, lc.iv, stride), cofs));
  LLVMValueRef at = add(cg, mul(cg, lt.iv, k64(cg, tstride)), mul(cg, lo.iv, k64(cg, vec ? cg->W : 1)));
  LLVMBuildStore(B, LLVMBuildFAdd(B, LLVMBuildLoad2(B, T, sum, ""), cg_load(cg, T, acc, at), ""), sum);
  cg_if_end(cg, join);
  cg_loop_end(cg, &lc);
  LLVMValueRef v = LLVMBuildLoad2(B, T, sum, "");
  cg_store(cg, vec ? cg_hsum(cg, v) : v, DW, add(cg, mul(cg, lo.iv, k64(cg, g->CKK)), lt.iv));
  cg_loop_end(cg, &lo);
  cg_loop_end(cg, &lt);
}

/* ---- backward-weights with the output channels in the lanes ---- */

/* For many output channels (LeNet's c2: O = 16, C kh kw = 150, P = 100) the GEMM path
 * pays im2col and packing per image for a product whose M = O is one register row, and
 * the rows above load dy once per FMA. Here the output channels o go in the lanes (NVO
 * = ceil(O / W) vectors) and the taps on the broadcast side:
 *
 *   acc[tap][o] += dyT[i Wo + j][o] * xpad[c][s i + d u][s j + d v]
 *
 * per output position (i, j) NVO vector loads of dy (transposed once per image into
 * dyT [P][NVO W], lanes >= O zero) serve a block of taps of one input channel c, each
 * one broadcast of the image (zero-padded into xpad once per image when p > 0, so no
 * tap needs a bounds test; the taps are compile-time displacements from one pointer
 * per position) and NVO FMAs: at NVO = 1 and a block of 25 taps, 26 loads for 25 FMAs
 * (the broadcasts are the FMAs' memory operands), where the rows above loaded dy once
 * per FMA. The accumulators (taps x NVO vectors, as many as the registers hold) sum one
 * image from zero, then are added to the earlier images' sums in the chunk's buffer (as
 * the GEMM path adds per-image products: f32 sums 100 + 64 deep for LeNet's c2, not 6400;
 * one running sum moved LeNet's one-epoch MNIST accuracy from 98.14% to 97.97%); after
 * the last image dW[o, tap] = acc[tap][o].
 * The chunks split the units (c, block); every dW element is summed by one chunk in
 * the order b, i, j, so the result does not depend on the split.
 *
 * Taken when at least half of the lanes are used (O >= NVO W / 2: measured faster than
 * the GEMM path down to there, e.g. O = 8 and 17 at 16 lanes), NVO <= 4, a block holds
 * at least 3 taps and vectors are at least 32 bytes; the buffer (acc [C kh kw][NVO W],
 * dyT [P][NVO W], xpad [C][Hp][Wp]) is sized by cg_conv_bww_lanes_floats for every lane
 * count the target may pick (bww_lanes_floats, through cg_conv_own_floats). */
static int lanes_tmax(int nvo, int vbytes) { return ((vbytes >= 64 ? 32 : 16) - nvo - 2) / nvo; }

/* the kernel's kk taps of one channel in nblk blocks: sizes base + (block < rem) */
typedef struct {
  int nblk, base, rem;
} LanesBlocks;

static LanesBlocks lanes_blocks_of(int64_t kk, int nvo, int vbytes) {
  int64_t tmax = lanes_tmax(nvo, vbytes);
  LanesBlocks r;
  r.nblk = (int)((kk + tmax - 1) / tmax);
  r.base = (int)(kk / r.nblk), r.rem = (int)(kk % r.nblk);
  return r;
}

static int bww_lanes_nvo(int64_t O, int64_t kk, int W, int vbytes) {
  /* not with 16-byte vectors: on x86-64-v2 (no FMA instruction, llvm.fma is a call per
   * lane) LeNet's c1 took 8.8 ms this way against the GEMM path's 7.9 */
  if (W < 2 || vbytes < 32) return 0;
  int64_t nvo = (O + W - 1) / W;
  if (nvo > 4 || 2 * O < nvo * W || lanes_tmax((int)nvo, vbytes) < 3) return 0;
  return lanes_blocks_of(kk, (int)nvo, vbytes).base >= 3 ? (int)nvo : 0;
}

static int lanes_nvo(Cg *cg, const Geom *g) {
  if (g->op != OP_CONV2D_BWD_WEIGHT || g->rowconv) return 0;
  return bww_lanes_nvo(g->O, g->KH * g->KW, cg->W, cg->W * cg->esize);
}

static LanesBlocks lanes_blocks(Cg *cg, const Geom *g, int nvo) {
  return lanes_blocks_of(g->KH * g->KW, nvo, cg->W * cg->esize);
}

/* the buffer's parts (elements from the chunk's buffer): acc, dyT, xpad; the total */
static int64_t r16(int64_t x) { return (x + 15) / 16 * 16; }
static int64_t lanes_layout(const Geom *g, int64_t nvw, int64_t *o_dyt, int64_t *o_xpad) {
  *o_dyt = r16(g->CKK * nvw);
  *o_xpad = *o_dyt + r16(g->P * nvw);
  return *o_xpad + (g->p > 0 ? g->C * (g->H + 2 * g->p) * (g->W + 2 * g->p) : 0);
}

/* the buffer at the most, over the lane counts a target may pick (cg_conv_own_floats) */
static int64_t bww_lanes_floats(Func *f, const Inst *in) {
  const TensorType *xt = ir_vtype(f, in->args[0]), *yt = ir_vtype(f, in->args[1]);
  const TensorType *kt = ir_vtype(f, (int32_t)(in - f->insts));
  Geom g = {.op = OP_CONV2D_BWD_WEIGHT, .C = xt->dims[1], .H = xt->dims[2], .W = xt->dims[3], .O = kt->dims[0],
            .KH = kt->dims[2], .KW = kt->dims[3], .HO = yt->dims[2], .WO = yt->dims[3], .s = in->iattr[0],
            .p = in->iattr[1], .d = in->iattr[2]};
  g.CKK = g.C * g.KH * g.KW, g.P = g.HO * g.WO;
  int64_t most = 0, a, b;
  for (int W = 2; W <= 16; W *= 2)
    for (int vbytes = 16; vbytes <= 64; vbytes *= 2) {
      int nvo = bww_lanes_nvo(g.O, g.KH * g.KW, W, vbytes);
      int64_t n = nvo ? lanes_layout(&g, (int64_t)nvo * W, &a, &b) : 0;
      if (n > most) most = n;
    }
  return most;
}



/* dyT[p][q W + r] = dy_b[q W + r][p] (0 for channels >= O): W x W blocks transposed in
 * registers (cg_reg_transpose) */
static void lanes_transpose(Cg *cg, const Geom *g, int nvo, LLVMValueRef yb, LLVMValueRef dyt) {
  int Wl = cg->W;
  int64_t nvw = (int64_t)nvo * Wl, nfull = g->P / Wl, tail = g->P % Wl;
  for (int q = 0; q < nvo; q++)
    for (int part = 0; part < 2; part++) {
      if (part == 0 && nfull == 0) continue;
      if (part == 1 && tail == 0) continue;
      CgLoop l = {0};
      LLVMValueRef p0 = k64(cg, nfull * Wl);
      if (part == 0) l = cg_loop_begin(cg, k64(cg, 0), k64(cg, nfull * Wl), k64(cg, Wl)), p0 = l.iv;
      LLVMValueRef m = part == 1 ? lanes_in(cg, k64(cg, 0), k64(cg, 0), k64(cg, tail)) : NULL;
      LLVMValueRef v[16];
      for (int r = 0; r < Wl; r++) {
        int64_t o = (int64_t)q * Wl + r;
        LLVMValueRef idx = add(cg, k64(cg, o * g->P), p0);
        v[r] = o >= g->O ? cg_fconst(cg, cg->t_vec, 0.0) : m ? mload(cg, fptr(cg, yb, idx), m) : cg_load(cg, cg->t_vec, yb, idx);
      }
      cg_reg_transpose(cg, v, cg->W);
      for (int k = 0; k < (part == 1 ? tail : Wl); k++)
        cg_store(cg, v[k], dyt, add(cg, mul(cg, add(cg, p0, k64(cg, k)), k64(cg, nvw)), k64(cg, (int64_t)q * Wl)));
      if (part == 0) cg_loop_end_hint(cg, &l, CG_LOOP_NO_VECTORIZE | CG_LOOP_NO_UNROLL);
    }
}

/* one block of taps [tb, tb + S) of channel c (row-major (u, v)) for one image: xc is
 * the channel's (padded) image, rows of xw elements */
static void lanes_block(Cg *cg, const Geom *g, int nvo, int tb, int S, LLVMValueRef xc, int64_t xw, LLVMValueRef dyt,
                        LLVMValueRef first, LLVMValueRef abase) {
  LLVMBuilderRef B = cg->B;
  int Wl = cg->W;
  int64_t nvw = (int64_t)nvo * Wl;
  LLVMValueRef a[32][4];
  int64_t disp[32];
  for (int t = 0; t < S; t++) {
    int64_t u = (tb + t) / g->KW, v = (tb + t) % g->KW;
    disp[t] = g->d * u * xw + g->d * v;
    for (int q = 0; q < nvo; q++) {
      a[t][q] = cg_alloca(cg, cg->t_vec, "lacc");
      LLVMBuildStore(B, cg_fconst(cg, cg->t_vec, 0.0), a[t][q]);
    }
  }
  CgLoop li = cg_loop_begin(cg, k64(cg, 0), k64(cg, g->HO), k64(cg, 1));
  LLVMValueRef xrow = fptr(cg, xc, mul(cg, li.iv, k64(cg, g->s * xw)));
  LLVMValueRef yrow = fptr(cg, dyt, mul(cg, li.iv, k64(cg, g->WO * nvw)));
  CgLoop lj = cg_loop_begin(cg, k64(cg, 0), k64(cg, g->WO), k64(cg, 1));
  LLVMValueRef xp = fptr(cg, xrow, mul(cg, lj.iv, k64(cg, g->s)));
  LLVMValueRef yp = fptr(cg, yrow, mul(cg, lj.iv, k64(cg, nvw)));
  LLVMValueRef yv[4];
  for (int q = 0; q < nvo; q++) yv[q] = cg_load(cg, cg->t_vec, yp, k64(cg, q * Wl));
  for (int t = 0; t < S; t++) {
    LLVMValueRef xs = cg_splat(cg, cg_load(cg, cg->t_f32, xp, k64(cg, disp[t])), cg->t_vec);
    for (int q = 0; q < nvo; q++) {
      LLVMValueRef fa[3] = {yv[q], xs, LLVMBuildLoad2(B, cg->t_vec, a[t][q], "")};
      LLVMBuildStore(B, cg_intrinsic(cg, "llvm.fma", cg->t_vec, fa, 3), a[t][q]);
    }
  }
  cg_loop_end_hint(cg, &lj, CG_LOOP_NO_VECTORIZE | CG_LOOP_NO_UNROLL);
  cg_loop_end_hint(cg, &li, CG_LOOP_NO_VECTORIZE | CG_LOOP_NO_UNROLL);
  /* the image's sums added to the earlier images' (as the GEMM path's per-image
   * products: 100 + 64 additions deep for LeNet's c2, not 6400) */
  for (int t = 0; t < S; t++)
    for (int q = 0; q < nvo; q++) {
      LLVMValueRef v = LLVMBuildLoad2(B, cg->t_vec, a[t][q], "");
      LLVMValueRef old = cg_load(cg, cg->t_vec, abase, k64(cg, t * nvw + q * Wl));
      v = LLVMBuildSelect(B, first, v, LLVMBuildFAdd(B, old, v, ""), "");
      cg_store(cg, v, abase, k64(cg, t * nvw + q * Wl));
    }
}

/* the chunk's units [k0, k1) of C x blocks; buf: the chunk's buffer (lanes_layout) */
static void lanes_bww(Cg *cg, const Geom *g, int nvo, LLVMValueRef X, LLVMValueRef DY, LLVMValueRef buf,
                      LLVMValueRef b0, LLVMValueRef b1) {
  LLVMBuilderRef B = cg->B;
  int Wl = cg->W;
  int64_t nvw = (int64_t)nvo * Wl, o_dyt, o_xpad, Hp = g->H + 2 * g->p, Wp = g->W + 2 * g->p;
  lanes_layout(g, nvw, &o_dyt, &o_xpad);
  LLVMValueRef acc = buf, dyt = fptr(cg, buf, k64(cg, o_dyt)), xpad = fptr(cg, buf, k64(cg, o_xpad));
  LanesBlocks lb = lanes_blocks(cg, g, nvo);
  LLVMValueRef k0 = k64(cg, 0), k1 = k64(cg, g->C * lb.nblk), c0 = k64(cg, 0), c1 = k64(cg, g->C);
  CgLoop lbi = cg_loop_begin(cg, b0, b1, k64(cg, 1));
  LLVMValueRef xb = fptr(cg, X, mul(cg, lbi.iv, k64(cg, g->C * g->H * g->W)));
  LLVMValueRef yb = fptr(cg, DY, mul(cg, lbi.iv, k64(cg, g->O * g->P)));
  LLVMValueRef first = LLVMBuildICmp(B, LLVMIntEQ, lbi.iv, b0, "");
  lanes_transpose(cg, g, nvo, yb, dyt);
  LLVMValueRef ximg = xb;
  if (g->p > 0) {   /* the channels' interiors into xpad, its border zeroed at the first image */
    LLVMBasicBlockRef jz = cg_if_begin(cg, first);
    seg(cg, 0, fptr(cg, xpad, mul(cg, c0, k64(cg, Hp * Wp))), NULL, mul(cg, sub(cg, c1, c0), k64(cg, Hp * Wp)));
    cg_if_end(cg, jz);
    CgLoop lc = cg_loop_begin(cg, c0, c1, k64(cg, 1));
    CgLoop lh = cg_loop_begin(cg, k64(cg, 0), k64(cg, g->H), k64(cg, 1));
    LLVMValueRef src = fptr(cg, xb, mul(cg, add(cg, mul(cg, lc.iv, k64(cg, g->H)), lh.iv), k64(cg, g->W)));
    LLVMValueRef dst = fptr(cg, xpad, add(cg, mul(cg, add(cg, mul(cg, lc.iv, k64(cg, Hp)), add(cg, lh.iv, k64(cg, g->p))), k64(cg, Wp)), k64(cg, g->p)));
    seg(cg, 1, dst, src, k64(cg, g->W));
    cg_loop_end(cg, &lh);
    cg_loop_end(cg, &lc);
    ximg = xpad;
  }
  CgLoop lk = cg_loop_begin(cg, k0, k1, k64(cg, 1));
  LLVMValueRef c = LLVMBuildSDiv(B, lk.iv, k64(cg, lb.nblk), ""), q = LLVMBuildSRem(B, lk.iv, k64(cg, lb.nblk), "");
  LLVMValueRef xc = fptr(cg, ximg, mul(cg, c, k64(cg, Hp * Wp)));
  LLVMBasicBlockRef join = LLVMAppendBasicBlockInContext(cg->C, cg->fn, "lanesjoin");
  LLVMBasicBlockRef *cases = malloc(sizeof *cases * (size_t)lb.nblk);
  for (int k = 0; k < lb.nblk; k++) cases[k] = LLVMAppendBasicBlockInContext(cg->C, cg->fn, "lanesblk");
  LLVMValueRef sw = LLVMBuildSwitch(B, q, cases[0], (unsigned)lb.nblk - 1);
  for (int k = 1; k < lb.nblk; k++) LLVMAddCase(sw, k64(cg, k), cases[k]);
  for (int k = 0; k < lb.nblk; k++) {
    LLVMPositionBuilderAtEnd(B, cases[k]);
    int tb = k * lb.base + (k < lb.rem ? k : lb.rem), S = lb.base + (k < lb.rem);
    LLVMValueRef abase = fptr(cg, acc, mul(cg, add(cg, mul(cg, c, k64(cg, g->KH * g->KW)), k64(cg, tb)), k64(cg, nvw)));
    lanes_block(cg, g, nvo, tb, S, xc, Wp, dyt, first, abase);
    LLVMBuildBr(B, join);
  }
  free(cases);
  LLVMPositionBuilderAtEnd(B, join);
  cg_loop_end_hint(cg, &lk, CG_LOOP_NO_VECTORIZE | CG_LOOP_NO_UNROLL);
  cg_loop_end(cg, &lbi);
}

static LLVMValueRef ew1(Cg *cg, Op op, LLVMValueRef a) {
  Inst in;
  memset(&in, 0, sizeof in);
  in.op = (uint16_t)op;
  return cg_ew_apply(cg, &in, a, NULL);
}

/* Backward-data with stride 1 is a forward convolution, the transposed one:
 *   dx[c, h, w] = sum over o, u', v' of W[o, c, kh-1-u', kw-1-v'] dy[o, h - p' + d u', w - p' + d v']
 * with p' = d (kh - 1) - p: its input is dy (O channels, Ho x Wo), its output dx (C
 * channels, H x W), its weights W read transposed and flipped (row_weight). One padding
 * serves rows and columns when kh = kw (rowconv_ok). */
static Geom transposed(const Geom *g) {
  Geom t = *g;
  t.C = g->O, t.H = g->HO, t.W = g->WO, t.O = g->C, t.HO = g->H, t.WO = g->W;
  t.p = g->d * (g->KH - 1) - g->p;
  t.CKK = t.C * t.KH * t.KW, t.P = t.HO * t.WO;
  t.flip = true, t.direct = false, t.epflags = 0;
  return t;
}

/* Weight (o, c, u, v) of the convolution the rows compute: W[o, c, u, v]; for
 * backward-data, the transposed convolution (g->flip, bwd_data_rows): W[c, o, kh-1-u, kw-1-v]. */
static LLVMValueRef row_weight(Cg *cg, const Geom *g, LLVMValueRef Kw, int o, LLVMValueRef c, LLVMValueRef u,
                               LLVMValueRef v) {
  LLVMValueRef idx;
  if (!g->flip) {
    idx = add(cg, k64(cg, o * g->CKK), add(cg, mul(cg, add(cg, mul(cg, c, k64(cg, g->KH)), u), k64(cg, g->KW)), v));
  } else {
    LLVMValueRef co = add(cg, mul(cg, c, k64(cg, g->O)), k64(cg, o));
    LLVMValueRef uu = sub(cg, k64(cg, g->KH - 1), u), vv = sub(cg, k64(cg, g->KW - 1), v);
    idx = add(cg, mul(cg, add(cg, mul(cg, co, k64(cg, g->KH)), uu), k64(cg, g->KW)), vv);
  }
  return cg_splat(cg, cg_load(cg, cg->t_f32, Kw, idx), cg->t_vec);
}

static void rowconv_image(Cg *cg, const Geom *g, LLVMValueRef xb, LLVMValueRef Kw, LLVMValueRef yb, const LLVMValueRef *chan,
                          LLVMValueRef y2b) {
  LLVMBuilderRef B = cg->B;
  int Wl = cg->W, NVR = (int)((g->WO + Wl - 1) / Wl), O = (int)g->O;
  LLVMValueRef acc[24][2];
  for (int o = 0; o < O; o++)
    for (int q = 0; q < NVR; q++) acc[o][q] = cg_alloca(cg, cg->t_vec, "racc");
  CgLoop li = cg_loop_begin(cg, k64(cg, 0), k64(cg, g->HO), k64(cg, 1));
  for (int o = 0; o < O; o++)
    for (int q = 0; q < NVR; q++) LLVMBuildStore(B, cg_fconst(cg, cg->t_vec, 0.0), acc[o][q]);
  CgLoop lc = cg_loop_begin(cg, k64(cg, 0), k64(cg, g->C), k64(cg, 1));
  CgLoop lu = cg_loop_begin(cg, k64(cg, 0), k64(cg, g->KH), k64(cg, 1));
  LLVMValueRef h = add(cg, li.iv, sub(cg, mul(cg, lu.iv, k64(cg, g->d)), k64(cg, g->p)));
  LLVMValueRef hvalid = LLVMBuildAnd(B, LLVMBuildICmp(B, LLVMIntSGE, h, k64(cg, 0), ""), LLVMBuildICmp(B, LLVMIntSLT, h, k64(cg, g->H), ""), "");
  LLVMBasicBlockRef join = cg_if_begin(cg, hvalid);
  /* x[c, h, j + d v - p] for the row's j */
  LLVMValueRef xrow = fptr(cg, xb, sub(cg, mul(cg, add(cg, mul(cg, lc.iv, k64(cg, g->H)), h), k64(cg, g->W)), k64(cg, g->p)));
  /* the kernel's columns v unrolled (constant masks) when there are at most 8 */
  bool unroll = g->KW <= 8;
  CgLoop lv = {0};
  if (!unroll) lv = cg_loop_begin(cg, k64(cg, 0), k64(cg, g->KW), k64(cg, 1));
  for (int64_t vc = 0; vc < (unroll ? g->KW : 1); vc++) {
    LLVMValueRef vv = unroll ? k64(cg, vc) : lv.iv;
    LLVMValueRef dv = mul(cg, vv, k64(cg, g->d));
    /* valid j: 0 <= j + d v - p < W and j < Wo */
    LLVMValueRef jlo = sub(cg, k64(cg, g->p), dv), jhi = cg_min_i64(cg, sub(cg, k64(cg, g->W + g->p), dv), k64(cg, g->WO));
    LLVMValueRef xv[2];
    for (int q = 0; q < NVR; q++)
      xv[q] = mload(cg, fptr(cg, xrow, add(cg, dv, k64(cg, q * Wl))), lanes_in(cg, k64(cg, q * Wl), jlo, jhi));
    for (int o = 0; o < O; o++) {
      LLVMValueRef wv = row_weight(cg, g, Kw, o, lc.iv, lu.iv, vv);
      for (int q = 0; q < NVR; q++) {
        LLVMValueRef fa[3] = {wv, xv[q], LLVMBuildLoad2(B, cg->t_vec, acc[o][q], "")};
        LLVMBuildStore(B, cg_intrinsic(cg, "llvm.fma", cg->t_vec, fa, 3), acc[o][q]);
      }
    }
  }
  if (!unroll) cg_loop_end_hint(cg, &lv, CG_LOOP_NO_VECTORIZE | CG_LOOP_NO_UNROLL);
  cg_if_end(cg, join);
  cg_loop_end_hint(cg, &lu, CG_LOOP_NO_VECTORIZE | CG_LOOP_NO_UNROLL);
  cg_loop_end_hint(cg, &lc, CG_LOOP_NO_VECTORIZE | CG_LOOP_NO_UNROLL);
  /* the epilogue (gemm.c's formulas: + bias, batchnorm, activation) and the stores */
  int f = g->epflags;
  Op act = cg_ep_act(f);
  for (int o = 0; o < O; o++) {
    LLVMValueRef cv[CG_EPV__COUNT] = {NULL};
    for (int k = 0; k < CG_EPV__COUNT; k++)
      if (cg_ep_uses(f, k)) cv[k] = cg_splat(cg, cg_load(cg, cg->t_f32, chan[k], k64(cg, o)), cg->t_vec);
    for (int q = 0; q < NVR; q++) {
      LLVMValueRef x = cg_ep_channel(cg, f, LLVMBuildLoad2(B, cg->t_vec, acc[o][q], ""), cv);
      LLVMValueRef idx = add(cg, mul(cg, add(cg, k64(cg, o * g->HO), li.iv), k64(cg, g->WO)), k64(cg, q * Wl));
      LLVMValueRef m = (q + 1) * Wl <= g->WO ? NULL : lanes_in(cg, k64(cg, q * Wl), k64(cg, 0), k64(cg, g->WO));
      LLVMValueRef outs[2] = {x, NULL}, ptrs[2] = {yb, NULL};
      if (act != OP_INPUT) {
        if (f & CG_EP_STORE_PRE) outs[1] = ew1(cg, act, x), ptrs[1] = y2b;
        else outs[0] = ew1(cg, act, x);
      }
      for (int k = 0; k < 2 && outs[k]; k++) {
        if (m) mstore(cg, outs[k], fptr(cg, ptrs[k], idx), m);
        else cg_store(cg, outs[k], ptrs[k], idx);
      }
    }
  }
  cg_loop_end(cg, &li);
}

/* ---- forward with the output channels in the vector lanes ---- */

/* When O fills the lanes (O = 16 at 16 lanes: LeNet's c2), the rows above waste the
 * lanes past a short output row (10 of 16) and load a broadcast weight per FMA. Here the
 * roles turn: the accumulators are output positions, each NVO vectors over o; per tap
 * (c, u, v) the NVO vectors of the transposed weights WT[tap][o] are loaded once and
 * every position of the block adds one broadcast image value times them. A block is R
 * whole output rows (or, for long rows, NJ columns of one row) with NPOS x NVO <= 24
 * accumulators; each position reads x at a fixed displacement from the block's row base,
 * so the image is read through one pointer and immediate offsets. Padding: the image is
 * first copied into a zero-padded buffer (none when p = 0). The results are scattered
 * to y[o, i, j] (masked lanes past O), after the epilogue (+ bias, batchnorm, activation). */
static bool lanes_fwd_ok(Cg *cg, const Geom *g) {
  if (g->op != OP_CONV2D || g->direct || cg->W <= 1) return false;
  if (g->epflags & ~(CG_EP_BIAS_ROW | CG_EP_BN_ROW | CG_EP_SCALE_ROW | CG_EP_SHIFT_ROW | CG_EP_ACTS | CG_EP_STORE_PRE))
    return false;
  int64_t nvo = (g->O + cg->W - 1) / cg->W;
  return nvo <= 4 && 4 * g->O >= 3 * nvo * cg->W;
}

/* floats of the chunk's buffer: WT (C kh kw x O rounded up to 16) and the padded image;
 * gemm.c's conv_shapes reserves the same */
static int64_t lanes_wt_floats(const Geom *g) { return g->CKK * ((g->O + 15) / 16 * 16); }

static void lanes_fwd_block(Cg *cg, const Geom *g, int R, int NJ, LLVMValueRef i0, LLVMValueRef j0, LLVMValueRef xs,
                            int64_t Hs, int64_t Ws, LLVMValueRef WT, LLVMValueRef yb, const LLVMValueRef *chan,
                            LLVMValueRef y2b) {
  LLVMBuilderRef B = cg->B;
  int Wl = cg->W, NVO = (int)((g->O + Wl - 1) / Wl), NP = R * NJ;
  int64_t OS = (int64_t)NVO * Wl;
  LLVMValueRef acc[24][4];
  for (int k = 0; k < NP; k++)
    for (int q = 0; q < NVO; q++) {
      acc[k][q] = cg_alloca(cg, cg->t_vec, "lacc");
      LLVMBuildStore(B, cg_fconst(cg, cg->t_vec, 0.0), acc[k][q]);
    }
  CgLoop lc = cg_loop_begin(cg, k64(cg, 0), k64(cg, g->C), k64(cg, 1));
  CgLoop lu = cg_loop_begin(cg, k64(cg, 0), k64(cg, g->KH), k64(cg, 1));
  /* xs[c, s i0 + d u, s j0] */
  LLVMValueRef row = add(cg, mul(cg, lc.iv, k64(cg, Hs)), add(cg, mul(cg, i0, k64(cg, g->s)), mul(cg, lu.iv, k64(cg, g->d))));
  LLVMValueRef base = fptr(cg, xs, add(cg, mul(cg, row, k64(cg, Ws)), mul(cg, j0, k64(cg, g->s))));
  LLVMValueRef tap0 = mul(cg, add(cg, mul(cg, lc.iv, k64(cg, g->KH)), lu.iv), k64(cg, g->KW));
  bool unroll = false;   /* unrolled, LLVM shares the broadcasts of x between taps and spills */
  CgLoop lv = {0};
  if (!unroll) lv = cg_loop_begin(cg, k64(cg, 0), k64(cg, g->KW), k64(cg, 1));
  for (int64_t vc = 0; vc < (unroll ? g->KW : 1); vc++) {
    LLVMValueRef vv = unroll ? k64(cg, vc) : lv.iv;
    LLVMValueRef wrow = mul(cg, add(cg, tap0, vv), k64(cg, OS));
    LLVMValueRef wv[4];
    for (int q = 0; q < NVO; q++) wv[q] = cg_load(cg, cg->t_vec, WT, add(cg, wrow, k64(cg, q * Wl)));
    LLVMValueRef bv = fptr(cg, base, mul(cg, vv, k64(cg, g->d)));
    for (int r = 0; r < R; r++)
      for (int jj = 0; jj < NJ; jj++) {
        LLVMValueRef xv = cg_splat(cg, cg_load(cg, cg->t_f32, bv, k64(cg, r * g->s * Ws + jj * g->s)), cg->t_vec);
        for (int q = 0; q < NVO; q++) {
          LLVMValueRef *a = &acc[r * NJ + jj][q];
          LLVMValueRef fa[3] = {xv, wv[q], LLVMBuildLoad2(B, cg->t_vec, *a, "")};
          LLVMBuildStore(B, cg_intrinsic(cg, "llvm.fma", cg->t_vec, fa, 3), *a);
        }
      }
  }
  if (!unroll) cg_loop_end_hint(cg, &lv, CG_LOOP_NO_VECTORIZE | CG_LOOP_NO_UNROLL);
  cg_loop_end_hint(cg, &lu, CG_LOOP_NO_VECTORIZE | CG_LOOP_NO_UNROLL);
  cg_loop_end_hint(cg, &lc, CG_LOOP_NO_VECTORIZE | CG_LOOP_NO_UNROLL);
  /* epilogue, then y[o, i0 + r, j0 + jj]: the block's positions are contiguous in y
   * (whole rows, or a segment of one), so each W positions x W channels of the
   * accumulators are transposed in registers (cg_reg_transpose) and stored as vectors along
   * the positions, masked past the block and skipping channels >= O (a masked scatter
   * per position stored 16 scalars one by one: 21% of the pass for LeNet's c2) */
  int f = g->epflags;
  Op act = cg_ep_act(f);
  LLVMValueRef pbase = add(cg, mul(cg, i0, k64(cg, g->WO)), j0);
  LLVMValueRef zv = cg_fconst(cg, cg->t_vec, 0.0);
  for (int q = 0; q < NVO; q++) {
    LLVMValueRef om = lanes_in(cg, k64(cg, q * Wl), k64(cg, 0), k64(cg, g->O));
    LLVMValueRef cv[CG_EPV__COUNT] = {NULL};   /* the lanes' channels' operands */
    for (int k = 0; k < CG_EPV__COUNT; k++)
      if (cg_ep_uses(f, k)) cv[k] = mload(cg, fptr(cg, chan[k], k64(cg, q * Wl)), om);
    LLVMValueRef outs[2][24];
    LLVMValueRef ptrs[2] = {yb, NULL};
    for (int k = 0; k < NP; k++) {   /* position k = r NJ + jj, at pbase + r Wo + jj = pbase + k */
      LLVMValueRef x = cg_ep_channel(cg, f, LLVMBuildLoad2(B, cg->t_vec, acc[k][q], ""), cv);
      outs[0][k] = x, outs[1][k] = NULL;
      if (act != OP_INPUT) {
        if (f & CG_EP_STORE_PRE) outs[1][k] = ew1(cg, act, x), ptrs[1] = y2b;
        else outs[0][k] = ew1(cg, act, x);
      }
    }
    for (int w = 0; w < 2 && ptrs[w]; w++)
      for (int c0 = 0; c0 < NP; c0 += Wl) {
        LLVMValueRef v[16];
        for (int r = 0; r < Wl; r++) v[r] = c0 + r < NP ? outs[w][c0 + r] : zv;
        cg_reg_transpose(cg, v, cg->W);
        int n = NP - c0 < Wl ? NP - c0 : Wl;
        LLVMValueRef m = n < Wl ? lanes_in(cg, k64(cg, 0), k64(cg, 0), k64(cg, n)) : NULL;
        for (int r = 0; r < Wl && q * Wl + r < g->O; r++) {
          LLVMValueRef at = fptr(cg, ptrs[w], add(cg, pbase, k64(cg, (int64_t)(q * Wl + r) * g->P + c0)));
          if (m) mstore(cg, v[r], at, m);
          else cg_store(cg, v[r], at, k64(cg, 0));
        }
      }
  }
}

/* WT[tap][o] = W[o, tap] (0 for o >= O), once per chunk */
static void lanes_fwd_weights(Cg *cg, const Geom *g, LLVMValueRef K, LLVMValueRef WT) {
  int64_t OS = (g->O + cg->W - 1) / cg->W * cg->W;
  CgLoop lt = cg_loop_begin(cg, k64(cg, 0), k64(cg, g->CKK), k64(cg, 1));
  CgLoop lo = cg_loop_begin(cg, k64(cg, 0), k64(cg, OS), k64(cg, 1));
  LLVMValueRef in = LLVMBuildICmp(cg->B, LLVMIntSLT, lo.iv, k64(cg, g->O), "");
  LLVMValueRef oc = LLVMBuildSelect(cg->B, in, lo.iv, k64(cg, 0), "");
  LLVMValueRef w = cg_load(cg, cg->t_f32, K, add(cg, mul(cg, oc, k64(cg, g->CKK)), lt.iv));
  cg_store(cg, LLVMBuildSelect(cg->B, in, w, cg_fconst(cg, cg->t_f32, 0.0), ""), WT, add(cg, mul(cg, lt.iv, k64(cg, OS)), lo.iv));
  cg_loop_end(cg, &lo);
  cg_loop_end(cg, &lt);
}

/* one image: pad (p > 0), then the blocks */
static void lanes_fwd_image(Cg *cg, const Geom *g, LLVMValueRef xb, LLVMValueRef WT, LLVMValueRef xpad, LLVMValueRef yb,
                            const LLVMValueRef *chan, LLVMValueRef y2b) {
  int Wl = cg->W, NVO = (int)((g->O + Wl - 1) / Wl), maxp = 24 / NVO;
  int64_t Hs = g->H, Ws = g->W;
  LLVMValueRef xs = xb;
  if (g->p > 0) {
    Hs = g->H + 2 * g->p, Ws = g->W + 2 * g->p;
    seg(cg, 0, xpad, NULL, k64(cg, g->C * Hs * Ws));
    CgLoop lr = cg_loop_begin(cg, k64(cg, 0), k64(cg, g->C * g->H), k64(cg, 1));
    LLVMValueRef c = LLVMBuildSDiv(cg->B, lr.iv, k64(cg, g->H), ""), h = LLVMBuildSRem(cg->B, lr.iv, k64(cg, g->H), "");
    LLVMValueRef dst = add(cg, mul(cg, add(cg, mul(cg, c, k64(cg, Hs)), add(cg, h, k64(cg, g->p))), k64(cg, Ws)), k64(cg, g->p));
    seg(cg, 1, fptr(cg, xpad, dst), fptr(cg, xb, mul(cg, lr.iv, k64(cg, g->W))), k64(cg, g->W));
    cg_loop_end(cg, &lr);
    xs = xpad;
  }
  if (g->WO <= maxp) {   /* blocks of R whole rows */
    int R = (int)(maxp / g->WO);
    if (R > g->HO) R = (int)g->HO;
    int64_t nfull = g->HO / R, rem = g->HO % R;
    CgLoop li = cg_loop_begin(cg, k64(cg, 0), k64(cg, nfull), k64(cg, 1));
    lanes_fwd_block(cg, g, R, (int)g->WO, mul(cg, li.iv, k64(cg, R)), k64(cg, 0), xs, Hs, Ws, WT, yb, chan, y2b);
    cg_loop_end(cg, &li);
    if (rem) lanes_fwd_block(cg, g, (int)rem, (int)g->WO, k64(cg, nfull * R), k64(cg, 0), xs, Hs, Ws, WT, yb, chan, y2b);
  } else {   /* each row in segments of maxp columns */
    int64_t nfull = g->WO / maxp, rem = g->WO % maxp;
    CgLoop li = cg_loop_begin(cg, k64(cg, 0), k64(cg, g->HO), k64(cg, 1));
    CgLoop lj = cg_loop_begin(cg, k64(cg, 0), k64(cg, nfull), k64(cg, 1));
    lanes_fwd_block(cg, g, 1, maxp, li.iv, mul(cg, lj.iv, k64(cg, maxp)), xs, Hs, Ws, WT, yb, chan, y2b);
    cg_loop_end(cg, &lj);
    if (rem) lanes_fwd_block(cg, g, 1, (int)rem, li.iv, k64(cg, nfull * maxp), xs, Hs, Ws, WT, yb, chan, y2b);
    cg_loop_end(cg, &li);
  }
}

/* ---- backward-data with the images in the vector lanes ---- */

/* Few input channels and short rows waste lanes in every per-image layout: the transposed
 * convolution's rows above are 14 wide with 10 valid lanes per tap for LeNet's c2, and
 * its im2col GEMM has K = O = 16. Here a group of W images shares each vector (lane l is
 * image b0 + l): dy is first gathered into dyN[o][i][j][l] (PAD zero columns each side),
 * then every dx[b0 + l, c, h, w] is a sum of broadcast weights times dyN vectors over the
 * valid taps only: per output row h the kernel rows u with 0 <= h + p - d u < Ho, per
 * block of PW adjacent positions the union of their valid columns v (the positions a
 * tap misses read the zero columns: PAD = PW - 1 covers any dilation). Per (u, v, o):
 * PW loads of dyN, C broadcasts of W[o, c, u, v], C x PW FMAs (C x PW <= 24, PW <= 4).
 * The sums are scattered to dx (masked past the batch). Each image group is computed the
 * same way in whatever chunk: the result does not depend on the thread count. */
enum { BL_MAX_FLOATS = 1 << 16 };   /* dyN per chunk (256 KiB in f32): an L2's share */

static int bl_pw(int64_t C) { int64_t pw = 24 / (C < 1 ? 1 : C); return pw > 4 ? 4 : (int)pw; }

/* dyN's floats at 16 lanes, or 0 when the path does not apply (the reservation of
 * gemm.c's conv_shapes and the choice below are this one test) */
static int64_t bl_floats(Op op, int64_t C, int64_t O, int64_t HO, int64_t WO, int64_t s, bool direct) {
  if (op != OP_CONV2D_BWD_DATA || s != 1 || direct || C > 12) return 0;
  int64_t n = O * HO * (WO + 2 * (bl_pw(C) - 1)) * 16;
  return n <= BL_MAX_FLOATS ? n : 0;
}

static void bl_block(Cg *cg, const Geom *g, int PW, LLVMValueRef h, LLVMValueRef w0, LLVMValueRef dyN,
                     LLVMValueRef Kw, LLVMValueRef dxg, LLVMValueRef lm) {
  LLVMBuilderRef B = cg->B;
  int L = cg->W, C = (int)g->C, PAD = bl_pw(g->C) - 1;
  int64_t WP = g->WO + 2 * PAD;
  LLVMValueRef acc[24][4];
  for (int c = 0; c < C; c++)
    for (int k = 0; k < PW; k++) {
      acc[c][k] = cg_alloca(cg, cg->t_vec, "bacc");
      LLVMBuildStore(B, cg_fconst(cg, cg->t_vec, 0.0), acc[c][k]);
    }
  /* valid u: 0 <= h + p - d u < Ho; valid v of the block: w0 + PW - 1 + p - d v >= 0 and w0 + p - d v < Wo */
  LLVMValueRef hp = add(cg, h, k64(cg, g->p));
  LLVMValueRef ulo = ceil_div_pos(cg, sub(cg, hp, k64(cg, g->HO - 1)), g->d);
  LLVMValueRef uhi = cg_min_i64(cg, add(cg, LLVMBuildSDiv(B, hp, k64(cg, g->d), ""), k64(cg, 1)), k64(cg, g->KH));
  LLVMValueRef wp = add(cg, w0, k64(cg, g->p));
  LLVMValueRef vlo = ceil_div_pos(cg, sub(cg, wp, k64(cg, g->WO - 1)), g->d);
  LLVMValueRef vhi = cg_min_i64(cg, add(cg, LLVMBuildSDiv(B, add(cg, wp, k64(cg, PW - 1)), k64(cg, g->d), ""), k64(cg, 1)), k64(cg, g->KW));
  CgLoop lu = cg_loop_begin(cg, ulo, LLVMBuildSelect(B, LLVMBuildICmp(B, LLVMIntSLT, uhi, ulo, ""), ulo, uhi, ""), k64(cg, 1));
  LLVMValueRef i = sub(cg, hp, mul(cg, lu.iv, k64(cg, g->d)));
  CgLoop lv = cg_loop_begin(cg, vlo, LLVMBuildSelect(B, LLVMBuildICmp(B, LLVMIntSLT, vhi, vlo, ""), vlo, vhi, ""), k64(cg, 1));
  /* dyN[o][i][w0 + p - d v + PAD][.] */
  LLVMValueRef jp = add(cg, sub(cg, wp, mul(cg, lv.iv, k64(cg, g->d))), k64(cg, PAD));
  LLVMValueRef tap = add(cg, mul(cg, lu.iv, k64(cg, g->KW)), lv.iv);
  CgLoop lo = cg_loop_begin(cg, k64(cg, 0), k64(cg, g->O), k64(cg, 1));
  LLVMValueRef row = fptr(cg, dyN, mul(cg, add(cg, mul(cg, add(cg, mul(cg, lo.iv, k64(cg, g->HO)), i), k64(cg, WP)), jp), k64(cg, L)));
  LLVMValueRef yv[4];
  for (int k = 0; k < PW; k++) yv[k] = cg_load(cg, cg->t_vec, row, k64(cg, k * L));
  LLVMValueRef wbase = add(cg, mul(cg, lo.iv, k64(cg, g->C * g->KH * g->KW)), tap);
  for (int c = 0; c < C; c++) {
    LLVMValueRef wv = cg_splat(cg, cg_load(cg, cg->t_f32, Kw, add(cg, wbase, k64(cg, c * g->KH * g->KW))), cg->t_vec);
    for (int k = 0; k < PW; k++) {
      LLVMValueRef fa[3] = {wv, yv[k], LLVMBuildLoad2(B, cg->t_vec, acc[c][k], "")};
      LLVMBuildStore(B, cg_intrinsic(cg, "llvm.fma", cg->t_vec, fa, 3), acc[c][k]);
    }
  }
  cg_loop_end_hint(cg, &lo, CG_LOOP_NO_VECTORIZE | CG_LOOP_NO_UNROLL);
  cg_loop_end_hint(cg, &lv, CG_LOOP_NO_VECTORIZE | CG_LOOP_NO_UNROLL);
  cg_loop_end_hint(cg, &lu, CG_LOOP_NO_VECTORIZE | CG_LOOP_NO_UNROLL);
  /* dx[b0 + l, c, h, w0 + k] */
  LLVMTypeRef VI = LLVMVectorType(cg->t_i64, (unsigned)L), VP = LLVMVectorType(cg->t_ptr, (unsigned)L);
  LLVMValueRef iota[16];
  for (int l = 0; l < L; l++) iota[l] = k64(cg, l * g->C * g->H * g->W);
  LLVMValueRef lanes = LLVMConstVector(iota, (unsigned)L);
  unsigned sid = LLVMLookupIntrinsicID("llvm.masked.scatter", 19);
  LLVMTypeRef sov[2] = {cg->t_vec, VP};
  for (int c = 0; c < C; c++)
    for (int k = 0; k < PW; k++) {
      LLVMValueRef pos = add(cg, mul(cg, add(cg, k64(cg, c * g->H), h), k64(cg, g->W)), add(cg, w0, k64(cg, k)));
      LLVMValueRef idx = LLVMBuildAdd(B, cg_splat(cg, pos, VI), lanes, "");
      LLVMValueRef sa[4] = {LLVMBuildLoad2(B, cg->t_vec, acc[c][k], ""), LLVMBuildGEP2(B, cg->t_f32, dxg, &idx, 1, ""),
                            cg_i32(cg, cg->esize), lm};
      LLVMBuildCall2(B, LLVMIntrinsicGetType(cg->C, sid, sov, 2), LLVMGetIntrinsicDeclaration(cg->M, sid, sov, 2), sa, 4, "");
    }
}

/* image groups [g0, g1): gather dy, then the blocks of every output row */
static void bl_groups(Cg *cg, const Geom *g, LLVMValueRef DX, LLVMValueRef Kw, LLVMValueRef DY, LLVMValueRef Bn,
                      LLVMValueRef dyN, LLVMValueRef g0, LLVMValueRef g1) {
  LLVMBuilderRef B = cg->B;
  int L = cg->W, PW = bl_pw(g->C), PAD = PW - 1;
  int64_t WP = g->WO + 2 * PAD, ys = g->O * g->HO * g->WO;
  LLVMTypeRef VI = LLVMVectorType(cg->t_i64, (unsigned)L), VP = LLVMVectorType(cg->t_ptr, (unsigned)L);
  LLVMValueRef iota[16];
  for (int l = 0; l < L; l++) iota[l] = k64(cg, l * ys);
  LLVMValueRef lanes = LLVMConstVector(iota, (unsigned)L);
  unsigned gid = LLVMLookupIntrinsicID("llvm.masked.gather", 18);
  LLVMTypeRef gov[2] = {cg->t_vec, VP};
  LLVMValueRef zv = cg_fconst(cg, cg->t_vec, 0.0);
  CgLoop lg = cg_loop_begin(cg, g0, g1, k64(cg, 1));
  LLVMValueRef b0 = mul(cg, lg.iv, k64(cg, L));
  LLVMValueRef lm = lanes_in(cg, k64(cg, 0), k64(cg, 0), sub(cg, Bn, b0));   /* lanes of images < B */
  LLVMValueRef dyg = fptr(cg, DY, mul(cg, b0, k64(cg, ys)));
  LLVMValueRef dxg = fptr(cg, DX, mul(cg, b0, k64(cg, g->C * g->H * g->W)));
  /* dyN[o][i][j + PAD] = dy[b0 + l, o, i, j]; zero columns around */
  CgLoop lr = cg_loop_begin(cg, k64(cg, 0), k64(cg, g->O * g->HO), k64(cg, 1));
  LLVMValueRef nrow = fptr(cg, dyN, mul(cg, lr.iv, k64(cg, WP * L)));
  for (int k = 0; k < PAD; k++) {
    cg_store(cg, zv, nrow, k64(cg, k * L));
    cg_store(cg, zv, nrow, k64(cg, (PAD + g->WO + k) * L));
  }
  CgLoop lj = cg_loop_begin(cg, k64(cg, 0), k64(cg, g->WO), k64(cg, 1));
  LLVMValueRef idx = LLVMBuildAdd(B, cg_splat(cg, add(cg, mul(cg, lr.iv, k64(cg, g->WO)), lj.iv), VI), lanes, "");
  LLVMValueRef ga[4] = {LLVMBuildGEP2(B, cg->t_f32, dyg, &idx, 1, ""), cg_i32(cg, cg->esize), lm, zv};
  LLVMValueRef v = LLVMBuildCall2(B, LLVMIntrinsicGetType(cg->C, gid, gov, 2), LLVMGetIntrinsicDeclaration(cg->M, gid, gov, 2), ga, 4, "");
  cg_store(cg, v, nrow, mul(cg, add(cg, lj.iv, k64(cg, PAD)), k64(cg, L)));
  cg_loop_end_hint(cg, &lj, CG_LOOP_NO_VECTORIZE | CG_LOOP_NO_UNROLL);
  cg_loop_end(cg, &lr);
  int64_t nfull = g->W / PW, rem = g->W % PW;
  CgLoop lh = cg_loop_begin(cg, k64(cg, 0), k64(cg, g->H), k64(cg, 1));
  CgLoop lw = cg_loop_begin(cg, k64(cg, 0), k64(cg, nfull), k64(cg, 1));
  bl_block(cg, g, PW, lh.iv, mul(cg, lw.iv, k64(cg, PW)), dyN, Kw, dxg, lm);
  cg_loop_end(cg, &lw);
  if (rem) bl_block(cg, g, (int)rem, lh.iv, k64(cg, nfull * PW), dyN, Kw, dxg, lm);
  cg_loop_end(cg, &lh);
  cg_loop_end(cg, &lg);
}

int64_t cg_conv_own_floats(Func *f, const Inst *in) {
  const TensorType *kt = in->op == OP_CONV2D_BWD_WEIGHT ? ir_vtype(f, (int32_t)(in - f->insts)) : ir_vtype(f, in->args[1]);
  const TensorType *xt = in->op == OP_CONV2D_BWD_DATA ? ir_vtype(f, (int32_t)(in - f->insts)) : ir_vtype(f, in->args[0]);
  const TensorType *yt = in->op == OP_CONV2D ? ir_vtype(f, (int32_t)(in - f->insts))
                         : in->op == OP_CONV2D_BWD_DATA ? ir_vtype(f, in->args[0]) : ir_vtype(f, in->args[1]);
  int64_t O = kt->dims[0], C = kt->dims[1], CKK = C * kt->dims[2] * kt->dims[3], p = in->iattr[1];
  bool direct = cg_conv_direct_b(f, in);
  if (in->op == OP_CONV2D && !direct) {   /* lanes_fwd: WT and the padded image */
    int64_t pad = p > 0 ? C * (xt->dims[2] + 2 * p) * (xt->dims[3] + 2 * p) : 0;
    return CKK * ((O + 15) / 16 * 16) + pad;
  }
  if (in->op == OP_CONV2D_BWD_WEIGHT) return bww_lanes_floats(f, in);
  return bl_floats((Op)in->op, C, O, yt->dims[2], yt->dims[3], in->iattr[0], direct);
}

/* ---- the task ---- */

enum { CX_X, CX_K, CX_Y, CX_PACK, CX_B, CX_NCHUNKS, CX_SPLITM, CX_EFN, CX_ECTX, CX_BIAS, CX_OUT2,
       CX_MEAN, CX_RSTD, CX_GAMMA, CX_BETA, CX__COUNT };

static LLVMTypeRef ctx_type(Cg *cg) {
  LLVMTypeRef f[CX__COUNT] = {cg->t_ptr, cg->t_ptr, cg->t_ptr, cg->t_ptr, cg->t_i64, cg->t_i64, cg->t_i64,
                              cg->t_ptr, cg->t_ptr, cg->t_ptr, cg->t_ptr, cg->t_ptr, cg->t_ptr, cg->t_ptr, cg->t_ptr};
  return LLVMStructTypeInContext(cg->C, f, CX__COUNT, 0);
}


/* backward-weights splits dW's columns in units of W (the core's half-width micro-kernel
 * takes a last panel of W columns): C kh kw = 25 still makes two chunks, 16 + 9 */
static int64_t bww_unit(Cg *cg) { return cg->W > 1 && cg->NR == 2 * cg->W ? cg->W : cg->NR; }

static void call_core(Cg *cg, LLVMValueRef core, LLVMValueRef a[16]) {
  LLVMBuildCall2(cg->B, LLVMGlobalGetValueType(core), core, a, 16, "");
}

static LLVMValueRef build_task(Cg *cg, const Geom *g) {
  LLVMValueRef core = cg_gemm_core(cg);
  LLVMValueRef fn = cg_new_function(cg, "bpcc_conv_task", cg->t_task, true);
  cg->fn = fn;
  LLVMBuilderRef B = cg->B;
  LLVMPositionBuilderAtEnd(B, LLVMAppendBasicBlockInContext(cg->C, fn, "entry"));
  LLVMTypeRef ct = ctx_type(cg);
  LLVMValueRef f[CX__COUNT];
  for (int i = 0; i < CX__COUNT; i++)
    f[i] = LLVMBuildLoad2(B, LLVMStructGetTypeAtIndex(ct, (unsigned)i), LLVMBuildStructGEP2(B, ct, LLVMGetParam(fn, 0), (unsigned)i, ""), "");
  LLVMValueRef X = f[CX_X], K = f[CX_K], Y = f[CX_Y], Bn = f[CX_B], nch = f[CX_NCHUNKS];
  LLVMValueRef z = k64(cg, 0), one = k64(cg, 1), nul = LLVMConstNull(cg->t_ptr);
  LLVMValueRef xs = k64(cg, g->C * g->H * g->W), ys = k64(cg, g->O * g->P);
  LLVMValueRef CKK = k64(cg, g->CKK), P = k64(cg, g->P), O = k64(cg, g->O);
  LLVMValueRef chan[CG_EPV__COUNT] = {f[CX_BIAS], f[CX_MEAN], f[CX_RSTD], f[CX_GAMMA], f[CX_BETA]};   /* direct paths */
  CgLoop l = cg_loop_begin(cg, LLVMGetParam(fn, 1), LLVMGetParam(fn, 2), one);
  LLVMValueRef pk = fptr(cg, f[CX_PACK], mul(cg, l.iv, k64(cg, cg_gemm_pack_floats(cg))));
  LLVMValueRef bp = fptr(cg, pk, k64(cg, cg->pack_a_floats));
  LLVMValueRef col = fptr(cg, bp, k64(cg, cg->pack_b_floats));
  if (g->lanes) lanes_fwd_weights(cg, g, K, col);
  if (g->batchl) {
    LLVMValueRef g0, g1;
    chunk_range(cg, l.iv, nch, LLVMBuildSDiv(B, add(cg, Bn, k64(cg, cg->W - 1)), k64(cg, cg->W), ""), 1, &g0, &g1);
    bl_groups(cg, g, X, K, Y, Bn, col, g0, g1);
  } else if (g->op != OP_CONV2D_BWD_WEIGHT) {
    LLVMValueRef b0, b1;
    chunk_range(cg, l.iv, nch, Bn, 1, &b0, &b1);
    CgLoop lb = cg_loop_begin(cg, b0, b1, one);
    LLVMValueRef xb = fptr(cg, X, mul(cg, lb.iv, xs)), yb = fptr(cg, Y, mul(cg, lb.iv, ys));
    if (g->lanes) {
      LLVMValueRef y2b = g->epflags & CG_EP_STORE_PRE ? fptr(cg, f[CX_OUT2], mul(cg, lb.iv, ys)) : NULL;
      lanes_fwd_image(cg, g, xb, col, fptr(cg, col, k64(cg, lanes_wt_floats(g))), yb, chan, y2b);
    } else if (g->rowconv && g->op == OP_CONV2D_BWD_DATA) {
      Geom t = transposed(g);
      rowconv_image(cg, &t, yb, K, xb, NULL, NULL);
    } else if (g->rowconv) {
      LLVMValueRef y2b = g->epflags & CG_EP_STORE_PRE ? fptr(cg, f[CX_OUT2], mul(cg, lb.iv, ys)) : NULL;
      rowconv_image(cg, g, xb, K, yb, chan, y2b);
    } else if (g->op == OP_CONV2D) {
      if (!g->direct) im2col(cg, g, true, xb, col, z, CKK);
      LLVMValueRef a[16] = {O, P, CKK, K, CKK, one, g->direct ? xb : col, P, one, yb, P, pk, bp,
                            f[CX_EFN], f[CX_ECTX], z};
      call_core(cg, core, a);
    } else {
      LLVMValueRef a[16] = {CKK, P, O, K, one, CKK, yb, P, one, g->direct ? xb : col, P, pk, bp, nul, nul, z};
      call_core(cg, core, a);
      if (!g->direct && g->s == 1 && cg->W > 1) {
        col2im_gather(cg, g, xb, col);
      } else if (!g->direct) {
        seg(cg, 0, xb, NULL, xs);
        im2col(cg, g, false, xb, col, z, CKK);
      }
    }
    cg_loop_end(cg, &lb);
  } else if (g->rowconv) {
    LLVMValueRef b0, b1;
    chunk_range(cg, l.iv, nch, Bn, 1, &b0, &b1);
    rowconv_bww(cg, g, X, Y, col, b0, b1);
  } else if (lanes_nvo(cg, g)) {
    LLVMValueRef b0, b1;
    chunk_range(cg, l.iv, nch, Bn, 1, &b0, &b1);
    lanes_bww(cg, g, lanes_nvo(cg, g), X, Y, col, b0, b1);
  } else {
    LLVMValueRef splitm = LLVMBuildICmp(B, LLVMIntNE, f[CX_SPLITM], z, "");
    LLVMValueRef sm, em, sn, en;
    chunk_range(cg, l.iv, nch, O, cg->MR, &sm, &em);
    chunk_range(cg, l.iv, nch, CKK, bww_unit(cg), &sn, &en);
    LLVMValueRef m0 = LLVMBuildSelect(B, splitm, sm, z, ""), m1 = LLVMBuildSelect(B, splitm, em, O, "");
    LLVMValueRef r0 = LLVMBuildSelect(B, splitm, z, sn, ""), r1 = LLVMBuildSelect(B, splitm, CKK, en, "");
    LLVMValueRef nonempty = LLVMBuildAnd(B, LLVMBuildICmp(B, LLVMIntSLT, m0, m1, ""), LLVMBuildICmp(B, LLVMIntSLT, r0, r1, ""), "");
    LLVMBasicBlockRef join = cg_if_begin(cg, nonempty);
    CgLoop lb = cg_loop_begin(cg, z, Bn, one);
    LLVMValueRef xb = fptr(cg, X, mul(cg, lb.iv, xs)), yb = fptr(cg, Y, mul(cg, lb.iv, ys));
    LLVMValueRef src = col;
    if (g->direct) src = fptr(cg, xb, mul(cg, r0, P));
    else im2col(cg, g, true, xb, col, r0, r1);
    LLVMValueRef acc = LLVMBuildZExt(B, LLVMBuildICmp(B, LLVMIntSGT, lb.iv, z, ""), cg->t_i64, "");
    LLVMValueRef a[16] = {sub(cg, m1, m0), sub(cg, r1, r0), P, fptr(cg, yb, mul(cg, m0, P)), P, one, src, one, P,
                          fptr(cg, K, add(cg, mul(cg, m0, CKK), r0)), CKK, pk, bp, nul, nul, acc};
    call_core(cg, core, a);
    cg_loop_end(cg, &lb);
    cg_if_end(cg, join);
  }
  cg_loop_end(cg, &l);
  LLVMBuildRetVoid(B);
  return fn;
}

/* ---- the call site ---- */

/* Below this many multiply-adds a convolution runs on the calling thread. */
#define CONV_PARALLEL_MACS (1 << 20)

void cg_kernel_conv(Cg *cg, const Inst *in, const CgVal *a, const CgVal *b, const CgVal *out, const CgEpilogue *ep) {
  LLVMBuilderRef B = cg->B;
  Op op = (Op)in->op;
  const TensorType *xt = op == OP_CONV2D_BWD_DATA ? out->t : a->t;
  const TensorType *kt = op == OP_CONV2D_BWD_WEIGHT ? out->t : b->t;
  const TensorType *yt = op == OP_CONV2D ? out->t : op == OP_CONV2D_BWD_DATA ? a->t : b->t;
  Geom g = {op, xt->dims[1], xt->dims[2], xt->dims[3], kt->dims[0], kt->dims[2], kt->dims[3], yt->dims[2], yt->dims[3],
            in->iattr[0], in->iattr[1], in->iattr[2], 0, 0, false, false, false, false, false, 0};
  g.CKK = g.C * g.KH * g.KW, g.P = g.HO * g.WO;
  g.direct = g.KH == 1 && g.KW == 1 && g.s == 1 && g.p == 0;
  g.epflags = op == OP_CONV2D && ep ? ep->flags : 0;
  g.lanes = lanes_fwd_ok(cg, &g);
  g.batchl = cg->W > 1 && bl_floats(op, g.C, g.O, g.HO, g.WO, g.s, g.direct) > 0;
  g.rowconv = !g.lanes && !g.batchl && rowconv_ok(cg, &g);
  LLVMValueRef X = op == OP_CONV2D_BWD_DATA ? out->ptr : a->ptr;
  LLVMValueRef Kp = op == OP_CONV2D_BWD_WEIGHT ? out->ptr : b->ptr;
  LLVMValueRef Y = op == OP_CONV2D ? out->ptr : op == OP_CONV2D_BWD_DATA ? a->ptr : b->ptr;
  LLVMValueRef Bn = cg_dim(cg, xt, 0);

  /* the task, specialized to this convolution's geometry (every dim but B is fixed) */
  CgAside aside = cg_aside_begin(cg);
  LLVMValueRef task = build_task(cg, &g);
  cg_aside_end(cg, aside);

  LLVMValueRef efn = LLVMConstNull(cg->t_ptr), ectx = LLVMConstNull(cg->t_ptr);
  if (op == OP_CONV2D && !g.rowconv && !g.lanes) cg_gemm_epilogue(cg, ep, Y, k64(cg, g.O), &efn, &ectx);

  /* chunks: the pool's threads, at most gemm_chunks (the workspace's buffer sets) */
  LLVMValueRef nth = LLVMBuildSExt(B, cg_frame_field(cg, CG_FR_NTHREADS), cg->t_i64, "");
  nth = cg_min_i64(cg, nth, k64(cg, cg->gemm_chunks));
  nth = LLVMBuildSelect(B, LLVMBuildICmp(B, LLVMIntSLT, nth, k64(cg, 1), ""), k64(cg, 1), nth, "");
  LLVMValueRef macs = mul(cg, Bn, k64(cg, g.O * g.CKK * g.P));
  nth = LLVMBuildSelect(B, LLVMBuildICmp(B, LLVMIntSGE, macs, k64(cg, CONV_PARALLEL_MACS), ""), nth, k64(cg, 1), "");
  LLVMValueRef nch, splitm = k64(cg, 0);
  if (g.batchl) {   /* groups of W images */
    nch = cg_min_i64(cg, nth, LLVMBuildSDiv(B, add(cg, Bn, k64(cg, cg->W - 1)), k64(cg, cg->W), ""));
    nch = LLVMBuildSelect(B, LLVMBuildICmp(B, LLVMIntSLT, nch, k64(cg, 1), ""), k64(cg, 1), nch, "");
  } else if (op != OP_CONV2D_BWD_WEIGHT) {
    nch = cg_min_i64(cg, nth, Bn);
    nch = LLVMBuildSelect(B, LLVMBuildICmp(B, LLVMIntSLT, nch, k64(cg, 1), ""), k64(cg, 1), nch, "");
  } else if (g.rowconv) {   /* the images in gemm_chunks parts, whatever the threads (bww_reduce) */
    nch = k64(cg, cg->gemm_chunks);
  } else if (lanes_nvo(cg, &g)) {   /* the images in gemm_chunks parts, as the rows */
    nch = k64(cg, cg->gemm_chunks);
  } else {
    /* as the products: along dW's columns unless they have fewer than 2 panels per
     * chunk, then along its rows; one chunk if neither has */
    int64_t pn = (g.CKK + bww_unit(cg) - 1) / bww_unit(cg), pm = (g.O + cg->MR - 1) / cg->MR;
    LLVMValueRef twice = mul(cg, nth, k64(cg, 2));
    LLVMValueRef sm = LLVMBuildICmp(B, LLVMIntSLT, k64(cg, pn), twice, "");
    LLVMValueRef mtoo = LLVMBuildICmp(B, LLVMIntSLT, k64(cg, pm), twice, "");
    nch = LLVMBuildSelect(B, LLVMBuildAnd(B, sm, mtoo, ""), k64(cg, 1), nth, "");
    splitm = LLVMBuildZExt(B, sm, cg->t_i64, "");
    /* no image: dW = 0 (the task's first image overwrites) */
    LLVMBasicBlockRef j0 = cg_if_begin(cg, LLVMBuildICmp(B, LLVMIntSLE, Bn, k64(cg, 0), ""));
    seg(cg, 0, Kp, NULL, k64(cg, g.O * g.CKK));
    cg_if_end(cg, j0);
  }
  LLVMTypeRef ct = ctx_type(cg);
  LLVMValueRef ctx = cg_alloca(cg, ct, "convctx");
  LLVMValueRef nul = LLVMConstNull(cg->t_ptr);
  CgEpilogue none;
  memset(&none, 0, sizeof none);
  const CgEpilogue *e = ep ? ep : &none;
  LLVMValueRef vals[CX__COUNT] = {X, Kp, Y, cg->gemm_pack, Bn, nch, splitm, efn, ectx, e->bias, e->out2,
                                  e->mean, e->rstd, e->gamma, e->beta};
  for (int i = 0; i < CX__COUNT; i++)
    LLVMBuildStore(B, vals[i] ? vals[i] : nul, LLVMBuildStructGEP2(B, ct, ctx, (unsigned)i, ""));
  if (op == OP_CONV2D_BWD_WEIGHT && (g.rowconv || lanes_nvo(cg, &g))) {
    LLVMValueRef par = LLVMBuildAnd(B, LLVMBuildICmp(B, LLVMIntSGT, nth, k64(cg, 1), ""),
                                    LLVMBuildICmp(B, LLVMIntSGT, nch, k64(cg, 1), ""), "");
    cg_run_task(cg, par, nch, k64(cg, 1), task, ctx, nch);
    if (g.rowconv) bww_reduce(cg, &g, true, g.O * cg->W, Kp, Bn, nch);
    else bww_reduce(cg, &g, false, (int64_t)lanes_nvo(cg, &g) * cg->W, Kp, Bn, nch);
    return;
  }
  LLVMValueRef par = LLVMBuildICmp(B, LLVMIntSGT, nch, k64(cg, 1), "");
  cg_run_task(cg, par, nch, k64(cg, 1), task, ctx, k64(cg, 1));
}
