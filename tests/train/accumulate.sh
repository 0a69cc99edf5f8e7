#!/bin/sh
# tests/train/accumulate.sh BPCC SOURCE_DIR — gradient accumulation from the command line
# (issue 16):
#   1. --accumulate 4 --batch 8 trains as --batch 32 (spiral, 2 epochs, the last global
#      batch of an epoch short): the same steps, predictions within 1e-6 relative; by
#      steps too; the train block's `accumulate` the same as the option
#   2. a run stopped by --save-every and resumed gives the bytes of the whole run
#   3. batchnorm (cnn_bn on a Fashion-MNIST-shaped subset is too slow here: a small
#      conv + bn model on blobs) trains with accumulation, statistics per micro-batch
#   4. bad values: located errors with status 1, --check the same as train
set -u
BPCC=$1
SRC=$2
. "$SRC/tests/lib.sh"
t_setup accumulate
SPIRAL=$SRC/examples/spiral.bp
cd "$T" || die "cd $T"

# predictions of two checkpoints within 1e-6 relative, in norm (||a - b|| / ||a|| over
# every probability: f32 sums in another order, amplified where Adam divides a tiny
# gradient by its sqrt(v), move single elements more)
same_predictions() {
  "$BPCC" predict "$SPIRAL" --weights "$1" --data spiral:n=200,seed=9 -o "$1.csv" > /dev/null || fail "predict $1"
  "$BPCC" predict "$SPIRAL" --weights "$2" --data spiral:n=200,seed=9 -o "$2.csv" > /dev/null || fail "predict $2"
  paste -d, "$1.csv" "$2.csv" | awk -F, -v what="$3" 'NR > 1 {
      h = NF / 2
      for (i = 1; i <= h; i++) { a = $i + 0; b = $(i + h) + 0; num += (a - b) * (a - b); den += a * a }
    } END { e = den > 0 ? sqrt(num / den) : 1
            if (e > 1e-6) { printf "%s: predictions differ by %g relative\n", what, e; exit 1 } }' ||
    fail "$3"
}

# 1. 1000 rows: 31 global batches of 32 and one of 8 (micro-batches 2, 2, 2, 2)
ARGS="--data spiral --seed 2 --threads 1 --epochs 2"
"$BPCC" train "$SPIRAL" $ARGS --batch 32 --save one.st > one.out 2> one.err || { fail "batch 32"; cat one.err; }
"$BPCC" train "$SPIRAL" $ARGS --batch 8 --accumulate 4 --save acc.st > acc.out 2> acc.err || { fail "accumulate 4"; cat acc.err; }
grep -q ", batch 8, accumulate 4 (32 rows a step), epochs 2, seed 2, 1 threads$" acc.out || { fail "settings line"; cat acc.out; }
grep -q '^trained 2 epochs (64 steps) in ' one.out || { fail "64 steps of 32"; cat one.out; }
grep -q '^trained 2 epochs (64 steps) in ' acc.out || { fail "64 steps of 4 x 8"; cat acc.out; }
l1=$(sed -n 's/^epoch 2\/2  loss \([^ ]*\)  acc \([^ ]*\) .*/\1 \2/p' one.out)
l2=$(sed -n 's/^epoch 2\/2  loss \([^ ]*\)  acc \([^ ]*\) .*/\1 \2/p' acc.out)
[ -n "$l1" ] && [ "$l1" = "$l2" ] || fail "epoch 2's loss and accuracy: '$l1' against '$l2'"
same_predictions one.st acc.st "accumulate 4 x 8 against batch 32"
# by steps
"$BPCC" train "$SPIRAL" --data spiral --seed 2 --threads 1 --steps 40 --batch 24 --save s1.st > /dev/null 2>&1 || fail "steps batch 24"
"$BPCC" train "$SPIRAL" --data spiral --seed 2 --threads 1 --steps 40 --batch 8 --accumulate 3 --save s3.st > /dev/null 2>&1 ||
  fail "steps accumulate 3"
same_predictions s1.st s3.st "by steps: accumulate 3 x 8 against batch 24"
# the train block's accumulate
sed 's/^    batch 32$/    batch 8\n    accumulate 4/' "$SPIRAL" > blk.bp
grep -q '^    accumulate 4$' blk.bp || fail "the block edit"
"$BPCC" train blk.bp $ARGS --save blk.st > blk.out 2>&1 || { fail "train block accumulate"; cat blk.out; }
cmp -s blk.st acc.st || fail "the train block's accumulate 4 differs from --accumulate 4"
# --accumulate overrides the block: --accumulate 1 --batch 32 is the plain run
"$BPCC" train blk.bp $ARGS --batch 32 --accumulate 1 --save ov.st > /dev/null 2>&1 || fail "override"
cmp -s ov.st one.st || fail "--accumulate 1 --batch 32 over the block differs from the plain run"

# 2. resume: 1 epoch saved, then the second resumed = the 2-epoch run, byte for byte
"$BPCC" train "$SPIRAL" --data spiral --seed 2 --threads 1 --epochs 1 --batch 8 --accumulate 4 --save r.st > /dev/null 2>&1 ||
  fail "first epoch"
"$BPCC" train "$SPIRAL" $ARGS --batch 8 --accumulate 4 --resume r.st --save r.st > /dev/null 2>&1 || fail "resume"
cmp -s r.st acc.st || fail "resumed run differs from the whole run"

# 3. batchnorm: statistics per micro-batch; it trains and the running statistics move
cat > bn.bp <<'EOF2'
model bnm(x: f32[B, 2], y: label[B, 3]) {
    h = relu(bn1d(dense(x, 16)))
    logits = dense(h, 3)
    loss softmax_cross_entropy(logits, y)
}
EOF2
"$BPCC" train bn.bp --data blobs:n=300 --batch 10 --accumulate 3 --epochs 3 --seed 1 --save bn.st > bn.out 2>&1 ||
  { fail "batchnorm with accumulation"; cat bn.out; }
grep -q '^trained 3 epochs (30 steps) in ' bn.out || { fail "batchnorm steps"; cat bn.out; }

# 4. bad values
expect_error_exact "bpcc: error: --accumulate '0': expected an integer from 1 to 1099511627775" \
  train "$SPIRAL" --data spiral --accumulate 0
expect_error_exact "bpcc: error: --accumulate 'x': expected an integer from 1 to 1099511627775" \
  train "$SPIRAL" --data spiral --accumulate x
sed 's/^    batch 32$/    batch 8\n    accumulate 0/' "$SPIRAL" > bad.bp
line=$(grep -n '^    accumulate 0$' bad.bp | cut -d: -f1)
expect_error_first "bad.bp:$line:16: error: 'accumulate' takes an integer of at least 1" --check bad.bp
expect_error_first "bad.bp:$line:16: error: 'accumulate' takes an integer of at least 1" train bad.bp --data spiral
# --watch's output statistics are the last micro-batch's (docs/training.md): numbers,
# not NaN from an empty row count
"$BPCC" train "$SPIRAL" --data spiral --epochs 1 --batch 8 --accumulate 4 --watch --threads 1 > watch.out 2>&1 ||
  fail "--accumulate --watch: exit $?"
grep -Eq '^  h1 +-?[0-9.e-]+ +[0-9.e-]+$' watch.out || fail "--accumulate --watch: no statistics of h1: $(grep h1 watch.out)"
grep -q 'nan' watch.out && fail "--accumulate --watch: NaN in the statistics: $(grep nan watch.out)"
t_done train_accumulate
