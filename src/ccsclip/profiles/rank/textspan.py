"""TextSpan from moments (docs/design.md §4): descriptions that span a head's direct effects.

Per head, only n, s = sum c and S = sum c c^T are needed:
1. V_r = top-r eigenvectors of S; texts are projected onto their span.
2. C = S/n - (s/n)(s/n)^T, the centred covariance.
3. m times: score every projected text t by sqrt(t^T C t) (the std of the head's outputs along
   t, unnormalised as in TextSpan), keep the best t*, record its share of trace(C) at the start,
   then remove t* from data and texts: C <- P C P, T' <- T' P, P = I - t* t*^T / |t*|^2.

All of it runs in the r-dimensional basis of V_r (texts and directions never leave that span), so
the cost per head is O(M r^2) instead of O(M E^2). Equal, up to rounding, to TextSpan's per-image
algorithm (std over images of projections, remove the direction from data, orthogonalise texts).

Steps 1-2 depend on the head only (`HeadSpace`, computed for all heads with one batched `eigh`);
step 3 on the texts' coordinates in the basis. A head rotated by an orthogonal q (the null's
random heads: s -> q s, S -> q S q^T) has the basis V_r q^T and the same C in it, so its TextSpan is
the head's own with coordinates T q V_r^T: no eigendecomposition per null sample.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ccsclip.errors import InvalidInputError


@dataclass(frozen=True)
class SpanPick:
    index: int  # row of the description in the pool
    std: float  # std of the head's outputs along the (projected, orthogonalised) text at pick time
    share: float  # variance removed by this direction / trace(C) at the start


@dataclass(frozen=True)
class HeadSpace:
    """One head in the basis of its top-r eigenvectors: all TextSpan needs besides the texts."""

    basis: torch.Tensor  # [r, E] float64, rows = eigenvectors of S, largest eigenvalue first
    cov: torch.Tensor  # [r, r] float64, the centred covariance C in that basis


def _top_eigenvectors(second_moment: torch.Tensor, rank: int) -> torch.Tensor:
    """[..., r, E]: eigenvectors of the symmetric S with the largest eigenvalues."""
    _, vectors = torch.linalg.eigh(second_moment)
    return vectors[..., -rank:].flip(-1).transpose(-1, -2)


def head_spaces(n: int, s: torch.Tensor, S: torch.Tensor, rank: int = 80) -> list[HeadSpace]:
    """`HeadSpace` of K heads at once: s [K, E], S [K, E, E] (one batched eigh)."""
    if n < 2:
        raise InvalidInputError(f"TextSpan needs statistics of at least 2 images, got {n}")
    S = S.to(torch.float64)
    basis = _top_eigenvectors(S, min(rank, S.shape[-1]))  # [K, r, E]
    mean = s.to(torch.float64) / n
    centred = S / n - mean.unsqueeze(-1) * mean.unsqueeze(-2)
    cov = basis @ centred @ basis.transpose(-1, -2)  # [K, r, r]
    return [HeadSpace(b, c) for b, c in zip(basis, cov, strict=True)]


def _check_texts(space: HeadSpace, texts: torch.Tensor, m: int) -> None:
    if texts.shape[1] != space.basis.shape[1]:
        raise InvalidInputError(
            f"description embeddings have dimension {texts.shape[1]}, the head's contributions "
            f"{space.basis.shape[1]}: embed the pool with the same model"
        )
    if not 1 <= m <= texts.shape[0]:
        raise InvalidInputError(f"m={m} must be between 1 and the pool size {texts.shape[0]}")


def span_in_space(
    space: HeadSpace, texts: torch.Tensor, m: int = 5, rotation: torch.Tensor | None = None
) -> list[SpanPick]:
    """Top-m descriptions of one head; `rotation` q: of the head rotated by q (see module doc).

    `texts` [M, E] are unit-norm description embeddings (float64 saves a conversion per call).
    Returns min(m, rank) picks at most: once r directions are removed the span is used up.
    """
    _check_texts(space, texts, m)
    texts = texts.to(torch.float64)
    basis_t = space.basis.T if rotation is None else rotation.to(torch.float64) @ space.basis.T
    proj = texts @ basis_t  # [M, r]: coordinates of T' in the basis
    cov = space.cov
    total = float(torch.trace(cov)) or 1.0
    picks: list[SpanPick] = []
    for _ in range(m):
        variance = ((proj @ cov) * proj).sum(-1).clamp_min(0)
        best = int(variance.argmax())
        direction = proj[best]
        norm2 = float(direction @ direction)
        if norm2 <= 1e-30:
            break
        picks.append(
            SpanPick(best, float(variance[best].sqrt()), float(variance[best]) / norm2 / total)
        )
        unit = direction / norm2**0.5
        projector = torch.eye(len(unit), dtype=torch.float64) - torch.outer(unit, unit)
        cov = projector @ cov @ projector
        proj = proj @ projector
    return picks


def textspan_from_moments(
    n: int,
    s: torch.Tensor,
    S: torch.Tensor,
    texts: torch.Tensor,
    m: int = 5,
    rank: int = 80,
) -> list[SpanPick]:
    """Top-m descriptions of one head. `texts` [M, E] are unit-norm description embeddings.

    Returns min(m, rank) picks at most: once r directions are removed the span is used up.
    """
    if texts.shape[1] != s.shape[0]:
        raise InvalidInputError(
            f"description embeddings have dimension {texts.shape[1]}, the head's contributions "
            f"{s.shape[0]}: embed the pool with the same model"
        )
    (space,) = head_spaces(n, s.unsqueeze(0), S.unsqueeze(0), rank)
    return span_in_space(space, texts, m)
