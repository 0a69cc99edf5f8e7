#!/bin/sh
# tests/driver/cli.sh BPCC SRCDIR — the command line as clang's users expect it (issue 12,
# section 5): "did you mean" for commands, options and --emit kinds (exact messages);
# bpcc help [CMD]; `--` ends the options; -o for every --emit kind, --check and
# --mem-report (the same bytes as standard output); the table of output kinds (a
# contradicting extension, binary output to a terminal, `-o -`); files written whole or
# not at all; --version.
set -u
BPCC=$1
SRC=$2
. "$SRC/tests/lib.sh"
t_setup cli
M=$SRC/examples/spiral.bp

# expect WANT ARGS...: exit status 1, stderr exactly WANT, nothing on stdout
expect() { expect_error_exact --no-stdout "$@"; }
TRY="Try 'bpcc --help' for more information."
TRY_TRAIN="Try 'bpcc train --help' for more information."

# 1. did you mean: commands, options (from each command's table), --emit kinds
expect "bpcc: error: unknown command 'trian'; did you mean 'train'?
$TRY" trian x.bp
expect "bpcc: error: unknown command 'frobnicate' (commands: train, eval, predict, plot, sample, gradcheck, bench, help; or give a FILE.bp)
$TRY" frobnicate
expect "bpcc: error: unknown command 'evl'; did you mean 'eval'?
$TRY" help evl
expect "bpcc: error: unknown option '--chek'; did you mean '--check'?
$TRY" --chek x.bp
expect "bpcc: error: unknown option '--epoch'; did you mean '--epochs'?
$TRY_TRAIN" train x.bp --epoch 3
expect "bpcc: error: unknown option '--wieghts'; did you mean '--weights'?
Try 'bpcc eval --help' for more information." eval x.bp --wieghts w
expect "bpcc: error: unknown option '--march=native'; did you mean '-march=native'?
Try 'bpcc bench --help' for more information." bench x.bp --march=native
expect "bpcc: error: unknown option '--thread'; did you mean '--threads'?
Try 'bpcc gradcheck --help' for more information." gradcheck x.bp --thread 2
expect "bpcc: error: unknown option '--recompte=sqrt'; did you mean '--recompute=sqrt'?
$TRY" --recompte=sqrt x.bp
expect "bpcc: error: unknown option '--frobnicate'
$TRY_TRAIN" train x.bp --frobnicate
expect "bpcc: error: unknown option '--top_k'; did you mean '--top-k'?
Try 'bpcc predict --help' for more information." predict x.bp --top_k 3
expect "bpcc: error: unknown option '--output'
Try 'bpcc plot --help' for more information." plot log.csv --output x.svg
expect "bpcc: error: unknown --emit kind 'gradir'; did you mean 'grad-ir'? (tokens, ast, ir, grad-ir, opt-ir, dot, llvm, asm, obj)
$TRY" --emit=gradir x.bp
expect "bpcc: error: unknown --emit kind 'pdf' (tokens, ast, ir, grad-ir, opt-ir, dot, llvm, asm, obj)
$TRY" --emit=pdf x.bp
expect "bpcc: error: --quiet takes no value
$TRY_TRAIN" train x.bp --quiet=1
expect "bpcc: error: --epochs needs a value: --epochs N
$TRY_TRAIN" train x.bp --epochs
expect "bpcc: error: -march needs a value after '=': -march=CPU
$TRY" --check x.bp -march
expect "bpcc: error: -O4: the optimization level is -O0, -O1, -O2 or -O3" train x.bp -O4
expect "bpcc: error: the command goes first: bpcc train ...
$TRY" -O2 train x.bp

# 2. bpcc help [CMD] is --help
"$BPCC" help > "$T/a" && "$BPCC" --help > "$T/b" && cmp -s "$T/a" "$T/b" || fail "bpcc help differs from bpcc --help"
for c in train eval predict plot gradcheck bench; do
  "$BPCC" help $c > "$T/a" && "$BPCC" $c --help > "$T/b" && cmp -s "$T/a" "$T/b" || fail "bpcc help $c differs from bpcc $c --help"
  grep -q "^usage: bpcc $c " "$T/a" || fail "bpcc help $c: no usage line"
done

# 3. -- ends the options: a file named -x.bp
mkdir "$T/dash" && cp "$M" "$T/dash/-x.bp"
(cd "$T/dash" && "$BPCC" --check -- -x.bp > "$T/out" 2>&1) || { fail "--check -- -x.bp"; cat "$T/out"; }
grep -q "^model spiral  (-x.bp:3)" "$T/out" || fail "--check -- -x.bp: no summary"
(cd "$T/dash" && "$BPCC" --check -x.bp > "$T/out" 2> "$T/err"); rc=$?
[ $rc -eq 1 ] && grep -qx "bpcc: error: unknown option '-x.bp' (for the file of that name, write ./-x.bp, or -- before it)" "$T/err" ||
  { fail "-x.bp without --: $rc"; cat "$T/err"; }

# 4. -o for every --emit kind, --check and --mem-report: the bytes standard output gets
for kind in tokens:txt ast:txt ir:ir grad-ir:ir opt-ir:ir dot:dot llvm:ll asm:s obj:o; do
  k=${kind%%:*}; ext=${kind#*:}
  "$BPCC" --emit="$k" "$M" > "$T/stdout.$ext" 2> "$T/err" || { fail "--emit=$k"; cat "$T/err"; continue; }
  "$BPCC" --emit="$k" "$M" -o "$T/m.$ext" > "$T/out" 2> "$T/err" || { fail "--emit=$k -o m.$ext"; cat "$T/err"; continue; }
  [ -s "$T/out" ] && fail "--emit=$k -o: printed on stdout"
  cmp -s "$T/stdout.$ext" "$T/m.$ext" || fail "--emit=$k -o m.$ext differs from its standard output"
  "$BPCC" --emit="$k" "$M" -o - | cmp -s "$T/stdout.$ext" - || fail "--emit=$k -o - differs from its standard output"
  rm -f "$T/m.$ext"
done
"$BPCC" --check "$M" -o "$T/s.txt" && "$BPCC" --check "$M" | cmp -s - "$T/s.txt" || fail "--check -o"
"$BPCC" --mem-report "$M" -o "$T/r.txt" && "$BPCC" --mem-report "$M" | cmp -s - "$T/r.txt" || fail "--mem-report -o"
"$BPCC" --emit=asm "$M" -o "$T/noext" && cmp -s "$T/stdout.s" "$T/noext" || fail "-o without an extension"
file "$T/stdout.o" | grep -q "ELF 64-bit LSB relocatable" || fail "--emit=obj is no ELF object"

# 5. the table of output kinds
expect "bpcc: error: -o $T/m.o: '.o' is the extension of an ELF object file, but --emit=asm writes assembly (.s)" \
  --emit=asm "$M" -o "$T/m.o"
expect "bpcc: error: -o $T/m.s: '.s' is the extension of assembly, but --emit=obj writes an ELF object file (.o)" \
  --emit=obj "$M" -o "$T/m.s"
expect "bpcc: error: -o $T/m.h: '.h' is the extension of a C header (the library writes NAME.h itself), but -o without --emit writes a shared library (.so)" \
  "$M" -o "$T/m.h"
expect "bpcc: error: -o $T/m.bp: '.bp' is the extension of a .bp program, but --emit=ir writes IR text (.ir)" \
  --emit=ir "$M" -o "$T/m.bp"
expect "bpcc: error: -o -: a shared library cannot go to standard output; give -o FILE.so" "$M" -o -
expect "bpcc: error: -o $T: is a directory" --emit=ir "$M" -o "$T"
expect "bpcc: error: -o given twice ('$T/a.ir' and '$T/b.ir')
$TRY" --emit=ir "$M" -o "$T/a.ir" -o "$T/b.ir"
expect "bpcc: error: --check, --emit and --mem-report exclude each other: give one
$TRY" --check --emit=ir "$M"
# binary output to a terminal: refused (script(1) gives bpcc a terminal); to a pipe: written
if command -v script > /dev/null; then
  script -qec "'$BPCC' --emit=obj '$M'" /dev/null > "$T/tty" 2>&1; rc=$?
  [ $rc -eq 1 ] || fail "--emit=obj to a terminal: exit $rc"
  grep -q "bpcc: error: not writing an ELF object file to a terminal: give -o FILE.o, or redirect standard output to a file or pipe" "$T/tty" ||
    { fail "--emit=obj to a terminal: message"; cat "$T/tty"; }
  script -qec "'$BPCC' --emit=asm '$M' -o -" /dev/null > "$T/tty" 2>&1 || fail "--emit=asm -o - to a terminal refused"
fi
"$BPCC" --emit=obj "$M" -o - | cmp -s - "$T/stdout.o" || fail "--emit=obj -o - into a pipe"
"$BPCC" --emit=obj "$M" -o /dev/null || fail "-o /dev/null"
[ -c /dev/null ] || fail "-o /dev/null replaced /dev/null"

# 6. whole or not at all: an error keeps the old file and leaves no temporary one
printf 'model bad(x: f32[B, 3]) {\n    output y = x @ q\n}\n' > "$T/bad.bp"
mkdir "$T/w" && echo old > "$T/w/m.ir"
"$BPCC" --emit=ir "$T/bad.bp" -o "$T/w/m.ir" 2> /dev/null && fail "a bad program: exit 0"
[ "$(cat "$T/w/m.ir")" = old ] || fail "a bad program changed the old output"
# the syntax tree of a program with a syntax error: on standard output, not into -o's file
printf 'model bad(x: f32[B, 3]) {\n    output y = x @\n}\n' > "$T/syntax.bp"
"$BPCC" --emit=ast "$T/syntax.bp" 2> /dev/null | grep -q "model bad" || fail "--emit=ast of a syntax error: no tree"
"$BPCC" --emit=ast "$T/syntax.bp" -o "$T/w/m.txt" 2> /dev/null && fail "--emit=ast of a syntax error -o: exit 0"
[ -e "$T/w/m.txt" ] && fail "--emit=ast of a syntax error wrote -o's file"
"$BPCC" --emit=ir "$M" -o "$T/w/m.ir" && grep -q "^func @spiral" "$T/w/m.ir" || fail "rewrite of m.ir"
[ "$(ls -A "$T/w" | tr '\n' ' ')" = "m.ir " ] || fail "files left in the output directory: $(ls -A "$T/w")"
"$BPCC" --emit=ir "$M" -o /dev/full 2> "$T/err" && fail "-o /dev/full: exit 0"
grep -qx "bpcc: error: /dev/full: write error: No space left on device" "$T/err" || { fail "-o /dev/full: message"; cat "$T/err"; }

# 7. --version: bpcc, LLVM, the host CPU
"$BPCC" --version > "$T/v" || fail "--version: exit status"
sed -n 1p "$T/v" | grep -qx "bpcc [0-9]*\.[0-9]*\.[0-9]*" || fail "--version line 1: $(sed -n 1p "$T/v")"
sed -n 2p "$T/v" | grep -qx "LLVM 19\.[0-9]*\.[0-9]*, target [a-z0-9_-]*" || fail "--version line 2: $(sed -n 2p "$T/v")"
sed -n 3p "$T/v" | grep -q "^host CPU: .*(LLVM: [a-z0-9_-]*)$" || fail "--version line 3: $(sed -n 3p "$T/v")"
grep -q "^  -march=native (the default): [0-9]* f32 lanes* per vector$" "$T/v" || fail "--version: no lanes line"
grep -qx "MPI: .* (mpirun -np P bpcc train trains data-parallel)\|MPI: none (built without it: bpcc train runs as one process)" "$T/v" ||
  fail "--version: no MPI line"
if grep -q "^model name" /proc/cpuinfo 2> /dev/null; then
  name=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
  grep -qF "host CPU: $name (LLVM:" "$T/v" || fail "--version does not name the CPU '$name'"
fi

t_done driver_cli
