"""The torch-free embedding engine (docs/design.md §8): one bundle, images and texts to vectors.

What it does and why:

* Sessions are opened and checked by `sessions.BundleSessions` (every file's sha256, inputs,
  outputs and metadata; unavailable profiles with their reason). This module is the embedding
  API on top of them, which the service's Core, the probes and the galleries call.
* The text tower is never pruned, so one text session serves every profile and text embeddings
  are cached per text (bounded LRU, thread-safe): zero-shot label sets and probe queries repeat.
* Embeddings are L2-normalised here in numpy (the ONNX files return the raw projection), with
  torch's `F.normalize` rule (divide by max(norm, 1e-12)) so results match the torch side.
* onnxruntime's `InferenceSession.run` is thread-safe; the only shared mutable state is the text
  cache, guarded by a lock. Transports may call the engine from many threads.

Nothing here imports torch or open_clip (a test checks `sys.modules` in a fresh interpreter).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ccsclip.bundle import ProfileEntry
from ccsclip.engine.sessions import BundleSessions, ProfileInfo
from ccsclip.errors import InvalidInputError

DEFAULT_TEMPLATES: tuple[str, ...] = ("a photo of a {}.",)
_EPS = 1e-12  # torch.nn.functional.normalize's default
_TEXT_CHUNK = 256  # texts per text-tower call: bounds memory for huge label sets
_IMAGE_CHUNK = 64  # images per image-tower call in embed_images


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
        self, sessions: BundleSessions, text_cache_size: int, templates: Sequence[str]
    ) -> None:
        self.sessions = sessions
        self.bundle = sessions.root
        self.manifest = sessions.manifest
        self.manifest_sha256 = sessions.manifest_sha256
        self.default_profile = sessions.default_profile
        self.tokenizer = sessions.tokenizer
        self.preprocessor = sessions.preprocessor
        self._text = sessions.text
        self._images = sessions.images
        self._cache = _LRU(text_cache_size)
        self.templates = check_templates(templates)
        self.embed_dim = self.manifest.model.embed_dim
        self.logit_scale = float(self.manifest.model.logit_scale)

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
        """Open a bundle directory, checking every file (`BundleSessions.open`).

        `default_profile` overrides the manifest's (an A/B deployment serves one bundle with
        different defaults). With `require_default=False` a broken default is only marked
        unavailable (for tools that list or index other profiles); requests without a profile
        then fail with NotFoundError. `templates` are the default zero-shot templates.
        """
        sessions = BundleSessions.open(
            bundle, default_profile, intra_op_threads, inter_op_threads, providers, require_default
        )
        return cls(sessions, text_cache_size, DEFAULT_TEMPLATES if templates is None else templates)

    # ------------------------------------------------------------------ profiles

    def profiles(self) -> list[ProfileInfo]:
        """Every profile in manifest order, with availability and the reason when unavailable."""
        return self.sessions.profiles()

    def available_profiles(self) -> list[str]:
        return self.sessions.available_profiles()

    def resolve_profile(self, name: str | None = None) -> str:
        """The profile to run: `name`, or the default when None; NotFoundError otherwise."""
        return self.sessions.resolve_profile(name)

    def profile_entry(self, name: str) -> ProfileEntry:
        return self.sessions.profile_entry(name)

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

    def probabilities(self, image_embeddings: np.ndarray, classes: np.ndarray) -> np.ndarray:
        """Softmax of logit_scale x cosine over classes, computed in float64: [N, C]."""
        logits = self.logit_scale * (
            image_embeddings.astype(np.float64) @ classes.astype(np.float64).T
        )
        logits -= logits.max(axis=1, keepdims=True)
        weights = np.exp(logits)
        return weights / weights.sum(axis=1, keepdims=True)

    def __repr__(self) -> str:
        return (
            f"Engine({str(self.bundle)!r}, model={self.manifest.model.name!r}, "
            f"default={self.default_profile!r}, available={self.available_profiles()})"
        )
