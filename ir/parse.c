/* ir/parse.c — a hand-written parser for exactly the text ir/print.c produces.
 *
 * Recursive descent over a line-oriented token stream; each parse function carries
 * its grammar rule as a comment, and docs/ir.md has the whole grammar. Errors are
 * located diagnostics on the IR text (registered with diag_add_file under the name
 * the caller gives), and the first one stops the parse: a value numbering that went
 * wrong once would only produce noise after it.
 *
 * The parser rebuilds what the printer dropped into comments: `# file:line:col`
 * becomes the instruction's SrcLoc (the file is looked up among the registered
 * sources, or registered with an empty text), `[rule from %K]` its rule and `from`.
 * Functions are built with cse = false, so value %N is instruction N, as in the text. */
#include "ir/ir.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ tokens */

typedef enum {
  T_EOF,
  T_NEWLINE,
  T_WORD,     /* [A-Za-z_][A-Za-z0-9_.]* : ops, dtypes, attributes, initializers */
  T_GLOBAL,   /* @name or @"name" */
  T_VALUE,    /* %123 */
  T_STRING,   /* "..." with \" \\ \xHH \n \t escapes */
  T_NUMBER,   /* -1.5e3, inf, -inf, nan are read as numbers where one is expected */
  T_PUNCT,    /* = , : [ ] ( ) { } */
  T_COMMENT,  /* # to the end of the line */
} TokKind;

typedef struct {
  TokKind kind;
  const char *p;      /* its text */
  int len;
  int line, col;
  char *str;          /* T_STRING, T_GLOBAL: the decoded text (module arena) */
  int64_t ival;       /* T_VALUE */
} Token;

typedef struct {
  const char *text, *end, *cur;
  int line, col;
  int file;           /* diag file id of the text */
  Module *mod;
  Token tok;          /* the current token */
  int32_t from_max;   /* the largest `from %K` in the current function, and where */
  SrcLoc from_loc;
  jmp_buf fail;
} Parser;

static SrcLoc tok_loc(Parser *ps, const Token *t) {
  return (SrcLoc){ps->file, t->line, t->col, t->col + (t->len > 0 ? t->len : 1)};
}

static _Noreturn void error_at(Parser *ps, SrcLoc loc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static _Noreturn void error_at(Parser *ps, SrcLoc loc, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  diag_error(loc, "%s", msg);
  longjmp(ps->fail, 1);
}

/* How a token reads in "expected X, found Y". */
static const char *describe(Parser *ps, const Token *t) {
  switch (t->kind) {
  case T_EOF: return "end of file";
  case T_NEWLINE: return "end of line";
  case T_COMMENT: return "a comment";
  default: {
    int n = t->len > 40 ? 40 : t->len;
    return arena_printf(ps->mod->arena, "'%.*s'", n, t->p);
  }
  }
}

static void advance_char(Parser *ps) {
  if (*ps->cur == '\n') {
    ps->line++;
    ps->col = 1;
  } else {
    ps->col++;
  }
  ps->cur++;
}

static bool is_word_start(int c) { return isalpha(c) || c == '_'; }
static bool is_word_char(int c) { return isalnum(c) || c == '_' || c == '.'; }

/* string := '"' (char | '\"' | '\\' | '\xHH' | '\n' | '\t')* '"'   (on one line) */
static char *lex_string(Parser *ps, Token *t) {
  char *buf = arena_alloc(ps->mod->arena, (size_t)(ps->end - ps->cur) + 1);
  size_t n = 0;
  advance_char(ps);   /* the opening quote */
  for (;;) {
    if (ps->cur >= ps->end || *ps->cur == '\n') {
      t->len = (int)(ps->cur - t->p);
      error_at(ps, tok_loc(ps, t), "unterminated string");
    }
    char c = *ps->cur;
    if (c == '"') { advance_char(ps); break; }
    if (c == '\\') {
      SrcLoc at = {ps->file, ps->line, ps->col, ps->col + 2};
      advance_char(ps);
      char e = ps->cur < ps->end ? *ps->cur : 0;
      if (e == '"' || e == '\\') { buf[n++] = e; advance_char(ps); }
      else if (e == 'n') { buf[n++] = '\n'; advance_char(ps); }
      else if (e == 't') { buf[n++] = '\t'; advance_char(ps); }
      else if (e == 'x' && ps->end - ps->cur >= 3 && isxdigit((unsigned char)ps->cur[1]) &&
               isxdigit((unsigned char)ps->cur[2])) {
        char hex[3] = {ps->cur[1], ps->cur[2], 0};
        int v = (int)strtol(hex, NULL, 16);
        if (v == 0) error_at(ps, at, "a string cannot contain \\x00");
        buf[n++] = (char)v;
        advance_char(ps); advance_char(ps); advance_char(ps);
      } else {
        error_at(ps, at, "unknown escape in string (use \\\" \\\\ \\n \\t or \\xHH)");
      }
      continue;
    }
    buf[n++] = c;
    advance_char(ps);
  }
  buf[n] = 0;
  return buf;
}

static bool lex_number_at(const char *p, const char *end, const char **stop) {
  const char *q = p;
  if (q < end && (*q == '-' || *q == '+')) q++;
  if (end - q >= 3 && (memcmp(q, "inf", 3) == 0 || memcmp(q, "nan", 3) == 0) &&
      (q + 3 >= end || !is_word_char((unsigned char)q[3]))) {
    *stop = q + 3;
    return true;
  }
  const char *digits = q;
  while (q < end && isdigit((unsigned char)*q)) q++;
  bool any = q > digits;
  if (q < end && *q == '.') {
    q++;
    const char *frac = q;
    while (q < end && isdigit((unsigned char)*q)) q++;
    any = any || q > frac;
  }
  if (!any) return false;
  if (q < end && (*q == 'e' || *q == 'E')) {
    const char *e = q + 1;
    if (e < end && (*e == '-' || *e == '+')) e++;
    if (e < end && isdigit((unsigned char)*e)) {
      while (e < end && isdigit((unsigned char)*e)) e++;
      q = e;
    }
  }
  *stop = q;
  return true;
}

static void next(Parser *ps) {
  Token *t = &ps->tok;
  while (ps->cur < ps->end && (*ps->cur == ' ' || *ps->cur == '\t' || *ps->cur == '\r')) advance_char(ps);
  memset(t, 0, sizeof *t);
  t->p = ps->cur;
  t->line = ps->line;
  t->col = ps->col;
  if (ps->cur >= ps->end) { t->kind = T_EOF; return; }
  unsigned char c = (unsigned char)*ps->cur;
  const char *stop;
  if (c == '\n') {
    t->kind = T_NEWLINE;
    t->len = 1;
    advance_char(ps);
  } else if (c == '#') {
    t->kind = T_COMMENT;
    while (ps->cur < ps->end && *ps->cur != '\n') advance_char(ps);
    t->len = (int)(ps->cur - t->p);
  } else if (c == '"') {
    t->kind = T_STRING;
    t->str = lex_string(ps, t);
    t->len = (int)(ps->cur - t->p);
  } else if (c == '%') {
    advance_char(ps);
    if (ps->cur >= ps->end || !isdigit((unsigned char)*ps->cur)) {
      t->len = 1;
      error_at(ps, tok_loc(ps, t), "expected a value number after '%%'");
    }
    int64_t v = 0;
    while (ps->cur < ps->end && isdigit((unsigned char)*ps->cur)) {
      if (v < INT32_MAX) v = v * 10 + (*ps->cur - '0');
      advance_char(ps);
    }
    t->kind = T_VALUE;
    t->ival = v;
    t->len = (int)(ps->cur - t->p);
  } else if (c == '@') {
    advance_char(ps);
    t->kind = T_GLOBAL;
    if (ps->cur < ps->end && *ps->cur == '"') {
      t->str = lex_string(ps, t);
    } else {
      const char *s = ps->cur;
      while (ps->cur < ps->end && is_word_char((unsigned char)*ps->cur)) advance_char(ps);
      if (ps->cur == s) {
        t->len = 1;
        error_at(ps, tok_loc(ps, t), "expected a function name after '@'");
      }
      t->str = arena_strndup(ps->mod->arena, s, (size_t)(ps->cur - s));
    }
    t->len = (int)(ps->cur - t->p);
  } else if ((isdigit(c) || c == '-' || c == '+' || c == '.') && lex_number_at(ps->cur, ps->end, &stop)) {
    t->kind = T_NUMBER;
    while (ps->cur < stop) advance_char(ps);
    t->len = (int)(ps->cur - t->p);
  } else if (is_word_start(c)) {
    t->kind = T_WORD;
    while (ps->cur < ps->end && is_word_char((unsigned char)*ps->cur)) advance_char(ps);
    t->len = (int)(ps->cur - t->p);
  } else if (strchr("=,:[](){}", c) && c) {
    t->kind = T_PUNCT;
    t->len = 1;
    advance_char(ps);
  } else {
    t->len = 1;
    if (c >= 32 && c < 127) error_at(ps, tok_loc(ps, t), "unexpected character '%c'", c);
    error_at(ps, tok_loc(ps, t), "unexpected byte 0x%02x", c);
  }
}

static bool is_punct(const Token *t, char c) { return t->kind == T_PUNCT && t->p[0] == c; }
static bool is_word(const Token *t, const char *w) {
  return t->kind == T_WORD && (size_t)t->len == strlen(w) && memcmp(t->p, w, (size_t)t->len) == 0;
}

static void expect_punct(Parser *ps, char c, const char *context) {
  if (!is_punct(&ps->tok, c))
    error_at(ps, tok_loc(ps, &ps->tok), "expected '%c' %s, found %s", c, context, describe(ps, &ps->tok));
  next(ps);
}

/* number := ['-'|'+'] (digits ['.' digits] [exponent] | inf | nan) */
static double parse_number(Parser *ps, const char *what) {
  Token *t = &ps->tok;
  bool word = t->kind == T_WORD && (is_word(t, "inf") || is_word(t, "nan"));
  if (t->kind != T_NUMBER && !word)
    error_at(ps, tok_loc(ps, t), "expected a number for %s, found %s", what, describe(ps, t));
  char buf[64];
  if (t->len >= (int)sizeof buf) error_at(ps, tok_loc(ps, t), "number too long");
  memcpy(buf, t->p, (size_t)t->len);
  buf[t->len] = 0;
  double v = strtod(buf, NULL);
  next(ps);
  return v;
}

/* int := ['-'] digits */
static int64_t parse_int(Parser *ps, const char *what) {
  Token *t = &ps->tok;
  char buf[32];
  bool ok = t->kind == T_NUMBER && t->len < (int)sizeof buf;
  if (ok) {
    memcpy(buf, t->p, (size_t)t->len);
    buf[t->len] = 0;
    for (int i = 0; buf[i]; i++)
      if (!isdigit((unsigned char)buf[i]) && !(i == 0 && buf[i] == '-')) ok = false;
  }
  if (!ok) error_at(ps, tok_loc(ps, t), "expected an integer for %s, found %s", what, describe(ps, t));
  errno = 0;
  long long v = strtoll(buf, NULL, 10);
  if (errno || v > INT32_MAX || v < INT32_MIN) error_at(ps, tok_loc(ps, t), "integer %s out of range", buf);
  next(ps);
  return v;
}

/* type := ('f32' | 'f64' | 'bf16' | 'f16' | 'label') '[' [dim (',' dim)*] ']'     dim := 'B' | digits */
static TypeId parse_type(Parser *ps) {
  Token t0 = ps->tok;
  DType dt;
  if (is_word(&t0, "f32")) dt = DT_F32;
  else if (is_word(&t0, "f64")) dt = DT_F64;
  else if (is_word(&t0, "label")) dt = DT_LABEL;
  else if (is_word(&t0, "bf16")) dt = DT_BF16;
  else if (is_word(&t0, "f16")) dt = DT_F16;
  else error_at(ps, tok_loc(ps, &t0), "expected a type (f32, f64, bf16, f16 or label), found %s", describe(ps, &t0));
  next(ps);
  expect_punct(ps, '[', "after the dtype");
  int64_t dims[IR_MAX_RANK];
  int rank = 0;
  while (!is_punct(&ps->tok, ']')) {
    if (rank > 0) expect_punct(ps, ',', "between dims");
    Token *t = &ps->tok;
    if (rank == IR_MAX_RANK) error_at(ps, tok_loc(ps, t), "a tensor has at most %d dims", IR_MAX_RANK);
    if (is_word(t, "B")) {
      dims[rank++] = DIM_BATCH;
      next(ps);
      continue;
    }
    bool digits = t->kind == T_NUMBER;
    for (int i = 0; digits && i < t->len; i++) digits = isdigit((unsigned char)t->p[i]) != 0;
    if (!digits) error_at(ps, tok_loc(ps, t), "expected a dim (a positive integer or B), found %s", describe(ps, t));
    long long d = strtoll(t->p, NULL, 10);
    if (d <= 0 || t->len > 15) error_at(ps, tok_loc(ps, t), "a dim must be between 1 and 10^15");
    dims[rank++] = d;
    next(ps);
  }
  next(ps);
  return ir_type(ps->mod, dt, rank, dims);
}

/* ------------------------------------------------------------------ comments */

/* The registered source called `name` (the latest one), or a new one with no text. */
static int file_id(const char *name) {
  int found = -1;
  for (int i = 0; diag_file_text(i, NULL); i++)
    if (strcmp(diag_file_name(i), name) == 0) found = i;
  return found >= 0 ? found : diag_add_file(name, "", 0);
}

#define AT(q, n) ((SrcLoc){ps->file, t->line, t->col + (int)((q) - t->p), t->col + (int)((q) - t->p) + (n)})

/* file ':' line ':' col in [p, le) of comment t, split at the last two colons; what
 * names it in the error ("a location", "a call site"). */
static SrcLoc parse_loc(Parser *ps, const Token *t, const char *p, const char *le, const char *what) {
  const char *c2 = le, *c1;
  while (c2 > p && c2[-1] != ':') c2--;
  c1 = c2 > p ? c2 - 1 : p;
  while (c1 > p && c1[-1] != ':') c1--;
  bool ok = c2 > p && c1 > p && c1 - 1 > p;
  for (const char *q = c1; ok && q < c2 - 1; q++) ok = isdigit((unsigned char)*q) != 0;
  for (const char *q = c2; ok && q < le; q++) ok = isdigit((unsigned char)*q) != 0;
  ok = ok && c2 - 1 > c1 && le > c2 && c2 - c1 < 11 && le - c2 < 11;
  if (!ok) error_at(ps, AT(p, (int)(le - p)), "expected %s 'file:line:col' in the comment", what);
  char *fname = arena_strndup(ps->mod->arena, p, (size_t)(c1 - 1 - p));
  return (SrcLoc){file_id(fname), (int32_t)strtol(c1, NULL, 10), (int32_t)strtol(c2, NULL, 10), 0};
}

/* comment := '#' [loc] ['(called at' loc ')'] ['[' ['fwd'] ['recomputed'] [rule] ['from' value] ']']
 * loc := file ':' line ':' col; the locations end at the first " [", the first one also
 * at "(called at " (at the start or after a space), and rule is a word or a quoted
 * string. */
static void parse_comment(Parser *ps, const Token *t, Inst *in) {
  static const char called[] = "(called at ";
  const size_t ncalled = sizeof called - 1;
  const char *p = t->p + 1, *end = t->p + t->len;
  Module *m = ps->mod;
  while (p < end && *p == ' ') p++;
  if (p >= end) return;
  const char *lb = p;   /* where the bracket starts, or end */
  if (*p != '[') {
    lb = p;
    while (lb < end && !(lb[0] == '[' && lb > p && lb[-1] == ' ')) lb++;
    const char *le = lb;
    while (le > p && le[-1] == ' ') le--;
    const char *cs = NULL;   /* the call site's "(called at " */
    for (const char *q = p; !cs && q + ncalled <= le; q++)
      if ((q == p || q[-1] == ' ') && strncmp(q, called, ncalled) == 0) cs = q;
    const char *locend = cs ? cs : le;
    while (locend > p && locend[-1] == ' ') locend--;
    if (locend > p) in->loc = parse_loc(ps, t, p, locend, "a location");
    if (cs) {
      if (le[-1] != ')') error_at(ps, AT(cs, (int)(le - cs)), "expected ')' at the end of the call site");
      in->call = parse_loc(ps, t, cs + ncalled, le - 1, "a call site");
    }
    p = lb;
  }
  if (p >= end) return;
  /* the bracket */
  const char *open = p;
  p++;
  in->flags = IF_BACKWARD;
  int stage = 0;   /* 0: fwd allowed, 1: recomputed allowed, 2: rule allowed, 3: from allowed, 4: done */
  for (;;) {
    while (p < end && *p == ' ') p++;
    if (p >= end) error_at(ps, AT(open, (int)(end - open)), "missing ']' at the end of the rule");
    if (*p == ']') { p++; break; }
    const char *w = p;
    char *word = NULL;
    bool quoted = *p == '"';
    if (quoted) {
      p++;
      while (p < end && *p != '"') p += *p == '\\' && p + 1 < end ? 2 : 1;
      if (p >= end) error_at(ps, AT(w, (int)(end - w)), "unterminated string");
      p++;
      /* decode with the string lexer's rules */
      Parser sub = *ps;
      sub.cur = w;
      sub.end = p;
      sub.line = t->line;
      sub.col = t->col + (int)(w - t->p);
      Token st;
      memset(&st, 0, sizeof st);
      st.p = w;
      st.line = sub.line;
      st.col = sub.col;
      word = lex_string(&sub, &st);
    } else {
      while (p < end && *p != ' ' && *p != ']') p++;
      word = arena_strndup(m->arena, w, (size_t)(p - w));
    }
    int wl = (int)(p - w);
    if (!quoted && strcmp(word, "fwd") == 0 && stage == 0) {
      in->flags &= (uint8_t)~IF_BACKWARD;
      stage = 1;
    } else if (!quoted && strcmp(word, "recomputed") == 0 && stage <= 1) {
      in->flags |= IF_RECOMPUTED;
      stage = 2;
    } else if (!quoted && strcmp(word, "from") == 0 && stage <= 3) {
      while (p < end && *p == ' ') p++;
      const char *v = p;
      if (p >= end || *p != '%') error_at(ps, AT(v, 1), "expected a value after 'from'");
      p++;
      int64_t k = 0;
      while (p < end && isdigit((unsigned char)*p)) {
        if (k < INT32_MAX) k = k * 10 + (*p - '0');
        p++;
      }
      if (p == v + 1) error_at(ps, AT(v, 1), "expected a value number after '%%'");
      if (k > ps->from_max) {   /* checked against the function's length at its '}' */
        ps->from_max = (int32_t)k;
        ps->from_loc = AT(v, (int)(p - v));
      }
      in->from = (int32_t)k;
      stage = 4;
    } else if (stage <= 2) {
      bool ok = quoted || wl > 0;
      for (int i = 0; !quoted && i < wl; i++)
        ok = ok && (i == 0 ? is_word_start((unsigned char)w[0]) : is_word_char((unsigned char)w[i]));
      if (!ok) error_at(ps, AT(w, wl), "a rule name is a word or a quoted string, found '%.*s'", wl, w);
      in->rule = word;
      stage = 3;
    } else {
      error_at(ps, AT(w, wl), "unexpected '%.*s' in the rule; the form is [fwd recomputed RULE from %%N]", wl, w);
    }
  }
  while (p < end && *p == ' ') p++;
  if (p < end) error_at(ps, AT(p, (int)(end - p)), "unexpected text after the rule");
#undef AT
}

/* ------------------------------------------------------------------ instructions */

/* inst := ['%' N '='] op [string] [value (',' value)*] [init] attr* [':' type]
 * attr := word '=' (number | 'all' | string) */
static void parse_inst(Parser *ps, Func *f, int *ninputs) {
  int32_t index = f->ninsts;
  Token first = ps->tok;
  bool def = false;
  if (first.kind == T_VALUE) {
    if (first.ival != index)
      error_at(ps, tok_loc(ps, &first),
               "this is instruction %d, so it defines %%%d (values are numbered by position; a sink takes a number too)",
               (int)index, (int)index);
    next(ps);
    expect_punct(ps, '=', "after the value");
    def = true;
  }
  Token optok = ps->tok;
  if (optok.kind != T_WORD) error_at(ps, tok_loc(ps, &optok), "expected an op, found %s", describe(ps, &optok));
  int op = ir_op_lookup(optok.p, (size_t)optok.len);
  if (op < 0) error_at(ps, tok_loc(ps, &optok), "unknown op '%.*s'", optok.len, optok.p);
  const OpInfo *info = &ir_ops[op];
  bool sink = (info->flags & OPF_SINK) != 0;
  if (def && sink) error_at(ps, tok_loc(ps, &optok), "%s is a sink and defines no value: write it without '%%N ='", info->name);
  if (!def && !sink) error_at(ps, tok_loc(ps, &optok), "%s defines a value: write '%%%d = %s'", info->name, (int)index, info->name);
  next(ps);

  Inst in = ir_inst((Op)op, SRCLOC_NONE);
  if (op == OP_INPUT || op == OP_PARAM || op == OP_BUFFER || op == OP_OUTPUT) {
    if (ps->tok.kind != T_STRING)
      error_at(ps, tok_loc(ps, &ps->tok), "expected the name of the %s as a string, found %s", info->name,
               describe(ps, &ps->tok));
    in.name = ps->tok.str;
    next(ps);
  }
  for (int k = 0; k < info->nargs; k++) {
    if (k) expect_punct(ps, ',', "between operands");
    Token *t = &ps->tok;
    if (t->kind != T_VALUE)
      error_at(ps, tok_loc(ps, t), "%s takes %d operand%s; expected a value, found %s", info->name, info->nargs,
               info->nargs == 1 ? "" : "s", describe(ps, t));
    if (t->ival >= index) error_at(ps, tok_loc(ps, t), "%%%lld is not defined before this instruction", (long long)t->ival);
    if (ir_ops[f->insts[t->ival].op].flags & OPF_SINK)
      error_at(ps, tok_loc(ps, t), "%%%lld is a %s sink and has no value", (long long)t->ival,
               ir_ops[f->insts[t->ival].op].name);
    in.args[in.nargs++] = (int32_t)t->ival;
    next(ps);
  }
  if (is_punct(&ps->tok, ','))
    error_at(ps, tok_loc(ps, &ps->tok), "%s takes %d operand%s", info->name, info->nargs, info->nargs == 1 ? "" : "s");
  if (op == OP_PARAM || op == OP_BUFFER) {   /* init := word ['(' number [',' number] ')'] */
    Token *t = &ps->tok;
    char name[32];
    int id = -1;
    if (t->kind == T_WORD && t->len < (int)sizeof name) {
      memcpy(name, t->p, (size_t)t->len);
      name[t->len] = 0;
      id = ir_init_lookup(name);
    }
    if (id < 0) error_at(ps, tok_loc(ps, t), "expected an initializer (e.g. he_normal, zeros), found %s", describe(ps, t));
    in.iattr[0] = id;
    next(ps);
    if (is_punct(&ps->tok, '(')) {
      next(ps);
      in.fattr[0] = parse_number(ps, "the initializer");
      if (is_punct(&ps->tok, ',')) {
        next(ps);
        in.fattr[1] = parse_number(ps, "the initializer");
      }
      expect_punct(ps, ')', "after the initializer's arguments");
    }
  }

  /* Attributes, each at most once; which ones an op takes is in `allowed`. */
  const char *allowed[4] = {NULL, NULL, NULL, NULL};
  switch ((Op)op) {
  case OP_INPUT: allowed[0] = "index"; break;
  case OP_CONST: allowed[0] = "value"; break;
  case OP_SIZE: case OP_SOFTMAX: case OP_LOG_SOFTMAX: allowed[0] = "axis"; break;
  case OP_SUM: case OP_MEAN: case OP_MAX: allowed[0] = "axis"; allowed[1] = "keep"; break;
  case OP_POW: allowed[0] = "exponent"; break;
  case OP_MAX_POOL2D: case OP_AVG_POOL2D: case OP_MAX_POOL2D_BWD: case OP_AVG_POOL2D_BWD:
    allowed[0] = "kernel"; allowed[1] = "stride"; allowed[2] = "padding"; break;
  case OP_DROPOUT_MASK: allowed[0] = "p"; allowed[1] = "stream"; break;
  case OP_TRANSPOSE: allowed[0] = "perm"; break;
  case OP_MATMUL: case OP_MATMUL_NT: case OP_MATMUL_TN: allowed[0] = "fold"; break;
  case OP_ATTENTION: case OP_ATTENTION_BWD: allowed[0] = "causal"; allowed[1] = "scale"; break;
  case OP_EXTRA: allowed[0] = "result"; break;
  case OP_LAYERNORM: case OP_LAYERNORM_BWD: case OP_LAYERNORM_BWD_GAMMA: allowed[0] = "dims"; allowed[1] = "eps"; break;
  case OP_CONV2D: case OP_CONV2D_BWD_DATA: case OP_CONV2D_BWD_WEIGHT:
    allowed[0] = "stride"; allowed[1] = "padding"; allowed[2] = "dilation"; break;
  default: break;
  }
  bool seen[5] = {false, false, false, false, false};
  bool have_index = false;
  while (ps->tok.kind == T_WORD) {
    Token key = ps->tok;
    int slot = -1;
    for (int k = 0; k < 4 && allowed[k]; k++)
      if (is_word(&key, allowed[k])) slot = k;
    if (is_word(&key, "name")) slot = 4;
    if (slot < 0) error_at(ps, tok_loc(ps, &key), "%s has no attribute '%.*s'", info->name, key.len, key.p);
    if (seen[slot]) error_at(ps, tok_loc(ps, &key), "attribute '%.*s' given twice", key.len, key.p);
    seen[slot] = true;
    next(ps);
    expect_punct(ps, '=', "after the attribute name");
    if (slot == 4) {
      if (ps->tok.kind != T_STRING) error_at(ps, tok_loc(ps, &ps->tok), "expected a string for name, found %s", describe(ps, &ps->tok));
      in.name = ps->tok.str;
      next(ps);
    } else if (is_word(&key, "axis") && is_word(&ps->tok, "all")) {
      in.iattr[0] = IR_AXIS_ALL;
      next(ps);
    } else if (is_word(&key, "axis") || is_word(&key, "index") || is_word(&key, "stream")) {
      in.iattr[0] = parse_int(ps, is_word(&key, "axis") ? "axis" : is_word(&key, "index") ? "index" : "stream");
      have_index = have_index || is_word(&key, "index");
    } else if (is_word(&key, "kernel") || is_word(&key, "stride") || is_word(&key, "padding") ||
               is_word(&key, "dilation")) {
      in.iattr[slot] = parse_int(ps, allowed[slot]);   /* conv2d's and pooling's slots are their iattr indices */
    } else if (is_word(&key, "perm") || is_word(&key, "fold") || is_word(&key, "causal") || is_word(&key, "result")) {
      in.iattr[0] = parse_int(ps, allowed[slot]);
    } else if (is_word(&key, "dims")) {
      in.iattr[0] = parse_int(ps, "dims");
    } else if (is_word(&key, "keep")) {
      in.iattr[1] = parse_int(ps, "keep");
      if (in.iattr[1] != 0 && in.iattr[1] != 1) error_at(ps, tok_loc(ps, &key), "keep is 0 or 1");
    } else {   /* value, exponent, p */
      in.fattr[0] = parse_number(ps, op == OP_CONST ? "value" : op == OP_POW ? "exponent" : is_word(&key, "eps") ? "eps" : is_word(&key, "scale") ? "scale" : "p");
    }
  }
  for (int k = 0; k < 4 && allowed[k]; k++)
    if (!seen[k] && strcmp(allowed[k], "keep") != 0 && strcmp(allowed[k], "index") != 0 &&
        strcmp(allowed[k], "perm") != 0 && strcmp(allowed[k], "fold") != 0)
      error_at(ps, tok_loc(ps, &optok), "%s needs the attribute '%s'", info->name, allowed[k]);
  if (op == OP_INPUT && !have_index) in.iattr[0] = *ninputs;
  if (op == OP_INPUT) (*ninputs)++;

  Token typetok = ps->tok;
  TypeId written = TYPE_VOID;
  if (!sink) {
    if (!is_punct(&ps->tok, ':'))
      error_at(ps, tok_loc(ps, &ps->tok), "expected ':' and the type of %%%d, found %s", (int)index, describe(ps, &ps->tok));
    next(ps);
    typetok = ps->tok;
    written = parse_type(ps);
  }
  if (ps->tok.kind == T_COMMENT) {
    parse_comment(ps, &ps->tok, &in);
    next(ps);
  }
  if (ps->tok.kind != T_NEWLINE && ps->tok.kind != T_EOF)
    error_at(ps, tok_loc(ps, &ps->tok), "expected the end of the line, found %s", describe(ps, &ps->tok));

  /* Types: leaves, broadcast, sum_to, reshape and avg_pool2d_bwd take the written one; others must agree. */
  char err[256], s1[96], s2[96];
  in.type = written;
  TypeId t = ir_infer_type(f, &in, err, sizeof err);
  if (err[0]) error_at(ps, tok_loc(ps, &optok), "%s", err);
  if (!sink && t != written)
    error_at(ps, tok_loc(ps, &typetok), "the type %s differs from %s, the type %s gives",
             ir_type_str(ir_type_get(ps->mod, written), s1, sizeof s1),
             ir_type_str(ir_type_get(ps->mod, t), s2, sizeof s2), info->name);
  ir_emit(f, &in);
}

/* func := 'func' global '{' NL (inst? comment? NL)* '}' */
static void parse_func(Parser *ps) {
  Token kw = ps->tok;
  next(ps);
  if (ps->tok.kind != T_GLOBAL)
    error_at(ps, tok_loc(ps, &ps->tok), "expected a function name like @f after 'func', found %s", describe(ps, &ps->tok));
  Token name = ps->tok;
  if (ir_func_find(ps->mod, name.str)) error_at(ps, tok_loc(ps, &name), "function @%s is defined twice", name.str);
  Func *f = ir_func_new(ps->mod, name.str);
  f->cse = false;
  next(ps);
  expect_punct(ps, '{', "after the function name");
  int ninputs = 0;
  ps->from_max = -1;
  for (;;) {
    Token *t = &ps->tok;
    if (t->kind == T_EOF) error_at(ps, tok_loc(ps, &kw), "missing '}' at the end of @%s", f->name);
    if (t->kind == T_NEWLINE || t->kind == T_COMMENT) { next(ps); continue; }
    if (is_punct(t, '}')) {
      if (ps->from_max >= f->ninsts)
        error_at(ps, ps->from_loc, "'from %%%d': @%s has no instruction %d", (int)ps->from_max, f->name,
                 (int)ps->from_max);
      next(ps);
      break;
    }
    parse_inst(ps, f, &ninputs);
  }
  if (ps->tok.kind == T_COMMENT) next(ps);
  if (ps->tok.kind != T_NEWLINE && ps->tok.kind != T_EOF)
    error_at(ps, tok_loc(ps, &ps->tok), "expected the end of the line after '}', found %s", describe(ps, &ps->tok));
}

/* module := (func | comment | NL)* EOF */
Module *ir_parse(const char *name, const char *text, size_t len) {
  Parser ps;
  memset(&ps, 0, sizeof ps);
  ps.file = diag_add_file(name, text, len);
  ps.text = ps.cur = diag_file_text(ps.file, NULL);   /* NUL-terminated copy */
  ps.end = ps.text + len;
  ps.line = ps.col = 1;
  ps.mod = ir_module_new();
  if (setjmp(ps.fail)) {
    ir_module_free(ps.mod);
    return NULL;
  }
  next(&ps);
  for (;;) {
    Token *t = &ps.tok;
    if (t->kind == T_EOF) break;
    if (t->kind == T_NEWLINE || t->kind == T_COMMENT) { next(&ps); continue; }
    if (!is_word(t, "func")) error_at(&ps, tok_loc(&ps, t), "expected 'func', found %s", describe(&ps, t));
    parse_func(&ps);
  }
  return ps.mod;
}
