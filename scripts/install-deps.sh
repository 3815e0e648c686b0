#!/usr/bin/env bash
# Installs the Debian 12 packages pstrain needs to build, test and run its default job.
# Idempotent: packages already present are left alone, and apt is not touched at all
# when nothing is missing. Pass --bench to add the baselines the benchmarks compare with.
set -euo pipefail

pkgs=(build-essential cmake pkg-config git
      libzmq3-dev libprotobuf-c-dev protobuf-c-compiler
      libopenmpi-dev openmpi-bin libopenblas-dev
      libcmocka-dev libcyaml-dev libcjson-dev zlib1g-dev libxxhash-dev libmicrohttpd-dev prometheus
      dataset-fashion-mnist python3-numpy
      yamllint python3-yaml python3-jsonschema iproute2 procps gnuplot-nox
      valgrind clang libclang-rt-dev clang-format)
if [ "${1:-}" = "--bench" ]; then
  pkgs+=(python3-torch)
fi

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#pkgs[@]} packages present"
  exit 0
fi

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "install-deps: installing ${missing[*]}"
$sudo apt-get update -q
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
