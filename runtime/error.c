/* runtime/error.c — the per-thread last error.
 *
 * The runtime never prints or exits: a failing call stores one message per thread and
 * returns -1 / NULL, and the caller (the `bpcc train` driver or a generated library's
 * `*_last_error()`) decides what to show. Messages are truncated to 1 KiB.
 *
 * Per-thread storage is a pthread key, not _Thread_local: a C11 thread-local in a
 * shared object needs __tls_get_addr from the dynamic loader, which would add
 * ld-linux to the NEEDED list of every model .so (only libc, libm and libpthread are
 * allowed). If the buffer cannot be allocated, a fixed out-of-memory message stands in. */
#include "runtime/runtime.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ERROR_MAX 1024

static pthread_key_t error_key;
static pthread_once_t error_once = PTHREAD_ONCE_INIT;
static int error_key_ok;

/* The destructor is libc's free itself, not a function of ours: in a model .so that
 * has been dlclose'd, a thread exiting later would otherwise call into unmapped code. */
static void make_key(void) { error_key_ok = pthread_key_create(&error_key, free) == 0; }

/* This thread's buffer, created on first use; NULL if that is impossible. The buffer
 * comes from malloc, not bprt_malloc: reporting an injected allocation failure must
 * not itself fail. */
static char *buffer(bool create) {
  pthread_once(&error_once, make_key);
  if (!error_key_ok) return NULL;
  char *b = pthread_getspecific(error_key);
  if (!b && create) {
    b = calloc(1, ERROR_MAX);
    if (b && pthread_setspecific(error_key, b) != 0) {
      free(b);
      b = NULL;
    }
  }
  return b;
}

int bprt_set_error(const char *fmt, ...) {
  char *b = buffer(true);
  if (!b) return -1;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(b, ERROR_MAX, fmt, ap);
  va_end(ap);
  return -1;
}

int bprt_prefix_error(const char *fmt, ...) {
  char *b = buffer(true);
  if (!b) return -1;
  char prefix[ERROR_MAX], old[ERROR_MAX];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(prefix, sizeof prefix, fmt, ap);
  va_end(ap);
  memcpy(old, b, sizeof old);
  /* "prefix: old", truncated to the buffer (by hand: snprintf("%s: %s") warns). */
  size_t n = strlen(prefix), m = strlen(old);
  if (n > ERROR_MAX - 3) n = ERROR_MAX - 3;
  memcpy(b, prefix, n);
  memcpy(b + n, ": ", 2);
  n += 2;
  if (m > ERROR_MAX - 1 - n) m = ERROR_MAX - 1 - n;
  memcpy(b + n, old, m);
  b[n + m] = 0;
  return -1;
}

const char *bprt_last_error(void) {
  char *b = buffer(true);
  return b ? b : "out of memory (no room for the error message)";
}

void bprt_clear_error(void) {
  char *b = buffer(false);
  if (b) b[0] = 0;
}
