#!/bin/sh
# examples/demo.sh BPCC — what `make demo` runs: the checked summary of every bundled
# example (parameters with their names, shapes and counts; inputs; outputs; the loss;
# the train settings).
set -e
bpcc=${1:-build/bpcc}
dir=$(dirname "$0")
for f in "$dir"/*.bp; do
  echo "==> $bpcc --check $f"
  "$bpcc" --check "$f"
  echo
done
# JIT-train the spiral classifier on the built-in spiral data (a progress bar per epoch
# on a terminal, one line per epoch otherwise): >= 97% training accuracy in seconds.
echo "==> $bpcc train $dir/spiral.bp --data spiral --epochs 100"
"$bpcc" train "$dir/spiral.bp" --data spiral --epochs 100
