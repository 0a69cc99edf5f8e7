/* tests/runtime/test_safetensors.c — checkpoints: round trip, every corrupt-file case
 * with its exact message, atomic write under failure, allocation-failure sweeps. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#include "runtime/runtime.h"
#include "testutil.h"

TEMP_DIR_FIXTURE

/* Three tensors of rank 2, 1 and 0 and metadata with characters that need escapes. */
static float w[6] = {1, -2, 3.5f, 4, 5, 6e-8f}, b[3] = {0.5f, -0.25f, 1e30f}, s[1] = {42};
static const BprtTensorRef tensors[3] = {
    {"h.W", 2, {2, 3}, w},
    {"h.b", 1, {3}, b},
    {"step_scale", 0, {0}, s},
};
static const BprtMeta meta[3] = {{"step", "100"}, {"epoch", "3"}, {"note", "quote\" back\\slash\nnewline \x01 ü"}};

static void test_round_trip(void **state) {
  (void)state;
  const char *path = path_in(dir, "ck.safetensors");
  assert_int_equal(bprt_st_write(path, tensors, 3, meta, 3), 0);
  assert_int_equal(count_entries(dir), 1);   /* no temporary file left behind */
  BprtCheckpoint *ck = bprt_st_read(path);
  assert_non_null(ck);
  assert_string_equal(bprt_st_path(ck), path);
  assert_int_equal(bprt_st_count(ck), 3);
  for (int i = 0; i < 3; i++) {
    const BprtTensorRef *t = bprt_st_tensor(ck, i);
    assert_string_equal(t->name, tensors[i].name);
    assert_int_equal(t->rank, tensors[i].rank);
    for (int d = 0; d < t->rank; d++) assert_int_equal(t->dims[d], tensors[i].dims[d]);
    int64_t n = 1;
    for (int d = 0; d < t->rank; d++) n *= t->dims[d];
    assert_memory_equal(t->data, tensors[i].data, sizeof(float) * (size_t)n);
  }
  assert_null(bprt_st_tensor(ck, 3));
  assert_int_equal(bprt_st_meta_count(ck), 3);
  for (int i = 0; i < 3; i++) assert_string_equal(bprt_st_meta(ck, meta[i].key), meta[i].value);
  assert_null(bprt_st_meta(ck, "absent"));
  assert_string_equal(bprt_st_meta_at(ck, 1)->key, "epoch");
  float got[6];
  const int64_t dims[2] = {2, 3}, wrong[2] = {3, 2};
  assert_int_equal(bprt_st_load(ck, "h.W", got, 2, dims), 0);
  assert_memory_equal(got, w, sizeof w);
  assert_int_equal(bprt_st_load(ck, "h.W", got, 2, wrong), -1);
  char want[512];
  snprintf(want, sizeof want, "%s: tensor 'h.W' has shape [2,3], expected [3,2]", path);
  assert_string_equal(bprt_last_error(), want);
  assert_int_equal(bprt_st_load(ck, "out.W", got, 2, dims), -1);
  snprintf(want, sizeof want, "%s: missing tensor 'out.W'", path);
  assert_string_equal(bprt_last_error(), want);
  bprt_st_free(ck);

  /* Overwriting replaces the file (atomically) with the new contents. */
  assert_int_equal(bprt_st_write(path, tensors + 1, 1, NULL, 0), 0);
  ck = bprt_st_read(path);
  assert_non_null(ck);
  assert_int_equal(bprt_st_count(ck), 1);
  assert_int_equal(bprt_st_meta_count(ck), 0);
  assert_string_equal(bprt_st_tensor(ck, 0)->name, "h.b");
  bprt_st_free(ck);
  /* An empty checkpoint is valid too. */
  assert_int_equal(bprt_st_write(path, NULL, 0, NULL, 0), 0);
  ck = bprt_st_read(path);
  assert_non_null(ck);
  assert_int_equal(bprt_st_count(ck), 0);
  bprt_st_free(ck);
  unlink(path);
}

/* The header layout is the standard one: 8-byte length, JSON, padding to 8. */
static void test_header_bytes(void **state) {
  (void)state;
  const char *path = path_in(dir, "hdr.safetensors");
  const BprtTensorRef t[1] = {{"a", 1, {2}, w}};
  const BprtMeta m[1] = {{"k", "v"}};
  assert_int_equal(bprt_st_write(path, t, 1, m, 1), 0);
  FILE *f = fopen(path, "rb");
  unsigned char buf[256];
  size_t n = fread(buf, 1, sizeof buf, f);
  fclose(f);
  const char *json = "{\"__metadata__\":{\"k\":\"v\"},\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
  size_t jl = strlen(json), padded = (jl + 7) / 8 * 8;
  assert_int_equal(n, 8 + padded + 8);
  assert_int_equal(buf[0], padded);
  for (int i = 1; i < 8; i++) assert_int_equal(buf[i], 0);
  assert_memory_equal(buf + 8, json, jl);
  for (size_t i = jl; i < padded; i++) assert_int_equal(buf[8 + i], ' ');
  assert_memory_equal(buf + 8 + padded, w, 8);
  unlink(path);
}

/* ---- corrupt files: each gives exactly its message ---- */

/* Write [len8][header][data] with an explicit header length. */
static void write_st(const char *path, uint64_t hlen, const char *header, const void *data, size_t dlen) {
  size_t hl = strlen(header);
  unsigned char *buf = malloc(8 + hl + dlen + 1);
  for (int i = 0; i < 8; i++) buf[i] = (unsigned char)(hlen >> (8 * i));
  memcpy(buf + 8, header, hl);
  if (dlen) memcpy(buf + 8 + hl, data, dlen);
  write_bytes(path, buf, 8 + hl + dlen);
  free(buf);
}

static void expect_read_error(const char *path, const char *want_after_path) {
  BprtCheckpoint *ck = bprt_st_read(path);
  if (ck) fail_msg("expected an error for %s", want_after_path);
  char want[1024];
  snprintf(want, sizeof want, "%s: %s", path, want_after_path);
  assert_string_equal(bprt_last_error(), want);
}

static void corrupt(const char *header, size_t dlen, const char *want) {
  const char *path = path_in(dir, "bad.safetensors");
  unsigned char data[64] = {0};
  write_st(path, strlen(header), header, data, dlen);
  expect_read_error(path, want);
  unlink(path);
}

static void test_corrupt_files(void **state) {
  (void)state;
  const char *path = path_in(dir, "bad.safetensors");
  char want[1024];
  /* Missing file. */
  assert_null(bprt_st_read(path));
  snprintf(want, sizeof want, "cannot open %s: No such file or directory", path);
  assert_string_equal(bprt_last_error(), want);
  /* Not regular files: errors at once, never a hang (a FIFO without a writer would
   * block open(2); /dev/zero would be read forever). alarm() turns a hang into a
   * failure. */
  alarm(10);
  const char *fifo = path_in(dir, "fifo.safetensors");
  assert_int_equal(mkfifo(fifo, 0600), 0);
  assert_null(bprt_st_read(fifo));
  snprintf(want, sizeof want, "%s: a FIFO (named pipe), not a regular file: only regular files can be read here",
           fifo);
  assert_string_equal(bprt_last_error(), want);
  unlink(fifo);
  assert_null(bprt_st_read("/dev/zero"));
  assert_string_equal(bprt_last_error(),
                      "/dev/zero: a character device, not a regular file: only regular files can be read here");
  assert_null(bprt_st_read(dir));
  snprintf(want, sizeof want, "%s: a directory, not a regular file: only regular files can be read here", dir);
  assert_string_equal(bprt_last_error(), want);
  alarm(0);
  /* Too short. */
  write_bytes(path, "\x05\0\0", 3);
  expect_read_error(path, "file too short for a safetensors checkpoint (3 bytes; the header length alone is 8)");
  /* Absurd header lengths. */
  write_st(path, 1000000000000ull, "{}", NULL, 0);
  expect_read_error(path, "header length 1000000000000 is absurd (the file has 10 bytes; the limit is 100 MiB)");
  write_st(path, 50, "{}", NULL, 0);
  expect_read_error(path, "header length 50 is absurd (the file has 10 bytes)");
  /* Malformed JSON, with the byte offset in the file. */
  corrupt("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},}", 4,
          "malformed header JSON at byte 62: expected a string key");
  corrupt("{\"a\" {}}", 0, "malformed header JSON at byte 13: expected ':' after object key");
  corrupt("{\"a\":{\"dtype\":\"F32\",\"shape\":[1,],\"data_offsets\":[0,4]}}", 4,
          "malformed header JSON at byte 39: expected a value");
  corrupt("{\"a\":\"unterminated}", 0, "malformed header JSON at byte 13: unterminated string");
  corrupt("{} x", 0, "malformed header JSON at byte 11: unexpected text after the JSON value");
  corrupt("", 0, "malformed header JSON at byte 8: unexpected end of text");
  corrupt("[1,2]", 0, "header is an array; expected a JSON object");
  /* Entries. */
  corrupt("{\"a\":3}", 0, "header entry 'a' is a number; expected an object with dtype, shape and data_offsets");
  corrupt("{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "tensor 'a' has no dtype");
  corrupt("{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, "tensor 'a' has no shape");
  corrupt("{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, "tensor 'a' has no data_offsets");
  corrupt("{\"a\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4,
          "tensor 'a' has dtype F16; bpcc checkpoints hold F32 only: convert it before saving (torch: t.float(); "
          "NumPy: a.astype(numpy.float32))");
  corrupt("{\"a\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[0,8]}}", 8,
          "tensor 'a' has dtype I64; bpcc checkpoints hold F32 only: bpcc parameters are floats; leave it out of the "
          "file, or convert it if it is one");
  corrupt("{\"a\":{\"dtype\":\"Q7\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4, "tensor 'a' has unknown dtype 'Q7'");
  corrupt("{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4,
          "tensor 'a': shape[0] is not a non-negative integer (header byte 37)");
  corrupt("{\"a\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", 4,
          "tensor 'a': shape[0] is not a non-negative integer (header byte 37)");
  corrupt("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4,
          "tensor 'a': data_offsets must be an array [begin, end]");
  corrupt("{\"w\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,12]}}", 24,
          "tensor 'w': data_offsets [0, 12] hold 12 bytes but F32[2,3] needs 24");
  corrupt("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}}", 8,
          "tensor 'w': data_offsets [8, 4] end before they begin");
  corrupt("{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8,
          "tensor 'w': data_offsets [0, 16] run past the end of the file (8 data bytes after the header, which "
          "ends at byte 63)");
  corrupt("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
          "\"b\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[8,24]}}", 24,
          "tensors 'a' and 'b' overlap (data bytes [0, 16) and [8, 24))");
  corrupt("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
          "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8,
          "header names 'a' twice (header byte 62)");
  corrupt("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8,
          "data bytes [0, 4) before tensor 'a' belong to no tensor");
  corrupt("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
          "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}", 12,
          "data bytes [4, 8) before tensor 'b' belong to no tensor");
  corrupt("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 10,
          "6 bytes after the last tensor's data (from byte 66): the header does not describe the whole file");
  corrupt("{}", 3, "3 bytes after the last tensor's data (from byte 10): the header does not describe the whole file");
  corrupt("{\"__metadata__\":{\"step\":3}}", 0, "__metadata__ value of 'step' is a number; expected a string");
  corrupt("{\"__metadata__\":[]}", 0, "__metadata__ is an array; expected an object of strings");
  corrupt("{\"__metadata__\":{\"step\":\"3\",\"step\":\"4\"}}", 0, "__metadata__ names 'step' twice (header byte 36)");
  corrupt("{\"\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "a tensor has an empty name");
  /* A valid file with a bit flipped in the length is caught too. */
  assert_int_equal(bprt_st_write(path, tensors, 3, meta, 3), 0);
  FILE *f = fopen(path, "r+b");
  fputc(0x01, f);   /* header length low byte: now the JSON is cut short */
  fclose(f);
  BprtCheckpoint *ck = bprt_st_read(path);
  assert_null(ck);
  assert_non_null(strstr(bprt_last_error(), "malformed header JSON at byte"));
  unlink(path);
}

/* Deep nesting and hostile escapes stop cleanly. */
static void test_hostile_json(void **state) {
  (void)state;
  char deep[400];
  memset(deep, '[', 200);
  deep[200] = 0;
  corrupt(deep, 0, "malformed header JSON at byte 73: nesting deeper than 64 levels");
  corrupt("{\"a\\u0000\":1}", 0, "malformed header JSON at byte 11: \\u0000 in a string is not supported");
  corrupt("{\"\\ud800\":1}", 0, "malformed header JSON at byte 10: unpaired surrogate in \\u escape");
  corrupt("{\"\\q\":1}", 0, "malformed header JSON at byte 10: bad escape in string");
  /* Escapes that are valid decode to UTF-8. */
  const char *path = path_in(dir, "esc.safetensors");
  const char *h = "{\"__metadata__\":{\"k\":\"\\u00fc\\ud83d\\ude00\\t\\/\"}}";
  write_st(path, strlen(h), h, NULL, 0);
  BprtCheckpoint *ck = bprt_st_read(path);
  assert_non_null(ck);
  assert_string_equal(bprt_st_meta(ck, "k"), "\xc3\xbc\xf0\x9f\x98\x80\t/");
  bprt_st_free(ck);
  unlink(path);
}

static void test_write_argument_errors(void **state) {
  (void)state;
  const char *path = path_in(dir, "args.safetensors");
  char want[1024];
  const BprtTensorRef dup[2] = {{"x", 1, {1}, w}, {"x", 1, {1}, b}};
  assert_int_equal(bprt_st_write(path, dup, 2, NULL, 0), -1);
  snprintf(want, sizeof want, "%s: tensor name 'x' appears twice", path);
  assert_string_equal(bprt_last_error(), want);
  const BprtTensorRef reserved[1] = {{"__metadata__", 1, {1}, w}};
  assert_int_equal(bprt_st_write(path, reserved, 1, NULL, 0), -1);
  snprintf(want, sizeof want, "%s: '__metadata__' is reserved, not a tensor name", path);
  assert_string_equal(bprt_last_error(), want);
  const BprtTensorRef nodata[1] = {{"x", 1, {4}, NULL}};
  assert_int_equal(bprt_st_write(path, nodata, 1, NULL, 0), -1);
  snprintf(want, sizeof want, "%s: tensor 'x' has no data", path);
  assert_string_equal(bprt_last_error(), want);
  const char *nodir = path_in(dir, "no/such/dir/ck.safetensors");
  assert_int_equal(bprt_st_write(nodir, tensors, 3, NULL, 0), -1);
  snprintf(want, sizeof want, "%s: cannot create a temporary file beside it: No such file or directory", nodir);
  assert_string_equal(bprt_last_error(), want);
  assert_int_equal(count_entries(dir), 0);
}

/* A write that fails half way (the file size limit makes write() return EFBIG) leaves
 * the old checkpoint byte for byte and no temporary file. */
static void test_atomic_write_failure(void **state) {
  (void)state;
  const char *path = path_in(dir, "atomic.safetensors");
  assert_int_equal(bprt_st_write(path, tensors, 3, meta, 3), 0);
  FILE *f = fopen(path, "rb");
  unsigned char before[1024];
  size_t nbefore = fread(before, 1, sizeof before, f);
  fclose(f);

  enum { N = 1 << 16 };
  float *big = calloc(N, sizeof(float));
  const BprtTensorRef large[1] = {{"big", 1, {N}, big}};
  struct rlimit old;
  getrlimit(RLIMIT_FSIZE, &old);
  void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
  struct rlimit small = {4096, old.rlim_max};
  assert_int_equal(setrlimit(RLIMIT_FSIZE, &small), 0);
  int rc = bprt_st_write(path, large, 1, NULL, 0);
  setrlimit(RLIMIT_FSIZE, &old);
  signal(SIGXFSZ, prev);
  free(big);
  assert_int_equal(rc, -1);
  assert_non_null(strstr(bprt_last_error(), "cannot write checkpoint (write of "));
  assert_non_null(strstr(bprt_last_error(), "failed: File too large); any previous file is unchanged"));
  assert_int_equal(count_entries(dir), 1);
  f = fopen(path, "rb");
  unsigned char after[1024];
  size_t nafter = fread(after, 1, sizeof after, f);
  fclose(f);
  assert_int_equal(nafter, nbefore);
  assert_memory_equal(after, before, nbefore);
  unlink(path);
}

/* Out of memory at every allocation of a write and a read: an error, never a crash or
 * a leak (the ASan build checks leaks); on write failure the old file stays. */
static void test_alloc_failure_sweep(void **state) {
  (void)state;
  const char *path = path_in(dir, "oom.safetensors");
  assert_int_equal(bprt_st_write(path, tensors + 1, 1, NULL, 0), 0);
  int failures = 0;
  for (long k = 0; k < 200; k++) {
    bprt_alloc_fail_after(k);
    int rc = bprt_st_write(path, tensors, 3, meta, 3);
    bprt_alloc_fail_after(-1);
    assert_int_equal(count_entries(dir), 1);
    if (rc == 0) break;
    failures++;
    assert_non_null(strstr(bprt_last_error(), "out of memory (allocating "));
    BprtCheckpoint *ck = bprt_st_read(path);   /* still the old one */
    assert_non_null(ck);
    assert_int_equal(bprt_st_count(ck), 1);
    bprt_st_free(ck);
  }
  assert_true(failures > 0);
  failures = 0;
  for (long k = 0; k < 400; k++) {
    bprt_alloc_fail_after(k);
    BprtCheckpoint *ck = bprt_st_read(path);
    bprt_alloc_fail_after(-1);
    if (ck) {
      assert_int_equal(bprt_st_count(ck), 3);
      bprt_st_free(ck);
      break;
    }
    failures++;
    assert_non_null(strstr(bprt_last_error(), "out of memory"));
  }
  assert_true(failures > 5);
  unlink(path);
}

/* Random damage to a valid file (byte flips, truncation, inserted bytes): every read
 * either succeeds or fails with a message naming the file; never a crash, a hang or
 * an ASan report. A fixed LCG makes any failure reproducible. */
static void test_mutation_robustness(void **state) {
  (void)state;
  const char *good = path_in(dir, "good.safetensors"), *bad = path_in(dir, "mut.safetensors");
  assert_int_equal(bprt_st_write(good, tensors, 3, meta, 3), 0);
  FILE *f = fopen(good, "rb");
  unsigned char orig[2048], buf[2100];
  size_t n = fread(orig, 1, sizeof orig, f);
  fclose(f);
  uint64_t rng = 12345;
  int ok = 0, failed = 0;
  for (int iter = 0; iter < 3000; iter++) {
    memcpy(buf, orig, n);
    size_t len = n;
    int edits = 1 + iter % 4;
    for (int e = 0; e < edits; e++) {
      rng = rng * 6364136223846793005ull + 1442695040888963407ull;
      size_t at = (size_t)(rng >> 33) % len;
      unsigned char byte = (unsigned char)(rng >> 20);
      switch ((rng >> 60) % 4) {
      case 0: buf[at] = byte; break;                                   /* overwrite */
      case 1: buf[at] ^= (unsigned char)(1u << ((rng >> 40) % 8)); break; /* flip a bit */
      case 2: len = at; break;                                         /* truncate */
      default:                                                         /* insert */
        if (len < sizeof buf) {
          memmove(buf + at + 1, buf + at, len - at);
          buf[at] = byte;
          len++;
        }
      }
      if (len == 0) break;
    }
    write_bytes(bad, buf, len);
    BprtCheckpoint *ck = bprt_st_read(bad);
    if (ck) {
      ok++;
      bprt_st_free(ck);
    } else {
      failed++;
      if (strncmp(bprt_last_error(), bad, strlen(bad)) != 0) fail_msg("iteration %d: %s", iter, bprt_last_error());
    }
  }
  assert_true(failed > 1000);   /* most damage is detected; flips inside tensor data are not damage */
  assert_true(ok > 0);
  unlink(good), unlink(bad);
}

/* A PID that is no live process: a child that has exited and been reaped (its PID is
 * free until the kernel hands it out again, which takes a full cycle of the PID space). */
static long dead_pid(void) {
  pid_t pid = fork();
  if (pid == 0) _exit(0);
  assert_true(pid > 0);
  assert_int_equal(waitpid(pid, NULL, 0), pid);
  return (long)pid;
}

static void set_mtime_ago(const char *path, long seconds) {
  struct timespec ts[2];
  clock_gettime(CLOCK_REALTIME, &ts[0]);
  ts[0].tv_sec -= seconds;
  ts[1] = ts[0];
  assert_int_equal(utimensat(AT_FDCWD, path, ts, 0), 0);
}

/* issue 12: the temporary file of a save killed before its rename is removed by the next
 * save to the same path, and nothing else is: not a temporary file of a live process
 * (another save in progress), not one written after the save began, not another path's,
 * not a name that only looks alike. */
static void test_stale_temps_removed(void **state) {
  (void)state;
  char name[256];
  long dead = dead_pid(), live = (long)getppid();
  const char *path = path_in(dir, "ck.safetensors");
  snprintf(name, sizeof name, "ck.safetensors.tmp-%ld-0", dead);
  char stale[4096], fresh[4096], alive[4096], other[4096], alike[4096], own[4096];
  snprintf(stale, sizeof stale, "%s", path_in(dir, name));
  snprintf(name, sizeof name, "ck.safetensors.tmp-%ld-7", dead);
  snprintf(fresh, sizeof fresh, "%s", path_in(dir, name));
  snprintf(name, sizeof name, "ck.safetensors.tmp-%ld-1", live);
  snprintf(alive, sizeof alive, "%s", path_in(dir, name));
  snprintf(name, sizeof name, "other.safetensors.tmp-%ld-0", dead);
  snprintf(other, sizeof other, "%s", path_in(dir, name));
  snprintf(name, sizeof name, "ck.safetensors.tmp-%ld-0x", dead);
  snprintf(alike, sizeof alike, "%s", path_in(dir, name));
  snprintf(name, sizeof name, "ck.safetensors.tmp-%ld-99", (long)getpid());
  snprintf(own, sizeof own, "%s", path_in(dir, name));
  const char *old[] = {stale, alive, other, alike, own};
  for (int i = 0; i < 5; i++) {
    write_text(old[i], "half a checkpoint");
    set_mtime_ago(old[i], 3600);
  }
  write_text(fresh, "half a checkpoint");   /* its mtime: now, at most the save's start */
  struct timespec later;
  clock_gettime(CLOCK_REALTIME, &later);
  later.tv_sec += 3600;
  struct timespec ts[2] = {later, later};
  assert_int_equal(utimensat(AT_FDCWD, fresh, ts, 0), 0);   /* written "after" the save began */

  assert_int_equal(bprt_st_write(path, tensors, 3, meta, 3), 0);
  assert_int_equal(access(stale, F_OK), -1);   /* removed */
  assert_int_equal(access(fresh, F_OK), 0);
  assert_int_equal(access(alive, F_OK), 0);
  assert_int_equal(access(other, F_OK), 0);
  assert_int_equal(access(alike, F_OK), 0);
  assert_int_equal(access(own, F_OK), 0);
  assert_int_equal(count_entries(dir), 6);     /* the five kept and the checkpoint */
  const char *all[] = {path, fresh, alive, other, alike, own};
  for (int i = 0; i < 6; i++) unlink(all[i]);
  assert_int_equal(count_entries(dir), 0);
}

/* --save's check before a run: a path a save could write passes (and leaves nothing);
 * a missing directory and a directory are named. */
static void test_check_writable(void **state) {
  (void)state;
  assert_int_equal(bprt_st_check_writable(path_in(dir, "x.safetensors")), 0);
  assert_int_equal(count_entries(dir), 0);
  char nodir[4200], want[8600];
  snprintf(nodir, sizeof nodir, "%s/no/x.safetensors", dir);
  assert_int_equal(bprt_st_check_writable(nodir), -1);
  snprintf(want, sizeof want, "%s: cannot create a file in '%s/no': No such file or directory", nodir, dir);
  assert_string_equal(bprt_last_error(), want);
  assert_int_equal(bprt_st_check_writable(dir), -1);
  snprintf(want, sizeof want, "%s: is a directory", dir);
  assert_string_equal(bprt_last_error(), want);
  assert_int_equal(bprt_st_check_writable(""), -1);
  assert_string_equal(bprt_last_error(), "checkpoint: empty path");
  assert_int_equal(count_entries(dir), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_round_trip),          cmocka_unit_test(test_header_bytes),
      cmocka_unit_test(test_corrupt_files),       cmocka_unit_test(test_hostile_json),
      cmocka_unit_test(test_write_argument_errors), cmocka_unit_test(test_atomic_write_failure),
      cmocka_unit_test(test_alloc_failure_sweep), cmocka_unit_test(test_mutation_robustness),
      cmocka_unit_test(test_stale_temps_removed), cmocka_unit_test(test_check_writable),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
