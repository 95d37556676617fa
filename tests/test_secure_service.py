"""Access control, TLS/mTLS and load shedding on the real servers (`bentoml serve`, `ccsclip
serve-grpc`), started once with keys, certificates the test makes, and a concurrency limit of 1.

The HTTP surplus is made deterministic with a client that sends its headers and holds its body
back: the gate has admitted it (one call in flight) while the next call arrives. gRPC counts a
call once its message has arrived, so there a burst of real calls from many threads overlaps.
"""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import ssl
import sys
import threading
from pathlib import Path

import grpc
import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from pki import make_pki  # noqa: E402
from service_fixtures import (  # noqa: E402
    BIN,
    Server,
    _start,
    b64,
    free_port,
    make_world,
    wait_ready,
)

READ_KEY = "read-key-0123456789-abcdefghij"
WRITE_KEY = "write-key-9876543210-zyxwvutsrq"
WRONG_KEY = "wrong-key-5555555555-notakeyatall"
SECRETS = (READ_KEY, WRITE_KEY, WRONG_KEY)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("secure")
    world = make_world(root)
    pki = make_pki(root / "pki")
    keys = root / "keys"
    # the Secret holds the read key itself and only the digest of the write key
    digest = hashlib.sha256(WRITE_KEY.encode()).hexdigest()
    keys.write_text(f"# api keys\nread:{READ_KEY}\nwrite:sha256:{digest}\n")
    env = {
        **world.env(),
        "CCSCLIP_API_KEYS_FILE": str(keys),
        "CCSCLIP_METRICS_REQUIRE_KEY": "true",
        "CCSCLIP_TLS_CERT_FILE": str(pki.server.cert),
        "CCSCLIP_TLS_KEY_FILE": str(pki.server.key),
        "CCSCLIP_TLS_CLIENT_CA_FILE": str(pki.ca),
        "CCSCLIP_HTTP_MAX_CONCURRENCY": "1",
        "CCSCLIP_GRPC_MAX_CONCURRENCY": "1",
        "CCSCLIP_GRPC_WORKERS": "4",
        "CCSCLIP_GALLERY_ROOT": str(root / "galleries"),  # live galleries: real write calls
    }
    http_port, grpc_port, metrics_port, health_port = (free_port() for _ in range(4))
    http = Server(
        "http",
        _start(
            "http",
            [str(BIN / "bentoml"), "serve", "service:CCSClip", "--host", "127.0.0.1"]
            + ["--port", str(http_port)],
            {**env, "BENTOML_HOME": str(root / "bentoml-home"), "CCSCLIP_HTTP_WORKERS": "1"},
            root / "http.log",
        ),
        root / "http.log",
        {"http": http_port},
    )
    grpc_env = {
        **env,
        "CCSCLIP_GRPC_PORT": str(grpc_port),
        "CCSCLIP_GRPC_METRICS_PORT": str(metrics_port),
        "CCSCLIP_GRPC_HEALTH_PORT": str(health_port),
        "CCSCLIP_GRPC_HOST": "127.0.0.1",
    }
    grpc_server = Server(
        "grpc",
        _start("grpc", [str(BIN / "ccsclip"), "serve-grpc"], grpc_env, root / "grpc.log"),
        root / "grpc.log",
        {"grpc": grpc_port, "metrics": metrics_port, "health": health_port},
    )
    state = {"pki": pki, "http": http, "grpc": grpc_server, "world": world}
    try:
        wait_ready(http, lambda s: _https_ready(state))
        wait_ready(grpc_server, lambda s: _plain_health(health_port) == "SERVING")
        yield state
    finally:
        http.stop()
        grpc_server.stop()


# --------------------------------------------------------------------------- clients


def _tls_context(pki, client=True, stranger=False) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki.ca))
    if client:
        pair = pki.stranger if stranger else pki.client
        context.load_cert_chain(str(pair.cert), str(pair.key))
    return context


def _https(state, **kw) -> httpx.Client:
    context = _tls_context(state["pki"], **kw)
    return httpx.Client(
        base_url=f"https://127.0.0.1:{state['http'].ports['http']}", verify=context, timeout=60
    )


def _https_ready(state) -> bool:
    try:
        with _https(state) as client:
            return client.get("/readyz", timeout=2).status_code == 200
    except (httpx.HTTPError, ssl.SSLError, OSError):
        return False


def _plain_health(port: int) -> str:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=2
            )
        except grpc.RpcError as exc:
            return exc.code().name
    return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)


def _channel(state, client=True, stranger=False) -> grpc.Channel:
    pki = state["pki"]
    pair = pki.stranger if stranger else pki.client
    credentials = grpc.ssl_channel_credentials(
        root_certificates=pki.ca.read_bytes(),
        private_key=pair.key.read_bytes() if client else None,
        certificate_chain=pair.cert.read_bytes() if client else None,
    )
    return grpc.secure_channel(f"localhost:{state['grpc'].ports['grpc']}", credentials)


def _zero_shot_body(state, n: int = 1) -> dict:
    world = state["world"]
    images = sorted((world.world / "accuracy-shape").rglob("*.png"))[:n]
    return {"images": [b64(p.read_bytes()) for p in images], "labels": ["circle", "square"]}


def _grpc_zero_shot(state, stub, key: str | None, n: int = 1, labels: list[str] | None = None):
    from ccsclip.v1 import ccsclip_pb2 as pb

    body = _zero_shot_body(state, n)
    request = pb.ZeroShotRequest(
        images=[base64.b64decode(i) for i in body["images"]], labels=labels or body["labels"]
    )
    metadata = [("authorization", f"Bearer {key}")] if key else None
    return stub.ZeroShot(request, metadata=metadata, timeout=60)


def _stub(channel):
    from ccsclip.v1 import ccsclip_pb2_grpc as pb_grpc

    return pb_grpc.CCSClipStub(channel)


def _bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


# --------------------------------------------------------------------------- TLS


def test_https_needs_a_client_certificate_from_the_ca(setup):
    with _https(setup) as client:
        assert client.get("/readyz").status_code == 200
    for kw in ({"client": False}, {"stranger": True}):
        with pytest.raises((httpx.HTTPError, ssl.SSLError, OSError)):
            with _https(setup, **kw) as client:
                client.get("/readyz")
    with pytest.raises(httpx.HTTPError):  # plaintext to the TLS port
        httpx.get(f"http://127.0.0.1:{setup['http'].ports['http']}/readyz", timeout=5)


def test_grpc_mtls_and_the_plaintext_health_port(setup):
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with _channel(setup) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=10
        )
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        assert _grpc_zero_shot(setup, _stub(channel), READ_KEY).results
    for kw in ({"client": False}, {"stranger": True}):
        with _channel(setup, **kw) as channel:
            with pytest.raises(grpc.RpcError) as caught:
                health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(), timeout=10
                )
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    # the API port speaks TLS only; the health-only port (for kubelet probes) is plaintext
    assert _plain_health(setup["grpc"].ports["grpc"]) == "UNAVAILABLE"
    assert _plain_health(setup["grpc"].ports["health"]) == "SERVING"


# --------------------------------------------------------------------------- keys


def test_http_keys(setup):
    body = _zero_shot_body(setup)
    with _https(setup) as client:
        assert client.get("/readyz").status_code == 200  # open
        assert client.get("/livez").status_code == 200
        missing = client.post("/v1/zero_shot", json=body)
        assert missing.status_code == 401, missing.text
        assert missing.headers["www-authenticate"] == "Bearer"
        assert missing.json()["kind"] == "unauthenticated"
        wrong = client.post("/v1/zero_shot", json=body, headers=_bearer(WRONG_KEY))
        assert wrong.status_code == 401
        ok = client.post("/v1/zero_shot", json=body, headers=_bearer(READ_KEY))
        assert ok.status_code == 200, ok.text
        assert ok.json()["results"][0]["top"]
        ok = client.post("/v1/zero_shot", json=body, headers=_bearer(WRITE_KEY))
        assert ok.status_code == 200, ok.text
        # a state-changing call (issue 11's names): a read key is refused before routing
        for path in ("/v1/galleries/create", "/v1/galleries/upsert", "/v1/galleries/drop"):
            denied = client.post(path, json={}, headers=_bearer(READ_KEY))
            assert denied.status_code == 403, denied.text
            assert denied.json()["kind"] == "permission_denied"
            assert client.post(path, json={}).status_code == 401
            allowed = client.post(path, json={}, headers=_bearer(WRITE_KEY))
            assert allowed.status_code not in (401, 403)
        # /metrics needs a key here (CCSCLIP_METRICS_REQUIRE_KEY)
        assert client.get("/metrics").status_code == 401
        metrics = client.get("/metrics", headers=_bearer(READ_KEY))
        assert metrics.status_code == 200 and "ccsclip_requests_total" in metrics.text
        assert 'code="401"' in metrics.text


def test_grpc_keys(setup):
    from ccsclip.v1 import ccsclip_pb2 as pb

    with _channel(setup) as channel:
        stub = _stub(channel)
        for key in (None, WRONG_KEY):
            with pytest.raises(grpc.RpcError) as caught:
                _grpc_zero_shot(setup, stub, key)
            assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert json.loads(caught.value.details())["kind"] == "unauthenticated"
        assert _grpc_zero_shot(setup, stub, READ_KEY).results
        assert _grpc_zero_shot(setup, stub, WRITE_KEY).results
        profiles = stub.ListProfiles(
            pb.ListProfilesRequest(), metadata=[("authorization", f"Bearer {READ_KEY}")]
        )
        assert profiles.profiles
        # a state-changing method (issue 11's names): refused by scope before method lookup
        create = channel.unary_unary("/ccsclip.v1.CCSClip/CreateGallery")
        for key, code in ((READ_KEY, "PERMISSION_DENIED"), (None, "UNAUTHENTICATED")):
            metadata = [("authorization", f"Bearer {key}")] if key else None
            with pytest.raises(grpc.RpcError) as caught:
                create(b"", metadata=metadata, timeout=10)
            assert caught.value.code().name == code
        with pytest.raises(grpc.RpcError) as caught:
            create(b"", metadata=[("authorization", f"Bearer {WRITE_KEY}")], timeout=10)
        assert caught.value.code() not in (
            grpc.StatusCode.UNAUTHENTICATED,
            grpc.StatusCode.PERMISSION_DENIED,
        )
    # the gRPC process's metrics endpoint: same TLS, same key rule
    url = f"https://localhost:{setup['grpc'].ports['metrics']}/metrics"
    context = _tls_context(setup["pki"])
    assert httpx.get(url, verify=context, timeout=10).status_code == 401
    reply = httpx.get(url, verify=context, headers=_bearer(READ_KEY), timeout=10)
    assert reply.status_code == 200
    assert 'code="UNAUTHENTICATED"' in reply.text


def test_gallery_writes_need_a_write_key_on_both_transports(setup):
    """With live galleries on, a write key grows a gallery and a read key can search it but
    not change it: over HTTP and over gRPC, against the same store."""
    from google.protobuf.struct_pb2 import Struct

    from ccsclip.v1 import ccsclip_pb2 as pb

    image = sorted((setup["world"].world / "gallery").rglob("*.png"))[0].read_bytes()
    upsert = {"gallery": "keyed", "items": [{"id": "a", "image": b64(image)}]}
    with _https(setup) as client:
        created = client.post(
            "/v1/galleries/create", json={"gallery": "keyed"}, headers=_bearer(WRITE_KEY)
        )
        assert created.status_code == 200, created.text
        denied = client.post("/v1/galleries/upsert", json=upsert, headers=_bearer(READ_KEY))
        assert denied.status_code == 403 and denied.json()["kind"] == "permission_denied"
        written = client.post("/v1/galleries/upsert", json=upsert, headers=_bearer(WRITE_KEY))
        assert written.status_code == 200, written.text
        found = client.post(
            "/v1/galleries/search",
            json={"gallery": "keyed", "text": "a shape", "k": 1},
            headers=_bearer(READ_KEY),
        )
        assert found.status_code == 200, found.text
        assert [hit["id"] for hit in found.json()["hits"]] == ["a"]
    with _channel(setup) as channel:
        stub = _stub(channel)
        item = pb.GalleryItem(id="b", image=image, metadata=Struct())
        request = pb.UpsertItemsRequest(gallery="keyed", items=[item])
        with pytest.raises(grpc.RpcError) as caught:
            stub.UpsertItems(request, metadata=[("authorization", f"Bearer {READ_KEY}")])
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
        stub.UpsertItems(request, metadata=[("authorization", f"Bearer {WRITE_KEY}")])
        info = stub.GalleryInfo(
            pb.GalleryInfoRequest(gallery="keyed"),
            metadata=[("authorization", f"Bearer {READ_KEY}")],
        )
        assert info.count == 2


def test_keys_never_reach_logs_or_bodies(setup):
    bodies = []
    with _https(setup) as client:
        for key in SECRETS:
            for path in ("/v1/zero_shot", "/v1/galleries/drop", "/v1/nowhere"):
                reply = client.post(path, json={}, headers=_bearer(key))
                bodies.append(reply.text)
    with _channel(setup) as channel:
        for key in SECRETS:
            try:
                _grpc_zero_shot(setup, _stub(channel), key)
            except grpc.RpcError as exc:
                bodies.append(exc.details() or "")
    logs = setup["http"].log.read_text(errors="replace") + setup["grpc"].log.read_text(
        errors="replace"
    )
    assert logs and bodies
    for key in SECRETS:
        assert key not in logs
        for body in bodies:
            assert key not in body


# --------------------------------------------------------------------------- shedding


def test_http_surplus_is_shed_and_the_service_stays_ready(setup):
    body = json.dumps(_zero_shot_body(setup)).encode()
    port = setup["http"].ports["http"]
    context = _tls_context(setup["pki"])
    raw = context.wrap_socket(
        socket.create_connection(("127.0.0.1", port)), server_hostname="localhost"
    )
    head = (
        f"POST /v1/zero_shot HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n"
        f"authorization: Bearer {READ_KEY}\r\ncontent-length: {len(body)}\r\n\r\n"
    ).encode()
    raw.sendall(head + body[:10])  # admitted, in flight, waiting for the rest of its body
    try:
        with _https(setup) as client:
            for _ in range(20):  # until the server has read the held call's headers
                surplus = client.post("/v1/zero_shot", content=body, headers=_bearer(READ_KEY))
                if surplus.status_code == 429:
                    break
            assert surplus.status_code == 429, surplus.text
            assert surplus.headers["retry-after"] == "1"
            assert surplus.json()["kind"] == "overloaded"
            assert client.get("/readyz").status_code == 200
            assert client.get("/livez").status_code == 200
            raw.sendall(body[10:])  # the held call completes and is answered
            answer = raw.recv(65536).decode(errors="replace")
            assert answer.startswith("HTTP/1.1 200"), answer[:200]
            ok = client.post("/v1/zero_shot", content=body, headers=_bearer(READ_KEY))
            assert ok.status_code == 200
            metrics = client.get("/metrics", headers=_bearer(READ_KEY)).text
            assert 'code="429"' in metrics
    finally:
        raw.close()


def test_grpc_surplus_is_shed_and_the_service_stays_ready(setup):
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    codes: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(12)

    def call() -> None:
        # connected (TLS handshake done) before the barrier, so the calls leave together; each
        # with its own 100 labels (no text cache hit) and 8 images, so they last a while
        labels = [f"{threading.get_ident()} label {i}" for i in range(100)]
        with _channel(setup) as channel:
            grpc.channel_ready_future(channel).result(timeout=30)
            stub = _stub(channel)
            start.wait()
            try:
                _grpc_zero_shot(setup, stub, READ_KEY, n=8, labels=labels)
                code = "OK"
            except grpc.RpcError as exc:
                code = exc.code().name
        with lock:
            codes.append(code)

    threads = [threading.Thread(target=call) for _ in range(12)]
    for thread in threads:
        thread.start()
    with _channel(setup) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        statuses = [health.Check(health_pb2.HealthCheckRequest(), timeout=10).status]
        for thread in threads:
            thread.join(120)
        statuses.append(health.Check(health_pb2.HealthCheckRequest(), timeout=10).status)
        assert set(statuses) == {health_pb2.HealthCheckResponse.SERVING}
        assert _grpc_zero_shot(setup, _stub(channel), READ_KEY).results  # the slot was released
    assert set(codes) <= {"OK", "RESOURCE_EXHAUSTED"}, codes
    assert "RESOURCE_EXHAUSTED" in codes and "OK" in codes, codes
