/* tests/runtime/testutil.h — temporary directories and files for the runtime tests. */
#ifndef BPCC_TESTS_RUNTIME_TESTUTIL_H
#define BPCC_TESTS_RUNTIME_TESTUTIL_H

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* A fresh directory bprt-test-PID-N under $TMPDIR, else /dev/shm (the tests write
 * thousands of small files: memory is much faster than a busy disk), else /tmp.
 * Removed with rm_tree. */
static inline char *make_temp_dir(void) {
  const char *base = getenv("TMPDIR");
  if (!base || !*base) base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
  char buf[4096];
  for (int n = 0; n < 1000; n++) {
    snprintf(buf, sizeof buf, "%s/bprt-test-%ld-%d", base, (long)getpid(), n);
    if (mkdir(buf, 0700) == 0) return strdup(buf);
  }
  return NULL;
}

/* Remove a directory and the plain files in it (the tests make no subdirectories). */
static inline void rm_tree(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return;
  struct dirent *e;
  char path[8192];
  while ((e = readdir(d))) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    unlink(path);
  }
  closedir(d);
  rmdir(dir);
}

/* The group fixture of a test file whose tests write files: `dir`, a fresh directory
 * made by cmocka's group setup `setup` and removed by `teardown`. */
#define TEMP_DIR_FIXTURE                 \
  static char *dir;                      \
  static int setup(void **state) {       \
    (void)state;                         \
    dir = make_temp_dir();               \
    return dir ? 0 : -1;                 \
  }                                      \
  static int teardown(void **state) {    \
    (void)state;                         \
    rm_tree(dir);                        \
    free(dir);                           \
    return 0;                            \
  }

/* Number of entries of dir (without . and ..). */
static inline int count_entries(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return -1;
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)))
    if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
  closedir(d);
  return n;
}

static inline void write_bytes(const char *path, const void *data, size_t n) {
  FILE *f = fopen(path, "wb");
  if (!f) {
    perror(path);
    abort();
  }
  if (n && fwrite(data, 1, n, f) != n) abort();
  fclose(f);
}

static inline void write_text(const char *path, const char *text) { write_bytes(path, text, strlen(text)); }

/* dir/name into a static rotating buffer (up to 8 live at a time). */
static inline const char *path_in(const char *dir, const char *name) {
  static char bufs[8][4096];
  static int k;
  char *b = bufs[k++ % 8];
  snprintf(b, 4096, "%s/%s", dir, name);
  return b;
}

#endif
