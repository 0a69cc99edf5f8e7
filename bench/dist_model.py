#!/usr/bin/env python3
"""bench/dist_model.py — the alpha-beta cost model of data-parallel training
(docs/distributed.md, "Cost model"): predicted step times of M2 and M3 for P ranks over
10 and 100 Gb/s networks, as a Markdown table.

    python3 bench/dist_model.py [--m2 F,B,U] [--m3 F,B,U] [--bucket MIB]
                                [--fx-ns SET,COMBINE,CONVERT]

F, B, U: forward, backward and update milliseconds of one step on 1 thread (`bpcc bench
FILE.bp --threads 1 --profile`); the defaults are the figures docs/distributed.md
quotes. --fx-ns: the fixed-point costs in ns per element (bench/fxsum_bench.c).

Model, per step, each rank computing its own local batch (the model's batch; the global
batch is P times it):
  ring allreduce of S bytes:  T_ar(S) = 2(P-1) alpha + 2(P-1)/P S beta + (P-1)/P S gamma
  no overlap:                 T = F + B + T_ar(S) + U
  buckets of b bytes issued as the backward produces them (k = S/b buckets):
                              T = F + max(B + T_ar(b), B/k + T_ar(S)) + U
  --deterministic-reduce:     the words are 16 bytes, not 4 (S -> 4S, the reduction
                              gamma -> the fixed-point combine), plus quantising and
                              converting back each element, and no overlap (bpcc train
                              sends the buckets after the last micro-batch):
                              T = F + B + T_ar(4S) + n (set + convert) + U
--measured ALPHA_US,GBPS adds the rows of 2 ranks on this machine (shared memory) with
the alpha and beta that bench/allreduce.c fitted.
"""
import argparse

PARAMS = {"m2": 1863690, "m3": 4465152}  # 784-1024-1024-10; 17 x (512 x 512 + 512)

# Networks: alpha = one message's latency, beta = seconds per byte at the rate MPI gets.
NETS = [
    ("10 Gb/s", 15e-6, 1 / (9.4e9 / 8)),    # Ethernet, TCP: ~15 us, 9.4 Gb/s goodput
    ("100 Gb/s", 2e-6, 1 / (12.0e9)),       # InfiniBand EDR / RoCE, RDMA: ~2 us, 12 GB/s
]
GAMMA_F32 = 0.1e-9  # s per byte of the f32 sum inside the allreduce (memory-bound add)


def t_ar(S, P, alpha, beta, gamma):
    if P == 1:
        return 0.0
    return 2 * (P - 1) * alpha + 2 * (P - 1) / P * S * beta + (P - 1) / P * S * gamma


def step(F, B, U, S, P, alpha, beta, gamma, bucket, extra=0.0):
    plain = F + B + t_ar(S, P, alpha, beta, gamma) + U + extra
    k = max(1.0, S / bucket)
    b = min(S, bucket)
    over = F + max(B + t_ar(b, P, alpha, beta, gamma), B / k + t_ar(S, P, alpha, beta, gamma)) + U + extra
    return plain, over


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--m2", default="2.8,4.3,0.8")
    ap.add_argument("--m3", default="14.0,28.0,1.5")
    ap.add_argument("--bucket", type=float, default=2.0, help="bucket size, MiB of f32 gradient (--bucket-mb)")
    ap.add_argument("--measured", default=None, help="alpha (us) and bandwidth (GB/s) of this machine, 2 ranks")
    ap.add_argument("--fx-ns", default="0.9,0.6,1.1", help="fixed point: set, combine, convert ns/element")
    a = ap.parse_args()
    fx_set, fx_comb, fx_conv = (float(x) * 1e-9 for x in a.fx_ns.split(","))
    bucket = a.bucket * 2**20
    print("| model | S (MB) | 1 rank (ms) | network | P | no overlap (ms) | buckets (ms) | efficiency | deterministic (ms) |")
    print("|---|---|---|---|---|---|---|---|---|")
    nets = [(net, alpha, beta, (2, 4, 8, 16, 32, 64)) for net, alpha, beta in NETS]
    if a.measured:
        au, gbps = (float(x) for x in a.measured.split(","))
        # a = 2(P-1) alpha and b = 2(P-1)/P beta with P = 2: alpha = a/2, beta = b
        nets.append(("this machine (shm)", au * 1e-6 / 2, 1 / (gbps * 1e9), (2,)))
    for name in ("m2", "m3"):
        F, B, U = (float(x) * 1e-3 for x in getattr(a, name).split(","))
        n = PARAMS[name]
        S = 4 * n
        one = F + B + U
        for net, alpha, beta, ps in nets:
            for P in ps:
                plain, over = step(F, B, U, S, P, alpha, beta, GAMMA_F32, bucket)
                # deterministic: 16-byte words, the fixed-point combine per element, the
                # quantisation and the conversion, no overlap
                det = one + t_ar(4 * S, P, alpha, beta, fx_comb / 16) + n * (fx_set + fx_conv)
                print(f"| {name.upper()} | {S / 1e6:.2f} | {one * 1e3:.1f} | {net} | {P} | {plain * 1e3:.1f} | "
                      f"{over * 1e3:.1f} | {one / over * 100:.0f}% | {det * 1e3:.1f} |")

if __name__ == "__main__":
    main()
