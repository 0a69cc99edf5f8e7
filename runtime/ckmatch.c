/* runtime/ckmatch.c — does a checkpoint hold exactly the tensors a model reads?
 *
 * Loading a checkpoint fails when a name is missing, a name is unknown, or a shape
 * differs. The usual cause is a file written by another framework: PyTorch names a
 * parameter after its module ("0.weight", "fc1.bias") where bpcc uses the path name
 * ("h1.W", "logits.b"), and torch's nn.Linear keeps its weight as [out, in] where
 * bpcc's dense W is [in, out] (y = x W + b). So the message lists every missing and
 * every unknown name (bounded, so it fits the 1 KiB error buffer), pairs unknown with
 * missing tensors by shape ("'0.weight' [64,2] could be 'h1.W' [2,64] transposed"), and
 * says "transposed?" when a tensor's shape is the parameter's reversed.
 * docs/interop.md has the recipe the messages point to.
 *
 * The names are matched through sorted index arrays (n log n), so a file of 100,000
 * tensors costs milliseconds however many the model reads. */
#include "runtime/runtime.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MSG_MAX 900            /* the most the body takes of the 1 KiB error buffer */
#define NAME_SHOWN 60          /* longer names are cut to this, with "..." */
#define PAIR_MAX 4096          /* unknown tensors tried for a pairing: bounds the work */

/* ------------------------------------------------------------ a bounded message */

typedef struct {
  char s[MSG_MAX];
  size_t len;
  size_t cap;                  /* room left in the error buffer beside the path */
} Msg;

/* Append unless that would pass position `limit` (or the buffer); false: not added. */
static bool msg_try(Msg *m, size_t limit, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static bool msg_try(Msg *m, size_t limit, const char *fmt, ...) {
  if (limit > m->cap - 1) limit = m->cap - 1;
  if (m->len >= limit) return false;
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(m->s + m->len, limit - m->len + 1, fmt, ap);
  va_end(ap);
  if (n < 0 || m->len + (size_t)n > limit) {
    m->s[m->len] = 0;
    return false;
  }
  m->len += (size_t)n;
  return true;
}

/* "'name' [2,64]" into buf, the name cut at NAME_SHOWN characters. */
static const char *item(const BprtTensorRef *t, char *buf, size_t n) {
  char shape[128];
  size_t len = strlen(t->name);
  bprt_shape_str(t->rank, t->dims, shape, sizeof shape);
  if (len > NAME_SHOWN) snprintf(buf, n, "'%.*s...' %s", NAME_SHOWN - 3, t->name, shape);
  else snprintf(buf, n, "'%s' %s", t->name, shape);
  return buf;
}

/* The items of t[idx[0..n)], comma-separated, within `budget` characters; what does not
 * fit is counted: "..., and 5 more". */
static void msg_list(Msg *m, size_t budget, const BprtTensorRef *const *t, int n) {
  size_t limit = m->len + budget < m->cap - 1 ? m->len + budget : m->cap - 1;
  char buf[NAME_SHOWN + 160];
  int i = 0;
  for (; i < n; i++)
    if (!msg_try(m, limit - 20, "%s%s", i ? ", " : "", item(t[i], buf, sizeof buf))) break;
  if (i < n) msg_try(m, limit, "%s%d more", i ? ", and " : "", n - i);
}

/* ------------------------------------------------------------------ shapes */

static bool same_shape(const BprtTensorRef *a, const BprtTensorRef *b) {
  if (a->rank != b->rank) return false;
  for (int i = 0; i < a->rank; i++)
    if (a->dims[i] != b->dims[i]) return false;
  return true;
}

/* a is b's matrix transposed, and that is distinguishable (not square). */
static bool transposed(const BprtTensorRef *a, const BprtTensorRef *b) {
  return a->rank == 2 && b->rank == 2 && a->dims[0] != a->dims[1] && a->dims[0] == b->dims[1] &&
         a->dims[1] == b->dims[0];
}

static const char TORCH_HINT[] = "bpcc's dense W is [in, out]; a torch nn.Linear weight is [out, in]: save weight.T";

/* ------------------------------------------------------------------- names */

static int cmp_name(const void *a, const void *b) {
  return strcmp((*(const BprtTensorRef *const *)a)->name, (*(const BprtTensorRef *const *)b)->name);
}

/* "2.weight" before "10.weight": digit runs compare as numbers, so unknown names list
 * (and pair with missing ones) in the order a PyTorch module registers them. */
static int natural_cmp(const char *a, const char *b) {
  while (*a && *b) {
    if (*a >= '0' && *a <= '9' && *b >= '0' && *b <= '9') {
      const char *x = a, *y = b;
      while (*x == '0') x++;
      while (*y == '0') y++;
      size_t nx = 0, ny = 0;
      while (x[nx] >= '0' && x[nx] <= '9') nx++;
      while (y[ny] >= '0' && y[ny] <= '9') ny++;
      if (nx != ny) return nx < ny ? -1 : 1;
      int c = memcmp(x, y, nx);
      if (c) return c;
      a = x + nx, b = y + ny;
      continue;
    }
    if (*a != *b) return (unsigned char)*a < (unsigned char)*b ? -1 : 1;
    a++, b++;
  }
  return (unsigned char)*a - (unsigned char)*b;
}

static int cmp_natural(const void *a, const void *b) {
  const BprtTensorRef *x = *(const BprtTensorRef *const *)a, *y = *(const BprtTensorRef *const *)b;
  int c = natural_cmp(x->name, y->name);
  return c ? c : strcmp(x->name, y->name);
}

static const BprtTensorRef *lookup(const BprtTensorRef *const *sorted, int n, const char *name) {
  BprtTensorRef key = {.name = name};
  const BprtTensorRef *kp = &key;
  const BprtTensorRef *const *hit = bsearch(&kp, sorted, (size_t)n, sizeof *sorted, cmp_name);
  return hit ? *hit : NULL;
}

/* ------------------------------------------------------------------ reports */

/* Names differ: both lists, then a pairing by shape. */
static int report_names(const char *path, const char *model, const BprtTensorRef **missing, int nmiss,
                        const BprtTensorRef **unknown, int nunk) {
  /* The error buffer holds "MODEL: load: PATH: " and the body: the body gets what the
   * path leaves (at least 300), and each list a share of it. */
  size_t taken = strlen(path) + 2 * strlen(model) + 24;
  Msg m = {.len = 0, .cap = taken < 1024 - 300 ? 1024 - taken : 300};
  if (m.cap > MSG_MAX) m.cap = MSG_MAX;
  size_t list = m.cap / 5, pairs = m.cap * 3 / 8;
  m.s[0] = 0;
  char a[NAME_SHOWN + 160], b[NAME_SHOWN + 160];
  if (nunk == 0 && nmiss == 1) return bprt_set_error("%s: missing tensor '%s'", path, missing[0]->name);
  if (nmiss == 0 && nunk == 1)
    return bprt_set_error("%s: unexpected tensor '%s' (not in model '%s')", path, unknown[0]->name, model);
  if (nunk == 0) {
    msg_try(&m, MSG_MAX, "%d tensors missing: ", nmiss);
    msg_list(&m, m.cap, missing, nmiss);
  } else if (nmiss == 0) {
    msg_try(&m, MSG_MAX, "%d unexpected tensors (not in model '%s'): ", nunk, model);
    msg_list(&m, m.cap, unknown, nunk);
  } else {
    msg_try(&m, MSG_MAX, "the tensor names do not match model '%.60s' (docs/interop.md)\n  missing (%d): ", model, nmiss);
    msg_list(&m, list, missing, nmiss);
    msg_try(&m, MSG_MAX, "\n  unknown (%d): ", nunk);
    msg_list(&m, list, unknown, nunk);
    /* Pair greedily: each unknown tensor, in natural order, with the first missing one
     * (in the model's order) of its shape or its transposed shape. A suggestion, which
     * the tensors' order makes right for a PyTorch state_dict of Linear layers. */
    bool *used = bprt_calloc((size_t)nmiss + 1, 1);
    size_t limit = m.len + pairs;
    int npairs = 0, shown = 0;
    bool any_t = false;
    for (int u = 0; used && u < nunk && u < PAIR_MAX; u++)
      for (int k = 0; k < nmiss; k++) {
        if (used[k]) continue;
        bool same = same_shape(unknown[u], missing[k]), tr = transposed(unknown[u], missing[k]);
        if (!same && !tr) continue;
        used[k] = true;
        npairs++;
        bool square = same && missing[k]->rank == 2;
        any_t = any_t || tr || square;
        if (shown == npairs - 1 &&
            msg_try(&m, limit - 24, "\n  %s could be %s%s", item(unknown[u], a, sizeof a), item(missing[k], b, sizeof b),
                    tr ? " transposed" : square ? ", perhaps transposed" : ""))
          shown++;
        break;
      }
    bprt_free(used);
    if (shown < npairs) msg_try(&m, limit, "\n  (%d more pairs by shape)", npairs - shown);
    if (any_t) msg_try(&m, MSG_MAX, "\n  %s", TORCH_HINT);
  }
  return bprt_set_error("%s: %s", path, m.s);
}

/* Names agree; the first tensor whose shape differs, with the transposed ones named. */
static int report_shape(const char *path, const BprtTensorRef *have, const BprtTensorRef *want,
                        const BprtTensorRef *const *need, int nneed, const BprtTensorRef *const *file, int nfile) {
  char hs[128], ws[128];
  bprt_shape_str(have->rank, have->dims, hs, sizeof hs);
  bprt_shape_str(want->rank, want->dims, ws, sizeof ws);
  if (!transposed(have, want))
    return bprt_set_error("%s: tensor '%s' has shape %s, expected %s", path, want->name, hs, ws);
  Msg m = {.len = 0, .cap = 320};
  m.s[0] = 0;
  int more = 0;
  for (int i = 0; i < nneed; i++) {
    const BprtTensorRef *t = lookup(file, nfile, need[i]->name);
    if (need[i] != want && t && transposed(t, need[i])) {
      if (!msg_try(&m, 300, "%s'%.*s'", more ? ", " : " (so are ", NAME_SHOWN, t->name)) break;
      more++;
    }
  }
  if (more) msg_try(&m, 320, ")");
  return bprt_set_error("%s: tensor '%s' has shape %s, expected %s: transposed?%s %s (docs/interop.md)", path, want->name,
                        hs, ws, m.s, TORCH_HINT);
}

int bprt_st_match(const BprtCheckpoint *ck, const char *model, const BprtTensorRef *need, int nneed,
                  const char *skip_prefix) {
  if (!ck || !model || nneed < 0 || (nneed > 0 && !need)) return bprt_set_error("bprt_st_match: bad arguments");
  const char *path = bprt_st_path(ck);
  int nfile = bprt_st_count(ck);
  const BprtTensorRef **file = bprt_malloc(sizeof *file * ((size_t)nfile + 1));
  const BprtTensorRef **want = bprt_malloc(sizeof *want * ((size_t)nneed + 1));
  const BprtTensorRef **missing = bprt_malloc(sizeof *missing * ((size_t)nneed + 1));
  const BprtTensorRef **unknown = bprt_malloc(sizeof *unknown * ((size_t)nfile + 1));
  int rc = 0;
  if (!file || !want || !missing || !unknown) {
    rc = bprt_prefix_error("%s", path);
    goto done;
  }
  for (int i = 0; i < nfile; i++) file[i] = bprt_st_tensor(ck, i);
  for (int i = 0; i < nneed; i++) want[i] = &need[i];
  qsort(file, (size_t)nfile, sizeof *file, cmp_name);
  qsort(want, (size_t)nneed, sizeof *want, cmp_name);
  int nmiss = 0, nunk = 0;
  for (int i = 0; i < nneed; i++)   /* in the model's order */
    if (!lookup(file, nfile, need[i].name)) missing[nmiss++] = &need[i];
  for (int i = 0; i < nfile; i++) {
    const char *n = file[i]->name;
    if (skip_prefix && !strncmp(n, skip_prefix, strlen(skip_prefix))) continue;
    if (!lookup(want, nneed, n)) unknown[nunk++] = file[i];
  }
  qsort(unknown, (size_t)nunk, sizeof *unknown, cmp_natural);
  if (nmiss || nunk) {
    rc = report_names(path, model, missing, nmiss, unknown, nunk);
    goto done;
  }
  for (int i = 0; i < nneed; i++) {   /* every name is there: now the shapes */
    const BprtTensorRef *t = lookup(file, nfile, need[i].name);
    if (!same_shape(t, &need[i])) {
      for (int k = 0; k < nneed; k++) want[k] = &need[k];   /* back to the model's order */
      rc = report_shape(path, t, &need[i], want, nneed, file, nfile);
      break;
    }
  }
done:
  bprt_free(file);
  bprt_free(want);
  bprt_free(missing);
  bprt_free(unknown);
  return rc;
}
