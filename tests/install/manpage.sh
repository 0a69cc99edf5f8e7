#!/bin/sh
# tests/install/manpage.sh BPCC SRCDIR — the manual page stays complete: every option
# that `bpcc --help` and each command's --help lists, every command and every --emit
# kind appears in docs/bpcc.1; and `man -l` renders it without a warning.
# (A new option in a command's table shows in its --help, so it must be documented.)
set -u
BPCC=$1
SRC=$2
. "$SRC/tests/lib.sh"
t_setup man
MAN=$SRC/docs/bpcc.1

# the page as text to search: roff's \- is a hyphen, font changes go
sed -e 's/\\-/-/g' -e 's/\\f[BIRP]//g' -e 's/\\&//g' "$MAN" > "$T/page"
has() { grep -qE -- "(^|[^A-Za-z0-9-])$1([^A-Za-z0-9-]|\$)" "$T/page"; }

# the commands: the first word of each line under "commands:" in bpcc --help
"$BPCC" --help > "$T/help" || fail "bpcc --help: exit status $?"
commands=$(sed -n '/^commands:/,/^$/p' "$T/help" | sed -n 's/^  \([a-z][a-z-]*\) .*/\1/p')
[ -n "$commands" ] || fail "no commands found in bpcc --help"
for c in $commands; do
  grep -q "^\.SS bpcc $c" "$MAN" || fail "command '$c' has no section (.SS bpcc $c) in docs/bpcc.1"
  "$BPCC" "$c" --help > "$T/help-$c" || fail "bpcc $c --help: exit status $?"
done

# the options each --help lists: words that start with - or -- and a letter
n=0
for h in "$T"/help*; do
  for opt in $(grep -oE -- "(^|[^A-Za-z0-9-])--?[A-Za-z][A-Za-z0-9-]*" "$h" | sed 's/^[^-]*//' | sort -u); do
    n=$((n + 1))
    has "$opt" || fail "'$opt' (in $(basename "$h" | sed 's/^help-\{0,1\}/bpcc /; s/^bpcc $/bpcc/') --help) is not in docs/bpcc.1"
  done
done
[ $n -ge 40 ] || fail "only $n options found in the --help texts"

# the --emit kinds, as the error for an unknown one lists them
kinds=$("$BPCC" --emit=? x.bp 2>&1 | sed -n 's/.*(\(.*\)).*/\1/p' | tr -d ',')
[ -n "$kinds" ] || fail "no --emit kinds in the error for an unknown one"
for k in $kinds; do
  grep -qE -- "^\.B $(echo "$k" | sed 's/-/\\\\-/g')\$" "$MAN" || fail "--emit=$k is not described in docs/bpcc.1"
done

# man -l renders it, and groff has nothing to warn about
if command -v man > /dev/null; then
  LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -l "$MAN" > "$T/out" 2> "$T/err" || fail "man -l: exit status $?"
  [ -s "$T/err" ] && { fail "man -l warns:"; cat "$T/err"; }
  grep -q "^NAME" "$T/out" && grep -q "bpcc - a gradient compiler" "$T/out" || fail "man -l rendered no NAME section"
else
  fail "man is not installed (Debian package man-db: make deps installs it)"
fi

echo "$n options, commands: $(echo $commands | tr '\n' ' ')"
t_done manpage
