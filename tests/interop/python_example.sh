#!/bin/sh
# tests/interop/python_example.sh BPCC SOURCE_DIR — examples/python/spiral.py: ctypes over
# the library `bpcc examples/spiral.bp -o spiral.so` writes, NumPy only. Passes when the
# script ends with "ok" (held-out accuracy >= 90%, a reloaded checkpoint predicts the same)
# and its parameter table, read through bpcc_param_info, is the header's. Exit 77
# (skipped) where no Python 3 with NumPy is found: $BPCC_PYTHON, python3, /usr/bin/python3.
set -u
BPCC=$1
SRC=$2
. "$SRC/tests/lib.sh"
py=
for p in ${BPCC_PYTHON:-} python3 /usr/bin/python3; do
  if "$p" -c 'import numpy' 2>/dev/null; then py=$p; break; fi
done
[ -n "$py" ] || t_skip "no python3 with numpy (Debian: apt-get install python3-numpy)"
t_setup python

timeout 120 "$BPCC" "$SRC/examples/spiral.bp" -o "$T/spiral.so" || die "bpcc -o spiral.so failed"
timeout 120 "$py" "$SRC/examples/python/spiral.py" "$T/spiral.so" --save "$T/spiral.safetensors" > "$T/out.txt" 2>&1
rc=$?
cat "$T/out.txt"
[ $rc -eq 0 ] || die "spiral.py exited with status $rc"
grep -qx 'parameters: h1.W \[2, 64\], h1.b \[64\], h2.W \[64, 64\], h2.b \[64\], logits.W \[64, 3\], logits.b \[3\]' "$T/out.txt" ||
  die "the parameter table read through ctypes is not the model's"
grep -q "^a bad label: train_step: spiral: label 7 of input 'y' at row 3 is outside \[0, 3) (BPCC_E_LABEL)$" "$T/out.txt" ||
  die "no library message for a bad label"
[ -s "$T/spiral.safetensors" ] || die "no checkpoint written"
tail -n 1 "$T/out.txt" | grep -q '^ok: ' || die "no ok line"
t_done python_example
