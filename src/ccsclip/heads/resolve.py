"""Swap head-resolved attention into an open_clip image tower, and name its hook points."""

from __future__ import annotations

from torch import nn

from ccsclip.heads.attention import HeadResolvedAttention, HookPoint


def image_blocks(model: nn.Module) -> nn.ModuleList:
    """The residual blocks of the image tower of a CLIP (or of the tower itself)."""
    visual = getattr(model, "visual", model)
    return visual.transformer.resblocks


def resolve_heads(model: nn.Module) -> list[HeadResolvedAttention]:
    """Replace every image-tower `nn.MultiheadAttention` by a head-resolved one, in place.

    Parameters are shared, not copied, so the state_dict and the outputs stay the same.
    Idempotent: already-resolved blocks are left as they are.
    """
    resolved = []
    for block in image_blocks(model):
        if not isinstance(block.attn, HeadResolvedAttention):
            block.attn = HeadResolvedAttention(block.attn)
        resolved.append(block.attn)
    return resolved


def hook_points(model: nn.Module) -> dict[str, HookPoint]:
    """Every hook point by its module path, e.g. 'visual.transformer.resblocks.3.attn.hook_z'."""
    return {name: module for name, module in model.named_modules() if isinstance(module, HookPoint)}


def hook_z_name(layer: int, prefix: str = "visual.") -> str:
    return f"{prefix}transformer.resblocks.{layer}.attn.hook_z"
