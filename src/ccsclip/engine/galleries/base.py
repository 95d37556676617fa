"""The gallery interfaces (docs/design.md §12) and what every backend shares.

`Gallery` is what a served gallery offers (the folder one, `local.LocalGallery`, and the Milvus
one, `milvus.MilvusGallery`); `GalleryBackend` is the in-memory index under a folder gallery.
Ids, metadata and filters are defined here once.

A backend holds (id, unit vector, flat metadata) items of one embedding space and answers cosine
top-k. `exact` is the reference (numpy, every other backend is tested against it); `hnsw` is an
approximate index (usearch) for one machine; `milvus` talks to a Milvus server or cluster.
Durability and multi-process consistency of the embedded backends live in `store.py` (a
write-ahead log), not here: an embedded backend is a plain in-memory structure plus a snapshot.

Metadata is flat: a key (identifier, at most 64 characters) maps to a string, integer, float or
bool. A filter is flat too: `{key: value}` (equal) or `{key: [v1, v2]}` (any of), all keys ANDed.
"""

from __future__ import annotations

import abc
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ccsclip.errors import InvalidInputError

Scalar = str | int | float | bool
Metadata = dict[str, Scalar]
Filter = dict[str, list[Scalar]]  # normalised: key -> accepted values

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"  # no dots or slashes: never a path
KEY_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"
MAX_ID_CHARS = 256
MAX_METADATA_KEYS = 32
MAX_STRING_CHARS = 1024
MAX_FILTER_VALUES = 256
_NAME = re.compile(NAME_PATTERN)
_KEY = re.compile(KEY_PATTERN)


@dataclass(frozen=True)
class Hit:
    id: str
    score: float  # cosine similarity
    metadata: Metadata


@dataclass(frozen=True)
class SearchParams:
    """Per-request search effort: `ef` (HNSW candidate list; Milvus `ef`). None: the gallery's."""

    ef: int | None = None


@dataclass(frozen=True)
class GalleryFacts:
    """What a gallery reports about itself now (the gallery info beside its metadata)."""

    count: int
    last_write_at: float | None  # unix time of the last write; None: never written
    seq: int | None = None  # folder galleries: the log position and snapshot generation
    generation: int | None = None
    backend: dict[str, Any] = field(default_factory=dict)  # index parameters, memory, uri

    def details(self) -> dict[str, Any]:
        """The flat `details` of the served gallery info: log position, then backend facts."""
        position = {"seq": self.seq, "generation": self.generation}
        return {**{k: v for k, v in position.items() if v is not None}, **self.backend}


def check_name(name: Any, field: str = "gallery") -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidInputError(
            f"{field}: {name!r} is not a valid gallery name: 1-64 characters, letters, digits, "
            "'_' and '-', starting with a letter or digit (no '/', '.', or spaces)"
        )
    return name


def check_id(item_id: Any, field: str = "id") -> str:
    if not isinstance(item_id, str) or not item_id:
        raise InvalidInputError(f"{field}: an item id must be a non-empty string")
    if len(item_id) > MAX_ID_CHARS:
        raise InvalidInputError(
            f"{field}: an item id has at most {MAX_ID_CHARS} characters, got {len(item_id)}"
        )
    if any(ord(c) < 32 or ord(c) == 127 for c in item_id):
        raise InvalidInputError(f"{field}: an item id must not contain control characters")
    return item_id


def _scalar(value: Any, field: str) -> Scalar:
    if isinstance(value, bool | int):
        if not isinstance(value, bool) and abs(value) >= 2**63:
            raise InvalidInputError(f"{field}: integer {value} does not fit in 64 bits")
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidInputError(f"{field}: numbers must be finite")
        return value
    if isinstance(value, str):
        if len(value) > MAX_STRING_CHARS:
            raise InvalidInputError(f"{field}: at most {MAX_STRING_CHARS} characters")
        return value
    raise InvalidInputError(
        f"{field}: metadata values are strings, numbers or booleans (flat), got "
        f"{type(value).__name__}"
    )


def check_metadata(metadata: Any, field: str = "metadata") -> Metadata:
    """A flat {identifier: scalar} mapping (None: empty)."""
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise InvalidInputError(f"{field}: must be an object of key: value pairs")
    if len(metadata) > MAX_METADATA_KEYS:
        raise InvalidInputError(f"{field}: at most {MAX_METADATA_KEYS} keys, got {len(metadata)}")
    out: Metadata = {}
    for key, value in metadata.items():
        if not isinstance(key, str) or not _KEY.match(key):
            raise InvalidInputError(
                f"{field}: key {key!r} must be an identifier (letters, digits, '_'; at most 64)"
            )
        out[key] = _scalar(value, f"{field}.{key}")
    return out


def check_filter(spec: Any, field: str = "filter") -> Filter:
    """`{key: value}` or `{key: [values]}` -> {key: [values]}; InvalidInputError naming the key."""
    if spec is None:
        return {}
    if not isinstance(spec, Mapping):
        raise InvalidInputError(
            f'{field}: a filter is an object such as {{"colour": "red"}} or '
            f'{{"colour": ["red", "blue"]}}, got {type(spec).__name__}'
        )
    out: Filter = {}
    for key, value in spec.items():
        if not isinstance(key, str) or not _KEY.match(key):
            raise InvalidInputError(f"{field}: key {key!r} must be an identifier")
        values = list(value) if isinstance(value, list | tuple) else [value]
        if not values or len(values) > MAX_FILTER_VALUES:
            raise InvalidInputError(
                f"{field}.{key}: give one value or a list of 1 to {MAX_FILTER_VALUES} values"
            )
        out[key] = [_scalar(v, f"{field}.{key}") for v in values]
    return out


def _same(a: Scalar, b: Scalar) -> bool:
    """Equality that keeps bools and numbers apart (True is not 1 in a filter)."""
    return (
        isinstance(a, bool) == isinstance(b, bool)
        and isinstance(a, str) == isinstance(b, str)
        and a == b
    )


def matches(metadata: Mapping[str, Scalar], spec: Filter) -> bool:
    return all(
        key in metadata and any(_same(metadata[key], v) for v in values)
        for key, values in spec.items()
    )


def unit_rows(vectors: np.ndarray, dim: int, field: str = "vectors") -> np.ndarray:
    """float32 [N, dim] with unit rows (cosine = dot product)."""
    array = np.asarray(vectors, dtype=np.float32)
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2 or array.shape[1] != dim:
        raise InvalidInputError(f"{field}: expected [N, {dim}] vectors, got {list(array.shape)}")
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    if not np.all(np.isfinite(norms)) or np.any(norms == 0):
        raise InvalidInputError(f"{field}: vectors must be finite and non-zero")
    return np.ascontiguousarray(array / norms, dtype=np.float32)


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest scores, best first; ties in index order (deterministic)."""
    k = min(k, scores.shape[0])
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    top = np.argpartition(-scores, k - 1)[:k] if k < scores.shape[0] else np.arange(k)
    return top[np.lexsort((top, -scores[top]))]


class GalleryBackend(abc.ABC):
    """Items of one embedding space; search is cosine top-k with an optional metadata filter.

    Backends are not thread-safe on their own: the store (or the Milvus server) serialises.
    """

    kind: str

    @abc.abstractmethod
    def upsert(self, ids: Sequence[str], vectors: np.ndarray, metadata: Sequence[Metadata]) -> None:
        """Insert or replace items (unit vectors)."""

    @abc.abstractmethod
    def delete(self, ids: Sequence[str]) -> int:
        """Remove items; unknown ids are ignored. Returns how many were removed."""

    @abc.abstractmethod
    def count(self) -> int: ...

    @abc.abstractmethod
    def contains(self, ids: Sequence[str]) -> set[str]:
        """Which of `ids` are in the gallery (a resumed bulk load skips them)."""

    @abc.abstractmethod
    def search(
        self,
        query: np.ndarray,
        k: int,
        spec: Filter | None = None,
        params: SearchParams | None = None,
    ) -> list[Hit]:
        """The k items nearest to a unit query, best first."""

    @abc.abstractmethod
    def ids(self) -> list[str]:
        """Every item id (a copy)."""

    @abc.abstractmethod
    def get(self, ids: Sequence[str]) -> tuple[np.ndarray, list[Metadata]]:
        """Unit vectors [len(ids), E] and metadata of present ids, in order (a copy)."""

    def info(self) -> dict[str, Any]:
        """Backend-specific facts for the gallery info (index parameters, memory)."""
        return {}

    def metadata(self) -> list[Metadata]:
        """Every item's metadata (live bias counts declared attributes over the gallery)."""
        raise NotImplementedError(f"the {self.kind} backend does not list its metadata")

    def save(self, directory: Path) -> None:
        """Write a snapshot into an (empty, temporary) directory. Embedded backends only."""
        raise NotImplementedError

    def close(self) -> None:  # noqa: B027 (optional hook)
        """Release resources (files, connections)."""
