/* driver/main.c — `bpcc`: dispatch.
 *
 *   bpcc --help | --version
 *   bpcc --check FILE.bp                          check; print each model's summary
 *   bpcc --emit=KIND FILE.bp                      print what a stage made (emit.c)
 *   bpcc --mem-report FILE.bp                     the memory plan (cmd_memreport.c)
 *   bpcc FILE.bp -o NAME.so                       a shared library and NAME.h (cmd_aot.c)
 *   bpcc --print-after=STAGE FILE.bp              run up to STAGE and print it
 *   bpcc COMMAND ARGS...                          a subcommand (drv_commands)
 *
 * FILE may be `-` for standard input (named <stdin> in diagnostics). Every one of them
 * runs the pipeline (pipeline.c) with the options of args.c. Exit status: 0 on
 * success, 1 on any error, usage errors included. */
#include "driver/driver.h"

#include <string.h>

const DrvCommand drv_commands[] = {
    {"train", "train FILE.bp --data SPEC [options]   JIT-compile and train (bpcc train --help)", cmd_train},
    {"eval", "eval FILE.bp --weights PATH --data SPEC   loss and accuracy of trained weights", cmd_eval},
    {"predict", "predict FILE.bp --weights PATH --data SPEC [-o OUT.npy|OUT.csv]   the model's outputs for new inputs", cmd_predict},
    {"plot", "plot LOG.csv -o CURVES.svg   loss and accuracy curves of a bpcc train --log", cmd_plot},
    {"gradcheck", "gradcheck FILE.bp [--dtype f64|f32] [--batch N] [--seed S]   derived gradients vs finite differences", cmd_gradcheck},
    {"bench", "bench FILE.bp [--steps N] [--threads N] [--gemm]   time the compiled training step (bench/run.sh)", cmd_bench},
    {NULL, NULL, NULL},
};

static void usage(FILE *o) {
  fprintf(o,
          "usage: bpcc [options] FILE.bp\n"
          "       bpcc COMMAND [args...]\n"
          "\n"
          "bpcc compiles .bp neural-network programs: it checks them, derives the backward\n"
          "pass and compiles forward + backward + optimizer to native code.\n"
          "FILE may be '-' to read standard input.\n"
          "\n"
          "what to do (one of):\n"
          "  --check            check the program and print each model's summary\n"
          "  --emit=KIND        print an intermediate form; KIND is one of:\n");
  for (const DrvEmit *e = drv_emits; e->name; e++) fprintf(o, "                       %-10s %s\n", e->help ? e->name : "", e->help);
  fprintf(o,
          "  --mem-report       the memory plan of a training step: every tensor, and all the\n"
          "                     compiled model allocates (--watch: as bpcc train --watch compiles it)\n"
          "  -o NAME.so         write the model as a shared library with a C ABI, and NAME.h\n"
          "                     beside it (docs/abi.md); -march=x86-64-v3 for a portable one\n"
          "  --print-after=STAGE alone: run the pipeline up to STAGE and print what it made\n"
          "\n"
          "options (for every command where they change what it does; else an error):\n");
  args_usage(o);
  fprintf(o,
          "  -h, --help         this help\n"
          "  --version          the version\n");
  fprintf(o, "\ncommands:\n");
  for (const DrvCommand *c = drv_commands; c->name; c++) fprintf(o, "  %s\n", c->usage);
  fprintf(o, "\nexit status: 0 success, 1 any error (in the program, a file, or the command line)\n");
}

/* Run the pipeline up to the stage an --emit kind (or --check) needs and print. */
static int run_emit(const char *path, const PipelineOptions *o, Stage needs, int (*emit)(Compilation *, FILE *)) {
  Compilation c;
  pipeline_init(&c, path, o);
  bool ok = pipeline_run(&c, needs);
  int status = ok ? 0 : 1;
  /* the syntax tree is printed even when it has errors */
  if (emit && (ok || (needs == STAGE_PARSE && c.program))) status = emit(&c, stdout);
  if (!ok) status = 1;
  pipeline_release(&c);
  return status;
}

const char *drv_program = "bpcc";

int main(int argc, char **argv) {
  if (argc > 0 && argv[0] && argv[0][0]) drv_program = argv[0];
  if (argc < 2) {
    usage(stderr);
    return 1;
  }
  for (const DrvCommand *c = drv_commands; c->name; c++)
    if (strcmp(argv[1], c->name) == 0) return c->run(argc - 1, argv + 1);

  PipelineOptions o;
  pipeline_options_default(&o);
  PipelineArgs pa;
  args_init(&pa, &o);
  bool check = false, mem_report = false;
  const DrvEmit *emit = NULL;
  const char *file = NULL, *out = NULL, *emit_arg = NULL;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
      usage(stdout);
      return 0;
    }
    if (strcmp(a, "--version") == 0) {
      printf("bpcc %s\n", BPCC_VERSION);
      return 0;
    }
    int r = args_pipeline_option(&pa, argc, argv, &i);
    if (r < 0) return 1;
    if (r > 0) continue;
    if (strcmp(a, "--check") == 0) {
      check = true;
    } else if (strcmp(a, "--mem-report") == 0) {
      mem_report = true;
    } else if (strncmp(a, "--emit=", 7) == 0) {
      emit = NULL;
      emit_arg = a;
      for (const DrvEmit *e = drv_emits; e->name; e++)
        if (strcmp(e->name, a + 7) == 0) emit = e;
      if (!emit) return args_usage_error(NULL, "unknown --emit kind '%s' (see bpcc --help)", a + 7);
    } else if (strcmp(a, "--emit") == 0) {
      return args_usage_error(NULL, "%s needs a kind, as in --emit=ast", a);
    } else if (strcmp(a, "-o") == 0) {
      if (i + 1 >= argc) return args_usage_error(NULL, "%s needs a path, as in -o model.so", a);
      out = argv[++i];
    } else if (a[0] == '-' && a[1] != 0) {
      return args_usage_error(NULL, "unknown option '%s'", a);
    } else if (file) {
      return args_usage_error(NULL, "more than one input file ('%s')", a);
    } else {
      file = a;
    }
  }
  int actions = (check ? 1 : 0) + (emit ? 1 : 0) + (mem_report ? 1 : 0) + (out ? 1 : 0);
  if (actions > 1)
    return args_usage_error(NULL, "%s", "--check, --emit, --mem-report and -o exclude each other: give one");
  if (actions == 0 && !o.print_after) {
    if (file) {
      for (const DrvCommand *c = drv_commands; c->name; c++)
        if (strcmp(file, c->name) == 0) return c->run(argc - 1, argv + 1);
      if (strstr(file, ".bp") == NULL && strcmp(file, "-") != 0)
        return args_usage_error(NULL, "unknown command '%s' (see bpcc --help)", file);
    }
    return args_usage_error(NULL, "%s", "nothing to do: give --check, --emit=KIND, --mem-report or -o NAME.so with a FILE.bp");
  }
  if (!file) return args_usage_error(NULL, "%s", "no input file (use '-' for standard input)");

  CommandInfo cmd;
  if (out) cmd = (CommandInfo){"-o", STAGE_MACHINE, true, false, false};
  else if (mem_report) cmd = (CommandInfo){"--mem-report", STAGE_MEMORY, true, true, false};
  else if (check) cmd = (CommandInfo){"--check", STAGE_CHECK, false, false, false};
  else if (emit) cmd = (CommandInfo){emit_arg, emit->needs, emit->needs >= STAGE_CANONICALIZE, false, false};
  else cmd = (CommandInfo){"--print-after", STAGE_LLVM, true, false, false};   /* alone: runs up to its stage */
  int upto = !actions ? (strcmp(o.print_after, "all") == 0 ? STAGE_LLVM : pipeline_stage_lookup(o.print_after)) : 0;
  if (!actions) cmd.last = (Stage)upto;
  if (!args_check(&pa, &cmd)) return 1;

  /* line tables map the library's and the listing's code to the .bp lines */
  if (out || (emit && emit->needs >= STAGE_LLVM)) o.codegen.debug_info = true;
  if (out) {
    o.output = out;
    return cmd_write_library(file, &o);
  }
  if (mem_report) return cmd_mem_report(file, &o);
  if (check) return run_emit(file, &o, STAGE_CHECK, emit_check);
  if (emit) return run_emit(file, &o, emit->needs, emit->emit);
  return run_emit(file, &o, (Stage)upto, NULL);
}
