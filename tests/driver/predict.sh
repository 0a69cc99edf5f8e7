#!/bin/sh
# tests/driver/predict.sh BPCC NPY_CHECK SOURCE_DIR — `bpcc predict` on generated data
# (spiral, blobs): CSV and NPY output agree value for value, features-only data gives
# what labelled data gives, the default output, the top-k table, and each error with
# exit status 1 and no file left behind.
set -u
BPCC=$1
NPY=$2
SRC=$3
. "$SRC/tests/lib.sh"
t_setup predict
SPIRAL=$SRC/examples/spiral.bp

"$BPCC" train "$SPIRAL" --data spiral:n=300 --epochs 5 --save "$T/s.st" --quiet > /dev/null || fail "train spiral"
P="predict $SPIRAL --weights $T/s.st"

# 1. CSV: a header row, a row per input row, probabilities that sum to 1
"$BPCC" $P --data spiral:n=300 -o "$T/p.csv" > "$T/out" || fail "predict -o p.csv"
[ "$(cat "$T/out")" = "bpcc predict: wrote $T/p.csv: probs f32[300,3] (CSV)" ] || { fail "summary line"; cat "$T/out"; }
[ "$(head -1 "$T/p.csv")" = "probs[0],probs[1],probs[2]" ] || fail "CSV header: $(head -1 "$T/p.csv")"
[ "$(wc -l < "$T/p.csv")" -eq 301 ] || fail "CSV rows: $(wc -l < "$T/p.csv")"
awk -F, 'NR > 1 { s = $1 + $2 + $3; if (NF != 3 || s < 0.99999 || s > 1.00001) { print "row " NR ": " $0; bad = 1 } }
         END { exit bad }' "$T/p.csv" || fail "CSV rows are not probabilities"

# 2. NPY: [300, 3] float32, the same values as the CSV (both %.9g of the same floats)
"$BPCC" $P --data spiral:n=300 -o "$T/p.npy" > /dev/null || fail "predict -o p.npy"
[ "$("$NPY" shape "$T/p.npy")" = "300,3" ] || fail "NPY shape: $("$NPY" shape "$T/p.npy")"
"$NPY" csv "$T/p.npy" > "$T/npy.csv" || fail "npy_check csv"
tail -n +2 "$T/p.csv" | cmp -s - "$T/npy.csv" || fail "NPY and CSV values differ"
ls -a "$T" | grep -q 'tmp-' && fail "a temporary file was left: $(ls -a "$T")"

# 3. standard output: CSV when it is not a terminal, and with -o -; nothing else on it
"$BPCC" $P --data spiral:n=300 > "$T/stdout.csv" || fail "predict to a pipe"
cmp -s "$T/p.csv" "$T/stdout.csv" || fail "CSV on a pipe differs from -o p.csv"
"$BPCC" $P --data spiral:n=300 -o - > "$T/dash.csv" || fail "predict -o -"
cmp -s "$T/p.csv" "$T/dash.csv" || fail "-o - differs from -o p.csv"

# 4. blobs, batches of 7 (a partial last batch): NPY and CSV agree
"$BPCC" $P --data blobs:n=50 --batch 7 -o "$T/b.npy" > /dev/null || fail "predict blobs npy"
"$BPCC" $P --data blobs:n=50 --batch 50 -o "$T/b.csv" > /dev/null || fail "predict blobs csv"
[ "$("$NPY" shape "$T/b.npy")" = "50,3" ] || fail "blobs NPY shape"
tail -n +2 "$T/b.csv" > "$T/b.body"
"$NPY" csv "$T/b.npy" | cmp -s - "$T/b.body" || fail "blobs: batch 7 (NPY) and batch 50 (CSV) differ"

# 5. labels present are ignored: the same features without labels (npy:X.npy,
# csv:PATH:label=none) give the same predictions. The features come out of a model whose
# second output is its input, written by predict itself (an NPY that bpcc reads back);
# seed=1 is spiral.bp's, which made the labelled rows (id.bp has no train block: seed 0).
cat > "$T/id.bp" <<'EOF'
model ident(x: f32[B, 2], y: label[B, 3]) {
    output logits = dense(x, 3)
    output feats = x
    loss softmax_cross_entropy(logits, y)
}
EOF
"$BPCC" train "$T/id.bp" --data spiral:n=300 --epochs 3 --save "$T/id.st" --quiet > /dev/null || fail "train id.bp"
"$BPCC" predict "$T/id.bp" --weights "$T/id.st" --data spiral:n=300,seed=1 --output feats -o "$T/x.npy" > /dev/null || fail "feats npy"
"$BPCC" predict "$T/id.bp" --weights "$T/id.st" --data spiral:n=300,seed=1 --output feats -o "$T/x.csv" > /dev/null || fail "feats csv"
[ "$(head -1 "$T/x.csv")" = "feats[0],feats[1]" ] || fail "--output feats header"
"$BPCC" $P --data "npy:$T/x.npy" -o "$T/fx.csv" > /dev/null || fail "predict npy:X.npy"
"$BPCC" $P --data "csv:$T/x.csv:header=1,label=none" -o "$T/fc.csv" > /dev/null || fail "predict csv label=none"
cmp -s "$T/p.csv" "$T/fx.csv" || fail "npy:X.npy (no labels) differs from the labelled data"
cmp -s "$T/p.csv" "$T/fc.csv" || fail "csv:...:label=none differs from the labelled data"

# 6. the default output: the one the loss reads (id.bp: logits, not the later feats;
# below: yhat, not the later hidden that yhat is computed from), else the last one
# (spiral: its loss reads the logits, probs is the only output)
"$BPCC" predict "$T/id.bp" --weights "$T/id.st" --data spiral:n=30 | head -1 > "$T/h" || fail "id.bp default"
[ "$(cat "$T/h")" = "logits[0],logits[1],logits[2]" ] || fail "id.bp default output: $(cat "$T/h")"
cat > "$T/reg.bp" <<'EOF'
model reg(x: f32[B, 2], t: f32[B, 2]) {
    h = tanh(dense(x, 4))
    output yhat = dense(h, 2)
    output hidden = h
    loss mean((yhat - t) * (yhat - t))
}
EOF
printf '0.1,0.2,1,2\n0.3,0.4,3,4\n0.5,0.6,5,6\n' > "$T/r.csv"
"$BPCC" train "$T/reg.bp" --data "csv:$T/r.csv:target=2" --epochs 2 --save "$T/r.st" --quiet > /dev/null || fail "train reg"
"$BPCC" predict "$T/reg.bp" --weights "$T/r.st" --data "csv:$T/r.csv:target=2" > "$T/r.out" || fail "predict reg"
[ "$(head -1 "$T/r.out")" = "yhat[0],yhat[1]" ] || fail "reg default output: $(head -1 "$T/r.out")"
[ "$(wc -l < "$T/r.out")" -eq 4 ] || fail "reg rows"
printf '0.1,0.2\n0.3,0.4\n0.5,0.6\n' > "$T/rx.csv"
"$BPCC" predict "$T/reg.bp" --weights "$T/r.st" --data "csv:$T/rx.csv:label=none" | cmp -s - "$T/r.out" ||
  fail "regression on features only differs"

# 7. the top-k table (--top-k: a table even into a file): the header, at most 20 rows,
# the note, and classes and probabilities that are the CSV's. spiral's output is a
# softmax (printed as it is); id.bp's logits are printed through a softmax.
"$BPCC" $P --data spiral:n=300 --top-k 2 > "$T/top" || fail "--top-k 2"
[ "$(sed -n 1p "$T/top")" = "spiral: probs for spiral:n=300,classes=3,noise=0.2 (300 rows), top 2 of 3 classes; probabilities: the output (a softmax)" ] ||
  fail "top-k title: $(sed -n 1p "$T/top")"
[ "$(sed -n 2p "$T/top")" = "   row  top 1           top 2" ] || fail "top-k header: '$(sed -n 2p "$T/top")'"
[ "$(wc -l < "$T/top")" -eq 23 ] || fail "top-k lines: $(wc -l < "$T/top")"
[ "$(tail -1 "$T/top")" = "... 280 more rows (-o FILE.csv or -o FILE.npy writes them all)" ] || fail "top-k note: $(tail -1 "$T/top")"
# each printed row from the CSV: the two largest, first maximum first, %.4f
awk -F, 'NR > 1 && NR <= 21 { a = 0; for (j = 1; j < 3; j++) if ($(j+1) > $(a+1)) a = j
                             b = -1; for (j = 0; j < 3; j++) if (j != a && (b < 0 || $(j+1) > $(b+1))) b = j
                             printf "%6d  %-14s  %s\n", NR - 2, sprintf("%d (%.4f)", a, $(a+1)), sprintf("%d (%.4f)", b, $(b+1)) }' \
  "$T/p.csv" > "$T/top.want"
sed -n 3,22p "$T/top" | cmp -s - "$T/top.want" || { fail "top-k rows differ from the CSV"; diff "$T/top.want" "$T/top" | head -5; }
"$BPCC" predict "$T/id.bp" --weights "$T/id.st" --data spiral:n=30 --top-k 1 > "$T/ltop" || fail "logits --top-k"
sed -n 1p "$T/ltop" | grep -q 'top 1 of 3 classes; probabilities: softmax of the output$' || fail "logits title: $(sed -n 1p "$T/ltop")"
"$BPCC" predict "$T/id.bp" --weights "$T/id.st" --data spiral:n=30 -o "$T/l.csv" > /dev/null
awk -F, 'NR > 1 && NR <= 21 { m = $1; a = 0; for (j = 1; j < 3; j++) if ($(j+1) > m) { m = $(j+1); a = j }
                             s = 0; for (j = 1; j <= 3; j++) s += exp($j - m)
                             printf "%6d  %s\n", NR - 2, sprintf("%d (%.4f)", a, 1 / s) }' "$T/l.csv" > "$T/ltop.want"
sed -n 3,22p "$T/ltop" | cmp -s - "$T/ltop.want" || { fail "softmax of the logits"; diff "$T/ltop.want" "$T/ltop" | head -5; }
# a regression output on the table: its values, 8 columns at most
"$BPCC" predict "$T/reg.bp" --weights "$T/r.st" --data "csv:$T/rx.csv:label=none" --output hidden > /dev/null
# on a terminal (script(1) gives one): the table without --top-k, top 3 by default
if command -v script > /dev/null 2>&1; then
  script -qec "'$BPCC' $P --data spiral:n=30" /dev/null > "$T/tty" 2>&1 || fail "predict on a terminal"
  tr -d '\r' < "$T/tty" | sed -n 2p | grep -qx '   row  top 1           top 2           top 3' ||
    { fail "no table on a terminal"; cat "$T/tty"; }
  tr -d '\r' < "$T/tty" | grep -qx '\.\.\. 10 more rows (-o FILE.csv or -o FILE.npy writes them all)' || fail "tty note"
  ln -s /dev/tty "$T/tty.npy"
  script -qec "'$BPCC' $P --data spiral:n=30 -o '$T/tty.npy'" /dev/null > "$T/tty" 2>&1 && fail "NPY to a terminal"
  grep -q "^bpcc: error: $T/tty.npy: NPY is binary and this is a terminal" "$T/tty" || { fail "NPY to a terminal"; cat "$T/tty"; }
else
  echo "note: script(1) not found: the terminal checks are skipped"
fi

# 8. errors: exit 1, the message, and no file (nor temporary file) left behind
expect_error_first "bpcc: error: no weights: give --weights PATH" predict "$SPIRAL" --data spiral
expect_error_first "bpcc: error: no data: give --data SPEC" predict "$SPIRAL" --weights "$T/s.st"
expect_error_first "bpcc: error: no input file" predict --weights "$T/s.st" --data spiral
expect_error_first "bpcc: error: -o '$T/p.txt': the extension says what to write: .npy (NumPy float32) or .csv, or - for CSV on standard output" \
  $P --data spiral -o "$T/p.txt"
expect_error_first "bpcc: error: --output 'nope': model 'spiral' has no such output; its outputs: probs" $P --data spiral --output nope
expect_error_first "bpcc: error: --output 'probz': model 'ident' has no such output; its outputs: logits, feats" \
  predict "$T/id.bp" --weights "$T/id.st" --data spiral --output probz
expect_error_first "bpcc: error: spiral: load: cannot open $T/none.st: No such file or directory" \
  predict "$SPIRAL" --weights "$T/none.st" --data spiral:n=30 -o "$T/e.npy"
expect_error_first "bpcc: error: spiral: load: $T/id.st: checkpoint is for model 'ident', not 'spiral'" \
  predict "$SPIRAL" --weights "$T/id.st" --data spiral:n=30 -o "$T/e.csv"
cat > "$T/noout.bp" <<'EOF'
model noout(x: f32[B, 2], y: label[B, 3]) {
    loss softmax_cross_entropy(dense(x, 3), y)
}
EOF
expect_error_first "bpcc: error: $T/noout.bp: model 'noout' has no output to predict (declare one: output NAME = expr)" \
  predict "$T/noout.bp" --weights "$T/s.st" --data spiral -o "$T/e.npy"
expect_error_first "bpcc: error: $T/nodir/p.npy: cannot create a file beside it to write to: No such file or directory" \
  $P --data spiral -o "$T/nodir/p.npy"
expect_error_first "bpcc: error: blobs:n=300,classes=3,dim=3,std=1: data has 3 features per row; model input x expects f32[B,2]" \
  $P --data blobs:dim=3 -o "$T/e.npy"
printf '0.1,0.2\n' > "$T/f.csv"
expect_error_first "bpcc: error: $T/f.csv:1: column 2: label 0.2 is not a class index (an integer 0..999999) (the last column is the label unless told: csv:PATH:label=none reads every column as a feature)" \
  $P --data "csv:$T/f.csv"
expect_error_first "bpcc: error: --top-k '0': expected an integer from 1 to 2147483647" $P --data spiral --top-k 0
expect_error_first "bpcc: error: --top-k 4: output 'probs' has 3 classes" $P --data spiral --top-k 4
expect_error_first "bpcc: error: --top-k 2 chooses what is printed without -o; -o writes every value of the output" \
  $P --data spiral --top-k 2 -o "$T/e.csv"
expect_error_first "bpcc: error: --top-k: output 'yhat' is not a classifier's ([B, C] beside a label[B, C] input); without --top-k its values are printed" \
  predict "$T/reg.bp" --weights "$T/r.st" --data "csv:$T/rx.csv:label=none" --top-k 1
expect_error_first "bpcc: error: --split 'dev': expected test or train" $P --data spiral --split dev
expect_error_first "bpcc: error: --watch does nothing for predict: it is for train (per-epoch statistics) and --mem-report" \
  $P --data spiral --watch
for f in e.npy e.csv p.txt; do [ -e "$T/$f" ] && fail "a failed run left $f"; done
ls -a "$T" | grep -q 'tmp-' && fail "a failed run left a temporary file: $(ls -a "$T" | grep tmp-)"
# an existing file stays as it was when a run fails
cp "$T/p.npy" "$T/keep.npy"
expect_error_first "bpcc: error: spiral: load: cannot open $T/none.st: No such file or directory" \
  predict "$SPIRAL" --weights "$T/none.st" --data spiral:n=300 -o "$T/p.npy"
cmp -s "$T/p.npy" "$T/keep.npy" || fail "a failed run changed the existing p.npy"
# data without labels is refused where labels are needed
expect_error_first "bpcc: error: npy:$T/x.npy: data has features only, no labels; model input y expects label[B,3]" \
  eval "$SPIRAL" --weights "$T/s.st" --data "npy:$T/x.npy"
# help
"$BPCC" predict --help | grep -q '^usage: bpcc predict FILE.bp --weights PATH --data SPEC' || fail "predict --help"
"$BPCC" --help | grep -q '^  predict FILE.bp --weights PATH --data SPEC' || fail "predict in bpcc --help"

t_done driver_predict
