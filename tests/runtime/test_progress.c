/* tests/runtime/test_progress.c — numbers for people and the progress bar
 * (runtime/progress.c): each formatter against hand-written strings, the bar's line at
 * every width from 1 to 200 columns (never longer than width - 1), the redraw rate,
 * and the terminal's width from a pseudo-terminal as it is resized. */
#define _XOPEN_SOURCE 700   /* posix_openpt, grantpt, unlockpt, ptsname */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <poll.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "runtime/progress.h"

static char B[256];

static void test_sig(void **state) {
  (void)state;
  assert_string_equal(bprt_fmt_sig(B, sizeof B, 0.06231234, 4), "0.06231");
  assert_string_equal(bprt_fmt_sig(B, sizeof B, 2.302585093, 4), "2.303");
  assert_string_equal(bprt_fmt_sig(B, sizeof B, 7.5, 4), "7.5");
  assert_string_equal(bprt_fmt_sig(B, sizeof B, 1e30, 4), "1e+30");   /* not 31 digits */
  assert_string_equal(bprt_fmt_sig(B, sizeof B, 123456789.0, 4), "1.235e+08");
  assert_string_equal(bprt_fmt_sig(B, sizeof B, 0.0908772, 6), "0.0908772");
  assert_string_equal(bprt_fmt_sig(B, sizeof B, -0.0, 4), "0");
  assert_string_equal(bprt_fmt_sig(B, sizeof B, NAN, 4), "nan");
  assert_string_equal(bprt_fmt_sig(B, sizeof B, INFINITY, 4), "inf");
  assert_string_equal(bprt_fmt_sig(B, sizeof B, -INFINITY, 4), "-inf");
  char small[4];
  assert_string_equal(bprt_fmt_sig(small, sizeof small, 0.123456, 6), "0.1");   /* truncated, terminated */
}

static void test_count(void **state) {
  (void)state;
  assert_string_equal(bprt_fmt_count(B, sizeof B, 0), "0");
  assert_string_equal(bprt_fmt_count(B, sizeof B, 999), "999");
  assert_string_equal(bprt_fmt_count(B, sizeof B, 1000), "1,000");
  assert_string_equal(bprt_fmt_count(B, sizeof B, 636010), "636,010");
  assert_string_equal(bprt_fmt_count(B, sizeof B, -1234), "-1,234");
  assert_string_equal(bprt_fmt_count(B, sizeof B, INT64_MAX), "9,223,372,036,854,775,807");
  assert_string_equal(bprt_fmt_count(B, sizeof B, INT64_MIN), "-9,223,372,036,854,775,808");
  assert_string_equal(bprt_fmt_counted(B, sizeof B, 1, "epoch", NULL), "1 epoch");
  assert_string_equal(bprt_fmt_counted(B, sizeof B, 2, "epoch", NULL), "2 epochs");
  assert_string_equal(bprt_fmt_counted(B, sizeof B, 0, "epoch", NULL), "0 epochs");
  assert_string_equal(bprt_fmt_counted(B, sizeof B, 60000, "row", NULL), "60,000 rows");
  assert_string_equal(bprt_fmt_counted(B, sizeof B, 1, "batch", "batches"), "1 batch");
  assert_string_equal(bprt_fmt_counted(B, sizeof B, 3, "batch", "batches"), "3 batches");
}

static void test_duration(void **state) {
  (void)state;
  static const struct {
    double s;
    const char *want;
  } cases[] = {
      {0, "0 ms"},          {1e-6, "<0.01 ms"},    {4.7e-5, "0.047 ms"},  {3e-4, "0.3 ms"},
      {0.0025, "2.5 ms"},   {0.0123, "12 ms"},     {0.345, "345 ms"},     {0.9994, "999 ms"},
      {0.9996, "1.0 s"},    {12.44, "12.4 s"},     {59.9, "59.9 s"},      {59.96, "1 min 00 s"},
      {185, "3 min 05 s"},  {3599, "59 min 59 s"}, {7500, "2 h 05 min"},  {-1, "?"},
      {NAN, "?"},           {INFINITY, "?"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
    assert_string_equal(bprt_fmt_duration(B, sizeof B, cases[i].s), cases[i].want);
  assert_string_equal(bprt_fmt_clock(B, sizeof B, 7), "00:07");
  assert_string_equal(bprt_fmt_clock(B, sizeof B, 754), "12:34");
  assert_string_equal(bprt_fmt_clock(B, sizeof B, 3723), "1:02:03");
  assert_string_equal(bprt_fmt_clock(B, sizeof B, -1), "?");
  assert_string_equal(bprt_fmt_clock(B, sizeof B, NAN), "?");
}

static void test_rate(void **state) {
  (void)state;
  assert_string_equal(bprt_fmt_rate(B, sizeof B, 171, 1.0), "171 steps/s");
  assert_string_equal(bprt_fmt_rate(B, sizeof B, 452, 10.0), "45.2 steps/s");
  assert_string_equal(bprt_fmt_rate(B, sizeof B, 305, 100.0), "3.05 steps/s");
  assert_string_equal(bprt_fmt_rate(B, sizeof B, 123456, 1.0), "123,456 steps/s");
  assert_string_equal(bprt_fmt_rate(B, sizeof B, 1, 2.35), "2.35 s/step");
  assert_string_equal(bprt_fmt_rate(B, sizeof B, 2, 500.0), "250 s/step");
  assert_string_equal(bprt_fmt_rate(B, sizeof B, 0, 1.0), "? steps/s");
  assert_string_equal(bprt_fmt_rate(B, sizeof B, 5, 0.0), "? steps/s");
}

/* ------------------------------------------------------------------ the bar's line */

static void test_format(void **state) {
  (void)state;
  /* 188 of 469 steps in 1.234 s: 40%, 152 steps/s, 1.84 s left; at 80 columns the bar
   * gets what the other pieces leave of 79: 79 - 63 - 2 = 14, 14 * 188 / 469 = 5 filled */
  size_t n = bprt_progress_format(B, sizeof B, 80, "epoch 3/10", 188, 469, 0.06231234, 1.234);
  assert_string_equal(B, "epoch 3/10  40%[#####---------] 188/469  loss 0.06231  152 steps/s  00:01<00:02");
  assert_int_equal(n, 79);
  /* 40 columns: the speed, the times and the loss are given up before the bar */
  bprt_progress_format(B, sizeof B, 40, "epoch 3/10", 188, 469, 0.06231234, 1.234);
  assert_string_equal(B, "epoch 3/10  40%[#####---------] 188/469");
  /* not even the bar fits: percent and count, cut to the width */
  bprt_progress_format(B, sizeof B, 10, "epoch 3/10", 188, 469, 0.06231234, 1.234);
  assert_string_equal(B, " 40% 188/");
  /* the first step: nothing timed yet; the last: full; no loss: left out */
  bprt_progress_format(B, sizeof B, 80, "", 0, 469, NAN, 0);
  /* 79 - (4 + 1 + 5) - (2 + 9) - (2 + 7) - 2 = 47 */
  assert_string_equal(B, "  0%[-----------------------------------------------] 0/469  ? steps/s  00:00<?");
  bprt_progress_format(B, sizeof B, 70, "e", 469, 469, 0.5, 2.0);
  assert_string_equal(B, "e 100%[#################] 469/469  loss 0.5  235 steps/s  00:02<00:00");
  /* wide: the bar stops at 50 */
  bprt_progress_format(B, sizeof B, 250, "epoch 1/1", 10, 20, 1, 1);
  assert_non_null(strstr(B, "[#########################-------------------------]"));
  /* every width: never more than width - 1 columns, never a newline */
  for (int w = 0; w <= 200; w++) {
    char line[512];
    size_t k = bprt_progress_format(line, sizeof line, w, "epoch 10/10", 12345, 60000, 0.123456789, 3723.5);
    assert_int_equal(strlen(line), k);
    assert_true(k <= (size_t)(w > 1 ? w - 1 : 0));
    assert_null(strchr(line, '\n'));
    if (w >= 20) assert_non_null(strstr(line, "12,345/60,000"));
  }
  /* a short buffer: truncated and terminated */
  char small[8];
  assert_int_equal(bprt_progress_format(small, sizeof small, 80, "epoch", 1, 2, 1, 1), 7);
  assert_string_equal(small, "epoch  ");
}

/* ------------------------------------------------------------ drawing and its rate */

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int count(const char *s, const char *what) {
  int n = 0;
  for (const char *p = s; (p = strstr(p, what)) != NULL; p += strlen(what)) n++;
  return n;
}

static char *slurp(FILE *f) {
  fflush(f);
  long n = ftell(f);
  rewind(f);
  char *b = calloc(1, (size_t)n + 1);
  assert_int_equal(fread(b, 1, (size_t)n, f), (size_t)n);
  return b;
}

static void test_draw(void **state) {
  (void)state;
  setenv("COLUMNS", "60", 1);   /* a file has no window size: $COLUMNS decides */
  FILE *f = tmpfile();
  BprtProgress p;
  const int64_t steps = 20000;
  double t0 = now();
  bprt_progress_start(&p, f, true, "epoch 1/2", steps);
  for (int64_t i = 1; i <= steps; i++) {
    if (i == 7) bprt_progress_print(&p, "a line above the bar");
    bprt_progress_step(&p, i, 0.25);
  }
  double el = now() - t0;
  char *text = slurp(f);
  /* drawn at the first step, after the printed line, at the last, and at most 10 times
   * a second in between */
  int draws = count(text, "\r\033[Kepoch 1/2 ");
  assert_true(draws >= 3);
  assert_true(draws <= 3 + (int)(el / 0.1) + 1);
  assert_non_null(strstr(text, "\r\033[Kepoch 1/2   0%["));
  assert_non_null(strstr(text, "\r\033[Ka line above the bar\n\r\033[Kepoch 1/2   0%["));
  /* the last state is kept: 100% and the line ended */
  const char *last = strstr(text, "\r\033[Kepoch 1/2 100%[");
  assert_non_null(last);
  assert_string_equal(last + strlen(last) - 1, "\n");
  for (const char *s = text; (s = strstr(s, "\r\033[K")) != NULL;) {   /* each drawn line <= 59 columns */
    s += 4;
    size_t len = strcspn(s, "\r\n");
    assert_true(len <= 59);
  }
  free(text);
  fclose(f);

  /* not a terminal: no bar, but printed lines */
  f = tmpfile();
  bprt_progress_start(&p, f, false, "epoch 1/1", 3);
  for (int i = 1; i <= 3; i++) bprt_progress_step(&p, i, 1.0);
  bprt_progress_print(&p, "step 3");
  bprt_progress_break(&p);
  text = slurp(f);
  assert_string_equal(text, "step 3\n");
  free(text);
  fclose(f);

  /* an error mid-epoch ends the bar's line */
  f = tmpfile();
  bprt_progress_start(&p, f, true, "", 10);
  bprt_progress_step(&p, 1, 1.0);
  bprt_progress_break(&p);
  text = slurp(f);
  assert_int_equal(text[strlen(text) - 1], '\n');
  assert_int_equal(count(text, "\n"), 1);
  free(text);
  fclose(f);
  unsetenv("COLUMNS");
}

/* ---------------------------------------------------------------- the terminal width */

static void test_width(void **state) {
  (void)state;
  FILE *f = tmpfile();
  setenv("COLUMNS", "123", 1);
  assert_int_equal(bprt_term_width(f), 123);
  setenv("COLUMNS", "12x", 1);
  assert_int_equal(bprt_term_width(f), 80);
  setenv("COLUMNS", "0", 1);
  assert_int_equal(bprt_term_width(f), 80);
  unsetenv("COLUMNS");
  assert_int_equal(bprt_term_width(f), 80);
  fclose(f);

  /* A pseudo-terminal: its window size wins over $COLUMNS, and a resize is seen at the
   * next question (the bar asks at every redraw). */
  int master = posix_openpt(O_RDWR | O_NOCTTY);
  if (master < 0 || grantpt(master) || unlockpt(master)) {
    fprintf(stderr, "note: no pseudo-terminal here; the width of a terminal is not tested\n");
    if (master >= 0) close(master);
    return;
  }
  FILE *tty = fopen(ptsname(master), "w");
  assert_non_null(tty);
  setenv("COLUMNS", "200", 1);
  struct winsize ws = {0};
  ws.ws_row = 24;
  ws.ws_col = 100;
  assert_int_equal(ioctl(fileno(tty), TIOCSWINSZ, &ws), 0);
  assert_int_equal(bprt_term_width(tty), 100);
  ws.ws_col = 40;
  assert_int_equal(ioctl(fileno(tty), TIOCSWINSZ, &ws), 0);
  assert_int_equal(bprt_term_width(tty), 40);
  /* a bar drawn there now fits 39 columns */
  BprtProgress p;
  bprt_progress_start(&p, tty, true, "epoch 1/1", 469);
  bprt_progress_step(&p, 469, 0.2472);
  char got[1024];
  ssize_t k = read(master, got, sizeof got - 1);
  fclose(tty);
  assert_true(k > 0);
  got[k] = 0;
  const char *line = strstr(got, "\r\033[K");
  assert_non_null(line);
  line += 4;
  size_t len = strcspn(line, "\r\n");
  assert_true(len > 20 && len <= 39);
  assert_memory_equal(line, "epoch 1/1 100%[", 15);
  close(master);
  unsetenv("COLUMNS");
}

/* ---------------------------------------------------------------- result lines */

/* What bprt_put_line writes to a terminal `cols` wide, read back from the pty (its
 * "\r\n" made "\n"); NULL where there is no pseudo-terminal. */
static char *put_on_tty(int cols, const char *line, int indent, char *got, size_t n) {
  int master = posix_openpt(O_RDWR | O_NOCTTY);
  if (master < 0 || grantpt(master) || unlockpt(master)) {
    if (master >= 0) close(master);
    return NULL;
  }
  FILE *tty = fopen(ptsname(master), "w");
  assert_non_null(tty);
  struct winsize ws = {0};
  ws.ws_row = 24;
  ws.ws_col = (unsigned short)cols;
  assert_int_equal(ioctl(fileno(tty), TIOCSWINSZ, &ws), 0);
  bprt_put_line(tty, line, indent);
  fflush(tty);
  /* read while the slave is still open (a master can see EIO before the last bytes of a
   * closed slave reached it): until 200 ms pass without a byte, 5 s at the most */
  size_t o = 0;
  for (int waited = 0; waited < 5000;) {
    struct pollfd pfd = {master, POLLIN, 0};
    int r = poll(&pfd, 1, 200);
    if (r <= 0) {
      if (o > 0) break;
      waited += 200;
      continue;
    }
    char buf[512];
    ssize_t k = read(master, buf, sizeof buf);
    if (k <= 0) break;
    for (ssize_t i = 0; i < k && o + 1 < n; i++)
      if (buf[i] != '\r') got[o++] = buf[i];
  }
  fclose(tty);
  got[o] = 0;
  close(master);
  return got;
}

static void test_put_line(void **state) {
  (void)state;
  static const char epoch[] = "epoch 2/2  loss 0.09744  acc 97.16%  val_loss 0.09055  val_acc 97.14%  lr 0.001  1.6 s";
  /* off a terminal: as it is, however long */
  FILE *f = tmpfile();
  setenv("COLUMNS", "20", 1);
  bprt_put_line(f, epoch, 2);
  char *text = slurp(f);
  assert_string_equal(text, "epoch 2/2  loss 0.09744  acc 97.16%  val_loss 0.09055  val_acc 97.14%  lr 0.001  1.6 s\n");
  free(text);
  fclose(f);
  unsetenv("COLUMNS");
  char got[2048];
  if (!put_on_tty(100, epoch, 2, got, sizeof got)) {
    fprintf(stderr, "note: no pseudo-terminal here; bprt_put_line on a terminal is not tested\n");
    return;
  }
  /* wide enough: as it is */
  assert_string_equal(got, "epoch 2/2  loss 0.09744  acc 97.16%  val_loss 0.09055  val_acc 97.14%  lr 0.001  1.6 s\n");
  /* 80 columns: single spaces, then a break at the end of a field ("1.6 s" stays whole) */
  put_on_tty(80, epoch, 2, got, sizeof got);
  assert_string_equal(got, "epoch 2/2 loss 0.09744 acc 97.16% val_loss 0.09055 val_acc 97.14% lr 0.001\n  1.6 s\n");
  put_on_tty(85, epoch, 2, got, sizeof got);
  assert_string_equal(got, "epoch 2/2 loss 0.09744 acc 97.16% val_loss 0.09055 val_acc 97.14% lr 0.001 1.6 s\n");
  /* after a comma or semicolon; the indentation of the first line kept */
  put_on_tty(40, "  data mnist:DIR (train): 60,000 rows; validation mnist:DIR (t10k): 10,000 rows", 4, got, sizeof got);
  assert_string_equal(got, "  data mnist:DIR (train): 60,000 rows;\n    validation mnist:DIR (t10k): 10,000\n    rows\n");
  /* a word longer than the line goes whole, on a line of its own */
  put_on_tty(20, "saved /a/very/long/path/to/a/checkpoint.safetensors ok", 2, got, sizeof got);
  assert_string_equal(got, "saved\n  /a/very/long/path/to/a/checkpoint.safetensors\n  ok\n");
}

/* ---------------------------------------------------------------- the status line */

static void test_status(void **state) {
  (void)state;
  setenv("COLUMNS", "20", 1);
  FILE *f = tmpfile();
  bprt_status_show(f, "compiling examples/mnist_mlp.bp ...");
  bprt_status_clear(f);
  char *text = slurp(f);
  /* cut to 19 columns so that it takes one row, which the clear moves up to */
  assert_string_equal(text, "compiling examples/\n\033[A\r\033[K");
  free(text);
  fclose(f);
  unsetenv("COLUMNS");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_sig),    cmocka_unit_test(test_count), cmocka_unit_test(test_duration),
      cmocka_unit_test(test_rate),   cmocka_unit_test(test_format), cmocka_unit_test(test_draw),
      cmocka_unit_test(test_width),  cmocka_unit_test(test_status), cmocka_unit_test(test_put_line),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
