#!/usr/bin/env bash
# Print the base image for the build, making it when needed: $BASE_IMAGE if set; else the local
# Debian base if already made; else python:3.11-slim-bookworm if a registry answers; else (no
# registry, e.g. air-gapped) a Debian bookworm made from packages with debootstrap (root; the
# mirror is $MIRROR, else the one apt uses) holding only python3, python3-venv, ca-certificates.
set -euo pipefail
. "$(dirname "$0")/env.sh"
B=${1:-$(bash "$(dirname "$0")/backend.sh")}
LOCAL=localhost/ccsclip-base:bookworm
REMOTE=docker.io/library/python:3.11-slim-bookworm
if [ -n "${BASE_IMAGE:-}" ]; then echo "$BASE_IMAGE"; exit 0; fi
if "$B" image inspect "$LOCAL" >/dev/null 2>&1; then echo "$LOCAL"; exit 0; fi
if [ "${BASE_PULL:-1}" = 1 ] && timeout 120 "$B" pull -q "$REMOTE" >/dev/null 2>&1; then
  echo "$REMOTE"; exit 0
fi
command -v debootstrap >/dev/null || { echo "no registry and no debootstrap (apt-get install debootstrap)" >&2; exit 1; }
if [ -z "${MIRROR:-}" ]; then
  MIRROR=$(grep -hoE '^(URIs:|deb) +https?://[^ ]+/debian/?( |$)' /etc/apt/sources.list.d/*.sources \
    /etc/apt/sources.list 2>/dev/null | awk '{print $2}' | head -n1 || true)
  MIRROR=${MIRROR:-http://deb.debian.org/debian}
fi
ROOTFS=$(mktemp -d)
trap 'rm -rf "$ROOTFS"' EXIT
echo "debootstrap bookworm from $MIRROR (no registry reachable)" >&2
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
  bookworm "$ROOTFS" "$MIRROR" >&2
chroot "$ROOTFS" apt-get clean
rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/* "$ROOTFS"/var/log/* "$ROOTFS"/tmp/*
tar --numeric-owner -C "$ROOTFS" -c . | "$B" import --change 'CMD ["/bin/bash"]' - "$LOCAL" >&2
echo "$LOCAL"
