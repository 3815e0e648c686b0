#!/usr/bin/env bash
# deploy/container/make-base.sh -- a Debian 12 base image for the Containerfile where no
# registry can be reached: debootstrap from the Debian archive apt already uses, trimmed as
# Debian's own -slim images are (no apt lists, .debs, docs, man pages or locales, and dpkg
# told to leave those out of every later install), imported into podman.
#
#   deploy/container/make-base.sh [TAG]      # default localhost/debian:12
#   podman build -f deploy/container/Containerfile --build-arg BASE=localhost/debian:12 \
#       --build-arg RUNTIME_BASE=localhost/debian:12 -t pstrain .
#
# Needs root, debootstrap and podman, and the archive (MIRROR, default: the first Debian
# URI in /etc/apt/sources.list*). Idempotent: an existing TAG is left alone (FORCE=1
# rebuilds it). Exit 0 with the TAG present, 1 with a reason otherwise.
set -euo pipefail
tag=${1:-localhost/debian:12}
podman=(podman ${PODMAN_ARGS:-})
if "${podman[@]}" image exists "$tag" && [ "${FORCE:-0}" != 1 ]; then
  echo "make-base: $tag exists"
  exit 0
fi
command -v debootstrap > /dev/null || { echo "make-base: debootstrap is not installed" >&2; exit 1; }
mirror=${MIRROR:-$( (grep -rhoE '(URIs:|deb) +https?://[^ ]*/debian/?( |$)' /etc/apt/sources.list \
  /etc/apt/sources.list.d/ 2> /dev/null || true) | grep -oE 'https?://[^ ]*' | head -1)}
[ -n "$mirror" ] || { echo "make-base: no Debian mirror in /etc/apt/sources.list*; set MIRROR" >&2; exit 1; }
root=$(mktemp -d /tmp/pstrain-base.XXXXXX)
trap 'rm -rf "$root"' EXIT
echo "make-base: debootstrap bookworm from $mirror"
debootstrap --variant=minbase bookworm "$root" "$mirror" > "$root.log" 2>&1 \
  || { tail -5 "$root.log" >&2; rm -f "$root.log"; echo "make-base: debootstrap failed" >&2; exit 1; }
rm -f "$root.log"
cat > "$root/etc/dpkg/dpkg.cfg.d/slim" <<'CFG'
# As Debian's -slim images: no documentation or translations in installed packages.
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
CFG
printf 'APT::Install-Recommends "false";\n' > "$root/etc/apt/apt.conf.d/90-no-recommends"
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/usr/share/man/* \
  "$root"/usr/share/info/* "$root"/usr/share/locale/* "$root"/var/log/*.log
find "$root/usr/share/doc" -mindepth 2 ! -name copyright -delete 2> /dev/null || true
tar -C "$root" -c . | "${podman[@]}" import -q - "$tag" > /dev/null
echo "make-base: $tag ($("${podman[@]}" image inspect --format '{{.Size}}' "$tag") bytes)"
