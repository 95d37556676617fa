"""The galleries a server can write: embedded ones under a root folder, and Milvus ones.

`GalleryStore` creates, opens (once per process, then cached), lists and drops galleries by name.
Names are checked against a strict pattern (`base.NAME_PATTERN`) and only ever joined to the
configured root, so a request can never name a path. A gallery created or dropped by another
process is noticed on the next lookup (the folder, or Milvus's registry, is the truth).
"""

from __future__ import annotations

import shutil
import threading
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from ccsclip.engine.galleries import local
from ccsclip.engine.galleries.base import check_name
from ccsclip.engine.galleries.hnsw import HnswParams
from ccsclip.engine.galleries.meta import LiveGalleryMeta, check_binding, new_meta
from ccsclip.engine.galleries.milvus import MilvusConnection, MilvusGallery, MilvusParams
from ccsclip.engine.identity import EmbeddingModel
from ccsclip.errors import InvalidInputError, NotFoundError

Gallery = local.LocalGallery | MilvusGallery


def check_params(backend: str, params: dict[str, Any] | None) -> dict[str, Any]:
    """Validated, complete parameters for a backend (defaults filled in)."""
    model: type[BaseModel] | None = {"hnsw": HnswParams, "milvus": MilvusParams}.get(backend)
    if model is None:
        if params:
            raise InvalidInputError("params: the exact backend takes no parameters")
        return {}
    try:
        return model(**(params or {})).model_dump()
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InvalidInputError(f"params.{where}: {first['msg']}") from None


class GalleryStore:
    """Live galleries of one engine: `root` for exact/hnsw, `milvus` for Milvus (both optional)."""

    def __init__(
        self,
        engine: EmbeddingModel,
        root: Path | None,
        milvus: MilvusConnection | None = None,
        threads: int = 1,
        compact_bytes: int = local.DEFAULT_COMPACT_BYTES,
    ) -> None:
        self.engine = engine
        self.root = root
        self.milvus = milvus
        self.threads = threads
        self.compact_bytes = compact_bytes
        self._open: dict[str, Gallery] = {}
        self._lock = threading.Lock()
        if root is not None:
            root.mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------------ lookups

    def _local_meta(self, name: str) -> LiveGalleryMeta | None:
        if self.root is None:
            return None
        path = self.root / name / local.META
        if not path.is_file() or not (self.root / name / local.CURRENT).is_file():
            return None
        return LiveGalleryMeta.model_validate_json(path.read_text(encoding="utf-8"))

    def _milvus_meta(self, name: str) -> LiveGalleryMeta | None:
        record = self.milvus.record(name) if self.milvus is not None else None
        return None if record is None else LiveGalleryMeta.model_validate(record["meta"])

    def names(self) -> list[str]:
        found: set[str] = set()
        if self.root is not None:
            found |= {
                p.name
                for p in self.root.iterdir()
                if not p.name.startswith(".") and (p / local.CURRENT).is_file()
            }
        if self.milvus is not None:
            found |= set(self.milvus.records())
        return sorted(found)

    def cached(self, name: str) -> Gallery | None:
        """The gallery if this process has it open (no file access)."""
        return self._open.get(name)

    def get(self, name: str, field: str = "gallery") -> Gallery:
        """The open gallery (opened on first use); NotFoundError if there is none by that name."""
        check_name(name, field)
        with self._lock:
            cached = self._open.get(name)
            if cached is not None:  # still the same gallery (not dropped, maybe re-created)?
                if cached.meta.backend == "milvus":
                    meta = self._milvus_meta(name)
                else:
                    meta = self._local_meta(name)
                if meta is not None and meta.uid == cached.meta.uid:
                    return cached
                self._open.pop(name).close()
            meta = self._local_meta(name) or self._milvus_meta(name)
            if meta is None:
                raise NotFoundError(f"{field}: unknown gallery {name!r}; galleries: {self.names()}")
            check_binding(meta, self.engine)
            gallery = self._open_gallery(meta)
            self._open[name] = gallery
            return gallery

    def _open_gallery(self, meta: LiveGalleryMeta) -> Gallery:
        if meta.backend == "milvus":
            assert self.milvus is not None
            return MilvusGallery(self.milvus, meta)
        assert self.root is not None
        return local.LocalGallery(self.root / meta.name, meta, self.threads, self.compact_bytes)

    # ------------------------------------------------------------------ create, drop

    def create(
        self,
        name: str,
        profile: str | None,
        backend: str = "hnsw",
        params: dict[str, Any] | None = None,
        bias_attributes: list[str] | None = None,
    ) -> Gallery:
        check_name(name, "gallery")
        params = check_params(backend, params)
        if backend == "milvus" and self.milvus is None:
            raise InvalidInputError(
                "backend: 'milvus' needs a Milvus server: set CCSCLIP_MILVUS_URI"
            )
        if backend != "milvus" and self.root is None:
            raise InvalidInputError(
                f"backend: {backend!r} galleries need a folder: set CCSCLIP_GALLERY_ROOT"
            )
        meta = new_meta(self.engine, name, profile, backend, params, bias_attributes)
        lock = self.root / ".lock" if self.root is not None else None
        with self._lock, local.file_lock(lock) if lock else _nothing():
            if self._local_meta(name) is not None or self._milvus_meta(name) is not None:
                raise InvalidInputError(f"gallery: {name!r} already exists; drop it first")
            if backend == "milvus":
                assert self.milvus is not None
                self.milvus.create(meta)
            else:
                assert self.root is not None
                local.create_local(self.root, meta)
        return self.get(name)

    def drop(self, name: str) -> None:
        check_name(name, "gallery")
        with self._lock:
            cached = self._open.pop(name, None)
            if cached is not None:
                cached.close()
        if self._local_meta(name) is not None:
            assert self.root is not None
            folder = self.root / name
            with local.file_lock(self.root / ".lock"), local.file_lock(folder / local.LOCK):
                trash = self.root / f".dropped-{name}-{folder.stat().st_ino}"
                (folder / local.CURRENT).unlink()  # readers see the drop from here on
                local.fsync_dir(folder)
                folder.rename(trash)
            shutil.rmtree(trash, ignore_errors=True)
            return
        if self._milvus_meta(name) is not None:
            assert self.milvus is not None
            self.milvus.drop(name)
            return
        raise NotFoundError(f"gallery: unknown gallery {name!r}; galleries: {self.names()}")

    def close(self) -> None:
        with self._lock:
            for gallery in self._open.values():
                gallery.close()
            self._open.clear()


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None
