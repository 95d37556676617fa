"""Gallery backends side by side: exact (numpy), hnsw (usearch, f32 and f16), milvus (optional).

Data are CLUSTERED synthetic unit vectors (E = 512): 1,000 Gaussian centres, items scattered
around them, queries drawn the same way but not in the gallery. Real embeddings are clustered
like this. Uniform random vectors are not: in 512 dimensions every pair is nearly orthogonal,
nearest neighbours are barely nearer than anything else, and every HNSW implementation "fails"
(recall@10 0.03-0.11 at ef 64-256 here, docs/design.md §12) although it works on real data.
So the data
are clustered, and recall is always reported against the exact backend's top-10.

Per backend and size: build time (bulk add, one thread), memory (the index's own bytes and the
process RSS growth), query latency p50/p99 at batch 1 and batch 32 (per query), recall@10 for
several `ef`, and write throughput through the durable path the service uses (write-ahead log
with fsync per call, on a gallery reopened from a snapshot of the built index): adds of 1 and of
1,000 items per call, deletes of 1 item per call, snapshot write, reopen and compaction times.
The last table gives each backend's speed-up over exact per query at its smallest ef with
recall@10 >= 0.95 (goal at 200,000 items: >= 20x).

    python benchmarks/retrieval.py [--quick] [--sizes 100000,200000] [--backends exact,hnsw,...]
                                   [--queries 200] [--json FILE]
    python benchmarks/retrieval.py --lifecycle [--sizes 20000]

`--lifecycle`, per size: the HNSW build on one thread and on every core (usearch `threads`,
items/s and recall@10 at ef 64), delete churn (half the items deleted and re-added five times:
recall@10 and index bytes churned, after the compaction's rebuild, and of a fresh build), and
`ccsclip gallery copy` throughput (hnsw folder -> exact folder, -> hnsw folder).

`--build-sweep`, per size (default 200,000): the HNSW build on every core (usearch `threads` 0,
batches of 1,024 as `ccsclip index` writes) for each `--connectivity` x `--ef-construction`
(default 16,32 x 32,64,128; or `--configs M:efc,...`), cheapest first, one build each: items/s
(wall, and per CPU second: on a shared machine only the latter is the build's own) and recall@10
against exact search at several `ef_search`, with the query p50 at each; printed as each build
ends. It is how
the `hnsw` defaults were chosen (docs/service.md).

`--quick`: 20,000 items, a minute or two. Builds are slow on one core (usearch: about 430 s for
200,000 x 512); `milvus` (milvus-lite, a pure-Python server: docs/design.md §12) is only a behaviour
reference and is not in the default list at full size.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

E = 512
CENTRES = 1000
K = 10
EFS = (16, 32, 64, 128, 256)


def clustered(n: int, rng: np.random.Generator, centres: np.ndarray, spread: float) -> np.ndarray:
    """n unit vectors, each a random centre plus Gaussian noise (relative scale `spread`)."""
    picks = rng.integers(0, len(centres), n)
    noise = rng.standard_normal((n, E), dtype=np.float32) * (spread / np.sqrt(E))
    data = centres[picks] + noise
    return (data / np.linalg.norm(data, axis=1, keepdims=True)).astype(np.float32)


def make_data(n: int, queries: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((CENTRES, E), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    return clustered(n, rng, centres, 0.8), clustered(queries, rng, centres, 0.8)


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def percentiles(seconds: list[float]) -> tuple[float, float]:
    ms = np.array(seconds) * 1000
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


# --------------------------------------------------------------------------- backends


def exact_truth(data: np.ndarray, queries: np.ndarray) -> np.ndarray:
    scores = queries @ data.T
    top = np.argpartition(-scores, K, axis=1)[:, :K]
    order = np.take_along_axis(scores, top, 1).argsort(axis=1)[:, ::-1]
    return np.take_along_axis(top, order, 1)


def recall(found: list[list[int]], truth: np.ndarray) -> float:
    return float(np.mean([len(set(f[:K]) & set(t)) / K for f, t in zip(found, truth, strict=True)]))


def bench_exact(data: np.ndarray, queries: np.ndarray, truth: np.ndarray) -> dict[str, Any]:
    from ccsclip.engine.galleries.exact import ExactBackend

    before = rss_mb()
    started = time.perf_counter()
    backend = ExactBackend(E)
    ids = [str(i) for i in range(len(data))]
    backend.upsert(ids, data, [{}] * len(data))
    build = time.perf_counter() - started
    one = []
    found = []
    for q in queries:
        t = time.perf_counter()
        hits = backend.search(q, K)
        one.append(time.perf_counter() - t)
        found.append([int(h.id) for h in hits])
    batch = []
    for s in range(0, len(queries) - 31, 32):
        t = time.perf_counter()
        scores = queries[s : s + 32] @ backend.vectors().T
        np.argpartition(-scores, K, axis=1)[:, :K]
        batch.append((time.perf_counter() - t) / 32)
    p50, p99 = percentiles(one)
    b50, b99 = percentiles(batch)
    return {
        "backend": backend,
        "build_s": build,
        "index_mb": backend.info()["bytes"] / 2**20,
        "rss_growth_mb": rss_mb() - before,
        "ef": {
            "-": {
                "recall": recall(found, truth),
                "p50_ms": p50,
                "p99_ms": p99,
                "batch32_p50_ms": b50,
                "batch32_p99_ms": b99,
            }
        },
    }


def bench_hnsw(
    data: np.ndarray, queries: np.ndarray, truth: np.ndarray, dtype: str
) -> dict[str, Any]:
    from ccsclip.engine.galleries.hnsw import HnswBackend, HnswParams

    before = rss_mb()
    backend = HnswBackend(E, HnswParams(dtype=dtype), threads=1)
    started = time.perf_counter()
    step = 10_000
    for s in range(0, len(data), step):
        chunk = data[s : s + step]
        backend.upsert([str(i) for i in range(s, s + len(chunk))], chunk, [{}] * len(chunk))
    build = time.perf_counter() - started
    out: dict[str, Any] = {
        "build_s": build,
        "index_mb": backend.info()["bytes"] / 2**20,
        "rss_growth_mb": rss_mb() - before,
        "ef": {},
    }
    index = backend._index
    for ef in EFS:
        index.expansion_search = ef
        one, found = [], []
        for q in queries:
            t = time.perf_counter()
            match = index.search(q, K, threads=1)
            one.append(time.perf_counter() - t)
            found.append([int(k) for k in match.keys])
        batch = []
        for s in range(0, len(queries) - 31, 32):
            t = time.perf_counter()
            index.search(queries[s : s + 32], K, threads=1)
            batch.append((time.perf_counter() - t) / 32)
        p50, p99 = percentiles(one)
        b50, b99 = percentiles(batch)
        out["ef"][str(ef)] = {
            "recall": recall(found, truth),
            "p50_ms": p50,
            "p99_ms": p99,
            "batch32_p50_ms": b50,
            "batch32_p99_ms": b99,
        }
    index.expansion_search = backend.params.ef_search
    out["backend"] = backend
    return out


def writes(kind: str, backend: Any, params: dict[str, Any], n: int = 200) -> dict[str, float]:
    """Durable write throughput (the service's path: log + fsync per call) on a gallery opened
    from a snapshot of the built `backend` (also timed: that is what a restart costs)."""
    from ccsclip.engine.galleries import local
    from ccsclip.engine.galleries.meta import GalleryModel, GalleryProfile, LiveGalleryMeta

    root = Path(tempfile.mkdtemp(prefix="ccsclip-bench-"))
    try:
        meta = LiveGalleryMeta(
            name="bench",
            uid="bench",
            created_at=0,
            backend=kind,
            params=params,
            model=GalleryModel(name="m", weights_sha256="0"),
            profile=GalleryProfile(name="p", sha256="0"),
            embed_dim=E,
            bundle_manifest_sha256="0",
        )
        folder = local.create_local(root, meta)
        t = time.perf_counter()
        local.write_snapshot(folder / "snap-000001", backend, 0)
        local.wal.create_empty(folder / "wal-000001.log")
        current = {
            "uid": "bench",
            "generation": 1,
            "snapshot": "snap-000001",
            "seq": 0,
            "wal": "wal-000001.log",
        }
        local.durable_json(folder / local.CURRENT, current)
        save = time.perf_counter() - t
        t = time.perf_counter()
        gallery = local.LocalGallery(folder, meta, compact_bytes=1 << 40)
        load = time.perf_counter() - t
        extra = make_data(n * 11, 1, seed=7)[0]
        t = time.perf_counter()
        for i in range(n):
            gallery.upsert([f"a{i}"], extra[i : i + 1], [{}])
        add1 = n / (time.perf_counter() - t)
        t = time.perf_counter()
        for b in range(n // 100):
            rows = extra[n + 1000 * b : n + 1000 * (b + 1)]
            gallery.upsert([f"b{b}-{j}" for j in range(1000)], rows, [{}] * 1000)
        add1000 = (n // 100) * 1000 / (time.perf_counter() - t)
        t = time.perf_counter()
        for i in range(n):
            gallery.delete([str(i)])
        delete1 = n / (time.perf_counter() - t)
        t = time.perf_counter()
        gallery.compact()
        compact = time.perf_counter() - t
        return {
            "add1_per_s": add1,
            "add1000_per_s": add1000,
            "delete1_per_s": delete1,
            "compact_s": compact,
            "save_s": save,
            "load_s": load,
        }
    finally:
        shutil.rmtree(root, ignore_errors=True)


def bench_milvus(data: np.ndarray, queries: np.ndarray, truth: np.ndarray) -> dict[str, Any]:
    """milvus-lite as a server process, through the same MilvusClient code as a cluster."""
    from pymilvus import DataType, MilvusClient

    root = Path(tempfile.mkdtemp(prefix="ccsclip-milvus-"))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "milvus_lite",
            "server",
            "--data-dir",
            str(root),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                client = MilvusClient(uri=f"http://127.0.0.1:{port}")
                client.list_collections()
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        schema = client.create_schema(auto_id=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=E)
        index = client.prepare_index_params()
        index.add_index(
            field_name="vector",
            index_type="HNSW",
            metric_type="COSINE",
            params={"M": 16, "efConstruction": 128},
        )
        client.create_collection(
            "bench", schema=schema, index_params=index, consistency_level="Strong"
        )
        started = time.perf_counter()
        for s in range(0, len(data), 5000):
            rows = [{"id": s + i, "vector": v.tolist()} for i, v in enumerate(data[s : s + 5000])]
            client.insert("bench", rows)
        client.search("bench", data=[queries[0].tolist()], limit=K)  # builds the index on load
        build = time.perf_counter() - started
        out: dict[str, Any] = {"build_s": build, "index_mb": float("nan"), "ef": {}}
        with open(f"/proc/{server.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    out["rss_growth_mb"] = int(line.split()[1]) / 1024
        for ef in (64, 256):
            one, found = [], []
            for q in queries[:50]:
                t = time.perf_counter()
                res = client.search(
                    "bench",
                    data=[q.tolist()],
                    limit=K,
                    search_params={"metric_type": "COSINE", "params": {"ef": ef}},
                )
                one.append(time.perf_counter() - t)
                found.append([int(h["id"]) for h in res[0]])
            p50, p99 = percentiles(one)
            out["ef"][str(ef)] = {
                "recall": recall(found, truth[:50]),
                "p50_ms": p50,
                "p99_ms": p99,
                "batch32_p50_ms": float("nan"),
                "batch32_p99_ms": float("nan"),
            }
        return out
    finally:
        server.terminate()
        server.wait(30)
        shutil.rmtree(root, ignore_errors=True)


# --------------------------------------------------------------------------- report


def report(results: dict[str, dict[str, Any]]) -> None:
    print(
        f"\n{'size':>8} {'backend':<9} {'ef':>4} {'recall@10':>9} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'b32 p50':>8} {'b32 p99':>8} {'build s':>8} {'index MB':>9} {'RSS+ MB':>8}"
    )
    for key, r in results.items():
        size, backend = key.split(":")
        for ef, q in r["ef"].items():
            print(
                f"{size:>8} {backend:<9} {ef:>4} {q['recall']:9.3f} {q['p50_ms']:8.3f} "
                f"{q['p99_ms']:8.3f} {q['batch32_p50_ms']:8.3f} {q['batch32_p99_ms']:8.3f} "
                f"{r['build_s']:8.1f} {r['index_mb']:9.1f} {r.get('rss_growth_mb', 0):8.1f}"
            )
    print(
        f"\n{'size':>8} {'backend':<9} {'add 1/call /s':>14} {'add 1000/call /s':>17} "
        f"{'delete 1/call /s':>17} {'compact s':>10} {'snapshot s':>11} {'open s':>7}"
    )
    for key, r in results.items():
        size, backend = key.split(":")
        w = r.get("writes")
        if w:
            print(
                f"{size:>8} {backend:<9} {w['add1_per_s']:14.0f} {w['add1000_per_s']:17.0f} "
                f"{w['delete1_per_s']:17.0f} {w['compact_s']:10.2f} {w['save_s']:11.2f} "
                f"{w['load_s']:7.2f}"
            )
    print(
        f"\n{'size':>8} {'backend':<9} {'ef':>4} {'recall@10':>9} {'speed-up vs exact (p50)':>24}"
    )
    for key, r in results.items():
        size, backend = key.split(":")
        exact = results.get(f"{size}:exact")
        if backend == "exact" or exact is None:
            continue
        ok = [(int(ef), q) for ef, q in r["ef"].items() if q["recall"] >= 0.95]
        if not ok:
            print(f"{size:>8} {backend:<9} {'-':>4} {'<0.95':>9} {'-':>24}")
            continue
        ef, q = min(ok, key=lambda x: x[0])
        speed = exact["ef"]["-"]["p50_ms"] / q["p50_ms"]
        print(f"{size:>8} {backend:<9} {ef:>4} {q['recall']:9.3f} {speed:23.1f}x")


def _recall_at(backend: Any, queries: np.ndarray, truth: np.ndarray, ef: int = 64) -> float:
    from ccsclip.engine.galleries.base import SearchParams

    found = [[int(h.id) for h in backend.search(q, K, None, SearchParams(ef=ef))] for q in queries]
    return recall(found, truth)


def bench_lifecycle(data: np.ndarray, queries: np.ndarray, truth: np.ndarray) -> dict[str, Any]:
    """Build threads, churn and rebuild, copy throughput (see the module doc)."""
    from ccsclip.engine.galleries import local
    from ccsclip.engine.galleries.copy import copy_gallery, open_store
    from ccsclip.engine.galleries.hnsw import HnswBackend, HnswParams
    from ccsclip.engine.galleries.meta import GalleryModel, GalleryProfile, LiveGalleryMeta

    ids = [str(i) for i in range(len(data))]
    out: dict[str, Any] = {"build": {}, "cores": os.cpu_count()}
    for label, threads, efc in (
        ("1 thread", 1, 128),
        ("all cores", 0, 128),
        ("all, efc 64", 0, 64),
    ):
        backend = HnswBackend(E, HnswParams(ef_construction=efc), threads=threads)
        started = time.perf_counter()
        for s in range(0, len(data), 1024):  # `ccsclip index` and `copy` write in batches
            backend.upsert(ids[s : s + 1024], data[s : s + 1024], [{}] * len(data[s : s + 1024]))
        seconds = time.perf_counter() - started
        out["build"][label] = {
            "items_per_s": len(data) / seconds,
            "recall@10_ef64": _recall_at(backend, queries, truth),
        }
    fresh = HnswBackend(E, HnswParams(), threads=0)
    fresh.upsert(ids, data, [{}] * len(ids))
    churned = HnswBackend(E, HnswParams(), threads=0)
    churned.upsert(ids, data, [{}] * len(ids))
    for round_ in range(5):
        half = ids[round_ % 2 :: 2]
        churned.delete(half)
        churned.upsert(half, data[round_ % 2 :: 2], [{}] * len(half))
    out["churn"] = {
        "fresh": (_recall_at(fresh, queries, truth), fresh.info()["bytes"] / 2**20),
        "churned": (_recall_at(churned, queries, truth), churned.info()["bytes"] / 2**20),
    }
    started = time.perf_counter()
    churned.rebuild()
    out["churn"]["rebuild_s"] = time.perf_counter() - started
    out["churn"]["rebuilt"] = (_recall_at(churned, queries, truth), churned.info()["bytes"] / 2**20)
    root = Path(tempfile.mkdtemp(prefix="ccsclip-copy-"))
    try:
        meta = LiveGalleryMeta(
            name="src",
            uid="src-uid",
            created_at=0.0,
            backend="hnsw",
            model=GalleryModel(name="m", weights_sha256="0"),
            profile=GalleryProfile(name="p", sha256="0"),
            embed_dim=E,
            bundle_manifest_sha256="0",
        )
        source = local.LocalGallery(local.create_local(root / "a", meta), meta, threads=0)
        for s in range(0, len(data), 4096):
            source.upsert(ids[s : s + 4096], data[s : s + 4096], [{}] * len(ids[s : s + 4096]))
        out["copy"] = {}
        for kind in ("exact", "hnsw"):
            store, name = open_store(str(root / "b" / kind))
            started = time.perf_counter()
            copy_gallery(source, store, name, kind)
            out["copy"][kind] = len(data) / (time.perf_counter() - started)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return out


def bench_build_sweep(
    data: np.ndarray,
    queries: np.ndarray,
    truth: np.ndarray,
    connectivity: list[int],
    ef_construction: list[int],
    configs: list[tuple[int, int]] | None = None,
) -> list[dict[str, Any]]:
    """One build per (M, ef_construction) (`configs`, else the grid), cheapest first; items/s
    (wall and per CPU second) and recall@10 per ef_search."""
    from ccsclip.engine.galleries.hnsw import HnswBackend, HnswParams

    ids = [str(i) for i in range(len(data))]
    rows = []
    grid = configs or [(m, efc) for m in connectivity for efc in ef_construction]
    for m, efc in sorted(grid, key=lambda x: x[0] * x[1]):
        backend = HnswBackend(E, HnswParams(connectivity=m, ef_construction=efc), threads=0)
        load = os.getloadavg()[0]
        started, cpu = time.perf_counter(), time.process_time()
        for s in range(0, len(data), 1024):  # `ccsclip index` and `copy` write in batches
            backend.upsert(ids[s : s + 1024], data[s : s + 1024], [{}] * len(data[s : s + 1024]))
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        row: dict[str, Any] = {
            "connectivity": m,
            "ef_construction": efc,
            "items_per_s": len(data) / seconds,
            # on a shared machine wall time measures the neighbours too: CPU time does not, and
            # the build's two threads scale (usearch adds in parallel), so this is the rate on
            # `cores` cores of its own
            "items_per_cpu_s": len(data) / cpu,
            "cores": os.cpu_count(),
            "load_before": load,
            "load_after": os.getloadavg()[0],
            "ef": {},
        }
        for ef in (32, 64, 128, 256):
            from ccsclip.engine.galleries.base import SearchParams

            one, found = [], []
            for q in queries:
                t = time.perf_counter()
                hits = backend.search(q, K, None, SearchParams(ef=ef))
                one.append(time.perf_counter() - t)
                found.append([int(h.id) for h in hits])
            row["ef"][ef] = (recall(found, truth), percentiles(one)[0])
        efs = "  ".join(
            f"ef {ef}: recall {r:.4f} p50 {ms:.2f} ms" for ef, (r, ms) in row["ef"].items()
        )
        print(
            f"  M {m:>2} efc {efc:>3}: {row['items_per_s']:7.0f} items/s wall (load "
            f"{load:.1f}->{row['load_after']:.1f}), {row['items_per_cpu_s']:6.0f} items per CPU-s "
            f"(x{row['cores']} cores: {row['items_per_cpu_s'] * row['cores']:6.0f} items/s)  {efs}",
            flush=True,
        )
        rows.append(row)
        del backend
    return rows


def report_lifecycle(size: int, r: dict[str, Any]) -> None:
    print(f"\n{size} items x {E}, {r['cores']} cores, load {os.getloadavg()[0]:.1f}")
    for label, b in r["build"].items():
        print(
            f"  build {label:>12}: {b['items_per_s']:8.0f} items/s, recall@10 (ef 64) "
            f"{b['recall@10_ef64']:.3f}"
        )
    c = r["churn"]
    for label in ("fresh", "churned", "rebuilt"):
        print(
            f"  churn {label:>8}: recall@10 (ef 64) {c[label][0]:.3f}, index {c[label][1]:.1f} MB"
        )
    print(f"  rebuild {c['rebuild_s']:.1f} s")
    for kind, rate in r["copy"].items():
        print(f"  copy hnsw -> {kind}: {rate:8.0f} items/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="20,000 items")
    parser.add_argument("--sizes", default=None, help="comma-separated sizes")
    parser.add_argument("--backends", default=None, help="exact,hnsw,hnsw-f16,milvus")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--no-writes", action="store_true", help="skip the write throughput")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--lifecycle", action="store_true", help="build, churn, copy figures")
    parser.add_argument("--build-sweep", action="store_true", help="HNSW build parameter sweep")
    parser.add_argument("--connectivity", default="16,32", help="--build-sweep: M values")
    parser.add_argument("--ef-construction", default="32,64,128", help="--build-sweep: values")
    parser.add_argument("--configs", default=None, help="--build-sweep: M:efc,... (not a grid)")
    args = parser.parse_args()
    if args.build_sweep:
        for size in [int(s) for s in (args.sizes or "200000").split(",")]:
            data, queries = make_data(size, args.queries)
            truth = exact_truth(data, queries)
            print(f"{size} items x {E}, {os.cpu_count()} cores, {len(queries)} queries", flush=True)
            rows = bench_build_sweep(
                data,
                queries,
                truth,
                [int(x) for x in args.connectivity.split(",")],
                [int(x) for x in args.ef_construction.split(",")],
                [tuple(map(int, c.split(":"))) for c in args.configs.split(",")]
                if args.configs
                else None,
            )
            if args.json:
                args.json.write_text(json.dumps(rows, indent=1))
        return
    if args.lifecycle:
        for size in [int(s) for s in (args.sizes or "20000").split(",")]:
            data, queries = make_data(size, args.queries)
            report_lifecycle(size, bench_lifecycle(data, queries, exact_truth(data, queries)))
        return
    sizes = [
        int(s) for s in (args.sizes or ("20000" if args.quick else "100000,200000")).split(",")
    ]
    default = "exact,hnsw,hnsw-f16,milvus" if args.quick else "exact,hnsw,hnsw-f16"
    backends = (args.backends or default).split(",")
    results: dict[str, dict[str, Any]] = {}
    for size in sizes:
        data, queries = make_data(size, args.queries)
        truth = exact_truth(data, queries)
        for backend in backends:
            print(f"[{time.strftime('%H:%M:%S')}] {size} {backend} ...", flush=True)
            if backend == "exact":
                r = bench_exact(data, queries, truth)
            elif backend.startswith("hnsw"):
                dtype = "f16" if backend.endswith("f16") else "f32"
                r = bench_hnsw(data, queries, truth, dtype)
            else:
                r = bench_milvus(data, queries, truth)
            built = r.pop("backend", None)
            if not args.no_writes and backend in ("exact", "hnsw"):
                params = {} if backend == "exact" else built.params.model_dump()
                r["writes"] = writes(backend, built, params)
            del built
            results[f"{size}:{backend}"] = r
            if args.json:
                args.json.write_text(json.dumps(results, indent=1))
    report(results)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
