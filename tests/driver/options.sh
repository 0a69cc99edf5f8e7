#!/bin/sh
# tests/driver/options.sh BPCC SRCDIR — every command with each of the pipeline's options
# (issue 11): where an option applies, what the command prints (or writes) changes;
# where it cannot, the command stops with "OPTION does nothing for COMMAND: why" and
# exit status 1. One row per command below, one column per option:
#
#   E   an effect: exit 0 and an output that differs from the command without it
#   X   an error: exit 1, "does nothing for" on stderr, nothing on stdout
#
# Outputs are compared after dropping times (train, bench). The model is
# examples/spiral.bp (two hidden layers, so --recompute=sqrt drops one activation); the
# budget is its smallest feasible one, which forces recomputation.
set -u
BPCC=$1
SRC=$2
. "$SRC/tests/lib.sh"
t_setup options
M=$SRC/examples/spiral.bp

# the smallest budget spiral trains in at batch 32 (the train block's), and weights to evaluate
err=$("$BPCC" --mem-report "$M" --mem-budget 1KiB 2>&1 >/dev/null)
BUDGET=$(echo "$err" | sed -n 's/.*smallest feasible budget is [^(]*(\([0-9]*\) bytes).*/\1/p')
[ -n "$BUDGET" ] || die "no smallest budget in: $err"
"$BPCC" train "$M" --data spiral:n=64 --epochs 1 --quiet --save "$T/w.st" > /dev/null || die "train --save"

OPTIONS="-fno-softmax-xent|--recompute=sqrt|--mem-budget $BUDGET|--batch 7|-O0|-march=x86-64-v3|--threads 1|--precision bf16"

# command name | the command line (FILE is the model, OUT a file it writes) | expectations
TABLE='--check|--check FILE|X X X X X X X X
--emit=tokens|--emit=tokens FILE|X X X X X X X X
--emit=ast|--emit=ast FILE|X X X X X X X X
--emit=ir|--emit=ir FILE|X X X X X X X X
--emit=grad-ir|--emit=grad-ir FILE|E E E X X X X E
--emit=opt-ir|--emit=opt-ir FILE|E E E X X X X E
--emit=dot|--emit=dot FILE|E E E X X X X E
--emit=llvm|--emit=llvm FILE|E E E X E E E E
--emit=asm|--emit=asm FILE|E E E X E E E E
--emit=obj|--emit=obj FILE|E E E X E E E E
--mem-report|--mem-report FILE|E E E E X X E E
-o|FILE -o OUT.so|E E E X E E E E
gradcheck|gradcheck FILE --dtype f32 --batch 32|E E E E X X X X
train|train FILE --data spiral:n=64 --epochs 1|E E E E E E E E
eval|eval FILE --weights WEIGHTS --data spiral:n=64|X X X E E E E X
bench|bench FILE --steps 1 --warmup 0|E E E E E E E E'

# run NAME ARGS...: stdout (the library's bytes for -o) to $T/out, stderr to $T/err
run() {
  args=$(echo "$1" | sed "s|FILE|$M|; s|OUT|$T/lib|; s|WEIGHTS|$T/w.st|")
  shift
  # shellcheck disable=SC2086
  "$BPCC" $args "$@" > "$T/out" 2> "$T/err" < /dev/null
  rc=$?
  [ -f "$T/lib.so" ] && { cat "$T/lib.so" "$T/lib.h" >> "$T/out"; rm -f "$T/lib.so" "$T/lib.h"; }
  # times: "compiled in 280 ms (set-up 1.1 s)", "in 3 min 05 s", "<0.01 ms", bench's milliseconds
  sed -E 's/[0-9]+ (min [0-9]+ s|h [0-9]+ min)\b/T/g; s/<?[0-9]+(\.[0-9]+)? (ms|s)\b/T/g; s/^(bpcc [a-z_0-9]+) [0-9.]+ [0-9.]+ [0-9.]+ ([0-9.]+) [0-9.]+ [0-9]+ [0-9.]+$/\1 \2/' \
    "$T/out" > "$T/norm" 2> /dev/null || cp "$T/out" "$T/norm"
  return $rc
}

# (the loop reads a file, not a pipe: a pipeline's loop runs in a subshell, whose
# failures would not be counted)
echo "$TABLE" > "$T/table"
while IFS='|' read -r name cmd expect; do
  run "$cmd" || { fail "$name: fails without options"; cat "$T/err"; continue; }
  cp "$T/norm" "$T/base"
  i=1
  for want in $expect; do
    opt=$(echo "$OPTIONS" | cut -d'|' -f$i)
    i=$((i + 1))
    # shellcheck disable=SC2086
    run "$cmd" $opt
    rc=$?
    if [ "$want" = E ]; then
      if [ $rc -ne 0 ]; then fail "$name $opt: exit $rc"; head -3 "$T/err"; continue; fi
      cmp -s "$T/base" "$T/norm" && fail "$name $opt: no effect on the output"
    else
      [ $rc -eq 1 ] || fail "$name $opt: exit $rc, expected 1"
      grep -q "^bpcc: error: .* does nothing for $name: " "$T/err" || { fail "$name $opt: no 'does nothing' message"; head -3 "$T/err"; }
      [ -s "$T/out" ] && fail "$name $opt: printed on stdout"
    fi
  done
  echo "$name: ok"
done < "$T/table"
[ $t_fails -eq 0 ] || t_done driver_options   # the table's failures end the test

# --print-after=STAGE works for every stage --help lists, alone and with a command
stages=$("$BPCC" --help | sed -n '/--print-after=STAGE  print/,/--verify-each/p' | awk 'NF >= 2 && $1 ~ /^[a-z]+$/ {print $1}')
[ "$(echo "$stages" | wc -w)" -eq 11 ] || die "--help lists these stages: $stages"
for s in $stages; do
  "$BPCC" --print-after="$s" --verify-each "$SRC/examples/mnist_mlp.bp" > "$T/pa" 2> "$T/err" || { cat "$T/err"; die "--print-after=$s"; }
  [ -s "$T/pa" ] || die "--print-after=$s printed nothing"
done
"$BPCC" --print-after=kernels --emit=ir "$M" > /dev/null 2> "$T/err" && die "--print-after=kernels with --emit=ir"
grep -q "print-after=kernels: --emit=ir stops before that stage" "$T/err" || { cat "$T/err"; die "--print-after=kernels with --emit=ir: message"; }
"$BPCC" --print-after=simplify -fno-softmax-xent -o "$T/x.so" "$M" > "$T/pa" || die "--print-after with -o"
grep -q "^# IR after simplify" "$T/pa" && ! grep -q softmax_xent "$T/pa" || die "-o did not run simplify without the softmax-CE rule"
echo "print-after: ok"
t_done driver_options
