#!/bin/sh
# tests/install/recipe.sh BPCC SRCDIR — the link recipe of docs/abi.md works as written:
# the lines of the code block after "<!-- recipe -->" run one by one in a copy of
# examples/embed (with BPCC's directory first on PATH); then the program runs from
# another directory, where it finds its library through its RUNPATH ($ORIGIN) alone.
set -u
BPCC=$1
SRC=$2
T=$(mktemp -d "${TMPDIR:-/tmp}/bpcc-recipe-XXXXXX")
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

sed -n '/^<!-- recipe -->$/,/^```$/p' "$SRC/docs/abi.md" | sed '1,2d; $d' > "$T/recipe.sh"
[ "$(wc -l < "$T/recipe.sh")" -ge 2 ] || fail "no recipe block in docs/abi.md"
grep -q "rpath" "$T/recipe.sh" || fail "the recipe sets no RUNPATH"
echo "recipe:"; sed 's/^/  /' "$T/recipe.sh"
cp -r "$SRC/examples/embed" "$T/app"
mkdir "$T/bin" && ln -s "$(cd "$(dirname "$BPCC")" && pwd)/$(basename "$BPCC")" "$T/bin/bpcc"
(cd "$T/app" && PATH="$T/bin:$PATH" sh -e "$T/recipe.sh") > "$T/out" 2>&1 || { cat "$T/out"; fail "the recipe failed"; }
grep -q "ok: the loss fell" "$T/out" || { cat "$T/out"; fail "./embed in the recipe: no 'ok'"; }

# from elsewhere, and after moving the program and its library together
readelf -d "$T/app/embed" | grep -q 'R.*PATH.*\[\$ORIGIN\]' || fail "embed has no RUNPATH \$ORIGIN"
mkdir "$T/elsewhere" && cd "$T/elsewhere" || exit 1
env -u LD_LIBRARY_PATH "$T/app/embed" ck.safetensors > out 2>&1 || { cat out; fail "embed from another directory"; }
mv "$T/app" "$T/moved"
env -u LD_LIBRARY_PATH "$T/moved/embed" ck.safetensors > out 2>&1 || { cat out; fail "embed moved with its library"; }
grep -q "ok: the loss fell" out || { cat out; fail "embed moved: no 'ok'"; }
echo "ok"
