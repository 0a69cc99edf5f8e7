/* runtime/safetensors.c — checkpoints in the safetensors format.
 *
 * The format (huggingface/safetensors): an 8-byte little-endian header length N, N
 * bytes of JSON, then the raw tensor bytes. The header maps each tensor name to
 * {"dtype", "shape", "data_offsets": [begin, end]} (offsets relative to the first byte
 * after the header) and may hold "__metadata__", a string -> string map.
 *
 * Writing is atomic (temporary file PATH.tmp-PID-N in the same directory, fsync, rename,
 * fsync of the directory), so a crash or a full disk never leaves a half-written checkpoint where
 * the last good one was. A process killed during a save leaves its PATH.tmp-PID-N behind;
 * the next save to PATH removes it (remove_stale_temps). Reading trusts nothing: every length, dtype, shape and offset
 * is checked against the file, and the first problem is reported as "PATH: what". */
#include "runtime/runtime.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "runtime/json.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors.c writes tensors in host byte order, which must be little-endian"
#endif

#define HEADER_MAX (100u << 20)   /* a header larger than 100 MiB is absurd */

char *bprt_shape_str(int rank, const int64_t *dims, char *buf, size_t n) {
  size_t used = 0;
  used += (size_t)snprintf(buf, n, "[");
  for (int i = 0; i < rank && used < n; i++)
    used += (size_t)snprintf(buf + used, n - used, "%s%" PRId64, i ? "," : "", dims[i]);
  if (used < n) snprintf(buf + used, n - used, "]");
  return buf;
}

static int64_t numel_of(int rank, const int64_t *dims) {
  int64_t n = 1;
  for (int i = 0; i < rank; i++) {
    if (dims[i] < 0 || (dims[i] && n > INT64_MAX / dims[i])) return -1;
    n *= dims[i];
  }
  return n;
}

/* ------------------------------------------------------------------ writing */

typedef struct {
  char *s;
  size_t len, cap;
  bool oom;
} Buf;

static void buf_add(Buf *b, const char *s, size_t n) {
  if (b->oom) return;
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n + 1) cap *= 2;
    char *p = bprt_realloc(b->s, cap);
    if (!p) {
      b->oom = true;
      return;
    }
    b->s = p;
    b->cap = cap;
  }
  memcpy(b->s + b->len, s, n);
  b->len += n;
  b->s[b->len] = 0;
}

static void buf_str(Buf *b, const char *s) { buf_add(b, s, strlen(s)); }

/* A JSON string literal with the escapes RFC 8259 requires. */
static void buf_json_string(Buf *b, const char *s) {
  buf_add(b, "\"", 1);
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    char esc[8];
    if (*p == '"' || *p == '\\') {
      esc[0] = '\\', esc[1] = (char)*p;
      buf_add(b, esc, 2);
    } else if (*p < 0x20) {
      snprintf(esc, sizeof esc, "\\u%04x", *p);
      buf_add(b, esc, 6);
    } else {
      buf_add(b, (const char *)p, 1);
    }
  }
  buf_add(b, "\"", 1);
}

static int write_all(int fd, const void *data, size_t n) {
  const char *p = data;
  while (n > 0) {
    ssize_t w = write(fd, p, n > (1u << 30) ? (1u << 30) : n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

/* Sorting (name, index) pairs puts repeated names side by side: n log n, where
 * comparing every pair was quadratic (100,000 tensors: 5e9 string compares). */
typedef struct {
  const char *name;
  int index;
} Named;

static int cmp_named(const void *a, const void *b) {
  const Named *x = a, *y = b;
  int c = strcmp(x->name, y->name);
  return c ? c : (x->index > y->index) - (x->index < y->index);
}

/* Sorts v[n]; the smallest index whose name repeats one at a smaller index, or -1. */
static int first_repeat_of(Named *v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp_named);
  int first = -1;
  for (int i = 1; i < n; i++)
    if (strcmp(v[i].name, v[i - 1].name) == 0 && (first < 0 || v[i].index < first)) first = v[i].index;
  return first;
}

/* The first key of obj, in file order, that repeats an earlier one: its index; -1 if
 * none; -2 out of memory (error set). */
static int first_repeat(const JsonValue *obj) {
  if (obj->n < 2) return -1;
  Named *v = bprt_malloc(sizeof *v * (size_t)obj->n);
  if (!v) return -2;
  for (int i = 0; i < obj->n; i++) v[i] = (Named){obj->keys[i], i};
  int first = first_repeat_of(v, obj->n);
  bprt_free(v);
  return first;
}

/* Check what the caller passed before any file is touched. */
static int validate_write_args(const char *path, const BprtTensorRef *t, int nt, const BprtMeta *meta,
                               int nmeta) {
  if (!path || !*path) return bprt_set_error("checkpoint: empty path");
  if (nt < 0 || (nt > 0 && !t)) return bprt_set_error("%s: bad tensor list", path);
  if (nmeta < 0 || (nmeta > 0 && !meta)) return bprt_set_error("%s: bad metadata list", path);
  for (int i = 0; i < nt; i++) {
    if (!t[i].name || !*t[i].name) return bprt_set_error("%s: tensor %d has no name", path, i);
    if (strcmp(t[i].name, "__metadata__") == 0)
      return bprt_set_error("%s: '__metadata__' is reserved, not a tensor name", path);
    if (t[i].rank < 0 || t[i].rank > BPRT_MAX_RANK)
      return bprt_set_error("%s: tensor '%s' has rank %d (0..%d allowed)", path, t[i].name, t[i].rank,
                            BPRT_MAX_RANK);
    int64_t n = numel_of(t[i].rank, t[i].dims);
    if (n < 0 || n > INT64_MAX / 4) return bprt_set_error("%s: tensor '%s' has a bad shape", path, t[i].name);
    if (n > 0 && !t[i].data) return bprt_set_error("%s: tensor '%s' has no data", path, t[i].name);
  }
  for (int i = 0; i < nmeta; i++)
    if (!meta[i].key || !meta[i].value) return bprt_set_error("%s: metadata entry %d is NULL", path, i);
  int most = nt > nmeta ? nt : nmeta;
  Named *v = bprt_malloc(sizeof *v * ((size_t)most + 1));
  if (!v) return bprt_prefix_error("%s", path);
  for (int i = 0; i < nt; i++) v[i] = (Named){t[i].name, i};
  int rep = first_repeat_of(v, nt);
  for (int i = 0; i < nmeta && rep < 0; i++) v[i] = (Named){meta[i].key, i};
  int mrep = rep < 0 ? first_repeat_of(v, nmeta) : -1;
  bprt_free(v);
  if (rep >= 0) return bprt_set_error("%s: tensor name '%s' appears twice", path, t[rep].name);
  if (mrep >= 0) return bprt_set_error("%s: metadata key '%s' appears twice", path, meta[mrep].key);
  return 0;
}

/* The JSON header, padded with spaces so that 8 + length is a multiple of 8. */
static int build_header(Buf *h, const char *path, const BprtTensorRef *t, int nt, const BprtMeta *meta,
                        int nmeta) {
  char num[96];
  buf_str(h, "{");
  if (nmeta > 0) {
    buf_str(h, "\"__metadata__\":{");
    for (int i = 0; i < nmeta; i++) {
      if (i) buf_str(h, ",");
      buf_json_string(h, meta[i].key);
      buf_str(h, ":");
      buf_json_string(h, meta[i].value);
    }
    buf_str(h, "}");
  }
  uint64_t offset = 0;
  for (int i = 0; i < nt; i++) {
    if (i || nmeta > 0) buf_str(h, ",");
    buf_json_string(h, t[i].name);
    buf_str(h, ":{\"dtype\":\"F32\",\"shape\":[");
    for (int d = 0; d < t[i].rank; d++) {
      snprintf(num, sizeof num, "%s%" PRId64, d ? "," : "", t[i].dims[d]);
      buf_str(h, num);
    }
    uint64_t bytes = (uint64_t)numel_of(t[i].rank, t[i].dims) * 4;
    snprintf(num, sizeof num, "],\"data_offsets\":[%" PRIu64 ",%" PRIu64 "]}", offset, offset + bytes);
    buf_str(h, num);
    offset += bytes;
  }
  buf_str(h, "}");
  while (!h->oom && h->len % 8 != 0) buf_str(h, " ");
  if (h->oom) return bprt_prefix_error("%s", path);
  return 0;
}

/* fsync the directory holding path so the rename itself is durable. */
static void sync_dir(const char *path) {
  const char *slash = strrchr(path, '/');
  char dir[4096];
  if (!slash) snprintf(dir, sizeof dir, ".");
  else if (slash == path) snprintf(dir, sizeof dir, "/");
  else snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
  int fd = open(dir, O_RDONLY | O_DIRECTORY);
  if (fd >= 0) {
    fsync(fd);
    close(fd);
  }
}

/* Create PATH.tmp-PID-N exclusively (mode 0666 & ~umask, like any new file). Returns
 * the bprt_malloc'd name with *fd open for writing, or NULL with the error set. */
static char *open_temp(const char *path, int *fd) {
  static _Atomic unsigned counter;
  size_t n = strlen(path) + 48;
  char *tmp = bprt_malloc(n);
  if (!tmp) {
    bprt_prefix_error("%s", path);
    return NULL;
  }
  for (int attempt = 0; attempt < 100; attempt++) {
    snprintf(tmp, n, "%s.tmp-%ld-%u", path, (long)getpid(), atomic_fetch_add(&counter, 1));
    *fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL, 0666);
    if (*fd >= 0) return tmp;
    if (errno != EEXIST) break;
  }
  int err = errno;
  bprt_set_error("%s: cannot create a temporary file beside it: %s", path, strerror(err));
  bprt_free(tmp);
  errno = err;   /* for bprt_st_check_writable's message */
  return NULL;
}

/* The directory part of path ("." for a bare name) and the name part. */
static void split_path(const char *path, char *dir, size_t n, const char **base) {
  const char *slash = strrchr(path, '/');
  if (!slash) snprintf(dir, n, ".");
  else if (slash == path) snprintf(dir, n, "/");
  else snprintf(dir, n, "%.*s", (int)(slash - path), path);
  *base = slash ? slash + 1 : path;
}

/* "PID-N" with both decimal and nothing after: the PID, else -1. */
static long temp_owner(const char *s) {
  char *end;
  if (*s < '0' || *s > '9') return -1;
  long pid = strtol(s, &end, 10);
  if (*end != '-' || end[1] < '0' || end[1] > '9' || pid <= 0) return -1;
  strtoul(end + 1, &end, 10);
  return *end ? -1 : pid;
}

/* Remove the temporary files of earlier saves to path that were killed before their
 * rename: regular files named BASE.tmp-PID-N (exactly what open_temp makes) whose PID
 * is no live process (kill(PID, 0) says ESRCH) and which were last written before this
 * save began. Both conditions, because either alone can be wrong: a PID is reused, and
 * a process in another PID namespace (a container sharing the directory) has a PID we
 * cannot see, but a save in progress writes its file continuously. Our own PID is never
 * a leftover (another thread may be saving). Best effort: nothing here fails a save. */
static void remove_stale_temps(const char *path, const struct timespec *start) {
  char dir[4096];
  const char *base;
  split_path(path, dir, sizeof dir, &base);
  size_t blen = strlen(base);
  DIR *dp = opendir(dir);
  if (!dp) return;
  struct dirent *de;
  while ((de = readdir(dp)) != NULL) {
    const char *n = de->d_name;
    if (strncmp(n, base, blen) != 0 || strncmp(n + blen, ".tmp-", 5) != 0) continue;
    long pid = temp_owner(n + blen + 5);
    if (pid < 0 || pid == (long)getpid() || kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue;
    char full[8192];
    if ((size_t)snprintf(full, sizeof full, "%s/%s", dir, n) >= sizeof full) continue;
    struct stat sb;
    if (lstat(full, &sb) != 0 || !S_ISREG(sb.st_mode)) continue;
    if (sb.st_mtim.tv_sec > start->tv_sec || (sb.st_mtim.tv_sec == start->tv_sec && sb.st_mtim.tv_nsec >= start->tv_nsec))
      continue;
    unlink(full);
  }
  closedir(dp);
}

int bprt_st_check_writable(const char *path) {
  if (!path || !*path) return bprt_set_error("checkpoint: empty path");
  struct stat sb;
  if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) return bprt_set_error("%s: is a directory", path);
  char dir[4096];
  const char *base;
  split_path(path, dir, sizeof dir, &base);
  if (!*base) return bprt_set_error("%s: names a directory, not a file", path);
  int fd = -1;
  char *tmp = open_temp(path, &fd);
  if (!tmp) {
    int err = errno;
    return bprt_set_error("%s: cannot create a file in '%s': %s", path, dir, strerror(err));
  }
  close(fd);
  unlink(tmp);
  bprt_free(tmp);
  return 0;
}

int bprt_st_write(const char *path, const BprtTensorRef *t, int nt, const BprtMeta *meta, int nmeta) {
  if (validate_write_args(path, t, nt, meta, nmeta) != 0) return -1;
  struct timespec start;
  clock_gettime(CLOCK_REALTIME, &start);
  remove_stale_temps(path, &start);
  Buf h = {0};
  if (build_header(&h, path, t, nt, meta, nmeta) != 0) {
    bprt_free(h.s);
    return -1;
  }
  int fd = -1;
  char *tmp = open_temp(path, &fd);
  if (!tmp) {
    bprt_free(h.s);
    return -1;
  }
  const char *step = "write";
  unsigned char len8[8];
  for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)h.len >> (8 * i));
  int rc = write_all(fd, len8, 8);
  if (rc == 0) rc = write_all(fd, h.s, h.len);
  for (int i = 0; i < nt && rc == 0; i++)
    rc = write_all(fd, t[i].data, (size_t)numel_of(t[i].rank, t[i].dims) * 4);
  if (rc == 0 && fsync(fd) != 0) rc = -1, step = "fsync";
  int err = errno;
  if (close(fd) != 0 && rc == 0) rc = -1, step = "close", err = errno;
  if (rc == 0 && rename(tmp, path) != 0) rc = -1, step = "rename", err = errno;
  if (rc != 0) {
    unlink(tmp);
    bprt_set_error("%s: cannot write checkpoint (%s of %s failed: %s); any previous file is unchanged",
                   path, step, tmp, strerror(err));
  } else {
    sync_dir(path);
  }
  bprt_free(tmp);
  bprt_free(h.s);
  return rc;
}

/* ------------------------------------------------------------------ reading */

struct BprtCheckpoint {
  char *path;
  int ntensors;
  BprtTensorRef *tensors;
  char **names;             /* owned copies of the names */
  int *by_name;             /* tensor indices sorted by name (bprt_st_find) */
  float *block;             /* the file's data bytes: every tensor's data, in one allocation */
  int nmeta;
  BprtMeta *meta;
  char **metastr;           /* owned keys and values, 2 * nmeta */
};

void bprt_st_free(BprtCheckpoint *ck) {
  if (!ck) return;
  for (int i = 0; i < ck->ntensors; i++) bprt_free(ck->names ? ck->names[i] : NULL);
  for (int i = 0; i < 2 * ck->nmeta; i++) bprt_free(ck->metastr ? ck->metastr[i] : NULL);
  bprt_free(ck->names);
  bprt_free(ck->by_name);
  bprt_free(ck->metastr);
  bprt_free(ck->tensors);
  bprt_free(ck->meta);
  bprt_free(ck->block);
  bprt_free(ck->path);
  bprt_free(ck);
}

/* n bytes at the file's current position; 0, or -1 with the error set. */
static int read_exact(int fd, const char *path, void *buf, size_t n, uint64_t at) {
  size_t done = 0;
  while (done < n) {
    size_t want = n - done > (1u << 30) ? (1u << 30) : n - done;
    ssize_t r = read(fd, (char *)buf + done, want);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return bprt_set_error("%s: read error: %s", path, strerror(errno));
    if (r == 0)
      return bprt_set_error("%s: the file ends at byte %" PRIu64 ", before the %zu bytes from byte %" PRIu64
                            " (did it change while it was read?)", path, at + done, n, at);
    done += (size_t)r;
  }
  return 0;
}

typedef struct {
  const char *name;
  const JsonValue *entry;
  uint64_t begin, end;
  int rank;
  int64_t dims[BPRT_MAX_RANK];
} Entry;

static int cmp_begin(const void *a, const void *b) {
  const Entry *x = a, *y = b;
  if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
  return x->end < y->end ? -1 : x->end > y->end;
}

/* Known dtypes other than F32: named in the error so the user knows what the file is. */
static bool known_dtype(const char *d) {
  static const char *const names[] = {"F64", "F16", "BF16", "I64", "I32", "I16", "I8",
                                      "U64", "U32", "U16", "U8",  "BOOL", "F8_E4M3", "F8_E5M2"};
  for (size_t i = 0; i < sizeof names / sizeof *names; i++)
    if (strcmp(d, names[i]) == 0) return true;
  return false;
}

/* What to do about a tensor of another dtype, in PyTorch's and NumPy's words
 * (docs/interop.md): floats convert; an integer or boolean tensor (a step counter, a
 * mask, BatchNorm's num_batches_tracked) is no bpcc parameter and should be left out. */
static const char *dtype_fix(const char *d) {
  if (d[0] == 'F' || (d[0] == 'B' && d[1] == 'F'))
    return "convert it before saving (torch: t.float(); NumPy: a.astype(numpy.float32))";
  return "bpcc parameters are floats; leave it out of the file, or convert it if it is one";
}

/* Validate one tensor entry of the header into e. Offsets are in the file as bytes
 * after the header; data_len is how many such bytes the file has. */
static int parse_entry(const char *path, const char *name, const JsonValue *v, uint64_t hdr_end,
                       uint64_t data_len, Entry *e) {
  e->name = name;
  e->entry = v;
  if (v->kind != JSON_OBJECT)
    return bprt_set_error("%s: header entry '%s' is %s; expected an object with dtype, shape and data_offsets",
                          path, name, json_kind_name(v->kind));
  const JsonValue *dt = json_get(v, "dtype"), *sh = json_get(v, "shape"), *off = json_get(v, "data_offsets");
  if (!dt) return bprt_set_error("%s: tensor '%s' has no dtype", path, name);
  if (!sh) return bprt_set_error("%s: tensor '%s' has no shape", path, name);
  if (!off) return bprt_set_error("%s: tensor '%s' has no data_offsets", path, name);
  if (dt->kind != JSON_STRING)
    return bprt_set_error("%s: tensor '%s': dtype is %s; expected a string", path, name, json_kind_name(dt->kind));
  if (strcmp(dt->string, "F32") != 0) {
    if (known_dtype(dt->string))
      return bprt_set_error("%s: tensor '%s' has dtype %s; bpcc checkpoints hold F32 only: %s", path, name, dt->string,
                            dtype_fix(dt->string));
    return bprt_set_error("%s: tensor '%s' has unknown dtype '%s'", path, name, dt->string);
  }
  if (sh->kind != JSON_ARRAY)
    return bprt_set_error("%s: tensor '%s': shape is %s; expected an array", path, name, json_kind_name(sh->kind));
  if (sh->n > BPRT_MAX_RANK)
    return bprt_set_error("%s: tensor '%s' has rank %d; at most %d is supported", path, name, sh->n, BPRT_MAX_RANK);
  e->rank = sh->n;
  for (int i = 0; i < sh->n; i++) {
    const JsonValue *d = &sh->items[i];
    if (d->kind != JSON_NUMBER || !d->is_int || d->integer < 0)
      return bprt_set_error("%s: tensor '%s': shape[%d] is not a non-negative integer (header byte %" PRIu64 ")",
                            path, name, i, (uint64_t)d->pos + 8);
    e->dims[i] = d->integer;
  }
  int64_t numel = numel_of(e->rank, e->dims);
  if (numel < 0 || numel > INT64_MAX / 4) return bprt_set_error("%s: tensor '%s': shape is too large", path, name);
  if (off->kind != JSON_ARRAY || off->n != 2)
    return bprt_set_error("%s: tensor '%s': data_offsets must be an array [begin, end]", path, name);
  for (int i = 0; i < 2; i++)
    if (off->items[i].kind != JSON_NUMBER || !off->items[i].is_int || off->items[i].integer < 0)
      return bprt_set_error("%s: tensor '%s': data_offsets[%d] is not a non-negative integer", path, name, i);
  e->begin = (uint64_t)off->items[0].integer;
  e->end = (uint64_t)off->items[1].integer;
  char shape[128];
  bprt_shape_str(e->rank, e->dims, shape, sizeof shape);
  if (e->end < e->begin)
    return bprt_set_error("%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64 "] end before they begin", path,
                          name, e->begin, e->end);
  if (e->end - e->begin != (uint64_t)numel * 4)
    return bprt_set_error("%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64 "] hold %" PRIu64
                          " bytes but F32%s needs %" PRIu64,
                          path, name, e->begin, e->end, e->end - e->begin, shape, (uint64_t)numel * 4);
  if (e->end > data_len)
    return bprt_set_error("%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64 "] run past the end of the file "
                          "(%" PRIu64 " data bytes after the header, which ends at byte %" PRIu64 ")",
                          path, name, e->begin, e->end, data_len, hdr_end);
  return 0;
}

/* A new checkpoint over the validated header; it takes block (the file's data bytes,
 * which the tensors tile; each tensor points into it) and by_name (the tensor indices
 * sorted by name), also when it fails. */
static BprtCheckpoint *build(const char *path, const JsonValue *meta, const Entry *ents, int nt, float *block,
                             int *by_name) {
  BprtCheckpoint *ck = bprt_calloc(1, sizeof *ck);
  if (!ck) {
    bprt_free(block);
    bprt_free(by_name);
    return NULL;
  }
  ck->block = block;
  ck->by_name = by_name;
  int nmeta = meta ? meta->n : 0;
  ck->path = bprt_strdup(path);
  ck->tensors = bprt_calloc((size_t)nt + 1, sizeof *ck->tensors);
  ck->names = bprt_calloc((size_t)nt + 1, sizeof *ck->names);
  ck->meta = bprt_calloc((size_t)nmeta + 1, sizeof *ck->meta);
  ck->metastr = bprt_calloc(2 * (size_t)nmeta + 1, sizeof *ck->metastr);
  if (!ck->path || !ck->tensors || !ck->names || !ck->meta || !ck->metastr) goto oom;
  for (int i = 0; i < nmeta; i++, ck->nmeta++) {
    ck->metastr[2 * i] = bprt_strdup(meta->keys[i]);
    ck->metastr[2 * i + 1] = bprt_strdup(meta->items[i].string);
    if (!ck->metastr[2 * i] || !ck->metastr[2 * i + 1]) {
      ck->nmeta++;
      goto oom;
    }
    ck->meta[i] = (BprtMeta){ck->metastr[2 * i], ck->metastr[2 * i + 1]};
  }
  for (int i = 0; i < nt; i++, ck->ntensors++) {
    ck->names[i] = bprt_strdup(ents[i].name);
    if (!ck->names[i]) {
      ck->ntensors++;
      goto oom;
    }
    BprtTensorRef *t = &ck->tensors[i];
    t->name = ck->names[i];
    t->rank = ents[i].rank;
    memcpy(t->dims, ents[i].dims, sizeof t->dims);
    /* an empty tensor may name any offset up to the end: it points at the block */
    t->data = ents[i].begin < ents[i].end ? (float *)((char *)block + ents[i].begin) : block;
  }
  return ck;
oom:
  bprt_prefix_error("%s", path);
  bprt_st_free(ck);
  return NULL;
}

/* The file is read in three steps, each bounded by what the file's size allows before
 * anything is allocated: the 8-byte header length (at most HEADER_MAX and the file's
 * size), the header, then, once every tensor's offsets are checked against the size,
 * the data bytes straight into the checkpoint's block. Only a regular file is read (a
 * FIFO or /dev/zero is an error, not a hang). */
BprtCheckpoint *bprt_st_read(const char *path) {
  if (!path) {
    bprt_set_error("checkpoint: NULL path");
    return NULL;
  }
  uint64_t len;
  int fd = bprt_open_regular(path, &len);
  if (fd < 0) return NULL;
  BprtCheckpoint *ck = NULL;
  JsonValue *root = NULL;
  Entry *ents = NULL;
  Named *keys = NULL;
  int *tensor_of = NULL;
  char *hbuf = NULL;
  float *block = NULL;
  if (len < 8) {
    bprt_set_error("%s: file too short for a safetensors checkpoint (%" PRIu64 " bytes; the header length alone is 8)",
                   path, len);
    goto done;
  }
  unsigned char len8[8];
  if (read_exact(fd, path, len8, 8, 0) != 0) goto done;
  uint64_t hlen = 0;
  for (int i = 7; i >= 0; i--) hlen = hlen << 8 | len8[i];
  if (hlen > HEADER_MAX || hlen > len - 8) {
    bprt_set_error("%s: header length %" PRIu64 " is absurd (the file has %" PRIu64 " bytes%s)", path, hlen, len,
                   hlen > HEADER_MAX ? "; the limit is 100 MiB" : "");
    goto done;
  }
  hbuf = bprt_malloc((size_t)hlen + 1);
  if (!hbuf) {
    bprt_prefix_error("%s", path);
    goto done;
  }
  if (read_exact(fd, path, hbuf, (size_t)hlen, 8) != 0) goto done;
  char err[256];
  size_t errpos = 0;
  root = json_parse(hbuf, (size_t)hlen, err, sizeof err, &errpos);
  if (!root) {
    bprt_set_error("%s: malformed header JSON at byte %zu: %s", path, errpos + 8, err);
    goto done;
  }
  if (root->kind != JSON_OBJECT) {
    bprt_set_error("%s: header is %s; expected a JSON object", path, json_kind_name(root->kind));
    goto done;
  }
  /* The keys sorted once: repeats side by side, and bprt_st_find's index after */
  keys = bprt_malloc(sizeof *keys * ((size_t)root->n + 1));
  tensor_of = bprt_malloc(sizeof *tensor_of * ((size_t)root->n + 1));
  if (!keys || !tensor_of) {
    bprt_prefix_error("%s", path);
    goto done;
  }
  for (int i = 0; i < root->n; i++) keys[i] = (Named){root->keys[i], i};
  int rep = first_repeat_of(keys, root->n);
  if (rep >= 0) {
    bprt_set_error("%s: header names '%s' twice (header byte %zu)", path, root->keys[rep], root->keypos[rep] + 8);
    goto done;
  }
  const JsonValue *meta = NULL;
  ents = bprt_calloc((size_t)root->n + 1, sizeof *ents);
  if (!ents) {
    bprt_prefix_error("%s", path);
    goto done;
  }
  int nt = 0;
  uint64_t data_len = len - 8 - hlen;
  for (int i = 0; i < root->n; i++) {
    const char *key = root->keys[i];
    const JsonValue *v = &root->items[i];
    tensor_of[i] = -1;
    if (strcmp(key, "__metadata__") == 0) {
      if (v->kind != JSON_OBJECT) {
        bprt_set_error("%s: __metadata__ is %s; expected an object of strings", path, json_kind_name(v->kind));
        goto done;
      }
      for (int k = 0; k < v->n; k++)
        if (v->items[k].kind != JSON_STRING) {
          bprt_set_error("%s: __metadata__ value of '%s' is %s; expected a string", path, v->keys[k],
                         json_kind_name(v->items[k].kind));
          goto done;
        }
      int mrep = first_repeat(v);
      if (mrep == -2) {
        bprt_prefix_error("%s", path);
        goto done;
      }
      if (mrep >= 0) {
        bprt_set_error("%s: __metadata__ names '%s' twice (header byte %zu)", path, v->keys[mrep],
                       v->keypos[mrep] + 8);
        goto done;
      }
      meta = v;
      continue;
    }
    if (!*key) {
      bprt_set_error("%s: a tensor has an empty name", path);
      goto done;
    }
    if (parse_entry(path, key, v, 8 + hlen, data_len, &ents[nt]) != 0) goto done;
    tensor_of[i] = nt++;
  }
  /* Sorted by begin, the tensors must tile the data exactly, as the safetensors spec
   * requires: no overlap, no hole, nothing after the last one (empty tensors take no
   * bytes). A hole or a tail means the header and the data do not belong together. */
  Entry *sorted = bprt_malloc(sizeof *sorted * ((size_t)nt + 1));
  if (!sorted) {
    bprt_prefix_error("%s", path);
    goto done;
  }
  memcpy(sorted, ents, sizeof *sorted * (size_t)nt);
  qsort(sorted, (size_t)nt, sizeof *sorted, cmp_begin);
  const Entry *prev = NULL;
  uint64_t covered = 0;
  int bad = 0;
  for (int i = 0; i < nt && !bad; i++) {
    const Entry *e = &sorted[i];
    if (e->begin == e->end) continue;
    if (prev && e->begin < prev->end)
      bad = bprt_set_error("%s: tensors '%s' and '%s' overlap (data bytes [%" PRIu64 ", %" PRIu64 ") and [%" PRIu64
                           ", %" PRIu64 "))",
                           path, prev->name, e->name, prev->begin, prev->end, e->begin, e->end);
    else if (e->begin > covered)
      bad = bprt_set_error("%s: data bytes [%" PRIu64 ", %" PRIu64 ") before tensor '%s' belong to no tensor", path,
                           covered, e->begin, e->name);
    covered = e->end;
    prev = e;
  }
  if (!bad && covered != data_len)
    bad = bprt_set_error("%s: %" PRIu64 " bytes after the last tensor's data (from byte %" PRIu64
                         "): the header does not describe the whole file",
                         path, data_len - covered, 8 + hlen + covered);
  bprt_free(sorted);
  if (bad) goto done;
  if (data_len > SIZE_MAX - 4) {
    bprt_set_error("%s: %" PRIu64 " data bytes do not fit in memory", path, data_len);
    goto done;
  }
  block = bprt_malloc(data_len ? (size_t)data_len : 4);
  if (!block) {
    bprt_prefix_error("%s", path);
    goto done;
  }
  if (read_exact(fd, path, block, (size_t)data_len, 8 + hlen) != 0) goto done;
  int *by_name = bprt_malloc(sizeof *by_name * ((size_t)nt + 1));
  if (!by_name) {
    bprt_prefix_error("%s", path);
    goto done;
  }
  for (int j = 0, k = 0; j < root->n; j++)
    if (tensor_of[keys[j].index] >= 0) by_name[k++] = tensor_of[keys[j].index];
  ck = build(path, meta, ents, nt, block, by_name);
  block = NULL;   /* build owns both, also when it fails */
done:
  close(fd);
  bprt_free(keys);
  bprt_free(tensor_of);
  bprt_free(block);
  bprt_free(hbuf);
  bprt_free(ents);
  json_free(root);
  return ck;
}

const char *bprt_st_path(const BprtCheckpoint *ck) { return ck ? ck->path : NULL; }
int bprt_st_count(const BprtCheckpoint *ck) { return ck ? ck->ntensors : 0; }

const BprtTensorRef *bprt_st_tensor(const BprtCheckpoint *ck, int i) {
  if (!ck || i < 0 || i >= ck->ntensors) return NULL;
  return &ck->tensors[i];
}

const BprtTensorRef *bprt_st_find(const BprtCheckpoint *ck, const char *name) {
  if (!ck || !name) return NULL;
  int lo = 0, hi = ck->ntensors;   /* binary search of by_name */
  while (lo < hi) {
    int mid = lo + (hi - lo) / 2;
    int c = strcmp(ck->tensors[ck->by_name[mid]].name, name);
    if (c == 0) return &ck->tensors[ck->by_name[mid]];
    if (c < 0) lo = mid + 1;
    else hi = mid;
  }
  return NULL;
}

int bprt_st_meta_count(const BprtCheckpoint *ck) { return ck ? ck->nmeta : 0; }

const BprtMeta *bprt_st_meta_at(const BprtCheckpoint *ck, int i) {
  if (!ck || i < 0 || i >= ck->nmeta) return NULL;
  return &ck->meta[i];
}

const char *bprt_st_meta(const BprtCheckpoint *ck, const char *key) {
  if (!ck || !key) return NULL;
  for (int i = 0; i < ck->nmeta; i++)
    if (strcmp(ck->meta[i].key, key) == 0) return ck->meta[i].value;
  return NULL;
}

int bprt_st_load(const BprtCheckpoint *ck, const char *name, float *dst, int rank, const int64_t *dims) {
  if (!ck || !name || !dst || (rank > 0 && !dims) || rank < 0 || rank > BPRT_MAX_RANK)
    return bprt_set_error("bprt_st_load: bad arguments");
  const BprtTensorRef *t = bprt_st_find(ck, name);
  if (!t) return bprt_set_error("%s: missing tensor '%s'", ck->path, name);
  bool same = t->rank == rank;
  for (int i = 0; same && i < rank; i++) same = t->dims[i] == dims[i];
  if (!same) {
    char have[128], want[128];
    return bprt_set_error("%s: tensor '%s' has shape %s, expected %s", ck->path, name,
                          bprt_shape_str(t->rank, t->dims, have, sizeof have),
                          bprt_shape_str(rank, dims, want, sizeof want));
  }
  memcpy(dst, t->data, sizeof(float) * (size_t)numel_of(rank, dims));
  return 0;
}
