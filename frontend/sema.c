/* frontend/sema.c — semantic analysis as elaboration.
 *
 * The one idea: checking a layer and inlining it are the same walk. An expression
 * evaluates to a Value — a tensor type (dtype + dims), a compile-time number, or an
 * error that silences everything built on it. Dims are concrete (> 0), the batch B
 * (DIM_BATCH) or symbolic (SYM(k), a rigid name such as I or n).
 *
 *  1. Collect the callable definitions (user code first, so it shadows the standard
 *     library), check signatures, reject recursion between layers (a call-graph DFS)
 *     and note which layers create parameters.
 *  2. Check every layer and loss once on its own: its signature dims become rigid
 *     symbols, so `x @ W` with x: [B, I] and W: [I, n] is checked for any I and n.
 *  3. Instantiate every model: each call unifies the callee's signature with the
 *     argument shapes (binding I, C, n ...), then evaluates the callee's body with those
 *     bindings, recording one FeNode per operation. The result is the checked model:
 *     concrete shapes, parameters named by the path of bindings (docs/language.md),
 *     inputs, outputs and the loss — what `--check` prints and lower.c turns into IR.
 *
 * An error inside a layer instantiated from a model carries "in call to" notes up to
 * the model statement, as a C++ compiler does for templates. A layer that failed its own
 * check in step 2 is not instantiated again, so each mistake is reported once. */
#include "frontend/sema.h"

#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <string.h>

/* ------------------------------------------------------------------ names and diagnostics */

const char *sema_dim_name(Ctx *c, int64_t d, char *buf, size_t n) {
  if (d == DIM_BATCH) snprintf(buf, n, "B");
  else if (IS_SYM(d) && SYM_INDEX(d) < c->nsyms) snprintf(buf, n, "%s", c->syms[SYM_INDEX(d)]);
  else if (d == 0) snprintf(buf, n, "?");
  else snprintf(buf, n, "%lld", (long long)d);
  return buf;
}

/* "[B,784]" */
char *sema_shape_str(Ctx *c, int rank, const int64_t *dims) {
  char buf[400], d[64];
  size_t k = 0;
  buf[k++] = '[';
  for (int i = 0; i < rank && k < sizeof buf - 80; i++)
    k += (size_t)snprintf(buf + k, sizeof buf - k, "%s%s", i ? "," : "", sema_dim_name(c, dims[i], d, sizeof d));
  snprintf(buf + k, sizeof buf - k, "]");
  return arena_strdup(c->a, buf);
}

char *sema_vshape(Ctx *c, const Value *v) {
  if (v->kind == VK_NUMBER) return "[]";
  return sema_shape_str(c, v->rank, v->dims);
}

char *sema_vtype(Ctx *c, const Value *v) {
  if (v->kind == VK_NUMBER) return v->is_int ? "an integer constant" : "a number";
  return arena_printf(c->a, "%s%s", ir_dtype_name((DType)v->dtype), sema_vshape(c, v));
}

int64_t sema_new_sym(Ctx *c, const char *name) {
  if (c->nsyms == c->capsyms) {
    int cap = c->capsyms ? c->capsyms * 2 : 32;
    const char **s = arena_alloc(c->a, (size_t)cap * sizeof *s);
    if (c->nsyms) memcpy(s, c->syms, (size_t)c->nsyms * sizeof *s);
    c->syms = s;
    c->capsyms = cap;
  }
  c->syms[c->nsyms] = name;
  return SYM(c->nsyms++);
}

Note *sema_note_at(Note *n, SrcLoc loc, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  n->loc = loc;
  vsnprintf(n->msg, sizeof n->msg, fmt, ap);
  va_end(ap);
  return n;
}

/* A note that says where a value got its shape; false if it has no location. */
bool sema_origin_note(Ctx *c, const Value *v, Note *n) {
  if (v->origin.file < 0 || v->origin.line <= 0) return false;
  if (v->origin_decl && v->origin_name)
    sema_note_at(n, v->origin, "'%s' declared here as %s", v->origin_name, sema_vtype(c, v));
  else if (v->origin_name)
    sema_note_at(n, v->origin, "'%s' has shape %s from here", v->origin_name, sema_vshape(c, v));
  else
    sema_note_at(n, v->origin, "this has shape %s", sema_vshape(c, v));
  return true;
}

/* Report an error with its notes, then the chain of calls that instantiated it. */
void sema_report(Ctx *c, SrcLoc loc, const Note *notes, int nnotes, const char *fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  diag_error(loc, "%s", msg);
  for (int i = 0; i < nnotes; i++) {
    bool dup = false;   /* `x @ x`: one note for both operands */
    for (int j = 0; j < i; j++)
      if (memcmp(&notes[j].loc, &notes[i].loc, sizeof(SrcLoc)) == 0 && strcmp(notes[j].msg, notes[i].msg) == 0) dup = true;
    if (memcmp(&notes[i].loc, &loc, sizeof loc) == 0) dup = true;   /* the caret says it already */
    if (!dup) diag_note(notes[i].loc, "%s", notes[i].msg);
  }
  for (Frame *f = c->top; f; f = f->caller)
    if (f->entered_by_call) diag_note(f->call_loc, "in call to '%s' from here", f->fn->name);
}


/* ------------------------------------------------------------------ lookup */

static uint32_t name_hash(const char *s) {   /* FNV-1a */
  uint32_t h = 2166136261u;
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 16777619u;
  return h;
}

void *sema_tab_get(const NameTab *t, const char *name) {
  if (t->cap == 0) return NULL;
  for (uint32_t i = name_hash(name) & (uint32_t)(t->cap - 1);; i = (i + 1) & (uint32_t)(t->cap - 1)) {
    if (!t->keys[i]) return NULL;
    if (strcmp(t->keys[i], name) == 0) return t->vals[i];
  }
}

/* Slot of name in keys[cap] (cap a power of two, never full): its own or the empty one
 * where it goes. */
static uint32_t tab_slot(const char **keys, int cap, const char *name) {
  uint32_t i = name_hash(name) & (uint32_t)(cap - 1);
  while (keys[i] && strcmp(keys[i], name) != 0) i = (i + 1) & (uint32_t)(cap - 1);
  return i;
}

void sema_tab_put(Arena *a, NameTab *t, const char *name, void *val) {
  if (2 * (t->n + 1) > t->cap) {   /* at most half full: short probes */
    int cap = t->cap ? 2 * t->cap : 16;
    const char **keys = arena_alloc(a, (size_t)cap * sizeof *keys);
    void **vals = arena_alloc(a, (size_t)cap * sizeof *vals);
    for (int i = 0; i < t->cap; i++)
      if (t->keys[i]) {
        uint32_t j = tab_slot(keys, cap, t->keys[i]);
        keys[j] = t->keys[i];
        vals[j] = t->vals[i];
      }
    t->keys = keys, t->vals = vals, t->cap = cap;
  }
  uint32_t i = tab_slot(t->keys, t->cap, name);
  if (!t->keys[i]) t->n++;
  t->keys[i] = name;
  t->vals[i] = val;
}

const FnInfo *sema_find_fn(Ctx *c, const char *name) { return sema_tab_get(&c->fntab, name); }

Binding *sema_lookup(Frame *f, const char *name) { return sema_tab_get(&f->names, name); }

DimBind *sema_lookup_dim(Frame *f, const char *name) {
  for (DimBind *b = f->dims; b; b = b->next)
    if (strcmp(b->name, name) == 0) return b;
  return NULL;
}

DimBind *sema_bind_dim(Ctx *c, Frame *f, const char *name, int64_t d) {
  DimBind *b = arena_alloc(c->a, sizeof *b);
  b->name = name;
  b->dim = d;
  b->from_value = v_error();
  b->next = f->dims;
  f->dims = b;
  return b;
}

void sema_bind(Ctx *c, Frame *f, const char *name, Value v, SrcLoc decl) {
  Binding *b = arena_alloc(c->a, sizeof *b);
  b->name = name;
  b->v = v;
  b->decl = decl;
  b->next = f->vars;
  f->vars = b;
  sema_tab_put(c->a, &f->names, name, b);
}

/* Bind a statement's name, rejecting a redefinition. */
void sema_define(Ctx *c, Frame *f, const char *name, Value v, SrcLoc decl) {
  Binding *old = sema_lookup(f, name);
  if (old) {
    Note n;
    sema_report(c, decl, sema_note_at(&n, old->decl, "previous definition of '%s' is here", name), 1,
           "redefinition of '%s'", name);
    return;
  }
  sema_bind(c, f, name, v, decl);
}

/* ------------------------------------------------------------------ nodes */

int32_t sema_emit(Ctx *c, Op op, int nargs, int32_t a0, int32_t a1, int dtype, int rank,
                    const int64_t *dims, SrcLoc loc) {
  FeModel *m = c->model;
  if (!m) return -1;
  if (m->nnodes == m->capnodes) {
    int32_t cap = m->capnodes ? m->capnodes * 2 : 64;
    FeNode *n = arena_alloc(c->a, (size_t)cap * sizeof *n);
    if (m->nnodes) memcpy(n, m->nodes, (size_t)m->nnodes * sizeof *n);
    m->nodes = n;
    m->capnodes = cap;
  }
  FeNode *n = &m->nodes[m->nnodes];
  memset(n, 0, sizeof *n);
  n->op = op;
  n->nargs = nargs;
  n->args[0] = a0;
  n->args[1] = a1;
  n->type.dtype = (uint8_t)dtype;
  n->type.rank = (uint8_t)rank;
  for (int i = 0; i < rank; i++) n->type.dims[i] = dims[i];
  n->loc = c->top && c->top->emit_loc_set ? c->top->emit_loc : loc;
  n->call = c->top && c->top->param_loc.line > 0 ? c->top->param_loc : SRCLOC_NONE;
  return m->nnodes++;
}

FeNode *sema_node(Ctx *c, int32_t id) { return c->model && id >= 0 ? &c->model->nodes[id] : NULL; }

/* arr[n] with room for one more element of `size` bytes: the capacity is the next power
 * of two at or above n, so an array doubles (an arena copy each time; the abandoned
 * ones add up to less than the last) instead of growing by one, which cost a copy of
 * the whole array per statement: quadratic time and memory in the model's length. */
void *sema_grow(Ctx *c, void *arr, int32_t n, size_t size) {
  if (n != 0 && (n & (n - 1)) != 0) return arr;   /* full only at 0, 1, 2, 4, 8 ... */
  void *a = arena_alloc(c->a, (size_t)(n ? 2 * n : 1) * size);
  if (n) memcpy(a, arr, (size_t)n * size);
  return a;
}

void sema_push_id(Ctx *c, int32_t **arr, int32_t *n, int32_t id) {
  *arr = sema_grow(c, *arr, *n, sizeof **arr);
  (*arr)[(*n)++] = id;
}

/* A number used as a tensor: a scalar CONST of the other operand's dtype. An f32 value
 * must be finite in f32: a literal or constant expression beyond FLT_MAX is an error at
 * the number (underflow to a denormal or 0 is accepted, docs/language.md). */
Value sema_as_tensor(Ctx *c, Value v, int dtype, SrcLoc loc) {
  if (v.kind != VK_NUMBER) return v;
  if (v.known && dtype == DT_F32 && fabs(v.num) > FLT_MAX)
    ERR(c, loc, "number %g does not fit in f32 (largest finite f32: %.8g)", v.num, (double)FLT_MAX);
  Value t = v;
  t.kind = VK_TENSOR;
  t.dtype = dtype;
  t.rank = 0;
  t.node = sema_emit(c, OP_CONST, 0, -1, -1, dtype, 0, NULL, loc);
  if (sema_node(c, t.node)) sema_node(c, t.node)->fattr[0] = v.num;
  return t;
}

Value sema_tensor_value(int dtype, int rank, const int64_t *dims, int32_t nd, SrcLoc origin) {
  Value v = v_error();
  v.kind = VK_TENSOR;
  v.dtype = dtype;
  v.rank = rank;
  for (int i = 0; i < rank; i++) v.dims[i] = dims[i];
  v.node = nd;
  v.origin = origin;
  return v;
}

/* ------------------------------------------------------------------ entry points */

FeUnit *fe_check(Arena *a, FeProgram *user) {
  FeUnit *u = arena_alloc(a, sizeof *u);
  u->user = user;
  int errors_before = diag_error_count();
  int sf = diag_add_file("<stdlib>", fe_stdlib_text, fe_stdlib_len);
  u->stdlib = fe_parse(a, sf);
  for (Def *d = u->stdlib->defs; d; d = d->next) d->from_stdlib = true;

  Ctx c;
  memset(&c, 0, sizeof c);
  c.a = a;
  int nfn = 0;
  for (int pass = 0; pass < 2; pass++)
    for (Def *d = pass ? u->stdlib->defs : user->defs; d; d = d->next)
      if (d->kind == DEF_LAYER || d->kind == DEF_LOSS) nfn++;
  c.fns = arena_alloc(a, (size_t)(nfn ? nfn : 1) * sizeof *c.fns);

  /* user definitions first (they shadow the standard library); no duplicates */
  for (int pass = 0; pass < 2; pass++)
    for (Def *d = pass ? u->stdlib->defs : user->defs; d; d = d->next) {
      if (d->kind != DEF_LAYER && d->kind != DEF_LOSS) continue;
      const FnInfo *old = sema_find_fn(&c, d->name);
      if (old && !pass) {
        Note n;
        sema_report(&c, d->loc, sema_note_at(&n, old->def->loc, "previous definition of '%s' is here", d->name), 1,
               "redefinition of '%s'", d->name);
        continue;
      }
      if (old) continue;   /* shadowed standard library definition */
      if (sema_find_builtin(d->name) >= 0) {
        ERR(&c, d->loc, "'%s' is a built-in op and cannot be redefined", d->name);
        continue;
      }
      FnInfo *fi = &c.fns[c.nfns++];
      fi->def = d;
      fi->has_params = -1;
      sema_tab_put(a, &c.fntab, d->name, fi);
    }
  for (Def *d = user->defs; d; d = d->next) {
    if (d->kind != DEF_MODEL) continue;
    for (Def *e = user->defs; e != d; e = e->next)
      if (e->kind == DEF_MODEL && strcmp(e->name, d->name) == 0) {
        Note n;
        sema_report(&c, d->loc, sema_note_at(&n, e->loc, "previous definition of model '%s' is here", d->name), 1,
               "redefinition of model '%s'", d->name);
        d->kind = DEF_TRAIN;   /* keep it out of the model list; it has no items */
        d->items = NULL;
        d->name = arena_strdup(a, "");
        break;
      }
  }

  /* recursion and which layers create parameters */
  FnInfo **stack = arena_alloc(a, (size_t)(c.nfns + 1) * sizeof *stack);
  for (int i = 0; i < c.nfns; i++)
    if (c.fns[i].color == 0) sema_dfs(&c, &c.fns[i], stack, 0);

  /* each layer and loss on its own */
  for (int i = 0; i < c.nfns; i++)
    if (!c.fns[i].bad && !c.fns[i].checked) sema_check_fn(&c, &c.fns[i]);

  /* models, then their train blocks */
  int nmodels = 0;
  for (Def *d = user->defs; d; d = d->next)
    if (d->kind == DEF_MODEL) {
      sema_check_model(&c, u, d);
      nmodels++;
    }
  for (Def *d = user->defs; d; d = d->next) {
    if (d->kind != DEF_TRAIN || !d->name[0]) continue;
    const Def *md = NULL;
    for (Def *e = user->defs; e; e = e->next)
      if (e->kind == DEF_MODEL && strcmp(e->name, d->name) == 0) md = e;
    if (!md) {
      ERR(&c, d->loc, "train block for unknown model '%s'", d->name);
      continue;
    }
    const Def *prev = NULL;
    for (Def *e = user->defs; e != d; e = e->next)
      if (e->kind == DEF_TRAIN && strcmp(e->name, d->name) == 0) prev = e;
    if (prev) {
      Note n;
      sema_report(&c, d->loc, sema_note_at(&n, prev->loc, "the first train block for '%s' is here", d->name), 1,
             "model '%s' has two train blocks", d->name);
      continue;
    }
    TrainSpec spec;
    fe_check_train(d, &spec);
    FeModel *m = fe_unit_model(u, d->name);
    if (m) m->train = spec;
  }
  if (nmodels == 0 && diag_error_count() == 0) {
    SrcLoc l = {user->file, 1, 1, 0};
    diag_error(l, "no model in this file: define one with 'model NAME(x: f32[B, n], ...) { ... }'");
  }
  if (diag_error_count() != errors_before) u->nmodels = 0;   /* a broken program has no models */
  return u;
}

FeModel *fe_unit_model(FeUnit *u, const char *name) {
  for (int i = 0; i < u->nmodels; i++)
    if (strcmp(u->models[i]->name, name) == 0) return u->models[i];
  return NULL;
}

FeUnit *fe_compile_text(Arena *a, const char *name, const char *text, size_t len) {
  int file = diag_add_file(name, text, len);
  FeProgram *p = fe_parse(a, file);
  return fe_check(a, p);
}

