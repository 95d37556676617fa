"""`exact`: brute-force cosine search in numpy, the reference every other backend is tested against.

Rows live in one growable float32 matrix (capacity doubles, so appends are amortised O(E));
a delete moves the last row into the hole (O(E)), so row order is an implementation detail and
equal scores are broken by row. Search is one matrix-vector product and `argpartition`: O(N E),
about 67 ms per query at 200,000 x 512 on one core (docs/design.md §12). With a filter, only the
matching rows are scored.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

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

VECTORS = "vectors.npy"
ITEMS = "items.json"


class ExactBackend(GalleryBackend):
    kind = "exact"

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self._vectors = np.zeros((16, dim), dtype=np.float32)
        self._ids: list[str] = []
        self._meta: list[Metadata] = []
        self._row: dict[str, int] = {}

    # ------------------------------------------------------------------ writes

    def _grow(self, need: int) -> None:
        if need <= self._vectors.shape[0]:
            return
        grown = np.zeros((max(need, 2 * self._vectors.shape[0]), self.dim), dtype=np.float32)
        grown[: len(self._ids)] = self._vectors[: len(self._ids)]
        self._vectors = grown

    def upsert(self, ids: Sequence[str], vectors: np.ndarray, metadata: Sequence[Metadata]) -> None:
        self._grow(len(self._ids) + len(ids))
        for item_id, vector, meta in zip(ids, vectors, metadata, strict=True):
            row = self._row.get(item_id)
            if row is None:
                row = len(self._ids)
                self._row[item_id] = row
                self._ids.append(item_id)
                self._meta.append(meta)
            else:
                self._meta[row] = meta
            self._vectors[row] = vector

    def delete(self, ids: Sequence[str]) -> int:
        removed = 0
        for item_id in ids:
            row = self._row.pop(item_id, None)
            if row is None:
                continue
            last = len(self._ids) - 1
            if row != last:
                moved = self._ids[last]
                self._ids[row], self._meta[row] = moved, self._meta[last]
                self._vectors[row] = self._vectors[last]
                self._row[moved] = row
            self._ids.pop()
            self._meta.pop()
            removed += 1
        return removed

    # ------------------------------------------------------------------ reads

    def count(self) -> int:
        return len(self._ids)

    def contains(self, ids: Sequence[str]) -> set[str]:
        return {i for i in ids if i in self._row}

    def vectors(self) -> np.ndarray:
        """The live rows [N, E] (a view: do not keep it across writes)."""
        return self._vectors[: len(self._ids)]

    def ids(self) -> list[str]:
        return list(self._ids)

    def get(self, ids: Sequence[str]) -> tuple[np.ndarray, list[Metadata]]:
        rows = [self._row[i] for i in ids]
        return self._vectors[rows].copy(), [dict(self._meta[r]) for r in rows]

    def search(
        self,
        query: np.ndarray,
        k: int,
        spec: Filter | None = None,
        params: SearchParams | None = None,
    ) -> list[Hit]:
        rows = None
        if spec:
            rows = np.array(
                [i for i, m in enumerate(self._meta) if matches(m, spec)], dtype=np.int64
            )
            scores = self._vectors[rows] @ query if len(rows) else np.zeros(0, np.float32)
        else:
            scores = self.vectors() @ query
        best = top_k(scores, k)
        chosen = best if rows is None else rows[best]
        return [
            Hit(self._ids[r], float(s), dict(self._meta[r]))
            for r, s in zip(chosen, scores[best], strict=True)
        ]

    def metadata(self) -> list[Metadata]:
        return list(self._meta)

    def info(self) -> dict[str, Any]:
        return {"bytes": int(self.vectors().nbytes)}

    # ------------------------------------------------------------------ snapshots

    def save(self, directory: Path) -> None:
        np.save(directory / VECTORS, self.vectors(), allow_pickle=False)
        items = {"ids": self._ids, "metadata": self._meta}
        (directory / ITEMS).write_text(json.dumps(items, ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, directory: Path, dim: int) -> ExactBackend:
        backend = cls(dim)
        vectors = np.load(directory / VECTORS, allow_pickle=False)
        items = json.loads((directory / ITEMS).read_text(encoding="utf-8"))
        ids, meta = items["ids"], items["metadata"]
        if vectors.dtype != np.float32 or vectors.shape != (len(ids), dim) or len(meta) != len(ids):
            raise IntegrityError(
                f"snapshot {directory} is inconsistent: {vectors.shape}, {len(ids)}"
            )
        backend._grow(len(ids))
        backend._vectors[: len(ids)] = vectors
        backend._ids, backend._meta = list(ids), list(meta)
        backend._row = {item: row for row, item in enumerate(ids)}
        return backend
