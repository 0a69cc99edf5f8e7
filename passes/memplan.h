/* passes/memplan.h — memory planning and activation recomputation.
 *
 *   memplan.c     lifetimes, kinds and sizes of every value; offsets into one workspace;
 *                 the memory of a compiled model (parameter block, workspaces)
 *   recompute.c   which forward activations are kept for backward and which recomputed
 *
 * Sizes are linear in the batch: a tensor of type f32[B,512] takes 0 + 2048 * B bytes,
 * so one plan serves every batch size (the runtime contract in runtime/model.h:
 * workspace = ws_fixed + ws_per_batch * batch). docs/memory.md describes the algorithms.
 */
#ifndef BPCC_PASSES_MEMPLAN_H
#define BPCC_PASSES_MEMPLAN_H

#include "passes/passes.h"

/* ------------------------------------------------------------------ memplan.c */

/* Where a value lives. Only MEM_KEPT, MEM_RECOMPUTED and MEM_TEMP are in the workspace. */
typedef enum {
  MEM_NONE,        /* a sink: no value */
  MEM_INPUT,       /* a function input: the caller's buffer */
  MEM_PARAM,       /* the parameter block */
  MEM_CONST,       /* const and size: immediates in the kernels that read them */
  MEM_OUTPUT,      /* operand of an output sink: written to the caller's output buffer */
  MEM_GRADIENT,    /* operand of a grad sink: written to the gradient block */
  MEM_KEPT,        /* forward activation kept for backward */
  MEM_RECOMPUTED,  /* forward value recomputed in backward (recompute.c) */
  MEM_TEMP,        /* any other value: a temporary */
  MEM_BUFFER,      /* the buffer block: non-trainable state (running statistics) */
  MEM__COUNT
} MemKind;

extern const char *const memplan_kind_names[MEM__COUNT]; /* "kept", "recomputed", ... */

/* bytes = fixed + per_batch * B */
typedef struct {
  int64_t fixed, per_batch;
} MemSize;

static inline int64_t mem_at(MemSize s, int64_t batch) { return s.fixed + s.per_batch * batch; }

typedef struct {
  MemKind kind;
  int32_t def, last;   /* lifetime in instruction indices, inclusive; sinks extend to the end */
  MemSize size;        /* exact bytes of the type (labels: 4 bytes per row) */
  MemSize slot;        /* size rounded up to 64 bytes per component; zero outside the workspace */
  MemSize offset;      /* into the workspace (64-byte aligned for every batch) */
  bool in_workspace;
} MemValue;

typedef struct {
  Func *f;
  MemValue *vals;      /* f->ninsts entries, indexed by value id */
  int32_t nvals;
  int32_t bwd_start;   /* index of the first backward instruction, or ninsts */
  int64_t plan_batch;  /* the batch best-fit decisions were made at */
  bool linear;         /* false if some size is not linear in B: valid at plan_batch only */
  MemSize workspace;   /* max over workspace values of offset + slot, per component */
  int32_t *step;       /* memplan_build_ex: the step of each instruction, or NULL */
  int32_t *last_step;  /* ... and the latest step that reads each value, or NULL */
} MemPlan;

/* Plan f's workspace. batch is used to break best-fit ties between gaps (the plan is
 * valid for every batch >= 1 when linear). Never fails; the caller frees. */
MemPlan *memplan_build(Func *f, int64_t batch);
void memplan_free(MemPlan *p);

/* The same for a code generator with its own rules. in_workspace (NULL: the rule above)
 * says which values get a slot — e.g. also gradients and outputs that a kernel computes
 * into the workspace before a sink copies them out, or constants it materializes.
 * step (NULL: each instruction its own step) maps each instruction to a step number,
 * e.g. the position of its kernel in a kernel plan (passes/kernel_plan.c), which may run
 * kernels in another order than their instructions: lifetimes are then intervals of
 * steps, from step[def] to the latest step of a reader, so no two values read or
 * written in one kernel share bytes. def and last stay instruction indices. */
MemPlan *memplan_build_ex(Func *f, int64_t batch, const bool *in_workspace, const int32_t *step);

/* Workspace bytes the plan needs at this batch (>= the lower bound below). */
int64_t memplan_workspace_bytes(const MemPlan *p, int64_t batch);
/* Lower bound: the largest sum of live workspace slots at any instruction. */
int64_t memplan_live_peak(const MemPlan *p, int64_t batch);

/* Totals in bytes at a batch. opt_state_per_param: floats of optimizer state per
 * parameter float (bprt_optimizers[kind].slots: sgd 1, adam 2). */
typedef struct {
  int64_t params, grads, opt_state;
  int64_t buffers;                         /* the buffer block (running statistics) */
  int64_t kept, recomputed, temporaries;  /* sums of the values' own bytes */
  int64_t workspace;                       /* planned workspace (the peak) */
  int64_t total;                           /* params + grads + opt_state + buffers + workspace */
} MemTotals;

MemTotals memplan_totals(const MemPlan *p, int64_t batch, int opt_state_per_param);

/* The --mem-report table: every tensor (value, DSL name, location, shape, bytes,
 * lifetime, workspace offset + base, kind) at a batch. */
void memplan_print_table(FILE *out, const MemPlan *p, int64_t batch, int64_t base);


/* Exact bytes of a value of type t (linear in B; nonlinear types are evaluated at
 * batch and *linear is cleared). */
MemSize memplan_type_size(const TensorType *t, int64_t batch, bool *linear);

/* Floating-point operations of one instruction at a batch (matmul 2mnk, elementwise
 * and reductions one per element, softmax-like rows five per element). */
double memplan_inst_flops(Func *f, int32_t v, int64_t batch);

/* ------------------------------------------------------- the model's memory (memplan.c) */

/* Each parameter starts at a multiple of this many elements (64 bytes in f32). */
#define MEMPLAN_PARAM_ALIGN 16

/* The workspace plan of one entry as its kernel plan computes it: every value a kernel
 * writes to a buffer (activations, temporaries, outputs and gradients before their
 * sinks copy them, materialized constants) gets a slot; internal values and direct
 * gradients none; lifetimes are intervals of kernels, so no two values one kernel reads
 * or writes share bytes. */
MemPlan *memplan_of_kernels(const KernelPlan *kp);

/* The memory of a compiled model (the memory plan stage of the pipeline): the layout of
 * the parameter block, each entry's workspace plan, and the workspace the runtime
 * allocates: [codegen's own buffers (GEMM packing), `extra` bytes][accumulation scratch,
 * accum_bytes][values], the values
 * region the componentwise maximum over the entries (they run one at a time). */
typedef struct {
  Func *pf;                   /* whose parameters make the block: grad if any, else fwd */
  int32_t nparams;
  int32_t *param_inst;        /* the PARAM instruction of each parameter in pf, in order */
  int64_t *param_offset;      /* in elements, MEMPLAN_PARAM_ALIGN-aligned */
  bool *param_trained;        /* the optimizer updates it (not a `grad ... [unreached]`) */
  int64_t param_floats;       /* elements of the block (also of the gradient block) */
  int64_t trained_floats;     /* the trained parameters come first: the update runs over
                                 [0, trained_floats) and never touches the others */
  int64_t opt_state_floats;   /* optimizer state: slots x param_floats */
  int32_t nbuffers;           /* buffers (non-trainable state) of pf, in order: their own */
  int32_t *buffer_inst;       /* block, laid out as the parameters' (MEMPLAN_PARAM_ALIGN), */
  int64_t *buffer_offset;     /* with no gradient and no optimizer state */
  int64_t buffer_floats;
  int32_t elem_bytes;         /* 4: an f32 model; 8: an f64 model (codegen tests) */
  MemPlan *fwd, *grad;        /* workspace plans (grad NULL without a loss) */
  int64_t extra;              /* bytes in front of the values (0 without a product) */
  int64_t accum_bytes;        /* after extra: the gradient accumulation scratch, where the
                                 kernel of in-place gradients writes them when
                                 frame->accumulate is set (the largest total of one
                                 kernel's in-place gradients, each 64-byte aligned) */
  MemSize workspace;          /* extra + accum_bytes + max(fwd, grad) */
} ModelMemory;

/* opt_slots: floats of optimizer state per parameter float (bprt_optimizers[kind].slots,
 * 0 without an optimizer); extra: what the code generator keeps in the workspace
 * (cg_workspace_extra). Never fails; free with memplan_model_free. */
ModelMemory *memplan_model(const KernelPlan *fwd, const KernelPlan *grad, int opt_slots, int64_t extra);
/* The scratch bytes of value i of a training plan computed in place into its gradient
 * slot (kp->direct_grad[i] >= 0), 64-byte aligned; 0 for any other value. */
int64_t memplan_accum_bytes_of(const KernelPlan *kp, int32_t i, int32_t elem_bytes);
void memplan_model_free(ModelMemory *m);
/* Bytes of an element of f's float tensors: 4 (f32), 8 (f64). */
int32_t memplan_elem_bytes(Func *f);
/* No two workspace values whose lifetimes intersect share a byte at any batch, every
 * slot lies inside the workspace and is 64-byte aligned. False after printing. */
bool memplan_verify(const MemPlan *p, const char *what);

/* ---------------------------------------------------------------- recompute.c */

typedef enum { RECOMPUTE_NONE, RECOMPUTE_SQRT, RECOMPUTE_AUTO, RECOMPUTE__COUNT } RecomputeMode;
extern const char *const recompute_mode_names[RECOMPUTE__COUNT];   /* "none", "sqrt", "auto" */

/* One link of the abstract chain: the activation's bytes and the FLOPs to recompute it
 * from the one before. */
typedef struct {
  int64_t size;
  double cost;
} RecomputeLink;

/* The chain memory model (docs/memory.md): with keep[i] the kept links, the peak is
 * max(all kept, max over runs [a,b] of recomputed links of (kept before a + run)). */
int64_t recompute_chain_memory(const RecomputeLink *links, int n, const bool *keep);
double recompute_chain_cost(const RecomputeLink *links, int n, const bool *keep);
/* The keep[] with the least recompute cost whose chain memory is <= limit (dynamic
 * programming over segment boundaries). Returns the cost, or -1 if none fits. */
double recompute_chain_optimal(const RecomputeLink *links, int n, int64_t limit, bool *keep);

/* Rebuild f with every forward value v where recompute[v] is set recomputed in
 * backward: its instruction (and what it needs that is not kept) is duplicated just
 * before its first backward use, flagged IF_BACKWARD | IF_RECOMPUTED, same loc, rule
 * "recompute", from = the original. The result has cse off. */
Func *recompute_apply(Func *f, const bool *recompute, const char *name);

typedef struct {
  RecomputeMode mode;
  int64_t budget;         /* total bytes (params + grads + opt state + workspace); 0 = none */
  int64_t batch;
  int opt_state_per_param;
  /* The bytes a candidate gradient function costs as the later stages will lay it out
   * (the pipeline: its kernel plan, the memory plan, what the runtime allocates), so
   * that a budget bounds what the compiled step really allocates. NULL: parameters,
   * gradients, optimizer state and memplan_build's workspace of the candidate. */
  int64_t (*measure)(void *ctx, Func *candidate);
  void *measure_ctx;
} RecomputeOptions;

typedef struct {
  int32_t ncandidates;    /* forward values that backward reads (the chain's links) */
  int32_t nkept;          /* of which kept */
  double recompute_flops; /* FLOPs of the recomputed instructions at the batch */
  int64_t total;          /* the chosen plan's total bytes */
  int64_t min_feasible;   /* the smallest total among the plans considered */
} RecomputeResult;

/* Choose the kept activations for f (a grad function) and return the rewritten
 * function (f itself when nothing is recomputed). An infeasible budget is an error
 * through diag_error that states the smallest feasible budget; then NULL. */
Func *pass_recompute(Func *f, const RecomputeOptions *opt, RecomputeResult *res);

/* "64MiB", "1KiB", "1.5GB", "4096", "100B" -> bytes (KiB/MiB/GiB powers of 1024,
 * KB/MB/GB powers of 1000). -1 if malformed. */
int64_t memplan_parse_size(const char *s);
/* "8.0 MiB" style into buf. */
char *memplan_format_size(int64_t bytes, char *buf, size_t n);

#endif
