"""`ccsclip ab judge --prometheus` against a real Prometheus server scraping real exporters.

Prometheus (Debian package `prometheus`, /usr/bin/prometheus; .ci/run installs it through
scripts/image/install-tools.sh) scrapes two exporters of the counter contract
(tests/ab_exporter.py) every 200 ms under two jobs, `stable` and `canary`. The exporters hold
their series at 0 until Prometheus has scraped them and then jump, as counters grow in service,
so that `increase()` over the window sees the whole sum. Without the binary these tests skip,
unless CI is set: then they fail.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time

import httpx
import numpy as np
import pytest
from ab_exporter import moments, running_exporter

from ccsclip.ab.verdict import JudgeResult

SKEW = "ccsclip_live_excess_maxskew"
AGREE = "ccsclip_shadow_top1_agreement"


def find_prometheus() -> str:
    found = shutil.which("prometheus") or (
        "/usr/bin/prometheus" if os.path.exists("/usr/bin/prometheus") else None
    )
    if found:
        return found
    if os.environ.get("CI"):
        pytest.fail("prometheus is not installed, and CI is set (apt-get install prometheus)")
    pytest.skip("prometheus is not installed (apt-get install prometheus; CI makes this fail)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


rng = np.random.default_rng(9)
STABLE = [
    moments(SKEW, {"profile": "baseline", "gallery": "g", "attribute": "colour"},
            rng.normal(0.1, 0.2, 1200)),
]  # fmt: skip
CANARY = [
    moments(SKEW, {"profile": "good", "gallery": "g", "attribute": "colour"},
            rng.normal(0.1, 0.2, 1000)),
    moments(AGREE, {"profile": "good"}, (rng.random(1000) < 0.995).astype(float)),
    moments(SKEW, {"profile": "biased", "gallery": "g", "attribute": "colour"},
            rng.normal(0.5, 0.2, 1000)),
    moments(AGREE, {"profile": "biased"}, (rng.random(1000) < 0.995).astype(float)),
]  # fmt: skip


def wait_for(check, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory):
    binary = find_prometheus()
    root = tmp_path_factory.mktemp("prometheus")
    go = root / "go"
    with (
        running_exporter({"series": STABLE, "hold_until": str(go)}, root / "stable") as stable,
        running_exporter({"series": CANARY, "hold_until": str(go)}, root / "canary") as canary,
    ):
        jobs = {"stable": stable, "canary": canary}
        config = {
            "global": {"scrape_interval": "200ms", "scrape_timeout": "150ms"},
            "scrape_configs": [
                {"job_name": job, "static_configs": [{"targets": [url.split("//")[1]]}]}
                for job, url in jobs.items()
            ],
        }
        (root / "prometheus.yml").write_text(json.dumps(config))  # JSON is YAML
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        log = (root / "prometheus.log").open("w")
        proc = subprocess.Popen(
            [
                binary,
                f"--config.file={root / 'prometheus.yml'}",
                f"--storage.tsdb.path={root / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        started = time.time()
        try:
            wait_for(lambda: httpx.get(f"{url}/-/ready").status_code == 200, 60, "Prometheus")

            def observations(aggregate: str) -> float | None:
                query = f"{aggregate}({SKEW}_observations_total)"
                reply = httpx.get(f"{url}/api/v1/query", params={"query": query}).json()
                result = reply["data"]["result"]
                return float(result[0]["value"][1]) if result else None

            wait_for(lambda: observations("count") == 3, 60, "the first scrapes (zeros)")
            time.sleep(0.5)
            go.touch()
            wait_for(lambda: observations("sum") == 3200, 60, "the scrapes after the jump")
            time.sleep(1.0)  # a few more scrapes at the final values
            yield url, started
        finally:
            proc.terminate()
            proc.wait(timeout=30)
            log.close()


def judge(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ccsclip.cli", "ab", "judge", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200"},
    )


def test_promotes_the_good_canary_with_the_exact_means(prometheus):
    url, _ = prometheus
    proc = judge(
        "--prometheus", url, "--window", "10m", "--json",
        "--control", '{job="stable"}', "--candidate", '{job="canary", profile="good"}',
        "--figure", "excess_maxskew", "--figure", "top1_agreement",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = JudgeResult.model_validate(json.loads(proc.stdout))
    skew, agree = result.figures
    expected_mean = (STABLE[0]["positive"] - STABLE[0]["negative"]) / 1200
    # increase() extrapolates to the window's end, scaling all four sums alike: n grows a
    # little, the mean stays exact.
    assert skew.control.mean == pytest.approx(expected_mean, rel=1e-6)
    assert 1200 <= skew.control.n <= 1200 * 1.25
    assert agree.control.full_model and agree.verdict == "pass"
    assert result.source.startswith(f"Prometheus {url}")


def test_rolls_back_the_biased_canary(prometheus):
    url, _ = prometheus
    proc = judge(
        "--prometheus", url, "--window", "10m",
        "--control", '{job="stable"}', "--candidate", '{profile="biased"}',
        "--figure", "excess_maxskew", "--figure", "top1_agreement",
    )  # fmt: skip
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "decision: roll back" in proc.stdout


def test_a_window_before_the_experiment_keeps_collecting_or_finds_nothing(prometheus):
    url, started = prometheus
    # The window ending before the jump: the series exist but have not grown: n = 0.
    proc = judge(
        "--prometheus", url, "--since", f"{started - 60:.0f}", "--until", f"{started + 1:.0f}",
        "--control", '{job="stable"}', "--candidate", '{profile="good"}',
        "--figure", "excess_maxskew",
    )  # fmt: skip
    assert proc.returncode in {2, 3}, proc.stdout + proc.stderr
    if proc.returncode == 3:
        assert "below the minimum sample" in proc.stdout
    else:
        assert "matches no series" in proc.stderr


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["--window", "2x"], "bad duration"),
        (["--window", "0s"], "bad duration"),
        (["--since", "yesterday"], "bad time"),
        (["--since", "2030-01-01T00:00:00Z", "--until", "2029-01-01T00:00:00Z"], "not before"),
        (["--window", "1h", "--since", "2030-01-01T00:00:00Z"], "either --window or --since"),
        (["--candidate", '{profile="nope"}'], "matches no series"),
        (["--candidate", '{profile=~"("}'], "bad regular expression"),
    ],
)
def test_bad_input_exit_2(prometheus, args, complaint):
    url, _ = prometheus
    base = {"--control": '{job="stable"}', "--candidate": '{profile="good"}'}
    flags = dict(zip(args[::2], args[1::2], strict=True))
    merged = [x for key, value in {**base, **flags}.items() for x in (key, value)]
    proc = judge("--prometheus", url, *merged)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert complaint in proc.stderr
    assert "Traceback" not in proc.stderr


def test_not_a_prometheus_exit_2(prometheus, tmp_path):
    url, _ = prometheus
    with running_exporter({"series": STABLE}, tmp_path / "exporter") as exporter:
        proc = judge("--prometheus", exporter, "--control", '{job="a"}', "--candidate", '{job="b"}')
    assert proc.returncode == 2
    assert "without Prometheus JSON" in proc.stderr or "Prometheus" in proc.stderr
