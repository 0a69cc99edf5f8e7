/* runtime/data_file.c — reading data files, gzip'd or not, and small helpers.
 *
 * zlib's gzread decompresses gzip files and passes any other file through unchanged,
 * so every loader accepts `train-images-idx3-ubyte.gz` and the raw file alike. A
 * truncated or corrupt gzip stream is an error naming the file and how many bytes
 * were decompressed before it broke. */
#include "runtime/data_internal.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

unsigned char *data_read_file(const char *path, size_t *len) {
  errno = 0;
  FILE *probe = fopen(path, "rb");   /* gzopen's errno is unreliable; check first */
  if (!probe) {
    bprt_set_error("cannot open %s: %s", path, strerror(errno ? errno : ENOENT));
    return NULL;
  }
  fclose(probe);
  gzFile gz = gzopen(path, "rb");
  if (!gz) {
    bprt_set_error("cannot open %s: %s", path, errno ? strerror(errno) : "out of memory");
    return NULL;
  }
  gzbuffer(gz, 1 << 16);
  size_t cap = 1 << 16, n = 0;
  unsigned char *buf = bprt_realloc(NULL, cap + 1);
  if (!buf) {
    gzclose(gz);
    bprt_prefix_error("%s", path);
    return NULL;
  }
  for (;;) {
    if (n == cap) {   /* full: double */
      unsigned char *nb = cap > SIZE_MAX / 4 ? NULL : bprt_realloc(buf, cap * 2 + 1);
      if (!nb) {
        bprt_free(buf);
        gzclose(gz);
        bprt_prefix_error("%s", path);
        return NULL;
      }
      buf = nb;
      cap *= 2;
    }
    int r = gzread(gz, buf + n, (unsigned)(cap - n < (1u << 30) ? cap - n : (1u << 30)));
    if (r <= 0) break;
    n += (size_t)r;
  }
  int errnum = Z_OK;
  const char *msg = gzerror(gz, &errnum);
  if (errnum != Z_OK && errnum != Z_STREAM_END) {
    if (errnum == Z_ERRNO)
      bprt_set_error("%s: read error: %s", path, strerror(errno));
    else {
      /* zlib's message starts with the path; say it once. */
      size_t pl = strlen(path);
      if (strncmp(msg, path, pl) == 0 && msg[pl] == ':' && msg[pl + 1] == ' ') msg += pl + 2;
      bprt_set_error("%s: gzip data is truncated or corrupt after %zu decompressed bytes (zlib: %s)", path, n,
                     msg);
    }
    bprt_free(buf);
    gzclose(gz);
    return NULL;
  }
  gzclose(gz);
  buf[n] = 0;
  *len = n;
  return buf;
}

int64_t data_first_nonfinite(const float *x, int64_t n) {
  for (int64_t i = 0; i < n; i++)
    if (!isfinite(x[i])) return i;
  return -1;
}

int data_opt_next(const char **s, const char *what, char *key, size_t keylen, char *val, size_t vallen) {
  const char *p = *s;
  if (!p || !*p) return 0;
  const char *comma = strchr(p, ',');
  size_t n = comma ? (size_t)(comma - p) : strlen(p);
  const char *eq = memchr(p, '=', n);
  if (!eq || eq == p)
    return bprt_set_error("%s: option '%.*s' is not of the form key=value", what, (int)n, p);
  size_t kn = (size_t)(eq - p), vn = n - kn - 1;
  if (kn >= keylen || vn >= vallen) return bprt_set_error("%s: option '%.*s' is too long", what, (int)n, p);
  memcpy(key, p, kn);
  key[kn] = 0;
  memcpy(val, eq + 1, vn);
  val[vn] = 0;
  *s = comma ? comma + 1 : p + n;
  return 1;
}

int data_opt_int(const char *what, const char *key, const char *val, int64_t lo, int64_t hi, int64_t *out) {
  char *end;
  errno = 0;
  long long v = strtoll(val, &end, 10);
  if (!*val || *end || errno || v < lo || v > hi)
    return bprt_set_error("%s: %s=%s is not an integer in %lld..%lld", what, key, val, (long long)lo,
                          (long long)hi);
  *out = v;
  return 0;
}

int data_opt_double(const char *what, const char *key, const char *val, double lo, double hi, double *out) {
  char *end;
  errno = 0;
  double v = strtod(val, &end);
  if (!*val || *end || errno || !(v >= lo && v <= hi))
    return bprt_set_error("%s: %s=%s is not a number in %g..%g", what, key, val, lo, hi);
  *out = v;
  return 0;
}
