/* ir/diag.c — the one diagnostics engine every stage uses.
 *
 *   mlp.bp:7:9: error: matmul shapes do not agree: f32[B,784] @ f32[128,784]
 *       h = x @ W1
 *           ^~~~~~
 *   mlp.bp:3:5: note: 'W1' declared here
 *
 * Source texts are registered once (diag_add_file) so that a SrcLoc is four small
 * integers; the printer finds the line again when it reports. Output goes to stderr
 * unless a test redirects it (diag_set_output) to capture and compare. */
#include "ir/ir.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  char *name;
  char *text;     /* owned copy, NUL-terminated */
  size_t len;
} SourceFile;

static SourceFile *files;
static int nfiles, capfiles;
static FILE *diag_out;
static int nerrors, nwarnings;
static int error_limit = 50;

int diag_add_file(const char *name, const char *text, size_t len) {
  if (nfiles == capfiles) {
    capfiles = capfiles ? capfiles * 2 : 8;
    files = bp_xrealloc(files, (size_t)capfiles * sizeof *files);
  }
  SourceFile *f = &files[nfiles];
  size_t nl = strlen(name);
  f->name = bp_xmalloc(nl + 1);
  memcpy(f->name, name, nl + 1);
  f->text = bp_xmalloc(len + 1);
  if (len) memcpy(f->text, text, len);
  f->text[len] = 0;
  f->len = len;
  return nfiles++;
}

const char *diag_file_name(int file) {
  return file >= 0 && file < nfiles ? files[file].name : "<unknown>";
}

const char *diag_file_text(int file, size_t *len) {
  if (file < 0 || file >= nfiles) { if (len) *len = 0; return NULL; }
  if (len) *len = files[file].len;
  return files[file].text;
}

void diag_set_output(FILE *out) { diag_out = out; }
int diag_error_count(void) { return nerrors; }
int diag_warning_count(void) { return nwarnings; }
void diag_set_error_limit(int n) { error_limit = n; }

void diag_reset(void) {
  for (int i = 0; i < nfiles; i++) {
    bp_free(files[i].name);
    bp_free(files[i].text);
  }
  bp_free(files);
  files = NULL;
  nfiles = capfiles = 0;
  nerrors = nwarnings = 0;
}

static FILE *out(void) { return diag_out ? diag_out : stderr; }

/* Print the source line of loc with a caret under loc.col and tildes to loc.endcol.
 * Long lines are shown as a window around the column; bytes that would confuse a
 * terminal (controls, NUL) print as spaces, tabs as single spaces so columns line up. */
static void show_line(SrcLoc loc) {
  if (loc.file < 0 || loc.file >= nfiles || loc.line <= 0) return;
  const SourceFile *f = &files[loc.file];
  const char *p = f->text, *end = f->text + f->len;
  for (int l = 1; l < loc.line && p < end; p++)
    if (*p == '\n') l++;
  if (p > end) return;
  const char *e = p;
  while (e < end && *e != '\n') e++;
  long linelen = e - p;
  long col = loc.col > 0 ? loc.col - 1 : 0;
  if (col > linelen) col = linelen;
  long endcol = loc.endcol > loc.col ? loc.endcol - 1 : col + 1;
  if (endcol > linelen + 1) endcol = linelen + 1;
  long from = 0, to = linelen;
  if (linelen > 160) {               /* window of 160 columns around the caret */
    from = col > 60 ? col - 60 : 0;
    to = from + 160 < linelen ? from + 160 : linelen;
    if (endcol > to + 1) endcol = to + 1;
  }
  FILE *o = out();
  fputs("    ", o);
  if (from > 0) fputs("...", o);
  for (long i = from; i < to; i++) {
    unsigned char c = (unsigned char)p[i];
    fputc(c < 32 || c == 127 ? ' ' : c, o);
  }
  if (to < linelen) fputs("...", o);
  fputs("\n    ", o);
  if (from > 0) fputs("   ", o);
  for (long i = from; i < col; i++) fputc(' ', o);
  fputc('^', o);
  for (long i = col + 1; i < endcol; i++) fputc('~', o);
  fputc('\n', o);
}

static void report(const char *kind, SrcLoc loc, const char *fmt, va_list ap) {
  FILE *o = out();
  if (loc.file >= 0 && loc.file < nfiles && loc.line > 0)
    fprintf(o, "%s:%d:%d: %s: ", files[loc.file].name, loc.line, loc.col, kind);
  else if (loc.file >= 0 && loc.file < nfiles)
    fprintf(o, "%s: %s: ", files[loc.file].name, kind);
  else
    fprintf(o, "bpcc: %s: ", kind);
  vfprintf(o, fmt, ap);
  fputc('\n', o);
  show_line(loc);
}

static int suppressed;   /* notes after a suppressed error are suppressed too */

void diag_error(SrcLoc loc, const char *fmt, ...) {
  nerrors++;
  suppressed = nerrors > error_limit;
  if (suppressed) {
    if (nerrors == error_limit + 1)
      fprintf(out(), "bpcc: fatal error: too many errors emitted, stopping now\n");
    return;
  }
  va_list ap;
  va_start(ap, fmt);
  report("error", loc, fmt, ap);
  va_end(ap);
}

void diag_warning(SrcLoc loc, const char *fmt, ...) {
  nwarnings++;
  va_list ap;
  va_start(ap, fmt);
  report("warning", loc, fmt, ap);
  va_end(ap);
}

void diag_note(SrcLoc loc, const char *fmt, ...) {
  if (suppressed) return;
  va_list ap;
  va_start(ap, fmt);
  report("note", loc, fmt, ap);
  va_end(ap);
}

/* ------------------------------------------------------------------ did you mean */

int diag_edit_distance(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b);
  if (la > 40 || lb > 40) return 99;
  int d[41][41];   /* d[i][j]: the distance of a's first i characters and b's first j */
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

bool diag_suggest(DiagSuggest *s, const char *name, const char *candidate) {
  int d = diag_edit_distance(name, candidate);
  int limit = strlen(name) <= 3 ? 1 : 2;
  if (d > limit || d >= s->distance) return false;
  s->best = candidate;
  s->distance = d;
  return true;
}

_Noreturn void ir_die_at(const char *cfile, int cline, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "bpcc: internal error (%s:%d): ", cfile, cline);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  abort();
}
