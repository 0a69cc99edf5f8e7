/* driver/cmd_predict.c — `bpcc predict FILE.bp --weights W --data SPEC`: the model's
 * outputs for inputs without labels.
 *
 *   bpcc predict FILE.bp --weights PATH --data SPEC [-o OUT.npy|OUT.csv|-] [--output NAME]
 *                        [--top-k K] [--split test|train] [--batch N] [--threads N]
 *                        [--model NAME] [-O0..-O3] [-march=CPU]
 *
 * The forward pass runs in inference mode, as in `bpcc eval` (PyTorch's model.eval()):
 * the pipeline compiles the forward entry alone, dropout is the identity, and the loss
 * is not computed, so labels are not needed; where the data has them they are not
 * read (features-only SPECs: idx:IMAGES, npy:X.npy, csv:PATH:label=none).
 *
 * Which output: --output NAME, else the model's prediction — the last declared output
 * that the loss reads (mnist_mlp's probs, the operand of cross_entropy), else the last
 * declared output (spiral's probs: its loss reads the logits). Values are written as
 * the model computes them: a softmax output gives probabilities, a dense one logits.
 *
 * Where the values go, by -o:
 *   OUT.npy   NumPy float32, C order, shape [rows, ...the output's row shape]
 *   OUT.csv   a header row of column names (probs[0], probs[1], ...), values %.9g
 *   -         CSV on standard output
 *   none      on a terminal (or with --top-k): a table — for a classifier (an output
 *             [B, C] of a model with a label[B, C] input) the top-k classes of each row
 *             with their probabilities (the output's values when it is a softmax, else
 *             the softmax of them); otherwise the values; at most PRINT_ROWS rows.
 *             Not on a terminal: CSV on standard output.
 * Files are written to a temporary file beside OUT, then renamed (outfile.c). */
#include "driver/driver.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PRINT_ROWS 20   /* rows of the table on a terminal */
#define STR_(x) #x
#define STR(x) STR_(x)

static int predict_error(const char *fmt, const char *a) { return args_usage_error("predict", fmt, a); }

enum { P_WEIGHTS, P_DATA, P_SPLIT, P_OUT, P_OUTPUT, P_TOPK };

/* predict's options (parsed, listed in --help, suggested); then the pipeline's */
static const DrvOption predict_options[] = {
    {P_WEIGHTS, "--weights", OPT_VALUE, "PATH", "a checkpoint written by bpcc train --save, or a safetensors\n"
                                                "file with the parameters under their path names (required)"},
    {P_DATA, "--data", OPT_VALUE, "SPEC", "the inputs (see bpcc train --help); labels are not needed:\n"
                                          "idx:IMAGES, npy:X.npy and csv:PATH:label=none have none. A SPEC\n"
                                          "with its own test part (mnist:DIR) gives that part (required)"},
    {P_SPLIT, "--split", OPT_VALUE, "S", "test (default) or train: which part of such a SPEC"},
    {P_OUT, "-o", OPT_VALUE, "OUT", "OUT.npy: NumPy float32 [rows, ...]; OUT.csv: CSV with a header\n"
                                    "row; -: CSV on standard output. Without -o: on a terminal a\n"
                                    "table (at most " STR(PRINT_ROWS) " rows), else CSV on standard output"},
    {P_OUTPUT, "--output", OPT_VALUE, "NAME", "the output to write (default: the last output the loss reads,\n"
                                              "else the last output; values as the model computes them)"},
    {P_TOPK, "--top-k", OPT_VALUE, "K", "classifiers, without -o: print the K most probable classes of\n"
                                        "each row with their probabilities (default 3; a table even\n"
                                        "when standard output is not a terminal)"},
    {OPT_PIPELINE, "--batch", OPT_VALUE, "N", "rows per forward pass (default: the train block's batch)"},
    {OPT_PIPELINE, "--threads", OPT_VALUE, "N", "worker threads (default: one per CPU)"},
    {OPT_PIPELINE, "--model", OPT_VALUE, "NAME", "the model when the file has several"},
    {0, NULL, OPT_FLAG, NULL, NULL},
};

static void predict_usage(FILE *o) {
  fprintf(o,
          "usage: bpcc predict FILE.bp --weights PATH --data SPEC [-o OUT.npy|OUT.csv] [options]\n"
          "Run the model forward in inference mode (dropout is the identity) on the inputs of\n"
          "SPEC, without their labels, and write one output's values per row.\n"
          "\n");
  args_print_options(o, predict_options, 16, NULL);
  fprintf(o, "and -O0..-O3, -march=CPU, -fno-fuse, --print-after=STAGE, --verify-each (bpcc --help)\n");
}

/* ------------------------------------------------------------------ which output */

/* The prediction output of m: of the outputs whose value the loss reads (directly or
 * through other nodes), the one nearest the loss — computed last; of several outputs of
 * one value, the last declared —, else the last declared output; -1 if it has none.
 * Nodes are in topological order, so one backward sweep from the loss marks what it
 * reads, and "computed last" is the largest node id. */
static int default_output(const FeModel *m) {
  if (m->noutputs == 0) return -1;
  int pick = m->noutputs - 1;
  if (m->loss < 0) return pick;
  bool *reads = calloc((size_t)m->nnodes, sizeof *reads);
  if (!reads) return pick;
  reads[m->loss] = true;
  for (int32_t i = m->loss; i >= 0; i--)
    if (reads[i])
      for (int a = 0; a < m->nodes[i].nargs; a++)
        if (m->nodes[i].args[a] >= 0) reads[m->nodes[i].args[a]] = true;
  int32_t nearest = -1;
  for (int k = 0; k < m->noutputs; k++) {
    int32_t v = m->nodes[m->outputs[k]].args[0];
    if (reads[v] && v >= nearest) nearest = v, pick = k;
  }
  free(reads);
  return pick;
}

/* Is output node `out` a softmax over its last axis (values already probabilities)? */
static bool is_softmax(const FeModel *m, int32_t out) {
  const FeNode *v = &m->nodes[m->nodes[out].args[0]];
  return v->op == OP_SOFTMAX && v->iattr == v->type.rank - 1;
}

/* ------------------------------------------------------------------ writers */

/* Floats per row of a [B, ...] tensor. */
static int64_t row_width(const bprt_tensor_desc *t) {
  int64_t w = 1;
  for (int i = 1; i < t->rank; i++) w *= t->dims[i];
  return w;
}

/* The column name of flat index j of an output row: NAME, NAME[j], NAME[j][k], ... */
static void column_name(const bprt_tensor_desc *t, int64_t j, char *buf, size_t n) {
  size_t used = (size_t)snprintf(buf, n, "%s", t->name);
  int64_t idx[BPRT_MODEL_MAX_RANK];
  for (int i = t->rank - 1; i >= 1; i--) {
    idx[i] = j % t->dims[i];
    j /= t->dims[i];
  }
  for (int i = 1; i < t->rank && used < n; i++) used += (size_t)snprintf(buf + used, n - used, "[%" PRId64 "]", idx[i]);
}

/* NPY format 1.0: magic, version, a little-endian u16 header length, the header dict
 * padded with spaces and ended by '\n' so that the data starts at a multiple of 64
 * (NumPy's alignment), then float32 little-endian items in C order. */
static void npy_header(FILE *f, const bprt_tensor_desc *t, int64_t rows) {
  char dict[512];
  int n = snprintf(dict, sizeof dict, "{'descr': '<f4', 'fortran_order': False, 'shape': (%" PRId64, rows);
  for (int i = 1; i < t->rank; i++) n += snprintf(dict + n, sizeof dict - (size_t)n, ", %" PRId64, t->dims[i]);
  snprintf(dict + n, sizeof dict - (size_t)n, "%s), }", t->rank == 1 ? "," : "");
  size_t dl = strlen(dict), total = (10 + dl + 1 + 63) / 64 * 64, hl = total - 10;
  fwrite("\x93NUMPY\x01\x00", 1, 8, f);
  fputc((int)(hl & 0xff), f);
  fputc((int)(hl >> 8), f);
  fputs(dict, f);
  for (size_t k = 10 + dl; k < total - 1; k++) fputc(' ', f);
  fputc('\n', f);
}

static void npy_rows(FILE *f, const float *v, int64_t count) {
  unsigned char buf[4096];
  size_t used = 0;
  for (int64_t k = 0; k < count; k++) {
    uint32_t u;
    memcpy(&u, &v[k], 4);
    for (int b = 0; b < 4; b++) buf[used++] = (unsigned char)(u >> (8 * b));
    if (used == sizeof buf) fwrite(buf, 1, used, f), used = 0;
  }
  fwrite(buf, 1, used, f);
}

static void csv_header(FILE *f, const bprt_tensor_desc *t) {
  char name[256];
  for (int64_t j = 0; j < row_width(t); j++) {
    column_name(t, j, name, sizeof name);
    fprintf(f, "%s%s", j ? "," : "", name);
  }
  fputc('\n', f);
}

static void csv_rows(FILE *f, const float *v, int64_t rows, int64_t width) {
  for (int64_t r = 0; r < rows; r++)
    for (int64_t j = 0; j < width; j++) fprintf(f, "%.9g%c", (double)v[r * width + j], j + 1 < width ? ',' : '\n');
}

/* ------------------------------------------------------------------ the table */

typedef struct {
  const bprt_tensor_desc *t;
  int64_t width;
  bool classes;          /* print top-k classes */
  bool softmax;          /* the values are probabilities already */
  int64_t k;             /* top-k */
  int64_t printed;       /* rows so far */
} Table;

static void table_header(const Table *tb) {
  printf("%6s", "row");
  if (tb->classes) {   /* "top 1" over each "class (probability)" cell */
    for (int64_t i = 0; i < tb->k; i++) {
      char head[32];
      snprintf(head, sizeof head, "top %" PRId64, i + 1);
      printf(i + 1 < tb->k ? "  %-14s" : "  %s", head);
    }
  } else {
    char name[256];
    for (int64_t j = 0; j < tb->width && j < 8; j++) {
      column_name(tb->t, j, name, sizeof name);
      printf("  %14s", name);
    }
    if (tb->width > 8) printf("  ... %" PRId64 " more columns", tb->width - 8);
  }
  printf("\n");
}

static void table_rows(Table *tb, const float *v, int64_t rows) {
  double *p = tb->classes ? malloc(sizeof(double) * (size_t)tb->width) : NULL;
  bool *used = tb->classes ? calloc((size_t)tb->width, sizeof *used) : NULL;
  for (int64_t r = 0; r < rows && tb->printed < PRINT_ROWS; r++, tb->printed++) {
    const float *row = v + r * tb->width;
    printf("%6" PRId64, tb->printed);
    if (tb->classes && p && used) {
      /* probabilities: the values of a softmax, else the softmax of the values (logits) */
      double mx = -INFINITY, sum = 0;
      for (int64_t j = 0; j < tb->width; j++) mx = fmax(mx, (double)row[j]);
      for (int64_t j = 0; j < tb->width; j++) sum += (p[j] = tb->softmax ? (double)row[j] : exp((double)row[j] - mx));
      if (!tb->softmax)
        for (int64_t j = 0; j < tb->width; j++) p[j] /= sum;
      memset(used, 0, sizeof *used * (size_t)tb->width);
      for (int64_t i = 0; i < tb->k; i++) {   /* the first maximum wins, as torch.argmax */
        int64_t best = -1;
        for (int64_t j = 0; j < tb->width; j++)
          if (!used[j] && (best < 0 || p[j] > p[best] || (isnan(p[best]) && !isnan(p[j])))) best = j;
        used[best] = true;
        char cell[64];
        snprintf(cell, sizeof cell, "%" PRId64 " (%.4f)", best, p[best]);
        printf(i + 1 < tb->k ? "  %-14s" : "  %s", cell);
      }
    } else {
      for (int64_t j = 0; j < tb->width && j < 8; j++) printf("  %14.6g", (double)row[j]);
    }
    printf("\n");
  }
  free(p);
  free(used);
}

/* ------------------------------------------------------------------ the command */

enum { TO_NPY, TO_CSV, TO_TABLE };

int cmd_predict(int argc, char **argv) {
  const char *file = NULL, *weights = NULL, *data = NULL, *split = "test", *out = NULL, *output = NULL,
             *topk_arg = NULL;
  PipelineOptions po;
  pipeline_options_default(&po);
  PipelineArgs pa;
  args_init(&pa, &po);
  ArgParser p;
  args_parser_init(&p, "predict", predict_options, &pa, argc, argv);
  const DrvOption *opt;
  const char *v;
  for (int k; (k = args_next(&p, &opt, &v)) != ARGS_END;) {
    if (k == ARGS_ERROR) return 1;
    if (k == ARGS_HELP) {
      predict_usage(stdout);
      return 0;
    }
    if (k == ARGS_OPERAND) {
      if (file) return predict_error("more than one input file ('%s')", v);
      file = v;
      continue;
    }
    switch (opt->id) {
    case P_WEIGHTS: weights = v; break;
    case P_DATA: data = v; break;
    case P_SPLIT: split = v; break;
    case P_OUT: out = v; break;
    case P_OUTPUT: output = v; break;
    case P_TOPK: topk_arg = v; break;
    }
  }
  if (!file) return predict_error("%s", "no input file");
  if (!weights) return predict_error("%s", "no weights: give --weights PATH");
  if (!data) return predict_error("%s", "no data: give --data SPEC");
  if (strcmp(split, "test") && strcmp(split, "train")) return predict_error("--split '%s': expected test or train", split);
  int64_t topk = 3;
  if (topk_arg && !args_int("--top-k", topk_arg, 1, INT32_MAX, &topk)) return 1;
  int kind = TO_CSV;
  if (out) {
    size_t n = strlen(out);
    if (n > 4 && !strcmp(out + n - 4, ".npy")) kind = TO_NPY;
    else if (!(n > 4 && !strcmp(out + n - 4, ".csv")) && strcmp(out, "-"))
      return predict_error("-o '%s': the extension says what to write: .npy (NumPy float32) or .csv, or - for "
                           "CSV on standard output", out);
    if (topk_arg)
      return predict_error("--top-k %s chooses what is printed without -o; -o writes every value of the output",
                           topk_arg);
  } else if (topk_arg || isatty(STDOUT_FILENO)) {
    kind = TO_TABLE;
  }
  static const CommandInfo predict = {"predict", STAGE_MACHINE, false, true, true};
  if (!args_check(&pa, &predict)) return 1;
  po.forward_only = true;
  po.runtime = true;

  /* The output file first: an unwritable path is an error before the work. */
  OutFile of = {0};
  if (kind != TO_TABLE && !outfile_open(&of, out ? out : "-", kind == TO_NPY, "NPY")) return 1;
  Compilation c;
  pipeline_init(&c, file, &po);
  int status = 1;
  bprt_model *m = NULL;
  BprtDataset *tr = NULL, *te = NULL;
  float **outs = NULL, *zeros = NULL;
  const bprt_model_desc *desc = NULL;
  if (!pipeline_run(&c, STAGE_CHECK)) goto done;
  const FeModel *fm = c.model;
  int pick = default_output(fm);
  if (pick < 0) {
    fprintf(stderr, "bpcc: error: %s: model '%s' has no output to predict (declare one: output NAME = expr)\n", c.name,
            fm->name);
    goto done;
  }
  if (output) {
    pick = -1;
    for (int k = 0; k < fm->noutputs; k++)
      if (!strcmp(fm->nodes[fm->outputs[k]].name, output)) pick = k;
    if (pick < 0) {
      fprintf(stderr, "bpcc: error: --output '%s': model '%s' has no such output; its outputs:", output, fm->name);
      for (int k = 0; k < fm->noutputs; k++) fprintf(stderr, "%s %s", k ? "," : "", fm->nodes[fm->outputs[k]].name);
      fprintf(stderr, "\n");
      goto done;
    }
  }
  const char *oname = fm->nodes[fm->outputs[pick]].name;
  bool softmax = is_softmax(fm, fm->outputs[pick]);

  const TrainSpec *ts = &fm->train;
  int64_t batch = po.batch > 0 ? po.batch : ts->batch;
  if (!args_apply_threads(&pa)) goto done;
  if (bprt_data_load(data, ts->seed, &tr, &te)) {
    const char *e = bprt_last_error();
    bool csv_label = !strncmp(data, "csv:", 4) && !strstr(data, "label=") && !strstr(data, "target=") &&
                     strstr(e, "label");
    fprintf(stderr, "bpcc: error: %s%s\n", e,
            csv_label ? " (the last column is the label unless told: csv:PATH:label=none reads every column as a "
                        "feature)" : "");
    goto done;
  }
  if (tr->text) {   /* windows, not rows: a language model generates (bpcc sample) */
    fprintf(stderr, "bpcc: error: %s: bpcc predict reads rows of features; text data is for train and eval, and "
                    "bpcc sample generates text from a model trained on it\n", data);
    goto done;
  }
  const BprtDataset *d = te && !strcmp(split, "test") ? te : tr;
  if (batch > d->n) batch = d->n;   /* one batch of every row: the buffers fit the data */
  c.opt.batch = batch;
  if (!pipeline_run(&c, STAGE_MACHINE)) goto done;
  desc = cg_model_desc(c.cg);

  /* The inputs as bpcc train binds them: the features to the first input that is not a
   * label; the other input (labels or targets) gets zeros, which the forward pass
   * without the loss does not read. */
  if (desc->ninputs < 1 || desc->ninputs > 2) {
    fprintf(stderr, "bpcc: error: model %s has %d inputs; bpcc predict feeds 1 (features) or 2 (features, then labels "
                    "or targets)\n", desc->model_name, (int)desc->ninputs);
    goto done;
  }
  int xin = desc->inputs[0].is_label && desc->ninputs == 2 ? 1 : 0;
  if (desc->inputs[xin].is_label) {
    fprintf(stderr, "bpcc: error: model %s has no feature input (every input is a label)\n", desc->model_name);
    goto done;
  }
  const bprt_tensor_desc *xd = &desc->inputs[xin];
  if (bprt_data_check_x(d, xd->name, xd->rank, xd->dims)) {
    fprintf(stderr, "bpcc: error: %s: %s", d->source, bprt_last_error());
    if (d->labels && d->file && row_width(xd) == d->nfeat + 1)
      fprintf(stderr, " (the last column was taken as the label: csv:%s:label=none reads every column)", d->file);
    fprintf(stderr, "\n");
    goto done;
  }
  int oi = -1;
  for (int k = 0; k < desc->noutputs; k++)
    if (!strcmp(desc->outputs[k].name, oname)) oi = k;
  const bprt_tensor_desc *od = oi >= 0 ? &desc->outputs[oi] : NULL;
  if (!od) {
    fprintf(stderr, "bpcc: error: internal: output '%s' is not in the compiled model\n", oname);
    goto done;
  }
  for (int i = 0; i < od->rank; i++)
    if ((od->dims[i] == BPRT_DIM_BATCH) != (i == 0)) {
      fprintf(stderr, "bpcc: error: output '%s' does not have one row per input row (its first dimension is not the "
                      "batch B); predict writes outputs of shape [B, ...]\n", oname);
      goto done;
    }
  int64_t width = row_width(od);
  /* a classifier's output: [B, C] beside a label[B, C] input */
  bool classes = false;
  for (int i = 0; i < desc->ninputs; i++)
    if (desc->inputs[i].is_label && od->rank == 2 && desc->inputs[i].dims[desc->inputs[i].rank - 1] == width)
      classes = true;
  if (kind == TO_TABLE && topk_arg && !classes) {
    fprintf(stderr, "bpcc: error: --top-k: output '%s' is not a classifier's ([B, C] beside a label[B, C] input); "
                    "without --top-k its values are printed\n", oname);
    goto done;
  }
  if (kind == TO_TABLE && classes && topk > width) {
    if (topk_arg) {
      fprintf(stderr, "bpcc: error: --top-k %" PRId64 ": output '%s' has %" PRId64 " classes\n", topk, oname, width);
      goto done;
    }
    topk = width;
  }

  m = bprt_model_create(desc, ts->seed);
  if (!m || bprt_checkpoint_load(m, weights, NULL)) {
    fprintf(stderr, "bpcc: error: %s\n", bprt_last_error());
    goto done;
  }
  outs = calloc((size_t)desc->noutputs, sizeof *outs);
  int64_t other = desc->ninputs == 2 ? row_width(&desc->inputs[1 - xin]) : 1;
  zeros = calloc((size_t)(batch * other), sizeof(float));
  bool oom = !outs || !zeros;
  for (int k = 0; k < desc->noutputs && !oom; k++)
    oom = !(outs[k] = malloc(sizeof(float) * (size_t)(batch * row_width(&desc->outputs[k]))));
  if (oom) {
    fprintf(stderr, "bpcc: error: out of memory for batch %" PRId64 "\n", batch);
    goto done;
  }

  Table tb = {od, width, classes, softmax, topk, 0};
  if (kind == TO_NPY) npy_header(of.f, od, d->n);
  else if (kind == TO_CSV) csv_header(of.f, od);
  else {
    printf("%s: %s for %s (%" PRId64 " rows)", desc->model_name, oname, d->source, d->n);
    if (classes)
      printf(", top %" PRId64 " of %" PRId64 " classes; probabilities: %s", topk, width,
             softmax ? "the output (a softmax)" : "softmax of the output");
    printf("\n");
    table_header(&tb);
  }
  BprtBatchIter it;
  if (bprt_batch_begin(&it, d, batch, false, 0, 0)) {
    fprintf(stderr, "bpcc: error: %s\n", bprt_last_error());
    goto done;
  }
  const void *inputs[2] = {0, 0};
  int rc = 0;
  while (bprt_batch_next(&it) > 0 && !(kind == TO_TABLE && tb.printed >= PRINT_ROWS)) {
    inputs[xin] = it.x;
    if (desc->ninputs == 2) inputs[1 - xin] = desc->inputs[1 - xin].is_label ? NULL : zeros;
    if ((rc = bprt_model_forward(m, it.rows, inputs, outs)) != 0) break;
    if (kind == TO_NPY) npy_rows(of.f, outs[oi], it.rows * width);
    else if (kind == TO_CSV) csv_rows(of.f, outs[oi], it.rows, width);
    else table_rows(&tb, outs[oi], it.rows);
  }
  bprt_batch_end(&it);
  if (rc) {
    fprintf(stderr, "bpcc: error: %s\n", bprt_last_error());
    goto done;
  }
  if (kind == TO_TABLE) {
    if (d->n > tb.printed)
      printf("... %" PRId64 " more rows (-o FILE.csv or -o FILE.npy writes them all)\n", d->n - tb.printed);
    status = 0;
    goto done;
  }
  if (!outfile_commit(&of)) goto done;
  if (strcmp(of.path, "-")) {   /* "wrote p.npy: probs f32[10000,10] (NPY)" */
    char shape[160];
    int n = snprintf(shape, sizeof shape, "%" PRId64, d->n);
    for (int i = 1; i < od->rank && n < (int)sizeof shape; i++)
      n += snprintf(shape + n, sizeof shape - (size_t)n, ",%" PRId64, od->dims[i]);
    printf("bpcc predict: wrote %s: %s f32[%s] (%s)\n", of.path, oname, shape, kind == TO_NPY ? "NPY" : "CSV");
  }
  status = 0;
done:
  if (status) outfile_abort(&of);
  for (int k = 0; outs && desc && k < desc->noutputs; k++) free(outs[k]);
  free(outs);
  free(zeros);
  bprt_model_destroy(m);
  bprt_dataset_free(tr);
  bprt_dataset_free(te);
  pipeline_release(&c);
  return status;
}
