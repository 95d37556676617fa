"""Background accuracy and bias probes: full results once, then a cheap canary every interval.

A probe's full result with a profile (`ccsclip.engine.probes`, the computation `ccsclip evaluate`
does offline) depends only on the profile's ONNX file and the probe's files. A daemon thread
computes it once, at the first start, into the probe cache (service/probe_cache.py, keyed by
both hashes), or reads it from there, and exports it as gauges and on `/v1/probes`. Then, at
start-up and every CCSCLIP_PROBE_INTERVAL_S, a canary re-embeds a fixed subsample of each probe
(CCSCLIP_PROBE_CANARY_SIZE images) and compares it with the stored reference: the largest
|difference| of an embedding and the number of images whose top-1 class (query) changed become
the drift gauges. The thread runs at the lowest CPU priority (nice 19, Linux) and pauses after
each canary batch as long as the batch took, so it yields to requests. A profile or probe file
that changes gets a new key, hence a full run. A probe that fails is logged and counted
(`ccsclip_probe_failures_total`) and its previous gauges stay; serving never waits for probes
and never fails because of them.

With several BentoML workers only one runs the probes (the metrics are merged across processes
anyway); it also writes the results to `results_file` (in the shared Prometheus directory), which
the other workers read when asked for them.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ccsclip.engine.engine import Engine
from ccsclip.engine.probes import (
    canary_indices,
    embed_probe,
    prepare_probe,
    run_probe_embeddings,
    top1,
)
from ccsclip.fileio import atomic_write_json
from ccsclip.probeset import read_probe_spec
from ccsclip.service import schemas as s
from ccsclip.service.metrics import Metrics
from ccsclip.service.probe_cache import Entry, ProbeCache, default_root, entry_key, probe_sha256

log = logging.getLogger(__name__)
RESULTS_FILE = "ccsclip-probes.json"


class _Pause:
    """Called after each canary batch: sleep as long as the batch took (at most half a core)."""

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop
        self.last = time.perf_counter()

    def __call__(self) -> None:
        self.stop.wait(time.perf_counter() - self.last)
        self.last = time.perf_counter()


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


def probe_options(settings: Any) -> dict[str, Any]:
    """The ProbeRunner keywords that come from the service settings (both transports)."""
    return {
        "interval_s": settings.probe_interval_s,
        "batch_size": settings.probe_batch_size,
        "cache": ProbeCache(settings.probe_cache_dir or default_root()),
        "canary_size": settings.probe_canary_size,
        "canary_batch_size": settings.probe_canary_batch_size,
    }


@dataclass
class _Stored:
    key: str
    entry: Entry


def _lower_priority() -> None:
    """This thread (only) at nice 19 on Linux, so request threads get the CPU first."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
    except (AttributeError, OSError) as exc:  # not Linux, or not allowed
        log.info("probe thread keeps its priority: %s", exc)


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
        cache: ProbeCache | None = None,
        canary_size: int = 32,
        canary_batch_size: int = 8,
    ) -> None:
        self.engine = engine
        self.dirs = [Path(d) for d in probe_dirs]
        self.labels = [probe_name(d) for d in self.dirs]
        self.metrics = metrics
        self.interval_s = interval_s
        self.batch_size = batch_size
        self.active = active
        self.results_file = results_file
        self.cache = cache
        self.canary_size = canary_size
        self.canary_batch_size = canary_batch_size
        self._stored: dict[tuple[str, str], _Stored] = {}
        self._sha = {p.name: p.sha256 for p in engine.profiles()}
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
        _lower_priority()
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
            self._check(profile, directory, label)
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
        stored = self._stored[(profile, label)]
        raw = {**stored.entry.result, "probe": label, "profile": profile}
        self.metrics.probe_succeeded(raw, finished)
        with self._lock:
            self._results[(profile, label)] = to_result(raw, finished, finished - start)

    def _check(self, profile: str, directory: Path, label: str) -> None:
        """The full result (stored, else computed and stored), then the canary against it."""
        probe_sha = probe_sha256(directory)
        key = entry_key(self._sha[profile], probe_sha, self.canary_size)
        stored = self._stored.get((profile, label))
        if stored is None or stored.key != key:
            entry = self.cache.load(key, self._sha[profile], probe_sha) if self.cache else None
            if entry is None:
                entry = self._full(profile, directory, label)
                if self.cache is not None:
                    self.cache.store(key, self._sha[profile], probe_sha, entry)
                self.metrics.probe_canary(profile, label, 0.0, 0)  # the reference is this run
                self._stored[(profile, label)] = _Stored(key, entry)
                return
            self._stored[(profile, label)] = stored = _Stored(key, entry)
        self._canary(profile, directory, label, stored.entry)

    def _full(self, profile: str, directory: Path, label: str) -> Entry:
        result, embeddings = run_probe_embeddings(
            self.engine, directory, profile, batch_size=self.batch_size
        )
        self.metrics.probe_embedded(profile, label, "full", len(embeddings))
        indices = canary_indices(len(embeddings), self.canary_size)
        prepared = prepare_probe(self.engine, directory)
        reference = embeddings[indices]
        return Entry(result, indices, reference, top1(prepared, reference))

    def _canary(self, profile: str, directory: Path, label: str, entry: Entry) -> None:
        if len(entry.indices) == 0:
            return
        prepared = prepare_probe(self.engine, directory)
        pause = _Pause(self._stop)
        embeddings = embed_probe(
            self.engine,
            prepared,
            profile,
            self.canary_batch_size,
            entry.indices,
            between_batches=pause,
        )
        self.metrics.probe_embedded(profile, label, "canary", len(embeddings))
        max_abs = float(np.max(np.abs(embeddings - entry.reference)))
        changed = int(np.sum(top1(prepared, embeddings) != entry.top1))
        self.metrics.probe_canary(profile, label, max_abs, changed)
        if changed or max_abs > 1e-3:
            log.warning(
                "probe canary %s / %s: embeddings differ from the stored result by up to %.3g, "
                "%d top-1 changed",
                profile,
                label,
                max_abs,
                changed,
            )

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
