"""One image of an import: decoded once to prove it is readable, written as its own bytes.

Sources hand over a file, raw bytes (webdataset, `datasets`) or a decoded PIL image (torchvision
datasets). Bytes in a format every probe reader accepts are kept as they are; anything else is
re-encoded losslessly as PNG, so a probe never holds a file its loader would skip.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from ccsclip.errors import InvalidInputError

# PIL format -> the suffix a probe's image lister accepts for it (docs/design.md §7).
_KEPT_FORMATS = {"PNG": ".png", "JPEG": ".jpg", "WEBP": ".webp", "BMP": ".bmp"}

ImageSource = Path | bytes | Image.Image


@dataclass(frozen=True)
class ImageBytes:
    """An image ready to write: its bytes and the suffix its file gets."""

    data: bytes
    suffix: str


def _png(image: Image.Image) -> bytes:
    if image.mode not in ("RGB", "RGBA", "L", "LA", "I;16", "1", "P"):
        image = image.convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def image_bytes(source: ImageSource, label: str) -> ImageBytes:
    """Decode `source` fully (a truncated file fails here, not in a later stage) and return
    what to write; `label` names the item in the error (file, shard entry, row)."""
    if isinstance(source, Image.Image):
        return ImageBytes(_png(source), ".png")
    try:
        data = source.read_bytes() if isinstance(source, Path) else bytes(source)
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                image.load()
                kept = _KEPT_FORMATS.get(image.format or "")
                if kept is None:
                    return ImageBytes(_png(image), ".png")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, Warning) as exc:
        raise InvalidInputError(
            f"cannot read image {label}: {exc}; replace or remove it, then import again"
        ) from exc
    return ImageBytes(data, kept)
