"""Background accuracy and bias probes: full results once, then a cheap canary every interval.

A probe's full result with a profile (`ccsclip.engine.probes`, the computation `ccsclip evaluate`
does offline) depends only on the profile's ONNX file and the probe's files. A daemon thread
reads it from the bundle (baked by `ccsclip export --probe`, each file's hash checked against the
manifest: a changed file is refused, logged, and the result computed again), else from the probe
cache (service/probe_cache.py, keyed by both hashes), else computes it once and stores it there,
and exports it as gauges and on `/v1/probes`. Then, at start-up and every CCSCLIP_PROBE_INTERVAL_S,
a canary re-embeds some of each probe's images (the next ones of a fixed shuffled order, so
successive rounds cover the whole probe) and compares them with the stored reference: the largest
|difference| of an embedding and the number of images whose top-1 class (query) changed become
the drift gauges; `/v1/probes` also gives the canary images' accuracy now and in the reference.

How many images: CCSCLIP_PROBE_CANARY_SIZE when set, else as many as a CPU budget allows
(CCSCLIP_PROBE_CPU_BUDGET, a share of one core, default 2 %): the budget times the interval,
split evenly over the (profile, probe) pairs, divided by the measured CPU seconds per image of
that pair's previous canary, clamped to CCSCLIP_PROBE_CANARY_MIN and the probe's size. The cost is
process CPU time (time.process_time: onnxruntime's own threads included) over the canary's
batches, so it also counts what request threads spent meanwhile: on a busy server the estimate
is high and the canary smaller, never the other way. What was spent is on `/v1/probes`.

The thread runs at the lowest CPU priority (nice 19, Linux) and pauses after
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
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ccsclip.engine.engine import Engine
from ccsclip.engine.probes import PreparedProbe, embed_probe, prepare_probe, top1
from ccsclip.fileio import atomic_write_json
from ccsclip.probeset import AccuracyProbe, read_probe_spec
from ccsclip.service import schemas as s
from ccsclip.service.metrics import Metrics
from ccsclip.service.probe_cache import (
    BakedResults,
    Entry,
    ProbeCache,
    default_root,
    entry_key,
    full_entry,
    probe_sha256,
)

log = logging.getLogger(__name__)
RESULTS_FILE = "ccsclip-probes.json"
BUDGET_ROUNDS = 10  # the share of a core on /v1/probes is over this many last rounds


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
                null_mean=row.get("null_mean"),
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
        "canary_min": settings.probe_canary_min,
        "cpu_budget": settings.probe_cpu_budget,
    }


@dataclass
class _Stored:
    key: str
    entry: Entry
    source: str  # baked | cache | computed
    order: np.ndarray  # the canary's fixed shuffled order of the reference's rows
    cursor: int = 0  # where the next canary starts in `order`
    cost_s: float | None = None  # measured CPU seconds per canary image (None: not yet)
    canary: s.CanaryDrift | None = None

    def next_rows(self, n: int) -> np.ndarray:
        """The next `n` rows of the reference in the canary's order (wrapping around)."""
        picks = self.order[(self.cursor + np.arange(n)) % len(self.order)]
        self.cursor = (self.cursor + n) % max(1, len(self.order))
        return np.unique(picks)


def _canary_order(n: int, key: str) -> np.ndarray:
    """A fixed shuffle of range(n), the same for a key at every start."""
    seed = int.from_bytes(key.encode()[:8].ljust(8, b"0"), "little")
    return np.random.default_rng(seed).permutation(n).astype(np.int64)


def canary_count(
    budget: float, interval_s: float, pairs: int, cost_s: float | None, minimum: int, size: int
) -> int:
    """Images a pair's canary may embed this round under a CPU budget (share of one core)."""
    floor = min(minimum, size)
    if cost_s is None or interval_s <= 0 or pairs <= 0:
        return floor
    allowed = budget * interval_s / pairs / max(cost_s, 1e-9)
    return int(min(size, max(floor, np.floor(allowed))))


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
        canary_size: int | None = None,
        canary_batch_size: int = 8,
        canary_min: int = 4,
        cpu_budget: float = 0.02,
    ) -> None:
        """`canary_size` None: the canary is sized by `cpu_budget` (share of one core), at least
        `canary_min` images per probe and profile; an int: that many (0: no canary)."""
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
        self.canary_min = canary_min
        self.cpu_budget = cpu_budget
        self.baked = BakedResults(engine.bundle, engine.manifest)
        self._stored: dict[tuple[str, str], _Stored] = {}
        self._rounds: deque[tuple[float, float]] = deque(maxlen=BUDGET_ROUNDS)  # (cpu_s, wall_s)
        self._round_cpu = 0.0
        self._canary_cpu_total = 0.0
        self._full_cpu_total = 0.0
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
        self._round_cpu, started = 0.0, time.perf_counter()
        for profile in self.engine.available_profiles():
            for directory, label in zip(self.dirs, self.labels, strict=True):
                if self._stop.is_set():
                    return
                self._run_one(profile, directory, label)
        with self._lock:
            self._runs += 1
            self._rounds.append((self._round_cpu, time.perf_counter() - started))
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
        result = to_result(raw, finished, finished - start)
        result = result.model_copy(update={"source": stored.source, "canary": stored.canary})
        with self._lock:
            self._results[(profile, label)] = result

    def _lookup(self, key: str, profile: str, probe_sha: str) -> tuple[Entry | None, str]:
        """The stored full result: baked into the bundle, else in the probe cache."""
        sha = self._sha[profile]
        if self.baked.has(key, probe_sha):
            entry = self.baked.load(key, sha, probe_sha)
            if entry is not None:
                return entry, "baked"
        entry = self.cache.load(key, sha, probe_sha) if self.cache else None
        return entry, "cache"

    def _check(self, profile: str, directory: Path, label: str) -> None:
        """The full result (stored, else computed and stored), then the canary against it."""
        cpu = time.process_time()  # the canary is charged from here: hashing the probe too
        probe_sha = probe_sha256(directory)
        key = entry_key(self._sha[profile], probe_sha)
        stored = self._stored.get((profile, label))
        if stored is None or stored.key != key:
            entry, source = self._lookup(key, profile, probe_sha)
            if entry is None:
                cpu = time.process_time()
                entry = full_entry(self.engine, directory, profile, self.batch_size)
                spent = time.process_time() - cpu
                self._full_cpu_total += spent
                self.metrics.probe_embedded(profile, label, "full", len(entry.indices))
                if self.cache is not None:
                    self.cache.store(key, self._sha[profile], probe_sha, entry)
                self.metrics.probe_canary(profile, label, 0.0, 0)  # the reference is this run
                stored = _Stored(key, entry, "computed", _canary_order(len(entry.indices), key))
                stored.cost_s = spent / max(1, len(entry.indices))
                self._stored[(profile, label)] = stored
                return
            order = _canary_order(len(entry.indices), key)
            self._stored[(profile, label)] = stored = _Stored(key, entry, source, order)
        self._canary(profile, directory, label, stored, cpu)

    def _canary_size(self, stored: _Stored) -> int:
        size = len(stored.entry.indices)
        if self.canary_size is not None:
            return min(self.canary_size, size)
        pairs = len(self.dirs) * len(self.engine.available_profiles())
        return canary_count(
            self.cpu_budget, self.interval_s, pairs, stored.cost_s, self.canary_min, size
        )

    def _canary(
        self, profile: str, directory: Path, label: str, stored: _Stored, cpu: float
    ) -> None:
        """Re-embed the next images of the probe and compare; `cpu`: process CPU time when this
        pair's step began (its whole cost is charged to the budget, not only the embedding)."""
        n = self._canary_size(stored)
        if n <= 0:
            return
        entry = stored.entry
        rows = stored.next_rows(n)
        prepared = prepare_probe(self.engine, directory)
        pause = _Pause(self._stop)
        embeddings = embed_probe(
            self.engine,
            prepared,
            profile,
            self.canary_batch_size,
            entry.indices[rows],
            between_batches=pause,
        )
        now = top1(prepared, embeddings)
        max_abs = float(np.max(np.abs(embeddings - entry.reference[rows])))
        changed = int(np.sum(now != entry.top1[rows]))
        spent = time.process_time() - cpu
        self._round_cpu += spent
        self._canary_cpu_total += spent
        per_image = spent / len(rows)  # the step's fixed costs spread over its images
        stored.cost_s = per_image if stored.cost_s is None else (stored.cost_s + per_image) / 2
        self.metrics.probe_embedded(profile, label, "canary", len(embeddings))
        self.metrics.probe_canary_cpu(profile, label, spent)
        self.metrics.probe_canary(profile, label, max_abs, changed)
        stored.canary = _drift(prepared, entry, rows, now, max_abs, changed, spent)
        if changed or max_abs > 1e-3:
            log.warning(
                "probe canary %s / %s: embeddings differ from the stored result by up to %.3g, "
                "%d top-1 changed",
                profile,
                label,
                max_abs,
                changed,
            )

    def budget(self) -> s.ProbeBudget:
        """What the canary spent (process CPU) against its budget over the last rounds."""
        with self._lock:
            rounds = list(self._rounds)
        cpu = sum(c for c, _ in rounds)
        span = sum(w for _, w in rounds) + len(rounds) * max(self.interval_s, 0.0)
        return s.ProbeBudget(
            cpu_budget=self.cpu_budget if self.canary_size is None else None,
            canary_size=self.canary_size,
            canary_min=self.canary_min,
            rounds=len(rounds),
            canary_cpu_s=cpu,
            share_of_core=cpu / span if span > 0 else None,
            canary_cpu_s_total=self._canary_cpu_total,
            full_cpu_s_total=self._full_cpu_total,
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
        budget = self.budget()
        with self._lock:
            results = sorted(self._results.values(), key=lambda r: (r.profile, r.probe))
            return s.ProbesResponse(
                results=results, interval_s=self.interval_s, runs=self._runs, budget=budget
            )


def _drift(
    prepared: PreparedProbe,
    entry: Entry,
    rows: np.ndarray,
    now: np.ndarray,
    max_abs: float,
    changed: int,
    cpu_s: float,
) -> s.CanaryDrift:
    """The canary's figures beside the stored result's on the same images."""
    accuracy = reference = None
    if isinstance(prepared.probe, AccuracyProbe):
        labels = np.array([label for _, label in prepared.probe.samples])[entry.indices[rows]]
        accuracy = float(np.mean(now == labels))
        reference = float(np.mean(entry.top1[rows] == labels))
    return s.CanaryDrift(
        images=len(rows),
        max_abs=max_abs,
        top1_changed=changed,
        accuracy=accuracy,
        reference_accuracy=reference,
        cpu_s=cpu_s,
        finished_at=time.time(),
    )
