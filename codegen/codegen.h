/* codegen/codegen.h — LLVM code generation: the table of contents of codegen/.
 *
 *   module.c   the module: the descriptor's tables (parameters at the memory plan's
 *              offsets, inputs, outputs) and the entry points <model>__forward /
 *              __grad / __update / __step, each the kernels of its plan in order
 *              (the plans — what runs in which loop nest, where each value lives —
 *              are passes/kernel_plan.c's and passes/memplan.c's)
 *   kernels.c  loop nests per kernel kind: elementwise groups with broadcasting,
 *              reductions, softmax rows, softmax_xent, onehot, transpose, sum_to,
 *              dropout masks (Philox4x32-10), sinks; the fused gemm and
 *              softmax-CE groups
 *   blocking.c the GEMM's register tile and cache blocks for the target (CPUID)
 *   gemm.c     the packed, register-blocked matrix product (BLIS structure), one
 *              core for the three variants, epilogues on each final C tile, split
 *              across threads through frame->parallel_for
 *   gemm_lowp.c  products with bf16 / f16 operands (f32 accumulation): AMX tiles,
 *              vdpbf16ps, or widening on packing; the 16-bit conversions
 *   attention.c  fused attention and its backward (FlashAttention's blocked online
 *              softmax): no [T,S] matrix, per-chunk scratch in the GEMM pack area
 *   optim.c    the optimizer update: one streaming kernel over the params block
 *   vmath.c    exp / log / tanh / sigmoid as vector polynomials (no libm calls)
 *   emit.c     loop, load/store and intrinsic helpers shared by the kernel files
 *   target.c   target machines (-march), the O-level pipeline, ORC LLJIT, --emit
 *   aot.c      the shared library writer built on this API: descriptor, C ABI, link
 *
 * The generated code calls no external symbol: runtime services come through the
 * function pointers of bprt_frame (runtime/model.h), so one object runs in the JIT and
 * links into a shared library with no NEEDED entry but libc.
 *
 * codegen is one stage of the pipeline (driver/pipeline.c, docs/pipeline.md), which
 * hands it the kernel and memory plans; it is not called around the pipeline:
 *   CgModelInput in = {kernel plan of fwd, of grad, memory plan, &optimizer, &options};
 *   CgModel *m = cg_model_build(&in);     // NULL: diagnostics printed
 *   cg_model_jit(m);                      // desc->forward / grad / update / step
 *   bprt_model_desc *d = cg_model_desc(m);
 */
#ifndef BPCC_CODEGEN_H
#define BPCC_CODEGEN_H

#include <stdbool.h>

#include <llvm-c/Core.h>
#include <llvm-c/TargetMachine.h>

#include "ir/ir.h"
#include "passes/memplan.h"
#include "runtime/model.h"

typedef struct {
  const char *march;   /* "native" (NULL too), "x86-64", "x86-64-v2", "x86-64-v3", "x86-64-v4" */
  int opt_level;       /* 0..3: LLVMRunPasses("default<On>") and the codegen level */
  int nthreads_hint;   /* most GEMM chunks run at once (<= 0: the CPUs of this machine) */
  bool debug_info;     /* line tables mapping code to the DSL file and line */
  bool profile;        /* count the cycles of every kernel (cg_model_profile) */
} CgOptions;
/* The cores of products whose operands are both bf16 (codegen/gemm_lowp.c,
 * docs/codegen.md): AMX tiles (tdpbf16ps), AVX512-BF16 vdpbf16ps on the
 * register-blocked kernel, or conversion to f32 on packing and the f32 micro-kernel
 * (any host). f16 operands (and mixed ones) always take the conversion. The core is
 * the best the target has, or the one $BPCC_GEMM_BF16 (amx | dpbf16 | convert) names
 * when the model is built (a core the target lacks is an error). */
enum { CG_BF16_CONVERT = 1, CG_BF16_DPBF16 = 2, CG_BF16_AMX = 3 };
/* Can this host run core (CG_BF16_*) for -march=march? false with the reason in why. */
bool cg_gemm_bf16_available(int core, const char *march, char *why, size_t whylen);

/* The optimizer of a model (bprt_optimizer_config, runtime/model.h): its kind and the
 * default hyperparameters written into the descriptor; the update kernel reads them
 * from frame->hyper at run time. */

typedef struct CgModel CgModel;

/* The element type of the generated code is the IR's: a model whose float tensors are
 * all f32 reads and writes float buffers; one whose float tensors are all f64 reads and writes double buffers through the same bprt_frame — its
 * float * fields (params, grads, inputs, outputs, loss) then point at doubles, and
 * the descriptor's *_floats sizes and offsets count doubles. f32 and f64 tensors in one
 * model are an error. Labels are int32 in both. */

/* What cg_model_build lowers: the plans of the pipeline's kernel and memory stages
 * (passes/kernel_plan.c, passes/memplan.c), which codegen follows and never revises. */
typedef struct {
  const KernelPlan *fwd;             /* the forward entry (PLAN_INFERENCE) */
  const KernelPlan *grad;            /* the gradient entry (PLAN_TRAINING), or NULL */
  const ModelMemory *mem;            /* the parameter block and every workspace slot */
  const bprt_optimizer_config *opt;  /* with grad: the update and step entries; else NULL */
  const CgOptions *options;          /* NULL: native, -O3 */
} CgModelInput;

/* Build one LLVM module holding <model>__forward, <model>__grad (with a grad plan),
 * <model>__update (the update of opt alone) and <model>__step (grad + update; these two
 * with grad and opt), optimized at the O level, and fill the descriptor's layout. The
 * model name is the forward function's. NULL after diagnostics (diag_error). */
CgModel *cg_model_build(const CgModelInput *in);
/* Bytes the code generator keeps at the front of a model's workspace: the packing
 * buffers of its matrix products, one set per chunk, as large as its products need
 * (0 without a product). The memory plan's `extra`. */
int64_t cg_workspace_extra(const CgOptions *o, const KernelPlan *fwd, const KernelPlan *grad, int elem_bytes);
int cg_gemm_chunks(const CgOptions *o);   /* products split in at most this many chunks */
/* The f32 GEMM's blocking for a target (blocking.c): the register tile and the cache
 * blocks, from the host's CPUID with -march=native, the defaults otherwise. */
typedef struct {
  char cpu[64];          /* "Intel family 0x6 model 0xa7", "AMD family 0x19 model 0x11 (Zen 4)", "-march=x86-64-v3" */
  int l1d_kib, l2_kib;   /* per core, as CPUID reports them (0: not read) */
  int fma512;            /* 512-bit FMAs: 2 full width, 1 double-pumped, 0 none or not known */
  int mr, nr;            /* register tile: MR rows x NR columns */
  int kc, mc, nc;        /* cache blocks, in elements */
  char why[112];         /* the rule that chose them */
} CgBlocking;
void cg_blocking(const CgOptions *o, CgBlocking *b);
void cg_blocking_for(const char *march, int lanes, CgBlocking *b);
/* The rule for a CPU as CPUID describes it (vendor "AuthenticAMD", "GenuineIntel", ...;
 * display family and model; per-core caches, 0 if not reported), on b already holding
 * the defaults for the lanes (cg_blocking_for). */
void cg_blocking_rule(const char *vendor, int family, int model, int l1d_kib, int l2_kib, int lanes, CgBlocking *b);
/* "CPU, L1d .. KiB, L2 .. KiB, 512-bit FMA ...; tile 12x32, KC 256, MC 144, NC 2048 (why)" */
int cg_blocking_describe(const CgBlocking *b, char *buf, size_t n);
/* f32 lanes of the code for -march (16, 8, 4 or 1; 0 for an unknown name) */
int cg_march_lanes(const char *march);
/* Is the matmul* instruction one product (rank 2, b of rank 2 for matmul and matmul_nt,
 * matmul_tn fold=1: leading dims are rows or summed), and its M, N, K (per batch index
 * when it is not; DIM_BATCH where they depend on B). */
bool cg_product_single(Func *f, const Inst *in);
void cg_product_mnk(Func *f, const Inst *in, int64_t *M, int64_t *N, int64_t *K);
LLVMModuleRef cg_model_module(CgModel *m);          /* the optimized module (owned by m) */
LLVMTargetMachineRef cg_model_target(CgModel *m);   /* for emitting objects (owned by m) */
bprt_model_desc *cg_model_desc(CgModel *m);          /* entry pointers NULL until cg_model_jit */
int cg_model_lanes(CgModel *m);                      /* f32 vector lanes: 16, 8, 4 or 1 */
int cg_model_elem_bytes(CgModel *m);                 /* 4: f32 model, 8: f64 model */
/* With CgOptions.profile, after cg_model_jit: the kernels of entry `which` (0 forward,
 * 1 grad, 2 the optimizer update of step), each named "op+op+... file:line", and the
 * cycles (llvm.readcyclecounter, the caller's wall clock for a parallel kernel) each has
 * spent in all calls so far. Returns the count, or -1 without profiling. */
int cg_model_profile(CgModel *m, int which, const char *const **names, uint64_t **cycles);
/* The runtime (runtime/model.c), `bpcc train` / eval / bench and model libraries are
 * f32: false after a located error at the first f64 input or parameter of f (for the
 * driver to call before cg_model_build). */
bool cg_check_runtime_f32(Func *f);
/* ORC LLJIT the module and fill desc->forward / grad / step. 0, or -1 with a diagnostic. */
int cg_model_jit(CgModel *m);

/* For bpcc --version: the LLVM bpcc runs on, its default target, and the host CPU that
 * -march=native compiles for, by LLVM's name, with the vector features that set the
 * code's width (lanes: f32 lanes per vector). */
typedef struct {
  char llvm[32];       /* "19.1.7" (LLVMGetVersion) */
  char triple[96];     /* "x86_64-pc-linux-gnu" */
  char cpu[64];        /* "sapphirerapids" (LLVMGetHostCPUName) */
  char features[256];  /* "sse4.2 avx avx2 fma avx512f ...": those of them the host has */
  int lanes;
} CgHostInfo;
void cg_host_info(CgHostInfo *h);

enum { CG_EMIT_LLVM, CG_EMIT_ASM, CG_EMIT_OBJ };
/* Write the optimized IR, assembly or an object file to path ("-": stdout). 0 / -1. */
int cg_emit(CgModel *m, int kind, const char *path_or_dash);
/* The same into an open stream (the driver's temporary file, or stdout). 0 / -1. */
int cg_emit_to(CgModel *m, int kind, FILE *out);
void cg_model_free(CgModel *m);

/* The symbol of an entry point: "<model>__forward" etc. into buf (returns buf). */
char *cg_entry_name(const char *model, const char *which, char *buf, size_t n);

/* ---- aot.c: shared libraries, `bpcc FILE.bp -o NAME.so` (docs/abi.md) ---- */
typedef struct {
  const char *source;  /* the .bp file, named in the header's comment (NULL: none) */
  const char *cc;      /* the compiler driver that links; NULL: $BPCC_CC, else "cc" */
} CgAotOptions;
/* Write so_path — the model's code, its descriptor, the C ABI <model>_create ... and
 * the runtime (linked in statically, its symbols hidden) — and the C header beside it
 * (cg_aot_header_path). Both atomically (temporary file, rename); on failure nothing
 * is left behind. 0, or -1 after a diagnostic. */
int cg_aot_write(CgModel *m, const char *so_path, const CgAotOptions *o);
/* "dir/NAME.h" for "dir/NAME.so", else so_path + ".h" (bp_xmalloc'd). */
char *cg_aot_header_path(const char *so_path);
/* The text of the C header of a model's library (bp_xmalloc'd). */
char *cg_aot_header(const bprt_model_desc *d, const char *source);

#endif
