# Sourced by the image scripts: podman/buildah read scripts/image/containers.conf unless
# CONTAINERS_CONF is set (or the host has its own /etc/containers/containers.conf).
if [ -z "${CONTAINERS_CONF:-}" ] && [ ! -f /etc/containers/containers.conf ] && command -v runc >/dev/null; then
  CONTAINERS_CONF="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/containers.conf"
  export CONTAINERS_CONF
fi
export BENTOML_DO_NOT_TRACK=True
