/* driver/cmd_plot.c — `bpcc plot LOG.csv -o CURVES.svg`: the loss and accuracy curves of
 * a `bpcc train --log` as a self-contained SVG.
 *
 * The log (runtime/train.c) has the header kind,epoch,step,lr,loss,accuracy,val_loss,
 * val_accuracy,seconds and a row per epoch (kind "epoch") and, with --log-steps, per
 * step (kind "step"). Columns are found by name (kind, epoch, step and loss are
 * required; accuracy, val_loss and val_accuracy are drawn when present), and rows of
 * other kinds are passed over, so that a log with more columns or other rows (--watch
 * statistics) still plots. An empty field is a missing value.
 *
 * What is drawn:
 *   1. x: the epoch, or the step where the log has step rows; then the training curves
 *      are the step rows (each batch's loss and accuracy) and the validation curves the
 *      epoch rows placed at their step.
 *   2. two panels side by side, loss and accuracy (in percent), each with axes, ticks at
 *      1-2-5 steps, labels and a legend; one <polyline> per series that has a value
 *      (training, validation), so a log without validation draws two lines, not four.
 *   3. a row whose x is not after the last point of its series (a run resumed from an
 *      earlier checkpoint appends epochs that are already there) replaces the points
 *      from its x on: the curve is the one the last run left.
 * The SVG has no scripts, styles or links to anything outside it. It is written to a
 * temporary file beside the output and renamed (outfile.c); -o - writes it to standard
 * output, a terminal included, since it is text. */
#include "driver/driver.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int plot_error(const char *fmt, const char *a) { return args_usage_error("plot", fmt, a); }

/* plot's options (parsed, listed in --help, suggested) */
static const DrvOption plot_options[] = {
    {0, "-o", OPT_VALUE, "FILE.svg", "where to write it (required); - for standard output"},
    {0, NULL, OPT_FLAG, NULL, NULL},
};

static void plot_usage(FILE *o) {
  fprintf(o,
          "usage: bpcc plot LOG.csv -o CURVES.svg\n"
          "Draw the training and validation loss and accuracy of a bpcc train --log CSV\n"
          "against the epoch (or the step, for a log written with --log-steps), as an SVG\n"
          "file with no scripts and no external references.\n"
          "\n");
  args_print_options(o, plot_options, 14, NULL);
}

/* ------------------------------------------------------------------ the series */

enum { S_LOSS, S_VAL_LOSS, S_ACC, S_VAL_ACC, S__COUNT };

static const struct {
  const char *column;     /* in the log; also the polyline's id */
  const char *label;      /* in the legend */
  const char *color;
  int panel;              /* 0 loss, 1 accuracy */
  double scale;           /* accuracy is drawn in percent */
} series_info[S__COUNT] = {
    {"loss", "training", "#1f77b4", 0, 1},
    {"val_loss", "validation", "#ff7f0e", 0, 1},
    {"accuracy", "training", "#1f77b4", 1, 100},
    {"val_accuracy", "validation", "#ff7f0e", 1, 100},
};

typedef struct {
  double *x, *y;
  int64_t n, cap;
} Series;

/* Append (x, y); points at x or after it go first (file comment, 3). */
static bool series_add(Series *s, double x, double y) {
  while (s->n > 0 && s->x[s->n - 1] >= x) s->n--;
  if (s->n == s->cap) {
    int64_t cap = s->cap ? 2 * s->cap : 64;
    double *nx = realloc(s->x, sizeof(double) * (size_t)cap);
    if (!nx) return false;
    s->x = nx;
    double *ny = realloc(s->y, sizeof(double) * (size_t)cap);
    if (!ny) return false;
    s->y = ny;
    s->cap = cap;
  }
  s->x[s->n] = x;
  s->y[s->n++] = y;
  return true;
}

/* ------------------------------------------------------------------ reading the log */

enum { C_KIND, C_EPOCH, C_STEP, C_LOSS, C_ACC, C_VAL_LOSS, C_VAL_ACC, C__COUNT };
static const char *const column_names[C__COUNT] = {"kind", "epoch", "step", "loss", "accuracy", "val_loss", "val_accuracy"};
static const int column_series[C__COUNT] = {-1, -1, -1, S_LOSS, S_ACC, S_VAL_LOSS, S_VAL_ACC};
#define LOG_HEADER "kind,epoch,step,lr,loss,accuracy,val_loss,val_accuracy,seconds"

/* A row of kind epoch or step: its numbers (NAN where the field is empty or absent). */
typedef struct {
  bool step_row;
  double v[C__COUNT];
} Row;

typedef struct {
  const char *path;
  Row *rows;
  int64_t n, cap;
  bool has_steps;
} Log;

/* Split line (NUL-terminated, no newline) at commas in place; up to max fields. */
static int split_fields(char *line, char **f, int max) {
  int n = 0;
  for (char *p = line;; p++) {
    if (n < max) f[n] = p;
    n++;
    p = strchr(p, ',');
    if (!p) break;
    *p = 0;
  }
  return n;
}

static char *trim(char *s) {
  while (*s == ' ' || *s == '\t') s++;
  size_t n = strlen(s);
  while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t')) s[--n] = 0;
  return s;
}

#define MAX_FIELDS 256

/* Read the log into lg; false after a located error message. */
static bool read_log(Log *lg) {
  struct stat st;
  if (stat(lg->path, &st) != 0) {
    fprintf(stderr, "bpcc: error: cannot open %s: %s\n", lg->path, strerror(errno));
    return false;
  }
  if (!S_ISREG(st.st_mode)) {   /* /dev/zero or a FIFO would never end */
    fprintf(stderr, "bpcc: error: %s: not a regular file (a CSV log of bpcc train --log)\n", lg->path);
    return false;
  }
  FILE *f = fopen(lg->path, "r");
  if (!f) {
    fprintf(stderr, "bpcc: error: cannot open %s: %s\n", lg->path, strerror(errno));
    return false;
  }
  int col[C__COUNT], nheader = 0;
  char *line = NULL, *fields[MAX_FIELDS];
  size_t cap = 0;
  ssize_t len;
  int64_t lineno = 0;
  bool ok = true;
  while (ok && (len = getline(&line, &cap, f)) >= 0) {
    lineno++;
    if ((size_t)len != strlen(line)) {
      fprintf(stderr, "bpcc: error: %s:%lld: a NUL byte: not a text file\n", lg->path, (long long)lineno);
      ok = false;
      break;
    }
    while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = 0;
    if (*trim(line) == 0) continue;   /* blank lines */
    int nf = split_fields(line, fields, MAX_FIELDS);
    if (nheader == 0) {   /* the header: columns by name */
      if (nf > MAX_FIELDS) {
        fprintf(stderr, "bpcc: error: %s:%lld: %d columns: not the log of bpcc train --log (expected " LOG_HEADER ")\n",
                lg->path, (long long)lineno, nf);
        ok = false;
        break;
      }
      for (int c = 0; c < C__COUNT; c++) {
        col[c] = -1;
        for (int k = 0; k < nf; k++)
          if (!strcmp(trim(fields[k]), column_names[c])) col[c] = k;
        if (col[c] < 0 && c <= C_LOSS) {
          fprintf(stderr, "bpcc: error: %s:%lld: not the log of bpcc train --log: the header has no column '%s' "
                          "(expected " LOG_HEADER ")\n", lg->path, (long long)lineno, column_names[c]);
          ok = false;
          break;
        }
      }
      nheader = nf;
      continue;
    }
    const char *kind = trim(fields[0 <= col[C_KIND] && col[C_KIND] < nf ? col[C_KIND] : 0]);
    bool step_row = !strcmp(kind, "step");
    if (!step_row && strcmp(kind, "epoch")) continue;   /* other kinds: not ours to draw */
    if (nf != nheader) {
      fprintf(stderr, "bpcc: error: %s:%lld: %d fields, but the header has %d\n", lg->path, (long long)lineno, nf,
              nheader);
      ok = false;
      break;
    }
    Row r = {step_row, {0}};
    for (int c = 1; c < C__COUNT && ok; c++) {
      r.v[c] = NAN;
      if (col[c] < 0) continue;
      char *s = trim(fields[col[c]]), *end;
      if (!*s) {
        if (c == C_EPOCH || c == C_STEP) {
          fprintf(stderr, "bpcc: error: %s:%lld: column '%s' is empty\n", lg->path, (long long)lineno, column_names[c]);
          ok = false;
        }
        continue;
      }
      errno = 0;
      double v = strtod(s, &end);
      if (*end || end == s) {
        fprintf(stderr, "bpcc: error: %s:%lld: column '%s': '%s' is not a number\n", lg->path, (long long)lineno,
                column_names[c], s);
        ok = false;
      } else if ((c == C_EPOCH || c == C_STEP) && !(isfinite(v) && v >= 0)) {
        fprintf(stderr, "bpcc: error: %s:%lld: column '%s': '%s' is not an epoch or step count\n", lg->path,
                (long long)lineno, column_names[c], s);
        ok = false;
      }
      r.v[c] = isfinite(v) ? v : NAN;   /* an infinite loss is not drawn */
    }
    if (!ok) break;
    if (lg->n == lg->cap) {
      int64_t ncap = lg->cap ? 2 * lg->cap : 256;
      Row *nr = realloc(lg->rows, sizeof(Row) * (size_t)ncap);
      if (!nr) {
        fprintf(stderr, "bpcc: error: %s: out of memory\n", lg->path);
        ok = false;
        break;
      }
      lg->rows = nr, lg->cap = ncap;
    }
    lg->rows[lg->n++] = r;
    lg->has_steps |= step_row;
  }
  if (ok && ferror(f)) {
    fprintf(stderr, "bpcc: error: %s: read error: %s\n", lg->path, strerror(errno));
    ok = false;
  }
  if (ok && nheader == 0) {
    fprintf(stderr, "bpcc: error: %s: empty: no header row (a log of bpcc train --log starts with " LOG_HEADER ")\n",
            lg->path);
    ok = false;
  }
  if (ok && lg->n == 0) {
    fprintf(stderr, "bpcc: error: %s: no epoch or step rows to plot (the header alone, at line %lld)\n", lg->path,
            (long long)lineno);
    ok = false;
  }
  free(line);
  fclose(f);
  return ok;
}

/* ------------------------------------------------------------------ drawing */

#define W 1000          /* the picture */
#define H 440
#define PANEL_W 500     /* each panel: the plot area inside its margins */
#define M_LEFT 72
#define M_RIGHT 24
#define M_TOP 56
#define M_BOTTOM 56
#define TICKS 5

typedef struct {
  double lo, hi, step;   /* the axis range, a whole number of ticks */
} Axis;

/* A range [lo, hi] widened to ticks at 1, 2 or 5 times a power of ten, about TICKS. */
static Axis nice_axis(double lo, double hi) {
  if (!isfinite(hi - lo)) {   /* -1e308 .. 1e308: the range of the halves, doubled */
    Axis h = nice_axis(lo / 2, hi / 2);
    return (Axis){h.lo * 2, h.hi * 2, h.step * 2};
  }
  if (!(hi > lo)) {
    double pad = fabs(lo) > 0 ? fabs(lo) * 0.1 : 0.5;
    lo -= pad, hi += pad;
  }
  double raw = (hi - lo) / TICKS, mag = pow(10, floor(log10(raw))), f = raw / mag;
  double step = (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * mag;
  Axis a = {floor(lo / step + 1e-9) * step, ceil(hi / step - 1e-9) * step, step};
  /* ranges at the ends of double (1e308, 1e-320) get plain ends and one tick apart */
  if (!(isfinite(a.lo) && isfinite(a.hi) && a.step > 0 && a.hi > a.lo && (a.hi - a.lo) / a.step <= 4 * TICKS))
    a = isfinite(hi - lo) && hi > lo ? (Axis){lo, hi, hi - lo} : (Axis){0, 1, 0.2};
  return a;
}

/* XML text: & < > " ' escaped. */
static void xml_text(FILE *o, const char *s) {
  for (; *s; s++) {
    switch (*s) {
    case '&': fputs("&amp;", o); break;
    case '<': fputs("&lt;", o); break;
    case '>': fputs("&gt;", o); break;
    case '"': fputs("&quot;", o); break;
    case '\'': fputs("&apos;", o); break;
    default:
      if ((unsigned char)*s < 0x20) fputc('?', o);   /* control bytes are not XML */
      else fputc(*s, o);
    }
  }
}

/* A tick label: the value at the precision of the step (no 0.30000000000000004). */
static void tick_label(char *buf, size_t n, double v, double step) {
  if (fabs(v) < step * 1e-6) v = 0;
  if (step < 1e-4 || fabs(v) >= 1e7) {   /* far from 1: 2.5e-05, 1.2e+20 */
    snprintf(buf, n, "%.4g", v);
    return;
  }
  int digits = step >= 1 ? 0 : (int)ceil(-log10(step) - 1e-9);
  snprintf(buf, n, "%.*f", digits, v);
}

/* The pixel of v on an axis drawn from p0 (at a.lo) to p1 (at a.hi); never beyond the
 * picture by more than its size, so that a stray value stays a finite coordinate. */
static double pixel(double p0, double p1, double v, Axis a) {
  double t = (v / 2 - a.lo / 2) / (a.hi / 2 - a.lo / 2);   /* halves: no overflow at 1e308 */
  double p = p0 + t * (p1 - p0);
  return isfinite(p) ? fmin(fmax(p, -W), 2 * W) : p0;
}

static void draw_panel(FILE *o, int p, const Series *s, const bool *present, Axis xa, const char *xname) {
  double x0 = p * PANEL_W + M_LEFT, x1 = (p + 1) * PANEL_W - M_RIGHT, y0 = M_TOP, y1 = H - M_BOTTOM;
  const char *title = p == 0 ? "loss" : "accuracy (%)";
  /* the panel's y range over its series */
  double lo = INFINITY, hi = -INFINITY;
  bool any = false;
  for (int k = 0; k < S__COUNT; k++)
    if (series_info[k].panel == p && present[k])
      for (int64_t i = 0; i < s[k].n; i++) {
        double v = s[k].y[i] * series_info[k].scale;
        lo = fmin(lo, v), hi = fmax(hi, v), any = true;
      }
  Axis ya = any ? nice_axis(lo, hi) : nice_axis(0, p == 0 ? 1 : 100);
#define PX(x) pixel(x0, x1, (x), xa)
#define PY(y) pixel(y1, y0, (y), ya)
  fprintf(o, "<g id=\"panel-%s\">\n", p == 0 ? "loss" : "accuracy");
  fprintf(o, "<text x=\"%.1f\" y=\"%d\" font-size=\"16\" text-anchor=\"middle\">%s</text>\n", (x0 + x1) / 2, M_TOP - 22,
          title);
  /* grid and ticks */
  char lab[64];
  for (int i = 0; i <= 4 * TICKS && ya.lo + i * ya.step <= ya.hi + ya.step * 1e-9; i++) {
    double v = ya.lo + i * ya.step, y = PY(v);
    tick_label(lab, sizeof lab, v, ya.step);
    fprintf(o, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e0e0e0\"/>\n", x0, y, x1, y);
    fprintf(o, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\" text-anchor=\"end\">%s</text>\n", x0 - 6, y + 4, lab);
  }
  for (int i = 0; i <= 4 * TICKS && xa.lo + i * xa.step <= xa.hi + xa.step * 1e-9; i++) {
    double v = xa.lo + i * xa.step, x = PX(v);
    tick_label(lab, sizeof lab, v, xa.step);
    fprintf(o, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e0e0e0\"/>\n", x, y0, x, y1);
    fprintf(o, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\" text-anchor=\"middle\">%s</text>\n", x, y1 + 18, lab);
  }
  fprintf(o, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" stroke=\"#000000\"/>\n", x0, y0,
          x1 - x0, y1 - y0);
  fprintf(o, "<text x=\"%.1f\" y=\"%d\" font-size=\"13\" text-anchor=\"middle\">%s</text>\n", (x0 + x1) / 2, H - 14,
          xname);
  fprintf(o, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"13\" text-anchor=\"middle\" transform=\"rotate(-90 %.1f %.1f)\">%s</text>\n",
          x0 - 52, (y0 + y1) / 2, x0 - 52, (y0 + y1) / 2, title);
  if (!any)
    fprintf(o, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"14\" text-anchor=\"middle\" fill=\"#808080\">no %s in this log</text>\n",
            (x0 + x1) / 2, (y0 + y1) / 2, p == 0 ? "loss" : "accuracy");
  /* the curves: one polyline per series, and a dot per point where they are few */
  int nlegend = 0;
  for (int k = 0; k < S__COUNT; k++) {
    if (series_info[k].panel != p || !present[k]) continue;
    const Series *c = &s[k];
    nlegend++;
    fprintf(o, "<polyline id=\"%s\" fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\" points=\"", series_info[k].column,
            series_info[k].color);
    for (int64_t i = 0; i < c->n; i++)
      fprintf(o, "%s%.2f,%.2f", i ? " " : "", PX(c->x[i]), PY(c->y[i] * series_info[k].scale));
    fprintf(o, "\"/>\n");
    if (c->n <= 60)
      for (int64_t i = 0; i < c->n; i++)
        fprintf(o, "<circle cx=\"%.2f\" cy=\"%.2f\" r=\"2.5\" fill=\"%s\"/>\n", PX(c->x[i]),
                PY(c->y[i] * series_info[k].scale), series_info[k].color);
  }
  /* the legend over the curves, top right inside the frame, on a light background */
  if (nlegend)
    fprintf(o, "<rect x=\"%.1f\" y=\"%.1f\" width=\"104\" height=\"%d\" fill=\"#ffffff\" fill-opacity=\"0.85\" "
               "stroke=\"#c0c0c0\"/>\n", x1 - 116, y0 + 4, 18 * nlegend + 6);
  int legend = 0;
  for (int k = 0; k < S__COUNT; k++) {
    if (series_info[k].panel != p || !present[k]) continue;
    double ly = y0 + 22 + 18 * legend++, lx = x1 - 108;
    fprintf(o, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"2\"/>\n", lx, ly - 4,
            lx + 22, ly - 4, series_info[k].color);
    fprintf(o, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\">%s</text>\n", lx + 28, ly, series_info[k].label);
  }
  fprintf(o, "</g>\n");
#undef PX
#undef PY
}

static void write_svg(FILE *o, const char *log_path, const Series *s, const bool *present, bool steps) {
  double lo = INFINITY, hi = -INFINITY;
  for (int k = 0; k < S__COUNT; k++)
    for (int64_t i = 0; present[k] && i < s[k].n; i++) lo = fmin(lo, s[k].x[i]), hi = fmax(hi, s[k].x[i]);
  Axis xa = nice_axis(lo, hi);
  if (xa.step < 1) {   /* epochs and steps are whole numbers */
    xa = (Axis){floor(lo), ceil(hi), 1};
    if (xa.hi <= xa.lo) xa.lo -= 1, xa.hi += 1;
  }
  fprintf(o, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
  fprintf(o, "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
             "font-family=\"sans-serif\">\n", W, H, W, H);
  fprintf(o, "<title>");
  xml_text(o, log_path);
  fprintf(o, ": loss and accuracy per %s (bpcc plot)</title>\n", steps ? "step" : "epoch");
  fprintf(o, "<rect width=\"%d\" height=\"%d\" fill=\"#ffffff\"/>\n", W, H);
  for (int p = 0; p < 2; p++) draw_panel(o, p, s, present, xa, steps ? "step" : "epoch");
  fprintf(o, "</svg>\n");
}

/* ------------------------------------------------------------------ the command */

int cmd_plot(int argc, char **argv) {
  const char *log = NULL, *out = NULL;
  ArgParser p;
  args_parser_init(&p, "plot", plot_options, NULL, argc, argv);
  const DrvOption *opt;
  const char *v;
  for (int k; (k = args_next(&p, &opt, &v)) != ARGS_END;) {
    if (k == ARGS_ERROR) return 1;
    if (k == ARGS_HELP) {
      plot_usage(stdout);
      return 0;
    }
    if (k == ARGS_OPERAND) {
      if (log) return plot_error("more than one log ('%s')", v);
      log = v;
    } else {
      out = v;   /* -o, the one option */
    }
  }
  if (!log) return plot_error("%s", "no log: give the CSV that bpcc train --log wrote");
  if (!out) return plot_error("%s", "no output: give -o FILE.svg (or -o - for standard output)");
  size_t n = strlen(out);
  if (strcmp(out, "-") && !(n > 4 && !strcmp(out + n - 4, ".svg")))
    return plot_error("-o '%s': bpcc plot writes SVG: name the file FILE.svg (or - for standard output)", out);

  Log lg = {log, NULL, 0, 0, false};
  Series s[S__COUNT] = {{0}};
  OutFile of = {0};
  int status = 1;
  if (!read_log(&lg) || !outfile_open(&of, out, false, "SVG")) goto done;
  /* x: the step where there are step rows (training from them, validation from the
   * epoch rows at their step); else the epoch */
  bool present[S__COUNT] = {false};
  for (int64_t r = 0; r < lg.n; r++) {
    const Row *row = &lg.rows[r];
    double x = lg.has_steps ? row->v[C_STEP] : row->v[C_EPOCH];
    for (int c = C_LOSS; c < C__COUNT; c++) {
      int k = column_series[c];
      bool validation = k == S_VAL_LOSS || k == S_VAL_ACC;
      if (lg.has_steps && row->step_row == validation) continue;
      if (isnan(row->v[c])) continue;
      if (!series_add(&s[k], x, row->v[c])) {
        fprintf(stderr, "bpcc: error: %s: out of memory\n", log);
        goto done;
      }
      present[k] = true;
    }
  }
  write_svg(of.f, log, s, present, lg.has_steps);
  if (!outfile_commit(&of)) goto done;
  status = 0;
done:
  if (status) outfile_abort(&of);
  for (int k = 0; k < S__COUNT; k++) free(s[k].x), free(s[k].y);
  free(lg.rows);
  return status;
}
