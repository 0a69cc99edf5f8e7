#!/bin/sh
# tests/install/install.sh BUILDDIR SRCDIR — `make install` as a user gets it: the
# install rules (cmake --install, the same rules `make install` runs) with DESTDIR and
# the prefix /usr, then, from another directory and with nothing of the source or build
# tree on PATH, the installed bpcc: --version, --check of an installed example, a short
# train on generated data; its --help names the installed documentation and no path of
# the source tree; man -l renders the installed page; and examples/embed, as installed,
# builds against the installed tree through find_package(bpcc) and bpcc_add_model()
# and runs from another directory.
set -u
BUILD=$1
SRC=$2
. "$SRC/tests/lib.sh"
t_setup install

D=$T/D
DESTDIR=$D cmake --install "$BUILD" --prefix /usr > "$T/install.log" 2>&1 || { cat "$T/install.log"; die "cmake --install"; }
for f in bin/bpcc share/man/man1/bpcc.1 share/doc/bpcc/README.md share/doc/bpcc/docs/abi.md \
         share/doc/bpcc/docs/training.md share/doc/bpcc/examples/spiral.bp share/doc/bpcc/examples/embed/embed.c \
         share/bpcc/cmake/bpcc-config.cmake share/bpcc/cmake/bpcc-config-version.cmake share/bpcc/cmake/bpcc-functions.cmake; do
  [ -s "$D/usr/$f" ] || fail "not installed: /usr/$f"
done
[ -x "$D/usr/bin/bpcc" ] || fail "/usr/bin/bpcc is not executable"

mkdir "$T/elsewhere"
cd "$T/elsewhere" || die "cd $T/elsewhere"
run() { env -i PATH="$D/usr/bin:/usr/bin:/bin" HOME="$T" "$@"; }
run bpcc --version > "$T/version" 2>&1 || fail "bpcc --version: exit status $?"
grep -q "^bpcc [0-9][0-9.]*$" "$T/version" || { fail "--version: no 'bpcc VERSION' line"; cat "$T/version"; }
grep -q "^LLVM [0-9][0-9.]*, target " "$T/version" || { fail "--version: no LLVM line"; cat "$T/version"; }
grep -q "^host CPU: .*(LLVM: [a-z0-9_-]*)$" "$T/version" || { fail "--version: no host CPU line"; cat "$T/version"; }
run bpcc --check "$D/usr/share/doc/bpcc/examples/spiral.bp" > "$T/check" 2>&1 || { fail "--check"; cat "$T/check"; }
grep -q "^model spiral" "$T/check" || fail "--check printed no summary"
run bpcc train "$D/usr/share/doc/bpcc/examples/spiral.bp" --data spiral:n=96 --epochs 2 --batch 32 --quiet \
  > "$T/train" 2>&1 || { fail "train"; cat "$T/train"; }
grep -q "^trained 2 epochs (6 steps)" "$T/train" || { fail "train: no 'trained' line"; cat "$T/train"; }

# --help points at the installed documentation, never into the source tree
for c in "" train eval predict plot gradcheck bench; do
  # shellcheck disable=SC2086
  run bpcc $c --help > "$T/help" 2>&1 || fail "bpcc $c --help: exit status $?"
  grep -F -q "$SRC" "$T/help" && fail "bpcc $c --help names the source tree ($SRC)"
  grep -F -q "$BUILD" "$T/help" && fail "bpcc $c --help names the build tree ($BUILD)"
done
run bpcc --help | grep -q "^documentation: man bpcc; $D/usr/share/doc/bpcc " || fail "--help does not name $D/usr/share/doc/bpcc"
run bpcc train --help | grep -q "$D/usr/share/doc/bpcc/docs/training.md" || fail "train --help does not name the installed training.md"

# the installed manual page renders without warnings
if command -v man > /dev/null; then
  LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -l "$D/usr/share/man/man1/bpcc.1" > "$T/man" 2> "$T/manerr" || fail "man -l: exit $?"
  [ -s "$T/manerr" ] && { fail "man -l warns:"; cat "$T/manerr"; }
  grep -q "bpcc - a gradient compiler" "$T/man" || fail "man -l rendered no NAME"
else
  fail "man is not installed (Debian package man-db)"
fi

# a CMake project embedding a model, against the installed tree only
E=$D/usr/share/doc/bpcc/examples/embed
env -i PATH=/usr/bin:/bin HOME="$T" cmake -S "$E" -B "$T/embed" -DCMAKE_PREFIX_PATH="$D/usr" > "$T/cmake.log" 2>&1 ||
  { fail "configuring the installed examples/embed"; cat "$T/cmake.log"; }
env -i PATH=/usr/bin:/bin HOME="$T" cmake --build "$T/embed" > "$T/build.log" 2>&1 ||
  { fail "building the installed examples/embed"; cat "$T/build.log"; }
grep -qx "bpcc_DIR:PATH=$D/usr/share/bpcc/cmake" "$T/embed/CMakeCache.txt" || fail "find_package(bpcc) found another bpcc"
mkdir "$T/run" && cd "$T/run" || die "cd $T/run"
"$T/embed/embed" "$T/run/ck.safetensors" > "$T/embed.out" 2>&1 || { fail "embed: exit status $?"; cat "$T/embed.out"; }
grep -q "ok: the loss fell" "$T/embed.out" || { fail "embed: no 'ok'"; cat "$T/embed.out"; }

echo "installed under $D/usr and used from $T/elsewhere"
t_done install
