"""Write an imported probe: build it in a temp folder, seal it, load it, then rename it in place.

Every source (class folders, clip-benchmark builders, tables, `datasets` on disk) ends here, so a
failure half-way (an unreadable image, an empty class) leaves nothing at the target, and what is
published is exactly what `ccsclip probe seal` would write and `load_probe` accepts.
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from pydantic import TypeAdapter, ValidationError

from ccsclip.errors import ConflictError, InvalidInputError
from ccsclip.fileio import atomic_directory
from ccsclip.probe_import.payload import ImageSource, image_bytes
from ccsclip.probeset import (
    PROBE_SCHEMA,
    AccuracyProbeSpec,
    BiasProbeSpec,
    RelPath,
    load_probe,
    parse_probe_spec,
    write_probe_yaml,
)

DEFAULT_K = (10, 100, 1000)
"""MaxSkew@K of an imported bias probe when --k is not given: those the pool can fill (the
paper reports K = 1000 on FairFace's 10,954 validation faces)."""


@dataclass(frozen=True)
class ProbeClassDraft:
    """One class of an accuracy probe: its folder inside the probe and its prompt name."""

    folder: str
    name: str


@dataclass
class AccuracyDraft:
    """An accuracy probe before it is written: classes, templates, and (class, image) items.

    `items` yields (class index, image, file stem or None, label for errors); a stem keeps the
    source's file name, None numbers the files.
    """

    name: str
    classes: list[ProbeClassDraft]
    templates: list[str]
    items: Iterable[tuple[int, ImageSource, str | None, str]]


@dataclass
class BiasDraft:
    """A bias probe before it is written: (name, text) queries, and rows of (image, relative
    path, attribute values, label for errors)."""

    name: str
    attributes: list[str]
    queries: list[tuple[str, str]]
    templates: list[str]
    rows: Iterable[tuple[ImageSource, str, dict[str, str], str]]
    k: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class Imported:
    """What an import published: where, its validated spec, and how many images it holds."""

    path: Path
    spec: AccuracyProbeSpec | BiasProbeSpec
    images: int


def class_folder(index: int, name: str) -> str:
    """A safe, unique, ordered folder for a class known only by name (builders, `datasets`)."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._-")[:60]
    return f"{index:04d}_{slug}" if slug else f"{index:04d}"


def _prepare(out: Path, overwrite: bool) -> None:
    if out.exists() and not overwrite:
        raise ConflictError(
            f"{out} already exists; pass --overwrite to replace it or choose another --out"
        )


def _check_spec(spec: dict[str, object]) -> None:
    """Validate the probe.yaml before any image is written: a bad template fails at once."""
    parse_probe_spec({**spec, "content_sha256": "0" * 64}, "the imported probe")


def write_accuracy(draft: AccuracyDraft, out: Path, *, overwrite: bool = False) -> Imported:
    """Write, seal and check an accuracy probe at `out` (ImageFolder layout, images: .)."""
    _prepare(out, overwrite)
    spec = {
        "schema": PROBE_SCHEMA,
        "name": draft.name,
        "kind": "accuracy",
        "images": ".",
        "classes": [{"folder": c.folder, "name": c.name} for c in draft.classes],
        "templates": list(draft.templates),
    }
    _check_spec(spec)
    counts = [0] * len(draft.classes)
    with atomic_directory(out) as tmp:
        for cls in draft.classes:
            (tmp / cls.folder).mkdir(parents=True)
        for index, source, stem, label in draft.items:
            if not 0 <= index < len(draft.classes):
                raise InvalidInputError(
                    f"{label}: label {index} is outside the class list (0..{len(draft.classes) - 1}"
                    "); give a class names file that lists every class"
                )
            payload = image_bytes(source, label)
            counts[index] += 1
            base = stem if stem is not None else f"{counts[index]:06d}"
            target = tmp / draft.classes[index].folder / f"{base}{payload.suffix}"
            if target.exists():
                raise InvalidInputError(
                    f"{label}: two images would both be written as {target.name}"
                )
            target.write_bytes(payload.data)
        empty = [c.name for c, n in zip(draft.classes, counts, strict=True) if n == 0]
        if empty:
            raise InvalidInputError(
                f"classes without images: {empty[:10]}; add images for them or leave them out of "
                "the class names file"
            )
        write_probe_yaml(tmp, spec)
        probe = load_probe(tmp)  # publish only what the loader accepts
    return Imported(out, probe.spec, len(probe.samples))


_REL_PATH: TypeAdapter[str] = TypeAdapter(RelPath)  # the probe schema's own path rule


def _relative(value: str, label: str) -> PurePosixPath:
    try:
        return PurePosixPath(_REL_PATH.validate_python(value))
    except ValidationError as exc:
        raise InvalidInputError(f"{label}: {exc.errors()[0]['msg']}") from exc


def _with_suffix(path: PurePosixPath, suffix: str) -> PurePosixPath:
    """Keep the source's name when its suffix fits the bytes (.jpeg is a .jpg)."""
    same = {".jpg": {".jpg", ".jpeg"}}.get(suffix, {suffix})
    return path if path.suffix.lower() in same else path.with_suffix(suffix)


def write_bias(draft: BiasDraft, out: Path, *, overwrite: bool = False) -> Imported:
    """Write, seal and check a bias probe: images/, metadata.csv (file + attributes), probe.yaml."""
    _prepare(out, overwrite)
    base_spec = {
        "schema": PROBE_SCHEMA,
        "name": draft.name,
        "kind": "bias",
        "images": "images",
        "metadata": "metadata.csv",
        "attributes": list(draft.attributes),
        "queries": [{"name": n, "text": t} for n, t in draft.queries],
        "templates": list(draft.templates),
    }
    _check_spec({**base_spec, "k": draft.k or [1]})
    with atomic_directory(out) as tmp:
        images = tmp / "images"
        images.mkdir()
        table: list[list[str]] = []
        for source, rel, values, label in draft.rows:
            payload = image_bytes(source, label)
            path = _with_suffix(_relative(rel, label), payload.suffix)
            target = images / path
            if target.exists():
                raise InvalidInputError(f"{label}: file {path} is listed twice")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(payload.data)
            empty = [a for a in draft.attributes if not values.get(a, "").strip()]
            if empty:
                raise InvalidInputError(
                    f"{label}: no value in attribute column(s) {empty}; fill them or drop the row"
                )
            table.append([path.as_posix(), *(values[a] for a in draft.attributes)])
        if not table:
            raise InvalidInputError("no images to import (an empty table, or --where kept none)")
        k = draft.k or [k for k in DEFAULT_K if k <= len(table)] or [len(table)]
        too_big = [v for v in k if v > len(table)]
        if too_big:
            raise InvalidInputError(f"--k {too_big} exceed the pool size {len(table)}")
        with open(tmp / "metadata.csv", "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(["file", *draft.attributes])
            writer.writerows(table)
        write_probe_yaml(tmp, {**base_spec, "k": sorted(set(k))})
        probe = load_probe(tmp)
    return Imported(out, probe.spec, len(probe.rows))


def probe_name(out: Path, name: str | None) -> str:
    return name or Path(os.path.abspath(out)).name
