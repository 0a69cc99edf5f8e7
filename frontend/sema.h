/* frontend/sema.h — what the files of semantic analysis share (not for other directories).
 *
 * Semantic analysis is elaboration (sema.c says how): an expression evaluates to a
 * Value, layers are checked once with rigid symbolic dims and instantiated per call.
 * Its files, along the stages of that walk:
 *
 *   sema.c        the shared state: values, frames and bindings, diagnostics with notes,
 *                 lookups, recording nodes; the entry points fe_check, fe_compile_text
 *   sema_expr.c   expressions: numbers, names, unary and binary operators with
 *                 broadcasting, argument matching, the built-in ops, "did you mean"
 *   sema_stmt.c   declared types and statements: assignments, params (path names),
 *                 bodies and return types
 *   sema_call.c   calls of layers and losses: unifying a signature with the arguments'
 *                 shapes, then the callee's body with those bindings
 *   sema_model.c  definitions (each layer checked on its own, recursion rejected) and
 *                 models (instantiated into the checked graph FeModel)
 */
#ifndef BPCC_FRONTEND_SEMA_H
#define BPCC_FRONTEND_SEMA_H

#include "frontend/frontend.h"

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

static inline Value v_error(void) {
  Value v;
  memset(&v, 0, sizeof v);
  v.kind = VK_ERROR;
  v.node = -1;
  v.origin = SRCLOC_NONE;
  return v;
}

static inline Value v_number(double x, bool is_int, bool known, int64_t idim, SrcLoc loc) {
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

/* A name -> pointer table: open addressing with linear probing, grown by doubling in the
 * arena (the abandoned tables add up to less than the last one). A model of 20,000
 * statements looks up each name in constant time, where a list made checking it
 * quadratic. Empty until the first sema_tab_put. */
typedef struct {
  const char **keys;
  void **vals;
  int n, cap;
} NameTab;

void *sema_tab_get(const NameTab *t, const char *name);                 /* NULL if absent */
void sema_tab_put(Arena *a, NameTab *t, const char *name, void *val);   /* adds or replaces */

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
  Binding *vars;               /* newest first (for "did you mean") */
  NameTab names;               /* name -> its newest Binding in vars */
  DimBind *dims;
  const char *prefix;          /* parameter path of this frame; NULL at the model */
  bool emit_loc_set;           /* nodes take emit_loc (inside the standard library) */
  SrcLoc emit_loc;
  SrcLoc param_loc;            /* the model-level call that led here (line 0 at the model): the
                                  location of PARAM nodes and every node's call site */
  int dtype;                   /* float dtype of the first tensor argument: params without one take it */
  bool ell_bound;              /* the dims `...` matched in the signature are known: */
  int ell_rank;                /* how many (0 in the generic check of a layer) */
  int64_t ell[IR_MAX_RANK];
  const char *ell_from;        /* the argument that bound them, and its value */
  Value ell_value;
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
  NameTab fntab;               /* name -> FnInfo */
  const char **syms;           /* names of symbolic dims */
  int nsyms, capsyms;
  NameTab products;            /* "#3*#5" -> the symbol for that product of symbolic dims
                                  (what flatten makes of a layer's [B,R,C]), one per product */
  FeModel *model;              /* NULL: generic check (no nodes) */
  NameTab param_names;         /* the parameter names of model (unique_param_name) */
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


typedef struct {
  const char *name;
  bool optional;
} ParamSpec;

#define ERR(c, loc, ...) sema_report(c, loc, NULL, 0, __VA_ARGS__)

/* ------------------------------------------------------------------ sema.c */

const char *sema_dim_name(Ctx *c, int64_t d, char *buf, size_t n);   /* "B", "I", "784" */
char *sema_shape_str(Ctx *c, int rank, const int64_t *dims);         /* "[B,784]" */
char *sema_vshape(Ctx *c, const Value *v);
char *sema_vtype(Ctx *c, const Value *v);                            /* "f32[B,784]" */
int64_t sema_new_sym(Ctx *c, const char *name);
Note *sema_note_at(Note *n, SrcLoc loc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* A note that says where a value got its shape; false if it has no location. */
bool sema_origin_note(Ctx *c, const Value *v, Note *n);
/* Report an error with its notes, then the chain of calls that instantiated it. */
void sema_report(Ctx *c, SrcLoc loc, const Note *notes, int nnotes, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
const FnInfo *sema_find_fn(Ctx *c, const char *name);
Binding *sema_lookup(Frame *f, const char *name);
DimBind *sema_lookup_dim(Frame *f, const char *name);
DimBind *sema_bind_dim(Ctx *c, Frame *f, const char *name, int64_t d);
void sema_bind(Ctx *c, Frame *f, const char *name, Value v, SrcLoc decl);
void sema_define(Ctx *c, Frame *f, const char *name, Value v, SrcLoc decl);
/* Record one node of the model being built (none in a generic check: -1). */
/* name, or name#2, #3 ... when a parameter or buffer of the model has it already */
const char *sema_unique_param_name(Ctx *c, const char *name);
int32_t sema_emit(Ctx *c, Op op, int nargs, int32_t a0, int32_t a1, int dtype, int rank, const int64_t *dims,
                  SrcLoc loc);
FeNode *sema_node(Ctx *c, int32_t id);
void *sema_grow(Ctx *c, void *arr, int32_t n, size_t size);   /* room for arr[n], doubling */
void sema_push_id(Ctx *c, int32_t **arr, int32_t *n, int32_t id);
Value sema_as_tensor(Ctx *c, Value v, int dtype, SrcLoc loc);
Value sema_tensor_value(int dtype, int rank, const int64_t *dims, int32_t nd, SrcLoc origin);

/* ------------------------------------------------------------------ sema_expr.c */

Value sema_eval(Ctx *c, const Expr *e);
bool sema_reject_label(Ctx *c, const Value *v, SrcLoc loc, const char *what);
/* Match call arguments to parameter names: positional first, then keywords. out[i] is
 * the argument for parameter i or NULL. False (reported) on an arity or keyword error. */
bool sema_match_args(Ctx *c, const Expr *call, const char *what, const ParamSpec *ps, int np, const Expr **out,
                     SrcLoc *outloc, SrcLoc decl);
int sema_find_builtin(const char *name);   /* -1 if none */

/* ------------------------------------------------------------------ sema_stmt.c */

int sema_dtype_of(Ctx *c, const TypeAst *t, bool *ok);
bool sema_check_type(Ctx *c, const TypeAst *t, bool model_input);
bool sema_check_batch_once(Ctx *c, const TypeAst *t);   /* B at most once in a declared type */
int sema_ellipsis_index(const TypeAst *t);   /* the position of `...` in a tensor type, -1 if none */
Value sema_eval_stmt_expr(Ctx *c, Frame *f, const Stmt *s);
Value sema_eval_body(Ctx *c, Frame *f, const Def *d);
Value sema_check_return(Ctx *c, Frame *f, const Def *d, Value v, SrcLoc loc);

/* ------------------------------------------------------------------ sema_call.c */

Value sema_call_fn(Ctx *c, const Expr *e, const FnInfo *fi);

/* ------------------------------------------------------------------ sema_model.c */

void sema_check_fn(Ctx *c, FnInfo *fi);     /* step 2: a layer or loss on its own */
void sema_dfs(Ctx *c, FnInfo *fi, FnInfo **stack, int depth);   /* recursion between layers */
void sema_check_model(Ctx *c, FeUnit *u, const Def *d);         /* step 3: a model */

#endif
