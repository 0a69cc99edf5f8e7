#!/bin/sh
# bench/run.sh BUILD [THREADS] — what `make bench` runs.
#
# 0. the CPU (bench/peak.c --cpu: vendor, family, model, model name, Zen generation);
# 1. the machine's FP32 FMA peak (bench/peak.c), 1 thread and THREADS threads, at the
#    start and at the end of the run (the best of the two is the peak);
# 2. bpcc's training step on M1, M2, M3, M4 (LeNet-5), M5 (issue 14's tinygpt recipe,
#    bench/m5_gpt.bp) and M3 with --recompute=sqrt, and M2-M5 again with
#    --precision bf16 (issue 15: the bf16 rows, each against its f32 row)
#    (`bpcc bench`, median of BENCH_STEPS steps, default 30, after 5 of warm-up;
#    BENCH_ROUNDS rounds, default 3, and the median of the rounds), what each compiled
#    to (bpcc bench's `code` line), and for M2 (`--profile`, first round) the time of
#    forward, backward and update, and each of its matrix products alone on 1 and
#    THREADS threads; for M4 (`--profile`, first round) the same phases and each
#    convolution pass (forward, backward-data, backward-weights) as a kernel of the
#    step: its FLOPs, time, GFLOP/s and percent of the measured peak;
# 3. the same five models in PyTorch (bench/torch_bench.py under /usr/bin/python3 for
#    M1-M4, bench/torch_gpt.py for M5; OMP/OpenBLAS threads set to THREADS; M4's Conv2d
#    on oneDNN, which the header reports), run between the bpcc runs so that both see
#    the same machine state, with the fastest OpenBLAS kernel set that computes correct
#    products on this host (bench/blas_pick.py times and checks each candidate first;
#    OPENBLAS_CORETYPE is set for the PyTorch commands only).
# Prints one table and writes it as CSV to bench/results.csv (BENCH_CSV overrides),
# through a temporary file renamed at the end.
set -eu
BUILD=${1:-build}
THREADS=${2:-$(nproc)}
HERE=$(cd "$(dirname "$0")" && pwd)
BPCC=$BUILD/bpcc
CSV=${BENCH_CSV:-$HERE/results.csv}
STEPS=${BENCH_STEPS:-30}
TMP=$(mktemp -d "${TMPDIR:-/tmp}/bpcc-bench-XXXXXX")
# the CSV is written next to its final name and renamed when complete
OUT=$CSV.tmp.$$
trap 'rm -rf "$TMP" "$OUT"' EXIT
# an interrupted run (Ctrl-C, a closed pipe) leaves neither behind: exit runs the trap
trap 'exit 130' INT HUP TERM PIPE

cc -O2 -std=c11 -D_POSIX_C_SOURCE=200809L -o "$TMP/peak" "$HERE/peak.c" -lpthread
"$TMP/peak" --cpu > "$TMP/cpu.txt"
cpu() { sed -n "s/^cpu_$1 //p" "$TMP/cpu.txt"; }
CPU_VENDOR=$(cpu vendor)
CPU_FAMILY=$(cpu family)
CPU_MODEL=$(cpu model)
CPU_NAME=$(cpu model_name)
CPU_UARCH=$(cpu uarch)
"$TMP/peak" --threads="$THREADS" > "$TMP/peak.txt"

# M5 (bench/m5_gpt.bp, issue 14) joins the runs when its file is there
MODELS="m1 m2 m3 m4"
[ -f "$HERE/m5_gpt.bp" ] && MODELS="$MODELS m5"
# a model's .bp file and the name bpcc bench reports it by (its `model` line)
model_name() {
  case $1 in
    m3) echo m3_deep ;;
    m4) echo m4_lenet ;;
    m5) echo m5_gpt ;;
    *) echo "$1" ;;
  esac
}

# the models that get a bf16 row (issue 15): all of them
BF16_MODELS="m2 m3 m4"
[ -f "$HERE/m5_gpt.bp" ] && BF16_MODELS="$BF16_MODELS m5"

have_torch=yes
/usr/bin/python3 -c 'import torch' 2> /dev/null || have_torch=no

# PyTorch's OpenBLAS kernel set: timed and checked per candidate (bench/blas_pick.py),
# then set for the PyTorch commands only. "auto" is OpenBLAS's own detection (the
# variable unset); "-" means nothing to choose, and PyTorch runs with the environment
# as it is.
: > "$TMP/blas.txt"
TORCH_ENV=env
BLAS_NAME=-
BLAS_CORE=-
if [ $have_torch = yes ]; then
  /usr/bin/python3 "$HERE/blas_pick.py" "$THREADS" > "$TMP/blas.txt" ||
    { echo "bench: bench/blas_pick.py failed" >&2; exit 1; }
  BLAS_NAME=$(awk '$1 == "blas_chosen" { print $2 }' "$TMP/blas.txt")
  BLAS_CORE=$(awk '$1 == "blas_chosen" { print $3 }' "$TMP/blas.txt")
  case $BLAS_NAME in
    -|"") BLAS_NAME=- ;;
    auto) TORCH_ENV="env -u OPENBLAS_CORETYPE" ;;
    *) TORCH_ENV="env OPENBLAS_CORETYPE=$BLAS_NAME" ;;
  esac
fi

: > "$TMP/bpcc.txt"
: > "$TMP/torch.txt"
: > "$TMP/aot.txt"
: > "$TMP/m4.txt"
# ROUNDS rounds (BENCH_ROUNDS, default 3), bpcc and PyTorch interleaved model by model;
# each figure below is the median over the rounds of the per-round medians, so a burst
# of contention on this shared machine moves one round, not the result.
ROUNDS=${BENCH_ROUNDS:-3}
r=0
while [ $r -lt "$ROUNDS" ]; do
  r=$((r + 1))
  for m in $MODELS; do
    f=$HERE/$(model_name $m).bp
    if [ $m = m4 ] && [ $r = 1 ]; then
      # M4's profile apart (its kernel lines are not M2's); its timing row joins the rest
      "$BPCC" bench "$f" --threads "$THREADS" --steps "$STEPS" --profile > "$TMP/m4.txt"
      grep -E '^(bpcc|code) ' "$TMP/m4.txt" >> "$TMP/bpcc.txt"
    else
      gemm=
      [ $m = m2 ] && [ $r = 1 ] && gemm=--profile
      "$BPCC" bench "$f" --threads "$THREADS" --steps "$STEPS" $gemm >> "$TMP/bpcc.txt"
    fi
    if [ $have_torch = yes ] && [ $m = m5 ]; then
      $TORCH_ENV /usr/bin/python3 "$HERE/torch_gpt.py" bench "$THREADS" "$STEPS" >> "$TMP/torch.txt"
    elif [ $have_torch = yes ]; then
      $TORCH_ENV /usr/bin/python3 "$HERE/torch_bench.py" "$THREADS" "$STEPS" $m >> "$TMP/torch.txt"
    fi
  done
  # M3 with sqrt(L) recomputation (issue 6: the step may grow by at most 35%)
  "$BPCC" bench "$HERE/m3_deep.bp" --threads "$THREADS" --steps "$STEPS" --recompute=sqrt |
    sed 's/^bpcc m3_deep /bpcc m3_sqrt /' >> "$TMP/bpcc.txt"
  # every model again in mixed precision (issue 15: bf16 products, bf16 activations
  # kept for backward, f32 master weights), in the same round as its f32 row
  for m in $BF16_MODELS; do
    "$BPCC" bench "$HERE/$(model_name $m).bp" --threads "$THREADS" --steps "$STEPS" --precision bf16 |
      sed "s/^bpcc [a-z0-9_]* /bpcc ${m}_bf16 /" >> "$TMP/bpcc.txt"
  done
done
# median over rounds: bpcc MODEL ms min max gflop gflops jit rss; torch MODEL ms min max
# rss (min and max over all rounds' steps);
# `code ...` (what bpcc compiled, the line after each bpcc line) once per model
reduce() {
  awk '
    function med(s,   a, n, i, j, t) {
      n = split(s, a, " ")
      for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
      return a[int((n + 1) / 2)]
    }
    $1 == "code" {
      if (!(last in code)) code[last] = substr($0, 6)
      next
    }
    $1 == "bpcc" {
      last = $2
      if (!($2 in ms)) order[++n] = $2
      ms[$2] = ms[$2] " " $3; jit[$2] = jit[$2] " " $8
      if (!($2 in mn) || $4 < mn[$2]) mn[$2] = $4
      if ($5 > mx[$2]) mx[$2] = $5
      if ($9 > rss[$2]) rss[$2] = $9
      fl[$2] = $6
      next
    }
    $1 == "torch" {
      if (!($2 in ms)) order[++n] = $2
      ms[$2] = ms[$2] " " $3
      if (!($2 in mn) || $4 < mn[$2]) mn[$2] = $4
      if ($5 > mx[$2]) mx[$2] = $5
      if ($6 > rss[$2]) rss[$2] = $6
      next
    }
    { print }
    END {
      for (i = 1; i <= n; i++) {
        k = order[i]; m = med(ms[k])
        if (k in fl) printf "bpcc %s %.3f %s %s %s %.1f %s %s\n", k, m, mn[k], mx[k], fl[k], fl[k] / (m * 1e-3), med(jit[k]), rss[k]
        if (k in code) printf "code %s %s\n", k, code[k]
        else printf "torch %s %.3f %s %s %s\n", k, m, mn[k], mx[k], rss[k]
      }
    }' "$1"
}
# the GEMM's blocking for this host (bpcc bench's blocking line, the same in every run)
BLOCKING=$(awk '$1 == "blocking" { sub(/^blocking /, ""); print; exit }' "$TMP/bpcc.txt")
grep -v '^blocking ' "$TMP/bpcc.txt" > "$TMP/bpcc.nob" && mv "$TMP/bpcc.nob" "$TMP/bpcc.txt"
reduce "$TMP/bpcc.txt" > "$TMP/bpcc.red" && mv "$TMP/bpcc.red" "$TMP/bpcc.txt"
# the kernel set each PyTorch process reported (torch_bench.py's blas_core line)
BLAS_USED=$(awk '$1 == "blas_core" { print $2 }' "$TMP/torch.txt" | sort -u | tr '\n' ' ' | sed 's/ $//')
# what M4's Conv2d ran on (torch_bench.py's torch_conv line: oneDNN available and
# enabled, torch's threads, the aten convolution ops of one step), the same every round
TORCH_CONV=$(awk '$1 == "torch_conv" { printf "oneDNN (mkldnn) available %s, enabled %s; %s threads; ops %s\n", $2 ? "yes" : "no", $3 ? "yes" : "no", $4, $5 }' "$TMP/torch.txt" | sort -u | tr '\n' ' ' | sed 's/ $//')
grep -Ev '^(blas_core|torch_conv) ' "$TMP/torch.txt" > "$TMP/torch.red" || :
reduce "$TMP/torch.red" > "$TMP/torch.txt"
# The same step from the model library (`bpcc MODEL.bp -o`) in a C process without
# LLVM (bench/aot_step.c): what an embedding application pays in time and memory.
cc -O2 -std=c11 -o "$TMP/aot_step" "$HERE/aot_step.c" -ldl
for m in $MODELS; do
  name=$(model_name $m)
  f=$HERE/$name.bp
  batch=$(sed -n 's/^ *batch *\([0-9]*\).*/\1/p' "$f" | head -1)
  "$BPCC" "$f" -o "$TMP/$m.so"
  "$TMP/aot_step" "$TMP/$m.so" "$name" "$batch" "$STEPS" "$THREADS" >> "$TMP/aot.txt"
done

# The peak again at the end: other processes can only lower a measurement, so the
# machine's peak is the best of the two (both are printed).
"$TMP/peak" --threads="$THREADS" >> "$TMP/peak.txt"
PEAK1=$(awk '$1 == "peak_gflops_1thread" && $2 > p {p = $2} END {print p}' "$TMP/peak.txt")
PEAKN=$(awk -v k="peak_gflops_${THREADS}threads" '$1 == k && $2 > p {p = $2} END {print p}' "$TMP/peak.txt")
ALL1=$(awk '$1 == "peak_gflops_1thread" {printf "%s%s", s, $2; s = " / "}' "$TMP/peak.txt")
ALLN=$(awk -v k="peak_gflops_${THREADS}threads" '$1 == k {printf "%s%s", s, $2; s = " / "}' "$TMP/peak.txt")

DATE=$(date -u '+%Y-%m-%d %H:%M UTC')
hex() { printf '0x%x' "$1"; }
echo "machine: $CPU_UARCH ($CPU_VENDOR family $CPU_FAMILY ($(hex "$CPU_FAMILY")) model $CPU_MODEL ($(hex "$CPU_MODEL")), \"$CPU_NAME\"), $(nproc) CPUs; $THREADS threads; $DATE"
echo "measured FP32 FMA peak: $PEAK1 GFLOP/s on 1 thread, $PEAKN on $THREADS (best of start / end: $ALL1; $ALLN)"
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg 2> /dev/null) (the machine is shared)"
echo "bpcc's f32 GEMM blocking (codegen/blocking.c, from CPUID): ${BLOCKING:-not reported}"
echo "step times: the median over $ROUNDS rounds of each round's median of $STEPS steps; min: the fastest step of all rounds (max in the CSV)"
if [ $have_torch = no ]; then
  echo "PyTorch: python3-torch does not import under /usr/bin/python3; its columns are empty"
elif [ "$BLAS_NAME" = - ]; then
  echo "PyTorch's BLAS: no OpenBLAS kernel set chosen (see below); run with the environment as it is (OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}), kernels: $BLAS_USED"
else
  how="OPENBLAS_CORETYPE=$BLAS_NAME"
  [ "$BLAS_NAME" = auto ] && how="OPENBLAS_CORETYPE unset: OpenBLAS's own detection"
  echo "PyTorch's OpenBLAS kernels: $BLAS_CORE ($how), the fastest with correct results of:"
fi
if [ $have_torch = yes ]; then
  awk '$1 == "blas_candidate" {
      note = ""; for (i = 9; i <= NF; i++) note = note (i > 9 ? " " : "") $i
      if ($4 == "ok") printf "  %-15s %-11s %9s ms min %9s median %7s GFLOP/s  error %s of the bound\n", $2, $3, $6, $5, $7, $8
      else if ($4 == "same") printf "  %-15s %-11s %s\n", $2, $3, note
      else printf "  %-15s %-11s rejected: %s\n", $2, $3, note
    }' "$TMP/blas.txt"
  awk -v t="$THREADS" '$1 == "blas_setup" { printf "  (per pass: the %d products of the benchmark'"'"'s Linear layers, %s GFLOP in float32 on %d thread%s, checked against float64; %d passes a round, %d rounds: the fastest pass decides, the best round median beside it)\n", $2, $3, t, t == 1 ? "" : "s", $4, $5 }' "$TMP/blas.txt"
  [ "$BLAS_CORE" = - ] || [ "$BLAS_USED" = "$BLAS_CORE" ] ||
    echo "  WARNING: the PyTorch runs reported OpenBLAS kernels \"$BLAS_USED\", not $BLAS_CORE"
  echo "PyTorch's convolutions (M4's Conv2d): ${TORCH_CONV:-not reported}"
fi
echo
# the CSV: the machine, PyTorch's kernel candidates, the models, the products, M4's
# convolutions, the library
csvq() { printf '"%s"' "$(printf '%s' "$1" | sed 's/"/""/g')"; }
{
  echo "cpu_vendor,cpu_family,cpu_model,cpu_model_name,cpu_uarch,cpus,threads,date_utc,steps,rounds,peak_gflops_1thread,peak_gflops_threads,torch_openblas_coretype,torch_blas_core,torch_conv"
  echo "$CPU_VENDOR,$CPU_FAMILY,$CPU_MODEL,$(csvq "$CPU_NAME"),$(csvq "$CPU_UARCH"),$(nproc),$THREADS,$DATE,$STEPS,$ROUNDS,$PEAK1,$PEAKN,$BLAS_NAME,$(csvq "$BLAS_USED"),$(csvq "$TORCH_CONV")"
  echo
  echo "blas_candidate,core,status,ms_median,ms_min,gflops,err_of_bound,note"
  awk '$1 == "blas_candidate" {
      note = ""; for (i = 9; i <= NF; i++) note = note (i > 9 ? " " : "") $i
      gsub(/"/, "\"\"", note)
      printf "%s,%s,%s,%s,%s,%s,%s,\"%s\"\n", $2, $3, $4, $5 == "-" ? "" : $5, $6 == "-" ? "" : $6, $7 == "-" ? "" : $7, $8 == "-" ? "" : $8, note
    }' "$TMP/blas.txt"
  echo
} > "$OUT"
awk -v peak="$PEAKN" -v peak1="$PEAK1" -v csv="$OUT" -v torchfile="$TMP/torch.txt" '
  BEGIN {
    while ((getline line < torchfile) > 0) { split(line, t, " "); if (t[1] == "torch") { tms[t[2]] = t[3]; tmn[t[2]] = t[4]; tmx[t[2]] = t[5]; trss[t[2]] = t[6] } }
    printf "%-8s %9s %9s %8s %7s %9s %9s %10s %7s %9s %9s\n", "model", "bpcc ms", "bpcc min", "GFLOP/s", "% peak", "torch ms", "torch min", "torch/bpcc", "JIT ms", "bpcc MiB", "torch MiB"
    print "model,bpcc_ms,bpcc_ms_min,bpcc_ms_max,gflop_per_step,gflops,pct_peak,torch_ms,torch_ms_min,torch_ms_max,ratio,jit_ms,bpcc_rss_mib,torch_rss_mib" >> csv
  }
  $1 == "bpcc" {
    key = $2; sub(/_(deep|lenet|gpt)$/, "", key)
    has = key in tms
    ratio = has ? sprintf("%.1fx", tms[key] / $3) : "-"
    printf "%-8s %9.3f %9.3f %8.1f %6.1f%% %9s %9s %10s %7.0f %9.1f %9s\n", $2, $3, $4, $7, 100 * $7 / peak, has ? tms[key] : "-", has ? tmn[key] : "-", ratio, $8, $9, has ? trss[key] : "-"
    printf "%s,%s,%s,%s,%s,%s,%.1f,%s,%s,%s,%s,%s,%s,%s\n", $2, $3, $4, $5, $6, $7, 100 * $7 / peak, has ? tms[key] : "", has ? tmn[key] : "", has ? tmx[key] : "", has ? tms[key] / $3 : "", $8, $9, has ? trss[key] : "" >> csv
  }
  $1 == "gemm" { g[++ng] = $0 }
  $1 == "code" { c = $0; sub(/^code [^ ]* /, "", c); codes[++nc] = sprintf("  %-8s %s", $2, c) }
  $1 == "profile" { prof[++np] = sprintf("  %-9s %8.3f ms", $2, $3) }
  $1 == "kernel" {
    name = $6; for (i = 7; i <= NF; i++) name = name " " $i
    gf = $5 == "-" || $4 <= 0 ? "" : sprintf("%6.1f GFLOP/s", $5 / ($4 * 1e-3) * 1e-9)
    kern[++nk] = sprintf("  %-6s %3d %8.3f ms %14s  %s", $2, $3, $4, gf, name)
  }
  END {
    if (nc) {
      print ""
      print "what each step compiled to (bpcc bench'"'"'s code line: options, kernels per entry, memory at the batch):"
      for (i = 1; i <= nc; i++) print codes[i]
    }
    if (np) {
      print ""
      print "where M2'"'"'s step goes (--profile: entry points timed alone; products alone, counted per use):"
      for (i = 1; i <= np; i++) print prof[i]
    }
    if (nk) {
      print ""
      print "M2 per kernel (--profile: a build with a cycle counter around each kernel; ms per step, in the order they run):"
      for (i = 1; i <= nk; i++) if (kern[i] !~ / 0\.00[0-4][0-9] ms/) print kern[i]
      print "  (kernels under 0.005 ms not shown)"
    }
    print ""
    printf "%-10s %6s %6s %6s %8s %10s %9s %14s\n", "product", "M", "K", "N", "threads", "ms", "GFLOP/s", "% core peak"
    print "" >> csv
    print "product,M,K,N,threads,ms,gflops,pct_core_peak" >> csv
    for (i = 1; i <= ng; i++) {
      split(g[i], r, " ")
      pct = 100 * r[8] / (peak1 * r[6])
      printf "%-10s %6d %6d %6d %8d %10.3f %9.1f %13.1f%%\n", r[2], r[3], r[4], r[5], r[6], r[7], r[8], pct
      printf "%s,%s,%s,%s,%s,%s,%s,%.1f\n", r[2], r[3], r[4], r[5], r[6], r[7], r[8], pct >> csv
    }
  }' "$TMP/bpcc.txt"
# M4's convolutions, from its --profile run (first round): each kernel of the step that
# computes a convolution pass, named by the value its DSL line defines, with the pass's
# FLOPs (2 B O C kh kw Ho Wo, bpcc bench's FLOP field), its time per step, GFLOP/s and
# percent of the THREADS-thread peak measured in this run (the kernels are timed by the
# caller's clock: a kernel that runs on one thread is measured against both cores).
echo
awk -v peak="$PEAKN" -v threads="$THREADS" -v csv="$OUT" -v src="$HERE/m4_lenet.bp" -v bfile="$TMP/bpcc.txt" -v tfile="$TMP/torch.txt" '
  BEGIN {
    while ((getline line < bfile) > 0) { split(line, t, " "); if (t[1] == "bpcc" && t[2] == "m4_lenet") bms = t[3] }
    while ((getline line < tfile) > 0) { split(line, t, " "); if (t[1] == "torch" && t[2] == "m4") tms = t[3] }
    while ((getline line < src) > 0) {
      nl++
      if (match(line, /^[ \t]*[A-Za-z_][A-Za-z0-9_]*[ \t]*=/)) { v = substr(line, RSTART, RLENGTH - 1); gsub(/[ \t]/, "", v); var[nl] = v }
    }
  }
  $1 == "profile" && ($2 == "forward" || $2 == "backward" || $2 == "update") { ph = ph sprintf("%s%s %.3f ms", ph == "" ? "" : ", ", $2, $3) }
  $1 == "kernel" {
    total += $4
    split($6, ops, "+"); pass = ""
    for (i = 1; i in ops; i++) {
      p = ops[i] == "conv2d" ? "forward" : ops[i] == "conv2d_bwd_data" ? "backward-data" : ops[i] == "conv2d_bwd_weight" ? "backward-weights" : ""
      if (p != "") pass = pass (pass == "" ? "" : "+") p
    }
    if (pass == "" || $5 == "-") next
    loc = $NF; ln = loc; sub(/^.*:/, "", ln)
    what = (ln in var) ? var[ln] " (" loc ")" : loc
    ops_name = $6; for (i = 7; i <= NF; i++) ops_name = ops_name " " $i
    gf = $4 > 0 ? $5 / ($4 * 1e-3) * 1e-9 : 0
    row[++n] = sprintf("  %-22s %-17s %-8s %8.2f %9.3f %9.1f %7.1f%%", what, pass, $2 " " $3, $5 * 1e-6, $4, gf, 100 * gf / peak)
    crow[n] = sprintf("%s,%s,%s,\"%s\",%s,%s,%.2f,%.1f", $2, $3, pass, ops_name, $5, $4, gf, 100 * gf / peak)
    cms += $4; cfl += $5
    pct = 100 * gf / peak
    if (n == 1 || pct < pmin) pmin = pct
    if (n == 1 || pct > pmax) pmax = pct
  }
  END {
    print "M4 (LeNet-5) per phase (--profile, medians): " (ph == "" ? "not measured" : ph)
    print "M4'"'"'s convolutions (--profile: per kernel of the step; FLOPs 2 B O C kh kw Ho Wo per pass; % of the " threads "-thread peak):"
    printf "  %-22s %-17s %-8s %8s %9s %9s %8s\n", "conv", "pass", "kernel", "MFLOP", "ms", "GFLOP/s", "% peak"
    for (i = 1; i <= n; i++) print row[i]
    if (n) printf "  %-22s %-17s %-8s %8.2f %9.3f %9.1f %7.1f%%\n", "all convolutions", "", "", cfl * 1e-6, cms, cfl / (cms * 1e-3) * 1e-9, 100 * cfl / (cms * 1e-3) * 1e-9 / peak
    else print "  (no convolution kernel in the profile)"
    if (total > 0) printf "  the convolutions are %.3f of the %.3f ms the profiled step'"'"'s kernels take (%.0f%%)\n", cms, total, 100 * cms / total
    # the issue'"'"'s two targets for M4, from this run'"'"'s figures
    printf "M4 against its targets: the step %s", bms == "" ? "not measured" : sprintf("%.3f ms", bms)
    if (bms != "" && tms != "") printf ", PyTorch %.3f ms: bpcc / PyTorch %.2f, PyTorch / bpcc %.2fx (target: 3x or more)", tms, bms / tms, tms / bms
    if (n) printf "; the convolutions at %.1f-%.1f%% of the peak, %.1f%% together (target: 50%% or more)", pmin, pmax, 100 * cfl / (cms * 1e-3) * 1e-9 / peak
    print ""
    print "" >> csv
    print "m4_kernel_entry,m4_kernel_index,conv_pass,kernel_ops,flop,ms,gflops,pct_peak" >> csv
    for (i = 1; i <= n; i++) print crow[i] >> csv
  }' "$TMP/m4.txt"
# M5 (issue 14's tinygpt recipe) against its target, from this run's medians
if [ -f "$HERE/m5_gpt.bp" ]; then
  awk -v bfile="$TMP/bpcc.txt" -v tfile="$TMP/torch.txt" '
    BEGIN {
      while ((getline line < bfile) > 0) { split(line, t, " "); if (t[1] == "bpcc" && t[2] == "m5_gpt") bms = t[3] }
      while ((getline line < tfile) > 0) { split(line, t, " "); if (t[1] == "torch" && t[2] == "m5") tms = t[3] }
      printf "M5 (tinygpt: 2 blocks, d 128, 4 heads, T 64, batch 32, AdamW) against its target: the step %.3f ms", bms
      if (tms != "") printf ", PyTorch %.3f ms: PyTorch / bpcc %.2fx (target: 2x or more)", tms, tms / bms
      print ""
    }'
else
  echo "M5 (tinygpt): bench/m5_gpt.bp is not in this tree; not measured"
fi
# bf16 against f32 (issue 15: the bf16 step at least 1.6x faster than bpcc's f32 step in
# the same run), and the f32 steps of M2 and M3 against the peak (75% or more)
awk -v bfile="$TMP/bpcc.txt" -v peak="$PEAKN" -v threads="$THREADS" -v models="$BF16_MODELS" '
  function name(m) { return m == "m3" ? "m3_deep" : m == "m4" ? "m4_lenet" : m == "m5" ? "m5_gpt" : m }
  BEGIN {
    while ((getline line < bfile) > 0) { split(line, t, " "); if (t[1] == "bpcc") { ms[t[2]] = t[3]; gf[t[2]] = t[7] } }
    print "mixed precision against f32 (issue 15: bf16 step at least 1.6x faster than f32, same run):"
    n = split(models, mm, " ")
    for (i = 1; i <= n; i++) {
      f = ms[name(mm[i])]; b = ms[mm[i] "_bf16"]
      if (f == "" || b == "") { printf "  %-4s not measured\n", mm[i]; continue }
      printf "  %-4s f32 %8.3f ms, bf16 %8.3f ms: %.2fx%s\n", mm[i], f, b, f / b, (f / b >= 1.6 ? "" : "  (below 1.6x)")
    }
    print "f32 steps against the " threads "-thread peak (issue 15: M2 and M3 at 75% or more):"
    split("m2 m3", ff, " ")
    for (i = 1; i <= 2; i++) {
      k = name(ff[i])
      if (k in gf) printf "  %-4s %8.1f GFLOP/s, %.1f%% of %s%s\n", ff[i], gf[k], 100 * gf[k] / peak, peak, (100 * gf[k] / peak >= 75 ? "" : "  (below 75%)")
    }
  }'
echo
echo "the same step from the model library (bpcc MODEL.bp -o M.so) in a C process without LLVM (bench/aot_step.c):"
printf "%-8s %10s %10s %10s %10s\n" "model" "ms" "min" "max" "peak MiB"
awk '$1 == "aot" { printf "%-8s %10.3f %10.3f %10.3f %10.1f\n", $2, $3, $4, $5, $6 }' "$TMP/aot.txt"
awk -v csv="$OUT" 'BEGIN { print "" >> csv; print "library_model,ms,ms_min,ms_max,peak_rss_mib" >> csv }
  $1 == "aot" { printf "%s,%s,%s,%s,%s\n", $2, $3, $4, $5, $6 >> csv }' "$TMP/aot.txt"
echo
echo "% peak: of the $THREADS-thread peak; % core peak: of the 1-thread peak times the threads used."
echo "m3_sqrt: M3 with --recompute=sqrt (its GFLOP/s count the FLOPs of the step without recomputation)."
echo "MODEL_bf16: the model with --precision bf16 (its GFLOP/s count the same FLOPs as the f32 step)."
mv "$OUT" "$CSV"
echo "written: $CSV"
