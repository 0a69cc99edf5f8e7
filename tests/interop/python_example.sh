#!/bin/sh
# tests/interop/python_example.sh BPCC SOURCE_DIR — examples/python/spiral.py: ctypes over
# the library `bpcc examples/spiral.bp -o spiral.so` writes, NumPy only. Passes when the
# script ends with "ok" (held-out accuracy >= 90%, a reloaded checkpoint predicts the same)
# and its parameter table, read through bpcc_param_info, is the header's. Exit 77
# (skipped) where no Python 3 with NumPy is found: $BPCC_PYTHON, python3, /usr/bin/python3.
set -u
bpcc=$1
src=$2
py=
for p in ${BPCC_PYTHON:-} python3 /usr/bin/python3; do
  if "$p" -c 'import numpy' 2>/dev/null; then py=$p; break; fi
done
if [ -z "$py" ]; then
  echo "SKIPPED: no python3 with numpy (Debian: apt-get install python3-numpy)"
  exit 77
fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/bpcc-python-XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

timeout 120 "$bpcc" "$src/examples/spiral.bp" -o "$tmp/spiral.so" || fail "bpcc -o spiral.so failed"
timeout 120 "$py" "$src/examples/python/spiral.py" "$tmp/spiral.so" --save "$tmp/spiral.safetensors" > "$tmp/out.txt" 2>&1
rc=$?
cat "$tmp/out.txt"
[ $rc -eq 0 ] || fail "spiral.py exited with status $rc"
grep -qx 'parameters: h1.W \[2, 64\], h1.b \[64\], h2.W \[64, 64\], h2.b \[64\], logits.W \[64, 3\], logits.b \[3\]' "$tmp/out.txt" ||
  fail "the parameter table read through ctypes is not the model's"
grep -q "^a bad label: train_step: spiral: label 7 of input 'y' at row 3 is outside \[0, 3) (BPCC_E_LABEL)$" "$tmp/out.txt" ||
  fail "no library message for a bad label"
[ -s "$tmp/spiral.safetensors" ] || fail "no checkpoint written"
tail -n 1 "$tmp/out.txt" | grep -q '^ok: ' || fail "no ok line"
echo "ok"
