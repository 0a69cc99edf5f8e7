#!/bin/sh
# tests/train/steps.sh BPCC SOURCE_DIR — training by steps (issue 14) on row data:
#   1. --steps N with --eval-every: a line and a CSV row per evaluation and at the end;
#      steps that make whole epochs give the epoch run's numbers exactly
#   2. --resume: 25 steps + 25 resumed = 50 steps, byte for byte
#   3. SIGINT mid-run: exit 130, the step, a checkpoint and the command that resumes,
#      which ends with the bytes and the CSV of a run never stopped
#   4. `steps N` in the train block; --epochs overrides it, --steps the block's epochs
#   5. errors: --epochs with --steps, --eval-every without steps, both in a block,
#      --steps 0, fewer steps than the checkpoint has, a checkpoint of another batch
set -u
BPCC=$1
SRC=$2
. "$SRC/tests/lib.sh"
t_setup steps
PIDS=""
t_at_exit 'for p in $PIDS; do kill -KILL "$p" 2> /dev/null; done'
SPIRAL=$SRC/examples/spiral.bp
cd "$T" || die "cd $T"
no_seconds() { sed 's/,[^,]*$//' "$1"; }

# 1. 1000 rows less 200 for validation = 800 rows, 25 batches of 32 an epoch: 50 steps
#    are 2 epochs, and evaluations every 25 steps fall where the epochs end
ARGS="--data spiral --val-split 0.2 --seed 1 --threads 1"
"$BPCC" train "$SPIRAL" $ARGS --steps 50 --eval-every 25 --log s.csv > s.out 2> s.err || { fail "steps run"; cat s.err; }
grep -q "^  adam(lr=0.01), schedule constant, batch 32, steps 50 (validation every 25), seed 1, 1 threads$" s.out ||
  { fail "the settings line"; cat s.out; }
[ "$(grep -c '^step ' s.out)" -eq 2 ] || { fail "two evaluation lines"; cat s.out; }
grep -Eq '^step 25/50  loss [0-9.]+  acc [0-9.]+%  val_loss [0-9.]+  val_acc [0-9.]+%  lr 0.01  ' s.out ||
  { fail "the evaluation line"; cat s.out; }
[ "$(cut -d, -f1-3 s.csv | tr '\n' ' ')" = "kind,epoch,step eval,1,25 eval,2,50 " ] || { fail "the CSV rows"; cat s.csv; }
"$BPCC" train "$SPIRAL" $ARGS --epochs 2 > e.out 2> e.err || fail "epochs run"
[ "$(sed -n 's/^trained 2 epochs (50 steps) in [^:]*: //p' e.out)" = "$(sed -n 's/^trained 50 steps in [^:]*: //p' s.out)" ] ||
  { fail "50 steps and 2 epochs differ"; cat e.out s.out; }
[ "$(sed -n 's/^epoch 1\/2  \(.*\)  lr .*/\1/p' e.out)" = "$(sed -n 's/^step 25\/50  \(.*\)  lr .*/\1/p' s.out)" ] ||
  { fail "epoch 1 and the evaluation at step 25 differ"; cat e.out s.out; }
# without --eval-every: one evaluation, at the end; steps past an epoch's end go on
"$BPCC" train "$SPIRAL" $ARGS --steps 30 > s30.out 2>&1 || fail "steps 30"
[ "$(grep -c '^step ' s30.out)" -eq 1 ] && grep -q '^step 30/30  ' s30.out || { fail "one evaluation at the end"; cat s30.out; }

# --watch: its tables at each evaluation, its CSV rows at the evaluations' steps
"$BPCC" train "$SPIRAL" $ARGS --steps 30 --eval-every 15 --watch --log w.csv > w.out 2>&1 || { fail "--watch"; cat w.out; }
[ "$(grep -c '^watch, step [13][50] (the last before this evaluation):$' w.out)" -eq 2 ] || { fail "--watch tables"; cat w.out; }
[ "$(cut -d, -f1,2 w.watch.csv | sort -u | tr '\n' ' ')" = "1,15 2,30 epoch,step " ] || { fail "--watch CSV"; cat w.watch.csv; }

# 2. resume: 25 then 50 = 50, the checkpoint's bytes and the CSV
"$BPCC" train "$SPIRAL" $ARGS --steps 50 --eval-every 10 --save u.st --log u.csv --quiet > /dev/null 2>&1 || fail "u"
"$BPCC" train "$SPIRAL" $ARGS --steps 25 --eval-every 10 --save r.st --log r.csv --quiet > /dev/null 2>&1 || fail "r 25"
"$BPCC" train "$SPIRAL" $ARGS --steps 50 --eval-every 10 --save r.st --log r.csv --resume r.st > r.out 2>&1 ||
  { fail "resume"; cat r.out; }
cmp -s u.st r.st || fail "25 + 25 resumed steps and 50 steps: the checkpoints differ"
grep -aq '"bpcc.rng":"philox4x32-10 seed=1 shuffle_epoch=2 shuffle_row=0 dropout_step=50"' u.st ||
  fail "the checkpoint's position"
grep -q "^step 30/50  " r.out && ! grep -q "^step 20/50" r.out || { fail "the resumed run's evaluations"; cat r.out; }
"$BPCC" train "$SPIRAL" $ARGS --steps 50 --resume r.st > n.out 2>&1 || fail "nothing to train"
grep -q "^nothing to train: r.st has 50 steps done, --steps is 50$" n.out || { fail "nothing to train"; cat n.out; }

# 3. SIGINT mid-run (25,000 steps an epoch; the signal once 20 steps are logged)
ARGS3="--data spiral:n=100000 --batch 4 --steps 40000 --eval-every 30000 --threads 1 --seed 3"
env --default-signal=INT "$BPCC" train "$SPIRAL" $ARGS3 --save ck.st --log i.csv --log-steps > out 2> err &
P=$!
PIDS="$PIDS $P"
i=0
while [ $i -lt 1200 ] && ! { [ -f i.csv ] && [ "$(wc -l < i.csv)" -gt 20 ]; }; do
  kill -0 $P 2> /dev/null || break
  sleep 0.05
  i=$((i + 1))
done
kill -INT $P
wait $P
rc=$?
[ $rc -eq 130 ] || { fail "SIGINT: exit $rc, expected 130"; cat err; }
grep -Eq "^bpcc: interrupted at step [0-9]+ of 40000; checkpoint written to ck.st$" err || { fail "SIGINT: the line"; cat err; }
want="bpcc: resume with: $BPCC train $SPIRAL $ARGS3 --save ck.st --log i.csv --log-steps --resume ck.st"
[ "$(grep '^bpcc: resume with: ' err)" = "$want" ] || { fail "SIGINT: the resume command"; cat err; }
grep -aq '"bpcc.period":"rows=0 ' ck.st && fail "SIGINT: the running sums of the period are not kept"
sh -c "${want#bpcc: resume with: }" > rout 2> rerr || { fail "the resume command failed"; cat rerr; }
grep -q "^step 30000/40000  loss " rout && grep -q "^trained 40,000 steps in " rout || { fail "resume: lines"; cat rout; }
"$BPCC" train "$SPIRAL" $ARGS3 --save w.st --log w.csv --log-steps > wout 2>&1 || fail "the run never stopped"
cmp -s ck.st w.st || fail "SIGINT: interrupted + resumed and uninterrupted checkpoints differ"
[ "$(no_seconds i.csv)" = "$(no_seconds w.csv)" ] || fail "SIGINT: interrupted + resumed and uninterrupted CSV logs differ"
# the evaluation lines without their times
evals() { grep '^step ' "$1" | sed 's/  [^ ]* [mµ]*s$//'; }
[ "$(evals rout)" = "$(evals wout)" ] ||
  { fail "SIGINT: the evaluation at 30000 (the running loss over the stop) differs"; grep '^step' rout wout; }

# 4. the train block
sed 's/    epochs 30/    steps 40/' "$SPIRAL" > blk.bp
"$BPCC" train blk.bp --data spiral > b.out 2>&1 || fail "block steps"
grep -q "batch 32, steps 40, seed 1" b.out && grep -q "^trained 40 steps in " b.out || { fail "block steps"; cat b.out; }
"$BPCC" train blk.bp --data spiral --epochs 1 > b.out 2>&1 || fail "--epochs over the block's steps"
grep -q "^trained 1 epoch (32 steps) in " b.out || { fail "--epochs over the block's steps"; cat b.out; }
"$BPCC" train "$SPIRAL" --data spiral --steps 3 > b.out 2>&1 || fail "--steps over the block's epochs"
grep -q "^trained 3 steps in " b.out || { fail "--steps over the block's epochs"; cat b.out; }

# 5. errors
t_timeout=60
expect_error_exact "bpcc: error: --epochs and --steps exclude each other (a run is counted in epochs or in steps)
Try 'bpcc train --help' for more information." train "$SPIRAL" --data spiral --epochs 2 --steps 3
expect_error_exact "bpcc: error: --eval-every needs a run by steps (--steps N or \`steps N\` in the train block); a run by epochs validates after each epoch" \
  train "$SPIRAL" --data spiral --eval-every 3
expect_error_first "bpcc: error: --steps '0': expected an integer from 1 to 1099511627775" train "$SPIRAL" --data spiral --steps 0
sed 's/    epochs 30/    epochs 30\n    steps 40/' "$SPIRAL" > both.bp
expect_error_first "both.bp:15:5: error: 'steps' and 'epochs' exclude each other (a run is counted in epochs or in steps)" \
  train both.bp --data spiral
expect_error_exact "bpcc: error: u.st: the checkpoint has 50 steps done; --steps 40 asks for fewer" \
  train "$SPIRAL" $ARGS --steps 40 --resume u.st
expect_error_exact "bpcc: error: r.st: the checkpoint has 2 epochs and 0 rows of the next done, which is not step 50 in batches of 16 of 800 rows (resume with the same --batch and --accumulate, and data)" \
  train "$SPIRAL" $ARGS --steps 60 --batch 16 --resume r.st

t_done train_steps
