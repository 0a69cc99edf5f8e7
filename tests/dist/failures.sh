#!/bin/sh
# tests/dist/failures.sh BPCC SOURCE_DIR CKDIFF WHAT — issue 16: a data-parallel run fails, never
# hangs, and says who. WHAT:
#   kill      rank 1 killed (SIGKILL) mid-epoch: the job ends non-zero within 30 s and
#             the output names rank 1 (Open MPI's mpirun ends every rank when one dies,
#             and says which: "process rank 1 ... exited on signal 9")
#   stall     rank 1 stopped (SIGSTOP) mid-epoch, --timeout 5: rank 0 exits non-zero
#             within 30 s with "rank 1 did not join the gradient reduction of step N
#             within 5 s; stopping", then MPI_Abort ends the job, the stopped rank too
#   signal    SIGTERM to rank 1 alone mid-epoch: every rank stops after the same step
#             (the ranks agree in the step's statistics), rank 0 writes the checkpoint of
#             the position and prints the command that resumes it, mpirun -np 2 first,
#             exit status 130; one process resumes it (--accumulate 2) and ends the epoch
#             where one process that ran it whole ends, bit for bit (both with
#             --deterministic-reduce: 1,250 steps of float sums in another order drift
#             1.4e-6 apart, measured)
#   mismatch  two models on the two ranks (mpirun's MPMD form A : B): the start-up check
#             fails at once, naming ranks 0 and 1 and the compiled step; then two runs
#             of one model with another --seed: the training settings
set -u
BPCC=$1
SRC=$2
CKDIFF=$3
WHAT=$4
. "$SRC/tests/lib.sh"
. "$SRC/tests/dist/lib_mpi.sh"
t_setup "dist-$WHAT"
mpi_setup "dist_$WHAT"

# The pid of rank R of the job under mpirun pid P: the bpcc child whose environment says
# OMPI_COMM_WORLD_RANK=R.
rank_pid() {
  for p in $(pgrep -P "$1" 2> /dev/null); do
    tr '\0' '\n' < "/proc/$p/environ" 2> /dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$2" && { echo "$p"; return 0; }
  done
  return 1
}

case $WHAT in
signal)
  OPT="--deterministic-reduce --threads 1"
  $MPIRUN -np 2 "$BPCC" train "$SRC/examples/spiral.bp" --data spiral:n=20000 --epochs 1 --batch 8 $OPT \
    --print-every 10 --save "$T/stop.st" < /dev/null > "$T/out" 2> "$T/err" &
  job=$!
  t_at_exit "kill -9 $job 2> /dev/null"
  i=0
  while [ "$(grep -c 'step' "$T/err")" -lt 3 ]; do
    i=$((i + 1))
    [ $i -lt 1200 ] || { cat "$T/out" "$T/err"; die "no step reported in 120 s"; }
    kill -0 $job 2> /dev/null || { cat "$T/out" "$T/err"; die "the job ended before its 30th step"; }
    sleep 0.1
  done
  r1=$(rank_pid $job 1) || die "no rank 1 under mpirun $job"
  kill -TERM "$r1"
  wait $job
  rc=$?
  [ $rc -eq 130 ] || { cat "$T/err"; fail "exit status $rc after SIGTERM to rank 1, not 130"; }
  grep -q "^bpcc: interrupted at step [0-9]* (epoch 1 of 1, batch [0-9]* of 1250); checkpoint written to $T/stop.st$" "$T/err" ||
    fail "no report of the stop: $(grep -v '^epoch' "$T/err")"
  grep -q "^bpcc: resume with: mpirun -np 2 $BPCC train .* --resume $T/stop.st$" "$T/err" ||
    fail "no resume command with mpirun: $(grep 'resume with' "$T/err")"
  timeout 120 "$BPCC" train "$SRC/examples/spiral.bp" --data spiral:n=20000 --epochs 1 --batch 8 --accumulate 2 $OPT \
    --quiet --resume "$T/stop.st" --save "$T/resumed.st" > "$T/out" 2> "$T/err" || { cat "$T/out" "$T/err"; die "resume"; }
  timeout 120 "$BPCC" train "$SRC/examples/spiral.bp" --data spiral:n=20000 --epochs 1 --batch 8 --accumulate 2 $OPT \
    --quiet --save "$T/whole.st" > "$T/out" 2> "$T/err" || { cat "$T/out" "$T/err"; die "one process"; }
  "$CKDIFF" "$T/whole.st" "$T/resumed.st" exact > "$T/diff" || { cat "$T/diff"; fail "resumed run: not the same bits"; }
  echo "SIGTERM to rank 1: both stopped, exit 130; $(tail -1 "$T/diff")"
  ;;
kill | stall)
  # a long epoch (spiral of 200,000 rows, batch 8 per rank): killed or stopped after
  # rank 0 has reported its 20th step
  extra=
  [ "$WHAT" = stall ] && extra="--timeout 5"
  $MPIRUN -np 2 "$BPCC" train "$SRC/examples/spiral.bp" --data spiral:n=200000 --epochs 1 --batch 8 --threads 1 \
    --print-every 10 $extra < /dev/null > "$T/out" 2> "$T/err" &
  job=$!
  t_at_exit "kill -9 $job 2> /dev/null"
  i=0
  while [ "$(grep -c 'step' "$T/err")" -lt 2 ]; do
    i=$((i + 1))
    [ $i -lt 1200 ] || { cat "$T/out" "$T/err"; die "no step reported in 120 s"; }
    kill -0 $job 2> /dev/null || { cat "$T/out" "$T/err"; die "the job ended before its 20th step"; }
    sleep 0.1
  done
  r1=$(rank_pid $job 1) || die "no rank 1 under mpirun $job"
  t_at_exit "kill -9 $r1 2> /dev/null"
  if [ "$WHAT" = kill ]; then kill -9 "$r1"; else kill -STOP "$r1"; fi
  t0=$(date +%s)
  while kill -0 $job 2> /dev/null; do
    [ $(($(date +%s) - t0)) -le 30 ] || { cat "$T/out" "$T/err"; die "the job did not end within 30 s of rank 1's $WHAT"; }
    sleep 0.2
  done
  wait $job
  rc=$?
  secs=$(($(date +%s) - t0))
  [ $rc -ne 0 ] || fail "the job exited 0 after rank 1's $WHAT"
  if [ "$WHAT" = kill ]; then
    grep -q "rank 1 .*exited on signal 9\|rank 1 did not join" "$T/out" "$T/err" || fail "no message names rank 1: $(cat "$T/err")"
  else
    grep -q "^bpcc: error: rank 1 did not join the gradient reduction of step [0-9]* within 5 s; stopping$" "$T/err" ||
      fail "no message of rank 0 naming rank 1: $(cat "$T/err")"
    sleep 2; kill -0 "$r1" 2> /dev/null && fail "the stopped rank 1 outlived the job: $(grep State /proc/$r1/status)"
  fi
  echo "rank 1 $WHAT: the job ended in $secs s with status $rc"
  ;;
mismatch)
  sed 's/dense_xavier(h1, 64)/dense_xavier(h1, 32)/' "$SRC/examples/spiral.bp" > "$T/other.bp"
  t0=$(date +%s)
  timeout 120 $MPIRUN -np 1 "$BPCC" train "$SRC/examples/spiral.bp" --data spiral --epochs 1 --threads 1 : \
    -np 1 "$BPCC" train "$T/other.bp" --data spiral --epochs 1 --threads 1 < /dev/null > "$T/out" 2> "$T/err" &&
    fail "two models trained together"
  grep -q "^bpcc: error: ranks 0 and 1 differ in the compiled step: rank 0 has 'bpcc [0-9.]*, model spiral of .*spiral.bp, " "$T/err" ||
    fail "no start-up error naming ranks 0 and 1: $(cat "$T/err")"
  grep -q "rank 1 has 'bpcc [0-9.]*, model spiral of .*other.bp" "$T/err" || fail "the error does not show rank 1's model"
  [ "$(grep -c "differ in the compiled step" "$T/err")" = 1 ] || fail "not exactly one rank reported it"
  grep -q "^epoch" "$T/out" && fail "an epoch ran"
  timeout 120 $MPIRUN -np 1 "$BPCC" train "$SRC/examples/spiral.bp" --data spiral --epochs 1 --threads 1 : \
    -np 1 "$BPCC" train "$SRC/examples/spiral.bp" --data spiral --epochs 1 --threads 1 --seed 7 < /dev/null \
    > "$T/out" 2> "$T/err" && fail "two seeds trained together"
  grep -q "^bpcc: error: ranks 0 and 1 differ in the training settings: rank 0 has 'data spiral.*seed 1, .*rank 1 has 'data spiral.*seed 7, " "$T/err" ||
    fail "no start-up error naming the settings: $(cat "$T/err")"
  echo "mismatch: both refused in $(($(date +%s) - t0)) s"
  ;;
*) die "unknown WHAT '$WHAT'" ;;
esac

t_done "dist_$WHAT"
