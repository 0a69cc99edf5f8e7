#!/bin/sh
# tests/train/tinygpt.sh BPCC SOURCE_DIR — examples/tinygpt.bp on the fortunes text
# (issue 14), a short run (skipped, exit 77, where ../shared/data/fortunes is absent):
#   1. 20 steps by steps with --eval-every 10: two evaluations in nats and bits per
#      character, the validation loss falling from the uniform 5.55 (ln 256)
#   2. 10 steps, then --resume to 20: the checkpoint of the 20-step run, byte for byte
#   3. bpcc sample from it: the prompt and N bytes; the same seed the same text, greedy
#      text the same for every seed
# The validation part is the last 1% (split=0.99: 24,777 bytes, 387 windows) to keep
# the evaluations short.
set -u
BPCC=$1
SRC=$2
. "$SRC/tests/lib.sh"
DATA=$SRC/../shared/data/fortunes/fortunes.txt
[ -f "$DATA" ] || t_skip "$DATA is absent (the fortunes text of ../shared/data)"
t_setup tinygpt
cd "$T" || die "cd $T"
GPT=$SRC/examples/tinygpt.bp
ARGS="--data text:$DATA:split=0.99 --eval-every 10 --threads 2"

# 1.
"$BPCC" train "$GPT" $ARGS --steps 20 --save a.st --log a.csv > a.out 2> a.err || { fail "train"; cat a.err; }
grep -q "^  data text:$DATA: 2,452,894 training bytes, 24,777 validation bytes in 387 windows of 64 + 1, vocabulary 256$" a.out ||
  { fail "the data line"; cat a.out; }
grep -q "^  adamw(lr=0.001, weight_decay=0.01), schedule constant, batch 32, steps 20 (validation every 10), seed 0, 2 threads$" a.out ||
  { fail "the settings line (the train block's recipe)"; cat a.out; }
[ "$(grep -c '^step [12]0/20  loss [0-9.]*  val_loss [0-9.]* nats/char  [0-9.]* bits/char  lr 0.001  ' a.out)" -eq 2 ] ||
  { fail "two evaluations"; cat a.out; }
awk -F, 'NR == 2 { a = $7 } NR == 3 { b = $7 } END { exit !(a < 5.545 && b < a) }' a.csv ||
  { fail "the validation loss does not fall below ln 256"; cat a.csv; }

# 2.
"$BPCC" train "$GPT" $ARGS --steps 10 --save r.st --quiet > /dev/null 2>&1 || fail "10 steps"
"$BPCC" train "$GPT" $ARGS --steps 20 --save r.st --resume r.st > r.out 2>&1 || { fail "resume"; cat r.out; }
cmp -s a.st r.st || fail "10 + 10 resumed steps and 20 steps: the checkpoints differ"

# 3.
S="sample $GPT --weights a.st --threads 2 -n 40"
"$BPCC" $S --prompt "Q: " --seed 1 > s1 2> err || { fail "sample"; cat err; }
[ "$(wc -c < s1)" -eq 43 ] && [ "$(head -c 3 s1)" = "Q: " ] || { fail "the prompt and 40 bytes"; od -c s1 | head; }
"$BPCC" $S --prompt "Q: " --seed 1 > s2 2>&1 || fail "sample again"
cmp -s s1 s2 || fail "the same seed gave other text"
"$BPCC" $S --prompt "Q: " --temperature 0 --seed 1 > g1 2>&1 || fail "greedy"
"$BPCC" $S --prompt "Q: " --temperature 0 --seed 2 > g2 2>&1 || fail "greedy 2"
cmp -s g1 g2 || fail "greedy text depends on the seed"

t_done train_tinygpt
