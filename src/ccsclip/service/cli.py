"""`ccsclip serve-grpc`: mounted on the top-level app with `register(app)`.

Imports nothing heavy until the command runs, so `ccsclip` starts fast and works without the
serving extras installed.
"""

from __future__ import annotations

import logging
import os
import sys

import typer


def serve_grpc() -> None:
    """Serve the gRPC API, health and reflection, and Prometheus metrics (settings: CCSCLIP_*)."""
    # One process: in-memory metrics. PROMETHEUS_MULTIPROC_DIR (in the shared ConfigMap, for
    # BentoML) must be dropped before prometheus_client is first imported.
    if "prometheus_client" not in sys.modules:
        os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    logging.getLogger("ccsclip").setLevel(logging.INFO)
    from ccsclip.service.grpc_server import serve

    serve()


def register(app: typer.Typer) -> None:
    """Add `serve-grpc` to the top-level app."""
    app.command("serve-grpc")(serve_grpc)
