"""The one interface every served gallery implements: folder galleries (local.py) and Milvus
collections (milvus.py). The store hands these out; the service and the bulk tools use nothing
else of a gallery."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol

import numpy as np

from ccsclip.engine.galleries.base import Filter, GalleryFacts, Hit, Metadata, SearchParams
from ccsclip.engine.galleries.meta import LiveGalleryMeta


class Gallery(Protocol):
    """One served gallery (folder or Milvus): thread-safe; writes return (items changed, count
    after the write)."""

    meta: LiveGalleryMeta

    def upsert(
        self, ids: Sequence[str], vectors: np.ndarray, metadata: Sequence[Metadata]
    ) -> tuple[int, int]: ...

    def delete(self, ids: Sequence[str]) -> tuple[int, int]: ...

    def search(
        self, query: np.ndarray, k: int, spec: Filter | None, params: SearchParams | None
    ) -> list[Hit]: ...

    def count(self) -> int: ...

    def contains(self, ids: Sequence[str]) -> set[str]: ...

    def items(
        self, batch: int = 1024
    ) -> Iterator[tuple[list[str], np.ndarray, list[Metadata]]]: ...

    def info(self) -> GalleryFacts: ...

    def value_counts(self) -> dict[str, dict[str, int]]:
        """{declared bias attribute: {value: live items}}, kept as the gallery is written."""
        ...

    def close(self) -> None: ...
