/* driver/pipeline.h — the compiler's stages in one place (pipeline.c).
 *
 * Every command of `bpcc` — --check, each --emit, --mem-report, gradcheck, train, eval,
 * bench, -o — fills one PipelineOptions, runs the one pipeline up to the stage it
 * needs and reads the result from the Compilation. Nothing else in bpcc runs the
 * passes or the code generator. docs/pipeline.md follows examples/mnist_mlp.bp
 * through every stage.
 *
 *   stage         input -> output                                       prints (--print-after)
 *   read          file or stdin -> registered text
 *   parse         text -> syntax tree                                   the tree
 *   check         tree -> checked models                               each model's summary
 *   lower         the model -> forward IR (@m)                         IR
 *   canonicalize  clone @m.grad: the loss in canonical form (softmax-CE) IR
 *                 (and the forward entry's copy of @m)
 *   autodiff      + backward: grad sinks                               IR
 *   simplify      CSE, DCE, folding, algebra over both (and over @m)   IR
 *   precision     bf16/f16 casts of products' operands and of kept     IR
 *                 activations (--precision; @m.grad only)
 *   recompute     activations recomputed in backward (--recompute,     IR
 *                 --mem-budget)
 *   kernels       kernel plan of each entry (forward, grad)            the plans (--emit=opt-ir)
 *   memory        parameter block and workspace slots, totals          the memory plan
 *   llvm          one optimized LLVM module                            LLVM IR
 *   machine       JIT-compiled, or written as a shared library (-o)
 *
 * A model without a loss has no gradient: its pipeline skips canonicalize to recompute
 * and plans the forward entry alone. */
#ifndef BPCC_DRIVER_PIPELINE_H
#define BPCC_DRIVER_PIPELINE_H

#include "codegen/codegen.h"
#include "frontend/frontend.h"
#include "passes/memplan.h"
#include "passes/passes.h"

typedef enum {
  STAGE_READ,
  STAGE_PARSE,
  STAGE_CHECK,
  STAGE_LOWER,
  STAGE_CANONICALIZE,
  STAGE_AUTODIFF,
  STAGE_SIMPLIFY,
  STAGE_PRECISION,
  STAGE_RECOMPUTE,
  STAGE_KERNELS,
  STAGE_MEMORY,
  STAGE_LLVM,
  STAGE_MACHINE,
  STAGE__COUNT
} Stage;

typedef struct {
  const char *name;        /* for --print-after=NAME */
  const char *what;        /* one line for --help */
} StageInfo;
extern const StageInfo pipeline_stages[STAGE__COUNT];
/* The stage called name, or -1. "all" is not a stage (--print-after accepts it). */
int pipeline_stage_lookup(const char *name);

/* Every option of every command: one struct, filled by the command line (args.c) and
 * passed down; nothing is kept in globals. pipeline_options_default gives bpcc's
 * defaults. */
typedef struct {
  const char *model;              /* --model NAME; NULL: the file's first model */
  bool watch;                     /* --watch: every named activation is an output too */
  PassOptions passes;             /* -fno-softmax-xent, -fno-log-softmax */
  const char *print_after;        /* --print-after=STAGE or "all"; NULL: none */
  FILE *print_out;                /* where it prints (NULL: stdout) */
  bool verify;                    /* --verify-each (default on in BPCC_DEBUG builds) */
  RecomputeMode recompute;        /* --recompute=none|sqrt|auto (alias --checkpoint) */
  bool recompute_set;
  int64_t mem_budget;             /* --mem-budget SIZE, bytes; 0: none (implies auto) */
  int64_t batch;                  /* --batch N: the batch memory is planned at; 0: the
                                     train block's (else 32) */
  bool fuse;                      /* -fno-fuse: one instruction per kernel */
  DType precision;                /* --precision f32|bf16|f16, with precision_set; else
                                     the train block's (else f32) */
  bool precision_set;
  bprt_optimizer_config optimizer;   /* with optimizer_set; else the train block's */
  bool optimizer_set;
  CgOptions codegen;              /* -O0..-O3, -march=CPU, --threads (the product
                                     chunks), profile counters, line tables */
  const char *output;             /* -o NAME.so: the machine stage writes a library;
                                     NULL: it JIT-compiles */
  bool forward_only;              /* the forward entry alone: no gradient stages (eval) */
  bool runtime;                   /* the model will run in bpcc's runtime (train, eval,
                                     bench, -o), which is f32: an f64 model is an error */
  int loss_scale_mode;            /* --loss-scale dynamic|N|off (bprt_loss_scale_mode), with
                                     loss_scale_set; else the train block's, else the default */
  double loss_scale;              /*   its initial (fixed: constant) scale */
  bool loss_scale_set;
} PipelineOptions;

void pipeline_options_default(PipelineOptions *o);

/* One run of the pipeline: its options and what each stage made. */
typedef struct {
  PipelineOptions opt;
  const char *path;               /* as given; "-" is standard input */
  const char *name;               /* in diagnostics: the path, or "<stdin>" */
  const char *text;               /* pipeline_init_text: the source (else NULL: read path) */
  size_t text_len;
  bool from_ir;                   /* pipeline_init_ir: the functions are verified first */
  int file;                       /* diag file id, -1 before read */
  Arena *arena;                   /* the syntax tree, checked models, plans */
  FeProgram *program;             /* parse */
  FeUnit *unit;                   /* check */
  FeModel *model;                 /*   the selected model (NULL: the file has none) */
  Module *module;                 /* lower: owns the functions */
  Func *fwd;                      /*   the forward function @m, as lowered */
  Func *infer;                    /* canonicalize, simplify: the forward entry's function,
                                     @m in canonical form (its loss as softmax-CE) */
  Func *grad;                     /* canonicalize .. recompute: @m.grad (NULL: no loss) */
  RecomputeResult recompute;      /* recompute */
  KernelPlan *kfwd, *kgrad;       /* kernels */
  ModelMemory *mem;               /* memory */
  CgModel *cg;                    /* llvm; jitted or written by machine */
  bprt_optimizer_config optimizer;   /* resolved: options, else the train block's */
  int loss_scale_mode;            /* resolved: --loss-scale, else the train block's, else
                                     dynamic for precision f16 and off otherwise (off
                                     without a gradient); passes.loss_scale follows it */
  double loss_scale;
  int64_t batch;                  /* resolved planning batch */
  DType precision;                /* resolved: DT_F32, DT_BF16 or DT_F16 */
  int done;                       /* the last stage completed, -1 before any */
  double seconds[STAGE__COUNT];   /* time spent in each stage */
} Compilation;

/* Start a compilation of the file at path ("-": standard input). */
void pipeline_init(Compilation *c, const char *path, const PipelineOptions *o);
/* Start one from a text in memory, registered under name (tests, tools). */
void pipeline_init_text(Compilation *c, const char *name, const char *text, size_t len, const PipelineOptions *o);
/* Start one from IR functions (FILE.ir, tests): fwd as lowered (the forward function
 * with its sinks), grad NULL to derive it, or a gradient function already derived (the
 * gradient stages then keep it). The compilation does not own them. */
void pipeline_init_ir(Compilation *c, Func *fwd, Func *grad, const PipelineOptions *o);
/* Start one from another's checked model (after check): its options o, its own IR. */
void pipeline_init_model(Compilation *c, const Compilation *from, const PipelineOptions *o);
/* Run every stage after the last one done, up to and including upto. False after
 * diagnostics; c holds what the stages before the failing one made. */
bool pipeline_run(Compilation *c, Stage upto);
void pipeline_release(Compilation *c);
/* The compiled model, which the caller then owns (cg_model_free); NULL before llvm. */
CgModel *pipeline_take_model(Compilation *c);

/* Is there a gradient to compute? (the model has a loss) */
bool pipeline_has_loss(const Compilation *c);
/* Everything the compiled step allocates at a batch (after the memory stage):
 * bprt_model_memory_at of the model's layout. */
bprt_model_memory pipeline_memory_at(const Compilation *c, int64_t batch);
/* One line that says what was compiled (after llvm): "-O3 native, 16 f32 lanes, 2
 * product chunks; kernels: forward 5, step 9; 12.74 MiB at batch 128" and, with a
 * recompute plan, "; recompute sqrt: 1 of 2 activations kept". train, eval and bench
 * print it, so every option's effect shows. */
char *pipeline_describe(const Compilation *c, char *buf, size_t n);
/* The memory stage's report: the training step's tensors and all the model allocates. */
void pipeline_print_memory(FILE *out, const Compilation *c);
/* Read a whole file ("-": stdin) into a bp_malloc'd buffer; false with an error printed. */
bool pipeline_read_file(const char *path, char **text, size_t *len);

#endif
