"""TextSpan from moments (design §4): the descriptions that span a head's direct contributions.

Per head, only n, s = sum c and S = sum c c^T are needed:
1. V_r = top-r eigenvectors of S; texts are projected onto their span.
2. C = S/n - (s/n)(s/n)^T, the centred covariance.
3. m times: score every projected text t by sqrt(t^T C t) (the std of the head's outputs along
   t, unnormalised as in TextSpan), keep the best t*, record its share of trace(C) at the start,
   then remove t* from data and texts: C <- P C P, T' <- T' P, P = I - t* t*^T / |t*|^2.

All of it runs in the r-dimensional basis of V_r (texts and directions never leave that span), so
the cost per head is O(M r^2) instead of O(M E^2). Equal, up to rounding, to TextSpan's per-image
algorithm (std over images of projections, remove the direction from data, orthogonalise texts).
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


def _top_eigenvectors(second_moment: torch.Tensor, rank: int) -> torch.Tensor:
    """[r, E]: eigenvectors of the symmetric S with the largest eigenvalues."""
    _, vectors = torch.linalg.eigh(second_moment)
    return vectors[:, -rank:].flip(-1).T


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
    if n < 2:
        raise InvalidInputError(f"TextSpan needs statistics of at least 2 images, got {n}")
    if texts.shape[1] != s.shape[0]:
        raise InvalidInputError(
            f"description embeddings have dimension {texts.shape[1]}, the head's contributions "
            f"{s.shape[0]}: embed the pool with the same model"
        )
    if not 1 <= m <= texts.shape[0]:
        raise InvalidInputError(f"m={m} must be between 1 and the pool size {texts.shape[0]}")
    S = S.to(torch.float64)
    basis = _top_eigenvectors(S, min(rank, S.shape[0]))  # [r, E]
    mean = s.to(torch.float64) / n
    cov = basis @ (S / n - torch.outer(mean, mean)) @ basis.T  # [r, r]
    proj = texts.to(torch.float64) @ basis.T  # [M, r]: coordinates of T' in the basis
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
