#!/bin/sh
# tests/install/recipe.sh BPCC SRCDIR — the link recipe of docs/abi.md works as written:
# the lines of the code block after "<!-- recipe -->" run one by one in a copy of
# examples/embed (with BPCC's directory first on PATH); then the program runs from
# another directory, where it finds its library through its RUNPATH ($ORIGIN) alone.
set -u
BPCC=$1
SRC=$2
. "$SRC/tests/lib.sh"
t_setup recipe

sed -n '/^<!-- recipe -->$/,/^```$/p' "$SRC/docs/abi.md" | sed '1,2d; $d' > "$T/recipe.sh"
[ "$(wc -l < "$T/recipe.sh")" -ge 2 ] || die "no recipe block in docs/abi.md"
grep -q "rpath" "$T/recipe.sh" || die "the recipe sets no RUNPATH"
echo "recipe:"; sed 's/^/  /' "$T/recipe.sh"
cp -r "$SRC/examples/embed" "$T/app"
mkdir "$T/bin" && ln -s "$(cd "$(dirname "$BPCC")" && pwd)/$(basename "$BPCC")" "$T/bin/bpcc"
(cd "$T/app" && PATH="$T/bin:$PATH" sh -e "$T/recipe.sh") > "$T/out" 2>&1 || { cat "$T/out"; die "the recipe failed"; }
grep -q "ok: the loss fell" "$T/out" || { cat "$T/out"; die "./embed in the recipe: no 'ok'"; }

# from elsewhere, and after moving the program and its library together
readelf -d "$T/app/embed" | grep -q 'R.*PATH.*\[\$ORIGIN\]' || die "embed has no RUNPATH \$ORIGIN"
mkdir "$T/elsewhere" && cd "$T/elsewhere" || die "cd $T/elsewhere"
env -u LD_LIBRARY_PATH "$T/app/embed" ck.safetensors > out 2>&1 || { cat out; die "embed from another directory"; }
mv "$T/app" "$T/moved"
env -u LD_LIBRARY_PATH "$T/moved/embed" ck.safetensors > out 2>&1 || { cat out; die "embed moved with its library"; }
grep -q "ok: the loss fell" out || { cat out; die "embed moved: no 'ok'"; }
t_done link_recipe
