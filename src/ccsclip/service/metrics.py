"""Prometheus metrics of both transports (names fixed by the dashboard and the manifests).

Multiprocess mode: `bentoml serve` starts its workers with PROMETHEUS_MULTIPROC_DIR set and its
`/metrics` route merges every `*.db` file in that directory (prometheus_client's
MultiProcessCollector), so plain prometheus_client metrics created in a worker appear there; no
custom collector can (each scrape builds a fresh registry), which is why the text-cache counts are
counters advanced by deltas rather than a collector reading the engine. prometheus_client picks
its storage when it is first imported, from that variable, so the metrics are created lazily
(`get_metrics()`), never at import. Gauges need a `multiprocess_mode`: probe values and the
last-success time keep the most recent write of any process ('mostrecent': only one worker runs
the probes); the profile info is 'max' (every worker sets 1). The gRPC server is a single process
and serves the default registry (see grpc_server).

Signed per-event figures (the live excess MaxSkew, shadow agreement and cosine) are exported as
four counters each (`SignedFigure`): counters merge across processes and never decrease, and a
mean and a variance follow from them over any window (docs/service.md, "Live bias").
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
MAXSKEW_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0)


class SignedFigure:
    """A signed figure observed once per event, as four counters `<name>_observations_total`,
    `_positive_total` (sum of max(x, 0)), `_negative_total` (sum of max(-x, 0)) and
    `_squares_total` (sum of x^2): mean = (positive - negative) / observations, variance =
    squares / observations - mean^2, over any window by `increase()` of each."""

    PARTS = ("observations", "positive", "negative", "squares")

    def __init__(self, name: str, documentation: str, labels: Sequence[str], registry: Any):
        from prometheus_client import Counter

        what = {
            "observations": "events observed",
            "positive": "sum of the positive parts max(x, 0)",
            "negative": "sum of the negative parts max(-x, 0)",
            "squares": "sum of the squares x^2",
        }
        self.name = name
        self.counters = {
            part: Counter(
                f"{name}_{part}", f"{documentation} ({what[part]})", list(labels), registry=registry
            )
            for part in self.PARTS
        }

    def observe(self, labels: Sequence[str], value: float) -> None:
        x = float(value)
        self.counters["observations"].labels(*labels).inc()
        self.counters["positive"].labels(*labels).inc(max(x, 0.0))
        self.counters["negative"].labels(*labels).inc(max(-x, 0.0))
        self.counters["squares"].labels(*labels).inc(x * x)


class Metrics:
    """The service's metric families and the few ways the code updates them."""

    def __init__(self, registry: Any = None) -> None:
        from prometheus_client import REGISTRY, Counter, Gauge, Histogram

        reg = REGISTRY if registry is None else registry
        self.requests = Counter(
            "ccsclip_requests_total",
            "Requests by endpoint, serving profile, transport and response code.",
            ["endpoint", "profile", "transport", "code"],
            registry=reg,
        )
        self.latency = Histogram(
            "ccsclip_request_latency_seconds",
            "Request latency (parsing, inference and response) by endpoint, profile, transport.",
            ["endpoint", "profile", "transport"],
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        self.batch_size = Histogram(
            "ccsclip_batch_size",
            "Images per image-tower call (one call per profile of a batch).",
            ["endpoint", "profile"],
            buckets=BATCH_BUCKETS,
            registry=reg,
        )
        self.probe_accuracy = Gauge(
            "ccsclip_probe_accuracy",
            "Zero-shot accuracy of a profile on an accuracy probe (last successful run).",
            ["profile", "probe"],
            multiprocess_mode="mostrecent",
            registry=reg,
        )
        self.probe_maxskew = Gauge(
            "ccsclip_probe_maxskew",
            "MaxSkew@k of a profile on a bias probe: mean over the probe's neutral queries.",
            ["profile", "probe", "attribute", "k"],
            multiprocess_mode="mostrecent",
            registry=reg,
        )
        self.probe_last_success = Gauge(
            "ccsclip_probe_last_success_timestamp_seconds",
            "Unix time of the last successful run of a probe with a profile.",
            ["profile", "probe"],
            multiprocess_mode="mostrecent",
            registry=reg,
        )
        self.probe_failures = Counter(
            "ccsclip_probe_failures_total",
            "Failed probe runs (logged; serving continues).",
            ["profile", "probe"],
            registry=reg,
        )
        self.probe_images = Counter(
            "ccsclip_probe_images_embedded_total",
            "Probe images embedded: `full` (a result computed, once per profile and probe file) "
            "or `canary` (the periodic re-check of a fixed subsample).",
            ["profile", "probe", "run"],
            registry=reg,
        )
        self.probe_drift = Gauge(
            "ccsclip_probe_drift_max_abs",
            "Canary: max |difference| between the subsample's embeddings now and when the stored "
            "result was computed (0 when the runtime reproduces it).",
            ["profile", "probe"],
            multiprocess_mode="mostrecent",
            registry=reg,
        )
        self.probe_top1_changed = Gauge(
            "ccsclip_probe_drift_top1_changed",
            "Canary: subsample images whose best class (or query) differs from the stored one.",
            ["profile", "probe"],
            multiprocess_mode="mostrecent",
            registry=reg,
        )
        # live bias on the traffic (service/live_bias.py)
        self.live_topk_items = Counter(
            "ccsclip_live_topk_items_total",
            "Gallery-search hits per value of a declared bias attribute, by serving profile.",
            ["profile", "gallery", "attribute", "value"],
            registry=reg,
        )
        self.live_share = Gauge(
            "ccsclip_live_gallery_share",
            "Share of a declared bias attribute's value among the gallery's items.",
            ["gallery", "attribute", "value"],
            multiprocess_mode="mostrecent",
            registry=reg,
        )
        self.live_maxskew_hist = Histogram(
            "ccsclip_live_maxskew",
            "MaxSkew@k of each gallery search's top k (k = hits returned) for a bias attribute.",
            ["profile", "gallery", "attribute"],
            buckets=MAXSKEW_BUCKETS,
            registry=reg,
        )
        self.live_excess = SignedFigure(
            "ccsclip_live_excess_maxskew",
            "Excess MaxSkew@k of gallery searches: observed minus the null (k random items)",
            ["profile", "gallery", "attribute"],
            reg,
        )
        self.live_null = Counter(
            "ccsclip_live_null_maxskew",
            "Sum over counted gallery searches of the null MaxSkew@k (expected for k items drawn "
            "at random from the gallery); over `ccsclip_live_maxskew_count`, the mean null.",
            ["profile", "gallery", "attribute"],
            registry=reg,
        )
        # shadow agreement with the bundle's baseline profile (service/shadow.py)
        self.shadow_top1 = SignedFigure(
            "ccsclip_shadow_top1_agreement",
            "Per image of a sampled zero-shot request: 1 if the served profile's top-1 label is "
            "the baseline profile's, else 0",
            ["profile"],
            reg,
        )
        self.shadow_cosine = SignedFigure(
            "ccsclip_shadow_embed_cosine",
            "Per image of a sampled embed_images request: cosine between the served profile's "
            "and the baseline profile's image embeddings",
            ["profile"],
            reg,
        )
        self.shadow_requests = Counter(
            "ccsclip_shadow_requests",
            "Requests with images served by a pruned profile: shadowed by the baseline "
            "(`sampled`), not sampled (`skipped`), or the shadow run raised (`failed`).",
            ["profile", "outcome"],
            registry=reg,
        )
        self.profile_info = Gauge(
            "ccsclip_profile_info",
            "One series per served profile (value 1): ablation mode, heads removed, arm.",
            ["profile", "mode", "heads_removed", "arm"],
            multiprocess_mode="max",
            registry=reg,
        )
        self.text_cache_hits = Counter(
            "ccsclip_text_cache_hits_total", "Text embeddings served from the cache.", registry=reg
        )
        self.text_cache_misses = Counter(
            "ccsclip_text_cache_misses_total", "Text embeddings computed.", registry=reg
        )
        self._cache_seen = {"hits": 0, "misses": 0}
        self._lock = threading.Lock()
        # the canary's CPU budget (service/probes.py)
        self.probe_canary_cpu_seconds = Counter(
            "ccsclip_probe_canary_cpu_seconds_total",
            "Process CPU seconds spent by probe canaries (rate() over a window: share of a core).",
            ["profile", "probe"],
            registry=reg,
        )

    def observe_request(
        self, endpoint: str, profile: str, transport: str, code: str, seconds: float
    ) -> None:
        self.requests.labels(endpoint, profile, transport, code).inc()
        self.latency.labels(endpoint, profile, transport).observe(seconds)

    def observe_batch(self, endpoint: str, profile: str, size: int) -> None:
        self.batch_size.labels(endpoint, profile).observe(size)

    def describe_profiles(self, profiles: Iterable[Any]) -> None:
        """`ccsclip_profile_info` for each served profile (engine ProfileInfo objects)."""
        for p in profiles:
            if p.available:
                self.profile_info.labels(p.name, p.mode, str(len(p.heads_removed)), p.arm).set(1)

    def sync_text_cache(self, info: Mapping[str, int]) -> None:
        """Advance the cache counters to the engine's totals (the engine counts; we export)."""
        with self._lock:
            for key, counter in (
                ("hits", self.text_cache_hits),
                ("misses", self.text_cache_misses),
            ):
                delta = int(info[key]) - self._cache_seen[key]
                if delta > 0:
                    counter.inc(delta)
                # a cleared cache restarts at 0: follow it down without counting backwards
                self._cache_seen[key] = int(info[key])

    def probe_declared(self, profile: str, probe: str) -> None:
        """Create the failure series at 0, so `increase()` sees the first failure."""
        self.probe_failures.labels(profile, probe).inc(0)

    def probe_failed(self, profile: str, probe: str) -> None:
        self.probe_failures.labels(profile, probe).inc()

    def live_topk(self, profile: str, gallery: str, attribute: str, value: str, n: int) -> None:
        self.live_topk_items.labels(profile, gallery, attribute, value).inc(n)

    def live_gallery_share(self, gallery: str, attribute: str, value: str, share: float) -> None:
        self.live_share.labels(gallery, attribute, value).set(share)

    def live_maxskew(
        self, profile: str, gallery: str, attribute: str, value: float, null: float
    ) -> None:
        """One counted search: its MaxSkew@k, its null, and their difference (the excess)."""
        self.live_maxskew_hist.labels(profile, gallery, attribute).observe(value)
        self.live_null.labels(profile, gallery, attribute).inc(max(null, 0.0))
        self.live_excess.observe((profile, gallery, attribute), value - null)

    def shadow_outcome(self, profile: str, outcome: str) -> None:
        self.shadow_requests.labels(profile, outcome).inc()

    def shadow_agreement(self, profile: str, agreed: Iterable[bool]) -> None:
        for same in agreed:
            self.shadow_top1.observe((profile,), 1.0 if same else 0.0)

    def shadow_cosines(self, profile: str, cosines: Iterable[float]) -> None:
        for value in cosines:
            self.shadow_cosine.observe((profile,), value)

    def probe_embedded(self, profile: str, probe: str, run: str, n: int) -> None:
        self.probe_images.labels(profile, probe, run).inc(n)

    def probe_canary(self, profile: str, probe: str, max_abs: float, top1_changed: int) -> None:
        self.probe_drift.labels(profile, probe).set(max_abs)
        self.probe_top1_changed.labels(profile, probe).set(top1_changed)

    def probe_succeeded(self, result: Mapping[str, Any], finished_at: float) -> None:
        """Gauges of one successful `run_probe` result (keys as ccsclip.engine.probes)."""
        profile, probe = result["profile"], result["probe"]
        if result["kind"] == "accuracy":
            self.probe_accuracy.labels(profile, probe).set(result["accuracy"])
        else:
            for key, row in result["maxskew"].items():
                attribute, _, k = key.rpartition("@")
                self.probe_maxskew.labels(profile, probe, attribute, k).set(row["mean"])
        self.probe_last_success.labels(profile, probe).set(finished_at)

    def probe_canary_cpu(self, profile: str, probe: str, seconds: float) -> None:
        self.probe_canary_cpu_seconds.labels(profile, probe).inc(max(0.0, seconds))


@functools.lru_cache(maxsize=1)
def get_metrics() -> Metrics:
    """The process's metrics, created on first use (after PROMETHEUS_MULTIPROC_DIR is set)."""
    return Metrics()
