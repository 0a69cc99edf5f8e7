#!/bin/sh
# bench/ddp.sh [BUILD] [STEPS] [ROUNDS] — M3 (bench/m3_deep.bp) data-parallel on this
# host: 2 ranks x 1 thread against 1 rank x 1 thread (issue 16; docs/distributed.md).
#   1x256   one process, --batch 256                     (the reference)
#   2x128   mpirun -np 2, --batch 128 each: the same global batch of 256
#   2x256   mpirun -np 2, --batch 256 each: the same local batch (global 512)
#   2x128d  2x128 with --deterministic-reduce: its cost
# Each run trains STEPS steps (40) of random data (8,192 rows, npy written once with
# NumPy); its speed is STEPS over the loop's time ("trained N steps in T": compilation
# and start-up not counted, the first step's allocation counted). The three run
# interleaved ROUNDS times (3); the medians are printed with the speed-ups:
#   same global batch: steps/s of 2x128 over 1x256 (the target: 1.8 or more)
#   same local batch:  rows/s of 2x256 over 1x256
# Needs mpirun and a bpcc built with MPI; says the load (uptime) before and after.
set -eu
BUILD=${1:-build}
STEPS=${2:-40}
ROUNDS=${3:-3}
HERE=$(cd "$(dirname "$0")" && pwd)
BPCC=$BUILD/bpcc
command -v mpirun > /dev/null || { echo "bench/ddp.sh: mpirun is absent (openmpi-bin)"; exit 1; }
"$BPCC" --version | grep -q "^MPI: none" && { echo "bench/ddp.sh: $BPCC was built without MPI"; exit 1; }
TMP=$(mktemp -d "${TMPDIR:-/tmp}/bpcc-ddp-XXXXXX")
trap 'rm -rf "$TMP"' EXIT
/usr/bin/python3 - "$TMP" << 'PY'
import sys, numpy as np
r = np.random.default_rng(0)
np.save(sys.argv[1] + "/x.npy", r.standard_normal((8192, 512), dtype=np.float32))
np.save(sys.argv[1] + "/y.npy", np.tanh(r.standard_normal((8192, 512), dtype=np.float32)))
PY
MPIRUN="mpirun --allow-run-as-root --oversubscribe --mca pml ob1 --mca btl self,vader"
# one run: its steps/s
run() {
  np=$1 batch=$2 det=${3:-}
  if [ "$np" = 1 ]; then set -- "$BPCC"; else set -- $MPIRUN -np "$np" "$BPCC"; fi
  "$@" train "$HERE/m3_deep.bp" --data "npy:$TMP/x.npy,$TMP/y.npy" --steps "$STEPS" --batch "$batch" --threads 1 \
    $det --quiet < /dev/null 2> "$TMP/err" | tr '\n' ' ' | sed 's/  */ /g' > "$TMP/out" || { cat "$TMP/out" "$TMP/err"; exit 1; }
  # "trained 40 steps in 1.4 s: loss ..." (ms below a second, min above a minute)
  sed -n 's/.*trained [0-9]* steps in \([0-9.]*\) \(m*s\|min\):.*/\1 \2/p' "$TMP/out" |
    awk -v n="$STEPS" '{ t = $2 == "ms" ? $1 / 1000 : $2 == "min" ? $1 * 60 : $1; printf "%.3f\n", n / t }'
}
median() { sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
echo "load before: $(uptime | sed 's/.*load average: //')"
: > "$TMP/a"; : > "$TMP/b"; : > "$TMP/c"; : > "$TMP/d"
i=0
while [ $i -lt "$ROUNDS" ]; do
  run 1 256 >> "$TMP/a"
  run 2 128 >> "$TMP/b"
  run 2 256 >> "$TMP/c"
  run 2 128 --deterministic-reduce >> "$TMP/d"
  i=$((i + 1))
done
echo "load after:  $(uptime | sed 's/.*load average: //')"
a=$(median < "$TMP/a") b=$(median < "$TMP/b") c=$(median < "$TMP/c") d=$(median < "$TMP/d")
echo "M3, $STEPS steps, median of $ROUNDS interleaved runs, 1 thread per rank:"
echo "  1 rank  x batch 256: $a steps/s   (runs: $(tr '\n' ' ' < "$TMP/a"))"
echo "  2 ranks x batch 128: $b steps/s   (runs: $(tr '\n' ' ' < "$TMP/b"))"
echo "  2 ranks x batch 256: $c steps/s   (runs: $(tr '\n' ' ' < "$TMP/c"))"
echo "  2 ranks x batch 128, --deterministic-reduce: $d steps/s   (runs: $(tr '\n' ' ' < "$TMP/d"))"
awk -v a="$a" -v b="$b" -v c="$c" -v d="$d" 'BEGIN {
  printf "  same global batch (256): %.2fx the steps/s of one rank\n", b / a
  printf "  same local batch (256 a rank): %.2fx the rows/s of one rank\n", 2 * c / a
  printf "  --deterministic-reduce: %.2fx the steps/s of the float reduction\n", d / b }'
