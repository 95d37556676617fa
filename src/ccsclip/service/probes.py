"""Background accuracy and bias probes: at start-up, then every CCSCLIP_PROBE_INTERVAL_S.

A daemon thread scores every configured probe with every available profile
(`ccsclip.engine.probes.run_probe`, the computation `ccsclip evaluate` does offline), keeps the
latest result of each pair for the API and exports it as gauges. A probe that fails is logged
and counted (`ccsclip_probe_failures_total`) and its previous gauges stay; serving never waits
for probes and never fails because of them.

With several BentoML workers only one runs the probes (the metrics are merged across processes
anyway); it also writes the results to `results_file` (in the shared Prometheus directory), which
the other workers read when asked for them.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ccsclip.engine.engine import Engine
from ccsclip.engine.probes import run_probe
from ccsclip.fileio import atomic_write_json
from ccsclip.probeset import read_probe_spec
from ccsclip.service import schemas as s
from ccsclip.service.metrics import Metrics

log = logging.getLogger(__name__)
RESULTS_FILE = "ccsclip-probes.json"


def probe_name(directory: Path) -> str:
    """The probe's own name (probe.yaml), as `ccsclip evaluate` labels it; else the folder's."""
    try:
        return read_probe_spec(directory).name
    except Exception:  # an unreadable probe is reported when it runs
        return directory.name


def to_result(raw: dict[str, Any], finished_at: float, duration_s: float) -> s.ProbeResult:
    """A `run_probe` dict as the API's ProbeResult."""
    maxskew = []
    for key, row in raw.get("maxskew", {}).items():
        attribute, _, k = key.rpartition("@")
        maxskew.append(
            s.MaxSkew(
                attribute=attribute,
                k=int(k),
                mean=row["mean"],
                sum=row["sum"],
                random_ranking_mean=row["random_ranking_mean"],
            )
        )
    return s.ProbeResult(
        profile=raw["profile"],
        probe=raw["probe"],
        kind=raw["kind"],
        ok=True,
        finished_at=finished_at,
        duration_s=duration_s,
        last_success_at=finished_at,
        n_images=raw["n_images"],
        accuracy=raw.get("accuracy"),
        chance=raw.get("chance"),
        maxskew=maxskew,
    )


class ProbeRunner:
    """Runs probes in a background thread (when `active`) and answers for their results."""

    def __init__(
        self,
        engine: Engine,
        probe_dirs: Sequence[Path],
        metrics: Metrics,
        interval_s: float,
        batch_size: int = 64,
        active: bool = True,
        results_file: Path | None = None,
    ) -> None:
        self.engine = engine
        self.dirs = [Path(d) for d in probe_dirs]
        self.labels = [probe_name(d) for d in self.dirs]
        self.metrics = metrics
        self.interval_s = interval_s
        self.batch_size = batch_size
        self.active = active
        self.results_file = results_file
        self._results: dict[tuple[str, str], s.ProbeResult] = {}
        self._runs = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def names(self) -> list[str]:
        return list(self.labels)

    # ------------------------------------------------------------------ running

    def start(self) -> None:
        """Start the background thread (no-op when inactive, without probes, or started)."""
        if not self.active or not self.dirs or self._thread is not None:
            return
        profiles = self.engine.available_profiles()
        for profile in profiles:
            for label in self.labels:
                self.metrics.probe_declared(profile, label)
        self._thread = threading.Thread(target=self._loop, name="ccsclip-probes", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self.join(timeout)

    def join(self, timeout: float | None = None) -> None:
        """Wait for the background thread (with interval 0 it ends after one round)."""
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.run_once()
            if self.interval_s <= 0 or self._stop.wait(self.interval_s):
                return

    def run_once(self) -> None:
        """Every probe with every available profile; failures are logged and counted."""
        for profile in self.engine.available_profiles():
            for directory, label in zip(self.dirs, self.labels, strict=True):
                if self._stop.is_set():
                    return
                self._run_one(profile, directory, label)
        with self._lock:
            self._runs += 1
        self._publish()

    def _run_one(self, profile: str, directory: Path, label: str) -> None:
        start = time.time()
        try:
            raw = run_probe(self.engine, directory, profile, batch_size=self.batch_size)
        except Exception as exc:  # never let a probe break serving
            log.warning("probe %s with profile %s failed: %s", directory, profile, exc)
            self.metrics.probe_failed(profile, label)
            with self._lock:
                previous = self._results.get((profile, label))
                self._results[(profile, label)] = s.ProbeResult(
                    profile=profile,
                    probe=label,
                    kind=previous.kind if previous else "unknown",
                    ok=False,
                    error=f"{type(exc).__name__}: {exc}",
                    finished_at=time.time(),
                    duration_s=time.time() - start,
                    last_success_at=previous.last_success_at if previous else None,
                )
            return
        finished = time.time()
        raw["probe"] = label
        self.metrics.probe_succeeded(raw, finished)
        with self._lock:
            self._results[(profile, label)] = to_result(raw, finished, finished - start)

    def _publish(self) -> None:
        if self.results_file is None:
            return
        try:
            atomic_write_json(self.results_file, self.response().model_dump(mode="json"))
        except OSError as exc:
            log.warning("cannot write probe results to %s: %s", self.results_file, exc)

    # ------------------------------------------------------------------ reading

    def response(self) -> s.ProbesResponse:
        """The latest results: this process's own, or the probing worker's shared file."""
        if not self.active and self.results_file is not None:
            try:
                data = json.loads(self.results_file.read_text(encoding="utf-8"))
                return s.ProbesResponse.model_validate(data)
            except (OSError, ValueError):
                return s.ProbesResponse(results=[], interval_s=self.interval_s, runs=0)
        with self._lock:
            results = sorted(self._results.values(), key=lambda r: (r.profile, r.probe))
            return s.ProbesResponse(results=results, interval_s=self.interval_s, runs=self._runs)
