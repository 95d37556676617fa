"""Retrieval galleries: a folder of images embedded once with one profile, searched exactly.

A gallery directory holds `embeddings.npy` (float32 [N, E], unit rows), `ids.json` (the images'
paths relative to the indexed folder, in row order) and `gallery.json` (which bundle, model
weights and profile file made it, and the sha256 of the two data files). It is written into a
temporary directory and renamed into place, so a reader never sees half a gallery.

Embeddings of different image towers (profiles) live in different spaces: a gallery records its
profile and the sha256 of that profile's ONNX file, and image queries must use the same one.
Text queries can search any gallery of the same model, because the text tower is never pruned.
The model's weights must match; the bundle manifest hash is recorded for provenance only, since a
bundle re-exported with more profiles still serves the same galleries.

Search is exact: one matrix-vector product and `np.argpartition`, O(N E) per query (about 67 ms
at 200,000 x 512 on one core). Galleries that grow online, or need an approximate index or Milvus,
are `ccsclip.engine.galleries` (design §12); this read-only format stays what `ccsclip index`
writes by default and what `/v1/retrieve` serves.

The engine is typed as `EmbeddingModel` (a Protocol): this module never imports the engine, which
imports it.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ccsclip.engine.identity import EmbeddingModel
from ccsclip.errors import IntegrityError, InvalidInputError, NotFoundError
from ccsclip.fileio import atomic_directory, sha256_file

GALLERY_SCHEMA = "ccsclip/gallery/v1"
GALLERY_FILE = "gallery.json"
EMBEDDINGS_FILE = "embeddings.npy"
IDS_FILE = "ids.json"
# Same suffixes as the offline image reader (ccsclip.images), which imports torch.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
_NORM_TOLERANCE = 1e-3
log = logging.getLogger(__name__)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class GalleryFile(_Strict):
    file: str
    sha256: str = Field(min_length=64, max_length=64)


class GalleryModel(_Strict):
    name: str
    weights_sha256: str


class GalleryProfile(_Strict):
    name: str
    sha256: str  # of the profile's image-<profile>.onnx


class GalleryMeta(_Strict):
    """gallery.json: provenance of a gallery and hashes of its data files."""

    schema_: Literal["ccsclip/gallery/v1"] = Field(GALLERY_SCHEMA, alias="schema")
    created_by: str
    bundle_manifest_sha256: str
    model: GalleryModel
    profile: GalleryProfile
    metric: Literal["cosine"] = "cosine"
    embed_dim: int = Field(ge=1)
    count: int = Field(ge=1)
    embeddings: GalleryFile
    ids: GalleryFile
    source: str  # the folder that was indexed (informational)
    skipped: list[str] = Field(default_factory=list)  # unreadable images, relative paths


@dataclass
class Gallery:
    """A loaded gallery: ids in row order and unit-norm embeddings (read-only)."""

    path: Path
    meta: GalleryMeta
    ids: list[str]
    embeddings: np.ndarray
    _index: dict[str, int] = field(default_factory=dict, repr=False)

    @property
    def profile(self) -> str:
        return self.meta.profile.name

    @property
    def count(self) -> int:
        return len(self.ids)

    def __len__(self) -> int:
        return len(self.ids)

    def vector(self, item_id: str) -> np.ndarray:
        """The stored embedding of one item."""
        if not self._index:
            self._index = {item: row for row, item in enumerate(self.ids)}
        if item_id not in self._index:
            raise NotFoundError(f"gallery {str(self.path)!r} has no item {item_id!r}")
        return self.embeddings[self._index[item_id]]

    def search(self, query_embedding: np.ndarray, k: int = 10) -> list[tuple[str, float]]:
        """Exact cosine top-k, best first; equal scores in row order."""
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise InvalidInputError(f"k must be a positive integer, got {k!r}")
        query = np.asarray(query_embedding, dtype=np.float32)
        if query.ndim == 2 and query.shape[0] == 1:
            query = query[0]
        dim = self.embeddings.shape[1]
        if query.shape != (dim,):
            raise InvalidInputError(
                f"query embedding has shape {list(np.shape(query_embedding))}; this gallery "
                f"holds {dim}-dim embeddings"
            )
        norm = float(np.linalg.norm(query))
        if not np.isfinite(norm) or norm == 0.0:
            raise InvalidInputError("query embedding must be finite and non-zero")
        scores = self.embeddings @ (query / norm)
        k = min(int(k), scores.shape[0])
        top = np.argpartition(-scores, k - 1)[:k] if k < scores.shape[0] else np.arange(k)
        top = top[np.lexsort((top, -scores[top]))]  # by score, then row: deterministic ties
        return [(self.ids[i], float(scores[i])) for i in top]


def list_gallery_images(root: str | Path) -> list[Path]:
    """Image files below `root` (flat or nested), sorted by relative path."""
    root = Path(root)
    if not root.is_dir():
        raise NotFoundError(f"image folder {str(root)!r} does not exist or is not a directory")
    files = sorted(
        (p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES),
        key=lambda p: p.relative_to(root).as_posix(),
    )
    if not files:
        raise InvalidInputError(
            f"no images in {str(root)!r}: expected files ending in {', '.join(IMAGE_SUFFIXES)}"
        )
    return files


def read_image(path: Path) -> Image.Image:
    """Decode fully (so errors surface here) and convert to RGB, as the offline reader does."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with Image.open(path) as image:
            return image.convert("RGB")


def _check_out(out: Path, images_dir: Path) -> None:
    """Refuse to replace a directory that is not a gallery: the write swaps the whole folder."""
    if out.exists() and not out.is_dir():
        raise InvalidInputError(f"output {str(out)!r} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not (out / GALLERY_FILE).is_file():
        raise InvalidInputError(
            f"output folder {str(out)!r} is not empty and holds no {GALLERY_FILE}; refusing to "
            "replace it. Choose a new or empty folder, or an existing gallery"
        )
    resolved_out, resolved_images = out.resolve(), images_dir.resolve()
    if resolved_images == resolved_out or resolved_images.is_relative_to(resolved_out):
        raise InvalidInputError(
            f"output folder {str(out)!r} contains the images being indexed; choose another folder"
        )


def build_gallery(
    engine: EmbeddingModel,
    profile: str | None,
    images_dir: str | Path,
    out: str | Path,
    batch_size: int = 64,
    progress: Callable[[int, int], None] | None = None,
) -> Gallery:
    """Embed every image below `images_dir` with `profile` and write a gallery at `out`.

    Unreadable images are skipped, logged and listed in gallery.json (`skipped`). `progress`
    is called with (images done, total) after each batch. Returns the loaded gallery.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidInputError(f"batch_size must be a positive integer, got {batch_size!r}")
    name = engine.resolve_profile(profile)
    entry = engine.profile_entry(name)
    root, out = Path(images_dir), Path(out)
    files = list_gallery_images(root)
    _check_out(out, root)
    ids: list[str] = []
    skipped: list[str] = []
    parts: list[np.ndarray] = []
    for start in range(0, len(files), batch_size):
        batch, batch_ids = [], []
        for path in files[start : start + batch_size]:
            rel = path.relative_to(root).as_posix()
            try:
                image = read_image(path)
                pixels = engine.preprocess([image])
            except Exception as exc:  # any decode or preprocess failure: skip and report
                log.warning("skipping unreadable image %s: %s", rel, exc)
                skipped.append(rel)
                continue
            batch.append(pixels)
            batch_ids.append(rel)
        if batch:
            parts.append(engine.embed_pixels(np.concatenate(batch), name))
            ids.extend(batch_ids)
        if progress is not None:
            progress(min(start + batch_size, len(files)), len(files))
    if not ids:
        raise InvalidInputError(
            f"none of the {len(files)} images in {str(root)!r} could be read: {skipped[:5]}"
        )
    embeddings = np.ascontiguousarray(np.concatenate(parts), dtype=np.float32)
    model = engine.manifest.model
    with atomic_directory(out) as tmp:
        np.save(tmp / EMBEDDINGS_FILE, embeddings, allow_pickle=False)
        (tmp / IDS_FILE).write_text(json.dumps(ids, ensure_ascii=False) + "\n", encoding="utf-8")
        meta = GalleryMeta(
            created_by="ccsclip.engine.gallery",
            bundle_manifest_sha256=engine.manifest_sha256,
            model=GalleryModel(name=model.name, weights_sha256=model.weights_sha256),
            profile=GalleryProfile(name=name, sha256=entry.sha256),
            embed_dim=int(embeddings.shape[1]),
            count=len(ids),
            embeddings=GalleryFile(file=EMBEDDINGS_FILE, sha256=sha256_file(tmp / EMBEDDINGS_FILE)),
            ids=GalleryFile(file=IDS_FILE, sha256=sha256_file(tmp / IDS_FILE)),
            source=str(root),
            skipped=skipped,
        )
        (tmp / GALLERY_FILE).write_text(
            json.dumps(meta.model_dump(by_alias=True, mode="json"), indent=2) + "\n",
            encoding="utf-8",
        )
    return load_gallery(out, engine)


def _checked(directory: Path, ref: GalleryFile) -> Path:
    path = directory / ref.file
    if ref.file != Path(ref.file).name or not path.is_file():
        raise NotFoundError(f"gallery file {ref.file!r} is missing from {str(directory)!r}")
    actual = sha256_file(path)
    if actual != ref.sha256:
        raise IntegrityError(
            f"gallery file {ref.file!r} in {str(directory)!r} has sha256 {actual[:12]}… but "
            f"{GALLERY_FILE} says {ref.sha256[:12]}…: it was changed; index the images again"
        )
    return path


def load_gallery(directory: str | Path, engine: EmbeddingModel | None = None) -> Gallery:
    """Read a gallery, verify its file hashes and shapes, and (with an engine) that it fits.

    With an engine: the model weights must be the engine's and the gallery's profile must be
    available with the same ONNX file (IntegrityError or NotFoundError otherwise).
    """
    root = Path(directory)
    meta_path = root / GALLERY_FILE
    if not meta_path.is_file():
        raise NotFoundError(f"{str(root)!r} is not a gallery: {GALLERY_FILE} is missing")
    try:
        meta = GalleryMeta.model_validate(json.loads(meta_path.read_text(encoding="utf-8")))
    except (json.JSONDecodeError, UnicodeDecodeError, ValidationError) as exc:
        raise InvalidInputError(f"{meta_path} is not a valid {GALLERY_SCHEMA} file: {exc}") from exc
    embeddings_path = _checked(root, meta.embeddings)
    ids_path = _checked(root, meta.ids)
    try:
        embeddings = np.load(embeddings_path, allow_pickle=False)
        ids = json.loads(ids_path.read_text(encoding="utf-8"))
    except (ValueError, OSError, json.JSONDecodeError) as exc:
        raise IntegrityError(f"gallery {str(root)!r} cannot be read: {exc}") from exc
    expected = (meta.count, meta.embed_dim)
    if embeddings.dtype != np.float32 or embeddings.shape != expected:
        raise IntegrityError(
            f"gallery {str(root)!r}: embeddings are {embeddings.dtype} {list(embeddings.shape)}, "
            f"{GALLERY_FILE} says float32 {list(expected)}"
        )
    if (
        not isinstance(ids, list)
        or len(ids) != meta.count
        or not all(isinstance(i, str) for i in ids)
        or len(set(ids)) != len(ids)
    ):
        raise IntegrityError(f"gallery {str(root)!r}: {IDS_FILE} is not {meta.count} unique ids")
    norms = np.linalg.norm(embeddings, axis=1)
    if not np.all(np.abs(norms - 1.0) <= _NORM_TOLERANCE):
        raise IntegrityError(f"gallery {str(root)!r}: embeddings are not unit-norm")
    embeddings.setflags(write=False)
    gallery = Gallery(path=root, meta=meta, ids=ids, embeddings=embeddings)
    if engine is not None:
        check_gallery(gallery, engine, require_profile=True)
    return gallery


def check_gallery(gallery: Gallery, engine: EmbeddingModel, require_profile: bool = False) -> None:
    """The gallery was built with this engine's model (and, if required, a profile it serves
    with the same ONNX file): otherwise its scores would be meaningless."""
    model = engine.manifest.model
    if gallery.meta.model.weights_sha256 != model.weights_sha256:
        raise IntegrityError(
            f"gallery {str(gallery.path)!r} was built with model {gallery.meta.model.name!r} "
            f"(weights {gallery.meta.model.weights_sha256[:12]}…), not the served "
            f"{model.name!r} (weights {model.weights_sha256[:12]}…); index it again"
        )
    if gallery.meta.embed_dim != engine.embed_dim:
        raise IntegrityError(
            f"gallery {str(gallery.path)!r} holds {gallery.meta.embed_dim}-dim embeddings; the "
            f"model's are {engine.embed_dim}-dim"
        )
    if not require_profile:
        return
    name = gallery.profile
    try:
        engine.resolve_profile(name)
    except NotFoundError as exc:
        raise NotFoundError(
            f"gallery {str(gallery.path)!r} was built with profile {name!r}, which this engine "
            f"cannot serve: {exc}"
        ) from exc
    if engine.profile_entry(name).sha256 != gallery.meta.profile.sha256:
        raise IntegrityError(
            f"gallery {str(gallery.path)!r} was built with another file for profile {name!r} "
            f"(onnx sha256 {gallery.meta.profile.sha256[:12]}…, served "
            f"{engine.profile_entry(name).sha256[:12]}…); index it again"
        )
