#!/bin/sh
# tests/train/buffers.sh BPCC SOURCE_DIR — batchnorm's running statistics (buffers,
# issue 13) through the binary, on tests/passes/bn_small.bp:
#   1. a checkpoint holds every buffer under its path name
#   2. two epochs equal one epoch, saved, then --resume for the second, byte for byte
#      (the running statistics restored exactly, not reset)
#   3. eval --weights reads them: the same loss and accuracy twice, and another
#      checkpoint's statistics give another loss
#   4. --check and --mem-report list them (a `buffers` row of their bytes)
set -u
BPCC=$1
SRC=$2
. "$SRC/tests/lib.sh"
t_setup buffers
BP=$SRC/tests/passes/bn_small.bp
ARGS="--data blobs:n=300,classes=3,dim=64 --batch 16 --threads 1 --seed 5 --quiet"

# 1, 2
"$BPCC" train "$BP" $ARGS --epochs 2 --save "$T/a.st" > "$T/out" 2>&1 || { fail "train 2 epochs"; cat "$T/out"; }
for b in c.bn r.n1 r.n2 f.bn1d; do
  for s in running_mean running_var; do
    grep -aq "\"$b.$s\"" "$T/a.st" || fail "the checkpoint has no tensor $b.$s"
  done
done
grep -aq '"optim\.[^"]*running' "$T/a.st" && fail "a buffer has optimizer state"
"$BPCC" train "$BP" $ARGS --epochs 1 --save "$T/b.st" > "$T/out" 2>&1 || { fail "train 1 epoch"; cat "$T/out"; }
"$BPCC" train "$BP" $ARGS --epochs 2 --resume "$T/b.st" --save "$T/c.st" > "$T/out" 2>&1 ||
  { fail "resume"; cat "$T/out"; }
cmp -s "$T/a.st" "$T/c.st" || fail "two epochs and one + resume differ"

# 3
E="--data blobs:n=300,classes=3,dim=64"
"$BPCC" eval "$BP" --weights "$T/a.st" $E > "$T/e1" 2>&1 || { fail "eval a"; cat "$T/e1"; }
"$BPCC" eval "$BP" --weights "$T/a.st" $E > "$T/e2" 2>&1 || { fail "eval a again"; cat "$T/e2"; }
"$BPCC" eval "$BP" --weights "$T/b.st" $E > "$T/e3" 2>&1 || { fail "eval b"; cat "$T/e3"; }
grep -Eq '^bn_small on .*: loss [0-9.]+, accuracy [0-9.]+%$' "$T/e1" || { fail "eval output"; cat "$T/e1"; }
cmp -s "$T/e1" "$T/e2" || fail "eval of one checkpoint differs between runs"
cmp -s "$T/e1" "$T/e3" && fail "eval of two checkpoints agree: the weights or statistics were not read"

# 4
"$BPCC" --check "$BP" > "$T/check" 2>&1 || fail "--check"
grep -Eq '^    f\.bn1d\.running_var +\[8\] +8  ones$' "$T/check" || { fail "--check lists no buffer f.bn1d.running_var"; cat "$T/check"; }
"$BPCC" --mem-report "$BP" > "$T/mem" 2>&1 || fail "--mem-report"
# 8 buffers of 4, 4, 4, 4, 4, 4, 8, 8 floats, each at 16 floats: 128 floats
grep -Eq '^  buffers +512 bytes .*\(8 tensors: running statistics, no gradient\)$' "$T/mem" ||
  { fail "--mem-report: the buffers row"; grep buffers "$T/mem"; }
t_done buffers
