#!/bin/sh
# tests/train/text.sh BPCC SOURCE_DIR — text:FILE through bpcc train and eval (issue 14):
#   1. a byte-level model trained by steps: an evaluation every N steps and at the end,
#      validation loss in nats and bits per character (bits = nats / ln 2), CSV rows
#   2. --resume: 30 + 30 resumed steps = 60 steps, byte for byte (the windows drawn
#      continue from the checkpoint's text_window counter)
#   3. bpcc eval on the validation windows gives the run's last validation loss
#   4. errors: epochs with text data, --val-split, seq= against the model's T, a model
#      that does not take bytes, a missing file, a file too short, split out of range
set -u
BPCC=$1
SRC=$2
. "$SRC/tests/lib.sh"
t_setup text
cd "$T" || die "cd $T"
# A bigram model over bytes: context T = 8, one class per position.
cat > lm.bp <<'BP'
model bigram(x: label[B, 8, 256], y: label[B, 8, 256]) {
    e = embedding(x, 256, 16)
    output logits = dense_normal(e, 256)
    loss softmax_cross_entropy(logits, y)
}
BP
# 12,000 bytes of words: 10,800 train, 1,200 validate (149 windows of 9 bytes at 10,800 + 8i)
awk 'BEGIN { srand(7); split("the cat sat on a mat and ran far away", w, " ");
             s = ""; while (length(s) < 12000) s = s w[int(rand() * 9) + 1] " "; printf "%s", substr(s, 1, 12000) }' > words.txt
[ "$(wc -c < words.txt)" -eq 12000 ] || die "words.txt"
ARGS="--data text:words.txt --batch 16 --seed 3 --lr 0.01 --threads 1"

# 1.
"$BPCC" train lm.bp $ARGS --steps 60 --eval-every 20 --log a.csv --save a.st > a.out 2> a.err || { fail "train"; cat a.err; }
grep -q "^  data text:words.txt: 10,800 training bytes, 1,200 validation bytes in 149 windows of 8 + 1, vocabulary 256$" a.out ||
  { fail "the data line"; cat a.out; }
grep -q "^  adam(lr=0.01), schedule constant, batch 16, steps 60 (validation every 20), seed 3, 1 threads$" a.out ||
  { fail "the settings line"; cat a.out; }
[ "$(grep -c '^step [246]0/60  loss [0-9.]*  val_loss [0-9.]* nats/char  [0-9.]* bits/char  lr 0.01  ' a.out)" -eq 3 ] ||
  { fail "three evaluation lines"; cat a.out; }
grep -q "^trained 60 steps in .*: loss [0-9.]*, val_loss [0-9.]* nats/char ([0-9.]* bits/char); saved a.st$" a.out ||
  { fail "the final line"; cat a.out; }
# bits/char = nats/char / ln 2, to the 4 digits printed
sed -n 's/.*val_loss \([0-9.]*\) nats\/char  \([0-9.]*\) bits\/char.*/\1 \2/p' a.out |
  awk '{ r = $1 / log(2); if ((r - $2) / $2 > 1e-3 || ($2 - r) / $2 > 1e-3) { print "bad: " $0; exit 1 } }' ||
  fail "bits/char is not nats/char / ln 2"
[ "$(cut -d, -f1-3 a.csv | tr '\n' ' ')" = "kind,epoch,step eval,0,20 eval,0,40 eval,0,60 " ] || { fail "the CSV"; cat a.csv; }
# the validation loss falls: a bigram learns the words
awk -F, 'NR == 2 { a = $7 } NR == 4 { b = $7 } END { exit !(b < a) }' a.csv || { fail "the loss does not fall"; cat a.csv; }
grep -aq '"bpcc.rng":"philox4x32-10 seed=3 shuffle_epoch=0 shuffle_row=0 dropout_step=60 text_window=960"' a.st ||
  fail "the checkpoint's window counter"

# 2.
"$BPCC" train lm.bp $ARGS --steps 30 --eval-every 20 --save r.st --quiet > /dev/null 2>&1 || fail "30 steps"
"$BPCC" train lm.bp $ARGS --steps 60 --eval-every 20 --save r.st --resume r.st > r.out 2>&1 || { fail "resume"; cat r.out; }
cmp -s a.st r.st || fail "30 + 30 resumed steps and 60 steps: the checkpoints differ"
[ "$(grep '^step 60/60' r.out | sed 's/  [^ ]* [mµ]*s$//')" = "$(grep '^step 60/60' a.out | sed 's/  [^ ]* [mµ]*s$//')" ] ||
  { fail "the last evaluation after resuming"; cat r.out a.out; }

# 3.
"$BPCC" eval lm.bp --weights a.st --data text:words.txt > e.out 2> e.err || { fail "eval"; cat e.err; }
grep -q "^bigram on text:words.txt (validation) (149 windows): loss [0-9.]* nats/char ([0-9.]* bits/char)$" e.out ||
  { fail "eval's line"; cat e.out; }
want=$(tail -n 1 a.csv | cut -d, -f7)
got=$(sed -n 's/.*: loss \([0-9.]*\) nats.*/\1/p' e.out)
awk -v a="$want" -v b="$got" 'BEGIN { d = (a - b) / a; exit !(d < 1e-5 && d > -1e-5) }' ||
  fail "eval's loss $got is not the run's last val_loss $want"

# 4.
expect_error_exact "bpcc: error: text:words.txt: text data has no epochs: train it by steps (--steps N, or \`steps N\` in the train block)" \
  train lm.bp $ARGS --epochs 2
expect_error_exact "bpcc: error: text:words.txt: text data validates on its own last part (text:FILE:split=F); --val-split does not apply" \
  train lm.bp $ARGS --steps 2 --val-split 0.1
expect_error_exact "bpcc: error: text:words.txt: seq=16 does not match model bigram's context T = 8 (input x: label[B,8,256])" \
  train lm.bp --data text:words.txt:seq=16 --steps 2
expect_error_exact "bpcc: error: text:words.txt (training): text data feeds two inputs label[B, T, 256] (the bytes of a window, then the bytes that follow them); model spiral has x: f32[B,2], y: label[B,3]" \
  train "$SRC/examples/spiral.bp" --data text:words.txt --steps 2
sed 's/256/100/g' lm.bp > v100.bp
expect_error_exact "bpcc: error: text:words.txt (training): text data has a vocabulary of 256 (bytes); model input x has 100 classes (x: label[B,8,100], y: label[B,8,100])" \
  train v100.bp --data text:words.txt --steps 2
expect_error_exact "bpcc: error: cannot open nope.txt: No such file or directory" train lm.bp --data text:nope.txt --steps 2
printf 'abcdefghijklmnopqrst' > short.txt
expect_error_exact "bpcc: error: short.txt: 20 bytes split at 0.9 are too few for windows of seq=8 + 1 bytes: the training part has 18 bytes and the validation part 2 (each needs at least 9)" \
  train lm.bp --data text:short.txt --steps 2
expect_error_exact "bpcc: error: text: split=1 must be between 0 and 1 (exclusive): the fraction of the file that trains" \
  train lm.bp --data text:words.txt:split=1 --steps 2

expect_error_exact "bpcc: error: text:words.txt: --split train: the training windows of text data are drawn at random, not evaluated in order; eval reads the validation windows" \
  eval lm.bp --weights a.st --data text:words.txt --split train
expect_error_exact "bpcc: error: text:words.txt: bpcc predict reads rows of features; text data is for train and eval, and bpcc sample generates text from a model trained on it" \
  predict lm.bp --weights a.st --data text:words.txt -o p.csv

t_done train_text
