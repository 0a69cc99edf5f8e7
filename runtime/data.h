/* runtime/data.h — datasets for `bpcc train` and `bpcc eval` (library bpcc_data).
 *
 * Table of contents:
 *   data.c       Dataset, the SPEC dispatcher, validation split, shuffles, batches,
 *                shape checks against a model's inputs
 *   data_file.c  whole-file reads through zlib (gzip or raw, transparently)
 *   data_idx.c   IDX files and the MNIST directory layout
 *   data_csv.c   CSV with a label column (or float target columns)
 *   data_npy.c   NumPy .npy arrays
 *   data_gen.c   built-in generators: spiral, xor, blobs
 *   data_text.c  byte-level text for language models: windows of a file's bytes
 *
 * A SPEC names where the data comes from (docs/runtime.md has the full grammar):
 *   mnist:DIR                           the four IDX files in DIR (.gz or raw); the t10k
 *                                       files become the validation set
 *   idx:IMAGES,LABELS                   one IDX pair (u8 pixels scaled to [0,1])
 *   csv:PATH[:label=COL,header=1]       numbers, one row per line; label column COL
 *                                       (0-based, negative from the end; default -1)
 *   npy:X.npy,Y.npy                     X: float32/float64/uint8/int32/int64, C order;
 *                                       Y integer: class labels; Y float: targets
 *   idx:IMAGES  npy:X.npy  csv:PATH:label=none
 *                                       features only: no labels or targets (what
 *                                       `bpcc predict` reads; training needs Y)
 *   spiral[:n=1000,classes=3,noise=0.2]  xor[:n=200,noise=0.2]
 *   blobs[:n=300,classes=3,dim=2,std=1.0]
 *   text:FILE[:seq=T,split=0.9]         bytes (vocabulary 256): training windows of T+1
 *                                       bytes at seeded offsets in the first
 *                                       floor(split * size) bytes, validation windows one
 *                                       after another in the rest (the SPEC's own
 *                                       validation set); seq defaults to the model's T
 * Every loader returns NULL / -1 with "where: what" in bprt_last_error(): the file and
 * the byte offset, record, or line and column of the problem. Nothing exits. */
#ifndef BPCC_RUNTIME_DATA_H
#define BPCC_RUNTIME_DATA_H

#include "runtime/runtime.h"

/* n rows; each row has nfeat float features (row-major in x) and either a class label
 * (labels != NULL, 0 <= label < nclasses) or twidth float targets (targets != NULL), or
 * neither: a features-only dataset (labels and targets NULL, twidth 0), which predict
 * reads and bprt_data_check_y rejects. */
/* The bytes of a text file (text:FILE), shared by its training and validation sets. */
typedef struct {
  unsigned char *bytes;   /* the content (gunzipped) */
  int64_t size;           /* bytes */
  int64_t split;          /* floor(split * size): training [0, split), validation [split, size) */
  double split_frac;      /* the split= fraction */
  int64_t seq;            /* T: a window is T + 1 bytes; 0 until the model's T is known */
  char *path;
  int refs;
} BprtText;

typedef struct {
  int64_t n;
  int64_t nfeat;
  int frank;                      /* the shape of one row's features, e.g. [28, 28]; */
  int64_t fdims[BPRT_MAX_RANK];   /*   product == nfeat */
  float *x;                       /* [n, nfeat], BPRT_ALIGN-aligned */
  int32_t *labels;                /* [n] or NULL */
  int32_t nclasses;               /* number of classes when labels != NULL, else 0 */
  float *targets;                 /* [n, twidth] or NULL */
  int64_t twidth;
  char *source;                   /* what it was loaded from, for messages */
  char *file;                     /* CSV: the file the rows were read from, else NULL */
  int64_t *lines;                 /* CSV: [n] the 1-based line of each row in file */
  /* Text (text:FILE): no x, labels or targets, but windows of text->bytes, x = window
   * bytes [0, T), y = bytes [1, T] (int32 class indices for two label[B, T, 256] inputs).
   * Training (text_val false): n = split - T window offsets, drawn at random; validation:
   * n windows at split + i*T. nfeat = T. n is 0 until seq is known (bprt_text_bind). */
  BprtText *text;
  bool text_val;
} BprtDataset;

/* A dataset with uninitialized storage for n rows of nfeat features (frank = 1) and
 * labels (twidth == 0), targets (twidth > 0) or neither (twidth == BPRT_NO_TARGETS).
 * NULL on out of memory. */
#define BPRT_NO_TARGETS (-1)
BprtDataset *bprt_dataset_new(int64_t n, int64_t nfeat, int64_t twidth, const char *source);
void bprt_dataset_free(BprtDataset *d);

/* Load SPEC. *train gets the data; *val gets the spec's own validation set (mnist's
 * t10k files) or NULL. seed drives the generators. Returns 0, or -1 with an error. */
int bprt_data_load(const char *spec, uint64_t seed, BprtDataset **train, BprtDataset **val);

/* The loaders behind the SPECs, callable directly. labels (idx) and ypath (npy) may be
 * NULL: the features alone. */
int bprt_load_mnist(const char *dir, BprtDataset **train, BprtDataset **test);
BprtDataset *bprt_load_idx(const char *images, const char *labels);
/* label_col: 0-based, negative counts from the end. ntargets > 0: the last ntargets
 * columns are float targets and there is no label column; ntargets == BPRT_NO_TARGETS:
 * every column is a feature (label_col is not used). */
BprtDataset *bprt_load_csv(const char *path, int label_col, bool header, int ntargets);
BprtDataset *bprt_load_npy(const char *xpath, const char *ypath);
BprtDataset *bprt_gen_spiral(int64_t n, int classes, double noise, uint64_t seed);
BprtDataset *bprt_gen_xor(int64_t n, double noise, uint64_t seed);
BprtDataset *bprt_gen_blobs(int64_t n, int classes, int dim, double std, uint64_t seed);

/* ------------------------------------------------------------ text (data_text.c) */

/* "FILE[:seq=T,split=0.9]" (the part after text:): *train and *val share the file's
 * bytes. Errors: the file (missing, not regular, unreadable, a gzip bomb), seq < 1,
 * split outside (0, 1), a file too short for one window of each part. */
int bprt_load_text(const char *rest, BprtDataset **train, BprtDataset **val);
/* The model's context: sets seq to T where the SPEC left it out, else checks that it is
 * T ("text:f.txt: seq=32 does not match the model's context T = 64 (input x:
 * label[B,64,256])" is the caller's to prefix), and counts the windows: -1 with an
 * error when the file is too short for one training and one validation window. */
int bprt_text_bind(BprtDataset *d, int64_t seq);
/* Training windows k = first .. first + rows - 1 of the run: window k starts at
 * Philox(seed, text stream, k) mod (split - T), a pure function of (seed, k), so a run
 * resumed after k windows continues the same stream. x, y: rows * T int32 each. */
void bprt_text_train_windows(const BprtDataset *d, uint64_t seed, uint64_t first, int64_t rows, int32_t *x, int32_t *y);
/* Validation windows i = first .. first + rows - 1, at split + i*T. */
void bprt_text_val_windows(const BprtDataset *d, int64_t first, int64_t rows, int32_t *x, int32_t *y);
/* The offset of training window k (for tests). */
int64_t bprt_text_train_offset(const BprtDataset *d, uint64_t seed, uint64_t k);

/* `--val-split F`: move round(F * n) rows, chosen by a permutation drawn from the seed,
 * into *val and the rest into *train (each keeps the original row order). 0 < F < 1 and
 * both parts non-empty. d is not changed. */
int bprt_data_split(const BprtDataset *d, double frac, uint64_t seed, BprtDataset **train,
                    BprtDataset **val);

/* perm[0..n) = a permutation of 0..n-1 drawn from (seed, epoch) by Fisher-Yates: the
 * same on every run and every thread count. */
void bprt_data_permutation(int64_t n, uint64_t seed, uint64_t epoch, int64_t *perm);

/* One pass over a dataset in batches of `batch` rows; the last batch may be partial
 * (it is trained, not dropped). With shuffle the order is bprt_data_permutation(n,
 * seed, epoch); without, rows come in order and x/labels/targets point straight into
 * the dataset. */
typedef struct {
  const BprtDataset *data;
  int64_t batch, pos, index;      /* rows per batch; next row; batches yielded so far */
  int64_t *order;                 /* NULL: in order */
  float *xbuf, *tbuf;             /* gather buffers (shuffle only) */
  int32_t *lbuf;
  int32_t *xtok, *ytok;           /* text: the windows of the batch, rows * T each */
  /* The current batch, valid until the next call: rows x [rows, nfeat], labels [rows]
   * or targets [rows, twidth] (NULL where the dataset has none). */
  int64_t rows;
  const float *x;
  const int32_t *labels;
  const float *targets;
} BprtBatchIter;
/* A text dataset's batches are its validation windows in order (the training windows
 * are drawn by the steps loop): the iterator fills xtok / ytok, and x, labels and
 * targets are NULL. */

int bprt_batch_begin(BprtBatchIter *it, const BprtDataset *d, int64_t batch, bool shuffle,
                     uint64_t seed, uint64_t epoch);
/* Advance to the next batch: returns its row count (it->rows), or 0 after the last. */
int64_t bprt_batch_next(BprtBatchIter *it);
int64_t bprt_batch_count(const BprtBatchIter *it);   /* ceil(n / batch) */
void bprt_batch_end(BprtBatchIter *it);

/* Check a dataset against a model input. dims[0] is the batch dim (printed as B).
 *   features: rows of nfeat == product of dims[1..]:
 *     "data has 784 features per row; model input x expects f32[B,100]"
 *   labels (is_label): dims = [B, C]; the data has labels all < C:
 *     "data label 12 at sample 7 (0-based) is out of range for model input y: label[B,10]"
 *   or, where the rows come from a file's lines (CSV; d->lines), located as every
 *   other CSV error and returning -2:
 *     "a.csv:9: data label 12 is out of range for model input y: label[B,10]"
 *   float targets: twidth == product of dims[1..].
 * Returns 0, or -1 with exactly that message (the caller adds the data's source as
 * context), or -2 with a message that starts with FILE:LINE (complete as it is). */
int bprt_data_check_x(const BprtDataset *d, const char *input, int rank, const int64_t *dims);
int bprt_data_check_y(const BprtDataset *d, const char *input, bool is_label, int rank,
                      const int64_t *dims);

#endif
