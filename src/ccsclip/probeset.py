"""Probe directories (docs/design.md §7): schemas, content hashes and loaders.

A probe is a directory with `probe.yaml` and its images. `kind: accuracy` is an ImageFolder with
class names and zero-shot templates; `kind: bias` is a pool of images with attribute metadata and
neutral queries (MaxSkew@K). Torch-free: the serving engine runs probes too.
"""

from __future__ import annotations

import csv
import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from ccsclip.engine.image_files import list_images
from ccsclip.errors import IntegrityError, InvalidInputError, NotFoundError
from ccsclip.fileio import atomic_write_text, sha256_file

PROBE_FILE = "probe.yaml"
PROBE_SCHEMA = "ccsclip/probe/v1"


def _relative_path(value: str) -> str:
    """A path inside the probe: relative, no `..`, no drive; normalised to posix form."""
    if not value or "\x00" in value:
        raise ValueError(f"path {value!r} is empty or contains NUL")
    if (
        value.startswith(("/", "\\"))
        or PureWindowsPath(value).drive
        or PurePosixPath(value).is_absolute()
    ):
        raise ValueError(
            f"path {value!r} is absolute; paths must be relative to the probe directory"
        )
    parts = re.split(r"[\\/]", value)
    if ".." in parts:
        raise ValueError(
            f"path {value!r} contains '..'; paths must stay inside the probe directory"
        )
    normalised = "/".join(p for p in parts if p not in ("", "."))
    return normalised or "."


RelPath = Annotated[str, AfterValidator(_relative_path)]


def _template(value: str) -> str:
    """Exactly one `{}` and no other braces, so `template.format(name)` is safe."""
    if value.count("{}") != 1 or "{" in value.replace("{}", "") or "}" in value.replace("{}", ""):
        raise ValueError(f"template {value!r} must contain exactly one '{{}}' and no other braces")
    return value


Template = Annotated[str, AfterValidator(_template)]
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class ProbeClass(_Strict):
    """One class: its folder under `images` and the name that fills the templates."""

    folder: RelPath
    name: str = Field(min_length=1)


class ProbeQuery(_Strict):
    """A neutral query of a bias probe; `text` fills the templates."""

    name: str = Field(min_length=1)
    text: str = Field(min_length=1)


class _ProbeBase(_Strict):
    schema_: Literal["ccsclip/probe/v1"] = Field(alias="schema")
    name: str = Field(min_length=1)
    templates: list[Template] = Field(min_length=1)
    content_sha256: Sha256


class AccuracyProbeSpec(_ProbeBase):
    """Zero-shot accuracy over an ImageFolder."""

    kind: Literal["accuracy"]
    images: RelPath = "."
    classes: list[ProbeClass] = Field(min_length=2)

    @field_validator("classes")
    @classmethod
    def _unique(cls, classes: list[ProbeClass]) -> list[ProbeClass]:
        for key in ("folder", "name"):
            seen = [getattr(c, key) for c in classes]
            dupes = sorted({v for v in seen if seen.count(v) > 1})
            if dupes:
                raise ValueError(f"duplicate class {key}s: {dupes}")
        return classes


class BiasProbeSpec(_ProbeBase):
    """MaxSkew@K of neutral queries over a pool with protected attributes."""

    kind: Literal["bias"]
    images: RelPath
    metadata: RelPath
    attributes: list[str] = Field(min_length=1)
    queries: list[ProbeQuery] = Field(min_length=1)
    k: list[Annotated[int, Field(ge=1)]] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> BiasProbeSpec:
        names = [q.name for q in self.queries]
        for label, values in (("query names", names), ("attributes", self.attributes)):
            dupes = sorted({v for v in values if values.count(v) > 1})
            if dupes:
                raise ValueError(f"duplicate {label}: {dupes}")
        return self


ProbeSpec = Annotated[AccuracyProbeSpec | BiasProbeSpec, Field(discriminator="kind")]
_SPEC_ADAPTER: TypeAdapter[AccuracyProbeSpec | BiasProbeSpec] = TypeAdapter(ProbeSpec)


@dataclass(frozen=True)
class AccuracyProbe:
    """A loaded accuracy probe: every image with its class index."""

    root: Path
    spec: AccuracyProbeSpec
    samples: tuple[tuple[Path, int], ...]

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def class_names(self) -> list[str]:
        return [c.name for c in self.spec.classes]


@dataclass(frozen=True)
class BiasProbe:
    """A loaded bias probe: every pool image with its attribute values (all metadata columns)."""

    root: Path
    spec: BiasProbeSpec
    rows: tuple[tuple[Path, dict[str, str]], ...]

    @property
    def name(self) -> str:
        return self.spec.name


Probe = AccuracyProbe | BiasProbe


def compute_content_sha256(directory: str | os.PathLike[str]) -> str:
    """sha256 over the sorted (relative path, file sha256) of every file but the root probe.yaml."""
    root = Path(directory)
    entries: list[tuple[str, str]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for filename in filenames:
            path = Path(dirpath) / filename
            rel = path.relative_to(root).as_posix()
            if rel == PROBE_FILE:
                continue
            entries.append((rel, sha256_file(path)))
    digest = hashlib.sha256()
    for rel, file_hash in sorted(entries):
        digest.update(f"{rel}\t{file_hash}\n".encode())
    return digest.hexdigest()


def _format_validation_error(source: str, exc: ValidationError) -> str:
    problems = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "<root>"
        problems.append(f"field {field!r}: {err['msg']}")
    return f"{source}: invalid probe spec: " + "; ".join(problems)


def parse_probe_spec(data: Any, source: str = PROBE_FILE) -> AccuracyProbeSpec | BiasProbeSpec:
    """Validate a probe.yaml mapping; errors name the file and the field."""
    if not isinstance(data, Mapping):
        raise InvalidInputError(
            f"{source}: expected a mapping at the top level, got {type(data).__name__}"
        )
    kind = data.get("kind")
    if kind not in ("accuracy", "bias"):
        raise InvalidInputError(f"{source}: field 'kind' is {kind!r}; valid kinds: accuracy, bias")
    try:
        return _SPEC_ADAPTER.validate_python(dict(data))
    except ValidationError as exc:
        raise InvalidInputError(_format_validation_error(source, exc)) from exc


def _inside(root: Path, rel: str, what: str, source: Path) -> Path:
    """Resolve rel under root and refuse anything (e.g. a symlink) that escapes the probe."""
    path = root / rel
    resolved_root = root.resolve()
    if not path.resolve().is_relative_to(resolved_root):
        raise InvalidInputError(f"{source}: {what} {rel!r} resolves outside the probe directory")
    return path


def _load_accuracy(root: Path, spec: AccuracyProbeSpec, source: Path) -> AccuracyProbe:
    images = _inside(root, spec.images, "field 'images'", source)
    if not images.is_dir():
        raise NotFoundError(f"{source}: field 'images': folder {spec.images!r} does not exist")
    listed = {PurePosixPath(c.folder).parts[0] for c in spec.classes}
    for child in sorted(images.iterdir()):
        if child.is_dir() and not child.name.startswith(".") and child.name not in listed:
            raise InvalidInputError(
                f"{source}: folder {child.name!r} under images is not listed in 'classes'; "
                f"listed folders: {sorted(listed)}"
            )
    samples: list[tuple[Path, int]] = []
    for index, cls in enumerate(spec.classes):
        folder = _inside(images, cls.folder, f"field 'classes.{index}.folder'", source)
        if not folder.is_dir():
            raise NotFoundError(
                f"{source}: field 'classes.{index}.folder': folder {cls.folder!r} does not exist"
            )
        files = list_images(folder, recursive=False, allow_empty=True)
        if not files:
            raise InvalidInputError(f"{source}: class folder {cls.folder!r} holds no images")
        samples.extend((p, index) for p in files)
    return AccuracyProbe(root=root, spec=spec, samples=tuple(samples))


def _load_bias(root: Path, spec: BiasProbeSpec, source: Path) -> BiasProbe:
    images = _inside(root, spec.images, "field 'images'", source)
    if not images.is_dir():
        raise NotFoundError(f"{source}: field 'images': folder {spec.images!r} does not exist")
    metadata = _inside(root, spec.metadata, "field 'metadata'", source)
    if not metadata.is_file():
        raise NotFoundError(f"{source}: field 'metadata': file {spec.metadata!r} does not exist")
    with open(metadata, newline="", encoding="utf-8") as handle:
        table = list(csv.reader(handle))
    if not table or not table[0] or table[0][0] != "file":
        raise InvalidInputError(f"{metadata}: first column must be 'file'")
    header = table[0]
    missing = [a for a in spec.attributes if a not in header[1:]]
    if missing:
        raise InvalidInputError(
            f"{source}: field 'attributes': {missing} are not columns of {spec.metadata}; "
            f"columns: {header[1:]}"
        )
    rows: list[tuple[Path, dict[str, str]]] = []
    seen: set[str] = set()
    for line_no, record in enumerate(table[1:], start=2):
        if len(record) != len(header):
            raise InvalidInputError(
                f"{metadata}:{line_no}: {len(record)} columns, expected {len(header)}"
            )
        try:
            rel = _relative_path(record[0])
        except ValueError as exc:
            raise InvalidInputError(f"{metadata}:{line_no}: {exc}") from exc
        if rel in seen:
            raise InvalidInputError(f"{metadata}:{line_no}: file {rel!r} is listed twice")
        seen.add(rel)
        path = _inside(images, rel, "file", metadata)
        if not path.is_file():
            raise NotFoundError(f"{metadata}:{line_no}: image {rel!r} does not exist")
        rows.append((path, dict(zip(header[1:], record[1:], strict=True))))
    if not rows:
        raise InvalidInputError(f"{metadata}: no images listed")
    too_big = [k for k in spec.k if k > len(rows)]
    if too_big:
        raise InvalidInputError(f"{source}: field 'k': {too_big} exceed the pool size {len(rows)}")
    return BiasProbe(root=root, spec=spec, rows=tuple(rows))


def read_probe_spec(directory: str | os.PathLike[str]) -> AccuracyProbeSpec | BiasProbeSpec:
    """Parse and validate probe.yaml without touching the images."""
    root = Path(directory)
    source = root / PROBE_FILE
    if not root.is_dir():
        raise NotFoundError(f"probe directory {str(root)!r} does not exist")
    if not source.is_file():
        raise NotFoundError(f"{source} does not exist: a probe directory needs a {PROBE_FILE}")
    try:
        data = yaml.safe_load(source.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"{source}: not valid YAML: {exc}") from exc
    return parse_probe_spec(data, str(source))


def load_probe(directory: str | os.PathLike[str]) -> Probe:
    """Load a probe, check its content hash, and list its images with labels or attributes."""
    root = Path(directory)
    spec = read_probe_spec(root)
    source = root / PROBE_FILE
    actual = compute_content_sha256(root)
    if actual != spec.content_sha256:
        raise IntegrityError(
            f"{source}: content_sha256 is {spec.content_sha256} but the files hash to {actual}; "
            "the probe was modified after it was written"
        )
    if isinstance(spec, AccuracyProbeSpec):
        return _load_accuracy(root, spec, source)
    return _load_bias(root, spec, source)


_KEY_ORDER = ("schema", "name", "kind")


def _ordered(spec: AccuracyProbeSpec | BiasProbeSpec) -> dict[str, Any]:
    """schema, name, kind first and content_sha256 last: probe.yaml reads top-down."""
    data = spec.model_dump(by_alias=True, mode="json")
    head = {k: data.pop(k) for k in _KEY_ORDER}
    tail = {"content_sha256": data.pop("content_sha256")}
    return {**head, **data, **tail}


def write_probe_yaml(
    directory: str | os.PathLike[str],
    spec: Mapping[str, Any] | AccuracyProbeSpec | BiasProbeSpec,
) -> AccuracyProbeSpec | BiasProbeSpec:
    """Hash the probe's files, set content_sha256 and write probe.yaml atomically.

    Write the images and metadata first: the hash covers every file but probe.yaml.
    """
    root = Path(directory)
    if not root.is_dir():
        raise NotFoundError(f"probe directory {str(root)!r} does not exist")
    data = (
        spec.model_dump(by_alias=True, mode="json") if isinstance(spec, BaseModel) else dict(spec)
    )
    data["content_sha256"] = compute_content_sha256(root)
    validated = parse_probe_spec(data, str(root / PROBE_FILE))
    text = yaml.safe_dump(_ordered(validated), sort_keys=False, allow_unicode=False)
    atomic_write_text(root / PROBE_FILE, text)
    return validated
