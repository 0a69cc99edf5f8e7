#!/bin/sh
# tests/driver/plot.sh BPCC SOURCE_DIR — `bpcc plot LOG.csv -o curves.svg`: the SVG is
# XML that xmllint accepts, self-contained, with exactly one <polyline> per series the
# log has (training and validation loss and accuracy), against the epoch or the step;
# each bad input an error with exit status 1 and no file left behind.
set -u
BPCC=$1
SRC=$2
. "$SRC/tests/lib.sh"
t_setup plot
t_timeout=20
SPIRAL=$SRC/examples/spiral.bp
command -v xmllint > /dev/null 2>&1 || die "xmllint not found: it is in Debian's libxml2-utils (make deps installs it)"

# check SVG "id id ..." : xmllint accepts it, nothing outside it is referenced, and the
# polylines are exactly the ids given, in that order
check() {
  svg=$1; want=$2
  xmllint --noout "$svg" || fail "$svg: xmllint rejects it"
  grep -Eiq '<script|<style|<image|<foreignObject|href|url\(' "$svg" && fail "$svg: not self-contained"
  got=$(grep -o '<polyline id="[a-z_]*"' "$svg" | sed 's/.*id="\(.*\)"/\1/' | tr '\n' ' ' | sed 's/ $//')
  [ "$got" = "$want" ] || fail "$svg: polylines '$got', expected '$want'"
  [ "$(grep -c '<polyline' "$svg")" -eq "$(echo "$want" | wc -w)" ] || fail "$svg: a polyline without an id"
}
# points ID SVG: the number of points of polyline ID
points() { grep "<polyline id=\"$1\"" "$2" | sed 's/.*points="\([^"]*\)".*/\1/' | wc -w; }

# 1. a real log, per epoch, with validation: four series of 4 points
"$BPCC" train "$SPIRAL" --data spiral:n=300 --epochs 4 --val-split 0.2 --log "$T/val.csv" --quiet > /dev/null || fail "train --log"
"$BPCC" plot "$T/val.csv" -o "$T/val.svg" > "$T/out" 2>&1 || { fail "plot val.csv"; cat "$T/out"; }
[ -s "$T/out" ] && fail "plot printed something: $(cat "$T/out")"
check "$T/val.svg" "loss val_loss accuracy val_accuracy"
for s in loss val_loss accuracy val_accuracy; do
  [ "$(points $s "$T/val.svg")" -eq 4 ] || fail "val.svg: $s has $(points $s "$T/val.svg") points, expected 4"
done
grep -q '>epoch</text>' "$T/val.svg" || fail "val.svg: the x axis is not the epoch"
grep -q '<title>.*val.csv: loss and accuracy per epoch (bpcc plot)</title>' "$T/val.svg" || fail "val.svg: title"

# 2. without validation: two series
"$BPCC" train "$SPIRAL" --data spiral:n=90 --epochs 3 --log "$T/noval.csv" --quiet > /dev/null || fail "train --log (no val)"
"$BPCC" plot "$T/noval.csv" -o "$T/noval.svg" || fail "plot noval.csv"
check "$T/noval.svg" "loss accuracy"

# 3. --log-steps: x is the step; training from the 16 step rows, validation from the 2
# epoch rows (240 training rows in batches of 30: 8 steps an epoch)
"$BPCC" train "$SPIRAL" --data spiral:n=300 --epochs 2 --batch 30 --val-split 0.2 --log "$T/steps.csv" --log-steps --quiet \
  > /dev/null || fail "train --log-steps"
"$BPCC" plot "$T/steps.csv" -o "$T/steps.svg" || fail "plot steps.csv"
check "$T/steps.svg" "loss val_loss accuracy val_accuracy"
[ "$(points loss "$T/steps.svg")" -eq 16 ] || fail "steps.svg: loss has $(points loss "$T/steps.svg") points, expected 16"
[ "$(points val_accuracy "$T/steps.svg")" -eq 2 ] || fail "steps.svg: val_accuracy points"
grep -q '>step</text>' "$T/steps.svg" || fail "steps.svg: the x axis is not the step"

# 4. written logs: no accuracy (a regression model), extra columns, other kinds of row,
# blank lines and CRLF; a resumed run that appended epochs 2 and 3 again replaces them
H=kind,epoch,step,lr,loss,accuracy,val_loss,val_accuracy,seconds
printf '%s\nepoch,1,4,0.1,2.5,,,,0.1\nepoch,2,8,0.1,1.5,,,,0.2\n' "$H" > "$T/reg.csv"
"$BPCC" plot "$T/reg.csv" -o "$T/reg.svg" || fail "plot reg.csv"
check "$T/reg.svg" "loss"
grep -q '>no accuracy in this log</text>' "$T/reg.svg" || fail "reg.svg: the empty panel says nothing"
printf 'kind,epoch,step,lr,loss,accuracy,val_loss,val_accuracy,seconds,extra\r\n\r\nwatch,1,4,h1,0.5,0.2\r\nepoch,1,4,0.1,2,0.5,,,0.1,x\r\nepoch,2,8,0.1,1,0.6,,,0.2,y\r\nepoch,3,12,0.1,0.9,0.7,,,0.3,z\r\nepoch,2,8,0.1,1.1,0.62,,,0.2,y\r\nepoch,3,12,0.1,0.8,0.8,,,0.3,z\r\n' > "$T/mixed.csv"
"$BPCC" plot "$T/mixed.csv" -o "$T/mixed.svg" || fail "plot mixed.csv"
check "$T/mixed.svg" "loss accuracy"
[ "$(points loss "$T/mixed.svg")" -eq 3 ] || fail "mixed.svg: a resumed log gives $(points loss "$T/mixed.svg") points, expected 3"

# 5. -o - : the same SVG on standard output
"$BPCC" plot "$T/val.csv" -o - > "$T/stdout.svg" || fail "plot -o -"
cmp -s "$T/val.svg" "$T/stdout.svg" || fail "-o - differs from -o val.svg"

# 6. errors, located; no output file or temporary file left; an old file unchanged
expect_error_first "bpcc: error: no output: give -o FILE.svg (or -o - for standard output)" plot "$T/val.csv"
expect_error_first "bpcc: error: -o '$T/c.png': bpcc plot writes SVG: name the file FILE.svg (or - for standard output)" \
  plot "$T/val.csv" -o "$T/c.png"
expect_error_first "bpcc: error: no log: give the CSV that bpcc train --log wrote" plot -o "$T/e.svg"
expect_error_first "bpcc: error: cannot open $T/none.csv: No such file or directory" plot "$T/none.csv" -o "$T/e.svg"
: > "$T/empty.csv"
expect_error_first "bpcc: error: $T/empty.csv: empty: no header row (a log of bpcc train --log starts with $H)" \
  plot "$T/empty.csv" -o "$T/e.svg"
echo "$H" > "$T/header.csv"
expect_error_first "bpcc: error: $T/header.csv: no epoch or step rows to plot (the header alone, at line 1)" \
  plot "$T/header.csv" -o "$T/e.svg"
printf 'epoch,loss\n1,2\n' > "$T/bad.csv"
expect_error_first "bpcc: error: $T/bad.csv:1: not the log of bpcc train --log: the header has no column 'kind' (expected $H)" \
  plot "$T/bad.csv" -o "$T/e.svg"
printf '%s\nepoch,1,4,0.1,2,0.5,,,0.1\nepoch,2,8,0.1,abc,0.5,,,0.1\n' "$H" > "$T/bad.csv"
expect_error_first "bpcc: error: $T/bad.csv:3: column 'loss': 'abc' is not a number" plot "$T/bad.csv" -o "$T/e.svg"
printf '%s\n\nepoch,1,4,0.1,2,0.5,,\n' "$H" > "$T/bad.csv"
expect_error_first "bpcc: error: $T/bad.csv:3: 8 fields, but the header has 9" plot "$T/bad.csv" -o "$T/e.svg"
printf '%s\nstep,,4,0.1,2,0.5,,,0.1\n' "$H" > "$T/bad.csv"
expect_error_first "bpcc: error: $T/bad.csv:2: column 'epoch' is empty" plot "$T/bad.csv" -o "$T/e.svg"
printf '%s\nepoch,-1,4,0.1,2,0.5,,,0.1\n' "$H" > "$T/bad.csv"
expect_error_first "bpcc: error: $T/bad.csv:2: column 'epoch': '-1' is not an epoch or step count" plot "$T/bad.csv" -o "$T/e.svg"
expect_error_first "bpcc: error: /dev/zero: not a regular file (a CSV log of bpcc train --log)" plot /dev/zero -o "$T/e.svg"
mkfifo "$T/fifo.csv"
expect_error_first "bpcc: error: $T/fifo.csv: not a regular file (a CSV log of bpcc train --log)" plot "$T/fifo.csv" -o "$T/e.svg"
expect_error_first "bpcc: error: $T: not a regular file (a CSV log of bpcc train --log)" plot "$T" -o "$T/e.svg"
expect_error_first "bpcc: error: $T/nodir/c.svg: cannot create a file beside it to write to: No such file or directory" \
  plot "$T/val.csv" -o "$T/nodir/c.svg"
expect_error_first "bpcc: error: unknown option '--bogus'" plot "$T/val.csv" -o "$T/e.svg" --bogus
[ -e "$T/e.svg" ] && fail "a failed run left e.svg"
ls -a "$T" | grep -q 'tmp-' && fail "a temporary file was left: $(ls -a "$T" | grep tmp-)"
cp "$T/val.svg" "$T/keep.svg"
expect_error_first "bpcc: error: $T/bad.csv:2: column 'epoch': '-1' is not an epoch or step count" plot "$T/bad.csv" -o "$T/val.svg"
cmp -s "$T/val.svg" "$T/keep.svg" || fail "a failed run changed the existing val.svg"
"$BPCC" plot --help | grep -q '^usage: bpcc plot LOG.csv -o CURVES.svg$' || fail "plot --help"
"$BPCC" --help | grep -q '^  plot LOG.csv -o CURVES.svg' || fail "plot in bpcc --help"

t_done driver_plot
