"""Write and verify a serving bundle (design §6, §7): profiles + model -> checked ONNX files.

`export_bundle` bakes each profile into a smaller image tower, exports it, and refuses the whole
bundle if the ONNX file disagrees with the *soft-pruned* torch model (the reference the paper's
experiments use) by more than the tolerance, on normalised embeddings of random images at batch
1 and 7. Everything is written into a temp directory that replaces the target only at the end,
so a failed export leaves no bundle and never destroys an existing one.

Reduced precision. fp16: `onnxruntime.transformers.float16.convert_float_to_float16` with
`keep_io_types=True` (float32 inputs and outputs, Casts inside; `onnxconverter-common` is not
installed and onnxruntime ships the same converter). int8: `onnxruntime.quantization.
quantize_dynamic` with QInt8 weights (activations quantised at run time, no calibration data).
Both are extra profiles `<name>-fp16` / `<name>-int8`, measured against the same soft-pruned torch
reference as fp32 and held to a looser, recorded tolerance; with an accuracy probe the entry also
records accuracy(reduced) - accuracy(fp32) computed with onnxruntime and the engine's own
preprocessing and tokenizer (what serving would see).

ONNX metadata keys (plain, as the engine reads them): kind, schema, profile, profile_sha256,
base_profile, heads_removed (JSON list), mode, precision, quantize, model, pretrained,
weights_sha256.

`verify_bundle` design: hashes first (`verify_files`); then every ONNX file's metadata against the
manifest; then parity against a torch reference rebuilt from the manifest's model
(`load_model(name, pretrained)`; its weights hash must equal the manifest's, random-init models
are seeded so this holds for them too). The reference ablation comes from the manifest alone for
zero mode (the removed heads are all it needs) and from the profile file named in `source` for
mean mode (its means are hash-checked, and its sha256 must equal the entry's). A mean-mode
profile whose profile file is gone cannot be rebuilt; it is then only checked for determinism
and finite outputs (ONNX run twice), and the report says so. FLOPs, parameter counts and the
recorded parity are re-derived and compared, so an edited manifest field is caught.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from torch import nn
from tqdm.auto import tqdm

from ccsclip import __version__
from ccsclip.bundle import (
    MANIFEST,
    PROFILE_NAME,
    SCHEMA,
    BundleModel,
    Manifest,
    ProfileEntry,
    TextRef,
    TokenizerRef,
    check_file,
    read_manifest,
)
from ccsclip.errors import CcsclipError, IntegrityError, InvalidInputError, NotFoundError
from ccsclip.export.onnx_export import (
    OPSET,
    export_image_tower,
    export_text_tower,
)
from ccsclip.export.preprocess import preprocess_config
from ccsclip.export.surgery import bake, flops_per_image, predicted_parameter_count
from ccsclip.export.tokenizer import TOKENIZER_FILE, write_tokenizer
from ccsclip.fileio import atomic_directory, atomic_path, atomic_write_json, sha256_file
from ccsclip.heads.ablation import Ablation, ablated
from ccsclip.heads.resolve import image_blocks
from ccsclip.models import LoadedModel
from ccsclip.profiles.schema import Profile, parse_head_names

__all__ = [
    "REDUCED_TOLERANCE",
    "BundleReport",
    "ProfileCheck",
    "check_bundle",
    "export_bundle",
    "verify_bundle",
]

TEXT_FILE = "text.onnx"
PARITY_BATCHES = (1, 7)
PARITY_SEED = 0
REDUCED_TOLERANCE = {"fp16": 1e-2, "int8": 5e-2}  # measured: ~2e-4 and ~5e-3 on three models
_TEXTS = ["a photo of a dog.", "a red circle on a striped background", "", "x " * 40]

# --------------------------------------------------------------------------- small helpers


def _image_file(name: str) -> str:
    return f"image-{name}.onnx"


def _session(path: Path) -> Any:
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def _max_abs(got: list[np.ndarray], expected: list[np.ndarray]) -> float:
    return max(float(np.max(np.abs(g - e))) for g, e in zip(got, expected, strict=True))


def _parity_images(image_size: int, batches: Sequence[int] = PARITY_BATCHES) -> list[np.ndarray]:
    """Seeded standard-normal pixel tensors: far from natural images, so they stress every path."""
    generator = torch.Generator().manual_seed(PARITY_SEED)
    return [torch.randn(b, 3, image_size, image_size, generator=generator).numpy() for b in batches]


def _onnx_embeddings(session: Any, inputs: list[np.ndarray]) -> list[np.ndarray]:
    name = session.get_inputs()[0].name
    return [_normalise(session.run(None, {name: x})[0]) for x in inputs]


@torch.inference_mode()
def _torch_image_reference(
    model: nn.Module, ablation: Ablation, inputs: list[np.ndarray]
) -> list[np.ndarray]:
    """Normalised embeddings of the soft-pruned model (heads masked in the forward pass)."""
    device = next(model.parameters()).device
    with ablated(model.eval(), ablation):
        return [
            _normalise(model.encode_image(torch.from_numpy(x).to(device), normalize=True).cpu())
            for x in inputs
        ]


def _tower_config(model: nn.Module) -> tuple[float, bool]:
    """(mlp_ratio, layer_scale) of the image tower: the cost model needs them, specs lack them."""
    block = image_blocks(model)[0]
    fc = block.mlp.c_fc
    layer_scale = not isinstance(getattr(block, "ls_1", nn.Identity()), nn.Identity)
    return fc.out_features / fc.in_features, layer_scale


def _costs(loaded: LoadedModel, heads: Sequence[tuple[int, int]]) -> tuple[int, int]:
    """(predicted parameters, predicted multiply-adds per image) of the baked image tower."""
    mlp_ratio, layer_scale = _tower_config(loaded.model)
    spec = loaded.spec
    params = predicted_parameter_count(spec, heads, mlp_ratio=mlp_ratio, layer_scale=layer_scale)
    return params, flops_per_image(spec, heads, mlp_ratio=mlp_ratio)


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

    def __init__(self, probe_dir: Path, bundle: Path, tokenizer: TokenizerRef, preprocess: dict):
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
        text = _session(bundle / TEXT_FILE)
        rows = []
        for name in probe.class_names:
            ids = tok([template.format(name) for template in probe.spec.templates])
            emb = _normalise(text.run(None, {text.get_inputs()[0].name: ids})[0])
            rows.append(_normalise(emb.mean(0)))
        self.classes = np.stack(rows)

    def accuracy(self, onnx_path: Path, batch: int = 64) -> float:
        session = _session(onnx_path)
        chunks = [self.pixels[i : i + batch] for i in range(0, len(self.pixels), batch)]
        embeddings = np.concatenate(_onnx_embeddings(session, chunks))
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
) -> ProfileEntry:
    """Bake, export, check parity and cost; the manifest entry of one fp32 profile."""
    heads = profile.head_pairs()
    baked = bake(loaded.model, ablation)
    params = sum(p.numel() for p in baked.visual.parameters())
    predicted_params, flops = _costs(loaded, heads)
    if params != predicted_params:
        raise IntegrityError(
            f"profile {profile.name!r}: the baked image tower has {params} parameters, the cost "
            f"model predicts {predicted_params}; the surgery and the cost model disagree"
        )
    path = bundle / _image_file(profile.name)
    export_image_tower(
        baked, path, loaded.spec.image_size, _image_metadata(loaded, profile.name, profile)
    )
    del baked
    parity = _max_abs(_onnx_embeddings(_session(path), inputs), reference)
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
        source=str(source.resolve()),
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
    path = bundle / _image_file(extra.name)
    proto = _convert(bundle / base.file, path, extra.kind)
    _set_metadata(proto, _image_metadata(loaded, extra.name, profile, extra.kind, extra.base))
    _save_onnx(proto, path)
    del proto
    tolerance = REDUCED_TOLERANCE[extra.kind]
    parity = _max_abs(_onnx_embeddings(_session(path), inputs), reference)
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


@torch.inference_mode()
def _text_parity(loaded: LoadedModel, path: Path) -> float:
    ids = loaded.tokenizer(_TEXTS, context_length=loaded.spec.context_length)
    device = next(loaded.model.parameters()).device
    expected = _normalise(loaded.model.encode_text(ids.to(device), normalize=True).cpu())
    session = _session(path)
    got = _normalise(session.run(None, {session.get_inputs()[0].name: ids.numpy()})[0])
    return _max_abs([got], [expected])


def _export_text(loaded: LoadedModel, bundle: Path, tolerance: float) -> TextRef:
    spec = loaded.spec
    meta = {
        "kind": "text",
        "schema": SCHEMA,
        "model": spec.name,
        "pretrained": spec.pretrained or "",
        "weights_sha256": spec.weights_sha256,
    }
    path = export_text_tower(loaded.model, bundle / TEXT_FILE, spec.context_length, meta)
    parity = _text_parity(loaded, path)
    _check_parity("text", parity, tolerance, "text tower")
    return TextRef(file=path.name, sha256=sha256_file(path), opset=OPSET)


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
) -> Manifest:
    """Write a verified bundle at `out` (replacing an existing bundle only on success).

    `profiles` are (profile, path of its YAML) pairs: the path locates mean-mode means files and
    is recorded as the entry's `source`. `precision={'p': 'fp16'}` / `quantize={'p': 'int8'}` add
    profiles `p-fp16` / `p-int8`; `probe` (an accuracy probe dir) adds their accuracy_delta.
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
    ablations = {p.name: profile_ablation(p, path, loaded) for p, path in profiles}
    inputs = _parity_images(loaded.spec.image_size)
    steps = len(profiles) + len(extras) + 2
    bar = tqdm(total=steps, desc="export", unit="file", disable=not progress)
    with bar, atomic_directory(out) as tmp:
        entries: dict[str, ProfileEntry] = {}
        references: dict[str, list[np.ndarray]] = {}
        for profile, path in profiles:
            bar.set_postfix_str(profile.name)
            references[profile.name] = _torch_image_reference(
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
            )
            bar.update()
        bar.set_postfix_str("text, tokenizer")
        text = _export_text(loaded, tmp, tolerance)
        tokenizer = _tokenizer_ref(
            write_tokenizer(loaded, tmp / TOKENIZER_FILE, loaded.spec.context_length)
        )
        preprocess = preprocess_config(loaded)
        bar.update()
        scorer = _ProbeScorer(Path(probe), tmp, tokenizer, preprocess) if probe and extras else None
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
    return manifest


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
        meta = dict(_session(path).get_modelmeta().custom_metadata_map)
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
    for ref in manifest.files():
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
    name: str, entry: ProfileEntry, loaded: LoadedModel
) -> tuple[Ablation | None, str, list[str]]:
    """The soft-pruning ablation that made `entry`, or None when it cannot be rebuilt."""
    from ccsclip.profiles.evaluate import profile_ablation
    from ccsclip.profiles.schema import load_profile

    heads = parse_head_names(entry.heads_removed)
    if entry.mode == "zero" or not heads:
        return Ablation.of(heads, "zero"), "torch:heads", []
    source = Path(entry.source) if entry.source else None
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
    params, flops = _costs(loaded, parse_head_names(entry.heads_removed))
    problems = []
    if entry.parameters != params:
        problems.append(f"profile {name!r}: parameters {entry.parameters}, expected {params}")
    if entry.flops_per_image != flops:
        problems.append(
            f"profile {name!r}: flops_per_image {entry.flops_per_image}, expected {flops}"
        )
    return problems


def _rerun_problems(name: str, session: Any, inputs: list[np.ndarray]) -> list[str]:
    first, second = _onnx_embeddings(session, inputs), _onnx_embeddings(session, inputs)
    if not all(np.isfinite(x).all() for x in first):
        return [f"profile {name!r}: non-finite embeddings"]
    if _max_abs(first, second) > 0:
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
        ablation, how, found = _reference_ablation(name, entry, loaded)
        problems += found
        ref = None if ablation is None else _torch_image_reference(loaded.model, ablation, inputs)
        cache[key] = (ref, how)
    reference, row.reference = cache[key]
    session = _session(path)
    if reference is None:
        if row.reference.startswith("onnx-rerun"):
            problems += _rerun_problems(name, session, inputs)
        return row, problems
    row.measured = _max_abs(_onnx_embeddings(session, inputs), reference)
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
    inputs = _parity_images(manifest.model.image_size, (1, max(1, int(images))))
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
        meta = dict(_session(path).get_modelmeta().custom_metadata_map)
        report.text_parity = _text_parity(loaded, path)
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
