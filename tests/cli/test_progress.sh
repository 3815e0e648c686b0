#!/usr/bin/env bash
# pstrain local shows the job's progress as ONE line: on a terminal (a pseudo-terminal
# here) a line redrawn in place with carriage returns, lifted off before every log line,
# and no worker drawing a bar of its own; elsewhere plain "progress:" log lines and no
# carriage return at all.
source "$(dirname "$0")/lib.sh"
# 20 epochs of 10 steps per worker, worker 0 slowed to 10 ms a step: about 2 s of
# training, long enough for several redraws (at most one per 100 ms) on a loaded machine.
ARGS=(local "$SRC/examples/binary-moons.yaml" --epochs 20 --servers 1 --workers 2
      --consistency ssp --output run)
export PSTRAIN_TEST_SLOW_WORKER=0 PSTRAIN_TEST_STEP_DELAY_MS=10

# Under a pseudo-terminal: stdout and stderr are the terminal.
/usr/bin/python3 - "$PSTRAIN" "${ARGS[@]}" > tty.txt <<'PY' || fail "pstrain local under a pty failed"
import os, pty, sys
pid, fd = pty.fork()
if pid == 0:
    os.execv(sys.argv[1], sys.argv[1:])
out = b""
while True:
    try:
        chunk = os.read(fd, 65536)
    except OSError:  # EIO: the child side closed
        break
    if not chunk:
        break
    out += chunk
_, status = os.waitpid(pid, 0)
sys.stdout.buffer.write(out)
sys.exit(os.waitstatus_to_exitcode(status))
PY
/usr/bin/python3 - tty.txt <<'PY' || fail "the live progress line on a terminal"
import re, sys
data = open(sys.argv[1], "rb").read().decode("utf-8", "replace")
data = data.replace("\r\n", "\n")  # the terminal's own newline translation (onlcr)
clear = "\r\x1b[K"
# A draw: text after a clear that is not ended by a newline (a log line is).
draws = [d for d in re.findall(r"\r\x1b\[K([^\r\n]*)(?!\n)(?=\r|$)", data) if d]
lines = [d for d in draws if re.search(r"epoch \d+/20 +step \d+/\d+ \(\d+%\).*samples/s +ETA \S+", d)]
if len(lines) < 2:
    sys.exit("expected the progress line drawn at least twice, got %d: %r" % (len(lines), draws[:5]))
if len(lines) != len(draws):
    sys.exit("something else drawn in place: %r" % [d for d in draws if d not in lines][:3])
# One line: whatever ends in a newline starts after the progress line was lifted off, so
# no log line carries a progress text in front of it.
for seg in data.split("\n"):
    rest = seg.rsplit(clear, 1)[-1]
    if "ETA" in rest:
        sys.exit("a log line was written onto the progress line: %r" % seg[-200:])
if re.search(r"\[[= >]{10,}\]", data):
    sys.exit("a worker drew its own progress bar")
if "job finished: all 4 processes exited 0" not in data:
    sys.exit("no 'job finished' line")
if not data.rstrip("\r\n").endswith("exited 0"):
    sys.exit("the progress line was left on the screen: %r" % data[-200:])
print("%d redraws of one progress line" % len(lines))
PY

# Not a terminal: plain lines.
rm -rf run
expect_exit 0 "$PSTRAIN" "${ARGS[@]}"
expect_in err.txt "local info: progress: epoch 1/20 +step [0-9]+/[0-9]+ \([0-9]+%\)"
expect_in err.txt "local info: progress: epoch 20/20 +step 400/400 \(100%\).*ETA 0s"
if grep -q $'\r' err.txt out.txt; then fail "carriage return in output that is not a terminal"; fi
n=$(grep -c "progress: epoch" err.txt)
[ "$n" -ge 20 ] || fail "expected a progress line per epoch, got $n"
echo "ok"
