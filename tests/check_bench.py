#!/usr/bin/python3
"""tests/check_bench.py -- runs one benchmark in its smoke mode and checks its figures.

    check_bench.py [--needs PATH]... --expect REGEX [--expect REGEX]... -- CMD [ARG...]

Runs CMD (stdout and stderr are echoed, so a failing test shows the benchmark's output),
then fails unless CMD exited 0 and every REGEX matches a line of its stdout (re.search,
one line at a time) with every group it captures a finite number: a figure that is
missing, "nan" or "inf" fails the test (ctest -L bench). Benchmarks are not judged on
their figures, only on printing them. Exit 77 (ctest's skip) when a --needs path is absent
or CMD itself exits 77 (a baseline such as PyTorch is not installed)."""
import argparse
import math
import os
import re
import subprocess
import sys

SKIP = 77


def finite(text):
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--needs", action="append", default=[], metavar="PATH",
                    help="skip (exit 77) when this file is absent, e.g. a data set")
    ap.add_argument("--expect", action="append", default=[], metavar="REGEX", required=True,
                    help="a line of stdout must match; its groups must be finite numbers")
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    cmd = a.cmd[1:] if a.cmd[:1] == ["--"] else a.cmd
    if not cmd:
        ap.error("no command after --")
    for p in a.needs:
        if not os.path.exists(p):
            print(f"check_bench: {p} is absent: skipped")
            return SKIP
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sys.stdout.write(r.stdout)
    sys.stderr.write(r.stderr)
    if r.returncode == SKIP:
        print("check_bench: the benchmark skipped itself (exit 77)")
        return SKIP
    if r.returncode != 0:
        print(f"check_bench: FAIL: {cmd[0]} exited {r.returncode}")
        return 1
    lines = r.stdout.splitlines()
    bad = 0
    for rx in a.expect:
        pat = re.compile(rx)
        hits = [m for m in map(pat.search, lines) if m]
        if not hits:
            print(f"check_bench: FAIL: no line matches {rx!r}")
            bad += 1
            continue
        for m in hits:
            nonfinite = [g for g in m.groups() if g is None or not finite(g)]
            if nonfinite:
                print(f"check_bench: FAIL: {m.group(0)!r}: not a finite number: {nonfinite}")
                bad += 1
    if bad:
        return 1
    print(f"check_bench: ok ({len(a.expect)} figure lines present and finite)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
