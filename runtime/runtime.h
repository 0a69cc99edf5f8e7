/* runtime/runtime.h — the core runtime that generated code and `bpcc train` call.
 *
 * Plain C11 + libc, libm and pthread: it is linked statically into every shared library
 * bpcc writes, so it includes nothing of the compiler. The ABI below is stable and
 * prefixed `bprt_`. Table of contents (library bpcc_runtime):
 *
 *   alloc.c        aligned allocation through one hook; failure injection for tests
 *   error.c        the thread-local last error string
 *   pool.c         a persistent thread pool and parallel-for; workers park on a condvar
 *   rng.c          Philox4x32-10, the counter-based RNG: value = f(seed, stream, index)
 *   init.c         parameter initializers (zeros ... he_normal), PyTorch's formulas
 *   file.c         opening input files: regular files only, never blocking
 *   memavail.c     the memory this process can still get (before large allocations)
 *   json.c         a tiny JSON reader for safetensors headers (runtime/json.h, internal)
 *   safetensors.c  checkpoints: atomic write, fully validated read
 *   ckmatch.c      a checkpoint's names and shapes against what a model reads
 *   fxsum.c        exact, order-independent f32 sums in 128-bit fixed point
 *                  (runtime/fxsum.h; --deterministic-reduce)
 *
 * Error convention: a function that can fail returns -1 (or NULL) and leaves a message
 * in bprt_last_error(); it never exits, asserts or prints. Messages name the file and
 * the position of the problem when there is one.
 *
 * The data loaders (MNIST, IDX, CSV, NPY, generators) are in runtime/data.h, a separate
 * library (bpcc_data) because they link zlib.
 */
#ifndef BPCC_RUNTIME_H
#define BPCC_RUNTIME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BPRT_MAX_RANK 8         /* tensors in checkpoints and datasets */
#define BPRT_ALIGN 64           /* bprt_malloc alignment: one cache line, one zmm */

/* ------------------------------------------------------------ allocation (alloc.c) */

/* Every allocation of the runtime goes through bprt_malloc / bprt_realloc: one hook,
 * so tests can fail the Nth allocation. On failure: NULL and "out of memory
 * (allocating N bytes)" as the last error. bprt_malloc returns BPRT_ALIGN-aligned
 * memory; bprt_calloc zeroes it and checks count * size for overflow. bprt_realloc
 * keeps only malloc's alignment (16): use it for growable byte and index buffers. */
void *bprt_malloc(size_t n);
void *bprt_calloc(size_t count, size_t size);
void *bprt_realloc(void *p, size_t n);
void bprt_free(void *p);
char *bprt_strdup(const char *s);
/* The (n+1)-th allocation from now fails, and every one after it, until
 * bprt_alloc_fail_after(-1) restores normal behaviour. */
void bprt_alloc_fail_after(long n);
/* Number of allocations made since the process started (tests size their loops). */
long bprt_alloc_count(void);

/* ------------------------------------------------------------------ errors (error.c) */

/* The last error of the calling thread. bprt_set_error formats it and returns -1, so
 * `return bprt_set_error("...")` is the idiom. bprt_last_error() is "" when none. */
int bprt_set_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Prepend context to the current message: "PREFIX: old message". Returns -1. */
int bprt_prefix_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
const char *bprt_last_error(void);
void bprt_clear_error(void);

/* ------------------------------------------------------------------ files (file.c) */

/* Open path for reading if it is a regular file: the descriptor (blocking reads) and
 * its size in *size. -1 with "cannot open PATH: REASON" or "PATH: a FIFO (named pipe),
 * not a regular file: ..." (directory, character device such as /dev/zero, block
 * device, socket). Opening never blocks, not even on a FIFO without a writer. */
int bprt_open_regular(const char *path, uint64_t *size);

/* ------------------------------------------------------- memory available (memavail.c) */

/* The bytes this process can still allocate without being OOM-killed or swapping: the
 * least of MemAvailable, RLIMIT_AS and RLIMIT_DATA less what is in use, and the
 * cgroup's limit less its usage; -1 when none is known. *source (may be NULL) names
 * the limit that set it ("MemAvailable in /proc/meminfo", ...). */
int64_t bprt_mem_available(const char **source);

/* ------------------------------------------------------------- thread pool (pool.c) */

/* fn(ctx, begin, end, worker) processes indices [begin, end); worker is 0..threads-1
 * (the calling thread is worker 0), for per-thread scratch space. */
typedef void (*BprtRangeFn)(void *ctx, int64_t begin, int64_t end, int worker);

/* A pool of `threads` workers: the caller plus threads-1 persistent pthreads that
 * sleep on a condition variable between jobs (after a spin of a few microseconds). */
typedef struct BprtPool BprtPool;

/* Ask Linux once for the AMX tile state (arch_prctl ARCH_REQ_XCOMP_PERM, XTILEDATA):
 * every thread of the process may then run tile instructions (after its own
 * ldtilecfg). 1 if granted (now or before), 0 if refused or not x86-64 Linux. Models
 * whose products run on AMX tiles (bprt_model_desc.uses_amx) call it when created. */
int bprt_amx_request(void);

/* threads <= 0: one per usable CPU. NULL and an error if no thread can be started. */
BprtPool *bprt_pool_new(int threads);
void bprt_pool_free(BprtPool *p);
int bprt_pool_threads(const BprtPool *p);
/* Stop the workers and start `threads` new ones (<= 0: one per CPU). Returns 0 / -1.
 * Must not be called from inside a task of the same pool. */
int bprt_pool_resize(BprtPool *p, int threads);
/* Run fn over [0, n) split into chunks of at least `grain` indices (grain <= 0: 1).
 * Every index is covered exactly once; returns when all chunks are done. The schedule
 * is static: c = min(threads, ceil(n / grain)) consecutive chunks whose sizes differ by
 * at most one, chunk k run by worker k, so per-worker partial results combined in
 * worker order are deterministic for a given thread count. Small jobs (n <= grain), a
 * 1-thread pool, and calls from inside a task run inline (as one chunk, with the
 * caller's worker id). Concurrent callers from different threads are serialized. */
void bprt_pool_for(BprtPool *p, int64_t n, int64_t grain, BprtRangeFn fn, void *ctx);

/* The process-wide pool that generated code uses, created on first use with one
 * thread per CPU (or the count given to bprt_set_threads, i.e. `--threads N`). */
int bprt_set_threads(int threads);     /* creates or resizes; <= 0: one per CPU */
int bprt_get_threads(void);
void bprt_parallel_for(int64_t n, int64_t grain, BprtRangeFn fn, void *ctx);
/* Join the global pool's threads; a later use starts it again with the same count.
 * After fork() the child starts a fresh global pool (pthread_atfork). */
void bprt_shutdown(void);
int bprt_cpu_count(void);            /* CPUs this process may run on (affinity mask) */

/* --------------------------------------------------------------------- RNG (rng.c) */

/* Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC'11):
 * a bijection of a 128-bit counter under a 64-bit key. The runtime's random numbers are
 * pure functions of (seed, stream, index):
 *     key     = { seed & 0xffffffff, seed >> 32 }
 *     counter = { block & 0xffffffff, block >> 32, stream & 0xffffffff, stream >> 32 }
 * where block = index / 4 and lane = index % 4 for 32-bit draws. So a tensor filled by
 * any number of threads in any order holds the same values. */
void bprt_philox4x32_10(const uint32_t counter[4], const uint32_t key[2], uint32_t out[4]);

uint32_t bprt_rng_u32(uint64_t seed, uint64_t stream, uint64_t index);
/* 64-bit draw: block index / 2, lanes (2k, 2k+1) as (low, high). */
uint64_t bprt_rng_u64(uint64_t seed, uint64_t stream, uint64_t index);
/* Uniform in [0, 1) with 24 random bits (exactly representable as float). */
float bprt_rng_uniform(uint64_t seed, uint64_t stream, uint64_t index);
/* Standard normal by Box-Muller: block index / 4 gives lanes (u0, u1, u2, u3); element
 * 4k uses r(u0) cos(t(u1)), 4k+1 r(u0) sin(t(u1)), 4k+2 and 4k+3 the same with (u2, u3).
 * Uniforms for the radius are (u + 0.5) / 2^32, never 0. */
double bprt_rng_normal(uint64_t seed, uint64_t stream, uint64_t index);
/* An unbiased-enough integer in [0, bound) (bound >= 1): bprt_rng_u64 % bound. */
uint64_t bprt_rng_below(uint64_t seed, uint64_t stream, uint64_t index, uint64_t bound);

/* Fill out[i] for i in [0, n) with element index offset + i. Parallel on the global
 * pool; values independent of the thread count. */
void bprt_fill_uniform(float *out, int64_t n, float a, float b, uint64_t seed, uint64_t stream,
                       uint64_t offset);
void bprt_fill_normal(float *out, int64_t n, float mean, float std, uint64_t seed,
                      uint64_t stream, uint64_t offset);
/* Inverted dropout: mask[i] = 1 / (1 - p) with probability 1 - p, else 0, where element i
 * is dropped when bprt_rng_uniform(seed, stream, i) < p. 0 <= p < 1. */
void bprt_dropout_mask(float *mask, int64_t n, float p, uint64_t seed, uint64_t stream);

/* Streams: which purpose a random sequence serves. The top two bits are the purpose, so
 * the sequences of different purposes never meet.
 *   init     stream = parameter index (0, 1, ... in declaration / instruction order)
 *   dropout  stream = 1<<62 | mask id << 40 | step (step < 2^40, mask id < 2^22)
 *   data     stream = 2<<62 | purpose << 40 | epoch (shuffles, the validation split,
 *            the built-in generators) */
static inline uint64_t bprt_stream_init(uint32_t param_index) { return param_index; }
static inline uint64_t bprt_stream_dropout(uint32_t mask_id, uint64_t step) {
  return (UINT64_C(1) << 62) | ((uint64_t)(mask_id & 0x3fffff) << 40) |
         (step & ((UINT64_C(1) << 40) - 1));
}
enum { BPRT_DATA_SHUFFLE, BPRT_DATA_SPLIT, BPRT_DATA_GENERATE, BPRT_DATA_GENERATE_CENTERS, BPRT_DATA_TEXT, BPRT_DATA_SAMPLE };
static inline uint64_t bprt_stream_data(uint32_t purpose, uint64_t epoch) {
  return (UINT64_C(2) << 62) | ((uint64_t)(purpose & 0x3fffff) << 40) |
         (epoch & ((UINT64_C(1) << 40) - 1));
}

/* ----------------------------------------------------------- initialization (init.c) */

/* The same numbering as InitKind in ir/ir.h (INIT_ZEROS ... INIT_HE_NORMAL), copied
 * here because the runtime includes nothing of the compiler; tests/runtime checks the
 * two enums agree. */
typedef enum {
  BPRT_INIT_ZEROS,
  BPRT_INIT_ONES,
  BPRT_INIT_CONSTANT,        /* a = value */
  BPRT_INIT_NORMAL,          /* a = std (mean 0) */
  BPRT_INIT_UNIFORM,         /* U(a, b) */
  BPRT_INIT_XAVIER_UNIFORM,  /* U(-s, s), s = sqrt(6 / (fan_in + fan_out)) */
  BPRT_INIT_XAVIER_NORMAL,   /* N(0, 2 / (fan_in + fan_out)) */
  BPRT_INIT_HE_UNIFORM,      /* U(-s, s), s = sqrt(6 / fan_in) */
  BPRT_INIT_HE_NORMAL,       /* N(0, 2 / fan_in) */
  BPRT_INIT__COUNT
} BprtInitKind;

extern const char *const bprt_init_names[BPRT_INIT__COUNT];   /* "zeros" ... "he_normal" */

/* Fans of a weight W[in, out, k...]: fan_in = dims[0] * receptive, fan_out = dims[1] *
 * receptive, receptive = product of dims[2..]; a vector (or scalar) of n elements has
 * fan_in = fan_out = n. Returns -1 for rank > BPRT_MAX_RANK or a dim < 1. */
int bprt_init_fans(int rank, const int64_t *dims, double *fan_in, double *fan_out);

/* Fill data[numel(dims)] by `kind` with element i drawn from (seed, stream, i). Returns
 * -1 with an error for an unknown kind, bad dims, a NULL pointer, a negative or
 * non-finite std, or a > b. */
int bprt_init_tensor(float *data, int rank, const int64_t *dims, int kind, double a, double b,
                     uint64_t seed, uint64_t stream);

/* ------------------------------------------------ checkpoints (safetensors.c) */

/* A tensor in a checkpoint: F32, little-endian, C order. */
typedef struct {
  const char *name;
  int rank;
  int64_t dims[BPRT_MAX_RANK];
  const float *data;            /* numel(dims) floats */
} BprtTensorRef;

/* A string -> string pair of the `__metadata__` map. */
typedef struct {
  const char *key, *value;
} BprtMeta;

/* Write `path` in safetensors format: an 8-byte little-endian header length, the JSON
 * header {"__metadata__": {...}, "name": {"dtype": "F32", "shape": [...],
 * "data_offsets": [begin, end]}, ...} padded with spaces to a multiple of 8, then the
 * tensors' bytes in the order given. Atomic: a temporary file in the same directory,
 * fsync, rename over `path`, fsync of the directory. On any error the temporary file
 * is removed, the old `path` is left as it was, and -1 is returned. Names must be
 * unique and non-empty; "__metadata__" is not a tensor name. */
int bprt_st_write(const char *path, const BprtTensorRef *tensors, int ntensors,
                  const BprtMeta *meta, int nmeta);
/* The temporary files PATH.tmp-PID-N that earlier saves to `path` left when they were
 * killed before their rename are removed by the next bprt_st_write to `path`: those whose
 * PID is no live process and which were last modified before that write began. */

/* Whether a checkpoint can be written at `path` now, by creating and removing a
 * temporary file beside it (what bprt_st_write does first): 0, or -1 with
 * "PATH: cannot create a file in 'DIR': No such file or directory" or "PATH: is a
 * directory". For checking a --save path before a long run. */
int bprt_st_check_writable(const char *path);

typedef struct BprtCheckpoint BprtCheckpoint;

/* Read and validate a whole checkpoint: length, header JSON, every dtype, shape and
 * offset, overlaps and range. NULL with "PATH: problem" on any error. Only F32 tensors
 * are accepted (what bprt_st_write writes). */
BprtCheckpoint *bprt_st_read(const char *path);
void bprt_st_free(BprtCheckpoint *ck);
const char *bprt_st_path(const BprtCheckpoint *ck);
int bprt_st_count(const BprtCheckpoint *ck);
const BprtTensorRef *bprt_st_tensor(const BprtCheckpoint *ck, int i);  /* file order */
const BprtTensorRef *bprt_st_find(const BprtCheckpoint *ck, const char *name);
int bprt_st_meta_count(const BprtCheckpoint *ck);
const BprtMeta *bprt_st_meta_at(const BprtCheckpoint *ck, int i);
const char *bprt_st_meta(const BprtCheckpoint *ck, const char *key);   /* NULL if absent */
/* Copy tensor `name` into dst, checking it exists and has exactly shape dims[rank]:
 * "PATH: missing tensor 'h.W'" or "PATH: tensor 'h.W' has shape [784,800], expected
 * [784,100]". Returns 0 / -1. */
int bprt_st_load(const BprtCheckpoint *ck, const char *name, float *dst, int rank,
                 const int64_t *dims);

/* Does ck hold exactly the tensors need[0..n) (names and shapes)? File tensors whose
 * name starts with skip_prefix (may be NULL) are passed over. 0, or -1 with "PATH: ..."
 * listing every missing and unknown name, pairing them by shape, and saying
 * "transposed?" where a shape is the expected one reversed (ckmatch.c). `model` names
 * the reader in messages. Only names and shapes are read, never the data. */
int bprt_st_match(const BprtCheckpoint *ck, const char *model, const BprtTensorRef *need, int n,
                  const char *skip_prefix);

/* "[784,800]" into buf (returns buf); helper for messages. */
char *bprt_shape_str(int rank, const int64_t *dims, char *buf, size_t n);

#endif
