#!/bin/sh
# run_grad_ir.sh BPCC FILECHECK SOURCE_DIR FILE.check — `bpcc --emit=grad-ir` on a .bp
# file, checked by FileCheck: the first `# RUN:` line of FILE.check gives bpcc's
# arguments, with paths relative to the source directory.
set -u
bpcc=$1; filecheck=$2; src=$3; file=$4
out=$(mktemp); trap 'rm -f "$out"' EXIT
args=$(sed -n 's/^# RUN: *//p' "$file" | head -n 1)
# shellcheck disable=SC2086
(cd "$src" && "$bpcc" --emit=grad-ir $args) >"$out" || { echo "run_grad_ir: bpcc --emit=grad-ir $args failed" >&2; exit 1; }
exec "$filecheck" --input-file="$out" "$file"
