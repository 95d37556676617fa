"""Write a serving bundle (docs/design.md §6, §7): profiles + model -> checked ONNX files.

See `ccsclip.export.bundle` for the whole story; verifying lives in `bundle_verify`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from tqdm.auto import tqdm

from ccsclip import __version__
from ccsclip.bundle import (
    MANIFEST,
    PROBE_RESULTS_DIR,
    PROFILE_NAME,
    SCHEMA,
    BakedProbeResult,
    BundleModel,
    Manifest,
    ProfileEntry,
    TextRef,
    TokenizerRef,
    check_file,
    profile_source,
    read_manifest,
)
from ccsclip.errors import IntegrityError, InvalidInputError, NotFoundError
from ccsclip.export.onnx_export import (
    OPSET,
    export_image_tower,
    export_text_tower,
)
from ccsclip.export.parity import (
    REDUCED_TOLERANCE,
    TEXT_FILE,
    costs,
    image_file,
    max_abs,
    normalise,
    onnx_embeddings,
    open_session,
    parity_images,
    text_parity,
    torch_image_reference,
)
from ccsclip.export.preprocess import preprocess_config
from ccsclip.export.surgery import bake
from ccsclip.export.tokenizer import TOKENIZER_FILE, write_tokenizer
from ccsclip.fileio import atomic_directory, atomic_path, atomic_write_json, sha256_file
from ccsclip.heads.ablation import Ablation
from ccsclip.models import LoadedModel
from ccsclip.models.text import trim_unsupported
from ccsclip.profiles.schema import Profile

__all__ = ["export_bundle"]

log = logging.getLogger(__name__)


def _set_metadata(proto: onnx.ModelProto, metadata: Mapping[str, str]) -> None:
    del proto.metadata_props[:]
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value


def _save_onnx(proto: onnx.ModelProto, path: Path) -> None:
    with atomic_path(path) as tmp:
        onnx.save_model(proto, str(tmp), save_as_external_data=False)
        onnx.checker.check_model(str(tmp))


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """onnxruntime.quantization warns through the root logger (and would configure it)."""
    root = logging.getLogger()
    handler = logging.NullHandler()
    root.addHandler(handler)
    previous = root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(previous)
        root.removeHandler(handler)


# --------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class _Reduced:
    name: str
    base: str
    kind: str  # fp16 | int8


def _check_tolerance(tolerance: float) -> float:
    if not isinstance(tolerance, (int, float)) or not math.isfinite(tolerance) or tolerance < 0:
        raise InvalidInputError(f"tolerance must be a finite number >= 0, got {tolerance!r}")
    return float(tolerance)


def _reduced_plan(
    names: Sequence[str],
    precision: Mapping[str, str] | None,
    quantize: Mapping[str, str] | None,
) -> list[_Reduced]:
    """The extra reduced-precision profiles, validated against the fp32 profile names."""
    plan = []
    for option, allowed, mapping in (
        ("precision", "fp16", precision),
        ("quantize", "int8", quantize),
    ):
        for base, kind in (mapping or {}).items():
            if base not in names:
                raise NotFoundError(
                    f"{option} names profile {base!r}, which is not exported; profiles: "
                    f"{sorted(names)}"
                )
            if kind != allowed:
                raise InvalidInputError(f"{option}[{base!r}] = {kind!r}: only {allowed!r} exists")
            plan.append(_Reduced(f"{base}-{kind}", base, kind))
    return plan


def _check_names(profiles: Sequence[tuple[Profile, Path]], extras: list[_Reduced]) -> list[str]:
    names = [profile.name for profile, _ in profiles] + [extra.name for extra in extras]
    if not profiles:
        raise InvalidInputError("export needs at least one profile (e.g. a baseline profile)")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise InvalidInputError(
            f"profile names must be unique in a bundle; repeated: {dupes} (a reduced-precision "
            "profile is named <name>-fp16 / <name>-int8)"
        )
    bad = [n for n in names if not re.match(PROFILE_NAME, n)]
    if bad:
        raise InvalidInputError(f"profile names {bad} do not match {PROFILE_NAME}")
    return names


def _default_profile(names: Sequence[str], default: str | None) -> str:
    if default is None:
        return "baseline" if "baseline" in names else names[0]
    if default not in names:
        raise NotFoundError(f"default profile {default!r} is not one of {list(names)}")
    return default


def _check_target(out: Path) -> None:
    """Only ever replace a bundle: a typo in --out must not delete an unrelated folder."""
    if out.exists() and not (out / MANIFEST).is_file():
        if out.is_file() or any(out.iterdir()):
            raise InvalidInputError(
                f"{str(out)!r} exists and is not a ccsclip bundle (no {MANIFEST}); refusing to "
                "replace it: choose another --out or remove it yourself"
            )


# --------------------------------------------------------------------------- accuracy probe


class _ProbeScorer:
    """Zero-shot accuracy of an image ONNX file with the engine's preprocessing and tokenizer."""

    def __init__(
        self,
        probe_dir: Path,
        bundle: Path,
        tokenizer: TokenizerRef,
        preprocess: dict,
        text_ref: TextRef,
    ):
        from PIL import Image

        from ccsclip.engine.preprocess import ImagePreprocessor
        from ccsclip.engine.tokenizer import BundleTokenizer
        from ccsclip.probeset import AccuracyProbe, load_probe

        probe = load_probe(probe_dir)
        if not isinstance(probe, AccuracyProbe):
            raise InvalidInputError(
                f"probe {str(probe_dir)!r} is a {probe.spec.kind} probe; accuracy_delta needs an "
                "accuracy probe (kind: accuracy)"
            )
        self.name = probe.name
        preprocessor = ImagePreprocessor(preprocess)
        pixels = []
        for path, _ in probe.samples:
            with Image.open(path) as image:
                pixels.append(preprocessor(image)[0])
        self.pixels = np.stack(pixels)
        self.labels = np.array([label for _, label in probe.samples])
        config = {**tokenizer.config, **tokenizer.model_dump(exclude={"config"})}
        tok = BundleTokenizer(bundle / tokenizer.file, config)
        text = open_session(bundle / TEXT_FILE)
        rows = []
        for name in probe.class_names:
            ids = tok([template.format(name) for template in probe.spec.templates])
            ids = tok.trim(ids) if text_ref.dynamic_length else ids
            emb = normalise(text.run(None, {text.get_inputs()[0].name: ids})[0])
            rows.append(normalise(emb.mean(0)))
        self.classes = np.stack(rows)

    def accuracy(self, onnx_path: Path, batch: int = 64) -> float:
        session = open_session(onnx_path)
        chunks = [self.pixels[i : i + batch] for i in range(0, len(self.pixels), batch)]
        embeddings = np.concatenate(onnx_embeddings(session, chunks))
        return float(np.mean((embeddings @ self.classes.T).argmax(1) == self.labels))


# --------------------------------------------------------------------------- writers


def _image_metadata(
    loaded: LoadedModel,
    name: str,
    profile: Profile,
    precision: str = "fp32",
    base: str | None = None,
) -> dict[str, str]:
    """What the file says about itself; `precision` is fp32, fp16 or int8."""
    spec = loaded.spec
    return {
        "kind": "image",
        "schema": SCHEMA,
        "profile": name,
        "profile_sha256": profile.sha256,
        "base_profile": base or "",
        "heads_removed": json.dumps([h.name for h in profile.heads]),
        "mode": profile.ablation.mode,
        "precision": precision,
        "model": spec.name,
        "pretrained": spec.pretrained or "",
        "weights_sha256": spec.weights_sha256,
    }


def _export_profile(
    loaded: LoadedModel,
    profile: Profile,
    source: Path,
    ablation: Ablation,
    bundle: Path,
    inputs: list[np.ndarray],
    reference: list[np.ndarray],
    tolerance: float,
    target: Path,
) -> ProfileEntry:
    """Bake, export, check parity and cost; the manifest entry of one fp32 profile.

    `bundle` is the folder written now, `target` the one it becomes (provenance is relative
    to it)."""
    heads = profile.head_pairs()
    baked = bake(loaded.model, ablation)
    params = sum(p.numel() for p in baked.visual.parameters())
    predicted_params, flops = costs(loaded, heads)
    if params != predicted_params:
        raise IntegrityError(
            f"profile {profile.name!r}: the baked image tower has {params} parameters, the cost "
            f"model predicts {predicted_params}; the surgery and the cost model disagree"
        )
    path = bundle / image_file(profile.name)
    export_image_tower(
        baked, path, loaded.spec.image_size, _image_metadata(loaded, profile.name, profile)
    )
    del baked
    parity = max_abs(onnx_embeddings(open_session(path), inputs), reference)
    _check_parity(profile.name, parity, tolerance, "fp32")
    return ProfileEntry(
        file=path.name,
        sha256=sha256_file(path),
        profile_sha256=profile.sha256,
        arm=profile.selection.arm,
        mode=profile.ablation.mode,
        heads_removed=[h.name for h in profile.heads],
        parameters=params,
        flops_per_image=flops,
        parity_max_abs=parity,
        parity_tolerance=tolerance,
        opset=OPSET,
        source=profile_source(profile.name, profile.sha256, source, target),
    )


def _check_parity(name: str, parity: float, tolerance: float, what: str) -> None:
    if not parity <= tolerance:  # also catches NaN
        raise IntegrityError(
            f"profile {name!r} ({what}): ONNX differs from the soft-pruned torch model by "
            f"{parity:.3g} (max |Δ| on normalised embeddings), above the tolerance "
            f"{tolerance:.3g}; nothing was written. Check the profile and the surgery, or raise "
            "--tolerance if this difference is acceptable"
        )


def _convert(source: Path, target: Path, kind: str) -> onnx.ModelProto:
    """fp16 or int8 copy of an fp32 image tower; inputs and outputs stay float32."""
    if kind == "fp16":
        from onnxruntime.transformers.float16 import convert_float_to_float16
        from onnxruntime.transformers.onnx_model import OnnxModel

        proto = convert_float_to_float16(onnx.load(str(source)), keep_io_types=True)
        # The converter appends the input Casts after their consumers; onnx's checker (rightly)
        # wants a topological order, which onnxruntime's own graph utility restores.
        OnnxModel.graph_topological_sort(proto.graph, is_deterministic=True)
        return proto
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with atomic_path(target) as tmp, _quiet_root_logger():
        quantize_dynamic(str(source), str(tmp), weight_type=QuantType.QInt8)
        proto = onnx.load(str(tmp))
    return proto


def _export_reduced(
    loaded: LoadedModel,
    extra: _Reduced,
    profile: Profile,
    base: ProfileEntry,
    bundle: Path,
    inputs: list[np.ndarray],
    reference: list[np.ndarray],
    scorer: _ProbeScorer | None,
) -> ProfileEntry:
    """The fp16 / int8 entry made from an fp32 profile's file, with parity and accuracy delta."""
    path = bundle / image_file(extra.name)
    proto = _convert(bundle / base.file, path, extra.kind)
    _set_metadata(proto, _image_metadata(loaded, extra.name, profile, extra.kind, extra.base))
    _save_onnx(proto, path)
    del proto
    tolerance = REDUCED_TOLERANCE[extra.kind]
    parity = max_abs(onnx_embeddings(open_session(path), inputs), reference)
    _check_parity(extra.name, parity, tolerance, extra.kind)
    delta = None
    if scorer is not None:
        delta = scorer.accuracy(path) - scorer.accuracy(bundle / base.file)
    return base.model_copy(
        update={
            "file": path.name,
            "sha256": sha256_file(path),
            "parity_max_abs": parity,
            "parity_tolerance": tolerance,
            "precision": "fp16" if extra.kind == "fp16" else "fp32",
            "quantize": "int8" if extra.kind == "int8" else None,
            "accuracy_delta": delta,
            "base_profile": extra.base,
        }
    )


def _export_text(loaded: LoadedModel, bundle: Path, tolerance: float) -> TextRef:
    spec = loaded.spec
    meta = {
        "kind": "text",
        "schema": SCHEMA,
        "model": spec.name,
        "pretrained": spec.pretrained or "",
        "weights_sha256": spec.weights_sha256,
    }
    reason = trim_unsupported(loaded.model)
    if reason is not None:
        log.warning("text.onnx keeps a static length of %d: %s", spec.context_length, reason)
    dynamic = reason is None
    path = export_text_tower(
        loaded.model, bundle / TEXT_FILE, spec.context_length, meta, dynamic_length=dynamic
    )
    parity = text_parity(loaded, path, dynamic)
    _check_parity("text", parity, tolerance, "text tower")
    return TextRef(file=path.name, sha256=sha256_file(path), opset=OPSET, dynamic_length=dynamic)


def _tokenizer_ref(entry: Mapping[str, Any]) -> TokenizerRef:
    fields = ("kind", "file", "sha256", "context_length", "sot_id", "eot_id", "pad_id")
    config = {k: v for k, v in entry.items() if k not in fields}
    return TokenizerRef(**{k: entry[k] for k in fields}, config=config)


def _bundle_model(loaded: LoadedModel) -> BundleModel:
    spec = loaded.spec
    return BundleModel(
        name=spec.name,
        pretrained=spec.pretrained,
        weights_sha256=spec.weights_sha256,
        embed_dim=spec.embed_dim,
        image_size=spec.image_size,
        context_length=spec.context_length,
        layers=spec.layers,
        heads=spec.heads,
        logit_scale=float(loaded.model.logit_scale.detach().exp().item()),
    )


def _bake_probes(
    bundle: Path, probes: Sequence[Path], batch_size: int = 64
) -> list[BakedProbeResult]:
    """Each available profile's full result on each probe, as a server computes it (the same
    engine and code), written under `bundle`/probe-results/ in the probe cache's format."""
    from ccsclip.engine.engine import Engine
    from ccsclip.service.probe_cache import bake_entry

    engine = Engine.load(bundle, require_default=False)
    root = bundle / PROBE_RESULTS_DIR
    baked = []
    for profile in engine.available_profiles():
        for directory in probes:
            baked.append(bake_entry(root, engine, Path(directory), profile, batch_size))
    return baked


def _check_probe_dirs(probes: Sequence[Path]) -> list[Path]:
    """The probe folders, each read (probe.yaml, content hash) before anything is exported."""
    from ccsclip.probeset import load_probe

    dirs = [Path(d) for d in probes]
    for directory in dirs:
        if not directory.is_dir():
            raise NotFoundError(f"probe directory {str(directory)!r} does not exist")
        load_probe(directory)
    return dirs


def export_bundle(
    loaded: LoadedModel,
    profiles: Sequence[tuple[Profile, Path]],
    out: Path,
    default_profile: str | None = None,
    tolerance: float = 1e-4,
    precision: Mapping[str, str] | None = None,
    quantize: Mapping[str, str] | None = None,
    probe: Path | None = None,
    progress: bool = True,
    bake: Sequence[Path] = (),
) -> Manifest:
    """Write a verified bundle at `out` (replacing an existing bundle only on success).

    `profiles` are (profile, path of its YAML) pairs: the path locates mean-mode means files and
    is recorded, relative to `out`, in the entry's `source`. `precision={'p': 'fp16'}` /
    `quantize={'p': 'int8'}` add profiles `p-fp16` / `p-int8`; `probe` (an accuracy probe dir)
    adds their accuracy_delta. `bake` (probe dirs, accuracy or bias): each profile's full result
    on each is computed with the written bundle and stored in it (probe-results/, hashed in the
    manifest's `probe_results`), so a server on the bundle only runs the canary.
    Raises IntegrityError if any file misses its parity tolerance; nothing is written then.
    Side effect, as in `evaluate_profiles`: `loaded.model`'s image attention modules are swapped
    for head-resolved ones (same parameters, same outputs).
    """
    from ccsclip.profiles.evaluate import profile_ablation

    tolerance = _check_tolerance(tolerance)
    out = Path(out)
    extras = _reduced_plan([p.name for p, _ in profiles], precision, quantize)
    names = _check_names(profiles, extras)
    default = _default_profile(names, default_profile)
    _check_target(out)
    if probe is not None and not Path(probe).is_dir():
        raise NotFoundError(f"probe directory {str(probe)!r} does not exist")
    bake = _check_probe_dirs(bake)
    ablations = {p.name: profile_ablation(p, path, loaded) for p, path in profiles}
    inputs = parity_images(loaded.spec.image_size)
    steps = len(profiles) + len(extras) + 2 + bool(bake)
    bar = tqdm(total=steps, desc="export", unit="file", disable=not progress)
    with bar, atomic_directory(out) as tmp:
        entries: dict[str, ProfileEntry] = {}
        references: dict[str, list[np.ndarray]] = {}
        for profile, path in profiles:
            bar.set_postfix_str(profile.name)
            references[profile.name] = torch_image_reference(
                loaded.model, ablations[profile.name], inputs
            )
            entries[profile.name] = _export_profile(
                loaded,
                profile,
                Path(path),
                ablations[profile.name],
                tmp,
                inputs,
                references[profile.name],
                tolerance,
                out,
            )
            bar.update()
        bar.set_postfix_str("text, tokenizer")
        text = _export_text(loaded, tmp, tolerance)
        tokenizer = _tokenizer_ref(
            write_tokenizer(loaded, tmp / TOKENIZER_FILE, loaded.spec.context_length)
        )
        preprocess = preprocess_config(loaded)
        bar.update()
        scorer = (
            _ProbeScorer(Path(probe), tmp, tokenizer, preprocess, text)
            if probe and extras
            else None
        )
        by_name = {p.name: p for p, _ in profiles}
        for extra in extras:
            bar.set_postfix_str(extra.name)
            entries[extra.name] = _export_reduced(
                loaded,
                extra,
                by_name[extra.base],
                entries[extra.base],
                tmp,
                inputs,
                references[extra.base],
                scorer,
            )
            bar.update()
        manifest = Manifest(
            created_by=f"ccsclip {__version__}",
            model=_bundle_model(loaded),
            preprocess=preprocess,
            tokenizer=tokenizer,
            text=text,
            default_profile=default,
            profiles=entries,
            parity_tolerance=tolerance,
        )
        atomic_write_json(tmp / MANIFEST, manifest.model_dump(mode="json", by_alias=True))
        read_manifest(tmp)  # what the engine will parse
        for ref in manifest.files():
            check_file(tmp, ref)
        bar.update()
        if bake:
            bar.set_postfix_str("probe results")
            started = time.perf_counter()
            baked = _bake_probes(tmp, bake)
            manifest = manifest.model_copy(update={"probe_results": baked})
            atomic_write_json(tmp / MANIFEST, manifest.model_dump(mode="json", by_alias=True))
            for ref in read_manifest(tmp).baked_files():
                check_file(tmp, ref)
            log.info("baked %d probe results in %.1f s", len(baked), time.perf_counter() - started)
            bar.update()
    return manifest
