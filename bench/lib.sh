# bench/lib.sh -- what the bench/ runners share (sourced; BENCH names the runner in
# messages, root is the source tree). Each runner keeps its own options and its own
# figures; these are the checks, the statistics and the reading of a run's metrics that
# were the same in every one.
#
#   bench_ints WHAT V...         exit 2 unless every V is a positive integer
#   bench_need_exe PATH TARGET BUILD
#                                exit 1, with the command that builds TARGET, when PATH
#                                is not an executable
#   bench_need_torch SMOKE       exit 1 (77, skipped, with SMOKE non-empty) when
#                                /usr/bin/python3 cannot import torch
#   bench_need_fmnist SMOKE      the same for Debian's dataset-fashion-mnist package
#   bench_median                 the median of the numbers on stdin ("nan" for none)
#   bench_train_rate DIR [loss]  samples/s of DIR/metrics.jsonl's train records (their
#                                samples over their seconds: the epochs' own clock, batch
#                                gathering included), and with "loss" the last train loss
#
# It sets py (Debian's interpreter: a pyenv python earlier on PATH lacks python3-torch),
# ncores (before OMP_NUM_THREADS, which nproc honours), one BLAS/OpenMP thread in every
# process (torch.set_num_threads(1) alone leaves OpenBLAS's threads running), and tmp, a
# scratch folder removed on exit.
py=/usr/bin/python3
FMNIST=/usr/share/datasets/fashion-mnist
ncores=$(nproc)
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
tmp=$(mktemp -d "/tmp/${BENCH%.sh}.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

bench_ints() { # WHAT V...
  local what=$1 v; shift
  for v in "$@"; do
    case "$v" in ''|*[!0-9]*|0) echo "$BENCH: $what: expected a positive integer, got '$v'" >&2; exit 2 ;; esac
  done
}

bench_need_exe() { # PATH TARGET BUILD
  [ -x "$1" ] && return 0
  echo "$BENCH: $1 not found; build it with" >&2
  echo "  cmake -S $root -B $3 -DCMAKE_BUILD_TYPE=Release && cmake --build $3 --target $2" >&2
  exit 1
}

bench_need_torch() { # SMOKE
  "$py" -c 'import torch' 2> /dev/null && return 0
  echo "$BENCH: $py cannot import torch; run scripts/install-deps.sh --bench" >&2
  [ -n "$1" ] && exit 77
  exit 1
}

bench_need_fmnist() { # SMOKE
  [ -f "$FMNIST/train-images-idx3-ubyte.gz" ] && return 0
  echo "$BENCH: $FMNIST not found (the dataset-fashion-mnist package)" >&2
  [ -n "$1" ] && exit 77
  exit 1
}

bench_median() {
  sort -g | awk '{ v[NR] = $1 }
    END { if (NR == 0) print "nan"; else if (NR % 2) print v[(NR + 1) / 2];
          else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

bench_train_rate() { # DIR [loss]
  "$py" - "$1/metrics.jsonl" "${2:-}" << 'PY'
import json, sys
n = s = 0.0
loss = float("nan")
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r.get("split") == "train":
        n += r["samples"]; s += r["seconds"]; loss = r.get("train_loss", loss)
print("%.1f %.5f" % (n / s, loss) if sys.argv[2] == "loss" else "%.1f" % (n / s))
PY
}
