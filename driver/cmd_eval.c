/* driver/cmd_eval.c — `bpcc eval FILE.bp --weights PATH --data SPEC`: loss and accuracy
 * of trained weights on a data set.
 *
 *   bpcc eval FILE.bp --weights PATH --data SPEC [--split test|train] [--batch N]
 *                     [--threads N] [--model NAME]
 *
 * A SPEC with a test part of its own (mnist:DIR: the t10k files) is evaluated on that
 * part unless --split train; other SPECs on all their rows. The weights are a bpcc
 * checkpoint (its optimizer state is read and ignored) or a plain safetensors file with
 * the parameters under their path names. */
#include "runtime/train.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "codegen/codegen.h"
#include "driver/driver.h"

static int eval_error(const char *fmt, const char *a) {
  fprintf(stderr, "bpcc: error: ");
  fprintf(stderr, fmt, a);
  fprintf(stderr, "\nTry 'bpcc eval --help' for more information.\n");
  return 1;
}

static void eval_usage(FILE *o) {
  fprintf(o,
          "usage: bpcc eval FILE.bp --weights PATH --data SPEC [options]\n"
          "Print the loss and accuracy of the weights in PATH on the data SPEC.\n"
          "\n"
          "  --weights PATH   a checkpoint written by bpcc train --save, or a safetensors\n"
          "                   file with the parameters under their path names (required)\n"
          "  --data SPEC      the data (see bpcc train --help); a SPEC with its own test\n"
          "                   part (mnist:DIR) is evaluated on that part (required)\n"
          "  --split S        test (default) or train: which part of such a SPEC\n"
          "  --batch N        rows per forward pass (default: the train block's batch)\n"
          "  --threads N      worker threads (default: one per CPU)\n"
          "  --model NAME     the model when the file has several\n");
}

/* The optimizer whose state a bpcc checkpoint holds (so that it loads as is), or -1. */
static int checkpoint_optimizer(const char *path) {
  BprtCheckpoint *ck = bprt_st_read(path);
  if (!ck) return -2;
  const char *o = bprt_st_meta(ck, "optimizer");
  int k = o ? bprt_optimizer_lookup(o) : -1;
  bprt_st_free(ck);
  return k;
}

int cmd_eval(int argc, char **argv) {
  const char *file = NULL, *model = NULL, *weights = NULL, *data = NULL, *split = "test";
  int64_t batch = 0, threads = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      eval_usage(stdout);
      return 0;
    }
    const char **sv = !strcmp(a, "--weights") ? &weights
                      : !strcmp(a, "--data")  ? &data
                      : !strcmp(a, "--model") ? &model
                      : !strcmp(a, "--split") ? &split
                                              : NULL;
    int64_t *iv = !strcmp(a, "--batch") ? &batch : !strcmp(a, "--threads") ? &threads : NULL;
    if (sv || iv) {
      if (i + 1 >= argc) return eval_error("%s needs a value", a);
      const char *v = argv[++i];
      if (sv) {
        *sv = v;
      } else {
        char *end;
        errno = 0;
        long long x = strtoll(v, &end, 10);
        if (end == v || *end || errno || x < 1) {
          fprintf(stderr, "bpcc: error: %s '%s': expected an integer >= 1\n", a, v);
          return 1;
        }
        *iv = x;
      }
      continue;
    }
    if (a[0] == '-' && a[1]) return eval_error("unknown option '%s'", a);
    if (file) return eval_error("more than one input file ('%s')", a);
    file = a;
  }
  if (!file) return eval_error("%s", "no input file");
  if (!weights) return eval_error("%s", "no weights: give --weights PATH");
  if (!data) return eval_error("%s", "no data: give --data SPEC");
  if (strcmp(split, "test") && strcmp(split, "train")) return eval_error("--split '%s': expected test or train", split);

  DrvCompilation c;
  bool compiled = drv_compile(&c, file, DRV_LOWER, model);
  if (!compiled || !c.model) {   /* after diagnostics, only the diagnostics */
    if (compiled) fprintf(stderr, "bpcc: error: %s has no model\n", c.name);
    drv_release(&c);
    return 1;
  }
  int status = 1;
  CgModel *cm = NULL;
  bprt_model *m = NULL;
  BprtDataset *tr = NULL, *te = NULL;
  const TrainSpec *ts = &c.model->train;
  if (batch == 0) batch = ts->batch;
  int kind = checkpoint_optimizer(weights);
  if (kind == -2) {
    fprintf(stderr, "bpcc: error: %s\n", bprt_last_error());
    goto done;
  }
  if (kind < 0) kind = ts->opt.kind;
  if (threads > 0 && bprt_set_threads((int)threads)) {
    fprintf(stderr, "bpcc: error: --threads %lld: %s\n", (long long)threads, bprt_last_error());
    goto done;
  }
  if (bprt_data_load(data, ts->seed, &tr, &te)) {
    fprintf(stderr, "bpcc: error: %s\n", bprt_last_error());
    goto done;
  }
  bprt_optimizer_config opt;
  bprt_optimizer_init(&opt, kind);
  cm = drv_build_jit(&c, kind, opt.hyper, (int)threads);
  if (!cm) goto done;
  const bprt_model_desc *desc = cg_model_desc(cm);
  const BprtDataset *d = te && !strcmp(split, "test") ? te : tr;
  m = bprt_model_create(desc, ts->seed);
  if (!m || bprt_train_check_data(desc, d) || bprt_checkpoint_load(m, weights, NULL)) {
    fprintf(stderr, "bpcc: error: %s\n", bprt_last_error());
    goto done;
  }
  double loss, acc;
  if (bprt_evaluate(m, d, batch, &loss, &acc)) {
    fprintf(stderr, "bpcc: error: %s\n", bprt_last_error());
    goto done;
  }
  printf("%s on %s (%" PRId64 " rows): loss %.6f", desc->model_name, d->source, d->n, loss);
  if (!isnan(acc)) printf(", accuracy %.2f%%", 100 * acc);
  printf("\n");
  status = 0;
done:
  bprt_model_destroy(m);
  bprt_dataset_free(tr);
  bprt_dataset_free(te);
  if (cm) cg_model_free(cm);
  drv_release(&c);
  return status;
}
