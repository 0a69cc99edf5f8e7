/* driver/outfile.c — an output file that is written whole or not at all.
 *
 * A command that writes a result (predict's NPY or CSV, plot's SVG) opens it here
 * before it computes anything, so that an unwritable path is an error before the work,
 * not after it. The bytes go to PATH.tmp-PID-N beside PATH; outfile_commit flushes,
 * fsyncs and renames it over PATH, so a reader never sees half a file and an old PATH
 * stays as it was when the command fails or is killed. Two cases are written straight:
 * "-" (standard output) and a path that exists and is not a regular file (/dev/null, a
 * FIFO), which a rename would replace instead of writing to. Binary output is never
 * written to a terminal. */
#include "driver/driver.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

bool outfile_open(OutFile *o, const char *path, bool binary, const char *what) {
  memset(o, 0, sizeof *o);
  o->path = path;
  if (strcmp(path, "-") == 0) {
    if (binary && isatty(STDOUT_FILENO)) {
      fprintf(stderr, "bpcc: error: %s is binary and standard output is a terminal: redirect it, or give -o FILE\n", what);
      return false;
    }
    o->f = stdout;
    return true;
  }
  struct stat st;
  if (stat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
    if (S_ISDIR(st.st_mode)) {
      fprintf(stderr, "bpcc: error: %s: is a directory; -o names the file to write\n", path);
      return false;
    }
    o->f = fopen(path, "w");
    if (!o->f) {
      fprintf(stderr, "bpcc: error: %s: cannot open for writing: %s\n", path, strerror(errno));
      return false;
    }
    if (binary && isatty(fileno(o->f))) {
      fprintf(stderr, "bpcc: error: %s: %s is binary and this is a terminal\n", path, what);
      fclose(o->f);
      o->f = NULL;
      return false;
    }
    return true;
  }
  static unsigned counter;
  size_t n = strlen(path) + 48;
  o->tmp = malloc(n);
  if (!o->tmp) {
    fprintf(stderr, "bpcc: error: %s: out of memory\n", path);
    return false;
  }
  int fd = -1;
  for (int attempt = 0; attempt < 100 && fd < 0; attempt++) {
    snprintf(o->tmp, n, "%s.tmp-%ld-%u", path, (long)getpid(), counter++);
    fd = open(o->tmp, O_WRONLY | O_CREAT | O_EXCL, 0666);
    if (fd < 0 && errno != EEXIST) break;
  }
  if (fd < 0 || !(o->f = fdopen(fd, "w"))) {
    fprintf(stderr, "bpcc: error: %s: cannot create a file beside it to write to: %s\n", path, strerror(errno));
    if (fd >= 0) {
      close(fd);
      unlink(o->tmp);
    }
    free(o->tmp);
    o->tmp = NULL;
    return false;
  }
  return true;
}

bool outfile_commit(OutFile *o) {
  if (!o->f) return false;
  bool ok = fflush(o->f) == 0 && !ferror(o->f);
  int err = errno;
  if (o->f == stdout) {
    o->f = NULL;
    if (!ok) fprintf(stderr, "bpcc: error: standard output: write error: %s\n", strerror(err));
    return ok;
  }
  if (ok && o->tmp && fsync(fileno(o->f)) != 0) ok = false, err = errno;
  if (fclose(o->f) != 0 && ok) ok = false, err = errno;
  o->f = NULL;
  if (ok && o->tmp && rename(o->tmp, o->path) != 0) ok = false, err = errno;
  if (!ok) fprintf(stderr, "bpcc: error: %s: write error: %s%s\n", o->path, strerror(err),
                   o->tmp ? "; any previous file is unchanged" : "");
  if (!ok && o->tmp) unlink(o->tmp);
  free(o->tmp);
  o->tmp = NULL;
  return ok;
}

void outfile_abort(OutFile *o) {
  if (o->f && o->f != stdout) fclose(o->f);
  else if (o->f) fflush(o->f);
  o->f = NULL;
  if (o->tmp) {
    unlink(o->tmp);
    free(o->tmp);
    o->tmp = NULL;
  }
}
