#!/bin/sh
# tests/codegen/attention_mem.sh BPCC SRCDIR — the fused attention in the bpcc command's
# plans (issue 14: no [B,H,T,T] tensor kept for backward):
#   1. --emit=opt-ir of examples/tinygpt.bp: each attention and attention_bwd is one
#      kernel of kind `attention` with its extras (lse; dk and dv)
#   2. --mem-report of the recipe at T = 1024 (B 32, 4 heads, dh 32): no tensor with a
#      [1024,1024] pair of dims, the two lse [B,4,1024] kept for backward, the largest
#      tensor below one [B,4,T,T] f32 (512 MiB), and the packing buffers with the
#      attention scratch (per chunk) below one [T,T] slice (4 MiB)
set -eu
BPCC=$1
SRC=$2
. "$SRC/tests/lib.sh"
t_setup attention_mem

"$BPCC" --emit=opt-ir "$SRC/examples/tinygpt.bp" > "$T/plan.txt"
n=$(grep -c "# kernel [0-9]*: attention+extra  (attention)$" "$T/plan.txt" || true)
[ "$n" = 2 ] || fail "$n forward attention kernels with their lse, not 2"
n=$(grep -c "# kernel [0-9]*: attention_bwd+extra+extra  (attention)$" "$T/plan.txt" || true)
[ "$n" = 2 ] || fail "$n attention_bwd kernels with dk and dv, not 2"

sed 's/label\[B, 64, 256\]/label[B, 1024, 256]/g' "$SRC/examples/tinygpt.bp" > "$T/gpt1024.bp"
grep -q "label\[B, 1024, 256\]" "$T/gpt1024.bp" || die "the recipe's T could not be set to 1024"
"$BPCC" --mem-report "$T/gpt1024.bp" > "$T/mem.txt"
grep -q "^memory plan of @tinygpt.grad at batch 32 " "$T/mem.txt" || die "no memory plan at batch 32"
if grep -q "1024,1024" "$T/mem.txt"; then
  grep "1024,1024" "$T/mem.txt"
  fail "a [T,T] tensor in the memory plan"
fi
n=$(grep -c " f32\[B,4,1024\] .* kept for backward$" "$T/mem.txt" || true)
[ "$n" = 2 ] || fail "$n lse tensors f32[B,4,1024] kept for backward, not 2"
largest=$(awk '$1 ~ /^%/ && $5 ~ /^[0-9]+$/ { if ($5 > m) m = $5 } END { print m + 0 }' "$T/mem.txt")
echo "largest tensor $largest bytes"
[ "$largest" -gt 0 ] && [ "$largest" -lt 536870912 ] || fail "largest tensor $largest bytes, not below one [B,4,T,T]"
pack=$(sed -n 's/.*product packing and im2col buffers \([0-9]*\),.*/\1/p' "$T/mem.txt")
[ -n "$pack" ] || die "no packing buffers in the workspace line"
echo "packing buffers and attention scratch: $pack bytes"
# one set per chunk, as many chunks as CPUs (codegen's cg_gemm_chunks, at most 64)
chunks=$(getconf _NPROCESSORS_ONLN 2> /dev/null || echo 64)
[ "$chunks" -le 64 ] || chunks=64
[ "$pack" -lt $((4194304 * chunks)) ] || fail "packing and scratch $pack bytes: a [T,T] slice per chunk ($chunks) or more"

t_done attention_mem
