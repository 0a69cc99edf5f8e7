#!/bin/sh
# tests/train/cli.sh BPCC SOURCE_DIR — `bpcc train` and `bpcc eval` from the command line:
# resume gives a byte-identical checkpoint, eval prints loss and accuracy, the CSV log,
# and each bad input a one-line error with exit status 1.
set -u
BPCC=$1
SRC=$2
. "$SRC/tests/lib.sh"
t_setup train-cli
SPIRAL=$SRC/examples/spiral.bp

# 1. 4 epochs == 2 + resume 2, byte for byte (parameters, optimizer state, metadata)
"$BPCC" train "$SPIRAL" --data spiral:n=300 --epochs 4 --save "$T/a.st" --quiet > /dev/null || fail "train 4"
"$BPCC" train "$SPIRAL" --data spiral:n=300 --epochs 2 --save "$T/b.st" --quiet > /dev/null || fail "train 2"
"$BPCC" train "$SPIRAL" --data spiral:n=300 --epochs 4 --resume "$T/b.st" --save "$T/c.st" > "$T/resume.out" || fail "resume"
cmp -s "$T/a.st" "$T/c.st" || fail "4 epochs and 2 + resume 2 differ"
grep -q "^epoch 3/4  loss " "$T/resume.out" || fail "resume did not start at epoch 3"
grep -q "^epoch 1/4" "$T/resume.out" && fail "resume ran epoch 1 again"

"$BPCC" train "$SPIRAL" --data spiral:n=300 --epochs 4 --resume "$T/a.st" --quiet > "$T/none.out" || fail "resume at the end"
grep -q "^nothing to train: $T/a.st has 4 epochs done, --epochs is 4$" "$T/none.out" || fail "nothing-to-train line"

# 2. eval prints loss and accuracy of the weights
"$BPCC" eval "$SPIRAL" --weights "$T/a.st" --data spiral:n=300 > "$T/eval.out" || fail "eval"
grep -Eq '^spiral on spiral:n=300,classes=3,noise=0.2 \(300 rows\): loss [0-9.]+, accuracy [0-9.]+%$' "$T/eval.out" ||
  { fail "eval output"; cat "$T/eval.out"; }

# 2a. eval runs in inference mode (dropout the identity): the loss of a model with
# dropout 0.5 does not depend on --batch (issue 11, defect 4: it did, by 1e-1)
cat > "$T/drop.bp" <<'EOF2'
model drop(x: f32[B, 2], y: label[B, 3]) {
    h = dropout(tanh(dense(x, 32)), 0.5)
    loss softmax_cross_entropy(dense(h, 3), y)
}
EOF2
"$BPCC" train "$T/drop.bp" --data spiral:n=300 --epochs 2 --quiet --save "$T/drop.st" > /dev/null || fail "train drop.bp"
for b in 7 300; do
  "$BPCC" eval "$T/drop.bp" --weights "$T/drop.st" --data spiral:n=300 --batch $b | sed -n 's/.*: loss \([0-9.]*\).*/\1/p' > "$T/loss$b"
done
awk -v a="$(cat "$T/loss7")" -v b="$(cat "$T/loss300")" 'BEGIN { d = a - b; if (a == "" || d > 1e-5 || d < -1e-5) exit 1 }' ||
  fail "eval loss depends on the batch: $(cat "$T/loss7") at 7, $(cat "$T/loss300") at 300"

# 2b. --watch: every named activation (h1, h2, logits) beside the declared output probs,
# while the accuracy (from the first [B,C] output, probs) is unchanged by the extra outputs
"$BPCC" train "$SPIRAL" --data spiral:n=90 --epochs 1 --batch 30 --watch > "$T/watch.out" || fail "watch"
"$BPCC" train "$SPIRAL" --data spiral:n=90 --epochs 1 --batch 30 > "$T/nowatch.out" || fail "no watch"
for a in probs h1 h2 logits; do
  grep -Eq "^  $a +[-0-9.e+]+ +[-0-9.e+]+$" "$T/watch.out" || { fail "--watch lacks activation $a"; cat "$T/watch.out"; }
done
[ "$(grep '^epoch 1/1' "$T/watch.out" | sed 's/  lr .*//')" = "$(grep '^epoch 1/1' "$T/nowatch.out" | sed 's/  lr .*//')" ] ||
  fail "--watch changed the epoch line"

# 3. the CSV log, one row per epoch (and per step)
"$BPCC" train "$SPIRAL" --data spiral:n=90 --epochs 2 --batch 30 --log "$T/log.csv" --log-steps --quiet > /dev/null || fail "log"
[ "$(head -1 "$T/log.csv")" = "kind,epoch,step,lr,loss,accuracy,val_loss,val_accuracy,seconds" ] || fail "CSV header"
[ "$(grep -c '^step,' "$T/log.csv")" = 6 ] || fail "CSV step rows"
[ "$(grep -c '^epoch,' "$T/log.csv")" = 2 ] || fail "CSV epoch rows"
grep -q '^epoch,2,6,0.01,' "$T/log.csv" || fail "CSV epoch 2 row"

# 4. one line per epoch when stdout is not a terminal, validation from --val-split
"$BPCC" train "$SPIRAL" --data spiral:n=300 --epochs 2 --val-split 0.2 --schedule 'step(1, 0.5)' > "$T/lines.out" || fail "val-split"
grep -Eq '^epoch 2/2  loss [0-9.]+  acc [0-9.]+%  val_loss [0-9.]+  val_acc [0-9.]+%  lr 0.005  ' "$T/lines.out" ||
  { fail "epoch line"; cat "$T/lines.out"; }
grep -q "$(printf '\r')" "$T/lines.out" && fail "a progress bar was drawn into a file"

# 5. errors: exit 1 and a message that names the problem
expect_error_has "cannot open /nonexistent/x.csv" train "$SPIRAL" --data csv:/nonexistent/x.csv
expect_error_has "blobs:n=300,classes=3,dim=3,std=1: data has 3 features per row; model input x expects f32[B,2]" \
  train "$SPIRAL" --data blobs:dim=3
expect_error_has "unknown option '--bogus'" train "$SPIRAL" --data spiral --bogus
expect_error_has "no data: give --data SPEC" train "$SPIRAL"
expect_error_has "--optimizer 'adam(momentum=1)': adam takes no argument 'momentum' at column 6" \
  train "$SPIRAL" --data spiral --optimizer 'adam(momentum=1)'
expect_error_has "--schedule 'warm': unknown schedule" train "$SPIRAL" --data spiral --schedule warm
expect_error_has "--epochs '0': expected an integer >= 1" train "$SPIRAL" --data spiral --epochs 0
expect_error_has "--val and --val-split exclude each other" train "$SPIRAL" --data spiral --val xor --val-split 0.1
expect_error_has "the checkpoint has 4 epochs done; --epochs 2 asks for fewer" \
  train "$SPIRAL" --data spiral --epochs 2 --resume "$T/a.st"
expect_error_has "checkpoint is for model 'spiral', not 'mnist_mlp'" \
  eval "$SRC/examples/mnist_mlp.bp" --weights "$T/a.st" --data blobs:dim=784,classes=10
printf 'junk' > "$T/junk.st"
expect_error_has "$T/junk.st" eval "$SPIRAL" --weights "$T/junk.st" --data spiral
expect_error_has "no weights: give --weights PATH" eval "$SPIRAL" --data spiral
# an f64 model: training and libraries are f32 (the f64 code generator is for the tests)
printf 'model m(x: f64[B, 2], y: label[B, 2]) {\n    output z = tanh(x)\n    loss mean(x * x)\n}\n' > "$T/m64.bp"
expect_error_has "$T/m64.bp:1:9: error: input 'x' is f64: training, evaluation and model libraries run f32 models" \
  train "$T/m64.bp" --data spiral:n=90,classes=2 --epochs 1
expect_error_has "input 'x' is f64" "$T/m64.bp" -o "$T/m64.so"

# 6. a non-finite value names the first tensor that went bad, with its DSL location,
# from the batch re-evaluated with the parameters before the failing update; a
# checkpoint is claimed only where one was written.
# log(z) of z = dense(x, 4): rows x and -x make some z negative whatever the weights
printf 'model nf(x: f32[B, 3], y: f32[B, 1]) {\n    z = dense(x, 4)\n    h = log(z)\n    p = dense(h, 1)\n    loss mse(p, y)\n}\n' > "$T/nf.bp"
printf '1,2,3,1\n-1,-2,-3,1\n' > "$T/nf.csv"
"$BPCC" train "$T/nf.bp" --data "csv:$T/nf.csv:target=1" --epochs 2 --save "$T/nf.st" --quiet > /dev/null 2> "$T/err"
[ $? -eq 1 ] || fail "non-finite at step 1: exit status"
[ "$(cat "$T/err")" = "bpcc: error: non-finite value at step 1 (epoch 1, batch 1 of 1): first in 'h', the log at $T/nf.bp:3:9 (nan); training stopped, no checkpoint was written" ] ||
  { fail "non-finite at step 1: message"; cat "$T/err"; }
[ -e "$T/nf.st" ] && fail "non-finite at step 1 wrote a checkpoint"
# sgd with lr 1e20: epoch 1 is fine (and saved); with the parameters before step 2
# (about -1e21) the matmul is finite and mse's square overflows first. The parameters
# after the failing update are not finite: evaluated with those, the first bad tensor
# would be a parameter.
printf 'layer lin(x: [B, I]) -> [B, 1] {\n    param W: [I, 1] init ones\n    return x @ W\n}\n' > "$T/reg.bp"
printf 'model reg(x: f32[B, 2], t: f32[B, 1]) {\n    h = lin(x)\n    output p = h\n    loss mse(p, t)\n}\n' >> "$T/reg.bp"
printf 'train reg {\n    optimizer sgd(lr = 1e20)\n    batch 4\n}\n' >> "$T/reg.bp"
printf '1,1,1\n2,1,1\n3,1,1\n4,1,1\n' > "$T/reg.csv"
"$BPCC" train "$T/reg.bp" --data "csv:$T/reg.csv:target=1" --epochs 3 --save-every 1 --save "$T/reg.st" > "$T/out" 2> "$T/err"
[ $? -eq 1 ] || fail "non-finite at step 2: exit status"
[ "$(cat "$T/err")" = "bpcc: error: non-finite value at step 2 (epoch 2, batch 1 of 1): first in the pow at $T/reg.bp:8:10 (inf); training stopped, the last good checkpoint '$T/reg.st' (epoch 1) is left as it was" ] ||
  { fail "non-finite at step 2: message"; cat "$T/err"; }
grep -q "^epoch 1/3  loss 7.5 " "$T/out" || { fail "non-finite at step 2: epoch 1 line"; cat "$T/out"; }
grep -aq '"bpcc.epoch":"1"' "$T/reg.st" || fail "the checkpoint left in place is not epoch 1's"
"$BPCC" train "$T/reg.bp" --data "csv:$T/reg.csv:target=1" --epochs 1 --save "$T/reg1.st" --quiet > /dev/null ||
  fail "reg, 1 epoch"
cmp -s "$T/reg.st" "$T/reg1.st" || fail "the checkpoint left in place differs from a 1-epoch run's"

# 7. the train block takes a cosine warm-up as --schedule does: the same rates
sed '/^train spiral {/,$d' "$SPIRAL" > "$T/warm.bp"
printf 'train spiral {\n    optimizer adam(lr = 0.01)\n    batch 30\n    schedule cosine(T_max = 4, warmup = 2)\n}\n' >> "$T/warm.bp"
"$BPCC" train "$T/warm.bp" --data spiral:n=90 --epochs 4 > "$T/warm.out" 2>&1 || { fail "train block warmup"; cat "$T/warm.out"; }
[ "$(grep '^epoch' "$T/warm.out" | sed 's/.*  lr \([^ ]*\) .*/\1/' | tr '\n' ' ')" = "0.005 0.01 0.01 0.005 " ] ||
  { fail "train block warmup: rates"; cat "$T/warm.out"; }
"$BPCC" train "$T/warm.bp" --data spiral:n=90 --epochs 4 --schedule 'cosine(T_max = 4, warmup = 2)' > "$T/warm2.out" 2>&1 ||
  fail "--schedule warmup"
# (the epoch's time last: "0.3 ms", "12.4 s", "3 min 05 s")
[ "$(grep '^epoch' "$T/warm.out" | sed -E 's/  [^ ]+ (ms|s|min [0-9]+ s)$//')" = "$(grep '^epoch' "$T/warm2.out" | sed -E 's/  [^ ]+ (ms|s|min [0-9]+ s)$//')" ] ||
  fail "train block warmup and --schedule warmup differ"
# after a frontend error, its diagnostics and nothing else
printf 'model m(x: f32[B, 2], y: label[B, 3]) {\n    loss softmax_cross_entropy(dense(x, 3), y)\n}\ntrain m {\n    schedule step(2, warmup = 1)\n}\n' > "$T/tb.bp"
"$BPCC" train "$T/tb.bp" --data spiral > "$T/out" 2> "$T/err"
[ $? -eq 1 ] || fail "frontend error: exit status"
grep -q "^$T/tb.bp:5:22: error: 'step' has no argument 'warmup' (it takes: step_size, gamma)$" "$T/err" ||
  { fail "frontend error: diagnostic"; cat "$T/err"; }
grep -q "bpcc: error" "$T/err" && { fail "frontend error: a second message"; cat "$T/err"; }
"$BPCC" eval "$T/tb.bp" --weights "$T/a.st" --data spiral > "$T/out" 2> "$T/err"
[ $? -eq 1 ] || fail "eval after a frontend error: exit status"
grep -q "bpcc: error" "$T/err" && { fail "eval after a frontend error: a second message"; cat "$T/err"; }

# 8. a CSV label the model cannot hold: file:line, as every other CSV error
printf 'a,b,label\n0.1,0.2,0\n\n0.3,0.1,5\n' > "$T/labrange.csv"
expect_error_has "bpcc: error: $T/labrange.csv:4: data label 5 is out of range for model input y: label[B,3]" \
  train "$SPIRAL" --data "csv:$T/labrange.csv:header=1"

# 9. a batch larger than the data: one batch of every row, said once (not with --quiet)
"$BPCC" train "$SPIRAL" --data spiral:n=90 --epochs 2 --batch 99999999999 > "$T/out" 2> "$T/err" || { fail "huge batch"; cat "$T/err"; }
[ "$(cat "$T/err")" = "bpcc: note: batch 99999999999 is larger than the 90 training rows; training with batch 90 (one batch per epoch)" ] ||
  { fail "huge batch: note"; cat "$T/err"; }
grep -q "batch 90, epochs 2" "$T/out" || fail "huge batch: settings line"
grep -q "^trained 2 epochs (2 steps)" "$T/out" || fail "huge batch: steps"
"$BPCC" train "$SPIRAL" --data spiral:n=90 --epochs 2 --batch 90 --quiet > "$T/out90" 2>&1 || fail "batch 90"
"$BPCC" train "$SPIRAL" --data spiral:n=90 --epochs 2 --batch 99999999999 --quiet > "$T/outq" 2> "$T/err" || fail "huge batch --quiet"
[ -s "$T/err" ] && { fail "huge batch --quiet printed a note"; cat "$T/err"; }
[ "$(sed 's/ in [^:]*:/:/' "$T/outq")" = "$(sed 's/ in [^:]*:/:/' "$T/out90")" ] || fail "huge batch differs from batch 90"

t_done train_cli
