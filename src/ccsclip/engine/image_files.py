"""Image files of a folder: which files count as images, in which order, and how one is read.

Every reader of image folders lists them here (galleries, the offline commands through
`ccsclip.images`, probe directories), so all agree on suffixes and order. Torch-free: the serving
engine indexes folders and runs probes with it.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from PIL import Image

from ccsclip.errors import InvalidInputError, NotFoundError

# The one list of image file suffixes: galleries, offline commands and probes all read these.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def list_images(
    root: str | Path, *, recursive: bool = True, allow_empty: bool = False
) -> list[Path]:
    """Image files below `root`, sorted by relative path (so the order is the same everywhere).

    `recursive=False` reads only `root` itself (a probe's class folder). An empty result is an
    error unless `allow_empty`, for callers that word their own message.
    """
    root = Path(root)
    if not root.is_dir():
        raise NotFoundError(f"image folder {str(root)!r} does not exist or is not a directory")
    candidates = root.rglob("*") if recursive else root.iterdir()
    files = sorted(
        (p for p in candidates if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES),
        key=lambda p: p.relative_to(root).as_posix(),
    )
    if not files and not allow_empty:
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
