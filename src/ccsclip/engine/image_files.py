"""Folders of images to index into a gallery: which files, and how one is read.

Galleries themselves (one format, every backend, written by `ccsclip index` and the API alike)
are `ccsclip.engine.galleries`. Kept apart because the probe runner reads images the same way.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from PIL import Image

from ccsclip.errors import InvalidInputError, NotFoundError

# Same suffixes as the offline image reader (ccsclip.images), which imports torch.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def list_gallery_images(root: str | Path) -> list[Path]:
    """Image files below `root` (flat or nested), sorted by relative path."""
    root = Path(root)
    if not root.is_dir():
        raise NotFoundError(f"image folder {str(root)!r} does not exist or is not a directory")
    files = sorted(
        (p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES),
        key=lambda p: p.relative_to(root).as_posix(),
    )
    if not files:
        raise InvalidInputError(
            f"no images in {str(root)!r}: expected files ending in {', '.join(IMAGE_SUFFIXES)}"
        )
    return files


def read_image(path: Path) -> Image.Image:
    """Decode fully (so errors surface here) and convert to RGB, as the offline reader does."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with Image.open(path) as image:
            return image.convert("RGB")
