"""Exact direct-effect decomposition of a ViT image embedding into head terms (docs/design.md §3).

With r the final residual at the class token, r = e + sum_l (a_l + m_l), and a_l split into
head terms c_lh = ls_1 * (z[l,h,CLS] @ W_O[:, h]^T) plus ls_1 * b_O. Freezing sigma(r), ln_post is
linear in each term: u -> gamma * (u - mean(u)) / sigma(r), and beta is a term of its own. Each
term is then multiplied by `proj` and divided by the norm of the full embedding, so all terms sum
to the unit-norm image embedding.

This computes the *exact per-term centring* (each term centred by its own feature mean). TextSpan
instead splits the LayerNorm mean and bias evenly over terms: the sums agree, per-term shares differ
slightly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from ccsclip.heads.walk import ResidualWalk


@dataclass
class Decomposition:
    """Terms of the unit-norm image embedding [B, E].

    `heads[:, i, h]` is the direct contribution of head h of layer `layers[i]`; `terms` holds every
    other term by name: 'embed', 'ln_post.bias', 'L{l}.attn.bias', 'L{l}.mlp', and 'L{l}.attn'
    (the whole attention of a layer that is not analysed).
    """

    layers: tuple[int, ...]
    heads: torch.Tensor
    terms: dict[str, torch.Tensor] = field(default_factory=dict)
    embedding: torch.Tensor | None = None

    def total(self) -> torch.Tensor:
        """Sum of all terms; equals `embedding` up to rounding."""
        out = self.heads.sum(dim=(1, 2))
        for term in self.terms.values():
            out = out + term
        return out


class _PostLN:
    """The linear map that ln_post + proj + normalisation applies to each residual term."""

    def __init__(self, visual: nn.Module, residual: torch.Tensor) -> None:
        ln = visual.ln_post
        var = residual.var(dim=-1, unbiased=False, keepdim=True)
        self.inv_sigma = torch.rsqrt(var + ln.eps)  # [B, 1]
        self.gamma = ln.weight
        self.proj = visual.proj
        full = ln(residual) @ self.proj
        self.inv_norm = 1.0 / full.norm(dim=-1, keepdim=True)  # [B, 1]
        self.embedding = full * self.inv_norm
        self.beta = (ln.bias @ self.proj).expand_as(full) * self.inv_norm

    def __call__(self, term: torch.Tensor) -> torch.Tensor:
        """term [B, ..., D] -> its share of the unit embedding [B, ..., E]."""
        extra = term.dim() - 2
        shape = (term.shape[0],) + (1,) * extra + (1,)
        centred = term - term.mean(dim=-1, keepdim=True)
        scaled = self.gamma * centred * self.inv_sigma.view(shape)
        return (scaled @ self.proj) * self.inv_norm.view(shape)


def decompose(model: nn.Module, images: torch.Tensor, layers: Sequence[int]) -> Decomposition:
    """Run the image tower once and return every direct-effect term of its embedding.

    The tower is walked block by block (`heads/walk.py`) with head-resolved attention, so any
    ablation set on the model and any hook on `hook_z` act as in a normal forward.
    """
    visual = getattr(model, "visual", model)
    analysed = tuple(sorted(set(int(layer) for layer in layers)))
    walk = ResidualWalk(visual, images)
    raw: dict[str, torch.Tensor] = {"embed": walk.embed[:, 0]}
    head_terms = []
    for step in walk:
        index = step.layer
        if index in analysed:
            head_terms.append(step.head_terms())
            bias = step.attn.out_proj.bias
            raw[f"L{index}.attn.bias"] = step.block.ls_1(bias).expand_as(walk.embed[:, 0])
        else:
            raw[f"L{index}.attn"] = step.attn_out[:, 0]
        raw[f"L{index}.mlp"] = step.mlp_out[:, 0]
    x = walk.final
    post = _PostLN(visual, x[:, 0])
    heads = post(torch.stack(head_terms, dim=1)) if head_terms else x.new_zeros(x.shape[0], 0, 0, 0)
    terms = {name: post(term) for name, term in raw.items()}
    terms["ln_post.bias"] = post.beta
    return Decomposition(layers=analysed, heads=heads, terms=terms, embedding=post.embedding)
