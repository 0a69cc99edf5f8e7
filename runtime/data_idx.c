/* runtime/data_idx.c — IDX files (LeCun's MNIST format) and the MNIST directory.
 *
 * An IDX file: two zero bytes, a type byte (0x08 u8, 0x09 i8, 0x0B i16, 0x0C i32,
 * 0x0D f32, 0x0E f64), a dimension count d, then d big-endian u32 sizes, then the
 * items, big-endian, row-major. The first dimension counts records (images, labels).
 * Every size is checked against the file before anything is read, so a truncated or
 * lying file is an error with the byte offset and the record it breaks in, and no
 * file costs more than its header claims (data_internal.h). */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "runtime/data_internal.h"

typedef struct {
  const char *path;
  const unsigned char *data;   /* the whole (decompressed) file */
  size_t len;
  int type;                    /* the type byte */
  int size;                    /* bytes per item */
  int ndims;
  int64_t dims[BPRT_MAX_RANK];
  int64_t per_record;          /* items per record: product of dims[1..] */
  size_t header;               /* bytes before the data */
} Idx;

static uint32_t be32(const unsigned char *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int type_size(int type) {
  switch (type) {
  case 0x08: case 0x09: return 1;
  case 0x0B: return 2;
  case 0x0C: case 0x0D: return 4;
  case 0x0E: return 8;
  default: return 0;
  }
}

static const char *type_name(int type) {
  switch (type) {
  case 0x08: return "u8";
  case 0x09: return "i8";
  case 0x0B: return "i16";
  case 0x0C: return "i32";
  case 0x0D: return "f32";
  default: return "f64";
  }
}

/* Item k of the data as a double. */
static double item(const Idx *x, int64_t k) {
  const unsigned char *p = x->data + x->header + (size_t)k * (size_t)x->size;
  switch (x->type) {
  case 0x08: return p[0];
  case 0x09: return (int8_t)p[0];
  case 0x0B: return (int16_t)(uint16_t)(p[0] << 8 | p[1]);
  case 0x0C: return (int32_t)be32(p);
  case 0x0D: {
    uint32_t u = be32(p);
    float f;
    memcpy(&f, &u, 4);
    return f;
  }
  default: {
    uint64_t u = (uint64_t)be32(p) << 32 | be32(p + 4);
    double d;
    memcpy(&d, &u, 8);
    return d;
  }
  }
}

/* The content length found (len) against the header's claim: the messages for a
 * file that is shorter or longer than the header says. */
static int idx_size_error(const Idx *x, const DataFile *f, uint64_t need, uint64_t len, const char *what) {
  uint64_t record_bytes = (uint64_t)x->per_record * (uint64_t)x->size, have = len - x->header;
  if (have < need)
    return bprt_set_error("%s: truncated: the header says %" PRId64 " %s records of %" PRIu64 " bytes (%" PRIu64
                          " bytes from byte %zu), but the file ends at byte %" PRIu64 ", in record %" PRIu64,
                          x->path, x->dims[0], what, record_bytes, need, x->header, len, have / record_bytes);
  if (f->gzip)   /* the stream stopped one byte past the claim: how much more is unknown */
    return bprt_set_error("%s: unexpected bytes after the last of %" PRId64 " records (from byte %" PRIu64
                          " of the decompressed data): the header's count disagrees with the file", x->path,
                          x->dims[0], (uint64_t)x->header + need);
  return bprt_set_error("%s: %" PRIu64 " unexpected bytes after the last of %" PRId64
                        " records (from byte %" PRIu64 "): the header's count disagrees with the file size",
                        x->path, have - need, x->dims[0], (uint64_t)x->header + need);
}

/* Read an IDX file: the header, checked, then exactly the bytes it claims (none when a
 * raw file's size disagrees; a gzip stream stops one byte past the claim). x->data is
 * the whole content, freed by the caller; `what` is "image" or "label" for messages. */
static int idx_read(Idx *x, const char *path, const char *what) {
  memset(x, 0, sizeof *x);
  x->path = path;
  DataFile f;
  if (data_open(&f, path) != 0) return -1;
  int rc = -1;
  unsigned char head[4 + 4 * BPRT_MAX_RANK];
  size_t got;
  if (data_read(&f, head, 4, &got) != 0) goto done;
  if (got < 4) {
    bprt_set_error("%s: truncated: %zu bytes, but an IDX header needs at least 4", path, got);
    goto done;
  }
  uint32_t magic = be32(head);
  x->type = head[2];
  x->ndims = head[3];
  x->size = type_size(x->type);
  if (head[0] != 0 || head[1] != 0 || x->size == 0 || x->ndims == 0) {
    bprt_set_error("%s: wrong magic 0x%08" PRIx32 " at byte 0: not an IDX file "
                   "(expected 0x00000803 for images or 0x00000801 for labels)",
                   path, magic);
    goto done;
  }
  if (x->ndims > BPRT_MAX_RANK) {
    bprt_set_error("%s: magic 0x%08" PRIx32 " says %d dimensions; at most %d are supported", path, magic, x->ndims,
                   BPRT_MAX_RANK);
    goto done;
  }
  x->header = 4 + 4 * (size_t)x->ndims;
  if (data_read(&f, head + 4, x->header - 4, &got) != 0) goto done;
  if (got < x->header - 4) {
    bprt_set_error("%s: truncated in the header: %zu bytes, but %d dimensions need %zu", path, 4 + got, x->ndims,
                   x->header);
    goto done;
  }
  x->per_record = 1;
  for (int i = 0; i < x->ndims; i++) {
    x->dims[i] = be32(head + 4 + 4 * i);
    if (i > 0) {
      if (x->dims[i] == 0) {
        bprt_set_error("%s: dimension %d at byte %d is 0", path, i, 4 + 4 * i);
        goto done;
      }
      if (x->per_record > (INT64_C(1) << 40) / x->dims[i]) {
        bprt_set_error("%s: record size is absurd (dimension %d at byte %d)", path, i, 4 + 4 * i);
        goto done;
      }
      x->per_record *= x->dims[i];
    }
  }
  /* dims[0] < 2^32 and a record < 2^43 bytes: the claim may pass 2^64, so saturate */
  uint64_t record_bytes = (uint64_t)x->per_record * (uint64_t)x->size;
  uint64_t need = (uint64_t)x->dims[0] > (UINT64_MAX - x->header) / record_bytes
                      ? UINT64_MAX - x->header
                      : (uint64_t)x->dims[0] * record_bytes;
  unsigned char *buf;
  uint64_t len;
  if (data_read_body(&f, head, x->header, x->header + need, &buf, &len, "IDX header") != 0) goto done;
  if (!buf) {
    idx_size_error(x, &f, need, len, what);
    goto done;
  }
  x->data = buf;
  x->len = (size_t)len;
  rc = 0;
done:
  data_close(&f);
  return rc;
}

/* Features of every record into d->x; u8 is scaled to [0, 1]. */
static int idx_features(const Idx *x, BprtDataset *d) {
  double scale = x->type == 0x08 ? 1.0 / 255.0 : 1.0;
  int64_t total = x->dims[0] * x->per_record;
  if (x->type == 0x08) {
    const unsigned char *p = x->data + x->header;
    for (int64_t k = 0; k < total; k++) d->x[k] = (float)(p[k] * scale);
    return 0;
  }
  for (int64_t k = 0; k < total; k++) {
    double v = item(x, k);
    float f = (float)v;
    if (!isfinite(f))
      return bprt_set_error("%s: %s in record %" PRId64 " (item %" PRId64 ", byte %zu)", x->path,
                            isnan(v) ? "NaN" : "infinite value", k / x->per_record, k % x->per_record,
                            x->header + (size_t)k * (size_t)x->size);
    d->x[k] = f;
  }
  return 0;
}

/* Labels: a 1-dimensional integer IDX file; each in 0..maxlabel (maxlabel < 0: any
 * non-negative int32). Sets d->nclasses to max + 1 (or maxlabel + 1 when given). */
static int idx_labels(const Idx *x, BprtDataset *d, int64_t maxlabel) {
  if (x->ndims != 1)
    return bprt_set_error("%s: labels must be 1-dimensional, but the magic says %d dimensions", x->path,
                          x->ndims);
  if (x->type == 0x0D || x->type == 0x0E)
    return bprt_set_error("%s: labels must be integers, but the type byte says %s", x->path,
                          type_name(x->type));
  int64_t top = -1;
  for (int64_t k = 0; k < x->dims[0]; k++) {
    double v = item(x, k);
    size_t at = x->header + (size_t)k * (size_t)x->size;
    if (v < 0 && maxlabel < 0)
      return bprt_set_error("%s: label %.0f at record %" PRId64 " (byte %zu) is negative", x->path, v, k, at);
    if (maxlabel < 0 && v >= 1e6)
      return bprt_set_error("%s: label %.0f at record %" PRId64 " (byte %zu) is out of range (at most 1000000 classes)",
                            x->path, v, k, at);
    if (v < 0 || (maxlabel >= 0 && v > (double)maxlabel))
      return bprt_set_error("%s: label %.0f at record %" PRId64 " (byte %zu) is out of range 0..%" PRId64, x->path,
                            v, k, at, maxlabel);
    d->labels[k] = (int32_t)v;
    if (v > (double)top) top = (int64_t)v;
  }
  d->nclasses = (int32_t)(maxlabel >= 0 ? maxlabel + 1 : top + 1);
  return 0;
}

/* Images + labels -> dataset. maxlabel as in idx_labels. labels NULL: the images alone
 * (idx:IMAGES, for `bpcc predict`). */
static BprtDataset *load_pair(const char *images, const char *labels, int64_t maxlabel, const char *source) {
  BprtDataset *d = NULL;
  Idx xi, xl;
  memset(&xl, 0, sizeof xl);
  if (idx_read(&xi, images, "image") != 0) return NULL;
  if (labels && idx_read(&xl, labels, "label") != 0) goto done;
  if (!labels && xi.dims[0] == 0) {
    bprt_set_error("%s: the header says 0 records", images);
    goto done;
  }
  if (labels && xl.ndims == 1 && xi.dims[0] != xl.dims[0]) {
    bprt_set_error("counts disagree: %s has %" PRId64 " records but %s has %" PRId64, images, xi.dims[0], labels,
                   xl.dims[0]);
    goto done;
  }
  d = bprt_dataset_new(xi.dims[0], xi.per_record, labels ? 0 : BPRT_NO_TARGETS, source);
  if (!d) goto done;
  d->frank = xi.ndims > 1 ? xi.ndims - 1 : 1;
  for (int i = 1; i < xi.ndims; i++) d->fdims[i - 1] = xi.dims[i];
  if (xi.ndims == 1) d->fdims[0] = 1;
  if ((labels && idx_labels(&xl, d, maxlabel) != 0) || idx_features(&xi, d) != 0) {
    bprt_dataset_free(d);
    d = NULL;
  }
done:
  bprt_free((void *)xi.data);
  bprt_free((void *)xl.data);
  return d;
}

BprtDataset *bprt_load_idx(const char *images, const char *labels) {
  char source[512];
  if (labels) snprintf(source, sizeof source, "idx:%s,%s", images, labels);
  else snprintf(source, sizeof source, "idx:%s", images);
  return load_pair(images, labels, -1, source);
}

/* DIR/NAME if it exists, else DIR/NAME.gz; an error naming both if neither does.
 * (stat, not open: opening a FIFO would block; idx_read says what is not a file.) */
static int mnist_path(const char *dir, const char *name, char *out, size_t n) {
  struct stat st;
  snprintf(out, n, "%s/%s", dir, name);
  if (stat(out, &st) == 0) return 0;
  snprintf(out, n, "%s/%s.gz", dir, name);
  if (stat(out, &st) == 0) return 0;
  return bprt_set_error("mnist:%s: cannot open %s/%s or %s/%s.gz: no such file", dir, dir, name, dir, name);
}

int bprt_load_mnist(const char *dir, BprtDataset **train, BprtDataset **test) {
  static const char *const names[4] = {"train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                                       "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"};
  char paths[4][4096];
  *train = NULL;
  if (test) *test = NULL;
  for (int i = 0; i < (test ? 4 : 2); i++)
    if (mnist_path(dir, names[i], paths[i], sizeof paths[i]) != 0) return -1;
  char source[4200];
  snprintf(source, sizeof source, "mnist:%s (train)", dir);
  BprtDataset *tr = load_pair(paths[0], paths[1], 9, source);
  if (!tr) return -1;
  if (tr->nfeat != 784) {
    bprt_set_error("%s: MNIST images are 28x28, but this file has %" PRId64 " pixels per image", paths[0],
                   tr->nfeat);
    bprt_dataset_free(tr);
    return -1;
  }
  if (test) {
    snprintf(source, sizeof source, "mnist:%s (t10k)", dir);
    BprtDataset *te = load_pair(paths[2], paths[3], 9, source);
    if (!te) {
      bprt_dataset_free(tr);
      return -1;
    }
    if (te->nfeat != 784) {
      bprt_set_error("%s: MNIST images are 28x28, but this file has %" PRId64 " pixels per image", paths[2],
                     te->nfeat);
      bprt_dataset_free(tr);
      bprt_dataset_free(te);
      return -1;
    }
    *test = te;
  }
  *train = tr;
  return 0;
}
