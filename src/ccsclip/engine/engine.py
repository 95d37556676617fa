"""The torch-free serving engine (design §8): one bundle, one onnxruntime session per profile.

What it does and why:

* `Engine.load` reads manifest.json and checks the sha256 of every file it opens. The tokenizer,
  the text tower and the default profile must be sound or start-up stops (IntegrityError or
  NotFoundError): a server that answers with the wrong model is worse than one that does not
  start. Any other profile whose file is missing, altered or unreadable is marked unavailable
  with the reason and the rest of the bundle is served.
* The text tower is never pruned, so one text session serves every profile and text embeddings
  are cached per text (bounded LRU, thread-safe): zero-shot label sets and probe queries repeat.
* Embeddings are L2-normalised here in numpy (the ONNX files return the raw projection), with
  torch's `F.normalize` rule (divide by max(norm, 1e-12)) so results match the torch side.
* onnxruntime's `InferenceSession.run` is thread-safe; the only shared mutable state is the text
  cache, guarded by a lock. Transports may call the engine from many threads.
* `embed_images_grouped` runs a mixed-profile batch as one onnxruntime call per profile: batchable
  BentoML APIs take one argument, so each item carries its own profile (design §8).

Nothing here imports torch or open_clip (a test checks `sys.modules` in a fresh interpreter).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnxruntime as ort
from PIL import Image
from pydantic import BaseModel, ConfigDict

from ccsclip.bundle import MANIFEST, Manifest, ProfileEntry, check_file, read_manifest
from ccsclip.engine.preprocess import ImagePreprocessor
from ccsclip.engine.tokenizer import BundleTokenizer
from ccsclip.errors import CcsclipError, IntegrityError, InvalidInputError, NotFoundError
from ccsclip.fileio import sha256_file

DEFAULT_TEMPLATES: tuple[str, ...] = ("a photo of a {}.",)
CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
_EPS = 1e-12  # torch.nn.functional.normalize's default
_TEXT_CHUNK = 256  # texts per text-tower call: bounds memory for huge label sets
_IMAGE_CHUNK = 64  # images per image-tower call in embed_images


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


class ModelInfo(BaseModel):
    """Identity of the served model and bundle (what a client needs to trust the answers)."""

    model_config = ConfigDict(frozen=True)

    name: str
    pretrained: str | None
    weights_sha256: str
    embed_dim: int
    image_size: int
    context_length: int
    logit_scale: float
    bundle: str
    bundle_manifest_sha256: str
    created_by: str
    default_profile: str
    profiles: list[str]
    available_profiles: list[str]
    providers: list[str]
    default_templates: list[str]


def normalize(x: np.ndarray) -> np.ndarray:
    """Row-wise L2 normalisation in float32, as torch's F.normalize (eps 1e-12)."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return (x / np.maximum(norms, np.float32(_EPS))).astype(np.float32, copy=False)


def check_templates(templates: Sequence[str]) -> list[str]:
    """Templates with exactly one `{}` and no other braces (same rule as probe.yaml)."""
    if isinstance(templates, str) or not isinstance(templates, Sequence) or not templates:
        raise InvalidInputError(
            f"templates must be a non-empty list of strings such as {list(DEFAULT_TEMPLATES)}, "
            f"got {templates!r}"
        )
    out = []
    for template in templates:
        if not isinstance(template, str):
            raise InvalidInputError(f"template {template!r} is not a string")
        rest = template.replace("{}", "")
        if template.count("{}") != 1 or "{" in rest or "}" in rest:
            raise InvalidInputError(
                f"template {template!r} must contain exactly one '{{}}' (where the label goes) "
                "and no other braces"
            )
        out.append(template)
    return out


def _check_labels(labels: Sequence[str]) -> list[str]:
    if isinstance(labels, str) or not isinstance(labels, Sequence) or not labels:
        raise InvalidInputError(f"labels must be a non-empty list of strings, got {labels!r}")
    bad = [label for label in labels if not isinstance(label, str) or not label.strip()]
    if bad:
        raise InvalidInputError(f"labels must be non-empty strings; got {bad!r}")
    dupes = sorted({label for label in labels if list(labels).count(label) > 1})
    if dupes:
        raise InvalidInputError(f"labels must be unique; repeated: {dupes}")
    return list(labels)


def _check_k(k: int, name: str = "k") -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise InvalidInputError(f"{name} must be a positive integer, got {k!r}")
    return int(k)


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


class _LRU:
    """A bounded, thread-safe LRU of text -> read-only embedding, with hit/miss counters."""

    def __init__(self, capacity: int) -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 0:
            raise InvalidInputError(f"text_cache_size must be an integer >= 0, got {capacity!r}")
        self.capacity = capacity
        self._data: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get_many(self, keys: Sequence[str]) -> list[np.ndarray | None]:
        with self._lock:
            out: list[np.ndarray | None] = []
            for key in keys:
                value = self._data.get(key)
                if value is None:
                    self.misses += 1
                else:
                    self.hits += 1
                    self._data.move_to_end(key)
                out.append(value)
            return out

    def put_many(self, items: Mapping[str, np.ndarray]) -> None:
        if not self.capacity:
            return
        with self._lock:
            for key, value in items.items():
                self._data[key] = value
                self._data.move_to_end(key)
            while len(self._data) > self.capacity:
                self._data.popitem(last=False)

    def info(self) -> dict[str, int]:
        with self._lock:
            return {
                "hits": self.hits,
                "misses": self.misses,
                "size": len(self._data),
                "capacity": self.capacity,
            }

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self.hits = self.misses = 0


class Engine:
    """A loaded bundle: profiles, preprocessing, tokenizer and sessions. Build with `load`."""

    def __init__(
        self,
        bundle: Path,
        manifest: Manifest,
        manifest_sha256: str,
        default_profile: str,
        tokenizer: BundleTokenizer,
        preprocessor: ImagePreprocessor,
        text_session: ort.InferenceSession,
        image_sessions: dict[str, ort.InferenceSession],
        unavailable: dict[str, str],
        text_cache_size: int,
        templates: Sequence[str],
    ) -> None:
        self.bundle = bundle
        self.manifest = manifest
        self.manifest_sha256 = manifest_sha256
        self.default_profile = default_profile
        self.tokenizer = tokenizer
        self.preprocessor = preprocessor
        self._text = text_session
        self._images = image_sessions
        self._unavailable = unavailable
        self._cache = _LRU(text_cache_size)
        self.templates = check_templates(templates)
        self.embed_dim = manifest.model.embed_dim
        self.logit_scale = float(manifest.model.logit_scale)

    # ------------------------------------------------------------------ loading

    @classmethod
    def load(
        cls,
        bundle: str | Path,
        default_profile: str | None = None,
        intra_op_threads: int | None = None,
        inter_op_threads: int | None = None,
        providers: Sequence[Any] | None = None,
        text_cache_size: int = 4096,
        require_default: bool = True,
        templates: Sequence[str] | None = None,
    ) -> Engine:
        """Open a bundle directory, checking every file's sha256 (see the module doc).

        `default_profile` overrides the manifest's (an A/B deployment serves one bundle with
        different defaults). With `require_default=False` a broken default is only marked
        unavailable (for tools that list or index other profiles); requests without a profile
        then fail with NotFoundError. `templates` are the default zero-shot templates.
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
                sessions[name] = cls._open_profile(root, name, entry, model, options, chosen)
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
            text_cache_size,
            DEFAULT_TEMPLATES if templates is None else templates,
        )

    @staticmethod
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

    # ------------------------------------------------------------------ profiles

    def profiles(self) -> list[ProfileInfo]:
        """Every profile in manifest order, with availability and the reason when unavailable."""
        out = []
        for name, entry in self.manifest.profiles.items():
            out.append(
                ProfileInfo(
                    name=name,
                    available=name in self._images,
                    reason=self._unavailable.get(name),
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
        return [name for name in self.manifest.profiles if name in self._images]

    def resolve_profile(self, name: str | None = None) -> str:
        """The profile to run: `name`, or the default when None; NotFoundError otherwise."""
        available = self.available_profiles()
        if name is None:
            name = self.default_profile
            if name not in self._images:
                raise NotFoundError(
                    f"the default profile {name!r} is unavailable "
                    f"({self._unavailable.get(name)}); choose one of {available}"
                )
            return name
        if not isinstance(name, str):
            raise InvalidInputError(f"profile must be a string, got {type(name).__name__}")
        if name not in self.manifest.profiles:
            raise NotFoundError(f"unknown profile {name!r}; available profiles: {available}")
        if name not in self._images:
            raise NotFoundError(
                f"profile {name!r} is unavailable ({self._unavailable[name]}); available "
                f"profiles: {available}"
            )
        return name

    def profile_entry(self, name: str) -> ProfileEntry:
        if name not in self.manifest.profiles:
            raise NotFoundError(
                f"unknown profile {name!r}; profiles of this bundle: {list(self.manifest.profiles)}"
            )
        return self.manifest.profiles[name]

    def model_info(self) -> ModelInfo:
        model = self.manifest.model
        return ModelInfo(
            name=model.name,
            pretrained=model.pretrained,
            weights_sha256=model.weights_sha256,
            embed_dim=model.embed_dim,
            image_size=model.image_size,
            context_length=model.context_length,
            logit_scale=model.logit_scale,
            bundle=str(self.bundle),
            bundle_manifest_sha256=self.manifest_sha256,
            created_by=self.manifest.created_by,
            default_profile=self.default_profile,
            profiles=list(self.manifest.profiles),
            available_profiles=self.available_profiles(),
            providers=list(self._text.get_providers()),
            default_templates=list(self.templates),
        )

    # ------------------------------------------------------------------ images

    def preprocess(self, images: Sequence[Image.Image]) -> np.ndarray:
        """PIL images -> float32 [N, 3, S, S] (open_clip's val transform)."""
        if isinstance(images, Image.Image):
            images = [images]
        return self.preprocessor(list(images))

    def embed_pixels(self, pixels: np.ndarray, profile: str | None = None) -> np.ndarray:
        """Preprocessed pixels [N, 3, S, S] -> unit-norm embeddings, in one onnxruntime call."""
        name = self.resolve_profile(profile)
        pixels = np.ascontiguousarray(pixels, dtype=np.float32)
        if pixels.shape[0] == 0:
            return np.zeros((0, self.embed_dim), dtype=np.float32)
        entry = self.manifest.profiles[name]
        raw = self._images[name].run([entry.output], {entry.input: pixels})[0]
        return normalize(raw)

    def embed_images(self, images: Sequence[Image.Image], profile: str | None = None) -> np.ndarray:
        """PIL images -> float32 [N, E] unit-norm, with the profile's image tower."""
        name = self.resolve_profile(profile)
        if isinstance(images, Image.Image):
            images = [images]
        images = list(images)
        parts = [
            self.embed_pixels(self.preprocess(images[i : i + _IMAGE_CHUNK]), name)
            for i in range(0, len(images), _IMAGE_CHUNK)
        ]
        if not parts:
            return np.zeros((0, self.embed_dim), dtype=np.float32)
        return np.concatenate(parts)

    def embed_images_grouped(
        self, items: Sequence[tuple[Image.Image, str | None]]
    ) -> list[np.ndarray]:
        """Embed a mixed-profile batch: one onnxruntime call per profile, results in item order.

        Every profile is resolved before anything runs, so an unknown profile fails the whole
        call (NotFoundError); transports should resolve profiles when a request arrives.
        """
        resolved = [self.resolve_profile(profile) for _, profile in items]
        groups: dict[str, list[int]] = {}
        for index, name in enumerate(resolved):
            groups.setdefault(name, []).append(index)
        out: list[np.ndarray | None] = [None] * len(resolved)
        for name, indices in groups.items():
            pixels = self.preprocess([items[i][0] for i in indices])
            embeddings = self.embed_pixels(pixels, name)
            for row, index in enumerate(indices):
                out[index] = embeddings[row]
        return [vector for vector in out if vector is not None]

    # ------------------------------------------------------------------ texts

    def _run_text(self, texts: Sequence[str]) -> np.ndarray:
        ids = self.tokenizer(list(texts))
        text = self.manifest.text
        if text.dynamic_length:  # exact for such towers, and several times faster: see trim()
            ids = self.tokenizer.trim(ids)
        return normalize(self._text.run([text.output], {text.input: ids})[0])

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Texts -> float32 [N, E] unit-norm; cached per text (LRU, thread-safe)."""
        if isinstance(texts, str):
            texts = [texts]
        texts = list(texts)
        for index, text in enumerate(texts):
            if not isinstance(text, str):
                raise InvalidInputError(f"texts[{index}] is a {type(text).__name__}, expected str")
        if not texts:
            return np.zeros((0, self.embed_dim), dtype=np.float32)
        found = self._cache.get_many(texts)
        missing = list(dict.fromkeys(t for t, v in zip(texts, found, strict=True) if v is None))
        computed: dict[str, np.ndarray] = {}
        for start in range(0, len(missing), _TEXT_CHUNK):
            chunk = missing[start : start + _TEXT_CHUNK]
            for text, vector in zip(chunk, self._run_text(chunk), strict=True):
                vector = vector.copy()
                vector.setflags(write=False)  # cached arrays are shared between callers
                computed[text] = vector
        self._cache.put_many(computed)
        rows = [v if v is not None else computed[t] for t, v in zip(texts, found, strict=True)]
        return np.stack(rows).astype(np.float32, copy=False)

    def text_cache_info(self) -> dict[str, int]:
        """hits, misses (per text looked up), size and capacity of the text cache."""
        return self._cache.info()

    def clear_text_cache(self) -> None:
        self._cache.clear()

    def class_embeddings(
        self, labels: Sequence[str], templates: Sequence[str] | None = None
    ) -> np.ndarray:
        """[C, E]: per label, the normalised mean of its normalised template embeddings."""
        if isinstance(labels, str) or not labels:
            raise InvalidInputError(f"labels must be a non-empty list of strings, got {labels!r}")
        labels = list(labels)
        templates = self.templates if templates is None else check_templates(templates)
        texts = [template.format(label) for label in labels for template in templates]
        embeddings = self.embed_texts(texts).reshape(len(labels), len(templates), -1)
        return normalize(embeddings.mean(axis=1))

    # ------------------------------------------------------------------ zero-shot, retrieval

    def zero_shot(
        self,
        images: Sequence[Image.Image],
        labels: Sequence[str],
        templates: Sequence[str] | None = None,
        profile: str | None = None,
        top_k: int = 5,
    ) -> list[list[tuple[str, float]]]:
        """Per image, the top_k (label, probability), softmax over logit_scale x cosine."""
        labels = _check_labels(labels)
        top_k = min(_check_k(top_k, "top_k"), len(labels))
        classes = self.class_embeddings(labels, templates)
        embeddings = self.embed_images(images, profile)
        probabilities = self.probabilities(embeddings, classes)
        order = np.argsort(-probabilities, axis=1, kind="stable")[:, :top_k]
        return [
            [(labels[j], float(row[j])) for j in ranks]
            for row, ranks in zip(probabilities, order, strict=True)
        ]

    def probabilities(self, image_embeddings: np.ndarray, classes: np.ndarray) -> np.ndarray:
        """Softmax of logit_scale x cosine over classes, computed in float64: [N, C]."""
        logits = self.logit_scale * (
            image_embeddings.astype(np.float64) @ classes.astype(np.float64).T
        )
        logits -= logits.max(axis=1, keepdims=True)
        weights = np.exp(logits)
        return weights / weights.sum(axis=1, keepdims=True)

    def image_to_text(
        self, image: Image.Image, texts: Sequence[str], k: int = 5, profile: str | None = None
    ) -> list[tuple[str, float]]:
        """The k texts nearest to an image (cosine), in order; ties keep the input order."""
        if isinstance(texts, str) or not texts:
            raise InvalidInputError("texts must be a non-empty list of strings")
        k = min(_check_k(k), len(texts))
        query = self.embed_images([image], profile)[0]
        scores = self.embed_texts(texts) @ query
        order = np.argsort(-scores, kind="stable")[:k]
        return [(texts[i], float(scores[i])) for i in order]

    def __repr__(self) -> str:
        return (
            f"Engine({str(self.bundle)!r}, model={self.manifest.model.name!r}, "
            f"default={self.default_profile!r}, available={self.available_profiles()})"
        )
