/* tests/passes/ir_opt.c — the pass tests' driver (LLVM's opt in miniature): read IR
 * text, run the named passes one by one, print the result. The golden tests
 * (tests/passes/golden) run it and pipe its output to FileCheck (see run_filecheck.sh).
 *
 *   ir_opt [--passes=canonicalize,autodiff,simplify,precision-bf16] [-fno-softmax-xent]
 *          [-fno-log-softmax] [-fno-fuse-attention] FILE.ir
 *
 * Without --passes it runs bpcc's pipeline (driver/pipeline.c) from the lowered IR to
 * the gradient, as every command does. Exit status 1 on any error. */
#include "ir/ir.h"
#include "passes/passes.h"
#include "tests/compile.h"

/* The precision pass at each low type (passes/precision.c). */
static Func *precision_bf16(Func *f, const PassOptions *opt) {
  (void)opt;
  return pass_precision(f, DT_BF16);
}
static Func *precision_f16(Func *f, const PassOptions *opt) {
  (void)opt;
  return pass_precision(f, DT_F16);
}

/* The passes a golden test may name, each run alone on the function. */
static const struct {
  const char *name;
  Func *(*run)(Func *f, const PassOptions *opt);
} passes_by_name[] = {
    {"canonicalize", pass_canonicalize},
    {"autodiff", pass_autodiff},
    {"simplify", pass_simplify},
    {"precision-bf16", precision_bf16},
    {"precision-f16", precision_f16},
};

#include <stdlib.h>
#include <string.h>

static char *slurp(const char *path, size_t *len) {
  FILE *fp = fopen(path, "rb");
  if (!fp) return NULL;
  size_t cap = 4096, n = 0, k;
  char *s = bp_xmalloc(cap);
  while ((k = fread(s + n, 1, cap - n - 1, fp)) > 0) {
    n += k;
    if (n + 1 == cap) s = bp_xrealloc(s, cap *= 2);
  }
  fclose(fp);
  s[n] = 0;
  *len = n;
  return s;
}

int main(int argc, char **argv) {
  PassOptions opt;
  pass_options_default(&opt);
  opt.verify = true;
  const char *passes = NULL, *file = NULL;
  for (int i = 1; i < argc; i++) {
    if (strncmp(argv[i], "--passes=", 9) == 0) passes = argv[i] + 9;
    else if (strcmp(argv[i], "-fno-softmax-xent") == 0) opt.softmax_xent = false;
    else if (strcmp(argv[i], "-fno-log-softmax") == 0) opt.log_softmax = false;
    else if (strcmp(argv[i], "-fno-fuse-attention") == 0) opt.fuse_attention = false;
    else if (argv[i][0] != '-' && !file) file = argv[i];
    else {
      fprintf(stderr, "ir_opt: unknown argument '%s'\n", argv[i]);
      return 2;
    }
  }
  if (!file) {
    fprintf(stderr, "usage: ir_opt [--passes=a,b] [-fno-softmax-xent] FILE.ir\n");
    return 2;
  }
  size_t len;
  char *text = slurp(file, &len);
  if (!text) {
    fprintf(stderr, "ir_opt: cannot read %s\n", file);
    return 1;
  }
  Module *m = ir_parse(file, text, len);
  bp_free(text);
  if (!m || m->nfuncs < 1) return 1;
  int status = 0;
  int nfuncs = m->nfuncs;   /* the pipeline adds each function's gradient to the module */
  for (int fi = 0; fi < nfuncs; fi++) {
    Func *f = m->funcs[fi];
    if (!ir_verify(f, "parsing")) {   /* passes expect verified input */
      status = 1;
      continue;
    }
    if (!passes) {
      f = test_grad(f, &opt);
    } else {
      char buf[256];
      snprintf(buf, sizeof buf, "%s", passes);
      for (char *tok = strtok(buf, ","); tok && f; tok = strtok(NULL, ",")) {
        int k = -1;
        for (int q = 0; q < (int)(sizeof passes_by_name / sizeof passes_by_name[0]); q++)
          if (!strcmp(passes_by_name[q].name, tok)) k = q;
        if (k < 0) {
          fprintf(stderr, "ir_opt: unknown pass '%s'\n", tok);
          return 2;
        }
        f = passes_by_name[k].run(f, &opt);
        if (f && !ir_verify(f, tok)) f = NULL;
      }
    }
    if (!f) {
      status = 1;
      continue;
    }
    ir_print_func(stdout, f);
  }
  ir_module_free(m);
  return status;
}
