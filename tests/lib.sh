# tests/lib.sh — the preamble the shell tests share, sourced after the script has read its
# arguments:
#     BPCC=$1
#     SRC=$2
#     . "$SRC/tests/lib.sh"
#     t_setup NAME
#     ...
#     t_done NAME
#
#   t_setup NAME        T := a new directory ${TMPDIR:-/tmp}/bpcc-NAME-XXXXXX, removed at exit
#   t_at_exit CMD       CMD (evaluated then) runs at exit, before T is removed (kill PIDs)
#   fail MSG            "FAIL: MSG" on stdout, counted; the script goes on
#   die MSG             "FAIL: MSG" and exit 1 at once (a step the rest depends on failed)
#   t_skip MSG          "SKIPPED: MSG" and exit 77 (ctest's SKIP_RETURN_CODE)
#   t_sub_exit          the last command of a ( subshell ) that counts failures: see below
#   t_done NAME         "NAME: ok" and exit 0, or "NAME: N failed" and exit 1
#
# bpcc failing as it should, each run as `timeout $t_timeout "$BPCC" ARGS < /dev/null`
# with stdout in $T/out and stderr in $T/err (for checks after it), and failed unless
# the exit status is 1:
#   expect_error_exact  WANT ARGS...   stderr is exactly WANT (and a newline)
#   expect_error_first  WANT ARGS...   the first line of stderr is WANT
#   expect_error_has    WANT ARGS...   stderr contains WANT (a fixed string, not a regex)
# Each takes --no-stdout before WANT: also fail if anything was printed on stdout.
#
# t_done exits with 0 or 1, never with the count: exit 77 would read as "skipped" to a
# test with SKIP_RETURN_CODE 77 and exit 256 as success. For the same reason a subshell
# (for ulimit or cd) hands its count back through t_sub_exit, which caps it:
#     ( t_fails=0; ulimit -v 409600; expect_error_has ...; t_sub_exit ) || t_fails=$((t_fails + $?))
#
# The functions return 0 unless they say otherwise, so that scripts under `set -e` can
# use them. Their variables start with t_ (and T), so that they clobber none of a script's.

t_fails=0
t_timeout=60
t_exit_cmds=
T=

fail() {
  echo "FAIL: $*"
  t_fails=$((t_fails + 1))
}

die() {
  echo "FAIL: $*"
  exit 1
}

t_skip() {
  echo "SKIPPED: $*"
  exit 77
}

t_cleanup() {
  eval "$t_exit_cmds"
  if [ -n "$T" ]; then rm -rf "$T"; fi
}

t_setup() {
  T=$(mktemp -d "${TMPDIR:-/tmp}/bpcc-$1-XXXXXX") || die "cannot make a temporary directory"
  trap t_cleanup EXIT
  # a test interrupted (Ctrl-C on ctest, a timeout's SIGTERM) still removes T: exit runs
  # the EXIT trap
  trap 'exit 130' INT
  trap 'exit 143' TERM
  trap 'exit 129' HUP
}

t_at_exit() {
  t_exit_cmds="$t_exit_cmds
$1"
}

t_sub_exit() {
  if [ "$t_fails" -gt 100 ]; then exit 100; fi
  exit "$t_fails"
}

t_done() {
  if [ "$t_fails" -eq 0 ]; then
    echo "$1: ok"
    exit 0
  fi
  echo "$1: $t_fails failed"
  exit 1
}

# t_expect_error HOW [--no-stdout] WANT ARGS...: the expect_error_* functions above
t_expect_error() {
  t_how=$1
  shift
  t_no_stdout=0
  if [ "$1" = --no-stdout ]; then t_no_stdout=1; shift; fi
  t_want=$1
  shift
  timeout "$t_timeout" "$BPCC" "$@" > "$T/out" 2> "$T/err" < /dev/null
  t_rc=$?
  if [ $t_rc -ne 1 ]; then
    if [ $t_rc -eq 124 ]; then
      fail "bpcc $*: exit $t_rc, expected 1 (it hung: killed after $t_timeout s)"
    else
      fail "bpcc $*: exit $t_rc, expected 1"
    fi
  fi
  case $t_how in
    exact)
      if ! printf '%s\n' "$t_want" | cmp -s - "$T/err"; then
        fail "bpcc $*: stderr differs (- expected, + got):"
        printf '%s\n' "$t_want" | diff -u - "$T/err" | tail -n +3
      fi ;;
    first)
      if [ "$(head -n 1 "$T/err")" != "$t_want" ]; then
        fail "bpcc $*: the first line of stderr is not '$t_want':"
        cat "$T/err"
      fi ;;
    has)
      if ! grep -qF -- "$t_want" "$T/err"; then
        fail "bpcc $*: stderr lacks '$t_want':"
        cat "$T/err"
      fi ;;
    *) die "t_expect_error: no such check '$t_how'" ;;
  esac
  if [ $t_no_stdout -eq 1 ] && [ -s "$T/out" ]; then
    fail "bpcc $*: printed on stdout:"
    cat "$T/out"
  fi
  return 0
}

expect_error_exact() { t_expect_error exact "$@"; }
expect_error_first() { t_expect_error first "$@"; }
expect_error_has() { t_expect_error has "$@"; }
