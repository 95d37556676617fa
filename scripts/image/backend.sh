#!/usr/bin/env bash
# Print the OCI builder to use (docker, podman or buildah): $BACKEND if set, else the first that
# works (docker's client alone is not enough: its daemon must answer). Exit 1 with the reason.
set -euo pipefail
. "$(dirname "$0")/env.sh"
if [ -n "${BACKEND:-}" ]; then echo "$BACKEND"; exit 0; fi
if command -v docker >/dev/null && timeout 20 docker info >/dev/null 2>&1; then echo docker; exit 0; fi
if command -v podman >/dev/null && timeout 60 podman info >/dev/null 2>&1; then echo podman; exit 0; fi
if command -v buildah >/dev/null && timeout 60 buildah info >/dev/null 2>&1; then echo buildah; exit 0; fi
echo "no OCI builder: install podman (apt-get install podman runc) or start a docker daemon" >&2
exit 1
