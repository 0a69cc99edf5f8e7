/* runtime/error.c — the thread-local last error.
 *
 * The runtime never prints or exits: a failing call stores one message per thread and
 * returns -1 / NULL, and the caller (the `bpcc train` driver or a generated library's
 * `*_last_error()`) decides what to show. Messages are truncated to 1 KiB. */
#include "runtime/runtime.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define ERROR_MAX 1024

static _Thread_local char last_error[ERROR_MAX];

int bprt_set_error(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(last_error, sizeof last_error, fmt, ap);
  va_end(ap);
  return -1;
}

int bprt_prefix_error(const char *fmt, ...) {
  char prefix[ERROR_MAX], old[ERROR_MAX];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(prefix, sizeof prefix, fmt, ap);
  va_end(ap);
  memcpy(old, last_error, sizeof old);
  /* "prefix: old", truncated to the buffer (by hand: snprintf("%s: %s") warns). */
  size_t n = strlen(prefix), m = strlen(old);
  if (n > ERROR_MAX - 3) n = ERROR_MAX - 3;
  memcpy(last_error, prefix, n);
  memcpy(last_error + n, ": ", 2);
  n += 2;
  if (m > ERROR_MAX - 1 - n) m = ERROR_MAX - 1 - n;
  memcpy(last_error + n, old, m);
  last_error[n + m] = 0;
  return -1;
}

const char *bprt_last_error(void) { return last_error; }

void bprt_clear_error(void) { last_error[0] = 0; }
