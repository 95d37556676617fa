"""A forward pass with a head set ablated on the direct path only: the estimate's ground truth.

Two residual streams run side by side. Every attention and MLP reads the clean (un-ablated)
stream, so no ablation reaches a later layer (the indirect paths are off); the ablated stream
adds the same outputs except that the ablated heads' outputs are replaced (by their mean or by
zero). Its final class token is exactly r - sum (c_lh - mu_lh), what `DirectCache` estimates: the
test compares the two, and the gap to the true ablated forward is then the indirect effect alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ccsclip.heads.ablation import Ablation
from ccsclip.heads.walk import ResidualWalk


@torch.inference_mode()
def direct_only_embeddings(
    model: nn.Module, images: torch.Tensor, ablation: Ablation
) -> torch.Tensor:
    """Unit-norm image embeddings [N, E] with `ablation` applied to the direct path only."""
    visual = getattr(model, "visual", model)
    per_layer = ablation.by_layer()
    walk = ResidualWalk(visual, images)  # the clean stream: every block reads it
    ablated = walk.embed.clone()
    for step in walk:
        replaced = _replace(step.z, step.layer, per_layer.get(step.layer), ablation)
        ablated = ablated + step.project(replaced) + step.mlp_out
    final = visual.ln_post(ablated[:, 0]) @ visual.proj
    return F.normalize(final, dim=-1)


def _replace(
    z: torch.Tensor, layer: int, heads: Sequence[int] | None, ablation: Ablation
) -> torch.Tensor:
    """z [B, T, H, d] of `layer` with `heads` set to zero or to their per-position means."""
    if not heads:
        return z
    z = z.clone()
    for head in heads:
        if ablation.mode == "mean":
            z[:, :, head] = ablation.means[layer, :, head].to(z)
        else:
            z[:, :, head] = 0.0
    return z
