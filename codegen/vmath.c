/* codegen/vmath.c — exp, log, tanh, sigmoid and pow as polynomials in LLVM IR.
 *
 * Generated code may call no library, so the transcendental functions are written out
 * on float or <W x float> values (the same emitter serves both): Cephes' single
 * precision algorithms (Moshier), accurate to about 1-2 ulp over the float range.
 *
 *   exp(x):  n = round(x log2 e), r = x - n ln2 (Cody-Waite, two constants),
 *            exp(r) = 1 + r + r^2 P(r) (degree 5), times 2^n built in the exponent bits
 *   log(x):  x = m 2^e with m in [sqrt(1/2), sqrt(2)), log(1 + f) = f - f^2/2 + f^3 P(f)
 *   tanh(x): |x| < 0.625: x + x^3 P(x^2); else sign(x) (1 - 2 / (exp(2|x|) + 1))
 *   sigmoid: 1 / (1 + exp(-x))
 *   erf, gelu, gelu_tanh and their gradients: below ("erf, GELU")
 * Rounding uses the 1.5 * 2^23 trick instead of llvm.floor, which is a libm call on
 * CPUs without SSE4.1.
 *
 * On double or <W x double> (an f64 model) the same functions follow Cephes' double
 * precision algorithms, accurate to a few ulp (the f32 polynomials would give 1e-7):
 *   exp(x):  n = round(x log2 e) (1.5 * 2^52), r = x - n ln2 (Cody-Waite),
 *            exp(r) = 1 + 2 r P(r^2) / (Q(r^2) - r P(r^2)) (Pade, degrees 2/3), times 2^n
 *   log(x):  x = m 2^e, m in [sqrt(1/2), sqrt(2)), log(1 + f) = f - f^2/2 + f^3 P5(f) / Q5(f)
 *   tanh(x): |x| < 0.625: x + x^3 P2(x^2) / Q3(x^2); else sign(x) (1 - 2 / (exp(2|x|) + 1))
 * written with plain multiplies and adds (llvm.fma would be a libm call without FMA). */
#include <math.h>
#include <string.h>

#include "codegen/cg.h"

static LLVMValueRef K(Cg *cg, LLVMValueRef like, double v) { return cg_fconst(cg, LLVMTypeOf(like), v); }

static LLVMTypeRef int_type_like(Cg *cg, LLVMValueRef x) {
  LLVMTypeRef T = LLVMTypeOf(x);
  return cg_is_vec(T) ? LLVMVectorType(cg->t_i32, LLVMGetVectorSize(T)) : cg->t_i32;
}

static LLVMValueRef IK(Cg *cg, LLVMTypeRef IT, int32_t v) {
  if (LLVMGetTypeKind(IT) != LLVMVectorTypeKind) return cg_i32(cg, v);
  unsigned n = LLVMGetVectorSize(IT);
  LLVMValueRef e[64];
  for (unsigned i = 0; i < n; i++) e[i] = cg_i32(cg, v);
  return LLVMConstVector(e, n);
}

static LLVMValueRef vm_mul(Cg *cg, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildFMul(cg->B, a, b, ""); }
static LLVMValueRef vm_add(Cg *cg, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildFAdd(cg->B, a, b, ""); }
static LLVMValueRef vm_sub(Cg *cg, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildFSub(cg->B, a, b, ""); }
static LLVMValueRef sel(Cg *cg, LLVMValueRef c, LLVMValueRef a, LLVMValueRef b) {
  return LLVMBuildSelect(cg->B, c, a, b, "");
}
static LLVMValueRef fcmp(Cg *cg, LLVMRealPredicate p, LLVMValueRef a, LLVMValueRef b) {
  return LLVMBuildFCmp(cg->B, p, a, b, "");
}
static LLVMValueRef fma3(Cg *cg, LLVMValueRef a, LLVMValueRef b, LLVMValueRef c) {
  LLVMValueRef args[3] = {a, b, c};
  return cg_intrinsic(cg, "llvm.fma", LLVMTypeOf(a), args, 3);
}

/* Horner: c[0] x^(n-1) + ... + c[n-1] */
static LLVMValueRef horner(Cg *cg, LLVMValueRef x, const double *c, int n) {
  LLVMValueRef y = K(cg, x, c[0]);
  for (int i = 1; i < n; i++) y = fma3(cg, y, x, K(cg, x, c[i]));
  return y;
}

/* ------------------------------------------------------------------ double precision */

static bool is_double(Cg *cg, LLVMValueRef x) {
  LLVMTypeRef T = LLVMTypeOf(x);
  return (cg_is_vec(T) ? LLVMGetElementType(T) : T) == cg->t_f64;
}

static LLVMTypeRef i64_type_like(Cg *cg, LLVMValueRef x) {
  LLVMTypeRef T = LLVMTypeOf(x);
  return cg_is_vec(T) ? LLVMVectorType(cg->t_i64, LLVMGetVectorSize(T)) : cg->t_i64;
}

static LLVMValueRef IK64(Cg *cg, LLVMTypeRef IT, int64_t v) {
  if (LLVMGetTypeKind(IT) != LLVMVectorTypeKind) return cg_i64(cg, v);
  unsigned n = LLVMGetVectorSize(IT);
  LLVMValueRef e[64];
  for (unsigned i = 0; i < n; i++) e[i] = cg_i64(cg, v);
  return LLVMConstVector(e, n);
}

/* Horner without fma: c[0] x^(n-1) + ... + c[n-1]; p1 adds a leading 1 (Cephes p1evl). */
static LLVMValueRef horner64(Cg *cg, LLVMValueRef x, const double *c, int n, bool p1) {
  LLVMValueRef y = p1 ? vm_add(cg, x, K(cg, x, c[0])) : K(cg, x, c[0]);
  for (int i = 1; i < n; i++) y = vm_add(cg, vm_mul(cg, y, x), K(cg, x, c[i]));
  return y;
}

/* 2^n (n integral, in [-1075, 1024]) times y, in two halves so that denormal results
 * are rounded once. */
static LLVMValueRef scale2n64(Cg *cg, LLVMValueRef y, LLVMValueRef n) {
  LLVMTypeRef IT = i64_type_like(cg, y);
  LLVMValueRef ni = LLVMBuildFPToSI(cg->B, n, IT, "");
  LLVMValueRef n1 = LLVMBuildAShr(cg->B, ni, IK64(cg, IT, 1), "");
  LLVMValueRef n2 = LLVMBuildSub(cg->B, ni, n1, "");
  LLVMValueRef s1 = LLVMBuildBitCast(cg->B, LLVMBuildShl(cg->B, LLVMBuildAdd(cg->B, n1, IK64(cg, IT, 1023), ""), IK64(cg, IT, 52), ""), LLVMTypeOf(y), "");
  LLVMValueRef s2 = LLVMBuildBitCast(cg->B, LLVMBuildShl(cg->B, LLVMBuildAdd(cg->B, n2, IK64(cg, IT, 1023), ""), IK64(cg, IT, 52), ""), LLVMTypeOf(y), "");
  return vm_mul(cg, vm_mul(cg, y, s1), s2);
}

static LLVMValueRef exp64(Cg *cg, LLVMValueRef x) {
  static const double P[] = {1.26177193074810590878E-4, 3.02994407707441961300E-2, 9.99999999999999999910E-1};
  static const double Q[] = {3.00198505138664455042E-6, 2.52448340349684104192E-3, 2.27265548208155028766E-1,
                             2.00000000000000000009E0};
  LLVMValueRef hi = K(cg, x, 709.782712893383996843), lo = K(cg, x, -745.2);
  LLVMValueRef xc = cg_max_f(cg, lo, x);
  LLVMValueRef args[2] = {xc, hi};
  xc = cg_intrinsic(cg, "llvm.minnum", LLVMTypeOf(x), args, 2);
  LLVMValueRef magic = K(cg, x, 6755399441055744.0);   /* 1.5 * 2^52 */
  LLVMValueRef n = vm_sub(cg, vm_add(cg, vm_mul(cg, xc, K(cg, x, 1.4426950408889634073599)), magic), magic);
  LLVMValueRef r = vm_sub(cg, xc, vm_mul(cg, n, K(cg, x, 6.93145751953125E-1)));
  r = vm_sub(cg, r, vm_mul(cg, n, K(cg, x, 1.42860682030941723212E-6)));
  LLVMValueRef rr = vm_mul(cg, r, r);
  LLVMValueRef px = vm_mul(cg, r, horner64(cg, rr, P, 3, false));
  LLVMValueRef e = LLVMBuildFDiv(cg->B, px, vm_sub(cg, horner64(cg, rr, Q, 4, false), px), "");
  LLVMValueRef y = vm_add(cg, K(cg, x, 1.0), vm_add(cg, e, e));
  y = scale2n64(cg, y, n);
  y = sel(cg, fcmp(cg, LLVMRealOGT, x, hi), K(cg, x, INFINITY), y);
  return sel(cg, fcmp(cg, LLVMRealUNO, x, x), x, y);
}

static LLVMValueRef log64(Cg *cg, LLVMValueRef x) {
  static const double P[] = {1.01875663804580931796E-4, 4.97494994976747001425E-1, 4.70579119878881725854E0,
                             1.44989225341610930846E1, 1.79368678507819816313E1, 7.70838733755885391666E0};
  static const double Q[] = {1.12873587189167450590E1, 4.52279145837532221105E1, 8.29875266912776603211E1,
                             7.11544750618563894466E1, 2.31251620126765340583E1};
  LLVMTypeRef T = LLVMTypeOf(x), IT = i64_type_like(cg, x);
  /* denormals: scale by 2^54 first */
  LLVMValueRef tiny = fcmp(cg, LLVMRealOLT, x, K(cg, x, 2.2250738585072014e-308));
  LLVMValueRef xs = sel(cg, tiny, vm_mul(cg, x, K(cg, x, 18014398509481984.0)), x);
  LLVMValueRef eadj = sel(cg, tiny, K(cg, x, -54.0), K(cg, x, 0.0));
  LLVMValueRef bits = LLVMBuildBitCast(cg->B, xs, IT, "");
  LLVMValueRef ei = LLVMBuildSub(cg->B, LLVMBuildAnd(cg->B, LLVMBuildLShr(cg->B, bits, IK64(cg, IT, 52), ""), IK64(cg, IT, 0x7ff), ""),
                                 IK64(cg, IT, 1022), "");
  LLVMValueRef mb = LLVMBuildOr(cg->B, LLVMBuildAnd(cg->B, bits, IK64(cg, IT, (int64_t)0x800fffffffffffffull), ""),
                                IK64(cg, IT, 0x3fe0000000000000ll), "");
  LLVMValueRef m = LLVMBuildBitCast(cg->B, mb, T, "");           /* [0.5, 1) */
  LLVMValueRef e = vm_add(cg, LLVMBuildSIToFP(cg->B, ei, T, ""), eadj);
  LLVMValueRef small = fcmp(cg, LLVMRealOLT, m, K(cg, x, 0.70710678118654752440));
  e = sel(cg, small, vm_sub(cg, e, K(cg, x, 1.0)), e);
  LLVMValueRef f = sel(cg, small, vm_sub(cg, vm_add(cg, m, m), K(cg, x, 1.0)), vm_sub(cg, m, K(cg, x, 1.0)));
  LLVMValueRef z = vm_mul(cg, f, f);
  LLVMValueRef y = vm_mul(cg, f, LLVMBuildFDiv(cg->B, vm_mul(cg, z, horner64(cg, f, P, 6, false)), horner64(cg, f, Q, 5, true), ""));
  y = vm_sub(cg, y, vm_mul(cg, e, K(cg, x, 2.121944400546905827679e-4)));
  y = vm_sub(cg, y, vm_mul(cg, z, K(cg, x, 0.5)));
  LLVMValueRef r = vm_add(cg, f, y);
  r = vm_add(cg, r, vm_mul(cg, e, K(cg, x, 0.693359375)));
  r = sel(cg, fcmp(cg, LLVMRealOEQ, x, K(cg, x, 0.0)), K(cg, x, -INFINITY), r);
  r = sel(cg, fcmp(cg, LLVMRealOLT, x, K(cg, x, 0.0)), K(cg, x, NAN), r);
  r = sel(cg, fcmp(cg, LLVMRealOEQ, x, K(cg, x, INFINITY)), x, r);
  return sel(cg, fcmp(cg, LLVMRealUNO, x, x), x, r);
}

static LLVMValueRef tanh64(Cg *cg, LLVMValueRef x) {
  static const double P[] = {-9.64399179425052238628E-1, -9.92877231001918586564E1, -1.61468768441708447952E3};
  static const double Q[] = {1.12811678491632931402E2, 2.23548839060100448583E3, 4.84406305325125486048E3};
  LLVMValueRef ax = cg_intrinsic(cg, "llvm.fabs", LLVMTypeOf(x), &x, 1);
  LLVMValueRef z = vm_mul(cg, x, x);
  LLVMValueRef ys = vm_add(cg, x, vm_mul(cg, vm_mul(cg, x, z), LLVMBuildFDiv(cg->B, horner64(cg, z, P, 3, false), horner64(cg, z, Q, 3, true), "")));
  LLVMValueRef e = exp64(cg, vm_add(cg, ax, ax));
  LLVMValueRef yl = vm_sub(cg, K(cg, x, 1.0), LLVMBuildFDiv(cg->B, K(cg, x, 2.0), vm_add(cg, e, K(cg, x, 1.0)), ""));
  LLVMValueRef sargs[2] = {yl, x};
  yl = cg_intrinsic(cg, "llvm.copysign", LLVMTypeOf(x), sargs, 2);
  return sel(cg, fcmp(cg, LLVMRealOLT, ax, K(cg, x, 0.625)), ys, yl);
}

/* ------------------------------------------------------------------ single precision */

LLVMValueRef cg_exp(Cg *cg, LLVMValueRef x) {
  if (is_double(cg, x)) return exp64(cg, x);
  static const double P[] = {1.9875691500E-4, 1.3981999507E-3, 8.3334519073E-3,
                             4.1665795894E-2, 1.6666665459E-1, 5.0000001201E-1};
  LLVMTypeRef IT = int_type_like(cg, x);
  LLVMValueRef hi = K(cg, x, 88.72283935546875), lo = K(cg, x, -103.97208);
  LLVMValueRef xc = cg_max_f(cg, lo, x);
  LLVMValueRef args[2] = {xc, hi};
  xc = cg_intrinsic(cg, "llvm.minnum", LLVMTypeOf(x), args, 2);
  /* n = round(x / ln2) */
  LLVMValueRef magic = K(cg, x, 12582912.0);
  LLVMValueRef t = vm_add(cg, vm_mul(cg, xc, K(cg, x, 1.44269504088896341)), magic);
  LLVMValueRef n = vm_sub(cg, t, magic);
  LLVMValueRef r = vm_sub(cg, xc, vm_mul(cg, n, K(cg, x, 0.693359375)));
  r = vm_sub(cg, r, vm_mul(cg, n, K(cg, x, -2.12194440e-4)));
  LLVMValueRef r2 = vm_mul(cg, r, r);
  LLVMValueRef y = fma3(cg, horner(cg, r, P, 6), r2, vm_add(cg, r, K(cg, x, 1.0)));
  /* 2^n in two halves so that n down to -150 still scales into the denormals */
  LLVMValueRef ni = LLVMBuildFPToSI(cg->B, n, IT, "");
  LLVMValueRef n1 = LLVMBuildAShr(cg->B, ni, IK(cg, IT, 1), "");
  LLVMValueRef n2 = LLVMBuildSub(cg->B, ni, n1, "");
  LLVMValueRef s1 = LLVMBuildBitCast(cg->B, LLVMBuildShl(cg->B, LLVMBuildAdd(cg->B, n1, IK(cg, IT, 127), ""), IK(cg, IT, 23), ""), LLVMTypeOf(x), "");
  LLVMValueRef s2 = LLVMBuildBitCast(cg->B, LLVMBuildShl(cg->B, LLVMBuildAdd(cg->B, n2, IK(cg, IT, 127), ""), IK(cg, IT, 23), ""), LLVMTypeOf(x), "");
  y = vm_mul(cg, vm_mul(cg, y, s1), s2);
  /* overflow to +inf, NaN stays NaN */
  y = sel(cg, fcmp(cg, LLVMRealOGT, x, hi), K(cg, x, INFINITY), y);
  y = sel(cg, fcmp(cg, LLVMRealUNO, x, x), x, y);
  return y;
}

LLVMValueRef cg_log(Cg *cg, LLVMValueRef x) {
  if (is_double(cg, x)) return log64(cg, x);
  static const double P[] = {7.0376836292E-2, -1.1514610310E-1, 1.1676998740E-1,
                             -1.2420140846E-1, 1.4249322787E-1, -1.6668057665E-1,
                             2.0000714765E-1, -2.4999993993E-1, 3.3333331174E-1};
  LLVMTypeRef T = LLVMTypeOf(x), IT = int_type_like(cg, x);
  /* denormals: scale by 2^25 first */
  LLVMValueRef tiny = fcmp(cg, LLVMRealOLT, x, K(cg, x, 1.17549435e-38));
  LLVMValueRef xs = sel(cg, tiny, vm_mul(cg, x, K(cg, x, 33554432.0)), x);
  LLVMValueRef eadj = sel(cg, tiny, K(cg, x, -25.0), K(cg, x, 0.0));
  LLVMValueRef bits = LLVMBuildBitCast(cg->B, xs, IT, "");
  LLVMValueRef ei = LLVMBuildSub(cg->B, LLVMBuildAnd(cg->B, LLVMBuildLShr(cg->B, bits, IK(cg, IT, 23), ""), IK(cg, IT, 0xff), ""), IK(cg, IT, 126), "");
  LLVMValueRef mb = LLVMBuildOr(cg->B, LLVMBuildAnd(cg->B, bits, IK(cg, IT, (int32_t)0x807fffff), ""), IK(cg, IT, 0x3f000000), "");
  LLVMValueRef m = LLVMBuildBitCast(cg->B, mb, T, "");           /* [0.5, 1) */
  LLVMValueRef e = vm_add(cg, LLVMBuildSIToFP(cg->B, ei, T, ""), eadj);
  LLVMValueRef small = fcmp(cg, LLVMRealOLT, m, K(cg, x, 0.707106781186547524));
  e = sel(cg, small, vm_sub(cg, e, K(cg, x, 1.0)), e);
  LLVMValueRef f = sel(cg, small, vm_sub(cg, vm_add(cg, m, m), K(cg, x, 1.0)), vm_sub(cg, m, K(cg, x, 1.0)));
  LLVMValueRef z = vm_mul(cg, f, f);
  LLVMValueRef y = vm_mul(cg, vm_mul(cg, horner(cg, f, P, 9), f), z);
  y = vm_add(cg, y, vm_mul(cg, e, K(cg, x, -2.12194440e-4)));
  y = vm_sub(cg, y, vm_mul(cg, z, K(cg, x, 0.5)));
  LLVMValueRef r = vm_add(cg, f, y);
  r = vm_add(cg, r, vm_mul(cg, e, K(cg, x, 0.693359375)));
  /* log(0) = -inf, log(<0) = NaN, log(inf) = inf, NaN stays NaN */
  r = sel(cg, fcmp(cg, LLVMRealOEQ, x, K(cg, x, 0.0)), K(cg, x, -INFINITY), r);
  r = sel(cg, fcmp(cg, LLVMRealOLT, x, K(cg, x, 0.0)), K(cg, x, NAN), r);
  r = sel(cg, fcmp(cg, LLVMRealOEQ, x, K(cg, x, INFINITY)), x, r);
  r = sel(cg, fcmp(cg, LLVMRealUNO, x, x), x, r);
  return r;
}

LLVMValueRef cg_tanh(Cg *cg, LLVMValueRef x) {
  if (is_double(cg, x)) return tanh64(cg, x);
  static const double P[] = {-5.70498872745E-3, 2.06390887954E-2, -5.37397155531E-2,
                             1.33314422036E-1, -3.33332819422E-1};
  LLVMValueRef ax = cg_intrinsic(cg, "llvm.fabs", LLVMTypeOf(x), &x, 1);
  /* small: x + x^3 P(x^2) */
  LLVMValueRef z = vm_mul(cg, x, x);
  LLVMValueRef ys = fma3(cg, vm_mul(cg, horner(cg, z, P, 5), z), x, x);
  /* large: 1 - 2 / (exp(2|x|) + 1), with the sign of x */
  LLVMValueRef e = cg_exp(cg, vm_add(cg, ax, ax));
  LLVMValueRef yl = vm_sub(cg, K(cg, x, 1.0), LLVMBuildFDiv(cg->B, K(cg, x, 2.0), vm_add(cg, e, K(cg, x, 1.0)), ""));
  LLVMValueRef sargs[2] = {yl, x};
  yl = cg_intrinsic(cg, "llvm.copysign", LLVMTypeOf(x), sargs, 2);
  return sel(cg, fcmp(cg, LLVMRealOLT, ax, K(cg, x, 0.625)), ys, yl);
}

LLVMValueRef cg_sigmoid(Cg *cg, LLVMValueRef x) {
  LLVMValueRef e = cg_exp(cg, LLVMBuildFNeg(cg->B, x, ""));
  return LLVMBuildFDiv(cg->B, K(cg, x, 1.0), vm_add(cg, K(cg, x, 1.0), e), "");
}

/* ------------------------------------------------------------------ erf, GELU */

/* erf and the normal CDF Phi, by two fits made for bpcc (least squares on Chebyshev
 * nodes, refined towards minimax, against mpmath at 40 digits):
 *   |z| < 1:  erf(z) = z P(z^2)                                 (f32: degree 6, 1.2e-9)
 *   |z| >= 1: erfc(|z|) = exp(-z^2) Q(1/|z| - 0.55)             (f32: degree 11, 1.2e-8)
 * Q is erfcx (the scaled erfc exp(z^2) erfc(z)) over z in [1, 10], in the variable
 * 1/z centred on the interval, where its coefficients are small and Horner's rule
 * keeps its rounding error to a few ulp. exp(-z^2) takes the rounding error of z^2
 * back through a second term (z^2 = hi + lo exactly: fma, or Dekker's product in
 * double), since exp(-hi) alone would be off by z^2 ulp (80 ulp at z = 9). f64 models
 * use degree 11 and 25 fits. Beyond z = 10 Q stays at erfcx(10): the tail is below
 * 2e-45 there (0 in f32). Measured against libm's erf (tests/codegen/test_cg_seq.c):
 * at most 0.995 ulp in f32, 2.2e-16 relative in f64.
 *   erf(x)      = small branch, or sign(x) (1 - erfc(|x|))
 *   Phi(x)      = (1 + erf(x / sqrt 2)) / 2, the tail branch as erfc(|x| / sqrt 2) / 2
 *                 for x < 0 directly: Phi(-5) = 2.9e-7 keeps its relative accuracy
 *                 (1 + erf(z) in f32 would cancel to nothing).
 *   gelu(x)     = x Phi(x);   gelu_grad(x, dy) = dy (Phi(x) + x phi(x)),
 *                 phi(x) = exp(-x^2 / 2) / sqrt(2 pi) (the tail's exponential reused)
 *   gelu_tanh(x) = x (1 + tanh u) / 2 = x / (1 + exp(-2u)), u = c (x + a x^3), one exp;
 *   gelu_tanh_grad = dy (s + 2 x s (1 - s) c (1 + 3 a x^2)), s = 1 / (1 + exp(-2u)):
 *                 (1 + t) / 2 = s and (1 - t^2) = 4 s (1 - s) with t = tanh u, so no
 *                 1 + t cancels for large negative u, and 1 - s = exp(-2u) s none for
 *                 large positive u. */
static const double ERF_SMALL32[7] = {7.852726620832805e-05, -0.000800984912765812, 0.0051882883582131025,
                                      -0.02685379116356504, 0.11283584649950709, -0.37612625780073333,
                                      1.1283791657202795};
static const double ERFCX_BIG32[12] = {-0.007504605842083027, -0.05182433086451903, 0.06671688652715388,
                                       -0.017871740948882713, -0.02635388960556395, 0.05672775224488516,
                                       -0.06925405418428773, 0.044984508060202606, 0.033722641782457395,
                                       -0.18123507545447973, 0.4088341977747515, 0.2762943826334319};
static const double ERF_SMALL64[12] = {-7.795898827002142e-10, 1.3720064546777686e-08, -1.6208483801871705e-07, 1.6447424703317362e-06, -1.492473690741966e-05, 0.00012055294904839707, -0.0008548325975389692, 0.0052239776071164225, -0.02686617064323777, 0.11283791670945006, -0.37612638903183543, 1.1283791670955126};
static const double ERFCX_BIG64[26] = {-0.9420293468755692, 1.0698602212447201, 0.3536500408146215, -0.8580052149883262, 0.24719036262655228, 0.01590920801117349, 0.06390490011413139, -0.028953564450626888, -0.06284571788426453, 0.09772774468453611, -0.08881619664368606, 0.05938037711066523, -0.019122554210807566, -0.02063459064945167, 0.04855245586169649, -0.05735101065502404, 0.04508040329868736, -0.015394191825873453, -0.02281926861446096, 0.056435144633887394, -0.06952405841014948, 0.04499742890564244, 0.033731372498509105, -0.18123524624055984, 0.4088341170359598, 0.2762943828403371};

static LLVMValueRef poly(Cg *cg, LLVMValueRef x, const double *c32, int n32, const double *c64, int n64) {
  return is_double(cg, x) ? horner64(cg, x, c64, n64, false) : horner(cg, x, c32, n32);
}

/* exp(-s x^2) for s = 1 or 1/2 (exact scalings), with x^2 = hi + lo split exactly */
static LLVMValueRef exp_neg_sq(Cg *cg, LLVMValueRef x, double s) {
  LLVMValueRef hi = vm_mul(cg, x, x), lo;
  if (is_double(cg, x)) {   /* Dekker: x = xh + xl with 26-bit halves */
    LLVMValueRef c = vm_mul(cg, x, K(cg, x, 134217729.0));
    LLVMValueRef xh = vm_sub(cg, c, vm_sub(cg, c, x)), xl = vm_sub(cg, x, xh);
    lo = vm_add(cg, vm_add(cg, vm_sub(cg, vm_mul(cg, xh, xh), hi), vm_mul(cg, K(cg, x, 2.0), vm_mul(cg, xh, xl))),
                vm_mul(cg, xl, xl));
  } else {
    lo = fma3(cg, x, x, LLVMBuildFNeg(cg->B, hi, ""));
  }
  lo = sel(cg, fcmp(cg, LLVMRealOLT, hi, K(cg, x, INFINITY)), lo, K(cg, x, 0.0));   /* x = +-inf: lo is NaN */
  LLVMValueRef e = cg_exp(cg, LLVMBuildFNeg(cg->B, vm_mul(cg, hi, K(cg, x, s)), ""));
  return vm_mul(cg, e, vm_sub(cg, K(cg, x, 1.0), vm_mul(cg, lo, K(cg, x, s))));
}

/* erfc(|z|) / exp(-z^2) for |z| >= 1 (az = |z|, clamped to [1, 10] here) */
static LLVMValueRef erfcx_tail(Cg *cg, LLVMValueRef az) {
  LLVMValueRef args[2] = {az, K(cg, az, 10.0)};
  LLVMValueRef a = cg_intrinsic(cg, "llvm.minnum", LLVMTypeOf(az), args, 2);
  a = cg_max_f(cg, a, K(cg, az, 1.0));
  LLVMValueRef t = vm_sub(cg, LLVMBuildFDiv(cg->B, K(cg, az, 1.0), a, ""), K(cg, az, 0.55));
  return poly(cg, t, ERFCX_BIG32, 12, ERFCX_BIG64, 26);
}

/* erf(z) = z + z (P(z^2) - 1) for |z| < 1: P is near 1.13, where an f32 ulp is twice
 * the result's relative ulp below 0.5; the difference z (P - 1) carries its rounding
 * at an eighth of the weight */
static LLVMValueRef erf_small(Cg *cg, LLVMValueRef z) {
  double c32[7], c64[12];
  memcpy(c32, ERF_SMALL32, sizeof c32);
  memcpy(c64, ERF_SMALL64, sizeof c64);
  c32[6] -= 1.0, c64[11] -= 1.0;
  LLVMValueRef pm = poly(cg, vm_mul(cg, z, z), c32, 7, c64, 12);
  return is_double(cg, z) ? vm_add(cg, z, vm_mul(cg, z, pm)) : fma3(cg, z, pm, z);
}

LLVMValueRef cg_erf(Cg *cg, LLVMValueRef x) {
  LLVMValueRef ax = cg_intrinsic(cg, "llvm.fabs", LLVMTypeOf(x), &x, 1);
  LLVMValueRef small = erf_small(cg, x);
  LLVMValueRef big = vm_sub(cg, K(cg, x, 1.0), vm_mul(cg, exp_neg_sq(cg, ax, 1.0), erfcx_tail(cg, ax)));
  LLVMValueRef sargs[2] = {big, x};
  big = cg_intrinsic(cg, "llvm.copysign", LLVMTypeOf(x), sargs, 2);
  return sel(cg, fcmp(cg, LLVMRealOLT, ax, K(cg, x, 1.0)), small, big);
}

/* Phi(x), and exp(-x^2 / 2) through *e when e is not NULL */
static LLVMValueRef normal_cdf(Cg *cg, LLVMValueRef x, LLVMValueRef *e) {
  LLVMValueRef ax = cg_intrinsic(cg, "llvm.fabs", LLVMTypeOf(x), &x, 1);
  LLVMValueRef z = vm_mul(cg, x, K(cg, x, 0.70710678118654752440));
  LLVMValueRef small = vm_add(cg, K(cg, x, 0.5), vm_mul(cg, erf_small(cg, z), K(cg, x, 0.5)));
  LLVMValueRef ex = exp_neg_sq(cg, x, 0.5);
  LLVMValueRef tail = vm_mul(cg, vm_mul(cg, ex, K(cg, x, 0.5)), erfcx_tail(cg, vm_mul(cg, ax, K(cg, x, 0.70710678118654752440))));
  LLVMValueRef big = sel(cg, fcmp(cg, LLVMRealOLT, x, K(cg, x, 0.0)), tail, vm_sub(cg, K(cg, x, 1.0), tail));
  if (e) *e = ex;
  return sel(cg, fcmp(cg, LLVMRealOLT, ax, K(cg, x, 1.41421356237309504880)), small, big);
}

LLVMValueRef cg_gelu(Cg *cg, LLVMValueRef x) { return vm_mul(cg, x, normal_cdf(cg, x, NULL)); }

LLVMValueRef cg_gelu_grad(Cg *cg, LLVMValueRef x, LLVMValueRef dy) {
  LLVMValueRef e;
  LLVMValueRef p = normal_cdf(cg, x, &e);
  LLVMValueRef d = vm_add(cg, p, vm_mul(cg, x, vm_mul(cg, e, K(cg, x, 0.3989422804014327))));
  return vm_mul(cg, dy, d);
}

/* s = 1 / (1 + exp(-2u)), u = c (x + a x^3); *oms = 1 - s = exp(-2u) s (no
 * cancellation as s nears 1; 1 where exp(-2u) overflows) */
static LLVMValueRef gelu_tanh_s(Cg *cg, LLVMValueRef x, LLVMValueRef *oms) {
  LLVMValueRef x2 = vm_mul(cg, x, x);
  LLVMValueRef u = vm_mul(cg, vm_mul(cg, x, K(cg, x, 0.7978845608028654)), vm_add(cg, K(cg, x, 1.0), vm_mul(cg, x2, K(cg, x, 0.044715))));
  LLVMValueRef e = cg_exp(cg, vm_mul(cg, u, K(cg, x, -2.0)));
  LLVMValueRef s = LLVMBuildFDiv(cg->B, K(cg, x, 1.0), vm_add(cg, K(cg, x, 1.0), e), "");
  if (oms) *oms = sel(cg, fcmp(cg, LLVMRealOLT, e, K(cg, x, 1e30)), vm_mul(cg, e, s), K(cg, x, 1.0));
  return s;
}

LLVMValueRef cg_gelu_tanh(Cg *cg, LLVMValueRef x) { return vm_mul(cg, x, gelu_tanh_s(cg, x, NULL)); }

LLVMValueRef cg_gelu_tanh_grad(Cg *cg, LLVMValueRef x, LLVMValueRef dy) {
  LLVMValueRef oms;
  LLVMValueRef s = gelu_tanh_s(cg, x, &oms);
  LLVMValueRef x2 = vm_mul(cg, x, x);
  LLVMValueRef du = vm_mul(cg, K(cg, x, 2.0 * 0.7978845608028654), vm_add(cg, K(cg, x, 1.0), vm_mul(cg, x2, K(cg, x, 3.0 * 0.044715))));
  LLVMValueRef d = vm_add(cg, s, vm_mul(cg, vm_mul(cg, x, du), vm_mul(cg, s, oms)));
  return vm_mul(cg, dy, d);
}

/* x^p for a constant p: small integers by multiplication, halves through sqrt, the
 * rest as exp(p log x) (NaN for x < 0, as pow). */
LLVMValueRef cg_pow_const(Cg *cg, LLVMValueRef x, double p) {
  if (p == 0) return K(cg, x, 1.0);
  if (p == 0.5) return cg_intrinsic(cg, "llvm.sqrt", LLVMTypeOf(x), &x, 1);
  if (p == -0.5) return LLVMBuildFDiv(cg->B, K(cg, x, 1.0), cg_intrinsic(cg, "llvm.sqrt", LLVMTypeOf(x), &x, 1), "");
  if (p == floor(p) && fabs(p) <= 64) {
    int n = (int)fabs(p);
    LLVMValueRef r = NULL, b = x;
    while (n) {        /* square and multiply */
      if (n & 1) r = r ? vm_mul(cg, r, b) : b;
      n >>= 1;
      if (n) b = vm_mul(cg, b, b);
    }
    return p < 0 ? LLVMBuildFDiv(cg->B, K(cg, x, 1.0), r, "") : r;
  }
  return cg_exp(cg, vm_mul(cg, K(cg, x, p), cg_log(cg, x)));
}

/* ------------------------------------------------------------------ Philox4x32-10 */

/* Random123's philox4x32 with 10 rounds (runtime/rng.c does the same in C):
 *   (hi0, lo0) = M0 c0;  (hi1, lo1) = M1 c2
 *   c' = { hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0 };  k += (W0, W1) between rounds
 * counter = {block lo, block hi, stream lo, stream hi}, key = {seed lo, seed hi}. */
void cg_philox(Cg *cg, LLVMValueRef block, LLVMValueRef stream, LLVMValueRef seed, LLVMValueRef out[4]) {
  LLVMBuilderRef B = cg->B;
  LLVMValueRef c32 = cg_i64(cg, 32);
  LLVMValueRef c0 = LLVMBuildTrunc(B, block, cg->t_i32, ""), c1 = LLVMBuildTrunc(B, LLVMBuildLShr(B, block, c32, ""), cg->t_i32, "");
  LLVMValueRef c2 = LLVMBuildTrunc(B, stream, cg->t_i32, ""), c3 = LLVMBuildTrunc(B, LLVMBuildLShr(B, stream, c32, ""), cg->t_i32, "");
  LLVMValueRef k0 = LLVMBuildTrunc(B, seed, cg->t_i32, ""), k1 = LLVMBuildTrunc(B, LLVMBuildLShr(B, seed, c32, ""), cg->t_i32, "");
  LLVMValueRef M0 = LLVMConstInt(cg->t_i64, 0xD2511F53u, 0), M1 = LLVMConstInt(cg->t_i64, 0xCD9E8D57u, 0);
  for (int round = 0; round < 10; round++) {
    if (round > 0) {
      k0 = LLVMBuildAdd(B, k0, LLVMConstInt(cg->t_i32, 0x9E3779B9u, 0), "");
      k1 = LLVMBuildAdd(B, k1, LLVMConstInt(cg->t_i32, 0xBB67AE85u, 0), "");
    }
    LLVMValueRef p0 = LLVMBuildMul(B, M0, LLVMBuildZExt(B, c0, cg->t_i64, ""), "");
    LLVMValueRef p1 = LLVMBuildMul(B, M1, LLVMBuildZExt(B, c2, cg->t_i64, ""), "");
    LLVMValueRef hi0 = LLVMBuildTrunc(B, LLVMBuildLShr(B, p0, c32, ""), cg->t_i32, "");
    LLVMValueRef hi1 = LLVMBuildTrunc(B, LLVMBuildLShr(B, p1, c32, ""), cg->t_i32, "");
    LLVMValueRef n0 = LLVMBuildXor(B, LLVMBuildXor(B, hi1, c1, ""), k0, "");
    LLVMValueRef n1 = LLVMBuildTrunc(B, p1, cg->t_i32, "");
    LLVMValueRef n2 = LLVMBuildXor(B, LLVMBuildXor(B, hi0, c3, ""), k1, "");
    LLVMValueRef n3 = LLVMBuildTrunc(B, p0, cg->t_i32, "");
    c0 = n0, c1 = n1, c2 = n2, c3 = n3;
  }
  out[0] = c0, out[1] = c1, out[2] = c2, out[3] = c3;
}
