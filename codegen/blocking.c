/* codegen/blocking.c — the f32 GEMM's blocking for the CPU the code is compiled for.
 *
 * The packed product (gemm.c) has five sizes: the register tile MR x NR (C's tile in
 * vector registers), KC (the depth of a packed block: a B micro-panel KC x NR is what
 * the micro-kernel streams from L1 while it walks the A panels), MC (the rows of a
 * packed A block, MC x KC, kept in L2) and NC (the columns of a packed B block, KC x NC,
 * in L3). With -march=native they come from the host as CPUID reports it:
 *
 *   - the vendor and family (leaf 0, leaf 1): AMD family 0x19 with AVX-512 is Zen 4,
 *     whose 512-bit FMAs are double-pumped (two 256-bit halves, one 512-bit FMA per
 *     cycle); family 0x1a (Zen 5) and Intel's AVX-512 parts execute them full width
 *     (two per cycle);
 *   - the per-core L1d and L2 (Intel leaf 4, AMD leaf 0x8000001D, or AMD's older
 *     0x80000005 / 0x80000006).
 *
 * The rules (docs/codegen.md, "The GEMM's blocking"):
 *   - MR x NR: 12 x 2W with AVX-512 (24 of the 32 zmm accumulate; per k, 2 vector loads
 *     of B and 12 broadcasts of A feed 24 FMAs: 14 loads in the 12 cycles that 24 FMAs
 *     take at two a cycle, inside the two 512-bit loads a cycle of these cores), 6 x 2W
 *     with AVX2 (12 of 16 ymm), 4 x 4 scalar;
 *   - double-pumped 512-bit FMAs (Zen 4): KC 256, MC 144, NC 2048, the values measured
 *     best on Zen 4 (kept as they are);
 *   - full-width 512-bit FMAs: KC such that the B micro-panel, which the micro-kernel
 *     reuses for every A panel of a block, fills two thirds of L1d (48 KiB: KC 256, 32
 *     KiB of B beside a 12 KiB A micro-panel; 32 KiB: KC 160), a multiple of 32 (the
 *     16-bit cores of gemm_lowp.c step K in 32s) in [128, 512]. MC stays 144: the
 *     textbook rule (the A block in half of L2: MC 1020 for 2 MiB) was measured slower
 *     on the Intel Xeon of 2026-12-07 (the micro-kernel loops on 1020 x 1024 x 128 with
 *     packed operands: 70% of the core's peak against 79-84% with MC 144), because the
 *     micro-kernel walks C down a column of MC rows for each B micro-panel, MC / MR
 *     tiles a row stride (4 KiB for N = 1024) apart: a column of 1020 rows does not
 *     stay in L1. NC 2048;
 *   - any other target (-march other than native, no AVX-512, CPUID not readable): the
 *     conservative defaults, Zen 4's.
 * `bpcc bench` prints the result (its `blocking` line). */
#include <stdio.h>
#include <string.h>

#include "codegen/cg.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#define HAVE_CPUID 1
#endif

typedef struct {
  char vendor[13];
  int family, model;     /* display family and model */
  int l1d_kib, l2_kib;
} HostCpu;

#ifdef HAVE_CPUID
/* Walk a deterministic cache leaf (Intel 4, AMD 0x8000001D): EAX[4:0] the type (1 data,
 * 3 unified, 0 the end), EAX[7:5] the level; size = ways x partitions x line x sets. */
static void cache_leaf(unsigned leaf, HostCpu *h) {
  for (unsigned sub = 0; sub < 16; sub++) {
    unsigned a, b, c, d;
    __cpuid_count(leaf, sub, a, b, c, d);
    unsigned type = a & 31, level = (a >> 5) & 7;
    if (type == 0) break;
    long size = (long)((b >> 22) + 1) * (((b >> 12) & 1023) + 1) * ((b & 4095) + 1) * ((long)c + 1);
    if (level == 1 && type == 1) h->l1d_kib = (int)(size / 1024);
    if (level == 2 && (type == 3 || type == 1)) h->l2_kib = (int)(size / 1024);
  }
}

static bool read_cpu(HostCpu *h) {
  unsigned a, b, c, d;
  memset(h, 0, sizeof *h);
  if (!__get_cpuid(0, &a, &b, &c, &d)) return false;
  unsigned maxleaf = a;
  memcpy(h->vendor, &b, 4), memcpy(h->vendor + 4, &d, 4), memcpy(h->vendor + 8, &c, 4);
  __get_cpuid(1, &a, &b, &c, &d);
  int base = (int)((a >> 8) & 15), fam = base, mod = (int)((a >> 4) & 15);
  if (base == 15) fam += (int)((a >> 20) & 255);
  if (base == 6 || base == 15) mod += (int)((a >> 12) & 0xf0);
  h->family = fam, h->model = mod;
  bool amd = strcmp(h->vendor, "AuthenticAMD") == 0 || strcmp(h->vendor, "HygonGenuine") == 0;
  if (amd) {
    unsigned ext = __get_cpuid_max(0x80000000u, NULL);
    unsigned topo = 0;
    if (ext >= 0x80000001u) {
      __get_cpuid(0x80000001u, &a, &b, &c, &d);
      topo = (c >> 22) & 1;   /* TopologyExtensions: leaf 0x8000001D */
    }
    if (topo && ext >= 0x8000001Du) cache_leaf(0x8000001Du, h);
    if (!h->l1d_kib && ext >= 0x80000005u) {
      __get_cpuid(0x80000005u, &a, &b, &c, &d);
      h->l1d_kib = (int)(c >> 24);
    }
    if (!h->l2_kib && ext >= 0x80000006u) {
      __get_cpuid(0x80000006u, &a, &b, &c, &d);
      h->l2_kib = (int)(c >> 16);
    }
  } else if (maxleaf >= 4) {
    cache_leaf(4, h);
  }
  return true;
}
#endif

static int clampi(int x, int lo, int hi) { return x < lo ? lo : x > hi ? hi : x; }

void cg_blocking_rule(const char *vendor, int family, int model, int l1d_kib, int l2_kib, int lanes, CgBlocking *b) {
  bool amd = strcmp(vendor, "AuthenticAMD") == 0, intel = strcmp(vendor, "GenuineIntel") == 0;
  b->l1d_kib = l1d_kib, b->l2_kib = l2_kib;
  /* with AVX-512, AMD family 0x19 is Zen 4 and 0x1a Zen 5 (Zen 3, also 0x19, has none) */
  const char *gen = lanes == 16 && amd ? (family == 0x19 ? " (Zen 4)" : family == 0x1a ? " (Zen 5)" : "") : "";
  snprintf(b->cpu, sizeof b->cpu, "%s family 0x%x model 0x%x%s", amd ? "AMD" : intel ? "Intel" : vendor, family, model,
           gen);
  if (lanes != 16) {
    b->fma512 = 0;
    snprintf(b->why, sizeof b->why, "%d f32 lanes (no AVX-512): the defaults", lanes);
    return;
  }
  b->fma512 = amd && family == 0x19 ? 1 : amd && family >= 0x1a ? 2 : intel ? 2 : 0;
  if (b->fma512 == 1) {
    snprintf(b->why, sizeof b->why, "double-pumped 512-bit FMAs (Zen 4): the blocking measured on Zen 4");
    return;
  }
  if (b->fma512 == 0 || l1d_kib <= 0 || l2_kib <= 0) {
    snprintf(b->why, sizeof b->why, "AVX-512 of unknown FMA width or caches: the defaults");
    return;
  }
  /* full width: the B micro-panel in 2/3 of L1d; MC and NC as on Zen 4 */
  b->kc = clampi(l1d_kib * 1024 * 2 / 3 / (b->nr * 4) / 32 * 32, 128, 512);
  snprintf(b->why, sizeof b->why, "full-width 512-bit FMAs: KC from L1d (the B micro-panel in 2/3 of it), MC 144");
}

void cg_blocking_for(const char *march, int lanes, CgBlocking *b) {
  memset(b, 0, sizeof *b);
  if (lanes < 1) lanes = 1;
  b->nr = lanes == 1 ? 4 : 2 * lanes;
  b->mr = lanes == 16 ? 12 : lanes == 1 ? 4 : 6;
  b->kc = CG_GEMM_KC, b->mc = CG_GEMM_MC, b->nc = CG_GEMM_NC;
  bool native = !march || strcmp(march, "native") == 0;
  if (!native) {
    snprintf(b->cpu, sizeof b->cpu, "-march=%s", march);
    snprintf(b->why, sizeof b->why, "not the host (-march=%s): the defaults", march);
    return;
  }
#ifdef HAVE_CPUID
  HostCpu h;
  if (!read_cpu(&h)) {
    snprintf(b->cpu, sizeof b->cpu, "unknown");
    snprintf(b->why, sizeof b->why, "CPUID not readable: the defaults");
    return;
  }
  cg_blocking_rule(h.vendor, h.family, h.model, h.l1d_kib, h.l2_kib, lanes, b);
#else
  snprintf(b->cpu, sizeof b->cpu, "not x86");
  snprintf(b->why, sizeof b->why, "no CPUID on this target: the defaults");
#endif
}

void cg_blocking(const CgOptions *o, CgBlocking *b) {
  const char *march = o && o->march ? o->march : "native";
  cg_blocking_for(march, cg_march_lanes(march), b);
}

int cg_blocking_describe(const CgBlocking *b, char *buf, size_t n) {
  char caches[64] = "";
  if (b->l1d_kib > 0 || b->l2_kib > 0) snprintf(caches, sizeof caches, ", L1d %d KiB, L2 %d KiB", b->l1d_kib, b->l2_kib);
  static const char *fma[3] = {"", ", 512-bit FMA double-pumped", ", 512-bit FMA full width"};
  return snprintf(buf, n, "%s%s%s; tile %dx%d, KC %d, MC %d, NC %d (%s)", b->cpu, caches,
                  fma[b->fma512 >= 0 && b->fma512 <= 2 ? b->fma512 : 0], b->mr, b->nr, b->kc, b->mc, b->nc, b->why);
}
