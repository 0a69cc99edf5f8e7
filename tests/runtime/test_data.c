/* tests/runtime/test_data.c — every loader on small files written to a temp dir (raw
 * and gzip), each bad-data case with its exact message; generators, split, shuffle,
 * batches, shape checks, and allocation-failure sweeps. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "runtime/data.h"
#include "testutil.h"

TEMP_DIR_FIXTURE

/* The last error must be exactly the formatted message. */
static void expect_error(const char *fmt, ...) {
  char want[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(want, sizeof want, fmt, ap);
  va_end(ap);
  assert_string_equal(bprt_last_error(), want);
}

/* ------------------------------------------------------------------ IDX writers */

static size_t put_be32(unsigned char *p, uint32_t v) {
  p[0] = (unsigned char)(v >> 24), p[1] = (unsigned char)(v >> 16), p[2] = (unsigned char)(v >> 8),
  p[3] = (unsigned char)v;
  return 4;
}

/* An IDX file of type `type` with dims; payload bytes follow. Returns its size. */
static size_t make_idx(unsigned char *buf, int type, int ndims, const uint32_t *dims, const void *payload,
                       size_t plen) {
  buf[0] = 0, buf[1] = 0, buf[2] = (unsigned char)type, buf[3] = (unsigned char)ndims;
  size_t n = 4;
  for (int i = 0; i < ndims; i++) n += put_be32(buf + n, dims[i]);
  memcpy(buf + n, payload, plen);
  return n + plen;
}

static void write_gz(const char *path, const void *data, size_t n) {
  gzFile gz = gzopen(path, "wb");
  assert_non_null(gz);
  assert_int_equal(gzwrite(gz, data, (unsigned)n), (int)n);
  gzclose(gz);
}

/* 5 images of 2x3 u8 and their labels. */
static unsigned char pix[30], lab[5] = {0, 1, 2, 1, 0};

static void write_idx_pair(const char *images, const char *labels, bool gz) {
  unsigned char buf[256];
  for (int i = 0; i < 30; i++) pix[i] = (unsigned char)(i * 8);
  const uint32_t idims[3] = {5, 2, 3}, ldims[1] = {5};
  size_t n = make_idx(buf, 0x08, 3, idims, pix, 30);
  if (gz) write_gz(images, buf, n);
  else write_bytes(images, buf, n);
  n = make_idx(buf, 0x08, 1, ldims, lab, 5);
  if (gz) write_gz(labels, buf, n);
  else write_bytes(labels, buf, n);
}

static void test_idx_good(void **state) {
  (void)state;
  for (int gz = 0; gz < 2; gz++) {
    const char *im = path_in(dir, gz ? "im.gz" : "im"), *lb = path_in(dir, gz ? "lb.gz" : "lb");
    write_idx_pair(im, lb, gz);
    BprtDataset *d = bprt_load_idx(im, lb);
    assert_non_null(d);
    assert_int_equal(d->n, 5);
    assert_int_equal(d->nfeat, 6);
    assert_int_equal(d->frank, 2);
    assert_int_equal(d->fdims[0], 2);
    assert_int_equal(d->fdims[1], 3);
    assert_int_equal(d->nclasses, 3);
    assert_null(d->targets);
    for (int i = 0; i < 30; i++) assert_true(d->x[i] == (float)(pix[i] / 255.0));
    for (int i = 0; i < 5; i++) assert_int_equal(d->labels[i], lab[i]);
    bprt_dataset_free(d);
    /* The same through a SPEC. */
    char spec[8300];
    snprintf(spec, sizeof spec, "idx:%s,%s", im, lb);
    BprtDataset *tr, *va;
    assert_int_equal(bprt_data_load(spec, 0, &tr, &va), 0);
    assert_null(va);
    assert_int_equal(tr->n, 5);
    bprt_dataset_free(tr);
    unlink(im), unlink(lb);
  }
}

/* Non-u8 IDX types: i16 and f32 features are taken as they are; NaN is located. */
static void test_idx_types(void **state) {
  (void)state;
  unsigned char buf[256], payload[64];
  const char *im = path_in(dir, "f32"), *lb = path_in(dir, "lab");
  const uint32_t ldims[1] = {2};
  write_bytes(lb, buf, make_idx(buf, 0x08, 1, ldims, lab, 2));
  const uint32_t idims[2] = {2, 2};
  float vals[4] = {1.5f, -2, 3, 1e-3f};
  for (int i = 0; i < 4; i++) {
    uint32_t u;
    memcpy(&u, &vals[i], 4);
    put_be32(payload + 4 * i, u);
  }
  write_bytes(im, buf, make_idx(buf, 0x0D, 2, idims, payload, 16));
  BprtDataset *d = bprt_load_idx(im, lb);
  assert_non_null(d);
  assert_memory_equal(d->x, vals, sizeof vals);
  bprt_dataset_free(d);
  float nan = NAN;
  uint32_t u;
  memcpy(&u, &nan, 4);
  put_be32(payload + 8, u);
  write_bytes(im, buf, make_idx(buf, 0x0D, 2, idims, payload, 16));
  assert_null(bprt_load_idx(im, lb));
  expect_error("%s: NaN in record 1 (item 0, byte 20)", im);
  const unsigned char i16[8] = {0xff, 0xfe, 0, 7, 0x01, 0x00, 0, 0};
  write_bytes(im, buf, make_idx(buf, 0x0B, 2, idims, i16, 8));
  d = bprt_load_idx(im, lb);
  assert_non_null(d);
  assert_true(d->x[0] == -2.0f && d->x[1] == 7.0f && d->x[2] == 256.0f);
  bprt_dataset_free(d);
  unlink(im), unlink(lb);
}

static void test_idx_errors(void **state) {
  (void)state;
  unsigned char buf[256];
  const char *im = path_in(dir, "im"), *lb = path_in(dir, "lb");
  write_idx_pair(im, lb, false);
  const char *missing = path_in(dir, "nope");
  assert_null(bprt_load_idx(missing, lb));
  expect_error("cannot open %s: No such file or directory", missing);
  /* Wrong magic. */
  write_bytes(im, "PK\x03\x04garbage", 11);
  assert_null(bprt_load_idx(im, lb));
  expect_error("%s: wrong magic 0x504b0304 at byte 0: not an IDX file (expected 0x00000803 for images or "
               "0x00000801 for labels)", im);
  write_bytes(im, "\0\0", 2);
  assert_null(bprt_load_idx(im, lb));
  expect_error("%s: truncated: 2 bytes, but an IDX header needs at least 4", im);
  /* Truncated in the header and in the data. */
  const uint32_t idims[3] = {5, 2, 3};
  size_t n = make_idx(buf, 0x08, 3, idims, pix, 30);
  write_bytes(im, buf, 10);
  assert_null(bprt_load_idx(im, lb));
  expect_error("%s: truncated in the header: 10 bytes, but 3 dimensions need 16", im);
  write_bytes(im, buf, n - 10);
  assert_null(bprt_load_idx(im, lb));
  expect_error("%s: truncated: the header says 5 image records of 6 bytes (30 bytes from byte 16), but the file "
               "ends at byte 36, in record 3", im);
  /* Extra bytes: the count disagrees with the size. */
  unsigned char more[64];
  memcpy(more, buf, n);
  memset(more + n, 0, 6);
  write_bytes(im, more, n + 6);
  assert_null(bprt_load_idx(im, lb));
  expect_error("%s: 6 unexpected bytes after the last of 5 records (from byte 46): the header's count disagrees "
               "with the file size", im);
  /* Counts that disagree between the files. */
  const uint32_t four[3] = {4, 2, 3};
  write_bytes(im, buf, make_idx(buf, 0x08, 3, four, pix, 24));
  assert_null(bprt_load_idx(im, lb));
  expect_error("counts disagree: %s has 4 records but %s has 5", im, lb);
  /* Labels that are not labels. */
  write_idx_pair(im, lb, false);
  const uint32_t l2[2] = {5, 1};
  write_bytes(lb, buf, make_idx(buf, 0x08, 2, l2, lab, 5));
  assert_null(bprt_load_idx(im, lb));
  expect_error("%s: labels must be 1-dimensional, but the magic says 2 dimensions", lb);
  const uint32_t l1[1] = {5};
  const unsigned char neg[5] = {0, 1, 0xff, 0, 0};
  write_bytes(lb, buf, make_idx(buf, 0x09, 1, l1, neg, 5));
  assert_null(bprt_load_idx(im, lb));
  expect_error("%s: label -1 at record 2 (byte 10) is negative", lb);
  /* A truncated gzip stream. */
  write_idx_pair(im, lb, false);
  const char *gzp = path_in(dir, "cut.gz");
  unsigned char big[4016], noise[4000];   /* an IDX file, so the header reads fine */
  for (int i = 0; i < 4000; i++) noise[i] = (unsigned char)(i * 7919 % 251);
  const uint32_t bdims[3] = {5, 20, 40};
  write_gz(gzp, big, make_idx(big, 0x08, 3, bdims, noise, sizeof noise));
  FILE *f = fopen(gzp, "rb");
  unsigned char gzbytes[8000];
  size_t gzn = fread(gzbytes, 1, sizeof gzbytes, f);
  fclose(f);
  write_bytes(gzp, gzbytes, gzn / 2);
  assert_null(bprt_load_idx(gzp, lb));
  char prefix[4200];
  snprintf(prefix, sizeof prefix, "%s: gzip data is truncated or corrupt after ", gzp);
  assert_memory_equal(bprt_last_error(), prefix, strlen(prefix));
  assert_non_null(strstr(bprt_last_error(), "decompressed bytes (zlib: unexpected end of file)"));
  unlink(im), unlink(lb), unlink(gzp);
}

/* ------------------------------------------------------------------ MNIST layout */

/* A miniature MNIST directory: train files gzip'd, t10k files raw. */
static void make_mini_mnist(const char *mdir, int ntrain, int ntest, unsigned char bad_label) {
  unsigned char *buf = malloc(16 + 784 * 8), *px = malloc(784 * 8), lb[8];
  for (int i = 0; i < 784 * 8; i++) px[i] = (unsigned char)(i % 256);
  for (int i = 0; i < 8; i++) lb[i] = (unsigned char)(i % 10);
  uint32_t d[3] = {(uint32_t)ntrain, 28, 28};
  write_gz(path_in(mdir, "train-images-idx3-ubyte.gz"), buf, make_idx(buf, 0x08, 3, d, px, 784 * (size_t)ntrain));
  if (bad_label) lb[1] = bad_label;
  write_gz(path_in(mdir, "train-labels-idx1-ubyte.gz"), buf, make_idx(buf, 0x08, 1, d, lb, (size_t)ntrain));
  d[0] = (uint32_t)ntest;
  write_bytes(path_in(mdir, "t10k-images-idx3-ubyte"), buf, make_idx(buf, 0x08, 3, d, px, 784 * (size_t)ntest));
  lb[1] = 1;
  write_bytes(path_in(mdir, "t10k-labels-idx1-ubyte"), buf, make_idx(buf, 0x08, 1, d, lb, (size_t)ntest));
  free(buf);
  free(px);
}

static void test_mnist_dir(void **state) {
  (void)state;
  make_mini_mnist(dir, 3, 2, 0);
  char spec[4200];
  snprintf(spec, sizeof spec, "mnist:%s", dir);
  BprtDataset *tr, *te;
  assert_int_equal(bprt_data_load(spec, 0, &tr, &te), 0);
  assert_int_equal(tr->n, 3);
  assert_int_equal(te->n, 2);
  assert_int_equal(tr->nfeat, 784);
  assert_int_equal(tr->nclasses, 10);
  assert_int_equal(te->nclasses, 10);
  assert_true(tr->x[255] == 1.0f && tr->x[0] == 0.0f);
  assert_int_equal(tr->labels[2], 2);
  char src[4200];
  snprintf(src, sizeof src, "mnist:%s (train)", dir);
  assert_string_equal(tr->source, src);
  bprt_dataset_free(tr);
  bprt_dataset_free(te);
  /* Label out of range 0..9. */
  make_mini_mnist(dir, 3, 2, 12);
  assert_int_equal(bprt_data_load(spec, 0, &tr, &te), -1);
  assert_null(tr);
  assert_null(te);
  expect_error("%s/train-labels-idx1-ubyte.gz: label 12 at record 1 (byte 9) is out of range 0..9", dir);
  /* A missing file names both names it tried. */
  unlink(path_in(dir, "t10k-labels-idx1-ubyte"));
  make_mini_mnist(dir, 3, 2, 0);
  unlink(path_in(dir, "t10k-labels-idx1-ubyte"));
  assert_int_equal(bprt_data_load(spec, 0, &tr, &te), -1);
  expect_error("mnist:%s: cannot open %s/t10k-labels-idx1-ubyte or %s/t10k-labels-idx1-ubyte.gz: no such file", dir,
               dir, dir);
  rm_tree(dir);
  assert_int_equal(mkdir(dir, 0700), 0);
}

/* ------------------------------------------------------------------ CSV */

static void test_csv_good(void **state) {
  (void)state;
  const char *p = path_in(dir, "a.csv");
  write_text(p, "n,4,a,b\r\n5.1, 3.5 ,1.4,0.2,0\r\n\r\n4.9,3.0,1.4,0.2,2\r\n  \n6.2,3.4,5.4,2.3,1");
  BprtDataset *d = bprt_load_csv(p, -1, true, 0);
  assert_non_null(d);
  assert_int_equal(d->n, 3);
  assert_int_equal(d->nfeat, 4);
  assert_int_equal(d->nclasses, 3);
  assert_true(d->x[0] == 5.1f && d->x[1] == 3.5f && d->x[11] == 2.3f);
  assert_int_equal(d->labels[1], 2);
  bprt_dataset_free(d);
  /* Label in column 0 via the SPEC, no header. */
  write_text(p, "1,0.5,0.25\n0,1.5,2.5\n");
  char spec[4200];
  snprintf(spec, sizeof spec, "csv:%s:label=0", p);
  BprtDataset *tr, *va;
  assert_int_equal(bprt_data_load(spec, 0, &tr, &va), 0);
  assert_int_equal(tr->n, 2);
  assert_int_equal(tr->nfeat, 2);
  assert_int_equal(tr->labels[0], 1);
  assert_true(tr->x[2] == 1.5f);
  bprt_dataset_free(tr);
  /* Float targets: the last K columns. */
  snprintf(spec, sizeof spec, "csv:%s:target=2", p);
  assert_int_equal(bprt_data_load(spec, 0, &tr, &va), 0);
  assert_null(tr->labels);
  assert_int_equal(tr->twidth, 2);
  assert_true(tr->targets[3] == 2.5f && tr->x[1] == 0.0f);
  bprt_dataset_free(tr);
  /* Plain path (no options) and a .gz CSV. */
  const char *g = path_in(dir, "b.csv.gz");
  write_gz(g, "1,2,1\n3,4,0\n", 12);
  snprintf(spec, sizeof spec, "csv:%s", g);
  assert_int_equal(bprt_data_load(spec, 0, &tr, &va), 0);
  assert_int_equal(tr->n, 2);
  assert_int_equal(tr->labels[0], 1);
  bprt_dataset_free(tr);
  unlink(p), unlink(g);
}

/* A label the model's input cannot hold is found only against the model
 * (bprt_data_check_y): reported as every CSV error, FILE:LINE, counting the header and
 * blank lines, also after a --val-split; -2 says the message is located already. */
static void test_csv_label_range_line(void **state) {
  (void)state;
  const char *p = path_in(dir, "labrange.csv");
  write_text(p, "a,b,label\n0.1,0.2,0\n\n0.3,0.1,5\n0.5,0.5,1\n");
  BprtDataset *d = bprt_load_csv(p, -1, true, 0);
  assert_non_null(d);
  assert_string_equal(d->file, p);
  assert_int_equal(d->lines[0], 2);
  assert_int_equal(d->lines[1], 4);
  assert_int_equal(d->lines[2], 5);
  const int64_t y3[2] = {-1, 3}, y6[2] = {-1, 6};
  assert_int_equal(bprt_data_check_y(d, "y", true, 2, y3), -2);
  expect_error("%s:4: data label 5 is out of range for model input y: label[B,3]", p);
  assert_int_equal(bprt_data_check_y(d, "y", true, 2, y6), 0);
  /* the other checks keep -1: the caller adds the source */
  assert_int_equal(bprt_data_check_y(d, "t", false, 2, y3), -1);
  expect_error("data has class labels, not float targets; model input t expects f32[B,3]");
  /* the lines follow the rows into both parts of a split */
  BprtDataset *tr, *va;
  assert_int_equal(bprt_data_split(d, 0.34, 3, &tr, &va), 0);
  BprtDataset *with5 = NULL;
  for (int64_t r = 0; r < tr->n; r++)
    if (tr->labels[r] == 5) {
      with5 = tr;
      assert_int_equal(tr->lines[r], 4);
    }
  for (int64_t r = 0; r < va->n; r++)
    if (va->labels[r] == 5) {
      with5 = va;
      assert_int_equal(va->lines[r], 4);
    }
  assert_non_null(with5);
  assert_string_equal(with5->file, p);
  assert_int_equal(bprt_data_check_y(with5, "y", true, 2, y3), -2);
  expect_error("%s:4: data label 5 is out of range for model input y: label[B,3]", p);
  bprt_dataset_free(tr);
  bprt_dataset_free(va);
  bprt_dataset_free(d);
  /* other formats have no lines: the 0-based sample, said so */
  BprtDataset *b = bprt_gen_blobs(10, 5, 2, 1.0, 1);
  assert_null(b->lines);
  assert_null(b->file);
  int64_t first = -1;
  for (int64_t r = 0; r < b->n && first < 0; r++)
    if (b->labels[r] >= 3) first = r;
  assert_true(first >= 0);
  assert_int_equal(bprt_data_check_y(b, "y", true, 2, y3), -1);
  expect_error("data label %d at sample %lld (0-based) is out of range for model input y: label[B,3]", b->labels[first],
               (long long)first);
  bprt_dataset_free(b);
  unlink(p);
}

static void csv_case(const char *text, int label, bool header, int targets, const char *want_after_path) {
  const char *p = path_in(dir, "bad.csv");
  write_text(p, text);
  assert_null(bprt_load_csv(p, label, header, targets));
  expect_error("%s%s", p, want_after_path);
  unlink(p);
}

static void test_csv_errors(void **state) {
  (void)state;
  csv_case("1,2,0\n3,4\n", -1, false, 0, ":2: row has 2 columns, expected 3 (as on line 1)");
  csv_case("h\n\n1,2,0\n3,4,1,5\n", -1, true, 0, ":4: row has 4 columns, expected 3 (as on line 3)");
  csv_case("1,abc,0\n", -1, false, 0, ":1: column 2: 'abc' is not a number");
  csv_case("1,2x,0\n", -1, false, 0, ":1: column 2: '2x' is not a number");
  csv_case("1,,0\n", -1, false, 0, ":1: column 2 is empty");
  csv_case("1,2,0\n1,nan,1\n", -1, false, 0, ":2: column 2: NaN in the data");
  csv_case("1,2,0\n1,inf,1\n", -1, false, 0, ":2: column 2: 'inf' is infinite or too large for float32");
  csv_case("1,1e39,1\n", -1, false, 0, ":1: column 2: '1e39' is infinite or too large for float32");
  csv_case("1,2,0\n1,2,1.5\n", -1, false, 0, ":2: column 3: label 1.5 is not a class index (an integer 0..999999)");
  csv_case("1,2,-1\n", -1, false, 0, ":1: column 3: label -1 is not a class index (an integer 0..999999)");
  csv_case("1,2,0\n", 5, false, 0, ": label=5 is out of range for rows of 3 columns");
  csv_case("1\n2\n", -1, false, 0, ": rows have 1 column; need at least one feature and a label");
  csv_case("header only\n", -1, true, 0, ": no data rows");
  csv_case("1,2\n", -1, false, 2, ": target=2 leaves no feature columns (the rows have 2)");
  const char *p = path_in(dir, "nul.csv");
  write_bytes(p, "1,2\0,3\n", 7);
  assert_null(bprt_load_csv(p, -1, false, 0));
  expect_error("%s: byte 3 is NUL: not a text file", p);
  unlink(p);
  /* SPEC option errors. */
  BprtDataset *tr, *va;
  assert_int_equal(bprt_data_load("csv:x.csv:label=a", 0, &tr, &va), -1);
  expect_error("csv: label=a is not an integer in -100000..100000");
  assert_int_equal(bprt_data_load("csv:x.csv:header=2", 0, &tr, &va), -1);
  expect_error("csv: header=2 is not an integer in 0..1");
  assert_int_equal(bprt_data_load("csv:x.csv:sep=;", 0, &tr, &va), -1);
  expect_error("csv: unknown option 'sep' (known: label, header, target)");
  assert_int_equal(bprt_data_load("csv:x.csv:label=0,target=1", 0, &tr, &va), -1);
  expect_error("csv: label= and target= exclude each other (a CSV has class labels or float targets)");
  assert_int_equal(bprt_data_load("csv:/nonexistent/x.csv", 0, &tr, &va), -1);
  expect_error("cannot open /nonexistent/x.csv: No such file or directory");
}

/* ------------------------------------------------------------------ NPY */

/* A version-1 .npy file: header padded with spaces so data starts at a multiple of 64
 * (128 for every header these tests write). */
static void write_npy(const char *path, const char *descr, bool fortran, const char *shape, const void *data,
                      size_t n) {
  char dict[256];
  snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': %s, 'shape': %s, }", descr,
           fortran ? "True" : "False", shape);
  size_t hl = strlen(dict) + 1, total = (10 + hl + 63) / 64 * 64;
  unsigned char *buf = malloc(total + n);
  memcpy(buf, "\x93NUMPY\x01\x00", 8);
  buf[8] = (unsigned char)((total - 10) & 0xff), buf[9] = (unsigned char)((total - 10) >> 8);
  memset(buf + 10, ' ', total - 10);
  memcpy(buf + 10, dict, strlen(dict));
  buf[total - 1] = '\n';
  memcpy(buf + total, data, n);
  write_bytes(path, buf, total + n);
  free(buf);
}

static void test_npy_good(void **state) {
  (void)state;
  const char *x = path_in(dir, "x.npy"), *y = path_in(dir, "y.npy");
  const float xf[6] = {1, 2, 3, 4, 5, 6};
  const double xd[6] = {1, 2, 3, 4, 5, 6};
  const unsigned char xu[6] = {1, 2, 3, 4, 5, 6};
  const int32_t xi[6] = {1, 2, 3, 4, 5, 6};
  const int64_t xl[6] = {1, 2, 3, 4, 5, 6};
  unsigned char xbe[24];
  for (int i = 0; i < 6; i++) {
    uint32_t u;
    memcpy(&u, &xf[i], 4);
    put_be32(xbe + 4 * i, u);
  }
  struct {
    const char *descr;
    const void *data;
    size_t n;
  } xs[] = {{"<f4", xf, 24}, {"<f8", xd, 48}, {"|u1", xu, 6}, {"<i4", xi, 24}, {"<i8", xl, 48}, {">f4", xbe, 24}};
  const int64_t ylab[3] = {2, 0, 1};
  write_npy(y, "<i8", false, "(3,)", ylab, sizeof ylab);
  for (size_t k = 0; k < sizeof xs / sizeof *xs; k++) {
    write_npy(x, xs[k].descr, false, "(3, 2)", xs[k].data, xs[k].n);
    BprtDataset *d = bprt_load_npy(x, y);
    if (!d) fail_msg("%s: %s", xs[k].descr, bprt_last_error());
    assert_int_equal(d->n, 3);
    assert_int_equal(d->nfeat, 2);
    assert_memory_equal(d->x, xf, sizeof xf);
    assert_int_equal(d->nclasses, 3);
    assert_int_equal(d->labels[0], 2);
    bprt_dataset_free(d);
  }
  /* Y as uint8 and int32 labels; float Y as targets (1-D and 2-D); 3-D X rows. */
  const unsigned char yu[3] = {1, 1, 0};
  write_npy(y, "|u1", false, "(3,)", yu, 3);
  write_npy(x, "<f4", false, "(3, 1, 2)", xf, 24);
  char spec[8400];
  snprintf(spec, sizeof spec, "npy:%s,%s", x, y);
  BprtDataset *tr, *va;
  assert_int_equal(bprt_data_load(spec, 0, &tr, &va), 0);
  assert_int_equal(tr->nclasses, 2);
  assert_int_equal(tr->frank, 2);
  assert_int_equal(tr->fdims[0], 1);
  assert_int_equal(tr->fdims[1], 2);
  bprt_dataset_free(tr);
  const float yt[6] = {0.5f, 1, 1.5f, 2, 2.5f, 3};
  write_npy(y, "<f4", false, "(3, 2)", yt, 24);
  BprtDataset *d = bprt_load_npy(x, y);
  assert_non_null(d);
  assert_null(d->labels);
  assert_int_equal(d->twidth, 2);
  assert_memory_equal(d->targets, yt, sizeof yt);
  bprt_dataset_free(d);
  write_npy(y, "<f8", false, "(3,)", xd, 24);
  d = bprt_load_npy(x, y);
  assert_non_null(d);
  assert_int_equal(d->twidth, 1);
  assert_true(d->targets[2] == 3.0f);
  bprt_dataset_free(d);
  unlink(x), unlink(y);
}

static void test_npy_errors(void **state) {
  (void)state;
  const char *x = path_in(dir, "x.npy"), *y = path_in(dir, "y.npy");
  const float xf[6] = {1, 2, 3, 4, 5, 6};
  const int32_t ylab[3] = {2, 0, 1};
  write_npy(y, "<i4", false, "(3,)", ylab, sizeof ylab);
  write_npy(x, "<f4", true, "(3, 2)", xf, 24);
  assert_null(bprt_load_npy(x, y));
  expect_error("%s: the array is in Fortran order; save it in C order (numpy.save(path, "
               "numpy.ascontiguousarray(a)))", x);
  write_npy(x, "<f2", false, "(3, 2)", xf, 12);
  assert_null(bprt_load_npy(x, y));
  expect_error("%s: dtype '<f2' is not supported (float32, float64, uint8, int32 and int64 are)", x);
  write_npy(x, "<f4", false, "(3, 2)", xf, 20);
  assert_null(bprt_load_npy(x, y));
  expect_error("%s: truncated: shape and dtype '<f4' need 24 data bytes from byte 128, but the file ends at byte "
               "148, in row 2", x);
  write_npy(x, "<f4", false, "(2, 2)", xf, 24);
  assert_null(bprt_load_npy(x, y));
  expect_error("%s: 8 unexpected bytes after the data (from byte 144): the shape disagrees with the file size", x);
  write_npy(x, "<f4", false, "(2, 3)", xf, 24);
  assert_null(bprt_load_npy(x, y));
  expect_error("counts disagree: %s has 2 rows but %s has 3", x, y);
  float xn[6] = {1, 2, 3, 4, NAN, 6};
  write_npy(x, "<f4", false, "(3, 2)", xn, 24);
  assert_null(bprt_load_npy(x, y));
  expect_error("%s: NaN at row 2, column 0 (byte 144)", x);
  write_npy(x, "<f4", false, "()", xf, 4);
  assert_null(bprt_load_npy(x, y));
  expect_error("%s: the array is a scalar; expected one row per sample", x);
  write_bytes(x, "PK\3\4zipfile", 11);
  assert_null(bprt_load_npy(x, y));
  expect_error("%s: wrong magic at byte 0: not a .npy file (expected \\x93NUMPY)", x);
  write_npy(x, "<f4", false, "(3, 2)", xf, 24);
  const int32_t yneg[3] = {2, -1, 1};
  write_npy(y, "<i4", false, "(3,)", yneg, sizeof yneg);
  assert_null(bprt_load_npy(x, y));
  expect_error("%s: label -1 at row 1 (byte 132) is out of range (0..999999)", y);
  write_npy(y, "<i4", false, "(3, 1)", ylab, sizeof ylab);
  assert_null(bprt_load_npy(x, y));
  expect_error("%s: integer Y must be 1-D class labels, but its shape has 2 dimensions", y);
  /* A header that lies about its own length. */
  unsigned char bad[16] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, 0xff, 0x00, '{'};
  write_bytes(x, bad, 11);
  assert_null(bprt_load_npy(x, y));
  expect_error("%s: truncated: the header of 255 bytes from byte 10 runs past the end of the file (11 bytes)", x);
  unlink(x), unlink(y);
}

/* ------------------------------------------------------------------ generators */

static void test_generators(void **state) {
  (void)state;
  BprtDataset *a, *b, *v;
  assert_int_equal(bprt_data_load("spiral", 7, &a, &v), 0);
  assert_null(v);
  assert_int_equal(a->n, 1000);
  assert_int_equal(a->nfeat, 2);
  assert_int_equal(a->nclasses, 3);
  int counts[3] = {0};
  for (int i = 0; i < 1000; i++) counts[a->labels[i]]++;
  assert_true(counts[0] == 334 && counts[1] == 333 && counts[2] == 333);
  for (int i = 0; i < 2000; i++) assert_true(fabsf(a->x[i]) <= 1.0f);
  assert_int_equal(bprt_data_load("spiral", 7, &b, &v), 0);   /* deterministic */
  assert_memory_equal(a->x, b->x, sizeof(float) * 2000);
  bprt_dataset_free(b);
  assert_int_equal(bprt_data_load("spiral", 8, &b, &v), 0);   /* the seed matters */
  assert_memory_not_equal(a->x, b->x, sizeof(float) * 2000);
  bprt_dataset_free(b);
  assert_int_equal(bprt_data_load("spiral:seed=7", 99, &b, &v), 0);   /* seed= overrides */
  assert_memory_equal(a->x, b->x, sizeof(float) * 2000);
  bprt_dataset_free(b);
  bprt_dataset_free(a);
  assert_int_equal(bprt_data_load("spiral:n=50,classes=5,noise=0", 1, &a, &v), 0);
  assert_int_equal(a->n, 50);
  assert_int_equal(a->nclasses, 5);
  assert_int_equal(a->labels[49], 4);
  bprt_dataset_free(a);
  assert_int_equal(bprt_data_load("xor", 1, &a, &v), 0);
  assert_int_equal(a->n, 200);
  assert_int_equal(a->nclasses, 2);
  int agree = 0;   /* with noise 0.2 nearly every point is on its corner's side */
  for (int i = 0; i < 200; i++) agree += ((a->x[2 * i] > 0) != (a->x[2 * i + 1] > 0)) == a->labels[i];
  assert_true(agree >= 195);
  bprt_dataset_free(a);
  assert_int_equal(bprt_data_load("blobs:n=90,classes=3,dim=4,std=0.5", 1, &a, &v), 0);
  assert_int_equal(a->n, 90);
  assert_int_equal(a->nfeat, 4);
  assert_int_equal(a->nclasses, 3);
  bprt_dataset_free(a);
  /* Errors. */
  assert_int_equal(bprt_data_load("spiral:m=3", 1, &a, &v), -1);
  expect_error("spiral: unknown option 'm' (known: n, classes, noise, seed)");
  assert_int_equal(bprt_data_load("xor:classes=3", 1, &a, &v), -1);
  expect_error("xor: unknown option 'classes' (known: n, noise, seed)");
  assert_int_equal(bprt_data_load("spiral:n=abc", 1, &a, &v), -1);
  expect_error("spiral: n=abc is not an integer in 1..100000000");
  assert_int_equal(bprt_data_load("spiral:noise=-1", 1, &a, &v), -1);
  expect_error("spiral: noise=-1 is not a number in 0..1e+06");
  assert_int_equal(bprt_data_load("spiral:n", 1, &a, &v), -1);
  expect_error("spiral: option 'n' is not of the form key=value");
  assert_int_equal(bprt_data_load("spiral:n=2,classes=3", 1, &a, &v), -1);
  expect_error("spiral: need n >= classes >= 2 and noise >= 0 (got n=2, classes=3, noise=0.2)");
  assert_int_equal(bprt_data_load("cifar:foo", 1, &a, &v), -1);
  expect_error("unknown data source 'cifar:foo': expected mnist:DIR, idx:IMAGES,LABELS, "
               "csv:PATH[:label=COL,header=1], npy:X.npy,Y.npy, spiral[:n=..,classes=..,noise=..], "
               "xor[:n=..,noise=..], blobs[:n=..,classes=..,dim=..,std=..] or text:FILE[:seq=T,split=0.9]");
  assert_int_equal(bprt_data_load("idx:onlyone", 1, &a, &v), -1);   /* images alone: the one file */
  expect_error("cannot open onlyone: No such file or directory");
  assert_int_equal(bprt_data_load("idx:im,", 1, &a, &v), -1);
  expect_error("data 'idx:im,': expected two paths separated by a comma (or one, for the features alone)");
  assert_int_equal(bprt_data_load("npy:,y.npy", 1, &a, &v), -1);
  expect_error("data 'npy:,y.npy': expected two paths separated by a comma (or one, for the features alone)");
  assert_int_equal(bprt_data_load("mnist:", 1, &a, &v), -1);
  expect_error("data 'mnist:': expected mnist:DIR");
}

/* ------------------------------------------------------------------ split, shuffle, batches */

/* A dataset whose feature is its row index, so rows can be traced. */
static BprtDataset *traced(int64_t n) {
  BprtDataset *d = bprt_dataset_new(n, 1, 0, "traced");
  for (int64_t i = 0; i < n; i++) d->x[i] = (float)i, d->labels[i] = (int32_t)(i % 3);
  d->nclasses = 3;
  return d;
}

static void test_split(void **state) {
  (void)state;
  BprtDataset *d = traced(100), *tr, *va, *tr2, *va2;
  assert_int_equal(bprt_data_split(d, 0.2, 5, &tr, &va), 0);
  assert_int_equal(va->n, 20);
  assert_int_equal(tr->n, 80);
  assert_string_equal(va->source, "traced (validation split)");
  int seen[100] = {0};
  for (int64_t i = 0; i < va->n; i++) seen[(int)va->x[i]]++, assert_int_equal(va->labels[i], (int)va->x[i] % 3);
  for (int64_t i = 0; i < tr->n; i++) seen[(int)tr->x[i]]++;
  for (int i = 0; i < 100; i++) assert_int_equal(seen[i], 1);
  for (int64_t i = 1; i < tr->n; i++) assert_true(tr->x[i] > tr->x[i - 1]);   /* original order kept */
  assert_int_equal(bprt_data_split(d, 0.2, 5, &tr2, &va2), 0);
  assert_memory_equal(va->x, va2->x, sizeof(float) * 20);
  bprt_dataset_free(tr2), bprt_dataset_free(va2);
  assert_int_equal(bprt_data_split(d, 0.2, 6, &tr2, &va2), 0);
  assert_memory_not_equal(va->x, va2->x, sizeof(float) * 20);
  bprt_dataset_free(tr2), bprt_dataset_free(va2);
  bprt_dataset_free(tr), bprt_dataset_free(va);
  assert_int_equal(bprt_data_split(d, 1.5, 5, &tr, &va), -1);
  expect_error("--val-split 1.5: must be between 0 and 1");
  assert_int_equal(bprt_data_split(d, 0.001, 5, &tr, &va), -1);
  expect_error("--val-split 0.001 of 100 rows leaves the validation set empty");
  assert_int_equal(bprt_data_split(d, 0.999, 5, &tr, &va), -1);
  expect_error("--val-split 0.999 of 100 rows leaves the training set empty");
  bprt_dataset_free(d);
}

static void test_permutation(void **state) {
  (void)state;
  int64_t a[1000], b[1000];
  bprt_data_permutation(1000, 3, 0, a);
  bprt_data_permutation(1000, 3, 0, b);
  assert_memory_equal(a, b, sizeof a);
  int seen[1000] = {0};
  for (int i = 0; i < 1000; i++) seen[a[i]]++;
  for (int i = 0; i < 1000; i++) assert_int_equal(seen[i], 1);
  bprt_data_permutation(1000, 3, 1, b);   /* another epoch, another order */
  assert_memory_not_equal(a, b, sizeof a);
  int fixed = 0;
  for (int i = 0; i < 1000; i++) fixed += a[i] == i;
  assert_true(fixed < 10);   /* a uniform permutation has ~1 fixed point */
  bprt_data_permutation(1, 3, 0, a);
  assert_int_equal(a[0], 0);
}

static void test_batches(void **state) {
  (void)state;
  BprtDataset *d = traced(10);
  BprtBatchIter it;
  assert_int_equal(bprt_batch_begin(&it, d, 4, false, 0, 0), 0);
  assert_int_equal(bprt_batch_count(&it), 3);
  int64_t sizes[3], k = 0;
  while (bprt_batch_next(&it) > 0) {
    assert_true(it.x == d->x + (it.index - 1) * 4);   /* in order: no copy */
    sizes[k++] = it.rows;
  }
  assert_int_equal(k, 3);
  assert_true(sizes[0] == 4 && sizes[1] == 4 && sizes[2] == 2);   /* last partial batch kept */
  assert_int_equal(bprt_batch_next(&it), 0);
  bprt_batch_end(&it);
  /* Shuffled: every row exactly once, in the permutation's order, labels follow rows. */
  int64_t perm[10];
  bprt_data_permutation(10, 9, 2, perm);
  assert_int_equal(bprt_batch_begin(&it, d, 3, true, 9, 2), 0);
  int64_t at = 0;
  while (bprt_batch_next(&it) > 0)
    for (int64_t r = 0; r < it.rows; r++, at++) {
      assert_true(it.x[r] == (float)perm[at]);
      assert_int_equal(it.labels[r], perm[at] % 3);
    }
  assert_int_equal(at, 10);
  assert_int_equal(it.index, 4);
  bprt_batch_end(&it);
  /* Batch larger than the dataset: one batch of everything. */
  assert_int_equal(bprt_batch_begin(&it, d, 64, true, 1, 1), 0);
  assert_int_equal(bprt_batch_next(&it), 10);
  assert_int_equal(bprt_batch_next(&it), 0);
  bprt_batch_end(&it);
  assert_int_equal(bprt_batch_begin(&it, d, 0, true, 1, 1), -1);
  expect_error("batch size 0 must be at least 1");
  bprt_dataset_free(d);
  /* Targets follow their rows too. */
  BprtDataset *t = bprt_dataset_new(5, 1, 2, "t");
  for (int i = 0; i < 5; i++) t->x[i] = (float)i, t->targets[2 * i] = (float)i, t->targets[2 * i + 1] = -(float)i;
  assert_int_equal(bprt_batch_begin(&it, t, 2, true, 4, 0), 0);
  while (bprt_batch_next(&it) > 0)
    for (int64_t r = 0; r < it.rows; r++) {
      assert_null(it.labels);
      assert_true(it.targets[2 * r] == it.x[r] && it.targets[2 * r + 1] == -it.x[r]);
    }
  bprt_batch_end(&it);
  bprt_dataset_free(t);
}

static void test_shape_checks(void **state) {
  (void)state;
  BprtDataset *d = bprt_dataset_new(3, 784, 0, "m");
  for (int i = 0; i < 3; i++) d->labels[i] = i * 5;
  d->nclasses = 11;
  const int64_t x100[2] = {-1, 100}, x784[2] = {-1, 784}, img[4] = {-1, 1, 28, 28}, y10[2] = {-1, 10},
                y16[2] = {-1, 16};
  assert_int_equal(bprt_data_check_x(d, "x", 2, x100), -1);
  expect_error("data has 784 features per row; model input x expects f32[B,100]");
  assert_int_equal(bprt_data_check_x(d, "x", 2, x784), 0);
  assert_int_equal(bprt_data_check_x(d, "x", 4, img), 0);
  assert_int_equal(bprt_data_check_y(d, "y", true, 2, y10), -1);
  expect_error("data label 10 at sample 2 (0-based) is out of range for model input y: label[B,10]");
  assert_int_equal(bprt_data_check_y(d, "y", true, 2, y16), 0);
  assert_int_equal(bprt_data_check_y(d, "t", false, 2, y10), -1);
  expect_error("data has class labels, not float targets; model input t expects f32[B,10]");
  bprt_dataset_free(d);
  d = bprt_dataset_new(3, 2, 3, "r");
  assert_int_equal(bprt_data_check_y(d, "y", true, 2, y10), -1);
  expect_error("data has float targets (3 per row), not class labels; model input y expects label[B,10]");
  assert_int_equal(bprt_data_check_y(d, "t", false, 2, y10), -1);
  expect_error("data has 3 targets per row; model input t expects f32[B,10]");
  bprt_dataset_free(d);
}

/* ------------------------------------------------------------------ features only */

/* Features without labels or targets (idx:IMAGES, npy:X.npy, csv:PATH:label=none), for
 * `bpcc predict`: the same features as with the labels; batches, shuffles and splits
 * work; a model input that needs labels or targets is refused by name. */
static void test_features_only(void **state) {
  (void)state;
  const char *im = path_in(dir, "im"), *lb = path_in(dir, "lb");
  write_idx_pair(im, lb, false);
  char spec[8400];
  BprtDataset *d, *va;
  snprintf(spec, sizeof spec, "idx:%s", im);
  assert_int_equal(bprt_data_load(spec, 0, &d, &va), 0);
  assert_null(va);
  assert_int_equal(d->n, 5);
  assert_int_equal(d->nfeat, 6);
  assert_int_equal(d->frank, 2);
  assert_null(d->labels);
  assert_null(d->targets);
  assert_int_equal(d->nclasses, 0);
  assert_int_equal(d->twidth, 0);
  assert_string_equal(d->source, spec);
  for (int i = 0; i < 30; i++) assert_true(d->x[i] == (float)(pix[i] / 255.0));
  const int64_t x6[3] = {-1, 2, 3}, y3[2] = {-1, 3};
  assert_int_equal(bprt_data_check_x(d, "x", 3, x6), 0);
  assert_int_equal(bprt_data_check_y(d, "y", true, 2, y3), -1);
  expect_error("data has features only, no labels; model input y expects label[B,3]");
  assert_int_equal(bprt_data_check_y(d, "t", false, 2, y3), -1);
  expect_error("data has features only, no targets; model input t expects f32[B,3]");
  /* batches in order and shuffled, and a split, carry the features alone */
  BprtBatchIter it;
  for (int shuffle = 0; shuffle < 2; shuffle++) {
    assert_int_equal(bprt_batch_begin(&it, d, 2, shuffle, 3, 0), 0);
    int64_t rows = 0;
    while (bprt_batch_next(&it) > 0) {
      assert_null(it.labels);
      assert_null(it.targets);
      assert_non_null(it.x);
      rows += it.rows;
    }
    assert_int_equal(rows, 5);
    bprt_batch_end(&it);
  }
  BprtDataset *tr, *vs;
  assert_int_equal(bprt_data_split(d, 0.4, 1, &tr, &vs), 0);
  assert_int_equal(tr->n + vs->n, 5);
  assert_null(tr->labels);
  assert_null(vs->targets);
  bprt_dataset_free(tr), bprt_dataset_free(vs);
  bprt_dataset_free(d);
  /* npy:X.npy */
  const char *x = path_in(dir, "x.npy");
  const float xf[6] = {1, 2, 3, 4, 5, 6};
  write_npy(x, "<f4", false, "(3, 2)", xf, 24);
  snprintf(spec, sizeof spec, "npy:%s", x);
  assert_int_equal(bprt_data_load(spec, 0, &d, &va), 0);
  assert_int_equal(d->n, 3);
  assert_int_equal(d->nfeat, 2);
  assert_null(d->labels);
  assert_null(d->targets);
  assert_memory_equal(d->x, xf, sizeof xf);
  assert_string_equal(d->source, spec);
  bprt_dataset_free(d);
  write_npy(x, "<f4", false, "(0, 2)", xf, 0);
  assert_null(bprt_load_npy(x, NULL));
  expect_error("%s: the array has no rows", x);
  write_npy(x, "<f4", false, "(3, 0)", xf, 0);
  assert_null(bprt_load_npy(x, NULL));
  expect_error("%s: the array has no features (rows are empty)", x);
  /* csv:PATH:label=none: every column a feature, also a single one */
  const char *c = path_in(dir, "f.csv");
  write_text(c, "a,b,c\n1,2,3\n4,5,6\n");
  snprintf(spec, sizeof spec, "csv:%s:label=none,header=1", c);
  assert_int_equal(bprt_data_load(spec, 0, &d, &va), 0);
  assert_int_equal(d->n, 2);
  assert_int_equal(d->nfeat, 3);
  assert_null(d->labels);
  assert_null(d->targets);
  assert_true(d->x[0] == 1 && d->x[5] == 6);
  assert_int_equal(d->lines[1], 3);
  bprt_dataset_free(d);
  write_text(c, "7\n8\n");
  d = bprt_load_csv(c, 0, false, BPRT_NO_TARGETS);
  assert_non_null(d);
  assert_int_equal(d->nfeat, 1);
  assert_true(d->x[1] == 8);
  bprt_dataset_free(d);
  snprintf(spec, sizeof spec, "csv:%s:label=none,target=1", c);
  assert_int_equal(bprt_data_load(spec, 0, &d, &va), -1);
  expect_error("csv: label= and target= exclude each other (a CSV has class labels or float targets)");
  unlink(im), unlink(lb), unlink(x), unlink(c);
}

/* ------------------------------------------------------------------ OOM sweeps */

/* Every allocation of every loader can fail: an error, never a crash or a leak. */
static void sweep(const char *spec, int *failures) {
  for (long k = 0; k < 100000; k++) {
    BprtDataset *tr = NULL, *va = NULL;
    bprt_alloc_fail_after(k);
    int rc = bprt_data_load(spec, 1, &tr, &va);
    bprt_alloc_fail_after(-1);
    if (rc == 0) {
      bprt_dataset_free(tr);
      bprt_dataset_free(va);
      return;
    }
    assert_null(tr);
    assert_null(va);
    if (!strstr(bprt_last_error(), "out of memory")) fail_msg("%s, k=%ld: %s", spec, k, bprt_last_error());
    (*failures)++;
  }
  fail_msg("%s never succeeded", spec);
}

static void test_alloc_failure_sweep(void **state) {
  (void)state;
  int failures = 0;
  char spec[8400];
  make_mini_mnist(dir, 3, 2, 0);
  snprintf(spec, sizeof spec, "mnist:%s", dir);
  sweep(spec, &failures);
  const char *c = path_in(dir, "s.csv");
  write_text(c, "1,2,0\n3,4,1\n");
  snprintf(spec, sizeof spec, "csv:%s", c);
  sweep(spec, &failures);
  const char *x = path_in(dir, "x.npy"), *y = path_in(dir, "y.npy");
  const float xf[4] = {1, 2, 3, 4};
  const int32_t yl[2] = {0, 1};
  write_npy(x, "<f4", false, "(2, 2)", xf, 16);
  write_npy(y, "<i4", false, "(2,)", yl, 8);
  snprintf(spec, sizeof spec, "npy:%s,%s", x, y);
  sweep(spec, &failures);
  snprintf(spec, sizeof spec, "npy:%s", x);   /* features only */
  sweep(spec, &failures);
  snprintf(spec, sizeof spec, "csv:%s:label=none", c);
  sweep(spec, &failures);
  sweep("spiral:n=30", &failures);
  sweep("blobs", &failures);
  assert_true(failures >= 15);
  BprtDataset *d = traced(20), *tr, *va;
  for (long k = 0; k < 10; k++) {
    bprt_alloc_fail_after(k);
    int rc = bprt_data_split(d, 0.5, 1, &tr, &va);
    bprt_alloc_fail_after(-1);
    if (rc == 0) {
      bprt_dataset_free(tr), bprt_dataset_free(va);
      break;
    }
    assert_null(tr);
    assert_null(va);
  }
  BprtBatchIter it;
  for (long k = 0; k < 4; k++) {
    bprt_alloc_fail_after(k);
    int rc = bprt_batch_begin(&it, d, 4, true, 1, 1);
    bprt_alloc_fail_after(-1);
    if (rc == 0) break;
    assert_non_null(strstr(bprt_last_error(), "out of memory"));
  }
  bprt_batch_end(&it);
  bprt_dataset_free(d);
}

/* ------------------------------------------------------------------ mutations */

static uint64_t lcg(uint64_t *s) {
  *s = *s * 6364136223846793005ull + 1442695040888963407ull;
  return *s >> 17;
}

/* Damage file `path` (a copy of orig[0..n)) at random and load `spec` 1500 times:
 * success, or an error that names the damaged file. Never a crash or an ASan report. */
static void mutate_and_load(const char *spec, const char *path, const unsigned char *orig, size_t n,
                            uint64_t seed) {
  unsigned char *buf = malloc(n + 8);
  uint64_t s = seed;
  int failed = 0;
  for (int iter = 0; iter < 1500; iter++) {
    memcpy(buf, orig, n);
    size_t len = n;
    for (int e = 0; e < 1 + iter % 3 && len > 0; e++) {
      size_t at = lcg(&s) % len;
      switch (lcg(&s) % 4) {
      case 0: buf[at] = (unsigned char)lcg(&s); break;
      case 1: buf[at] ^= (unsigned char)(1u << (lcg(&s) % 8)); break;
      case 2: len = at; break;
      default: buf[at] = "0123456789,.-\n e"[lcg(&s) % 16]; break;
      }
    }
    write_bytes(path, buf, len);
    BprtDataset *tr = NULL, *va = NULL;
    if (bprt_data_load(spec, 1, &tr, &va) == 0) {
      assert_non_null(tr);
      bprt_dataset_free(tr);
      bprt_dataset_free(va);
      continue;
    }
    failed++;
    if (!strstr(bprt_last_error(), path)) fail_msg("%s iteration %d: %s", spec, iter, bprt_last_error());
  }
  assert_true(failed > 100);
  write_bytes(path, orig, n);
  free(buf);
}

static unsigned char *slurp(const char *path, size_t *n) {
  FILE *f = fopen(path, "rb");
  assert_non_null(f);
  unsigned char *b = malloc(1 << 20);
  *n = fread(b, 1, 1 << 20, f);
  fclose(f);
  return b;
}

static void test_mutation_robustness(void **state) {
  (void)state;
  char spec[8400];
  size_t n;
  unsigned char *orig;
  /* IDX, raw and gzip'd (the mini MNIST has both). */
  make_mini_mnist(dir, 3, 2, 0);
  snprintf(spec, sizeof spec, "mnist:%s", dir);
  const char *files[2] = {"train-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte"};
  for (int k = 0; k < 2; k++) {
    const char *p = path_in(dir, files[k]);
    orig = slurp(p, &n);
    mutate_and_load(spec, p, orig, n, 100 + (uint64_t)k);
    free(orig);
  }
  /* CSV. */
  const char *c = path_in(dir, "m.csv");
  const char *text = "a,b,c,label\n1.5,2,3e2,0\n-4,5.25,6,2\n7,8,9,1\n0.1,0.2,0.3,1\n";
  write_text(c, text);
  snprintf(spec, sizeof spec, "csv:%s:header=1", c);
  mutate_and_load(spec, c, (const unsigned char *)text, strlen(text), 7);
  /* NPY, X and Y. */
  const char *x = path_in(dir, "mx.npy"), *y = path_in(dir, "my.npy");
  const float xf[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  const int64_t yl[4] = {0, 1, 2, 1};
  write_npy(x, "<f4", false, "(4, 2)", xf, sizeof xf);
  write_npy(y, "<i8", false, "(4,)", yl, sizeof yl);
  snprintf(spec, sizeof spec, "npy:%s,%s", x, y);
  orig = slurp(x, &n);
  mutate_and_load(spec, x, orig, n, 8);
  free(orig);
  orig = slurp(y, &n);
  mutate_and_load(spec, y, orig, n, 9);
  free(orig);
}

/* Only regular files are read: a FIFO (opening one without a writer would block), a
 * character device (/dev/zero never ends) or a directory is an error at once, for
 * every loader and the MNIST layout. alarm() turns a hang into a failure. */
static void test_not_regular_files(void **state) {
  (void)state;
  alarm(10);
  const char *fifo = path_in(dir, "fifo");
  assert_int_equal(mkfifo(fifo, 0600), 0);
  const char *lb = path_in(dir, "lb"), *im = path_in(dir, "im");
  write_idx_pair(im, lb, false);
  char spec[8400];
  BprtDataset *tr, *va;
  const char *bad[3] = {fifo, "/dev/zero", dir};
  const char *kind[3] = {"a FIFO (named pipe)", "a character device", "a directory"};
  for (int i = 0; i < 3; i++) {
    char want[4200];
    snprintf(want, sizeof want, "%s: %s, not a regular file: only regular files can be read here", bad[i], kind[i]);
    assert_null(bprt_load_idx(bad[i], lb));
    assert_string_equal(bprt_last_error(), want);
    assert_null(bprt_load_idx(im, bad[i]));
    assert_string_equal(bprt_last_error(), want);
    assert_null(bprt_load_npy(bad[i], lb));
    assert_string_equal(bprt_last_error(), want);
    snprintf(spec, sizeof spec, "csv:%s", bad[i]);
    assert_int_equal(bprt_data_load(spec, 0, &tr, &va), -1);
    assert_string_equal(bprt_last_error(), want);
  }
  /* an MNIST directory whose training images are a FIFO */
  char mdir[2048];
  snprintf(mdir, sizeof mdir, "%.1000s/mnist-fifo", dir);
  assert_int_equal(mkdir(mdir, 0700), 0);
  char images[4200];
  snprintf(images, sizeof images, "%.2000s/train-images-idx3-ubyte", mdir);
  assert_int_equal(mkfifo(images, 0600), 0);
  const char *others[3] = {"train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"};
  for (int i = 0; i < 3; i++) write_text(path_in(mdir, others[i]), "x");
  snprintf(spec, sizeof spec, "mnist:%s", mdir);
  assert_int_equal(bprt_data_load(spec, 0, &tr, &va), -1);
  expect_error("%s: a FIFO (named pipe), not a regular file: only regular files can be read here", images);
  alarm(0);
  unlink(images);
  for (int i = 0; i < 3; i++) unlink(path_in(mdir, others[i]));
  rmdir(mdir);
  unlink(fifo), unlink(im), unlink(lb);
}

/* ------------------------------------------------------------------ text */

/* text:FILE: the split, the window counts, the training windows (in range, a pure
 * function of (seed, k), covering every offset), the validation windows one after
 * another, gzip, binding seq to the model's T, and each error with its message. */
static void test_text(void **state) {
  (void)state;
  unsigned char bytes[100];
  for (int i = 0; i < 100; i++) bytes[i] = (unsigned char)(i * 37 + 11);   /* every byte distinct */
  const char *raw = path_in(dir, "t.txt"), *gz = path_in(dir, "t.txt.gz");
  char rawp[4096], gzp[4096], spec[4200];
  snprintf(rawp, sizeof rawp, "%s", raw);
  snprintf(gzp, sizeof gzp, "%s", gz);
  write_bytes(rawp, bytes, sizeof bytes);
  write_gz(gzp, bytes, sizeof bytes);
  for (int g = 0; g < 2; g++) {
    BprtDataset *tr = NULL, *va = NULL;
    snprintf(spec, sizeof spec, "text:%s:seq=8,split=0.9", g ? gzp : rawp);
    assert_int_equal(bprt_data_load(spec, 0, &tr, &va), 0);
    assert_non_null(tr->text);
    assert_ptr_equal(tr->text, va->text);
    assert_int_equal(tr->text->size, 100);
    assert_int_equal(tr->text->split, 90);              /* floor(0.9 * 100) */
    assert_int_equal(tr->n, 90 - 8);                    /* offsets 0 .. 81 */
    assert_int_equal(va->n, (100 - 90 - 1) / 8);        /* one window at 90 */
    assert_int_equal(tr->nfeat, 8);
    assert_null(tr->x);
    assert_null(tr->labels);
    int32_t x[16 * 8], y[16 * 8], x2[3 * 8], y2[3 * 8];
    bprt_text_train_windows(tr, 7, 0, 16, x, y);
    for (int r = 0; r < 16; r++) {
      int64_t off = bprt_text_train_offset(tr, 7, (uint64_t)r);
      assert_true(off >= 0 && off <= 81);
      for (int j = 0; j < 8; j++) {
        assert_int_equal(x[r * 8 + j], bytes[off + j]);
        assert_int_equal(y[r * 8 + j], bytes[off + j + 1]);
      }
    }
    bprt_text_train_windows(tr, 7, 5, 3, x2, y2);   /* windows 5..7: the same as drawn in one go */
    assert_memory_equal(x2, x + 5 * 8, sizeof x2);
    assert_memory_equal(y2, y + 5 * 8, sizeof y2);
    bprt_text_train_windows(tr, 8, 5, 3, x2, y2);   /* another seed: other windows */
    assert_memory_not_equal(x2, x + 5 * 8, sizeof x2);
    bprt_text_val_windows(va, 0, 1, x2, y2);
    for (int j = 0; j < 8; j++) {
      assert_int_equal(x2[j], bytes[90 + j]);
      assert_int_equal(y2[j], bytes[91 + j]);
    }
    if (!g) {   /* uniform over the 82 offsets: 82,000 draws, each offset 1000 +- 15% */
      static int64_t count[82];
      memset(count, 0, sizeof count);
      for (uint64_t k = 0; k < 82000; k++) count[bprt_text_train_offset(tr, 3, k)]++;
      for (int i = 0; i < 82; i++) assert_true(count[i] > 850 && count[i] < 1150);
    }
    bprt_dataset_free(tr);
    bprt_dataset_free(va);
  }

  /* seq from the model: no windows until bound; then bound, and a mismatch refused */
  BprtDataset *tr = NULL, *va = NULL;
  snprintf(spec, sizeof spec, "text:%s", rawp);
  assert_int_equal(bprt_data_load(spec, 0, &tr, &va), 0);
  assert_int_equal(tr->n, 0);
  assert_int_equal(tr->text->seq, 0);
  assert_int_equal(bprt_text_bind(tr, 4), 0);
  assert_int_equal(tr->n, 86);
  assert_int_equal(bprt_text_bind(va, 4), 0);
  assert_int_equal(va->n, 2);                           /* windows at 90 and 94; 98 + 4 > 99 */
  assert_int_equal(bprt_text_bind(va, 5), -1);
  expect_error("text:%s: seq=4 does not match the model's context T = 5", rawp);
  /* the validation windows in batches: 90..94, 94..98, each byte after 90 predicted once */
  BprtBatchIter it;
  assert_int_equal(bprt_batch_begin(&it, va, 1, false, 0, 0), 0);
  for (int w = 0; w < 2; w++) {
    assert_int_equal(bprt_batch_next(&it), 1);
    assert_null(it.x);
    for (int j = 0; j < 4; j++) {
      assert_int_equal(it.xtok[j], bytes[90 + 4 * w + j]);
      assert_int_equal(it.ytok[j], bytes[91 + 4 * w + j]);
    }
  }
  assert_int_equal(bprt_batch_next(&it), 0);
  bprt_batch_end(&it);
  assert_int_equal(bprt_batch_begin(&it, tr, 4, true, 0, 0), -1);
  expect_error("text:%s (training): text training windows are drawn by steps, not batched in order", rawp);
  bprt_dataset_free(tr);
  bprt_dataset_free(va);

  /* errors */
  const char *missing = path_in(dir, "none.txt");
  char mp[4096];
  snprintf(mp, sizeof mp, "%s", missing);
  snprintf(spec, sizeof spec, "text:%s", mp);
  assert_int_equal(bprt_data_load(spec, 0, &tr, &va), -1);
  expect_error("cannot open %s: No such file or directory", mp);
  assert_null(tr);
  assert_int_equal(bprt_data_load("text:", 0, &tr, &va), -1);
  expect_error("data 'text:': missing the file (expected text:FILE[:seq=T,split=0.9])");
  const char *bad[][2] = {
      {"split=1", "text: split=1 must be between 0 and 1 (exclusive): the fraction of the file that trains"},
      {"split=0", "text: split=0 must be between 0 and 1 (exclusive): the fraction of the file that trains"},
      {"split=1.5", "text: split=1.5 is not a number in 0..1"},
      {"seq=0", "text: seq=0 is not an integer in 1..1073741824"},
      {"len=3", "text: unknown option 'len' (known: seq, split)"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    snprintf(spec, sizeof spec, "text:%s:%s", rawp, bad[i][0]);
    assert_int_equal(bprt_data_load(spec, 0, &tr, &va), -1);
    expect_error("%s", bad[i][1]);
  }
  snprintf(spec, sizeof spec, "text:%s:seq=9", rawp);   /* validation: 10 bytes, one window exactly */
  assert_int_equal(bprt_data_load(spec, 0, &tr, &va), 0);
  assert_int_equal(va->n, 1);
  bprt_dataset_free(tr);
  bprt_dataset_free(va);
  snprintf(spec, sizeof spec, "text:%s:seq=10", rawp);   /* validation: 10 bytes < 11 */
  assert_int_equal(bprt_data_load(spec, 0, &tr, &va), -1);
  expect_error("%s: 100 bytes split at 0.9 are too few for windows of seq=10 + 1 bytes: the training part has 90 bytes "
               "and the validation part 10 (each needs at least 11)", rawp);
  snprintf(spec, sizeof spec, "text:%s:seq=2,split=0.02", rawp);   /* training: 2 bytes < 3 */
  assert_int_equal(bprt_data_load(spec, 0, &tr, &va), -1);
  expect_error("%s: 100 bytes split at 0.02 are too few for windows of seq=2 + 1 bytes: the training part has 2 bytes "
               "and the validation part 98 (each needs at least 3)", rawp);
  unlink(rawp);
  unlink(gzp);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_idx_good),     cmocka_unit_test(test_idx_types),
      cmocka_unit_test(test_idx_errors),   cmocka_unit_test(test_mnist_dir),
      cmocka_unit_test(test_csv_good),     cmocka_unit_test(test_csv_errors),
      cmocka_unit_test(test_csv_label_range_line),
      cmocka_unit_test(test_npy_good),     cmocka_unit_test(test_npy_errors),
      cmocka_unit_test(test_generators),   cmocka_unit_test(test_split),
      cmocka_unit_test(test_permutation),  cmocka_unit_test(test_batches),
      cmocka_unit_test(test_shape_checks), cmocka_unit_test(test_features_only),
      cmocka_unit_test(test_alloc_failure_sweep),
      cmocka_unit_test(test_mutation_robustness), cmocka_unit_test(test_not_regular_files),
      cmocka_unit_test(test_text),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
