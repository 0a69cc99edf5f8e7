/* runtime/data_file.c — reading data files, gzip'd or not, and small helpers.
 *
 * zlib's gzread decompresses gzip files and passes any other file through unchanged,
 * so every loader accepts `train-images-idx3-ubyte.gz` and the raw file alike. What a
 * file may cost is bounded before it is read (data_internal.h): only regular files,
 * a raw file's content is its size on disk, and a gzip file inflates to at most
 * DATA_GZ_RATIO times its size (DATA_GZ_FLOOR at least) — deflate itself allows 1032
 * times, so a 1 MB "gzip bomb" could otherwise cost a gigabyte and seconds. A loader
 * with a header reads exactly what the header claims and stops there. A truncated or
 * corrupt gzip stream is an error naming the file and how many bytes were decompressed
 * before it broke. */
#include "runtime/data_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

int data_open(DataFile *f, const char *path) {
  memset(f, 0, sizeof *f);
  f->path = path;
  int fd = bprt_open_regular(path, &f->size);
  if (fd < 0) return -1;
  unsigned char magic[2];
  f->gzip = pread(fd, magic, 2, 0) == 2 && magic[0] == 0x1f && magic[1] == 0x8b;
  f->limit = f->size;
  if (f->gzip) {
    f->limit = f->size > (UINT64_MAX - DATA_GZ_FLOOR) / DATA_GZ_RATIO ? UINT64_MAX : f->size * DATA_GZ_RATIO;
    if (f->limit < DATA_GZ_FLOOR) f->limit = DATA_GZ_FLOOR;
  }
  gzFile gz = gzdopen(fd, "rb");   /* owns fd from here */
  if (!gz) {
    close(fd);
    return bprt_set_error("cannot open %s: out of memory", path);
  }
  gzbuffer(gz, 1 << 16);
  f->gz = gz;
  return 0;
}

void data_close(DataFile *f) {
  if (f->gz) gzclose((gzFile)f->gz);
  f->gz = NULL;
}

/* The error of a failed gzread. */
static int read_error(DataFile *f) {
  int errnum = Z_OK;
  const char *msg = gzerror((gzFile)f->gz, &errnum);
  if (errnum == Z_ERRNO) return bprt_set_error("%s: read error: %s", f->path, strerror(errno));
  /* zlib's message starts with "<fd:N>: " (gzdopen): the path is said already */
  const char *colon = strncmp(msg, "<fd:", 4) == 0 ? strstr(msg, ">: ") : NULL;
  if (colon) msg = colon + 3;
  return bprt_set_error("%s: gzip data is truncated or corrupt after %" PRIu64 " decompressed bytes (zlib: %s)",
                        f->path, f->pos, msg);
}

int data_read(DataFile *f, void *buf, size_t n, size_t *got) {
  *got = 0;
  while (*got < n) {
    size_t want = n - *got < (1u << 30) ? n - *got : (1u << 30);
    int r = gzread((gzFile)f->gz, (unsigned char *)buf + *got, (unsigned)want);
    if (r < 0) return read_error(f);
    if (r == 0) {   /* the end, or an error that gzread reports as 0 (a cut stream) */
      int errnum = Z_OK;
      gzerror((gzFile)f->gz, &errnum);
      if (errnum != Z_OK && errnum != Z_STREAM_END) return read_error(f);
      break;
    }
    *got += (size_t)r;
    f->pos += (uint64_t)r;
  }
  return 0;
}

int data_at_end(DataFile *f) {
  unsigned char b;
  size_t got;
  if (data_read(f, &b, 1, &got) != 0) return -1;
  return got == 0;
}

/* "256 MiB" */
static const char *size_str(uint64_t n, char *buf, size_t len) {
  if (n >= (UINT64_C(1) << 30) && n % (UINT64_C(1) << 30) == 0) snprintf(buf, len, "%" PRIu64 " GiB", n >> 30);
  else if (n >= (UINT64_C(1) << 20) && n % (UINT64_C(1) << 20) == 0) snprintf(buf, len, "%" PRIu64 " MiB", n >> 20);
  else snprintf(buf, len, "%" PRIu64 " bytes", n);
  return buf;
}

/* "PATH: WHAT, more than ... may inflate to (...): refusing a likely gzip bomb; ..." */
static int gzip_bound_error(const DataFile *f, const char *what) {
  char floor[48];
  return bprt_set_error("%s: %s, more than a gzip file of %" PRIu64 " bytes may inflate to here (%d times its size, "
                        "at least %s): refusing a likely gzip bomb; if the file is genuine, decompress it (gunzip) "
                        "and load the raw file",
                        f->path, what, f->size, DATA_GZ_RATIO, size_str(DATA_GZ_FLOOR, floor, sizeof floor));
}

int data_check_claim(const DataFile *f, uint64_t total, const char *what) {
  if (!f->gzip || total <= f->limit) return 0;
  char buf[160];
  snprintf(buf, sizeof buf, "the %s says the content is %" PRIu64 " bytes", what, total);
  return gzip_bound_error(f, buf);
}

int data_read_body(DataFile *f, const void *head, size_t hlen, uint64_t total, unsigned char **out,
                   uint64_t *len, const char *what) {
  *out = NULL;
  if (!f->gzip) {   /* the size is known: nothing to read unless it matches */
    *len = f->size;
    if (f->size != total) return 0;
  } else if (data_check_claim(f, total, what) != 0) {
    return -1;
  }
  if (total > SIZE_MAX - 1) return bprt_set_error("%s: %" PRIu64 " bytes do not fit in memory", f->path, total);
  unsigned char *buf = bprt_malloc((size_t)total + 1);
  if (!buf) return bprt_prefix_error("%s", f->path);
  memcpy(buf, head, hlen);
  size_t got;
  if (data_read(f, buf + hlen, (size_t)total - hlen, &got) != 0) {
    bprt_free(buf);
    return -1;
  }
  int end = got == (size_t)total - hlen ? data_at_end(f) : 1;
  if (end < 0) {
    bprt_free(buf);
    return -1;
  }
  if (got != (size_t)total - hlen || !end) {   /* shorter, or longer (stopped at one more byte) */
    *len = end ? hlen + got : total + 1;
    bprt_free(buf);
    return 0;
  }
  buf[total] = 0;
  *out = buf;
  *len = total;
  return 0;
}

unsigned char *data_read_file(const char *path, size_t *len) {
  DataFile f;
  if (data_open(&f, path) != 0) return NULL;
  /* A raw file is read in one piece of its size; a gzip stream in doubling pieces up
   * to its bound, and a stream that goes on past the bound is an error. */
  uint64_t cap = f.gzip ? (f.limit < (1u << 16) ? f.limit : (1u << 16)) : f.size;
  unsigned char *buf = NULL;
  size_t n = 0;
  for (;;) {
    if (cap > SIZE_MAX - 1) {
      bprt_set_error("%s: %" PRIu64 " bytes do not fit in memory", path, cap);
      goto fail;
    }
    unsigned char *nb = bprt_realloc(buf, (size_t)cap + 1);
    if (!nb) {
      bprt_prefix_error("%s", path);
      goto fail;
    }
    buf = nb;
    size_t got;
    if (data_read(&f, buf + n, (size_t)cap - n, &got) != 0) goto fail;
    n += got;
    if (n < cap) break;   /* the end */
    if (!f.gzip || cap == f.limit) {
      int end = data_at_end(&f);
      if (end < 0) goto fail;
      if (!end && f.gzip) {
        char what[96];
        snprintf(what, sizeof what, "the decompressed data goes on past %" PRIu64 " bytes", f.limit);
        gzip_bound_error(&f, what);
        goto fail;
      }
      break;   /* (a raw file that grew while it was read: what it had) */
    }
    cap = cap > f.limit / 2 ? f.limit : cap * 2;
  }
  data_close(&f);
  buf[n] = 0;
  *len = n;
  return buf;
fail:
  bprt_free(buf);
  data_close(&f);
  return NULL;
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
