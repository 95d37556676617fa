"""Serving throughput and memory: BentoML HTTP and gRPC against the in-process engine.

Starts the real servers (`bentoml serve service:CCSClip`, `ccsclip serve-grpc`) over one bundle
(the embedded default `ccsclip-organism` with a baseline and a pruned profile, or `ccsclip-tiny`
with random weights while the organism weights are not shipped; or `--bundle DIR`) and drives
them with a closed-loop load generator (each of C clients sends its next request as soon as the
previous answer arrives) at concurrency 1, 8 and 32, for zero-shot (one image, six labels) and
image embedding (one image; HTTP's `/v1/embed_images` is the batchable API). The same requests
go to the in-process Core (engine + image decoding, no transport) from C threads.

Printed: requests/s, p50 and p99 latency per cell; the ratio of HTTP throughput to in-process
at concurrency 32 (goal >= 0.7); each server's RSS (all its processes) before and after 5,000
more requests (goal: growth < 10 %, 0 errors). The load generator runs on the same machine and
competes with the servers for its cores: compare ratios, not absolute rates.

    python benchmarks/serve.py [--quick] [--bundle DIR | --weights FILE] [--http-workers 1] [--json]

`--model ViT-B-32` measures the service at real size instead (a bundle of ViT-B-32 with random
weights: baseline and a pruned profile, `--int8` adds baseline-int8; 224 px PNG images): one
image per `/v1/embed_images` request, closed loop, each server measured alone (the others are
stopped), at `--concurrency` (default 1,8,32): HTTP with adaptive batching (`http-batched`),
HTTP with batching and all onnxruntime threads per call (`http-batched-t0`), HTTP unbatched,
gRPC and the in-process Core; the batch sizes BentoML formed; and gRPC p99 at concurrency 8
while a probe canary runs continuously against without. A reduced run for a busy machine:

    nice python benchmarks/serve.py --model ViT-B-32 --requests 48 --concurrency 1,8,32
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")
REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
LABELS = ["red", "green", "blue", "yellow", "magenta", "cyan"]
CONCURRENCY = (1, 8, 32)
ENDPOINTS = ("zero_shot", "embed_image")


# --------------------------------------------------------------------------- setup


def build_bundle(root: Path, weights: Path | None = None) -> tuple[Path, list[bytes]]:
    """A two-profile bundle (baseline, pruned L2H0 L2H1) and some organism images."""
    from ccsclip.export.bundle import export_bundle
    from ccsclip.models import load_model
    from ccsclip.models.loading import embedded_weights_path
    from ccsclip.organism.probes import write_gallery
    from ccsclip.profiles.schema import (
        manual_profile,
        write_profile,
    )

    try:
        organism = embedded_weights_path("ccsclip-organism").is_file()
    except Exception:
        organism = False
    if weights is not None:
        loaded = load_model("ccsclip-organism", str(weights))
    elif organism:
        loaded = load_model("ccsclip-organism", "embedded")
    else:
        loaded = load_model("ccsclip-tiny", None)
    spec = loaded.spec
    profiles = []
    for name, heads in (("baseline", []), ("pruned", [(2, 0), (2, 1)])):
        profile = manual_profile(spec, name, heads)
        path = write_profile(root / "profiles" / f"{name}.yaml", profile)
        profiles.append((profile, path))
    bundle = root / "bundle"
    export_bundle(loaded, profiles, bundle, default_profile="baseline", progress=False)
    gallery = write_gallery(root / "world", 16, 0)
    return bundle, [p.read_bytes() for p in sorted(gallery.glob("*.png"))]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    def __init__(self, name: str, args: list[str], env: dict[str, str], log: Path) -> None:
        self.name = name
        self.process = subprocess.Popen(
            args,
            cwd=REPO,
            env=env,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.log = log

    def rss_mb(self) -> float:
        import psutil

        root = psutil.Process(self.process.pid)
        procs = [root, *root.children(recursive=True)]
        return sum(p.memory_info().rss for p in procs if p.is_running()) / 2**20

    def stop(self) -> None:
        """SIGTERM, then SIGKILL for whatever of the process tree is left (no orphan workers)."""
        from ccsclip.service.proctree import reap, tree

        descendants = tree(self.process.pid)[1:]
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
        reap(descendants, 10)


def start_servers(bundle: Path, root: Path, http_workers: int) -> dict[str, Any]:
    env = {
        **os.environ,
        "BENTOML_DO_NOT_TRACK": "True",
        "BENTOML_HOME": str(root / "bentoml-home"),
        "CCSCLIP_BUNDLE": str(bundle),
        "CCSCLIP_PROBES": "",
        "CCSCLIP_GALLERIES": "",
        "CCSCLIP_HTTP_WORKERS": str(http_workers),
        # throughput, not load shedding: no per-process concurrency limits
        "CCSCLIP_HTTP_MAX_CONCURRENCY": "0",
        "CCSCLIP_GRPC_MAX_CONCURRENCY": "0",
    }
    http_port, grpc_port, metrics_port = free_port(), free_port(), free_port()
    http = Server(
        "http",
        [str(BIN / "bentoml"), "serve", "service:CCSClip", "--host", "127.0.0.1"]
        + ["--port", str(http_port)],
        env,
        root / "http.log",
    )
    grpc_env = {
        **env,
        "CCSCLIP_GRPC_PORT": str(grpc_port),
        "CCSCLIP_GRPC_METRICS_PORT": str(metrics_port),
        "CCSCLIP_GRPC_HOST": "127.0.0.1",
    }
    grpc_server = Server("grpc", [str(BIN / "ccsclip"), "serve-grpc"], grpc_env, root / "grpc.log")
    _wait(http, lambda: _http_ready(http_port))
    _wait(grpc_server, lambda: _grpc_ready(grpc_port))
    return {"http": (http, http_port), "grpc": (grpc_server, grpc_port)}


def _http_ready(port: int) -> bool:
    import httpx

    try:
        return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _grpc_ready(port: int) -> bool:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=2
            )
        except grpc.RpcError:
            return False
    return reply.status == health_pb2.HealthCheckResponse.SERVING


def _wait(server: Server, ready: Callable[[], bool], timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"{server.name} exited:\n{server.log.read_text()[-3000:]}")
        if ready():
            return
        time.sleep(0.5)
    raise RuntimeError(f"{server.name} not ready after {timeout} s")


# --------------------------------------------------------------------------- load


def summarise(latencies: list[float], wall: float, errors: int) -> dict[str, float]:
    values = np.array(latencies) * 1000
    return {
        "rps": len(latencies) / wall if wall else 0.0,
        "ok_rps": (len(latencies) - errors) / wall if wall else 0.0,
        "p50_ms": float(np.percentile(values, 50)) if len(values) else float("nan"),
        "p99_ms": float(np.percentile(values, 99)) if len(values) else float("nan"),
        "errors": errors,
        "n": len(latencies),
    }


async def closed_loop(
    send: Callable[[int], Awaitable[bool]], requests: int, concurrency: int
) -> dict[str, float]:
    """C clients, each sending its next request when the last one is answered."""
    latencies: list[float] = []
    errors = 0
    next_index = 0

    async def client() -> None:
        nonlocal next_index, errors
        while next_index < requests:
            index = next_index
            next_index += 1
            start = time.perf_counter()
            ok = await send(index)
            latencies.append(time.perf_counter() - start)
            errors += not ok

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return summarise(latencies, time.perf_counter() - start, errors)


def threaded_loop(call: Callable[[int], None], requests: int, concurrency: int) -> dict[str, float]:
    """The in-process equivalent of closed_loop: C threads calling the Core."""
    latencies: list[float] = []
    counter = iter(range(requests))
    lock = threading.Lock()

    def worker() -> None:
        while True:
            with lock:
                index = next(counter, None)
            if index is None:
                return
            start = time.perf_counter()
            call(index)
            elapsed = time.perf_counter() - start
            with lock:
                latencies.append(elapsed)

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return summarise(latencies, time.perf_counter() - start, 0)


class RawHttp:
    """A minimal keep-alive HTTP/1.1 client (one connection per virtual client).

    httpx costs about a millisecond of this machine's CPU per request, which the servers need:
    pre-built request bytes and a status-line + Content-Length parser keep the load generator
    out of the measurement as far as possible.
    """

    def __init__(self, port: int) -> None:
        self.port = port
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    @staticmethod
    def request(path: str, body: bytes) -> bytes:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        return head.encode("ascii") + body

    async def send(self, raw: bytes) -> int:
        reused = bool(self.idle)
        if reused:
            reader, writer = self.idle.pop()
        else:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        try:
            writer.write(raw)
            status_line = await reader.readline()
        except ConnectionError:
            status_line = b""
        if not status_line:  # the server closed an idle keep-alive connection: reconnect
            writer.close()
            if reused:
                return await self.send(raw)
            return 0
        length, close = 0, False
        while True:
            line = await reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value.strip())
            elif name == b"connection" and value.strip().lower() == b"close":
                close = True
        await reader.readexactly(length)
        if close:
            writer.close()
        else:
            self.idle.append((reader, writer))
        return int(status_line.split()[1])

    async def close(self) -> None:
        for _, writer in self.idle:
            writer.close()


class Senders:
    """Per transport and endpoint, a coroutine that sends request number i; True if 200/OK."""

    def __init__(self, images: list[bytes], http_port: int, grpc_port: int) -> None:
        import grpc

        from ccsclip.v1 import ccsclip_pb2 as pb
        from ccsclip.v1 import ccsclip_pb2_grpc as pb_grpc

        self.images = images
        encoded = [base64.b64encode(i).decode("ascii") for i in images]
        self.http_bodies = {
            "zero_shot": [json.dumps({"images": [e], "labels": LABELS}).encode() for e in encoded],
            "embed_image": [json.dumps([{"image": e}]).encode() for e in encoded],
        }
        self.grpc_requests = {
            "zero_shot": [pb.ZeroShotRequest(images=[i], labels=LABELS) for i in images],
            "embed_image": [pb.EmbedImagesRequest(items=[pb.ImageItem(image=i)]) for i in images],
        }
        self.http = RawHttp(http_port)
        self.channel = grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}")
        self.stub = pb_grpc.CCSClipStub(self.channel)
        self.routes = {"zero_shot": "/v1/zero_shot", "embed_image": "/v1/embed_images"}
        self.methods = {"zero_shot": self.stub.ZeroShot, "embed_image": self.stub.EmbedImages}

    profile: str | None = None  # embed_image: name this profile in each item

    def sender(self, transport: str, endpoint: str) -> Callable[[int], Awaitable[bool]]:
        import grpc

        if self.profile is not None and endpoint == "embed_image":
            from ccsclip.v1 import ccsclip_pb2 as pb

            encoded = [base64.b64encode(i).decode("ascii") for i in self.images]
            self.http_bodies["embed_image"] = [
                json.dumps([{"image": e, "profile": self.profile}]).encode() for e in encoded
            ]
            self.grpc_requests["embed_image"] = [
                pb.EmbedImagesRequest(items=[pb.ImageItem(image=i, profile=self.profile)])
                for i in self.images
            ]
        if transport == "http":
            route = self.routes[endpoint]
            raws = [RawHttp.request(route, body) for body in self.http_bodies[endpoint]]

            async def send_http(index: int) -> bool:
                return await self.http.send(raws[index % len(raws)]) == 200

            return send_http
        requests, method = self.grpc_requests[endpoint], self.methods[endpoint]

        async def send_grpc(index: int) -> bool:
            try:
                await method(requests[index % len(requests)], timeout=120)
                return True
            except grpc.RpcError:
                return False

        return send_grpc

    async def close(self) -> None:
        await self.http.close()
        await self.channel.close()


def in_process(
    bundle: Path, images: list[bytes], profile: str | None = None
) -> dict[str, Callable[[int], None]]:
    """The same work without a transport: the Core on validated requests."""
    from ccsclip.service import schemas as s
    from ccsclip.service.core import Core
    from ccsclip.service.metrics import Metrics
    from ccsclip.service.settings import ServiceSettings

    settings = ServiceSettings(bundle=bundle, galleries=[], probes=[])
    from prometheus_client import CollectorRegistry

    core = Core.load(settings, Metrics(CollectorRegistry()))
    zero = [s.ZeroShotRequest(images=[i], labels=LABELS) for i in images]
    items = [[s.ImageItem(image=i, profile=profile)] for i in images]
    return {
        "zero_shot": lambda i: core.zero_shot(zero[i % len(zero)]) and None,
        "embed_image": lambda i: core.embed_items(items[i % len(items)]) and None,
    }


# --------------------------------------------------------------------------- ViT-B-32


def build_vit_bundle(root: Path, int8: bool) -> tuple[Path, list[bytes], Path]:
    """ViT-B-32 (random weights): baseline + pruned (12 heads of layers 10-11), optionally
    baseline-int8; 16 organism images upscaled to 224 px PNG; a small accuracy probe."""
    import io

    from PIL import Image

    from ccsclip.organism.probes import generate_all

    bundle = root / "bundle"
    world = root / "world"
    if not (bundle / "manifest.json").is_file():  # --work DIR keeps the bundle between runs
        _export_vit(root, int8)
    if not (world / "gallery").is_dir():
        generate_all(world, 0, n_per_class=2, n_per_cell=1, n_gallery=16, n_calibration=1)
    images = []
    for path in sorted((world / "gallery").glob("*.png"))[:16]:
        buffer = io.BytesIO()
        Image.open(path).convert("RGB").resize((224, 224)).save(buffer, "PNG")
        images.append(buffer.getvalue())
    return bundle, images, world / "accuracy-shape"


def _export_vit(root: Path, int8: bool) -> None:
    from ccsclip.export.bundle import export_bundle
    from ccsclip.models import load_model
    from ccsclip.profiles.schema import manual_profile, write_profile

    loaded = load_model("ViT-B-32")
    spec = loaded.spec
    profiles = []
    pruned = [(layer, head) for layer in (10, 11) for head in range(6)]
    for name, heads in (("baseline", []), ("pruned", pruned)):
        profile = manual_profile(spec, name, heads)
        profiles.append((profile, write_profile(root / "profiles" / f"{name}.yaml", profile)))
    bundle = root / "bundle"
    quantize = {"baseline": "int8"} if int8 else None
    export_bundle(
        loaded, profiles, bundle, default_profile="baseline", quantize=quantize, progress=False
    )


def server_env(bundle: Path, root: Path, extra: dict[str, str]) -> dict[str, str]:
    return {
        **os.environ,
        "BENTOML_DO_NOT_TRACK": "True",
        "BENTOML_HOME": str(root / "bentoml-home"),
        "CCSCLIP_BUNDLE": str(bundle),
        "CCSCLIP_PROBES": "",
        "CCSCLIP_GALLERIES": "",
        "CCSCLIP_HTTP_MAX_CONCURRENCY": "0",
        "CCSCLIP_GRPC_MAX_CONCURRENCY": "0",
        "CCSCLIP_PROBE_CACHE_DIR": str(root / "probe-cache"),
        **extra,
    }


def start_one(kind: str, bundle: Path, root: Path, extra: dict[str, str]) -> tuple[Server, int]:
    env = server_env(bundle, root, extra)
    port = free_port()
    if kind == "http":
        args = [str(BIN / "bentoml"), "serve", "service:CCSClip", "--host", "127.0.0.1"]
        server = Server("http", [*args, "--port", str(port)], env, root / "http.log")
        _wait(server, lambda: _http_ready(port), timeout=600)
    else:
        env.update(
            CCSCLIP_GRPC_PORT=str(port),
            CCSCLIP_GRPC_METRICS_PORT=str(free_port()),
            CCSCLIP_GRPC_HOST="127.0.0.1",
        )
        server = Server("grpc", [str(BIN / "ccsclip"), "serve-grpc"], env, root / "grpc.log")
        _wait(server, lambda: _grpc_ready(port), timeout=600)
    return server, port


def mean_batch_size(metrics_text: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    total = count = 0.0
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if sample.labels.get("endpoint") != "embed_images":
                continue
            if sample.name == "ccsclip_batch_size_sum":
                total += sample.value
            elif sample.name == "ccsclip_batch_size_count":
                count += sample.value
    return total / count if count else float("nan")


LONG_BUDGET = {"CCSCLIP_BATCH_MAX_LATENCY_MS": "120000"}


def run_vit(args: argparse.Namespace) -> None:
    import httpx

    concurrency = [int(c) for c in args.concurrency.split(",")]
    rows: dict[tuple[str, str, int], dict[str, float]] = {}
    batches: dict[str, float] = {}
    loads = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory(prefix="ccsclip-serve-vit-") as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        bundle, images, probe = build_vit_bundle(args.work or root, args.int8)
        print(f"bundle built in {time.perf_counter() - started:.0f} s", flush=True)
        profiles = ["baseline", "pruned"] + (["baseline-int8"] if args.int8 else [])
        variants = {
            # a latency budget the 32-deep queue fits in: BentoML sheds (503) requests it expects
            # to wait longer than CCSCLIP_BATCH_MAX_LATENCY_MS (1 s by default: ~3 images here)
            "http-batched": ("http", {"CCSCLIP_HTTP_BATCHING": "true", **LONG_BUDGET}),
            "http-batched-t0": (
                "http",
                {"CCSCLIP_HTTP_BATCHING": "true", "CCSCLIP_THREADS": "0", **LONG_BUDGET},
            ),
            "http": ("http", {"CCSCLIP_HTTP_BATCHING": "false"}),
            "grpc": ("grpc", {}),
        }
        for profile in profiles:
            for name, (kind, extra) in variants.items():
                server, port = start_one(kind, bundle, root, extra)
                try:

                    async def drive(kind=kind, port=port, profile=profile) -> dict:
                        senders = Senders(images, port if kind == "http" else 0, port)
                        senders.profile = profile
                        send = senders.sender(kind, "embed_image")
                        out = {}
                        try:
                            await closed_loop(send, 8, 4)  # warm-up
                            for c in concurrency:
                                out[c] = await closed_loop(send, args.requests, c)
                                loads.append(os.getloadavg()[0])
                        finally:
                            await senders.close()
                        return out

                    for c, row in asyncio.run(drive()).items():
                        rows[(f"{name}:{profile}", "embed_image", c)] = row
                        print(f"{name:<16} {profile:<14} c={c:<3} {row}", flush=True)
                    if kind == "http":
                        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=30).text
                        batches[f"{name}:{profile}"] = mean_batch_size(text)
                finally:
                    server.stop()
            calls = in_process(bundle, images, profile)
            threaded_loop(calls["embed_image"], 8, 4)
            for c in concurrency:
                row = threaded_loop(calls["embed_image"], args.requests, c)
                rows[(f"in-process:{profile}", "embed_image", c)] = row
                loads.append(os.getloadavg()[0])
                print(f"{'in-process':<16} {profile:<14} c={c:<3} {row}", flush=True)

        # p99 with a probe canary running continuously (interval 1 s) against without
        canary: dict[str, dict[str, float]] = {}
        for label, extra in (
            ("without", {}),
            (
                "canary",
                {
                    "CCSCLIP_PROBES": str(probe),
                    "CCSCLIP_PROBE_INTERVAL_S": "1",
                    "CCSCLIP_PROBE_CANARY_SIZE": str(args.canary),
                },
            ),
        ):
            server, port = start_one("grpc", bundle, root, extra)
            try:
                if label == "canary":  # the full result first (stored), then canary rounds
                    _wait_probes(port, server)

                async def drive_c(port=port) -> dict:
                    senders = Senders(images, 0, port)
                    try:
                        send = senders.sender("grpc", "embed_image")
                        await closed_loop(send, 8, 4)
                        return await closed_loop(send, args.requests * 2, 8)
                    finally:
                        await senders.close()

                canary[label] = asyncio.run(drive_c())
                loads.append(os.getloadavg()[0])
            finally:
                server.stop()

    print()
    print(f"ViT-B-32 (random weights), {os.cpu_count()} CPUs, {args.requests} requests per cell")
    print(f"load average during the run: {min(loads):.2f} .. {max(loads):.2f}")
    print(f"{'server:profile':<30} {'conc':>4} {'img/s':>7} {'p50 ms':>8} {'p99 ms':>8} {'err':>4}")
    for (name, _, c), row in sorted(rows.items()):  # img/s: answered without an error
        print(
            f"{name:<30} {c:>4} {row['ok_rps']:>7.2f} {row['p50_ms']:>8.0f} "
            f"{row['p99_ms']:>8.0f} {row['errors']:>4}"
        )
    for profile in profiles:
        top = max(concurrency)
        base = rows[(f"in-process:{profile}", "embed_image", top)]["ok_rps"]
        ratios = ", ".join(
            f"{name} {rows[(f'{name}:{profile}', 'embed_image', top)]['ok_rps'] / base:.2f}"
            for name in variants
        )
        print(f"{profile}: images/s against in-process at concurrency {top}: {ratios}")
    for key, size in batches.items():
        print(f"mean images per image-tower call, {key}: {size:.2f}")
    without, during = canary["without"]["p99_ms"], canary["canary"]["p99_ms"]
    print(
        f"gRPC p99 at concurrency 8: {without:.0f} ms without probes, {during:.0f} ms with a "
        f"canary ({args.canary} images) running continuously: {during / without:.2f}x "
        "(goal <= 1.10)"
    )
    if args.json:
        print(
            json.dumps(
                {
                    "rows": [
                        {"server": n, "concurrency": c, **r}
                        for (n, _, c), r in sorted(rows.items())
                    ],
                    "batches": batches,
                    "canary": canary,
                    "loads": loads,
                }
            )
        )


def _wait_probes(port: int, server: Server, timeout: float = 1800) -> None:
    import grpc

    from ccsclip.v1 import ccsclip_pb2 as pb
    from ccsclip.v1 import ccsclip_pb2_grpc as pb_grpc

    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb_grpc.CCSClipStub(channel)
        while time.monotonic() < deadline:
            if stub.GetProbeResults(pb.GetProbeResultsRequest(), timeout=30).runs >= 2:
                return  # the full round, then at least one canary round
            if server.process.poll() is not None:
                raise RuntimeError(server.log.read_text()[-3000:])
            time.sleep(1)
    raise RuntimeError("probes did not finish")


# --------------------------------------------------------------------------- main


async def run_servers(
    args: argparse.Namespace, servers: dict[str, Any], senders: Senders
) -> tuple[dict, dict]:
    rows: dict[tuple[str, str, int], dict[str, float]] = {}
    for endpoint in ENDPOINTS:
        for transport in ("http", "grpc"):
            send = senders.sender(transport, endpoint)
            await closed_loop(send, args.warmup, 8)
            for concurrency in CONCURRENCY:
                rows[(transport, endpoint, concurrency)] = await closed_loop(
                    send, args.requests, concurrency
                )
    memory: dict[str, dict[str, float]] = {}
    for transport in ("http", "grpc"):
        server = servers[transport][0]
        zero, embed = (
            senders.sender(transport, "zero_shot"),
            senders.sender(transport, "embed_image"),
        )

        async def mixed(index: int, zero=zero, embed=embed) -> bool:
            return await (zero if index % 2 else embed)(index)

        before = server.rss_mb()
        result = await closed_loop(mixed, args.rss_requests, 8)
        after = server.rss_mb()
        memory[transport] = {
            "before_mb": before,
            "after_mb": after,
            "growth_pct": 100 * (after - before) / before,
            "errors": result["errors"],
            "requests": result["n"],
        }
    return rows, memory


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests per cell")
    parser.add_argument("--bundle", type=Path, help="serve this bundle instead of building one")
    parser.add_argument(
        "--weights", type=Path, help="organism checkpoint to use before the weights are shipped"
    )
    parser.add_argument("--http-workers", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="also print the results as JSON")
    parser.add_argument("--model", default="organism", choices=["organism", "ViT-B-32"])
    parser.add_argument("--int8", action="store_true", help="ViT-B-32: also baseline-int8")
    parser.add_argument("--requests", type=int, default=96, help="ViT-B-32: requests per cell")
    parser.add_argument("--concurrency", default="1,8,32", help="ViT-B-32: client counts")
    parser.add_argument("--canary", type=int, default=32, help="ViT-B-32: canary images")
    parser.add_argument("--work", type=Path, help="ViT-B-32: keep (and reuse) the bundle here")
    args = parser.parse_args()
    if args.model == "ViT-B-32":
        run_vit(args)
        return
    args.requests = 300 if args.quick else 3000
    args.warmup = 50 if args.quick else 300
    args.rss_requests = 5000

    with tempfile.TemporaryDirectory(prefix="ccsclip-serve-bench-") as tmp:
        root = Path(tmp)
        if args.bundle:
            from ccsclip.organism.probes import write_gallery

            bundle = args.bundle
            images = [p.read_bytes() for p in sorted(write_gallery(root, 16, 0).glob("*.png"))]
        else:
            bundle, images = build_bundle(root, args.weights)
        model = json.loads((bundle / "manifest.json").read_text())["model"]["name"]
        servers = start_servers(bundle, root, args.http_workers)
        try:

            async def drive() -> tuple[dict, dict]:
                # the grpc.aio channel and httpx client belong to this event loop
                senders = Senders(images, servers["http"][1], servers["grpc"][1])
                try:
                    return await run_servers(args, servers, senders)
                finally:
                    await senders.close()

            rows, memory = asyncio.run(drive())
        finally:
            for server, _ in servers.values():
                server.stop()
        calls = in_process(bundle, images)
        for endpoint in ENDPOINTS:
            threaded_loop(calls[endpoint], args.warmup, 8)
            for concurrency in CONCURRENCY:
                rows[("in-process", endpoint, concurrency)] = threaded_loop(
                    calls[endpoint], args.requests, concurrency
                )

    print(f"model {model}, {os.cpu_count()} CPUs, {args.requests} requests per cell")
    print(
        f"{'transport':<11} {'endpoint':<12} {'conc':>4} {'req/s':>8} {'p50 ms':>8} "
        f"{'p99 ms':>8} {'errors':>6}"
    )
    for (transport, endpoint, concurrency), row in sorted(rows.items()):
        print(
            f"{transport:<11} {endpoint:<12} {concurrency:>4} {row['rps']:>8.1f} "
            f"{row['p50_ms']:>8.2f} {row['p99_ms']:>8.2f} {row['errors']:>6}"
        )
    print()
    for endpoint in ENDPOINTS:
        inproc = rows[("in-process", endpoint, 32)]["rps"]
        for transport in ("http", "grpc"):
            ratio = rows[(transport, endpoint, 32)]["rps"] / inproc
            goal = " (goal >= 0.7)" if transport == "http" else ""
            print(
                f"{transport} / in-process throughput at concurrency 32, {endpoint}: "
                f"{ratio:.2f}{goal}"
            )
    print()
    for transport, row in memory.items():
        print(
            f"{transport} RSS: {row['before_mb']:.0f} MB -> {row['after_mb']:.0f} MB after "
            f"{row['requests']} requests ({row['growth_pct']:+.1f} %, goal < 10 %), "
            f"{row['errors']} errors"
        )
    if args.json:
        print(
            json.dumps(
                {
                    "rows": [
                        {"transport": t, "endpoint": e, "concurrency": c, **r}
                        for (t, e, c), r in sorted(rows.items())
                    ],
                    "memory": memory,
                }
            )
        )


if __name__ == "__main__":
    main()
