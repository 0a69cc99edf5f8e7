/* tests/codegen/test_cg_gemm_lowp.c — products with 16-bit operands (codegen/gemm_lowp.c)
 * built straight through cg_gemm / cg_gemm_batched into a small JIT module per case:
 * every bf16 core (AMX, vdpbf16ps, conversion: forced with BPCC_GEMM_BF16; a core the
 * host cannot run is skipped with a message), f16 and mixed operands, the three
 * variants, batched forms, shapes off every tile and block edge (K odd for the pair
 * layout), one and two threads, and the 16-bit store of the epilogue.
 *
 * Reference: a double product of the operands as stored (the bf16 / half values,
 * decoded exactly). Tolerance of f32 accumulation in any order: |c - ref| <=
 * K 2^-23 sum_k |a_ik b_kj| per element. The 16-bit stores and conversions are exact:
 * bit for bit against C's own rounding (bf16 by integer rounding to nearest even, half
 * by GCC's _Float16).
 *
 * CGT_LOWP_BENCH=1: instead print GFLOP/s of each core on M2's shapes (1 thread by
 * its CPU time, 2 by the best wall time) next to the f32 core (docs/codegen.md); CGT_LOWP_ONLY=f32|convert|dpbf16|amx
 * one of them; CGT_LOWP_ASM=FILE writes the assembly of the last module built. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <llvm-c/Analysis.h>

#include "codegen/cg.h"
#include "runtime/runtime.h"
#include "tests/codegen/harness.h"

/* ------------------------------------------------------------------ C references */

static uint16_t bf16_of(float x) {
  uint32_t u;
  memcpy(&u, &x, 4);
  if (isnan(x)) return (uint16_t)((u >> 16) | 0x40);
  u += 0x7fff + ((u >> 16) & 1);
  return (uint16_t)(u >> 16);
}
static float f32_of_bf16(uint16_t h) {
  uint32_t u = (uint32_t)h << 16;
  float x;
  memcpy(&x, &u, 4);
  return x;
}
static uint16_t f16_of(float x) {
  _Float16 h = (_Float16)x;
  uint16_t u;
  memcpy(&u, &h, 2);
  return u;
}
static float f32_of_f16(uint16_t u) {
  _Float16 h;
  memcpy(&h, &u, 2);
  return (float)h;
}
static double decode(CgElem e, const void *p, int64_t i) {
  if (e == CG_ELEM_FLOAT) return ((const float *)p)[i];
  uint16_t h = ((const uint16_t *)p)[i];
  return e == CG_ELEM_BF16 ? f32_of_bf16(h) : f32_of_f16(h);
}

static uint64_t rng = 88172645463325252ull;
static double urand(void) {
  rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
  return (double)(rng >> 11) / 9007199254740992.0;
}
/* n values uniform in [-1, 1) stored as e */
static void *fill(CgElem e, int64_t n) {
  size_t es = e == CG_ELEM_FLOAT ? 4 : 2;
  void *p = malloc((size_t)(n > 0 ? n : 1) * es);
  for (int64_t i = 0; i < n; i++) {
    float x = (float)(2 * urand() - 1);
    if (e == CG_ELEM_FLOAT) ((float *)p)[i] = x;
    else ((uint16_t *)p)[i] = e == CG_ELEM_BF16 ? bf16_of(x) : f16_of(x);
  }
  return p;
}

/* ------------------------------------------------------------------ the JIT module */

typedef void (*MmFn)(const void *A, const void *B, float *C, void *out2, void *pack, bprt_frame *fr, int64_t M,
                     int64_t N, int64_t K, int64_t nb, int64_t sa, int64_t sb);

typedef struct {
  LLVMOrcLLJITRef jit;
  MmFn fn;
  int64_t pack_bytes;
} Built;

static const char *core_name[] = {"", "convert", "dpbf16", "amx"};

/* mm(...) runs cg_gemm (nb = 0) or cg_gemm_batched over nb batches with element
 * strides sa, sb (C's batches M N apart), epilogue flags epf with out2 */
static bool build(Built *b, int core, CgElem ta, CgElem tb, Op op, int epf) {
  memset(b, 0, sizeof *b);
  if (core) setenv("BPCC_GEMM_BF16", core_name[core], 1);
  char err[256];
  int lanes;
  LLVMTargetMachineRef tm = cg_target_machine(NULL, 3, &lanes, err, sizeof err);
  LLVMTargetMachineRef jtm = cg_target_machine(NULL, 3, &lanes, err, sizeof err);
  assert_non_null(tm);
  LLVMOrcThreadSafeContextRef tsc = LLVMOrcCreateNewThreadSafeContext();
  Cg cg;
  memset(&cg, 0, sizeof cg);
  cg.C = LLVMOrcThreadSafeContextGetContext(tsc);
  cg.M = LLVMModuleCreateWithNameInContext("lowp", cg.C);
  char *triple = LLVMGetTargetMachineTriple(tm);
  LLVMSetTarget(cg.M, triple);
  LLVMDisposeMessage(triple);
  LLVMTargetDataRef dl = LLVMCreateTargetDataLayout(tm);
  LLVMSetModuleDataLayout(cg.M, dl);
  LLVMDisposeTargetData(dl);
  cg.B = LLVMCreateBuilderInContext(cg.C);
  cg.W = lanes;
  cg.NR = lanes == 1 ? 4 : 2 * lanes;
  cg.MR = lanes == 16 ? 12 : lanes == 1 ? 4 : 6;
  cg.gemm_chunks = 2;
  cg.prefer512 = lanes == 16;
  cg.esize = 4;
  cg.cpu = cg_target_features(tm);
  cg.gemm_bf16 = cg_gemm_bf16_select(cg.cpu, err, sizeof err);
  unsetenv("BPCC_GEMM_BF16");
  assert_true(cg.gemm_bf16 > 0);
  cg_init_types(&cg);
  cg_gemm_pack_for(CG_GEMM_MC, CG_GEMM_NC, CG_GEMM_KC, CG_GEMM_KC16, &cg.pack_a_floats, &cg.pack_b_floats);
  b->pack_bytes = cg_gemm_pack_floats(&cg) * 4 * cg.gemm_chunks;
  LLVMTypeRef args[12] = {cg.t_ptr, cg.t_ptr, cg.t_ptr, cg.t_ptr, cg.t_ptr, cg.t_ptr,
                          cg.t_i64, cg.t_i64, cg.t_i64, cg.t_i64, cg.t_i64, cg.t_i64};
  LLVMValueRef fn = cg_new_function(&cg, "mm", LLVMFunctionType(cg.t_void, args, 12, 0), false);
  cg.fn = fn;
  LLVMPositionBuilderAtEnd(cg.B, LLVMAppendBasicBlockInContext(cg.C, fn, "entry"));
  LLVMValueRef P[12];
  for (unsigned i = 0; i < 12; i++) P[i] = LLVMGetParam(fn, i);
  cg.frame = P[5];
  cg.gemm_pack = P[4];
  CgGemmTypes ty = {ta, tb};
  CgEpilogue ep;
  memset(&ep, 0, sizeof ep);
  ep.flags = epf;
  ep.out2 = P[3];
  LLVMBasicBlockRef bb = LLVMAppendBasicBlockInContext(cg.C, fn, "batched");
  LLVMBasicBlockRef bs = LLVMAppendBasicBlockInContext(cg.C, fn, "single");
  LLVMBuildCondBr(cg.B, LLVMBuildICmp(cg.B, LLVMIntEQ, P[9], cg_i64(&cg, 0), ""), bs, bb);
  LLVMPositionBuilderAtEnd(cg.B, bs);
  cg_gemm(&cg, op, &ty, P[0], P[1], P[2], P[6], P[7], P[8], P[4], epf ? &ep : NULL);
  LLVMBuildRetVoid(cg.B);
  LLVMPositionBuilderAtEnd(cg.B, bb);
  CgBatch bt = {cg_i64(&cg, 1), P[9], cg_i64(&cg, 0), P[10], cg_i64(&cg, 0), P[11]};
  cg_gemm_batched(&cg, op, &ty, P[0], P[1], P[2], P[6], P[7], P[8], &bt, P[4], epf ? &ep : NULL);
  LLVMBuildRetVoid(cg.B);
  LLVMDisposeBuilder(cg.B);
  char *msg = NULL;
  if (LLVMVerifyModule(cg.M, LLVMReturnStatusAction, &msg)) fail_msg("invalid module: %s", msg);
  LLVMDisposeMessage(msg);
  assert_int_equal(cg_run_passes(cg.M, tm, 3, err, sizeof err), 0);
  if (getenv("CGT_LOWP_ASM")) {   /* the assembly of the last module built, for reading */
    char *e = NULL;
    LLVMTargetMachineEmitToFile(tm, cg.M, getenv("CGT_LOWP_ASM"), LLVMAssemblyFile, &e);
    LLVMDisposeMessage(e);
  }
  LLVMDisposeTargetMachine(tm);
  LLVMOrcLLJITBuilderRef jb = LLVMOrcCreateLLJITBuilder();
  LLVMOrcLLJITBuilderSetJITTargetMachineBuilder(jb, LLVMOrcJITTargetMachineBuilderCreateFromTargetMachine(jtm));
  assert_null(LLVMOrcCreateLLJIT(&b->jit, jb));
  LLVMOrcDefinitionGeneratorRef gen;
  assert_null(LLVMOrcCreateDynamicLibrarySearchGeneratorForProcess(&gen, LLVMOrcLLJITGetGlobalPrefix(b->jit), NULL, NULL));
  LLVMOrcJITDylibAddGenerator(LLVMOrcLLJITGetMainJITDylib(b->jit), gen);
  LLVMOrcThreadSafeModuleRef tsm = LLVMOrcCreateNewThreadSafeModule(cg.M, tsc);
  assert_null(LLVMOrcLLJITAddLLVMIRModule(b->jit, LLVMOrcLLJITGetMainJITDylib(b->jit), tsm));
  LLVMOrcDisposeThreadSafeContext(tsc);
  LLVMOrcExecutorAddress addr;
  assert_null(LLVMOrcLLJITLookup(b->jit, &addr, "mm"));
  b->fn = (MmFn)(uintptr_t)addr;
  return true;
}

static void unbuild(Built *b) { LLVMOrcDisposeLLJIT(b->jit); }

/* a core the host cannot run: skipped (true) with a message */
static bool cannot_run(int core) {
  char why[256];
  if (core == CG_BF16_CONVERT || cg_gemm_bf16_available(core, NULL, why, sizeof why)) return false;
  printf("[  SKIP    ] bf16 core %s: %s\n", core_name[core], why);
  return true;
}

/* ------------------------------------------------------------------ checks */

/* One product (nb = 0) or nb batches (a broadcast when its stride is 0), checked
 * against the double reference; the epilogue's 16-bit out2 checked bit for bit. */
static int run(const Built *b, CgElem ta, CgElem tb, Op op, int epf, int64_t M, int64_t N, int64_t K, int64_t nb,
               bool bcast_a, int threads) {
  int64_t nbb = nb ? nb : 1;
  int64_t sa = bcast_a ? 0 : M * K, sb = K * N;
  void *A = fill(ta, sa * (nbb - 1) + M * K), *B = fill(tb, sb * (nbb - 1) + K * N);
  float *C = malloc((size_t)(nbb * M * N) * 4);
  uint16_t *out2 = malloc((size_t)(nbb * M * N) * 2 + 2);
  for (int64_t i = 0; i < nbb * M * N; i++) C[i] = NAN;   /* every element must be written */
  void *pack = aligned_alloc(64, (size_t)(b->pack_bytes + 63) / 64 * 64);
  bprt_frame fr;
  memset(&fr, 0, sizeof fr);
  fr.parallel_for = cgt_parallel_for;
  fr.pool = (void *)(intptr_t)threads;
  fr.nthreads = threads;
  b->fn(A, B, C, out2, pack, &fr, M, N, K, nb, sa, sb);
  int bad = 0;
  double worst = 0;
  for (int64_t q = 0; q < nbb; q++)
    for (int64_t i = 0; i < M; i++)
      for (int64_t j = 0; j < N; j++) {
        double ref = 0, mag = 0;
        for (int64_t k = 0; k < K; k++) {
          int64_t ai = op == OP_MATMUL_TN ? k * M + i : i * K + k, bi = op == OP_MATMUL_NT ? j * K + k : k * N + j;
          double t = decode(ta, A, q * sa + ai) * decode(tb, B, q * sb + bi);
          ref += t, mag += fabs(t);
        }
        float c = C[(q * M + i) * N + j];
        double err = fabs(c - ref), tol = (double)K * ldexp(1, -23) * mag;
        if (!(err <= tol)) {
          if (bad++ < 3) printf("    C[%lld][%lld][%lld] = %.9g, reference %.9g (tolerance %.3g)\n", (long long)q,
                                (long long)i, (long long)j, c, ref, tol);
        }
        if (mag > 0 && err / mag > worst) worst = err / mag;
        if (epf & CG_EP_STORE16) {   /* out2 = the final value (relu of C with STORE_PRE), rounded */
          float y = (epf & CG_EP_RELU) && c < 0 ? 0.0f : c;
          uint16_t want = epf & CG_EP_STORE_BF16 ? bf16_of(y) : f16_of(y);
          uint16_t got = out2[(q * M + i) * N + j];
          if (got != want && bad++ < 3) printf("    out2[%lld] = 0x%04x, want 0x%04x\n", (long long)((q * M + i) * N + j), got, want);
        }
      }
  if (bad)
    printf("  %s a=%d b=%d M=%lld N=%lld K=%lld nb=%lld threads=%d: %d wrong (worst |err| / sum|ab| %.3g)\n",
           ir_ops[op].name, ta, tb, (long long)M, (long long)N, (long long)K, (long long)nb, threads, bad, worst);
  free(A), free(B), free(C), free(out2), free(pack);
  return bad != 0;
}

static const Op ops[3] = {OP_MATMUL, OP_MATMUL_NT, OP_MATMUL_TN};

/* the shapes of every core: tile edges (12, 32 rows; 32 columns), K odd and across
 * the KC block (and its 32-padding; 1100: two of AMX's 1024-deep blocks), the MC and NC
 * blocks, both thread splits */
static int sweep(int core, CgElem ta, CgElem tb) {
  static const int64_t shp[][3] = {{1, 1, 1},     {7, 5, 3},      {12, 32, 2},    {13, 33, 31},  {32, 32, 32},
                                   {33, 17, 65},  {64, 100, 257}, {145, 70, 513}, {100, 300, 40}, {300, 64, 33},
                                   {5, 1000, 17}, {200, 9, 784},   {40, 70, 1100}};
  int fails = 0;
  for (int o = 0; o < 3; o++) {
    Built b;
    build(&b, core, ta, tb, ops[o], 0);
    for (size_t s = 0; s < sizeof shp / sizeof shp[0]; s++)
      fails += run(&b, ta, tb, ops[o], 0, shp[s][0], shp[s][1], shp[s][2], 0, false, s % 2 ? 2 : 1);
    /* batched: 3 batches, and a broadcast a (b's batches against one a) */
    fails += run(&b, ta, tb, ops[o], 0, 20, 35, 37, 3, false, 2);
    fails += run(&b, ta, tb, ops[o], 0, 33, 40, 64, 2, true, 1);
    unbuild(&b);
  }
  return fails;
}

static void test_bf16_convert(void **state) {
  (void)state;
  assert_int_equal(sweep(CG_BF16_CONVERT, CG_ELEM_BF16, CG_ELEM_BF16), 0);
}

static void test_bf16_dpbf16(void **state) {
  (void)state;
  if (cannot_run(CG_BF16_DPBF16)) return;
  assert_int_equal(sweep(CG_BF16_DPBF16, CG_ELEM_BF16, CG_ELEM_BF16), 0);
}

static void test_bf16_amx(void **state) {
  (void)state;
  if (cannot_run(CG_BF16_AMX)) return;
  assert_int_equal(sweep(CG_BF16_AMX, CG_ELEM_BF16, CG_ELEM_BF16), 0);
}

/* f16 and mixed operands: the conversion, whatever core bf16 would get */
static void test_f16_mixed(void **state) {
  (void)state;
  assert_int_equal(sweep(0, CG_ELEM_F16, CG_ELEM_F16), 0);
  assert_int_equal(sweep(0, CG_ELEM_BF16, CG_ELEM_FLOAT), 0);
  assert_int_equal(sweep(0, CG_ELEM_FLOAT, CG_ELEM_F16), 0);
}

/* The 16-bit store: out2 gets C rounded (and relu(C) with STORE_PRE), on every core
 * and on f32 operands */
static void test_store16(void **state) {
  (void)state;
  static const int flags[] = {CG_EP_STORE_BF16, CG_EP_STORE_F16, CG_EP_STORE_BF16 | CG_EP_RELU | CG_EP_STORE_PRE,
                              CG_EP_STORE_F16 | CG_EP_RELU | CG_EP_STORE_PRE};
  int fails = 0;
  for (int core = CG_BF16_CONVERT; core <= CG_BF16_AMX; core++) {
    if (cannot_run(core)) continue;
    for (int f = 0; f < 4; f++) {
      Built b;
      CgElem t = core == CG_BF16_CONVERT && f % 2 ? CG_ELEM_FLOAT : CG_ELEM_BF16;
      build(&b, core, t, t, ops[f % 3], flags[f]);
      fails += run(&b, t, t, ops[f % 3], flags[f], 45, 70, 300, 0, false, 2);
      fails += run(&b, t, t, ops[f % 3], flags[f], 12, 33, 7, 2, false, 1);
      unbuild(&b);
    }
  }
  assert_int_equal(fails, 0);
}

/* ------------------------------------------------------------------ conversions */

typedef void (*CvtFn)(const float *x, uint16_t *h, float *back, int64_t n);

/* cvt(x, h, back, n): h = x rounded to e, back = h widened; 16 lanes at a time
 * (vectors) and one by one for the rest; soft: without F16C */
static LLVMOrcLLJITRef build_cvt(CgElem e, bool soft, CvtFn *out) {
  char err[256];
  int lanes;
  LLVMTargetMachineRef tm = cg_target_machine(NULL, 2, &lanes, err, sizeof err);
  LLVMOrcThreadSafeContextRef tsc = LLVMOrcCreateNewThreadSafeContext();
  Cg cg;
  memset(&cg, 0, sizeof cg);
  cg.C = LLVMOrcThreadSafeContextGetContext(tsc);
  cg.M = LLVMModuleCreateWithNameInContext("cvt", cg.C);
  cg.B = LLVMCreateBuilderInContext(cg.C);
  cg.W = 16;
  cg.esize = 4;
  cg.cpu = soft ? 0 : cg_target_features(tm);
  LLVMDisposeTargetMachine(tm);
  cg_init_types(&cg);
  LLVMTypeRef args[4] = {cg.t_ptr, cg.t_ptr, cg.t_ptr, cg.t_i64};
  LLVMValueRef fn = cg_new_function(&cg, "cvt", LLVMFunctionType(cg.t_void, args, 4, 0), false);
  cg.fn = fn;
  LLVMPositionBuilderAtEnd(cg.B, LLVMAppendBasicBlockInContext(cg.C, fn, "entry"));
  LLVMValueRef x = LLVMGetParam(fn, 0), h = LLVMGetParam(fn, 1), back = LLVMGetParam(fn, 2), n = LLVMGetParam(fn, 3);
  LLVMValueRef nv = LLVMBuildAnd(cg.B, n, cg_i64(&cg, ~(int64_t)15), "");
  LLVMTypeRef VF = LLVMVectorType(cg.t_f32, 16);
  for (int v = 1; v >= 0; v--) {
    CgLoop l = cg_loop_begin(&cg, v ? cg_i64(&cg, 0) : nv, v ? nv : n, cg_i64(&cg, v ? 16 : 1));
    LLVMTypeRef T = v ? VF : cg.t_f32;
    cg_store_elem(&cg, cg_load(&cg, T, x, l.iv), e, h, l.iv);
    cg_store(&cg, cg_load_elem(&cg, T, e, h, l.iv), back, l.iv);
    cg_loop_end_hint(&cg, &l, CG_LOOP_NO_VECTORIZE);
  }
  LLVMBuildRetVoid(cg.B);
  LLVMDisposeBuilder(cg.B);
  tm = cg_target_machine(NULL, 2, &lanes, err, sizeof err);
  LLVMOrcLLJITBuilderRef jb = LLVMOrcCreateLLJITBuilder();
  LLVMOrcLLJITBuilderSetJITTargetMachineBuilder(jb, LLVMOrcJITTargetMachineBuilderCreateFromTargetMachine(tm));
  LLVMOrcLLJITRef jit;
  assert_null(LLVMOrcCreateLLJIT(&jit, jb));
  /* no process symbols: a libcall (__truncsfhf2, ...) would fail the lookup */
  assert_null(LLVMOrcLLJITAddLLVMIRModule(jit, LLVMOrcLLJITGetMainJITDylib(jit), LLVMOrcCreateNewThreadSafeModule(cg.M, tsc)));
  LLVMOrcDisposeThreadSafeContext(tsc);
  LLVMOrcExecutorAddress addr;
  assert_null(LLVMOrcLLJITLookup(jit, &addr, "cvt"));
  *out = (CvtFn)(uintptr_t)addr;
  return jit;
}

/* every half value widened, and floats (specials, boundaries, random bits) rounded:
 * bit for bit against C (NaNs: a NaN) */
static void test_conversions(void **state) {
  (void)state;
  enum { NR = 65536 + 64 + 4096 };
  float *x = malloc(NR * 4), *back = malloc(NR * 4);
  uint16_t *h = malloc(NR * 2);
  int n = 0;
  static const float special[] = {0.0f, -0.0f, 1.0f, -1.0f, 65504.0f, 65519.99f, 65520.0f, -65520.0f, 1e30f, INFINITY,
                                  -INFINITY, NAN, 6.1035156e-05f, 5.9604645e-08f, 2.9802322e-08f, 2.9802326e-08f,
                                  8.9406967e-08f, 1e-10f, 1.00390625f, 1.01171875f, 3.3895314e38f, 3.4028235e38f,
                                  1.1754944e-38f, 1e-45f};
  for (size_t i = 0; i < sizeof special / sizeof *special; i++) x[n++] = special[i];
  for (int i = 0; i < 65536; i++) x[n++] = f32_of_f16((uint16_t)i);   /* every half, exactly */
  while (n < NR) {
    uint32_t u = (uint32_t)(urand() * 4294967296.0);
    float f;
    memcpy(&f, &u, 4);
    x[n++] = f;
  }
  int bad = 0;
  for (int e = CG_ELEM_BF16; e <= CG_ELEM_F16; e++)
    for (int soft = 0; soft < 2; soft++) {
      if (e == CG_ELEM_BF16 && soft) continue;
      CvtFn fn;
      LLVMOrcLLJITRef jit = build_cvt((CgElem)e, soft, &fn);
      fn(x, h, back, n);
      for (int i = 0; i < n; i++) {
        uint16_t want = e == CG_ELEM_BF16 ? bf16_of(x[i]) : f16_of(x[i]);
        float wb = e == CG_ELEM_BF16 ? f32_of_bf16(h[i]) : f32_of_f16(h[i]);
        bool ok = isnan(x[i]) ? isnan(back[i]) && (e == CG_ELEM_BF16 ? isnan(f32_of_bf16(h[i])) : isnan(f32_of_f16(h[i])))
                              : h[i] == want && memcmp(&wb, &back[i], 4) == 0;
        if (!ok && bad++ < 5)
          printf("  %s%s: %a -> 0x%04x (want 0x%04x) -> %a\n", e == CG_ELEM_BF16 ? "bf16" : "f16", soft ? " soft" : "",
                 (double)x[i], h[i], want, (double)back[i]);
      }
      LLVMOrcDisposeLLJIT(jit);
    }
  free(x), free(back), free(h);
  assert_int_equal(bad, 0);
}

/* ------------------------------------------------------------------ speed */

static double now(clockid_t c) {
  struct timespec t;
  clock_gettime(c, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

/* the runtime's pool (workers that stay, as in training) behind frame->parallel_for */
typedef struct {
  bprt_task_fn fn;
  void *ctx;
} Adapt;
static void adapt_run(void *c, int64_t b, int64_t e, int w) {
  Adapt *a = c;
  a->fn(a->ctx, b, e, w);
}
static void pool_pfor(void *pool, int64_t n, int64_t grain, bprt_task_fn fn, void *ctx) {
  Adapt a = {fn, ctx};
  bprt_pool_for(pool, n, grain, adapt_run, &a);
}

static void bench(void) {
  BprtPool *pool = bprt_pool_new(2);
  static const struct {
    Op op;
    int64_t M, K, N;
  } shapes[] = {{OP_MATMUL, 128, 784, 1024}, {OP_MATMUL, 128, 1024, 1024}, {OP_MATMUL_TN, 1024, 128, 1024},
                {OP_MATMUL_NT, 128, 1024, 1024}, {OP_MATMUL, 1024, 1024, 1024}};
  printf("GFLOP/s (M x K x N): 1 thread by its CPU time, median of 15; 2 threads by the wall clock, best of 15\n"
         "%-26s %-8s %10s %10s\n", "shape", "core", "1 thread", "2 threads");
  const char *sel = getenv("CGT_LOWP_SHAPE");   /* one of them: 0..3 */
  for (size_t s = 0; s < 5; s++)
    if (!sel || (size_t)atoi(sel) == s)
    for (int core = 0; core <= CG_BF16_AMX; core++) {
      const char *only = getenv("CGT_LOWP_ONLY");   /* one core: f32, convert, dpbf16 or amx */
      if (only && strcmp(only, core ? core_name[core] : "f32") != 0) continue;
      if (core && cannot_run(core)) continue;
      CgElem t = core ? CG_ELEM_BF16 : CG_ELEM_FLOAT;
      Built b;
      build(&b, core ? core : CG_BF16_CONVERT, t, t, shapes[s].op, 0);
      int64_t M = shapes[s].M, N = shapes[s].N, K = shapes[s].K;
      if (getenv("CGT_LOWP_MKN")) sscanf(getenv("CGT_LOWP_MKN"), "%lld %lld %lld", (long long *)&M, (long long *)&K, (long long *)&N);
      void *A = fill(t, M * K), *B = fill(t, K * N);
      float *C = malloc((size_t)(M * N) * 4);
      void *pack = aligned_alloc(64, (size_t)(b.pack_bytes + 63) / 64 * 64);
      double g[2];
      for (int th = 1; th <= 2; th++) {
        bprt_frame fr;
        memset(&fr, 0, sizeof fr);
        fr.parallel_for = pool_pfor;
        fr.pool = pool;
        fr.nthreads = th;
        double t15[15];
        /* one thread runs on this one: its CPU time leaves out the other jobs of a shared
         * machine; two threads: the best wall time */
        clockid_t clk = th == 1 ? CLOCK_THREAD_CPUTIME_ID : CLOCK_MONOTONIC;
        for (int r = -3; r < 15; r++) {
          double t0 = now(clk);
          b.fn(A, B, C, NULL, pack, &fr, M, N, K, 0, 0, 0);
          if (r >= 0) t15[r] = now(clk) - t0;
        }
        for (int i = 0; i < 15; i++)
          for (int j = i + 1; j < 15; j++)
            if (t15[j] < t15[i]) {
              double x = t15[i];
              t15[i] = t15[j], t15[j] = x;
            }
        g[th - 1] = 2.0 * M * N * K / t15[th == 1 ? 7 : 0] / 1e9;
      }
      char sh[40];
      snprintf(sh, sizeof sh, "%s %lldx%lldx%lld", ir_ops[shapes[s].op].name, (long long)M, (long long)K, (long long)N);
      printf("%-26s %-8s %10.0f %10.0f\n", sh, core ? core_name[core] : "f32", g[0], g[1]);
      free(A), free(B), free(C), free(pack);
      unbuild(&b);
    }
  bprt_pool_free(pool);
}

int main(void) {
  if (getenv("CGT_LOWP_BENCH")) {
    bench();
    return 0;
  }
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_conversions), cmocka_unit_test(test_bf16_convert), cmocka_unit_test(test_bf16_dpbf16),
      cmocka_unit_test(test_bf16_amx),    cmocka_unit_test(test_f16_mixed),    cmocka_unit_test(test_store16),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
