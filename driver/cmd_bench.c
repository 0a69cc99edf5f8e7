/* driver/cmd_bench.c — `bpcc bench FILE.bp`: time the compiled training step.
 *
 *   bpcc bench FILE.bp [--steps N] [--warmup N] [--threads N] [--batch N] [--gemm]
 *
 * Builds forward + backward + optimizer exactly as `bpcc train` does (the pipeline to
 * machine code, with the same options),
 * fills every input with seeded random data of the right shape (labels uniform over the
 * classes), runs --warmup steps, then times --steps steps one by one. Prints one line a
 * script can read (bench/run.sh makes the table and the CSV):
 *
 *   bpcc MODEL ms_median ms_min ms_max gflop_per_step gflops compile_ms peak_rss_mib
 *
 * FLOPs are counted from the gradient IR (memplan_inst_flops: 2mnk per product, one per
 * element for elementwise ops) plus the optimizer update (a handful per parameter,
 * counted as 0: it is memory-bound). With --gemm it also times every distinct matrix
 * product of the step on its own, as a one-instruction model (a product over a
 * sequence, [B,T,k] @ [k,n], as [B*T,k] @ [k,n]; products batched on both sides, such
 * as q @ k^T per head, are left out: collect_shapes), and prints
 *
 *   gemm VARIANT M K N threads ms_median gflops
 *
 * for 1 thread and for --threads threads. Timing is never asserted anywhere: `make test`
 * runs this once on one tiny step (tests/bench) only so that it cannot rot. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "driver/driver.h"
#include "runtime/runtime.h"

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double peak_rss_mib(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_maxrss / 1024.0;
}

/* The cycle counter's rate: rdtsc against CLOCK_MONOTONIC over 20 ms (x86-64; 0 where
 * the counter is not a constant-rate clock we can read from C). */
static double cycles_per_ms(void) {
#if defined(__x86_64__)
  double t0 = now_ms();
  uint64_t c0 = __builtin_ia32_rdtsc();
  while (now_ms() - t0 < 20) {
  }
  uint64_t c1 = __builtin_ia32_rdtsc();
  return (double)(c1 - c0) / (now_ms() - t0);
#else
  return 0;
#endif
}

/* The FLOPs of kernel g of plan kp at the batch that are matrix products and
 * convolutions (memplan_inst_flops: 2mnk, 2 B O C kh kw Ho Wo), the work a GFLOP/s of
 * the kernel is about; its epilogue's elementwise ops are not counted. 0: none. */
static double kernel_product_flops(const KernelPlan *kp, int g, int64_t batch) {
  double flops = 0;
  for (int32_t k = kp->group_start[g]; k < kp->group_start[g + 1]; k++) {
    int32_t v = kp->order[k];
    int kind = ir_ops[kp->f->insts[v].op].kind;
    if (kind == OPK_PRODUCT || kind == OPK_CONV) flops += memplan_inst_flops(kp->f, v, batch);
  }
  return flops;
}

/* --profile, per kernel: the same model built again with a cycle counter around every
 * kernel (CgOptions.profile), `steps` training steps after `warmup`, and one line per
 * kernel of the step: the grad entry's kernels in the order they run, then the
 * optimizer update,
 *   kernel ENTRY INDEX MS_PER_STEP FLOP NAME...
 * with the milliseconds of one step (a parallel kernel: the caller's wall clock), the
 * FLOPs per step of the kernel's products and convolutions ("-" for a kernel without
 * any: bench/run.sh divides the two for the convolutions' GFLOP/s), and the name
 * "op+op+... file:line". The counters are indexed by the kernel plan's groups, so the
 * FLOPs come from the profiled build's plan. The counters add a few cycles per kernel;
 * the step's median is the unprofiled build's. */
static void profile_kernels(Compilation *c, int64_t batch, int64_t warmup, int64_t steps, const void *const *in) {
  double rate = cycles_per_ms();
  if (rate <= 0) {
    printf("profile kernels unavailable (no cycle counter on this target)\n");
    return;
  }
  PipelineOptions po = c->opt;
  po.codegen.profile = true;
  po.print_after = NULL;
  Compilation pc;
  pipeline_init_model(&pc, c, &po);
  if (!pipeline_run(&pc, STAGE_MACHINE)) {
    pipeline_release(&pc);
    return;
  }
  CgModel *cm = pc.cg;
  bprt_model *m = bprt_model_create(cg_model_desc(cm), c->model->train.seed);
  float loss;
  for (int64_t i = 0; m && i < warmup; i++) bprt_model_train_step(m, batch, in, &loss);
  const char *const *names[3];
  uint64_t *cyc[3];
  int n[3];
  for (int w = 0; w < 3; w++) n[w] = cg_model_profile(cm, w, &names[w], &cyc[w]);
  for (int w = 1; w < 3; w++)
    for (int k = 0; k < n[w]; k++) cyc[w][k] = 0;
  for (int64_t i = 0; m && i < steps; i++) bprt_model_train_step(m, batch, in, &loss);
  static const char *which[3] = {"forward", "grad", "step"};
  for (int w = 1; m && w < 3; w++)
    for (int k = 0; k < n[w]; k++) {
      /* the grad entry's counters are kgrad's groups; the step's one is the update */
      double fl = w == 1 && pc.kgrad && n[w] == pc.kgrad->ngroups ? kernel_product_flops(pc.kgrad, k, batch) : 0;
      char fls[32] = "-";
      if (fl > 0) snprintf(fls, sizeof fls, "%.0f", fl);
      printf("kernel %s %d %.4f %s %s\n", which[w], k, (double)cyc[w][k] / rate / (double)steps, fls, names[w][k]);
    }
  fflush(stdout);
  bprt_model_destroy(m);
  pipeline_release(&pc);
}

/* Seeded random inputs for a batch: floats uniform in [0, 1), labels in [0, C).
 * NULL when out of memory. */
static void **make_inputs(const bprt_model_desc *d, int64_t batch, uint64_t seed) {
  void **in = calloc((size_t)d->ninputs + 1, sizeof *in);
  for (int i = 0; in && i < d->ninputs; i++) {
    const bprt_tensor_desc *t = &d->inputs[i];
    int64_t row = 1;
    for (int k = 1; k < t->rank - (t->is_label ? 1 : 0); k++) row *= t->dims[k];
    int64_t n = batch * row;
    void *buf = malloc((size_t)(n ? n : 1) * 4);
    if (!buf) {
      for (int k = 0; k < i; k++) free(in[k]);
      free(in);
      return NULL;
    }
    if (t->is_label) {
      int32_t *y = buf;
      for (int64_t k = 0; k < n; k++) y[k] = (int32_t)bprt_rng_below(seed, (uint64_t)i, (uint64_t)k, (uint64_t)t->dims[t->rank - 1]);
      in[i] = y;
    } else {
      float *x = buf;
      for (int64_t k = 0; k < n; k++) x[k] = (float)bprt_rng_uniform(seed, (uint64_t)i, (uint64_t)k);
      in[i] = x;
    }
  }
  return in;
}

static void free_inputs(void **in, int n) {
  for (int i = 0; i < n; i++) free(in[i]);
  free(in);
}

/* ---------------------------------------------------------- one matrix product alone */

typedef struct {
  int op;
  int64_t m, k, n;
} Shape;

/* A model of one product with the batch as M: c[B,N] = a[B,K] W[K,N] (matmul),
 * a[B,K] W[N,K]^T (matmul_nt); for matmul_tn (K is the batch: dW = X^T dY) two inputs
 * a[B,M], b[B,N] and c[M,N]. Run through forward with no output copied out
 * (bprt_model_forward_discard); timed by the cycle counter around the product's kernel
 * (CgOptions.profile). A copy of c into a caller's buffer is one thread's pass over
 * M N floats that a training step does not make (its products write in place): timed,
 * it capped the two-thread speed-up of a 1024 x 1024 result at 1.54x (Intel Xeon); even
 * untimed, it left the second thread's half of c in the first one's cache, and on the
 * Zen 5 host of 2026-12-08 the next run's writes fetched it back at about 10 GB/s:
 * matmul_tn 1024 x 128 x 1024 on two threads 1.05 ms with the copy, 0.70 without
 * (bench/README.md). Without a cycle counter, the whole forward call. */
static double time_gemm(const Shape *s, const PipelineOptions *base, int threads, int steps, double *gflops) {
  Module *mod = ir_module_new();
  Func *f = ir_func_new(mod, "gemm");
  int64_t d2[2];
  int32_t c;
  int64_t batch;
  if (s->op == OP_MATMUL_TN) {
    d2[0] = DIM_BATCH, d2[1] = s->m;
    int32_t a = ir_input(f, "a", 0, ir_type(mod, DT_F32, 2, d2), SRCLOC_NONE);
    d2[1] = s->n;
    int32_t b = ir_input(f, "b", 1, ir_type(mod, DT_F32, 2, d2), SRCLOC_NONE);
    c = ir_binary(f, OP_MATMUL_TN, a, b, SRCLOC_NONE);
    batch = s->k;
  } else {
    d2[0] = DIM_BATCH, d2[1] = s->k;
    int32_t a = ir_input(f, "a", 0, ir_type(mod, DT_F32, 2, d2), SRCLOC_NONE);
    if (s->op == OP_MATMUL) d2[0] = s->k, d2[1] = s->n;
    else d2[0] = s->n, d2[1] = s->k;
    int32_t w = ir_param(f, "W", ir_type(mod, DT_F32, 2, d2), INIT_UNIFORM, -1, 1, SRCLOC_NONE);
    c = ir_binary(f, (Op)s->op, a, w, SRCLOC_NONE);
    batch = s->m;
  }
  ir_output(f, "c", c, SRCLOC_NONE);
  PipelineOptions po = *base;
  po.codegen.nthreads_hint = threads;
  double rate = cycles_per_ms();
  po.codegen.profile = rate > 0;
  po.print_after = NULL;
  po.recompute_set = false;
  po.mem_budget = 0;
  double ms = NAN;
  Compilation pc;
  pipeline_init_ir(&pc, f, NULL, &po);
  if (pipeline_run(&pc, STAGE_MACHINE)) {
    const bprt_model_desc *d = cg_model_desc(pc.cg);
    bprt_model *m = bprt_model_create(d, 1);
    void **in = make_inputs(d, batch, 7);
    double *t = malloc((size_t)steps * sizeof *t);
    bool ok = m != NULL && in && t;
    if (m && !ok) bprt_set_error("out of memory for the inputs of batch %lld", (long long)batch);
    for (int i = 0; ok && i < 3; i++) ok = bprt_model_forward_discard(m, batch, (const void *const *)in) == 0;
    /* the forward entry's counter of the kernel that holds the product */
    const char *const *names = NULL;
    uint64_t *cyc = NULL;
    int nk = po.codegen.profile ? cg_model_profile(pc.cg, 0, &names, &cyc) : -1, kp = -1;
    for (int k = 0; k < nk; k++)
      if (strncmp(names[k], ir_ops[s->op].name, strlen(ir_ops[s->op].name)) == 0) kp = k;
    for (int i = 0; ok && i < steps; i++) {
      double t0 = now_ms();
      uint64_t c0 = kp >= 0 ? cyc[kp] : 0;
      ok = bprt_model_forward_discard(m, batch, (const void *const *)in) == 0;
      t[i] = kp >= 0 ? (double)(cyc[kp] - c0) / rate : now_ms() - t0;
    }
    if (ok) {
      qsort(t, (size_t)steps, sizeof *t, cmp_double);
      ms = t[steps / 2];
    } else {
      fprintf(stderr, "bpcc: error: gemm %s: %s\n", ir_ops[s->op].name, bprt_last_error());
    }
    free(t);
    if (in) free_inputs(in, d->ninputs);
    bprt_model_destroy(m);
  }
  pipeline_release(&pc);
  ir_module_free(mod);
  *gflops = 2.0 * (double)s->m * (double)s->k * (double)s->n / (ms * 1e-3) * 1e-9;
  return ms;
}

static int shape_count[32];   /* how often each collected shape occurs in the step */

/* The product of dims [from, to) of t with B = batch. */
static int64_t dims_product(const TensorType *t, int from, int to, int64_t batch) {
  int64_t p = 1;
  for (int d = from; d < to; d++) p *= t->dims[d] == DIM_BATCH ? batch : t->dims[d];
  return p;
}

/* Every distinct product of the step as one 2-D product M x K x N (ir/ops.def). A
 * product whose b is rank 2 applied to a of rank 3 or 4 is one product with a's leading
 * dims as rows ([B,T,k] @ [k,n]: M = B*T); matmul_tn with fold (a weight gradient over
 * every position) sums over a's leading dims and its rows: K = B*T. A product batched
 * over leading dims (q @ k^T per head; matmul_tn without fold above rank 2) is many
 * small products, not one that a one-product model can time: it is left out. */
static int collect_shapes(Func *g, int64_t batch, Shape *out, int max) {
  int n = 0;
  for (int32_t i = 0; i < g->ninsts; i++) {
    const Inst *in = &g->insts[i];
    if (ir_ops[in->op].kind != OPK_PRODUCT) continue;
    const TensorType *a = ir_vtype(g, in->args[0]), *b = ir_vtype(g, in->args[1]), *c = ir_vtype(g, i);
    bool fold = in->op == OP_MATMUL_TN && in->iattr[0] == 1;
    bool one = fold || (in->op == OP_MATMUL_TN ? a->rank == 2 && b->rank == 2 : b->rank == 2);
    if (!one) continue;
    Shape s = {in->op, 0, 0, c->dims[c->rank - 1] == DIM_BATCH ? batch : c->dims[c->rank - 1]};
    if (in->op == OP_MATMUL_TN) {
      s.m = a->dims[a->rank - 1] == DIM_BATCH ? batch : a->dims[a->rank - 1];
      s.k = dims_product(a, 0, a->rank - 1, batch);
    } else {
      s.m = dims_product(c, 0, c->rank - 1, batch);
      s.k = a->dims[a->rank - 1] == DIM_BATCH ? batch : a->dims[a->rank - 1];
    }
    bool seen = false;
    for (int j = 0; j < n && !seen; j++)
      if (out[j].op == s.op && out[j].m == s.m && out[j].k == s.k && out[j].n == s.n) {
        seen = true;
        shape_count[j]++;
      }
    if (!seen && n < max) {
      shape_count[n] = 1;
      out[n++] = s;
    }
  }
  return n;
}

/* ------------------------------------------------------------------- the command */

enum { B_STEPS, B_WARMUP, B_GEMM, B_PROFILE };

/* bench's options (parsed, listed in --help, suggested); then the pipeline's */
static const DrvOption bench_options[] = {
    {B_STEPS, "--steps", OPT_VALUE, "N", "timed steps (default 30); the median, min and max are printed"},
    {B_WARMUP, "--warmup", OPT_VALUE, "N", "untimed steps first (default 5)"},
    {OPT_PIPELINE, "--threads", OPT_VALUE, "N", "threads (default: one per CPU)"},
    {OPT_PIPELINE, "--batch", OPT_VALUE, "N", "batch size (default: the train block's)"},
    {B_GEMM, "--gemm", OPT_FLAG, NULL, "also time each distinct matrix product of the step on its own,\n"
                                       "on 1 thread and on --threads threads"},
    {B_PROFILE, "--profile", OPT_FLAG, NULL, "where the step's time goes: forward, backward and the optimizer\n"
                                             "update timed through the three entry points, and the products\n"
                                             "(implies --gemm)"},
    {0, NULL, OPT_FLAG, NULL, NULL},
};

static void bench_usage(FILE *o) {
  fprintf(o,
          "usage: bpcc bench FILE.bp [--steps N] [--warmup N] [--threads N] [--batch N] [--gemm]\n"
          "  times the compiled training step (forward, backward, optimizer) on random data\n");
  args_print_options(o, bench_options, 12, NULL);
  fprintf(o,
          "and the compiler's options (bpcc --help): --recompute=MODE, --mem-budget SIZE, -O0..-O3,\n"
          "-march=CPU, ...: the step is compiled as bpcc train compiles it\n"
          "output: bpcc MODEL ms_median ms_min ms_max gflop_per_step gflops compile_ms peak_rss_mib\n"
          "        code DESCRIPTION (what was compiled: O level, target, lanes, kernels, memory)\n"
          "        blocking CPU, caches, FMA width; the f32 GEMM's tile and cache blocks (why)\n"
          "        gemm VARIANT M K N threads ms_median gflops\n"
          "        profile PHASE ms_median (forward, backward, update, products, other)\n"
          "        kernel ENTRY INDEX ms_per_step flop NAME (flop: its products and convolutions, or -)\n");
}

int cmd_bench(int argc, char **argv) {
  const char *file = NULL;
  int64_t steps = 30, warmup = 5;
  bool gemm = false, profile = false;
  PipelineOptions po;
  pipeline_options_default(&po);
  PipelineArgs pa;
  args_init(&pa, &po);
  ArgParser p;
  args_parser_init(&p, "bench", bench_options, &pa, argc, argv);
  const DrvOption *opt;
  const char *v;
  for (int k; (k = args_next(&p, &opt, &v)) != ARGS_END;) {
    if (k == ARGS_ERROR) return 1;
    if (k == ARGS_HELP) {
      bench_usage(stdout);
      return 0;
    }
    if (k == ARGS_OPERAND) {
      if (file) return args_usage_error("bench", "bench takes one FILE.bp, got '%s' and '%s'", file, v);
      file = v;
    } else if (opt->id == B_GEMM) {
      gemm = true;
    } else if (opt->id == B_PROFILE) {
      profile = gemm = true;
    } else if (opt->id == B_STEPS) {
      if (!args_int("--steps", v, 1, INT32_MAX, &steps)) return 1;
    } else if (opt->id == B_WARMUP) {
      if (!args_int("--warmup", v, 0, INT32_MAX, &warmup)) return 1;
    }
  }
  if (!file) {
    bench_usage(stderr);
    return 1;
  }
  if (po.batch > (INT64_C(1) << 31)) {   /* train and eval clamp to the data; bench has none */
    fprintf(stderr, "bpcc: error: --batch %lld: at most %lld rows for bench\n", (long long)po.batch,
            (long long)(INT64_C(1) << 31));
    return 1;
  }
  static const CommandInfo bench = {"bench", STAGE_MACHINE, true, true, true};
  if (!args_check(&pa, &bench)) return 1;
  if (!args_apply_threads(&pa)) return 1;
  int64_t threads = bprt_get_threads();
  po.runtime = true;
  Compilation c;
  pipeline_init(&c, file, &po);
  int status = 1;
  bprt_model *m = NULL;
  void **in = NULL;
  double *t = NULL;
  double t0 = now_ms();
  /* after diagnostics, only the diagnostics; a model that cannot fit, before machine code */
  if (!pipeline_run(&c, STAGE_MEMORY) || (c.grad && !mem_check_fits(&c, c.batch, "bench", true)) ||
      !pipeline_run(&c, STAGE_MACHINE))
    goto done;
  double compile_ms = now_ms() - t0;
  if (!c.grad) {
    fprintf(stderr, "bpcc: error: %s: model '%s' has no loss, so no training step to time\n", c.name, c.model->name);
    goto done;
  }
  int64_t batch = c.batch;
  /* FLOPs of one step from the gradient IR the step was compiled from (recomputation
   * excluded: the useful work, whatever the memory plan) */
  double flops = 0;
  for (int32_t i = 0; i < c.grad->ninsts; i++)
    if (!(c.grad->insts[i].flags & IF_RECOMPUTED)) flops += memplan_inst_flops(c.grad, i, batch);
  Shape shapes[32];
  int nshapes = collect_shapes(c.grad, batch, shapes, 32);
  const bprt_model_desc *d = cg_model_desc(c.cg);
  m = bprt_model_create(d, c.model->train.seed);
  if (!m) {
    fprintf(stderr, "bpcc: error: %s\n", bprt_last_error());
    goto done;
  }
  in = make_inputs(d, batch, 1);
  t = malloc((size_t)steps * sizeof *t);
  if (!in || !t) {
    fprintf(stderr, "bpcc: error: bench: out of memory for the inputs of batch %lld and %lld steps' times\n",
            (long long)batch, (long long)steps);
    goto done;
  }
  float loss;
  for (int64_t i = 0; i < warmup + steps; i++) {
    double s0 = now_ms();
    if (bprt_model_train_step(m, batch, (const void *const *)in, &loss)) {
      fprintf(stderr, "bpcc: error: %s\n", bprt_last_error());
      goto done;
    }
    if (i >= warmup) t[i - warmup] = now_ms() - s0;
  }
  qsort(t, (size_t)steps, sizeof *t, cmp_double);
  double med = t[steps / 2];
  printf("bpcc %s %.3f %.3f %.3f %.4f %.1f %.0f %.1f\n", c.model->name, med, t[0], t[steps - 1], flops * 1e-9,
         flops / (med * 1e-3) * 1e-9, compile_ms, peak_rss_mib());
  char code[400];
  printf("code %s\n", pipeline_describe(&c, code, sizeof code));
  CgBlocking bk;
  cg_blocking(&c.opt.codegen, &bk);
  cg_blocking_describe(&bk, code, sizeof code);
  printf("blocking %s\n", code);
  fflush(stdout);
  /* --profile: forward, loss-and-grad and the whole step timed back to back in each
   * iteration, so that all three see the same machine state (the machine is shared and
   * noisy); backward = median over iterations of (grad - forward), update = median of
   * (step - grad). Medians of per-iteration differences, not differences of medians,
   * which under load could come out negative. */
  if (profile) {
    float *outs[64] = {0};
    const bprt_tensor_desc *od = d->outputs;
    for (int i = 0; i < d->noutputs && i < 64; i++) {
      int64_t row = 1;
      for (int k = 1; k < od[i].rank; k++) row *= od[i].dims[k];
      outs[i] = malloc((size_t)(row * batch) * sizeof(float));
    }
    double *tb = malloc((size_t)steps * sizeof *tb), *tu = malloc((size_t)steps * sizeof *tu);
    for (int64_t i = 0; i < warmup + steps; i++) {
      double s0 = now_ms();
      int rc = bprt_model_forward(m, batch, (const void *const *)in, outs);
      double s1 = now_ms();
      rc = rc ? rc : bprt_model_loss_and_grad(m, batch, (const void *const *)in, &loss);
      double s2 = now_ms();
      rc = rc ? rc : bprt_model_train_step(m, batch, (const void *const *)in, &loss);
      double s3 = now_ms();
      if (rc) {
        fprintf(stderr, "bpcc: error: %s\n", bprt_last_error());
        free(tb);
        free(tu);
        for (int k = 0; k < d->noutputs && k < 64; k++) free(outs[k]);
        goto done;
      }
      if (i >= warmup) {
        t[i - warmup] = s1 - s0;
        tb[i - warmup] = (s2 - s1) - (s1 - s0);
        tu[i - warmup] = (s3 - s2) - (s2 - s1);
      }
    }
    qsort(t, (size_t)steps, sizeof *t, cmp_double);
    qsort(tb, (size_t)steps, sizeof *tb, cmp_double);
    qsort(tu, (size_t)steps, sizeof *tu, cmp_double);
    printf("profile forward %.3f\nprofile backward %.3f\nprofile update %.3f\n", t[steps / 2], tb[steps / 2],
           tu[steps / 2]);
    free(tb);
    free(tu);
    for (int i = 0; i < d->noutputs && i < 64; i++) free(outs[i]);
    fflush(stdout);
    profile_kernels(&c, batch, warmup, steps, (const void *const *)in);
  }
  double products_ms = 0;
  if (gemm) {
    for (int s = 0; s < nshapes; s++) {
      int tcounts[2] = {1, (int)threads};
      for (int k = 0; k < (threads > 1 ? 2 : 1); k++) {
        bprt_set_threads(tcounts[k]);
        double gf, ms = time_gemm(&shapes[s], &po, tcounts[k], (int)(steps > 10 ? steps : 10), &gf);
        printf("gemm %s %lld %lld %lld %d %.4f %.1f\n", ir_ops[shapes[s].op].name, (long long)shapes[s].m,
               (long long)shapes[s].k, (long long)shapes[s].n, tcounts[k], ms, gf);
        if (tcounts[k] == (int)threads) products_ms += ms * shape_count[s];
        fflush(stdout);
      }
    }
    if (profile)
      printf("profile products %.3f\nprofile other %.3f\n", products_ms, med - products_ms);
  }
  status = 0;
done:
  free(t);
  if (in) free_inputs(in, c.cg ? cg_model_desc(c.cg)->ninputs : 0);
  bprt_model_destroy(m);
  pipeline_release(&c);
  return status;
}
