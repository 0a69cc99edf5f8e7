# tests/dist/lib_mpi.sh — what the data-parallel tests share, sourced after tests/lib.sh.
#
#   mpi_setup       skip (exit 77, said loudly) where mpirun is absent; where this bpcc
#                   was built without MPI, check its refusal under a launcher and exit 0
#   run_mpi NP ARGS...   mpirun -np NP bpcc ARGS with the launcher's options below
#
# Open MPI runs as root only with --allow-run-as-root, and more ranks than cores only
# with --oversubscribe. On one host the shared-memory transport is all a run needs:
# pml ob1 with btl self,vader starts in about a second, where probing UCX takes three
# more (measured here); a job of two ranks on this 2-core machine is what ctest runs.
MPIRUN="mpirun --allow-run-as-root --oversubscribe"
export OMPI_MCA_pml=ob1 OMPI_MCA_btl=self,vader

mpi_setup() {
  command -v mpirun > /dev/null 2>&1 || t_skip "mpirun is absent (Debian: openmpi-bin libopenmpi-dev)"
  if "$BPCC" --version | grep -q "^MPI: none"; then
    # this bpcc says so under a launcher, and runs as one process without one
    OMPI_COMM_WORLD_SIZE=2 timeout 60 "$BPCC" train "$SRC/examples/spiral.bp" --data spiral --epochs 1 \
      > "$T/out" 2> "$T/err" && fail "a bpcc without MPI trained under a launcher of 2 ranks"
    grep -q "this bpcc was built without MPI" "$T/err" || fail "no 'built without MPI' message: $(cat "$T/err")"
    t_done "$1 (bpcc built without MPI: its refusal checked)"
  fi
}

run_mpi() {
  np=$1
  shift
  timeout 120 $MPIRUN -np "$np" "$BPCC" "$@" < /dev/null
}
