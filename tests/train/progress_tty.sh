#!/bin/sh
# tests/train/progress_tty.sh BPCC SOURCE_DIR — the progress bar on a real terminal, 80
# columns wide: one MNIST epoch,
#   bpcc train examples/mnist_mlp.bp --data mnist:../shared/data/mnist --epochs 1
# in a detached tmux session of 80 x 50 (tmux keeps the screen as a terminal shows it),
# waited for (at most WAIT seconds), then the screen captured (tmux capture-pane -p:
# one line per screen row, so a wrapped line shows as two rows).
#
# A progress line is a screen row that matches
#     ^epoch [0-9]+/[0-9]+ +[0-9]+%\[
# (the bar's start: "epoch 1/1 100%[") or that holds "steps/s" (the bar's speed, so the
# tail of a wrapped bar counts too). A bar that ever reached the last column would leave
# one such row behind at every redraw (\r returns to the start of the last row only),
# so at the end the screen must hold exactly one: the finished bar at 100%, 469/469, at
# most 79 columns, followed by the epoch's line. The status lines ("loading ...",
# "compiling ...") must be gone. COLUMNS=200 is set inside, so the width must come from
# the terminal itself, as it does in a resized window.
#
# Skipped (exit 77) where ../shared/data/mnist is absent. tmux is one of the Makefile's
# DEBS; without it the test fails, saying so.
set -u
BPCC=$1
SRC=$2
WAIT=${BPCC_TTY_WAIT:-400}
. "$SRC/tests/lib.sh"
cd "$SRC" || die "cd $SRC"
[ -d ../shared/data/mnist ] || t_skip "../shared/data/mnist is absent (from $SRC)"
command -v tmux > /dev/null || die "tmux is not installed (make deps installs it)"
t_setup tty
SOCK=$T/tmux.sock   # a server of our own: the user's tmux is never touched
tm() { tmux -S "$SOCK" -f /dev/null "$@"; }
t_at_exit 'tm kill-server 2> /dev/null'

cat > "$T/run.sh" <<EOF
cd "$SRC"
COLUMNS=200 "$BPCC" train examples/mnist_mlp.bp --data mnist:../shared/data/mnist --epochs 1
echo "bpcc exit status \$?"
exec sleep $WAIT
EOF
tm new-session -d -s bpcc -x 80 -y 50 "sh $T/run.sh" || die "tmux new-session"
[ "$(tm display-message -p -t bpcc '#{window_width}')" = 80 ] || fail "the window is not 80 columns wide"

i=0
while :; do
  tm capture-pane -p -t bpcc > "$T/screen" 2> /dev/null || { fail "tmux capture-pane"; break; }
  grep -q '^bpcc exit status' "$T/screen" && break
  i=$((i + 1))
  [ $i -ge "$WAIT" ] && { fail "bpcc train did not finish in $WAIT s"; break; }
  sleep 1
done
tm kill-session -t bpcc

grep -q '^bpcc exit status 0$' "$T/screen" || fail "bpcc train failed"
n=$(grep -Ec '^epoch [0-9]+/[0-9]+ +[0-9]+%\[|steps/s' "$T/screen")
[ "$n" -eq 1 ] || fail "$n progress lines on the screen, expected exactly 1"
bar=$(grep -E '^epoch [0-9]+/[0-9]+ +[0-9]+%\[' "$T/screen" | head -1)
echo "$bar" | grep -Eq '^epoch 1/1 100%\[#+\] 469/469  loss [0-9.e+-]+  [0-9.,]+ (steps/s|s/step)  [0-9:]+<00:00$' ||
  fail "the progress line is not the finished bar: '$bar'"
[ ${#bar} -le 79 ] || fail "the progress line is ${#bar} columns wide"
# the epoch's line follows the bar, fitted to the 80 columns (single spaces between its
# fields, a break at a field's end if it still does not fit: bprt_put_line)
grep -A1 -E '^epoch 1/1 100%\[' "$T/screen" | tail -1 | grep -q '^epoch 1/1 loss [0-9.e+-]* acc ' ||
  fail "the epoch's line does not follow the bar"
long=$(awk 'length($0) > 79' "$T/screen")
[ -z "$long" ] || fail "lines wider than the screen: $long"
grep -Eq '^(loading|compiling) ' "$T/screen" && fail "a status line was left on the screen"
grep -q '^trained 1 epoch (469 steps) in ' "$T/screen" || fail "no final line"
if [ $t_fails -ne 0 ]; then
  echo "--- the screen:"
  cat "$T/screen"
else
  echo "one progress line on an 80-column screen: $bar"
fi
t_done train_progress_tty
