"""Fixtures for the gallery API tests: a milvus-lite server, both real servers, gallery clients.

The servers are started as in tests/service_fixtures.py, with a gallery folder
(CCSCLIP_GALLERY_ROOT) and the URI of a `milvus-lite server` process (CCSCLIP_MILVUS_URI): the
same MilvusClient code that talks to a Milvus cluster. Clients return plain dicts over both
transports and raise ApiError (HTTP status, or the gRPC code's HTTP equivalent).
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from service_fixtures import (  # noqa: E402
    GrpcClient,
    HttpClient,
    Server,
    World,
    b64,
    free_port,
    grpc_ready,
    http_ready,
    start_grpc,
    start_http,
    wait_ready,
)


def start_milvus(root: Path) -> tuple[subprocess.Popen, str]:
    """`milvus-lite server` on a free port; returns (process, URI) once it answers."""
    from pymilvus import MilvusClient

    port = free_port()
    log = (root / "milvus.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "milvus_lite", "server", "--data-dir", str(root / "milvus")]
        + ["--host", "127.0.0.1", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            client = MilvusClient(uri=uri, timeout=5)
            client.list_collections()
            client.close()
            return process, uri
        except Exception:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(
                    f"milvus-lite server did not start:\n{(root / 'milvus.log').read_text()}"
                )
            time.sleep(0.5)


def gallery_env(root: Path, milvus_uri: str | None) -> dict[str, str]:
    env = {"CCSCLIP_GALLERY_ROOT": str(root), "CCSCLIP_GALLERY_COMPACT_BYTES": str(64 * 1024)}
    if milvus_uri:
        env["CCSCLIP_MILVUS_URI"] = milvus_uri
    return env


class _EnvWorld:
    """A World whose env() adds the gallery settings."""

    def __init__(self, world: World, extra: dict[str, str]) -> None:
        self._world, self._extra = world, extra

    def env(self) -> dict[str, str]:
        return {**self._world.env(), **self._extra}


def start_servers(world: World, root: Path, extra: dict[str, str]) -> tuple[Server, Server]:
    wrapped: Any = _EnvWorld(world, extra)
    return start_http(wrapped, root), start_grpc(wrapped, root)


@contextmanager
def running_gallery_servers(
    world: World, root: Path, milvus_uri: str | None = None
) -> Iterator[dict[str, Any]]:
    """HTTP (2 workers) and gRPC servers on one gallery folder `root/store`, ready; stopped
    (whole process trees) on exit."""
    http, grpc_server = start_servers(world, root, gallery_env(root / "store", milvus_uri))
    try:
        wait_ready(http, http_ready)
        wait_ready(grpc_server, grpc_ready)
        yield {"http": http, "grpc": grpc_server, "store": root / "store"}
    finally:
        for server in (http, grpc_server):
            server.stop()


def start_grpc_only(world: World, root: Path, extra: dict[str, str]) -> Server:
    return start_grpc(_EnvWorld(world, extra), root)  # type: ignore[arg-type]


class GalleryHttp(HttpClient):
    def create(self, gallery, backend=None, profile=None, params=None, bias_attributes=None):
        body: dict[str, Any] = {"gallery": gallery}
        pairs = (("backend", backend), ("profile", profile), ("params", params))
        for key, value in (*pairs, ("bias_attributes", bias_attributes)):
            if value is not None:
                body[key] = value
        return self.post("/v1/galleries/create", body)

    def upsert(self, gallery, items, profile=None):
        body: dict[str, Any] = {
            "gallery": gallery,
            "items": [
                {"id": i, "image": b64(img), **({"metadata": m} if m is not None else {})}
                for i, img, m in items
            ],
        }
        if profile is not None:
            body["profile"] = profile
        return self.post("/v1/galleries/upsert", body)

    def delete(self, gallery, ids):
        return self.post("/v1/galleries/delete", {"gallery": gallery, "ids": ids})

    def drop(self, gallery):
        return self.post("/v1/galleries/drop", {"gallery": gallery})

    def info(self, gallery):
        return self.post("/v1/galleries/info", {"gallery": gallery})

    def list(self):
        return self.post("/v1/galleries/list", {})

    def search(self, gallery, text=None, image=None, k=None, filter=None, ef=None, profile=None):
        body: dict[str, Any] = {"gallery": gallery}
        if image is not None:
            body["image"] = b64(image)
        for key, value in (("text", text), ("k", k), ("filter", filter), ("ef", ef)):
            if value is not None:
                body[key] = value
        if profile is not None:
            body["profile"] = profile
        return self.post("/v1/galleries/search", body)


class GalleryGrpc(GrpcClient):
    def _struct(self, data):
        from google.protobuf.struct_pb2 import Struct

        out = Struct()
        out.update(data)
        return out

    def create(self, gallery, backend=None, profile=None, params=None, bias_attributes=None):
        request = self.pb.CreateGalleryRequest(gallery=gallery)
        request.bias_attributes.extend(bias_attributes or [])
        if backend is not None:
            request.backend = backend
        if profile is not None:
            request.profile = profile
        if params is not None:
            request.params.CopyFrom(self._struct(params))
        return self.call("CreateGallery", request)

    def upsert(self, gallery, items, profile=None):
        request = self.pb.UpsertItemsRequest(gallery=gallery)
        for item_id, image, meta in items:
            item = request.items.add(id=item_id, image=image)
            if meta is not None:
                item.metadata.CopyFrom(self._struct(meta))
        if profile is not None:
            request.profile = profile
        return self.call("UpsertItems", request)

    def delete(self, gallery, ids):
        return self.call("DeleteItems", self.pb.DeleteItemsRequest(gallery=gallery, ids=ids))

    def drop(self, gallery):
        return self.call("DropGallery", self.pb.DropGalleryRequest(gallery=gallery))

    def info(self, gallery):
        return self.call("GalleryInfo", self.pb.GalleryInfoRequest(gallery=gallery))

    def list(self):
        return self.call("ListGalleries", self.pb.ListGalleriesRequest())

    def search(self, gallery, text=None, image=None, k=None, filter=None, ef=None, profile=None):
        request = self.pb.SearchGalleryRequest(gallery=gallery)
        if text is not None:
            request.text = text
        if image is not None:
            request.image = image
        if k is not None:
            request.k = k
        if ef is not None:
            request.ef = ef
        if profile is not None:
            request.profile = profile
        if filter is not None:
            request.filter.CopyFrom(self._struct(filter))
        return self.call("SearchGallery", request)
