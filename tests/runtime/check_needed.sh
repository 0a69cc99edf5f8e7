#!/bin/sh
# check_needed.sh LIB.so — fail unless LIB's NEEDED entries are all libc, libm, libpthread.
set -e
bad=$(readelf -d "$1" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | grep -v -E '^(libc|libm|libpthread)\.so\.[0-9]+$' || true)
if [ -n "$bad" ]; then
  echo "runtime_needed: $1 needs more than libc, libm and libpthread:"
  echo "$bad"
  exit 1
fi
readelf -d "$1" | grep NEEDED
echo "runtime_needed: OK"
