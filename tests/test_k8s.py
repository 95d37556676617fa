"""Structure of the Kubernetes manifests (k8s/) and the Grafana dashboard (docs/grafana/).

No cluster: `kubectl kustomize` renders each tree, kubernetes-validate checks core kinds against
the newest Kubernetes schemas it ships (strict: unknown fields are errors), and the custom
resources (ServiceMonitor, HTTPRoute, GRPCRoute) are checked for the structure the A/B setup
relies on. Without kubectl the manifest tests skip, unless CI is set: then they fail.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from k8s_helpers import (
    BASE,
    CONTRACT_METRICS,
    CUSTOM_KINDS,
    LIVE_FIGURE_METRICS,
    OVERLAYS,
    PVC_COMPONENT,
    by_kind,
    containers,
    contract_series_names,
    dashboard_exprs,
    dashboard_metric_names,
    env_value,
    iter_panels,
    kustomize_build,
    load_dashboard,
    metric_family,
    one,
    pod_labels,
    promql_metric_names,
    require_kubectl,
    selects,
    validate_argo,
    variable_exprs,
)

VARIANT = "ccsclip.dev/variant"
PROFILE_ENV = "CCSCLIP_DEFAULT_PROFILE"
VARIANT_HEADER = "x-ccsclip-variant"
AB_PROFILES = {"a": "baseline", "b": "high-ccs"}
TREES = {"base": BASE, **OVERLAYS}
BAKED_BUNDLE = "/home/bentoml/bento/src/default/bundle"
BENTOML_UID = 1034  # bentoml/_internal/container/generate.py: BENTO_UID_GID
# Services that are not an instance of their own: the canary's routing Services reach the pods
# of the Deployment `ccsclip` (run by the Rollout), revision by revision.
WORKLOAD_OF = {"ccsclip-stable": "ccsclip", "ccsclip-canary": "ccsclip"}


@pytest.fixture(scope="module")
def kubectl() -> str:
    return require_kubectl()


def render(kubectl: str, tree: str) -> list[dict[str, Any]]:
    return kustomize_build(kubectl, TREES[tree])


def config_data(docs: list[dict[str, Any]]) -> dict[str, str]:
    (config,) = by_kind(docs, "ConfigMap")
    return config["data"]


@pytest.fixture(scope="module")
def k8s_validate():
    try:
        import kubernetes_validate
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("kubernetes-validate is not installed, and CI is set")
        pytest.skip("kubernetes-validate is not installed")
    return kubernetes_validate


# --- the skip/fail policy ------------------------------------------------------------------


def test_missing_kubectl_skips_locally_and_fails_under_ci():
    with pytest.raises(pytest.skip.Exception):
        require_kubectl(kubectl="", ci="")
    with pytest.raises(pytest.fail.Exception):
        require_kubectl(kubectl="", ci="true")
    assert require_kubectl(kubectl="/usr/bin/kubectl", ci="true") == "/usr/bin/kubectl"


# --- rendering -----------------------------------------------------------------------------

SHARED_KINDS = {"ConfigMap", "ServiceMonitor", "PrometheusRule", "NetworkPolicy"}
PER_INSTANCE_KINDS = {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"}


@pytest.mark.parametrize("tree", ["base", "single"])
def test_single_instance_trees_render(kubectl, tree):
    docs = render(kubectl, tree)
    kinds = [doc["kind"] for doc in docs]
    assert sorted(kinds) == sorted(SHARED_KINDS | PER_INSTANCE_KINDS)
    assert all(doc["metadata"]["name"].startswith("ccsclip") for doc in docs)


def test_ab_renders_two_instances_and_routes(kubectl):
    docs = render(kubectl, "ab")
    for kind in PER_INSTANCE_KINDS:
        names = sorted(doc["metadata"]["name"] for doc in by_kind(docs, kind))
        assert names == ["ccsclip-a", "ccsclip-b"], kind
    for kind in SHARED_KINDS | {"HTTPRoute", "GRPCRoute"}:
        assert len(by_kind(docs, kind)) == 1, kind
    assert len(docs) == 2 * len(PER_INSTANCE_KINDS) + len(SHARED_KINDS) + 2


@pytest.mark.parametrize("tree", sorted(TREES))
def test_every_resource_is_labelled(kubectl, tree):
    for doc in render(kubectl, tree):
        labels = doc["metadata"].get("labels", {})
        assert labels.get("app.kubernetes.io/name") == "ccsclip", doc["metadata"]["name"]
        assert labels.get("app.kubernetes.io/part-of") == "ccsclip"
        assert labels.get("app.kubernetes.io/component"), doc["metadata"]["name"]


# --- schema validation of core kinds -------------------------------------------------------


def test_validator_covers_a_recent_kubernetes(k8s_validate):
    from packaging.version import Version

    versions = k8s_validate.utils.all_versions()
    newest = k8s_validate.latest_version()
    assert newest == max(versions, key=Version)
    # The manifests use fields of 1.31+ (native gRPC probes, unhealthyPodEvictionPolicy).
    assert Version(newest) >= Version("1.31")


@pytest.mark.parametrize("tree", sorted(TREES))
def test_core_resources_pass_strict_validation(kubectl, k8s_validate, tree):
    version = k8s_validate.latest_version()
    validated = set()
    for doc in render(kubectl, tree):
        if doc["kind"] in CUSTOM_KINDS:
            continue
        try:
            k8s_validate.validate(doc, version, strict=True)
        except k8s_validate.ValidationError as exc:
            pytest.fail(f"{doc['kind']}/{doc['metadata']['name']}: {exc.message} at {exc.path}")
        except k8s_validate.SchemaNotFoundError as exc:
            pytest.fail(exc.message)
        validated.add(doc["kind"])
    assert validated == SHARED_KINDS - CUSTOM_KINDS | PER_INSTANCE_KINDS


def test_strict_validation_rejects_an_unknown_field(kubectl, k8s_validate):
    deployment = copy.deepcopy(one(render(kubectl, "single"), "Deployment", "ccsclip"))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(k8s_validate.ValidationError):
        k8s_validate.validate(deployment, k8s_validate.latest_version(), strict=True)


# --- the Deployment ------------------------------------------------------------------------


def deployments(kubectl, tree):
    found = by_kind(render(kubectl, tree), "Deployment")
    assert found
    return found


@pytest.mark.parametrize("tree", sorted(TREES))
def test_security_context(kubectl, tree):
    for deployment in deployments(kubectl, tree):
        spec = deployment["spec"]["template"]["spec"]
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True
        assert pod["runAsUser"] == BENTOML_UID
        assert pod["seccompProfile"] == {"type": "RuntimeDefault"}
        assert spec["automountServiceAccountToken"] is False
        for container in spec["containers"]:
            sc = container["securityContext"]
            assert sc.get("runAsNonRoot", pod.get("runAsNonRoot")) is True
            assert sc.get("runAsUser", pod.get("runAsUser")) == BENTOML_UID
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["readOnlyRootFilesystem"] is True
            assert sc["capabilities"]["drop"] == ["ALL"]
            assert not sc["capabilities"].get("add")
            assert "privileged" not in sc or sc["privileged"] is False


@pytest.mark.parametrize("tree", sorted(TREES))
def test_containers_follow_the_service_contract(kubectl, tree):
    docs = render(kubectl, tree)
    (config,) = by_kind(docs, "ConfigMap")
    for deployment in by_kind(docs, "Deployment"):
        http, grpc = containers(deployment)["http"], containers(deployment)["grpc"]
        assert http["image"] == grpc["image"]
        # args only: the Bento image's entrypoint must run (it activates the environment).
        assert "command" not in http and "command" not in grpc
        assert http["args"] == ["serve"]
        assert grpc["args"] == ["python", "-m", "ccsclip.cli", "serve-grpc"]
        assert {(p["name"], p["containerPort"]) for p in http["ports"]} == {("http", 3000)}
        assert {(p["name"], p["containerPort"]) for p in grpc["ports"]} == {
            ("grpc", 50051),
            ("grpc-metrics", 9090),
        }
        for container in (http, grpc):
            refs = [e["configMapRef"]["name"] for e in container["envFrom"]]
            assert refs == [config["metadata"]["name"]]
            assert env_value(container, PROFILE_ENV)
            for resource in ("cpu", "memory"):
                assert container["resources"]["requests"][resource]
                assert container["resources"]["limits"][resource]


def test_configmap_holds_the_settings(kubectl):
    docs = render(kubectl, "single")
    (config,) = by_kind(docs, "ConfigMap")
    # Generated: name + content hash, so that a settings change rolls the pods.
    assert config["metadata"]["name"].startswith("ccsclip-config-")
    data = config_data(docs)
    assert data["CCSCLIP_BUNDLE"] == BAKED_BUNDLE
    assert data["CCSCLIP_GRPC_PORT"] == "50051"
    assert data["CCSCLIP_GRPC_METRICS_PORT"] == "9090"
    assert data["BENTOML_DO_NOT_TRACK"] == "True"
    assert int(data["CCSCLIP_PROBE_INTERVAL_S"]) > 0
    assert int(data["CCSCLIP_MAX_IMAGES_PER_REQUEST"]) > 0
    assert int(data["CCSCLIP_MAX_REQUEST_BYTES"]) > 0
    assert data["PROMETHEUS_MULTIPROC_DIR"]
    # The per-variant setting is not shared: it lives in each Deployment.
    assert PROFILE_ENV not in data


def _covered_by(path: str, mounts: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The deepest mount that contains path."""
    best = None
    for mount in mounts:
        root = mount["mountPath"].rstrip("/")
        if (path == root or path.startswith(root + "/")) and (
            best is None or len(root) > len(best["mountPath"].rstrip("/"))
        ):
            best = mount
    return best


@pytest.mark.parametrize("tree", sorted(TREES))
def test_every_writable_path_is_an_emptydir(kubectl, tree):
    docs = render(kubectl, tree)
    data = config_data(docs)
    for deployment in by_kind(docs, "Deployment"):
        spec = deployment["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert not any("persistentVolumeClaim" in v for v in volumes.values())  # baked bundle
        used_by: dict[str, set[str]] = {}
        for container in spec["containers"]:
            mounts = container["volumeMounts"]
            for mount in mounts:
                used_by.setdefault(mount["name"], set()).add(container["name"])
                if not mount.get("readOnly"):
                    assert "emptyDir" in volumes[mount["name"]], mount
            for path in ("/tmp", data["PROMETHEUS_MULTIPROC_DIR"]):
                mount = _covered_by(path, mounts)
                assert mount and "emptyDir" in volumes[mount["name"]], (container["name"], path)
        assert set(used_by) == set(volumes), "a volume no container mounts"
        http_mounts = containers(deployment)["http"]["volumeMounts"]
        assert _covered_by(data["BENTOML_HOME"], http_mounts), "BENTOML_HOME is not writable"
        # Each container has its own Prometheus multiprocess directory (no double counting).
        for container in spec["containers"]:
            mount = _covered_by(data["PROMETHEUS_MULTIPROC_DIR"], container["volumeMounts"])
            assert used_by[mount["name"]] == {container["name"]}


@pytest.mark.parametrize("tree", sorted(TREES))
def test_probes(kubectl, tree):
    for deployment in deployments(kubectl, tree):
        http, grpc = containers(deployment)["http"], containers(deployment)["grpc"]
        assert http["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
        assert http["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "http"}
        assert "httpGet" in http["startupProbe"]
        for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert grpc[kind]["grpc"]["port"] == 50051
        for container in (http, grpc):
            startup = container["startupProbe"]
            # Model loading may be slow: the startup probe allows at least two minutes.
            assert startup["periodSeconds"] * startup["failureThreshold"] >= 120


def test_single_serves_baseline_by_default(kubectl):
    (deployment,) = deployments(kubectl, "single")
    assert deployment["metadata"]["name"] == "ccsclip"
    for container in containers(deployment).values():
        assert env_value(container, PROFILE_ENV) == "baseline"
    assert "replicas" not in deployment["spec"]  # the HPA owns the count


# --- selectors -----------------------------------------------------------------------------


@pytest.mark.parametrize("tree", sorted(TREES))
def test_selectors_match_pods(kubectl, tree):
    docs = render(kubectl, tree)
    deps = {d["metadata"]["name"]: d for d in by_kind(docs, "Deployment")}
    for deployment in deps.values():
        assert selects(deployment["spec"]["selector"]["matchLabels"], pod_labels(deployment))
    # A Service, PDB or HPA of an instance reaches exactly that instance's pods.
    for kind in ("Service", "PodDisruptionBudget"):
        for doc in by_kind(docs, kind):
            selector = doc["spec"]["selector"]
            selector = selector.get("matchLabels", selector)
            assert selector, f"{kind} {doc['metadata']['name']} selects everything"
            hit = [name for name, d in deps.items() if selects(selector, pod_labels(d))]
            expected = WORKLOAD_OF.get(doc["metadata"]["name"], doc["metadata"]["name"])
            assert hit == [expected], (kind, doc["metadata"]["name"], hit)
    for hpa in by_kind(docs, "HorizontalPodAutoscaler"):
        target = hpa["spec"]["scaleTargetRef"]
        assert target["name"] == hpa["metadata"]["name"]
        if target["kind"] == "Rollout":  # the canary: the Rollout runs the Deployment's pods
            assert target["apiVersion"] == "argoproj.io/v1alpha1"
            workload = one(docs, "Rollout", target["name"])["spec"]["workloadRef"]["name"]
        else:
            assert target["kind"] == "Deployment"
            workload = target["name"]
        assert workload in deps
        assert hpa["spec"]["minReplicas"] >= 2
        metrics = hpa["spec"]["metrics"]
        assert any(m["type"] == "Resource" and m["resource"]["name"] == "cpu" for m in metrics)
    (policy,) = by_kind(docs, "NetworkPolicy")
    for deployment in deps.values():
        assert selects(policy["spec"]["podSelector"]["matchLabels"], pod_labels(deployment))


@pytest.mark.parametrize("tree", sorted(TREES))
def test_service_ports(kubectl, tree):
    docs = render(kubectl, tree)
    for service in by_kind(docs, "Service"):
        ports = {p["name"]: p for p in service["spec"]["ports"]}
        assert {n: p["port"] for n, p in ports.items()} == {
            "http": 3000,
            "grpc": 50051,
            "grpc-metrics": 9090,
        }
        assert ports["grpc"]["appProtocol"] in {"kubernetes.io/h2c", "grpc", "h2c"}
        name = service["metadata"]["name"]
        deployment = one(docs, "Deployment", WORKLOAD_OF.get(name, name))
        container_ports = {
            p["name"] for c in containers(deployment).values() for p in c.get("ports", [])
        }
        assert {p["targetPort"] for p in ports.values()} <= container_ports


@pytest.mark.parametrize("tree", sorted(TREES))
def test_servicemonitor_scrapes_both_metrics_ports(kubectl, tree):
    docs = render(kubectl, tree)
    (monitor,) = by_kind(docs, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    everything = by_kind(docs, "Service")
    services = [s for s in everything if s["metadata"]["name"] not in WORKLOAD_OF]
    selected = [
        s
        for s in everything
        if selects(monitor["spec"]["selector"]["matchLabels"], s["metadata"]["labels"])
    ]
    # Each pod once: the canary's routing Services reach the same pods as `ccsclip`.
    assert selected == services
    endpoints = monitor["spec"]["endpoints"]
    assert {e["port"] for e in endpoints} == {"http", "grpc-metrics"}
    for endpoint in endpoints:
        assert endpoint["path"] == "/metrics"
        for service in selected:
            assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}


def _ports(rule: dict[str, Any]) -> set[int]:
    return {p["port"] for p in rule["ports"]}


def test_networkpolicy(kubectl):
    (policy,) = by_kind(render(kubectl, "single"), "NetworkPolicy")
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    rules = policy["spec"]["ingress"]
    api = [r for r in rules if _ports(r) == {3000, 50051}]
    assert len(api) == 1
    sources = api[0]["from"]
    assert {"podSelector": {}} in sources  # the whole namespace
    assert any("namespaceSelector" in s for s in sources)  # the gateway's namespace
    metrics = [r for r in rules if _ports(r) == {9090, 3000}]
    assert len(metrics) == 1
    (source,) = metrics[0]["from"]
    assert source["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] == "monitoring"
    assert len(rules) == 2


# --- A/B -----------------------------------------------------------------------------------


def _strip_variant(doc: dict[str, Any], variant: str) -> dict[str, Any]:
    """The Deployment without its name, variant labels and default profile."""
    doc = copy.deepcopy(doc)
    assert doc["metadata"].pop("name") == f"ccsclip-{variant}"

    def drop_label(labels: dict[str, str]) -> None:
        assert labels.pop(VARIANT) == variant

    spec = doc["spec"]
    drop_label(doc["metadata"]["labels"])
    drop_label(spec["selector"]["matchLabels"])
    drop_label(spec["template"]["metadata"]["labels"])
    for constraint in spec["template"]["spec"].get("topologySpreadConstraints", []):
        drop_label(constraint["labelSelector"]["matchLabels"])
    for container in spec["template"]["spec"]["containers"]:
        (entry,) = [e for e in container["env"] if e["name"] == PROFILE_ENV]
        assert entry["value"] == AB_PROFILES[variant]
        container["env"].remove(entry)
    return doc


def test_ab_deployments_differ_only_in_default_profile(kubectl):
    docs = render(kubectl, "ab")
    a = _strip_variant(one(docs, "Deployment", "ccsclip-a"), "a")
    b = _strip_variant(one(docs, "Deployment", "ccsclip-b"), "b")
    assert a == b
    # And the shared part is the single overlay's Deployment.
    (single,) = by_kind(render(kubectl, "single"), "Deployment")
    single = copy.deepcopy(single)
    del single["metadata"]["name"]
    for container in single["spec"]["template"]["spec"]["containers"]:
        container["env"] = [e for e in container["env"] if e["name"] != PROFILE_ENV]
    assert a == single


def test_ab_per_variant_resources_select_their_variant(kubectl):
    docs = render(kubectl, "ab")
    for variant in AB_PROFILES:
        name = f"ccsclip-{variant}"
        assert pod_labels(one(docs, "Deployment", name))[VARIANT] == variant
        assert one(docs, "Service", name)["spec"]["selector"][VARIANT] == variant
        pdb = one(docs, "PodDisruptionBudget", name)
        assert pdb["spec"]["selector"]["matchLabels"][VARIANT] == variant
        hpa = one(docs, "HorizontalPodAutoscaler", name)
        assert hpa["spec"]["scaleTargetRef"]["name"] == name
    # Shared resources name no variant.
    for kind in ("ServiceMonitor", "NetworkPolicy"):
        (doc,) = by_kind(docs, kind)
        assert VARIANT not in str(doc["spec"].get("selector", doc["spec"].get("podSelector")))


def routes(kubectl) -> dict[str, dict[str, Any]]:
    docs = render(kubectl, "ab")
    return {kind: one(docs, kind, "ccsclip") for kind in ("HTTPRoute", "GRPCRoute")}


ROUTE_PORT_NAME = {"HTTPRoute": "http", "GRPCRoute": "grpc"}


@pytest.mark.parametrize("kind", sorted(ROUTE_PORT_NAME))
def test_route_weights_sum_to_100(kubectl, kind):
    route = routes(kubectl)[kind]
    assert route["apiVersion"] == "gateway.networking.k8s.io/v1"
    weighted = [r for r in route["spec"]["rules"] if len(r["backendRefs"]) > 1]
    assert len(weighted) == 1
    for rule in weighted:
        weights = {ref["name"]: ref["weight"] for ref in rule["backendRefs"]}
        assert sum(weights.values()) == 100
        assert weights == {"ccsclip-a": 90, "ccsclip-b": 10}  # the documented default
        assert not any(m.get("headers") for m in rule.get("matches", []))


@pytest.mark.parametrize("kind", sorted(ROUTE_PORT_NAME))
def test_route_backends_are_rendered_services(kubectl, kind):
    docs = render(kubectl, "ab")
    services = {s["metadata"]["name"]: s for s in by_kind(docs, "Service")}
    route = routes(kubectl)[kind]
    refs = [ref for rule in route["spec"]["rules"] for ref in rule["backendRefs"]]
    assert {ref["name"] for ref in refs} == {"ccsclip-a", "ccsclip-b"}
    for ref in refs:
        assert ref.get("kind", "Service") == "Service" and ref.get("group", "") == ""
        assert ref["name"] in services
        ports = {p["port"]: p["name"] for p in services[ref["name"]]["spec"]["ports"]}
        assert ports.get(ref["port"]) == ROUTE_PORT_NAME[kind], ref


@pytest.mark.parametrize("kind", sorted(ROUTE_PORT_NAME))
def test_route_header_forces_each_variant(kubectl, kind):
    docs = render(kubectl, "ab")
    route = routes(kubectl)[kind]
    for variant in AB_PROFILES:
        forcing = [
            rule
            for rule in route["spec"]["rules"]
            for match in rule.get("matches", [])
            if {"type": "Exact", "name": VARIANT_HEADER, "value": variant}
            in match.get("headers", [])
        ]
        assert len(forcing) == 1, variant
        (ref,) = forcing[0]["backendRefs"]
        assert ref["name"] == f"ccsclip-{variant}"
        service = one(docs, "Service", ref["name"])
        assert service["spec"]["selector"][VARIANT] == variant


def test_routes_attach_to_the_user_gateway(kubectl):
    sections = set()
    for route in routes(kubectl).values():
        (parent,) = route["spec"]["parentRefs"]
        assert parent["name"] == "ccsclip-gateway"
        assert parent.get("kind", "Gateway") == "Gateway"
        assert parent.get("group", "gateway.networking.k8s.io") == "gateway.networking.k8s.io"
        sections.add(parent.get("sectionName"))
    # HTTPRoute and GRPCRoute may not share a listener hostname: separate listeners.
    assert len(sections) == 2 and None not in sections


# --- the canary (Argo Rollouts) ------------------------------------------------------------

CANARY_WEIGHTS = [10, 25, 50]  # then 100 % at promotion


def canary_docs(kubectl) -> list[dict[str, Any]]:
    return render(kubectl, "canary")


def test_canary_renders_one_workload_a_rollout_and_its_gate(kubectl):
    docs = canary_docs(kubectl)
    kinds = sorted(doc["kind"] for doc in docs)
    expected = SHARED_KINDS | PER_INSTANCE_KINDS | {"Rollout", "AnalysisTemplate"}
    assert set(kinds) == expected | {"HTTPRoute", "GRPCRoute"}
    names = sorted(s["metadata"]["name"] for s in by_kind(docs, "Service"))
    assert names == ["ccsclip", "ccsclip-canary", "ccsclip-stable"]
    assert len(by_kind(docs, "Deployment")) == 1


@pytest.mark.parametrize("kind", ["Rollout", "AnalysisTemplate"])
def test_argo_objects_fit_the_schema_of_the_fields_they_use(kubectl, kind):
    import jsonschema

    (doc,) = by_kind(canary_docs(kubectl), kind)
    validate_argo(doc)
    broken = copy.deepcopy(doc)
    broken["spec"]["stratgey" if kind == "Rollout" else "metrix"] = {}
    with pytest.raises(jsonschema.ValidationError):  # the schemas are closed: typos fail
        validate_argo(broken)


def test_rollout_runs_the_deployment_pods_and_routes_the_rendered_objects(kubectl):
    docs = canary_docs(kubectl)
    (rollout,) = by_kind(docs, "Rollout")
    spec = rollout["spec"]
    deployment = one(docs, "Deployment", spec["workloadRef"]["name"])
    assert selects(spec["selector"]["matchLabels"], pod_labels(deployment))
    assert spec["selector"] == deployment["spec"]["selector"]
    canary = spec["strategy"]["canary"]
    services = {canary["stableService"], canary["canaryService"]}
    assert services == set(WORKLOAD_OF)
    for name in services:
        service = one(docs, "Service", name)
        assert selects(service["spec"]["selector"], pod_labels(deployment))
    plugin = canary["trafficRouting"]["plugins"]["argoproj-labs/gatewayAPI"]
    for kind, key in (("HTTPRoute", "httpRoute"), ("GRPCRoute", "grpcRoute")):
        route = one(docs, kind, plugin[key])
        port = {"HTTPRoute": 3000, "GRPCRoute": 50051}[kind]
        (weighted,) = route["spec"]["rules"][-1:]
        refs = {ref["name"]: ref for ref in weighted["backendRefs"]}
        assert set(refs) == services
        assert refs[canary["stableService"]]["weight"] == 100  # all stable until a rollout
        assert refs[canary["canaryService"]]["weight"] == 0
        for ref in refs.values():
            assert ref["port"] == port
            ports = {p["port"] for p in one(docs, "Service", ref["name"])["spec"]["ports"]}
            assert port in ports


def test_every_weight_step_is_gated_on_the_judge(kubectl):
    docs = canary_docs(kubectl)
    (rollout,) = by_kind(docs, "Rollout")
    (template,) = by_kind(docs, "AnalysisTemplate")
    steps = rollout["spec"]["strategy"]["canary"]["steps"]
    assert [s["setWeight"] for s in steps if "setWeight" in s] == CANARY_WEIGHTS
    for index, step in enumerate(steps):
        if "setWeight" not in step:
            continue
        gate = steps[index + 1]["analysis"]  # the next step judges this weight
        assert [t["templateName"] for t in gate["templates"]] == [template["metadata"]["name"]]
        given = {a["name"] for a in gate["args"]}
        declared = {a["name"]: a for a in template["spec"]["args"]}
        assert given <= set(declared)
        # every argument without a default is given by the step
        assert {n for n, a in declared.items() if "value" not in a} <= given
        hashes = {a["name"]: a["valueFrom"]["podTemplateHashValue"] for a in gate["args"]}
        assert hashes == {"stable-hash": "Stable", "canary-hash": "Latest"}


def judge_job(kubectl) -> dict[str, Any]:
    (template,) = by_kind(canary_docs(kubectl), "AnalysisTemplate")
    (metric,) = template["spec"]["metrics"]
    spec = metric["provider"]["job"]["spec"]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "ccsclip-judge", **metric["provider"]["job"].get("metadata", {})},
        "spec": spec,
    }


def test_judge_job_is_a_valid_strict_job(kubectl, k8s_validate):
    job = judge_job(kubectl)
    k8s_validate.validate(job, k8s_validate.latest_version(), strict=True)
    assert job["spec"]["backoffLimit"] == 0  # a failed judge is a decision, not a retry
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == BENTOML_UID
    (container,) = pod["containers"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert "command" not in container  # the Bento image's entrypoint must run


def _substituted(container: dict[str, Any], template: dict[str, Any], **given: str) -> list[str]:
    values = {a["name"]: a.get("value") for a in template["spec"]["args"]} | given
    args = []
    for arg in container["args"]:
        for name, value in values.items():
            arg = arg.replace("{{args." + name + "}}", value)
        args.append(arg)
    return args


def test_judge_job_runs_the_judge_with_arguments_it_accepts(kubectl):
    """The Job's command line, arguments filled in as Argo would, parses: the judge gets as
    far as reaching Prometheus (here a closed port: exit 2, cannot reach)."""
    import socket
    import subprocess
    import sys

    from ccsclip.ab.selectors import parse_selector
    from ccsclip.ab.sources import parse_duration

    docs = canary_docs(kubectl)
    (template,) = by_kind(docs, "AnalysisTemplate")
    job = judge_job(kubectl)
    (container,) = job["spec"]["template"]["spec"]["containers"]
    (deployment,) = by_kind(docs, "Deployment")
    assert container["image"] == containers(deployment)["http"]["image"]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    args = _substituted(
        container, template, **{"stable-hash": "6d5f", "canary-hash": "7c9b",
                                "prometheus": f"http://127.0.0.1:{port}"}
    )  # fmt: skip
    assert args[:5] == ["python", "-m", "ccsclip.cli", "ab", "judge"]
    options = dict(zip(args[5::2], args[6::2], strict=True))
    # Prometheus spells the pod label rollouts-pod-template-hash as rollouts_pod_template_hash
    assert str(parse_selector(options["--control"])) == '{rollouts_pod_template_hash="6d5f"}'
    assert str(parse_selector(options["--candidate"])) == '{rollouts_pod_template_hash="7c9b"}'
    (monitor,) = by_kind(docs, "ServiceMonitor")
    assert "rollouts-pod-template-hash" in monitor["spec"]["podTargetLabels"]
    # The Job outlives the judge's own deadline, so the judge, not Kubernetes, ends it.
    assert job["spec"]["activeDeadlineSeconds"] > parse_duration(options["--deadline"])
    proc = subprocess.run([sys.executable, *args[1:]], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "cannot reach Prometheus" in proc.stderr


# --- the PVC bundle component ----------------------------------------------------------------


@pytest.mark.parametrize("tree", sorted(OVERLAYS))
def test_pvc_component_mounts_the_claim(kubectl, k8s_validate, tree, tmp_path: Path):
    (tmp_path / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": [os.path.relpath(OVERLAYS[tree], tmp_path)],
                "components": [os.path.relpath(PVC_COMPONENT, tmp_path)],
            }
        )
    )
    docs = kustomize_build(kubectl, tmp_path)
    (claim,) = by_kind(docs, "PersistentVolumeClaim")
    data = config_data(docs)
    bundle = data["CCSCLIP_BUNDLE"]
    assert bundle == "/bundles/current"
    # Merged into the shared ConfigMap, whose new hash the Deployments follow.
    (config,) = by_kind(docs, "ConfigMap")
    (plain_config,) = by_kind(render(kubectl, tree), "ConfigMap")
    assert config["metadata"]["name"] != plain_config["metadata"]["name"]
    plain = plain_config["data"]
    assert {k: v for k, v in data.items() if k != "CCSCLIP_BUNDLE"} == {
        k: v for k, v in plain.items() if k != "CCSCLIP_BUNDLE"
    }
    deps = by_kind(docs, "Deployment")
    assert len(deps) == len(by_kind(render(kubectl, tree), "Deployment"))
    for deployment in deps:
        spec = deployment["spec"]["template"]["spec"]
        claims = {
            v["name"]: v["persistentVolumeClaim"]
            for v in spec["volumes"]
            if "persistentVolumeClaim" in v
        }
        assert list(claims.values()) == [{"claimName": claim["metadata"]["name"], "readOnly": True}]
        (volume,) = claims
        for container in spec["containers"]:
            assert container["envFrom"][0]["configMapRef"]["name"] == config["metadata"]["name"]
            mount = _covered_by(bundle, container["volumeMounts"])
            assert mount and mount["name"] == volume and mount["readOnly"] is True
    # Everything still validates.
    for doc in [claim, config, *deps]:
        k8s_validate.validate(doc, k8s_validate.latest_version(), strict=True)


def _with_components(kubectl: str, tree: str, tmp_path: Path, *names: str) -> list[dict[str, Any]]:
    components = [os.path.relpath(PVC_COMPONENT.parent / n, tmp_path) for n in names]
    (tmp_path / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": [os.path.relpath(OVERLAYS[tree], tmp_path)],
                "components": components,
            }
        )
    )
    return kustomize_build(kubectl, tmp_path)


@pytest.mark.parametrize("tree", sorted(OVERLAYS))
def test_galleries_persist_on_a_claim_or_in_milvus(kubectl, k8s_validate, tree, tmp_path: Path):
    """Embedded galleries: a read-write claim at CCSCLIP_GALLERY_ROOT in both containers.
    Milvus: the URI in the ConfigMap and the token from a Secret, no volume."""
    docs = _with_components(kubectl, tree, tmp_path, "galleries-pvc")
    (claim,) = by_kind(docs, "PersistentVolumeClaim")
    root = config_data(docs)["CCSCLIP_GALLERY_ROOT"]
    for deployment in by_kind(docs, "Deployment"):
        volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
        for container in containers(deployment).values():
            mount = _covered_by(root, container["volumeMounts"])
            assert mount and not mount.get("readOnly")
            assert volumes[mount["name"]]["persistentVolumeClaim"] == {
                "claimName": claim["metadata"]["name"]
            }
        k8s_validate.validate(deployment, k8s_validate.latest_version(), strict=True)
    k8s_validate.validate(claim, k8s_validate.latest_version(), strict=True)

    (tmp_path / "milvus").mkdir()
    docs = _with_components(kubectl, tree, tmp_path / "milvus", "galleries-milvus")
    assert not by_kind(docs, "PersistentVolumeClaim")
    assert config_data(docs)["CCSCLIP_MILVUS_URI"].startswith("http")
    for deployment in by_kind(docs, "Deployment"):
        for container in containers(deployment).values():
            env = {e["name"]: e for e in container["env"]}
            assert PROFILE_ENV in env  # merged into, not replacing, the variant's env
            token = env["CCSCLIP_MILVUS_TOKEN"]["valueFrom"]["secretKeyRef"]
            assert token == {"name": "ccsclip-milvus", "key": "token"}
        k8s_validate.validate(deployment, k8s_validate.latest_version(), strict=True)


# --- the Grafana dashboard -----------------------------------------------------------------


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return load_dashboard()


def test_dashboard_is_a_grafana_dashboard(dashboard):
    assert dashboard["schemaVersion"] >= 38
    assert dashboard["title"] and dashboard["uid"]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    profile = variables["profile"]
    assert profile["type"] == "query" and profile["multi"] is True
    query = profile["query"]["query"]
    assert query.startswith("label_values(") and query.replace(" ", "").endswith(",profile)")
    assert promql_metric_names(variable_exprs(query)[0]) <= contract_series_names()
    panels = list(iter_panels(dashboard["panels"]))
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    for panel in panels:
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}"
            assert target["expr"].strip()


def test_dashboard_uses_only_contract_metrics(dashboard):
    allowed = contract_series_names()
    for expr in dashboard_exprs(dashboard):
        names = promql_metric_names(expr)
        assert names, f"no metric in {expr!r}"
        assert names <= allowed, f"{expr!r} uses {sorted(names - allowed)}"
    # Every metric family of the contract is on the dashboard.
    assert {metric_family(n) for n in dashboard_metric_names()} == set(CONTRACT_METRICS)


def test_dashboard_metric_check_catches_an_unknown_metric(dashboard):
    mutated = copy.deepcopy(dashboard)
    panel = next(p for p in iter_panels(mutated["panels"]) if p.get("targets"))
    panel["targets"][0]["expr"] = "sum(rate(ccsclip_request_total[5m]))"  # typo: request
    names = set().union(*(promql_metric_names(e) for e in dashboard_exprs(mutated)))
    assert "ccsclip_request_total" in names - contract_series_names()


def _panel_exprs(panel: dict[str, Any]) -> str:
    return "\n".join(t["expr"] for t in panel.get("targets", []))


def test_dashboard_has_the_required_panels(dashboard):
    panels = [p for p in iter_panels(dashboard["panels"]) if p["type"] != "row"]

    def having(*needles: str, types: tuple[str, ...] = ("timeseries",)) -> list[dict]:
        return [
            p for p in panels if p["type"] in types and all(n in _panel_exprs(p) for n in needles)
        ]

    assert having("ccsclip_probe_accuracy", "by (profile")
    assert having("ccsclip_probe_maxskew", "profile", "attribute", "k)")
    assert having("ccsclip_requests_total", "endpoint, profile, transport")
    assert having(
        "histogram_quantile(0.5,", "histogram_quantile(0.99,", "ccsclip_request_latency_seconds"
    )
    assert having("ccsclip_batch_size")
    assert having("ccsclip_text_cache_hits_total", "ccsclip_text_cache_misses_total")
    assert having("ccsclip_probe_failures_total")
    # Accuracy against MaxSkew, A and B side by side: an XY chart and a table.
    tradeoff = having("ccsclip_probe_accuracy", "ccsclip_probe_maxskew", types=("xychart", "table"))
    assert {p["type"] for p in tradeoff} == {"xychart", "table"}
    xy = next(p for p in tradeoff if p["type"] == "xychart")
    assert "$profile_a" in _panel_exprs(xy) and "$profile_b" in _panel_exprs(xy)
    assert len(xy["options"]["series"]) == 2


def test_promql_metric_name_parser():
    cases = {
        'histogram_quantile(0.99, sum by (le) (rate(a_bucket{x="y"}[5m])))': {"a_bucket"},
        "sum(rate(a_total[$__rate_interval])) / clamp_min(sum(rate(b_total[1m])), 1e-9)": {
            "a_total",
            "b_total",
        },
        "time() - max by (p) (c)": {"c"},
        '{__name__="d"}': {"d"},
        "e offset 1h30m and on(job) f": {"e", "f"},
        "max_over_time(g[1h:5m]) > bool .5": {"g"},
        'rate(x{a=~"rate(y)"}[5m])': {"x"},
        "i unless ignoring(a) group_left(b) j": {"i", "j"},
    }
    for expr, expected in cases.items():
        assert promql_metric_names(expr) == expected, expr
    assert variable_exprs("label_values(m{a='b'}, profile)") == ["m{a='b'}"]
    assert variable_exprs("label_values(profile)") == []


# --- access control and TLS (issue 12) -----------------------------------------------------


def _with_component(kubectl, tree: str, component: str, tmp_path: Path) -> list[dict[str, Any]]:
    (tmp_path / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": [os.path.relpath(OVERLAYS[tree], tmp_path)],
                "components": [os.path.relpath(BASE.parent / "components" / component, tmp_path)],
            }
        )
    )
    return kustomize_build(kubectl, tmp_path)


def _secret_mount(deployment: dict[str, Any], container: dict[str, Any], secret: str) -> str:
    volumes = deployment["spec"]["template"]["spec"]["volumes"]
    (name,) = [v["name"] for v in volumes if v.get("secret", {}).get("secretName") == secret]
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == name]
    assert mount["readOnly"] is True
    return mount["mountPath"]


@pytest.mark.parametrize("tree", sorted(OVERLAYS))
def test_overlays_turn_api_keys_on_from_a_secret(kubectl, tree):
    docs = render(kubectl, tree)
    keys_file = config_data(docs)["CCSCLIP_API_KEYS_FILE"]
    assert "CCSCLIP_API_KEYS" not in config_data(docs)  # never a key in the ConfigMap
    for deployment in by_kind(docs, "Deployment"):
        for container in containers(deployment).values():
            mount = _secret_mount(deployment, container, "ccsclip-api-keys")
            assert keys_file.startswith(mount.rstrip("/") + "/")
    assert "CCSCLIP_API_KEYS_FILE" not in config_data(render(kubectl, "base"))  # off in the base


@pytest.mark.parametrize("tree", sorted(OVERLAYS))
def test_tls_component(kubectl, k8s_validate, tree, tmp_path: Path):
    docs = _with_component(kubectl, tree, "tls", tmp_path)
    data = config_data(docs)
    health = int(data["CCSCLIP_GRPC_HEALTH_PORT"])
    for deployment in by_kind(docs, "Deployment"):
        http, grpc = containers(deployment)["http"], containers(deployment)["grpc"]
        for container in (http, grpc):
            mount = _secret_mount(deployment, container, "ccsclip-tls")
            for key in ("CCSCLIP_TLS_CERT_FILE", "CCSCLIP_TLS_KEY_FILE"):
                assert data[key].startswith(mount.rstrip("/") + "/")
        for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert http[kind]["httpGet"]["scheme"] == "HTTPS"
            assert grpc[kind]["grpc"]["port"] == health  # kubelet probes speak no TLS
        assert health in {p["containerPort"] for p in grpc["ports"]}
        k8s_validate.validate(deployment, k8s_validate.latest_version(), strict=True)
    (monitor,) = by_kind(docs, "ServiceMonitor")
    assert {e["scheme"] for e in monitor["spec"]["endpoints"]} == {"https"}


def test_dashboard_shows_the_judges_figures_for_a_and_b():
    """The row of the judge's figures queries their counters, for the A and B profiles."""
    figures = dashboard_metric_names(figures=True) - dashboard_metric_names()
    assert figures and figures <= set(LIVE_FIGURE_METRICS)
    for metric in ("live_excess_maxskew", "shadow_top1_agreement", "shadow_embed_cosine"):
        parts = {f"ccsclip_{metric}_{p}_total" for p in ("observations", "positive", "negative")}
        assert parts <= figures, metric
    exprs = [e for e in dashboard_exprs(load_dashboard()) if "_observations_total" in e]
    assert exprs and all("$profile_a" in e and "$profile_b" in e for e in exprs)
