#!/bin/sh
# tests/passes/train_learns.sh BPCC SOURCE_DIR FILE MODEL DATA — a test model of
# tests/passes (reduce_rank3.bp: reductions over inner axes of a rank-3 input, with and
# without keep; reshape_rank4.bp: reshape and flatten of a rank-4 input; conv_small.bp:
# conv2d and the conv layer on an [B,1,8,8] input) through the
# commands after --check: `bpcc train` on DATA (its train block: 8 epochs) must learn
# (the last epoch's loss below a quarter of the first's, training accuracy >= 90%),
# `bpcc eval` must read the saved weights, and `-o` must write the library and header.
set -u
BPCC=$1
SRC=$2
FILE=$3
MODEL=$4
DATA=$5
. "$SRC/tests/lib.sh"
t_setup "$MODEL"
BP=$SRC/tests/passes/$FILE

"$BPCC" train "$BP" --data "$DATA" --log "$T/log.csv" --save "$T/w.st" --quiet > "$T/train.out" 2>&1 ||
  { fail "train exited $?"; cat "$T/train.out"; }
[ "$(grep -c '^epoch,' "$T/log.csv")" = 8 ] || fail "expected 8 epoch rows in the log"
# kind,epoch,step,lr,loss,accuracy,...
awk -F, '$1 == "epoch" { if (!first) first = $5; last = $5; acc = $6 }
         END { exit !(last < first / 4 && acc >= 0.9) }' "$T/log.csv" ||
  { fail "did not learn (first and last epoch loss, last accuracy):"; cat "$T/log.csv"; }

"$BPCC" eval "$BP" --weights "$T/w.st" --data "$DATA" > "$T/eval.out" 2>&1 ||
  { fail "eval exited $?"; cat "$T/eval.out"; }
grep -Eq "^$MODEL on $DATA,std=1 \\(300 rows\\): loss [0-9.]+(e-[0-9]+)?, accuracy [0-9.]+%\$" "$T/eval.out" ||
  { fail "eval output"; cat "$T/eval.out"; }

"$BPCC" "$BP" -o "$T/$MODEL.so" > "$T/aot.out" 2>&1 || { fail "-o exited $?"; cat "$T/aot.out"; }
[ -s "$T/$MODEL.so" ] && [ -s "$T/$MODEL.h" ] || fail "-o did not write $MODEL.so and $MODEL.h"

t_done "train_$MODEL"
