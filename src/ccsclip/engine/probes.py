"""Accuracy and bias probes (docs/design.md §7, §8) on the serving engine, without torch.

The same computation as the offline `ccsclip.profiles.probe_eval`, so a served profile can be
checked against the numbers it was selected with: class (or query) embedding = normalised mean
of normalised template embeddings; accuracy = argmax of cosine; bias = rank the pool by cosine
per neutral query, MaxSkew@K per protected attribute, mean and sum over queries, beside the
expected MaxSkew of a random ranking. The result dicts have the same keys, plus `profile`.

The text side of a probe (its class or query embeddings and the random-ranking nulls) does not
depend on the profile, since the text tower is never pruned: it is prepared once per engine and
probe and reused for every profile and every periodic run. Images are read on each run, in
batches, so a large probe never sits in memory preprocessed.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ccsclip.engine.engine import Engine
from ccsclip.engine.image_files import read_image
from ccsclip.errors import InvalidInputError
from ccsclip.fairness import random_ranking_max_skew, skew_table
from ccsclip.probeset import AccuracyProbe, Probe, load_probe, read_probe_spec

_NULL_REPEATS = 100  # as probe_eval: the random-ranking null is an average over 100 draws


@dataclass(frozen=True)
class PreparedProbe:
    """A loaded probe with its profile-independent text side."""

    probe: Probe
    texts: np.ndarray  # class (accuracy) or query (bias) embeddings [C, E]
    nulls: dict[str, float]  # "<attribute>@<k>" -> mean MaxSkew of a random ranking


_cache: weakref.WeakKeyDictionary[Engine, dict[tuple[str, str], PreparedProbe]] = (
    weakref.WeakKeyDictionary()
)
_lock = threading.Lock()


def prepare_probe(engine: Engine, probe_dir: str | Path) -> PreparedProbe:
    """Load the probe (content hash checked) and embed its texts, or reuse a cached copy.

    The cache key is the probe's folder and content hash, so a probe rewritten in place with new
    content is prepared again.
    """
    root = Path(probe_dir)
    key = (str(root.resolve()), read_probe_spec(root).content_sha256)
    with _lock:
        cached = _cache.get(engine, {}).get(key)
    if cached is not None:
        return cached
    probe = load_probe(root)
    if isinstance(probe, AccuracyProbe):
        names, nulls = probe.class_names, {}
    else:
        names = [query.text for query in probe.spec.queries]
        nulls = {
            f"{attribute}@{k}": random_ranking_max_skew(
                [attrs[attribute] for _, attrs in probe.rows], k, 1, repeats=_NULL_REPEATS
            )
            for attribute in probe.spec.attributes
            for k in probe.spec.k
        }
    prepared = PreparedProbe(probe, engine.class_embeddings(names, probe.spec.templates), nulls)
    with _lock:
        _cache.setdefault(engine, {})[key] = prepared
    return prepared


def probe_paths(prepared: PreparedProbe) -> list[Path]:
    """The probe's images in its fixed order (samples of an accuracy probe, rows of a bias one)."""
    probe = prepared.probe
    if isinstance(probe, AccuracyProbe):
        return [path for path, _ in probe.samples]
    return [path for path, _ in probe.rows]


def embed_probe(
    engine: Engine,
    prepared: PreparedProbe,
    profile: str,
    batch_size: int = 64,
    indices: np.ndarray | None = None,
    between_batches: Callable[[], None] | None = None,
) -> np.ndarray:
    """Embed the probe's images (or those at `indices`) with a profile, in batches.

    `between_batches` runs after each batch (the canary yields to requests there).
    """
    paths = probe_paths(prepared)
    if indices is not None:
        paths = [paths[int(i)] for i in indices]
    parts = [np.zeros((0, engine.embed_dim), dtype=np.float32)]
    for start in range(0, len(paths), batch_size):
        pixels = engine.preprocess([read_image(path) for path in paths[start : start + batch_size]])
        parts.append(engine.embed_pixels(pixels, profile))
        if between_batches is not None:
            between_batches()
    return np.concatenate(parts)


def top1(prepared: PreparedProbe, embeddings: np.ndarray) -> np.ndarray:
    """Each image's best class (accuracy probe) or query (bias probe): what the canary checks."""
    return (embeddings @ prepared.texts.T).argmax(1)


def score_probe(prepared: PreparedProbe, embeddings: np.ndarray, profile: str) -> dict[str, Any]:
    """The probe's result from the embeddings of all its images; keys as probe_eval's."""
    probe = prepared.probe
    scores = embeddings @ prepared.texts.T  # [N, C]
    if isinstance(probe, AccuracyProbe):
        labels = np.array([label for _, label in probe.samples])
        return {
            "probe": probe.name,
            "kind": "accuracy",
            "profile": profile,
            "n_images": len(labels),
            "accuracy": float(np.mean(scores.argmax(1) == labels)),
            "chance": 1.0 / len(probe.class_names),
        }
    result = skew_table(probe, scores.T, prepared.nulls)
    result["profile"] = profile
    return result


def run_probe_embeddings(
    engine: Engine, probe_dir: str | Path, profile: str | None = None, batch_size: int = 64
) -> tuple[dict[str, Any], np.ndarray]:
    """Score one probe with one profile; also return every image's embedding [N, E]."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidInputError(f"batch_size must be a positive integer, got {batch_size!r}")
    name = engine.resolve_profile(profile)
    prepared = prepare_probe(engine, probe_dir)
    embeddings = embed_probe(engine, prepared, name, batch_size)
    return score_probe(prepared, embeddings, name), embeddings


def run_probe(
    engine: Engine, probe_dir: str | Path, profile: str | None = None, batch_size: int = 64
) -> dict[str, Any]:
    """Score one probe with one profile (None: the default); keys as probe_eval's results."""
    return run_probe_embeddings(engine, probe_dir, profile, batch_size)[0]
