"""Read an image folder (ImageFolder tree or flat) into preprocessed batches, skipping bad files."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image

from ccsclip.engine.image_files import list_images, read_image
from ccsclip.errors import InvalidInputError

log = logging.getLogger(__name__)


def listing_sha256(root: str | Path, files: list[Path]) -> str:
    """Identity of an image set: sha256 over relative paths and sizes (cheap, order-independent)."""
    digest = hashlib.sha256()
    for path in files:
        digest.update(f"{path.relative_to(root).as_posix()}\t{path.stat().st_size}\n".encode())
    return digest.hexdigest()


@dataclass
class ImageBatches:
    """Iterate preprocessed batches of a folder; `skipped` lists files that could not be read.

    `rank`/`world_size` shard the files for torch.distributed runs (file i goes to i % world_size).
    """

    root: Path
    transform: Callable[[Image.Image], torch.Tensor]
    batch_size: int = 32
    strict: bool = False
    limit: int | None = None
    rank: int = 0
    world_size: int = 1
    files: list[Path] = field(init=False)
    skipped: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        files = list_images(self.root)
        self.all_files = files[: self.limit] if self.limit else files
        self.files = self.all_files[self.rank :: self.world_size]

    def __len__(self) -> int:
        return (len(self.files) + self.batch_size - 1) // self.batch_size

    def _load(self, path: Path) -> torch.Tensor | None:
        try:
            return self.transform(read_image(path))
        except Exception as exc:
            rel = path.relative_to(self.root).as_posix()
            if self.strict:
                raise InvalidInputError(
                    f"cannot read image {rel!r} in {str(self.root)!r}: {exc}"
                ) from exc
            self.skipped.append(rel)
            log.warning("skipping unreadable image %s: %s", rel, exc)
            return None

    def __iter__(self) -> Iterator[torch.Tensor]:
        batch: list[torch.Tensor] = []
        for path in self.files:
            tensor = self._load(path)
            if tensor is not None:
                batch.append(tensor)
            if len(batch) == self.batch_size:
                yield torch.stack(batch)
                batch = []
        if batch:
            yield torch.stack(batch)
