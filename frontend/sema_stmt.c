/* frontend/sema_stmt.c — declared types and statements: assignments, parameter
 * statements (their path names), bodies and return types. */
#include "frontend/sema.h"

#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <string.h>

/* ------------------------------------------------------------------ types */

int sema_dtype_of(Ctx *c, const TypeAst *t, bool *ok) {
  *ok = true;
  if (!t->dtype) return -1;
  if (strcmp(t->dtype, "f32") == 0) return DT_F32;
  if (strcmp(t->dtype, "f64") == 0) return DT_F64;
  if (strcmp(t->dtype, "label") == 0) return DT_LABEL;
  ERR(c, t->loc, "unknown type '%s' (expected f32, f64, label, int or float)", t->dtype);
  *ok = false;
  return -1;
}

/* Check a signature type on its own (reported once per definition). */
bool sema_check_type(Ctx *c, const TypeAst *t, bool model_input) {
  if (t->kind != TY_TENSOR) {
    if (model_input) {
      ERR(c, t->loc, "a model input must be a tensor such as f32[B, 784] or label[B, 10]");
      return false;
    }
    return true;
  }
  bool ok;
  int dt = sema_dtype_of(c, t, &ok);
  if (!ok) return false;
  if (t->rank < 0) {
    ERR(c, t->loc, "'%s' needs its dims, as in %s[B, 10]", t->dtype, t->dtype);
    return false;
  }
  if (t->rank > IR_MAX_RANK) {
    ERR(c, t->loc, "tensors have at most %d dims, this type has %d", IR_MAX_RANK, t->rank);
    return false;
  }
  for (int i = 0; i < t->rank; i++)
    if (!t->dims[i].name && t->dims[i].value == 0) return false;   /* bad literal, reported */
  int nell = 0;
  for (int i = 0; i < t->rank; i++)
    if (t->dims[i].name && strcmp(t->dims[i].name, "...") == 0 && ++nell > 1) {
      ERR(c, t->dims[i].loc, "a type has at most one '...' (it stands for all the dims it matches)");
      return false;
    }
  if (nell && model_input) {
    ERR(c, t->dims[sema_ellipsis_index(t)].loc, "'...' stands for dims of a layer's or loss's argument; a model input "
        "has all its dims written out");
    return false;
  }
  if (dt == DT_LABEL && t->rank < 2) {
    ERR(c, t->loc, "a label type has two dims or more: the batch first and the number of classes last, as in "
                   "label[B, C] or label[B, T, C] (one class per position)");
    return false;
  }
  if (model_input) {
    if (t->rank == 0 || !t->dims[0].name) {
      ERR(c, t->loc, "the first dim of a model input must be the batch dim, a name such as B");
      return false;
    }
    for (int i = 1; i < t->rank; i++)
      if (t->dims[i].name) {
        ERR(c, t->dims[i].loc, "dim '%s' of a model input must be a number: only the first dim (the batch) is symbolic",
            t->dims[i].name);
        return false;
      }
  }
  return sema_check_batch_once(c, t);
}

/* A declared type names the batch dim B at most once, as every value holds it at most
 * once (sema_expr.c: reject_batch_twice); the error is at the second B. */
bool sema_check_batch_once(Ctx *c, const TypeAst *t) {
  if (t->kind != TY_TENSOR) return true;
  bool seen = false;
  for (int i = 0; i < t->rank; i++) {
    if (!t->dims[i].name || strcmp(t->dims[i].name, "B") != 0) continue;
    if (seen) {
      ERR(c, t->dims[i].loc, "the batch dim B appears twice in this type; bpcc sizes a training step's memory "
                             "linearly in the batch, so a value may hold B at most once");
      return false;
    }
    seen = true;
  }
  return true;
}

int sema_ellipsis_index(const TypeAst *t) {
  for (int i = 0; t && t->kind == TY_TENSOR && i < t->rank; i++)
    if (t->dims[i].name && strcmp(t->dims[i].name, "...") == 0) return i;
  return -1;
}

/* Resolve the dims of a `param` or return type in a frame: every name must be bound; a
 * return type's `...` is the dims the signature's `...` matched. Returns the rank, -1
 * after an error. */
static int resolve_dims(Ctx *c, Frame *f, const TypeAst *t, int64_t *dims, const char *what, bool ellipsis_ok) {
  int r = 0;
  for (int i = 0; i < t->rank; i++) {
    const DimAst *d = &t->dims[i];
    if (r >= IR_MAX_RANK) {
      ERR(c, t->loc, "%s would have more than %d dims", what, IR_MAX_RANK);
      return -1;
    }
    if (!d->name) {
      if (d->value == 0) return -1;
      dims[r++] = d->value;
      continue;
    }
    if (strcmp(d->name, "B") == 0) {
      dims[r++] = DIM_BATCH;
      continue;
    }
    if (strcmp(d->name, "...") == 0) {
      if (!ellipsis_ok) {
        ERR(c, d->loc, "'...' stands for the dims an argument matched; %s is written with all its dims", what);
        return -1;
      }
      if (!f->ell_bound) {
        ERR(c, d->loc, "'...' in %s stands for the dims an argument's '...' matched, but no argument has one", what);
        return -1;
      }
      if (r + f->ell_rank > IR_MAX_RANK) {
        ERR(c, t->loc, "%s would have more than %d dims", what, IR_MAX_RANK);
        return -1;
      }
      for (int k = 0; k < f->ell_rank; k++) dims[r++] = f->ell[k];
      continue;
    }
    DimBind *b = sema_lookup_dim(f, d->name);
    if (!b) {
      ERR(c, d->loc, "unknown dim '%s' in %s: dims must be numbers, B, or names bound by the signature", d->name, what);
      return -1;
    }
    if (b->bad) {
      ERR(c, d->loc, "dim '%s' = %lld in %s must be between 1 and %lld", d->name, (long long)b->bad_value, what,
          (long long)FE_MAX_DIM);
      return -1;
    }
    dims[r++] = b->dim;
  }
  return r;
}

/* ------------------------------------------------------------------ statements */


/* Param-creating calls of an expression, in source (pre-)order. */
static void collect_calls(Ctx *c, const Expr *e, const Expr **out, int *n, int cap) {
  if (!e) return;
  switch (e->kind) {
  case EX_NEG: collect_calls(c, e->lhs, out, n, cap); break;
  case EX_BINARY:
    collect_calls(c, e->lhs, out, n, cap);
    collect_calls(c, e->rhs, out, n, cap);
    break;
  case EX_CALL: {
    const FnInfo *fi = sema_find_fn(c, e->text);
    if (fi && fi->has_params == 1 && *n < cap) out[(*n)++] = e;
    for (const Arg *g = e->args; g; g = g->next) collect_calls(c, g->value, out, n, cap);
    break;
  }
  default: break;
  }
}

static const char *join(Ctx *c, const char *prefix, const char *name) {
  return prefix ? arena_printf(c->a, "%s.%s", prefix, name) : name;
}

/* The parameter path of each param-creating call of a statement (docs/language.md):
 * one call: the binding's path (`h.W`); several, or none bound (return, loss): the path
 * plus the callee's name, numbered from the second occurrence (`h.dense.W`,
 * `h.dense#2.W`). */
static void plan_paths(Ctx *c, Frame *f, const Stmt *s) {
  enum { CAP = 256 };
  const Expr *calls[CAP];
  int n = 0;
  collect_calls(c, s->value, calls, &n, CAP);
  f->ncalls = n;
  f->calls = n ? arena_alloc(c->a, (size_t)n * sizeof *f->calls) : NULL;
  const char *base = s->name ? join(c, f->prefix, s->name) : f->prefix;
  for (int i = 0; i < n; i++) {
    f->calls[i].call = calls[i];
    if (s->name && n == 1) {
      f->calls[i].path = base;
      continue;
    }
    int k = 1;
    for (int j = 0; j < i; j++)
      if (strcmp(calls[j]->text, calls[i]->text) == 0) k++;
    const char *seg = k == 1 ? calls[i]->text : arena_printf(c->a, "%s#%d", calls[i]->text, k);
    f->calls[i].path = join(c, base, seg);
  }
}

/* name, or name#2, name#3 ... if a parameter of the model already has it; recorded in
 * c->param_names (the model's parameter names, looked up in constant time). */
const char *sema_unique_param_name(Ctx *c, const char *name) {
  const char *try = name;
  for (int k = 2; sema_tab_get(&c->param_names, try); k++) try = arena_printf(c->a, "%s#%d", name, k);
  sema_tab_put(c->a, &c->param_names, try, (void *)try);
  return try;
}

/* param NAME: type init INIT[(args)] */
static void stmt_param(Ctx *c, Frame *f, const Stmt *s) {
  const TypeAst *t = &s->type;
  if (!s->init) {   /* a syntax error, already reported */
    sema_define(c, f, s->name, v_error(), s->loc);
    return;
  }
  bool ok = true;
  if (t->kind != TY_TENSOR) {
    ERR(c, t->loc, "a parameter must be a tensor such as [I, n]");
    ok = false;
  }
  int dt = f->dtype;
  if (ok && t->dtype) {
    dt = sema_dtype_of(c, t, &ok);
    if (ok && dt == DT_LABEL) {
      ERR(c, t->loc, "a parameter cannot be a label");
      ok = false;
    }
  }
  if (ok && t->rank < 0) {
    ERR(c, t->loc, "a parameter needs its dims, as in [I, n]");
    ok = false;
  }
  if (ok && t->rank > IR_MAX_RANK) {
    ERR(c, t->loc, "tensors have at most %d dims, this type has %d", IR_MAX_RANK, t->rank);
    ok = false;
  }
  int64_t dims[IR_MAX_RANK];
  if (ok && resolve_dims(c, f, t, dims, arena_printf(c->a, "parameter '%s'", s->name), false) < 0) ok = false;
  for (int i = 0; ok && i < t->rank; i++)
    if (dims[i] == DIM_BATCH) {
      ERR(c, t->dims[i].loc, "parameter '%s' cannot have the batch dim: its shape is fixed at compile time", s->name);
      ok = false;
    }

  /* the initializer and its arguments */
  int init = ir_init_lookup(s->init);
  double fa[2] = {0, 0};
  if (init < 0) {
    ERR(c, s->init_loc,
        "unknown initializer '%s' (expected zeros, ones, constant(v), normal(std), uniform(a, b), "
        "xavier_uniform, xavier_normal, he_uniform or he_normal)", s->init);
    ok = false;
  } else {
    static const ParamSpec p_const[] = {{"value", false}}, p_normal[] = {{"std", false}},
                           p_uniform[] = {{"a", false}, {"b", false}};
    const ParamSpec *ps = NULL;
    int np = 0;
    if (init == INIT_CONSTANT) ps = p_const, np = 1;
    else if (init == INIT_NORMAL) ps = p_normal, np = 1;
    else if (init == INIT_UNIFORM) ps = p_uniform, np = 2;
    const char *what = arena_printf(c->a, "initializer '%s'", s->init);
    if (np == 0 && s->init_args) {
      ERR(c, s->init_args->value->loc, "initializer '%s' takes no arguments", s->init);
      ok = false;
    } else if (np > 0) {
      Expr call;
      memset(&call, 0, sizeof call);
      call.kind = EX_CALL;
      call.loc = s->init_loc;
      call.args = s->init_args;
      for (const Arg *g = s->init_args; g; g = g->next) call.nargs++;
      const Expr *ax[2];
      SrcLoc al[2];
      if (!sema_match_args(c, &call, what, ps, np, ax, al, SRCLOC_NONE)) ok = false;
      for (int i = 0; ok && i < np; i++) {
        Value v = sema_eval(c, ax[i]);
        if (v.kind == VK_ERROR) { ok = false; break; }
        if (v.kind != VK_NUMBER) {
          ERR(c, ax[i]->loc, "argument '%s' of %s must be a constant number, not %s", ps[i].name, what, sema_vtype(c, &v));
          ok = false;
          break;
        }
        fa[i] = v.num;
        if (v.known && init == INIT_NORMAL && v.num < 0) {
          ERR(c, ax[i]->loc, "the standard deviation of normal() must not be negative, got %g", v.num);
          ok = false;
        }
      }
      if (ok && init == INIT_UNIFORM && fa[0] > fa[1]) {
        ERR(c, s->init_loc, "uniform(a, b) needs a <= b, got uniform(%g, %g)", fa[0], fa[1]);
        ok = false;
      }
    }
  }
  if (!ok) {
    sema_define(c, f, s->name, v_error(), s->loc);
    return;
  }
  const char *name = join(c, f->prefix, s->name);
  int32_t id = -1;
  if (c->model) {
    name = sema_unique_param_name(c, name);
    id = sema_emit(c, OP_PARAM, 0, -1, -1, dt, t->rank, dims, s->loc);
    FeNode *nd = sema_node(c, id);
    nd->name = name;
    nd->iattr = init;
    nd->fattr[0] = fa[0];
    nd->fattr[1] = fa[1];
    if (f->param_loc.line > 0) nd->loc = f->param_loc;
    sema_push_id(c, &c->model->params, &c->model->nparams, id);
  }
  Value v = sema_tensor_value(dt, t->rank, dims, id, s->loc);
  v.origin_name = s->name;
  v.origin_decl = true;
  sema_define(c, f, s->name, v, s->loc);
}

/* Evaluate a statement's expression with its call paths planned. */
Value sema_eval_stmt_expr(Ctx *c, Frame *f, const Stmt *s) {
  plan_paths(c, f, s);
  Value v = sema_eval(c, s->value);
  f->calls = NULL;
  f->ncalls = 0;
  return v;
}

/* The body of a layer or loss function: returns the value of its `return`. */
Value sema_eval_body(Ctx *c, Frame *f, const Def *d) {
  Value ret = v_error();
  bool has_return = false;
  for (const Stmt *s = d->body; s; s = s->next) {
    if (has_return) {
      ERR(c, s->loc, "statement after 'return' in %s '%s': 'return' must be the last statement",
          d->kind == DEF_LOSS ? "loss" : "layer", d->name);
      break;
    }
    switch (s->kind) {
    case ST_ASSIGN: {
      Value v = sema_eval_stmt_expr(c, f, s);
      if (v.kind != VK_ERROR) {
        v.origin = s->value->loc;
        v.origin_name = s->name;
        v.origin_decl = false;
      }
      sema_define(c, f, s->name, v, s->loc);
      break;
    }
    case ST_PARAM:
      if (d->kind != DEF_LAYER) {
        ERR(c, s->loc, "'param' is only allowed inside a layer, not in loss '%s'", d->name);
        break;
      }
      stmt_param(c, f, s);
      break;
    case ST_RETURN:
      ret = sema_eval_stmt_expr(c, f, s);
      has_return = true;
      break;
    case ST_OUTPUT:
    case ST_LOSS:
      ERR(c, s->loc, "'%s' is only allowed in a model, not in %s '%s'", s->kind == ST_OUTPUT ? "output" : "loss",
          d->kind == DEF_LOSS ? "loss" : "layer", d->name);
      break;
    }
  }
  if (!has_return) {
    ERR(c, d->end_loc.line > 0 ? d->end_loc : d->loc, "%s '%s' has no 'return' statement",
        d->kind == DEF_LOSS ? "loss" : "layer", d->name);
    return v_error();
  }
  return ret;
}

/* Check the returned value against the declared return type and the loss rules. */
Value sema_check_return(Ctx *c, Frame *f, const Def *d, Value v, SrcLoc loc) {
  if (v.kind == VK_ERROR) return v;
  if (v.kind == VK_NUMBER) v = sema_as_tensor(c, v, DT_F32, loc);
  if (sema_reject_label(c, &v, loc, "as a return value")) return v_error();
  if (d->kind == DEF_LOSS && v.rank != 0) {
    ERR(c, loc, "loss '%s' must return a scalar, but returns shape %s; reduce it with mean(...) or sum(...)", d->name,
        sema_vshape(c, &v));
    return v_error();
  }
  if (d->ret && d->ret->kind == TY_TENSOR && d->ret->rank >= 0 && d->ret->rank <= IR_MAX_RANK) {
    int64_t dims[IR_MAX_RANK];
    bool ok = true;
    int dt = d->ret->dtype ? sema_dtype_of(c, d->ret, &ok) : v.dtype;
    int rank = ok ? resolve_dims(c, f, d->ret, dims, "the return type", true) : -1;
    if (rank < 0) return v_error();
    bool same = dt == v.dtype && rank == v.rank;
    for (int i = 0; same && i < v.rank; i++) same = dims[i] == v.dims[i];
    if (!same) {
      Note n;
      sema_note_at(&n, d->ret->loc, "declared return type is %s%s", ir_dtype_name((DType)dt), sema_shape_str(c, rank, dims));
      sema_report(c, loc, &n, 1, "%s '%s' returns %s, which is not its declared return type", d->kind == DEF_LOSS ? "loss" : "layer",
             d->name, sema_vtype(c, &v));
      return v_error();
    }
  } else if (d->ret && d->ret->kind != TY_TENSOR) {
    ERR(c, d->ret->loc, "a layer returns a tensor");
    return v_error();
  }
  return v;
}

