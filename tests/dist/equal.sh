#!/bin/sh
# tests/dist/equal.sh BPCC SOURCE_DIR CKDIFF WHAT — issue 16: two epochs on 2 ranks
# (mpirun -np 2, --batch B each) against one process at the same global batch (--batch
# 2B): the checkpoints' tensors (parameters and optimizer state) agree within 1e-6
# relative, max|a - b| / max|b| per tensor (tests/dist/ckdiff.c). WHAT:
#   spiral   examples/spiral.bp on spiral (1,000 rows), batch 32 per rank
#   mnist    examples/mnist_mlp.bp on 3,000 rows of MNIST (idx: of the t10k files,
#            --val-split 0.7: the other 7,000 validate, shared out over the ranks),
#            batch 32 per rank; exit 77 where ../shared/data/mnist is absent
#   resume   spiral: one epoch on 2 ranks saved, the second on 1 process from that
#            checkpoint (--resume with another P), against 2 epochs of 1 process
#   deterministic   --deterministic-reduce, the models' own Adam: 2 ranks at --batch 32
#            against 1 process at --batch 32 --accumulate 2 (the same micro-batches),
#            spiral and the MNIST rows: the checkpoints identical, byte for byte
# The optimizer is SGD with momentum: Adam divides each step by sqrt(v), so a weight
# whose gradient stays near zero (MNIST's border pixels) turns the last-bit differences of
# a sum taken in another order into differences of its step; with Adam the runs agree to
# 5e-6 after two MNIST epochs (measured), with SGD to 5e-7. --deterministic-reduce makes
# them identical whatever the optimizer (WHAT deterministic).
set -u
BPCC=$1
SRC=$2
CKDIFF=$3
WHAT=$4
. "$SRC/tests/lib.sh"
. "$SRC/tests/dist/lib_mpi.sh"
t_setup "dist-$WHAT"
mpi_setup "dist_$WHAT"

OPT="--optimizer sgd(lr=0.05,momentum=0.9) --threads 1 --quiet"
if [ "$WHAT" = deterministic ]; then
  M=$SRC/../shared/data/mnist
  set -- "$SRC/examples/spiral.bp" "--data spiral"
  if [ -f "$M/t10k-images-idx3-ubyte.gz" ] && [ -f "$M/t10k-labels-idx1-ubyte.gz" ]; then
    set -- "$@" "$SRC/examples/mnist_mlp.bp" \
      "--data idx:$M/t10k-images-idx3-ubyte.gz,$M/t10k-labels-idx1-ubyte.gz --val-split 0.7"
  else
    echo "note: $M is absent: spiral only"
  fi
  while [ $# -gt 0 ]; do
    name=$(basename "$1" .bp)
    timeout 120 "$BPCC" train "$1" $2 --threads 1 --quiet --epochs 2 --batch 32 --accumulate 2 --deterministic-reduce \
      --save "$T/$name.1.st" > "$T/out1" 2> "$T/err1" || { cat "$T/out1" "$T/err1"; die "$name: one process"; }
    run_mpi 2 train "$1" $2 --threads 1 --quiet --epochs 2 --batch 32 --deterministic-reduce --save "$T/$name.2.st" \
      > "$T/out2" 2> "$T/err2" || { cat "$T/out2" "$T/err2"; die "$name: 2 ranks"; }
    if cmp -s "$T/$name.1.st" "$T/$name.2.st"; then
      echo "$name: the checkpoints of 2 ranks and of 1 process (--accumulate 2) are identical, byte for byte"
    else
      "$CKDIFF" "$T/$name.1.st" "$T/$name.2.st" exact
      fail "$name: --deterministic-reduce: the checkpoints differ"
    fi
    shift 2
  done
  t_done dist_deterministic
fi

case $WHAT in
spiral | resume)
  MODEL=$SRC/examples/spiral.bp
  DATA="--data spiral" ;;
mnist)
  M=$SRC/../shared/data/mnist
  [ -f "$M/t10k-images-idx3-ubyte.gz" ] && [ -f "$M/t10k-labels-idx1-ubyte.gz" ] || t_skip "$M is absent"
  MODEL=$SRC/examples/mnist_mlp.bp
  DATA="--data idx:$M/t10k-images-idx3-ubyte.gz,$M/t10k-labels-idx1-ubyte.gz --val-split 0.7" ;;
*) die "unknown WHAT '$WHAT'" ;;
esac

timeout 120 "$BPCC" train "$MODEL" $DATA $OPT --epochs 2 --batch 64 --save "$T/one.st" > "$T/out1" 2> "$T/err1" ||
  { cat "$T/out1" "$T/err1"; die "one process"; }
if [ "$WHAT" = resume ]; then
  run_mpi 2 train "$MODEL" $DATA $OPT --epochs 1 --batch 32 --save "$T/half.st" > "$T/out2" 2> "$T/err2" ||
    { cat "$T/out2" "$T/err2"; die "2 ranks, epoch 1"; }
  grep -q "^trained 1 epoch (16 steps)" "$T/out2" || fail "2 ranks, epoch 1: $(cat "$T/out2")"
  timeout 120 "$BPCC" train "$MODEL" $DATA $OPT --epochs 2 --batch 64 --resume "$T/half.st" --save "$T/two.st" \
    > "$T/out3" 2> "$T/err3" || { cat "$T/out3" "$T/err3"; die "1 process resumed from 2 ranks' checkpoint"; }
  grep -q "^trained 2 epochs (32 steps)" "$T/out3" || fail "resumed: $(cat "$T/out3")"
else
  run_mpi 2 train "$MODEL" $DATA $OPT --epochs 2 --batch 32 --save "$T/two.st" > "$T/out2" 2> "$T/err2" ||
    { cat "$T/out2" "$T/err2"; die "2 ranks"; }
  # one report, rank 0's: the same final line as one process's, less the time
  [ "$(grep -c '^trained' "$T/out2")" = 1 ] || fail "2 ranks: not exactly one final line: $(cat "$T/out2")"
  [ ! -s "$T/err2" ] || fail "2 ranks wrote on stderr: $(cat "$T/err2")"
  # (mpirun gives rank 0 a terminal for stdout: its lines are wrapped, continued
  # with 4 spaces; joined again here)
  a=$(sed -n 's/^trained \(.*\) in [^:]*: \(.*\); saved.*/\1 \2/p' "$T/out1")
  b=$(awk '/^    / { sub(/^    /, " "); printf "%s", $0; next } { printf "\n%s", $0 } END { print "" }' "$T/out2" |
    sed -n 's/^trained \(.*\) in [^:]*: \(.*\); saved.*/\1 \2/p')
  [ -n "$a" ] && [ "$a" = "$b" ] || fail "final lines differ: '$a' against '$b'"
fi
"$CKDIFF" "$T/one.st" "$T/two.st" 1e-6 > "$T/diff" || { cat "$T/diff"; fail "the checkpoints differ by more than 1e-6"; }
tail -1 "$T/diff"

t_done "dist_$WHAT"
