/* driver/cmd_sample.c — `bpcc sample FILE.bp --weights W --prompt TEXT -n N`: text from a
 * byte-level language model, one byte at a time.
 *
 *   bpcc sample FILE.bp --weights W --prompt TEXT [-n N] [--temperature T] [--top-k K]
 *                       [--seed S] [--output NAME] [--threads N] [--model NAME] [-O0..-O3]
 *
 * The pipeline compiles the forward entry alone (inference mode: dropout the identity),
 * at batch 1. The model takes tokens as its first input, label[B, T, 256] (a second
 * input, the next tokens of training, gets zeros: forward does not read it), and has
 * an output of logits f32[B, T, 256] (--output NAME, else the first of that shape).
 *
 * Generation: the context is the last T tokens of prompt + generated text. Every step
 * runs the model on one window: the context, followed by zeros up to T when it is
 * shorter (a short prompt); the next byte is drawn from the logits at the context's last
 * position. That padding is sound only for a causal model — position t's logits depend
 * on positions 0..t alone, as with causal attention — which the model must be: the
 * zeros after the context then change nothing at positions before them. No KV cache:
 * each byte costs a forward pass over T positions.
 *
 * The byte comes from softmax(logits / T) over the K largest logits (K = 256: all),
 * drawn with the counter-based RNG from --seed (runtime/sample.c), so a seed gives the
 * same text on every run; --temperature 0 is greedy. Standard output gets the prompt,
 * then each byte as it is drawn, and nothing else (no newline is added). */
#include "driver/driver.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define VOCAB 256

static int sample_error(const char *fmt, const char *a) { return args_usage_error("sample", fmt, a); }

enum { S_WEIGHTS, S_PROMPT, S_N, S_TEMPERATURE, S_TOPK, S_SEED, S_OUTPUT };

static const DrvOption sample_options[] = {
    {S_WEIGHTS, "--weights", OPT_VALUE, "PATH", "a checkpoint written by bpcc train --save, or a safetensors\n"
                                                "file with the parameters under their path names (required)"},
    {S_PROMPT, "--prompt", OPT_VALUE, "TEXT", "the text to continue, at least one byte (required)"},
    {S_N, "-n", OPT_VALUE, "N", "bytes to generate (default 200; 0: the prompt alone)"},
    {S_TEMPERATURE, "--temperature", OPT_VALUE, "T", "softmax(logits / T); 0: always the most likely byte\n"
                                                     "(default 1)"},
    {S_TOPK, "--top-k", OPT_VALUE, "K", "draw from the K most likely bytes (default 256: all)"},
    {S_SEED, "--seed", OPT_VALUE, "S", "the draws (default 0): a seed gives the same text every run"},
    {S_OUTPUT, "--output", OPT_VALUE, "NAME", "the logits output, f32[B, T, 256] (default: the first of\n"
                                              "that shape)"},
    {OPT_PIPELINE, "--threads", OPT_VALUE, "N", "worker threads (default: one per CPU)"},
    {OPT_PIPELINE, "--model", OPT_VALUE, "NAME", "the model when the file has several"},
    {0, NULL, OPT_FLAG, NULL, NULL},
};

static void sample_usage(FILE *o) {
  fprintf(o,
          "usage: bpcc sample FILE.bp --weights PATH --prompt TEXT [-n N] [options]\n"
          "Continue TEXT with N bytes drawn from a byte-level language model: a causal model\n"
          "with tokens label[B, T, 256] as its first input and logits f32[B, T, 256] as an\n"
          "output. The context is the last T bytes; a shorter one is padded after its end,\n"
          "which a causal model does not see. Prints the prompt and the bytes drawn.\n"
          "\n");
  args_print_options(o, sample_options, 18, NULL);
  fprintf(o, "and -O0..-O3, -march=CPU, -fno-fuse, --print-after=STAGE, --verify-each (bpcc --help)\n");
}

/* "tok: label[B,64,256], y: label[B,64,256]" */
static void describe(const bprt_tensor_desc *t, int n, char *buf, size_t size) {
  size_t k = 0;
  buf[0] = 0;
  for (int i = 0; i < n && k < size; i++) {
    k += (size_t)snprintf(buf + k, size - k, "%s%s: %s[", i ? ", " : "", t[i].name, t[i].is_label ? "label" : "f32");
    for (int d = 0; d < t[i].rank && k < size; d++)
      k += t[i].dims[d] == BPRT_DIM_BATCH ? (size_t)snprintf(buf + k, size - k, "%sB", d ? "," : "")
                                          : (size_t)snprintf(buf + k, size - k, "%s%" PRId64, d ? "," : "", t[i].dims[d]);
    if (k < size) k += (size_t)snprintf(buf + k, size - k, "]");
  }
  if (n == 0) snprintf(buf, size, "none");
}

int cmd_sample(int argc, char **argv) {
  const char *file = NULL, *weights = NULL, *prompt = NULL, *output = NULL;
  int64_t n = 200, top_k = VOCAB, seed = 0;
  double temperature = 1.0;
  PipelineOptions po;
  pipeline_options_default(&po);
  PipelineArgs pa;
  args_init(&pa, &po);
  ArgParser p;
  args_parser_init(&p, "sample", sample_options, &pa, argc, argv);
  const DrvOption *opt;
  const char *v;
  for (int k; (k = args_next(&p, &opt, &v)) != ARGS_END;) {
    if (k == ARGS_ERROR) return 1;
    if (k == ARGS_HELP) {
      sample_usage(stdout);
      return 0;
    }
    if (k == ARGS_OPERAND) {
      if (file) return sample_error("more than one input file ('%s')", v);
      file = v;
      continue;
    }
    switch (opt->id) {
    case S_WEIGHTS: weights = v; break;
    case S_PROMPT: prompt = v; break;
    case S_OUTPUT: output = v; break;
    case S_N:
      if (!args_int("-n", v, 0, INT64_C(1) << 40, &n)) return 1;
      break;
    case S_TOPK:
      if (!args_int("--top-k", v, 1, INT64_MAX, &top_k)) return 1;
      break;
    case S_SEED:
      if (!args_int("--seed", v, 0, INT64_MAX, &seed)) return 1;
      break;
    case S_TEMPERATURE:
      if (!args_real("--temperature", v, &temperature)) return 1;
      if (temperature < 0) return sample_error("--temperature '%s': must be >= 0 (0: the most likely byte)", v);
      break;
    }
  }
  if (!file) return sample_error("%s", "no input file");
  if (!weights) return sample_error("%s", "no weights: give --weights PATH");
  if (!prompt) return sample_error("%s", "no prompt: give --prompt TEXT");
  if (!prompt[0]) return sample_error("%s", "--prompt '': the prompt must hold at least one byte");
  static const CommandInfo sample = {"sample", STAGE_MACHINE, false, false, true};
  if (!args_check(&pa, &sample)) return 1;
  {   /* readable, and a file, before compiling */
    uint64_t size;
    int fd = bprt_open_regular(weights, &size);
    if (fd < 0) {
      fprintf(stderr, "bpcc: error: --weights: %s\n", bprt_last_error());
      return 1;
    }
    close(fd);
  }
  po.forward_only = true;
  po.runtime = true;
  po.batch = 1;

  Compilation c;
  pipeline_init(&c, file, &po);
  int status = 1;
  bprt_model *m = NULL;
  float **outs = NULL;
  int32_t *tok = NULL, *ctx = NULL;
  const bprt_model_desc *desc = NULL;
  if (!pipeline_run(&c, STAGE_CHECK)) goto done;
  if (!args_apply_threads(&pa)) goto done;
  c.opt.batch = 1;
  if (!pipeline_run(&c, STAGE_MEMORY) || !mem_check_fits(&c, 1, "sample", false) || !pipeline_run(&c, STAGE_MACHINE))
    goto done;
  desc = cg_model_desc(c.cg);
  char have[1200];
  const bprt_tensor_desc *in = desc->ninputs > 0 ? &desc->inputs[0] : NULL;
  if (!in || !in->is_label || in->rank != 3 || in->dims[0] != BPRT_DIM_BATCH || in->dims[2] != VOCAB) {
    describe(desc->inputs, desc->ninputs, have, sizeof have);
    fprintf(stderr, "bpcc: error: %s: model '%s' does not take bytes: bpcc sample needs tokens label[B, T, 256] as the "
                    "first input; its inputs: %s\n", c.name, desc->model_name, have);
    goto done;
  }
  int64_t T = in->dims[1];
  int oi = -1;
  for (int k = 0; k < desc->noutputs && oi < 0; k++) {
    const bprt_tensor_desc *t = &desc->outputs[k];
    bool shape = !t->is_label && t->rank == 3 && t->dims[0] == BPRT_DIM_BATCH && t->dims[1] == T && t->dims[2] == VOCAB;
    if (output ? !strcmp(t->name, output) : shape) {
      if (!shape) {
        describe(t, 1, have, sizeof have);
        fprintf(stderr, "bpcc: error: --output '%s': the logits must be f32[B,%" PRId64 ",256]; it is %s\n", output, T,
                have);
        goto done;
      }
      oi = k;
    }
  }
  if (oi < 0) {
    describe(desc->outputs, desc->noutputs, have, sizeof have);
    if (output)
      fprintf(stderr, "bpcc: error: --output '%s': model '%s' has no such output; its outputs: %s\n", output,
              desc->model_name, have);
    else
      fprintf(stderr, "bpcc: error: %s: model '%s' has no output of logits f32[B,%" PRId64 ",256] (declare one: output "
                      "logits = ...); its outputs: %s\n", c.name, desc->model_name, T, have);
    goto done;
  }
  m = bprt_model_create(desc, 0);
  if (!m || bprt_checkpoint_load(m, weights, NULL)) {
    fprintf(stderr, "bpcc: error: %s\n", bprt_last_error());
    goto done;
  }
  size_t plen = strlen(prompt);
  outs = calloc((size_t)desc->noutputs, sizeof *outs);
  tok = malloc(sizeof(int32_t) * (size_t)T);
  ctx = malloc(sizeof(int32_t) * (size_t)T);   /* the last T tokens, oldest first */
  bool oom = !outs || !tok || !ctx;
  for (int k = 0; k < desc->noutputs && !oom; k++) {
    int64_t w = 1;
    for (int d = 1; d < desc->outputs[k].rank; d++) w *= desc->outputs[k].dims[d];
    oom = !(outs[k] = malloc(sizeof(float) * (size_t)w));
  }
  if (oom) {
    fprintf(stderr, "bpcc: error: out of memory\n");
    goto done;
  }
  int64_t len = 0;   /* tokens in ctx */
  for (size_t i = plen > (size_t)T ? plen - (size_t)T : 0; i < plen; i++) ctx[len++] = (unsigned char)prompt[i];
  fwrite(prompt, 1, plen, stdout);
  fflush(stdout);
  const void *inputs[2] = {tok, NULL};   /* a second input (the targets of training): zeros */
  for (int64_t i = 0; i < n; i++) {
    memcpy(tok, ctx, sizeof(int32_t) * (size_t)len);
    memset(tok + len, 0, sizeof(int32_t) * (size_t)(T - len));   /* after the context: unseen by a causal model */
    if (bprt_model_forward(m, 1, inputs, outs)) {
      fprintf(stderr, "\nbpcc: error: %s\n", bprt_last_error());
      goto done;
    }
    int64_t b = bprt_sample_logits(outs[oi] + (len - 1) * VOCAB, VOCAB, temperature, top_k, (uint64_t)seed, (uint64_t)i);
    if (b < 0) {
      fprintf(stderr, "\nbpcc: error: byte %" PRId64 ": output '%s' at position %" PRId64 ": %s\n", i + 1,
              desc->outputs[oi].name, len - 1, bprt_last_error());
      goto done;
    }
    if (len == T) memmove(ctx, ctx + 1, sizeof(int32_t) * (size_t)(T - 1)), len--;
    ctx[len++] = (int32_t)b;
    putchar((int)b);
    if (b == '\n') fflush(stdout);
  }
  if (fflush(stdout) != 0 || ferror(stdout)) {
    fprintf(stderr, "bpcc: error: standard output: write error\n");
    goto done;
  }
  status = 0;
done:
  for (int k = 0; outs && desc && k < desc->noutputs; k++) free(outs[k]);
  free(outs);
  free(tok);
  free(ctx);
  bprt_model_destroy(m);
  pipeline_release(&c);
  return status;
}
