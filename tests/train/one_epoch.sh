#!/bin/sh
# tests/train/one_epoch.sh BPCC SOURCE_DIR MODEL DATASET MIN — issue 13's checks: an
# example CNN trained for one epoch with its own recipe (train block) reaches at least
# MIN test accuracy:
#   examples/lenet.bp   on MNIST (mnist), at least 0.98 (98.20% measured, about 5 s)
#   examples/cnn_bn.bp  on Fashion-MNIST (fashion-mnist), at least 0.89: batchnorm and
#                       its running statistics, which the test images are normalized
#                       with (89.71% measured, about 16 s)
# DATASET is the directory under ../shared/data. Exit 77 (skipped, said loudly) where
# its files are absent. Times: docs/training.md.
set -u
BPCC=$1
SRC=$2
MODEL=$3
SET=$4
MIN=$5
. "$SRC/tests/lib.sh"
DATA=$SRC/../shared/data/$SET
for f in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
  [ -f "$DATA/$f.gz" ] || t_skip "$DATA is absent (the $SET files of ../shared/data)"
done
name=$(basename "$MODEL" .bp)
t_setup "$name-one-epoch"

timeout 300 "$BPCC" train "$SRC/$MODEL" --data "mnist:$DATA" --epochs 1 --log "$T/log.csv" --quiet \
  > "$T/out" 2> "$T/err" || { cat "$T/out" "$T/err"; die "train"; }
# kind,epoch,step,lr,loss,accuracy,val_loss,val_accuracy,seconds
row=$(grep '^epoch,1,' "$T/log.csv")
[ -n "$row" ] || { cat "$T/log.csv"; die "no row for epoch 1 in the log"; }
acc=$(echo "$row" | cut -d, -f8)
secs=$(echo "$row" | cut -d, -f9)
awk -v a="$acc" -v m="$MIN" 'BEGIN { exit !(a >= m) }' || fail "test accuracy after one epoch: $acc, below $MIN"
echo "$name, one epoch of $SET: test accuracy $acc in $secs s"

t_done "train_${name}_one_epoch"
