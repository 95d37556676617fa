"""The null of MaxSkew beside every search figure: what a ranking with the same relevance and no
attribute preference gets on the same images (the attribute shuffled within each query's
relevant images, `ccsclip.fairness.shuffled_null_max_skew`).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import torch

from ccsclip.fairness import infer_relevance, shuffled_null_max_skew
from ccsclip.probeset import load_probe
from ccsclip.profiles.search.data import Part, ProbeData


@lru_cache(maxsize=32)
def _masks(path: str, attribute: str) -> np.ndarray:
    probe = load_probe(path)
    rows = [attrs for _, attrs in probe.rows]
    names = [q.name for q in probe.spec.queries]
    return infer_relevance(names, rows, attribute).masks(rows)


@torch.inference_mode()
def null_points(
    probes: Sequence[ProbeData], embeddings: Sequence[torch.Tensor], part: Part, ks: Sequence[int]
) -> dict[str, float]:
    """{maxskew@k: null} on a part: mean over bias probes of the shuffled-attribute null."""
    per_k: dict[int, list[float]] = {k: [] for k in ks}
    for probe, emb in zip(probes, embeddings, strict=True):
        if probe.kind != "bias":
            continue
        rows = probe.rows(part)
        scores = (probe.texts @ emb[rows].T).numpy()
        column = [probe.values[int(i)] for i in probe.targets[rows]]
        masks = _masks(probe.path, probe.attribute)[:, rows.numpy()]
        for k, value in shuffled_null_max_skew(scores, column, masks, ks).items():
            per_k[k].append(value)
    return {f"maxskew@{k}": float(np.mean(v)) for k, v in per_k.items() if v}
