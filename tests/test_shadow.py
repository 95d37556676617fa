"""Shadow agreement with the full model, on real servers: a pruned profile's requests are also
run by the baseline profile, and the agreement figures match what the two profiles answer when
asked directly (HTTP, two workers: the series are merged; gRPC: the default registry)."""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from service_fixtures import (  # noqa: E402
    DEFAULT,
    PRUNED,
    GrpcClient,
    HttpClient,
    grpc_ready,
    http_ready,
    make_world,
    metric_samples,
    start_grpc,
    start_http,
    wait_ready,
)

from ccsclip.service.shadow import baseline_of, cosines, same_top1  # noqa: E402

LABELS = ["circle", "square", "triangle", "cross"]
PARTS = ("observations", "positive", "negative", "squares")


def figure(text: str, name: str, profile: str) -> dict[str, float]:
    out = {}
    for part in PARTS:
        found = [v for lab, v in metric_samples(text, f"{name}_{part}_total") if lab == {
            "profile": profile}]  # fmt: skip
        out[part] = found[0] if found else 0.0
    return out


def outcomes(text: str, profile: str) -> dict[str, float]:
    return {
        lab["outcome"]: v
        for lab, v in metric_samples(text, "ccsclip_shadow_requests_total")
        if lab["profile"] == profile
    }


def wait_for(scrape, done, timeout: float = 60.0) -> str:
    """Shadow runs finish after the response: scrape until `done(text)`."""
    deadline = time.monotonic() + timeout
    while True:
        text = scrape()
        if done(text) or time.monotonic() > deadline:
            return text
        time.sleep(0.3)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return make_world(tmp_path_factory.mktemp("shadow"))


def test_the_baseline_is_the_full_profile():
    def profile(name, heads=(), arm="manual", precision="fp32", quantize=None, base=None):
        return SimpleNamespace(
            name=name, heads_removed=list(heads), arm=arm, precision=precision,
            quantize=quantize, base_profile=base,
        )  # fmt: skip

    demo = [
        profile("high-ccs", ["L0H1"], "high-ccs"),
        profile("baseline-int8", arm="baseline", quantize="int8", base="baseline"),
        profile("full", arm="baseline"),
        profile("other-full"),
    ]
    assert baseline_of(demo, "high-ccs") == "full"
    assert baseline_of(demo, "other-full") == "other-full"
    assert baseline_of(demo[:2], "high-ccs") is None
    a = np.array([[1.0, 0.0], [0.0, 2.0]], dtype=np.float32)
    assert cosines(a, np.array([[1.0, 1.0], [0.0, -1.0]])) == pytest.approx([0.5**0.5, -1.0])
    classes = np.eye(2)
    assert same_top1(a, np.array([[2.0, 1.0], [1.0, 0.0]]), classes) == [True, False]


def _images(world, n: int) -> list[bytes]:
    paths = sorted((world.world / "accuracy-shape").rglob("*.png"))[:n]
    assert len(paths) == n
    return [p.read_bytes() for p in paths]


def _hand_agreement(client, images: list[bytes]) -> tuple[list[float], list[float]]:
    """Per image: top-1 agreement and embedding cosine of the pruned and baseline profiles,
    asked directly."""
    top = {
        p: [r["top"][0]["label"] for r in client.zero_shot(images, LABELS, profile=p)["results"]]
        for p in (PRUNED, DEFAULT)
    }
    agree = [float(a == b) for a, b in zip(top[PRUNED], top[DEFAULT], strict=True)]
    emb = {
        p: np.array([e["values"] for e in client.embed_images([(i, p) for i in images])])
        for p in (PRUNED, DEFAULT)
    }
    return agree, cosines(emb[PRUNED], emb[DEFAULT])


def sums(values: list[float]) -> dict[str, float]:
    return {
        "observations": len(values),
        "positive": sum(max(v, 0.0) for v in values),
        "negative": sum(max(-v, 0.0) for v in values),
        "squares": sum(v * v for v in values),
    }


def test_shadow_figures_on_http_at_rate_one(world, tmp_path):
    """Every pruned request is shadowed: zero-shot agreement is 0/1 per image and equals the
    two profiles' own answers; the cosine equals the one of their embeddings; requests served
    by the baseline record nothing."""
    images = _images(world, 5)
    server = start_http(world, tmp_path, workers=2, extra={"CCSCLIP_SHADOW_RATE": "1.0"})
    try:
        wait_ready(server, http_ready)
        client = HttpClient(server)
        agree, cos = _hand_agreement(client, images)  # 2 pruned requests shadowed
        text = wait_for(client.metrics, lambda t: outcomes(t, PRUNED).get("sampled") == 2)
        assert outcomes(text, PRUNED) == {"sampled": 2.0}
        assert outcomes(text, DEFAULT) == {}
        top1 = figure(text, "ccsclip_shadow_top1_agreement", PRUNED)
        assert top1 == pytest.approx(sums(agree))
        assert top1["positive"] == top1["squares"] and top1["negative"] == 0  # 0/1 values
        cosine = figure(text, "ccsclip_shadow_embed_cosine", PRUNED)
        assert cosine == pytest.approx(sums(cos), abs=1e-4)
        assert all(-1 <= c <= 1 for c in cos) and cosine["observations"] == len(images)
        mean = (cosine["positive"] - cosine["negative"]) / cosine["observations"]
        assert -1 <= mean <= 1
        assert figure(text, "ccsclip_shadow_top1_agreement", DEFAULT)["observations"] == 0
        assert figure(text, "ccsclip_shadow_embed_cosine", DEFAULT)["observations"] == 0
        client.close()
    finally:
        server.stop()
        assert server.survivors == []


def test_shadow_sampling_over_grpc(world, tmp_path):
    """At rate 0.5 (seeded) some pruned requests are shadowed and the others skipped; the
    figures count only the shadowed ones' images, in the gRPC server's registry."""
    images = _images(world, 2)
    extra = {"CCSCLIP_SHADOW_RATE": "0.5", "CCSCLIP_SHADOW_SEED": "3"}
    server = start_grpc(world, tmp_path, extra=extra)
    try:
        wait_ready(server, grpc_ready)
        client = GrpcClient(server)
        import httpx

        def scrape() -> str:
            return httpx.get(client.metrics_url, timeout=30).text

        requests = 12
        for _ in range(requests):
            client.embed_images([(i, PRUNED) for i in images])
        client.zero_shot(images, LABELS, profile=DEFAULT)  # the baseline: nothing recorded

        def settled(text: str) -> bool:
            seen = outcomes(text, PRUNED)
            return seen.get("sampled", 0) + seen.get("skipped", 0) == requests

        text = wait_for(scrape, settled)
        seen = outcomes(text, PRUNED)
        assert seen.get("sampled", 0) + seen.get("skipped", 0) == requests, seen
        assert seen.get("sampled", 0) > 0 and seen.get("skipped", 0) > 0, seen
        assert "failed" not in seen and outcomes(text, DEFAULT) == {}
        cosine = figure(text, "ccsclip_shadow_embed_cosine", PRUNED)
        assert cosine["observations"] == len(images) * seen["sampled"]
        mean = (cosine["positive"] - cosine["negative"]) / cosine["observations"]
        variance = cosine["squares"] / cosine["observations"] - mean**2
        assert -1 <= mean <= 1 and variance >= -1e-9 and math.isfinite(variance)
        client.channel.close()
    finally:
        server.stop()
        assert server.survivors == []


def test_a_failing_shadow_run_is_counted_and_never_raises():
    """The shadow run raises (here: the baseline embedding fails): the request's call returns,
    the outcome is `failed`, no figure is recorded; at rate 0 every request is `skipped`."""
    from prometheus_client import CollectorRegistry, generate_latest

    from ccsclip.service.metrics import Metrics
    from ccsclip.service.shadow import ShadowSampler

    def broken(profile: str, pixels: np.ndarray) -> np.ndarray:
        raise RuntimeError("the baseline session is gone")

    registry = CollectorRegistry()
    metrics = Metrics(registry)
    pixels, served = np.zeros((3, 3, 4, 4), np.float32), np.ones((3, 8), np.float32)
    failing = ShadowSampler(broken, DEFAULT, 1.0, metrics)
    failing.observe(PRUNED, pixels, served)
    failing.observe(DEFAULT, pixels, served)  # the baseline itself: nothing
    failing.drain()
    off = ShadowSampler(broken, DEFAULT, 0.0, metrics)
    off.observe(PRUNED, pixels, served, classes=np.eye(8, dtype=np.float32)[:2])
    text = generate_latest(registry).decode()
    assert outcomes(text, PRUNED) == {"failed": 1.0, "skipped": 1.0}
    assert outcomes(text, DEFAULT) == {}
    assert figure(text, "ccsclip_shadow_embed_cosine", PRUNED)["observations"] == 0
