#!/bin/sh
# bench/dist.sh [BPCC] — the measurements behind docs/distributed.md's "Cost model", then
# its table:
#   1. bench/fxsum_bench.c: the fixed-point sums of --deterministic-reduce, ns per
#      element, scalar and AVX-512, on 64 Ki elements (in cache) and on M3's 4.2 M;
#   2. bench/allreduce.c on 2 ranks of this machine (shared memory): MPI_Allreduce of
#      4 B .. 64 MiB, f32 SUM and the fixed-point op, and the alpha-beta fit;
#   3. `bpcc bench --threads 1 --profile` of M2 and M3: forward, backward, update;
#   4. bench/dist_model.py with those figures: predicted step times for P = 2 .. 64 over
#      10 and 100 Gb/s networks, and for 2 ranks here.
# Needs mpicc and mpirun (Debian: openmpi-bin libopenmpi-dev). The machine is shared:
# the load average is printed at the start and at the end; compare runs only under
# similar load. Takes 2-5 minutes. ALLREDUCE_MAX (bytes, default 64 MiB) caps the
# allreduce sizes: on a loaded machine the largest ones can take minutes each
# (docs/distributed.md: the large-message cliff).
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
SRC=$(dirname "$HERE")
BPCC=${1:-$SRC/build/bpcc}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
echo "load at start: $(cut -d' ' -f1-3 /proc/loadavg)  ($(date -u +%Y-%m-%dT%H:%MZ))"

cc -O2 -std=c11 -D_POSIX_C_SOURCE=200809L -I"$SRC" "$HERE/fxsum_bench.c" "$SRC/runtime/fxsum.c" \
  -o "$TMP/fxsum_bench" -lm
mpicc -O2 -std=c11 -D_POSIX_C_SOURCE=200809L -I"$SRC" "$HERE/allreduce.c" "$SRC/runtime/fxsum.c" \
  "$SRC/runtime/fxsum_mpi.c" -o "$TMP/allreduce" -lm

echo "== 1. fixed-point sums (runtime/fxsum.c)"
"$TMP/fxsum_bench" 65536 51
"$TMP/fxsum_bench" 4194304 7 | tee "$TMP/fx.txt"   # M3's size: what the model uses

echo "== 2. MPI_Allreduce, 2 ranks, shared memory"
mpirun --allow-run-as-root -np 2 "$TMP/allreduce" "${ALLREDUCE_MAX:-67108864}" | tee "$TMP/ar.txt"

echo "== 3. compute per step, 1 thread"
for m in m2 m3_deep; do
  "$BPCC" bench "$HERE/$m.bp" --threads 1 --profile --steps 40 | grep -E '^bpcc|^profile (forward|backward|update)' |
    tee "$TMP/$m.txt"
done

echo "== 4. the cost model (docs/distributed.md)"
fb() { awk '/^profile forward/{f=$3} /^profile backward/{b=$3} /^profile update/{u=$3} END{printf "%s,%s,%s", f, b, u}' "$1"; }
fx=$(awk '/^fxsum_set_f32/{s=$(NF-1)} /^fxsum_combine/{c=$(NF-1)} /^fxsum_to_f32/{v=$(NF-1)} END{printf "%s,%s,%s", s, c, v}' "$TMP/fx.txt")
meas=$(awk '/^  f32 SUM:/{a=$5; b=$9} END{printf "%s,%s", a, b}' "$TMP/ar.txt")
echo "inputs: M2 $(fb "$TMP/m2.txt") ms, M3 $(fb "$TMP/m3_deep.txt") ms (forward, backward, update);" \
  "fixed point $fx ns/element (set, combine, convert); this machine a, GB/s = $meas"
python3 "$HERE/dist_model.py" --m2 "$(fb "$TMP/m2.txt")" --m3 "$(fb "$TMP/m3_deep.txt")" --fx-ns "$fx" --measured "$meas"
echo "load at end: $(cut -d' ' -f1-3 /proc/loadavg)"
