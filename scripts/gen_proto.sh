#!/usr/bin/env bash
# Regenerate the gRPC stubs from proto/ into src/ccsclip/v1/ (committed; tests/test_service.py
# checks they match). Package-relative layout: the generated `from ccsclip.v1 import
# ccsclip_pb2` resolves through the installed package, with no sys.path tricks.
# Usage: scripts/gen_proto.sh [OUT_DIR]   (default: src)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${1:-$ROOT/src}
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}
mkdir -p "$OUT/ccsclip/v1"
cd "$ROOT"
"$PYTHON" -m grpc_tools.protoc -Iproto --python_out="$OUT" --grpc_python_out="$OUT" \
    --pyi_out="$OUT" proto/ccsclip/v1/ccsclip.proto
# protoc writes no __init__.py; the package needs one (kept identical on every run).
printf '"""Generated gRPC stubs for proto/ccsclip/v1/ccsclip.proto (scripts/gen_proto.sh)."""\n' \
    > "$OUT/ccsclip/v1/__init__.py"
