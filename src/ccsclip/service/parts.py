"""The served parts, built once from the settings for either transport.

`build_parts` opens the bundle (the core), the gallery store (every gallery warm; a bad store
fails here) and the probe runner, and returns them together as a `ServiceParts`. Both servers
(`http.py`, `grpc_server.py`) build theirs here and hand it to every endpoint's call
(endpoints.py): nothing is attached to anything after construction.

The core builds its own shadow sampler (service/shadow.py: a share of pruned requests re-run on
the full profile), since it is part of serving an image request; the gallery service owns the
live-bias counters of its searches. A new served part is one more field of `ServiceParts`,
built in `build_parts`.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ccsclip.service import schemas as s
from ccsclip.service.core import Core
from ccsclip.service.galleries import GalleryService
from ccsclip.service.metrics import Metrics, get_metrics
from ccsclip.service.probes import RESULTS_FILE, ProbeRunner, probe_options
from ccsclip.service.settings import ServiceSettings

log = logging.getLogger(__name__)
Transport = Literal["http", "grpc"]


@dataclass(frozen=True)
class ServiceParts:
    """What one server process serves: the core (engine, limits, metrics), its galleries and its
    background probes (None: none run in this process)."""

    settings: ServiceSettings
    core: Core
    galleries: GalleryService
    probes: ProbeRunner | None = None

    def list_profiles(self) -> s.ProfilesResponse:
        probes = self.probes.names() if self.probes is not None else []
        return self.core.profiles_response(self.galleries.names(), probes)

    def probe_results(self) -> s.ProbesResponse:
        if self.probes is None:
            return s.ProbesResponse(results=[], interval_s=self.settings.probe_interval_s, runs=0)
        return self.probes.response()

    def start(self) -> None:
        """Start the background work (the probes' thread)."""
        if self.probes is not None:
            self.probes.start()

    def stop(self) -> None:
        """Stop the probes and let queued shadow runs finish (their counts are not lost)."""
        if self.probes is not None:
            self.probes.stop()
        self.core.shadow.drain()


def probe_runner(
    settings: ServiceSettings, core: Core, transport: Transport, worker: int | None = None
) -> ProbeRunner:
    """gRPC: one process runs the probes. HTTP: every BentoML worker has a runner, only worker 1
    (or an in-process service, `worker` None) runs the probes, and shares the results with the
    other workers through a file in the Prometheus multiprocess directory, which BentoML
    creates empty for each `bentoml serve`."""
    if transport == "grpc":
        return ProbeRunner(
            core.engine, settings.probe_dirs(), core.metrics, **probe_options(settings)
        )
    shared = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    return ProbeRunner(
        core.engine,
        settings.probe_dirs(),
        core.metrics,
        **probe_options(settings),
        active=worker in (None, 1),
        results_file=Path(shared) / RESULTS_FILE if shared and worker is not None else None,
    )


def build_parts(
    settings: ServiceSettings,
    *,
    transport: Transport,
    worker: int | None = None,
    metrics: Metrics | None = None,
) -> ServiceParts:
    """Every served part, built and wired (probes not started yet: `ServiceParts.start`).

    `worker` is the BentoML worker index (HTTP); `metrics` defaults to the process's."""
    core = Core.load(settings, metrics or get_metrics())
    galleries = GalleryService(core)
    log.info("galleries: %s", galleries.warm())
    probes = probe_runner(settings, core, transport, worker)
    return ServiceParts(settings=settings, core=core, galleries=galleries, probes=probes)
