"""What gallery code needs from an engine, as a Protocol: galleries never import the engine.

Galleries depend on this interface, which `Engine` satisfies structurally, so the gallery code
(and the index command's store) loads without the engine's sessions and never forms a cycle
with it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
from PIL import Image

from ccsclip.bundle import Manifest, ProfileEntry


class EmbeddingModel(Protocol):
    """The parts of `ccsclip.engine.engine.Engine` galleries use."""

    manifest: Manifest
    manifest_sha256: str
    embed_dim: int

    def resolve_profile(self, name: str | None = None) -> str: ...

    def profile_entry(self, name: str) -> ProfileEntry: ...

    def preprocess(self, images: Sequence[Image.Image]) -> np.ndarray: ...

    def embed_pixels(self, pixels: np.ndarray, profile: str | None = None) -> np.ndarray: ...
