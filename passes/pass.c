/* passes/pass.c — what every pass shares: the options, and the bookkeeping of
 * replacing a function by its rewritten copy.
 *
 * The order the passes run in, the verifier after each and --print-after are the
 * pipeline's (driver/pipeline.c), the one place that runs them. Passes return a fresh
 * Func; pass_func_replace puts it in the old one's slot of the module so that a module
 * always holds one function per model. */
#include "passes/passes.h"

#include <string.h>

void pass_options_default(PassOptions *opt) {
  memset(opt, 0, sizeof *opt);
  opt->softmax_xent = true;
  opt->log_softmax = true;
  opt->fuse_attention = true;
#ifdef BPCC_DEBUG
  opt->verify = true;
#endif
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
