"""Session fixtures for the service tests: a real bundle, world files and both real servers.

The bundle is the embedded default (`ccsclip-organism`, shipped weights) with `baseline` and one
pruned profile, or `ccsclip-tiny` with random weights while the organism weights do not exist.
Both servers are started as the deployment starts them (`bentoml serve service:CCSClip` from the
project root, `ccsclip serve-grpc`) on free localhost ports, with two BentoML workers so metrics
are checked in multiprocess mode, and stopped with SIGTERM.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from ccsclip.models.loading import embedded_weights_path
from ccsclip.service.proctree import reap, tree

sys.path.insert(0, str(Path(__file__).parent))
from engine_fixtures import DEFAULT, build_test_bundle  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PRUNED = "pruned"
PROFILES = (DEFAULT, PRUNED)
GALLERY = "shapes"
PROBES = ("accuracy-colour", "accuracy-shape", "bias-shape-colour")
# Small limits, so the bad-request corpus is cheap to build and to send.
LIMITS = {
    "CCSCLIP_MAX_REQUEST_BYTES": str(2 * 1024 * 1024),
    "CCSCLIP_MAX_IMAGES_PER_REQUEST": "8",
    "CCSCLIP_MAX_IMAGE_PIXELS": str(1024 * 1024),
    "CCSCLIP_MAX_LABELS": "100",
    "CCSCLIP_MAX_TEMPLATES": "8",
    "CCSCLIP_MAX_K": "50",
}
STATUS_OF_CODE = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 413,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.FAILED_PRECONDITION: 409,
    grpc.StatusCode.UNAVAILABLE: 503,
}


def organism_weights_exist() -> bool:
    try:
        return embedded_weights_path("ccsclip-organism").is_file()
    except Exception:
        return False


def model_args() -> tuple[str, str | None]:
    """The organism with its shipped weights; CCSCLIP_TEST_ORGANISM_WEIGHTS (a checkpoint file)
    tries weights not shipped yet; else ccsclip-tiny, random."""
    candidate = os.environ.get("CCSCLIP_TEST_ORGANISM_WEIGHTS")
    if candidate and Path(candidate).is_file():
        return "ccsclip-organism", candidate
    return ("ccsclip-organism", "embedded") if organism_weights_exist() else ("ccsclip-tiny", None)


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A free localhost port, never one this process handed out before: the kernel may give a
    just-closed port again, and two servers (or two published container ports) then clash."""
    for _ in range(1000):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port
    raise RuntimeError("no free localhost port that was not handed out already")


# --------------------------------------------------------------------------- files


@dataclass
class World:
    """Everything on disk the servers and the tests share."""

    root: Path
    loaded: Any  # the torch model the bundle was exported from
    bundle: Path
    world: Path
    gallery: Path
    probe_dirs: list[Path]
    organism: bool

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "BENTOML_DO_NOT_TRACK": "True",
            "CCSCLIP_BUNDLE": str(self.bundle),
            "CCSCLIP_GALLERIES": str(self.gallery),
            "CCSCLIP_PROBES": ",".join(map(str, self.probe_dirs)),
            "CCSCLIP_PROBE_INTERVAL_S": "3600",
            # stored probe results (service/probe_cache.py): per test world, never ~/.cache
            "CCSCLIP_PROBE_CACHE_DIR": str(self.root / "probe-cache"),
            "CCSCLIP_THREADS": "1",
            **LIMITS,
        }


def make_world(root: Path) -> World:
    from ccsclip.engine.engine import Engine
    from ccsclip.engine.galleries.bulk import index_into, open_or_create
    from ccsclip.engine.galleries.store import GalleryStore
    from ccsclip.models import load_model
    from ccsclip.organism.probes import generate_all

    name, pretrained = model_args()
    loaded = load_model(name, pretrained)
    bundle = build_test_bundle(loaded, root / "bundle")
    world = root / "world"
    generate_all(world, 0, n_per_class=4, n_per_cell=2, n_gallery=24, n_calibration=1)
    engine = Engine.load(bundle, intra_op_threads=1)
    store = GalleryStore(engine, root / "galleries")  # what `ccsclip index` does
    index_into(engine, open_or_create(store, GALLERY, DEFAULT, "exact", {}), world / "gallery")
    gallery = root / "galleries" / GALLERY  # served read-only, as a bundle ships it
    return World(
        root=root,
        loaded=loaded,
        bundle=bundle,
        world=world,
        gallery=gallery,
        probe_dirs=[world / p for p in PROBES],
        organism=name == "ccsclip-organism",
    )


# --------------------------------------------------------------------------- servers


class ApiError(Exception):
    """A refused request: `status` is HTTP's, or gRPC's code as its HTTP equivalent."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(f"{status}: {body}")
        self.status = status
        self.body = body


@dataclass
class Server:
    name: str
    process: subprocess.Popen
    log: Path
    ports: dict[str, int] = field(default_factory=dict)
    survivors: list[int] = field(default_factory=list)

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait; whatever of its process tree still runs after `timeout` is killed.

        The tree is listed first: BentoML's workers run in sessions of their own (a signal to
        the process group misses them) and, once the server is gone, cannot be found from it.
        `survivors` keeps the pids that had to be killed (tests assert there are none).
        """
        descendants = tree(self.process.pid)[1:]
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.survivors = reap(descendants, timeout=10)
        return self.process.returncode

    def tree(self) -> list[int]:
        """The pids of the server and its descendants that run now."""
        return [p.pid for p in tree(self.process.pid)]

    def log_tail(self, n: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else ""


def _start(name: str, args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    handle = log.open("wb")
    return subprocess.Popen(
        args, cwd=REPO, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
    )


def start_http(
    world: World,
    root: Path,
    workers: int = 2,
    home: Path | None = None,
    name: str = "http",
    extra: dict[str, str] | None = None,
) -> Server:
    """`bentoml serve` on a free port; BENTOML_HOME is `home` (default: `root/bentoml-home`);
    `extra` adds or overrides environment variables."""
    port = free_port()
    env = {
        **world.env(),
        "BENTOML_HOME": str(home or root / "bentoml-home"),
        "CCSCLIP_HTTP_WORKERS": str(workers),
        **(extra or {}),
    }
    log = root / f"{name}.log"
    args = [str(BIN / "bentoml"), "serve", "service:CCSClip", "--host", "127.0.0.1"]
    process = _start(name, [*args, "--port", str(port)], env, log)
    return Server(name, process, log, {"http": port})


def start_grpc(
    world: World, root: Path, name: str = "grpc", extra: dict[str, str] | None = None
) -> Server:
    """`ccsclip serve-grpc` on free ports; `extra` adds or overrides environment variables."""
    port, metrics = free_port(), free_port()
    env = {
        **world.env(),
        "CCSCLIP_GRPC_PORT": str(port),
        "CCSCLIP_GRPC_METRICS_PORT": str(metrics),
        "CCSCLIP_GRPC_HOST": "127.0.0.1",
        # set as the shared ConfigMap sets it: serve-grpc must ignore it (one process)
        "PROMETHEUS_MULTIPROC_DIR": str(root / "grpc-prometheus-unused"),
        **(extra or {}),
    }
    log = root / f"{name}.log"
    process = _start(name, [str(BIN / "ccsclip"), "serve-grpc"], env, log)
    return Server(name, process, log, {"grpc": port, "metrics": metrics})


def http_ready_at(port: int) -> bool:
    """`/readyz` on localhost answers 200."""
    try:
        return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def grpc_serving_at(port: int) -> bool:
    """grpc.health.v1 on localhost says SERVING."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=2
            )
        except grpc.RpcError:
            return False
    return reply.status == health_pb2.HealthCheckResponse.SERVING


def http_ready(server: Server) -> bool:
    return http_ready_at(server.ports["http"])


def grpc_ready(server: Server) -> bool:
    return grpc_serving_at(server.ports["grpc"])


def wait_ready(server: Server, check: Any, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            pytest.fail(f"{server.name} server exited early:\n{server.log_tail()}")
        if check(server):
            return
        time.sleep(0.5)
    server.stop()
    pytest.fail(f"{server.name} server not ready after {timeout} s:\n{server.log_tail()}")


# --------------------------------------------------------------------------- clients


def metric_samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    """(labels, value) of every sample called `name` in a Prometheus exposition."""
    from prometheus_client.parser import text_string_to_metric_families

    return [
        (dict(sample.labels), sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    ]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class HttpClient:
    """The HTTP API with plain-dict results; refused requests raise ApiError."""

    transport = "http"

    def __init__(self, server: Server) -> None:
        self.base = f"http://127.0.0.1:{server.ports['http']}"
        self.http = httpx.Client(base_url=self.base, timeout=60)

    def post(self, path: str, body: Any = None, headers: dict | None = None, **kw: Any) -> Any:
        if body is not None:
            kw["json"] = body
        reply = self.http.post(path, headers=headers, **kw)
        if reply.status_code != 200:
            try:
                data = reply.json()
            except ValueError:
                data = {"error": reply.text}
            raise ApiError(reply.status_code, data if isinstance(data, dict) else {"body": data})
        return reply.json()

    @staticmethod
    def _headers(header: str | None) -> dict[str, str] | None:
        return {"x-ccsclip-profile": header} if header else None

    def zero_shot(self, images, labels, templates=None, top_k=None, profile=None, header=None):
        body: dict[str, Any] = {"images": [b64(i) for i in images], "labels": labels}
        for key, value in (("templates", templates), ("top_k", top_k), ("profile", profile)):
            if value is not None:
                body[key] = value
        return self.post("/v1/zero_shot", body, self._headers(header))

    def retrieve(self, gallery, text=None, image=None, k=None, profile=None, header=None):
        body: dict[str, Any] = {"gallery": gallery}
        if text is not None:
            body["text"] = text
        if image is not None:
            body["image"] = b64(image)
        if k is not None:
            body["k"] = k
        if profile is not None:
            body["profile"] = profile
        return self.post("/v1/retrieve", body, self._headers(header))

    def embed_images(self, items, header=None):
        body = [{"image": b64(i), **({"profile": p} if p else {})} for i, p in items]
        return self.post("/v1/embed_images", body, self._headers(header))

    def embed_texts(self, texts, profile=None, header=None):
        body = {"texts": texts, **({"profile": profile} if profile else {})}
        return self.post("/v1/embed_texts", body, self._headers(header))

    def profiles(self):
        return self.post("/v1/profiles", {})

    def probes(self):
        return self.post("/v1/probes", {})

    def metrics(self) -> str:
        return self.http.get("/metrics").text

    def healthy(self) -> bool:
        return self.http.get("/readyz").status_code == 200 and (
            self.http.get("/livez").status_code == 200
        )

    def close(self) -> None:
        self.http.close()


class GrpcClient:
    """The gRPC API with the same results as HttpClient (protos turned into dicts)."""

    transport = "grpc"

    def __init__(self, server: Server) -> None:
        from ccsclip.v1 import ccsclip_pb2 as pb
        from ccsclip.v1 import ccsclip_pb2_grpc as pb_grpc

        self.pb = pb
        self.channel = grpc.insecure_channel(f"127.0.0.1:{server.ports['grpc']}")
        self.stub = pb_grpc.CCSClipStub(self.channel)
        self.metrics_url = f"http://127.0.0.1:{server.ports['metrics']}/metrics"
        self.server = server

    def call(self, method: str, request: Any, header: str | None = None) -> dict[str, Any]:
        from google.protobuf.json_format import MessageToDict

        metadata = [("x-ccsclip-profile", header)] if header else None
        try:
            reply = getattr(self.stub, method)(request, metadata=metadata, timeout=60)
        except grpc.RpcError as exc:
            status = STATUS_OF_CODE.get(exc.code(), 500)
            try:
                body = json.loads(exc.details() or "{}")
            except ValueError:
                body = {"error": exc.details()}
            raise ApiError(status, {**body, "code": exc.code().name}) from None
        return MessageToDict(
            reply,
            preserving_proto_field_name=True,
            always_print_fields_with_no_presence=True,
            unquote_int64_if_possible=True,
        )

    def zero_shot(self, images, labels, templates=None, top_k=None, profile=None, header=None):
        request = self.pb.ZeroShotRequest(images=images, labels=labels, templates=templates or [])
        if top_k is not None:
            request.top_k = top_k
        if profile is not None:
            request.profile = profile
        out = self.call("ZeroShot", request, header)
        return {**out, "results": [{"top": c.get("top", [])} for c in out.get("results", [])]}

    def retrieve(self, gallery, text=None, image=None, k=None, profile=None, header=None):
        request = self.pb.RetrieveRequest(gallery=gallery)
        if text is not None:
            request.text = text
        if image is not None:
            request.image = image
        if k is not None:
            request.k = k
        if profile is not None:
            request.profile = profile
        return self.call("Retrieve", request, header)

    def embed_images(self, items, header=None):
        request = self.pb.EmbedImagesRequest(
            items=[self.pb.ImageItem(image=i, **({"profile": p} if p else {})) for i, p in items]
        )
        return self.call("EmbedImages", request, header)["embeddings"]

    def embed_texts(self, texts, profile=None, header=None):
        request = self.pb.EmbedTextsRequest(texts=texts)
        if profile is not None:
            request.profile = profile
        return self.call("EmbedTexts", request, header)

    def profiles(self):
        return self.call("ListProfiles", self.pb.ListProfilesRequest())

    def probes(self):
        return self.call("GetProbeResults", self.pb.GetProbeResultsRequest())

    def metrics(self) -> str:
        return httpx.get(self.metrics_url, timeout=10).text

    def healthy(self) -> bool:
        return grpc_ready(self.server)

    def close(self) -> None:
        self.channel.close()
