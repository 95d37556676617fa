"""`ccsclip gallery copy SRC DST`: move a gallery between backends without embedding again.

A gallery is addressed as `FOLDER/NAME` (an embedded gallery of the root FOLDER) or
`milvus+http://HOST:PORT/NAME` (token from CCSCLIP_MILVUS_TOKEN). The copy streams the source
`batch` items at a time into the destination (one durable write per batch) and binds the
destination to the source's model and profile, so the vectors are never re-embedded. It is
resumable: run it again and the ids already in the destination are skipped.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ccsclip.engine.galleries.milvus import MilvusConnection
from ccsclip.engine.galleries.protocol import Gallery
from ccsclip.engine.galleries.store import GalleryStore
from ccsclip.errors import InvalidInputError, NotFoundError

MILVUS = "milvus+"


@dataclass
class CopyResult:
    copied: int = 0
    already: int = 0
    total: int = 0


def open_store(address: str) -> tuple[GalleryStore, str]:
    """(a store without an engine, the gallery name) for an address (see the module doc)."""
    if address.startswith(MILVUS):
        uri, _, name = address.removeprefix(MILVUS).rstrip("/").rpartition("/")
        if not uri or not name:
            raise InvalidInputError(f"{address!r}: expected milvus+http://HOST:PORT/NAME")
        milvus = MilvusConnection(uri, os.environ.get("CCSCLIP_MILVUS_TOKEN") or None)
        return GalleryStore(None, None, milvus), name
    path = Path(address)
    return GalleryStore(None, path.parent, threads=0, compact_bytes=1 << 40), path.name


def copy_gallery(
    source: Gallery,
    store: GalleryStore,
    name: str,
    backend: str,
    params: dict[str, Any] | None = None,
    batch: int = 1024,
    progress: Callable[[int, int], None] | None = None,
) -> CopyResult:
    """Copy every item of `source` into `store`'s gallery `name` (created like the source)."""
    try:
        target = store.get(name)
    except NotFoundError:
        target = store.create(name, None, backend, params, like=source.meta)
    meta, want = target.meta, source.meta
    if (meta.model, meta.profile, meta.embed_dim) != (want.model, want.profile, want.embed_dim):
        raise InvalidInputError(
            f"{name!r} exists and holds another embedding space (profile "
            f"{meta.profile.name!r}); copy into a new name"
        )
    result = CopyResult(total=source.count())
    done = 0
    for ids, vectors, metadata in source.items(batch):
        present = target.contains(ids)
        keep = [i for i, item in enumerate(ids) if item not in present]
        if keep:
            target.upsert([ids[i] for i in keep], vectors[keep], [metadata[i] for i in keep])
        result.copied += len(keep)
        result.already += len(ids) - len(keep)
        done += len(ids)
        if progress is not None:
            progress(done, result.total)
    if hasattr(target, "compact"):
        target.compact()  # one snapshot at the end (and a fresh graph): no log replay on open
    return result
