/* frontend/parser.y — the .bp grammar (EBNF in docs/language.md).
 *
 * A pure bison parser with locations. Each rule builds AST through ast.c. Error
 * recovery: a bad statement is skipped to the end of its line (`stmts: stmts error
 * NEWLINE`), a bad definition header to its closing brace (`program: program error
 * '}'`), so independent syntax errors in one file are all reported. Syntax errors read
 *   file:3:12: error: unexpected identifier 'logits', expected ')' or ','
 */
%define api.pure full
%define api.prefix {fe_yy}
%define parse.error custom
%define parse.lac full
%define lr.default-reduction consistent
%locations
%param {void *scanner}
%parse-param {FeParseState *ps}

%code requires {
#include "frontend/frontend.h"

/* State shared by the scanner and the parser for one file. */
typedef struct FeParseState {
  Arena *arena;
  int file;
  int line, col;          /* position of the next byte */
  int paren;              /* open ( and [: newlines inside are not tokens */
  int last_tok;           /* last token returned (0 at the start, -1 after the end) */
  const char *last_text;  /* its bytes, for syntax error messages */
  size_t last_len;
  int tok_line, tok_end;  /* the last token returned: line, end column */
  int prev_line, prev_end; /* the one before it */
  bool bol;               /* no token yet on the current line */
  int lex_error_line;     /* line of the last bad byte or literal reported by the scanner */
  Def *defs, *last_def;   /* the program being built */
} FeParseState;

typedef struct DimList { DimAst dim; struct DimList *next; } DimList;

void *fe_lexer_open(FeParseState *ps, const char *text, size_t len);
void fe_lexer_close(void *scanner);
}

%code provides {
int fe_yylex(FE_YYSTYPE *lval, FE_YYLTYPE *lloc, void *scanner);
void fe_yyerror(FE_YYLTYPE *lloc, void *scanner, FeParseState *ps, const char *msg);
}

%code {
#include <string.h>
#include <stdint.h>

/* Nested input gets a clean error from ast.c long before this stack limit. */
#define YYMAXDEPTH 4000000

static SrcLoc L(FeParseState *ps, FE_YYLTYPE l) {
  return (SrcLoc){ps->file, l.first_line, l.first_column,
                  l.first_line == l.last_line ? l.last_column : INT32_MAX};
}

static void add_def(FeParseState *ps, Def *d) {
  if (!d) return;
  if (ps->last_def) ps->last_def->next = d; else ps->defs = d;
  ps->last_def = d;
}

static Def *new_def(FeParseState *ps, DefKind k, const char *name, SrcLoc loc) {
  Def *d = arena_alloc(ps->arena, sizeof *d);
  d->kind = k;
  d->name = name;
  d->loc = loc;
  return d;
}

/* Lists are built reversed (prepend) and put in order by the rule that closes them. */
/* A dim written as a number: a positive integer; 0 marks one already reported. */
static int64_t dim_number(FeParseState *ps, const char *text, SrcLoc loc) {
  double v;
  bool is_int;
  char err[160];
  if (!text || !fe_parse_number(text, &v, &is_int, err, sizeof err)) return 0;
  if (!is_int || v < 1 || v > (double)FE_MAX_DIM) {
    diag_error(loc, "a dimension must be an integer between 1 and %lld, not '%s'", (long long)FE_MAX_DIM, text);
    return 0;
  }
  (void)ps;
  return (int64_t)v;
}

/* The dims list arrives reversed; store it as an array in source order. */
static void set_dims(FeParseState *ps, TypeAst *t, DimList *l) {
  int n = 0;
  for (DimList *d = l; d; d = d->next) n++;
  t->rank = n;
  t->dims = n ? arena_alloc(ps->arena, (size_t)n * sizeof *t->dims) : NULL;
  for (DimList *d = l; d; d = d->next) t->dims[--n] = d->dim;
}

/* A shape literal `[B, 784]` (reshape's target), its dims list reversed. */
static Expr *shape_expr(FeParseState *ps, DimList *l, SrcLoc loc) {
  int n = 0;
  for (DimList *d = l; d; d = d->next) n++;
  DimAst *dims = n ? arena_alloc(ps->arena, (size_t)n * sizeof *dims) : NULL;
  int k = n;
  for (DimList *d = l; d; d = d->next) dims[--k] = d->dim;
  return fe_expr_shape(ps->arena, dims, n, loc);
}

/* One element of a shape literal, written as an expression: a name, `-1` (the one dim
 * reshape infers), or anything else (a number, `D / heads`), kept as its expression for
 * sema to evaluate: reshape checks it as a dim, transpose as an index of a permutation
 * (where 0 is valid), so a number is not checked here. Any other negative number is
 * reported. */
static DimList *shape_elem(FeParseState *ps, Expr *e) {
  DimList *d = arena_alloc(ps->arena, sizeof *d);
  d->dim.loc = e->loc;
  if (e->kind == EX_NAME) {
    d->dim.name = e->text;
  } else if (e->kind == EX_NEG && e->lhs->kind == EX_NUMBER) {
    if (strcmp(e->lhs->text, "1") == 0) d->dim.value = -1;
    else diag_error(e->loc, "a dimension of a shape must be a positive integer, a name or -1 (inferred), not '-%s'", e->lhs->text);
  } else if (e->kind != EX_ERROR) {
    d->dim.expr = e;
    if (e->kind == EX_NUMBER && e->is_int && e->num >= 1 && e->num <= (double)FE_MAX_DIM) d->dim.value = (int64_t)e->num;
  }
  return d;
}

static TrainValue *fe_train_number(FeParseState *ps, const char *text, bool neg, SrcLoc loc) {
  TrainValue *v = arena_alloc(ps->arena, sizeof *v);
  v->kind = TV_NUMBER;
  v->loc = loc;
  if (!text) {                 /* bad literal, already reported */
    v->kind = TV_NAME;
    v->name = NULL;
    return v;
  }
  char err[160];
  fe_parse_number(text, &v->num, &v->is_int, err, sizeof err);
  if (neg) v->num = -v->num;
  return v;
}

static Stmt *err_stmt(FeParseState *ps, StmtKind k, const char *name, SrcLoc loc, SrcLoc eloc, Stmt *prev) {
  Stmt *s = arena_alloc(ps->arena, sizeof *s);
  s->kind = k;
  s->name = name;
  s->loc = loc;
  s->value = fe_expr_error(ps->arena, eloc);
  s->next = prev;
  return s;
}

#define REVERSE(T, head) do {                                             \
    T *prev_ = NULL, *cur_ = (head);                                      \
    while (cur_) { T *n_ = cur_->next; cur_->next = prev_; prev_ = cur_; cur_ = n_; } \
    (head) = prev_;                                                       \
  } while (0)
}

%union {
  const char *str;
  Expr *expr;
  Arg *arg;
  ParamDecl *param;
  TypeAst *type;
  DimAst *dim;
  Stmt *stmt;
  Def *def;
  TrainItem *titem;
  TrainArg *targ;
  TrainValue *tval;
  struct DimList *dims;
}

%token <str> IDENT "identifier"
%token <str> NUMBER "number"
%token NEWLINE "end of line"
%token ARROW "'->'"
%token ELLIPSIS "'...'"
%token <str> STRING "string"
%token MODEL "'model'" LAYER "'layer'" LOSS "'loss'" TRAIN "'train'"
%token OUTPUT "'output'" RETURN "'return'" PARAM "'param'" INIT "'init'"
%token TRUE "'true'" FALSE "'false'"

%left '+' '-'
%left '*' '/' '@'
%precedence NEG
%right '^'

%type <def> def block_def train_def
%type <stmt> stmts stmt block
%type <expr> expr primary default_opt
%type <arg> args_opt args arg
%type <param> params_opt params param
%type <type> type ret_opt
%type <dims> dims_opt dims dim sdims_opt sdims
%type <titem> titems titem
%type <targ> targs_opt targs targ
%type <tval> tval tnum tnums

%%

/* program = { def | NEWLINE } */
program:
    %empty
  | program NEWLINE
  | program def                 { add_def(ps, $2); }
  | program error '}'           { yyerrok; }
  ;

def: block_def | train_def ;

/* model NAME ( params ) block | layer NAME ( params ) [-> type] block | loss ... */
block_def:
    MODEL IDENT '(' params_opt ')' block
      { $$ = new_def(ps, DEF_MODEL, $2, L(ps, @2)); $$->params = $4; $$->body = $6; $$->end_loc = L(ps, @6); $$->end_loc.line = @6.last_line; $$->end_loc.col = @6.last_column - 1; $$->end_loc.endcol = @6.last_column; }
  | LAYER IDENT '(' params_opt ')' ret_opt block
      { $$ = new_def(ps, DEF_LAYER, $2, L(ps, @2)); $$->params = $4; $$->ret = $6; $$->body = $7; $$->end_loc = L(ps, @7); $$->end_loc.line = @7.last_line; $$->end_loc.col = @7.last_column - 1; $$->end_loc.endcol = @7.last_column; }
  | LOSS IDENT '(' params_opt ')' ret_opt block
      { $$ = new_def(ps, DEF_LOSS, $2, L(ps, @2)); $$->params = $4; $$->ret = $6; $$->body = $7; $$->end_loc = L(ps, @7); $$->end_loc.line = @7.last_line; $$->end_loc.col = @7.last_column - 1; $$->end_loc.endcol = @7.last_column; }
  ;

ret_opt: %empty { $$ = NULL; } | ARROW type { $$ = $2; } ;

params_opt: %empty { $$ = NULL; } | params { $$ = $1; REVERSE(ParamDecl, $$); } | params ',' { $$ = $1; REVERSE(ParamDecl, $$); } ;
params: param { $$ = $1; } | params ',' param { $$ = $3; $$->next = $1; } ;

/* param = NAME ':' type [ '=' expr ] */
param: IDENT ':' type default_opt
      { $$ = arena_alloc(ps->arena, sizeof *$$); $$->name = $1; $$->loc = L(ps, @1); $$->type = *$3; $$->def = $4; }
  ;
default_opt: %empty { $$ = NULL; } | '=' expr { $$ = $2; } ;

/* type = NAME | [NAME] '[' dims ']' */
type:
    IDENT
      { $$ = arena_alloc(ps->arena, sizeof *$$); $$->loc = L(ps, @$);
        if (strcmp($1, "int") == 0) $$->kind = TY_INT;
        else if (strcmp($1, "float") == 0) $$->kind = TY_FLOAT;
        else { $$->kind = TY_TENSOR; $$->dtype = $1; $$->rank = -1; } }
  | IDENT '[' dims_opt ']'
      { $$ = arena_alloc(ps->arena, sizeof *$$); $$->loc = L(ps, @$); $$->kind = TY_TENSOR;
        $$->dtype = $1; set_dims(ps, $$, $3); }
  | '[' dims_opt ']'
      { $$ = arena_alloc(ps->arena, sizeof *$$); $$->loc = L(ps, @$); $$->kind = TY_TENSOR;
        set_dims(ps, $$, $2); }
  ;

dims_opt: %empty { $$ = NULL; } | dims { $$ = $1; } ;
dims: dim { $$ = $1; } | dims ',' dim { $$ = $3; $$->next = $1; } ;
dim:
    ELLIPSIS { $$ = arena_alloc(ps->arena, sizeof *$$); $$->dim.name = "..."; $$->dim.loc = L(ps, @1); }
  | IDENT  { $$ = arena_alloc(ps->arena, sizeof *$$); $$->dim.name = $1; $$->dim.loc = L(ps, @1); }
  | NUMBER { $$ = arena_alloc(ps->arena, sizeof *$$); $$->dim.loc = L(ps, @1); $$->dim.value = dim_number(ps, $1, $$->dim.loc); }
  ;

/* a shape literal's elements (reshape's target, transpose's permutation): expressions */
sdims_opt: %empty { $$ = NULL; } | sdims { $$ = $1; } ;
sdims: expr { $$ = shape_elem(ps, $1); } | sdims ',' expr { $$ = shape_elem(ps, $3); $$->next = $1; } ;

/* block = '{' { stmt NEWLINE } '}' */
block: '{' stmts '}' { $$ = $2; REVERSE(Stmt, $$); } ;

stmts:
    %empty               { $$ = NULL; }
  | stmts NEWLINE        { $$ = $1; }
  | stmts stmt NEWLINE   { $$ = $2; if ($2) $2->next = $1; else $$ = $1; }
  | stmts error NEWLINE  { $$ = $1; yyerrok; }
  /* a broken right-hand side still defines its name (no "unknown name" cascade) */
  | stmts IDENT '=' error NEWLINE
      { $$ = err_stmt(ps, ST_ASSIGN, $2, L(ps, @2), L(ps, @4), $1); yyerrok; }
  | stmts OUTPUT IDENT '=' error NEWLINE
      { $$ = err_stmt(ps, ST_OUTPUT, $3, L(ps, @3), L(ps, @5), $1); yyerrok; }
  | stmts LOSS error NEWLINE
      { $$ = err_stmt(ps, ST_LOSS, NULL, L(ps, @2), L(ps, @3), $1); yyerrok; }
  | stmts PARAM IDENT error NEWLINE
      { $$ = err_stmt(ps, ST_PARAM, $3, L(ps, @3), L(ps, @4), $1); yyerrok; }
  | stmts RETURN error NEWLINE
      { $$ = err_stmt(ps, ST_RETURN, NULL, L(ps, @2), L(ps, @3), $1); yyerrok; }
  ;

/* stmt = NAME '=' expr | output NAME '=' expr | loss expr | return expr
 *      | param NAME ':' type init NAME [ '(' args ')' ] */
stmt:
    IDENT '=' expr
      { $$ = arena_alloc(ps->arena, sizeof *$$); $$->kind = ST_ASSIGN; $$->name = $1; $$->loc = L(ps, @1); $$->value = $3; }
  | OUTPUT IDENT '=' expr
      { $$ = arena_alloc(ps->arena, sizeof *$$); $$->kind = ST_OUTPUT; $$->name = $2; $$->loc = L(ps, @2); $$->value = $4; }
  | LOSS expr
      { $$ = arena_alloc(ps->arena, sizeof *$$); $$->kind = ST_LOSS; $$->loc = L(ps, @1); $$->value = $2; }
  | RETURN expr
      { $$ = arena_alloc(ps->arena, sizeof *$$); $$->kind = ST_RETURN; $$->loc = L(ps, @1); $$->value = $2; }
  | PARAM IDENT ':' type INIT IDENT
      { $$ = arena_alloc(ps->arena, sizeof *$$); $$->kind = ST_PARAM; $$->name = $2; $$->loc = L(ps, @2);
        $$->type = *$4; $$->init = $6; $$->init_loc = L(ps, @6); }
  | PARAM IDENT ':' type INIT IDENT '(' args_opt ')'
      { $$ = arena_alloc(ps->arena, sizeof *$$); $$->kind = ST_PARAM; $$->name = $2; $$->loc = L(ps, @2);
        $$->type = *$4; $$->init = $6; $$->init_loc = L(ps, @6); $$->init_args = $8; $$->init_has_parens = true; }
  ;

/* expr = expr ('+'|'-'|'*'|'/'|'@'|'^') expr | '-' expr | primary */
expr:
    expr '+' expr          { $$ = fe_expr_binary(ps->arena, '+', $1, $3, L(ps, @$)); }
  | expr '-' expr          { $$ = fe_expr_binary(ps->arena, '-', $1, $3, L(ps, @$)); }
  | expr '*' expr          { $$ = fe_expr_binary(ps->arena, '*', $1, $3, L(ps, @$)); }
  | expr '/' expr          { $$ = fe_expr_binary(ps->arena, '/', $1, $3, L(ps, @$)); }
  | expr '@' expr          { $$ = fe_expr_binary(ps->arena, '@', $1, $3, L(ps, @$)); }
  | expr '^' expr          { $$ = fe_expr_binary(ps->arena, '^', $1, $3, L(ps, @$)); }
  | '-' expr %prec NEG     { $$ = fe_expr_neg(ps->arena, $2, L(ps, @$)); }
  | primary                { $$ = $1; }
  ;

/* primary = NUMBER | "true" | "false" | NAME | NAME '(' args ')' | '(' expr ')'
 *         | '[' [ expr { ',' expr } ] ']'        (a shape: reshape's and transpose's second argument) */
primary:
    NUMBER                 { $$ = $1 ? fe_expr_number(ps->arena, $1, L(ps, @1)) : fe_expr_error(ps->arena, L(ps, @1)); }
  | TRUE                   { $$ = fe_expr_bool(ps->arena, true, L(ps, @1)); }
  | FALSE                  { $$ = fe_expr_bool(ps->arena, false, L(ps, @1)); }
  | STRING                 { $$ = fe_expr_string(ps->arena, $1, L(ps, @1)); }
  | IDENT                  { $$ = fe_expr_name(ps->arena, $1, L(ps, @1)); }
  | IDENT '(' args_opt ')' { $$ = fe_expr_call(ps->arena, $1, L(ps, @1), $3, L(ps, @$)); }
  | '(' expr ')'           { $$ = fe_expr_paren($2, L(ps, @$)); }
  | '[' sdims_opt ']'      { $$ = shape_expr(ps, $2, L(ps, @$)); }
  ;

/* args = [ arg { ',' arg } [','] ] ; arg = [NAME '='] expr */
args_opt: %empty { $$ = NULL; } | args { $$ = $1; REVERSE(Arg, $$); } | args ',' { $$ = $1; REVERSE(Arg, $$); } ;
args: arg { $$ = $1; } | args ',' arg { $$ = $3; $$->next = $1; } ;
arg:
    expr             { $$ = arena_alloc(ps->arena, sizeof *$$); $$->value = $1; }
  | IDENT '=' expr   { $$ = arena_alloc(ps->arena, sizeof *$$); $$->name = $1; $$->name_loc = L(ps, @1); $$->value = $3; }
  ;

/* train NAME '{' { NAME tvalue | NAME NAME '(' targs ')' } '}' */
train_def:
    TRAIN IDENT '{' titems '}'
      { $$ = new_def(ps, DEF_TRAIN, $2, L(ps, @2)); $$->items = $4; REVERSE(TrainItem, $$->items); $$->end_loc = L(ps, @5); }
  ;
titems:
    %empty                { $$ = NULL; }
  | titems NEWLINE        { $$ = $1; }
  | titems titem NEWLINE  { $$ = $2; $2->next = $1; }
  | titems error NEWLINE  { $$ = $1; yyerrok; }
  ;
titem:
    IDENT tval
      { $$ = arena_alloc(ps->arena, sizeof *$$); $$->key = $1; $$->loc = L(ps, @1); $$->value = $2; }
  | IDENT IDENT '(' targs_opt ')'
      { $$ = arena_alloc(ps->arena, sizeof *$$); $$->key = $1; $$->loc = L(ps, @1); $$->has_parens = true; $$->args = $4;
        $$->value = arena_alloc(ps->arena, sizeof *$$->value); $$->value->kind = TV_NAME; $$->value->name = $2; $$->value->loc = L(ps, @2); }
  ;
targs_opt: %empty { $$ = NULL; } | targs { $$ = $1; REVERSE(TrainArg, $$); } | targs ',' { $$ = $1; REVERSE(TrainArg, $$); } ;
targs: targ { $$ = $1; } | targs ',' targ { $$ = $3; $$->next = $1; } ;
targ:
    tval             { $$ = arena_alloc(ps->arena, sizeof *$$); $$->loc = $1->loc; $$->value = $1; }
  | IDENT '=' tval   { $$ = arena_alloc(ps->arena, sizeof *$$); $$->name = $1; $$->loc = L(ps, @1); $$->value = $3; }
  ;
tval:
    tnum             { $$ = $1; }
  | IDENT            { $$ = arena_alloc(ps->arena, sizeof *$$); $$->kind = TV_NAME; $$->name = $1; $$->loc = L(ps, @1); }
  | TRUE             { $$ = arena_alloc(ps->arena, sizeof *$$); $$->kind = TV_NAME; $$->name = "true"; $$->loc = L(ps, @1); }
  | FALSE            { $$ = arena_alloc(ps->arena, sizeof *$$); $$->kind = TV_NAME; $$->name = "false"; $$->loc = L(ps, @1); }
  | '(' tnums ')'    { $$ = arena_alloc(ps->arena, sizeof *$$); $$->kind = TV_TUPLE; $$->items = $2; REVERSE(TrainValue, $$->items); $$->loc = L(ps, @$); }
  ;
tnums: tnum { $$ = $1; } | tnums ',' tnum { $$ = $3; $$->next = $1; } ;
tnum:
    NUMBER      { $$ = fe_train_number(ps, $1, false, L(ps, @$)); }
  | '-' NUMBER  { $$ = fe_train_number(ps, $2, true, L(ps, @$)); }
  ;

%%

/* Token names without bison's quoting. */
static const char *sym_name(yysymbol_kind_t k) {
  const char *n = yysymbol_name(k);
  return n;
}

/* `unexpected identifier 'logits', expected ')' or ','` at the unexpected token. */
static int yyreport_syntax_error(const yypcontext_t *ctx, void *scanner, FeParseState *ps) {
  (void)scanner;
  yysymbol_kind_t expected[64];
  int n = yypcontext_expected_tokens(ctx, expected, 64);
  yysymbol_kind_t got = yypcontext_token(ctx);
  /* `true`, `false` and strings are literals wherever a number is, and so is a shape `[B, 784]`
   * (reshape's argument): "expected identifier, number, '-' or '('" names the usual fix
   * (and stays short enough to be printed) */
  bool number = false;
  for (int i = 0; i < n; i++) number |= expected[i] == YYSYMBOL_NUMBER;
  if (number) {
    int k = 0;
    for (int i = 0; i < n; i++)
      if (expected[i] != YYSYMBOL_TRUE && expected[i] != YYSYMBOL_FALSE && expected[i] != YYSYMBOL_STRING &&
          strcmp(sym_name(expected[i]), "'['") != 0)
        expected[k++] = expected[i];
    n = k;
  }
  if (got == YYSYMBOL_YYEOF)   /* at the end, the one useful expectation is the brace */
    for (int i = 0; i < n; i++)
      if (strcmp(sym_name(expected[i]), "'}'") == 0) {
        expected[0] = expected[i];
        n = 1;
        break;
      }
  SrcLoc loc = L(ps, *yypcontext_location(ctx));
  char msg[512];
  size_t k = 0;
  const char *what = sym_name(got);
  if (got == YYSYMBOL_IDENT || got == YYSYMBOL_NUMBER) {
    size_t len = ps->last_len > 40 ? 40 : ps->last_len;
    k += (size_t)snprintf(msg + k, sizeof msg - k, "unexpected %s '%.*s%s'", what, (int)len,
                          ps->last_text ? ps->last_text : "", ps->last_len > 40 ? "..." : "");
  } else {
    k += (size_t)snprintf(msg + k, sizeof msg - k, "unexpected %s", what);
  }
  if (n > 0 && n <= 5) {
    for (int i = 0; i < n && k < sizeof msg; i++)
      k += (size_t)snprintf(msg + k, sizeof msg - k, "%s%s", i == 0 ? ", expected " : i == n - 1 ? " or " : ", ",
                            sym_name(expected[i]));
  }
  /* The expected token was due before a line break that an open parenthesis or a
   * trailing operator made part of the statement: point at the end of that line. */
  bool closer = false;
  for (int i = 0; i < n; i++)
    if (strcmp(sym_name(expected[i]), "')'") == 0 || strcmp(sym_name(expected[i]), "']'") == 0) closer = true;
  const char *want = NULL;
  for (int i = 0; i < n; i++)
    if (strcmp(sym_name(expected[i]), "')'") == 0 || strcmp(sym_name(expected[i]), "']'") == 0) want = sym_name(expected[i]);
  if (closer && got != YYSYMBOL_YYEOF && ps->prev_line > 0 && loc.line > ps->prev_line) {
    SrcLoc end = {ps->file, ps->prev_line, ps->prev_end, 0};
    diag_error(end, "missing %s at the end of this line", want);
  } else if (want && got == YYSYMBOL_NEWLINE) {
    diag_error(loc, "missing %s at the end of this line", want);
  } else if (ps->lex_error_line != loc.line) {
    diag_error(loc, "%s", msg);  /* else a cascade of the bad byte */
  }  /* else a cascade of the bad byte */
  ps->paren = 0;          /* recovery resynchronizes at the next line end */
  return 0;
}

void fe_yyerror(FE_YYLTYPE *lloc, void *scanner, FeParseState *ps, const char *msg) {
  (void)scanner;
  if (strcmp(msg, "memory exhausted") == 0) msg = "program nested too deeply";
  diag_error(L(ps, *lloc), "%s", msg);
}

FeProgram *fe_parse(Arena *a, int file) {
  size_t len;
  const char *text = diag_file_text(file, &len);
  FeParseState ps;
  memset(&ps, 0, sizeof ps);
  ps.arena = a;
  ps.file = file;
  ps.line = 1;
  ps.col = 1;
  void *sc = fe_lexer_open(&ps, text ? text : "", text ? len : 0);
  fe_yyparse(sc, &ps);
  fe_lexer_close(sc);
  FeProgram *p = arena_alloc(a, sizeof *p);
  p->defs = ps.defs;
  p->file = file;
  return p;
}

const char *fe_token_name(int kind) {
  if (kind == 0) return "end of file";
  if (kind < 0) return "invalid";
  return sym_name(YYTRANSLATE(kind));
}
