#!/bin/sh
# tests/train/loss_scale.sh BPCC SOURCE_DIR — loss scaling from the command line (issue
# 15): --loss-scale and the train block's loss_scale, the line of each skipped step, the
# final line's count, resume byte for byte with the scaler's state, the stop after 64
# skipped steps in a row, and each bad value a located one-line error with status 1.
set -u
BPCC=$1
SRC=$2
. "$SRC/tests/lib.sh"
t_setup train-loss-scale
SPIRAL=$SRC/examples/spiral.bp

# 1. bad values, and the commands that derive no gradient
expect_error_exact "bpcc: error: --loss-scale '0': must be 'dynamic', 'off' or a positive finite number" \
  train "$SPIRAL" --data spiral --loss-scale 0
expect_error_exact "bpcc: error: --loss-scale '1e39': must lie within f32's normal range (1.2e-38 to 3.4e38)" \
  train "$SPIRAL" --data spiral --loss-scale 1e39
expect_error_exact "bpcc: error: --loss-scale 'static': must be 'dynamic', 'off' or a positive finite number" \
  --emit=grad-ir "$SPIRAL" --loss-scale static
expect_error_exact "bpcc: error: --loss-scale does nothing for eval: it scales the loss of a training step, and this command derives no gradient" \
  eval "$SPIRAL" --weights "$T/none.st" --data spiral --loss-scale 8

expect_error_exact "bpcc: error: --loss-scale does nothing for gradcheck: gradcheck checks the unscaled gradient (its interpreter seeds the backward with 1)" \
  gradcheck "$SPIRAL" --loss-scale dynamic

# 2. the seed of the backward: always the `loss_scale` leaf, read at run time (the scale,
# 1 without loss scaling, times the micro-batch's weight: issue 16)
"$BPCC" --emit=grad-ir "$SPIRAL" --loss-scale dynamic > "$T/ir" || fail "emit grad-ir"
grep -Eq '^  %[0-9]+ = loss_scale : f32\[\] +# .*\[seed from %[0-9]+\]$' "$T/ir" || { fail "no loss_scale seed"; cat "$T/ir"; }
"$BPCC" --emit=grad-ir "$SPIRAL" > "$T/ir0" || fail "emit grad-ir (off)"
grep -Eq '^  %[0-9]+ = loss_scale : f32\[\] +# .*\[seed from %[0-9]+\]$' "$T/ir0" || { fail "no loss_scale seed without --loss-scale"; cat "$T/ir0"; }

# 3. a loss times 2^112: at the initial scale 2^16 its seed overflows f32, so step 1 is
# skipped and logged, then the scale holds and the loss falls (sgd with lr 0.2 / 2^112)
cat > "$T/big.bp" <<'EOF2'
model big(x: f32[B, 2], y: label[B, 3]) {
    h1     = tanh(dense_xavier(x, 16))
    logits = dense_xavier(h1, 3)
    output probs = softmax(logits)
    loss 5192296858534827628530496329220096.0 * softmax_cross_entropy(logits, y)
}
train big {
    optimizer sgd(lr = 3.851859888774472e-35, momentum = 0.9)
    seed 3
    epochs 4
    loss_scale dynamic
}
EOF2
"$BPCC" train "$T/big.bp" --data spiral:n=300 --save "$T/a.st" > "$T/out" 2> "$T/err" || { fail "train big"; cat "$T/err"; }
[ "$(cat "$T/err")" = "step 1: gradients not finite at loss scale 65536; update skipped, loss scale now 32768" ] ||
  { fail "the skipped step's line"; cat "$T/err"; }
grep -q ', loss scale dynamic from 65536$' "$T/out" || { fail "settings line"; cat "$T/out"; }
grep -q '; 1 step skipped, loss scale 32768; saved ' "$T/out" || { fail "final line"; cat "$T/out"; }
first=$(sed -n 's/^epoch 1\/4  loss \([^ ]*\) .*/\1/p' "$T/out")
last=$(sed -n 's/^epoch 4\/4  loss \([^ ]*\) .*/\1/p' "$T/out")
awk -v a="$first" -v b="$last" 'BEGIN { exit !(a != "" && b + 0 < 0.9 * a) }' || fail "the loss did not fall: $first -> $last"
# a run by steps: the same line, the same count
"$BPCC" train "$T/big.bp" --data spiral:n=300 --steps 12 > "$T/steps.out" 2> "$T/steps.err" || fail "train big --steps"
[ "$(cat "$T/steps.err")" = "step 1: gradients not finite at loss scale 65536; update skipped, loss scale now 32768" ] ||
  { fail "--steps: the skipped step's line"; cat "$T/steps.err"; }
grep -q '^trained 12 steps in .*; 1 step skipped, loss scale 32768$' "$T/steps.out" || { fail "--steps: final line"; cat "$T/steps.out"; }
# --quiet: no line per skipped step
"$BPCC" train "$T/big.bp" --data spiral:n=300 --quiet > /dev/null 2> "$T/errq" || fail "train big --quiet"
[ -s "$T/errq" ] && { fail "--quiet printed a skipped step"; cat "$T/errq"; }
# resume: 2 epochs + 2 equal 4, byte for byte (skipped_steps, loss_scale in the metadata)
"$BPCC" train "$T/big.bp" --data spiral:n=300 --epochs 2 --save "$T/b.st" --quiet > /dev/null 2>&1 || fail "train 2"
"$BPCC" train "$T/big.bp" --data spiral:n=300 --resume "$T/b.st" --save "$T/c.st" --quiet > /dev/null 2>&1 || fail "resume"
cmp -s "$T/a.st" "$T/c.st" || fail "4 epochs and 2 + resume 2 differ"
grep -aq '"skipped_steps":"1","loss_scale":"32768","loss_scale_good_steps":"39"' "$T/a.st" || fail "scaler metadata"
# a fixed scale from the command line over the block's dynamic one: never changes, skips
# every step (2^112 * 2^16 overflows at each), and 64 in a row stop training
expect_error_has "first in the gradients of 64 steps in a row, skipped by loss scaling down to scale 65536 (no scale makes them finite); training stopped, no checkpoint was written" \
  train "$T/big.bp" --data spiral:n=3000 --loss-scale 65536
[ "$(grep -c '^step [0-9]*: gradients not finite at loss scale 65536 (fixed); update skipped$' "$T/err")" = 64 ] ||
  fail "64 lines of skipped steps"

# 4. gradients that no scale makes finite (sqrt at 0): the stop names the tensor
cat > "$T/nan.bp" <<'EOF2'
model nan(x: f32[B, 2], y: label[B, 3]) {
    logits = dense(x, 3)
    output probs = softmax(logits)
    loss softmax_cross_entropy(logits, y) + mean(sqrt(logits * 0.0))
}
EOF2
expect_error_has "non-finite value at step 64 (epoch 1, batch 64 of 94): first in the div of the backward pass (rule sqrt.dx) at $T/nan.bp:4:50 (inf), at the last of the gradients of 64 steps in a row, skipped by loss scaling down to scale 3.55271368e-15" \
  train "$T/nan.bp" --data spiral:n=3000 --loss-scale dynamic

# 5. f16 (issue 15, done when): two regressions of one target, head b's loss times 1e-8,
# so that the gradient reaching b's weight product is below f16's 2^-24. Without loss
# scaling b's gradient is 0 and its weights never move (--watch: grad_norm 0,
# update/weight 0 in every epoch); precision f16 scales by default (dynamic): step 1
# overflows at 2^16 and is skipped and logged, then b's weights move every epoch.
awk 'BEGIN { for (i = 0; i < 256; i++) { a = sin(i*1.3); b = cos(i*0.7); c = sin(i*0.37+1); d = cos(i*2.1+0.5);
  printf "%.6f,%.6f,%.6f,%.6f,%.6f\n", a, b, c, d, 0.8*a - 0.5*b + 0.3*c + 0.1*d } }' > "$T/reg.csv"
cat > "$T/two.bp" <<'EOF2'
model two(x: f32[B, 4], t: f32[B, 1]) {
    output a = linear(x, 1)
    output b = linear(x, 1)
    loss 10.0 * mean((a - t) * (a - t)) + 0.00000001 * mean((b - t) * (b - t))
}
train two {
    optimizer adam(lr = 0.01)
    epochs 10
    seed 1
    precision f16
}
EOF2
"$BPCC" train "$T/two.bp" --data "csv:$T/reg.csv:target=1" --loss-scale off --watch > "$T/off.out" 2> "$T/off.err" ||
  { fail "f16 off"; cat "$T/off.err"; }
[ "$(grep -c '^  b\.W  *0  *0$' "$T/off.out")" = 10 ] || { fail "f16 without loss scaling: b.W moved"; grep 'b\.W' "$T/off.out"; }
[ -s "$T/off.err" ] && { fail "f16 off: stderr"; cat "$T/off.err"; }
"$BPCC" train "$T/two.bp" --data "csv:$T/reg.csv:target=1" --watch > "$T/dyn.out" 2> "$T/dyn.err" ||
  { fail "f16 dynamic"; cat "$T/dyn.err"; }
[ "$(cat "$T/dyn.err")" = "step 1: gradients not finite at loss scale 65536; update skipped, loss scale now 32768" ] ||
  { fail "f16 dynamic: the skipped step's line"; cat "$T/dyn.err"; }
grep -q ', loss scale dynamic from 65536$' "$T/dyn.out" || fail "f16: dynamic is not the default"
[ "$(grep -Ec '^  b\.W  *[1-9][0-9.]*e-0[0-9]  *0\.00[0-9]*$' "$T/dyn.out")" = 10 ] ||
  { fail "f16 with loss scaling: b.W did not move every epoch"; grep 'b\.W' "$T/dyn.out"; }
grep -q '; 1 step skipped, loss scale 32768$' "$T/dyn.out" || { fail "f16 dynamic: final line"; tail -1 "$T/dyn.out"; }

t_done train_loss_scale
