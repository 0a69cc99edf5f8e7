/* driver/main.c — `bpcc`: option parsing and dispatch.
 *
 *   bpcc --help | --version
 *   bpcc --check [--model NAME] FILE.bp          check; print each model's summary
 *   bpcc --emit=KIND [--model NAME] FILE.bp      print an intermediate form (drv_emits)
 *   bpcc --mem-report [--batch N] FILE.bp        the memory plan (cmd_memreport.c)
 *   bpcc COMMAND ARGS...                         a subcommand (drv_commands)
 *
 * FILE may be `-` for standard input (named <stdin> in diagnostics). Everything that
 * reads a program goes through drv_compile (pipeline.c). Exit status: 0 on success,
 * 1 on any error, usage errors included. */
#include "driver/driver.h"

#include <string.h>

/* ------------------------------------------------------------------ emit kinds */

static int emit_tokens(DrvCompilation *c, FILE *out) {
  FeToken *toks;
  int errors = diag_error_count();
  int n = fe_tokenize(c->arena, c->file, &toks);
  fe_dump_tokens(out, toks, n);
  return diag_error_count() == errors ? 0 : 1;
}

static int emit_ast(DrvCompilation *c, FILE *out) {
  fe_dump_ast(out, c->program);
  return 0;
}

static int emit_ir(DrvCompilation *c, FILE *out) {
  ir_print_func(out, c->func);
  return 0;
}

const DrvEmit drv_emits[] = {
    {"tokens", DRV_READ, emit_tokens, "the tokens with their line:col ranges"},
    {"ast", DRV_PARSE, emit_ast, "the syntax tree (printed even when it has errors)"},
    {"ir", DRV_LOWER, emit_ir, "the forward IR of the model"},
    {"grad-ir", DRV_LOWER, emit_grad_ir, "forward + backward IR after autodiff and simplification"},
    {"opt-ir", DRV_LOWER, emit_opt_ir, "the gradient IR with the kernels it compiles to (fusion groups)"},
    {"dot", DRV_LOWER, emit_dot, "Graphviz: forward and backward, kernels as clusters, recomputed values dashed"},
    {"llvm", DRV_LOWER, drv_emit_llvm, "the optimized LLVM IR of forward, grad and step"},
    {"asm", DRV_LOWER, drv_emit_asm, "their assembly (-O0..-O3, -march=CPU apply)"},
    {"obj", DRV_LOWER, drv_emit_obj, "an ELF object file"},
    {NULL, DRV_READ, NULL, NULL},
};

/* ------------------------------------------------------------------ subcommands */

const DrvCommand drv_commands[] = {
    {"train", "train FILE.bp --data SPEC [options]   JIT-compile and train (bpcc train --help)", cmd_train},
    {"eval", "eval FILE.bp --weights PATH --data SPEC   loss and accuracy of trained weights", cmd_eval},
    {"gradcheck", "gradcheck FILE.bp [--dtype f64|f32] [--batch N] [--seed S]   derived gradients vs finite differences", cmd_gradcheck},
    {"bench", "bench FILE.bp [--steps N] [--threads N] [--gemm]   time the compiled training step (bench/run.sh)", cmd_bench},
    {NULL, NULL, NULL},
};

/* ------------------------------------------------------------------ options */

static void usage(FILE *o) {
  fprintf(o,
          "usage: bpcc [options] FILE.bp\n"
          "       bpcc COMMAND [args...]\n"
          "\n"
          "bpcc compiles .bp neural-network programs: it checks them, derives the backward\n"
          "pass and compiles forward + backward + optimizer to native code.\n"
          "FILE may be '-' to read standard input.\n"
          "\n"
          "options:\n"
          "  --check            check the program and print each model's summary\n"
          "  --emit=KIND        print an intermediate form; KIND is one of:\n");
  for (const DrvEmit *e = drv_emits; e->name; e++) fprintf(o, "                       %-10s %s\n", e->name, e->help);
  fprintf(o,
          "  -o NAME.so         write the model as a shared library with a C ABI, and NAME.h\n"
          "                     beside it (docs/abi.md); -march=x86-64-v3 for a portable one\n"
          "  --model=NAME       the model to use when the file has several (default: the first)\n"
          "  --print-after=PASS print the IR after a pass (canonicalize, autodiff, simplify, all)\n"
          "  -fno-softmax-xent  differentiate cross-entropy of a softmax through log and softmax\n"
          "  --mem-report       print the memory plan of a training step: every tensor, totals\n"
          "  --batch N          the batch of --mem-report (default: the train block's)\n"
          "  --watch            --mem-report of the step as `bpcc train --watch` compiles it\n"
          "  --checkpoint=MODE  none, sqrt or auto: recompute activations in backward\n"
          "                     (--mem-report, --emit=grad-ir, --emit=dot)\n"
          "  --mem-budget SIZE  the most bytes a step may use (e.g. 64MiB, 1GB); implies auto\n"
          "  -O0 .. -O3         codegen optimization level (default -O3)\n"
          "  -march=CPU         native (default), x86-64, x86-64-v2, x86-64-v3 or x86-64-v4\n"
          "  -h, --help         this help\n"
          "  --version          the version\n");
  if (drv_commands[0].name) {
    fprintf(o, "\ncommands:\n");
    for (const DrvCommand *c = drv_commands; c->name; c++) fprintf(o, "  %s\n", c->usage);
  }
  fprintf(o, "\nexit status: 0 success, 1 any error (in the program, a file, or the command line)\n");
}

static int usage_error(const char *fmt, const char *arg) {
  fprintf(stderr, "bpcc: error: ");
  fprintf(stderr, fmt, arg);
  fprintf(stderr, "\nTry 'bpcc --help' for more information.\n");
  return 1;
}

static int run_check(const char *path, const char *model) {
  DrvCompilation c;
  bool ok = drv_compile(&c, path, DRV_CHECK, model);
  if (ok) {
    for (int i = 0; i < c.unit->nmodels; i++) {
      if (model && c.unit->models[i] != c.model) continue;
      if (i && !model) fputc('\n', stdout);
      fe_print_summary(stdout, c.unit->models[i]);
    }
  }
  drv_release(&c);
  return ok ? 0 : 1;
}

static int run_emit(const DrvEmit *e, const char *path, const char *model) {
  DrvCompilation c;
  bool ok = drv_compile(&c, path, e->needs, model);
  int status = 1;
  if (ok || e->needs == DRV_PARSE) {
    if (c.file >= 0 && (e->needs != DRV_PARSE || c.program)) status = e->emit(&c, stdout);
    if (!ok) status = 1;
  }
  drv_release(&c);
  return status;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    usage(stderr);
    return 1;
  }
  for (const DrvCommand *c = drv_commands; c->name; c++)
    if (strcmp(argv[1], c->name) == 0) return c->run(argc - 1, argv + 1);

  bool check = false;
  const DrvEmit *emit = NULL;
  const char *file = NULL, *model = NULL, *out = NULL;
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
    if (strcmp(a, "--check") == 0) {
      check = true;
    } else if (strncmp(a, "--emit=", 7) == 0) {
      emit = NULL;
      for (const DrvEmit *e = drv_emits; e->name; e++)
        if (strcmp(e->name, a + 7) == 0) emit = e;
      if (!emit) return usage_error("unknown --emit kind '%s' (see bpcc --help)", a + 7);
    } else if (strcmp(a, "--emit") == 0) {
      return usage_error("%s needs a kind, as in --emit=ast", a);
    } else if (a[0] == '-' && a[1] == 'O' && a[2] >= '0' && a[2] <= '3' && a[3] == 0) {
      drv_codegen.opt_level = a[2] - '0';
    } else if (strncmp(a, "-march=", 7) == 0) {
      drv_codegen.march = a + 7;
    } else if (strcmp(a, "-o") == 0) {
      if (i + 1 >= argc) return usage_error("%s needs a path, as in -o model.so", a);
      out = argv[++i];
    } else if (strncmp(a, "--model=", 8) == 0) {
      model = a + 8;
    } else if (strcmp(a, "--model") == 0) {
      if (i + 1 >= argc) return usage_error("%s needs a model name", a);
      model = argv[++i];
    } else if (drv_pass_flag(a, argv, argc, &i)) {
      continue;   /* -fno-softmax-xent, --print-after=PASS, ... (cmd_gradcheck.c) */
    } else if (drv_mem_flag(a, argv, argc, &i)) {
      continue;   /* --mem-report, --checkpoint=..., --mem-budget, --batch (cmd_memreport.c) */
    } else if (a[0] == '-' && a[1] != 0) {
      return usage_error("unknown option '%s'", a);
    } else if (file) {
      return usage_error("more than one input file ('%s')", a);
    } else {
      file = a;
    }
  }
  if (out) {   /* bpcc FILE.bp -o NAME.so (cmd_aot.c) */
    if (check || emit) return usage_error("%s", "-o writes a shared library; it cannot be combined with --check or --emit");
    if (!file) return usage_error("%s", "no input file (use '-' for standard input)");
    return drv_write_library(file, model, out);
  }
  if (drv_mem.report) {   /* bpcc --mem-report FILE.bp (cmd_memreport.c) */
    if (check || emit) return usage_error("%s", "--mem-report cannot be combined with --check or --emit");
    if (!file) return usage_error("%s", "no input file (use '-' for standard input)");
    return drv_mem_report(file, model);
  }
  if (!check && !emit) {
    if (file) {
      for (const DrvCommand *c = drv_commands; c->name; c++)
        if (strcmp(file, c->name) == 0) return c->run(argc - 1, argv + 1);
      if (strstr(file, ".bp") == NULL && strcmp(file, "-") != 0)
        return usage_error("unknown command '%s' (see bpcc --help)", file);
    }
    return usage_error("%s", "nothing to do: give --check or --emit=KIND with a FILE.bp");
  }
  if (check && emit) return usage_error("%s", "--check and --emit cannot be combined");
  if (!file) return usage_error("%s", "no input file (use '-' for standard input)");
  return check ? run_check(file, model) : run_emit(emit, file, model);
}
