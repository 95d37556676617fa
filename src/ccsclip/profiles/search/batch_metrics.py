"""Zero-shot accuracy and MaxSkew@K for many embeddings sets at once (torch, vectorised).

The search scores every candidate head in one call, and the bootstrap scores hundreds of
resamples, so these take leading batch dimensions. They compute exactly what
`ccsclip.fairness.max_skew_at_k` and top-1 accuracy compute (a test checks it): MaxSkew@K is
max over attribute values a of ln(share of a in the top K / share of a in the pool), values
absent from the top K never win.
"""

from __future__ import annotations

import torch


def accuracy(embeddings: torch.Tensor, texts: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """embeddings [..., N, E], texts [C, E], labels [N] -> top-1 accuracy [...]."""
    predictions = (embeddings @ texts.T).argmax(dim=-1)
    return (predictions == labels).float().mean(dim=-1)


def correct(embeddings: torch.Tensor, texts: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """[..., N] booleans: is each image's top-1 class its label."""
    return (embeddings @ texts.T).argmax(dim=-1) == labels


def max_skew(scores: torch.Tensor, codes: torch.Tensor, n_values: int, k: int) -> torch.Tensor:
    """scores [..., Q, N] (query x image), codes [..., N] (attribute value index per image)
    -> MaxSkew@k per query [..., Q]. Pool shares come from `codes` (a resample has its own)."""
    top = scores.topk(k, dim=-1).indices  # [..., Q, k]
    expanded = codes.unsqueeze(-2).expand(*top.shape[:-1], codes.shape[-1])
    top_codes = expanded.gather(-1, top)
    counts = torch.zeros(*top.shape[:-1], n_values, device=scores.device)
    counts.scatter_add_(-1, top_codes, torch.ones_like(top_codes, dtype=counts.dtype))
    pool = torch.zeros(*codes.shape[:-1], n_values, device=scores.device)
    pool.scatter_add_(-1, codes, torch.ones_like(codes, dtype=pool.dtype))
    pool_share = (pool / codes.shape[-1]).unsqueeze(-2)
    skew = torch.log((counts / k) / (pool_share + 1e-12))
    return skew.masked_fill(counts == 0, float("-inf")).amax(dim=-1)
