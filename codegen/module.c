/* codegen/module.c — from the planned entries of a model to one LLVM module.
 *
 * codegen lowers the plans it is given and decides nothing about them: which
 * instructions each entry computes, which share a kernel and in which order they run
 * is the kernel plan (passes/kernel_plan.c); where each value lives — the parameter
 * block's layout, every workspace slot — is the memory plan (passes/memplan.c). What
 * this file adds, top to bottom (cg_model_build):
 *   1. the target machine for -march; the vector width W and the GEMM tile follow
 *   2. the descriptor's tables: parameters at the memory plan's offsets, inputs (by
 *      index), outputs (the forward function's output sinks, in order)
 *   3. per entry, a pointer for every live value (an input, the parameter or gradient
 *      block, a workspace slot: [GEMM pack buffers][fixed + per_batch * B]), then one
 *      loop nest per kernel of the plan, in its order; in the forward entry the kernels
 *      only the loss needs run when the caller passes a loss pointer
 *   4. <model>__forward(frame), <model>__grad(frame), <model>__update(frame) (the
 *      optimizer alone) and <model>__step(frame) = grad, then update if no label was bad
 *   5. debug info (line tables: each kernel at its instruction's DSL line), verify,
 *      default<On> with the target machine */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <llvm-c/Analysis.h>

#include "codegen/cg.h"
#include "passes/memplan.h"


char *cg_entry_name(const char *model, const char *which, char *buf, size_t n) {
  snprintf(buf, n, "%s__%s", model, which);
  return buf;
}

LLVMModuleRef cg_model_module(CgModel *m) { return m->M; }
LLVMTargetMachineRef cg_model_target(CgModel *m) { return m->tm; }
bprt_model_desc *cg_model_desc(CgModel *m) { return &m->desc; }
int cg_model_lanes(CgModel *m) { return m->lanes; }
int cg_model_elem_bytes(CgModel *m) { return m->esize; }

bool cg_check_runtime_f32(Func *f) {
  for (int32_t i = 0; f && i < f->ninsts; i++) {
    const Inst *in = &f->insts[i];
    if ((in->op == OP_INPUT || in->op == OP_PARAM) && ir_vtype(f, i)->dtype == DT_F64) {
      diag_error(in->loc, "%s '%s' is f64: training, evaluation and model libraries run f32 models; "
                 "f64 is for `bpcc gradcheck` and the codegen tests", in->op == OP_INPUT ? "input" : "parameter",
                 in->name ? in->name : "");
      return false;
    }
  }
  return true;
}

/* The element type of a model: f32, or f64 when its first float tensor is f64; a
 * tensor of the other float type is a located error. */
static bool model_is_f64(Func *fwd, Func *grad, bool *f64) {
  Func *fs[2] = {fwd, grad};
  int dt = -1;
  for (int q = 0; q < 2; q++)
    for (int32_t i = 0; fs[q] && i < fs[q]->ninsts; i++) {
      const Inst *in = &fs[q]->insts[i];
      if (in->type == TYPE_VOID) continue;
      int d = ir_vtype(fs[q], i)->dtype;
      if (d != DT_F32 && d != DT_F64) continue;
      if (dt < 0) dt = d;
      if (d != dt) {
        diag_error(in->loc, "codegen: f32 and f64 tensors in one model (%%%d = %s in @%s is %s, the model is %s)",
                   (int)i, ir_ops[in->op].name, fs[q]->name, d == DT_F64 ? "f64" : "f32", dt == DT_F64 ? "f64" : "f32");
        return false;
      }
    }
  *f64 = dt == DT_F64;
  return true;
}

void cg_model_free(CgModel *m) {
  if (!m) return;
  if (m->jit) LLVMOrcDisposeLLJIT(m->jit);
  if (m->M) LLVMDisposeModule(m->M);
  if (m->tsc) LLVMOrcDisposeThreadSafeContext(m->tsc);
  if (m->tm) LLVMDisposeTargetMachine(m->tm);
  arena_free(m->arena);
  bp_free(m);
}

/* ------------------------------------------------------------------ layout */

int64_t cg_workspace_extra(const CgOptions *o, const KernelPlan *fwd, const KernelPlan *grad, int elem_bytes) {
  const KernelPlan *plans[2] = {fwd, grad};
  int64_t a, b, col;
  CgBlocking bk;
  cg_blocking(o, &bk);
  cg_gemm_pack_sizes(plans, 2, &bk, &a, &b, &col);
  return (a + b + col) * elem_bytes * cg_gemm_chunks(o);
}

/* One entry being emitted: its kernel plan and its workspace plan. */
typedef struct {
  const KernelPlan *kp;
  const MemPlan *mp;
} EntryPlan;

/* The gradient entry draws dropout masks and writes gradients; forward does neither. */
static bool training(const EntryPlan *p) { return p->kp->mode == PLAN_TRAINING; }

/* ------------------------------------------------------------------ the model tables */

typedef struct {
  Cg cg;
  CgModel *m;
  Func *fwd, *grad;
  const ModelMemory *mem;
  int64_t pack_bytes;   /* the GEMM pack buffers at the front of the workspace */
  LLVMValueRef acc;     /* i1 frame->accumulate != 0, in the training entry's body */
} Build;

static int find_param(const bprt_model_desc *d, const char *name) {
  for (int i = 0; i < d->nparams; i++)
    if (strcmp(d->params[i].name, name) == 0) return i;
  return -1;
}

static int find_buffer(const bprt_model_desc *d, const char *name) {
  for (int i = 0; i < d->nbuffers; i++)
    if (strcmp(d->buffers[i].name, name) == 0) return i;
  return -1;
}

static int find_output(const bprt_model_desc *d, const char *name) {
  for (int i = 0; i < d->noutputs; i++)
    if (strcmp(d->outputs[i].name, name) == 0) return i;
  return -1;
}

static void type_to_desc(const TensorType *t, int32_t *rank, int64_t *dims) {
  *rank = t->rank;
  for (int i = 0; i < BPRT_MODEL_MAX_RANK; i++) dims[i] = i < t->rank ? (t->dims[i] == DIM_BATCH ? BPRT_DIM_BATCH : t->dims[i]) : 0;
}

static bool build_tables(Build *b) {
  CgModel *m = b->m;
  bprt_model_desc *d = &m->desc;
  Func *pf = b->grad ? b->grad : b->fwd;
  /* params, at the memory plan's offsets */
  const ModelMemory *mm = b->mem;
  int np = mm->nparams;
  bprt_param_desc *params = arena_alloc(m->arena, (size_t)(np + 1) * sizeof *params);
  for (int k = 0; k < np; k++) {
    const Inst *in = &pf->insts[mm->param_inst[k]];
    const TensorType *t = ir_vtype(pf, mm->param_inst[k]);
    if (t->dtype != (b->cg.esize == 8 ? DT_F64 : DT_F32)) {
      diag_error(in->loc, "codegen: parameter '%s' must be %s", in->name ? in->name : "", b->cg.esize == 8 ? "f64" : "f32");
      return false;
    }
    bprt_param_desc *p = &params[k];
    p->name = arena_strdup(m->arena, in->name ? in->name : "");
    type_to_desc(t, &p->rank, p->dims);
    p->offset = mm->param_offset[k];
    p->init = (int32_t)in->iattr[0];
    p->init_a = in->fattr[0];
    p->init_b = in->fattr[1];
    const char *file = in->loc.file >= 0 ? diag_file_name(in->loc.file) : NULL;
    p->loc = arena_printf(m->arena, "%s:%d:%d", file ? file : "?", in->loc.line, in->loc.col);
    p->trainable = b->grad != NULL && mm->param_trained[k];
    for (int j = 0; j < k; j++)
      if (strcmp(params[j].name, p->name) == 0) {
        diag_error(in->loc, "codegen: two parameters are named '%s'", p->name);
        return false;
      }
  }
  d->nparams = np;
  d->params = params;
  d->param_floats = mm->param_floats;
  /* buffers, at the memory plan's offsets into their own block */
  int nbuf = mm->nbuffers;
  bprt_param_desc *bufs = arena_alloc(m->arena, (size_t)(nbuf + 1) * sizeof *bufs);
  for (int k = 0; k < nbuf; k++) {
    const Inst *in = &pf->insts[mm->buffer_inst[k]];
    bprt_param_desc *p = &bufs[k];
    p->name = arena_strdup(m->arena, in->name ? in->name : "");
    type_to_desc(ir_vtype(pf, mm->buffer_inst[k]), &p->rank, p->dims);
    p->offset = mm->buffer_offset[k];
    p->init = (int32_t)in->iattr[0];
    p->init_a = in->fattr[0];
    const char *file = in->loc.file >= 0 ? diag_file_name(in->loc.file) : NULL;
    p->loc = arena_printf(m->arena, "%s:%d:%d", file ? file : "?", in->loc.line, in->loc.col);
    if (find_param(d, p->name) >= 0) {
      diag_error(in->loc, "codegen: '%s' names both a parameter and a buffer", p->name);
      return false;
    }
  }
  d->nbuffers = nbuf;
  d->buffers = bufs;
  d->buffer_floats = mm->buffer_floats;
  for (int32_t i = 0; i < b->fwd->ninsts; i++) d->has_loss |= b->fwd->insts[i].op == OP_LOSS;
  /* the forward function's params and buffers must be the same tensors */
  if (b->grad)
    for (int32_t i = 0; i < b->fwd->ninsts; i++) {
      const Inst *in = &b->fwd->insts[i];
      bool buf = in->op == OP_BUFFER;
      if (!buf && in->op != OP_PARAM) continue;
      const char *name = in->name ? in->name : "";
      int k = buf ? find_buffer(d, name) : find_param(d, name);
      const bprt_param_desc *want = buf ? bufs : params;
      int32_t rank;
      int64_t dims[BPRT_MODEL_MAX_RANK];
      type_to_desc(ir_vtype(b->fwd, i), &rank, dims);
      if (k < 0 || rank != want[k].rank || memcmp(dims, want[k].dims, sizeof dims) != 0) {
        diag_error(in->loc, "codegen: %s '%s' of @%s has no match of the same shape in @%s",
                   buf ? "buffer" : "parameter", name, b->fwd->name, b->grad->name);
        return false;
      }
    }
  /* inputs, by index, from both functions */
  int ni = 0;
  Func *fs[2] = {b->fwd, b->grad};
  for (int q = 0; q < 2; q++)
    if (fs[q])
      for (int32_t i = 0; i < fs[q]->ninsts; i++)
        if (fs[q]->insts[i].op == OP_INPUT && fs[q]->insts[i].iattr[0] + 1 > ni) ni = (int)fs[q]->insts[i].iattr[0] + 1;
  bprt_tensor_desc *inputs = arena_alloc(m->arena, (size_t)(ni + 1) * sizeof *inputs);
  bool *seen = arena_alloc(m->arena, (size_t)(ni + 1));
  for (int q = 0; q < 2; q++) {
    if (!fs[q]) continue;
    for (int32_t i = 0; i < fs[q]->ninsts; i++) {
      const Inst *in = &fs[q]->insts[i];
      if (in->op != OP_INPUT) continue;
      if (in->iattr[0] < 0) {
        diag_error(in->loc, "codegen: input '%s' has a negative index", in->name ? in->name : "");
        return false;
      }
      bprt_tensor_desc *t = &inputs[in->iattr[0]];
      const TensorType *ty = ir_vtype(fs[q], i);
      bprt_tensor_desc nd;
      memset(&nd, 0, sizeof nd);
      nd.name = arena_strdup(m->arena, in->name ? in->name : "");
      nd.is_label = ty->dtype == DT_LABEL;
      type_to_desc(ty, &nd.rank, nd.dims);
      if (seen[in->iattr[0]] && (strcmp(t->name, nd.name) != 0 || t->rank != nd.rank ||
                                 memcmp(t->dims, nd.dims, sizeof nd.dims) != 0 || t->is_label != nd.is_label)) {
        diag_error(in->loc, "codegen: input %lld is '%s' here and '%s' elsewhere, or differs in type",
                   (long long)in->iattr[0], nd.name, t->name);
        return false;
      }
      *t = nd;
      seen[in->iattr[0]] = true;
    }
  }
  for (int i = 0; i < ni; i++)
    if (!seen[i]) {
      diag_error(SRCLOC_NONE, "codegen: model '%s' has no input with index %d", b->fwd->name, i);
      return false;
    }
  d->ninputs = ni;
  d->inputs = inputs;
  /* outputs: the forward function's output sinks */
  int no = 0;
  for (int32_t i = 0; i < b->fwd->ninsts; i++) no += b->fwd->insts[i].op == OP_OUTPUT;
  bprt_tensor_desc *outputs = arena_alloc(m->arena, (size_t)(no + 1) * sizeof *outputs);
  no = 0;
  for (int32_t i = 0; i < b->fwd->ninsts; i++) {
    const Inst *in = &b->fwd->insts[i];
    if (in->op != OP_OUTPUT) continue;
    bprt_tensor_desc *t = &outputs[no++];
    t->name = arena_strdup(m->arena, in->name ? in->name : "");
    type_to_desc(ir_vtype(b->fwd, in->args[0]), &t->rank, t->dims);
  }
  d->noutputs = no;
  d->outputs = outputs;
  /* The output accuracy is read from when the targets are floats: the first that a
   * sigmoid computes with the shape of the second input (the targets, as the trainer
   * binds them), in output order, so a declared output comes before the activations
   * --watch adds. Scored element-wise at 0.5 (runtime/train.c). */
  if (ni == 2 && !inputs[1].is_label)
    for (int32_t i = 0, k = 0; i < b->fwd->ninsts && !d->sigmoid_output; i++) {
      const Inst *in = &b->fwd->insts[i];
      if (in->op != OP_OUTPUT) continue;
      const bprt_tensor_desc *t = &outputs[k++];
      if (b->fwd->insts[in->args[0]].op == OP_SIGMOID && t->rank == inputs[1].rank &&
          memcmp(t->dims, inputs[1].dims, sizeof t->dims) == 0)
        d->sigmoid_output = k;
    }
  return true;
}

/* ------------------------------------------------------------------ debug info */

static void debug_begin(Build *b) {
  Cg *cg = &b->cg;
  const char *path = NULL;
  Func *fs[2] = {b->fwd, b->grad};
  for (int q = 0; q < 2 && !path; q++)
    if (fs[q])
      for (int32_t i = 0; i < fs[q]->ninsts && !path; i++)
        if (fs[q]->insts[i].loc.file >= 0) path = diag_file_name(fs[q]->insts[i].loc.file);
  if (!path) path = "<model>";
  const char *slash = strrchr(path, '/');
  const char *base = slash ? slash + 1 : path;
  size_t dirlen = slash ? (size_t)(slash - path) : 1;
  const char *dir = slash ? path : ".";
  cg->dib = LLVMCreateDIBuilder(cg->M);
  cg->di_file = LLVMDIBuilderCreateFile(cg->dib, base, strlen(base), dir, dirlen);
  cg->di_cu = LLVMDIBuilderCreateCompileUnit(cg->dib, LLVMDWARFSourceLanguageC, cg->di_file, "bpcc", 4,
                                             b->m->opt_level > 0, "", 0, 0, "", 0,
                                             LLVMDWARFEmissionLineTablesOnly, 0, 0, 0, "", 0, "", 0);
  LLVMAddModuleFlag(cg->M, LLVMModuleFlagBehaviorWarning, "Debug Info Version", 18,
                    LLVMValueAsMetadata(LLVMConstInt(cg->t_i32, LLVMDebugMetadataVersion(), 0)));
  LLVMAddModuleFlag(cg->M, LLVMModuleFlagBehaviorWarning, "Dwarf Version", 13,
                    LLVMValueAsMetadata(LLVMConstInt(cg->t_i32, 4, 0)));
}

static void debug_function(Cg *cg, LLVMValueRef fn, const char *name, int line) {
  if (!cg->dib) return;
  LLVMMetadataRef ty = LLVMDIBuilderCreateSubroutineType(cg->dib, cg->di_file, NULL, 0, LLVMDIFlagZero);
  cg->di_sp = LLVMDIBuilderCreateFunction(cg->dib, cg->di_file, name, strlen(name), name, strlen(name), cg->di_file,
                                          (unsigned)line, ty, 0, 1, (unsigned)line, LLVMDIFlagZero, 0);
  LLVMSetSubprogram(fn, cg->di_sp);
  LLVMSetCurrentDebugLocation2(cg->B, LLVMDIBuilderCreateDebugLocation(cg->C, (unsigned)line, 0, cg->di_sp, NULL));
}

static void debug_loc(Cg *cg, SrcLoc loc) {
  if (!cg->dib || loc.line <= 0) return;
  LLVMSetCurrentDebugLocation2(cg->B, LLVMDIBuilderCreateDebugLocation(cg->C, (unsigned)loc.line,
                                                                        (unsigned)(loc.col > 0 ? loc.col : 0), cg->di_sp, NULL));
}

/* ------------------------------------------------------------------ entry points */

static LLVMValueRef new_entry(Build *b, const char *which) {
  Cg *cg = &b->cg;
  char name[256];
  cg_entry_name(b->m->desc.model_name, which, name, sizeof name);
  LLVMTypeRef pt = cg->t_ptr;
  LLVMValueRef fn = cg_new_function(cg, name, LLVMFunctionType(cg->t_void, &pt, 1, 0), false);
  LLVMAddAttributeAtIndex(fn, 1, LLVMCreateEnumAttribute(cg->C, LLVMGetEnumAttributeKindForName("noalias", 7), 0));
  cg->fn = fn;
  cg->frame = LLVMGetParam(fn, 0);
  LLVMPositionBuilderAtEnd(cg->B, LLVMAppendBasicBlockInContext(cg->C, fn, "entry"));
  int line = 1;
  Func *f = b->fwd;
  for (int32_t i = 0; i < f->ninsts; i++)
    if (f->insts[i].loc.line > 0) {
      line = f->insts[i].loc.line;
      break;
    }
  debug_function(cg, fn, name, line);
  return fn;
}

/* ------------------------------------------------------------------ profiling */

/* The counters of one entry: a zeroed i64 array <model>__prof_<which>, one per kernel. */
static LLVMValueRef prof_counters(Build *b, const char *which, int n) {
  Cg *cg = &b->cg;
  char name[256];
  snprintf(name, sizeof name, "%s__prof_%s", b->m->desc.model_name, which);
  LLVMTypeRef at = LLVMArrayType(cg->t_i64, (unsigned)(n > 0 ? n : 1));
  LLVMValueRef g = LLVMAddGlobal(cg->M, at, name);
  LLVMSetInitializer(g, LLVMConstNull(at));
  return g;
}

static LLVMValueRef prof_now(Cg *cg) { return cg_intrinsic(cg, "llvm.readcyclecounter", NULL, NULL, 0); }

static void prof_add(Cg *cg, LLVMValueRef counters, int k, LLVMValueRef t0) {
  LLVMValueRef slot = cg_gep(cg, cg->t_i64, counters, cg_i64(cg, k));
  LLVMValueRef dt = LLVMBuildSub(cg->B, prof_now(cg), t0, "");
  LLVMBuildStore(cg->B, LLVMBuildAdd(cg->B, LLVMBuildLoad2(cg->B, cg->t_i64, slot, ""), dt, ""), slot);
}

/* "op+op+... file:line" of a kernel group */
static const char *group_name(Arena *a, Func *f, const int32_t *members, int n) {
  char buf[512];
  size_t k = 0;
  buf[0] = 0;
  for (int i = 0; i < n && k + 40 < sizeof buf; i++)
    k += (size_t)snprintf(buf + k, sizeof buf - k, "%s%s", i ? "+" : "", ir_ops[f->insts[members[i]].op].name);
  SrcLoc loc = f->insts[members[0]].loc;
  if (loc.file >= 0 && loc.line > 0 && k + 40 < sizeof buf) {
    const char *path = diag_file_name(loc.file), *slash = strrchr(path, '/');
    snprintf(buf + k, sizeof buf - k, " %s:%d", slash ? slash + 1 : path, loc.line);
  }
  return arena_strdup(a, buf);
}

/* ------------------------------------------------ gradient accumulation and the hook */

static int64_t param_numel(const bprt_param_desc *pd) {
  int64_t n = 1;
  for (int i = 0; i < pd->rank; i++) n *= pd->dims[i];
  return n;
}

typedef struct {
  const CgVal *src;
  LLVMValueRef dst;
} GradAdd;

static void grad_add_body(Cg *cg, void *ctx, LLVMValueRef j, LLVMTypeRef T) {
  const GradAdd *a = ctx;
  LLVMValueRef x = cg_val_load(cg, a->src, T, j);
  LLVMValueRef y = cg_load(cg, T, a->dst, j);
  cg_store(cg, LLVMBuildFAdd(cg->B, y, x, ""), a->dst, j);
}

/* dst[i] += src[i] over parameter pd's gradient (frame->accumulate: grads += g). */
static void grad_add(Cg *cg, const CgVal *src, LLVMValueRef dst, const bprt_param_desc *pd) {
  GradAdd a = {src, dst};
  cg_vloop(cg, cg_i64(cg, param_numel(pd)), grad_add_body, &a);
}

/* if (frame->grad_ready) frame->grad_ready(frame->grad_ready_ctx, k) */
static void grad_ready(Cg *cg, int k) {
  LLVMBuilderRef B = cg->B;
  LLVMValueRef fn = cg_frame_field(cg, CG_FR_GRAD_READY);
  LLVMBasicBlockRef join = cg_if_begin(cg, LLVMBuildICmp(B, LLVMIntNE, fn, LLVMConstNull(cg->t_ptr), ""));
  LLVMTypeRef at[2] = {cg->t_ptr, cg->t_i32};
  LLVMValueRef args[2] = {cg_frame_field(cg, CG_FR_GRAD_READY_CTX), cg_i32(cg, k)};
  LLVMBuildCall2(B, LLVMFunctionType(cg->t_void, at, 2, 0), fn, args, 2, "");
  cg_if_end(cg, join);
}

/* One kernel: group g of the plan, members[0..n). */
static bool emit_group(Build *b, const EntryPlan *p, int g, const int32_t *members, int n, const CgVal *vals, bool *has_grad) {
  Cg *cg = &b->cg;
  Func *f = p->kp->f;
  bprt_model_desc *d = &b->m->desc;
  LLVMBuilderRef B = cg->B;
  const Inst *in = &f->insts[members[0]];
  bool ok = true;
  if (!cg_check_dtypes(cg, f, members, n)) return false;
  if (p->kp->kind[g] == KERNEL_GEMM) return cg_kernel_gemm_fused(cg, f, members, n, vals);
  if (p->kp->kind[g] == KERNEL_XENT) return cg_kernel_xent_fused(cg, f, members, n, vals);
  if (p->kp->kind[g] == KERNEL_POOL_MASK) return cg_kernel_pool_mask(cg, f, members, vals);
  if (p->kp->kind[g] == KERNEL_ATTN) return cg_kernel_attention(cg, f, members, n, vals);
  if (p->kp->kind[g] == KERNEL_VIEW) return cg_kernel_view(cg, f, members, n, vals);
  if (p->kp->kind[g] == KERNEL_NORM16) return cg_kernel_norm16(cg, f, members, n, vals);
  if (n > 1) return cg_kernel_ew(cg, f, members, n, vals);
  int32_t v = members[0];
  switch ((Op)in->op) {
  case OP_CONST:   /* materialized */
    {
      CgVal c = {NULL, true, in->fattr[0], vals[v].t};
      cg_kernel_copy(cg, &c, vals[v].ptr, vals[v].t);
    }
    break;
  case OP_OUTPUT: {
    int k = find_output(d, in->name ? in->name : "");
    if (k < 0) {
      diag_error(in->loc, "codegen: output '%s' of @%s is not an output of @%s", in->name ? in->name : "", f->name, b->fwd->name);
      ok = false;
      break;
    }
    LLVMValueRef outs = cg_frame_field(cg, CG_FR_OUTPUTS);
    LLVMValueRef have = LLVMBuildICmp(B, LLVMIntNE, outs, LLVMConstNull(cg->t_ptr), "");
    LLVMBasicBlockRef join = cg_if_begin(cg, have);
    LLVMValueRef dst = LLVMBuildLoad2(B, cg->t_ptr, cg_gep(cg, cg->t_ptr, outs, cg_i64(cg, k)), "out");
    LLVMBasicBlockRef join2 = cg_if_begin(cg, LLVMBuildICmp(B, LLVMIntNE, dst, LLVMConstNull(cg->t_ptr), ""));
    cg_kernel_copy(cg, &vals[in->args[0]], dst, vals[in->args[0]].t);
    cg_if_end(cg, join2);
    cg_if_end(cg, join);
    break;
  }
  case OP_LOSS: {
    LLVMValueRef lp = cg_frame_field(cg, CG_FR_LOSS);
    LLVMBasicBlockRef join = cg_if_begin(cg, LLVMBuildICmp(B, LLVMIntNE, lp, LLVMConstNull(cg->t_ptr), ""));
    cg_store(cg, cg_val_load(cg, &vals[in->args[0]], cg->t_f32, cg_i64(cg, 0)), lp, cg_i64(cg, 0));
    cg_if_end(cg, join);
    break;
  }
  case OP_GRAD: {
    const Inst *pi = &f->insts[in->args[0]];
    int k = find_param(d, pi->name ? pi->name : "");
    has_grad[k] = true;
    if (p->kp->direct_grad[in->args[1]] == v) break;   /* already computed in place */
    LLVMValueRef dst = cg_gep(cg, cg->t_f32, cg_frame_field(cg, CG_FR_GRADS), cg_i64(cg, d->params[k].offset));
    LLVMBasicBlockRef then = LLVMGetInsertBlock(B);
    LLVMValueRef fn = LLVMGetBasicBlockParent(then);
    LLVMBasicBlockRef add = LLVMAppendBasicBlockInContext(cg->C, fn, "grad_add");
    LLVMBasicBlockRef copy = LLVMAppendBasicBlockInContext(cg->C, fn, "grad_copy");
    LLVMBasicBlockRef join = LLVMAppendBasicBlockInContext(cg->C, fn, "grad_done");
    LLVMBuildCondBr(B, b->acc, add, copy);
    LLVMPositionBuilderAtEnd(B, add);
    grad_add(cg, &vals[in->args[1]], dst, &d->params[k]);
    LLVMBuildBr(B, join);
    LLVMPositionBuilderAtEnd(B, copy);
    cg_kernel_copy(cg, &vals[in->args[1]], dst, vals[in->args[1]].t);
    LLVMBuildBr(B, join);
    LLVMPositionBuilderAtEnd(B, join);
    break;
  }
  case OP_ASSIGN: {   /* the buffer's new value, after every kernel that reads it (kernel_plan.c) */
    const Inst *bi = &f->insts[in->args[0]];
    int k = find_buffer(d, bi->name ? bi->name : "");
    if (k < 0 || !training(p)) ir_die("codegen: assign to '%s' outside the training entry", bi->name ? bi->name : "");
    LLVMValueRef dst = cg_gep(cg, cg->t_f32, cg_frame_field(cg, CG_FR_BUFFERS), cg_i64(cg, d->buffers[k].offset));
    cg_kernel_copy(cg, &vals[in->args[1]], dst, vals[in->args[1]].t);
    break;
  }
  default:
    ok = cg_kernel(cg, f, v, vals, training(p));
    break;
  }
  return ok;
}

/* The body of forward or grad: pointers of every live value, then the kernels. */
static bool emit_body(Build *b, const EntryPlan *p, int which) {
  Cg *cg = &b->cg;
  const KernelPlan *kp = p->kp;
  Func *f = kp->f;
  bprt_model_desc *d = &b->m->desc;
  LLVMBuilderRef B = cg->B;
  CgVal *vals = bp_xmalloc((size_t)(f->ninsts + 1) * sizeof *vals);
  memset(vals, 0, (size_t)(f->ninsts + 1) * sizeof *vals);
  LLVMBuildStore(B, cg_i32(cg, 0), cg_frame_field_ptr(cg, CG_FR_STATUS));
  LLVMValueRef ws = cg_frame_field(cg, CG_FR_WORKSPACE);
  LLVMValueRef params = cg_frame_field(cg, CG_FR_PARAMS);
  LLVMValueRef inputs = cg_frame_field(cg, CG_FR_INPUTS);
  LLVMValueRef batch = cg_batch(cg);
  cg->gemm_pack = ws;
  /* [pack buffers][values] (passes/memplan.h); the accumulation scratch is the frame's own */
  LLVMTypeRef i8 = LLVMInt8TypeInContext(cg->C);
  LLVMValueRef scratch = training(p) ? cg_frame_field(cg, CG_FR_ACCUM_SCRATCH) : NULL;
  LLVMValueRef fixed_base = LLVMBuildGEP2(B, i8, ws, (LLVMValueRef[]){cg_i64(cg, b->pack_bytes)}, 1, "");
  b->acc = training(p) ? LLVMBuildICmp(B, LLVMIntNE, cg_frame_field(cg, CG_FR_ACCUMULATE), cg_i32(cg, 0), "accumulate")
                       : NULL;
  /* in-place gradients: at their offset in their kernel's share of the scratch */
  int64_t *scratch_off = bp_xmalloc((size_t)(f->ninsts + 1) * sizeof *scratch_off);
  for (int g = 0; g < kp->ngroups; g++) {
    int64_t off = 0;
    for (int32_t q = kp->group_start[g]; q < kp->group_start[g + 1]; q++) {
      scratch_off[kp->order[q]] = off;
      off += memplan_accum_bytes_of(kp, kp->order[q], cg->esize);
    }
  }
  for (int32_t i = 0; i < f->ninsts; i++) {
    const Inst *in = &f->insts[i];
    if (!kp->live[i] || in->type == TYPE_VOID) continue;
    CgVal *v = &vals[i];
    v->t = ir_vtype(f, i);
    if (in->op == OP_INPUT) {
      if (ir_dtype_is_low(v->t->dtype)) {   /* 16-bit values are made by casts, never passed in */
        diag_error(in->loc, "codegen: input '%s' is %s: inputs are f32 (or labels); a cast makes 16-bit values",
                   in->name ? in->name : "", ir_dtype_name((DType)v->t->dtype));
        bp_free(scratch_off);
        bp_free(vals);
        return false;
      }
      LLVMValueRef pp = cg_gep(cg, cg->t_ptr, inputs, cg_i64(cg, in->iattr[0]));
      v->ptr = LLVMBuildLoad2(B, cg->t_ptr, pp, "in");
    } else if (in->op == OP_PARAM) {
      int k = find_param(d, in->name ? in->name : "");
      v->ptr = cg_gep(cg, cg->t_f32, params, cg_i64(cg, d->params[k].offset));
    } else if (in->op == OP_BUFFER) {
      int k = find_buffer(d, in->name ? in->name : "");
      if (k < 0) ir_die("codegen: buffer '%s' of @%s is not in the buffer block", in->name ? in->name : "", f->name);
      v->ptr = cg_gep(cg, cg->t_f32, cg_frame_field(cg, CG_FR_BUFFERS), cg_i64(cg, d->buffers[k].offset));
    } else if (in->op == OP_CONST && !kp->materialize[i]) {
      v->is_const = true;
      v->cval = in->fattr[0];
    } else if (kp->internal[i]) {     /* lives only inside its fused kernel */
      v->ptr = NULL;
    } else if (kp->direct_grad[i] >= 0) {   /* computed in place in the grads block */
      const Inst *pi = &f->insts[f->insts[kp->direct_grad[i]].args[0]];
      int k = find_param(d, pi->name ? pi->name : "");
      v->ptr = cg_gep(cg, cg->t_f32, cg_frame_field(cg, CG_FR_GRADS), cg_i64(cg, d->params[k].offset));
      /* accumulating: into the scratch, added to the slot after the kernel */
      LLVMValueRef sp = LLVMBuildGEP2(B, i8, scratch, (LLVMValueRef[]){cg_i64(cg, scratch_off[i])}, 1, "");
      v->ptr = LLVMBuildSelect(B, b->acc, sp, v->ptr, "grad_dst");
    } else {   /* the planned slot: pack buffers, then fixed + per_batch * B */
      const MemValue *mv = &p->mp->vals[i];
      if (!mv->in_workspace) ir_die("codegen: %%%d of @%s has no place in the memory plan", (int)i, f->name);
      LLVMValueRef off = cg_i64(cg, mv->offset.fixed);
      if (mv->offset.per_batch > 0)
        off = LLVMBuildAdd(B, off, LLVMBuildMul(B, batch, cg_i64(cg, mv->offset.per_batch), ""), "");
      v->ptr = LLVMBuildGEP2(B, LLVMInt8TypeInContext(cg->C), fixed_base, &off, 1, "");
    }
  }
  bool ok = true;
  bool *has_grad = bp_xmalloc((size_t)d->nparams + 1);
  memset(has_grad, 0, (size_t)d->nparams + 1);
  /* a parameter the loss does not reach gets zeros (nothing added when accumulating),
   * and is reported ready first */
  if (training(p)) {
    for (int32_t i = 0; i < f->ninsts; i++)
      if (f->insts[i].op == OP_GRAD && kp->live[i]) {
        const Inst *pi = &f->insts[f->insts[i].args[0]];
        int k = find_param(d, pi->name ? pi->name : "");
        if (k >= 0) has_grad[k] = true;
      }
    for (int k = 0; k < d->nparams; k++)
      if (!has_grad[k]) {
        const bprt_param_desc *pd = &d->params[k];
        CgVal zero = {NULL, true, 0.0, NULL};
        TensorType t;
        memset(&t, 0, sizeof t);
        t.dtype = DT_F32;
        t.rank = (uint8_t)pd->rank;
        for (int i = 0; i < pd->rank; i++) t.dims[i] = pd->dims[i];
        LLVMValueRef dst = cg_gep(cg, cg->t_f32, cg_frame_field(cg, CG_FR_GRADS), cg_i64(cg, pd->offset));
        LLVMBasicBlockRef join = cg_if_begin(cg, LLVMBuildNot(B, b->acc, ""));
        cg_kernel_copy(cg, &zero, dst, &t);
        cg_if_end(cg, join);
        grad_ready(cg, k);
      }
  }
  const KernelPlan *sc = kp;
  CgModel *cm = b->m;
  LLVMValueRef counters = NULL;
  if (cm->profile) {
    counters = prof_counters(b, which ? "grad" : "forward", sc->ngroups);
    cm->nprof[which] = sc->ngroups;
    cm->prof_names[which] = arena_alloc(cm->arena, (size_t)(sc->ngroups + 1) * sizeof(char *));
  }
  for (int g = 0; g < sc->ngroups && ok; g++) {
    const int32_t *members = &sc->order[sc->group_start[g]];
    int n = sc->group_start[g + 1] - sc->group_start[g];
    const Inst *in = &f->insts[members[0]];
    debug_loc(cg, in->loc);
    LLVMValueRef t0 = NULL;
    if (counters) {
      cm->prof_names[which][g] = group_name(cm->arena, f, members, n);
      t0 = prof_now(cg);
    }
    /* in forward, what only the loss needs runs when the caller asks for the loss */
    LLVMBasicBlockRef join = NULL;
    if (kp->loss_only[g] && !training(p))
      join = cg_if_begin(cg, LLVMBuildICmp(B, LLVMIntNE, cg_frame_field(cg, CG_FR_LOSS), LLVMConstNull(cg->t_ptr), ""));
    ok = emit_group(b, p, g, members, n, vals, has_grad);
    if (join) cg_if_end(cg, join);
    /* the gradients this kernel completed: added from the scratch when accumulating,
     * then reported (frame->grad_ready) */
    for (int q = 0; ok && training(p) && q < n; q++) {
      int32_t m = members[q];
      const Inst *mi = &f->insts[m];
      int32_t sink = -1;
      if (kp->direct_grad[m] >= 0) sink = kp->direct_grad[m];
      else if (mi->op == OP_GRAD && kp->direct_grad[mi->args[1]] != m) sink = m;
      if (sink < 0) continue;
      const Inst *pi = &f->insts[f->insts[sink].args[0]];
      int k = find_param(d, pi->name ? pi->name : "");
      if (kp->direct_grad[m] >= 0) {
        LLVMBasicBlockRef aj = cg_if_begin(cg, b->acc);
        CgVal sv = {LLVMBuildGEP2(B, i8, scratch, (LLVMValueRef[]){cg_i64(cg, scratch_off[m])}, 1, ""), false, 0.0,
                    vals[m].t};
        grad_add(cg, &sv, cg_gep(cg, cg->t_f32, cg_frame_field(cg, CG_FR_GRADS), cg_i64(cg, d->params[k].offset)),
                 &d->params[k]);
        cg_if_end(cg, aj);
      }
      grad_ready(cg, k);
    }
    if (counters) prof_add(cg, counters, g, t0);
  }
  bp_free(scratch_off);
  bp_free(has_grad);
  bp_free(vals);
  return ok;
}

/* ------------------------------------------------------------------ cg_model_build */

static void sanitize(char *s) {
  for (char *p = s; *p; p++)
    if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '_')) *p = '_';
}

int cg_gemm_chunks(const CgOptions *o) {
  int hint = o && o->nthreads_hint > 0 ? o->nthreads_hint : (int)sysconf(_SC_NPROCESSORS_ONLN);
  return hint < 1 ? 1 : hint > 64 ? 64 : hint;
}

static bool has_bf16_product(Func *f) {
  for (int32_t i = 0; i < f->ninsts; i++) {
    const Inst *in = &f->insts[i];
    if (ir_ops[in->op].kind == OPK_PRODUCT && ir_vtype(f, in->args[0])->dtype == DT_BF16) return true;
  }
  return false;
}

CgModel *cg_model_build(const CgModelInput *in) {
  CgOptions defaults = {"native", 3, 0, false, false};
  const CgOptions *o = in->options ? in->options : &defaults;
  const bprt_optimizer_config *opt = in->opt;
  Func *fwd = in->fwd ? in->fwd->f : NULL, *grad = in->grad ? in->grad->f : NULL;
  if (!fwd || !in->mem) {
    diag_error(SRCLOC_NONE, "codegen: no forward function");
    return NULL;
  }
  /* malformed IR gets the verifier's report, never a crash in the lowering */
  bool fwd_ok = ir_verify(fwd, "codegen input");
  if (!fwd_ok || (grad && !ir_verify(grad, "codegen input"))) {
    diag_error(SRCLOC_NONE, "codegen: @%s is not valid IR", !fwd_ok ? fwd->name : grad->name);
    return NULL;
  }
  if (opt && (opt->kind < 0 || opt->kind >= BPRT_OPT__COUNT)) {
    diag_error(SRCLOC_NONE, "codegen: unknown optimizer %d", opt->kind);
    return NULL;
  }
  bool f64 = false;
  if (!model_is_f64(fwd, grad, &f64)) return NULL;
  char err[256];
  int lanes = 1;
  LLVMTargetMachineRef tm = cg_target_machine(o->march, o->opt_level, &lanes, err, sizeof err);
  if (!tm) {
    diag_error(SRCLOC_NONE, "codegen: %s", err);
    return NULL;
  }
  CgModel *m = bp_xmalloc(sizeof *m);
  memset(m, 0, sizeof *m);
  m->arena = arena_new();
  m->tm = tm;
  m->lanes = lanes;
  m->opt_level = o->opt_level < 0 ? 0 : o->opt_level > 3 ? 3 : o->opt_level;
  m->march = arena_strdup(m->arena, o->march ? o->march : "native");
  m->profile = o->profile;
  char *mname = arena_strdup(m->arena, fwd->name ? fwd->name : "model");
  sanitize(mname);
  m->desc.model_name = mname;
  m->tsc = LLVMOrcCreateNewThreadSafeContext();
  m->C = LLVMOrcThreadSafeContextGetContext(m->tsc);
  m->M = LLVMModuleCreateWithNameInContext(mname, m->C);
  char *triple = LLVMGetTargetMachineTriple(tm);
  LLVMSetTarget(m->M, triple);
  LLVMDisposeMessage(triple);
  LLVMTargetDataRef dl = LLVMCreateTargetDataLayout(tm);
  LLVMSetModuleDataLayout(m->M, dl);
  LLVMDisposeTargetData(dl);

  Build b;
  memset(&b, 0, sizeof b);
  b.m = m, b.fwd = fwd, b.grad = grad, b.mem = in->mem;
  Cg *cg = &b.cg;
  cg->C = m->C, cg->M = m->M, cg->B = LLVMCreateBuilderInContext(m->C);
  cg->W = lanes;
  CgBlocking bk;
  cg_blocking(o, &bk);
  cg->MR = bk.mr, cg->NR = bk.nr, cg->KC = bk.kc, cg->MC = bk.mc, cg->NC = bk.nc;
  cg->gemm_chunks = cg_gemm_chunks(o);
  cg->prefer512 = lanes == 16;
  cg->esize = 4;
  cg->cpu = cg_target_features(tm);
  /* the bf16 core, for models that have bf16 products (AMX is asked of the kernel only
   * then: its tile state grows every signal frame of the process) */
  cg->gemm_bf16 = CG_BF16_CONVERT;
  if ((has_bf16_product(fwd) || (grad && has_bf16_product(grad))) &&
      (cg->gemm_bf16 = cg_gemm_bf16_select(cg->cpu, err, sizeof err)) < 0) {
    diag_error(SRCLOC_NONE, "codegen: %s", err);
    LLVMDisposeBuilder(cg->B);
    cg_model_free(m);
    return NULL;
  }
  cg_init_types(cg);
  if (f64) cg_set_f64(cg);   /* double elements, W / 2 lanes */
  m->esize = cg->esize;
  if (o->debug_info) debug_begin(&b);

  bool ok = build_tables(&b);
  const ModelMemory *mm = in->mem;
  const KernelPlan *plans[2] = {in->fwd, in->grad};
  cg_gemm_pack_sizes(plans, 2, &bk, &cg->pack_a_floats, &cg->pack_b_floats, &cg->conv_col_floats);
  b.pack_bytes = cg_gemm_pack_floats(cg) * cg->esize * cg->gemm_chunks;
  if (ok && (b.pack_bytes != mm->extra || mm->elem_bytes != cg->esize)) {
    diag_error(SRCLOC_NONE, "codegen: the memory plan keeps %lld bytes of %d-byte elements for the product buffers, "
               "codegen needs %lld of %d", (long long)mm->extra, (int)mm->elem_bytes, (long long)b.pack_bytes, cg->esize);
    ok = false;
  }
  EntryPlan pf = {in->fwd, mm->fwd}, pg = {in->grad, mm->grad};
  if (ok) {
    m->desc.ws_fixed = mm->workspace.fixed;
    m->desc.ws_per_batch = mm->workspace.per_batch;
    m->desc.ws_accum = mm->accum_bytes;
    m->desc.optimizer = opt ? opt->kind : BPRT_OPT_SGD;
    if (opt) memcpy(m->desc.hyper, opt->hyper, sizeof m->desc.hyper);
    m->desc.opt_state_floats = opt && grad ? mm->opt_state_floats : 0;

    new_entry(&b, "forward");
    ok = emit_body(&b, &pf, 0);
    LLVMBuildRetVoid(cg->B);
    m->has_entry[0] = true;
    if (ok && grad) {
      LLVMValueRef gfn = new_entry(&b, "grad");
      ok = emit_body(&b, &pg, 1);
      LLVMBuildRetVoid(cg->B);
      m->has_entry[1] = true;
      if (ok && opt) {
        /* update: the optimizer update alone; step: grad, then update (calls, not copies:
         * half the code to compile) */
        LLVMValueRef ufn = new_entry(&b, "update");
        CgParamRange *ranges = arena_alloc(m->arena, (size_t)(m->desc.nparams + 1) * sizeof *ranges);
        int nranges = 0;
        for (int k = 0; k < m->desc.nparams; k++) {
          const bprt_param_desc *pd = &m->desc.params[k];
          if (!pd->trainable) continue;
          int64_t n = 1;
          for (int i = 0; i < pd->rank; i++) n *= pd->dims[i];
          ranges[nranges].offset = pd->offset;
          ranges[nranges++].numel = n;
        }
        LLVMValueRef upd_counters = NULL, t0 = NULL;
        if (m->profile) {
          upd_counters = prof_counters(&b, "step", 1);
          m->nprof[2] = 1;
          m->prof_names[2] = arena_alloc(m->arena, 2 * sizeof(char *));
          m->prof_names[2][0] = "optimizer update";
          t0 = prof_now(cg);
        }
        /* a parameter the loss does not reach is left as it is by the optimizer, as
         * PyTorch leaves a parameter without a gradient: the memory plan put those after
         * the trained ones, and the update stops before them */
        cg_optimizer_update(cg, opt->kind, m->desc.param_floats, b.mem->trained_floats, ranges, nranges);
        if (upd_counters) prof_add(cg, upd_counters, 0, t0);
        LLVMBuildRetVoid(cg->B);
        m->has_entry[3] = true;
        new_entry(&b, "step");
        LLVMValueRef frame = cg->frame;
        LLVMAttributeRef noinline = LLVMCreateEnumAttribute(cg->C, LLVMGetEnumAttributeKindForName("noinline", 8), 0);
        LLVMValueRef call = LLVMBuildCall2(cg->B, LLVMGlobalGetValueType(gfn), gfn, &frame, 1, "");
        LLVMAddCallSiteAttribute(call, LLVMAttributeFunctionIndex, noinline);
        LLVMValueRef st = cg_frame_field(cg, CG_FR_STATUS);
        LLVMBasicBlockRef join = cg_if_begin(cg, LLVMBuildICmp(cg->B, LLVMIntEQ, st, cg_i32(cg, 0), ""));
        call = LLVMBuildCall2(cg->B, LLVMGlobalGetValueType(ufn), ufn, &frame, 1, "");
        LLVMAddCallSiteAttribute(call, LLVMAttributeFunctionIndex, noinline);
        cg_if_end(cg, join);
        LLVMBuildRetVoid(cg->B);
        m->has_entry[2] = true;
      }
    }
  }
  if (cg->dib) {
    LLVMDIBuilderFinalize(cg->dib);
    LLVMDisposeDIBuilder(cg->dib);
  }
  LLVMDisposeBuilder(cg->B);
  m->desc.uses_amx = LLVMGetNamedFunction(m->M, "bpcc_gemm_core_amx") != NULL;
  if (ok) {
    char *msg = NULL;
    if (LLVMVerifyModule(m->M, LLVMReturnStatusAction, &msg)) {
      diag_error(SRCLOC_NONE, "codegen: internal error: invalid LLVM module for '%s': %s", mname, msg ? msg : "");
      ok = false;
    }
    if (msg) LLVMDisposeMessage(msg);
  }
  if (ok && cg_run_passes(m->M, tm, m->opt_level, err, sizeof err) != 0) {
    diag_error(SRCLOC_NONE, "codegen: %s", err);
    ok = false;
  }
  if (!ok) {
    cg_model_free(m);
    return NULL;
  }
  return m;
}
