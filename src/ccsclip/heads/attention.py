"""Head-resolved self-attention over the parameters of a stock `nn.MultiheadAttention`.

The fused kernel of `nn.MultiheadAttention` never exposes per-head outputs, so this module computes
the same function head by head (docs/design.md §3):

    q, k, v  = split(x @ W_in^T + b_in)                  # each [B, T, H, d]
    z[b,t,h] = softmax(q k^T / sqrt(d))[b,h,t,:] @ v[b,h]  # head output before out_proj
    out      = sum_h z[:,:,h] @ W_O[:, h]^T + b_O

and exposes `z` at a named hook point (`hook_z`, shape [B, T, H, d]), where an ablation can replace
chosen heads by zero or by a per-position mean before `out_proj`.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

AblationMode = Literal["zero", "mean"]


class HookPoint(nn.Identity):
    """A named activation: register forward hooks on it to read (or replace) what flows through."""


class HeadResolvedAttention(nn.Module):
    """Drop-in replacement for a self-attention `nn.MultiheadAttention`, sharing its parameters."""

    head_resolved = True

    def __init__(self, stock: nn.MultiheadAttention) -> None:
        super().__init__()
        if stock.in_proj_weight is None:  # None exactly when q, k and v have separate weights
            raise ValueError("only packed q/k/v projections (in_proj_weight) are supported")
        self.embed_dim = stock.embed_dim
        self.num_heads = stock.num_heads
        self.head_dim = stock.embed_dim // stock.num_heads
        self.batch_first = stock.batch_first
        self.in_proj_weight = stock.in_proj_weight
        self.in_proj_bias = stock.in_proj_bias
        self.out_proj = stock.out_proj
        self.hook_z = HookPoint()
        self.register_buffer("ablate_mask", torch.zeros(0, dtype=torch.bool), persistent=False)
        self.register_buffer("ablate_value", torch.zeros(0), persistent=False)

    def set_ablation(
        self, heads: list[int], mode: AblationMode, means: torch.Tensor | None
    ) -> None:
        """Replace the outputs of `heads`: by 0 (`zero`) or by `means` [T, H, d] (`mean`)."""
        mask = torch.zeros(self.num_heads, dtype=torch.bool, device=self.in_proj_weight.device)
        mask[list(heads)] = True
        if mode == "zero" or not heads:
            value = torch.zeros(1, 1, self.num_heads, self.head_dim)
        elif mode == "mean":
            if means is None:
                raise ValueError("mean ablation needs per-position means of shape [T, H, d]")
            value = means.unsqueeze(0)
        else:
            raise ValueError(f"unknown ablation mode {mode!r}: use 'zero' or 'mean'")
        self.ablate_mask = mask.view(1, 1, -1, 1)
        self.ablate_value = value.to(self.in_proj_weight)

    def clear_ablation(self) -> None:
        self.ablate_mask = torch.zeros(0, dtype=torch.bool, device=self.in_proj_weight.device)
        self.ablate_value = torch.zeros(0, device=self.in_proj_weight.device)

    def head_outputs(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Per-head outputs z [B, T, H, d] of batch-first input x [B, T, D], after any ablation."""
        batch, tokens, _ = x.shape
        qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)
        qkv = qkv.view(batch, tokens, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        z = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], attn_mask=attn_mask)
        z = z.transpose(1, 2)
        if self.ablate_mask.numel():
            value = self.ablate_value
            if value.shape[1] not in (1, tokens):
                raise ValueError(
                    f"ablation means cover {value.shape[1]} tokens, input has {tokens}"
                )
            z = torch.where(self.ablate_mask, value.expand_as(z), z)
        return self.hook_z(z)

    def project(self, z: torch.Tensor) -> torch.Tensor:
        """out_proj applied to concatenated head outputs: [B, T, H, d] -> [B, T, D]."""
        return self.out_proj(z.flatten(-2))

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor | None = None,
        value: torch.Tensor | None = None,
        need_weights: bool = False,
        attn_mask: torch.Tensor | None = None,
        **_: object,
    ) -> tuple[torch.Tensor, None]:
        """Same call signature and result as the stock module (weights are never returned)."""
        if key is not None and key is not query:
            raise ValueError("HeadResolvedAttention supports self-attention only")
        x = query if self.batch_first else query.transpose(0, 1)
        out = self.project(self.head_outputs(x, attn_mask))
        return (out if self.batch_first else out.transpose(0, 1)), None


def out_proj_blocks(attn: HeadResolvedAttention) -> torch.Tensor:
    """W_O split per head: [H, D, d], so that head h's term is z[..., h, :] @ W_O[h]^T."""
    weight = attn.out_proj.weight  # [D, H*d]
    return weight.view(attn.embed_dim, attn.num_heads, attn.head_dim).permute(1, 0, 2)
