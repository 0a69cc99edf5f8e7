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
