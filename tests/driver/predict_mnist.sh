#!/bin/sh
# tests/driver/predict_mnist.sh BPCC NPY_CHECK SOURCE_DIR — issue 12's check of
# `bpcc predict`: after one epoch of MNIST, predict on the t10k images writes a
# [10000, 10] array whose argmax gives exactly the accuracy `bpcc eval` reports; the
# images alone (idx:IMAGES, no labels) give the same bytes. Exit 77 (skipped, said
# loudly) where ../shared/data/mnist is absent.
set -u
BPCC=$1
NPY=$2
SRC=$3
. "$SRC/tests/lib.sh"
DATA=$SRC/../shared/data/mnist
if [ ! -f "$DATA/t10k-labels-idx1-ubyte.gz" ] || [ ! -f "$DATA/train-images-idx3-ubyte.gz" ]; then
  t_skip "$DATA is absent (the MNIST files of ../shared/data)"
fi
t_setup predict-mnist
MLP=$SRC/examples/mnist_mlp.bp

"$BPCC" train "$MLP" --data "mnist:$DATA" --epochs 1 --save "$T/w.st" --quiet > /dev/null || die "train"
"$BPCC" eval "$MLP" --weights "$T/w.st" --data "mnist:$DATA" > "$T/eval" || fail "eval"
acc=$(sed -n 's/.*(10,000 rows): loss [0-9.]*, accuracy \([0-9.]*\)%$/\1/p' "$T/eval")
[ -n "$acc" ] || { fail "no accuracy in eval's output:"; cat "$T/eval"; }

"$BPCC" predict "$MLP" --weights "$T/w.st" --data "mnist:$DATA" -o "$T/p.npy" > /dev/null || fail "predict"
[ "$("$NPY" shape "$T/p.npy")" = "10000,10" ] || fail "shape: $("$NPY" shape "$T/p.npy")"
gzip -dc "$DATA/t10k-labels-idx1-ubyte.gz" > "$T/labels" || fail "gunzip the labels"
correct=$("$NPY" argmax "$T/p.npy" "$T/labels")
# eval prints the percentage to 2 decimals: one row of 10000 is 0.01%
[ "$(awk -v c="$correct" 'BEGIN { printf "%.2f", c / 100 }')" = "$acc" ] ||
  fail "argmax of predict's output: $correct of 10000 correct; eval reports $acc%"
echo "eval: $acc%; predict's argmax: $correct of 10000"

"$BPCC" predict "$MLP" --weights "$T/w.st" --data "idx:$DATA/t10k-images-idx3-ubyte.gz" -o "$T/q.npy" > /dev/null ||
  fail "predict on the images alone"
cmp -s "$T/p.npy" "$T/q.npy" || fail "idx:IMAGES (no labels) differs from mnist:DIR"

t_done predict_mnist
