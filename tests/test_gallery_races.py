"""Gallery lifecycle races over the real servers: no 5xx, one winner, one final state.

One `bentoml serve` with 2 workers and one `ccsclip serve-grpc` share a gallery root. HTTP
clients open a new connection per request, so calls land on both workers. Every race is run
through all three processes at once: creates, drops, upserts and deletes of ONE gallery.
Allowed answers are 200 and the documented 4xx (404 once dropped, 409 for a create that lost);
anything else (5xx, INTERNAL) fails the test. After each storm every process must report the
same final state.
"""

from __future__ import annotations

import json
import sys
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from gallery_fixtures import GalleryGrpc, GalleryHttp, running_gallery_servers  # noqa: E402
from service_fixtures import (  # noqa: E402
    ApiError,
    make_world,
)

pytestmark = pytest.mark.slow


class FreshHttp(GalleryHttp):
    """A new TCP connection per request: the kernel spreads them over both workers."""

    def __init__(self, server: Any) -> None:
        super().__init__(server)
        self.http.close()
        self.http = httpx.Client(
            base_url=self.base, timeout=60, limits=httpx.Limits(max_keepalive_connections=0)
        )

    def post(self, path: str, body: Any = None, headers: dict | None = None, **kw: Any) -> Any:
        """JSON as Python writes it: NaN and Infinity included (httpx refuses them)."""
        if body is not None:
            kw["content"] = json.dumps(body).encode("utf-8")
            headers = {**(headers or {}), "content-type": "application/json"}
        return super().post(path, None, headers, **kw)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return make_world(tmp_path_factory.mktemp("races"))


@pytest.fixture(scope="module")
def servers(world, tmp_path_factory):
    with running_gallery_servers(world, tmp_path_factory.mktemp("race-servers")) as servers:
        yield servers


@pytest.fixture(scope="module")
def clients(servers):
    made = [FreshHttp(servers["http"]), FreshHttp(servers["http"]), GalleryGrpc(servers["grpc"])]
    yield made
    for client in made:
        client.close()


@pytest.fixture(scope="module")
def image(world) -> bytes:
    return sorted((world.world / "gallery").glob("*.png"))[0].read_bytes()


def outcome(call: Callable[[], Any]) -> tuple[int, Any]:
    try:
        return 200, call()
    except ApiError as exc:
        return exc.status, exc.body


def run_all(jobs: list[Callable[[], Any]]) -> list[tuple[int, Any]]:
    """Start every job at once (a barrier), return their outcomes in order."""
    results: list[tuple[int, Any]] = [(0, None)] * len(jobs)
    barrier = threading.Barrier(len(jobs))

    def worker(index: int) -> None:
        barrier.wait()
        results[index] = outcome(jobs[index])

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(jobs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    return results


def assert_no_5xx(results: list[tuple[int, Any]], allowed: set[int]) -> Counter:
    codes = Counter(code for code, _ in results)
    bad = [(code, body) for code, body in results if code not in allowed]
    assert not bad, bad[:3]
    return codes


def same_everywhere(clients, name: str) -> dict[str, Any] | None:
    """The gallery's count as every process sees it (None: gone everywhere)."""
    seen = []
    for client in clients * 2:  # twice over: HTTP calls land on both workers
        code, body = outcome(lambda c=client: c.info(name))
        assert code in (200, 404), body
        seen.append(None if code == 404 else int(body["count"]))
    assert len(set(seen)) == 1, seen
    return seen[0]


@pytest.mark.parametrize("backend", ["exact", "hnsw"])
def test_exactly_one_of_concurrent_creates_wins(clients, backend):
    for round_ in range(4):
        name = f"create-{backend}-{round_}"
        results = run_all([lambda c=c, n=name: c.create(n, backend=backend) for c in clients * 3])
        codes = assert_no_5xx(results, {200, 409})
        assert codes[200] == 1, codes
        conflict = next(body for code, body in results if code == 409)
        assert conflict["field"] == "gallery" and "exists" in conflict["error"]
        assert same_everywhere(clients, name) == 0
        clients[0].drop(name)


@pytest.mark.parametrize("backend", ["exact", "hnsw"])
def test_exactly_one_of_concurrent_drops_wins(clients, backend, image):
    for round_ in range(6):
        name = f"drop-{backend}-{round_}"
        clients[2].create(name, backend=backend)
        clients[round_ % 3].upsert(name, [("a", image, None), ("b", image, None)])
        results = run_all([lambda c=c, n=name: c.drop(n) for c in clients * 3])
        codes = assert_no_5xx(results, {200, 404})
        assert codes[200] == 1, codes
        assert same_everywhere(clients, name) is None
        assert name not in [g["gallery"] for g in clients[0].list().get("galleries", [])]


@pytest.mark.parametrize("backend", ["exact", "hnsw"])
def test_upserts_racing_drop_and_recreate_never_fail(clients, backend, image):
    name = f"churn-{backend}"
    clients[0].create(name, backend=backend)
    stop = threading.Event()
    results: list[tuple[int, Any]] = []
    lock = threading.Lock()

    def writer(client, tag: str) -> None:
        n = 0
        while not stop.is_set():
            items = [(f"{tag}-{n}-{j}", image, {"n": n}) for j in range(2)]
            got = outcome(lambda items=items: client.upsert(name, items))
            if got[0] == 200:
                assert got[1]["changed"] == 2
            gone = [f"{tag}-{n}-0", "never-there"]
            deleted = outcome(lambda gone=gone: client.delete(name, gone))
            with lock:
                results.extend([got, deleted])
            n += 1

    def dropper(client) -> None:
        for _ in range(12):
            pair = [outcome(lambda: client.drop(name))]
            pair.append(outcome(lambda: client.create(name, backend=backend)))
            with lock:
                results.extend(pair)
            stop.wait(0.3)
        stop.set()

    threads = [threading.Thread(target=writer, args=(c, f"w{i}")) for i, c in enumerate(clients)]
    threads.append(threading.Thread(target=dropper, args=(clients[1],)))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(600)
    codes = assert_no_5xx(results, {200, 404, 409})
    assert codes[200] > 20 and codes[404] > 0, codes
    for code, body in results:
        if code == 200 and "changed" in body:
            assert 0 <= body["changed"] <= 2, body
    count = same_everywhere(clients, name)
    assert count is not None
    hits = {tuple(h["id"] for h in c.search(name, image=image, k=50)["hits"]) for c in clients * 2}
    assert len(hits) == 1 and len(next(iter(hits))) == min(count, 50)
    clients[0].drop(name)


def test_changed_counts_what_this_request_removed(clients, image):
    """Deletes of ids the gallery never held change nothing, while other processes write;
    concurrent deletes of the same ids remove each id exactly once."""
    name = "changed-exact"
    clients[0].create(name, backend="exact")
    ids = [f"x{i}" for i in range(24)]
    for start in range(0, len(ids), 8):
        clients[2].upsert(name, [(i, image, None) for i in ids[start : start + 8]])
    upserts = [
        lambda c=c, t=t: c.upsert(name, [(f"new-{t}-{j}", image, None) for j in range(3)])
        for t, c in enumerate(clients * 2)
    ]
    absent = [lambda c=c: c.delete(name, ["absent-1", "absent-2", "absent-3"]) for c in clients]
    results = run_all(upserts + absent)
    assert_no_5xx(results, {200})
    assert [body["changed"] for _, body in results[len(upserts) :]] == [0, 0, 0]
    results = run_all([lambda c=c: c.delete(name, ids) for c in clients * 2])
    assert_no_5xx(results, {200})
    assert sum(body["changed"] for _, body in results) == len(ids)
    assert same_everywhere(clients, name) == 18
    clients[0].drop(name)


NON_FINITE = [float("nan"), float("inf"), float("-inf")]


@pytest.mark.parametrize("value", NON_FINITE, ids=["nan", "inf", "-inf"])
def test_non_finite_numbers_are_refused_with_the_field_on_both_transports(clients, image, value):
    name = "finite"
    if outcome(lambda: clients[0].info(name))[0] == 404:
        outcome(lambda: clients[0].create(name, backend="exact"))
    calls = {
        "items[0].metadata": lambda c: c.upsert(name, [("a", image, {"score": value})]),
        "filter": lambda c: c.search(name, text="a circle", filter={"score": value}),
        "params": lambda c: c.create("finite-params", backend="hnsw", params={"ef_search": value}),
    }
    for field, call in calls.items():
        for client in (clients[0], clients[2]):
            code, body = outcome(lambda c=client, call=call: call(c))
            assert code == 400, (field, client, body)
            assert body["field"].startswith(field), (field, body)
    assert same_everywhere(clients, name) == 0
