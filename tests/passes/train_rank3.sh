#!/bin/sh
# tests/passes/train_rank3.sh BPCC SOURCE_DIR — tests/passes/reduce_rank3.bp (reductions
# over inner axes of a rank-3 input, with and without keep) through the commands after
# --check: `bpcc train` on blobs data (20 features per row are one [4,5] row of x) must
# learn (the last epoch's loss below a quarter of the first's, training accuracy >= 90%),
# `bpcc eval` must read the saved weights, and `-o` must write the library and header.
set -u
BPCC=$1
SRC=$2
. "$SRC/tests/lib.sh"
t_setup rank3
BP=$SRC/tests/passes/reduce_rank3.bp
DATA=blobs:n=300,classes=3,dim=20

"$BPCC" train "$BP" --data "$DATA" --log "$T/log.csv" --save "$T/w.st" --quiet > "$T/train.out" 2>&1 ||
  { fail "train exited $?"; cat "$T/train.out"; }
[ "$(grep -c '^epoch,' "$T/log.csv")" = 8 ] || fail "expected 8 epoch rows in the log"
# kind,epoch,step,lr,loss,accuracy,...
awk -F, '$1 == "epoch" { if (!first) first = $5; last = $5; acc = $6 }
         END { exit !(last < first / 4 && acc >= 0.9) }' "$T/log.csv" ||
  { fail "did not learn (first and last epoch loss, last accuracy):"; cat "$T/log.csv"; }

"$BPCC" eval "$BP" --weights "$T/w.st" --data "$DATA" > "$T/eval.out" 2>&1 ||
  { fail "eval exited $?"; cat "$T/eval.out"; }
grep -Eq '^reduce3 on blobs:n=300,classes=3,dim=20,std=1 \(300 rows\): loss [0-9.]+, accuracy [0-9.]+%$' "$T/eval.out" ||
  { fail "eval output"; cat "$T/eval.out"; }

"$BPCC" "$BP" -o "$T/reduce3.so" > "$T/aot.out" 2>&1 || { fail "-o exited $?"; cat "$T/aot.out"; }
[ -s "$T/reduce3.so" ] && [ -s "$T/reduce3.h" ] || fail "-o did not write reduce3.so and reduce3.h"

t_done train_reduce_rank3
