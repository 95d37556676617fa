"""What the rest of ccsclip needs to know about a CLIP's image tower, independent of open_clip."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class ModelSpec:
    """Shape of a ViT image tower plus the identity of the weights it was loaded with.

    Heads are addressed as (layer, head), 0-based, in this model's original numbering.
    """

    name: str
    pretrained: str | None
    weights_sha256: str
    layers: int
    heads: int
    head_width: int
    width: int
    embed_dim: int
    image_size: int
    patch_size: int
    n_tokens: int
    context_length: int

    @property
    def n_heads_total(self) -> int:
        return self.layers * self.heads

    def head_name(self, layer: int, head: int) -> str:
        return f"L{layer}H{head}"

    def check_head(self, layer: int, head: int) -> None:
        """Raise a readable error for a head this model does not have."""
        from ccsclip.errors import InvalidInputError

        if not (0 <= layer < self.layers and 0 <= head < self.heads):
            raise InvalidInputError(
                f"head L{layer}H{head} does not exist in {self.name}: "
                f"layers are 0..{self.layers - 1} and heads 0..{self.heads - 1}"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
