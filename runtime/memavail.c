/* runtime/memavail.c — the memory this process can still get, before it allocates.
 *
 * Allocating more than the machine has does not fail cleanly on Linux: malloc succeeds
 * (overcommit) and the first touch of the pages gets the process OOM-killed, or the
 * machine swaps for minutes. So what knows its size before allocating it (the model
 * object, from the memory plan; a data set, from its header or its parameters)
 * compares it with what is available and stops with the numbers instead.
 *
 * Available is the least of what each limit leaves:
 *   MemAvailable of /proc/meminfo     the kernel's estimate of memory usable without swapping
 *   RLIMIT_AS (ulimit -v)             minus the address space in use (/proc/self/statm)
 *   RLIMIT_DATA (ulimit -d)           minus the data segment in use (VmData)
 *   the cgroup's memory.max           minus its memory.current (cgroup v2; v1's
 *                                     memory.limit_in_bytes and usage_in_bytes)
 * A limit that cannot be read is left out; with none readable nothing is refused. */
#include "runtime/runtime.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

/* The first number after `key` in a "Key:   1234 kB" file, times `scale`; -1 if absent. */
static int64_t proc_field(const char *path, const char *key, int64_t scale) {
  FILE *f = fopen(path, "r");
  if (!f) return -1;
  char line[256];
  int64_t v = -1;
  size_t n = strlen(key);
  while (fgets(line, sizeof line, f))
    if (strncmp(line, key, n) == 0) {
      long long x;
      if (sscanf(line + n, " %lld", &x) == 1 && x >= 0) v = (int64_t)x * scale;
      break;
    }
  fclose(f);
  return v;
}

/* One number in a file: -2 for "max", -1 for no file or anything else. */
static int64_t file_number(const char *path) {
  FILE *f = fopen(path, "r");
  if (!f) return -1;
  char buf[64] = "";
  long long x = -1;
  if (fgets(buf, sizeof buf, f) && !strncmp(buf, "max", 3)) x = -2;
  else if (sscanf(buf, "%lld", &x) != 1 || x < 0) x = -1;
  fclose(f);
  return (int64_t)x;
}

/* The cgroup's limit less its usage: memory.max - memory.current (cgroup v2, the
 * "0::/PATH" line of /proc/self/cgroup), else memory.limit_in_bytes - memory.usage_in_bytes
 * (v1, the "N:memory:/PATH" line; a container often sees its own group at the mount's
 * root, so that is tried too). false where there is no limit ("max", a v1 limit near
 * 2^63) or no cgroup file to read. */
static bool cgroup_left(int64_t *left) {
  FILE *f = fopen("/proc/self/cgroup", "r");
  if (!f) return false;
  char line[4096], v2[4096] = "", v1[4096] = "";
  while (fgets(line, sizeof line, f)) {
    line[strcspn(line, "\n")] = 0;
    char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
    if (!c2) continue;
    if (c2 == c1 + 1 && !strncmp(line, "0:", 2)) snprintf(v2, sizeof v2, "%s", strcmp(c2 + 1, "/") ? c2 + 1 : "");
    else if ((size_t)(c2 - c1 - 1) == strlen("memory") && !strncmp(c1 + 1, "memory", 6))
      snprintf(v1, sizeof v1, "%s", strcmp(c2 + 1, "/") ? c2 + 1 : "");
  }
  fclose(f);
  static const struct { const char *root, *limit, *usage; } kinds[] = {
      {"/sys/fs/cgroup", "memory.max", "memory.current"},
      {"/sys/fs/cgroup/memory", "memory.limit_in_bytes", "memory.usage_in_bytes"},
  };
  for (int k = 0; k < 2; k++)
    for (int at_root = 0; at_root < 2; at_root++) {
      char p[4200];
      const char *dir = at_root ? "" : k ? v1 : v2;
      snprintf(p, sizeof p, "%s%s/%s", kinds[k].root, dir, kinds[k].limit);
      int64_t max = file_number(p);
      if (max == -2) return false;   /* "max": no limit */
      if (max < 0) continue;
      if (max >= (INT64_C(1) << 62)) return false;
      snprintf(p, sizeof p, "%s%s/%s", kinds[k].root, dir, kinds[k].usage);
      int64_t cur = file_number(p);
      *left = max - (cur > 0 ? cur : 0);
      return true;
    }
  return false;
}

/* Keep the least of the limits seen (a limit already exceeded leaves 0). */
static void take(int64_t left, const char *what, int64_t *best, const char **src) {
  if (left < 0) left = 0;
  if (*best < 0 || left < *best) {
    *best = left;
    *src = what;
  }
}

int64_t bprt_mem_available(const char **source) {
  int64_t best = -1;
  const char *src = NULL;
  int64_t v = proc_field("/proc/meminfo", "MemAvailable:", 1024);
  if (v >= 0) take(v, "MemAvailable in /proc/meminfo", &best, &src);
  long page = sysconf(_SC_PAGESIZE);
  struct rlimit rl;
  if (getrlimit(RLIMIT_AS, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
    FILE *f = fopen("/proc/self/statm", "r");
    long long pages = 0;
    if (f) {
      if (fscanf(f, "%lld", &pages) != 1) pages = 0;
      fclose(f);
    }
    take((int64_t)rl.rlim_cur - (int64_t)pages * page, "the address-space limit, ulimit -v", &best, &src);
  }
  if (getrlimit(RLIMIT_DATA, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
    int64_t used = proc_field("/proc/self/status", "VmData:", 1024);
    take((int64_t)rl.rlim_cur - (used > 0 ? used : 0), "the data-segment limit, ulimit -d", &best, &src);
  }
  int64_t cg;
  if (cgroup_left(&cg)) take(cg, "the cgroup's memory.max", &best, &src);
  if (source) *source = src;
  return best;
}
