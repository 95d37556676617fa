"""Helpers for the deployment tests: render kustomize trees, read the Grafana dashboard.

`dashboard_metric_names()` is the bridge to the service tests: it returns every series name the
dashboard queries, spelled as a live `/metrics` scrape shows it (histograms as `_bucket`, `_sum`,
`_count`), so a test against a running server can check that each one is exposed.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from ccsclip.ab.figures import EXCESS_SKEW, FIGURES

REPO = Path(__file__).resolve().parents[1]
K8S = REPO / "k8s"
BASE = K8S / "base"
OVERLAYS = {
    "single": K8S / "overlays" / "single",
    "ab": K8S / "overlays" / "ab",
    "canary": K8S / "overlays" / "canary",
}
PVC_COMPONENT = K8S / "components" / "pvc-bundle"
DASHBOARD = REPO / "docs" / "grafana" / "ccsclip.json"

# Kinds that kubernetes-validate has no schema for; the tests check their structure instead.
CUSTOM_KINDS = frozenset(
    {"ServiceMonitor", "PrometheusRule", "HTTPRoute", "GRPCRoute", "Rollout", "AnalysisTemplate"}
)

# The service's metric families (names fixed by the service contract) and their types.
CONTRACT_METRICS: dict[str, str] = {
    "ccsclip_requests_total": "counter",
    "ccsclip_request_latency_seconds": "histogram",
    "ccsclip_batch_size": "histogram",
    "ccsclip_probe_accuracy": "gauge",
    "ccsclip_probe_maxskew": "gauge",
    "ccsclip_probe_last_success_timestamp_seconds": "gauge",
    "ccsclip_probe_failures_total": "counter",
    "ccsclip_profile_info": "gauge",
    "ccsclip_text_cache_hits_total": "counter",
    "ccsclip_text_cache_misses_total": "counter",
    "ccsclip_probe_images_embedded_total": "counter",
    "ccsclip_probe_drift_max_abs": "gauge",
    "ccsclip_probe_drift_top1_changed": "gauge",
}
# Live bias (service/live_bias.py): exposed once a gallery that declares bias attributes has
# been searched, so a scrape after plain traffic lacks them (tests/test_live_bias.py checks them).
LIVE_BIAS_METRICS: dict[str, str] = {
    "ccsclip_live_topk_items_total": "counter",
    "ccsclip_live_gallery_share": "gauge",
    "ccsclip_live_maxskew": "histogram",
    "ccsclip_live_null_maxskew_total": "counter",
    **dict.fromkeys(EXCESS_SKEW.counters(), "counter"),
}
# The judge's figures (ccsclip.ab.figures, docs/ab.md): four counters each, exposed once the
# figure has an observation (a counted search; a shadowed request of a pruned profile).
LIVE_FIGURE_METRICS: dict[str, str] = {
    counter: "counter" for figure in FIGURES for counter in figure.counters()
}
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


# --- kubectl / kustomize -------------------------------------------------------------------


def find_kubectl() -> str | None:
    return shutil.which("kubectl")


def require_kubectl(kubectl: str | None = None, ci: str | None = None) -> str:
    """kubectl's path; skip without it, except under CI (env `CI` set), where it is a failure."""
    kubectl = kubectl if kubectl is not None else find_kubectl()
    ci = ci if ci is not None else os.environ.get("CI", "")
    if kubectl:
        return kubectl
    if ci:
        pytest.fail("kubectl is not installed, and CI is set: the manifests cannot be rendered")
    pytest.skip("kubectl is not installed (set CI to make this a failure)")


@functools.lru_cache(maxsize=32)
def _build_cached(kubectl: str, path: str) -> str:
    proc = subprocess.run(
        [kubectl, "kustomize", path],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "KUBECONFIG": os.devnull},
    )
    if proc.returncode != 0:
        raise AssertionError(f"kubectl kustomize {path} failed:\n{proc.stderr}")
    return proc.stdout


def kustomize_build(kubectl: str, path: Path) -> list[dict[str, Any]]:
    """Render a kustomization; a fresh copy of the documents on every call (tests mutate)."""
    text = _build_cached(kubectl, str(path))
    return [doc for doc in yaml.safe_load_all(text) if doc]


def by_kind(docs: Iterable[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in docs if doc["kind"] == kind]


def one(docs: Iterable[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [doc for doc in by_kind(docs, kind) if doc["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    """matchLabels semantics: every selector pair is among the labels (an empty one selects all)."""
    return all(labels.get(key) == value for key, value in selector.items())


def pod_labels(deployment: dict[str, Any]) -> dict[str, str]:
    return deployment["spec"]["template"]["metadata"]["labels"]


def containers(deployment: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in deployment["spec"]["template"]["spec"]["containers"]}


def env_value(container: dict[str, Any], name: str) -> str | None:
    for item in container.get("env", []):
        if item["name"] == name:
            return item.get("value")
    return None


# --- Argo Rollouts (the canary overlay) ------------------------------------------------------
# kubernetes-validate has no schema for Argo's CRDs and no pip package ships them: these JSON
# Schemas cover every field the canary overlay uses (names and types as in Argo Rollouts'
# v1alpha1 API), closed with additionalProperties: false so that a misspelt field fails. The Job
# inside the AnalysisTemplate is a batch/v1 JobSpec: the tests validate it with
# kubernetes-validate as a Job.

_NONEMPTY = {"type": "string", "minLength": 1}
_NAME_AND_LABELS = {
    "type": "object",
    "required": ["name", "labels"],
    "properties": {"name": _NONEMPTY, "labels": {"type": "object"}},
    "additionalProperties": False,
}


def _closed(required: list[str], **properties: Any) -> dict[str, Any]:
    return {
        "type": "object",
        "required": required,
        "properties": properties,
        "additionalProperties": False,
    }


_ANALYSIS_ARG = _closed(
    ["name"],
    name=_NONEMPTY,
    value={"type": "string"},
    valueFrom=_closed(
        ["podTemplateHashValue"], podTemplateHashValue={"enum": ["Stable", "Latest"]}
    ),
)
_STEP = {
    "oneOf": [
        _closed(["setWeight"], setWeight={"type": "integer", "minimum": 0, "maximum": 100}),
        _closed(
            ["analysis"],
            analysis=_closed(
                ["templates"],
                templates={
                    "type": "array",
                    "minItems": 1,
                    "items": _closed(["templateName"], templateName=_NONEMPTY),
                },
                args={"type": "array", "items": _ANALYSIS_ARG},
            ),
        ),
    ]
}
ARGO_SCHEMAS: dict[str, dict[str, Any]] = {
    "Rollout": _closed(
        ["apiVersion", "kind", "metadata", "spec"],
        apiVersion={"const": "argoproj.io/v1alpha1"},
        kind={"const": "Rollout"},
        metadata=_NAME_AND_LABELS,
        spec=_closed(
            ["selector", "workloadRef", "strategy"],
            revisionHistoryLimit={"type": "integer", "minimum": 0},
            selector=_closed(["matchLabels"], matchLabels={"type": "object", "minProperties": 1}),
            workloadRef=_closed(
                ["apiVersion", "kind", "name"],
                apiVersion={"const": "apps/v1"},
                kind={"const": "Deployment"},
                name=_NONEMPTY,
                scaleDown={"enum": ["never", "onsuccess", "progressively"]},
            ),
            strategy=_closed(
                ["canary"],
                canary=_closed(
                    ["stableService", "canaryService", "trafficRouting", "steps"],
                    stableService=_NONEMPTY,
                    canaryService=_NONEMPTY,
                    trafficRouting=_closed(
                        ["plugins"],
                        plugins=_closed(
                            ["argoproj-labs/gatewayAPI"],
                            **{
                                "argoproj-labs/gatewayAPI": _closed(
                                    ["httpRoute"],
                                    httpRoute=_NONEMPTY,
                                    grpcRoute=_NONEMPTY,
                                    namespace=_NONEMPTY,
                                )
                            },
                        ),
                    ),
                    steps={"type": "array", "minItems": 1, "items": _STEP},
                ),
            ),
        ),
    ),
    "AnalysisTemplate": _closed(
        ["apiVersion", "kind", "metadata", "spec"],
        apiVersion={"const": "argoproj.io/v1alpha1"},
        kind={"const": "AnalysisTemplate"},
        metadata=_NAME_AND_LABELS,
        spec=_closed(
            ["args", "metrics"],
            args={"type": "array", "items": _closed(["name"], name=_NONEMPTY, value=_NONEMPTY)},
            metrics={
                "type": "array",
                "minItems": 1,
                "items": _closed(
                    ["name", "provider"],
                    name=_NONEMPTY,
                    count={"type": "integer", "minimum": 1},
                    failureLimit={"type": "integer", "minimum": 0},
                    provider=_closed(
                        ["job"],
                        job=_closed(
                            ["spec"],
                            metadata=_closed([], labels={"type": "object"}),
                            spec={"type": "object"},  # a batch/v1 JobSpec: kubernetes-validate
                        ),
                    ),
                ),
            },
        ),
    ),
}


def validate_argo(doc: dict[str, Any]) -> None:
    """jsonschema's ValidationError unless doc fits the schema of its kind (ARGO_SCHEMAS)."""
    import jsonschema

    jsonschema.validate(doc, ARGO_SCHEMAS[doc["kind"]])


# --- PromQL and the dashboard --------------------------------------------------------------

_PROMQL_KEYWORDS = frozenset(
    {
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "inf",
        "nan",
        "start",
        "end",
    }
)
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_NAME_MATCHER = re.compile(r'__name__\s*=\s*"([^"]+)"')
_GRAFANA_VAR = re.compile(r"\$\{[^}]*\}|\$\w+|\[\[[^\]]*\]\]")
_BRACES = re.compile(r"\{[^{}]*\}")
_BRACKETS = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_NUMBER = re.compile(
    r"(?<![\w:])(?:0x[0-9a-fA-F]+"  # hex
    r"|(?:\d+(?:ms|[smhdwy]))+(?![\w.])"  # durations: 5m, 1h30m
    r"|\d*\.?\d+(?:[eE][+-]?\d+)?)"  # 1, 0.99, .5, 1e-9
)
_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


def promql_metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (function names, keywords, labels removed).

    Covers what dashboards use: selectors with label matchers, range vectors and subqueries,
    `by`/`without`/`on`/`ignoring`/`group_*` clauses, numbers, durations, strings, Grafana
    variables and `{__name__="..."}` selectors. An identifier followed by `(` is a function.
    """
    names = set(_NAME_MATCHER.findall(expr))
    text = _STRING.sub('""', expr)
    text = _GRAFANA_VAR.sub(" ", text)
    while True:  # innermost first, so nested brackets (subqueries) are removed too
        stripped = _BRACKETS.sub(" ", _BRACES.sub(" ", text))
        if stripped == text:
            break
        text = stripped
    text = _GROUPING.sub(" ", text)
    text = _NUMBER.sub(" ", text)
    for match in _IDENT.finditer(text):
        word = match.group(0)
        if word.lower() in _PROMQL_KEYWORDS:
            continue
        rest = text[match.end() :].lstrip()
        if rest.startswith("("):
            continue  # a function or aggregation
        names.add(word)
    return names


_LABEL_VALUES = re.compile(r"^\s*label_values\((?P<body>.*)\)\s*$", re.S)
_QUERY_RESULT = re.compile(r"^\s*query_result\((?P<body>.*)\)\s*$", re.S)


def variable_exprs(query: str) -> list[str]:
    """PromQL inside a Grafana Prometheus variable query (label_values, query_result)."""
    if match := _LABEL_VALUES.match(query):
        body = match.group("body")
        if "," not in body:
            return []  # label_values(label): no metric
        return [body.rsplit(",", 1)[0]]
    if match := _QUERY_RESULT.match(query):
        return [match.group("body")]
    return []


def load_dashboard(path: Path = DASHBOARD) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def iter_panels(panels: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every panel, including those nested in (collapsed) rows."""
    for panel in panels:
        yield panel
        yield from iter_panels(panel.get("panels", []))


def dashboard_exprs(dashboard: dict[str, Any]) -> list[str]:
    """Every PromQL expression of the dashboard: panel targets and template variable queries."""
    exprs = [
        target["expr"]
        for panel in iter_panels(dashboard.get("panels", []))
        for target in panel.get("targets", [])
        if target.get("expr")
    ]
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") != "query":
            continue
        query = variable.get("query")
        if isinstance(query, dict):
            query = query.get("query", "")
        exprs.extend(variable_exprs(query or ""))
    return exprs


def contract_series_names(live_bias: bool = True, figures: bool = True) -> set[str]:
    """Series names the contract's metrics have in a scrape (histograms as their three series);
    with `live_bias`, the live-bias families; with `figures`, the judge's figures' counters."""
    names: set[str] = set()
    families = {
        **CONTRACT_METRICS,
        **(LIVE_BIAS_METRICS if live_bias else {}),
        **(LIVE_FIGURE_METRICS if figures else {}),
    }
    for family, kind in families.items():
        if kind == "histogram":
            names.update(family + suffix for suffix in HISTOGRAM_SUFFIXES)
        else:
            names.add(family)
    return names


def metric_family(series: str) -> str:
    """The contract family of a series name (`x_bucket` -> `x` for histograms)."""
    for family, kind in {**CONTRACT_METRICS, **LIVE_BIAS_METRICS}.items():
        if kind == "histogram" and series in {family + s for s in HISTOGRAM_SUFFIXES}:
            return family
    return series


def dashboard_metric_names(
    path: Path = DASHBOARD, live_bias: bool = False, figures: bool = False
) -> set[str]:
    """Every series name the dashboard queries, as a live /metrics scrape spells it; the
    live-bias ones only with `live_bias` (they need searches on a declaring gallery), the judge's
    figures only with `figures` (they need counted searches and sampled shadow requests)."""
    names: set[str] = set()
    for expr in dashboard_exprs(load_dashboard(path)):
        names |= promql_metric_names(expr)
    if not live_bias:
        names -= set(contract_series_names()) - contract_series_names(live_bias=False)
    if not figures:
        names -= set(LIVE_FIGURE_METRICS)
    return names
