"""`hnsw`: an approximate index on one machine, usearch's HNSW graph (docs/design.md §12).

Chosen by measurement here (200,000 x 512 clustered, one thread): usearch 2.26 answers in about
1 ms at recall@10 ≈ 1.0, deletes natively (`remove`), stores f16 at recall 0.995 for half the
memory, and saves/restores in under a second; it has wheels for this platform and is maintained.
faiss's HNSW cannot delete; hnswlib has no wheel and no release since 2023.

Item ids are caller strings; usearch keys are uint64, handed out in write order. Replaying the
same writes in the same order (the store's write-ahead log) gives every process the same keys.
Re-adding an existing key needs remove-then-add. `ef` (usearch's `expansion_search`) is the
per-gallery default and may be raised per request. A filtered search scores the matching items
exactly when they are few (as a fraction of the gallery), else over-fetches from the graph and
filters, doubling the fetch until k matches are found or the gallery is exhausted.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

try:  # onnxruntime must be loaded before usearch: the other order segfaults (ort 1.32, usearch
    import onnxruntime  # noqa: F401  2.26.6, measured here); the service imports it anyway
except ImportError:  # pragma: no cover - an environment without the ONNX runtime
    pass
from usearch.index import Index  # noqa: E402

from ccsclip.engine.galleries.base import (
    Filter,
    GalleryBackend,
    Hit,
    Metadata,
    SearchParams,
    matches,
    top_k,
)
from ccsclip.errors import IntegrityError

INDEX = "index.usearch"
KEYS = "keys.json"
_EXACT_FILTER_SHARE = 0.05  # filtered search: score matches exactly below this share of items
_EXACT_FILTER_MIN = 4096
# Rebuild the graph at compaction once removed nodes (deletes, and replaced items, which are
# removed and added again) pass this share of live + removed. usearch reuses removed slots, so
# memory stays bounded, but the graph's links degrade: measured here (20,000 x 32 clustered,
# M 16, ef 64, recall@10 vs exact) 0.74 fresh, 0.74 at a 0.11 share, 0.71 at 0.20, 0.67 at
# 0.27, 0.62 at 0.43; a rebuild restores the fresh figure. benchmarks/retrieval.py --churn.
REBUILD_SHARE = 0.2


class HnswParams(BaseModel):
    """Per-gallery index settings (fixed at creation, except `ef_search`'s per-request override)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # The defaults by measurement (benchmarks/retrieval.py --build-sweep, docs/service.md): at
    # 200,000 x 512 clustered, M 16 with ef_construction 96 builds at ~1,350 items per CPU-second
    # (~2,700 items/s on 2 cores) with recall@10 0.9995 at ef_search 64; 64 and 48 build faster
    # but miss 0.99 at ef_search 64; 128 (the earlier default) builds at ~1,700 items/s for no
    # recall to gain.
    connectivity: int = Field(16, ge=4, le=64)  # M: graph degree (memory, recall)
    ef_construction: int = Field(96, ge=16, le=1024)  # build effort (build time, recall)
    ef_search: int = Field(64, ge=1, le=4096)  # default query effort
    dtype: Literal["f32", "f16"] = "f32"  # f16: half the memory, recall ~0.995 (docs/design.md §12)


class HnswBackend(GalleryBackend):
    kind = "hnsw"

    def __init__(self, dim: int, params: HnswParams, threads: int = 1) -> None:
        self.dim = dim
        self.params = params
        self.threads = threads  # usearch threads for adds and batch searches (0: all cores)
        self._index = self._new_index()
        self._key: dict[str, int] = {}
        self._id: dict[int, str] = {}
        self._meta: dict[int, Metadata] = {}
        self._next = 0
        self.removed = 0  # nodes removed since the graph was built (tombstones)

    def _new_index(self) -> Index:
        p = self.params
        return Index(
            ndim=self.dim,
            metric="cos",
            dtype=p.dtype,
            connectivity=p.connectivity,
            expansion_add=p.ef_construction,
            expansion_search=p.ef_search,
        )

    # ------------------------------------------------------------------ writes

    def upsert(self, ids: Sequence[str], vectors: np.ndarray, metadata: Sequence[Metadata]) -> None:
        existing = np.array([self._key[i] for i in ids if i in self._key], dtype=np.uint64)
        if len(existing):
            self._index.remove(existing)
            self.removed += len(existing)
        keys = []
        for item_id, meta in zip(ids, metadata, strict=True):
            key = self._key.get(item_id)
            if key is None:
                key = self._next
                self._next += 1
                self._key[item_id], self._id[key] = key, item_id
            self._meta[key] = meta
            keys.append(key)
        self._index.add(np.array(keys, dtype=np.uint64), vectors, threads=self.threads)

    def delete(self, ids: Sequence[str]) -> int:
        keys = [self._key.pop(i) for i in ids if i in self._key]
        for key in keys:
            del self._id[key], self._meta[key]
        if keys:
            self._index.remove(np.array(keys, dtype=np.uint64))
            self.removed += len(keys)
        return len(keys)

    def ids(self) -> list[str]:
        return list(self._key)

    def get(self, ids: Sequence[str]) -> tuple[np.ndarray, list[Metadata]]:
        keys = [self._key[i] for i in ids]
        if not keys:
            return np.zeros((0, self.dim), np.float32), []
        return self._vectors(np.array(keys, dtype=np.uint64)), [dict(self._meta[k]) for k in keys]

    def _vectors(self, keys: np.ndarray) -> np.ndarray:
        """Stored vectors of `keys`, as unit float32 rows (f16 storage is widened)."""
        got = self._index.get(keys, dtype=np.float32)
        vectors = np.stack(got) if isinstance(got, tuple) else np.asarray(got)
        vectors = vectors.reshape(len(keys), self.dim)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    def churned(self, share: float = REBUILD_SHARE) -> bool:
        """Whether removed nodes pass `share` of all nodes (live and removed)."""
        return self.removed > share * (self.removed + self.count())

    def rebuild(self) -> None:
        """A fresh graph of the live items (same keys), added on `threads` threads."""
        keys = np.array(list(self._key.values()), dtype=np.uint64)
        fresh = self._new_index()
        if len(keys):
            fresh.add(keys, self._vectors(keys), threads=self.threads)
        self._index, self.removed = fresh, 0

    # ------------------------------------------------------------------ reads

    def count(self) -> int:
        return len(self._key)

    def contains(self, ids: Sequence[str]) -> set[str]:
        return {i for i in ids if i in self._key}

    def _graph(self, query: np.ndarray, count: int, ef: int) -> tuple[np.ndarray, np.ndarray]:
        default = self._index.expansion_search
        self._index.expansion_search = max(ef, count)
        try:
            found = self._index.search(query, count)
        finally:
            self._index.expansion_search = default
        return np.asarray(found.keys, dtype=np.uint64), 1.0 - np.asarray(found.distances)

    def _exact(self, query: np.ndarray, keys: list[int], k: int) -> tuple[np.ndarray, np.ndarray]:
        scores = self._vectors(np.array(keys, dtype=np.uint64)) @ query
        best = top_k(scores, k)
        return np.array(keys, dtype=np.uint64)[best], scores[best]

    def search(
        self,
        query: np.ndarray,
        k: int,
        spec: Filter | None = None,
        params: SearchParams | None = None,
    ) -> list[Hit]:
        total = self.count()
        if total == 0:
            return []
        ef = params.ef if params and params.ef else self.params.ef_search
        if not spec:
            keys, scores = self._graph(query, min(k, total), ef)
        else:
            wanted = [key for key, meta in self._meta.items() if matches(meta, spec)]
            if len(wanted) <= max(_EXACT_FILTER_MIN, _EXACT_FILTER_SHARE * total):
                keys, scores = self._exact(query, wanted, k) if wanted else (np.zeros(0), [])
            else:
                keys, scores = self._filtered(query, k, spec, ef, total)
        return [
            Hit(self._id[int(key)], float(score), dict(self._meta[int(key)]))
            for key, score in zip(keys, scores, strict=True)
        ]

    def _filtered(
        self, query: np.ndarray, k: int, spec: Filter, ef: int, total: int
    ) -> tuple[np.ndarray, np.ndarray]:
        fetch = min(total, 4 * k)
        while True:
            keys, scores = self._graph(query, fetch, ef)
            keep = [i for i, key in enumerate(keys) if matches(self._meta[int(key)], spec)]
            if len(keep) >= k or fetch >= total:
                keep = keep[:k]
                return keys[keep], scores[keep]
            fetch = min(total, 2 * fetch)

    def metadata(self) -> list[Metadata]:
        return list(self._meta.values())

    def info(self) -> dict[str, Any]:
        return {
            "bytes": int(self._index.memory_usage),
            "removed": self.removed,
            **self.params.model_dump(),
        }

    # ------------------------------------------------------------------ snapshots

    def save(self, directory: Path) -> None:
        self._index.save(str(directory / INDEX))
        keys = {
            "next": self._next,
            "ids": list(self._key),
            "keys": list(self._key.values()),
            "metadata": [self._meta[key] for key in self._key.values()],
            "removed": self.removed,
        }
        (directory / KEYS).write_text(json.dumps(keys, ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, directory: Path, dim: int, params: HnswParams, threads: int = 1) -> HnswBackend:
        backend = cls(dim, params, threads)
        backend._index = Index.restore(str(directory / INDEX))
        if backend._index is None:
            raise IntegrityError(f"snapshot {directory}: {INDEX} cannot be read")
        backend._index.expansion_search = params.ef_search
        backend._index.expansion_add = params.ef_construction
        data = json.loads((directory / KEYS).read_text(encoding="utf-8"))
        backend._next = int(data["next"])
        backend.removed = int(data.get("removed", 0))
        for item_id, key, meta in zip(data["ids"], data["keys"], data["metadata"], strict=True):
            backend._key[item_id], backend._id[key], backend._meta[key] = key, item_id, meta
        if len(backend._index) != len(backend._key) or backend._index.ndim != dim:
            raise IntegrityError(
                f"snapshot {directory}: the index holds {len(backend._index)} vectors of "
                f"{backend._index.ndim} dims, {KEYS} names {len(backend._key)}"
            )
        return backend
