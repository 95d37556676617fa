"""One walk of the image tower's residual stream, block by block, with named hook points.

Everything that needs more than the final embedding walks the blocks here (docs/design.md §3):
the exact decomposition (`decompose.py`), the search's direct-effect cache
(`profiles/search/direct_cache.py`), the planted carriers' fit (`organism/plant.py`) and the
test-only direct-path forward. The maths of a block
lives in this one place:

    x        = ln_pre(patch_embed + cls + pos)                       # "embed"
    z        = head_outputs(ln_1(x))          [B, T, H, d]           # "blocks.{l}.attn.hook_z"
    attn_out = ls_1(z @ W_O^T + b_O)          [B, T, D]              # "blocks.{l}.hook_attn_out"
    x        = x + attn_out                                          # "blocks.{l}.hook_resid_mid"
    mlp_out  = ls_2(mlp(ln_2(x)))                                    # "blocks.{l}.hook_mlp_out"
    x        = x + mlp_out                                           # "blocks.{l}.hook_resid_post"
    final    = x after the last block                                # "resid_final"

`head_outputs` runs through the head-resolved module, so a soft ablation set on the model
(`heads/ablation.py`) and forward hooks on `hook_z` act as in a normal forward. `ResidualWalk`
streams one `BlockStep` at a time (nothing is kept that the caller does not keep);
`run_with_cache` is TransformerLens's `run_with_cache` in miniature: the named activations the
caller asks for, in a dict.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass

import torch
from torch import nn

from ccsclip.heads.attention import HeadResolvedAttention, out_proj_blocks
from ccsclip.heads.resolve import resolve_heads
from ccsclip.models.open_clip_internals import embed_tokens


@dataclass(frozen=True)
class BlockStep:
    """What one residual block read and added. Tensors are batch-first: [B, T, ...]."""

    layer: int
    block: nn.Module
    attn: HeadResolvedAttention
    resid_pre: torch.Tensor  # [B, T, D] the stream the block reads
    z: torch.Tensor  # [B, T, H, d] head outputs before out_proj (after any soft ablation)
    attn_out: torch.Tensor  # [B, T, D] attention output after layer scale
    mlp_out: torch.Tensor  # [B, T, D] MLP output after layer scale

    @property
    def resid_mid(self) -> torch.Tensor:
        return self.resid_pre + self.attn_out

    @property
    def resid_post(self) -> torch.Tensor:
        return self.resid_pre + self.attn_out + self.mlp_out

    def head_terms(self, z_token: torch.Tensor | None = None) -> torch.Tensor:
        """Each head's term of the attention output at the class token, after layer scale:
        ls_1(z[:, CLS, h] @ W_O[:, h]^T) [B, H, D]; the out_proj bias is not in it.

        `z_token` [..., H, d] replaces the class token's head outputs (e.g. ablation means)."""
        z = self.z[:, 0] if z_token is None else z_token
        return self.block.ls_1(torch.einsum("...hd,hDd->...hD", z, out_proj_blocks(self.attn)))

    def project(self, z: torch.Tensor) -> torch.Tensor:
        """The attention output [B, T, D] this block would add for head outputs `z`."""
        return self.block.ls_1(self.attn.project(z))

    def names(self) -> dict[str, str]:
        """Hook name -> attribute, for `run_with_cache`."""
        prefix = f"blocks.{self.layer}"
        return {
            f"{prefix}.hook_resid_pre": "resid_pre",
            f"{prefix}.attn.hook_z": "z",
            f"{prefix}.hook_attn_out": "attn_out",
            f"{prefix}.hook_resid_mid": "resid_mid",
            f"{prefix}.hook_mlp_out": "mlp_out",
            f"{prefix}.hook_resid_post": "resid_post",
        }


class ResidualWalk:
    """Iterate over the blocks of an image tower for a batch of preprocessed images.

    `embed` is the stream after ln_pre; `final` is the stream after the last block, set once the
    iteration is complete. Head-resolved attention is swapped in (in place, parameters shared).
    """

    def __init__(self, model: nn.Module, images: torch.Tensor) -> None:
        self.visual = getattr(model, "visual", model)
        self.attns = resolve_heads(self.visual)
        self.embed = embed_tokens(self.visual, images)
        self.final: torch.Tensor | None = None

    def __iter__(self) -> Iterator[BlockStep]:
        x = self.embed
        for index, block in enumerate(self.visual.transformer.resblocks):
            attn = self.attns[index]
            z = attn.head_outputs(block.ln_1(x))
            attn_out = block.ls_1(attn.project(z))
            mid = x + attn_out
            mlp_out = block.ls_2(block.mlp(block.ln_2(mid)))
            yield BlockStep(index, block, attn, x, z, attn_out, mlp_out)
            x = mid + mlp_out
        self.final = x

    def run(self) -> torch.Tensor:
        """Walk every block and return the final stream [B, T, D]."""
        for _ in self:
            pass
        assert self.final is not None
        return self.final


Names = Collection[str] | Callable[[str], bool] | None


def run_with_cache(
    model: nn.Module, images: torch.Tensor, names: Names = None
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(final stream [B, T, D], {hook name: activation}) for the names asked for (all if None):
    'embed', 'blocks.{l}.hook_resid_pre', 'blocks.{l}.attn.hook_z', 'blocks.{l}.hook_attn_out',
    'blocks.{l}.hook_resid_mid', 'blocks.{l}.hook_mlp_out', 'blocks.{l}.hook_resid_post',
    'resid_final'."""
    if names is None:
        wanted: Callable[[str], bool] = lambda _name: True  # noqa: E731
    elif callable(names):
        wanted = names
    else:
        chosen = set(names)
        wanted = chosen.__contains__
    walk = ResidualWalk(model, images)
    cache: dict[str, torch.Tensor] = {}
    if wanted("embed"):
        cache["embed"] = walk.embed
    for step in walk:
        for name, attribute in step.names().items():
            if wanted(name):
                cache[name] = getattr(step, attribute)
    final = walk.final
    assert final is not None
    if wanted("resid_final"):
        cache["resid_final"] = final
    return final, cache
