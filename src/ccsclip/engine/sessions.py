"""Open and check a bundle's onnxruntime sessions (docs/design.md §8): one text, one per profile.

Why it is strict: a server that answers with the wrong model is worse than one that does not
start. `BundleSessions.open` reads manifest.json and checks the sha256 of every file it opens,
and each ONNX file's inputs, outputs and metadata against the manifest. The tokenizer, the text
tower and the default profile must be sound or opening fails (IntegrityError or NotFoundError);
any other profile whose file is missing, altered or unreadable is marked unavailable with the
reason, and the rest of the bundle is served. The embedding API on top is `engine.Engine`.

onnxruntime's `InferenceSession.run` is thread-safe, so the sessions are shared by every caller.
Nothing here imports torch or open_clip.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import onnxruntime as ort
from pydantic import BaseModel, ConfigDict

from ccsclip.bundle import MANIFEST, Manifest, ProfileEntry, check_file, read_manifest
from ccsclip.engine.preprocess import ImagePreprocessor
from ccsclip.engine.tokenizer import BundleTokenizer
from ccsclip.errors import CcsclipError, IntegrityError, InvalidInputError, NotFoundError
from ccsclip.fileio import sha256_file

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"


class ProfileInfo(BaseModel):
    """A profile of the bundle as the API lists it (manifest entry + serving state)."""

    model_config = ConfigDict(frozen=True)

    name: str
    available: bool
    reason: str | None = None  # why it is unavailable
    default: bool
    arm: str
    mode: Literal["zero", "mean"]
    heads_removed: list[str]
    flops_per_image: int
    parameters: int
    parity_max_abs: float
    precision: str
    quantize: str | None = None
    accuracy_delta: float | None = None
    base_profile: str | None = None  # the fp32 profile a reduced-precision one was made from
    file: str
    sha256: str


def _session_options(intra: int | None, inter: int | None) -> ort.SessionOptions:
    options = ort.SessionOptions()
    for label, value in (("intra_op_threads", intra), ("inter_op_threads", inter)):
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 1
        ):
            raise InvalidInputError(f"{label} must be a positive integer or None, got {value!r}")
    if intra is not None:
        options.intra_op_num_threads = intra
    if inter is not None:
        options.inter_op_num_threads = inter
    options.log_severity_level = 3  # errors only: the engine reports problems itself
    return options


def _providers(requested: Sequence[Any] | None) -> list[Any]:
    """CUDA first when this onnxruntime build has it, then CPU; or the caller's list, checked."""
    available = ort.get_available_providers()
    if requested is None:
        return [CUDA, CPU] if CUDA in available else [CPU]
    names = [p[0] if isinstance(p, (tuple, list)) else p for p in requested]
    missing = [name for name in names if name not in available]
    if not names or missing:
        raise InvalidInputError(
            f"execution providers {missing or names} are not available in this onnxruntime "
            f"build; available: {available}"
        )
    return list(requested)


def _open_session(
    path: Path, what: str, options: ort.SessionOptions, providers: list[Any]
) -> ort.InferenceSession:
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=providers)
    except Exception as exc:  # onnxruntime raises its own pybind types: report them as ours
        raise IntegrityError(f"onnxruntime cannot open {what} {path.name!r}: {exc}") from exc


def _check_io(
    session: ort.InferenceSession,
    what: str,
    input_name: str,
    output_name: str,
    input_tail: Sequence[int],
    embed_dim: int,
) -> None:
    """The file has the input/output the manifest names, with the shapes the engine feeds."""
    inputs = {i.name: i for i in session.get_inputs()}
    outputs = {o.name: o for o in session.get_outputs()}
    if input_name not in inputs or output_name not in outputs:
        raise IntegrityError(
            f"{what} has inputs {sorted(inputs)} and outputs {sorted(outputs)}; the manifest "
            f"says input {input_name!r} and output {output_name!r}"
        )
    shape = list(inputs[input_name].shape)
    tail = shape[1:]
    if len(tail) != len(input_tail) or any(
        isinstance(got, int) and got != want for got, want in zip(tail, input_tail, strict=True)
    ):
        raise IntegrityError(
            f"{what} input {input_name!r} has shape {shape}; expected [batch, "
            f"{', '.join(map(str, input_tail))}]"
        )
    out_dim = list(outputs[output_name].shape)[-1]
    if isinstance(out_dim, int) and out_dim != embed_dim:
        raise IntegrityError(
            f"{what} returns {out_dim}-dim embeddings; the model's embed_dim is {embed_dim}"
        )


def _check_metadata(
    session: ort.InferenceSession, what: str, weights_sha256: str, profile: str | None = None
) -> None:
    """The file's own metadata (written by the exporter) agrees with the manifest.

    Catches a file copied over another profile's, or from another model's bundle, with the
    manifest hash edited to match. Keys the file does not carry are not checked.
    """
    meta = session.get_modelmeta().custom_metadata_map
    weights = meta.get("weights_sha256")
    if weights is not None and weights != weights_sha256:
        raise IntegrityError(
            f"{what} was exported from model weights {weights[:12]}…, the manifest's model has "
            f"{weights_sha256[:12]}…"
        )
    claimed = meta.get("profile")
    if profile is not None and claimed is not None and claimed != profile:
        raise IntegrityError(f"{what} was exported for profile {claimed!r}, not {profile!r}")


def _check_text_length(session: ort.InferenceSession, manifest: Manifest) -> None:
    """A text tower the manifest calls dynamic-length must accept any sequence length."""
    inputs = {i.name: i for i in session.get_inputs()}
    length = list(inputs[manifest.text.input].shape)[1]
    if manifest.text.dynamic_length and isinstance(length, int):
        raise IntegrityError(
            f"text tower {manifest.text.file!r} takes a fixed length of {length} tokens but the "
            "manifest says text.dynamic_length: re-export the bundle"
        )


def _open_profile(
    root: Path,
    name: str,
    entry: ProfileEntry,
    model: Any,
    options: ort.SessionOptions,
    providers: list[Any],
) -> ort.InferenceSession:
    path = check_file(root, entry)
    what = f"profile {name!r} ({entry.file})"
    session = _open_session(path, f"image tower of profile {name!r}", options, providers)
    _check_io(
        session,
        what,
        entry.input,
        entry.output,
        [3, model.image_size, model.image_size],
        model.embed_dim,
    )
    _check_metadata(session, what, model.weights_sha256, name)
    return session


@dataclass
class BundleSessions:
    """What a bundle opened to: checked sessions, tokenizer and preprocessing, and which
    profiles could not be opened (with the reason)."""

    root: Path
    manifest: Manifest
    manifest_sha256: str
    default_profile: str
    tokenizer: BundleTokenizer
    preprocessor: ImagePreprocessor
    text: ort.InferenceSession
    images: dict[str, ort.InferenceSession]
    unavailable: dict[str, str]

    @classmethod
    def open(
        cls,
        bundle: str | Path,
        default_profile: str | None = None,
        intra_op_threads: int | None = None,
        inter_op_threads: int | None = None,
        providers: Sequence[Any] | None = None,
        require_default: bool = True,
    ) -> BundleSessions:
        """Open a bundle directory, checking every file (see the module doc).

        `default_profile` overrides the manifest's; with `require_default=False` a broken default
        is only marked unavailable.
        """
        root = Path(bundle)
        if not root.is_dir():
            raise NotFoundError(f"bundle directory {str(root)!r} does not exist")
        manifest = read_manifest(root)
        manifest_sha256 = sha256_file(root / MANIFEST)
        default = manifest.default_profile if default_profile is None else default_profile
        if default not in manifest.profiles:
            raise NotFoundError(
                f"default profile {default!r} is not in the bundle {str(root)!r}; its profiles: "
                f"{sorted(manifest.profiles)}"
            )
        options = _session_options(intra_op_threads, inter_op_threads)
        chosen = _providers(providers)
        model = manifest.model

        tokenizer_path = check_file(root, manifest.tokenizer)
        tokenizer_config = {
            **manifest.tokenizer.config,
            **manifest.tokenizer.model_dump(exclude={"config"}),
        }
        tokenizer = BundleTokenizer(tokenizer_path, tokenizer_config)
        if tokenizer.context_length != model.context_length:
            raise IntegrityError(
                f"tokenizer context length {tokenizer.context_length} differs from the model's "
                f"{model.context_length}"
            )
        preprocessor = ImagePreprocessor(manifest.preprocess)
        if preprocessor.size != (model.image_size, model.image_size):
            raise IntegrityError(
                f"preprocess size {list(preprocessor.size)} differs from the model's image size "
                f"{model.image_size}"
            )
        text_path = check_file(root, manifest.text)
        text_session = _open_session(text_path, "text tower", options, chosen)
        _check_io(
            text_session,
            f"text tower {manifest.text.file!r}",
            manifest.text.input,
            manifest.text.output,
            [model.context_length],
            model.embed_dim,
        )
        _check_metadata(text_session, f"text tower {manifest.text.file!r}", model.weights_sha256)
        _check_text_length(text_session, manifest)

        sessions: dict[str, ort.InferenceSession] = {}
        unavailable: dict[str, str] = {}
        for name, entry in manifest.profiles.items():
            try:
                sessions[name] = _open_profile(root, name, entry, model, options, chosen)
            except CcsclipError as exc:
                unavailable[name] = str(exc)
                if name == default and require_default:
                    raise type(exc)(
                        f"the default profile {name!r} of bundle {str(root)!r} cannot be served, "
                        f"so the engine does not start: {exc}"
                    ) from exc
        return cls(
            root,
            manifest,
            manifest_sha256,
            default,
            tokenizer,
            preprocessor,
            text_session,
            sessions,
            unavailable,
        )

    def profiles(self) -> list[ProfileInfo]:
        """Every profile in manifest order, with availability and the reason when unavailable."""
        out = []
        for name, entry in self.manifest.profiles.items():
            out.append(
                ProfileInfo(
                    name=name,
                    available=name in self.images,
                    reason=self.unavailable.get(name),
                    default=name == self.default_profile,
                    arm=entry.arm,
                    mode=entry.mode,
                    heads_removed=list(entry.heads_removed),
                    flops_per_image=entry.flops_per_image,
                    parameters=entry.parameters,
                    parity_max_abs=entry.parity_max_abs,
                    precision=entry.precision,
                    quantize=entry.quantize,
                    accuracy_delta=entry.accuracy_delta,
                    base_profile=entry.base_profile,
                    file=entry.file,
                    sha256=entry.sha256,
                )
            )
        return out

    def available_profiles(self) -> list[str]:
        return [name for name in self.manifest.profiles if name in self.images]

    def resolve_profile(self, name: str | None = None) -> str:
        """The profile to run: `name`, or the default when None; NotFoundError otherwise."""
        available = self.available_profiles()
        if name is None:
            name = self.default_profile
            if name not in self.images:
                raise NotFoundError(
                    f"the default profile {name!r} is unavailable "
                    f"({self.unavailable.get(name)}); choose one of {available}"
                )
            return name
        if not isinstance(name, str):
            raise InvalidInputError(f"profile must be a string, got {type(name).__name__}")
        if name not in self.manifest.profiles:
            raise NotFoundError(f"unknown profile {name!r}; available profiles: {available}")
        if name not in self.images:
            raise NotFoundError(
                f"profile {name!r} is unavailable ({self.unavailable[name]}); available "
                f"profiles: {available}"
            )
        return name

    def profile_entry(self, name: str) -> ProfileEntry:
        if name not in self.manifest.profiles:
            raise NotFoundError(
                f"unknown profile {name!r}; profiles of this bundle: {list(self.manifest.profiles)}"
            )
        return self.manifest.profiles[name]
