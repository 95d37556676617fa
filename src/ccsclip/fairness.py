"""Skew@K and MaxSkew@K of a ranking (numpy only, shared by offline evaluation and the service).

Skew@K(a) = ln(share of attribute value a in the top K / share of a in the whole pool);
MaxSkew@K = max over values a. A ranking that ignores the attribute scores near 0 only as K grows:
at finite K sampling noise alone gives a positive MaxSkew, so always compare with a null:

- `random_ranking_mean`: a ranking that ignores the image (relevance too): `expected_max_skew`,
  the expected MaxSkew@K of K items drawn at random without replacement from the pool, exact
  (a sum over the multivariate hypergeometric law, `exact_expected_max_skew`) where that is
  cheap, else a seeded Monte Carlo with a standard error of at most 0.005. The service's live
  bias uses the same null per search (service/live_bias.py);
- `null_mean`: the same ranking with the attribute shuffled within each query's relevant set
  (`Relevance`): what a ranking with no attribute preference gets on this probe, at this K, with
  this model's relevance. MaxSkew minus it is the bias there is to remove.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
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
    attribute: Sequence[str], k: int, n_queries: int = 1, seed: int = 0, repeats: int = 200
) -> float:
    """Expected MaxSkew@k of a ranking that ignores the image (the mean over any number of
    queries has the same expectation): `expected_max_skew` of the pool's value counts. `seed`
    and `repeats` are kept for callers; the value is exact where cheap, else seeded."""
    del n_queries, seed, repeats
    _, counts = np.unique(np.asarray(attribute), return_counts=True)
    return expected_max_skew(tuple(int(n) for n in counts), k)


EXACT_BUDGET = 20_000_000  # multiply-adds of the exact sum; beyond it, Monte Carlo
MC_SEED = 0
MC_TARGET_SE = 0.005
MC_BATCH = 4096
MC_MAX_DRAWS = 1 << 18


def _check_counts(counts: Sequence[int], k: int) -> tuple[int, ...]:
    kept = tuple(int(n) for n in counts if int(n) > 0)
    if any(int(n) < 0 for n in counts) or not kept:
        raise InvalidInputError(f"value counts {list(counts)} must be >= 0 with one > 0")
    if not 1 <= k <= sum(kept):
        raise InvalidInputError(f"k={k} must be between 1 and the pool size {sum(kept)}")
    return kept


def exact_cost(counts: Sequence[int], k: int) -> int:
    """Multiply-adds `exact_expected_max_skew` needs: thresholds x values x (k+1)^2."""
    thresholds = sum(min(k, int(n)) for n in counts)
    return thresholds * len(counts) * (k + 1) ** 2


def exact_expected_max_skew(counts: Sequence[int], k: int) -> float:
    """E[MaxSkew@k] of k items drawn without replacement from a pool with these value counts.

    MaxSkew@k = ln(R * N / k) with R = max_v c_v / n_v (c_v: drawn items of value v; values not
    drawn never win). P(R <= r) = P(c_v <= floor(r n_v) for every v) is the coefficient of x^k
    in prod_v sum_{c <= floor(r n_v)} C(n_v, c) x^c over C(N, k) (multivariate hypergeometric),
    evaluated at every value r can take; x is rescaled so the coefficients stay in range.
    """
    kept = _check_counts(counts, k)
    total = sum(kept)
    c = np.arange(k + 1)
    log_c = np.log(np.maximum(c, 1))
    # C(N, k) / N^k, in logs; the weights below are scaled so that it becomes 1 (in range)
    log_norm = (
        math.lgamma(total + 1)
        - math.lgamma(k + 1)
        - math.lgamma(total - k + 1)
        - k * math.log(total)
    )
    weights = []
    for n in kept:  # C(n, c) / N^c / (C(N, k) / N^k)^(c / k) for c = 0..k (0 where c > n)
        steps = np.zeros(k + 1)
        ok = (c >= 1) & (c <= n)
        steps[ok] = np.log(n - c[ok] + 1.0) - log_c[ok] - math.log(total) - log_norm / k
        weights.append(np.where(c <= n, np.exp(np.cumsum(steps)), 0.0))
    # every value R can take, j / n (j = 1..min(k, n)), sorted; equal fractions kept once (by
    # cross-multiplication, exact: floats order distinct ones right while k * n < 2^50)
    num = np.concatenate([np.arange(1, min(k, n) + 1) for n in kept]).astype(np.int64)
    den = np.concatenate([np.full(min(k, n), n) for n in kept]).astype(np.int64)
    order = np.argsort(num / den, kind="stable")
    num, den = num[order], den[order]
    distinct = np.ones(len(num), dtype=bool)
    distinct[1:] = num[1:] * den[:-1] != num[:-1] * den[1:]
    num, den = num[distinct], den[distinct]
    bounds = (num[:, None] * np.asarray(kept, dtype=np.int64)[None, :]) // den[:, None]  # [T, V]
    acc = np.zeros((len(num), k + 1))
    acc[:, 0] = 1.0
    for v, w in enumerate(weights):  # truncated product of polynomials, all thresholds at once
        poly = np.where(c[None, :] <= bounds[:, v : v + 1], w[None, :], 0.0)  # [T, k+1]
        padded = np.concatenate([np.zeros((len(num), k)), acc], axis=1)
        windows = np.lib.stride_tricks.sliding_window_view(padded, k + 1, axis=1)
        acc = np.einsum("tmi,ti->tm", windows, poly[:, ::-1])  # sum_c poly[c] acc[m - c]
    cdf = np.minimum(acc[:, k], 1.0)
    cdf[-1] = 1.0  # R <= its largest possible value surely
    mass = np.diff(cdf, prepend=0.0)
    skew = np.log(num / den * total / k)
    return float(np.sum(mass * skew))


def simulated_expected_max_skew(
    counts: Sequence[int],
    k: int,
    seed: int = MC_SEED,
    target_se: float = MC_TARGET_SE,
    max_draws: int = MC_MAX_DRAWS,
) -> tuple[float, float, int]:
    """(mean, standard error, draws) of MaxSkew@k over seeded draws of k items without
    replacement, drawn in batches until the standard error is at most `target_se`."""
    n_v = np.asarray(_check_counts(counts, k), dtype=np.int64)
    total = int(n_v.sum())
    rng = np.random.default_rng(seed)
    values: list[np.ndarray] = []
    while True:
        drawn = rng.multivariate_hypergeometric(n_v, k, size=MC_BATCH)  # [B, V]
        values.append(np.log((drawn / n_v).max(axis=1) * total / k))
        pooled = np.concatenate(values)
        se = float(pooled.std(ddof=1) / math.sqrt(len(pooled)))
        if se <= target_se or len(pooled) >= max_draws:
            return float(pooled.mean()), se, len(pooled)


@functools.lru_cache(maxsize=1024)
def expected_max_skew(counts: tuple[int, ...], k: int) -> float:
    """The null of MaxSkew@k: its expectation for k items drawn at random without replacement
    from a pool with these value counts. Exact when `exact_cost` is within EXACT_BUDGET, else
    Monte Carlo (seed MC_SEED, standard error <= MC_TARGET_SE); cached by (counts, k), so it
    is computed once per gallery state and k. Zero counts are ignored; order does not matter."""
    key = tuple(sorted(int(n) for n in counts if int(n) > 0))
    if key != counts:
        return expected_max_skew(key, k)
    if exact_cost(key, k) <= EXACT_BUDGET:
        return exact_expected_max_skew(key, k)
    return simulated_expected_max_skew(key, k)[0]


@dataclass(frozen=True)
class Relevance:
    """Which images each query of a bias probe should retrieve.

    A query named `<value>:<text>` (the organism's `circle:a photo of a disc`) should retrieve the
    images whose metadata `column` holds `<value>`; with `column` None every image is relevant
    to every query (a FairFace-style probe of neutral queries over one pool).
    """

    column: str | None
    query_values: tuple[str, ...]

    def image_groups(self, rows: Sequence[Mapping[str, str]]) -> list[str]:
        """The group of each image ('' for all when every image is relevant)."""
        return ["" if self.column is None else attrs[self.column] for attrs in rows]

    def masks(self, rows: Sequence[Mapping[str, str]]) -> np.ndarray:
        """[Q, N] booleans: image n is relevant to query q."""
        groups = np.asarray(self.image_groups(rows))
        return np.stack([groups == value for value in self.query_values])

    def to_dict(self) -> dict[str, Any]:
        how = (
            "every image"
            if self.column is None
            else f"images whose {self.column!r} is the query name's prefix"
        )
        return {"column": self.column, "relevant": how}


def _prefix(name: str) -> str | None:
    return name.split(":", 1)[0] if ":" in name else None


def infer_relevance(
    query_names: Sequence[str],
    rows: Sequence[Mapping[str, str]],
    attribute: str,
    column: str | None = None,
) -> Relevance:
    """The relevant sets of a probe's queries (see `Relevance`), checked: every query has one.

    `column` None infers it: the first metadata column (not the attribute) that holds every query
    name's `<value>:` prefix; if there is none, every image is relevant. `column="all"` forces
    every image; a named column must hold every query's prefix.
    """
    columns = [c for c in (rows[0] if rows else {}) if c != attribute]
    prefixes = [_prefix(name) for name in query_names]
    if column == "all":
        return Relevance(None, tuple("" for _ in query_names))
    if column is None:
        for candidate in columns:
            values = {attrs[candidate] for attrs in rows}
            if all(p is not None and p in values for p in prefixes):
                return Relevance(candidate, tuple(prefixes))  # type: ignore[arg-type]
        return Relevance(None, tuple("" for _ in query_names))
    if column == attribute or column not in columns:
        raise InvalidInputError(
            f"relevance column {column!r} is not a metadata column other than the attribute "
            f"{attribute!r}: choose one of {', '.join(columns) or '(none)'} or 'all'"
        )
    values = {attrs[column] for attrs in rows}
    for name, prefix in zip(query_names, prefixes, strict=True):
        if prefix is None or prefix not in values:
            raise InvalidInputError(
                f"query {name!r} has no relevant images: no image has {column}="
                f"{prefix!r} (name queries '<{column} value>:<text>', or use relevance 'all')"
            )
    return Relevance(column, tuple(prefixes))  # type: ignore[arg-type]


def shuffled_null_max_skew(
    scores: np.ndarray,
    attribute: Sequence[str],
    masks: np.ndarray,
    ks: Sequence[int],
    repeats: int = 20,
    seed: int = 0,
) -> dict[int, float]:
    """{k: mean over queries of the expected MaxSkew@k} with the attribute shuffled within each
    query's relevant set (masks [Q, N]) and the ranking `scores` [Q, N] kept: the null of a
    ranking with the same relevance and no attribute preference. Seeded: the same every run."""
    scores = np.asarray(scores)
    values, codes = np.unique(np.asarray(attribute), return_inverse=True)
    n_values, n = len(values), len(codes)
    pool_share = np.bincount(codes, minlength=n_values) / n
    rng = np.random.default_rng(seed)
    per_k: dict[int, list[float]] = {k: [] for k in ks}
    kmax = max(ks)
    if not 1 <= min(ks) <= kmax <= n:
        raise InvalidInputError(f"K={list(ks)} must be between 1 and the pool size {n}")
    for row, mask in zip(scores, masks, strict=True):
        relevant = np.flatnonzero(mask)
        if relevant.size == 0:
            raise InvalidInputError("a query has no relevant images: its null is undefined")
        shuffled = np.tile(codes, (repeats, 1))
        order = np.argsort(rng.random((repeats, relevant.size)), axis=1)
        shuffled[:, relevant] = codes[relevant][order]
        top = shuffled[:, np.argsort(-row, kind="stable")[:kmax]]  # [R, kmax]
        for k in ks:
            counts = np.stack([(top[:, :k] == v).sum(1) for v in range(n_values)], 1)
            with np.errstate(divide="ignore"):
                skew = np.log(counts / k / (pool_share + _EPS))
            per_k[k].append(float(np.where(counts > 0, skew, -np.inf).max(1).mean()))
    return {k: float(np.mean(v)) for k, v in per_k.items()}


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
    rows = [attrs for _, attrs in probe.rows]
    for attribute in probe.spec.attributes:
        column = [attrs[attribute] for _, attrs in probe.rows]
        relevance = infer_relevance(names, rows, attribute)
        shuffled = shuffled_null_max_skew(scores, column, relevance.masks(rows), probe.spec.k)
        for k in probe.spec.k:
            per_query = [max_skew_at_k(row, column, k) for row in scores]
            result["maxskew"][f"{attribute}@{k}"] = {
                "mean": float(np.mean(per_query)),
                "sum": float(np.sum(per_query)),
                "per_query": dict(zip(names, per_query, strict=True)),
                "random_ranking_mean": nulls[f"{attribute}@{k}"],
                "null_mean": shuffled[k],
                "relevance": relevance.column,
            }
    return result
