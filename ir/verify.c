/* ir/verify.c — the verifier: runs after every pass in debug builds.
 *
 * A pass that builds through ir_emit cannot make an ill-typed instruction, but passes
 * also copy, renumber and patch instruction arrays, and the parser reads text written
 * by hand. The verifier re-checks a whole function against the invariants every other
 * stage relies on, and reports every problem it finds, not just the first:
 *   1. each op is known and has the op table's number of operands;
 *   2. operands are defined before use (topological order) and are not sinks, so a
 *      sink has no users;
 *   3. each instruction's type is the one ir_infer_type gives it (leaves: a legal type);
 *   4. names: inputs, params and outputs have one; params and outputs are unique by
 *      name, inputs by argument index;
 *   5. at most one loss; each grad names a param, at most once;
 *   6. `from` (the forward instruction of a derived one) is an instruction of f;
 *   7. the extras of a multi-result op (attention, attention_bwd) follow it directly,
 *      one instruction per result index: the producer's kernel writes them, so the
 *      memory plan gives their buffers the producer's start and the kernel plan puts
 *      them in the producer's kernel (and recompute never clones any of them). */
#include "ir/ir.h"

#include <stdarg.h>
#include <string.h>

typedef struct {
  Func *f;
  const char *what;
  int problems;
} Verifier;

/* "@f (after simplify): %5 = matmul %1, %2 (mlp.bp:3:18): message" */
static void problem(Verifier *v, int32_t i, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void problem(Verifier *v, int32_t i, const char *fmt, ...) {
  const Inst *in = &v->f->insts[i];
  v->problems++;
  fprintf(stderr, "bpcc: verifier%s%s%s: @%s: ", v->what ? " (after " : "", v->what ? v->what : "",
          v->what ? ")" : "", v->f->name ? v->f->name : "?");
  const char *op = in->op < OP__COUNT ? ir_ops[in->op].name : "?";
  if (in->op < OP__COUNT && (ir_ops[in->op].flags & OPF_SINK)) fprintf(stderr, "%s", op);
  else fprintf(stderr, "%%%d = %s", (int)i, op);
  for (int k = 0; k < in->nargs && k < IR_MAX_ARGS; k++) fprintf(stderr, "%s%%%d", k ? ", " : " ", (int)in->args[k]);
  if (in->loc.file >= 0) fprintf(stderr, " (%s:%d:%d)", diag_file_name(in->loc.file), (int)in->loc.line, (int)in->loc.col);
  fprintf(stderr, ": ");
  va_list ap;
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
}

/* The first instruction of each (op, name) and (op, integer): params and outputs by
 * name, inputs by argument index, grads by parameter. Open addressing, sized once for
 * the whole function: checking each instruction against every earlier one was
 * quadratic (100,000 instructions: minutes). */
typedef struct {
  uint8_t op;
  const char *name;           /* NULL: keyed by num */
  int64_t num;
  int32_t first;              /* -1: an empty slot */
} Seen;

static uint64_t seen_hash(int op, const char *name, int64_t num) {
  uint64_t h = 1469598103934665603u ^ (uint64_t)op;
  if (name)
    for (const char *p = name; *p; p++) h = (h ^ (unsigned char)*p) * 1099511628211u;
  else
    h = (h ^ (uint64_t)num) * 1099511628211u;
  return h ^ (h >> 29);
}

/* The first instruction with this key, or -1 after recording i as it. */
static int32_t seen_first(Seen *tab, size_t cap, int op, const char *name, int64_t num, int32_t i) {
  for (size_t k = seen_hash(op, name, num) & (cap - 1);; k = (k + 1) & (cap - 1)) {
    Seen *e = &tab[k];
    if (e->first < 0) {
      *e = (Seen){(uint8_t)op, name, num, i};
      return -1;
    }
    if (e->op == op && (name ? e->name && strcmp(e->name, name) == 0 : !e->name && e->num == num)) return e->first;
  }
}

bool ir_verify(Func *f, const char *what) {
  Verifier v = {f, what, 0};
  char err[256], s1[96], s2[96];
  int32_t loss = -1;
  size_t cap = 16;
  while (cap < 2 * (size_t)f->ninsts + 2) cap *= 2;
  Seen *seen = bp_xmalloc(cap * sizeof *seen);
  for (size_t k = 0; k < cap; k++) seen[k].first = -1;
  for (int32_t i = 0; i < f->ninsts; i++) {
    const Inst *in = &f->insts[i];
    /* 1. op and arity */
    if (in->op >= OP__COUNT) {
      problem(&v, i, "unknown op %u", (unsigned)in->op);
      continue;
    }
    const OpInfo *info = &ir_ops[in->op];
    if (in->nargs > IR_MAX_ARGS || (info->nargs >= 0 && in->nargs != info->nargs)) {
      problem(&v, i, "%s takes %d operands, has %d", info->name, info->nargs, in->nargs);
      continue;
    }
    /* 2. operands before use, never a sink */
    bool args_ok = true;
    for (int k = 0; k < in->nargs; k++) {
      int32_t a = in->args[k];
      if (a < 0 || a >= i) {
        problem(&v, i, "operand %d is %%%d, which is not defined before it", k, (int)a);
        args_ok = false;
      } else if (f->insts[a].op < OP__COUNT && (ir_ops[f->insts[a].op].flags & OPF_SINK)) {
        problem(&v, i, "operand %d is %%%d, a %s sink, which has no value", k, (int)a, ir_ops[f->insts[a].op].name);
        args_ok = false;
      }
    }
    if (!args_ok) continue;
    /* 3. the type is the inferred one */
    if ((info->flags & OPF_SINK) && in->type != TYPE_VOID) problem(&v, i, "a sink must have no type");
    TypeId t = ir_infer_type(f, in, err, sizeof err);
    if (err[0]) {
      problem(&v, i, "%s", err);
    } else if (!(info->flags & OPF_SINK) && t != in->type) {
      if (in->type >= 0 && in->type < f->mod->ntypes)
        ir_type_str(ir_type_get(f->mod, in->type), s1, sizeof s1);
      else
        snprintf(s1, sizeof s1, "type #%d", (int)in->type);
      ir_type_str(ir_type_get(f->mod, t), s2, sizeof s2);
      problem(&v, i, "has type %s, but its operands give %s", s1, s2);
    }
    /* 4. names */
    if ((in->op == OP_INPUT || in->op == OP_PARAM || in->op == OP_BUFFER || in->op == OP_OUTPUT) && (!in->name || !in->name[0]))
      problem(&v, i, "%s needs a name", info->name);
    int32_t j;
    if (in->op == OP_PARAM && in->name && (j = seen_first(seen, cap, in->op, in->name, 0, i)) >= 0)
      problem(&v, i, "parameter name \"%s\" is already used by %%%d", in->name, (int)j);
    if (in->op == OP_OUTPUT && in->name && seen_first(seen, cap, in->op, in->name, 0, i) >= 0)
      problem(&v, i, "output name \"%s\" is already used by an earlier output", in->name);
    if (in->op == OP_INPUT && (j = seen_first(seen, cap, in->op, NULL, in->iattr[0], i)) >= 0)
      problem(&v, i, "input index %lld is already used by %%%d", (long long)in->iattr[0], (int)j);
    if (in->op == OP_BUFFER && in->name && (j = seen_first(seen, cap, in->op, in->name, 0, i)) >= 0)
      problem(&v, i, "buffer name \"%s\" is already used by %%%d", in->name, (int)j);
    if (in->op == OP_BUFFER && !(in->iattr[0] == INIT_ZEROS || in->iattr[0] == INIT_ONES || in->iattr[0] == INIT_CONSTANT))
      problem(&v, i, "a buffer is initialized by zeros, ones or constant(v)");
    if (in->op == OP_ASSIGN && seen_first(seen, cap, in->op, NULL, in->args[0], i) >= 0)
      problem(&v, i, "buffer %%%d is already assigned", (int)in->args[0]);
    if (in->op == OP_GRAD && seen_first(seen, cap, in->op, NULL, in->args[0], i) >= 0)
      problem(&v, i, "parameter %%%d already has a grad", (int)in->args[0]);
    /* 5. one loss; grads name params (ir_infer_type checked the param) */
    if (in->op == OP_LOSS) {
      if (loss >= 0) problem(&v, i, "a second loss; the first is instruction %d", (int)loss);
      else loss = i;
    }
    /* 7. extras right after their producer (only other extras of it in between), each
     * result once (ir_infer_type checked the producer and the index) */
    if (in->op == OP_EXTRA && !err[0]) {
      int32_t p = in->args[0];
      for (int32_t k = p + 1; k < i; k++)
        if (f->insts[k].op != OP_EXTRA || f->insts[k].args[0] != p) {
          problem(&v, i, "an extra must follow its producer %%%d directly (after its other extras); %%%d = %s is in "
                  "between", (int)p, (int)k, f->insts[k].op < OP__COUNT ? ir_ops[f->insts[k].op].name : "?");
          break;
        }
      if ((j = seen_first(seen, cap, in->op, NULL, (int64_t)p * 8 + in->iattr[0], i)) >= 0)
        problem(&v, i, "result %lld of %%%d is already %%%d", (long long)in->iattr[0], (int)p, (int)j);
    }
    /* 6. from */
    if (in->from < -1 || in->from >= f->ninsts)
      problem(&v, i, "derived from %%%d, which is not an instruction of @%s", (int)in->from, f->name);
  }
  bp_free(seen);
  return v.problems == 0;
}
