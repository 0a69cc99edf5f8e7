/* frontend/ast.c — AST constructors, number literals and the --emit dumps.
 *
 * The constructors are where nesting is bounded: every Expr records its depth, and one
 * that would nest deeper than FE_MAX_EXPR_DEPTH is reported once (at the innermost
 * offending node) and replaced by an error node that its parents absorb silently. So no
 * later stage recurses deeper than that on hostile input (10,000 parentheses, a
 * 100,000-character chain of additions). */
#include "frontend/frontend.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static Expr *new_expr(Arena *a, ExprKind k, SrcLoc loc) {
  Expr *e = arena_alloc(a, sizeof *e);
  e->kind = k;
  e->loc = loc;
  e->depth = 1;
  return e;
}

/* An error node that stands for "too deep": parents return it unchanged. */
static bool too_deep(const Expr *e) { return e && e->kind == EX_ERROR && e->depth > FE_MAX_EXPR_DEPTH; }

static Expr *limit(Arena *a, Expr *e) {
  if (e->depth <= FE_MAX_EXPR_DEPTH) return e;
  diag_error(e->loc, "expression nested too deeply (more than %d levels)", FE_MAX_EXPR_DEPTH);
  Expr *err = new_expr(a, EX_ERROR, e->loc);
  err->depth = FE_MAX_EXPR_DEPTH + 1;
  return err;
}

bool fe_parse_number(const char *text, double *out, bool *is_int, char *err, size_t errlen) {
  *is_int = strpbrk(text, ".eE") == NULL;
  *out = 0;
  if (*is_int) {
    errno = 0;
    char *end;
    long long v = strtoll(text, &end, 10);
    if (errno == ERANGE || *end) {
      snprintf(err, errlen, "integer literal '%.40s%s' is too large", text, strlen(text) > 40 ? "..." : "");
      return false;
    }
    *out = (double)v;
    return true;
  }
  errno = 0;
  char *end;
  double v = strtod(text, &end);
  if (*end) {
    snprintf(err, errlen, "invalid number literal '%.40s'", text);
    return false;
  }
  /* strtod sets ERANGE for overflow (inf) and for underflow (0 or a denormal). Only
   * overflow is an error; a number too small for the type it ends up in becomes a
   * denormal or 0, as in C and NumPy. Whether it fits f32 (FLT_MAX) is checked where it
   * becomes an f32 tensor (sema.c), since f64 models may hold more. */
  if (isinf(v)) {
    snprintf(err, errlen, "number literal '%.40s%s' is out of range", text, strlen(text) > 40 ? "..." : "");
    return false;
  }
  *out = v;
  return true;
}

Expr *fe_expr_number(Arena *a, const char *text, SrcLoc loc) {
  Expr *e = new_expr(a, EX_NUMBER, loc);
  char err[160];
  e->text = text;
  if (!fe_parse_number(text, &e->num, &e->is_int, err, sizeof err)) e->kind = EX_ERROR;
  return e;
}

Expr *fe_expr_shape(Arena *a, DimAst *dims, int ndims, SrcLoc loc) {
  Expr *e = new_expr(a, EX_SHAPE, loc);
  e->dims = dims;
  e->ndims = ndims;
  return e;
}

Expr *fe_expr_bool(Arena *a, bool value, SrcLoc loc) {
  Expr *e = new_expr(a, EX_BOOL, loc);
  e->num = value ? 1 : 0;
  e->text = value ? "true" : "false";
  return e;
}

Expr *fe_expr_name(Arena *a, const char *name, SrcLoc loc) {
  Expr *e = new_expr(a, EX_NAME, loc);
  e->text = name;
  return e;
}

Expr *fe_expr_error(Arena *a, SrcLoc loc) { return new_expr(a, EX_ERROR, loc); }

Expr *fe_expr_neg(Arena *a, Expr *x, SrcLoc loc) {
  if (too_deep(x)) return x;
  Expr *e = new_expr(a, EX_NEG, loc);
  e->lhs = x;
  e->depth = x->depth + 1;
  return limit(a, e);
}

Expr *fe_expr_binary(Arena *a, int op, Expr *l, Expr *r, SrcLoc loc) {
  if (too_deep(l)) return l;
  if (too_deep(r)) return r;
  Expr *e = new_expr(a, EX_BINARY, loc);
  e->op = op;
  e->lhs = l;
  e->rhs = r;
  e->depth = (l->depth > r->depth ? l->depth : r->depth) + 1;
  return limit(a, e);
}

Expr *fe_expr_call(Arena *a, const char *name, SrcLoc name_loc, Arg *args, SrcLoc loc) {
  int depth = 0, n = 0;
  for (Arg *g = args; g; g = g->next) {
    if (too_deep(g->value)) return g->value;
    if (g->value->depth > depth) depth = g->value->depth;
    n++;
  }
  Expr *e = new_expr(a, EX_CALL, loc);
  e->text = name;
  e->name_loc = name_loc;
  e->args = args;
  e->nargs = n;
  e->depth = depth + 1;
  return limit(a, e);
}

Expr *fe_expr_string(Arena *a, const char *text, SrcLoc loc) {
  Expr *e = new_expr(a, EX_STRING, loc);
  e->text = text;
  return e;
}

Expr *fe_expr_paren(Expr *x, SrcLoc loc) {
  if (too_deep(x)) return x;
  x->loc = loc;
  x->depth++;
  if (x->depth > FE_MAX_EXPR_DEPTH) {
    diag_error(loc, "expression nested too deeply (more than %d levels)", FE_MAX_EXPR_DEPTH);
    x->kind = EX_ERROR;
  }
  return x;
}

/* ------------------------------------------------------------------ dumps */

static void dump_expr(FILE *o, const Expr *e) {
  switch (e->kind) {
  case EX_ERROR: fputs("<error>", o); break;
  case EX_NUMBER: fputs(e->text, o); break;
  case EX_BOOL: fputs(e->text, o); break;
  case EX_NAME: fputs(e->text, o); break;
  case EX_STRING: fprintf(o, "\"%s\"", e->text); break;
  case EX_NEG: fputs("(neg ", o); dump_expr(o, e->lhs); fputc(')', o); break;
  case EX_BINARY:
    fprintf(o, "(%c ", e->op);
    dump_expr(o, e->lhs);
    fputc(' ', o);
    dump_expr(o, e->rhs);
    fputc(')', o);
    break;
  case EX_CALL:
    fprintf(o, "(call %s", e->text);
    for (const Arg *g = e->args; g; g = g->next) {
      fputc(' ', o);
      if (g->name) fprintf(o, "%s=", g->name);
      dump_expr(o, g->value);
    }
    fputc(')', o);
    break;
  case EX_SHAPE:
    fputs("(shape", o);
    for (int i = 0; i < e->ndims; i++) {
      if (e->dims[i].name) fprintf(o, " %s", e->dims[i].name);
      else if (e->dims[i].expr && e->dims[i].expr->kind != EX_NUMBER) fputc(' ', o), dump_expr(o, e->dims[i].expr);
      else if (e->dims[i].expr) fprintf(o, " %s", e->dims[i].expr->text);
      else fprintf(o, " %lld", (long long)e->dims[i].value);
    }
    fputc(')', o);
    break;
  }
}

static void dump_type(FILE *o, const TypeAst *t) {
  if (t->kind == TY_INT) { fputs("int", o); return; }
  if (t->kind == TY_FLOAT) { fputs("float", o); return; }
  if (t->dtype) fputs(t->dtype, o);
  if (t->rank < 0) return;
  fputc('[', o);
  for (int i = 0; i < t->rank; i++) {
    if (i) fputc(',', o);
    if (t->dims[i].name) fputs(t->dims[i].name, o);
    else fprintf(o, "%lld", (long long)t->dims[i].value);
  }
  fputc(']', o);
}

static void dump_loc(FILE *o, SrcLoc l) { fprintf(o, "  @%d:%d", l.line, l.col); }

static void dump_tvalue(FILE *o, const TrainValue *v) {
  if (v->kind == TV_NUMBER) fprintf(o, "%.17g", v->num);
  else if (v->kind == TV_NAME) fputs(v->name ? v->name : "<error>", o);
  else {
    fputc('(', o);
    for (const TrainValue *x = v->items; x; x = x->next) {
      dump_tvalue(o, x);
      if (x->next) fputs(", ", o);
    }
    fputc(')', o);
  }
}

static const char *const def_kinds[] = {"layer", "loss", "model", "train"};

void fe_dump_ast(FILE *o, const FeProgram *p) {
  for (const Def *d = p->defs; d; d = d->next) {
    fprintf(o, "(%s %s", def_kinds[d->kind], d->name);
    dump_loc(o, d->loc);
    fputc('\n', o);
    for (const ParamDecl *pd = d->params; pd; pd = pd->next) {
      fprintf(o, "  (arg %s ", pd->name);
      dump_type(o, &pd->type);
      if (pd->def) { fputs(" = ", o); dump_expr(o, pd->def); }
      fputc(')', o);
      dump_loc(o, pd->loc);
      fputc('\n', o);
    }
    if (d->ret) { fputs("  (returns ", o); dump_type(o, d->ret); fputs(")\n", o); }
    for (const Stmt *s = d->body; s; s = s->next) {
      switch (s->kind) {
      case ST_ASSIGN: fprintf(o, "  (= %s ", s->name); dump_expr(o, s->value); break;
      case ST_OUTPUT: fprintf(o, "  (output %s ", s->name); dump_expr(o, s->value); break;
      case ST_LOSS: fputs("  (loss ", o); dump_expr(o, s->value); break;
      case ST_RETURN: fputs("  (return ", o); dump_expr(o, s->value); break;
      case ST_PARAM:
        fprintf(o, "  (param %s ", s->name);
        dump_type(o, &s->type);
        fprintf(o, " %s", s->init);
        for (const Arg *g = s->init_args; g; g = g->next) {
          fputc(' ', o);
          if (g->name) fprintf(o, "%s=", g->name);
          dump_expr(o, g->value);
        }
        break;
      }
      fputc(')', o);
      dump_loc(o, s->loc);
      fputc('\n', o);
    }
    for (const TrainItem *it = d->items; it; it = it->next) {
      fprintf(o, "  (%s ", it->key);
      dump_tvalue(o, it->value);
      for (const TrainArg *g = it->args; g; g = g->next) {
        fputc(' ', o);
        if (g->name) fprintf(o, "%s=", g->name);
        dump_tvalue(o, g->value);
      }
      fputc(')', o);
      dump_loc(o, it->loc);
      fputc('\n', o);
    }
    fputs(")\n", o);
  }
}

void fe_dump_tokens(FILE *o, const FeToken *toks, int n) {
  for (int i = 0; i < n; i++) {
    fprintf(o, "%d:%d-%d\t%s", toks[i].loc.line, toks[i].loc.col, toks[i].loc.endcol, fe_token_name(toks[i].kind));
    if (toks[i].kind != 0 && toks[i].text[0] != '\\') {
      const char *t = toks[i].text;
      size_t len = strlen(t);
      if (len > 60) fprintf(o, "\t%.57s...", t);
      else fprintf(o, "\t%s", t);
    }
    fputc('\n', o);
  }
}
