#!/bin/sh
# tests/driver/limits.sh BPCC SRCDIR — limits answered with a message, never a hang, an
# OOM kill or a silent wrap (bpcc issue 12):
#   1. a FIFO, /dev/zero or a directory as the model file, a data file or a checkpoint
#      (--resume, eval --weights) is an error at once; '-' still reads standard input;
#   2. a gzip bomb (1 MB that inflates to 1 GiB) behind an IDX header, and as a CSV, is
#      refused under `ulimit -v` 400 MiB (bpcc alone maps about 150 MiB);
#   3. out-of-range option values are errors naming the option and its range.
# Every command runs under `timeout 10`: a hang is a failure (status 124), not a stuck
# test. The time bounds themselves are in tests/runtime/test_limits.c.
set -u
BPCC=$1
SRC=$2
. "$SRC/tests/lib.sh"
t_setup limits
t_timeout=10   # expect_error_has: exit 1 within 10 s, the message on stderr
M=$SRC/examples/spiral.bp

mkfifo "$T/fifo" || die "mkfifo"
mkdir "$T/dir"
FIFO_IS="$T/fifo: a FIFO (named pipe), not a regular file: only regular files can be read here"
ZERO_IS="/dev/zero: a character device, not a regular file: only regular files can be read here"
DIR_IS="$T/dir: a directory, not a regular file: only regular files can be read here"

# ---- 1. not regular files
expect_error_has "cannot read '$T/fifo': a FIFO (named pipe), not a regular file; to read a program from a pipe, use '-' (standard input)" --check "$T/fifo"
expect_error_has "cannot read '/dev/zero': a character device, not a regular file; to read a program from a pipe, use '-'" --check /dev/zero
expect_error_has "cannot read '$T/dir': a directory, not a regular file" --check "$T/dir"
expect_error_has "cannot read '$T/fifo': a FIFO (named pipe)" train "$T/fifo" --data spiral
timeout 10 "$BPCC" --check - < /dev/zero > /dev/null 2> "$T/err"
rc=$?
[ $rc -eq 1 ] && grep -qF "<stdin>: more than 64 MiB of text: too large for a .bp or .ir file" "$T/err" ||
  fail "--check - < /dev/zero: exit $rc: $(cat "$T/err")"
# standard input, a pipe included, is still a program
cat "$M" | timeout 10 "$BPCC" --check - > /dev/null 2>&1 || fail "--check - from a pipe"

expect_error_has "$FIFO_IS" train "$M" --data "csv:$T/fifo"
expect_error_has "$ZERO_IS" train "$M" --data csv:/dev/zero
expect_error_has "$ZERO_IS" train "$M" --data "idx:/dev/zero,$T/fifo"
expect_error_has "$DIR_IS" train "$M" --data "npy:$T/dir,$T/fifo"
# a checkpoint to start from is opened before anything is compiled
expect_error_exact "bpcc: error: --resume: $FIFO_IS" train "$M" --data spiral:n=60 --epochs 1 --resume "$T/fifo"
expect_error_exact "bpcc: error: --init: $FIFO_IS" train "$M" --data spiral:n=60 --epochs 1 --init "$T/fifo"
expect_error_has "$ZERO_IS" train "$M" --data spiral:n=60 --epochs 1 --resume /dev/zero
expect_error_has "spiral: load: $FIFO_IS" eval "$M" --weights "$T/fifo" --data spiral:n=60
expect_error_has "spiral: load: $DIR_IS" eval "$M" --weights "$T/dir" --data spiral:n=60

# ---- 2. gzip bombs under a few hundred MB of address space: one gzip member of 1 MiB
# of zeros (about 1 KB) repeated 1024 times after a first member, as `cat` makes them
head -c 1048576 /dev/zero | gzip -9 > "$T/zeros.gz"
i=0
while [ $i -lt 1024 ]; do cat "$T/zeros.gz"; i=$((i + 1)); done > "$T/tail.gz"
# an IDX header that claims 5 images of 2x3 (46 bytes), then 1 GiB
{ printf '\0\0\10\3\0\0\0\5\0\0\0\2\0\0\0\3'; head -c 30 /dev/zero; } | gzip -9 > "$T/images.gz"
cat "$T/tail.gz" >> "$T/images.gz"
printf '\0\0\10\1\0\0\0\5\0\1\2\1\0' > "$T/labels"
# a CSV that inflates to 1 GiB of "0,0" rows
head -c 1048576 /dev/zero | tr '\0' 0 | sed 's/0000/0,0\n/g' | head -c 1048576 | gzip -9 > "$T/rows.gz"
{ printf '1,2\n' | gzip -9; i=0; while [ $i -lt 1024 ]; do cat "$T/rows.gz"; i=$((i + 1)); done; } > "$T/bomb.csv.gz"
for f in images.gz bomb.csv.gz; do
  size=$(wc -c < "$T/$f")
  [ "$size" -lt 2000000 ] || fail "$f is $size bytes, not about 1 MB"
done
(
  t_fails=0
  ulimit -v 409600
  expect_error_has "$T/images.gz: unexpected bytes after the last of 5 records (from byte 46 of the decompressed data): the header's count disagrees with the file" \
    train "$M" --data "idx:$T/images.gz,$T/labels"
  expect_error_has "refusing a likely gzip bomb; if the file is genuine, decompress it (gunzip) and load the raw file" \
    train "$M" --data "csv:$T/bomb.csv.gz"
  # generated data larger than the memory left: refused before malloc overcommits
  expect_error_has "blobs:n=100000000,classes=3,dim=50,std=1: the data needs 19.0 GiB (100000000 rows of 50 features);" \
    train "$M" --data blobs:n=100000000,dim=50
  t_sub_exit
) || t_fails=$((t_fails + $?))

# ---- 3. option values out of range: errors with the range, never wrapped or capped
expect_error_has "--threads '4294967297': too large: expected an integer from 1 to 1024" train "$M" --data spiral --threads 4294967297
expect_error_has "--threads '5000': too large: expected an integer from 1 to 1024" train "$M" --data spiral --threads 5000
expect_error_has "--batch 4294967297: at most 2147483648 rows for bench" bench "$M" --batch 4294967297
expect_error_has "--batch 4294967297: at most 2147483648 rows for --mem-report" --mem-report "$M" --batch 4294967297
expect_error_has "--batch '0': expected an integer >= 1" eval "$M" --weights x --data spiral --batch 0
expect_error_has "--epochs '99999999999999999999': too large: expected an integer from 1 to 9223372036854775807" train "$M" --data spiral --epochs 99999999999999999999
expect_error_has "--seed '18446744073709551616': too large: expected an integer from 0 to 9223372036854775807" train "$M" --data spiral --seed 18446744073709551616
expect_error_has "--save-every '-1': expected an integer >= 1" train "$M" --data spiral --save x.st --save-every -1
expect_error_has "--print-every '99999999999999999999': too large: expected an integer from 1 to 9223372036854775807" train "$M" --data spiral --print-every 99999999999999999999
expect_error_has "--top-k '0': expected an integer from 1 to 2147483647" predict "$M" --weights x --data spiral --top-k 0
expect_error_has "--steps '4294967297': too large: expected an integer from 1 to 2147483647" bench "$M" --steps 4294967297
expect_error_has "--warmup '99999999999': too large: expected an integer from 0 to 2147483647" bench "$M" --warmup 99999999999
expect_error_has "bench: the model needs" bench "$M" --batch 2147483648 --steps 1
expect_error_has "--tol must be a positive finite number, not 'inf'" gradcheck "$M" --tol inf
expect_error_has "--samples '0': expected an integer >= 1" gradcheck "$M" --samples 0
expect_error_has "--mem-budget '0': must be more than 0 bytes" --mem-report "$M" --mem-budget 0
expect_error_has "--mem-budget '17179869184GiB': out of range: a whole number of bytes up to 9e18 (8 EiB)" --mem-report "$M" --mem-budget 17179869184GiB
expect_error_has "--lr '-1': must be >= 0" train "$M" --data spiral --lr -1
expect_error_has "--optimizer 'adam(betas=(0.9, 1.0))': betas must be in [0, 1) at column 12" train "$M" --data spiral --optimizer 'adam(betas=(0.9, 1.0))'
expect_error_has "--optimizer 'adam(eps=-1e-8)': eps must be >= 0 at column 10" train "$M" --data spiral --optimizer 'adam(eps=-1e-8)'
expect_error_has "--optimizer 'adamw(weight_decay=-0.1)': weight_decay must be >= 0 at column 20" train "$M" --data spiral --optimizer 'adamw(weight_decay=-0.1)'
expect_error_has "--optimizer 'sgd(momentum=-0.9)': momentum must be >= 0 at column 14" train "$M" --data spiral --optimizer 'sgd(momentum=-0.9)'
expect_error_has "--optimizer 'sgd(nesterov=true)': nesterov = true requires a momentum > 0 and zero dampening" train "$M" --data spiral --optimizer 'sgd(nesterov=true)'
expect_error_has "--schedule 'cosine(T_max=1e16)': T_max 1e+16 is out of range (at most 1e15) at column 14" train "$M" --data spiral --schedule 'cosine(T_max=1e16)'
expect_error_has "spiral: n=0 is not an integer in 1..100000000" train "$M" --data spiral:n=0
expect_error_has "xor: n=99999999999999999999 is not an integer in 1..100000000" train "$M" --data xor:n=99999999999999999999

t_done driver_limits
