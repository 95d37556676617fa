"""Refuse image towers whose embedding does not split exactly into per-head terms."""

from __future__ import annotations

import torch
from open_clip.transformer import ResidualAttentionBlock, VisionTransformer

from ccsclip.errors import UnsupportedModelError


def _reason(model: torch.nn.Module) -> str | None:
    visual = getattr(model, "visual", None)
    if not isinstance(visual, VisionTransformer):
        kind = type(visual).__name__
        return (
            f"its image tower is a {kind}, not open_clip's VisionTransformer "
            "(timm, HF and ResNet towers are not supported)"
        )
    if visual.attn_pool is not None:
        return "it pools with an attentional pooler, which mixes heads nonlinearly"
    if visual.pool_type != "tok":
        return f"it pools with {visual.pool_type!r}; only class-token pooling decomposes exactly"
    if visual.proj is None:
        return "its image tower has no output projection"
    if not isinstance(visual.ln_post, torch.nn.LayerNorm):
        return f"its final norm is {type(visual.ln_post).__name__}, not LayerNorm"
    for index, block in enumerate(visual.transformer.resblocks):
        if not isinstance(block, ResidualAttentionBlock):
            return (
                f"block {index} is a {type(block).__name__} (qk-norm, scaled cosine attention, "
                "scale_attn / scale_heads / scale_attn_inner norms mix or reparameterise heads)"
            )
        if hasattr(block, "ln_1_kv"):
            return f"block {index} is a cross-attention block"
        attn = block.attn
        if not isinstance(attn, torch.nn.MultiheadAttention) and not hasattr(attn, "head_resolved"):
            return f"block {index} uses {type(attn).__name__} attention"
        if getattr(attn, "in_proj_weight", None) is None:
            return f"block {index} has separate q/k/v projections"
    return None


def check_decomposable(model: torch.nn.Module, name: str) -> None:
    """Raise UnsupportedModelError naming the model and the reason, or return None."""
    reason = _reason(model)
    if reason is not None:
        raise UnsupportedModelError(f"model {name!r} is not supported: {reason}.")
