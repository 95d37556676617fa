"""The shipped Prometheus rules (deploy/prometheus/, k8s PrometheusRule) and the dashboard panels
beside them, checked with the real `promtool` (Debian package `prometheus`).

Without promtool these tests skip, unless CI is set: then they fail (.ci/run installs it through
scripts/image/install-tools.sh).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from k8s_helpers import (  # noqa: E402
    BASE,
    contract_series_names,
    dashboard_exprs,
    iter_panels,
    load_dashboard,
    promql_metric_names,
)

REPO = Path(__file__).resolve().parents[1]
RULES = REPO / "deploy" / "prometheus" / "ccsclip-rules.yaml"
RULE_TESTS = REPO / "deploy" / "prometheus" / "ccsclip-rules.test.yaml"
OPERATOR_RULE = BASE / "shared" / "prometheusrule.yaml"
ALERTS = {
    "CcsclipProbeDrift",
    "CcsclipProbeFailing",
    "CcsclipProbeStale",
    "CcsclipShedding",
    "CcsclipLiveExcessSkew",
}


@pytest.fixture(scope="module")
def promtool() -> str:
    found = shutil.which("promtool")
    if found:
        return found
    if os.environ.get("CI"):
        pytest.fail("promtool is not installed, and CI is set (apt-get install prometheus)")
    pytest.skip("promtool is not installed (apt-get install prometheus; CI makes this a failure)")


def run(promtool: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([promtool, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def rules_of(data: dict) -> list[dict]:
    return [rule for group in data["groups"] for rule in group["rules"]]


def test_promtool_checks_the_rules(promtool):
    proc = run(promtool, "check", "rules", str(RULES), cwd=REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_promtool_unit_tests_of_the_alerts_pass(promtool):
    proc = run(promtool, "test", "rules", RULE_TESTS.name, cwd=RULE_TESTS.parent)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    tested = yaml.safe_load(RULE_TESTS.read_text())
    alerted = {
        case["alertname"] for test in tested["tests"] for case in test.get("alert_rule_test", [])
    }
    assert alerted == ALERTS  # every alert has a unit test


def test_a_wrong_threshold_fails_the_unit_tests(promtool, tmp_path):
    """The unit tests are sharp: shedding at 50 % instead of 5 % is caught."""
    text = RULES.read_text()
    assert text.count("> 0.05") == 1
    (tmp_path / RULES.name).write_text(text.replace("> 0.05", "> 0.5"))
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    proc = run(promtool, "test", "rules", RULE_TESTS.name, cwd=tmp_path)
    assert proc.returncode != 0
    assert "CcsclipShedding" in proc.stdout + proc.stderr


def test_the_prometheusrule_carries_the_same_groups():
    operator = yaml.safe_load(OPERATOR_RULE.read_text())
    assert operator["kind"] == "PrometheusRule"
    assert operator["apiVersion"] == "monitoring.coreos.com/v1"
    assert operator["spec"] == yaml.safe_load(RULES.read_text())
    shared = yaml.safe_load((BASE / "shared" / "kustomization.yaml").read_text())
    assert OPERATOR_RULE.name in shared["resources"]


def test_rules_use_only_the_service_metrics():
    rules = rules_of(yaml.safe_load(RULES.read_text()))
    assert {r["alert"] for r in rules if "alert" in r} == ALERTS
    recorded = {r["record"] for r in rules if "record" in r}
    allowed = contract_series_names() | recorded
    for rule in rules:
        names = promql_metric_names(rule["expr"])
        assert names and names <= allowed, (rule, names - allowed)


def test_dashboard_shows_live_bias_and_drift_for_a_and_b():
    panels = [p for p in iter_panels(load_dashboard()["panels"]) if p["type"] != "row"]

    def exprs(panel: dict) -> str:
        return "\n".join(t["expr"] for t in panel.get("targets", []))

    live = [p for p in panels if "ccsclip_live_maxskew" in exprs(p)]
    a = [p for p in live if "$profile_a" in exprs(p)]
    b = [p for p in live if "$profile_b" in exprs(p)]
    assert a and b
    # side by side: same row (y) and height, A on the left
    assert (a[0]["gridPos"]["y"], a[0]["gridPos"]["h"]) == (
        b[0]["gridPos"]["y"],
        b[0]["gridPos"]["h"],
    )
    assert a[0]["gridPos"]["x"] < b[0]["gridPos"]["x"]
    skew = [p for p in panels if "ccsclip_live_topk_items_total" in exprs(p)]
    assert any("ccsclip_live_gallery_share" in exprs(p) and "ln(" in exprs(p) for p in skew)
    assert any("ccsclip_probe_drift_max_abs" in exprs(p) for p in panels)
    assert any("ccsclip_probe_drift_top1_changed" in exprs(p) for p in panels)
    assert any("ccsclip_probe_images_embedded_total" in exprs(p) for p in panels)
    allowed = contract_series_names()
    for expr in dashboard_exprs(load_dashboard()):
        assert promql_metric_names(expr) <= allowed, expr
