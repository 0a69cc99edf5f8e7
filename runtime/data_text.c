/* runtime/data_text.c — byte-level text for language models: text:FILE[:seq=T,split=0.9].
 *
 * The file is read whole (gzip transparently, bounded as every loader is:
 * data_read_file) and its bytes are the tokens: vocabulary 256, no tokenizer. The first
 * split = floor(split_frac * size) bytes train, the rest validate. A window is T + 1
 * consecutive bytes; x = its bytes [0, T), y = bytes [1, T], so that position t of y is
 * the byte that follows x[0..t].
 *
 *   training    window k of the run starts at Philox(seed, text stream, k) mod (split - T),
 *               uniform over [0, split - T - 1] (the window's last byte is below split).
 *               A pure function of (seed, k): a resumed run that has drawn k windows
 *               draws window k next, and the thread count changes nothing.
 *   validation  windows at split + i*T for i = 0, 1, ... while the window fits in the
 *               file: consecutive windows overlap by one byte, so every validation byte
 *               after the first is predicted exactly once.
 *
 * There is no epoch: the steps loop of runtime/train.c draws batches of windows. The
 * datasets hold no rows; x, labels and targets are NULL and `text` points at the bytes,
 * shared (reference-counted) by the training and the validation set. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "runtime/data_internal.h"

static void text_release(BprtText *t) {
  if (!t || --t->refs > 0) return;
  bprt_free(t->bytes);
  bprt_free(t->path);
  bprt_free(t);
}

/* Called by bprt_dataset_free. */
void data_text_release(BprtText *t) { text_release(t); }

/* The window counts of t at its seq: training offsets and validation windows. */
static int64_t train_offsets(const BprtText *t) { return t->split - t->seq; }
static int64_t val_windows(const BprtText *t) { return t->seq > 0 ? (t->size - t->split - 1) / t->seq : 0; }

static int count_windows(BprtText *t) {
  if (train_offsets(t) < 1 || val_windows(t) < 1)
    return bprt_set_error("%s: %" PRId64 " bytes split at %g are too few for windows of seq=%" PRId64
                          " + 1 bytes: the training part has %" PRId64 " bytes and the validation part %" PRId64
                          " (each needs at least %" PRId64 ")",
                          t->path, t->size, t->split_frac, t->seq, t->split, t->size - t->split, t->seq + 1);
  return 0;
}

static BprtDataset *text_set(BprtText *t, bool val) {
  BprtDataset *d = bprt_calloc(1, sizeof *d);
  char source[4200];
  snprintf(source, sizeof source, "text:%s (%s)", t->path, val ? "validation" : "training");
  if (!d || !(d->source = bprt_strdup(source))) {
    bprt_free(d);
    return NULL;
  }
  d->text = t;
  d->text_val = val;
  d->nclasses = 256;
  t->refs++;
  return d;
}

int bprt_text_bind(BprtDataset *d, int64_t seq) {
  if (!d || !d->text) return bprt_set_error("bprt_text_bind: not a text dataset");
  BprtText *t = d->text;
  if (seq < 1) return bprt_set_error("text:%s: the context T = %" PRId64 " must be at least 1", t->path, seq);
  if (t->seq == 0) t->seq = seq;
  else if (t->seq != seq)
    return bprt_set_error("text:%s: seq=%" PRId64 " does not match the model's context T = %" PRId64, t->path, t->seq,
                          seq);
  if (count_windows(t)) return -1;
  d->nfeat = t->seq;
  d->frank = 1;
  d->fdims[0] = t->seq;
  d->n = d->text_val ? val_windows(t) : train_offsets(t);
  return 0;
}

int bprt_load_text(const char *rest, BprtDataset **train, BprtDataset **val) {
  *train = *val = NULL;
  char path[4096];
  const char *colon = rest ? strrchr(rest, ':') : NULL;
  const char *opts = NULL;
  size_t plen = rest ? strlen(rest) : 0;
  if (colon && strchr(colon, '=')) {   /* options after the last ':' (paths may hold ':') */
    opts = colon + 1;
    plen = (size_t)(colon - rest);
  }
  if (plen == 0) return bprt_set_error("data 'text:%s': missing the file (expected text:FILE[:seq=T,split=0.9])", rest ? rest : "");
  if (plen >= sizeof path) return bprt_set_error("data 'text:%s': path too long", rest);
  memcpy(path, rest, plen);
  path[plen] = 0;
  int64_t seq = 0;
  double split = 0.9;
  char key[64], v[256];
  int rc;
  while ((rc = data_opt_next(&opts, "text", key, sizeof key, v, sizeof v)) == 1) {
    if (strcmp(key, "seq") == 0) rc = data_opt_int("text", key, v, 1, INT64_C(1) << 30, &seq);
    else if (strcmp(key, "split") == 0) {
      rc = data_opt_double("text", key, v, 0, 1, &split);
      if (rc == 0 && !(split > 0 && split < 1))
        rc = bprt_set_error("text: split=%s must be between 0 and 1 (exclusive): the fraction of the file that trains", v);
    } else rc = bprt_set_error("text: unknown option '%s' (known: seq, split)", key);
    if (rc != 0) return -1;
  }
  if (rc < 0) return -1;
  BprtText *t = bprt_calloc(1, sizeof *t);
  if (!t) return -1;
  size_t len = 0;
  t->path = bprt_strdup(path);
  t->bytes = t->path ? data_read_file(path, &len) : NULL;
  if (!t->bytes) {
    text_release(t);   /* refs 0: freed */
    return -1;
  }
  t->size = (int64_t)len;
  t->split_frac = split;
  t->split = (int64_t)floor(split * (double)t->size);
  t->seq = seq;
  if (seq > 0 && count_windows(t)) {
    text_release(t);
    return -1;
  }
  t->refs = 0;
  *train = text_set(t, false);
  *val = *train ? text_set(t, true) : NULL;
  if (!*val) {
    if (*train) bprt_dataset_free(*train);
    else text_release(t);
    *train = NULL;
    return -1;
  }
  if (seq > 0) {
    bprt_text_bind(*train, seq);
    bprt_text_bind(*val, seq);
  }
  return 0;
}

int64_t bprt_text_train_offset(const BprtDataset *d, uint64_t seed, uint64_t k) {
  const BprtText *t = d->text;
  return (int64_t)bprt_rng_below(seed, bprt_stream_data(BPRT_DATA_TEXT, 0), k, (uint64_t)train_offsets(t));
}

static void window(const BprtText *t, int64_t off, int32_t *x, int32_t *y) {
  const unsigned char *b = t->bytes + off;
  for (int64_t j = 0; j < t->seq; j++) {
    x[j] = b[j];
    y[j] = b[j + 1];
  }
}

void bprt_text_train_windows(const BprtDataset *d, uint64_t seed, uint64_t first, int64_t rows, int32_t *x, int32_t *y) {
  const BprtText *t = d->text;
  for (int64_t r = 0; r < rows; r++)
    window(t, bprt_text_train_offset(d, seed, first + (uint64_t)r), x + r * t->seq, y + r * t->seq);
}

void bprt_text_val_windows(const BprtDataset *d, int64_t first, int64_t rows, int32_t *x, int32_t *y) {
  const BprtText *t = d->text;
  for (int64_t r = 0; r < rows; r++) window(t, t->split + (first + r) * t->seq, x + r * t->seq, y + r * t->seq);
}
