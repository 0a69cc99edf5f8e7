/* runtime/data_internal.h — helpers shared by the data loaders (not public API). */
#ifndef BPCC_RUNTIME_DATA_INTERNAL_H
#define BPCC_RUNTIME_DATA_INTERNAL_H

#include "runtime/data.h"

/* Data files are checked before they are read whole, so that no file costs more than
 * its header promises (docs/runtime.md, "Limits"):
 *   - only regular files: a directory, FIFO, socket or device (/dev/zero) is an error
 *     at once, and opening never blocks (O_NONBLOCK: a FIFO without a writer);
 *   - a raw file's content is exactly its size on disk, known before anything is read;
 *   - a gzip file may inflate to at most DATA_GZ_RATIO times its size on disk, and at
 *     least DATA_GZ_FLOOR bytes: a header that claims more, or a stream (CSV) that goes
 *     on longer, is a "likely gzip bomb" error; the remedy is to gunzip the file;
 *   - a loader with a header reads the header, allocates what it claims (bounded as
 *     above) and reads exactly that: a stream that goes on is an error at once. */
#define DATA_GZ_RATIO 100
#define DATA_GZ_FLOOR (UINT64_C(64) << 20)

typedef struct {
  const char *path;
  void *gz;            /* zlib's gzFile (it reads raw files unchanged) */
  bool gzip;           /* the file starts with gzip's magic */
  uint64_t size;       /* bytes on disk */
  uint64_t limit;      /* the most content bytes accepted: size, or the gzip bound */
  uint64_t pos;        /* content bytes read so far */
} DataFile;

/* Open path for reading; 0, or -1 with "cannot open PATH: ..." or "PATH: not a
 * regular file (a FIFO)" and the like. */
int data_open(DataFile *f, const char *path);
/* Up to n content bytes into buf: *got < n only at the end. -1 with "PATH: gzip data
 * is truncated or corrupt after N decompressed bytes (zlib: ...)" or a read error. */
int data_read(DataFile *f, void *buf, size_t n, size_t *got);
/* 1 if the content ends at f->pos, 0 if more follows, -1 on a read error. */
int data_at_end(DataFile *f);
void data_close(DataFile *f);
/* A header says the content is `total` bytes: 0 if a file of this size can hold that
 * (always for raw files: the caller compares total with f->size itself), else -1
 * with "PATH: the header says N bytes, but a gzip file of S bytes is accepted up to
 * L bytes ... (a likely gzip bomb)". */
int data_check_claim(const DataFile *f, uint64_t total, const char *what);
/* The rest of a file whose content is `total` bytes, `hlen` of which (head) are read:
 * a buffer of total bytes (+ a NUL) with head at its start, or NULL with *len the
 * content length found when it differs: a raw file's size, a shorter gzip stream's
 * length, or total + 1 for a longer one (it stops there). -1 on errors, with the
 * error set (the gzip bound of data_check_claim included). */
int data_read_body(DataFile *f, const void *head, size_t hlen, uint64_t total, unsigned char **out,
                   uint64_t *len, const char *what);

/* Read a whole file, gunzipping it if it is gzip, bounded as above. NULL with an
 * error. The buffer has one extra NUL byte after *len (text parsers rely on it); free
 * with bprt_free. */
unsigned char *data_read_file(const char *path, size_t *len);

/* The first non-finite value of x[n]: its index, or -1 if all are finite. */
int64_t data_first_nonfinite(const float *x, int64_t n);

/* Options "k=v,k=v" of a SPEC. data_opt_next splits off one pair; returns 0 at the end,
 * 1 with key/value (NUL-terminated copies in the caller's buffers), -1 on a malformed
 * pair (error set, naming `what`). */
int data_opt_next(const char **s, const char *what, char *key, size_t keylen, char *val, size_t vallen);
int data_opt_int(const char *what, const char *key, const char *val, int64_t lo, int64_t hi, int64_t *out);
int data_opt_double(const char *what, const char *key, const char *val, double lo, double hi, double *out);

/* Drop a dataset's reference to its text bytes (data_text.c). */
void data_text_release(BprtText *t);

/* A generator SPEC split into name ("spiral") and options ("n=100" or NULL): 0 if name
 * is not a generator, 1 with the data in *out, -1 with an error. */
int data_gen_spec(const char *name, const char *opts, uint64_t seed, BprtDataset **out);

#endif
