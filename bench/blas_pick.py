#!/usr/bin/env python3
"""bench/blas_pick.py — the fastest correct OpenBLAS kernel set for PyTorch on this host.

Run by bench/run.sh (`make bench`) with /usr/bin/python3 before the PyTorch runs:

    blas_pick.py THREADS [REPS]

Debian's torch 1.13 does its matrix products in OpenBLAS 0.3.21, a DYNAMIC_ARCH build
that picks a kernel set ("core type") when it loads: by CPUID, or by the environment
variable OPENBLAS_CORETYPE. This environment sets OPENBLAS_CORETYPE=Haswell (older
OpenBLAS builds crash or compute wrong results on CPUs they do not know), which runs
AVX2 kernels on hosts with AVX-512. A fair comparison gives PyTorch its best kernels, so
instead of assuming one, this script tries each candidate in a fresh process (the
choice is made when the library loads):

  - "auto": OPENBLAS_CORETYPE unset, OpenBLAS's own detection;
  - every named core type in CANDIDATES whose instructions the CPU has (the flags in
    /proc/cpuinfo, which also tell whether the kernel enabled the AVX-512 state).

Each candidate process reports the core OpenBLAS actually runs (openblas_get_corename:
for a name it does not know, 0.3.21 falls back to some other core, on the Xeon
Cooperlake for any unknown name while its detection gives SkylakeX; such a candidate is
rejected as not accepted unless the fallback is the core it names), computes every matrix product of the
benchmark's layers (LAYERS: the forward x W^T, the input gradient g W and the weight
gradient g^T x of each Linear layer of M1, M2 and M3) in float32 and checks each against
the same product in float64 (a wrong kernel set is rejected, see check()), then times
all of them together, REPS times (median and minimum). A candidate that crashes, hangs
(120 s) or gives wrong results is rejected; one that runs the same kernels as an earlier
one is not timed again. The survivors are timed in ROUNDS rounds in alternating order
(a burst of load on a shared machine moves one round's measurement, not all of them);
a candidate that fails in a later round is rejected then. The fastest pass of all rounds
decides (load from other processes only adds time, so the fastest pass is the closest
to what the kernels themselves do); the best of the rounds' medians is printed next to
it.

Prints, one line each (bench/run.sh reads them):
    blas_setup PRODUCTS GFLOP REPS ROUNDS       what one timed pass is, and how many
    blas_flags FLAG...                          the CPU flags the candidates depend on
    blas_candidate NAME CORE STATUS MS_MEDIAN MS_MIN GFLOPS ERR [NOTE...]
                                                GFLOPS at MS_MIN, the time that decides
    blas_chosen NAME CORE
STATUS is ok, same (CORE already measured: NOTE names the candidate) or rejected (NOTE
says why; the numbers are then "-"). ERR is the largest error of the check as a fraction
of its bound (at most 1 to pass). NAME "auto" means OPENBLAS_CORETYPE unset; blas_chosen
NAME "-" means there was nothing to choose (PyTorch's BLAS is not OpenBLAS, or no
candidate passed): PyTorch then runs with the environment as it is.
"""
import os
import statistics
import subprocess
import sys
import time

# Named core types of OpenBLAS 0.3.21 worth timing on an x86-64 host with AVX2, and the
# /proc/cpuinfo flags each one's kernels execute. Older sets (Sandybridge and before)
# are narrower than Haswell's on every CPU that has AVX2, and bench/peak.c needs AVX2.
# SapphireRapids is not in Debian 12's build (it is rejected as not accepted there) but
# is tried so that a newer OpenBLAS gets the chance.
AVX512 = ("avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl")
CANDIDATES = [
    ("Haswell", ("avx2", "fma")),
    ("Zen", ("avx2", "fma")),
    ("SkylakeX", AVX512),
    ("Cooperlake", AVX512 + ("avx512_bf16",)),
    ("SapphireRapids", AVX512 + ("avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16")),
]

# (model, batch, inputs, outputs) of every Linear layer of bench/torch_bench.py's models
LAYERS = [
    ("m1", 64, 784, 256), ("m1", 64, 256, 10),
    ("m2", 128, 784, 1024), ("m2", 128, 1024, 1024), ("m2", 128, 1024, 10),
    ("m3", 256, 512, 512),
]

PROBE_TIMEOUT_S = 120
ROUNDS = 3


def cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


# ---- the candidate process --------------------------------------------------------

def openblas_core():
    """The core type of the OpenBLAS this process loaded (through torch), or None when
    torch's BLAS is not OpenBLAS."""
    import ctypes
    path = None
    with open("/proc/self/maps") as f:
        for line in f:
            p = line.split()[-1]
            if "libopenblas" in os.path.basename(p):
                path = p
                break
    if path is None:
        return None
    lib = ctypes.CDLL(path)
    lib.openblas_get_corename.restype = ctypes.c_char_p
    return lib.openblas_get_corename().decode()


def products(torch):
    """Every product of the benchmark's layers, as (label, A, B, C) with C = A B to be
    filled: A and B are the same kind of views (transposed or not) that Linear's forward
    and backward pass to BLAS. Seeded, so every candidate multiplies the same numbers."""
    gen = torch.Generator().manual_seed(12)
    out = []
    for model, batch, nin, nout in LAYERS:
        x = torch.randn(batch, nin, generator=gen)
        w = torch.randn(nout, nin, generator=gen)
        g = torch.randn(batch, nout, generator=gen)
        for label, a, b in ((f"{model} x[{batch},{nin}] W^T", x, w.t()),
                            (f"{model} g[{batch},{nout}] W", g, w),
                            (f"{model} g^T x [{nout},{batch}]x[{batch},{nin}]", g.t(), x)):
            out.append((label, a, b, torch.empty(a.shape[0], b.shape[1])))
    return out


def check(torch, a, b, c):
    """The error of c = a b (float32) as a fraction of its bound, against the product in
    float64. The bound is the one every float32 summation order obeys (Higham's gamma_K
    with unit roundoff u = 2^-24, plus the final rounding): |c - ab| <= (K + 2) u (|a||b|)
    elementwise. A kernel that drops, repeats or misplaces a single term, or returns
    garbage, exceeds it by far (with random normal inputs the bound is about 2e-3 of a
    typical term at K = 1024); a correct one stays well under it."""
    k = a.shape[1]
    ref = torch.mm(a.double(), b.double())
    bound = (k + 2) * 2.0 ** -24 * torch.mm(a.abs().double(), b.abs().double()) + 1e-30
    if not torch.isfinite(c).all():
        return float("inf")
    return ((c.double() - ref).abs() / bound).max().item()


def probe(reps):
    """Runs in the candidate process: prints `probe CORE ERR WORST MS...`."""
    import torch
    core = openblas_core() or "-"
    prods = products(torch)
    for _, a, b, c in prods:
        torch.mm(a, b, out=c)
    worst, worst_label = 0.0, ""
    for label, a, b, c in prods:
        e = check(torch, a, b, c)
        if e > worst:
            worst, worst_label = e, label
    times = []
    for i in range(2 + reps):
        t0 = time.perf_counter()
        for _, a, b, c in prods:
            torch.mm(a, b, out=c)
        if i >= 2:
            times.append((time.perf_counter() - t0) * 1e3)
    print("probe", core, f"{worst:.4g}", worst_label.replace(" ", "_") or "-",
          " ".join(f"{t:.4f}" for t in times))


# ---- the parent --------------------------------------------------------------------

def flops():
    return sum(3 * 2 * batch * nin * nout for _, batch, nin, nout in LAYERS)


def run_candidate(name, threads, reps):
    """(core, err, worst_label, times) or a string saying why the candidate failed."""
    env = dict(os.environ)
    for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[k] = str(threads)
    env["OMP_WAIT_POLICY"] = "PASSIVE"
    env.pop("OPENBLAS_VERBOSE", None)
    if name == "auto":
        env.pop("OPENBLAS_CORETYPE", None)
    else:
        env["OPENBLAS_CORETYPE"] = name
    try:
        p = subprocess.run([sys.executable, os.path.abspath(__file__), "--probe", str(reps)],
                           env=env, capture_output=True, text=True, timeout=PROBE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return f"hung (no result in {PROBE_TIMEOUT_S} s)"
    if p.returncode != 0:
        how = f"signal {-p.returncode}" if p.returncode < 0 else f"status {p.returncode}"
        last = (p.stderr.strip().splitlines() or [""])[-1]
        return f"crashed ({how}){': ' + last if last else ''}"
    for line in p.stdout.splitlines():
        f = line.split()
        if len(f) >= 5 and f[0] == "probe":
            return f[1], float(f[2]), f[3], [float(t) for t in f[4:]]
    return "printed no result"


def main():
    if len(sys.argv) >= 2 and sys.argv[1] == "--probe":
        probe(int(sys.argv[2]))
        return
    threads = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    reps = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    try:
        import torch  # noqa: F401  (only to know whether there is anything to pick for)
    except ImportError:
        print("blas_chosen - -")
        return
    print("blas_setup", 3 * len(LAYERS), f"{flops() * 1e-9:.3f}", reps, ROUNDS)
    have = cpu_flags()
    print("blas_flags", " ".join(sorted(f for f in have
                                          if f in {"avx2", "fma"} | {x for _, n in CANDIDATES for x in n})) or "-")
    names = ["auto"] + [n for n, need in CANDIDATES if all(x in have for x in need)]
    gflop = flops() * 1e-9
    rows = {}      # name -> [core, status, medians, mins, err, note]
    seen = {}      # core -> the first candidate that ran it
    for name in names:
        r = run_candidate(name, threads, reps)
        if isinstance(r, str):
            rows[name] = [None, "rejected", [], [], None, r]
            continue
        core, err, label, times = r
        if core == "-":
            # torch's BLAS is not OpenBLAS: no kernel set to choose
            rows[name] = [core, "rejected", [], [], None, "PyTorch's BLAS is not OpenBLAS"]
            break
        if name != "auto" and core.lower() != name.lower():
            rows[name] = [core, "rejected", [], [], None,
                          f"not accepted by this OpenBLAS (it ran {core})"]
            continue
        if core in seen:
            first = seen[core]
            if rows[first][1] == "rejected":
                rows[name] = [core, "rejected", [], [], None, f"same kernels as {first}, rejected"]
            else:
                rows[name] = [core, "same", [], [], None, f"same kernels as {first}"]
            continue
        seen[core] = name
        if err > 1.0:
            rows[name] = [core, "rejected", [], [], err,
                          f"wrong results: {label.replace('_', ' ')} off by {err:.3g}x the float32 bound"]
            continue
        rows[name] = [core, "ok", [statistics.median(times)], [min(times)], err, ""]
    # the later rounds: the survivors only, in reverse order, then forward again, ...
    for rnd in range(2, ROUNDS + 1):
        live = [n for n in rows if rows[n][1] == "ok"]
        for name in (reversed(live) if rnd % 2 == 0 else live):
            r = run_candidate(name, threads, reps)
            row = rows[name]
            if isinstance(r, str) or r[0] != row[0] or r[1] > 1.0:
                why = r if isinstance(r, str) else (
                    f"ran {r[0]} in round {rnd}" if r[0] != row[0] else
                    f"wrong results in round {rnd}: {r[2].replace('_', ' ')} off by {r[1]:.3g}x the float32 bound")
                row[1], row[5] = "rejected", why
                if not isinstance(r, str):
                    row[4] = r[1]
                continue
            row[2].append(statistics.median(r[3]))
            row[3].append(min(r[3]))
            row[4] = max(row[4], r[1])
    best = None
    for name, (core, status, meds, mins, err, note) in rows.items():
        if status == "ok":
            t = min(mins)
            if best is None or t < min(rows[best][3]):
                best = name
            print("blas_candidate", name, core, status, f"{min(meds):.3f}", f"{t:.3f}",
                  f"{gflop / (t * 1e-3):.1f}", f"{err:.3g}")
        else:
            print("blas_candidate", name, core or "-", status, "-", "-", "-",
                  f"{err:.3g}" if err is not None else "-", note)
    print("blas_chosen", best or "-", rows[best][0] if best else "-")


if __name__ == "__main__":
    main()
