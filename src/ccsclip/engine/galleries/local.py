"""An embedded gallery on disk (exact or hnsw): snapshot + write-ahead log, shared by processes.

Layout of `<root>/<name>/`:

    gallery.json        LiveGalleryMeta (backend, params, model/profile binding)
    CURRENT             {"uid", "generation", "snapshot" (or null), "seq", "wal"}
    lock                flock(2) target: one writer at a time across processes
    snap-000003/        snapshot.json (seq, count, sha256 of each file) + the backend's files
    wal-000003.log      writes after that snapshot (wal.py)

Durability: a write is appended to the log and fsynced before it is applied and acknowledged,
under the gallery lock; on open, the snapshot is loaded and the log replayed. Compaction (when
the log passes `compact_bytes`) writes the next snapshot into a temporary directory, renames it
into place, creates an empty log, and only then swaps CURRENT (write, fsync, rename, fsync the
directory): a crash at any point leaves the previous generation intact, and a half-written
snapshot is never named in CURRENT, so never served.

Consistency across processes (every HTTP worker and the gRPC server open the same folder): before
each search and each write, a process re-reads CURRENT (a few hundred bytes) and applies the log
records it has not seen. So a write acknowledged by any process is seen by every later search in
every process: the visibility bound is zero after the acknowledgement, at the cost of one small
file read and one log read per request. A process that finds a newer generation finishes the log
it was reading (the old log is frozen and kept one generation) and continues with the new one;
if it fell further behind it reloads the snapshot.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ccsclip.engine.galleries import wal
from ccsclip.engine.galleries.base import (
    Filter,
    GalleryBackend,
    GalleryFacts,
    Hit,
    Metadata,
    SearchParams,
)
from ccsclip.engine.galleries.counts import ValueCounts
from ccsclip.engine.galleries.exact import ExactBackend
from ccsclip.engine.galleries.hnsw import HnswBackend, HnswParams
from ccsclip.engine.galleries.meta import LiveGalleryMeta
from ccsclip.errors import IntegrityError, InvalidInputError, NotFoundError, ReadOnlyError
from ccsclip.fileio import atomic_directory, sha256_file

META = "gallery.json"
ROOT_LOCK = ".lock"  # in a gallery root: creates, drops and conversions, one at a time
CURRENT = "CURRENT"
LOCK = "lock"
SNAPSHOT = "snapshot.json"
DEFAULT_COMPACT_BYTES = 64 * 1024 * 1024


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def durable_json(path: Path, data: Any) -> None:
    """Write JSON to a temp file, fsync, rename over `path`, fsync the directory."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(data, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


@contextlib.contextmanager
def file_lock(path: Path, create: bool = True, wait: bool = True) -> Iterator[bool]:
    """An exclusive flock(2) on `path`, across processes; yields whether it was taken.

    `create=False`: the file must exist (a gallery's own lock: creating it inside a folder that
    a drop has just moved away would lock nothing), else FileNotFoundError. `wait=False`: yield
    False at once when another process holds it."""
    fd = os.open(path, os.O_RDWR | (os.O_CREAT if create else 0), 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)  # closing releases the lock


def leftovers(directory: Path, generation: int | None) -> list[Path]:
    """What interrupted writes left in a gallery folder: temporary snapshot folders and CURRENT
    files, and generations other than the current one and the one before it (readers may still
    finish its log). Only safe to remove while holding the gallery lock: every compaction runs
    under it, so nothing listed here is being written."""
    found = []
    for path in directory.iterdir():
        name = path.name
        if name.startswith((".snap-", f".{CURRENT}.")) and name.endswith((".tmp", ".old")):
            found.append(path)
        elif generation is not None and name.startswith(("snap-", "wal-")):
            digits = name.removeprefix("snap-").removeprefix("wal-").removesuffix(".log")
            if digits.isdigit() and int(digits) not in (generation, generation - 1):
                found.append(path)
    return sorted(found)


def remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def new_backend(meta: LiveGalleryMeta, threads: int = 1) -> GalleryBackend:
    if meta.backend == "exact":
        return ExactBackend(meta.embed_dim)
    return HnswBackend(meta.embed_dim, HnswParams(**meta.params), threads)


def _sha256_tree(directory: Path) -> dict[str, str]:
    return {p.name: sha256_file(p) for p in sorted(directory.iterdir()) if p.name != SNAPSHOT}


def write_snapshot(
    directory: Path, backend: GalleryBackend, seq: int, last_write: float | None = None
) -> None:
    """The backend's files plus snapshot.json (seq, count, hashes), written atomically."""
    with atomic_directory(directory) as tmp:
        backend.save(tmp)
        files = _sha256_tree(tmp)
        info = {"seq": seq, "count": backend.count(), "last_write": last_write, "files": files}
        (tmp / SNAPSHOT).write_text(json.dumps(info), encoding="utf-8")
        for path in tmp.iterdir():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
        fsync_dir(tmp)
    fsync_dir(directory.parent)


def load_snapshot(
    directory: Path, meta: LiveGalleryMeta, threads: int = 1
) -> tuple[Any, int, float | None]:
    """(backend, seq, last write time) from a snapshot, every file's sha256 checked first."""
    info = json.loads((directory / SNAPSHOT).read_text(encoding="utf-8"))
    for name, digest in info["files"].items():
        path = directory / name
        if name != Path(name).name or not path.is_file() or sha256_file(path) != digest:
            raise IntegrityError(f"snapshot {directory}: {name} is missing or altered")
    if meta.backend == "exact":
        backend: GalleryBackend = ExactBackend.load(directory, meta.embed_dim)
    else:
        backend = HnswBackend.load(directory, meta.embed_dim, HnswParams(**meta.params), threads)
    if backend.count() != info["count"]:
        raise IntegrityError(
            f"snapshot {directory}: {backend.count()} items, expected {info['count']}"
        )
    return backend, int(info["seq"]), info.get("last_write")


class LocalGallery:
    """One embedded gallery as seen by one process (thread-safe; see the module doc)."""

    def __init__(
        self,
        directory: Path,
        meta: LiveGalleryMeta,
        threads: int = 1,
        compact_bytes: int = DEFAULT_COMPACT_BYTES,
        clean: bool = True,
        read_only: str | None = None,
    ) -> None:
        """`read_only`: why writes are refused (a gallery shipped in a bundle); such a gallery is
        never locked nor cleaned, so it may live on a read-only file system."""
        self.dir = directory
        self.read_only = read_only
        self.meta = meta
        self.threads = threads
        self.compact_bytes = compact_bytes
        self._lock = threading.RLock()
        self.backend: GalleryBackend = new_backend(meta, threads)
        self.generation = -1
        self.seq = 0
        self.wal: Path | None = None
        self.offset = 0
        self.last_write: float | None = None
        # per-value counts of the declared bias attributes: recounted when a snapshot is
        # loaded, then kept by every applied log record (counts.py)
        self.counts = ValueCounts(meta.bias_attributes)
        with self._lock:
            self.sync()
        if clean and read_only is None:
            self.clean(wait=True)  # at most one write or compaction long

    # ------------------------------------------------------------------ reading the files

    def _current(self) -> dict[str, Any]:
        try:
            current = json.loads((self.dir / CURRENT).read_text(encoding="utf-8"))
        except FileNotFoundError:
            current = None
        if current is None or current.get("uid") != self.meta.uid:
            raise NotFoundError(f"gallery {self.meta.name!r} was dropped")
        return current

    def sync(self) -> None:
        """Catch up with the files: new log records, a newer generation (caller holds _lock)."""
        for attempt in range(3):
            try:
                self._sync_once(self._current())
                return
            except FileNotFoundError as exc:  # a compaction (or a drop) moved what we read
                if attempt == 2:
                    self._current()  # NotFoundError if the gallery was dropped meanwhile
                    raise IntegrityError(f"gallery {self.meta.name!r}: {exc}") from exc

    def _sync_once(self, current: dict[str, Any]) -> None:
        generation = int(current["generation"])
        if generation == self.generation:
            self._tail()
            return
        if (
            generation == self.generation + 1
            and not current.get("rebuilt")
            and self.wal is not None
            and self.wal.exists()
        ):
            self._tail()  # the old log is frozen: finish it, then continue with the new one
            if self.seq == int(current["seq"]):
                self.generation, self.wal, self.offset = generation, self.dir / current["wal"], 0
                self._tail()
                return
        self._reload(current)

    def _reload(self, current: dict[str, Any]) -> None:
        if current["snapshot"] is None:
            backend, seq, last = new_backend(self.meta, self.threads), 0, None
        else:
            snapshot = self.dir / current["snapshot"]
            backend, seq, last = load_snapshot(snapshot, self.meta, self.threads)
        self.backend.close()
        self.backend, self.seq, self.last_write = backend, seq, last
        self.counts = ValueCounts.of(self.meta.bias_attributes, self._all_metadata())
        self.generation, self.wal, self.offset = (
            int(current["generation"]),
            self.dir / current["wal"],
            0,
        )
        self._tail()

    def _tail(self) -> None:
        assert self.wal is not None
        for record, end in wal.read(self.wal, self.offset, self.meta.embed_dim):
            if record.seq > self.seq:
                self._apply(record)
            self.offset = end

    def _apply(self, record: wal.Record) -> int:
        """Apply one record; returns how many items it changed."""
        changed = len(record.ids)
        if self.counts:  # the values of the items this record replaces or removes go out
            self.counts.remove(self.backend.get(sorted(self.backend.contains(record.ids)))[1])
        if record.op == "upsert":
            self.counts.add(record.metadata)
            self.backend.upsert(record.ids, record.vectors, record.metadata)  # type: ignore[arg-type]
        else:
            changed = self.backend.delete(record.ids)
        self.seq = record.seq
        self.last_write = record.time
        return changed

    # ------------------------------------------------------------------ writes

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """This process's lock, then the gallery's file lock, then caught up with the files.

        The lock file is opened without O_CREAT: if a drop moved the folder away, there is no
        lock to take and the gallery is gone (404), never a FileNotFoundError. If the folder at
        our path is another gallery by now, `sync` finds another uid in CURRENT (404 too)."""
        if self.read_only is not None:
            raise ReadOnlyError(f"gallery: {self.meta.name!r} {self.read_only}")
        with self._lock:
            try:
                with file_lock(self.dir / LOCK, create=False):
                    self.sync()
                    yield
            except FileNotFoundError as exc:
                if not (self.dir / LOCK).exists():
                    raise NotFoundError(f"gallery {self.meta.name!r} was dropped") from None
                raise IntegrityError(f"gallery {self.meta.name!r}: {exc}") from exc

    def _write(self, record: wal.Record) -> tuple[int, int]:
        """Log (fsync), apply, maybe compact; returns (items changed, count after the write)."""
        with self._locked():
            assert self.wal is not None
            if self.wal.exists() and self.wal.stat().st_size != self.offset:
                wal.truncate(self.wal, self.meta.embed_dim)  # a torn tail from a crash
            record.seq, record.time = self.seq + 1, time.time()
            if record.op == "delete":  # log only what is there: a no-op writes nothing
                record.ids = sorted(self.backend.contains(record.ids))
                if not record.ids:
                    return 0, self.backend.count()
            self.offset = wal.append(self.wal, record)
            changed = self._apply(record)
            if self.offset >= self.compact_bytes:
                self._compact()
            return changed, self.backend.count()

    def upsert(
        self, ids: Sequence[str], vectors: np.ndarray, metadata: Sequence[Metadata]
    ) -> tuple[int, int]:
        """(items written, count after)."""
        if len(set(ids)) != len(ids) or len(ids) != len(vectors) or len(ids) != len(metadata):
            raise InvalidInputError("items: ids must be unique, one vector and metadata each")
        record = wal.Record(0, "upsert", list(ids), [dict(m) for m in metadata], vectors)
        return self._write(record)

    def delete(self, ids: Sequence[str]) -> tuple[int, int]:
        """(items this request removed, count after): counted under the gallery lock, so other
        processes' writes never leak into the figure."""
        return self._write(wal.Record(0, "delete", list(ids)))

    def compact(self) -> None:
        """Write a snapshot now and start a new log (also done when the log grows large)."""
        with self._locked():
            self._compact()

    def clean(self, wait: bool = False) -> list[Path]:
        """Remove crash leftovers (see `leftovers`) if the gallery lock is free (or, with `wait`,
        once it is); returns what was removed. Opening a gallery calls it, so the disk a gallery
        uses stays bounded however many compactions were interrupted."""
        if self.read_only is not None:
            return []
        with self._lock:
            try:
                with file_lock(self.dir / LOCK, create=False, wait=wait) as taken:
                    if not taken:
                        return []
                    self.sync()
                    found = leftovers(self.dir, self.generation)
                    for path in found:
                        remove(path)
                    return found
            except FileNotFoundError:
                raise NotFoundError(f"gallery {self.meta.name!r} was dropped") from None

    def _compact(self) -> None:
        generation = self.generation + 1
        snapshot, log = f"snap-{generation:06d}", f"wal-{generation:06d}.log"
        rebuilt = isinstance(self.backend, HnswBackend) and self.backend.churned()
        if rebuilt:  # heavy churn: a fresh graph (bounded memory, recall of a fresh build)
            self.backend.rebuild()  # type: ignore[union-attr]
        write_snapshot(self.dir / snapshot, self.backend, self.seq, self.last_write)
        wal.create_empty(self.dir / log)
        current = {
            "uid": self.meta.uid,
            "generation": generation,
            "snapshot": snapshot,
            "seq": self.seq,
            "wal": log,
            "rebuilt": rebuilt,  # other processes reload the snapshot rather than keep tailing
        }
        durable_json(self.dir / CURRENT, current)
        self.generation, self.wal, self.offset = generation, self.dir / log, 0
        for old in (f"snap-{generation - 2:06d}", f"wal-{generation - 2:06d}.log"):
            remove(self.dir / old)

    # ------------------------------------------------------------------ reads

    def search(
        self, query: np.ndarray, k: int, spec: Filter | None, params: SearchParams | None
    ) -> list[Hit]:
        with self._lock:
            self.sync()
            return self.backend.search(query, k, spec, params)

    def count(self) -> int:
        with self._lock:
            self.sync()
            return self.backend.count()

    def contains(self, ids: Sequence[str]) -> set[str]:
        with self._lock:
            self.sync()
            return self.backend.contains(ids)

    def items(self, batch: int = 1024) -> Iterator[tuple[list[str], np.ndarray, list[Metadata]]]:
        """Every item, `batch` at a time (ids, unit vectors, metadata), as of the call."""
        with self._lock:
            self.sync()
            ids = self.backend.ids()
        for start in range(0, len(ids), batch):
            with self._lock:  # writes between batches: take what is there now
                present = self.backend.contains(ids[start : start + batch])
                chunk = [i for i in ids[start : start + batch] if i in present]
                vectors, metadata = self.backend.get(chunk)
            yield chunk, vectors, metadata

    def info(self) -> GalleryFacts:
        with self._lock:
            self.sync()
            return GalleryFacts(
                count=self.backend.count(),
                last_write_at=self.last_write,
                seq=self.seq,
                generation=self.generation,
                backend=self.backend.info(),
            )

    def metadata(self) -> list[Metadata]:
        with self._lock:
            self.sync()
            return self.backend.metadata()

    def _all_metadata(self) -> list[Metadata]:
        """Every item's metadata when counts are kept (else none is read)."""
        return self.backend.metadata() if self.meta.bias_attributes else []

    def value_counts(self) -> dict[str, dict[str, int]]:
        """{declared attribute: {value: live items}} as of now (O(values): kept as written)."""
        with self._lock:
            self.sync()
            return self.counts.to_dict()

    def close(self) -> None:
        self.backend.close()


def create_local(root: Path, meta: LiveGalleryMeta) -> Path:
    """A new gallery folder (gallery.json, empty log, CURRENT), renamed into place at once."""
    target = root / meta.name
    with atomic_directory(target) as tmp:
        (tmp / META).write_text(json.dumps(meta.dump(), indent=2) + "\n", encoding="utf-8")
        wal.create_empty(tmp / "wal-000000.log")
        current = {
            "uid": meta.uid,
            "generation": 0,
            "snapshot": None,
            "seq": 0,
            "wal": "wal-000000.log",
        }
        durable_json(tmp / CURRENT, current)
        (tmp / LOCK).touch()
        fsync_dir(tmp)
    fsync_dir(root)
    return target
