#!/bin/sh
# tests/train/progress.sh BPCC SOURCE_DIR — what `bpcc train` and `bpcc eval` print for
# people when stderr is not a terminal (ctest's pipes): no bar and no status line, one
# line per epoch on stdout, --print-every lines on stderr; numbers for people (at most
# 4 significant digits in train's losses, 6 in eval's, durations with units, counts
# with separators and plurals) while the CSV log keeps %.9g; the --watch statistics in
# LOG.watch.csv; accuracy at 0.5 for a sigmoid output of float targets.
# (The bar on a real terminal: progress_tty.sh; the formatters: runtime_progress.)
set -u
BPCC=$1
SRC=$2
. "$SRC/tests/lib.sh"
t_setup progress
SPIRAL=$SRC/examples/spiral.bp
CR=$(printf '\r')
ESC=$(printf '\033')

# sig_digits NUMBER: its significant digits (1.235e+08 -> 4, 0.06231 -> 4, 7.5 -> 2)
sig_digits() {
  echo "$1" | sed -E 's/^-//; s/[eE].*//; s/\.//; s/^0+//' | tr -d '\n' | wc -c
}

# A duration as people say it: "0.3 ms", "2.5 ms", "345 ms", "12.4 s", "3 min 05 s"
DUR='(<0\.01 ms|0\.[0-9]+ ms|[0-9]\.[0-9] ms|[0-9]+ ms|[0-9]+\.[0-9] s|[0-9]+ min [0-9][0-9] s|[0-9]+ h [0-9][0-9] min)'

# 1. stderr not a terminal: nothing on it; stdout holds the header (4 lines), exactly one
#    line per epoch and the final line, with no carriage return or escape sequence
"$BPCC" train "$SPIRAL" --data spiral:n=300 --epochs 3 --batch 30 > "$T/out" 2> "$T/err" || fail "3 epochs"
[ -s "$T/err" ] && { fail "stderr is not empty when it is not a terminal:"; cat "$T/err"; }
[ "$(wc -l < "$T/out")" -eq 8 ] || { fail "stdout is not 4 header lines, 3 epoch lines and the final line:"; cat "$T/out"; }
for e in 1 2 3; do
  [ "$(grep -c "^epoch $e/3  loss " "$T/out")" -eq 1 ] || fail "not exactly one line for epoch $e"
done
grep -q "$CR" "$T/out" && fail "a carriage return in stdout"
grep -q "$ESC" "$T/out" && fail "an escape sequence in stdout"
grep -Eq "^epoch 3/3  loss [0-9.e+-]+  acc [0-9]+\.[0-9]{2}%  lr 0\.01  $DUR\$" "$T/out" ||
  { fail "epoch line format"; grep '^epoch 3/3' "$T/out"; }
grep -Eq "^trained 3 epochs \(30 steps\) in $DUR: loss [0-9.e+-]+, accuracy [0-9.]+%\$" "$T/out" ||
  { fail "final line format"; tail -1 "$T/out"; }
grep -Eq '^bpcc train: model spiral \(4,547 parameters\) from .*, compiled in [^()]+ \(set-up [^()]+\)$' "$T/out" ||
  { fail "header: parameter count with separators"; head -1 "$T/out"; }
grep -Eq "compiled in $DUR \(set-up $DUR\)\$" "$T/out" || { fail "header: durations"; head -1 "$T/out"; }
grep -q '[0-9]s$\|[0-9]s:' "$T/out" && { fail "a duration without a space before its unit"; cat "$T/out"; }
for v in $(sed -n 's/.*loss \([^ ,]*\).*/\1/p' "$T/out"); do
  [ "$(sig_digits "$v")" -le 4 ] || fail "loss $v has more than 4 significant digits"
done

# 2. singular counts: one epoch of one step; thousands separators in the rows
"$BPCC" train "$SPIRAL" --data spiral:n=1500 --epochs 1 --batch 1500 > "$T/one" 2> "$T/err" || fail "1 epoch, 1 step"
grep -Eq "^trained 1 epoch \(1 step\) in $DUR: " "$T/one" || { fail "singular: '1 epoch (1 step)'"; tail -1 "$T/one"; }
grep -q '^  data spiral:n=1500,classes=3,noise=0.2: 1,500 rows$' "$T/one" || { fail "rows with a separator"; sed -n 2p "$T/one"; }

# 3. a loss of 1e30 reads 1e+30 (not 31 digits); the CSV keeps 9 significant digits
cat > "$T/big.bp" <<'EOF'
model big(x: f32[B, 2], y: label[B, 3]) {
    output p = softmax(dense(x, 3))
    loss 1e30 + cross_entropy(p, y)
}
EOF
"$BPCC" train "$T/big.bp" --data spiral:n=90 --epochs 1 --batch 30 --log "$T/big.csv" > "$T/big.out" 2>&1 || fail "big loss"
grep -q '^epoch 1/1  loss 1e+30  ' "$T/big.out" || { fail "a loss of 1e30 for people"; cat "$T/big.out"; }
grep -q ': loss 1e+30, ' "$T/big.out" || fail "a loss of 1e30 in the final line"
grep -q '^epoch,1,3,0.001,1.00000002e+30,' "$T/big.csv" || { fail "the CSV's loss of 1e30 (%.9g)"; cat "$T/big.csv"; }

# 4. eval: six significant digits, rows with a separator
"$BPCC" train "$SPIRAL" --data spiral:n=300 --epochs 2 --quiet --save "$T/s.st" > /dev/null || fail "train for eval"
"$BPCC" eval "$SPIRAL" --weights "$T/s.st" --data spiral:n=1200 > "$T/eval.out" || fail "eval"
l=$(sed -n 's/.*(1,200 rows): loss \([^,]*\), accuracy [0-9.]*%$/\1/p' "$T/eval.out")
[ -n "$l" ] && [ "$(sig_digits "$l")" -le 6 ] && [ "$(sig_digits "$l")" -ge 5 ] ||
  { fail "eval line: loss with 6 significant digits, 1,200 rows"; cat "$T/eval.out"; }

# 5. --print-every N: a line every N steps of each epoch, on stderr, with the epoch's
#    running loss (at the epoch's last step the epoch's loss); stdout as without it
"$BPCC" train "$SPIRAL" --data spiral:n=300 --epochs 2 --batch 30 --print-every 5 > "$T/pe.out" 2> "$T/pe.err" ||
  fail "--print-every"
[ "$(sed -n 's/^\(epoch [0-9]\/2  step [0-9]*\/10\)  .*/\1/p' "$T/pe.err" | tr '\n' '|')" = \
  "epoch 1/2  step 5/10|epoch 1/2  step 10/10|epoch 2/2  step 5/10|epoch 2/2  step 10/10|" ] ||
  { fail "--print-every 5: the lines"; cat "$T/pe.err"; }
[ "$(grep -Ecv "^epoch [12]/2  step (5|10)/10  loss [0-9.e+-]+  ([0-9.,]+ steps/s|[0-9.]+ s/step)  [0-9:]+<[0-9:]+\$" "$T/pe.err")" -eq 0 ] ||
  { fail "--print-every: line format"; cat "$T/pe.err"; }
for e in 1 2; do
  a=$(sed -n "s/^epoch $e\/2  step 10\/10  loss \([^ ]*\) .*/\1/p" "$T/pe.err")
  b=$(sed -n "s/^epoch $e\/2  loss \([^ ]*\) .*/\1/p" "$T/pe.out")
  [ -n "$a" ] && [ "$a" = "$b" ] || fail "epoch $e: the running loss at its last step ($a) is not the epoch's ($b)"
done
[ "$(grep -c '^epoch ' "$T/pe.out")" -eq 2 ] || fail "--print-every changed stdout"
grep -q "$CR" "$T/pe.err" && fail "--print-every drew a bar into a file"
"$BPCC" train "$SPIRAL" --data spiral:n=300 --epochs 1 --batch 30 --print-every 3 2>&1 > /dev/null |
  grep -c '^epoch 1/1  step [369]/10  ' | grep -qx 3 || fail "--print-every 3 of 10 steps: not 3 lines"
expect_error_first --no-stdout "bpcc: error: --print-every '0': expected an integer >= 1" \
  train "$SPIRAL" --data spiral --print-every 0
expect_error_first --no-stdout "bpcc: error: --print-every and --quiet exclude each other" \
  train "$SPIRAL" --data spiral --print-every 5 --quiet

# 6. --watch with --log: the statistics in LOG.watch.csv, one row per parameter and per
#    activation per epoch, the same numbers as the printed table in full precision; the
#    main log as without --watch
"$BPCC" train "$SPIRAL" --data spiral:n=90 --epochs 2 --batch 30 --watch --log "$T/w.csv" > "$T/w.out" 2>&1 ||
  { fail "--watch --log"; cat "$T/w.out"; }
[ "$(head -1 "$T/w.csv")" = "kind,epoch,step,lr,loss,accuracy,val_loss,val_accuracy,seconds" ] || fail "main log header"
[ "$(wc -l < "$T/w.csv")" -eq 3 ] || { fail "main log: header and 2 epoch rows"; cat "$T/w.csv"; }
W=$T/w.watch.csv
[ -f "$W" ] || fail "no $W"
[ "$(head -1 "$W")" = "epoch,step,kind,name,grad_norm,update_ratio,mean,std" ] || fail "watch log header"
[ "$(grep -Ec '^[12],(3|6),parameter,(h1|h2|logits)\.[Wb],[-0-9.e+]+,[-0-9.e+]+,,$' "$W")" -eq 12 ] ||
  { fail "watch log: 6 parameter rows per epoch"; cat "$W"; }
[ "$(grep -Ec '^[12],(3|6),activation,(probs|h1|h2|logits),,,[-0-9.e+]+,[-0-9.e+]+$' "$W")" -eq 8 ] ||
  { fail "watch log: 4 activation rows per epoch"; cat "$W"; }
[ "$(wc -l < "$W")" -eq 21 ] || fail "watch log: header and 20 rows"
grep -q '^1,3,parameter,h1\.W,' "$W" && grep -q '^2,6,activation,probs,' "$W" || fail "watch log: epoch and step columns"
# epoch 2's table against the CSV, each value printed with %.4g
sed -n '/^watch, epoch 2/,/^epoch 2\/2/p' "$T/w.out" | awk 'NF == 3 && $1 != "parameter" && $1 != "activation" { print $1, $2, $3 }' > "$T/table"
awk -F, '$1 == 2 { a = $3 == "parameter" ? $5 : $7; b = $3 == "parameter" ? $6 : $8; printf "%s %.4g %.4g\n", $4, a, b }' "$W" > "$T/fromcsv"
[ -s "$T/table" ] && cmp -s "$T/table" "$T/fromcsv" || { fail "watch log and the printed table differ"; diff "$T/table" "$T/fromcsv"; }
# resume appends, one header; a log not named .csv gets .watch.csv appended; no --watch, no file
"$BPCC" train "$SPIRAL" --data spiral:n=90 --epochs 1 --batch 30 --watch --log "$T/r.log" --save "$T/r.st" --quiet > /dev/null ||
  fail "watch log, 1 epoch"
"$BPCC" train "$SPIRAL" --data spiral:n=90 --epochs 2 --batch 30 --watch --log "$T/r.log" --resume "$T/r.st" --quiet > /dev/null ||
  fail "watch log, resumed"
[ "$(grep -c '^epoch,' "$T/r.log.watch.csv")" -eq 1 ] && [ "$(wc -l < "$T/r.log.watch.csv")" -eq 21 ] &&
  [ "$(grep -c '^2,6,' "$T/r.log.watch.csv")" -eq 10 ] || { fail "resumed watch log"; cat "$T/r.log.watch.csv"; }
"$BPCC" train "$SPIRAL" --data spiral:n=90 --epochs 1 --batch 30 --log "$T/nw.csv" --quiet > /dev/null || fail "log without watch"
[ -e "$T/nw.watch.csv" ] && fail "a watch log without --watch"
mkdir "$T/d.watch.csv"   # (the header is out before the logs open, as for --log itself)
"$BPCC" train "$SPIRAL" --data spiral:n=90 --epochs 1 --watch --log "$T/d.csv" > "$T/out" 2> "$T/err"
[ $? -eq 1 ] && [ "$(cat "$T/err")" = "bpcc: error: $T/d.watch.csv: cannot open the log for writing" ] ||
  { fail "an unwritable watch log"; cat "$T/err"; }
grep -q '^epoch' "$T/out" && fail "an unwritable watch log: trained anyway"

# 7. a sigmoid output of float targets (binary): accuracy at 0.5 in train, the log and
#    eval; the last epoch's val_acc on the same data is eval's accuracy for its weights.
#    60 points of a grid, t = x + y/2 > 0 with 9 of them flipped: at best 85% (51 of 60)
awk 'BEGIN { for (i = 0; i < 60; i++) { x = (i % 12) / 6 - 1; y = int(i / 12) / 2 - 1; t = (x + 0.5 * y > 0);
  if (i % 7 == 3) t = 1 - t; printf "%g,%g,%d\n", x, y, t } }' > "$T/bin.csv"
cat > "$T/bin.bp" <<'EOF'
model bin(x: f32[B, 2], t: f32[B, 1]) {
    output p = sigmoid(dense_xavier(x, 1))
    loss binary_cross_entropy(p, t)
}
EOF
D="csv:$T/bin.csv:target=1"
"$BPCC" train "$T/bin.bp" --data "$D" --val "$D" --epochs 30 --batch 10 --lr 0.05 --log "$T/bin.log" --save "$T/bin.st" > "$T/bin.out" 2>&1 ||
  { fail "train bin.bp"; cat "$T/bin.out"; }
grep -Eq '^epoch 30/30  loss [0-9.e+-]+  acc [0-9.]+%  val_loss [0-9.e+-]+  val_acc [0-9.]+%  ' "$T/bin.out" ||
  { fail "sigmoid model: no accuracy in the epoch line"; tail -3 "$T/bin.out"; }
grep -Eq '^epoch,30,180,0.05,[0-9.e+-]+,[0-9.e+-]+,[0-9.e+-]+,[0-9.e+-]+,' "$T/bin.log" || { fail "sigmoid model: accuracy in the log"; tail -1 "$T/bin.log"; }
va=$(sed -n 's/^epoch 30\/30 .*  val_acc \([0-9.]*\)%.*/\1/p' "$T/bin.out")
"$BPCC" eval "$T/bin.bp" --weights "$T/bin.st" --data "$D" > "$T/bine.out" || fail "eval bin.bp"
ea=$(sed -n 's/.*(60 rows): loss [^,]*, accuracy \([0-9.]*\)%$/\1/p' "$T/bine.out")
[ -n "$va" ] && [ "$va" = "$ea" ] || { fail "sigmoid model: val_acc $va%, eval $ea%"; cat "$T/bine.out"; }
awk -v a="$ea" 'BEGIN { exit !(a >= 80 && a <= 85) }' || fail "sigmoid model: accuracy $ea%, not in [80%, 85%]"

t_done train_progress
