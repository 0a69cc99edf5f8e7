/* driver/driver.h — the `bpcc` command. Table of contents of driver/:
 *
 *   pipeline.c    the compiler's stages in one function (pipeline.h); a library of its
 *                 own (bpcc_pipeline) that the tests link too
 *   main.c        dispatch: the tables of commands and of --emit kinds, --help
 *   args.c        the command line every command shares: parsing from option tables
 *                 (with "did you mean"), the pipeline's options, which commands each
 *                 applies to, and the parsing of values
 *   outfile.c     where output goes: the table of output kinds and their extensions, -o,
 *                 `-o -`, no binary to a terminal, a temporary file then a rename
 *   emit.c        the --emit kinds and --check: printers of what a stage made
 *   emit_dot.c    --emit=dot, the kernel plans as a Graphviz graph
 *   nonfinite.c   the first non-finite tensor of a failed training step, named
 *   fdcheck.c     gradcheck's numerics: finite differences in the interpreter
 *   memcheck.c    does the compiled model fit in the memory available?
 *   cmd_*.c       one file per command: train, eval, predict, sample, plot, bench, gradcheck,
 *                 --mem-report, -o
 *
 * To add a subcommand: write `int cmd_NAME(int argc, char **argv)` in cmd_NAME.c,
 * declare it below and add one row to drv_commands[] in main.c (argv[0] is its name;
 * it returns the exit status). Its options are a DrvOption table that args_next
 * parses (cmd_eval.c is a short example); the manual page docs/bpcc.1 documents every
 * option its --help lists (tests/install/manpage.sh). To add an --emit kind: a printer
 * in emit.c, a row of drv_emits[] with the stage it needs, and a row of out_kinds[]
 * (outfile.c) with its extensions.
 *
 * Exit status: 0 success; 1 for any error — a diagnostic in the program, an unreadable
 * file, or a usage error (unknown option, missing file, an option the command does not
 * use). */
#ifndef BPCC_DRIVER_H
#define BPCC_DRIVER_H

#include "driver/pipeline.h"
#include "runtime/train.h"

/* ------------------------------------------------------------------ commands (main.c) */

/* What a command runs, which says which pipeline options apply to it (args.c). */
typedef struct {
  const char *name;       /* as the user wrote it: "--check", "--emit=ir", "train" */
  Stage last;             /* the last stage it runs */
  bool gradient;          /* it runs the gradient stages (a model with a loss) */
  bool batch;             /* it has a batch of its own (--batch applies without a budget) */
  bool runtime;           /* it runs compiled code (--threads also sizes the pool) */
} CommandInfo;

/* A subcommand: `bpcc NAME args...`. */
typedef struct {
  const char *name;
  const char *usage;      /* one line for --help */
  int (*run)(int argc, char **argv);
} DrvCommand;

/* An --emit kind (emit.c): what it prints once the pipeline reached its stage. */
typedef struct {
  const char *name;
  Stage needs;
  int (*emit)(Compilation *c, FILE *out);
  const char *help;
} DrvEmit;

extern const DrvCommand drv_commands[];
extern const char *drv_program;   /* argv[0] of main, for commands printed to the user */
/* Where the documentation is (README.md, docs/, examples/): beside an installed bpcc,
 * else the source tree, else where make install puts it (main.c). For --help. */
const char *drv_doc_dir(void);
extern const DrvEmit drv_emits[];

int cmd_train(int argc, char **argv);      /* bpcc train (cmd_train.c) */
int cmd_eval(int argc, char **argv);       /* bpcc eval (cmd_eval.c) */
int cmd_bench(int argc, char **argv);      /* bpcc bench (cmd_bench.c) */
int cmd_gradcheck(int argc, char **argv);  /* bpcc gradcheck (cmd_gradcheck.c) */
int cmd_predict(int argc, char **argv);    /* bpcc predict (cmd_predict.c) */
int cmd_plot(int argc, char **argv);       /* bpcc plot (cmd_plot.c) */
int cmd_sample(int argc, char **argv);     /* bpcc sample (cmd_sample.c) */
/* `bpcc FILE.bp --mem-report` (cmd_memreport.c) and `bpcc FILE.bp -o NAME.so`
 * (cmd_aot.c): the pipeline's options come parsed from main.c. */
int cmd_mem_report(const char *path, const PipelineOptions *o, const char *out_path);   /* NULL: stdout */
int cmd_write_library(const char *path, const PipelineOptions *o);
/* --check and the --emit kinds (emit.c). */
int emit_check(Compilation *c, FILE *out);
int emit_dot(Compilation *c, FILE *out);   /* emit_dot.c */

/* ------------------------------------------------------------------ the command line (args.c) */

enum {
  ARG_MODEL, ARG_PASSES, ARG_FUSE, ARG_PRINT_AFTER, ARG_VERIFY, ARG_RECOMPUTE, ARG_BUDGET, ARG_BATCH,
  ARG_OPT_LEVEL, ARG_MARCH, ARG_THREADS, ARG_WATCH, ARG_PRECISION, ARG_LOSS_SCALE, ARG__COUNT
};

/* The pipeline's options as a command line gives them, and which were given. */
typedef struct {
  PipelineOptions *o;
  bool given[ARG__COUNT];
  const char *spelling[ARG__COUNT];   /* the option as typed, for messages */
  int64_t threads;                    /* --threads N (also the runtime's pool), 0: not given */
} PipelineArgs;

void args_init(PipelineArgs *a, PipelineOptions *o);

/* One option in a command's table. The table parses the command line (args_next),
 * prints --help (args_print_options) and answers a mistyped option with the nearest
 * name in it ("did you mean"): an option added to it is covered by all three. */
typedef enum {
  OPT_FLAG,     /* --quiet                                  (--quiet=1 is an error) */
  OPT_VALUE,    /* --data SPEC or --data=SPEC */
  OPT_JOINED,   /* -march=CPU, --emit=KIND: only with '=' */
  OPT_PREFIX,   /* -O2: the value glued to the name; meta is the whole --help spelling */
} OptForm;

typedef struct {
  int id;             /* the command's code for it; rows may share one (aliases); OPT_PIPELINE */
  const char *name;   /* as typed, up to its value: "--data", "-march", "-O" */
  OptForm form;
  const char *meta;   /* the value in --help: "SPEC" (--data SPEC), "=MODE" (--recompute=MODE) */
  const char *help;   /* --help's text, lines split by '\n'; NULL: accepted, not listed or suggested */
} DrvOption;

/* A row of a command's table that lists one of the pipeline's options in its --help,
 * in the command's words; the pipeline's table parses it. */
#define OPT_PIPELINE (-1)

/* The pipeline's options above, one table (args.c); a command that takes them gives
 * args_next its PipelineArgs, which then applies them itself. */
extern const DrvOption args_pipeline_options[];

/* A walk over argv[1..] (argv[0] is the command's name). */
typedef struct {
  const char *command;        /* in messages ("Try 'bpcc train --help'"); NULL: bpcc itself */
  const DrvOption *options;   /* the command's table, ended by a row with name NULL */
  PipelineArgs *pa;           /* the pipeline's options, applied here; NULL: none taken */
  int argc;
  char **argv;
  int i;
  bool operands_only;         /* after "--" */
} ArgParser;

enum { ARGS_END, ARGS_OPTION, ARGS_OPERAND, ARGS_HELP, ARGS_ERROR };
void args_parser_init(ArgParser *p, const char *command, const DrvOption *options, PipelineArgs *pa, int argc,
                      char **argv);
/* The next item: ARGS_OPTION (*opt, and *value when it takes one), ARGS_OPERAND (*value:
 * a file, or "-"), ARGS_HELP (-h, --help), ARGS_END, or ARGS_ERROR after a message: an
 * unknown option (with "did you mean '--epochs'?" when one is close), a missing value,
 * or a bad value of one of the pipeline's options. */
int args_next(ArgParser *p, const DrvOption **opt, const char **value);
/* The table's listed rows as --help lines, the names in a column `width` wide; more
 * (if not NULL) may add lines under a row (a list of the values it takes). */
void args_print_options(FILE *out, const DrvOption *options, int width,
                        void (*more)(FILE *out, const DrvOption *row, int width));

/* argv[*i] (and the value after it): 1 if it is one of the pipeline's options (taken),
 * 0 if not, -1 after an error message (a bad value: exit status 1). For a command
 * whose loop is not yet a table; args_next does this itself. */
int args_pipeline_option(PipelineArgs *a, int argc, char **argv, int *i);
/* The runtime's thread pool to --threads N, if given; false after an error message. */
bool args_apply_threads(const PipelineArgs *a);
/* A clear error for each option given that the command does not use; false if any. */
bool args_check(const PipelineArgs *a, const CommandInfo *cmd);
/* The options in --help (every command takes them where they apply). */
void args_usage(FILE *out);

/* `--opt VALUE` or `--opt=VALUE`: the value, NULL if argv[*i] is another option, and
 * ARGS_MISSING (reported) when the value is missing. */
#define ARGS_MISSING ((const char *)-1)
const char *args_value(int argc, char **argv, int *i, const char *name);
/* An integer in [lo, hi], or a number (finite): false after "OPT 'S': expected ...". */
bool args_int(const char *opt, const char *s, int64_t lo, int64_t hi, int64_t *out);
bool args_real(const char *opt, const char *s, double *out);
/* "bpcc: error: MESSAGE\nTry 'bpcc[ COMMAND] --help' for more information."; returns 1. */
int args_usage_error(const char *command, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ------------------------------------------------------------------ outfile.c */

/* A kind of output, as -o, `-o -` and standard output take it (the table out_kinds[]). */
typedef struct {
  const char *kind;   /* an --emit kind, "check", "mem-report", "library", "npy", ... */
  const char *what;   /* "assembly", for messages */
  const char *exts;   /* the extensions its files take, space-separated, the usual first */
  bool binary;        /* never written to a terminal */
  bool to_stdout;     /* `-o -` (and no -o) may write it to standard output */
} OutputKind;

extern const OutputKind out_kinds[];
const OutputKind *out_kind(const char *kind);
/* Before the work: PATH (NULL or "-": standard output) can take output of this kind:
 * an extension of another kind, binary output to a terminal, `-o -` where standard
 * output cannot take it, a directory are errors. for_what names the command in
 * messages ("--emit=asm"). false after a message. */
bool out_check(const char *kind, const char *path, const char *for_what);

/* An output written to PATH.tmp-PID-N beside path and renamed over it by
 * outfile_commit: whole or not at all. "-" is standard output, and a path that exists
 * and is not a regular file (/dev/null, a FIFO) is written straight. */
typedef struct {
  const char *path;
  char *tmp;            /* the temporary file; NULL when written straight */
  FILE *f;              /* where to write */
} OutFile;

/* false after an error message; binary output (named `what` in it, e.g. "NPY") is
 * refused where it would go to a terminal. */
bool outfile_open(OutFile *o, const char *path, bool binary, const char *what);
/* Flush, fsync, close and rename into place; false after an error message (the
 * temporary file removed, an old file unchanged). */
bool outfile_commit(OutFile *o);
/* Close and remove the temporary file: path is left as it was. */
void outfile_abort(OutFile *o);

/* ------------------------------------------------------------------ memcheck.c */

/* Whether everything the compiled model allocates at `batch` (pipeline_memory_at, after
 * the memory stage) fits in bprt_mem_available (runtime/memavail.c); if not, an error
 * with the numbers ("bpcc: error: train: the model needs ... at batch N (parameters
 * ..., ...); ... is available (...): try a smaller --batch or --mem-budget"). budget:
 * suggest --mem-budget too. */
bool mem_check_fits(const Compilation *c, int64_t batch, const char *command, bool budget);

/* ------------------------------------------------------------------ nonfinite.c */

/* The training loop's hook for a step that went non-finite (runtime/train.h): the
 * failing batch evaluated again in the reference interpreter, forward, loss and
 * backward, to name the first tensor that went NaN or infinite with its op and DSL
 * location. ctx is the Compilation the model was compiled from. */
bool nonfinite_first(void *ctx, const bprt_model_desc *d, const BprtNonfiniteStep *s, char *what, size_t n);


#endif
