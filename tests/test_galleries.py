"""Galleries that grow, over both real transports and every backend that runs here.

One `bentoml serve` (2 workers) and one `ccsclip serve-grpc` share a gallery folder and a
`milvus-lite server` process; every behaviour runs over HTTP and gRPC, for exact, hnsw (usearch)
and milvus. The ANN and Milvus answers are compared with an in-process exact reference computed
from the engine's own embeddings. A separate gRPC server is SIGKILLed right after a stream of
acknowledged writes and restarted: nothing acknowledged may be lost.
"""

from __future__ import annotations

import csv
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from gallery_fixtures import (  # noqa: E402
    GalleryGrpc,
    GalleryHttp,
    gallery_env,
    running_gallery_servers,
    start_grpc_only,
    start_milvus,
)
from service_fixtures import (  # noqa: E402
    DEFAULT,
    LIMITS,
    PRUNED,
    ApiError,
    grpc_ready,
    make_world,
    wait_ready,
)

pytestmark = pytest.mark.slow
BACKENDS = ("exact", "hnsw", "milvus")
GENEROUS = {"hnsw": {"connectivity": 32, "ef_construction": 400, "ef_search": 400}, "milvus": {}}
QUERIES = ["a red circle", "a blue square", "a green triangle", "a small yellow star"]


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return make_world(tmp_path_factory.mktemp("galleries"))


@pytest.fixture(scope="module")
def milvus(tmp_path_factory):
    root = tmp_path_factory.mktemp("milvus")
    process, uri = start_milvus(root)
    yield uri
    process.terminate()
    process.wait(30)


@pytest.fixture(scope="module")
def servers(world, milvus, tmp_path_factory):
    with running_gallery_servers(world, tmp_path_factory.mktemp("gallery-servers"), milvus) as up:
        yield up


@pytest.fixture(scope="module")
def clients(servers):
    made = {"http": GalleryHttp(servers["http"]), "grpc": GalleryGrpc(servers["grpc"])}
    yield made
    for client in made.values():
        client.close()


@pytest.fixture(scope="module", params=["http", "grpc"])
def client(request, clients):
    return clients[request.param]


@pytest.fixture(scope="module")
def items(world) -> list[tuple[str, bytes, dict[str, Any]]]:
    """The world's gallery images with their attributes as metadata."""
    folder = world.world / "gallery"
    with open(folder / "gallery.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    return [
        (
            row["id"],
            (folder / f"{row['id']}.png").read_bytes(),
            {"shape": row["shape"], "colour": row["colour"], "n": index},
        )
        for index, row in enumerate(rows)
    ]


@pytest.fixture(scope="module")
def reference(world, items):
    """In-process exact answers: the engine's embeddings of every item and query."""
    import io

    from PIL import Image

    from ccsclip.engine.engine import Engine

    engine = Engine.load(world.bundle, intra_op_threads=1)
    images = [Image.open(io.BytesIO(data)).convert("RGB") for _, data, _ in items]
    return {
        "ids": [i for i, _, _ in items],
        "vectors": engine.embed_images(images, DEFAULT),
        "texts": dict(zip(QUERIES, engine.embed_texts(QUERIES), strict=True)),
        "pruned": engine.embed_images(images[:1], PRUNED)[0],
    }


def exact_top(reference, query: np.ndarray, k: int, keep=None) -> list[tuple[str, float]]:
    rows = [i for i, item in enumerate(reference["ids"]) if keep is None or keep(i)]
    scores = reference["vectors"][rows] @ query
    order = np.argsort(-scores, kind="stable")[:k]
    return [(reference["ids"][rows[i]], float(scores[i])) for i in order]


def same_ranking(hits: list[dict[str, Any]], expected: list[tuple[str, float]]) -> None:
    """Same scores rank by rank; the same ids wherever the score is not tied."""
    assert len(hits) == len(expected)
    got = [(h["id"], h["score"]) for h in hits]
    for (_, gscore), (_, escore) in zip(got, expected, strict=True):
        assert gscore == pytest.approx(escore, abs=2e-4), (got, expected)
    tied = {
        round(s, 4)
        for _, s in expected
        if [round(x, 4) for _, x in expected].count(round(s, 4)) > 1
    }
    assert [i for i, s in got if round(s, 4) not in tied] == [
        i for i, s in expected if round(s, 4) not in tied
    ]


def upsert_all(client, name: str, items: list) -> dict[str, Any]:
    """Upsert in requests of at most CCSCLIP_MAX_IMAGES_PER_REQUEST items."""
    step = int(LIMITS["CCSCLIP_MAX_IMAGES_PER_REQUEST"])
    answer: dict[str, Any] = {}
    for start in range(0, len(items), step):
        answer = client.upsert(name, items[start : start + step])
    return answer


def fresh(client, name: str, backend: str, **kw: Any) -> str:
    full = f"{name}-{backend}-{client.transport}"
    try:
        client.drop(full)
    except ApiError:
        pass
    client.create(full, backend=backend, params=GENEROUS.get(backend), **kw)
    return full


# --------------------------------------------------------------------------- behaviour


@pytest.mark.parametrize("backend", BACKENDS)
def test_create_upsert_search_delete_drop(client, backend, items, reference):
    name = fresh(client, "crud", backend, bias_attributes=["shape"])
    info = client.info(name)
    assert (info["backend"], info["profile"], int(info["count"])) == (backend, DEFAULT, 0)
    assert info["bias_attributes"] == ["shape"]  # declared at create, on both transports
    assert info.get("last_write_at") in (None, 0, 0.0)
    answer = upsert_all(client, name, items[:16])
    assert (int(answer["changed"]), int(answer["count"])) == (8, 16)
    answer = upsert_all(client, name, items[8:])  # 8 already there: replaced, not duplicated
    assert int(answer["count"]) == len(items)
    info = client.info(name)
    assert int(info["count"]) == len(items) and info["last_write_at"] > info["created_at"]

    k = 5
    for text in QUERIES[:2]:
        hits = client.search(name, text=text, k=k)
        assert hits["query"] == "text" and hits["backend"] == backend
        same_ranking(hits["hits"], exact_top(reference, reference["texts"][text], k))
    image_hits = client.search(name, image=items[3][1], k=k)["hits"]
    same_ranking(image_hits, exact_top(reference, reference["vectors"][3], k))
    assert image_hits[0]["score"] == pytest.approx(1.0, abs=1e-4)

    colour = items[0][2]["colour"]
    filtered = client.search(name, text=QUERIES[0], k=k, filter={"colour": colour})["hits"]
    assert filtered and all(h["metadata"]["colour"] == colour for h in filtered)
    keep = [i for i, item in enumerate(items) if item[2]["colour"] == colour]
    same_ranking(
        filtered, exact_top(reference, reference["texts"][QUERIES[0]], k, keep.__contains__)
    )

    changed = (items[3][0], items[3][1], {"colour": "none", "n": -1})
    client.upsert(name, [changed])
    top = client.search(name, image=items[3][1], k=1)["hits"][0]
    assert top["id"] == items[3][0] and top["metadata"]["colour"] == "none"

    gone = [items[3][0], items[4][0], "never-added"]
    answer = client.delete(name, gone)
    assert (int(answer["changed"]), int(answer["count"])) == (2, len(items) - 2)
    ids = {h["id"] for h in client.search(name, text=QUERIES[0], k=len(items))["hits"]}
    assert ids == {i for i, _, _ in items} - set(gone)

    assert name in [g["gallery"] for g in client.list()["galleries"]]
    assert client.drop(name)["dropped"] is True
    with pytest.raises(ApiError) as refused:
        client.info(name)
    assert refused.value.status == 404 and refused.value.body["field"] == "gallery"


@pytest.mark.parametrize("backend", ["hnsw", "milvus"])
def test_ann_and_milvus_return_the_exact_top_k(clients, backend, items, reference):
    client = clients["http"]
    name = fresh(client, "topk", backend)
    upsert_all(client, name, items)
    for text in QUERIES:
        for k in (1, 10):
            hits = client.search(name, text=text, k=k, ef=512)["hits"]
            same_ranking(hits, exact_top(reference, reference["texts"][text], k))
    for row in (0, 7, 19):
        hits = client.search(name, image=items[row][1], k=10, ef=512)["hits"]
        same_ranking(hits, exact_top(reference, reference["vectors"][row], 10))
    client.drop(name)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_write_is_seen_at_once_by_every_server_process(clients, backend, items):
    """Bound: zero after the acknowledgement. The HTTP server has two worker processes, so
    repeated searches land on both; each must see every write acknowledged before it."""
    writer, readers = clients["grpc"], [clients["http"], clients["grpc"]]
    name = fresh(writer, "visible", backend)
    for index, (item_id, image, meta) in enumerate(items[:8]):
        writer.upsert(name, [(item_id, image, meta)])
        for reader in readers * 2:
            found = reader.search(name, image=image, k=1)["hits"]
            assert found and found[0]["id"] == item_id
            assert int(reader.info(name)["count"]) == index + 1
        if index % 3 == 2:  # a delete through the other transport, seen by the writer
            clients["http"].delete(name, [item_id])
            assert int(writer.info(name)["count"]) == index
            clients["http"].upsert(name, [(item_id, image, meta)])
    writer.drop(name)
    for reader in readers:
        with pytest.raises(ApiError) as refused:
            reader.search(name, text="a circle")
        assert refused.value.status == 404


@pytest.mark.parametrize("backend", BACKENDS)
def test_parallel_writers_and_readers(clients, backend, items):
    name = fresh(clients["http"], "parallel", backend)
    errors: list[BaseException] = []
    per_writer = 12

    def writer(client, tag: str) -> None:
        try:
            for n in range(0, per_writer, 3):
                batch = [
                    (f"{tag}-{n + j}", items[(n + j) % len(items)][1], {"w": tag}) for j in range(3)
                ]
                client.upsert(name, batch)
        except BaseException as exc:  # reported below
            errors.append(exc)

    def reader(client) -> None:
        try:
            for _ in range(10):
                client.search(name, text=QUERIES[0], k=5)
                client.info(name)
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=writer, args=(clients[t], f"{t}{i}"))
        for t in ("http", "grpc")
        for i in range(2)
    ] + [threading.Thread(target=reader, args=(clients[t],)) for t in ("http", "grpc")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    assert not errors, errors[:3]
    for client in clients.values():
        assert int(client.info(name)["count"]) == 4 * per_writer
    clients["http"].drop(name)


def _bad_requests(items, other_profile_image) -> list[tuple[str, Any, int, str]]:
    image = items[0][1]
    max_k = int(LIMITS["CCSCLIP_MAX_K"])
    return [
        ("unknown gallery", lambda c, g: c.info("no-such-gallery"), 404, "gallery"),
        ("unknown gallery search", lambda c, g: c.search("nope", text="x"), 404, "gallery"),
        ("duplicate gallery", lambda c, g: c.create(g), 409, "gallery"),
        ("path characters", lambda c, g: c.create("../etc"), 400, "gallery"),
        ("slash", lambda c, g: c.create("a/b"), 400, "gallery"),
        ("empty id", lambda c, g: c.upsert(g, [("", image, None)]), 400, "items[0].id"),
        ("long id", lambda c, g: c.upsert(g, [("x" * 257, image, None)]), 400, "items[0].id"),
        (
            "duplicate ids",
            lambda c, g: c.upsert(g, [("a", image, None), ("a", image, None)]),
            400,
            "items",
        ),
        (
            "other profile",
            lambda c, g: c.upsert(g, [("a", image, None)], profile=PRUNED),
            409,
            "profile",
        ),
        (
            "other profile search",
            lambda c, g: c.search(g, image=image, profile=PRUNED),
            409,
            "profile",
        ),
        (
            "nested metadata",
            lambda c, g: c.upsert(g, [("a", image, {"a": {"b": 1}})]),
            400,
            "items[0].metadata",
        ),
        (
            "malformed filter",
            lambda c, g: c.search(g, text="x", filter={"a": {"b": 1}}),
            400,
            "filter",
        ),
        ("filter key", lambda c, g: c.search(g, text="x", filter={"a b": 1}), 400, "filter"),
        ("k above limit", lambda c, g: c.search(g, text="x", k=max_k + 1), 413, "k"),
        ("ef above limit", lambda c, g: c.search(g, text="x", ef=10**6), 413, "ef"),
        ("no query", lambda c, g: c.search(g), 400, None),
        ("unknown backend", lambda c, g: c.create("zz", backend="faiss"), 400, "backend"),
        (
            "bad params",
            lambda c, g: c.create("zz", backend="hnsw", params={"connectivity": 1}),
            400,
            "params.connectivity",
        ),
        (
            "exact params",
            lambda c, g: c.create("zz", backend="exact", params={"x": 1}),
            400,
            "params",
        ),
        ("unknown profile", lambda c, g: c.create("zz", profile="nope"), 404, "profile"),
        ("empty delete", lambda c, g: c.delete(g, []), 400, "ids"),
        (
            "corrupt image",
            lambda c, g: c.upsert(g, [("a", b"not an image", None)]),
            400,
            "items[0].image",
        ),
    ]


def test_bad_input_is_refused_with_the_field(client, items, reference, servers):
    name = fresh(client, "bad", "exact")
    for label, call, status, field in _bad_requests(items, None):
        with pytest.raises(ApiError) as refused:
            call(client, name)
        error = refused.value
        assert error.status == status, (label, error.body)
        if field is not None:
            assert error.body.get("field") == field, (label, error.body)
            assert field.split("[")[0] in error.body["error"], (label, error.body)
    assert int(client.info(name)["count"]) == 0
    assert client.healthy()
    client.drop(name)


def test_a_gallery_of_another_profile_file_is_refused(client, servers, items):
    """A gallery whose profile ONNX hash is not the served one's holds another space."""
    import json
    import shutil

    name = fresh(client, "source", "exact")
    client.upsert(name, items[:2])
    tampered = f"tampered-{client.transport}"
    target = servers["store"] / tampered
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(servers["store"] / name, target)
    meta = json.loads((target / "gallery.json").read_text())
    meta["name"], meta["profile"]["sha256"] = tampered, "0" * 64
    (target / "gallery.json").write_text(json.dumps(meta))
    for call in (lambda: client.search(tampered, text="a circle"), lambda: client.info(tampered)):
        with pytest.raises(ApiError) as refused:
            call()
        assert refused.value.status == 400 and refused.value.body["field"] == "gallery"
        assert "another file for profile" in refused.value.body["error"]
    client.drop(name)
    shutil.rmtree(target)


def test_gallery_requests_are_counted_by_endpoint_and_profile(client, items):
    name = fresh(client, "metrics", "exact")
    client.upsert(name, items[:1])
    for _ in range(3):
        client.search(name, text="a circle", k=1)
    text = client.metrics()
    line = next(
        (
            row
            for row in text.splitlines()
            if row.startswith("ccsclip_requests_total")
            and 'endpoint="galleries_search"' in row
            and f'profile="{DEFAULT}"' in row
        ),
        None,
    )
    assert line is not None and float(line.split()[-1]) >= 1
    client.drop(name)


def test_retrieve_is_gallery_search_with_identical_hits(clients, items):
    """The indexed gallery the servers ship ("shapes", read-only) answers /v1/retrieve and
    /v1/galleries/search alike, over both transports: the same ids and scores, best first."""
    image = items[3][1]
    for client in clients.values():
        for query in ({"text": "a red circle"}, {"image": image}):
            retrieved = client.retrieve("shapes", k=7, **query)
            searched = client.search("shapes", k=7, **query)
            assert [(h["id"], h["score"]) for h in retrieved["hits"]] == [
                (h["id"], h["score"]) for h in searched["hits"]
            ]
            assert len(retrieved["hits"]) == 7 and retrieved["profile"] == searched["profile"]
        assert "shapes" in [g["gallery"] for g in client.list()["galleries"]]


def test_a_shipped_gallery_refuses_writes_and_keeps_its_name(client, items):
    before = int(client.info("shapes")["count"])
    for call in (
        lambda: client.upsert("shapes", [("new", items[0][1], None)]),
        lambda: client.delete("shapes", ["g00000.png"]),
        lambda: client.drop("shapes"),
    ):
        with pytest.raises(ApiError) as refused:
            call()
        assert refused.value.status == 409 and refused.value.body["kind"] == "read_only"
        assert "read-only" in refused.value.body["error"]
    with pytest.raises(ApiError) as clash:
        client.create("shapes", backend="exact")  # one namespace: no second "shapes"
    assert clash.value.status == 409 and clash.value.body["field"] == "gallery"
    assert int(client.info("shapes")["count"]) == before


# --------------------------------------------------------------------------- bulk path


def test_index_streams_into_a_live_gallery_and_resumes(world, servers, clients, reference):
    """`ccsclip index --backend hnsw` into the served root: interrupted after one batch, run
    again (the CLI), it adds only the rest; the servers serve the result at once."""
    import subprocess

    from ccsclip.engine.engine import Engine
    from ccsclip.engine.galleries.bulk import index_into, open_or_create
    from ccsclip.engine.galleries.store import GalleryStore

    images = world.world / "gallery"
    engine = Engine.load(world.bundle, intra_op_threads=1)
    store = GalleryStore(engine, servers["store"])
    gallery = open_or_create(store, "bulk", None, "hnsw", {"ef_search": 400})

    def stop_after_first(done: int, total: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        index_into(engine, gallery, images, batch_size=5, progress=stop_after_first)
    assert gallery.count() == 5
    args = ["index", "--bundle", str(world.bundle), "--images", str(images), "--backend"]
    args += ["hnsw", "--name", "bulk", "--root", str(servers["store"]), "--batch-size", "4"]
    done = subprocess.run(
        [str(Path(sys.executable).parent / "ccsclip"), *args],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    said = " ".join(done.stderr.split())  # rich wraps lines
    assert "already there 5" in said and f"now {len(reference['ids'])} items" in said
    for client in clients.values():
        assert int(client.info("bulk")["count"]) == len(reference["ids"])
        hits = client.search("bulk", text=QUERIES[1], k=5)["hits"]
        expected = exact_top(reference, reference["texts"][QUERIES[1]], 5)
        same_ranking([{**h, "id": Path(h["id"]).stem} for h in hits], expected)
    resume_as_exact = [*args[:6], "exact", *args[7:]]
    wrong = subprocess.run(
        [str(Path(sys.executable).parent / "ccsclip"), *resume_as_exact],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert wrong.returncode == 2 and "exists with backend 'hnsw'" in " ".join(wrong.stderr.split())
    clients["http"].drop("bulk")


# --------------------------------------------------------------------------- durability


def test_sigkill_after_acknowledged_writes_loses_none(world, tmp_path):
    """Acknowledged = fsynced in the log: kill -9 right after the last answer, restart, count.
    A small compaction threshold makes the stream cross several snapshot swaps."""
    store = tmp_path / "store"
    env = {**gallery_env(store, None), "CCSCLIP_GALLERY_COMPACT_BYTES": "4096"}
    server = start_grpc_only(world, tmp_path, env)
    wait_ready(server, grpc_ready)
    client = GalleryGrpc(server)
    image = next((world.world / "gallery").glob("*.png")).read_bytes()
    acknowledged: dict[str, dict[int, set[str]]] = {}
    try:
        for backend in ("exact", "hnsw"):
            name = f"kill-{backend}"
            client.create(name, backend=backend)
            acknowledged[name] = {}
            for n in range(30):
                batch = [(f"{backend}-{n}-{j}", image, {"n": n}) for j in range(3)]
                client.upsert(name, batch)
                acknowledged[name][n] = {i for i, _, _ in batch}
            client.delete(name, [f"{backend}-0-0", f"{backend}-29-2"])
            acknowledged[name][0].discard(f"{backend}-0-0")
            acknowledged[name][29].discard(f"{backend}-29-2")
    finally:
        os.killpg(server.process.pid, signal.SIGKILL)
        server.process.wait(30)
        client.close()
    assert len(list((store / "kill-hnsw").glob("snap-*"))) >= 1  # compactions happened
    # a torn record at the end of a log, as a crash in the middle of an append leaves
    log = sorted((store / "kill-hnsw").glob("wal-*.log"))[-1]
    with open(log, "ab") as handle:
        handle.write(b"CGW1\x00\x10\x00\x00garbage")

    (tmp_path / "again").mkdir()
    restarted = start_grpc_only(world, tmp_path / "again", env)
    wait_ready(restarted, grpc_ready)
    client = GalleryGrpc(restarted)
    try:
        for name, batches in acknowledged.items():
            assert int(client.info(name)["count"]) == sum(len(ids) for ids in batches.values())
            for n, ids in batches.items():
                hits = client.search(name, image=image, k=10, filter={"n": n}, ef=500)["hits"]
                assert {h["id"] for h in hits} == ids, (name, n)
        client.upsert("kill-hnsw", [("after-restart", image, None)])  # the torn tail is cut
        assert int(client.info("kill-hnsw")["count"]) == 89
    finally:
        client.close()
        restarted.stop()
