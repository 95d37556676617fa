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
from ccsclip.heads.attention import AblationMode
from ccsclip.heads.resolve import resolve_heads

Head = tuple[int, int]


@dataclass(frozen=True)
class Ablation:
    """Which heads to ablate and how. `means` is [L, T, H, d] (required for `mean`)."""

    heads: tuple[Head, ...]
    mode: AblationMode = "zero"
    means: torch.Tensor | None = None

    @classmethod
    def of(cls, heads: Iterable[Head], mode: AblationMode = "zero", means=None) -> Ablation:
        return cls(tuple(sorted({(int(layer), int(head)) for layer, head in heads})), mode, means)

    def by_layer(self) -> dict[int, list[int]]:
        layers: dict[int, list[int]] = {}
        for layer, head in self.heads:
            layers.setdefault(layer, []).append(head)
        return layers


def _validate(ablation: Ablation, n_layers: int, n_heads: int) -> None:
    if ablation.mode not in ("zero", "mean"):
        raise InvalidInputError(f"unknown ablation mode {ablation.mode!r}: use 'zero' or 'mean'")
    for layer, head in ablation.heads:
        if not (0 <= layer < n_layers and 0 <= head < n_heads):
            raise InvalidInputError(
                f"head L{layer}H{head} does not exist: layers 0..{n_layers - 1}, "
                f"heads 0..{n_heads - 1}"
            )
    if ablation.mode == "mean" and ablation.heads:
        if ablation.means is None:
            raise InvalidInputError("mean ablation needs ablation means (means.safetensors)")
        if ablation.means.shape[0] != n_layers or ablation.means.shape[2] != n_heads:
            raise InvalidInputError(
                f"ablation means have shape {tuple(ablation.means.shape)}, expected "
                f"[{n_layers}, T, {n_heads}, d]: they were computed for another model"
            )


def apply_ablation(model: nn.Module, ablation: Ablation) -> None:
    """Set the ablation on every image-tower layer (clearing layers it does not name)."""
    attns = resolve_heads(model)
    _validate(ablation, len(attns), attns[0].num_heads)
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
