/* runtime/data_internal.h — helpers shared by the data loaders (not public API). */
#ifndef BPCC_RUNTIME_DATA_INTERNAL_H
#define BPCC_RUNTIME_DATA_INTERNAL_H

#include "runtime/data.h"

/* Read a whole file, gunzipping it if it is gzip (zlib's gzread passes other files
 * through). NULL with "cannot open PATH: ..." or "PATH: ..." on error. The buffer has
 * one extra NUL byte after *len (text parsers rely on it); free with bprt_free. */
unsigned char *data_read_file(const char *path, size_t *len);

/* The first non-finite value of x[n]: its index, or -1 if all are finite. */
int64_t data_first_nonfinite(const float *x, int64_t n);

/* Options "k=v,k=v" of a SPEC. data_opt_next splits off one pair; returns 0 at the end,
 * 1 with key/value (NUL-terminated copies in the caller's buffers), -1 on a malformed
 * pair (error set, naming `what`). */
int data_opt_next(const char **s, const char *what, char *key, size_t keylen, char *val, size_t vallen);
int data_opt_int(const char *what, const char *key, const char *val, int64_t lo, int64_t hi, int64_t *out);
int data_opt_double(const char *what, const char *key, const char *val, double lo, double hi, double *out);

/* A generator SPEC split into name ("spiral") and options ("n=100" or NULL): 0 if name
 * is not a generator, 1 with the data in *out, -1 with an error. */
int data_gen_spec(const char *name, const char *opts, uint64_t seed, BprtDataset **out);

#endif
