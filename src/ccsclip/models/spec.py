"""What the rest of ccsclip needs to know about a CLIP's image tower, independent of open_clip."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from ccsclip.headref import Head


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

    def check_head(self, layer: int, head: int) -> Head:
        """The head as a `Head`, or a readable error if this model does not have it."""
        return Head(layer, head).check_exists(self.layers, self.heads, self.name)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
