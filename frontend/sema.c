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
#include "frontend/frontend.h"

#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <string.h>

/* ------------------------------------------------------------------ values */

#define SYM(k) (-2 - (int64_t)(k))
#define IS_SYM(d) ((d) <= -2)
#define SYM_INDEX(d) ((int)(-2 - (d)))
#define DIM_UNKNOWN INT64_MIN   /* an int argument whose value is not known (generic check) */

enum { VK_ERROR, VK_TENSOR, VK_NUMBER };

typedef struct {
  int kind;
  int dtype;                   /* tensor: DType */
  int rank;
  int64_t dims[IR_MAX_RANK];
  bool is_int, known;          /* number: written as an integer; value known */
  double num;                  /* number value, when known */
  int64_t idim;                /* integer number as a dim: concrete or symbolic; 0 unknown */
  int32_t node;                /* FeNode in the model being built, -1 in generic checks */
  SrcLoc origin;               /* where it got its shape */
  const char *origin_name;     /* the name it is bound to, if any */
  bool origin_decl;            /* origin is a declaration (argument, input, param) */
} Value;

static Value v_error(void) {
  Value v;
  memset(&v, 0, sizeof v);
  v.kind = VK_ERROR;
  v.node = -1;
  v.origin = SRCLOC_NONE;
  return v;
}

static Value v_number(double x, bool is_int, bool known, int64_t idim, SrcLoc loc) {
  Value v = v_error();
  v.kind = VK_NUMBER;
  v.num = x;
  v.is_int = is_int;
  v.known = known;
  v.idim = is_int ? (known ? (int64_t)x : idim) : DIM_UNKNOWN;
  v.origin = loc;
  return v;
}

/* ------------------------------------------------------------------ context */

typedef struct Binding Binding;
struct Binding {
  const char *name;
  Value v;
  SrcLoc decl;
  Binding *next;
};

typedef struct DimBind DimBind;
struct DimBind {
  const char *name;
  int64_t dim;
  const char *from;            /* the argument that bound it (for messages) */
  Value from_value;            /* its value (shape and origin) */
  bool from_int;               /* bound by an int argument */
  bool bad;                    /* bound to an int that is not a valid dim (bad_value) */
  int64_t bad_value;
  DimBind *next;
};

typedef struct {                /* a param-creating call in the current statement */
  const Expr *call;
  const char *path;
} CallPath;

typedef struct Frame Frame;
struct Frame {
  Frame *caller;
  const Def *fn;               /* NULL: a model */
  SrcLoc call_loc;             /* the call that entered this frame (instantiations) */
  bool entered_by_call;
  Binding *vars;
  DimBind *dims;
  const char *prefix;          /* parameter path of this frame; NULL at the model */
  bool emit_loc_set;           /* nodes take emit_loc (inside the standard library) */
  SrcLoc emit_loc;
  SrcLoc param_loc;            /* location of PARAM nodes: the model-level call */
  int dtype;                   /* float dtype of the first tensor argument: params without one take it */
  CallPath *calls;             /* of the statement being evaluated */
  int ncalls;
};

typedef struct {
  const Def *def;
  bool bad;                    /* failed its own check or is recursive: not instantiated */
  bool checked;
  int has_params;              /* -1 unknown, 0, 1 */
  int color;                   /* DFS for recursion */
} FnInfo;

typedef struct {
  Arena *a;
  FnInfo *fns;
  int nfns;
  const char **syms;           /* names of symbolic dims */
  int nsyms, capsyms;
  FeModel *model;              /* NULL: generic check (no nodes) */
  Frame *top;
  int depth;
  long calls;                  /* layer instantiations so far (bounded: FE_MAX_CALLS) */
  bool too_big;                /* reported; everything after is an error value */
  bool too_deep;               /* FE_MAX_CALL_DEPTH reported */
} Ctx;

typedef struct {
  SrcLoc loc;
  char msg[320];
} Note;

static const char *dim_name(Ctx *c, int64_t d, char *buf, size_t n) {
  if (d == DIM_BATCH) snprintf(buf, n, "B");
  else if (IS_SYM(d) && SYM_INDEX(d) < c->nsyms) snprintf(buf, n, "%s", c->syms[SYM_INDEX(d)]);
  else if (d == 0) snprintf(buf, n, "?");
  else snprintf(buf, n, "%lld", (long long)d);
  return buf;
}

/* "[B,784]" */
static char *shape_str(Ctx *c, int rank, const int64_t *dims) {
  char buf[400], d[64];
  size_t k = 0;
  buf[k++] = '[';
  for (int i = 0; i < rank && k < sizeof buf - 80; i++)
    k += (size_t)snprintf(buf + k, sizeof buf - k, "%s%s", i ? "," : "", dim_name(c, dims[i], d, sizeof d));
  snprintf(buf + k, sizeof buf - k, "]");
  return arena_strdup(c->a, buf);
}

static char *vshape(Ctx *c, const Value *v) {
  if (v->kind == VK_NUMBER) return "[]";
  return shape_str(c, v->rank, v->dims);
}

static char *vtype(Ctx *c, const Value *v) {
  if (v->kind == VK_NUMBER) return v->is_int ? "an integer constant" : "a number";
  return arena_printf(c->a, "%s%s", ir_dtype_name((DType)v->dtype), vshape(c, v));
}

static int64_t new_sym(Ctx *c, const char *name) {
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

static Note *note_at(Note *n, SrcLoc loc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static Note *note_at(Note *n, SrcLoc loc, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  n->loc = loc;
  vsnprintf(n->msg, sizeof n->msg, fmt, ap);
  va_end(ap);
  return n;
}

/* A note that says where a value got its shape; false if it has no location. */
static bool origin_note(Ctx *c, const Value *v, Note *n) {
  if (v->origin.file < 0 || v->origin.line <= 0) return false;
  if (v->origin_decl && v->origin_name)
    note_at(n, v->origin, "'%s' declared here as %s", v->origin_name, vtype(c, v));
  else if (v->origin_name)
    note_at(n, v->origin, "'%s' has shape %s from here", v->origin_name, vshape(c, v));
  else
    note_at(n, v->origin, "this has shape %s", vshape(c, v));
  return true;
}

/* Report an error with its notes, then the chain of calls that instantiated it. */
static void report(Ctx *c, SrcLoc loc, const Note *notes, int nnotes, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static void report(Ctx *c, SrcLoc loc, const Note *notes, int nnotes, const char *fmt, ...) {
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

#define ERR(c, loc, ...) report(c, loc, NULL, 0, __VA_ARGS__)

/* ------------------------------------------------------------------ lookup */

static const FnInfo *find_fn(Ctx *c, const char *name) {
  for (int i = 0; i < c->nfns; i++)
    if (strcmp(c->fns[i].def->name, name) == 0) return &c->fns[i];
  return NULL;
}

static Binding *lookup(Frame *f, const char *name) {
  for (Binding *b = f->vars; b; b = b->next)
    if (strcmp(b->name, name) == 0) return b;
  return NULL;
}

static DimBind *lookup_dim(Frame *f, const char *name) {
  for (DimBind *b = f->dims; b; b = b->next)
    if (strcmp(b->name, name) == 0) return b;
  return NULL;
}

static DimBind *bind_dim(Ctx *c, Frame *f, const char *name, int64_t d) {
  DimBind *b = arena_alloc(c->a, sizeof *b);
  b->name = name;
  b->dim = d;
  b->from_value = v_error();
  b->next = f->dims;
  f->dims = b;
  return b;
}

static void bind(Ctx *c, Frame *f, const char *name, Value v, SrcLoc decl) {
  Binding *b = arena_alloc(c->a, sizeof *b);
  b->name = name;
  b->v = v;
  b->decl = decl;
  b->next = f->vars;
  f->vars = b;
}

/* Bind a statement's name, rejecting a redefinition. */
static void define(Ctx *c, Frame *f, const char *name, Value v, SrcLoc decl) {
  Binding *old = lookup(f, name);
  if (old) {
    Note n;
    report(c, decl, note_at(&n, old->decl, "previous definition of '%s' is here", name), 1,
           "redefinition of '%s'", name);
    return;
  }
  bind(c, f, name, v, decl);
}

/* ------------------------------------------------------------------ nodes */

static int32_t emit(Ctx *c, Op op, int nargs, int32_t a0, int32_t a1, int dtype, int rank,
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
  return m->nnodes++;
}

static FeNode *node(Ctx *c, int32_t id) { return c->model && id >= 0 ? &c->model->nodes[id] : NULL; }

static void push_id(Ctx *c, int32_t **arr, int32_t *n, int32_t id) {
  int32_t *a = arena_alloc(c->a, (size_t)(*n + 1) * sizeof *a);
  if (*n) memcpy(a, *arr, (size_t)*n * sizeof *a);
  a[*n] = id;
  *arr = a;
  (*n)++;
}

/* A number used as a tensor: a scalar CONST of the other operand's dtype. An f32 value
 * must be finite in f32: a literal or constant expression beyond FLT_MAX is an error at
 * the number (underflow to a denormal or 0 is accepted, docs/language.md). */
static Value as_tensor(Ctx *c, Value v, int dtype, SrcLoc loc) {
  if (v.kind != VK_NUMBER) return v;
  if (v.known && dtype == DT_F32 && fabs(v.num) > FLT_MAX)
    ERR(c, loc, "number %g does not fit in f32 (largest finite f32: %.8g)", v.num, (double)FLT_MAX);
  Value t = v;
  t.kind = VK_TENSOR;
  t.dtype = dtype;
  t.rank = 0;
  t.node = emit(c, OP_CONST, 0, -1, -1, dtype, 0, NULL, loc);
  if (node(c, t.node)) node(c, t.node)->fattr[0] = v.num;
  return t;
}

static Value tensor_value(int dtype, int rank, const int64_t *dims, int32_t nd, SrcLoc origin) {
  Value v = v_error();
  v.kind = VK_TENSOR;
  v.dtype = dtype;
  v.rank = rank;
  for (int i = 0; i < rank; i++) v.dims[i] = dims[i];
  v.node = nd;
  v.origin = origin;
  return v;
}

/* ------------------------------------------------------------------ expressions */

static Value eval(Ctx *c, const Expr *e);

static const char *label_name(const Value *v) { return v->origin_name ? v->origin_name : "this value"; }

/* Labels may only go to onehot() or to a label argument. */
static bool reject_label(Ctx *c, const Value *v, SrcLoc loc, const char *what) {
  if (v->kind != VK_TENSOR || v->dtype != DT_LABEL) return false;
  Note n;
  int nn = origin_note(c, v, &n) ? 1 : 0;
  report(c, loc, &n, nn,
         "'%s' is a label (%s) and cannot be used %s; labels may only be passed to onehot() or to a label argument",
         label_name(v), vtype(c, v), what);
  return true;
}

static Value eval_neg(Ctx *c, const Expr *e) {
  Value x = eval(c, e->lhs);
  if (x.kind == VK_ERROR) return x;
  if (x.kind == VK_NUMBER) {
    return v_number(-x.num, x.is_int, x.known, DIM_UNKNOWN, e->loc);
  }
  if (reject_label(c, &x, e->lhs->loc, "in arithmetic")) return v_error();
  Value r = tensor_value(x.dtype, x.rank, x.dims, emit(c, OP_NEG, 1, x.node, -1, x.dtype, x.rank, x.dims, e->loc), e->loc);
  return r;
}

static Value fold(Ctx *c, int op, Value l, Value r, SrcLoc loc) {
  (void)c;
  bool known = l.known && r.known;
  bool is_int = l.is_int && r.is_int && (op == '+' || op == '-' || op == '*');
  double x = 0;
  if (known) {
    switch (op) {
    case '+': x = l.num + r.num; break;
    case '-': x = l.num - r.num; break;
    case '*': x = l.num * r.num; break;
    case '/':
      if (r.num == 0) { ERR(c, loc, "division by zero in a constant expression"); return v_error(); }
      x = l.num / r.num;
      break;
    case '^': x = pow(l.num, r.num); break;
    }
    if (!isfinite(x)) { ERR(c, loc, "constant expression overflows"); return v_error(); }
    if (is_int && fabs(x) > 9.0e15) { ERR(c, loc, "integer constant expression is too large"); return v_error(); }
  }
  return v_number(x, is_int, known, DIM_UNKNOWN, loc);
}

/* NumPy broadcasting of two shapes; false if they do not agree. */
static bool broadcast(int ra, const int64_t *a, int rb, const int64_t *b, int *rr, int64_t *out) {
  int r = ra > rb ? ra : rb;
  for (int i = 0; i < r; i++) {
    int ia = ra - r + i, ib = rb - r + i;
    int64_t da = ia >= 0 ? a[ia] : 1, db = ib >= 0 ? b[ib] : 1;
    if (da == db) out[i] = da;
    else if (da == 1) out[i] = db;
    else if (db == 1) out[i] = da;
    else return false;
  }
  *rr = r;
  return true;
}

static const char *op_name(int op) {
  switch (op) {
  case '+': return "'+'";
  case '-': return "'-'";
  case '*': return "'*'";
  case '/': return "'/'";
  case '@': return "'@'";
  default: return "'^'";
  }
}

static Value eval_binary(Ctx *c, const Expr *e) {
  Value l = eval(c, e->lhs);
  Value r = eval(c, e->rhs);
  if (l.kind == VK_ERROR || r.kind == VK_ERROR) return v_error();
  int op = e->op;
  if (op == '^') {
    if (r.kind != VK_NUMBER) {
      ERR(c, e->rhs->loc, "the exponent of '^' must be a constant number, not a tensor (%s)", vtype(c, &r));
      return v_error();
    }
    if (l.kind == VK_NUMBER) return fold(c, op, l, r, e->loc);
    if (reject_label(c, &l, e->lhs->loc, "in arithmetic")) return v_error();
    Value v = tensor_value(l.dtype, l.rank, l.dims, emit(c, OP_POW, 1, l.node, -1, l.dtype, l.rank, l.dims, e->loc), e->loc);
    if (node(c, v.node)) node(c, v.node)->fattr[0] = r.num;
    return v;
  }
  if (l.kind == VK_NUMBER && r.kind == VK_NUMBER) {
    if (op == '@') {
      ERR(c, e->loc, "'@' needs two rank-2 tensors, not constants");
      return v_error();
    }
    return fold(c, op, l, r, e->loc);
  }
  if (reject_label(c, &l, e->lhs->loc, "in arithmetic") | reject_label(c, &r, e->rhs->loc, "in arithmetic"))
    return v_error();
  if (op == '@') {
    if (l.kind != VK_TENSOR || r.kind != VK_TENSOR || l.rank != 2 || r.rank != 2) {
      Note n[2];
      int nn = 0;
      if (origin_note(c, &l, &n[nn])) nn++;
      if (origin_note(c, &r, &n[nn])) nn++;
      report(c, e->loc, n, nn, "'@' needs two rank-2 tensors, got %s @ %s", vtype(c, &l), vtype(c, &r));
      return v_error();
    }
    if (l.dtype != r.dtype) {
      ERR(c, e->loc, "'@' operands have different dtypes: %s @ %s", vtype(c, &l), vtype(c, &r));
      return v_error();
    }
    if (l.dims[1] != r.dims[0]) {
      Note n[2];
      int nn = 0;
      if (origin_note(c, &l, &n[nn])) nn++;
      if (origin_note(c, &r, &n[nn])) nn++;
      char d1[64], d2[64];
      report(c, e->loc, n, nn, "matmul shapes do not agree: %s @ %s (inner dims %s and %s differ)",
             vshape(c, &l), vshape(c, &r), dim_name(c, l.dims[1], d1, sizeof d1), dim_name(c, r.dims[0], d2, sizeof d2));
      return v_error();
    }
    int64_t d[2] = {l.dims[0], r.dims[1]};
    return tensor_value(l.dtype, 2, d, emit(c, OP_MATMUL, 2, l.node, r.node, l.dtype, 2, d, e->loc), e->loc);
  }
  int dtype = l.kind == VK_TENSOR ? l.dtype : r.dtype;
  if (l.kind == VK_TENSOR && r.kind == VK_TENSOR && l.dtype != r.dtype) {
    ERR(c, e->loc, "operands of %s have different dtypes: %s and %s", op_name(op), vtype(c, &l), vtype(c, &r));
    return v_error();
  }
  l = as_tensor(c, l, dtype, e->lhs->loc);
  r = as_tensor(c, r, dtype, e->rhs->loc);
  int rank;
  int64_t d[IR_MAX_RANK];
  if (!broadcast(l.rank, l.dims, r.rank, r.dims, &rank, d)) {
    Note n[2];
    int nn = 0;
    if (origin_note(c, &l, &n[nn])) nn++;
    if (origin_note(c, &r, &n[nn])) nn++;
    report(c, e->loc, n, nn, "shapes %s and %s do not broadcast in %s", vshape(c, &l), vshape(c, &r), op_name(op));
    return v_error();
  }
  Op iop = op == '+' ? OP_ADD : op == '-' ? OP_SUB : op == '*' ? OP_MUL : OP_DIV;
  return tensor_value(dtype, rank, d, emit(c, iop, 2, l.node, r.node, dtype, rank, d, e->loc), e->loc);
}

/* ---------------------------------------------------------- argument matching */

typedef struct {
  const char *name;
  bool optional;
} ParamSpec;

/* Match call arguments to parameter names: positional first, then keywords. out[i] is
 * the argument for parameter i or NULL. False (reported) on an arity or keyword error. */
static bool match_args(Ctx *c, const Expr *call, const char *what, const ParamSpec *ps, int np,
                       const Expr **out, SrcLoc *outloc, SrcLoc decl) {
  bool ok = true;
  for (int i = 0; i < np; i++) out[i] = NULL;
  int pos = 0;
  bool seen_kw = false;
  for (const Arg *g = call->args; g; g = g->next) {
    if (!g->name) {
      if (seen_kw) {
        ERR(c, g->value->loc, "positional argument after a keyword argument in call to %s", what);
        ok = false;
        continue;
      }
      if (pos >= np) {
        Note n;
        int nn = decl.line > 0 ? 1 : 0;
        if (nn) note_at(&n, decl, "%s declared here", what);
        report(c, g->value->loc, &n, nn, "too many arguments in call to %s: expected at most %d, got %d", what, np,
               call->nargs);
        return false;
      }
      out[pos] = g->value;
      outloc[pos] = g->value->loc;
      pos++;
      continue;
    }
    seen_kw = true;
    int k = -1;
    for (int i = 0; i < np; i++)
      if (strcmp(ps[i].name, g->name) == 0) k = i;
    if (k < 0) {
      char list[256];
      size_t m = 0;
      list[0] = 0;
      for (int i = 0; i < np && m < sizeof list; i++)
        m += (size_t)snprintf(list + m, sizeof list - m, "%s'%s'", i ? ", " : "", ps[i].name);
      ERR(c, g->name_loc, "%s has no parameter named '%s' (its parameters: %s)", what, g->name,
          np ? list : "none");
      ok = false;
      continue;
    }
    if (out[k]) {
      ERR(c, g->name_loc, "argument '%s' given twice in call to %s", g->name, what);
      ok = false;
      continue;
    }
    out[k] = g->value;
    outloc[k] = g->name_loc;
  }
  if (!ok) return false;
  for (int i = 0; i < np; i++) {
    if (!out[i] && !ps[i].optional) {
      Note n;
      int nn = decl.line > 0 ? 1 : 0;
      if (nn) note_at(&n, decl, "%s declared here", what);
      report(c, call->loc, &n, nn, "missing argument '%s' in call to %s", ps[i].name, what);
      ok = false;
    }
  }
  return ok;
}

/* An integer constant (axis): literal, int argument or constant expression. */
static bool const_int(Ctx *c, const Value *v, SrcLoc loc, const char *what, int64_t *out) {
  if (v->kind == VK_ERROR) return false;
  if (v->kind != VK_NUMBER || !v->is_int) {
    ERR(c, loc, "%s must be a constant integer, not %s", what, vtype(c, v));
    return false;
  }
  if (!v->known) return false;    /* generic check of a layer: unknown until instantiated */
  *out = (int64_t)v->num;
  return true;
}

/* ------------------------------------------------------------------ built-in ops */

typedef enum { BI_UNARY, BI_ROW, BI_REDUCE, BI_ONEHOT, BI_TRANSPOSE, BI_DROPOUT } BuiltinKind;

static const struct {
  const char *name;
  BuiltinKind kind;
  Op op;
  int nparams;
  ParamSpec params[2];
} builtins[] = {
    {"relu", BI_UNARY, OP_RELU, 1, {{"x", false}}},
    {"sigmoid", BI_UNARY, OP_SIGMOID, 1, {{"x", false}}},
    {"tanh", BI_UNARY, OP_TANH, 1, {{"x", false}}},
    {"exp", BI_UNARY, OP_EXP, 1, {{"x", false}}},
    {"log", BI_UNARY, OP_LOG, 1, {{"x", false}}},
    {"sqrt", BI_UNARY, OP_SQRT, 1, {{"x", false}}},
    {"abs", BI_UNARY, OP_ABS, 1, {{"x", false}}},
    {"softmax", BI_ROW, OP_SOFTMAX, 2, {{"x", false}, {"axis", true}}},
    {"log_softmax", BI_ROW, OP_LOG_SOFTMAX, 2, {{"x", false}, {"axis", true}}},
    {"sum", BI_REDUCE, OP_SUM, 2, {{"x", false}, {"axis", true}}},
    {"mean", BI_REDUCE, OP_MEAN, 2, {{"x", false}, {"axis", true}}},
    {"max", BI_REDUCE, OP_MAX, 2, {{"x", false}, {"axis", true}}},
    {"onehot", BI_ONEHOT, OP_ONEHOT, 1, {{"y", false}}},
    {"transpose", BI_TRANSPOSE, OP_TRANSPOSE, 1, {{"x", false}}},
    {"dropout", BI_DROPOUT, OP_DROPOUT_MASK, 2, {{"x", false}, {"p", false}}},
};
#define NBUILTINS ((int)(sizeof builtins / sizeof builtins[0]))

static int find_builtin(const char *name) {
  for (int i = 0; i < NBUILTINS; i++)
    if (strcmp(builtins[i].name, name) == 0) return i;
  return -1;
}

static Value eval_builtin(Ctx *c, const Expr *e, int bi) {
  const Expr *argx[2] = {NULL, NULL};
  SrcLoc argloc[2];
  const char *what = arena_printf(c->a, "'%s'", builtins[bi].name);
  if (!match_args(c, e, what, builtins[bi].params, builtins[bi].nparams, argx, argloc, SRCLOC_NONE))
    return v_error();
  Value x = eval(c, argx[0]);
  Value a1 = argx[1] ? eval(c, argx[1]) : v_error();
  if (x.kind == VK_ERROR || (argx[1] && a1.kind == VK_ERROR)) return v_error();
  BuiltinKind k = builtins[bi].kind;
  Op op = builtins[bi].op;

  if (k == BI_ONEHOT) {
    if (x.kind != VK_TENSOR || x.dtype != DT_LABEL) {
      Note n;
      int nn = origin_note(c, &x, &n) ? 1 : 0;
      report(c, argx[0]->loc, &n, nn, "onehot() expects a label, but its argument is %s", vtype(c, &x));
      return v_error();
    }
    return tensor_value(DT_F32, x.rank, x.dims, emit(c, OP_ONEHOT, 1, x.node, -1, DT_F32, x.rank, x.dims, e->loc), e->loc);
  }
  if (reject_label(c, &x, argx[0]->loc, arena_printf(c->a, "as the argument of %s", what))) return v_error();
  if (x.kind == VK_NUMBER) {
    ERR(c, argx[0]->loc, "%s expects a tensor, not a constant", what);
    return v_error();
  }
  switch (k) {
  case BI_UNARY:
    return tensor_value(x.dtype, x.rank, x.dims, emit(c, op, 1, x.node, -1, x.dtype, x.rank, x.dims, e->loc), e->loc);
  case BI_TRANSPOSE: {
    if (x.rank != 2) {
      ERR(c, argx[0]->loc, "transpose() expects a rank-2 tensor, got %s", vtype(c, &x));
      return v_error();
    }
    int64_t d[2] = {x.dims[1], x.dims[0]};
    return tensor_value(x.dtype, 2, d, emit(c, OP_TRANSPOSE, 1, x.node, -1, x.dtype, 2, d, e->loc), e->loc);
  }
  case BI_DROPOUT: {
    if (a1.kind != VK_NUMBER) {
      ERR(c, argx[1]->loc, "the dropout probability must be a constant number, not %s", vtype(c, &a1));
      return v_error();
    }
    if (a1.known && !(a1.num >= 0 && a1.num < 1)) {
      ERR(c, argx[1]->loc, "the dropout probability must be in [0, 1), got %g", a1.num);
      return v_error();
    }
    int32_t mask = emit(c, OP_DROPOUT_MASK, 0, -1, -1, x.dtype, x.rank, x.dims, e->loc);
    if (node(c, mask)) {
      node(c, mask)->fattr[0] = a1.num;
      node(c, mask)->iattr = c->model->ndropout++;
    }
    return tensor_value(x.dtype, x.rank, x.dims, emit(c, OP_MUL, 2, x.node, mask, x.dtype, x.rank, x.dims, e->loc), e->loc);
  }
  case BI_ROW:
  case BI_REDUCE: {
    int64_t axis = k == BI_ROW ? -1 : IR_AXIS_ALL;
    bool has_axis = argx[1] != NULL;
    if (has_axis && !const_int(c, &a1, argx[1]->loc, "the axis", &axis)) return v_error();
    if (k == BI_ROW && x.rank < 1) {
      ERR(c, argx[0]->loc, "%s expects a tensor of rank 1 or more, got %s", what, vtype(c, &x));
      return v_error();
    }
    if (k == BI_ROW || has_axis) {
      if (axis < -x.rank || axis >= x.rank) {
        Note n;
        int nn = origin_note(c, &x, &n) ? 1 : 0;
        report(c, argx[1] ? argx[1]->loc : e->loc, &n, nn, "axis %lld is out of range for %s (rank %d)",
               (long long)axis, vshape(c, &x), x.rank);
        return v_error();
      }
      if (axis < 0) axis += x.rank;
    }
    if (k == BI_ROW) {
      Value v = tensor_value(x.dtype, x.rank, x.dims, emit(c, op, 1, x.node, -1, x.dtype, x.rank, x.dims, e->loc), e->loc);
      if (node(c, v.node)) node(c, v.node)->iattr = axis;
      return v;
    }
    int64_t d[IR_MAX_RANK];
    int r = 0;
    if (has_axis)
      for (int i = 0; i < x.rank; i++)
        if (i != axis) d[r++] = x.dims[i];
    Value v = tensor_value(x.dtype, r, d, emit(c, op, 1, x.node, -1, x.dtype, r, d, e->loc), e->loc);
    if (node(c, v.node)) node(c, v.node)->iattr = has_axis ? axis : IR_AXIS_ALL;
    return v;
  }
  default:
    break;
  }
  return v_error();
}

/* ------------------------------------------------------------------ types */

static int dtype_of(Ctx *c, const TypeAst *t, bool *ok) {
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
static bool check_type(Ctx *c, const TypeAst *t, bool model_input) {
  if (t->kind != TY_TENSOR) {
    if (model_input) {
      ERR(c, t->loc, "a model input must be a tensor such as f32[B, 784] or label[B, 10]");
      return false;
    }
    return true;
  }
  bool ok;
  int dt = dtype_of(c, t, &ok);
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
  if (dt == DT_LABEL && t->rank != 2) {
    ERR(c, t->loc, "a label type has two dims, the batch and the number of classes: label[B, C]");
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
  return true;
}

/* Resolve the dims of a `param` or return type in a frame: every name must be bound. */
static bool resolve_dims(Ctx *c, Frame *f, const TypeAst *t, int64_t *dims, const char *what) {
  for (int i = 0; i < t->rank; i++) {
    const DimAst *d = &t->dims[i];
    if (!d->name) {
      if (d->value == 0) return false;
      dims[i] = d->value;
      continue;
    }
    if (strcmp(d->name, "B") == 0) {
      dims[i] = DIM_BATCH;
      continue;
    }
    DimBind *b = lookup_dim(f, d->name);
    if (!b) {
      ERR(c, d->loc, "unknown dim '%s' in %s: dims must be numbers, B, or names bound by the signature", d->name, what);
      return false;
    }
    if (b->bad) {
      ERR(c, d->loc, "dim '%s' = %lld in %s must be between 1 and %lld", d->name, (long long)b->bad_value, what,
          (long long)FE_MAX_DIM);
      return false;
    }
    dims[i] = b->dim;
  }
  return true;
}

/* ------------------------------------------------------------------ statements */

static Value call_fn(Ctx *c, const Expr *e, const FnInfo *fi);
static void check_fn(Ctx *c, FnInfo *fi);

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
    const FnInfo *fi = find_fn(c, e->text);
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

static const char *unique_param_name(Ctx *c, const char *name) {
  FeModel *m = c->model;
  const char *try = name;
  for (int k = 2;; k++) {
    bool taken = false;
    for (int i = 0; i < m->nparams && !taken; i++)
      if (strcmp(m->nodes[m->params[i]].name, try) == 0) taken = true;
    if (!taken) return try;
    try = arena_printf(c->a, "%s#%d", name, k);
  }
}

/* param NAME: type init INIT[(args)] */
static void stmt_param(Ctx *c, Frame *f, const Stmt *s) {
  const TypeAst *t = &s->type;
  if (!s->init) {   /* a syntax error, already reported */
    define(c, f, s->name, v_error(), s->loc);
    return;
  }
  bool ok = true;
  if (t->kind != TY_TENSOR) {
    ERR(c, t->loc, "a parameter must be a tensor such as [I, n]");
    ok = false;
  }
  int dt = f->dtype;
  if (ok && t->dtype) {
    dt = dtype_of(c, t, &ok);
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
  if (ok && !resolve_dims(c, f, t, dims, arena_printf(c->a, "parameter '%s'", s->name))) ok = false;
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
      if (!match_args(c, &call, what, ps, np, ax, al, SRCLOC_NONE)) ok = false;
      for (int i = 0; ok && i < np; i++) {
        Value v = eval(c, ax[i]);
        if (v.kind == VK_ERROR) { ok = false; break; }
        if (v.kind != VK_NUMBER) {
          ERR(c, ax[i]->loc, "argument '%s' of %s must be a constant number, not %s", ps[i].name, what, vtype(c, &v));
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
    define(c, f, s->name, v_error(), s->loc);
    return;
  }
  const char *name = join(c, f->prefix, s->name);
  int32_t id = -1;
  if (c->model) {
    name = unique_param_name(c, name);
    id = emit(c, OP_PARAM, 0, -1, -1, dt, t->rank, dims, s->loc);
    FeNode *nd = node(c, id);
    nd->name = name;
    nd->iattr = init;
    nd->fattr[0] = fa[0];
    nd->fattr[1] = fa[1];
    if (f->param_loc.line > 0) nd->loc = f->param_loc;
    push_id(c, &c->model->params, &c->model->nparams, id);
  }
  Value v = tensor_value(dt, t->rank, dims, id, s->loc);
  v.origin_name = s->name;
  v.origin_decl = true;
  define(c, f, s->name, v, s->loc);
}

/* Evaluate a statement's expression with its call paths planned. */
static Value eval_stmt_expr(Ctx *c, Frame *f, const Stmt *s) {
  plan_paths(c, f, s);
  Value v = eval(c, s->value);
  f->calls = NULL;
  f->ncalls = 0;
  return v;
}

/* The body of a layer or loss function: returns the value of its `return`. */
static Value eval_body(Ctx *c, Frame *f, const Def *d) {
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
      Value v = eval_stmt_expr(c, f, s);
      if (v.kind != VK_ERROR) {
        v.origin = s->value->loc;
        v.origin_name = s->name;
        v.origin_decl = false;
      }
      define(c, f, s->name, v, s->loc);
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
      ret = eval_stmt_expr(c, f, s);
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
static Value check_return(Ctx *c, Frame *f, const Def *d, Value v, SrcLoc loc) {
  if (v.kind == VK_ERROR) return v;
  if (v.kind == VK_NUMBER) v = as_tensor(c, v, DT_F32, loc);
  if (reject_label(c, &v, loc, "as a return value")) return v_error();
  if (d->kind == DEF_LOSS && v.rank != 0) {
    ERR(c, loc, "loss '%s' must return a scalar, but returns shape %s; reduce it with mean(...) or sum(...)", d->name,
        vshape(c, &v));
    return v_error();
  }
  if (d->ret && d->ret->kind == TY_TENSOR && d->ret->rank >= 0 && d->ret->rank <= IR_MAX_RANK) {
    int64_t dims[IR_MAX_RANK];
    bool ok = true;
    int dt = d->ret->dtype ? dtype_of(c, d->ret, &ok) : v.dtype;
    if (!ok || !resolve_dims(c, f, d->ret, dims, "the return type")) return v_error();
    bool same = dt == v.dtype && d->ret->rank == v.rank;
    for (int i = 0; same && i < v.rank; i++) same = dims[i] == v.dims[i];
    if (!same) {
      Note n;
      note_at(&n, d->ret->loc, "declared return type is %s%s", ir_dtype_name((DType)dt), shape_str(c, d->ret->rank, dims));
      report(c, loc, &n, 1, "%s '%s' returns %s, which is not its declared return type", d->kind == DEF_LOSS ? "loss" : "layer",
             d->name, vtype(c, &v));
      return v_error();
    }
  } else if (d->ret && d->ret->kind != TY_TENSOR) {
    ERR(c, d->ret->loc, "a layer returns a tensor");
    return v_error();
  }
  return v;
}

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
  if (t->rank != v->rank) {
    Note n[2];
    int nn = 0;
    if (origin_note(c, v, &n[nn])) nn++;
    note_at(&n[nn++], p->loc, "parameter '%s' of '%s' declared here", p->name, fn->name);
    report(c, argloc, n, nn, "argument '%s' of '%s' must have rank %d, but has shape %s", p->name, fn->name, t->rank,
           vshape(c, v));
    return false;
  }
  for (int i = 0; i < t->rank; i++) {
    const DimAst *d = &t->dims[i];
    int64_t actual = v->dims[i];
    if (!d->name) {
      if (d->value != actual) {
        Note n[2];
        int nn = 0;
        if (origin_note(c, v, &n[nn])) nn++;
        note_at(&n[nn++], d->loc, "parameter '%s' of '%s' declared here", p->name, fn->name);
        report(c, argloc, n, nn, "dim %d of argument '%s' of '%s' must be %lld, but its shape is %s", i, p->name,
               fn->name, (long long)d->value, vshape(c, v));
        return false;
      }
      continue;
    }
    if (strcmp(d->name, "B") == 0) {
      if (actual != DIM_BATCH) {
        Note n[2];
        int nn = 0;
        if (origin_note(c, v, &n[nn])) nn++;
        note_at(&n[nn++], d->loc, "B, the batch dim, is declared here");
        report(c, argloc, n, nn, "dim %d of argument '%s' of '%s' is the batch dim B, which cannot be %s (shape %s)", i,
               p->name, fn->name, dim_name(c, actual, d1, sizeof d1), vshape(c, v));
        return false;
      }
      continue;
    }
    DimBind *b = lookup_dim(f, d->name);
    if (!b) {
      b = bind_dim(c, f, d->name, actual);
      b->from = p->name;
      b->from_value = *v;
      continue;
    }
    if (b->dim != actual) {
      Note n[2];
      int nn = 0;
      if (!b->from_int && origin_note(c, &b->from_value, &n[nn])) nn++;
      if (origin_note(c, v, &n[nn])) nn++;
      if (b->from_int)
        report(c, callloc, n, nn,
               "shape %s does not agree with %s = %s in call to '%s': dim %s of '%s' is %s",
               vshape(c, v), d->name, dim_name(c, b->dim, d1, sizeof d1), fn->name, d->name, p->name,
               dim_name(c, actual, d2, sizeof d2));
      else
        report(c, callloc, n, nn,
               "shapes %s and %s do not agree in call to '%s': dim %s is %s in '%s' but %s in '%s'",
               vshape(c, &b->from_value), vshape(c, v), fn->name, d->name, dim_name(c, b->dim, d1, sizeof d1), b->from,
               dim_name(c, actual, d2, sizeof d2), p->name);
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
static Value call_fn(Ctx *c, const Expr *e, const FnInfo *fi) {
  const Def *fn = fi->def;
  int np;
  ParamSpec *ps = param_specs(c, fn, &np);
  const Expr **argx = arena_alloc(c->a, (size_t)(np ? np : 1) * sizeof *argx);
  SrcLoc *argloc = arena_alloc(c->a, (size_t)(np ? np : 1) * sizeof *argloc);
  const char *what = arena_printf(c->a, "%s '%s'", fn->kind == DEF_LOSS ? "loss" : "layer", fn->name);
  if (!match_args(c, e, what, ps, np, argx, argloc, fn->loc)) return v_error();

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
    args[i] = eval(c, argx[i] ? argx[i] : p->def);
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
  if (!fi->checked) check_fn(c, (FnInfo *)fi);   /* callees first: each error once */
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
      note_at(&n, p->loc, "parameter '%s' of '%s' declared here", p->name, fn->name);
      report(c, al, &n, 1, "argument '%s' of '%s' must be a compile-time %s constant, not a tensor (%s)", p->name,
             fn->name, p->type.kind == TY_INT ? "integer" : "number", vtype(c, v));
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
      if (!b.known && d == DIM_UNKNOWN) d = new_sym(c, arena_printf(c->a, "%s?", p->name));
      b.idim = d;
      DimBind *db = bind_dim(c, &f, p->name, d);
      db->from_int = true;
      if (b.known && (b.num < 1 || b.num > (double)FE_MAX_DIM) && used_as_dim(fn, p->name)) {
        Note n;
        note_at(&n, p->loc, "parameter '%s' of '%s' declared here", p->name, fn->name);
        report(c, al, &n, 1, "argument '%s' of '%s' is a dimension and must be between 1 and %lld, not %lld", p->name,
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
    bind(c, &f, p->name, b, p->loc);
  }
  if (!ok) return v_error();
  i = 0;
  for (const ParamDecl *p = fn->params; p; p = p->next, i++) {
    if (p->type.kind != TY_TENSOR) continue;
    SrcLoc al = argx[i] ? argx[i]->loc : p->loc;
    Value v = args[i];
    bool dok;
    int want = dtype_of(c, &p->type, &dok);
    if (v.kind == VK_NUMBER) v = as_tensor(c, v, want == DT_F64 ? DT_F64 : DT_F32, al);
    if (want == DT_LABEL && v.dtype != DT_LABEL) {
      Note n;
      note_at(&n, p->loc, "parameter '%s' of '%s' declared here", p->name, fn->name);
      report(c, al, &n, 1, "argument '%s' of '%s' must be a label, but is %s", p->name, fn->name, vtype(c, &v));
      ok = false;
      continue;
    }
    if (want != DT_LABEL && v.dtype == DT_LABEL) {
      if (reject_label(c, &v, al, arena_printf(c->a, "as argument '%s' of '%s', which is not a label", p->name, fn->name)))
        ok = false;
      continue;
    }
    if (want >= 0 && want != v.dtype) {
      ERR(c, al, "argument '%s' of '%s' must be %s, but is %s", p->name, fn->name, ir_dtype_name((DType)want),
          vtype(c, &v));
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
    bind(c, &f, p->name, v, p->loc);
  }
  if (!ok) return v_error();

  c->top = &f;
  c->depth++;
  Value r = eval_body(c, &f, fn);
  SrcLoc rloc = fn->end_loc;
  for (const Stmt *s = fn->body; s; s = s->next)
    if (s->kind == ST_RETURN) rloc = s->value->loc;
  r = check_return(c, &f, fn, r, rloc);
  c->depth--;
  c->top = caller;
  if (r.kind == VK_ERROR) return r;
  r.origin = e->loc;
  r.origin_name = NULL;
  r.origin_decl = false;
  return r;
}

/* Edit distance of two short names (for "did you mean"); large for long ones. */
static int edit_distance(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b);
  if (la > 40 || lb > 40) return 99;
  int d[41][41];
  for (size_t i = 0; i <= la; i++) d[i][0] = (int)i;
  for (size_t j = 0; j <= lb; j++) d[0][j] = (int)j;
  for (size_t i = 1; i <= la; i++)
    for (size_t j = 1; j <= lb; j++) {
      int best = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
      if (d[i - 1][j] + 1 < best) best = d[i - 1][j] + 1;
      if (d[i][j - 1] + 1 < best) best = d[i][j - 1] + 1;
      d[i][j] = best;
    }
  return d[la][lb];
}

static void consider(const char **best, int *bestd, const char *name, const char *cand) {
  int d = edit_distance(name, cand);
  int limit = strlen(name) <= 3 ? 1 : 2;
  if (d <= limit && d < *bestd) {
    *best = cand;
    *bestd = d;
  }
}

/* " (did you mean 'h2'?)" or "" */
static const char *suggest(Ctx *c, const char *name, bool functions) {
  const char *best = NULL;
  int bestd = 99;
  if (functions) {
    for (int i = 0; i < c->nfns; i++) consider(&best, &bestd, name, c->fns[i].def->name);
    for (int i = 0; i < NBUILTINS; i++) consider(&best, &bestd, name, builtins[i].name);
  } else {
    for (Binding *b = c->top->vars; b; b = b->next) consider(&best, &bestd, name, b->name);
  }
  return best ? arena_printf(c->a, " (did you mean '%s'?)", best) : "";
}

static Value eval(Ctx *c, const Expr *e) {
  switch (e->kind) {
  case EX_ERROR: return v_error();
  case EX_NUMBER: return v_number(e->num, e->is_int, true, DIM_UNKNOWN, e->loc);
  case EX_NAME: {
    Binding *b = lookup(c->top, e->text);
    if (b) return b->v;
    if (find_fn(c, e->text) || find_builtin(e->text) >= 0)
      ERR(c, e->loc, "'%s' is a function; call it with arguments, as in %s(x)", e->text, e->text);
    else
      ERR(c, e->loc, "unknown name '%s'%s", e->text, suggest(c, e->text, false));
    return v_error();
  }
  case EX_NEG: return eval_neg(c, e);
  case EX_BINARY: return eval_binary(c, e);
  case EX_CALL: {
    const FnInfo *fi = find_fn(c, e->text);
    if (fi) return call_fn(c, e, fi);
    int bi = find_builtin(e->text);
    if (bi >= 0) return eval_builtin(c, e, bi);
    Binding *b = lookup(c->top, e->text);
    if (b) ERR(c, e->name_loc, "'%s' is a value, not a layer or function", e->text);
    else ERR(c, e->name_loc, "unknown layer or function '%s'%s", e->text, suggest(c, e->text, true));
    for (const Arg *g = e->args; g; g = g->next) eval(c, g->value);
    return v_error();
  }
  }
  return v_error();
}

/* ------------------------------------------------------------------ definitions */

/* Step 2: check a layer or loss on its own, its signature dims rigid symbols. */
static void check_fn(Ctx *c, FnInfo *fi) {
  const Def *d = fi->def;
  int errors = diag_error_count();
  fi->checked = true;
  c->depth++;
  Frame f;
  memset(&f, 0, sizeof f);
  f.fn = d;
  f.prefix = d->name;
  for (const ParamDecl *p = d->params; p; p = p->next) {
    Binding *dup = lookup(&f, p->name);
    if (dup) {
      Note n;
      report(c, p->loc, note_at(&n, dup->decl, "previous parameter '%s' is here", p->name), 1,
             "duplicate parameter '%s' in '%s'", p->name, d->name);
      continue;
    }
    if (!check_type(c, &p->type, false)) {
      bind(c, &f, p->name, v_error(), p->loc);
      continue;
    }
    if (p->type.kind != TY_TENSOR) {
      if (p->def) {
        Value dv = eval(c, p->def);
        if (dv.kind != VK_ERROR && (dv.kind != VK_NUMBER || (p->type.kind == TY_INT && !dv.is_int)))
          ERR(c, p->def->loc, "the default of '%s' must be a constant %s", p->name,
              p->type.kind == TY_INT ? "integer" : "number");
      }
      Value v = v_number(0, p->type.kind == TY_INT, false, DIM_UNKNOWN, p->loc);
      if (p->type.kind == TY_INT) {
        DimBind *old = lookup_dim(&f, p->name);
        v.idim = old ? old->dim : new_sym(c, p->name);
        if (!old) bind_dim(c, &f, p->name, v.idim)->from_int = true;
      }
      v.origin_name = p->name;
      v.origin_decl = true;
      bind(c, &f, p->name, v, p->loc);
      continue;
    }
    if (p->def) ERR(c, p->def->loc, "only int and float parameters can have a default value");
    bool ok;
    int dt = dtype_of(c, &p->type, &ok);
    int64_t dims[IR_MAX_RANK];
    for (int i = 0; i < p->type.rank; i++) {
      const DimAst *da = &p->type.dims[i];
      if (!da->name) dims[i] = da->value;
      else if (strcmp(da->name, "B") == 0) dims[i] = DIM_BATCH;
      else {
        DimBind *b = lookup_dim(&f, da->name);
        if (!b) b = bind_dim(c, &f, da->name, new_sym(c, da->name));
        dims[i] = b->dim;
      }
    }
    Value v = tensor_value(dt < 0 ? DT_F32 : dt, p->type.rank, dims, -1, p->loc);
    v.origin_name = p->name;
    v.origin_decl = true;
    bind(c, &f, p->name, v, p->loc);
  }
  Frame *saved = c->top;
  FeModel *saved_model = c->model;
  c->model = NULL;
  c->top = &f;
  Value r = eval_body(c, &f, d);
  SrcLoc rloc = d->end_loc;
  for (const Stmt *s = d->body; s; s = s->next)
    if (s->kind == ST_RETURN) rloc = s->value->loc;
  if (r.kind != VK_ERROR) check_return(c, &f, d, r, rloc);
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

static void dfs(Ctx *c, FnInfo *fi, FnInfo **stack, int depth) {
  fi->color = 1;
  stack[depth] = fi;
  const Expr **calls = bp_xmalloc(MAX_CALLS_PER_DEF * sizeof *calls);
  int n = body_calls(fi->def, calls, MAX_CALLS_PER_DEF);
  bool has = false;
  for (const Stmt *s = fi->def->body; s; s = s->next)
    if (s->kind == ST_PARAM && fi->def->kind == DEF_LAYER) has = true;
  for (int i = 0; i < n; i++) {
    FnInfo *g = (FnInfo *)find_fn(c, calls[i]->text);
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
    if (g->color == 0) dfs(c, g, stack, depth + 1);
    if (g->has_params == 1) has = true;
  }
  bp_free(calls);
  fi->has_params = has ? 1 : 0;
  fi->color = 2;
}

/* ------------------------------------------------------------------ models */

static void check_model(Ctx *c, FeUnit *u, const Def *d) {
  int errors = diag_error_count();
  FeModel *m = arena_alloc(c->a, sizeof *m);
  m->name = d->name;
  m->loc = d->loc;
  m->def = (Def *)d;
  m->loss = -1;
  fe_train_defaults(&m->train);
  c->model = m;
  Frame f;
  memset(&f, 0, sizeof f);
  c->top = &f;
  int index = 0;
  for (const ParamDecl *p = d->params; p; p = p->next, index++) {
    Binding *dup = lookup(&f, p->name);
    if (dup) {
      Note n;
      report(c, p->loc, note_at(&n, dup->decl, "previous input '%s' is here", p->name), 1,
             "duplicate input '%s' in model '%s'", p->name, d->name);
      continue;
    }
    if (p->def) ERR(c, p->def->loc, "a model input cannot have a default value");
    if (!check_type(c, &p->type, true)) {
      bind(c, &f, p->name, v_error(), p->loc);
      continue;
    }
    bool ok;
    int dt = dtype_of(c, &p->type, &ok);
    if (dt < 0) dt = DT_F32;
    int64_t dims[IR_MAX_RANK];
    dims[0] = DIM_BATCH;
    for (int i = 1; i < p->type.rank; i++) dims[i] = p->type.dims[i].value;
    if (p->type.dims[0].name && !lookup_dim(&f, p->type.dims[0].name))
      bind_dim(c, &f, p->type.dims[0].name, DIM_BATCH);
    int32_t id = emit(c, OP_INPUT, 0, -1, -1, dt, p->type.rank, dims, p->loc);
    m->nodes[id].name = p->name;
    m->nodes[id].iattr = index;
    push_id(c, &m->inputs, &m->ninputs, id);
    Value v = tensor_value(dt, p->type.rank, dims, id, p->loc);
    v.origin_name = p->name;
    v.origin_decl = true;
    bind(c, &f, p->name, v, p->loc);
  }
  const Stmt *first_loss = NULL;
  Binding *outputs = NULL;
  for (const Stmt *s = d->body; s; s = s->next) {
    switch (s->kind) {
    case ST_ASSIGN:
    case ST_OUTPUT: {
      Value v = eval_stmt_expr(c, &f, s);
      if (s->kind == ST_OUTPUT && v.kind != VK_ERROR) {
        if (v.kind == VK_NUMBER) {
          ERR(c, s->value->loc, "output '%s' must be a tensor, not a constant", s->name);
          v = v_error();
        } else if (reject_label(c, &v, s->value->loc, "as an output")) {
          v = v_error();
        } else {
          int32_t id = emit(c, OP_OUTPUT, 1, v.node, -1, v.dtype, v.rank, v.dims, s->loc);
          m->nodes[id].name = s->name;
          push_id(c, &m->outputs, &m->noutputs, id);
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
        push_id(c, &m->activations, &m->nactivations, v.node);
        const char **names = arena_alloc(c->a, (size_t)(k + 1) * sizeof *names);
        SrcLoc *locs = arena_alloc(c->a, (size_t)(k + 1) * sizeof *locs);
        if (k) {
          memcpy(names, m->activation_names, (size_t)k * sizeof *names);
          memcpy(locs, m->activation_locs, (size_t)k * sizeof *locs);
        }
        names[k] = s->name;
        locs[k] = s->loc;
        m->activation_names = names;
        m->activation_locs = locs;
      }
      if (s->kind == ST_OUTPUT) {
        Binding *o = NULL;
        for (Binding *b = outputs; b; b = b->next)
          if (strcmp(b->name, s->name) == 0) o = b;
        if (!o) {
          Binding *b = arena_alloc(c->a, sizeof *b);
          b->name = s->name;
          b->decl = s->loc;
          b->next = outputs;
          outputs = b;
        }
      }
      define(c, &f, s->name, v, s->loc);
      break;
    }
    case ST_LOSS: {
      if (first_loss) {
        Note n;
        report(c, s->loc, note_at(&n, first_loss->loc, "the first loss is here"), 1,
               "a model has exactly one loss; '%s' has a second one here", d->name);
        break;
      }
      first_loss = s;
      Value v = eval_stmt_expr(c, &f, s);
      if (v.kind == VK_ERROR) break;
      if (v.kind == VK_NUMBER) {
        ERR(c, s->value->loc, "the loss must depend on the model's inputs, not be a constant");
        break;
      }
      if (reject_label(c, &v, s->value->loc, "as the loss")) break;
      if (v.rank != 0) {
        Note n;
        int nn = origin_note(c, &v, &n) ? 1 : 0;
        report(c, s->value->loc, &n, nn,
               "the loss must be a scalar, but this has shape %s; reduce it with mean(...) or sum(...)", vshape(c, &v));
        break;
      }
      m->loss = emit(c, OP_LOSS, 1, v.node, -1, v.dtype, 0, NULL, s->loc);
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
      const FnInfo *old = find_fn(&c, d->name);
      if (old && !pass) {
        Note n;
        report(&c, d->loc, note_at(&n, old->def->loc, "previous definition of '%s' is here", d->name), 1,
               "redefinition of '%s'", d->name);
        continue;
      }
      if (old) continue;   /* shadowed standard library definition */
      if (find_builtin(d->name) >= 0) {
        ERR(&c, d->loc, "'%s' is a built-in op and cannot be redefined", d->name);
        continue;
      }
      FnInfo *fi = &c.fns[c.nfns++];
      fi->def = d;
      fi->has_params = -1;
    }
  for (Def *d = user->defs; d; d = d->next) {
    if (d->kind != DEF_MODEL) continue;
    for (Def *e = user->defs; e != d; e = e->next)
      if (e->kind == DEF_MODEL && strcmp(e->name, d->name) == 0) {
        Note n;
        report(&c, d->loc, note_at(&n, e->loc, "previous definition of model '%s' is here", d->name), 1,
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
    if (c.fns[i].color == 0) dfs(&c, &c.fns[i], stack, 0);

  /* each layer and loss on its own */
  for (int i = 0; i < c.nfns; i++)
    if (!c.fns[i].bad && !c.fns[i].checked) check_fn(&c, &c.fns[i]);

  /* models, then their train blocks */
  int nmodels = 0;
  for (Def *d = user->defs; d; d = d->next)
    if (d->kind == DEF_MODEL) {
      check_model(&c, u, d);
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
      report(&c, d->loc, note_at(&n, prev->loc, "the first train block for '%s' is here", d->name), 1,
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
