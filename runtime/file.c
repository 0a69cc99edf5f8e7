/* runtime/file.c — opening the files the runtime reads: regular files only.
 *
 * Data files and checkpoints are read whole, sized by what their headers say, so they
 * must be regular files: a FIFO or a socket has no size and /dev/zero never ends.
 * Opening itself must not block, either: open(2) of a FIFO without a writer waits for
 * one unless O_NONBLOCK is given, so the file is opened with it, checked with fstat,
 * and only then switched back to blocking reads. */
#include "runtime/runtime.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *kind_name(mode_t m) {
  if (S_ISDIR(m)) return "a directory";
  if (S_ISFIFO(m)) return "a FIFO (named pipe)";
  if (S_ISCHR(m)) return "a character device";
  if (S_ISBLK(m)) return "a block device";
  if (S_ISSOCK(m)) return "a socket";
  return "not a regular file";
}

int bprt_open_regular(const char *path, uint64_t *size) {
  if (!path || !*path) return bprt_set_error("cannot open '': empty path");
  struct stat st;
  int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    int e = errno;   /* a socket cannot be opened at all (ENXIO): say what it is */
    if (stat(path, &st) == 0 && !S_ISREG(st.st_mode))
      return bprt_set_error("%s: %s, not a regular file: only regular files can be read here", path,
                            kind_name(st.st_mode));
    return bprt_set_error("cannot open %s: %s", path, strerror(e));
  }
  if (fstat(fd, &st) != 0) {
    int e = errno;
    close(fd);
    return bprt_set_error("cannot open %s: %s", path, strerror(e));
  }
  if (!S_ISREG(st.st_mode)) {
    close(fd);
    return bprt_set_error("%s: %s, not a regular file: only regular files can be read here", path,
                          kind_name(st.st_mode));
  }
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) != 0) {
    int e = errno;
    close(fd);
    return bprt_set_error("cannot open %s: %s", path, strerror(e));
  }
  if (size) *size = (uint64_t)st.st_size;
  return fd;
}
