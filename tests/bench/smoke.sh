#!/bin/sh
# tests/bench/smoke.sh BPCC SOURCE_DIR — one step of bench/m1.bp at batch 4, with its
# matrix-product rows and its --profile lines, M4's convolution kernels and M5's step and
# products; checks the shape of the output only (never the speed).
set -u
BPCC=$1
SRC=$2
out=$("$BPCC" bench "$SRC/bench/m1.bp" --steps 1 --warmup 0 --batch 4 --threads 1 --gemm) || { echo "FAIL: bpcc bench exited $?"; exit 1; }
echo "$out"
echo "$out" | grep -Eq '^bpcc m1 [0-9.]+ [0-9.]+ [0-9.]+ [0-9.]+ [0-9.]+ [0-9]+ [0-9.]+$' || { echo "FAIL: no model row"; exit 1; }
n=$(echo "$out" | grep -Ec '^gemm matmul(_nt|_tn)? [0-9]+ [0-9]+ [0-9]+ 1 [0-9.]+ [0-9.]+$')
[ "$n" -ge 4 ] || { echo "FAIL: expected the products of M1, got $n rows"; exit 1; }
# the GEMM's blocking (codegen/blocking.c): for the host, and the defaults for another -march
echo "$out" | grep -Eq '^blocking .+; tile [0-9]+x[0-9]+, KC [0-9]+, MC [0-9]+, NC [0-9]+ \(.+\)$' || { echo "FAIL: no blocking line"; exit 1; }
v3=$("$BPCC" bench "$SRC/bench/m1.bp" --steps 1 --warmup 0 --batch 4 --threads 1 -march=x86-64-v3) || { echo "FAIL: bpcc bench -march=x86-64-v3 exited $?"; exit 1; }
echo "$v3" | grep -qx 'blocking -march=x86-64-v3; tile 6x16, KC 256, MC 144, NC 2048 (not the host (-march=x86-64-v3): the defaults)' ||
  { echo "FAIL: the blocking of -march=x86-64-v3"; echo "$v3"; exit 1; }
prof=$("$BPCC" bench "$SRC/bench/m1.bp" --steps 1 --warmup 0 --batch 4 --threads 1 --profile) || { echo "FAIL: bpcc bench --profile exited $?"; exit 1; }
for ph in forward backward update products other; do
  echo "$prof" | grep -Eq "^profile $ph -?[0-9.]+\$" || { echo "FAIL: no '$ph' line from --profile"; echo "$prof"; exit 1; }
done
# the per-kernel lines: M1's products with their epilogues and their FLOPs at batch 4
# (2 x 4 x 784 x 256, 2 x 4 x 10 x 256), softmax-CE and the update without any ("-")
for k in "grad 0 [0-9.]+ 1605632 matmul\+add\+relu m1.bp:[0-9]+" "grad [0-9]+ [0-9.]+ - softmax_xent\+softmax\+onehot\+sub\+mul m1.bp:[0-9]+" \
         "grad [0-9]+ [0-9.]+ 20480 matmul_nt\+relu_grad m1.bp:[0-9]+" "step 0 [0-9.]+ - optimizer update"; do
  echo "$prof" | grep -Eq "^kernel $k\$" || { echo "FAIL: no kernel line '$k' from --profile"; echo "$prof"; exit 1; }
done
# M4 (LeNet-5): every convolution's kernel, found by its op and DSL line, with the FLOPs
# of its pass at batch 2: 2 B O C kh kw Ho Wo = 2 x 2 x 6 x 1 x 25 x 28 x 28 for the
# first conv, 2 x 2 x 16 x 6 x 25 x 10 x 10 for the second; the first has no
# backward-data pass (its input is the image). Other ops may share a conv's kernel.
prof4=$("$BPCC" bench "$SRC/bench/m4_lenet.bp" --steps 1 --warmup 0 --batch 2 --threads 1 --profile) || { echo "FAIL: bpcc bench m4_lenet.bp --profile exited $?"; exit 1; }
echo "$prof4" | grep -Eq '^bpcc m4_lenet [0-9.]+ [0-9.]+ [0-9.]+ [0-9.]+ [0-9.]+ [0-9]+ [0-9.]+$' || { echo "FAIL: no M4 model row"; echo "$prof4"; exit 1; }
for k in "470400 conv2d:6" "960000 conv2d:7" "960000 conv2d_bwd_data:7" "960000 conv2d_bwd_weight:7" "470400 conv2d_bwd_weight:6"; do
  fl=${k%% *} op=${k#* }
  n=$(echo "$prof4" | grep -Ec "^kernel grad [0-9]+ [0-9.]+ $fl ([a-z_0-9]+\+)*${op%:*}(\+[a-z_0-9]+)* m4_lenet.bp:${op#*:}\$")
  [ "$n" -eq 1 ] || { echo "FAIL: expected one kernel line for ${op%:*} of line ${op#*:} with $fl FLOP, got $n"; echo "$prof4"; exit 1; }
done
n=$(echo "$prof4" | grep -Ec '^kernel grad [0-9]+ [0-9.]+ [0-9]+ ([a-z_0-9]+\+)*conv2d_bwd_data(\+[a-z_0-9]+)* m4_lenet.bp:6$')
[ "$n" -eq 0 ] || { echo "FAIL: a backward-data pass for the first conv, whose input needs no gradient"; echo "$prof4"; exit 1; }
# M5 (the tinygpt step, token inputs label[B, 64, 256]) at batch 2: the model row, and
# its sequence products timed as one product each, B*T = 128 rows: the MLP's first
# layer [128,128] @ [128,512] and its weight gradient (matmul_tn over the batch and the
# positions: K = 128)
prof5=$("$BPCC" bench "$SRC/bench/m5_gpt.bp" --steps 1 --warmup 0 --batch 2 --threads 1 --gemm) || { echo "FAIL: bpcc bench m5_gpt.bp exited $?"; exit 1; }
echo "$prof5" | grep -Eq '^bpcc m5_gpt [0-9.]+ [0-9.]+ [0-9.]+ [0-9.]+ [0-9.]+ [0-9]+ [0-9.]+$' || { echo "FAIL: no M5 model row"; echo "$prof5"; exit 1; }
for k in "matmul 128 128 512" "matmul_tn 128 128 512"; do
  echo "$prof5" | grep -Eq "^gemm $k 1 [0-9.]+ [0-9.]+\$" || { echo "FAIL: no product row '$k' for M5"; echo "$prof5"; exit 1; }
done
err=$("$BPCC" bench "$SRC/bench/m1.bp" --steps 0 2>&1 > /dev/null); rc=$?
[ $rc -eq 1 ] && echo "$err" | grep -q "expected an integer from 1 to 2147483647" || { echo "FAIL: --steps 0 not refused: $err"; exit 1; }
# the library row: bench/aot_step.c builds and runs one step of M1's library
T=$(mktemp -d "${TMPDIR:-/tmp}/bpcc-smoke-XXXXXX")
trap 'rm -rf "$T"' EXIT
cc -O2 -std=c11 -o "$T/aot_step" "$SRC/bench/aot_step.c" -ldl || { echo "FAIL: bench/aot_step.c does not build"; exit 1; }
"$BPCC" "$SRC/bench/m1.bp" -o "$T/m1.so" || { echo "FAIL: bpcc -o m1.so"; exit 1; }
aot=$("$T/aot_step" "$T/m1.so" m1 4 1 1) || { echo "FAIL: aot_step exited $?"; exit 1; }
echo "$aot"
echo "$aot" | grep -Eq '^aot m1 [0-9.]+ [0-9.]+ [0-9.]+ [0-9.]+$' || { echo "FAIL: no library row"; exit 1; }
# and M5's library: token inputs, one label per position (batch 2 x 64 of them)
"$BPCC" "$SRC/bench/m5_gpt.bp" -o "$T/m5.so" || { echo "FAIL: bpcc -o m5.so"; exit 1; }
aot=$("$T/aot_step" "$T/m5.so" m5_gpt 2 1 1) || { echo "FAIL: aot_step m5_gpt exited $?"; exit 1; }
echo "$aot"
echo "$aot" | grep -Eq '^aot m5_gpt [0-9.]+ [0-9.]+ [0-9.]+ [0-9.]+$' || { echo "FAIL: no M5 library row"; exit 1; }
# the CPU named in the benchmark's header and CSV (bench/peak.c --cpu, no timing): the
# family and model decoded from CPUID must be the kernel's
cc -O2 -std=c11 -D_POSIX_C_SOURCE=200809L -o "$T/peak" "$SRC/bench/peak.c" -lpthread || { echo "FAIL: bench/peak.c does not build"; exit 1; }
cpu=$("$T/peak" --cpu) || { echo "FAIL: peak --cpu exited $?"; exit 1; }
echo "$cpu"
for k in "vendor [A-Za-z]+" "family [0-9]+" "model [0-9]+" "model_name .+" "uarch .+"; do
  echo "$cpu" | grep -Eq "^cpu_$k\$" || { echo "FAIL: no line 'cpu_$k' from peak --cpu"; exit 1; }
done
if [ -r /proc/cpuinfo ]; then
  for k in "vendor_id:vendor" "cpu family:family" "model:model"; do
    want=$(sed -n "s/^${k%%:*}[[:space:]]*: *//p" /proc/cpuinfo | head -1)
    got=$(echo "$cpu" | sed -n "s/^cpu_${k#*:} //p")
    [ "$got" = "$want" ] || { echo "FAIL: peak --cpu says ${k#*:} '$got', /proc/cpuinfo '$want'"; exit 1; }
  done
fi
echo "bench smoke: ok"
