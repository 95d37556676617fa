"""Milvus down: 503 / UNAVAILABLE with a retry-after on both transports, local galleries still
served, and Milvus galleries served again by themselves once the server is back.

The `milvus-lite server` process the servers use is stopped, then started again on the same port
and data folder; the HTTP (2 workers) and gRPC servers are never restarted.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import grpc
import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from gallery_fixtures import (  # noqa: E402
    GalleryGrpc,
    GalleryHttp,
    gallery_env,
    start_milvus,
    start_servers,
)
from service_fixtures import ApiError, grpc_ready, http_ready, make_world, wait_ready  # noqa: E402

pytestmark = pytest.mark.slow


def restart_milvus(root: Path, uri: str) -> subprocess.Popen:
    port = uri.rsplit(":", 1)[1]
    log = (root / "milvus-again.log").open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "milvus_lite", "server", "--data-dir", str(root / "milvus")]
        + ["--host", "127.0.0.1", "--port", port],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def eventually(call, seconds: float = 120.0):
    """The call's answer once it succeeds; until then only 503 (retry later) is allowed."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return call()
        except ApiError as exc:
            assert exc.status == 503, exc.body
            assert time.monotonic() < deadline, f"not recovered within {seconds} s"
            time.sleep(1)


def test_milvus_down_answers_503_and_recovers_by_itself(tmp_path):
    world = make_world(tmp_path / "world")
    milvus, uri = start_milvus(tmp_path)
    http_server, grpc_server = start_servers(world, tmp_path, gallery_env(tmp_path / "store", uri))
    again = None
    try:
        wait_ready(http_server, http_ready)
        wait_ready(grpc_server, grpc_ready)
        http, rpc = GalleryHttp(http_server), GalleryGrpc(grpc_server)
        image = sorted((world.world / "gallery").glob("*.png"))[0].read_bytes()
        for backend in ("milvus", "exact"):
            http.create(f"m-{backend}", backend=backend)
            rpc.upsert(f"m-{backend}", [("a", image, {"n": 1}), ("b", image, {"n": 2})])
        before = http.search("m-milvus", image=image, k=2)["hits"]
        assert {h["id"] for h in before} == {"a", "b"}

        milvus.terminate()
        milvus.wait(30)
        raw = httpx.post(
            f"{http.base}/v1/galleries/search",
            json={"gallery": "m-milvus", "text": "a circle"},
            timeout=60,
        )
        assert raw.status_code == 503 and int(raw.headers["retry-after"]) > 0, raw.text
        assert raw.json()["kind"] == "unavailable" and "Milvus" in raw.json()["error"]
        request = rpc.pb.SearchGalleryRequest(gallery="m-milvus", text="a circle")
        with pytest.raises(grpc.RpcError) as refused:
            rpc.stub.SearchGallery(request, timeout=60)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        trailers = dict(refused.value.trailing_metadata() or ())
        assert int(trailers["retry-after"]) > 0
        for client in (http, rpc):
            for call in (
                lambda c=client: c.upsert("m-milvus", [("c", image, None)]),
                lambda c=client: c.create("m-new", backend="milvus"),
                lambda c=client: c.list(),
            ):
                with pytest.raises(ApiError) as down:
                    call()
                assert down.value.status == 503, down.value.body
            # a local gallery does not depend on Milvus
            assert int(client.info("m-exact")["count"]) == 2
            assert client.search("m-exact", image=image, k=1)["hits"][0]["id"] in ("a", "b")

        again = restart_milvus(tmp_path, uri)
        after = eventually(lambda: http.search("m-milvus", image=image, k=2)["hits"])
        assert [h["id"] for h in after] == [h["id"] for h in before]
        for client in (http, rpc, GalleryHttp(http_server)):  # every process recovers
            assert int(eventually(lambda c=client: c.info("m-milvus"))["count"]) == 2
        eventually(lambda: rpc.upsert("m-milvus", [("c", image, None)]))
        assert int(http.info("m-milvus")["count"]) == 3
        http.close()
        rpc.close()
    finally:
        for server in (http_server, grpc_server):
            server.stop()
        for process in (milvus, again):
            if process is not None and process.poll() is None:
                process.terminate()
                process.wait(30)
