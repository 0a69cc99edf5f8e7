/* frontend/sema_expr.c — expressions: numbers and names, unary and binary operators
 * (broadcasting, constant folding), argument matching, the built-in ops and the
 * dispatcher sema_eval. sema.h lists the files of semantic analysis. */
#include "frontend/sema.h"

#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <string.h>

/* ------------------------------------------------------------------ expressions */


static const char *label_name(const Value *v) { return v->origin_name ? v->origin_name : "this value"; }

/* Labels may only go to onehot(), embed() (tokens are labels) or to a label argument
 * (the losses take theirs that way). */
bool sema_reject_label(Ctx *c, const Value *v, SrcLoc loc, const char *what) {
  if (v->kind != VK_TENSOR || v->dtype != DT_LABEL) return false;
  Note n;
  int nn = sema_origin_note(c, v, &n) ? 1 : 0;
  sema_report(c, loc, &n, nn,
         "'%s' is a label (%s) and cannot be used %s; labels may only be passed to onehot(), embed() or to a label "
         "argument", label_name(v), sema_vtype(c, v), what);
  return true;
}

static Value eval_neg(Ctx *c, const Expr *e) {
  Value x = sema_eval(c, e->lhs);
  if (x.kind == VK_ERROR) return x;
  if (x.kind == VK_NUMBER) {
    return v_number(-x.num, x.is_int, x.known, DIM_UNKNOWN, e->loc);
  }
  if (sema_reject_label(c, &x, e->lhs->loc, "in arithmetic")) return v_error();
  Value r = sema_tensor_value(x.dtype, x.rank, x.dims, sema_emit(c, OP_NEG, 1, x.node, -1, x.dtype, x.rank, x.dims, e->loc), e->loc);
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

/* A value holds the batch dim B at most once. A compiled training step sizes its memory
 * as fixed + per_row * B (runtime/model.h), so a [B,B] value, quadratic in the batch,
 * cannot be compiled: reject the operation that would create it, at the expression,
 * with notes where its operands got their shapes. Every other operation keeps or drops
 * its operand's dims, so `@` and broadcasting are the only two ways in. */
static bool reject_batch_twice(Ctx *c, const Expr *e, const Value *l, const Value *r, int rank, const int64_t *dims) {
  int n = 0;
  for (int i = 0; i < rank; i++) n += dims[i] == DIM_BATCH;
  if (n < 2) return false;
  Note notes[2];
  int nn = 0;
  if (sema_origin_note(c, l, &notes[nn])) nn++;
  if (sema_origin_note(c, r, &notes[nn])) nn++;
  sema_report(c, e->loc, notes, nn,
              "%s %c %s would have shape %s, with the batch dim B twice; bpcc sizes a training step's memory "
              "linearly in the batch, so a value may hold B at most once",
              sema_vshape(c, l), e->op, sema_vshape(c, r), sema_shape_str(c, rank, dims));
  return true;
}

/* a @ b: the product of the last two dims, [..., m, k] @ [..., k, n] -> [..., m, n], as
 * torch.matmul for operands of rank 2 to 4: the dims before the last two (the batch
 * dims) broadcast NumPy-style, and a rank-2 b multiplies every matrix of a
 * ([B, T, D] @ [D, N] -> [B, T, N], a linear layer over a sequence). The result holds
 * the batch dim B at most once (reject_batch_twice). */
static Value eval_matmul(Ctx *c, const Expr *e, Value l, Value r) {
  Note n[2];
  int nn = 0;
  if (sema_origin_note(c, &l, &n[nn])) nn++;
  if (sema_origin_note(c, &r, &n[nn])) nn++;
  if (l.kind != VK_TENSOR || r.kind != VK_TENSOR || l.rank < 2 || r.rank < 2) {
    sema_report(c, e->loc, n, nn, "'@' needs two tensors of rank 2 to 4, got %s @ %s", sema_vtype(c, &l), sema_vtype(c, &r));
    return v_error();
  }
  if (l.dtype != r.dtype) {
    ERR(c, e->loc, "'@' operands have different dtypes: %s @ %s", sema_vtype(c, &l), sema_vtype(c, &r));
    return v_error();
  }
  int64_t ka = l.dims[l.rank - 1], kb = r.dims[r.rank - 2];
  if (ka != kb) {
    char d1[64], d2[64];
    sema_report(c, e->loc, n, nn, "matmul shapes do not agree: %s @ %s (inner dims %s and %s differ)",
           sema_vshape(c, &l), sema_vshape(c, &r), sema_dim_name(c, ka, d1, sizeof d1), sema_dim_name(c, kb, d2, sizeof d2));
    return v_error();
  }
  int rank;
  int64_t d[IR_MAX_RANK];
  if (!broadcast(l.rank - 2, l.dims, r.rank - 2, r.dims, &rank, d)) {
    sema_report(c, e->loc, n, nn, "the batch dims of %s @ %s do not broadcast (the dims before the last two)",
                sema_vshape(c, &l), sema_vshape(c, &r));
    return v_error();
  }
  d[rank] = l.dims[l.rank - 2];
  d[rank + 1] = r.dims[r.rank - 1];
  rank += 2;
  if (reject_batch_twice(c, e, &l, &r, rank, d)) return v_error();
  return sema_tensor_value(l.dtype, rank, d, sema_emit(c, OP_MATMUL, 2, l.node, r.node, l.dtype, rank, d, e->loc), e->loc);
}

static Value eval_binary(Ctx *c, const Expr *e) {
  Value l = sema_eval(c, e->lhs);
  Value r = sema_eval(c, e->rhs);
  if (l.kind == VK_ERROR || r.kind == VK_ERROR) return v_error();
  int op = e->op;
  if (op == '^') {
    if (r.kind != VK_NUMBER) {
      ERR(c, e->rhs->loc, "the exponent of '^' must be a constant number, not a tensor (%s)", sema_vtype(c, &r));
      return v_error();
    }
    if (l.kind == VK_NUMBER) return fold(c, op, l, r, e->loc);
    if (sema_reject_label(c, &l, e->lhs->loc, "in arithmetic")) return v_error();
    Value v = sema_tensor_value(l.dtype, l.rank, l.dims, sema_emit(c, OP_POW, 1, l.node, -1, l.dtype, l.rank, l.dims, e->loc), e->loc);
    if (sema_node(c, v.node)) sema_node(c, v.node)->fattr[0] = r.num;
    return v;
  }
  if (l.kind == VK_NUMBER && r.kind == VK_NUMBER) {
    if (op == '@') {
      ERR(c, e->loc, "'@' needs two tensors of rank 2 to 4, not constants");
      return v_error();
    }
    return fold(c, op, l, r, e->loc);
  }
  if (sema_reject_label(c, &l, e->lhs->loc, "in arithmetic") | sema_reject_label(c, &r, e->rhs->loc, "in arithmetic"))
    return v_error();
  if (op == '@') return eval_matmul(c, e, l, r);
  int dtype = l.kind == VK_TENSOR ? l.dtype : r.dtype;
  if (l.kind == VK_TENSOR && r.kind == VK_TENSOR && l.dtype != r.dtype) {
    ERR(c, e->loc, "operands of %s have different dtypes: %s and %s", op_name(op), sema_vtype(c, &l), sema_vtype(c, &r));
    return v_error();
  }
  l = sema_as_tensor(c, l, dtype, e->lhs->loc);
  r = sema_as_tensor(c, r, dtype, e->rhs->loc);
  int rank;
  int64_t d[IR_MAX_RANK];
  if (!broadcast(l.rank, l.dims, r.rank, r.dims, &rank, d)) {
    Note n[2];
    int nn = 0;
    if (sema_origin_note(c, &l, &n[nn])) nn++;
    if (sema_origin_note(c, &r, &n[nn])) nn++;
    sema_report(c, e->loc, n, nn, "shapes %s and %s do not broadcast in %s", sema_vshape(c, &l), sema_vshape(c, &r), op_name(op));
    return v_error();
  }
  if (reject_batch_twice(c, e, &l, &r, rank, d)) return v_error();
  Op iop = op == '+' ? OP_ADD : op == '-' ? OP_SUB : op == '*' ? OP_MUL : OP_DIV;
  return sema_tensor_value(dtype, rank, d, sema_emit(c, iop, 2, l.node, r.node, dtype, rank, d, e->loc), e->loc);
}

/* ---------------------------------------------------------- argument matching */

/* Match call arguments to parameter names: positional first, then keywords. out[i] is
 * the argument for parameter i or NULL. False (reported) on an arity or keyword error. */
bool sema_match_args(Ctx *c, const Expr *call, const char *what, const ParamSpec *ps, int np,
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
        if (nn) sema_note_at(&n, decl, "%s declared here", what);
        sema_report(c, g->value->loc, &n, nn, "too many arguments in call to %s: expected at most %d, got %d", what, np,
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
      if (nn) sema_note_at(&n, decl, "%s declared here", what);
      sema_report(c, call->loc, &n, nn, "missing argument '%s' in call to %s", ps[i].name, what);
      ok = false;
    }
  }
  return ok;
}

/* An integer constant (axis): literal, int argument or constant expression. */
static bool const_int(Ctx *c, const Value *v, SrcLoc loc, const char *what, int64_t *out) {
  if (v->kind == VK_ERROR) return false;
  if (v->kind != VK_NUMBER || !v->is_int) {
    ERR(c, loc, "%s must be a constant integer, not %s", what, sema_vtype(c, v));
    return false;
  }
  if (!v->known) return false;    /* generic check of a layer: unknown until instantiated */
  *out = (int64_t)v->num;
  return true;
}

/* ------------------------------------------------------------------ built-in ops */

typedef enum { BI_UNARY, BI_ROW, BI_REDUCE, BI_ONEHOT, BI_TRANSPOSE, BI_DROPOUT, BI_RESHAPE, BI_FLATTEN,
  BI_CONV2D, BI_POOL, BI_GLOBAL_POOL, BI_BATCHNORM, BI_LAYERNORM, BI_EMBED, BI_GELU, BI_CAUSAL_MASK,
  BI_ATTENTION } BuiltinKind;

static const struct {
  const char *name;
  BuiltinKind kind;
  Op op;
  int nparams;
  ParamSpec params[5];
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
    {"sum", BI_REDUCE, OP_SUM, 3, {{"x", false}, {"axis", true}, {"keep", true}}},
    {"mean", BI_REDUCE, OP_MEAN, 3, {{"x", false}, {"axis", true}, {"keep", true}}},
    {"max", BI_REDUCE, OP_MAX, 3, {{"x", false}, {"axis", true}, {"keep", true}}},
    {"onehot", BI_ONEHOT, OP_ONEHOT, 1, {{"y", false}}},
    {"transpose", BI_TRANSPOSE, OP_TRANSPOSE, 2, {{"x", false}, {"perm", true}}},
    {"dropout", BI_DROPOUT, OP_DROPOUT_MASK, 2, {{"x", false}, {"p", false}}},
    {"reshape", BI_RESHAPE, OP_RESHAPE, 2, {{"x", false}, {"shape", false}}},
    {"flatten", BI_FLATTEN, OP_RESHAPE, 1, {{"x", false}}},
    {"max_pool2d", BI_POOL, OP_MAX_POOL2D, 4, {{"x", false}, {"kernel", false}, {"stride", true}, {"padding", true}}},
    {"avg_pool2d", BI_POOL, OP_AVG_POOL2D, 4, {{"x", false}, {"kernel", false}, {"stride", true}, {"padding", true}}},
    {"global_avg_pool", BI_GLOBAL_POOL, OP_MEAN, 1, {{"x", false}}},
    {"conv2d", BI_CONV2D, OP_CONV2D, 5, {{"x", false}, {"w", false}, {"stride", true}, {"padding", true}, {"dilation", true}}},
    {"batchnorm", BI_BATCHNORM, OP_BN_NORM, 3, {{"x", false}, {"gamma", false}, {"beta", false}}},
    {"layernorm", BI_LAYERNORM, OP_LAYERNORM, 5, {{"x", false}, {"gamma", false}, {"beta", false}, {"dims", true}, {"eps", true}}},
    {"embed", BI_EMBED, OP_EMBEDDING, 2, {{"ids", false}, {"table", false}}},
    {"gelu", BI_GELU, OP_GELU, 2, {{"x", false}, {"approximate", true}}},
    {"causal_mask", BI_CAUSAL_MASK, OP_CAUSAL_MASK, 1, {{"T", false}}},
    {"attention", BI_ATTENTION, OP_ATTENTION, 5, {{"q", false}, {"k", false}, {"v", false}, {"causal", true}, {"scale", true}}},
};
#define NBUILTINS ((int)(sizeof builtins / sizeof builtins[0]))

int sema_find_builtin(const char *name) {
  for (int i = 0; i < NBUILTINS; i++)
    if (strcmp(builtins[i].name, name) == 0) return i;
  return -1;
}

/* ------------------------------------------------------------------ reshape, flatten */

/* A count of elements per row (or in all, for a value without a batch dim): the product
 * of some dims, kept as a known factor times the layer's symbolic dims (sorted), so
 * [B,R,C] and [B,C,R] agree inside a generic check. known < 0: larger than an int64
 * holds. */
typedef struct {
  int64_t known;
  int nsyms;
  int64_t syms[IR_MAX_RANK];
} RowCount;

static RowCount row_count(int rank, const int64_t *dims, int first, int skip) {
  RowCount n = {1, 0, {0}};
  for (int i = first; i < rank; i++) {
    if (i == skip) continue;
    int64_t d = dims[i];
    if (IS_SYM(d)) {
      int k = n.nsyms++;
      while (k > 0 && n.syms[k - 1] < d) {   /* source order: older symbols first */ n.syms[k] = n.syms[k - 1]; k--; }
      n.syms[k] = d;
    } else if (n.known >= 0) {
      n.known = d > 0 && n.known > INT64_MAX / d ? -1 : n.known * d;
    }
  }
  return n;
}

static bool count_eq(const RowCount *a, const RowCount *b) {
  return a->known == b->known && a->nsyms == b->nsyms && memcmp(a->syms, b->syms, (size_t)a->nsyms * sizeof a->syms[0]) == 0;
}

/* "784", "R*C", "16*R" */
static const char *count_str(Ctx *c, const RowCount *n) {
  char buf[400], d[64];
  size_t k = 0;
  buf[0] = 0;
  if (n->known < 0) return "more than 9223372036854775807";
  if (n->known != 1 || n->nsyms == 0) k += (size_t)snprintf(buf, sizeof buf, "%lld", (long long)n->known);
  for (int i = 0; i < n->nsyms && k < sizeof buf - 80; i++)
    k += (size_t)snprintf(buf + k, sizeof buf - k, "%s%s", k ? "*" : "", sema_dim_name(c, n->syms[i], d, sizeof d));
  return arena_printf(c->a, "%s", buf);
}

/* The dim for a count: a number, one symbol, or the one symbol standing for a product
 * of symbols (the same product, the same symbol: flatten(x) + flatten(x) checks). */
static int64_t count_dim(Ctx *c, const RowCount *n) {
  if (n->nsyms == 0) return n->known;
  if (n->nsyms == 1 && n->known == 1) return n->syms[0];
  char key[256];
  size_t k = (size_t)snprintf(key, sizeof key, "%lld", (long long)n->known);
  for (int i = 0; i < n->nsyms; i++) k += (size_t)snprintf(key + k, sizeof key - k, "*#%lld", (long long)n->syms[i]);
  int64_t *sym = sema_tab_get(&c->products, key);
  if (sym) return *sym;
  sym = arena_alloc(c->a, sizeof *sym);
  *sym = sema_new_sym(c, count_str(c, n));
  sema_tab_put(c->a, &c->products, arena_printf(c->a, "%s", key), sym);
  return *sym;
}

/* "[B,28,-1]": a target shape as written, its inferred dim (infer >= 0) as -1. */
static const char *target_str(Ctx *c, int rank, const int64_t *dims, int infer) {
  char buf[400], d[64];
  size_t k = 0;
  buf[k++] = '[';
  for (int i = 0; i < rank && k < sizeof buf - 80; i++)
    k += (size_t)snprintf(buf + k, sizeof buf - k, "%s%s", i ? "," : "", i == infer ? "-1" : sema_dim_name(c, dims[i], d, sizeof d));
  snprintf(buf + k, sizeof buf - k, "]");
  return arena_printf(c->a, "%s", buf);
}

static bool shape_dim(Ctx *c, const DimAst *d, int64_t *out, bool *inferred);

/* A dim expression for messages: "D / heads", "(T + 1) * 2", parenthesized where the
 * operators' precedence needs it. */
static int dim_prec(int op) { return op == '*' || op == '/' ? 2 : 1; }
static size_t dim_expr_text(const Expr *e, char *buf, size_t n, bool paren) {
  if (n < 8) return 0;
  if (e->kind == EX_BINARY) {
    int p = dim_prec(e->op);
    bool lp = e->lhs->kind == EX_BINARY && dim_prec(e->lhs->op) < p;
    bool rp = e->rhs->kind == EX_BINARY && (dim_prec(e->rhs->op) < p || (dim_prec(e->rhs->op) == p && e->op != '+' && e->op != '*'));
    size_t k = (size_t)snprintf(buf, n, "%s", paren ? "(" : "");
    k += dim_expr_text(e->lhs, buf + k, n - k, lp);
    if (k < n) k += (size_t)snprintf(buf + k, n - k, " %c ", e->op);
    if (k < n) k += dim_expr_text(e->rhs, buf + k, n - k, rp);
    if (k < n && paren) k += (size_t)snprintf(buf + k, n - k, ")");
    return k < n ? k : n - 1;
  }
  int k = snprintf(buf, n, "%s", e->text && (e->kind == EX_NAME || e->kind == EX_NUMBER) ? e->text : "?");
  return (size_t)k < n ? (size_t)k : n - 1;
}

/* A compound dim of a shape literal: integers, dim and int names, and + - * / of them
 * (`D / heads` splits D into heads). Division must be exact, every result a dim (1 to
 * FE_MAX_DIM); B cannot take part (the batch dim stays whole). Inside the generic check
 * of a layer a result over its symbolic dims is a symbol of its own, one per written
 * expression over the same operands (so two `D / heads` agree), checked at each call. */
static bool dim_expr(Ctx *c, const Expr *e, int64_t *out) {
  char text[160];
  switch (e->kind) {
  case EX_NUMBER:
    if (!e->is_int || e->num < 1 || e->num > (double)FE_MAX_DIM) {
      ERR(c, e->loc, "a dimension must be an integer between 1 and %lld, not '%s'", (long long)FE_MAX_DIM, e->text);
      return false;
    }
    *out = (int64_t)e->num;
    return true;
  case EX_NAME: {
    DimAst d = {e->text, 0, e->loc, NULL};
    bool inferred;
    return shape_dim(c, &d, out, &inferred);
  }
  case EX_BINARY:
    if (e->op == '+' || e->op == '-' || e->op == '*' || e->op == '/') break;
    /* fall through */
  default:
    if (e->kind != EX_ERROR)
      ERR(c, e->loc, "a dimension of a shape is an integer, B, a dim or int name, or such dims combined with +, -, * "
                     "and /");
    return false;
  }
  int64_t a, b;
  bool ok = dim_expr(c, e->lhs, &a);
  ok &= dim_expr(c, e->rhs, &b);
  if (!ok) return false;
  dim_expr_text(e, text, sizeof text, false);
  if (a == DIM_BATCH || b == DIM_BATCH) {
    ERR(c, e->loc, "the batch dim B cannot be part of the dim expression %s: B stays a whole dim", text);
    return false;
  }
  if (IS_SYM(a) || IS_SYM(b)) {
    char key[128];
    snprintf(key, sizeof key, "%lld%c%lld", (long long)a, e->op, (long long)b);
    int64_t *sym = sema_tab_get(&c->products, key);
    if (!sym) {
      sym = arena_alloc(c->a, sizeof *sym);
      *sym = sema_new_sym(c, arena_printf(c->a, "%s", text));
      sema_tab_put(c->a, &c->products, arena_printf(c->a, "%s", key), sym);
    }
    *out = *sym;
    return true;
  }
  double r = 0;
  switch (e->op) {
  case '+': r = (double)a + (double)b; break;
  case '-': r = (double)a - (double)b; break;
  case '*': r = (double)a * (double)b; break;
  default:
    if (a % b != 0) {
      ERR(c, e->loc, "the dim %s = %lld / %lld does not divide exactly; a dim is a whole number", text, (long long)a,
          (long long)b);
      return false;
    }
    r = (double)(a / b);
  }
  if (r < 1 || r > (double)FE_MAX_DIM) {
    ERR(c, e->loc, "the dim %s = %.0f is not a dimension (between 1 and %lld)", text, r, (long long)FE_MAX_DIM);
    return false;
  }
  *out = (int64_t)r;
  return true;
}

/* One dim of a shape literal: a number, -1, B, a dim or int the frame binds, or an
 * expression of those (dim_expr). */
static bool shape_dim(Ctx *c, const DimAst *d, int64_t *out, bool *inferred) {
  *inferred = !d->name && d->value == -1;
  if (d->expr) return dim_expr(c, d->expr, out);
  if (!d->name) {
    *out = *inferred ? 1 : d->value;   /* -1 is DIM_BATCH: the dim is set once inferred */
    return d->value != 0;   /* 0: a bad literal, reported by the parser */
  }
  if (strcmp(d->name, "B") == 0) {
    *out = DIM_BATCH;
    return true;
  }
  DimBind *b = sema_lookup_dim(c->top, d->name);
  if (b && !b->bad) {
    *out = b->dim;
    return true;
  }
  Binding *v = b ? NULL : sema_lookup(c->top, d->name);
  if (v && v->v.kind == VK_NUMBER && v->v.is_int && !v->v.known && IS_SYM(v->v.idim)) {
    *out = v->v.idim;
    return true;
  }
  if (v && v->v.kind == VK_NUMBER && v->v.is_int && v->v.known && v->v.num >= 1 && v->v.num <= (double)FE_MAX_DIM) {
    *out = (int64_t)v->v.num;
    return true;
  }
  if (b || (v && v->v.kind == VK_NUMBER && v->v.is_int && v->v.known))
    ERR(c, d->loc, "'%s' is %lld, which is not a dimension (between 1 and %lld)", d->name,
        b ? (long long)b->bad_value : (long long)v->v.num, (long long)FE_MAX_DIM);
  else if (v && v->v.kind != VK_ERROR)
    ERR(c, d->loc, "'%s' is %s; a dimension of a shape is an integer, B, or an int or dim name of the layer", d->name,
        sema_vtype(c, &v->v));
  else if (!v)
    ERR(c, d->loc, "unknown dimension '%s'; a dimension of a shape is an integer, B, or an int or dim name of the layer",
        d->name);
  return false;
}

/* reshape(x, [B, ...]) and flatten(x) = reshape(x, [B, -1]): the batch stays the first
 * dim of both shapes (a reshape that moved it would mix rows), the other dims keep the
 * count of elements per row. A value without a batch dim (a parameter, such as conv's
 * [out] bias) reshapes to a shape without B, keeping its count of elements: reshape(b,
 * [out, 1, 1]) broadcasts the bias over [B,out,H,W] while the checkpoint keeps PyTorch's
 * [out]. flatten() stays batched (its target is [B, -1]). Inside a generic check of a layer, where the counts involve
 * the layer's symbolic dims and do not match symbol for symbol, the check waits for each
 * call, where every dim is known. */
static Value eval_reshape(Ctx *c, const Expr *e, bool flatten, Value x, SrcLoc xloc, const Expr *shape) {
  const char *what = flatten ? "flatten()" : "reshape()";
  if (!flatten && shape->kind != EX_SHAPE) {
    Value s = sema_eval(c, shape);
    if (s.kind != VK_ERROR)
      ERR(c, shape->loc, "the shape of reshape() is written as a list of dims, such as [B, 784], not %s", sema_vtype(c, &s));
    return v_error();
  }
  bool has_b = false;
  for (int i = 0; i < x.rank; i++) has_b |= x.dims[i] == DIM_BATCH;
  bool batched = has_b || flatten;   /* else: a batch-free value to a batch-free shape */
  if (batched && (x.rank < 1 || x.dims[0] != DIM_BATCH)) {
    Note n;
    int nn = sema_origin_note(c, &x, &n) ? 1 : 0;
    sema_report(c, xloc, &n, nn, "%s needs a value with the batch dim B first, but its argument is %s%s", what,
                sema_vtype(c, &x), has_b ? "" : ", with no batch dim");
    return v_error();
  }
  if (!batched && x.rank < 1) {
    ERR(c, xloc, "reshape() needs a tensor of rank 1 or more, but its argument is %s", sema_vtype(c, &x));
    return v_error();
  }
  const char *per = batched ? " per row" : "";
  int first = batched ? 1 : 0;   /* the first dim counted: after the batch */
  int rank = 2, infer = 1;
  int64_t dims[IR_MAX_RANK] = {DIM_BATCH, 1};
  if (flatten) {
    if (x.rank < 2) {
      ERR(c, xloc, "flatten() needs a value of rank 2 or more, but its argument is %s", sema_vtype(c, &x));
      return v_error();
    }
    if (x.rank == 2) {   /* already flat: the value itself */
      Value r = x;
      r.origin = e->loc;
      r.origin_name = NULL;
      r.origin_decl = false;
      return r;
    }
  } else {
    if (shape->ndims < 1 || shape->ndims > IR_MAX_RANK) {
      ERR(c, shape->loc, "reshape() to %d dims: a shape has 1 to %d dims%s", shape->ndims, IR_MAX_RANK,
          batched ? ", the batch dim B first" : "");
      return v_error();
    }
    rank = shape->ndims;
    infer = -1;
    bool ok = true;
    for (int i = 0; i < rank; i++) {
      const DimAst *d = &shape->dims[i];
      bool inferred;
      if (!shape_dim(c, d, &dims[i], &inferred)) { ok = false; continue; }
      if (!batched && dims[i] == DIM_BATCH) {
        ERR(c, d->loc, "%s has no batch dim, so its shape cannot have B (reshape keeps the batch where it is)",
            sema_vtype(c, &x));
        ok = false;
      } else if (!batched) {
        if (inferred && infer >= 0) {
          ERR(c, d->loc, "a shape can infer one dim (-1), not two");
          ok = false;
        } else if (inferred) {
          infer = i;
        }
      } else if (i == 0 && (dims[i] != DIM_BATCH || inferred)) {
        ERR(c, d->loc, "the first dim of a shape is the batch dim B (reshape keeps the batch first), not %s",
            d->name ? d->name : arena_printf(c->a, "%lld", (long long)d->value));
        ok = false;
      } else if (i > 0 && dims[i] == DIM_BATCH) {
        ERR(c, d->loc, "the batch dim B can only be the first dim of a shape");
        ok = false;
      } else if (inferred && infer >= 0) {
        ERR(c, d->loc, "a shape can infer one dim (-1), not two");
        ok = false;
      } else if (inferred) {
        infer = i;
      }
    }
    if (!ok) return v_error();
  }
  RowCount have = row_count(x.rank, x.dims, first, -1), want = row_count(rank, dims, first, infer);
  bool symbolic = have.nsyms > 0 || want.nsyms > 0;
  if (have.known < 0 || want.known < 0) {
    ERR(c, e->loc, "%s: %s has more elements%s than an int64 counts", what,
        have.known < 0 ? sema_vtype(c, &x) : target_str(c, rank, dims, infer), per);
    return v_error();
  }
  const char *target = NULL;
  if (infer >= 0) {
    /* the inferred dim: what is left of the source's count after the written dims */
    RowCount left = have;
    bool divides = want.known > 0 && have.known % want.known == 0;
    left.known = divides ? have.known / want.known : 0;
    for (int i = 0; i < want.nsyms && divides; i++) {
      int j = 0;
      while (j < left.nsyms && left.syms[j] != want.syms[i]) j++;
      if (j == left.nsyms) { divides = false; break; }
      memmove(&left.syms[j], &left.syms[j + 1], (size_t)(left.nsyms - j - 1) * sizeof left.syms[0]);
      left.nsyms--;
    }
    if (divides) {
      dims[infer] = count_dim(c, &left);
    } else if (symbolic && !c->model) {
      dims[infer] = sema_new_sym(c, "?");   /* known at each call */
    } else {
      Note n;
      int nn = sema_origin_note(c, &x, &n) ? 1 : 0;
      sema_report(c, shape->loc, &n, nn,
                  "reshape(): cannot infer the -1 of %s: %s has %s elements%s, not a multiple of %s",
                  target_str(c, rank, dims, infer), sema_vtype(c, &x), count_str(c, &have), per, count_str(c, &want));
      return v_error();
    }
    if (dims[infer] > FE_MAX_DIM) {
      ERR(c, flatten ? e->loc : shape->dims[infer].loc, "%s: the %s dim would be %lld, more than %lld", what,
          flatten ? "flattened" : "inferred", (long long)dims[infer], (long long)FE_MAX_DIM);
      return v_error();
    }
  } else if (!count_eq(&have, &want) && !(symbolic && !c->model)) {
    target = target_str(c, rank, dims, -1);
    Note n;
    int nn = sema_origin_note(c, &x, &n) ? 1 : 0;
    sema_report(c, shape->loc, &n, nn, "reshape(): %s has %s elements%s, %s has %s", sema_vtype(c, &x),
                count_str(c, &have), per, target, count_str(c, &want));
    return v_error();
  }
  return sema_tensor_value(x.dtype, rank, dims, sema_emit(c, OP_RESHAPE, 1, x.node, -1, x.dtype, rank, dims, e->loc), e->loc);
}

/* ------------------------------------------------------------------ pooling */

/* max_pool2d(x, kernel, stride = kernel, padding = 0) and avg_pool2d(...) over the two
 * trailing dims of an NCHW value: [N,C,H,W] -> [N,C,Ho,Wo], Ho = floor((H + 2 padding
 * - kernel) / stride) + 1, likewise Wo. PyTorch's rules: kernel and stride at least 1,
 * padding at most half the kernel, the kernel no larger than the padded input.
 * global_avg_pool(x) = the mean over H and W, [N,C,H,W] -> [N,C]: two means (axis 3,
 * then axis 2), no op of its own. Inside a generic check of a layer, an int argument or
 * a dim the layer does not know yet gives output dims known at each call. */
static Value eval_pool(Ctx *c, const Expr *e, int bi, const Expr *const *argx) {
  static const char *const what[3] = {"kernel", "stride", "padding"};
  const char *name = builtins[bi].name;
  bool global = builtins[bi].kind == BI_GLOBAL_POOL;
  Value x = sema_eval(c, argx[0]);
  int64_t g[3] = {0, 0, 0};   /* kernel, stride, padding */
  bool ok = x.kind != VK_ERROR, known = true;
  for (int i = 0; i < 3 && !global; i++) {
    if (!argx[i + 1]) continue;
    Value v = sema_eval(c, argx[i + 1]);
    if (v.kind == VK_NUMBER && v.is_int && !v.known) {
      known = false;
      continue;
    }
    if (!const_int(c, &v, argx[i + 1]->loc, arena_printf(c->a, "the %s of %s()", what[i], name), &g[i])) ok = false;
  }
  if (!ok) return v_error();
  if (sema_reject_label(c, &x, argx[0]->loc, arena_printf(c->a, "as the argument of '%s'", name))) return v_error();
  if (x.kind == VK_NUMBER) {
    ERR(c, argx[0]->loc, "'%s' expects a tensor, not a constant", name);
    return v_error();
  }
  if (x.rank != 4 || x.dims[2] == DIM_BATCH || x.dims[3] == DIM_BATCH) {
    Note n;
    int nn = sema_origin_note(c, &x, &n) ? 1 : 0;
    sema_report(c, argx[0]->loc, &n, nn, "%s() expects an image batch [N, C, H, W] of rank 4, but its argument is %s",
                name, sema_vtype(c, &x));
    return v_error();
  }
  if (global) {
    int64_t d[4] = {x.dims[0], x.dims[1], x.dims[2]};
    int32_t m3 = sema_emit(c, OP_MEAN, 1, x.node, -1, x.dtype, 3, d, e->loc);
    int32_t m2 = sema_emit(c, OP_MEAN, 1, m3, -1, x.dtype, 2, d, e->loc);
    if (sema_node(c, m3)) sema_node(c, m3)->iattr = 3;
    if (sema_node(c, m2)) sema_node(c, m2)->iattr = 2;
    return sema_tensor_value(x.dtype, 2, d, m2, e->loc);
  }
  if (!argx[2]) g[1] = g[0];   /* stride = kernel, as in PyTorch */
  const Expr *at[3] = {argx[1], argx[2] ? argx[2] : argx[1], argx[3] ? argx[3] : argx[1]};
  if (known) {
    for (int i = 0; i < 2; i++)
      if (g[i] < 1 || g[i] > INT32_MAX) {
        ERR(c, at[i]->loc, "the %s of %s() must be between 1 and %d, got %lld", what[i], name, INT32_MAX, (long long)g[i]);
        return v_error();
      }
    if (g[2] < 0 || 2 * g[2] > g[0]) {
      ERR(c, at[2]->loc, "the padding of %s() must be between 0 and half the kernel (%lld), got %lld", name,
          (long long)(g[0] / 2), (long long)g[2]);
      return v_error();
    }
  }
  int64_t d[4] = {x.dims[0], x.dims[1], 0, 0};
  for (int i = 2; i < 4; i++) {
    if (!known || IS_SYM(x.dims[i])) {
      d[i] = sema_new_sym(c, "?");   /* known at each call */
      continue;
    }
    if (x.dims[i] + 2 * g[2] < g[0]) {
      Note n;
      int nn = sema_origin_note(c, &x, &n) ? 1 : 0;
      sema_report(c, at[0]->loc, &n, nn, "the %lldx%lld kernel of %s() is larger than the input %s padded by %lld",
                  (long long)g[0], (long long)g[0], name, sema_vshape(c, &x), (long long)g[2]);
      return v_error();
    }
    d[i] = ir_pool_out(x.dims[i], g[0], g[1], g[2]);
  }
  Value v = sema_tensor_value(x.dtype, 4, d, sema_emit(c, builtins[bi].op, 1, x.node, -1, x.dtype, 4, d, e->loc), e->loc);
  FeNode *node = sema_node(c, v.node);
  if (node) {   /* kernel, stride, padding: lower.c gives them to ir_pool */
    node->iattr = g[0];
    node->fattr[0] = (double)g[1];
    node->fattr[1] = (double)g[2];
  }
  return v;
}

/* ------------------------------------------------------------------ conv2d */

/* One integer setting of conv2d (stride, padding, dilation): *out keeps its default when
 * the argument is absent; *known turns false for an int the generic check of a layer
 * does not know yet (an int argument of the layer). False after an error. */
static bool conv_setting(Ctx *c, const Expr *arg, const char *name, int64_t min, int64_t *out, bool *known) {
  if (!arg) return true;
  Value v = sema_eval(c, arg);
  if (v.kind == VK_ERROR) return false;
  if (v.kind != VK_NUMBER || !v.is_int) {
    ERR(c, arg->loc, "the %s of conv2d() must be an integer, not %s", name, sema_vtype(c, &v));
    return false;
  }
  if (!v.known) {
    *known = false;
    return true;
  }
  if (v.num < (double)min || v.num > (double)FE_MAX_DIM) {
    ERR(c, arg->loc, "the %s of conv2d() must be %s, got %lld", name, min ? "at least 1" : "0 or more", (long long)v.num);
    return false;
  }
  *out = (int64_t)v.num;
  return true;
}

/* conv2d(x, w, stride = 1, padding = 0, dilation = 1): x[B,C,H,W] * w[O,C,kh,kw] ->
 * [B,O,Ho,Wo], Ho = floor((H + 2 padding - dilation (kh - 1) - 1) / stride) + 1, as
 * torch.nn.functional.conv2d (no groups, no bias). One integer per setting, used for
 * both spatial axes. In the generic check of a layer, dims and settings the layer
 * holds abstract give abstract output sizes; each call checks them with numbers. */
static Value eval_conv2d(Ctx *c, const Expr *e, int bi) {
  const Expr *argx[5] = {NULL, NULL, NULL, NULL, NULL};
  SrcLoc argloc[5];
  if (!sema_match_args(c, e, "'conv2d'", builtins[bi].params, builtins[bi].nparams, argx, argloc, SRCLOC_NONE))
    return v_error();
  Value x = sema_eval(c, argx[0]), w = sema_eval(c, argx[1]);
  int64_t set[3] = {1, 0, 1};
  bool known = true, ok = x.kind != VK_ERROR && w.kind != VK_ERROR;
  static const char *const names[3] = {"stride", "padding", "dilation"};
  for (int i = 0; i < 3; i++) ok &= conv_setting(c, argx[2 + i], names[i], i == 1 ? 0 : 1, &set[i], &known);
  if (!ok) return v_error();
  const Value *vs[2] = {&x, &w};
  for (int i = 0; i < 2; i++) {
    const Value *v = vs[i];
    if (sema_reject_label(c, v, argx[i]->loc, i ? "as the weights of 'conv2d'" : "as the image of 'conv2d'"))
      return v_error();
    bool batch_ok = true;
    for (int d = i ? 0 : 1; d < v->rank; d++) batch_ok &= v->dims[d] != DIM_BATCH;
    if (v->kind != VK_TENSOR || v->rank != 4 || !batch_ok) {
      Note n;
      int nn = v->kind == VK_TENSOR && sema_origin_note(c, v, &n) ? 1 : 0;
      sema_report(c, argx[i]->loc, &n, nn, "conv2d() expects %s, but its %s is %s",
                  i ? "weights [out, in, kh, kw] (rank 4, no batch dim)" : "an image [B, C, H, W] (rank 4, B first or no batch dim)",
                  i ? "weights argument" : "image argument", v->kind == VK_TENSOR ? sema_vtype(c, v) : "a constant");
      return v_error();
    }
  }
  if (x.dtype != w.dtype) {
    ERR(c, e->loc, "conv2d(): the image is %s and the weights %s; both need one dtype", sema_vtype(c, &x), sema_vtype(c, &w));
    return v_error();
  }
  bool generic = !c->model;
  if (x.dims[1] != w.dims[1] && !(generic && (IS_SYM(x.dims[1]) || IS_SYM(w.dims[1])))) {
    Note n[2];
    int nn = 0;
    if (sema_origin_note(c, &x, &n[nn])) nn++;
    if (sema_origin_note(c, &w, &n[nn])) nn++;
    char d1[64], d2[64];
    sema_report(c, argx[1]->loc, n, nn, "conv2d(): the image %s has %s channels, but the weights %s expect %s",
                sema_vtype(c, &x), sema_dim_name(c, x.dims[1], d1, sizeof d1), sema_vtype(c, &w),
                sema_dim_name(c, w.dims[1], d2, sizeof d2));
    return v_error();
  }
  int64_t out[2];
  for (int a = 0; a < 2; a++) {
    int64_t n = x.dims[2 + a], k = w.dims[2 + a];
    /* a "same" convolution (stride 1, 2 padding = dilation (k - 1)) keeps the size, an
     * abstract one too: resblock's 3x3 padding 1 convolutions of [B, C, H, W] */
    if (known && !IS_SYM(k) && IS_SYM(n) && set[0] == 1 && 2 * set[1] == set[2] * (k - 1)) {
      out[a] = n;
      continue;
    }
    if (!known || IS_SYM(n) || IS_SYM(k)) {
      out[a] = sema_new_sym(c, "?");   /* known at each call */
      continue;
    }
    out[a] = ir_conv_out(n, k, set[0], set[1], set[2]);
    if (out[a] < 1) {
      Note nt;
      int nn = sema_origin_note(c, &x, &nt) ? 1 : 0;
      sema_report(c, e->loc, &nt, nn,
                  "conv2d(): the kernel %lldx%lld%s is larger than the image %s padded to %lldx%lld",
                  (long long)w.dims[2], (long long)w.dims[3],
                  set[2] > 1 ? arena_printf(c->a, " with dilation %lld", (long long)set[2]) : "", sema_vtype(c, &x),
                  (long long)(x.dims[2] + 2 * set[1]), (long long)(x.dims[3] + 2 * set[1]));
      return v_error();
    }
  }
  int64_t d[4] = {x.dims[0], w.dims[0], out[0], out[1]};
  Value v = sema_tensor_value(x.dtype, 4, d, sema_emit(c, OP_CONV2D, 2, x.node, w.node, x.dtype, 4, d, e->loc), e->loc);
  FeNode *nd = sema_node(c, v.node);
  if (nd) memcpy(nd->conv, set, sizeof set);
  return v;
}

/* ------------------------------------------------------------------ layernorm */

/* layernorm(x, gamma, beta, dims = rank - 1, eps = 1e-5): x normalized over its last
 * `dims` dims (default: every dim after the first), as
 * torch.nn.functional.layer_norm(x, x.shape[-dims:], gamma, beta, eps). gamma and beta
 * have the shape of those dims, which must not hold B; the result has x's shape. In
 * the generic check of a layer, an int argument the layer holds abstract leaves dims
 * unknown: the shapes are then checked at each call. */
static Value eval_layernorm(Ctx *c, const Expr *e, int bi) {
  const Expr *argx[5] = {NULL, NULL, NULL, NULL, NULL};
  SrcLoc argloc[5];
  if (!sema_match_args(c, e, "'layernorm'", builtins[bi].params, builtins[bi].nparams, argx, argloc, SRCLOC_NONE))
    return v_error();
  Value v[3];
  bool ok = true;
  for (int i = 0; i < 3; i++) {
    v[i] = sema_eval(c, argx[i]);
    ok &= v[i].kind != VK_ERROR;
  }
  Value dv = argx[3] ? sema_eval(c, argx[3]) : v_error(), ev = argx[4] ? sema_eval(c, argx[4]) : v_error();
  if (!ok || (argx[3] && dv.kind == VK_ERROR) || (argx[4] && ev.kind == VK_ERROR)) return v_error();
  static const char *const what[3] = {"as the input of 'layernorm'", "as the scale of 'layernorm'", "as the shift of 'layernorm'"};
  for (int i = 0; i < 3; i++) {
    if (sema_reject_label(c, &v[i], argx[i]->loc, what[i])) return v_error();
    if (v[i].kind != VK_TENSOR) {
      ERR(c, argx[i]->loc, "layernorm() expects a tensor for '%s', not a constant", builtins[bi].params[i].name);
      return v_error();
    }
  }
  Value x = v[0];
  if (v[1].dtype != x.dtype || v[2].dtype != x.dtype) {
    ERR(c, e->loc, "layernorm(): x is %s, gamma %s and beta %s; all three need one dtype", sema_vtype(c, &x),
        sema_vtype(c, &v[1]), sema_vtype(c, &v[2]));
    return v_error();
  }
  if (x.rank < 1) {
    ERR(c, argx[0]->loc, "layernorm() expects a tensor of rank 1 or more, got %s", sema_vtype(c, &x));
    return v_error();
  }
  int64_t k = x.rank > 1 ? x.rank - 1 : 1;
  bool known = true;
  if (argx[3]) {
    if (dv.kind != VK_NUMBER || !dv.is_int) {
      ERR(c, argx[3]->loc, "the dims of layernorm() must be an integer (how many trailing dims to normalize), not %s",
          sema_vtype(c, &dv));
      return v_error();
    }
    if (!dv.known) known = false;
    else if (dv.num < 1 || dv.num > x.rank) {
      ERR(c, argx[3]->loc, "layernorm(): dims=%lld, but x %s has rank %d; dims counts the trailing dims to normalize, "
          "1 to %d", (long long)dv.num, sema_vtype(c, &x), x.rank, x.rank);
      return v_error();
    } else {
      k = (int64_t)dv.num;
    }
  }
  double eps = 1e-5;
  if (argx[4]) {
    if (ev.kind != VK_NUMBER) {
      ERR(c, argx[4]->loc, "the eps of layernorm() must be a constant number, not %s", sema_vtype(c, &ev));
      return v_error();
    }
    if (ev.known && !(ev.num > 0 && isfinite(ev.num))) {
      ERR(c, argx[4]->loc, "the eps of layernorm() must be a positive number, got %g", ev.num);
      return v_error();
    }
    eps = ev.num;
  }
  if (known) {
    for (int i = x.rank - (int)k; i < x.rank; i++)
      if (x.dims[i] == DIM_BATCH) {
        Note n;
        int nn = sema_origin_note(c, &x, &n) ? 1 : 0;
        sema_report(c, argx[0]->loc, &n, nn, "layernorm() cannot normalize over the batch dim: x is %s and dims=%lld",
                    sema_vtype(c, &x), (long long)k);
        return v_error();
      }
    bool generic = !c->model;
    for (int s = 1; s < 3; s++) {
      bool same = v[s].rank == k;
      for (int i = 0; same && i < k; i++) {
        int64_t want = x.dims[x.rank - k + i], have = v[s].dims[i];
        same = want == have || (generic && (IS_SYM(want) || IS_SYM(have)));
      }
      if (!same) {
        Note n[2];
        int nn = 0;
        if (sema_origin_note(c, &v[s], &n[nn])) nn++;
        if (sema_origin_note(c, &x, &n[nn])) nn++;
        char buf[128];
        int at = snprintf(buf, sizeof buf, "[");
        for (int i = 0; i < k; i++) {
          char d[64];
          at += snprintf(buf + at, sizeof buf - (size_t)at, "%s%s", i ? ", " : "", sema_dim_name(c, x.dims[x.rank - k + i], d, sizeof d));
        }
        snprintf(buf + at, sizeof buf - (size_t)at, "]");
        sema_report(c, argx[s]->loc, n, nn, "layernorm(): %s must have the normalized shape %s (dims=%lld of x %s), but is %s",
                    s == 1 ? "gamma" : "beta", buf, (long long)k, sema_vtype(c, &x), sema_vtype(c, &v[s]));
        return v_error();
      }
    }
  }
  Value r = sema_tensor_value(x.dtype, x.rank, x.dims,
                              sema_emit(c, OP_LAYERNORM, 2, x.node, v[1].node, x.dtype, x.rank, x.dims, e->loc), e->loc);
  FeNode *nd = sema_node(c, r.node);
  if (nd) {   /* the third operand, dims and eps: lower.c gives them to ir_layernorm */
    nd->nargs = 3;
    nd->args[2] = v[2].node;
    nd->iattr = k;
    nd->fattr[0] = eps;
  }
  return r;
}

/* A boolean argument: the literal `true` or `false` (written as such, possibly in
 * parentheses). Anything else is reported at the argument. */
static bool const_bool(Ctx *c, const Expr *arg, const char *what, bool *out) {
  if (arg->kind == EX_BOOL) {
    *out = arg->num != 0;
    return true;
  }
  Value v = sema_eval(c, arg);
  if (v.kind == VK_ERROR) return false;
  if (v.kind == VK_NUMBER && v.known)
    ERR(c, arg->loc, "%s must be true or false, not the number %g", what, v.num);
  else
    ERR(c, arg->loc, "%s must be true or false, not %s", what, sema_vtype(c, &v));
  return false;
}

/* ------------------------------------------------------------------ batchnorm */

/* batchnorm(x, gamma, beta): x [B, C] or [B, C, H, W], gamma and beta [C] -> x's shape,
 * PyTorch's BatchNorm1d / BatchNorm2d (momentum 0.1, eps 1e-5) with its affine scale
 * and shift given as values (the stdlib layers bn and bn1d declare them as params).
 * The call creates the running statistics as buffers named after the layer it is in:
 * PATH.running_mean (zeros) and PATH.running_var (ones), PATH the parameter path of that
 * layer (`c1.bn` for `c1 = bn(...)` ... docs/language.md). One node BN_NORM(x, rm, rv)
 * stands for the normalization; lowering expands it (frontend/lower.c) into the batch
 * statistics, the running-stat updates and bn_norm. */
static Value eval_batchnorm(Ctx *c, const Expr *e, int bi) {
  const Expr *argx[3] = {NULL, NULL, NULL};
  SrcLoc argloc[3];
  if (!sema_match_args(c, e, "'batchnorm'", builtins[bi].params, builtins[bi].nparams, argx, argloc, SRCLOC_NONE))
    return v_error();
  Value x = sema_eval(c, argx[0]), g = sema_eval(c, argx[1]), b = sema_eval(c, argx[2]);
  if (x.kind == VK_ERROR || g.kind == VK_ERROR || b.kind == VK_ERROR) return v_error();
  static const char *const what[3] = {"as the input of 'batchnorm'", "as the scale (gamma) of 'batchnorm'",
                                      "as the shift (beta) of 'batchnorm'"};
  const Value *vs[3] = {&x, &g, &b};
  for (int i = 0; i < 3; i++) {
    if (sema_reject_label(c, vs[i], argx[i]->loc, what[i])) return v_error();
    if (vs[i]->kind != VK_TENSOR) {
      ERR(c, argx[i]->loc, "batchnorm() expects a tensor %s, not a constant", what[i] + 3);
      return v_error();
    }
  }
  if ((x.rank != 2 && x.rank != 4) || x.dims[1] == DIM_BATCH || (x.rank == 4 && (x.dims[2] == DIM_BATCH || x.dims[3] == DIM_BATCH))) {
    Note n;
    int nn = sema_origin_note(c, &x, &n) ? 1 : 0;
    sema_report(c, argx[0]->loc, &n, nn, "batchnorm() normalizes [B, C] or [B, C, H, W] per channel, but its input is %s",
                sema_vtype(c, &x));
    return v_error();
  }
  bool generic = !c->model;
  for (int i = 1; i < 3; i++) {
    const Value *v = vs[i];
    bool same = v->rank == 1 && (v->dims[0] == x.dims[1] || (generic && (IS_SYM(v->dims[0]) || IS_SYM(x.dims[1]))));
    if (!same || v->dtype != x.dtype) {
      Note n;
      int nn = sema_origin_note(c, v, &n) ? 1 : 0;
      char d1[64];
      sema_report(c, argx[i]->loc, &n, nn, "batchnorm(): %s must be %s[%s], one value per channel of %s, but is %s",
                  i == 1 ? "gamma" : "beta", ir_dtype_name((DType)x.dtype), sema_dim_name(c, x.dims[1], d1, sizeof d1),
                  sema_vtype(c, &x), sema_vtype(c, v));
      return v_error();
    }
  }
  int64_t C = x.dims[1];
  if (!c->model) return sema_tensor_value(x.dtype, x.rank, x.dims, -1, e->loc);
  /* the running statistics, named after the layer's path */
  const char *prefix = c->top && c->top->prefix ? c->top->prefix : NULL;
  static const char *const bn_names[2] = {"running_mean", "running_var"};
  int32_t buf[2];
  for (int k = 0; k < 2; k++) {
    const char *name = prefix ? arena_printf(c->a, "%s.%s", prefix, bn_names[k]) : bn_names[k];
    name = sema_unique_param_name(c, name);
    buf[k] = sema_emit(c, OP_BUFFER, 0, -1, -1, x.dtype, 1, &C, e->loc);
    FeNode *nd = sema_node(c, buf[k]);
    nd->name = name;
    nd->iattr = k == 0 ? INIT_ZEROS : INIT_ONES;
    if (c->top && c->top->param_loc.line > 0) nd->loc = c->top->param_loc;
  }
  int32_t xhat = sema_emit(c, OP_BN_NORM, 2, x.node, buf[0], x.dtype, x.rank, x.dims, e->loc);
  FeNode *nd = sema_node(c, xhat);
  nd->nargs = 3;
  nd->args[2] = buf[1];
  nd->fattr[0] = 1e-5;   /* eps */
  nd->fattr[1] = 0.1;    /* momentum */
  /* y = xhat * gamma + beta, gamma and beta viewed as [C, 1, 1] over [B, C, H, W] */
  int32_t gn = g.node, bn = b.node;
  if (x.rank == 4) {
    int64_t d3[3] = {C, 1, 1};
    gn = sema_emit(c, OP_RESHAPE, 1, g.node, -1, x.dtype, 3, d3, e->loc);
    bn = sema_emit(c, OP_RESHAPE, 1, b.node, -1, x.dtype, 3, d3, e->loc);
  }
  int32_t scaled = sema_emit(c, OP_MUL, 2, xhat, gn, x.dtype, x.rank, x.dims, e->loc);
  return sema_tensor_value(x.dtype, x.rank, x.dims, sema_emit(c, OP_ADD, 2, scaled, bn, x.dtype, x.rank, x.dims, e->loc),
                           e->loc);
}

/* ------------------------------------------------------------------ sequence ops */

/* transpose(x) swaps the last two dims of x (rank 2 to 4); transpose(x, [p0, p1, ...])
 * permutes them as torch.permute: result dim i is dim p_i of x, the list a permutation
 * of 0 .. rank-1 (`transpose(x, [0, 2, 1, 3])` turns [B, T, H, dh] into [B, H, T, dh]).
 * The node keeps the IR's code (ir_transpose_code: 0 for the swap of the last two). */
static Value eval_transpose(Ctx *c, const Expr *e, Value x, SrcLoc xloc, const Expr *perm) {
  if (x.rank < 2 || x.rank > 4) {
    Note n;
    int nn = sema_origin_note(c, &x, &n) ? 1 : 0;
    sema_report(c, xloc, &n, nn, "transpose() expects a tensor of rank 2 to 4, got %s", sema_vtype(c, &x));
    return v_error();
  }
  int p[4];
  for (int i = 0; i < x.rank; i++) p[i] = i;
  p[x.rank - 2] = x.rank - 1;
  p[x.rank - 1] = x.rank - 2;
  if (perm) {
    if (perm->kind != EX_SHAPE) {
      Value v = sema_eval(c, perm);
      if (v.kind != VK_ERROR)
        ERR(c, perm->loc, "the permutation of transpose() is written as a list of dims, such as [0, 2, 1, 3], not %s",
            sema_vtype(c, &v));
      return v_error();
    }
    if (perm->ndims != x.rank) {
      ERR(c, perm->loc, "transpose(): the permutation has %d entries, but x %s has rank %d", perm->ndims,
          sema_vtype(c, &x), x.rank);
      return v_error();
    }
    unsigned seen = 0;
    for (int i = 0; i < perm->ndims; i++) {
      const DimAst *d = &perm->dims[i];
      const Expr *pe = d->expr;
      if (!pe || pe->kind != EX_NUMBER || !pe->is_int || pe->num < 0 || pe->num >= x.rank) {
        ERR(c, d->loc, "transpose(): an entry of the permutation is a dim of x, an integer 0 to %d", x.rank - 1);
        return v_error();
      }
      int k = (int)pe->num;
      if (seen & (1u << k)) {
        ERR(c, d->loc, "transpose(): dim %d appears twice in the permutation; each dim of x appears once", k);
        return v_error();
      }
      seen |= 1u << k;
      p[i] = k;
    }
  }
  int64_t d[IR_MAX_RANK];
  for (int i = 0; i < x.rank; i++) d[i] = x.dims[p[i]];
  Value v = sema_tensor_value(x.dtype, x.rank, d, sema_emit(c, OP_TRANSPOSE, 1, x.node, -1, x.dtype, x.rank, d, e->loc), e->loc);
  if (sema_node(c, v.node)) sema_node(c, v.node)->iattr = ir_transpose_code(x.rank, p);
  return v;
}

/* embed(ids, table): row ids[...] of table for each id, ids label[..., V] (a token is a
 * label: one id per position, V the vocabulary), table [V, d] (PyTorch's
 * nn.Embedding.weight layout) -> [..., d]. The stdlib layer embedding(tok, V, d) holds
 * the table. */
static Value eval_embed(Ctx *c, const Expr *e, int bi) {
  const Expr *argx[2];
  SrcLoc argloc[2];
  if (!sema_match_args(c, e, "'embed'", builtins[bi].params, builtins[bi].nparams, argx, argloc, SRCLOC_NONE))
    return v_error();
  Value ids = sema_eval(c, argx[0]), w = sema_eval(c, argx[1]);
  if (ids.kind == VK_ERROR || w.kind == VK_ERROR) return v_error();
  if (ids.kind != VK_TENSOR || ids.dtype != DT_LABEL) {
    Note n;
    int nn = sema_origin_note(c, &ids, &n) ? 1 : 0;
    sema_report(c, argx[0]->loc, &n, nn, "embed() expects ids that are labels, such as tok: label[B, T, 256], but its "
                "argument is %s", sema_vtype(c, &ids));
    return v_error();
  }
  if (sema_reject_label(c, &w, argx[1]->loc, "as the table of 'embed'")) return v_error();
  int64_t V = ids.dims[ids.rank - 1];
  bool generic = !c->model;
  if (w.kind != VK_TENSOR || w.rank != 2 || w.dims[0] == DIM_BATCH || w.dims[1] == DIM_BATCH ||
      !(w.dims[0] == V || (generic && (IS_SYM(V) || IS_SYM(w.dims[0]))))) {
    Note n;
    int nn = w.kind == VK_TENSOR && sema_origin_note(c, &w, &n) ? 1 : 0;
    char d1[64];
    sema_report(c, argx[1]->loc, &n, nn, "embed(): the table must be [%s, d], one row per class of the ids %s, but is %s",
                sema_dim_name(c, V, d1, sizeof d1), sema_vtype(c, &ids), w.kind == VK_TENSOR ? sema_vtype(c, &w) : "a constant");
    return v_error();
  }
  int64_t d[IR_MAX_RANK];
  for (int i = 0; i < ids.rank - 1; i++) d[i] = ids.dims[i];
  d[ids.rank - 1] = w.dims[1];
  return sema_tensor_value(w.dtype, ids.rank, d, sema_emit(c, OP_EMBEDDING, 2, ids.node, w.node, w.dtype, ids.rank, d, e->loc),
                           e->loc);
}

/* gelu(x) = x Phi(x), the erf form (PyTorch's default); gelu(x, approximate = "tanh")
 * the tanh approximation (PyTorch's approximate='tanh'); approximate = "none" is the
 * erf form, as in PyTorch. */
static Value eval_gelu(Ctx *c, const Expr *e, int bi) {
  const Expr *argx[2];
  SrcLoc argloc[2];
  if (!sema_match_args(c, e, "'gelu'", builtins[bi].params, builtins[bi].nparams, argx, argloc, SRCLOC_NONE))
    return v_error();
  Value x = sema_eval(c, argx[0]);
  Op op = OP_GELU;
  if (argx[1]) {
    if (argx[1]->kind != EX_STRING || (strcmp(argx[1]->text, "tanh") != 0 && strcmp(argx[1]->text, "none") != 0)) {
      if (argx[1]->kind == EX_STRING)
        ERR(c, argx[1]->loc, "gelu(): approximate is \"none\" (the erf form) or \"tanh\", not \"%s\"", argx[1]->text);
      else
        ERR(c, argx[1]->loc, "gelu(): approximate is the string \"none\" (the erf form) or \"tanh\"");
      return v_error();
    }
    if (strcmp(argx[1]->text, "tanh") == 0) op = OP_GELU_TANH;
  }
  if (x.kind == VK_ERROR) return x;
  if (sema_reject_label(c, &x, argx[0]->loc, "as the argument of 'gelu'")) return v_error();
  if (x.kind == VK_NUMBER) {
    ERR(c, argx[0]->loc, "'gelu' expects a tensor, not a constant");
    return v_error();
  }
  return sema_tensor_value(x.dtype, x.rank, x.dims, sema_emit(c, op, 1, x.node, -1, x.dtype, x.rank, x.dims, e->loc), e->loc);
}

/* causal_mask(T): f32[T, T], 0 where key j <= query i and -inf where j > i, to add to
 * attention scores [..., T, T] before a softmax (the dtype of the layer's tensors, f32
 * in a model). */
static Value eval_causal_mask(Ctx *c, const Expr *e, int bi) {
  const Expr *argx[1];
  SrcLoc argloc[1];
  if (!sema_match_args(c, e, "'causal_mask'", builtins[bi].params, builtins[bi].nparams, argx, argloc, SRCLOC_NONE))
    return v_error();
  Value t = sema_eval(c, argx[0]);
  if (t.kind == VK_ERROR) return t;
  if (t.kind != VK_NUMBER || !t.is_int) {
    ERR(c, argx[0]->loc, "causal_mask() takes the sequence length, an integer such as T or 64, not %s", sema_vtype(c, &t));
    return v_error();
  }
  if (t.known && (t.num < 1 || t.num > (double)FE_MAX_DIM)) {
    ERR(c, argx[0]->loc, "causal_mask(): the sequence length must be between 1 and %lld, not %lld", (long long)FE_MAX_DIM,
        (long long)t.num);
    return v_error();
  }
  int64_t T = t.known ? (int64_t)t.num : IS_SYM(t.idim) ? t.idim : sema_new_sym(c, "T?");
  int dt = c->top && c->top->dtype ? c->top->dtype : DT_F32;
  int64_t d[2] = {T, T};
  return sema_tensor_value(dt, 2, d, sema_emit(c, OP_CAUSAL_MASK, 0, -1, -1, dt, 2, d, e->loc), e->loc);
}

/* attention(q, k, v, causal = false, scale = 1 / sqrt(dh)): softmax(scale q k^T + mask) v
 * over q[..., T, dh], k[..., S, dh], v[..., S, dv] with equal leading dims (rank 3 or 4:
 * [B, H, T, dh] for heads) -> [..., T, dv]; causal masks key j > query i, which needs
 * T = S. One fused op (ir_attention; its log-sum-exp extra is for backward). */
static Value eval_attention(Ctx *c, const Expr *e, int bi) {
  const Expr *argx[5];
  SrcLoc argloc[5];
  if (!sema_match_args(c, e, "'attention'", builtins[bi].params, builtins[bi].nparams, argx, argloc, SRCLOC_NONE))
    return v_error();
  Value q = sema_eval(c, argx[0]), k = sema_eval(c, argx[1]), v = sema_eval(c, argx[2]);
  bool causal = false, ok = q.kind != VK_ERROR && k.kind != VK_ERROR && v.kind != VK_ERROR;
  if (argx[3] && !const_bool(c, argx[3], "'causal'", &causal)) ok = false;
  double scale = 0;
  bool has_scale = false;
  if (argx[4]) {
    Value sv = sema_eval(c, argx[4]);
    if (sv.kind == VK_ERROR) ok = false;
    else if (sv.kind != VK_NUMBER) {
      ERR(c, argx[4]->loc, "the scale of attention() must be a constant number, not %s", sema_vtype(c, &sv));
      ok = false;
    } else if (sv.known && !(sv.num > 0 && isfinite(sv.num))) {
      ERR(c, argx[4]->loc, "the scale of attention() must be a positive number, got %g", sv.num);
      ok = false;
    } else {
      scale = sv.num;
      has_scale = sv.known;
    }
  }
  if (!ok) return v_error();
  static const char *const names[3] = {"q", "k", "v"};
  const Value *vs[3] = {&q, &k, &v};
  for (int i = 0; i < 3; i++) {
    if (sema_reject_label(c, vs[i], argx[i]->loc, arena_printf(c->a, "as %s of 'attention'", names[i]))) return v_error();
    int r = vs[i]->rank;
    if (vs[i]->kind != VK_TENSOR || r < 3 || r > 4 || vs[i]->dims[r - 1] == DIM_BATCH || vs[i]->dims[r - 2] == DIM_BATCH) {
      Note n;
      int nn = vs[i]->kind == VK_TENSOR && sema_origin_note(c, vs[i], &n) ? 1 : 0;
      sema_report(c, argx[i]->loc, &n, nn, "attention() expects %s of rank 3 or 4, [..., %s, %s] ([B, H, T, dh] for heads), "
                  "but it is %s", names[i], i == 0 ? "T" : "S", i == 2 ? "dv" : "dh",
                  vs[i]->kind == VK_TENSOR ? sema_vtype(c, vs[i]) : "a constant");
      return v_error();
    }
  }
  if (k.dtype != q.dtype || v.dtype != q.dtype) {
    ERR(c, e->loc, "attention(): q, k and v need one dtype, got %s, %s and %s", sema_vtype(c, &q), sema_vtype(c, &k),
        sema_vtype(c, &v));
    return v_error();
  }
  int r = q.rank;
  bool same_lead = k.rank == r && v.rank == r;
  for (int i = 0; same_lead && i < r - 2; i++) same_lead = k.dims[i] == q.dims[i] && v.dims[i] == q.dims[i];
  char d1[64], d2[64];
  Note n[3];
  int nn = 0;
  for (int i = 0; i < 3; i++)
    if (sema_origin_note(c, vs[i], &n[nn])) nn++;
  if (!same_lead) {
    sema_report(c, e->loc, n, nn, "attention(): q %s, k %s and v %s need one rank and equal dims before the last two",
                sema_vshape(c, &q), sema_vshape(c, &k), sema_vshape(c, &v));
    return v_error();
  }
  if (k.dims[r - 1] != q.dims[r - 1]) {
    sema_report(c, argx[1]->loc, n, nn, "attention(): q %s and k %s need the same last dim dh (%s and %s differ)",
                sema_vshape(c, &q), sema_vshape(c, &k), sema_dim_name(c, q.dims[r - 1], d1, sizeof d1),
                sema_dim_name(c, k.dims[r - 1], d2, sizeof d2));
    return v_error();
  }
  if (v.dims[r - 2] != k.dims[r - 2]) {
    sema_report(c, argx[2]->loc, n, nn, "attention(): k %s and v %s need as many rows, one value per key (%s and %s differ)",
                sema_vshape(c, &k), sema_vshape(c, &v), sema_dim_name(c, k.dims[r - 2], d1, sizeof d1),
                sema_dim_name(c, v.dims[r - 2], d2, sizeof d2));
    return v_error();
  }
  if (causal && q.dims[r - 2] != k.dims[r - 2]) {
    sema_report(c, argx[3]->loc, n, nn, "attention(): causal = true needs as many queries as keys, but q %s has %s and "
                "k %s has %s", sema_vshape(c, &q), sema_dim_name(c, q.dims[r - 2], d1, sizeof d1), sema_vshape(c, &k),
                sema_dim_name(c, k.dims[r - 2], d2, sizeof d2));
    return v_error();
  }
  int64_t dh = q.dims[r - 1];
  if (!has_scale) scale = IS_SYM(dh) ? 1.0 : 1.0 / sqrt((double)dh);   /* generic check: known at each call */
  int64_t d[IR_MAX_RANK];
  for (int i = 0; i < r; i++) d[i] = q.dims[i];
  d[r - 1] = v.dims[r - 1];
  Value o = sema_tensor_value(q.dtype, r, d, sema_emit(c, OP_ATTENTION, 2, q.node, k.node, q.dtype, r, d, e->loc), e->loc);
  FeNode *nd = sema_node(c, o.node);
  if (nd) {   /* v, causal and scale: lower.c gives them to ir_attention */
    nd->nargs = 3;
    nd->args[2] = v.node;
    nd->iattr = causal;
    nd->fattr[0] = scale;
  }
  return o;
}

static Value eval_builtin(Ctx *c, const Expr *e, int bi) {
  if (builtins[bi].kind == BI_CONV2D) return eval_conv2d(c, e, bi);
  if (builtins[bi].kind == BI_EMBED) return eval_embed(c, e, bi);
  if (builtins[bi].kind == BI_GELU) return eval_gelu(c, e, bi);
  if (builtins[bi].kind == BI_CAUSAL_MASK) return eval_causal_mask(c, e, bi);
  if (builtins[bi].kind == BI_ATTENTION) return eval_attention(c, e, bi);
  if (builtins[bi].kind == BI_BATCHNORM) return eval_batchnorm(c, e, bi);
  if (builtins[bi].kind == BI_LAYERNORM) return eval_layernorm(c, e, bi);
  const Expr *argx[4] = {NULL, NULL, NULL, NULL};
  SrcLoc argloc[4];
  const char *what = arena_printf(c->a, "'%s'", builtins[bi].name);
  if (!sema_match_args(c, e, what, builtins[bi].params, builtins[bi].nparams, argx, argloc, SRCLOC_NONE))
    return v_error();
  if (builtins[bi].kind == BI_POOL || builtins[bi].kind == BI_GLOBAL_POOL) return eval_pool(c, e, bi, argx);
  Value x = sema_eval(c, argx[0]);
  /* reshape's shape is not a value: eval_reshape reads its dims */
  bool shape_arg = builtins[bi].kind == BI_RESHAPE || builtins[bi].kind == BI_TRANSPOSE;
  Value a1 = argx[1] && !shape_arg ? sema_eval(c, argx[1]) : v_error();
  bool keep = false;
  bool keep_ok = !argx[2] || const_bool(c, argx[2], "'keep'", &keep);
  if (x.kind == VK_ERROR || (argx[1] && !shape_arg && a1.kind == VK_ERROR) || !keep_ok) return v_error();
  BuiltinKind k = builtins[bi].kind;
  Op op = builtins[bi].op;

  if (k == BI_ONEHOT) {
    if (x.kind != VK_TENSOR || x.dtype != DT_LABEL) {
      Note n;
      int nn = sema_origin_note(c, &x, &n) ? 1 : 0;
      sema_report(c, argx[0]->loc, &n, nn, "onehot() expects a label, but its argument is %s", sema_vtype(c, &x));
      return v_error();
    }
    return sema_tensor_value(DT_F32, x.rank, x.dims, sema_emit(c, OP_ONEHOT, 1, x.node, -1, DT_F32, x.rank, x.dims, e->loc), e->loc);
  }
  if (sema_reject_label(c, &x, argx[0]->loc, arena_printf(c->a, "as the argument of %s", what))) return v_error();
  if (x.kind == VK_NUMBER) {
    ERR(c, argx[0]->loc, "%s expects a tensor, not a constant", what);
    return v_error();
  }
  switch (k) {
  case BI_RESHAPE:
  case BI_FLATTEN:
    return eval_reshape(c, e, k == BI_FLATTEN, x, argx[0]->loc, argx[1]);
  case BI_UNARY:
    return sema_tensor_value(x.dtype, x.rank, x.dims, sema_emit(c, op, 1, x.node, -1, x.dtype, x.rank, x.dims, e->loc), e->loc);
  case BI_TRANSPOSE: return eval_transpose(c, e, x, argx[0]->loc, argx[1]);
  case BI_DROPOUT: {
    if (a1.kind != VK_NUMBER) {
      ERR(c, argx[1]->loc, "the dropout probability must be a constant number, not %s", sema_vtype(c, &a1));
      return v_error();
    }
    if (a1.known && !(a1.num >= 0 && a1.num < 1)) {
      ERR(c, argx[1]->loc, "the dropout probability must be in [0, 1), got %g", a1.num);
      return v_error();
    }
    int32_t mask = sema_emit(c, OP_DROPOUT_MASK, 0, -1, -1, x.dtype, x.rank, x.dims, e->loc);
    if (sema_node(c, mask)) {
      sema_node(c, mask)->fattr[0] = a1.num;
      sema_node(c, mask)->iattr = c->model->ndropout++;
    }
    return sema_tensor_value(x.dtype, x.rank, x.dims, sema_emit(c, OP_MUL, 2, x.node, mask, x.dtype, x.rank, x.dims, e->loc), e->loc);
  }
  case BI_ROW:
  case BI_REDUCE: {
    int64_t axis = k == BI_ROW ? -1 : IR_AXIS_ALL;
    bool has_axis = argx[1] != NULL;
    if (has_axis && !const_int(c, &a1, argx[1]->loc, "the axis", &axis)) return v_error();
    if (k == BI_ROW && x.rank < 1) {
      ERR(c, argx[0]->loc, "%s expects a tensor of rank 1 or more, got %s", what, sema_vtype(c, &x));
      return v_error();
    }
    if (k == BI_ROW || has_axis) {
      if (axis < -x.rank || axis >= x.rank) {
        Note n;
        int nn = sema_origin_note(c, &x, &n) ? 1 : 0;
        sema_report(c, argx[1] ? argx[1]->loc : e->loc, &n, nn, "axis %lld is out of range for %s (rank %d)",
               (long long)axis, sema_vshape(c, &x), x.rank);
        return v_error();
      }
      if (axis < 0) axis += x.rank;
    }
    if (k == BI_ROW) {
      Value v = sema_tensor_value(x.dtype, x.rank, x.dims, sema_emit(c, op, 1, x.node, -1, x.dtype, x.rank, x.dims, e->loc), e->loc);
      if (sema_node(c, v.node)) sema_node(c, v.node)->iattr = axis;
      return v;
    }
    /* the reduced dim is removed, or with keep stays as 1 (without an axis: every dim) */
    int64_t d[IR_MAX_RANK];
    int r = 0;
    for (int i = 0; i < x.rank; i++) {
      if (has_axis && i != axis) d[r++] = x.dims[i];
      else if (keep) d[r++] = 1;
    }
    Value v = sema_tensor_value(x.dtype, r, d, sema_emit(c, op, 1, x.node, -1, x.dtype, r, d, e->loc), e->loc);
    if (sema_node(c, v.node)) {
      sema_node(c, v.node)->iattr = has_axis ? axis : IR_AXIS_ALL;
      sema_node(c, v.node)->keep = keep;
    }
    return v;
  }
  default:
    break;
  }
  return v_error();
}

/* " (did you mean 'h2'?)" or "" */
static const char *suggest(Ctx *c, const char *name, bool functions) {
  DiagSuggest s = DIAG_SUGGEST_INIT;
  if (functions) {
    for (int i = 0; i < c->nfns; i++) diag_suggest(&s, name, c->fns[i].def->name);
    for (int i = 0; i < NBUILTINS; i++) diag_suggest(&s, name, builtins[i].name);
  } else {
    for (Binding *b = c->top->vars; b; b = b->next) diag_suggest(&s, name, b->name);
  }
  return s.best ? arena_printf(c->a, " (did you mean '%s'?)", s.best) : "";
}

Value sema_eval(Ctx *c, const Expr *e) {
  switch (e->kind) {
  case EX_ERROR: return v_error();
  case EX_NUMBER: return v_number(e->num, e->is_int, true, DIM_UNKNOWN, e->loc);
  case EX_BOOL:   /* a boolean argument (keep = true) reads the literal itself, never its value */
    ERR(c, e->loc, "'%s' is a boolean, which only a boolean argument takes (keep = %s in sum, mean and max)",
        e->text, e->text);
    return v_error();
  case EX_NAME: {
    Binding *b = sema_lookup(c->top, e->text);
    if (b) return b->v;
    /* a dim of the signature is an integer value too: `4 * D`, `D / heads` */
    DimBind *db = sema_lookup_dim(c->top, e->text);
    if (db && !db->bad && db->dim != DIM_BATCH && db->dim != DIM_UNKNOWN)
      return IS_SYM(db->dim) ? v_number(0, true, false, db->dim, e->loc) : v_number((double)db->dim, true, true, 0, e->loc);
    if (sema_find_fn(c, e->text) || sema_find_builtin(e->text) >= 0)
      ERR(c, e->loc, "'%s' is a function; call it with arguments, as in %s(x)", e->text, e->text);
    else
      ERR(c, e->loc, "unknown name '%s'%s", e->text, suggest(c, e->text, false));
    return v_error();
  }
  case EX_SHAPE:
    ERR(c, e->loc, "a shape such as [B, 784] can only be the second argument of reshape() or transpose()");
    return v_error();
  case EX_STRING:
    ERR(c, e->loc, "a string is only the value of gelu()'s approximate (\"none\" or \"tanh\")");
    return v_error();
  case EX_NEG: return eval_neg(c, e);
  case EX_BINARY: return eval_binary(c, e);
  case EX_CALL: {
    const FnInfo *fi = sema_find_fn(c, e->text);
    if (fi) return sema_call_fn(c, e, fi);
    int bi = sema_find_builtin(e->text);
    if (bi >= 0) return eval_builtin(c, e, bi);
    Binding *b = sema_lookup(c->top, e->text);
    if (b) ERR(c, e->name_loc, "'%s' is a value, not a layer or function", e->text);
    else ERR(c, e->name_loc, "unknown layer or function '%s'%s", e->text, suggest(c, e->text, true));
    for (const Arg *g = e->args; g; g = g->next) sema_eval(c, g->value);
    return v_error();
  }
  }
  return v_error();
}

