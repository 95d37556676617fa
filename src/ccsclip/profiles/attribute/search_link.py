"""What the search takes from attribution: how much of the bias heads can reach, candidates, and
the null of MaxSkew beside every figure.

`reach` attributes the bias probes' gaps on the search part (never the validation part) and says
plainly when most of them are carried by MLPs, which head pruning cannot remove; `--candidates
attribution:N` takes the N heads with the largest shares there. `null_points` is the MaxSkew a
ranking with the same relevance and no attribute preference gets on the same images.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np
import torch

from ccsclip.errors import InvalidInputError
from ccsclip.fairness import infer_relevance, shuffled_null_max_skew
from ccsclip.models import LoadedModel
from ccsclip.probeset import load_probe
from ccsclip.profiles.attribute.run import AttributionOptions, attribute
from ccsclip.profiles.search.data import Part, ProbeData

PREFIX = "attribution:"
_HEADS_REACH = 0.5  # heads carrying less than half of the gaps: pruning cannot remove most


def attribution_request(candidates: Sequence[str]) -> int | None:
    """N of `--candidates attribution:N`, None for explicit heads; refuses a malformed N."""
    if len(candidates) != 1 or not candidates[0].startswith(PREFIX):
        if any(c.startswith(PREFIX) for c in candidates):
            raise InvalidInputError("--candidates attribution:N cannot be mixed with head names")
        return None
    text = candidates[0].removeprefix(PREFIX)
    if not text.isdigit() or int(text) < 1:
        raise InvalidInputError(f"--candidates {candidates[0]!r}: N must be a positive integer")
    return int(text)


def reach(loaded: LoadedModel, options: Any) -> dict[str, Any]:
    """Shares by component type of the gaps on the search part of every bias probe (mean over
    probes), the heads with the largest shares, and a one-line verdict."""
    results = []
    for directory in options.bias_probes:
        results.append(
            attribute(
                loaded,
                AttributionOptions(
                    bias_probe=directory,
                    attribute=options.attribute,
                    means=options.means if options.mode == "mean" else None,
                    part="search",
                    split=options.split,
                    replicates=options.replicates,
                    seed=options.seed,
                    batch_size=options.batch_size,
                ),
            )
        )
    by_kind = {
        kind: {
            key: float(np.mean([r["by_kind"][kind][key] for r in results]))
            for key in ("value", "low", "high")
        }
        for kind in results[0]["by_kind"]
    }
    names = [c["name"] for c in results[0]["components"]]
    kinds = [c["kind"] for c in results[0]["components"]]
    components = [
        {
            "name": name,
            "kind": kind,
            "share": {
                key: float(np.mean([r["components"][i]["share"][key] for r in results]))
                for key in ("value", "low", "high")
            },
            "favours": results[0]["components"][i]["favours"],
        }
        for i, (name, kind) in enumerate(zip(names, kinds, strict=True))
    ]
    components.sort(key=lambda c: -c["share"]["value"])
    heads = [c["name"] for c in components if c["kind"] == "head"]
    head, mlp = by_kind["head"], by_kind["mlp"]
    if head["value"] < _HEADS_REACH and mlp["value"] > head["value"]:
        verdict = (
            f"head pruning cannot remove most of this bias: MLPs carry {_fmt(mlp)} of the "
            f"{options.attribute} gaps and heads only {_fmt(head)} (search part)"
        )
    else:
        verdict = (
            f"heads carry {_fmt(head)} of the {options.attribute} gaps and MLPs {_fmt(mlp)} "
            "(search part): head pruning can reach the heads' part"
        )
    return {
        "part": "search",
        "by_kind": by_kind,
        "top_components": components[:10],
        "head_order": heads,
        "verdict": verdict,
        "heads_reach": head["value"] >= _HEADS_REACH,
    }


def _fmt(stats: dict[str, float]) -> str:
    return f"{stats['value']:.2f} [{stats['low']:.2f}, {stats['high']:.2f}]"


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
