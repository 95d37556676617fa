"""Live bias at gallery scale: a search right after a write, with declared attributes against
without, on the same 200,000-item gallery twice (goal: within 10 %).

Two embedded galleries (exact backend, `--dim`-dimensional random unit vectors, the same items
with a `colour` of six values) differ only in `bias_attributes: ["colour"]`. Each round writes
one item to both (a new id, then a replace), then times on each, alternately, the search path a
served gallery search runs: `gallery.search` (which first catches up with the write) and the
live-bias hook (`LiveBias.observe`: the kept per-value counts, the null, the counters; nothing
for the gallery without attributes). Printed: median and mean milliseconds per search of both
and their ratio, and the hook's own share; the write's own time with and without counts kept;
and, for comparison, what a recount of every item's metadata costs (what live bias did after
each write before the counts were kept).

    python benchmarks/live_bias.py [--items 200000] [--rounds 200] [--dim 64] [--k 10] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from prometheus_client import CollectorRegistry

from ccsclip.engine.galleries.counts import ValueCounts
from ccsclip.engine.galleries.local import LocalGallery, create_local
from ccsclip.engine.galleries.meta import GalleryModel, GalleryProfile, LiveGalleryMeta
from ccsclip.service.live_bias import LiveBias
from ccsclip.service.metrics import Metrics

COLOURS = ("red", "green", "blue", "cyan", "magenta", "yellow")


def meta(name: str, dim: int, attributes: list[str]) -> LiveGalleryMeta:
    return LiveGalleryMeta(
        name=name,
        uid=f"{name}-uid",
        created_at=0.0,
        backend="exact",
        model=GalleryModel(name="m", weights_sha256="w"),
        profile=GalleryProfile(name="p", sha256="s"),
        embed_dim=dim,
        bundle_manifest_sha256="b",
        bias_attributes=attributes,
    )


def unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    v = rng.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    rng = np.random.default_rng(0)
    live = LiveBias(Metrics(CollectorRegistry()))
    with tempfile.TemporaryDirectory(prefix="ccsclip-live-bias-") as tmp:
        galleries = {}
        for name, attributes in (("declared", ["colour"]), ("plain", [])):
            m = meta(name, args.dim, attributes)
            create_local(Path(tmp), m)
            galleries[name] = LocalGallery(Path(tmp) / name, m, compact_bytes=1 << 40)
        batch = 10_000
        for start in range(0, args.items, batch):
            n = min(batch, args.items - start)
            ids = [f"i{start + i}" for i in range(n)]
            vectors = unit(rng, n, args.dim)
            metadata = [{"colour": COLOURS[(start + i) % 6]} for i in range(n)]
            for gallery in galleries.values():
                gallery.upsert(ids, vectors, metadata)
        search_ms: dict[str, list[float]] = {name: [] for name in galleries}
        write_ms: dict[str, list[float]] = {name: [] for name in galleries}
        hook_ms: dict[str, list[float]] = {name: [] for name in galleries}
        for r in range(args.rounds):
            item = f"new{r // 2}"  # each id written twice: once new, once replaced
            vector = unit(rng, 1, args.dim)
            colour = {"colour": COLOURS[r % 6]}
            query = unit(rng, 1, args.dim)[0]
            order = list(galleries.items()) if r % 2 == 0 else list(galleries.items())[::-1]
            for name, gallery in order:
                t0 = time.perf_counter()
                gallery.upsert([item], vector, [colour])
                t1 = time.perf_counter()
                hits = gallery.search(query, args.k, None, None)
                t_hook = time.perf_counter()
                live.observe(gallery, "p", [h.metadata for h in hits])
                t2 = time.perf_counter()
                write_ms[name].append(1000 * (t1 - t0))
                search_ms[name].append(1000 * (t2 - t1))
                hook_ms[name].append(1000 * (t2 - t_hook))
        t0 = time.perf_counter()
        ValueCounts.of(["colour"], galleries["declared"].metadata())
        recount_ms = 1000 * (time.perf_counter() - t0)
        assert (
            galleries["declared"].value_counts()["colour"]
            == ValueCounts.of(["colour"], galleries["declared"].metadata()).to_dict()["colour"]
        )
        for gallery in galleries.values():
            gallery.close()

    def stats(values: list[float]) -> dict[str, float]:
        return {"median": statistics.median(values), "mean": statistics.fmean(values)}

    result = {
        "items": args.items,
        "rounds": args.rounds,
        "search_ms": {name: stats(v) for name, v in search_ms.items()},
        "write_ms": {name: stats(v) for name, v in write_ms.items()},
        "live_bias_hook_ms": {name: stats(v) for name, v in hook_ms.items()},
        "recount_ms": recount_ms,
    }
    result["ratio_median"] = (
        result["search_ms"]["declared"]["median"] / result["search_ms"]["plain"]["median"]
    )
    result["ratio_mean"] = (
        result["search_ms"]["declared"]["mean"] / result["search_ms"]["plain"]["mean"]
    )
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{args.items} items, {args.rounds} rounds of (write one item, search k={args.k})")
    for name in galleries:
        s, w = result["search_ms"][name], result["write_ms"][name]
        h = result["live_bias_hook_ms"][name]
        print(
            f"{name:9s} search after a write: median {s['median']:.3f} ms, mean {s['mean']:.3f}"
            f" ms (of which the live-bias hook: median {h['median']:.3f} ms); the write: median"
            f" {w['median']:.3f} ms"
        )
    print(
        f"declared / plain: median {result['ratio_median']:.3f}, mean {result['ratio_mean']:.3f}"
        f" (goal <= 1.10); a full recount of the metadata: {recount_ms:.1f} ms"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
