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
      valgrind clang libclang-rt-dev clang-format
      podman runc debootstrap golang-github-containernetworking-plugin-dnsname)
# Node.js runs the Kubernetes schema check (tests/k8s); Debian's when none is installed.
command -v node > /dev/null && command -v npm > /dev/null || pkgs+=(nodejs npm)
if [ "${1:-}" = "--bench" ]; then
  pkgs+=(python3-torch)
fi

# Test tooling from npm, pinned by tests/k8s/package-lock.json, into tests/k8s/node_modules
# (git-ignored): `npm ci` only when that folder is missing or older than the lock file.
npm_tools() {
  local dir
  dir="$(dirname "$0")/../tests/k8s"
  if [ -d "$dir/node_modules" ] && [ "$dir/node_modules" -nt "$dir/package-lock.json" ]; then
    echo "install-deps: npm test tooling present ($dir/node_modules)"
    return 0
  fi
  echo "install-deps: npm ci in $dir"
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error) && touch "$dir/node_modules"
}

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#pkgs[@]} packages present"
else
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "install-deps: installing ${missing[*]}"
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
npm_tools
