"""Text embeddings with the analysed model's own text tower, cached per (pool, weights) hash."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from ccsclip.fileio import atomic_path
from ccsclip.models import LoadedModel
from ccsclip.models.text import encode_texts_batched
from ccsclip.profiles.rank.pool import DescriptionPool


def default_cache_dir() -> Path:
    root = os.environ.get("CCSCLIP_CACHE") or Path.home() / ".cache" / "ccsclip"
    return Path(root) / "pool-embeddings"


def encode_texts(
    loaded: LoadedModel, texts: Sequence[str], batch_size: int = 256, progress: bool = False
) -> torch.Tensor:
    """Unit-norm text embeddings [N, E] in float32, in the order of `texts`.

    Batched by length and trimmed to each batch's longest end-of-text token: exact, and several
    times faster than the full 77-token context (see `ccsclip.models.text`).
    """
    batches = -(-len(texts) // batch_size)
    with tqdm(total=batches, desc="embed texts", unit="batch", disable=not progress) as bar:
        return encode_texts_batched(
            loaded.model, loaded.tokenizer, texts, batch_size, on_batch=bar.update
        )


def cache_file(loaded: LoadedModel, pool: DescriptionPool, cache_dir: Path | None = None) -> Path:
    """Where a pool's embeddings by this model's weights are cached."""
    return (cache_dir or default_cache_dir()) / (
        f"{pool.sha256[:16]}-{loaded.spec.weights_sha256[:16]}.safetensors"
    )


def pool_embeddings(
    loaded: LoadedModel, pool: DescriptionPool, cache_dir: Path | None = None, progress: bool = True
) -> torch.Tensor:
    """[M, E] embeddings of a pool; read from the cache when pool and weights hashes match."""
    cache = cache_file(loaded, pool, cache_dir)
    if cache.is_file():
        try:
            cached = load_file(str(cache))["embeddings"]
            if cached.shape == (len(pool), loaded.spec.embed_dim):
                return cached
        except Exception:  # a corrupt cache entry is recomputed, never trusted
            pass
    embeddings = encode_texts(loaded, pool.descriptions, progress=progress)
    with atomic_path(cache) as tmp:
        save_file({"embeddings": embeddings.contiguous()}, str(tmp))
    return embeddings


def clip_text_encoder(loaded: LoadedModel):
    """The model's own text tower as an `Encoder` for the embedding judge."""

    def encode(texts: Sequence[str]) -> np.ndarray:
        return encode_texts(loaded, texts).numpy()

    return encode
