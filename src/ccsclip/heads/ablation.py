"""Soft pruning: replace chosen heads' outputs in the forward pass (docs/design.md §6).

The whole forward changes, so ablated heads lose their indirect effects on later layers too,
as in the paper's code. `zero` sets z to 0 (the out_proj bias stays); `mean` sets z[l,h,t] to the
per-position mean over calibration images.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

from ccsclip.errors import InvalidInputError
from ccsclip.headref import Head
from ccsclip.heads.attention import AblationMode
from ccsclip.heads.resolve import image_blocks, resolve_heads


@dataclass(frozen=True)
class Ablation:
    """Which heads to ablate and how. `means` is [L, T, H, d] (required for `mean`)."""

    heads: tuple[Head, ...]
    mode: AblationMode = "zero"
    means: torch.Tensor | None = None

    @classmethod
    def of(
        cls, heads: Iterable[tuple[int, int]], mode: AblationMode = "zero", means=None
    ) -> Ablation:
        return cls(
            tuple(sorted({Head(int(layer), int(head)) for layer, head in heads})), mode, means
        )

    def by_layer(self) -> dict[int, list[int]]:
        layers: dict[int, list[int]] = {}
        for layer, head in self.heads:
            layers.setdefault(layer, []).append(head)
        return layers

    def check_for(self, model: nn.Module) -> None:
        """`check` against the image tower of `model` (a CLIP or the tower itself)."""
        blocks = image_blocks(model)
        attn = blocks[0].attn
        visual = getattr(model, "visual", model)
        n_tokens = int(visual.positional_embedding.shape[0])
        self.check(len(blocks), int(attn.num_heads), n_tokens, int(attn.head_dim))

    def check(self, n_layers: int, n_heads: int, n_tokens: int, head_dim: int) -> None:
        """Refuse an ablation the model cannot take: unknown mode, missing heads, or means of
        another shape than [layers, tokens, heads, head width]. Soft pruning and surgery both
        check here, so an ablation one accepts the other accepts too."""
        if self.mode not in ("zero", "mean"):
            raise InvalidInputError(f"unknown ablation mode {self.mode!r}: use 'zero' or 'mean'")
        for head in self.heads:
            head.check_exists(n_layers, n_heads)
        if self.mode != "mean" or not self.heads:
            return
        expected = (n_layers, n_tokens, n_heads, head_dim)
        if self.means is None:
            raise InvalidInputError(
                f"mean ablation needs ablation means of shape {list(expected)} (means.safetensors)"
            )
        if tuple(self.means.shape) != expected:
            raise InvalidInputError(
                f"ablation means have shape {list(self.means.shape)}, expected {list(expected)} "
                f"(layers, tokens, heads, head width): they were computed for another model or "
                f"another image size ({n_tokens} tokens here)"
            )


def apply_ablation(model: nn.Module, ablation: Ablation) -> None:
    """Set the ablation on every image-tower layer (clearing layers it does not name)."""
    ablation.check_for(model)
    attns = resolve_heads(model)
    per_layer = ablation.by_layer()
    for layer, attn in enumerate(attns):
        heads = per_layer.get(layer, [])
        if not heads:
            attn.clear_ablation()
            continue
        means = ablation.means[layer] if ablation.mode == "mean" else None
        attn.set_ablation(heads, ablation.mode, means)


def clear_ablation(model: nn.Module) -> None:
    for attn in resolve_heads(model):
        attn.clear_ablation()


@contextlib.contextmanager
def ablated(model: nn.Module, ablation: Ablation) -> Iterator[nn.Module]:
    """Run a block with the ablation set; always cleared afterwards."""
    apply_ablation(model, ablation)
    try:
        yield model
    finally:
        clear_ablation(model)
