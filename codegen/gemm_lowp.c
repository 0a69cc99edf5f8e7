/* codegen/gemm_lowp.c — matrix products with 16-bit operands (bf16, IEEE half) that
 * accumulate in f32, and the conversions between those formats and f32.
 *
 *   C[M,N] (f32) = sum_k float(a_ik) float(b_kj)
 *
 * Three cores for bf16 operands, one chosen when the model is built (cg_gemm_bf16_select,
 * docs/codegen.md), each with gemm.c's core signature and cache blocking (jc / pc / ic
 * loops, per-chunk pack buffers, the epilogue on each final tile):
 *   AMX     (amx-tile + amx-bf16) 32 x 32 tiles of C in four accumulator tiles,
 *           tdpbf16ps on 16 x 32 tiles of A (rows of k) and 16 x 32 of B in the
 *           VNNI layout (16 k-pairs x 16 columns, a pair per 32-bit lane). K blocks
 *           are padded to 32 with zeros.
 *   dpbf16  (avx512bf16) the register-blocked kernel of gemm.c (12 x 32 tile of C
 *           in 24 zmm) with k taken in pairs: per pair, two 64-byte loads of B (32
 *           columns x a pair) and per row one broadcast 32-bit pair of A into two
 *           vdpbf16ps.
 *   convert the f32 core of gemm.c with packing that widens (bf16: a shift): any host.
 * f16 operands (and mixed types) always take the conversion (F16C's vcvtph2ps where
 * the target has it).
 *
 * Panels (16-bit elements): B in panels of 32 columns, [k/2][32][2] (a k-pair per
 * 32-bit lane, zeros past the block's k and the panel's columns), used by both bf16
 * cores. A for dpbf16 in panels of 12 rows [k/2][12][2]; for AMX in panels of 32 rows
 * [32][kp] (rows of k, kp = k rounded up to 32), the layout tileloadd reads.
 *
 * Both tdpbf16ps and vdpbf16ps treat bf16 subnormal inputs as zero and flush subnormal
 * results (Intel SDM): products of operands below 2^-126 differ from the conversion
 * path's. Training values are far from there; the tests' operands are normal.
 *
 * AMX needs the kernel's permission for the tile state (arch_prctl, once per process,
 * runtime bprt_amx_request): AMX is selected only where it was granted, and a model
 * library that uses it asks again when created (bprt_model_desc.uses_amx). Each core
 * call loads its tile configuration (ldtilecfg: every thread that runs tiles needs
 * one) and releases the tiles at the end. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codegen/cg.h"
#include "runtime/runtime.h"

static LLVMValueRef add(Cg *cg, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildAdd(cg->B, a, b, ""); }
static LLVMValueRef mul(Cg *cg, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildMul(cg->B, a, b, ""); }
static LLVMValueRef sub(Cg *cg, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildSub(cg->B, a, b, ""); }
static LLVMValueRef c64(Cg *cg, int64_t v) { return cg_i64(cg, v); }
static LLVMTypeRef t_i16(Cg *cg) { return LLVMInt16TypeInContext(cg->C); }
static LLVMValueRef p16(Cg *cg, LLVMValueRef p, LLVMValueRef idx) { return cg_gep(cg, t_i16(cg), p, idx); }
static LLVMValueRef p32(Cg *cg, LLVMValueRef p, LLVMValueRef idx) { return cg_gep(cg, cg->t_i32, p, idx); }

/* ------------------------------------------------------------------ conversions */

/* T's shape (scalar or vector) with elements of type E */
static LLVMTypeRef like(LLVMTypeRef T, LLVMTypeRef E) {
  return cg_is_vec(T) ? LLVMVectorType(E, LLVMGetVectorSize(T)) : E;
}
static LLVMValueRef kint(LLVMTypeRef T, int64_t v) {   /* an integer constant, splat to T */
  if (!cg_is_vec(T)) return LLVMConstInt(T, (unsigned long long)v, 1);
  unsigned n = LLVMGetVectorSize(T);
  LLVMValueRef e[64];
  for (unsigned i = 0; i < n; i++) e[i] = LLVMConstInt(LLVMGetElementType(T), (unsigned long long)v, 1);
  return LLVMConstVector(e, n);
}

LLVMValueRef cg_elem_to_f32(Cg *cg, LLVMValueRef x, CgElem e) {
  LLVMBuilderRef B = cg->B;
  LLVMTypeRef T16 = LLVMTypeOf(x), F = like(T16, LLVMFloatTypeInContext(cg->C)), I = like(T16, cg->t_i32);
  if (e == CG_ELEM_BF16)   /* bf16 is the high half of an f32 */
    return LLVMBuildBitCast(B, LLVMBuildShl(B, LLVMBuildZExt(B, x, I, ""), kint(I, 16), ""), F, "");
  if (cg->cpu & CG_CPU_F16C)
    return LLVMBuildFPExt(B, LLVMBuildBitCast(B, x, like(T16, LLVMHalfTypeInContext(cg->C)), ""), F, "");
  /* half -> float in integers: the exponent rebiased (inf / NaN to 255), subnormals
   * and zero through an exact subtraction of 2^-14 */
  LLVMValueRef u = LLVMBuildZExt(B, x, I, "");
  LLVMValueRef sign = LLVMBuildShl(B, LLVMBuildAnd(B, u, kint(I, 0x8000), ""), kint(I, 16), "");
  LLVMValueRef o = LLVMBuildShl(B, LLVMBuildAnd(B, u, kint(I, 0x7fff), ""), kint(I, 13), "");
  LLVMValueRef ex = LLVMBuildAnd(B, o, kint(I, 0x7c00 << 13), "");
  o = add(cg, o, kint(I, (127 - 15) << 23));
  LLVMValueRef infnan = LLVMBuildICmp(B, LLVMIntEQ, ex, kint(I, 0x7c00 << 13), "");
  o = LLVMBuildSelect(B, infnan, add(cg, o, kint(I, (128 - 16) << 23)), o, "");
  LLVMValueRef sub_f = LLVMBuildFSub(B, LLVMBuildBitCast(B, add(cg, o, kint(I, 1 << 23)), F, ""),
                                     LLVMBuildBitCast(B, kint(I, 113 << 23), F, ""), "");
  LLVMValueRef small = LLVMBuildICmp(B, LLVMIntEQ, ex, kint(I, 0), "");
  o = LLVMBuildSelect(B, small, LLVMBuildBitCast(B, sub_f, I, ""), o, "");
  return LLVMBuildBitCast(B, LLVMBuildOr(B, o, sign, ""), F, "");
}

LLVMValueRef cg_elem_from_f32(Cg *cg, LLVMValueRef x, CgElem e) {
  LLVMBuilderRef B = cg->B;
  LLVMTypeRef F = LLVMTypeOf(x), I = like(F, cg->t_i32), T16 = like(F, t_i16(cg));
  LLVMValueRef u = LLVMBuildBitCast(B, x, I, "");
  if (e == CG_ELEM_BF16) {   /* round the low 16 bits to nearest even; NaN: quieted */
    LLVMValueRef hi = LLVMBuildLShr(B, u, kint(I, 16), "");
    LLVMValueRef r = add(cg, u, add(cg, kint(I, 0x7fff), LLVMBuildAnd(B, hi, kint(I, 1), "")));
    r = LLVMBuildLShr(B, r, kint(I, 16), "");
    LLVMValueRef nan = LLVMBuildFCmp(B, LLVMRealUNO, x, x, "");
    r = LLVMBuildSelect(B, nan, LLVMBuildOr(B, hi, kint(I, 0x40), ""), r, "");
    return LLVMBuildTrunc(B, r, T16, "");
  }
  if (cg->cpu & CG_CPU_F16C)
    return LLVMBuildBitCast(B, LLVMBuildFPTrunc(B, x, like(F, LLVMHalfTypeInContext(cg->C)), ""), T16, "");
  /* float -> half in integers, to nearest even: |x| >= 65520 rounds to inf (NaN to a
   * quiet NaN); below 2^-14 an addition of 0.5 (in f32, which rounds to nearest even)
   * leaves the subnormal's bits at the bottom; else rebias and round at bit 13 */
  LLVMValueRef sign = LLVMBuildAnd(B, u, kint(I, (int64_t)0x80000000u), "");
  LLVMValueRef f = LLVMBuildXor(B, u, sign, "");
  LLVMValueRef big = LLVMBuildICmp(B, LLVMIntUGE, f, kint(I, (127 + 16) << 23), "");
  LLVMValueRef o_big = LLVMBuildSelect(B, LLVMBuildICmp(B, LLVMIntUGT, f, kint(I, 255 << 23), ""), kint(I, 0x7e00),
                                       kint(I, 0x7c00), "");
  LLVMValueRef small = LLVMBuildICmp(B, LLVMIntULT, f, kint(I, 113 << 23), "");
  LLVMValueRef magic = kint(I, ((127 - 15) + (23 - 10) + 1) << 23);
  LLVMValueRef fl = LLVMBuildFAdd(B, LLVMBuildBitCast(B, f, F, ""), LLVMBuildBitCast(B, magic, F, ""), "");
  LLVMValueRef o_small = sub(cg, LLVMBuildBitCast(B, fl, I, ""), magic);
  LLVMValueRef odd = LLVMBuildAnd(B, LLVMBuildLShr(B, f, kint(I, 13), ""), kint(I, 1), "");
  LLVMValueRef o_norm = add(cg, add(cg, f, kint(I, (int64_t)(uint32_t)(((uint32_t)(15 - 127) << 23) + 0xfff))), odd);
  o_norm = LLVMBuildLShr(B, o_norm, kint(I, 13), "");
  LLVMValueRef o = LLVMBuildSelect(B, big, o_big, LLVMBuildSelect(B, small, o_small, o_norm, ""), "");
  o = LLVMBuildOr(B, o, LLVMBuildLShr(B, sign, kint(I, 16), ""), "");
  return LLVMBuildTrunc(B, o, T16, "");
}

LLVMValueRef cg_load_elem(Cg *cg, LLVMTypeRef T, CgElem e, LLVMValueRef ptr, LLVMValueRef idx) {
  LLVMValueRef v = LLVMBuildLoad2(cg->B, like(T, t_i16(cg)), p16(cg, ptr, idx), "");
  LLVMSetAlignment(v, 2);
  return cg_elem_to_f32(cg, v, e);
}

void cg_store_elem(Cg *cg, LLVMValueRef x, CgElem e, LLVMValueRef ptr, LLVMValueRef idx) {
  LLVMValueRef s = LLVMBuildStore(cg->B, cg_elem_from_f32(cg, x, e), p16(cg, ptr, idx));
  LLVMSetAlignment(s, 2);
}

/* ------------------------------------------------------------------ selection */

static bool has_feature(const char *features, const char *f) {
  size_t n = strlen(f);
  for (const char *p = features; (p = strstr(p, f)); p += n)
    if ((p == features || p[-1] == ',') && (p[n] == ',' || p[n] == 0)) return true;
  return false;
}

unsigned cg_target_features(LLVMTargetMachineRef tm) {
  char *cpu = LLVMGetTargetMachineCPU(tm), *fs = LLVMGetTargetMachineFeatureString(tm);
  unsigned r = 0;
  if (has_feature(fs, "+f16c") || strcmp(cpu, "x86-64-v3") == 0 || strcmp(cpu, "x86-64-v4") == 0) r |= CG_CPU_F16C;
  if (has_feature(fs, "+avx512bf16") && has_feature(fs, "+avx512bw")) r |= CG_CPU_AVX512BF16;
  if (has_feature(fs, "+amx-tile") && has_feature(fs, "+amx-bf16")) r |= CG_CPU_AMX_BF16;
  if (strncmp(cpu, "znver", 5) == 0) r |= CG_CPU_ZNVER;
  LLVMDisposeMessage(cpu);
  LLVMDisposeMessage(fs);
  return r;
}

static bool core_ok(int core, unsigned cpu, char *why, size_t n) {
  if (core == CG_BF16_AMX && !(cpu & CG_CPU_AMX_BF16)) {
    snprintf(why, n, "the target has no AMX (amx-tile, amx-bf16; only -march=native on such a CPU)");
    return false;
  }
  if (core == CG_BF16_AMX && !bprt_amx_request()) {
    snprintf(why, n, "the kernel refused the AMX tile state (arch_prctl ARCH_REQ_XCOMP_PERM)");
    return false;
  }
  if (core == CG_BF16_DPBF16 && !(cpu & CG_CPU_AVX512BF16)) {
    snprintf(why, n, "the target has no AVX512-BF16 (only -march=native on such a CPU)");
    return false;
  }
  return true;
}

int cg_gemm_bf16_select(unsigned cpu, char *err, size_t errlen) {
  const char *env = getenv("BPCC_GEMM_BF16");
  if (env && *env) {
    int core = strcmp(env, "amx") == 0 ? CG_BF16_AMX : strcmp(env, "dpbf16") == 0 ? CG_BF16_DPBF16
               : strcmp(env, "convert") == 0 ? CG_BF16_CONVERT : -1;
    if (core < 0) {
      snprintf(err, errlen, "BPCC_GEMM_BF16=%s: use amx, dpbf16 or convert", env);
      return -1;
    }
    char why[160];
    if (!core_ok(core, cpu, why, sizeof why)) {
      snprintf(err, errlen, "BPCC_GEMM_BF16=%s: %s", env, why);
      return -1;
    }
    return core;
  }
  /* AMX where granted; vdpbf16ps on Zen 4 / Zen 5 (on Intel's Sapphire Rapids it runs
   * at half the rate of f32 FMAs: docs/codegen.md); else the conversion */
  if ((cpu & CG_CPU_AMX_BF16) && bprt_amx_request()) return CG_BF16_AMX;
  if ((cpu & CG_CPU_AVX512BF16) && (cpu & CG_CPU_ZNVER)) return CG_BF16_DPBF16;
  return CG_BF16_CONVERT;
}

bool cg_gemm_bf16_available(int core, const char *march, char *why, size_t whylen) {
  int lanes;
  LLVMTargetMachineRef tm = cg_target_machine(march, 2, &lanes, why, whylen);
  if (!tm) return false;
  unsigned cpu = cg_target_features(tm);
  LLVMDisposeTargetMachine(tm);
  if (core != CG_BF16_CONVERT && lanes != 16) {
    snprintf(why, whylen, "the target has no AVX-512");
    return false;
  }
  return core_ok(core, cpu, why, whylen);
}

/* ------------------------------------------------------------------ packing */

enum { K_DP, K_AMX };
#define LP_NR 32   /* columns of a B panel (both cores) */

static LLVMValueRef masked_load(Cg *cg, LLVMTypeRef VT, LLVMValueRef ptr, LLVMValueRef mask) {
  LLVMTypeRef ov[2] = {VT, cg->t_ptr};
  unsigned id = LLVMLookupIntrinsicID("llvm.masked.load", 16);
  LLVMValueRef fn = LLVMGetIntrinsicDeclaration(cg->M, id, ov, 2);
  LLVMValueRef a[4] = {ptr, cg_i32(cg, 2), mask, LLVMConstNull(VT)};
  return LLVMBuildCall2(cg->B, LLVMIntrinsicGetType(cg->C, id, ov, 2), fn, a, 4, "");
}

/* lanes l < n of an <N x i1> mask (n an i64) */
static LLVMValueRef lane_mask(Cg *cg, int N, LLVMValueRef n) {
  LLVMValueRef iota[64];
  for (int l = 0; l < N; l++) iota[l] = c64(cg, l);
  LLVMTypeRef VI = LLVMVectorType(cg->t_i64, (unsigned)N);
  return LLVMBuildICmp(cg->B, LLVMIntSLT, LLVMConstVector(iota, (unsigned)N), cg_splat(cg, n, VI), "");
}

static void zero_fill(Cg *cg, LLVMValueRef dst, LLVMValueRef n16) {
  LLVMBuildMemSet(cg->B, dst, LLVMConstInt(LLVMInt8TypeInContext(cg->C), 0, 0), mul(cg, n16, c64(cg, 2)), 2);
}

/* The interleave of two rows of 32 columns: lanes 2q, 2q + 1 = r0[q], r1[q] */
static LLVMValueRef interleave32(Cg *cg, LLVMValueRef r0, LLVMValueRef r1) {
  LLVMValueRef sh[64];
  for (int q = 0; q < LP_NR; q++) {
    sh[2 * q] = cg_i32(cg, q);
    sh[2 * q + 1] = cg_i32(cg, LP_NR + q);
  }
  return LLVMBuildShuffleVector(cg->B, r0, r1, LLVMConstVector(sh, 2 * LP_NR), "");
}

/* The B block in pairs when its columns are contiguous (matmul's and matmul_tn's b):
 * rows p and p + 1 read along their length (sequential streams: a panel at a time went
 * down the rows 2 KiB apart, a page every other row, at ~7 GB/s), each 32 columns
 * interleaved into their panel's pair row, dst[j/32 kp 32 + (p/2) 64 + 2 (j%32) + p%2];
 * the last panel's columns masked to nc. Zeros past kc and nc. */
static void pack_b_rows(Cg *cg, LLVMValueRef dst, LLVMValueRef base, LLVMValueRef ps, LLVMValueRef nc,
                        LLVMValueRef kc, LLVMValueRef kp) {
  LLVMBuilderRef B = cg->B;
  LLVMValueRef one = c64(cg, 1), zero = c64(cg, 0);
  LLVMValueRef nfull = LLVMBuildAnd(B, nc, c64(cg, ~(int64_t)(LP_NR - 1)), "");
  LLVMValueRef part = LLVMBuildOr(B, LLVMBuildICmp(B, LLVMIntNE, nfull, nc, ""), LLVMBuildICmp(B, LLVMIntNE, kc, kp, ""), "");
  LLVMBasicBlockRef join = cg_if_begin(cg, part);
  zero_fill(cg, dst, mul(cg, kp, LLVMBuildAnd(B, add(cg, nc, c64(cg, LP_NR - 1)), c64(cg, ~(int64_t)(LP_NR - 1)), "")));
  cg_if_end(cg, join);
  LLVMTypeRef V = LLVMVectorType(t_i16(cg), LP_NR), VB = LLVMVectorType(cg->t_i1, LP_NR);
  /* blocks of 32 rows, each panel's 16 pair rows written in one piece (a row pair at a
   * time through all panels wrote 16 streams 64 KiB apart: one L1 set) */
  CgLoop lb = cg_loop_begin(cg, zero, kc, c64(cg, 32));
  LLVMValueRef pe = cg_min_i64(cg, add(cg, lb.iv, c64(cg, 32)), kc);
  CgLoop lj = cg_loop_begin(cg, zero, nfull, c64(cg, LP_NR));
  {
    CgLoop l = cg_loop_begin(cg, lb.iv, pe, c64(cg, 2));
    LLVMValueRef row0 = p16(cg, base, mul(cg, l.iv, ps)), row1 = p16(cg, base, mul(cg, add(cg, l.iv, one), ps));
    LLVMValueRef have1 = cg_splat(cg, LLVMBuildICmp(B, LLVMIntSLT, add(cg, l.iv, one), kc, ""), VB);
    LLVMValueRef r0 = LLVMBuildLoad2(B, V, p16(cg, row0, lj.iv), "");
    LLVMSetAlignment(r0, 2);
    LLVMValueRef r1 = masked_load(cg, V, p16(cg, row1, lj.iv), have1);
    LLVMValueRef d = add(cg, mul(cg, lj.iv, kp), mul(cg, l.iv, c64(cg, LP_NR)));
    LLVMSetAlignment(LLVMBuildStore(B, interleave32(cg, r0, r1), p16(cg, dst, d)), 2);
    cg_loop_end_hint(cg, &l, CG_LOOP_NO_VECTORIZE | CG_LOOP_NO_UNROLL);
  }
  cg_loop_end_hint(cg, &lj, CG_LOOP_NO_VECTORIZE | CG_LOOP_NO_UNROLL);
  cg_loop_end_hint(cg, &lb, CG_LOOP_NO_VECTORIZE | CG_LOOP_NO_UNROLL);
  /* the last panel's columns, masked */
  CgLoop l = cg_loop_begin(cg, zero, LLVMBuildSelect(B, LLVMBuildICmp(B, LLVMIntNE, nfull, nc, ""), kc, zero, ""), c64(cg, 2));
  LLVMValueRef row0 = p16(cg, base, mul(cg, l.iv, ps)), row1 = p16(cg, base, mul(cg, add(cg, l.iv, one), ps));
  LLVMValueRef have1 = cg_splat(cg, LLVMBuildICmp(B, LLVMIntSLT, add(cg, l.iv, one), kc, ""), VB);
  LLVMValueRef drow = p16(cg, dst, mul(cg, l.iv, c64(cg, LP_NR)));
  LLVMValueRef cols = lane_mask(cg, LP_NR, sub(cg, nc, nfull));
  LLVMValueRef t0 = masked_load(cg, V, p16(cg, row0, nfull), cols);
  LLVMValueRef t1 = masked_load(cg, V, p16(cg, row1, nfull), LLVMBuildAnd(B, cols, have1, ""));
  LLVMSetAlignment(LLVMBuildStore(B, interleave32(cg, t0, t1), p16(cg, drow, mul(cg, nfull, kp))), 2);
  cg_loop_end_hint(cg, &l, CG_LOOP_NO_VECTORIZE | CG_LOOP_NO_UNROLL);
}

/* One B panel in pairs when k is contiguous (matmul_nt's b, src(p, q) = base[q qs + p]):
 * dst[(p/2) 64 + 2q + p%2] = src(p, q) for p < kc, q < ext, zeros up to kp and 32
 * columns. A pair is one 32-bit word of the source: 16 columns x 16 pairs transposed in
 * registers, the rest word by word. */
static void pack_b_panel(Cg *cg, LLVMValueRef dst, LLVMValueRef base, LLVMValueRef qs, LLVMValueRef ext,
                         LLVMValueRef kc, LLVMValueRef kp) {
  LLVMBuilderRef B = cg->B;
  LLVMValueRef one = c64(cg, 1), zero = c64(cg, 0);
  /* a partial panel (columns or k past the data): zeros first */
  LLVMValueRef part = LLVMBuildOr(B, LLVMBuildICmp(B, LLVMIntNE, ext, c64(cg, LP_NR), ""),
                                  LLVMBuildICmp(B, LLVMIntNE, kc, kp, ""), "");
  LLVMBasicBlockRef join = cg_if_begin(cg, part);
  zero_fill(cg, dst, mul(cg, kp, c64(cg, LP_NR)));
  cg_if_end(cg, join);
  LLVMValueRef npair = LLVMBuildSDiv(B, kc, c64(cg, 2), "");   /* whole pairs */
  LLVMValueRef nblk = LLVMBuildAnd(B, npair, c64(cg, ~(int64_t)15), "");
  LLVMValueRef full = LLVMBuildICmp(B, LLVMIntEQ, ext, c64(cg, LP_NR), "");
  LLVMValueRef pend = LLVMBuildSelect(B, full, nblk, zero, "");   /* pairs done in blocks */
  LLVMTypeRef VF = LLVMVectorType(cg->t_f32, 16);
  CgLoop l = cg_loop_begin(cg, zero, pend, c64(cg, 16));
  for (int qg = 0; qg < LP_NR; qg += 16) {
    LLVMValueRef r[16];
    for (int i = 0; i < 16; i++) {
      LLVMValueRef src = p16(cg, base, add(cg, mul(cg, c64(cg, qg + i), qs), mul(cg, l.iv, c64(cg, 2))));
      r[i] = LLVMBuildLoad2(B, VF, src, "");
      LLVMSetAlignment(r[i], 2);
    }
    cg_reg_transpose(cg, r, 16);
    for (int i = 0; i < 16; i++) {
      LLVMValueRef s = LLVMBuildStore(B, r[i], p32(cg, dst, add(cg, mul(cg, add(cg, l.iv, c64(cg, i)), c64(cg, LP_NR)),
                                                            c64(cg, qg))));
      LLVMSetAlignment(s, 4);
    }
  }
  cg_loop_end_hint(cg, &l, CG_LOOP_NO_VECTORIZE | CG_LOOP_NO_UNROLL);
  CgLoop lq = cg_loop_begin(cg, zero, ext, one);
  CgLoop lp = cg_loop_begin(cg, pend, npair, one);
  LLVMValueRef w = LLVMBuildLoad2(B, cg->t_i32, p16(cg, base, add(cg, mul(cg, lq.iv, qs), mul(cg, lp.iv, c64(cg, 2)))), "");
  LLVMSetAlignment(w, 2);
  LLVMSetAlignment(LLVMBuildStore(B, w, p32(cg, dst, add(cg, mul(cg, lp.iv, c64(cg, LP_NR)), lq.iv))), 4);
  cg_loop_end(cg, &lp);
  /* an odd kc: the last k alone, its pair's other half zero */
  LLVMBasicBlockRef j2 = cg_if_begin(cg, LLVMBuildICmp(B, LLVMIntNE, LLVMBuildSRem(B, kc, c64(cg, 2), ""), zero, ""));
  LLVMValueRef x = LLVMBuildLoad2(B, t_i16(cg), p16(cg, base, add(cg, mul(cg, lq.iv, qs), sub(cg, kc, one))), "");
  LLVMBuildStore(B, x, p16(cg, dst, add(cg, mul(cg, npair, c64(cg, 2 * LP_NR)), mul(cg, lq.iv, c64(cg, 2)))));
  cg_if_end(cg, j2);
  cg_loop_end(cg, &lq);
}

/* One A panel of P rows (ext of them real) for core kind: dpbf16 [k/2][P][2], AMX
 * [P][kp]; src(i, p) = base[i qs + p ps], qc: qs == 1 (matmul_tn's a). */
static void pack_a_panel(Cg *cg, int kind, int P, LLVMValueRef dst, LLVMValueRef base, LLVMValueRef qs, LLVMValueRef ps,
                         LLVMValueRef qc, LLVMValueRef ext, LLVMValueRef kc, LLVMValueRef kp) {
  LLVMBuilderRef B = cg->B;
  LLVMValueRef one = c64(cg, 1), zero = c64(cg, 0);
  LLVMValueRef part = LLVMBuildOr(B, LLVMBuildICmp(B, LLVMIntNE, ext, c64(cg, P), ""),
                                  LLVMBuildICmp(B, LLVMIntNE, kc, kp, ""), "");
  LLVMBasicBlockRef join = cg_if_begin(cg, part);
  zero_fill(cg, dst, mul(cg, kp, c64(cg, P)));
  cg_if_end(cg, join);
  LLVMBasicBlockRef bq = LLVMAppendBasicBlockInContext(cg->C, cg->fn, "apq");
  LLVMBasicBlockRef bp = LLVMAppendBasicBlockInContext(cg->C, cg->fn, "app");
  LLVMBasicBlockRef done = LLVMAppendBasicBlockInContext(cg->C, cg->fn, "apdone");
  LLVMBuildCondBr(B, qc, bq, bp);
  for (int rows_contig = 1; rows_contig >= 0; rows_contig--) {
    LLVMPositionBuilderAtEnd(B, rows_contig ? bq : bp);
    LLVMValueRef p0 = zero;   /* k done with vectors */
    if (rows_contig && kind == K_AMX) {
      /* matmul_tn's a into rows of k: 32 x 32 blocks of a full panel transposed in
       * registers (16-bit lanes) */
      LLVMTypeRef V = LLVMVectorType(t_i16(cg), 32);
      LLVMValueRef kfull = LLVMBuildAnd(B, kc, c64(cg, ~(int64_t)31), "");
      p0 = LLVMBuildSelect(B, LLVMBuildICmp(B, LLVMIntEQ, ext, c64(cg, 32), ""), kfull, zero, "");
      CgLoop l = cg_loop_begin(cg, zero, p0, c64(cg, 32));
      LLVMValueRef r[32];
      for (int j = 0; j < 32; j++) {
        r[j] = LLVMBuildLoad2(B, V, p16(cg, base, mul(cg, add(cg, l.iv, c64(cg, j)), ps)), "");
        LLVMSetAlignment(r[j], 2);
      }
      cg_reg_transpose(cg, r, 32);
      for (int i = 0; i < 32; i++)
        LLVMSetAlignment(LLVMBuildStore(B, r[i], p16(cg, dst, add(cg, mul(cg, c64(cg, i), kp), l.iv))), 2);
      cg_loop_end_hint(cg, &l, CG_LOOP_NO_VECTORIZE | CG_LOOP_NO_UNROLL);
    } else if (rows_contig) {
      /* matmul_tn's a in pairs: rows p and p + 1 of P contiguous values interleaved */
      LLVMTypeRef V = LLVMVectorType(t_i16(cg), 16);
      LLVMValueRef rowsm = lane_mask(cg, 16, ext);
      p0 = LLVMBuildAnd(B, kc, c64(cg, ~(int64_t)1), "");
      CgLoop l = cg_loop_begin(cg, zero, p0, c64(cg, 2));
      LLVMValueRef r0 = masked_load(cg, V, p16(cg, base, mul(cg, l.iv, ps)), rowsm);
      LLVMValueRef r1 = masked_load(cg, V, p16(cg, base, mul(cg, add(cg, l.iv, one), ps)), rowsm);
      LLVMValueRef sh[32];
      for (int i = 0; i < P; i++) sh[2 * i] = cg_i32(cg, i), sh[2 * i + 1] = cg_i32(cg, 16 + i);
      LLVMValueRef v = LLVMBuildShuffleVector(B, r0, r1, LLVMConstVector(sh, (unsigned)(2 * P)), "");
      LLVMSetAlignment(LLVMBuildStore(B, v, p16(cg, dst, mul(cg, l.iv, c64(cg, P)))), 2);
      cg_loop_end_hint(cg, &l, CG_LOOP_NO_VECTORIZE | CG_LOOP_NO_UNROLL);
    }
    /* the rest: the loop along the source's contiguous dim inside */
    CgLoop lo = cg_loop_begin(cg, rows_contig ? p0 : zero, rows_contig ? kc : ext, one);
    CgLoop li = cg_loop_begin(cg, zero, rows_contig ? ext : kc, one);
    LLVMValueRef i = rows_contig ? li.iv : lo.iv, p = rows_contig ? lo.iv : li.iv;
    LLVMValueRef src = rows_contig ? add(cg, i, mul(cg, p, ps)) : add(cg, mul(cg, i, qs), p);   /* stride 1 inside */
    LLVMValueRef x = LLVMBuildLoad2(B, t_i16(cg), p16(cg, base, src), "");
    LLVMValueRef d;
    if (kind == K_AMX) {
      d = add(cg, mul(cg, i, kp), p);
    } else {   /* (p / 2) 2P + 2i + p % 2 */
      LLVMValueRef pp = LLVMBuildLShr(B, p, one, "");
      d = add(cg, add(cg, mul(cg, pp, c64(cg, 2 * P)), mul(cg, i, c64(cg, 2))), LLVMBuildAnd(B, p, one, ""));
    }
    LLVMBuildStore(B, x, p16(cg, dst, d));
    cg_loop_end(cg, &li);
    cg_loop_end(cg, &lo);
    LLVMBuildBr(B, done);
  }
  LLVMPositionBuilderAtEnd(B, done);
}

/* ------------------------------------------------------------------ micro-kernels */

/* void uk(i64 kp, i16 *Ap, i16 *Bp, float *C, i64 ldc, i64 mr, i64 nr, i1 overwrite):
 * the tile of C (+)= Apanel Bpanel over kp k (a multiple of 2, or of 32 for AMX) */
static LLVMTypeRef uk_type(Cg *cg) {
  LLVMTypeRef a[8] = {cg->t_i64, cg->t_ptr, cg->t_ptr, cg->t_ptr, cg->t_i64, cg->t_i64, cg->t_i64, cg->t_i1};
  return LLVMFunctionType(cg->t_void, a, 8, 0);
}

static LLVMValueRef uk_begin(Cg *cg, const char *name) {
  LLVMValueRef fn = cg_new_function(cg, name, uk_type(cg), true);
  LLVMAddAttributeAtIndex(fn, LLVMAttributeFunctionIndex,
                          LLVMCreateEnumAttribute(cg->C, LLVMGetEnumAttributeKindForName("noinline", 8), 0));
  cg->fn = fn;
  LLVMPositionBuilderAtEnd(cg->B, LLVMAppendBasicBlockInContext(cg->C, fn, "entry"));
  return fn;
}

/* An edge tile through a stack tile T[rows][32] of f32: C[i, j] = T (+ C) for i < mr,
 * j < nr. */
static void edge_writeback(Cg *cg, LLVMValueRef T, LLVMValueRef C, LLVMValueRef ldc, LLVMValueRef mr, LLVMValueRef nr,
                           LLVMValueRef ow) {
  CgLoop li = cg_loop_begin(cg, c64(cg, 0), mr, c64(cg, 1));
  CgLoop lj = cg_loop_begin(cg, c64(cg, 0), nr, c64(cg, 1));
  LLVMValueRef ci = add(cg, mul(cg, li.iv, ldc), lj.iv);
  LLVMValueRef t = cg_load(cg, LLVMFloatTypeInContext(cg->C), T, add(cg, mul(cg, li.iv, c64(cg, LP_NR)), lj.iv));
  LLVMValueRef s = LLVMBuildFAdd(cg->B, t, cg_load(cg, LLVMFloatTypeInContext(cg->C), C, ci), "");
  cg_store(cg, LLVMBuildSelect(cg->B, ow, t, s, ""), C, ci);
  cg_loop_end(cg, &lj);
  cg_loop_end(cg, &li);
}

/* vdpbf16ps: 12 x 32 of C in 24 zmm */
static LLVMValueRef build_uk_dp(Cg *cg, int MR) {
  LLVMValueRef fn = uk_begin(cg, "bpcc_gemm_ukernel_dpbf16");
  LLVMBuilderRef B = cg->B;
  LLVMValueRef kp = LLVMGetParam(fn, 0), Ap = LLVMGetParam(fn, 1), Bp = LLVMGetParam(fn, 2), C = LLVMGetParam(fn, 3);
  LLVMValueRef ldc = LLVMGetParam(fn, 4), mr = LLVMGetParam(fn, 5), nr = LLVMGetParam(fn, 6), ow = LLVMGetParam(fn, 7);
  LLVMTypeRef VF = LLVMVectorType(LLVMFloatTypeInContext(cg->C), 16);
  LLVMTypeRef VB = LLVMVectorType(LLVMBFloatTypeInContext(cg->C), 32);
  LLVMTypeRef VI = LLVMVectorType(cg->t_i32, 16);
  LLVMValueRef acc[16][2];
  for (int i = 0; i < MR; i++)
    for (int v = 0; v < 2; v++) {
      acc[i][v] = cg_alloca(cg, VF, "c");
      LLVMBuildStore(B, LLVMConstNull(VF), acc[i][v]);
    }
  unsigned id = LLVMLookupIntrinsicID("llvm.x86.avx512bf16.dpbf16ps.512", 32);
  LLVMValueRef dfn = LLVMGetIntrinsicDeclaration(cg->M, id, NULL, 0);
  LLVMTypeRef dty = LLVMIntrinsicGetType(cg->C, id, NULL, 0);
  CgLoop l = cg_loop_begin(cg, c64(cg, 0), LLVMBuildSDiv(B, kp, c64(cg, 2), ""), c64(cg, 1));
  LLVMValueRef bv[2];
  for (int v = 0; v < 2; v++) {
    bv[v] = LLVMBuildLoad2(B, VB, p16(cg, Bp, add(cg, mul(cg, l.iv, c64(cg, 2 * LP_NR)), c64(cg, 32 * v))), "");
    LLVMSetAlignment(bv[v], 2);
  }
  for (int i = 0; i < MR; i++) {
    LLVMValueRef w = LLVMBuildLoad2(B, cg->t_i32, p32(cg, Ap, add(cg, mul(cg, l.iv, c64(cg, MR)), c64(cg, i))), "");
    LLVMSetAlignment(w, 4);
    LLVMValueRef av = LLVMBuildBitCast(B, cg_splat(cg, w, VI), VB, "");
    for (int v = 0; v < 2; v++) {
      LLVMValueRef a[3] = {LLVMBuildLoad2(B, VF, acc[i][v], ""), av, bv[v]};
      LLVMBuildStore(B, LLVMBuildCall2(B, dty, dfn, a, 3, ""), acc[i][v]);
    }
  }
  cg_loop_end_hint(cg, &l, CG_LOOP_NO_UNROLL);
  LLVMValueRef full = LLVMBuildAnd(B, LLVMBuildICmp(B, LLVMIntEQ, mr, c64(cg, MR), ""),
                                   LLVMBuildICmp(B, LLVMIntEQ, nr, c64(cg, LP_NR), ""), "");
  LLVMBasicBlockRef bfull = LLVMAppendBasicBlockInContext(cg->C, fn, "full");
  LLVMBasicBlockRef bedge = LLVMAppendBasicBlockInContext(cg->C, fn, "edge");
  LLVMBasicBlockRef bret = LLVMAppendBasicBlockInContext(cg->C, fn, "ret");
  LLVMBuildCondBr(B, full, bfull, bedge);
  LLVMPositionBuilderAtEnd(B, bfull);
  for (int i = 0; i < MR; i++)
    for (int v = 0; v < 2; v++) {
      LLVMValueRef idx = add(cg, mul(cg, c64(cg, i), ldc), c64(cg, 16 * v));
      LLVMValueRef c = LLVMBuildLoad2(B, VF, acc[i][v], "");
      LLVMValueRef s = LLVMBuildFAdd(B, c, cg_load(cg, VF, C, idx), "");
      cg_store(cg, LLVMBuildSelect(B, ow, c, s, ""), C, idx);
    }
  LLVMBuildBr(B, bret);
  LLVMPositionBuilderAtEnd(B, bedge);
  LLVMValueRef T = cg_alloca(cg, LLVMArrayType(LLVMFloatTypeInContext(cg->C), (unsigned)(MR * LP_NR)), "tile");
  for (int i = 0; i < MR; i++)
    for (int v = 0; v < 2; v++) cg_store(cg, LLVMBuildLoad2(B, VF, acc[i][v], ""), T, c64(cg, i * LP_NR + 16 * v));
  edge_writeback(cg, T, C, ldc, mr, nr, ow);
  LLVMBuildBr(B, bret);
  LLVMPositionBuilderAtEnd(B, bret);
  LLVMBuildRetVoid(B);
  return fn;
}

static void amx(Cg *cg, const char *name, LLVMValueRef *args, int n) {
  unsigned id = LLVMLookupIntrinsicID(name, strlen(name));
  if (!id) ir_die("unknown LLVM intrinsic %s", name);
  LLVMBuildCall2(cg->B, LLVMIntrinsicGetType(cg->C, id, NULL, 0), LLVMGetIntrinsicDeclaration(cg->M, id, NULL, 0), args,
                 (unsigned)n, "");
}
static LLVMValueRef tmm(Cg *cg, int t) { return LLVMConstInt(LLVMInt8TypeInContext(cg->C), (unsigned long long)t, 0); }
static void tile_io(Cg *cg, const char *name, int t, LLVMValueRef ptr, LLVMValueRef stride) {
  LLVMValueRef a[3] = {tmm(cg, t), ptr, stride};
  amx(cg, name, a, 3);
}

/* AMX: 32 x 32 of C in tmm0-3 ((0,0) (0,16) (16,0) (16,16)), A rows in tmm4-5, B in
 * tmm6-7; the configuration (every tile 16 rows x 64 bytes) is the core's */
static LLVMValueRef build_uk_amx(Cg *cg) {
  LLVMValueRef fn = uk_begin(cg, "bpcc_gemm_ukernel_amx");
  LLVMBuilderRef B = cg->B;
  LLVMValueRef kp = LLVMGetParam(fn, 0), Ap = LLVMGetParam(fn, 1), Bp = LLVMGetParam(fn, 2), C = LLVMGetParam(fn, 3);
  LLVMValueRef ldc = LLVMGetParam(fn, 4), mr = LLVMGetParam(fn, 5), nr = LLVMGetParam(fn, 6), ow = LLVMGetParam(fn, 7);
  LLVMTypeRef F = LLVMFloatTypeInContext(cg->C);
  LLVMValueRef T = cg_alloca(cg, LLVMArrayType(F, 32 * LP_NR), "tile");
  LLVMSetAlignment(T, 64);
  LLVMValueRef full = LLVMBuildAnd(B, LLVMBuildICmp(B, LLVMIntEQ, mr, c64(cg, 32), ""),
                                   LLVMBuildICmp(B, LLVMIntEQ, nr, c64(cg, LP_NR), ""), "");
  LLVMValueRef cstride = mul(cg, ldc, c64(cg, 4)), tstride = c64(cg, 4 * LP_NR);
  /* the accumulators' start: zero, C, or for an edge tile C's part copied into T */
  LLVMBasicBlockRef bfull = LLVMAppendBasicBlockInContext(cg->C, fn, "full");
  LLVMBasicBlockRef bedge = LLVMAppendBasicBlockInContext(cg->C, fn, "edge");
  LLVMBasicBlockRef bzero = LLVMAppendBasicBlockInContext(cg->C, fn, "zero");
  LLVMBasicBlockRef bload = LLVMAppendBasicBlockInContext(cg->C, fn, "load");
  LLVMBasicBlockRef bk = LLVMAppendBasicBlockInContext(cg->C, fn, "k");
  LLVMBuildCondBr(B, ow, bzero, bload);
  LLVMPositionBuilderAtEnd(B, bzero);
  for (int t = 0; t < 4; t++) {
    LLVMValueRef a[1] = {tmm(cg, t)};
    amx(cg, "llvm.x86.tilezero", a, 1);
  }
  LLVMBuildBr(B, bk);
  LLVMPositionBuilderAtEnd(B, bload);
  LLVMBuildCondBr(B, full, bfull, bedge);
  LLVMPositionBuilderAtEnd(B, bfull);
  for (int t = 0; t < 4; t++)
    tile_io(cg, "llvm.x86.tileloadd64", t, cg_gep(cg, F, C, add(cg, mul(cg, c64(cg, 16 * (t / 2)), ldc), c64(cg, 16 * (t % 2)))),
            cstride);
  LLVMBuildBr(B, bk);
  LLVMPositionBuilderAtEnd(B, bedge);
  zero_fill(cg, T, c64(cg, 2 * 32 * LP_NR));
  {
    CgLoop li = cg_loop_begin(cg, c64(cg, 0), mr, c64(cg, 1));
    CgLoop lj = cg_loop_begin(cg, c64(cg, 0), nr, c64(cg, 1));
    cg_store(cg, cg_load(cg, F, C, add(cg, mul(cg, li.iv, ldc), lj.iv)), T, add(cg, mul(cg, li.iv, c64(cg, LP_NR)), lj.iv));
    cg_loop_end(cg, &lj);
    cg_loop_end(cg, &li);
  }
  for (int t = 0; t < 4; t++)
    tile_io(cg, "llvm.x86.tileloadd64", t, cg_gep(cg, F, T, c64(cg, 16 * (t / 2) * LP_NR + 16 * (t % 2))), tstride);
  LLVMBuildBr(B, bk);
  LLVMPositionBuilderAtEnd(B, bk);
  LLVMValueRef astride = mul(cg, kp, c64(cg, 2)), bstride = c64(cg, 4 * LP_NR);
  CgLoop l = cg_loop_begin(cg, c64(cg, 0), kp, c64(cg, 32));
  tile_io(cg, "llvm.x86.tileloadd64", 4, p16(cg, Ap, l.iv), astride);
  tile_io(cg, "llvm.x86.tileloadd64", 5, p16(cg, Ap, add(cg, mul(cg, c64(cg, 16), kp), l.iv)), astride);
  LLVMValueRef brow = mul(cg, LLVMBuildSDiv(B, l.iv, c64(cg, 2), ""), c64(cg, 2 * LP_NR));
  tile_io(cg, "llvm.x86.tileloadd64", 6, p16(cg, Bp, brow), bstride);
  tile_io(cg, "llvm.x86.tileloadd64", 7, p16(cg, Bp, add(cg, brow, c64(cg, 32))), bstride);
  static const int dp[4][3] = {{0, 4, 6}, {1, 4, 7}, {2, 5, 6}, {3, 5, 7}};
  for (int t = 0; t < 4; t++) {
    LLVMValueRef a[3] = {tmm(cg, dp[t][0]), tmm(cg, dp[t][1]), tmm(cg, dp[t][2])};
    amx(cg, "llvm.x86.tdpbf16ps", a, 3);
  }
  cg_loop_end_hint(cg, &l, CG_LOOP_NO_UNROLL);
  LLVMBasicBlockRef sfull = LLVMAppendBasicBlockInContext(cg->C, fn, "sfull");
  LLVMBasicBlockRef sedge = LLVMAppendBasicBlockInContext(cg->C, fn, "sedge");
  LLVMBasicBlockRef bret = LLVMAppendBasicBlockInContext(cg->C, fn, "ret");
  LLVMBuildCondBr(B, full, sfull, sedge);
  LLVMPositionBuilderAtEnd(B, sfull);
  for (int t = 0; t < 4; t++)
    tile_io(cg, "llvm.x86.tilestored64", t, cg_gep(cg, F, C, add(cg, mul(cg, c64(cg, 16 * (t / 2)), ldc), c64(cg, 16 * (t % 2)))),
            cstride);
  LLVMBuildBr(B, bret);
  LLVMPositionBuilderAtEnd(B, sedge);
  for (int t = 0; t < 4; t++)
    tile_io(cg, "llvm.x86.tilestored64", t, cg_gep(cg, F, T, c64(cg, 16 * (t / 2) * LP_NR + 16 * (t % 2))), tstride);
  /* T holds the whole sum (C's part was loaded into it): copy */
  edge_writeback(cg, T, C, ldc, mr, nr, LLVMConstInt(cg->t_i1, 1, 0));
  LLVMBuildBr(B, bret);
  LLVMPositionBuilderAtEnd(B, bret);
  LLVMBuildRetVoid(B);
  return fn;
}

/* ------------------------------------------------------------------ the core */

/* void core(M, N, K, A, ars, acs, B, brs, bcs, C, ldc, Ap, Bp, efn, ectx, acc): gemm.c's
 * signature and loops, with 16-bit panels and the micro-kernel of kind */
static LLVMValueRef build_lowp_core(Cg *cg, int kind) {
  int MR = kind == K_AMX ? 32 : 12, KQ = kind == K_AMX ? 32 : 2, MC = kind == K_AMX ? 128 : cg->MC;
  int KC = kind == K_AMX ? CG_GEMM_KC16 : cg->KC, NC = kind == K_AMX ? CG_GEMM_NC16 : cg->NC;
  LLVMValueRef uk = kind == K_AMX ? build_uk_amx(cg) : build_uk_dp(cg, MR);
  LLVMTypeRef args[16] = {cg->t_i64, cg->t_i64, cg->t_i64, cg->t_ptr, cg->t_i64, cg->t_i64, cg->t_ptr, cg->t_i64,
                          cg->t_i64, cg->t_ptr, cg->t_i64, cg->t_ptr, cg->t_ptr, cg->t_ptr, cg->t_ptr, cg->t_i64};
  LLVMValueRef fn = cg_new_function(cg, kind == K_AMX ? "bpcc_gemm_core_amx" : "bpcc_gemm_core_dpbf16",
                                    LLVMFunctionType(cg->t_void, args, 16, 0), true);
  static const unsigned noalias_args[5] = {4, 7, 10, 12, 13};   /* A, B, C, Ap, Bp (1-based) */
  for (int i = 0; i < 5; i++)
    LLVMAddAttributeAtIndex(fn, noalias_args[i], LLVMCreateEnumAttribute(cg->C, LLVMGetEnumAttributeKindForName("noalias", 7), 0));
  cg->fn = fn;
  LLVMBuilderRef B = cg->B;
  LLVMPositionBuilderAtEnd(B, LLVMAppendBasicBlockInContext(cg->C, fn, "entry"));
  LLVMValueRef P[16];
  for (unsigned i = 0; i < 16; i++) P[i] = LLVMGetParam(fn, i);
  LLVMValueRef M = P[0], N = P[1], K = P[2], A = P[3], ars = P[4], acs = P[5], Bm = P[6], brs = P[7], bcs = P[8];
  LLVMValueRef Cm = P[9], ldc = P[10], Ap = P[11], Bp = P[12], efn = P[13], ectx = P[14];
  LLVMValueRef one = c64(cg, 1);
  if (kind == K_AMX) {   /* palette 1; tiles 0-7 of 16 rows x 64 bytes */
    LLVMTypeRef I8 = LLVMInt8TypeInContext(cg->C);
    LLVMValueRef cfg = cg_alloca(cg, LLVMArrayType(I8, 64), "tilecfg");
    LLVMSetAlignment(cfg, 64);
    zero_fill(cg, cfg, c64(cg, 32));
    LLVMBuildStore(B, LLVMConstInt(I8, 1, 0), cfg);
    for (int t = 0; t < 8; t++) {
      LLVMBuildStore(B, LLVMConstInt(t_i16(cg), 64, 0), p16(cg, cfg, c64(cg, 8 + t)));
      LLVMBuildStore(B, LLVMConstInt(I8, 16, 0), cg_gep(cg, I8, cfg, c64(cg, 48 + t)));
    }
    LLVMValueRef a[1] = {cfg};
    amx(cg, "llvm.x86.ldtilecfg", a, 1);
  }
  LLVMValueRef aqc = LLVMBuildICmp(B, LLVMIntEQ, ars, one, "aqc");
  LLVMValueRef bqc = LLVMBuildICmp(B, LLVMIntEQ, bcs, one, "bqc");
  CgLoop jc = cg_loop_begin(cg, c64(cg, 0), N, c64(cg, NC));
  LLVMValueRef nc = cg_min_i64(cg, c64(cg, NC), sub(cg, N, jc.iv));
  /* K in equal blocks of at most KC, each a multiple of KQ but the last (pairs and AMX
   * steps never straddle two blocks) */
  LLVMValueRef nkb = LLVMBuildSDiv(B, add(cg, K, c64(cg, KC - 1)), c64(cg, KC), "");
  LLVMValueRef kstep = LLVMBuildSDiv(B, add(cg, K, sub(cg, nkb, one)), nkb, "");
  kstep = LLVMBuildAnd(B, add(cg, kstep, c64(cg, KQ - 1)), c64(cg, -(int64_t)KQ), "kstep");
  CgLoop pc = cg_loop_begin(cg, c64(cg, 0), K, kstep);
  LLVMValueRef kc = cg_min_i64(cg, kstep, sub(cg, K, pc.iv));
  LLVMValueRef kp = LLVMBuildAnd(B, add(cg, kc, c64(cg, KQ - 1)), c64(cg, -(int64_t)KQ), "kp");
  LLVMBasicBlockRef brows = LLVMAppendBasicBlockInContext(cg->C, fn, "brows");
  LLVMBasicBlockRef bpanels = LLVMAppendBasicBlockInContext(cg->C, fn, "bpanels");
  LLVMBasicBlockRef bpacked = LLVMAppendBasicBlockInContext(cg->C, fn, "bpacked");
  LLVMBuildCondBr(B, bqc, brows, bpanels);
  LLVMPositionBuilderAtEnd(B, brows);
  pack_b_rows(cg, Bp, p16(cg, Bm, add(cg, mul(cg, pc.iv, brs), jc.iv)), brs, nc, kc, kp);
  LLVMBuildBr(B, bpacked);
  LLVMPositionBuilderAtEnd(B, bpanels);
  {   /* B panels, k contiguous */
    CgLoop l = cg_loop_begin(cg, c64(cg, 0), nc, c64(cg, LP_NR));
    LLVMValueRef ext = cg_min_i64(cg, c64(cg, LP_NR), sub(cg, nc, l.iv));
    LLVMValueRef base = p16(cg, Bm, add(cg, mul(cg, pc.iv, brs), mul(cg, add(cg, jc.iv, l.iv), bcs)));
    pack_b_panel(cg, p16(cg, Bp, mul(cg, l.iv, kp)), base, bcs, ext, kc, kp);
    cg_loop_end(cg, &l);
  }
  LLVMBuildBr(B, bpacked);
  LLVMPositionBuilderAtEnd(B, bpacked);
  CgLoop ic = cg_loop_begin(cg, c64(cg, 0), M, c64(cg, MC));
  LLVMValueRef mc = cg_min_i64(cg, c64(cg, MC), sub(cg, M, ic.iv));
  {   /* A panels */
    CgLoop l = cg_loop_begin(cg, c64(cg, 0), mc, c64(cg, MR));
    LLVMValueRef ext = cg_min_i64(cg, c64(cg, MR), sub(cg, mc, l.iv));
    LLVMValueRef base = p16(cg, A, add(cg, mul(cg, add(cg, ic.iv, l.iv), ars), mul(cg, pc.iv, acs)));
    pack_a_panel(cg, kind, MR, p16(cg, Ap, mul(cg, l.iv, kp)), base, ars, acs, aqc, ext, kc, kp);
    cg_loop_end(cg, &l);
  }
  LLVMValueRef overwrite = LLVMBuildAnd(B, LLVMBuildICmp(B, LLVMIntEQ, pc.iv, c64(cg, 0), ""),
                                        LLVMBuildICmp(B, LLVMIntEQ, P[15], c64(cg, 0), ""), "");
  LLVMValueRef last = LLVMBuildICmp(B, LLVMIntEQ, add(cg, pc.iv, kc), K, "");
  LLVMValueRef doepi = LLVMBuildAnd(B, last, LLVMBuildICmp(B, LLVMIntNE, efn, LLVMConstNull(cg->t_ptr), ""), "");
  CgLoop jr = cg_loop_begin(cg, c64(cg, 0), nc, c64(cg, LP_NR));
  LLVMValueRef nr = cg_min_i64(cg, c64(cg, LP_NR), sub(cg, nc, jr.iv));
  CgLoop ir = cg_loop_begin(cg, c64(cg, 0), mc, c64(cg, MR));
  LLVMValueRef mr = cg_min_i64(cg, c64(cg, MR), sub(cg, mc, ir.iv));
  LLVMValueRef ctile = cg_gep(cg, LLVMFloatTypeInContext(cg->C), Cm,
                              add(cg, mul(cg, add(cg, ic.iv, ir.iv), ldc), add(cg, jc.iv, jr.iv)));
  LLVMValueRef ua[8] = {kp, p16(cg, Ap, mul(cg, ir.iv, kp)), p16(cg, Bp, mul(cg, jr.iv, kp)), ctile, ldc, mr, nr, overwrite};
  LLVMBuildCall2(B, uk_type(cg), uk, ua, 8, "");
  LLVMBasicBlockRef ejoin = cg_if_begin(cg, doepi);
  LLVMTypeRef eargs[5] = {cg->t_ptr, cg->t_ptr, cg->t_i64, cg->t_i64, cg->t_i64};
  LLVMValueRef ea[5] = {ectx, ctile, ldc, mr, nr};
  LLVMBuildCall2(B, LLVMFunctionType(cg->t_void, eargs, 5, 0), efn, ea, 5, "");
  cg_if_end(cg, ejoin);
  cg_loop_end(cg, &ir);
  cg_loop_end(cg, &jr);
  cg_loop_end(cg, &ic);
  cg_loop_end(cg, &pc);
  cg_loop_end(cg, &jc);
  if (kind == K_AMX) amx(cg, "llvm.x86.tilerelease", NULL, 0);
  LLVMBuildRetVoid(B);
  return fn;
}

LLVMValueRef cg_gemm_lowp_core(Cg *cg, CgElem ta, CgElem tb) {
  int kind = -1;
  if (ta == CG_ELEM_BF16 && tb == CG_ELEM_BF16 && cg->W == 16 && cg->esize == 4)
    kind = cg->gemm_bf16 == CG_BF16_AMX ? K_AMX : cg->gemm_bf16 == CG_BF16_DPBF16 ? K_DP : -1;
  if (kind < 0) return cg_gemm_convert_core(cg, ta, tb);
  const char *name = kind == K_AMX ? "bpcc_gemm_core_amx" : "bpcc_gemm_core_dpbf16";
  LLVMValueRef core = LLVMGetNamedFunction(cg->M, name);
  if (core) return core;
  CgAside aside = cg_aside_begin(cg);
  core = build_lowp_core(cg, kind);
  cg_aside_end(cg, aside);
  return core;
}
