/* passes/passes.h — the passes over the IR. Table of contents of passes/:
 *
 *   pipeline.c    the pipeline table below, the runner (verify after each pass in debug
 *                 builds, print after a named pass) and the Func bookkeeping passes share
 *   simplify.c    CSE, DCE, constant folding, algebraic identities, log(softmax) ->
 *                 log_softmax and the softmax-CE rule, each a small named rewrite rule
 *   autodiff.c    reverse mode: one VJP rule per op, in a table indexed by op
 *   fuse.c        which instructions share one kernel, and the order of the kernels
 *   recompute.c  which forward activations backward keeps or recomputes (memplan.h)
 *   memplan.c     lifetimes and offsets of every value in one workspace (memplan.h)
 *
 * The pipeline, top to bottom (pass_pipeline[] in pipeline.c):
 *
 *   canonicalize  simplify before autodiff: the forward loss in canonical form, so
 *                 cross-entropy of a softmax in any spelling is softmax_xent
 *   autodiff      forward + loss + `grad %param, %g` for every parameter
 *   simplify      the same rewrite rules and CSE/DCE over forward and backward
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
  bool verify;              /* ir_verify after each pass (default: on in BPCC_DEBUG builds) */
  const char *print_after;  /* print the IR after the pass of this name, or "all" */
  FILE *print_out;          /* where --print-after prints (NULL: stdout) */
} PassOptions;

void pass_options_default(PassOptions *opt);

/* ------------------------------------------------------------------ the passes */

/* Reverse-mode autodiff (autodiff.c). f must have one `loss` sink and no `grad` sinks.
 * The result computes every forward value, the loss, and `grad %p, %g` for each param
 * in order (a param that does not reach the loss gets a zero constant). */
Func *pass_autodiff(Func *f, const PassOptions *opt);

/* Simplification (simplify.c). pass_canonicalize is the same rule set run before
 * autodiff; the softmax-CE rule only ever rewrites forward instructions. */
Func *pass_canonicalize(Func *f, const PassOptions *opt);
Func *pass_simplify(Func *f, const PassOptions *opt);

/* ------------------------------------------------------------------ fuse.c */

/* Fusion (fuse.c): groups of computed instructions, one kernel each, in the order they
 * run. Group g is order[group_start[g] .. group_start[g + 1]) (members ascending), of
 * kind kind[g]. internal[v]: v is produced and consumed inside its group and needs no
 * buffer. computed[v] says which instructions need a kernel; fuse = false gives one
 * instruction per group in instruction order. */
typedef enum { FUSE_SINGLE, FUSE_EW, FUSE_GEMM, FUSE_XENT, FUSE__COUNT } FuseKind;
#define FUSE_MAX_GROUP 64
typedef struct {
  int32_t *order;
  int32_t *group_start;
  uint8_t *kind;        /* FuseKind per group */
  bool *internal;       /* per instruction */
  int ngroups;
} FusePlan;
extern const char *const fuse_kind_names[FUSE__COUNT];
void fuse_plan(Arena *a, Func *f, const bool *computed, bool fuse, FusePlan *plan);

/* ------------------------------------------------------------------ pipeline.c */

typedef Func *(*PassFn)(Func *f, const PassOptions *opt);

typedef struct {
  const char *name;         /* for --print-after=NAME */
  PassFn run;
  const char *what;         /* one line for --help */
} PassInfo;

extern const PassInfo pass_pipeline[];
extern const int pass_pipeline_count;

/* The pass named name (in the pipeline table), or NULL. */
const PassInfo *pass_lookup(const char *name);

/* Run one pass: run it, verify the result when opt->verify, print it when
 * opt->print_after names it (or is "all"). NULL on error (reported). */
Func *pass_run(const PassInfo *p, Func *f, const PassOptions *opt);

/* Run the whole table in order (forward IR -> gradient IR). NULL on error. */
Func *pass_run_pipeline(Func *f, const PassOptions *opt);

/* Func bookkeeping for passes: a new empty function in f's module with f's name, and
 * swapping it in for f (f's instructions are released; f must not be used again). */
Func *pass_func_new_like(Func *f);
Func *pass_func_replace(Func *old, Func *repl);
void pass_func_drop(Func *f);   /* release a scratch function and remove it from its module */

#endif
