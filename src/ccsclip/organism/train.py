"""Train the embedded default: a small CLIP on the synthetic concept world (docs/design.md §10).

Two departures from plain CLIP training were needed for every concept to be learned:
- a multi-positive contrastive loss: every in-batch caption that is true of an image is a positive
  (templated captions such as "a red circle" fit many images; ClipLoss would call them negatives);
- the visual positional embedding starts from a 2-D sin-cos table x 0.5 (still learnable).
"""

from __future__ import annotations

import math
import tempfile
import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from open_clip.pos_embed import get_2d_sincos_pos_embed
from pydantic import BaseModel, ConfigDict, Field
from tqdm.auto import tqdm

from ccsclip.models import load_model
from ccsclip.organism import world as W
from ccsclip.organism.probes import write_bias_probe
from ccsclip.probeset import load_probe
from ccsclip.zeroshot import class_embeddings, encode_images, top1_accuracy

MODEL_NAME = "ccsclip-organism"


class TrainConfig(BaseModel):
    """Everything that determines a training run (written into the training card)."""

    model_config = ConfigDict(extra="forbid")

    model: str = MODEL_NAME
    steps: int = Field(3000, ge=1)
    time_budget_s: float | None = Field(None, gt=0)
    batch_size: int = Field(128, ge=2)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.1, ge=0)
    warmup: int = Field(150, ge=0)
    seed: int = Field(0, ge=0)
    data_seed: int = Field(0, ge=0)
    bias_p: float = Field(0.7, ge=0, le=1)
    eval_images: int = Field(1000, ge=10)
    eval_seed: int = Field(12345, ge=0)
    bias_per_cell: int = Field(10, ge=1)  # bias-probe images per shape x colour at the end


def init_positional_embedding(visual: torch.nn.Module, scale: float = 0.5) -> None:
    """2-D sin-cos table x scale for the patch positions; zero for the class token."""
    grid = visual.grid_size[0]
    width = visual.positional_embedding.shape[1]
    table = get_2d_sincos_pos_embed(width, grid, cls_token=True)
    with torch.no_grad():
        visual.positional_embedding.copy_(torch.from_numpy(table).float() * scale)


def images_to_tensor(images: np.ndarray, mean, std) -> torch.Tensor:
    """uint8 [N, H, W, 3] -> normalised [N, 3, H, W], as open_clip's transform at native size."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255.0)
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


def multi_positive_loss(
    image: torch.Tensor, text: torch.Tensor, scale: torch.Tensor, positives: torch.Tensor
) -> torch.Tensor:
    """Symmetric cross-entropy against uniform targets over every true caption (resp. image)."""
    logits = scale * image @ text.T  # [images, captions]
    targets = positives.float()
    image_loss = -(targets / targets.sum(1, keepdim=True) * F.log_softmax(logits, 1)).sum(1).mean()
    text_targets = targets.T
    text_loss = (
        -(text_targets / text_targets.sum(1, keepdim=True) * F.log_softmax(logits.T, 1))
        .sum(1)
        .mean()
    )
    return (image_loss + text_loss) / 2


def _lr_at(step: int, cfg: TrainConfig, total: int) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, total - cfg.warmup)
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def _optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        (
            no_decay if param.ndim < 2 or "embedding" in name or "logit_scale" in name else decay
        ).append(param)
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.98), eps=1e-6)


def evaluate_attributes(
    model, tokenizer, mean, std, n: int, seed: int
) -> dict[str, dict[str, float]]:
    """Zero-shot top-1 per concept on an unbiased held-out draw, with chance."""
    batch = W.generate(n, seed, "test")
    embeddings = encode_images(model, images_to_tensor(batch.images, mean, std))
    result = {}
    for index, concept in enumerate(W.CONCEPT_NAMES):
        names = [W.class_phrase(concept, value) for value in W.CONCEPTS[concept]]
        classes = class_embeddings(model, tokenizer, names, W.ZERO_SHOT_TEMPLATES[concept])
        labels = torch.from_numpy(batch.labels[:, index])
        result[concept] = {
            "accuracy": top1_accuracy(embeddings, classes, labels),
            "chance": 1.0 / len(names),
        }
    return result


def evaluate_bias(loaded, seed: int, n_per_cell: int = 10) -> dict[str, Any]:
    """MaxSkew of colour for the shape queries on a fresh counterfactual pool."""
    from ccsclip.profiles.probe_eval import probe_result

    with tempfile.TemporaryDirectory() as tmp:
        probe = load_probe(write_bias_probe(tmp, n_per_cell, seed))
        return probe_result(loaded.model, loaded.tokenizer, loaded.preprocess, probe)


def _window_mean(losses: list[float], first: bool) -> float | None:
    """Mean loss over the first (or last) tenth of the run, at least one step."""
    if not losses:
        return None
    width = max(1, len(losses) // 10)
    window = losses[:width] if first else losses[-width:]
    return round(float(np.mean(window)), 4)


def train(cfg: TrainConfig, progress: bool = True) -> tuple[Any, dict[str, Any]]:
    """Train from scratch; returns the loaded model and the training card."""
    loaded = load_model(cfg.model, None, seed=cfg.seed)
    model = loaded.model.train()
    init_positional_embedding(model.visual)
    mean, std = loaded.preprocess_cfg.get("mean"), loaded.preprocess_cfg.get("std")
    optimizer = _optimizer(model, cfg)
    world_cfg = W.WorldConfig(bias_p=cfg.bias_p)
    batches = W.iter_batches(cfg.batch_size, cfg.data_seed, "train", world_cfg)
    torch.manual_seed(cfg.seed)
    start, losses, step = time.monotonic(), [], 0
    bar = tqdm(total=cfg.steps, desc="train", unit="step", disable=not progress)
    for step, batch in enumerate(batches):
        if step >= cfg.steps or (
            cfg.time_budget_s and time.monotonic() - start > cfg.time_budget_s
        ):
            break
        for group in optimizer.param_groups:
            group["lr"] = _lr_at(step, cfg, cfg.steps)
        images = images_to_tensor(batch.images, mean, std)
        tokens = loaded.tokenizer(batch.texts)
        positives = torch.from_numpy(W.positives_matrix(batch.captions, batch.labels).T)
        image_features = F.normalize(model.encode_image(images), dim=-1)
        text_features = F.normalize(model.encode_text(tokens), dim=-1)
        loss = multi_positive_loss(
            image_features, text_features, model.logit_scale.exp(), positives
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        losses.append(loss.item())
        bar.update(1)
        bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
    bar.close()
    model.eval()
    card = {
        "model": cfg.model,
        "config": cfg.model_dump(),
        "world": {
            "image_size": world_cfg.image_size,
            "bias_p": cfg.bias_p,
            "preferred_colour": dict(world_cfg.preferred_colour),
        },
        "steps": len(losses),
        "wall_time_s": round(time.monotonic() - start, 1),
        "first_loss": _window_mean(losses, first=True),
        "final_loss": _window_mean(losses, first=False),
        "parameters": sum(p.numel() for p in model.parameters()),
        "torch_threads": torch.get_num_threads(),
    }
    with torch.no_grad():
        card["zero_shot"] = evaluate_attributes(
            model, loaded.tokenizer, mean, std, cfg.eval_images, cfg.eval_seed
        )
        card["bias"] = evaluate_bias(loaded, cfg.eval_seed, cfg.bias_per_cell)
    return loaded, card
