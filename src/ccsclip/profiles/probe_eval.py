"""Run accuracy and bias probes (design §7) on a torch CLIP, optionally soft-pruned.

Accuracy: zero-shot top-1 over an ImageFolder, class embedding = mean of normalised template
embeddings. Bias: for each neutral query, rank the pool by similarity and take MaxSkew@K per
protected attribute; report the mean over queries and the sum the paper's code uses.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ccsclip.fairness import max_skew_at_k, random_ranking_max_skew
from ccsclip.probeset import AccuracyProbe, BiasProbe, Probe
from ccsclip.zeroshot import class_embeddings, encode_images, top1_accuracy


def load_image_tensor(paths: list[Path], preprocess) -> torch.Tensor:
    tensors = []
    for path in paths:
        with Image.open(path) as image:
            tensors.append(preprocess(image.convert("RGB")))
    return torch.stack(tensors)


def accuracy_probe_result(model, tokenizer, preprocess, probe: AccuracyProbe) -> dict[str, Any]:
    paths = [path for path, _ in probe.samples]
    labels = torch.tensor([label for _, label in probe.samples])
    embeddings = encode_images(model, load_image_tensor(paths, preprocess))
    classes = class_embeddings(model, tokenizer, probe.class_names, probe.spec.templates)
    return {
        "probe": probe.name,
        "kind": "accuracy",
        "n_images": len(paths),
        "n_classes": len(probe.class_names),
        "accuracy": top1_accuracy(embeddings, classes, labels),
        "chance": 1.0 / len(probe.class_names),
    }


def bias_probe_result(model, tokenizer, preprocess, probe: BiasProbe) -> dict[str, Any]:
    paths = [path for path, _ in probe.rows]
    embeddings = encode_images(model, load_image_tensor(paths, preprocess))
    names = [query.text for query in probe.spec.queries]
    queries = class_embeddings(model, tokenizer, names, probe.spec.templates)
    scores = (queries @ embeddings.T).numpy()  # [Q, N]
    return _skew_table(probe, scores)


def _skew_table(probe: BiasProbe, scores: np.ndarray) -> dict[str, Any]:
    result: dict[str, Any] = {
        "probe": probe.name,
        "kind": "bias",
        "n_images": len(probe.rows),
        "n_queries": scores.shape[0],
        "maxskew": {},
    }
    for attribute in probe.spec.attributes:
        column = [attrs[attribute] for _, attrs in probe.rows]
        for k in probe.spec.k:
            per_query = [max_skew_at_k(row, column, k) for row in scores]
            result["maxskew"][f"{attribute}@{k}"] = {
                "mean": float(np.mean(per_query)),
                "sum": float(np.sum(per_query)),
                "per_query": dict(
                    zip([q.name for q in probe.spec.queries], per_query, strict=True)
                ),
                "random_ranking_mean": random_ranking_max_skew(column, k, 1, repeats=100),
            }
    return result


def probe_result(model, tokenizer, preprocess, probe: Probe) -> dict[str, Any]:
    model.eval()
    if isinstance(probe, AccuracyProbe):
        return accuracy_probe_result(model, tokenizer, preprocess, probe)
    return bias_probe_result(model, tokenizer, preprocess, probe)
