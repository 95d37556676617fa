"""CCS per head (docs/design.md §5) and its null distribution.

For each analysed head: TextSpan's top-m descriptions, a judge's concept label and per-description
consistency, CCS = number consistent. A CCS means little without its null: with few concepts in a
pool a random direction already scores 2-3. The null runs the same TextSpan + judge on random
heads with the same spectrum (the real heads' moments rotated by random orthogonal matrices).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from ccsclip.headref import Head, head_label
from ccsclip.heads.stats import HeadMoments
from ccsclip.heads.variance import head_variances
from ccsclip.profiles.rank.judges.base import Description
from ccsclip.profiles.rank.pool import DescriptionPool
from ccsclip.profiles.rank.textspan import HeadSpace, SpanPick, head_spaces, span_in_space


@dataclass(frozen=True)
class HeadScore:
    layer: int
    head: int
    picks: tuple[SpanPick, ...]
    concept: str
    consistent: tuple[bool, ...]
    variance_share: float

    @property
    def ccs(self) -> int:
        return sum(self.consistent)

    @property
    def name(self) -> str:
        return head_label(self.layer, self.head)


def _descriptions(pool: DescriptionPool, picks: Sequence[SpanPick]) -> list[Description]:
    tags = pool.tags
    return [Description(pool.descriptions[p.index], tags[p.index] if tags else None) for p in picks]


Spaces = dict[Head, HeadSpace]


def _heads(moments: HeadMoments) -> list[Head]:
    return [Head(layer, head) for layer in moments.layers for head in range(moments.s.shape[1])]


def moment_spaces(moments: HeadMoments, rank: int, chunk: int = 12) -> Spaces:
    """Every analysed head's TextSpan basis and covariance (batched eigendecompositions,
    `chunk` heads at a time: ViT-B's 48 heads at once would hold 300 MB of E x E temporaries)."""
    e = moments.s.shape[-1]
    s, S = moments.s.reshape(-1, e), moments.S.reshape(-1, e, e)
    spaces = []
    for start in range(0, s.shape[0], chunk):
        end = start + chunk
        spaces += head_spaces(moments.n, s[start:end], S[start:end], rank)
    return dict(zip(_heads(moments), spaces, strict=True))


def span_heads(
    moments: HeadMoments,
    texts: torch.Tensor,
    m: int,
    rank: int,
    progress: bool = True,
    spaces: Spaces | None = None,
) -> dict[Head, list[SpanPick]]:
    """TextSpan for every analysed head (`spaces` from `moment_spaces`, computed if None)."""
    spaces = spaces or moment_spaces(moments, rank)
    texts = texts.to(torch.float64)
    spans = {}
    for key in tqdm(_heads(moments), desc="textspan", unit="head", disable=not progress):
        spans[key] = span_in_space(spaces[key], texts, m)
    return spans


def score_heads(
    moments: HeadMoments,
    pool: DescriptionPool,
    texts: torch.Tensor,
    judge,
    m: int = 5,
    rank: int = 80,
    progress: bool = True,
    spaces: Spaces | None = None,
) -> list[HeadScore]:
    """CCS of every analysed head, in (layer, head) order."""
    spans = span_heads(moments, texts, m, rank, progress, spaces)
    shares = {(row.layer, row.head): row.share for row in head_variances(moments)}
    keys = sorted(spans)
    verdicts = judge.judge_many([_descriptions(pool, spans[key]) for key in keys])
    return [
        HeadScore(
            layer,
            head,
            tuple(spans[(layer, head)]),
            v.concept,
            tuple(v.consistent),
            shares[(layer, head)],
        )
        for (layer, head), v in zip(keys, verdicts, strict=True)
    ]


def _random_rotation(dim: int, generator: torch.Generator) -> torch.Tensor:
    q, r = torch.linalg.qr(torch.randn(dim, dim, generator=generator, dtype=torch.float64))
    return q * torch.sign(torch.diagonal(r))  # Haar-distributed


def null_ccs(
    moments: HeadMoments,
    pool: DescriptionPool,
    texts: torch.Tensor,
    judge,
    samples: int = 100,
    m: int = 5,
    rank: int = 80,
    seed: int = 0,
    progress: bool = True,
    spaces: Spaces | None = None,
) -> list[int]:
    """CCS of `samples` random heads: real heads' moments under random rotations q.

    TextSpan of the rotated moments (q s, q S q^T) is computed from the head's own eigenbasis
    with the texts rotated by q (`span_in_space`): the same picks, without an eigendecomposition
    per sample.
    """
    generator = torch.Generator().manual_seed(seed)
    heads = _heads(moments)
    spaces = spaces or moment_spaces(moments, rank)
    texts = texts.to(torch.float64)
    descriptions = []
    for i in tqdm(range(samples), desc="null", unit="head", disable=not progress):
        q = _random_rotation(moments.s.shape[-1], generator)
        picks = span_in_space(spaces[heads[i % len(heads)]], texts, m, rotation=q)
        descriptions.append(_descriptions(pool, picks))
    return [verdict.ccs for verdict in judge.judge_many(descriptions)]


def null_summary(null: Sequence[int], m: int) -> dict:
    counts = np.bincount(np.asarray(null, dtype=int), minlength=m + 1)
    return {
        "samples": len(null),
        "histogram": counts.tolist(),
        "mean": float(np.mean(null)) if null else None,
        "std": float(np.std(null)) if null else None,
    }


def p_value(observed: int, null: Sequence[int]) -> float:
    """P(null CCS >= observed), with the +1 correction so it is never 0."""
    null = np.asarray(null)
    return float((np.sum(null >= observed) + 1) / (len(null) + 1))
