/* ir/print.c — the textual form of the IR: one instruction per line, QBE's sigils.
 *
 *   func @mlp {
 *     %0 = input "x" : f32[B,784]                # mlp.bp:2:17
 *     %2 = param "h.W" he_normal : f32[784,800]  # mlp.bp:3:18
 *     %4 = matmul %0, %2 : f32[B,800]            # mlp.bp:3:18
 *     %9 = sum %8 axis=1 keep=1 : f32[B,1]       # mlp.bp:5:3
 *     output "probs" %9                          # mlp.bp:6:3
 *     %31 = matmul_tn %0, %29 : f32[784,800]     # mlp.bp:3:18  [matmul.db from %4]
 *   }
 *
 * The text is the contract between stages and the form every golden test is written
 * in, so it is exact: a value's number is its index in the instruction array (a sink
 * takes an index but prints no number), every definition carries its type, doubles
 * print in the shortest form that reads back to the same bits, and the trailing
 * comment carries the DSL location (with the model-level call of a user layer) and,
 * for derived instructions, the rule and the forward instruction. ir/parse.c reads
 * back exactly this; docs/ir.md is the grammar. */
#include "ir/ir.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ a growable string */

typedef struct {
  char *s;
  size_t len, cap;
} StrBuf;

static void sb_reserve(StrBuf *b, size_t extra) {
  if (b->len + extra + 1 <= b->cap) return;
  size_t cap = b->cap ? b->cap : 256;
  while (cap < b->len + extra + 1) cap *= 2;
  b->s = bp_xrealloc(b->s, cap);
  b->cap = cap;
}

static void sb_printf(StrBuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(StrBuf *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  sb_reserve(b, (size_t)n);
  va_start(ap, fmt);
  vsnprintf(b->s + b->len, (size_t)n + 1, fmt, ap);
  va_end(ap);
  b->len += (size_t)n;
}

static void sb_putc(StrBuf *b, char c) {
  sb_reserve(b, 1);
  b->s[b->len++] = c;
  b->s[b->len] = 0;
}

/* ------------------------------------------------------------ lexical pieces */

/* The shortest %.Ng that strtod reads back to the same double; inf and nan by name. */
static void put_double(StrBuf *b, double v) {
  if (isnan(v)) { sb_printf(b, "nan"); return; }
  if (isinf(v)) { sb_printf(b, v > 0 ? "inf" : "-inf"); return; }
  char tmp[40];
  for (int prec = 1; prec <= 17; prec++) {
    snprintf(tmp, sizeof tmp, "%.*g", prec, v);
    if (strtod(tmp, NULL) == v) break;
  }
  sb_printf(b, "%s", tmp);
}

/* A quoted string: `"` and `\` escaped, bytes outside printable ASCII as \xHH. */
static void put_string(StrBuf *b, const char *s) {
  sb_putc(b, '"');
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if (*p == '"' || *p == '\\') sb_printf(b, "\\%c", *p);
    else if (*p < 32 || *p >= 127) sb_printf(b, "\\x%02x", *p);
    else sb_putc(b, (char)*p);
  }
  sb_putc(b, '"');
}

/* Bare words: [A-Za-z_][A-Za-z0-9_.]* */
static bool is_word(const char *s) {
  if (!s || !*s || !((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || *s == '_')) return false;
  for (const char *p = s; *p; p++)
    if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
          *p == '_' || *p == '.'))
      return false;
  return true;
}

static void put_type(StrBuf *b, Func *f, TypeId t) {
  char buf[128];
  if (t < 0 || t >= f->mod->ntypes) { sb_printf(b, "?"); return; }
  sb_printf(b, "%s", ir_type_str(ir_type_get(f->mod, t), buf, sizeof buf));
}

static void put_axis(StrBuf *b, int64_t axis) {
  if (axis == IR_AXIS_ALL) sb_printf(b, " axis=all");
  else sb_printf(b, " axis=%lld", (long long)axis);
}

/* Initializers print their arguments: constant(v), normal(std), uniform(a, b); the
 * others take none, but nonzero arguments still print so that nothing is lost. */
static int init_nargs(const Inst *in) {
  int n = in->iattr[0] == INIT_CONSTANT || in->iattr[0] == INIT_NORMAL ? 1
          : in->iattr[0] == INIT_UNIFORM                              ? 2
                                                                      : 0;
  if (in->fattr[1] != 0 || signbit(in->fattr[1])) n = 2;
  else if (n == 0 && (in->fattr[0] != 0 || signbit(in->fattr[0]))) n = 1;
  return n;
}

/* The instruction without its comment: `%4 = matmul %0, %2 : f32[B,800]`. */
static void put_inst(StrBuf *b, Func *f, int32_t i, int input_ordinal) {
  const Inst *in = &f->insts[i];
  bool named = false;
  if (in->op >= OP__COUNT) {
    sb_printf(b, "<bad op %u>", (unsigned)in->op);
    return;
  }
  const OpInfo *info = &ir_ops[in->op];
  if (!(info->flags & OPF_SINK)) sb_printf(b, "%%%d = ", (int)i);
  sb_printf(b, "%s", info->name);
  if (in->op == OP_INPUT || in->op == OP_PARAM || in->op == OP_BUFFER || in->op == OP_OUTPUT) {
    sb_putc(b, ' ');
    put_string(b, in->name ? in->name : "");
    named = true;
  }
  for (int k = 0; k < in->nargs && k < IR_MAX_ARGS; k++) sb_printf(b, "%s%%%d", k ? ", " : " ", (int)in->args[k]);
  switch ((Op)in->op) {
  case OP_INPUT:
    if (in->iattr[0] != input_ordinal) sb_printf(b, " index=%lld", (long long)in->iattr[0]);
    break;
  case OP_PARAM: case OP_BUFFER: {
    if (in->iattr[0] >= 0 && in->iattr[0] < INIT__COUNT) sb_printf(b, " %s", ir_init_names[in->iattr[0]]);
    else sb_printf(b, " init%lld", (long long)in->iattr[0]);
    int n = init_nargs(in);
    for (int k = 0; k < n; k++) {
      sb_printf(b, k ? ", " : "(");
      put_double(b, in->fattr[k]);
    }
    if (n) sb_putc(b, ')');
    break;
  }
  case OP_CONST:
    sb_printf(b, " value=");
    put_double(b, in->fattr[0]);
    break;
  case OP_SIZE:
  case OP_SOFTMAX:
  case OP_LOG_SOFTMAX:
    put_axis(b, in->iattr[0]);
    break;
  case OP_SUM:
  case OP_MEAN:
  case OP_MAX:
    put_axis(b, in->iattr[0]);
    if (in->iattr[1]) sb_printf(b, " keep=%lld", (long long)in->iattr[1]);
    break;
  case OP_MAX_POOL2D: case OP_AVG_POOL2D: case OP_MAX_POOL2D_BWD: case OP_AVG_POOL2D_BWD: {
    int64_t k, st, p;
    ir_pool_geom(in, &k, &st, &p);
    sb_printf(b, " kernel=%lld stride=%lld padding=%lld", (long long)k, (long long)st, (long long)p);
    break;
  }
  case OP_POW:
    sb_printf(b, " exponent=");
    put_double(b, in->fattr[0]);
    break;
  case OP_CONV2D:
  case OP_CONV2D_BWD_DATA:
  case OP_CONV2D_BWD_WEIGHT:
    sb_printf(b, " stride=%lld padding=%lld dilation=%lld", (long long)in->iattr[0], (long long)in->iattr[1],
              (long long)in->iattr[2]);
    break;
  case OP_LAYERNORM: case OP_LAYERNORM_BWD: case OP_LAYERNORM_BWD_GAMMA:
    sb_printf(b, " dims=%lld eps=", (long long)in->iattr[0]);
    put_double(b, in->fattr[0]);
    break;
  case OP_TRANSPOSE:
    if (in->iattr[0]) sb_printf(b, " perm=%0*lld", (int)ir_vtype(f, in->args[0])->rank, (long long)in->iattr[0]);
    break;
  case OP_MATMUL: case OP_MATMUL_NT: case OP_MATMUL_TN:
    if (in->iattr[0]) sb_printf(b, " fold=%lld", (long long)in->iattr[0]);
    break;
  case OP_ATTENTION: case OP_ATTENTION_BWD:
    sb_printf(b, " causal=%lld scale=", (long long)in->iattr[0]);
    put_double(b, in->fattr[0]);
    break;
  case OP_EXTRA:
    sb_printf(b, " result=%lld", (long long)in->iattr[0]);
    break;
  case OP_DROPOUT_MASK:
    sb_printf(b, " p=");
    put_double(b, in->fattr[0]);
    sb_printf(b, " stream=%lld", (long long)in->iattr[0]);
    break;
  default:
    break;
  }
  if (in->name && !named) {
    sb_printf(b, " name=");
    put_string(b, in->name);
  }
  if (!(info->flags & OPF_SINK)) {
    sb_printf(b, " : ");
    put_type(b, f, in->type);
  }
}

/* The trailing comment: `# file:line:col (called at file:line:col)  [rule from %K]`, or
 * "" if it says nothing. The call site prints only when it differs from the location. */
static void put_comment(StrBuf *b, const Inst *in) {
  bool loc = in->loc.file >= 0;
  bool call = ir_has_call(in);
  bool bracket = in->flags || in->rule || in->from >= 0;
  if (!loc && !call && !bracket) return;
  sb_putc(b, '#');
  if (loc) sb_printf(b, " %s:%d:%d", diag_file_name(in->loc.file), (int)in->loc.line, (int)in->loc.col);
  if (call) sb_printf(b, " (called at %s:%d:%d)", diag_file_name(in->call.file), (int)in->call.line, (int)in->call.col);
  if (!bracket) return;
  sb_printf(b, loc || call ? "  [" : " [");
  const char *sep = "";
  if (!(in->flags & IF_BACKWARD)) { sb_printf(b, "fwd"); sep = " "; }
  if (in->flags & IF_RECOMPUTED) { sb_printf(b, "%srecomputed", sep); sep = " "; }
  if (in->rule) {
    sb_printf(b, "%s", sep);
    bool reserved = !strcmp(in->rule, "fwd") || !strcmp(in->rule, "recomputed") || !strcmp(in->rule, "from");
    if (is_word(in->rule) && !reserved) sb_printf(b, "%s", in->rule);
    else put_string(b, in->rule);
    sep = " ";
  }
  if (in->from >= 0) sb_printf(b, "%sfrom %%%d", sep, (int)in->from);
  sb_putc(b, ']');
}

/* Comments start in one column: two spaces past the longest instruction, but lines
 * longer than COMMENT_COLUMN_MAX do not push every other comment to the right. */
#define COMMENT_COLUMN_MAX 72

static void put_func(StrBuf *b, Func *f) {
  sb_printf(b, "func @");
  if (is_word(f->name)) sb_printf(b, "%s", f->name);
  else put_string(b, f->name ? f->name : "");
  sb_printf(b, " {\n");

  /* Pass 1: each instruction's text and comment, to find the comment column. */
  StrBuf *text = bp_xmalloc((size_t)(f->ninsts ? f->ninsts : 1) * sizeof *text);
  StrBuf *comm = bp_xmalloc((size_t)(f->ninsts ? f->ninsts : 1) * sizeof *comm);
  size_t column = 0;
  int ninputs = 0;
  for (int32_t i = 0; i < f->ninsts; i++) {
    text[i] = (StrBuf){0};
    comm[i] = (StrBuf){0};
    sb_reserve(&text[i], 0);
    sb_reserve(&comm[i], 0);
    text[i].s[0] = comm[i].s[0] = 0;
    put_inst(&text[i], f, i, ninputs);
    if (f->insts[i].op == OP_INPUT) ninputs++;
    put_comment(&comm[i], &f->insts[i]);
    if (comm[i].len && text[i].len <= COMMENT_COLUMN_MAX && text[i].len > column) column = text[i].len;
  }
  /* Pass 2: emit. */
  for (int32_t i = 0; i < f->ninsts; i++) {
    sb_printf(b, "  %s", text[i].s);
    if (comm[i].len) {
      size_t pad = text[i].len < column ? column - text[i].len + 2 : 2;
      sb_printf(b, "%*s%s", (int)pad, "", comm[i].s);
    }
    sb_putc(b, '\n');
    bp_free(text[i].s);
    bp_free(comm[i].s);
  }
  bp_free(text);
  bp_free(comm);
  sb_printf(b, "}\n");
}

char *ir_print_to_string(Func *f) {
  StrBuf b = {0};
  sb_reserve(&b, 0);
  b.s[0] = 0;
  put_func(&b, f);
  return b.s;
}

void ir_print_func(FILE *out, Func *f) {
  char *s = ir_print_to_string(f);
  fputs(s, out);
  bp_free(s);
}

void ir_print_module(FILE *out, Module *m) {
  for (int i = 0; i < m->nfuncs; i++) {
    if (i) fputc('\n', out);
    ir_print_func(out, m->funcs[i]);
  }
}
