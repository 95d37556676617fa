"""What gallery code needs from an engine, as a Protocol: galleries never import the engine.

`engine.engine` imports the gallery modules (for `text_to_image`); if galleries imported the
engine back, the two would form an import cycle. Galleries depend on this interface instead,
which `Engine` satisfies structurally.
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
