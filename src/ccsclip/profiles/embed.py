"""Text embeddings with the analysed model's own text tower, cached per (pool, weights) hash."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from ccsclip.fileio import atomic_path
from ccsclip.models import LoadedModel
from ccsclip.profiles.pool import DescriptionPool


def default_cache_dir() -> Path:
    root = os.environ.get("CCSCLIP_CACHE") or Path.home() / ".cache" / "ccsclip"
    return Path(root) / "pool-embeddings"


@torch.inference_mode()
def encode_texts(
    loaded: LoadedModel, texts: Sequence[str], batch_size: int = 256, progress: bool = False
) -> torch.Tensor:
    """Unit-norm text embeddings [N, E] in float32."""
    rows = []
    starts = range(0, len(texts), batch_size)
    for start in tqdm(starts, desc="embed texts", unit="batch", disable=not progress):
        tokens = loaded.tokenizer(list(texts[start : start + batch_size]))
        rows.append(F.normalize(loaded.model.encode_text(tokens).float(), dim=-1))
    return torch.cat(rows)


def pool_embeddings(
    loaded: LoadedModel, pool: DescriptionPool, cache_dir: Path | None = None, progress: bool = True
) -> torch.Tensor:
    """[M, E] embeddings of a pool; read from the cache when pool and weights hashes match."""
    cache = (cache_dir or default_cache_dir()) / (
        f"{pool.sha256[:16]}-{loaded.spec.weights_sha256[:16]}.safetensors"
    )
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
