#!/usr/bin/env bash
# pstrain plot: PNGs of a short moons run's metrics.csv (PNG signature checked), the same
# curves as text with --ascii, and one-line errors naming the file for a missing run
# folder, a foreign header, a file without rows, an unusable --out and a missing gnuplot.
source "$(dirname "$0")/lib.sh"
command -v gnuplot > /dev/null || { echo "gnuplot is not installed (apt-get install gnuplot-nox)"; exit 77; }

one_error() { # PATTERN: stderr is one line naming pstrain plot and matching PATTERN
  [ "$(wc -l < err.txt)" -eq 1 ] || { cat err.txt >&2; fail "expected one error line"; }
  expect_in err.txt "^pstrain plot: .*$1"
}

expect_exit 0 "$PSTRAIN" train "$SRC/examples/binary-moons.yaml" --epochs 3 --output run
expect_exit 0 "$PSTRAIN" plot run --out P
for f in loss accuracy throughput; do
  [ -s "P/$f.png" ] || fail "P/$f.png not written"
  [ "$(head -c 8 "P/$f.png" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] \
    || fail "P/$f.png does not start with the PNG signature"
  expect_in out.txt "^wrote P/$f.png$"
done
[ ! -e P/regression.png ] || fail "regression.png written for a classification run"

expect_exit 0 "$PSTRAIN" plot run --ascii
for t in train_loss val_loss train_acc val_acc samples_per_s epoch; do expect_in out.txt "$t"; done
[ ! -e run/loss.png ] || fail "--ascii wrote a file"

# A regression run: no accuracy plot, val_mse / val_r2 instead, with a note.
expect_exit 0 "$PSTRAIN" train "$SRC/examples/regression.yaml" --epochs 2 --output reg
expect_exit 0 "$PSTRAIN" plot reg
[ -s reg/regression.png ] && [ ! -e reg/accuracy.png ] || fail "regression run: wrong plots"
expect_in err.txt "accuracy.png skipped"

# Errors.
expect_exit 2 "$PSTRAIN" plot;                      one_error "needs a run folder"
expect_exit 4 "$PSTRAIN" plot nosuch;               one_error "nosuch/metrics.csv"
mkdir bad; echo "a,b,c" > bad/metrics.csv
expect_exit 3 "$PSTRAIN" plot bad;                  one_error "bad/metrics.csv line 1"
head -1 run/metrics.csv > bad/metrics.csv
expect_exit 3 "$PSTRAIN" plot bad;                  one_error "bad/metrics.csv: no epochs"
{ head -1 run/metrics.csv; echo "1,x,,,,,,,,,,,"; } > bad/metrics.csv
expect_exit 3 "$PSTRAIN" plot bad;                  one_error "bad/metrics.csv line 2"
expect_exit 2 "$PSTRAIN" plot run --out "it's";     one_error "quote"
[ ! -e "it's" ] || fail "an output folder with a quote was created"
expect_exit 2 "$PSTRAIN" plot run --ascii --out P;  one_error "--ascii"
PATH=/nonexistent expect_exit 4 "$PSTRAIN" plot run --out Q; one_error "gnuplot-nox"
echo "test_plot: ok"
