#!/bin/sh
# tests/frontend/cli.sh BPCC — the bpcc command line: the issue's example diagnostic
# (exact text, exit status 1), --help, --version, unknown options, --check and --emit
# on the examples, `-` for standard input, and a [B,B] value rejected at the check.
set -u
bpcc=$1
src=${BPCC_SOURCE_DIR:-.}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

# 1. The issue's example: <stdin>:3: error about [B,5] and [B,4], caret under the call,
#    a note at line 2 where h got its shape, exit status 1.
printf 'model m(x: f32[B,3], y: f32[B,4]) {\n  h = dense(x, 5)\n  loss mse(h, y)\n}\n' | "$bpcc" --check - >"$tmp/out" 2>"$tmp/err"
st=$?
[ $st -eq 1 ] || fail "issue example: exit status $st, expected 1"
cat >"$tmp/want" <<'WANT'
<stdin>:3:8: error: shapes [B,5] and [B,4] do not agree in call to 'mse': dim N is 5 in 'p' but 4 in 't'
      loss mse(h, y)
           ^~~~~~~~~
<stdin>:2:7: note: 'h' has shape [B,5] from here
      h = dense(x, 5)
          ^~~~~~~~~~~
<stdin>:1:22: note: 'y' declared here as f32[B,4]
    model m(x: f32[B,3], y: f32[B,4]) {
                         ^
WANT
cmp -s "$tmp/err" "$tmp/want" || { fail "issue example diagnostic differs:"; diff "$tmp/want" "$tmp/err"; }
[ -s "$tmp/out" ] && fail "issue example printed a summary"

# 2. --help, --version, usage errors (exit 1 with a message).
"$bpcc" --help >"$tmp/out" 2>&1 || fail "--help exit status"
grep -q -- "--emit=KIND" "$tmp/out" || fail "--help lacks --emit"
"$bpcc" --version >"$tmp/out" 2>&1 || fail "--version exit status"
grep -q "^bpcc [0-9]" "$tmp/out" || fail "--version output"
"$bpcc" --frobnicate x.bp >"$tmp/out" 2>&1; st=$?
[ $st -eq 1 ] || fail "unknown option: exit status $st"
grep -q "unknown option '--frobnicate'" "$tmp/out" || fail "unknown option message"
"$bpcc" --emit=bogus x.bp >"$tmp/out" 2>&1; st=$?
[ $st -eq 1 ] || fail "unknown --emit: exit status $st"
"$bpcc" --check "$tmp/missing.bp" >"$tmp/out" 2>&1; st=$?
[ $st -eq 1 ] || fail "missing file: exit status $st"
grep -q "cannot open" "$tmp/out" || fail "missing file message"

# 3. The examples check, with their summaries; --emit works on them.
for f in "$src"/examples/*.bp; do
  "$bpcc" --check "$f" >"$tmp/out" 2>&1 || { fail "--check $f"; cat "$tmp/out"; }
  grep -q "parameters:" "$tmp/out" || fail "summary of $f"
  "$bpcc" --emit=tokens "$f" >/dev/null 2>&1 || fail "--emit=tokens $f"
  "$bpcc" --emit=ast "$f" >/dev/null 2>&1 || fail "--emit=ast $f"
  "$bpcc" --emit=ir "$f" >"$tmp/out" 2>&1 || fail "--emit=ir $f"
  grep -q "^func @" "$tmp/out" || fail "--emit=ir $f output"
done
"$bpcc" --check "$src/examples/mnist_mlp.bp" >"$tmp/out"
grep -q "h.W  *\[784,800\]  *627200  he_normal" "$tmp/out" || fail "mnist summary: h.W"
grep -q "total  *636010" "$tmp/out" || fail "mnist summary: total"

# 4. Standard input, and an empty one.
"$bpcc" --check - <"$src/examples/spiral.bp" >"$tmp/out" 2>&1 || fail "--check - on spiral"
: | "$bpcc" --check - >"$tmp/out" 2>&1; st=$?
[ $st -eq 1 ] || fail "empty stdin: exit status $st"
grep -q "^<stdin>:1:1: error: no model in this file" "$tmp/out" || fail "empty stdin message"

# 5. A value with the batch dim twice (x @ transpose(x) is [B,B]) fails at the check,
#    for every command that would compile or run it: exit status 1, the located error
#    on stderr, nothing on stdout (no gradcheck report, no IR).
printf 'model m(x: f32[B, 4]) {\n    g = x @ transpose(x)\n    loss mean(g)\n}\n' >"$tmp/gram.bp"
cat >"$tmp/want" <<WANT
$tmp/gram.bp:2:9: error: [B,4] @ [4,B] would have shape [B,B], with the batch dim B twice; bpcc sizes a training step's memory linearly in the batch, so a value may hold B at most once
        g = x @ transpose(x)
            ^~~~~~~~~~~~~~~~
$tmp/gram.bp:1:9: note: 'x' declared here as f32[B,4]
    model m(x: f32[B, 4]) {
            ^
$tmp/gram.bp:2:13: note: this has shape [4,B]
        g = x @ transpose(x)
                ^~~~~~~~~~~~
WANT
for cmd in --check gradcheck --emit=grad-ir --emit=opt-ir; do
  "$bpcc" $cmd "$tmp/gram.bp" >"$tmp/out" 2>"$tmp/err"; st=$?
  [ $st -eq 1 ] || fail "batch twice, $cmd: exit status $st, expected 1"
  cmp -s "$tmp/err" "$tmp/want" || { fail "batch twice, $cmd: diagnostic differs:"; diff "$tmp/want" "$tmp/err"; }
  [ -s "$tmp/out" ] && fail "batch twice, $cmd: printed on stdout"
done

[ $fails -eq 0 ] && echo "frontend cli: all passed"
exit $fails
