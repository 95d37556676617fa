"""TLS for both transports from PEM files (a mounted Secret, e.g. one cert-manager writes).

CCSCLIP_TLS_CERT_FILE + CCSCLIP_TLS_KEY_FILE turn TLS on; CCSCLIP_TLS_CLIENT_CA_FILE also requires
every client to present a certificate signed by that CA (mTLS). gRPC reads the files again when
they change (cert-manager renews in place), for new connections; BentoML's HTTP server (uvicorn)
reads them at start, so a renewal there needs a rolling restart.
"""

from __future__ import annotations

import ssl
import threading
from pathlib import Path
from typing import Any


def check_tls(cert: Path | None, key: Path | None, client_ca: Path | None) -> None:
    """Both or neither of the certificate and its key; a client CA only with them; files exist."""
    if (cert is None) != (key is None):
        raise ValueError(
            "CCSCLIP_TLS_CERT_FILE and CCSCLIP_TLS_KEY_FILE go together: set both or neither"
        )
    if client_ca is not None and cert is None:
        raise ValueError(
            "CCSCLIP_TLS_CLIENT_CA_FILE (mTLS) needs CCSCLIP_TLS_CERT_FILE and _KEY_FILE"
        )
    for name, path in (("CERT", cert), ("KEY", key), ("CLIENT_CA", client_ca)):
        if path is not None and not Path(path).is_file():
            raise ValueError(f"CCSCLIP_TLS_{name}_FILE={path}: no such file")


def bentoml_ssl(cert: Path | None, key: Path | None, client_ca: Path | None) -> dict[str, Any]:
    """The `ssl` option of `@bentoml.service` (uvicorn's ssl_* arguments)."""
    if cert is None or key is None:
        return {"enabled": False}
    options: dict[str, Any] = {"enabled": True, "certfile": str(cert), "keyfile": str(key)}
    if client_ca is not None:
        options |= {"ca_certs": str(client_ca), "cert_reqs": int(ssl.CERT_REQUIRED)}
    return options


class _Files:
    """The PEM files' bytes, re-read when one of their modification times changes."""

    def __init__(self, cert: Path, key: Path, client_ca: Path | None) -> None:
        self.paths = [cert, key, *([client_ca] if client_ca else [])]
        self._lock = threading.Lock()
        self._stamp: tuple[int, ...] = ()
        self.data: list[bytes] = []

    def changed(self) -> bool:
        stamp = tuple(p.stat().st_mtime_ns for p in self.paths)
        with self._lock:
            if stamp == self._stamp:
                return False
            self.data = [p.read_bytes() for p in self.paths]
            self._stamp = stamp
            return True


def grpc_credentials(cert: Path | None, key: Path | None, client_ca: Path | None) -> Any:
    """Server credentials for `add_secure_port` (None: plaintext), re-reading renewed files."""
    import grpc

    if cert is None or key is None:
        return None
    files = _Files(Path(cert), Path(key), Path(client_ca) if client_ca else None)

    def configuration() -> Any:
        cert_pem, key_pem, *ca = files.data
        return grpc.ssl_server_certificate_configuration(
            [(key_pem, cert_pem)], root_certificates=ca[0] if ca else None
        )

    files.changed()

    def fetch() -> Any:
        try:
            return configuration() if files.changed() else None
        except OSError:  # mid-renewal: keep the current certificate
            return None

    return grpc.dynamic_ssl_server_credentials(
        configuration(), fetch, require_client_authentication=client_ca is not None
    )


def credentials_of(settings: Any) -> Any:
    """gRPC server credentials from ServiceSettings (None: plaintext)."""
    return grpc_credentials(
        settings.tls_cert_file, settings.tls_key_file, settings.tls_client_ca_file
    )


def health_only_server(servicer: Any, address: str) -> tuple[Any, int]:
    """A plaintext server with only grpc.health.v1 (the same servicer): kubelet's gRPC probes
    cannot speak TLS. It exposes SERVING / NOT_SERVING and nothing else."""
    from concurrent import futures

    import grpc
    from grpc_health.v1 import health_pb2_grpc

    server = grpc.server(futures.ThreadPoolExecutor(2, thread_name_prefix="ccsclip-health"))
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port(address)
    if not port:
        raise OSError(f"cannot listen on {address} (CCSCLIP_GRPC_HEALTH_PORT)")
    server.start()
    return server, port
