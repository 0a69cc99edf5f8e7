/* frontend/sema_call.c — calls of layers and losses: the callee's signature unified
 * with the shapes of the arguments (binding its dims), then its body evaluated with
 * those bindings in a new frame; "in call to" notes come from the frame chain. */
#include "frontend/sema.h"

#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <string.h>

/* ------------------------------------------------------------------ calls */

static ParamSpec *param_specs(Ctx *c, const Def *d, int *np) {
  int n = 0;
  for (const ParamDecl *p = d->params; p; p = p->next) n++;
  ParamSpec *ps = arena_alloc(c->a, (size_t)(n ? n : 1) * sizeof *ps);
  n = 0;
  for (const ParamDecl *p = d->params; p; p = p->next) {
    ps[n].name = p->name;
    ps[n].optional = p->def != NULL;
    n++;
  }
  *np = n;
  return ps;
}

/* Unify argument `v` with signature parameter `p` of the callee in frame `f`. */
static bool unify(Ctx *c, Frame *f, const Def *fn, const ParamDecl *p, const Value *v, SrcLoc argloc, SrcLoc callloc) {
  const TypeAst *t = &p->type;
  char d1[64], d2[64];
  int ei = sema_ellipsis_index(t), fixed = ei >= 0 ? t->rank - 1 : t->rank;
  if (ei < 0 ? t->rank != v->rank : v->rank < fixed) {
    Note n[2];
    int nn = 0;
    if (sema_origin_note(c, v, &n[nn])) nn++;
    sema_note_at(&n[nn++], p->loc, "parameter '%s' of '%s' declared here", p->name, fn->name);
    sema_report(c, argloc, n, nn, "argument '%s' of '%s' must have rank %d%s, but has shape %s", p->name, fn->name, fixed,
                ei >= 0 ? " or more" : "", sema_vshape(c, v));
    return false;
  }
  /* `...` matches the dims between those written before and after it, the same dims in
   * every argument that has one (and in the return type) */
  int nell = v->rank - fixed;
  if (ei >= 0 && !f->ell_bound) {
    f->ell_bound = true;
    f->ell_rank = nell;
    memcpy(f->ell, v->dims + ei, (size_t)nell * sizeof f->ell[0]);
    f->ell_from = p->name;
    f->ell_value = *v;
  } else if (ei >= 0 && (f->ell_rank != nell || memcmp(f->ell, v->dims + ei, (size_t)nell * sizeof f->ell[0]) != 0)) {
    Note n[2];
    int nn = 0;
    if (sema_origin_note(c, &f->ell_value, &n[nn])) nn++;
    if (sema_origin_note(c, v, &n[nn])) nn++;
    sema_report(c, callloc, n, nn,
                "shapes %s and %s do not agree in call to '%s': '...' matches %s in '%s' but %s in '%s'",
                sema_vshape(c, &f->ell_value), sema_vshape(c, v), fn->name, sema_shape_str(c, f->ell_rank, f->ell),
                f->ell_from, sema_shape_str(c, nell, v->dims + ei), p->name);
    return false;
  }
  for (int ti = 0; ti < t->rank; ti++) {
    if (ti == ei) continue;
    const DimAst *d = &t->dims[ti];
    int i = ei >= 0 && ti > ei ? ti - 1 + nell : ti;   /* the argument's dim */
    int64_t actual = v->dims[i];
    if (!d->name) {
      if (d->value != actual) {
        Note n[2];
        int nn = 0;
        if (sema_origin_note(c, v, &n[nn])) nn++;
        sema_note_at(&n[nn++], d->loc, "parameter '%s' of '%s' declared here", p->name, fn->name);
        sema_report(c, argloc, n, nn, "dim %d of argument '%s' of '%s' must be %lld, but its shape is %s", i, p->name,
               fn->name, (long long)d->value, sema_vshape(c, v));
        return false;
      }
      continue;
    }
    if (strcmp(d->name, "B") == 0) {
      if (actual != DIM_BATCH) {
        Note n[2];
        int nn = 0;
        if (sema_origin_note(c, v, &n[nn])) nn++;
        sema_note_at(&n[nn++], d->loc, "B, the batch dim, is declared here");
        sema_report(c, argloc, n, nn, "dim %d of argument '%s' of '%s' is the batch dim B, which cannot be %s (shape %s)", i,
               p->name, fn->name, sema_dim_name(c, actual, d1, sizeof d1), sema_vshape(c, v));
        return false;
      }
      continue;
    }
    DimBind *b = sema_lookup_dim(f, d->name);
    if (!b) {
      b = sema_bind_dim(c, f, d->name, actual);
      b->from = p->name;
      b->from_value = *v;
      continue;
    }
    if (b->dim != actual) {
      Note n[2];
      int nn = 0;
      if (!b->from_int && sema_origin_note(c, &b->from_value, &n[nn])) nn++;
      if (sema_origin_note(c, v, &n[nn])) nn++;
      if (b->from_int)
        sema_report(c, callloc, n, nn,
               "shape %s does not agree with %s = %s in call to '%s': dim %s of '%s' is %s",
               sema_vshape(c, v), d->name, sema_dim_name(c, b->dim, d1, sizeof d1), fn->name, d->name, p->name,
               sema_dim_name(c, actual, d2, sizeof d2));
      else
        sema_report(c, callloc, n, nn,
               "shapes %s and %s do not agree in call to '%s': dim %s is %s in '%s' but %s in '%s'",
               sema_vshape(c, &b->from_value), sema_vshape(c, v), fn->name, d->name, sema_dim_name(c, b->dim, d1, sizeof d1), b->from,
               sema_dim_name(c, actual, d2, sizeof d2), p->name);
      return false;
    }
  }
  return true;
}

static bool type_mentions(const TypeAst *t, const char *name) {
  for (int i = 0; t && t->kind == TY_TENSOR && i < t->rank; i++)
    if (t->dims[i].name && strcmp(t->dims[i].name, name) == 0) return true;
  return false;
}

/* Is int parameter `name` of fn used as a dim of a type in fn? */
static bool used_as_dim(const Def *fn, const char *name) {
  for (const ParamDecl *p = fn->params; p; p = p->next)
    if (type_mentions(&p->type, name)) return true;
  for (const Stmt *s = fn->body; s; s = s->next)
    if (s->kind == ST_PARAM && type_mentions(&s->type, name)) return true;
  return type_mentions(fn->ret, name);
}

/* Instantiate a user layer or loss at call e. */
Value sema_call_fn(Ctx *c, const Expr *e, const FnInfo *fi) {
  const Def *fn = fi->def;
  int np;
  ParamSpec *ps = param_specs(c, fn, &np);
  const Expr **argx = arena_alloc(c->a, (size_t)(np ? np : 1) * sizeof *argx);
  SrcLoc *argloc = arena_alloc(c->a, (size_t)(np ? np : 1) * sizeof *argloc);
  const char *what = arena_printf(c->a, "%s '%s'", fn->kind == DEF_LOSS ? "loss" : "layer", fn->name);
  if (!sema_match_args(c, e, what, ps, np, argx, argloc, fn->loc)) return v_error();

  /* the path of this call's parameters */
  Frame *caller = c->top;
  const char *path = NULL;
  for (int i = 0; i < caller->ncalls; i++)
    if (caller->calls[i].call == e) path = caller->calls[i].path;
  if (!path) path = caller->prefix ? caller->prefix : fn->name;

  /* evaluate the arguments in the caller */
  Value *args = arena_alloc(c->a, (size_t)(np ? np : 1) * sizeof *args);
  bool ok = true;
  int i = 0;
  for (const ParamDecl *p = fn->params; p; p = p->next, i++) {
    args[i] = sema_eval(c, argx[i] ? argx[i] : p->def);
    if (args[i].kind == VK_ERROR) ok = false;
  }
  if (!ok || fi->bad) return v_error();
  if (c->depth >= FE_MAX_CALL_DEPTH) {
    if (!c->too_deep) ERR(c, e->loc, "layer calls nested too deeply (more than %d)", FE_MAX_CALL_DEPTH);
    c->too_deep = true;   /* once: every deeper layer would say the same */
    return v_error();
  }
  if (c->too_big) return v_error();
  if (++c->calls > FE_MAX_CALLS) {
    c->too_big = true;
    ERR(c, e->loc, "the program is too large: more than %d layer calls after inlining", FE_MAX_CALLS);
    return v_error();
  }
  if (!fi->checked) sema_check_fn(c, (FnInfo *)fi);   /* callees first: each error once */
  if (fi->bad) return v_error();

  Frame f;
  memset(&f, 0, sizeof f);
  f.caller = caller;
  f.fn = fn;
  f.call_loc = e->loc;
  f.entered_by_call = true;
  f.prefix = path;
  f.param_loc = caller->param_loc.line > 0 ? caller->param_loc : e->loc;
  if (caller->emit_loc_set) {
    f.emit_loc_set = true;
    f.emit_loc = caller->emit_loc;
  } else if (fn->from_stdlib) {
    f.emit_loc_set = true;
    f.emit_loc = e->loc;
  }

  /* bind int and float arguments first: their names may be dims of tensor arguments */
  i = 0;
  for (const ParamDecl *p = fn->params; p; p = p->next, i++) {
    SrcLoc al = argx[i] ? argx[i]->loc : p->loc;
    Value *v = &args[i];
    if (p->type.kind == TY_TENSOR) continue;
    if (v->kind != VK_NUMBER) {
      Note n;
      sema_note_at(&n, p->loc, "parameter '%s' of '%s' declared here", p->name, fn->name);
      sema_report(c, al, &n, 1, "argument '%s' of '%s' must be a compile-time %s constant, not a tensor (%s)", p->name,
             fn->name, p->type.kind == TY_INT ? "integer" : "number", sema_vtype(c, v));
      ok = false;
      continue;
    }
    if (p->type.kind == TY_INT && !v->is_int) {
      ERR(c, al, "argument '%s' of '%s' must be an integer, not %g", p->name, fn->name, v->num);
      ok = false;
      continue;
    }
    Value b = *v;
    if (p->type.kind == TY_INT) {
      int64_t d = b.idim;
      if (!b.known && d == DIM_UNKNOWN) d = sema_new_sym(c, arena_printf(c->a, "%s?", p->name));
      b.idim = d;
      DimBind *db = sema_bind_dim(c, &f, p->name, d);
      db->from_int = true;
      if (b.known && (b.num < 1 || b.num > (double)FE_MAX_DIM) && used_as_dim(fn, p->name)) {
        Note n;
        sema_note_at(&n, p->loc, "parameter '%s' of '%s' declared here", p->name, fn->name);
        sema_report(c, al, &n, 1, "argument '%s' of '%s' is a dimension and must be between 1 and %lld, not %lld", p->name,
               fn->name, (long long)FE_MAX_DIM, (long long)b.num);
        ok = false;
        continue;
      }
      if (b.known && (b.num < 1 || b.num > (double)FE_MAX_DIM)) {
        db->bad = true;
        db->bad_value = (int64_t)b.num;
        db->dim = DIM_UNKNOWN;
      }
    }
    sema_bind(c, &f, p->name, b, p->loc);
  }
  if (!ok) return v_error();
  i = 0;
  for (const ParamDecl *p = fn->params; p; p = p->next, i++) {
    if (p->type.kind != TY_TENSOR) continue;
    SrcLoc al = argx[i] ? argx[i]->loc : p->loc;
    Value v = args[i];
    bool dok;
    int want = sema_dtype_of(c, &p->type, &dok);
    if (v.kind == VK_NUMBER) v = sema_as_tensor(c, v, want == DT_F64 ? DT_F64 : DT_F32, al);
    if (want == DT_LABEL && v.dtype != DT_LABEL) {
      Note n;
      sema_note_at(&n, p->loc, "parameter '%s' of '%s' declared here", p->name, fn->name);
      sema_report(c, al, &n, 1, "argument '%s' of '%s' must be a label, but is %s", p->name, fn->name, sema_vtype(c, &v));
      ok = false;
      continue;
    }
    if (want != DT_LABEL && v.dtype == DT_LABEL) {
      if (sema_reject_label(c, &v, al, arena_printf(c->a, "as argument '%s' of '%s', which is not a label", p->name, fn->name)))
        ok = false;
      continue;
    }
    if (want >= 0 && want != v.dtype) {
      ERR(c, al, "argument '%s' of '%s' must be %s, but is %s", p->name, fn->name, ir_dtype_name((DType)want),
          sema_vtype(c, &v));
      ok = false;
      continue;
    }
    if (!unify(c, &f, fn, p, &v, al, e->loc)) {
      ok = false;
      break;
    }
    v.origin = p->loc;
    v.origin_name = p->name;
    v.origin_decl = true;
    if (!f.dtype && v.dtype != DT_LABEL) f.dtype = v.dtype;
    sema_bind(c, &f, p->name, v, p->loc);
  }
  if (!ok) return v_error();

  c->top = &f;
  c->depth++;
  Value r = sema_eval_body(c, &f, fn);
  SrcLoc rloc = fn->end_loc;
  for (const Stmt *s = fn->body; s; s = s->next)
    if (s->kind == ST_RETURN) rloc = s->value->loc;
  r = sema_check_return(c, &f, fn, r, rloc);
  c->depth--;
  c->top = caller;
  if (r.kind == VK_ERROR) return r;
  r.origin = e->loc;
  r.origin_name = NULL;
  r.origin_decl = false;
  return r;
}

