#!/usr/bin/env bash
# Build the image of a Bento (`make image`): bentoml containerize with the first OCI builder found.
#   BENTO (ccsclip:latest), TAG (ccsclip:<bento version>), BACKEND (docker|podman|buildah),
#   BASE_IMAGE (else scripts/image/base.sh picks or makes one), WHEELS (a wheel directory from
#   wheels.sh: the build installs from it with no index and no network; podman/buildah only,
#   made in runs/wheels when unset; `none`: the index), CA_BUNDLE (a CA file
#   for pip behind a TLS-inspecting proxy, mounted for the build only: never in the image).
# Prints the image name, its size and the build time on the last lines.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/env.sh"
BENTOML=${BENTOML:-bentoml}
BENTO=${BENTO:-ccsclip:latest}
B=$(bash "$HERE/backend.sh")
BASE=$(bash "$HERE/base.sh" "$B")
# BentoML's own Python (the CLI wraps long paths): the Bento's tag and folder
BENTO_PY=${PYTHON:-$(dirname "$(command -v "$BENTOML")")/python}
read -r VERSION BENTO_DIR < <("$BENTO_PY" -c 'import sys, bentoml
b = bentoml.get(sys.argv[1]); print(str(b.tag), b.path)' "$BENTO")
TAG=${TAG:-$VERSION}
# podman/buildah: wheels made on this host (runs/wheels, reused) unless WHEELS names a directory
# (made elsewhere, for an air-gapped host) or is `none` (the build then uses the index itself).
if [ -z "${WHEELS+x}" ] && [ "$B" != docker ]; then
  WHEELS=runs/wheels
  PYTHON=$BENTO_PY bash "$HERE/wheels.sh" "$BENTO_DIR/env/python/requirements.txt" "$WHEELS" >&2
fi
[ "${WHEELS:-}" != none ] || WHEELS=
OPTS=(--opt "build-arg=BASE_IMAGE=$BASE")
# One volume holds both optional inputs (BentoML joins repeated `--opt volume` into one value).
INPUTS=$(mktemp -d)
trap 'rm -rf "$INPUTS"' EXIT
if [ -n "${WHEELS:-}${CA_BUNDLE:-}" ]; then
  [ "$B" != docker ] || { echo "WHEELS/CA_BUNDLE need podman or buildah (docker build has no volumes)" >&2; exit 2; }
  [ -z "${WHEELS:-}" ] || cp -al "$(realpath "$WHEELS")" "$INPUTS/wheels" 2>/dev/null \
    || cp -a "$(realpath "$WHEELS")" "$INPUTS/wheels"
  [ -z "${CA_BUNDLE:-}" ] || cp "$CA_BUNDLE" "$INPUTS/ca.crt"
  chmod -R a+rX "$INPUTS"
  OPTS+=(--opt "volume=$INPUTS:/build-inputs:ro")
  [ -z "${WHEELS:-}" ] || OPTS+=(--opt network=none)  # the wheels are all it gets
fi
echo "building $TAG from $BENTO with $B on $BASE" >&2
START=$(date +%s)
# From /: BentoML 1.4.40 refuses a dockerfile_template outside the working directory, and it
# renders it from a copy of the Bento in a temporary directory.
(cd / && "$BENTOML" containerize "$BENTO" --backend "$B" --image-tag "$TAG" "${OPTS[@]}") >&2
SECONDS_TAKEN=$(( $(date +%s) - START ))
SIZE=$("$B" image inspect "$TAG" --format '{{.Size}}')
echo "image $TAG"
echo "size $SIZE bytes ($(( SIZE / 1000000 )) MB)"
echo "build ${SECONDS_TAKEN} s"
