#!/bin/sh
# tests/train/nothing_lost.sh BPCC SOURCE_DIR — issue 12, section 1 through the binary:
#   1. SIGINT mid-epoch: exit 130, a checkpoint at --save, the exact command that
#      resumes; that command ends with the bytes (and the CSV) of a run never stopped
#   2. SIGTERM without --save: NAME.interrupted.safetensors in the current directory
#   3. a second SIGINT exits at once: 130, no checkpoint, the old file left as it was
#   4. --save to a path that cannot be written: an error before anything is compiled
#   5. a killed save's temporary file is removed by the next save to the path
#   6. --init: the parameters of a checkpoint, optimizer state and step fresh
#   7. a model larger than the memory available: an error with the numbers, before
#      any allocation (train, eval, bench), also under ulimit -v
set -u
BPCC=$1
SRC=$2
. "$SRC/tests/lib.sh"
t_setup lost
PIDS=""   # the trainers started in the background, killed at exit if still there
t_at_exit 'for p in $PIDS; do kill -KILL "$p" 2> /dev/null; done'
SPIRAL=$SRC/examples/spiral.bp

# wait_for_rows FILE N PID: until FILE has more than N lines (the --log-steps rows of
# steps done, written in stdio's blocks; N = -1: until it exists, which the loop opens
# before its first step), at most 60 s; false if PID ended first
wait_for_rows() {
  i=0
  while [ $i -lt 1200 ]; do
    [ -f "$1" ] && [ "$(wc -l < "$1")" -gt "$2" ] && return 0
    kill -0 "$3" 2> /dev/null || return 1
    sleep 0.05
    i=$((i + 1))
  done
  return 1
}

# the CSV without its seconds column
no_seconds() { sed 's/,[^,]*$//' "$1"; }

# A shell without job control starts background jobs with SIGINT ignored, which bpcc
# keeps ignoring as programs should: env puts the default back for the test.
# 25,000 steps an epoch (about 0.5 s on the development machine), so that the signal,
# sent once 20 steps are logged, lands inside epoch 1.
ARGS="--data spiral:n=100000 --batch 4 --epochs 2 --threads 1 --seed 3"

# 1. SIGINT mid-epoch, with --save
cd "$T" || die "cd $T"
env --default-signal=INT "$BPCC" train "$SPIRAL" $ARGS --save "$T/ck.st" --log "$T/i.csv" --log-steps > "$T/out" 2> "$T/err" &
P=$!
PIDS="$PIDS $P"
wait_for_rows "$T/i.csv" 20 $P || fail "SIGINT: no steps logged"
kill -INT $P
wait $P
rc=$?
[ $rc -eq 130 ] || { fail "SIGINT: exit $rc, expected 130"; cat "$T/err"; }
grep -Eq "^bpcc: interrupted at step [0-9]+ \(epoch 1 of 2, batch [0-9]+ of 25000\); checkpoint written to $T/ck.st$" "$T/err" ||
  { fail "SIGINT: the interruption line"; cat "$T/err"; }
want="bpcc: resume with: $BPCC train $SPIRAL $ARGS --save $T/ck.st --log $T/i.csv --log-steps --resume $T/ck.st"
[ "$(grep '^bpcc: resume with: ' "$T/err")" = "$want" ] || { fail "SIGINT: the resume command"; cat "$T/err"; }
grep -aq '"bpcc.epoch":"0"' "$T/ck.st" || fail "SIGINT: the checkpoint is not inside epoch 1"
grep -aq '"bpcc.epoch_rows":"0"' "$T/ck.st" && fail "SIGINT: the checkpoint is at an epoch's start, not mid-epoch"
# a temporary file of a save killed long ago (its PID is dead) beside the checkpoint:
# the next save to the path removes it (5.)
sh -c 'exit 0' &
dead=$!
wait $dead
touch -d '1 hour ago' "$T/ck.st.tmp-$dead-0" "$T/other.st.tmp-$dead-0"
# the printed command, as printed
sh -c "${want#bpcc: resume with: }" > "$T/rout" 2> "$T/rerr" || { fail "the resume command failed"; cat "$T/rerr"; }
grep -q "^epoch 1/2  loss " "$T/rout" || { fail "resume: no line for epoch 1, which it finished"; cat "$T/rout"; }
grep -q "^trained 2 epochs (50,000 steps) in " "$T/rout" || { fail "resume: steps"; cat "$T/rout"; }
"$BPCC" train "$SPIRAL" $ARGS --save "$T/u.st" --log "$T/u.csv" --log-steps > /dev/null 2>&1 || fail "the run never stopped"
cmp -s "$T/ck.st" "$T/u.st" || fail "interrupted + resumed and uninterrupted checkpoints differ"
[ "$(no_seconds "$T/i.csv")" = "$(no_seconds "$T/u.csv")" ] || fail "interrupted + resumed and uninterrupted CSV logs differ"
[ -e "$T/ck.st.tmp-$dead-0" ] && fail "a killed save's temporary file was left"
[ -e "$T/other.st.tmp-$dead-0" ] || fail "another path's temporary file was removed"
rm -f "$T/other.st.tmp-$dead-0"

# 2. SIGTERM without --save: spiral.interrupted.safetensors here, and it resumes
env --default-signal=INT "$BPCC" train "$SPIRAL" $ARGS --log "$T/t.csv" --log-steps > "$T/out" 2> "$T/err" &
P=$!
PIDS="$PIDS $P"
wait_for_rows "$T/t.csv" 20 $P || fail "SIGTERM: no steps logged"
kill -TERM $P
wait $P
rc=$?
[ $rc -eq 130 ] || { fail "SIGTERM: exit $rc, expected 130"; cat "$T/err"; }
grep -Eq "^bpcc: terminated at step [0-9]+ \(epoch 1 of 2, batch [0-9]+ of 25000\); checkpoint written to spiral.interrupted.safetensors$" "$T/err" ||
  { fail "SIGTERM: the interruption line"; cat "$T/err"; }
want="bpcc: resume with: $BPCC train $SPIRAL $ARGS --log $T/t.csv --log-steps --resume spiral.interrupted.safetensors"
[ "$(grep '^bpcc: resume with: ' "$T/err")" = "$want" ] || { fail "SIGTERM: the resume command"; cat "$T/err"; }
[ -f "$T/spiral.interrupted.safetensors" ] || fail "SIGTERM: no spiral.interrupted.safetensors"
sh -c "${want#bpcc: resume with: } --save $T/t.st" > /dev/null 2>&1 || fail "SIGTERM: the resume command failed"
cmp -s "$T/t.st" "$T/u.st" || fail "SIGTERM: interrupted + resumed and uninterrupted checkpoints differ"

# 3. a second SIGINT quits at once, during a step of seconds (three 4096^3 products on
# one thread): no checkpoint, the file already at --save untouched. The signals are
# 0.3 s apart: two of the same kind pending at once would be delivered as one.
cat > "$T/wide.bp" <<'EOF'
model wide(x: f32[B, 2], y: label[B, 3]) {
    h = tanh(dense(tanh(dense(x, 4096)), 4096))
    loss softmax_cross_entropy(dense(h, 3), y)
}
EOF
printf 'the old checkpoint' > "$T/wide.st"
env --default-signal=INT "$BPCC" train "$T/wide.bp" --data spiral:n=8192 --batch 4096 --epochs 3 --threads 1 \
  --save "$T/wide.st" --log "$T/w.csv" > "$T/out" 2> "$T/err" &
P=$!
PIDS="$PIDS $P"
wait_for_rows "$T/w.csv" -1 $P || fail "second SIGINT: the loop did not start"   # the log is opened
sleep 0.2
kill -INT $P
sleep 0.3
kill -INT $P
wait $P
rc=$?
[ $rc -eq 130 ] || { fail "second SIGINT: exit $rc, expected 130"; cat "$T/err"; }
grep -q "^bpcc: interrupted: stopping after this step to write a checkpoint (interrupt again to quit at once, without one)$" "$T/err" ||
  { fail "second SIGINT: the first one's note"; cat "$T/err"; }
grep -q "resume with" "$T/err" && fail "second SIGINT: a checkpoint was claimed"
[ "$(cat "$T/wide.st")" = "the old checkpoint" ] || fail "second SIGINT: the file at --save changed"
[ "$(ls "$T" | grep -c '^wide.st')" = 1 ] || { fail "second SIGINT: files left beside --save"; ls "$T"; }

# 4. --save checked before anything is compiled or trained
expect_error_exact "bpcc: error: --save /nonexistent/x.safetensors: cannot create a file in '/nonexistent': No such file or directory" \
  train "$SPIRAL" --data spiral --save /nonexistent/x.safetensors
[ -s "$T/out" ] && { fail "--save /nonexistent: it printed"; cat "$T/out"; }
expect_error_exact "bpcc: error: --save $T: is a directory" train "$SPIRAL" --data spiral --save "$T"

# 6. --init: with lr 1e-30 Adam's steps are far below a float's resolution of the
# weights, so the parameters stay those of the file and eval gives its loss
"$BPCC" train "$SPIRAL" --data spiral:n=300 --epochs 2 --save "$T/a.st" --quiet > /dev/null || fail "train for --init"
"$BPCC" train "$SPIRAL" --data spiral:n=300 --epochs 1 --init "$T/a.st" --lr 1e-30 --save "$T/b.st" > "$T/out" 2>&1 ||
  { fail "--init"; cat "$T/out"; }
grep -q "^  parameters from $T/a.st (--init); optimizer state fresh$" "$T/out" || { fail "--init: header"; cat "$T/out"; }
grep -aq '"bpcc.step":"10"' "$T/b.st" || fail "--init: the step count did not start at 0"
"$BPCC" eval "$SPIRAL" --weights "$T/a.st" --data spiral:n=300 | tail -1 > "$T/ea" || fail "eval a"
"$BPCC" eval "$SPIRAL" --weights "$T/b.st" --data spiral:n=300 | tail -1 > "$T/eb" || fail "eval b"
cmp -s "$T/ea" "$T/eb" || { fail "--init did not start from the file's parameters"; cat "$T/ea" "$T/eb"; }
expect_error_exact "bpcc: error: --init and --resume exclude each other (--init starts a new run from weights only; --resume continues a run with its optimizer state)
Try 'bpcc train --help' for more information." train "$SPIRAL" --data spiral --init "$T/a.st" --resume "$T/a.st"
"$BPCC" train "$SRC/examples/mnist_mlp.bp" --data blobs:dim=784,classes=10 --init "$T/a.st" > /dev/null 2> "$T/err"
[ $? -eq 1 ] || fail "--init of another model's weights: exit status"
grep -q "^bpcc: error: mnist_mlp: load: $T/a.st: " "$T/err" || { fail "--init of another model's weights: message"; cat "$T/err"; }

# 7. memory: 2.5 TiB of parameters fit nowhere; the check comes before the allocation
cat > "$T/huge.bp" <<'EOF'
model huge(x: f32[B, 2], y: label[B, 3]) {
    h = tanh(dense(tanh(dense(x, 400000)), 400000))
    loss softmax_cross_entropy(dense(h, 3), y)
}
EOF
for cmd in train eval bench; do
  case $cmd in
    train) extra="--data spiral:n=90" ;;
    eval) extra="--data spiral:n=90 --weights $T/a.st" ;;
    bench) extra="--steps 1" ;;
  esac
  timeout 60 "$BPCC" $cmd "$T/huge.bp" $extra > "$T/out" 2> "$T/err"
  rc=$?
  [ $rc -eq 1 ] || fail "$cmd of a 2.5 TiB model: exit $rc, expected 1"
  grep -Eq "^bpcc: error: $cmd: the model needs [0-9.]+ TiB at batch 32 \(parameters 596.0[0-9] GiB, gradients 596.0[0-9] GiB, optimizer state [0-9.]+ [A-Za-z]+, workspace [0-9.]+ [A-Za-z]+\); [0-9.]+ [KMGT]?i?B is available \([^)]*\): the parameters alone do not fit: a smaller model, or a machine with more memory$" "$T/err" ||
    { fail "$cmd of a 2.5 TiB model: message"; cat "$T/err"; }
done
# 4 GiB of parameters, gradients and Adam state under ulimit -v 3 GB: the limit is
# named (where MemAvailable is the smaller, it is; either way nothing is allocated)
cat > "$T/four.bp" <<'EOF'
model four(x: f32[B, 2], y: label[B, 3]) {
    h = tanh(dense(tanh(dense(x, 16384)), 16384))
    loss softmax_cross_entropy(dense(h, 3), y)
}
EOF
avail_kb=$(sed -n 's/^MemAvailable: *\([0-9]*\) kB$/\1/p' /proc/meminfo)
(ulimit -v 3000000 && exec timeout 60 "$BPCC" train "$T/four.bp" --data spiral:n=90 --batch 8) > "$T/out" 2> "$T/err"
rc=$?
[ $rc -eq 1 ] || { fail "ulimit -v: exit $rc, expected 1"; cat "$T/err"; }
if [ "${avail_kb:-0}" -gt 6000000 ]; then src="the address-space limit, ulimit -v"; else src="MemAvailable in /proc/meminfo"; fi
grep -Eq "^bpcc: error: train: the model needs 4.0[0-9] GiB at batch 8 \(parameters 1.00 GiB, gradients 1.00 GiB, optimizer state 2.00 GiB, workspace [0-9.]+ MiB\); [0-9.]+ [MG]iB is available \($src\): the parameters alone do not fit: a smaller model, or a machine with more memory$" "$T/err" ||
  { fail "ulimit -v: message"; cat "$T/err"; }
# and a model that fits trains under the same limit
(ulimit -v 3000000 && exec timeout 60 "$BPCC" train "$SPIRAL" --data spiral:n=90 --epochs 1 --quiet) > "$T/out" 2> "$T/err" ||
  { fail "ulimit -v: a small model did not train"; cat "$T/err"; }

t_done train_nothing_lost
