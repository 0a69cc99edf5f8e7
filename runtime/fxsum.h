/* runtime/fxsum.h — exact, order-independent sums of f32 arrays (`--deterministic-reduce`).
 *
 * Floating-point addition is not associative, so a gradient summed over micro-batches or
 * ranks in another order (another P, another allreduce algorithm) differs in its last
 * bits. Here each element is instead a 128-bit two's-complement fixed-point integer
 *
 *     value = (hi:lo as a signed 128-bit integer) * 2^-76            (BPRT_FX_FRAC_BITS)
 *
 * Integer addition is associative and commutative, so the sum of the same inputs gives
 * the same bits in any order and any grouping (any number of ranks, any tree). Only two
 * steps round, each once and deterministically: an input w*x is rounded to the grid
 * 2^-76 (round to nearest, ties to even), and the final sum is rounded to f32 (round to
 * nearest, ties to even, from the exact integer).
 *
 * Range, chosen for gradients (docs/distributed.md, "Cost model", says why):
 *   - the grid is 2^-76 (1.3e-23): every f32 (and every product w*x of two f32) of
 *     magnitude 2^-53 (1.1e-16) or more is exact; smaller ones round to the grid;
 *   - a valid element lies in [-2^50, 2^50) (2^50 = 1.1e15); an input w*x of magnitude
 *     2^50 or more, or a partial sum outside that range, turns the element into
 *     "poison" with BPRT_FX_RANGE set;
 *   - NaN and +-Inf inputs turn the element into poison with BPRT_FX_NAN,
 *     BPRT_FX_POS_INF or BPRT_FX_NEG_INF: poison is sticky through additions and
 *     combines (flags OR together), so like the values the flags do not depend on the
 *     order. (One exception, documented: if the total is below 2^50 but some partial sum
 *     reached it, whether RANGE is set depends on the order. This cannot happen while
 *     the sum of the magnitudes of all inputs stays below 2^50.)
 *   - the conversion to f32 never meets a subnormal or an overflow: a nonzero valid
 *     value lies in [2^-76, 2^50), inside f32's normal range [2^-126, 2^128).
 *
 * Representation: a valid element has hi in [-2^62, 2^62) (as int64); poison has
 * hi = 0x8000000000000000 and the flags in lo. The sum of two valid elements never wraps
 * around 2^128, so overflow is a range test on hi, not signed-overflow UB: all the
 * arithmetic is on uint64_t.
 *
 * MPI: an array of BprtFx is an array of a contiguous datatype of 2 x MPI_UINT64_T, and
 * bprt_fxsum_combine is the (commutative) reduction; runtime/fxsum_mpi.c wraps it as an
 * MPI_Op for MPI_Allreduce / MPI_Iallreduce. This file is MPI-free (libc only).
 */
#ifndef BPCC_RUNTIME_FXSUM_H
#define BPCC_RUNTIME_FXSUM_H

#include <stddef.h>
#include <stdint.h>

#define BPRT_FX_FRAC_BITS 76   /* value = integer * 2^-76 */
#define BPRT_FX_RANGE_LOG2 50  /* a valid element lies in [-2^50, 2^50) */

/* One accumulator element: the low and high 64 bits of a two's-complement integer.
 * 16 bytes, no padding, lo first (the same layout on every rank of one cluster). */
typedef struct {
  uint64_t lo, hi;
} BprtFx;

/* Flags of a poisoned element, ORed by additions and combines and returned by the
 * conversion. 0 means every element is finite and in range. */
enum {
  BPRT_FX_POS_INF = 1, /* a +Inf input */
  BPRT_FX_NEG_INF = 2, /* a -Inf input */
  BPRT_FX_NAN = 4,     /* a NaN input */
  BPRT_FX_RANGE = 8,   /* an input of magnitude >= 2^50 or a partial sum out of range */
};

/* acc[i] = 0 for i < n. (All-zero bytes: calloc'd or memset arrays are zero too.) */
void bprt_fxsum_zero(BprtFx *acc, size_t n);

/* acc[i] = q(w * x[i]) for i < n, where q rounds to the grid 2^-76 (ties to even).
 * The product w*x is exact (two f32 multiply exactly in double), so w = 1/N scales by
 * a count with one rounding. w = 1 quantises x itself. Writes without reading acc. */
void bprt_fxsum_set_f32(BprtFx *acc, const float *x, size_t n, float w);

/* acc[i] += q(w * x[i]) for i < n. */
void bprt_fxsum_add_f32(BprtFx *acc, const float *x, size_t n, float w);

/* inout[i] += in[i] for i < n: the reduction operator (commutative and associative,
 * poison included). inout and in may be the same array (doubling). */
void bprt_fxsum_combine(BprtFx *inout, const BprtFx *in, size_t n);

/* out[i] = the f32 nearest acc[i] (ties to even), for i < n. Poison becomes NaN if
 * NAN, or both infinities, or only RANGE is set; else +Inf or -Inf. Returns the OR of
 * the flags of all elements: 0 when every element was finite and in range. */
unsigned bprt_fxsum_to_f32(float *out, const BprtFx *acc, size_t n);

/* The OR of the flags of acc[0..n) (0: all valid), without converting. */
unsigned bprt_fxsum_flags(const BprtFx *acc, size_t n);

/* The flags in words, e.g. "NaN, +Inf, |sum| >= 2^50", into buf (always terminated);
 * returns buf. */
char *bprt_fxsum_describe(unsigned flags, char *buf, size_t size);

/* Single elements, for tests and callers that reduce one value: q(w*x), and the f32
 * nearest an element (flags of poison into *flags when flags is not NULL). */
BprtFx bprt_fx_from_f32(float x, float w);
float bprt_fx_to_f32(BprtFx v, unsigned *flags);

/* The array functions use AVX-512 where the CPU has it (x86-64: F, CD, DQ, VL), with
 * the same results bit for bit. on = 0 forces the scalar code, 1 the vector code if
 * present, -1 the default; returns whether the CPU has it. For tests and benchmarks;
 * not thread-safe against concurrent calls. */
int bprt_fxsum_set_simd(int on);

#endif
