#!/bin/sh
# tests/train/lenet_mnist.sh BPCC SOURCE_DIR — issue 13's check: examples/lenet.bp
# trained for one epoch of MNIST with its own recipe (train block) reaches at least 98%
# on the t10k images. Exit 77 (skipped, said loudly) where ../shared/data/mnist is
# absent. About 25 s on 2 cores (docs/training.md).
set -u
BPCC=$1
SRC=$2
. "$SRC/tests/lib.sh"
DATA=$SRC/../shared/data/mnist
for f in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
  [ -f "$DATA/$f.gz" ] || t_skip "$DATA is absent (the MNIST files of ../shared/data)"
done
t_setup lenet-mnist

timeout 300 "$BPCC" train "$SRC/examples/lenet.bp" --data "mnist:$DATA" --epochs 1 --log "$T/log.csv" --quiet \
  > "$T/out" 2> "$T/err" || { cat "$T/out" "$T/err"; die "train"; }
# kind,epoch,step,lr,loss,accuracy,val_loss,val_accuracy,seconds
row=$(grep '^epoch,1,' "$T/log.csv")
[ -n "$row" ] || { cat "$T/log.csv"; die "no row for epoch 1 in the log"; }
acc=$(echo "$row" | cut -d, -f8)
secs=$(echo "$row" | cut -d, -f9)
awk -v a="$acc" 'BEGIN { exit !(a >= 0.98) }' || fail "test accuracy after one epoch: $acc, below 0.98"
echo "lenet, one epoch: test accuracy $acc in $secs s"

t_done lenet_mnist
