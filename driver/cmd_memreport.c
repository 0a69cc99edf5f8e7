/* driver/cmd_memreport.c — `bpcc --mem-report FILE.bp`: the memory plan.
 *
 *   bpcc --mem-report FILE.bp [--batch N] [--recompute=none|sqrt|auto] [--mem-budget SIZE]
 *                             [--threads N] [--watch] [-o FILE.txt]
 *
 * prints, before anything runs, the memory stage of the pipeline at the planning batch
 * (--batch, else the train block's): every tensor of the training step with its DSL
 * name and location, shape, bytes, lifetime, workspace offset and kind (kept for
 * backward, recomputed, temporary, gradient, in registers inside its kernel), then all
 * that the compiled model allocates — parameters, gradients, optimizer state, the
 * workspace (the products' packing buffers and the values), the output buffers — whose
 * total is what `bpcc train --watch` measures. With --recompute or --mem-budget it
 * says what the recompute stage chose. */
#include "driver/driver.h"

int cmd_mem_report(const char *path, const PipelineOptions *o, const char *out_path) {
  Compilation c;
  pipeline_init(&c, path, o);
  int status = 1;
  OutFile out;
  if (o->batch > (INT64_C(1) << 31)) {
    fprintf(stderr, "bpcc: error: --batch %lld: at most %lld rows for --mem-report\n", (long long)o->batch,
            (long long)(INT64_C(1) << 31));
  } else if (pipeline_run(&c, STAGE_MEMORY) && outfile_open(&out, out_path ? out_path : "-", false, "the memory plan")) {
    FILE *f = out.f;
    pipeline_print_memory(f, &c);
    char b1[32], b2[32];
    if (c.grad) {
      bool chose = c.opt.recompute_set || c.opt.mem_budget > 0;
      RecomputeMode mode = c.opt.recompute_set ? c.opt.recompute : c.opt.mem_budget > 0 ? RECOMPUTE_AUTO : RECOMPUTE_NONE;
      fprintf(f, "\nrecompute: %s", recompute_mode_names[mode]);
      if (chose && c.recompute.ncandidates > 0)
        fprintf(f, ", %d of %d activations read by backward kept, %.4g MFLOP recomputed per step", c.recompute.nkept,
                c.recompute.ncandidates, c.recompute.recompute_flops / 1e6);
      fprintf(f, "\n");
      int64_t total = pipeline_memory_at(&c, c.batch).total;
      if (c.opt.mem_budget > 0)
        fprintf(f, "budget: %s (%lld bytes), total %s (%lld bytes): fits\n",
                memplan_format_size(c.opt.mem_budget, b1, sizeof b1), (long long)c.opt.mem_budget,
                memplan_format_size(total, b2, sizeof b2), (long long)total);
      fprintf(f, "optimizer: %s (%d float%s of state per parameter)\n", bprt_optimizers[c.optimizer.kind].name,
              bprt_optimizers[c.optimizer.kind].slots, bprt_optimizers[c.optimizer.kind].slots == 1 ? "" : "s");
    }
    status = outfile_commit(&out) ? 0 : 1;
  }
  pipeline_release(&c);
  return status;
}
