"""The service over both real transports: `bentoml serve` (2 workers) and `ccsclip serve-grpc`.

Every behavioural test runs the same assertions over HTTP and gRPC against servers started on
free localhost ports (tests/service_fixtures.py).
"""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
import textwrap
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from k8s_helpers import CONTRACT_METRICS, dashboard_metric_names  # noqa: E402
from service_fixtures import (  # noqa: E402
    BIN,
    DEFAULT,
    GALLERY,
    LIMITS,
    PROFILES,
    PRUNED,
    REPO,
    ApiError,
    GrpcClient,
    HttpClient,
    b64,
    grpc_ready,
    http_ready,
    make_world,
    start_grpc,
    start_http,
    wait_ready,
)

pytestmark = pytest.mark.slow
MAX_IMAGES = int(LIMITS["CCSCLIP_MAX_IMAGES_PER_REQUEST"])
MAX_BYTES = int(LIMITS["CCSCLIP_MAX_REQUEST_BYTES"])


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return make_world(tmp_path_factory.mktemp("service"))


@pytest.fixture(scope="module")
def servers(world, tmp_path_factory):
    root = tmp_path_factory.mktemp("servers")
    http, grpc_server = start_http(world, root), start_grpc(world, root)
    try:
        wait_ready(http, http_ready)
        wait_ready(grpc_server, grpc_ready)
        yield {"http": http, "grpc": grpc_server}
    finally:
        codes = {s.name: s.stop() for s in (http, grpc_server)}
    assert codes["grpc"] == 0, grpc_server.log_tail()  # SIGTERM: graceful stop, exit 0
    assert "stopping: finishing in-flight calls" in grpc_server.log_tail()


@pytest.fixture(scope="module", params=["http", "grpc"])
def client(request, servers):
    made = (HttpClient if request.param == "http" else GrpcClient)(servers[request.param])
    yield made
    made.close()


@pytest.fixture(scope="module")
def engine(world):
    from ccsclip.engine.engine import Engine

    return Engine.load(world.bundle, intra_op_threads=1)


@pytest.fixture(scope="module")
def gallery(world, engine):
    """The served gallery, opened in-process as a reader (the exact reference)."""
    from ccsclip.engine.galleries.store import GalleryStore

    return GalleryStore(engine, None, shipped=[world.gallery]).get(GALLERY)


def png(image: Image.Image, fmt: str = "PNG", **kw: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kw)
    return buffer.getvalue()


def read(path: Path) -> bytes:
    return path.read_bytes()


def top_labels(answer: dict[str, Any]) -> list[str]:
    return [c["top"][0]["label"] for c in answer["results"]]


# --------------------------------------------------------------------------- behaviour


def test_zero_shot_picks_the_right_class(client, world, engine):
    """Clear colour-probe images; on the organism the right colour, always the engine's answer."""
    from ccsclip.probeset import load_probe

    probe = load_probe(world.world / "accuracy-colour")
    labels = probe.class_names
    templates = list(probe.spec.templates)
    paths, truth = [], []
    for index, name in enumerate(labels):
        path = next(p for p, label in probe.samples if label == index)
        paths.append(path)
        truth.append(name)
    answer = client.zero_shot([read(p) for p in paths], labels, templates=templates, top_k=3)
    assert answer["profile"] == DEFAULT
    assert answer["model"]["name"] == world.loaded.spec.name
    images = engine.embed_images([Image.open(p).convert("RGB") for p in paths], DEFAULT)
    probs = engine.probabilities(images, engine.class_embeddings(labels, templates))
    for got, row in zip(answer["results"], probs, strict=True):
        top = np.argsort(-row, kind="stable")[:3]
        assert [x["label"] for x in got["top"]] == [labels[i] for i in top]
        assert [x["score"] for x in got["top"]] == pytest.approx(row[top].tolist(), abs=1e-9)
    if world.organism:
        assert top_labels(answer) == truth


def test_retrieval_returns_the_expected_gallery_items(client, world, engine, gallery):
    item = "g00005.png"
    by_image = client.retrieve(GALLERY, image=read(world.world / "gallery" / item), k=3)
    assert by_image["profile"] == DEFAULT and by_image["query"] == "image"
    assert by_image["hits"][0]["id"] == item
    assert by_image["hits"][0]["score"] == pytest.approx(1.0, abs=1e-5)
    text = "a red circle"
    by_text = client.retrieve(GALLERY, text=text, k=5)
    expected = gallery.search(engine.embed_texts([text])[0], 5, None, None)
    assert [h["id"] for h in by_text["hits"]] == [h.id for h in expected]
    assert [h["score"] for h in by_text["hits"]] == pytest.approx([h.score for h in expected])
    if world.organism:
        colours = dict(
            line.split(",")[:3:2]
            for line in (world.world / "gallery" / "gallery.csv").read_text().splitlines()[1:]
        )
        assert colours[by_text["hits"][0]["id"].removesuffix(".png")] == "red"


def test_embeddings_equal_the_engine(client, world, engine):
    paths = sorted((world.world / "gallery").glob("*.png"))[:3]
    got = client.embed_images([(read(p), None) for p in paths])
    want = engine.embed_images([Image.open(p).convert("RGB") for p in paths], DEFAULT)
    assert [e["profile"] for e in got] == [DEFAULT] * 3
    np.testing.assert_array_equal(np.array([e["values"] for e in got], dtype=np.float32), want)
    texts = client.embed_texts(["a red circle", "a blue square"])
    np.testing.assert_array_equal(
        np.array([e["values"] for e in texts["embeddings"]], dtype=np.float32),
        engine.embed_texts(["a red circle", "a blue square"]),
    )


def test_two_profiles_give_different_embeddings(client, world, engine):
    image = read(world.world / "gallery" / "g00001.png")
    pil = Image.open(world.world / "gallery" / "g00001.png").convert("RGB")
    mixed = client.embed_images([(image, DEFAULT), (image, PRUNED)])
    assert [e["profile"] for e in mixed] == [DEFAULT, PRUNED]
    base, pruned = (np.array(e["values"], dtype=np.float32) for e in mixed)
    assert np.abs(base - pruned).max() > 1e-3
    np.testing.assert_array_equal(pruned, engine.embed_images([pil], PRUNED)[0])
    by_header = client.embed_images([(image, None)], header=PRUNED)
    np.testing.assert_array_equal(np.array(by_header[0]["values"], dtype=np.float32), pruned)


def test_profile_field_beats_header_beats_default(client, world):
    image = read(world.world / "gallery" / "g00002.png")
    ask = dict(images=[image], labels=["red", "blue"])
    assert client.zero_shot(**ask)["profile"] == DEFAULT
    assert client.zero_shot(**ask, header=PRUNED)["profile"] == PRUNED
    assert client.zero_shot(**ask, profile=DEFAULT, header=PRUNED)["profile"] == DEFAULT
    assert client.embed_texts(["x"], profile=PRUNED)["profile"] == PRUNED


def test_unknown_profile_is_not_found(client, world):
    image = read(world.world / "gallery" / "g00002.png")
    for kwargs in ({"profile": "nope"}, {"header": "nope"}):
        with pytest.raises(ApiError) as info:
            client.zero_shot([image], ["red", "blue"], **kwargs)
        assert info.value.status == 404
        assert info.value.body["field"] == "profile" and "nope" in info.value.body["error"]
    with pytest.raises(ApiError) as info:
        client.embed_images([(image, DEFAULT), (image, "nope")])
    assert info.value.status == 404 and info.value.body["field"].endswith("[1].profile")


def test_profiles_lists_metadata(client, world):
    answer = client.profiles()
    assert answer["default_profile"] == DEFAULT
    assert answer["galleries"] == [GALLERY]
    assert sorted(answer["probes"]) == sorted(p.name for p in world.probe_dirs)
    by_name = {p["name"]: p for p in answer["profiles"]}
    assert set(by_name) == set(PROFILES)
    assert by_name[PRUNED]["heads_removed"] == ["L2H0", "L2H1"]
    assert by_name[DEFAULT]["default"] is True and by_name[PRUNED]["available"] is True
    assert int(by_name[DEFAULT]["flops_per_image"]) > int(by_name[PRUNED]["flops_per_image"])


def test_unusual_but_valid_images_are_accepted(client):
    """Grey, RGBA, CMYK, 16-bit, palette, float, tiny and animated images are converted."""
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, (40, 30, 3), dtype=np.uint8))
    frames = [rgb, rgb.rotate(90)]
    animated = io.BytesIO()
    frames[0].save(animated, "GIF", save_all=True, append_images=frames[1:])
    sixteen = Image.fromarray(rng.integers(0, 65536, (32, 32), dtype=np.uint16))
    images = {
        "grey": png(rgb.convert("L")),
        "rgba": png(rgb.convert("RGBA")),
        "la": png(rgb.convert("LA")),
        "cmyk-jpeg": png(rgb.convert("CMYK"), "JPEG"),
        "cmyk-tiff": png(rgb.convert("CMYK"), "TIFF"),
        "16-bit": png(sixteen),
        "palette": png(rgb.convert("P")),
        "bilevel": png(rgb.convert("1")),
        "float-tiff": png(Image.fromarray(rng.random((16, 16), dtype=np.float32)), "TIFF"),
        "1x1": png(Image.new("RGB", (1, 1), (255, 0, 0))),
        "webp": png(rgb, "WEBP"),
        "bmp": png(rgb, "BMP"),
        "animated-gif": animated.getvalue(),
    }
    names = list(images)
    for start in range(0, len(names), MAX_IMAGES):
        chunk = names[start : start + MAX_IMAGES]
        answer = client.zero_shot([images[n] for n in chunk], ["red", "blue"], top_k=2)
        assert len(answer["results"]) == len(chunk)
    grey = client.embed_images([(images["grey"], None)])[0]["values"]
    assert len(grey) > 0 and abs(np.linalg.norm(grey) - 1) < 1e-5


def test_multipart_upload_equals_base64(servers, world):
    """HTTP only: files in a form give the same answer as base64 in JSON."""
    http = HttpClient(servers["http"])
    paths = sorted((world.world / "gallery").glob("*.png"))[:2]
    files = [("images", (p.name, read(p), "image/png")) for p in paths]
    form = {"labels": json.dumps(["red", "blue"]), "top_k": "2"}
    by_form = http.post("/v1/zero_shot", data=form, files=files)
    by_json = http.zero_shot([read(p) for p in paths], ["red", "blue"], top_k=2)
    assert by_form == by_json
    embedded = http.post(
        "/v1/embed_images",
        files=[("images", ("a.png", read(paths[0]), "image/png"))],
        data={"profile": PRUNED},
    )
    assert embedded[0]["profile"] == PRUNED
    http.close()


# --------------------------------------------------------------------------- metrics


def _families(text: str) -> dict[str, list[Any]]:
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, list[Any]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append(sample)
    return out


def _gauge(samples: dict[str, list[Any]], name: str, **labels: str) -> float | None:
    for sample in samples.get(name, []):
        if all(sample.labels.get(k) == v for k, v in labels.items()):
            return sample.value
    return None


def _wait_for_probes(client, world, timeout: float = 120.0) -> dict[str, list[Any]]:
    deadline = time.monotonic() + timeout
    while True:
        samples = _families(client.metrics())
        missing = [
            (profile, probe.name)
            for profile in PROFILES
            for probe in world.probe_dirs
            if _gauge(
                samples,
                "ccsclip_probe_last_success_timestamp_seconds",
                profile=profile,
                probe=probe.name,
            )
            is None
        ]
        if not missing:
            return samples
        if time.monotonic() > deadline:
            pytest.fail(f"probe gauges missing on {client.transport}: {missing}")
        time.sleep(1)


@pytest.fixture(scope="module")
def offline(world, tmp_path_factory):
    """`ccsclip evaluate` of the same probes and profiles (soft-pruned torch model)."""
    from engine_fixtures import make_profiles

    from ccsclip.profiles.evaluate import evaluate_profiles

    profiles = make_profiles(world.loaded, tmp_path_factory.mktemp("profiles"))
    return evaluate_profiles(world.loaded, profiles, world.probe_dirs, progress=False).to_dict()


def test_metrics_show_probe_gauges_equal_to_offline_evaluate(client, world, offline):
    samples = _wait_for_probes(client, world)
    for profile in PROFILES:
        for result in offline["profiles"][profile]["results"]:
            probe = result["probe"]
            if result["kind"] == "accuracy":
                got = _gauge(samples, "ccsclip_probe_accuracy", profile=profile, probe=probe)
                assert got == pytest.approx(result["accuracy"], abs=1e-9), (profile, probe)
                continue
            for key, row in result["maxskew"].items():
                attribute, k = key.split("@")
                got = _gauge(
                    samples,
                    "ccsclip_probe_maxskew",
                    profile=profile,
                    probe=probe,
                    attribute=attribute,
                    k=k,
                )
                assert got == pytest.approx(row["mean"], abs=1e-6), (profile, probe, key)
        assert _gauge(samples, "ccsclip_profile_info", profile=profile) == 1
        assert _gauge(samples, "ccsclip_probe_failures_total", profile=profile) == 0
    api = {(r["profile"], r["probe"]): r for r in client.probes()["results"]}
    assert len(api) == len(PROFILES) * len(world.probe_dirs)
    assert all(r["ok"] for r in api.values())
    accuracy = api[(PRUNED, "accuracy-colour")]["accuracy"]
    assert accuracy == _gauge(
        samples, "ccsclip_probe_accuracy", profile=PRUNED, probe="accuracy-colour"
    )
    # Both transports carry where each result came from, MaxSkew's null, and the budget.
    assert {r["source"] for r in api.values()} <= {"baked", "cache", "computed"}
    bias = [r for r in api.values() if r["kind"] == "bias"]
    assert bias and all("null_mean" in m for r in bias for m in r["maxskew"])
    budget = client.probes()["budget"]
    assert budget["canary_min"] >= 1 and budget["full_cpu_s_total"] >= 0


def test_metrics_expose_every_contract_series(client, world):
    """After some traffic, every family the dashboard queries is on this transport's /metrics."""
    image = read(world.world / "gallery" / "g00003.png")
    client.zero_shot([image], ["red", "blue"])
    client.zero_shot([image], ["red", "blue"])  # a text-cache hit
    client.embed_images([(image, None)])
    with pytest.raises(ApiError):
        client.zero_shot([image], ["red", "red"])
    _wait_for_probes(client, world)
    samples = _families(client.metrics())
    assert set(dashboard_metric_names()) <= set(samples), sorted(
        set(dashboard_metric_names()) - set(samples)
    )
    for name, kind in CONTRACT_METRICS.items():
        assert (f"{name}_bucket" if kind == "histogram" else name) in samples, name
    transport = client.transport
    ok, bad = ("200", "400") if transport == "http" else ("OK", "INVALID_ARGUMENT")
    for code in (ok, bad):
        assert _gauge(
            samples, "ccsclip_requests_total", endpoint="zero_shot", transport=transport, code=code
        ), code
    assert _gauge(samples, "ccsclip_text_cache_hits_total") >= 1
    assert _gauge(samples, "ccsclip_batch_size_count", endpoint="embed_images", profile=DEFAULT)


# --------------------------------------------------------------------------- bad requests


def _bomb_png(width: int, height: int) -> bytes:
    """A PNG header claiming width x height pixels, with almost no data (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def _image_cases(good: bytes) -> list[tuple[str, bytes, int]]:
    rng = np.random.default_rng(1)
    big = Image.fromarray(np.zeros((1100, 1100), dtype=np.uint8))  # 1.21 MP > the 1 MP limit
    return [
        ("corrupt", rng.integers(0, 256, 2000, dtype=np.uint8).tobytes(), 400),
        ("truncated", good[: len(good) // 2], 400),
        ("zero-byte", b"", 400),
        ("text", b"hello, this is not an image", 400),
        ("eps (not a raster format)", b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", 400),
        ("svg", b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>', 400),
        ("png header only", good[:33], 400),
        ("huge pixels", png(big), 413),
        ("decompression bomb", _bomb_png(100_000, 100_000), 413),
    ]


def _corpus(world) -> list[tuple[str, Callable[[Any], Any], int]]:
    """(name, call, expected status) that both transports express through the client API."""
    good = read(world.world / "gallery" / "g00000.png")
    labels = ["red", "blue"]
    cases: list[tuple[str, Callable[[Any], Any], int]] = []
    for name, data, status in _image_cases(good):
        cases.append(
            (f"zero-shot image: {name}", lambda c, d=data: c.zero_shot([d], labels), status)
        )
        cases.append(
            (f"embed image: {name}", lambda c, d=data: c.embed_images([(d, None)]), status)
        )
    cases += [
        ("too many images", lambda c: c.zero_shot([good] * (MAX_IMAGES + 1), labels), 413),
        ("no images", lambda c: c.zero_shot([], labels), 400),
        ("body too large", lambda c: c.zero_shot([b"\0" * (MAX_BYTES + 10)], labels), 413),
        ("no labels", lambda c: c.zero_shot([good], []), 400),
        ("empty label", lambda c: c.zero_shot([good], ["red", ""]), 400),
        ("blank label", lambda c: c.zero_shot([good], ["red", "   "]), 400),
        ("duplicate labels", lambda c: c.zero_shot([good], ["red", "blue", "red"]), 400),
        ("10,000 labels", lambda c: c.zero_shot([good], [f"l{i}" for i in range(10_000)]), 413),
        ("100 KB label", lambda c: c.zero_shot([good], ["x" * 100_000, "red"]), 413),
        ("template without {}", lambda c: c.zero_shot([good], labels, templates=["a photo"]), 400),
        ("template with two {}", lambda c: c.zero_shot([good], labels, templates=["{} {}"]), 400),
        ("stray brace", lambda c: c.zero_shot([good], labels, templates=["a {} {x"]), 400),
        ("too many templates", lambda c: c.zero_shot([good], labels, templates=["a {}"] * 9), 413),
        ("top_k 0", lambda c: c.zero_shot([good], labels, top_k=0), 400),
        ("negative top_k", lambda c: c.zero_shot([good], labels, top_k=-3), 400),
        ("huge top_k", lambda c: c.zero_shot([good], labels, top_k=2_000_000_000), 413),
        ("unknown profile", lambda c: c.zero_shot([good], labels, profile="nope"), 404),
        ("empty profile", lambda c: c.zero_shot([good], labels, profile=""), 400),
        ("unknown gallery", lambda c: c.retrieve("nope", text="a red circle"), 404),
        ("gallery path", lambda c: c.retrieve("../galleries/shapes", text="red"), 400),
        ("absolute gallery path", lambda c: c.retrieve(str(world.gallery), text="red"), 400),
        ("no query", lambda c: c.retrieve(GALLERY), 400),
        ("two queries", lambda c: c.retrieve(GALLERY, text="red", image=good), 400),
        ("negative k", lambda c: c.retrieve(GALLERY, text="red", k=-1), 400),
        ("huge k", lambda c: c.retrieve(GALLERY, text="red", k=1_000_000_000), 413),
        (
            "image query, other profile",
            lambda c: c.retrieve(GALLERY, image=good, profile=PRUNED),
            409,
        ),
        ("retrieve, unknown profile", lambda c: c.retrieve(GALLERY, text="red", profile="x"), 404),
        ("embed: no items", lambda c: c.embed_images([]), 400),
        ("embed: too many", lambda c: c.embed_images([(good, None)] * (MAX_IMAGES + 1)), 413),
        ("embed: unknown profile", lambda c: c.embed_images([(good, "nope")]), 404),
        ("texts: none", lambda c: c.embed_texts([]), 400),
        ("texts: too many", lambda c: c.embed_texts([f"t{i}" for i in range(200)]), 413),
        ("texts: blank", lambda c: c.embed_texts(["ok", " "]), 400),
    ]
    return cases


def _http_raw_cases(world) -> list[tuple[str, dict[str, Any], int]]:
    """HTTP only: wrong types, unknown fields, broken JSON and forms."""
    good = b64(read(world.world / "gallery" / "g00000.png"))
    ok = {"images": [good], "labels": ["red", "blue"]}
    zs = "/v1/zero_shot"
    return [
        ("labels a string", {"url": zs, "json": {**ok, "labels": "red"}}, 400),
        ("top_k a string", {"url": zs, "json": {**ok, "top_k": "3"}}, 400),
        ("top_k a float", {"url": zs, "json": {**ok, "top_k": 2.5}}, 400),
        ("top_k a bool", {"url": zs, "json": {**ok, "top_k": True}}, 400),
        ("label a number", {"url": zs, "json": {**ok, "labels": ["red", 7]}}, 400),
        ("image a number", {"url": zs, "json": {**ok, "images": [123]}}, 400),
        ("image an object", {"url": zs, "json": {**ok, "images": [{"b64": good}]}}, 400),
        ("not base64", {"url": zs, "json": {**ok, "images": ["not*base64!"]}}, 400),
        ("data URL not base64", {"url": zs, "json": {**ok, "images": ["data:image/png,abc"]}}, 400),
        ("profile a number", {"url": zs, "json": {**ok, "profile": 3}}, 400),
        ("unknown field", {"url": zs, "json": {**ok, "colour": "red"}}, 400),
        ("null labels", {"url": zs, "json": {**ok, "labels": None}}, 400),
        ("array body", {"url": zs, "json": [ok]}, 400),
        ("invalid JSON", {"url": zs, "content": b'{"images": [', "headers": _json}, 400),
        ("empty body", {"url": zs, "content": b"", "headers": _json}, 400),
        ("not UTF-8", {"url": zs, "content": b"\xff\xfe\x00", "headers": _json}, 400),
        ("deeply nested JSON", {"url": zs, "content": b"[" * 100_000 + b"]" * 100_000}, 400),
        (
            "top_k 1e400",
            {"url": zs, "content": json.dumps(ok).encode()[:-1] + b', "top_k": 1e400}'},
            400,
        ),
        ("embed: object body", {"url": "/v1/embed_images", "json": {"items": []}}, 400),
        (
            "embed: unknown item field",
            {"url": "/v1/embed_images", "json": [{"image": good, "x": 1}]},
            400,
        ),
        ("texts: unknown field", {"url": "/v1/embed_texts", "json": {"texts": ["a"], "k": 1}}, 400),
        ("profiles: unknown field", {"url": "/v1/profiles", "json": {"verbose": True}}, 400),
        (
            "retrieve: k a string",
            {"url": "/v1/retrieve", "json": {"gallery": GALLERY, "text": "a", "k": "5"}},
            400,
        ),
        (
            "form: label as a file",
            {
                "url": zs,
                "files": [("labels", ("l.txt", b"red", "text/plain"))],
                "data": {"images": good},
            },
            400,
        ),
        (
            "form: too many files",
            {"url": zs, "files": [("images", ("a.png", b"x", "image/png"))] * (MAX_IMAGES + 2)},
            413,
        ),
        (
            "form: broken multipart",
            {
                "url": zs,
                "content": b"--x\r\nbroken",
                "headers": {"content-type": "multipart/form-data; boundary=x"},
            },
            400,
        ),
        (
            "url-encoded garbage",
            {
                "url": zs,
                "content": b"%%%&&&==",
                "headers": {"content-type": "application/x-www-form-urlencoded"},
            },
            400,
        ),
        (
            "chunked body too large",
            {"url": zs, "content": iter([b"x" * 65536] * 40), "headers": _json},
            413,
        ),
    ]


_json = {"content-type": "application/json"}


def _check_refusal(where: str, status: int, body: Any, expected: int) -> None:
    assert status < 500, f"{where}: {status} {body}"
    assert status == expected, f"{where}: expected {expected}, got {status} {body}"
    assert isinstance(body, dict) and isinstance(body.get("error"), str), f"{where}: {body}"
    kinds = ("invalid", "not_found", "too_large", "other_profile")
    assert body.get("kind") in kinds, f"{where}: {body}"


def test_bad_request_corpus_gets_4xx_and_leaves_the_server_healthy(client, world, servers):
    cases = _corpus(world)
    if client.transport == "grpc":  # a proto oneof keeps the last query set: not expressible
        cases = [case for case in cases if case[0] != "two queries"]
    failures = []
    for name, call, expected in cases:
        try:
            call(client)
        except ApiError as exc:
            try:
                _check_refusal(name, exc.status, exc.body, expected)
            except AssertionError as error:
                failures.append(str(error))
        else:
            failures.append(f"{name}: accepted")
    count = len(cases)
    if client.transport == "http":
        for name, request, expected in _http_raw_cases(world):
            count += 1
            url = request.pop("url")
            reply = client.http.post(url, **request)
            try:
                body = reply.json()
            except ValueError:
                body = reply.text
            try:
                _check_refusal(name, reply.status_code, body, expected)
            except AssertionError as error:
                failures.append(str(error))
    else:
        for method in ("ZeroShot", "EmbedImages", "Retrieve"):
            count += 1
            raw = client.channel.unary_unary(
                f"/ccsclip.v1.CCSClip/{method}",
                request_serializer=lambda b: b,
                response_deserializer=lambda b: b,
            )
            try:
                raw(b"\xff\xff\xff\x07garbage", timeout=30)
                failures.append(f"{method}: undecodable message accepted")
            except Exception as exc:  # grpc.RpcError
                code = exc.code().name  # type: ignore[attr-defined]
                if code != "INVALID_ARGUMENT":
                    failures.append(f"{method} undecodable: {code} {exc}")
    assert count >= 30
    assert not failures, "\n".join(failures)
    assert client.healthy()
    good = read(world.world / "gallery" / "g00000.png")
    assert client.zero_shot([good], ["red", "blue"])["results"]
    # the failures are counted, with codes, and no 5xx was recorded
    samples = _families(client.metrics())
    codes = {
        s.labels["code"]
        for s in samples["ccsclip_requests_total"]
        if s.labels["transport"] == client.transport
    }
    assert not {c for c in codes if c.startswith("5") or c in ("INTERNAL", "UNKNOWN")}, codes


# --------------------------------------------------------------------------- packaging


def test_generated_grpc_stubs_match_the_proto(tmp_path):
    done = subprocess.run(
        ["bash", str(REPO / "scripts" / "gen_proto.sh"), str(tmp_path)],
        capture_output=True,
        text=True,
        env={"PYTHON": sys.executable, "PATH": f"{BIN}:/usr/bin:/bin"},
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    committed = REPO / "src" / "ccsclip" / "v1"
    generated = tmp_path / "ccsclip" / "v1"
    names = sorted(p.name for p in generated.iterdir())
    assert names == ["__init__.py", "ccsclip_pb2.py", "ccsclip_pb2.pyi", "ccsclip_pb2_grpc.py"]
    for name in names:
        assert (committed / name).read_text() == (generated / name).read_text(), (
            f"{name} is stale: run scripts/gen_proto.sh"
        )


def test_service_modules_never_import_torch():
    code = textwrap.dedent(
        """
        import json, sys
        import ccsclip.service.cli, ccsclip.service.core, ccsclip.service.edge
        import ccsclip.service.grpc_server, ccsclip.service.http, ccsclip.service.metrics
        import ccsclip.service.probes, ccsclip.service.schemas, ccsclip.service.settings
        from ccsclip.v1 import ccsclip_pb2, ccsclip_pb2_grpc
        import service
        bad = sorted(m for m in sys.modules if m.split(".")[0] in
                     ("torch", "open_clip", "torchvision"))
        print(json.dumps(bad))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env={"BENTOML_DO_NOT_TRACK": "True", "PATH": "/usr/bin:/bin", "HOME": "/tmp"},
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


def test_grpc_reflection_lists_the_services(servers):
    import grpc
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    with grpc.insecure_channel(f"127.0.0.1:{servers['grpc'].ports['grpc']}") as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        reply = next(iter(stub.ServerReflectionInfo(iter([request]), timeout=10)))
    names = {s.name for s in reply.list_services_response.service}
    assert {"ccsclip.v1.CCSClip", "grpc.health.v1.Health"} <= names


def test_http_metrics_endpoint_is_bentoml_s(servers):
    """BentoML's own /metrics serves ours (multiprocess files of both workers merged)."""
    text = httpx.get(f"http://127.0.0.1:{servers['http'].ports['http']}/metrics").text
    assert "bentoml_service_request_total" in text or "bentoml_" in text
    assert "ccsclip_profile_info" in text


# --------------------------------------------------------------------------- in-process parts


def test_failing_probe_is_counted_and_serving_continues(world, tmp_path):
    import shutil

    from prometheus_client import CollectorRegistry

    from ccsclip.service import schemas as s
    from ccsclip.service.core import Core
    from ccsclip.service.metrics import Metrics
    from ccsclip.service.probes import ProbeRunner
    from ccsclip.service.settings import ServiceSettings

    broken = tmp_path / "accuracy-broken"
    shutil.copytree(world.world / "accuracy-colour", broken)
    next(broken.rglob("*.png")).write_bytes(b"not a png any more")  # content hash now differs
    good = world.world / "accuracy-shape"
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    settings = ServiceSettings(bundle=world.bundle, galleries=[], probes=[broken, good])
    core = Core.load(settings, metrics)
    probes = ProbeRunner(core.engine, settings.probe_dirs(), metrics, interval_s=0)
    probes.start()  # interval 0: one round, then the thread ends
    probes.join(60)
    results = {(r.profile, r.probe): r for r in probes.response().results}
    for profile in PROFILES:
        failed = results[(profile, "accuracy-colour")]  # the copy keeps its probe.yaml name
        assert not failed.ok and failed.error
        assert results[(profile, "accuracy-shape")].ok
        labels = {"profile": profile, "probe": "accuracy-colour"}
        assert registry.get_sample_value("ccsclip_probe_failures_total", labels) == 1
        assert registry.get_sample_value("ccsclip_probe_accuracy", labels) is None
    answer = core.zero_shot(
        s.ZeroShotRequest(images=[read(world.world / "gallery" / "g00000.png")], labels=["a", "b"])
    )
    assert answer.profile == DEFAULT and probes.response().runs == 1


def test_settings_default_to_the_bundle_s_own_probes_and_galleries(tmp_path, monkeypatch):
    from ccsclip.service.settings import ServiceSettings

    bundle = tmp_path / "bundle"
    for sub, marker in (("probes/acc", "probe.yaml"), ("galleries/g1", "gallery.json")):
        (bundle / sub).mkdir(parents=True)
        (bundle / sub / marker).write_text("{}")
    (bundle / "probes" / "not-a-probe").mkdir()
    for name in ("CCSCLIP_PROBES", "CCSCLIP_GALLERIES"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CCSCLIP_BUNDLE", str(bundle))
    settings = ServiceSettings()
    assert settings.probe_dirs() == [bundle / "probes" / "acc"]
    assert settings.gallery_dirs() == [bundle / "galleries" / "g1"]
    monkeypatch.setenv("CCSCLIP_PROBES", " /a/x , /b/y,")
    monkeypatch.setenv("CCSCLIP_GALLERIES", "")
    settings = ServiceSettings()
    assert settings.probe_dirs() == [Path("/a/x"), Path("/b/y")] and settings.gallery_dirs() == []


def test_the_served_parts_are_built_once_and_the_table_reads_them(world, tmp_path):
    """`build_parts` wires core, galleries and probes together (nothing attached later); the
    table's calls and profile labels take those parts."""
    import dataclasses

    from prometheus_client import CollectorRegistry

    from ccsclip.service import gallery_schemas as g
    from ccsclip.service import schemas as s
    from ccsclip.service.core import NO_PROFILE
    from ccsclip.service.endpoints import BY_NAME
    from ccsclip.service.metrics import Metrics
    from ccsclip.service.parts import build_parts
    from ccsclip.service.settings import ServiceSettings

    settings = ServiceSettings(
        bundle=world.bundle,
        galleries=[world.gallery],
        probes=world.probe_dirs,
        probe_cache_dir=tmp_path / "probe-cache",
    )
    parts = build_parts(settings, transport="grpc", metrics=Metrics(CollectorRegistry()))
    with pytest.raises(dataclasses.FrozenInstanceError):
        parts.probes = None  # type: ignore[misc]
    listed = BY_NAME["profiles"].call(parts, s.EmptyRequest())
    assert listed.galleries == [GALLERY] and sorted(listed.probes) == sorted(
        p.name for p in world.probe_dirs
    )
    assert BY_NAME["probes"].call(parts, s.EmptyRequest()).runs == 0  # not started
    info = BY_NAME["galleries_info"].call(parts, g.GalleryNameRequest(gallery=GALLERY))
    assert info.count > 0 and info.profile == DEFAULT
    # where each entry's metrics label comes from: the gallery's profile, the request's, none
    search = {"gallery": GALLERY, "text": "red", "profile": PRUNED}
    assert BY_NAME["galleries_search"].profile_label(parts, search) == DEFAULT
    assert BY_NAME["zero_shot"].profile_label(parts, {"profile": PRUNED}) == PRUNED
    assert BY_NAME["zero_shot"].profile_label(parts, {"profile": "nope"}) == NO_PROFILE
    assert BY_NAME["galleries_delete"].profile_label(parts, {"gallery": GALLERY}) == NO_PROFILE
    mixed = [{"profile": DEFAULT}, {"profile": PRUNED}]
    assert BY_NAME["embed_images"].profile_label(parts, mixed) == "mixed"
