/* frontend/frontend.h — the .bp language frontend. Table of contents of frontend/:
 *
 *   lexer.l     flex scanner: tokens with 1-based line:col ranges; bad bytes reported
 *   parser.y    bison grammar (pure, %locations, error recovery) -> AST
 *   ast.c       AST constructors (depth-limited) and the --emit=ast / --emit=tokens dumps
 *   sema*.c     semantic analysis = elaboration: names, arity, dtypes, shapes with symbolic
 *               dims; every model is instantiated (layers inlined, parameters named) into a
 *               checked graph (FeModel) that lowering and the summary read. sema.c holds
 *               the shared state and the entry points, sema_expr.c expressions and
 *               built-ins, sema_stmt.c types and statements, sema_call.c layer calls,
 *               sema_model.c definitions and models (frontend/sema.h)
 *   train_block.c the `train` block: optimizer, schedule and settings -> TrainSpec
 *   summary.c   the checked model summary printed by `bpcc --check`
 *   stdlib.bp   the standard library in .bp, compiled into the binary (fe_stdlib_text)
 *   lower.c     checked graph -> IR Func (one per model)
 *
 * Pipeline:  text --fe_parse--> FeProgram --fe_check--> FeUnit (FeModel[]) --fe_lower--> Func
 * Every stage reports through diag_error (ir/ir.h); a caller checks diag_error_count().
 */
#ifndef BPCC_FRONTEND_H
#define BPCC_FRONTEND_H

#include "ir/ir.h"
#include "runtime/model.h"   /* the optimizer vocabulary (runtime/optimizers.c) */

/* Limits that keep hostile input from exhausting the C stack. */
#define FE_MAX_EXPR_DEPTH 200   /* nesting of one expression */
#define FE_MAX_CALL_DEPTH 64    /* layers calling layers */
#define FE_MAX_CALLS 100000     /* layer calls after inlining, in all */
#define FE_MAX_DIM 2147483647LL /* largest dimension */

/* ------------------------------------------------------------------ tokens (lexer.l) */

typedef struct {
  int kind;          /* a parser token number (see fe_token_name) */
  SrcLoc loc;
  const char *text;  /* the token's bytes (arena copy) */
} FeToken;

/* All tokens of a registered source file, lexing errors reported. Returns the count. */
int fe_tokenize(Arena *a, int file, FeToken **out);
const char *fe_token_name(int kind);   /* "identifier", "'('", ... */

/* --------------------------------------------------------------------- AST (ast.c) */

typedef enum { EX_ERROR, EX_NUMBER, EX_BOOL, EX_STRING, EX_NAME, EX_NEG, EX_BINARY, EX_CALL, EX_SHAPE } ExprKind;

typedef struct Arg Arg;

typedef struct Expr Expr;
typedef struct {             /* one dim of a type: a number or a symbolic name */
  const char *name;          /* NULL: value (-1 only in a shape literal: inferred) */
  int64_t value;
  SrcLoc loc;
  Expr *expr;                /* a shape literal's element other than a name or -1, as written
                                (`64`, `D / heads`, transpose's `0`); value set if a valid dim */
} DimAst;

struct Arg {                 /* call argument: positional (name NULL) or keyword */
  const char *name;
  SrcLoc name_loc;
  Expr *value;
  Arg *next;
};

struct Expr {
  ExprKind kind;
  SrcLoc loc;                /* whole expression (caret + tildes) */
  int depth;                 /* nesting depth; bounded by FE_MAX_EXPR_DEPTH */
  double num;                /* EX_NUMBER; EX_BOOL: 1 (true) or 0 (false) */
  bool is_int;               /* EX_NUMBER written without '.' or exponent */
  const char *text;          /* EX_NUMBER spelling; EX_NAME / EX_CALL name; EX_STRING its bytes */
  SrcLoc name_loc;           /* EX_CALL: the callee name */
  int op;                    /* EX_BINARY: '+', '-', '*', '/', '@', '^' */
  Expr *lhs, *rhs;           /* EX_BINARY; EX_NEG uses lhs */
  Arg *args;                 /* EX_CALL */
  int nargs;
  DimAst *dims;              /* EX_SHAPE: `[B, 784]`, reshape's target (source order) */
  int ndims;
};

typedef enum { TY_TENSOR, TY_INT, TY_FLOAT } TypeKind;

typedef struct {
  TypeKind kind;
  const char *dtype;         /* "f32", "f64", "label" or NULL (any float dtype) */
  int rank;
  DimAst *dims;
  SrcLoc loc;
} TypeAst;

typedef struct ParamDecl ParamDecl;
struct ParamDecl {           /* a signature parameter: `x: f32[B, 784]`, `n: int = 10` */
  const char *name;
  SrcLoc loc;
  TypeAst type;
  Expr *def;                 /* default value (int/float parameters) or NULL */
  ParamDecl *next;
};

typedef enum { ST_ASSIGN, ST_OUTPUT, ST_LOSS, ST_RETURN, ST_PARAM } StmtKind;

typedef struct Stmt Stmt;
struct Stmt {
  StmtKind kind;
  SrcLoc loc;                /* the keyword or the bound name */
  const char *name;          /* ASSIGN, OUTPUT, PARAM */
  Expr *value;               /* ASSIGN, OUTPUT, LOSS, RETURN */
  TypeAst type;              /* PARAM */
  const char *init;          /* PARAM: initializer name */
  SrcLoc init_loc;
  Arg *init_args;            /* PARAM: `init normal(0.01)` */
  bool init_has_parens;
  Stmt *next;
};

typedef struct TrainValue TrainValue;
struct TrainValue {          /* a value in a train block */
  enum { TV_NUMBER, TV_NAME, TV_TUPLE } kind;
  double num;
  bool is_int;
  const char *name;          /* TV_NAME: true, false, ... */
  TrainValue *items;         /* TV_TUPLE */
  SrcLoc loc;
  TrainValue *next;
};

typedef struct TrainArg TrainArg;
struct TrainArg {            /* `lr = 1e-3` */
  const char *name;
  SrcLoc loc;
  TrainValue *value;
  TrainArg *next;
};

typedef struct TrainItem TrainItem;
struct TrainItem {           /* `optimizer adam(lr = 1e-3)`, `batch 128` */
  const char *key;
  SrcLoc loc;
  TrainValue *value;         /* a number or a bare name */
  TrainArg *args;            /* with parentheses: name(args) */
  bool has_parens;
  TrainItem *next;
};

typedef enum { DEF_LAYER, DEF_LOSS, DEF_MODEL, DEF_TRAIN } DefKind;

typedef struct Def Def;
struct Def {
  DefKind kind;
  const char *name;
  SrcLoc loc;                /* the name */
  ParamDecl *params;
  TypeAst *ret;              /* `-> [B, n]` or NULL */
  Stmt *body;
  SrcLoc end_loc;            /* the closing brace */
  TrainItem *items;          /* DEF_TRAIN */
  bool from_stdlib;
  Def *next;
};

typedef struct {
  Def *defs;
  int file;
} FeProgram;

/* Parse a file registered with diag_add_file. Syntax errors go through diag_error; the
 * AST holds what could be recovered. Never NULL. */
FeProgram *fe_parse(Arena *a, int file);
void fe_dump_ast(FILE *out, const FeProgram *p);
void fe_dump_tokens(FILE *out, const FeToken *toks, int n);

/* AST constructors used by the parser (ast.c). A constructor whose result would nest
 * deeper than FE_MAX_EXPR_DEPTH reports it once and returns an EX_ERROR node. */
Expr *fe_expr_number(Arena *a, const char *text, SrcLoc loc);
Expr *fe_expr_bool(Arena *a, bool value, SrcLoc loc);     /* `true`, `false` */
Expr *fe_expr_name(Arena *a, const char *name, SrcLoc loc);
Expr *fe_expr_string(Arena *a, const char *text, SrcLoc loc);   /* `"tanh"`, without the quotes */
Expr *fe_expr_neg(Arena *a, Expr *x, SrcLoc loc);
Expr *fe_expr_binary(Arena *a, int op, Expr *l, Expr *r, SrcLoc loc);
Expr *fe_expr_call(Arena *a, const char *name, SrcLoc name_loc, Arg *args, SrcLoc loc);
Expr *fe_expr_error(Arena *a, SrcLoc loc);
Expr *fe_expr_shape(Arena *a, DimAst *dims, int ndims, SrcLoc loc);   /* `[B, 784]` */
Expr *fe_expr_paren(Expr *x, SrcLoc loc);   /* widens loc, counts a nesting level */
/* Parse a number literal. false (with a message in err) when it is malformed or out of
 * range; is_int: written as an integer. */
bool fe_parse_number(const char *text, double *out, bool *is_int, char *err, size_t errlen);

/* --------------------------------------------------------------- train block (train_block.c) */

typedef enum { FE_SCHED_CONSTANT, FE_SCHED_STEP, FE_SCHED_COSINE, FE_SCHED_PLATEAU } FeSchedule;

/* The checked `train` block. Fields a block does not set hold PyTorch's defaults (for
 * the chosen optimizer: the vocabulary of runtime/optimizers.c) or the bpcc defaults
 * documented in docs/language.md. */
typedef struct {
  bool present;              /* the model has a train block */
  SrcLoc loc;
  bprt_optimizer_config opt; /* default adam; weight_decay and clip lines land here too */
  int64_t batch;             /* default 32: rows of a micro-batch */
  int64_t accumulate;        /* `accumulate N`: micro-batches summed per optimizer step (default 1) */
  int64_t epochs;            /* default 1 */
  int64_t steps;             /* `steps N` instead of epochs: N steps in all; 0: by epochs */
  uint64_t seed;             /* default 0 */
  FeSchedule schedule;       /* default constant */
  int64_t step_size;         /* step */
  double gamma;              /* step: 0.1 */
  int64_t t_max;             /* cosine: default = epochs (= steps in a run by steps) */
  double eta_min;            /* cosine: 0 */
  int64_t warmup;            /* cosine: epochs of linear warm-up inside T_max, 0 */
  double factor;             /* plateau: 0.1 */
  int64_t patience;          /* plateau: 10 */
  double threshold;          /* plateau: 1e-4 */
  int64_t cooldown;          /* plateau: 0 */
  double min_lr;             /* plateau: 0 */
  DType precision;           /* `precision bf16|f16|f32`: the training step's (DT_F32 default) */
  bool loss_scale_set;       /* `loss_scale dynamic | off | N`; else the default (dynamic for
                                precision f16, off otherwise) */
  int32_t loss_scale_mode;   /* bprt_loss_scale_mode */
  double loss_scale;         /* the initial (dynamic) or constant (fixed) scale */
} TrainSpec;

const char *fe_schedule_name(FeSchedule s);
void fe_train_defaults(TrainSpec *t);
/* Check a train block and fill *t (defaults first). Errors through diag_error. */
void fe_check_train(const Def *train, TrainSpec *t);
void fe_print_train(FILE *out, const TrainSpec *t);

/* ---------------------------------------------------------------- checked models (sema.c) */

/* One node of an elaborated model: layers inlined, shapes concrete (DIM_BATCH for B).
 * The op is the IR op it lowers to; nodes are in topological order (args < index). */
typedef struct {
  Op op;                     /* INPUT PARAM CONST unary/binary EW, POW, MATMUL, TRANSPOSE,
                                SUM MEAN MAX, SOFTMAX LOG_SOFTMAX, ONEHOT, DROPOUT_MASK,
                                RESHAPE, CONV2D, LAYERNORM (3 operands), OUTPUT LOSS */
  int nargs;
  int32_t args[3];           /* layernorm: x, gamma, beta; BN_NORM: x, running mean and variance */
  TensorType type;           /* result type (sinks: the operand's) */
  int64_t iattr;             /* INPUT index, PARAM init, reduce/row axis, dropout stream, pool kernel,
                                LAYERNORM dims (fattr[0]: eps) */
  bool keep;                 /* SUM MEAN MAX: the reduced dim stays as 1 (keep = true) */
  double fattr[2];           /* CONST value, POW exponent, init args, dropout p, pool stride and padding */
  int64_t conv[3];           /* CONV2D: stride, padding, dilation */
  const char *name;          /* INPUT, PARAM (path name), OUTPUT */
  SrcLoc loc;
  SrcLoc call;               /* the model-level call that instantiated the layer this node
                                comes from; SRCLOC_NONE for the model's own statements */
} FeNode;

typedef struct {
  const char *name;
  SrcLoc loc;
  Def *def;
  FeNode *nodes;
  int32_t nnodes, capnodes;
  int32_t *params;           /* node ids of PARAM nodes, creation order */
  int32_t nparams;
  int32_t *inputs;           /* node ids of INPUT nodes, signature order */
  int32_t ninputs;
  int32_t *outputs;          /* node ids of OUTPUT nodes */
  int32_t noutputs;
  int32_t loss;              /* node id of the LOSS node, -1 if none */
  int32_t *activations;      /* node ids of the model's named bindings (`h = expr`) */
  const char **activation_names;
  SrcLoc *activation_locs;
  int32_t nactivations;
  SrcLoc loss_expr;          /* the expression after `loss` */
  int ndropout;              /* dropout streams used */
  TrainSpec train;
} FeModel;

typedef struct {
  FeProgram *user;
  FeProgram *stdlib;
  FeModel **models;
  int nmodels;
} FeUnit;

/* The standard library source (stdlib.bp, embedded at build time). */
extern const char fe_stdlib_text[];
extern const size_t fe_stdlib_len;

/* Check a parsed program against the standard library: every definition and every model.
 * Returns the unit; after any error it holds no models. Errors through diag_error. */
FeUnit *fe_check(Arena *a, FeProgram *user);
FeModel *fe_unit_model(FeUnit *u, const char *name);   /* NULL if absent */

/* Parse and check a text in one call (tests, tools): registers it under `name`. */
FeUnit *fe_compile_text(Arena *a, const char *name, const char *text, size_t len);

/* ------------------------------------------------------------------ summary (summary.c) */

int64_t fe_model_param_count(const FeModel *m);   /* total parameter elements */
void fe_print_summary(FILE *out, const FeModel *m);
char *fe_shape_str(const TensorType *t, char *buf, size_t n);  /* "[B,784]" */

/* ------------------------------------------------------------------- lowering (lower.c) */

/* Lower a checked model to one IR Func named after it in module m: one INPUT per
 * signature argument in order, PARAM per parameter with its path name and init, the
 * body's ops, OUTPUT per output and one LOSS. Never fails on a checked model. */
Func *fe_lower(Module *m, const FeModel *model);
/* The same, and with activations = true also an OUTPUT for every float tensor the model
 * body binds to a name (`h1 = relu(...)`), after the declared outputs: what
 * `bpcc train --watch` reports the mean and std of. */
Func *fe_lower_ex(Module *m, const FeModel *model, bool activations);

#endif
