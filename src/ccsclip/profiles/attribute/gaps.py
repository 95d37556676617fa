"""Gaps and shares: how much of each query's attribute gap each component carries.

For query q with relevant set R_q (the images it should retrieve) and attribute value a,

    gap(q, a)   = mean_{x in R_q, attr(x) = a} s(q, x) - mean_{x in R_q} s(q, x)
    gap_c(q, a) = the same for s_c(q, x) = text_q . part_c(x)

Scores are linear in the parts, so sum_c gap_c = gap exactly. A component's share is

    share_c = sum_{q,a} gap_c(q, a) gap(q, a) / sum_{q,a} gap(q, a)^2

(the projection of its gaps on the total gaps); shares sum to one over all components. Pairs
(q, a) with no relevant image of value a are left out. Weights on images and queries give the
bootstrap: a resample is a vector of multiplicities, and cell means become weighted means.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ccsclip.errors import InvalidInputError


@dataclass(frozen=True)
class Cells:
    """Image cells (group x attribute value) and each query's group."""

    image_group: torch.Tensor  # [N] group index of each image
    codes: torch.Tensor  # [N] attribute value index
    query_group: torch.Tensor  # [Q] group index of each query
    n_groups: int
    n_values: int

    @property
    def cell(self) -> torch.Tensor:
        return self.image_group * self.n_values + self.codes


def make_cells(
    image_groups: Sequence[str],
    values: Sequence[str],
    query_groups: Sequence[str],
    query_names: Sequence[str],
) -> tuple[Cells, tuple[str, ...]]:
    """Index groups and values; refuse a query whose group holds no image. Returns the values."""
    groups = sorted(set(image_groups))
    lookup = {g: i for i, g in enumerate(groups)}
    missing = [n for n, g in zip(query_names, query_groups, strict=True) if g not in lookup]
    if missing:
        raise InvalidInputError(
            f"{len(missing)} queries have no relevant images among the attributed images "
            f"(first: {missing[0]!r}): use a larger probe or part, or relevance 'all'"
        )
    names = tuple(sorted(set(values)))
    codes = {v: i for i, v in enumerate(names)}
    cells = Cells(
        image_group=torch.tensor([lookup[g] for g in image_groups]),
        codes=torch.tensor([codes[v] for v in values]),
        query_group=torch.tensor([lookup[g] for g in query_groups]),
        n_groups=len(groups),
        n_values=len(names),
    )
    return cells, names


def component_gaps(
    terms: torch.Tensor, texts: torch.Tensor, cells: Cells, weights: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """gap_c(q, a) [B, Q, A, C] and the valid mask [B, Q, A] for image weights [B, N]."""
    n, c, e = terms.shape
    flat = terms.reshape(n, c * e)
    n_cells = cells.n_groups * cells.n_values
    b = weights.shape[0]
    sums = flat.new_zeros(b, n_cells, c * e)
    counts = flat.new_zeros(b, n_cells)
    cell = cells.cell
    for k in range(n_cells):
        rows = torch.nonzero(cell == k).flatten()
        if rows.numel():
            w = weights[:, rows].to(flat)
            sums[:, k] = w @ flat[rows]
            counts[:, k] = w.sum(dim=1)
    sums = sums.view(b, cells.n_groups, cells.n_values, c, e)
    counts = counts.view(b, cells.n_groups, cells.n_values)
    group_mean = sums.sum(2) / counts.sum(2).clamp(min=1e-12)[..., None, None]  # [B, G, C, E]
    valid = counts > 0
    cell_mean = sums / counts.clamp(min=1e-12)[..., None, None]
    diff = (cell_mean - group_mean.unsqueeze(2)) * valid[..., None, None]  # [B, G, A, C, E]
    out = flat.new_zeros(b, texts.shape[0], cells.n_values, c)
    for g in range(cells.n_groups):
        queries = torch.nonzero(cells.query_group == g).flatten()
        if queries.numel():
            out[:, queries] = torch.einsum("bace,qe->bqac", diff[:, g], texts[queries].to(flat))
    mask = valid[:, cells.query_group]  # [B, Q, A]
    return out, mask


def shares(gaps: torch.Tensor, mask: torch.Tensor, query_weights: torch.Tensor) -> torch.Tensor:
    """share_c [B, C] from gaps [B, Q, A, C], mask [B, Q, A] and query weights [B, Q]."""
    total = gaps.sum(-1)  # [B, Q, A]
    w = query_weights.to(gaps).unsqueeze(-1) * mask  # [B, Q, A]
    numerator = torch.einsum("bqa,bqac->bc", w * total, gaps)
    denominator = (w * total**2).sum(dim=(1, 2))
    return numerator / denominator.clamp(min=1e-300).unsqueeze(-1)


def point_estimate(terms: torch.Tensor, texts: torch.Tensor, cells: Cells):
    """(gaps [Q, A, C], mask [Q, A], shares [C]) with every image and query once."""
    ones = torch.ones(1, terms.shape[0], dtype=terms.dtype)
    gaps, mask = component_gaps(terms, texts, cells, ones)
    share = shares(gaps, mask, torch.ones(1, texts.shape[0], dtype=terms.dtype))
    return gaps[0], mask[0], share[0]


def bootstrap_shares(
    terms: torch.Tensor,
    texts: torch.Tensor,
    cells: Cells,
    replicates: int,
    seed: int,
    chunk: int = 25,
) -> torch.Tensor:
    """[replicates, C] shares over resampled images and queries (seeded, with replacement)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 18]))
    n, q = terms.shape[0], texts.shape[0]
    out = []
    for start in range(0, replicates, chunk):
        b = min(chunk, replicates - start)
        images = torch.from_numpy(rng.integers(0, n, (b, n)))
        queries = torch.from_numpy(rng.integers(0, q, (b, q)))
        w = torch.zeros(b, n, dtype=terms.dtype).scatter_add_(
            1, images, torch.ones(b, n, dtype=terms.dtype)
        )
        v = torch.zeros(b, q, dtype=terms.dtype).scatter_add_(
            1, queries, torch.ones(b, q, dtype=terms.dtype)
        )
        gaps, mask = component_gaps(terms, texts, cells, w)
        out.append(shares(gaps, mask, v))
    return torch.cat(out)
