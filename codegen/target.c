/* codegen/target.c — target machines, the optimization pipeline, ORC LLJIT and --emit.
 *
 * -march picks the CPU of the target machine: "native" is the host CPU with its
 * features (LLVMGetHostCPUName / Features); x86-64, x86-64-v2, -v3, -v4 are the psABI
 * levels, for code that runs on any CPU of that level. The f32 vector width follows:
 * 16 lanes with AVX-512F, 8 with AVX2, 4 with SSE (x86-64, -v2), 1 elsewhere.
 * Optimization is the new pass manager's default<On> pipeline with the target machine
 * (without it the vectorizers see no vector registers). The JIT gets a clone of the
 * optimized module, so the module stays printable and emittable afterwards; codegen
 * (which mutates a module) also works on clones. */
#include <stdio.h>
#include <string.h>

#include <llvm-c/Analysis.h>
#include <llvm-c/Error.h>
#include <llvm-c/LLJIT.h>
#include <llvm-c/Orc.h>
#include <llvm-c/OrcEE.h>
#include <llvm-c/Target.h>
#include <llvm-c/Transforms/PassBuilder.h>

#include <pthread.h>
#include <llvm-c/BitReader.h>
#include <llvm-c/BitWriter.h>

#include "codegen/cg.h"

static void init_llvm(void) {
  static bool done;
  if (done) return;
  LLVMInitializeNativeTarget();
  LLVMInitializeNativeAsmPrinter();
  LLVMInitializeNativeAsmParser();
  done = true;
}

static bool has_feature(const char *features, const char *f) {
  size_t n = strlen(f);
  for (const char *p = features; (p = strstr(p, f)); p += n)
    if ((p == features || p[-1] == ',') && (p[n] == ',' || p[n] == 0)) return true;
  return false;
}

/* f32 lanes of -march=native: 16 with AVX-512F, 8 with AVX2, 4 with SSE, 1 elsewhere */
static int native_lanes(const char *triple, const char *features) {
  if (strncmp(triple, "x86_64", 6) != 0) return 1;
  return has_feature(features, "+avx512f") ? 16 : has_feature(features, "+avx2") ? 8 : 4;
}

int cg_march_lanes(const char *march) {
  if (!march || strcmp(march, "native") == 0) {
    init_llvm();
    char *triple = LLVMGetDefaultTargetTriple(), *features = LLVMGetHostCPUFeatures();
    int w = native_lanes(triple, features);
    LLVMDisposeMessage(triple);
    LLVMDisposeMessage(features);
    return w;
  }
  return strcmp(march, "x86-64-v4") == 0 ? 16 : strcmp(march, "x86-64-v3") == 0 ? 8
         : strcmp(march, "x86-64") == 0 || strcmp(march, "x86-64-v2") == 0 ? 4 : 0;
}

LLVMTargetMachineRef cg_target_machine(const char *march, int opt_level, int *lanes, char *err, size_t errlen) {
  init_llvm();
  if (!march) march = "native";
  static const char *known[] = {"native", "x86-64", "x86-64-v2", "x86-64-v3", "x86-64-v4"};
  int k = -1;
  for (int i = 0; i < 5; i++)
    if (strcmp(march, known[i]) == 0) k = i;
  if (k < 0) {
    snprintf(err, errlen, "unknown -march=%s (use native, x86-64, x86-64-v2, x86-64-v3 or x86-64-v4)", march);
    return NULL;
  }
  char *triple = LLVMGetDefaultTargetTriple();
  LLVMTargetRef target;
  char *msg = NULL;
  if (LLVMGetTargetFromTriple(triple, &target, &msg)) {
    snprintf(err, errlen, "no LLVM target for %s: %s", triple, msg ? msg : "");
    LLVMDisposeMessage(msg);
    LLVMDisposeMessage(triple);
    return NULL;
  }
  char *cpu = k == 0 ? LLVMGetHostCPUName() : NULL;
  char *features = k == 0 ? LLVMGetHostCPUFeatures() : NULL;
  bool x86 = strncmp(triple, "x86_64", 6) == 0;
  if (k > 0 && !x86) {
    snprintf(err, errlen, "-march=%s needs an x86-64 host, this is %s", march, triple);
    LLVMDisposeMessage(triple);
    return NULL;
  }
  int w = 1;
  if (k == 0) {
    w = native_lanes(triple, features);
  } else {
    w = k == 4 ? 16 : k == 3 ? 8 : 4;
  }
  LLVMCodeGenOptLevel lvl = opt_level <= 0 ? LLVMCodeGenLevelNone : opt_level == 1 ? LLVMCodeGenLevelLess
                            : opt_level == 2 ? LLVMCodeGenLevelDefault : LLVMCodeGenLevelAggressive;
  LLVMTargetMachineRef tm = LLVMCreateTargetMachine(target, triple, k == 0 ? cpu : march, k == 0 ? features : "",
                                                    lvl, LLVMRelocPIC, LLVMCodeModelDefault);
  if (cpu) LLVMDisposeMessage(cpu);
  if (features) LLVMDisposeMessage(features);
  LLVMDisposeMessage(triple);
  if (!tm) {
    snprintf(err, errlen, "cannot create a target machine for -march=%s", march);
    return NULL;
  }
  *lanes = w;
  return tm;
}

void cg_host_info(CgHostInfo *h) {
  init_llvm();
  unsigned major, minor, patch;
  LLVMGetVersion(&major, &minor, &patch);
  snprintf(h->llvm, sizeof h->llvm, "%u.%u.%u", major, minor, patch);
  char *triple = LLVMGetDefaultTargetTriple(), *cpu = LLVMGetHostCPUName(), *features = LLVMGetHostCPUFeatures();
  snprintf(h->triple, sizeof h->triple, "%s", triple);
  snprintf(h->cpu, sizeof h->cpu, "%s", cpu);
  /* the features the kernels' code depends on, in the order they arrived in x86 */
  static const char *const vector[] = {"sse4.2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512dq", "avx512vl",
                                       "avx512vnni", "avx512bf16", "avx512fp16", "amx-tile", "neon", "sve"};
  size_t n = 0;
  h->features[0] = 0;
  for (size_t i = 0; i < sizeof vector / sizeof *vector; i++) {
    char plus[32];
    snprintf(plus, sizeof plus, "+%s", vector[i]);
    if (has_feature(features, plus) && n + strlen(vector[i]) + 2 < sizeof h->features)
      n += (size_t)snprintf(h->features + n, sizeof h->features - n, "%s%s", n ? " " : "", vector[i]);
  }
  h->lanes = native_lanes(triple, features);
  LLVMDisposeMessage(triple);
  LLVMDisposeMessage(cpu);
  LLVMDisposeMessage(features);
}

int cg_run_passes(LLVMModuleRef M, LLVMTargetMachineRef tm, int opt_level, char *err, size_t errlen) {
  char pipeline[32];
  snprintf(pipeline, sizeof pipeline, "default<O%d>", opt_level < 0 ? 0 : opt_level > 3 ? 3 : opt_level);
  LLVMPassBuilderOptionsRef po = LLVMCreatePassBuilderOptions();
  LLVMErrorRef e = LLVMRunPasses(M, pipeline, tm, po);
  LLVMDisposePassBuilderOptions(po);
  if (e) {
    char *m = LLVMGetErrorMessage(e);
    snprintf(err, errlen, "LLVM %s pipeline failed: %s", pipeline, m);
    LLVMDisposeErrorMessage(m);
    return -1;
  }
  return 0;
}

/* ------------------------------------------------------------------ JIT */

static int jit_error(LLVMErrorRef e, const char *what) {
  char *m = LLVMGetErrorMessage(e);
  diag_error(SRCLOC_NONE, "codegen: JIT %s: %s", what, m);
  LLVMDisposeErrorMessage(m);
  return -1;
}

/* ------------------------------------------------------------------ parallel codegen
 *
 * Instruction selection of the optimized module is about half of a model's compile
 * time, and half of that is the GEMM helpers, which no entry point needs compiled
 * first. So the JIT compiles two objects on two threads: the module is written as
 * bitcode once and read into two fresh contexts (LLVM contexts are not shared across
 * threads); one keeps the GEMM task, core and epilogues and drops every other body,
 * the other keeps the rest (the model's code, the micro-kernel, the packing transpose)
 * and declares what the first defines; each is compiled to an object by its own target
 * machine, and LLJIT links the two. Any failure on this
 * path falls back to handing LLJIT the whole module. */
static bool is_gemm_helper(const char *name, size_t len) {
  return (len >= 10 && strncmp(name, "bpcc_gemm_", 10) == 0) || (len == 13 && strncmp(name, "bpcc_pack_t16", 13) == 0);
}

/* The part a helper is compiled in: the GEMM task, core and epilogues on one thread;
 * the micro-kernel and the packing transpose with the model's own code on the other
 * (measured: about 80 ms each for M2, against 120 + 60 with all helpers in one). */
static bool in_gemm_part(const char *name, size_t len) {
  if (len >= 17 && strncmp(name, "bpcc_gemm_ukernel", 17) == 0) return false;
  if (len == 13 && strncmp(name, "bpcc_pack_t16", 13) == 0) return false;
  return is_gemm_helper(name, len);
}

/* F becomes a declaration of the same name, type and calling convention. */
static void strip_body(LLVMModuleRef M, LLVMValueRef F) {
  size_t len;
  const char *nm = LLVMGetValueName2(F, &len);
  char name[256];
  snprintf(name, sizeof name, "%.*s", (int)len, nm);
  LLVMValueRef decl = LLVMAddFunction(M, "bpcc.stripped", LLVMGlobalGetValueType(F));
  LLVMSetFunctionCallConv(decl, LLVMGetFunctionCallConv(F));
  LLVMReplaceAllUsesWith(F, decl);
  LLVMDeleteFunction(F);
  LLVMSetValueName2(decl, name, strlen(name));
}

typedef struct {
  LLVMMemoryBufferRef bc;      /* the optimized module, read by both parts */
  LLVMTargetMachineRef tm;     /* this part's own */
  bool gemm;                   /* the GEMM helpers, or everything else */
  LLVMMemoryBufferRef obj;     /* the result, or NULL */
} CgPart;

static void *compile_part(void *arg) {
  CgPart *p = arg;
  LLVMContextRef C = LLVMContextCreate();
  LLVMModuleRef M = NULL;
  if (LLVMParseBitcodeInContext2(C, p->bc, &M) == 0) {
    for (LLVMValueRef F = LLVMGetFirstFunction(M), next; F; F = next) {
      next = LLVMGetNextFunction(F);
      if (LLVMIsDeclaration(F)) continue;
      size_t len;
      const char *nm = LLVMGetValueName2(F, &len);
      if (in_gemm_part(nm, len) != p->gemm) strip_body(M, F);
      else if (is_gemm_helper(nm, len)) LLVMSetLinkage(F, LLVMExternalLinkage);   /* the other object calls it */
    }
    for (LLVMValueRef F = LLVMGetFirstFunction(M); F; F = LLVMGetNextFunction(F))
      if (LLVMIsDeclaration(F)) LLVMSetLinkage(F, LLVMExternalLinkage);
    if (p->gemm)   /* the other object defines the model's globals: declare them here */
      for (LLVMValueRef G = LLVMGetFirstGlobal(M); G; G = LLVMGetNextGlobal(G)) {
        LLVMLinkage l = LLVMGetLinkage(G);
        if (l == LLVMPrivateLinkage || l == LLVMInternalLinkage || LLVMIsDeclaration(G)) continue;
        LLVMSetInitializer(G, NULL);
        LLVMSetLinkage(G, LLVMExternalLinkage);
      }
    char *msg = NULL;
    if (LLVMTargetMachineEmitToMemoryBuffer(p->tm, M, LLVMObjectFile, &msg, &p->obj)) p->obj = NULL;
    if (msg) LLVMDisposeMessage(msg);
    LLVMDisposeModule(M);
  }
  LLVMContextDispose(C);
  return NULL;
}

/* The two objects of m, or false (nothing to dispose). */
static bool compile_parts(CgModel *m, LLVMMemoryBufferRef obj[2]) {
  bool has_gemm = false;
  for (LLVMValueRef F = LLVMGetFirstFunction(m->M); F && !has_gemm; F = LLVMGetNextFunction(F)) {
    size_t len;
    const char *nm = LLVMGetValueName2(F, &len);
    has_gemm = !LLVMIsDeclaration(F) && is_gemm_helper(nm, len);
  }
  if (!has_gemm) return false;
  char err[256];
  int lanes;
  CgPart parts[2] = {{NULL, NULL, true, NULL}, {NULL, NULL, false, NULL}};
  LLVMMemoryBufferRef bc = LLVMWriteBitcodeToMemoryBuffer(m->M);
  bool ok = bc != NULL;
  for (int i = 0; i < 2 && ok; i++) {
    parts[i].bc = bc;
    parts[i].tm = cg_target_machine(m->march, m->opt_level, &lanes, err, sizeof err);
    ok = parts[i].tm != NULL;
  }
  pthread_t th;
  bool threaded = ok && pthread_create(&th, NULL, compile_part, &parts[0]) == 0;
  if (ok && !threaded) compile_part(&parts[0]);
  if (ok) compile_part(&parts[1]);
  if (threaded) pthread_join(th, NULL);
  for (int i = 0; i < 2; i++)
    if (parts[i].tm) LLVMDisposeTargetMachine(parts[i].tm);
  if (bc) LLVMDisposeMemoryBuffer(bc);
  if (!ok || !parts[0].obj || !parts[1].obj) {
    for (int i = 0; i < 2; i++)
      if (parts[i].obj) LLVMDisposeMemoryBuffer(parts[i].obj);
    return false;
  }
  obj[0] = parts[0].obj;
  obj[1] = parts[1].obj;
  return true;
}

int cg_model_jit(CgModel *m) {
  if (m->jit) return 0;
  char err[256];
  int lanes;
  LLVMTargetMachineRef tm = cg_target_machine(m->march, m->opt_level, &lanes, err, sizeof err);
  if (!tm) {
    diag_error(SRCLOC_NONE, "codegen: %s", err);
    return -1;
  }
  LLVMOrcJITTargetMachineBuilderRef jtmb = LLVMOrcJITTargetMachineBuilderCreateFromTargetMachine(tm);
  LLVMOrcLLJITBuilderRef builder = LLVMOrcCreateLLJITBuilder();
  LLVMOrcLLJITBuilderSetJITTargetMachineBuilder(builder, jtmb);
  LLVMOrcLLJITRef jit;
  LLVMErrorRef e = LLVMOrcCreateLLJIT(&jit, builder);
  if (e) return jit_error(e, "creation failed");
  /* memset / memcpy that LLVM may form from loops resolve to the process's libc */
  LLVMOrcDefinitionGeneratorRef gen;
  e = LLVMOrcCreateDynamicLibrarySearchGeneratorForProcess(&gen, LLVMOrcLLJITGetGlobalPrefix(jit), NULL, NULL);
  if (e) {
    LLVMOrcDisposeLLJIT(jit);
    return jit_error(e, "process symbols");
  }
  LLVMOrcJITDylibAddGenerator(LLVMOrcLLJITGetMainJITDylib(jit), gen);
  LLVMMemoryBufferRef objs[2];
  if (compile_parts(m, objs)) {
    for (int i = 0; i < 2; i++) {
      e = LLVMOrcLLJITAddObjectFile(jit, LLVMOrcLLJITGetMainJITDylib(jit), objs[i]);
      if (e) {
        if (i == 0) LLVMDisposeMemoryBuffer(objs[1]);
        LLVMOrcDisposeLLJIT(jit);
        return jit_error(e, "adding an object");
      }
    }
  } else {
    LLVMModuleRef clone = LLVMCloneModule(m->M);
    LLVMOrcThreadSafeModuleRef tsm = LLVMOrcCreateNewThreadSafeModule(clone, m->tsc);
    e = LLVMOrcLLJITAddLLVMIRModule(jit, LLVMOrcLLJITGetMainJITDylib(jit), tsm);
    if (e) {
      LLVMOrcDisposeThreadSafeModule(tsm);
      LLVMOrcDisposeLLJIT(jit);
      return jit_error(e, "adding the module");
    }
  }
  m->jit = jit;
  static const char *which[4] = {"forward", "grad", "step", "update"};
  bprt_entry_fn *slot[4] = {&m->desc.forward, &m->desc.grad, &m->desc.step, &m->desc.update};
  for (int i = 0; i < 4; i++) {
    if (!m->has_entry[i]) continue;
    char name[256];
    cg_entry_name(m->desc.model_name, which[i], name, sizeof name);
    LLVMOrcExecutorAddress addr;
    e = LLVMOrcLLJITLookup(jit, &addr, name);
    if (e) return jit_error(e, "lookup");
    *slot[i] = (bprt_entry_fn)(uintptr_t)addr;
  }
  return 0;
}

int cg_model_profile(CgModel *m, int which, const char *const **names, uint64_t **cycles) {
  static const char *suffix[3] = {"forward", "grad", "step"};
  if (!m || !m->profile || !m->jit || which < 0 || which > 2 || m->nprof[which] <= 0) return -1;
  char name[256];
  snprintf(name, sizeof name, "%s__prof_%s", m->desc.model_name, suffix[which]);
  LLVMOrcExecutorAddress addr;
  LLVMErrorRef e = LLVMOrcLLJITLookup(m->jit, &addr, name);
  if (e) return jit_error(e, "lookup of the profile counters");
  *names = m->prof_names[which];
  *cycles = (uint64_t *)(uintptr_t)addr;
  return m->nprof[which];
}

/* ------------------------------------------------------------------ emit */

int cg_emit_to(CgModel *m, int kind, FILE *out) {
  if (kind == CG_EMIT_LLVM) {
    char *s = LLVMPrintModuleToString(m->M);
    fputs(s, out);
    LLVMDisposeMessage(s);
    return ferror(out) ? -1 : 0;
  }
  if (kind != CG_EMIT_ASM && kind != CG_EMIT_OBJ) {
    diag_error(SRCLOC_NONE, "codegen: unknown emit kind %d", kind);
    return -1;
  }
  LLVMModuleRef clone = LLVMCloneModule(m->M);
  LLVMMemoryBufferRef buf;
  char *msg = NULL;
  int rc = 0;
  if (LLVMTargetMachineEmitToMemoryBuffer(m->tm, clone, kind == CG_EMIT_ASM ? LLVMAssemblyFile : LLVMObjectFile, &msg,
                                          &buf)) {
    diag_error(SRCLOC_NONE, "codegen: emitting failed: %s", msg ? msg : "");
    rc = -1;
  } else {
    fwrite(LLVMGetBufferStart(buf), 1, LLVMGetBufferSize(buf), out);
    LLVMDisposeMemoryBuffer(buf);
    if (ferror(out)) rc = -1;
  }
  if (msg) LLVMDisposeMessage(msg);
  LLVMDisposeModule(clone);
  return rc;
}

int cg_emit(CgModel *m, int kind, const char *path) {
  if (!path || strcmp(path, "-") == 0) return cg_emit_to(m, kind, stdout) == 0 && fflush(stdout) == 0 ? 0 : -1;
  char *msg = NULL;
  if (kind == CG_EMIT_LLVM) {
    if (LLVMPrintModuleToFile(m->M, path, &msg)) {
      diag_error(SRCLOC_NONE, "cannot write %s: %s", path, msg ? msg : "");
      LLVMDisposeMessage(msg);
      return -1;
    }
    return 0;
  }
  if (kind != CG_EMIT_ASM && kind != CG_EMIT_OBJ) {
    diag_error(SRCLOC_NONE, "codegen: unknown emit kind %d", kind);
    return -1;
  }
  LLVMModuleRef clone = LLVMCloneModule(m->M);
  int rc = 0;
  if (LLVMTargetMachineEmitToFile(m->tm, clone, (char *)path, kind == CG_EMIT_ASM ? LLVMAssemblyFile : LLVMObjectFile,
                                  &msg)) {
    diag_error(SRCLOC_NONE, "cannot write %s: %s", path, msg ? msg : "");
    rc = -1;
  }
  if (msg) LLVMDisposeMessage(msg);
  LLVMDisposeModule(clone);
  return rc;
}
