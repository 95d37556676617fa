"""The one place that reads open_clip's private parts; everything else calls these functions.

open_clip has no public call for the residual stream before the first block, which every walk
of the image tower (`heads/walk.py`) starts from. Depends on open_clip_torch 3.3.0 (the version
pinned in pyproject.toml): `VisionTransformer._embeds` runs conv1, prepends the class token, adds
the positional embedding, applies patch dropout and ln_pre. A new open_clip version must pass
tests/test_heads.py (the walk reproduces `encode_image`) before the pin moves.
"""

from __future__ import annotations

import torch
from torch import nn


def embed_tokens(visual: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The image tower's residual stream before the first block, after ln_pre: [B, T, D]."""
    return visual._embeds(images)
