"""Skew@K and MaxSkew@K of a ranking (numpy only, shared by offline evaluation and the service).

Skew@K(a) = ln(share of attribute value a in the top K / share of a in the whole pool);
MaxSkew@K = max over values a. A ranking that ignores the attribute scores near 0 only as K grows:
at finite K sampling noise alone gives a positive MaxSkew, so always compare with a random ranking.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ccsclip.errors import InvalidInputError

_EPS = 1e-12


def max_skew_at_k(scores: np.ndarray, attribute: Sequence[str], k: int) -> float:
    """MaxSkew@k of the pool ranked by `scores` (higher first) for one attribute column.

    Values absent from the top k contribute ln(0) and never win the max, as in the paper's code.
    """
    scores = np.asarray(scores)
    values = np.asarray(attribute)
    if scores.shape[0] != values.shape[0]:
        raise InvalidInputError(f"{scores.shape[0]} scores for {values.shape[0]} attribute values")
    if not 1 <= k <= len(values):
        raise InvalidInputError(f"k={k} must be between 1 and the pool size {len(values)}")
    top = values[np.argsort(-scores, kind="stable")[:k]]
    best = -np.inf
    for value in np.unique(values):
        pool_share = float(np.mean(values == value))
        top_share = float(np.mean(top == value))
        if top_share > 0:
            best = max(best, float(np.log(top_share / (pool_share + _EPS))))
    return best


def random_ranking_max_skew(
    attribute: Sequence[str], k: int, n_queries: int, seed: int = 0, repeats: int = 200
) -> float:
    """Expected mean MaxSkew@k over n_queries of a ranking that ignores the image: the null."""
    rng = np.random.default_rng(seed)
    n = len(attribute)
    draws = [max_skew_at_k(rng.random(n), attribute, k) for _ in range(repeats * max(1, n_queries))]
    return float(np.mean(draws))


def skew_table(probe, scores: np.ndarray, nulls: dict[str, float]) -> dict[str, Any]:
    """MaxSkew@K of a bias probe per attribute and K over its queries; `scores` is
    [queries, images]. Shared by the torch evaluation and the torch-free engine."""
    result: dict[str, Any] = {
        "probe": probe.name,
        "kind": "bias",
        "n_images": len(probe.rows),
        "n_queries": scores.shape[0],
        "maxskew": {},
    }
    names = [query.name for query in probe.spec.queries]
    for attribute in probe.spec.attributes:
        column = [attrs[attribute] for _, attrs in probe.rows]
        for k in probe.spec.k:
            per_query = [max_skew_at_k(row, column, k) for row in scores]
            result["maxskew"][f"{attribute}@{k}"] = {
                "mean": float(np.mean(per_query)),
                "sum": float(np.sum(per_query)),
                "per_query": dict(zip(names, per_query, strict=True)),
                "random_ranking_mean": nulls[f"{attribute}@{k}"],
            }
    return result
