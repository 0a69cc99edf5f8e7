/* passes/passes.h — the passes over the IR. Table of contents of passes/:
 *
 *   pass.c        the options and the Func bookkeeping every pass shares
 *   simplify.c    CSE, DCE, constant folding, algebraic identities, log(softmax) ->
 *                 log_softmax, the softmax-CE rule and attention fusion, each a small
 *                 named rewrite rule
 *   autodiff.c    reverse mode: one VJP rule per op, in a table indexed by op
 *   precision.c   mixed precision: 16-bit product operands and kept activations
 *   recompute.c   which forward activations backward keeps or recomputes (memplan.h)
 *   kernel_plan.c which instructions each entry computes, which share one kernel (fusion),
 *                 the order of the kernels and where each value lives
 *   modes.c       the inference form of a model (batchnorm's running statistics)
 *   memplan.c     lifetimes and offsets of every value in one workspace; the model's
 *                 memory: parameter block, workspaces, totals (memplan.h)
 *
 * The passes run in the order of the pipeline (driver/pipeline.c, docs/pipeline.md),
 * which also verifies after each and prints for --print-after:
 *
 *   canonicalize  simplify before autodiff: the forward loss in canonical form, so
 *                 cross-entropy of a softmax in any spelling is softmax_xent
 *   autodiff      forward + loss + `grad %param, %g` for every parameter
 *   simplify      the same rewrite rules and CSE/DCE over forward and backward
 *   precision     bf16 or f16 casts: product operands, activations kept for backward
 *   recompute     activations dropped and recomputed in backward (memplan.h)
 *   kernel plan   per entry: what runs, in which kernels, in which order
 *   memory plan   the parameter block and every workspace slot (memplan.h)
 *
 * A pass takes a Func and returns the Func that replaces it (same name, same module:
 * the old one is released and must not be used again), or NULL after reporting an
 * error through diag_error. Passes never mutate instructions in place: they rebuild a
 * new array through ir_emit with an old-to-new id map (hash-consing gives CSE).
 */
#ifndef BPCC_PASSES_H
#define BPCC_PASSES_H

#include "ir/ir.h"

typedef struct {
  bool softmax_xent;        /* the softmax-CE rule; -fno-softmax-xent turns it off */
  bool log_softmax;         /* log(softmax(z)) -> log_softmax(z); -fno-log-softmax */
  bool fuse_attention;      /* softmax(scale q k^T [+ mask]) v -> attention; -fno-fuse-attention */
  bool verify;              /* the default of the pipeline's --verify-each (on in BPCC_DEBUG builds) */
  bool loss_scale;          /* --loss-scale dynamic|N was asked for. Autodiff seeds every backward
                               with the `loss_scale` leaf (read at run time: the scale, 1 when
                               off, times the micro-batch's weight) whatever this says */
} PassOptions;

void pass_options_default(PassOptions *opt);

/* ------------------------------------------------------------------ the passes */

/* The rule of the grad sink of a parameter the loss does not reach: the optimizer leaves
 * such a parameter as it is (the memory plan puts it after the trained ones). */
#define PASS_RULE_UNREACHED "unreached"

/* Reverse-mode autodiff (autodiff.c). f must have one `loss` sink and no `grad` sinks.
 * The result computes every forward value, the loss, and `grad %p, %g` for each param
 * in order (a param that does not reach the loss gets a zero constant). */
Func *pass_autodiff(Func *f, const PassOptions *opt);

/* Simplification (simplify.c). pass_canonicalize is the same rule set run before
 * autodiff; the softmax-CE rule only ever rewrites forward instructions. */
Func *pass_canonicalize(Func *f, const PassOptions *opt);
Func *pass_simplify(Func *f, const PassOptions *opt);

/* Mixed precision (precision.c) of a gradient function: with low DT_BF16 or DT_F16,
 * every product of f32 operands reads their casts to low (one cast per value), and every
 * activation backward reads is kept as its low cast (backward products read it, other
 * backward readers a cast back to f32 right before them; relu_grad's mask is relu's
 * output, so a relu's input is not kept); softmax, losses, reductions,
 * batch statistics, attention, the outputs and the gradients stay f32. low DT_F32: f
 * unchanged. The same sinks, names and order otherwise. */
Func *pass_precision(Func *f, DType low);

/* The inference form (modes.c): batchnorm with its running statistics (bn_mean and
 * bn_var replaced by their buffers), no assign sinks. For the forward entry. */
Func *pass_inference(Func *f);

/* ------------------------------------------------------------------ kernel_plan.c */

/* The kernel plan of one entry point: which instructions it computes, which of them
 * share one kernel (one loop nest), in which order the kernels run, and where each
 * value lives (a buffer, registers inside its kernel, the gradient block, an
 * immediate). The code generator lowers exactly this plan; --emit=opt-ir and
 * --emit=dot print it; the memory plan gives every buffer its bytes.
 *
 * Kernel g is order[group_start[g] .. group_start[g + 1]) (members ascending by
 * instruction), of kind kind[g]. */
typedef enum { KERNEL_SINGLE, KERNEL_EW, KERNEL_GEMM, KERNEL_XENT, KERNEL_POOL_MASK, KERNEL_ATTN, KERNEL_VIEW, KERNEL__COUNT } KernelKind;
#define KERNEL_MAX_GROUP 64
extern const char *const kernel_kind_names[KERNEL__COUNT];   /* "single", "ew", "gemm+epilogue", ... */

/* What an entry computes. */
typedef enum {
  PLAN_INFERENCE,  /* forward: the outputs, and the loss when the caller asks for it (the
                      kernels only the loss needs are `loss_only`); dropout is the identity */
  PLAN_TRAINING,   /* grad: outputs, loss and every gradient; dropout masks are drawn */
} PlanMode;

typedef struct {
  bool fuse;       /* false (-fno-fuse): one instruction per kernel, in instruction order */
} KernelPlanOptions;

typedef struct {
  Func *f;
  PlanMode mode;
  bool *live;            /* needed by a sink of this entry */
  bool *computed;        /* runs in a kernel: live, and not an input, a parameter or an
                            immediate constant */
  bool *materialize;     /* a constant a kernel reads from memory (not splat into an ew loop) */
  bool *internal;        /* produced and consumed inside its kernel: no buffer */
  int32_t *direct_grad;  /* the grad sink whose gradient slot this value is computed into
                            (its sink then copies nothing), or -1 */
  int32_t *kernel_of;    /* the kernel of each computed instruction, else -1 */
  int32_t *order, *group_start;
  uint8_t *kind;         /* KernelKind per kernel */
  bool *loss_only;       /* per kernel: runs only when the loss is asked for (inference) */
  int ngroups;
} KernelPlan;

/* Plan f for an entry. NULL after a located error for what no kernel computes (a label
 * made by anything but an input, a value with the batch dim twice). Arena-allocated. */
KernelPlan *pass_kernel_plan(Arena *a, Func *f, PlanMode mode, const KernelPlanOptions *o);
/* Every computed instruction in exactly one kernel, kernels in an order where each reads
 * only leaves and values of earlier kernels (or its own members), internal values read
 * only inside their kernel. False after printing each problem (with `what`). */
bool kernel_plan_verify(const KernelPlan *p, const char *what);
/* The function as its kernels, in the order they run (the --emit=opt-ir text): leaves
 * first, then `# kernel K: op+op (kind)` and its members, each sink after the kernel
 * that makes its operand; `(internal)` on values that never reach memory. */
void kernel_plan_print(FILE *out, const KernelPlan *p);
/* The number of kernels that compute something (sinks that only copy excluded). */
int kernel_plan_count(const KernelPlan *p);

/* ------------------------------------------------------------------ pass.c */

/* Func bookkeeping for passes: a new empty function in f's module with f's name, and
 * swapping it in for f (f's instructions are released; f must not be used again). */
Func *pass_func_new_like(Func *f);
Func *pass_func_replace(Func *old, Func *repl);
void pass_func_drop(Func *f);   /* release a scratch function and remove it from its module */

#endif
