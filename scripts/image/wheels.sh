#!/usr/bin/env bash
# Prepare the wheel directory for a build without network: every package of the Bento's
# requirements (and their dependencies) as wheels for Linux x86_64 / CPython 3.11, downloaded on
# this host (`pip wheel` also builds any source-only package into a wheel here, so the image build
# needs no compiler). Usage: wheels.sh REQUIREMENTS_TXT OUT_DIR. Reuses wheels already in OUT_DIR.
set -euo pipefail
REQ=${1:?requirements.txt of the Bento}
OUT=${2:?wheel directory}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
"$PY" -m pip wheel -q --disable-pip-version-check --wheel-dir "$OUT" --find-links "$OUT" -r "$REQ"
echo "$(ls "$OUT"/*.whl | wc -l) wheels in $OUT"
