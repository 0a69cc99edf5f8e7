/* codegen/optim.c — the optimizer update: one streaming pass over the params block.
 *
 * Parameters, gradients and optimizer state are each one float block, so the update is
 * a single vector loop over param_floats elements (the 64-byte alignment gaps between
 * parameters are updated too; nothing reads them). Hyperparameters come from
 * frame->hyper at run time (BPRT_H_*), so a schedule or set_lr needs no recompilation;
 * the scalar factors (bias corrections, the clipped-norm coefficient) are computed in
 * double once per step, then the loop runs in f32. The state is treated as zero on
 * step t = 1 (the kernel never reads it then), so the runtime need not clear it.
 *
 * The formulas are torch.optim's (PyTorch 1.13, single-tensor path), with
 * g = the gradient after clipping, t = BPRT_H_STEP (1-based):
 *
 *   clip:    norm = sqrt(sum g^2 over all params);  if max_norm > 0:
 *            g *= min(1, max_norm / (norm + 1e-6))           (clip_grad_norm_, in place)
 *   sgd:     d = g + wd p
 *            momentum != 0:  buf = t == 1 ? d : momentum buf + (1 - dampening) d
 *                            d = nesterov ? d + momentum buf : buf
 *            p -= lr d
 *   adagrad: d = g + wd p;  clr = lr / (1 + (t - 1) lr_decay)
 *            sum = (t == 1 ? initial_accumulator_value : sum) + d^2
 *            p -= clr d / (sqrt(sum) + eps)
 *   rmsprop: d = g + wd p;  sq = alpha sq + (1 - alpha) d^2;  avg = sqrt(sq) + eps
 *            momentum > 0:  buf = momentum buf + d / avg;  p -= lr buf
 *            else           p -= lr d / avg
 *   adam:    d = g + wd p;  m = b1 m + (1 - b1) d;  v = b2 v + (1 - b2) d^2
 *            p -= (lr / (1 - b1^t)) m / (sqrt(v) / sqrt(1 - b2^t) + eps)
 *   adamw:   p *= 1 - lr wd  (decoupled), then adam with d = g
 *
 * State layout (opt_state): sgd/momentum [buf], adagrad [sum], rmsprop [sq, buf],
 * adam/adamw [m, v], each param_floats long. */
#include "codegen/cg.h"

typedef struct {
  int kind;
  LLVMValueRef p, g, s0, s1;       /* float pointers */
  LLVMValueRef first;              /* i1: t == 1 */
  LLVMValueRef nesterov, use_mom;  /* i1 */
  /* f32 scalars */
  LLVMValueRef lr, wd, mom, damp1, alpha, alpha1, eps, b1, b11, b2, b21, step_size, bc2s, clr, decay, init_acc, gscale;
} UpdCtx;

static LLVMValueRef S(Cg *cg, LLVMValueRef s, LLVMTypeRef T) { return cg_splat(cg, s, T); }

static void upd_body(Cg *cg, void *cp, LLVMValueRef j, LLVMTypeRef T) {
  UpdCtx *c = cp;
  LLVMBuilderRef B = cg->B;
#define FMUL(a, b) LLVMBuildFMul(B, a, b, "")
#define FADD(a, b) LLVMBuildFAdd(B, a, b, "")
#define FSUB(a, b) LLVMBuildFSub(B, a, b, "")
#define FDIV(a, b) LLVMBuildFDiv(B, a, b, "")
#define SEL(c_, a, b) LLVMBuildSelect(B, c_, a, b, "")
  LLVMValueRef p = cg_load(cg, T, c->p, j);
  LLVMValueRef g = FMUL(cg_load(cg, T, c->g, j), S(cg, c->gscale, T));
  LLVMValueRef zero = cg_fconst(cg, T, 0);
  LLVMValueRef d = c->kind == BPRT_OPT_ADAMW ? g : FADD(g, FMUL(S(cg, c->wd, T), p));
  LLVMValueRef np;
  switch (c->kind) {
  case BPRT_OPT_SGD: case BPRT_OPT_MOMENTUM: {
    LLVMValueRef buf = cg_load(cg, T, c->s0, j);
    LLVMValueRef nb = FADD(FMUL(S(cg, c->mom, T), buf), FMUL(S(cg, c->damp1, T), d));
    nb = SEL(c->first, d, nb);
    LLVMValueRef dn = SEL(c->nesterov, FADD(d, FMUL(S(cg, c->mom, T), nb)), nb);
    LLVMValueRef upd = SEL(c->use_mom, dn, d);
    cg_store(cg, SEL(c->use_mom, nb, zero), c->s0, j);
    np = FSUB(p, FMUL(S(cg, c->lr, T), upd));
    break;
  }
  case BPRT_OPT_ADAGRAD: {
    LLVMValueRef sum = SEL(c->first, S(cg, c->init_acc, T), cg_load(cg, T, c->s0, j));
    sum = FADD(sum, FMUL(d, d));
    cg_store(cg, sum, c->s0, j);
    LLVMValueRef sd = FADD(cg_intrinsic(cg, "llvm.sqrt", T, &sum, 1), S(cg, c->eps, T));
    np = FSUB(p, FMUL(S(cg, c->clr, T), FDIV(d, sd)));
    break;
  }
  case BPRT_OPT_RMSPROP: {
    LLVMValueRef sq = SEL(c->first, zero, cg_load(cg, T, c->s0, j));
    sq = FADD(FMUL(S(cg, c->alpha, T), sq), FMUL(S(cg, c->alpha1, T), FMUL(d, d)));
    cg_store(cg, sq, c->s0, j);
    LLVMValueRef avg = FADD(cg_intrinsic(cg, "llvm.sqrt", T, &sq, 1), S(cg, c->eps, T));
    LLVMValueRef q = FDIV(d, avg);
    LLVMValueRef buf = SEL(c->first, zero, cg_load(cg, T, c->s1, j));
    buf = FADD(FMUL(S(cg, c->mom, T), buf), q);
    cg_store(cg, SEL(c->use_mom, buf, zero), c->s1, j);
    np = FSUB(p, FMUL(S(cg, c->lr, T), SEL(c->use_mom, buf, q)));
    break;
  }
  default: {  /* adam, adamw */
    if (c->kind == BPRT_OPT_ADAMW) p = FMUL(p, S(cg, c->decay, T));
    LLVMValueRef m = SEL(c->first, zero, cg_load(cg, T, c->s0, j));
    LLVMValueRef v = SEL(c->first, zero, cg_load(cg, T, c->s1, j));
    m = FADD(FMUL(S(cg, c->b1, T), m), FMUL(S(cg, c->b11, T), d));
    v = FADD(FMUL(S(cg, c->b2, T), v), FMUL(S(cg, c->b21, T), FMUL(d, d)));
    cg_store(cg, m, c->s0, j);
    cg_store(cg, v, c->s1, j);
    LLVMValueRef den = FADD(FDIV(cg_intrinsic(cg, "llvm.sqrt", T, &v, 1), S(cg, c->bc2s, T)), S(cg, c->eps, T));
    np = FSUB(p, FMUL(S(cg, c->step_size, T), FDIV(m, den)));
    break;
  }
  }
  cg_store(cg, np, c->p, j);
#undef FMUL
#undef FADD
#undef FSUB
#undef FDIV
#undef SEL
}

typedef struct {
  LLVMValueRef g, accv, accs;
} SqCtx;

static void sq_body(Cg *cg, void *cp, LLVMValueRef j, LLVMTypeRef T) {
  SqCtx *c = cp;
  LLVMValueRef g = cg_load(cg, T, c->g, j);
  LLVMValueRef acc = cg_is_vec(T) ? c->accv : c->accs;
  LLVMValueRef fa[3] = {g, g, LLVMBuildLoad2(cg->B, T, acc, "")};
  LLVMBuildStore(cg->B, cg_intrinsic(cg, "llvm.fma", T, fa, 3), acc);
}

/* ------------------------------------------------------------------ the chunked pass */

/* The update runs as a task over chunks of CG_UPDATE_CHUNK floats (multiples of 16,
 * so vectors stay aligned), through frame->parallel_for when the block is big enough
 * for two threads to pay off: an elementwise pass, so the result does not depend on
 * how chunks are spread over threads. The task reads its pointers, flags and scalars
 * from a context struct the caller fills. */
#define CG_UPDATE_CHUNK (INT64_C(1) << 16)
enum { UX_NPTR = 4, UX_NFLAG = 3, UX_NF32 = 16, UX__COUNT = UX_NPTR + UX_NFLAG + UX_NF32 };

/* The fields of UpdCtx in context order: pointers, i1 flags (stored as i8), f32. */
static void ctx_slots(UpdCtx *c, LLVMValueRef *slot[UX__COUNT]) {
  LLVMValueRef *s[UX__COUNT] = {&c->p, &c->g, &c->s0, &c->s1, &c->first, &c->nesterov, &c->use_mom,
                                &c->lr, &c->wd, &c->mom, &c->damp1, &c->alpha, &c->alpha1, &c->eps, &c->b1,
                                &c->b11, &c->b2, &c->b21, &c->step_size, &c->bc2s, &c->clr, &c->decay, &c->init_acc};
  for (int i = 0; i < UX__COUNT; i++) slot[i] = s[i];
}

static LLVMTypeRef upd_ctx_type(Cg *cg) {
  LLVMTypeRef f[UX__COUNT];
  LLVMTypeRef i8 = LLVMInt8TypeInContext(cg->C);
  for (int i = 0; i < UX__COUNT; i++) f[i] = i < UX_NPTR ? cg->t_ptr : i < UX_NPTR + UX_NFLAG ? i8 : cg->t_f32;
  return LLVMStructTypeInContext(cg->C, f, UX__COUNT, 0);
}

static LLVMValueRef build_update_task(Cg *cg, int kind, int64_t param_floats) {
  LLVMTypeRef ct = upd_ctx_type(cg);
  LLVMValueRef fn = cg_new_function(cg, "bpcc_update_task", cg->t_task, true);
  cg->fn = fn;
  LLVMPositionBuilderAtEnd(cg->B, LLVMAppendBasicBlockInContext(cg->C, fn, "entry"));
  UpdCtx c;
  c.kind = kind;
  LLVMValueRef *slot[UX__COUNT];
  ctx_slots(&c, slot);
  LLVMValueRef ctx = LLVMGetParam(fn, 0);
  for (int i = 0; i < UX__COUNT; i++) {
    LLVMValueRef v = LLVMBuildLoad2(cg->B, LLVMStructGetTypeAtIndex(ct, (unsigned)i),
                                    LLVMBuildStructGEP2(cg->B, ct, ctx, (unsigned)i, ""), "");
    if (i >= UX_NPTR && i < UX_NPTR + UX_NFLAG) v = LLVMBuildTrunc(cg->B, v, cg->t_i1, "");
    *slot[i] = v;
  }
  c.gscale = LLVMConstReal(cg->t_f32, 1.0);
  LLVMValueRef start = LLVMBuildMul(cg->B, LLVMGetParam(fn, 1), cg_i64(cg, CG_UPDATE_CHUNK), "");
  LLVMValueRef end = cg_min_i64(cg, LLVMBuildMul(cg->B, LLVMGetParam(fn, 2), cg_i64(cg, CG_UPDATE_CHUNK), ""),
                                cg_i64(cg, param_floats));
  for (int i = 0; i < UX_NPTR; i++) *slot[i] = cg_gep(cg, cg->t_f32, *slot[i], start);
  LLVMBasicBlockRef join = cg_if_begin(cg, LLVMBuildICmp(cg->B, LLVMIntSLT, start, end, ""));
  cg_vloop(cg, LLVMBuildSub(cg->B, end, start, ""), upd_body, &c);
  cg_if_end(cg, join);
  LLVMBuildRetVoid(cg->B);
  return fn;
}

static void update_chunks(Cg *cg, UpdCtx *c, int64_t param_floats) {
  LLVMBuilderRef B = cg->B;
  CgAside aside = cg_aside_begin(cg);
  LLVMValueRef task = build_update_task(cg, c->kind, param_floats);
  cg_aside_end(cg, aside);

  LLVMTypeRef ct = upd_ctx_type(cg);
  LLVMValueRef ctx = cg_alloca(cg, ct, "updctx");
  LLVMValueRef *slot[UX__COUNT];
  ctx_slots(c, slot);
  for (int i = 0; i < UX__COUNT; i++) {
    LLVMValueRef v = *slot[i];
    if (i >= UX_NPTR && i < UX_NPTR + UX_NFLAG) v = LLVMBuildZExt(B, v, LLVMInt8TypeInContext(cg->C), "");
    LLVMBuildStore(B, v, LLVMBuildStructGEP2(B, ct, ctx, (unsigned)i, ""));
  }
  int64_t nch = (param_floats + CG_UPDATE_CHUNK - 1) / CG_UPDATE_CHUNK;
  LLVMValueRef nth = cg_frame_field(cg, CG_FR_NTHREADS);
  LLVMValueRef par = LLVMBuildAnd(B, LLVMBuildICmp(B, LLVMIntSGT, nth, cg_i32(cg, 1), ""),
                                  LLVMConstInt(cg->t_i1, nch >= 4, 0), "");
  LLVMBasicBlockRef bpar = LLVMAppendBasicBlockInContext(cg->C, cg->fn, "updpar");
  LLVMBasicBlockRef bser = LLVMAppendBasicBlockInContext(cg->C, cg->fn, "updser");
  LLVMBasicBlockRef bjoin = LLVMAppendBasicBlockInContext(cg->C, cg->fn, "upddone");
  LLVMBuildCondBr(B, par, bpar, bser);
  LLVMPositionBuilderAtEnd(B, bpar);
  LLVMValueRef pargs[5] = {cg_frame_field(cg, CG_FR_POOL), cg_i64(cg, nch), cg_i64(cg, 1), task, ctx};
  LLVMBuildCall2(B, cg->t_pfor, cg_frame_field(cg, CG_FR_PARALLEL_FOR), pargs, 5, "");
  LLVMBuildBr(B, bjoin);
  LLVMPositionBuilderAtEnd(B, bser);
  LLVMValueRef sargs[4] = {ctx, cg_i64(cg, 0), cg_i64(cg, nch), cg_i32(cg, 0)};
  LLVMBuildCall2(B, cg->t_task, task, sargs, 4, "");
  LLVMBuildBr(B, bjoin);
  LLVMPositionBuilderAtEnd(B, bjoin);
}

/* base^n for a double base and an i64 n >= 0: square and multiply over 63 bits. */
static LLVMValueRef powi(Cg *cg, LLVMValueRef base, LLVMValueRef n) {
  LLVMBuilderRef B = cg->B;
  LLVMValueRef r = cg_alloca(cg, cg->t_f64, "r"), b = cg_alloca(cg, cg->t_f64, "b");
  LLVMBuildStore(B, LLVMConstReal(cg->t_f64, 1.0), r);
  LLVMBuildStore(B, base, b);
  CgLoop l = cg_loop_begin(cg, cg_i64(cg, 0), cg_i64(cg, 63), cg_i64(cg, 1));
  LLVMValueRef bit = LLVMBuildAnd(B, LLVMBuildLShr(B, n, l.iv, ""), cg_i64(cg, 1), "");
  LLVMValueRef rv = LLVMBuildLoad2(B, cg->t_f64, r, ""), bv = LLVMBuildLoad2(B, cg->t_f64, b, "");
  LLVMBuildStore(B, LLVMBuildSelect(B, LLVMBuildICmp(B, LLVMIntNE, bit, cg_i64(cg, 0), ""), LLVMBuildFMul(B, rv, bv, ""), rv, ""), r);
  LLVMBuildStore(B, LLVMBuildFMul(B, bv, bv, ""), b);
  cg_loop_end(cg, &l);
  return LLVMBuildLoad2(B, cg->t_f64, r, "");
}

void cg_optimizer_update(Cg *cg, int kind, int64_t param_floats, int64_t update_floats, const CgParamRange *ranges,
                         int nranges) {
  LLVMBuilderRef B = cg->B;
  LLVMValueRef hyper = cg_frame_field(cg, CG_FR_HYPER);
  LLVMValueRef h[BPRT_H__COUNT];
  for (int i = 0; i < BPRT_H__COUNT; i++) {
    LLVMValueRef v = LLVMBuildLoad2(B, cg->t_f64, cg_gep(cg, cg->t_f64, hyper, cg_i64(cg, i)), "");
    LLVMSetAlignment(v, 8);
    h[i] = v;
  }
  LLVMValueRef params = cg_frame_field(cg, CG_FR_PARAMS), grads = cg_frame_field(cg, CG_FR_GRADS);
  LLVMValueRef state = cg_frame_field(cg, CG_FR_OPT_STATE);
  LLVMValueRef d1 = LLVMConstReal(cg->t_f64, 1.0), d0 = LLVMConstReal(cg->t_f64, 0.0);

  /* 1. clip by the global gradient norm: gscale = min(1, max_norm / (norm + 1e-6)) */
  LLVMBasicBlockRef join = cg_if_begin(cg, LLVMBuildFCmp(B, LLVMRealOGT, h[BPRT_H_CLIP], d0, ""));
  SqCtx sc = {grads, cg_alloca(cg, cg->t_vec, "ssv"), cg_alloca(cg, cg->t_f32, "sss")};
  LLVMValueRef total = cg_alloca(cg, cg->t_f64, "ss");
  LLVMBuildStore(B, d0, total);
  /* the parameters' (offset, numel) as a constant table, walked by one loop: the same
   * code for 2 parameters or 200 */
  LLVMValueRef *cells = bp_xmalloc((size_t)(2 * nranges + 1) * sizeof *cells);
  for (int r = 0; r < nranges; r++) {
    cells[2 * r] = cg_i64(cg, ranges[r].offset);
    cells[2 * r + 1] = cg_i64(cg, ranges[r].numel);
  }
  LLVMValueRef init = LLVMConstArray2(cg->t_i64, cells, (uint64_t)(2 * nranges));
  bp_free(cells);
  LLVMValueRef tbl = LLVMAddGlobal(cg->M, LLVMTypeOf(init), "bpcc_param_ranges");
  LLVMSetInitializer(tbl, init);
  LLVMSetGlobalConstant(tbl, 1);
  LLVMSetLinkage(tbl, LLVMPrivateLinkage);
  CgLoop lrg = cg_loop_begin(cg, cg_i64(cg, 0), cg_i64(cg, nranges), cg_i64(cg, 1));
  LLVMValueRef off = LLVMBuildLoad2(B, cg->t_i64, cg_gep(cg, cg->t_i64, tbl, LLVMBuildMul(B, lrg.iv, cg_i64(cg, 2), "")), "");
  LLVMValueRef num = LLVMBuildLoad2(B, cg->t_i64, cg_gep(cg, cg->t_i64, tbl, LLVMBuildAdd(B, LLVMBuildMul(B, lrg.iv, cg_i64(cg, 2), ""), cg_i64(cg, 1), "")), "");
  LLVMBuildStore(B, cg_fconst(cg, cg->t_vec, 0), sc.accv);
  LLVMBuildStore(B, LLVMConstReal(cg->t_f32, 0), sc.accs);
  sc.g = cg_gep(cg, cg->t_f32, grads, off);
  cg_vloop(cg, num, sq_body, &sc);
  LLVMValueRef s = LLVMBuildFAdd(B, cg_hsum(cg, LLVMBuildLoad2(B, cg->t_vec, sc.accv, "")),
                                 LLVMBuildLoad2(B, cg->t_f32, sc.accs, ""), "");
  LLVMBuildStore(B, LLVMBuildFAdd(B, LLVMBuildLoad2(B, cg->t_f64, total, ""), LLVMBuildFPExt(B, s, cg->t_f64, ""), ""), total);
  cg_loop_end_hint(cg, &lrg, CG_LOOP_NO_UNROLL);
  LLVMValueRef tot = LLVMBuildLoad2(B, cg->t_f64, total, "");
  LLVMValueRef norm = cg_intrinsic(cg, "llvm.sqrt", cg->t_f64, &tot, 1);
  LLVMValueRef coef = LLVMBuildFDiv(B, h[BPRT_H_CLIP], LLVMBuildFAdd(B, norm, LLVMConstReal(cg->t_f64, 1e-6), ""), "");
  LLVMValueRef clamped = LLVMBuildSelect(B, LLVMBuildFCmp(B, LLVMRealOLT, coef, d1, ""), coef, d1, "");
  /* the clipped gradients are written back, as clip_grad_norm_ does */
  LLVMValueRef gscale = LLVMBuildFPTrunc(B, clamped, cg->t_f32, "");
  CgLoop lw = cg_loop_begin(cg, cg_i64(cg, 0), cg_i64(cg, nranges), cg_i64(cg, 1));
  LLVMValueRef woff = LLVMBuildLoad2(B, cg->t_i64, cg_gep(cg, cg->t_i64, tbl, LLVMBuildMul(B, lw.iv, cg_i64(cg, 2), "")), "");
  LLVMValueRef wnum = LLVMBuildLoad2(B, cg->t_i64, cg_gep(cg, cg->t_i64, tbl, LLVMBuildAdd(B, LLVMBuildMul(B, lw.iv, cg_i64(cg, 2), ""), cg_i64(cg, 1), "")), "");
  CgLoop l = cg_loop_begin(cg, woff, LLVMBuildAdd(B, woff, wnum, ""), cg_i64(cg, 1));
  LLVMValueRef g = cg_load(cg, cg->t_f32, grads, l.iv);
  cg_store(cg, LLVMBuildFMul(B, g, gscale, ""), grads, l.iv);
  cg_loop_end(cg, &l);
  cg_loop_end_hint(cg, &lw, CG_LOOP_NO_UNROLL);
  cg_if_end(cg, join);

  /* 2. per-step scalars */
  UpdCtx c;
  c.kind = kind;
  c.p = params, c.g = grads;
  c.s0 = state;
  c.s1 = cg_gep(cg, cg->t_f32, state, cg_i64(cg, param_floats));
  LLVMValueRef t = h[BPRT_H_STEP];
  c.first = LLVMBuildFCmp(B, LLVMRealOLE, t, d1, "first");
  c.nesterov = LLVMBuildFCmp(B, LLVMRealONE, h[BPRT_H_NESTEROV], d0, "");
  c.use_mom = LLVMBuildFCmp(B, kind == BPRT_OPT_RMSPROP ? LLVMRealOGT : LLVMRealONE, h[BPRT_H_MOMENTUM], d0, "");
#define F(x) LLVMBuildFPTrunc(B, x, cg->t_f32, "")
  LLVMValueRef lr = h[BPRT_H_LR], wd = h[BPRT_H_WEIGHT_DECAY];
  c.lr = F(lr);
  c.wd = F(wd);
  c.mom = F(h[BPRT_H_MOMENTUM]);
  c.damp1 = F(LLVMBuildFSub(B, d1, h[BPRT_H_DAMPENING], ""));
  c.alpha = F(h[BPRT_H_ALPHA]);
  c.alpha1 = F(LLVMBuildFSub(B, d1, h[BPRT_H_ALPHA], ""));
  c.eps = F(h[BPRT_H_EPS]);
  c.b1 = F(h[BPRT_H_BETA1]);
  c.b11 = F(LLVMBuildFSub(B, d1, h[BPRT_H_BETA1], ""));
  c.b2 = F(h[BPRT_H_BETA2]);
  c.b21 = F(LLVMBuildFSub(B, d1, h[BPRT_H_BETA2], ""));
  c.init_acc = F(h[BPRT_H_INITIAL_ACC]);
  c.decay = F(LLVMBuildFSub(B, d1, LLVMBuildFMul(B, lr, wd, ""), ""));
  /* adagrad: clr = lr / (1 + (t - 1) lr_decay) */
  c.clr = F(LLVMBuildFDiv(B, lr, LLVMBuildFAdd(B, d1, LLVMBuildFMul(B, LLVMBuildFSub(B, t, d1, ""), h[BPRT_H_LR_DECAY], ""), ""), ""));
  /* adam: step_size = lr / (1 - b1^t), bc2s = sqrt(1 - b2^t) */
  LLVMValueRef ti = LLVMBuildFPToSI(B, t, cg->t_i64, "");
  ti = LLVMBuildSelect(B, LLVMBuildICmp(B, LLVMIntSLT, ti, cg_i64(cg, 1), ""), cg_i64(cg, 1), ti, "");
  if (kind == BPRT_OPT_ADAM || kind == BPRT_OPT_ADAMW) {
    LLVMValueRef bc1 = LLVMBuildFSub(B, d1, powi(cg, h[BPRT_H_BETA1], ti), "");
    LLVMValueRef bc2 = LLVMBuildFSub(B, d1, powi(cg, h[BPRT_H_BETA2], ti), "");
    c.step_size = F(LLVMBuildFDiv(B, lr, bc1, ""));
    c.bc2s = F(cg_intrinsic(cg, "llvm.sqrt", cg->t_f64, &bc2, 1));
  } else {
    c.step_size = c.lr;
    c.bc2s = LLVMConstReal(cg->t_f32, 1.0);
  }
#undef F
  c.gscale = LLVMConstReal(cg->t_f32, 1.0);
  /* 3. the update, one pass over the trained parameters, in chunks over the pool */
  update_chunks(cg, &c, update_floats);
}
