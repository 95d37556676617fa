"""`ccsclip ab judge` end to end against real exporters read through their /metrics pages.

Two real prometheus_client HTTP servers (tests/ab_exporter.py, one subprocess each) expose the
counter contract with known values; the CLI runs as a subprocess, so every exit code (0 promote,
1 roll back, 3 keep collecting, 2 bad input) is the one a shell or a Kubernetes Job sees.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from ab_exporter import moments, running_exporter

from ccsclip.ab.verdict import JudgeResult

SKEW = "ccsclip_live_excess_maxskew"
AGREE = "ccsclip_shadow_top1_agreement"
COSINE = "ccsclip_shadow_embed_cosine"

rng = np.random.default_rng(5)


def skew(profile: str, gallery: str, mean: float, n: int) -> dict:
    labels = {"profile": profile, "gallery": gallery, "attribute": "colour"}
    return moments(SKEW, labels, rng.normal(mean, 0.2, n))


def shadow(profile: str, agreement: float, cosine: float, n: int) -> list[dict]:
    return [
        moments(AGREE, {"profile": profile}, (rng.random(n) < agreement).astype(float)),
        moments(COSINE, {"profile": profile}, np.clip(rng.normal(cosine, 0.01, n), -1, 1)),
    ]


# The control (full model, no shadow series) on one server, candidates on the other.
CONTROL = [skew("baseline", "live-a", 0.10, 2000), skew("baseline", "live-b", 0.10, 1500)]
CANDIDATES = [
    skew("good", "live-a", 0.10, 3000),
    *shadow("good", 0.995, 0.98, 3000),
    skew("biased", "live-a", 0.45, 3000),
    *shadow("biased", 0.995, 0.98, 3000),
    skew("young", "live-a", 0.10, 50),
    *shadow("young", 0.995, 0.98, 50),
]


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    root = tmp_path_factory.mktemp("exporters")
    with (
        running_exporter({"series": CONTROL}, root / "control") as control,
        running_exporter({"series": CANDIDATES}, root / "candidates") as candidates,
    ):
        yield f"{control}/metrics", f"{candidates}/metrics"


def judge(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ccsclip.cli", "ab", "judge", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200"},  # one table row per line
    )


def judge_pages(servers, control: str, candidate: str, *extra: str):
    urls = [arg for url in servers for arg in ("--metrics-url", url)]
    return judge(*urls, "--control", control, "--candidate", candidate, *extra)


def test_promote_exit_0_and_the_table(servers):
    proc = judge_pages(servers, '{profile="baseline"}', '{profile="good"}')
    assert proc.returncode == 0, proc.stdout + proc.stderr
    table = proc.stdout
    for text in ("excess MaxSkew@k", "top-1 agreement", "embedding cosine", "full model"):
        assert text in table
    assert "decision: promote (exit 0)" in table
    assert table.count("pass") >= 3


def test_roll_back_exit_1(servers):
    proc = judge_pages(servers, '{profile="baseline"}', '{profile="biased"}')
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "decision: roll back" in proc.stdout


def test_keep_collecting_exit_3_below_the_minimum_sample(servers):
    proc = judge_pages(servers, '{profile="baseline"}', '{profile="young"}')
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "below the minimum sample" in proc.stdout
    fewer = judge_pages(servers, '{profile="baseline"}', '{profile="young"}', "--min-samples", "20")
    assert fewer.returncode != 3 or "below the minimum" not in fewer.stdout


def test_json_carries_the_exact_sums(servers):
    proc = judge_pages(servers, '{profile="baseline"}', '{profile="good"}', "--json")
    assert proc.returncode == 0, proc.stderr
    result = JudgeResult.model_validate(json.loads(proc.stdout))
    by_key = {f.figure: f for f in result.figures}
    skew_figure = by_key["excess_maxskew"]
    # the control's two gallery series, summed
    assert skew_figure.control.n == 3500
    expected = (CONTROL[0]["positive"] - CONTROL[0]["negative"]) + (
        CONTROL[1]["positive"] - CONTROL[1]["negative"]
    )
    assert skew_figure.control.mean == pytest.approx(expected / 3500, rel=1e-9)
    assert skew_figure.candidate.n == 3000
    assert by_key["top1_agreement"].control.full_model
    assert result.decision == "promote" and result.exit_code == 0
    assert all(f.alpha == pytest.approx(0.05 / 3) for f in result.figures)


def test_instance_selects_a_server(servers):
    control_host = servers[0].split("/")[2]
    proc = judge_pages(
        servers,
        f'{{instance="{control_host}"}}',
        '{profile="good", gallery="live-a"}',
        "--figure",
        "excess_maxskew",
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    (figure,) = JudgeResult.model_validate(json.loads(proc.stdout)).figures
    assert figure.control.n == 3500


def test_a_selector_that_matches_nothing_exit_2(servers):
    proc = judge_pages(servers, '{profile="baseline"}', '{profile="nope"}')
    assert proc.returncode == 2
    assert 'candidate selector {profile="nope"} matches no series' in proc.stderr


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["--control", "profile=baseline"], "expected '{'"),
        (["--window", "2h"], "apply to --prometheus only"),
        (["--figure", "latency"], "unknown --figure"),
        (["--full-model", "candidates"], "--full-model"),
        (["--alpha", "1.5"], "--alpha"),
    ],
)
def test_bad_input_exit_2(servers, args, complaint):
    base = {"--control": '{profile="baseline"}', "--candidate": '{profile="good"}'}
    flags = dict(zip(args[::2], args[1::2], strict=True))
    merged = [x for key, value in {**base, **flags}.items() for x in (key, value)]
    proc = judge("--metrics-url", servers[0], *merged)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert complaint in proc.stderr
    assert "Traceback" not in proc.stderr


def test_unreachable_server_exit_2(tmp_path):
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    for flag in ("--metrics-url", "--prometheus"):
        url = f"http://127.0.0.1:{port}" + ("/metrics" if flag == "--metrics-url" else "")
        proc = judge(flag, url, "--control", '{profile="a"}', "--candidate", '{profile="b"}')
        assert proc.returncode == 2, proc.stderr
        assert "cannot re" in proc.stderr and str(port) in proc.stderr
        assert "Traceback" not in proc.stderr


def test_no_source_or_both_sources_exit_2(servers):
    arms = ["--control", '{profile="baseline"}', "--candidate", '{profile="good"}']
    assert judge(*arms).returncode == 2
    both = judge("--metrics-url", servers[0], "--prometheus", "http://127.0.0.1:1", *arms)
    assert both.returncode == 2 and "either --prometheus" in both.stderr


def test_watch_mode_gives_up_at_the_deadline_with_exit_3(servers):
    proc = judge_pages(
        servers, '{profile="baseline"}', '{profile="young"}', "--every", "1s", "--deadline", "3s"
    )
    assert proc.returncode == 3
    assert proc.stderr.count("keep collecting; next look") >= 1


def test_watch_mode_stops_at_the_first_decision(servers):
    proc = judge_pages(
        servers, '{profile="baseline"}', '{profile="good"}', "--every", "1h", "--deadline", "2h"
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr  # did not sleep an hour
    assert "next look" not in proc.stderr
    assert (
        "--deadline needs --every"
        in judge_pages(
            servers, '{profile="baseline"}', '{profile="good"}', "--deadline", "2h"
        ).stderr
    )
