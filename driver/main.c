/* driver/main.c — `bpcc`: dispatch.
 *
 *   bpcc --help | --version | help [COMMAND]
 *   bpcc --check FILE.bp [-o OUT]                 check; print each model's summary
 *   bpcc --emit=KIND FILE.bp [-o OUT]             print what a stage made (emit.c)
 *   bpcc --mem-report FILE.bp [-o OUT]            the memory plan (cmd_memreport.c)
 *   bpcc FILE.bp -o NAME.so                       a shared library and NAME.h (cmd_aot.c)
 *   bpcc --print-after=STAGE FILE.bp              run up to STAGE and print it
 *   bpcc COMMAND ARGS...                          a subcommand (drv_commands)
 *
 * FILE may be `-` for standard input (named <stdin> in diagnostics); `--` ends the
 * options. -o names where the output goes, checked against its kind (outfile.c) before
 * anything runs. Every one of them runs the pipeline (pipeline.c) with the options of
 * args.c. A word that is neither an option nor a file is taken for a command, and a
 * mistyped one gets "did you mean" from drv_commands[], as a mistyped option does from
 * the tables of args.c. Exit status: 0 on success, 1 on any error, usage errors
 * included. */
#include "driver/driver.h"
#include "runtime/dist.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int cmd_help(int argc, char **argv);

const DrvCommand drv_commands[] = {
    {"train", "train FILE.bp --data SPEC [options]   JIT-compile and train (bpcc train --help)", cmd_train},
    {"eval", "eval FILE.bp --weights PATH --data SPEC   loss and accuracy of trained weights", cmd_eval},
    {"predict", "predict FILE.bp --weights PATH --data SPEC [-o OUT.npy|OUT.csv]   the model's outputs for new inputs", cmd_predict},
    {"plot", "plot LOG.csv -o CURVES.svg   loss and accuracy curves of a bpcc train --log", cmd_plot},
    {"sample", "sample FILE.bp --weights PATH --prompt TEXT [-n N] [--temperature T] [--top-k K] [--seed S]   text from a language model", cmd_sample},
    {"gradcheck", "gradcheck FILE.bp [--dtype f64|f32] [--batch N] [--seed S]   derived gradients vs finite differences", cmd_gradcheck},
    {"bench", "bench FILE.bp [--steps N] [--threads N] [--gemm]   time the compiled training step", cmd_bench},
    {"help", "help [COMMAND]   this help, or a command's (the same as bpcc COMMAND --help)", cmd_help},
    {NULL, NULL, NULL},
};

enum { M_CHECK, M_EMIT, M_MEM_REPORT, M_OUTPUT, M_VERSION };

/* bpcc's own options (parsed, listed in --help, suggested); then the pipeline's */
static const DrvOption main_options[] = {
    {M_CHECK, "--check", OPT_FLAG, NULL, "check the program and print each model's summary"},
    {M_EMIT, "--emit", OPT_JOINED, "KIND", "print what a stage made; KIND is one of:"},
    {M_MEM_REPORT, "--mem-report", OPT_FLAG, NULL, "the memory plan of a training step: every tensor, and all the\n"
                                                   "compiled model allocates (--watch: as bpcc train --watch compiles it)"},
    {M_OUTPUT, "-o", OPT_VALUE, "NAME.so", "without --check, --emit or --mem-report: write the model as a\n"
                                           "shared library with a C ABI, and NAME.h beside it (docs/abi.md\n"
                                           "in the documentation below); -march=x86-64-v3 for a portable one"},
    {OPT_PIPELINE, "--print-after", OPT_VALUE, "=STAGE", "alone: run the pipeline up to STAGE and print what it made"},
    {M_OUTPUT, "-o", OPT_VALUE, "FILE", "where --check, --emit and --mem-report write (default, and '-':\n"
                                        "standard output); its extension must fit the kind (.s for asm, .o\n"
                                        "for obj, ...: bpcc(1)); binary output never goes to a terminal"},
    {M_VERSION, "--version", OPT_FLAG, NULL, "bpcc's version, LLVM's, and the host CPU -march=native targets"},
    {0, NULL, OPT_FLAG, NULL, NULL},
};

/* The documentation (README.md, docs/, examples/): PREFIX/share/doc/bpcc for a bpcc
 * in PREFIX/bin (an installed tree, wherever DESTDIR put it), else the source tree (a
 * build tree), else where `make install` puts it. */
const char *drv_doc_dir(void) {
  static char dir[PATH_MAX + 32];
  char exe[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n > 0) {
    exe[n] = 0;
    char *slash = strrchr(exe, '/');
    if (slash) {
      *slash = 0;
      char *up = strrchr(exe, '/');
      if (up && !strcmp(up, "/bin")) {
        snprintf(dir, sizeof dir, "%.*s/share/doc/bpcc", (int)(up - exe), exe);
        if (access(dir, F_OK) == 0) return dir;
      }
    }
  }
  if (access(BPCC_SOURCE_DIR "/docs", F_OK) == 0) return BPCC_SOURCE_DIR;
  return BPCC_DOCDIR;
}

/* the --emit kinds under --emit's row */
static void emit_kinds(FILE *out, const DrvOption *row, int width) {
  if (row->id != M_EMIT) return;
  for (const DrvEmit *e = drv_emits; e->name; e++)
    fprintf(out, "  %-*s   %-10s %s\n", width, "", e->name, e->help);
}

static void usage(FILE *o) {
  fprintf(o,
          "usage: bpcc [options] FILE.bp\n"
          "       bpcc COMMAND [args...]\n"
          "\n"
          "bpcc compiles .bp neural-network programs: it checks them, derives the backward\n"
          "pass and compiles forward + backward + optimizer to native code.\n"
          "FILE may be '-' to read standard input; '--' ends the options.\n"
          "\n"
          "what to do (one of --check, --emit, --mem-report, -o NAME.so):\n");
  args_print_options(o, main_options, 18, emit_kinds);
  fprintf(o,
          "\n"
          "options (for every command where they change what it does; else an error):\n");
  args_usage(o);
  fprintf(o, "  -h, --help         this help (bpcc help COMMAND: a command's)\n");
  fprintf(o, "\ncommands:\n");
  for (const DrvCommand *c = drv_commands; c->name; c++) fprintf(o, "  %s\n", c->usage);
  fprintf(o, "\nexit status: 0 success, 1 any error (in the program, a file, or the command line)\n");
  fprintf(o, "documentation: man bpcc; %s (README.md, docs/*.md, examples/)\n", drv_doc_dir());
}

static const DrvCommand *find_command(const char *name) {
  for (const DrvCommand *c = drv_commands; c->name; c++)
    if (strcmp(name, c->name) == 0) return c;
  return NULL;
}

/* "unknown command 'trian'; did you mean 'train'?" */
static int unknown_command(const char *name) {
  DiagSuggest s = DIAG_SUGGEST_INIT;
  for (const DrvCommand *c = drv_commands; c->name; c++) diag_suggest(&s, name, c->name);
  if (s.best) return args_usage_error(NULL, "unknown command '%s'; did you mean '%s'?", name, s.best);
  char list[256] = "";
  for (const DrvCommand *c = drv_commands; c->name; c++)
    snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", c == drv_commands ? "" : ", ", c->name);
  return args_usage_error(NULL, "unknown command '%s' (commands: %s; or give a FILE.bp)", name, list);
}

/* bpcc help [COMMAND] */
static int cmd_help(int argc, char **argv) {
  if (argc == 1 || (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")))) {
    usage(stdout);
    return 0;
  }
  if (argc > 2) return args_usage_error("help", "help takes one command, got '%s' and '%s'", argv[1], argv[2]);
  const DrvCommand *c = find_command(argv[1]);
  if (!c) return unknown_command(argv[1]);
  char *args[] = {(char *)c->name, "--help", NULL};
  return c->run(2, args);
}

/* A word that is not an option, not a path and not an existing file: a command. */
static bool looks_like_command(const char *a) {
  if (!*a || strcmp(a, "-") == 0 || strchr(a, '.') || strchr(a, '/')) return false;
  return access(a, F_OK) != 0;
}

/* bpcc --version: bpcc's, the LLVM it compiles with, and the CPU -march=native means */
static int version(void) {
  CgHostInfo h;
  cg_host_info(&h);
  printf("bpcc %s\n", BPCC_VERSION);
  printf("LLVM %s, target %s\n", h.llvm, h.triple);
  char model[256] = "";
  FILE *f = fopen("/proc/cpuinfo", "r");
  char line[512];
  while (f && fgets(line, sizeof line, f)) {
    if (strncmp(line, "model name", 10) != 0) continue;
    const char *v = strchr(line, ':');
    if (v) snprintf(model, sizeof model, "%s", v + 1 + strspn(v + 1, " \t"));
    model[strcspn(model, "\n")] = 0;
    break;
  }
  if (f) fclose(f);
  printf("host CPU: %s%s(LLVM: %s)\n", model, *model ? " " : "", h.cpu);
  printf("  features: %s\n", *h.features ? h.features : "(no vector extensions)");
  printf("  -march=native (the default): %d f32 lane%s per vector\n", h.lanes, h.lanes == 1 ? "" : "s");
#ifdef BPCC_HAVE_MPI   /* docs/distributed.md */
  printf("MPI: %s (mpirun -np P bpcc train trains data-parallel)\n", bprt_dist_library());
#else
  printf("MPI: none (built without it: bpcc train runs as one process)\n");
#endif
  return fflush(stdout) == 0 ? 0 : 1;
}

/* Run the pipeline up to the stage an --emit kind (or --check) needs, and write what it
 * made, output of `kind` (outfile.c), to out_path (NULL, "-": standard output). */
static int run_emit(const char *path, const PipelineOptions *o, Stage needs, int (*emit)(Compilation *, FILE *),
                    const char *kind, const char *out_path) {
  Compilation c;
  pipeline_init(&c, path, o);
  bool ok = pipeline_run(&c, needs);
  int status = ok ? 0 : 1;
  bool to_stdout = !out_path || !strcmp(out_path, "-");
  /* the syntax tree is printed even when it has errors (on standard output: a file
   * named by -o is written only for a program without errors) */
  if (emit && (ok || (needs == STAGE_PARSE && c.program && to_stdout))) {
    OutFile out;
    const OutputKind *k = out_kind(kind);
    if (outfile_open(&out, to_stdout ? "-" : out_path, k->binary, k->what)) {
      status = emit(&c, out.f);
      if (status == 0 && ok) {
        if (!outfile_commit(&out)) status = 1;
      } else {
        outfile_abort(&out);
      }
    } else {
      status = 1;
    }
  }
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
  const DrvCommand *command = find_command(argv[1]);
  if (command) return command->run(argc - 1, argv + 1);

  PipelineOptions o;
  pipeline_options_default(&o);
  PipelineArgs pa;
  args_init(&pa, &o);
  bool check = false, mem_report = false;
  const DrvEmit *emit = NULL;
  const char *file = NULL, *out = NULL, *emit_arg = NULL;
  ArgParser p;
  args_parser_init(&p, NULL, main_options, &pa, argc, argv);
  const DrvOption *opt;
  const char *v;
  for (int k; (k = args_next(&p, &opt, &v)) != ARGS_END;) {
    if (k == ARGS_ERROR) return 1;
    if (k == ARGS_HELP) {
      usage(stdout);
      return 0;
    }
    if (k == ARGS_OPERAND) {
      if (file) return args_usage_error(NULL, "more than one input file ('%s' and '%s')", file, v);
      if (!p.operands_only && looks_like_command(v)) {
        if (find_command(v)) return args_usage_error(NULL, "the command goes first: bpcc %s ...", v);
        DiagSuggest s = DIAG_SUGGEST_INIT;
        for (const DrvCommand *c = drv_commands; c->name; c++) diag_suggest(&s, v, c->name);
        if (s.best || p.i == 1) return unknown_command(v);
      }
      file = v;
      continue;
    }
    switch (opt->id) {
    case M_VERSION:
      return version();
    case M_CHECK:
      check = true;
      break;
    case M_MEM_REPORT:
      mem_report = true;
      break;
    case M_OUTPUT:
      if (out) return args_usage_error(NULL, "-o given twice ('%s' and '%s')", out, v);
      out = v;
      break;
    case M_EMIT: {
      emit_arg = p.argv[p.i];
      emit = NULL;
      DiagSuggest s = DIAG_SUGGEST_INIT;
      for (const DrvEmit *e = drv_emits; e->name; e++) {
        if (strcmp(e->name, v) == 0) emit = e;
        diag_suggest(&s, v, e->name);
      }
      if (!emit) {
        char kinds[256] = "";
        for (const DrvEmit *e = drv_emits; e->name; e++)
          snprintf(kinds + strlen(kinds), sizeof kinds - strlen(kinds), "%s%s", e == drv_emits ? "" : ", ", e->name);
        if (s.best) return args_usage_error(NULL, "unknown --emit kind '%s'; did you mean '%s'? (%s)", v, s.best, kinds);
        return args_usage_error(NULL, "unknown --emit kind '%s' (%s)", v, kinds);
      }
      break;
    }
    }
  }
  int actions = (check ? 1 : 0) + (emit ? 1 : 0) + (mem_report ? 1 : 0);
  if (actions > 1)
    return args_usage_error(NULL, "%s", "--check, --emit and --mem-report exclude each other: give one");
  if (actions == 0 && !out && !o.print_after) {
    if (file && strcmp(file, "-") != 0 && !strstr(file, ".bp") && looks_like_command(file)) return unknown_command(file);
    return args_usage_error(NULL, "%s", "nothing to do: give --check, --emit=KIND, --mem-report or -o NAME.so with a FILE.bp");
  }
  if (!file) return args_usage_error(NULL, "%s", "no input file (use '-' for standard input)");

  /* where the output goes, checked before anything runs */
  const char *kind = check ? "check" : mem_report ? "mem-report" : emit ? emit->name : out ? "library" : NULL;
  if (kind && !out_check(kind, out, check ? "--check" : mem_report ? "--mem-report" : emit ? emit_arg : "-o without --emit"))
    return 1;

  CommandInfo cmd;
  if (mem_report) cmd = (CommandInfo){"--mem-report", STAGE_MEMORY, true, true, false};
  else if (check) cmd = (CommandInfo){"--check", STAGE_CHECK, false, false, false};
  else if (emit) cmd = (CommandInfo){emit_arg, emit->needs, emit->needs >= STAGE_CANONICALIZE, false, false};
  else if (out) cmd = (CommandInfo){"-o", STAGE_MACHINE, true, false, false};
  else cmd = (CommandInfo){"--print-after", STAGE_LLVM, true, false, false};   /* alone: runs up to its stage */
  int upto = !actions && !out ? (strcmp(o.print_after, "all") == 0 ? STAGE_LLVM : pipeline_stage_lookup(o.print_after)) : 0;
  if (!actions && !out) cmd.last = (Stage)upto;
  if (!args_check(&pa, &cmd)) return 1;

  /* line tables map the library's and the listing's code to the .bp lines */
  bool library = out && !actions;
  if (library || (emit && emit->needs >= STAGE_LLVM)) o.codegen.debug_info = true;
  if (library) {
    o.output = out;
    return cmd_write_library(file, &o);
  }
  if (mem_report) return cmd_mem_report(file, &o, out);
  if (check) return run_emit(file, &o, STAGE_CHECK, emit_check, "check", out);
  if (emit) return run_emit(file, &o, emit->needs, emit->emit, emit->name, out);
  return run_emit(file, &o, (Stage)upto, NULL, NULL, NULL);
}
