/* driver/driver.h — the `bpcc` command. Table of contents of driver/:
 *
 *   main.c      option parsing, the table of subcommands and of --emit kinds, --help
 *   pipeline.c  the shared pipeline: read a file (or stdin), parse, check, lower
 *   cmd_*.c     one file per subcommand (`bpcc train ...`, `bpcc gradcheck ...`)
 *   fdcheck.c   gradcheck's numerics, fd_check (fdcheck.h; the library bpcc_fdcheck)
 *
 * To add a subcommand: write `int cmd_NAME(int argc, char **argv)` in cmd_NAME.c,
 * declare it below, and add one row to drv_commands[] in main.c. argv[0] is the
 * subcommand's name; return the exit status. To add an --emit kind: write an emitter
 * `int emit_NAME(DrvCompilation *c, FILE *out)` and add a row to drv_emits[] in main.c
 * with the pipeline stage it needs.
 *
 * Exit status: 0 success; 1 for any error — a diagnostic in the program, an unreadable
 * file, or a usage error (unknown option, missing file). */
#ifndef BPCC_DRIVER_H
#define BPCC_DRIVER_H

#include "frontend/frontend.h"
#include "ir/ir.h"

/* How far drv_compile runs. */
typedef enum {
  DRV_READ,     /* read the text and register it for diagnostics */
  DRV_PARSE,    /* + parse */
  DRV_CHECK,    /* + semantic analysis: checked models */
  DRV_LOWER,    /* + lower the selected model to an IR Func */
} DrvStage;

typedef struct {
  const char *path;       /* as given; "-" is standard input */
  const char *name;       /* in diagnostics: the path, or "<stdin>" */
  Arena *arena;           /* owns the AST and the checked models */
  int file;               /* diag file id */
  FeProgram *program;
  FeUnit *unit;
  FeModel *model;         /* the selected model: --model NAME, else the first */
  Module *module;         /* DRV_LOWER: owns func */
  Func *func;
} DrvCompilation;

/* Run the pipeline up to `upto` on the file at `path` ("-": stdin). model_name selects a
 * model (NULL: the first). Returns false after printing diagnostics; c is filled as far
 * as it got either way and must be released with drv_release. */
bool drv_compile(DrvCompilation *c, const char *path, DrvStage upto, const char *model_name);
/* When set, drv_compile lowers every named activation as an extra output (--watch). */
extern bool drv_lower_activations;
void drv_release(DrvCompilation *c);

/* Read a whole file ("-": stdin) into a bp_malloc'd buffer; false with an error printed. */
bool drv_read_file(const char *path, char **text, size_t *len);

/* A subcommand: `bpcc NAME args...`. */
typedef struct {
  const char *name;
  const char *usage;      /* one line for --help */
  int (*run)(int argc, char **argv);
} DrvCommand;

/* An --emit kind. */
typedef struct {
  const char *name;
  DrvStage needs;
  int (*emit)(DrvCompilation *c, FILE *out);
  const char *help;
} DrvEmit;

extern const DrvCommand drv_commands[];
extern const DrvEmit drv_emits[];

/* Codegen options of the command line: -O0..-O3 and -march=CPU (native, x86-64,
 * x86-64-v2, x86-64-v3, x86-64-v4), and the --emit kinds that use them
 * (emit_codegen.c): llvm, asm and obj print the whole compiled model on stdout. */
typedef struct {
  const char *march;
  int opt_level;
  bool profile;         /* cycle counters around every kernel (bpcc bench --profile) */
} DrvCodegenOptions;
extern DrvCodegenOptions drv_codegen;
int drv_emit_llvm(DrvCompilation *c, FILE *out);
int drv_emit_asm(DrvCompilation *c, FILE *out);
int drv_emit_obj(DrvCompilation *c, FILE *out);
#ifdef BPCC_CODEGEN_H
/* The optimizer and hyperparameters of a train block, as codegen takes them
 * (emit_codegen.c; declared where codegen/codegen.h is included). */
void drv_train_optimizer(const TrainSpec *ts, CgOptimizer *opt);
#endif
/* `bpcc FILE.bp -o NAME.so` (cmd_aot.c): the shared library and NAME.h; exit status. */
int drv_write_library(const char *path, const char *model, const char *out);

/* Subcommands (cmd_*.c). */
int cmd_train(int argc, char **argv);   /* bpcc train (cmd_train.c) */
int cmd_eval(int argc, char **argv);    /* bpcc eval (cmd_eval.c) */
int cmd_bench(int argc, char **argv);   /* bpcc bench (cmd_bench.c) */
int cmd_gradcheck(int argc, char **argv); /* bpcc gradcheck (cmd_gradcheck.c) */

/* Pass options from the command line (cmd_gradcheck.c): -fno-softmax-xent,
 * -fno-log-softmax, --print-after=PASS, --verify-each. drv_pass_flag consumes argv[*i]
 * (and its value) if it is one of them; drv_grad_func runs the pass pipeline on a clone
 * of a forward function (NULL after diagnostics); emit_grad_ir is --emit=grad-ir. */
bool drv_pass_flag(const char *a, char **argv, int argc, int *i);
Func *drv_grad_func(Func *fwd);
int emit_grad_ir(DrvCompilation *c, FILE *out);

/* Memory planning options (cmd_memreport.c): --mem-report, --checkpoint=none|sqrt|auto,
 * --mem-budget SIZE, --batch N. drv_mem_flag consumes argv[*i] (and its value) if it
 * is one of them (a bad value is a usage error: exit 1). drv_checkpoint applies
 * --checkpoint / --mem-budget to a gradient function (it is replaced in its module;
 * unchanged without those options; NULL after diagnostics, e.g. an infeasible budget).
 * drv_mem_report is `bpcc --mem-report FILE.bp`; emit_dot is --emit=dot (emit_dot.c). */
#include "passes/memplan.h"
typedef struct {
  bool report;
  RecomputeMode mode;
  bool mode_set;          /* --checkpoint given */
  int64_t budget;         /* --mem-budget in bytes; 0 = none (implies --checkpoint=auto) */
  int64_t batch;          /* --batch; 0 = the train block's */
} DrvMemOptions;
extern DrvMemOptions drv_mem;
bool drv_mem_flag(const char *a, char **argv, int argc, int *i);
int64_t drv_mem_batch(const DrvCompilation *c);
int drv_mem_opt_factor(const DrvCompilation *c);   /* optimizer state floats per param float */
Func *drv_checkpoint(DrvCompilation *c, Func *grad, RecomputeResult *res);
int drv_mem_report(const char *path, const char *model);
int emit_dot(DrvCompilation *c, FILE *out);
int emit_opt_ir(DrvCompilation *c, FILE *out);   /* --emit=opt-ir (emit_dot.c) */

/* Autodiff + simplification of c->func (after DRV_LOWER), then codegen with the
 * optimizer `optimizer` (bprt_optimizer) and hyper[BPRT_H__COUNT] as the descriptor's
 * defaults, and the JIT. threads: GEMM chunk hint (<= 0: the CPUs). NULL after
 * diagnostics; cg_model_desc gives the descriptor (cmd_train.c). */
struct CgModel;
struct CgModel *drv_build_jit(DrvCompilation *c, int optimizer, const double *hyper, int threads);

#endif
