"""Service settings from the environment (`CCSCLIP_*`), shared by the HTTP and gRPC servers.

Galleries and probe sets are directories fixed at start-up; requests choose a gallery by its
folder NAME, so no request value ever becomes a file path. Left unset, they default to what the
bundle ships beside its models: every `<bundle>/galleries/*/` holding a gallery.json and every
`<bundle>/probes/*/` holding a probe.yaml (the embedded default ships its probe sets there).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

GALLERY_FILE = "gallery.json"  # as engine/galleries/local.py META (not imported: numpy)
PROBE_FILE = "probe.yaml"


def _comma_list(value: object) -> object:
    """`a,b` -> [a, b]; empty entries dropped. Lists (from code) pass through."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class ServiceSettings(BaseSettings):
    """Everything the servers read from the environment; names are `CCSCLIP_<FIELD>`."""

    # hide_input_in_errors: a validation error must not print the environment (API keys)
    model_config = SettingsConfigDict(
        env_prefix="CCSCLIP_", extra="ignore", frozen=True, hide_input_in_errors=True
    )

    bundle: Path = Path("bundle")
    default_profile: str | None = None  # None: the bundle manifest's default
    galleries: Annotated[list[Path] | None, NoDecode] = None
    probes: Annotated[list[Path] | None, NoDecode] = None
    probe_interval_s: float = Field(300.0, ge=0)  # 0: probes run once, at start-up
    probe_batch_size: int = Field(64, ge=1, le=4096)
    # full probe results are stored (keyed by profile and probe hashes) and each
    # interval only a canary subsample is re-embedded (service/probes.py, probe_cache.py)
    probe_cache_dir: Path | None = None  # None: $XDG_CACHE_HOME/ccsclip/probe-results
    # images per probe and profile; None: as many as probe_cpu_budget allows (service/probes.py)
    probe_canary_size: int | None = Field(None, ge=0, le=100_000)  # 0: no canary
    probe_canary_batch_size: int = Field(8, ge=1, le=4096)
    probe_canary_min: int = Field(4, ge=1, le=100_000)  # the budget's floor per probe and profile
    probe_cpu_budget: float = Field(0.02, gt=0, le=16)  # the canary's share of one core

    max_request_bytes: int = Field(32 * 1024 * 1024, ge=1024)
    max_images_per_request: int = Field(64, ge=1)
    max_image_pixels: int = Field(25_000_000, ge=1)
    max_labels: int = Field(1000, ge=1)
    max_label_chars: int = Field(300, ge=1)
    max_templates: int = Field(32, ge=1)
    max_k: int = Field(1000, ge=1)

    # onnxruntime intra-op threads per session; 0: onnxruntime's default (all cores). One thread
    # per call, with requests in parallel on several threads, gives the most throughput (and
    # no spinning thread pools fighting over the cores); raise it for lower single-request
    # latency on a big model.
    threads: int = Field(1, ge=0)
    text_cache_size: int = Field(4096, ge=0)

    http_workers: int = Field(1, ge=1)  # BentoML worker processes
    http_threads: int = Field(4, ge=1)  # request threads per worker
    # Adaptive batching of /v1/embed_images (BentoML). The latency is also BentoML's deadline:
    # a request it expects to wait longer is refused with 503 (load shedding); it also scales
    # the dispatcher's initial waits, so a large value makes the first requests slow.
    http_tracing: bool = False  # BentoML's OpenTelemetry spans (they leak memory in 1.4.40)
    http_batching: bool | None = None  # None: on with CUDA, off on CPU (service/batching.py)
    batch_max_size: int = Field(64, ge=2)
    batch_max_latency_ms: int = Field(1000, ge=1)

    grpc_port: int = Field(50051, ge=0, le=65535)  # 0: any free port
    grpc_metrics_port: int = Field(9090, ge=0, le=65535)
    grpc_host: str = "[::]"
    grpc_workers: int = Field(8, ge=1)  # handler threads
    grpc_grace_s: float = Field(20.0, ge=0)  # SIGTERM: finish in-flight calls for this long

    # Access control (service/auth.py): `scope:key` entries; none configured: off.
    api_keys_file: Path | None = None  # a mounted Secret, one entry per line
    api_keys: SecretStr | None = None  # comma-separated entries
    metrics_require_key: bool = False  # /metrics (both transports) needs a key too
    # Load shedding (service/limits.py): calls in flight per process; 0: unlimited. gRPC: below
    # grpc_workers, so health checks always find a free handler thread.
    http_max_concurrency: int = Field(32, ge=0)
    grpc_max_concurrency: int = Field(6, ge=0)
    # TLS (service/tls.py): server certificate and key (PEM); a client CA turns on mTLS.
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    tls_client_ca_file: Path | None = None
    grpc_health_port: int = Field(0, ge=0, le=65535)  # plaintext health-only port; 0: none
    # Galleries that grow (engine/galleries): exact/hnsw ones live under gallery_root (a PVC in
    # Kubernetes); milvus ones in the Milvus server at milvus_uri (token from a Secret).
    gallery_root: Path | None = None
    milvus_uri: str | None = None
    milvus_token: SecretStr | None = None
    milvus_db: str | None = None
    gallery_max_ef: int = Field(1024, ge=1)  # per-request search effort cap
    gallery_max_ids: int = Field(1000, ge=1)  # ids per delete request
    gallery_compact_bytes: int = Field(64 * 1024 * 1024, ge=1024)  # snapshot when the log passes
    # shadow agreement (service/shadow.py): share of requests with images served by a pruned
    # profile that the baseline profile also runs (default: <= 5 % extra CPU, docs/service.md)
    shadow_rate: float = Field(0.05, ge=0.0, le=1.0)
    shadow_baseline: str | None = None  # None: the bundle's full profile (shadow.baseline_of)
    shadow_seed: int | None = None  # a fixed sampling sequence (tests); None: random

    _split = field_validator("galleries", "probes", mode="before")(_comma_list)

    @model_validator(mode="after")
    def _check_shipping(self) -> ServiceSettings:
        from ccsclip.service.keys import KeyRing
        from ccsclip.service.limits import check_grpc_limit
        from ccsclip.service.tls import check_tls

        # a bad key file stops both servers here, before any model is loaded
        secret = self.api_keys.get_secret_value() if self.api_keys else None
        KeyRing.load(self.api_keys_file, secret)
        check_grpc_limit(self.grpc_max_concurrency, self.grpc_workers)
        check_tls(self.tls_cert_file, self.tls_key_file, self.tls_client_ca_file)
        return self

    def gallery_dirs(self) -> list[Path]:
        """Configured gallery folders, or the bundle's own `galleries/*` when unset."""
        if self.galleries is not None:
            return list(self.galleries)
        return _children_with(self.bundle / "galleries", GALLERY_FILE)

    def probe_dirs(self) -> list[Path]:
        """Configured probe folders, or the bundle's own `probes/*` when unset."""
        if self.probes is not None:
            return list(self.probes)
        return _children_with(self.bundle / "probes", PROBE_FILE)


def _children_with(root: Path, marker: str) -> list[Path]:
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if (p / marker).is_file())


@functools.lru_cache(maxsize=1)
def get_settings() -> ServiceSettings:
    """The process's settings, read once from the environment (tests call `cache_clear`)."""
    return ServiceSettings()
