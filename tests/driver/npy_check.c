/* tests/driver/npy_check.c — reads the .npy files `bpcc predict` writes, for the tests'
 * shell scripts (no Python in `make test`). It accepts exactly what predict promises:
 * format version 1.0, a header dict {'descr': '<f4', 'fortran_order': False,
 * 'shape': (...), } padded with spaces to end in '\n' at a multiple of 64 bytes, then
 * the float32 items, little-endian, C order, nothing after them.
 *
 *   npy_check shape FILE.npy           print the shape: "10000,10"
 *   npy_check csv FILE.npy             print the rows as CSV, %.9g (as predict's CSV)
 *   npy_check argmax FILE.npy LABELS   LABELS: an IDX label file (not gzip'd); print the
 *                                      rows whose argmax (first maximum) is the label
 * Exit 1 with a message on stderr for any departure from the format. */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static unsigned char *slurp(const char *path, size_t *n) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    perror(path);
    exit(1);
  }
  size_t cap = 1 << 16, len = 0;
  unsigned char *b = malloc(cap);
  size_t got;
  while (b && (got = fread(b + len, 1, cap - len, f)) > 0) {
    len += got;
    if (len == cap) b = realloc(b, cap *= 2);
  }
  fclose(f);
  if (!b) exit(1);
  *n = len;
  return b;
}

static void bad(const char *path, const char *what) {
  fprintf(stderr, "npy_check: %s: %s\n", path, what);
  exit(1);
}

int main(int argc, char **argv) {
  if (argc < 3 || (strcmp(argv[1], "argmax") == 0) != (argc == 4)) {
    fprintf(stderr, "usage: npy_check shape|csv FILE.npy | npy_check argmax FILE.npy LABELS\n");
    return 1;
  }
  const char *path = argv[2];
  size_t n;
  unsigned char *b = slurp(path, &n);
  if (n < 10 || memcmp(b, "\x93NUMPY\x01\x00", 8) != 0) bad(path, "not an NPY 1.0 file");
  size_t hl = b[8] | (size_t)b[9] << 8, data = 10 + hl;
  if (data % 64 != 0) bad(path, "the data does not start at a multiple of 64");
  if (data > n || b[data - 1] != '\n') bad(path, "the header does not end in a newline");
  char *h = malloc(hl + 1);
  memcpy(h, b + 10, hl);
  h[hl] = 0;
  const char *pre = "{'descr': '<f4', 'fortran_order': False, 'shape': (";
  if (strncmp(h, pre, strlen(pre)) != 0) bad(path, "unexpected header dict");
  int64_t dims[8], count = 1;
  int rank = 0;
  char *p = h + strlen(pre);
  while (*p != ')') {
    char *end;
    dims[rank] = strtoll(p, &end, 10);
    if (end == p || rank == 8) bad(path, "bad shape");
    count *= dims[rank++];
    p = end;
    if (*p == ',') p++;
    if (*p == ' ') p++;
  }
  if (strncmp(p, "), }", 4) != 0) bad(path, "the dict does not end in '), }'");
  for (p += 4; *p == ' '; p++) {}
  if (strcmp(p, "\n") != 0) bad(path, "the padding is not spaces");
  if (rank == 1 && !strstr(h, ",)")) bad(path, "a 1-tuple shape needs its comma");
  if (n - data != (size_t)count * 4) bad(path, "the data is not shape x 4 bytes");
  float *v = malloc(sizeof(float) * (size_t)(count ? count : 1));
  for (int64_t k = 0; k < count; k++) {
    const unsigned char *q = b + data + 4 * k;
    uint32_t u = (uint32_t)q[0] | (uint32_t)q[1] << 8 | (uint32_t)q[2] << 16 | (uint32_t)q[3] << 24;
    memcpy(&v[k], &u, 4);
  }
  int64_t rows = dims[0], width = rows ? count / rows : 0;
  if (!strcmp(argv[1], "shape")) {
    for (int i = 0; i < rank; i++) printf("%s%" PRId64, i ? "," : "", dims[i]);
    printf("\n");
  } else if (!strcmp(argv[1], "csv")) {
    for (int64_t r = 0; r < rows; r++)
      for (int64_t j = 0; j < width; j++) printf("%.9g%c", (double)v[r * width + j], j + 1 < width ? ',' : '\n');
  } else if (!strcmp(argv[1], "argmax")) {
    size_t ln;
    unsigned char *lb = slurp(argv[3], &ln);
    if (ln != 8 + (size_t)rows || lb[2] != 0x08 || lb[3] != 1) bad(argv[3], "not a u8 IDX label file of the rows");
    int64_t correct = 0;
    for (int64_t r = 0; r < rows; r++) {
      int64_t best = 0;
      for (int64_t j = 1; j < width; j++)
        if (v[r * width + j] > v[r * width + best]) best = j;
      correct += best == lb[8 + r];
    }
    printf("%" PRId64 "\n", correct);
    free(lb);
  } else {
    bad(argv[1], "unknown mode");
  }
  free(v);
  free(h);
  free(b);
  return 0;
}
