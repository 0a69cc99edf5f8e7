/* driver/memcheck.c — does the compiled model fit in the memory this process can get?
 *
 * The memory stage knows, before anything is allocated, every byte the model object
 * will hold at a batch (pipeline_memory_at: parameters, gradients, optimizer state,
 * workspace, output buffers). train, eval, bench and predict compare it with what is
 * available (bprt_mem_available, runtime/memavail.c: MemAvailable, ulimit -v and -d,
 * the cgroup's limit) and stop before the first allocation, with the numbers and the
 * way out. */
#include "driver/driver.h"

#include <inttypes.h>
#include <stdio.h>

bool mem_check_fits(const Compilation *c, int64_t batch, const char *command, bool budget) {
  bprt_model_memory need = pipeline_memory_at(c, batch);
  const char *src = NULL;
  int64_t avail = bprt_mem_available(&src);
  if (avail < 0 || need.total <= avail) return true;
  char t[32], p[32], g[32], o[32], w[32], a[32];
  memplan_format_size(need.total, t, sizeof t);
  memplan_format_size(need.params, p, sizeof p);
  memplan_format_size(need.grads, g, sizeof g);
  memplan_format_size(need.opt_state, o, sizeof o);
  memplan_format_size(need.workspace, w, sizeof w);
  memplan_format_size(avail, a, sizeof a);
  /* what would help: the batch only scales the workspace and the output buffers */
  int64_t fixed = need.params + need.grads + need.opt_state + need.other;
  const char *hint = fixed >= avail ? "the parameters alone do not fit: a smaller model, or a machine with more memory"
                     : budget       ? "try a smaller --batch or --mem-budget"
                                    : "try a smaller --batch";
  fprintf(stderr, "bpcc: error: %s: the model needs %s at batch %" PRId64 " (parameters %s, gradients %s, "
          "optimizer state %s, workspace %s); %s is available (%s): %s\n",
          command, t, batch, p, g, o, w, a, src, hint);
  return false;
}
