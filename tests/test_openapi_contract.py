"""The published OpenAPI document is the service's contract: schemathesis, with every check, a
fixed seed and a bounded number of cases per operation, against a real `bentoml serve` of the
test bundle (with a writable gallery root, so the gallery routes do their work), finds no
failure and no server error (tests/openapi_contract.py; the image test runs the same check
against the container)."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from openapi_contract import check_contract  # noqa: E402
from service_fixtures import http_ready, make_world, start_http, wait_ready  # noqa: E402


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("contract")
    world = make_world(root / "world")
    extra = {"CCSCLIP_GALLERY_ROOT": str(root / "galleries")}
    http = start_http(world, root, workers=1, extra=extra)
    try:
        wait_ready(http, http_ready)
        yield f"http://127.0.0.1:{http.ports['http']}"
    finally:
        http.stop()


def test_the_document_lists_every_route_with_its_statuses(server):
    from ccsclip.service.endpoints import ENDPOINTS

    document = httpx.get(f"{server}/docs.json", timeout=10).json()
    assert document["openapi"].startswith("3.1")
    for endpoint in ENDPOINTS:
        operation = document["paths"][endpoint.route]["post"]
        assert {"200", "400", "413"} <= set(operation["responses"]), endpoint.name
        assert {str(s) for s in endpoint.errors} <= set(operation["responses"]), endpoint.name
    create = document["paths"]["/v1/galleries/create"]["post"]
    assert "409" in create["responses"]
    info = document["components"]["schemas"]["GalleryInfo"]["properties"]["last_write_at"]
    assert {"type": "null"} in info["anyOf"]


def test_malformed_json_is_a_400_on_every_route(server):
    from ccsclip.service.endpoints import ENDPOINTS

    for endpoint in ENDPOINTS:
        reply = httpx.post(
            f"{server}{endpoint.route}",
            content=b'{"items": [',
            headers={"content-type": "application/json"},
            timeout=30,
        )
        assert reply.status_code == 400, (endpoint.route, reply.text)
        assert reply.json()["kind"] == "invalid" and "not valid JSON" in reply.json()["error"]


def test_schemathesis_finds_no_failure(server, tmp_path):
    run = check_contract(f"{server}/docs.json", tmp_path / "schemathesis")
    assert run.operations == 13 + 4, run.output  # the table's routes and BentoML's four
    assert run.cases >= 13 * 30, run.output  # it did generate a few hundred cases
    assert run.failures == [], run.output
    assert run.server_errors == 0, run.output
