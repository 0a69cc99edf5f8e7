/* codegen/emit.c — small builders every kernel uses: constants and splats, frame
 * fields, f32 loads and stores by element index, loops, ifs, intrinsics, and the
 * vector loop (cg_vloop) that runs a kernel body on <W x float> and then on a scalar
 * tail, so each kernel is written once for both element types.
 *
 * Loads and stores use alignment 4 (element alignment): buffers are 64-byte aligned
 * but kernels index them at any element. Loop accumulators are allocas in the entry
 * block, which SROA turns into registers at -O1 and above. */
#include <string.h>

#include "codegen/cg.h"

void cg_init_types(Cg *cg) {
  LLVMContextRef C = cg->C;
  /* the GEMM's cache blocks where the builder did not choose them (blocking.c) */
  if (cg->KC <= 0) cg->KC = CG_GEMM_KC;
  if (cg->MC <= 0) cg->MC = CG_GEMM_MC;
  if (cg->NC <= 0) cg->NC = CG_GEMM_NC;
  cg->t_void = LLVMVoidTypeInContext(C);
  cg->t_f32 = LLVMFloatTypeInContext(C);
  cg->t_f64 = LLVMDoubleTypeInContext(C);
  cg->t_i1 = LLVMInt1TypeInContext(C);
  cg->t_i32 = LLVMInt32TypeInContext(C);
  cg->t_i64 = LLVMInt64TypeInContext(C);
  cg->t_ptr = LLVMPointerTypeInContext(C, 0);
  cg->t_vec = cg->W > 1 ? LLVMVectorType(cg->t_f32, (unsigned)cg->W) : cg->t_f32;
  /* bprt_frame, field for field (runtime/model.h) */
  LLVMTypeRef fields[CG_FR__COUNT] = {
      [CG_FR_BATCH] = cg->t_i64,    [CG_FR_PARAMS] = cg->t_ptr,   [CG_FR_GRADS] = cg->t_ptr,
      [CG_FR_OPT_STATE] = cg->t_ptr, [CG_FR_WORKSPACE] = cg->t_ptr, [CG_FR_INPUTS] = cg->t_ptr,
      [CG_FR_OUTPUTS] = cg->t_ptr,  [CG_FR_LOSS] = cg->t_ptr,     [CG_FR_HYPER] = cg->t_ptr,
      [CG_FR_SEED] = cg->t_i64,     [CG_FR_STEP] = cg->t_i64,     [CG_FR_POOL] = cg->t_ptr,
      [CG_FR_PARALLEL_FOR] = cg->t_ptr, [CG_FR_NTHREADS] = cg->t_i32, [CG_FR_STATUS] = cg->t_i32,
      [CG_FR_BUFFERS] = cg->t_ptr,  [CG_FR_ACCUMULATE] = cg->t_i32, [CG_FR_GRAD_WEIGHT] = cg->t_f64,
      [CG_FR_GRAD_READY] = cg->t_ptr, [CG_FR_GRAD_READY_CTX] = cg->t_ptr,
      [CG_FR_ACCUM_SCRATCH] = cg->t_ptr,
  };
  cg->t_frame = LLVMStructCreateNamed(C, "bprt_frame");
  LLVMStructSetBody(cg->t_frame, fields, CG_FR__COUNT, 0);
  /* void task(void *ctx, int64_t i0, int64_t i1, int32_t tid) */
  LLVMTypeRef targs[4] = {cg->t_ptr, cg->t_i64, cg->t_i64, cg->t_i32};
  cg->t_task = LLVMFunctionType(cg->t_void, targs, 4, 0);
  /* void parallel_for(void *pool, int64_t n, int64_t grain, task fn, void *ctx) */
  LLVMTypeRef pargs[5] = {cg->t_ptr, cg->t_i64, cg->t_i64, cg->t_ptr, cg->t_ptr};
  cg->t_pfor = LLVMFunctionType(cg->t_void, pargs, 5, 0);
}

void cg_set_f64(Cg *cg) {
  int lanes = cg->W;
  cg->esize = 8;
  cg->W = lanes > 1 ? lanes / 2 : 1;
  cg->t_f32 = cg->t_f64;
  cg->t_vec = cg->W > 1 ? LLVMVectorType(cg->t_f64, (unsigned)cg->W) : cg->t_f64;
  /* the same register tile in registers: MR rows x 2 vectors (12 x 16 f64 = 24 zmm) */
  cg->NR = cg->W == 1 ? 4 : 2 * cg->W;
}

LLVMValueRef cg_i64(Cg *cg, int64_t v) { return LLVMConstInt(cg->t_i64, (unsigned long long)v, 1); }
LLVMValueRef cg_i32(Cg *cg, int32_t v) { return LLVMConstInt(cg->t_i32, (unsigned long long)(int64_t)v, 1); }

bool cg_is_vec(LLVMTypeRef T) { return LLVMGetTypeKind(T) == LLVMVectorTypeKind; }

LLVMValueRef cg_fconst(Cg *cg, LLVMTypeRef T, double v) {
  (void)cg;
  if (!cg_is_vec(T)) return LLVMConstReal(T, v);
  LLVMTypeRef et = LLVMGetElementType(T);
  unsigned n = LLVMGetVectorSize(T);
  LLVMValueRef e[64];
  for (unsigned i = 0; i < n; i++) e[i] = LLVMConstReal(et, v);
  return LLVMConstVector(e, n);
}

LLVMValueRef cg_splat(Cg *cg, LLVMValueRef s, LLVMTypeRef T) {
  if (!cg_is_vec(T)) return s;
  unsigned n = LLVMGetVectorSize(T);
  LLVMValueRef v = LLVMBuildInsertElement(cg->B, LLVMGetUndef(T), s, cg_i32(cg, 0), "");
  LLVMValueRef mask = LLVMConstNull(LLVMVectorType(cg->t_i32, n));
  return LLVMBuildShuffleVector(cg->B, v, LLVMGetUndef(T), mask, "splat");
}

LLVMValueRef cg_frame_field_ptr(Cg *cg, int field) {
  return LLVMBuildStructGEP2(cg->B, cg->t_frame, cg->frame, (unsigned)field, "");
}

LLVMValueRef cg_frame_field(Cg *cg, int field) {
  LLVMTypeRef ft = LLVMStructGetTypeAtIndex(cg->t_frame, (unsigned)field);
  return LLVMBuildLoad2(cg->B, ft, cg_frame_field_ptr(cg, field), "");
}

/* A task over chunks [0, n): through frame->parallel_for (grain chunks at least per
 * call) where par is true, else one call of task(ctx, 0, serial_end, 0) on this thread. */
void cg_run_task(Cg *cg, LLVMValueRef par, LLVMValueRef n, LLVMValueRef grain, LLVMValueRef task, LLVMValueRef ctx,
                 LLVMValueRef serial_end) {
  LLVMBuilderRef B = cg->B;
  LLVMBasicBlockRef bpar = LLVMAppendBasicBlockInContext(cg->C, cg->fn, "par");
  LLVMBasicBlockRef bser = LLVMAppendBasicBlockInContext(cg->C, cg->fn, "ser");
  LLVMBasicBlockRef bjoin = LLVMAppendBasicBlockInContext(cg->C, cg->fn, "pardone");
  LLVMBuildCondBr(B, par, bpar, bser);
  LLVMPositionBuilderAtEnd(B, bpar);
  LLVMValueRef pargs[5] = {cg_frame_field(cg, CG_FR_POOL), n, grain, task, ctx};
  LLVMBuildCall2(B, cg->t_pfor, cg_frame_field(cg, CG_FR_PARALLEL_FOR), pargs, 5, "");
  LLVMBuildBr(B, bjoin);
  LLVMPositionBuilderAtEnd(B, bser);
  LLVMValueRef sargs[4] = {ctx, cg_i64(cg, 0), serial_end, cg_i32(cg, 0)};
  LLVMBuildCall2(B, cg->t_task, task, sargs, 4, "");
  LLVMBuildBr(B, bjoin);
  LLVMPositionBuilderAtEnd(B, bjoin);
}

LLVMValueRef cg_gep(Cg *cg, LLVMTypeRef elem, LLVMValueRef ptr, LLVMValueRef idx) {
  return LLVMBuildGEP2(cg->B, elem, ptr, &idx, 1, "");
}

LLVMValueRef cg_load(Cg *cg, LLVMTypeRef T, LLVMValueRef fptr, LLVMValueRef idx) {
  LLVMValueRef p = cg_gep(cg, cg->t_f32, fptr, idx);
  LLVMValueRef v = LLVMBuildLoad2(cg->B, T, p, "");
  LLVMSetAlignment(v, 4);
  return v;
}

void cg_store(Cg *cg, LLVMValueRef v, LLVMValueRef fptr, LLVMValueRef idx) {
  LLVMValueRef p = cg_gep(cg, cg->t_f32, fptr, idx);
  LLVMValueRef s = LLVMBuildStore(cg->B, v, p);
  LLVMSetAlignment(s, 4);
}

LLVMValueRef cg_alloca(Cg *cg, LLVMTypeRef T, const char *name) {
  LLVMBasicBlockRef entry = LLVMGetEntryBasicBlock(cg->fn);
  LLVMBuilderRef b = LLVMCreateBuilderInContext(cg->C);
  LLVMValueRef first = LLVMGetFirstInstruction(entry);
  if (first) LLVMPositionBuilderBefore(b, first);
  else LLVMPositionBuilderAtEnd(b, entry);
  LLVMValueRef a = LLVMBuildAlloca(b, T, name);
  LLVMSetAlignment(a, 64);
  LLVMDisposeBuilder(b);
  return a;
}

LLVMValueRef cg_intrinsic(Cg *cg, const char *name, LLVMTypeRef overload, LLVMValueRef *args, int n) {
  unsigned id = LLVMLookupIntrinsicID(name, strlen(name));
  if (!id) ir_die("unknown LLVM intrinsic %s", name);
  LLVMTypeRef ov[1] = {overload};
  int nov = overload ? 1 : 0;
  LLVMValueRef fn = LLVMGetIntrinsicDeclaration(cg->M, id, ov, (size_t)nov);
  LLVMTypeRef fty = LLVMIntrinsicGetType(cg->C, id, ov, (size_t)nov);
  return LLVMBuildCall2(cg->B, fty, fn, args, (unsigned)n, "");
}

LLVMValueRef cg_min_i64(Cg *cg, LLVMValueRef a, LLVMValueRef b) {
  return LLVMBuildSelect(cg->B, LLVMBuildICmp(cg->B, LLVMIntSLT, a, b, ""), a, b, "min");
}

/* max(a, b) as the interpreter computes it (fmax; no NaN in well-formed data). */
LLVMValueRef cg_max_f(Cg *cg, LLVMValueRef a, LLVMValueRef b) {
  LLVMValueRef args[2] = {a, b};
  return cg_intrinsic(cg, "llvm.maxnum", LLVMTypeOf(a), args, 2);
}

LLVMValueRef cg_hsum(Cg *cg, LLVMValueRef v) {
  LLVMTypeRef T = LLVMTypeOf(v);
  if (!cg_is_vec(T)) return v;
  LLVMValueRef args[2] = {LLVMConstReal(LLVMGetElementType(T), -0.0), v};
  LLVMValueRef r = cg_intrinsic(cg, "llvm.vector.reduce.fadd", T, args, 2);
  LLVMSetFastMathFlags(r, LLVMFastMathAllowReassoc);
  return r;
}

LLVMValueRef cg_hmax(Cg *cg, LLVMValueRef v) {
  LLVMTypeRef T = LLVMTypeOf(v);
  if (!cg_is_vec(T)) return v;
  return cg_intrinsic(cg, "llvm.vector.reduce.fmax", T, &v, 1);
}

LLVMValueRef cg_batch(Cg *cg) { return cg_frame_field(cg, CG_FR_BATCH); }

LLVMValueRef cg_dim(Cg *cg, const TensorType *t, int i) {
  return t->dims[i] == DIM_BATCH ? cg_batch(cg) : cg_i64(cg, t->dims[i]);
}

LLVMValueRef cg_dims_prod(Cg *cg, const TensorType *t, int from, int to) {
  int64_t c = 1;
  bool batch = false;
  for (int i = from; i < to; i++) {
    if (t->dims[i] == DIM_BATCH) batch = true;
    else c *= t->dims[i];
  }
  LLVMValueRef r = cg_i64(cg, c);
  if (batch) r = LLVMBuildMul(cg->B, r, cg_batch(cg), "");
  return r;
}

LLVMValueRef cg_numel(Cg *cg, const TensorType *t) {
  int r = t->dtype == DT_LABEL && t->rank > 0 ? t->rank - 1 : t->rank;
  return cg_dims_prod(cg, t, 0, r);
}

LLVMValueRef cg_val_load(Cg *cg, const CgVal *v, LLVMTypeRef T, LLVMValueRef idx) {
  if (v->is_const) return cg_fconst(cg, T, v->cval);
  return cg_load(cg, T, v->ptr, idx);
}

LLVMValueRef cg_new_function(Cg *cg, const char *name, LLVMTypeRef fty, bool internal) {
  LLVMValueRef fn = LLVMAddFunction(cg->M, name, fty);
  if (internal) LLVMSetLinkage(fn, LLVMInternalLinkage);
  LLVMAttributeRef nounwind = LLVMCreateEnumAttribute(cg->C, LLVMGetEnumAttributeKindForName("nounwind", 8), 0);
  LLVMAddAttributeAtIndex(fn, LLVMAttributeFunctionIndex, nounwind);
  if (cg->prefer512) {
    LLVMAttributeRef a = LLVMCreateStringAttribute(cg->C, "prefer-vector-width", 19, "512", 3);
    LLVMAddAttributeAtIndex(fn, LLVMAttributeFunctionIndex, a);
  }
  return fn;
}

/* ------------------------------------------------------------------ control flow */

CgLoop cg_loop_begin(Cg *cg, LLVMValueRef start, LLVMValueRef end, LLVMValueRef step) {
  CgLoop l;
  LLVMBasicBlockRef pre = LLVMGetInsertBlock(cg->B);
  l.head = LLVMAppendBasicBlockInContext(cg->C, cg->fn, "loop");
  l.body = LLVMAppendBasicBlockInContext(cg->C, cg->fn, "body");
  l.exit = LLVMAppendBasicBlockInContext(cg->C, cg->fn, "done");
  l.step = step;
  LLVMBuildBr(cg->B, l.head);
  LLVMPositionBuilderAtEnd(cg->B, l.head);
  l.iv = LLVMBuildPhi(cg->B, cg->t_i64, "i");
  LLVMAddIncoming(l.iv, &start, &pre, 1);
  LLVMBuildCondBr(cg->B, LLVMBuildICmp(cg->B, LLVMIntSLT, l.iv, end, ""), l.body, l.exit);
  LLVMPositionBuilderAtEnd(cg->B, l.body);
  return l;
}

/* The back edge; hints (CG_LOOP_*) become the loop's llvm.loop metadata. */
static void loop_end(Cg *cg, CgLoop *l, int hints) {
  LLVMValueRef next = LLVMBuildNSWAdd(cg->B, l->iv, l->step, "");
  LLVMBasicBlockRef from = LLVMGetInsertBlock(cg->B);
  LLVMAddIncoming(l->iv, &next, &from, 1);
  LLVMValueRef br = LLVMBuildBr(cg->B, l->head);
  if (hints) {
    /* !llvm.loop !{self, !{"llvm.loop.vectorize.enable", i1 false}, !{"llvm.loop.unroll.disable"}} */
    LLVMMetadataRef ops[3];
    unsigned n = 0;
    LLVMMetadataRef self = LLVMTemporaryMDNode(cg->C, NULL, 0);
    ops[n++] = self;
    if (hints & CG_LOOP_NO_VECTORIZE) {
      LLVMMetadataRef kv[2] = {LLVMMDStringInContext2(cg->C, "llvm.loop.vectorize.enable", 26),
                               LLVMValueAsMetadata(LLVMConstInt(cg->t_i1, 0, 0))};
      ops[n++] = LLVMMDNodeInContext2(cg->C, kv, 2);
    }
    if (hints & CG_LOOP_NO_UNROLL) {
      LLVMMetadataRef k = LLVMMDStringInContext2(cg->C, "llvm.loop.unroll.disable", 24);
      ops[n++] = LLVMMDNodeInContext2(cg->C, &k, 1);
    }
    LLVMMetadataRef md = LLVMMDNodeInContext2(cg->C, ops, n);
    LLVMMetadataReplaceAllUsesWith(self, md);
    LLVMSetMetadata(br, LLVMGetMDKindIDInContext(cg->C, "llvm.loop", 9), LLVMMetadataAsValue(cg->C, md));
  }
  LLVMPositionBuilderAtEnd(cg->B, l->exit);
}

void cg_loop_end(Cg *cg, CgLoop *l) { loop_end(cg, l, 0); }
void cg_loop_end_hint(Cg *cg, CgLoop *l, int hints) { loop_end(cg, l, hints); }

LLVMBasicBlockRef cg_if_begin(Cg *cg, LLVMValueRef cond) {
  LLVMBasicBlockRef then = LLVMAppendBasicBlockInContext(cg->C, cg->fn, "then");
  LLVMBasicBlockRef join = LLVMAppendBasicBlockInContext(cg->C, cg->fn, "endif");
  LLVMBuildCondBr(cg->B, cond, then, join);
  LLVMPositionBuilderAtEnd(cg->B, then);
  return join;
}

void cg_if_end(Cg *cg, LLVMBasicBlockRef join) {
  LLVMBuildBr(cg->B, join);
  LLVMPositionBuilderAtEnd(cg->B, join);
}

void cg_vloop(Cg *cg, LLVMValueRef n, CgBodyFn body, void *ctx) {
  LLVMValueRef nvec = cg_i64(cg, 0);
  if (cg->W > 1) {
    nvec = LLVMBuildAnd(cg->B, n, cg_i64(cg, ~(int64_t)(cg->W - 1)), "nvec");
    CgLoop l = cg_loop_begin(cg, cg_i64(cg, 0), nvec, cg_i64(cg, cg->W));
    body(cg, ctx, l.iv, cg->t_vec);
    cg_loop_end_hint(cg, &l, CG_LOOP_NO_VECTORIZE);   /* already vector code */
  }
  /* the tail (< W elements): kept scalar and rolled, or LLVM would vectorize and unroll
   * it again — code that never runs much, and most of the compile time of a kernel */
  CgLoop t = cg_loop_begin(cg, nvec, n, cg_i64(cg, 1));
  body(cg, ctx, t.iv, cg->t_f32);
  cg_loop_end_hint(cg, &t, cg->W > 1 ? CG_LOOP_NO_VECTORIZE | CG_LOOP_NO_UNROLL : 0);
}

CgAside cg_aside_begin(Cg *cg) {
  CgAside a = {LLVMGetInsertBlock(cg->B), cg->fn, cg->frame, LLVMGetCurrentDebugLocation2(cg->B)};
  LLVMSetCurrentDebugLocation2(cg->B, NULL);
  return a;
}

void cg_aside_end(Cg *cg, CgAside a) {
  cg->fn = a.fn;
  cg->frame = a.frame;
  LLVMPositionBuilderAtEnd(cg->B, a.block);
  LLVMSetCurrentDebugLocation2(cg->B, a.loc);
}
