"""The bulk path: embed a folder of images into a live gallery of any backend, resumably.

Images are read and embedded in batches (one image in memory at a time per batch slot) and each
batch is upserted as one durable write, so an interrupted run keeps everything written so far.
Run again with the same arguments and the ids already in the gallery (the images' relative
paths) are skipped before anything is embedded: only the rest is done. Unreadable images are
skipped and reported, as in the offline `ccsclip index`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ccsclip.engine.embedding_model import EmbeddingModel
from ccsclip.engine.galleries.protocol import Gallery
from ccsclip.engine.galleries.store import GalleryStore
from ccsclip.engine.image_files import list_images, read_image
from ccsclip.errors import InvalidInputError, NotFoundError

log = logging.getLogger(__name__)


@dataclass
class BulkResult:
    gallery: Gallery
    added: int = 0
    already: int = 0  # present from an earlier (interrupted) run
    unreadable: list[str] = field(default_factory=list)


def open_or_create(
    store: GalleryStore, name: str, profile: str | None, backend: str, params: dict[str, Any]
) -> Gallery:
    """The existing gallery (resume: its backend and profile must match), or a new one."""
    try:
        gallery = store.get(name)
    except NotFoundError:
        return store.create(name, profile, backend, params)
    meta = gallery.meta
    wanted = store.engine.resolve_profile(profile)
    if meta.backend != backend or meta.profile.name != wanted:
        raise InvalidInputError(
            f"gallery {name!r} exists with backend {meta.backend!r} and profile "
            f"{meta.profile.name!r}; resume with those, or index into a new name"
        )
    return gallery


def index_into(
    engine: EmbeddingModel,
    gallery: Gallery,
    images_dir: str | Path,
    batch_size: int = 64,
    progress: Callable[[int, int], None] | None = None,
) -> BulkResult:
    """Embed every image below `images_dir` not yet in `gallery`; ids are relative paths."""
    root = Path(images_dir)
    files = list_images(root)
    result = BulkResult(gallery)
    profile = gallery.meta.profile.name
    for start in range(0, len(files), batch_size):
        chunk = files[start : start + batch_size]
        ids = [p.relative_to(root).as_posix() for p in chunk]
        present = gallery.contains(ids)
        result.already += len(present)
        pixels, kept = [], []
        for path, item_id in zip(chunk, ids, strict=True):
            if item_id in present:
                continue
            try:
                pixels.append(engine.preprocess([read_image(path)]))
            except Exception as exc:  # any decode or preprocess failure: skip and report
                log.warning("skipping unreadable image %s: %s", item_id, exc)
                result.unreadable.append(item_id)
                continue
            kept.append(item_id)
        if kept:
            vectors = engine.embed_pixels(np.concatenate(pixels), profile)
            gallery.upsert(kept, vectors, [{} for _ in kept])
            result.added += len(kept)
        if progress is not None:
            progress(min(start + batch_size, len(files)), len(files))
    if hasattr(gallery, "compact"):
        gallery.compact()  # one snapshot at the end: the next open loads it, no log replay
    return result
