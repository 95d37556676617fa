"""Probes at production cost, with real gRPC servers (`ccsclip serve-grpc`) on one probe cache.

The first server computes every probe's full result once and stores it; the next ones serve the
same gauges from the store and only re-embed the canary subsample (counted by
`ccsclip_probe_images_embedded_total`); a stored reference that no longer matches what the
profile computes (a tampered entry, consistent hashes) raises the drift gauges; a corrupt entry
(its .npy no longer matches its hash) is recomputed.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from service_fixtures import (  # noqa: E402
    PROBES,
    PROFILES,
    GrpcClient,
    grpc_ready,
    make_world,
    metric_samples,
    start_grpc,
    wait_ready,
)

from ccsclip.service.probe_cache import ProbeCache  # noqa: E402

CANARY = 4


def per_pair(text: str, name: str, **match: str) -> dict[tuple[str, str], float]:
    """{(profile, probe): value} of a metric's samples whose labels include `match`."""
    return {
        (labels["profile"], labels["probe"]): value
        for labels, value in metric_samples(text, name)
        if all(labels.get(k) == v for k, v in match.items())
    }


def probe_gauges(text: str) -> dict:
    return {
        "accuracy": per_pair(text, "ccsclip_probe_accuracy"),
        "maxskew": sorted(map(str, metric_samples(text, "ccsclip_probe_maxskew"))),
    }


def run_server(world, root: Path, name: str, rounds: int = 1, interval: str = "3600") -> str:
    """Start a gRPC server, wait for `rounds` probe rounds, return its /metrics, stop it."""
    extra = {"CCSCLIP_PROBE_CANARY_SIZE": str(CANARY), "CCSCLIP_PROBE_INTERVAL_S": interval}
    server = start_grpc(world, root, name=name, extra=extra)
    try:
        wait_ready(server, grpc_ready)
        client = GrpcClient(server)
        deadline = time.monotonic() + 300
        while int(client.probes().get("runs", 0)) < rounds:
            assert time.monotonic() < deadline, server.log_tail()
            time.sleep(0.5)
        results = client.probes()["results"]
        assert all(r["ok"] for r in results), results
        text = client.metrics()
        client.close()
        return text
    finally:
        server.stop()
        assert server.survivors == []


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return make_world(tmp_path_factory.mktemp("probe-cache"))


def test_full_results_once_then_canary_and_drift(world, tmp_path):
    pairs = {(profile, probe) for profile in PROFILES for probe in PROBES}
    first = run_server(world, tmp_path, "first")
    full = per_pair(first, "ccsclip_probe_images_embedded_total", run="full")
    assert set(full) == pairs and all(n > CANARY for n in full.values()), full
    assert not any(per_pair(first, "ccsclip_probe_images_embedded_total", run="canary").values())
    cache = ProbeCache(Path(world.env()["CCSCLIP_PROBE_CACHE_DIR"]))
    assert len(list(cache.root.glob("*.json"))) == len(pairs)

    # a restart: the same gauges from the store, only the canary re-embedded, no drift
    second = run_server(world, tmp_path, "second")
    assert probe_gauges(second) == probe_gauges(first)
    assert not any(per_pair(second, "ccsclip_probe_images_embedded_total", run="full").values())
    canary = per_pair(second, "ccsclip_probe_images_embedded_total", run="canary")
    assert canary == {pair: CANARY for pair in pairs}
    drift = per_pair(second, "ccsclip_probe_drift_max_abs")
    assert set(drift) == pairs and max(drift.values()) < 1e-4, drift
    assert not any(per_pair(second, "ccsclip_probe_drift_top1_changed").values())

    # tamper: one entry's reference moved (hashes rewritten: the store accepts it), another's
    # .npy corrupted (its hash no longer matches: recomputed, not trusted)
    entries = {}
    for meta in sorted(cache.root.glob("*.json")):
        data = json.loads(meta.read_text())
        entries[(data["result"]["profile"], data["result"]["probe"])] = (meta.stem, data)
    drifted, corrupt = ("pruned", "accuracy-shape"), ("baseline", "bias-shape-colour")
    key, data = entries[drifted]
    entry = cache.load(key, data["profile_sha256"], data["probe_sha256"])
    assert entry is not None
    entry.reference = entry.reference + 0.25
    entry.top1 = (entry.top1 + 1) % 2
    cache.store(key, data["profile_sha256"], data["probe_sha256"], entry)
    key, _ = entries[corrupt]
    raw = bytearray((cache.root / f"{key}.npy").read_bytes())
    raw[-1] ^= 0xFF
    (cache.root / f"{key}.npy").write_bytes(bytes(raw))

    # a short interval: several canary rounds, never a full one except for the corrupt entry
    third = run_server(world, tmp_path, "third", rounds=3, interval="1")
    drift = per_pair(third, "ccsclip_probe_drift_max_abs")
    changed = per_pair(third, "ccsclip_probe_drift_top1_changed")
    assert drift[drifted] == pytest.approx(0.25, abs=1e-3)
    assert changed[drifted] == CANARY
    others = {pair: v for pair, v in drift.items() if pair != drifted}
    assert max(others.values()) < 1e-4, others
    full = per_pair(third, "ccsclip_probe_images_embedded_total", run="full")
    assert {pair for pair, n in full.items() if n} == {corrupt}
    assert (
        full[corrupt] == per_pair(first, "ccsclip_probe_images_embedded_total", run="full")[corrupt]
    )
    canary = per_pair(third, "ccsclip_probe_images_embedded_total", run="canary")
    assert all(canary[pair] >= 2 * CANARY for pair in pairs - {corrupt}), canary
    assert probe_gauges(third) == probe_gauges(first)  # the stored results, unchanged
    assert np.isfinite(list(drift.values())).all()
