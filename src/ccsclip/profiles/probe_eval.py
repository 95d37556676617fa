"""Run accuracy and bias probes (docs/design.md §7) on a torch CLIP, optionally soft-pruned.

Accuracy: zero-shot top-1 over an ImageFolder, class embedding = mean of normalised template
embeddings. Bias: for each neutral query, rank the pool by similarity and take MaxSkew@K per
protected attribute; report the mean over queries and the sum the paper's code uses.

A probe is prepared once (images preprocessed, text embeddings computed: the text tower is never
pruned) and scored once per profile.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ccsclip.fairness import random_ranking_max_skew, skew_table
from ccsclip.probeset import AccuracyProbe, Probe
from ccsclip.zeroshot import class_embeddings, encode_images


def load_image_tensor(paths: list[Path], preprocess) -> torch.Tensor:
    tensors = []
    for path in paths:
        with Image.open(path) as image:
            tensors.append(preprocess(image.convert("RGB")))
    return torch.stack(tensors)


@dataclass
class PreparedProbe:
    probe: Probe
    images: torch.Tensor  # preprocessed [N, 3, S, S]
    texts: torch.Tensor  # class (accuracy) or query (bias) embeddings [C, E]
    nulls: dict[str, float]


def prepare_probe(model, tokenizer, preprocess, probe: Probe) -> PreparedProbe:
    if isinstance(probe, AccuracyProbe):
        paths = [path for path, _ in probe.samples]
        names, nulls = probe.class_names, {}
    else:
        paths = [path for path, _ in probe.rows]
        names = [query.text for query in probe.spec.queries]
        nulls = {
            f"{attribute}@{k}": random_ranking_max_skew(
                [attrs[attribute] for _, attrs in probe.rows], k, 1, repeats=100
            )
            for attribute in probe.spec.attributes
            for k in probe.spec.k
        }
    texts = class_embeddings(model, tokenizer, names, probe.spec.templates)
    return PreparedProbe(probe, load_image_tensor(paths, preprocess), texts, nulls)


def score_probe(model, prepared: PreparedProbe) -> dict[str, Any]:
    """Score a prepared probe with the model as it is now (any ablation applied)."""
    embeddings = encode_images(model.eval(), prepared.images)
    scores = (embeddings @ prepared.texts.T).numpy()  # [N, C]
    probe = prepared.probe
    if isinstance(probe, AccuracyProbe):
        labels = np.array([label for _, label in probe.samples])
        return {
            "probe": probe.name,
            "kind": "accuracy",
            "n_images": len(labels),
            "accuracy": float(np.mean(scores.argmax(1) == labels)),
            "chance": 1.0 / len(probe.class_names),
        }
    return skew_table(probe, scores.T, prepared.nulls)


def probe_result(model, tokenizer, preprocess, probe: Probe) -> dict[str, Any]:
    """Prepare and score one probe (accuracy or bias) with the model as it is."""
    return score_probe(model, prepare_probe(model, tokenizer, preprocess, probe))
