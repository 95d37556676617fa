"""The export bundle's manifest (docs/design.md §7): the contract between offline and online.

Torch-free. A bundle directory holds `manifest.json`, `text.onnx` (the text tower is never
pruned), one `image-<profile>.onnx` per profile and `tokenizer.json`. Every file is listed with its
sha256; the engine refuses files whose hash does not match.

A bundle may also carry baked probe results (`probe-results/`, written by `ccsclip export
--probe`): each profile's full result on each probe, in the probe cache's format, listed in
`probe_results` with their hashes. They are not needed to serve, so the engine does not check
them; the probe runner does, and recomputes a result whose files do not match.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from pydantic import Field, field_validator

from ccsclip.errors import IntegrityError, InvalidInputError, NotFoundError
from ccsclip.fileio import sha256_file
from ccsclip.strict import Strict, read_json_model

SCHEMA = "ccsclip/bundle/v1"
MANIFEST = "manifest.json"
PROFILE_NAME = r"^[a-z0-9][a-z0-9._-]{0,63}$"


class FileRef(Strict):
    file: str = Field(pattern=r"^[A-Za-z0-9._-]+$")  # a bare file name inside the bundle
    sha256: str = Field(min_length=64, max_length=64)


class BundleModel(Strict):
    name: str
    pretrained: str | None = None
    weights_sha256: str
    embed_dim: int
    image_size: int
    context_length: int
    layers: int
    heads: int
    logit_scale: float  # exp(logit_scale) of the CLIP, the zero-shot softmax temperature


class TokenizerRef(FileRef):
    kind: str = "open_clip-simple-bpe"
    context_length: int
    sot_id: int
    eot_id: int
    pad_id: int = 0
    config: dict[str, Any] = Field(default_factory=dict)


class TextRef(FileRef):
    opset: int
    input: str = "input_ids"
    output: str = "embeddings"
    # True: the sequence axis is dynamic, feed ids cut after the batch's last end-of-text token
    # (exact for causal towers pooled at EOT). False (older bundles): always the full context.
    dynamic_length: bool = False


class ProfileSource(Strict):
    """Where a profile came from, without machine paths (the manifest ships in Bentos and images).

    `path` is the profile file relative to the bundle folder ('/'-separated) when the file lies
    under the bundle folder's parent (as `make demo` lays them out), else None. Manifests written
    before this record the absolute path as a plain string instead; they still load.
    """

    name: str
    sha256: str = Field(min_length=64, max_length=64)  # of the profile (Profile.sha256)
    path: str | None = None

    @field_validator("path")
    @classmethod
    def _relative(cls, path: str | None) -> str | None:
        if path is not None and (PurePosixPath(path).is_absolute() or "\\" in path):
            raise ValueError(f"source path {path!r} must be relative to the bundle folder")
        return path


def profile_source(name: str, sha256: str, profile_file: Path, bundle: Path) -> ProfileSource:
    """The provenance of a profile exported from `profile_file` into the bundle at `bundle`."""
    file, root = Path(profile_file).resolve(), Path(bundle).resolve()
    path = None
    if file.is_relative_to(root.parent):
        path = PurePosixPath(Path(os.path.relpath(file, root))).as_posix()
    return ProfileSource(name=name, sha256=sha256, path=path)


class ProfileEntry(FileRef):
    """One image tower: a baked pruning profile."""

    profile_sha256: str | None = None  # of the profile YAML that made it
    arm: str = "manual"
    mode: Literal["zero", "mean"] = "zero"
    heads_removed: list[str] = Field(default_factory=list)  # Head labels (ccsclip.headref)
    parameters: int
    flops_per_image: int  # multiply-adds of the image tower
    parity_max_abs: float  # ONNX vs soft-pruned torch, on normalised embeddings
    parity_tolerance: float | None = None  # the bound it was held to; None: the manifest's
    precision: Literal["fp32", "fp16"] = "fp32"
    quantize: Literal["int8"] | None = None
    accuracy_delta: float | None = None  # reduced precision vs fp32 on a probe, when measured
    opset: int
    input: str = "pixel_values"
    output: str = "embeddings"
    source: ProfileSource | str | None = None  # str: an absolute path (older manifests)
    base_profile: str | None = None  # the fp32 profile a reduced-precision entry was made from


PROBE_RESULTS_DIR = "probe-results"


class NestedFileRef(FileRef):
    """A file one folder down in the bundle (`<folder>/<name>`), as `check_file` takes it."""

    file: str = Field(pattern=r"^[A-Za-z0-9._-]+/[A-Za-z0-9._-]+$")


class BakedProbeResult(Strict):
    """One profile's full result on one probe, baked at export (files under probe-results/)."""

    profile: str
    probe: str  # the probe's name (probe.yaml)
    probe_sha256: str = Field(min_length=64, max_length=64)  # of its probe.yaml
    key: str = Field(pattern=r"^[A-Za-z0-9._-]+$")  # the probe cache's entry key
    files: list[FileRef]  # <key>.json and <key>.npy, names relative to probe-results/


class Manifest(Strict):
    schema_: Literal["ccsclip/bundle/v1"] = Field(SCHEMA, alias="schema")
    created_by: str
    model: BundleModel
    preprocess: dict[str, Any]
    tokenizer: TokenizerRef
    text: TextRef
    default_profile: str
    profiles: dict[str, ProfileEntry]
    parity_tolerance: float = 1e-4
    probe_results: list[BakedProbeResult] = Field(default_factory=list)

    def files(self) -> list[FileRef]:
        """The files serving needs (checked by the engine at load)."""
        return [self.tokenizer, self.text, *self.profiles.values()]

    def baked_files(self) -> list[FileRef]:
        """The baked probe results' files, with paths relative to the bundle folder."""
        return [
            NestedFileRef(file=f"{PROBE_RESULTS_DIR}/{ref.file}", sha256=ref.sha256)
            for baked in self.probe_results
            for ref in baked.files
        ]


def source_file(bundle: str | Path, entry: ProfileEntry) -> Path | None:
    """The profile file an entry was exported from, when the manifest says where it is."""
    source = entry.source
    if isinstance(source, ProfileSource):
        return None if source.path is None else Path(bundle) / source.path
    return Path(source) if source else None


def read_manifest(bundle: str | Path) -> Manifest:
    """Parse and validate manifest.json (no file hashes checked: see `verify_files`)."""
    path = Path(bundle) / MANIFEST
    manifest = read_json_model(
        path,
        Manifest,
        f"bundle manifest ({SCHEMA})",
        f"{str(bundle)!r} is not a ccsclip bundle: {MANIFEST} is missing",
    )
    if manifest.default_profile not in manifest.profiles:
        raise InvalidInputError(
            f"{path}: default_profile {manifest.default_profile!r} is not one of "
            f"{sorted(manifest.profiles)}"
        )
    return manifest


def check_file(bundle: str | Path, ref: FileRef) -> Path:
    """The path of a listed file, after checking that it exists and matches its sha256."""
    path = Path(bundle) / ref.file
    if not path.is_file():
        raise NotFoundError(f"bundle file {ref.file!r} is missing from {str(bundle)!r}")
    actual = sha256_file(path)
    if actual != ref.sha256:
        raise IntegrityError(
            f"bundle file {ref.file!r} has sha256 {actual[:12]}… but the manifest says "
            f"{ref.sha256[:12]}…: the file was changed or truncated; re-export the bundle"
        )
    return path


def verify_files(bundle: str | Path, manifest: Manifest | None = None) -> list[str]:
    """Problems with the bundle's files (empty when every file exists and matches)."""
    manifest = manifest or read_manifest(bundle)
    problems = []
    for ref in [*manifest.files(), *manifest.baked_files()]:
        try:
            check_file(bundle, ref)
        except (NotFoundError, IntegrityError) as exc:
            problems.append(str(exc))
    return problems
