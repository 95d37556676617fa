"""Folders written by the old `ccsclip index` (`ccsclip/gallery/v1`: embeddings.npy, ids.json),
converted into the one gallery format in place.

The conversion keeps the ids, vectors and binding (model, profile, ONNX sha256) and makes an
`exact` gallery whose first snapshot holds them, so its answers are the old ones. It is built
beside the folder and swapped in with two renames under the lock of the folder's parent, after
checking the old files' hashes; a reader sees the old folder or the new one, never half of
either. A folder the process cannot write (a bundle on a read-only file system) is refused with
the one command that converts it where it can be written: `ccsclip gallery migrate FOLDER`.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import numpy as np

from ccsclip.engine.galleries import local, wal
from ccsclip.engine.galleries.exact import ExactBackend
from ccsclip.engine.galleries.meta import GalleryModel, GalleryProfile, LiveGalleryMeta
from ccsclip.errors import IntegrityError, InvalidInputError
from ccsclip.fileio import atomic_directory, sha256_file

OLD_SCHEMA = "ccsclip/gallery/v1"
MIGRATE = "ccsclip gallery migrate"


def is_legacy(folder: Path) -> bool:
    try:
        data = json.loads((folder / local.META).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("schema") == OLD_SCHEMA


def _read(folder: Path) -> tuple[dict, list[str], np.ndarray]:
    data = json.loads((folder / local.META).read_text(encoding="utf-8"))
    for key in ("embeddings", "ids"):
        ref = data[key]
        path = folder / ref["file"]
        if ref["file"] != Path(ref["file"]).name or sha256_file(path) != ref["sha256"]:
            raise IntegrityError(f"{path}: missing or changed since it was indexed; index again")
    vectors = np.load(folder / data["embeddings"]["file"], allow_pickle=False)
    ids = json.loads((folder / data["ids"]["file"]).read_text(encoding="utf-8"))
    if vectors.shape != (len(ids), data["embed_dim"]) or len(set(ids)) != len(ids):
        raise IntegrityError(f"{folder}: {list(vectors.shape)} vectors for {len(ids)} ids")
    return data, ids, np.ascontiguousarray(vectors, dtype=np.float32)


def migrate(folder: Path) -> LiveGalleryMeta:
    """Convert an old folder in place (idempotent: a folder already converted is left as is)."""
    folder = Path(folder)
    if not os.access(folder.parent, os.W_OK) or not os.access(folder, os.W_OK):
        raise InvalidInputError(
            f"gallery folder {str(folder)!r} was written by an older `ccsclip index` and cannot "
            f"be converted here (not writable); convert it once with `{MIGRATE} {folder}`"
        )
    with local.file_lock(folder.parent / local.ROOT_LOCK):
        if not is_legacy(folder):  # another process converted it while we waited
            return LiveGalleryMeta.model_validate_json((folder / local.META).read_text("utf-8"))
        data, ids, vectors = _read(folder)
        meta = LiveGalleryMeta(
            name=folder.name,
            uid=uuid.uuid4().hex,
            created_at=os.stat(folder / local.META).st_mtime,
            backend="exact",
            model=GalleryModel(**data["model"]),
            profile=GalleryProfile(**data["profile"]),
            embed_dim=int(data["embed_dim"]),
            bundle_manifest_sha256=data["bundle_manifest_sha256"],
        )
        backend = ExactBackend(meta.embed_dim)
        backend.upsert(ids, vectors, [{} for _ in ids])
        with atomic_directory(folder) as tmp:
            (tmp / local.META).write_text(json.dumps(meta.dump(), indent=2) + "\n", "utf-8")
            local.write_snapshot(tmp / "snap-000000", backend, 0)
            wal.create_empty(tmp / "wal-000000.log")
            current = {
                "uid": meta.uid,
                "generation": 0,
                "snapshot": "snap-000000",
                "seq": 0,
                "wal": "wal-000000.log",
            }
            local.durable_json(tmp / local.CURRENT, current)
            (tmp / local.LOCK).touch()
        local.fsync_dir(folder.parent)
        return meta
