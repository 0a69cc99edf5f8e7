#!/bin/sh
# tests/codegen/cast_kernels.sh BPCC SRCDIR — the casts of a bf16 / f16 training step in
# the bpcc command's kernels (docs/codegen.md, "16-bit values"):
#   1. --emit=opt-ir of examples/mnist_mlp.bp: the hidden layer's product stores its
#      relu in 16 bits from the epilogue (the biased value internal, the relu's f32
#      value C's scratch slot), and backward's dh = dlogits W^T takes relu_grad with
#      its saved value (relu's 16-bit copy) read in 16 bits (the cast back to f32
#      internal) and stores dh's 16-bit copy for the next product beside its f32
#      value (which the bias gradient reads)
#   2. the model libraries of both precisions for -march=x86-64 (no F16C) call no
#      conversion routine (__truncsfhf2, __extendhfsf2, __truncsfbf2): the generated
#      code rounds and widens in its own instructions
set -u
BPCC=$1
SRC=$2
. "$SRC/tests/lib.sh"
t_setup cast_kernels
cd "$SRC" || die "cd $SRC"

for p in bf16 f16; do
  "$BPCC" --emit=opt-ir --precision $p examples/mnist_mlp.bp | tr -s ' ' > "$T/opt" || die "--emit=opt-ir --precision $p"
  for k in 'matmul+add+relu+cast (gemm+epilogue)' 'matmul_nt+cast+relu_grad+cast (gemm+epilogue)'; do
    n=$(grep -c "^ # kernel [0-9]*: $k\$" "$T/opt" || true)
    [ "$n" = 1 ] || fail "--precision $p: $n kernels '$k', not 1"
  done
  # (backward's value numbers differ between the precisions: f16 scales the loss)
  for l in " %7 = add %6, %3 : f32[B,800] # examples/mnist_mlp.bp:3:19 (internal)" \
           " %9 = cast %8 : $p[B,800] # examples/mnist_mlp.bp:3:14 [fwd precision]" \
           " = cast %9 : f32[B,800] # examples/mnist_mlp.bp:3:14 [precision from %8] (internal)"; do
    grep -qF "$l" "$T/opt" || fail "--precision $p: no line '$l'"
  done
  "$BPCC" -march=x86-64 --precision $p -o "$T/m_$p.so" examples/mnist_mlp.bp > "$T/out" 2>&1 || {
    cat "$T/out"
    die "-o m_$p.so -march=x86-64 --precision $p"
  }
  # undefined (a libcall) or linked in (from libgcc): either is a call
  calls=$( (nm -D "$T/m_$p.so"; nm "$T/m_$p.so" 2> /dev/null) | awk '{print $NF}' | grep -E '^__(trunc|extend)[a-z]*f2' | sort -u || true)
  [ -z "$calls" ] && continue
  fail "--precision $p -march=x86-64: the library calls $calls"
done
t_done cast_kernels
