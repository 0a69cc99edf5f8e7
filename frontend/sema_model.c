/* frontend/sema_model.c — definitions and models: each layer and loss checked once
 * on its own (rigid symbolic dims), recursion between layers rejected, and every model
 * instantiated into its checked graph (FeModel). */
#include "frontend/sema.h"

#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <string.h>

/* ------------------------------------------------------------------ definitions */

/* Step 2: check a layer or loss on its own, its signature dims rigid symbols. */
void sema_check_fn(Ctx *c, FnInfo *fi) {
  const Def *d = fi->def;
  int errors = diag_error_count();
  fi->checked = true;
  c->depth++;
  Frame f;
  memset(&f, 0, sizeof f);
  f.fn = d;
  f.prefix = d->name;
  for (const ParamDecl *p = d->params; p; p = p->next) {
    Binding *dup = sema_lookup(&f, p->name);
    if (dup) {
      Note n;
      sema_report(c, p->loc, sema_note_at(&n, dup->decl, "previous parameter '%s' is here", p->name), 1,
             "duplicate parameter '%s' in '%s'", p->name, d->name);
      continue;
    }
    if (!sema_check_type(c, &p->type, false)) {
      sema_bind(c, &f, p->name, v_error(), p->loc);
      continue;
    }
    if (p->type.kind != TY_TENSOR) {
      if (p->def) {
        Value dv = sema_eval(c, p->def);
        if (dv.kind != VK_ERROR && (dv.kind != VK_NUMBER || (p->type.kind == TY_INT && !dv.is_int)))
          ERR(c, p->def->loc, "the default of '%s' must be a constant %s", p->name,
              p->type.kind == TY_INT ? "integer" : "number");
      }
      Value v = v_number(0, p->type.kind == TY_INT, false, DIM_UNKNOWN, p->loc);
      if (p->type.kind == TY_INT) {
        DimBind *old = sema_lookup_dim(&f, p->name);
        v.idim = old ? old->dim : sema_new_sym(c, p->name);
        if (!old) sema_bind_dim(c, &f, p->name, v.idim)->from_int = true;
      }
      v.origin_name = p->name;
      v.origin_decl = true;
      sema_bind(c, &f, p->name, v, p->loc);
      continue;
    }
    if (p->def) ERR(c, p->def->loc, "only int and float parameters can have a default value");
    bool ok;
    int dt = sema_dtype_of(c, &p->type, &ok);
    /* `...` matches no dims here ([B, ..., C] is checked as [B, C]); each call checks
     * the body again with the dims it matched */
    int64_t dims[IR_MAX_RANK];
    int rank = 0;
    for (int i = 0; i < p->type.rank; i++) {
      const DimAst *da = &p->type.dims[i];
      if (!da->name) dims[rank++] = da->value;
      else if (strcmp(da->name, "B") == 0) dims[rank++] = DIM_BATCH;
      else if (strcmp(da->name, "...") == 0) f.ell_bound = true;
      else {
        DimBind *b = sema_lookup_dim(&f, da->name);
        if (!b) b = sema_bind_dim(c, &f, da->name, sema_new_sym(c, da->name));
        dims[rank++] = b->dim;
      }
    }
    Value v = sema_tensor_value(dt < 0 ? DT_F32 : dt, rank, dims, -1, p->loc);
    v.origin_name = p->name;
    v.origin_decl = true;
    sema_bind(c, &f, p->name, v, p->loc);
  }
  bool ret_ok = !d->ret || sema_check_batch_once(c, d->ret);
  Frame *saved = c->top;
  FeModel *saved_model = c->model;
  c->model = NULL;
  c->top = &f;
  Value r = sema_eval_body(c, &f, d);
  SrcLoc rloc = d->end_loc;
  for (const Stmt *s = d->body; s; s = s->next)
    if (s->kind == ST_RETURN) rloc = s->value->loc;
  if (r.kind != VK_ERROR && ret_ok) sema_check_return(c, &f, d, r, rloc);
  c->top = saved;
  c->model = saved_model;
  c->depth--;
  if (diag_error_count() != errors) fi->bad = true;
}

/* Step 1: the call graph; reject cycles and compute has_params. */
static void calls_in_expr(const Expr *e, const Expr **out, int *n, int cap) {
  if (!e) return;
  if (e->kind == EX_NEG) calls_in_expr(e->lhs, out, n, cap);
  if (e->kind == EX_BINARY) {
    calls_in_expr(e->lhs, out, n, cap);
    calls_in_expr(e->rhs, out, n, cap);
  }
  if (e->kind == EX_CALL) {
    if (*n < cap) out[(*n)++] = e;
    for (const Arg *g = e->args; g; g = g->next) calls_in_expr(g->value, out, n, cap);
  }
}

static int body_calls(const Def *d, const Expr **out, int cap) {
  int n = 0;
  for (const ParamDecl *p = d->params; p; p = p->next) calls_in_expr(p->def, out, &n, cap);
  for (const Stmt *s = d->body; s; s = s->next) {
    calls_in_expr(s->value, out, &n, cap);
    for (const Arg *g = s->init_args; g; g = g->next) calls_in_expr(g->value, out, &n, cap);
  }
  return n;
}

enum { MAX_CALLS_PER_DEF = 4096 };

void sema_dfs(Ctx *c, FnInfo *fi, FnInfo **stack, int depth) {
  fi->color = 1;
  stack[depth] = fi;
  const Expr **calls = bp_xmalloc(MAX_CALLS_PER_DEF * sizeof *calls);
  int n = body_calls(fi->def, calls, MAX_CALLS_PER_DEF);
  bool has = false;
  for (const Stmt *s = fi->def->body; s; s = s->next)
    if (s->kind == ST_PARAM && fi->def->kind == DEF_LAYER) has = true;
  for (int i = 0; i < n; i++) {
    FnInfo *g = (FnInfo *)sema_find_fn(c, calls[i]->text);
    if (!g) continue;
    if (g->color == 1) {
      char chain[512];
      size_t k = 0;
      int from = depth;
      while (from > 0 && stack[from] != g) from--;
      for (int j = from; j <= depth && k < sizeof chain; j++)
        k += (size_t)snprintf(chain + k, sizeof chain - k, "'%s' -> ", stack[j]->def->name);
      if (k < sizeof chain) snprintf(chain + k, sizeof chain - k, "'%s'", g->def->name);
      ERR(c, calls[i]->loc, "recursion between layers is not allowed: %s", chain);
      for (int j = from; j <= depth; j++) stack[j]->bad = true;
      continue;
    }
    if (g->color == 0) sema_dfs(c, g, stack, depth + 1);
    if (g->has_params == 1) has = true;
  }
  bp_free(calls);
  fi->has_params = has ? 1 : 0;
  fi->color = 2;
}

/* ------------------------------------------------------------------ models */

void sema_check_model(Ctx *c, FeUnit *u, const Def *d) {
  int errors = diag_error_count();
  FeModel *m = arena_alloc(c->a, sizeof *m);
  m->name = d->name;
  m->loc = d->loc;
  m->def = (Def *)d;
  m->loss = -1;
  fe_train_defaults(&m->train);
  c->model = m;
  memset(&c->param_names, 0, sizeof c->param_names);
  Frame f;
  memset(&f, 0, sizeof f);
  c->top = &f;
  int index = 0;
  for (const ParamDecl *p = d->params; p; p = p->next, index++) {
    Binding *dup = sema_lookup(&f, p->name);
    if (dup) {
      Note n;
      sema_report(c, p->loc, sema_note_at(&n, dup->decl, "previous input '%s' is here", p->name), 1,
             "duplicate input '%s' in model '%s'", p->name, d->name);
      continue;
    }
    if (p->def) ERR(c, p->def->loc, "a model input cannot have a default value");
    if (!sema_check_type(c, &p->type, true)) {
      sema_bind(c, &f, p->name, v_error(), p->loc);
      continue;
    }
    bool ok;
    int dt = sema_dtype_of(c, &p->type, &ok);
    if (dt < 0) dt = DT_F32;
    int64_t dims[IR_MAX_RANK];
    dims[0] = DIM_BATCH;
    for (int i = 1; i < p->type.rank; i++) dims[i] = p->type.dims[i].value;
    if (p->type.dims[0].name && !sema_lookup_dim(&f, p->type.dims[0].name))
      sema_bind_dim(c, &f, p->type.dims[0].name, DIM_BATCH);
    int32_t id = sema_emit(c, OP_INPUT, 0, -1, -1, dt, p->type.rank, dims, p->loc);
    m->nodes[id].name = p->name;
    m->nodes[id].iattr = index;
    sema_push_id(c, &m->inputs, &m->ninputs, id);
    Value v = sema_tensor_value(dt, p->type.rank, dims, id, p->loc);
    v.origin_name = p->name;
    v.origin_decl = true;
    sema_bind(c, &f, p->name, v, p->loc);
  }
  const Stmt *first_loss = NULL;
  for (const Stmt *s = d->body; s; s = s->next) {
    switch (s->kind) {
    case ST_ASSIGN:
    case ST_OUTPUT: {
      Value v = sema_eval_stmt_expr(c, &f, s);
      if (s->kind == ST_OUTPUT && v.kind != VK_ERROR) {
        if (v.kind == VK_NUMBER) {
          ERR(c, s->value->loc, "output '%s' must be a tensor, not a constant", s->name);
          v = v_error();
        } else if (sema_reject_label(c, &v, s->value->loc, "as an output")) {
          v = v_error();
        } else {
          int32_t id = sema_emit(c, OP_OUTPUT, 1, v.node, -1, v.dtype, v.rank, v.dims, s->loc);
          m->nodes[id].name = s->name;
          sema_push_id(c, &m->outputs, &m->noutputs, id);
        }
      }
      if (v.kind != VK_ERROR) {
        v.origin = s->value->loc;
        v.origin_name = s->name;
        v.origin_decl = false;
      }
      if (s->kind == ST_ASSIGN && v.kind == VK_TENSOR && v.dtype != DT_LABEL) {
        /* a named activation (reported by `bpcc train --watch`) */
        int32_t k = m->nactivations;
        m->activation_names = sema_grow(c, m->activation_names, k, sizeof *m->activation_names);
        m->activation_locs = sema_grow(c, m->activation_locs, k, sizeof *m->activation_locs);
        m->activation_names[k] = s->name;
        m->activation_locs[k] = s->loc;
        sema_push_id(c, &m->activations, &m->nactivations, v.node);
      }
      sema_define(c, &f, s->name, v, s->loc);
      break;
    }
    case ST_LOSS: {
      if (first_loss) {
        Note n;
        sema_report(c, s->loc, sema_note_at(&n, first_loss->loc, "the first loss is here"), 1,
               "a model has exactly one loss; '%s' has a second one here", d->name);
        break;
      }
      first_loss = s;
      Value v = sema_eval_stmt_expr(c, &f, s);
      if (v.kind == VK_ERROR) break;
      if (v.kind == VK_NUMBER) {
        ERR(c, s->value->loc, "the loss must depend on the model's inputs, not be a constant");
        break;
      }
      if (sema_reject_label(c, &v, s->value->loc, "as the loss")) break;
      if (v.rank != 0) {
        Note n;
        int nn = sema_origin_note(c, &v, &n) ? 1 : 0;
        sema_report(c, s->value->loc, &n, nn,
               "the loss must be a scalar, but this has shape %s; reduce it with mean(...) or sum(...)", sema_vshape(c, &v));
        break;
      }
      m->loss = sema_emit(c, OP_LOSS, 1, v.node, -1, v.dtype, 0, NULL, s->loc);
      m->loss_expr = s->value->loc;
      break;
    }
    case ST_RETURN:
      ERR(c, s->loc, "'return' is only allowed in a layer or loss, not in model '%s'", d->name);
      break;
    case ST_PARAM:
      ERR(c, s->loc, "'param' is only allowed inside a layer; call a layer such as dense(x, n) to create parameters");
      break;
    }
  }
  if (!first_loss)
    ERR(c, d->end_loc.line > 0 ? d->end_loc : d->loc, "model '%s' has no loss: add a statement such as 'loss mse(y_hat, y)'",
        d->name);
  c->model = NULL;
  c->top = NULL;
  if (diag_error_count() != errors) return;
  FeModel **ms = arena_alloc(c->a, (size_t)(u->nmodels + 1) * sizeof *ms);
  if (u->nmodels) memcpy(ms, u->models, (size_t)u->nmodels * sizeof *ms);
  ms[u->nmodels++] = m;
  u->models = ms;
}

