"""Every gallery a server serves, in one namespace: embedded ones under a root folder, Milvus
ones, and read-only ones shipped with the bundle.

`GalleryStore` creates, opens (once per process, then cached), lists and drops galleries by name.
Names are checked against a strict pattern (`base.NAME_PATTERN`) and only ever joined to the
configured root, so a request can never name a path. A gallery created or dropped by another
process is noticed on the next lookup (the folder, or Milvus's registry, is the truth).

Shipped galleries (CCSCLIP_GALLERIES, by default `<bundle>/galleries/*`) are ordinary gallery
folders, written by `ccsclip index`, opened read-only: a write or drop answers 409 naming why,
and no gallery can be created under their names. Folders in the old `ccsclip index` format are
converted on open (`legacy.py`) or refused with the command that converts them.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from ccsclip.engine.embedding_model import EmbeddingModel
from ccsclip.engine.galleries import legacy, local
from ccsclip.engine.galleries.base import check_name
from ccsclip.engine.galleries.hnsw import HnswParams
from ccsclip.engine.galleries.meta import LiveGalleryMeta, check_binding, new_meta
from ccsclip.engine.galleries.milvus import MilvusConnection, MilvusGallery, MilvusParams
from ccsclip.engine.galleries.protocol import Gallery
from ccsclip.errors import (
    CcsclipError,
    ConflictError,
    InvalidInputError,
    NotFoundError,
    ReadOnlyError,
)

log = logging.getLogger(__name__)
ROOT_LOCK = local.ROOT_LOCK
TRASH = ".dropped-"


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
        engine: EmbeddingModel | None,
        root: Path | None,
        milvus: MilvusConnection | None = None,
        threads: int = 1,
        compact_bytes: int = local.DEFAULT_COMPACT_BYTES,
        shipped: Sequence[Path] = (),
    ) -> None:
        self.engine = engine
        self.root = root
        self.milvus = milvus
        self.threads = threads
        self.compact_bytes = compact_bytes
        self._open: dict[str, Gallery] = {}
        self._lock = threading.Lock()  # the open-gallery cache
        self._create_lock = threading.Lock()
        self.shipped: dict[str, Path] = {}
        self.refused: dict[str, str] = {}  # shipped names that cannot be served, and why
        for folder in shipped:
            self._add_shipped(Path(folder))
        if root is not None:
            root.mkdir(parents=True, exist_ok=True)
            self.clean()
            for folder in sorted(root.iterdir()):
                if folder.is_dir() and legacy.is_legacy(folder):
                    legacy.migrate(folder)
            for name in sorted(set(self.shipped) & set(self.names_in_root())):
                log.error("gallery %r in %s is hidden by the shipped one of that name", name, root)

    def _add_shipped(self, folder: Path) -> None:
        name = check_name(folder.name, "CCSCLIP_GALLERIES")
        if name in self.shipped or name in self.refused:
            raise InvalidInputError(
                f"CCSCLIP_GALLERIES: two galleries are named {name!r} ({folder} and "
                f"{self.shipped.get(name)}); galleries are addressed by folder name, rename one"
            )
        try:
            if legacy.is_legacy(folder):
                legacy.migrate(folder)
            if not (folder / local.CURRENT).is_file():
                raise InvalidInputError(f"{folder} is not a gallery folder (no {local.CURRENT})")
            self.shipped[name] = folder
        except CcsclipError as exc:
            log.error("gallery %s is not served: %s", folder, exc)
            self.refused[name] = str(exc)

    # ------------------------------------------------------------------ lookups

    def _local_meta(self, name: str) -> LiveGalleryMeta | None:
        """gallery.json of a live folder (one with CURRENT), or None; a folder a drop moves
        away while we read is None too (never a FileNotFoundError)."""
        if self.root is None:
            return None
        folder = self.root / name
        try:
            text = (folder / local.META).read_text(encoding="utf-8")
        except (FileNotFoundError, NotADirectoryError):
            return None
        if not (folder / local.CURRENT).is_file():
            return None
        return LiveGalleryMeta.model_validate_json(text)

    def _milvus_meta(self, name: str) -> LiveGalleryMeta | None:
        record = self.milvus.record(name) if self.milvus is not None else None
        return None if record is None else LiveGalleryMeta.model_validate(record["meta"])

    def names_in_root(self) -> list[str]:
        if self.root is None:
            return []
        return sorted(
            p.name
            for p in self.root.iterdir()
            if not p.name.startswith(".") and (p / local.CURRENT).is_file()
        )

    def names(self) -> list[str]:
        found = set(self.shipped) | set(self.names_in_root())
        if self.milvus is not None:
            found |= set(self.milvus.records())
        return sorted(found)

    def cached(self, name: str) -> Gallery | None:
        """The gallery if this process has it open (no file access)."""
        return self._open.get(name)

    def get(self, name: str, field: str = "gallery") -> Gallery:
        """The open gallery (opened on first use); NotFoundError if there is none by that name."""
        check_name(name, field)
        if name in self.refused:
            raise NotFoundError(f"{field}: gallery {name!r} is not served: {self.refused[name]}")
        with self._lock:
            cached = self._open.get(name)
            if cached is not None and name in self.shipped:
                return cached
            if cached is not None:  # still the same gallery (not dropped, maybe re-created)?
                if cached.meta.backend == "milvus":
                    meta = self._milvus_meta(name)
                else:
                    meta = self._local_meta(name)
                if meta is not None and meta.uid == cached.meta.uid:
                    return cached
                self._open.pop(name).close()
            meta = self._shipped_meta(name) or self._local_meta(name) or self._milvus_meta(name)
            if meta is None:
                raise NotFoundError(f"{field}: unknown gallery {name!r}; galleries: {self.names()}")
            if self.engine is not None:
                check_binding(meta, self.engine)
            gallery = self._open_gallery(meta)
            self._open[name] = gallery
            return gallery

    def _shipped_meta(self, name: str) -> LiveGalleryMeta | None:
        folder = self.shipped.get(name)
        if folder is None:
            return None
        return LiveGalleryMeta.model_validate_json((folder / local.META).read_text("utf-8"))

    def _open_gallery(self, meta: LiveGalleryMeta) -> Gallery:
        folder = self.shipped.get(meta.name)
        if folder is not None:
            why = (
                f"is shipped read-only ({folder}); to change it, copy it into the gallery root "
                f"under another name: ccsclip gallery copy {folder} <root>/<name>"
            )
            return local.LocalGallery(folder, meta, self.threads, read_only=why)
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
        like: LiveGalleryMeta | None = None,
        bias_attributes: list[str] | None = None,
    ) -> Gallery:
        """A new gallery bound to `profile` of the engine, or (`like`) to the model and profile
        of another gallery (a copy: no engine needed)."""
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
        if like is not None:
            meta = like.model_copy(
                update={
                    "name": name,
                    "uid": uuid.uuid4().hex,
                    "created_at": time.time(),
                    "backend": backend,
                    "params": params,
                }
            )
        else:
            assert self.engine is not None, "creating a gallery needs an engine (or `like`)"
            meta = new_meta(self.engine, name, profile, backend, params, bias_attributes)
        if name in self.shipped or name in self.refused:
            raise ConflictError(
                f"gallery: {name!r} is the name of a gallery shipped read-only "
                f"({self.shipped.get(name) or self.refused[name]}); choose another name"
            )
        with self._registry():
            if self._local_meta(name) is not None or self._milvus_meta(name) is not None:
                raise ConflictError(f"gallery: {name!r} already exists; drop it first")
            if backend == "milvus":
                assert self.milvus is not None
                self.milvus.create(meta)
            else:
                assert self.root is not None
                local.create_local(self.root, meta)
        with self._lock:
            gallery = self._open_gallery(meta)
            old = self._open.pop(name, None)
            if old is not None:
                old.close()
            self._open[name] = gallery
        return gallery

    def drop(self, name: str) -> None:
        """Remove a gallery for every process at once: under the registry lock (no create or
        drop of any gallery in between) and the gallery's own lock (no write in flight), CURRENT
        is unlinked (readers and writers see 404 from here on), then the folder is renamed out
        of the namespace and deleted. Of N concurrent drops exactly one succeeds; the others
        find no gallery under the lock (404)."""
        check_name(name, "gallery")
        if name in self.shipped:
            raise ReadOnlyError(f"gallery: {name!r} is shipped read-only and cannot be dropped")
        with self._lock:
            cached = self._open.pop(name, None)
            if cached is not None:
                cached.close()
        with self._registry():
            if self._local_meta(name) is not None:
                assert self.root is not None
                folder = self.root / name
                trash = self.root / f"{TRASH}{name}-{uuid.uuid4().hex}"
                with local.file_lock(folder / local.LOCK, create=False):
                    (folder / local.CURRENT).unlink()
                    local.fsync_dir(folder)
                    folder.rename(trash)
                    local.fsync_dir(self.root)
            elif self._milvus_meta(name) is not None:
                assert self.milvus is not None
                self.milvus.drop(name)
                return
            else:
                raise NotFoundError(f"gallery: unknown gallery {name!r}; galleries: {self.names()}")
        shutil.rmtree(trash, ignore_errors=True)

    @contextlib.contextmanager
    def _registry(self) -> Iterator[None]:
        """Creates and drops one at a time: across threads, and across processes through
        `<root>/.lock` when there is a root (Milvus-only stores: per process, see NOTES)."""
        with self._create_lock:
            if self.root is None:
                yield
                return
            with local.file_lock(self.root / ROOT_LOCK):
                yield

    def clean(self) -> list[Path]:
        """Remove what interrupted creates and drops left in the root (under the registry lock,
        so none of it is in use)."""
        if self.root is None:
            return []
        with self._registry():
            found = [
                p
                for p in self.root.iterdir()
                if p.name.startswith(TRASH)
                or (p.name.startswith(".") and p.name.endswith((".tmp", ".old")))
            ]
            for path in found:
                local.remove(path)
        return sorted(found)

    def close(self) -> None:
        with self._lock:
            for gallery in self._open.values():
                gallery.close()
            self._open.clear()
