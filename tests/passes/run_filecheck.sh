#!/bin/sh
# run_filecheck.sh IR_OPT FILECHECK FILE.ir — one golden pass test, lit-style:
# the first `# RUN:` line of FILE.ir gives ir_opt's arguments (FILE.ir is appended);
# its output is checked against FILE.ir's CHECK lines by FileCheck.
# A `# RUN-FAIL:` line instead expects ir_opt to fail, and checks its stderr.
set -u
opt=$1; filecheck=$2; file=$3
out=$(mktemp); trap 'rm -f "$out"' EXIT
if args=$(sed -n 's/^# RUN-FAIL: *//p' "$file" | head -n 1) && [ -n "$args" ]; then
  # shellcheck disable=SC2086
  if "$opt" $args "$file" >/dev/null 2>"$out"; then
    echo "run_filecheck: ir_opt $args $file succeeded; it was expected to fail" >&2
    exit 1
  fi
else
  args=$(sed -n 's/^# RUN: *//p' "$file" | head -n 1)
  # shellcheck disable=SC2086
  "$opt" $args "$file" >"$out" || { echo "run_filecheck: ir_opt $args $file failed" >&2; exit 1; }
fi
exec "$filecheck" --input-file="$out" "$file"
