"""Rank heads by how much of the embedding's variance their direct effects carry."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ccsclip.headref import head_label
from ccsclip.heads.stats import HeadMoments


@dataclass(frozen=True)
class HeadVariance:
    layer: int
    head: int
    variance: float  # trace of the covariance of the head's direct contribution
    share: float  # variance / sum of variances of all analysed heads
    mean_norm: float  # norm of the head's mean contribution

    @property
    def name(self) -> str:
        return head_label(self.layer, self.head)


def head_variances(moments: HeadMoments) -> list[HeadVariance]:
    """Every analysed head, largest variance first."""
    n = moments.n
    mean = moments.s / n  # [La, H, E]
    second = torch.diagonal(moments.S, dim1=-2, dim2=-1).sum(-1) / n  # [La, H]
    variance = (second - (mean * mean).sum(-1)).clamp_min(0)
    total = float(variance.sum()) or 1.0
    rows = [
        HeadVariance(
            layer,
            head,
            float(variance[i, head]),
            float(variance[i, head]) / total,
            float(mean[i, head].norm()),
        )
        for i, layer in enumerate(moments.layers)
        for head in range(variance.shape[1])
    ]
    return sorted(rows, key=lambda row: row.variance, reverse=True)
