/* runtime/data.c — datasets: the SPEC dispatcher, validation split, per-epoch
 * shuffles, batches, and the check of a dataset against a model's inputs.
 *
 * Randomness comes from the counter-based RNG with the data streams of runtime.h, so
 * a split or an epoch's order depends only on (seed, epoch): a run resumed at epoch 3
 * sees exactly the batches the uninterrupted run saw. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/data_internal.h"

/* "19.0 GiB", "412.5 MiB" */
static const char *size_text(char *buf, size_t n, int64_t bytes) {
  double v = (double)bytes;
  if (v >= 1073741824.0) snprintf(buf, n, "%.1f GiB", v / 1073741824.0);
  else snprintf(buf, n, "%.1f MiB", v / 1048576.0);
  return buf;
}

BprtDataset *bprt_dataset_new(int64_t n, int64_t nfeat, int64_t twidth, const char *source) {
  if (n < 1 || nfeat < 1 || twidth < BPRT_NO_TARGETS || nfeat > (INT64_C(1) << 40) / n ||
      (twidth > 0 && twidth > (INT64_C(1) << 40) / n)) {
    bprt_set_error("%s: bad dataset size (%" PRId64 " rows of %" PRId64 " features)", source ? source : "data", n,
                   nfeat);
    return NULL;
  }
  /* malloc would overcommit: a set larger than the memory left is refused before it is
   * allocated, as the model is (runtime/memavail.c) */
  int64_t bytes = (int64_t)sizeof(float) * n * (nfeat + (twidth > 0 ? twidth : 0)) + (twidth == 0 ? 4 * n : 0);
  const char *limit = NULL;
  int64_t avail = bprt_mem_available(&limit);
  if (avail >= 0 && bytes > avail) {
    char need[32], have[32];
    bprt_set_error("%s: the data needs %s (%" PRId64 " rows of %" PRId64 " features); %s is available (%s)",
                   source ? source : "data", size_text(need, sizeof need, bytes), n, nfeat,
                   size_text(have, sizeof have, avail), limit);
    return NULL;
  }
  BprtDataset *d = bprt_calloc(1, sizeof *d);
  if (!d) return NULL;
  d->n = n;
  d->nfeat = nfeat;
  d->frank = 1;
  d->fdims[0] = nfeat;
  d->twidth = twidth > 0 ? twidth : 0;
  d->source = bprt_strdup(source ? source : "data");
  d->x = bprt_malloc(sizeof(float) * (size_t)(n * nfeat));
  if (twidth > 0) d->targets = bprt_malloc(sizeof(float) * (size_t)(n * twidth));
  else if (twidth == 0) d->labels = bprt_malloc(sizeof(int32_t) * (size_t)n);
  if (!d->source || !d->x || (twidth > 0 && !d->targets) || (twidth == 0 && !d->labels)) {
    bprt_prefix_error("%s", source ? source : "data");   /* "blobs:n=...: out of memory (allocating N bytes)" */
    bprt_dataset_free(d);
    return NULL;
  }
  return d;
}

void bprt_dataset_free(BprtDataset *d) {
  if (!d) return;
  bprt_free(d->x);
  bprt_free(d->labels);
  bprt_free(d->targets);
  bprt_free(d->source);
  bprt_free(d->file);
  bprt_free(d->lines);
  data_text_release(d->text);
  bprt_free(d);
}

/* ------------------------------------------------------------------ SPEC */

static const char *const spec_help =
    "expected mnist:DIR, idx:IMAGES,LABELS, csv:PATH[:label=COL,header=1], npy:X.npy,Y.npy, "
    "spiral[:n=..,classes=..,noise=..], xor[:n=..,noise=..], blobs[:n=..,classes=..,dim=..,std=..] or "
    "text:FILE[:seq=T,split=0.9]";

/* "A,B" -> two strings in a, b (n bytes each); "A" alone (no comma) -> a, and b empty:
 * the features without labels. */
static int split_pair(const char *spec, const char *rest, char *a, char *b, size_t n) {
  const char *comma = strchr(rest, ',');
  if (!comma) comma = rest + strlen(rest);
  if (comma == rest || (*comma && !comma[1]))
    return bprt_set_error("data '%s': expected two paths separated by a comma (or one, for the features alone)", spec);
  if ((size_t)(comma - rest) >= n || strlen(comma) >= n) return bprt_set_error("data '%s': path too long", spec);
  memcpy(a, rest, (size_t)(comma - rest));
  a[comma - rest] = 0;
  strcpy(b, *comma ? comma + 1 : "");
  return 0;
}

/* csv:PATH[:label=COL,header=1,target=K]: the options are the part after the last ':'
 * when it contains '=' (so paths may contain ':'). label=none: no label column. */
static BprtDataset *load_csv_spec(const char *spec, const char *rest) {
  char path[4096];
  const char *colon = strrchr(rest, ':');
  const char *opts = NULL;
  size_t plen = strlen(rest);
  if (colon && strchr(colon, '=')) {
    opts = colon + 1;
    plen = (size_t)(colon - rest);
  }
  if (plen == 0 || plen >= sizeof path) {
    bprt_set_error("data '%s': %s", spec, plen ? "path too long" : "missing the CSV path");
    return NULL;
  }
  memcpy(path, rest, plen);
  path[plen] = 0;
  int64_t label = -1, header = 0, targets = 0;
  bool have_label = false, no_label = false;
  char key[64], val[256];
  int rc;
  while ((rc = data_opt_next(&opts, "csv", key, sizeof key, val, sizeof val)) == 1) {
    if (strcmp(key, "label") == 0 && strcmp(val, "none") == 0) rc = 0, have_label = no_label = true;
    else if (strcmp(key, "label") == 0) rc = data_opt_int("csv", key, val, -100000, 100000, &label), have_label = true;
    else if (strcmp(key, "header") == 0) rc = data_opt_int("csv", key, val, 0, 1, &header);
    else if (strcmp(key, "target") == 0) rc = data_opt_int("csv", key, val, 1, 100000, &targets);
    else rc = bprt_set_error("csv: unknown option '%s' (known: label, header, target)", key);
    if (rc != 0) return NULL;
  }
  if (rc < 0) return NULL;
  if (have_label && targets > 0) {
    bprt_set_error("csv: label= and target= exclude each other (a CSV has class labels or float targets)");
    return NULL;
  }
  return bprt_load_csv(path, (int)label, header != 0, no_label ? BPRT_NO_TARGETS : (int)targets);
}

int bprt_data_load(const char *spec, uint64_t seed, BprtDataset **train, BprtDataset **val) {
  if (train) *train = NULL;
  if (val) *val = NULL;
  if (!spec || !train) return bprt_set_error("bprt_data_load: NULL argument");
  const char *colon = strchr(spec, ':');
  size_t kn = colon ? (size_t)(colon - spec) : strlen(spec);
  char kind[16];
  if (kn >= sizeof kind) return bprt_set_error("unknown data source '%s': %s", spec, spec_help);
  memcpy(kind, spec, kn);
  kind[kn] = 0;
  const char *rest = colon ? colon + 1 : NULL;
  char a[4096], b[4096];
  if (strcmp(kind, "mnist") == 0) {
    if (!rest || !*rest) return bprt_set_error("data '%s': expected mnist:DIR", spec);
    return bprt_load_mnist(rest, train, val);
  }
  if (strcmp(kind, "idx") == 0 || strcmp(kind, "npy") == 0) {
    if (!rest || split_pair(spec, rest, a, b, sizeof a) != 0)
      return rest ? -1 : bprt_set_error("data '%s': expected %s:A,B", spec, kind);
    const char *y = b[0] ? b : NULL;   /* "idx:IMAGES", "npy:X.npy": features only */
    *train = kind[0] == 'i' ? bprt_load_idx(a, y) : bprt_load_npy(a, y);
    return *train ? 0 : -1;
  }
  if (strcmp(kind, "csv") == 0) {
    if (!rest) return bprt_set_error("data '%s': expected csv:PATH", spec);
    *train = load_csv_spec(spec, rest);
    return *train ? 0 : -1;
  }
  if (strcmp(kind, "text") == 0) {
    BprtDataset *v = NULL;
    if (bprt_load_text(rest, train, &v)) return -1;
    if (val) *val = v;
    else bprt_dataset_free(v);
    return 0;
  }
  int rc = data_gen_spec(kind, rest, seed, train);
  if (rc == 0) return bprt_set_error("unknown data source '%s': %s", spec, spec_help);
  return rc > 0 ? 0 : -1;
}

/* ------------------------------------------------------- split and shuffle */

void bprt_data_permutation(int64_t n, uint64_t seed, uint64_t epoch, int64_t *perm) {
  uint64_t stream = bprt_stream_data(BPRT_DATA_SHUFFLE, epoch);
  for (int64_t i = 0; i < n; i++) perm[i] = i;
  /* Fisher-Yates from the end: swap i with j uniform in [0, i], j drawn at index i. */
  for (int64_t i = n - 1; i > 0; i--) {
    int64_t j = (int64_t)bprt_rng_below(seed, stream, (uint64_t)i, (uint64_t)i + 1);
    int64_t t = perm[i];
    perm[i] = perm[j];
    perm[j] = t;
  }
}

/* Rows rows[0..m) of d (ascending) into a new dataset. */
static BprtDataset *subset(const BprtDataset *d, const int64_t *rows, int64_t m, const char *what) {
  char source[4400];
  snprintf(source, sizeof source, "%s (%s)", d->source, what);
  BprtDataset *s = bprt_dataset_new(m, d->nfeat, d->labels ? 0 : d->targets ? d->twidth : BPRT_NO_TARGETS, source);
  if (!s) return NULL;
  s->frank = d->frank;
  memcpy(s->fdims, d->fdims, sizeof s->fdims);
  s->nclasses = d->nclasses;
  if (d->lines) {   /* rows keep their file lines */
    s->file = bprt_strdup(d->file);
    s->lines = bprt_malloc(sizeof(int64_t) * (size_t)m);
    if (!s->file || !s->lines) {
      bprt_dataset_free(s);
      return NULL;
    }
    for (int64_t k = 0; k < m; k++) s->lines[k] = d->lines[rows[k]];
  }
  for (int64_t k = 0; k < m; k++) {
    memcpy(s->x + k * d->nfeat, d->x + rows[k] * d->nfeat, sizeof(float) * (size_t)d->nfeat);
    if (d->labels) s->labels[k] = d->labels[rows[k]];
    else if (d->targets) memcpy(s->targets + k * d->twidth, d->targets + rows[k] * d->twidth, sizeof(float) * (size_t)d->twidth);
  }
  return s;
}

static int cmp_i64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return (x > y) - (x < y);
}

int bprt_data_split(const BprtDataset *d, double frac, uint64_t seed, BprtDataset **train, BprtDataset **val) {
  *train = *val = NULL;
  if (!d) return bprt_set_error("bprt_data_split: NULL dataset");
  if (!(frac > 0 && frac < 1)) return bprt_set_error("--val-split %g: must be between 0 and 1", frac);
  int64_t nval = (int64_t)llround(frac * (double)d->n);
  if (nval < 1 || nval >= d->n)
    return bprt_set_error("--val-split %g of %" PRId64 " rows leaves %s empty", frac, d->n,
                          nval < 1 ? "the validation set" : "the training set");
  int64_t *perm = bprt_malloc(sizeof(int64_t) * (size_t)d->n);
  if (!perm) return -1;
  /* The split's permutation uses its own stream, so it never equals an epoch's order. */
  uint64_t stream = bprt_stream_data(BPRT_DATA_SPLIT, 0);
  for (int64_t i = 0; i < d->n; i++) perm[i] = i;
  for (int64_t i = d->n - 1; i > 0; i--) {
    int64_t j = (int64_t)bprt_rng_below(seed, stream, (uint64_t)i, (uint64_t)i + 1);
    int64_t t = perm[i];
    perm[i] = perm[j];
    perm[j] = t;
  }
  qsort(perm, (size_t)nval, sizeof *perm, cmp_i64);
  qsort(perm + nval, (size_t)(d->n - nval), sizeof *perm, cmp_i64);
  *val = subset(d, perm, nval, "validation split");
  *train = *val ? subset(d, perm + nval, d->n - nval, "training split") : NULL;
  bprt_free(perm);
  if (!*train) {
    bprt_dataset_free(*val);
    *val = NULL;
    return -1;
  }
  return 0;
}

/* ------------------------------------------------------------------ batches */

int bprt_batch_begin(BprtBatchIter *it, const BprtDataset *d, int64_t batch, bool shuffle, uint64_t seed,
                     uint64_t epoch) {
  memset(it, 0, sizeof *it);
  if (!d) return bprt_set_error("bprt_batch_begin: NULL dataset");
  if (batch < 1) return bprt_set_error("batch size %" PRId64 " must be at least 1", batch);
  it->data = d;
  it->batch = batch;
  if (d->text) {   /* validation windows in order, into buffers of int32 tokens */
    if (!d->text_val || d->n < 1)
      return bprt_set_error("%s: text training windows are drawn by steps, not batched in order", d->source);
    int64_t b = batch < d->n ? batch : d->n;
    it->xtok = bprt_malloc(sizeof(int32_t) * (size_t)(b * d->nfeat));
    it->ytok = bprt_malloc(sizeof(int32_t) * (size_t)(b * d->nfeat));
    if (!it->xtok || !it->ytok) {
      bprt_batch_end(it);
      return -1;
    }
    return 0;
  }
  if (!shuffle) return 0;
  int64_t b = batch < d->n ? batch : d->n;
  it->order = bprt_malloc(sizeof(int64_t) * (size_t)d->n);
  it->xbuf = bprt_malloc(sizeof(float) * (size_t)(b * d->nfeat));
  if (d->labels) it->lbuf = bprt_malloc(sizeof(int32_t) * (size_t)b);
  else if (d->targets) it->tbuf = bprt_malloc(sizeof(float) * (size_t)(b * d->twidth));
  if (!it->order || !it->xbuf || (d->labels && !it->lbuf) || (d->targets && !it->tbuf)) {
    bprt_batch_end(it);
    return -1;
  }
  bprt_data_permutation(d->n, seed, epoch, it->order);
  return 0;
}

int64_t bprt_batch_count(const BprtBatchIter *it) {
  return it->data ? (it->data->n + it->batch - 1) / it->batch : 0;
}

int64_t bprt_batch_next(BprtBatchIter *it) {
  const BprtDataset *d = it->data;
  it->rows = 0;
  it->x = NULL, it->labels = NULL, it->targets = NULL;
  if (!d || it->pos >= d->n) return 0;
  int64_t rows = d->n - it->pos < it->batch ? d->n - it->pos : it->batch;
  if (d->text) {
    bprt_text_val_windows(d, it->pos, rows, it->xtok, it->ytok);
  } else if (!it->order) {
    it->x = d->x + it->pos * d->nfeat;
    if (d->labels) it->labels = d->labels + it->pos;
    else if (d->targets) it->targets = d->targets + it->pos * d->twidth;
  } else {
    for (int64_t k = 0; k < rows; k++) {
      int64_t r = it->order[it->pos + k];
      memcpy(it->xbuf + k * d->nfeat, d->x + r * d->nfeat, sizeof(float) * (size_t)d->nfeat);
      if (d->labels) it->lbuf[k] = d->labels[r];
      else if (d->targets) memcpy(it->tbuf + k * d->twidth, d->targets + r * d->twidth, sizeof(float) * (size_t)d->twidth);
    }
    it->x = it->xbuf;
    it->labels = it->lbuf;
    it->targets = it->tbuf;
  }
  it->pos += rows;
  it->index++;
  it->rows = rows;
  return rows;
}

void bprt_batch_end(BprtBatchIter *it) {
  bprt_free(it->order);
  bprt_free(it->xbuf);
  bprt_free(it->lbuf);
  bprt_free(it->tbuf);
  bprt_free(it->xtok);
  bprt_free(it->ytok);
  memset(it, 0, sizeof *it);
}

/* ------------------------------------------------------------------ checks */

/* "f32[B,100]" / "label[B,10]" */
static void type_str(bool label, int rank, const int64_t *dims, char *buf, size_t n) {
  size_t used = (size_t)snprintf(buf, n, "%s[", label ? "label" : "f32");
  for (int i = 0; i < rank && used < n; i++) {
    if (i == 0) used += (size_t)snprintf(buf + used, n - used, "B");
    else used += (size_t)snprintf(buf + used, n - used, ",%" PRId64, dims[i]);
  }
  if (used < n) snprintf(buf + used, n - used, "]");
}

static int64_t row_size(int rank, const int64_t *dims) {
  int64_t n = 1;
  for (int i = 1; i < rank; i++) n *= dims[i];
  return n;
}

int bprt_data_check_x(const BprtDataset *d, const char *input, int rank, const int64_t *dims) {
  if (!d || !input || rank < 1 || rank > BPRT_MAX_RANK || !dims)
    return bprt_set_error("bprt_data_check_x: bad arguments");
  char ty[160];
  type_str(false, rank, dims, ty, sizeof ty);
  if (row_size(rank, dims) != d->nfeat)
    return bprt_set_error("data has %" PRId64 " features per row; model input %s expects %s", d->nfeat, input, ty);
  return 0;
}

int bprt_data_check_y(const BprtDataset *d, const char *input, bool is_label, int rank, const int64_t *dims) {
  if (!d || !input || rank < 1 || rank > BPRT_MAX_RANK || !dims || (is_label && rank < 2))
    return bprt_set_error("bprt_data_check_y: bad arguments");
  char ty[160];
  type_str(is_label, rank, dims, ty, sizeof ty);
  if (is_label && rank > 2 && d->labels)   /* label[B, T, C]: one class per position */
    return bprt_set_error("data has one label per row; model input %s expects %s (%" PRId64 " per row)", input, ty,
                          row_size(rank - 1, dims));
  if (!d->labels && !d->targets)
    return bprt_set_error("data has features only, no %s; model input %s expects %s", is_label ? "labels" : "targets",
                          input, ty);
  if (is_label) {
    if (!d->labels)
      return bprt_set_error("data has float targets (%" PRId64 " per row), not class labels; model input %s expects %s",
                            d->twidth, input, ty);
    for (int64_t r = 0; r < d->n; r++)
      if (d->labels[r] >= dims[1]) {
        if (d->lines && d->file) {
          bprt_set_error("%s:%" PRId64 ": data label %d is out of range for model input %s: %s", d->file, d->lines[r],
                         d->labels[r], input, ty);
          return -2;
        }
        return bprt_set_error("data label %d at sample %" PRId64 " (0-based) is out of range for model input %s: %s",
                              d->labels[r], r, input, ty);
      }
    return 0;
  }
  if (!d->targets)
    return bprt_set_error("data has class labels, not float targets; model input %s expects %s", input, ty);
  if (row_size(rank, dims) != d->twidth)
    return bprt_set_error("data has %" PRId64 " targets per row; model input %s expects %s", d->twidth, input, ty);
  return 0;
}
