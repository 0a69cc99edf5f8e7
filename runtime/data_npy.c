/* runtime/data_npy.c — NumPy .npy arrays (format versions 1, 2 and 3).
 *
 * Layout: "\x93NUMPY", major, minor, a little-endian header length (u16 in v1, u32 in
 * v2/v3), then a Python dict literal such as
 *     {'descr': '<f4', 'fortran_order': False, 'shape': (60000, 784), }
 * and the raw data. X may be float32, float64, uint8, int32 or int64 (either byte
 * order), in C order; its first dimension counts rows. An integer Y holds class labels
 * (1-D); a float Y holds regression targets (1-D: one per row; 2-D: a row each). Without
 * Y (npy:X.npy) the dataset has the features alone, for `bpcc predict`. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "runtime/data_internal.h"

#define NPY_HEADER_MAX 65536   /* numpy writes v1 headers (< 64 KiB) unless a shape needs more */

typedef struct {
  const char *path;
  const unsigned char *data;
  size_t len;
  size_t offset;              /* first data byte */
  char kind;                  /* 'f', 'i', 'u' */
  int size;                   /* bytes per item */
  bool swap;                  /* big-endian data */
  int ndims;
  int64_t dims[BPRT_MAX_RANK];
  int64_t count;              /* total items */
  char descr[16];
} Npy;

/* ---- the header dict: {'key': value, ...}; values are strings, True/False, tuples ---- */

typedef struct {
  const char *s, *end;
} Lex;

static void lex_ws(Lex *l) {
  while (l->s < l->end && (*l->s == ' ' || *l->s == '\t' || *l->s == '\n' || *l->s == '\r')) l->s++;
}

static bool lex_char(Lex *l, char c) {
  lex_ws(l);
  if (l->s < l->end && *l->s == c) {
    l->s++;
    return true;
  }
  return false;
}

/* 'text' or "text" into buf. */
static bool lex_string(Lex *l, char *buf, size_t n) {
  lex_ws(l);
  if (l->s >= l->end || (*l->s != '\'' && *l->s != '"')) return false;
  char q = *l->s++;
  size_t k = 0;
  while (l->s < l->end && *l->s != q) {
    if (k + 1 >= n) return false;
    buf[k++] = *l->s++;
  }
  if (l->s >= l->end) return false;
  l->s++;
  buf[k] = 0;
  return true;
}

static int npy_header(Npy *a, const char *h, size_t hlen) {
  Lex l = {h, h + hlen};
  bool have_descr = false, have_order = false, have_shape = false, fortran = false;
  if (!lex_char(&l, '{')) return bprt_set_error("%s: the header is not a Python dict", a->path);
  while (!lex_char(&l, '}')) {
    char key[32];
    if (!lex_string(&l, key, sizeof key) || !lex_char(&l, ':'))
      return bprt_set_error("%s: malformed header dict near byte %zu", a->path,
                            (size_t)(l.s - (const char *)a->data));
    if (strcmp(key, "descr") == 0) {
      if (!lex_string(&l, a->descr, sizeof a->descr))
        return bprt_set_error("%s: 'descr' is not a simple dtype string (structured arrays are not supported)",
                              a->path);
      have_descr = true;
    } else if (strcmp(key, "fortran_order") == 0) {
      lex_ws(&l);
      if ((size_t)(l.end - l.s) >= 4 && memcmp(l.s, "True", 4) == 0) fortran = true, l.s += 4;
      else if ((size_t)(l.end - l.s) >= 5 && memcmp(l.s, "False", 5) == 0) l.s += 5;
      else return bprt_set_error("%s: 'fortran_order' is not True or False", a->path);
      have_order = true;
    } else if (strcmp(key, "shape") == 0) {
      if (!lex_char(&l, '(')) return bprt_set_error("%s: 'shape' is not a tuple", a->path);
      a->ndims = 0;
      while (!lex_char(&l, ')')) {
        lex_ws(&l);
        int64_t v = 0;
        const char *start = l.s;
        while (l.s < l.end && *l.s >= '0' && *l.s <= '9') {
          if (v > (INT64_C(1) << 50)) return bprt_set_error("%s: a dimension of 'shape' is absurd", a->path);
          v = v * 10 + (*l.s++ - '0');
        }
        if (l.s == start) return bprt_set_error("%s: 'shape' holds something other than integers", a->path);
        if (l.s < l.end && *l.s == 'L') l.s++;   /* Python 2 longs */
        if (a->ndims == BPRT_MAX_RANK)
          return bprt_set_error("%s: more than %d dimensions", a->path, BPRT_MAX_RANK);
        a->dims[a->ndims++] = v;
        if (!lex_char(&l, ',')) {
          if (!lex_char(&l, ')')) return bprt_set_error("%s: 'shape' is not a tuple of integers", a->path);
          break;
        }
      }
      have_shape = true;
    } else {
      return bprt_set_error("%s: unexpected key '%s' in the header", a->path, key);
    }
    if (!lex_char(&l, ',')) {
      if (!lex_char(&l, '}')) return bprt_set_error("%s: malformed header dict (expected ',' or '}')", a->path);
      break;
    }
  }
  if (!have_descr || !have_order || !have_shape)
    return bprt_set_error("%s: the header lacks '%s'", a->path,
                          !have_descr ? "descr" : !have_order ? "fortran_order" : "shape");
  if (fortran)
    return bprt_set_error("%s: the array is in Fortran order; save it in C order "
                          "(numpy.save(path, numpy.ascontiguousarray(a)))", a->path);
  return 0;
}

/* The content length found (len) against what shape and dtype need. */
static int npy_size_error(const Npy *a, const DataFile *f, uint64_t need, uint64_t len) {
  uint64_t have = len - a->offset;
  if (have < need) {
    uint64_t per_row = a->dims[0] ? need / (uint64_t)a->dims[0] : 1;
    return bprt_set_error("%s: truncated: shape and dtype '%s' need %" PRIu64 " data bytes from byte %zu, but "
                          "the file ends at byte %" PRIu64 ", in row %" PRIu64, a->path, a->descr, need, a->offset,
                          len, per_row ? have / per_row : 0);
  }
  if (f->gzip)   /* the stream stopped one byte past the claim */
    return bprt_set_error("%s: unexpected bytes after the data (from byte %" PRIu64 " of the decompressed data): "
                          "the shape disagrees with the file", a->path, (uint64_t)a->offset + need);
  return bprt_set_error("%s: %" PRIu64 " unexpected bytes after the data (from byte %" PRIu64
                        "): the shape disagrees with the file size", a->path, have - need,
                        (uint64_t)a->offset + need);
}

/* Read and check a .npy file: the header, then exactly the data it claims. a->data is
 * the whole content, freed by the caller. */
static int npy_read(Npy *a, const char *path) {
  memset(a, 0, sizeof *a);
  a->path = path;
  DataFile f;
  if (data_open(&f, path) != 0) return -1;
  int rc = -1;
  unsigned char pre[12], *head = NULL;
  size_t got;
  if (data_read(&f, pre, 10, &got) != 0) goto done;
  if (got < 10 || memcmp(pre, "\x93NUMPY", 6) != 0) {
    bprt_set_error("%s: wrong magic at byte 0: not a .npy file (expected \\x93NUMPY)", path);
    goto done;
  }
  int major = pre[6];
  size_t hlen, hstart;
  if (major == 1) {
    hlen = (size_t)pre[8] | (size_t)pre[9] << 8;
    hstart = 10;
  } else if (major == 2 || major == 3) {
    if (data_read(&f, pre + 10, 2, &got) != 0) goto done;
    if (got < 2) {
      bprt_set_error("%s: truncated in the header (%zu bytes)", path, 10 + got);
      goto done;
    }
    hlen = (size_t)pre[8] | (size_t)pre[9] << 8 | (size_t)pre[10] << 16 | (size_t)pre[11] << 24;
    hstart = 12;
  } else {
    bprt_set_error("%s: unsupported .npy format version %d.%d", path, major, pre[7]);
    goto done;
  }
  if (!f.gzip && hlen > f.size - hstart) {
    bprt_set_error("%s: truncated: the header of %zu bytes from byte %zu runs past the end of the file "
                   "(%" PRIu64 " bytes)", path, hlen, hstart, f.size);
    goto done;
  }
  if (hlen > NPY_HEADER_MAX) {   /* numpy itself refuses headers over 10000 bytes */
    bprt_set_error("%s: the header of %zu bytes from byte %zu is absurd (the limit is %d)", path, hlen, hstart,
                   NPY_HEADER_MAX);
    goto done;
  }
  head = bprt_malloc(hstart + hlen);
  if (!head) {
    bprt_prefix_error("%s", path);
    goto done;
  }
  memcpy(head, pre, hstart);
  if (data_read(&f, head + hstart, hlen, &got) != 0) goto done;
  if (got < hlen) {
    bprt_set_error("%s: truncated: the header of %zu bytes from byte %zu runs past the end of the file "
                   "(%zu bytes)", path, hlen, hstart, hstart + got);
    goto done;
  }
  a->data = head;
  if (npy_header(a, (const char *)head + hstart, hlen) != 0) goto done;
  a->offset = hstart + hlen;
  const char *d = a->descr;
  char order = d[0];
  if ((order == '<' || order == '>' || order == '|' || order == '=') && d[1] && d[2] && !d[3]) {
    a->kind = d[1];
    a->size = d[2] - '0';
    a->swap = order == '>';
  }
  bool ok = (a->kind == 'f' && (a->size == 4 || a->size == 8)) || (a->kind == 'u' && a->size == 1) ||
            (a->kind == 'i' && (a->size == 4 || a->size == 8));
  if (!ok) {
    bprt_set_error("%s: dtype '%s' is not supported (float32, float64, uint8, int32 and int64 are)", path,
                   a->descr);
    goto done;
  }
  if (a->ndims == 0) {
    bprt_set_error("%s: the array is a scalar; expected one row per sample", path);
    goto done;
  }
  a->count = 1;
  for (int i = 0; i < a->ndims; i++) {
    if (a->dims[i] && a->count > (INT64_C(1) << 40) / a->dims[i]) {
      bprt_set_error("%s: shape is absurdly large", path);
      goto done;
    }
    a->count *= a->dims[i];
  }
  uint64_t need = (uint64_t)a->count * (uint64_t)a->size, len;   /* < 2^43 */
  unsigned char *buf;
  if (data_read_body(&f, head, a->offset, a->offset + need, &buf, &len, ".npy header") != 0) goto done;
  a->data = buf;
  if (!buf) {
    npy_size_error(a, &f, need, len);
    goto done;
  }
  a->len = (size_t)len;
  rc = 0;
done:
  if (rc != 0) a->data = NULL;
  bprt_free(head);
  data_close(&f);
  return rc;
}

/* Item k as a double. */
static double npy_item(const Npy *a, int64_t k) {
  unsigned char b[8];
  const unsigned char *p = a->data + a->offset + (size_t)k * (size_t)a->size;
  for (int i = 0; i < a->size; i++) b[i] = a->swap ? p[a->size - 1 - i] : p[i];
  if (a->kind == 'u') return b[0];
  if (a->kind == 'f' && a->size == 4) {
    float f;
    memcpy(&f, b, 4);
    return f;
  }
  if (a->kind == 'f') {
    double f;
    memcpy(&f, b, 8);
    return f;
  }
  if (a->size == 4) {
    int32_t v;
    memcpy(&v, b, 4);
    return v;
  }
  int64_t v;
  memcpy(&v, b, 8);
  return (double)v;
}

/* count items into out as floats; row width for positions. */
static int npy_floats(const Npy *a, float *out, int64_t width) {
  for (int64_t k = 0; k < a->count; k++) {
    double v = npy_item(a, k);
    float f = (float)v;
    if (!isfinite(f))
      return bprt_set_error("%s: %s at row %" PRId64 ", column %" PRId64 " (byte %zu)", a->path,
                            isnan(v) ? "NaN" : "infinite or out-of-float32-range value", k / width, k % width,
                            a->offset + (size_t)k * (size_t)a->size);
    out[k] = f;
  }
  return 0;
}

BprtDataset *bprt_load_npy(const char *xpath, const char *ypath) {
  BprtDataset *d = NULL;
  Npy x, y;
  memset(&y, 0, sizeof y);
  if (npy_read(&x, xpath) != 0) return NULL;
  if (ypath && npy_read(&y, ypath) != 0) goto done;
  if (!ypath) {   /* the features alone */
    int64_t nfeat = x.dims[0] ? x.count / x.dims[0] : 0;
    if (x.dims[0] == 0 || nfeat == 0) {
      bprt_set_error("%s: the array has no %s", xpath, x.dims[0] == 0 ? "rows" : "features (rows are empty)");
      goto done;
    }
    char source[4200];
    snprintf(source, sizeof source, "npy:%s", xpath);
    d = bprt_dataset_new(x.dims[0], nfeat, BPRT_NO_TARGETS, source);
    if (!d) goto done;
    d->frank = x.ndims > 1 ? x.ndims - 1 : 1;
    for (int i = 1; i < x.ndims; i++) d->fdims[i - 1] = x.dims[i];
    if (x.ndims == 1) d->fdims[0] = 1;
    if (npy_floats(&x, d->x, nfeat) != 0) goto fail;
    goto done;
  }
  if (x.dims[0] != y.dims[0]) {
    bprt_set_error("counts disagree: %s has %" PRId64 " rows but %s has %" PRId64, xpath, x.dims[0], ypath,
                   y.dims[0]);
    goto done;
  }
  if (x.dims[0] == 0) {
    bprt_set_error("%s: the array has no rows", xpath);
    goto done;
  }
  bool labels = y.kind != 'f';
  if (labels && y.ndims != 1) {
    bprt_set_error("%s: integer Y must be 1-D class labels, but its shape has %d dimensions", ypath, y.ndims);
    goto done;
  }
  if (!labels && y.ndims > 2) {
    bprt_set_error("%s: float Y must be 1-D or 2-D targets, but its shape has %d dimensions", ypath, y.ndims);
    goto done;
  }
  int64_t nfeat = x.dims[0] ? x.count / x.dims[0] : 0;
  int64_t twidth = labels ? 0 : (y.ndims == 2 ? y.dims[1] : 1);
  if (nfeat == 0 || (!labels && twidth == 0)) {
    bprt_set_error("%s: rows are empty", nfeat == 0 ? xpath : ypath);
    goto done;
  }
  char source[8400];
  snprintf(source, sizeof source, "npy:%s,%s", xpath, ypath);
  d = bprt_dataset_new(x.dims[0], nfeat, twidth, source);
  if (!d) goto done;
  d->frank = x.ndims > 1 ? x.ndims - 1 : 1;
  for (int i = 1; i < x.ndims; i++) d->fdims[i - 1] = x.dims[i];
  if (x.ndims == 1) d->fdims[0] = 1;
  if (npy_floats(&x, d->x, nfeat) != 0) goto fail;
  if (!labels) {
    if (npy_floats(&y, d->targets, twidth) != 0) goto fail;
    goto done;
  }
  int32_t top = -1;
  for (int64_t k = 0; k < y.count; k++) {
    double v = npy_item(&y, k);
    if (v < 0 || v >= 1e6) {
      bprt_set_error("%s: label %.0f at row %" PRId64 " (byte %zu) is out of range (0..999999)", ypath, v, k,
                     y.offset + (size_t)k * (size_t)y.size);
      goto fail;
    }
    d->labels[k] = (int32_t)v;
    if (d->labels[k] > top) top = d->labels[k];
  }
  d->nclasses = top + 1;
  goto done;
fail:
  bprt_dataset_free(d);
  d = NULL;
done:
  bprt_free((void *)x.data);
  bprt_free((void *)y.data);
  return d;
}
