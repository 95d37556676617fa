"""Per-image direct-effect cache in residual space: the first-order estimate of an ablation.

With r the final residual at the class token and c_lh the direct term of head (l, h)
(docs/design.md §3: ls_1 * z[l,h,CLS] @ W_O[:, h]^T), mean-ablating a set A changes the direct
path to

    r' = r - sum_{(l,h) in A} (c_lh - mu_lh)

with mu_lh the same term of the head's mean output at the class token (zero in `zero` mode): the
constant the exporter folds (§6). The embedding is ln_post(r') @ proj, re-normalised, with
ln_post's mean and scale recomputed from r' (which is why the terms stay in residual space D, not
in embedding space E). The cache holds r and every candidate's delta c_lh - mu_lh per image, so
scoring a head set costs a few matrix operations. What it leaves out are the indirect effects of
a head through later layers; the test-only `tests/direct_only.py` computes exactly what it
models.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ccsclip.errors import InvalidInputError
from ccsclip.headref import Head
from ccsclip.heads.walk import BlockStep, ResidualWalk


@dataclass
class DirectCache:
    """residual [N, D]; deltas [N, H, D] for `heads` (c_lh - mu_lh); ln_post and proj."""

    heads: tuple[Head, ...]
    residual: torch.Tensor
    deltas: torch.Tensor
    ln_weight: torch.Tensor
    ln_bias: torch.Tensor
    ln_eps: float
    proj: torch.Tensor

    def index(self, heads: Sequence[Head]) -> list[int]:
        lookup = {head: i for i, head in enumerate(self.heads)}
        missing = [Head(*h).label for h in heads if h not in lookup]
        if missing:
            raise InvalidInputError(f"heads {', '.join(missing)} are not among the cached heads")
        return [lookup[h] for h in heads]

    def removed(self, heads: Sequence[Head]) -> torch.Tensor:
        """sum of the deltas of `heads`: [N, D] (zero for no heads)."""
        if not heads:
            return torch.zeros_like(self.residual)
        return self.deltas[:, self.index(heads)].sum(dim=1)

    def embed(self, residual: torch.Tensor) -> torch.Tensor:
        """Unit-norm embeddings of residuals [..., D] -> [..., E] (ln_post, proj, normalise)."""
        normed = F.layer_norm(
            residual, residual.shape[-1:], self.ln_weight, self.ln_bias, self.ln_eps
        )
        return F.normalize(normed @ self.proj, dim=-1)

    def estimate(self, heads: Sequence[Head]) -> torch.Tensor:
        """Estimated embeddings [N, E] with `heads` ablated."""
        return self.embed(self.residual - self.removed(heads))

    def estimate_each(
        self, base: torch.Tensor, candidates: Sequence[int], rows: torch.Tensor | None = None
    ) -> torch.Tensor:
        """[len(candidates), N', E]: `base` (the removed sum [N, D] of a head set) plus each
        candidate (an index into `heads`) removed too; `rows` restricts to some images."""
        residual, deltas = self.residual, self.deltas
        if rows is not None:
            residual, deltas, base = residual[rows], deltas[rows], base[rows]
        current = residual - base
        stacked = current.unsqueeze(0) - deltas[:, list(candidates)].transpose(0, 1)
        return self.embed(stacked)

    @property
    def nbytes(self) -> int:
        return self.residual.nbytes + self.deltas.nbytes


def _cls_means(step: BlockStep, means: torch.Tensor | None) -> torch.Tensor:
    """mu_lh for every head of a layer at the class token, in residual space [H, D]."""
    weight = step.attn.out_proj.weight  # [D, H*d]
    if means is None:
        return weight.new_zeros(step.attn.num_heads, weight.shape[0])
    return step.head_terms(means[step.layer, 0].to(weight))  # means [H, d] at the class token


@torch.inference_mode()
def _batch(
    visual: nn.Module, images: torch.Tensor, heads: Sequence[Head], means: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """One forward pass over a batch: final class-token residual and the candidates' deltas."""
    wanted: dict[int, list[int]] = {}
    for layer, head in heads:
        wanted.setdefault(layer, []).append(head)
    walk = ResidualWalk(visual, images)
    found: dict[Head, torch.Tensor] = {}
    for step in walk:
        if step.layer in wanted:
            terms = step.head_terms() - _cls_means(step, means)
            for head in wanted[step.layer]:
                found[Head(step.layer, head)] = terms[:, head]
    assert walk.final is not None
    return walk.final[:, 0], torch.stack([found[h] for h in heads], dim=1)


def build_cache(
    model: nn.Module,
    images: torch.Tensor,
    heads: Sequence[Head],
    means: torch.Tensor | None = None,
    batch_size: int = 256,
) -> DirectCache:
    """Cache r and c_lh - mu_lh of `heads` for preprocessed images [N, 3, S, S] (one pass).

    `means` are the ablation means [L, T, H, d] (mean mode); None caches zero-mode deltas.
    """
    visual = getattr(model, "visual", model)
    if not heads:
        raise InvalidInputError("no candidate heads to cache")
    residuals, deltas = [], []
    for start in range(0, images.shape[0], batch_size):
        r, d = _batch(visual, images[start : start + batch_size], list(heads), means)
        residuals.append(r)
        deltas.append(d)
    ln = visual.ln_post
    return DirectCache(
        heads=tuple(Head(*h) for h in heads),
        residual=torch.cat(residuals),
        deltas=torch.cat(deltas),
        ln_weight=ln.weight.detach(),
        ln_bias=ln.bias.detach(),
        ln_eps=float(ln.eps),
        proj=visual.proj.detach(),
    )
