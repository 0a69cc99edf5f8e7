#!/bin/sh
# tests/frontend/cli.sh BPCC SRCDIR — the bpcc command line: the issue's example diagnostic
# (exact text, exit status 1), --help, --version, unknown options, --check and --emit
# on the examples, `-` for standard input, and a [B,B] value rejected at the check.
set -u
BPCC=$1
SRC=$2
. "$SRC/tests/lib.sh"
t_setup frontend-cli

# 1. The issue's example: <stdin>:3: error about [B,5] and [B,4], caret under the call,
#    a note at line 2 where h got its shape, exit status 1.
printf 'model m(x: f32[B,3], y: f32[B,4]) {\n  h = dense(x, 5)\n  loss mse(h, y)\n}\n' | "$BPCC" --check - >"$T/out" 2>"$T/err"
st=$?
[ $st -eq 1 ] || fail "issue example: exit status $st, expected 1"
cat >"$T/want" <<'WANT'
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
cmp -s "$T/err" "$T/want" || { fail "issue example diagnostic differs:"; diff "$T/want" "$T/err"; }
[ -s "$T/out" ] && fail "issue example printed a summary"

# 2. --help, --version, usage errors (exit 1 with a message).
"$BPCC" --help >"$T/out" 2>&1 || fail "--help exit status"
grep -q -- "--emit=KIND" "$T/out" || fail "--help lacks --emit"
"$BPCC" --version >"$T/out" 2>&1 || fail "--version exit status"
grep -q "^bpcc [0-9]" "$T/out" || fail "--version output"
"$BPCC" --frobnicate x.bp >"$T/out" 2>&1; st=$?
[ $st -eq 1 ] || fail "unknown option: exit status $st"
grep -q "unknown option '--frobnicate'" "$T/out" || fail "unknown option message"
"$BPCC" --emit=bogus x.bp >"$T/out" 2>&1; st=$?
[ $st -eq 1 ] || fail "unknown --emit: exit status $st"
"$BPCC" --check "$T/missing.bp" >"$T/out" 2>&1; st=$?
[ $st -eq 1 ] || fail "missing file: exit status $st"
grep -q "cannot open" "$T/out" || fail "missing file message"

# 3. The examples check, with their summaries; --emit works on them.
for f in "$SRC"/examples/*.bp; do
  "$BPCC" --check "$f" >"$T/out" 2>&1 || { fail "--check $f"; cat "$T/out"; }
  grep -q "parameters:" "$T/out" || fail "summary of $f"
  "$BPCC" --emit=tokens "$f" >/dev/null 2>&1 || fail "--emit=tokens $f"
  "$BPCC" --emit=ast "$f" >/dev/null 2>&1 || fail "--emit=ast $f"
  "$BPCC" --emit=ir "$f" >"$T/out" 2>&1 || fail "--emit=ir $f"
  grep -q "^func @" "$T/out" || fail "--emit=ir $f output"
done
"$BPCC" --check "$SRC/examples/mnist_mlp.bp" >"$T/out"
grep -q "h.W  *\[784,800\]  *627200  he_normal" "$T/out" || fail "mnist summary: h.W"
grep -q "total  *636010" "$T/out" || fail "mnist summary: total"

# 4. Standard input, and an empty one.
"$BPCC" --check - <"$SRC/examples/spiral.bp" >"$T/out" 2>&1 || fail "--check - on spiral"
: | "$BPCC" --check - >"$T/out" 2>&1; st=$?
[ $st -eq 1 ] || fail "empty stdin: exit status $st"
grep -q "^<stdin>:1:1: error: no model in this file" "$T/out" || fail "empty stdin message"

# 5. A value with the batch dim twice (x @ transpose(x) is [B,B]) fails at the check,
#    for every command that would compile or run it: exit status 1, the located error
#    on stderr, nothing on stdout (no gradcheck report, no IR).
printf 'model m(x: f32[B, 4]) {\n    g = x @ transpose(x)\n    loss mean(g)\n}\n' >"$T/gram.bp"
cat >"$T/want" <<WANT
$T/gram.bp:2:9: error: [B,4] @ [4,B] would have shape [B,B], with the batch dim B twice; bpcc sizes a training step's memory linearly in the batch, so a value may hold B at most once
        g = x @ transpose(x)
            ^~~~~~~~~~~~~~~~
$T/gram.bp:1:9: note: 'x' declared here as f32[B,4]
    model m(x: f32[B, 4]) {
            ^
$T/gram.bp:2:13: note: this has shape [4,B]
        g = x @ transpose(x)
                ^~~~~~~~~~~~
WANT
for cmd in --check gradcheck --emit=grad-ir --emit=opt-ir; do
  expect_error_exact --no-stdout "$(cat "$T/want")" $cmd "$T/gram.bp"
done

t_done frontend_cli
