#!/bin/sh
# tests/interop/cli.sh BPCC SOURCE_DIR — `bpcc eval` on weights written by PyTorch
# (tests/fixtures/interop, no Python needed here):
#   - spiral_from_torch.safetensors (docs/interop.md's recipe) gives PyTorch's loss within
#     1e-5 and its accuracy to the printed 0.01% (both stored in spiral_expected.safetensors);
#   - spiral_torch_names.safetensors (the state_dict saved as it is) fails with exit status
#     1 and exactly the message docs/interop.md shows, taken from the page.
set -u
BPCC=$1
SRC=$2
. "$SRC/tests/lib.sh"
t_setup interop
fx=$SRC/tests/fixtures/interop

# the page's session: its file names, in a directory of its own
cp "$fx/spiral_x.npy" "$T/x.npy" && cp "$fx/spiral_y.npy" "$T/y.npy" &&
  cp "$fx/spiral_from_torch.safetensors" "$T/from_torch.safetensors" &&
  cp "$fx/spiral_torch_names.safetensors" "$T/torch_names.safetensors" || die "cannot copy the fixtures"
cd "$T" || die "cd $T"

# PyTorch's numbers, from the metadata of the expected outputs (JSON text in the header)
meta() { grep -a -o "\"$1\": *\"[^\"]*\"" "$fx/spiral_expected.safetensors" | sed 's/.*"\([^"]*\)"$/\1/'; }
want_loss=$(meta loss)
want_acc=$(meta accuracy)
[ -n "$want_loss" ] && [ -n "$want_acc" ] || die "no loss or accuracy in spiral_expected.safetensors"

timeout 120 "$BPCC" eval "$SRC/examples/spiral.bp" --weights from_torch.safetensors --data npy:x.npy,y.npy \
  > out.txt 2> err.txt || { cat err.txt; die "bpcc eval of the PyTorch weights failed"; }
line=$(grep 'loss [0-9.]*, accuracy [0-9.]*%' out.txt) || { cat out.txt; die "no loss and accuracy printed"; }
loss=$(echo "$line" | sed 's/.*loss \([0-9.]*\),.*/\1/')
acc=$(echo "$line" | sed 's/.*accuracy \([0-9.]*\)%.*/\1/')
echo "bpcc eval: loss $loss, accuracy $acc%; PyTorch: loss $want_loss, accuracy $want_acc%"
awk -v a="$loss" -v b="$want_loss" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d <= 1e-5) }' ||
  die "loss $loss is not PyTorch's $want_loss within 1e-5"
[ "$acc" = "$(awk -v a="$want_acc" 'BEGIN { printf "%.2f", a }')" ] || die "accuracy $acc% is not PyTorch's $want_acc%"

# PyTorch's names: the message of docs/interop.md section 6, exactly
sed -n '/^bpcc: error: spiral: load: torch_names.safetensors: /,/^```$/p' "$SRC/docs/interop.md" | sed '$d' > want.txt
[ -s want.txt ] || die "docs/interop.md quotes no message for torch_names.safetensors"
timeout 120 "$BPCC" eval "$SRC/examples/spiral.bp" --weights torch_names.safetensors --data npy:x.npy,y.npy \
  > out.txt 2> err.txt
rc=$?
[ $rc -eq 1 ] || die "exit status $rc for PyTorch's names, expected 1"
cmp -s want.txt err.txt || { diff want.txt err.txt; die "the message differs from docs/interop.md's"; }
[ ! -s out.txt ] || die "output on stdout for a failed load"
t_done interop_cli
