"""The statistics job: model + image folder -> moments, ablation means and their sidecar."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from ccsclip.errors import InvalidInputError
from ccsclip.heads.stats import HeadMeans, HeadMoments, accumulate, all_reduce
from ccsclip.images import ImageBatches, listing_sha256
from ccsclip.models import LoadedModel


def _rank_and_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _with_progress(batches: ImageBatches, show: bool) -> Iterator[torch.Tensor] | Iterable:
    return tqdm(batches, total=len(batches), desc="statistics", unit="batch", disable=not show)


def collect_statistics(
    loaded: LoadedModel,
    images_dir: str | Path,
    layers: tuple[int, ...],
    batch_size: int = 32,
    strict: bool = False,
    limit: int | None = None,
    progress: bool = True,
) -> tuple[HeadMoments, HeadMeans, dict[str, Any]]:
    """Decompose every image once; exact across processes when torch.distributed is initialised."""
    spec = loaded.spec
    rank, world = _rank_and_world()
    batches = ImageBatches(
        Path(images_dir), loaded.preprocess, batch_size, strict, limit, rank=rank, world_size=world
    )
    moments = HeadMoments.zeros(layers, spec.heads, spec.embed_dim)
    means = HeadMeans.zeros(spec.layers, spec.n_tokens, spec.heads, spec.head_width)
    accumulate(
        loaded.model, _with_progress(batches, progress and rank == 0), layers, moments, means
    )
    skipped = _gather_skipped(batches.skipped)
    all_reduce(moments, means)
    if moments.n == 0:
        raise InvalidInputError(f"none of the images in {str(images_dir)!r} could be read")
    meta = {
        "model": spec.name,
        "pretrained": spec.pretrained,
        "weights_sha256": spec.weights_sha256,
        "images": {
            "root": str(images_dir),
            "listing_sha256": listing_sha256(batches.root, batches.all_files),
            "n_files": len(batches.all_files),
            "n_used": moments.n,
            "n_skipped": len(skipped),
            "skipped": skipped[:100],
        },
        # The value means docs/design.md §3; kept as written before that file existed, so the
        # sidecar (and ccs.json, profiles and bundles, which hash it in turn) stay byte-identical.
        "decomposition": "exact per-term centring (design §3)",
        "world_size": world,
    }
    return moments, means, meta


def _gather_skipped(local: list[str]) -> list[str]:
    if not (dist.is_available() and dist.is_initialized()):
        return sorted(local)
    gathered: list[list[str]] = [[] for _ in range(dist.get_world_size())]
    dist.all_gather_object(gathered, local)
    return sorted(name for part in gathered for name in part)
