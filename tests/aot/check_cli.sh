#!/bin/sh
# tests/aot/check_cli.sh BPCC SOURCE_DIR — `bpcc FILE.bp -o NAME.so` from the command line:
# both files written, readelf -d lists only libc, libm and libpthread as NEEDED, only the
# model's C ABI is exported, -march=x86-64-v3 works, and errors leave nothing behind.
set -u
BPCC=$1
SRC=$2
. "$SRC/tests/lib.sh"
t_setup aot-cli

"$BPCC" "$SRC/examples/mnist_mlp.bp" -o "$T/m.so" || die "bpcc -o failed"
[ -s "$T/m.so" ] && [ -s "$T/m.h" ] || die "m.so or m.h missing"
needed=$(readelf -d "$T/m.so" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | sort | tr '\n' ' ')
echo "NEEDED: $needed"
for lib in $needed; do
  case $lib in
    libc.so.6|libm.so.6|libpthread.so.0) ;;
    *) die "unexpected NEEDED entry $lib" ;;
  esac
done
others=$(nm -D --defined-only "$T/m.so" | awk '{print $3}' | grep -v '^mnist_mlp_')
[ -z "$others" ] || die "exported symbols outside the ABI: $others"
grep -q 'int mnist_mlp_train_step(mnist_mlp \*net, int64_t batch' "$T/m.h" || die "header lacks train_step"

# a label input of rank 3 (tokens): one int32 per position, 8 per row
"$BPCC" "$SRC/examples/attention_small.bp" -o "$T/seq.so" || die "attention_small failed"
grep -q 'x label\[B,8,32\]: int32_t class indices in \[0, 32), 8 per row (one per position)' "$T/seq.h" || die "header: rank-3 label comment"
grep -q '_INPUT_X_ROW 8$' "$T/seq.h" || die "header: rank-3 label row size"

"$BPCC" -march=x86-64-v3 "$SRC/examples/mnist_mlp.bp" -o "$T/portable.so" || die "-march=x86-64-v3 failed"
[ -s "$T/portable.so" ] || die "portable.so missing"

# errors: a program with an error, an unwritable place, no file after -o
printf 'model bad(x: f32[B, 3]) {\n    output y = x @ q\n}\n' > "$T/bad.bp"
"$BPCC" "$T/bad.bp" -o "$T/bad.so" 2> "$T/err.txt" && die "a bad program succeeded"
grep -q "error" "$T/err.txt" || die "no error message for a bad program"
[ ! -e "$T/bad.so" ] && [ ! -e "$T/bad.h" ] || die "files left after an error"
"$BPCC" "$SRC/examples/mnist_mlp.bp" -o "$T/no/such/dir/m.so" 2> "$T/err.txt" && die "writing into a missing directory succeeded"
grep -q "cannot make $T/no/such/dir/m.so" "$T/err.txt" || { cat "$T/err.txt"; die "no message for a missing directory"; }
"$BPCC" "$SRC/examples/mnist_mlp.bp" -o 2> "$T/err.txt" && die "-o without a path succeeded"
grep -q -- "-o needs a path" "$T/err.txt" || die "no message for -o without a path"
printf 'model bprt_x(x: f32[B, 2], t: f32[B, 1]) {\n    output y = dense(x, 1)\n    loss mse(y, t)\n}\n' > "$T/reserved.bp"
"$BPCC" "$T/reserved.bp" -o "$T/reserved.so" 2> "$T/err.txt" && die "a model named bprt_x succeeded"
grep -q "model names starting with 'bprt' are reserved" "$T/err.txt" || { cat "$T/err.txt"; die "no message for a reserved name"; }
left=$(ls -A "$T" | grep -v -e '^m\.so$' -e '^m\.h$' -e '^portable\.so$' -e '^portable\.h$' -e '^seq\.so$' -e '^seq\.h$' -e '^bad\.bp$' -e '^reserved\.bp$' -e '^err\.txt$')
[ -z "$left" ] || die "temporary files left: $left"
t_done aot_cli
