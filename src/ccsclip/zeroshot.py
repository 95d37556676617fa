"""Zero-shot classification with a torch CLIP: class embeddings from templates, top-1 accuracy."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ccsclip.models.text import encode_text_trimmed


@torch.inference_mode()
def class_embeddings(
    model: torch.nn.Module, tokenizer, names: Sequence[str], templates: Sequence[str]
) -> torch.Tensor:
    """[C, E]: per class, the normalised mean of its normalised template embeddings."""
    rows = []
    for name in names:
        tokens = tokenizer([template.format(name) for template in templates])
        text = encode_text_trimmed(model, tokens, normalize=True)
        rows.append(F.normalize(text.mean(0), dim=-1))
    return torch.stack(rows)


@torch.inference_mode()
def encode_images(
    model: torch.nn.Module, images: torch.Tensor, batch_size: int = 256
) -> torch.Tensor:
    """Normalised image embeddings [N, E], in batches."""
    parts = [
        model.encode_image(images[i : i + batch_size], normalize=True)
        for i in range(0, images.shape[0], batch_size)
    ]
    return torch.cat(parts)


def top1_accuracy(
    image_embeddings: torch.Tensor, classes: torch.Tensor, labels: torch.Tensor
) -> float:
    predictions = (image_embeddings @ classes.T).argmax(dim=-1)
    return float((predictions == labels).float().mean())
