/* runtime/progress.h — what `bpcc train`, `eval` and `bench` show people (library
 * bpcc_data, beside the training loop that draws the bar).
 *
 *   progress.c  numbers for people (significant digits, durations with units, counts
 *               with thousands separators and plurals), the terminal's width, the
 *               progress bar of an epoch and the one-line status shown while compiling
 *
 * People read formatted numbers; files keep full precision (the CSV log writes %.9g and
 * uses none of this). Every formatter writes into buf (n bytes, truncating, always
 * terminated) and returns buf, so that calls nest inside one printf. */
#ifndef BPCC_RUNTIME_PROGRESS_H
#define BPCC_RUNTIME_PROGRESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* ------------------------------------------------------------- numbers for people */

/* v with `digits` significant digits, as %.*g: 0.06231, 2.303, 1.2e+30; "nan", "inf". */
char *bprt_fmt_sig(char *buf, size_t n, double v, int digits);
/* 636010 -> "636,010"; -1234 -> "-1,234". */
char *bprt_fmt_count(char *buf, size_t n, int64_t v);
/* "1 epoch", "2 epochs", "60,000 rows"; plural NULL: word + "s". */
char *bprt_fmt_counted(char *buf, size_t n, int64_t v, const char *word, const char *plural);
/* Seconds as people say them: "0 ms", "0.047 ms", "0.3 ms", "2.5 ms", "345 ms",
 * "12.4 s", "3 min 05 s", "2 h 05 min"; "?" for a negative or non-finite value. */
char *bprt_fmt_duration(char *buf, size_t n, double seconds);
/* A clock as tqdm shows elapsed and remaining time: "00:07", "12:34", "1:02:03"; "?"
 * when unknown (negative or non-finite). */
char *bprt_fmt_clock(char *buf, size_t n, double seconds);
/* Speed of `steps` in `seconds`: "171 steps/s", "45.2 steps/s", "3.05 steps/s", and
 * below one step a second "2.35 s/step"; "? steps/s" before anything was timed. */
char *bprt_fmt_rate(char *buf, size_t n, int64_t steps, double seconds);

/* ------------------------------------------------------------------- the terminal */

/* Columns of the terminal behind f: TIOCGWINSZ, else $COLUMNS, else 80. Asked again at
 * every redraw (at most 10 a second), so the bar follows a resize. */
int bprt_term_width(FILE *f);
/* A result line (no newline in it) to out, with its newline. On a terminal narrower
 * than the line, the line is fitted rather than left to the terminal's wrap in the
 * middle of a word: first the double spaces between fields become single ones, then
 * it is broken at spaces, the continuation lines indented by `indent` columns. Off a
 * terminal (a log, a pipe) it is written as it is. */
void bprt_put_line(FILE *out, const char *line, int indent);

/* ------------------------------------------------------------------ the progress bar */

/* One line, never longer than width - 1 columns (so a terminal never wraps it and \r
 * returns to its start):
 *
 *   epoch 3/10  40%[##########---------------] 188/469  loss 0.0623  152 steps/s  00:01<00:02
 *
 * prefix (may be ""), the percentage done, the bar, steps done/total, the running loss
 * (left out when NaN), the speed, elapsed<remaining. Where the width is short the
 * speed, then the times, the loss and the prefix are left out, then the bar; the bar
 * takes what is left, 10 to 50 columns. Returns the length. */
size_t bprt_progress_format(char *buf, size_t n, int width, const char *prefix, int64_t done, int64_t total,
                            double loss, double elapsed);

/* The bar of one epoch on a stream. With bar false nothing is drawn (the stream is not
 * a terminal) and only whole lines (bprt_progress_print) are written. */
typedef struct {
  FILE *out;
  bool bar;
  char prefix[64];
  int64_t total;
  int64_t first;        /* steps done before the start (a resumed epoch): not in the rate */
  double t0, last_draw;
  bool open;            /* a bar is on the screen, its line not ended */
} BprtProgress;

void bprt_progress_start(BprtProgress *p, FILE *out, bool bar, const char *prefix, int64_t total);
/* done steps, the running loss: redrawn as "\r\033[K" + the line at most 10 times a
 * second; the last step (done == total) is always drawn and its line ended and kept, as
 * tqdm leaves a finished bar. */
void bprt_progress_step(BprtProgress *p, int64_t done, double loss);
/* A whole line (no newline in it) above the bar: the bar is cleared, the line printed,
 * and the bar drawn again at the next step. */
void bprt_progress_print(BprtProgress *p, const char *line);
/* End an unfinished bar's line (an error stops the epoch), so what follows starts on a
 * line of its own. */
void bprt_progress_break(BprtProgress *p);
/* Seconds since bprt_progress_start. */
double bprt_progress_elapsed(const BprtProgress *p);

/* ------------------------------------------------------------------ a status line */

/* "compiling examples/mnist_mlp.bp ..." on a terminal while a long step runs: the text
 * (cut to the width) and a newline. bprt_status_clear moves up and clears that line;
 * call it only when nothing else was printed to the terminal since (a diagnostic
 * stays under the status line instead). */
void bprt_status_show(FILE *f, const char *text);
void bprt_status_clear(FILE *f);

#endif
