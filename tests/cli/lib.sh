# tests/cli/lib.sh -- helpers for the command-line tests (sourced). Each test script gets
# the pstrain binary as $1 and the source tree as $2, works in its own temp dir, and exits
# non-zero on the first failed check with a message saying what was expected.
set -u
PSTRAIN=$1
SRC=$2
WORK=$(mktemp -d /tmp/pstrain-test.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
export OPENBLAS_NUM_THREADS=1

fail() { echo "FAIL: $*" >&2; exit 1; }

# expect_exit CODE CMD...: runs CMD, stdout to out.txt, stderr to err.txt.
expect_exit() {
  local want=$1; shift
  "$@" > out.txt 2> err.txt
  local got=$?
  if [ "$got" -ne "$want" ]; then
    echo "--- stderr of: $*" >&2; tail -20 err.txt >&2
    fail "exit code $got, expected $want: $*"
  fi
}

expect_in() { # FILE PATTERN (grep -E)
  grep -Eq -- "$2" "$1" || { echo "--- $1:" >&2; tail -20 "$1" >&2; fail "'$2' not in $1"; }
}

# json_field FILE SPLIT KEY: value of KEY in the last metrics.jsonl record of SPLIT.
json_field() {
  /usr/bin/python3 - "$1" "$2" "$3" <<'PY'
import json, sys
path, split, key = sys.argv[1:]
rows = [json.loads(l) for l in open(path) if l.strip()]
rows = [r for r in rows if r.get("split") == split]
print(rows[-1][key] if rows else "missing")
PY
}

# expect_ge VALUE MIN WHAT
expect_ge() {
  /usr/bin/python3 -c "import sys; sys.exit(0 if float('$1') >= float('$2') else 1)" 2>/dev/null \
    || fail "$3 = $1, expected >= $2"
}
