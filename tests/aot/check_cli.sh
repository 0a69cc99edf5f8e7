#!/bin/sh
# tests/aot/check_cli.sh BPCC SOURCE_DIR — `bpcc FILE.bp -o NAME.so` from the command line:
# both files written, readelf -d lists only libc, libm and libpthread as NEEDED, only the
# model's C ABI is exported, -march=x86-64-v3 works, and errors leave nothing behind.
set -u
bpcc=$1
src=$2
tmp=$(mktemp -d "${TMPDIR:-/tmp}/bpcc-cli-XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

"$bpcc" "$src/examples/mnist_mlp.bp" -o "$tmp/m.so" || fail "bpcc -o failed"
[ -s "$tmp/m.so" ] && [ -s "$tmp/m.h" ] || fail "m.so or m.h missing"
needed=$(readelf -d "$tmp/m.so" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | sort | tr '\n' ' ')
echo "NEEDED: $needed"
for lib in $needed; do
  case $lib in
    libc.so.6|libm.so.6|libpthread.so.0) ;;
    *) fail "unexpected NEEDED entry $lib" ;;
  esac
done
others=$(nm -D --defined-only "$tmp/m.so" | awk '{print $3}' | grep -v '^mnist_mlp_')
[ -z "$others" ] || fail "exported symbols outside the ABI: $others"
grep -q 'int mnist_mlp_train_step(mnist_mlp \*net, int64_t batch' "$tmp/m.h" || fail "header lacks train_step"

"$bpcc" -march=x86-64-v3 "$src/examples/mnist_mlp.bp" -o "$tmp/portable.so" || fail "-march=x86-64-v3 failed"
[ -s "$tmp/portable.so" ] || fail "portable.so missing"

# errors: a program with an error, an unwritable place, no file after -o
printf 'model bad(x: f32[B, 3]) {\n    output y = x @ q\n}\n' > "$tmp/bad.bp"
"$bpcc" "$tmp/bad.bp" -o "$tmp/bad.so" 2> "$tmp/err.txt" && fail "a bad program succeeded"
grep -q "error" "$tmp/err.txt" || fail "no error message for a bad program"
[ ! -e "$tmp/bad.so" ] && [ ! -e "$tmp/bad.h" ] || fail "files left after an error"
"$bpcc" "$src/examples/mnist_mlp.bp" -o "$tmp/no/such/dir/m.so" 2> "$tmp/err.txt" && fail "writing into a missing directory succeeded"
grep -q "cannot make $tmp/no/such/dir/m.so" "$tmp/err.txt" || { cat "$tmp/err.txt"; fail "no message for a missing directory"; }
"$bpcc" "$src/examples/mnist_mlp.bp" -o 2> "$tmp/err.txt" && fail "-o without a path succeeded"
grep -q -- "-o needs a path" "$tmp/err.txt" || fail "no message for -o without a path"
printf 'model bprt_x(x: f32[B, 2], t: f32[B, 1]) {\n    output y = dense(x, 1)\n    loss mse(y, t)\n}\n' > "$tmp/reserved.bp"
"$bpcc" "$tmp/reserved.bp" -o "$tmp/reserved.so" 2> "$tmp/err.txt" && fail "a model named bprt_x succeeded"
grep -q "model names starting with 'bprt' are reserved" "$tmp/err.txt" || { cat "$tmp/err.txt"; fail "no message for a reserved name"; }
left=$(ls -A "$tmp" | grep -v -e '^m\.so$' -e '^m\.h$' -e '^portable\.so$' -e '^portable\.h$' -e '^bad\.bp$' -e '^reserved\.bp$' -e '^err\.txt$')
[ -z "$left" ] || fail "temporary files left: $left"
echo "ok"
