/* runtime/progress.c — numbers for people, the progress bar, the status line.
 *
 * The bar follows tqdm: on stderr, redrawn in place at most 10 times a second, the last
 * state of an epoch left on the screen. Its one hard rule is that a line is never as
 * wide as the terminal: a line that wraps leaves its first rows behind at every redraw
 * (\r returns to the start of the last row only), which is how a bar fills an
 * 80-column screen with stale copies. So the width is asked for at every redraw (a
 * resize is followed within 0.1 s, with no signal handler to share with the loop's
 * SIGINT handling) and the line is built to width - 1 columns, pieces left out in
 * order of importance when it is short. ASCII only, so bytes are columns. */
#include "runtime/progress.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

static double now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ------------------------------------------------------------- numbers for people */

char *bprt_fmt_sig(char *buf, size_t n, double v, int digits) {
  if (digits < 1) digits = 1;
  if (digits > 17) digits = 17;
  if (isnan(v)) snprintf(buf, n, "nan");
  else if (isinf(v)) snprintf(buf, n, v < 0 ? "-inf" : "inf");
  else snprintf(buf, n, "%.*g", digits, v == 0 ? 0.0 : v);   /* no "-0" */
  return buf;
}

char *bprt_fmt_count(char *buf, size_t n, int64_t v) {
  char digits[32];
  /* the magnitude as unsigned, so INT64_MIN has one too */
  uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
  int k = 0;
  do {
    digits[k++] = (char)('0' + u % 10);
    u /= 10;
  } while (u);
  char out[48];
  size_t o = 0;
  if (v < 0) out[o++] = '-';
  for (int i = k - 1; i >= 0; i--) {
    out[o++] = digits[i];
    if (i > 0 && i % 3 == 0) out[o++] = ',';
  }
  out[o] = 0;
  snprintf(buf, n, "%s", out);
  return buf;
}

char *bprt_fmt_counted(char *buf, size_t n, int64_t v, const char *word, const char *plural) {
  char c[48];
  bprt_fmt_count(c, sizeof c, v);
  if (v == 1 || v == -1) snprintf(buf, n, "%s %s", c, word);
  else if (plural) snprintf(buf, n, "%s %s", c, plural);
  else snprintf(buf, n, "%s %ss", c, word);
  return buf;
}

char *bprt_fmt_duration(char *buf, size_t n, double s) {
  double ms = s * 1e3;
  if (!(s >= 0) || !isfinite(s)) snprintf(buf, n, "?");
  else if (ms == 0) snprintf(buf, n, "0 ms");
  else if (ms < 0.01) snprintf(buf, n, "<0.01 ms");
  else if (ms < 1) snprintf(buf, n, "%.2g ms", ms);          /* 0.3 ms, 0.047 ms */
  else if (ms < 9.95) snprintf(buf, n, "%.1f ms", ms);       /* 2.5 ms */
  else if (ms < 999.5) snprintf(buf, n, "%.0f ms", ms);      /* 345 ms */
  else if (s < 59.95) snprintf(buf, n, "%.1f s", s);         /* 12.4 s */
  else if (s < 3599.5) {
    long t = (long)(s + 0.5);
    snprintf(buf, n, "%ld min %02ld s", t / 60, t % 60);     /* 3 min 05 s */
  } else {
    long t = (long)(s / 60 + 0.5);
    snprintf(buf, n, "%ld h %02ld min", t / 60, t % 60);     /* 2 h 05 min */
  }
  return buf;
}

char *bprt_fmt_clock(char *buf, size_t n, double s) {
  if (!(s >= 0) || s > 1e9) {
    snprintf(buf, n, "?");
    return buf;
  }
  long t = (long)(s + 0.5);
  if (t >= 3600) snprintf(buf, n, "%ld:%02ld:%02ld", t / 3600, (t / 60) % 60, t % 60);
  else snprintf(buf, n, "%02ld:%02ld", t / 60, t % 60);
  return buf;
}

char *bprt_fmt_rate(char *buf, size_t n, int64_t steps, double seconds) {
  if (steps <= 0 || !(seconds > 0) || !isfinite(seconds)) {
    snprintf(buf, n, "? steps/s");
    return buf;
  }
  double r = (double)steps / seconds;
  if (r >= 99.95) {
    char c[48];
    snprintf(buf, n, "%s steps/s", bprt_fmt_count(c, sizeof c, (int64_t)(r + 0.5)));
  } else if (r >= 9.995) {
    snprintf(buf, n, "%.1f steps/s", r);
  } else if (r >= 1) {
    snprintf(buf, n, "%.2f steps/s", r);
  } else {
    double per = seconds / (double)steps;
    snprintf(buf, n, per < 99.95 ? "%.3g s/step" : "%.0f s/step", per);
  }
  return buf;
}

/* ------------------------------------------------------------------- the terminal */

int bprt_term_width(FILE *f) {
  struct winsize ws;
  if (f && ioctl(fileno(f), TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) return ws.ws_col;
  const char *c = getenv("COLUMNS");
  if (c && *c) {
    char *end;
    long v = strtol(c, &end, 10);
    if (!*end && v > 0 && v <= 10000) return (int)v;
  }
  return 80;
}

void bprt_put_line(FILE *out, const char *line, int indent) {
  size_t len = strlen(line);
  int width = isatty(fileno(out)) ? bprt_term_width(out) : 0;
  if (width <= 0 || (int)len < width) {
    fprintf(out, "%s\n", line);
    return;
  }
  char *t = malloc(2 * len + 2);
  if (!t) {
    fprintf(out, "%s\n", line);
    return;
  }
  /* t: the line with single spaces after its indentation; field[k]: the space at k
   * ends a field (it was a double space, or follows ',' or ';'), where a break is best */
  char *field = t + len + 1;
  size_t n = strspn(line, " ");
  memcpy(t, line, n);
  memset(field, 0, len + 1);
  for (size_t i = n; i < len; i++) {
    if (line[i] == ' ' && t[n - 1] == ' ') {
      field[n - 1] = 1;
      continue;
    }
    if (line[i] == ' ' && (t[n - 1] == ',' || t[n - 1] == ';')) field[n] = 1;
    t[n++] = line[i];
  }
  t[n] = 0;
  if (indent < 0 || indent > width / 2) indent = 0;
  size_t room = (size_t)(width - 1), at = 0, lead = 0;
  while (n - at + lead > room) {
    size_t best = 0, any = 0;   /* the last field end, and the last space, that fit */
    for (size_t k = at + 1; k <= at + room - lead && k < n; k++)
      if (t[k] == ' ') {
        any = k;
        if (field[k]) best = k;
      }
    size_t cut = best ? best : any;
    if (!cut) {   /* a word longer than the line goes whole */
      cut = at + strcspn(t + at, " ");
      if (cut >= n) break;
    }
    fprintf(out, "%*s%.*s\n", (int)lead, "", (int)(cut - at), t + at);
    at = cut + 1;
    lead = (size_t)indent;
  }
  fprintf(out, "%*s%s\n", (int)lead, "", t + at);
  free(t);
}

/* ------------------------------------------------------------------ the progress bar */

/* `first`: the steps already done when the clock started (an epoch resumed in its
 * middle), which the rate and the time left leave out. */
static size_t format_from(char *buf, size_t n, int width, const char *prefix, int64_t first, int64_t done,
                          int64_t total, double loss, double elapsed) {
  if (n == 0) return 0;
  int budget = width - 1;
  if (budget < 0) budget = 0;
  int64_t shown = done < 0 ? 0 : total > 0 && done > total ? total : done;
  int percent = total > 0 ? (int)(100 * shown / total) : 100;
  char pct[16], cnt[100], ls[64], rate[64], tm[64], a[48], b[48];
  snprintf(pct, sizeof pct, "%3d%%", percent);
  snprintf(cnt, sizeof cnt, "%s/%s", bprt_fmt_count(a, sizeof a, shown), bprt_fmt_count(b, sizeof b, total));
  ls[0] = 0;
  if (!isnan(loss)) snprintf(ls, sizeof ls, "loss %s", bprt_fmt_sig(a, sizeof a, loss, 4));
  int64_t ran = shown > first ? shown - first : 0;
  bprt_fmt_rate(rate, sizeof rate, ran, elapsed);
  double left = ran > 0 && elapsed > 0 ? elapsed * (double)(total - shown) / (double)ran : -1;
  snprintf(tm, sizeof tm, "%s<%s", bprt_fmt_clock(a, sizeof a, elapsed), bprt_fmt_clock(b, sizeof b, left));

  /* pieces in the order they are given up when the line is short */
  const char *opt[4] = {rate, tm, ls, prefix ? prefix : ""};
  bool use[4];
  for (int i = 0; i < 4; i++) use[i] = opt[i][0] != 0;
  int bar = -1;   /* inner width of the bar; -1: none */
  for (int drop = 0;; drop++) {
    int fixed = (int)strlen(pct) + 1 + (int)strlen(cnt);
    for (int i = 0; i < 3; i++)
      if (use[i]) fixed += 2 + (int)strlen(opt[i]);
    if (use[3]) fixed += (int)strlen(opt[3]) + 1;
    int room = budget - fixed - 2;
    if (room >= 10) {
      bar = room > 50 ? 50 : room;
      break;
    }
    if (drop >= 4) break;   /* not even the bar fits: percent and count alone */
    use[drop] = false;
  }
  char line[512];
  size_t o = 0;
#define PUT(...) o += (size_t)snprintf(line + o, o < sizeof line ? sizeof line - o : 0, __VA_ARGS__)
  if (use[3]) PUT("%s ", opt[3]);
  PUT("%s", pct);
  if (bar >= 0) {
    int fill = total > 0 ? (int)((int64_t)bar * shown / total) : bar;
    PUT("[");
    for (int i = 0; i < bar && o + 1 < sizeof line; i++) line[o++] = i < fill ? '#' : '-';
    PUT("]");
  }
  PUT(" %s", cnt);
  if (use[2]) PUT("  %s", ls);
  if (use[0]) PUT("  %s", rate);
  if (use[1]) PUT("  %s", tm);
#undef PUT
  if (o >= sizeof line) o = sizeof line - 1;
  if (o > (size_t)budget) o = (size_t)budget;   /* a very narrow terminal: cut, never wrap */
  if (o > n - 1) o = n - 1;
  memcpy(buf, line, o);
  buf[o] = 0;
  return o;
}

size_t bprt_progress_format(char *buf, size_t n, int width, const char *prefix, int64_t done, int64_t total,
                            double loss, double elapsed) {
  return format_from(buf, n, width, prefix, 0, done, total, loss, elapsed);
}

void bprt_progress_start(BprtProgress *p, FILE *out, bool bar, const char *prefix, int64_t total) {
  memset(p, 0, sizeof *p);
  p->out = out;
  p->bar = bar && out;
  snprintf(p->prefix, sizeof p->prefix, "%s", prefix ? prefix : "");
  p->total = total;
  p->t0 = now_seconds();
}

double bprt_progress_elapsed(const BprtProgress *p) { return now_seconds() - p->t0; }

void bprt_progress_step(BprtProgress *p, int64_t done, double loss) {
  if (!p->bar) return;
  double t = now_seconds();
  bool last = done >= p->total;
  if (!last && p->open && t - p->last_draw < 0.1) return;
  p->last_draw = t;
  char line[512];
  format_from(line, sizeof line, bprt_term_width(p->out), p->prefix, p->first, done, p->total, loss, t - p->t0);
  fprintf(p->out, "\r\033[K%s", line);
  if (last) fputc('\n', p->out);
  p->open = !last;
  fflush(p->out);
}

void bprt_progress_print(BprtProgress *p, const char *line) {
  if (!p->out) return;
  if (p->open) fputs("\r\033[K", p->out);
  fprintf(p->out, "%s\n", line);
  p->open = false;
  fflush(p->out);
}

void bprt_progress_break(BprtProgress *p) {
  if (p->open) fputc('\n', p->out);
  p->open = false;
  if (p->out) fflush(p->out);
}

/* ------------------------------------------------------------------ a status line */

void bprt_status_show(FILE *f, const char *text) {
  int w = bprt_term_width(f) - 1;
  fprintf(f, "%.*s\n", w > 0 ? w : 0, text);
  fflush(f);
}

void bprt_status_clear(FILE *f) {
  fputs("\033[A\r\033[K", f);   /* up to the status line, clear it */
  fflush(f);
}
