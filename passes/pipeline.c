/* passes/pipeline.c — the pipeline as a table, and the runner around each pass.
 *
 * The whole pipeline is the table below, read top to bottom. The runner is the one
 * place that verifies after a pass (debug builds: BPCC_DEBUG, or opt->verify) and
 * prints after a named pass (--print-after=NAME, LLVM's -print-after), so no pass
 * repeats either. Passes return a fresh Func; pass_func_replace puts it in the old one's
 * slot of the module so that a module always holds one function per model. */
#include "passes/passes.h"

#include <string.h>

const PassInfo pass_pipeline[] = {
    {"canonicalize", pass_canonicalize, "simplify before autodiff (log_softmax, softmax-CE rule)"},
    {"autodiff", pass_autodiff, "reverse mode: loss and grad of every parameter"},
    {"simplify", pass_simplify, "CSE, DCE, constant folding, algebraic identities"},
};
const int pass_pipeline_count = (int)(sizeof pass_pipeline / sizeof pass_pipeline[0]);

void pass_options_default(PassOptions *opt) {
  memset(opt, 0, sizeof *opt);
  opt->softmax_xent = true;
  opt->log_softmax = true;
#ifdef BPCC_DEBUG
  opt->verify = true;
#endif
}

const PassInfo *pass_lookup(const char *name) {
  for (int i = 0; i < pass_pipeline_count; i++)
    if (strcmp(pass_pipeline[i].name, name) == 0) return &pass_pipeline[i];
  return NULL;
}

Func *pass_run(const PassInfo *p, Func *f, const PassOptions *opt) {
  Func *g = p->run(f, opt);
  if (!g) return NULL;
  if (opt->verify && !ir_verify(g, p->name))
    ir_die("the IR is invalid after pass %s (see the verifier's messages above)", p->name);
  if (opt->print_after && (strcmp(opt->print_after, p->name) == 0 || strcmp(opt->print_after, "all") == 0)) {
    FILE *out = opt->print_out ? opt->print_out : stdout;
    fprintf(out, "# IR after %s\n", p->name);
    ir_print_func(out, g);
  }
  return g;
}

Func *pass_run_pipeline(Func *f, const PassOptions *opt) {
  for (int i = 0; i < pass_pipeline_count && f; i++) f = pass_run(&pass_pipeline[i], f, opt);
  return f;
}

/* ------------------------------------------------------------------ Func bookkeeping */

Func *pass_func_new_like(Func *f) {
  Func *g = ir_func_new(f->mod, f->name);
  g->cse = true;
  return g;
}

static int func_slot(Module *m, Func *f) {
  for (int i = 0; i < m->nfuncs; i++)
    if (m->funcs[i] == f) return i;
  return -1;
}

static void func_unlink(Module *m, int slot) {
  memmove(&m->funcs[slot], &m->funcs[slot + 1], (size_t)(m->nfuncs - slot - 1) * sizeof *m->funcs);
  m->nfuncs--;
}

void pass_func_drop(Func *f) {
  int slot = func_slot(f->mod, f);
  if (slot >= 0) func_unlink(f->mod, slot);
  bp_free(f->insts);
  bp_free(f->hash);
  f->insts = NULL;
  f->hash = NULL;
  f->ninsts = f->cap = f->hashcap = 0;
}

Func *pass_func_replace(Func *old, Func *repl) {
  if (old == repl) return repl;
  Module *m = old->mod;
  int so = func_slot(m, old), sr = func_slot(m, repl);
  if (so < 0 || sr < 0) ir_die("pass_func_replace: @%s is not in its module", so < 0 ? old->name : repl->name);
  m->funcs[so] = repl;   /* repl takes old's place; its own slot (appended later) goes */
  func_unlink(m, sr);
  bp_free(old->insts);
  bp_free(old->hash);
  old->insts = NULL;
  old->hash = NULL;
  old->ninsts = old->cap = old->hashcap = 0;
  return repl;
}
