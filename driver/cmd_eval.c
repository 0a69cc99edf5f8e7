/* driver/cmd_eval.c — `bpcc eval FILE.bp --weights PATH --data SPEC`: loss and accuracy
 * of trained weights on a data set.
 *
 *   bpcc eval FILE.bp --weights PATH --data SPEC [--split test|train] [--batch N]
 *                     [--threads N] [--model NAME] [-O0..-O3] [-march=CPU]
 *
 * Evaluation runs in inference mode, as PyTorch's model.eval(): the pipeline compiles
 * the forward entry alone (no gradient), which computes the outputs and the loss with
 * dropout the identity, so the loss does not depend on the batch. A SPEC with a test
 * part of its own (mnist:DIR: the t10k files) is evaluated on that part unless --split
 * train; other SPECs on all their rows. The weights are a bpcc checkpoint (its optimizer
 * state is passed over) or a plain safetensors file with the parameters under their
 * path names. */
#include "driver/driver.h"
#include "runtime/progress.h"

#include <inttypes.h>
#include <math.h>
#include <string.h>

static int eval_error(const char *fmt, const char *a) { return args_usage_error("eval", fmt, a); }

enum { E_WEIGHTS, E_DATA, E_SPLIT };

/* eval's options (parsed, listed in --help, suggested); then the pipeline's (args.c) */
static const DrvOption eval_options[] = {
    {E_WEIGHTS, "--weights", OPT_VALUE, "PATH", "a checkpoint written by bpcc train --save, or a safetensors\n"
                                                "file with the parameters under their path names (required)"},
    {E_DATA, "--data", OPT_VALUE, "SPEC", "the data (see bpcc train --help); a SPEC with its own test\n"
                                          "part (mnist:DIR) is evaluated on that part (required)"},
    {E_SPLIT, "--split", OPT_VALUE, "S", "test (default) or train: which part of such a SPEC"},
    {OPT_PIPELINE, "--batch", OPT_VALUE, "N", "rows per forward pass (default: the train block's batch)"},
    {OPT_PIPELINE, "--threads", OPT_VALUE, "N", "worker threads (default: one per CPU)"},
    {OPT_PIPELINE, "--model", OPT_VALUE, "NAME", "the model when the file has several"},
    {0, NULL, OPT_FLAG, NULL, NULL},
};

static void eval_usage(FILE *o) {
  fprintf(o,
          "usage: bpcc eval FILE.bp --weights PATH --data SPEC [options]\n"
          "Print the loss and accuracy of the weights in PATH on the data SPEC, in inference\n"
          "mode (dropout is the identity).\n"
          "\n");
  args_print_options(o, eval_options, 16, NULL);
  fprintf(o, "and -O0..-O3, -march=CPU, -fno-fuse, --print-after=STAGE, --verify-each (bpcc --help)\n");
}

int cmd_eval(int argc, char **argv) {
  const char *file = NULL, *weights = NULL, *data = NULL, *split = "test";
  PipelineOptions po;
  pipeline_options_default(&po);
  PipelineArgs pa;
  args_init(&pa, &po);
  ArgParser p;
  args_parser_init(&p, "eval", eval_options, &pa, argc, argv);
  const DrvOption *opt;
  const char *v;
  for (int k; (k = args_next(&p, &opt, &v)) != ARGS_END;) {
    if (k == ARGS_ERROR) return 1;
    if (k == ARGS_HELP) {
      eval_usage(stdout);
      return 0;
    }
    if (k == ARGS_OPERAND) {
      if (file) return eval_error("more than one input file ('%s')", v);
      file = v;
    } else if (opt->id == E_WEIGHTS) {
      weights = v;
    } else if (opt->id == E_DATA) {
      data = v;
    } else if (opt->id == E_SPLIT) {
      split = v;
    }
  }
  if (!file) return eval_error("%s", "no input file");
  if (!weights) return eval_error("%s", "no weights: give --weights PATH");
  if (!data) return eval_error("%s", "no data: give --data SPEC");
  if (strcmp(split, "test") && strcmp(split, "train")) return eval_error("--split '%s': expected test or train", split);
  static const CommandInfo eval = {"eval", STAGE_MACHINE, false, true, true};
  if (!args_check(&pa, &eval)) return 1;
  po.forward_only = true;
  po.runtime = true;

  Compilation c;
  pipeline_init(&c, file, &po);
  int status = 1;
  bprt_model *m = NULL;
  BprtDataset *tr = NULL, *te = NULL;
  if (!pipeline_run(&c, STAGE_CHECK)) goto done;   /* after diagnostics, only the diagnostics */
  const TrainSpec *ts = &c.model->train;
  int64_t batch = po.batch > 0 ? po.batch : ts->batch;
  if (c.model->loss < 0) {
    fprintf(stderr, "bpcc: error: %s: model '%s' has no loss to evaluate (declare `loss` in it)\n", c.name, c.model->name);
    goto done;
  }
  if (!args_apply_threads(&pa)) goto done;
  if (bprt_data_load(data, ts->seed, &tr, &te)) {
    fprintf(stderr, "bpcc: error: %s\n", bprt_last_error());
    goto done;
  }
  BprtDataset *d = te && !strcmp(split, "test") ? te : tr;
  if (d->text && !d->text_val) {
    fprintf(stderr, "bpcc: error: %s: --split train: the training windows of text data are drawn at random, not "
                    "evaluated in order; eval reads the validation windows\n", data);
    goto done;
  }
  /* one batch of every row: the buffers fit the data (text: the windows are counted
   * once the model's T is known; bprt_evaluate clamps the batch then) */
  if (!d->text && batch > d->n) batch = d->n;
  c.opt.batch = batch;
  if (!pipeline_run(&c, STAGE_MEMORY) || !mem_check_fits(&c, batch, "eval", false) || !pipeline_run(&c, STAGE_MACHINE))
    goto done;
  const bprt_model_desc *desc = cg_model_desc(c.cg);
  m = bprt_model_create(desc, ts->seed);
  if (!m || bprt_train_bind_text(desc, d) || bprt_train_check_data(desc, d) || bprt_checkpoint_load(m, weights, NULL)) {
    fprintf(stderr, "bpcc: error: %s\n", bprt_last_error());
    goto done;
  }
  double loss, acc;
  if (bprt_evaluate(m, d, batch, &loss, &acc)) {
    fprintf(stderr, "bpcc: error: %s\n", bprt_last_error());
    goto done;
  }
  char code[400];
  printf("bpcc eval: model %s from %s, batch %" PRId64 "; code: %s\n", desc->model_name, c.name, batch,
         pipeline_describe(&c, code, sizeof code));
  /* six significant digits: one measurement, compared across runs and batches */
  char rows[64], ls[48], bs[48];
  printf("%s on %s (%s): loss %s", desc->model_name, d->source,
         bprt_fmt_counted(rows, sizeof rows, d->n, d->text ? "window" : "row", NULL), bprt_fmt_sig(ls, sizeof ls, loss, 6));
  if (d->text)   /* the mean cross-entropy over the windows' positions */
    printf(" nats/char (%s bits/char)", bprt_fmt_sig(bs, sizeof bs, loss / log(2.0), 6));
  if (!isnan(acc)) printf(", accuracy %.2f%%", 100 * acc);
  printf("\n");
  status = 0;
done:
  bprt_model_destroy(m);
  bprt_dataset_free(tr);
  bprt_dataset_free(te);
  pipeline_release(&c);
  return status;
}
