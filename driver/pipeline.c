/* driver/pipeline.c — the whole compiler, one stage after another.
 *
 * pipeline_run is the one place that runs the stages: read, parse, check, lower,
 * canonicalize, autodiff, simplify, precision, recompute, kernels, memory, llvm, machine. Read
 * run_stage from top to bottom and you have read bpcc: each case calls the file that
 * does the work. After every stage the runner verifies what it made (--verify-each;
 * always in debug builds) and prints it when --print-after names the stage. A command
 * asks for the last stage it needs (--check: check; --emit=opt-ir: kernels;
 * --mem-report: memory; train: machine) and reads the Compilation. */
#include "driver/pipeline.h"
#include "runtime/runtime.h"

#include <errno.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <llvm-c/Core.h>

const StageInfo pipeline_stages[STAGE__COUNT] = {
    [STAGE_READ] = {"read", "the text of FILE.bp (or standard input)"},
    [STAGE_PARSE] = {"parse", "the syntax tree"},
    [STAGE_CHECK] = {"check", "names, shapes and types: the checked models"},
    [STAGE_LOWER] = {"lower", "the forward IR of the model"},
    [STAGE_CANONICALIZE] = {"canonicalize", "the loss in canonical form (softmax-CE rule)"},
    [STAGE_AUTODIFF] = {"autodiff", "reverse mode: the gradient of every parameter"},
    [STAGE_SIMPLIFY] = {"simplify", "CSE, DCE, constant folding, algebraic identities"},
    [STAGE_PRECISION] = {"precision", "bf16 or f16 casts in the gradient entry (--precision)"},
    [STAGE_RECOMPUTE] = {"recompute", "activations recomputed in backward (--recompute, --mem-budget)"},
    [STAGE_KERNELS] = {"kernels", "the kernel plan of each entry: fusion and order"},
    [STAGE_MEMORY] = {"memory", "the parameter block, every workspace slot, the totals"},
    [STAGE_LLVM] = {"llvm", "one optimized LLVM module with the entry points"},
    [STAGE_MACHINE] = {"machine", "machine code: JIT-compiled, or a shared library (-o)"},
};

int pipeline_stage_lookup(const char *name) {
  for (int s = 0; s < STAGE__COUNT; s++)
    if (name && strcmp(pipeline_stages[s].name, name) == 0) return s;
  return -1;
}

void pipeline_options_default(PipelineOptions *o) {
  memset(o, 0, sizeof *o);
  pass_options_default(&o->passes);
  o->verify = o->passes.verify;
  o->recompute = RECOMPUTE_NONE;
  o->fuse = true;
  o->codegen = (CgOptions){"native", 3, 0, false, false};
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ------------------------------------------------------------------ set-up */

static void init(Compilation *c, const PipelineOptions *o) {
  memset(c, 0, sizeof *c);
  c->opt = *o;
  c->file = -1;
  c->done = -1;
  c->arena = arena_new();
}

void pipeline_init(Compilation *c, const char *path, const PipelineOptions *o) {
  init(c, o);
  c->path = path;
  c->name = strcmp(path, "-") == 0 ? "<stdin>" : path;
}

void pipeline_init_text(Compilation *c, const char *name, const char *text, size_t len, const PipelineOptions *o) {
  init(c, o);
  c->path = c->name = name;
  c->text = text;
  c->text_len = len;
}

void pipeline_init_ir(Compilation *c, Func *fwd, Func *grad, const PipelineOptions *o) {
  init(c, o);
  c->from_ir = true;
  c->path = c->name = fwd->name;
  c->fwd = fwd;
  c->grad = grad;
  c->done = grad ? STAGE_SIMPLIFY : STAGE_LOWER;
  /* with the gradient given, the canonicalize stage (which builds the forward entry's
   * function) is skipped: a model with running statistics still needs its inference
   * form there (a copy of fwd in fwd's module), or forward and eval would normalize
   * with the batch's statistics */
  bool has_state = false;
  for (int32_t i = 0; grad && i < fwd->ninsts; i++) has_state |= fwd->insts[i].op == OP_ASSIGN;
  if (has_state) c->infer = pass_inference(ir_func_clone(fwd, fwd->name));
}

void pipeline_init_model(Compilation *c, const Compilation *from, const PipelineOptions *o) {
  init(c, o);
  c->path = from->path;
  c->name = from->name;
  c->file = from->file;
  c->program = from->program;
  c->unit = from->unit;
  c->model = from->model;
  c->done = STAGE_CHECK;
}

void pipeline_release(Compilation *c) {
  if (c->cg) cg_model_free(c->cg);
  memplan_model_free(c->mem);
  if (c->module) ir_module_free(c->module);
  if (c->arena) arena_free(c->arena);
  memset(c, 0, sizeof *c);
  c->file = -1;
  c->done = -1;
}

CgModel *pipeline_take_model(Compilation *c) {
  CgModel *m = c->cg;
  c->cg = NULL;
  return m;
}

bool pipeline_has_loss(const Compilation *c) {
  if (c->model) return c->model->loss >= 0;
  for (int32_t i = 0; c->fwd && i < c->fwd->ninsts; i++)
    if (c->fwd->insts[i].op == OP_LOSS) return true;
  return false;
}

/* A program larger than this is not a program (20,000 statements are about 500 KB):
 * the bound that keeps `bpcc --check - < /dev/zero` from reading forever. */
#define SOURCE_MAX (64u << 20)

/* A named FILE must be a regular file: a FIFO would block (or never end), a device such
 * as /dev/zero never ends. `-` reads standard input, whatever it is, as every compiler
 * does; the size bound ends that read. Opening uses O_NONBLOCK so that a FIFO without a
 * writer is reported, not waited for. */
bool pipeline_read_file(const char *path, char **text, size_t *len) {
  bool is_stdin = strcmp(path, "-") == 0;
  const char *shown = is_stdin ? "<stdin>" : path;
  int fd = 0;
  if (!is_stdin) {
    uint64_t size;
    fd = bprt_open_regular(path, &size);
    if (fd < 0) {   /* "cannot open PATH: REASON" or "PATH: a FIFO ..., not a regular file: ..." */
      const char *why = bprt_last_error();
      size_t pl = strlen(path);
      if (strncmp(why, "cannot open ", 12) == 0 && strncmp(why + 12, path, pl) == 0 && why[12 + pl] == ':')
        fprintf(stderr, "bpcc: error: cannot open '%s': %s\n", path, why + 12 + pl + 2);
      else if (strncmp(why, path, pl) == 0 && why[pl] == ':')
        fprintf(stderr, "bpcc: error: cannot read '%s': %.*s%s\n", path, (int)strcspn(why + pl + 2, ":"),
                why + pl + 2, strstr(why, "directory") ? "" : "; to read a program from a pipe, use '-' (standard input)");
      else
        fprintf(stderr, "bpcc: error: %s\n", why);
      return false;
    }
  }
  size_t cap = 1 << 16, n = 0;
  char *buf = bp_xmalloc(cap);
  int err = 0;
  for (;;) {
    if (n == cap) {
      if (cap > SOURCE_MAX) {
        fprintf(stderr, "bpcc: error: %s: more than %u MiB of text: too large for a .bp or .ir file\n", shown,
                SOURCE_MAX >> 20);
        bp_free(buf);
        if (!is_stdin) close(fd);
        return false;
      }
      cap = cap * 2 > SOURCE_MAX ? SOURCE_MAX + 1 : cap * 2;
      buf = bp_xrealloc(buf, cap);
    }
    ssize_t k = read(fd, buf + n, cap - n);
    if (k < 0 && errno == EINTR) continue;
    if (k < 0) err = errno;
    if (k <= 0) break;
    n += (size_t)k;
  }
  if (!is_stdin) close(fd);
  if (err) {
    fprintf(stderr, "bpcc: error: cannot read '%s': %s\n", shown, strerror(err));
    bp_free(buf);
    return false;
  }
  *text = buf;
  *len = n;
  return true;
}

/* ------------------------------------------------------------------ stage helpers */

static bool read_source(Compilation *c) {
  if (c->text) {
    c->file = diag_add_file(c->name, c->text, c->text_len);
    return true;
  }
  char *text;
  size_t len;
  if (!pipeline_read_file(c->path, &text, &len)) return false;
  c->file = diag_add_file(c->name, text, len);
  bp_free(text);
  return true;
}

/* The checked unit's model: --model NAME, else the first; the settings that follow
 * from it (the planning batch, the optimizer). */
static bool select_model(Compilation *c) {
  if (c->opt.model) {
    c->model = fe_unit_model(c->unit, c->opt.model);
    if (!c->model) {
      fprintf(stderr, "bpcc: error: %s has no model named '%s'\n", c->name, c->opt.model);
      return false;
    }
  } else {
    c->model = c->unit->nmodels > 0 ? c->unit->models[0] : NULL;
  }
  if (!c->model) {
    fprintf(stderr, "bpcc: error: %s has no model\n", c->name);
    return false;
  }
  return true;
}

/* Settings the later stages read, once the model (or the IR) is known. */
static void resolve(Compilation *c) {
  c->batch = c->opt.batch > 0 ? c->opt.batch : c->model && c->model->train.batch > 0 ? c->model->train.batch : 32;
  if (c->opt.optimizer_set) c->optimizer = c->opt.optimizer;
  else if (c->model) c->optimizer = c->model->train.opt;
  else bprt_optimizer_init(&c->optimizer, BPRT_OPT_ADAM);
  c->precision = c->opt.precision_set ? c->opt.precision : c->model ? c->model->train.precision : DT_F32;
  /* loss scaling: --loss-scale, else the train block's loss_scale, else the default of
   * the precision (the scale matters where gradients underflow: f16) */
  const TrainSpec *ts = c->model ? &c->model->train : NULL;
  if (c->opt.loss_scale_set) {
    c->loss_scale_mode = c->opt.loss_scale_mode;
    c->loss_scale = c->opt.loss_scale;
  } else if (ts && ts->loss_scale_set) {
    c->loss_scale_mode = ts->loss_scale_mode;
    c->loss_scale = ts->loss_scale;
  } else if (c->precision == DT_F16) {
    c->loss_scale_mode = BPRT_LOSS_SCALE_DYNAMIC;
    c->loss_scale = BPRT_LOSS_SCALE_INIT;
  } else {
    c->loss_scale_mode = BPRT_LOSS_SCALE_OFF;
    c->loss_scale = 1;
  }
  if (c->opt.forward_only) c->loss_scale_mode = BPRT_LOSS_SCALE_OFF;
  if (c->loss_scale_mode != BPRT_LOSS_SCALE_OFF) c->opt.passes.loss_scale = true;
}

/* The gradient stages work on a copy of the forward function, @m.grad, and the forward
 * entry on another, @m simplified; the lowered function itself stays as it is
 * (gradcheck's reference: a wrong rewrite shows there). */
static Func *start_grad(Compilation *c) {
  char name[256];
  snprintf(name, sizeof name, "%s.grad", c->fwd->name);
  return ir_func_clone(c->fwd, name);
}

/* The forward entry's function: the model in inference form (batchnorm with its running
 * statistics, passes/modes.c), the loss in canonical form whatever -fno-softmax-xent
 * says (that option is about the gradient; softmax-CE is also the stable way to compute
 * a cross-entropy), then simplified. */
static Func *canonical_forward(Compilation *c) {
  PassOptions po = c->opt.passes;
  po.softmax_xent = po.log_softmax = true;
  return pass_canonicalize(pass_inference(ir_func_clone(c->fwd, c->fwd->name)), &po);
}

static Func *forward_fn(const Compilation *c) { return c->infer ? c->infer : c->fwd; }

static int opt_slots(const Compilation *c) {
  return c->optimizer.kind >= 0 && c->optimizer.kind < BPRT_OPT__COUNT ? bprt_optimizers[c->optimizer.kind].slots : 0;
}

/* The memory plan, with the code generator's own buffers at the front of the workspace. */
static ModelMemory *plan_memory(Compilation *c, const KernelPlan *kf, const KernelPlan *kg) {
  int elem = memplan_elem_bytes(kg ? kg->f : kf->f);
  return memplan_model(kf, kg, kg ? opt_slots(c) : 0, cg_workspace_extra(&c->opt.codegen, kf, kg, elem));
}

/* What the runtime allocates for a model with memory mm at a batch: the runtime's own
 * rule (bprt_model_memory_at) over the layout the compiled model will have. */
static bprt_model_memory memory_of(const Compilation *c, const ModelMemory *mm, int64_t batch) {
  bprt_model_desc d;
  memset(&d, 0, sizeof d);
  d.param_floats = mm->param_floats;
  d.opt_state_floats = mm->opt_state_floats;
  d.nbuffers = mm->nbuffers;
  d.buffer_floats = mm->buffer_floats;
  d.ws_fixed = mm->workspace.fixed;
  d.ws_per_batch = mm->workspace.per_batch;
  Func *f = c->fwd;
  int no = 0;
  for (int32_t i = 0; i < f->ninsts; i++) no += f->insts[i].op == OP_OUTPUT;
  bprt_tensor_desc *outs = bp_xmalloc(sizeof *outs * (size_t)(no + 1));
  memset(outs, 0, sizeof *outs * (size_t)(no + 1));
  no = 0;
  for (int32_t i = 0; i < f->ninsts; i++) {
    if (f->insts[i].op != OP_OUTPUT) continue;
    const TensorType *t = ir_vtype(f, f->insts[i].args[0]);
    bprt_tensor_desc *o = &outs[no++];
    o->rank = t->rank;
    for (int k = 0; k < t->rank; k++) o->dims[k] = t->dims[k] == DIM_BATCH ? BPRT_DIM_BATCH : t->dims[k];
  }
  d.noutputs = no;
  d.outputs = outs;
  bprt_model_memory r = bprt_model_memory_at(&d, batch);
  bp_free(outs);
  return r;
}

bprt_model_memory pipeline_memory_at(const Compilation *c, int64_t batch) { return memory_of(c, c->mem, batch); }

/* The recompute pass measures each candidate plan with the stages after it: its kernel
 * plan, the memory plan with the forward entry's (planned once: recomputation does not
 * change it), and the runtime's allocations. */
typedef struct {
  Compilation *c;
  const KernelPlan *kf;
} Measure;

static int64_t measure_candidate(void *ctx, Func *g) {
  Measure *m = ctx;
  Arena *a = arena_new();
  KernelPlanOptions ko = {m->c->opt.fuse};
  KernelPlan *kg = pass_kernel_plan(a, g, PLAN_TRAINING, &ko);
  int64_t total = INT64_MAX;
  if (kg) {
    ModelMemory *mm = plan_memory(m->c, m->kf, kg);
    total = memory_of(m->c, mm, m->c->batch).total;
    memplan_model_free(mm);
  }
  arena_free(a);
  return total;
}

/* The most rows a memory plan is made for (sizes stay far from overflow). */
#define MAX_PLAN_BATCH (INT64_C(1) << 31)

static bool recompute(Compilation *c) {
  if (!c->opt.recompute_set && c->opt.mem_budget <= 0) return true;   /* keep every activation */
  if (c->batch > MAX_PLAN_BATCH) {
    fprintf(stderr, "bpcc: error: batch %lld is too large to plan memory at (at most %lld rows)\n", (long long)c->batch,
            (long long)MAX_PLAN_BATCH);
    return false;
  }
  Arena *a = arena_new();
  KernelPlanOptions ko = {c->opt.fuse};
  Measure m = {c, pass_kernel_plan(a, forward_fn(c), PLAN_INFERENCE, &ko)};
  if (!m.kf) {
    arena_free(a);
    return false;
  }
  RecomputeOptions o = {c->opt.recompute_set ? c->opt.recompute : RECOMPUTE_AUTO, c->opt.mem_budget, c->batch,
                        opt_slots(c), measure_candidate, &m};
  Func *g = pass_recompute(c->grad, &o, &c->recompute);
  arena_free(a);
  if (!g) return false;
  if (g != c->grad) c->grad = pass_func_replace(c->grad, g);
  return true;
}

static bool kernels(Compilation *c) {
  KernelPlanOptions ko = {c->opt.fuse};
  c->kfwd = pass_kernel_plan(c->arena, forward_fn(c), PLAN_INFERENCE, &ko);
  if (!c->kfwd) return false;
  if (c->grad) c->kgrad = pass_kernel_plan(c->arena, c->grad, PLAN_TRAINING, &ko);
  return !c->grad || c->kgrad;
}

static bool machine(Compilation *c) {
  if (c->opt.output) {
    CgAotOptions ao = {c->model ? c->name : NULL, NULL};
    return cg_aot_write(c->cg, c->opt.output, &ao) == 0;
  }
  return cg_model_jit(c->cg) == 0;
}

/* ------------------------------------------------------------------ the stages */

#define NO_NEW_ERRORS(expr) ((expr), diag_error_count() == errors)

static bool run_stage(Compilation *c, Stage s) {
  int errors = diag_error_count();
  PassOptions *po = &c->opt.passes;
  bool training = pipeline_has_loss(c) && !c->opt.forward_only && (c->grad || s == STAGE_CANONICALIZE);
  switch (s) {
  case STAGE_READ: return read_source(c);
  case STAGE_PARSE: return NO_NEW_ERRORS(c->program = fe_parse(c->arena, c->file));
  case STAGE_CHECK: return NO_NEW_ERRORS(c->unit = fe_check(c->arena, c->program)) && select_model(c);
  case STAGE_LOWER:
    c->module = ir_module_new();
    c->fwd = fe_lower_ex(c->module, c->model, c->opt.watch);
    return !c->opt.runtime || cg_check_runtime_f32(c->fwd);
  /* the gradient (a model without a loss has none, and skips it); the forward entry's
   * copy of @m is canonicalized and simplified on the side */
  case STAGE_CANONICALIZE:
    if (!(c->infer = canonical_forward(c))) return false;
    return !training || (NO_NEW_ERRORS(c->grad = pass_canonicalize(start_grad(c), po)) && c->grad);
  case STAGE_AUTODIFF: return !training || (NO_NEW_ERRORS(c->grad = pass_autodiff(c->grad, po)) && c->grad);
  case STAGE_SIMPLIFY:
    if (c->infer && !(c->infer = pass_simplify(c->infer, po))) return false;
    return !training || (NO_NEW_ERRORS(c->grad = pass_simplify(c->grad, po)) && c->grad);
  /* the gradient entry only: forward, eval and predict stay f32 */
  case STAGE_PRECISION: return !training || (c->grad = pass_precision(c->grad, c->precision)) != NULL;
  case STAGE_RECOMPUTE: return !training || recompute(c);
  /* the entries: what they compute, in which kernels, in which memory */
  case STAGE_KERNELS: return kernels(c);
  case STAGE_MEMORY: return (c->mem = plan_memory(c, c->kfwd, c->kgrad)) != NULL;
  case STAGE_LLVM: {
    bool opt = c->kgrad && c->optimizer.kind >= 0;
    CgModelInput in = {c->kfwd, c->kgrad, c->mem, opt ? &c->optimizer : NULL, &c->opt.codegen};
    if (!(c->cg = cg_model_build(&in))) return false;
    if (c->kgrad && c->loss_scale_mode != BPRT_LOSS_SCALE_OFF) {   /* the grad entry was seeded with loss_scale */
      bprt_model_desc *d = cg_model_desc(c->cg);
      d->loss_scale_mode = c->loss_scale_mode;
      d->loss_scale = c->loss_scale;
      d->hyper[BPRT_H_LOSS_SCALE] = c->loss_scale;
    }
    return true;
  }
  case STAGE_MACHINE: return machine(c);
  case STAGE__COUNT: break;
  }
  return false;
}

/* ------------------------------------------------------------------ after each stage */

static void verify(Compilation *c, Stage s) {
  const char *what = pipeline_stages[s].name;
  bool ok = true;
  if (s == STAGE_LOWER) ok = ir_verify(c->fwd, what);
  else if (s >= STAGE_CANONICALIZE && s <= STAGE_RECOMPUTE && c->grad) ok = ir_verify(c->grad, what);
  else if (s == STAGE_KERNELS) ok = kernel_plan_verify(c->kfwd, what) && (!c->kgrad || kernel_plan_verify(c->kgrad, what));
  else if (s == STAGE_MEMORY) ok = memplan_verify(c->mem->fwd, what) && (!c->mem->grad || memplan_verify(c->mem->grad, what));
  if (!ok) ir_die("the result of stage %s is invalid (see the verifier's messages above)", what);
}

char *pipeline_describe(const Compilation *c, char *buf, size_t n) {
  const CgOptions *o = &c->opt.codegen;
  char sb[32];
  size_t k = (size_t)snprintf(buf, n, "-O%d %s, %d f32 lanes, %d product chunk%s; kernels: forward %d", o->opt_level,
                              o->march ? o->march : "native", c->cg ? cg_model_lanes(c->cg) : 0, cg_gemm_chunks(o),
                              cg_gemm_chunks(o) == 1 ? "" : "s", c->kfwd ? kernel_plan_count(c->kfwd) : 0);
  if (c->kgrad && k < n) k += (size_t)snprintf(buf + k, n - k, ", step %d", kernel_plan_count(c->kgrad));
  if (c->mem && k < n)
    k += (size_t)snprintf(buf + k, n - k, "; %s at batch %lld",
                          memplan_format_size(pipeline_memory_at(c, c->batch).total, sb, sizeof sb), (long long)c->batch);
  if (c->grad && c->precision != DT_F32 && k < n)
    k += (size_t)snprintf(buf + k, n - k, "; precision %s", ir_dtype_name(c->precision));
  if (c->grad && (c->opt.recompute_set || c->opt.mem_budget > 0) && k < n) {
    RecomputeMode m = c->opt.recompute_set ? c->opt.recompute : RECOMPUTE_AUTO;
    snprintf(buf + k, n - k, "; recompute %s: %d of %d activations kept", recompute_mode_names[m], c->recompute.nkept,
             c->recompute.ncandidates);
  }
  return buf;
}

/* The memory stage's report (--mem-report, --print-after=memory): the table of the
 * training step's entry (the forward entry's without a loss), then everything the
 * compiled model allocates at the planning batch, by purpose. */
void pipeline_print_memory(FILE *out, const Compilation *c) {
  const ModelMemory *mm = c->mem;
  const MemPlan *p = mm->grad ? mm->grad : mm->fwd;
  int64_t B = c->batch;
  char sb[32];
  memplan_print_table(out, p, B, mm->extra);
  int counts[MEM__COUNT] = {0};
  for (int32_t i = 0; i < p->nvals; i++)
    if (p->vals[i].in_workspace || p->vals[i].kind == MEM_PARAM) counts[p->vals[i].kind]++;
  MemTotals t = memplan_totals(p, B, 0);
  bprt_model_memory r = pipeline_memory_at(c, B);
  double flops = 0;
  for (int32_t i = 0; i < p->f->ninsts; i++)
    if (p->f->insts[i].flags & IF_RECOMPUTED) flops += memplan_inst_flops(p->f, i, B);
  int slots = mm->param_floats > 0 ? (int)(mm->opt_state_floats / mm->param_floats) : 0;
#define LINE(name, bytes) fprintf(out, "  %-20s %12lld bytes  %s", name, (long long)(bytes), memplan_format_size(bytes, sb, sizeof sb))
  fprintf(out, "\ntotals at batch %lld:\n", (long long)B);
  LINE("parameters", r.params);
  fprintf(out, "  (%d tensors)\n", mm->nparams);
  LINE("gradients", mm->grad ? r.grads : 0);
  fprintf(out, "\n");
  LINE("optimizer state", r.opt_state);
  fprintf(out, "  (%dx parameters)\n", slots);
  LINE("buffers", r.buffers);
  fprintf(out, "  (%d tensors: running statistics, no gradient)\n", mm->nbuffers);
  LINE("kept activations", t.kept);
  fprintf(out, "  (%d tensors)\n", counts[MEM_KEPT]);
  LINE("recomputed", t.recomputed);
  fprintf(out, "  (%d tensors, %.4g MFLOP recomputed per step)\n", counts[MEM_RECOMPUTED], flops / 1e6);
  LINE("temporaries", t.temporaries);
  fprintf(out, "  (%d tensors)\n", counts[MEM_TEMP]);
  LINE("workspace", r.workspace);
  fprintf(out, "  (= %lld + %lld * B: product packing and im2col buffers %lld, accumulation scratch %lld, "
          "values %lld + %lld * B)\n",
          (long long)mm->workspace.fixed, (long long)mm->workspace.per_batch, (long long)mm->extra,
          (long long)mm->accum_bytes, (long long)(mm->workspace.fixed - mm->extra - mm->accum_bytes),
          (long long)mm->workspace.per_batch);
  LINE("output buffers", r.outputs);
  fprintf(out, "  (the outputs of the last step, for the caller)\n");
  LINE("other", r.other);
  fprintf(out, "  (the model object, a label row)\n");
  LINE("total", r.total);
  fprintf(out, "  (everything the compiled model allocates; `bpcc train --watch` measures it)\n");
#undef LINE
}

static void print_stage(Compilation *c, Stage s, FILE *out) {
  const char *name = pipeline_stages[s].name;
  switch (s) {
  case STAGE_READ: case STAGE_MACHINE: case STAGE__COUNT: break;
  case STAGE_PARSE: fe_dump_ast(out, c->program); break;
  case STAGE_CHECK:
    for (int i = 0; i < c->unit->nmodels; i++) {
      if (i) fputc('\n', out);
      fe_print_summary(out, c->unit->models[i]);
    }
    break;
  case STAGE_LOWER: fprintf(out, "# IR after %s\n", name); ir_print_func(out, c->fwd); break;
  case STAGE_CANONICALIZE: case STAGE_AUTODIFF: case STAGE_SIMPLIFY: case STAGE_PRECISION: case STAGE_RECOMPUTE:
    if (c->grad) {
      fprintf(out, "# IR after %s\n", name);
      ir_print_func(out, c->grad);
    } else {
      fprintf(out, "# IR after %s: @%s has no loss, so no gradient\n", name, c->fwd->name);
    }
    break;
  case STAGE_KERNELS:
    fprintf(out, "# kernel plan of the forward entry (after %s)\n", name);
    kernel_plan_print(out, c->kfwd);
    if (c->kgrad) {
      fprintf(out, "# kernel plan of the gradient entry (after %s)\n", name);
      kernel_plan_print(out, c->kgrad);
    }
    break;
  case STAGE_MEMORY: fprintf(out, "# memory plan (after %s)\n", name); pipeline_print_memory(out, c); break;
  case STAGE_LLVM: {
    char *text = LLVMPrintModuleToString(cg_model_module(c->cg));
    fprintf(out, "; LLVM IR after %s\n%s", name, text);
    LLVMDisposeMessage(text);
    break;
  }
  }
}

bool pipeline_run(Compilation *c, Stage upto) {
  if (c->from_ir) {   /* IR from outside (FILE.ir, tests): the stages expect valid input */
    c->from_ir = false;
    Func *fs[2] = {c->fwd, c->grad};
    for (int k = 0; k < 2; k++)
      if (fs[k] && !ir_verify(fs[k], "the input")) {
        diag_error(SRCLOC_NONE, "@%s is not valid IR (the verifier's messages are above)", fs[k]->name);
        return false;
      }
  }
  for (int s = c->done + 1; s <= (int)upto; s++) {
    if (s > STAGE_LOWER && c->batch == 0) resolve(c);
    double t0 = now();
    bool ok = run_stage(c, (Stage)s);
    c->seconds[s] = now() - t0;
    if (!ok) return false;
    c->done = s;
    if (c->opt.verify) verify(c, (Stage)s);
    const char *pa = c->opt.print_after;
    if (pa && (strcmp(pa, pipeline_stages[s].name) == 0 || strcmp(pa, "all") == 0))
      print_stage(c, (Stage)s, c->opt.print_out ? c->opt.print_out : stdout);
  }
  return true;
}
