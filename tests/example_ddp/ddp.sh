#!/bin/sh
# tests/example_ddp/ddp.sh BPCC SOURCE_DIR WORK_DIR — examples/ddp built and run as its
# README says: the model library from examples/spiral.bp (MPI-free: NEEDED libc, libm,
# libpthread only), the program with mpicc, then
#   1. 2 ranks against 1 rank at the same global batch (60 rows, 40 Adam steps): every
#      parameter within 1e-6 relative (max |a-b| / max |a| per tensor), plain allreduce
#      and allreduce issued from the gradient-ready hook (--overlap);
#   2. --deterministic (fixed-point sums over micro-batches of 10 rows) on 1, 2 and 3
#      ranks: bit-identical; with one micro-batch of the whole batch, the plain run's
#      bits (the fixed point holds each gradient exactly);
#   3. bad input: a batch that does not split over the ranks is an error, exit 1.
# Exit 77 (skipped) only when mpicc or mpirun is absent.
set -u
BPCC=$1 SRC=$2 W=$3
command -v mpicc >/dev/null 2>&1 && command -v mpirun >/dev/null 2>&1 || {
  echo "mpicc or mpirun not found: skipped (Debian: apt-get install openmpi-bin libopenmpi-dev)"
  exit 77
}
fail() { echo "FAIL: $*"; exit 1; }
rm -rf "$W" && mkdir -p "$W" || exit 1

"$BPCC" "$SRC/examples/spiral.bp" -o "$W/spiral.so" || fail "bpcc spiral.bp -o spiral.so"
needed=$(readelf -d "$W/spiral.so" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | tr '\n' ' ')
echo "spiral.so NEEDED: $needed"
for lib in $needed; do
  case $lib in libc.so.*|libm.so.*|libpthread.so.*) ;; *) fail "spiral.so needs $lib (only libc, libm, libpthread)";; esac
done

mpicc -O2 -std=c11 -Wall -Wextra -Werror -D_POSIX_C_SOURCE=200809L -DDDP_DETERMINISTIC \
  -I"$W" -I"$SRC" "$SRC/examples/ddp/ddp.c" "$SRC/runtime/fxsum.c" "$SRC/runtime/fxsum_mpi.c" \
  "$W/spiral.so" -o "$W/ddp" -lm -Wl,-rpath,'$ORIGIN' || fail "mpicc"

RUN="mpirun --allow-run-as-root --oversubscribe"
ARGS="--steps 40 --batch 60"
$RUN -np 1 "$W/ddp" $ARGS --out "$W/p1" || fail "1 rank"
$RUN -np 2 "$W/ddp" $ARGS --out "$W/p2" || fail "2 ranks"
"$W/ddp" --compare "$W/p1" "$W/p2" --rtol 1e-6 || fail "2 ranks against 1"
$RUN -np 2 "$W/ddp" $ARGS --overlap --out "$W/p2o" || fail "2 ranks --overlap"
"$W/ddp" --compare "$W/p1" "$W/p2o" --rtol 1e-6 || fail "2 ranks --overlap against 1"

for np in 1 2 3; do
  $RUN -np $np "$W/ddp" $ARGS --deterministic --out "$W/d$np" || fail "--deterministic on $np ranks"
done
"$W/ddp" --compare "$W/d1" "$W/d2" --rtol 0 || fail "--deterministic: 2 ranks against 1"
"$W/ddp" --compare "$W/d1" "$W/d3" --rtol 0 || fail "--deterministic: 3 ranks against 1"
# one micro-batch of the whole batch (weight 1): every gradient passes through the
# fixed point exactly (|g| >= 2^-53), so the run is the plain one bit for bit
$RUN -np 1 "$W/ddp" $ARGS --deterministic --micro 60 --out "$W/d1w" || fail "--deterministic --micro 60"
"$W/ddp" --compare "$W/p1" "$W/d1w" --rtol 0 || fail "--deterministic --micro 60 against the plain run"

out=$($RUN -np 2 "$W/ddp" --batch 61 2>&1); rc=$?
echo "$out" | grep -q "the global batch 61 must split evenly over 2 ranks" && [ $rc -ne 0 ] ||
  fail "batch 61 on 2 ranks: rc $rc: $out"
echo "ok: examples/ddp"
