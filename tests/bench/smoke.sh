#!/bin/sh
# tests/bench/smoke.sh BPCC SOURCE_DIR — one step of bench/m1.bp at batch 4, with its
# matrix-product rows and its --profile lines; checks the shape of the output only
# (never the speed).
set -u
BPCC=$1
SRC=$2
out=$("$BPCC" bench "$SRC/bench/m1.bp" --steps 1 --warmup 0 --batch 4 --threads 1 --gemm) || { echo "FAIL: bpcc bench exited $?"; exit 1; }
echo "$out"
echo "$out" | grep -Eq '^bpcc m1 [0-9.]+ [0-9.]+ [0-9.]+ [0-9.]+ [0-9.]+ [0-9]+ [0-9.]+$' || { echo "FAIL: no model row"; exit 1; }
n=$(echo "$out" | grep -Ec '^gemm matmul(_nt|_tn)? [0-9]+ [0-9]+ [0-9]+ 1 [0-9.]+ [0-9.]+$')
[ "$n" -ge 4 ] || { echo "FAIL: expected the products of M1, got $n rows"; exit 1; }
prof=$("$BPCC" bench "$SRC/bench/m1.bp" --steps 1 --warmup 0 --batch 4 --threads 1 --profile) || { echo "FAIL: bpcc bench --profile exited $?"; exit 1; }
for ph in forward backward update products other; do
  echo "$prof" | grep -Eq "^profile $ph -?[0-9.]+\$" || { echo "FAIL: no '$ph' line from --profile"; echo "$prof"; exit 1; }
done
err=$("$BPCC" bench "$SRC/bench/m1.bp" --steps 0 2>&1 > /dev/null); rc=$?
[ $rc -eq 1 ] && echo "$err" | grep -q "expected an integer >= 1" || { echo "FAIL: --steps 0 not refused: $err"; exit 1; }
echo "bench smoke: ok"
