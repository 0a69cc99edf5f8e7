#!/bin/sh
# tests/driver/sample.sh BPCC SOURCE_DIR — bpcc sample (issue 14) on a byte-level model
# trained here for a few steps:
#   1. the prompt, then exactly N bytes; the same seed the same text, another seed
#      other text; --temperature 0 the same text whatever the seed; --top-k 1 greedy
#   2. a prompt longer than the context (its last T bytes are the context); -n 0
#   3. errors: no or an empty prompt, -n < 0, --temperature < 0, --top-k < 1, missing
#      weights, another model's weights, a model without byte logits
set -u
BPCC=$1
SRC=$2
. "$SRC/tests/lib.sh"
t_setup sample
cd "$T" || die "cd $T"
cat > lm.bp <<'BP'
model bigram(x: label[B, 8, 256], y: label[B, 8, 256]) {
    e = embedding(x, 256, 16)
    output logits = dense_normal(e, 256)
    loss softmax_cross_entropy(logits, y)
}
BP
awk 'BEGIN { srand(7); split("the cat sat on a mat and ran far away", w, " ");
             s = ""; while (length(s) < 12000) s = s w[int(rand() * 9) + 1] " "; printf "%s", substr(s, 1, 12000) }' > words.txt
"$BPCC" train lm.bp --data text:words.txt --batch 16 --seed 3 --lr 0.01 --steps 200 --save lm.st --quiet > /dev/null 2>&1 ||
  die "training the model"

# 1.
S="sample lm.bp --weights lm.st --threads 1"
"$BPCC" $S --prompt "the " -n 50 --seed 1 > s1 2> err || { fail "sample"; cat err; }
[ "$(wc -c < s1)" -eq 54 ] || { fail "the prompt and 50 bytes"; od -c s1 | head; }
[ "$(head -c 4 s1)" = "the " ] || fail "the prompt first"
[ -s err ] && { fail "sample printed on stderr"; cat err; }
"$BPCC" $S --prompt "the " -n 50 --seed 1 > s1b 2>&1 || fail "sample again"
cmp -s s1 s1b || fail "the same seed gave other text"
"$BPCC" $S --prompt "the " -n 50 --seed 2 > s2 2>&1 || fail "seed 2"
cmp -s s1 s2 && fail "seeds 1 and 2 gave the same text"
"$BPCC" $S --prompt "the " -n 50 --temperature 0 --seed 1 > g1 2>&1 || fail "greedy"
"$BPCC" $S --prompt "the " -n 50 --temperature 0 --seed 9 > g2 2>&1 || fail "greedy 2"
"$BPCC" $S --prompt "the " -n 50 --top-k 1 --seed 5 > g3 2>&1 || fail "top-k 1"
cmp -s g1 g2 && cmp -s g1 g3 || fail "greedy sampling depends on the seed"
# the training text has only these bytes: a model that learned it draws no others
tail -c 50 s1 | tr -d 'thecasonmdrfwy ' | grep -q . && fail "bytes the text never had: $(cat s1)"
# the words of the text follow each other: greedy bigrams settle into a cycle of them
[ "$(tail -c 50 g1 | tr -d 'thecasonmdrfwy ')" = "" ] || fail "greedy: $(cat g1)"

# 2.
"$BPCC" $S --prompt "a long prompt of more than eight bytes: the " -n 10 --seed 1 > l 2>&1 || fail "long prompt"
[ "$(wc -c < l)" -eq 54 ] && [ "$(head -c 44 l)" = "a long prompt of more than eight bytes: the " ] || { fail "long prompt"; cat l; }
"$BPCC" $S --prompt "xyz" -n 0 > z 2>&1 || fail "-n 0"
[ "$(cat z)" = "xyz" ] || fail "-n 0: $(cat z)"

# 3.
expect_error_exact "bpcc: error: no prompt: give --prompt TEXT
Try 'bpcc sample --help' for more information." $S
expect_error_exact "bpcc: error: --prompt '': the prompt must hold at least one byte
Try 'bpcc sample --help' for more information." $S --prompt ""
expect_error_exact "bpcc: error: -n '-1': expected an integer from 0 to 1099511627776" $S --prompt a -n -1
expect_error_exact "bpcc: error: --temperature '-0.5': must be >= 0 (0: the most likely byte)
Try 'bpcc sample --help' for more information." $S --prompt a --temperature -0.5
expect_error_exact "bpcc: error: --top-k '0': expected an integer >= 1" $S --prompt a --top-k 0
expect_error_exact "bpcc: error: --weights: cannot open none.st: No such file or directory" \
  sample lm.bp --weights none.st --prompt a
"$BPCC" train "$SRC/examples/spiral.bp" --data spiral --epochs 1 --save sp.st --quiet > /dev/null 2>&1 || fail "spiral"
expect_error_exact "bpcc: error: bigram: load: sp.st: checkpoint is for model 'spiral', not 'bigram'" sample lm.bp --weights sp.st --prompt a
expect_error_exact "bpcc: error: $SRC/examples/spiral.bp: model 'spiral' does not take bytes: bpcc sample needs tokens label[B, T, 256] as the first input; its inputs: x: f32[B,2], y: label[B,3]" \
  sample "$SRC/examples/spiral.bp" --weights sp.st --prompt a
sed 's/output logits = dense_normal(e, 256)/output h = dense_normal(e, 256)\n    output p = softmax(h)/; s/(logits, y)/(h, y)/' lm.bp > two.bp
expect_error_exact "bpcc: error: --output 'e': model 'bigram' has no such output; its outputs: h: f32[B,8,256], p: f32[B,8,256]" \
  sample two.bp --weights lm.st --prompt a --output e
sed 's/output logits = /logits = /' lm.bp > nolog.bp
expect_error_exact "bpcc: error: nolog.bp: model 'bigram' has no output of logits f32[B,8,256] (declare one: output logits = ...); its outputs: none" \
  sample nolog.bp --weights lm.st --prompt a

t_done driver_sample
