/* codegen/cg.h — what the files of codegen/ share (not for other directories).
 *
 * Cg is the state of one module being built: the LLVM context, module and builder, the
 * vector shape of the target (W lanes of f32 per vector, the GEMM register tile MR x NR)
 * and the function being emitted. A value of the IR is reached through CgVal: a buffer
 * pointer (f32 or int32 labels) or a constant that is splat on load. Kernels emit loops
 * with cg_loop_* and cg_vloop, which runs a body once with vector type <W x float>
 * over the multiple-of-W prefix and once with float over the tail. */
#ifndef BPCC_CODEGEN_CG_H
#define BPCC_CODEGEN_CG_H

#include <llvm-c/Core.h>
#include <llvm-c/DebugInfo.h>
#include <llvm-c/LLJIT.h>
#include <llvm-c/Orc.h>
#include <llvm-c/TargetMachine.h>

#include "codegen/codegen.h"
#include "passes/passes.h"

/* The GEMM's default cache blocks (elements): blocking.c's choice for targets it has
 * no rule for, and a Cg's where its builder sets none (cg_init_types). */
#define CG_GEMM_KC 256
#define CG_GEMM_MC 144
#define CG_GEMM_NC 2048
/* AMX blocks (gemm_lowp.c): K up to KC16 deep (C is written once per 1024 k: tile
 * loads and stores of C rows 4 KiB apart are slow), NC16 columns */
#define CG_GEMM_KC16 1024
#define CG_GEMM_NC16 512
/* Below this many multiply-adds a matrix product runs on one thread, unless it has a
 * quarter of them and its operands and result hold CG_GEMM_PARALLEL_FLOATS or more
 * elements (a pass over 512 KiB that two cores share: M2's output layer). */
#define CG_GEMM_PARALLEL_MACS (1 << 22)
#define CG_GEMM_PARALLEL_FLOATS (1 << 17)

typedef struct Cg {
  LLVMContextRef C;
  LLVMModuleRef M;
  LLVMBuilderRef B;
  int W;                 /* elements per vector (16 f32 or 8 f64 on AVX-512); 1 = scalar */
  int esize;             /* bytes per element: 4 (f32 model) or 8 (f64 model) */
  int MR, NR;            /* GEMM register tile: MR rows x NR columns (NR = 2 W) */
  int KC, MC, NC;        /* GEMM cache blocks (elements, blocking.c): A blocks MC x KC in L2,
                          * B micro-panels KC x NR in L1, B blocks KC x NC in L3 */
  int gemm_chunks;       /* most GEMM chunks (threads) at once; pack buffers per chunk */
  int64_t pack_a_floats, pack_b_floats;   /* one chunk's pack buffers (cg_gemm_pack_sizes) */
  int64_t conv_col_floats;                /* and its im2col buffer (convolutions; 0 if none) */
  bool prefer512;
  unsigned cpu;          /* CG_CPU_* features of the target (cg_target_features) */
  int gemm_bf16;         /* the core of products with bf16 operands: CG_BF16_* (gemm_lowp.c) */
  /* t_f32 is the element type of the model's tensors: float, or double in an f64 model
   * (cg_set_f64), and t_vec is <W x t_f32>; t_f64 is always double (accumulators). */
  LLVMTypeRef t_void, t_f32, t_f64, t_i1, t_i32, t_i64, t_ptr, t_vec, t_frame, t_task, t_pfor;
  LLVMValueRef fn;       /* the function being emitted */
  LLVMValueRef frame;    /* its bprt_frame * argument (entry points) */
  LLVMValueRef gemm_task;   /* the gemm task (all variants), built on first use */
  LLVMValueRef gemm_pack;   /* workspace bytes of the GEMM pack buffers (entry points) */
  /* debug info (NULL when off) */
  LLVMDIBuilderRef dib;
  LLVMMetadataRef di_cu, di_file, di_sp;
} Cg;

/* A tensor value as kernels see it. */
typedef struct {
  LLVMValueRef ptr;      /* float* (int32* for labels); NULL for constants */
  bool is_const;
  double cval;
  const TensorType *t;   /* its IR type (dims may hold DIM_BATCH) */
} CgVal;

/* A built model: the module in its thread-safe context, the target machine, the JIT
 * once cg_model_jit ran, and the descriptor (arena-allocated tables). */
struct CgModel {
  Arena *arena;
  LLVMOrcThreadSafeContextRef tsc;
  LLVMContextRef C;
  LLVMModuleRef M;
  LLVMTargetMachineRef tm;
  LLVMOrcLLJITRef jit;
  bprt_model_desc desc;
  bool has_entry[4];     /* forward, grad, step, update */
  const char *march;
  int opt_level, lanes;
  int esize;             /* 4: f32 model; 8: f64 model (double buffers in the frame) */
  bool profile;          /* kernel cycle counters: <model>__prof_<entry> globals */
  int nprof[3];          /* kernels counted per entry (forward, grad, step's update) */
  const char **prof_names[3];
};

/* Fields of bprt_frame, in order (the struct type t_frame mirrors it). */
enum {
  CG_FR_BATCH, CG_FR_PARAMS, CG_FR_GRADS, CG_FR_OPT_STATE, CG_FR_WORKSPACE, CG_FR_INPUTS,
  CG_FR_OUTPUTS, CG_FR_LOSS, CG_FR_HYPER, CG_FR_SEED, CG_FR_STEP, CG_FR_POOL,
  CG_FR_PARALLEL_FOR, CG_FR_NTHREADS, CG_FR_STATUS, CG_FR_BUFFERS, CG_FR_ACCUMULATE, CG_FR_GRAD_WEIGHT,
  CG_FR_GRAD_READY, CG_FR_GRAD_READY_CTX, CG_FR_ACCUM_SCRATCH, CG_FR__COUNT
};

/* ---- emit.c: small builders ---- */
void cg_init_types(Cg *cg);
/* Make double the element type (t_f32, t_vec, W halved, the GEMM tile for 8-byte
 * lanes); after cg_init_types, before any code is emitted. */
void cg_set_f64(Cg *cg);
LLVMValueRef cg_i64(Cg *cg, int64_t v);
LLVMValueRef cg_i32(Cg *cg, int32_t v);
LLVMValueRef cg_fconst(Cg *cg, LLVMTypeRef T, double v);     /* float or splat vector */
LLVMValueRef cg_splat(Cg *cg, LLVMValueRef scalar, LLVMTypeRef T);
/* v[r][l] <- v[l][r]: W vectors of W lanes transposed in registers (kernels.c) */
void cg_reg_transpose(Cg *cg, LLVMValueRef *v, int W);
bool cg_is_vec(LLVMTypeRef T);
LLVMValueRef cg_frame_field(Cg *cg, int field);              /* load frame->field */
/* task over chunks [0, n) through parallel_for where par, else task(ctx, 0, serial_end, 0) */
void cg_run_task(Cg *cg, LLVMValueRef par, LLVMValueRef n, LLVMValueRef grain, LLVMValueRef task, LLVMValueRef ctx,
                 LLVMValueRef serial_end);
LLVMValueRef cg_frame_field_ptr(Cg *cg, int field);
LLVMValueRef cg_gep(Cg *cg, LLVMTypeRef elem, LLVMValueRef ptr, LLVMValueRef idx);
LLVMValueRef cg_load(Cg *cg, LLVMTypeRef T, LLVMValueRef fptr, LLVMValueRef idx); /* f32 elements */
void cg_store(Cg *cg, LLVMValueRef v, LLVMValueRef fptr, LLVMValueRef idx);
LLVMValueRef cg_alloca(Cg *cg, LLVMTypeRef T, const char *name);  /* in the entry block */
LLVMValueRef cg_intrinsic(Cg *cg, const char *name, LLVMTypeRef overload, LLVMValueRef *args, int n);
LLVMValueRef cg_min_i64(Cg *cg, LLVMValueRef a, LLVMValueRef b);
LLVMValueRef cg_max_f(Cg *cg, LLVMValueRef a, LLVMValueRef b);
LLVMValueRef cg_hsum(Cg *cg, LLVMValueRef v);                 /* scalar: itself */
LLVMValueRef cg_hmax(Cg *cg, LLVMValueRef v);
LLVMValueRef cg_dim(Cg *cg, const TensorType *t, int i);      /* i64, B resolved */
LLVMValueRef cg_numel(Cg *cg, const TensorType *t);           /* label: rows */
LLVMValueRef cg_dims_prod(Cg *cg, const TensorType *t, int from, int to); /* dims [from, to) */
LLVMValueRef cg_batch(Cg *cg);
LLVMValueRef cg_val_load(Cg *cg, const CgVal *v, LLVMTypeRef T, LLVMValueRef idx);
LLVMValueRef cg_new_function(Cg *cg, const char *name, LLVMTypeRef fty, bool internal);
/* Building another function (a task, a core) in the middle of one: cg_aside_begin saves
 * where the builder is — its block, cg->fn, cg->frame and the debug location, which it
 * clears (the new function has no DSL line) — and cg_aside_end goes back there. */
typedef struct {
  LLVMBasicBlockRef block;
  LLVMValueRef fn, frame;
  LLVMMetadataRef loc;
} CgAside;
CgAside cg_aside_begin(Cg *cg);
void cg_aside_end(Cg *cg, CgAside a);

typedef struct {
  LLVMBasicBlockRef head, body, exit;
  LLVMValueRef iv, step;
} CgLoop;
/* for (iv = start; iv < end; iv += step): the builder is left in the body. */
CgLoop cg_loop_begin(Cg *cg, LLVMValueRef start, LLVMValueRef end, LLVMValueRef step);
void cg_loop_end(Cg *cg, CgLoop *l);   /* closes the body, builder at the exit */
/* The same with hints for LLVM's loop passes (llvm.loop metadata). */
enum { CG_LOOP_NO_VECTORIZE = 1, CG_LOOP_NO_UNROLL = 2 };
void cg_loop_end_hint(Cg *cg, CgLoop *l, int hints);
/* if (cond) { then }: cg_if_begin leaves the builder in `then`; cg_if_end joins. */
LLVMBasicBlockRef cg_if_begin(Cg *cg, LLVMValueRef cond);
void cg_if_end(Cg *cg, LLVMBasicBlockRef join);

/* body(cg, ctx, j, T) for j in [0, n): T = <W x float> at j = 0, W, ... while j + W <= n,
 * then T = float for the tail. */
typedef void (*CgBodyFn)(Cg *cg, void *ctx, LLVMValueRef j, LLVMTypeRef T);
void cg_vloop(Cg *cg, LLVMValueRef n, CgBodyFn body, void *ctx);

/* ---- vmath.c: polynomial math on float or <W x float>; on double or <W x double> the
 * double-precision algorithms (an f64 model) ---- */
LLVMValueRef cg_exp(Cg *cg, LLVMValueRef x);
LLVMValueRef cg_log(Cg *cg, LLVMValueRef x);
LLVMValueRef cg_tanh(Cg *cg, LLVMValueRef x);
LLVMValueRef cg_sigmoid(Cg *cg, LLVMValueRef x);
LLVMValueRef cg_pow_const(Cg *cg, LLVMValueRef x, double p);
/* erf (a fit of bpcc's own, vmath.c), GELU in the erf form and its tanh approximation,
 * and their derivatives times dy (gelu_grad(x, dy), gelu_tanh_grad(x, dy)) */
LLVMValueRef cg_erf(Cg *cg, LLVMValueRef x);
LLVMValueRef cg_gelu(Cg *cg, LLVMValueRef x);
LLVMValueRef cg_gelu_grad(Cg *cg, LLVMValueRef x, LLVMValueRef dy);
LLVMValueRef cg_gelu_tanh(Cg *cg, LLVMValueRef x);
LLVMValueRef cg_gelu_tanh_grad(Cg *cg, LLVMValueRef x, LLVMValueRef dy);
/* Philox4x32-10 block: out[4] (i32) from counter (i64 block, i64 stream), key seed (i64). */
void cg_philox(Cg *cg, LLVMValueRef block, LLVMValueRef stream, LLVMValueRef seed, LLVMValueRef out[4]);

/* ---- kernels.c ---- */
/* One kernel per group. vals[v] is the buffer of instruction v; out is where a sink
 * writes (outputs[k], *loss, grads + offset); training selects dropout's Philox mask
 * (else the mask is 1). Returns false after a diagnostic for an unsupported case. */
bool cg_kernel_ew(Cg *cg, Func *f, const int32_t *members, int n, const CgVal *vals);
bool cg_kernel(Cg *cg, Func *f, int32_t v, const CgVal *vals, bool training);
bool cg_kernel_view(Cg *cg, Func *f, const int32_t *members, int n, const CgVal *vals);
bool cg_kernel_norm16(Cg *cg, Func *f, const int32_t *members, int n, const CgVal *vals);
/* false after a located internal error when a member other than a cast or a product
 * reads or makes a 16-bit value (bf16, f16), or an f64 model has one. */
bool cg_check_dtypes(Cg *cg, Func *f, const int32_t *members, int n);
void cg_kernel_copy(Cg *cg, const CgVal *src, LLVMValueRef dst, const TensorType *t);
bool cg_op_is_ew(const Inst *in);
/* y = op(a, b) of an elementwise instruction on float or <W x float> (b NULL for unary
 * ops): the interpreter's formulas. */
LLVMValueRef cg_ew_apply(Cg *cg, const Inst *in, LLVMValueRef a, LLVMValueRef b);
/* A gemm with its epilogue (passes/kernel_plan.c KERNEL_GEMM), and softmax-CE forward and
 * backward in one pass over the logits (KERNEL_XENT). */
bool cg_kernel_gemm_fused(Cg *cg, Func *f, const int32_t *members, int n, const CgVal *vals);
bool cg_kernel_xent_fused(Cg *cg, Func *f, const int32_t *members, int n, const CgVal *vals);

/* ---- gemm.c ---- */
/* The epilogue of a product, applied to each C tile after its last K block (in this
 * order): + bias[col] (BIAS) or + bias[o] (BIAS_ROW); a convolution's inference-mode
 * batchnorm per channel o: (x - mean[o]) rstd[o] (BN_ROW), * gamma[o] (SCALE_ROW),
 * + beta[o] (SHIFT_ROW); x = mask(aux, x) for RELU_GRAD / TANH_GRAD / SIGMOID_GRAD
 * (aux: [M,N] like C); an activation ACT_*: with STORE_PRE, C keeps the
 * pre-activation and out2 ([M,N]) gets act(x), else C gets act(x). */
enum {
  CG_EP_BIAS = 1, CG_EP_RELU = 2, CG_EP_TANH = 4, CG_EP_SIGMOID = 8, CG_EP_STORE_PRE = 16,
  CG_EP_RELU_GRAD = 32, CG_EP_TANH_GRAD = 64, CG_EP_SIGMOID_GRAD = 128,
  CG_EP_BIAS_ROW = 256,   /* + bias[channel of the row] (a convolution's bias, codegen/conv.c) */
  CG_EP_BN_ROW = 512, CG_EP_SCALE_ROW = 1024, CG_EP_SHIFT_ROW = 2048,   /* batchnorm, per channel */
  CG_EP_GELU = 4096, CG_EP_GELU_TANH = 8192, CG_EP_GELU_GRAD = 16384, CG_EP_GELU_TANH_GRAD = 32768,
  /* out2 is a 16-bit buffer (uint16_t: bf16 or IEEE half, rounded to nearest even as
   * LLVM's fptrunc does): it gets the epilogue's final value, act(x) with STORE_PRE and
   * otherwise the same value as C. C stays an f32 [M,N] buffer whatever the flags: the
   * sums of the K blocks accumulate there (a product whose only result is 16-bit gives
   * C a scratch slot that dies after the kernel). */
  CG_EP_STORE_BF16 = 65536, CG_EP_STORE_F16 = 131072,
  /* aux (a mask's saved value) is a 16-bit buffer, widened on load: the mask's
   * operand is a cast back to f32 of a value kept in 16 bits (kernel_plan.c) */
  CG_EP_AUX_BF16 = 262144, CG_EP_AUX_F16 = 524288,
  /* with STORE_PRE, an activation and a 16-bit store: out3 ([M,N], out2's format) gets
   * the pre-activation C keeps, rounded (mixed precision keeps it for the activation's
   * gradient) */
  CG_EP_PRE16 = 1048576,
  CG_EP__LIMIT = 2097152
};
#define CG_EP_STORE16 (CG_EP_STORE_BF16 | CG_EP_STORE_F16)
#define CG_EP_AUX16 (CG_EP_AUX_BF16 | CG_EP_AUX_F16)
#define CG_EP_ACTS (CG_EP_RELU | CG_EP_TANH | CG_EP_SIGMOID | CG_EP_GELU | CG_EP_GELU_TANH)
#define CG_EP_MASKS (CG_EP_RELU_GRAD | CG_EP_TANH_GRAD | CG_EP_SIGMOID_GRAD | CG_EP_GELU_GRAD | CG_EP_GELU_TANH_GRAD)
/* The activation op of an epilogue's flags (OP_INPUT: none), its derivative mask op,
 * and the flag of an OPF_ACT / OPF_ACT_GRAD op (0: none). */
Op cg_ep_act(int flags);
Op cg_ep_mask(int flags);
int cg_ep_flag_of(Op op);
/* The per-channel operands of a convolution's epilogue, in the order it applies them. */
enum { CG_EPV_BIAS, CG_EPV_MEAN, CG_EPV_RSTD, CG_EPV_GAMMA, CG_EPV_BETA, CG_EPV__COUNT };
static inline bool cg_ep_uses(int flags, int k) {
  static const int need[CG_EPV__COUNT] = {CG_EP_BIAS_ROW, CG_EP_BN_ROW, CG_EP_BN_ROW, CG_EP_SCALE_ROW, CG_EP_SHIFT_ROW};
  return (flags & need[k]) != 0;
}
typedef struct {
  int flags;                          /* CG_EP_*; 0: a plain product */
  LLVMValueRef bias, aux, out2, out3; /* pointers, NULL where flags do not need them */
  LLVMValueRef mean, rstd, gamma, beta;   /* BN_ROW, SCALE_ROW, SHIFT_ROW: [O] pointers */
} CgEpilogue;
/* x (a float or a vector) after the per-channel steps of flags (BIAS_ROW, BN_ROW,
 * SCALE_ROW, SHIFT_ROW), v[k] the channel's CG_EPV_* operand as x's type: the formulas
 * of the unfused kernels (cg_ew_apply's add and mul, bn_norm's (x - m) r), so fusing
 * changes no bit. */
LLVMValueRef cg_ep_channel(Cg *cg, int flags, LLVMValueRef x, const LLVMValueRef v[CG_EPV__COUNT]);
/* The element type of a product's operand: the model's float (f32, or f64 in an f64
 * model), or a 16-bit storage type (a uint16_t buffer of bf16 or IEEE half values).
 * With 16-bit operands (f32 models only) C is f32 and the product accumulates in f32:
 * C = sum_k float(a_ik) float(b_kj). The two operands may differ. */
typedef enum { CG_ELEM_FLOAT, CG_ELEM_BF16, CG_ELEM_F16 } CgElem;
typedef struct {
  CgElem a, b;
} CgGemmTypes;
/* The element type of an operand of IR type dt (DT_BF16, DT_F16; else the float). */
static inline CgElem cg_elem_of(int dt) { return dt == DT_BF16 ? CG_ELEM_BF16 : dt == DT_F16 ? CG_ELEM_F16 : CG_ELEM_FLOAT; }
/* C[M,N] = op(A) op(B) for MATMUL / MATMUL_NT / MATMUL_TN, then the epilogue ep (NULL:
 * none); ty: the operands' element types (NULL: both the model's float); pack =
 * workspace bytes holding the per-chunk pack buffers (cg_gemm_pack_floats each). */
void cg_gemm(Cg *cg, Op op, const CgGemmTypes *ty, LLVMValueRef A, LLVMValueRef Bm, LLVMValueRef Cm, LLVMValueRef M,
             LLVMValueRef N, LLVMValueRef K, LLVMValueRef pack, const CgEpilogue *ep);
/* A batched product (matmul* with leading dims that are not folded into M or K): the
 * result's batch dims [d0, d1] (d0 = 1 for one batch dim) and a's and b's element
 * strides along them (0 where the operand broadcasts). */
typedef struct {
  LLVMValueRef d0, d1, sa0, sa1, sb0, sb1;
} CgBatch;
/* C[bi] = op(A[bi]) op(B[bi]) for every batch index, each M x N x K, threaded over the
 * batches; the epilogue as cg_gemm's (its offsets into the whole C). */
void cg_gemm_batched(Cg *cg, Op op, const CgGemmTypes *ty, LLVMValueRef A, LLVMValueRef Bm, LLVMValueRef Cm,
                     LLVMValueRef M, LLVMValueRef N, LLVMValueRef K, const CgBatch *bt, LLVMValueRef pack,
                     const CgEpilogue *ep);
int64_t cg_gemm_pack_floats(Cg *cg);   /* per chunk: the A and the B block, the im2col buffer */
/* The A and B pack buffers (floats) of products of at most M x N x K per block (M, N,
 * K already bounded by MC, NC, KC); K16 > 0: some have 16-bit operands, K16 deep at
 * most (bounded by KC16; gemm_lowp.c's panels are padded further). */
void cg_gemm_pack_for(int64_t M, int64_t N, int64_t K, int64_t K16, int64_t *a_floats, int64_t *b_floats);
/* The pack buffers the products and convolutions of these plans need, per chunk, in
 * elements, and the im2col buffer of the convolutions. */
void cg_gemm_pack_sizes(const KernelPlan *const *plans, int nplans, const CgBlocking *bk, int64_t *a_floats,
                        int64_t *b_floats, int64_t *col_floats);
/* The shared core: void core(M, N, K, A, ars, acs, B, brs, bcs, C, ldc, Ap, Bp, efn,
 * ectx, acc) (gemm.c, build_core), built on first use. */
LLVMValueRef cg_gemm_core(Cg *cg);
/* The epilogue function and its context (an alloca) for ep on C; rows: the channel
 * period of CG_EP_BIAS_ROW (NULL otherwise). Null pointers without an epilogue. */
void cg_gemm_epilogue(Cg *cg, const CgEpilogue *ep, LLVMValueRef Cm, LLVMValueRef rows, LLVMValueRef *efn,
                      LLVMValueRef *ectx);
/* ---- gemm_lowp.c: 16-bit operands ---- */
/* x (i16 or <n x i16>: bf16 or half bits) widened exactly to float (<n x float>): bf16
 * a shift; half through F16C's vcvtph2ps where the target has it, else integer code
 * (no libcall: the generated code calls no external symbol). */
LLVMValueRef cg_elem_to_f32(Cg *cg, LLVMValueRef x, CgElem e);
/* x (float or <n x float>) rounded to bf16 or half bits (i16 / <n x i16>), to nearest
 * even: NaN stays a (quiet) NaN, half overflows to inf and underflows through the
 * subnormals to zero. */
LLVMValueRef cg_elem_from_f32(Cg *cg, LLVMValueRef x, CgElem e);
/* T (float or <W x float>) loaded from element idx of a 16-bit buffer, widened. */
LLVMValueRef cg_load_elem(Cg *cg, LLVMTypeRef T, CgElem e, LLVMValueRef ptr, LLVMValueRef idx);
/* x (float or <W x float>) rounded and stored at element idx of a 16-bit buffer. */
void cg_store_elem(Cg *cg, LLVMValueRef x, CgElem e, LLVMValueRef ptr, LLVMValueRef idx);
/* The core with cg_gemm_core's signature for operands of types ta, tb (not both the
 * model's float), built on first use: the bf16 core of cg->gemm_bf16, or conversion. */
LLVMValueRef cg_gemm_lowp_core(Cg *cg, CgElem ta, CgElem tb);
/* gemm.c's f32 core with packing that widens 16-bit operands (the conversion path). */
LLVMValueRef cg_gemm_convert_core(Cg *cg, CgElem ta, CgElem tb);
/* ---- pool.c ---- */
/* max_pool2d, avg_pool2d and their backward ops, the (n, c) planes split over threads. */
void cg_kernel_pool(Cg *cg, const Inst *in, const CgVal *a, const CgVal *b, const CgVal *out);
/* max_pool2d_bwd with the relu mask after it (kernel_plan.c KERNEL_POOL_MASK):
 * members[0] the pooling's backward (internal), members[1] the relu_grad */
bool cg_kernel_pool_mask(Cg *cg, Func *f, const int32_t *members, const CgVal *vals);
/* ---- conv.c ---- */
/* A convolution whose im2col matrix is its image (1x1, stride 1, no padding): no buffer. */
bool cg_conv_direct_b(Func *f, const Inst *in);
/* The floats of a chunk's buffer that conv.c's own paths need beyond im2col (the
 * transposed weights and padded image of the forward with the channels in the lanes,
 * backward-data's images-in-lanes copy of dy); conv_shapes reserves the larger. */
int64_t cg_conv_own_floats(Func *f, const Inst *in);
/* conv2d (with ep: bias per channel, activation), conv2d_bwd_data, conv2d_bwd_weight on
 * the GEMM core through im2col, or for few channels as register-blocked rows; split
 * over images (or over the weight gradient's columns or taps). */
void cg_kernel_conv(Cg *cg, const Inst *in, const CgVal *a, const CgVal *b, const CgVal *out, const CgEpilogue *ep);

/* ---- attention.c ---- */
/* attention or attention_bwd (members[0]) with the extras the plan computes
 * (members[1..n), kernel_plan.c KERNEL_ATTN): FlashAttention's blocked online softmax,
 * forward over (slice, query block) items, backward per slice; each chunk's scratch is
 * its part of the GEMM pack area. */
bool cg_kernel_attention(Cg *cg, Func *f, const int32_t *members, int n, const CgVal *vals);
/* The scratch elements one chunk needs for attention instruction in (the pack area is
 * made at least this large, cg_gemm_pack_sizes). */
int64_t cg_attention_scratch_floats(Func *f, const Inst *in);

/* ---- optim.c ---- */
typedef struct {
  int64_t offset, numel;               /* floats, into params / grads */
} CgParamRange;
/* Emit the update of the params block: clip by global norm (over ranges), weight decay,
 * the rule of `kind`, over elements [0, update_floats) (the trained parameters come
 * first). param_floats is the block size (the stride of the state slots). */
void cg_optimizer_update(Cg *cg, int kind, int64_t param_floats, int64_t update_floats, const CgParamRange *ranges,
                         int nranges);

/* ---- target.c ---- */
/* Initialize LLVM's native target once; make a target machine for march. */
LLVMTargetMachineRef cg_target_machine(const char *march, int opt_level, int *lanes, char *err, size_t errlen);
/* The features of tm that codegen picks kernels by (CG_CPU_*): from the feature
 * string of -march=native, from the level of x86-64-v3 / -v4. */
enum { CG_CPU_F16C = 1, CG_CPU_AVX512BF16 = 2, CG_CPU_AMX_BF16 = 4, CG_CPU_ZNVER = 8 /* AMD Zen (znver*) */ };
unsigned cg_target_features(LLVMTargetMachineRef tm);
/* The bf16 core (CG_BF16_*) for these features: $BPCC_GEMM_BF16's, else the fastest
 * the target has (AMX only where the kernel grants the tile state); -1 after writing
 * why into err (an unknown name, a forced core the target lacks or AMX refused). */
int cg_gemm_bf16_select(unsigned cpu, char *err, size_t errlen);
int cg_run_passes(LLVMModuleRef M, LLVMTargetMachineRef tm, int opt_level, char *err, size_t errlen);

#endif
