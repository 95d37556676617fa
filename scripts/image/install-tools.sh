#!/usr/bin/env bash
# Install what building and running the image needs, when it is missing and this host can
# (root with apt-get, e.g. CI on Debian): podman with runc (Debian 12's crun fails on hybrid
# cgroups), buildah, debootstrap (a base image without a registry) and kubectl (rendering the
# manifests the image test runs) and promtool (Debian package `prometheus`: the alert rules' tests,
# tests/test_alert_rules.py). Idempotent: does nothing when all are there; never fails CI
# by itself (the image test then reports what is missing).
set -uo pipefail
missing=()
if ! command -v podman >/dev/null && ! { command -v docker >/dev/null && docker info >/dev/null 2>&1; }; then
  missing+=(podman runc buildah crun fuse-overlayfs slirp4netns uidmap)
fi
command -v runc >/dev/null || missing+=(runc)
command -v debootstrap >/dev/null || missing+=(debootstrap)
command -v kubectl >/dev/null || missing+=(kubectl)
command -v promtool >/dev/null || missing+=(prometheus)
[ ${#missing[@]} -gt 0 ] || exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "image tools missing (${missing[*]}) and this host cannot install them (root + apt-get)" >&2
  exit 0
fi
echo "installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >&2 || true
for package in $(printf '%s\n' "${missing[@]}" | sort -u); do
  apt-get install -y -qq --no-install-recommends "$package" >&2 \
    || echo "could not install $package" >&2
done
exit 0
