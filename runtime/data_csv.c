/* runtime/data_csv.c — CSV files: one row per line, numbers separated by commas.
 *
 * Rows end in LF or CRLF; blank lines are skipped; fields may have spaces around
 * them; there is no quoting (the files are numeric). With header=1 the first line is
 * skipped. One column is the class label (a non-negative integer; default the last
 * column), or with target=K the last K columns are float targets, or with label=none
 * every column is a feature (for `bpcc predict`). The first data row
 * fixes the column count: every problem names PATH:LINE and the 1-based column. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/data_internal.h"

typedef struct {
  float *vals;        /* rows x cols, row-major */
  int64_t rows, cap;  /* rows parsed; capacity in rows */
  int64_t cols;
  int64_t *lines;     /* the line number of each row */
} Table;

/* Parse one field [p, end) as a finite number into *out. */
static int parse_field(const char *path, int64_t line, int64_t col, const char *p, const char *end, double *out) {
  while (p < end && (*p == ' ' || *p == '\t')) p++;
  while (end > p && (end[-1] == ' ' || end[-1] == '\t')) end--;
  if (p == end) return bprt_set_error("%s:%" PRId64 ": column %" PRId64 " is empty", path, line, col);
  char buf[128];
  size_t n = (size_t)(end - p);
  if (n >= sizeof buf)
    return bprt_set_error("%s:%" PRId64 ": column %" PRId64 ": '%.20s...' is not a number", path, line, col, p);
  memcpy(buf, p, n);
  buf[n] = 0;
  char *stop;
  errno = 0;
  double v = strtod(buf, &stop);
  if (*stop || stop == buf)
    return bprt_set_error("%s:%" PRId64 ": column %" PRId64 ": '%s' is not a number", path, line, col, buf);
  if (isnan(v)) return bprt_set_error("%s:%" PRId64 ": column %" PRId64 ": NaN in the data", path, line, col);
  if (isinf(v) || !isfinite((float)v))
    return bprt_set_error("%s:%" PRId64 ": column %" PRId64 ": '%s' is infinite or too large for float32", path,
                          line, col, buf);
  *out = v;
  return 0;
}

static int table_grow(Table *t, const char *path) {
  int64_t cap = t->cap ? t->cap * 2 : 256;
  float *v = bprt_realloc(t->vals, sizeof(float) * (size_t)cap * (size_t)t->cols);
  if (!v) return bprt_prefix_error("%s", path);
  t->vals = v;
  int64_t *l = bprt_realloc(t->lines, sizeof(int64_t) * (size_t)cap);
  if (!l) return bprt_prefix_error("%s", path);
  t->lines = l;
  t->cap = cap;
  return 0;
}

/* Every data row of text into t (all columns as numbers). */
static int parse_table(const char *path, const char *text, size_t len, bool header, Table *t) {
  const char *p = text, *end = text + len;
  int64_t line = 0, first_line = 0;
  bool skipped_header = !header;
  while (p < end) {
    const char *eol = memchr(p, '\n', (size_t)(end - p));
    if (!eol) eol = end;
    const char *stop = eol;
    if (stop > p && stop[-1] == '\r') stop--;
    line++;
    const char *q = p;
    p = eol < end ? eol + 1 : end;
    const char *s = q;
    while (s < stop && (*s == ' ' || *s == '\t')) s++;
    if (s == stop) continue;                       /* blank line */
    if (!skipped_header) {
      skipped_header = true;
      continue;
    }
    int64_t cols = 1;
    for (const char *c = q; c < stop; c++) cols += *c == ',';
    if (t->cols == 0) {
      t->cols = cols;
      first_line = line;
    } else if (cols != t->cols) {
      return bprt_set_error("%s:%" PRId64 ": row has %" PRId64 " columns, expected %" PRId64 " (as on line %" PRId64
                            ")", path, line, cols, t->cols, first_line);
    }
    if (t->rows == t->cap && table_grow(t, path) != 0) return -1;
    float *row = t->vals + t->rows * t->cols;
    const char *f = q;
    for (int64_t c = 0; c < cols; c++) {
      const char *fe = memchr(f, ',', (size_t)(stop - f));
      if (!fe) fe = stop;
      double v = 0;
      if (parse_field(path, line, c + 1, f, fe, &v) != 0) return -1;
      row[c] = (float)v;
      f = fe + 1;
    }
    t->lines[t->rows++] = line;
  }
  if (t->rows == 0) return bprt_set_error("%s: no data rows", path);
  return 0;
}

BprtDataset *bprt_load_csv(const char *path, int label_col, bool header, int ntargets) {
  size_t len;
  char *text = (char *)data_read_file(path, &len);
  if (!text) return NULL;
  Table t = {0};
  BprtDataset *d = NULL;
  if (memchr(text, 0, len)) {
    bprt_set_error("%s: byte %zu is NUL: not a text file", path, (size_t)((char *)memchr(text, 0, len) - text));
    goto done;
  }
  if (parse_table(path, text, len, header, &t) != 0) goto done;
  char source[4200];
  snprintf(source, sizeof source, "csv:%s", path);
  if (ntargets == BPRT_NO_TARGETS) {
    d = bprt_dataset_new(t.rows, t.cols, BPRT_NO_TARGETS, source);
    if (d) memcpy(d->x, t.vals, sizeof(float) * (size_t)(t.rows * t.cols));
    goto done;
  }
  if (ntargets > 0) {
    if (ntargets >= t.cols) {
      bprt_set_error("%s: target=%d leaves no feature columns (the rows have %" PRId64 ")", path, ntargets, t.cols);
      goto done;
    }
    d = bprt_dataset_new(t.rows, t.cols - ntargets, ntargets, source);
    if (!d) goto done;
    for (int64_t r = 0; r < t.rows; r++) {
      memcpy(d->x + r * d->nfeat, t.vals + r * t.cols, sizeof(float) * (size_t)d->nfeat);
      memcpy(d->targets + r * ntargets, t.vals + r * t.cols + d->nfeat, sizeof(float) * (size_t)ntargets);
    }
    goto done;
  }
  if (t.cols < 2) {
    bprt_set_error("%s: rows have 1 column; need at least one feature and a label", path);
    goto done;
  }
  int64_t lc = label_col < 0 ? t.cols + label_col : label_col;
  if (lc < 0 || lc >= t.cols) {
    bprt_set_error("%s: label=%d is out of range for rows of %" PRId64 " columns", path, label_col, t.cols);
    goto done;
  }
  d = bprt_dataset_new(t.rows, t.cols - 1, 0, source);
  if (!d) goto done;
  int32_t top = -1;
  for (int64_t r = 0; r < t.rows; r++) {
    const float *row = t.vals + r * t.cols;
    float *x = d->x + r * d->nfeat;
    for (int64_t c = 0; c < t.cols; c++)
      if (c != lc) *x++ = row[c];
    float v = row[lc];
    if (v < 0 || v != floorf(v) || v >= 1e6f) {
      bprt_set_error("%s:%" PRId64 ": column %" PRId64 ": label %g is not a class index (an integer 0..999999)",
                     path, t.lines[r], lc + 1, (double)v);
      bprt_dataset_free(d);
      d = NULL;
      goto done;
    }
    d->labels[r] = (int32_t)v;
    if (d->labels[r] > top) top = d->labels[r];
  }
  d->nclasses = top + 1;
done:
  if (d) {   /* each row's line, for errors found later (bprt_data_check_y) */
    d->file = bprt_strdup(path);
    d->lines = t.lines;
    t.lines = NULL;
    if (!d->file) {
      bprt_dataset_free(d);
      d = NULL;
    }
  }
  bprt_free(t.vals);
  bprt_free(t.lines);
  bprt_free(text);
  return d;
}
