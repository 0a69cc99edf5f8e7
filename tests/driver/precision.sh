#!/bin/sh
# tests/driver/precision.sh BPCC SRCDIR — mixed precision through the command line
# (passes/precision.c): the casts of examples/mnist_mlp.bp's training step in
# --emit=opt-ir (exact lines), its kept activations at 2 bytes an element in
# --mem-report, the train block's `precision` and --precision over it, and the errors.
set -u
BPCC=$1
SRC=$2
. "$SRC/tests/lib.sh"
t_setup precision
M=$SRC/examples/mnist_mlp.bp
cd "$SRC" || die "cd $SRC"

# the plan's cast lines, spaces squeezed (the comment column follows the longest line),
# sorted (the kernels' order is the kernel plan's, which fusion may change)
casts() { grep ' = cast ' | tr -s ' ' | sed 's/^ //' | sort; }

"$BPCC" --emit=opt-ir --precision bf16 examples/mnist_mlp.bp > "$T/opt" || die "--emit=opt-ir --precision bf16"
casts < "$T/opt" > "$T/casts"
sort > "$T/want" <<'END'
%4 = cast %0 : bf16[B,784] # examples/mnist_mlp.bp:3:19 [fwd precision]
%5 = cast %2 : bf16[784,800] # examples/mnist_mlp.bp:3:19 [fwd precision]
%9 = cast %8 : bf16[B,800] # examples/mnist_mlp.bp:3:14 [fwd precision]
%12 = cast %10 : bf16[800,10] # examples/mnist_mlp.bp:4:14 [fwd precision]
%29 = cast %27 : bf16[B,10] # examples/mnist_mlp.bp:4:14 [precision from %13]
%32 = cast %9 : f32[B,800] # examples/mnist_mlp.bp:3:14 [precision from %8] (internal)
%35 = cast %0 : bf16[B,784] # examples/mnist_mlp.bp:3:19 [precision from %6]
%36 = cast %33 : bf16[B,800] # examples/mnist_mlp.bp:3:19 [precision from %6]
END
diff "$T/want" "$T/casts" > "$T/diff" || { fail "--emit=opt-ir --precision bf16: the casts differ (want, got):"; cat "$T/diff"; }
# the products read them: x W1, h W2, and backward's three; relu_grad reads h's copy
for l in '%6 = matmul %4, %5 : f32[B,800]' '%13 = matmul %9, %12 : f32[B,10]' '%30 = matmul_nt %29, %12 : f32[B,800]' \
         '%31 = matmul_tn %9, %29 : f32[800,10]' '%37 = matmul_tn %35, %36 : f32[784,800]' '%33 = relu_grad %32, %30 : f32[B,800]'; do
  tr -s ' ' < "$T/opt" | grep -qF " $l " || fail "--emit=opt-ir --precision bf16: no line '$l'"
done
# the forward entry stays f32
sed -n '/^func @mnist_mlp {/,/^}/p' "$T/opt" | grep -q 'bf16' && fail "the forward entry has bf16 values"
# f16: the same casts to f16 (without loss scaling, f16's default, whose seed shifts the
# numbers; with it, tests/train/loss_scale.sh)
"$BPCC" --emit=opt-ir --precision f16 --loss-scale off examples/mnist_mlp.bp | casts > "$T/casts16" || die "--precision f16"
sed 's/bf16\[/f16[/' "$T/want" | diff - "$T/casts16" > /dev/null || fail "--precision f16: not the bf16 casts in f16"
# f32 (the default, and said): no cast
"$BPCC" --emit=opt-ir --precision f32 examples/mnist_mlp.bp > "$T/opt32" || die "--precision f32"
"$BPCC" --emit=opt-ir examples/mnist_mlp.bp | cmp -s - "$T/opt32" || fail "--precision f32 is not the default"
grep -q ' cast ' "$T/opt32" && fail "--precision f32 has casts"

# --mem-report: the kept activations, their types and bytes at batch 128, and the total
report() { "$BPCC" --mem-report "$@" examples/mnist_mlp.bp > "$T/mem" || die "--mem-report $*"; }
kept() { awk '/kept for backward/ {print $4, $5}' "$T/mem"; grep '^  kept activations' "$T/mem" | tr -s ' '; }
report
kept > "$T/kept32"
cat > "$T/want" <<'END'
f32[B,800] 409600
f32[B,800] 409600
 kept activations 819200 bytes 800.00 KiB (2 tensors)
END
diff "$T/want" "$T/kept32" > "$T/diff" || { fail "--mem-report: the kept activations (want, got):"; cat "$T/diff"; }
report --precision bf16
kept > "$T/kept16"
# h at 2 bytes an element (relu_grad reads it: the relu's input is no longer kept), and
# logits.W's bf16 copy (dh = dlogits W^T)
cat > "$T/want" <<'END'
bf16[B,800] 204800
bf16[800,10] 16000
 kept activations 220800 bytes 215.62 KiB (2 tensors)
END
diff "$T/want" "$T/kept16" > "$T/diff" || { fail "--mem-report --precision bf16: the kept activations (want, got):"; cat "$T/diff"; }

# the train block's precision, and the command line over it
sed 's/^    seed 42$/    seed 42\n    precision bf16/' "$M" > "$T/m.bp"
grep -q 'precision bf16' "$T/m.bp" || die "no precision line in $T/m.bp"
"$BPCC" --check "$T/m.bp" | grep -qxF '    precision  bf16 (the training step'"'"'s products and kept activations)' ||
  fail "--check does not show the train block's precision"
"$BPCC" --emit=opt-ir "$T/m.bp" | casts | sed "s|$T/m.bp|examples/mnist_mlp.bp|" | cmp -s - "$T/casts" ||
  fail "the train block's precision bf16 does not give --precision bf16's casts"
"$BPCC" --emit=opt-ir --precision f32 "$T/m.bp" | grep -q ' cast ' && fail "--precision f32 does not override the train block"

# errors: a bad value, and the commands it does nothing for
expect_error_exact "bpcc: error: --precision: unknown precision 'fp16' (f32, bf16 or f16)" --precision fp16 --emit=opt-ir "$M"
expect_error_exact "bpcc: error: --precision does nothing for --emit=ir: it sets the precision of a training step, which this command does not compile" \
  --precision bf16 --emit=ir "$M"
expect_error_exact "bpcc: error: --precision does nothing for gradcheck: gradcheck checks the f32 or f64 gradient (--dtype), whatever the precision" \
  gradcheck --precision bf16 "$M"
printf 'model m(x: f32[B,3]) {\n    loss mean(x)\n}\ntrain m {\n    precision fp8\n}\n' > "$T/bad.bp"
expect_error_first "$T/bad.bp:5:15: error: unknown precision 'fp8' (expected f32, bf16 or f16)" --check "$T/bad.bp"
# gradcheck checks the f32 gradient whatever the train block says
"$BPCC" gradcheck "$T/m.bp" --dtype f64 --batch 2 --samples 4 > "$T/gc" 2>&1 || { cat "$T/gc"; fail "gradcheck of a bf16 model"; }
t_done precision
