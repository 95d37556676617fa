"""Verify a serving bundle: hashes, ONNX metadata, costs and parity against torch.

See `ccsclip.export.bundle` for the design; writing lives in `bundle_write`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ccsclip.bundle import Manifest, ProfileEntry, check_file, read_manifest, source_file
from ccsclip.errors import CcsclipError, IntegrityError, NotFoundError
from ccsclip.export.parity import (
    REDUCED_TOLERANCE,
    costs,
    max_abs,
    onnx_embeddings,
    open_session,
    parity_images,
    text_parity,
    torch_image_reference,
)
from ccsclip.heads.ablation import Ablation
from ccsclip.models import LoadedModel
from ccsclip.profiles.schema import parse_head_names

__all__ = ["BundleReport", "ProfileCheck", "check_bundle", "verify_bundle"]

# --------------------------------------------------------------------------- verify


@dataclass
class ProfileCheck:
    """What `check_bundle` found for one image file."""

    name: str
    file: str
    precision: str
    heads_removed: int
    recorded: float
    tolerance: float
    measured: float | None = None
    reference: str = "not checked"  # torch:heads | torch:profile | onnx-rerun:<why> | bad file


@dataclass
class BundleReport:
    bundle: Path
    problems: list[str] = field(default_factory=list)
    rows: list[ProfileCheck] = field(default_factory=list)
    text_parity: float | None = None

    @property
    def ok(self) -> bool:
        return not self.problems


def _entry_precision(entry: ProfileEntry) -> str:
    return entry.quantize or entry.precision


def _check_metadata(path: Path, name: str, entry: ProfileEntry, manifest: Manifest) -> list[str]:
    """The ONNX file says it is this profile, of this model, made from this profile hash."""
    try:
        meta = dict(open_session(path).get_modelmeta().custom_metadata_map)
    except Exception as exc:  # noqa: BLE001 - a corrupt file is a finding, not a crash
        return [f"profile {name!r}: {entry.file} cannot be opened by onnxruntime: {exc}"]
    expected = {
        "kind": "image",
        "profile": name,
        "profile_sha256": entry.profile_sha256 or "",
        "heads_removed": json.dumps(entry.heads_removed),
        "mode": entry.mode,
        "precision": _entry_precision(entry),
        "model": manifest.model.name,
        "weights_sha256": manifest.model.weights_sha256,
    }
    return [
        f"profile {name!r}: {entry.file} metadata {key}={meta.get(key)!r}, manifest says {value!r}"
        for key, value in expected.items()
        if meta.get(key) != value
    ]


def _file_problems(bundle: Path, manifest: Manifest) -> tuple[list[str], set[str]]:
    problems, bad = [], set()
    for ref in [*manifest.files(), *manifest.baked_files()]:
        try:
            check_file(bundle, ref)
        except (NotFoundError, IntegrityError) as exc:
            problems.append(str(exc))
            bad.add(ref.file)
    return problems, bad


def _entry_tolerance(entry: ProfileEntry, manifest: Manifest) -> float:
    if entry.parity_tolerance is not None:
        return entry.parity_tolerance
    kind = _entry_precision(entry)
    return REDUCED_TOLERANCE.get(kind, manifest.parity_tolerance)


def _manifest_problems(manifest: Manifest) -> list[str]:
    """Fields that contradict each other without running anything."""
    problems = []
    for name, entry in manifest.profiles.items():
        tolerance = _entry_tolerance(entry, manifest)
        if entry.precision == "fp32" and entry.quantize is None:
            if tolerance != manifest.parity_tolerance:
                problems.append(
                    f"profile {name!r}: parity_tolerance {tolerance} differs from the manifest's "
                    f"{manifest.parity_tolerance}"
                )
        if not entry.parity_max_abs <= tolerance:
            problems.append(
                f"profile {name!r}: recorded parity {entry.parity_max_abs:.3g} exceeds its "
                f"tolerance {tolerance:.3g}"
            )
        if entry.base_profile is not None and entry.base_profile not in manifest.profiles:
            problems.append(f"profile {name!r}: base_profile {entry.base_profile!r} is missing")
    return problems


def _load_reference(manifest: Manifest) -> tuple[LoadedModel | None, list[str]]:
    from ccsclip.models import load_model

    model = manifest.model
    try:
        loaded = load_model(model.name, model.pretrained)
    except Exception as exc:  # noqa: BLE001 - report, do not crash
        return None, [
            f"cannot rebuild the torch reference {model.name!r} (pretrained={model.pretrained!r})"
            f": {exc}; parity was not rechecked"
        ]
    spec = loaded.spec
    if spec.weights_sha256 != model.weights_sha256:
        return None, [
            f"model {model.name!r} (pretrained={model.pretrained!r}) loads with weights "
            f"{spec.weights_sha256[:12]}…, the manifest says {model.weights_sha256[:12]}…: "
            "the bundle was exported from other weights; parity was not rechecked"
        ]
    problems = [
        f"manifest model.{key} = {getattr(model, key)}, the model has {getattr(spec, key)}"
        for key in ("embed_dim", "image_size", "context_length", "layers", "heads")
        if getattr(model, key) != getattr(spec, key)
    ]
    return loaded, problems


def _reference_ablation(
    bundle: Path, name: str, entry: ProfileEntry, loaded: LoadedModel
) -> tuple[Ablation | None, str, list[str]]:
    """The soft-pruning ablation that made `entry`, or None when it cannot be rebuilt."""
    from ccsclip.profiles.evaluate import profile_ablation
    from ccsclip.profiles.schema import load_profile

    heads = parse_head_names(entry.heads_removed)
    if entry.mode == "zero" or not heads:
        return Ablation.of(heads, "zero"), "torch:heads", []
    source = source_file(bundle, entry)
    if source is None or not source.is_file():
        return None, "onnx-rerun:no-profile", []
    try:
        profile = load_profile(source)
        if profile.sha256 != entry.profile_sha256:
            return None, "onnx-rerun:profile-changed", []
        if [h.name for h in profile.heads] != entry.heads_removed:
            return None, "failed", [f"profile {name!r}: heads differ from its file {source}"]
        return profile_ablation(profile, source, loaded), "torch:profile", []
    except CcsclipError as exc:
        return None, "failed", [f"profile {name!r}: cannot rebuild its ablation: {exc}"]


def _cost_problems(name: str, entry: ProfileEntry, loaded: LoadedModel) -> list[str]:
    params, flops = costs(loaded, parse_head_names(entry.heads_removed))
    problems = []
    if entry.parameters != params:
        problems.append(f"profile {name!r}: parameters {entry.parameters}, expected {params}")
    if entry.flops_per_image != flops:
        problems.append(
            f"profile {name!r}: flops_per_image {entry.flops_per_image}, expected {flops}"
        )
    return problems


def _rerun_problems(name: str, session: Any, inputs: list[np.ndarray]) -> list[str]:
    first, second = onnx_embeddings(session, inputs), onnx_embeddings(session, inputs)
    if not all(np.isfinite(x).all() for x in first):
        return [f"profile {name!r}: non-finite embeddings"]
    if max_abs(first, second) > 0:
        return [f"profile {name!r}: two runs on the same input differ"]
    return []


def _row(name: str, entry: ProfileEntry, manifest: Manifest, how: str = "") -> ProfileCheck:
    return ProfileCheck(
        name=name,
        file=entry.file,
        precision=_entry_precision(entry),
        heads_removed=len(entry.heads_removed),
        recorded=entry.parity_max_abs,
        tolerance=_entry_tolerance(entry, manifest),
        reference=how or "not checked",
    )


def _check_profile(
    bundle: Path,
    name: str,
    entry: ProfileEntry,
    manifest: Manifest,
    loaded: LoadedModel | None,
    inputs: list[np.ndarray],
    cache: dict[str, tuple[list[np.ndarray] | None, str]],
) -> tuple[ProfileCheck, list[str]]:
    row = _row(name, entry, manifest)
    tolerance = row.tolerance
    path = bundle / entry.file
    problems = _check_metadata(path, name, entry, manifest)
    if problems or loaded is None:
        return row, problems
    problems += _cost_problems(name, entry, loaded)
    key = entry.base_profile or name
    if key not in cache:
        ablation, how, found = _reference_ablation(bundle, name, entry, loaded)
        problems += found
        ref = None if ablation is None else torch_image_reference(loaded.model, ablation, inputs)
        cache[key] = (ref, how)
    reference, row.reference = cache[key]
    session = open_session(path)
    if reference is None:
        if row.reference.startswith("onnx-rerun"):
            problems += _rerun_problems(name, session, inputs)
        return row, problems
    row.measured = max_abs(onnx_embeddings(session, inputs), reference)
    if not row.measured <= tolerance:
        problems.append(
            f"profile {name!r}: {entry.file} differs from the soft-pruned torch model by "
            f"{row.measured:.3g}, above its tolerance {tolerance:.3g}"
        )
    return row, problems


def check_bundle(bundle: str | Path, images: int = 4) -> BundleReport:
    """Verify a bundle (see the module doc) and return the per-profile findings."""
    bundle = Path(bundle)
    report = BundleReport(bundle)
    try:
        manifest = read_manifest(bundle)
    except CcsclipError as exc:
        report.problems.append(str(exc))
        return report
    problems, bad_files = _file_problems(bundle, manifest)
    problems += _manifest_problems(manifest)
    loaded, found = _load_reference(manifest)
    problems += found
    inputs = parity_images(manifest.model.image_size, (1, max(1, int(images))))
    cache: dict[str, tuple[list[np.ndarray] | None, str]] = {}
    for name, entry in manifest.profiles.items():
        if entry.file in bad_files:
            report.rows.append(_row(name, entry, manifest, "bad file"))
            continue
        row, found = _check_profile(bundle, name, entry, manifest, loaded, inputs, cache)
        report.rows.append(row)
        problems += found
    if loaded is not None and manifest.text.file not in bad_files:
        problems += _check_text(bundle, manifest, loaded, report)
    report.problems = problems
    return report


def _check_text(
    bundle: Path, manifest: Manifest, loaded: LoadedModel, report: BundleReport
) -> list[str]:
    path = bundle / manifest.text.file
    try:
        meta = dict(open_session(path).get_modelmeta().custom_metadata_map)
        report.text_parity = text_parity(loaded, path, manifest.text.dynamic_length)
    except Exception as exc:  # noqa: BLE001
        return [f"text tower {manifest.text.file} cannot be run: {exc}"]
    problems = []
    if meta.get("weights_sha256") != manifest.model.weights_sha256:
        problems.append(f"text tower metadata names weights {meta.get('weights_sha256')!r}")
    if not report.text_parity <= manifest.parity_tolerance:
        problems.append(
            f"text tower differs from torch by {report.text_parity:.3g}, above "
            f"{manifest.parity_tolerance:.3g}"
        )
    return problems


def verify_bundle(bundle: str | Path, images: int = 4) -> list[str]:
    """Problems found in a bundle (empty = OK): hashes, metadata, costs, parity vs torch."""
    return check_bundle(bundle, images).problems
