"""Probe results baked into the bundle, and the canary held to a CPU budget.

A bundle exported with `--probe` carries each profile's full probe results (probe-results/,
hashed in the manifest): a real `bentoml serve` on it embeds nothing at start but the canary
(counted by `ccsclip_probe_images_embedded_total`), and `/v1/probes` says where each result came
from, what the canary found (drift) and spent (CPU), and MaxSkew's null. A baked file that no
longer matches the manifest is refused (logged), recomputed, and `bundle verify` reports it.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))
from engine_fixtures import DEFAULT, make_profiles  # noqa: E402
from service_fixtures import (  # noqa: E402
    PROBES,
    PROFILES,
    HttpClient,
    http_ready,
    make_world,
    metric_samples,
    start_http,
    wait_ready,
)

from ccsclip.bundle import PROBE_RESULTS_DIR, read_manifest, verify_files  # noqa: E402
from ccsclip.cli import app  # noqa: E402
from ccsclip.errors import NotFoundError  # noqa: E402
from ccsclip.export.bundle import check_bundle, export_bundle  # noqa: E402
from ccsclip.service.probes import canary_count  # noqa: E402

CANARY_MIN = 4


def per_pair(text: str, name: str, **match: str) -> dict[tuple[str, str], float]:
    return {
        (labels["profile"], labels["probe"]): value
        for labels, value in metric_samples(text, name)
        if all(labels.get(k) == v for k, v in match.items())
    }


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return make_world(tmp_path_factory.mktemp("probe-bake"))


@pytest.fixture(scope="module")
def baked(world) -> Path:
    """The world's two profiles exported with its three probes baked."""
    profiles = make_profiles(world.loaded, world.root / "baked-profiles")
    out = world.root / "baked-bundle"
    export_bundle(
        world.loaded, profiles, out, default_profile=DEFAULT, progress=False, bake=world.probe_dirs
    )
    return out


def serve_probes(world, root: Path, bundle: Path, name: str, **env: str) -> tuple[dict, str, str]:
    """`bentoml serve` (one worker) on `bundle` with an empty probe cache until its first probe
    round; returns /v1/probes, /metrics and the server's log."""
    extra = {
        "CCSCLIP_BUNDLE": str(bundle),
        "CCSCLIP_PROBE_CACHE_DIR": str(root / f"{name}-cache"),
        **env,
    }
    server = start_http(world, root, workers=1, name=name, extra=extra)
    try:
        wait_ready(server, http_ready)
        client = HttpClient(server)
        deadline = time.monotonic() + 300
        while int(client.probes().get("runs", 0)) < 1:
            assert time.monotonic() < deadline, server.log_tail()
            time.sleep(0.5)
        probes, text = client.probes(), client.metrics()
        client.close()
        return probes, text, server.log.read_text(errors="replace")
    finally:
        server.stop()
        assert server.survivors == []


def test_manifest_lists_every_baked_result(world, baked):
    manifest = read_manifest(baked)
    pairs = {(b.profile, b.probe) for b in manifest.probe_results}
    assert pairs == {(profile, probe) for profile in PROFILES for probe in PROBES}
    assert len(manifest.baked_files()) == 2 * len(pairs)
    assert verify_files(baked) == []
    result = CliRunner().invoke(app, ["bundle", "verify", str(baked), "--images", "1"])
    assert result.exit_code == 0, result.output
    assert f"{len(pairs)} baked probe results" in result.output


def test_server_on_baked_bundle_embeds_only_the_canary(world, baked, tmp_path):
    probes, text, _ = serve_probes(world, tmp_path, baked, "baked")
    pairs = {(profile, probe) for profile in PROFILES for probe in PROBES}
    full = per_pair(text, "ccsclip_probe_images_embedded_total", run="full")
    assert not any(full.values()), full
    canary = per_pair(text, "ccsclip_probe_images_embedded_total", run="canary")
    assert canary == {pair: CANARY_MIN for pair in pairs}  # first round: no cost measured yet
    assert not list((tmp_path / "baked-cache").glob("*.json"))  # nothing computed, nothing stored
    results = probes["results"]
    assert {r["source"] for r in results} == {"baked"}
    for r in results:
        assert r["ok"] and r["canary"]["images"] == CANARY_MIN
        assert r["canary"]["max_abs"] < 1e-4 and r["canary"]["top1_changed"] == 0
        if r["kind"] == "accuracy":
            assert r["canary"]["accuracy"] == r["canary"]["reference_accuracy"]
        else:
            assert r["maxskew"] and all(row["null_mean"] is not None for row in r["maxskew"])
    budget = probes["budget"]
    assert budget["cpu_budget"] == pytest.approx(0.02) and budget["canary_min"] == CANARY_MIN
    assert budget["rounds"] == 1 and budget["canary_cpu_s"] > 0
    assert budget["full_cpu_s_total"] == 0
    assert 0 < budget["share_of_core"] < 1
    spent = per_pair(text, "ccsclip_probe_canary_cpu_seconds_total")
    assert set(spent) == pairs and all(v > 0 for v in spent.values())


def test_tampered_baked_result_is_refused_and_recomputed(world, baked, tmp_path):
    bundle = tmp_path / "bundle"
    shutil.copytree(baked, bundle)
    manifest = read_manifest(bundle)
    target = next(b for b in manifest.probe_results if b.profile == "pruned")
    path = bundle / PROBE_RESULTS_DIR / f"{target.key}.json"
    data = json.loads(path.read_text())
    data["result"]["accuracy" if "accuracy" in data["result"] else "n_images"] = 0
    path.write_text(json.dumps(data))  # valid, but not what the manifest hashed

    problems = verify_files(bundle)
    assert len(problems) == 1 and f"{PROBE_RESULTS_DIR}/{target.key}.json" in problems[0]
    report = check_bundle(bundle)
    assert any(target.key in p for p in report.problems), report.problems
    result = CliRunner().invoke(app, ["bundle", "verify", str(bundle), "--images", "1"])
    assert result.exit_code == 2 and target.key in result.output, result.output

    probes, text, log = serve_probes(world, tmp_path, bundle, "tampered")
    assert "refused" in log and target.key in log
    pair = (target.profile, target.probe)
    full = per_pair(text, "ccsclip_probe_images_embedded_total", run="full")
    assert {p for p, n in full.items() if n} == {pair}
    by_pair = {(r["profile"], r["probe"]): r for r in probes["results"]}
    assert by_pair[pair]["source"] == "computed"
    assert by_pair[pair]["n_images"] == full[pair]
    assert {r["source"] for p, r in by_pair.items() if p != pair} == {"baked"}
    assert probes["budget"]["full_cpu_s_total"] > 0


def test_bundle_without_baked_results_computes_as_before(world, tmp_path):
    probes, text, _ = serve_probes(world, tmp_path, world.bundle, "plain")
    assert read_manifest(world.bundle).probe_results == []
    full = per_pair(text, "ccsclip_probe_images_embedded_total", run="full")
    assert full and all(n > 0 for n in full.values())
    assert {r["source"] for r in probes["results"]} == {"computed"}
    assert len(list((tmp_path / "plain-cache").glob("*.json"))) == len(full)


def test_canary_size_follows_the_budget(world, baked, tmp_path):
    """Tiny budget: the minimum every round; large: the whole probe once the cost is measured."""
    from prometheus_client import CollectorRegistry

    from ccsclip.engine.engine import Engine
    from ccsclip.service.metrics import Metrics
    from ccsclip.service.probe_cache import ProbeCache
    from ccsclip.service.probes import ProbeRunner

    engine = Engine.load(baked, intra_op_threads=1)
    seen = {}
    for budget in (1e-9, 8.0):
        runner = ProbeRunner(
            engine,
            world.probe_dirs,
            Metrics(CollectorRegistry()),
            interval_s=1.0,
            cache=ProbeCache(tmp_path / "cache"),
            cpu_budget=budget,
            canary_min=CANARY_MIN,
        )
        for _ in range(3):
            runner.run_once()
        response = runner.response()
        seen[budget] = {
            (r.profile, r.probe): (r.canary.images, r.n_images) for r in response.results
        }
        assert response.budget.rounds == 3 and response.budget.canary_cpu_s > 0
    assert all(images == CANARY_MIN for images, _ in seen[1e-9].values())
    assert all(images == n for images, n in seen[8.0].values())


def test_canary_count_clamps():
    assert canary_count(0.02, 300, 6, None, 4, 100) == 4  # no cost measured yet
    assert canary_count(0.02, 300, 6, 0.05, 4, 100) == 20  # 6 s / 6 pairs / 0.05 s
    assert canary_count(0.02, 300, 6, 10.0, 4, 100) == 4  # the floor
    assert canary_count(0.02, 300, 6, 1e-6, 4, 100) == 100  # the probe's size
    assert canary_count(0.02, 300, 6, 1.0, 4, 3) == 3  # a probe smaller than the floor
    assert canary_count(0.02, 0, 6, 0.05, 4, 100) == 4  # probes run once


def test_bake_refuses_a_missing_probe_before_writing(world, tmp_path):
    profiles = make_profiles(world.loaded, tmp_path / "profiles")
    with pytest.raises(NotFoundError, match="does not exist"):
        export_bundle(
            world.loaded, profiles, tmp_path / "b", progress=False, bake=[tmp_path / "nope"]
        )
    assert not (tmp_path / "b").exists()
